//! The exact-match cache in front of a [`Classifier`]: two-way set-associative, so a hit is one hash and
//! at most two compares, and no traffic, however chosen, can turn a lookup into a search.
//!
//! Each key has one set of two places, picked by its hash; a new key takes the first place and the key there
//! moves to the second, pushing out what was in it (so a key used again soon after it was cached stays). A
//! cache starts small and doubles (up to [`CACHE_MAX`] places) when, over a window of as many lookups as it
//! has places, more than one lookup in 32 pushed out a live key — when the keys in use no longer fit. Two
//! ways keep as many keys in a quarter of the memory a direct-mapped cache needs for the same misses, which
//! matters more than the second compare: the bench's 1 024 keys fit the CPU's L2 cache and TLB. A flood of
//! new keys costs what any miss costs (one classification) and pushes out at most the entries it lands on.

use super::{Classifier, FlowKey, COMMON_WORDS, KEY_WORDS, PACKET_WORDS};

/// Places a cache starts with.
const CACHE_MIN: usize = 256;

/// Places a cache grows to at most: 16 Ki keys of up to 296 bytes, under 5 MB per table and worker
/// however many distinct packets arrive.
pub const CACHE_MAX: usize = 16_384;

/// The result stored for "no rule matches".
const NO_RULE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Entry<const N: usize> {
    key: [u64; N],
    /// The rule found, [`NO_RULE`] for none.
    rule: u32,
    live: bool,
}

impl<const N: usize> Entry<N> {
    const EMPTY: Entry<N> = Entry { key: [0; N], rule: NO_RULE, live: false };
}

/// A two-way set-associative cache of keys of `N` words.
#[derive(Clone)]
struct Ways<const N: usize> {
    places: Vec<Entry<N>>,
    /// 64 minus log2 of the places: a hash's top bits choose a key's place.
    shift: u32,
    live: usize,
    /// In the current window: live entries pushed out, and lookups.
    replaced: u64,
    lookups: u64,
}

impl<const N: usize> Default for Ways<N> {
    fn default() -> Self {
        Ways { places: Vec::new(), shift: 63, live: 0, replaced: 0, lookups: 0 }
    }
}

/// The hash of a key's words: each pair of words (XORed with constants) multiplied into 128 bits and folded,
/// the pairs' products independent so that the multiplications overlap; the folds XORed and mixed by one
/// more such multiplication. The place comes from the top bits.
#[inline]
fn hash<const N: usize>(w: &[u64; N]) -> u64 {
    const K: [u64; 4] = [0x9e37_79b9_7f4a_7c15, 0xc2b2_ae3d_27d4_eb4f, 0x1656_67b1_9e37_79f9, 0xd6e8_feb8_6659_fd93];
    #[inline(always)]
    fn fold(a: u64, b: u64) -> u64 {
        let p = u128::from(a) * u128::from(b);
        (p as u64) ^ (p >> 64) as u64
    }
    let mut h = 0u64;
    let mut pairs = w.chunks_exact(2);
    for (j, p) in pairs.by_ref().enumerate() {
        h ^= fold(p[0] ^ K[j % 4], p[1] ^ K[(j + 1) % 4]).rotate_left(j as u32 * 7);
    }
    if let [last] = pairs.remainder() {
        h ^= fold(*last ^ K[2], K[3]);
    }
    fold(h ^ K[1], K[0])
}

impl<const N: usize> Ways<N> {
    /// The first place of `h`'s set of two.
    #[inline]
    fn set(&self, h: u64) -> usize {
        ((h >> self.shift) as usize) * 2
    }

    #[inline]
    fn lookup(&mut self, k: &[u64; N], c: &Classifier, key: &FlowKey) -> Option<u32> {
        let h = hash(k);
        self.lookups += 1;
        let at = self.set(h);
        if let Some(set) = self.places.get(at..at + 2) {
            for e in set {
                if e.live && e.key.iter().zip(k).fold(0, |d, (a, b)| d | (a ^ b)) == 0 {
                    return (e.rule != NO_RULE).then_some(e.rule);
                }
            }
        }
        let found = c.classify(key);
        self.insert(h, k, found);
        found
    }

    #[inline(never)]
    fn insert(&mut self, h: u64, k: &[u64; N], found: Option<u32>) {
        if self.places.is_empty() {
            self.resize(CACHE_MIN);
        } else if self.lookups >= self.places.len() as u64 {
            // A window of as many lookups as places: grow if more than one in 32 pushed out a live key.
            if self.replaced * 32 >= self.lookups && self.places.len() < CACHE_MAX {
                self.resize(self.places.len() * 2);
            }
            self.lookups = 0;
            self.replaced = 0;
        }
        let at = self.set(h);
        let new = Entry { key: *k, rule: found.unwrap_or(NO_RULE), live: true };
        // The newest key first; the one it displaces moves to the second place, pushing out what was there.
        if !self.places[at].live {
            self.places[at] = new;
            self.live += 1;
            return;
        }
        if self.places[at + 1].live {
            self.replaced += 1;
        } else {
            self.live += 1;
        }
        self.places[at + 1] = self.places[at];
        self.places[at] = new;
    }

    fn resize(&mut self, places: usize) {
        let old = std::mem::replace(&mut self.places, vec![Entry::EMPTY; places]);
        self.shift = 64 - (places / 2).trailing_zeros();
        self.live = 0;
        self.replaced = 0;
        self.lookups = 0;
        for e in old.into_iter().filter(|e| e.live) {
            let at = self.set(hash(&e.key));
            let slot = if self.places[at].live { at + 1 } else { at };
            if !self.places[slot].live {
                self.live += 1;
                self.places[slot] = e;
            }
        }
    }

    fn clear(&mut self) {
        self.places.iter_mut().for_each(|e| e.live = false);
        self.live = 0;
        self.replaced = 0;
        self.lookups = 0;
    }
}

/// The exact-match cache in front of one [`Classifier`]: the key to the result (only its first words when
/// the table's rules look at nothing else). Start a new one (or [`clear`](FlowCache::clear) it) whenever the
/// classifier is replaced.
#[derive(Default, Clone)]
pub struct FlowCache {
    common: Ways<COMMON_WORDS>,
    narrow: Ways<PACKET_WORDS>,
    wide: Ways<KEY_WORDS>,
}

impl FlowCache {
    pub fn clear(&mut self) {
        self.common.clear();
        self.narrow.clear();
        self.wide.clear();
    }

    /// Keys cached.
    pub fn len(&self) -> usize {
        self.common.live + self.narrow.live + self.wide.live
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Places the cache has now (it grows while the keys in use do not fit, up to [`CACHE_MAX`] per width).
    pub fn capacity(&self) -> usize {
        self.common.places.len() + self.narrow.places.len() + self.wide.places.len()
    }

    /// The highest-priority rule of `c` matching `key`: from the cache, or classified and remembered.
    #[inline]
    pub fn lookup(&mut self, c: &Classifier, key: &FlowKey) -> Option<u32> {
        match c.cache_words {
            COMMON_WORDS => match key.w.first_chunk::<COMMON_WORDS>() {
                Some(k) => self.common.lookup(k, c, key),
                None => c.classify(key),
            },
            PACKET_WORDS => match key.w.first_chunk::<PACKET_WORDS>() {
                Some(k) => self.narrow.lookup(k, c, key),
                None => c.classify(key),
            },
            _ => self.wide.lookup(&key.w, c, key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::{slot, Rule};

    /// A table of one rule (in_port=1) and `n` packets each of its own in_port.
    fn keys(n: u32) -> (Classifier, Vec<FlowKey>) {
        let mut key = FlowKey::default();
        let mut mask = FlowKey::default();
        key.put(slot::IN_PORT, 1);
        mask.put(slot::IN_PORT, 0xffff_ffff);
        let c = Classifier::new([Rule { key, mask, priority: 1, id: 0 }]);
        let pkts = (0..n)
            .map(|i| {
                let mut k = FlowKey::default();
                k.put(slot::IN_PORT, u128::from(i));
                k
            })
            .collect();
        (c, pkts)
    }

    #[test]
    fn a_cache_grows_while_its_keys_do_not_fit_and_stops_at_its_bound() {
        let (c, pkts) = keys(40_000);
        let mut cache = FlowCache::default();
        // A few keys: the smallest cache holds them, every answer right.
        for _ in 0..3 {
            for (i, p) in pkts[..64].iter().enumerate() {
                assert_eq!(cache.lookup(&c, p), (i == 1).then_some(0));
            }
        }
        assert_eq!(cache.capacity(), CACHE_MIN);
        // A flood of distinct keys: the answers stay right, the cache stops at its bound.
        for _ in 0..2 {
            for (i, p) in pkts.iter().enumerate() {
                assert_eq!(cache.lookup(&c, p), (i == 1).then_some(0));
            }
        }
        assert_eq!(cache.capacity(), CACHE_MAX);
        assert!(cache.len() <= CACHE_MAX && cache.len() > CACHE_MAX / 2, "{} live", cache.len());
        // A working set that fits: after the first pass, nearly every lookup hits (one place per key).
        cache.clear();
        assert!(cache.is_empty());
        for p in &pkts[..1000] {
            cache.lookup(&c, p);
        }
        let live = cache.len();
        assert!(live > 950, "{live} of 1000 keys kept in {} places", cache.capacity());
    }
}
