//! The whole switch per packet (`Switch::process`: VLAN, headers, NORMAL or the flow tables, emissions), the
//! figure the datapath workers multiply by their cores: a known unicast frame between two TAP ports through
//! NORMAL, the same to a VXLAN port (MTU check included), a broadcast flooded to 8 ports, and a frame through
//! a 1 000-rule table (exact-match cache hit) to an output, and through one rule in one table against a
//! four-table pipeline with registers (the OpenFlow pipeline's cost per table).
//!
//!     cargo bench --manifest-path bench/datapath/Cargo.toml --bench switch

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use weft_datapath::classifier::{slot, Classifier, FlowKey, Rule, Slot, SubSlot};
use weft_datapath::switch::pipeline::{ActRt, BridgeRt, PortDesc, PortKind, RuleRt, TableRt, TunnelPort};
use weft_datapath::switch::{Area, Buffers, Data, Input, Outputs, Pipeline, Quiet, Scratch, Switch};
use weft_datapath::tunnel::{Encap, TunnelSpec};
use weft_datapath::vlan::VlanMode;
use weft_datapath::PortIdx;

fn port(name: &str, ofport: u32, kind: PortKind) -> PortDesc {
    PortDesc { name: name.into(), ofport, bridge: 0, vlan: VlanMode::default(), kind, of_config: 0 }
}

fn vxlan() -> PortKind {
    let remote: IpAddr = "192.0.2.12".parse().unwrap();
    let spec = TunnelSpec::new(Encap::Vxlan, remote, 42);
    PortKind::Tunnel(TunnelPort {
        spec,
        dest: SocketAddr::new(remote, 4789),
        mtu: 1450,
        remotes: vec![remote].into(),
        proxy: false,
        header: Arc::from(&[0u8; 8][..]),
        known_options: Arc::from(&[][..]),
    })
}

/// A bridge with its internal port, 8 TAPs and a VXLAN port; with `rules`, a table of that many rules that
/// send nw_dst 10.0.x.y to port 2, and one more for the benchmark's frame.
fn pipeline(rules: usize) -> Arc<Pipeline> {
    let mut ports = vec![port("br0", 0xffff_fffe, PortKind::Tap { vnet_hdr: true })];
    for i in 1..=8 {
        ports.push(port(&format!("p{i}"), i, PortKind::Tap { vnet_hdr: true }));
    }
    ports.push(port("vx1", 9, vxlan()));
    let tables = if rules == 0 {
        Vec::new()
    } else {
        let mut entries = Vec::new();
        let mut actions = Vec::new();
        for i in 0..=rules {
            let (mut key, mut mask) = (FlowKey::default(), FlowKey::default());
            key.put(slot::DL_TYPE, 0x0800);
            mask.put(slot::DL_TYPE, 0xffff);
            let dst = if i == rules { 0xc633_6402 } else { 0x0a00_0000 + i as u128 };
            key.put(slot::NW_DST, dst);
            mask.put(slot::NW_DST, 0xffff_ffff);
            entries.push(Rule { key, mask, priority: 100, id: i as u32 });
            actions.push(RuleRt { id: i as u64 + 1, cookie: 0, table_miss: false, actions: vec![ActRt::Output(PortIdx(2))] });
        }
        vec![TableRt { classifier: Classifier::new(entries), rules: actions }]
    };
    let bridge = BridgeRt {
        name: "br0".into(),
        aging_secs: 300,
        table_size: 8192,
        ports: (0..ports.len()).map(|i| PortIdx(i as u16)).collect(),
        has_proxy: false,
        statics: Vec::new(),
        groups: Vec::new(),
        meters: Vec::new(),
        fail_open: Default::default(),
        default_flow: tables.is_empty().then_some(1),
        cts: Vec::new(),
        tun: Default::default(),
        tables,
    };
    Arc::new(Pipeline::new(1, vec![bridge], ports, Vec::new()))
}

/// The same ports with a pipeline of four tables, each one flow matching what the one before wrote: table 0
/// matches the input port and loads reg0, resubmits to table 1, which matches reg0, loads reg1 and goes to
/// table 2, which moves reg1 into the metadata and goes to table 3, which matches the metadata and the
/// destination address and outputs (Neutron's and OVN's shape: classify, then act on registers).
fn register_pipeline() -> Arc<Pipeline> {
    let mut p = Arc::try_unwrap(pipeline(1)).expect("fresh");
    let table = |matches: &[(Slot, u128, u128)], actions: Vec<ActRt>| {
        let (mut key, mut mask) = (FlowKey::default(), FlowKey::default());
        for &(s, v, m) in matches {
            key.put(s, v);
            mask.put(s, m);
        }
        TableRt {
            classifier: Classifier::new([Rule { key, mask, priority: 100, id: 0 }]),
            rules: vec![RuleRt { id: 1, cookie: 0, table_miss: false, actions }],
        }
    };
    let all = |s: Slot| Slot::bits_mask(0, s.bits);
    let set = |s: Slot, v: u128| ActRt::SetBits { slot: s, value: v, mask: all(s) };
    let r0 = slot::reg(0);
    let r1 = slot::reg(1);
    p.bridges[0].tables = vec![
        table(&[(slot::IN_PORT, 1, all(slot::IN_PORT))], vec![set(r0, 7), ActRt::Resubmit { port: None, table: Some(1) }]),
        table(&[(r0, 7, all(r0))], vec![set(r1, 0x42), ActRt::GotoTable(2)]),
        table(
            &[(r1, 0x42, all(r1))],
            vec![
                ActRt::Move {
                    src: SubSlot { slot: r1, ofs: 0, nbits: 32 },
                    dst: SubSlot { slot: slot::METADATA, ofs: 8, nbits: 32 },
                },
                ActRt::GotoTable(3),
            ],
        ),
        table(
            &[(slot::METADATA, 0x4200, all(slot::METADATA)), (slot::NW_DST, 0xc633_6402, 0xffff_ffff)],
            vec![ActRt::Output(PortIdx(2))],
        ),
    ];
    Arc::new(p)
}

/// An Ethernet + IPv4 + UDP frame of 1000 bytes from `src` to `dst` (MAC address last bytes).
fn frame(dst: [u8; 6], src: u8) -> Vec<u8> {
    let mut f = vec![0u8; 1000];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&986u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[198, 51, 100, 1]);
    ip[16..20].copy_from_slice(&[198, 51, 100, 2]);
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&5201u16.to_be_bytes());
    f
}

struct Bench {
    sw: Switch,
    rx: Vec<u8>,
    seg: Vec<u8>,
    scratch: Scratch,
    outs: Outputs,
}

impl Bench {
    fn new(rules: usize) -> Bench {
        Bench::with(pipeline(rules))
    }

    fn with(p: Arc<Pipeline>) -> Bench {
        let mut sw = Switch::new();
        sw.install(p, 0);
        Bench { sw, rx: vec![0; 4096], seg: Vec::new(), scratch: Scratch::new(1 << 16), outs: Outputs::with_capacity(64) }
    }

    /// Switches `f` from port `from` (its bytes are put back first: a tag pop would have moved them).
    fn run(&mut self, f: &[u8], from: u16, remote: Option<IpAddr>) -> usize {
        self.rx[..f.len()].copy_from_slice(f);
        self.outs.clear();
        self.scratch.clear();
        let mut bufs = Buffers { rx: &mut self.rx, seg: &mut self.seg, scratch: &mut self.scratch };
        let input = Input { data: Data::new(Area::Rx, 0, f.len()), in_port: PortIdx(from), remote, stripped: None, gso: None, tun_md: Default::default() };
        self.sw.process(&mut bufs, input, 1_000_000_000, &mut self.outs, &mut Quiet);
        self.outs.sends.len()
    }
}

fn switch(c: &mut Criterion) {
    let mut g = c.benchmark_group("switch");
    let vtep: IpAddr = "192.0.2.12".parse().unwrap();
    // NORMAL, known unicast between two TAPs (both sources learned first).
    let mut b = Bench::new(0);
    b.run(&frame([0xff; 6], 2), 2, None);
    b.run(&frame([0xff; 6], 1), 1, None);
    let to_p2 = frame([2, 0, 0, 0, 0, 2], 1);
    assert_eq!(b.run(&to_p2, 1, None), 1);
    g.bench_function("normal_known_unicast", |bn| bn.iter(|| b.run(black_box(&to_p2), 1, None)));
    // NORMAL to a MAC learned behind the VXLAN port (the MTU check runs).
    b.run(&frame([0xff; 6], 9), 9, Some(vtep));
    let to_vx = frame([2, 0, 0, 0, 0, 9], 1);
    assert_eq!(b.run(&to_vx, 1, None), 1);
    g.bench_function("normal_to_vxlan", |bn| bn.iter(|| b.run(black_box(&to_vx), 1, None)));
    // A broadcast: flooded to 9 ports.
    let bcast = frame([0xff; 6], 1);
    assert_eq!(b.run(&bcast, 1, None), 9);
    g.bench_function("normal_flood_9_ports", |bn| bn.iter(|| b.run(black_box(&bcast), 1, None)));
    // 1 000 rules; the frame's flow is in the exact-match cache after the first packet.
    let mut t = Bench::new(1000);
    let f = frame([2, 0, 0, 0, 0, 2], 1);
    assert_eq!(t.run(&f, 1, None), 1);
    g.bench_function("flow_table_1000_rules_output", |bn| bn.iter(|| t.run(black_box(&f), 1, None)));
    // One rule in one table, and four tables with registers, resubmit, goto_table and move.
    let mut one = Bench::new(1);
    assert_eq!(one.run(&f, 1, None), 1);
    g.bench_function("flow_table_1_rule_output", |bn| bn.iter(|| one.run(black_box(&f), 1, None)));
    let mut four = Bench::with(register_pipeline());
    assert_eq!(four.run(&f, 1, None), 1, "the frame makes it through the four tables");
    g.bench_function("flow_4_tables_registers_output", |bn| bn.iter(|| four.run(black_box(&f), 1, None)));
    g.finish();
}

criterion_group!(benches, switch);
criterion_main!(benches);
