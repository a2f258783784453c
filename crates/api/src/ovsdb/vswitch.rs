//! The `Open_vSwitch` database as a view of weft's configuration, and back.
//!
//! [`project`] builds the database from a [`Config`] and the running state ([`Status`]); [`to_config`] turns
//! a database a transaction produced into a new `Config` — the old one with the bridges, ports, interfaces,
//! controllers and SSL settings the rows now describe (flows, groups, meters, static MACs and the rest of
//! what OVSDB does not hold are kept). Columns weft acts on map to its model; columns it keeps without
//! acting on (`external_ids`, `other_config` keys it does not know, `datapath_type`, …) are stored in
//! [`OvsdbExtra`]; columns asking for something weft does not do (STP, bonds, mirrors, QoS, …) are refused
//! unless they hold their default; status columns are filled from [`Status`]. `docs/ovsdb.md` has the table.

use super::schema::{vswitch, TableSchema};
use super::{Atom, Datum, Db, DbError, Row, Uuid};
use crate::config::{Config, FailMode, IfaceType, PortConfig, PortVlan, SslConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What the OVSDB view keeps that weft's own model has no place for; part of the persisted configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OvsdbExtra {
    /// The Open_vSwitch row's `next_cfg` (`cur_cfg` follows it: a change is live when its transaction ends).
    #[serde(default)]
    pub next_cfg: i64,
    /// Salt of the UUIDs derived from names, made once per database so two daemons' rows differ.
    #[serde(default)]
    pub salt: u64,
    /// Rows' UUIDs that are not the ones derived from their names (rows a client inserted), by row key
    /// (`Bridge/br0`, `Port/p1`, `Interface/p1`, `Controller/br0/tcp:…`, `Manager/ptcp:…`, `SSL`, `Open_vSwitch`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub uuids: BTreeMap<String, String>,
    /// Columns kept without being acted on, by row key, as OVSDB JSON.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

impl OvsdbExtra {
    pub fn is_default(&self) -> bool {
        *self == OvsdbExtra::default()
    }

    /// Forgets what it keeps for rows `config` no longer has (a port the CLI deleted).
    pub fn prune(&mut self, config: &Config) {
        let mut live: BTreeSet<String> = ["Open_vSwitch".to_string(), "SSL".to_string()].into();
        for b in &config.bridges {
            live.insert(format!("Bridge/{}", b.name));
            for p in std::iter::once(b.name.as_str()).chain(b.ports.iter().map(|p| p.name.as_str())) {
                live.insert(format!("Port/{p}"));
                live.insert(format!("Interface/{p}"));
            }
            for c in &b.controllers {
                live.insert(format!("Controller/{}/{c}", b.name));
            }
        }
        let keep = |k: &String| live.contains(k) || k.starts_with("Manager/");
        self.uuids.retain(|k, _| keep(k));
        self.columns.retain(|k, _| keep(k));
    }
}

/// The running state the status columns show.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub ifaces: BTreeMap<String, IfaceStatus>,
    /// Per (bridge, controller target): connected, and the role.
    pub controllers: BTreeMap<(String, String), (bool, Option<String>)>,
    /// The Open_vSwitch row's `ovs_version`.
    pub version: String,
    /// Salt of the UUIDs derived from names.
    pub salt: u64,
}

#[derive(Debug, Clone, Default)]
pub struct IfaceStatus {
    pub link_up: Option<bool>,
    pub admin_up: Option<bool>,
    pub mtu: Option<i64>,
    pub mac: Option<String>,
    pub ifindex: Option<i64>,
    pub statistics: BTreeMap<String, i64>,
    pub error: Option<String>,
}

/// The ofport the Interface row of a bridge's own port shows (OFPP_LOCAL).
pub const OFPORT_LOCAL: i64 = 65534;

/// How weft treats a column a client writes.
enum Policy {
    /// Mapped to the configuration.
    Acted,
    /// Kept and returned, not acted on.
    Stored,
    /// Refused unless it holds its default, with why.
    Refused(&'static str),
}

/// The policy of each column clients may write (status columns are refused by the schema itself).
fn policy(table: &str, col: &str) -> Policy {
    use Policy::*;
    match (table, col) {
        ("Open_vSwitch", "bridges" | "ssl" | "next_cfg" | "manager_options") => Acted,
        ("Open_vSwitch", "datapaths") => Refused("weft has no Datapath rows (conntrack timeout policies per zone)"),
        ("Bridge", "name" | "ports" | "controller" | "fail_mode" | "protocols" | "other_config" | "external_ids") => {
            Acted
        }
        ("Bridge", "stp_enable" | "rstp_enable") => Refused("weft does not run the spanning tree protocol"),
        ("Bridge", "mcast_snooping_enable") => Refused("weft does not snoop IGMP/MLD"),
        ("Bridge", "mirrors") => Refused("weft has no port mirroring"),
        ("Bridge", "netflow" | "sflow" | "ipfix") => Refused("weft exports no NetFlow, sFlow or IPFIX"),
        ("Bridge", "flood_vlans") => Refused("weft has no flood_vlans"),
        ("Bridge", "flow_tables") => Refused("weft has no Flow_Table settings"),
        ("Bridge", "auto_attach") => Refused("weft has no Auto Attach"),
        ("Port", "name" | "interfaces" | "tag" | "trunks" | "external_ids") => Acted,
        ("Port", "cvlans") => Refused("weft has no 802.1ad customer VLANs"),
        ("Port", "qos") => Refused("weft has no QoS"),
        ("Port", "bond_mode" | "bond_updelay" | "bond_downdelay" | "bond_fake_iface" | "mac") => {
            Refused("weft has no bonds")
        }
        ("Port", "lacp") => Refused("weft has no LACP"),
        ("Port", "fake_bridge") => Refused("weft has no fake bridges"),
        ("Port", "protected") => Refused("weft has no protected ports"),
        ("Interface", "name" | "type" | "options" | "external_ids" | "ofport_request") => Acted,
        ("Interface", "ingress_policing_rate" | "ingress_policing_burst") => Refused("weft has no ingress policing"),
        ("Interface", "ingress_policing_kpkts_rate" | "ingress_policing_kpkts_burst") => {
            Refused("weft has no ingress policing")
        }
        ("Interface", "bfd") => Refused("weft has no BFD"),
        ("Interface", "lldp") => Refused("weft has no LLDP"),
        ("Interface", "mac") => Refused("weft does not set interfaces' MAC addresses (ip link does)"),
        ("Interface", "cfm_mpid") => Refused("weft has no CFM"),
        ("Controller", "target") => Acted,
        ("SSL", "private_key" | "certificate" | "ca_cert") => Acted,
        ("SSL", "bootstrap_ca_cert") => Refused("weft does not bootstrap CA certificates"),
        // Listened on when ptcp: or punix: (weftd), the rest kept.
        ("Manager", "target") => Acted,
        ("Manager", _) => Stored,
        (
            "Flow_Table"
            | "QoS"
            | "Queue"
            | "Mirror"
            | "NetFlow"
            | "Datapath"
            | "CT_Zone"
            | "CT_Timeout_Policy"
            | "sFlow"
            | "IPFIX"
            | "Flow_Sample_Collector_Set"
            | "AutoAttach",
            _,
        ) => Refused("weft does not implement this table"),
        _ => Stored,
    }
}

/// Whether `col` of `table` is one weft refuses and what it says then, for docs and tests.
pub fn refused(table: &str, col: &str) -> Option<&'static str> {
    match policy(table, col) {
        Policy::Refused(why) => Some(why),
        _ => None,
    }
}

struct Ids<'a> {
    extra: &'a OvsdbExtra,
    salt: u64,
}

impl Ids<'_> {
    fn get(&self, table: &str, key: &str) -> Uuid {
        let k = row_key(table, key);
        self.extra.uuids.get(&k).and_then(|s| Uuid::parse(s)).unwrap_or_else(|| Uuid::derived(self.salt, table, key))
    }
}

fn row_key(table: &str, key: &str) -> String {
    if key.is_empty() {
        table.to_string()
    } else {
        format!("{table}/{key}")
    }
}

/// Fills a row: every column at its default, then stored columns, then `set`.
fn make_row(t: &TableSchema, extra: &OvsdbExtra, key: &str, set: Vec<(&str, Datum)>) -> Row {
    let mut row: Row = t.columns.iter().map(|c| (c.name.clone(), c.ty.default_datum())).collect();
    if let Some(stored) = extra.columns.get(key) {
        for (c, v) in stored {
            if let Some(col) = t.column(c) {
                if let Ok(d) = col.ty.datum_from_json(v, &|_| None, true) {
                    row.insert(c.clone(), d);
                }
            }
        }
    }
    for (c, d) in set {
        row.insert(c.to_string(), d);
    }
    row
}

fn string_map(m: &BTreeMap<String, String>) -> Datum {
    Datum::string_map(m.iter())
}

/// The `Open_vSwitch` database weft's configuration and state make.
pub fn project(config: &Config, status: &Status) -> Db {
    let s = vswitch();
    let extra = &config.ovsdb;
    let ids = Ids { extra, salt: status.salt };
    let mut db = Db::new(s);
    let tab = |n: &str| s.table(n).expect("table of weft's schema");
    let mut bridges = Vec::new();
    for b in &config.bridges {
        let bu = ids.get("Bridge", &b.name);
        bridges.push(bu);
        let mut port_ids = Vec::new();
        // The bridge's own port (OFPP_LOCAL), then the others.
        let local = PortConfig {
            name: b.name.clone(),
            ofport: OFPORT_LOCAL as u32,
            iface_type: IfaceType::Internal,
            options: BTreeMap::new(),
            vlan: b.local_vlan.clone(),
            external_ids: BTreeMap::new(),
            of_config: b.local_of_config,
        };
        for p in std::iter::once(&local).chain(&b.ports) {
            let (pu, iu) = (ids.get("Port", &p.name), ids.get("Interface", &p.name));
            port_ids.push(pu);
            let prow = make_row(
                tab("Port"),
                extra,
                &row_key("Port", &p.name),
                vec![
                    ("name", Datum::string(&p.name)),
                    ("interfaces", Datum::uuid(iu)),
                    ("tag", Datum::opt_int(p.vlan.tag.map(i64::from))),
                    ("trunks", Datum::Set(p.vlan.trunks.iter().map(|v| Atom::Integer(*v as i64)).collect())),
                    ("external_ids", string_map(&p.vlan.external_ids)),
                ],
            );
            db.tables.get_mut("Port").expect("table").insert(pu, prow);
            let st = status.ifaces.get(&p.name).cloned().unwrap_or_default();
            let ty = if p.iface_type == IfaceType::System { "" } else { p.iface_type.as_str() };
            let ikey = row_key("Interface", &p.name);
            let stored_type = extra.columns.get(&ikey).and_then(|c| c.get("type")).and_then(|v| v.as_str());
            let ty = match stored_type {
                Some(t) if IfaceType::parse(t).ok() == Some(p.iface_type) => t.to_string(),
                _ => ty.to_string(),
            };
            let updown = |b: Option<bool>| Datum::opt_string(b.map(|u| if u { "up" } else { "down" }));
            let irow = make_row(
                tab("Interface"),
                extra,
                &ikey,
                vec![
                    ("name", Datum::string(&p.name)),
                    ("type", Datum::string(ty)),
                    ("options", string_map(&p.options)),
                    ("external_ids", string_map(&p.external_ids)),
                    ("ofport", Datum::int(p.ofport as i64)),
                    ("link_state", updown(st.link_up)),
                    ("admin_state", updown(st.admin_up)),
                    ("mtu", Datum::opt_int(st.mtu)),
                    ("mac_in_use", Datum::opt_string(st.mac.clone())),
                    ("ifindex", Datum::opt_int(st.ifindex)),
                    (
                        "statistics",
                        Datum::Map(
                            st.statistics.iter().map(|(k, v)| (Atom::String(k.clone()), Atom::Integer(*v))).collect(),
                        ),
                    ),
                    ("error", Datum::opt_string(st.error.clone())),
                ],
            );
            db.tables.get_mut("Interface").expect("table").insert(iu, irow);
        }
        let mut ctl_ids = Vec::new();
        for c in &b.controllers {
            let key = format!("{}/{c}", b.name);
            let cu = ids.get("Controller", &key);
            ctl_ids.push(cu);
            let (connected, role) = status.controllers.get(&(b.name.clone(), c.clone())).cloned().unwrap_or_default();
            let crow = make_row(
                tab("Controller"),
                extra,
                &row_key("Controller", &key),
                vec![
                    ("target", Datum::string(c)),
                    ("is_connected", Datum::boolean(connected)),
                    ("role", Datum::opt_string(role)),
                ],
            );
            db.tables.get_mut("Controller").expect("table").insert(cu, crow);
        }
        let brow = make_row(
            tab("Bridge"),
            extra,
            &row_key("Bridge", &b.name),
            vec![
                ("name", Datum::string(&b.name)),
                ("ports", Datum::uuids(port_ids)),
                ("controller", Datum::uuids(ctl_ids)),
                ("fail_mode", Datum::opt_string(b.fail_mode.map(|f| f.as_str()))),
                ("protocols", Datum::strings(b.protocols.iter().cloned())),
                ("other_config", string_map(&b.other_config)),
                ("external_ids", string_map(&b.external_ids)),
                ("datapath_id", Datum::string(format!("{:016x}", b.datapath_id()))),
                ("datapath_version", Datum::string("<weft>")),
            ],
        );
        db.tables.get_mut("Bridge").expect("table").insert(bu, brow);
    }
    let mut managers = Vec::new();
    for key in extra.columns.keys().filter(|k| k.starts_with("Manager/")) {
        let target = &key["Manager/".len()..];
        let mu = ids.get("Manager", target);
        managers.push(mu);
        let mrow = make_row(tab("Manager"), extra, key, vec![("target", Datum::string(target))]);
        db.tables.get_mut("Manager").expect("table").insert(mu, mrow);
    }
    let ssl = config.ssl.as_ref().map(|ssl| {
        let su = ids.get("SSL", "");
        let row = make_row(
            tab("SSL"),
            extra,
            "SSL",
            vec![
                ("private_key", Datum::string(&ssl.private_key)),
                ("certificate", Datum::string(&ssl.certificate)),
                ("ca_cert", Datum::string(&ssl.ca_cert)),
            ],
        );
        db.tables.get_mut("SSL").expect("table").insert(su, row);
        su
    });
    let root = make_row(
        tab("Open_vSwitch"),
        extra,
        "Open_vSwitch",
        vec![
            ("bridges", Datum::uuids(bridges)),
            ("manager_options", Datum::uuids(managers)),
            ("ssl", Datum::uuids(ssl)),
            ("next_cfg", Datum::int(extra.next_cfg)),
            ("cur_cfg", Datum::int(extra.next_cfg)),
            ("ovs_version", Datum::string(&status.version)),
            ("db_version", Datum::string(super::schema::VSWITCH_VERSION)),
            ("datapath_types", Datum::strings(["netdev", "system"])),
            (
                "iface_types",
                Datum::strings(["geneve", "gre", "internal", "ipsec_gre", "patch", "system", "tap", "vxlan"]),
            ),
        ],
    );
    db.tables.get_mut("Open_vSwitch").expect("table").insert(ids.get("Open_vSwitch", ""), root);
    db
}

/// The configuration a database describes, built on `old` (what OVSDB does not hold is kept from it).
/// Refuses what weft cannot carry out; the caller validates the result whole.
pub fn to_config(db: &Db, old: &Config, salt: u64) -> Result<Config, DbError> {
    let mut extra = OvsdbExtra { salt, ..OvsdbExtra::default() };
    for t in ["Flow_Table", "QoS", "Queue", "Mirror", "NetFlow", "sFlow", "IPFIX", "Flow_Sample_Collector_Set"] {
        if db.table(t).is_some_and(|r| !r.is_empty()) {
            return Err(refuse(format!("a row in table {t}: weft does not implement this table")));
        }
    }
    for t in ["AutoAttach", "Datapath", "CT_Zone", "CT_Timeout_Policy"] {
        if db.table(t).is_some_and(|r| !r.is_empty()) {
            return Err(refuse(format!("a row in table {t}: weft does not implement this table")));
        }
    }
    let roots = db.table("Open_vSwitch").ok_or_else(|| refuse("no Open_vSwitch table".into()))?;
    let (ru, root) = match roots.iter().next() {
        Some((u, r)) if roots.len() == 1 => (*u, r),
        _ => return Err(refuse("the Open_vSwitch table must keep exactly one row".into())),
    };
    keep(&mut extra, salt, "Open_vSwitch", "", ru, root)?;
    let next_cfg = root.get("next_cfg").and_then(Datum::as_int).unwrap_or(0);
    let mut new = old.clone();
    // SSL.
    new.ssl = None;
    for u in root.get("ssl").map(Datum::uuids_in).unwrap_or_default() {
        let r = db.row("SSL", u).ok_or_else(|| refuse("a missing SSL row".into()))?;
        keep(&mut extra, salt, "SSL", "", u, r)?;
        let get = |c: &str| r.get(c).and_then(Datum::as_str).unwrap_or("").to_string();
        new.ssl = Some(SslConfig {
            private_key: get("private_key"),
            certificate: get("certificate"),
            ca_cert: get("ca_cert"),
        });
    }
    // Managers are kept, not acted on.
    for u in root.get("manager_options").map(Datum::uuids_in).unwrap_or_default() {
        let r = db.row("Manager", u).ok_or_else(|| refuse("a missing Manager row".into()))?;
        let target = r.get("target").and_then(Datum::as_str).unwrap_or("").to_string();
        keep(&mut extra, salt, "Manager", &target, u, r)?;
        // An empty row keeps the Manager in the view.
        extra.columns.entry(row_key("Manager", &target)).or_default();
    }
    // Bridges, in the order the old configuration had them, new ones after by name.
    let mut rows: Vec<(Uuid, &Row, String)> = Vec::new();
    for u in root.get("bridges").map(Datum::uuids_in).unwrap_or_default() {
        let r = db.row("Bridge", u).ok_or_else(|| refuse("a missing Bridge row".into()))?;
        rows.push((u, r, r.get("name").and_then(Datum::as_str).unwrap_or("").to_string()));
    }
    let order = |n: &str| old.bridges.iter().position(|b| b.name == n).unwrap_or(usize::MAX);
    rows.sort_by(|a, b| (order(&a.2), &a.2).cmp(&(order(&b.2), &b.2)));
    new.bridges.clear();
    for (bu, br, name) in rows {
        keep(&mut extra, salt, "Bridge", &name, bu, br)?;
        let mut b = match old.bridge(&name) {
            Some(b) => b.clone(),
            None => {
                let mut scratch = Config::default();
                scratch.add_bridge(&name, false).map_err(|e| refuse(e.to_string()))?;
                scratch.bridges.remove(0)
            }
        };
        b.other_config = br.get("other_config").map(Datum::to_string_map).unwrap_or_default();
        b.external_ids = br.get("external_ids").map(Datum::to_string_map).unwrap_or_default();
        b.protocols = br.get("protocols").map(Datum::to_strings).unwrap_or_default();
        b.fail_mode = match br.get("fail_mode").and_then(Datum::as_str) {
            Some("secure") => Some(FailMode::Secure),
            Some("standalone") => Some(FailMode::Standalone),
            _ => None,
        };
        b.controllers.clear();
        for cu in br.get("controller").map(Datum::uuids_in).unwrap_or_default() {
            let cr = db.row("Controller", cu).ok_or_else(|| refuse("a missing Controller row".into()))?;
            let target = cr.get("target").and_then(Datum::as_str).unwrap_or("").to_string();
            keep(&mut extra, salt, "Controller", &format!("{name}/{target}"), cu, cr)?;
            if !b.controllers.contains(&target) {
                b.controllers.push(target);
            }
        }
        let old_ports = b.ports.clone();
        b.ports.clear();
        let mut prows: Vec<(Uuid, &Row, String)> = Vec::new();
        for pu in br.get("ports").map(Datum::uuids_in).unwrap_or_default() {
            let pr = db.row("Port", pu).ok_or_else(|| refuse("a missing Port row".into()))?;
            prows.push((pu, pr, pr.get("name").and_then(Datum::as_str).unwrap_or("").to_string()));
        }
        // Ports keep their order; new ones come after, by ofport_request and then name.
        let porder = |n: &str| old_ports.iter().position(|p| p.name == n).unwrap_or(usize::MAX);
        prows.sort_by(|a, b| (porder(&a.2), &a.2).cmp(&(porder(&b.2), &b.2)));
        let mut local_seen = false;
        for (pu, pr, pname) in prows {
            keep(&mut extra, salt, "Port", &pname, pu, pr)?;
            let ifaces = pr.get("interfaces").map(Datum::uuids_in).unwrap_or_default();
            if ifaces.len() != 1 {
                return Err(refuse(format!("port {pname:?} has {} interfaces: weft has no bonds", ifaces.len())));
            }
            let iu = ifaces[0];
            let ir = db.row("Interface", iu).ok_or_else(|| refuse("a missing Interface row".into()))?;
            let iname = ir.get("name").and_then(Datum::as_str).unwrap_or("").to_string();
            if iname != pname {
                return Err(refuse(format!(
                    "port {pname:?} has interface {iname:?}: weft's ports and their interfaces share a name"
                )));
            }
            keep(&mut extra, salt, "Interface", &iname, iu, ir)?;
            let ty_text = ir.get("type").and_then(Datum::as_str).unwrap_or("");
            let ty = IfaceType::parse(ty_text).map_err(|e| refuse(format!("interface {iname:?}: {e}")))?;
            if !ty_text.is_empty() && ty == IfaceType::System && ty_text != "system" {
                return Err(refuse(format!("interface {iname:?}: unknown type {ty_text:?}")));
            }
            if ty_text == "system" {
                extra.columns.entry(row_key("Interface", &iname)).or_default().insert("type".into(), "system".into());
            }
            let vlan = PortVlan {
                tag: pr.get("tag").and_then(Datum::as_int).map(|t| t as u16),
                trunks: pr
                    .get("trunks")
                    .map(|d| d.keys().filter_map(Atom::as_int).map(|v| v as u16).collect())
                    .unwrap_or_default(),
                external_ids: pr.get("external_ids").map(Datum::to_string_map).unwrap_or_default(),
            };
            if let Some(mode) = pr.get("vlan_mode").and_then(Datum::as_str) {
                let fits = match mode {
                    "access" => vlan.tag.is_some(),
                    "trunk" => vlan.tag.is_none(),
                    _ => false,
                };
                if !fits {
                    return Err(refuse(format!(
                        "port {pname:?}: vlan_mode={mode}: weft's ports are access ports (tag) or trunks (no tag)"
                    )));
                }
            }
            if pname == name {
                if ty != IfaceType::Internal {
                    return Err(refuse(format!("the bridge's own port {pname:?} must be of type internal")));
                }
                b.local_vlan = vlan;
                local_seen = true;
                continue;
            }
            let options = ir.get("options").map(Datum::to_string_map).unwrap_or_default();
            let external_ids = ir.get("external_ids").map(Datum::to_string_map).unwrap_or_default();
            let p = match old_ports.iter().find(|p| p.name == pname) {
                Some(p) if p.iface_type == ty || (p.iface_type.is_tunnel() && ty.is_tunnel()) => {
                    let mut p = p.clone();
                    p.iface_type = ty;
                    p.options = options;
                    p.external_ids = external_ids;
                    p.vlan = vlan;
                    p
                }
                _ => PortConfig {
                    name: pname.clone(),
                    ofport: 0,
                    iface_type: ty,
                    options,
                    vlan,
                    external_ids,
                    of_config: 0,
                },
            };
            b.ports.push(p);
        }
        if !local_seen {
            // A bridge inserted without its own port still has one, as ovs-vswitchd makes it.
            b.local_vlan = PortVlan::default();
        }
        // New ports get the ofport they ask for when it is free, else the next number.
        let mut taken: BTreeSet<u32> = b.ports.iter().filter(|p| p.ofport != 0).map(|p| p.ofport).collect();
        for p in b.ports.iter_mut().filter(|p| p.ofport == 0) {
            let request = ofport_request(db, &p.name);
            p.ofport = match request {
                Some(r) if !taken.contains(&r) => r,
                _ => {
                    while taken.contains(&b.next_ofport) {
                        b.next_ofport += 1;
                    }
                    b.next_ofport
                }
            };
            taken.insert(p.ofport);
            b.next_ofport = b.next_ofport.max(p.ofport + 1);
        }
        new.bridges.push(b);
    }
    extra.next_cfg = next_cfg;
    new.ovsdb = extra;
    Ok(new)
}

/// Checks a row's columns against their policies and keeps its stored ones (and its UUID when it is not
/// the derived one).
fn keep(extra: &mut OvsdbExtra, salt: u64, table: &str, key: &str, u: Uuid, row: &Row) -> Result<(), DbError> {
    let t = vswitch().table(table).expect("table of weft's schema");
    let k = row_key(table, key);
    if u != Uuid::derived(salt, table, key) {
        extra.uuids.insert(k.clone(), u.to_string());
    }
    for c in t.columns.iter().filter(|c| !c.read_only) {
        let Some(v) = row.get(&c.name) else { continue };
        match policy(table, &c.name) {
            Policy::Acted => {}
            Policy::Stored => {
                if *v != c.ty.default_datum() {
                    extra.columns.entry(k.clone()).or_default().insert(c.name.clone(), v.to_json());
                }
            }
            Policy::Refused(why) => {
                if *v != c.ty.default_datum() {
                    return Err(refuse(format!("{table} {key:?} sets {}: {why}", c.name)));
                }
            }
        }
    }
    Ok(())
}

fn refuse(details: String) -> DbError {
    DbError::constraint(format!("weft cannot carry this out: {details}"))
}

/// The `ofport_request` of interface `name`.
fn ofport_request(db: &Db, name: &str) -> Option<u32> {
    db.table("Interface")?
        .values()
        .find(|r| r.get("name").and_then(Datum::as_str) == Some(name))
        .and_then(|r| r.get("ofport_request"))
        .and_then(Datum::as_int)
        .map(|v| v as u32)
}

/// What weft does with each column of the schema, as docs/ovsdb.md lists it: `acted on`, `stored`,
/// `status` (filled by weftd) or `refused` (unless it holds its default), with why.
pub fn coverage() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for t in &vswitch().tables {
        for c in &t.columns {
            let what = if c.read_only {
                "status".to_string()
            } else {
                match policy(&t.name, &c.name) {
                    Policy::Acted => "acted on".to_string(),
                    Policy::Stored => "stored".to_string(),
                    Policy::Refused(why) => format!("refused: {why}"),
                }
            };
            out.push((t.name.clone(), c.name.clone(), what));
        }
    }
    out
}

/// [`coverage`] as the Markdown table of docs/ovsdb.md: one row per table, its columns grouped by what
/// weft does with them.
pub fn coverage_markdown() -> String {
    let mut out = String::from(
        "| table | acted on | stored | status (weftd fills) | refused unless default |\n|---|---|---|---|---|\n",
    );
    for t in &vswitch().tables {
        let rows: Vec<(String, String, String)> = coverage().into_iter().filter(|(tn, _, _)| *tn == t.name).collect();
        let pick = |f: &dyn Fn(&str) -> bool| -> String {
            let cols: Vec<String> = rows.iter().filter(|(_, _, w)| f(w)).map(|(_, c, _)| format!("`{c}`")).collect();
            if cols.is_empty() {
                "-".to_string()
            } else {
                cols.join(", ")
            }
        };
        let mut whys: Vec<&str> = Vec::new();
        for w in rows.iter().filter_map(|(_, _, w)| w.strip_prefix("refused: ")) {
            if !whys.contains(&w) {
                whys.push(w);
            }
        }
        let refused = match pick(&|w| w.starts_with("refused")) {
            r if r == "-" => r,
            _ if whys == ["weft does not implement this table"] => "any row: weft does not implement this table".into(),
            r => format!("{r} ({})", whys.join("; ")),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            t.name,
            pick(&|w| w == "acted on"),
            pick(&|w| w == "stored"),
            pick(&|w| w == "status"),
            refused
        ));
    }
    out
}
