//! What the exchanges are made of: proposals and their choice, traffic selectors, notifications, NAT
//! detection hashes, identities, nonces.

use super::*;

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    crypto::random(&mut b);
    u64::from_be_bytes(b)
}

pub(super) fn nonce() -> Vec<u8> {
    let mut n = vec![0u8; 32];
    crypto::random(&mut n);
    n
}

pub(super) fn ip_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Addresses a host behind a NAT may have: RFC 1918, RFC 6598 (carrier-grade NAT) and IPv6 unique local.
pub(super) fn is_private(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_private() || (v.octets()[0] == 100 && v.octets()[1] & 0xc0 == 64),
        IpAddr::V6(v) => v.segments()[0] & 0xfe00 == 0xfc00,
    }
}

/// The address in an ID payload's data (ID_IPV4_ADDR or ID_IPV6_ADDR).
pub(super) fn id_addr(d: &[u8]) -> Option<IpAddr> {
    weft_wire::ip_from_bytes(d)
}

pub(super) fn id_payload(a: IpAddr) -> (u8, Vec<u8>) {
    (if a.is_ipv4() { msg::ID_IPV4_ADDR } else { msg::ID_IPV6_ADDR }, ip_bytes(a))
}

/// NAT detection hash: SHA-1(SPIi | SPIr | IP | port) (RFC 7296 §2.23).
pub(super) fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    ctx.update(&ip_bytes(addr.ip()));
    ctx.update(&addr.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
}

/// The IKE proposal weft offers: AES-GCM-16 256 then 128, PRF HMAC-SHA2 256/384/512, the groups in order.
pub(super) fn ike_proposal(groups: &[u16], spi: Vec<u8>) -> Proposal {
    let mut t = vec![
        Transform { kind: transform::ENCR, id: id::ENCR_AES_GCM_16, key_len: Some(256) },
        Transform { kind: transform::ENCR, id: id::ENCR_AES_GCM_16, key_len: Some(128) },
        Transform { kind: transform::PRF, id: id::PRF_HMAC_SHA2_256, key_len: None },
        Transform { kind: transform::PRF, id: id::PRF_HMAC_SHA2_384, key_len: None },
        Transform { kind: transform::PRF, id: id::PRF_HMAC_SHA2_512, key_len: None },
    ];
    t.extend(groups.iter().map(|&g| Transform { kind: transform::DH, id: g, key_len: None }));
    Proposal { num: 1, proto: PROTO_IKE, spi, transforms: t }
}

/// The ESP proposal: AES-GCM-16 256 then 128, no ESN, and a group when the exchange carries a KE (PFS).
pub(super) fn esp_proposal(spi: u32, group: Option<u16>) -> Proposal {
    let mut t = vec![
        Transform { kind: transform::ENCR, id: id::ENCR_AES_GCM_16, key_len: Some(256) },
        Transform { kind: transform::ENCR, id: id::ENCR_AES_GCM_16, key_len: Some(128) },
    ];
    if let Some(g) = group {
        t.push(Transform { kind: transform::DH, id: g, key_len: None });
    }
    t.push(Transform { kind: transform::ESN, id: id::ESN_NONE, key_len: None });
    Proposal { num: 1, proto: PROTO_ESP, spi: spi.to_be_bytes().to_vec(), transforms: t }
}

/// What a responder picked from a proposal.
#[derive(Debug, Clone, Copy)]
pub(super) struct Choice {
    pub(super) num: u8,
    pub(super) enc_bits: u16,
    pub(super) prf: Option<Prf>,
    pub(super) group: Option<u16>,
}

/// Picks the first offered proposal of `proto` whose every transform type has an entry weft supports.
/// `want_dh`: the group to prefer (the KE payload's) when the proposal lists several.
pub(super) fn choose(props: &[Proposal], proto: u8, want_dh: Option<u16>) -> Option<(Choice, &Proposal)> {
    for p in props.iter().filter(|p| p.proto == proto) {
        let enc = p
            .of(transform::ENCR)
            .find(|t| t.id == id::ENCR_AES_GCM_16 && matches!(t.key_len, Some(128 | 256)))
            .and_then(|t| t.key_len);
        let Some(enc_bits) = enc else { continue };
        if p.of(transform::INTEG).any(|t| t.id != 0) && p.of(transform::INTEG).all(|t| t.id != 0) {
            // AEAD proposals carry no integrity algorithm (or NONE).
            continue;
        }
        let prf = p.of(transform::PRF).find_map(|t| Prf::from_id(t.id));
        if proto == PROTO_IKE && prf.is_none() {
            continue;
        }
        let groups: Vec<u16> = p.of(transform::DH).map(|t| t.id).collect();
        let group = if groups.is_empty() {
            None
        } else if let Some(g) = want_dh.filter(|g| groups.contains(g)) {
            Some(g)
        } else if let Some(&g) = groups.iter().find(|g| crypto::group_supported(**g)) {
            Some(g)
        } else if groups.contains(&0) {
            None
        } else {
            continue;
        };
        if proto == PROTO_IKE && group.is_none() {
            continue;
        }
        if p.of(transform::ESN).next().is_some() && !p.of(transform::ESN).any(|t| t.id == id::ESN_NONE) {
            continue;
        }
        return Some((Choice { num: p.num, enc_bits, prf, group }, p));
    }
    None
}

/// The proposal a responder answers with: the chosen transforms only.
pub(super) fn chosen_proposal(c: Choice, proto: u8, spi: Vec<u8>, had_esn: bool) -> Proposal {
    let mut t = vec![Transform { kind: transform::ENCR, id: id::ENCR_AES_GCM_16, key_len: Some(c.enc_bits) }];
    if let Some(p) = c.prf {
        if proto == PROTO_IKE {
            t.push(Transform { kind: transform::PRF, id: p.id(), key_len: None });
        }
    }
    if let Some(g) = c.group {
        t.push(Transform { kind: transform::DH, id: g, key_len: None });
    }
    if had_esn {
        t.push(Transform { kind: transform::ESN, id: id::ESN_NONE, key_len: None });
    }
    Proposal { num: c.num, proto, spi, transforms: t }
}

/// Narrows the peer's traffic selectors to the one address we allow on that side (any port, the configured
/// protocol or what the peer narrowed it to).
/// `addrs`: the side's address as we see it, and (behind a NAT) the one it has itself; the first one a selector
/// covers is kept.
pub(super) fn narrow(offered: &[Ts], addrs: &[IpAddr], proto: u8) -> Option<Vec<Ts>> {
    let (t, addr) = offered.iter().find_map(|t| {
        let a = addrs.iter().copied().find(|a| t.contains(*a))?;
        (proto == 0 || t.proto == 0 || t.proto == proto).then_some((t, a))
    })?;
    let p = if t.proto != 0 { t.proto } else { proto };
    let ports = if p == 0 { (0, 65535) } else { (t.start_port, t.end_port) };
    Some(vec![Ts { proto: p, start_port: ports.0, end_port: ports.1, start: addr, end: addr }])
}

pub(super) fn find_notify(payloads: &[Payload], want: u16) -> Option<&Payload> {
    payloads.iter().find(|p| matches!(p, Payload::Notify { kind, .. } if *kind == want))
}

pub(super) fn notify_data(payloads: &[Payload], want: u16) -> Option<&[u8]> {
    match find_notify(payloads, want)? {
        Payload::Notify { data, .. } => Some(data),
        _ => None,
    }
}

/// The first error notification (types below 16384) in a response.
pub(super) fn error_notify(payloads: &[Payload]) -> Option<u16> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify { kind, .. } if *kind < 16384 => Some(*kind),
        _ => None,
    })
}

pub(super) fn notify_name(k: u16) -> String {
    match k {
        notify::INVALID_SYNTAX => "INVALID_SYNTAX".into(),
        notify::NO_PROPOSAL_CHOSEN => "NO_PROPOSAL_CHOSEN".into(),
        notify::INVALID_KE_PAYLOAD => "INVALID_KE_PAYLOAD".into(),
        notify::AUTHENTICATION_FAILED => "AUTHENTICATION_FAILED".into(),
        notify::TS_UNACCEPTABLE => "TS_UNACCEPTABLE".into(),
        notify::TEMPORARY_FAILURE => "TEMPORARY_FAILURE".into(),
        k => format!("notify {k}"),
    }
}

/// Equality that takes as long for every mismatch (AUTH values are secrets' MACs).
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The two NAT detection notifications. `force`: send a source hash that cannot match, so that both ends
/// see a NAT and encapsulate ESP in UDP (what strongSwan does with `encap = yes`).
pub(super) fn nat_payloads(spi_i: u64, spi_r: u64, local: SocketAddr, remote: SocketAddr, force: bool) -> Vec<Payload> {
    let src = if force {
        let mut r = vec![0u8; 20];
        crypto::random(&mut r);
        r
    } else {
        nat_hash(spi_i, spi_r, local)
    };
    vec![
        Payload::notify(notify::NAT_DETECTION_SOURCE_IP, src),
        Payload::notify(notify::NAT_DETECTION_DESTINATION_IP, nat_hash(spi_i, spi_r, remote)),
    ]
}

/// A lifetime less up to 10% (so both ends do not rekey at the same moment).
pub(super) fn jitter(t: Nanos) -> Nanos {
    let mut b = [0u8; 2];
    crypto::random(&mut b);
    t - (t / 10) * u64::from(u16::from_be_bytes(b)) / 65536
}
