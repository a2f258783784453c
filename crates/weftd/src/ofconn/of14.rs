//! OpenFlow 1.4 as a translation of 1.3: the messages weft serves are the same but for the version byte and
//! the port structures (ofp_port, ofp_port_stats and PORT_MOD grew properties), and the asynchronous
//! configuration (properties too). A 1.4 connection's messages are rewritten into 1.3's before the 1.3
//! handler sees them, and its answers (and the packet-ins and port changes queued for it) back.

use super::*;

/// OpenFlow 1.4's wire version.
pub(super) const VERSION: u8 = 5;

/// ofp_port in 1.3: port_no, pad, hw_addr, pad, name, config, state, then six u32 (curr, advertised,
/// supported, peer, curr_speed, max_speed).
const PORT13: usize = 64;
/// ofp_port_stats in 1.3: port_no, pad, twelve u64 counters, duration (sec, nsec).
const PORT_STATS13: usize = 112;

pub(super) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A message with a new body: its type and xid kept, this `version`.
pub(super) fn rebuild(m: &[u8], body: &[u8], version: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.push(version);
    out.push(m[1]);
    out.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
    out.extend_from_slice(&m[4..8]);
    out.extend_from_slice(body);
    out
}

/// 1.3's ofp_port as 1.4's: the fixed part (with a length), then an Ethernet property with the speeds.
fn port14(p: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(72);
    e.extend_from_slice(&p[0..4]);
    e.extend_from_slice(&72u16.to_be_bytes());
    e.extend_from_slice(&[0, 0]);
    e.extend_from_slice(&p[8..40]); // hw_addr, pad, name, config, state
    e.extend_from_slice(&[0, 0, 0, 32, 0, 0, 0, 0]); // OFPPDPT_ETHERNET, 32 bytes
    e.extend_from_slice(&p[40..64]);
    e
}

/// 1.3's ofp_port_stats as 1.4's: length, port, duration, eight counters, then an Ethernet property with
/// the other four.
fn port_stats14(s: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(120);
    e.extend_from_slice(&120u16.to_be_bytes());
    e.extend_from_slice(&[0, 0]);
    e.extend_from_slice(&s[0..4]);
    e.extend_from_slice(&s[104..112]); // duration_sec, duration_nsec
    e.extend_from_slice(&s[8..72]); // rx/tx packets, bytes, dropped, errors
    e.extend_from_slice(&[0, 0, 0, 40, 0, 0, 0, 0]); // OFPPSPT_ETHERNET, 40 bytes
    e.extend_from_slice(&s[72..104]); // frame, overrun, CRC errors, collisions
    e
}

/// An answer (or a queued asynchronous message) of the 1.3 handler as OpenFlow 1.4 says it.
pub(super) fn from13(m: &[u8]) -> Vec<u8> {
    let Ok(h) = of::Header::parse(m) else { return m.to_vec() };
    let body = &m[of::HEADER_LEN..];
    match h.kind {
        msg::PORT_STATUS if body.len() >= 8 + PORT13 => {
            let mut b = body[..8].to_vec();
            b.extend_from_slice(&port14(&body[8..8 + PORT13]));
            rebuild(m, &b, VERSION)
        }
        msg::MULTIPART_REPLY if body.len() >= 8 => {
            let (kind, items) = (u16_at(body, 0), &body[8..]);
            let mut b = body[..8].to_vec();
            match kind {
                of::mp::PORT_DESC => items.chunks_exact(PORT13).for_each(|p| b.extend_from_slice(&port14(p))),
                of::mp::PORT_STATS => {
                    items.chunks_exact(PORT_STATS13).for_each(|s| b.extend_from_slice(&port_stats14(s)))
                }
                _ => b.extend_from_slice(items),
            }
            rebuild(m, &b, VERSION)
        }
        // 1.3's three pairs of masks (master, slave) as 1.4's properties: packet-in, port status and flow
        // removed, slave then master.
        msg::GET_ASYNC_REPLY if body.len() >= 24 => {
            let mut b = Vec::with_capacity(48);
            for (i, kind) in (0u16..6).enumerate() {
                let (pair, slave) = (i / 2, i % 2 == 0);
                let at = pair * 8 + if slave { 4 } else { 0 };
                b.extend_from_slice(&kind.to_be_bytes());
                b.extend_from_slice(&8u16.to_be_bytes());
                b.extend_from_slice(&body[at..at + 4]);
            }
            rebuild(m, &b, VERSION)
        }
        _ => {
            let mut out = m.to_vec();
            out[0] = VERSION;
            out
        }
    }
}

/// A 1.4 request as the 1.3 handler takes it.
pub(super) fn to13(m: &[u8]) -> Vec<u8> {
    let Ok(h) = of::Header::parse(m) else { return m.to_vec() };
    let body = &m[of::HEADER_LEN..];
    match h.kind {
        // port_no, pad, hw_addr, pad, config, mask; then properties, of which the Ethernet one (type 0)
        // carries `advertise`.
        msg::PORT_MOD if body.len() >= 24 => {
            let mut b = body[..24].to_vec();
            let mut advertise = [0u8; 4];
            let mut props = &body[24..];
            while props.len() >= 4 {
                let (kind, len) = (u16_at(props, 0), usize::from(u16_at(props, 2)));
                if len < 4 || len > props.len() {
                    break;
                }
                if kind == 0 && len >= 8 {
                    advertise.copy_from_slice(&props[4..8]);
                }
                props = &props[(len.div_ceil(8) * 8).min(props.len())..];
            }
            b.extend_from_slice(&advertise);
            b.extend_from_slice(&[0; 4]);
            rebuild(m, &b, of::VERSION)
        }
        _ => {
            let mut out = m.to_vec();
            out[0] = of::VERSION;
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_their_counters_take_1_4s_shape() {
        // A PORT_STATUS for port 3 "p3", link down, config 0x40.
        let m = super::super::ports::port_status_msg(3, "p3", true, 0x40);
        let t = from13(&m);
        assert_eq!((t[0], t[1], u16_at(&t, 2) as usize, t.len()), (VERSION, msg::PORT_STATUS, 8 + 8 + 72, 88));
        let p = &t[16..];
        assert_eq!((&p[0..4], u16_at(p, 4)), (&3u32.to_be_bytes()[..], 72));
        assert_eq!(&p[16..18], b"p3");
        assert_eq!((&p[32..36], &p[36..40]), (&0x40u32.to_be_bytes()[..], &1u32.to_be_bytes()[..]));
        assert_eq!(&p[40..44], &[0, 0, 0, 32]);
        // Port statistics: the counters land where 1.4 has them.
        let mut s13 = 7u32.to_be_bytes().to_vec();
        s13.extend_from_slice(&[0; 4]);
        for v in 1u64..=12 {
            s13.extend_from_slice(&v.to_be_bytes());
        }
        s13.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 10]);
        let mut m = vec![4, msg::MULTIPART_REPLY, 0, 0, 0, 0, 0, 1, 0, 4, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&s13);
        let len = m.len() as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        let t = from13(&m);
        let s = &t[16..];
        assert_eq!((u16_at(s, 0), &s[4..8], &s[8..16]), (120, &7u32.to_be_bytes()[..], &[0, 0, 0, 9, 0, 0, 0, 10][..]));
        assert_eq!(&s[16..24], &1u64.to_be_bytes(), "rx_packets");
        assert_eq!(&s[72..80], &8u64.to_be_bytes(), "tx_errors");
        assert_eq!(&s[88..96], &9u64.to_be_bytes(), "rx_frame_err in the Ethernet property");
        assert_eq!(&s[112..120], &12u64.to_be_bytes(), "collisions");
        // A 1.4 PORT_MOD's advertise property comes to 1.3's field.
        let mut pm = vec![VERSION, msg::PORT_MOD, 0, 0, 0, 0, 0, 2];
        pm.extend_from_slice(&5u32.to_be_bytes());
        pm.extend_from_slice(&[0; 4 + 6 + 2]);
        pm.extend_from_slice(&1u32.to_be_bytes());
        pm.extend_from_slice(&1u32.to_be_bytes());
        pm.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0x08, 0x20]);
        let len = pm.len() as u16;
        pm[2..4].copy_from_slice(&len.to_be_bytes());
        let t = to13(&pm);
        assert_eq!((t[0], t.len(), &t[32..36]), (of::VERSION, 8 + 32, &[0, 0, 0x08, 0x20][..]));
    }
}
