//! Writes man pages (weft.1, weftd.8) and shell completions (bash, zsh, fish) into a directory.
//!
//!     weft-docgen OUT_DIR PATH/TO/weft
//!
//! weft parses its own command line (ovs-vsctl style, with `-- set …` clauses), so the command tree here is a
//! description of it for documentation. To keep the two honest, every subcommand described here must appear in
//! the real `weft --help`, and every command that help lists must be described here; otherwise this fails.

use clap::{Arg, ArgAction, Command};
use std::path::PathBuf;

fn pos(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name).value_name(name).help(help).required(true)
}

fn opt_pos(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name).value_name(name).help(help)
}

fn flag(long: &'static str, help: &'static str) -> Arg {
    Arg::new(long).long(long).help(help).action(ArgAction::SetTrue)
}

fn sub(name: &'static str, about: &'static str, args: Vec<Arg>) -> Command {
    Command::new(name).about(about).args(args)
}

fn weft() -> Command {
    let br = || pos("BR", "bridge name");
    Command::new("weft")
        .version(env!("CARGO_PKG_VERSION"))
        .about("configure and inspect weftd, the weft overlay switch (reads like ovs-vsctl, ovs-ofctl and bridge fdb)")
        .arg(Arg::new("socket").long("socket").value_name("PATH").global(true).help(
            "weftd's control socket (else $WEFT_SOCKET, else /run/weft/weft.sock)",
        ))
        .arg(Arg::new("format").long("format").value_name("FORMAT").value_parser(["text", "json"]).global(true).help("output format"))
        .subcommands([
            sub("add-br", "create a bridge and its internal port (a TAP of the same name)", vec![br(), flag("may-exist", "no error if it exists")]),
            sub("del-br", "delete a bridge", vec![br(), flag("if-exists", "no error if it does not exist")]),
            sub("list-br", "list bridges", vec![]),
            sub("add-port", "add a port: an existing interface, or with -- set interface PORT type=tap|internal|vxlan|geneve|gre options:K=V …", vec![br(), pos("PORT", "port name"), opt_pos("SETTINGS", "tag=N, trunks=N,… and -- set interface|port clauses").num_args(0..)]),
            sub("del-port", "delete a port", vec![opt_pos("BR", "bridge"), pos("PORT", "port name")]),
            sub("list-ports", "list a bridge's ports", vec![br()]),
            sub("set", "set interface PORT K=V … | set port PORT tag=N|trunks=… | set bridge BR other_config:K=V", vec![pos("TABLE", "interface, port or bridge"), pos("NAME", "its name"), pos("SETTINGS", "KEY=VALUE").num_args(1..)]),
            sub("clear", "clear a column: port PORT tag|trunks, or a map column (Interface options, external_ids, Bridge other_config)", vec![pos("TABLE", "Interface, Port or Bridge"), pos("NAME", "its name"), pos("COLUMNS", "tag, trunks, options, external_ids, other_config").num_args(1..)]),
            sub("remove", "remove keys of a map column", vec![pos("TABLE", "Interface, Port or Bridge"), pos("NAME", "its name"), pos("COLUMN", "options, external_ids or other_config"), pos("KEYS", "keys to remove").num_args(1..)]),
            sub("show", "bridges, ports (ofport, MTU, options, VLAN)", vec![]),
            sub("dump-ports", "rx/tx packets and bytes, drops by reason", vec![br()]),
            sub("dump-drops", "only the drops, by port and reason", vec![br()]),
            sub("fdb", "fdb show|flush|stats BR; fdb add BR MAC PORT [dst IP] [vlan N]; fdb del BR MAC [vlan N]", vec![pos("ACTION", "show, flush, stats, add or del"), br(), opt_pos("ARGS", "MAC, PORT, dst IP, vlan N").num_args(0..)]),
            sub("add-flow", "add a flow (ovs-ofctl syntax)", vec![br(), pos("FLOW", "e.g. priority=100,ip,nw_dst=172.31.1.0/24,actions=output:1")]),
            sub("add-flows", "add the flows of a file (one per line) in one transaction", vec![br(), pos("FILE", "file, or - for standard input")]),
            sub("del-flows", "delete flows (all, or those a match selects)", vec![br(), opt_pos("FLOW", "match"), flag("strict", "same match and priority only")]),
            sub("mod-flows", "change the actions of the flows a match selects", vec![br(), pos("FLOW", "match and actions"), flag("strict", "same match and priority only")]),
            sub("dump-flows", "flows with counters, like ovs-ofctl", vec![br(), opt_pos("FLOW", "match")]),
            sub("set-controller", "OpenFlow 1.3: ptcp:PORT[:IP] to listen (127.0.0.1 unless IP is given), tcp:IP[:PORT] to connect; pssl:/ssl: over TLS", vec![br(), pos("TARGET", "ptcp:PORT[:IP], tcp:IP[:PORT], pssl:PORT[:IP] or ssl:IP[:PORT]")]),
            sub("set-ssl", "PEM files for OpenFlow over TLS: weftd's private key and certificate, and the CA peers must chain to", vec![pos("PRIVKEY", "private key"), pos("CERT", "certificate"), pos("CACERT", "CA certificate")]),
            sub("del-ssl", "forget the TLS files", vec![]),
            sub("get-ssl", "show the TLS files", vec![]),
            sub("del-controller", "remove the OpenFlow controller setting", vec![br()]),
            sub("trace", "what the bridge would do with a packet, without sending it", vec![br(), pos("FLOW", "a match with in_port="), Arg::new("packet").long("packet").value_name("HEX").help("the frame, in hex")]),
            sub("capture", "frames crossing a port of a running bridge", vec![br(), pos("PORT", "port name"), Arg::new("w").short('w').value_name("FILE").help("write pcap (- for standard output)"), Arg::new("c").short('c').value_name("N").help("stop after N frames"), flag("outer", "tunnel ports: with the outer headers"), Arg::new("V").short('V').action(ArgAction::SetTrue).help("a tree per packet")]),
            sub("decode", "dissect a pcap or pcapng file, like tshark", vec![pos("FILE", "capture file, or -"), Arg::new("V").short('V').action(ArgAction::SetTrue).help("a tree per packet"), Arg::new("c").short('c').value_name("N").help("stop after N packets"), Arg::new("decode-as").long("decode-as").value_name("RULE").help("udp.port==N,vxlan|geneve")]),
            sub("ipsec", "ipsec show [--keys]: IKE and ESP SAs (with --keys: Wireshark's esp_sa and ikev2 table lines); ipsec rekey [REMOTE] [--ike]", vec![pos("ACTION", "show or rekey"), opt_pos("REMOTE", "rekey: the peer's address (else every peer)"), flag("keys", "show: print the keys"), flag("ike", "rekey: the IKE SA instead of the child SAs")]),
            sub("vlog/set", "set weftd's log level", vec![pos("LEVEL", "off, error, warn, info, debug, trace")]),
            sub("vlog/list", "show weftd's log level", vec![]),
        ])
}

fn weftd() -> Command {
    Command::new("weftd")
        .version(env!("CARGO_PKG_VERSION"))
        .about("the weft overlay switch daemon: bridges, ports and tunnels in userspace; runs in the foreground")
        .args([
            Arg::new("db").long("db").value_name("PATH").help("configuration database (default /var/lib/weft/conf.db)"),
            Arg::new("socket").long("socket").value_name("PATH").help("control socket (default /run/weft/weft.sock)"),
            Arg::new("metrics").long("metrics").value_name("IP:PORT").help("serve Prometheus metrics on http://IP:PORT/metrics"),
            Arg::new("log-level").long("log-level").value_name("LEVEL").help("error, warn, info (default) or debug"),
        ])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut argv = std::env::args().skip(1);
    let out = PathBuf::from(argv.next().ok_or("usage: weft-docgen OUT_DIR PATH/TO/weft")?);
    let weft_bin = argv.next().ok_or("usage: weft-docgen OUT_DIR PATH/TO/weft")?;
    let help = String::from_utf8(std::process::Command::new(&weft_bin).arg("--help").output()?.stdout)?;
    let described: Vec<String> = weft().get_subcommands().map(|c| c.get_name().to_string()).collect();
    for name in &described {
        if !help.contains(name.as_str()) {
            return Err(format!("{name} is described for the man page but weft --help does not mention it").into());
        }
    }
    // Every command line of weft --help ("  name ...") must be described.
    for line in help.lines() {
        if line.starts_with("   ") {
            continue; // a continuation line
        }
        let Some(first) = line.strip_prefix("  ").and_then(|l| l.split_whitespace().next()) else { continue };
        if first.chars().next().is_some_and(|c| c.is_ascii_lowercase()) && first.contains(|c: char| c.is_ascii_lowercase())
            && !first.contains('=') && !first.ends_with(':') && !["all", "vxlan", "geneve", "gre"].contains(&first)
            && !described.iter().any(|d| d == first)
        {
            return Err(format!("weft --help lists {first:?}, which the man page does not describe").into());
        }
    }
    std::fs::create_dir_all(out.join("man"))?;
    std::fs::create_dir_all(out.join("completions"))?;
    for (cmd, file) in [(weft(), "weft.1"), (weftd(), "weftd.8")] {
        let cmd = if file.ends_with(".8") { cmd.display_name("weftd").name("weftd") } else { cmd };
        let mut buf = Vec::new();
        let man = if file.ends_with(".8") { clap_mangen::Man::new(cmd).section("8") } else { clap_mangen::Man::new(cmd) };
        man.render(&mut buf)?;
        std::fs::write(out.join("man").join(file), buf)?;
    }
    // One page per subcommand, as weft(1) refers to them (weft-add-flow(1), …).
    for sub in weft().get_subcommands() {
        let name = format!("weft-{}", sub.get_name().replace('/', "-"));
        let page = sub.clone().name(name.clone()).display_name(name.clone()).version(env!("CARGO_PKG_VERSION"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        std::fs::write(out.join("man").join(format!("{name}.1")), buf)?;
    }
    for (shell, file) in [
        (clap_complete::Shell::Bash, "weft.bash"),
        (clap_complete::Shell::Zsh, "_weft"),
        (clap_complete::Shell::Fish, "weft.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut weft(), "weft", &mut buf);
        std::fs::write(out.join("completions").join(file), buf)?;
    }
    println!("man pages and completions written to {}", out.display());
    Ok(())
}
