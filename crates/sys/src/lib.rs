//! Every system call weft makes, and with them all of weft's `unsafe` code.
//!
//! Each libc call goes through [`syscall!`], which turns the C convention (-1 and `errno`) into
//! `io::Result`. Every `unsafe` block says why it is sound in a `// SAFETY:` comment.

use std::io;

/// Calls a libc function and turns `-1` into the thread's last OS error.
///
/// The caller wraps the macro in `unsafe` and documents why the arguments are valid.
#[macro_export]
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        let res = libc::$fn($($arg),*);
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

pub mod alloc_probe;
pub mod batch;
pub mod epoll;
pub mod files;
pub mod iface;
pub mod netns;
pub mod packet;
pub mod tap;
pub mod tcp;
pub mod udp;

/// Whether weft may use the kernel's offloads: virtio-net headers with checksum and segmentation offload on
/// TAP devices, GSO frames written to AF_PACKET sockets, UDP_SEGMENT when sending tunnel packets and UDP_GRO
/// when receiving them. On unless the environment sets `WEFT_OFFLOADS=off` (or `0`, `no`, `false`), which
/// makes weft cut every frame to wire size itself: the slow path, kept so that it can be tested and compared.
/// Read once per process.
pub fn offloads_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        let v = std::env::var("WEFT_OFFLOADS").unwrap_or_default().to_ascii_lowercase();
        !matches!(v.as_str(), "off" | "0" | "no" | "false")
    })
}

/// True when the error means "nothing to read now" / "try again".
pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// `size_of::<T>()` as a `socklen_t`.
pub(crate) fn socklen_of<T>() -> libc::socklen_t {
    std::mem::size_of::<T>() as libc::socklen_t
}

/// Sets an integer socket option.
pub(crate) fn setsockopt_int(fd: std::os::fd::RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` lives across the call and its size is passed alongside its address.
    unsafe {
        syscall!(setsockopt(fd, level, name, (&value as *const i32).cast(), socklen_of::<i32>()))?;
    }
    Ok(())
}

/// Sets the process umask, returning the previous one.
pub fn process_umask(mask: u32) -> u32 {
    // SAFETY: umask takes no pointers and cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}
