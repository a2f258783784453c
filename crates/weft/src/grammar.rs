//! weft's commands, declared once: names, arguments, the options each takes, and what it does. The parser
//! (`args.rs`) checks every command line against this table (argument counts, options that belong to the
//! command), and the same table prints `weft --help`, each command's own `--help`, the man page
//! (`weft man`) and the shell completions (`weft completion bash`).

/// Where a command is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Bridges,
    Flows,
    Inspection,
    Program,
}

impl Section {
    fn title(self) -> &'static str {
        match self {
            Section::Bridges => "bridges and ports",
            Section::Flows => "flows (ovs-ofctl syntax) and OpenFlow",
            Section::Inspection => "inspection",
            Section::Program => "this program",
        }
    }
}

/// One command.
pub struct Cmd {
    /// Its name (two words for `fdb show` and the like) and the other names it answers to.
    pub names: &'static [&'static str],
    /// Its arguments, as usage shows them.
    pub args: &'static str,
    /// How many arguments it takes (after the name; `usize::MAX`: no limit).
    pub min: usize,
    pub max: usize,
    /// The options it takes besides the global ones (`--socket`, `--format`, `--help`).
    pub flags: &'static [&'static str],
    pub section: Section,
    /// What it does (lines after the first are indented under it).
    pub about: &'static str,
}

impl Cmd {
    pub fn name(&self) -> &'static str {
        self.names[0]
    }

    fn usage(&self) -> String {
        let names = self.names.join(" | ");
        let flags: String = self
            .flags
            .iter()
            .filter(|f| !matches!(**f, "--may-exist" | "--if-exists" | "--strict"))
            .map(|f| match *f {
                "-w" => " [-w FILE|-]".to_string(),
                "-c" => " [-c N]".to_string(),
                "--decode-as" => " [--decode-as udp.port==N,vxlan|geneve]".to_string(),
                "--packet" => " [--packet HEX]".to_string(),
                f => format!(" [{f}]"),
            })
            .collect();
        let prefix: String = self
            .flags
            .iter()
            .filter(|f| matches!(**f, "--may-exist" | "--if-exists" | "--strict"))
            .map(|f| format!("[{f}] "))
            .collect();
        let sep = if self.args.is_empty() { "" } else { " " };
        format!("{prefix}{names}{sep}{}{flags}", self.args)
    }
}

/// Options every command takes.
pub const GLOBAL: &[&str] = &["--socket", "--format", "--help", "-h", "--version"];

use Section::*;

pub static COMMANDS: &[Cmd] = &[
    Cmd {
        names: &["add-br"],
        args: "BR",
        min: 1,
        max: 1,
        flags: &["--may-exist"],
        section: Bridges,
        about: "create bridge BR and its internal port BR (a TAP)",
    },
    Cmd {
        names: &["del-br"],
        args: "BR",
        min: 1,
        max: 1,
        flags: &["--if-exists"],
        section: Bridges,
        about: "delete bridge BR with its ports",
    },
    Cmd { names: &["list-br"], args: "", min: 0, max: 0, flags: &[], section: Bridges, about: "the bridges" },
    Cmd {
        names: &["add-port"],
        args: "BR PORT [tag=N|trunks=N,...] [-- set interface PORT type=T options:K=V ...] [-- set port PORT ...]",
        min: 2,
        max: usize::MAX,
        flags: &["--may-exist"],
        section: Bridges,
        about: "add a port; types: system (an existing interface, the default), tap, internal,\n\
                vxlan, geneve, gre, ipsec_gre (GRE with options:psk), patch (options:peer=PORT: the patch\n\
                port of another bridge; the two bridges are joined inside weftd)",
    },
    Cmd {
        names: &["del-port"],
        args: "[BR] PORT",
        min: 1,
        max: 2,
        flags: &["--if-exists"],
        section: Bridges,
        about: "delete a port (a TAP weft made goes with it)",
    },
    Cmd {
        names: &["list-ports"],
        args: "BR",
        min: 1,
        max: 1,
        flags: &[],
        section: Bridges,
        about: "the ports of bridge BR",
    },
    Cmd {
        names: &["set"],
        args: "TABLE NAME K=V ...",
        min: 3,
        max: usize::MAX,
        flags: &[],
        section: Bridges,
        about: "set columns: 'set interface PORT type=T options:K=V external_ids:K=V',\n\
                'set port PORT tag=N | trunks=N,...' (VLANs: tag makes an access port; trunks lists the\n\
                VLANs a trunk carries, default all, 0 = untagged; tunnels carry 802.1Q frames unchanged),\n\
                'set bridge BR other_config:mac-aging-time=SECONDS other_config:mac-table-size=N',\n\
                'set bridge BR protocols=OpenFlow10,OpenFlow13' (the OpenFlow versions its connections may\n\
                speak; weft speaks 1.0 and 1.3; 'clear bridge BR protocols': any),\n\
                'set bridge BR other_config:control-plane=etcd other_config:etcd-endpoints=URL[,URL...]\n\
                [other_config:etcd-ttl=SECONDS] [other_config:etcd-prefix=/weft/]',\n\
                'set bridge BR other_config:control-plane=evpn other_config:bgp-asn=N\n\
                other_config:bgp-router-id=IP other_config:bgp-peers=IP[,IP...] [other_config:bgp-hold-time=S]'\n\
                (remote_ip=flow tunnels take their remote VTEPs and MACs from etcd or from BGP EVPN route\n\
                reflectors; control-plane=none: back to one machine); table names in any case",
    },
    Cmd {
        names: &["remove"],
        args: "TABLE NAME COLUMN KEY...",
        min: 4,
        max: usize::MAX,
        flags: &[],
        section: Bridges,
        about: "remove keys of a map column (Interface options/external_ids, Port external_ids,\n\
                Bridge other_config/external_ids)",
    },
    Cmd {
        names: &["clear"],
        args: "TABLE NAME COLUMN...",
        min: 3,
        max: usize::MAX,
        flags: &[],
        section: Bridges,
        about: "empty a map column, or a port's tag or trunks ('clear port PORT tag trunks')",
    },
    Cmd {
        names: &["add-flow"],
        args: "BR FLOW",
        min: 2,
        max: usize::MAX,
        flags: &[],
        section: Flows,
        about:
            "add a flow (ovs-ofctl syntax), e.g. add-flow sw1 priority=100,ip,nw_dst=172.31.1.0/24,actions=output:1\n\
                matches: in_port dl_src dl_dst dl_type dl_vlan vlan_tci nw_src nw_dst nw_proto nw_tos tp_src\n\
                tp_dst ipv6_src ipv6_dst arp_spa arp_tpa arp_op icmp_type icmp_code tun_id tun_src tun_dst;\n\
                ip ip6 arp icmp icmp6 tcp udp tcp6 udp6\n\
                actions: output:N normal flood all in_port local controller drop mod_vlan_vid strip_vlan\n\
                push_vlan set_field:V->F set_tunnel resubmit(,T) goto_table:T (ports by number or name)",
    },
    Cmd {
        names: &["add-flows"],
        args: "BR FILE",
        min: 2,
        max: 2,
        flags: &[],
        section: Flows,
        about: "add the flows of FILE (one per line; - for standard input) in one transaction",
    },
    Cmd {
        names: &["del-flows"],
        args: "BR [FLOW]",
        min: 1,
        max: usize::MAX,
        flags: &["--strict"],
        section: Flows,
        about: "delete the flows matching FLOW (all without it)",
    },
    Cmd {
        names: &["mod-flows"],
        args: "BR FLOW",
        min: 2,
        max: usize::MAX,
        flags: &["--strict"],
        section: Flows,
        about: "change the actions of the flows matching FLOW",
    },
    Cmd {
        names: &["parse-flow"],
        args: "FLOW",
        min: 1,
        max: usize::MAX,
        flags: &[],
        section: Flows,
        about: "check FLOW and print it as weft keeps it (as ovs-ofctl parse-flow prints it; no daemon needed,\n\
                ports by number)",
    },
    Cmd {
        names: &["dump-flows"],
        args: "BR [FLOW]",
        min: 1,
        max: usize::MAX,
        flags: &[],
        section: Flows,
        about: "the flows with their counters",
    },
    Cmd {
        names: &["set-controller"],
        args: "BR TARGET...",
        min: 2,
        max: usize::MAX,
        flags: &[],
        section: Flows,
        about: "OpenFlow: TARGET is ptcp:PORT[:IP] (listen for ovs-ofctl and controllers), tcp:IP[:PORT]\n\
                (connect to a controller), pssl:PORT[:IP] or ssl:IP[:PORT] (the same over TLS, needs set-ssl);\n\
                several at once (Faucet and Gauge, a cluster), each connection with its role (ROLE_REQUEST:\n\
                equal, master, slave); ptcp without IP listens on 127.0.0.1 only (0.0.0.0 for all)",
    },
    Cmd {
        names: &["add-tlv-map"],
        args: "BR MAPPINGS",
        min: 2,
        max: 2,
        flags: &[],
        section: Flows,
        about: "map Geneve options to the tun_metadataN fields flows match and set, as ovs-ofctl add-tlv-map:\n\
                '{class=0xffff,type=0x80,len=4}->tun_metadata0[,...]' (4 to 16 bytes each, 32 in all)",
    },
    Cmd {
        names: &["del-tlv-map"],
        args: "BR [MAPPINGS]",
        min: 1,
        max: 2,
        flags: &[],
        section: Flows,
        about: "remove those mappings (by their tun_metadataN), or all; refused while a flow uses one",
    },
    Cmd {
        names: &["dump-tlv-map"],
        args: "BR",
        min: 1,
        max: 1,
        flags: &[],
        section: Flows,
        about: "the TLV map, as ovs-ofctl dump-tlv-map prints it",
    },
    Cmd {
        names: &["set-fail-mode"],
        args: "BR standalone|secure",
        min: 2,
        max: 2,
        flags: &[],
        section: Flows,
        about: "what BR does while none of its controllers (tcp:, ssl:) is connected: standalone (the default)\n\
                switches as a learning switch after 15 s without one; secure keeps to the flow tables",
    },
    Cmd {
        names: &["del-fail-mode"],
        args: "BR",
        min: 1,
        max: 1,
        flags: &[],
        section: Flows,
        about: "back to the default fail mode (standalone)",
    },
    Cmd {
        names: &["del-controller"],
        args: "BR",
        min: 1,
        max: 1,
        flags: &[],
        section: Flows,
        about: "stop the bridge's OpenFlow connections",
    },
    Cmd {
        names: &["set-ssl"],
        args: "PRIVKEY CERT CACERT",
        min: 3,
        max: 3,
        flags: &[],
        section: Flows,
        about: "PEM files for ssl/pssl: weftd's key and certificate, and the CA the peer's certificate\n\
                must chain to (both ends are checked, as in OVS)",
    },
    Cmd { names: &["del-ssl"], args: "", min: 0, max: 0, flags: &[], section: Flows, about: "forget the TLS files" },
    Cmd { names: &["get-ssl"], args: "", min: 0, max: 0, flags: &[], section: Flows, about: "the TLS files" },
    Cmd {
        names: &["show"],
        args: "",
        min: 0,
        max: 0,
        flags: &[],
        section: Inspection,
        about: "bridges, ports (with ofport, link state) and their options",
    },
    Cmd {
        names: &["dump-ports"],
        args: "BR",
        min: 1,
        max: 1,
        flags: &[],
        section: Inspection,
        about: "rx/tx packets and bytes, drops by reason",
    },
    Cmd {
        names: &["dump-drops"],
        args: "BR",
        min: 1,
        max: 1,
        flags: &[],
        section: Inspection,
        about: "only the drops, by port and reason (nothing when nothing was dropped)",
    },
    Cmd {
        names: &["trace"],
        args: "BR FLOW",
        min: 2,
        max: usize::MAX,
        flags: &["--packet"],
        section: Inspection,
        about: "what the bridge would do with a packet (flows matched, NORMAL's decision, VLAN, output\n\
                ports, tunnel remote/VNI/MTU), without sending it; FLOW is a match with in_port=, or\n\
                in_port=P with --packet HEX",
    },
    Cmd {
        names: &["capture"],
        args: "BR PORT",
        min: 2,
        max: 2,
        flags: &["-w", "-c", "--outer", "-V"],
        section: Inspection,
        about: "frames crossing PORT (both ways) as they are seen, printed like decode or written as pcap;\n\
                --outer: a tunnel's packets with outer headers",
    },
    Cmd {
        names: &["decode"],
        args: "FILE",
        min: 1,
        max: 1,
        flags: &["-V", "-c", "--decode-as", "-d"],
        section: Inspection,
        about: "dissect a pcap/pcapng file (Ethernet, Linux cooked, raw IP): Ethernet, 802.1Q/QinQ, ARP,\n\
                IPv4, IPv6, ICMP(v6), UDP, TCP, VXLAN, Geneve, GRE, ESP, and the inner frames; one line per\n\
                packet, a tree with -V, JSON lines with Wireshark's field names with --format json",
    },
    Cmd {
        names: &["fdb show"],
        args: "BR",
        min: 1,
        max: 1,
        flags: &[],
        section: Inspection,
        about: "the MAC table, with the remote VTEP of tunnel-learned MACs",
    },
    Cmd {
        names: &["fdb flush"],
        args: "BR",
        min: 1,
        max: 1,
        flags: &[],
        section: Inspection,
        about: "forget learned entries (static ones stay)",
    },
    Cmd {
        names: &["fdb stats"],
        args: "BR",
        min: 1,
        max: 1,
        flags: &[],
        section: Inspection,
        about: "entries, mac-table-size, learn misses (table full), MAC moves",
    },
    Cmd {
        names: &["fdb add"],
        args: "BR MAC PORT [dst IP] [vlan N]",
        min: 3,
        max: 7,
        flags: &[],
        section: Inspection,
        about: "a static entry: never ages, survives restarts",
    },
    Cmd {
        names: &["fdb del"],
        args: "BR MAC [vlan N]",
        min: 2,
        max: 4,
        flags: &[],
        section: Inspection,
        about: "remove a static entry",
    },
    Cmd {
        names: &["dpctl/dump-conntrack"],
        args: "[zone=N]",
        min: 0,
        max: 1,
        flags: &[],
        section: Inspection,
        about: "the tracked connections (of zone N), one a line as ovs-appctl dpctl/dump-conntrack prints them",
    },
    Cmd {
        names: &["dpctl/flush-conntrack"],
        args: "[zone=N]",
        min: 0,
        max: 1,
        flags: &[],
        section: Inspection,
        about: "forgets every tracked connection (of zone N)",
    },
    Cmd {
        names: &["dpctl/ct-stats-show"],
        args: "",
        min: 0,
        max: 0,
        flags: &[],
        section: Inspection,
        about: "connections tracked, by protocol; the limit; created, expired, invalid and refused (table full)",
    },
    Cmd {
        names: &["dpctl/ct-set-maxconns"],
        args: "N",
        min: 1,
        max: 1,
        flags: &[],
        section: Inspection,
        about: "at most N connections tracked in all (kept in the configuration; default 1000000)",
    },
    Cmd {
        names: &["dpctl/ct-get-maxconns"],
        args: "",
        min: 0,
        max: 0,
        flags: &[],
        section: Inspection,
        about: "the limit on tracked connections",
    },
    Cmd {
        names: &["dpctl/ct-set-limits"],
        args: "zone=N,limit=M...",
        min: 1,
        max: usize::MAX,
        flags: &[],
        section: Inspection,
        about: "at most M connections in zone N (kept in the configuration)",
    },
    Cmd {
        names: &["dpctl/ct-del-limits"],
        args: "zone=N[,M...]",
        min: 1,
        max: usize::MAX,
        flags: &[],
        section: Inspection,
        about: "zone N back to the table's limit only",
    },
    Cmd {
        names: &["dpctl/ct-get-limits"],
        args: "",
        min: 0,
        max: 0,
        flags: &[],
        section: Inspection,
        about: "each limited zone: its limit and how many connections it holds",
    },
    Cmd {
        names: &["ipsec show"],
        args: "",
        min: 0,
        max: 0,
        flags: &["--keys"],
        section: Inspection,
        about: "IKE and ESP SAs (SPIs, algorithms, packets/bytes, age, rekey time) and IPsec drops;\n\
                --keys adds the keys (Wireshark's esp_sa and ikev2 tables)",
    },
    Cmd {
        names: &["ipsec rekey"],
        args: "[REMOTE]",
        min: 0,
        max: 1,
        flags: &["--ike"],
        section: Inspection,
        about: "rekey the child SAs (or the IKE SA) now, with one remote or all",
    },
    Cmd {
        names: &["vlog/set", "vlog"],
        args: "[LEVEL]",
        min: 0,
        max: 1,
        flags: &[],
        section: Inspection,
        about: "weftd's log level (off, error, warn, info, debug, trace), changed while it runs",
    },
    Cmd {
        names: &["vlog/list"],
        args: "",
        min: 0,
        max: 0,
        flags: &[],
        section: Inspection,
        about: "weftd's log level",
    },
    Cmd {
        names: &["help"],
        args: "[COMMAND]",
        min: 0,
        max: 2,
        flags: &[],
        section: Program,
        about: "this help, or a command's (also: weft COMMAND --help)",
    },
    Cmd {
        names: &["man"],
        args: "[COMMAND]",
        min: 0,
        max: 2,
        flags: &[],
        section: Program,
        about: "the manual page, in troff (weft man | man -l -), or one command's (weft man add-flow)",
    },
    Cmd {
        names: &["completion"],
        args: "bash|zsh|fish",
        min: 1,
        max: 1,
        flags: &[],
        section: Program,
        about: "the shell's completion script (source <(weft completion bash))",
    },
];

/// What follows the commands in the help: options and tunnel options.
const TAIL: &str = "\
options: --may-exist (add-br, add-port), --if-exists (del-br, del-port), --format json (show, dump-ports,
fdb show, ...), --socket PATH (else $WEFT_SOCKET, else /run/weft/weft.sock); an option a command does not take
is an error
tunnel options (options:K=V):
  all      remote_ip=IP[,IP...] (required; vxlan/geneve: or a multicast group with dev=IFNAME), local_ip=IP,
           key=N (VNI, 24 bits; gre: 32-bit key, none if unset), proxy=true (answer ARP/ND locally),
           ttl=1..255|inherit, tos=0..255|inherit, df_default=true|false (false)
  vxlan    dst_port=PORT (4789)
  geneve   dst_port=PORT (6081), geneve_opts=CLASS:TYPE:HEXDATA[,...] (type >= 0x80: critical)
  gre      csum=true, seq=true
  ipsec    psk=SECRET (both ends: IKEv2 brings up ESP; nothing crosses in clear text), psk_file=PATH,
           ipsec_mode=transport|tunnel (transport), ipsec_encap=udp|esp (udp: ESP in UDP 4500; esp: IP
           protocol 50), ipsec_lifetime=SECONDS (3600; the IKE SA 4x), ipsec_rekey_bytes=N (0: none)
";

/// The command a command line names: `fdb show …` by its two words, the others by the first.
pub fn find(words: &[&str]) -> Option<&'static Cmd> {
    let two = (words.len() >= 2).then(|| format!("{} {}", words[0], words[1]));
    COMMANDS.iter().find(|c| c.names.iter().any(|n| Some(*n) == two.as_deref())).or_else(|| {
        let first = *words.first()?;
        COMMANDS.iter().find(|c| c.names.contains(&first))
    })
}

/// Every command whose name starts with `word` (`fdb` names five).
fn matching(word: &str) -> Vec<&'static Cmd> {
    COMMANDS.iter().filter(|c| c.names.iter().any(|n| *n == word || n.split(' ').next() == Some(word))).collect()
}

fn entry(c: &Cmd, out: &mut String) {
    let usage = c.usage();
    let mut about = c.about.lines();
    let first = about.next().unwrap_or_default();
    if usage.len() <= 34 {
        out.push_str(&format!("  {usage:<34}{first}\n"));
    } else {
        out.push_str(&format!("  {usage}\n{:36}{first}\n", ""));
    }
    for l in about {
        out.push_str(&format!("{:36}{}\n", "", l.trim_start()));
    }
}

/// `weft --help`.
pub fn help() -> String {
    let mut out = String::from(
        "weft: configure and inspect a running weftd\n\n\
         usage: weft [--socket PATH] [--format json] COMMAND [ARGS] [-- COMMAND [ARGS] ...]\n       \
         commands joined by -- are one transaction (ovs-vsctl style): all applied, or none\n",
    );
    for s in [Bridges, Flows, Inspection, Program] {
        out.push_str(&format!("\n{}:\n", s.title()));
        for c in COMMANDS.iter().filter(|c| c.section == s) {
            entry(c, &mut out);
        }
    }
    out.push('\n');
    out.push_str(TAIL);
    out
}

/// `weft COMMAND --help`: that command's usage (every `fdb …` command for `fdb`); `None` for no command.
pub fn help_for(word: &str) -> Option<String> {
    let cmds = matching(word);
    if cmds.is_empty() {
        return None;
    }
    let mut out = format!("usage: weft [--socket PATH] [--format json] {word} ...\n");
    for c in cmds {
        entry(c, &mut out);
    }
    Some(out)
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('-', "\\-")
}

/// `weft man COMMAND`: one command's page (weft-add-flow(1)); `None` for no such command.
pub fn man_page_for(words: &[&str]) -> Option<String> {
    let c = find(words)?;
    let page = format!("weft-{}", c.name().replace([' ', '/'], "-"));
    let about: Vec<&str> = c.about.lines().map(str::trim_start).collect();
    Some(format!(
        ".TH {} 1 \"\" \"weft\" \"weft manual\"\n.SH NAME\n{} \\- {}\n.SH SYNOPSIS\n.B weft\n{}\n.SH DESCRIPTION\n{}\n.SH SEE ALSO\n.BR weft (1)\n",
        page.to_uppercase(),
        esc(&page),
        esc(about.first().copied().unwrap_or_default()),
        esc(&c.usage()),
        esc(&about.join(" ")),
    ))
}

/// `weft man`: the manual page, in troff.
pub fn man_page() -> String {
    let mut out = String::from(
        ".TH WEFT 1 \"\" \"weft\" \"weft manual\"\n.SH NAME\nweft \\- configure and inspect a running weftd\n",
    );
    out.push_str(".SH SYNOPSIS\n.B weft\n[\\fB\\-\\-socket\\fR \\fIPATH\\fR] [\\fB\\-\\-format json\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR] [\\fB\\-\\-\\fR \\fICOMMAND\\fR ...]\n");
    out.push_str(".SH DESCRIPTION\nweft talks to weftd over its control socket. Commands joined by \\fB\\-\\-\\fR are one transaction, as in ovs\\-vsctl: all applied, or none. Errors go to standard error and the exit status is not 0.\n");
    for s in [Bridges, Flows, Inspection, Program] {
        out.push_str(&format!(".SH {}\n", s.title().to_uppercase()));
        for c in COMMANDS.iter().filter(|c| c.section == s) {
            out.push_str(&format!(".TP\n.B {}\n", esc(&c.usage())));
            let about: Vec<&str> = c.about.lines().map(str::trim_start).collect();
            out.push_str(&esc(&about.join(" ")));
            out.push('\n');
        }
    }
    out.push_str(".SH OPTIONS\n.nf\n");
    out.push_str(&esc(TAIL));
    out.push_str(".fi\n.SH SEE ALSO\n.BR weftd (8), ovs\\-vsctl (8), ovs\\-ofctl (8)\n");
    out
}

/// `weft completion bash`: completes command names (and `fdb`'s and `ipsec`'s second words) and the
/// options each command takes.
pub fn bash_completion() -> String {
    let firsts = first_words();
    let mut out = String::from("# bash completion for weft (generated by `weft completion bash`)\n_weft() {\n");
    out.push_str("  local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]} words\n");
    out.push_str("  if [ \"$COMP_CWORD\" -eq 1 ]; then\n");
    out.push_str(&format!("    words=\"{} --socket --format --help --version\"\n", firsts.join(" ")));
    out.push_str("  else\n    case \"$cmd\" in\n");
    let mut seen: Vec<&str> = Vec::new();
    for c in COMMANDS {
        let first = c.names[0].split(' ').next().unwrap_or_default();
        if seen.contains(&first) {
            continue;
        }
        seen.push(first);
        let group: Vec<&Cmd> = matching(first);
        let subs: Vec<&str> = group.iter().filter_map(|c| c.names[0].split_once(' ').map(|(_, s)| s)).collect();
        let mut flags: Vec<&str> = group.iter().flat_map(|c| c.flags.iter().copied()).collect();
        flags.sort_unstable();
        flags.dedup();
        let names = group.iter().flat_map(|c| c.names.iter()).filter(|n| !n.contains(' ')).copied().collect::<Vec<_>>();
        let pattern = if names.is_empty() { first.to_string() } else { names.join("|") };
        out.push_str(&format!("      {pattern}) words=\"{} {} --help\" ;;\n", subs.join(" "), flags.join(" ")));
    }
    out.push_str("      *) words=\"--help\" ;;\n    esac\n  fi\n");
    out.push_str("  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n}\ncomplete -o default -F _weft weft\n");
    out
}

/// The first words of the commands (`fdb` once), in table order.
fn first_words() -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for c in COMMANDS {
        for n in c.names {
            let w = n.split(' ').next().unwrap_or(n);
            if !out.contains(&w) {
                out.push(w);
            }
        }
    }
    out
}

/// `weft completion zsh`.
pub fn zsh_completion() -> String {
    let mut out =
        String::from("#compdef weft\n# zsh completion for weft (generated by `weft completion zsh`)\n_weft() {\n");
    out.push_str("  if (( CURRENT == 2 )); then\n    local -a cmds\n    cmds=(\n");
    for w in first_words() {
        let about = matching(w).first().map_or("", |c| c.about.lines().next().unwrap_or_default());
        out.push_str(&format!("      '{}:{}'\n", w.replace(':', "\\:"), about.replace('\'', "").replace(':', " ")));
    }
    out.push_str("    )\n    _describe 'command' cmds\n  else\n    case ${words[2]} in\n");
    for w in first_words() {
        let group = matching(w);
        let subs: Vec<&str> = group.iter().filter_map(|c| c.names[0].split_once(' ').map(|(_, s)| s)).collect();
        let mut flags: Vec<&str> = group.iter().flat_map(|c| c.flags.iter().copied()).collect();
        flags.sort_unstable();
        flags.dedup();
        out.push_str(&format!("      {w}) compadd -- {} {} --help ;;\n", subs.join(" "), flags.join(" ")));
    }
    out.push_str("    esac\n    _files\n  fi\n}\n_weft \"$@\"\n");
    out
}

/// `weft completion fish`.
pub fn fish_completion() -> String {
    let mut out = String::from("# fish completion for weft (generated by `weft completion fish`)\n");
    out.push_str(
        "complete -c weft -l socket -r -d 'weftd control socket'\ncomplete -c weft -l format -x -a 'text json'\n",
    );
    for w in first_words() {
        let group = matching(w);
        let about = group.first().map_or("", |c| c.about.lines().next().unwrap_or_default()).replace('\'', "");
        out.push_str(&format!("complete -c weft -n __fish_use_subcommand -f -a {w} -d '{about}'\n"));
        for c in &group {
            if let Some((_, sub)) = c.names[0].split_once(' ') {
                let a = c.about.lines().next().unwrap_or_default().replace('\'', "");
                out.push_str(&format!("complete -c weft -n '__fish_seen_subcommand_from {w}' -f -a {sub} -d '{a}'\n"));
            }
            for f in c.flags {
                let (long, short) = match f.strip_prefix("--") {
                    Some(l) => (format!("-l {l}"), String::new()),
                    None => (String::new(), format!("-s {}", f.trim_start_matches('-'))),
                };
                out.push_str(&format!("complete -c weft -n '__fish_seen_subcommand_from {w}' {long}{short}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_found_by_its_names() {
        for c in COMMANDS {
            for n in c.names {
                let words: Vec<&str> = n.split(' ').collect();
                assert_eq!(find(&words).unwrap().name(), c.name(), "{n}");
            }
            assert!(c.min <= c.max, "{}", c.name());
        }
        assert!(find(&["frobnicate"]).is_none());
        assert_eq!(find(&["fdb", "add", "x"]).unwrap().name(), "fdb add");
    }

    #[test]
    fn help_man_and_completion_come_from_the_table() {
        let h = help();
        for c in COMMANDS {
            assert!(h.contains(c.name()), "{} missing from the help", c.name());
        }
        let m = man_page();
        assert!(m.starts_with(".TH WEFT 1") && m.contains("add\\-port BR PORT"), "{m}");
        let b = bash_completion();
        assert!(b.contains("add-port) words=\" --may-exist --help\""), "{b}");
        assert!(b.contains("fdb) words=\"show flush stats add del  --help\"") || b.contains("fdb) words="), "{b}");
        assert!(help_for("fdb").unwrap().matches("fdb ").count() >= 5);
    }
}
