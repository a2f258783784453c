//! The switch tested as OVS tests ofproto-dpif: frames in, emissions out, deterministic, no sockets, no root.

use super::pipeline::*;
use super::*;
use crate::classifier::{Classifier, Rule, Slot};
use crate::tunnel::{Encap, TunnelSpec};
use crate::vlan::VlanMode;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use weft_wire::arp::{ArpRepr, PACKET_LEN as ARP_LEN};
use weft_wire::ipv4::{Ipv4Repr, Protocol};
use weft_wire::ipv6::Ipv6Repr;

const A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xa]);
const B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xb]);
const C: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xc]);
const BCAST: EthernetAddress = EthernetAddress::BROADCAST;

// ---- Building pipelines ----

/// A pipeline under construction: bridges, each with its internal port first, then the ports added to it.
#[derive(Default)]
struct Net {
    ports: Vec<PortDesc>,
    bridges: Vec<BridgeRt>,
    demux: Vec<super::demux::Demux>,
}

fn tunnel_spec(remote: &str, vni: u32) -> TunnelSpec {
    TunnelSpec::new(Encap::Vxlan, remote.parse().unwrap(), vni)
}

impl Net {
    fn bridge(mut self, name: &str) -> Net {
        self.bridges.push(BridgeRt {
            name: name.into(),
            aging_secs: 300,
            table_size: 8192,
            ports: Vec::new(),
            has_proxy: false,
            statics: Vec::new(),
            tables: Vec::new(),
            default_flow: Some(1),
        });
        self.port(name, OFPORT_LOCAL, PortKind::Tap { vnet_hdr: true })
    }

    fn port(mut self, name: &str, ofport: u32, kind: PortKind) -> Net {
        let bridge = self.bridges.len() - 1;
        let idx = PortIdx(self.ports.len() as u16);
        if matches!(&kind, PortKind::Tunnel(t) if t.proxy) {
            self.bridges[bridge].has_proxy = true;
        }
        self.ports.push(PortDesc { name: name.into(), ofport, bridge, vlan: VlanMode::default(), kind });
        self.bridges[bridge].ports.push(idx);
        self
    }

    fn tap(self, name: &str, ofport: u32) -> Net {
        self.port(name, ofport, PortKind::Tap { vnet_hdr: true })
    }

    fn tunnel_with(self, name: &str, ofport: u32, spec: TunnelSpec, remotes: &[&str], mtu: u16, proxy: bool) -> Net {
        let remotes: Vec<IpAddr> = remotes.iter().map(|r| r.parse().unwrap()).collect();
        let t = TunnelPort {
            spec,
            dest: SocketAddr::new(spec.remote, spec.dst_port),
            mtu,
            remotes: remotes.into(),
            proxy,
            header: Arc::from(&[0u8; 8][..]),
            known_options: Arc::from(&[][..]),
        };
        self.port(name, ofport, PortKind::Tunnel(t))
    }

    fn tunnel(self, name: &str, ofport: u32, remote: &str, vni: u32) -> Net {
        self.tunnel_with(name, ofport, tunnel_spec(remote, vni), &[remote], 1450, false)
    }

    fn vlan(mut self, name: &str, tag: Option<u16>, trunks: &[u16]) -> Net {
        let i = self.idx(name);
        self.ports[usize::from(i.0)].vlan = VlanMode::new(tag, trunks);
        self
    }

    fn limits(mut self, aging_secs: u32, table_size: usize) -> Net {
        let b = self.bridges.last_mut().unwrap();
        b.aging_secs = aging_secs;
        b.table_size = table_size;
        self
    }

    fn idx(&self, name: &str) -> PortIdx {
        PortIdx(self.ports.iter().position(|p| p.name == name).unwrap_or_else(|| panic!("no port {name}")) as u16)
    }

    /// Adds flow table `table` to the last bridge: (priority, matches, actions) with flow ids from 100 on.
    fn table(mut self, table: usize, flows: Vec<FlowSpec>) -> Net {
        let b = self.bridges.last_mut().unwrap();
        b.default_flow = None;
        while b.tables.len() <= table {
            b.tables.push(TableRt { classifier: Classifier::new(Vec::new()), rules: Vec::new() });
        }
        let mut rules = Vec::new();
        let mut entries = Vec::new();
        for (i, (priority, matches, actions)) in flows.into_iter().enumerate() {
            let (mut key, mut mask) = (FlowKey::default(), FlowKey::default());
            for (s, v, m) in matches {
                key.put(s, v);
                mask.put(s, m);
            }
            entries.push(Rule { key, mask, priority, id: i as u32 });
            rules.push(RuleRt { id: 100 * (table as u64 + 1) + i as u64, cookie: 0xc0 + i as u64, actions });
        }
        b.tables[table] = TableRt { classifier: Classifier::new(entries), rules };
        self
    }

    fn build(self) -> Arc<Pipeline> {
        Arc::new(Pipeline { generation: 1, bridges: self.bridges, ports: self.ports, demux: self.demux })
    }
}

/// A flow for [`Net::table`]: priority, matches (slot, value, mask) and actions.
type FlowSpec = (u16, Vec<(Slot, u128, u128)>, Vec<ActRt>);

/// An exact match on `s`.
fn m(s: Slot, v: u128) -> (Slot, u128, u128) {
    (s, v, u128::MAX)
}

// ---- Running frames ----

/// A sent frame as it would leave: the bytes with its tag put back, and where to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Out {
    port: String,
    frame: Vec<u8>,
    remote: Option<IpAddr>,
    vni: Option<u32>,
    gso: Option<VnetHdr>,
}

struct Harness {
    sw: Switch,
    rx: Vec<u8>,
    seg: Vec<u8>,
    scratch: Scratch,
    outs: Outputs,
    now: Nanos,
}

impl Harness {
    fn new(p: Arc<Pipeline>) -> Harness {
        let mut sw = Switch::new();
        sw.install(p, 0);
        Harness {
            sw,
            rx: vec![0; 1 << 17],
            seg: Vec::new(),
            scratch: Scratch::new(1 << 18),
            outs: Outputs::default(),
            now: SECOND,
        }
    }

    fn port(&self, name: &str) -> PortIdx {
        PortIdx(self.sw.pipeline().ports.iter().position(|p| p.name == name).unwrap() as u16)
    }

    fn input(
        &mut self,
        port: &str,
        frame: &[u8],
        remote: Option<&str>,
        stripped: Option<u16>,
        gso: Option<VnetHdr>,
    ) -> Input {
        self.outs.clear();
        self.scratch.clear();
        self.rx[..frame.len()].copy_from_slice(frame);
        Input {
            data: Data::new(Area::Rx, 0, frame.len()),
            in_port: self.port(port),
            remote: remote.map(|r| r.parse().unwrap()),
            stripped,
            gso,
        }
    }

    fn run(&mut self, input: Input, obs: &mut impl Observer) -> Vec<Out> {
        let mut bufs = Buffers { rx: &mut self.rx, seg: &mut self.seg, scratch: &mut self.scratch };
        self.sw.process(&mut bufs, input, self.now, &mut self.outs, obs);
        let bufs = Buffers { rx: &mut self.rx, seg: &mut self.seg, scratch: &mut self.scratch };
        self.outs.sends.iter().map(|e| resolve(&self.sw, &bufs, e)).collect()
    }

    fn send_from(&mut self, port: &str, frame: &[u8], remote: Option<&str>) -> Vec<Out> {
        let input = self.input(port, frame, remote, None, None);
        self.run(input, &mut Quiet)
    }

    fn send(&mut self, port: &str, frame: &[u8]) -> Vec<Out> {
        self.send_from(port, frame, None)
    }

    /// The ports a frame from `port` leaves by, sorted.
    fn ports(&mut self, port: &str, frame: &[u8]) -> Vec<String> {
        let mut v: Vec<String> = self.send(port, frame).into_iter().map(|o| o.port).collect();
        v.sort();
        v
    }

    fn drops(&mut self, port: &str, why: DropReason) -> u64 {
        let p = self.port(port);
        self.sw.counter(p).dropped(why)
    }
}

fn resolve(sw: &Switch, bufs: &Buffers, e: &Emission) -> Out {
    let data = bufs.get(e.data);
    let mut frame = data[..12].to_vec();
    if e.tagged {
        frame.extend_from_slice(&EtherType::VLAN.to_be_bytes());
        frame.extend_from_slice(&e.tci.to_be_bytes());
    }
    frame.extend_from_slice(&data[12..]);
    Out { port: sw.pipeline().port(e.port).name.clone(), frame, remote: e.remote, vni: e.vni, gso: e.gso }
}

// ---- Frames ----

fn eth(dst: EthernetAddress, src: EthernetAddress, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn raw(dst: EthernetAddress, src: EthernetAddress) -> Vec<u8> {
    eth(dst, src, 0x88b5, &[0u8; 46])
}

/// Inserts an 802.1Q tag with VLAN `vid` after the MAC addresses.
fn tagged(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&EtherType::VLAN.to_be_bytes());
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

/// An IPv4 UDP frame with `len` bytes of IP packet.
fn udp4(dst: EthernetAddress, src: EthernetAddress, len: usize, df: bool, dport: u16) -> Vec<u8> {
    let mut ip = vec![0u8; len];
    Ipv4Repr {
        src_addr: Ipv4Addr::new(198, 51, 100, 1),
        dst_addr: Ipv4Addr::new(198, 51, 100, 2),
        protocol: Protocol::UDP,
        payload_len: len - 20,
        hop_limit: 64,
        dscp_ecn: 0,
        ident: 7,
        dont_frag: df,
    }
    .emit(&mut ip);
    ip[20..22].copy_from_slice(&40000u16.to_be_bytes());
    ip[22..24].copy_from_slice(&dport.to_be_bytes());
    ip[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    eth(dst, src, EtherType::IPV4, &ip)
}

/// An IPv6 UDP frame with `len` bytes of IP packet.
fn udp6(dst: EthernetAddress, src: EthernetAddress, len: usize) -> Vec<u8> {
    let mut ip = vec![0u8; len];
    Ipv6Repr {
        src_addr: "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
        dst_addr: "2001:db8::2".parse::<Ipv6Addr>().unwrap(),
        next_header: Protocol::UDP,
        payload_len: len - 40,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut ip);
    ip[40..42].copy_from_slice(&40000u16.to_be_bytes());
    ip[42..44].copy_from_slice(&53u16.to_be_bytes());
    eth(dst, src, EtherType::IPV6, &ip)
}

fn arp(op: u16, dst: EthernetAddress, sha: EthernetAddress, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; ARP_LEN];
    ArpRepr {
        operation: op,
        sender_hardware_addr: sha,
        sender_protocol_addr: spa.into(),
        target_hardware_addr: EthernetAddress::ZERO,
        target_protocol_addr: tpa.into(),
    }
    .emit(&mut p);
    eth(dst, sha, EtherType::ARP, &p)
}

fn two_taps() -> Net {
    Net::default().bridge("br0").tap("p1", 1).tap("p2", 2).tap("p3", 3)
}

// ---- Learning and flooding ----

#[test]
fn unknown_unicast_floods_to_every_port_but_the_input() {
    let mut h = Harness::new(two_taps().build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["br0", "p2", "p3"]);
}

#[test]
fn broadcast_floods_and_teaches_the_source() {
    let mut h = Harness::new(two_taps().build());
    assert_eq!(h.ports("p1", &raw(BCAST, A)), ["br0", "p2", "p3"]);
    assert_eq!(h.ports("p2", &raw(A, B)), ["p1"], "A was learned on p1");
}

#[test]
fn a_frame_for_its_own_port_goes_nowhere() {
    let mut h = Harness::new(two_taps().build());
    h.send("p1", &raw(BCAST, A));
    h.send("p1", &raw(BCAST, B));
    assert!(h.send("p1", &raw(A, B)).is_empty());
}

#[test]
fn a_station_that_moves_is_learned_again() {
    let mut h = Harness::new(two_taps().build());
    h.send("p1", &raw(BCAST, A));
    h.send("p2", &raw(BCAST, A));
    assert_eq!(h.ports("p3", &raw(A, C)), ["p2"]);
    assert_eq!(h.sw.fdb_stats("br0").unwrap().moves, 1);
}

#[test]
fn multicast_sources_are_never_learned() {
    let mut h = Harness::new(two_taps().build());
    let mcast = EthernetAddress([1, 0, 0x5e, 0, 0, 1]);
    h.send("p1", &raw(BCAST, mcast));
    assert_eq!(h.sw.fdb_stats("br0").unwrap().entries, 0);
}

#[test]
fn entries_age_out_on_the_timer() {
    let mut h = Harness::new(two_taps().limits(10, 8192).build());
    h.send("p1", &raw(BCAST, A));
    assert_eq!(h.sw.fdb_rows("br0", h.now).unwrap().len(), 1);
    h.sw.tick(h.now + 11 * SECOND);
    assert!(h.sw.fdb_rows("br0", h.now + 11 * SECOND).unwrap().is_empty());
    assert_eq!(h.sw.fdb_stats("br0").unwrap().aged, 1);
}

#[test]
fn a_full_table_counts_and_reports_once() {
    let mut h = Harness::new(two_taps().limits(300, 2).build());
    for i in 0..5u8 {
        h.send("p1", &raw(BCAST, EthernetAddress([2, 0, 0, 1, 0, i])));
    }
    assert_eq!(h.sw.fdb_stats("br0").unwrap().entries, 2);
    assert_eq!(h.drops("p1", DropReason::FdbFull), 3);
    // Reported on the first miss only (the log is rate-limited): the last frame's outputs say nothing.
    assert!(h.outs.events.is_empty());
    let input = h.input("p1", &raw(BCAST, C), None, None, None);
    h.now += 11 * SECOND;
    h.run(input, &mut Quiet);
    assert!(matches!(h.outs.events[..], [Event::MacTableFull { entries: 2, .. }]), "{:?}", h.outs.events);
}

#[test]
fn frames_shorter_than_an_ethernet_header_are_dropped_as_malformed() {
    let mut h = Harness::new(two_taps().build());
    assert!(h.send("p1", &[0u8; 10]).is_empty());
    assert_eq!(h.drops("p1", DropReason::Malformed), 1);
}

#[test]
fn the_default_flow_and_table_zero_count_every_frame() {
    let mut h = Harness::new(two_taps().build());
    for _ in 0..3 {
        h.send("p1", &raw(BCAST, A));
    }
    let stats = h.sw.flow_stats("br0", h.now).unwrap();
    assert_eq!(stats, [(1, 3, 180, 0)]);
    assert_eq!(h.sw.table_stats("br0").unwrap(), [(3, 3)]);
}

#[test]
fn flushing_forgets_learned_entries_but_not_static_ones() {
    let mut net = two_taps();
    net.bridges[0].statics.push((0, C, PortIdx(3), None));
    let mut h = Harness::new(net.build());
    h.send("p1", &raw(BCAST, A));
    assert_eq!(h.sw.fdb_rows("br0", h.now).unwrap().len(), 2);
    assert!(h.sw.fdb_flush("br0"));
    let rows = h.sw.fdb_rows("br0", h.now).unwrap();
    assert_eq!((rows.len(), rows[0].mac, rows[0].port.as_str()), (1, C, "p3"));
    assert_eq!(h.ports("p1", &raw(C, A)), ["p3"], "the static entry forwards");
    assert!(!h.sw.fdb_flush("nope"));
}

// ---- VLANs ----

fn vlan_net() -> Net {
    Net::default()
        .bridge("br0")
        .tap("a10", 1)
        .vlan("a10", Some(10), &[])
        .tap("a20", 2)
        .vlan("a20", Some(20), &[])
        .tap("trunk", 3)
        .vlan("trunk", None, &[10, 20])
        .tap("b10", 4)
        .vlan("b10", Some(10), &[])
}

#[test]
fn an_access_port_floods_only_within_its_vlan_and_trunks_tag_it() {
    let mut h = Harness::new(vlan_net().build());
    let out = h.send("a10", &raw(BCAST, A));
    let mut ports: Vec<&str> = out.iter().map(|o| o.port.as_str()).collect();
    ports.sort();
    assert_eq!(ports, ["b10", "br0", "trunk"], "the internal port is a trunk of every VLAN");
    let trunk = out.iter().find(|o| o.port == "trunk").unwrap();
    assert_eq!(trunk.frame, tagged(&raw(BCAST, A), 10));
    let access = out.iter().find(|o| o.port == "b10").unwrap();
    assert_eq!(access.frame, raw(BCAST, A), "access ports send untagged");
}

#[test]
fn a_tagged_frame_from_a_trunk_reaches_its_vlan_untagged() {
    let mut h = Harness::new(vlan_net().build());
    let out = h.send("trunk", &tagged(&raw(BCAST, A), 20));
    let a20 = out.iter().find(|o| o.port == "a20").unwrap();
    assert_eq!(a20.frame, raw(BCAST, A));
    assert_eq!(out.iter().map(|o| o.port.as_str()).collect::<Vec<_>>(), ["br0", "a20"]);
}

#[test]
fn a_tag_the_kernel_stripped_counts_as_the_frame_tag() {
    let mut h = Harness::new(vlan_net().build());
    let input = h.input("trunk", &raw(BCAST, A), None, Some(20), None);
    let out = h.run(input, &mut Quiet);
    assert_eq!(out.iter().map(|o| o.port.as_str()).collect::<Vec<_>>(), ["br0", "a20"]);
    assert_eq!(out[0].frame, tagged(&raw(BCAST, A), 20), "the internal port (a trunk) gets it tagged");
}

#[test]
fn a_vlan_the_port_does_not_carry_is_dropped() {
    let mut h = Harness::new(vlan_net().build());
    assert!(h.send("trunk", &tagged(&raw(BCAST, A), 30)).is_empty());
    assert!(h.send("a10", &tagged(&raw(BCAST, A), 20)).is_empty(), "an access port takes no other VLAN's tags");
    assert_eq!(h.drops("trunk", DropReason::Vlan), 1);
    assert_eq!(h.drops("a10", DropReason::Vlan), 1);
}

#[test]
fn learning_is_per_vlan() {
    let mut h = Harness::new(vlan_net().build());
    h.send("a10", &raw(BCAST, A));
    // A is known in VLAN 10, not in VLAN 20: a frame to A in VLAN 20 floods there.
    let out = h.send("trunk", &tagged(&raw(A, B), 20));
    assert_eq!(out.iter().map(|o| o.port.as_str()).collect::<Vec<_>>(), ["br0", "a20"]);
    let out = h.send("trunk", &tagged(&raw(A, B), 10));
    assert_eq!(out.iter().map(|o| o.port.as_str()).collect::<Vec<_>>(), ["a10"]);
}

// ---- Tunnels ----

fn tunnels() -> Net {
    Net::default().bridge("br0").tap("p1", 1).tunnel("vx1", 2, "192.0.2.12", 42).tunnel("vx2", 3, "192.0.2.13", 42)
}

#[test]
fn a_flood_goes_to_each_tunnel_without_a_named_vtep() {
    let mut h = Harness::new(tunnels().build());
    let out = h.send("p1", &raw(BCAST, A));
    let vx: Vec<_> = out.iter().filter(|o| o.port.starts_with("vx")).collect();
    assert_eq!(vx.len(), 2);
    assert!(vx.iter().all(|o| o.remote.is_none() && o.vni.is_none()));
}

#[test]
fn a_source_behind_a_tunnel_is_learned_with_its_vtep() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    let out = h.send("p1", &raw(B, A));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].port.as_str(), out[0].remote), ("vx1", Some("192.0.2.12".parse().unwrap())));
    let rows = h.sw.fdb_rows("br0", h.now).unwrap();
    assert_eq!(rows.iter().find(|r| r.mac == B).unwrap().remote, Some("192.0.2.12".parse().unwrap()));
}

#[test]
fn a_flood_from_a_tunnel_never_goes_back_into_it() {
    let net = Net::default().bridge("br0").tap("p1", 1).tunnel_with(
        "her",
        2,
        tunnel_spec("192.0.2.12", 7),
        &["192.0.2.12", "192.0.2.13"],
        1450,
        false,
    );
    let mut h = Harness::new(net.build());
    assert_eq!(
        h.send_from("her", &raw(BCAST, B), Some("192.0.2.12")).iter().map(|o| o.port.as_str()).collect::<Vec<_>>(),
        ["br0", "p1"]
    );
}

#[test]
fn the_control_plane_installs_macs_and_flood_lists_and_takes_them_back() {
    let mut spec = tunnel_spec("0.0.0.0", 5);
    spec.flow = true;
    let net = Net::default().bridge("br0").tap("p1", 1).tunnel_with("vxf", 2, spec, &[], 1450, false);
    let mut h = Harness::new(net.build());
    let vteps: Arc<[IpAddr]> = vec!["192.0.2.21".parse().unwrap(), "192.0.2.22".parse().unwrap()].into();
    let u = CpUpdate {
        origin: Some(Origin::Evpn),
        reset: false,
        flood: vec![("vxf".into(), vteps.clone())],
        install: vec![(0, B, "vxf".into(), "192.0.2.22".parse().unwrap())],
        remove: vec![],
    };
    assert!(h.sw.control_plane("br0", u));
    assert_eq!(h.sw.flood_list(h.port("vxf")), Some(&vteps));
    let out = h.send("p1", &raw(B, A));
    assert_eq!((out[0].port.as_str(), out[0].remote), ("vxf", Some("192.0.2.22".parse().unwrap())));
    let reset = CpUpdate { origin: Some(Origin::Evpn), reset: true, ..Default::default() };
    h.sw.control_plane("br0", reset);
    assert_eq!(h.sw.flood_list(h.port("vxf")), None);
    assert_eq!(h.ports("p1", &raw(B, A)), ["br0", "vxf"], "B is unknown again: flooded");
    assert!(!h.sw.control_plane("nope", CpUpdate::default()));
}

#[test]
fn frames_to_a_port_whose_link_is_down_are_counted_not_sent() {
    let mut h = Harness::new(two_taps().build());
    h.sw.set_link_down(["p2".to_string()].into_iter().collect());
    assert_eq!(h.ports("p1", &raw(BCAST, A)), ["br0", "p3"]);
    assert_eq!(h.drops("p2", DropReason::LinkDown), 1);
    h.sw.set_link_down(HashSet::new());
    assert_eq!(h.ports("p1", &raw(BCAST, A)), ["br0", "p2", "p3"]);
}

// ---- MTU ----

#[test]
fn a_df_frame_too_big_for_a_tunnel_is_answered_with_frag_needed() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    let out = h.send("p1", &udp4(B, A, 1451, true, 53));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].port, "p1", "the ICMP error goes back to the sender");
    let icmp = &out[0].frame;
    assert_eq!(&icmp[0..6], &A.0);
    assert_eq!((icmp[14 + 9], icmp[34], icmp[35]), (1, 3, 4), "ICMP type 3 code 4");
    assert_eq!(u16::from_be_bytes([icmp[40], icmp[41]]), 1450);
    assert_eq!(h.drops("vx1", DropReason::TooBig), 1);
    assert_eq!(h.send("p1", &udp4(B, A, 1450, true, 53))[0].port, "vx1", "1450 bytes fit");
}

#[test]
fn without_df_the_underlay_may_fragment_unless_the_tunnel_sets_df() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    assert_eq!(h.send("p1", &udp4(B, A, 1480, false, 53))[0].port, "vx1");
    let mut spec = tunnel_spec("192.0.2.12", 42);
    spec.df = true;
    let net = Net::default().bridge("br0").tap("p1", 1).tunnel_with("vx1", 2, spec, &["192.0.2.12"], 1450, false);
    let mut h = Harness::new(net.build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    assert!(h.send("p1", &udp4(B, A, 1480, false, 53)).is_empty(), "dropped, and nobody to tell");
    assert_eq!(h.drops("vx1", DropReason::TooBig), 1);
}

#[test]
fn an_ipv6_frame_too_big_is_answered_with_packet_too_big() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    let out = h.send("p1", &udp6(B, A, 1500));
    assert_eq!(out.len(), 1);
    let f = &out[0].frame;
    assert_eq!((out[0].port.as_str(), f[14 + 6], f[54]), ("p1", 58, 2), "ICMPv6 packet too big");
    assert_eq!(u32::from_be_bytes([f[58], f[59], f[60], f[61]]), 1450);
}

#[test]
fn a_tag_the_tunnel_carries_takes_four_bytes_of_room() {
    let net = Net::default()
        .bridge("br0")
        .tap("p1", 1)
        .vlan("p1", Some(10), &[])
        .tunnel("vx1", 2, "192.0.2.12", 42)
        .vlan("vx1", None, &[10]);
    let mut h = Harness::new(net.build());
    h.send_from("vx1", &tagged(&raw(BCAST, B), 10), Some("192.0.2.12"));
    let out = h.send("p1", &udp4(B, A, 1450, true, 53));
    assert_eq!(out[0].port, "p1", "too big once tagged: {out:?}");
    assert_eq!(u16::from_be_bytes([out[0].frame[40], out[0].frame[41]]), 1446);
    assert_eq!(h.send("p1", &udp4(B, A, 1446, true, 53))[0].frame, tagged(&udp4(B, A, 1446, true, 53), 10));
}

#[test]
fn icmp_errors_are_limited_to_a_thousand_a_second() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    let big = udp4(B, A, 1500, true, 53);
    let answered = (0..1010).filter(|_| !h.send("p1", &big).is_empty()).count();
    assert_eq!(answered, 1000);
    h.now += SECOND;
    assert_eq!(h.send("p1", &big).len(), 1, "a new second, new tokens");
}

#[test]
fn an_offloaded_frame_goes_whole_when_its_segments_fit() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    let frame = udp4(B, A, 20 + 8 + 4000, true, 53);
    let gso = |size: u16| VnetHdr {
        flags: offload::F_NEEDS_CSUM,
        gso_type: offload::GSO_UDP_L4,
        hdr_len: 42,
        gso_size: size,
        csum_start: 34,
        csum_offset: 6,
    };
    let input = h.input("p1", &frame, None, None, Some(gso(1400)));
    let out = h.run(input, &mut Quiet);
    assert_eq!((out.len(), out[0].port.as_str(), out[0].gso), (1, "vx1", Some(gso(1400))));
    let input = h.input("p1", &frame, None, None, Some(gso(1440)));
    let out = h.run(input, &mut Quiet);
    assert_eq!(out[0].port, "p1", "segments of 1468 bytes do not fit 1450: {out:?}");
    assert_eq!(out[0].gso, None, "the ICMP error is an ordinary frame");
}

// ---- ARP suppression ----

fn proxy_net() -> Net {
    Net::default().bridge("br0").tap("p1", 1).tap("p2", 2).tunnel_with(
        "vx1",
        3,
        tunnel_spec("192.0.2.12", 9),
        &["192.0.2.12"],
        1450,
        true,
    )
}

#[test]
fn an_arp_request_for_a_known_address_is_answered_instead_of_crossing_the_tunnel() {
    let mut h = Harness::new(proxy_net().build());
    // B answers an earlier request from p2: its binding is learned.
    h.send("p2", &arp(2, A, B, [10, 0, 0, 2], [10, 0, 0, 1]));
    let out = h.send("p1", &arp(1, BCAST, A, [10, 0, 0, 1], [10, 0, 0, 2]));
    let mut ports: Vec<&str> = out.iter().map(|o| o.port.as_str()).collect();
    ports.sort();
    assert_eq!(ports, ["br0", "p1", "p2"], "answered on p1, still flooded locally, not into the proxy tunnel");
    let reply = &out.iter().find(|o| o.port == "p1").unwrap().frame;
    assert_eq!((&reply[0..6], &reply[6..12]), (&A.0[..], &B.0[..]));
    assert_eq!(u16::from_be_bytes([reply[20], reply[21]]), 2, "an ARP reply");
    assert_eq!(h.sw.counter(h.port("vx1")).nd_answered, 1);
}

#[test]
fn an_arp_request_for_an_unknown_address_crosses_the_tunnel() {
    let mut h = Harness::new(proxy_net().build());
    assert_eq!(h.ports("p1", &arp(1, BCAST, A, [10, 0, 0, 1], [10, 0, 0, 9])), ["br0", "p2", "vx1"]);
    assert_eq!(h.sw.counter(h.port("vx1")).nd_flooded, 1);
}

#[test]
fn without_a_proxy_tunnel_nothing_is_answered() {
    let mut h = Harness::new(tunnels().build());
    h.send("p1", &arp(2, BCAST, B, [10, 0, 0, 2], [10, 0, 0, 1]));
    let out = h.send("p1", &arp(1, BCAST, A, [10, 0, 0, 1], [10, 0, 0, 2]));
    assert_eq!(out.len(), 3, "flooded everywhere else: {out:?}");
    assert!(out.iter().all(|o| o.port != "p1"));
}

// ---- Flows ----

fn flows(t0: Vec<FlowSpec>) -> Net {
    two_taps().table(0, t0)
}

const P1: PortIdx = PortIdx(1);
const P2: PortIdx = PortIdx(2);
const P3: PortIdx = PortIdx(3);

#[test]
fn an_output_action_sends_to_that_port() {
    let mut h = Harness::new(flows(vec![(10, vec![], vec![ActRt::Output(P3)])]).build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p3"]);
}

#[test]
fn a_table_miss_drops_and_counts() {
    let mut h = Harness::new(flows(vec![(10, vec![m(slot::IN_PORT, 2)], vec![ActRt::Output(P3)])]).build());
    assert!(h.send("p1", &raw(B, A)).is_empty());
    assert_eq!(h.drops("p1", DropReason::NoFlow), 1);
    assert_eq!(h.sw.table_stats("br0").unwrap(), [(1, 0)]);
}

#[test]
fn a_flow_without_actions_drops_and_counts() {
    let mut h = Harness::new(flows(vec![(10, vec![], vec![])]).build());
    assert!(h.send("p1", &raw(B, A)).is_empty());
    assert_eq!(h.drops("p1", DropReason::FlowDrop), 1);
}

#[test]
fn the_highest_priority_match_wins() {
    let t = vec![
        (10, vec![], vec![ActRt::Output(P2)]),
        (20, vec![m(slot::DL_DST, u128::from(B.as_u64()))], vec![ActRt::Output(P3)]),
    ];
    let mut h = Harness::new(flows(t).build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p3"]);
    assert_eq!(h.ports("p1", &raw(C, A)), ["p2"]);
}

#[test]
fn flood_all_and_in_port_actions() {
    let mut h = Harness::new(flows(vec![(10, vec![], vec![ActRt::Flood])]).build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["br0", "p2", "p3"]);
    let mut h = Harness::new(flows(vec![(10, vec![], vec![ActRt::InPort])]).build());
    assert_eq!(h.ports("p2", &raw(B, A)), ["p2"]);
    let mut h = Harness::new(flows(vec![(10, vec![], vec![ActRt::Output(P1)])]).build());
    assert!(h.send("p1", &raw(B, A)).is_empty(), "output to the input port is skipped (OpenFlow needs in_port)");
}

#[test]
fn the_normal_action_runs_the_learning_switch() {
    let mut h = Harness::new(flows(vec![(10, vec![], vec![ActRt::Normal])]).build());
    h.send("p2", &raw(BCAST, B));
    assert_eq!(h.ports("p1", &raw(B, A)), ["p2"]);
}

#[test]
fn a_controller_action_hands_the_frame_over_with_its_cookie() {
    let mut h = Harness::new(flows(vec![(10, vec![], vec![ActRt::Controller(64)])]).build());
    assert!(h.send("p1", &raw(B, A)).is_empty());
    let c = h.outs.to_controller[0];
    assert_eq!((c.bridge, c.in_port, c.table, c.cookie, c.max_len), (0, P1, 0, 0xc0, 64));
}

#[test]
fn vlan_actions_change_the_tag_it_leaves_with() {
    let net = two_taps().vlan("p3", None, &[7]).table(
        0,
        vec![(10, vec![], vec![ActRt::ModVlanVid(7), ActRt::Output(P3), ActRt::StripVlan, ActRt::Output(P2)])],
    );
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &raw(B, A));
    assert_eq!(out[0], Out { port: "p3".into(), frame: tagged(&raw(B, A), 7), remote: None, vni: None, gso: None });
    assert_eq!(out[1].frame, raw(B, A));
}

#[test]
fn a_rewrite_after_an_output_does_not_change_what_was_sent() {
    let t = vec![(
        10,
        vec![],
        vec![ActRt::SetEthDst(B), ActRt::Output(P2), ActRt::SetEthDst(C), ActRt::Output(P3), ActRt::SetEthSrc(B)],
    )];
    let mut h = Harness::new(flows(t).build());
    let original = raw(BCAST, A);
    let out = h.send("p1", &original);
    assert_eq!(out[0].frame, raw(B, A));
    assert_eq!(out[1].frame, raw(C, A));
    assert_eq!(&h.rx[..original.len()], &original[..], "the received frame itself is left alone");
}

#[test]
fn tunnel_actions_set_the_vni_and_the_vtep() {
    let net = tunnels().table(
        0,
        vec![(
            10,
            vec![],
            vec![ActRt::SetTunId(77), ActRt::SetTunDst("192.0.2.99".parse().unwrap()), ActRt::Output(PortIdx(2))],
        )],
    );
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &raw(B, A));
    assert_eq!(
        (out[0].port.as_str(), out[0].vni, out[0].remote),
        ("vx1", Some(77), Some("192.0.2.99".parse().unwrap()))
    );
}

#[test]
fn resubmit_and_goto_table_continue_in_other_tables() {
    let net = two_taps()
        .table(0, vec![(10, vec![], vec![ActRt::Resubmit { port: None, table: Some(1) }, ActRt::GotoTable(2)])])
        .table(1, vec![(10, vec![], vec![ActRt::Output(P2)])])
        .table(2, vec![(10, vec![], vec![ActRt::Output(P3)])]);
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p2", "p3"]);
    assert_eq!(h.sw.table_stats("br0").unwrap(), [(1, 1), (1, 1), (1, 1)]);
}

#[test]
fn resubmit_with_a_port_looks_up_as_if_from_it() {
    let net = two_taps().table(
        0,
        vec![
            (10, vec![m(slot::IN_PORT, 1)], vec![ActRt::Resubmit { port: Some(P2), table: None }]),
            (10, vec![m(slot::IN_PORT, 2)], vec![ActRt::Output(P3)]),
        ],
    );
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p3"]);
}

#[test]
fn a_resubmit_loop_ends() {
    let net = two_taps()
        .table(0, vec![(10, vec![], vec![ActRt::Resubmit { port: None, table: Some(0) }, ActRt::Output(P2)])]);
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &raw(B, A));
    assert_eq!(out.len(), usize::from(MAX_RESUBMIT) + 1, "each level outputs once, and the depth is bounded");
}

#[test]
fn flows_match_l3_and_l4_fields() {
    let t = vec![
        (30, vec![m(slot::DL_TYPE, 0x0800), m(slot::NW_PROTO, 17), m(slot::TP_DST, 53)], vec![ActRt::Output(P2)]),
        (
            20,
            vec![m(slot::DL_TYPE, 0x0806), m(slot::NW_PROTO, 1), m(slot::NW_DST, 0x0a00_0002)],
            vec![ActRt::Output(P3)],
        ),
        (
            10,
            vec![m(slot::DL_TYPE, 0x86dd), m(slot::NW_DST, u128::from("2001:db8::2".parse::<Ipv6Addr>().unwrap()))],
            vec![ActRt::Output(PortIdx(0))],
        ),
    ];
    let mut h = Harness::new(flows(t).build());
    assert_eq!(h.ports("p1", &udp4(B, A, 100, true, 53)), ["p2"]);
    assert!(h.send("p1", &udp4(B, A, 100, true, 54)).is_empty());
    assert_eq!(h.ports("p1", &arp(1, BCAST, A, [10, 0, 0, 1], [10, 0, 0, 2])), ["p3"]);
    assert!(h.send("p1", &arp(2, BCAST, A, [10, 0, 0, 1], [10, 0, 0, 2])).is_empty(), "arp_op 2 does not match");
    assert_eq!(h.ports("p1", &udp6(B, A, 100)), ["br0"]);
}

#[test]
fn flows_match_the_tunnel_id_and_source_and_the_vlan() {
    let net = tunnels().table(
        0,
        vec![
            (20, vec![m(slot::TUN_ID, 42), m(slot::TUN_SRC, 0xc000_020c)], vec![ActRt::Output(PortIdx(1))]),
            (10, vec![m(slot::VLAN_TCI, 0x1005)], vec![ActRt::Output(PortIdx(3))]),
        ],
    );
    let mut h = Harness::new(net.build());
    assert_eq!(h.send_from("vx1", &raw(B, A), Some("192.0.2.12"))[0].port, "p1");
    assert!(h.send_from("vx2", &raw(B, A), Some("192.0.2.13")).is_empty(), "another VTEP: no match");
    let out = h.send("p1", &tagged(&raw(B, A), 5));
    assert_eq!((out.len(), out[0].port.as_str()), (1, "vx2"), "VLAN 5");
    assert_eq!(out[0].frame, tagged(&raw(B, A), 5), "a trunk tunnel keeps the tag");
    assert!(h.send("p1", &raw(B, A)).is_empty(), "untagged: no match");
}

#[test]
fn flow_counters_count_and_survive_a_new_pipeline() {
    let t = || vec![(10, vec![], vec![ActRt::Output(P2)])];
    let mut h = Harness::new(flows(t()).build());
    h.send("p1", &raw(B, A));
    h.send("p1", &raw(B, A));
    assert_eq!(h.sw.flow_stats("br0", h.now).unwrap(), [(100, 2, 120, 0)]);
    let mut next = flows(t()).build();
    Arc::get_mut(&mut next).unwrap().generation = 2;
    h.sw.install(next, h.now);
    assert_eq!(h.sw.flow_stats("br0", h.now).unwrap(), [(100, 2, 120, 0)]);
}

// ---- A new pipeline ----

#[test]
fn a_new_pipeline_keeps_what_was_learned_by_port_name() {
    let mut h = Harness::new(two_taps().build());
    h.send("p3", &raw(BCAST, C));
    h.sw.counter(PortIdx(3)).tx(100);
    // p2 goes away: p3 moves from index 3 to 2.
    let mut next = Net::default().bridge("br0").tap("p1", 1).tap("p3", 3).build();
    Arc::get_mut(&mut next).unwrap().generation = 2;
    h.sw.install(next, h.now);
    assert_eq!(h.ports("p1", &raw(C, A)), ["p3"]);
    assert_eq!(h.sw.port_counters("br0").unwrap()[2].2.tx_bytes, 100);
}

#[test]
fn a_removed_bridge_takes_its_table_with_it() {
    let mut h = Harness::new(two_taps().build());
    h.send("p1", &raw(BCAST, A));
    let mut next = Net::default().bridge("br1").tap("q1", 1).build();
    Arc::get_mut(&mut next).unwrap().generation = 2;
    h.sw.install(next, h.now);
    assert!(h.sw.fdb_rows("br0", h.now).is_none());
    assert!(h.sw.fdb_rows("br1", h.now).unwrap().is_empty());
}

// ---- Trace ----

/// Trace runs the switch with an observer: the outputs it reports are what the switch emits, for every kind
/// of frame, ARP suppression and MTU errors included.
#[test]
fn trace_reports_exactly_what_the_switch_emits() {
    let frames: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("p2", arp(2, A, B, [10, 0, 0, 2], [10, 0, 0, 1]), None),
        ("p1", arp(1, BCAST, A, [10, 0, 0, 1], [10, 0, 0, 2]), None),
        ("p1", arp(1, BCAST, A, [10, 0, 0, 1], [10, 0, 0, 7]), None),
        ("vx1", raw(BCAST, C), Some("192.0.2.12")),
        ("p1", udp4(C, A, 1500, true, 53), None),
        ("p1", raw(C, A), None),
        ("p2", raw(BCAST, B), None),
    ];
    let mut h = Harness::new(proxy_net().build());
    for (port, frame, remote) in frames {
        // The trace first, on a copy, then the real thing from the same state.
        let mut copy = Harness { sw: h.sw.clone(), ..Harness::new(proxy_net().build()) };
        let input = copy.input(port, &frame, remote, None, None);
        let mut steps: Vec<Step> = Vec::new();
        copy.run(input, &mut steps);
        let traced: Vec<Emission> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Output { emission, too_big: None } => Some(*emission),
                _ => None,
            })
            .collect();
        h.send_from(port, &frame, remote);
        assert_eq!(traced, h.outs.sends, "trace and switch disagree on a frame from {port}: {steps:?}");
    }
}

#[test]
fn trace_says_why_a_frame_is_dropped() {
    let mut h = Harness::new(vlan_net().build());
    let input = h.input("a10", &tagged(&raw(BCAST, A), 20), None, None, None);
    let mut steps: Vec<Step> = Vec::new();
    h.run(input, &mut steps);
    assert_eq!(steps, [Step::Note("dropped at the input port: it does not carry VLAN 20".into())]);
    let mut h = Harness::new(flows(vec![(10, vec![m(slot::IN_PORT, 9)], vec![])]).build());
    let input = h.input("p1", &raw(B, A), None, None, None);
    let mut steps: Vec<Step> = Vec::new();
    h.run(input, &mut steps);
    assert_eq!(steps[1], Step::Flow { table: 0, rule: None });
}

#[test]
fn the_quiet_observer_and_a_recording_one_switch_alike() {
    let mut h = Harness::new(proxy_net().build());
    let mut g = Harness::new(proxy_net().build());
    let frames = [raw(BCAST, A), raw(A, B), arp(1, BCAST, C, [10, 0, 0, 3], [10, 0, 0, 4]), udp4(A, B, 1500, true, 53)];
    for f in &frames {
        let a = h.send("p1", f);
        let input = g.input("p1", f, None, None, None);
        let b = g.run(input, &mut Vec::new());
        assert_eq!(a, b);
    }
    assert_eq!(h.sw.fdb_rows("br0", h.now), g.sw.fdb_rows("br0", g.now));
}

// ---- More edges ----

#[test]
fn an_inline_tag_moves_the_offload_header_with_the_frame() {
    let mut h = Harness::new(vlan_net().build());
    let frame = tagged(&udp4(BCAST, A, 3000, true, 53), 10);
    let gso = VnetHdr {
        flags: offload::F_NEEDS_CSUM,
        gso_type: offload::GSO_UDP_L4,
        hdr_len: 46,
        gso_size: 1000,
        csum_start: 38,
        csum_offset: 6,
    };
    let input = h.input("trunk", &frame, None, None, Some(gso));
    let out = h.run(input, &mut Quiet);
    let a10 = out.iter().find(|o| o.port == "a10").unwrap();
    assert_eq!(a10.gso, Some(gso.untagged()));
    assert_eq!(a10.gso.unwrap().csum_start, 34);
}

#[test]
fn priority_bits_cross_a_trunk_and_priority_tags_enter_an_access_vlan() {
    let mut h = Harness::new(vlan_net().build());
    h.send("a10", &raw(BCAST, B));
    // PCP 5, VLAN 10, from the trunk: leaves another trunk with its priority (the internal port).
    let out = h.send("trunk", &tagged(&raw(BCAST, A), 0xa00a));
    assert_eq!(out.iter().find(|o| o.port == "br0").unwrap().frame, tagged(&raw(BCAST, A), 0xa00a));
    // A priority tag (VLAN 0) on an access port puts the frame in the port's VLAN (the priority is not kept).
    let out = h.send("a20", &tagged(&raw(BCAST, C), 0x2000));
    assert!(out.iter().any(|o| o.port == "trunk" && o.frame[14..16] == [0, 20]), "{out:?}");
}

#[test]
fn push_vlan_then_set_the_vid_tags_an_untagged_frame() {
    let net = two_taps().vlan("p3", None, &[9]).table(
        0,
        vec![(10, vec![], vec![ActRt::PushVlan, ActRt::ModVlanVid(9), ActRt::SetEthSrc(C), ActRt::Output(P3)])],
    );
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &raw(B, A));
    assert_eq!(out[0].frame, tagged(&raw(B, C), 9));
}

#[test]
fn static_entries_follow_a_new_pipeline_and_deleted_ports_take_their_entries() {
    let mut net = two_taps();
    net.bridges[0].statics.push((0, C, PortIdx(3), None));
    let mut h = Harness::new(net.build());
    h.send("p2", &raw(BCAST, B));
    let mut next = Net::default().bridge("br0").tap("p1", 1).tap("p3", 3);
    next.bridges[0].statics.push((0, C, PortIdx(2), None));
    let mut next = next.build();
    Arc::get_mut(&mut next).unwrap().generation = 2;
    h.sw.install(next, h.now);
    let rows = h.sw.fdb_rows("br0", h.now).unwrap();
    assert_eq!(rows.len(), 1, "B went with p2: {rows:?}");
    assert_eq!((rows[0].mac, rows[0].port.as_str(), rows[0].origin), (C, "p3", Origin::Static));
    assert_eq!(h.ports("p1", &raw(C, A)), ["p3"]);
}

#[test]
fn fdb_rows_say_where_when_and_how_an_entry_was_learned() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx2", &raw(BCAST, B), Some("192.0.2.13"));
    let rows = h.sw.fdb_rows("br0", h.now + 3 * SECOND).unwrap();
    let r = &rows[0];
    assert_eq!((r.port.as_str(), r.ofport, r.vlan, r.age, r.origin), ("vx2", 3, 0, 3, Origin::Learned));
    assert_eq!(r.remote, Some("192.0.2.13".parse().unwrap()));
}

#[test]
fn port_counters_list_the_internal_port_first() {
    let h = Harness::new(two_taps().build());
    let names: Vec<(String, u32)> = h.sw.port_counters("br0").unwrap().into_iter().map(|(n, o, _)| (n, o)).collect();
    assert_eq!(names, [("br0".into(), OFPORT_LOCAL), ("p1".into(), 1), ("p2".into(), 2), ("p3".into(), 3)]);
    assert!(h.sw.port_counters("nope").is_none());
}

#[test]
fn a_control_plane_entry_for_an_unknown_port_is_ignored() {
    let mut h = Harness::new(tunnels().build());
    let u = CpUpdate { install: vec![(0, B, "nope".into(), "192.0.2.50".parse().unwrap())], ..Default::default() };
    h.sw.control_plane("br0", u);
    assert!(h.sw.fdb_rows("br0", h.now).unwrap().is_empty());
}

#[test]
fn a_link_down_tunnel_is_skipped_by_flows_too() {
    let net = tunnels().table(0, vec![(10, vec![], vec![ActRt::Output(PortIdx(2)), ActRt::Output(PortIdx(3))])]);
    let mut h = Harness::new(net.build());
    h.sw.set_link_down(["vx1".to_string()].into_iter().collect());
    assert_eq!(h.ports("p1", &raw(B, A)), ["vx2"]);
    assert_eq!(h.drops("vx1", DropReason::LinkDown), 1);
}

#[test]
fn a_resubmit_to_a_missing_table_does_nothing() {
    let net = two_taps()
        .table(0, vec![(10, vec![], vec![ActRt::Resubmit { port: None, table: Some(9) }, ActRt::Output(P2)])]);
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p2"]);
}

#[test]
fn trace_names_each_table_and_flow_on_the_way() {
    let net = two_taps()
        .table(0, vec![(10, vec![], vec![ActRt::GotoTable(1)])])
        .table(1, vec![(10, vec![], vec![ActRt::Output(P2)])]);
    let mut h = Harness::new(net.build());
    let input = h.input("p1", &raw(B, A), None, None, None);
    let mut steps: Vec<Step> = Vec::new();
    h.run(input, &mut steps);
    let flows: Vec<&Step> = steps.iter().filter(|s| matches!(s, Step::Flow { .. })).collect();
    assert_eq!(flows, [&Step::Flow { table: 0, rule: Some(100) }, &Step::Flow { table: 1, rule: Some(200) }]);
    assert!(matches!(steps.last(), Some(Step::Output { too_big: None, .. })));
}

#[test]
fn trace_shows_the_too_big_output_and_the_error_sent_back() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    let input = h.input("p1", &udp4(B, A, 1500, true, 53), None, None, None);
    let mut steps: Vec<Step> = Vec::new();
    h.run(input, &mut steps);
    let outs: Vec<(PortIdx, Option<u16>)> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Output { emission, too_big } => Some((emission.port, *too_big)),
            _ => None,
        })
        .collect();
    assert_eq!(outs, [(PortIdx(2), Some(1450)), (PortIdx(1), None)]);
}

#[test]
fn frames_to_a_port_that_is_down_are_still_emitted_for_the_caller_to_count() {
    let net = two_taps().port("gone", 4, PortKind::Down("no such device".into()));
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(BCAST, A)), ["br0", "gone", "p2", "p3"]);
}

// ---- Pushed MAC table changes ----

#[test]
fn a_watched_table_gives_itself_whole_then_only_what_changed() {
    let mut h = Harness::new(two_taps().limits(10, 8192).build());
    h.send("p1", &raw(BCAST, A));
    assert_eq!(h.sw.fdb_changes("br0", h.now), None, "not watched: nothing");
    assert!(h.sw.watch_fdb("br0", true));
    match h.sw.fdb_changes("br0", h.now) {
        Some(FdbDelta::Whole(rows)) => assert_eq!(rows.iter().map(|r| r.mac).collect::<Vec<_>>(), [A]),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.sw.fdb_changes("br0", h.now), None, "nothing new");
    h.send("p1", &raw(BCAST, A));
    assert_eq!(h.sw.fdb_changes("br0", h.now), None, "a refresh is no change");
    h.send("p2", &raw(BCAST, B));
    h.send("p3", &raw(BCAST, A));
    match h.sw.fdb_changes("br0", h.now) {
        Some(FdbDelta::Changed(list)) => {
            let got: Vec<(EthernetAddress, Option<String>)> =
                list.into_iter().map(|(_, m, r)| (m, r.map(|r| r.port))).collect();
            assert_eq!(got.len(), 2);
            assert!(got.contains(&(A, Some("p3".into()))), "A moved: {got:?}");
            assert!(got.contains(&(B, Some("p2".into()))), "B is new: {got:?}");
        }
        other => panic!("{other:?}"),
    }
    // Aged out: reported gone.
    let later = h.now + 11 * SECOND;
    h.sw.tick(later);
    match h.sw.fdb_changes("br0", later) {
        Some(FdbDelta::Changed(list)) => assert!(list.iter().all(|(_, _, r)| r.is_none()) && list.len() == 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn too_many_changes_or_a_flush_make_the_next_read_whole() {
    let mut h = Harness::new(two_taps().limits(300, 100_000).build());
    h.sw.watch_fdb("br0", true);
    h.sw.fdb_changes("br0", h.now);
    for i in 0..(crate::fdb::CHANGE_LOG_MAX as u32 + 10) {
        let b = i.to_be_bytes();
        h.send("p1", &raw(BCAST, EthernetAddress([2, 1, b[0], b[1], b[2], b[3]])));
    }
    assert!(
        matches!(h.sw.fdb_changes("br0", h.now), Some(FdbDelta::Whole(r)) if r.len() == crate::fdb::CHANGE_LOG_MAX + 10)
    );
    h.sw.fdb_flush("br0");
    assert!(matches!(h.sw.fdb_changes("br0", h.now), Some(FdbDelta::Whole(r)) if r.is_empty()));
    h.sw.watch_fdb("br0", false);
    h.send("p1", &raw(BCAST, A));
    assert_eq!(h.sw.fdb_changes("br0", h.now), None);
}

// ---- Receiving tunnel packets ----

impl Net {
    /// A receive socket for `encap` serving the named tunnels: (port, VNI, unicast remotes, any sender).
    fn demux(mut self, encap: Encap, tunnels: &[(&str, u32, &[&str], bool)]) -> Net {
        let first = self.idx(tunnels[0].0);
        let mut d = super::demux::Demux::new(encap, false, first);
        for (name, vni, remotes, any) in tunnels {
            let remotes: Vec<IpAddr> = remotes.iter().map(|r| r.parse().unwrap()).collect();
            d.add(self.idx(name), *vni, &remotes, *any);
        }
        self.demux.push(d);
        self
    }
}

fn vxlan_pkt(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 8];
    weft_wire::vxlan::VxlanRepr { vni }.emit(&mut p);
    p.extend_from_slice(inner);
    p
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn a_tunnel_packet_belongs_to_the_port_of_its_sender_and_vni() {
    let net =
        tunnels().demux(Encap::Vxlan, &[("vx1", 42, &["192.0.2.12"], false), ("vx2", 43, &["192.0.2.13"], false)]);
    let mut h = Harness::new(net.build());
    let inner = raw(BCAST, A);
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.12"), &vxlan_pkt(42, &inner), false), Ok((PortIdx(2), 8)));
    assert_eq!(h.sw.counter(PortIdx(2)).rx_bytes, inner.len() as u64);
    // A known VTEP with another VNI, and a stranger: dropped, charged to the port that would have taken it.
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.12"), &vxlan_pkt(43, &inner), false), Err(DropReason::WrongVni));
    assert_eq!(h.drops("vx1", DropReason::WrongVni), 1);
    assert_eq!(h.sw.accept_tunnel(0, ip("203.0.113.9"), &vxlan_pkt(43, &inner), false), Err(DropReason::UnknownRemote));
    assert_eq!(h.drops("vx2", DropReason::UnknownRemote), 1);
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.12"), &[0u8; 5], false), Err(DropReason::Malformed));
    assert_eq!(h.sw.accept_tunnel(9, ip("192.0.2.12"), &vxlan_pkt(42, &inner), false), Err(DropReason::UnknownRemote));
}

#[test]
fn flood_and_learn_tunnels_take_any_sender_of_their_vni() {
    let net = tunnels().demux(Encap::Vxlan, &[("vx1", 42, &[], true)]);
    let mut h = Harness::new(net.build());
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.77"), &vxlan_pkt(42, &raw(BCAST, A)), false), Ok((PortIdx(2), 8)));
    assert!(h.sw.accept_tunnel(0, ip("192.0.2.77"), &vxlan_pkt(7, &raw(BCAST, A)), false).is_err());
}

#[test]
fn a_protected_tunnel_takes_nothing_in_clear_text_and_a_clear_one_nothing_protected() {
    let mut spec = tunnel_spec("192.0.2.12", 42);
    spec.ipsec = Some(crate::tunnel::IpsecShape { tunnel: false, udp: true });
    let net = Net::default()
        .bridge("br0")
        .tap("p1", 1)
        .tunnel_with("sec", 2, spec, &["192.0.2.12"], 1400, false)
        .tunnel("vx2", 3, "192.0.2.13", 43)
        .demux(Encap::Vxlan, &[("sec", 42, &["192.0.2.12"], false), ("vx2", 43, &["192.0.2.13"], false)]);
    let mut h = Harness::new(net.build());
    let pkt = vxlan_pkt(42, &raw(BCAST, A));
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.12"), &pkt, false), Err(DropReason::Cleartext));
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.12"), &pkt, true), Ok((PortIdx(2), 8)));
    assert_eq!(
        h.sw.accept_tunnel(0, ip("192.0.2.13"), &vxlan_pkt(43, &raw(BCAST, A)), true),
        Err(DropReason::Cleartext)
    );
}

#[test]
fn geneve_options_are_counted_and_unknown_critical_ones_dropped() {
    let mut spec = tunnel_spec("192.0.2.12", 42);
    spec.encap = Encap::Geneve;
    let mut known = Vec::new();
    weft_wire::geneve::encode_option(0x0102, 0x80, &[0, 0, 0, 1], &mut known).unwrap();
    let mut net = Net::default().bridge("br0").tap("p1", 1).tunnel_with("gnv", 2, spec, &["192.0.2.12"], 1400, false);
    if let PortKind::Tunnel(t) = &mut net.ports[2].kind {
        t.known_options = Arc::from(&[(0x0102, 0x80)][..]);
    }
    let net = net.demux(Encap::Geneve, &[("gnv", 42, &["192.0.2.12"], false)]);
    let mut h = Harness::new(net.build());
    let geneve = |options: &[u8]| {
        let repr = weft_wire::geneve::GeneveRepr { vni: 42, protocol: EtherType::TEB, oam: false, options };
        let mut p = vec![0u8; repr.buffer_len()];
        repr.emit(&mut p);
        p.extend_from_slice(&raw(BCAST, A));
        p
    };
    let at = 8 + known.len();
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.12"), &geneve(&known), false), Ok((PortIdx(2), at)));
    let mut unknown = Vec::new();
    weft_wire::geneve::encode_option(0x0999, 0x81, &[], &mut unknown).unwrap();
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.12"), &geneve(&unknown), false), Err(DropReason::CriticalOption));
    assert_eq!(h.sw.counter(PortIdx(2)).geneve_options_rx, 2);
}
