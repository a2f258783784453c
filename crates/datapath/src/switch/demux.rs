//! Receiving tunnel packets: which tunnel port a packet belongs to (by its sender and VNI), checked and
//! decapsulated in one place. One [`Demux`] per receive socket (an encapsulation on one local address); the
//! maps are built from the configuration only, never from packets, so a cheap hash without flooding
//! protection is safe here.

use super::pipeline::{PortKind, TunnelPort};
use super::Switch;
use crate::counters::DropReason;
use crate::fdb::KeyHasher;
use crate::tunnel::{decap, Decap, Encap};
use crate::PortIdx;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::IpAddr;
use weft_wire::geneve::GenevePacket;

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// The tunnels one receive socket serves.
#[derive(Debug, Clone)]
pub struct Demux {
    pub encap: Encap,
    /// The socket hands over the outer IPv4 header too (a raw IPv4 GRE socket).
    pub outer_ipv4: bool,
    by_key: FastMap<(IpAddr, u32), PortIdx>,
    by_vni: FastMap<u32, PortIdx>,
    by_remote: FastMap<IpAddr, PortIdx>,
    /// Multicast (flood-and-learn) and `remote_ip=flow` tunnels: any sender with this VNI belongs to the port.
    by_vni_any: FastMap<u32, PortIdx>,
    first: PortIdx,
}

impl Demux {
    /// A demultiplexer for `encap` whose first tunnel is `first` (drops nobody claims are charged to it).
    pub fn new(encap: Encap, outer_ipv4: bool, first: PortIdx) -> Demux {
        Demux {
            encap,
            outer_ipv4,
            by_key: FastMap::default(),
            by_vni: FastMap::default(),
            by_remote: FastMap::default(),
            by_vni_any: FastMap::default(),
            first,
        }
    }

    /// Adds tunnel port `port` with VNI `vni`, its unicast `remotes`, and whether any sender is accepted.
    pub fn add(&mut self, port: PortIdx, vni: u32, remotes: &[IpAddr], any_sender: bool) {
        if any_sender {
            self.by_vni_any.insert(vni, port);
        }
        for remote in remotes.iter().filter(|r| !r.is_multicast()) {
            self.by_key.insert((*remote, vni), port);
            self.by_remote.entry(*remote).or_insert(port);
        }
        self.by_vni.entry(vni).or_insert(port);
    }

    /// The tunnel port for a packet from `remote` with `vni`, or the port to charge the drop to and why.
    #[inline]
    pub fn classify(&self, remote: IpAddr, vni: u32) -> Result<PortIdx, (PortIdx, DropReason)> {
        if let Some(p) = self.by_key.get(&(remote, vni)) {
            return Ok(*p);
        }
        if let Some(p) = self.by_vni_any.get(&vni) {
            return Ok(*p);
        }
        if let Some(p) = self.by_remote.get(&remote) {
            return Err((*p, DropReason::WrongVni));
        }
        Err((self.by_vni.get(&vni).copied().unwrap_or(self.first), DropReason::UnknownRemote))
    }
}

impl Switch {
    /// Takes a tunnel packet received on demultiplexer `demux` from `src`: reads its header, finds its port by
    /// sender and VNI, refuses clear text on a protected tunnel (and protected packets on a clear one),
    /// applies Geneve's critical-option rule, and counts it. Returns the port and where the inner frame
    /// starts in `pkt`; a drop is counted on the port it is charged to.
    pub fn accept_tunnel(
        &mut self,
        demux: usize,
        src: IpAddr,
        pkt: &[u8],
        protected: bool,
    ) -> Result<(PortIdx, usize), DropReason> {
        let (pipe, t) = (&self.pipe, &mut self.t);
        let Some(d) = pipe.demux.get(demux) else { return Err(DropReason::UnknownRemote) };
        // A GRE packet out of ESP has no outer IP header even on an IPv4 raw socket.
        let Decap { vni, inner_at, error } = decap(d.encap, d.outer_ipv4 && !protected, pkt);
        let port = match d.classify(src, vni) {
            Ok(p) => p,
            Err((charged, why)) => {
                let why = error.unwrap_or(why);
                t.counter(charged).drop(why);
                return Err(why);
            }
        };
        if let Some(why) = error {
            t.counter(port).drop(why);
            return Err(why);
        }
        let PortKind::Tunnel(TunnelPort { spec, known_options, .. }) = &pipe.port(port).kind else {
            return Err(DropReason::Malformed);
        };
        if spec.ipsec.is_some() != protected {
            t.counter(port).drop(DropReason::Cleartext);
            return Err(DropReason::Cleartext);
        }
        if d.encap == Encap::Geneve {
            let g = GenevePacket::new_unchecked(pkt);
            let mut seen = 0;
            let mut unknown_critical = false;
            // Known: the port's own options, and those the bridge's TLV map names (flows read them).
            let tun = &pipe.bridges[pipe.port(port).bridge].tun;
            for o in g.options().flatten() {
                seen += 1;
                unknown_critical |= o.is_critical()
                    && !known_options.contains(&(o.class, o.kind))
                    && !tun.fields.iter().any(|f| (f.class, f.kind) == (o.class, o.kind));
            }
            let c = t.counter(port);
            c.geneve_options_rx += seen;
            if unknown_critical {
                c.drop(DropReason::CriticalOption);
                return Err(DropReason::CriticalOption);
            }
        }
        t.counter(port).rx(pkt.len() - inner_at);
        Ok((port, inner_at))
    }

    /// The tunnel metadata of a Geneve packet `pkt` accepted on tunnel port `port`: the data of each option
    /// its bridge's TLV map names (class, type and length as mapped), for the flow tables. Nothing for other
    /// packets, or when the bridge maps no option.
    pub fn tunnel_metadata(&self, port: PortIdx, pkt: &[u8]) -> super::TunMd {
        use crate::classifier::{slot, FlowKey};
        let pipe = &self.pipe;
        let desc = pipe.port(port);
        let tun = &pipe.bridges[desc.bridge].tun;
        let mut md = super::TunMd::default();
        match &desc.kind {
            PortKind::Tunnel(t) if t.spec.encap == Encap::Geneve && !tun.fields.is_empty() => {}
            _ => return md,
        }
        let Ok(g) = GenevePacket::new_checked(pkt) else { return md };
        let mut key = FlowKey::default();
        for o in g.options().flatten() {
            let mapped = tun.fields.iter().find(|f| (f.class, f.kind) == (o.class, o.kind));
            if let Some(f) = mapped.filter(|f| usize::from(f.len) == o.data.len()) {
                key.put(f.slot, weft_wire::openflow::be_uint(o.data));
                key.put(f.present, 1);
            }
        }
        md.present = key.get(slot::TUN_MD_PRESENT) as u8;
        md.words.copy_from_slice(&key.w[slot::TUN_MD_WORD..slot::TUN_MD_WORD + slot::TUN_MD_WORDS]);
        md
    }
}
