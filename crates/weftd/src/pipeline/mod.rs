//! The immutable snapshot of the running configuration that the datapath thread works from, and the
//! resources (open devices and sockets) behind it, reused across configuration changes.

use anyhow::{anyhow, Context};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use weft_api::config::Valid;
use weft_api::{Config, Encap, IfaceType, TunnelSpec};
use weft_datapath::switch::meter::MeterState;
use weft_datapath::PortIdx;
use weft_sys::packet::PacketSocket;
use weft_sys::tap::Tap;

pub use weft_datapath::switch::pipeline::{
    ActRt, BandRt, BridgeRt, BucketRt, GroupKind, GroupRt, MeterRt, PortDesc, PortKind, RuleRt, TableRt, TunField,
    TunMap, TunnelPort,
};
pub use weft_datapath::switch::OFPORT_LOCAL;
/// Underlay MTU assumed when sizing TAP ports.
pub const UNDERLAY_MTU: u32 = 1500;
/// Sender sockets per local address: the flow hash picks one, so each flow keeps one source port.
pub const SENDERS_PER_POOL: usize = 16;

/// One kernel object per worker: the queues of a multi-queue TAP, the sockets of a PACKET_FANOUT or
/// SO_REUSEPORT group. There may be fewer than workers (a TAP made with a single queue, GRE's raw socket):
/// then the first workers receive from them and every worker sends through one.
#[derive(Debug)]
pub struct Queues<T>(pub Vec<Arc<T>>);

impl<T> Clone for Queues<T> {
    fn clone(&self) -> Self {
        Queues(self.0.clone())
    }
}

impl<T> Queues<T> {
    /// What worker `w` receives from, if any.
    pub fn recv(&self, w: usize) -> Option<&T> {
        self.0.get(w).map(|t| &**t)
    }

    /// What worker `w` sends through.
    pub fn send(&self, w: usize) -> &T {
        &self.0[w % self.0.len()]
    }

    pub fn first(&self) -> &T {
        &self.0[0]
    }
}

/// The device or sockets behind a port (its description for switching is the core's [`PortDesc`]).
#[derive(Debug, Clone)]
pub enum PortIo {
    Tap(Queues<Tap>),
    Packet(Queues<PacketSocket>),
    /// A tunnel: the sender pool its packets leave by.
    Tunnel {
        pool: usize,
    },
    /// Configured but not open (see [`PortKind::Down`]).
    Down,
}

/// A port's I/O side, at the same index as its [`PortDesc`] in the core pipeline.
#[derive(Debug, Clone)]
pub struct PortRt {
    pub io: PortIo,
    pub mtu: Option<u32>,
    /// Where the TAP was found at start, if another namespace holds it.
    pub netns: Option<String>,
}

mod flows;
use flows::{build_groups, build_meters, build_tables};
pub use flows::{compile_actions, MeterStates};

/// A socket receiving one encapsulation on one local address (a UDP port for VXLAN or Geneve, IP protocol
/// 47 for GRE); which tunnel a packet belongs to is the core's `demux` entry of the same index.
#[derive(Debug)]
pub struct RxSocket {
    /// One per worker (an SO_REUSEPORT group), or one for all (GRE's raw socket: worker 0 reads it).
    pub sockets: Queues<OwnedFd>,
    pub bound: SocketAddr,
    pub encap: Encap,
}

pub struct Pipeline {
    /// What the switch runs: ports by kind, bridges, flow tables.
    pub core: Arc<weft_datapath::switch::Pipeline>,
    /// Each port's device or sockets, by the same index as `core.ports`.
    pub ports: Vec<PortRt>,
    pub rx_sockets: Vec<RxSocket>,
    /// Send-only sockets, one pool per (local address, multicast interface, DF, protocol).
    pub pools: Vec<Arc<Vec<OwnedFd>>>,
    /// The local port of each pool socket (for the outer headers `weft capture --outer` shows).
    pub pool_ports: Vec<Vec<u16>>,
    /// ESP sockets (UDP port 4500 and IP protocol 50, per address family) when some tunnel has IPsec.
    pub esp: Vec<EspSocket>,
    /// Held by a worker while it numbers and sends GRE packets of ports with `seq=true`.
    pub gre_lock: std::sync::Mutex<()>,
}

/// A socket ESP arrives on and leaves by.
#[derive(Debug, Clone)]
pub struct EspSocket {
    pub fd: Arc<OwnedFd>,
    pub v6: bool,
    /// UDP port 4500 (ESP in UDP, and IKE with the non-ESP marker), else raw IP protocol 50.
    pub udp: bool,
}

impl Pipeline {
    /// A pipeline with nothing in it (what the datapath runs before the first configuration arrives).
    pub fn empty() -> Pipeline {
        Pipeline {
            core: Default::default(),
            ports: vec![],
            rx_sockets: vec![],
            pools: vec![],
            pool_ports: vec![],
            esp: vec![],
            gre_lock: Default::default(),
        }
    }
}

/// The alias weft gives the TAP devices it creates (`weft-owned db=PATH`): what marks a device as this
/// daemon's, to remove when no port names it any more, also after a crash.
static OWNER_MARK: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the mark once, from the database path (several daemons of one namespace keep their own).
pub fn set_owner_mark(db: &std::path::Path) {
    let db = std::fs::canonicalize(db).unwrap_or_else(|_| db.to_path_buf());
    let mut mark = format!("weft-owned db={}", db.display());
    mark.truncate(255);
    let _ = OWNER_MARK.set(mark);
}

fn owner_mark() -> &'static str {
    OWNER_MARK.get().map_or("weft-owned", String::as_str)
}

/// Whether TAP `name` of this namespace was made by this daemon (now or before a restart).
fn owned(name: &str) -> bool {
    weft_sys::iface::alias(name).as_deref() == Some(owner_mark())
}

/// Removes the TAP devices of this namespace that this daemon made and `cfg` no longer names: what a crash
/// between saving a configuration and removing a device leaves behind. Returns their names.
pub fn sweep_stale_taps(cfg: &Config) -> Vec<String> {
    let wanted: HashSet<&str> = cfg
        .bridges
        .iter()
        .flat_map(|b| {
            std::iter::once(b.name.as_str()).chain(
                b.ports
                    .iter()
                    .filter(|p| matches!(p.iface_type, IfaceType::Tap | IfaceType::Internal))
                    .map(|p| p.name.as_str()),
            )
        })
        .collect();
    let mut removed = Vec::new();
    for name in weft_sys::iface::tun_devices() {
        // Devices a crash left with their temporary name are weft's too.
        if wanted.contains(name.as_str()) || !(owned(&name) || Tap::is_temporary(&name)) {
            continue;
        }
        if let Ok(t) = Tap::open(&name) {
            if t.destroy().is_ok() {
                removed.push(name);
            }
        }
    }
    removed
}

/// Open devices and sockets, keyed so that an unchanged port keeps its descriptor across changes.
#[derive(Default)]
pub struct Resources {
    /// Datapath workers: TAP queues and receive sockets are opened one per worker.
    pub workers: usize,
    /// Open TAPs: the device, the namespace it was found in (if not ours), and the MTU weft gave it when it
    /// created it (still weft's to adjust while the device keeps that MTU).
    taps: HashMap<String, OpenTap>,
    packets: HashMap<String, Queues<PacketSocket>>,
    rx: HashMap<RxKey, Queues<OwnedFd>>,
    pools: HashMap<PoolKey, Arc<Vec<OwnedFd>>>,
    /// ESP sockets by (IPv6, UDP).
    esp: HashMap<(bool, bool), Arc<OwnedFd>>,
    /// OpenFlow meters' buckets and counters.
    pub meters: MeterStates,
    /// When each group (by bridge and id) became as it is now (for its statistics' duration).
    pub groups_since: HashMap<(String, u32), (weft_api::group::Group, std::time::Instant)>,
    /// Each bridge's fail-open flag (see `BridgeRt::fail_open`), kept across pipelines.
    pub fail_open: HashMap<String, Arc<std::sync::atomic::AtomicBool>>,
    /// The connection tracker, made at the first build (its hash keyed with a random seed) and handed to
    /// every pipeline after.
    conntrack: Option<Arc<weft_datapath::conntrack::Conntrack>>,
}

/// Opens an ESP socket: UDP port 4500 on every address of the family, or raw IP protocol 50.
fn open_esp(v6: bool, udp: bool) -> anyhow::Result<Arc<OwnedFd>> {
    let any: IpAddr = if v6 { Ipv6Addr::UNSPECIFIED.into() } else { Ipv4Addr::UNSPECIFIED.into() };
    let fd = if udp {
        let bind = SocketAddr::new(any, weft_wire::esp::NAT_T_PORT);
        let fd = OwnedFd::from(weft_sys::udp::bind(bind).with_context(|| format!("IPsec: cannot bind UDP {bind}"))?);
        if weft_sys::offloads_enabled() {
            weft_sys::udp::enable_gro(&fd);
        }
        fd
    } else {
        weft_sys::udp::raw(SocketAddr::new(any, 0), weft_wire::ipv4::Protocol::ESP, false)
            .with_context(|| format!("IPsec: cannot open a raw ESP socket ({})", if v6 { "IPv6" } else { "IPv4" }))?
    };
    Ok(Arc::new(fd))
}

/// The address families of the tunnels with IPsec (IPv4: false, IPv6: true).
fn esp_families(cfg: &Valid) -> Vec<bool> {
    let mut v: Vec<bool> =
        cfg.tunnels().map(|(_, _, t)| t).filter(|t| t.ipsec.is_some()).map(|t| t.remote.is_ipv6()).collect();
    v.sort();
    v.dedup();
    v
}

/// An open TAP: the device, the namespace it was found in, and the MTU weft gave it.
type OpenTap = (Queues<Tap>, Option<String>, Option<u32>);

/// A receive socket: local address and UDP port (0 for GRE), and IP protocol.
type RxKey = (SocketAddr, u8);

fn rx_key(spec: &TunnelSpec) -> RxKey {
    let ip = spec.local.unwrap_or(if spec.remote.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    });
    (SocketAddr::new(ip, spec.dst_port), spec.ip_protocol())
}

/// Send pools are shared by tunnels with the same local address, protocol and DF setting and, for
/// multicast, the same interface.
type PoolKey = (SocketAddr, u32, bool, u8);

fn pool_key(spec: &TunnelSpec, mcast_ifindex: u32) -> PoolKey {
    let (bind, proto) = rx_key(spec);
    (SocketAddr::new(bind.ip(), 0), mcast_ifindex, spec.df, proto)
}

/// Opens a receive socket: UDP bound to the tunnel port, or raw GRE (bound only to a given local address).
/// Opens the receive sockets of a tunnel port: UDP bound to the tunnel port, one per worker in an
/// SO_REUSEPORT group (the kernel picks one by the outer addresses and ports, and the outer source port
/// carries the inner flow's hash, so one flow stays with one worker); or one raw GRE socket (bound only to a
/// given local address), which worker 0 reads: raw sockets each get a copy of every packet, so a group of
/// them would only duplicate.
fn open_rx(key: RxKey, encap: Encap, port: &str, workers: usize) -> anyhow::Result<Queues<OwnedFd>> {
    let (bind, _) = key;
    let fds = match encap {
        Encap::Gre => vec![weft_sys::udp::raw(bind, weft_wire::gre::IP_PROTOCOL, !bind.ip().is_unspecified())
            .with_context(|| format!("port {port:?}: cannot open a raw GRE socket on {}", bind.ip()))?],
        Encap::Vxlan | Encap::Geneve => {
            let fds = weft_sys::udp::bind_group(bind, workers.max(1))
                .with_context(|| format!("port {port:?}: cannot bind UDP {bind}"))?;
            for (i, fd) in fds.iter().enumerate() {
                // Trains of datagrams of one flow arrive as one buffer; the datapath cuts them apart again.
                if weft_sys::offloads_enabled() && !weft_sys::udp::enable_gro(fd) && i == 0 {
                    tracing::info!(
                        "port {port}: the kernel does not coalesce received UDP (UDP_GRO); receiving one by one"
                    );
                }
                // Multicast reaches every socket of a group that may take it: only the first joins groups,
                // the others take none (else each worker would switch its own copy).
                if i > 0 {
                    weft_sys::udp::multicast_all(fd, bind.is_ipv6(), false)?;
                }
            }
            fds
        }
    };
    Ok(Queues(fds.into_iter().map(Arc::new).collect()))
}

/// Opens a send pool: 16 UDP sockets on ephemeral ports (the flow hash picks one, which gives each flow its
/// own source port), or one raw GRE socket that ignores input.
fn open_pool(key: PoolKey, port: &str) -> anyhow::Result<Arc<Vec<OwnedFd>>> {
    let (bind, mcast_ifindex, df, proto) = key;
    let mut socks = Vec::with_capacity(SENDERS_PER_POOL);
    if proto == weft_wire::gre::IP_PROTOCOL {
        let s = weft_sys::udp::raw(bind, proto, !bind.ip().is_unspecified())
            .with_context(|| format!("port {port:?}: cannot open a raw GRE socket on {}", bind.ip()))?;
        weft_sys::udp::discard_input(&s)?;
        socks.push(s);
    } else {
        for _ in 0..SENDERS_PER_POOL {
            let s = OwnedFd::from(
                weft_sys::udp::bind(bind).with_context(|| format!("port {port:?}: cannot bind UDP {bind}"))?,
            );
            weft_sys::udp::shrink_receive_buffer(&s)?;
            if mcast_ifindex != 0 {
                weft_sys::udp::set_multicast_out(&s, bind.is_ipv6(), mcast_ifindex, 1)?;
            }
            socks.push(s);
        }
    }
    if bind.is_ipv4() {
        for s in &socks {
            weft_sys::udp::set_dont_fragment(s, df)?;
        }
    }
    Ok(Arc::new(socks))
}

/// The header a VXLAN or Geneve port puts in front of every frame (GRE's is built per packet).
fn encap_header(spec: &TunnelSpec, options: &[u8]) -> Arc<[u8]> {
    match spec.encap {
        Encap::Vxlan => {
            let mut h = [0u8; weft_wire::vxlan::HEADER_LEN];
            weft_wire::vxlan::VxlanRepr { vni: spec.vni }.emit(&mut h);
            h.into()
        }
        Encap::Geneve => {
            let repr = weft_wire::geneve::GeneveRepr {
                vni: spec.vni,
                protocol: weft_wire::EtherType::TEB,
                oam: false,
                options,
            };
            let mut h = vec![0u8; repr.buffer_len()];
            repr.emit(&mut h);
            h.into()
        }
        Encap::Gre => Arc::from(&[][..]),
    }
}

/// The MTU for a new TAP on `bridge`: what fits the underlay behind its largest tunnel overhead.
fn tap_mtu(cfg: &Valid, bridge: &str) -> u32 {
    let worst =
        cfg.tunnels().filter(|(b, _, _)| b.name == bridge).map(|(_, _, t)| t.overhead() + 14).max().unwrap_or(50);
    UNDERLAY_MTU - worst
}

/// The resource under `key`, opened with `open` (and noted in `opened`) when `table` has none yet.
fn get_or_open<K: Clone + Eq + std::hash::Hash, V: Clone, E>(
    table: &mut HashMap<K, V>,
    key: K,
    opened: &mut Vec<K>,
    open: impl FnOnce() -> Result<V, E>,
) -> Result<V, E> {
    if let Some(v) = table.get(&key) {
        return Ok(v.clone());
    }
    let v = open()?;
    opened.push(key.clone());
    table.insert(key, v.clone());
    Ok(v)
}

impl Resources {
    /// The switch's connection tracker, if a pipeline was built.
    pub fn tracker(&self) -> Option<&Arc<weft_datapath::conntrack::Conntrack>> {
        self.conntrack.as_ref()
    }

    /// The switch's connection tracker.
    pub fn conntrack(&mut self) -> &Arc<weft_datapath::conntrack::Conntrack> {
        self.conntrack.get_or_insert_with(|| {
            let mut seed = [0u8; 8];
            weft_ipsec::crypto::random(&mut seed);
            Arc::new(weft_datapath::conntrack::Conntrack::new(u64::from_le_bytes(seed)))
        })
    }

    /// Opens what `cfg` needs and is not open yet. With `strict`, the first failure is returned and the
    /// resources opened by this call are closed again; otherwise failing ports come up as [`PortIo::Down`].
    /// Returns the pipeline, and the names of TAPs this call created (to remove if the change is abandoned).
    pub fn build(&mut self, cfg: &Valid, generation: u64, strict: bool) -> anyhow::Result<(Pipeline, Vec<String>)> {
        let mut created_taps = Vec::new();
        let mut opened_packets = Vec::new();
        let mut opened_rx = Vec::new();
        let mut opened_pools = Vec::new();
        let result = self.build_inner(
            cfg,
            generation,
            strict,
            &mut created_taps,
            &mut opened_packets,
            &mut opened_rx,
            &mut opened_pools,
        );
        if result.is_err() {
            for t in &created_taps {
                if let Some((tap, ..)) = self.taps.remove(t) {
                    let _ = tap.first().destroy();
                }
            }
            for p in &opened_packets {
                self.packets.remove(p);
            }
            for a in &opened_rx {
                self.rx.remove(a);
            }
            for a in &opened_pools {
                self.pools.remove(a);
            }
        }
        result.map(|p| (p, created_taps))
    }

    #[allow(clippy::too_many_arguments)]
    fn build_inner(
        &mut self,
        cfg: &Valid,
        generation: u64,
        strict: bool,
        created_taps: &mut Vec<String>,
        opened_packets: &mut Vec<String>,
        opened_rx: &mut Vec<RxKey>,
        opened_pools: &mut Vec<PoolKey>,
    ) -> anyhow::Result<Pipeline> {
        let mut bridges = Vec::new();
        let mut ports: Vec<PortRt> = Vec::new();
        let mut descs: Vec<PortDesc> = Vec::new();
        let mut rx_sockets: Vec<RxSocket> = Vec::new();
        let mut demux: Vec<weft_datapath::switch::demux::Demux> = Vec::new();
        let mut pools: Vec<Arc<Vec<OwnedFd>>> = Vec::new();
        let mut pool_index: HashMap<PoolKey, usize> = HashMap::new();
        let mut rx_index: HashMap<RxKey, usize> = HashMap::new();

        let no_spec = weft_api::config::PortSpec::default();
        // Patch ports: (index, name, the peer it names).
        let mut patches: Vec<(PortIdx, String, String)> = Vec::new();
        for (bi, (b, bspec)) in cfg.bridges().enumerate() {
            let mut members = Vec::new();
            let internal = std::iter::once((b.name.clone(), OFPORT_LOCAL, IfaceType::Internal, None, &no_spec));
            let vlan_of = |pc: Option<&weft_api::PortConfig>| {
                let v = pc.map_or(&b.local_vlan, |p| &p.vlan);
                weft_datapath::vlan::VlanMode::new(v.tag, &v.trunks)
            };
            let others =
                b.ports.iter().zip(&bspec.ports).map(|(p, s)| (p.name.clone(), p.ofport, p.iface_type, Some(p), s));
            for (name, ofport, ty, pc, pspec) in internal.chain(others) {
                let idx = PortIdx(u16::try_from(ports.len()).map_err(|_| anyhow!("more than 65535 ports"))?);
                let mut netns = None;
                let mut mtu = None;
                let (kind, io) = match ty {
                    // Joined to its peer once every bridge's ports are known (below).
                    IfaceType::Patch => {
                        let peer = pc.and_then(|p| p.options.get("peer")).cloned().unwrap_or_default();
                        patches.push((idx, name.clone(), peer));
                        (PortKind::Down("its peer is not known yet".into()), PortIo::Down)
                    }
                    IfaceType::Tap | IfaceType::Internal => {
                        let opened = match self.taps.get(&name) {
                            Some((t, ns, _)) => Ok((t.clone(), ns.clone(), false)),
                            None => {
                                let existed = weft_sys::iface::index(&name).is_some();
                                // A new device carries weft's mark from the moment it has its name.
                                let create = || Tap::create_marked(&name, owner_mark());
                                // Only tap ports are handed to other namespaces; internal ports stay here.
                                let found = if ty == IfaceType::Tap {
                                    weft_sys::netns::find_tap(&name, create)
                                } else if existed {
                                    Tap::open(&name).map(|t| (t, None))
                                } else {
                                    create().map(|t| (t, None))
                                };
                                found.map(|(t, ns)| {
                                    let mut queues = vec![Arc::new(t)];
                                    // One queue per worker; a device made with one queue stays with worker 0.
                                    let more = self.workers.saturating_sub(1);
                                    match weft_sys::netns::more_queues(&name, ns.as_deref(), more) {
                                        Ok(v) => queues.extend(v.into_iter().map(Arc::new)),
                                        Err(e) => tracing::info!(
                                            "port {name}: one queue only ({e}): worker 0 receives all its frames"
                                        ),
                                    }
                                    (Queues(queues), ns.clone(), !existed && ns.is_none())
                                })
                            }
                        };
                        match opened {
                            Ok((tap, ns, created)) => {
                                if !self.taps.contains_key(&name) {
                                    let mut mtu_set = None;
                                    if ns.is_none() {
                                        if created {
                                            let m = tap_mtu(cfg, &b.name);
                                            mtu_set = weft_sys::iface::set_mtu(&name, m).ok().map(|_| m);
                                        }
                                        let _ = weft_sys::iface::set_up(&name);
                                    }
                                    if created {
                                        // Marked already: `Tap::create_marked` named it only once marked.
                                        created_taps.push(name.clone());
                                    }
                                    self.taps.insert(name.clone(), (tap.clone(), ns.clone(), mtu_set));
                                }
                                netns = ns.clone();
                                if ns.is_none() {
                                    mtu = weft_sys::iface::mtu(&name).ok();
                                }
                                (PortKind::Tap { vnet_hdr: tap.first().offloads().vnet_hdr }, PortIo::Tap(tap))
                            }
                            // An interface of another kind holds the name (TUNSETIFF says only EINVAL).
                            Err(e)
                                if strict
                                    && e.kind() == std::io::ErrorKind::InvalidInput
                                    && weft_sys::iface::index(&name).is_some() =>
                            {
                                return Err(anyhow!(
                                    "an interface named {name:?} exists and is not a TAP (a veth or a NIC, say): weft \
                                     cannot make it a {ty} port; use type=system to attach it, or remove it first"
                                ));
                            }
                            Err(e) if strict => return Err(anyhow!("cannot create TAP device {name:?}: {e}")),
                            Err(e) => {
                                tracing::warn!("port {name}: cannot open TAP device: {e}");
                                (PortKind::Down(format!("cannot open TAP device: {e}")), PortIo::Down)
                            }
                        }
                    }
                    IfaceType::System => {
                        let workers = self.workers.max(1);
                        let opened = get_or_open(&mut self.packets, name.clone(), opened_packets, || {
                            PacketSocket::open_group(&name, workers)
                                .map(|v| Queues(v.into_iter().map(Arc::new).collect()))
                        });
                        match opened {
                            Ok(s) => {
                                mtu = weft_sys::iface::mtu(&name).ok();
                                (PortKind::Packet, PortIo::Packet(s))
                            }
                            Err(e) if strict && e.kind() == std::io::ErrorKind::NotFound => {
                                return Err(anyhow!(
                                    "port {name:?}: no network interface named {name:?} exists in weftd's namespace"
                                ))
                            }
                            Err(e) if strict => return Err(anyhow!("port {name:?}: cannot attach: {e}")),
                            Err(e) => {
                                tracing::warn!("port {name}: cannot attach: {e}");
                                (PortKind::Down(e.to_string()), PortIo::Down)
                            }
                        }
                    }
                    IfaceType::Vxlan | IfaceType::Geneve | IfaceType::Gre | IfaceType::IpsecGre => {
                        let spec = pspec.tunnel.ok_or_else(|| anyhow!("port {name:?} is not a tunnel"))?;
                        let key = rx_key(&spec);
                        let ri = match rx_index.get(&key) {
                            Some(i) => *i,
                            None => {
                                let workers = self.workers;
                                let sock = get_or_open(&mut self.rx, key, opened_rx, || {
                                    open_rx(key, spec.encap, &name, workers)
                                })?;
                                rx_sockets.push(RxSocket { sockets: sock, bound: key.0, encap: spec.encap });
                                // Raw IPv4 GRE sockets hand over the outer IP header.
                                let outer_ipv4 = spec.encap == Encap::Gre && key.0.is_ipv4();
                                demux.push(weft_datapath::switch::demux::Demux::new(spec.encap, outer_ipv4, idx));
                                rx_index.insert(key, rx_sockets.len() - 1);
                                rx_sockets.len() - 1
                            }
                        };
                        let remotes: Arc<[IpAddr]> = pspec.flood_remotes.as_slice().into();
                        // Multicast groups and remote_ip=flow take the VNI from any sender.
                        demux[ri].add(idx, spec.vni, &remotes, spec.remote.is_multicast() || spec.flow);
                        let mcast_ifindex = match (spec.remote.is_multicast(), &pspec.dev) {
                            (true, Some(dev)) => weft_sys::iface::index(dev)
                                .ok_or_else(|| anyhow!("port {name:?}: no underlay interface named {dev:?}"))?,
                            _ => 0,
                        };
                        if spec.remote.is_multicast() {
                            let sock = rx_sockets[ri].sockets.first();
                            match weft_sys::udp::join_group(sock, spec.remote, mcast_ifindex) {
                                // AddrInUse: this socket joined the group already.
                                Err(e) if e.kind() != std::io::ErrorKind::AddrInUse => {
                                    return Err(anyhow!("port {name:?}: cannot join {}: {e}", spec.remote))
                                }
                                _ => {}
                            }
                        }
                        let pkey = pool_key(&spec, mcast_ifindex);
                        let pi = match pool_index.get(&pkey) {
                            Some(i) => *i,
                            None => {
                                let pool = get_or_open(&mut self.pools, pkey, opened_pools, || open_pool(pkey, &name))?;
                                pools.push(pool);
                                pool_index.insert(pkey, pools.len() - 1);
                                pools.len() - 1
                            }
                        };
                        let header = encap_header(&spec, &pspec.geneve_options);
                        let known_options: Vec<(u16, u8)> = match spec.encap {
                            Encap::Geneve => weft_wire::geneve::GenevePacket::new_checked(&header[..])?
                                .options()
                                .flatten()
                                .map(|o| (o.class, o.kind))
                                .collect(),
                            Encap::Vxlan | Encap::Gre => Vec::new(),
                        };
                        let tunnel = TunnelPort {
                            spec,
                            dest: SocketAddr::new(spec.remote, spec.dst_port),
                            mtu: (UNDERLAY_MTU - spec.overhead() - 14) as u16,
                            remotes,
                            proxy: pspec.proxy,
                            header,
                            known_options: known_options.into(),
                        };
                        (PortKind::Tunnel(tunnel), PortIo::Tunnel { pool: pi })
                    }
                };
                ports.push(PortRt { io, mtu, netns });
                let of_config = pc.map_or(b.local_of_config, |p| p.of_config);
                descs.push(PortDesc { name, ofport, bridge: bi, vlan: vlan_of(pc), kind, of_config });
                members.push(idx);
            }
            let port_idx = |name: &str| members.iter().copied().find(|i| descs[usize::from(i.0)].name == name);
            let statics = b
                .fdb
                .iter()
                .filter(|e| e.mac != weft_wire::EthernetAddress::ZERO)
                .filter_map(|e| {
                    let idx = port_idx(&e.port)?;
                    let remote = descs[usize::from(idx.0)].tunnel().map(|t| e.dst.unwrap_or(t.spec.remote));
                    Some((e.vlan, e.mac, idx, remote))
                })
                .collect();
            let has_proxy = members.iter().any(|i| descs[usize::from(i.0)].tunnel().is_some_and(|t| t.proxy));
            let ofports: HashMap<u32, PortIdx> = members.iter().map(|i| (descs[usize::from(i.0)].ofport, *i)).collect();
            let mut cts = Vec::new();
            let tun = flows::tun_map(b);
            let tables = build_tables(b, &ofports, &mut cts, &tun);
            let groups = build_groups(b, &ofports, &mut cts, &tun);
            for g in &b.groups {
                let key = (b.name.clone(), g.id);
                if self.groups_since.get(&key).is_none_or(|(was, _)| was != g) {
                    self.groups_since.insert(key, (g.clone(), std::time::Instant::now()));
                }
            }
            let meters = build_meters(b, &mut self.meters);
            let fail_open = self.fail_open.entry(b.name.clone()).or_default().clone();
            bridges.push(BridgeRt {
                groups,
                meters,
                fail_open,
                default_flow: if tables.is_empty() { b.flows.first().map(|f| f.id) } else { None },
                tables,
                has_proxy,
                name: b.name.clone(),
                aging_secs: b.mac_aging_time(),
                table_size: b.mac_table_size(),
                ports: members,
                statics,
                cts,
                tun,
            });
        }
        // A patch port is joined when its peer is a patch port that names it back; otherwise it stays down,
        // saying why (as OVS leaves a patch port whose peer is missing).
        for (idx, name, peer) in &patches {
            let back = patches.iter().find(|(_, n, _)| n == peer);
            descs[usize::from(idx.0)].kind = match back {
                Some((pidx, _, theirs)) if theirs == name => PortKind::Patch(*pidx),
                Some((_, _, theirs)) => PortKind::Down(format!("its peer {peer:?} names {theirs:?} as its peer")),
                None if descs.iter().any(|d| &d.name == peer) => {
                    PortKind::Down(format!("its peer {peer:?} is not a patch port"))
                }
                None => PortKind::Down(format!("its peer {peer:?} does not exist")),
            };
        }
        let pool_ports = pools
            .iter()
            .map(|p| p.iter().map(|s| weft_sys::udp::local_addr(s).map_or(0, |a| a.port())).collect())
            .collect();
        let mut esp = Vec::new();
        for v6 in esp_families(cfg) {
            for udp in [true, false] {
                let fd = match self.esp.get(&(v6, udp)) {
                    Some(fd) => fd.clone(),
                    None => {
                        let fd = open_esp(v6, udp)?;
                        self.esp.insert((v6, udp), fd.clone());
                        fd
                    }
                };
                esp.push(EspSocket { fd, v6, udp });
            }
        }
        let mut core = weft_datapath::switch::Pipeline::new(generation, bridges, descs, demux);
        let ct = self.conntrack();
        let limit = cfg.conntrack.max_conns.map_or(weft_datapath::conntrack::DEFAULT_LIMIT, |n| n as usize);
        ct.set_limit(limit);
        ct.replace_zone_limits(cfg.conntrack.zone_limits.iter().map(|(z, n)| (*z, *n as usize)));
        core.conntrack = ct.clone();
        let core = Arc::new(core);
        Ok(Pipeline { core, ports, rx_sockets, pools, pool_ports, esp, gre_lock: Default::default() })
    }

    /// Closes what `cfg` no longer uses; TAPs of removed ports are deleted.
    pub fn release_unused(&mut self, cfg: &Valid) {
        let mut taps = HashSet::new();
        let mut packets = HashSet::new();
        let mut rx = HashSet::new();
        let mut pools = HashSet::new();
        for (b, bspec) in cfg.bridges() {
            taps.insert(b.name.clone());
            for (p, pspec) in b.ports.iter().zip(&bspec.ports) {
                match p.iface_type {
                    IfaceType::Tap | IfaceType::Internal => {
                        taps.insert(p.name.clone());
                    }
                    IfaceType::System => {
                        packets.insert(p.name.clone());
                    }
                    IfaceType::Patch => {}
                    IfaceType::Vxlan | IfaceType::Geneve | IfaceType::Gre | IfaceType::IpsecGre => {
                        if let Some(spec) = pspec.tunnel {
                            rx.insert(rx_key(&spec));
                            let ifindex = match (spec.remote.is_multicast(), &pspec.dev) {
                                (true, Some(dev)) => weft_sys::iface::index(dev).unwrap_or(0),
                                _ => 0,
                            };
                            pools.insert(pool_key(&spec, ifindex));
                        }
                    }
                }
            }
        }
        self.taps.retain(|name, (tap, ns, _)| {
            let keep = taps.contains(name);
            // Only devices weft made go with their port (marked, or handed to another namespace, where the
            // mark cannot be read); a TAP someone else made is only let go.
            if !keep && (ns.is_some() || owned(name)) {
                let _ = tap.first().destroy();
            }
            keep
        });
        self.packets.retain(|name, _| packets.contains(name));
        self.rx.retain(|a, _| rx.contains(a));
        self.pools.retain(|a, _| pools.contains(a));
        let families = esp_families(cfg);
        self.esp.retain(|(v6, _), _| families.contains(v6));
        self.fail_open.retain(|bridge, _| cfg.config().bridge(bridge).is_some());
        self.groups_since.retain(|(bridge, id), (g, _)| {
            cfg.config().bridge(bridge).is_some_and(|b| b.groups.iter().any(|x| x.id == *id && x == g))
        });
        self.meters.retain(|(bridge, id), (m, ..)| {
            cfg.config().bridge(bridge).is_some_and(|b| b.meters.iter().any(|x| x.id == *id && x == m))
        });
    }

    /// When group `id` of `bridge` became as it is now.
    pub fn group_since(&self, bridge: &str, id: u32) -> Option<std::time::Instant> {
        self.groups_since.get(&(bridge.to_string(), id)).map(|(_, t)| *t)
    }

    /// Whether bridge `bridge` is failed open now.
    pub fn fail_open(&self, bridge: &str) -> bool {
        self.fail_open.get(bridge).is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Fails bridge `bridge` open or closes it again; whether that changed anything.
    pub fn set_fail_open(&self, bridge: &str, open: bool) -> bool {
        self.fail_open.get(bridge).is_some_and(|f| f.swap(open, std::sync::atomic::Ordering::Relaxed) != open)
    }

    /// The link state of every open TAP that is no longer in weftd's namespace (moved into a container's),
    /// looked at from inside the namespace it is in now; `None` where that cannot be told.
    pub fn moved_tap_links(&self) -> HashMap<String, Option<bool>> {
        let moved: Vec<_> = self
            .taps
            .iter()
            .filter(|(name, _)| weft_sys::iface::index(name).is_none())
            .filter_map(|(name, (tap, _, _))| Some((tap.first().netns().ok()?, name.clone())))
            .collect();
        let names: Vec<String> = moved.iter().map(|(_, n)| n.clone()).collect();
        names.into_iter().zip(weft_sys::netns::links_up(moved)).collect()
    }

    /// Forgets the AF_PACKET socket of system port `name` (its interface went away or was made anew), so that
    /// the next build opens it again on the interface of that name.
    pub fn forget_packet(&mut self, name: &str) {
        self.packets.remove(name);
    }

    /// Gives TAP and internal ports that weft created the MTU that fits their bridge's tunnels now (a tunnel
    /// added after the TAP may need a smaller one, or allow a larger one). Devices whose MTU someone changed
    /// since weft set it, or that left weftd's namespace, are left alone. Called once a change is committed.
    pub fn adjust_tap_mtus(&mut self, cfg: &Valid) {
        for b in &cfg.bridges {
            let want = tap_mtu(cfg, &b.name);
            let names = std::iter::once(&b.name).chain(
                b.ports
                    .iter()
                    .filter(|p| matches!(p.iface_type, IfaceType::Tap | IfaceType::Internal))
                    .map(|p| &p.name),
            );
            for name in names {
                let Some((_, None, mtu_set @ Some(_))) = self.taps.get_mut(name) else { continue };
                if *mtu_set == Some(want) || weft_sys::iface::mtu(name).ok() != *mtu_set {
                    continue;
                }
                if weft_sys::iface::set_mtu(name, want).is_ok() {
                    *mtu_set = Some(want);
                }
            }
        }
    }

    /// Deletes TAPs created by an abandoned change.
    pub fn abandon(&mut self, created_taps: &[String]) {
        for t in created_taps {
            if let Some((tap, ..)) = self.taps.remove(t) {
                let _ = tap.first().destroy();
            }
        }
    }
}
