//! Bridges: their settings, flows, static FDB entries, controllers and control planes.

use super::*;

/// The shortest BGP hold time weft agrees to (RFC 4271 allows 0, which turns keepalives and the dead-peer
/// check off; weft refuses it, from its own configuration and from a peer).
pub const MIN_BGP_HOLD: u16 = 3;

/// One bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeConfig {
    pub name: String,
    #[serde(default)]
    pub other_config: BTreeMap<String, String>,
    /// Ports other than the internal one, in the order they were added.
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    /// The ofport the next added port gets; numbers are never reused while the bridge exists.
    pub next_ofport: u32,
    /// Static MAC entries (`weft fdb add`): they never age and are never evicted.
    #[serde(default)]
    pub fdb: Vec<StaticFdb>,
    /// VLAN settings of the internal port.
    #[serde(default, skip_serializing_if = "PortVlan::is_empty")]
    pub local_vlan: PortVlan,
    /// The internal port's OpenFlow configuration bits (PORT_MOD), as [`crate::PortConfig::of_config`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub local_of_config: u32,
    /// Flow tables (`add-flow`); a new bridge has `priority=0 actions=NORMAL`.
    #[serde(default = "default_flows")]
    pub flows: Vec<StoredFlow>,
    #[serde(default = "one")]
    pub next_flow_id: u64,
    /// OpenFlow controller connections (`set-controller BR TARGET…`): `ptcp:PORT[:IP]` (weftd listens) or
    /// `tcp:IP[:PORT]` (and their TLS forms), each served at once. (Stored as one string when there was one.)
    #[serde(default, rename = "controller", deserialize_with = "one_or_many", skip_serializing_if = "Vec::is_empty")]
    pub controllers: Vec<String>,
    /// OpenFlow groups (GROUP_MOD), by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<crate::group::Group>,
    /// The Bridge row's `fail_mode`: what the bridge does while it has controllers to connect to and none is
    /// connected — `standalone` (the default, as OVS: after 15 s, switch as a learning switch until one is
    /// back) or `secure` (keep to the flow tables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_mode: Option<FailMode>,
    /// The Bridge row's `protocols`: the OpenFlow versions its connections may speak (empty: every one weft
    /// speaks, 1.0 and 1.3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<String>,
    /// OpenFlow meters (METER_MOD), by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meters: Vec<crate::meter::Meter>,
    /// The Bridge row's `external_ids`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: BTreeMap<String, String>,
    /// The TLV map (`add-tlv-map`, NXT_TLV_TABLE_MOD): the Geneve options the `tun_metadataN` fields stand for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tlv_map: Vec<crate::tlv::TlvMapping>,
}

/// An OpenFlow connection target, as `set-controller` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfTarget {
    Listen(std::net::SocketAddr),
    Connect(std::net::SocketAddr),
}

impl OfTarget {
    /// Whether the connection is TLS (`pssl:`/`ssl:`), which needs `set-ssl`.
    pub fn is_tls(t: &str) -> bool {
        t.starts_with("ssl:") || t.starts_with("pssl:")
    }
}

/// Parses `ptcp:PORT[:IP]` or `tcp:IP[:PORT]` (port 6653 by default; IPv6 in brackets). A listener without
/// an address listens on 127.0.0.1 only: whoever reaches an OpenFlow listener owns the flow table, so
/// listening on other addresses must be asked for by name (`ptcp:6653:0.0.0.0`).
pub fn parse_of_target(t: &str) -> Result<OfTarget, ConfigError> {
    let bad = |why: &str| {
        ConfigError::BadSetting(format!(
            "controller {t:?}: {why} (expected ptcp:PORT[:IP], pssl:PORT[:IP], tcp:IP[:PORT] or ssl:IP[:PORT])"
        ))
    };
    let ip_of = |s: &str| -> Result<IpAddr, ConfigError> {
        s.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| bad("not an IP address"))
    };
    let port_of = |s: &str| -> Result<u16, ConfigError> {
        s.parse().ok().filter(|p| *p > 0).ok_or_else(|| bad("not a TCP port"))
    };
    if let Some(rest) = t.strip_prefix("ptcp:").or_else(|| t.strip_prefix("pssl:")) {
        let (port, ip) = match rest.split_once(':') {
            Some((p, ip)) => (if p.is_empty() { 6653 } else { port_of(p)? }, ip_of(ip)?),
            None => (if rest.is_empty() { 6653 } else { port_of(rest)? }, IpAddr::from([127, 0, 0, 1])),
        };
        return Ok(OfTarget::Listen(std::net::SocketAddr::new(ip, port)));
    }
    if let Some(rest) = t.strip_prefix("tcp:").or_else(|| t.strip_prefix("ssl:")) {
        let (ip, port) = match rest.rsplit_once(':') {
            Some((ip, p)) if !rest.ends_with(']') && (ip.starts_with('[') || !ip.contains(':')) => {
                (ip_of(ip)?, port_of(p)?)
            }
            _ => (ip_of(rest)?, 6653),
        };
        return Ok(OfTarget::Connect(std::net::SocketAddr::new(ip, port)));
    }
    Err(bad("unknown connection method"))
}

/// OpenFlow's wire versions weft speaks.
const OF10: u8 = 1;
const OF13: u8 = 4;
const OF14: u8 = 5;
const OF15: u8 = 6;

/// The wire version of a `protocols` name (`OpenFlow10` … `OpenFlow15`, as OVS names them).
pub fn of_version(name: &str) -> Option<u8> {
    Some(match name {
        "OpenFlow10" => 1,
        "OpenFlow11" => 2,
        "OpenFlow12" => 3,
        "OpenFlow13" => 4,
        "OpenFlow14" => 5,
        "OpenFlow15" => 6,
        _ => return None,
    })
}

/// A list written as one string (how a single controller target was kept) or as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// `fail_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Standalone,
    Secure,
}

impl FailMode {
    pub fn parse(s: &str) -> Result<FailMode, ConfigError> {
        match s {
            "standalone" => Ok(FailMode::Standalone),
            "secure" => Ok(FailMode::Secure),
            _ => Err(ConfigError::BadSetting(format!("fail_mode={s:?}: it is standalone or secure"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Standalone => "standalone",
            FailMode::Secure => "secure",
        }
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

pub(super) fn one() -> u64 {
    1
}

/// A flow of a bridge, with the identity its counters are kept under and when it was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFlow {
    pub id: u64,
    /// Seconds since the epoch.
    pub added: u64,
    pub flow: crate::flow::Flow,
}

/// The one flow of a new bridge: `priority=0 actions=NORMAL`, as Open vSwitch installs.
pub fn default_flows() -> Vec<StoredFlow> {
    let flow = crate::flow::parse("priority=0,actions=NORMAL", &|_| None).expect("the default flow parses");
    vec![StoredFlow { id: 0, added: now_secs(), flow }]
}

pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// MAC addresses in JSON as "02:00:5e:10:00:01".
pub mod mac_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use weft_wire::EthernetAddress;

    pub fn serialize<S: Serializer>(mac: &EthernetAddress, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(mac)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EthernetAddress, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A static FDB entry, as `weft fdb add BR MAC PORT [dst IP] [vlan N]` sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticFdb {
    #[serde(with = "mac_text")]
    pub mac: EthernetAddress,
    #[serde(default)]
    pub vlan: u16,
    pub port: String,
    /// For a tunnel port: the remote VTEP the MAC sits behind (defaults to the port's remote_ip).
    #[serde(default)]
    pub dst: Option<IpAddr>,
}

/// `other_config:datapath-id`: exactly 16 hex digits (optionally after `0x`), not zero — what OVS takes.
pub fn parse_datapath_id(v: &str) -> Option<u64> {
    let hex = v.strip_prefix("0x").unwrap_or(v);
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().filter(|&id| id != 0)
}

/// The datapath ID of a bridge without `other_config:datapath-id`: stable per name, in 48 bits.
pub fn name_datapath_id(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
        & 0xffff_ffff_ffff
}

impl BridgeConfig {
    /// The OpenFlow versions (wire numbers, as a HELLO bitmap) this bridge's connections may use: those of
    /// `protocols` weft speaks, or 1.0 and 1.3.
    pub fn of_versions(&self) -> u32 {
        let all = (1 << OF10) | (1 << OF13) | (1 << OF14) | (1 << OF15);
        if self.protocols.is_empty() {
            return all;
        }
        self.protocols.iter().filter_map(|p| of_version(p)).fold(0, |m, v| m | 1 << v) & all
    }

    /// The OpenFlow datapath ID: `other_config:datapath-id` if set, else one derived from the name (stable, in
    /// 48 bits like a MAC-derived ID).
    pub fn datapath_id(&self) -> u64 {
        if let Some(id) = self.other_config.get("datapath-id").and_then(|v| parse_datapath_id(v)) {
            return id;
        }
        name_datapath_id(&self.name)
    }

    pub fn mac_aging_time(&self) -> u32 {
        self.other_config
            .get("mac-aging-time")
            .and_then(|v| v.parse().ok())
            .unwrap_or(weft_datapath_defaults::AGING_SECS)
    }

    pub fn mac_table_size(&self) -> usize {
        self.other_config
            .get("mac-table-size")
            .and_then(|v| v.parse().ok())
            .unwrap_or(weft_datapath_defaults::TABLE_SIZE)
    }
}

/// Which control plane fills a bridge's `remote_ip=flow` tunnels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlPlane {
    Etcd,
    Evpn,
}

/// A secret setting (a password): kept as given, shown by `Debug` as "(hidden)".
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HIDDEN)
    }
}

/// TLS towards etcd (`https://` endpoints): the CA that signed the servers' certificates, and a client
/// certificate and key when the cluster asks for one (`--client-cert-auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca_cert: String,
    pub cert_key: Option<(String, String)>,
}

/// A bridge's etcd settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSpec {
    pub endpoints: Vec<String>,
    /// Keys live under this prefix (default `/weft/`); hosts sharing it form one overlay.
    pub prefix: String,
    /// Lease time to live in seconds (default 10): how long a dead host's entries outlive it.
    pub ttl: u64,
    /// `https://` endpoints: how to check them and how to show who we are.
    pub tls: Option<EtcdTls>,
    /// etcd authentication (`etcd-user`, `etcd-password`).
    pub user: Option<(String, Secret)>,
}

/// A bridge's BGP EVPN settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvpnSpec {
    pub asn: u32,
    pub router_id: std::net::Ipv4Addr,
    /// Route reflectors weft connects to (TCP port 179).
    pub peers: Vec<IpAddr>,
    /// Hold time offered in OPEN (default 9 s: keepalives every 3 s, as FRR's data-centre profile).
    pub hold: u16,
    /// `other_config:bgp-password`: TCP MD5 signatures (RFC 2385) on the sessions, as FRR's
    /// `neighbor … password`.
    pub password: Option<Secret>,
}

impl BridgeConfig {
    /// `other_config:control-plane`: `None` for a bridge on its own (the default).
    pub(super) fn control_plane(&self) -> Option<ControlPlane> {
        match self.other_config.get("control-plane").map(String::as_str) {
            Some("etcd") => Some(ControlPlane::Etcd),
            Some("evpn") => Some(ControlPlane::Evpn),
            _ => None,
        }
    }

    /// The etcd settings, when `control-plane=etcd`.
    pub(super) fn etcd(&self) -> Result<Option<EtcdSpec>, ConfigError> {
        if self.control_plane() != Some(ControlPlane::Etcd) {
            return Ok(None);
        }
        let bad = |k: &str, v: &str, why: &str| {
            let v = if is_secret(k) { HIDDEN } else { v };
            ConfigError::BadSetting(format!("other_config:{k}={v:?}: {why}"))
        };
        let urls = self.other_config.get("etcd-endpoints").ok_or_else(|| {
            ConfigError::BadSetting(
                "control-plane=etcd needs other_config:etcd-endpoints=http[s]://HOST:PORT[,http[s]://HOST:PORT...]"
                    .into(),
            )
        })?;
        let mut endpoints = Vec::new();
        let mut schemes = BTreeSet::new();
        for u in urls.split(',').map(str::trim) {
            let (scheme, rest) = u
                .split_once("://")
                .filter(|(s, _)| matches!(*s, "http" | "https"))
                .ok_or_else(|| bad("etcd-endpoints", u, "expected http://HOST:PORT or https://HOST:PORT"))?;
            schemes.insert(scheme);
            let rest = rest.trim_end_matches('/');
            let port_ok = match rest.rsplit_once(':') {
                Some((_, p)) => p.parse::<u16>().is_ok_and(|p| p > 0),
                None => true,
            };
            if rest.is_empty() || rest.contains('/') || !port_ok {
                return Err(bad("etcd-endpoints", u, "expected http[s]://HOST:PORT"));
            }
            endpoints.push(u.to_string());
        }
        if schemes.len() > 1 {
            return Err(bad("etcd-endpoints", urls, "mixes http:// and https:// endpoints: use one"));
        }
        let get = |k: &str| self.other_config.get(k).filter(|v| !v.is_empty());
        let file = |k: &str| -> Result<Option<String>, ConfigError> {
            match get(k) {
                None => Ok(None),
                Some(path) if !path.starts_with('/') => Err(bad(k, path, "must be an absolute path")),
                Some(path) => match std::fs::File::open(path) {
                    Ok(_) => Ok(Some(path.clone())),
                    Err(e) => Err(bad(k, path, &format!("cannot be read: {e}"))),
                },
            }
        };
        let (ca, cert, key) = (file("etcd-ca-cert")?, file("etcd-cert")?, file("etcd-key")?);
        let tls = if schemes.contains("https") {
            let ca_cert = ca.ok_or_else(|| {
                bad("etcd-endpoints", urls, "https:// needs other_config:etcd-ca-cert=PATH (the CA of the servers)")
            })?;
            let cert_key = match (cert, key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => return Err(bad("etcd-cert", get("etcd-cert").map_or("", |s| s), "and etcd-key go together")),
            };
            Some(EtcdTls { ca_cert, cert_key })
        } else {
            if let Some(k) = ["etcd-ca-cert", "etcd-cert", "etcd-key"].into_iter().find(|k| get(k).is_some()) {
                return Err(bad(k, get(k).map_or("", |s| s), "only applies to https:// endpoints"));
            }
            None
        };
        let user = match (get("etcd-user"), get("etcd-password")) {
            (Some(u), Some(p)) => Some((u.clone(), Secret(p.clone()))),
            (None, None) => None,
            (Some(u), None) => return Err(bad("etcd-user", u, "needs other_config:etcd-password")),
            (None, Some(p)) => return Err(bad("etcd-password", p, "needs other_config:etcd-user")),
        };
        let prefix = self.other_config.get("etcd-prefix").cloned().unwrap_or_else(|| "/weft/".into());
        if !prefix.starts_with('/') || !prefix.ends_with('/') || prefix.chars().any(char::is_whitespace) {
            return Err(bad("etcd-prefix", &prefix, "must start and end with / and hold no spaces"));
        }
        let ttl = match self.other_config.get("etcd-ttl") {
            None => 10,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (3..=3600).contains(&n) => n,
                _ => return Err(bad("etcd-ttl", v, "expected seconds in 3..=3600")),
            },
        };
        Ok(Some(EtcdSpec { endpoints, prefix, ttl, tls, user }))
    }

    /// The BGP EVPN settings, when `control-plane=evpn`.
    pub(super) fn evpn(&self) -> Result<Option<EvpnSpec>, ConfigError> {
        if self.control_plane() != Some(ControlPlane::Evpn) {
            return Ok(None);
        }
        let bad = |k: &str, v: &str, why: &str| ConfigError::BadSetting(format!("other_config:{k}={v:?}: {why}"));
        let need = |k: &str| {
            self.other_config
                .get(k)
                .ok_or_else(|| ConfigError::BadSetting(format!("control-plane=evpn needs other_config:{k}")))
        };
        let asn = need("bgp-asn")?;
        let asn = match asn.parse::<u32>() {
            Ok(n) if n > 0 && n != 23456 => n,
            _ => return Err(bad("bgp-asn", asn, "expected an AS number in 1..=4294967295 (not 23456)")),
        };
        let rid = need("bgp-router-id")?;
        let router_id: std::net::Ipv4Addr =
            rid.parse().map_err(|_| bad("bgp-router-id", rid, "expected an IPv4 address"))?;
        if router_id.is_unspecified() || router_id.is_broadcast() || router_id.is_multicast() {
            return Err(bad("bgp-router-id", rid, "must be a unicast IPv4 address"));
        }
        let text = need("bgp-peers")?;
        let mut peers = Vec::new();
        for p in text.split(',').map(str::trim) {
            let ip: IpAddr = p.parse().map_err(|_| bad("bgp-peers", p, "expected IP addresses, comma separated"))?;
            if ip.is_unspecified() || ip.is_multicast() || peers.contains(&ip) {
                return Err(bad("bgp-peers", p, "must be distinct unicast addresses"));
            }
            peers.push(ip);
        }
        let hold =
            match self.other_config.get("bgp-hold-time") {
                None => 9,
                Some(v) => match v.parse::<u16>() {
                    Ok(n) if n >= MIN_BGP_HOLD => n,
                    _ => return Err(bad(
                        "bgp-hold-time",
                        v,
                        "expected 3..=65535 seconds (0, no keepalives, would leave a dead reflector's routes in place)",
                    )),
                },
            };
        let password = match self.other_config.get("bgp-password").filter(|v| !v.is_empty()) {
            None => None,
            Some(p) if p.len() <= 80 => Some(Secret(p.clone())),
            Some(_) => return Err(bad("bgp-password", HIDDEN, "must be 1 to 80 characters (the TCP MD5 key)")),
        };
        Ok(Some(EvpnSpec { asn, router_id, peers, hold, password }))
    }

    /// Checks the control-plane settings as a whole.
    pub(super) fn check_control_plane(&self) -> Result<Option<CpSpec>, ConfigError> {
        if let Some(v) = self.other_config.get("control-plane") {
            if !matches!(v.as_str(), "etcd" | "evpn" | "none") {
                return Err(ConfigError::BadSetting(format!(
                    "other_config:control-plane={v:?}: expected etcd, evpn or none"
                )));
            }
        }
        let etcd = self.etcd()?.map(CpSpec::Etcd);
        let evpn = self.evpn()?.map(CpSpec::Evpn);
        Ok(etcd.or(evpn))
    }
}

/// Defaults shared with the datapath (kept here so the API crate does not depend on it).
pub mod weft_datapath_defaults {
    pub const AGING_SECS: u32 = 300;
    pub const TABLE_SIZE: usize = 8192;
}
