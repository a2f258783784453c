//! The exchanges as the engine answers and completes them: IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA and
//! INFORMATIONAL, as responder (requests) and as initiator (responses).

use super::*;

impl Engine {
    /// The payloads of an encrypted message for IKE SA `i`; a message that does not decrypt is counted and
    /// logged (at debug level: anyone can send one) as a dropped `what`.
    fn open_counted(
        &mut self,
        i: usize,
        data: &[u8],
        m: &msg::Message,
        from: SocketAddr,
        what: &str,
    ) -> Option<Vec<Payload>> {
        match self.sas[i].open(data, m) {
            Ok(p) => Some(p),
            Err(why) => {
                self.stats.decrypt_failed += 1;
                tracing::debug!(peer = %from, "IKE {what} dropped: {why}");
                None
            }
        }
    }

    pub(super) fn respond_init(
        &mut self,
        now: Nanos,
        local_port: u16,
        from: SocketAddr,
        data: &[u8],
        m: &msg::Message,
    ) {
        let h = m.header;
        // A retransmitted request: answer again with the same response.
        if let Some(sa) = self.sas.iter().find(|s| s.spi_i == h.spi_i && !s.initiator && s.peer == from) {
            let (resp, port) = (sa.init_resp.clone(), sa.local_port);
            self.send(port, from, resp);
            return;
        }
        let Some(cfg) = self.peers.get(&from.ip()).cloned() else {
            self.stats.unknown_peer += 1;
            // Anyone can send these: one line per LOG_INTERVAL at most, with how many were not logged.
            if now.saturating_sub(self.unknown_logged_at) >= LOG_INTERVAL || self.unknown_logged_at == 0 {
                tracing::info!(
                    peer = %from,
                    suppressed = self.unknown_suppressed,
                    "IKE_SA_INIT from an address with no tunnel using ipsec; ignored"
                );
                self.unknown_logged_at = now.max(1);
                self.unknown_suppressed = 0;
            } else {
                self.unknown_suppressed += 1;
            }
            return;
        };
        let Some(ni) = m.payloads.iter().find_map(|p| if let Payload::Nonce(n) = p { Some(n) } else { None }) else {
            self.stats.malformed += 1;
            return;
        };
        if ni.len() < 16 || ni.len() > 256 {
            self.stats.malformed += 1;
            return;
        }
        let half_open = self.sas.iter().filter(|s| s.state == State::HalfOpen).count();
        // Every SA with this source that is not established (half open, being authenticated, refused and
        // closing) counts against its share, so a spoofed source cannot pile up SAs in any state.
        let from_source = self.sas.iter().filter(|s| s.state != State::Established && s.peer.ip() == from.ip()).count();
        if half_open >= HALF_OPEN_MAX || from_source >= HALF_OPEN_PER_SOURCE {
            self.stats.half_open_dropped += 1;
            return;
        }
        if half_open >= COOKIE_THRESHOLD {
            let want = self.cookie_for(from, h.spi_i, ni);
            if notify_data(&m.payloads, notify::COOKIE) != Some(&want[..]) {
                self.stats.cookies_sent += 1;
                let resp_h = Header { flags: flag::RESPONSE, ..h };
                let data = msg::encode(resp_h, &[Payload::notify(notify::COOKIE, want)]);
                self.send(local_port, from, data);
                return;
            }
        }
        let Some(Payload::Sa(props)) = m.payloads.iter().find(|p| p.kind() == kind::SA) else {
            self.stats.malformed += 1;
            return;
        };
        let Some((ke_group, ke_data)) =
            m.payloads
                .iter()
                .find_map(|p| if let Payload::Ke { group, data } = p { Some((*group, data)) } else { None })
        else {
            self.stats.malformed += 1;
            return;
        };
        let reject = |engine: &mut Engine, n: Payload| {
            let resp_h = Header { flags: flag::RESPONSE, ..h };
            let data = msg::encode(resp_h, &[n]);
            engine.send(local_port, from, data);
        };
        // Our preference among the groups offered: the KE's if we like it, else our first that is offered.
        let offered: Vec<u16> = props.iter().flat_map(|p| p.of(transform::DH).map(|t| t.id)).collect();
        let want = if cfg.groups.contains(&ke_group) && offered.contains(&ke_group) {
            Some(ke_group)
        } else {
            cfg.groups.iter().copied().find(|g| offered.contains(g))
        };
        let Some((choice, _)) = choose(props, PROTO_IKE, want) else {
            self.stats.no_proposal += 1;
            tracing::warn!(peer = %from, "IKE_SA_INIT: no acceptable proposal (weft offers AES-GCM-16 with HMAC-SHA2 PRFs and x25519, ECP-256 or MODP-2048)");
            reject(self, Payload::notify(notify::NO_PROPOSAL_CHOSEN, Vec::new()));
            return;
        };
        let group = choice.group.unwrap_or(id::DH_X25519);
        if group != ke_group {
            reject(self, Payload::notify(notify::INVALID_KE_PAYLOAD, group.to_be_bytes().to_vec()));
            return;
        }
        let Some(dh) = Dh::new(group) else { return };
        let public = dh.public().to_vec();
        let Some(shared) = dh.agree(ke_data) else {
            self.stats.malformed += 1;
            return;
        };
        let mut sa = IkeSa::new(cfg.local, from, false, now);
        sa.local_port = local_port;
        sa.spi_i = h.spi_i;
        sa.spi_r = rand_u64() | 1;
        sa.ni = ni.clone();
        sa.nr = nonce();
        sa.state = State::HalfOpen;
        sa.init_req = data.to_vec();
        sa.peer_next_id = 1;
        // NAT detection: the initiator's source hash against the address it came from.
        let src_ok = m.payloads.iter().any(|p| matches!(p, Payload::Notify { kind: notify::NAT_DETECTION_SOURCE_IP, data, .. } if *data == nat_hash(h.spi_i, 0, from)));
        let dst_ok = m.payloads.iter().any(|p| matches!(p, Payload::Notify { kind: notify::NAT_DETECTION_DESTINATION_IP, data, .. } if *data == nat_hash(h.spi_i, 0, SocketAddr::new(cfg.local, local_port))));
        let has_nat_d = find_notify(&m.payloads, notify::NAT_DETECTION_SOURCE_IP).is_some();
        sa.nat = local_port == NAT_T_PORT || cfg.encap == Encap::Udp || (has_nat_d && !(src_ok && dst_ok));
        let prf = choice.prf.unwrap_or(Prf::Sha256);
        let mut p = vec![
            Payload::Sa(vec![chosen_proposal(choice, PROTO_IKE, Vec::new(), false)]),
            Payload::Ke { group, data: public },
            Payload::Nonce(sa.nr.clone()),
        ];
        if has_nat_d {
            p.extend(nat_payloads(
                h.spi_i,
                sa.spi_r,
                SocketAddr::new(cfg.local, local_port),
                from,
                cfg.encap == Encap::Udp,
            ));
        }
        let resp = msg::encode(sa.header(exchange::IKE_SA_INIT, 0, true), &p);
        sa.init_resp = resp.clone();
        sa.derive(prf, choice.enc_bits, group, &shared, None);
        self.sas.push(sa);
        self.send(local_port, from, resp);
    }

    pub(super) fn incoming_request(
        &mut self,
        i: usize,
        now: Nanos,
        local_port: u16,
        from: SocketAddr,
        data: &[u8],
        m: &msg::Message,
    ) {
        let h = m.header;
        // A request we answered already (our response was lost): send the same response again.
        if let Some((id, resp, port)) = &self.sas[i].last_response {
            if *id == h.msg_id {
                let (resp, port) = (resp.clone(), *port);
                self.send(port, from, resp);
                return;
            }
        }
        if h.msg_id != self.sas[i].peer_next_id {
            self.stats.malformed += 1;
            return;
        }
        let Some(payloads) = self.open_counted(i, data, m, from, "request") else { return };
        // A NAT may change the peer's port: answer where the request came from (RFC 7296 §2.23).
        let sa = &mut self.sas[i];
        sa.last_heard = now;
        sa.peer_next_id += 1;
        sa.peer = from;
        sa.local_port = local_port;
        let response = match h.exchange {
            exchange::IKE_AUTH if sa.state == State::HalfOpen => self.auth_request(i, now, &payloads),
            exchange::CREATE_CHILD_SA if self.sas[i].state == State::Established => {
                self.create_child_request(i, now, &payloads)
            }
            exchange::INFORMATIONAL => self.informational_request(i, now, &payloads),
            _ => vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())],
        };
        // Handling the request may have removed other SAs (INITIAL_CONTACT) or added one (an IKE rekey):
        // find this one again.
        let Some(i) = self.sas.iter().position(|s| s.spi_i == h.spi_i && s.spi_r == h.spi_r) else { return };
        let sa = &mut self.sas[i];
        let resp = sa.seal(h.exchange, h.msg_id, true, &response);
        sa.last_response = Some((h.msg_id, resp.clone(), local_port));
        self.send(local_port, from, resp);
        if self.sas[i].state == State::Closing && self.sas[i].pending.is_none() && h.exchange == exchange::INFORMATIONAL
        {
            // The peer deleted this IKE SA.
            let sa = self.sas.remove(i);
            self.drop_children_unless_moved(&sa);
        }
    }

    pub(super) fn drop_children_unless_moved(&mut self, sa: &IkeSa) {
        let moved: Vec<u32> = self.sas.iter().flat_map(|s| s.children.iter().map(|c| c.keys.spi_in)).collect();
        for c in sa.children.iter().filter(|c| !moved.contains(&c.keys.spi_in)) {
            self.spis.remove(&c.keys.spi_in);
            self.out.push_back(Output::Remove { remote: sa.remote, spi_in: c.keys.spi_in, spi_out: c.keys.spi_out });
        }
    }

    /// Responder: IKE_AUTH with the first child SA.
    pub(super) fn auth_request(&mut self, i: usize, now: Nanos, p: &[Payload]) -> Vec<Payload> {
        let remote = self.sas[i].remote;
        let Some(cfg) = self.peers.get(&remote).cloned() else {
            return vec![Payload::notify(notify::AUTHENTICATION_FAILED, Vec::new())];
        };
        let auth =
            p.iter().find_map(|x| if let Payload::Auth { method, data } = x { Some((*method, data)) } else { None });
        self.sas[i].peer_id =
            p.iter().find_map(|x| if let Payload::IdI { kind, data } = x { Some((*kind, data.clone())) } else { None });
        let want = self.sas[i].auth(&cfg.psk, true);
        let ok = matches!(auth, Some((msg::AUTH_SHARED_KEY, d)) if ct_eq(d, &want));
        let identity = self.sas[i].identity_problem();
        if !ok || identity.is_some() {
            self.stats.auth_failed += 1;
            match identity.filter(|_| ok) {
                Some(why) => tracing::warn!(peer = %remote, "IKE_AUTH from {remote} refused: {why}; no SA"),
                None => {
                    tracing::warn!(peer = %remote, "IKE_AUTH from {remote} failed: its pre-shared key (options:psk) differs from ours; no SA")
                }
            }
            self.sas[i].state = State::Closing;
            self.sas[i].last_heard = now;
            return vec![Payload::notify(notify::AUTHENTICATION_FAILED, Vec::new())];
        }
        let sa = &mut self.sas[i];
        sa.state = State::Established;
        sa.established = now;
        sa.rekey_at = now + jitter(cfg.ike_lifetime);
        self.stats.ike_sa_established += 1;
        tracing::info!(peer = %remote, "IKE SA established (responder)");
        if find_notify(p, notify::INITIAL_CONTACT).is_some() {
            // The peer started afresh: the SAs we still hold with it are dead; forget them without a word.
            let (spi_i, spi_r) = (self.sas[i].spi_i, self.sas[i].spi_r);
            let stale: Vec<usize> = (0..self.sas.len())
                .filter(|&k| self.sas[k].remote == remote && (self.sas[k].spi_i, self.sas[k].spi_r) != (spi_i, spi_r))
                .collect();
            for k in stale.into_iter().rev() {
                let old = self.sas.remove(k);
                self.drop_children(&old);
            }
            let Some(n) = self.sas.iter().position(|s| (s.spi_i, s.spi_r) == (spi_i, spi_r)) else {
                return Vec::new();
            };
            return self.auth_reply(n, now, p, &cfg);
        }
        self.auth_reply(i, now, p, &cfg)
    }

    /// The responder's IKE_AUTH answer: IDr, AUTH and the first child SA.
    pub(super) fn auth_reply(&mut self, i: usize, now: Nanos, p: &[Payload], cfg: &PeerConfig) -> Vec<Payload> {
        let (t, d) = id_payload(cfg.local);
        let mut out = vec![
            Payload::IdR { kind: t, data: d },
            Payload::Auth { method: msg::AUTH_SHARED_KEY, data: self.sas[i].auth(&cfg.psk, false) },
        ];
        let (ni, nr) = (self.sas[i].ni.clone(), self.sas[i].nr.clone());
        out.extend(self.accept_child(i, now, p, cfg, &ni, &nr, None, true));
        out
    }

    /// Responder: picks an ESP proposal and traffic selectors from a request, installs the child SA and
    /// returns the response payloads for it (or an error notification).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn accept_child(
        &mut self,
        i: usize,
        now: Nanos,
        p: &[Payload],
        cfg: &PeerConfig,
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
        send_now: bool,
    ) -> Vec<Payload> {
        let (sa_local, sa_remote) = (self.sas[i].local, self.sas[i].remote);
        // Behind a NAT the peer names its own (private) address in its selectors and ID.
        let mut peer_addrs = vec![sa_remote];
        peer_addrs.extend(self.sas[i].peer_id.as_ref().and_then(|(_, d)| id_addr(d)));
        let Some(Payload::Sa(props)) = p.iter().find(|x| x.kind() == kind::SA) else {
            return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
        };
        let ke_group = p.iter().find_map(|x| if let Payload::Ke { group, .. } = x { Some(*group) } else { None });
        let Some((choice, prop)) = choose(props, PROTO_ESP, ke_group) else {
            self.stats.no_proposal += 1;
            tracing::warn!(peer = %sa_remote, "child SA: no acceptable ESP proposal (weft offers AES-GCM-16 128/256)");
            return vec![Payload::notify(notify::NO_PROPOSAL_CHOSEN, Vec::new())];
        };
        if choice.group.is_some() && choice.group != ke_group {
            return vec![Payload::notify(notify::INVALID_KE_PAYLOAD, choice.group.unwrap_or(0).to_be_bytes().to_vec())];
        }
        let Ok(spi_bytes) = <[u8; 4]>::try_from(&prop.spi[..]) else {
            return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
        };
        let spi_out = u32::from_be_bytes(spi_bytes);
        let tsi = p.iter().find_map(|x| if let Payload::TsI(t) = x { Some(t) } else { None });
        let tsr = p.iter().find_map(|x| if let Payload::TsR(t) = x { Some(t) } else { None });
        let (Some(tsi), Some(tsr)) = (tsi, tsr) else {
            return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
        };
        let (Some(ts_remote), Some(ts_local)) =
            (narrow(tsi, &peer_addrs, cfg.proto), narrow(tsr, &[sa_local], cfg.proto))
        else {
            tracing::warn!(peer = %sa_remote, "child SA: the peer's traffic selectors do not cover the tunnel endpoints");
            return vec![Payload::notify(notify::TS_UNACCEPTABLE, Vec::new())];
        };
        let transport = find_notify(p, notify::USE_TRANSPORT_MODE).is_some();
        let spi_in = self.new_spi();
        let (key_in, key_out) = self.sas[i].child_keys(ni, nr, shared, choice.enc_bits, false);
        let sa = &self.sas[i];
        let keys = ChildKeys {
            local: sa.local,
            remote: sa.remote,
            spi_in,
            spi_out,
            key_in,
            key_out,
            mode: if transport { Mode::Transport } else { Mode::Tunnel },
            udp: sa.nat,
            peer_port: if sa.nat { sa.peer.port() } else { 0 },
            peer_inner: ts_remote[0].start,
            send: send_now,
        };
        let had_esn = prop.of(transform::ESN).next().is_some();
        let mut out = Vec::new();
        out.push(Payload::Sa(vec![chosen_proposal(choice, PROTO_ESP, spi_in.to_be_bytes().to_vec(), had_esn)]));
        out.push(Payload::TsI(ts_remote.clone()));
        out.push(Payload::TsR(ts_local.clone()));
        if transport {
            out.push(Payload::notify(notify::USE_TRANSPORT_MODE, Vec::new()));
        }
        self.add_child(i, now, keys, choice.enc_bits, ts_local, ts_remote, cfg);
        out
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_child(
        &mut self,
        i: usize,
        now: Nanos,
        keys: ChildKeys,
        enc_bits: u16,
        ts_local: Vec<Ts>,
        ts_remote: Vec<Ts>,
        cfg: &PeerConfig,
    ) {
        self.stats.child_sa_established += 1;
        tracing::info!(
            peer = %keys.remote,
            spi_in = format_args!("{:08x}", keys.spi_in),
            spi_out = format_args!("{:08x}", keys.spi_out),
            "child SA established ({} mode, {})",
            if keys.mode == Mode::Transport { "transport" } else { "tunnel" },
            if keys.udp { "ESP in UDP" } else { "ESP" }
        );
        self.out.push_back(Output::Install(keys.clone()));
        self.sas[i].children.push(Child {
            keys,
            created: now,
            rekey_at: now + jitter(cfg.child_lifetime),
            replaced: false,
            enc_bits,
            ts_local,
            ts_remote,
        });
    }

    pub(super) fn create_child_request(&mut self, i: usize, now: Nanos, p: &[Payload]) -> Vec<Payload> {
        let remote = self.sas[i].remote;
        let Some(cfg) = self.peers.get(&remote).cloned() else {
            return vec![Payload::notify(notify::NO_PROPOSAL_CHOSEN, Vec::new())];
        };
        let Some(Payload::Sa(props)) = p.iter().find(|x| x.kind() == kind::SA) else {
            return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
        };
        let Some(ni) = p.iter().find_map(|x| if let Payload::Nonce(n) = x { Some(n.clone()) } else { None }) else {
            return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
        };
        let ke =
            p.iter()
                .find_map(|x| if let Payload::Ke { group, data } = x { Some((*group, data.clone())) } else { None });
        let nr = nonce();
        if props.iter().any(|x| x.proto == PROTO_IKE) {
            // Rekeying the IKE SA.
            let Some((choice, prop)) = choose(props, PROTO_IKE, ke.as_ref().map(|k| k.0)) else {
                return vec![Payload::notify(notify::NO_PROPOSAL_CHOSEN, Vec::new())];
            };
            let (Some(group), Some((kg, kd))) = (choice.group, ke) else {
                return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
            };
            if group != kg {
                return vec![Payload::notify(notify::INVALID_KE_PAYLOAD, group.to_be_bytes().to_vec())];
            }
            let Ok(spi) = <[u8; 8]>::try_from(&prop.spi[..]) else {
                return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
            };
            let Some(dh) = Dh::new(group) else { return Vec::new() };
            let public = dh.public().to_vec();
            let Some(shared) = dh.agree(&kd) else {
                return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
            };
            let new_spi = rand_u64() | 1;
            let old = &self.sas[i];
            let mut sa = IkeSa::new(old.local, old.peer, false, now);
            sa.local_port = old.local_port;
            sa.nat = old.nat;
            sa.spi_i = u64::from_be_bytes(spi);
            sa.spi_r = new_spi;
            sa.ni = ni;
            sa.nr = nr.clone();
            sa.state = State::Established;
            sa.rekey_at = now + jitter(cfg.ike_lifetime);
            let Some(k) = &old.keys else { return Vec::new() };
            let (d, oprf) = (k.sk_d.clone(), k.prf);
            sa.derive(choice.prf.unwrap_or(oprf), choice.enc_bits, group, &shared, Some((&d, oprf)));
            sa.children = std::mem::take(&mut self.sas[i].children);
            self.sas[i].state = State::Closing;
            self.sas.push(sa);
            self.stats.rekeys += 1;
            tracing::info!(peer = %remote, "IKE SA rekeyed (responder)");
            return vec![
                Payload::Sa(vec![chosen_proposal(choice, PROTO_IKE, new_spi.to_be_bytes().to_vec(), false)]),
                Payload::Nonce(nr),
                Payload::Ke { group, data: public },
            ];
        }
        // A child SA, new or rekeying one.
        let rekey_of = p.iter().find_map(|x| match x {
            Payload::Notify { kind: notify::REKEY_SA, spi, .. } => {
                <[u8; 4]>::try_from(&spi[..]).ok().map(u32::from_be_bytes)
            }
            _ => None,
        });
        let mut shared = None;
        let mut ke_out = None;
        if let Some((g, d)) = &ke {
            let Some(dh) = Dh::new(*g) else {
                let pref = cfg.groups.first().copied().unwrap_or(id::DH_X25519);
                return vec![Payload::notify(notify::INVALID_KE_PAYLOAD, pref.to_be_bytes().to_vec())];
            };
            ke_out = Some(Payload::Ke { group: *g, data: dh.public().to_vec() });
            #[cfg(test)]
            if self.test_answer_without_ke {
                ke_out = None;
            }
            shared = dh.agree(d);
            if shared.is_none() {
                return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
            }
        }
        // The rekeyed child keeps sending until the peer deletes the old SA: the peer has the new inbound
        // SA only once it reads our response.
        let mut out = self.accept_child(i, now, p, &cfg, &ni, &nr, shared.as_deref(), rekey_of.is_none());
        if let Some(old_out) = rekey_of {
            if let Some(c) = self.sas[i].children.iter_mut().find(|c| c.keys.spi_out == old_out) {
                c.replaced = true;
            }
            self.stats.rekeys += 1;
        }
        let at = out.iter().position(|x| x.kind() == kind::SA).map_or(0, |k| k + 1);
        out.insert(at, Payload::Nonce(nr));
        if let Some(k) = ke_out {
            out.insert(at + 1, k);
        }
        out
    }

    pub(super) fn informational_request(&mut self, i: usize, _now: Nanos, p: &[Payload]) -> Vec<Payload> {
        let mut out = Vec::new();
        for x in p {
            match x {
                Payload::Delete { proto: PROTO_IKE, .. } => {
                    self.sas[i].state = State::Closing;
                    tracing::info!(peer = %self.sas[i].remote, "the peer deleted the IKE SA");
                }
                Payload::Delete { proto: PROTO_ESP, spis } => {
                    let mut ours = Vec::new();
                    for s in spis {
                        let Ok(b) = <[u8; 4]>::try_from(&s[..]) else { continue };
                        let out_spi = u32::from_be_bytes(b);
                        let sa = &mut self.sas[i];
                        if let Some(k) = sa.children.iter().position(|c| c.keys.spi_out == out_spi) {
                            let c = sa.children.remove(k);
                            ours.push(c.keys.spi_in.to_be_bytes().to_vec());
                            self.spis.remove(&c.keys.spi_in);
                            self.out.push_back(Output::Remove {
                                remote: c.keys.remote,
                                spi_in: c.keys.spi_in,
                                spi_out: c.keys.spi_out,
                            });
                            // The replacement may send now.
                            if let Some(n) = self.sas[i].children.iter_mut().rev().find(|c| !c.keys.send) {
                                n.keys.send = true;
                                self.out.push_back(Output::Activate { remote: n.keys.remote, spi_out: n.keys.spi_out });
                            }
                        }
                    }
                    if !ours.is_empty() {
                        out.push(Payload::Delete { proto: PROTO_ESP, spis: ours });
                    }
                }
                _ => {}
            }
        }
        out
    }

    pub(super) fn response(&mut self, i: usize, now: Nanos, from: SocketAddr, data: &[u8], m: &msg::Message) {
        let h = m.header;
        let Some(pending) = &self.sas[i].pending else { return };
        if pending.msg_id != h.msg_id {
            return;
        }
        let req = pending.req.clone();
        if let Req::Init = req {
            return self.init_response(i, now, from, data, m);
        }
        let Some(payloads) = self.open_counted(i, data, m, from, "response") else { return };
        let sa = &mut self.sas[i];
        sa.pending = None;
        sa.last_heard = now;
        match req {
            Req::Init => {}
            Req::Auth => self.auth_response(i, now, &payloads),
            Req::RekeyChild { old_in } => self.child_response(i, now, &payloads, Some(old_in)),
            Req::RekeyIke => self.ike_rekey_response(i, now, &payloads),
            Req::DeleteChild { spi_in } => {
                let sa = &mut self.sas[i];
                if let Some(k) = sa.children.iter().position(|c| c.keys.spi_in == spi_in) {
                    let c = sa.children.remove(k);
                    self.spis.remove(&c.keys.spi_in);
                    self.out.push_back(Output::Remove { remote: c.keys.remote, spi_in, spi_out: c.keys.spi_out });
                }
            }
            Req::DeleteIke => {
                let sa = self.sas.remove(i);
                self.drop_children_unless_moved(&sa);
                return;
            }
            Req::Dpd => {}
        }
        self.next_request(i, now);
    }

    pub(super) fn next_request(&mut self, i: usize, now: Nanos) {
        if i < self.sas.len() && self.sas[i].pending.is_none() {
            if let Some(r) = self.sas[i].queue.pop_front() {
                self.send_request(i, r, now);
            }
        }
    }

    pub(super) fn fail(&mut self, i: usize, now: Nanos, why: String) {
        let sa = self.sas.remove(i);
        tracing::warn!(peer = %sa.remote, "IKE SA with {} failed: {why}", sa.remote);
        self.drop_children(&sa);
        if sa.initiator {
            self.next_try.insert(sa.remote, now + RESTART_AFTER);
        }
    }

    pub(super) fn init_response(&mut self, i: usize, now: Nanos, from: SocketAddr, data: &[u8], m: &msg::Message) {
        let p = &m.payloads;
        if let Some(c) = notify_data(p, notify::COOKIE) {
            self.sas[i].cookie = Some(c.to_vec());
            let g = self.sas[i].dh.as_ref().map_or(id::DH_X25519, |d| d.group());
            return self.send_init(i, g, now);
        }
        if let Some(g) = notify_data(p, notify::INVALID_KE_PAYLOAD) {
            let group = if g.len() == 2 { u16::from_be_bytes([g[0], g[1]]) } else { 0 };
            let ours = self.peers.get(&self.sas[i].remote).map(|c| c.groups.contains(&group)).unwrap_or(false);
            if !ours || self.sas[i].dh.as_ref().map(|d| d.group()) == Some(group) {
                return self.fail(i, now, format!("the peer wants DH group {group}, which is not offered"));
            }
            tracing::info!(peer = %from, "the peer prefers DH group {}; trying again with it", crypto::group_name(group));
            return self.send_init(i, group, now);
        }
        if let Some(e) = error_notify(p) {
            self.stats.no_proposal += u64::from(e == notify::NO_PROPOSAL_CHOSEN);
            return self.fail(i, now, format!("IKE_SA_INIT refused: {}", notify_name(e)));
        }
        let Some(cfg) = self.peers.get(&self.sas[i].remote).cloned() else { return };
        let Some(Payload::Sa(props)) = p.iter().find(|x| x.kind() == kind::SA) else {
            self.stats.malformed += 1;
            return;
        };
        let nr = p.iter().find_map(|x| if let Payload::Nonce(n) = x { Some(n.clone()) } else { None });
        let ke =
            p.iter()
                .find_map(|x| if let Payload::Ke { group, data } = x { Some((*group, data.clone())) } else { None });
        let (Some(nr), Some((kg, kd))) = (nr, ke) else {
            self.stats.malformed += 1;
            return;
        };
        let Some((choice, _)) = choose(props, PROTO_IKE, Some(kg)) else {
            return self.fail(i, now, "the peer chose a proposal we did not offer".into());
        };
        let sa = &mut self.sas[i];
        let Some(dh) = sa.dh.take() else { return };
        if dh.group() != kg || choice.group != Some(kg) {
            return self.fail(i, now, "the peer answered with another DH group".into());
        }
        let Some(shared) = dh.agree(&kd) else {
            return self.fail(i, now, "the peer's DH value is invalid".into());
        };
        let sa = &mut self.sas[i];
        sa.spi_r = m.header.spi_r;
        sa.nr = nr;
        sa.init_resp = data.to_vec();
        sa.last_heard = now;
        let local = SocketAddr::new(sa.local, IKE_PORT);
        let src_ok = p.iter().any(|x| matches!(x, Payload::Notify { kind: notify::NAT_DETECTION_SOURCE_IP, data, .. } if *data == nat_hash(sa.spi_i, sa.spi_r, from)));
        let dst_ok = p.iter().any(|x| matches!(x, Payload::Notify { kind: notify::NAT_DETECTION_DESTINATION_IP, data, .. } if *data == nat_hash(sa.spi_i, sa.spi_r, local)));
        let has_nat_d = find_notify(p, notify::NAT_DETECTION_SOURCE_IP).is_some();
        sa.nat = cfg.encap == Encap::Udp || (has_nat_d && !(src_ok && dst_ok));
        if sa.nat {
            // From IKE_AUTH on, IKE moves to port 4500 with the non-ESP marker (RFC 7296 §2.23).
            sa.local_port = NAT_T_PORT;
            sa.peer = SocketAddr::new(sa.peer.ip(), NAT_T_PORT);
        }
        sa.derive(choice.prf.unwrap_or(Prf::Sha256), choice.enc_bits, kg, &shared, None);
        sa.pending = None;
        sa.state = State::AuthSent;
        self.send_request(i, Req::Auth, now);
    }

    pub(super) fn auth_response(&mut self, i: usize, now: Nanos, p: &[Payload]) {
        let remote = self.sas[i].remote;
        let Some(cfg) = self.peers.get(&remote).cloned() else { return };
        if let Some(e) = error_notify(p) {
            if e == notify::AUTHENTICATION_FAILED {
                self.stats.auth_failed += 1;
                return self.fail(
                    i,
                    now,
                    "the peer rejected our authentication: the pre-shared keys (options:psk) differ".into(),
                );
            }
            return self.fail(i, now, format!("IKE_AUTH refused: {}", notify_name(e)));
        }
        let auth =
            p.iter().find_map(|x| if let Payload::Auth { method, data } = x { Some((*method, data)) } else { None });
        self.sas[i].peer_id =
            p.iter().find_map(|x| if let Payload::IdR { kind, data } = x { Some((*kind, data.clone())) } else { None });
        let want = self.sas[i].auth(&cfg.psk, false);
        if !matches!(auth, Some((msg::AUTH_SHARED_KEY, d)) if ct_eq(d, &want)) {
            self.stats.auth_failed += 1;
            return self.fail(
                i,
                now,
                "the peer's AUTH does not verify: the pre-shared keys (options:psk) differ".into(),
            );
        }
        if let Some(why) = self.sas[i].identity_problem() {
            self.stats.auth_failed += 1;
            return self.fail(i, now, format!("the peer's identity is refused: {why}"));
        }
        let sa = &mut self.sas[i];
        sa.state = State::Established;
        sa.established = now;
        sa.rekey_at = now + jitter(cfg.ike_lifetime);
        self.stats.ike_sa_established += 1;
        tracing::info!(peer = %remote, "IKE SA established (initiator)");
        let (ni, nr) = (self.sas[i].ni.clone(), self.sas[i].nr.clone());
        self.finish_child(i, now, p, &cfg, &ni, &nr, None, None);
    }

    /// Initiator: a child SA response; installs the child.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish_child(
        &mut self,
        i: usize,
        now: Nanos,
        p: &[Payload],
        cfg: &PeerConfig,
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
        old_in: Option<u32>,
    ) {
        let Some(plan) = self.sas[i].plan.take() else { return };
        if let Some(e) = error_notify(p) {
            self.spis.remove(&plan.spi_in);
            tracing::warn!(peer = %self.sas[i].remote, "child SA refused: {}", notify_name(e));
            if old_in.is_none() && self.sas[i].children.is_empty() {
                return self.fail(i, now, format!("no child SA: {}", notify_name(e)));
            }
            return;
        }
        let prop = p.iter().find_map(|x| if let Payload::Sa(v) = x { v.first() } else { None });
        let Some((choice, prop)) = prop.and_then(|x| choose(std::slice::from_ref(x), PROTO_ESP, None)) else {
            self.spis.remove(&plan.spi_in);
            return self.fail(i, now, "the peer answered with an ESP proposal we did not offer".into());
        };
        let Ok(b) = <[u8; 4]>::try_from(&prop.spi[..]) else { return };
        let spi_out = u32::from_be_bytes(b);
        let tsi =
            p.iter().find_map(|x| if let Payload::TsI(t) = x { Some(t.clone()) } else { None }).unwrap_or_default();
        let tsr =
            p.iter().find_map(|x| if let Payload::TsR(t) = x { Some(t.clone()) } else { None }).unwrap_or_default();
        let (key_in, key_out) = self.sas[i].child_keys(ni, nr, shared, choice.enc_bits, true);
        let transport = find_notify(p, notify::USE_TRANSPORT_MODE).is_some();
        if cfg.mode == Mode::Transport && !transport {
            tracing::info!(peer = %cfg.remote, "the peer refused transport mode; using tunnel mode");
        }
        let sa = &self.sas[i];
        let keys = ChildKeys {
            local: sa.local,
            remote: sa.remote,
            spi_in: plan.spi_in,
            spi_out,
            key_in,
            key_out,
            mode: if transport { Mode::Transport } else { Mode::Tunnel },
            udp: sa.nat,
            peer_port: if sa.nat { sa.peer.port() } else { 0 },
            peer_inner: tsr.first().map_or(sa.remote, |t| t.start),
            send: true,
        };
        self.add_child(i, now, keys, choice.enc_bits, tsi, tsr, cfg);
        if let Some(old) = old_in {
            self.stats.rekeys += 1;
            if let Some(c) = self.sas[i].children.iter_mut().find(|c| c.keys.spi_in == old) {
                c.replaced = true;
            }
            self.request(i, Req::DeleteChild { spi_in: old }, now);
        }
    }

    pub(super) fn child_response(&mut self, i: usize, now: Nanos, p: &[Payload], old_in: Option<u32>) {
        let Some(cfg) = self.peers.get(&self.sas[i].remote).cloned() else { return };
        let Some(nr) = p.iter().find_map(|x| if let Payload::Nonce(n) = x { Some(n.clone()) } else { None }) else {
            if let Some(e) = error_notify(p) {
                if let Some(plan) = self.sas[i].plan.take() {
                    self.spis.remove(&plan.spi_in);
                }
                tracing::warn!(peer = %cfg.remote, "child SA rekey refused: {}", notify_name(e));
                // Try again later; the old SA keeps working until its hard end.
                if let Some(c) = self.sas[i].children.iter_mut().find(|c| Some(c.keys.spi_in) == old_in) {
                    c.rekey_at = now + 30 * SECOND;
                }
            }
            return;
        };
        let ni = self.sas[i].plan.as_ref().map(|x| x.nonce.clone()).unwrap_or_default();
        let mut shared = None;
        if let Some(dh) = self.sas[i].plan.as_mut().and_then(|x| x.dh.take()) {
            // We offered only proposals with our group and sent a KE (PFS): the answer must carry a KE of that
            // group that agrees. Anything else would be keys without PFS that we never offered.
            let ke =
                p.iter().find_map(|x| if let Payload::Ke { group, data } = x { Some((*group, data)) } else { None });
            shared = ke.filter(|(g, _)| *g == dh.group()).and_then(|(_, kd)| dh.agree(kd));
            if shared.is_none() {
                let plan = self.sas[i].plan.take();
                if let Some(plan) = &plan {
                    self.spis.remove(&plan.spi_in);
                }
                self.stats.malformed += 1;
                tracing::warn!(peer = %cfg.remote, "child SA rekey refused: the answer has no usable KE payload for the PFS we asked for; the old SA stays and the rekey is tried again");
                if let Some(c) = self.sas[i].children.iter_mut().find(|c| Some(c.keys.spi_in) == old_in) {
                    c.rekey_at = now + 30 * SECOND;
                }
                // The peer installed its half: tell it to delete that (by the SPI it would send to).
                if let Some(plan) = plan {
                    self.request(i, Req::DeleteChild { spi_in: plan.spi_in }, now);
                }
                return;
            }
        }
        self.finish_child(i, now, p, &cfg, &ni, &nr, shared.as_deref(), old_in);
    }

    pub(super) fn ike_rekey_response(&mut self, i: usize, now: Nanos, p: &[Payload]) {
        let Some(plan) = self.sas[i].plan.take() else { return };
        let remote = self.sas[i].remote;
        let Some(cfg) = self.peers.get(&remote).cloned() else { return };
        let prop = p.iter().find_map(|x| if let Payload::Sa(v) = x { v.first().cloned() } else { None });
        let nr = p.iter().find_map(|x| if let Payload::Nonce(n) = x { Some(n.clone()) } else { None });
        let ke = p.iter().find_map(|x| if let Payload::Ke { data, .. } = x { Some(data.clone()) } else { None });
        let (Some(prop), Some(nr), Some(kd), Some(dh)) = (prop, nr, ke, plan.dh) else {
            tracing::warn!(peer = %remote, "IKE rekey refused; trying again later");
            self.sas[i].rekey_at = now + 30 * SECOND;
            return;
        };
        let Some((choice, _)) = choose(std::slice::from_ref(&prop), PROTO_IKE, Some(dh.group())) else { return };
        let Ok(spi) = <[u8; 8]>::try_from(&prop.spi[..]) else { return };
        let group = dh.group();
        let Some(shared) = dh.agree(&kd) else { return };
        let old = &self.sas[i];
        let mut sa = IkeSa::new(old.local, old.peer, true, now);
        sa.local_port = old.local_port;
        sa.nat = old.nat;
        sa.spi_i = plan.ike_spi;
        sa.spi_r = u64::from_be_bytes(spi);
        sa.ni = plan.nonce;
        sa.nr = nr;
        sa.state = State::Established;
        sa.rekey_at = now + jitter(cfg.ike_lifetime);
        let Some(k) = &old.keys else { return };
        let (d, oprf) = (k.sk_d.clone(), k.prf);
        sa.derive(choice.prf.unwrap_or(oprf), choice.enc_bits, group, &shared, Some((&d, oprf)));
        sa.children = std::mem::take(&mut self.sas[i].children);
        self.sas[i].state = State::Closing;
        self.sas.push(sa);
        self.stats.rekeys += 1;
        tracing::info!(peer = %remote, "IKE SA rekeyed (initiator)");
        self.request(i, Req::DeleteIke, now);
    }
}
