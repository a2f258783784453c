//! Ports: interface kinds, VLAN settings, options and what they mean (tunnels, IPsec, proxies).

use super::*;

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
    /// One end of a link between two bridges (`options:peer` names the other end, a patch port of another
    /// bridge): what leaves by it enters the peer's bridge by the peer, inside the switch.
    Patch,
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
            "patch" => Ok(IfaceType::Patch),
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
            IfaceType::Patch => "patch",
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
            IfaceType::Patch => &["peer"],
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
pub(super) fn set_external_id(map: &mut BTreeMap<String, String>, key: &str, v: &str) -> Result<(), ConfigError> {
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

    pub(super) fn validate(&self, port: &str) -> Result<(), ConfigError> {
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
    /// OpenFlow's port configuration bits set by PORT_MOD ([`port_config`]): down, no-receive, no-forward,
    /// no-flood, no-packet-in.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub of_config: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

pub use weft_datapath::switch::pipeline::port_config;

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

pub(super) fn encap_name(e: Encap) -> &'static str {
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

pub(super) fn parse_bool(key: &str, v: Option<&str>) -> Result<bool, ConfigError> {
    match v {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(bad(key, v, "expected true or false")),
    }
}

pub(super) fn parse_inherit(key: &str, v: Option<&str>, min: u32) -> Result<Inherit, ConfigError> {
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

pub(super) fn bad(key: &str, value: &str, why: impl Into<String>) -> ConfigError {
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
    pub(super) fn remotes(&self) -> Result<Vec<IpAddr>, ConfigError> {
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
    pub(super) fn is_flow(&self) -> bool {
        self.options.get("remote_ip").is_some_and(|v| v == "flow")
    }

    /// `options:proxy=true`: ARP requests and neighbour solicitations for addresses weft knows are answered
    /// locally instead of being flooded through this tunnel.
    pub(super) fn proxy(&self) -> bool {
        self.options.get("proxy").is_some_and(|v| v == "true")
    }

    /// Every VTEP a tunnel port floods to: its remotes, plus the `dst` of each default entry
    /// (00:00:00:00:00:00, as `bridge fdb append` adds them) of `bridge` on this port.
    pub(super) fn flood_remotes(&self, bridge: &BridgeConfig) -> Result<Vec<IpAddr>, ConfigError> {
        let mut all = self.remotes()?;
        for e in bridge.fdb.iter().filter(|e| e.port == self.name && e.mac == EthernetAddress::ZERO) {
            if let Some(dst) = e.dst.filter(|d| !all.contains(d)) {
                all.push(dst);
            }
        }
        Ok(all)
    }

    /// The encoded Geneve options a tunnel port sends (empty for other ports or none configured).
    pub(super) fn geneve_options(&self) -> Result<Vec<u8>, ConfigError> {
        match (self.iface_type, self.options.get("geneve_opts")) {
            (IfaceType::Geneve, Some(o)) => parse_geneve_opts(o),
            _ => Ok(Vec::new()),
        }
    }

    /// Parses a tunnel port's options but its IPsec ones (see [`PortConfig::spec`], which adds them).
    /// `Ok(None)` for ports that are not tunnels.
    pub(super) fn tunnel_options(&self) -> Result<Option<TunnelSpec>, ConfigError> {
        let encap = match self.iface_type {
            IfaceType::Vxlan => Encap::Vxlan,
            IfaceType::Geneve => Encap::Geneve,
            IfaceType::Gre | IfaceType::IpsecGre => Encap::Gre,
            IfaceType::System | IfaceType::Tap | IfaceType::Internal | IfaceType::Patch => return Ok(None),
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
            md_room: 0,
            csum: parse_bool("csum", get("csum"))?,
            seq: parse_bool("seq", get("seq"))?,
            ttl: parse_inherit("ttl", get("ttl"), 1)?,
            tos: parse_inherit("tos", get("tos"), 0)?,
            df: parse_bool("df_default", get("df_default"))?,
            ipsec: None,
        }))
    }

    /// Parses the IPsec options of a tunnel port: `None` without `options:psk`.
    pub(super) fn ipsec(&self) -> Result<Option<IpsecSpec>, ConfigError> {
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
pub(super) fn read_psk_file(path: &str) -> Result<String, ConfigError> {
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
