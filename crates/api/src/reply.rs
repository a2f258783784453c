//! What the control socket answers: one type per request that returns data. weftd fills these and sends them
//! as the `data` of a [`Response`](crate::Response); the CLI reads `data` back into the same type and
//! renders it, so both ends agree on every field by construction.
//!
//! Fields are declared in alphabetical order: the JSON the CLI prints with `--format=json` keeps the key
//! order scripts have seen since before these types existed.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `show`: every bridge, its ports and their interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Show {
    pub bridges: Vec<ShowBridge>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ShowBridge {
    pub control_plane: Option<ControlPlaneShow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controller: Vec<String>,
    pub external_ids: BTreeMap<String, String>,
    pub name: String,
    /// `fail_mode` when set (standalone or secure), and whether the bridge switches as a learning switch now
    /// for want of a controller (standalone's fail-open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_mode: Option<String>,
    #[serde(default)]
    pub fail_open: bool,
    /// The OpenFlow versions its connections may speak (`protocols`; empty: any weft speaks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<String>,
    /// Secrets (`bgp-password`, `etcd-password`) are shown as "(hidden)".
    pub other_config: BTreeMap<String, String>,
    /// The bridge's own (internal) port first, then the others in configuration order.
    pub ports: Vec<ShowPort>,
}

/// A control plane's state for `show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ControlPlaneShow {
    /// "etcd" or "evpn".
    pub kind: String,
    pub local_macs: u64,
    pub refused_routes: u64,
    pub remote_macs: u64,
    /// One line per connection (an etcd member, a BGP peer).
    pub status: Vec<String>,
    /// The local VTEP address, once known.
    pub vtep: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ShowPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The Interface row's `external_ids` (absent for a bridge's own port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ids: Option<BTreeMap<String, String>>,
    /// "up" or "down".
    pub link_state: String,
    pub mtu: Option<u32>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    pub ofport: u32,
    /// Secrets (`psk`) are shown as "(hidden)".
    pub options: BTreeMap<String, String>,
    pub port_external_ids: BTreeMap<String, String>,
    /// Tunnel ports: each VTEP flooded frames go to, and where it comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remotes: Option<Vec<RemoteShow>>,
    pub tag: Option<u16>,
    pub trunks: Vec<u16>,
    #[serde(rename = "type")]
    pub iface_type: String,
}

/// A remote VTEP of a tunnel port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteShow {
    pub ip: String,
    /// "static" (configured), "etcd" or "evpn".
    pub origin: String,
}

/// `fdb show`: one row per MAC table entry, then the flood destinations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    /// Seconds since the entry was last refreshed (0 for entries that do not age).
    pub age: u64,
    pub mac: String,
    pub ofport: Option<u32>,
    /// "learned", "static", "etcd" or "evpn".
    pub origin: String,
    pub port: String,
    pub remote_ip: Option<String>,
    #[serde(rename = "static")]
    pub is_static: bool,
    pub vlan: u16,
}

/// `fdb stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FdbStats {
    pub aged: u64,
    pub entries: u64,
    pub learn_misses: u64,
    pub mac_table_size: u64,
    pub moves: u64,
}

/// `dump-flows`: one row per flow, as `ovs-ofctl dump-flows` lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRow {
    pub actions: Option<String>,
    pub cookie: String,
    /// Seconds since the flow was added.
    pub duration: f64,
    /// The whole flow in `ovs-ofctl` syntax.
    pub flow: String,
    pub hard_timeout: u16,
    pub idle_timeout: u16,
    #[serde(default)]
    pub send_flow_rem: bool,
    #[serde(rename = "match")]
    pub match_text: String,
    pub n_bytes: u64,
    pub n_packets: u64,
    pub priority: u16,
    pub table: u8,
}

/// `dump-ports`: one row per port with its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PortRow {
    pub arp_nd_answered: u64,
    pub arp_nd_flooded: u64,
    /// Drops by reason (`weft dump-drops` lists those that are not zero).
    pub drops: BTreeMap<String, u64>,
    pub geneve_options_rx: u64,
    pub gro_rx: u64,
    pub gso_tx: u64,
    pub ofport: u32,
    pub port: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// `dump-drops`: one row per port and reason with a count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropRow {
    pub count: u64,
    pub ofport: u32,
    pub port: String,
    pub reason: String,
}

/// `trace`: the packet, each step of its walk through the switch, and where it leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Trace {
    pub bridge: String,
    pub in_port: String,
    pub outputs: Vec<String>,
    /// The frame, in hex.
    pub packet: String,
    pub steps: Vec<TraceRow>,
}

/// One step of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TraceRow {
    /// Free text: VLAN handling, the NORMAL decision, a drop.
    Note { note: String },
    /// A flow table was looked up: the flow that matched (`None`: none did, the frame is dropped).
    Flow { flow: Option<String>, table: u8 },
    /// The frame leaves by a port.
    Output {
        output: String,
        /// The unicast remote of a tunnel packet (the first of `remote_ips`).
        remote_ip: Option<String>,
        /// Every VTEP the tunnel packet goes to.
        remote_ips: Option<Vec<String>>,
        /// The outer UDP source port of a tunnel packet.
        src_port: Option<u16>,
        /// The frame is bigger than the port's MTU (this one): dropped, the sender gets ICMP.
        too_big: Option<u16>,
        /// The VLAN the frame leaves tagged with.
        vlan: Option<u16>,
        vni: Option<u32>,
    },
}

/// `vlog`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLevel {
    pub level: String,
}

/// `ipsec rekey`: how many SAs started rekeying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rekeying {
    pub rekeying: u64,
}

/// The first line of a `capture` answer; the pcap stream follows on the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureHead {
    pub linktype: u32,
}

/// `ipsec show`: the IKE SAs with their child SAs, and the IKE and ESP counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IpsecShow {
    pub esp_dropped: EspDropped,
    pub ike: IkeCounters,
    pub sas: Vec<IkeSaShow>,
    /// With `--keys`: lines for Wireshark's decryption tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireshark: Option<WiresharkTables>,
}

/// ESP packets dropped, by reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EspDropped {
    pub auth_failed: u64,
    pub bad_inner: u64,
    pub ike_queue_full: u64,
    pub replayed: u64,
    pub truncated: u64,
    pub unknown_spi: u64,
    pub wrong_source: u64,
}

impl EspDropped {
    /// Each counter with its name, in the order of the JSON.
    pub fn named(&self) -> [(&'static str, u64); 7] {
        [
            ("auth_failed", self.auth_failed),
            ("bad_inner", self.bad_inner),
            ("ike_queue_full", self.ike_queue_full),
            ("replayed", self.replayed),
            ("truncated", self.truncated),
            ("unknown_spi", self.unknown_spi),
            ("wrong_source", self.wrong_source),
        ]
    }
}

/// IKE events since weftd started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IkeCounters {
    pub auth_failed: u64,
    pub child_sas: u64,
    pub cookies_sent: u64,
    pub decrypt_failed: u64,
    pub established: u64,
    pub half_open_dropped: u64,
    pub malformed: u64,
    pub no_proposal: u64,
    pub rekeys: u64,
    pub retransmits: u64,
    pub timeouts: u64,
    pub unknown_peer: u64,
}

impl IkeCounters {
    /// Each counter with its name, in the order of the JSON.
    pub fn named(&self) -> [(&'static str, u64); 12] {
        [
            ("auth_failed", self.auth_failed),
            ("child_sas", self.child_sas),
            ("cookies_sent", self.cookies_sent),
            ("decrypt_failed", self.decrypt_failed),
            ("established", self.established),
            ("half_open_dropped", self.half_open_dropped),
            ("malformed", self.malformed),
            ("no_proposal", self.no_proposal),
            ("rekeys", self.rekeys),
            ("retransmits", self.retransmits),
            ("timeouts", self.timeouts),
            ("unknown_peer", self.unknown_peer),
        ]
    }
}

/// An IKE SA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IkeSaShow {
    /// Seconds since it was established.
    pub age: u64,
    pub children: Vec<ChildSaShow>,
    pub dh_group: String,
    pub encryption: String,
    pub initiator: bool,
    pub local: String,
    pub prf: String,
    pub rekey_in: u64,
    pub remote: String,
    /// With `--keys`: the IKE encryption keys, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sk_ei: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sk_er: Option<String>,
    pub spi_i: String,
    pub spi_r: String,
    pub state: String,
    /// ESP in UDP (port 4500) rather than IP protocol 50.
    pub udp_encap: bool,
}

/// A child (ESP) SA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChildSaShow {
    pub age: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub encryption: String,
    /// With `--keys`: the ESP keys, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_in: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_out: Option<String>,
    /// "transport" or "tunnel".
    pub mode: String,
    pub packets_in: u64,
    pub packets_out: u64,
    pub rekey_in: u64,
    /// False for an SA kept to receive while its successor sends.
    pub sending: bool,
    pub spi_in: String,
    pub spi_out: String,
    pub ts_local: String,
    pub ts_remote: String,
}

/// Lines in the forms Wireshark's `esp_sa` and `ikev2_decryption_table` preferences take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WiresharkTables {
    pub esp_sa: Vec<String>,
    pub ikev2_decryption_table: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON of a reply names its fields in sorted order (as the untyped replies did), and reads back
    /// into the same value.
    #[test]
    fn replies_keep_their_json_and_read_back() {
        let port = ShowPort {
            name: "vx1".into(),
            ofport: 2,
            iface_type: "vxlan".into(),
            link_state: "up".into(),
            mtu: Some(1450),
            remotes: Some(vec![RemoteShow { ip: "192.0.2.2".into(), origin: "static".into() }]),
            ..Default::default()
        };
        let text = serde_json::to_string(&port).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(text, serde_json::to_string(&value).unwrap(), "keys in sorted order");
        assert!(!text.contains("netns") && !text.contains("error"), "absent fields stay absent: {text}");
        assert_eq!(serde_json::from_str::<ShowPort>(&text).unwrap(), port);
        let steps = vec![
            TraceRow::Note { note: "NORMAL".into() },
            TraceRow::Flow { flow: None, table: 0 },
            TraceRow::Output {
                output: "p1".into(),
                remote_ip: None,
                remote_ips: None,
                src_port: None,
                too_big: None,
                vlan: Some(10),
                vni: None,
            },
        ];
        let text = serde_json::to_string(&steps).unwrap();
        assert_eq!(serde_json::from_str::<Vec<TraceRow>>(&text).unwrap(), steps);
        let sa = IpsecShow::default();
        let text = serde_json::to_string(&sa).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(text, serde_json::to_string(&value).unwrap());
        assert!(!text.contains("wireshark"));
    }
}

/// `dpctl/dump-conntrack`: one tracked connection, in its original direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtConn {
    pub proto: u8,
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    /// Ports; for ICMP both are the echo identifier.
    pub sport: u16,
    pub dport: u16,
    pub zone: u16,
    pub mark: u32,
    /// The label in hexadecimal (`0` when none).
    pub label: String,
    /// TCP: the connection's state (the later of its two ends').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// ICMP: the request's type and code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<(u8, u8)>,
    /// Seconds until it expires without traffic.
    pub timeout: u64,
    /// With NAT, the reply direction as it is on the wire: source, destination, their ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<(std::net::IpAddr, std::net::IpAddr, u16, u16)>,
}

impl CtConn {
    /// The line `ovs-appctl dpctl/dump-conntrack` prints for such a connection.
    pub fn ovs_line(&self) -> String {
        let name = match (self.proto, self.src.is_ipv6()) {
            (6, _) => "tcp".to_string(),
            (17, _) => "udp".to_string(),
            (132, _) => "sctp".to_string(),
            (136, _) => "udplite".to_string(),
            (1, _) => "icmp".to_string(),
            (58, _) => "icmpv6".to_string(),
            (p, _) => p.to_string(),
        };
        let dir = |src: &std::net::IpAddr, dst: &std::net::IpAddr, sp: u16, dp: u16, reply: bool| match self.icmp {
            Some((t, c)) => {
                let t = if reply { icmp_reply_type(t, self.proto == 58) } else { t };
                format!("src={src},dst={dst},id={sp},type={t},code={c}")
            }
            None if matches!(self.proto, 6 | 17 | 132 | 136) => format!("src={src},dst={dst},sport={sp},dport={dp}"),
            None => format!("src={src},dst={dst}"),
        };
        let (rs, rd, rsp, rdp) = self.reply.unwrap_or((self.dst, self.src, self.dport, self.sport));
        let mut s = format!(
            "{name},orig=({}),reply=({})",
            dir(&self.src, &self.dst, self.sport, self.dport, false),
            dir(&rs, &rd, rsp, rdp, true)
        );
        if self.zone != 0 {
            s += &format!(",zone={}", self.zone);
        }
        if self.mark != 0 {
            s += &format!(",mark={}", self.mark);
        }
        if self.label != "0" {
            s += &format!(",labels={}", self.label);
        }
        if let Some(st) = &self.state {
            s += &format!(",protoinfo=(state={st})");
        }
        s
    }
}

/// The reply's ICMP type for a request's.
fn icmp_reply_type(t: u8, v6: bool) -> u8 {
    match (t, v6) {
        (128, true) => 129,
        (8, false) => 0,
        (13, false) => 14,
        (15, false) => 16,
        (t, _) => t,
    }
}

/// `dpctl/ct-stats-show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CtStats {
    pub connections: u64,
    pub max_conns: u64,
    /// Connections by protocol name.
    pub by_protocol: std::collections::BTreeMap<String, u64>,
    /// Since weftd started: connections committed, expired, packets found invalid, new connections refused
    /// because the table (or the zone) was full.
    pub created: u64,
    pub expired: u64,
    pub invalid: u64,
    pub full: u64,
    pub zone_limits: Vec<CtZoneLimit>,
}

/// A zone's limit and how many connections it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtZoneLimit {
    pub zone: u16,
    pub limit: u64,
    pub count: u64,
}
