//! weft's control plane past one machine.
//!
//! [`model`] holds what every backend agrees on, shaped like EVPN (RFC 7432): per VNI the VTEPs that serve it
//! (type-3 routes, the flood list) and the MAC addresses behind each VTEP (type-2 routes, with a sequence number
//! for moves). Backends feed remote routes into it and carry the local ones out:
//! - [`bgp`]: BGP-4 messages with the L2VPN EVPN family and an I/O-free iBGP session ([`bgp::Session`]);
//! - [`etcd`]: a small etcd v3 client over its JSON gateway (leases, transactions-free puts, watches) and the
//!   key layout weft hosts share.
//!
//! Nothing here touches the datapath: weftd turns the model's [`model::Change`]s into FDB entries and flood
//! lists.

pub mod bgp;
pub mod etcd;
pub mod http;
pub mod model;
pub mod tls;

pub use model::{Adj, Change, LocalChange, MacKey, Record, Rib, Vni};

/// Unit tests measure what the decoders allocate.
#[cfg(test)]
#[global_allocator]
static ALLOC: weft_sys::alloc_probe::CountingAlloc = weft_sys::alloc_probe::CountingAlloc;
