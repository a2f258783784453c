//! The connection tracker: ns per packet of an established connection (the `ct` lookup and its TCP window
//! update, the segment parsed beforehand), with 1, 1 000 and 100 000 connections in the table; a new
//! connection committed; and the memory 100 000 tracked connections take (printed, from the process's
//! resident size).
//!
//!     cargo bench --manifest-path bench/datapath/Cargo.toml --bench conntrack

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use weft_datapath::conntrack::packet::CtPacket;
use weft_datapath::conntrack::{CtArgs, Conntrack, Verdict};
use weft_datapath::headers::Headers;

fn tcp(src: u32, dst: u32, sport: u16, dport: u16, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40 + 100, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src.to_be_bytes());
    f.extend_from_slice(&dst.to_be_bytes());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.resize(14 + 40 + 100, 0xab);
    f
}

fn parse(f: &[u8]) -> CtPacket {
    CtPacket::parse(f, &Headers::parse(f)).expect("a TCP packet")
}

const COMMIT: CtArgs = CtArgs { zone: 0, commit: true, force: false, mark: None, label: None, nat: None, dry: false };
const LOOK: CtArgs = CtArgs { commit: false, ..COMMIT };

/// A tracker with `n` established connections (10.0.x.y:1000+i -> 10.1.0.1:80).
fn established(n: u32) -> Conntrack {
    let ct = Conntrack::new(42);
    for i in 0..n {
        let (c, s) = (0x0a00_0000 | i, 0x0a01_0001);
        let p = (1000 + i % 50_000) as u16;
        ct.execute(Some(&parse(&tcp(c, s, p, 80, 1000, 0, 0x02))), &COMMIT, 0);
        ct.execute(Some(&parse(&tcp(s, c, 80, p, 5000, 1001, 0x12))), &LOOK, 0);
        ct.execute(Some(&parse(&tcp(c, s, p, 80, 1001, 5001, 0x10))), &LOOK, 0);
    }
    ct
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack");
    for n in [1u32, 1_000, 100_000] {
        let ct = established(n);
        // One connection's data segments, parsed beforehand (64 of them, the window moving on and coming
        // round again: each is within a window of the last); what is timed is the lookup and the update.
        let (cl, sv) = (0x0a00_0000 | (n / 2), 0x0a01_0001);
        let port = (1000 + (n / 2) % 50_000) as u16;
        let pkts: Vec<CtPacket> =
            (0..64u32).map(|k| parse(&tcp(cl, sv, port, 80, 1001 + 100 * k, 5001, 0x10))).collect();
        let mut k = 0usize;
        g.bench_with_input(BenchmarkId::new("established_lookup", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) & 63;
                // By reference, as the switch reads the verdict where it lies.
                let v = ct.execute(Some(black_box(&pkts[k])), &LOOK, 1);
                black_box(&v);
            })
        });
    }
    // A new connection committed (and its slot used again, the table kept at a steady size).
    let ct = Conntrack::new(7);
    let syns: Vec<CtPacket> =
        (0..4096u32).map(|i| parse(&tcp(0x0b00_0000 | i, 0x0a01_0001, 1000, 80, 1, 0, 0x02))).collect();
    let mut i = 0usize;
    g.bench_function("commit_new", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            if i == 0 {
                ct.flush(None);
            }
            if let Verdict::Tracked(_) = ct.execute(Some(&syns[i]), &COMMIT, 0) {}
        })
    });
    g.finish();
    let before = rss_kb();
    let ct = established(100_000);
    let after = rss_kb();
    println!(
        "memory: 100000 tracked connections take {} KiB of resident memory ({} bytes each); {} in the table",
        after.saturating_sub(before),
        after.saturating_sub(before) * 1024 / 100_000,
        ct.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
