//! AF_PACKET sockets: attaching an existing interface (a veth end, a NIC) to a bridge.
//!
//! The socket is bound to one interface, puts it in promiscuous mode, ignores frames it sent itself, and
//! exchanges frames with a virtio-net header in front (PACKET_VNET_HDR) so that frames whose checksum was
//! left to offload, and unsegmented TSO frames, can be recognised and completed. With PACKET_AUXDATA each
//! frame also reports the 802.1Q tag the kernel took off it on receipt.

use crate::{iface, setsockopt_int, socklen_of};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Length of `struct virtio_net_hdr` as PACKET_VNET_HDR exchanges it.
pub const VNET_HDR_LEN: usize = 10;
const PACKET_VNET_HDR: i32 = 15;
/// Ask for a `tpacket_auxdata` control message with each frame (it carries the VLAN tag the kernel removed).
pub(crate) const PACKET_AUXDATA: i32 = 8;
const PACKET_IGNORE_OUTGOING: i32 = 23;
const ETH_P_ALL: u16 = 0x0003;
const PACKET_FANOUT: i32 = 18;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_FLAG_DEFRAG: u32 = 0x8000;
/// A fanout group has a receive hook of its own: without this flag it hands the group the frames its
/// members send, whatever PACKET_IGNORE_OUTGOING says on each (Linux 4.20).
const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: u32 = 0x4000;

#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
}

impl PacketSocket {
    /// Opens a packet socket on interface `name` (which must exist in the calling thread's namespace),
    /// brings the interface up and makes it promiscuous.
    pub fn open(name: &str) -> io::Result<PacketSocket> {
        let ifindex = iface::index(name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface named {name:?}")))?;
        // Protocol 0 receives nothing until bind() picks the interface, so no stray frames slip in first.
        // SAFETY: socket takes no pointers.
        let fd =
            unsafe { syscall!(socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0))? };
        // SAFETY: `fd` is fresh from the kernel.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        setsockopt_int(raw, libc::SOL_PACKET, PACKET_VNET_HDR, 1)?;
        setsockopt_int(raw, libc::SOL_PACKET, PACKET_AUXDATA, 1)?;
        let _ = setsockopt_int(raw, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
        if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, crate::udp::SOCKET_BUFFER).is_err() {
            let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, crate::udp::SOCKET_BUFFER);
        }
        // SAFETY: sockaddr_ll is plain old data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
        unsafe { syscall!(bind(raw, (&sll as *const libc::sockaddr_ll).cast(), socklen_of::<libc::sockaddr_ll>()))? };
        // SAFETY: packet_mreq is plain old data.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = ifindex as i32;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        // SAFETY: `mreq` is a valid packet_mreq of the size passed.
        unsafe {
            syscall!(setsockopt(
                raw,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mreq as *const libc::packet_mreq).cast(),
                socklen_of::<libc::packet_mreq>()
            ))?
        };
        iface::set_up(name)?;
        Ok(PacketSocket { fd, ifindex })
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Opens `n` sockets on interface `name` that share its frames (PACKET_FANOUT by flow hash, IP fragments
    /// put together first so that a fragmented flow stays on one socket): each frame reaches one of them, and
    /// all frames of a flow the same one. One socket for `n` = 1.
    pub fn open_group(name: &str, n: usize) -> io::Result<Vec<PacketSocket>> {
        let first = PacketSocket::open(name)?;
        if n <= 1 {
            return Ok(vec![first]);
        }
        // Fanout group IDs are shared by the namespace: one from this process and the interface.
        let id = (std::process::id() ^ (first.ifindex << 4)) & 0xffff;
        let mut v = vec![first];
        for _ in 1..n {
            v.push(PacketSocket::open(name)?);
        }
        for s in &v {
            let flags = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG | PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
            let arg = (id | flags << 16) as i32;
            setsockopt_int(s.fd.as_raw_fd(), libc::SOL_PACKET, PACKET_FANOUT, arg)?;
        }
        Ok(v)
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
