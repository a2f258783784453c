//! A bridge's TLV map: which Geneve option (class, type, length) each `tun_metadataN` field stands for, as
//! `ovs-ofctl add-tlv-map` sets it (NXT_TLV_TABLE_MOD), and where the mapped fields live in the classifier's
//! key.
//!
//! weft keeps [`SPACE`] bytes of option data per packet (Open vSwitch: 256), in at most [`SPACE`] / 4 fields
//! of 4 to 16 bytes each (OVS: up to 124), laid out in 4-byte units: a field of 4 bytes takes half a key
//! word, one of 8 a whole word, one of 12 or 16 two words.

use crate::flow::{Action, CtZone, Field, Flow, TUN_METADATA_FIELDS, TUN_METADATA_MAX};
use serde::{Deserialize, Serialize};

/// Bytes of option data the key holds for one packet.
pub const SPACE: usize = 32;
/// Key words those bytes take.
pub const WORDS: usize = SPACE / 8;

/// Bytes of `options:geneve_opts` a Geneve port may send in a bridge with a TLV map (its packets carry the
/// port's options and then the mapped ones the flows set; the header is built per packet).
pub const STATIC_OPTIONS_MAX: usize = 64;

/// Bytes the mapped options may add to a Geneve packet: each option's 4-byte header and data.
pub fn room(map: &[TlvMapping]) -> u16 {
    map.iter().map(|m| 4 + u16::from(m.len)).sum()
}

/// One mapping: option (class, type) of `len` bytes is `tun_metadata<index>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlvMapping {
    pub class: u16,
    #[serde(rename = "type")]
    pub kind: u8,
    pub len: u8,
    pub index: u8,
}

/// Why a change of the map is refused: OVS's NXTTMFC_* code (as [`crate::ofp::OfError`]'s code under
/// Nicira's error type) and what to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlvError {
    pub code: TlvCode,
    pub why: String,
}

/// The NXTTMFC_* errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlvCode {
    BadCommand,
    BadOptLen,
    BadFieldIdx,
    TableFull,
    AlreadyMapped,
    DupEntry,
    InvalidTlvDel,
}

impl TlvCode {
    /// The OpenFlow 1.2+ experimenter error code OVS sends (NX1.2+ numbering).
    pub fn nx12(self) -> u16 {
        match self {
            TlvCode::BadCommand => 16,
            TlvCode::BadOptLen => 17,
            TlvCode::BadFieldIdx => 18,
            TlvCode::TableFull => 19,
            TlvCode::AlreadyMapped => 20,
            TlvCode::DupEntry => 21,
            TlvCode::InvalidTlvDel => 38,
        }
    }

    /// The OpenFlow 1.0 vendor error code (NX1.0-1.1 numbering, type 1 BAD_REQUEST).
    pub fn nx10(self) -> u16 {
        match self {
            TlvCode::BadCommand => 527,
            TlvCode::BadOptLen => 528,
            TlvCode::BadFieldIdx => 529,
            TlvCode::TableFull => 530,
            TlvCode::AlreadyMapped => 531,
            TlvCode::DupEntry => 532,
            TlvCode::InvalidTlvDel => 537,
        }
    }
}

fn fail(code: TlvCode, why: impl Into<String>) -> TlvError {
    TlvError { code, why: why.into() }
}

impl std::fmt::Display for TlvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// Where a mapped field lives in the key: `bits` (32, 64 or 128) bits at `shift` of tunnel-metadata word
/// `word` (0..[`WORDS`]; a 128-bit field takes `word` and the next), and which presence bit says the
/// option was there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub index: u8,
    pub word: u8,
    pub shift: u8,
    pub bits: u8,
    pub present: u8,
}

/// Lays the map out in the key (fields in index order, each in the first free place of its size), or says
/// that it does not fit or is not a map (a length weft cannot hold, an index twice, an option twice).
pub fn layout(map: &[TlvMapping]) -> Result<Vec<Place>, TlvError> {
    let mut sorted: Vec<&TlvMapping> = map.iter().collect();
    sorted.sort_by_key(|m| m.index);
    let mut used = [false; SPACE / 4];
    let mut out = Vec::with_capacity(map.len());
    for (i, m) in sorted.iter().enumerate() {
        check_one(m)?;
        if sorted[..i].iter().any(|o| o.index == m.index) {
            return Err(fail(TlvCode::AlreadyMapped, format!("tun_metadata{} is mapped twice", m.index)));
        }
        if let Some(o) = sorted[..i].iter().find(|o| (o.class, o.kind) == (m.class, m.kind)) {
            return Err(fail(
                TlvCode::DupEntry,
                format!("option class {:#x} type {:#x} is mapped to tun_metadata{} already", m.class, m.kind, o.index),
            ));
        }
        // Units of 4 bytes: 1 (half a word), 2 (a word), 4 (two words), aligned to their size.
        let units = match m.len {
            4 => 1,
            8 => 2,
            _ => 4,
        };
        let at = (0..used.len()).step_by(units).find(|&u| used[u..u + units].iter().all(|x| !x)).ok_or_else(|| {
            fail(
                TlvCode::TableFull,
                format!(
                    "tun_metadata{} ({} bytes) does not fit: weft keeps {SPACE} bytes of tunnel metadata, {} of them \
                         taken",
                    m.index,
                    m.len,
                    used.iter().filter(|x| **x).count() * 4
                ),
            )
        })?;
        used[at..at + units].iter_mut().for_each(|x| *x = true);
        out.push(Place {
            index: m.index,
            word: (at / 2) as u8,
            shift: if units == 1 && at % 2 == 1 { 32 } else { 0 },
            bits: (32 * units.min(4)) as u8,
            present: i as u8,
        });
    }
    Ok(out)
}

fn check_one(m: &TlvMapping) -> Result<(), TlvError> {
    if m.index >= TUN_METADATA_FIELDS {
        return Err(fail(TlvCode::BadFieldIdx, format!("tun_metadata{} does not exist (0..63)", m.index)));
    }
    if m.len == 0 || !m.len.is_multiple_of(4) || m.len > 124 {
        return Err(fail(TlvCode::BadOptLen, format!("option length {} is not a multiple of 4 in 4..=124", m.len)));
    }
    if usize::from(m.len) > TUN_METADATA_MAX {
        return Err(fail(
            TlvCode::BadOptLen,
            format!("option length {}: weft carries options of at most {TUN_METADATA_MAX} bytes (OVS: 124)", m.len),
        ));
    }
    Ok(())
}

/// NXTTMC_ADD: the map with `new` added (each new index and option unmapped so far).
pub fn add(map: &[TlvMapping], new: &[TlvMapping]) -> Result<Vec<TlvMapping>, TlvError> {
    let mut out = map.to_vec();
    for m in new {
        check_one(m)?;
        if out.iter().any(|o| o.index == m.index) {
            return Err(fail(TlvCode::AlreadyMapped, format!("tun_metadata{} is already mapped", m.index)));
        }
        out.push(*m);
    }
    layout(&out)?;
    Ok(out)
}

/// NXTTMC_DELETE: the map without the mappings of these indexes (others are ignored, as OVS does), unless
/// a flow or group of `in_use` still uses one.
pub fn delete(map: &[TlvMapping], indexes: &[u8], in_use: &[u8]) -> Result<Vec<TlvMapping>, TlvError> {
    if let Some(i) = indexes.iter().find(|i| in_use.contains(i) && map.iter().any(|m| m.index == **i)) {
        return Err(fail(TlvCode::InvalidTlvDel, format!("tun_metadata{i} is used by a flow or group")));
    }
    Ok(map.iter().filter(|m| !indexes.contains(&m.index)).copied().collect())
}

/// `{class=0xffff,type=0,len=4}->tun_metadata0[,…]`, as `ovs-ofctl add-tlv-map` takes mappings.
pub fn parse(text: &str) -> Result<Vec<TlvMapping>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let body = rest.strip_prefix('{').ok_or_else(|| format!("{rest:?}: a mapping starts with {{"))?;
        let (inside, after) = body.split_once('}').ok_or_else(|| format!("{rest:?}: missing }}"))?;
        let (mut class, mut kind, mut len) = (None, None, None);
        for kv in inside.split(',').map(str::trim) {
            let (k, v) = kv.split_once('=').ok_or_else(|| format!("{kv:?}: expected KEY=VALUE"))?;
            let n = number(v.trim()).ok_or_else(|| format!("{v:?} is not a number"))?;
            match k.trim() {
                "class" if n <= 0xffff => class = Some(n as u16),
                "type" if n <= 0xff => kind = Some(n as u8),
                "len" if n <= 0xff => len = Some(n as u8),
                "class" | "type" | "len" => return Err(format!("{kv:?} is out of range")),
                other => return Err(format!("{other:?}: a mapping takes class, type and len")),
            }
        }
        let (Some(class), Some(kind), Some(len)) = (class, kind, len) else {
            return Err(format!("{{{inside}}}: a mapping needs class, type and len"));
        };
        let after = after.trim_start().strip_prefix("->").ok_or_else(|| format!("{after:?}: expected ->"))?;
        let end = after.find(',').unwrap_or(after.len());
        let name = after[..end].trim();
        let index =
            crate::flow::tun_metadata_index(name).ok_or_else(|| format!("{name:?} is not tun_metadata0..63"))?;
        out.push(TlvMapping { class, kind, len, index });
        rest = after[end..].trim_start_matches(',').trim();
    }
    if out.is_empty() {
        return Err("no mappings given".into());
    }
    Ok(out)
}

fn number(v: &str) -> Option<u32> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The map as `ovs-ofctl dump-tlv-map` prints the table (after its header lines).
pub fn format(map: &[TlvMapping]) -> String {
    let mut sorted = map.to_vec();
    sorted.sort_by_key(|m| m.index);
    let space: usize = map.iter().map(|m| usize::from(m.len)).sum();
    let mut s =
        format!(" max option space={SPACE} max fields={TUN_METADATA_FIELDS}\n allocated option space={space}\n");
    if !sorted.is_empty() {
        s.push_str("\n mapping table:\n  class  type  length  match field\n ------  ----  ------  --------------\n");
        for m in &sorted {
            s.push_str(&format!(" {:#6x}  {:#4x}  {:6}  tun_metadata{}\n", m.class, m.kind, m.len, m.index));
        }
    }
    s
}

/// The `tun_metadataN` fields a bridge's flows and groups name (their mappings may not go).
pub fn in_use(b: &crate::BridgeConfig) -> Vec<u8> {
    b.flows
        .iter()
        .flat_map(|s| fields_used(&s.flow))
        .chain(b.groups.iter().flat_map(|g| g.buckets.iter().flat_map(|bk| actions_use(&bk.actions))))
        .collect()
}

/// The `tun_metadataN` fields a flow's match and actions name (an index may come more than once).
pub fn fields_used(f: &Flow) -> Vec<u8> {
    let mut out: Vec<u8> = f.matches.iter().filter_map(|m| index_of(m.field)).collect();
    out.extend(actions_use(&f.actions));
    out
}

/// The `tun_metadataN` fields actions read or write.
pub fn actions_use(actions: &[Action]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in actions {
        let fields: Vec<Field> = match *a {
            Action::Load { dst, .. } => vec![dst.field],
            Action::SetReg { field, .. } => vec![field],
            Action::Move { src, dst } => vec![src.field, dst.field],
            Action::StackPush(sf) | Action::StackPop(sf) | Action::OutputReg(sf) => vec![sf.field],
            Action::Multipath(m) => vec![m.dst.field],
            Action::Bundle(b) => b.dst.map(|d| d.field).into_iter().collect(),
            Action::LearnSpec(spec) => spec.packet_field().into_iter().chain(spec.dst()).map(|s| s.field).collect(),
            Action::Ct(ct) => {
                let mut v: Vec<Field> = ct
                    .exec_writes()
                    .filter_map(|w| match w {
                        crate::flow::CtWrite::Move { src, .. } => Some(src.field),
                        crate::flow::CtWrite::Const { .. } => None,
                    })
                    .collect();
                if let CtZone::Field(sf) = ct.zone {
                    v.push(sf.field);
                }
                v
            }
            _ => continue,
        };
        out.extend(fields.into_iter().filter_map(index_of));
    }
    out
}

fn index_of(f: Field) -> Option<u8> {
    match f {
        Field::TunMetadata(n) => Some(n),
        _ => None,
    }
}

/// Checks that every `tun_metadataN` a flow names is mapped, and that its match fits the option's length.
pub fn check_flow(map: &[TlvMapping], f: &Flow) -> Result<(), String> {
    for n in fields_used(f) {
        let Some(m) = map.iter().find(|m| m.index == n) else {
            return Err(format!("tun_metadata{n} is not mapped to a Geneve option (add-tlv-map first)"));
        };
        for x in f.matches.iter().filter(|x| x.field == Field::TunMetadata(n)) {
            let bits = 8 * u32::from(m.len);
            if bits < 128 && (x.value >> bits != 0 || (x.mask != u128::MAX && x.mask >> bits != 0)) {
                return Err(format!("tun_metadata{n}: the match is longer than the option's {} bytes", m.len));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(text: &str) -> Flow {
        crate::flow::parse(text, &|p| p.parse().ok()).unwrap()
    }

    #[test]
    fn mappings_parse_lay_out_and_print() {
        let map =
            parse("{class=0xffff,type=0,len=4}->tun_metadata0, {class=0x102,type=0x80,len=8}->tun_metadata1").unwrap();
        assert_eq!(map[1], TlvMapping { class: 0x102, kind: 0x80, len: 8, index: 1 });
        let places = layout(&map).unwrap();
        // Four bytes take half a word, eight a whole one (the next word: the first is half taken).
        assert_eq!((places[0].word, places[0].shift, places[0].bits, places[0].present), (0, 0, 32, 0));
        assert_eq!((places[1].word, places[1].shift, places[1].bits, places[1].present), (1, 0, 64, 1));
        let more = add(&map, &parse("{class=1,type=2,len=4}->tun_metadata5").unwrap()).unwrap();
        assert_eq!(layout(&more).unwrap()[2].shift, 32, "the free half of word 0");
        let text = format(&more);
        assert!(text.contains("allocated option space=16"), "{text}");
        assert!(text.contains("0xffff   0x0       4  tun_metadata0"), "{text}");
        for bad in [
            "",
            "{class=1,type=2}->tun_metadata0",
            "{class=1,type=2,len=4}->tun_metadata64",
            "{class=0x10000,type=2,len=4}->tun_metadata0",
            "{class=1,type=2,len=4,x=1}->tun_metadata0",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn changes_are_refused_with_ovs_codes() {
        let map = parse("{class=0xffff,type=0,len=4}->tun_metadata0").unwrap();
        let code = |r: Result<Vec<TlvMapping>, TlvError>| r.unwrap_err().code;
        assert_eq!(code(add(&map, &parse("{class=1,type=1,len=4}->tun_metadata0").unwrap())), TlvCode::AlreadyMapped);
        assert_eq!(code(add(&map, &parse("{class=0xffff,type=0,len=4}->tun_metadata1").unwrap())), TlvCode::DupEntry);
        assert_eq!(code(add(&map, &parse("{class=1,type=1,len=6}->tun_metadata1").unwrap())), TlvCode::BadOptLen);
        assert_eq!(code(add(&map, &parse("{class=1,type=1,len=20}->tun_metadata1").unwrap())), TlvCode::BadOptLen);
        // 32 bytes: 4 + 16 + 8 fit, another 8 do not.
        let full =
            add(&map, &parse("{class=1,type=1,len=16}->tun_metadata1,{class=1,type=2,len=8}->tun_metadata2").unwrap())
                .unwrap();
        assert_eq!(code(add(&full, &parse("{class=1,type=3,len=8}->tun_metadata3").unwrap())), TlvCode::TableFull);
        assert!(add(&full, &parse("{class=1,type=3,len=4}->tun_metadata3").unwrap()).is_ok());
        // A mapping in use stays; others go, unknown indexes are ignored.
        assert_eq!(code(delete(&full, &[0, 1], &[0])), TlvCode::InvalidTlvDel);
        assert_eq!(delete(&full, &[1, 9], &[0]).unwrap().len(), 2);
        assert_eq!((TlvCode::DupEntry.nx12(), TlvCode::DupEntry.nx10()), (21, 532));
    }

    #[test]
    fn flows_must_name_mapped_fields_that_fit() {
        let map = parse("{class=0xffff,type=0,len=4}->tun_metadata0").unwrap();
        assert!(check_flow(&map, &flow("tun_metadata0=0x1234,actions=move:tun_metadata0[0..15]->reg0[0..15],NORMAL"))
            .is_ok());
        let e = check_flow(&map, &flow("tun_metadata1=1,actions=drop")).unwrap_err();
        assert!(e.contains("tun_metadata1 is not mapped"), "{e}");
        let e = check_flow(&map, &flow("tun_metadata0=0x1122334455,actions=drop")).unwrap_err();
        assert!(e.contains("longer than the option's 4 bytes"), "{e}");
        assert!(check_flow(&map, &flow("actions=set_field:1->tun_metadata0,NORMAL")).is_ok());
        assert!(check_flow(&map, &flow("actions=set_field:1->tun_metadata2,NORMAL")).is_err());
        assert_eq!(fields_used(&flow("actions=move:reg0[0..7]->tun_metadata0[0..7]")), vec![0]);
        assert_eq!(fields_used(&flow("ip,actions=ct(commit,zone=tun_metadata3[0..15])")), vec![3]);
    }
}
