//! Schemas: column types with their constraints, values parsed from JSON and checked against them, and the
//! `Open_vSwitch` schema itself, written from ovs-vswitchd.conf.db(5) in a compact notation of weft's own.
//!
//! The notation, one table per `table` line and one column per indented line:
//! - a base type is `str`, `int`, `bool`, `real` or `uuid`; `&Table` is a strong reference, `~Table` a weak
//!   one; `int[A,B]` bounds an integer (either end may be empty); `str{a|b}` lists a string's values;
//! - a quantifier follows: none for exactly one, `?` for an optional value, `*` for a set of any size, `+`
//!   for one or more, `*N` for at most N;
//! - `map(KEY,VALUE)` is a map of any size;
//! - words after the type: `ro` (a status column weftd fills; clients may not write it), `imm` (set when
//!   the row is made, never changed), `eph` (ephemeral).

use super::{Atom, Datum, DbError, Uuid};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomKind {
    Integer,
    Real,
    Boolean,
    String,
    Uuid,
}

impl AtomKind {
    pub fn name(self) -> &'static str {
        match self {
            AtomKind::Integer => "integer",
            AtomKind::Real => "real",
            AtomKind::Boolean => "boolean",
            AtomKind::String => "string",
            AtomKind::Uuid => "uuid",
        }
    }
}

/// One atom's type and constraints.
#[derive(Clone, Debug, PartialEq)]
pub struct BaseType {
    pub kind: AtomKind,
    pub min_int: Option<i64>,
    pub max_int: Option<i64>,
    pub enumeration: Option<Vec<String>>,
    pub ref_table: Option<String>,
    pub weak: bool,
}

/// A column's type: a set of `key` atoms of `min..=max` elements, or a map from `key` to `value`.
#[derive(Clone, Debug, PartialEq)]
pub struct ColType {
    pub key: BaseType,
    pub value: Option<BaseType>,
    pub min: usize,
    pub max: usize,
}

#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub ty: ColType,
    /// Written by weftd (status); a client's write is refused.
    pub read_only: bool,
    pub immutable: bool,
    pub ephemeral: bool,
}

#[derive(Clone, Debug)]
pub struct TableSchema {
    pub name: String,
    pub columns: Vec<Column>,
    pub is_root: bool,
    pub max_rows: Option<usize>,
    pub indexes: Vec<Vec<String>>,
}

impl TableSchema {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[derive(Clone, Debug)]
pub struct Schema {
    pub name: String,
    pub version: String,
    pub tables: Vec<TableSchema>,
}

impl Schema {
    pub fn table(&self, name: &str) -> Option<&TableSchema> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The schema as `get_schema` returns it (RFC 7047, 3.2).
    pub fn to_json(&self) -> Value {
        let mut tables = Map::new();
        for t in &self.tables {
            let mut cols = Map::new();
            for c in &t.columns {
                let mut col = Map::new();
                col.insert("type".into(), c.ty.to_json());
                if c.ephemeral {
                    col.insert("ephemeral".into(), json!(true));
                }
                if c.immutable {
                    col.insert("mutable".into(), json!(false));
                }
                cols.insert(c.name.clone(), Value::Object(col));
            }
            let mut tv = Map::new();
            tv.insert("columns".into(), Value::Object(cols));
            if t.is_root {
                tv.insert("isRoot".into(), json!(true));
            }
            if let Some(m) = t.max_rows {
                tv.insert("maxRows".into(), json!(m));
            }
            if !t.indexes.is_empty() {
                tv.insert("indexes".into(), json!(t.indexes));
            }
            tables.insert(t.name.clone(), Value::Object(tv));
        }
        json!({"name": self.name, "version": self.version, "tables": tables})
    }
}

impl BaseType {
    fn simple(kind: AtomKind) -> BaseType {
        BaseType { kind, min_int: None, max_int: None, enumeration: None, ref_table: None, weak: false }
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!(self.kind.name()));
        if let Some(v) = self.min_int {
            m.insert("minInteger".into(), json!(v));
        }
        if let Some(v) = self.max_int {
            m.insert("maxInteger".into(), json!(v));
        }
        if let Some(e) = &self.enumeration {
            m.insert("enum".into(), json!(["set", e]));
        }
        if let Some(t) = &self.ref_table {
            m.insert("refTable".into(), json!(t));
            if self.weak {
                m.insert("refType".into(), json!("weak"));
            }
        }
        if m.len() == 1 {
            json!(self.kind.name())
        } else {
            Value::Object(m)
        }
    }

    /// The atom's default (RFC 7047: 0, 0.0, false, "" or the all-zero UUID; the first value of an
    /// enumeration).
    pub fn default_atom(&self) -> Atom {
        match self.kind {
            AtomKind::Integer => Atom::Integer(self.min_int.unwrap_or(0).max(0).min(self.max_int.unwrap_or(i64::MAX))),
            AtomKind::Real => Atom::Real(0.0),
            AtomKind::Boolean => Atom::Boolean(false),
            AtomKind::String => Atom::String(self.enumeration.as_ref().map_or(String::new(), |e| e[0].clone())),
            AtomKind::Uuid => Atom::Uuid(Uuid(0)),
        }
    }

    /// Parses one atom: a JSON number, boolean or string, or `["uuid", U]` / `["named-uuid", NAME]` (the
    /// latter through `names`), and checks its constraints.
    pub fn atom_from_json(&self, v: &Value, names: &dyn Fn(&str) -> Option<Uuid>) -> Result<Atom, DbError> {
        let bad = || DbError::syntax(format!("{v} is not a valid {}", self.kind.name()));
        let atom = match self.kind {
            AtomKind::Integer => Atom::Integer(v.as_i64().ok_or_else(bad)?),
            AtomKind::Real => Atom::Real(v.as_f64().ok_or_else(bad)?),
            AtomKind::Boolean => Atom::Boolean(v.as_bool().ok_or_else(bad)?),
            AtomKind::String => Atom::String(v.as_str().ok_or_else(bad)?.to_string()),
            AtomKind::Uuid => {
                let pair = v.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
                let text = pair[1].as_str().ok_or_else(bad)?;
                match pair[0].as_str() {
                    Some("uuid") => Atom::Uuid(Uuid::parse(text).ok_or_else(bad)?),
                    Some("named-uuid") => {
                        Atom::Uuid(names(text).ok_or_else(|| DbError::syntax(format!("unknown named-uuid {text:?}")))?)
                    }
                    _ => return Err(bad()),
                }
            }
        };
        self.check(&atom)?;
        Ok(atom)
    }

    /// Checks an atom against the range and enumeration.
    pub fn check(&self, a: &Atom) -> Result<(), DbError> {
        if let Atom::Integer(i) = a {
            if self.min_int.is_some_and(|m| *i < m) || self.max_int.is_some_and(|m| *i > m) {
                let range = match (self.min_int, self.max_int) {
                    (Some(lo), Some(hi)) => format!("in range {lo} to {hi}"),
                    (Some(lo), None) => format!("at least {lo}"),
                    (None, Some(hi)) => format!("at most {hi}"),
                    (None, None) => String::new(),
                };
                return Err(DbError::constraint(format!("{i} is not {range}")));
            }
        }
        if let (Atom::String(s), Some(e)) = (a, &self.enumeration) {
            if !e.iter().any(|x| x == s) {
                return Err(DbError::constraint(format!("{s:?} is not one of the allowed values ({})", e.join(", "))));
            }
        }
        Ok(())
    }
}

impl ColType {
    pub fn is_map(&self) -> bool {
        self.value.is_some()
    }

    /// The column's default value: empty when it may be, else one default atom.
    pub fn default_datum(&self) -> Datum {
        match &self.value {
            Some(_) => Datum::Map(BTreeMap::new()),
            None if self.min == 0 => Datum::empty_set(),
            None => Datum::one(self.key.default_atom()),
        }
    }

    fn to_json(&self) -> Value {
        if self.value.is_none() && self.min == 1 && self.max == 1 && matches!(self.key.to_json(), Value::String(_)) {
            return self.key.to_json();
        }
        let mut m = Map::new();
        m.insert("key".into(), self.key.to_json());
        if let Some(v) = &self.value {
            m.insert("value".into(), v.to_json());
        }
        m.insert("min".into(), json!(self.min));
        m.insert("max".into(), if self.max == usize::MAX { json!("unlimited") } else { json!(self.max) });
        Value::Object(m)
    }

    /// Parses a value of this type from JSON; `sized` also checks the number of elements (not done for the
    /// operand of a mutation or a condition, which may be any part of a value).
    pub fn datum_from_json(
        &self,
        v: &Value,
        names: &dyn Fn(&str) -> Option<Uuid>,
        sized: bool,
    ) -> Result<Datum, DbError> {
        let d = match &self.value {
            Some(vt) => {
                let pairs = tagged(v, "map").ok_or_else(|| DbError::syntax(format!("{v} is not a map")))?;
                let mut m = BTreeMap::new();
                for p in pairs {
                    let kv = p.as_array().filter(|a| a.len() == 2).ok_or_else(|| DbError::syntax("bad map pair"))?;
                    let k = self.key.atom_from_json(&kv[0], names)?;
                    if m.insert(k, vt.atom_from_json(&kv[1], names)?).is_some() {
                        return Err(DbError::syntax(format!("{v}: a key appears twice")));
                    }
                }
                Datum::Map(m)
            }
            None => match tagged(v, "set") {
                Some(items) => {
                    let mut s = BTreeSet::new();
                    for i in items {
                        if !s.insert(self.key.atom_from_json(i, names)?) {
                            return Err(DbError::syntax(format!("{v}: a value appears twice")));
                        }
                    }
                    Datum::Set(s)
                }
                None => Datum::one(self.key.atom_from_json(v, names)?),
            },
        };
        if sized {
            self.check_size(&d)?;
        }
        Ok(d)
    }

    /// The operand of a map `delete` mutation may be a set of keys: parsed as such.
    pub fn keys_from_json(&self, v: &Value, names: &dyn Fn(&str) -> Option<Uuid>) -> Result<Datum, DbError> {
        let keys = ColType { key: self.key.clone(), value: None, min: 0, max: usize::MAX };
        keys.datum_from_json(v, names, false)
    }

    pub fn check_size(&self, d: &Datum) -> Result<(), DbError> {
        let n = d.len();
        if n < self.min || n > self.max {
            let max = if self.max == usize::MAX { "any number".to_string() } else { self.max.to_string() };
            return Err(DbError::constraint(format!("{n} value(s) where {} to {max} are allowed", self.min)));
        }
        Ok(())
    }
}

/// The elements of `["TAG", [...]]`.
fn tagged<'a>(v: &'a Value, tag: &str) -> Option<&'a Vec<Value>> {
    let a = v.as_array().filter(|a| a.len() == 2)?;
    (a[0].as_str() == Some(tag)).then_some(())?;
    a[1].as_array()
}

fn parse_base(s: &str) -> Result<BaseType, String> {
    if let Some(t) = s.strip_prefix('&') {
        return Ok(BaseType { ref_table: Some(t.into()), ..BaseType::simple(AtomKind::Uuid) });
    }
    if let Some(t) = s.strip_prefix('~') {
        return Ok(BaseType { ref_table: Some(t.into()), weak: true, ..BaseType::simple(AtomKind::Uuid) });
    }
    let (name, rest) = s.find(['[', '{']).map_or((s, ""), |i| s.split_at(i));
    let kind = match name {
        "str" => AtomKind::String,
        "int" => AtomKind::Integer,
        "bool" => AtomKind::Boolean,
        "real" => AtomKind::Real,
        "uuid" => AtomKind::Uuid,
        _ => return Err(format!("unknown type {name:?}")),
    };
    let mut b = BaseType::simple(kind);
    if let Some(r) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let (lo, hi) = r.split_once(',').ok_or("range needs a comma")?;
        let num = |x: &str| -> Result<Option<i64>, String> {
            (!x.is_empty()).then(|| x.parse::<i64>().map_err(|e| e.to_string())).transpose()
        };
        b.min_int = num(lo)?;
        b.max_int = num(hi)?;
    } else if let Some(r) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        b.enumeration = Some(r.split('|').map(str::to_string).collect());
    } else if !rest.is_empty() {
        return Err(format!("bad type {s:?}"));
    }
    Ok(b)
}

fn parse_type(s: &str) -> Result<ColType, String> {
    if let Some(inner) = s.strip_prefix("map(").and_then(|r| r.strip_suffix(')')) {
        // The comma between key and value is the one outside brackets.
        let mut depth = 0i32;
        let at = inner
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '[' | '{' => 1,
                    ']' | '}' => -1,
                    _ => 0,
                };
                c == ',' && depth == 0
            })
            .map(|(i, _)| i)
            .ok_or("map needs KEY,VALUE")?;
        let (k, v) = (&inner[..at], &inner[at + 1..]);
        return Ok(ColType { key: parse_base(k)?, value: Some(parse_base(v)?), min: 0, max: usize::MAX });
    }
    let (base, min, max) = if let Some(b) = s.strip_suffix('?') {
        (b, 0, 1)
    } else if let Some(b) = s.strip_suffix('+') {
        (b, 1, usize::MAX)
    } else if let Some(b) = s.strip_suffix('*') {
        (b, 0, usize::MAX)
    } else if let Some((b, n)) = s.rsplit_once('*').filter(|(_, n)| n.bytes().all(|c| c.is_ascii_digit())) {
        (b, 0, n.parse().map_err(|_| "bad set size")?)
    } else {
        (s, 1, 1)
    };
    Ok(ColType { key: parse_base(base)?, value: None, min, max })
}

/// Parses the notation above.
pub fn parse(name: &str, version: &str, text: &str) -> Result<Schema, String> {
    let mut tables: Vec<TableSchema> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() || words[0].starts_with('#') {
            continue;
        }
        let err = |e: String| format!("schema line {}: {e}", n + 1);
        if words[0] == "table" {
            let mut t = TableSchema {
                name: words.get(1).ok_or_else(|| err("table needs a name".into()))?.to_string(),
                columns: Vec::new(),
                is_root: false,
                max_rows: None,
                indexes: Vec::new(),
            };
            for w in &words[2..] {
                match *w {
                    "root" => t.is_root = true,
                    "max1" => t.max_rows = Some(1),
                    w => match w.strip_prefix("index=") {
                        Some(cols) => t.indexes.push(cols.split(',').map(str::to_string).collect()),
                        None => return Err(err(format!("unknown table flag {w:?}"))),
                    },
                }
            }
            tables.push(t);
            continue;
        }
        let t = tables.last_mut().ok_or_else(|| err("column outside a table".into()))?;
        let ty = parse_type(words.get(1).ok_or_else(|| err("column needs a type".into()))?).map_err(err)?;
        let mut c = Column { name: words[0].to_string(), ty, read_only: false, immutable: false, ephemeral: false };
        for w in &words[2..] {
            match *w {
                "ro" => c.read_only = true,
                "imm" => c.immutable = true,
                "eph" => c.ephemeral = true,
                w => return Err(err(format!("unknown column flag {w:?}"))),
            }
        }
        t.columns.push(c);
    }
    let s = Schema { name: name.into(), version: version.into(), tables };
    for t in &s.tables {
        for c in &t.columns {
            for b in std::iter::once(&c.ty.key).chain(c.ty.value.as_ref()) {
                if let Some(r) = &b.ref_table {
                    if s.table(r).is_none() {
                        return Err(format!("{}.{} refers to unknown table {r}", t.name, c.name));
                    }
                }
            }
        }
    }
    Ok(s)
}

/// The `Open_vSwitch` schema's version weft serves (the one Open vSwitch 3.1 documents).
pub const VSWITCH_VERSION: &str = "8.3.1";

/// The `Open_vSwitch` database as weft serves it.
pub fn vswitch() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| parse("Open_vSwitch", VSWITCH_VERSION, VSWITCH).expect("weft's own schema parses"))
}

/// Every table and column of ovs-vswitchd.conf.db(5), with the types it gives them.
const VSWITCH: &str = "
table Open_vSwitch root max1
  bridges          &Bridge*
  manager_options  &Manager*
  ssl              &SSL?
  datapaths        map(str,&Datapath)
  next_cfg         int
  cur_cfg          int ro
  statistics       map(str,str) ro eph
  ovs_version      str? ro
  db_version       str? ro
  system_type      str? ro
  system_version   str? ro
  dpdk_version     str? ro
  dpdk_initialized bool ro
  datapath_types   str* ro
  iface_types      str* ro
  other_config     map(str,str)
  external_ids     map(str,str)

table Bridge index=name
  name                  str imm
  datapath_type         str
  datapath_version      str ro
  datapath_id           str? ro eph
  stp_enable            bool
  rstp_enable           bool
  mcast_snooping_enable bool
  ports                 &Port*
  mirrors               &Mirror*
  netflow               &NetFlow?
  sflow                 &sFlow?
  ipfix                 &IPFIX?
  controller            &Controller*
  protocols             str{OpenFlow10|OpenFlow11|OpenFlow12|OpenFlow13|OpenFlow14|OpenFlow15}*
  fail_mode             str{standalone|secure}?
  status                map(str,str) ro eph
  rstp_status           map(str,str) ro eph
  other_config          map(str,str)
  external_ids          map(str,str)
  flood_vlans           int[0,4095]*4096
  flow_tables           map(int[0,254],&Flow_Table)
  auto_attach           &AutoAttach?

table Port index=name
  name              str imm
  interfaces        &Interface+
  trunks            int[0,4095]*4096
  cvlans            int[0,4095]*4096
  tag               int[0,4095]?
  vlan_mode         str{trunk|access|native-tagged|native-untagged|dot1q-tunnel}?
  qos               &QoS?
  mac               str?
  bond_mode         str{balance-tcp|balance-slb|active-backup}?
  lacp              str{active|passive|off}?
  bond_updelay      int
  bond_downdelay    int
  bond_active_slave str? ro
  bond_fake_iface   bool
  fake_bridge       bool
  protected         bool
  status            map(str,str) ro eph
  rstp_status       map(str,str) ro eph
  rstp_statistics   map(str,int) ro eph
  statistics        map(str,int) ro eph
  other_config      map(str,str)
  external_ids      map(str,str)

table Interface index=name
  name                         str imm
  type                         str
  options                      map(str,str)
  ingress_policing_rate        int[0,]
  ingress_policing_burst       int[0,]
  ingress_policing_kpkts_rate  int[0,]
  ingress_policing_kpkts_burst int[0,]
  mac_in_use                   str? ro eph
  mac                          str?
  ifindex                      int[0,4294967295]? ro eph
  external_ids                 map(str,str)
  ofport                       int? ro
  ofport_request               int[1,65279]?
  bfd                          map(str,str)
  bfd_status                   map(str,str) ro eph
  cfm_mpid                     int?
  cfm_remote_mpids             int* ro eph
  cfm_flap_count               int? ro
  cfm_fault                    bool? ro eph
  cfm_fault_status             str* ro eph
  cfm_remote_opstate           str{up|down}? ro eph
  cfm_health                   int[0,100]? ro eph
  lacp_current                 bool? ro eph
  lldp                         map(str,str)
  other_config                 map(str,str)
  statistics                   map(str,int) ro eph
  status                       map(str,str) ro eph
  admin_state                  str{up|down}? ro eph
  link_state                   str{up|down}? ro eph
  link_resets                  int? ro eph
  link_speed                   int? ro eph
  duplex                       str{half|full}? ro eph
  mtu                          int? ro eph
  mtu_request                  int[1,]?
  error                        str? ro

table Flow_Table
  name            str?
  flow_limit      int[0,]?
  overflow_policy str{refuse|evict}?
  groups          str*
  prefixes        str*3
  external_ids    map(str,str)

table QoS root
  type         str
  queues       map(int[0,4294967295],&Queue)
  other_config map(str,str)
  external_ids map(str,str)

table Queue root
  dscp         int[0,63]?
  other_config map(str,str)
  external_ids map(str,str)

table Mirror
  name            str
  select_all      bool
  select_src_port ~Port*
  select_dst_port ~Port*
  select_vlan     int[0,4095]*4096
  output_port     ~Port?
  output_vlan     int[1,4095]?
  snaplen         int[14,65535]?
  statistics      map(str,int) ro eph
  external_ids    map(str,str)

table Controller
  type                  str{primary|service}?
  target                str
  max_backoff           int[1000,]?
  inactivity_probe      int?
  connection_mode       str{in-band|out-of-band}?
  local_ip              str?
  local_netmask         str?
  local_gateway         str?
  enable_async_messages bool?
  controller_queue_size int[1,512]?
  controller_rate_limit int[100,]?
  controller_burst_limit int[25,]?
  other_config          map(str,str)
  external_ids          map(str,str)
  is_connected          bool ro eph
  role                  str{other|master|slave}? ro eph
  status                map(str,str) ro eph

table Manager index=target
  target           str
  max_backoff      int[1000,]?
  inactivity_probe int?
  connection_mode  str{in-band|out-of-band}?
  other_config     map(str,str)
  external_ids     map(str,str)
  is_connected     bool ro eph
  status           map(str,str) ro eph

table NetFlow
  targets             str+
  engine_type         int[0,255]?
  engine_id           int[0,255]?
  add_id_to_interface bool
  active_timeout      int[-1,]
  external_ids        map(str,str)

table Datapath
  datapath_version str
  ct_zones         map(int[0,65535],&CT_Zone)
  capabilities     map(str,str)
  external_ids     map(str,str)

table CT_Zone
  timeout_policy &CT_Timeout_Policy?
  external_ids   map(str,str)

table CT_Timeout_Policy
  timeouts     map(str,int[0,4294967295])
  external_ids map(str,str)

table SSL
  private_key       str
  certificate       str
  ca_cert           str
  bootstrap_ca_cert bool
  external_ids      map(str,str)

table sFlow
  targets      str+
  sampling     int?
  polling      int?
  header       int?
  agent        str?
  external_ids map(str,str)

table IPFIX
  targets              str*
  sampling             int[1,4294967295]?
  obs_domain_id        int[0,4294967295]?
  obs_point_id         int[0,4294967295]?
  cache_active_timeout int[0,4200]?
  cache_max_flows      int[0,4294967295]?
  other_config         map(str,str)
  external_ids         map(str,str)

table Flow_Sample_Collector_Set root index=id,bridge
  id           int[0,4294967295]
  bridge       &Bridge
  ipfix        &IPFIX?
  external_ids map(str,str)

table AutoAttach
  system_name        str
  system_description str
  mappings           map(int[0,16777215],int[0,4095])
";
