//! Entry points for the cargo-fuzz targets in `fuzz/` and the corpus-replay test: the code that reads what a
//! TAP or AF_PACKET peer hands over (virtio-net header, checksum completion, segmentation), and the switch.

use crate::bridge::normal;
use crate::fdb::Fdb;
use crate::gro::MergeRun;
use crate::offload::{complete_checksum, segment, segment_tcp, SegmentLayout, VnetHdr, VNET_HDR_LEN};
use crate::PortIdx;
use weft_wire::ethernet::EthernetFrame;

/// Treats `data` as a virtio-net header and frame, as received from AF_PACKET, and processes it.
pub fn offload(data: &[u8]) {
    let Some(hdr) = VnetHdr::parse(data) else { return };
    let mut frame = data[VNET_HDR_LEN..].to_vec();
    let mut out = vec![0u8; 256 * 1024];
    if hdr.is_gso() {
        let mut segs = Vec::new();
        let _ = segment_tcp(&frame, &hdr, &mut out, |r| segs.push(r));
        let _ = crate::offload::segment_wire_len(&frame, &hdr);
        let _ = hdr.passable(frame.len());
        // With a tunnel header and a tag in front of each segment, as UDP_SEGMENT trains are built.
        let head = [0u8; 8];
        let layout = SegmentLayout { head: &head, tag: (data[0] & 4 != 0).then_some([0x81, 0, 0, 5]) };
        let _ = segment(&frame, &hdr, layout, &mut vec![0u8; 256 * 1024], |_| {});
        // Merging the segments again: when every one joins the run, the frame is as long as the original;
        // with the payloads left in place, closing the gaps gives the frame merging by moves gives.
        if let Some(first) = segs.first() {
            let len = out.len();
            let mut moved = out.clone();
            if let Some(mut run) = MergeRun::start(&out, first.clone(), len) {
                let mut by_moves = run.clone();
                let in_place = run.leave_in_place(0);
                for r in &segs[1..] {
                    let joined = run.append(&mut out, r.clone());
                    assert_eq!(joined, by_moves.append(&mut moved, r.clone()), "joins alike");
                    if !joined {
                        break;
                    }
                }
                let all = usize::from(run.count()) == segs.len();
                let gathered = run.gathered();
                let (merged, h) = run.finish(&mut out);
                let (merged_by_moves, h_by_moves) = by_moves.finish(&mut moved);
                assert!(!all || segs.len() == 1 || merged.len() == frame.len(), "merged frame length");
                assert_eq!((merged.clone(), h), (merged_by_moves.clone(), h_by_moves));
                if let Some(g) = gathered {
                    assert!(in_place);
                    g.close_gaps(&mut out);
                }
                assert_eq!(out[merged], moved[merged_by_moves], "the same frame either way");
            }
        }
    } else {
        let _ = complete_checksum(&mut frame, usize::from(hdr.csum_start), usize::from(hdr.csum_offset));
    }
    let _ = crate::flowhash::flow_hash(&frame);
    if let Ok(eth) = EthernetFrame::new_checked(&frame[..]) {
        let mut fdb = Fdb::new(300, 4);
        let port = PortIdx(u16::from(data[0] & 3));
        let _ = normal(&mut fdb, port, None, 0, eth.src_addr(), eth.dst_addr(), 0);
    }
}

/// The connection tracker and NAT, driven by `data`: first the whole input as a frame, then the input as a
/// sequence of 16-byte records, each a packet of one of a few connections (either direction, TCP with any
/// flags, sequence numbers and window, UDP, ICMP echo, ICMP errors quoting them) tracked with or without
/// commit, force and NAT, the clock moving on. Nothing may panic, the table stays within its limit, and
/// once everything has expired and been swept — or flushed — no key is left behind (NAT's reply keys
/// included).
pub fn conntrack(data: &[u8]) {
    use crate::conntrack::packet::CtPacket;
    use crate::conntrack::{Conntrack, CtArgs, NatArgs, NatKind, Verdict};
    use crate::headers::Headers;
    let ct = Conntrack::new(0x5eed);
    ct.set_limit(64);
    let args = CtArgs { commit: true, ..CtArgs::default() };
    let _ = ct.execute(CtPacket::parse(data, &Headers::parse(data)).as_ref(), &args, 0);
    let (a, b, s) = ([10, 0, 0, 1], [10, 0, 0, 2], [203, 0, 113, 9]);
    let mut now: crate::Nanos = 0;
    for r in data.chunks_exact(16) {
        let flags = r[0];
        let reply = flags & 1 != 0;
        let nat = match (flags >> 2) & 3 {
            0 => None,
            1 => Some(NatArgs {
                kind: NatKind::Src,
                addrs: Some((v4(s), v4(s))),
                ports: Some((40000, 40003)),
                ..NatArgs::default()
            }),
            2 => Some(NatArgs { kind: NatKind::Dst, addrs: Some((v4(b), v4(s))), ports: None, ..NatArgs::default() }),
            _ => Some(NatArgs::default()),
        };
        let args = CtArgs { zone: u16::from(r[13] >> 7), commit: flags & 2 != 0, force: flags & 16 != 0, nat, ..args };
        let (src, dst) = if reply { (b, if flags & 8 != 0 { s } else { a }) } else { (a, b) };
        let ports = (1000 + u16::from(flags >> 5 & 1), 2000);
        let ports = if reply { (ports.1, ports.0) } else { ports };
        let frame = match flags >> 6 {
            0 => tcp_frame(src, dst, ports, r),
            1 => ip_frame(src, dst, 17, &[&ports.0.to_be_bytes()[..], &ports.1.to_be_bytes(), &[0, 8, 0, 0]].concat()),
            2 => ip_frame(src, dst, 1, &[if reply { 0 } else { 8 }, 0, 0, 0, 0, r[1], 0, 1]),
            _ => {
                // An error from a router, quoting a packet of the other direction.
                let quoted = tcp_frame(dst, src, (ports.1, ports.0), r);
                let mut icmp = vec![r[1] % 13, 0, 0, 0, 0, 0, 0, 0];
                icmp.extend_from_slice(&quoted[14..quoted.len().min(14 + 48)]);
                ip_frame([192, 0, 2, 1], src, 1, &icmp)
            }
        };
        now += u64::from(u16::from_be_bytes([r[14], r[15]])) * 1_000_000;
        let pkt = CtPacket::parse(&frame, &Headers::parse(&frame));
        match ct.execute(pkt.as_ref(), &args, now) {
            Verdict::Tracked(m) => assert!(m.state & crate::conntrack::state::TRK != 0),
            Verdict::Full => {}
        }
        assert!(ct.len() <= 64, "over the limit");
        if r[13] & 0x40 != 0 {
            ct.sweep(now, 1 << 12);
        }
    }
    if data.first().is_some_and(|b| b & 1 != 0) {
        ct.flush(None);
    } else {
        // One sweep with room for every entry of every shard.
        ct.sweep(now + 200_000 * crate::SECOND, 1 << 20);
    }
    assert_eq!((ct.len(), ct.keys()), (0, 0), "keys left behind");
}

fn v4(a: [u8; 4]) -> u128 {
    u128::from(u32::from_be_bytes(a))
}

fn ip_frame(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0]);
    f[16..18].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(l4);
    f
}

/// A TCP segment from a record: flags, sequence and acknowledgement numbers, window, a payload length and
/// a window scale option.
fn tcp_frame(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), r: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(24 + 255);
    t.extend_from_slice(&ports.0.to_be_bytes());
    t.extend_from_slice(&ports.1.to_be_bytes());
    t.extend_from_slice(&r[2..10]);
    let ws = r[13] & 0x20 != 0;
    t.extend_from_slice(&[if ws { 0x60 } else { 0x50 }, r[1], r[10], r[11], 0, 0, 0, 0]);
    if ws {
        t.extend_from_slice(&[1, 3, 3, r[13] & 0x0f]);
    }
    t.resize(t.len() + usize::from(r[12]), 0xab);
    ip_frame(src, dst, 6, &t)
}
