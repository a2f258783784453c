//! NAT: a new connection's translation picked from the `nat(src=…|dst=…)` range — an address, and a port
//! for protocols with ports — such that the reply direction's tuple belongs to no other connection; the
//! packets of both directions then rewritten to match.
//!
//! The reply tuple is a second key of the connection (an *alias* in the shard it hashes to), so answers to
//! the translated address find it with one probe, as the original direction does by its own key.

use super::packet::{SCTP, TCP, UDP, UDPLITE};
use super::*;

/// Which end `nat` rewrites.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NatKind {
    /// `nat` alone: a committed connection's translation applied, no new one made.
    #[default]
    Reverse,
    Src,
    Dst,
}

/// A `ct` action's `nat(...)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatArgs {
    pub kind: NatKind,
    /// First and last address (IPv4 in the low 32 bits), of family `v6`.
    pub addrs: Option<(u128, u128)>,
    pub v6: bool,
    /// First and last port; none given: a source port is kept if it can be, a destination port always.
    pub ports: Option<(u16, u16)>,
    /// The same address for the same host (`persistent`): picked by a hash of the address alone.
    pub persistent: bool,
}

/// A translated connection's NAT: its kind, what answers look like, and their key.
#[derive(Debug, Clone, Copy)]
pub(super) struct NatConn {
    pub kind: NatKind,
    pub reply: Tuple,
    pub alias: ConnKey,
    pub alias_shard: u16,
}

/// Addresses and ports tried at most for one new connection (a full range costs a new connection this
/// many probes, never more).
const ADDR_TRIES: u128 = 8;
const PORT_TRIES: u32 = 16;

impl NatConn {
    /// What a packet of the connection (original direction, or `reply`) has rewritten, and its `ct_state`
    /// with the NAT bit for what was rewritten (OVS's: an answer to a source-translated connection has its
    /// destination translated back, `+dnat`).
    pub fn translate(&self, orig: &Tuple, reply: bool, st: u8) -> (Rewrite, u8) {
        match (self.kind, reply) {
            (NatKind::Src, false) => (Rewrite { src: Some(self.reply.dst), dst: None }, st | state::SNAT),
            (NatKind::Dst, false) => (Rewrite { src: None, dst: Some(self.reply.src) }, st | state::DNAT),
            (NatKind::Src, true) => (Rewrite { src: None, dst: Some(orig.src) }, st | state::DNAT),
            (NatKind::Dst, true) => (Rewrite { src: Some(orig.dst), dst: None }, st | state::SNAT),
            (NatKind::Reverse, _) => (Rewrite::default(), st),
        }
    }
}

impl Conntrack {
    /// Picks the translation of the new connection `orig` (key `key`, to go into shard `main`) from `n`'s
    /// range and reserves its reply key. `Some(None)`: nothing to translate (the range is of the other
    /// family, or the pick is the connection as it is); `None`: no free address and port was found.
    pub(super) fn nat_alloc(&self, key: &ConnKey, orig: &Tuple, n: &NatArgs, main: usize) -> Option<Option<NatConn>> {
        let Some((amin, amax)) = n.addrs else { return Some(None) };
        if n.v6 != orig.v6 || amax < amin {
            return Some(None);
        }
        let src = n.kind == NatKind::Src;
        let ported = matches!(orig.proto, TCP | UDP | SCTP | UDPLITE);
        let kept = if src { orig.src.port } else { orig.dst.port };
        let h = self.seed.hash_one((key, 0x6e61_7400u32));
        let ha = if n.persistent { self.seed.hash_one(if src { orig.src.addr } else { orig.dst.addr }) } else { h };
        let naddr = (amax - amin).saturating_add(1);
        // Ports to try, in order: the one the packet has if the range allows it, then from a hash.
        let (pmin, pmax) = match (ported, n.ports) {
            (false, _) => (kept, kept),
            (true, Some(r)) => r,
            (true, None) if !src => (kept, kept),
            (true, None) => (1024, 65535),
        };
        let nports = u32::from(pmax - pmin) + 1;
        let p0 = ((h >> 16) % u64::from(nports)) as u32;
        let first_kept = (pmin..=pmax).contains(&kept);
        for ai in 0..naddr.min(ADDR_TRIES) {
            let addr = amin + (u128::from(ha) + ai) % naddr;
            for k in 0..nports.min(PORT_TRIES) {
                let port = if first_kept && k == 0 { kept } else { pmin + ((p0 + k) % nports) as u16 };
                let end = Endpoint { addr, port };
                let reply = if src {
                    Tuple { src: orig.dst, dst: end, ..*orig }
                } else {
                    Tuple { src: end, dst: orig.src, ..*orig }
                };
                let (alias, _) = self.canon(key.zone, &reply);
                if alias == *key {
                    return Some(None);
                }
                let si = self.shard_of(&alias);
                let mut shard = lock(&self.shards[si]);
                if let std::collections::hash_map::Entry::Vacant(v) = shard.map.entry(alias) {
                    v.insert(Entry::Alias { shard: main as u16, slot: u32::MAX, gen: 0 });
                    return Some(Some(NatConn { kind: n.kind, reply, alias, alias_shard: si as u16 }));
                }
            }
        }
        None
    }
}
