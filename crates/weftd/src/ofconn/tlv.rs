//! Nicira's TLV table messages (`ovs-ofctl add-tlv-map`, `del-tlv-map`, `dump-tlv-map`): NXT_TLV_TABLE_MOD
//! changes the bridge's map in one configuration transaction; NXT_TLV_TABLE_REQUEST is answered with
//! NXT_TLV_TABLE_REPLY. The same over OpenFlow 1.0 (vendor messages) and 1.3 (experimenter messages).

use super::*;
use weft_api::tlv::{self, TlvCode, TlvMapping};

/// The NXT subtypes.
pub(super) const TABLE_MOD: u32 = 24;
pub(super) const TABLE_REQUEST: u32 = 25;
pub(super) const TABLE_REPLY: u32 = 26;

const ADD: u16 = 0;
const DELETE: u16 = 1;
const CLEAR: u16 = 2;

/// An error of a TLV table change, in the numbering of the connection's version: Nicira's experimenter error
/// (type 0xffff, see [`super::error_msg`]) for 1.3, BAD_REQUEST with Nicira's code for 1.0.
fn code(c: TlvCode, v10: bool) -> (u16, u16) {
    if v10 {
        (error::BAD_REQUEST, c.nx10())
    } else {
        (EXPERIMENTER_ERROR, c.nx12())
    }
}

/// The error type that says "Nicira's experimenter error" to [`super::error_msg`].
pub(super) const EXPERIMENTER_ERROR: u16 = 0xffff;

/// NXT_TLV_TABLE_MOD's body (after the vendor and subtype): command, 6 bytes of padding, then the maps.
pub(super) fn table_mod(st: &mut dyn Daemon, bridge: &str, body: &[u8], v10: bool) -> Result<(), (u16, u16)> {
    if body.len() < 8 || !(body.len() - 8).is_multiple_of(8) {
        return Err((error::BAD_REQUEST, error::BAD_LEN));
    }
    let command = u16::from_be_bytes([body[0], body[1]]);
    let maps: Vec<TlvMapping> = body[8..]
        .chunks_exact(8)
        .map(|m| TlvMapping {
            class: u16::from_be_bytes([m[0], m[1]]),
            kind: m[2],
            len: m[3],
            index: u16::from_be_bytes([m[4], m[5]]).min(255) as u8,
        })
        .collect();
    let mut new = st.config().clone();
    let b = new.bridges.iter_mut().find(|b| b.name == bridge).ok_or((error::BAD_REQUEST, error::BAD_LEN))?;
    let in_use = tlv::in_use(b);
    let result = match command {
        ADD => tlv::add(&b.tlv_map, &maps),
        DELETE => {
            let idx: Vec<u8> = maps.iter().map(|m| m.index).collect();
            tlv::delete(&b.tlv_map, &idx, &in_use)
        }
        CLEAR => tlv::delete(&b.tlv_map, &b.tlv_map.iter().map(|m| m.index).collect::<Vec<_>>(), &in_use),
        _ => Err(tlv::TlvError { code: TlvCode::BadCommand, why: format!("TLV table command {command}") }),
    };
    b.tlv_map = result.map_err(|e| {
        tracing::info!("bridge {bridge}: TLV table change refused: {e}");
        code(e.code, v10)
    })?;
    st.commit_config(new).map_err(|e| {
        tracing::warn!("OpenFlow TLV table change failed: {e}");
        code(TlvCode::BadCommand, v10)
    })
}

/// NXT_TLV_TABLE_REPLY's body (after the vendor and subtype): the space and fields weft offers, then the
/// bridge's mappings.
pub(super) fn table_reply(st: &dyn Daemon, bridge: &str) -> Vec<u8> {
    let mut r = (tlv::SPACE as u32).to_be_bytes().to_vec();
    r.extend_from_slice(&u16::from(weft_api::flow::TUN_METADATA_FIELDS).to_be_bytes());
    r.extend_from_slice(&[0; 10]);
    if let Some(b) = st.config().bridge(bridge) {
        for m in &b.tlv_map {
            r.extend_from_slice(&m.class.to_be_bytes());
            r.push(m.kind);
            r.push(m.len);
            r.extend_from_slice(&u16::from(m.index).to_be_bytes());
            r.extend_from_slice(&[0, 0]);
        }
    }
    r
}
