//! `transact` (RFC 7047, 5.2): operations run in order on a copy of the database; the first that fails ends
//! the transaction with nothing changed; after the last, the copy is checked whole (references, garbage
//! collection of rows nothing refers to, set sizes, indexes) before it may be committed.

use super::schema::{Column, TableSchema};
use super::{row_version, Atom, ColType, Datum, Db, DbError, Row, Schema, Uuid};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How a transaction ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every operation ran and the copy passed the checks: `results` has one entry per operation; `db` is
    /// the database to commit when something changed.
    Done { results: Vec<Value>, db: Option<Db>, comments: Vec<String> },
    /// An operation or the final check failed: `results` holds the answers so far, the error, and nulls.
    Failed { results: Vec<Value>, error: DbError },
    /// A `wait` with a timeout is not yet satisfied: run the transaction again later.
    Blocked,
}

impl Outcome {
    /// The `transact` reply's `result`.
    pub fn results(&self) -> Value {
        match self {
            Outcome::Done { results, .. } | Outcome::Failed { results, .. } => Value::Array(results.clone()),
            Outcome::Blocked => Value::Array(Vec::new()),
        }
    }
}

/// What a transaction may rely on besides the database.
pub struct Context<'a> {
    /// A new row's UUID.
    pub new_uuid: &'a mut dyn FnMut() -> Uuid,
    /// Whether this client holds lock NAME (`assert`).
    pub owns_lock: &'a dyn Fn(&str) -> bool,
    /// A `wait` that is not satisfied fails now ("timed out") instead of blocking.
    pub expired: bool,
}

/// Runs `ops` (the `transact` parameters after the database name) against `db`.
pub fn run(schema: &Schema, db: &Db, ops: &[Value], cx: &mut Context) -> Outcome {
    let mut t = Txn { schema, db: db.clone(), names: HashMap::new(), changed: false };
    let mut results = Vec::with_capacity(ops.len() + 1);
    let mut comments = Vec::new();
    // uuid-names are known before the first operation, so a row may be referred to before its insert.
    for op in ops {
        if op.get("op").and_then(Value::as_str) == Some("insert") {
            if let Some(name) = op.get("uuid-name").and_then(Value::as_str) {
                let u = match op.get("uuid").and_then(Value::as_str).and_then(Uuid::parse) {
                    Some(u) => u,
                    None => (cx.new_uuid)(),
                };
                if t.names.insert(name.to_string(), u).is_some() {
                    let e = DbError::new("duplicate uuid-name", format!("uuid-name {name:?} is used twice"));
                    return fail(results, e, ops.len());
                }
            }
        }
    }
    for op in ops {
        match t.op(op, cx, &mut comments) {
            Ok(Some(r)) => results.push(r),
            Ok(None) => return Outcome::Blocked,
            Err(e) => return fail(results, e, ops.len()),
        }
    }
    if let Err(e) = t.check() {
        results.push(e.to_json());
        return Outcome::Failed { results, error: e };
    }
    let db = (t.changed && t.db != *db).then_some(t.db);
    Outcome::Done { results, db, comments }
}

fn fail(mut results: Vec<Value>, e: DbError, n: usize) -> Outcome {
    results.push(e.to_json());
    while results.len() < n {
        results.push(Value::Null);
    }
    Outcome::Failed { results, error: e }
}

struct Txn<'a> {
    schema: &'a Schema,
    db: Db,
    names: HashMap<String, Uuid>,
    changed: bool,
}

fn uuid_type() -> ColType {
    ColType {
        key: super::BaseType {
            kind: super::AtomKind::Uuid,
            min_int: None,
            max_int: None,
            enumeration: None,
            ref_table: None,
            weak: false,
        },
        value: None,
        min: 1,
        max: 1,
    }
}

/// A condition's function (RFC 7047, 5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Lt,
    Le,
    Eq,
    Ne,
    Ge,
    Gt,
    Includes,
    Excludes,
}

/// One parsed condition: column, function, operand. `Const` is a bare `true`/`false` (monitor_cond).
#[derive(Clone, Debug)]
pub enum Cond {
    Const(bool),
    Col(String, Func, Datum),
}

/// Parses a `where` clause of `table`.
pub fn parse_where(
    table: &TableSchema,
    v: Option<&Value>,
    names: &dyn Fn(&str) -> Option<Uuid>,
) -> Result<Vec<Cond>, DbError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let list = v.as_array().ok_or_else(|| DbError::syntax("\"where\" must be an array of conditions"))?;
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        if let Some(b) = c.as_bool() {
            out.push(Cond::Const(b));
            continue;
        }
        let a = c.as_array().filter(|a| a.len() == 3).ok_or_else(|| DbError::syntax(format!("bad condition {c}")))?;
        let col = a[0].as_str().ok_or_else(|| DbError::syntax(format!("bad condition {c}")))?;
        let func = match a[1].as_str() {
            Some("<") => Func::Lt,
            Some("<=") => Func::Le,
            Some("==") => Func::Eq,
            Some("!=") => Func::Ne,
            Some(">=") => Func::Ge,
            Some(">") => Func::Gt,
            Some("includes") => Func::Includes,
            Some("excludes") => Func::Excludes,
            _ => return Err(DbError::syntax(format!("unknown function in condition {c}"))),
        };
        let ty = column_type(table, col)?;
        if matches!(func, Func::Lt | Func::Le | Func::Ge | Func::Gt)
            && !(ty.value.is_none()
                && ty.max == 1
                && matches!(ty.key.kind, super::AtomKind::Integer | super::AtomKind::Real))
        {
            return Err(DbError::syntax(format!("{} cannot be compared with {}", col, a[1])));
        }
        out.push(Cond::Col(col.to_string(), func, ty.datum_from_json(&a[2], names, false)?));
    }
    Ok(out)
}

/// The type of a column, `_uuid` and `_version` included.
fn column_type(table: &TableSchema, col: &str) -> Result<ColType, DbError> {
    if col == "_uuid" || col == "_version" {
        return Ok(uuid_type());
    }
    table.column(col).map(|c| c.ty.clone()).ok_or_else(|| unknown_column(table, col))
}

fn unknown_column(table: &TableSchema, col: &str) -> DbError {
    DbError::new("unknown column", format!("table {} has no column {col:?}", table.name))
}

/// The value of `col` in row `u`: its own or its default, `_uuid` and `_version` computed.
pub fn value_of(table: &TableSchema, u: Uuid, row: &Row, col: &str) -> Datum {
    match col {
        "_uuid" => Datum::uuid(u),
        "_version" => Datum::uuid(row_version(u, row)),
        c => {
            row.get(c).cloned().unwrap_or_else(|| table.column(c).map_or(Datum::empty_set(), |c| c.ty.default_datum()))
        }
    }
}

/// Whether row `u` meets every condition.
pub fn matches(table: &TableSchema, u: Uuid, row: &Row, conds: &[Cond]) -> bool {
    conds.iter().all(|c| match c {
        Cond::Const(b) => *b,
        Cond::Col(col, f, arg) => {
            let v = value_of(table, u, row, col);
            match f {
                Func::Eq => v == *arg,
                Func::Ne => v != *arg,
                Func::Includes => includes(&v, arg),
                Func::Excludes => excludes(&v, arg),
                Func::Lt | Func::Le | Func::Ge | Func::Gt => match (v.scalar(), arg.scalar()) {
                    (Some(a), Some(b)) => {
                        let o = a.cmp(b);
                        match f {
                            Func::Lt => o.is_lt(),
                            Func::Le => o.is_le(),
                            Func::Ge => o.is_ge(),
                            _ => o.is_gt(),
                        }
                    }
                    _ => false,
                },
            }
        }
    })
}

fn includes(v: &Datum, arg: &Datum) -> bool {
    match (v, arg) {
        (Datum::Set(a), Datum::Set(b)) => b.is_subset(a),
        (Datum::Map(a), Datum::Map(b)) => b.iter().all(|(k, x)| a.get(k) == Some(x)),
        _ => false,
    }
}

fn excludes(v: &Datum, arg: &Datum) -> bool {
    match (v, arg) {
        (Datum::Set(a), Datum::Set(b)) => a.is_disjoint(b),
        (Datum::Map(a), Datum::Map(b)) => b.iter().all(|(k, x)| a.get(k) != Some(x)),
        _ => false,
    }
}

/// A row as JSON, with the columns asked for (all, `_uuid` and `_version` included, when `None`).
pub fn row_json(table: &TableSchema, u: Uuid, row: &Row, columns: Option<&[String]>) -> Value {
    let mut m = Map::new();
    match columns {
        Some(cols) => {
            for c in cols {
                m.insert(c.clone(), value_of(table, u, row, c).to_json());
            }
        }
        None => {
            for c in &table.columns {
                m.insert(c.name.clone(), value_of(table, u, row, &c.name).to_json());
            }
            m.insert("_uuid".into(), u.to_json());
            m.insert("_version".into(), row_version(u, row).to_json());
        }
    }
    Value::Object(m)
}

impl<'a> Txn<'a> {
    fn table(&self, op: &Value) -> Result<&'a TableSchema, DbError> {
        let schema: &'a Schema = self.schema;
        let name =
            op.get("table").and_then(Value::as_str).ok_or_else(|| DbError::syntax("operation needs a \"table\""))?;
        schema
            .table(name)
            .ok_or_else(|| DbError::new("unknown table", format!("no table named {name:?} in {}", schema.name)))
    }

    fn names(&self) -> impl Fn(&str) -> Option<Uuid> + '_ {
        |n| self.names.get(n).copied()
    }

    /// The rows of `table` a `where` selects.
    fn selected(&self, table: &TableSchema, op: &Value) -> Result<Vec<Uuid>, DbError> {
        let conds = parse_where(
            table,
            Some(op.get("where").ok_or_else(|| DbError::syntax("operation needs \"where\""))?),
            &self.names(),
        )?;
        // A condition on _uuid alone finds its row without a scan.
        if let [Cond::Col(c, Func::Eq, d)] = conds.as_slice() {
            if c == "_uuid" {
                let u = d.scalar().and_then(Atom::as_uuid);
                return Ok(u.filter(|u| self.db.row(&table.name, *u).is_some()).into_iter().collect());
            }
        }
        let rows = self.db.table(&table.name).map(|t| t.iter()).into_iter().flatten();
        Ok(rows.filter(|(u, r)| matches(table, **u, r, &conds)).map(|(u, _)| *u).collect())
    }

    /// Parses the `row` of an insert or update; columns a client may not write are refused.
    fn parse_row(&self, table: &TableSchema, v: Option<&Value>, insert: bool) -> Result<Row, DbError> {
        let Some(v) = v else { return Ok(Row::new()) };
        let obj = v.as_object().ok_or_else(|| DbError::syntax("\"row\" must be an object"))?;
        let mut row = Row::new();
        for (name, val) in obj {
            let col = table.column(name).ok_or_else(|| unknown_column(table, name))?;
            writable(table, col, insert)?;
            let d = col.ty.datum_from_json(val, &self.names(), true).map_err(|e| in_column(e, table, &col.name))?;
            row.insert(name.clone(), d);
        }
        Ok(row)
    }

    /// Runs one operation: its result, or `None` for a `wait` that must be tried again.
    fn op(&mut self, op: &Value, cx: &mut Context, comments: &mut Vec<String>) -> Result<Option<Value>, DbError> {
        let kind =
            op.get("op").and_then(Value::as_str).ok_or_else(|| DbError::syntax(format!("{op} has no \"op\"")))?;
        Ok(Some(match kind {
            "insert" => {
                let table = self.table(op)?;
                let mut row = self.parse_row(table, op.get("row"), true)?;
                let u = match op.get("uuid-name").and_then(Value::as_str) {
                    Some(n) => self.names[n],
                    None => match op.get("uuid") {
                        Some(v) => v.as_str().and_then(Uuid::parse).ok_or_else(|| DbError::syntax("bad \"uuid\""))?,
                        None => (cx.new_uuid)(),
                    },
                };
                for c in &table.columns {
                    row.entry(c.name.clone()).or_insert_with(|| c.ty.default_datum());
                }
                let name = table.name.clone();
                let rows = self.db.tables.entry(name).or_default();
                if rows.contains_key(&u) {
                    return Err(DbError::new("duplicate uuid", format!("row {u} already exists")));
                }
                rows.insert(u, row);
                self.changed = true;
                json!({"uuid": u.to_json()})
            }
            "select" => {
                let table = self.table(op)?;
                let cols = columns(table, op.get("columns"))?;
                let rows: Vec<Value> = self
                    .selected(table, op)?
                    .into_iter()
                    .map(|u| row_json(table, u, &self.db.tables[&table.name][&u], cols.as_deref()))
                    .collect();
                json!({ "rows": rows })
            }
            "update" => {
                let table = self.table(op)?;
                let new = self.parse_row(table, op.get("row"), false)?;
                let sel = self.selected(table, op)?;
                let name = table.name.clone();
                let rows = self.db.tables.get_mut(&name).ok_or_else(|| DbError::syntax("no such table"))?;
                for u in &sel {
                    if let Some(r) = rows.get_mut(u) {
                        for (k, v) in &new {
                            r.insert(k.clone(), v.clone());
                        }
                    }
                }
                self.changed |= !sel.is_empty();
                json!({"count": sel.len()})
            }
            "mutate" => {
                let table = self.table(op)?;
                let muts = op
                    .get("mutations")
                    .and_then(Value::as_array)
                    .ok_or_else(|| DbError::syntax("mutate needs \"mutations\""))?;
                let mut parsed = Vec::with_capacity(muts.len());
                for m in muts {
                    let a = m
                        .as_array()
                        .filter(|a| a.len() == 3)
                        .ok_or_else(|| DbError::syntax(format!("bad mutation {m}")))?;
                    let (Some(cname), Some(mutator)) = (a[0].as_str(), a[1].as_str()) else {
                        return Err(DbError::syntax(format!("bad mutation {m}")));
                    };
                    let col = table.column(cname).ok_or_else(|| unknown_column(table, cname))?;
                    writable(table, col, false)?;
                    parsed.push((col, mutator, &a[2]));
                }
                let sel = self.selected(table, op)?;
                let name = table.name.clone();
                let names = self.names.clone();
                let lookup = |n: &str| names.get(n).copied();
                let rows = self.db.tables.get_mut(&name).ok_or_else(|| DbError::syntax("no such table"))?;
                for u in &sel {
                    let Some(r) = rows.get_mut(u) else { continue };
                    for (col, mutator, arg) in &parsed {
                        let cur = r.entry(col.name.clone()).or_insert_with(|| col.ty.default_datum());
                        *cur =
                            mutate(&col.ty, cur, mutator, arg, &lookup).map_err(|e| in_column(e, table, &col.name))?;
                    }
                }
                self.changed |= !sel.is_empty();
                json!({"count": sel.len()})
            }
            "delete" => {
                let table = self.table(op)?;
                let sel = self.selected(table, op)?;
                let name = table.name.clone();
                if let Some(rows) = self.db.tables.get_mut(&name) {
                    for u in &sel {
                        rows.remove(u);
                    }
                }
                self.changed |= !sel.is_empty();
                json!({"count": sel.len()})
            }
            "wait" => {
                let table = self.table(op)?;
                let cols = columns(table, op.get("columns"))?.unwrap_or_default();
                let until = match op.get("until").and_then(Value::as_str) {
                    Some("==") => true,
                    Some("!=") => false,
                    _ => return Err(DbError::syntax("wait needs \"until\": \"==\" or \"!=\"")),
                };
                let want =
                    op.get("rows").and_then(Value::as_array).ok_or_else(|| DbError::syntax("wait needs \"rows\""))?;
                let mut expected = BTreeSet::new();
                for w in want {
                    let obj = w.as_object().ok_or_else(|| DbError::syntax("wait: each of \"rows\" is an object"))?;
                    let mut r = BTreeMap::new();
                    for c in &cols {
                        let ty = column_type(table, c)?;
                        let v = obj.get(c).ok_or_else(|| DbError::syntax(format!("wait: a row lacks column {c}")))?;
                        r.insert(c.clone(), ty.datum_from_json(v, &self.names(), false)?);
                    }
                    expected.insert(r);
                }
                let found: BTreeSet<BTreeMap<String, Datum>> = self
                    .selected(table, op)?
                    .into_iter()
                    .map(|u| {
                        let row = &self.db.tables[&table.name][&u];
                        cols.iter().map(|c| (c.clone(), value_of(table, u, row, c))).collect()
                    })
                    .collect();
                if (found == expected) != until {
                    let timeout = op.get("timeout").and_then(Value::as_u64);
                    if timeout.is_some_and(|t| t > 0) && !cx.expired {
                        return Ok(None);
                    }
                    return Err(DbError::new("timed out", "\"wait\" timed out"));
                }
                json!({})
            }
            "commit" => {
                if !op.get("durable").is_some_and(Value::is_boolean) {
                    return Err(DbError::syntax("commit needs \"durable\": true or false"));
                }
                json!({})
            }
            "abort" => return Err(DbError::new("aborted", "aborted by request")),
            "comment" => {
                if let Some(c) = op.get("comment").and_then(Value::as_str) {
                    comments.push(c.to_string());
                }
                json!({})
            }
            "assert" => {
                let lock =
                    op.get("lock").and_then(Value::as_str).ok_or_else(|| DbError::syntax("assert needs \"lock\""))?;
                if !(cx.owns_lock)(lock) {
                    return Err(DbError::new("not owner", format!("this client does not hold lock {lock:?}")));
                }
                json!({})
            }
            other => return Err(DbError::syntax(format!("unknown operation {other:?}"))),
        }))
    }

    /// The checks made once every operation has run.
    fn check(&mut self) -> Result<(), DbError> {
        if !self.changed {
            return Ok(());
        }
        let schema = self.schema;
        // Weak references to rows that are gone are dropped; strong ones are an error.
        let exists: HashMap<&str, BTreeSet<Uuid>> =
            self.db.tables.iter().map(|(t, rows)| (t.as_str(), rows.keys().copied().collect())).collect();
        let mut fixes: Vec<(String, Uuid, String, Datum)> = Vec::new();
        for t in &schema.tables {
            for (u, row) in self.db.tables.get(&t.name).into_iter().flatten() {
                for c in &t.columns {
                    let Some(d) = row.get(&c.name) else { continue };
                    let mut d2 = d.clone();
                    for (b, is_key) in [(&c.ty.key, true), (c.ty.value.as_ref().unwrap_or(&c.ty.key), false)] {
                        let Some(rt) = &b.ref_table else { continue };
                        if !is_key && c.ty.value.is_none() {
                            continue;
                        }
                        let live = |a: &Atom| {
                            a.as_uuid().is_none_or(|x| exists.get(rt.as_str()).is_some_and(|s| s.contains(&x)))
                        };
                        let dead: Vec<Uuid> = match d {
                            Datum::Set(s) => s.iter().filter(|a| !live(a)).filter_map(Atom::as_uuid).collect(),
                            Datum::Map(m) => m
                                .iter()
                                .filter(|(k, v)| !live(if is_key { k } else { v }))
                                .map(|(k, v)| if is_key { k } else { v })
                                .filter_map(Atom::as_uuid)
                                .collect(),
                        };
                        if let Some(x) = dead.first() {
                            if !b.weak {
                                return Err(DbError::new(
                                    "referential integrity violation",
                                    format!("row {u} of table {} refers in column {} to row {x} of {rt}, which does not exist", t.name, c.name),
                                ));
                            }
                            d2 = match d2 {
                                Datum::Set(s) => Datum::Set(s.into_iter().filter(|a| live(a)).collect()),
                                Datum::Map(m) => Datum::Map(
                                    m.into_iter().filter(|(k, v)| live(if is_key { k } else { v })).collect(),
                                ),
                            };
                        }
                    }
                    if d2 != *d {
                        fixes.push((t.name.clone(), *u, c.name.clone(), d2));
                    }
                }
            }
        }
        for (t, u, c, d) in fixes {
            if let Some(r) = self.db.tables.get_mut(&t).and_then(|rows| rows.get_mut(&u)) {
                r.insert(c, d);
            }
        }
        self.collect_garbage();
        for t in &schema.tables {
            let rows = self.db.tables.get(&t.name);
            if let (Some(max), Some(rows)) = (t.max_rows, rows) {
                if rows.len() > max {
                    return Err(DbError::constraint(format!("table {} may hold at most {max} row(s)", t.name)));
                }
            }
            for (u, row) in rows.into_iter().flatten() {
                for c in &t.columns {
                    if let Some(d) = row.get(&c.name) {
                        c.ty.check_size(d)
                            .map_err(|e| in_column(e, t, &c.name))
                            .map_err(|e| DbError::constraint(format!("row {u}: {}", e.details)))?;
                    }
                }
            }
            for idx in &t.indexes {
                let mut seen = BTreeMap::new();
                for (u, row) in rows.into_iter().flatten() {
                    let key: Vec<Datum> = idx.iter().map(|c| value_of(t, *u, row, c)).collect();
                    if let Some(other) = seen.insert(key.clone(), *u) {
                        let shown: Vec<String> = key.iter().map(|d| d.to_json().to_string()).collect();
                        return Err(DbError::constraint(format!(
                            "rows {other} and {u} of table {} both have {} = {}",
                            t.name,
                            idx.join(","),
                            shown.join(",")
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Deletes rows of non-root tables that no row refers to strongly, until none is left.
    fn collect_garbage(&mut self) {
        loop {
            let mut referenced: BTreeSet<Uuid> = BTreeSet::new();
            for t in &self.schema.tables {
                for row in self.db.tables.get(&t.name).into_iter().flat_map(|r| r.values()) {
                    for c in &t.columns {
                        let strong = [Some(&c.ty.key), c.ty.value.as_ref()]
                            .into_iter()
                            .flatten()
                            .any(|b| b.ref_table.is_some() && !b.weak);
                        if strong {
                            if let Some(d) = row.get(&c.name) {
                                referenced.extend(d.uuids_in());
                            }
                        }
                    }
                }
            }
            let mut removed = false;
            for t in self.schema.tables.iter().filter(|t| !t.is_root) {
                if let Some(rows) = self.db.tables.get_mut(&t.name) {
                    let before = rows.len();
                    rows.retain(|u, _| referenced.contains(u));
                    removed |= rows.len() != before;
                }
            }
            if !removed {
                return;
            }
        }
    }
}

/// Whether a client may write `col` (in an insert: immutable columns may be set there).
fn writable(table: &TableSchema, col: &Column, insert: bool) -> Result<(), DbError> {
    if col.read_only {
        return Err(DbError::constraint(format!(
            "column {} of table {} is status that weftd fills; it cannot be written",
            col.name, table.name
        )));
    }
    if col.immutable && !insert {
        return Err(DbError::constraint(format!("column {} of table {} cannot be changed", col.name, table.name)));
    }
    Ok(())
}

fn in_column(e: DbError, table: &TableSchema, col: &str) -> DbError {
    DbError { tag: e.tag, details: format!("{}.{col}: {}", table.name, e.details) }
}

/// The `columns` of a select or wait: `None` for every column.
fn columns(table: &TableSchema, v: Option<&Value>) -> Result<Option<Vec<String>>, DbError> {
    let Some(v) = v else { return Ok(None) };
    let list = v.as_array().ok_or_else(|| DbError::syntax("\"columns\" must be an array"))?;
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let c = c.as_str().ok_or_else(|| DbError::syntax("a column name must be a string"))?;
        column_type(table, c)?;
        out.push(c.to_string());
    }
    Ok(Some(out))
}

/// Applies one mutation to a value.
fn mutate(
    ty: &ColType,
    cur: &Datum,
    mutator: &str,
    arg: &Value,
    names: &dyn Fn(&str) -> Option<Uuid>,
) -> Result<Datum, DbError> {
    let out = match mutator {
        "+=" | "-=" | "*=" | "/=" | "%=" => {
            if ty.is_map() || !matches!(ty.key.kind, super::AtomKind::Integer | super::AtomKind::Real) {
                return Err(DbError::syntax(format!("{mutator} needs an integer or real column")));
            }
            let scalar = ColType { min: 1, max: 1, ..ty.clone() };
            let by = scalar.datum_from_json(arg, names, true).or_else(|_| {
                // The operand need not meet the column's range (`next_cfg += 1` on a column at least 5).
                let free =
                    ColType { key: super::BaseType { min_int: None, max_int: None, ..ty.key.clone() }, ..scalar };
                free.datum_from_json(arg, names, true)
            })?;
            let by = by.scalar().cloned().ok_or_else(|| DbError::syntax("bad operand"))?;
            let Datum::Set(s) = cur else { return Err(DbError::syntax("not a set")) };
            let mut out = BTreeSet::new();
            for a in s {
                let r = match (a, &by) {
                    (Atom::Integer(x), Atom::Integer(y)) => Atom::Integer(int_op(*x, *y, mutator)?),
                    (Atom::Real(x), Atom::Real(y)) => Atom::Real(match mutator {
                        "+=" => x + y,
                        "-=" => x - y,
                        "*=" => x * y,
                        "/=" if *y != 0.0 => x / y,
                        _ => return Err(DbError::new("domain error", "division by zero")),
                    }),
                    _ => return Err(DbError::syntax("operand of the wrong type")),
                };
                ty.key.check(&r).map_err(|e| DbError::new("range error", e.details))?;
                out.insert(r);
            }
            Datum::Set(out)
        }
        "insert" => match (cur, ty.datum_from_json(arg, names, false)?) {
            (Datum::Set(a), Datum::Set(b)) => Datum::Set(a.union(&b).cloned().collect()),
            (Datum::Map(a), Datum::Map(b)) => {
                let mut m = a.clone();
                for (k, v) in b {
                    m.entry(k).or_insert(v);
                }
                Datum::Map(m)
            }
            _ => return Err(DbError::syntax("operand of the wrong type")),
        },
        "delete" => match cur {
            Datum::Set(a) => match ty.datum_from_json(arg, names, false)? {
                Datum::Set(b) => Datum::Set(a.difference(&b).cloned().collect()),
                Datum::Map(_) => return Err(DbError::syntax("operand of the wrong type")),
            },
            Datum::Map(a) => match ty.datum_from_json(arg, names, false) {
                Ok(Datum::Map(b)) => Datum::Map(
                    a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect(),
                ),
                _ => {
                    let keys = ty.keys_from_json(arg, names)?;
                    let keys: BTreeSet<&Atom> = keys.keys().collect();
                    Datum::Map(
                        a.iter().filter(|(k, _)| !keys.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect(),
                    )
                }
            },
        },
        other => return Err(DbError::syntax(format!("unknown mutator {other:?}"))),
    };
    ty.check_size(&out)?;
    Ok(out)
}

fn int_op(x: i64, y: i64, op: &str) -> Result<i64, DbError> {
    let r = match op {
        "+=" => x.checked_add(y),
        "-=" => x.checked_sub(y),
        "*=" => x.checked_mul(y),
        "/=" | "%=" if y == 0 => return Err(DbError::new("domain error", "division by zero")),
        "/=" => x.checked_div(y),
        _ => x.checked_rem(y),
    };
    r.ok_or_else(|| DbError::new("range error", "integer overflow"))
}
