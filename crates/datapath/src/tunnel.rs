//! Reading a received tunnel packet's header: which VNI it carries, where the inner frame starts, and whether
//! it is to be dropped (malformed, or a kind weft does not forward).

use crate::counters::DropReason;
use weft_wire::ethernet::{EtherType, HEADER_LEN as ETH_LEN};
use weft_wire::geneve::GenevePacket;
use weft_wire::gre::GrePacket;
use weft_wire::vxlan::VxlanPacket;

/// The encapsulation a socket receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    Vxlan,
    Geneve,
    Gre,
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
pub fn decap(encap: Tunnel, ipv4: bool, pkt: &[u8]) -> Decap {
    let malformed = Decap { vni: 0, inner_at: 0, error: Some(DropReason::Malformed) };
    let (vni, inner_at, error) = match encap {
        Tunnel::Vxlan => match VxlanPacket::new_checked(pkt) {
            Ok(v) => (v.vni(), weft_wire::vxlan::HEADER_LEN, None),
            Err(_) => return malformed,
        },
        Tunnel::Geneve => match GenevePacket::new_checked(pkt) {
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
        Tunnel::Gre => {
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
