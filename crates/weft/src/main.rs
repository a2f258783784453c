//! weft: the command line of the weft overlay switch. It reads like `ovs-vsctl` and `bridge fdb`.

mod args;
mod decode;
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
            print!("{}", args::HELP);
            return Ok(());
        }
        args::Command::Daemon(req) => req,
        args::Command::Decode(o) => {
            decode::run(&o)?;
            return Ok(());
        }
    };
    let resp = call(&inv.socket, &req)?;
    if !resp.ok {
        bail!("{}", resp.error.unwrap_or_else(|| "the daemon refused the request".into()));
    }
    let text = output::render(&req, &resp.data, inv.json)?;
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

/// Sends one request to weftd and reads its answer.
fn call(socket: &str, req: &Request) -> anyhow::Result<Response> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("cannot reach weftd at {socket} (is it running? set --socket or WEFT_SOCKET)"))?;
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
