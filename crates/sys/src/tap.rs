//! TAP devices (Documentation/networking/tuntap.rst).

use crate::iface;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// An open TAP device. Reads return one Ethernet frame each; writes inject one.
///
/// The device is made persistent, so it outlives a crash of weftd (and keeps its namespace, addresses and
/// MTU) and is re-attached by name on restart. [`Tap::destroy`] removes it for good.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Creates TAP `name`, or attaches to the persistent TAP of that name, in the calling thread's namespace.
    pub fn open(name: &str) -> io::Result<Tap> {
        let mut req = iface::ifreq(name)?;
        // SAFETY: the path is a valid NUL-terminated string.
        let fd =
            unsafe { syscall!(open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC))? };
        // SAFETY: `fd` is fresh from the kernel.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        req.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI;
        // SAFETY: `req` is a valid ifreq with name and flags set, as TUNSETIFF expects.
        unsafe { syscall!(ioctl(fd.as_raw_fd(), TUNSETIFF, &req))? };
        // SAFETY: TUNSETPERSIST takes an integer argument, no pointer.
        unsafe { syscall!(ioctl(fd.as_raw_fd(), TUNSETPERSIST, 1 as libc::c_ulong))? };
        Ok(Tap { fd, name: name.to_string() })
    }

    pub fn name(&self) -> &str {
        &self.name
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
