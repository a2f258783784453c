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
        // Merging the segments again: when every one joins the run, the frame is as long as the original.
        if let Some(first) = segs.first() {
            let len = out.len();
            if let Some(mut run) = MergeRun::start(&out, first.clone(), len) {
                for r in &segs[1..] {
                    if !run.append(&mut out, r.clone()) {
                        break;
                    }
                }
                let all = usize::from(run.count()) == segs.len();
                let (merged, _) = run.finish(&mut out);
                assert!(!all || segs.len() == 1 || merged.len() == frame.len(), "merged frame length");
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
