//! What the switch runs: its ports described by kind (no devices, no sockets), its bridges and their
//! compiled flow tables. Built by whoever reads the configuration (weftd), immutable once running; a new
//! configuration is a new pipeline handed to [`super::Switch::install`].

use crate::classifier::{Classifier, Slot, SubSlot};
use crate::tunnel::TunnelSpec;
use crate::vlan::VlanMode;
use crate::PortIdx;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use weft_wire::EthernetAddress;

/// ofport number of a bridge's internal port (OpenFlow's OFPP_LOCAL).
pub const OFPORT_LOCAL: u32 = 0xffff_fffe;
/// OpenFlow's OFPP_CONTROLLER: the input port of a packet-out that came from no port.
pub const OFPP_CONTROLLER: u32 = 0xffff_fffd;

/// OpenFlow port configuration bits (OFPPC_*) weft carries out.
pub mod port_config {
    /// The port neither receives nor sends.
    pub const PORT_DOWN: u32 = 1 << 0;
    /// Frames received on it are dropped.
    pub const NO_RECV: u32 = 1 << 2;
    /// It takes no part in flooding (`FLOOD`, NORMAL's floods); OpenFlow 1.0's bit, kept by OVS for all versions.
    pub const NO_FLOOD: u32 = 1 << 4;
    /// Frames sent to it are dropped.
    pub const NO_FWD: u32 = 1 << 5;
    /// Frames received on it are not sent to the controller.
    pub const NO_PACKET_IN: u32 = 1 << 6;
    pub const ALL: u32 = PORT_DOWN | NO_RECV | NO_FLOOD | NO_FWD | NO_PACKET_IN;
}

/// A port as the switch sees it.
#[derive(Debug, Clone)]
pub struct PortDesc {
    pub name: String,
    /// The number users and OpenFlow controllers see.
    pub ofport: u32,
    /// Index of its bridge in [`Pipeline::bridges`].
    pub bridge: usize,
    /// The VLANs the port carries and how (`tag`, `trunks`).
    pub vlan: VlanMode,
    pub kind: PortKind,
    /// OpenFlow's configuration bits ([`port_config`], from PORT_MOD).
    pub of_config: u32,
}

/// How a port carries frames, as far as switching decisions need to know.
#[derive(Debug, Clone)]
pub enum PortKind {
    /// A TAP device (tap and internal ports); `vnet_hdr`: it takes offloaded frames whole.
    Tap {
        vnet_hdr: bool,
    },
    /// A system interface through AF_PACKET (takes offloaded frames whole).
    Packet,
    Tunnel(TunnelPort),
    /// A patch port: what leaves by it enters its peer's bridge by the peer (this index), inside the switch.
    Patch(PortIdx),
    /// Configured but not open (its interface is missing), and why; frames to it are discarded.
    Down(String),
}

/// A tunnel port.
#[derive(Debug, Clone)]
pub struct TunnelPort {
    pub spec: TunnelSpec,
    /// The configured remote VTEP and the destination port.
    pub dest: SocketAddr,
    /// The largest inner IP packet that fits the underlay.
    pub mtu: u16,
    /// Every remote VTEP; flooded frames go to each (head-end replication).
    pub remotes: Arc<[IpAddr]>,
    /// ARP/ND suppression (`options:proxy=true`).
    pub proxy: bool,
    /// VXLAN and Geneve: the header (with options) every packet of this port starts with.
    pub header: Arc<[u8]>,
    /// Geneve options this port sends, by (class, type): critical ones of these are understood.
    pub known_options: Arc<[(u16, u8)]>,
}

impl PortDesc {
    pub fn tunnel(&self) -> Option<&TunnelPort> {
        match &self.kind {
            PortKind::Tunnel(t) => Some(t),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct BridgeRt {
    pub name: String,
    pub aging_secs: u32,
    pub table_size: usize,
    /// Every port of the bridge, internal port first.
    pub ports: Vec<PortIdx>,
    /// Some tunnel port of the bridge has `options:proxy=true`.
    pub has_proxy: bool,
    /// Static FDB entries: (vlan, mac, port, remote VTEP).
    pub statics: Vec<(u16, EthernetAddress, PortIdx, Option<IpAddr>)>,
    /// Flow tables by table number; empty when the bridge has only `priority=0 actions=NORMAL` (then the
    /// switch goes straight to the learning switch).
    pub tables: Vec<TableRt>,
    /// OpenFlow groups, sorted by id (`group:N` finds its group by binary search).
    pub groups: Vec<GroupRt>,
    /// OpenFlow meters, sorted by id.
    pub meters: Vec<MeterRt>,
    /// Fail-open (`fail_mode=standalone` with no controller connected for a while): the learning switch
    /// instead of the flow tables. Set by whoever watches the controllers, without a new pipeline.
    pub fail_open: Arc<std::sync::atomic::AtomicBool>,
    /// The id of that lone `priority=0 actions=NORMAL` flow when `tables` is empty: its counters count
    /// every frame the learning switch takes, as the flow's would.
    pub default_flow: Option<u64>,
    /// The `ct` actions of the bridge's flows and groups, as [`ActRt::Ct`] names them.
    pub cts: Vec<CtRt>,
    /// The bridge's TLV map: which Geneve options fill the key's tunnel metadata, and where.
    pub tun: TunMap,
}

/// A bridge's TLV map as the core runs it: each mapped Geneve option (class, type, length in bytes), the
/// `tun_metadataN` it is, where its data sits in the key and which bit says it is there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunMap {
    pub fields: Vec<TunField>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunField {
    pub index: u8,
    pub class: u16,
    pub kind: u8,
    pub len: u8,
    pub slot: crate::classifier::Slot,
    pub present: crate::classifier::Slot,
}

impl TunMap {
    /// The key slot and presence bit of `tun_metadata<index>`, if it is mapped.
    pub fn slots(&self, index: u8) -> Option<(crate::classifier::Slot, crate::classifier::Slot)> {
        self.fields.iter().find(|f| f.index == index).map(|f| (f.slot, f.present))
    }
}

/// How a group picks its buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    /// Every bucket, each on its own copy of the packet.
    All,
    /// One bucket, by a hash of the flow, in proportion to the weights (one flow stays on one bucket).
    Select,
    /// Its only bucket.
    Indirect,
    /// The first bucket whose watched port's link is up.
    FastFailover,
}

#[derive(Debug)]
pub struct GroupRt {
    pub id: u32,
    pub kind: GroupKind,
    pub buckets: Vec<BucketRt>,
}

#[derive(Debug)]
pub struct BucketRt {
    pub weight: u16,
    /// The port whose link decides a fast-failover bucket (`None`: not a port of the bridge, never live).
    pub watch: Option<PortIdx>,
    pub actions: Vec<ActRt>,
}

/// An OpenFlow meter: its bands and their shared buckets ([`super::meter`]).
#[derive(Debug)]
pub struct MeterRt {
    pub id: u32,
    /// Rates in packets a second (else kilobits).
    pub pktps: bool,
    pub bands: Vec<BandRt>,
    /// Shared by every worker, and kept across pipelines while the meter stays as it is.
    pub state: Arc<super::meter::MeterState>,
}

#[derive(Debug, Clone, Copy)]
pub struct BandRt {
    /// Kilobits or packets a second: tokens a nanosecond.
    pub rate: u64,
    /// The bucket's size in tokens ([`super::meter::UNIT`] a kilobit or a packet).
    pub depth: u64,
    /// `dscp_remark`'s levels of drop precedence; `None`: the band drops.
    pub remark: Option<u8>,
}

/// One flow table, ready for lookups.
pub struct TableRt {
    pub classifier: Classifier,
    /// Indexed by the classifier's rule ids.
    pub rules: Vec<RuleRt>,
}

impl std::fmt::Debug for TableRt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TableRt({} rules in {} subtables)", self.rules.len(), self.classifier.subtables())
    }
}

/// A flow's actions with port numbers turned into the pipeline's ports.
#[derive(Debug, Clone)]
pub struct RuleRt {
    /// The flow's id in the configuration (its counters are kept under it).
    pub id: u64,
    pub cookie: u64,
    /// The table-miss flow: priority 0, matching everything (its packet-ins say "no match").
    pub table_miss: bool,
    pub actions: Vec<ActRt>,
}

/// [`ActRt::Controller`]'s reason when the flow names none.
pub const REASON_AUTO: u8 = 0xff;
/// OpenFlow's packet-in reason for a TTL that `dec_ttl` found expired.
pub const REASON_INVALID_TTL: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActRt {
    Output(PortIdx),
    Normal,
    Flood,
    All,
    InPort,
    /// To the controller, at most `max_len` bytes of the packet; `reason` the packet-in's ([`REASON_AUTO`]:
    /// "no match" from a table-miss flow, else "action"), to the connections with controller ID `id`.
    Controller {
        max_len: u16,
        reason: u8,
        id: u16,
    },
    ModVlanVid(u16),
    StripVlan,
    PushVlan,
    SetEthSrc(EthernetAddress),
    SetEthDst(EthernetAddress),
    SetTunId(u64),
    SetTunDst(IpAddr),
    Resubmit {
        port: Option<PortIdx>,
        table: Option<u8>,
    },
    GotoTable(u8),
    /// `load`, `set_field` and `write_metadata` on a field of the key: its bits under `mask` become those of
    /// `value`. A register or the metadata changes only the key (later tables see it); a packet field (the
    /// Ethernet addresses, the tunnel ID) changes the packet too.
    SetBits {
        slot: Slot,
        value: u128,
        mask: u128,
    },
    /// `move`: copies bits of one field into another (the same number of bits).
    Move {
        src: SubSlot,
        dst: SubSlot,
    },
    /// `output:REG[a..b]`: to the port whose OpenFlow number those bits hold when the action runs (16 bits or
    /// fewer: OpenFlow 1.0's numbers, 0xfffe the internal port); no such port, no output.
    OutputReg(SubSlot),
    /// `exit`: no further action runs for this packet.
    Exit,
    /// `group:N`: the packet to the bridge's group N (none such: nothing).
    Group(u32),
    /// `dec_ttl`: the IP TTL (hop limit) less one; at one or zero the packet goes no further (dropped and
    /// counted). Not IP: nothing.
    DecTtl,
    /// `push_mpls:ETHERTYPE`: a label stack entry in front of the packet, and the frame's EtherType.
    PushMpls(u16),
    /// `pop_mpls:ETHERTYPE`: the top entry taken off, the frame's EtherType now this.
    PopMpls(u16),
    /// `set_mpls_ttl`, `dec_mpls_ttl` (the latter stops the packet at the end of its life, as `dec_ttl`).
    SetMplsTtl(u8),
    DecMplsTtl,
    /// `meter:N`: the packet through the bridge's meter N (none such: nothing), which may drop it.
    Meter(u32),
    /// `bundle(…)` (`dst` none: an output) or `bundle_load(…)` (the member's OpenFlow number into `dst`,
    /// 0xffff when none lives).
    Bundle(BundleRt),
    /// `multipath(…)`: a link number (0 ..`n_links`) by a hash of the flow into `dst`; `algorithm` as OVS's
    /// NX_MP_ALG_* (0 modulo_n, 1 hash_threshold, 2 hrw, 3 iter_hash).
    Multipath {
        on: super::bundle::HashOn,
        basis: u16,
        algorithm: u16,
        n_links: u32,
        arg: u32,
        dst: SubSlot,
    },
    /// `output(port=P,max_len=N)`: to P (`None`: the input port), cut to its first N bytes.
    OutputTrunc(Option<PortIdx>, u32),
    /// `push:SRC[a..b]` / `pop:DST[a..b]`: the packet's stack of values ([`super::STACK_DEPTH`]).
    StackPush(SubSlot),
    StackPop(SubSlot),
    /// `ct(...)`: the packet through the connection tracker ([`super::ct`]); the action is the bridge's
    /// [`BridgeRt::cts`] entry of this index (kept aside: it is large, and most flows do not track).
    Ct(u32),
    /// `ct_clear`: the packet's `ct_*` fields back to zero.
    CtClear,
    /// `write_actions(…)`: the next N actions of the flow go into the packet's action set (they do not run
    /// now); the set runs when the pipeline ends, as OpenFlow 1.1+ has it ([`super::action_set`]).
    WriteActions(u8),
    /// `clear_actions`: the action set emptied.
    ClearActions,
    /// `clone(…)`: the next N actions run on a copy of the packet (its key, frame and stack); the packet
    /// goes on as it was.
    Clone(u8),
    /// `learn(…)`: the next `n` actions are [`ActRt::LearnSrc`]s, the fields of the packet the flow to learn
    /// is made of; their values go to the control plane ([`crate::switch::LearnedFlow`]), which builds the flow
    /// from the `ordinal`-th learn of flow `flow` (the configuration's id).
    Learn {
        n: u8,
        ordinal: u8,
        flow: u64,
    },
    /// A field a `learn` reads (not an action of its own).
    LearnSrc(SubSlot),
    /// `fin_timeout(…)` of flow `flow` (the configuration's id): a TCP packet with FIN or RST asks the
    /// control plane to bring that flow's timeouts down to these ([`crate::switch::FinSeen`]).
    FinTimeout {
        idle: u16,
        hard: u16,
        flow: u64,
    },
}

/// A `ct` action as the core runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtRt {
    pub commit: bool,
    pub force: bool,
    /// The zone, or the 16 bits of the key it is read from.
    pub zone: Result<u16, SubSlot>,
    /// Where the tracked packet continues; the current actions go on with it untracked.
    pub table: Option<u8>,
    /// `exec(...)`: writes into the connection's mark or label (`label` false: the mark), in order.
    pub exec: [Option<CtWriteRt>; 4],
    pub nat: Option<crate::conntrack::NatArgs>,
}

/// One write of a `ct` action's `exec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtWriteRt {
    /// These bits (under `mask`) become `value`.
    Const { label: bool, value: u128, mask: u128 },
    /// The bits of `src` when the action runs, at `ofs`.
    Move { label: bool, src: SubSlot, ofs: u32 },
}

/// A bundle's members (those not in the bridge: `None`, never live) and how it picks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleRt {
    pub on: super::bundle::HashOn,
    pub basis: u16,
    pub hrw: bool,
    pub members: [Option<PortIdx>; 8],
    pub n: u8,
    pub dst: Option<SubSlot>,
}

/// The whole switch description.
#[derive(Debug, Default)]
pub struct Pipeline {
    /// Grows with every configuration change (a pipeline never goes backwards).
    pub generation: u64,
    pub bridges: Vec<BridgeRt>,
    pub ports: Vec<PortDesc>,
    /// One per tunnel receive socket: which port a received tunnel packet belongs to.
    pub demux: Vec<super::demux::Demux>,
    /// Each port's next GRE sequence number (`options:seq=true`), shared by every worker that runs this
    /// pipeline so that no two packets of a port carry the same number.
    pub gre_seq: Vec<AtomicU32>,
    /// Each bridge's ports by OpenFlow number, sorted (for `output:REG`, which names a port at run time).
    pub by_ofport: Vec<Vec<(u32, PortIdx)>>,
    /// The connection tracker, one for the switch: every worker and every pipeline shares it (set by
    /// whoever builds the pipeline; an empty one otherwise).
    pub conntrack: Arc<crate::conntrack::Conntrack>,
    /// Per bridge: the switch reads no more of a frame than its first [`HEADERS_ONLY_LEN`] bytes (see
    /// [`Pipeline::reads_headers_only`]).
    headers_only: Vec<bool>,
}

/// What the switch may read of a frame that enters a bridge where it reads headers only: Ethernet, one tag,
/// and the most an ICMP "packet too big" quotes (1 232 bytes of an IPv6 packet: 1 280 less its own IPv6 and
/// ICMPv6 headers; ICMP for IPv4 quotes less).
pub const HEADERS_ONLY_LEN: usize = 14 + 4 + 1232;

impl Pipeline {
    pub fn new(generation: u64, bridges: Vec<BridgeRt>, ports: Vec<PortDesc>, demux: Vec<super::demux::Demux>) -> Self {
        let gre_seq = ports.iter().map(|_| AtomicU32::new(0)).collect();
        let mut by_ofport: Vec<Vec<(u32, PortIdx)>> = bridges.iter().map(|_| Vec::new()).collect();
        for (i, p) in ports.iter().enumerate() {
            if let Some(list) = by_ofport.get_mut(p.bridge) {
                list.push((p.ofport, PortIdx(i as u16)));
            }
        }
        for list in &mut by_ofport {
            list.sort_unstable();
        }
        let conntrack = Arc::default();
        let headers_only = bridges
            .iter()
            .map(|b| {
                b.tables.is_empty()
                    && !b
                        .ports
                        .iter()
                        .any(|p| matches!(ports.get(usize::from(p.0)).map(|d| &d.kind), Some(PortKind::Patch(_))))
            })
            .collect();
        Pipeline { generation, bridges, ports, demux, gre_seq, by_ofport, conntrack, headers_only }
    }

    /// Whether the switch reads nothing of a frame entering by `port` beyond its first [`HEADERS_ONLY_LEN`]
    /// bytes: its bridge has only the default `NORMAL` flow (no action that rewrites, copies or hands a frame
    /// to a controller; the learning switch reads addresses, ARP and ND, and quotes a frame's start in ICMP
    /// errors) and no patch port (whose peer bridge may have flows). Its caller may then leave the rest of a
    /// frame where it lies until it is written out.
    pub fn reads_headers_only(&self, port: PortIdx) -> bool {
        self.ports.get(usize::from(port.0)).is_some_and(|p| self.headers_only.get(p.bridge).copied().unwrap_or(false))
    }

    /// Bridge `bridge`'s port with OpenFlow number `ofport` (a binary search).
    pub fn port_by_ofport(&self, bridge: usize, ofport: u32) -> Option<PortIdx> {
        let list = self.by_ofport.get(bridge)?;
        list.binary_search_by_key(&ofport, |e| e.0).ok().map(|i| list[i].1)
    }

    /// The port called `name` in bridge `bridge`.
    pub fn port_named(&self, bridge: &str, name: &str) -> Option<PortIdx> {
        let i = self.ports.iter().position(|p| p.name == name && self.bridges[p.bridge].name == bridge)?;
        Some(PortIdx(i as u16))
    }

    pub fn bridge_named(&self, name: &str) -> Option<usize> {
        self.bridges.iter().position(|b| b.name == name)
    }

    pub fn port(&self, i: PortIdx) -> &PortDesc {
        &self.ports[usize::from(i.0)]
    }
}
