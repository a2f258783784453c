//! TCP connections with options that must be set before the connection is made: the TCP MD5 signature
//! option (RFC 2385) that BGP peers use (`TCP_MD5SIG`, as FRR's `neighbor … password`).

use crate::batch::to_storage;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Longest key the kernel takes (`TCP_MD5SIG_MAXKEYLEN`).
pub const MD5_MAX_KEY: usize = 80;

/// `struct tcp_md5sig` of <linux/tcp.h>.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY],
}

/// Connects to `addr` within `timeout`; with `md5_key`, every segment of the connection (the SYN included)
/// carries an RFC 2385 signature with that key, and the kernel drops the peer's segments that do not.
pub fn connect(addr: SocketAddr, md5_key: Option<&[u8]>, timeout: Duration) -> io::Result<TcpStream> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket(2) call; the descriptor is owned right away.
    let raw =
        unsafe { crate::syscall!(socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0))? };
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if let Some(key) = md5_key {
        if key.is_empty() || key.len() > MD5_MAX_KEY {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a TCP MD5 key has 1 to 80 bytes"));
        }
        // SAFETY: TcpMd5Sig is plain old data; all zeroes is a valid value.
        let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
        to_storage(&addr, &mut sig.addr);
        sig.keylen = key.len() as u16;
        sig.key[..key.len()].copy_from_slice(key);
        // SAFETY: `sig` is a valid tcp_md5sig for the length given.
        unsafe {
            crate::syscall!(setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_MD5SIG,
                (&sig as *const TcpMd5Sig).cast(),
                std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t
            ))?
        };
    }
    // SAFETY: sockaddr_storage is plain old data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = to_storage(&addr, &mut ss);
    // SAFETY: `ss` holds an address of `len` bytes.
    let r = unsafe { crate::syscall!(connect(fd.as_raw_fd(), (&ss as *const libc::sockaddr_storage).cast(), len)) };
    match r {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let n = unsafe { crate::syscall!(poll(&mut p, 1, ms))? };
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "connection timed out"));
            }
            let mut err: libc::c_int = 0;
            let mut elen = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: `err` and `elen` are valid for getsockopt(SO_ERROR).
            unsafe {
                crate::syscall!(getsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    (&mut err as *mut libc::c_int).cast(),
                    &mut elen
                ))?
            };
            if err != 0 {
                return Err(io::Error::from_raw_os_error(err));
            }
        }
        Err(e) => return Err(e),
    }
    let s = TcpStream::from(fd);
    s.set_nonblocking(false)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connects_and_refuses_overlong_keys() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let s = connect(addr, None, Duration::from_secs(2)).unwrap();
        assert_eq!(s.peer_addr().unwrap(), addr);
        assert!(connect(addr, Some(&[1; 81]), Duration::from_secs(2)).is_err());
        // Nobody listening: refused, not a hang.
        drop(l);
        assert!(connect(addr, None, Duration::from_secs(2)).is_err());
    }
}
