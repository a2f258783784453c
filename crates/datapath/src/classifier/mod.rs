//! OpenFlow-style flow tables: a packed flow key, a tuple-space classifier, and an exact-match cache.
//!
//! Every packet is summarised once into a [`FlowKey`] (thirty-six 64-bit words: packet fields, then the
//! pipeline's own registers and metadata, which actions write and later tables match, then what connection
//! tracking found, TCP flags and tunnel metadata). A rule matches on some bits of it (its mask). Rules with
//! the same mask live in one *subtable* ([`subtable`]): a flat open-addressing table from the masked key
//! to the rules with that value, highest priority first, behind a small Bloom filter that answers most
//! misses from the CPU's caches; a lookup gathers the packet's words under each mask once and probes.
//! Subtables are visited from the highest priority they hold down and the search stops as soon as no
//! remaining subtable can beat the best match found (OVS's "priority sorting"), so common lookups touch one
//! or two subtables. A subtable hashes and compares only the words its mask touches (OVS's miniflows,
//! simply). In front sits a two-way set-associative exact-match cache ([`cache`]) from the bits any rule looks at to
//! the result, emptied whenever the rules change.

mod cache;
mod subtable;

pub use cache::{FlowCache, CACHE_MAX};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use subtable::{Ranked, Subtable};

/// Words in a flow key.
pub const KEY_WORDS: usize = 36;

/// The fields of a packet that rules can match, packed. Where a field sits is given by its [`Slot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    pub w: [u64; KEY_WORDS],
}

impl Default for FlowKey {
    fn default() -> Self {
        FlowKey { w: [0; KEY_WORDS] }
    }
}

impl Hash for FlowKey {
    /// Four independent multiply-rotate lanes (a word's lane is its index mod 4), folded at the end: the
    /// multiplications of different lanes overlap, so twenty-four words cost little more than six. (The
    /// exact-match cache hashes whole keys: fixed-size loops over all words beat an indexed walk there.)
    fn hash<H: Hasher>(&self, state: &mut H) {
        const K: [u64; 4] =
            [0x9e37_79b9_7f4a_7c15, 0xc2b2_ae3d_27d4_eb4f, 0x1656_67b1_9e37_79f9, 0xd6e8_feb8_6659_fd93];
        let mut lane = [1u64, 2, 3, 4];
        for chunk in self.w.chunks_exact(4) {
            for i in 0..4 {
                lane[i] = (lane[i] ^ chunk[i]).wrapping_mul(K[i]).rotate_left(29);
            }
        }
        state.write_u64(lane[0] ^ lane[1].rotate_left(16) ^ lane[2].rotate_left(32) ^ lane[3].rotate_left(48));
    }
}

/// Where a field lives in the key: `bits` bits at `shift` in word `word` (fields of up to 64 bits), or two
/// whole words for 128-bit fields (`bits == 128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub word: usize,
    pub shift: u32,
    pub bits: u32,
}

impl Slot {
    pub const fn new(word: usize, shift: u32, bits: u32) -> Slot {
        Slot { word, shift, bits }
    }

    /// The bits under `mask` (a mask of `nbits` ones from bit `ofs`).
    pub const fn bits_mask(ofs: u32, nbits: u32) -> u128 {
        if nbits >= 128 {
            u128::MAX
        } else {
            ((1u128 << nbits) - 1) << ofs
        }
    }
}

/// Bits `ofs .. ofs + nbits` of a field (what `load` and `move` read and write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubSlot {
    pub slot: Slot,
    pub ofs: u32,
    pub nbits: u32,
}

/// Field positions (Open vSwitch's layout, simplified): ICMP type and code use the transport ports, the ARP
/// opcode the IP protocol, ARP addresses the IP addresses (as in OpenFlow 1.0).
pub mod slot {
    use super::Slot;
    pub const IN_PORT: Slot = Slot::new(0, 0, 32);
    pub const DL_TYPE: Slot = Slot::new(0, 32, 16);
    /// 802.1Q TCI with bit 0x1000 (CFI) set when the frame has a tag, as OVS matches `vlan_tci`.
    pub const VLAN_TCI: Slot = Slot::new(0, 48, 16);
    pub const DL_SRC: Slot = Slot::new(1, 0, 48);
    pub const NW_PROTO: Slot = Slot::new(1, 48, 8);
    pub const NW_TOS: Slot = Slot::new(1, 56, 8);
    pub const DL_DST: Slot = Slot::new(2, 0, 48);
    pub const TP_SRC: Slot = Slot::new(2, 48, 16);
    pub const TP_DST: Slot = Slot::new(3, 0, 16);
    /// IPv6's flow label.
    pub const IPV6_LABEL: Slot = Slot::new(3, 16, 20);
    /// IPv4's TTL or IPv6's hop limit.
    pub const NW_TTL: Slot = Slot::new(3, 36, 8);
    /// The two ECN bits of the TOS byte or traffic class.
    pub const NW_ECN: Slot = Slot::new(3, 44, 2);
    /// The top MPLS label stack entry's label (where IPv6's flow label is: a frame has one or the other),
    /// traffic class and bottom-of-stack bit.
    pub const MPLS_LABEL: Slot = IPV6_LABEL;
    pub const MPLS_TC: Slot = Slot::new(3, 46, 3);
    pub const MPLS_BOS: Slot = Slot::new(3, 49, 1);
    pub const MPLS_TTL: Slot = Slot::new(3, 50, 8);
    pub const NW_FRAG: Slot = Slot::new(3, 58, 2);
    pub const TUN_ID: Slot = Slot::new(4, 0, 64);
    /// IPv4 addresses sit in the low 32 bits of the first word; IPv6 ones fill both.
    pub const NW_SRC: Slot = Slot::new(5, 0, 128);
    pub const NW_DST: Slot = Slot::new(7, 0, 128);
    pub const TUN_SRC: Slot = Slot::new(9, 0, 32);
    pub const TUN_DST: Slot = Slot::new(9, 32, 32);
    /// ARP's sender hardware address, or an IPv6 neighbor solicitation's source link-layer address option
    /// (OVS keeps `nd_sll` where `arp_sha` is).
    pub const ARP_SHA: Slot = Slot::new(10, 0, 48);
    /// ARP's target hardware address, or a neighbor advertisement's target link-layer address option.
    pub const ARP_THA: Slot = Slot::new(11, 0, 48);
    /// The target address of an IPv6 neighbor solicitation or advertisement.
    pub const ND_TARGET: Slot = Slot::new(12, 0, 128);
    /// Register `n` (0..16) of 32 bits: two to a word, the even one in the high half, so that the word is
    /// OVS's 64-bit `xreg(n/2)` and two words its 128-bit `xxreg(n/4)`.
    pub const fn reg(n: usize) -> Slot {
        Slot::new(14 + n / 2, if n.is_multiple_of(2) { 32 } else { 0 }, 32)
    }
    /// `xreg n` (0..8): registers 2n (high) and 2n+1.
    pub const fn xreg(n: usize) -> Slot {
        Slot::new(14 + n, 0, 64)
    }
    /// `xxreg n` (0..4): registers 4n (highest) to 4n+3.
    pub const fn xxreg(n: usize) -> Slot {
        Slot::new(14 + 2 * n, 0, 128)
    }
    /// OpenFlow's metadata, written by `write_metadata` and carried between tables.
    pub const METADATA: Slot = Slot::new(22, 0, 64);
    /// The packet mark (`pkt_mark`): set by actions, matched by later tables, never sent.
    pub const PKT_MARK: Slot = Slot::new(23, 0, 32);
    /// What the `ct` action found ([`crate::conntrack`]): zero until a `ct` runs. The connection's mark, its
    /// state bits, zone, and its original direction's protocol, ports, addresses (IPv4 in the low 32 bits)
    /// and label.
    pub const CT_MARK: Slot = Slot::new(23, 32, 32);
    pub const CT_STATE: Slot = Slot::new(24, 0, 8);
    pub const CT_NW_PROTO: Slot = Slot::new(24, 8, 8);
    pub const CT_ZONE: Slot = Slot::new(24, 16, 16);
    pub const CT_TP_SRC: Slot = Slot::new(24, 32, 16);
    pub const CT_TP_DST: Slot = Slot::new(24, 48, 16);
    pub const CT_LABEL: Slot = Slot::new(25, 0, 128);
    pub const CT_NW_SRC: Slot = Slot::new(27, 0, 128);
    pub const CT_NW_DST: Slot = Slot::new(29, 0, 128);
    /// TCP's flags (`tcp_flags`, 12 bits), zero for other packets.
    pub const TCP_FLAGS: Slot = Slot::new(31, 0, 16);
    /// Tunnel metadata: the data of the Geneve options a bridge's TLV map names, laid out by
    /// [`crate::switch::pipeline::TunMap`] in these words, and one bit per mapped field saying the option
    /// was there (or was written).
    pub const TUN_MD_WORD: usize = 32;
    pub const TUN_MD_WORDS: usize = 4;
    pub const fn tun_md_present(i: usize) -> Slot {
        Slot::new(31, 16 + i as u32, 1)
    }
    /// The presence bits together.
    pub const TUN_MD_PRESENT: Slot = Slot::new(31, 16, 8);
    /// `conj_id`: 0 but in the lookup that follows a conjunctive match ([`super::Clause`]).
    pub const CONJ_ID: Slot = Slot::new(31, 32, 32);
}

impl FlowKey {
    /// Puts `value` (the low bits of it) into `s`.
    pub fn put(&mut self, s: Slot, value: u128) {
        if s.bits == 128 {
            self.w[s.word] = (value >> 64) as u64;
            self.w[s.word + 1] = value as u64;
            return;
        }
        let m = if s.bits == 64 { u64::MAX } else { ((1u64 << s.bits) - 1) << s.shift };
        self.w[s.word] = (self.w[s.word] & !m) | (((value as u64) << s.shift) & m);
    }

    pub fn get(&self, s: Slot) -> u128 {
        if s.bits == 128 {
            return (u128::from(self.w[s.word]) << 64) | u128::from(self.w[s.word + 1]);
        }
        let m = if s.bits == 64 { u64::MAX } else { (1u64 << s.bits) - 1 };
        u128::from((self.w[s.word] >> s.shift) & m)
    }

    /// The bits `s` names, shifted down.
    pub fn get_bits(&self, s: SubSlot) -> u128 {
        (self.get(s.slot) & Slot::bits_mask(s.ofs, s.nbits)) >> s.ofs
    }

    /// Writes the bits of `value` under `mask` into field `s` (both aligned to the field's bit 0).
    pub fn set_masked(&mut self, s: Slot, value: u128, mask: u128) {
        let old = self.get(s);
        self.put(s, (old & !mask) | (value & mask));
    }

    #[inline]
    fn masked(&self, mask: &FlowKey) -> FlowKey {
        let mut out = FlowKey::default();
        for i in 0..KEY_WORDS {
            out.w[i] = self.w[i] & mask.w[i];
        }
        out
    }
}

/// A rule of a table, as the classifier needs it: its match, priority, and an index the caller understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub key: FlowKey,
    pub mask: FlowKey,
    pub priority: u16,
    /// The caller's identifier for the rule (an index into its own list of rules).
    pub id: u32,
}

/// One `conjunction(id, k/n)` of a rule: the rule is one value of dimension `k` (1..=n) of the `n` (2..=64)
/// dimensions of conjunctive flow `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clause {
    pub id: u32,
    pub k: u8,
    pub n: u8,
}

/// A rule that is not part of a conjunctive flow.
const HARD: u32 = u32::MAX;

/// One flow table's classifier. Immutable once built (a change of rules builds a new one), so it can be
/// shared; the cache in front of it belongs to whoever looks up.
pub struct Classifier {
    /// Highest `max_priority` first.
    subtables: Vec<Subtable>,
    rules: usize,
    /// How many of the key's first words hold every bit a rule looks at: [`COMMON_WORDS`] when no rule
    /// looks past the common packet fields, [`PACKET_WORDS`] when none looks past the packet's own, else the
    /// whole key.
    cache_words: usize,
    /// The clauses of the rules that are parts of conjunctive flows (none in most tables, which then take
    /// the plain lookup).
    clauses: Vec<Box<[Clause]>>,
}

/// Words of a key that come from the packet; the rest are the pipeline's registers, metadata and mark.
const PACKET_WORDS: usize = 14;
/// The packet words most tables match: all but ARP's hardware addresses and neighbor discovery's target.
const COMMON_WORDS: usize = 10;

/// Soft matches (rules of conjunctive flows) one lookup weighs at most.
const SOFT_MAX: usize = 64;

impl Classifier {
    /// Builds the classifier of a table from its rules (the id of each is its position in `rules`' source).
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> Classifier {
        Self::with_conjunctions(rules, Vec::new())
    }

    /// Builds the classifier of a table some of whose rules are parts of conjunctive flows: `soft` gives the
    /// clauses of those rules, by rule id. Such a rule never matches alone ([`Classifier::classify`]).
    pub fn with_conjunctions(rules: impl IntoIterator<Item = Rule>, soft: Vec<(u32, Vec<Clause>)>) -> Classifier {
        let soft: HashMap<u32, Box<[Clause]>> =
            soft.into_iter().filter(|(_, c)| !c.is_empty()).map(|(id, c)| (id, c.into_boxed_slice())).collect();
        let mut clauses: Vec<Box<[Clause]>> = Vec::with_capacity(soft.len());
        // Rules by mask, in the order given.
        let mut masks: Vec<(FlowKey, Vec<(FlowKey, Ranked)>)> = Vec::new();
        let mut by_mask: HashMap<FlowKey, usize, BuildHasherDefault<crate::fdb::KeyHasher>> = HashMap::default();
        let mut union = FlowKey::default();
        let mut n = 0;
        for r in rules {
            n += 1;
            let m = *by_mask.entry(r.mask).or_insert_with(|| {
                masks.push((r.mask, Vec::new()));
                masks.len() - 1
            });
            for (u, m) in union.w.iter_mut().zip(r.mask.w) {
                *u |= m;
            }
            let conj = match soft.get(&r.id) {
                Some(c) => {
                    clauses.push(c.clone());
                    (clauses.len() - 1) as u32
                }
                None => HARD,
            };
            masks[m].1.push((r.key.masked(&r.mask), (r.priority, r.id, conj)));
        }
        let mut subtables: Vec<Subtable> =
            masks.into_iter().map(|(mask, rules)| Subtable::build(&mask, rules)).collect();
        subtables.sort_by_key(|s| std::cmp::Reverse(s.max_priority));
        let cache_words = if union.w[COMMON_WORDS..].iter().all(|w| *w == 0) {
            COMMON_WORDS
        } else if union.w[PACKET_WORDS..].iter().all(|w| *w == 0) {
            PACKET_WORDS
        } else {
            KEY_WORDS
        };
        Classifier { subtables, rules: n, cache_words, clauses }
    }

    pub fn len(&self) -> usize {
        self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules == 0
    }

    pub fn subtables(&self) -> usize {
        self.subtables.len()
    }

    /// The highest-priority rule matching `key`, without the cache. A rule that is part of a conjunctive
    /// flow does not match by itself: when, at one priority above every other match, `key` matches a rule of
    /// each dimension of conjunctive flow `id`, the answer is the rule found by looking `key` up again with
    /// `conj_id=id` (rules of conjunctive flows left out); if there is none, as if those rules had not matched.
    pub fn classify(&self, key: &FlowKey) -> Option<u32> {
        if self.clauses.is_empty() {
            self.classify_hard(key, false)
        } else {
            self.classify_conjunctive(key)
        }
    }

    /// The highest-priority ordinary rule matching `key` (`skip_soft`: past rules of conjunctive flows,
    /// which only tables with some have).
    #[inline]
    fn classify_hard(&self, key: &FlowKey, skip_soft: bool) -> Option<u32> {
        let mut best: Option<(u16, u32)> = None;
        for st in &self.subtables {
            if best.is_some_and(|(p, _)| p >= st.max_priority) {
                break;
            }
            if let Some(e) = st.find(key) {
                let first = if skip_soft {
                    st.rules(e).iter().find(|r| r.2 == HARD).map(|&(p, id, _)| (p, id))
                } else {
                    Some(st.top(e))
                };
                if let Some((p, id)) = first {
                    if best.is_none_or(|(bp, _)| p > bp) {
                        best = Some((p, id));
                    }
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// [`Classifier::classify`] for a table with conjunctive flows. The soft matches (rules of conjunctive
    /// flows) are gathered into a fixed buffer: a key meeting more than [`SOFT_MAX`] of them keeps the
    /// highest-priority ones. Only the controller's rules, never the traffic, make the lists long.
    fn classify_conjunctive(&self, key: &FlowKey) -> Option<u32> {
        let mut hard: Option<(u16, u32)> = None;
        let mut soft = [(0u16, 0u32); SOFT_MAX];
        let mut n_soft = 0;
        for st in &self.subtables {
            if hard.is_some_and(|(p, _)| p >= st.max_priority) {
                break;
            }
            let Some(e) = st.find(key) else { continue };
            for &(p, id, conj) in st.rules(e) {
                if hard.is_some_and(|(hp, _)| hp >= p) {
                    break;
                }
                if conj == HARD {
                    hard = Some((p, id));
                    break;
                }
                if n_soft < SOFT_MAX {
                    soft[n_soft] = (p, conj);
                    n_soft += 1;
                } else if let Some(low) = (0..SOFT_MAX).min_by_key(|&i| soft[i].0).filter(|&i| soft[i].0 < p) {
                    soft[low] = (p, conj);
                }
            }
        }
        let hard_pri = hard.map(|(p, _)| i32::from(p)).unwrap_or(-1);
        let soft = &mut soft[..n_soft];
        // Highest priority first; each priority's soft matches are tried together.
        soft.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
        let mut at = 0;
        while at < soft.len() && i32::from(soft[at].0) > hard_pri {
            let p = soft[at].0;
            let end = at + soft[at..].iter().take_while(|s| s.0 == p).count();
            let level = &soft[at..end];
            // Every conjunction complete at this priority, lowest id first, until one's conj_id flow exists.
            let mut tried: Option<u32> = None;
            while let Some(id) = self.next_complete(level, tried) {
                let mut k = *key;
                k.put(slot::CONJ_ID, u128::from(id));
                if let Some(r) = self.classify_hard(&k, true) {
                    return Some(r);
                }
                tried = Some(id);
            }
            at = end;
        }
        hard.map(|(_, id)| id)
    }

    /// The lowest conjunction id above `after` whose every dimension some clause of `level` (soft matches
    /// of one priority) fills.
    fn next_complete(&self, level: &[(u16, u32)], after: Option<u32>) -> Option<u32> {
        let mut best: Option<u32> = None;
        let clauses = || level.iter().flat_map(|&(_, c)| self.clauses[c as usize].iter());
        for c in clauses() {
            let valid = (1..=64).contains(&c.n);
            if !valid || after.is_some_and(|a| c.id <= a) || best.is_some_and(|b| c.id >= b) {
                continue;
            }
            let mut have: u64 = 0;
            for d in clauses().filter(|d| d.id == c.id && d.n == c.n && (1..=d.n).contains(&d.k)) {
                have |= 1 << (d.k - 1);
            }
            if have == u64::MAX >> (64 - u32::from(c.n)) {
                best = Some(c.id);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: u32, priority: u16, fields: &[(Slot, u128, u128)]) -> Rule {
        let mut key = FlowKey::default();
        let mut mask = FlowKey::default();
        for &(s, v, m) in fields {
            key.put(s, v);
            mask.put(s, m);
        }
        Rule { key, mask, priority, id }
    }

    fn pkt(fields: &[(Slot, u128)]) -> FlowKey {
        let mut k = FlowKey::default();
        for &(s, v) in fields {
            k.put(s, v);
        }
        k
    }

    /// Rules over masks of 0 to 7 words (every unrolled width and the general one), some masked keys
    /// shared by several rules, and packets that match some of them: the classifier and the cache answer
    /// as a scan of every rule does.
    #[test]
    fn lookups_agree_with_a_scan_of_every_rule() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Few values per word, so that packets match and masked keys repeat.
        let masks: Vec<FlowKey> = (0..24)
            .map(|m| {
                let mut mask = FlowKey::default();
                for _ in 0..m % 8 {
                    mask.w[(rnd() % KEY_WORDS as u64) as usize] = [0xff, 0xf0f0, u64::MAX][(rnd() % 3) as usize];
                }
                mask
            })
            .collect();
        let mut priorities: Vec<u16> = (0..1500).collect();
        for i in (1..priorities.len()).rev() {
            priorities.swap(i, (rnd() % (i as u64 + 1)) as usize);
        }
        let rules: Vec<Rule> = (0..1500)
            .map(|i| {
                let mask = masks[(rnd() % masks.len() as u64) as usize];
                let mut key = FlowKey::default();
                for w in 0..KEY_WORDS {
                    key.w[w] = rnd() % 3 * 0x0101_0101_0101_0101;
                }
                // The catch-alls (masks of no word) below every other rule, or they would win every lookup.
                let above = if mask == FlowKey::default() { 0 } else { 1500 };
                Rule { key, mask, priority: priorities[i] + above, id: i as u32 }
            })
            .collect();
        let c = Classifier::new(rules.clone());
        let mut cache = FlowCache::default();
        let mut matched = 0;
        for round in 0..2 {
            let mut seed2 = 7u64;
            for _ in 0..1500 {
                seed2 = seed2.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let mut p = FlowKey::default();
                for w in 0..KEY_WORDS {
                    p.w[w] = (seed2 >> (w % 60)) % 3 * 0x0101_0101_0101_0101;
                }
                let want = rules
                    .iter()
                    .filter(|r| (0..KEY_WORDS).all(|w| p.w[w] & r.mask.w[w] == r.key.w[w] & r.mask.w[w]))
                    .max_by_key(|r| r.priority)
                    .map(|r| r.id);
                assert_eq!(c.classify(&p), want);
                assert_eq!(cache.lookup(&c, &p), want, "round {round}");
                // Found by a rule that looks at something (not one of the catch-alls).
                matched += usize::from(want.is_some_and(|id| rules[id as usize].mask != FlowKey::default()));
            }
        }
        assert!(matched > 2000, "only {matched} packets matched a rule: the test tests little");
    }

    #[test]
    fn slots_round_trip() {
        let mut k = FlowKey::default();
        k.put(slot::DL_SRC, 0x0200_0000_0001);
        k.put(slot::NW_PROTO, 17);
        k.put(slot::TUN_ID, u128::from(u64::MAX));
        k.put(slot::NW_DST, 0x2001_0db8_0000_0000_0000_0000_0000_0001);
        k.put(slot::TUN_DST, 0xc000_0201);
        assert_eq!(k.get(slot::DL_SRC), 0x0200_0000_0001);
        assert_eq!(k.get(slot::NW_PROTO), 17);
        assert_eq!(k.get(slot::TUN_ID), u128::from(u64::MAX));
        assert_eq!(k.get(slot::NW_DST), 0x2001_0db8_0000_0000_0000_0000_0000_0001);
        assert_eq!(k.get(slot::TUN_DST), 0xc000_0201);
        assert_eq!(k.get(slot::TUN_SRC), 0);
    }

    #[test]
    fn priorities_and_overlapping_wildcards() {
        let ip = (slot::DL_TYPE, 0x0800, 0xffff);
        let rules = [
            rule(0, 0, &[]),                                               // catch-all
            rule(1, 100, &[ip, (slot::NW_DST, 0xac1f_0100, 0xffff_ff00)]), // 172.31.1.0/24
            rule(2, 200, &[ip, (slot::NW_DST, 0xac1f_0102, 0xffff_ffff)]), // 172.31.1.2/32
            rule(3, 50, &[ip]),                                            // any IPv4
            rule(4, 100, &[ip, (slot::NW_DST, 0xac1f_0000, 0xffff_0000)]), // 172.31.0.0/16, same priority as 1
        ];
        let c = Classifier::new(rules);
        let mut cache = FlowCache::default();
        let v4 = |dst: u128| pkt(&[(slot::DL_TYPE, 0x0800), (slot::NW_DST, dst)]);
        assert_eq!(c.classify(&v4(0xac1f_0102)), Some(2), "the /32 at 200 wins");
        assert_eq!(c.classify(&v4(0xac1f_0105)), Some(1), "/24 and /16 tie at 100: the earlier rule");
        assert_eq!(c.classify(&v4(0xac1f_0205)), Some(4));
        assert_eq!(c.classify(&v4(0x0a00_0001)), Some(3));
        assert_eq!(c.classify(&pkt(&[(slot::DL_TYPE, 0x0806)])), Some(0));
        // The cache gives the same answers, the second time from memory.
        for _ in 0..2 {
            assert_eq!(cache.lookup(&c, &v4(0xac1f_0102)), Some(2));
            assert_eq!(cache.lookup(&c, &v4(0x0a00_0001)), Some(3));
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(FlowCache::default().lookup(&Classifier::new([]), &v4(1)), None);
        assert_eq!(c.subtables(), 5);
    }

    #[test]
    fn conjunctive_flows_match_when_every_dimension_does() {
        let ip = (slot::DL_TYPE, 0x0800, 0xffff);
        let src = |a: u128| (slot::NW_SRC, a, 0xffff_ffff);
        let dst = |a: u128| (slot::NW_DST, a, 0xffff_ffff);
        let conj = |id: u32, k: u8, n: u8| Clause { id, k, n };
        let rules = [
            rule(0, 0, &[]),                                      // table miss
            rule(1, 10, &[ip, src(1)]),                           // conjunction(1234, 1/2)
            rule(2, 10, &[ip, src(4)]),                           // conjunction(1234, 1/2)
            rule(3, 10, &[ip, dst(2)]),                           // conjunction(1234, 2/2)
            rule(4, 10, &[ip, dst(5)]),                           // conjunction(1234, 2/2), conjunction(9, 2/2)
            rule(5, 3, &[(slot::CONJ_ID, 1234, 0xffff_ffff)]),    // conj_id=1234
            rule(6, 20, &[ip, src(4), dst(5)]),                   // above the conjunction
            rule(7, 10, &[ip, src(6)]),                           // conjunction(9, 1/2): no conj_id=9 flow
            rule(8, 10, &[ip, dst(7)]),                           // ordinary, same priority as the clauses
            rule(9, 4, &[ip, src(1)]),                            // conjunction(77, 1/2), lower
            rule(10, 4, &[ip, dst(8)]),                           // conjunction(77, 2/2)
            rule(11, 1, &[(slot::CONJ_ID, 77, 0xffff_ffff), ip]), // conj_id=77
        ];
        let soft = vec![
            (1, vec![conj(1234, 1, 2)]),
            (2, vec![conj(1234, 1, 2)]),
            (3, vec![conj(1234, 2, 2)]),
            (4, vec![conj(1234, 2, 2), conj(9, 2, 2)]),
            (7, vec![conj(9, 1, 2)]),
            (9, vec![conj(77, 1, 2)]),
            (10, vec![conj(77, 2, 2)]),
        ];
        let c = Classifier::with_conjunctions(rules, soft);
        let v4 = |s: u128, d: u128| pkt(&[(slot::DL_TYPE, 0x0800), (slot::NW_SRC, s), (slot::NW_DST, d)]);
        let mut cache = FlowCache::default();
        for _ in 0..2 {
            for (s, d, want, why) in [
                (1, 2, 5, "both dimensions: the conj_id flow, whatever its own priority"),
                (4, 2, 5, "another value of dimension 1"),
                (1, 5, 5, "another value of dimension 2"),
                (1, 9, 0, "one dimension alone matches nothing"),
                (9, 2, 0, "the other dimension alone neither"),
                (4, 5, 6, "an ordinary flow above the conjunction wins"),
                (6, 5, 0, "conjunction 9 is complete but has no conj_id flow: as if it had not matched"),
                (1, 7, 8, "an ordinary flow at the clauses' priority wins over them"),
                (1, 8, 11, "a lower conjunction completes where the higher one does not"),
            ] {
                assert_eq!(c.classify(&v4(s, d)), Some(want), "{s} -> {d}: {why}");
                assert_eq!(cache.lookup(&c, &v4(s, d)), Some(want), "{s} -> {d} through the cache");
            }
        }
        // The clauses alone, with no conj_id flow and no table miss: nothing.
        let c = Classifier::with_conjunctions(
            [rule(0, 10, &[ip, src(1)]), rule(1, 10, &[ip, dst(2)])],
            vec![(0, vec![conj(1, 1, 2)]), (1, vec![conj(1, 2, 2)])],
        );
        assert_eq!(c.classify(&v4(1, 2)), None);
        // A key that meets more soft rules than a lookup weighs still finds its conjunction (the highest).
        let mut rules = vec![rule(0, 1, &[(slot::CONJ_ID, 5, 0xffff_ffff)])];
        let mut soft = Vec::new();
        for i in 1..=100u32 {
            rules.push(rule(i, 2 + i as u16 % 3, &[(slot::reg(i as usize % 16), 0, 0xffff_ff00 | i as u128)]));
            soft.push((i, vec![conj(1000 + i, 1, 2)]));
        }
        rules.push(rule(200, 9, &[ip]));
        rules.push(rule(201, 9, &[ip, src(1)]));
        soft.push((200, vec![conj(5, 1, 2)]));
        soft.push((201, vec![conj(5, 2, 2)]));
        let c = Classifier::with_conjunctions(rules, soft);
        assert_eq!(c.classify(&v4(1, 2)), Some(0));
    }

    #[test]
    fn the_cache_keys_on_registers_only_when_rules_look_at_them() {
        let c = Classifier::new([rule(
            0,
            10,
            &[(slot::DL_TYPE, 0x0800, 0xffff), (slot::NW_DST, 0x0a00_0001, 0xffff_ffff)],
        )]);
        let mut cache = FlowCache::default();
        for r in 0..100u128 {
            // Registers no rule looks at: one cache entry for all of them.
            let k = pkt(&[(slot::DL_TYPE, 0x0800), (slot::NW_DST, 0x0a00_0001), (slot::reg(1), r)]);
            assert_eq!(cache.lookup(&c, &k), Some(0));
        }
        assert_eq!(cache.len(), 1);
        // A register in a rule's mask is part of the match and of the cache's key.
        let c = Classifier::new([rule(0, 10, &[(slot::reg(3), 7, 0xffff_ffff)])]);
        let mut cache = FlowCache::default();
        assert_eq!(cache.lookup(&c, &pkt(&[(slot::reg(3), 7)])), Some(0));
        assert_eq!(cache.lookup(&c, &pkt(&[(slot::reg(3), 8)])), None);
        assert_eq!(cache.lookup(&c, &pkt(&[(slot::reg(3), 7), (slot::reg(2), 7)])), Some(0));
        assert_eq!(cache.len(), 3, "a table that looks at registers caches whole keys");
    }
}
