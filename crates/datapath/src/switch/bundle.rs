//! `bundle` / `bundle_load` in the core: one live member of a list, by a hash of the flow — the first live
//! (`active_backup`) or the one with the highest weight for this flow (`hrw`: highest random weight, so a
//! flow stays on its member while it lives and only the flows of a member that dies move).

use super::pipeline::BundleRt;
use super::*;

/// What the hash covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashOn {
    EthSrc,
    NwSrc,
    NwDst,
    /// Addresses (and with `ports`, the protocol and ports), the same whichever way the packet goes.
    Symmetric {
        macs: bool,
        ports: bool,
    },
}

fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The flow's hash for the bundle.
fn flow_hash(k: &FlowKey, on: HashOn, basis: u16) -> u64 {
    let fold = |v: u128| (v as u64) ^ ((v >> 64) as u64);
    let h = match on {
        HashOn::EthSrc => fold(k.get(slot::DL_SRC)),
        HashOn::NwSrc => fold(k.get(slot::NW_SRC)),
        HashOn::NwDst => fold(k.get(slot::NW_DST)),
        HashOn::Symmetric { macs, ports } => {
            // Each pair combined so that swapping its two ends gives the same value.
            let pair = |a: u128, b: u128| mix(fold(a)) ^ mix(fold(b));
            let mut h = pair(k.get(slot::NW_SRC), k.get(slot::NW_DST)) ^ (k.get(slot::DL_TYPE) as u64);
            if macs {
                h ^= pair(k.get(slot::DL_SRC), k.get(slot::DL_DST)).rotate_left(7);
            }
            if ports {
                h ^= (pair(k.get(slot::TP_SRC), k.get(slot::TP_DST)) ^ (k.get(slot::NW_PROTO) as u64)).rotate_left(13);
            }
            h
        }
    };
    mix(h ^ u64::from(basis))
}

impl Tables {
    /// The member `b` picks for the packet: among those whose link is up and that are not configured down.
    pub(super) fn bundle_member(&self, pipe: &Pipeline, b: &BundleRt, key: &FlowKey) -> Option<PortIdx> {
        let live = |p: &PortIdx| {
            !self.link_down_rt.get(usize::from(p.0)).copied().unwrap_or(true)
                && pipe.port(*p).of_config & port_config::PORT_DOWN == 0
        };
        let mut members = b.members[..usize::from(b.n)].iter().flatten().filter(|p| live(p));
        if !b.hrw {
            return members.next().copied();
        }
        let h = flow_hash(key, b.on, b.basis);
        members.max_by_key(|p| mix(h ^ u64::from(pipe.port(**p).ofport))).copied()
    }
}

/// `multipath`'s link for a flow hash: 0 .. `n` (n ≥ 1).
pub fn multipath_link(h: u64, algorithm: u16, n: u32, arg: u32) -> u32 {
    let n64 = u64::from(n.max(1));
    match algorithm {
        0 => (h % n64) as u32,
        // Highest random weight over the links (OVS: up to 64, then as hash_threshold).
        2 if n <= 64 => (0..n).max_by_key(|i| mix(h ^ u64::from(*i).wrapping_mul(0x9e37_79b9_7f4a_7c15))).unwrap_or(0),
        // The hash rehashed with the argument until it falls below the next power of two's share of `n`.
        3 => {
            let mut x = mix(h ^ u64::from(arg));
            let bound = n64.next_power_of_two();
            for _ in 0..32 {
                if x % bound < n64 {
                    return (x % bound) as u32;
                }
                x = mix(x);
            }
            (x % n64) as u32
        }
        _ => (((h >> 32) * n64) >> 32) as u32,
    }
}

impl Tables {
    /// `multipath`: the link number into the destination field; false when writing it stopped the packet.
    pub(super) fn multipath<O: Observer>(&mut self, r: &mut Run<'_, '_, O>, st: &mut ActState, act: ActRt) -> bool {
        let ActRt::Multipath { on, basis, algorithm, n_links, arg, dst } = act else { return true };
        let link = multipath_link(flow_hash(&st.key, on, basis), algorithm, n_links, arg);
        let v = u128::from(link) & Slot::bits_mask(0, dst.nbits);
        st.key.set_masked(dst.slot, v << dst.ofs, Slot::bits_mask(dst.ofs, dst.nbits));
        self.sync_field(r, st, dst.slot)
    }

    /// `bundle_load`: the member's OpenFlow number (0xffff: none) into the destination field; false when
    /// writing it stopped the packet. (For `bundle`, with no destination, nothing.)
    pub(super) fn bundle_load<O: Observer>(
        &mut self,
        r: &mut Run<'_, '_, O>,
        st: &mut ActState,
        b: &BundleRt,
        member: Option<PortIdx>,
    ) -> bool {
        let Some(dst) = b.dst else { return true };
        let n = member.map_or(0xffff, |p| u128::from(r.pipe.port(p).ofport & 0xffff)) & Slot::bits_mask(0, dst.nbits);
        st.key.set_masked(dst.slot, n << dst.ofs, Slot::bits_mask(dst.ofs, dst.nbits));
        self.sync_field(r, st, dst.slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipath_links_are_in_range_and_spread() {
        for alg in 0..4 {
            let mut seen = [0u32; 5];
            for i in 0..1000u64 {
                let l = multipath_link(mix(i), alg, 5, 7);
                assert!(l < 5, "algorithm {alg}: {l}");
                seen[l as usize] += 1;
            }
            assert!(seen.iter().all(|&c| c > 100), "algorithm {alg}: {seen:?}");
        }
        assert_eq!(multipath_link(12345, 2, 1, 0), 0);
    }

    #[test]
    fn symmetric_hashes_are_the_same_both_ways() {
        let mut a = FlowKey::default();
        a.put(slot::NW_SRC, 0x0a00_0001);
        a.put(slot::NW_DST, 0x0a00_0002);
        a.put(slot::TP_SRC, 1000);
        a.put(slot::TP_DST, 80);
        let mut b = FlowKey::default();
        b.put(slot::NW_SRC, 0x0a00_0002);
        b.put(slot::NW_DST, 0x0a00_0001);
        b.put(slot::TP_SRC, 80);
        b.put(slot::TP_DST, 1000);
        let on = HashOn::Symmetric { macs: true, ports: true };
        assert_eq!(flow_hash(&a, on, 5), flow_hash(&b, on, 5));
        assert_ne!(flow_hash(&a, on, 5), flow_hash(&a, on, 6), "the basis changes it");
        assert_ne!(flow_hash(&a, HashOn::NwSrc, 0), flow_hash(&b, HashOn::NwSrc, 0));
    }
}
