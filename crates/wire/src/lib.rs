//! Packet formats spoken by weft.
//!
//! Every protocol lives in its own module and follows one pattern:
//! - a `Packet<T: AsRef<[u8]>>` view over a buffer, created with `new_checked` (which verifies that every
//!   fixed field lies inside the buffer, so the accessors never panic) or `new_unchecked` (the caller vouches);
//! - field offsets as named ranges in a private `mod field`;
//! - where weft builds the header itself, a `Repr` with `parse`, `emit` and `buffer_len`.
//!
//! Nothing in this crate performs I/O or allocates per packet.
#![forbid(unsafe_code)]

pub mod arp;
pub mod capfile;
pub mod checksum;
pub mod dissect;
pub mod esp;
pub mod ethernet;
pub mod fuzz;
pub mod geneve;
pub mod gre;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod openflow;
pub mod pcap;
pub mod tcp;
pub mod udp;
pub mod vlan;
pub mod vxlan;

pub use ethernet::{EtherType, EthernetAddress};

/// Time as nanoseconds on a monotonic clock the caller supplies (the switch, the IKE engine and the
/// control-plane code take time as an argument, never from the system).
pub type Nanos = u64;
/// One second in [`Nanos`].
pub const SECOND: Nanos = 1_000_000_000;

/// An IPv4 (4 bytes) or IPv6 (16 bytes) address in network order; `None` for any other length.
pub fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => Some(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Some(std::net::Ipv6Addr::from(a).into())
        }
        _ => None,
    }
}

/// Why a buffer could not be read as a given protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the header (or a length the header declares) does.
    #[error("truncated {layer}: need {needed} bytes, have {have}")]
    Truncated { layer: &'static str, needed: usize, have: usize },
    /// A field holds a value the protocol does not allow.
    #[error("malformed {layer}: {what}")]
    Malformed { layer: &'static str, what: &'static str },
}

pub type Result<T> = core::result::Result<T, Error>;

/// Fails with [`Error::Truncated`] unless `have >= needed`.
#[inline]
pub(crate) fn need(layer: &'static str, needed: usize, have: usize) -> Result<()> {
    if have < needed {
        Err(Error::Truncated { layer, needed, have })
    } else {
        Ok(())
    }
}

#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Unit tests measure what the readers of untrusted input allocate.
#[cfg(test)]
#[global_allocator]
static ALLOC: weft_sys::alloc_probe::CountingAlloc = weft_sys::alloc_probe::CountingAlloc;
