//! The packet `weft trace BR FLOW` sends through the pipeline.

use super::*;

/// A packet that matches `matches` (what `weft trace BR FLOW` sends through the pipeline): an Ethernet frame
/// with the addresses, VLAN, IPv4/IPv6/ARP header and TCP/UDP/ICMP header the match names (zero or a plain
/// default for what it does not). Returns the frame and the `in_port`, which the match must give.
pub fn packet_for(matches: &[Match]) -> Result<(u32, Vec<u8>), String> {
    let get = |f: Field| matches.iter().find(|m| m.field == f).map(|m| m.value);
    let in_port = get(Field::InPort).ok_or("a trace needs in_port=PORT")? as u32;
    let mac = |f: Field| ((get(f).unwrap_or(0) as u64).to_be_bytes()[2..]).to_vec();
    let mut frame = mac(Field::DlDst);
    frame.extend(mac(Field::DlSrc));
    if let Some(tci) = get(Field::VlanTci).filter(|t| t & 0x1000 != 0) {
        frame.extend_from_slice(&[0x81, 0x00]);
        frame.extend_from_slice(&((tci as u16) & 0xefff).to_be_bytes());
    }
    let dl_type = get(Field::DlType).unwrap_or(0) as u16;
    frame.extend_from_slice(&dl_type.to_be_bytes());
    let proto = get(Field::NwProto).unwrap_or(0) as u8;
    let l4 = |icmp_v6: bool| -> Vec<u8> {
        let (sp, dp) = (get(Field::TpSrc).unwrap_or(0) as u16, get(Field::TpDst).unwrap_or(0) as u16);
        match proto {
            6 => {
                let mut t = sp.to_be_bytes().to_vec();
                t.extend_from_slice(&dp.to_be_bytes());
                // A SYN unless the match says which flags.
                let f = get(Field::TcpFlags).map_or(0x002, |v| v as u16);
                t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50 | (f >> 8) as u8, f as u8, 0xff, 0xff, 0, 0, 0, 0]);
                t
            }
            17 => {
                let mut u = sp.to_be_bytes().to_vec();
                u.extend_from_slice(&dp.to_be_bytes());
                u.extend_from_slice(&[0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                u
            }
            1 | 58 => {
                let default = if icmp_v6 { 128 } else { 8 };
                let t = get(Field::IcmpType).map_or(default, |v| v as u8);
                vec![t, get(Field::IcmpCode).unwrap_or(0) as u8, 0, 0, 0, 1, 0, 1]
            }
            _ => Vec::new(),
        }
    };
    match dl_type {
        0x0800 => {
            let body = l4(false);
            let mut ip = vec![0x45, get(Field::NwTos).unwrap_or(0) as u8];
            ip.extend_from_slice(&((20 + body.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
            ip.extend_from_slice(&(get(Field::NwSrc).unwrap_or(0) as u32).to_be_bytes());
            ip.extend_from_slice(&(get(Field::NwDst).unwrap_or(0) as u32).to_be_bytes());
            frame.extend(ip);
            frame.extend(body);
        }
        0x86dd => {
            let body = l4(true);
            let tc = get(Field::NwTos).unwrap_or(0) as u8;
            frame.extend_from_slice(&[0x60 | (tc >> 4), tc << 4, 0, 0]);
            frame.extend_from_slice(&(body.len() as u16).to_be_bytes());
            frame.extend_from_slice(&[proto, 64]);
            frame.extend_from_slice(&get(Field::Ipv6Src).unwrap_or(0).to_be_bytes());
            frame.extend_from_slice(&get(Field::Ipv6Dst).unwrap_or(0).to_be_bytes());
            frame.extend(body);
        }
        0x0806 => {
            frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, get(Field::ArpOp).unwrap_or(1) as u8]);
            frame.extend(mac(Field::DlSrc));
            frame.extend_from_slice(&(get(Field::ArpSpa).unwrap_or(0) as u32).to_be_bytes());
            frame.extend_from_slice(&[0; 6]);
            frame.extend_from_slice(&(get(Field::ArpTpa).unwrap_or(0) as u32).to_be_bytes());
        }
        _ => {}
    }
    while frame.len() < 60 {
        frame.push(0);
    }
    Ok((in_port, frame))
}
