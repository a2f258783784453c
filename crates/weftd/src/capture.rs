//! `weft capture`: copies of the frames crossing one port, handed from the datapath to the client's
//! connection through a bounded channel.
//!
//! When no capture runs, the datapath pays one flag test per frame. A running capture costs the port it
//! watches one copy per frame; the copy goes into a channel the datapath never waits on (when it is full the
//! frame is left out of the capture and counted), and a thread of the control side writes the pcap records.

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use weft_datapath::PortIdx;
use weft_wire::ipv4::Ipv4Repr;
use weft_wire::ipv6::Ipv6Repr;

/// Frames queued towards one capture client before the datapath starts leaving frames out.
pub const QUEUE: usize = 4096;

/// One captured frame or packet.
pub struct CapFrame {
    /// Nanoseconds since the epoch.
    pub ts: u64,
    pub data: Vec<u8>,
}

/// A capture the datapath feeds (each worker feeds its own copy, for the frames it handles).
#[derive(Clone)]
pub struct Tap {
    pub port_name: String,
    /// The port's index in the running pipeline (updated when the pipeline changes).
    pub port: Option<PortIdx>,
    /// Tunnel ports: the whole packet with its outer IP and UDP/GRE headers (link type raw IP) instead of
    /// the inner frame (link type Ethernet).
    pub outer: bool,
    /// The local underlay address, for outer headers of sockets bound to the wildcard address.
    pub local: Option<IpAddr>,
    pub tx: SyncSender<CapFrame>,
    /// Frames left out because the client did not keep up.
    pub missed: u64,
    pub closed: bool,
}

impl Tap {
    /// Hands a copy of `parts` (concatenated) to the client. Marks the tap closed once the client is gone.
    pub fn offer(&mut self, parts: &[&[u8]]) {
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            data.extend_from_slice(p);
        }
        self.send(data);
    }

    fn send(&mut self, data: Vec<u8>) {
        match self.tx.try_send(CapFrame { ts: now_nanos(), data }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.missed += 1,
            Err(TrySendError::Disconnected(_)) => self.closed = true,
        }
    }

    /// Hands over a tunnel packet with outer headers rebuilt from what the socket reported: `src` to `dst`,
    /// IP protocol `proto` (UDP: a header with the two ports is added, its checksum left zero), then `parts`.
    pub fn offer_outer(&mut self, src: SocketAddr, dst: SocketAddr, proto: u8, ttl: u8, tos: u8, parts: &[&[u8]]) {
        let l4 = if proto == weft_wire::ipv4::Protocol::UDP { weft_wire::udp::HEADER_LEN } else { 0 };
        let ip_len = if src.is_ipv4() { weft_wire::ipv4::HEADER_LEN } else { weft_wire::ipv6::HEADER_LEN };
        // An offloaded train handed to the kernel whole can be longer than one datagram may be: the capture
        // keeps what fits (its length fields say so), never a length that overflows.
        let room = usize::from(u16::MAX) - l4 - if src.is_ipv4() { ip_len } else { 0 };
        let body: usize = parts.iter().map(|p| p.len()).sum::<usize>().min(room);
        let mut data = vec![0u8; ip_len + l4];
        match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                protocol: proto,
                payload_len: l4 + body,
                hop_limit: ttl,
                dscp_ecn: tos,
                ident: 0,
                dont_frag: false,
            }
            .emit(&mut data),
            (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: proto,
                payload_len: l4 + body,
                hop_limit: ttl,
                traffic_class: tos,
                flow_label: 0,
            }
            .emit(&mut data),
            _ => return,
        }
        if l4 > 0 {
            weft_wire::udp::UdpRepr { src_port: src.port(), dst_port: dst.port() }.emit(&mut data[ip_len..], body);
        }
        let mut left = body;
        for p in parts {
            let take = p.len().min(left);
            data.extend_from_slice(&p[..take]);
            left -= take;
        }
        self.send(data);
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Writes captured frames to `out` as a pcap stream until `count` frames are written or the client goes
/// away (a write fails, or `alive` says so while no frame comes). Returns how many were written.
pub fn stream(
    rx: Receiver<CapFrame>,
    linktype: u32,
    count: Option<u64>,
    out: &mut impl std::io::Write,
    alive: impl Fn() -> bool,
) -> u64 {
    use weft_wire::pcap::{write_global_header, write_record_header, GLOBAL_HEADER_LEN, RECORD_HEADER_LEN};
    let mut head = [0u8; GLOBAL_HEADER_LEN];
    write_global_header(&mut head, linktype, 262_144);
    if out.write_all(&head).and_then(|_| out.flush()).is_err() {
        return 0;
    }
    let mut n = 0u64;
    loop {
        let f = match rx.recv_timeout(std::time::Duration::from_millis(500)) {
            Ok(f) => f,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if alive() => continue,
            Err(_) => break,
        };
        let mut rec = [0u8; RECORD_HEADER_LEN];
        let len = f.data.len() as u32;
        write_record_header(&mut rec, (f.ts / 1_000_000_000) as u32, ((f.ts % 1_000_000_000) / 1000) as u32, len, len);
        if out.write_all(&rec).and_then(|_| out.write_all(&f.data)).and_then(|_| out.flush()).is_err() {
            break;
        }
        n += 1;
        if count.is_some_and(|c| n >= c) {
            break;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outer_packet_longer_than_a_datagram_is_cut_not_a_panic() {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let mut t = Tap { port_name: "t".into(), port: None, outer: true, local: None, tx, missed: 0, closed: false };
        let train = vec![0xabu8; 70_000];
        let (src, dst): (SocketAddr, SocketAddr) =
            ("192.0.2.1:4789".parse().unwrap(), "192.0.2.2:4789".parse().unwrap());
        t.offer_outer(src, dst, weft_wire::ipv4::Protocol::UDP, 64, 0, &[&[0u8; 8], &train]);
        let f = rx.try_recv().unwrap();
        assert_eq!(f.data.len(), 65_535);
        assert_eq!(u16::from_be_bytes([f.data[2], f.data[3]]), 65_535, "the IPv4 total length says what is there");
        let (src, dst): (SocketAddr, SocketAddr) =
            ("[2001:db8::1]:4789".parse().unwrap(), "[2001:db8::2]:4789".parse().unwrap());
        t.offer_outer(src, dst, weft_wire::ipv4::Protocol::UDP, 64, 0, &[&train]);
        let f = rx.try_recv().unwrap();
        assert_eq!((f.data.len(), u16::from_be_bytes([f.data[4], f.data[5]])), (40 + 65_535, 65_535));
    }
}
