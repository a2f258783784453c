//! ARP and neighbour-discovery suppression (what Linux's VXLAN `proxy` flag does): weft learns which MAC owns
//! which IP address from the ARP (RFC 826) and ND (RFC 4861) traffic it forwards, and answers a request for a
//! known address itself instead of flooding it to every VTEP.

use crate::fdb::KeyHasher;
use crate::{Nanos, SECOND};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, Ipv6Addr};
use weft_wire::arp::{ArpPacket, ArpRepr, OP_REPLY, OP_REQUEST, PACKET_LEN as ARP_LEN};
use weft_wire::checksum;
use weft_wire::ethernet::{EtherType, EthernetFrame, HEADER_LEN as ETH_LEN};
use weft_wire::icmpv6::{Icmpv6Packet, TYPE_NEIGHBOR_ADVERT, TYPE_NEIGHBOR_SOLICIT};
use weft_wire::ipv4::Protocol;
use weft_wire::ipv6::{Ipv6Packet, Ipv6Repr, HEADER_LEN as IPV6_LEN};
use weft_wire::EthernetAddress;

/// ND option "target link-layer address" (RFC 4861 §4.6.1).
const OPT_TARGET_LLA: u8 = 2;
/// A neighbour advertisement with a target link-layer address option: 24 + 8 bytes.
const NA_LEN: usize = 32;
/// Largest reply frame [`reply`] writes.
pub const REPLY_MAX: usize = ETH_LEN + IPV6_LEN + NA_LEN;

/// Where a frame came from and the bridge's limits, for learning bindings from it.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub vlan: u16,
    pub now: Nanos,
    /// Most bindings the table keeps (the bridge's `mac-table-size`).
    pub max: usize,
    /// How long a binding lives without being seen again (the bridge's `mac-aging-time`).
    pub aging_secs: u32,
    /// The frame came in through a tunnel (another host), not from a local port.
    pub from_tunnel: bool,
}

/// A request weft may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub target: IpAddr,
}

/// One binding: the address, its owner, when it was last seen and whether that was through a tunnel.
#[derive(Debug, Clone, Copy)]
struct Binding {
    ip: IpAddr,
    mac: EthernetAddress,
    seen: Nanos,
    remote: bool,
}

/// IP-to-MAC bindings of one bridge, aged like its FDB and bounded like it.
///
/// What a stranger can make it believe is limited: an ARP packet binds only the MAC it was sent from (its
/// sender hardware address must be the frame's source), and a binding learned on a local port stays while
/// it is alive, whatever arrives through a tunnel naming the same address.
#[derive(Debug, Clone, Default)]
pub struct NeighTable {
    map: HashMap<u64, Binding, BuildHasherDefault<KeyHasher>>,
    /// The binding the last [`NeighTable::observe`] made, for other workers' copies of the table.
    noted: Option<(IpAddr, EthernetAddress)>,
}

fn key(vlan: u16, ip: IpAddr) -> u64 {
    let mut h: u64 = u64::from(vlan);
    let bytes: [u8; 16] = match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    for c in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(29) ^ u64::from_be_bytes(w)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    h
}

impl NeighTable {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn learn(&mut self, ip: IpAddr, mac: EthernetAddress, at: &Seen) {
        if ip.is_unspecified() || ip.is_multicast() || !mac.is_unicast() {
            return;
        }
        let k = key(at.vlan, ip);
        match self.map.get(&k) {
            // A local binding still alive is not replaced from a tunnel (its owner is here).
            Some(b)
                if b.ip == ip
                    && !b.remote
                    && at.from_tunnel
                    && b.mac != mac
                    && at.now.saturating_sub(b.seen) < Nanos::from(at.aging_secs) * SECOND =>
            {
                return
            }
            None if self.map.len() >= at.max => return,
            _ => {}
        }
        self.map.insert(k, Binding { ip, mac, seen: at.now, remote: at.from_tunnel });
        self.noted = Some((ip, mac));
    }

    /// The binding the last frame made, if it made one.
    pub fn take_noted(&mut self) -> Option<(IpAddr, EthernetAddress)> {
        self.noted.take()
    }

    /// A binding another worker made at `at.now`, unless this copy saw the address more recently.
    pub fn learn_from_peer(&mut self, ip: IpAddr, mac: EthernetAddress, at: &Seen) {
        if self.map.get(&key(at.vlan, ip)).is_some_and(|b| b.ip == ip && b.seen > at.now) {
            return;
        }
        self.learn(ip, mac, at);
        self.noted = None;
    }

    /// The MAC owning `ip` in `vlan`, if seen within `aging_secs`.
    pub fn lookup(&self, vlan: u16, ip: IpAddr, now: Nanos, aging_secs: u32) -> Option<EthernetAddress> {
        let b = self.map.get(&key(vlan, ip))?;
        (b.ip == ip && now.saturating_sub(b.seen) < Nanos::from(aging_secs) * SECOND).then_some(b.mac)
    }

    pub fn expire(&mut self, now: Nanos, aging_secs: u32) {
        self.map.retain(|_, b| now.saturating_sub(b.seen) < Nanos::from(aging_secs) * SECOND);
    }

    /// Learns from an ARP packet or an ND solicitation/advertisement in `frame` (untagged payload at
    /// `l3`), and returns the query if the frame is one weft could answer.
    pub fn observe(&mut self, frame: &[u8], l3: usize, ethertype: u16, at: &Seen) -> Option<Query> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let payload = frame.get(l3..)?;
        match ethertype {
            EtherType::ARP => {
                let arp = ArpRepr::parse(&ArpPacket::new_checked(payload).ok()?);
                // Only a sender speaking for itself: an ARP packet naming another MAC than the one it came
                // from binds nothing (it may still be a query weft answers).
                if arp.sender_hardware_addr == eth.src_addr() {
                    self.learn(arp.sender_protocol_addr.into(), arp.sender_hardware_addr, at);
                }
                (arp.operation == OP_REQUEST && arp.sender_protocol_addr != arp.target_protocol_addr)
                    .then_some(Query { target: arp.target_protocol_addr.into() })
            }
            EtherType::IPV6 => {
                let ip = Ipv6Packet::new_checked(payload).ok()?;
                if ip.next_header() != Protocol::ICMPV6 || ip.hop_limit() != 255 {
                    return None;
                }
                let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
                let target = icmp.nd_target()?;
                match icmp.msg_type() {
                    TYPE_NEIGHBOR_ADVERT => {
                        self.learn(target.into(), eth.src_addr(), at);
                        None
                    }
                    TYPE_NEIGHBOR_SOLICIT => {
                        // Duplicate-address detection (unspecified source) is never answered by a proxy.
                        if ip.src_addr().is_unspecified() {
                            return None;
                        }
                        self.learn(ip.src_addr().into(), eth.src_addr(), at);
                        Some(Query { target: target.into() })
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// Writes the answer to the request in `frame` (ARP request or neighbour solicitation, untagged, IP at
/// `l3 == 14`) saying `target` is at `mac`; returns its length.
pub fn reply(frame: &[u8], mac: EthernetAddress, out: &mut [u8; REPLY_MAX]) -> Option<usize> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let requester = eth.src_addr();
    out[0..6].copy_from_slice(&requester.0);
    out[6..12].copy_from_slice(&mac.0);
    match eth.ethertype() {
        EtherType::ARP => {
            let req = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?);
            out[12..14].copy_from_slice(&EtherType::ARP.to_be_bytes());
            ArpRepr {
                operation: OP_REPLY,
                sender_hardware_addr: mac,
                sender_protocol_addr: req.target_protocol_addr,
                target_hardware_addr: req.sender_hardware_addr,
                target_protocol_addr: req.sender_protocol_addr,
            }
            .emit(&mut out[ETH_LEN..ETH_LEN + ARP_LEN]);
            Some(ETH_LEN + ARP_LEN)
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            let target: Ipv6Addr = Icmpv6Packet::new_checked(ip.payload()).ok()?.nd_target()?;
            let dst = ip.src_addr();
            out[12..14].copy_from_slice(&EtherType::IPV6.to_be_bytes());
            Ipv6Repr {
                src_addr: target,
                dst_addr: dst,
                next_header: Protocol::ICMPV6,
                payload_len: NA_LEN,
                hop_limit: 255,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut out[ETH_LEN..]);
            let na = &mut out[ETH_LEN + IPV6_LEN..ETH_LEN + IPV6_LEN + NA_LEN];
            na.fill(0);
            na[0] = TYPE_NEIGHBOR_ADVERT;
            na[4] = 0x60; // Solicited and Override (RFC 4861 §4.4)
            na[8..24].copy_from_slice(&target.octets());
            na[24] = OPT_TARGET_LLA;
            na[25] = 1;
            na[26..32].copy_from_slice(&mac.0);
            let ps = checksum::pseudo_v6(target, dst, Protocol::ICMPV6, NA_LEN as u32);
            let c = checksum::finish(checksum::combine(ps, checksum::sum(na)));
            na[2..4].copy_from_slice(&c.to_be_bytes());
            Some(ETH_LEN + IPV6_LEN + NA_LEN)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xa]);
    const B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xb]);

    fn arp(op: u16, sha: EthernetAddress, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; ETH_LEN + ARP_LEN];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&sha.0);
        f[12..14].copy_from_slice(&EtherType::ARP.to_be_bytes());
        ArpRepr {
            operation: op,
            sender_hardware_addr: sha,
            sender_protocol_addr: spa.into(),
            target_hardware_addr: EthernetAddress::ZERO,
            target_protocol_addr: tpa.into(),
        }
        .emit(&mut f[ETH_LEN..]);
        f
    }

    fn seen(vlan: u16, now: Nanos, max: usize) -> Seen {
        Seen { vlan, now, max, aging_secs: 300, from_tunnel: false }
    }

    #[test]
    fn arp_binds_only_its_own_sender_and_tunnels_do_not_displace_local_owners() {
        let mut t = NeighTable::default();
        let ip: IpAddr = Ipv4Addr::new(198, 51, 100, 2).into();
        // A frame from A claiming B's MAC for .2: nothing learned.
        let mut forged = arp(OP_REPLY, B, [198, 51, 100, 2], [198, 51, 100, 1]);
        forged[6..12].copy_from_slice(&A.0);
        t.observe(&forged, 14, EtherType::ARP, &seen(0, 0, 100));
        assert_eq!(t.lookup(0, ip, SECOND, 300), None);
        // B on a local port owns .2; an ARP through a tunnel from C claiming .2 does not take it over.
        t.observe(&arp(OP_REPLY, B, [198, 51, 100, 2], [198, 51, 100, 1]), 14, EtherType::ARP, &seen(0, 0, 100));
        const C: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xc]);
        let remote = Seen { from_tunnel: true, ..seen(0, 10 * SECOND, 100) };
        t.observe(&arp(OP_REPLY, C, [198, 51, 100, 2], [198, 51, 100, 1]), 14, EtherType::ARP, &remote);
        assert_eq!(t.lookup(0, ip, 11 * SECOND, 300), Some(B), "the local owner is alive");
        // Once B's binding has aged, the address may move to the remote host.
        let later = Seen { from_tunnel: true, ..seen(0, 400 * SECOND, 100) };
        t.observe(&arp(OP_REPLY, C, [198, 51, 100, 2], [198, 51, 100, 1]), 14, EtherType::ARP, &later);
        assert_eq!(t.lookup(0, ip, 401 * SECOND, 300), Some(C));
        // A local port may always take an address over (a VM moved here).
        t.observe(
            &arp(OP_REPLY, A, [198, 51, 100, 2], [198, 51, 100, 1]),
            14,
            EtherType::ARP,
            &seen(0, 402 * SECOND, 100),
        );
        assert_eq!(t.lookup(0, ip, 403 * SECOND, 300), Some(A));
    }

    #[test]
    fn learns_from_arp_and_answers() {
        let mut t = NeighTable::default();
        let reply_from_b = arp(OP_REPLY, B, [198, 51, 100, 2], [198, 51, 100, 1]);
        assert_eq!(t.observe(&reply_from_b, 14, EtherType::ARP, &seen(0, 0, 100)), None);
        let ip_b = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
        assert_eq!(t.lookup(0, ip_b, SECOND, 300), Some(B));
        assert_eq!(t.lookup(7, ip_b, SECOND, 300), None, "per VLAN");
        assert_eq!(t.lookup(0, ip_b, 400 * SECOND, 300), None, "aged");
        let req = arp(OP_REQUEST, A, [198, 51, 100, 1], [198, 51, 100, 2]);
        assert_eq!(t.observe(&req, 14, EtherType::ARP, &seen(0, SECOND, 100)), Some(Query { target: ip_b }));
        let mut out = [0u8; REPLY_MAX];
        let n = reply(&req, B, &mut out).unwrap();
        let r = ArpRepr::parse(&ArpPacket::new_checked(&out[14..n]).unwrap());
        assert_eq!((r.operation, r.sender_hardware_addr, r.target_hardware_addr), (OP_REPLY, B, A));
        assert_eq!(&out[0..6], &A.0);
    }

    #[test]
    fn answers_neighbor_solicitation() {
        let (s, target): (Ipv6Addr, Ipv6Addr) = ("2001:db8:1::1".parse().unwrap(), "2001:db8:1::2".parse().unwrap());
        let mut f = vec![0u8; ETH_LEN + IPV6_LEN + 24];
        f[0..6].copy_from_slice(&[0x33, 0x33, 0xff, 0, 0, 2]);
        f[6..12].copy_from_slice(&A.0);
        f[12..14].copy_from_slice(&EtherType::IPV6.to_be_bytes());
        let dst: Ipv6Addr = "ff02::1:ff00:2".parse().unwrap();
        Ipv6Repr {
            src_addr: s,
            dst_addr: dst,
            next_header: Protocol::ICMPV6,
            payload_len: 24,
            hop_limit: 255,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut f[14..]);
        f[54] = TYPE_NEIGHBOR_SOLICIT;
        f[62..78].copy_from_slice(&target.octets());
        let mut t = NeighTable::default();
        assert_eq!(t.observe(&f, 14, EtherType::IPV6, &seen(0, 0, 100)), Some(Query { target: target.into() }));
        assert_eq!(t.lookup(0, s.into(), 0, 300), Some(A), "the solicitation's source is learned");
        let mut out = [0u8; REPLY_MAX];
        let n = reply(&f, B, &mut out).unwrap();
        let ip = Ipv6Packet::new_checked(&out[14..n]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr(), ip.hop_limit()), (target, s, 255));
        let na = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((na.msg_type(), na.nd_target()), (TYPE_NEIGHBOR_ADVERT, Some(target)));
        assert!(na.verify_checksum(target, s));
        // Duplicate-address detection is not answered.
        f[22..38].fill(0);
        assert_eq!(t.observe(&f, 14, EtherType::IPV6, &seen(0, 0, 100)), None);
    }

    #[test]
    fn bounded() {
        let mut t = NeighTable::default();
        for i in 0..10u8 {
            t.observe(&arp(OP_REPLY, B, [198, 51, 100, i], [198, 51, 100, 99]), 14, EtherType::ARP, &seen(0, 0, 4));
        }
        assert_eq!(t.len(), 4);
    }
}
