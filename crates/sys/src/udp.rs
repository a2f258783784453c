//! Sockets for tunnels: UDP (VXLAN, Geneve) and raw IP (GRE).

use crate::batch::to_storage;
use crate::setsockopt_int;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

/// Socket buffer size asked for tunnel sockets: enough for a few milliseconds at 10 Gbit/s.
pub const SOCKET_BUFFER: i32 = 4 << 20;

/// Binds a non-blocking UDP socket to `addr`. IPv6 sockets are IPv6-only, so an IPv4 socket on the same port
/// can exist beside them.
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let fd = open_bound(addr, libc::SOCK_DGRAM, libc::IPPROTO_UDP, true, false)?;
    // SAFETY: ownership of the descriptor moves into the UdpSocket.
    Ok(unsafe { UdpSocket::from_raw_fd(fd.into_raw_fd()) })
}

/// Binds `n` non-blocking UDP sockets to the same `addr` with SO_REUSEPORT: the kernel hands each datagram
/// to one of them by a hash of its addresses and ports, so one flow always reaches the same socket. With
/// `n` = 1 the option is left off (no other socket can join the port then).
pub fn bind_group(addr: SocketAddr, n: usize) -> io::Result<Vec<OwnedFd>> {
    let first = open_bound(addr, libc::SOCK_DGRAM, libc::IPPROTO_UDP, true, n > 1)?;
    // A port 0 bind picked a port: the others join that one.
    let addr = if addr.port() == 0 { local_addr(&first)? } else { addr };
    let mut v = vec![first];
    for _ in 1..n {
        v.push(open_bound(addr, libc::SOCK_DGRAM, libc::IPPROTO_UDP, true, true)?);
    }
    Ok(v)
}

/// Opens a non-blocking raw IP socket for protocol `proto` (GRE: 47), bound to `local` when given. IPv4 raw
/// sockets receive the IP header in front of the payload; IPv6 ones do not. Outgoing IPv4 packets are sent
/// without DF until [`set_dont_fragment`] says otherwise.
pub fn raw(local: SocketAddr, proto: u8, bind_local: bool) -> io::Result<OwnedFd> {
    let fd = open_bound(local, libc::SOCK_RAW, i32::from(proto), bind_local, false)?;
    if local.is_ipv4() {
        set_dont_fragment(&fd, false)?;
    }
    Ok(fd)
}

fn open_bound(addr: SocketAddr, kind: i32, proto: i32, bind: bool, reuse_port: bool) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket takes no pointers.
    let fd = unsafe { syscall!(socket(family, kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto))? };
    // SAFETY: `fd` is fresh from the kernel; OwnedFd closes it on every error path below.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = fd.as_raw_fd();
    // Raw IPv6 sockets are IPv6-only already (and refuse the option).
    if addr.is_ipv6() && kind == libc::SOCK_DGRAM {
        setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    // Root may exceed rmem_max/wmem_max; others get what the sysctl allows.
    if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SOCKET_BUFFER).is_err() {
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_BUFFER)?;
    }
    if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SOCKET_BUFFER).is_err() {
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, SOCKET_BUFFER)?;
    }
    if reuse_port {
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    if bind {
        // SAFETY: sockaddr_storage is plain old data.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = to_storage(&addr, &mut ss);
        // SAFETY: `ss` holds a valid address of `len` bytes.
        unsafe { syscall!(bind(raw, (&ss as *const libc::sockaddr_storage).cast(), len))? };
    }
    Ok(fd)
}

const SOL_UDP: i32 = 17;
/// `UDP_SEGMENT`: send a buffer as a train of equal-sized datagrams (Linux 4.18).
pub(crate) const UDP_SEGMENT: i32 = 103;
/// `UDP_GRO`: receive a train of datagrams of one flow as one buffer (Linux 5.0).
pub(crate) const UDP_GRO: i32 = 104;
pub(crate) const SOL_UDP_LEVEL: i32 = SOL_UDP;

/// Whether the socket takes multicast for groups it did not join itself (IP_MULTICAST_ALL, on by default:
/// any group some socket of the host joined).
pub fn multicast_all(sock: &impl AsRawFd, ipv6: bool, on: bool) -> io::Result<()> {
    const IP_MULTICAST_ALL: i32 = 49;
    const IPV6_MULTICAST_ALL: i32 = 29;
    let (level, opt) =
        if ipv6 { (libc::IPPROTO_IPV6, IPV6_MULTICAST_ALL) } else { (libc::IPPROTO_IP, IP_MULTICAST_ALL) };
    setsockopt_int(sock.as_raw_fd(), level, opt, i32::from(on))
}

/// Asks the kernel to hand over datagrams of one flow coalesced (UDP_GRO); each buffer then reports the size
/// of its datagrams in a control message. Returns whether the kernel agreed.
pub fn enable_gro(sock: &impl AsRawFd) -> bool {
    setsockopt_int(sock.as_raw_fd(), SOL_UDP, UDP_GRO, 1).is_ok()
}

/// Whether this socket can send a buffer as a train of datagrams (UDP_SEGMENT). Probed by setting the
/// socket's default segment size to 0 (off), which changes nothing.
pub fn can_segment(sock: &impl AsRawFd) -> bool {
    setsockopt_int(sock.as_raw_fd(), SOL_UDP, UDP_SEGMENT, 0).is_ok()
}

/// Sets whether outgoing IPv4 datagrams carry DF (path-MTU discovery "do") or may be fragmented ("dont").
pub fn set_dont_fragment(sock: &impl AsRawFd, df: bool) -> io::Result<()> {
    let v = if df { libc::IP_PMTUDISC_DO } else { libc::IP_PMTUDISC_DONT };
    setsockopt_int(sock.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, v)
}

/// Shrinks the receive buffer of a send-only socket, so stray datagrams to it cost little.
pub fn shrink_receive_buffer(sock: &impl AsRawFd) -> io::Result<()> {
    setsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 4096)
}

/// Joins multicast `group` on interface `ifindex` (IPv4: IP_ADD_MEMBERSHIP, IPv6: IPV6_ADD_MEMBERSHIP).
pub fn join_group(sock: &impl AsRawFd, group: std::net::IpAddr, ifindex: u32) -> io::Result<()> {
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
pub fn set_multicast_out(sock: &impl AsRawFd, ipv6: bool, ifindex: u32, ttl: i32) -> io::Result<()> {
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

/// Makes a socket discard everything it would receive (a classic BPF program of one `ret #0`). Send-only raw
/// sockets get this: otherwise each would queue a copy of every packet of its protocol.
pub fn discard_input(sock: &impl AsRawFd) -> io::Result<()> {
    let mut code = [libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: 0 }];
    let prog = libc::sock_fprog { len: 1, filter: code.as_mut_ptr() };
    // SAFETY: `prog` points at `code`, one instruction, both alive across the call; the kernel copies them.
    unsafe {
        syscall!(setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            crate::socklen_of::<libc::sock_fprog>()
        ))?
    };
    Ok(())
}

/// The address a socket is bound to (`getsockname`).
pub fn local_addr(sock: &impl AsRawFd) -> io::Result<std::net::SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = crate::socklen_of::<libc::sockaddr_storage>();
    // SAFETY: `ss` has room for any address and `len` says so.
    unsafe { syscall!(getsockname(sock.as_raw_fd(), (&mut ss as *mut libc::sockaddr_storage).cast(), &mut len))? };
    crate::batch::from_storage(&ss).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown address family"))
}

/// The local address the kernel would send from towards `remote` (a UDP socket is connected, which sends
/// nothing, and asked for its address).
pub fn source_towards(remote: std::net::IpAddr) -> io::Result<std::net::IpAddr> {
    let any: std::net::IpAddr =
        if remote.is_ipv4() { std::net::Ipv4Addr::UNSPECIFIED.into() } else { std::net::Ipv6Addr::UNSPECIFIED.into() };
    let s = bind(std::net::SocketAddr::new(any, 0))?;
    s.connect(std::net::SocketAddr::new(remote, 9))?;
    Ok(s.local_addr()?.ip())
}

/// Sends one datagram from `fd` to `to` (`sendto`); for the rare control messages sent on a datapath socket.
pub fn send_to(fd: std::os::fd::RawFd, data: &[u8], to: SocketAddr) -> io::Result<usize> {
    // SAFETY: sockaddr_storage is plain old data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = to_storage(&to, &mut ss);
    // SAFETY: `data` is valid for its length and `ss` holds an address of `len` bytes.
    let n = unsafe {
        syscall!(sendto(fd, data.as_ptr().cast(), data.len(), 0, (&ss as *const libc::sockaddr_storage).cast(), len))?
    };
    Ok(n as usize)
}
