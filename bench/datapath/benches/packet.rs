//! The per-packet pieces of the datapath, one at a time: reading a tunnel header (decapsulate), writing one
//! (encapsulate), cutting a 64 KiB TCP frame into VXLAN datagrams (segment + encapsulate, as a UDP_SEGMENT
//! train is built), merging 45 received segments back into one frame (coalesce), the Internet checksum, and
//! MAC table lookups.
//!
//!     cargo bench --manifest-path bench/datapath/Cargo.toml --bench packet

use criterion::{black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use weft_datapath::fdb::Fdb;
use weft_datapath::gro::MergeRun;
use weft_datapath::offload::{segment, SegmentLayout, VnetHdr, F_NEEDS_CSUM, GSO_TCPV4};
use weft_datapath::tunnel::{decap, Encap};
use weft_datapath::PortIdx;
use weft_wire::checksum;
use weft_wire::vxlan::VxlanRepr;
use weft_wire::EthernetAddress;

/// An Ethernet + IPv4 + TCP (with timestamps) frame carrying `payload` bytes, checksum left partial as a
/// kernel with TSO hands it over, and its virtio-net header (segment size 1398: a 1450-byte overlay MTU).
fn tso_frame(payload: usize) -> (Vec<u8>, VnetHdr) {
    let mut f = vec![0u8; 14 + 20 + 32 + payload];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + 32 + payload) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[198, 51, 100, 1]);
    ip[16..20].copy_from_slice(&[198, 51, 100, 2]);
    let t = &mut f[34..66];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[12] = 8 << 4;
    t[13] = 0x10;
    t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3]);
    for (i, b) in f[66..].iter_mut().enumerate() {
        *b = (i * 13) as u8;
    }
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 66,
        gso_size: 1398,
        csum_start: 34,
        csum_offset: 16,
    };
    (f, hdr)
}

fn vxlan_head() -> [u8; 8] {
    let mut h = [0u8; 8];
    VxlanRepr { vni: 5000 }.emit(&mut h);
    h
}

fn tunnel(c: &mut Criterion) {
    let (frame, _) = tso_frame(1398 - 12);
    let mut pkt = vxlan_head().to_vec();
    pkt.extend_from_slice(&frame);
    let mut g = c.benchmark_group("tunnel");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decapsulate_vxlan", |b| b.iter(|| decap(Encap::Vxlan, true, black_box(&pkt))));
    let mut opts = Vec::new();
    weft_wire::geneve::encode_option(0x0102, 0x80, &[1, 2, 3, 4], &mut opts).expect("option");
    let mut geneve = vec![0u8; 8 + opts.len()];
    weft_wire::geneve::GeneveRepr { vni: 5000, protocol: 0x6558, oam: false, options: &opts }.emit(&mut geneve);
    geneve.extend_from_slice(&frame);
    g.bench_function("decapsulate_geneve_1_option", |b| b.iter(|| decap(Encap::Geneve, true, black_box(&geneve))));
    let mut out = vec![0u8; 2048];
    g.bench_function("encapsulate_vxlan_copy_1450", |b| {
        b.iter(|| {
            VxlanRepr { vni: black_box(5000) }.emit(&mut out[..8]);
            out[8..8 + frame.len()].copy_from_slice(black_box(&frame));
        })
    });
    g.finish();
}

fn offloads(c: &mut Criterion) {
    let (frame, hdr) = tso_frame(45 * 1398 - 12);
    let head = vxlan_head();
    let mut out = vec![0u8; 128 * 1024];
    let mut g = c.benchmark_group("offload");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("segment_64k_into_vxlan_train", |b| {
        b.iter(|| segment(black_box(&frame), &hdr, SegmentLayout { head: &head, tag: None }, &mut out, |_| {}))
    });
    // What the receive side sees: 45 datagrams, each a VXLAN header and a segment, one after another.
    let mut wire = vec![0u8; 128 * 1024];
    let mut ranges = Vec::new();
    let used = segment(&frame, &hdr, SegmentLayout { head: &head, tag: None }, &mut wire, |r| {
        ranges.push(r.start + 8..r.end)
    })
    .expect("segments");
    wire.truncate(used);
    g.bench_function("coalesce_45_segments", |b| {
        b.iter_batched_ref(
            || wire.clone(),
            |buf| {
                let len = buf.len();
                let mut run = MergeRun::start(buf, ranges[0].clone(), len).expect("a run");
                for r in &ranges[1..] {
                    assert!(run.append(buf, r.clone()));
                }
                run.finish(buf)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
    let mut g = c.benchmark_group("checksum");
    for len in [64usize, 1500, 65_536] {
        let data = vec![0xa5u8; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::from_parameter(len), &data, |b, d| b.iter(|| checksum::checksum(d)));
    }
    g.finish();
}

fn fdb(c: &mut Criterion) {
    let mut g = c.benchmark_group("fdb");
    g.throughput(Throughput::Elements(1));
    for n in [1_000usize, 100_000] {
        let mut f = Fdb::new(300, n + 1);
        let mac = |i: usize| EthernetAddress([2, 0, (i >> 24) as u8, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        for i in 0..n {
            f.learn(1, mac(i), PortIdx((i % 8) as u16), None, 1);
        }
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("lookup", n), |b| {
            b.iter(|| {
                i = (i + 7919) % n;
                f.lookup(1, mac(i), 2).map(|e| e.port)
            })
        });
        g.bench_function(BenchmarkId::new("learn_refresh", n), |b| {
            b.iter(|| {
                i = (i + 7919) % n;
                f.learn(1, mac(i), PortIdx(1), None, 3)
            })
        });
    }
    g.finish();
}

/// What sharing a MAC table between datapath workers would cost per frame (a learn, i.e. the source's
/// refresh, and a lookup of the destination), 100 000 entries: the table alone; behind a `Mutex` or an
/// `RwLock` with nobody else using it; and the same with a second thread doing the same work on the same
/// lock at once (`iter_custom`: the time per frame seen by one of the two threads). For the workers of
/// issue 21: what a lock on the fast path costs here before any design is chosen.
fn fdb_shared(c: &mut Criterion) {
    use std::sync::{Arc, Mutex, RwLock};
    use std::time::{Duration, Instant};
    const N: usize = 100_000;
    fn mac(i: usize) -> EthernetAddress {
        EthernetAddress([2, 0, (i >> 24) as u8, (i >> 16) as u8, (i >> 8) as u8, i as u8])
    }
    fn frame(f: &mut Fdb, i: usize) -> Option<PortIdx> {
        f.learn(1, mac(i), PortIdx((i % 8) as u16), None, 3);
        f.lookup(1, mac((i + 1) % N), 3).map(|e| e.port)
    }
    let n = N;
    let table = || {
        let mut f = Fdb::new(300, n + 1);
        for i in 0..n {
            f.learn(1, mac(i), PortIdx((i % 8) as u16), None, 1);
        }
        f
    };
    let mut g = c.benchmark_group("fdb_shared");
    g.throughput(Throughput::Elements(1));
    let mut f = table();
    let mut i = 0usize;
    g.bench_function("alone", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            frame(&mut f, i)
        })
    });
    let m = Mutex::new(table());
    g.bench_function("mutex_uncontended", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            let mut f = m.lock().unwrap();
            frame(&mut f, i)
        })
    });
    let rw = RwLock::new(table());
    g.bench_function("rwlock_read_lookup_uncontended", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            let f = rw.read().unwrap();
            f.lookup(1, mac(i), 3).map(|e| e.port)
        })
    });
    // Two threads on one mutex: each does `iters` frames; the figure is one thread's time per frame.
    let shared = Arc::new(Mutex::new(table()));
    g.bench_function("mutex_two_threads", |b| {
        b.iter_custom(|iters| {
            let other = {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mut i = 1usize;
                    for _ in 0..iters {
                        i = (i + 7919) % N;
                        let mut f = shared.lock().unwrap();
                        std::hint::black_box(frame(&mut f, i));
                    }
                })
            };
            let t = Instant::now();
            let mut i = 0usize;
            for _ in 0..iters {
                i = (i + 7919) % n;
                let mut f = shared.lock().unwrap();
                std::hint::black_box(frame(&mut f, i));
            }
            let d = t.elapsed();
            other.join().unwrap();
            d.max(Duration::from_nanos(1))
        })
    });
    // Two threads reading through one RwLock (lookups only: no writer at all).
    let shared = Arc::new(RwLock::new(table()));
    g.bench_function("rwlock_read_lookup_two_threads", |b| {
        b.iter_custom(|iters| {
            let other = {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mut i = 1usize;
                    for _ in 0..iters {
                        i = (i + 7919) % N;
                        let f = shared.read().unwrap();
                        std::hint::black_box(f.lookup(1, mac(i), 3).map(|e| e.port));
                    }
                })
            };
            let t = Instant::now();
            let mut i = 0usize;
            for _ in 0..iters {
                i = (i + 7919) % N;
                let f = shared.read().unwrap();
                std::hint::black_box(f.lookup(1, mac(i), 3).map(|e| e.port));
            }
            let d = t.elapsed();
            other.join().unwrap();
            d.max(Duration::from_nanos(1))
        })
    });
    g.finish();
}

/// ESP with AES-256-GCM: sealing a 1450-byte VXLAN packet (headers, padding, encryption in place) and
/// opening it again (replay check, decryption, ICV).
fn esp(c: &mut Criterion) {
    use weft_ipsec::crypto::Gcm;
    use weft_ipsec::esp::{Inbound, Outbound, HEAD};
    let mut g = c.benchmark_group("esp");
    for len in [64usize, 1450] {
        g.throughput(Throughput::Bytes(len as u64));
        let key = [7u8; 36];
        let mut out = Outbound::new(0x100, Gcm::new(&key).expect("key"));
        let mut buf = vec![0u8; 2048];
        g.bench_with_input(BenchmarkId::new("seal", len), &len, |b, &len| {
            b.iter(|| out.seal(black_box(&mut buf), len, 17).expect("room"))
        });
        // Opening needs a fresh sequence number each time: seal a ring of packets first.
        let mut sealer = Outbound::new(0x100, Gcm::new(&key).expect("key"));
        let packets: Vec<Vec<u8>> = (0..100_000)
            .map(|_| {
                let mut p = vec![0u8; HEAD + len + 64];
                let n = sealer.seal(&mut p, len, 17).expect("room");
                p.truncate(n);
                p
            })
            .collect();
        let mut inb = Inbound::new(0x100, Gcm::new(&key).expect("key"));
        let mut i = 0;
        g.bench_function(BenchmarkId::new("open", len), |b| {
            b.iter_batched_ref(
                || {
                    i = (i + 1) % packets.len();
                    packets[i].clone()
                },
                |p| {
                    let r = inb.open(p).map(|(nh, r)| (nh, r.len()));
                    if r.is_err() {
                        // The ring wrapped around: a fresh SA (one iteration in 100 000).
                        inb = Inbound::new(0x100, Gcm::new(&key).expect("key"));
                    }
                    r
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, tunnel, offloads, fdb, fdb_shared, esp);
criterion_main!(benches);
