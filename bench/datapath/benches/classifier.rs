//! The flow classifier: ns per lookup for exact-match cache hits and for full classification, with 10,
//! 1 000, 10 000 and 100 000 rules over up to 16 different masks (subtables), and the time to build a table.
//!
//!     cargo bench --manifest-path bench/datapath/Cargo.toml

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use weft_datapath::classifier::{slot, Classifier, FlowCache, FlowKey, Rule, Slot};

/// A small deterministic generator (xorshift), so every run classifies the same rules and packets.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// 16 match shapes, as flows in the wild use them: (slot, mask) pairs.
fn shapes() -> Vec<Vec<(Slot, u128)>> {
    let ip = (slot::DL_TYPE, 0xffff);
    let ip6 = (slot::DL_TYPE, 0xffff);
    vec![
        vec![ip, (slot::NW_DST, 0xffff_ff00)],
        vec![ip, (slot::NW_DST, 0xffff_0000)],
        vec![ip, (slot::NW_DST, 0xffff_ffff)],
        vec![ip, (slot::NW_SRC, 0xffff_ff00), (slot::NW_DST, 0xffff_ff00)],
        vec![ip, (slot::NW_PROTO, 0xff), (slot::TP_DST, 0xffff)],
        vec![ip, (slot::NW_PROTO, 0xff), (slot::NW_DST, 0xffff_ff00), (slot::TP_DST, 0xffff)],
        vec![ip, (slot::NW_PROTO, 0xff), (slot::TP_SRC, 0xffff), (slot::TP_DST, 0xffff)],
        vec![(slot::IN_PORT, 0xffff_ffff)],
        vec![(slot::DL_DST, 0xffff_ffff_ffff)],
        vec![(slot::IN_PORT, 0xffff_ffff), (slot::DL_SRC, 0xffff_ffff_ffff)],
        vec![ip6, (slot::NW_DST, u128::MAX << 64)],
        vec![ip6, (slot::NW_DST, u128::MAX)],
        vec![(slot::DL_TYPE, 0xffff)],
        vec![(slot::VLAN_TCI, 0x1fff)],
        vec![(slot::TUN_ID, u128::from(u64::MAX))],
        vec![(slot::TUN_ID, u128::from(u64::MAX)), (slot::DL_DST, 0xffff_ffff_ffff)],
    ]
}

/// `n` rules spread over the 16 shapes, and packets built to match rules (half) or nothing in particular.
fn setup(n: usize) -> (Classifier, Vec<FlowKey>) {
    let shapes = shapes();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut rules = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let shape = &shapes[i % shapes.len()];
        let (mut key, mut mask) = (FlowKey::default(), FlowKey::default());
        for &(s, m) in shape {
            let v = (u128::from(rng.next()) << 64 | u128::from(rng.next())) & m;
            let v = if s == slot::DL_TYPE { 0x0800 } else { v };
            key.put(s, v);
            mask.put(s, m);
        }
        keys.push(key);
        rules.push(Rule { key, mask, priority: (rng.next() % 1000) as u16, id: i as u32 });
    }
    let mut packets = Vec::with_capacity(1024);
    for i in 0..1024 {
        let mut k = keys[(rng.next() as usize) % keys.len()];
        if i % 2 == 1 {
            // Unrelated bits everywhere the rules may not look.
            k.put(slot::TP_SRC, u128::from(rng.next() as u16));
            k.put(slot::NW_SRC, u128::from(rng.next() as u32));
        }
        packets.push(k);
    }
    (Classifier::new(rules), packets)
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("classifier");
    for n in [10usize, 1_000, 10_000, 100_000] {
        let (cls, packets) = setup(n);
        assert!(cls.subtables() <= 16);
        g.bench_with_input(BenchmarkId::new("full_lookup", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(cls.classify(black_box(&packets[i])))
            })
        });
        let mut cache = FlowCache::default();
        for p in &packets {
            cache.lookup(&cls, p);
        }
        g.bench_with_input(BenchmarkId::new("cache_hit", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(cache.lookup(&cls, black_box(&packets[i])))
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("build");
    g.sample_size(10);
    for n in [10_000usize, 100_000] {
        g.bench_with_input(BenchmarkId::new("classifier_new", n), &n, |b, &n| {
            b.iter_batched(
                || {
                    let (c, _) = setup(n);
                    drop(c);
                    n
                },
                |n| black_box(setup(n).0.len()),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
