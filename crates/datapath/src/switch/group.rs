//! Running an OpenFlow group: its buckets' actions, each on a copy of the packet's state (a bucket's
//! rewrites are its own: the next bucket, and the actions after `group:N`, see the packet as it was).

use super::pipeline::{BucketRt, GroupKind};
use super::*;

impl Tables {
    pub(super) fn run_group<O: Observer>(
        &mut self,
        r: &mut Run<'_, '_, O>,
        table: usize,
        flow: (u64, bool),
        id: u32,
        st: &ActState,
        depth: u8,
    ) {
        let pipe = r.pipe;
        let b = &pipe.bridges[r.bridge];
        let Ok(i) = b.groups.binary_search_by_key(&id, |g| g.id) else { return };
        let g = &b.groups[i];
        r.obs.on(|| note(format!("group {id} ({:?}, {} buckets)", g.kind, g.buckets.len())));
        let run = |sw: &mut Self, r: &mut Run<'_, '_, O>, bucket: &BucketRt| {
            let mut copy = st.clone();
            // Whatever the bucket rewrites, it rewrites on a copy of its own.
            copy.copied = false;
            copy.exit = false;
            sw.apply_actions(r, table, flow, &bucket.actions, &mut copy, depth + 1);
        };
        match g.kind {
            GroupKind::All => {
                for bucket in &g.buckets {
                    run(self, r, bucket);
                }
            }
            GroupKind::Indirect => {
                if let Some(bucket) = g.buckets.first() {
                    run(self, r, bucket);
                }
            }
            GroupKind::Select => {
                if let Some(bucket) = select(&g.buckets, st.hdr.hash) {
                    run(self, r, bucket);
                }
            }
            GroupKind::FastFailover => {
                let down = &self.link_down_rt;
                let live = |p: PortIdx| !down.get(usize::from(p.0)).copied().unwrap_or(false);
                if let Some(bucket) = g.buckets.iter().find(|b| b.watch.is_some_and(live)) {
                    run(self, r, bucket);
                }
            }
        }
    }
}

/// The bucket a flow of hash `hash` takes: the hash scaled onto the buckets' summed weights (a weight of 0
/// counts as 1), so that the share of flows each bucket gets follows its weight.
fn select(buckets: &[BucketRt], hash: u32) -> Option<&BucketRt> {
    let weight = |b: &BucketRt| u64::from(b.weight.max(1));
    let total: u64 = buckets.iter().map(weight).sum();
    // The flow hash's bits are mixed first (murmur3's finalizer): its high bits alone may barely vary
    // between flows that differ in a port.
    let mut h = hash;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    let mut at = (u64::from(h) * total) >> 32;
    for b in buckets {
        if at < weight(b) {
            return Some(b);
        }
        at -= weight(b);
    }
    buckets.last()
}
