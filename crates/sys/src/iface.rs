//! Network-interface queries and settings through the classic `SIOC*` ioctls.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// Why a string cannot be an interface name.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > IFNAME_MAX {
        return Err(format!("interface name {name:?} must be 1 to {IFNAME_MAX} bytes long"));
    }
    if name.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0) || name == "." || name == ".."
    {
        return Err(format!("interface name {name:?} may not contain '/', ':', spaces or be '.' or '..'"));
    }
    Ok(())
}

/// The index of interface `name` in the calling thread's network namespace, if it exists.
pub fn index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

pub(crate) fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    check_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers.
    let fd = unsafe { syscall!(socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0))? };
    // SAFETY: `fd` is fresh from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Brings interface `name` administratively up.
pub fn set_up(name: &str) -> io::Result<()> {
    let s = control_socket()?;
    let mut req = ifreq(name)?;
    // SAFETY: `req` is a valid ifreq naming the interface; the kernel fills ifru_flags.
    unsafe { syscall!(ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))? };
    // SAFETY: SIOCGIFFLAGS wrote the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; the kernel reads ifru_flags.
    unsafe { syscall!(ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req))? };
    Ok(())
}

/// Whether interface `name` of the calling thread's network namespace is up and running (administratively up
/// and operationally up: a veth whose peer is down, a cable out, is not); `None` when it does not exist.
/// Unlike /sys/class/net, which shows the namespace sysfs was mounted in, this asks the thread's own
/// namespace, so that it works on a helper thread in another one ([`crate::netns::run_in`]).
pub fn link_up(name: &str) -> Option<bool> {
    let s = control_socket().ok()?;
    let mut req = ifreq(name).ok()?;
    // SAFETY: `req` is a valid ifreq naming the interface; the kernel fills ifru_flags.
    unsafe { syscall!(ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req)) }.ok()?;
    // SAFETY: SIOCGIFFLAGS wrote the flags member of the union.
    let flags = i32::from(unsafe { req.ifr_ifru.ifru_flags });
    Some(flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0)
}

/// Sets the MTU of interface `name`.
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let s = control_socket()?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    // SAFETY: `req` is a valid ifreq with the MTU member set.
    unsafe { syscall!(ioctl(s.as_raw_fd(), libc::SIOCSIFMTU, &req))? };
    Ok(())
}

/// Reads the MTU of interface `name`.
pub fn mtu(name: &str) -> io::Result<u32> {
    let s = control_socket()?;
    let mut req = ifreq(name)?;
    // SAFETY: `req` is a valid ifreq; the kernel fills ifru_mtu.
    unsafe { syscall!(ioctl(s.as_raw_fd(), libc::SIOCGIFMTU, &mut req))? };
    // SAFETY: SIOCGIFMTU wrote the MTU member.
    Ok(unsafe { req.ifr_ifru.ifru_mtu } as u32)
}

/// Reads the hardware (MAC) address of interface `name`.
pub fn mac(name: &str) -> io::Result<[u8; 6]> {
    let s = control_socket()?;
    let mut req = ifreq(name)?;
    // SAFETY: `req` is a valid ifreq; the kernel fills ifru_hwaddr.
    unsafe { syscall!(ioctl(s.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req))? };
    // SAFETY: SIOCGIFHWADDR wrote the hwaddr member.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut out = [0u8; 6];
    for (d, s) in out.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(out)
}

/// The alias of interface `name` (`ip link set dev NAME alias …`, /sys/class/net/NAME/ifalias), if it has one.
pub fn alias(name: &str) -> Option<String> {
    let a = std::fs::read_to_string(format!("/sys/class/net/{name}/ifalias")).ok()?;
    let a = a.trim_end_matches('\n');
    (!a.is_empty()).then(|| a.to_string())
}

/// Renames interface `name` to `new` (it must be down).
pub fn rename(name: &str, new: &str) -> io::Result<()> {
    let s = control_socket()?;
    let mut req = ifreq(name)?;
    let new_req = ifreq(new)?;
    req.ifr_ifru.ifru_newname = new_req.ifr_name;
    // SAFETY: `req` is a valid ifreq with the old name and the new-name member set.
    unsafe { syscall!(ioctl(s.as_raw_fd(), libc::SIOCSIFNAME, &req))? };
    Ok(())
}

/// Sets the alias of interface `name` (at most 255 bytes).
pub fn set_alias(name: &str, alias: &str) -> io::Result<()> {
    check_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    std::fs::write(format!("/sys/class/net/{name}/ifalias"), alias)
}

/// The TUN/TAP devices of the calling thread's network namespace, by name.
pub fn tun_devices() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else { return Vec::new() };
    dir.flatten()
        .filter(|e| e.path().join("tun_flags").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}
