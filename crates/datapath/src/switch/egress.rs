//! Egress, per wire frame: whether an offloaded frame may leave a port whole, the tunnel header each frame
//! leaves behind, and the outer IP header's TOS and TTL. The I/O layer asks these for every frame it puts
//! on the wire — after segmentation, so each GRE segment gets its own sequence number and checksum — and
//! only places bytes; the decisions are the switch's.

use super::pipeline::{PortDesc, PortKind, TunMap, TunnelPort};
use super::Switch;
use super::TunMd;
use crate::mtu;
use crate::offload::{self, VnetHdr};
use crate::tunnel::{Encap, Inherit, TunnelSpec};
use crate::PortIdx;
use weft_wire::ethernet::{EtherType, HEADER_LEN as ETH_LEN};

/// The longest tunnel header built per frame: Geneve with the port's options (at most
/// `weft_api::tlv::STATIC_OPTIONS_MAX` in a bridge with a TLV map) and the tunnel metadata the flows set
/// (at most 32 bytes of data in at most 8 options). GRE with checksum, key and sequence number, and VXLAN or
/// Geneve carrying only a flow's tunnel ID, are shorter.
pub const BUILT_HEADER_MAX: usize = 8 + 64 + 32 + 8 * 4;

/// The tunnel header one wire frame leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelHeader {
    bytes: [u8; BUILT_HEADER_MAX],
    len: u8,
}

impl TunnelHeader {
    /// The port's own prebuilt header ([`TunnelPort::header`]) serves: nothing was built.
    pub const PORT: TunnelHeader = TunnelHeader { bytes: [0; BUILT_HEADER_MAX], len: 0 };

    /// Whether the frame goes behind the port's own header.
    pub fn is_port_header(&self) -> bool {
        self.len == 0
    }

    /// The header built for this frame (empty when the port's own serves).
    pub fn built(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The bytes that go in front of the frame: the built header, or the port's own.
    pub fn bytes<'a>(&'a self, port: &'a TunnelPort) -> &'a [u8] {
        if self.is_port_header() {
            &port.header
        } else {
            self.built()
        }
    }
}

/// The outer IP header's TOS and TTL for one frame (`None`: what the socket sends by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OuterIp {
    pub tos: Option<u8>,
    pub ttl: Option<u8>,
}

impl TunnelPort {
    /// The spec a frame leaves with: a flow's tunnel ID (`set_field:…->tun_id`) replaces the port's key
    /// (on Geneve ports only without options, whose header is fixed).
    pub fn spec_for(&self, flow_vni: Option<u32>) -> TunnelSpec {
        let vni = self.flow_vni(flow_vni);
        TunnelSpec { vni: vni.unwrap_or(self.spec.vni), keyed: self.spec.keyed || vni.is_some(), ..self.spec }
    }

    fn flow_vni(&self, flow_vni: Option<u32>) -> Option<u32> {
        flow_vni.filter(|_| self.spec.encap != Encap::Geneve || self.spec.options_len == 0)
    }

    /// The tunnel header for `frame`: the port's own (VXLAN and Geneve with the port's key), one carrying a
    /// flow's tunnel ID, a Geneve header with the port's options and then the tunnel metadata `md` holds
    /// (`tun`: the bridge's TLV map), or a GRE header with sequence number `seq` (when the port sends them)
    /// and its checksum over `frame` (when it sends those).
    pub fn header_for(
        &self,
        flow_vni: Option<u32>,
        md: Option<(&TunMap, &TunMd)>,
        seq: u32,
        frame: &[u8],
    ) -> TunnelHeader {
        let spec = self.spec_for(flow_vni);
        let mut h = TunnelHeader::PORT;
        if let (Encap::Geneve, Some((tun, md))) = (spec.encap, md) {
            // The port's options (its own header past the 8 fixed bytes), then each field there.
            let own = self.header.get(8..).unwrap_or_default();
            let mut opts = [0u8; BUILT_HEADER_MAX - 8];
            if own.len() > weft_wire::geneve::OPTIONS_MAX.min(opts.len()) {
                return h;
            }
            opts[..own.len()].copy_from_slice(own);
            let mut n = own.len();
            for f in tun.fields.iter().filter(|f| md.has(f)) {
                let len = usize::from(f.len);
                if n + 4 + len > opts.len() {
                    break;
                }
                opts[n..n + 2].copy_from_slice(&f.class.to_be_bytes());
                opts[n + 2] = f.kind;
                opts[n + 3] = (len / 4) as u8;
                opts[n + 4..n + 4 + len].copy_from_slice(&md.value(f).to_be_bytes()[16 - len..]);
                n += 4 + len;
            }
            let vni = flow_vni.unwrap_or(spec.vni);
            let repr = weft_wire::geneve::GeneveRepr { vni, protocol: EtherType::TEB, oam: false, options: &opts[..n] };
            repr.emit(&mut h.bytes);
            h.len = repr.buffer_len() as u8;
            return h;
        }
        match (spec.encap, self.flow_vni(flow_vni)) {
            (Encap::Vxlan, Some(vni)) => {
                weft_wire::vxlan::VxlanRepr { vni }.emit(&mut h.bytes);
                h.len = weft_wire::vxlan::HEADER_LEN as u8;
            }
            (Encap::Geneve, Some(vni)) => {
                let repr = weft_wire::geneve::GeneveRepr { vni, protocol: EtherType::TEB, oam: false, options: &[] };
                repr.emit(&mut h.bytes);
                h.len = repr.buffer_len() as u8;
            }
            (Encap::Gre, _) => {
                let repr = weft_wire::gre::GreRepr {
                    protocol: EtherType::TEB,
                    checksum: spec.csum,
                    key: spec.keyed.then_some(spec.vni),
                    sequence: spec.seq.then_some(seq),
                };
                let len = repr.buffer_len();
                repr.emit(&mut h.bytes);
                if spec.csum {
                    weft_wire::gre::fill_checksum(&mut h.bytes[..len], &[frame]);
                }
                h.len = len as u8;
            }
            (Encap::Vxlan | Encap::Geneve, None) => {}
        }
        h
    }

    /// The outer TOS and TTL for `frame`: the configured values, or the inner IPv4 or IPv6 header's
    /// (`inherit`; the whole TOS / traffic class byte, so DSCP and ECN both carry over as RFC 6040's normal
    /// mode says). Non-IP frames get the socket's defaults.
    pub fn outer_ip(&self, frame: &[u8]) -> OuterIp {
        let spec = &self.spec;
        if spec.tos == Inherit::Default && spec.ttl == Inherit::Default {
            return OuterIp::default();
        }
        let inner = match mtu::l3_offset(frame) {
            Some((l3, EtherType::IPV4)) => frame.get(l3..l3 + 9).map(|h| (h[1], h[8])),
            Some((l3, EtherType::IPV6)) => frame.get(l3..l3 + 8).map(|h| (((h[0] & 0x0f) << 4) | (h[1] >> 4), h[7])),
            _ => None,
        };
        let pick = |how: Inherit, inner: Option<u8>| match how {
            Inherit::Default => None,
            Inherit::Value(v) => Some(v),
            Inherit::Inherit => inner,
        };
        OuterIp { tos: pick(spec.tos, inner.map(|i| i.0)), ttl: pick(spec.ttl, inner.map(|i| i.1)) }
    }
}

/// How the I/O layer can send offloaded frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOffloads {
    /// UDP tunnels may go as one UDP_SEGMENT train per offloaded frame.
    pub udp_segment: bool,
}

impl PortDesc {
    /// Whether an offloaded frame (`gso`, `tag_len` bytes of VLAN tag to be added) leaves this port whole
    /// rather than cut into segments first: TAPs with a virtio-net header and AF_PACKET ports take it as it
    /// is; a UDP tunnel sends it as one UDP_SEGMENT train when the kernel can, the port is neither GRE nor
    /// protected by IPsec, no capture wants each packet (`tapped`), and every segment fits the tunnel's MTU.
    pub fn takes_whole(&self, frame: &[u8], gso: &VnetHdr, tag_len: usize, send: SendOffloads, tapped: bool) -> bool {
        match &self.kind {
            PortKind::Tap { vnet_hdr } => *vnet_hdr,
            PortKind::Tunnel(t) => {
                send.udp_segment
                    && t.spec.encap != Encap::Gre
                    && t.spec.ipsec.is_none()
                    && !tapped
                    && offload::segment_wire_len(frame, gso)
                        .is_some_and(|l| l.saturating_sub(ETH_LEN) + tag_len <= usize::from(t.mtu))
            }
            PortKind::Packet | PortKind::Down(_) | PortKind::Patch(_) => true,
        }
    }
}

impl Switch {
    /// The tunnel header for one wire frame leaving tunnel port `port` (`None` if it is not one); a GRE
    /// port that sends sequence numbers uses up one.
    pub fn tunnel_header(
        &self,
        port: PortIdx,
        flow_vni: Option<u32>,
        md: Option<&TunMd>,
        frame: &[u8],
    ) -> Option<TunnelHeader> {
        let desc = self.pipe.ports.get(usize::from(port.0))?;
        let t = desc.tunnel()?;
        let md = md.map(|m| (&self.pipe.bridges[desc.bridge].tun, m));
        let seq = match (t.spec.encap, t.spec.seq, self.pipe.gre_seq.get(usize::from(port.0))) {
            (Encap::Gre, true, Some(s)) => s.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            _ => 0,
        };
        Some(t.header_for(flow_vni, md, seq, frame))
    }
}
