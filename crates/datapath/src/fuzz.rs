//! Entry points for the cargo-fuzz targets in `fuzz/` and the corpus-replay test: the code that reads what a
//! TAP or AF_PACKET peer hands over (virtio-net header, checksum completion, segmentation), and the switch.

use crate::bridge::normal;
use crate::fdb::Fdb;
use crate::offload::{complete_checksum, segment_tcp, VnetHdr, VNET_HDR_LEN};
use crate::PortIdx;
use weft_wire::ethernet::EthernetFrame;

/// Treats `data` as a virtio-net header and frame, as received from AF_PACKET, and processes it.
pub fn offload(data: &[u8]) {
    let Some(hdr) = VnetHdr::parse(data) else { return };
    let mut frame = data[VNET_HDR_LEN..].to_vec();
    let mut out = vec![0u8; 256 * 1024];
    if hdr.is_gso() {
        let mut n = 0;
        let _ = segment_tcp(&frame, &hdr, &mut out, |_| n += 1);
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
