//! `monitor`, `monitor_cond` and `monitor_cond_since`: what a client asked to watch, its first contents, and
//! the updates between two versions of the database, as `update` (whole rows) or `update2`/`update3` (rows'
//! differences) notifications.

use super::schema::TableSchema;
use super::txn::{matches, parse_where, row_json, value_of, Cond};
use super::{Datum, Db, DbError, Row, Schema, Uuid};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Which changes a table's monitor reports.
#[derive(Clone, Copy, Debug)]
struct Select {
    initial: bool,
    insert: bool,
    delete: bool,
    modify: bool,
}

#[derive(Clone, Debug)]
struct Watch {
    /// Columns, without `_uuid` (always given).
    columns: Vec<String>,
    select: Select,
    /// The row must meet one of these (each a conjunction); empty: every row.
    conds: Vec<Vec<Cond>>,
}

/// One monitor of one client.
#[derive(Clone, Debug)]
pub struct Monitor {
    /// 1: `monitor`, 2: `monitor_cond`, 3: `monitor_cond_since`.
    pub version: u8,
    pub id: Value,
    tables: BTreeMap<String, Watch>,
}

impl Monitor {
    /// Parses the `monitor-requests` object.
    pub fn parse(schema: &Schema, version: u8, id: Value, requests: &Value) -> Result<Monitor, DbError> {
        let obj = requests.as_object().ok_or_else(|| DbError::syntax("monitor requests must be an object"))?;
        let mut tables = BTreeMap::new();
        for (name, reqs) in obj {
            let t =
                schema.table(name).ok_or_else(|| DbError::new("unknown table", format!("no table named {name:?}")))?;
            let list: Vec<&Value> = match reqs {
                Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            let mut w = Watch {
                columns: Vec::new(),
                select: Select { initial: false, insert: false, delete: false, modify: false },
                conds: Vec::new(),
            };
            let mut every_row = false;
            for r in list {
                let cols = match r.get("columns") {
                    None => t.columns.iter().map(|c| c.name.clone()).collect(),
                    Some(Value::Array(a)) => {
                        let mut v = Vec::new();
                        for c in a {
                            let c = c.as_str().ok_or_else(|| DbError::syntax("a column name must be a string"))?;
                            if t.column(c).is_none() && c != "_version" {
                                return Err(DbError::new(
                                    "unknown column",
                                    format!("table {name} has no column {c:?}"),
                                ));
                            }
                            v.push(c.to_string());
                        }
                        v
                    }
                    Some(_) => return Err(DbError::syntax("\"columns\" must be an array")),
                };
                for c in cols {
                    if !w.columns.contains(&c) {
                        w.columns.push(c);
                    }
                }
                let flag = |k: &str| r.get("select").and_then(|s| s.get(k)).and_then(Value::as_bool).unwrap_or(true);
                w.select.initial |= flag("initial");
                w.select.insert |= flag("insert");
                w.select.delete |= flag("delete");
                w.select.modify |= flag("modify");
                let conds = parse_where(t, r.get("where"), &|_| None)?;
                every_row |= conds.is_empty();
                w.conds.push(conds);
            }
            if every_row {
                w.conds.clear();
            }
            tables.insert(name.clone(), w);
        }
        Ok(Monitor { version, id, tables })
    }

    /// `monitor_cond_change`: new conditions for some tables. Returns the update that brings the client's
    /// view to the new conditions.
    pub fn change_conditions(&mut self, schema: &Schema, db: &Db, requests: &Value) -> Result<Option<Value>, DbError> {
        let obj = requests.as_object().ok_or_else(|| DbError::syntax("condition requests must be an object"))?;
        let before = self.clone();
        for (name, reqs) in obj {
            let t = schema.table(name).ok_or_else(|| DbError::new("unknown table", format!("no table {name:?}")))?;
            let w =
                self.tables.get_mut(name).ok_or_else(|| DbError::syntax(format!("table {name} is not monitored")))?;
            let list: Vec<&Value> = match reqs {
                Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            let mut conds = Vec::new();
            let mut every_row = false;
            for r in list {
                let c = parse_where(t, r.get("where"), &|_| None)?;
                every_row |= c.is_empty();
                conds.push(c);
            }
            w.conds = if every_row { Vec::new() } else { conds };
        }
        let mut out = Map::new();
        for (name, w) in &self.tables {
            let (Some(t), Some(rows)) = (schema.table(name), db.table(name)) else { continue };
            let old_w = &before.tables[name];
            let mut tu = Map::new();
            for (u, row) in rows {
                match (visible(t, old_w, *u, row), visible(t, w, *u, row)) {
                    (false, true) => {
                        tu.insert(u.to_string(), json!({"insert": self.row(t, w, *u, row)}));
                    }
                    (true, false) => {
                        tu.insert(u.to_string(), json!({"delete": Value::Null}));
                    }
                    _ => {}
                }
            }
            if !tu.is_empty() {
                out.insert(name.clone(), Value::Object(tu));
            }
        }
        Ok((!out.is_empty()).then_some(Value::Object(out)))
    }

    fn row(&self, t: &TableSchema, w: &Watch, u: Uuid, row: &Row) -> Value {
        row_json(t, u, row, Some(&w.columns))
    }

    /// The contents the reply to the monitor request carries.
    pub fn initial(&self, schema: &Schema, db: &Db) -> Value {
        let mut out = Map::new();
        for (name, w) in &self.tables {
            if !w.select.initial {
                continue;
            }
            let (Some(t), Some(rows)) = (schema.table(name), db.table(name)) else { continue };
            let mut tu = Map::new();
            for (u, row) in rows.iter().filter(|(u, r)| visible(t, w, **u, r)) {
                let r = self.row(t, w, *u, row);
                tu.insert(u.to_string(), if self.version == 1 { json!({"new": r}) } else { json!({"initial": r}) });
            }
            if !tu.is_empty() {
                out.insert(name.clone(), Value::Object(tu));
            }
        }
        Value::Object(out)
    }

    /// The table updates from `old` to `new`, or `None` when this monitor sees no change.
    pub fn update(&self, schema: &Schema, old: &Db, new: &Db) -> Option<Value> {
        let empty = BTreeMap::new();
        let mut out = Map::new();
        for (name, w) in &self.tables {
            let Some(t) = schema.table(name) else { continue };
            let (o, n) = (old.table(name).unwrap_or(&empty), new.table(name).unwrap_or(&empty));
            let mut tu = Map::new();
            for (u, row) in o {
                let was = visible(t, w, *u, row);
                match n.get(u) {
                    None if was && w.select.delete => {
                        let v = if self.version == 1 {
                            json!({"old": self.row(t, w, *u, row)})
                        } else {
                            json!({"delete": Value::Null})
                        };
                        tu.insert(u.to_string(), v);
                    }
                    None => {}
                    Some(nrow) => {
                        let is = visible(t, w, *u, nrow);
                        let v = match (was, is) {
                            (true, true) if w.select.modify => self.modify(t, w, *u, row, nrow),
                            (false, true) if w.select.insert => Some(self.inserted(t, w, *u, nrow)),
                            (true, false) if w.select.delete => Some(if self.version == 1 {
                                json!({"old": self.row(t, w, *u, row)})
                            } else {
                                json!({"delete": Value::Null})
                            }),
                            _ => None,
                        };
                        if let Some(v) = v {
                            tu.insert(u.to_string(), v);
                        }
                    }
                }
            }
            if w.select.insert {
                for (u, row) in n.iter().filter(|(u, r)| !o.contains_key(u) && visible(t, w, **u, r)) {
                    tu.insert(u.to_string(), self.inserted(t, w, *u, row));
                }
            }
            if !tu.is_empty() {
                out.insert(name.clone(), Value::Object(tu));
            }
        }
        (!out.is_empty()).then_some(Value::Object(out))
    }

    fn inserted(&self, t: &TableSchema, w: &Watch, u: Uuid, row: &Row) -> Value {
        let r = self.row(t, w, u, row);
        if self.version == 1 {
            json!({"new": r})
        } else {
            json!({"insert": r})
        }
    }

    /// A modified row: version 1 gives the changed columns' old values and the whole new row; versions 2
    /// and 3 give each changed column's difference.
    fn modify(&self, t: &TableSchema, w: &Watch, u: Uuid, old: &Row, new: &Row) -> Option<Value> {
        let mut old_part = Map::new();
        let mut diff = Map::new();
        for c in &w.columns {
            let (a, b) = (value_of(t, u, old, c), value_of(t, u, new, c));
            if a == b {
                continue;
            }
            old_part.insert(c.clone(), a.to_json());
            let scalar = t.column(c).is_none_or(|col| col.ty.value.is_none() && col.ty.min == 1 && col.ty.max == 1);
            diff.insert(c.clone(), if scalar { b.to_json() } else { difference(&a, &b).to_json() });
        }
        if old_part.is_empty() {
            return None;
        }
        Some(if self.version == 1 {
            json!({"old": old_part, "new": self.row(t, w, u, new)})
        } else {
            json!({"modify": diff})
        })
    }
}

fn visible(t: &TableSchema, w: &Watch, u: Uuid, row: &Row) -> bool {
    w.conds.is_empty() || w.conds.iter().any(|c| matches(t, u, row, c))
}

/// What `update2` says changed in a set or map column: a set's symmetric difference; a map's pairs whose
/// key went (old pair), came (new pair) or whose value changed (new pair).
fn difference(a: &Datum, b: &Datum) -> Datum {
    match (a, b) {
        (Datum::Set(x), Datum::Set(y)) => Datum::Set(x.symmetric_difference(y).cloned().collect()),
        (Datum::Map(x), Datum::Map(y)) => {
            let mut m = BTreeMap::new();
            for (k, v) in x {
                if !y.contains_key(k) {
                    m.insert(k.clone(), v.clone());
                }
            }
            for (k, v) in y {
                if x.get(k) != Some(v) {
                    m.insert(k.clone(), v.clone());
                }
            }
            Datum::Map(m)
        }
        _ => b.clone(),
    }
}
