//! The Nicira actions that build flows: NXAST_LEARN / NXAST_LEARN2 (`learn(…)`) and NXAST_CONJUNCTION, as
//! Open vSwitch lays them out.

use super::*;
use crate::flow::learn::{Learn, LearnSpec, LearnSrc};

const SEND_FLOW_REM: u16 = 1;
const DELETE_LEARNED: u16 = 2;
const WRITE_RESULT: u16 = 4;
/// A spec's header: the source is a constant (else a field), the destination a load or an output (else a
/// match), and the number of bits.
const SRC_IMMEDIATE: u16 = 1 << 13;
const DST_LOAD: u16 = 1 << 11;
const DST_OUTPUT: u16 = 2 << 11;
const DST_MASK: u16 = 3 << 11;
const N_BITS: u16 = 0x7ff;

/// Bytes a constant of `n_bits` takes in a spec: whole 16-bit units.
fn imm_len(n_bits: u16) -> usize {
    usize::from(n_bits.div_ceil(16)) * 2
}

/// `learn(…)` (the settings and the specs that follow them in the list): NXAST_LEARN, or NXAST_LEARN2 when
/// it has a limit.
pub(crate) fn put_learn(out: &mut Vec<u8>, l: &Learn, specs: &[Action]) {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&l.idle_timeout.to_be_bytes());
    b.extend_from_slice(&l.hard_timeout.to_be_bytes());
    b.extend_from_slice(&l.priority.to_be_bytes());
    b.extend_from_slice(&l.cookie.to_be_bytes());
    let flags = if l.send_flow_rem { SEND_FLOW_REM } else { 0 } | if l.delete_learned { DELETE_LEARNED } else { 0 };
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&[l.table, 0]);
    b.extend_from_slice(&l.fin_idle_timeout.to_be_bytes());
    b.extend_from_slice(&l.fin_hard_timeout.to_be_bytes());
    if l.limit != 0 {
        b.extend_from_slice(&l.limit.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
    }
    let field = |b: &mut Vec<u8>, s: SubField| {
        let (class, f, bytes) = header_of(s.field).unwrap_or((0, 0, 0));
        b.extend_from_slice(&nxm_header(class, f, bytes, false).to_be_bytes());
        b.extend_from_slice(&s.ofs.to_be_bytes());
    };
    for a in specs {
        let Action::LearnSpec(spec) = *a else { continue };
        let (n_bits, src, dst_type, dst) = match spec {
            LearnSpec::Match { dst, src } => (dst.nbits, src, 0, Some(dst)),
            LearnSpec::Load { dst, src } => (dst.nbits, src, DST_LOAD, Some(dst)),
            LearnSpec::Output { src } => (src.nbits, LearnSrc::Field(src), DST_OUTPUT, None),
        };
        let imm = if matches!(src, LearnSrc::Imm(_)) { SRC_IMMEDIATE } else { 0 };
        b.extend_from_slice(&(imm | dst_type | (n_bits & N_BITS)).to_be_bytes());
        match src {
            LearnSrc::Imm(v) => b.extend_from_slice(&v.to_be_bytes()[16 - imm_len(n_bits)..]),
            LearnSrc::Field(s) => field(&mut b, s),
        }
        if let Some(d) = dst {
            field(&mut b, d);
        }
    }
    let sub = if l.limit != 0 { act::NXAST_LEARN2 } else { act::NXAST_LEARN };
    put_nx(out, sub, &b);
}

/// NXAST_LEARN (`v2`: NXAST_LEARN2) after its subtype: the learn and its specs.
pub(super) fn decode_learn(body: &[u8], v2: bool, out: &mut Vec<Action>) -> Result<(), OfError> {
    let bad = (error::BAD_ACTION, error::BAD_ARGUMENT);
    let fixed = if v2 { 30 } else { 22 };
    if body.len() < fixed {
        return Err((error::BAD_ACTION, error::BAD_LEN));
    }
    let u16_at = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    let flags = u16_at(14);
    if flags & WRITE_RESULT != 0 || flags & !(SEND_FLOW_REM | DELETE_LEARNED | WRITE_RESULT) != 0 {
        // result_dst is not weft's.
        return Err((error::BAD_ACTION, error::BAD_ARGUMENT));
    }
    let mut l = Learn {
        table: body[16],
        idle_timeout: u16_at(0),
        hard_timeout: u16_at(2),
        fin_idle_timeout: u16_at(18),
        fin_hard_timeout: u16_at(20),
        priority: u16_at(4),
        cookie: u64::from_be_bytes(body[6..14].try_into().map_err(|_| bad)?),
        send_flow_rem: flags & SEND_FLOW_REM != 0,
        delete_learned: flags & DELETE_LEARNED != 0,
        limit: if v2 { be32(body, 22) } else { 0 },
        n: 0,
    };
    if l.table == 255 {
        return Err(bad);
    }
    let mut specs = Vec::new();
    let mut at = fixed;
    let field = |at: &mut usize, n_bits: u16| -> Result<SubField, OfError> {
        let b = body.get(*at..*at + 6).ok_or(bad)?;
        *at += 6;
        sub_field(be32(b, 0), u16::from_be_bytes([b[4], b[5]]), n_bits)
    };
    while at + 2 <= body.len() {
        let h = u16_at(at);
        if h == 0 {
            break;
        }
        at += 2;
        let n_bits = h & N_BITS;
        if n_bits == 0 || n_bits > 128 || h & DST_MASK == DST_MASK || h >> 14 != 0 {
            return Err(bad);
        }
        let src = if h & SRC_IMMEDIATE != 0 {
            let n = imm_len(n_bits);
            let raw = body.get(at..at + n).ok_or(bad)?;
            at += n;
            let mut v = [0u8; 16];
            v[16 - n..].copy_from_slice(raw);
            let v = u128::from_be_bytes(v);
            if n_bits < 128 && v >> n_bits != 0 {
                return Err(bad);
            }
            LearnSrc::Imm(v)
        } else {
            LearnSrc::Field(field(&mut at, n_bits)?)
        };
        let spec = match (h & DST_MASK, src) {
            (DST_OUTPUT, LearnSrc::Field(src)) => LearnSpec::Output { src },
            (DST_OUTPUT, LearnSrc::Imm(_)) => return Err(bad),
            (DST_LOAD, src) => LearnSpec::Load { dst: field(&mut at, n_bits)?, src },
            (_, src) => LearnSpec::Match { dst: field(&mut at, n_bits)?, src },
        };
        specs.push(Action::LearnSpec(spec));
    }
    // What is left pads to 8 bytes with zeros.
    if body[at.min(body.len())..].iter().any(|b| *b != 0) {
        return Err(bad);
    }
    l.n = u8::try_from(specs.len()).map_err(|_| bad)?;
    out.push(Action::Learn(l));
    out.extend(specs);
    Ok(())
}

/// NXAST_CONJUNCTION after its subtype: the clause (from 0), the number of clauses, the id.
pub(super) fn decode_conjunction(body: &[u8], out: &mut Vec<Action>) -> Result<(), OfError> {
    if body.len() < 6 {
        return Err((error::BAD_ACTION, error::BAD_LEN));
    }
    let (k, n) = (body[0], body[1]);
    if !(2..=64).contains(&n) || k >= n {
        return Err((error::BAD_ACTION, error::BAD_ARGUMENT));
    }
    out.push(Action::Conjunction { id: be32(body, 2), k: k + 1, n });
    Ok(())
}
