//! The IKE thread: runs weft's IKEv2 engine for the tunnel ports with `options:psk`. It owns the UDP port 500
//! sockets; IKE messages on port 4500 arrive through the datapath (which owns that socket, as ESP in UDP
//! shares it) and leave through the same socket. Child SAs go to the datapath as they are negotiated.

use crate::esp::{EspCounters, EspOp, SaCounters};
use crate::msgs::{DpHandle, DpMsg, IpsecMsg};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_api::reply;
use weft_ipsec::ike::{self, Engine, Output, PeerConfig, IKE_PORT, NAT_T_PORT};

/// Queue of messages for the IKE thread (IKE datagrams from the datapath are dropped when it is full).
pub const QUEUE: usize = 1024;

pub struct Ike {
    engine: Engine,
    rx: Receiver<IpsecMsg>,
    me: SyncSender<IpsecMsg>,
    dp: DpHandle,
    clock: Instant,
    port500: Vec<UdpSocket>,
    nat_t: Vec<Arc<OwnedFd>>,
    peers: Vec<PeerConfig>,
}

/// Starts the IKE thread; returns the sender the control and datapath threads use.
pub fn spawn(dp: DpHandle) -> std::io::Result<SyncSender<IpsecMsg>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let me = tx.clone();
    std::thread::Builder::new().name("weft-ike".into()).spawn(move || {
        let ike = Ike {
            engine: Engine::new(),
            rx,
            me,
            dp,
            clock: Instant::now(),
            port500: Vec::new(),
            nat_t: Vec::new(),
            peers: Vec::new(),
        };
        ike.run();
    })?;
    Ok(tx)
}

impl Ike {
    fn now(&self) -> ike::Nanos {
        self.clock.elapsed().as_nanos() as ike::Nanos
    }

    fn run(mut self) {
        let mut last_bytes = Instant::now();
        loop {
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => self.handle(m),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let now = self.now();
            self.engine.tick(now);
            // Byte limits and the sequence number space: every SA's counts once a second.
            if last_bytes.elapsed() >= Duration::from_secs(1) && !self.peers.is_empty() {
                last_bytes = Instant::now();
                let (sas, _) = self.dp_counters();
                for (spi, _, packets, bytes) in sas.into_iter().filter(|(_, outbound, ..)| *outbound) {
                    self.engine.sent(spi, packets, bytes, now);
                }
            }
            self.dispatch();
        }
    }

    fn handle(&mut self, m: IpsecMsg) {
        let now = self.now();
        match m {
            IpsecMsg::Config { peers, nat_t } => {
                self.nat_t = nat_t;
                if !peers.is_empty() {
                    self.open_port500();
                }
                for p in peers.iter().filter(|p| !self.peers.iter().any(|o| o.remote == p.remote && o.psk == p.psk)) {
                    if ike::weak_psk(&p.psk) {
                        tracing::warn!(
                            peer = %p.remote,
                            "the pre-shared key (options:psk) for {} has {} characters: use at least {} random ones; anyone who captures one IKE_AUTH exchange can try to guess a short key offline",
                            p.remote,
                            p.psk.len(),
                            ike::MIN_PSK_LEN
                        );
                    }
                }
                self.peers = peers.clone();
                self.engine.set_peers(peers, now);
            }
            IpsecMsg::Ike { local_port, from, data } => self.engine.input(now, local_port, from, &data),
            IpsecMsg::Show { keys, reply } => {
                let v = self.show(keys);
                let _ = reply.send(v);
            }
            IpsecMsg::Rekey { remote, ike, reply } => {
                let mut n = 0;
                let remotes: Vec<IpAddr> = match remote {
                    Some(r) => vec![r],
                    None => self.peers.iter().map(|p| p.remote).collect(),
                };
                for r in remotes {
                    n += usize::from(self.engine.rekey(r, ike, now));
                }
                let _ = reply.send(n);
            }
        }
    }

    /// Binds UDP port 500 on every address (IPv4 and IPv6) once, with a reader thread per socket.
    fn open_port500(&mut self) {
        if !self.port500.is_empty() {
            return;
        }
        for any in [IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)] {
            let sock = match weft_sys::udp::bind(SocketAddr::new(any, IKE_PORT)) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot bind UDP port 500 on {any} for IKE: {e}");
                    continue;
                }
            };
            let Ok(reader) = sock.try_clone() else { continue };
            let _ = reader.set_nonblocking(false);
            let tx = self.me.clone();
            let spawned = std::thread::Builder::new().name("weft-ike-500".into()).spawn(move || {
                let mut buf = vec![0u8; 65_536];
                loop {
                    match reader.recv_from(&mut buf) {
                        Ok((n, from)) => {
                            let m = IpsecMsg::Ike { local_port: IKE_PORT, from, data: buf[..n].to_vec() };
                            if tx.try_send(m).is_err() {
                                // Full: a flood; IKE retransmits what mattered.
                                continue;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => return,
                    }
                }
            });
            if spawned.is_ok() {
                self.port500.push(sock);
            }
        }
    }

    fn dispatch(&mut self) {
        while let Some(o) = self.engine.poll() {
            match o {
                Output::Send { from_port, to, data } => self.send(from_port, to, &data),
                Output::Install(k) => self.dp.send(DpMsg::Esp(EspOp::Install(Arc::new(k), Default::default()))),
                Output::Activate { remote, spi_out } => self.dp.send(DpMsg::Esp(EspOp::Activate { remote, spi_out })),
                Output::Remove { remote, spi_in, spi_out } => {
                    self.dp.send(DpMsg::Esp(EspOp::Remove { remote, spi_in, spi_out }))
                }
            }
        }
    }

    fn send(&self, from_port: u16, to: SocketAddr, data: &[u8]) {
        if from_port == NAT_T_PORT {
            let Some(fd) = self
                .nat_t
                .iter()
                .find(|f| weft_sys::udp::local_addr(f.as_ref()).is_ok_and(|a| a.is_ipv4() == to.is_ipv4()))
            else {
                tracing::warn!(peer = %to, "no UDP port 4500 socket to send IKE on");
                return;
            };
            let mut msg = Vec::with_capacity(data.len() + 4);
            msg.extend_from_slice(&[0, 0, 0, 0]);
            msg.extend_from_slice(data);
            if let Err(e) = weft_sys::udp::send_to(fd.as_raw_fd(), &msg, to) {
                tracing::debug!(peer = %to, "IKE send failed: {e}");
            }
            return;
        }
        let Some(s) = self.port500.iter().find(|s| s.local_addr().is_ok_and(|a| a.is_ipv4() == to.is_ipv4())) else {
            tracing::warn!(peer = %to, "no UDP port 500 socket to send IKE on");
            return;
        };
        if let Err(e) = s.send_to(data, to) {
            tracing::debug!(peer = %to, "IKE send failed: {e}");
        }
    }

    fn dp_counters(&self) -> (SaCounters, EspCounters) {
        self.dp.ask(DpMsg::EspStats, Duration::from_secs(2)).unwrap_or_default()
    }

    fn show(&self, keys: bool) -> reply::IpsecShow {
        let (counters, drops) = self.dp_counters();
        let count =
            |spi: u32, out: bool| counters.iter().find(|c| c.0 == spi && c.1 == out).map_or((0, 0), |c| (c.2, c.3));
        let sas = self
            .engine
            .show(self.now())
            .into_iter()
            .map(|s| {
                let children = s
                    .children
                    .iter()
                    .map(|c| {
                        let (packets_in, bytes_in) = count(c.spi_in, false);
                        let (packets_out, bytes_out) = count(c.spi_out, true);
                        reply::ChildSaShow {
                            spi_in: format!("{:08x}", c.spi_in),
                            spi_out: format!("{:08x}", c.spi_out),
                            mode: if c.mode == ike::Mode::Transport { "transport" } else { "tunnel" }.to_string(),
                            encryption: c.encryption.clone(),
                            packets_in,
                            bytes_in,
                            packets_out,
                            bytes_out,
                            age: c.age_secs,
                            rekey_in: c.rekey_in_secs,
                            sending: c.sending,
                            ts_local: c.ts_local.clone(),
                            ts_remote: c.ts_remote.clone(),
                            key_in: keys.then(|| c.key_in.clone()),
                            key_out: keys.then(|| c.key_out.clone()),
                        }
                    })
                    .collect();
                reply::IkeSaShow {
                    local: s.local.to_string(),
                    remote: s.remote.to_string(),
                    spi_i: format!("{:016x}", s.spi_i),
                    spi_r: format!("{:016x}", s.spi_r),
                    initiator: s.initiator,
                    state: s.state.to_string(),
                    encryption: s.encryption.clone(),
                    prf: s.prf.to_string(),
                    dh_group: s.group.to_string(),
                    udp_encap: s.udp_encap,
                    age: s.age_secs,
                    rekey_in: s.rekey_in_secs,
                    sk_ei: keys.then(|| s.sk_ei.clone()),
                    sk_er: keys.then(|| s.sk_er.clone()),
                    children,
                }
            })
            .collect();
        let st = &self.engine.stats;
        reply::IpsecShow {
            sas,
            ike: reply::IkeCounters {
                established: st.ike_sa_established,
                child_sas: st.child_sa_established,
                rekeys: st.rekeys,
                auth_failed: st.auth_failed,
                no_proposal: st.no_proposal,
                malformed: st.malformed,
                unknown_peer: st.unknown_peer,
                retransmits: st.retransmits,
                timeouts: st.timeouts,
                cookies_sent: st.cookies_sent,
                half_open_dropped: st.half_open_dropped,
                decrypt_failed: st.decrypt_failed,
            },
            esp_dropped: reply::EspDropped {
                unknown_spi: drops.unknown_spi,
                wrong_source: drops.wrong_source,
                truncated: drops.truncated,
                replayed: drops.replayed,
                auth_failed: drops.tampered,
                bad_inner: drops.bad_inner,
                ike_queue_full: drops.ike_dropped,
            },
            wireshark: keys.then(|| self.wireshark_tables()),
        }
    }

    /// The SAs as lines of Wireshark's `esp_sa` and `ikev2_decryption_table` tables, for
    /// `tshark -o esp.enable_encryption_decode:TRUE -o 'uat:esp_sa:LINE' -o 'uat:ikev2_decryption_table:LINE'`.
    fn wireshark_tables(&self) -> reply::WiresharkTables {
        let mut esp = Vec::new();
        let mut ikev2 = Vec::new();
        for s in self.engine.show(self.now()) {
            let fam = if s.local.is_ipv4() { "IPv4" } else { "IPv6" };
            let (l, r) = (s.local, s.remote.ip());
            for c in &s.children {
                for (src, dst, spi, key) in [(r, l, c.spi_in, &c.key_in), (l, r, c.spi_out, &c.key_out)] {
                    esp.push(format!(
                        "\"{fam}\",\"{src}\",\"{dst}\",\"0x{spi:08x}\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x{key}\",\"NULL\",\"\""
                    ));
                }
            }
            let bits = s.encryption.rsplit('-').next().unwrap_or("256");
            ikev2.push(format!(
                "{:016x},{:016x},{},{},\"AES-GCM-{bits} with 16 octet ICV [RFC5282]\",,,\"NONE [RFC4306]\"",
                s.spi_i, s.spi_r, s.sk_ei, s.sk_er
            ));
        }
        reply::WiresharkTables { esp_sa: esp, ikev2_decryption_table: ikev2 }
    }
}

/// The IKE peers a configuration asks for: one per remote of the tunnel ports with `options:psk`.
pub fn peers_of(cfg: &weft_api::config::Valid) -> Vec<PeerConfig> {
    let mut out: Vec<PeerConfig> = Vec::new();
    for (_, p, s) in cfg.ports() {
        let (Some(spec), Some(ips)) = (s.tunnel, &s.ipsec) else { continue };
        if out.iter().any(|o| o.remote == spec.remote) {
            continue;
        }
        let local = match spec.local.map_or_else(|| weft_sys::udp::source_towards(spec.remote), Ok) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(port = %p.name, "no local address towards {}: {e}; IPsec waits", spec.remote);
                continue;
            }
        };
        let mut c = PeerConfig::new(local, spec.remote, ips.psk.as_bytes());
        c.mode = if ips.shape.tunnel { ike::Mode::Tunnel } else { ike::Mode::Transport };
        c.encap = if ips.shape.udp { ike::Encap::Udp } else { ike::Encap::Esp };
        // The child SA carries every protocol between the two VTEPs: VXLAN, Geneve and GRE ports to one
        // remote share it.
        c.proto = 0;
        c.child_lifetime = ips.lifetime_secs * ike::SECOND;
        c.ike_lifetime = 4 * c.child_lifetime;
        c.rekey_bytes = ips.rekey_bytes;
        out.push(c);
    }
    out
}
