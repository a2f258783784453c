//! What goes into the switch and what comes out: where frames are, what is received, what is to be sent,
//! what an observer sees, and the rows its queries answer with.

use super::*;

/// Which buffer a frame's bytes are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// The caller's receive buffers.
    Rx,
    /// The caller's own scratch area (segments it cut, a frame it was given to trace).
    Seg,
    /// The switch's scratch area: frames it made (ARP/ND answers, ICMP errors) or copied to rewrite.
    Scratch,
}

/// Where a frame's bytes are: an area and a range in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data {
    pub area: Area,
    pub start: u32,
    pub len: u32,
}

impl Data {
    pub fn new(area: Area, start: usize, len: usize) -> Data {
        Data { area, start: start as u32, len: len as u32 }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }

    /// The same frame without its first `n` bytes.
    pub(super) fn skip(self, n: u32) -> Data {
        Data { start: self.start + n, len: self.len - n, ..self }
    }
}

/// The switch's scratch area: filled while a batch is switched, emptied by the caller once the batch's
/// emissions are sent.
pub struct Scratch {
    buf: Vec<u8>,
    used: usize,
}

impl Scratch {
    pub fn new(size: usize) -> Scratch {
        Scratch { buf: vec![0; size], used: 0 }
    }

    pub fn clear(&mut self) {
        self.used = 0;
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    fn room(&self) -> usize {
        self.buf.len() - self.used
    }

    pub(super) fn push(&mut self, bytes: &[u8]) -> Option<Data> {
        if self.room() < bytes.len() {
            return None;
        }
        let at = self.used;
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
        Some(Data::new(Area::Scratch, at, bytes.len()))
    }
}

/// The buffers a batch's frames are in.
pub struct Buffers<'a> {
    pub rx: &'a mut [u8],
    pub seg: &'a mut [u8],
    pub scratch: &'a mut Scratch,
}

impl Buffers<'_> {
    pub fn get(&self, d: Data) -> &[u8] {
        let area: &[u8] = match d.area {
            Area::Rx => &*self.rx,
            Area::Seg => &*self.seg,
            Area::Scratch => &self.scratch.buf,
        };
        &area[d.range()]
    }

    pub fn get_mut(&mut self, d: Data) -> &mut [u8] {
        let area: &mut [u8] = match d.area {
            Area::Rx => &mut *self.rx,
            Area::Seg => &mut *self.seg,
            Area::Scratch => &mut self.scratch.buf,
        };
        &mut area[d.range()]
    }

    /// Copies a frame into the scratch area with `n` zero bytes inserted at `at` (a header pushed in);
    /// `None` when there is no room.
    pub(super) fn copy_opening(&mut self, d: Data, at: usize, n: usize) -> Option<Data> {
        if self.scratch.room() < d.len() + n || at > d.len() {
            return None;
        }
        let start = self.scratch.used;
        let copy = self.copy(d)?;
        let len = copy.len();
        self.scratch.buf.copy_within(start + at..start + len, start + at + n);
        self.scratch.buf[start + at..start + at + n].fill(0);
        self.scratch.used += n;
        Some(Data::new(Area::Scratch, start, len + n))
    }

    /// Copies a frame into the scratch area (before a flow rewrites it, so that earlier outputs keep the
    /// original); `None` when there is no room.
    pub(super) fn copy(&mut self, d: Data) -> Option<Data> {
        if self.scratch.room() < d.len() {
            return None;
        }
        let at = self.scratch.used;
        match d.area {
            Area::Rx => self.scratch.buf[at..at + d.len()].copy_from_slice(&self.rx[d.range()]),
            Area::Seg => self.scratch.buf[at..at + d.len()].copy_from_slice(&self.seg[d.range()]),
            Area::Scratch => self.scratch.buf.copy_within(d.range(), at),
        }
        self.scratch.used += d.len();
        Some(Data::new(Area::Scratch, at, d.len()))
    }
}

/// A received frame.
#[derive(Debug, Clone, Copy)]
pub struct Input {
    pub data: Data,
    pub in_port: PortIdx,
    /// The VTEP a tunnel frame came from.
    pub remote: Option<IpAddr>,
    /// The 802.1Q TCI the kernel already took off the frame, if any.
    pub stripped: Option<u16>,
    /// The frame is offloaded (a TSO/USO frame, or segments merged on receive): its virtio-net header.
    pub gso: Option<VnetHdr>,
    /// The Geneve options of a tunnel frame that its bridge's TLV map names ([`Switch::tunnel_metadata`]).
    pub tun_md: TunMd,
}

impl Input {
    /// A frame entering by `in_port` as it is: no tag taken off by the kernel, not offloaded, no tunnel
    /// metadata (a packet-out's, a trace's).
    pub fn plain(data: Data, in_port: PortIdx, remote: Option<IpAddr>) -> Input {
        Input { data, in_port, remote, stripped: None, gso: None, tun_md: TunMd::default() }
    }
}

/// A frame's tunnel metadata as the key holds it: the data of the mapped Geneve options laid out as the
/// bridge's [`super::pipeline::TunMap`] says, and a bit per mapped field that is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TunMd {
    pub present: u8,
    pub words: [u64; crate::classifier::slot::TUN_MD_WORDS],
}

impl TunMd {
    /// The key's tunnel metadata.
    #[inline]
    pub fn of(key: &crate::classifier::FlowKey) -> TunMd {
        use crate::classifier::slot;
        let mut words = [0; slot::TUN_MD_WORDS];
        words.copy_from_slice(&key.w[slot::TUN_MD_WORD..slot::TUN_MD_WORD + slot::TUN_MD_WORDS]);
        TunMd { present: key.get(slot::TUN_MD_PRESENT) as u8, words }
    }

    /// Whether the field is there.
    pub fn has(&self, f: &super::pipeline::TunField) -> bool {
        let bit = f.present.shift - crate::classifier::slot::TUN_MD_PRESENT.shift;
        self.present >> bit & 1 != 0
    }

    /// The field's value (as its slot in the key holds it).
    pub fn value(&self, f: &super::pipeline::TunField) -> u128 {
        let w = f.slot.word - crate::classifier::slot::TUN_MD_WORD;
        match f.slot.bits {
            128 => u128::from(self.words[w]) << 64 | u128::from(self.words[w + 1]),
            64 => u128::from(self.words[w]),
            bits => u128::from((self.words[w] >> f.slot.shift) & ((1u64 << bits) - 1)),
        }
    }

    /// Puts it into a key.
    #[inline]
    pub fn put(&self, key: &mut crate::classifier::FlowKey) {
        use crate::classifier::slot;
        key.put(slot::TUN_MD_PRESENT, u128::from(self.present));
        key.w[slot::TUN_MD_WORD..slot::TUN_MD_WORD + slot::TUN_MD_WORDS].copy_from_slice(&self.words);
    }
}

/// A frame to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emission {
    pub port: PortIdx,
    /// The frame, untagged.
    pub data: Data,
    /// Its VLAN (TCI) inside the switch, and whether it leaves tagged with it.
    pub tci: u16,
    pub tagged: bool,
    /// Tunnel ports: the one VTEP it goes to (learned, or set by a flow); `None` floods it to the port's
    /// remotes ([`Switch::flood_list`]).
    pub remote: Option<IpAddr>,
    /// Tunnel ports: a VNI set by a flow, in place of the port's.
    pub vni: Option<u32>,
    /// The flow hash of the frame as it arrived (picks a tunnel's source port).
    pub hash: u32,
    /// The frame's offload header (counted from the untagged frame), if it is an offloaded one.
    pub gso: Option<VnetHdr>,
    /// Geneve ports: the tunnel metadata the frame carries out, as `Outputs::tun_mds[md - 1]` (0: none).
    pub md: u32,
}

/// A frame for the bridge's OpenFlow controller (a `controller` action).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToController {
    pub bridge: usize,
    pub in_port: PortIdx,
    pub table: u8,
    pub cookie: u64,
    /// Sent by a table's table-miss flow (priority 0, matching everything): OpenFlow 1.3's "no match".
    pub table_miss: bool,
    /// At most this many bytes of the frame.
    pub max_len: u16,
    /// The packet-in's reason ([`super::pipeline::REASON_AUTO`]: from `table_miss`), and the controller ID
    /// of the connections it goes to.
    pub reason: u8,
    pub controller_id: u16,
    pub data: Data,
    /// Put back as an 802.1Q tag when its VLAN is not 0.
    pub tci: u16,
}

/// Fields of the packet a `learn` action read ([`super::pipeline::ActRt::Learn`]), for the control plane
/// to build the flow from: the `ordinal`-th learn of flow `flow` of the bridge, and the values of its
/// first `n` sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnedFlow {
    pub bridge: usize,
    pub flow: u64,
    pub ordinal: u8,
    pub n: u8,
    pub values: [u128; LEARN_SOURCES],
}

/// A TCP FIN or RST met a flow's `fin_timeout`: its timeouts come down to these (0: unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinSeen {
    pub bridge: usize,
    pub flow: u64,
    pub idle: u16,
    pub hard: u16,
}

/// The packet fields one `learn` reads at most.
pub const LEARN_SOURCES: usize = 16;

/// Something the operator should hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A bridge's MAC table is full (said at most every 10 s per bridge).
    MacTableFull { bridge: usize, src: EthernetAddress, entries: usize, misses: u64 },
}

/// What switching a batch produced.
#[derive(Debug, Default)]
pub struct Outputs {
    pub sends: Vec<Emission>,
    pub to_controller: Vec<ToController>,
    pub events: Vec<Event>,
    /// Frames sent to patch ports, to enter the peer's bridge before the switch returns (always empty
    /// between calls).
    pub(crate) patched: Vec<Emission>,
    /// The tunnel metadata of frames leaving by Geneve ports ([`Emission::md`]).
    pub tun_mds: Vec<TunMd>,
    /// What `learn` actions read.
    pub learned: Vec<LearnedFlow>,
    /// The `fin_timeout`s TCP FINs and RSTs met.
    pub fins: Vec<FinSeen>,
}

impl Outputs {
    pub fn with_capacity(n: usize) -> Outputs {
        Outputs {
            sends: Vec::with_capacity(n),
            to_controller: Vec::with_capacity(16),
            events: Vec::with_capacity(4),
            patched: Vec::with_capacity(16),
            tun_mds: Vec::with_capacity(16),
            learned: Vec::with_capacity(4),
            fins: Vec::with_capacity(4),
        }
    }

    pub fn clear(&mut self) {
        self.sends.clear();
        self.to_controller.clear();
        self.events.clear();
        self.patched.clear();
        self.tun_mds.clear();
        self.learned.clear();
        self.fins.clear();
    }
}

/// One step of a frame through the switch, as an [`Observer`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Free text (VLAN handling, the NORMAL decision, a drop).
    Note(String),
    /// A flow table was looked up: the matching flow's id (`None`: a miss, the frame is dropped).
    Flow { table: u8, rule: Option<u64> },
    /// The frame leaves by a port, or would but is too big for its tunnel (and the tunnel's MTU).
    Output { emission: Emission, too_big: Option<u16> },
}

/// Watches a frame's way through the switch. Switching real traffic uses [`Quiet`], which compiles to
/// nothing; `weft trace` records the steps.
pub trait Observer {
    fn on(&mut self, step: impl FnOnce() -> Step);
}

/// The observer of real traffic: sees nothing.
pub struct Quiet;

impl Observer for Quiet {
    #[inline(always)]
    fn on(&mut self, _: impl FnOnce() -> Step) {}
}

impl Observer for Vec<Step> {
    fn on(&mut self, step: impl FnOnce() -> Step) {
        self.push(step());
    }
}

/// A flow's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStat {
    pub packets: u64,
    pub bytes: u64,
    pub last_used: Nanos,
}

/// What a control plane changes in a bridge: flood lists of `remote_ip=flow` ports and FDB entries.
#[derive(Debug, Default, Clone)]
pub struct CpUpdate {
    pub origin: Option<Origin>,
    /// Drop every entry and flood list this control plane installed before applying the rest.
    pub reset: bool,
    /// New flood lists by port name.
    pub flood: Vec<(String, Arc<[IpAddr]>)>,
    /// (VLAN, MAC, port name, remote VTEP).
    pub install: Vec<(u16, EthernetAddress, String, IpAddr)>,
    pub remove: Vec<(u16, EthernetAddress)>,
}

/// What one worker's switch learned that every other worker's switch learns too ([`Switch::take_learnt`],
/// [`Switch::apply_learnt`]), in the pipeline of `generation` (the indices are that pipeline's), at `at`
/// on the clock every worker shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learnt {
    /// A MAC address learned, moved, or refreshed in a new second.
    Mac {
        generation: u64,
        bridge: u16,
        vlan: u16,
        mac: EthernetAddress,
        port: PortIdx,
        remote: Option<IpAddr>,
        at: Nanos,
    },
    /// An IP-to-MAC binding for ARP/ND suppression.
    Neigh { generation: u64, bridge: u16, vlan: u16, ip: IpAddr, mac: EthernetAddress, from_tunnel: bool, at: Nanos },
}

/// One row of `fdb show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbRow {
    pub port: String,
    pub ofport: u32,
    pub vlan: u16,
    pub mac: EthernetAddress,
    pub age: u64,
    pub remote: Option<IpAddr>,
    pub origin: Origin,
}

/// What changed in a watched bridge's MAC table ([`Switch::fdb_changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdbDelta {
    /// The whole table (the first time, after a change to many entries at once, or after more changes than
    /// the table remembers).
    Whole(Vec<FdbRow>),
    /// Each changed (VLAN, MAC) with its entry now; `None`: gone.
    Changed(Vec<(u16, EthernetAddress, Option<FdbRow>)>),
}

/// `fdb stats`: how full the MAC table is and what learning could not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbStats {
    pub entries: usize,
    pub max_entries: usize,
    pub learn_misses: u64,
    pub moves: u64,
    pub aged: u64,
}
