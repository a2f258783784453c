//! A small etcd v3 client over etcd's JSON gateway (`/v3/...`, keys and values in base64, 64-bit numbers as
//! strings), with retries across the cluster's members, and the key layout weft hosts share.
//!
//! Keys (under a prefix, `/weft/` by default), each attached to the writing host's lease so that a dead host's
//! keys vanish when its lease expires, and each under its host's own prefix `PREFIX host/<VTEP IP>/`, so that
//! etcd's prefix permissions can let every host read all and write only its own:
//! - `PREFIX host/<VTEP IP>/vni/<VNI>/vtep` = `{}`: the VTEP serves the VNI (an EVPN type-3 route);
//! - `PREFIX host/<VTEP IP>/vni/<VNI>/mac/<MAC>` = `{"seq":N}` (and `"ip"`): the MAC is behind the VTEP
//!   (type 2).

use crate::http::{self, Endpoint};
use crate::model::{MacKey, MacRoute, Vni};
use serde_json::{json, Value};
use std::io;
use std::net::IpAddr;
use std::time::Duration;
use weft_wire::EthernetAddress;

/// Puts or deletes per transaction: etcd refuses more than 128 operations in one (`--max-txn-ops`).
pub const TXN_OPS: usize = 100;
/// Keys per page when reading the whole prefix.
pub const PAGE: usize = 1000;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn b64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = u32::from(c[0]) << 16 | u32::from(*c.get(1).unwrap_or(&0)) << 8 | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on anything else.
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    let t = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(t.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for ch in t.bytes() {
        let v = B64.iter().position(|b| *b == ch)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// A 64-bit number that the gateway may print as a string.
fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

/// The end of the range of keys starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// One key-value change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEvent {
    pub put: bool,
    pub key: String,
    pub value: String,
    pub mod_revision: i64,
}

/// A message on a watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMsg {
    Created,
    Events {
        revision: i64,
        events: Vec<KvEvent>,
    },
    /// The revision asked for was compacted away: resynchronise from a full read.
    Compacted(i64),
    Canceled(String),
    /// Nothing arrived within the read timeout (the stream is still open).
    Idle,
}

/// A client of one etcd cluster: requests go to the member that answered last and move on to the next on
/// failure.
pub struct Client {
    endpoints: Vec<Endpoint>,
    current: usize,
    pub timeout: Duration,
    /// For `https://` endpoints.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// etcd user and password (`/v3/auth/authenticate`), and the token each member gave (simple tokens are
    /// good only at the member that issued them).
    credentials: Option<(String, String)>,
    tokens: Vec<Option<String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints)
            .field("current", &self.current)
            .field("tls", &self.tls.is_some())
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .finish_non_exhaustive()
    }
}

/// Whether an etcd error says the request's token is missing, expired or unknown at this member.
fn token_refused(status: u16, msg: &str) -> bool {
    status == 401 || msg.contains("invalid auth token") || msg.contains("user name is empty")
}

fn kv_of(v: &Value) -> Option<(String, String, i64)> {
    let key = String::from_utf8(unb64(v.get("key")?.as_str()?)?).ok()?;
    let value = match v.get("value").and_then(Value::as_str) {
        Some(s) => String::from_utf8(unb64(s)?).ok()?,
        None => String::new(),
    };
    Some((key, value, v.get("mod_revision").and_then(int).unwrap_or(0)))
}

impl Client {
    /// A client for `urls` (`http://HOST:PORT` or `https://HOST:PORT`, at least one), with the TLS
    /// configuration `https://` needs and etcd credentials if the cluster has authentication on.
    pub fn new(
        urls: &[String],
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
        credentials: Option<(String, String)>,
    ) -> Result<Client, String> {
        let endpoints = urls.iter().map(|u| Endpoint::parse(u)).collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err("no etcd endpoint given".into());
        }
        if endpoints.iter().any(|e| e.tls) && tls.is_none() {
            return Err("https:// endpoints need a TLS configuration (the CA of the servers)".into());
        }
        let tokens = vec![None; endpoints.len()];
        Ok(Client { endpoints, current: 0, timeout: Duration::from_secs(3), tls, credentials, tokens })
    }

    fn options(&self, at: usize) -> http::Options<'_> {
        http::Options { tls: self.tls.as_ref(), token: self.tokens[at].as_deref() }
    }

    /// Gets a token from member `at` when the client has credentials and holds none for it yet.
    fn authenticate(&mut self, at: usize) -> io::Result<()> {
        let Some((user, password)) = &self.credentials else { return Ok(()) };
        if self.tokens[at].is_some() {
            return Ok(());
        }
        let body = json!({ "name": user, "password": password }).to_string();
        let ep = &self.endpoints[at];
        let r = http::post(ep, "/v3/auth/authenticate", body.as_bytes(), self.timeout, self.options(at))?;
        let status = r.status;
        let v: Value = serde_json::from_slice(&r.body(1 << 20)?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{ep}: authenticate: {e}")))?;
        match v.get("token").and_then(Value::as_str) {
            Some(t) if status == 200 => {
                self.tokens[at] = Some(t.to_string());
                Ok(())
            }
            _ => {
                let msg = v.get("error").or_else(|| v.get("message")).and_then(Value::as_str).unwrap_or("");
                Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{ep}: etcd refused user {user:?}: HTTP {status}: {msg} (check etcd-user and etcd-password)"
                    ),
                ))
            }
        }
    }

    /// The member requests go to now.
    pub fn current(&self) -> &Endpoint {
        &self.endpoints[self.current]
    }

    fn call_one(&mut self, at: usize, path: &str, body: &[u8]) -> io::Result<Value> {
        for attempt in 0..2 {
            self.authenticate(at)?;
            let ep = &self.endpoints[at];
            let r = http::post(ep, path, body, self.timeout, self.options(at))?;
            let status = r.status;
            let body = r.body(64 << 20)?;
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{ep}{path}: not JSON: {e}")))?;
            if status == 200 {
                return Ok(v);
            }
            let msg = v.get("error").or_else(|| v.get("message")).and_then(Value::as_str).unwrap_or("");
            // An expired or unknown token: get a new one and try once more.
            if attempt == 0 && self.credentials.is_some() && token_refused(status, msg) {
                self.tokens[at] = None;
                continue;
            }
            let hint = if token_refused(status, msg) && self.credentials.is_none() {
                " (the cluster has authentication on: set etcd-user and etcd-password)"
            } else if msg.contains("permission denied") {
                " (the etcd user may not read or write these keys)"
            } else {
                ""
            };
            return Err(io::Error::other(format!("{ep}{path}: HTTP {status}: {msg}{hint}")));
        }
        Err(io::Error::other(format!("{}{path}: the token was refused twice", self.endpoints[at])))
    }

    /// Sends one request, trying every member once, starting with the current one.
    pub fn call(&mut self, path: &str, body: &Value) -> io::Result<Value> {
        let bytes = body.to_string().into_bytes();
        let mut last = None;
        for i in 0..self.endpoints.len() {
            let at = (self.current + i) % self.endpoints.len();
            match self.call_one(at, path, &bytes) {
                Ok(v) => {
                    self.current = at;
                    return Ok(v);
                }
                Err(e) => {
                    tracing::debug!("etcd {}: {e}", self.endpoints[at]);
                    last = Some(e);
                }
            }
        }
        self.current = (self.current + 1) % self.endpoints.len();
        Err(last.unwrap_or_else(|| io::Error::other("no etcd endpoint")))
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    pub fn grant(&mut self, ttl: u64) -> io::Result<i64> {
        let v = self.call("/v3/lease/grant", &json!({ "TTL": ttl }))?;
        v.get("ID").and_then(int).ok_or_else(|| io::Error::other(format!("lease grant without an ID: {v}")))
    }

    /// Refreshes a lease; returns its remaining TTL (0 or less: the lease is gone).
    pub fn keepalive(&mut self, id: i64) -> io::Result<i64> {
        let v = self.call("/v3/lease/keepalive", &json!({ "ID": id }))?;
        let r = v.get("result").unwrap_or(&v);
        Ok(r.get("TTL").and_then(int).unwrap_or(0))
    }

    /// Revokes a lease (its keys go at once).
    pub fn revoke(&mut self, id: i64) -> io::Result<()> {
        self.call("/v3/lease/revoke", &json!({ "ID": id })).map(|_| ())
    }

    /// Puts keys (attached to `lease`, if not 0) and deletes keys, in transactions of [`TXN_OPS`].
    pub fn write(&mut self, puts: &[(String, String)], deletes: &[String], lease: i64) -> io::Result<()> {
        let mut ops: Vec<Value> = Vec::with_capacity(puts.len() + deletes.len());
        for (k, v) in puts {
            let mut p = json!({ "key": b64(k.as_bytes()), "value": b64(v.as_bytes()) });
            if lease != 0 {
                p["lease"] = json!(lease);
            }
            ops.push(json!({ "request_put": p }));
        }
        for k in deletes {
            ops.push(json!({ "request_delete_range": { "key": b64(k.as_bytes()) } }));
        }
        for chunk in ops.chunks(TXN_OPS) {
            self.call("/v3/kv/txn", &json!({ "success": chunk }))?;
        }
        Ok(())
    }

    /// Every key under `prefix` at one revision: (revision, [(key, value)]).
    pub fn range_prefix(&mut self, prefix: &str) -> io::Result<(i64, Vec<(String, String)>)> {
        let end = b64(&prefix_end(prefix));
        let mut from = prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut out = Vec::new();
        loop {
            let mut req = json!({ "key": b64(&from), "range_end": end, "limit": PAGE });
            if revision != 0 {
                req["revision"] = json!(revision);
            }
            let v = self.call("/v3/kv/range", &req)?;
            if revision == 0 {
                revision = v.pointer("/header/revision").and_then(int).unwrap_or(0);
            }
            let kvs = v.get("kvs").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
            for kv in kvs {
                if let Some((k, val, _)) = kv_of(kv) {
                    out.push((k, val));
                }
            }
            let more = v.get("more").and_then(Value::as_bool).unwrap_or(false);
            match (more, kvs.last().and_then(kv_of)) {
                (true, Some((last, ..))) => {
                    from = last.into_bytes();
                    from.push(0);
                }
                _ => return Ok((revision, out)),
            }
        }
    }

    /// Opens a watch on every key under `prefix`, from revision `start` on.
    pub fn watch(&mut self, prefix: &str, start: i64) -> io::Result<Watch> {
        let body = json!({ "create_request": {
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix)),
            "start_revision": start,
        }})
        .to_string();
        let mut last = None;
        for i in 0..self.endpoints.len() {
            let at = (self.current + i) % self.endpoints.len();
            if let Err(e) = self.authenticate(at) {
                last = Some(e);
                continue;
            }
            match http::post(&self.endpoints[at], "/v3/watch", body.as_bytes(), self.timeout, self.options(at)) {
                Ok(r) if r.status == 200 => {
                    self.current = at;
                    return Ok(Watch { response: r, buf: Vec::with_capacity(65536) });
                }
                Ok(r) => {
                    if r.status == 401 {
                        self.tokens[at] = None;
                    }
                    last = Some(io::Error::other(format!("{}: watch: HTTP {}", self.endpoints[at], r.status)))
                }
                Err(e) => last = Some(e),
            }
        }
        self.current = (self.current + 1) % self.endpoints.len();
        Err(last.unwrap_or_else(|| io::Error::other("no etcd endpoint")))
    }
}

/// Longest watch message taken (etcd's own requests are 1.5 MiB at most by default); a longer one breaks the
/// watch, which is then opened again after a full read.
pub const MAX_WATCH_MSG: usize = 16 << 20;

fn bad_data(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// An open watch stream.
pub struct Watch {
    response: http::Response,
    buf: Vec<u8>,
}

impl Watch {
    /// How long [`Watch::next_msg`] waits for data before returning [`WatchMsg::Idle`].
    pub fn set_timeout(&self, t: Duration) -> io::Result<()> {
        self.response.set_read_timeout(Some(t))
    }

    /// The next message; an error when the stream broke (reconnect and resynchronise).
    pub fn next_msg(&mut self) -> io::Result<WatchMsg> {
        loop {
            if let Some(msg) = self.take()? {
                return Ok(msg);
            }
            let mut chunk = [0u8; 16384];
            match self.response.read_some(&mut chunk) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "watch stream ended")),
                Ok(_) if self.buf.len() > MAX_WATCH_MSG => {
                    return Err(bad_data(format!("a watch message longer than {} MiB", MAX_WATCH_MSG >> 20)))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Ok(WatchMsg::Idle)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Parses one whole JSON object off the buffer, if there is one.
    fn take(&mut self) -> io::Result<Option<WatchMsg>> {
        let start = self.buf.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(self.buf.len());
        if start == self.buf.len() {
            self.buf.clear();
            return Ok(None);
        }
        let mut it = serde_json::Deserializer::from_slice(&self.buf[start..]).into_iter::<Value>();
        let v = match it.next() {
            None => return Ok(None),
            Some(Err(e)) if e.is_eof() => return Ok(None),
            Some(Err(e)) => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("watch: {e}"))),
            Some(Ok(v)) => v,
        };
        let used = start + it.byte_offset();
        self.buf.drain(..used);
        Ok(Some(parse_watch(&v)))
    }
}

/// Reads one watch response object.
pub fn parse_watch(v: &Value) -> WatchMsg {
    if let Some(e) = v.get("error") {
        return WatchMsg::Canceled(e.to_string());
    }
    let r = v.get("result").unwrap_or(v);
    if let Some(c) = r.get("compact_revision").and_then(int).filter(|c| *c > 0) {
        return WatchMsg::Compacted(c);
    }
    if r.get("canceled").and_then(Value::as_bool) == Some(true) {
        let why = r.get("cancel_reason").and_then(Value::as_str).unwrap_or("canceled by the server");
        return WatchMsg::Canceled(why.to_string());
    }
    let revision = r.pointer("/header/revision").and_then(int).unwrap_or(0);
    let events: Vec<KvEvent> = r
        .get("events")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    let (key, value, mod_revision) = kv_of(e.get("kv")?)?;
                    // The gateway leaves out the default enum value: no "type" means PUT.
                    let put = e.get("type").and_then(Value::as_str).is_none_or(|t| t == "PUT");
                    Some(KvEvent { put, key, value, mod_revision })
                })
                .collect()
        })
        .unwrap_or_default();
    if events.is_empty() && r.get("created").and_then(Value::as_bool) == Some(true) {
        return WatchMsg::Created;
    }
    WatchMsg::Events { revision, events }
}

pub use crate::model::Record;

/// The prefix under which host `vtep` writes (what its etcd user may write to).
pub fn host_prefix(prefix: &str, vtep: IpAddr) -> String {
    format!("{prefix}host/{vtep}/")
}

pub fn vtep_key(prefix: &str, vni: Vni, vtep: IpAddr) -> String {
    format!("{}vni/{vni}/vtep", host_prefix(prefix, vtep))
}

pub fn mac_key(prefix: &str, key: MacKey, vtep: IpAddr) -> String {
    format!("{}vni/{}/mac/{}", host_prefix(prefix, vtep), key.vni, key.mac)
}

pub fn mac_value(seq: u32, ip: Option<IpAddr>) -> String {
    match ip {
        Some(ip) => json!({ "seq": seq, "ip": ip.to_string() }).to_string(),
        None => json!({ "seq": seq }).to_string(),
    }
}

/// Reads a key (and, for puts, its value) of the layout above; `None` for keys of other shapes.
pub fn parse_record(prefix: &str, key: &str, value: Option<&str>) -> Option<Record> {
    // The VTEP is the host the key is filed under: a host can speak only for itself where etcd lets each
    // write only under its own prefix.
    let (ip, rest) = key.strip_prefix(prefix)?.strip_prefix("host/")?.split_once('/')?;
    let vtep: IpAddr = ip.parse().ok()?;
    let (vni, rest) = rest.strip_prefix("vni/")?.split_once('/')?;
    let vni: Vni = vni.parse().ok().filter(|v| *v <= 0xff_ffff)?;
    if rest == "vtep" {
        return Some(Record::Vtep { vni, vtep });
    }
    let mac: EthernetAddress = rest.strip_prefix("mac/")?.parse().ok()?;
    let v: Option<Value> = value.and_then(|v| serde_json::from_str(v).ok());
    let seq = v.as_ref().and_then(|v| v.get("seq")?.as_u64()).unwrap_or(0).min(u64::from(u32::MAX)) as u32;
    let bound = v.as_ref().and_then(|v| v.get("ip")?.as_str()?.parse().ok());
    Some(Record::Mac { key: MacKey { vni, mac }, route: MacRoute { vtep, seq, ip: bound } })
}

/// Feeds arbitrary bytes to the etcd readers (for the fuzzer): a watch stream and a key; must never panic.
pub fn fuzz_input(data: &[u8]) {
    for v in serde_json::Deserializer::from_slice(data).into_iter::<Value>().take(16).flatten() {
        let _ = parse_watch(&v);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_record("/weft/", s, Some(s));
        let _ = unb64(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_messages_allocate_at_most_a_constant_times_their_length() {
        // A watch message of 1 MiB of events (the most etcd sends by default is about 1.5 MiB).
        let event = format!(
            r#"{{"kv":{{"key":"{}","value":"{}","mod_revision":"5"}}}},"#,
            b64(b"/weft/host/10.0.0.9/vni/7/vtep"),
            b64(br#"{"seq":1}"#)
        );
        let events = event.repeat((1 << 20) / event.len());
        let text =
            format!(r#"{{"result":{{"header":{{"revision":"9"}},"events":[{}]}}}}"#, events.trim_end_matches(','));
        let (msg, peak) = weft_sys::alloc_probe::peak_during(|| {
            let v: Value = serde_json::from_slice(text.as_bytes()).unwrap();
            parse_watch(&v)
        });
        assert!(matches!(msg, WatchMsg::Events { .. }));
        assert!(peak <= 16 * text.len(), "{peak} bytes for a {}-byte message", text.len());
    }

    #[test]
    fn base64() {
        for (plain, coded) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("/weft/", "L3dlZnQv")] {
            assert_eq!(b64(plain.as_bytes()), coded);
            assert_eq!(unb64(coded).unwrap(), plain.as_bytes());
        }
        assert!(unb64("a$").is_none());
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unb64(&b64(&all)).unwrap(), all);
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/weft/"), b"/weft0");
        assert_eq!(prefix_end("a"), b"b");
    }

    #[test]
    fn records() {
        let p = "/weft/";
        let key = MacKey { vni: 100, mac: "02:00:00:00:01:05".parse().unwrap() };
        let vtep: IpAddr = "10.0.0.3".parse().unwrap();
        let k = mac_key(p, key, vtep);
        assert_eq!(k, "/weft/host/10.0.0.3/vni/100/mac/02:00:00:00:01:05");
        assert!(k.starts_with(&host_prefix(p, vtep)));
        assert_eq!(
            parse_record(p, &k, Some(&mac_value(3, None))),
            Some(Record::Mac { key, route: MacRoute { vtep, seq: 3, ip: None } })
        );
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(parse_record(p, &vtep_key(p, 100, v6), Some("{}")), Some(Record::Vtep { vni: 100, vtep: v6 }));
        // A delete carries no value: the key alone identifies the route.
        assert!(matches!(parse_record(p, &k, None), Some(Record::Mac { .. })));
        for bad in [
            "/other/host/10.0.0.1/vni/1/vtep",
            "/weft/host/10.0.0.1/vni/x/vtep",
            "/weft/host/10.0.0.1/vni/1/mac/zz",
            "/weft/host/10.0.0.1/vni/99999999/vtep",
            "/weft/host/not-an-ip/vni/1/vtep",
            "/weft/vni/1/vtep/10.0.0.1",
        ] {
            assert_eq!(parse_record(p, bad, None), None, "{bad}");
        }
    }

    #[test]
    fn watch_messages() {
        let created = json!({"result":{"header":{"revision":"5"},"created":true}});
        assert_eq!(parse_watch(&created), WatchMsg::Created);
        let ev = json!({"result":{"header":{"revision":"9"},"events":[
            {"kv":{"key":b64(b"/weft/a"),"value":b64(b"{}"),"mod_revision":"9"}},
            {"type":"DELETE","kv":{"key":b64(b"/weft/b"),"mod_revision":"9"}}]}});
        let WatchMsg::Events { revision, events } = parse_watch(&ev) else { panic!("events expected") };
        assert_eq!(revision, 9);
        assert!(events[0].put && !events[1].put);
        assert_eq!(events[1].key, "/weft/b");
        let compacted = json!({"result":{"header":{},"canceled":true,"compact_revision":"42"}});
        assert_eq!(parse_watch(&compacted), WatchMsg::Compacted(42));
    }
}
