//! TAP devices (Documentation/networking/tuntap.rst).

use crate::iface;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// `_IO('T', 227)`: a file of the network namespace the device is in now (Linux 5.2).
const TUNGETDEVNETNS: libc::c_ulong = 0x54e3;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
const TUN_F_TSO6: libc::c_ulong = 0x04;
const TUN_F_TSO_ECN: libc::c_ulong = 0x08;
const TUN_F_USO4: libc::c_ulong = 0x20;
const TUN_F_USO6: libc::c_ulong = 0x40;

/// What a TAP device exchanges with weft besides plain frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapOffloads {
    /// Every frame read or written starts with a 10-byte virtio-net header (IFF_VNET_HDR).
    pub vnet_hdr: bool,
    /// The kernel may hand over frames with the checksum left to do, and TCP frames up to 64 KiB.
    pub tso: bool,
    /// ... and UDP frames up to 64 KiB to be cut into datagrams (USO, Linux 6.2 and later).
    pub uso: bool,
}

/// An open TAP device. Reads return one Ethernet frame each; writes inject one. With
/// [`TapOffloads::vnet_hdr`] each frame, both ways, starts with a virtio-net header.
///
/// The device is made persistent, so it outlives a crash of weftd (and keeps its namespace, addresses and
/// MTU) and is re-attached by name on restart. [`Tap::destroy`] removes it for good.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
    offloads: TapOffloads,
}

/// The prefix of the names TAPs are created under before they take their own ([`Tap::create_marked`]).
pub const TEMP_PREFIX: &str = "weft~";

/// A temporary TAP name: the prefix, then 20 bits of the process ID and 20 of a counter in hex (15
/// characters, the longest name Linux takes).
fn temp_name(pid: u32, n: u32) -> String {
    let unique = (u64::from(pid & 0xf_ffff) << 20) | u64::from(n & 0xf_ffff);
    format!("{TEMP_PREFIX}{unique:010x}")
}

impl Tap {
    /// Creates TAP `name`, or attaches to the persistent TAP of that name, in the calling thread's namespace.
    ///
    /// With offloads allowed ([`crate::offloads_enabled`]) the device is opened with a virtio-net header and
    /// asked for checksum, TCP and (where the kernel has it) UDP segmentation offload; each step the kernel
    /// refuses falls back to the one below it, down to plain frames.
    pub fn open(name: &str) -> io::Result<Tap> {
        let mut v = Self::open_queues(name, 1)?;
        Ok(v.swap_remove(0))
    }

    /// Opens up to `n` queues of TAP `name` (creating it if need be), each a [`Tap`] of its own: the kernel
    /// spreads the frames it sends by flow over the queues (IFF_MULTI_QUEUE), and each queue takes writes. A
    /// device made without multiple queues (`ip tuntap add` without `multi_queue`) gives one queue only.
    pub fn open_queues(name: &str, n: usize) -> io::Result<Vec<Tap>> {
        let want_vnet = crate::offloads_enabled();
        let mut mq = true;
        let first = match Self::attach(name, want_vnet, mq) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                mq = false;
                match Self::attach(name, want_vnet, false) {
                    Err(_) if want_vnet => Self::attach(name, false, false)?,
                    r => r?,
                }
            }
            Err(_) if want_vnet => Self::attach(name, false, mq)?,
            Err(e) => return Err(e),
        };
        let vnet = first.1;
        let mut fds = vec![first.0];
        if mq {
            for _ in 1..n {
                fds.push(Self::attach(name, vnet, true)?.0);
            }
        }
        let mut offloads = TapOffloads { vnet_hdr: want_vnet && vnet, ..Default::default() };
        let fd = &fds[0];
        let set = |flags: libc::c_ulong| {
            // SAFETY: TUNSETOFFLOAD takes an integer argument, no pointer.
            unsafe { syscall!(ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, flags)) }.is_ok()
        };
        if offloads.vnet_hdr {
            let tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
            if set(tso | TUN_F_USO4 | TUN_F_USO6) {
                offloads.tso = true;
                offloads.uso = true;
            } else {
                offloads.tso = set(tso);
            }
        } else {
            // A persistent device keeps the offloads an earlier weftd asked for: without a header to describe
            // them, frames must come whole.
            set(0);
        }
        // SAFETY: TUNSETPERSIST takes an integer argument, no pointer.
        unsafe { syscall!(ioctl(fd.as_raw_fd(), TUNSETPERSIST, 1 as libc::c_ulong))? };
        Ok(fds.into_iter().map(|fd| Tap { fd, name: name.to_string(), offloads }).collect())
    }

    /// Opens the clone device and attaches it to `name`; returns whether the virtio-net header is on.
    fn attach(name: &str, vnet: bool, multi_queue: bool) -> io::Result<(OwnedFd, bool)> {
        let mut req = iface::ifreq(name)?;
        // SAFETY: the path is a valid NUL-terminated string.
        let fd =
            unsafe { syscall!(open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC))? };
        // SAFETY: `fd` is fresh from the kernel.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        req.ifr_ifru.ifru_flags =
            IFF_TAP | IFF_NO_PI | if vnet { IFF_VNET_HDR } else { 0 } | if multi_queue { IFF_MULTI_QUEUE } else { 0 };
        // SAFETY: `req` is a valid ifreq with name and flags set, as TUNSETIFF expects.
        unsafe { syscall!(ioctl(fd.as_raw_fd(), TUNSETIFF, &req))? };
        Ok((fd, vnet))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the device and weft agreed on when it was opened.
    pub fn offloads(&self) -> TapOffloads {
        self.offloads
    }

    /// Reads one frame; `WouldBlock` when none is queued.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { syscall!(read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()))? };
        Ok(n as usize)
    }

    /// Writes one frame made of `parts`.
    pub fn write(&self, parts: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: IoSlice is ABI-compatible with iovec; the slices outlive the call.
        let n = unsafe { syscall!(writev(self.fd.as_raw_fd(), parts.as_ptr().cast(), parts.len() as i32))? };
        Ok(n as usize)
    }

    /// The network namespace the device is in now, wherever it was moved since it was opened.
    pub fn netns(&self) -> io::Result<OwnedFd> {
        // SAFETY: TUNGETDEVNETNS takes no argument and returns a new file descriptor.
        let fd = unsafe { syscall!(ioctl(self.fd.as_raw_fd(), TUNGETDEVNETNS))? };
        // SAFETY: `fd` is fresh from the kernel and ours alone.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Creates TAP `name` with alias `alias` so that a crash at any point leaves either no device named
    /// `name` or one that carries the alias: the device is made under a temporary name ([`Tap::is_temporary`]),
    /// given the alias, and only then renamed. A crash before the rename leaves a device with a temporary
    /// name, which the next start removes. Fails (and leaves nothing) when `name` is taken meanwhile.
    pub fn create_marked(name: &str, alias: &str) -> io::Result<Tap> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = temp_name(std::process::id(), n);
        if iface::index(&temp).is_some() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{temp} exists")));
        }
        let mut tap = Tap::open(&temp)?;
        if let Err(e) = iface::set_alias(&temp, alias).and_then(|_| iface::rename(&temp, name)) {
            let _ = tap.destroy();
            return Err(e);
        }
        tap.name = name.to_string();
        Ok(tap)
    }

    /// Whether `name` is a temporary name of [`Tap::create_marked`].
    pub fn is_temporary(name: &str) -> bool {
        name.strip_prefix(TEMP_PREFIX).is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// Clears the persistent flag, so the device disappears when this handle closes.
    pub fn destroy(&self) -> io::Result<()> {
        // SAFETY: TUNSETPERSIST takes an integer argument, no pointer.
        unsafe { syscall!(ioctl(self.fd.as_raw_fd(), TUNSETPERSIST, 0 as libc::c_ulong))? };
        Ok(())
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_valid_distinct_and_recognised() {
        let a = temp_name(4_194_303, 0);
        let b = temp_name(4_194_303, 1);
        assert_ne!(a, b);
        for n in [&a, &b] {
            assert!(iface::check_name(n).is_ok(), "{n}");
            assert_eq!(n.len(), iface::IFNAME_MAX);
            assert!(Tap::is_temporary(n), "{n}");
        }
        for other in ["weft~", "tap0", "weft~12g", "sw1"] {
            assert!(!Tap::is_temporary(other), "{other}");
        }
    }
}
