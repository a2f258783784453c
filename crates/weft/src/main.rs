//! weft: the command line of the weft overlay switch. It reads like `ovs-vsctl` and `bridge fdb`.

mod args;
mod decode;
mod grammar;
mod output;

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use weft_api::{Request, Response};

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("weft: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let inv = args::parse(&argv)?;
    let req = match inv.command {
        args::Command::Help => {
            print!("{}", grammar::help());
            return Ok(());
        }
        args::Command::HelpFor(cmd) => {
            match args::help_for(&cmd) {
                Some(h) => print!("{h}"),
                None => anyhow::bail!("unknown command {cmd:?} (weft --help lists them)"),
            }
            return Ok(());
        }
        args::Command::Text(t) => {
            print!("{t}");
            return Ok(());
        }
        args::Command::Version => {
            println!("weft {} (commit {})", env!("CARGO_PKG_VERSION"), env!("WEFT_GIT_COMMIT"));
            return Ok(());
        }
        args::Command::Daemon(req) => req,
        args::Command::Drops(req) => {
            let resp = call(&inv.socket, &req)?;
            if !resp.ok {
                bail!("{}", resp.error.unwrap_or_else(|| "the daemon refused the request".into()));
            }
            let rows = output::drop_rows(&resp.read::<Vec<weft_api::reply::PortRow>>()?);
            if inv.json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                for r in rows {
                    println!("{} {}={}", r.port, r.reason, r.count);
                }
            }
            return Ok(());
        }
        args::Command::Decode(o) => {
            decode::run(&o)?;
            return Ok(());
        }
        args::Command::Capture(req, write_to, o) => return capture(&inv.socket, &req, write_to.as_deref(), &o),
    };
    let resp = call(&inv.socket, &req)?;
    if !resp.ok {
        bail!("{}", resp.error.unwrap_or_else(|| "the daemon refused the request".into()));
    }
    let text = output::render(&req, &resp, inv.json)?;
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

/// `weft capture`: after weftd's answer, the connection carries a pcap stream; it is written to a file as
/// it comes (so an interrupted capture leaves a valid file) or decoded one packet at a time.
fn capture(socket: &str, req: &Request, write_to: Option<&str>, o: &decode::Options) -> anyhow::Result<()> {
    let mut stream = connect(socket)?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer)?;
    if answer.is_empty() {
        bail!("weftd closed the connection without answering");
    }
    let resp: Response = serde_json::from_str(&answer).context("weftd's answer is not understood")?;
    if !resp.ok {
        bail!("{}", resp.error.unwrap_or_else(|| "the daemon refused the capture".into()));
    }
    match write_to {
        Some(path) => {
            let mut out: Box<dyn Write> = if path == "-" {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(std::fs::File::create(path).with_context(|| format!("cannot create {path}"))?)
            };
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = std::io::Read::read(&mut reader, &mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
                out.flush()?;
            }
            Ok(())
        }
        None => {
            let mut out = std::io::stdout().lock();
            decode::decode_live(reader, o, &mut out)?;
            Ok(())
        }
    }
}

fn connect(socket: &str) -> anyhow::Result<UnixStream> {
    UnixStream::connect(socket).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no socket there: weftd is not running, or it listens elsewhere (weft --socket PATH, or WEFT_SOCKET)"
            }
            std::io::ErrorKind::ConnectionRefused => "the socket exists but no weftd listens on it (it has stopped)",
            std::io::ErrorKind::PermissionDenied => "the socket is readable by its owner only (root): run weft as root",
            _ => "is weftd running? (weft --socket PATH, or WEFT_SOCKET)",
        };
        anyhow::anyhow!("cannot reach weftd at {socket}: {e}: {why}")
    })
}

/// Sends one request to weftd and reads its answer.
fn call(socket: &str, req: &Request) -> anyhow::Result<Response> {
    let mut stream = connect(socket)?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    if answer.is_empty() {
        bail!("weftd closed the connection without answering");
    }
    serde_json::from_str(&answer).context("weftd's answer is not understood")
}
