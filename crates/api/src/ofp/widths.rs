//! Fields whose matches are not one plain value: registers split into 32-bit ones, fields narrower than
//! their OXM/NXM value.

use super::*;

/// Registers, xregs and xxregs as matches on 32-bit registers (the most significant first), leaving out
/// parts under a zero mask; other fields as they are.
pub(crate) fn split_regs(field: Field, value: u128, mask: u128) -> Vec<Match> {
    let (first, regs) = match field {
        Field::XReg(n) => (2 * n, 2u8),
        Field::XXReg(n) => (4 * n, 4),
        _ => return vec![Match { field, value: value & mask, mask }],
    };
    (0..regs)
        .filter_map(|i| {
            let shift = 32 * u32::from(regs - 1 - i);
            let (v, m) = ((value >> shift) as u32, (mask >> shift) as u32);
            (m != 0).then(|| Match { field: Field::Reg(first + i), value: u128::from(v & m), mask: u128::from(m) })
        })
        .collect()
}

/// The fields narrower than their OXM/NXM value (ECN's 2 bits in a byte, the flow label's 20 in four):
/// a value with bits outside the field is refused, and the mask is cut to the field (`mask` as sent).
pub(crate) fn narrow(field: Field, value: u128, mask: Option<u128>) -> Result<(u128, u128), OfError> {
    let (full, maskable) = match field {
        Field::NwEcn => (3, false),
        Field::NwTtl => (0xff, false),
        Field::Ipv6Label => (0xf_ffff, true),
        Field::MplsLabel => (0xf_ffff, false),
        Field::MplsTc => (7, false),
        Field::MplsBos => (1, false),
        Field::MplsTtl => (0xff, false),
        Field::NwFrag => (3, true),
        _ => return Ok((value, mask.unwrap_or(u128::MAX))),
    };
    if value & !full != 0 {
        return Err((error::BAD_MATCH, error::BAD_VALUE));
    }
    match mask {
        Some(_) if !maskable => Err((error::BAD_MATCH, error::BAD_MASK)),
        Some(m) => Ok((value & m, m & full)),
        None => Ok((value, full)),
    }
}

/// The subfield an NXM header and a bit range name, checked against the field's width.
pub(super) fn sub_field(header: u32, ofs: u16, nbits: u16) -> Result<SubField, OfError> {
    let field = field_of_header(header).ok_or((error::BAD_ACTION, error::BAD_SET_TYPE))?;
    if nbits == 0 || u32::from(ofs) + u32::from(nbits) > u32::from(field.bits()) {
        return Err((error::BAD_ACTION, error::BAD_SET_ARGUMENT));
    }
    Ok(SubField { field, ofs, nbits })
}

/// A write of `value` under `mask` to a field: a `set_field` of the whole field, else `load`s of the bits.
pub(super) fn reg_write(field: Field, value: u128, mask: u128, out: &mut Vec<Action>) {
    if mask == full_mask(u32::from(field.bits())) {
        out.push(match field {
            Field::DlSrc => Action::SetField(SetField::EthSrc(mac_of(value))),
            Field::DlDst => Action::SetField(SetField::EthDst(mac_of(value))),
            Field::TunId => Action::SetField(SetField::TunId(value as u64)),
            _ => Action::SetReg { field, value, mask },
        });
    } else {
        out.extend(crate::flow::loads(field, value, mask));
    }
}

fn mac_of(v: u128) -> EthernetAddress {
    EthernetAddress::from_bytes(&(v as u64).to_be_bytes()[2..])
}

/// A write of one OXM TLV (header `h`, then value and, when the header says so, mask; padding after) into a
/// writable field: NXAST_REG_LOAD2, and OpenFlow 1.5's masked set_field.
pub(super) fn oxm_write(h: u32, b: &[u8], out: &mut Vec<Action>) -> Result<(), OfError> {
    let len = (h & 0xff) as usize;
    let masked = h & 0x100 != 0;
    let body = b.get(..len).ok_or((error::BAD_ACTION, error::BAD_SET_ARGUMENT))?;
    let field = field_of_header(h).filter(|f| f.writable()).ok_or((error::BAD_ACTION, error::BAD_SET_TYPE))?;
    let bytes = if masked { len / 2 } else { len };
    if usize::from(field.bits()).div_ceil(8) != bytes {
        return Err((error::BAD_ACTION, error::BAD_SET_ARGUMENT));
    }
    let value = weft_wire::openflow::be_uint(&body[..bytes]);
    let mask = if masked { weft_wire::openflow::be_uint(&body[bytes..]) } else { full_mask(bytes as u32 * 8) };
    reg_write(field, value, mask, out);
    Ok(())
}
