//! weftd: the weft daemon. Runs in the foreground, logs to stderr.
//!
//! `weftd [--db PATH] [--socket PATH]` — defaults /var/lib/weft/conf.db and /run/weft/weft.sock.

mod capture;
mod control;
mod cp;
mod dataplane;
mod db;
mod esp;
mod ipsec;
mod log;
mod metrics;
mod msgs;
mod ofconn;
mod ovsdb;
mod pipeline;

use anyhow::{bail, Context};

/// Unit tests measure what readers of untrusted input allocate.
#[cfg(test)]
#[global_allocator]
static ALLOC: weft_sys::alloc_probe::CountingAlloc = weft_sys::alloc_probe::CountingAlloc;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// weftd's options, declared once: `--help` and the man page (`weftd --man`) are printed from this table.
const OPTIONS: &[(&str, &str, &str)] = &[
    ("--db", "PATH", "the configuration database (default /var/lib/weft/conf.db); it survives kill -9"),
    ("--socket", "PATH", "the control socket weft talks to (default /run/weft/weft.sock), mode 0600"),
    (
        "--ovsdb",
        "TARGET",
        "serve the Open_vSwitch database to ovs-vsctl and IDL clients on unix:PATH or ptcp:PORT[:IP] (repeatable; \
         default unix:db.sock beside the control socket, or NAME.db.sock for a control socket NAME.sock; none: off); \
         compat:PATH listens on PATH only while Open vSwitch is not installed and nothing else answers there",
    ),
    ("--metrics", "IP:PORT", "serve Prometheus metrics on http://IP:PORT/metrics"),
    (
        "--workers",
        "N",
        "datapath threads, each with a share of every port's queues (default: WEFT_WORKERS, else one per CPU weftd \
         may run on, at most 16)",
    ),
    ("--log-level", "LEVEL", "error, warn, info (the default) or debug; weft vlog/set changes it while running"),
    ("--version", "", "the version and the git commit it was built from"),
    ("--help", "", "this help"),
    ("--man", "", "the manual page, in troff"),
];

fn usage() -> String {
    let opts: String =
        OPTIONS.iter().map(|(o, v, _)| if v.is_empty() { format!(" [{o}]") } else { format!(" [{o} {v}]") }).collect();
    let mut out =
        format!("usage: weftd{opts}\nthe weft overlay switch daemon; runs in the foreground, logs to stderr\n\n");
    for (o, v, about) in OPTIONS {
        out.push_str(&format!("  {:<22}{about}\n", format!("{o} {v}")));
    }
    out
}

fn man_page() -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('-', "\\-");
    let mut out = String::from(
        ".TH WEFTD 8 \"\" \"weft\" \"weft manual\"\n.SH NAME\nweftd \\- the weft overlay switch daemon\n\
         .SH SYNOPSIS\n.B weftd\n[\\fIOPTIONS\\fR]\n.SH DESCRIPTION\nweftd runs bridges with TAP, system and internal \
         ports and VXLAN, Geneve and GRE tunnels in userspace, in the foreground, logging to standard error. It \
         reads its database at start and recreates every bridge, port and tunnel. weft(1) configures it.\n.SH OPTIONS\n",
    );
    for (o, v, about) in OPTIONS {
        out.push_str(&format!(".TP\n.B {} {}\n{}\n", esc(o), esc(v), esc(about)));
    }
    out.push_str(".SH SEE ALSO\n.BR weft (1)\n");
    out
}

fn main() {
    if let Err(e) = run() {
        eprintln!("weftd: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let mut db = PathBuf::from("/var/lib/weft/conf.db");
    let mut socket = PathBuf::from("/run/weft/weft.sock");
    let mut metrics: Option<std::net::SocketAddr> = None;
    let mut level = tracing_subscriber::filter::LevelFilter::INFO;
    let mut workers: Option<usize> = None;
    let mut ovsdb_targets: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--db" => db = args.next().context("--db needs a PATH")?.into(),
            "--socket" => socket = args.next().context("--socket needs a PATH")?.into(),
            "-h" | "--help" => {
                print!("{}", usage());
                return Ok(());
            }
            "--man" => {
                print!("{}", man_page());
                return Ok(());
            }
            "-V" | "--version" => {
                println!("weftd {} (commit {})", env!("CARGO_PKG_VERSION"), env!("WEFT_GIT_COMMIT"));
                return Ok(());
            }
            "--workers" => {
                let n: usize =
                    args.next().context("--workers needs a number")?.parse().context("--workers takes a number")?;
                if !(1..=256).contains(&n) {
                    bail!("--workers takes 1 to 256");
                }
                workers = Some(n);
            }
            "--ovsdb" => ovsdb_targets.push(args.next().context("--ovsdb needs unix:PATH, ptcp:PORT[:IP] or none")?),
            "--log-level" => {
                level = log::parse(&args.next().context("--log-level needs a level")?).map_err(anyhow::Error::msg)?
            }
            "--metrics" => {
                metrics =
                    Some(args.next().context("--metrics needs IP:PORT")?.parse().context("--metrics takes IP:PORT")?)
            }
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    log::init(level);
    let config = db::load(&db)?;
    // TAPs this daemon made and its database no longer names (a crash between the two) go now.
    pipeline::set_owner_mark(&db);
    for name in pipeline::sweep_stale_taps(&config) {
        tracing::info!("removed TAP {name}: weft made it, and no port names it any more");
    }

    let workers = match workers {
        Some(n) => n,
        None => default_workers()?,
    };
    let listener = bind_socket(&socket)?;
    let mut resources = pipeline::Resources::default();
    resources.workers = workers;
    let (pipeline, _) = resources.build(&config, 1, false)?;
    let mut handles = Vec::with_capacity(workers);
    let mut inputs = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, rx) = std::sync::mpsc::channel();
        let wake = Arc::new(weft_sys::epoll::EventFd::new()?);
        handles.push((tx, wake.clone()));
        inputs.push((rx, wake));
    }
    let dp = msgs::DpHandle::new(handles);
    let ike = ipsec::spawn(dp.clone())?;
    dp.send(msgs::DpMsg::IkeSink(ike.clone()));
    let (cp, cp_status) = cp::spawn(dp.clone())?;
    let mut state = control::State {
        cp,
        cp_status,
        config,
        db,
        resources,
        dp,
        ike,
        generation: 1,
        port_info: Default::default(),
        links: Default::default(),
        of: Default::default(),
        me: Default::default(),
        removal_reasons: Default::default(),
        removal_reason: weft_wire::openflow::removed::DELETE,
        controller_seen: Default::default(),
        learn_refreshed: Default::default(),
        deferring: false,
        ovsdb: None,
    };
    let empty = Arc::new(pipeline::Pipeline::empty());
    let sharing = dataplane::Sharing::new(workers);
    let clock = dataplane::clock();
    for (w, (rx, wake)) in inputs.into_iter().enumerate() {
        let (empty, sharing) = (empty.clone(), sharing.clone());
        // A worker's batches hold raw pointers for the kernel, so it is built on its own thread.
        std::thread::Builder::new().name(format!("datapath{w}")).spawn(move || {
            let run = || dataplane::Dataplane::new(w, sharing, clock, empty, rx, wake).run();
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).is_err() {
                // The other workers would wait for this one at the next configuration change: the whole
                // daemon stops instead, and a supervisor starts it again from its database.
                tracing::error!("datapath worker {w} panicked; weftd stops");
                std::process::abort();
            }
        })?;
    }
    let cfg = state.config.clone();
    state.install(pipeline, &cfg);
    tracing::info!(
        "{} bridge(s) restored from {}; {workers} datapath worker(s); listening on {}",
        state.config.bridges.len(),
        state.db.display(),
        socket.display()
    );
    let state = Arc::new(Mutex::new(state));
    {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.me = Arc::downgrade(&state);
        s.reconcile_openflow();
    }
    let default_ovsdb = ovsdb_targets.is_empty();
    if default_ovsdb {
        ovsdb_targets.push(format!("unix:{}", default_ovsdb_socket(&socket).display()));
    }
    ovsdb_targets.retain(|t| t != "none");
    if let Err(e) = ovsdb::start(&ovsdb_targets, &state) {
        if !default_ovsdb {
            return Err(e);
        }
        tracing::warn!("no OVSDB server: {e:#}");
    }
    if let Some(addr) = metrics {
        metrics::serve(addr, state.clone())?;
        tracing::info!("metrics on http://{addr}/metrics");
    }
    // Flows that learn actions build, a batch at a time (what came within 20 ms of the first).
    let learning = state.clone();
    std::thread::Builder::new().name("learn".into()).spawn(move || loop {
        let batch = sharing.learns.wait(std::time::Duration::from_millis(20));
        learning.lock().unwrap_or_else(|e| e.into_inner()).learn(batch);
    })?;
    // Flows with idle_timeout or hard_timeout are removed once a second when due; links are looked at as often.
    let expiring = state.clone();
    std::thread::Builder::new().name("flow-expiry".into()).spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let mut s = expiring.lock().unwrap_or_else(|e| e.into_inner());
        s.expire_flows();
        s.check_links();
        s.check_fail_open();
        s.refresh_ovsdb();
    })?;
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let s = state.clone();
                std::thread::spawn(move || control::State::serve(s, stream));
            }
            Err(e) => tracing::warn!("control socket accept: {e}"),
        }
    }
    Ok(())
}

/// Datapath workers when `--workers` is not given: `WEFT_WORKERS`, else one per CPU this process may run on
/// (its affinity mask, which containers and `taskset` narrow), at most 16.
fn default_workers() -> anyhow::Result<usize> {
    match std::env::var("WEFT_WORKERS") {
        Ok(v) => match v.parse::<usize>() {
            Ok(n) if (1..=256).contains(&n) => Ok(n),
            _ => bail!("WEFT_WORKERS={v:?}: takes a number from 1 to 256"),
        },
        Err(_) => Ok(std::thread::available_parallelism().map_or(1, |n| n.get()).min(16)),
    }
}

/// The OVSDB socket when `--ovsdb` is not given: `db.sock` beside a control socket named `weft.sock`, else
/// `NAME.db.sock` beside `NAME.sock` (so several daemons sharing a directory do not collide).
fn default_ovsdb_socket(control: &std::path::Path) -> PathBuf {
    let stem = control.file_stem().and_then(|s| s.to_str()).unwrap_or("weft");
    let name = if stem == "weft" { "db.sock".to_string() } else { format!("{stem}.db.sock") };
    control.with_file_name(name)
}

/// Binds a Unix socket with mode 0600, refusing to start if another daemon answers on it.
pub(crate) fn bind_socket(path: &std::path::Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        weft_sys::files::create_private_dirs(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    weft_sys::files::refuse_symlink(path)?;
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!("another weftd is already listening on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let old = umask(0o177);
    let listener = UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()));
    umask(old);
    let listener = listener?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

fn umask(mask: u32) -> u32 {
    weft_sys::process_umask(mask)
}
