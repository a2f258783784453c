//! weft's switching core. Bytes and a clock go in, forwarding decisions come out; no syscalls, so every
//! decision can be tested deterministically.
#![deny(unsafe_code)]

pub mod bridge;
pub mod classifier;
pub mod conntrack;
pub mod counters;
pub mod fdb;
pub mod flowhash;
pub mod fuzz;
pub mod gro;
pub mod headers;
pub mod mtu;
pub mod neigh;
pub mod offload;
pub mod switch;
pub mod tunnel;
pub mod vlan;

pub use weft_wire::{Nanos, SECOND};

/// A port's index in the running pipeline (not its ofport number, which users see).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortIdx(pub u16);
