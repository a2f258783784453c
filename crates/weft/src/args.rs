//! Command-line parsing, ovs-vsctl style: global options, a command, and `-- set interface|port NAME K=V …`
//! clauses. Everything is checked before the daemon is contacted.

use anyhow::{bail, Context};
use weft_api::{Request, StaticFdb};
use weft_wire::EthernetAddress;

pub enum Command {
    Help,
    /// `weft COMMAND --help`, `weft help COMMAND`: that command's part of the help.
    HelpFor(String),
    Version,
    /// Text to print (the man page, a completion script).
    Text(String),
    /// `dump-drops`: dump-ports, showing only the drop reasons that are not zero.
    Drops(Request),
    Daemon(Request),
    Decode(crate::decode::Options),
    /// A capture request, and where the pcap stream goes (`-w FILE`, `-` for stdout) if not decoded.
    Capture(Request, Option<String>, crate::decode::Options),
}

pub struct Invocation {
    pub socket: String,
    pub json: bool,
    pub command: Command,
}

pub use crate::grammar::help_for;

/// Splits `K=V`, removing the double quotes ovs-vsctl users often put around values.
fn setting(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s.split_once('=').with_context(|| format!("{s:?} is not a KEY=VALUE setting"))?;
    if k.is_empty() {
        bail!("{s:?} has an empty key");
    }
    let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
    Ok((k.to_string(), v.to_string()))
}

fn settings(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items.iter().map(|s| setting(s)).collect()
}

/// Checks a command's arguments and options against its declaration in [`crate::grammar`]: how many
/// arguments it takes, and that every option given is one it takes.
fn check(words: &[String], opts: &[String]) -> anyhow::Result<()> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let Some(spec) = crate::grammar::find(&w) else { return Ok(()) };
    let name = spec.name();
    let n = words.len() - name.split(' ').count();
    if n < spec.min || n > spec.max {
        let shape = if spec.args.is_empty() { "no arguments" } else { spec.args };
        bail!("'{name}' takes {shape} (got {n} argument{})", if n == 1 { "" } else { "s" });
    }
    for o in opts {
        if !crate::grammar::GLOBAL.contains(&o.as_str()) && !spec.flags.contains(&o.as_str()) {
            bail!("'{name}' does not take {o} (see weft {name} --help)");
        }
    }
    Ok(())
}

fn parse_mac(s: &str) -> anyhow::Result<EthernetAddress> {
    Ok(s.parse()?)
}

/// The optional `dst IP` and `vlan N` words after `fdb add`/`fdb del`.
fn fdb_tail(words: &[String], allow_dst: bool) -> anyhow::Result<(Option<std::net::IpAddr>, u16)> {
    let (mut dst, mut vlan) = (None, 0u16);
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let value = it.next().with_context(|| format!("'{w}' needs a value"))?;
        match w.as_str() {
            "dst" if allow_dst => {
                dst = Some(value.parse().with_context(|| format!("dst {value:?} is not an IPv4 or IPv6 address"))?)
            }
            "vlan" => {
                vlan = value
                    .parse()
                    .ok()
                    .filter(|v| *v <= 4094)
                    .with_context(|| format!("vlan {value:?} is not a VLAN ID in 0..=4094"))?
            }
            other => bail!("unexpected {other:?} (expected {}vlan N)", if allow_dst { "dst IP or " } else { "" }),
        }
    }
    Ok((dst, vlan))
}

/// Adds one command of a `--` chain: `set interface P …` and `set port P …` right for a port the chain adds
/// go into its `add-port` (so that its type is known when it is created), as ovs-vsctl's would.
fn push_joined(requests: &mut Vec<Request>, req: Request) -> anyhow::Result<()> {
    let target = match &req {
        Request::SetInterface { port, .. } | Request::SetPort { port, .. } => Some(port.clone()),
        _ => None,
    };
    if let Some(target) = target {
        let added = requests.iter_mut().rev().find_map(|r| match r {
            Request::AddPort { port, iface, port_settings, .. } if *port == target => Some((iface, port_settings)),
            _ => None,
        });
        if let Some((iface, port_settings)) = added {
            match req {
                Request::SetInterface { settings, .. } => iface.extend(settings),
                Request::SetPort { settings, .. } => port_settings.extend(settings),
                _ => {}
            }
            return Ok(());
        }
    }
    requests.push(req);
    Ok(())
}

pub fn parse(argv: &[String]) -> anyhow::Result<Invocation> {
    let mut socket = std::env::var("WEFT_SOCKET").unwrap_or_else(|_| "/run/weft/weft.sock".into());
    let mut json = false;
    let mut may_exist = false;
    let mut if_exists = false;
    let mut verbose = false;
    let mut decode_as = weft_wire::dissect::DecodeAs::default();
    let mut count: Option<u64> = None;
    let mut write_to: Option<String> = None;
    let mut outer = false;
    let mut strict = false;
    let mut drops_only = false;
    let mut packet: Option<String> = None;
    let mut keys = false;
    let mut ike = false;
    // Split into the main command and "-- …" clauses; --may-exist and --if-exists belong to their clause.
    let mut clauses: Vec<Vec<String>> = vec![Vec::new()];
    let mut clause_flags: Vec<Vec<String>> = vec![Vec::new()];
    // Every option each clause was given, to check against its command's declaration.
    let mut clause_opts: Vec<Vec<String>> = vec![Vec::new()];
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--" => {
                clauses.push(Vec::new());
                clause_flags.push(Vec::new());
                clause_opts.push(Vec::new());
                continue;
            }
            "--socket" => socket = it.next().context("--socket needs a PATH")?.clone(),
            "--format" => match it.next().map(String::as_str) {
                Some("json") => json = true,
                Some("text") => json = false,
                Some(other) => bail!("--format takes json or text, not {other:?}"),
                None => bail!("--format needs a value: json or text"),
            },
            "--may-exist" => {
                may_exist = true;
                clause_flags.last_mut().map(|f| f.push(a.clone())).unwrap_or(());
            }
            "-V" => verbose = true,
            "--outer" => outer = true,
            "--strict" => strict = true,
            "--keys" => keys = true,
            "--ike" => ike = true,
            "--packet" => packet = Some(it.next().context("--packet needs the frame in hex")?.clone()),
            "-w" => write_to = Some(it.next().context("-w needs a FILE (or - for standard output)")?.clone()),
            "--decode-as" | "-d" => {
                let rule = it.next().context("--decode-as needs udp.port==N,vxlan|geneve")?;
                decode_as.add(rule).map_err(|e| anyhow::anyhow!("--decode-as {rule}: {e}"))?;
            }
            "-c" => {
                let v = it.next().context("-c needs a packet count")?;
                count = Some(v.parse().ok().filter(|c| *c > 0).with_context(|| format!("-c {v:?}: not a count"))?);
            }
            "--if-exists" => {
                if_exists = true;
                clause_flags.last_mut().map(|f| f.push(a.clone())).unwrap_or(());
            }
            "-h" | "--help" | "help" => {
                // With a command before or after it: that command's usage.
                let cmd = clauses
                    .last()
                    .and_then(|c| c.first())
                    .cloned()
                    .or_else(|| it.clone().find(|a| !a.starts_with('-')).cloned());
                let command = match cmd {
                    Some(c) => Command::HelpFor(c),
                    None => Command::Help,
                };
                return Ok(Invocation { socket, json, command });
            }
            "--version" => return Ok(Invocation { socket, json, command: Command::Version }),
            s if s.starts_with("--format=") => json = &s["--format=".len()..] == "json",
            s if s.starts_with("--socket=") => socket = s["--socket=".len()..].to_string(),
            s if s.starts_with("--") => bail!("unknown option {s:?} (see weft --help)"),
            _ => {
                clauses.last_mut().map(|c| c.push(a.clone())).unwrap_or(());
                continue;
            }
        }
        let name = a.split_once('=').map_or(a.as_str(), |(n, _)| n);
        if name.starts_with('-') {
            clause_opts.last_mut().map(|o| o.push(name.to_string())).unwrap_or(());
        }
    }
    // Several commands joined by `--`, as ovs-vsctl joins them: one transaction.
    if clauses.iter().filter(|c| !c.is_empty()).count() > 1 || (clauses[0].is_empty() && clauses.len() > 1) {
        let mut requests: Vec<Request> = Vec::new();
        for ((clause, flags), opts) in
            clauses.iter().zip(&clause_flags).zip(&clause_opts).filter(|((c, _), _)| !c.is_empty())
        {
            check(clause, opts)?;
            let argv: Vec<String> = flags.iter().chain(clause).cloned().collect();
            let req = match parse(&argv)?.command {
                Command::Daemon(r) if r.is_change() => r,
                _ => bail!("'{}' changes nothing: only configuration changes can be joined with --", clause.join(" ")),
            };
            push_joined(&mut requests, req)?;
        }
        if requests.is_empty() {
            bail!("no command given (see weft --help)");
        }
        let command = if requests.len() == 1 {
            Command::Daemon(requests.remove(0))
        } else {
            Command::Daemon(Request::Transaction { requests })
        };
        return Ok(Invocation { socket, json, command });
    }
    let main = clauses.remove(0);
    let Some((cmd, rest)) = main.split_first() else {
        return Ok(Invocation { socket, json, command: Command::Help });
    };
    check(&main, &clause_opts[0])?;
    let rest = rest.to_vec();
    let no_clauses = |clauses: &Vec<Vec<String>>| -> anyhow::Result<()> {
        if clauses.is_empty() {
            Ok(())
        } else {
            bail!("'{cmd}' does not take '-- set …' clauses")
        }
    };
    let req = match cmd.as_str() {
        "man" => {
            let page = if rest.is_empty() {
                crate::grammar::man_page()
            } else {
                let words: Vec<&str> = rest.iter().map(String::as_str).collect();
                crate::grammar::man_page_for(&words)
                    .with_context(|| format!("no command {:?} (see weft --help)", rest.join(" ")))?
            };
            return Ok(Invocation { socket, json, command: Command::Text(page) });
        }
        "completion" => {
            let script = match rest[0].as_str() {
                "bash" => crate::grammar::bash_completion(),
                "zsh" => crate::grammar::zsh_completion(),
                "fish" => crate::grammar::fish_completion(),
                other => bail!("'completion' knows bash, zsh and fish, not {other:?}"),
            };
            return Ok(Invocation { socket, json, command: Command::Text(script) });
        }
        "add-br" => {
            no_clauses(&clauses)?;
            Request::AddBr { bridge: rest[0].clone(), may_exist }
        }
        "del-br" => {
            no_clauses(&clauses)?;
            Request::DelBr { bridge: rest[0].clone(), if_exists }
        }
        "list-br" => Request::ListBr,
        "add-port" => {
            let port = rest[1].clone();
            // As ovs-vsctl: Port columns may follow the port name; `-- set interface PORT …` and
            // `-- set port PORT …` clauses join it in `push_joined`.
            let port_settings = settings(&rest[2..])?;
            let iface = Vec::new();
            Request::AddPort { bridge: rest[0].clone(), port, iface, port_settings, may_exist }
        }
        "del-port" => {
            no_clauses(&clauses)?;
            let (bridge, port) =
                if rest.len() == 2 { (Some(rest[0].clone()), rest[1].clone()) } else { (None, rest[0].clone()) };
            Request::DelPort { bridge, port, if_exists }
        }
        "list-ports" => Request::ListPorts { bridge: rest[0].clone() },
        "set" => {
            no_clauses(&clauses)?;
            match rest.as_slice() {
                // Table names are case-insensitive, as in ovs-vsctl (`set Interface vnet0 …`).
                [table, name, kv @ ..] if !kv.is_empty() => match table.to_ascii_lowercase().as_str() {
                    "interface" => Request::SetInterface { port: name.clone(), settings: settings(kv)? },
                    "bridge" => Request::SetBridge { bridge: name.clone(), settings: settings(kv)? },
                    "port" => Request::SetPort { port: name.clone(), settings: settings(kv)? },
                    _ => bail!("unknown table {table:?} (expected Interface, Port or Bridge)"),
                },
                _ => bail!("'set' takes TABLE NAME KEY=VALUE..."),
            }
        }
        "clear" => {
            no_clauses(&clauses)?;
            match rest.as_slice() {
                [table, name, columns @ ..]
                    if table.eq_ignore_ascii_case("port")
                        && columns.iter().all(|c| c == "tag" || c == "trunks")
                        && !columns.is_empty() =>
                {
                    Request::ClearPort { port: name.clone(), columns: columns.to_vec() }
                }
                [table, name, column] => Request::RemoveKeys {
                    table: table.clone(),
                    name: name.clone(),
                    column: column.clone(),
                    keys: Vec::new(),
                },
                _ => bail!(
                    "'clear' takes TABLE NAME COLUMN (e.g. clear Interface vx1 options; clear port p1 tag trunks)"
                ),
            }
        }
        "remove" => {
            no_clauses(&clauses)?;
            match rest.as_slice() {
                [table, name, column, keys @ ..] if !keys.is_empty() => Request::RemoveKeys {
                    table: table.clone(),
                    name: name.clone(),
                    column: column.clone(),
                    // ovs-vsctl also takes KEY=VALUE (remove only that pair); the key is what counts here.
                    keys: keys.iter().map(|k| k.split_once('=').map_or(k.as_str(), |(k, _)| k).to_string()).collect(),
                },
                _ => bail!("'remove' takes TABLE NAME COLUMN KEY... (e.g. remove Interface vx1 options tos ttl)"),
            }
        }
        "show" => Request::Show,
        "dump-ports" => Request::DumpPorts { bridge: rest[0].clone() },
        "trace" => Request::Trace { bridge: rest[0].clone(), flow: rest[1..].join(" "), packet: packet.clone() },
        "vlog/set" | "vlog" => Request::Vlog { level: rest.first().cloned() },
        "vlog/list" => Request::Vlog { level: None },
        "dump-drops" => {
            drops_only = true;
            Request::DumpPorts { bridge: rest[0].clone() }
        }
        "decode" => {
            no_clauses(&clauses)?;
            let style = match (json, verbose) {
                (true, _) => crate::decode::Style::Json,
                (false, true) => crate::decode::Style::Tree,
                (false, false) => crate::decode::Style::Line,
            };
            let o = crate::decode::Options { file: rest[0].clone(), style, decode_as, count };
            return Ok(Invocation { socket, json, command: Command::Decode(o) });
        }
        "parse-flow" => {
            no_clauses(&clauses)?;
            let text = rest.join(" ");
            let resolve = |p: &str| p.parse::<u32>().ok().filter(|n| *n < 0xff00);
            let f = weft_api::flow::parse(&text, &resolve).map_err(|e| anyhow::anyhow!("bad flow: {e}"))?;
            if !f.has_actions {
                bail!("bad flow: {text:?} has no actions= (use actions=drop)");
            }
            return Ok(Invocation { socket, json, command: Command::Text(format!("{}\n", f.flow_mod_text())) });
        }
        "add-flow" => Request::AddFlows { bridge: rest[0].clone(), flows: vec![rest[1..].join(" ")] },
        "add-flows" => {
            let text = if rest[1] == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&rest[1]).with_context(|| format!("cannot read {}", rest[1]))?
            };
            let flows: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect();
            Request::AddFlows { bridge: rest[0].clone(), flows }
        }
        "del-flows" => {
            let filter = (rest.len() > 1).then(|| rest[1..].join(" "));
            Request::DelFlows { bridge: rest[0].clone(), filter, strict }
        }
        "mod-flows" => Request::ModFlows { bridge: rest[0].clone(), flow: rest[1..].join(" "), strict },
        "set-controller" => {
            for t in &rest[1..] {
                weft_api::config::parse_of_target(t).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            Request::SetController { bridge: rest[0].clone(), targets: rest[1..].to_vec() }
        }
        "del-controller" => Request::SetController { bridge: rest[0].clone(), targets: Vec::new() },
        "set-ssl" => {
            // Paths are kept absolute: weftd reads them, from its own working directory.
            let abs =
                |p: &String| -> anyhow::Result<String> { Ok(std::path::absolute(p)?.to_string_lossy().into_owned()) };
            let ssl = weft_api::config::SslConfig {
                private_key: abs(&rest[0])?,
                certificate: abs(&rest[1])?,
                ca_cert: abs(&rest[2])?,
            };
            Request::SetSsl { ssl: Some(ssl) }
        }
        "del-ssl" => Request::SetSsl { ssl: None },
        "get-ssl" => Request::GetSsl,
        // As ovs-vsctl: the Bridge column fail_mode.
        "set-fail-mode" => {
            weft_api::config::FailMode::parse(&rest[1]).map_err(|e| anyhow::anyhow!("{e}"))?;
            Request::SetBridge { bridge: rest[0].clone(), settings: vec![("fail_mode".into(), rest[1].clone())] }
        }
        "del-fail-mode" => Request::RemoveKeys {
            table: "bridge".into(),
            name: rest[0].clone(),
            column: "fail_mode".into(),
            keys: Vec::new(),
        },
        "add-tlv-map" => {
            weft_api::tlv::parse(&rest[1]).map_err(|e| anyhow::anyhow!("{e}"))?;
            Request::AddTlvMap { bridge: rest[0].clone(), mappings: rest[1].clone() }
        }
        "del-tlv-map" => {
            if let Some(m) = rest.get(1) {
                weft_api::tlv::parse(m).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            Request::DelTlvMap { bridge: rest[0].clone(), mappings: rest.get(1).cloned() }
        }
        "dump-tlv-map" => Request::DumpTlvMap { bridge: rest[0].clone() },
        "dump-flows" => {
            let filter = (rest.len() > 1).then(|| rest[1..].join(" "));
            Request::DumpFlows { bridge: rest[0].clone(), filter }
        }
        "capture" => {
            no_clauses(&clauses)?;
            let style = match (json, verbose) {
                (true, _) => crate::decode::Style::Json,
                (false, true) => crate::decode::Style::Tree,
                (false, false) => crate::decode::Style::Line,
            };
            let req = Request::Capture { bridge: rest[0].clone(), port: rest[1].clone(), outer, count };
            let o = crate::decode::Options { file: "-".into(), style, decode_as, count: None };
            return Ok(Invocation { socket, json, command: Command::Capture(req, write_to, o) });
        }
        "fdb" => match rest.as_slice() {
            [sub, br] if sub == "show" => Request::FdbShow { bridge: br.clone() },
            [sub, br] if sub == "flush" => Request::FdbFlush { bridge: br.clone() },
            [sub, br] if sub == "stats" => Request::FdbStats { bridge: br.clone() },
            [sub, br, mac, port, tail @ ..] if sub == "add" => {
                let (dst, vlan) = fdb_tail(tail, true)?;
                let mac = parse_mac(mac)?;
                Request::FdbAdd { bridge: br.clone(), entry: StaticFdb { mac, vlan, port: port.clone(), dst } }
            }
            [sub, br, mac, tail @ ..] if sub == "del" => {
                let (_, vlan) = fdb_tail(tail, false)?;
                Request::FdbDel { bridge: br.clone(), mac: parse_mac(mac)?, vlan }
            }
            _ => {
                bail!("'fdb' takes 'show BR', 'flush BR', 'stats BR', 'add BR MAC PORT [dst IP] [vlan N]' or 'del BR MAC [vlan N]'")
            }
        },
        "dpctl/dump-conntrack" => Request::CtDump { zone: zone_arg(&rest)? },
        "dpctl/flush-conntrack" => Request::CtFlush { zone: zone_arg(&rest)? },
        "dpctl/ct-stats-show" => Request::CtStats { show: String::new() },
        "dpctl/ct-get-maxconns" => Request::CtStats { show: "maxconns".into() },
        "dpctl/ct-get-limits" => Request::CtStats { show: "limits".into() },
        "dpctl/ct-set-maxconns" => {
            let n = rest[0].parse().with_context(|| format!("{:?} is not a number of connections", rest[0]))?;
            Request::CtSetMaxConns { n }
        }
        "dpctl/ct-set-limits" => Request::CtSetLimits { limits: zone_limits(&rest, true)? },
        "dpctl/ct-del-limits" => Request::CtSetLimits { limits: zone_limits(&rest, false)? },
        "ipsec" => match rest.as_slice() {
            [sub] if sub == "show" => Request::IpsecShow { keys },
            [sub] if sub == "rekey" => Request::IpsecRekey { remote: None, ike },
            [sub, r] if sub == "rekey" => {
                let remote = r.parse().with_context(|| format!("{r:?} is not an IP address"))?;
                Request::IpsecRekey { remote: Some(remote), ike }
            }
            _ => bail!("'ipsec' takes 'show [--keys]' or 'rekey [REMOTE] [--ike]'"),
        },
        other => bail!("unknown command {other:?} (see weft --help)"),
    };
    let command = if drops_only { Command::Drops(req) } else { Command::Daemon(req) };
    Ok(Invocation { socket, json, command })
}

/// `zone=N` (or nothing) of the conntrack commands.
fn zone_arg(rest: &[String]) -> anyhow::Result<Option<u16>> {
    match rest {
        [] => Ok(None),
        [z] => {
            let v = z.strip_prefix("zone=").with_context(|| format!("{z:?}: expected zone=N"))?;
            Ok(Some(v.parse().with_context(|| format!("{v:?} is not a zone (0..=65535)"))?))
        }
        _ => bail!("expected at most one zone=N"),
    }
}

/// `zone=N,limit=M ...` (`with_limit`) or `zone=N[,N...]`, as ovs-appctl takes them (`default=M` is the
/// table's limit: use ct-set-maxconns).
fn zone_limits(rest: &[String], with_limit: bool) -> anyhow::Result<Vec<(u16, Option<u64>)>> {
    let mut out = Vec::new();
    for a in rest {
        if with_limit {
            let (z, l) = a.split_once(',').with_context(|| format!("{a:?}: expected zone=N,limit=M"))?;
            let z = z.strip_prefix("zone=").with_context(|| format!("{a:?}: expected zone=N,limit=M"))?;
            let l = l.strip_prefix("limit=").with_context(|| format!("{a:?}: expected zone=N,limit=M"))?;
            let zone = z.parse().with_context(|| format!("{z:?} is not a zone (0..=65535)"))?;
            out.push((zone, Some(l.parse().with_context(|| format!("{l:?} is not a number of connections"))?)));
        } else {
            let zs = a.strip_prefix("zone=").with_context(|| format!("{a:?}: expected zone=N[,N...]"))?;
            for z in zs.split(',') {
                out.push((z.parse().with_context(|| format!("{z:?} is not a zone (0..=65535)"))?, None));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> anyhow::Result<Request> {
        let argv: Vec<String> = s.split_whitespace().map(String::from).collect();
        match parse(&argv)?.command {
            Command::Daemon(r) => Ok(r),
            Command::Help | Command::HelpFor(_) | Command::Version | Command::Drops(_) | Command::Text(_) => {
                bail!("help")
            }
            Command::Decode(_) => bail!("decode"),
            Command::Capture(..) => bail!("capture"),
        }
    }

    #[test]
    fn every_command_has_its_own_usage() {
        let argv = |s: &str| -> Vec<String> { s.split_whitespace().map(String::from).collect() };
        for (line, cmd) in [("add-port --help", "add-port"), ("help add-flow", "add-flow"), ("fdb -h", "fdb")] {
            let Command::HelpFor(c) = parse(&argv(line)).unwrap().command else { panic!("{line}") };
            assert_eq!(c, cmd);
        }
        let h = help_for("add-port").unwrap();
        assert!(h.contains("add-port BR PORT") && !h.contains("add-flow"), "{h}");
        let h = help_for("add-flow").unwrap();
        assert!(h.contains("add-flow BR FLOW") && !h.contains("add-br"), "{h}");
        assert!(help_for("set-controller").unwrap().contains("ptcp"));
        assert!(help_for("frobnicate").is_none());
        assert!(matches!(parse(&argv("--help")).unwrap().command, Command::Help));
    }

    #[test]
    fn commands_joined_by_dashes_are_one_transaction() {
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        // libvirt's and os-vif's line.
        let r = p("-- --if-exists del-port vnet0 -- add-port br0 vnet0 -- set Interface vnet0 type=tap \
                   external-ids:iface-id=abc external-ids:attached-mac=02:00:00:00:00:01")
        .unwrap();
        let Request::Transaction { requests } = r else { panic!("not a transaction: {r:?}") };
        assert_eq!(requests.len(), 2, "{requests:?}");
        assert_eq!(requests[0], Request::DelPort { bridge: None, port: "vnet0".into(), if_exists: true });
        let Request::AddPort { iface, may_exist, .. } = &requests[1] else { panic!("{requests:?}") };
        assert!(!may_exist, "--if-exists belongs to its own command");
        assert_eq!(
            iface,
            &vec![
                kv("type", "tap"),
                kv("external-ids:iface-id", "abc"),
                kv("external-ids:attached-mac", "02:00:00:00:00:01")
            ]
        );
        let r = p("add-port br0 a -- add-port br0 b -- set port b tag=7").unwrap();
        let Request::Transaction { requests } = r else { panic!() };
        assert_eq!(requests.len(), 2);
        assert!(
            matches!(&requests[1], Request::AddPort { port, port_settings, .. } if port == "b" && port_settings == &vec![kv("tag", "7")])
        );
        // One command after a leading -- is just that command.
        assert!(matches!(p("-- add-br br9").unwrap(), Request::AddBr { .. }));
        // Reading commands cannot be joined; nothing at all is an error, never help.
        assert!(p("add-br br0 -- show").unwrap_err().to_string().contains("changes nothing"));
        assert!(p("--").is_err());
        assert!(p("-- --").is_err());
        // Table names in any case.
        assert!(matches!(p("set Interface x type=tap").unwrap(), Request::SetInterface { .. }));
        assert!(matches!(p("set BRIDGE br0 external_ids:k=v").unwrap(), Request::SetBridge { .. }));
        assert_eq!(p("show --format xml").unwrap_err().to_string(), "--format takes json or text, not \"xml\"");
    }

    #[test]
    fn decode_options() {
        let argv: Vec<String> =
            "decode -V -c 5 --decode-as udp.port==8472,vxlan f.pcap".split_whitespace().map(String::from).collect();
        let Command::Decode(o) = parse(&argv).unwrap().command else { panic!("not decode") };
        assert_eq!((o.file.as_str(), o.style, o.count), ("f.pcap", crate::decode::Style::Tree, Some(5)));
        assert_eq!(o.decode_as.udp.len(), 1);
        let bad: Vec<String> = ["decode", "-d", "udp.port==x,vxlan", "f"].map(String::from).to_vec();
        assert!(parse(&bad).is_err());
    }

    #[test]
    fn add_port_with_interface_settings() {
        let r = p("add-port sw1 vx1 -- set interface vx1 type=vxlan options:remote_ip=\"192.0.2.12\" options:key=123")
            .unwrap();
        let Request::AddPort { bridge, port, iface, may_exist, .. } = r else { panic!() };
        assert_eq!((bridge.as_str(), port.as_str(), may_exist), ("sw1", "vx1", false));
        assert_eq!(iface[1], ("options:remote_ip".to_string(), "192.0.2.12".to_string()));
        assert_eq!(iface.len(), 3);
    }

    #[test]
    fn errors_are_specific() {
        // Another port's interface: a second command of the transaction (as in ovs-vsctl), not a merge.
        let r = p("add-port sw1 vx1 -- set interface vx2 type=vxlan").unwrap();
        assert!(matches!(&r, Request::Transaction { requests } if requests.len() == 2), "{r:?}");
        assert!(p("add-br").unwrap_err().to_string().contains("takes BR"));
        assert!(p("frobnicate").unwrap_err().to_string().contains("unknown command"));
        assert!(p("set interface vx1 key").unwrap_err().to_string().contains("KEY=VALUE"));
        assert!(p("--bogus show").is_err());
        assert!(p("fdb show").is_err());
        assert_eq!(p("ipsec show --keys").unwrap(), Request::IpsecShow { keys: true });
        assert_eq!(
            p("ipsec rekey 192.0.2.12 --ike").unwrap(),
            Request::IpsecRekey { remote: Some("192.0.2.12".parse().unwrap()), ike: true }
        );
        assert!(p("ipsec rekey nowhere").is_err());
        assert!(p("ipsec").is_err());
    }

    #[test]
    fn fdb_add_and_del() {
        let r = p("fdb add sw1 02:00:00:00:00:99 vx1 dst 192.0.2.13 vlan 10").unwrap();
        let Request::FdbAdd { entry, .. } = r else { panic!() };
        assert_eq!((entry.vlan, entry.dst, entry.port.as_str()), (10, Some("192.0.2.13".parse().unwrap()), "vx1"));
        assert!(p("fdb add sw1 02:00:00:00:00:zz p1").unwrap_err().to_string().contains("not a MAC address"));
        assert!(p("fdb add sw1 02:00:00:00:00:99 p1 vlan 5000").unwrap_err().to_string().contains("0..=4094"));
        assert!(p("fdb del sw1 02:00:00:00:00:99 dst 192.0.2.1").is_err());
        assert!(p("fdb add sw1 02:00:00:00:00:99 p1 dst").unwrap_err().to_string().contains("needs a value"));
    }

    #[test]
    fn vlan_settings_three_ways() {
        let Request::AddPort { port_settings, .. } = p("add-port sw1 p1 tag=10").unwrap() else { panic!() };
        assert_eq!(port_settings, vec![("tag".to_string(), "10".to_string())]);
        let r = p("add-port sw1 p1 -- set interface p1 type=tap -- set port p1 trunks=[10,20]").unwrap();
        let Request::AddPort { port_settings, iface, .. } = r else { panic!() };
        assert_eq!((port_settings[0].1.as_str(), iface.len()), ("[10,20]", 1));
        assert!(matches!(p("set port p1 tag=5").unwrap(), Request::SetPort { .. }));
        assert_eq!(
            p("clear port p1 tag trunks").unwrap(),
            Request::ClearPort { port: "p1".into(), columns: vec!["tag".into(), "trunks".into()] }
        );
        assert!(matches!(p("add-port sw1 p1 -- set port p2 tag=1").unwrap(), Request::Transaction { .. }));
        assert!(p("clear port p1").is_err());
        assert!(p("add-port sw1 p1 tag").unwrap_err().to_string().contains("KEY=VALUE"));
    }

    #[test]
    fn options_belong_to_their_commands() {
        assert_eq!(
            p("add-br x --keys").unwrap_err().to_string(),
            "'add-br' does not take --keys (see weft add-br --help)"
        );
        assert!(p("dump-flows --strict sw1").unwrap_err().to_string().contains("does not take --strict"));
        assert!(p("--if-exists add-br sw1").unwrap_err().to_string().contains("does not take --if-exists"));
        assert!(p("show --outer").is_err());
        assert!(p("del-flows --strict sw1 priority=5").is_ok());
        assert!(p("--may-exist add-br sw1").is_ok());
        assert!(p("ipsec show --keys --format json").is_ok());
        // In a chain each clause is checked against its own command.
        assert!(p("--may-exist add-br sw1 -- --if-exists del-port p1").is_ok());
        assert!(p("add-br sw1 -- --strict del-port p1").unwrap_err().to_string().contains("'del-port' does not take"));
        assert!(p("list-br extra").unwrap_err().to_string().contains("takes no arguments"));
        assert!(p("fdb add sw1").unwrap_err().to_string().contains("'fdb add' takes BR MAC PORT"));
    }

    #[test]
    fn del_port_with_and_without_bridge() {
        assert_eq!(p("del-port p1").unwrap(), Request::DelPort { bridge: None, port: "p1".into(), if_exists: false });
        assert_eq!(
            p("--if-exists del-port sw1 p1").unwrap(),
            Request::DelPort { bridge: Some("sw1".into()), port: "p1".into(), if_exists: true }
        );
    }
}
