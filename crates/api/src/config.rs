//! The desired state: bridges, their ports and the ports' options, as users set them with the CLI.
//!
//! Every change is made on a copy with the `Config` methods below and checked whole with
//! [`Config::validate`] before the daemon persists or applies anything, so a rejected command changes nothing.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use weft_wire::vlan::VID_MAX;
use weft_wire::vxlan::VNI_MAX;
use weft_wire::EthernetAddress;

/// Largest ofport number (OpenFlow's OFPP_MAX).
pub const OFPORT_MAX: u32 = 0xffff_ff00;
/// Longest interface name Linux accepts.
pub const IFNAME_MAX: usize = 15;

/// Why a change was refused. The text is what the user sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("bridge {0:?} already exists")]
    BridgeExists(String),
    #[error("no bridge named {0:?}")]
    NoSuchBridge(String),
    #[error("port {port:?} already exists on bridge {bridge:?}")]
    PortExists { port: String, bridge: String },
    #[error("no port named {0:?}")]
    NoSuchPort(String),
    #[error("port {port:?} is on bridge {actual:?}, not {given:?}")]
    WrongBridge { port: String, given: String, actual: String },
    #[error("{0:?} is the internal port of bridge {0:?}; remove it with del-br")]
    InternalPort(String),
    #[error("{0}")]
    BadName(String),
    #[error("unknown interface type {0:?} (expected one of: system, tap, internal, vxlan, geneve, gre)")]
    UnknownType(String),
    #[error("interface type {0:?} is not supported by this version of weft")]
    UnsupportedType(String),
    #[error("unknown option {key:?} for a {ty} interface (known: {known})")]
    UnknownOption { key: String, ty: String, known: String },
    #[error("option {key}={value:?}: {why}")]
    BadOption { key: String, value: String, why: String },
    #[error("{0}")]
    BadSetting(String),
    #[error("{0}")]
    Conflict(String),
}

/// Interface kinds (`type=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IfaceType {
    /// An existing netdev (veth end, NIC), attached with AF_PACKET.
    #[default]
    System,
    /// A TAP device weft creates.
    Tap,
    /// Like `tap`, meant for the host's own IP; every bridge has one named after it.
    Internal,
    /// A VXLAN tunnel (RFC 7348).
    Vxlan,
    /// A Geneve tunnel (RFC 8926).
    Geneve,
    /// Ethernet over GRE (RFC 2784, 2890), what Linux calls gretap and Open vSwitch `type=gre`.
    Gre,
    /// GRE protected by IPsec, as Open vSwitch 2.x spelled it (`type=ipsec_gre`, `options:psk` required):
    /// the same as `type=gre` with a psk, kept and shown as the user wrote it.
    #[serde(rename = "ipsec_gre")]
    IpsecGre,
}

impl IfaceType {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "" | "system" => Ok(IfaceType::System),
            "tap" => Ok(IfaceType::Tap),
            "internal" => Ok(IfaceType::Internal),
            "vxlan" => Ok(IfaceType::Vxlan),
            "geneve" => Ok(IfaceType::Geneve),
            "gre" => Ok(IfaceType::Gre),
            "ipsec_gre" => Ok(IfaceType::IpsecGre),
            "gretap" | "ip6gre" | "stt" | "lisp" | "erspan" | "ip6erspan" | "gtpu" | "bareudp" | "vxlan-gpe" => {
                Err(ConfigError::UnsupportedType(s.to_string()))
            }
            other => Err(ConfigError::UnknownType(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IfaceType::System => "system",
            IfaceType::Tap => "tap",
            IfaceType::Internal => "internal",
            IfaceType::Vxlan => "vxlan",
            IfaceType::Geneve => "geneve",
            IfaceType::Gre => "gre",
            IfaceType::IpsecGre => "ipsec_gre",
        }
    }

    pub fn is_tunnel(self) -> bool {
        matches!(self, IfaceType::Vxlan | IfaceType::Geneve | IfaceType::Gre | IfaceType::IpsecGre)
    }

    /// The `options:` keys an interface of this type accepts.
    pub fn known_options(self) -> &'static [&'static str] {
        match self {
            IfaceType::Vxlan => &[
                "remote_ip",
                "key",
                "dst_port",
                "local_ip",
                "dev",
                "proxy",
                "ttl",
                "tos",
                "df_default",
                "psk",
                "psk_file",
                "ipsec_mode",
                "ipsec_encap",
                "ipsec_lifetime",
                "ipsec_rekey_bytes",
            ],
            IfaceType::Geneve => &[
                "remote_ip",
                "key",
                "dst_port",
                "local_ip",
                "dev",
                "proxy",
                "ttl",
                "tos",
                "df_default",
                "geneve_opts",
                "psk",
                "psk_file",
                "ipsec_mode",
                "ipsec_encap",
                "ipsec_lifetime",
                "ipsec_rekey_bytes",
            ],
            IfaceType::Gre | IfaceType::IpsecGre => &[
                "remote_ip",
                "key",
                "local_ip",
                "proxy",
                "ttl",
                "tos",
                "df_default",
                "csum",
                "seq",
                "psk",
                "psk_file",
                "ipsec_mode",
                "ipsec_encap",
                "ipsec_lifetime",
                "ipsec_rekey_bytes",
            ],
            IfaceType::System | IfaceType::Tap | IfaceType::Internal => &[],
        }
    }
}

impl fmt::Display for IfaceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A port's VLAN settings, as Open vSwitch's Port columns: `tag` makes it an access port of that VLAN;
/// otherwise it is a trunk of the VLANs in `trunks` (all of them when empty; VLAN 0 = untagged frames).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortVlan {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trunks: Vec<u16>,
    /// The Port row's `external_ids`: free-form keys integrations (libvirt, os-vif, Neutron) set and read back.
    #[serde(default, rename = "port_external_ids", skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: BTreeMap<String, String>,
}

/// `external_ids:KEY` or `external-ids:KEY` (ovs-vsctl takes both spellings): the key, if `k` is one.
pub fn external_id_key(k: &str) -> Option<&str> {
    k.strip_prefix("external_ids:").or_else(|| k.strip_prefix("external-ids:"))
}

/// Sets (or, with an empty value, removes) one external id.
fn set_external_id(map: &mut BTreeMap<String, String>, key: &str, v: &str) -> Result<(), ConfigError> {
    if key.is_empty() {
        return Err(ConfigError::BadSetting("empty key in \"external_ids:\"".to_string()));
    }
    if v.is_empty() {
        map.remove(key);
    } else {
        map.insert(key.to_string(), v.to_string());
    }
    Ok(())
}

impl PortVlan {
    pub fn is_empty(&self) -> bool {
        self.tag.is_none() && self.trunks.is_empty() && self.external_ids.is_empty()
    }

    /// Applies `tag=N` and `trunks=N,M` / `trunks=[N,M]` (empty: all VLANs).
    pub fn apply(&mut self, settings: &[(String, String)]) -> Result<(), ConfigError> {
        for (k, v) in settings {
            if let Some(key) = external_id_key(k) {
                set_external_id(&mut self.external_ids, key, v)?;
                continue;
            }
            match k.as_str() {
                "tag" => {
                    let tag = v.parse::<u16>().ok().filter(|t| (1..=VID_MAX).contains(t)).ok_or_else(|| {
                        ConfigError::BadSetting(format!(
                            "tag={v:?}: expected a VLAN ID in 1..={VID_MAX} (remove the tag with 'clear port PORT tag')"
                        ))
                    })?;
                    self.tag = Some(tag);
                }
                "trunks" => {
                    let list = v.trim().trim_start_matches('[').trim_end_matches(']');
                    let mut trunks = Vec::new();
                    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                        let vid = item.parse::<u16>().ok().filter(|t| *t <= VID_MAX).ok_or_else(|| {
                            ConfigError::BadSetting(format!("trunks={v:?}: {item:?} is not a VLAN ID in 0..={VID_MAX}"))
                        })?;
                        if !trunks.contains(&vid) {
                            trunks.push(vid);
                        }
                    }
                    trunks.sort_unstable();
                    self.trunks = trunks;
                }
                other => {
                    return Err(ConfigError::BadSetting(format!(
                    "unknown port setting {other:?} (known: tag, trunks, external_ids:KEY; interface settings go with 'set interface')"
                )))
                }
            }
        }
        Ok(())
    }

    /// `clear port PORT COLUMN…`.
    pub fn clear(&mut self, columns: &[String]) -> Result<(), ConfigError> {
        for c in columns {
            match c.as_str() {
                "tag" => self.tag = None,
                "trunks" => self.trunks.clear(),
                other => return Err(ConfigError::BadSetting(format!("cannot clear {other:?} (known: tag, trunks)"))),
            }
        }
        Ok(())
    }

    fn validate(&self, port: &str) -> Result<(), ConfigError> {
        if self.tag.is_some() && !self.trunks.is_empty() {
            return Err(ConfigError::BadSetting(format!(
                "port {port:?} has both tag (an access port) and trunks (a trunk port); weft supports one or the other"
            )));
        }
        Ok(())
    }
}

/// One port of a bridge and its interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortConfig {
    pub name: String,
    pub ofport: u32,
    #[serde(rename = "type")]
    pub iface_type: IfaceType,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(flatten)]
    pub vlan: PortVlan,
    /// The Interface row's `external_ids` (libvirt's `iface-id`, `attached-mac`, `vm-uuid`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: BTreeMap<String, String>,
}

pub use weft_datapath::tunnel::{Encap, Inherit, IpsecShape, TunnelSpec, ESP_OVERHEAD};

/// A tunnel port's IPsec settings (`options:psk` and the `ipsec_*` options). Its `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct IpsecSpec {
    pub psk: String,
    pub shape: IpsecShape,
    /// Child SAs are rekeyed after this many seconds (`ipsec_lifetime`, default 3600; the IKE SA after four
    /// times as long) or after this many bytes (`ipsec_rekey_bytes`, default 0: no byte limit).
    pub lifetime_secs: u64,
    pub rekey_bytes: u64,
}

impl fmt::Debug for IpsecSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpsecSpec")
            .field("psk", &HIDDEN)
            .field("shape", &self.shape)
            .field("lifetime_secs", &self.lifetime_secs)
            .field("rekey_bytes", &self.rekey_bytes)
            .finish()
    }
}

fn encap_name(e: Encap) -> &'static str {
    match e {
        Encap::Vxlan => "vxlan",
        Encap::Geneve => "geneve",
        Encap::Gre => "gre",
    }
}

/// Bytes from hex digits (an even number of them); `None` for anything else.
pub fn parse_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((0..hex.len()).step_by(2).filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect())
}

/// Parses `options:geneve_opts`: comma-separated `CLASS:TYPE:DATA` with class and type as numbers (decimal or
/// 0x-hex; a type of 0x80 or more is critical) and data as hex digits, a multiple of 4 bytes (may be empty).
/// Returns the encoded options area.
pub fn parse_geneve_opts(text: &str) -> Result<Vec<u8>, ConfigError> {
    let err = |why: String| bad("geneve_opts", text, why);
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let parts: Vec<&str> = item.split(':').collect();
        if parts.len() != 3 {
            return Err(err(format!("{item:?} is not CLASS:TYPE:DATA (for example 0x0102:0x80:0a0b0c0d)")));
        }
        let num = |t: &str, max: u32| -> Option<u32> {
            let v = match t.strip_prefix("0x") {
                Some(h) => u32::from_str_radix(h, 16).ok()?,
                None => t.parse().ok()?,
            };
            (v <= max).then_some(v)
        };
        let class = num(parts[0], 0xffff).ok_or_else(|| err(format!("class {:?} is not in 0..=0xffff", parts[0])))?;
        let kind = num(parts[1], 0xff).ok_or_else(|| err(format!("type {:?} is not in 0..=0xff", parts[1])))?;
        let hex = parts[2].strip_prefix("0x").unwrap_or(parts[2]);
        let data =
            parse_hex(hex).ok_or_else(|| err(format!("data {:?} is not an even number of hex digits", parts[2])))?;
        weft_wire::geneve::encode_option(class as u16, kind as u8, &data, &mut out)
            .map_err(|_| err(format!("data of {item:?} must be a multiple of 4 bytes, at most 124")))?;
    }
    if out.len() > weft_wire::geneve::OPTIONS_MAX {
        return Err(err(format!("{} bytes of options; Geneve carries at most 252", out.len())));
    }
    Ok(out)
}

fn parse_bool(key: &str, v: Option<&str>) -> Result<bool, ConfigError> {
    match v {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(bad(key, v, "expected true or false")),
    }
}

fn parse_inherit(key: &str, v: Option<&str>, min: u32) -> Result<Inherit, ConfigError> {
    let Some(v) = v else { return Ok(Inherit::Default) };
    if v == "inherit" {
        return Ok(Inherit::Inherit);
    }
    let n = match v.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    };
    match n {
        Some(n) if (min..=255).contains(&n) => Ok(Inherit::Value(n as u8)),
        _ => Err(bad(key, v, format!("expected a number in {min}..=255 or \"inherit\""))),
    }
}

fn bad(key: &str, value: &str, why: impl Into<String>) -> ConfigError {
    let value = if is_secret(key) { HIDDEN } else { value };
    ConfigError::BadOption { key: key.to_string(), value: value.to_string(), why: why.into() }
}

/// What a secret shows as in logs, errors, replies and `show`.
pub const HIDDEN: &str = "(hidden)";

/// Settings whose values are secrets (`options:psk`, `other_config:etcd-password` and `bgp-password`, with or
/// without their
/// column prefix): never logged, echoed in an error or shown.
pub fn is_secret(key: &str) -> bool {
    let name = key.rsplit_once(':').map_or(key, |(_, n)| n);
    matches!(name, "psk" | "etcd-password" | "bgp-password")
}

impl PortConfig {
    /// The remote VTEPs of a tunnel port: `options:remote_ip=IP[,IP...]`, unicast, one family, no repeats.
    /// With several, flooded frames go to each (head-end replication) and learned unicast to one.
    /// `remote_ip=flow` gives none: the bridge's control plane (or flows' `set_field:IP->tun_dst`) names them.
    pub fn remotes(&self) -> Result<Vec<IpAddr>, ConfigError> {
        let text = self.options.get("remote_ip").ok_or_else(|| {
            ConfigError::BadSetting(format!(
                "tunnel port {:?} needs options:remote_ip=IP (or remote_ip=flow)",
                self.name
            ))
        })?;
        if text == "flow" {
            return Ok(Vec::new());
        }
        let mut out: Vec<IpAddr> = Vec::new();
        for item in text.split(',') {
            let ip: IpAddr = item.trim().parse().map_err(|_| bad("remote_ip", item, "not an IPv4 or IPv6 address"))?;
            if ip.is_unspecified() {
                return Err(bad("remote_ip", item, "must be a unicast or multicast address"));
            }
            if ip.is_multicast() && matches!(self.iface_type, IfaceType::Gre | IfaceType::IpsecGre) {
                return Err(bad("remote_ip", item, "GRE tunnels need a unicast remote (no multicast groups)"));
            }
            if ip.is_multicast() && text.contains(',') {
                return Err(bad("remote_ip", text, "a multicast group cannot be combined with other remotes"));
            }
            if ip.is_multicast() && !self.options.contains_key("dev") {
                return Err(bad(
                    "remote_ip",
                    item,
                    "a multicast group needs options:dev=IFNAME (the underlay interface)",
                ));
            }
            if out.first().is_some_and(|first| first.is_ipv4() != ip.is_ipv4()) {
                return Err(bad("remote_ip", text, "mixes IPv4 and IPv6 addresses"));
            }
            if out.contains(&ip) {
                return Err(bad("remote_ip", text, format!("lists {ip} twice")));
            }
            out.push(ip);
        }
        Ok(out)
    }

    /// `options:remote_ip=flow`: the remote VTEPs come from the bridge's control plane or from flows.
    pub fn is_flow(&self) -> bool {
        self.options.get("remote_ip").is_some_and(|v| v == "flow")
    }

    /// `options:proxy=true`: ARP requests and neighbour solicitations for addresses weft knows are answered
    /// locally instead of being flooded through this tunnel.
    pub fn proxy(&self) -> bool {
        self.options.get("proxy").is_some_and(|v| v == "true")
    }

    /// Every VTEP a tunnel port floods to: its remotes, plus the `dst` of each default entry
    /// (00:00:00:00:00:00, as `bridge fdb append` adds them) of `bridge` on this port.
    pub fn flood_remotes(&self, bridge: &BridgeConfig) -> Result<Vec<IpAddr>, ConfigError> {
        let mut all = self.remotes()?;
        for e in bridge.fdb.iter().filter(|e| e.port == self.name && e.mac == EthernetAddress::ZERO) {
            if let Some(dst) = e.dst.filter(|d| !all.contains(d)) {
                all.push(dst);
            }
        }
        Ok(all)
    }

    /// The encoded Geneve options a tunnel port sends (empty for other ports or none configured).
    pub fn geneve_options(&self) -> Result<Vec<u8>, ConfigError> {
        match (self.iface_type, self.options.get("geneve_opts")) {
            (IfaceType::Geneve, Some(o)) => parse_geneve_opts(o),
            _ => Ok(Vec::new()),
        }
    }

    /// Parses a tunnel port's options. `Ok(None)` for ports that are not tunnels.
    pub fn tunnel(&self) -> Result<Option<TunnelSpec>, ConfigError> {
        let encap = match self.iface_type {
            IfaceType::Vxlan => Encap::Vxlan,
            IfaceType::Geneve => Encap::Geneve,
            IfaceType::Gre | IfaceType::IpsecGre => Encap::Gre,
            IfaceType::System | IfaceType::Tap | IfaceType::Internal => return Ok(None),
        };
        let get = |k: &str| self.options.get(k).map(String::as_str);
        let flow = self.is_flow();
        let remote = match self.remotes()?.first() {
            Some(r) => *r,
            // remote_ip=flow: the family is local_ip's (IPv4 without one); the address itself is never used.
            None => match get("local_ip").and_then(|l| l.parse::<IpAddr>().ok()) {
                Some(IpAddr::V6(_)) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            },
        };
        // VNIs have 24 bits; a GRE key has 32.
        let (max, what) = if encap == Encap::Gre { (u32::MAX, "GRE key") } else { (VNI_MAX, "VNI") };
        let vni = match get("key") {
            None => 0,
            Some(k) => {
                let v: u64 = match k.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16),
                    None => k.parse(),
                }
                .map_err(|_| bad("key", k, format!("not a number in 0..={max}")))?;
                if v > u64::from(max) {
                    return Err(bad("key", k, format!("{what} {v} is out of range 0..={max}")));
                }
                v as u32
            }
        };
        let options_len = match (encap, get("geneve_opts")) {
            (Encap::Geneve, Some(o)) => parse_geneve_opts(o)?.len() as u16,
            _ => 0,
        };
        let dst_port = match get("dst_port") {
            None if encap == Encap::Gre => 0,
            None if encap == Encap::Geneve => weft_wire::geneve::PORT,
            None => weft_wire::vxlan::PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad("dst_port", p, "not a UDP port in 1..=65535")),
                Ok(v) => v,
            },
        };
        let local = match get("local_ip") {
            None => None,
            Some(l) => {
                let ip: IpAddr = l.parse().map_err(|_| bad("local_ip", l, "not an IPv4 or IPv6 address"))?;
                if ip.is_ipv4() != remote.is_ipv4() {
                    return Err(bad("local_ip", l, format!("is not of the same family as remote_ip {remote}")));
                }
                Some(ip)
            }
        };
        parse_bool("proxy", get("proxy"))?;
        if let Some(dev) = get("dev") {
            check_ifname("dev", dev).map_err(|e| bad("dev", dev, e.to_string()))?;
        }
        if remote.is_multicast() && local.is_some() {
            return Err(bad(
                "local_ip",
                get("local_ip").unwrap_or_default(),
                "cannot be combined with a multicast group",
            ));
        }
        Ok(Some(TunnelSpec {
            encap,
            remote,
            flow,
            vni,
            keyed: encap == Encap::Gre && get("key").is_some(),
            dst_port,
            local,
            options_len,
            csum: parse_bool("csum", get("csum"))?,
            seq: parse_bool("seq", get("seq"))?,
            ttl: parse_inherit("ttl", get("ttl"), 1)?,
            tos: parse_inherit("tos", get("tos"), 0)?,
            df: parse_bool("df_default", get("df_default"))?,
            ipsec: self.ipsec()?.map(|i| i.shape),
        }))
    }

    /// Parses the IPsec options of a tunnel port: `None` without `options:psk`.
    pub fn ipsec(&self) -> Result<Option<IpsecSpec>, ConfigError> {
        let get = |k: &str| self.options.get(k).map(String::as_str);
        let (psk, psk_key) = match (get("psk"), get("psk_file")) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "psk_file",
                    get("psk_file").unwrap_or_default(),
                    "and options:psk both give the key: set one",
                ))
            }
            (Some(p), None) => (p.to_string(), "psk"),
            (None, Some(path)) => (read_psk_file(path)?, "psk_file"),
            (None, None) if self.iface_type == IfaceType::IpsecGre => {
                return Err(bad(
                    "type",
                    "ipsec_gre",
                    "is GRE protected by IPsec: it needs options:psk (or options:psk_file)",
                ))
            }
            (None, None) => {
                for k in ["ipsec_mode", "ipsec_encap", "ipsec_lifetime", "ipsec_rekey_bytes"] {
                    if let Some(v) = get(k) {
                        return Err(bad(k, v, "only applies with options:psk or options:psk_file (IPsec)"));
                    }
                }
                return Ok(None);
            }
        };
        if psk.is_empty() || psk.len() > 256 {
            return Err(bad(psk_key, HIDDEN, "must be 1 to 256 characters"));
        }
        let remotes = self.remotes()?;
        if remotes.len() != 1 || remotes[0].is_multicast() {
            return Err(bad(
                psk_key,
                HIDDEN,
                "IPsec protects a tunnel to one remote_ip; it cannot be used with a multicast group or a list",
            ));
        }
        let tunnel = match get("ipsec_mode") {
            None | Some("transport") => false,
            Some("tunnel") => true,
            Some(v) => return Err(bad("ipsec_mode", v, "is neither transport nor tunnel")),
        };
        let udp = match get("ipsec_encap") {
            None | Some("udp") => true,
            Some("esp") => false,
            Some(v) => {
                return Err(bad("ipsec_encap", v, "is neither udp (ESP in UDP port 4500) nor esp (IP protocol 50)"))
            }
        };
        let number = |k: &str, default: u64, min: u64| -> Result<u64, ConfigError> {
            match get(k) {
                None => Ok(default),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if n >= min => Ok(n),
                    _ => Err(bad(k, v, format!("not a whole number of at least {min}"))),
                },
            }
        };
        Ok(Some(IpsecSpec {
            psk,
            shape: IpsecShape { tunnel, udp },
            lifetime_secs: number("ipsec_lifetime", 3600, 10)?,
            rekey_bytes: number("ipsec_rekey_bytes", 0, 0)?,
        }))
    }
}

/// The pre-shared key in `options:psk_file=PATH`: the file's first line (a trailing newline and spaces are
/// not part of the key), so the key need not appear on a command line or in the database.
fn read_psk_file(path: &str) -> Result<String, ConfigError> {
    if !path.starts_with('/') {
        return Err(bad("psk_file", path, "must be an absolute path"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad("psk_file", path, format!("cannot be read: {e}")))?;
    let key = text.lines().next().unwrap_or("").trim_end();
    if key.is_empty() || key.len() > 256 {
        return Err(bad("psk_file", path, "must hold a key of 1 to 256 characters on its first line"));
    }
    Ok(key.to_string())
}

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
    /// Flow tables (`add-flow`); a new bridge has `priority=0 actions=NORMAL`.
    #[serde(default = "default_flows")]
    pub flows: Vec<StoredFlow>,
    #[serde(default = "one")]
    pub next_flow_id: u64,
    /// OpenFlow controller connection (`set-controller`): `ptcp:PORT[:IP]` (weftd listens) or `tcp:IP[:PORT]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// The Bridge row's `external_ids`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: BTreeMap<String, String>,
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

fn one() -> u64 {
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

fn now_secs() -> u64 {
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

impl BridgeConfig {
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
    pub fn control_plane(&self) -> Option<ControlPlane> {
        match self.other_config.get("control-plane").map(String::as_str) {
            Some("etcd") => Some(ControlPlane::Etcd),
            Some("evpn") => Some(ControlPlane::Evpn),
            _ => None,
        }
    }

    /// The etcd settings, when `control-plane=etcd`.
    pub fn etcd(&self) -> Result<Option<EtcdSpec>, ConfigError> {
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
    pub fn evpn(&self) -> Result<Option<EvpnSpec>, ConfigError> {
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
    fn check_control_plane(&self) -> Result<(), ConfigError> {
        if let Some(v) = self.other_config.get("control-plane") {
            if !matches!(v.as_str(), "etcd" | "evpn" | "none") {
                return Err(ConfigError::BadSetting(format!(
                    "other_config:control-plane={v:?}: expected etcd, evpn or none"
                )));
            }
        }
        self.etcd()?;
        self.evpn()?;
        Ok(())
    }
}

/// Defaults shared with the datapath (kept here so the API crate does not depend on it).
pub mod weft_datapath_defaults {
    pub const AGING_SECS: u32 = 300;
    pub const TABLE_SIZE: usize = 8192;
}

/// The whole desired state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub bridges: Vec<BridgeConfig>,
    /// `set-ssl PRIVKEY CERT CACERT`: the key and certificate weftd shows on `ssl:`/`pssl:` OpenFlow
    /// connections, and the CA their peers' certificates must chain to (Open vSwitch's SSL table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl: Option<SslConfig>,
}

/// PEM files for OpenFlow over TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SslConfig {
    pub private_key: String,
    pub certificate: String,
    pub ca_cert: String,
}

impl SslConfig {
    /// Checks that each file is named by an absolute path and can be read now.
    pub fn check(&self) -> Result<(), ConfigError> {
        for (what, path) in
            [("private key", &self.private_key), ("certificate", &self.certificate), ("CA certificate", &self.ca_cert)]
        {
            if !path.starts_with('/') {
                return Err(ConfigError::BadSetting(format!("set-ssl: the {what} {path:?} must be an absolute path")));
            }
            if let Err(e) = std::fs::File::open(path) {
                return Err(ConfigError::BadSetting(format!("set-ssl: the {what} {path} cannot be read: {e}")));
            }
        }
        Ok(())
    }
}

/// Checks a name used for a bridge or port (they become interface names).
pub fn check_ifname(kind: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > IFNAME_MAX {
        return Err(ConfigError::BadName(format!("{kind} name {name:?} must be 1 to {IFNAME_MAX} bytes long")));
    }
    if name.bytes().any(|b| b == b'/' || b == b':' || b == b'=' || b.is_ascii_whitespace() || !b.is_ascii_graphic())
        || name == "."
        || name == ".."
    {
        return Err(ConfigError::BadName(format!(
            "{kind} name {name:?} may only contain printable ASCII other than '/', ':', '=' and spaces"
        )));
    }
    Ok(())
}

impl Config {
    pub fn bridge(&self, name: &str) -> Option<&BridgeConfig> {
        self.bridges.iter().find(|b| b.name == name)
    }

    fn bridge_mut(&mut self, name: &str) -> Result<&mut BridgeConfig, ConfigError> {
        self.bridges.iter_mut().find(|b| b.name == name).ok_or_else(|| ConfigError::NoSuchBridge(name.to_string()))
    }

    /// The bridge holding port `port` (the internal port counts), and the port itself unless internal.
    pub fn find_port(&self, port: &str) -> Option<(&BridgeConfig, Option<&PortConfig>)> {
        self.bridges.iter().find_map(|b| {
            if b.name == port {
                Some((b, None))
            } else {
                b.ports.iter().find(|p| p.name == port).map(|p| (b, Some(p)))
            }
        })
    }

    pub fn add_bridge(&mut self, name: &str, may_exist: bool) -> Result<(), ConfigError> {
        check_ifname("bridge", name)?;
        if self.bridge(name).is_some() {
            return if may_exist { Ok(()) } else { Err(ConfigError::BridgeExists(name.to_string())) };
        }
        if let Some((b, _)) = self.find_port(name) {
            return Err(ConfigError::PortExists { port: name.to_string(), bridge: b.name.clone() });
        }
        self.bridges.push(BridgeConfig {
            name: name.to_string(),
            other_config: BTreeMap::new(),
            ports: Vec::new(),
            next_ofport: 1,
            fdb: Vec::new(),
            local_vlan: PortVlan::default(),
            flows: default_flows(),
            next_flow_id: 1,
            controller: None,
            external_ids: BTreeMap::new(),
        });
        Ok(())
    }

    pub fn del_bridge(&mut self, name: &str, if_exists: bool) -> Result<(), ConfigError> {
        let before = self.bridges.len();
        self.bridges.retain(|b| b.name != name);
        if before == self.bridges.len() && !if_exists {
            return Err(ConfigError::NoSuchBridge(name.to_string()));
        }
        Ok(())
    }

    /// Adds `port` to `bridge` with the given interface settings (`type=…`, `options:K=V`).
    pub fn add_port(
        &mut self,
        bridge: &str,
        port: &str,
        iface_settings: &[(String, String)],
        port_settings: &[(String, String)],
        may_exist: bool,
    ) -> Result<(), ConfigError> {
        check_ifname("port", port)?;
        if let Some((b, _)) = self.find_port(port) {
            if may_exist && b.name == bridge {
                return Ok(());
            }
            return Err(ConfigError::PortExists { port: port.to_string(), bridge: b.name.clone() });
        }
        let br = self.bridge_mut(bridge)?;
        if br.next_ofport > OFPORT_MAX {
            return Err(ConfigError::Conflict(format!("bridge {bridge:?} has no ofport numbers left")));
        }
        let mut p = PortConfig {
            name: port.to_string(),
            ofport: br.next_ofport,
            iface_type: IfaceType::System,
            options: BTreeMap::new(),
            vlan: PortVlan::default(),
            external_ids: BTreeMap::new(),
        };
        apply_iface_settings(&mut p, iface_settings)?;
        p.vlan.apply(port_settings)?;
        br.next_ofport += 1;
        br.ports.push(p);
        Ok(())
    }

    pub fn del_port(&mut self, bridge: Option<&str>, port: &str, if_exists: bool) -> Result<(), ConfigError> {
        let Some((b, p)) = self.find_port(port) else {
            return if if_exists { Ok(()) } else { Err(ConfigError::NoSuchPort(port.to_string())) };
        };
        if p.is_none() {
            return Err(ConfigError::InternalPort(port.to_string()));
        }
        let actual = b.name.clone();
        if let Some(given) = bridge {
            if given != actual {
                self.bridge(given).ok_or_else(|| ConfigError::NoSuchBridge(given.to_string()))?;
                return Err(ConfigError::WrongBridge { port: port.to_string(), given: given.to_string(), actual });
            }
        }
        let br = self.bridge_mut(&actual)?;
        br.ports.retain(|p| p.name != port);
        br.fdb.retain(|e| e.port != port);
        Ok(())
    }

    /// `set interface PORT K=V …`.
    pub fn set_interface(&mut self, port: &str, settings: &[(String, String)]) -> Result<(), ConfigError> {
        let (b, p) = self.find_port(port).ok_or_else(|| ConfigError::NoSuchPort(port.to_string()))?;
        if p.is_none() {
            return Err(ConfigError::BadSetting(format!("the internal port {port:?} has no settable options")));
        }
        let bname = b.name.clone();
        let br = self.bridge_mut(&bname)?;
        let p =
            br.ports.iter_mut().find(|p| p.name == port).ok_or_else(|| ConfigError::NoSuchPort(port.to_string()))?;
        apply_iface_settings(p, settings)
    }

    /// The VLAN settings of `port`, which may be a bridge's internal port.
    fn port_vlan_mut(&mut self, port: &str) -> Result<&mut PortVlan, ConfigError> {
        let (b, p) = self.find_port(port).ok_or_else(|| ConfigError::NoSuchPort(port.to_string()))?;
        let (bname, internal) = (b.name.clone(), p.is_none());
        let br = self.bridge_mut(&bname)?;
        if internal {
            return Ok(&mut br.local_vlan);
        }
        br.ports
            .iter_mut()
            .find(|p| p.name == port)
            .map(|p| &mut p.vlan)
            .ok_or_else(|| ConfigError::NoSuchPort(port.to_string()))
    }

    /// `set port PORT tag=N trunks=…`.
    pub fn set_port(&mut self, port: &str, settings: &[(String, String)]) -> Result<(), ConfigError> {
        self.port_vlan_mut(port)?.apply(settings)
    }

    /// `remove TABLE NAME COLUMN KEY...` / `clear TABLE NAME COLUMN` on a map column. Removing a key that is
    /// not there is not an error (as in ovs-vsctl); what the change leaves is validated whole afterwards (a
    /// tunnel keeps its remote_ip).
    pub fn remove_keys(&mut self, table: &str, name: &str, column: &str, keys: &[String]) -> Result<(), ConfigError> {
        let column = column.replace('-', "_");
        let drop_keys = |map: &mut BTreeMap<String, String>| {
            if keys.is_empty() {
                map.clear();
            } else {
                for k in keys {
                    map.remove(k);
                }
            }
        };
        match (table.to_ascii_lowercase().as_str(), column.as_str()) {
            ("interface", "options" | "external_ids") => {
                let (b, p) = self.find_port(name).ok_or_else(|| ConfigError::NoSuchPort(name.to_string()))?;
                if p.is_none() {
                    return Err(ConfigError::BadSetting(format!("the internal port {name:?} has no {column}")));
                }
                let bname = b.name.clone();
                let p = self
                    .bridge_mut(&bname)?
                    .ports
                    .iter_mut()
                    .find(|p| p.name == name)
                    .ok_or_else(|| ConfigError::NoSuchPort(name.to_string()))?;
                drop_keys(if column == "options" { &mut p.options } else { &mut p.external_ids });
            }
            ("port", "external_ids") => drop_keys(&mut self.port_vlan_mut(name)?.external_ids),
            ("port", "tag" | "trunks") if keys.is_empty() => {
                self.port_vlan_mut(name)?.clear(std::slice::from_ref(&column))?
            }
            ("bridge", "other_config") => drop_keys(&mut self.bridge_mut(name)?.other_config),
            ("bridge", "external_ids") => drop_keys(&mut self.bridge_mut(name)?.external_ids),
            ("bridge", "controller") if keys.is_empty() => self.bridge_mut(name)?.controller = None,
            (t, c) => {
                return Err(ConfigError::BadSetting(format!(
                    "cannot remove from {t} column {c:?} (map columns: Interface options and external_ids, Port \
                     external_ids, Bridge other_config and external_ids; clear also takes Port tag and trunks)"
                )))
            }
        }
        Ok(())
    }

    /// `clear port PORT tag|trunks`.
    pub fn clear_port(&mut self, port: &str, columns: &[String]) -> Result<(), ConfigError> {
        self.port_vlan_mut(port)?.clear(columns)
    }

    /// Turns a port name or number into the bridge's OpenFlow port number.
    fn port_resolver(&self, bridge: &str) -> Result<impl Fn(&str) -> Option<u32> + '_, ConfigError> {
        let b = self.bridge(bridge).ok_or_else(|| ConfigError::NoSuchBridge(bridge.to_string()))?;
        Ok(move |name: &str| {
            if name == b.name {
                return Some(crate::flow::OFPP_LOCAL);
            }
            if let Some(p) = b.ports.iter().find(|p| p.name == name) {
                return Some(p.ofport);
            }
            name.parse::<u32>().ok()
        })
    }

    /// Parses flows for `bridge`; errors say which line and token.
    pub fn parse_flows(&self, bridge: &str, texts: &[String]) -> Result<Vec<crate::flow::Flow>, ConfigError> {
        let resolve = self.port_resolver(bridge)?;
        let many = texts.len() > 1;
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                crate::flow::parse(t, &resolve).map_err(|e| {
                    let at = if many { format!("flow {} ({t:?}): ", i + 1) } else { String::new() };
                    ConfigError::BadSetting(format!("{at}bad flow: {e}"))
                })
            })
            .collect()
    }

    /// `add-flow` / `add-flows`: each flow replaces one with the same table, priority and match.
    pub fn add_flows(&mut self, bridge: &str, texts: &[String]) -> Result<(), ConfigError> {
        let flows = self.parse_flows(bridge, texts)?;
        if let Some(f) = flows.iter().find(|f| !f.has_actions) {
            return Err(ConfigError::BadSetting(format!(
                "bad flow: {:?} has no actions= (use actions=drop)",
                f.match_text
            )));
        }
        self.add_parsed_flows(bridge, flows)
    }

    /// Adds flows already parsed (from OpenFlow FLOW_MODs).
    pub fn add_parsed_flows(&mut self, bridge: &str, flows: Vec<crate::flow::Flow>) -> Result<(), ConfigError> {
        let b = self.bridge_mut(bridge)?;
        let now = now_secs();
        for flow in flows {
            b.flows.retain(|s| !s.flow.same_match(&flow));
            b.flows.push(StoredFlow { id: b.next_flow_id, added: now, flow });
            b.next_flow_id += 1;
        }
        Ok(())
    }

    /// `del-flows [FLOW]` (`--strict`: same match and priority only). Without a filter, every flow goes.
    pub fn del_flows(&mut self, bridge: &str, filter: Option<&str>, strict: bool) -> Result<(), ConfigError> {
        let filter = match filter {
            Some(t) => Some(self.parse_flows(bridge, &[t.to_string()])?.remove(0)),
            None => None,
        };
        if filter.as_ref().is_some_and(|f| f.has_actions) {
            return Err(ConfigError::BadSetting("del-flows takes a match, not actions".into()));
        }
        self.del_parsed_flows(bridge, filter.as_ref(), strict)
    }

    /// Deletes the flows a parsed filter selects (all of them without one).
    pub fn del_parsed_flows(
        &mut self,
        bridge: &str,
        filter: Option<&crate::flow::Flow>,
        strict: bool,
    ) -> Result<(), ConfigError> {
        let b = self.bridge_mut(bridge)?;
        b.flows.retain(|s| match filter {
            None => false,
            Some(f) if strict => !s.flow.same_match(f),
            Some(f) => !s.flow.covered_by(f),
        });
        Ok(())
    }

    /// `mod-flows FLOW`: the actions of every flow the match selects (strictly or not) become FLOW's; the
    /// counters stay.
    pub fn mod_flows(&mut self, bridge: &str, text: &str, strict: bool) -> Result<(), ConfigError> {
        let f = self.parse_flows(bridge, &[text.to_string()])?.remove(0);
        if !f.has_actions {
            return Err(ConfigError::BadSetting("mod-flows needs actions=".into()));
        }
        self.mod_parsed_flows(bridge, &f, strict)
    }

    /// Gives the flows `f` selects `f`'s actions.
    pub fn mod_parsed_flows(&mut self, bridge: &str, f: &crate::flow::Flow, strict: bool) -> Result<(), ConfigError> {
        let b = self.bridge_mut(bridge)?;
        for s in &mut b.flows {
            let selected = if strict { s.flow.same_match(f) } else { s.flow.covered_by(f) };
            if selected {
                s.flow.actions = f.actions.clone();
                s.flow.actions_text = f.actions_text.clone();
            }
        }
        Ok(())
    }

    /// `set bridge BR other_config:K=V …`.
    pub fn set_bridge(&mut self, bridge: &str, settings: &[(String, String)]) -> Result<(), ConfigError> {
        let br = self.bridge_mut(bridge)?;
        for (k, v) in settings {
            if let Some(key) = external_id_key(k) {
                set_external_id(&mut br.external_ids, key, v)?;
                continue;
            }
            let Some(key) = k.strip_prefix("other_config:").or_else(|| k.strip_prefix("other-config:")) else {
                return Err(ConfigError::BadSetting(format!(
                    "unknown bridge setting {k:?} (bridge settings are other_config:KEY=VALUE and external_ids:KEY=VALUE)"
                )));
            };
            match key {
                "mac-aging-time" => {
                    let n: u32 = v.parse().map_err(|_| {
                        ConfigError::BadSetting(format!("mac-aging-time={v:?} is not a number of seconds"))
                    })?;
                    if !(1..=86_400).contains(&n) {
                        return Err(ConfigError::BadSetting(format!(
                            "mac-aging-time={n} is out of range 1..=86400 seconds"
                        )));
                    }
                }
                "mac-table-size" => {
                    let n: usize = v.parse().map_err(|_| {
                        ConfigError::BadSetting(format!("mac-table-size={v:?} is not a number of entries"))
                    })?;
                    if !(1..=1_000_000).contains(&n) {
                        return Err(ConfigError::BadSetting(format!(
                            "mac-table-size={n} is out of range 1..=1000000 entries"
                        )));
                    }
                }
                "control-plane" | "etcd-endpoints" | "etcd-prefix" | "etcd-ttl" | "etcd-ca-cert" | "etcd-cert"
                | "etcd-key" | "etcd-user" | "etcd-password" | "bgp-asn" | "bgp-router-id" | "bgp-peers"
                | "bgp-hold-time" | "bgp-password" => {
                    // Checked with the others in `validate` (one key's meaning depends on another).
                }
                other => {
                    return Err(ConfigError::BadSetting(format!(
                        "unknown other_config key {other:?} (known: mac-aging-time, mac-table-size, control-plane, \
                         etcd-endpoints, etcd-prefix, etcd-ttl, etcd-ca-cert, etcd-cert, etcd-key, etcd-user, \
                         etcd-password, bgp-asn, bgp-router-id, bgp-peers, bgp-hold-time, bgp-password)"
                    )))
                }
            }
            if v.is_empty() {
                // `other_config:K=` removes the setting, as `ovs-vsctl remove` would.
                br.other_config.remove(key);
                continue;
            }
            br.other_config.insert(key.to_string(), v.clone());
        }
        Ok(())
    }

    /// `fdb add BR MAC PORT [dst IP] [vlan N]`: adds or replaces the static entry for (MAC, VLAN).
    pub fn fdb_add(&mut self, bridge: &str, entry: StaticFdb) -> Result<(), ConfigError> {
        let br = self.bridge_mut(bridge)?;
        br.fdb.retain(|e| (e.mac, e.vlan) != (entry.mac, entry.vlan));
        br.fdb.push(entry);
        Ok(())
    }

    /// `fdb del BR MAC [vlan N]`.
    pub fn fdb_del(&mut self, bridge: &str, mac: EthernetAddress, vlan: u16) -> Result<(), ConfigError> {
        let br = self.bridge_mut(bridge)?;
        let before = br.fdb.len();
        br.fdb.retain(|e| (e.mac, e.vlan) != (mac, vlan));
        if br.fdb.len() == before {
            return Err(ConfigError::BadSetting(format!(
                "bridge {bridge:?} has no static entry for {mac} in VLAN {vlan}"
            )));
        }
        Ok(())
    }

    /// Applies a configuration-changing request; other requests change nothing.
    pub fn apply(&mut self, req: &crate::Request) -> Result<(), ConfigError> {
        use crate::Request;
        match req {
            Request::AddBr { bridge, may_exist } => self.add_bridge(bridge, *may_exist),
            Request::DelBr { bridge, if_exists } => self.del_bridge(bridge, *if_exists),
            Request::AddPort { bridge, port, iface, port_settings, may_exist } => {
                self.add_port(bridge, port, iface, port_settings, *may_exist)
            }
            Request::SetPort { port, settings } => self.set_port(port, settings),
            Request::AddFlows { bridge, flows } => self.add_flows(bridge, flows),
            Request::DelFlows { bridge, filter, strict } => self.del_flows(bridge, filter.as_deref(), *strict),
            Request::ModFlows { bridge, flow, strict } => self.mod_flows(bridge, flow, *strict),
            Request::SetController { bridge, target } => {
                if let Some(t) = target {
                    parse_of_target(t)?;
                }
                self.bridge_mut(bridge)?.controller = target.clone();
                Ok(())
            }
            Request::Transaction { requests } => {
                // Each command sees what the ones before it did; the caller validates the result once.
                for (i, r) in requests.iter().enumerate() {
                    if matches!(r, Request::Transaction { .. }) || !r.is_change() {
                        return Err(ConfigError::BadSetting(format!(
                            "command {} of the transaction changes nothing; only changes may be joined with --",
                            i + 1
                        )));
                    }
                    self.apply(r)?;
                }
                Ok(())
            }
            Request::SetSsl { ssl } => {
                if let Some(s) = ssl {
                    s.check()?;
                }
                self.ssl = ssl.clone();
                Ok(())
            }
            Request::ClearPort { port, columns } => self.clear_port(port, columns),
            Request::RemoveKeys { table, name, column, keys } => self.remove_keys(table, name, column, keys),
            Request::DelPort { bridge, port, if_exists } => self.del_port(bridge.as_deref(), port, *if_exists),
            Request::SetInterface { port, settings } => self.set_interface(port, settings),
            Request::SetBridge { bridge, settings } => self.set_bridge(bridge, settings),
            Request::FdbAdd { bridge, entry } => self.fdb_add(bridge, entry.clone()),
            Request::FdbDel { bridge, mac, vlan } => self.fdb_del(bridge, *mac, *vlan),
            Request::ListBr
            | Request::ListPorts { .. }
            | Request::Show
            | Request::DumpPorts { .. }
            | Request::FdbShow { .. }
            | Request::FdbFlush { .. }
            | Request::FdbStats { .. }
            | Request::IpsecShow { .. }
            | Request::IpsecRekey { .. }
            | Request::DumpFlows { .. }
            | Request::Trace { .. }
            | Request::Vlog { .. }
            | Request::Capture { .. }
            | Request::GetSsl => Ok(()),
        }
    }

    /// Checks the whole configuration: names, types, options, and that no two tunnels would claim the same
    /// packets (same local address, port, remote and VNI).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for b in &self.bridges {
            if let Some(t) = b.controller.as_deref().filter(|t| OfTarget::is_tls(t)) {
                if self.ssl.is_none() {
                    return Err(ConfigError::BadSetting(format!(
                        "bridge {:?}: controller {t:?} needs TLS keys: set-ssl PRIVKEY CERT CACERT first",
                        b.name
                    )));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        let mut tunnels: std::collections::HashMap<(Option<IpAddr>, u8, u16, IpAddr, u32), &str> = Default::default();
        // One UDP port on one address speaks one encapsulation.
        let mut udp_ports: std::collections::HashMap<(Option<IpAddr>, bool, u16), (Encap, &str)> = Default::default();
        // One IKE SA per remote: every protected port towards it agrees on the key and the wrapping.
        let mut ipsec_peers: std::collections::HashMap<IpAddr, (IpsecSpec, &str)> = Default::default();
        for b in &self.bridges {
            let mut tunnel_specs: std::collections::HashMap<&str, TunnelSpec> = Default::default();
            check_ifname("bridge", &b.name)?;
            if !names.insert(b.name.as_str()) {
                return Err(ConfigError::BridgeExists(b.name.clone()));
            }
            b.local_vlan.validate(&b.name)?;
            for p in &b.ports {
                check_ifname("port", &p.name)?;
                p.vlan.validate(&p.name)?;
                if !names.insert(p.name.as_str()) {
                    return Err(ConfigError::PortExists { port: p.name.clone(), bridge: b.name.clone() });
                }
                let known = p.iface_type.known_options();
                if let Some(k) = p.options.keys().find(|k| !known.contains(&k.as_str())) {
                    return Err(ConfigError::UnknownOption {
                        key: k.clone(),
                        ty: p.iface_type.to_string(),
                        known: if known.is_empty() { "none".to_string() } else { known.join(", ") },
                    });
                }
                if let Some(t) = p.tunnel()? {
                    if let Some(ips) = p.ipsec()? {
                        if let Some((other, name)) = ipsec_peers.get(&t.remote) {
                            if *other != ips {
                                return Err(ConfigError::Conflict(format!(
                                    "ports {name:?} and {:?} both protect traffic to {} but their psk or ipsec_* options differ (one IKE SA serves both)",
                                    p.name, t.remote
                                )));
                            }
                        }
                        ipsec_peers.insert(t.remote, (ips, &p.name));
                    }
                    tunnel_specs.insert(p.name.as_str(), t);
                    if t.encap != Encap::Gre {
                        let key = (t.local, t.remote.is_ipv4(), t.dst_port);
                        if let Some((other_encap, other)) = udp_ports.insert(key, (t.encap, &p.name)) {
                            if other_encap != t.encap {
                                return Err(ConfigError::Conflict(format!(
                                    "ports {other:?} and {:?} use UDP port {} for different encapsulations ({} and {})",
                                    p.name,
                                    t.dst_port,
                                    encap_name(other_encap),
                                    encap_name(t.encap)
                                )));
                            }
                        }
                    }
                    if t.flow {
                        if let Some(other) =
                            tunnels.insert((t.local, t.ip_protocol(), t.dst_port, t.remote, t.vni), &p.name)
                        {
                            return Err(ConfigError::Conflict(format!(
                                "tunnel ports {other:?} and {:?} both take key={} from any VTEP (remote_ip=flow)",
                                p.name, t.vni
                            )));
                        }
                        if b.control_plane() == Some(ControlPlane::Evpn) && t.encap != Encap::Vxlan {
                            return Err(ConfigError::Conflict(format!(
                                "port {:?}: BGP EVPN announces VXLAN tunnels; a {} port cannot take its remotes \
                                 from it",
                                p.name,
                                encap_name(t.encap)
                            )));
                        }
                    }
                    for remote in p.remotes()? {
                        if let Some(other) =
                            tunnels.insert((t.local, t.ip_protocol(), t.dst_port, remote, t.vni), &p.name)
                        {
                            return Err(ConfigError::Conflict(format!(
                                "tunnel ports {other:?} and {:?} both use remote_ip={} key={} dst_port={}",
                                p.name, remote, t.vni, t.dst_port
                            )));
                        }
                    }
                }
            }
            b.check_control_plane()?;
            for e in &b.fdb {
                if e.mac == EthernetAddress::ZERO && (e.dst.is_none() || !tunnel_specs.contains_key(e.port.as_str())) {
                    return Err(ConfigError::BadSetting(format!(
                        "a default entry {} adds a flood destination: it needs a tunnel port and dst IP",
                        e.mac
                    )));
                }
                if !e.mac.is_unicast() {
                    return Err(ConfigError::BadSetting(format!(
                        "static FDB entry {}: only unicast MAC addresses (or 00:00:00:00:00:00 with dst) can be static",
                        e.mac
                    )));
                }
                if e.vlan > VID_MAX {
                    return Err(ConfigError::BadSetting(format!("VLAN {} is out of range 0..={VID_MAX}", e.vlan)));
                }
                if e.port != b.name && !b.ports.iter().any(|p| p.name == e.port) {
                    return Err(ConfigError::BadSetting(format!(
                        "static FDB entry {}: bridge {:?} has no port named {:?}",
                        e.mac, b.name, e.port
                    )));
                }
                match (e.dst, tunnel_specs.get(e.port.as_str())) {
                    (None, Some(t)) if t.flow => {
                        return Err(ConfigError::BadSetting(format!(
                            "static FDB entry {}: port {:?} has remote_ip=flow; name the VTEP with dst IP",
                            e.mac, e.port
                        )))
                    }
                    (Some(dst), None) => {
                        return Err(ConfigError::BadSetting(format!(
                            "static FDB entry {}: dst {dst} needs a tunnel port, and {:?} is not one",
                            e.mac, e.port
                        )))
                    }
                    (Some(dst), Some(t)) if dst.is_ipv4() != t.remote.is_ipv4() || dst.is_multicast() => {
                        return Err(ConfigError::BadSetting(format!(
                            "static FDB entry {}: dst {dst} must be a unicast address of the same family as \
                             remote_ip {}",
                            e.mac, t.remote
                        )))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Applies `type=…` and `options:K=V` settings to a port (validated afterwards as a whole).
fn apply_iface_settings(p: &mut PortConfig, settings: &[(String, String)]) -> Result<(), ConfigError> {
    for (k, v) in settings {
        if let Some(key) = external_id_key(k) {
            set_external_id(&mut p.external_ids, key, v)?;
        } else if k == "type" {
            let t = IfaceType::parse(v)?;
            if t != p.iface_type {
                p.iface_type = t;
            }
        } else if let Some(opt) = k.strip_prefix("options:") {
            if opt.is_empty() {
                return Err(ConfigError::BadSetting("empty option name in \"options:\"".to_string()));
            }
            p.options.insert(opt.to_string(), v.clone());
        } else {
            return Err(ConfigError::BadSetting(format!(
                "unknown interface setting {k:?} (known: type, options:KEY, external_ids:KEY)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipsec_gre_is_gre_with_a_psk_shown_as_written() {
        let mut c = Config::default();
        c.add_bridge("sw1", false).unwrap();
        // Seed 003's own line.
        c.add_port(
            "sw1",
            "tun0",
            &kv(&[("type", "ipsec_gre"), ("options:remote_ip", "192.168.56.12"), ("options:psk", "test123")]),
            &[],
            false,
        )
        .unwrap();
        c.validate().unwrap();
        let p = &c.bridges[0].ports[0];
        assert_eq!(p.iface_type.as_str(), "ipsec_gre");
        let t = p.tunnel().unwrap().unwrap();
        assert_eq!(t.encap, Encap::Gre);
        assert!(t.ipsec.is_some());
        assert!(serde_json::to_string(&c).unwrap().contains("\"ipsec_gre\""));
        let mut d = Config::default();
        d.add_bridge("sw1", false).unwrap();
        d.add_port("sw1", "tun1", &kv(&[("type", "ipsec_gre"), ("options:remote_ip", "192.0.2.1")]), &[], false)
            .unwrap();
        assert!(d.validate().unwrap_err().to_string().contains("needs options:psk"));
    }

    #[test]
    fn options_and_ids_can_be_removed_and_cleared() {
        let mut c = Config::default();
        c.add_bridge("br0", false).unwrap();
        c.add_port(
            "br0",
            "vx1",
            &kv(&[
                ("type", "vxlan"),
                ("options:remote_ip", "192.0.2.9"),
                ("options:tos", "inherit"),
                ("options:ttl", "9"),
                ("external_ids:a", "1"),
            ]),
            &[],
            false,
        )
        .unwrap();
        let rm = |t: &str, n: &str, col: &str, keys: &[&str]| crate::Request::RemoveKeys {
            table: t.into(),
            name: n.into(),
            column: col.into(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
        };
        c.apply(&rm("Interface", "vx1", "options", &["tos", "ttl", "absent"])).unwrap();
        let p = &c.bridges[0].ports[0];
        assert_eq!(p.options.keys().collect::<Vec<_>>(), vec!["remote_ip"]);
        c.apply(&rm("interface", "vx1", "external-ids", &[])).unwrap();
        assert!(c.bridges[0].ports[0].external_ids.is_empty());
        // A tunnel cannot lose its remote_ip: the change is refused when validated.
        let mut d = c.clone();
        d.apply(&rm("Interface", "vx1", "options", &[])).unwrap();
        assert!(d.validate().is_err());
        assert!(c.apply(&rm("Interface", "vx1", "type", &[])).unwrap_err().to_string().contains("cannot remove"));
        assert!(c.apply(&rm("Interface", "nope", "options", &["x"])).is_err());
    }

    #[test]
    fn openflow_listeners_default_to_loopback() {
        let listen = |t: &str| match parse_of_target(t).unwrap() {
            OfTarget::Listen(a) => a.to_string(),
            OfTarget::Connect(_) => panic!("{t} is a listener"),
        };
        assert_eq!(listen("ptcp:6653"), "127.0.0.1:6653");
        assert_eq!(listen("ptcp:"), "127.0.0.1:6653");
        assert_eq!(listen("ptcp:6653:0.0.0.0"), "0.0.0.0:6653");
        assert_eq!(listen("ptcp:6633:[::1]"), "[::1]:6633");
        assert_eq!(listen("pssl:6653"), "127.0.0.1:6653");
        assert!(OfTarget::is_tls("pssl:6653") && OfTarget::is_tls("ssl:192.0.2.9") && !OfTarget::is_tls("ptcp:1"));
        let mut c = Config::default();
        c.add_bridge("br0", false).unwrap();
        c.apply(&crate::Request::SetController { bridge: "br0".into(), target: Some("pssl:6653".into()) }).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("set-ssl"));
        let bad = SslConfig {
            private_key: "/nonexistent/k".into(),
            certificate: "/etc/hostname".into(),
            ca_cert: "/etc/hostname".into(),
        };
        assert!(c
            .apply(&crate::Request::SetSsl { ssl: Some(bad) })
            .unwrap_err()
            .to_string()
            .contains("cannot be read"));
        assert!(parse_of_target("ptcp:0").is_err());
        assert_eq!(parse_of_target("tcp:192.0.2.9").unwrap(), OfTarget::Connect("192.0.2.9:6653".parse().unwrap()));
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn sample() -> Config {
        let mut c = Config::default();
        c.add_bridge("sw1", false).unwrap();
        c.add_port("sw1", "p1", &[], &[], false).unwrap();
        c.add_port(
            "sw1",
            "vx1",
            &kv(&[("type", "vxlan"), ("options:remote_ip", "192.0.2.12"), ("options:key", "123")]),
            &[],
            false,
        )
        .unwrap();
        c
    }

    #[test]
    fn ofports_in_order_never_reused() {
        let mut c = sample();
        assert_eq!(c.bridge("sw1").unwrap().ports.iter().map(|p| p.ofport).collect::<Vec<_>>(), vec![1, 2]);
        c.del_port(None, "p1", false).unwrap();
        c.add_port("sw1", "p3", &[], &[], false).unwrap();
        assert_eq!(c.find_port("p3").unwrap().1.unwrap().ofport, 3);
        c.validate().unwrap();
    }

    #[test]
    fn tunnel_options_are_checked() {
        let c = sample();
        let t = c.find_port("vx1").unwrap().1.unwrap().tunnel().unwrap().unwrap();
        assert_eq!((t.vni, t.dst_port, t.overhead()), (123, 4789, 36));
        let mut c2 = c.clone();
        c2.set_interface("vx1", &kv(&[("options:key", "16777216")])).unwrap();
        let e = c2.validate().unwrap_err().to_string();
        assert!(e.contains("VNI 16777216 is out of range 0..=16777215"), "{e}");
        let mut c3 = c.clone();
        c3.set_interface("vx1", &kv(&[("options:remote_ip", "192.0.2.300")])).unwrap();
        assert!(c3.validate().unwrap_err().to_string().contains("not an IPv4 or IPv6 address"));
        let mut c4 = c.clone();
        c4.set_interface("vx1", &kv(&[("options:colour", "blue")])).unwrap();
        assert!(c4.validate().unwrap_err().to_string().contains("unknown option \"colour\""));
        let mut c5 = c;
        c5.set_interface("vx1", &kv(&[("options:local_ip", "2001:db8::1")])).unwrap();
        assert!(c5.validate().unwrap_err().to_string().contains("same family"));
    }

    #[test]
    fn ipsec_options_are_checked() {
        let mut c = sample();
        c.set_interface("vx1", &kv(&[("options:psk", "swordfish")])).unwrap();
        c.validate().unwrap();
        let t = c.find_port("vx1").unwrap().1.unwrap().tunnel().unwrap().unwrap();
        // Transport mode in UDP: 37 bytes of ESP and 8 of UDP on top of VXLAN's 36.
        assert_eq!(t.overhead(), 36 + 37 + 8);
        let bad = |opts: &[(&str, &str)], want: &str| {
            let mut c2 = c.clone();
            c2.set_interface("vx1", &kv(opts)).unwrap();
            let e = c2.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{opts:?}: {e}");
        };
        bad(&[("options:ipsec_mode", "sideways")], "neither transport nor tunnel");
        bad(&[("options:ipsec_encap", "tcp")], "neither udp");
        bad(&[("options:ipsec_lifetime", "5")], "at least 10");
        bad(&[("options:remote_ip", "239.1.1.1"), ("options:dev", "eth0")], "one remote_ip");
        bad(&[("options:remote_ip", "192.0.2.12,192.0.2.13")], "one remote_ip");
        bad(&[("options:psk", "")], "1 to 256");
        let mut plain = sample();
        plain.set_interface("vx1", &kv(&[("options:ipsec_mode", "tunnel")])).unwrap();
        assert!(plain.validate().unwrap_err().to_string().contains("only applies with options:psk"));
        // Tunnel mode over IPv4 adds an inner IP header.
        let mut tun = c.clone();
        tun.set_interface("vx1", &kv(&[("options:ipsec_mode", "tunnel"), ("options:ipsec_encap", "esp")])).unwrap();
        let t = tun.find_port("vx1").unwrap().1.unwrap().tunnel().unwrap().unwrap();
        assert_eq!(t.overhead(), 36 + 37 + 20);
        // Two protected ports to one remote must agree (one IKE SA serves both).
        let mut two = c.clone();
        two.add_port(
            "sw1",
            "gre1",
            &kv(&[("type", "gre"), ("options:remote_ip", "192.0.2.12"), ("options:psk", "marlin")]),
            &[],
            false,
        )
        .unwrap();
        assert!(two.validate().unwrap_err().to_string().contains("psk or ipsec_* options differ"));
    }

    #[test]
    fn geneve_and_gre_options() {
        let mut c = sample();
        let gnv = kv(&[
            ("type", "geneve"),
            ("options:remote_ip", "2001:db8::2"),
            ("options:key", "5000"),
            ("options:geneve_opts", "0x0102:0x80:0a0b0c0d, 0xffff:1:"),
            ("options:tos", "inherit"),
            ("options:ttl", "32"),
        ]);
        c.add_port("sw1", "gnv1", &gnv, &[], false).unwrap();
        c.validate().unwrap();
        let p = c.find_port("gnv1").unwrap().1.unwrap();
        let t = p.tunnel().unwrap().unwrap();
        assert_eq!((t.encap, t.vni, t.dst_port, t.options_len), (Encap::Geneve, 5000, 6081, 12));
        assert_eq!((t.tos, t.ttl, t.df), (Inherit::Inherit, Inherit::Value(32), false));
        // IPv6 + UDP + Geneve + 12 bytes of options.
        assert_eq!(t.overhead(), 40 + 8 + 8 + 12);
        assert_eq!(p.geneve_options().unwrap(), [1, 2, 0x80, 1, 10, 11, 12, 13, 0xff, 0xff, 1, 0]);

        let gre = kv(&[
            ("type", "gre"),
            ("options:remote_ip", "192.0.2.13"),
            ("options:key", "0xffffffff"),
            ("options:csum", "true"),
            ("options:seq", "true"),
            ("options:df_default", "true"),
        ]);
        c.add_port("sw1", "gre1", &gre, &[], false).unwrap();
        c.validate().unwrap();
        let t = c.find_port("gre1").unwrap().1.unwrap().tunnel().unwrap().unwrap();
        assert_eq!(
            (t.encap, t.vni, t.keyed, t.dst_port, t.overhead(), t.df),
            (Encap::Gre, u32::MAX, true, 0, 36, true)
        );

        for (key, value, says) in [
            ("options:geneve_opts", "1:2", "CLASS:TYPE:DATA"),
            ("options:geneve_opts", "1:2:abc", "even number of hex digits"),
            ("options:geneve_opts", "1:2:abcdef", "multiple of 4 bytes"),
            ("options:geneve_opts", "0x10000:2:", "class"),
            ("options:ttl", "0", "1..=255"),
            ("options:tos", "256", "0..=255"),
            ("options:key", "16777216", "VNI 16777216 is out of range"),
            ("options:df_default", "yes", "true or false"),
            ("options:csum", "true", "unknown option \"csum\" for a geneve interface"),
        ] {
            let mut bad = c.clone();
            bad.set_interface("gnv1", &kv(&[(key, value)])).unwrap();
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(says), "{key}={value}: {e}");
        }
        // A GRE key has 32 bits, so 2^32 is refused; GRE has no UDP port and no multicast.
        for (key, value, says) in [
            ("options:key", "4294967296", "out of range"),
            ("options:dst_port", "4789", "unknown option"),
            ("options:remote_ip", "239.1.1.1", "unicast"),
        ] {
            let mut bad = c.clone();
            bad.set_interface("gre1", &kv(&[(key, value)])).unwrap();
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(says), "{key}={value}: {e}");
        }
        // VXLAN and Geneve cannot share a UDP port.
        let mut clash = c.clone();
        clash.set_interface("gnv1", &kv(&[("options:remote_ip", "192.0.2.14"), ("options:dst_port", "4789")])).unwrap();
        let e = clash.validate().unwrap_err().to_string();
        assert!(e.contains("different encapsulations"), "{e}");
    }

    #[test]
    fn names_types_and_duplicates() {
        let mut c = sample();
        assert_eq!(c.add_bridge("sw1", false), Err(ConfigError::BridgeExists("sw1".into())));
        assert!(c.add_bridge("sw1", true).is_ok());
        assert!(matches!(c.add_port("sw1", "p1", &[], &[], false), Err(ConfigError::PortExists { .. })));
        assert!(matches!(c.add_port("nope", "p9", &[], &[], false), Err(ConfigError::NoSuchBridge(_))));
        assert!(matches!(
            c.add_port("sw1", "p9", &kv(&[("type", "warp")]), &[], false),
            Err(ConfigError::UnknownType(_))
        ));
        assert!(matches!(
            c.add_port("sw1", "a-very-long-interface-name", &[], &[], false),
            Err(ConfigError::BadName(_))
        ));
        assert!(matches!(c.del_port(None, "sw1", false), Err(ConfigError::InternalPort(_))));
        assert!(matches!(c.add_bridge("p1", false), Err(ConfigError::PortExists { .. })));
        c.add_bridge("sw2", false).unwrap();
        assert!(matches!(c.del_port(Some("sw2"), "p1", false), Err(ConfigError::WrongBridge { .. })));
    }

    #[test]
    fn several_remotes() {
        let mut c = sample();
        c.set_interface("vx1", &kv(&[("options:remote_ip", "192.0.2.12,192.0.2.13")])).unwrap();
        c.validate().unwrap();
        let p = c.find_port("vx1").unwrap().1.unwrap().clone();
        assert_eq!(p.remotes().unwrap().len(), 2);
        for (bad_list, why) in [
            ("192.0.2.12,2001:db8::1", "mixes IPv4 and IPv6"),
            ("192.0.2.12,192.0.2.12", "twice"),
            ("192.0.2.12,", "not an IPv4 or IPv6 address"),
        ] {
            let mut c2 = c.clone();
            c2.set_interface("vx1", &kv(&[("options:remote_ip", bad_list)])).unwrap();
            let e = c2.validate().unwrap_err().to_string();
            assert!(e.contains(why), "{bad_list}: {e}");
        }
        // A remote may belong to one tunnel per VNI only, also inside a list.
        c.add_port(
            "sw1",
            "vx2",
            &kv(&[("type", "vxlan"), ("options:remote_ip", "192.0.2.13"), ("options:key", "123")]),
            &[],
            false,
        )
        .unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::Conflict(_))));
    }

    #[test]
    fn vlan_settings() {
        let mut c = sample();
        c.set_port("p1", &kv(&[("tag", "10")])).unwrap();
        c.set_port("vx1", &kv(&[("trunks", "[30, 20,20]")])).unwrap();
        c.set_port("sw1", &kv(&[("tag", "20")])).unwrap();
        c.validate().unwrap();
        let b = c.bridge("sw1").unwrap();
        assert_eq!(
            (b.ports[0].vlan.tag, &b.ports[1].vlan.trunks, b.local_vlan.tag),
            (Some(10), &vec![20, 30], Some(20))
        );
        // Both at once is refused by validation; bad values by the setter.
        let mut both = c.clone();
        both.set_port("p1", &kv(&[("trunks", "1,2")])).unwrap();
        assert!(both.validate().unwrap_err().to_string().contains("both tag"));
        for (k, v, says) in [
            ("tag", "0", "1..=4094"),
            ("tag", "4095", "1..=4094"),
            ("trunks", "1,x", "\"x\""),
            ("vlan_mode", "x", "unknown"),
        ] {
            let e = c.clone().set_port("p1", &kv(&[(k, v)])).unwrap_err().to_string();
            assert!(e.contains(says), "{k}={v}: {e}");
        }
        assert!(c.set_port("nope", &kv(&[("tag", "1")])).is_err());
        c.clear_port("p1", &["tag".to_string()]).unwrap();
        c.set_port("vx1", &kv(&[("trunks", "[]")])).unwrap();
        assert!(c.bridge("sw1").unwrap().ports.iter().all(|p| p.vlan.is_empty()));
        assert!(c.clear_port("p1", &["mtu".to_string()]).is_err());
        // add-port takes port settings too, and they survive the db round trip.
        c.add_port("sw1", "p9", &[], &kv(&[("tag", "7")]), false).unwrap();
        let text = serde_json::to_string(&c).unwrap();
        let back: Config = serde_json::from_str(&text).unwrap();
        assert_eq!(back.find_port("p9").unwrap().1.unwrap().vlan.tag, Some(7));
        assert_eq!(back, c);
    }

    #[test]
    fn multicast_group_needs_dev() {
        let mut c = sample();
        c.set_interface("vx1", &kv(&[("options:remote_ip", "239.1.1.1")])).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("needs options:dev"));
        c.set_interface("vx1", &kv(&[("options:dev", "eth1")])).unwrap();
        c.validate().unwrap();
        c.set_interface("vx1", &kv(&[("options:remote_ip", "239.1.1.1,192.0.2.12")])).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("cannot be combined"));
    }

    #[test]
    fn duplicate_tunnels_conflict() {
        let mut c = sample();
        c.add_port(
            "sw1",
            "vx2",
            &kv(&[("type", "vxlan"), ("options:remote_ip", "192.0.2.12"), ("options:key", "123")]),
            &[],
            false,
        )
        .unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::Conflict(_))));
    }

    #[test]
    fn bridge_settings() {
        let mut c = sample();
        c.set_bridge("sw1", &kv(&[("other_config:mac-aging-time", "30")])).unwrap();
        assert_eq!(c.bridge("sw1").unwrap().mac_aging_time(), 30);
        assert!(c.set_bridge("sw1", &kv(&[("other_config:mac-aging-time", "0")])).is_err());
        assert!(c.set_bridge("sw1", &kv(&[("other_config:colour", "1")])).is_err());
        assert!(c.set_bridge("sw1", &kv(&[("stp_enable", "true")])).is_err());
    }

    #[test]
    fn control_plane_settings() {
        let mut c = sample();
        c.add_port(
            "sw1",
            "vxf",
            &kv(&[("type", "vxlan"), ("options:remote_ip", "flow"), ("options:key", "100")]),
            &[],
            false,
        )
        .unwrap();
        c.validate().unwrap();
        let t = c.bridge("sw1").unwrap().ports.iter().find(|p| p.name == "vxf").unwrap().tunnel().unwrap().unwrap();
        assert!(t.flow && t.remote.is_unspecified() && t.remote.is_ipv4());
        let set = |c: &mut Config, pairs: &[(&str, &str)]| {
            let mut n = c.clone();
            n.set_bridge("sw1", &kv(pairs)).and_then(|_| n.validate()).map(|_| *c = n)
        };
        // etcd needs endpoints; a wrong one is refused whole and changes nothing.
        let err = set(&mut c, &[("other_config:control-plane", "etcd")]).unwrap_err().to_string();
        assert!(err.contains("etcd-endpoints"), "{err}");
        assert!(set(&mut c, &[("other_config:control-plane", "etcd"), ("other_config:etcd-endpoints", "https://x:1")])
            .is_err());
        assert!(set(&mut c, &[("other_config:control-plane", "bgp")]).is_err());
        assert_eq!(c.bridge("sw1").unwrap().control_plane(), None, "nothing applied");
        set(
            &mut c,
            &[
                ("other_config:control-plane", "etcd"),
                ("other_config:etcd-endpoints", "http://127.0.0.1:2379,http://10.0.0.1:2379"),
            ],
        )
        .unwrap();
        let e = c.bridge("sw1").unwrap().etcd().unwrap().unwrap();
        assert_eq!((e.endpoints.len(), e.prefix.as_str(), e.ttl), (2, "/weft/", 10));
        assert!(set(&mut c, &[("other_config:etcd-ttl", "1")]).is_err());
        // EVPN: AS, router id and peers; VXLAN only.
        let evpn = [
            ("other_config:control-plane", "evpn"),
            ("other_config:bgp-asn", "65000"),
            ("other_config:bgp-router-id", "10.0.0.3"),
            ("other_config:bgp-peers", "10.0.0.254"),
        ];
        assert!(set(&mut c, &evpn[..3]).unwrap_err().to_string().contains("bgp-peers"));
        set(&mut c, &evpn).unwrap();
        let v = c.bridge("sw1").unwrap().evpn().unwrap().unwrap();
        assert_eq!((v.asn, v.hold, v.peers.len()), (65000, 9, 1));
        assert!(set(&mut c, &[("other_config:bgp-router-id", "0.0.0.0")]).is_err());
        let mut g = c.clone();
        g.add_port(
            "sw1",
            "gf",
            &kv(&[("type", "gre"), ("options:remote_ip", "flow"), ("options:key", "5")]),
            &[],
            false,
        )
        .unwrap();
        assert!(g.validate().unwrap_err().to_string().contains("EVPN"));
        // Two flow ports with one key are ambiguous.
        let mut d = c.clone();
        d.add_port(
            "sw1",
            "vxg",
            &kv(&[("type", "vxlan"), ("options:remote_ip", "flow"), ("options:key", "100")]),
            &[],
            false,
        )
        .unwrap();
        assert!(matches!(d.validate(), Err(ConfigError::Conflict(_))));
        // IPsec needs one remote.
        let mut i = c.clone();
        i.set_interface("vxf", &kv(&[("options:psk", "k")])).unwrap();
        assert!(i.validate().is_err());
        // Removing a setting with an empty value.
        set(&mut c, &[("other_config:control-plane", "")]).unwrap();
        assert_eq!(c.bridge("sw1").unwrap().control_plane(), None);
    }

    #[test]
    fn static_fdb_entries() {
        let mut c = sample();
        let mac: EthernetAddress = "02:00:00:00:00:99".parse().unwrap();
        let entry = |port: &str, dst: Option<&str>| StaticFdb {
            mac,
            vlan: 0,
            port: port.to_string(),
            dst: dst.map(|d| d.parse().unwrap()),
        };
        c.fdb_add("sw1", entry("vx1", Some("192.0.2.13"))).unwrap();
        c.validate().unwrap();
        c.fdb_add("sw1", entry("p1", None)).unwrap();
        assert_eq!(c.bridge("sw1").unwrap().fdb.len(), 1, "same MAC and VLAN replaces");
        let mut bad = c.clone();
        bad.fdb_add("sw1", entry("p1", Some("192.0.2.13"))).unwrap();
        assert!(bad.validate().unwrap_err().to_string().contains("needs a tunnel port"));
        let mut bad = c.clone();
        bad.fdb_add("sw1", entry("vx1", Some("2001:db8::1"))).unwrap();
        assert!(bad.validate().unwrap_err().to_string().contains("same family"));
        let mut bad = c.clone();
        bad.fdb_add("sw1", entry("nope", None)).unwrap();
        assert!(bad.validate().unwrap_err().to_string().contains("no port named"));
        let mut bad = c.clone();
        bad.fdb_add("sw1", StaticFdb { mac: EthernetAddress::BROADCAST, ..entry("p1", None) }).unwrap();
        assert!(bad.validate().is_err());
        // Default (all-zero) entries add flood destinations to a tunnel port.
        let mut flood = c.clone();
        flood.fdb_add("sw1", StaticFdb { mac: EthernetAddress::ZERO, ..entry("vx1", Some("192.0.2.14")) }).unwrap();
        flood.validate().unwrap();
        let br = flood.bridge("sw1").unwrap();
        let vx = br.ports.iter().find(|p| p.name == "vx1").unwrap();
        assert_eq!(vx.flood_remotes(br).unwrap().len(), 2);
        let mut bad = c.clone();
        bad.fdb_add("sw1", StaticFdb { mac: EthernetAddress::ZERO, ..entry("p1", None) }).unwrap();
        assert!(bad.validate().unwrap_err().to_string().contains("flood destination"));
        assert!(c.fdb_del("sw1", mac, 7).is_err());
        c.del_port(None, "p1", false).unwrap();
        assert!(c.bridge("sw1").unwrap().fdb.is_empty(), "entries go with their port");
    }

    #[test]
    fn serde_round_trip() {
        let c = sample();
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Config>(&s).unwrap(), c);
    }
}
