//! Control-socket messages: one JSON request per line from the CLI, one JSON response per line back.

use serde::{Deserialize, Serialize};

/// `K=V` settings as the CLI received them, in order.
pub type Settings = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    AddBr {
        bridge: String,
        may_exist: bool,
    },
    DelBr {
        bridge: String,
        if_exists: bool,
    },
    ListBr,
    AddPort {
        bridge: String,
        port: String,
        iface: Settings,
        /// Port columns (`tag`, `trunks`) from `add-port BR PORT tag=N` or `-- set port PORT …`.
        #[serde(default)]
        port_settings: Settings,
        may_exist: bool,
    },
    DelPort {
        bridge: Option<String>,
        port: String,
        if_exists: bool,
    },
    ListPorts {
        bridge: String,
    },
    SetInterface {
        port: String,
        settings: Settings,
    },
    SetBridge {
        bridge: String,
        settings: Settings,
    },
    SetPort {
        port: String,
        settings: Settings,
    },
    ClearPort {
        port: String,
        columns: Vec<String>,
    },
    /// `add-flow` (one) and `add-flows FILE` (the file's lines, sent whole: one transaction).
    AddFlows {
        bridge: String,
        flows: Vec<String>,
    },
    DelFlows {
        bridge: String,
        #[serde(default)]
        filter: Option<String>,
        #[serde(default)]
        strict: bool,
    },
    ModFlows {
        bridge: String,
        flow: String,
        #[serde(default)]
        strict: bool,
    },
    /// `set-controller BR TARGET…` / `del-controller BR` (no targets).
    SetController {
        bridge: String,
        targets: Vec<String>,
    },
    /// `set-ssl PRIVKEY CERT CACERT` / `del-ssl`: TLS keys for `ssl:`/`pssl:` OpenFlow connections.
    SetSsl {
        ssl: Option<crate::config::SslConfig>,
    },
    /// `get-ssl`.
    GetSsl,
    /// `remove TABLE NAME COLUMN KEY...` (keys of a map column: `options`, `external_ids`, `other_config`) and
    /// `clear TABLE NAME COLUMN` (`keys` empty: the whole column), as ovs-vsctl has them.
    RemoveKeys {
        table: String,
        name: String,
        column: String,
        #[serde(default)]
        keys: Vec<String>,
    },
    /// Commands joined by `--` (`weft -- --if-exists del-port vnet0 -- add-port br0 vnet0 -- set Interface
    /// vnet0 …`): applied in order to one copy of the configuration, validated whole, committed once.
    Transaction {
        requests: Vec<Request>,
    },
    /// `vlog/set LEVEL` (or, without a level, `vlog/list`): the daemon's log level.
    Vlog {
        #[serde(default)]
        level: Option<String>,
    },
    /// `trace BR FLOW` / `trace BR in_port=P --packet HEX`: what the bridge would do with a packet.
    Trace {
        bridge: String,
        flow: String,
        #[serde(default)]
        packet: Option<String>,
    },
    DumpFlows {
        bridge: String,
        #[serde(default)]
        filter: Option<String>,
    },
    /// After the answer, the connection carries a pcap stream of the port's frames.
    Capture {
        bridge: String,
        port: String,
        /// Tunnel ports: whole packets with outer headers instead of the inner frames.
        #[serde(default)]
        outer: bool,
        #[serde(default)]
        count: Option<u64>,
    },
    Show,
    DumpPorts {
        bridge: String,
    },
    FdbShow {
        bridge: String,
    },
    /// `add-tlv-map BR MAPPINGS` (`ovs-ofctl add-tlv-map`'s syntax).
    AddTlvMap {
        bridge: String,
        mappings: String,
    },
    /// `del-tlv-map BR [MAPPINGS]`: those mappings' indexes, or all of them.
    DelTlvMap {
        bridge: String,
        mappings: Option<String>,
    },
    DumpTlvMap {
        bridge: String,
    },
    FdbFlush {
        bridge: String,
    },
    FdbStats {
        bridge: String,
    },
    FdbAdd {
        bridge: String,
        entry: crate::StaticFdb,
    },
    FdbDel {
        bridge: String,
        #[serde(with = "crate::config::mac_text")]
        mac: weft_wire::EthernetAddress,
        vlan: u16,
    },
    IpsecShow {
        #[serde(default)]
        keys: bool,
    },
    IpsecRekey {
        #[serde(default)]
        remote: Option<std::net::IpAddr>,
        #[serde(default)]
        ike: bool,
    },
    /// `dpctl/dump-conntrack [zone=N]`.
    CtDump {
        #[serde(default)]
        zone: Option<u16>,
    },
    /// `dpctl/flush-conntrack [zone=N]`.
    CtFlush {
        #[serde(default)]
        zone: Option<u16>,
    },
    /// `dpctl/ct-stats-show`, `dpctl/ct-get-maxconns` (`show`: "maxconns"), `dpctl/ct-get-limits` ("limits").
    CtStats {
        #[serde(default)]
        show: String,
    },
    /// `dpctl/ct-set-maxconns N`.
    CtSetMaxConns {
        n: u64,
    },
    /// `dpctl/ct-set-limits zone=N,limit=M…` (a limit) and `dpctl/ct-del-limits zone=N…` (`None`).
    CtSetLimits {
        limits: Vec<(u16, Option<u64>)>,
    },
}

impl Request {
    /// The request with every secret value (`options:psk`, `other_config:etcd-password`) replaced, for logs.
    pub fn redacted(&self) -> Request {
        let hide = |s: &Settings| -> Settings {
            s.iter()
                .map(|(k, v)| {
                    let v = if crate::config::is_secret(k) { crate::config::HIDDEN.to_string() } else { v.clone() };
                    (k.clone(), v)
                })
                .collect()
        };
        let mut r = self.clone();
        match &mut r {
            Request::AddPort { iface, port_settings, .. } => {
                *iface = hide(iface);
                *port_settings = hide(port_settings);
            }
            Request::SetInterface { settings, .. }
            | Request::SetBridge { settings, .. }
            | Request::SetPort { settings, .. } => *settings = hide(settings),
            Request::Transaction { requests } => *requests = requests.iter().map(Request::redacted).collect(),
            _ => {}
        }
        r
    }

    /// True for requests that change the configuration.
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            Request::AddBr { .. }
                | Request::DelBr { .. }
                | Request::AddPort { .. }
                | Request::DelPort { .. }
                | Request::SetInterface { .. }
                | Request::SetBridge { .. }
                | Request::SetPort { .. }
                | Request::AddFlows { .. }
                | Request::DelFlows { .. }
                | Request::ModFlows { .. }
                | Request::SetController { .. }
                | Request::SetSsl { .. }
                | Request::Transaction { .. }
                | Request::ClearPort { .. }
                | Request::RemoveKeys { .. }
                | Request::FdbAdd { .. }
                | Request::FdbDel { .. }
                | Request::AddTlvMap { .. }
                | Request::DelTlvMap { .. }
                | Request::CtSetMaxConns { .. }
                | Request::CtSetLimits { .. }
        )
    }
}

/// The daemon's answer: `data` on success, `error` (the message for the user) on failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Response {
    pub fn ok(data: serde_json::Value) -> Self {
        Response { ok: true, error: None, data }
    }
    pub fn err(msg: impl Into<String>) -> Self {
        Response { ok: false, error: Some(msg.into()), data: serde_json::Value::Null }
    }
    /// A successful answer carrying `reply` (one of [`crate::reply`]'s types).
    pub fn with<T: Serialize>(reply: &T) -> Self {
        Response::ok(serde_json::to_value(reply).unwrap_or(serde_json::Value::Null))
    }
    /// The answer's data read as `T`, the type the request is answered with.
    pub fn read<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_requests_hold_no_secret() {
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        let r = Request::AddPort {
            bridge: "sw1".into(),
            port: "vx1".into(),
            iface: vec![kv("type", "vxlan"), kv("options:psk", "swordfish"), kv("options:key", "7")],
            port_settings: vec![],
            may_exist: false,
        };
        let text = serde_json::to_string(&r.redacted()).unwrap();
        assert!(!text.contains("swordfish") && text.contains("(hidden)") && text.contains("\"7\""), "{text}");
        let r = Request::SetBridge { bridge: "sw1".into(), settings: vec![kv("other_config:etcd-password", "s3cret")] };
        assert!(!serde_json::to_string(&r.redacted()).unwrap().contains("s3cret"));
    }
}
