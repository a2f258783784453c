//! One mask's rules: a flat open-addressing table from the masked key to the rules with that value.
//!
//! Laid out so that a probe reads one place (the masked key's words, then its first rule), with no pointer
//! to follow. 100 000 rules over 16 masks take about 5 MB this way, against the 36 MB of a map of vectors
//! of whole keys.

use super::{FlowKey, KEY_WORDS};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// The words of a key a mask looks at, in order, with the mask's bits in each: lookups gather, hash and
/// compare only those (a rule on an IP address and a port touches 2 of the 36 words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Words {
    idx: [u8; KEY_WORDS],
    mask: [u64; KEY_WORDS],
    n: u8,
}

impl Words {
    fn of(mask: &FlowKey) -> Words {
        let mut w = Words { idx: [0; KEY_WORDS], mask: [0; KEY_WORDS], n: 0 };
        for (i, m) in mask.w.iter().enumerate() {
            if *m != 0 {
                w.idx[usize::from(w.n)] = i as u8;
                w.mask[usize::from(w.n)] = *m;
                w.n += 1;
            }
        }
        w
    }

    /// `key`'s words under the mask, the first `N` of them (all when `N` is the mask's count).
    #[inline(always)]
    fn gather<const N: usize>(&self, key: &FlowKey) -> [u64; N] {
        let mut m = [0u64; N];
        for (j, w) in m.iter_mut().enumerate() {
            *w = key.w[usize::from(self.idx[j])] & self.mask[j];
        }
        m
    }

    /// The hash of masked words (each mixed with its word's index, so that the same bits in another word
    /// hash differently), multiplied once more at the end: the top bits choose a place.
    #[inline(always)]
    fn hash(&self, masked: &[u64]) -> u64 {
        let mut h: u64 = 0x243f_6a88_85a3_08d3;
        for (w, i) in masked.iter().zip(self.idx) {
            h = (h ^ w ^ u64::from(i) << 56).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        }
        h.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
    }
}

/// A rule as a subtable ranks it: (priority, the caller's id, the index of its clauses or [`super::HARD`]).
pub(super) type Ranked = (u16, u32, u32);

pub(super) struct Subtable {
    words: Words,
    pub(super) max_priority: u16,
    /// Open addressing with linear probing over places of `words.n + 1` words, a power of two at least
    /// twice the masked keys: a place holds a masked key's words (the mask's words only), then its first
    /// rule's priority (bits 32..48) and id (bits 0..32), or [`EMPTY`] there. A probe reads one place (no
    /// pointer to follow); rules fill the table, never packets, so no traffic can make a probe long.
    places: Box<[u64]>,
    /// 64 minus log2 of the places: a hash's top bits choose the first place to look.
    shift: u32,
    /// A Bloom filter of the masked keys held (two bits of one word per key, eight bits per key): most
    /// lookups miss most subtables, and the filter, small enough to stay in the CPU's caches, answers most
    /// misses without reading the places.
    filter: Box<[u64]>,
    /// Per place, where its rules are in `ranked` (start, count), highest priority first.
    spans: Box<[(u32, u32)]>,
    ranked: Box<[Ranked]>,
}

/// The filter word and the two bits in it of a key of hash `h`, in a filter of `words` words (a power of
/// two): from the hash's low bits, where the place comes from its top bits.
#[inline(always)]
fn filter_bits(h: u64, words: usize) -> (usize, u64) {
    ((h >> 12) as usize & (words - 1), 1 << (h & 63) | 1 << ((h >> 6) & 63))
}

/// The last word of an unused place (a used one has at most 48 bits).
const EMPTY: u64 = u64::MAX;

impl Subtable {
    /// The subtable of `mask` holding `rules` (keys already masked, in the order they were given: among
    /// equal priorities the earlier one ranks first).
    pub(super) fn build(mask: &FlowKey, rules: Vec<(FlowKey, Ranked)>) -> Subtable {
        let words = Words::of(mask);
        let mut groups: Vec<(FlowKey, Vec<Ranked>)> = Vec::new();
        let mut index: HashMap<FlowKey, usize, BuildHasherDefault<crate::fdb::KeyHasher>> = HashMap::default();
        for (key, r) in rules {
            let g = *index.entry(key).or_insert_with(|| {
                groups.push((key, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(r);
        }
        let n = usize::from(words.n);
        let count = (groups.len() * 2).next_power_of_two().max(4);
        let shift = 64 - count.trailing_zeros();
        let mut places = vec![0u64; count * (n + 1)].into_boxed_slice();
        for at in 0..count {
            places[at * (n + 1) + n] = EMPTY;
        }
        let mut spans = vec![(0u32, 0u32); count].into_boxed_slice();
        let mut filter = vec![0u64; (groups.len() / 8).next_power_of_two()].into_boxed_slice();
        let mut ranked = Vec::new();
        let mut max_priority = 0;
        for (key, mut list) in groups {
            // Stable: among equal priorities the earlier rule stays first.
            list.sort_by_key(|r| std::cmp::Reverse(r.0));
            let (p, id, _) = list[0];
            max_priority = max_priority.max(p);
            let masked: [u64; KEY_WORDS] = words.gather(&key);
            let h = words.hash(&masked[..n]);
            let (word, bits) = filter_bits(h, filter.len());
            filter[word] |= bits;
            let mut at = (h >> shift) as usize;
            while places[at * (n + 1) + n] != EMPTY {
                at = (at + 1) & (count - 1);
            }
            let place = &mut places[at * (n + 1)..(at + 1) * (n + 1)];
            place[..n].copy_from_slice(&masked[..n]);
            place[n] = u64::from(p) << 32 | u64::from(id);
            spans[at] = (ranked.len() as u32, list.len() as u32);
            ranked.extend(list);
        }
        Subtable { words, max_priority, places, shift, filter, spans, ranked: ranked.into_boxed_slice() }
    }

    /// The place of the masked key `key` has under this mask, if any rule has it.
    #[inline(always)]
    pub(super) fn find(&self, key: &FlowKey) -> Option<usize> {
        // Most masks touch one to four words: those lookups are unrolled.
        match self.words.n {
            0 => self.find_n::<0>(key),
            1 => self.find_n::<1>(key),
            2 => self.find_n::<2>(key),
            3 => self.find_n::<3>(key),
            4 => self.find_n::<4>(key),
            _ => self.find_any(key),
        }
    }

    #[inline(always)]
    fn find_n<const N: usize>(&self, key: &FlowKey) -> Option<usize> {
        let masked: [u64; N] = self.words.gather(key);
        self.probe(&masked)
    }

    #[inline(never)]
    fn find_any(&self, key: &FlowKey) -> Option<usize> {
        let all: [u64; KEY_WORDS] = self.words.gather(key);
        self.probe(&all[..usize::from(self.words.n)])
    }

    /// The place holding `masked` (the key's words under the mask), if any. Inlined into each width's
    /// lookup, where the width is a constant.
    #[inline(always)]
    fn probe(&self, masked: &[u64]) -> Option<usize> {
        let n = masked.len();
        let h = self.words.hash(masked);
        if !self.may_hold(h) {
            return None;
        }
        let last = self.spans.len() - 1;
        let mut at = (h >> self.shift) as usize;
        loop {
            let place = &self.places[at * (n + 1)..(at + 1) * (n + 1)];
            if place[n] == EMPTY {
                return None;
            }
            if place[..n] == *masked {
                return Some(at);
            }
            at = (at + 1) & last;
        }
    }

    /// Whether a masked key of hash `h` may be here (false: it is not).
    #[inline(always)]
    fn may_hold(&self, h: u64) -> bool {
        let (word, bits) = filter_bits(h, self.filter.len());
        self.filter[word] & bits == bits
    }

    /// The highest-priority rule at place `at`: (priority, id).
    #[inline]
    pub(super) fn top(&self, at: usize) -> (u16, u32) {
        let n = usize::from(self.words.n);
        let w = self.places[at * (n + 1) + n];
        ((w >> 32) as u16, w as u32)
    }

    /// The rules at place `at`, highest priority first.
    #[inline]
    pub(super) fn rules(&self, at: usize) -> &[Ranked] {
        let (start, count) = self.spans[at];
        &self.ranked[start as usize..(start + count) as usize]
    }
}
