//! OpenFlow 1.5 as a translation of 1.3, like 1.4 ([`super::of14`]) and with what 1.5 changed beyond it:
//! flow statistics as OFPMP_FLOW_DESC with OXS statistics, aggregates and FLOW_REMOVED with OXS, PACKET_OUT
//! with a match for its input port, groups with bucket ids and bucket properties. The actions 1.5 brought
//! (OFPAT_COPY_FIELD, a masked OFPAT_SET_FIELD, OFPAT_METER) are read by the action decoder for any version.

use super::*;

/// OpenFlow 1.5's wire version.
pub(super) const VERSION: u8 = 6;

/// The OXS class of OpenFlow's basic statistics, and the ones weft sends.
const OXS_BASIC: u32 = 0x8002;
const OXS_DURATION: u32 = 0;
const OXS_FLOW_COUNT: u32 = 3;
const OXS_PACKET_COUNT: u32 = 4;
const OXS_BYTE_COUNT: u32 = 5;

use of14::{rebuild, u16_at};

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// An ofp_stats: OXS fields (`(field, value bytes)`), padded to 8.
fn put_stats(out: &mut Vec<u8>, fields: &[(u32, &[u8])]) {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    for (field, value) in fields {
        out.extend_from_slice(&(OXS_BASIC << 16 | field << 9 | value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    let len = (out.len() - at) as u16;
    out[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
    of::pad8(out, at);
}

/// An ofp_match's length with its padding.
fn match_len(b: &[u8]) -> Option<usize> {
    let n = usize::from(u16_at(b.get(..4)?, 2));
    let padded = n.div_ceil(8) * 8;
    (n >= 4 && padded <= b.len()).then_some(padded)
}

/// 1.3's ofp_flow_stats as 1.5's ofp_flow_desc: the settings, the match, the statistics as OXS, the
/// instructions.
fn flow_desc(e: &[u8]) -> Option<Vec<u8>> {
    let rest = e.get(48..)?;
    let m = match_len(rest)?;
    let mut d = vec![0, 0, 0, 0, e[2], 0];
    d.extend_from_slice(&e[12..20]); // priority, idle and hard timeouts, flags
    d.extend_from_slice(&e[20..22]); // importance
    d.extend_from_slice(&e[24..32]); // cookie
    d.extend_from_slice(&rest[..m]);
    put_stats(&mut d, &[(OXS_DURATION, &e[4..12]), (OXS_PACKET_COUNT, &e[32..40]), (OXS_BYTE_COUNT, &e[40..48])]);
    d.extend_from_slice(&rest[m..]);
    let len = d.len() as u16;
    d[0..2].copy_from_slice(&len.to_be_bytes());
    Some(d)
}

/// 1.3's group description entry as 1.5's: bucket ids (their order), weight and watches as properties.
fn group_desc(e: &[u8]) -> Option<Vec<u8>> {
    let mut buckets = Vec::new();
    let mut rest = e.get(8..)?;
    let mut id = 0u32;
    while rest.len() >= 16 {
        let len = usize::from(u16_at(rest, 0));
        if len < 16 || len > rest.len() {
            return None;
        }
        let actions = &rest[16..len];
        let at = buckets.len();
        buckets.extend_from_slice(&[0, 0]);
        buckets.extend_from_slice(&(actions.len() as u16).to_be_bytes());
        buckets.extend_from_slice(&id.to_be_bytes());
        buckets.extend_from_slice(actions);
        buckets.extend_from_slice(&[0, 0, 0, 8]); // OFPGBPT15_WEIGHT
        buckets.extend_from_slice(&rest[2..4]);
        buckets.extend_from_slice(&[0, 0]);
        buckets.extend_from_slice(&[0, 1, 0, 8]); // OFPGBPT15_WATCH_PORT
        buckets.extend_from_slice(&rest[4..8]);
        buckets.extend_from_slice(&[0, 2, 0, 8]); // OFPGBPT15_WATCH_GROUP
        buckets.extend_from_slice(&rest[8..12]);
        let blen = (buckets.len() - at) as u16;
        buckets[at..at + 2].copy_from_slice(&blen.to_be_bytes());
        rest = &rest[len..];
        id += 1;
    }
    let mut d = vec![0, 0, e[2], 0];
    d.extend_from_slice(&e[4..8]);
    d.extend_from_slice(&(buckets.len() as u16).to_be_bytes());
    d.extend_from_slice(&[0; 6]);
    d.extend_from_slice(&buckets);
    let len = d.len() as u16;
    d[0..2].copy_from_slice(&len.to_be_bytes());
    Some(d)
}

/// Entries of a multipart reply body, each starting with its length.
fn entries(mut items: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while items.len() >= 2 {
        let n = usize::from(u16_at(items, 0));
        if n < 2 || n > items.len() {
            break;
        }
        out.push(&items[..n]);
        items = &items[n..];
    }
    out
}

/// An answer (or a queued asynchronous message) of the 1.3 handler as OpenFlow 1.5 says it.
pub(super) fn from13(m: &[u8]) -> Vec<u8> {
    let Ok(h) = of::Header::parse(m) else { return m.to_vec() };
    let body = &m[of::HEADER_LEN..];
    match h.kind {
        msg::MULTIPART_REPLY if body.len() >= 8 && matches!(u16_at(body, 0), of::mp::FLOW | of::mp::GROUP_DESC) => {
            let mut b = body[..8].to_vec();
            let flow = u16_at(body, 0) == of::mp::FLOW;
            for e in entries(&body[8..]) {
                match if flow { flow_desc(e) } else { group_desc(e) } {
                    Some(d) => b.extend_from_slice(&d),
                    None => return m.to_vec(),
                }
            }
            rebuild(m, &b, VERSION)
        }
        // packet_count, byte_count, flow_count, pad: as OXS.
        msg::MULTIPART_REPLY if body.len() >= 32 && u16_at(body, 0) == of::mp::AGGREGATE => {
            let s = &body[8..];
            let mut b = body[..8].to_vec();
            put_stats(
                &mut b,
                &[(OXS_FLOW_COUNT, &s[16..20]), (OXS_PACKET_COUNT, &s[0..8]), (OXS_BYTE_COUNT, &s[8..16])],
            );
            rebuild(m, &b, VERSION)
        }
        // cookie, priority, reason, table, duration, timeouts, counts, match: 1.5's order, the counts as OXS.
        msg::FLOW_REMOVED if body.len() >= 40 && match_len(&body[40..]).is_some() => {
            let mut b = vec![body[11], body[10]];
            b.extend_from_slice(&body[8..10]); // priority
            b.extend_from_slice(&body[20..24]); // idle and hard timeouts
            b.extend_from_slice(&body[0..8]); // cookie
            let ml = match_len(&body[40..]).unwrap_or(0);
            b.extend_from_slice(&body[40..40 + ml]);
            put_stats(
                &mut b,
                &[(OXS_DURATION, &body[12..20]), (OXS_PACKET_COUNT, &body[24..32]), (OXS_BYTE_COUNT, &body[32..40])],
            );
            rebuild(m, &b, VERSION)
        }
        _ => {
            let mut out = of14::from13(m);
            out[0] = VERSION;
            out
        }
    }
}

/// A 1.5 request as the 1.3 handler takes it (an error when it cannot be said in 1.3).
pub(super) fn to13(m: &[u8]) -> Result<Vec<u8>, (u16, u16)> {
    let Ok(h) = of::Header::parse(m) else { return Ok(m.to_vec()) };
    let body = &m[of::HEADER_LEN..];
    let bad_len = (error::BAD_REQUEST, error::BAD_LEN);
    Ok(match h.kind {
        // buffer_id, actions_len, pad, a match (the input port), actions, data.
        msg::PACKET_OUT => {
            if body.len() < 8 {
                return Err(bad_len);
            }
            let ml = match_len(&body[8..]).ok_or(bad_len)?;
            let (tlvs, _) = of::parse_match(&body[8..]).map_err(|_| (error::BAD_MATCH, 1))?;
            let in_port = tlvs
                .iter()
                .find(|t| t.class == of::oxm::CLASS_BASIC && t.field == of::oxm::IN_PORT && t.value.len() == 4)
                .map_or(of::port::CONTROLLER, |t| u32_at(t.value, 0));
            let mut b = body[0..4].to_vec();
            b.extend_from_slice(&in_port.to_be_bytes());
            b.extend_from_slice(&body[4..6]);
            b.extend_from_slice(&[0; 6]);
            b.extend_from_slice(&body[8 + ml..]);
            rebuild(m, &b, of::VERSION)
        }
        // command, type, pad, group, bucket_array_len, pad, command_bucket_id; buckets with ids and
        // properties. Adding, changing and deleting whole groups only (OFPGC15_INSERT/REMOVE_BUCKET are not
        // weft's).
        msg::GROUP_MOD => {
            if body.len() < 16 {
                return Err(bad_len);
            }
            let command = u16_at(body, 0);
            if command > 2 {
                return Err((error::GROUP_MOD_FAILED, error::group::BAD_COMMAND));
            }
            let n = usize::from(u16_at(body, 8));
            let mut rest = body.get(16..16 + n).ok_or(bad_len)?;
            let mut b = body[0..8].to_vec();
            while !rest.is_empty() {
                if rest.len() < 8 {
                    return Err(bad_len);
                }
                let (len, alen) = (usize::from(u16_at(rest, 0)), usize::from(u16_at(rest, 2)));
                if len < 8 + alen || len > rest.len() {
                    return Err(bad_len);
                }
                let (mut weight, mut watch_port, mut watch_group) = ([0u8, 0], of::port::ANY, of::port::ANY);
                let mut props = &rest[8 + alen..len];
                while props.len() >= 8 {
                    let (kind, plen) = (u16_at(props, 0), usize::from(u16_at(props, 2)));
                    if plen < 4 || plen > props.len() {
                        return Err(bad_len);
                    }
                    match kind {
                        0 => weight = [props[4], props[5]],
                        1 => watch_port = u32_at(props, 4),
                        2 => watch_group = u32_at(props, 4),
                        _ => {}
                    }
                    props = &props[plen.div_ceil(8) * 8..];
                }
                let actions = &rest[8..8 + alen];
                b.extend_from_slice(&((16 + actions.len()) as u16).to_be_bytes());
                b.extend_from_slice(&weight);
                b.extend_from_slice(&watch_port.to_be_bytes());
                b.extend_from_slice(&watch_group.to_be_bytes());
                b.extend_from_slice(&[0; 4]);
                b.extend_from_slice(actions);
                rest = &rest[len..];
            }
            rebuild(m, &b, of::VERSION)
        }
        _ => {
            let mut out = of14::to13(m);
            out[0] = of::VERSION;
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1.3 message of `kind` with `body`.
    fn msg13(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![4, kind, 0, 0, 0, 0, 0, 7];
        m.extend_from_slice(body);
        let len = m.len() as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        m
    }

    #[test]
    fn statistics_become_oxs_and_packet_outs_lose_their_match() {
        // FLOW_REMOVED: cookie 9, priority 3, reason 1, table 2, 5 s 6 ns, timeouts 10/20, 7 packets, 8 bytes,
        // an empty match.
        let mut b = 9u64.to_be_bytes().to_vec();
        b.extend_from_slice(&[0, 3, 1, 2, 0, 0, 0, 5, 0, 0, 0, 6, 0, 10, 0, 20]);
        b.extend_from_slice(&7u64.to_be_bytes());
        b.extend_from_slice(&8u64.to_be_bytes());
        b.extend_from_slice(&[0, 1, 0, 4, 0, 0, 0, 0]);
        let t = from13(&msg13(msg::FLOW_REMOVED, &b));
        let r = &t[8..];
        assert_eq!((t[0], r[0], r[1], u16_at(r, 2), u16_at(r, 4), u16_at(r, 6)), (VERSION, 2, 1, 3, 10, 20));
        assert_eq!(&r[8..16], &9u64.to_be_bytes(), "cookie");
        // Then the match, then ofp_stats: reserved, length 4 + 12 + 12 + 12 = 40, duration, packets, bytes.
        let s = &r[24..];
        assert_eq!((u16_at(s, 2), u32_at(s, 4)), (40, 0x8002_0008));
        assert_eq!((u32_at(s, 8), u32_at(s, 12)), (5, 6));
        assert_eq!((u32_at(s, 16), &s[20..28]), (0x8002_0808, &7u64.to_be_bytes()[..]));
        assert_eq!((u32_at(s, 28), &s[32..40]), (0x8002_0a08, &8u64.to_be_bytes()[..]));
        // Aggregate: 11 packets, 12 bytes, 3 flows.
        let mut b = vec![0, 2, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&11u64.to_be_bytes());
        b.extend_from_slice(&12u64.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 0]);
        let t = from13(&msg13(msg::MULTIPART_REPLY, &b));
        let s = &t[16..];
        assert_eq!((u16_at(s, 2), u32_at(s, 4), u32_at(s, 8)), (4 + 8 + 12 + 12, 0x8002_0604, 3));
        // PACKET_OUT 1.5: no buffer, 8 bytes of actions, a match on in_port 3, OUTPUT:2, then the frame.
        let mut b = vec![0xff, 0xff, 0xff, 0xff, 0, 16, 0, 0];
        b.extend_from_slice(&[0, 1, 0, 12, 0x80, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 0]);
        b.extend_from_slice(&[0, 0, 0, 16, 0, 0, 0, 2, 0xff, 0xff, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0xaa; 14]);
        let mut m = msg13(msg::PACKET_OUT, &b);
        m[0] = VERSION;
        let t = to13(&m).unwrap();
        let o = &t[8..];
        assert_eq!((t[0], u32_at(o, 4), u16_at(o, 8)), (of::VERSION, 3, 16));
        assert_eq!((&o[16..20], &o[32..]), (&[0u8, 0, 0, 16][..], &[0xaa; 14][..]));
    }
}
