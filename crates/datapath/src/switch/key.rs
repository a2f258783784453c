//! A frame summarised into the classifier's key.

use super::*;

/// Summarises a frame into the classifier's key, from its headers parsed once.
pub fn flow_key(port: &PortDesc, remote: Option<IpAddr>, frame: &[u8], tci: u16, h: &Headers) -> FlowKey {
    let mut k = FlowKey::default();
    k.put(slot::IN_PORT, u128::from(port.ofport));
    k.put(slot::VLAN_TCI, vlan_key(tci));
    k.put(slot::DL_DST, u128::from(EthernetAddress::from_bytes(&frame[0..6]).as_u64()));
    k.put(slot::DL_SRC, u128::from(EthernetAddress::from_bytes(&frame[6..12]).as_u64()));
    if let (PortKind::Tunnel(t), Some(r)) = (&port.kind, remote) {
        k.put(slot::TUN_ID, u128::from(t.spec.vni));
        if let IpAddr::V4(a) = r {
            k.put(slot::TUN_SRC, u128::from(u32::from(a)));
        }
    }
    put_l3(&mut k, h);
    k
}

/// The key's fields from the EtherType on (all of them written, so that a key whose frame changed type —
/// an MPLS entry pushed or popped — is made whole again).
pub(super) fn put_l3(k: &mut FlowKey, h: &Headers) {
    k.put(slot::DL_TYPE, u128::from(h.ethertype));
    for s in [slot::NW_PROTO, slot::TP_SRC, slot::TP_DST, slot::MPLS_TC, slot::MPLS_BOS, slot::MPLS_TTL] {
        k.put(s, 0);
    }
    k.put(slot::NW_SRC, h.nw_src);
    k.put(slot::NW_DST, h.nw_dst);
    if let Some(p) = h.nw_proto {
        k.put(slot::NW_PROTO, u128::from(p));
    }
    k.put(slot::NW_TOS, u128::from(h.nw_tos));
    k.put(slot::NW_ECN, u128::from(h.nw_ecn));
    k.put(slot::NW_TTL, u128::from(h.nw_ttl));
    k.put(slot::NW_FRAG, u128::from(h.nw_frag));
    k.put(slot::IPV6_LABEL, u128::from(h.ipv6_label));
    k.put(slot::ARP_SHA, u128::from(h.arp_sha));
    k.put(slot::ARP_THA, u128::from(h.arp_tha));
    k.put(slot::ND_TARGET, h.nd_target);
    k.put(slot::TCP_FLAGS, u128::from(h.tcp_flags));
    if let Some((src, dst)) = h.tp {
        k.put(slot::TP_SRC, u128::from(src));
        k.put(slot::TP_DST, u128::from(dst));
    }
    if let Some(lse) = h.mpls {
        k.put(slot::MPLS_LABEL, u128::from(lse >> 12));
        k.put(slot::MPLS_TC, u128::from((lse >> 9) & 7));
        k.put(slot::MPLS_BOS, u128::from((lse >> 8) & 1));
        k.put(slot::MPLS_TTL, u128::from(lse & 0xff));
    }
}
