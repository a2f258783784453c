//! Just enough HTTP/1.1 over TCP (or TLS, for `https://`) for etcd's JSON gateway: one request per connection
//! (`Connection: close`), bodies with Content-Length or chunked, and a streaming reader for watches.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// An `http://host:port` or `https://host:port` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// `https://`: TLS with the client's TLS configuration.
    pub tls: bool,
}

/// How requests are made: TLS for `https://` endpoints, and an etcd authentication token.
#[derive(Clone, Copy, Default)]
pub struct Options<'a> {
    pub tls: Option<&'a std::sync::Arc<rustls::ClientConfig>>,
    pub token: Option<&'a str>,
}

impl Endpoint {
    /// Parses `http://HOST:PORT` or `https://HOST:PORT` (the port defaults to 2379).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url:?}: expected http://HOST:PORT or https://HOST:PORT"));
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') {
            return Err(format!("{url:?}: expected http[s]://HOST:PORT"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') || h.starts_with('[') => {
                (h, p.parse::<u16>().map_err(|_| format!("{url:?}: {p:?} is not a port"))?)
            }
            _ => (rest, 2379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        Ok(Endpoint { host: host.to_string(), port, tls })
    }

    fn addr(&self) -> io::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} does not resolve", self.host)))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// Longest status, header or chunk-size line taken, and most header lines: a server cannot make weftd hold
/// more than this for a response's head.
pub const MAX_LINE: usize = 8192;
pub const MAX_HEADERS: usize = 100;

/// Reads one line (with its CRLF) into `line`, refusing one longer than [`MAX_LINE`]; 0 at the end.
fn read_line<R: BufRead>(r: &mut R, line: &mut String) -> io::Result<usize> {
    line.clear();
    let mut bytes = Vec::new();
    let n = Read::take(&mut *r, MAX_LINE as u64 + 1).read_until(b'\n', &mut bytes)?;
    if n > MAX_LINE {
        return Err(bad(format!("a line of the response is longer than {MAX_LINE} bytes")));
    }
    line.push_str(&String::from_utf8_lossy(&bytes));
    Ok(n)
}

/// A response whose body is still being read.
pub struct Response {
    pub status: u16,
    reader: BufReader<crate::tls::Stream>,
    chunked: bool,
    /// Bytes left in the current chunk (chunked) or the body (Content-Length; `None`: until EOF).
    left: Option<u64>,
    done: bool,
}

/// Sends `POST path` with a JSON body and reads the status line and headers.
pub fn post(ep: &Endpoint, path: &str, body: &[u8], timeout: Duration, opts: Options<'_>) -> io::Result<Response> {
    let tcp = TcpStream::connect_timeout(&ep.addr()?, timeout)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let mut stream = match (ep.tls, opts.tls) {
        (false, _) => crate::tls::Stream::Plain(tcp),
        (true, Some(cfg)) => crate::tls::Stream::connect(cfg, &ep.host, tcp)
            .map_err(|e| io::Error::new(e.kind(), format!("{ep}: {e}")))?,
        (true, None) => return Err(io::Error::other(format!("{ep}: https:// without a TLS configuration"))),
    };
    let mut req = Vec::with_capacity(160 + body.len());
    write!(
        req,
        "POST {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        ep.host,
        ep.port,
        body.len()
    )?;
    if let Some(token) = opts.token {
        write!(req, "Authorization: {token}\r\n")?;
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    stream.write_all(&req)?;
    stream.flush()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    read_line(&mut reader, &mut line).map_err(|e| {
        // TLS 1.3 finishes the client's side of the handshake before the server has looked at our certificate:
        // a refusal shows up as an alert on the first read.
        if ep.tls && e.to_string().contains("alert") {
            io::Error::new(
                e.kind(),
                format!(
                    "{ep}: the server refused the TLS session ({e}): it may want a client certificate \
                     (other_config:etcd-cert and etcd-key) that its CA signed"
                ),
            )
        } else {
            e
        }
    })?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("not an HTTP status line: {:?}", line.trim_end())))?;
    let (mut chunked, mut length) = (false, None);
    for n in 0.. {
        if n == MAX_HEADERS {
            return Err(bad(format!("more than {MAX_HEADERS} header lines")));
        }
        if read_line(&mut reader, &mut line)? == 0 {
            return Err(bad("connection closed in the headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = Some(v.parse::<u64>().map_err(|_| bad("bad Content-Length"))?);
            }
        }
    }
    let left = if chunked { Some(0) } else { length };
    Ok(Response { status, reader, chunked, left, done: false })
}

impl Response {
    /// Sets how long one read may wait (watches wait long).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.reader.get_ref().tcp().set_read_timeout(t)
    }

    /// Reads some of the body into `buf`; 0 at its end.
    pub fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.chunked && self.left == Some(0) {
            let mut line = String::new();
            // The CRLF that ends the previous chunk, then the size line.
            loop {
                if read_line(&mut self.reader, &mut line)? == 0 {
                    return Err(bad("connection closed inside a chunked body"));
                }
                if !line.trim().is_empty() {
                    break;
                }
            }
            let size = line.trim().split(';').next().unwrap_or("");
            let n = u64::from_str_radix(size, 16).map_err(|_| bad(format!("bad chunk size {size:?}")))?;
            if n == 0 {
                self.done = true;
                return Ok(0);
            }
            self.left = Some(n);
        }
        let want = match self.left {
            Some(0) => {
                self.done = true;
                return Ok(0);
            }
            Some(n) => buf.len().min(n as usize),
            None => buf.len(),
        };
        let got = self.reader.read(&mut buf[..want])?;
        if got == 0 {
            if self.left.is_some() {
                return Err(bad("connection closed inside the body"));
            }
            self.done = true;
        }
        if let Some(n) = self.left.as_mut() {
            *n -= got as u64;
        }
        Ok(got)
    }

    /// Reads the whole body (at most `max` bytes).
    pub fn body(mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            let n = self.read_some(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() + n > max {
                return Err(bad(format!("response larger than {max} bytes")));
            }
            out.extend_from_slice(&buf[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:23791").unwrap(),
            Endpoint { host: "127.0.0.1".into(), port: 23791, tls: false }
        );
        assert!(Endpoint::parse("https://etcd1:2379").unwrap().tls);
        assert_eq!(Endpoint::parse("http://[2001:db8::1]:2379/").unwrap().host, "2001:db8::1");
        assert_eq!(Endpoint::parse("http://etcd").unwrap().port, 2379);
        assert!(Endpoint::parse("ftp://127.0.0.1:2379").is_err());
        assert!(Endpoint::parse("http://127.0.0.1:x").is_err());
        assert!(Endpoint::parse("http://h:1/v3").is_err());
    }

    fn serve(reply: &'static [u8]) -> Endpoint {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            s.write_all(reply).unwrap();
        });
        Endpoint { host: "127.0.0.1".into(), port, tls: false }
    }

    #[test]
    fn chunked_and_length_bodies() {
        let t = Duration::from_secs(5);
        let ep = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        let r = post(&ep, "/v3/x", b"{}", t, Options::default()).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body(100).unwrap(), b"hello world");
        let ep = serve(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabcdef");
        let r = post(&ep, "/v3/x", b"{}", t, Options::default()).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.body(100).unwrap(), b"abc");
        let ep = serve(b"garbage\r\n\r\n");
        assert!(post(&ep, "/", b"", t, Options::default()).is_err());
    }

    #[test]
    fn endless_heads_are_refused() {
        let t = Duration::from_secs(5);
        let long: &'static [u8] = Box::leak(
            [&b"HTTP/1.1 200 OK\r\nX-Long: "[..], &vec![b'a'; 100_000], b"\r\n\r\n"].concat().into_boxed_slice(),
        );
        let err = |r: io::Result<Response>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(post(&serve(long), "/", b"", t, Options::default())).contains("longer than"));
        let many: &'static [u8] =
            Box::leak([&b"HTTP/1.1 200 OK\r\n"[..], &b"X: y\r\n".repeat(1000), b"\r\n"].concat().into_boxed_slice());
        assert!(err(post(&serve(many), "/", b"", t, Options::default())).contains("header lines"));
    }
}
