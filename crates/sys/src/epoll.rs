//! epoll and eventfd: how the datapath thread sleeps until a port has packets or the daemon has news.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An epoll instance watching file descriptors for readability, each tagged with a `u64` token.
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new(capacity: usize) -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = unsafe { syscall!(epoll_create1(libc::EPOLL_CLOEXEC))? };
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd, events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)] })
    }

    /// Watches `fd` for input (level-triggered).
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
        // SAFETY: `ev` is a valid epoll_event that lives across the call.
        unsafe { syscall!(epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev))? };
        Ok(())
    }

    /// Waits up to `timeout_ms` (-1: forever) and returns the tokens of ready descriptors.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<impl Iterator<Item = u64> + '_> {
        let cap = self.events.len() as i32;
        // SAFETY: `events` has room for `cap` entries, which the kernel fills.
        let n = match unsafe { syscall!(epoll_wait(self.fd.as_raw_fd(), self.events.as_mut_ptr(), cap, timeout_ms)) } {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        Ok(self.events[..n].iter().map(|e| e.u64))
    }
}

/// A counter file descriptor used to wake a sleeping thread.
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers.
        let fd = unsafe { syscall!(eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))? };
        // SAFETY: `fd` is fresh from the kernel and owned by nobody else.
        Ok(EventFd { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64. A full counter (EAGAIN) still leaves the fd readable.
        let _ = unsafe { syscall!(write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8)) };
    }

    /// Resets the counter.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64.
        let _ = unsafe { syscall!(read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8)) };
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
