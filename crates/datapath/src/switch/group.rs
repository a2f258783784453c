//! Running an OpenFlow group: its buckets' actions, each on a copy of the packet's state (a bucket's
//! rewrites are its own: the next bucket, and the actions after `group:N`, see the packet as it was), and
//! the groups' statistics.

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
        let bytes = st.data.len() as u64;
        if let Some(s) = self.group_stats.get_mut(r.bridge).and_then(|v| v.get_mut(i)) {
            s.packets += 1;
            s.bytes += bytes;
        }
        let run = |sw: &mut Self, r: &mut Run<'_, '_, O>, bucket: &BucketRt| {
            if let Some(s) = sw.group_stats.get_mut(r.bridge).and_then(|v| v.get_mut(i)) {
                let at = g.buckets.iter().position(|b| std::ptr::eq(b, bucket)).unwrap_or(0);
                if let Some(c) = s.buckets.get_mut(at) {
                    c.0 += 1;
                    c.1 += bytes;
                }
            }
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

/// What one group took (this worker's share): packets and bytes, and per bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupStat {
    pub packets: u64,
    pub bytes: u64,
    pub buckets: Vec<(u64, u64)>,
}

/// The groups' statistics for pipeline `new`: a group that stays (same bridge, id and number of buckets)
/// keeps what it counted under `old`; any other starts from zero.
pub(super) fn carry_stats(old: &Pipeline, new: &Pipeline, mut stats: Vec<Vec<GroupStat>>) -> Vec<Vec<GroupStat>> {
    new.bridges
        .iter()
        .map(|b| {
            let ob = old.bridges.iter().position(|x| x.name == b.name);
            b.groups
                .iter()
                .map(|g| {
                    let kept = ob.and_then(|bi| {
                        let gi = old.bridges[bi].groups.iter().position(|x| x.id == g.id)?;
                        let s = stats.get_mut(bi)?.get_mut(gi)?;
                        (s.buckets.len() == g.buckets.len()).then(|| std::mem::take(s))
                    });
                    kept.unwrap_or_else(|| GroupStat { buckets: vec![(0, 0); g.buckets.len()], ..Default::default() })
                })
                .collect()
        })
        .collect()
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
