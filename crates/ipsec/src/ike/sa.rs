//! One IKE SA: its keys, and sealing, opening and authenticating its messages.

use super::*;

impl IkeSa {
    pub(super) fn new(local: IpAddr, peer: SocketAddr, initiator: bool, now: Nanos) -> IkeSa {
        IkeSa {
            remote: peer.ip(),
            local,
            peer,
            local_port: IKE_PORT,
            initiator,
            spi_i: 0,
            spi_r: 0,
            state: State::InitSent,
            keys: None,
            dh: None,
            ni: Vec::new(),
            nr: Vec::new(),
            init_req: Vec::new(),
            init_resp: Vec::new(),
            cookie: None,
            next_id: 0,
            peer_next_id: 0,
            pending: None,
            queue: VecDeque::new(),
            last_response: None,
            children: Vec::new(),
            plan: None,
            created: now,
            established: now,
            rekey_at: u64::MAX,
            last_heard: now,
            iv: 0,
            nat: false,
            peer_id: None,
        }
    }

    /// Derives the IKE SA's keys (RFC 7296 §2.14) from g^ir (and, for a rekeyed SA, the old SK_d).
    pub(super) fn derive(
        &mut self,
        prf: Prf,
        enc_bits: u16,
        group: u16,
        shared: &[u8],
        old_sk_d: Option<(&[u8], Prf)>,
    ) {
        let skeyseed = match old_sk_d {
            None => prf.prf(&[&self.ni[..], &self.nr[..]].concat(), &[shared]),
            Some((d, old_prf)) => old_prf.prf(d, &[shared, &self.ni, &self.nr]),
        };
        let enc = gcm_material_len(enc_bits);
        let pl = prf.out_len();
        let seed = [&self.ni[..], &self.nr[..], &self.spi_i.to_be_bytes(), &self.spi_r.to_be_bytes()].concat();
        let km = prf.prf_plus(&skeyseed, &seed, 3 * pl + 2 * enc);
        let (sk_d, rest) = km.split_at(pl);
        let (ei, rest) = rest.split_at(enc);
        let (er, rest) = rest.split_at(enc);
        let (pi, pr) = rest.split_at(pl);
        let (Some(ei), Some(er)) = (Gcm::new(ei), Gcm::new(er)) else { return };
        self.keys =
            Some(Keys { prf, enc_bits, group, sk_d: sk_d.to_vec(), ei, er, sk_pi: pi.to_vec(), sk_pr: pr.to_vec() });
    }

    pub(super) fn header(&self, exch: u8, msg_id: u32, response: bool) -> Header {
        let mut flags = if self.initiator { flag::INITIATOR } else { 0 };
        if response {
            flags |= flag::RESPONSE;
        }
        Header { spi_i: self.spi_i, spi_r: self.spi_r, next: 0, exchange: exch, flags, msg_id, length: 0 }
    }

    /// An encrypted message: the payloads inside an SK payload (RFC 5282 §5 for AES-GCM).
    pub(super) fn seal(&mut self, exch: u8, msg_id: u32, response: bool, payloads: &[Payload]) -> Vec<u8> {
        let mut inner = Vec::with_capacity(256);
        let first = msg::write_payloads(payloads, &mut inner);
        inner.push(0); // pad length: AES-GCM needs no padding
        let mut header = self.header(exch, msg_id, response);
        header.next = kind::SK;
        let sk_len = 4 + IV_LEN + inner.len() + ICV_LEN;
        header.length = (msg::HEADER_LEN + sk_len) as u32;
        let mut out = Vec::with_capacity(header.length as usize);
        header.write(&mut out);
        out.extend_from_slice(&[first, 0]);
        out.extend_from_slice(&(sk_len as u16).to_be_bytes());
        self.iv += 1;
        let iv = self.iv.to_be_bytes();
        out.extend_from_slice(&iv);
        let aad_len = msg::HEADER_LEN + 4;
        let Some(k) = &self.keys else { return Vec::new() };
        let key = if self.initiator { &k.ei } else { &k.er };
        let icv = key.seal(iv, &out[..aad_len], &mut inner);
        out.extend_from_slice(&inner);
        out.extend_from_slice(&icv);
        out
    }

    /// Decrypts a message's SK payload and parses what it holds.
    pub(super) fn open(&self, data: &[u8], m: &msg::Message) -> Result<Vec<Payload>, &'static str> {
        let sk = m.sk.ok_or("no encrypted payload")?;
        let k = self.keys.as_ref().ok_or("no keys yet")?;
        let key = if self.initiator { &k.er } else { &k.ei };
        if data.len() < sk.body + IV_LEN + ICV_LEN + 1 {
            return Err("encrypted payload too short");
        }
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&data[sk.body..sk.body + IV_LEN]);
        let mut body = data[sk.body + IV_LEN..].to_vec();
        let n = key.open(iv, &data[..sk.body], &mut body).map_err(|_| "integrity check failed")?;
        let pad = usize::from(*body[..n].last().ok_or("empty")?);
        if pad + 1 > n {
            return Err("bad padding");
        }
        let inner = &body[..n - 1 - pad];
        msg::parse_payloads(sk.first, inner, 0).map(|(p, _)| p).map_err(|e| e.0)
    }

    /// AUTH for one side: prf(prf(psk, "Key Pad for IKEv2"), message | peer's nonce | prf(SK_p, ID)).
    /// Why the identity the peer authenticated with is not the one this tunnel expects, if it is not. weft's
    /// policy (RFC 7296 §2.15 leaves it to the implementation): the peer names itself by an IP address, the
    /// tunnel's `remote_ip`; when NAT detection found a NAT between us, by its own private address behind the
    /// NAT (RFC 1918, RFC 6598 shared space, IPv6 unique local).
    pub(super) fn identity_problem(&self) -> Option<String> {
        let Some((kind, data)) = &self.peer_id else {
            return Some("it sent no identity".to_string());
        };
        let addr = match (*kind, id_addr(data)) {
            (msg::ID_IPV4_ADDR, Some(a @ IpAddr::V4(_))) | (msg::ID_IPV6_ADDR, Some(a @ IpAddr::V6(_))) => a,
            _ => {
                return Some(format!(
                    "its identity is of type {kind}, not an IP address (weft expects {})",
                    self.remote
                ))
            }
        };
        if addr == self.remote || (self.nat && is_private(addr)) {
            None
        } else if self.nat {
            Some(format!(
                "it names itself {addr}, neither the tunnel's remote_ip {} nor a private address behind the NAT found between us",
                self.remote
            ))
        } else {
            Some(format!("it names itself {addr}, not the tunnel's remote_ip {}", self.remote))
        }
    }

    pub(super) fn auth(&self, psk: &[u8], of_initiator: bool) -> Vec<u8> {
        let Some(k) = &self.keys else { return Vec::new() };
        let (message, nonce, sk_p) =
            if of_initiator { (&self.init_req, &self.nr, &k.sk_pi) } else { (&self.init_resp, &self.ni, &k.sk_pr) };
        let (t, data) = if of_initiator == self.initiator {
            id_payload(self.local)
        } else {
            self.peer_id.clone().unwrap_or_else(|| id_payload(self.remote))
        };
        let id_body = [&[t, 0, 0, 0][..], &data].concat();
        let maced = k.prf.prf(sk_p, &[&id_body]);
        let pad = k.prf.prf(psk, &[b"Key Pad for IKEv2"]);
        k.prf.prf(&pad, &[message, nonce, &maced])
    }

    /// Child SA keys from KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr), as (inbound, outbound). The first key is for
    /// the direction from the initiator *of the exchange that creates the child* (RFC 7296 §2.17) — after an IKE
    /// rekey by the peer, that is not necessarily this IKE SA's initiator.
    pub(super) fn child_keys(
        &self,
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
        enc_bits: u16,
        we_initiated: bool,
    ) -> (Vec<u8>, Vec<u8>) {
        let Some(k) = &self.keys else { return (Vec::new(), Vec::new()) };
        let seed = [shared.unwrap_or(&[]), ni, nr].concat();
        let len = gcm_material_len(enc_bits);
        let km = k.prf.prf_plus(&k.sk_d, &seed, 2 * len);
        let (i2r, r2i) = km.split_at(len);
        if we_initiated {
            (r2i.to_vec(), i2r.to_vec())
        } else {
            (i2r.to_vec(), r2i.to_vec())
        }
    }
}
