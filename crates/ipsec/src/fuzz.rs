//! Entry points for the cargo-fuzz target `ike` in `fuzz/` and its corpus-replay test: everything that reads
//! bytes from the network before (or without) a key proves them genuine.

use crate::ike::{Engine, Output, PeerConfig, IKE_PORT, NAT_T_PORT};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// One input: parsed as an IKE message, as a payload chain (what an SK payload decrypts to), handed to a
/// responder engine on both ports (it may answer, never panic), and opened as an ESP packet.
pub fn ike_input(data: &[u8]) {
    let _ = crate::msg::parse(data);
    if let Some((&first, rest)) = data.split_first() {
        let _ = crate::msg::parse_payloads(first, rest, 0);
    }
    let mut e = Engine::new();
    e.set_peers(vec![PeerConfig::new(LOCAL, PEER, b"fuzz")], 0);
    for port in [IKE_PORT, NAT_T_PORT] {
        e.input(0, port, SocketAddr::new(PEER, 500), data);
    }
    e.tick(crate::ike::SECOND);
    while e.poll().is_some() {}
    if let Some(g) = crate::crypto::Gcm::new(&[7u8; 20]) {
        let mut inb = crate::esp::Inbound::new(1, g);
        let mut buf = data.to_vec();
        let _ = inb.open(&mut buf);
    }
}

/// Real messages of a whole exchange between two engines (IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA,
/// INFORMATIONAL): the seeds of the corpus.
pub fn seed_messages() -> Vec<Vec<u8>> {
    let mut a = Engine::new();
    let mut b = Engine::new();
    a.set_peers(vec![PeerConfig::new(PEER, LOCAL, b"k")], 0);
    b.set_peers(vec![PeerConfig::new(LOCAL, PEER, b"k")], 0);
    let mut seen = Vec::new();
    a.tick(0);
    for round in 0..20 {
        if round == 6 {
            a.rekey(LOCAL, false, 0);
        }
        if round == 12 {
            b.rekey(PEER, true, 0);
        }
        let mut moved = false;
        while let Some(o) = a.poll() {
            if let Output::Send { from_port, to, data } = o {
                b.input(0, to.port(), SocketAddr::new(PEER, from_port), &data);
                seen.push(data);
                moved = true;
            }
        }
        while let Some(o) = b.poll() {
            if let Output::Send { from_port, to, data } = o {
                a.input(0, to.port(), SocketAddr::new(LOCAL, from_port), &data);
                seen.push(data);
                moved = true;
            }
        }
        if !moved && round > 12 {
            break;
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_cover_every_exchange() {
        let seeds = super::seed_messages();
        let kinds: std::collections::BTreeSet<u8> = seeds.iter().map(|m| m[18]).collect();
        assert_eq!(kinds.into_iter().collect::<Vec<_>>(), vec![34, 35, 36, 37]);
        for s in &seeds {
            super::ike_input(s);
        }
    }

    /// The committed corpus holds messages of every exchange (its seeds came from `seed_messages()`, written
    /// as files `seed-NN`; libFuzzer added the rest).
    #[test]
    fn corpus_covers_every_exchange() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/ike");
        let mut kinds = std::collections::BTreeSet::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            if let Ok(m) = crate::msg::parse(&data) {
                kinds.insert(m.header.exchange);
            }
        }
        assert!([34u8, 35, 36, 37].iter().all(|k| kinds.contains(k)), "{kinds:?}");
    }
}
