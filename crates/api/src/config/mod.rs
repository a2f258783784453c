//! The desired state: bridges, their ports and the ports' options, as users set them with the CLI.
//!
//! Every change is made on a copy with the `Config` methods below and checked whole with
//! [`Config::validate`] before the daemon persists or applies anything, so a rejected command changes nothing.

mod bridge;
mod port;
#[cfg(test)]
mod tests;
mod valid;

pub use bridge::*;
pub use port::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
pub use valid::*;
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

/// The whole desired state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub bridges: Vec<BridgeConfig>,
    /// `set-ssl PRIVKEY CERT CACERT`: the key and certificate weftd shows on `ssl:`/`pssl:` OpenFlow
    /// connections, and the CA their peers' certificates must chain to (Open vSwitch's SSL table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl: Option<SslConfig>,
    /// Connection tracking's limits.
    #[serde(default, skip_serializing_if = "CtConfig::is_default")]
    pub conntrack: CtConfig,
    /// What the OVSDB view keeps beyond weft's own model (inserted rows' UUIDs, stored-only columns,
    /// `next_cfg`).
    #[serde(default, skip_serializing_if = "crate::ovsdb::vswitch::OvsdbExtra::is_default")]
    pub ovsdb: crate::ovsdb::vswitch::OvsdbExtra,
}

/// How many connections the tracker keeps: in all (`dpctl/ct-set-maxconns`) and per zone
/// (`dpctl/ct-set-limits`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_conns: Option<u64>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub zone_limits: std::collections::BTreeMap<u16, u64>,
}

impl CtConfig {
    pub fn is_default(&self) -> bool {
        *self == CtConfig::default()
    }
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

/// What [`Config::learn_flow`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    Added,
    Modified,
    /// The flow (this id) was there as learned: nothing changed.
    Refreshed(u64),
    /// The table holds the learn's `limit` of flows with its cookie: nothing learned.
    Limited,
}

/// `learn(…,delete_learned)`: when the last flow that learns with it into a table with a cookie is gone from
/// `new`, so are the flows of that table with that cookie (as OVS does). `old` is the configuration before.
pub fn delete_learned(old: &Config, new: &mut Config) -> bool {
    let owners = |b: &BridgeConfig| -> Vec<(u8, u64)> {
        b.flows
            .iter()
            .flat_map(|s| crate::flow::learn::learns_in(&s.flow.actions))
            .filter(|(_, l, _)| l.delete_learned)
            .map(|(_, l, _)| (l.table, l.cookie))
            .collect()
    };
    let mut changed = false;
    for b in &mut new.bridges {
        let Some(before) = old.bridges.iter().find(|o| o.name == b.name) else { continue };
        let now = owners(b);
        for (table, cookie) in owners(before) {
            if !now.contains(&(table, cookie)) {
                let n = b.flows.len();
                b.flows.retain(|s| !(s.flow.table == table && s.flow.cookie == cookie));
                changed |= b.flows.len() != n;
            }
        }
    }
    changed
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
            local_of_config: 0,
            flows: default_flows(),
            next_flow_id: 1,
            controllers: Vec::new(),
            groups: Vec::new(),
            meters: Vec::new(),
            protocols: Vec::new(),
            fail_mode: None,
            external_ids: BTreeMap::new(),
            tlv_map: Vec::new(),
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
            of_config: 0,
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
            ("bridge", "controller") if keys.is_empty() => self.bridge_mut(name)?.controllers.clear(),
            ("bridge", "protocols") if keys.is_empty() => self.bridge_mut(name)?.protocols.clear(),
            ("bridge", "fail_mode") if keys.is_empty() => self.bridge_mut(name)?.fail_mode = None,
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
            if flow.check_overlap {
                let over = |s: &&StoredFlow| {
                    s.flow.table == flow.table && s.flow.priority == flow.priority && s.flow.overlaps(&flow)
                };
                if let Some(s) = b.flows.iter().find(over) {
                    return Err(ConfigError::Conflict(format!(
                        "check_overlap: the flow overlaps {:?} (table {}, the same priority)",
                        s.flow.to_string(),
                        s.flow.table
                    )));
                }
            }
            b.flows.retain(|s| !s.flow.same_match(&flow));
            b.flows.push(StoredFlow { id: b.next_flow_id, added: now, flow });
            b.next_flow_id += 1;
        }
        Ok(())
    }

    /// A flow a `learn` action built: modifies the flow with the same table, priority and match (as OVS's
    /// learn, a strict modify), or adds it — unless the table already holds `limit` flows with its cookie.
    /// Nothing changes when that flow is there already as it would be (only its hard timeout starts again,
    /// which the caller keeps: see [`Learned::Refreshed`]).
    pub fn learn_flow(&mut self, bridge: &str, flow: crate::flow::Flow, limit: u32) -> Result<Learned, ConfigError> {
        let b = self.bridge_mut(bridge)?;
        let now = now_secs();
        let same = |s: &StoredFlow| {
            s.flow.table == flow.table
                && s.flow.priority == flow.priority
                && s.flow.matches.len() == flow.matches.len()
                && flow.matches.iter().all(|m| s.flow.matches.contains(m))
        };
        if let Some(s) = b.flows.iter_mut().find(|s| same(s)) {
            let f = &s.flow;
            if f.actions == flow.actions
                && f.cookie == flow.cookie
                && f.idle_timeout == flow.idle_timeout
                && f.hard_timeout == flow.hard_timeout
                && f.send_flow_rem == flow.send_flow_rem
            {
                return Ok(Learned::Refreshed(s.id));
            }
            s.flow = flow;
            s.added = now;
            return Ok(Learned::Modified);
        }
        if limit != 0 {
            let n = b.flows.iter().filter(|s| s.flow.table == flow.table && s.flow.cookie == flow.cookie).count();
            if n >= limit as usize {
                return Ok(Learned::Limited);
            }
        }
        b.flows.push(StoredFlow { id: b.next_flow_id, added: now, flow });
        b.next_flow_id += 1;
        Ok(Learned::Added)
    }

    /// `fin_timeout`: flow `id`'s timeouts come down to `idle` and `hard` (0: that one unchanged; a timeout
    /// already shorter stays; none becomes one), as OVS reduces them. Whether anything changed.
    pub fn reduce_timeouts(&mut self, bridge: &str, id: u64, idle: u16, hard: u16) -> bool {
        let Ok(b) = self.bridge_mut(bridge) else { return false };
        let Some(s) = b.flows.iter_mut().find(|s| s.id == id) else { return false };
        let mut changed = false;
        for (max, t) in [(idle, &mut s.flow.idle_timeout), (hard, &mut s.flow.hard_timeout)] {
            if max != 0 && (*t == 0 || *t > max) {
                *t = max;
                changed = true;
            }
        }
        changed
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
                if f.reset_counts {
                    // Counters are kept by flow id: a new id starts them again (the age stays).
                    s.id = b.next_flow_id;
                    b.next_flow_id += 1;
                }
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
            if k == "fail_mode" || k == "fail-mode" {
                br.fail_mode = if v.is_empty() { None } else { Some(FailMode::parse(v)?) };
                continue;
            }
            if k == "protocols" {
                let list: Vec<String> =
                    v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect();
                if let Some(bad) = list.iter().find(|p| of_version(p).is_none()) {
                    return Err(ConfigError::BadSetting(format!(
                        "protocols: {bad:?} is not an OpenFlow version (OpenFlow10, OpenFlow11, … OpenFlow15)"
                    )));
                }
                br.protocols = list;
                if !br.protocols.is_empty() && br.of_versions() == 0 {
                    return Err(ConfigError::BadSetting(format!(
                        "protocols={v}: weft speaks OpenFlow10, OpenFlow13, OpenFlow14 and OpenFlow15; the list names none of them"
                    )));
                }
                continue;
            }
            let Some(key) = k.strip_prefix("other_config:").or_else(|| k.strip_prefix("other-config:")) else {
                return Err(ConfigError::BadSetting(format!(
                    "unknown bridge setting {k:?} (bridge settings are protocols=VERSION,…, other_config:KEY=VALUE and \
                     external_ids:KEY=VALUE)"
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
                "datapath-id" if !v.is_empty() => {
                    if parse_datapath_id(v).is_none() {
                        return Err(ConfigError::BadSetting(format!(
                            "datapath-id={v:?} is not 16 hex digits (as OVS takes it, optionally after 0x), \
                             nor all zeros"
                        )));
                    }
                }
                "datapath-id" => {}
                "control-plane" | "etcd-endpoints" | "etcd-prefix" | "etcd-ttl" | "etcd-ca-cert" | "etcd-cert"
                | "etcd-key" | "etcd-user" | "etcd-password" | "bgp-asn" | "bgp-router-id" | "bgp-peers"
                | "bgp-hold-time" | "bgp-password" => {
                    // Checked with the others in `validate` (one key's meaning depends on another).
                }
                other => {
                    return Err(ConfigError::BadSetting(format!(
                        "unknown other_config key {other:?} (known: mac-aging-time, mac-table-size, datapath-id, control-plane, \
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
            Request::SetController { bridge, targets } => {
                for (i, t) in targets.iter().enumerate() {
                    parse_of_target(t)?;
                    if targets[..i].contains(t) {
                        return Err(ConfigError::BadSetting(format!("controller {t:?} is given twice")));
                    }
                }
                self.bridge_mut(bridge)?.controllers = targets.clone();
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
            Request::CtSetMaxConns { n } => {
                self.conntrack.max_conns = Some(*n);
                Ok(())
            }
            Request::CtSetLimits { limits } => {
                for (zone, limit) in limits {
                    match limit {
                        Some(n) => self.conntrack.zone_limits.insert(*zone, *n),
                        None => self.conntrack.zone_limits.remove(zone),
                    };
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
            Request::AddTlvMap { bridge, mappings } => {
                let new = crate::tlv::parse(mappings).map_err(ConfigError::BadSetting)?;
                let b = self.bridge_mut(bridge)?;
                b.tlv_map = crate::tlv::add(&b.tlv_map, &new).map_err(|e| ConfigError::BadSetting(e.why))?;
                Ok(())
            }
            Request::DelTlvMap { bridge, mappings } => {
                let b = self.bridge_mut(bridge)?;
                let indexes: Vec<u8> = match mappings {
                    Some(m) => crate::tlv::parse(m).map_err(ConfigError::BadSetting)?.iter().map(|m| m.index).collect(),
                    None => b.tlv_map.iter().map(|m| m.index).collect(),
                };
                let in_use = crate::tlv::in_use(b);
                b.tlv_map =
                    crate::tlv::delete(&b.tlv_map, &indexes, &in_use).map_err(|e| ConfigError::BadSetting(e.why))?;
                Ok(())
            }
            Request::ListBr
            | Request::DumpTlvMap { .. }
            | Request::ListPorts { .. }
            | Request::Show
            | Request::DumpPorts { .. }
            | Request::FdbShow { .. }
            | Request::FdbFlush { .. }
            | Request::FdbStats { .. }
            | Request::CtDump { .. }
            | Request::CtFlush { .. }
            | Request::CtStats { .. }
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
        self.check().map(drop)
    }

    /// [`Config::validate`], returning what each bridge's and port's settings say ([`Valid`] keeps them).
    fn check(&self) -> Result<Vec<BridgeSpec>, ConfigError> {
        let mut specs = Vec::with_capacity(self.bridges.len());
        for b in &self.bridges {
            if let Some(t) = b.controllers.iter().find(|t| OfTarget::is_tls(t)) {
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
            crate::tlv::layout(&b.tlv_map).map_err(|e| ConfigError::BadSetting(format!("bridge {:?}: {e}", b.name)))?;
            // A flow's group must be one of the bridge's (groups are kept sorted by id).
            for s in &b.flows {
                crate::tlv::check_flow(&b.tlv_map, &s.flow).map_err(|e| {
                    ConfigError::BadSetting(format!("bridge {:?}: flow {:?}: {e}", b.name, s.flow.to_string()))
                })?;
                for a in &s.flow.actions {
                    if let crate::flow::Action::Group(g) = *a {
                        if b.groups.binary_search_by_key(&g, |x| x.id).is_err() {
                            return Err(ConfigError::BadSetting(format!(
                                "bridge {:?}: flow {:?} sends to group {g}, which does not exist",
                                b.name,
                                s.flow.to_string()
                            )));
                        }
                    }
                    if let crate::flow::Action::Meter(m) = *a {
                        if b.meters.binary_search_by_key(&m, |x| x.id).is_err() {
                            return Err(ConfigError::BadSetting(format!(
                                "bridge {:?}: flow {:?} uses meter {m}, which does not exist",
                                b.name,
                                s.flow.to_string()
                            )));
                        }
                    }
                }
            }
            for g in &b.groups {
                for n in g.buckets.iter().flat_map(|bk| crate::tlv::actions_use(&bk.actions)) {
                    if !b.tlv_map.iter().any(|m| m.index == n) {
                        return Err(ConfigError::BadSetting(format!(
                            "bridge {:?}: group {}: tun_metadata{n} is not mapped to a Geneve option",
                            b.name, g.id
                        )));
                    }
                }
            }
            let mut port_specs = Vec::with_capacity(b.ports.len());
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
                if p.iface_type == IfaceType::Patch {
                    match p.options.get("peer").map(String::as_str) {
                        None | Some("") => {
                            return Err(ConfigError::BadSetting(format!(
                                "patch port {:?} needs options:peer=PORT (the patch port at the other end)",
                                p.name
                            )))
                        }
                        Some(peer) if peer == p.name => {
                            return Err(ConfigError::BadSetting(format!(
                                "patch port {:?} cannot be its own peer",
                                p.name
                            )))
                        }
                        Some(_) => {}
                    }
                }
                let spec = p.spec(b)?;
                if let Some(t) = spec.tunnel {
                    if let Some(ips) = spec.ipsec.clone() {
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
                port_specs.push(spec);
            }
            let control_plane = b.check_control_plane()?;
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
            specs.push(BridgeSpec { control_plane, ports: port_specs });
        }
        Ok(specs)
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
