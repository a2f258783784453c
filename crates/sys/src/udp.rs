//! UDP sockets for tunnels.

use crate::batch::to_storage;
use crate::setsockopt_int;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

/// Socket buffer size asked for tunnel sockets: enough for a few milliseconds at 10 Gbit/s.
pub const SOCKET_BUFFER: i32 = 4 << 20;

/// Binds a non-blocking UDP socket to `addr`. IPv6 sockets are IPv6-only, so an IPv4 socket on the same port
/// can exist beside them.
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket takes no pointers.
    let fd = unsafe {
        syscall!(socket(family, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, libc::IPPROTO_UDP))?
    };
    // SAFETY: `fd` is fresh from the kernel; OwnedFd closes it on every error path below.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    if addr.is_ipv6() {
        setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    // Root may exceed rmem_max/wmem_max; others get what the sysctl allows.
    if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SOCKET_BUFFER).is_err() {
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_BUFFER)?;
    }
    if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SOCKET_BUFFER).is_err() {
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, SOCKET_BUFFER)?;
    }
    // SAFETY: sockaddr_storage is plain old data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = to_storage(&addr, &mut ss);
    // SAFETY: `ss` holds a valid address of `len` bytes.
    unsafe { syscall!(bind(raw, (&ss as *const libc::sockaddr_storage).cast(), len))? };
    // SAFETY: ownership of the descriptor moves into the UdpSocket.
    Ok(unsafe { UdpSocket::from_raw_fd(fd.into_raw_fd()) })
}

/// Sets whether outgoing IPv4 datagrams carry DF (path-MTU discovery "do") or may be fragmented ("dont").
pub fn set_dont_fragment(sock: &UdpSocket, df: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let v = if df { libc::IP_PMTUDISC_DO } else { libc::IP_PMTUDISC_DONT };
    setsockopt_int(sock.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, v)
}

/// Shrinks the receive buffer of a send-only socket, so stray datagrams to it cost little.
pub fn shrink_receive_buffer(sock: &UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    setsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 4096)
}

/// Joins multicast `group` on interface `ifindex` (IPv4: IP_ADD_MEMBERSHIP, IPv6: IPV6_ADD_MEMBERSHIP).
pub fn join_group(sock: &UdpSocket, group: std::net::IpAddr, ifindex: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    match group {
        std::net::IpAddr::V4(g) => set_mreqn(fd, libc::IP_ADD_MEMBERSHIP, g, ifindex)?,
        std::net::IpAddr::V6(g) => {
            let mreq =
                libc::ipv6_mreq { ipv6mr_multiaddr: libc::in6_addr { s6_addr: g.octets() }, ipv6mr_interface: ifindex };
            // SAFETY: `mreq` is a valid ipv6_mreq of the size passed.
            unsafe {
                syscall!(setsockopt(
                    fd,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_ADD_MEMBERSHIP,
                    (&mreq as *const libc::ipv6_mreq).cast(),
                    crate::socklen_of::<libc::ipv6_mreq>()
                ))?
            };
        }
    }
    Ok(())
}

/// Sends multicast out of interface `ifindex`, with hop limit `ttl`, without looping copies back to this host.
pub fn set_multicast_out(sock: &UdpSocket, ipv6: bool, ifindex: u32, ttl: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    if ipv6 {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, ifindex as i32)?;
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, ttl)?;
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, 0)
    } else {
        set_mreqn(fd, libc::IP_MULTICAST_IF, std::net::Ipv4Addr::UNSPECIFIED, ifindex)?;
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, ttl)?;
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, 0)
    }
}

/// Sets an IPv4 socket option that takes a `struct ip_mreqn` (group, interface index).
fn set_mreqn(fd: std::os::fd::RawFd, name: i32, group: std::net::Ipv4Addr, ifindex: u32) -> io::Result<()> {
    let mreq = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: u32::from(group).to_be() },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as i32,
    };
    // SAFETY: `mreq` is a valid ip_mreqn of the size passed.
    unsafe {
        syscall!(setsockopt(
            fd,
            libc::IPPROTO_IP,
            name,
            (&mreq as *const libc::ip_mreqn).cast(),
            crate::socklen_of::<libc::ip_mreqn>()
        ))?
    };
    Ok(())
}
