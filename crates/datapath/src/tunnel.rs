//! Reading a received tunnel packet's header: which VNI it carries, where the inner frame starts, and whether
//! it is to be dropped (malformed, or a kind weft does not forward).

use crate::counters::DropReason;
use std::net::IpAddr;
use weft_wire::ethernet::{EtherType, HEADER_LEN as ETH_LEN};
use weft_wire::geneve::GenevePacket;
use weft_wire::gre::GrePacket;
use weft_wire::vxlan::VxlanPacket;

/// The encapsulations weft speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encap {
    Vxlan,
    Geneve,
    Gre,
}

/// Where an outer header field comes from: a fixed value, or copied from the inner IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Inherit {
    /// The kernel's default (TTL 64, or 1 towards a multicast group; TOS 0).
    Default,
    Value(u8),
    /// From the inner IPv4 or IPv6 header (TOS: DSCP and ECN as RFC 6040 says; the default for non-IP).
    Inherit,
}

/// A tunnel port's options, parsed and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelSpec {
    pub encap: Encap,
    /// The (first) remote VTEP; for `remote_ip=flow` the unspecified address of the tunnel's family.
    pub remote: IpAddr,
    /// `remote_ip=flow`: packets of the port's VNI from any VTEP belong to it; the flood list and unicast
    /// destinations come from the control plane or flows.
    pub flow: bool,
    /// The VNI (VXLAN, Geneve) or GRE key.
    pub vni: u32,
    /// GRE only: whether packets carry a key field (`options:key` given).
    pub keyed: bool,
    /// UDP destination port; 0 for GRE.
    pub dst_port: u16,
    pub local: Option<IpAddr>,
    /// Bytes of Geneve options sent with every packet.
    pub options_len: u16,
    /// Geneve: bytes the options that flows set (tunnel metadata, by the bridge's TLV map) may add to a
    /// packet; counted in the overhead, so that the MTU leaves room for them.
    pub md_room: u16,
    /// GRE: checksum and sequence number fields.
    pub csum: bool,
    pub seq: bool,
    pub ttl: Inherit,
    pub tos: Inherit,
    /// IPv4 underlay: set DF on outer packets (`options:df_default`, default false as Linux does).
    pub df: bool,
    /// `options:psk`: the tunnel's packets cross the underlay only inside ESP (the key itself is in
    /// [`PortConfig::ipsec`]).
    pub ipsec: Option<IpsecShape>,
}

/// How a protected tunnel's packets are wrapped: what the MTU depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpsecShape {
    /// Tunnel mode (a second IP header inside ESP) rather than transport mode.
    pub tunnel: bool,
    /// ESP in UDP port 4500 (RFC 3948) rather than IP protocol 50.
    pub udp: bool,
}

/// Bytes ESP with AES-GCM-16 adds at most: SPI and sequence number, IV, up to 3 bytes of padding, pad length
/// and next header, ICV.
pub const ESP_OVERHEAD: u32 = 8 + 8 + 3 + 2 + 16;

impl TunnelSpec {
    /// A tunnel of `encap` to `remote` with VNI (or GRE key) `vni` and every other option at its default:
    /// the encapsulation's standard port, keyed, no checksum or sequence, default TTL and TOS, no DF, no
    /// IPsec. (Configurations are parsed into specs by weft-api; this is for building them in code.)
    pub fn new(encap: Encap, remote: IpAddr, vni: u32) -> TunnelSpec {
        TunnelSpec {
            encap,
            remote,
            flow: false,
            vni,
            keyed: true,
            dst_port: match encap {
                Encap::Vxlan => weft_wire::vxlan::PORT,
                Encap::Geneve => weft_wire::geneve::PORT,
                Encap::Gre => 0,
            },
            local: None,
            options_len: 0,
            md_room: 0,
            csum: false,
            seq: false,
            ttl: Inherit::Default,
            tos: Inherit::Default,
            df: false,
            ipsec: None,
        }
    }

    /// Bytes a tunnel adds in front of the inner frame on the underlay: outer IP, then UDP and the VXLAN or
    /// Geneve header and options, or the GRE header with its optional fields.
    pub fn overhead(&self) -> u32 {
        let ip = if self.remote.is_ipv4() { 20 } else { 40 };
        let esp = match self.ipsec {
            None => 0,
            Some(s) => ESP_OVERHEAD + if s.udp { 8 } else { 0 } + if s.tunnel { ip } else { 0 },
        };
        ip + self.encap_len() as u32 + esp
    }

    /// Bytes after the outer IP header and before the inner frame (at most: with the room for options flows
    /// may set).
    pub fn encap_len(&self) -> usize {
        match self.encap {
            Encap::Vxlan => 8 + 8,
            Encap::Geneve => 8 + 8 + usize::from(self.options_len) + usize::from(self.md_room),
            Encap::Gre => 4 + 4 * (usize::from(self.keyed) + usize::from(self.csum) + usize::from(self.seq)),
        }
    }

    /// The IP protocol that carries the tunnel (UDP or GRE).
    pub fn ip_protocol(&self) -> u8 {
        match self.encap {
            Encap::Gre => weft_wire::gre::IP_PROTOCOL,
            Encap::Vxlan | Encap::Geneve => weft_wire::ipv4::Protocol::UDP,
        }
    }
}

/// Where a tunnel packet's inner frame starts and what it says, or why it is dropped.
pub struct Decap {
    pub vni: u32,
    /// Where the inner Ethernet frame starts.
    pub inner_at: usize,
    /// Set when the packet is malformed or not for forwarding; the drop is charged to its port once known.
    pub error: Option<DropReason>,
}

/// Reads the tunnel header of `pkt` as received on a socket for `encap` (raw IPv4 GRE sockets hand over the
/// IP header too).
pub fn decap(encap: Encap, ipv4: bool, pkt: &[u8]) -> Decap {
    let malformed = Decap { vni: 0, inner_at: 0, error: Some(DropReason::Malformed) };
    let (vni, inner_at, error) = match encap {
        Encap::Vxlan => match VxlanPacket::new_checked(pkt) {
            Ok(v) => (v.vni(), weft_wire::vxlan::HEADER_LEN, None),
            Err(_) => return malformed,
        },
        Encap::Geneve => match GenevePacket::new_checked(pkt) {
            Ok(g) => {
                let error = if g.options().any(|o| o.is_err()) {
                    Some(DropReason::Malformed)
                } else if g.is_oam() || g.protocol() != EtherType::TEB {
                    Some(DropReason::Unsupported)
                } else {
                    None
                };
                (g.vni(), g.header_len(), error)
            }
            Err(_) => return malformed,
        },
        Encap::Gre => {
            let ip_len = if ipv4 {
                match weft_wire::ipv4::Ipv4Packet::new_checked(pkt) {
                    Ok(ip) => ip.header_len(),
                    Err(_) => return malformed,
                }
            } else {
                0
            };
            match GrePacket::new_checked(&pkt[ip_len..]) {
                Ok(g) if !g.verify_checksum() => (g.key().unwrap_or(0), 0, Some(DropReason::Malformed)),
                Ok(g) => {
                    let error = (g.protocol() != EtherType::TEB).then_some(DropReason::Unsupported);
                    (g.key().unwrap_or(0), ip_len + g.header_len(), error)
                }
                Err(_) => return malformed,
            }
        }
    };
    if error.is_none() && pkt.len() < inner_at + ETH_LEN {
        return Decap { vni, inner_at, error: Some(DropReason::Malformed) };
    }
    Decap { vni, inner_at, error }
}
