//! OVSDB (RFC 7047): the data model, its JSON forms, the `Open_vSwitch` schema, transactions, monitors, and
//! the mapping between the `Open_vSwitch` database and weft's [`Config`](crate::Config).
//!
//! Everything here is free of I/O: weftd's server reads JSON-RPC from its sockets and calls in. The
//! database a client sees is a *view* of the configuration: [`vswitch::project`] builds it from the
//! configuration and the running state, a transaction runs on a copy of that view ([`txn::run`]), and
//! [`vswitch::to_config`] turns the result back into a configuration, which is validated whole and applied
//! like any command of the CLI. So the OVSDB face and the CLI face cannot disagree: there is one
//! configuration.

pub mod monitor;
pub mod schema;
#[cfg(test)]
mod tests;
pub mod txn;
pub mod vswitch;

use serde_json::{json, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use schema::{AtomKind, BaseType, ColType, Schema};

/// A row's identity. Printed as OVSDB prints it (8-4-4-4-12 lowercase hex).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Uuid(pub u128);

impl Uuid {
    pub fn parse(s: &str) -> Option<Uuid> {
        let b = s.as_bytes();
        if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
            return None;
        }
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(&hex, 16).ok().map(Uuid)
    }

    /// A version-4-shaped UUID from 16 random bytes.
    pub fn from_random(bytes: [u8; 16]) -> Uuid {
        let v = u128::from_be_bytes(bytes);
        Uuid((v & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62))
    }

    /// A stable UUID for what `key` names within `kind` (a row weft's configuration holds without one of
    /// its own): the same name gives the same UUID after a restart. `salt` keeps two daemons' UUIDs apart.
    pub fn derived(salt: u64, kind: &str, key: &str) -> Uuid {
        // FNV-1a over the inputs, twice with different offsets: not cryptographic, only stable and spread.
        let hash = |offset: u64| {
            let mut h = offset ^ salt;
            for b in kind.bytes().chain([0u8]).chain(key.bytes()) {
                h ^= b as u64;
                h = h.wrapping_mul(0x100_0000_01b3);
            }
            h
        };
        let v = ((hash(0xcbf2_9ce4_8422_2325) as u128) << 64) | hash(0x8422_2325_cbf2_9ce4) as u128;
        Uuid::from_random(v.to_be_bytes())
    }

    pub fn to_json(self) -> Value {
        json!(["uuid", self.to_string()])
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = format!("{:032x}", self.0);
        write!(f, "{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One value of a column's key or value type.
#[derive(Clone, Debug)]
pub enum Atom {
    Integer(i64),
    Real(f64),
    Boolean(bool),
    String(String),
    Uuid(Uuid),
}

impl Atom {
    fn rank(&self) -> u8 {
        match self {
            Atom::Integer(_) => 0,
            Atom::Real(_) => 1,
            Atom::Boolean(_) => 2,
            Atom::String(_) => 3,
            Atom::Uuid(_) => 4,
        }
    }

    pub fn kind(&self) -> AtomKind {
        match self {
            Atom::Integer(_) => AtomKind::Integer,
            Atom::Real(_) => AtomKind::Real,
            Atom::Boolean(_) => AtomKind::Boolean,
            Atom::String(_) => AtomKind::String,
            Atom::Uuid(_) => AtomKind::Uuid,
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Atom::Integer(i) => json!(i),
            Atom::Real(r) => json!(r),
            Atom::Boolean(b) => json!(b),
            Atom::String(s) => json!(s),
            Atom::Uuid(u) => u.to_json(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Atom::Integer(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            Atom::Uuid(u) => Some(*u),
            _ => None,
        }
    }
}

impl PartialEq for Atom {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Atom {}
impl PartialOrd for Atom {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Atom {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Atom::Integer(a), Atom::Integer(b)) => a.cmp(b),
            (Atom::Real(a), Atom::Real(b)) => a.total_cmp(b),
            (Atom::Boolean(a), Atom::Boolean(b)) => a.cmp(b),
            (Atom::String(a), Atom::String(b)) => a.cmp(b),
            (Atom::Uuid(a), Atom::Uuid(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// A column's value: a set of atoms (a scalar is a set of one, an optional value a set of zero or one) or
/// a map.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Datum {
    Set(BTreeSet<Atom>),
    Map(BTreeMap<Atom, Atom>),
}

impl Datum {
    pub fn empty_set() -> Datum {
        Datum::Set(BTreeSet::new())
    }
    pub fn one(a: Atom) -> Datum {
        Datum::Set([a].into())
    }
    pub fn int(i: i64) -> Datum {
        Datum::one(Atom::Integer(i))
    }
    pub fn string(s: impl Into<String>) -> Datum {
        Datum::one(Atom::String(s.into()))
    }
    pub fn boolean(b: bool) -> Datum {
        Datum::one(Atom::Boolean(b))
    }
    pub fn uuid(u: Uuid) -> Datum {
        Datum::one(Atom::Uuid(u))
    }
    pub fn opt_string(s: Option<impl Into<String>>) -> Datum {
        s.map_or_else(Datum::empty_set, Datum::string)
    }
    pub fn opt_int(i: Option<i64>) -> Datum {
        i.map_or_else(Datum::empty_set, Datum::int)
    }
    pub fn uuids(u: impl IntoIterator<Item = Uuid>) -> Datum {
        Datum::Set(u.into_iter().map(Atom::Uuid).collect())
    }
    pub fn strings<S: Into<String>>(s: impl IntoIterator<Item = S>) -> Datum {
        Datum::Set(s.into_iter().map(|s| Atom::String(s.into())).collect())
    }
    pub fn string_map<'a>(m: impl IntoIterator<Item = (&'a String, &'a String)>) -> Datum {
        Datum::Map(m.into_iter().map(|(k, v)| (Atom::String(k.clone()), Atom::String(v.clone()))).collect())
    }

    pub fn len(&self) -> usize {
        match self {
            Datum::Set(s) => s.len(),
            Datum::Map(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys (a set's elements, a map's keys).
    pub fn keys(&self) -> Box<dyn Iterator<Item = &Atom> + '_> {
        match self {
            Datum::Set(s) => Box::new(s.iter()),
            Datum::Map(m) => Box::new(m.keys()),
        }
    }

    /// Every UUID the datum holds, keys and values.
    pub fn uuids_in(&self) -> Vec<Uuid> {
        match self {
            Datum::Set(s) => s.iter().filter_map(Atom::as_uuid).collect(),
            Datum::Map(m) => m.iter().flat_map(|(k, v)| [k.as_uuid(), v.as_uuid()]).flatten().collect(),
        }
    }

    /// The single atom of a scalar.
    pub fn scalar(&self) -> Option<&Atom> {
        match self {
            Datum::Set(s) if s.len() == 1 => s.iter().next(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        self.scalar().and_then(Atom::as_str)
    }

    pub fn as_int(&self) -> Option<i64> {
        self.scalar().and_then(Atom::as_int)
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.scalar() {
            Some(Atom::Boolean(b)) => Some(*b),
            _ => None,
        }
    }

    /// A string-to-string map (other keys or values are skipped).
    pub fn to_string_map(&self) -> BTreeMap<String, String> {
        match self {
            Datum::Map(m) => {
                m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string()))).collect()
            }
            Datum::Set(_) => BTreeMap::new(),
        }
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.keys().filter_map(|a| a.as_str().map(str::to_string)).collect()
    }

    /// The JSON form: a scalar bare, other sets as `["set", […]]`, maps as `["map", [[k, v], …]]`.
    pub fn to_json(&self) -> Value {
        match self {
            Datum::Set(s) if s.len() == 1 => s.iter().next().map(Atom::to_json).unwrap_or(Value::Null),
            Datum::Set(s) => json!(["set", s.iter().map(Atom::to_json).collect::<Vec<_>>()]),
            Datum::Map(m) => {
                json!(["map", m.iter().map(|(k, v)| json!([k.to_json(), v.to_json()])).collect::<Vec<_>>()])
            }
        }
    }
}

/// A row: its columns' values (without `_uuid` and `_version`, which are computed).
pub type Row = BTreeMap<String, Datum>;
/// A table: its rows by UUID.
pub type Table = BTreeMap<Uuid, Row>;

/// A whole database's contents, by table name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Db {
    pub tables: BTreeMap<String, Table>,
}

impl Db {
    /// An empty database with every table of `schema`.
    pub fn new(schema: &Schema) -> Db {
        Db { tables: schema.tables.iter().map(|t| (t.name.to_string(), Table::new())).collect() }
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    /// The row `u` of `table`.
    pub fn row(&self, table: &str, u: Uuid) -> Option<&Row> {
        self.tables.get(table)?.get(&u)
    }
}

/// A row's `_version`: a digest of its contents, so it changes whenever the row does.
pub fn row_version(u: Uuid, row: &Row) -> Uuid {
    let text = serde_json::to_string(&row.iter().map(|(k, v)| (k, v.to_json())).collect::<BTreeMap<_, _>>())
        .unwrap_or_default();
    Uuid::derived(u.0 as u64, "_version", &text)
}

/// An OVSDB error object: `{"error": TAG, "details": TEXT}` (RFC 7047, 3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbError {
    pub tag: &'static str,
    pub details: String,
}

impl DbError {
    pub fn new(tag: &'static str, details: impl Into<String>) -> DbError {
        DbError { tag, details: details.into() }
    }
    pub fn syntax(details: impl Into<String>) -> DbError {
        DbError::new("syntax error", details)
    }
    pub fn constraint(details: impl Into<String>) -> DbError {
        DbError::new("constraint violation", details)
    }
    pub fn to_json(&self) -> Value {
        json!({"error": self.tag, "details": self.details})
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.tag, self.details)
    }
}

/// Splits a JSON-RPC byte stream (JSON texts one after another, RFC 7047 4) into messages: returns the length of the first complete one in `buf` (after
/// leading whitespace), if there is one.
pub fn frame(buf: &[u8]) -> Result<Option<usize>, String> {
    let (mut depth, mut in_str, mut esc, mut started) = (0usize, false, false, false);
    for (i, &b) in buf.iter().enumerate() {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b' ' | b'\t' | b'\r' | b'\n' if !started => {}
            b'{' | b'[' => {
                started = true;
                depth += 1;
            }
            b'}' | b']' => {
                if depth == 0 {
                    return Err("unbalanced JSON".into());
                }
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(i + 1));
                }
            }
            b'"' if started => in_str = true,
            _ if !started => return Err("a JSON-RPC message must be an object".into()),
            _ => {}
        }
    }
    Ok(None)
}
