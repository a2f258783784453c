//! The datapath's half of IPsec: the child SAs the IKE thread installs, and ESP packets built around tunnel
//! packets and opened again, in place in the datapath's buffers.
//!
//! Transport mode protects the tunnel packet between the two VTEP addresses (ESP follows the outer IP
//! header; what it carries is the UDP header and VXLAN/Geneve packet, or the GRE packet). Tunnel mode carries
//! a whole inner IP packet between the same two addresses (what strongSwan's userspace ESP speaks). Either
//! goes as IP protocol 50 or inside UDP port 4500 (RFC 3948).

/// Maps keyed by configuration and negotiation only (never filled from packets): a cheap hash is safe here.
type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<weft_datapath::fdb::KeyHasher>>;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use weft_ipsec::esp::{next, Inbound, Outbound, HEAD};
use weft_ipsec::ike::{ChildKeys, Mode};
use weft_sys::batch::IpMeta;

/// What the IKE thread tells the datapath.
#[derive(Debug, Clone)]
pub enum EspOp {
    /// A child SA, and the outbound sequence numbers every worker's copy of it takes from.
    Install(Arc<ChildKeys>, Arc<AtomicU64>),
    Activate {
        remote: IpAddr,
        spi_out: u32,
    },
    Remove {
        remote: IpAddr,
        spi_in: u32,
        spi_out: u32,
    },
}

pub struct OutSa {
    pub esp: Outbound,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub tunnel: bool,
    pub udp: bool,
    pub peer_port: u16,
    ip_id: u16,
}

pub struct InSa {
    pub esp: Inbound,
    pub remote: IpAddr,
    /// The peer's own address (behind a NAT, its private one): tunnel-mode inner packets come from it.
    pub inner_remote: IpAddr,
    pub tunnel: bool,
}

/// ESP packets dropped before they could be charged to a port.
#[derive(Debug, Default, Clone, Copy)]
pub struct EspCounters {
    pub unknown_spi: u64,
    pub wrong_source: u64,
    pub truncated: u64,
    pub replayed: u64,
    pub tampered: u64,
    pub bad_inner: u64,
    /// IKE messages that found the IKE thread's queue full.
    pub ike_dropped: u64,
}

impl EspCounters {
    /// Adds another worker's drops.
    pub fn add(&mut self, o: &EspCounters) {
        self.unknown_spi += o.unknown_spi;
        self.wrong_source += o.wrong_source;
        self.truncated += o.truncated;
        self.replayed += o.replayed;
        self.tampered += o.tampered;
        self.bad_inner += o.bad_inner;
        self.ike_dropped += o.ike_dropped;
    }
}

/// Per-SA counters for `weft ipsec show`: (SPI, outbound, packets, bytes).
pub type SaCounters = Vec<(u32, bool, u64, u64)>;

#[derive(Default)]
pub struct EspTable {
    /// The SA each remote's traffic leaves through.
    pub out: FastMap<IpAddr, OutSa>,
    /// Installed but not sending yet (a rekeying responder's new SA).
    standby: Vec<OutSa>,
    pub inb: FastMap<u32, InSa>,
    pub counters: EspCounters,
}

impl EspTable {
    pub fn apply(&mut self, op: EspOp) {
        match op {
            EspOp::Install(k, seq_out) => {
                let (Some(gin), Some(gout)) =
                    (weft_ipsec::crypto::Gcm::new(&k.key_in), weft_ipsec::crypto::Gcm::new(&k.key_out))
                else {
                    tracing::warn!(peer = %k.remote, "child SA with unusable keys not installed");
                    return;
                };
                let tunnel = k.mode == Mode::Tunnel;
                let sa =
                    InSa { esp: Inbound::new(k.spi_in, gin), remote: k.remote, inner_remote: k.peer_inner, tunnel };
                self.inb.insert(k.spi_in, sa);
                let sa = OutSa {
                    esp: Outbound::sharing(k.spi_out, gout, seq_out),
                    local: k.local,
                    remote: k.remote,
                    tunnel,
                    udp: k.udp,
                    peer_port: if k.udp { k.peer_port } else { 0 },
                    ip_id: 0,
                };
                if k.send {
                    self.out.insert(k.remote, sa);
                } else {
                    self.standby.push(sa);
                }
            }
            EspOp::Activate { remote, spi_out } => {
                if let Some(i) = self.standby.iter().position(|s| s.remote == remote && s.esp.spi == spi_out) {
                    let sa = self.standby.swap_remove(i);
                    self.out.insert(remote, sa);
                }
            }
            EspOp::Remove { remote, spi_in, spi_out } => {
                self.inb.remove(&spi_in);
                if self.out.get(&remote).is_some_and(|s| s.esp.spi == spi_out) {
                    self.out.remove(&remote);
                }
                self.standby.retain(|s| s.esp.spi != spi_out);
            }
        }
    }

    pub fn sa_counters(&self) -> SaCounters {
        let mut v: SaCounters = self.inb.values().map(|s| (s.esp.spi, false, s.esp.packets, s.esp.bytes)).collect();
        v.extend(self.out.values().chain(&self.standby).map(|s| (s.esp.spi, true, s.esp.packets, s.esp.bytes)));
        v
    }
}

fn put_ip(out: &mut [u8], a: IpAddr) {
    match a {
        IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => out[..16].copy_from_slice(&a.octets()),
    }
}

/// Bytes of the headers weft writes inside ESP in front of the tunnel packet's own bytes.
pub fn inner_head_len(sa: &OutSa, udp: bool) -> usize {
    let ip = if !sa.tunnel {
        0
    } else if sa.remote.is_ipv4() {
        20
    } else {
        40
    };
    ip + if udp { 8 } else { 0 }
}

/// Seals a tunnel packet into `buf`: `parts` are its bytes after the UDP header (VXLAN or Geneve header and
/// frame) or the whole GRE packet (`proto` 47). Writes the inner IP header (tunnel mode) and UDP header
/// (`sport` → `dport`) in front, then ESP around them. Returns the ESP packet's length; `None` when it does
/// not fit `buf` or the SA's sequence numbers are used up.
pub fn seal(
    sa: &mut OutSa,
    buf: &mut [u8],
    proto: u8,
    sport: u16,
    dport: u16,
    parts: &[&[u8]],
    meta: IpMeta,
) -> Option<usize> {
    let udp = proto == weft_wire::ipv4::Protocol::UDP;
    let body: usize = parts.iter().map(|p| p.len()).sum();
    let head = inner_head_len(sa, udp);
    let plain = head + body;
    if weft_ipsec::esp::sealed_len(plain) > buf.len() {
        return None;
    }
    let mut at = HEAD + head;
    for p in parts {
        buf[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    let v4 = sa.remote.is_ipv4();
    let ip_len = if sa.tunnel { head - if udp { 8 } else { 0 } } else { 0 };
    if udp {
        let u = HEAD + ip_len;
        let len = (8 + body) as u16;
        buf[u..u + 2].copy_from_slice(&sport.to_be_bytes());
        buf[u + 2..u + 4].copy_from_slice(&dport.to_be_bytes());
        buf[u + 4..u + 6].copy_from_slice(&len.to_be_bytes());
        buf[u + 6..u + 8].copy_from_slice(&[0, 0]);
        // IPv4 allows a zero UDP checksum (and ESP's ICV covers the bytes); IPv6 needs a real one.
        if let (IpAddr::V6(s), IpAddr::V6(d)) = (sa.local, sa.remote) {
            let acc = weft_wire::checksum::combine(
                weft_wire::checksum::pseudo_v6(s, d, proto, u32::from(len)),
                weft_wire::checksum::sum(&buf[u..u + usize::from(len)]),
            );
            let c = match weft_wire::checksum::finish(acc) {
                0 => 0xffff,
                c => c,
            };
            buf[u + 6..u + 8].copy_from_slice(&c.to_be_bytes());
        }
    }
    let nh = if sa.tunnel {
        let h = &mut buf[HEAD..HEAD + ip_len];
        let total = plain;
        if v4 {
            sa.ip_id = sa.ip_id.wrapping_add(1);
            h[0] = 0x45;
            h[1] = meta.tos.unwrap_or(0);
            h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            h[4..6].copy_from_slice(&sa.ip_id.to_be_bytes());
            h[6..8].copy_from_slice(&[0, 0]);
            h[8] = meta.ttl.unwrap_or(64);
            h[9] = proto;
            h[10..12].copy_from_slice(&[0, 0]);
            put_ip(&mut h[12..16], sa.local);
            put_ip(&mut h[16..20], sa.remote);
            let c = weft_wire::checksum::checksum(&h[..20]);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            next::IPV4
        } else {
            let tc = u32::from(meta.tos.unwrap_or(0));
            h[0..4].copy_from_slice(&((6u32 << 28) | (tc << 20)).to_be_bytes());
            h[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
            h[6] = proto;
            h[7] = meta.ttl.unwrap_or(64);
            put_ip(&mut h[8..24], sa.local);
            put_ip(&mut h[24..40], sa.remote);
            next::IPV6
        }
    } else {
        proto
    };
    sa.esp.seal(buf, plain, nh)
}

/// What a decrypted ESP payload holds: the tunnel protocol (UDP or GRE), where the tunnel packet starts
/// (after the UDP header), and the UDP destination port. `None` when it is not a tunnel packet between the
/// SA's addresses.
pub fn inner(sa_remote: [IpAddr; 2], tunnel: bool, nh: u8, pkt: &[u8]) -> Option<(u8, usize, u16)> {
    let mut at = 0;
    let mut proto = nh;
    if tunnel {
        match nh {
            next::IPV4 => {
                let ip = weft_wire::ipv4::Ipv4Packet::new_checked(pkt).ok()?;
                if !sa_remote.contains(&IpAddr::V4(ip.src_addr())) {
                    return None;
                }
                proto = ip.protocol();
                at = ip.header_len();
            }
            next::IPV6 => {
                if pkt.len() < 40 || pkt[0] >> 4 != 6 {
                    return None;
                }
                let mut src = [0u8; 16];
                src.copy_from_slice(&pkt[8..24]);
                if !sa_remote.contains(&IpAddr::V6(src.into())) {
                    return None;
                }
                proto = pkt[6];
                at = 40;
            }
            _ => return None,
        }
    }
    match proto {
        next::UDP => {
            let u = pkt.get(at..at + 8)?;
            Some((proto, at + 8, u16::from_be_bytes([u[2], u[3]])))
        }
        next::GRE => Some((proto, at, 0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(mode: Mode, local: &str, remote: &str) -> ChildKeys {
        ChildKeys {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            spi_in: 0x1000,
            spi_out: 0x2000,
            key_in: vec![1; 20],
            key_out: vec![2; 20],
            mode,
            udp: true,
            peer_port: 4500,
            peer_inner: remote.parse().unwrap(),
            send: true,
        }
    }

    /// The peer's view of `k`: directions swapped.
    fn mirror(k: &ChildKeys) -> ChildKeys {
        ChildKeys {
            local: k.remote,
            remote: k.local,
            spi_in: k.spi_out,
            spi_out: k.spi_in,
            key_in: k.key_out.clone(),
            key_out: k.key_in.clone(),
            peer_inner: k.local,
            ..k.clone()
        }
    }

    #[test]
    fn sealed_tunnel_packets_open_on_the_other_side() {
        for (mode, l, r) in [
            (Mode::Transport, "192.0.2.1", "192.0.2.2"),
            (Mode::Tunnel, "192.0.2.1", "192.0.2.2"),
            (Mode::Tunnel, "2001:db8::1", "2001:db8::2"),
            (Mode::Transport, "2001:db8::1", "2001:db8::2"),
        ] {
            let k = keys(mode, l, r);
            let (mut a, mut b) = (EspTable::default(), EspTable::default());
            a.apply(EspOp::Install(Arc::new(k.clone()), Default::default()));
            b.apply(EspOp::Install(Arc::new(mirror(&k)), Default::default()));
            let vxlan = [8u8, 0, 0, 0, 0, 0, 42, 0];
            let frame = [0xaau8; 60];
            let mut buf = vec![0u8; 2048];
            let sa = a.out.get_mut(&k.remote).unwrap();
            let n = seal(sa, &mut buf, 17, 50000, 4789, &[&vxlan, &frame], IpMeta::default()).unwrap();
            let inb = b.inb.get_mut(&0x2000).unwrap();
            let (nh, range) = inb.esp.open(&mut buf[..n]).unwrap();
            let (proto, at, dport) = inner([k.local, k.local], inb.tunnel, nh, &buf[range.clone()]).unwrap();
            assert_eq!((proto, dport), (17, 4789), "{mode:?} {l}");
            assert_eq!(&buf[range.start + at..range.start + at + 8], &vxlan);
            assert_eq!(range.len() - at, 68);
            if mode == Mode::Tunnel && k.local.is_ipv4() {
                let ip = weft_wire::ipv4::Ipv4Packet::new_checked(&buf[range.clone()]).unwrap();
                assert!(ip.verify_checksum());
            }
            if k.local.is_ipv6() {
                // The UDP checksum verifies over the pseudo-header.
                let u = range.start + at - 8;
                let (IpAddr::V6(s), IpAddr::V6(d)) = (k.local, k.remote) else { unreachable!() };
                let acc = weft_wire::checksum::combine(
                    weft_wire::checksum::pseudo_v6(s, d, 17, 76),
                    weft_wire::checksum::sum(&buf[u..u + 76]),
                );
                assert_eq!(weft_wire::checksum::finish(acc), 0);
            }
            // A packet claiming to come from elsewhere in tunnel mode is refused.
            if mode == Mode::Tunnel {
                let elsewhere = "192.0.2.99".parse().unwrap();
                assert!(inner([elsewhere, elsewhere], true, nh, &buf[range]).is_none());
            }
        }
    }

    #[test]
    fn rekey_standby_activates_and_remove_forgets() {
        let mut t = EspTable::default();
        let k = keys(Mode::Transport, "192.0.2.1", "192.0.2.2");
        t.apply(EspOp::Install(Arc::new(k.clone()), Default::default()));
        let next = ChildKeys { spi_in: 0x1001, spi_out: 0x2001, send: false, ..k.clone() };
        t.apply(EspOp::Install(Arc::new(next), Default::default()));
        assert_eq!(t.out[&k.remote].esp.spi, 0x2000);
        t.apply(EspOp::Activate { remote: k.remote, spi_out: 0x2001 });
        assert_eq!(t.out[&k.remote].esp.spi, 0x2001);
        t.apply(EspOp::Remove { remote: k.remote, spi_in: 0x1000, spi_out: 0x2000 });
        assert_eq!(t.out[&k.remote].esp.spi, 0x2001, "removing the old SA leaves the new one");
        assert!(t.inb.contains_key(&0x1001) && !t.inb.contains_key(&0x1000));
        assert_eq!(t.sa_counters().len(), 2);
    }
}
