//! The switch tested as OVS tests ofproto-dpif: frames in, emissions out, deterministic, no sockets, no root.
//! Here: building pipelines, running frames, frames and setups the tests share; the tests are in
//! `bridging.rs` (learning, VLANs, tunnels, MTU, ARP suppression), `flows.rs` (flow tables, new pipelines,
//! trace) and `edges.rs` (offload headers, statics, pushed MAC table changes, receiving tunnel packets).

mod action_set;
mod bridging;
mod conntrack;
mod edges;
mod egress;
mod flows;
mod groups;
mod meters;
mod patch;
mod ports;
mod registers;
mod rewrites;
mod workers;

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
            groups: Vec::new(),
            meters: Vec::new(),
            fail_open: Default::default(),
            default_flow: Some(1),
            cts: Vec::new(),
            tun: Default::default(),
        });
        self.port(name, OFPORT_LOCAL, PortKind::Tap { vnet_hdr: true })
    }

    fn port(mut self, name: &str, ofport: u32, kind: PortKind) -> Net {
        let bridge = self.bridges.len() - 1;
        let idx = PortIdx(self.ports.len() as u16);
        if matches!(&kind, PortKind::Tunnel(t) if t.proxy) {
            self.bridges[bridge].has_proxy = true;
        }
        self.ports.push(PortDesc { name: name.into(), ofport, bridge, vlan: VlanMode::default(), kind, of_config: 0 });
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
    /// The last bridge's `ct` actions: flows name them `ActRt::Ct(0)`, `ActRt::Ct(1)`, ….
    fn cts(mut self, cts: Vec<super::pipeline::CtRt>) -> Net {
        self.bridges.last_mut().unwrap().cts = cts;
        self
    }

    fn table(mut self, table: usize, flows: Vec<FlowSpec>) -> Net {
        let b = self.bridges.last_mut().unwrap();
        b.default_flow = None;
        while b.tables.len() <= table {
            b.tables.push(TableRt { classifier: Classifier::new(Vec::new()), rules: Vec::new() });
        }
        let mut rules = Vec::new();
        let mut entries = Vec::new();
        for (i, (priority, matches, actions)) in flows.into_iter().enumerate() {
            let table_miss = priority == 0 && matches.is_empty();
            let (mut key, mut mask) = (FlowKey::default(), FlowKey::default());
            for (s, v, m) in matches {
                key.put(s, v);
                mask.put(s, m);
            }
            entries.push(Rule { key, mask, priority, id: i as u32 });
            rules.push(RuleRt {
                id: 100 * (table as u64 + 1) + i as u64,
                cookie: 0xc0 + i as u64,
                table_miss,
                actions,
            });
        }
        b.tables[table] = TableRt { classifier: Classifier::new(entries), rules };
        self
    }

    /// Adds group `id` to the last bridge: buckets of (weight, watched port, actions).
    fn group(mut self, id: u32, kind: GroupKind, buckets: Vec<(u16, Option<&str>, Vec<ActRt>)>) -> Net {
        let buckets = buckets
            .into_iter()
            .map(|(weight, watch, actions)| BucketRt { weight, watch: watch.map(|w| self.idx(w)), actions })
            .collect();
        let b = self.bridges.last_mut().unwrap();
        b.groups.push(GroupRt { id, kind, buckets });
        b.groups.sort_by_key(|g| g.id);
        self
    }

    /// Adds meter `id` to the last bridge: bands of (rate, burst, DSCP remark levels or drop).
    fn meter(mut self, id: u32, pktps: bool, bands: &[(u64, u64, Option<u8>)]) -> Net {
        use super::meter::{MeterState, UNIT};
        let bands: Vec<BandRt> =
            bands.iter().map(|&(rate, burst, remark)| BandRt { rate, depth: burst * UNIT, remark }).collect();
        let depths: Vec<u64> = bands.iter().map(|b| b.depth).collect();
        let b = self.bridges.last_mut().unwrap();
        b.meters.push(MeterRt { id, pktps, bands, state: Arc::new(MeterState::new(&depths)) });
        b.meters.sort_by_key(|m| m.id);
        self
    }

    /// Sets port `name`'s OpenFlow configuration bits.
    fn of_config(mut self, name: &str, bits: u32) -> Net {
        let i = self.idx(name);
        self.ports[usize::from(i.0)].of_config = bits;
        self
    }

    /// Joins ports `a` and `b` (added as any kind) as patch peers.
    fn patch(mut self, a: &str, b: &str) -> Net {
        let (ia, ib) = (self.idx(a), self.idx(b));
        self.ports[usize::from(ia.0)].kind = PortKind::Patch(ib);
        self.ports[usize::from(ib.0)].kind = PortKind::Patch(ia);
        self
    }

    fn build(self) -> Arc<Pipeline> {
        Arc::new(Pipeline::new(1, self.bridges, self.ports, self.demux))
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
            tun_md: Default::default(),
        }
    }

    fn run(&mut self, input: Input, obs: &mut impl Observer) -> Vec<Out> {
        let mut bufs = Buffers { rx: &mut self.rx, seg: &mut self.seg, scratch: &mut self.scratch };
        self.sw.process(&mut bufs, input, self.now, &mut self.outs, obs);
        let bufs = Buffers { rx: &mut self.rx, seg: &mut self.seg, scratch: &mut self.scratch };
        self.outs.sends.iter().map(|e| resolve(&self.sw, &bufs, e)).collect()
    }

    /// A controller's packet-out of `frame` with `actions`, from `port` (or from the controller: `None`).
    fn packet_out(&mut self, port: Option<&str>, frame: &[u8], actions: &[ActRt]) -> Vec<Out> {
        let input = self.input(port.unwrap_or("br0"), frame, None, None, None);
        let mut bufs = Buffers { rx: &mut self.rx, seg: &mut self.seg, scratch: &mut self.scratch };
        self.sw.packet_out(&mut bufs, input, port.is_none(), (actions, &[]), self.now, &mut self.outs, &mut Quiet);
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

// ---- Shared setups ----

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

fn tunnels() -> Net {
    Net::default().bridge("br0").tap("p1", 1).tunnel("vx1", 2, "192.0.2.12", 42).tunnel("vx2", 3, "192.0.2.13", 42)
}

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

fn flows(t0: Vec<FlowSpec>) -> Net {
    two_taps().table(0, t0)
}

const P1: PortIdx = PortIdx(1);
const P2: PortIdx = PortIdx(2);
const P3: PortIdx = PortIdx(3);

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
