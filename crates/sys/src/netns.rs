//! Network namespaces: finding a TAP that was moved out of weftd's namespace.
//!
//! `ip link set tap0 netns left` keeps an open TAP working, but after a restart weftd can no longer open it by
//! name from its own namespace. [`find_tap`] looks in every namespace named under `/run/netns` (where
//! `ip netns add` puts them) and attaches from inside the one that holds it.

use crate::tap::Tap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// Runs `f` on a helper thread that has first entered the network namespace at `path`.
/// Namespaces are per thread, so the caller's own namespace never changes.
pub fn run_in<T: Send + 'static>(path: &str, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    let ns = std::fs::File::open(path)?;
    std::thread::spawn(move || {
        // SAFETY: `ns` is an open namespace file for the duration of the call.
        unsafe { syscall!(setns(ns.as_raw_fd(), libc::CLONE_NEWNET))? };
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("namespace helper thread panicked"))?
}

/// Attaches to TAP `name` in the current namespace, or else in whichever named namespace holds an unattached
/// TAP of that name (one another process holds open is busy and skipped). Returns the TAP and the namespace
/// it was found in (`None`: ours); creates it in ours when it exists nowhere.
pub fn find_tap(name: &str, create: impl FnOnce() -> io::Result<Tap>) -> io::Result<(Tap, Option<String>)> {
    if crate::iface::index(name).is_some() {
        return Tap::open(name).map(|t| (t, None));
    }
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        for entry in dir.flatten() {
            let ns = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path().to_string_lossy().into_owned();
            let owned = name.to_string();
            let found = run_in(&path, move || crate::iface::index(&owned).map(|_| Tap::open(&owned)));
            if let Ok(Some(Ok(tap))) = found {
                return Ok((tap, Some(ns)));
            }
        }
    }
    create().map(|t| (t, None))
}

/// Opens `n` more queues of TAP `name`, in network namespace `netns` (a name under `/run/netns`, as
/// [`find_tap`] returns it) or ours. Fails for a device with a single queue (it is busy).
pub fn more_queues(name: &str, netns: Option<&str>, n: usize) -> io::Result<Vec<Tap>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let open = {
        let name = name.to_string();
        move || Tap::open_queues(&name, n)
    };
    match netns {
        None => open(),
        Some(ns) => run_in(&format!("/run/netns/{ns}"), open)?,
    }
}

/// Whether each interface is up and running ([`crate::iface::link_up`]) in the network namespace given with it
/// (an open namespace file, as [`crate::tap::Tap::netns`] returns): one helper thread enters each namespace
/// in turn. `None` for an interface not found there, or a namespace that cannot be entered.
pub fn links_up(interfaces: Vec<(OwnedFd, String)>) -> Vec<Option<bool>> {
    let n = interfaces.len();
    std::thread::spawn(move || {
        interfaces
            .iter()
            .map(|(ns, name)| {
                // SAFETY: `ns` is an open namespace file for the duration of the call.
                unsafe { syscall!(setns(ns.as_raw_fd(), libc::CLONE_NEWNET)) }.ok()?;
                crate::iface::link_up(name)
            })
            .collect()
    })
    .join()
    .unwrap_or_else(|_| vec![None; n])
}
