//! IKEv2 messages (RFC 7296 §3): the header and the payloads weft reads and writes. Parsing never panics; a
//! message that does not parse is an error the caller counts and drops.

use std::net::IpAddr;

pub const HEADER_LEN: usize = 28;
pub const VERSION: u8 = 0x20;

pub mod exchange {
    pub const IKE_SA_INIT: u8 = 34;
    pub const IKE_AUTH: u8 = 35;
    pub const CREATE_CHILD_SA: u8 = 36;
    pub const INFORMATIONAL: u8 = 37;
}

pub mod flag {
    pub const INITIATOR: u8 = 0x08;
    pub const RESPONSE: u8 = 0x20;
}

pub mod kind {
    pub const NONE: u8 = 0;
    pub const SA: u8 = 33;
    pub const KE: u8 = 34;
    pub const IDI: u8 = 35;
    pub const IDR: u8 = 36;
    pub const AUTH: u8 = 39;
    pub const NONCE: u8 = 40;
    pub const NOTIFY: u8 = 41;
    pub const DELETE: u8 = 42;
    pub const TSI: u8 = 44;
    pub const TSR: u8 = 45;
    pub const SK: u8 = 46;
}

/// Notify message types used here.
pub mod notify {
    pub const INVALID_SYNTAX: u16 = 7;
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    pub const INVALID_KE_PAYLOAD: u16 = 17;
    pub const AUTHENTICATION_FAILED: u16 = 24;
    pub const TS_UNACCEPTABLE: u16 = 38;
    pub const TEMPORARY_FAILURE: u16 = 43;
    pub const INITIAL_CONTACT: u16 = 16384;
    pub const NAT_DETECTION_SOURCE_IP: u16 = 16388;
    pub const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
    pub const COOKIE: u16 = 16390;
    pub const USE_TRANSPORT_MODE: u16 = 16391;
    pub const REKEY_SA: u16 = 16393;
    pub const ESP_TFC_PADDING_NOT_SUPPORTED: u16 = 16394;
}

/// Protocol IDs in proposals, notifications and deletes.
pub const PROTO_IKE: u8 = 1;
pub const PROTO_ESP: u8 = 3;

pub mod transform {
    pub const ENCR: u8 = 1;
    pub const PRF: u8 = 2;
    pub const INTEG: u8 = 3;
    pub const DH: u8 = 4;
    pub const ESN: u8 = 5;
    pub const ATTR_KEY_LENGTH: u16 = 14;
}

pub const AUTH_SHARED_KEY: u8 = 2;
/// Nonce lengths RFC 7296 §3.9 allows.
pub const MIN_NONCE: usize = 16;
pub const MAX_NONCE: usize = 256;
pub const ID_IPV4_ADDR: u8 = 1;
pub const ID_IPV6_ADDR: u8 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub &'static str);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub spi_i: u64,
    pub spi_r: u64,
    pub next: u8,
    pub exchange: u8,
    pub flags: u8,
    pub msg_id: u32,
    pub length: u32,
}

impl Header {
    pub fn parse(b: &[u8]) -> Result<Header> {
        if b.len() < HEADER_LEN {
            return Err(Error("shorter than an IKE header"));
        }
        let h = Header {
            spi_i: u64::from_be_bytes(b[0..8].try_into().map_err(|_| Error("header"))?),
            spi_r: u64::from_be_bytes(b[8..16].try_into().map_err(|_| Error("header"))?),
            next: b[16],
            exchange: b[18],
            flags: b[19],
            msg_id: u32::from_be_bytes([b[20], b[21], b[22], b[23]]),
            length: u32::from_be_bytes([b[24], b[25], b[26], b[27]]),
        };
        if b[17] >> 4 != 2 {
            return Err(Error("not IKE version 2"));
        }
        if h.length as usize != b.len() {
            return Err(Error("length field does not match the datagram"));
        }
        Ok(h)
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.extend_from_slice(&[self.next, VERSION, self.exchange, self.flags]);
        out.extend_from_slice(&self.msg_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }

    pub fn is_response(&self) -> bool {
        self.flags & flag::RESPONSE != 0
    }
    pub fn from_initiator(&self) -> bool {
        self.flags & flag::INITIATOR != 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transform {
    pub kind: u8,
    pub id: u16,
    pub key_len: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub num: u8,
    pub proto: u8,
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

impl Proposal {
    /// Transforms of one kind, in the order offered.
    pub fn of(&self, kind: u8) -> impl Iterator<Item = &Transform> {
        self.transforms.iter().filter(move |t| t.kind == kind)
    }
}

/// A traffic selector (RFC 7296 §3.13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ts {
    pub proto: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub start: IpAddr,
    pub end: IpAddr,
}

impl Ts {
    /// Every port of `proto` (0: every protocol) of one address.
    pub fn host(addr: IpAddr, proto: u8) -> Ts {
        Ts { proto, start_port: 0, end_port: 65535, start: addr, end: addr }
    }
    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.start.is_ipv4() && self.start <= addr && addr <= self.end
    }
}

impl std::fmt::Display for Ts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)?;
        } else {
            write!(f, "{}-{}", self.start, self.end)?;
        }
        if self.proto != 0 || self.start_port != 0 || self.end_port != 65535 {
            write!(f, "[{}", self.proto)?;
            if self.start_port == self.end_port {
                write!(f, "/{}", self.start_port)?;
            } else if self.start_port != 0 || self.end_port != 65535 {
                write!(f, "/{}-{}", self.start_port, self.end_port)?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Sa(Vec<Proposal>),
    Ke {
        group: u16,
        data: Vec<u8>,
    },
    IdI {
        kind: u8,
        data: Vec<u8>,
    },
    IdR {
        kind: u8,
        data: Vec<u8>,
    },
    Auth {
        method: u8,
        data: Vec<u8>,
    },
    Nonce(Vec<u8>),
    Notify {
        proto: u8,
        spi: Vec<u8>,
        kind: u16,
        data: Vec<u8>,
    },
    Delete {
        proto: u8,
        spis: Vec<Vec<u8>>,
    },
    TsI(Vec<Ts>),
    TsR(Vec<Ts>),
    /// Anything else (vendor IDs, certificate requests): kept only to be skipped.
    Other {
        kind: u8,
    },
}

impl Payload {
    pub fn kind(&self) -> u8 {
        match self {
            Payload::Sa(_) => kind::SA,
            Payload::Ke { .. } => kind::KE,
            Payload::IdI { .. } => kind::IDI,
            Payload::IdR { .. } => kind::IDR,
            Payload::Auth { .. } => kind::AUTH,
            Payload::Nonce(_) => kind::NONCE,
            Payload::Notify { .. } => kind::NOTIFY,
            Payload::Delete { .. } => kind::DELETE,
            Payload::TsI(_) => kind::TSI,
            Payload::TsR(_) => kind::TSR,
            Payload::Other { kind } => *kind,
        }
    }

    pub fn notify(kind: u16, data: Vec<u8>) -> Payload {
        Payload::Notify { proto: 0, spi: Vec::new(), kind, data }
    }

    fn write_body(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Sa(props) => {
                for (i, p) in props.iter().enumerate() {
                    let start = out.len();
                    let last = if i + 1 == props.len() { 0 } else { 2 };
                    out.extend_from_slice(&[last, 0, 0, 0, p.num, p.proto, p.spi.len() as u8]);
                    out.push(p.transforms.len() as u8);
                    out.extend_from_slice(&p.spi);
                    for (j, t) in p.transforms.iter().enumerate() {
                        let last = if j + 1 == p.transforms.len() { 0 } else { 3 };
                        let len: u16 = if t.key_len.is_some() { 12 } else { 8 };
                        out.extend_from_slice(&[last, 0]);
                        out.extend_from_slice(&len.to_be_bytes());
                        out.extend_from_slice(&[t.kind, 0]);
                        out.extend_from_slice(&t.id.to_be_bytes());
                        if let Some(k) = t.key_len {
                            out.extend_from_slice(&(0x8000 | transform::ATTR_KEY_LENGTH).to_be_bytes());
                            out.extend_from_slice(&k.to_be_bytes());
                        }
                    }
                    let len = (out.len() - start) as u16;
                    out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
                }
            }
            Payload::Ke { group, data } => {
                out.extend_from_slice(&group.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(data);
            }
            Payload::IdI { kind, data } | Payload::IdR { kind, data } => {
                out.extend_from_slice(&[*kind, 0, 0, 0]);
                out.extend_from_slice(data);
            }
            Payload::Auth { method, data } => {
                out.extend_from_slice(&[*method, 0, 0, 0]);
                out.extend_from_slice(data);
            }
            Payload::Nonce(n) => out.extend_from_slice(n),
            Payload::Notify { proto, spi, kind, data } => {
                out.extend_from_slice(&[*proto, spi.len() as u8]);
                out.extend_from_slice(&kind.to_be_bytes());
                out.extend_from_slice(spi);
                out.extend_from_slice(data);
            }
            Payload::Delete { proto, spis } => {
                let size = spis.first().map_or(0, Vec::len) as u8;
                out.extend_from_slice(&[*proto, size]);
                out.extend_from_slice(&(spis.len() as u16).to_be_bytes());
                for s in spis {
                    out.extend_from_slice(s);
                }
            }
            Payload::TsI(ts) | Payload::TsR(ts) => {
                out.extend_from_slice(&[ts.len() as u8, 0, 0, 0]);
                for t in ts {
                    let (kind, len) = if t.start.is_ipv4() { (7u8, 16u16) } else { (8, 40) };
                    out.extend_from_slice(&[kind, t.proto]);
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(&t.start_port.to_be_bytes());
                    out.extend_from_slice(&t.end_port.to_be_bytes());
                    for a in [t.start, t.end] {
                        match a {
                            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
                        }
                    }
                }
            }
            Payload::Other { .. } => {}
        }
    }
}

/// Writes a chain of payloads; returns the type of the first (for the header's or SK's next-payload field).
pub fn write_payloads(payloads: &[Payload], out: &mut Vec<u8>) -> u8 {
    for (i, p) in payloads.iter().enumerate() {
        let next = payloads.get(i + 1).map_or(kind::NONE, Payload::kind);
        let start = out.len();
        out.extend_from_slice(&[next, 0, 0, 0]);
        p.write_body(out);
        let len = (out.len() - start) as u16;
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }
    payloads.first().map_or(kind::NONE, Payload::kind)
}

/// A clear-text message.
pub fn encode(mut header: Header, payloads: &[Payload]) -> Vec<u8> {
    let mut body = Vec::with_capacity(512);
    header.next = write_payloads(payloads, &mut body);
    header.length = (HEADER_LEN + body.len()) as u32;
    let mut out = Vec::with_capacity(header.length as usize);
    header.write(&mut out);
    out.extend_from_slice(&body);
    out
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn parse_sa(mut b: &[u8]) -> Result<Vec<Proposal>> {
    let mut props = Vec::new();
    loop {
        if b.len() < 8 {
            return Err(Error("truncated proposal"));
        }
        let (last, len) = (b[0], usize::from(be16(b, 2)));
        if len < 8 || len > b.len() {
            return Err(Error("bad proposal length"));
        }
        let (num, proto, spi_len, count) = (b[4], b[5], usize::from(b[6]), b[7]);
        if 8 + spi_len > len {
            return Err(Error("bad proposal SPI size"));
        }
        let spi = b[8..8 + spi_len].to_vec();
        let mut t = &b[8 + spi_len..len];
        let mut transforms = Vec::new();
        for _ in 0..count {
            if t.len() < 8 {
                return Err(Error("truncated transform"));
            }
            let tlen = usize::from(be16(t, 2));
            if tlen < 8 || tlen > t.len() {
                return Err(Error("bad transform length"));
            }
            let mut key_len = None;
            let mut attrs = &t[8..tlen];
            while attrs.len() >= 4 {
                let ty = be16(attrs, 0);
                if ty & 0x8000 != 0 {
                    if ty & 0x7fff == transform::ATTR_KEY_LENGTH {
                        key_len = Some(be16(attrs, 2));
                    }
                    attrs = &attrs[4..];
                } else {
                    let alen = usize::from(be16(attrs, 2));
                    if 4 + alen > attrs.len() {
                        return Err(Error("bad transform attribute"));
                    }
                    attrs = &attrs[4 + alen..];
                }
            }
            transforms.push(Transform { kind: t[4], id: be16(t, 6), key_len });
            t = &t[tlen..];
        }
        props.push(Proposal { num, proto, spi, transforms });
        b = &b[len..];
        if last == 0 {
            return Ok(props);
        }
    }
}

fn parse_ts(b: &[u8]) -> Result<Vec<Ts>> {
    if b.len() < 4 {
        return Err(Error("truncated traffic selector payload"));
    }
    let mut out = Vec::new();
    let mut t = &b[4..];
    for _ in 0..b[0] {
        if t.len() < 8 {
            return Err(Error("truncated traffic selector"));
        }
        let len = usize::from(be16(t, 2));
        let alen = match t[0] {
            7 => 4,
            8 => 16,
            _ => return Err(Error("unknown traffic selector type")),
        };
        if len != 8 + 2 * alen || len > t.len() {
            return Err(Error("bad traffic selector length"));
        }
        let start = weft_wire::ip_from_bytes(&t[8..8 + alen]).ok_or(Error("bad address"))?;
        let end = weft_wire::ip_from_bytes(&t[8 + alen..8 + 2 * alen]).ok_or(Error("bad address"))?;
        out.push(Ts { proto: t[1], start_port: be16(t, 4), end_port: be16(t, 6), start, end });
        t = &t[len..];
    }
    Ok(out)
}

fn parse_body(kind: u8, b: &[u8]) -> Result<Payload> {
    let need = |n: usize| if b.len() < n { Err(Error("truncated payload")) } else { Ok(()) };
    Ok(match kind {
        kind::SA => Payload::Sa(parse_sa(b)?),
        kind::KE => {
            need(4)?;
            Payload::Ke { group: be16(b, 0), data: b[4..].to_vec() }
        }
        kind::IDI | kind::IDR => {
            need(4)?;
            let (k, data) = (b[0], b[4..].to_vec());
            if kind == kind::IDI {
                Payload::IdI { kind: k, data }
            } else {
                Payload::IdR { kind: k, data }
            }
        }
        kind::AUTH => {
            need(4)?;
            Payload::Auth { method: b[0], data: b[4..].to_vec() }
        }
        // RFC 7296 §3.9: nonces are 16 to 256 bytes, in every exchange.
        kind::NONCE if !(MIN_NONCE..=MAX_NONCE).contains(&b.len()) => return Err(Error("nonce of a bad length")),
        kind::NONCE => Payload::Nonce(b.to_vec()),
        kind::NOTIFY => {
            need(4)?;
            let spi_len = usize::from(b[1]);
            need(4 + spi_len)?;
            Payload::Notify {
                proto: b[0],
                spi: b[4..4 + spi_len].to_vec(),
                kind: be16(b, 2),
                data: b[4 + spi_len..].to_vec(),
            }
        }
        kind::DELETE => {
            need(4)?;
            let (size, count) = (usize::from(b[1]), usize::from(be16(b, 2)));
            // RFC 7296 §3.11: an IKE SA is deleted with SPI size 0 and no SPIs; ESP SPIs have 4 bytes (8 is
            // accepted for other protocols). The SPIs fill the body exactly, so what is built is bounded by
            // what arrived.
            match (size, count) {
                (0, 0) | (4 | 8, 1..) => {}
                (0, _) => return Err(Error("delete with SPI size 0 names SPIs")),
                _ => return Err(Error("delete with an SPI size other than 4 or 8")),
            }
            if b.len() != 4 + size * count {
                return Err(Error("delete payload length does not match its SPI count"));
            }
            let spis = b[4..].chunks_exact(size.max(1)).map(<[u8]>::to_vec).collect();
            Payload::Delete { proto: b[0], spis }
        }
        kind::TSI => Payload::TsI(parse_ts(b)?),
        kind::TSR => Payload::TsR(parse_ts(b)?),
        k => Payload::Other { kind: k },
    })
}

/// Where an SK payload is in a message: its body (IV, ciphertext, ICV) and the first inner payload's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sk {
    pub first: u8,
    /// Offset of the SK body (the associated data is everything before it).
    pub body: usize,
}

/// Most payloads one message may carry (clear and encrypted alike). Real exchanges carry at most a dozen or so
/// (IKE_AUTH with notifications); anything longer is refused before more is built.
pub const MAX_PAYLOADS: usize = 64;

/// Parses a payload chain starting with type `next`. Stops at an SK payload (which must be last).
pub fn parse_payloads(mut next: u8, mut b: &[u8], base: usize) -> Result<(Vec<Payload>, Option<Sk>)> {
    let mut out = Vec::new();
    let mut at = base;
    while next != kind::NONE {
        if out.len() == MAX_PAYLOADS {
            return Err(Error("too many payloads in one message"));
        }
        if b.len() < 4 {
            return Err(Error("truncated payload header"));
        }
        let len = usize::from(be16(b, 2));
        if len < 4 || len > b.len() {
            return Err(Error("bad payload length"));
        }
        if next == kind::SK {
            if len != b.len() {
                return Err(Error("encrypted payload is not the last"));
            }
            return Ok((out, Some(Sk { first: b[0], body: at + 4 })));
        }
        let critical = b[1] & 0x80 != 0;
        let p = parse_body(next, &b[4..len])?;
        if critical {
            if let Payload::Other { .. } = p {
                return Err(Error("unsupported critical payload"));
            }
        }
        out.push(p);
        next = b[0];
        b = &b[len..];
        at += len;
    }
    Ok((out, None))
}

/// A parsed message: header, clear payloads, and where the encrypted part is, if any.
#[derive(Debug, Clone)]
pub struct Message {
    pub header: Header,
    pub payloads: Vec<Payload>,
    pub sk: Option<Sk>,
}

pub fn parse(b: &[u8]) -> Result<Message> {
    let header = Header::parse(b)?;
    let (payloads, sk) = parse_payloads(header.next, &b[HEADER_LEN..], HEADER_LEN)?;
    Ok(Message { header, payloads, sk })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let payloads = vec![
            Payload::Sa(vec![Proposal {
                num: 1,
                proto: PROTO_ESP,
                spi: vec![1, 2, 3, 4],
                transforms: vec![
                    Transform { kind: transform::ENCR, id: 20, key_len: Some(256) },
                    Transform { kind: transform::ESN, id: 0, key_len: None },
                ],
            }]),
            Payload::Ke { group: 31, data: vec![7; 32] },
            Payload::Nonce(vec![5; 32]),
            Payload::notify(notify::USE_TRANSPORT_MODE, Vec::new()),
            Payload::TsI(vec![Ts::host("192.0.2.1".parse().unwrap(), 17)]),
            Payload::TsR(vec![Ts::host("2001:db8::2".parse().unwrap(), 0)]),
            Payload::Delete { proto: PROTO_ESP, spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]] },
            Payload::IdI { kind: ID_IPV4_ADDR, data: vec![192, 0, 2, 1] },
            Payload::Auth { method: AUTH_SHARED_KEY, data: vec![9; 32] },
        ];
        let h = Header { spi_i: 1, spi_r: 2, next: 0, exchange: exchange::IKE_AUTH, flags: 8, msg_id: 1, length: 0 };
        let bytes = encode(h, &payloads);
        let m = parse(&bytes).unwrap();
        assert_eq!(m.payloads, payloads);
        assert_eq!(m.header.msg_id, 1);
        assert!(m.sk.is_none());
        // Every truncation is an error, never a panic.
        for n in 0..bytes.len() {
            assert!(parse(&bytes[..n]).is_err());
        }
        let mut wrong = bytes.clone();
        wrong[17] = 0x10;
        assert!(parse(&wrong).is_err());
    }

    /// An IKE message of `payloads` (kind, body) behind an IKE_SA_INIT header, as an attacker may send it.
    fn crafted(payloads: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, (_, b)) in payloads.iter().enumerate() {
            let next = payloads.get(i + 1).map_or(kind::NONE, |p| p.0);
            body.extend_from_slice(&[next, 0]);
            body.extend_from_slice(&((4 + b.len()) as u16).to_be_bytes());
            body.extend_from_slice(b);
        }
        let h = Header {
            spi_i: 7,
            spi_r: 0,
            next: payloads.first().map_or(0, |p| p.0),
            exchange: exchange::IKE_SA_INIT,
            flags: flag::INITIATOR,
            msg_id: 0,
            length: (HEADER_LEN + body.len()) as u32,
        };
        let mut out = Vec::new();
        h.write(&mut out);
        out.extend_from_slice(&body);
        out
    }

    /// What parsing `bytes` holds at its peak, checked against a constant times the input's length.
    fn assert_bounded(what: &str, bytes: &[u8]) -> Result<Message> {
        let (r, peak) = weft_sys::alloc_probe::peak_during(|| parse(bytes));
        assert!(peak <= 16 * bytes.len() + 1024, "{what}: {} bytes in, {peak} bytes allocated", bytes.len());
        r
    }

    #[test]
    fn delete_payloads_cannot_allocate_more_than_they_carry() {
        // The memory bomb: SPI size 0 with count 65535, 8 bytes each, 170 of them in 1 388 bytes and about
        // 8 000 in a 64 KiB datagram. Each used to build 65 535 empty vectors (1.5 MB).
        let bomb = (kind::DELETE, vec![PROTO_ESP, 0, 0xff, 0xff]);
        for n in [170, 8000] {
            let m = crafted(&vec![bomb.clone(); n]);
            assert!(assert_bounded("delete bomb", &m).is_err());
        }
        assert!(assert_bounded("one bomb", &crafted(&[bomb])).is_err());
        // Sizes and counts must agree with the body, and size 0 only deletes an IKE SA (count 0).
        for body in [
            vec![PROTO_ESP, 4, 0, 2, 1, 2, 3, 4],
            vec![PROTO_ESP, 4, 0, 1, 1, 2, 3, 4, 5],
            vec![PROTO_ESP, 3, 0, 1, 1, 2, 3],
            vec![PROTO_IKE, 0, 0, 1],
        ] {
            assert!(parse(&crafted(&[(kind::DELETE, body.clone())])).is_err(), "{body:?}");
        }
        let ok = parse(&crafted(&[(kind::DELETE, vec![PROTO_ESP, 4, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8])])).unwrap();
        assert_eq!(
            ok.payloads,
            vec![Payload::Delete { proto: PROTO_ESP, spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]] }]
        );
        assert!(parse(&crafted(&[(kind::DELETE, vec![PROTO_IKE, 0, 0, 0])])).is_ok());
    }

    #[test]
    fn maximal_messages_allocate_at_most_a_constant_times_their_length() {
        // Each payload kind, as large and as many as a 64 KiB datagram holds.
        let spis: Vec<u8> = [PROTO_ESP, 4].into_iter().chain(16000u16.to_be_bytes()).chain(vec![9; 64000]).collect();
        let proposals: Vec<u8> = (0..8000).flat_map(|i| [if i == 7999 { 0 } else { 2 }, 0, 0, 8, 1, 3, 0, 0]).collect();
        let ts: Vec<u8> = [255, 0, 0, 0]
            .into_iter()
            .chain((0..255).flat_map(|_| [7, 0, 0, 16, 0, 0, 255, 255, 1, 2, 3, 4, 1, 2, 3, 5]))
            .collect();
        let mut transforms = vec![0, 0, 0, 0, 1, 3, 0, 255];
        for i in 0..255 {
            transforms.extend_from_slice(&[if i == 254 { 0 } else { 3 }, 0, 0, 8, 1, 0, 0, 20]);
        }
        let len = transforms.len() as u16;
        transforms[2..4].copy_from_slice(&len.to_be_bytes());
        type Payloads = Vec<(u8, Vec<u8>)>;
        let cases: Vec<(&str, Payloads)> = vec![
            ("delete with 16 000 SPIs", vec![(kind::DELETE, spis)]),
            ("8 000 proposals", vec![(kind::SA, proposals)]),
            ("64 SA payloads of 255 transforms", vec![(kind::SA, transforms); 30]),
            ("64 payloads of 255 selectors", vec![(kind::TSI, ts); 15]),
            ("64 notifications", vec![(kind::NOTIFY, vec![0, 0, 0x40, 0]); MAX_PAYLOADS]),
            ("64 vendor IDs", vec![(43, vec![1; 1000]); MAX_PAYLOADS]),
        ];
        for (what, payloads) in cases {
            let m = crafted(&payloads);
            assert!(m.len() <= 65535, "{what}: {} bytes", m.len());
            let parsed = assert_bounded(what, &m);
            assert!(parsed.is_ok(), "{what}: {parsed:?}");
        }
        // One payload more than allowed is refused before it is built.
        let many = crafted(&vec![(kind::NOTIFY, vec![0, 0, 0x40, 0]); MAX_PAYLOADS + 1]);
        assert!(assert_bounded("65 payloads", &many).is_err());
        // Nonces outside 16..=256 bytes are refused in every exchange.
        assert!(parse(&crafted(&[(kind::NONCE, vec![1; 15])])).is_err());
        assert!(parse(&crafted(&[(kind::NONCE, vec![1; 257])])).is_err());
        assert!(parse(&crafted(&[(kind::NONCE, vec![1; 16])])).is_ok());
    }

    #[test]
    fn ts_display() {
        let t = Ts { proto: 17, start_port: 4789, end_port: 4789, ..Ts::host("192.0.2.1".parse().unwrap(), 17) };
        assert_eq!(t.to_string(), "192.0.2.1[17/4789]");
        assert_eq!(Ts::host("192.0.2.1".parse().unwrap(), 0).to_string(), "192.0.2.1");
    }
}
