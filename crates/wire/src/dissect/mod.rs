//! Dissection for `weft decode`: a packet from a capture file, layer by layer, down through tunnels to the
//! innermost frame, with each field named as Wireshark names it (`eth.src`, `ip.dst`, `vxlan.vni`, …) and its
//! value written as `tshark -T fields` writes it.
//!
//! [`dissect`] fills a reusable [`Dissection`] (no allocation once its layer list has grown); the caller
//! formats it. A packet that breaks off is kept up to the layer where it breaks, which is named with the error.

use crate::ethernet::EtherType;
use crate::ipv4::Protocol;
use crate::pcap::{LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW};
use crate::{arp, esp, geneve, gre, icmpv4, icmpv6, ipv4, ipv6, tcp, udp, vlan, vxlan, Error, EthernetAddress};
use std::fmt;

mod walk;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Raw IPv4 and IPv6 link types (besides LINKTYPE_RAW).
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;

/// A tunnel protocol a UDP port can be decoded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpTunnel {
    Vxlan,
    Geneve,
}

/// `--decode-as udp.port==N,vxlan|geneve`, on top of the defaults (4789 VXLAN, 6081 Geneve, 4500 ESP).
#[derive(Debug, Clone, Default)]
pub struct DecodeAs {
    pub udp: Vec<(u16, UdpTunnel)>,
}

impl DecodeAs {
    /// Parses one `udp.port==N,vxlan` (or `geneve`) rule, as tshark's `-d` takes it.
    pub fn add(&mut self, rule: &str) -> Result<(), String> {
        let (sel, proto) = rule.split_once(',').ok_or_else(|| format!("{rule:?} is not udp.port==N,PROTOCOL"))?;
        let port = sel
            .strip_prefix("udp.port==")
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| format!("{sel:?}: expected udp.port==N with N a UDP port"))?;
        let t = match proto {
            "vxlan" => UdpTunnel::Vxlan,
            "geneve" => UdpTunnel::Geneve,
            other => return Err(format!("cannot decode as {other:?} (known: vxlan, geneve)")),
        };
        self.udp.retain(|(p, _)| *p != port);
        self.udp.push((port, t));
        Ok(())
    }

    fn udp_tunnel(&self, src: u16, dst: u16) -> Option<UdpTunnel> {
        for &(p, t) in &self.udp {
            if p == src || p == dst {
                return Some(t);
            }
        }
        match (src, dst) {
            (_, vxlan::PORT) | (vxlan::PORT, _) => Some(UdpTunnel::Vxlan),
            (_, geneve::PORT) | (geneve::PORT, _) => Some(UdpTunnel::Geneve),
            _ => None,
        }
    }
}

/// A field value, displayed as `tshark -T fields` displays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Dec(u64),
    /// A number in hex with this many digits.
    Hex(u64, u8),
    Bool(bool),
    Mac(EthernetAddress),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    /// Bytes as colon-separated hex.
    Bytes(&'a [u8]),
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Dec(v) => write!(f, "{v}"),
            Value::Hex(v, w) => write!(f, "0x{v:0w$x}", w = usize::from(w)),
            Value::Bool(b) => f.write_str(if b { "1" } else { "0" }),
            Value::Mac(m) => write!(f, "{m}"),
            Value::V4(a) => write!(f, "{a}"),
            Value::V6(a) => write!(f, "{a}"),
            Value::Bytes(b) => {
                for (i, x) in b.iter().enumerate() {
                    if i > 0 {
                        f.write_str(":")?;
                    }
                    write!(f, "{x:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl Value<'_> {
    /// Appends the value to `out` as [`Display`](fmt::Display) would, without the formatting machinery
    /// (numbers and addresses are most of what `weft decode --format json` writes).
    pub fn push_to(&self, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        fn dec(out: &mut String, mut v: u64) {
            let mut buf = [0u8; 20];
            let mut i = buf.len();
            loop {
                i -= 1;
                buf[i] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            out.extend(buf[i..].iter().map(|&b| b as char));
        }
        match *self {
            Value::Dec(v) => dec(out, v),
            Value::Hex(v, w) => {
                out.push_str("0x");
                let digits = (16 - (v.leading_zeros() / 4) as usize).max(usize::from(w)).max(1);
                for k in (0..digits).rev() {
                    out.push(HEX[((v >> (k * 4)) & 0xf) as usize] as char);
                }
            }
            Value::Bool(b) => out.push(if b { '1' } else { '0' }),
            Value::Mac(m) => {
                for (i, b) in m.0.iter().enumerate() {
                    if i > 0 {
                        out.push(':');
                    }
                    out.push(HEX[usize::from(b >> 4)] as char);
                    out.push(HEX[usize::from(b & 0xf)] as char);
                }
            }
            Value::V4(a) => {
                for (i, b) in a.octets().iter().enumerate() {
                    if i > 0 {
                        out.push('.');
                    }
                    dec(out, u64::from(*b));
                }
            }
            Value::V6(_) | Value::Bytes(_) => {
                use fmt::Write;
                let _ = write!(out, "{self}");
            }
        }
    }
}

/// One protocol layer of a packet, with what weft read of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer<'a> {
    /// Linux "cooked" capture header (v1 or v2).
    Sll {
        version: u8,
        pkttype: u16,
        hatype: u16,
        addr: &'a [u8],
        protocol: u16,
    },
    Eth {
        dst: EthernetAddress,
        src: EthernetAddress,
        ethertype: u16,
    },
    /// One 802.1Q or 802.1ad tag (its TPID is the previous layer's type).
    Vlan {
        tpid: u16,
        pcp: u8,
        dei: bool,
        vid: u16,
        ethertype: u16,
    },
    Arp {
        op: u16,
        sha: EthernetAddress,
        spa: Ipv4Addr,
        tha: EthernetAddress,
        tpa: Ipv4Addr,
    },
    Ipv4 {
        hdr_len: u8,
        dsfield: u8,
        len: u16,
        id: u16,
        flags: u8,
        /// In 8-byte units, as on the wire (and as Wireshark's field holds it).
        frag_offset: u16,
        ttl: u8,
        proto: u8,
        checksum: u16,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    },
    Ipv6 {
        tclass: u8,
        flow: u32,
        plen: u16,
        nxt: u8,
        hlim: u8,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        /// Extension headers before the upper layer, as (type, length in bytes), up to 4 listed.
        ext: [(u8, u16); 4],
        ext_count: u8,
    },
    Icmp {
        kind: u8,
        code: u8,
        checksum: u16,
        ident: Option<(u16, u16)>,
        mtu: Option<u16>,
        ttl: u8,
    },
    Icmpv6 {
        kind: u8,
        code: u8,
        checksum: u16,
        target: Option<Ipv6Addr>,
        mtu: Option<u32>,
        echo: Option<(u16, u16)>,
    },
    Udp {
        sport: u16,
        dport: u16,
        len: u16,
        checksum: u16,
    },
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        hdr_len: u8,
        flags: u16,
        window: u16,
        checksum: u16,
        payload: usize,
        /// Quoted in an ICMP error: Wireshark then shows the sequence number as it is and no segment length.
        quoted: bool,
    },
    Vxlan {
        flags: u16,
        vni: u32,
    },
    Geneve {
        version: u8,
        opt_len: u8,
        oam: bool,
        critical: bool,
        proto: u16,
        vni: u32,
        options: &'a [u8],
    },
    Gre {
        flags: u16,
        proto: u16,
        checksum: Option<u16>,
        key: Option<u32>,
        seq: Option<u32>,
    },
    Esp {
        spi: u32,
        seq: u32,
    },
    /// Bytes weft does not dissect further.
    Data {
        len: usize,
    },
}

impl<'a> Layer<'a> {
    /// The protocol's filter name in Wireshark.
    pub fn name(&self) -> &'static str {
        match self {
            Layer::Sll { .. } => "sll",
            Layer::Eth { .. } => "eth",
            Layer::Vlan { tpid: EtherType::QINQ, .. } => "ieee8021ad",
            Layer::Vlan { .. } => "vlan",
            Layer::Arp { .. } => "arp",
            Layer::Ipv4 { .. } => "ip",
            Layer::Ipv6 { .. } => "ipv6",
            Layer::Icmp { .. } => "icmp",
            Layer::Icmpv6 { .. } => "icmpv6",
            Layer::Udp { .. } => "udp",
            Layer::Tcp { .. } => "tcp",
            Layer::Vxlan { .. } => "vxlan",
            Layer::Geneve { .. } => "geneve",
            Layer::Gre { .. } => "gre",
            Layer::Esp { .. } => "esp",
            Layer::Data { .. } => "data",
        }
    }

    /// The protocol column as Wireshark shows it.
    pub fn protocol_column(&self) -> &'static str {
        match self {
            Layer::Sll { .. } => "SLL",
            Layer::Eth { .. } => "Ethernet",
            Layer::Vlan { .. } => "802.1Q",
            Layer::Arp { .. } => "ARP",
            Layer::Ipv4 { .. } => "IPv4",
            Layer::Ipv6 { .. } => "IPv6",
            Layer::Icmp { .. } => "ICMP",
            Layer::Icmpv6 { .. } => "ICMPv6",
            Layer::Udp { .. } => "UDP",
            Layer::Tcp { .. } => "TCP",
            Layer::Vxlan { .. } => "VXLAN",
            Layer::Geneve { .. } => "Geneve",
            Layer::Gre { .. } => "GRE",
            Layer::Esp { .. } => "ESP",
            Layer::Data { .. } => "Data",
        }
    }

    /// Calls `f` with each field's Wireshark name and value, in header order.
    pub fn fields(&self, f: &mut dyn FnMut(&'static str, Value<'a>)) {
        use Value::*;
        match *self {
            Layer::Sll { version, pkttype, hatype, addr, protocol } => {
                if version == 1 {
                    f("sll.pkttype", Dec(pkttype.into()));
                    f("sll.hatype", Dec(hatype.into()));
                    f("sll.halen", Dec(addr.len() as u64));
                    f("sll.etype", Hex(protocol.into(), 4));
                } else {
                    f("sll.etype", Hex(protocol.into(), 4));
                    f("sll.hatype", Dec(hatype.into()));
                    f("sll.pkttype", Dec(pkttype.into()));
                    f("sll.halen", Dec(addr.len() as u64));
                }
                if addr.len() == 6 {
                    f("sll.src.eth", Mac(EthernetAddress::from_bytes(addr)));
                }
            }
            Layer::Eth { dst, src, ethertype } => {
                f("eth.dst", Mac(dst));
                f("eth.src", Mac(src));
                f("eth.type", Hex(ethertype.into(), 4));
            }
            Layer::Vlan { tpid: EtherType::QINQ, pcp, dei, vid, .. } => {
                f("ieee8021ad.priority", Dec(pcp.into()));
                f("ieee8021ad.dei", Bool(dei));
                f("ieee8021ad.id", Dec(vid.into()));
            }
            Layer::Vlan { pcp, dei, vid, ethertype, .. } => {
                f("vlan.priority", Dec(pcp.into()));
                f("vlan.dei", Bool(dei));
                f("vlan.id", Dec(vid.into()));
                f("vlan.etype", Hex(ethertype.into(), 4));
            }
            Layer::Arp { op, sha, spa, tha, tpa } => {
                f("arp.opcode", Dec(op.into()));
                f("arp.src.hw_mac", Mac(sha));
                f("arp.src.proto_ipv4", V4(spa));
                f("arp.dst.hw_mac", Mac(tha));
                f("arp.dst.proto_ipv4", V4(tpa));
            }
            Layer::Ipv4 { hdr_len, dsfield, len, id, flags, frag_offset, ttl, proto, checksum, src, dst } => {
                f("ip.version", Dec(4));
                f("ip.hdr_len", Dec(hdr_len.into()));
                f("ip.dsfield", Hex(dsfield.into(), 2));
                f("ip.len", Dec(len.into()));
                f("ip.id", Hex(id.into(), 4));
                f("ip.flags", Hex(flags.into(), 2));
                f("ip.flags.df", Bool(flags & 0x02 != 0));
                f("ip.flags.mf", Bool(flags & 0x01 != 0));
                f("ip.frag_offset", Dec(frag_offset.into()));
                f("ip.ttl", Dec(ttl.into()));
                f("ip.proto", Dec(proto.into()));
                f("ip.checksum", Hex(checksum.into(), 4));
                f("ip.src", V4(src));
                f("ip.dst", V4(dst));
            }
            Layer::Ipv6 { tclass, flow, plen, nxt, hlim, src, dst, .. } => {
                // Wireshark's IPv6 dissector shows the version under both names.
                f("ip.version", Dec(6));
                f("ipv6.version", Dec(6));
                f("ipv6.tclass", Hex(tclass.into(), 8));
                f("ipv6.flow", Hex(flow.into(), 6));
                f("ipv6.plen", Dec(plen.into()));
                f("ipv6.nxt", Dec(nxt.into()));
                f("ipv6.hlim", Dec(hlim.into()));
                f("ipv6.src", V6(src));
                f("ipv6.dst", V6(dst));
            }
            Layer::Icmp { kind, code, checksum, ident, mtu, .. } => {
                f("icmp.type", Dec(kind.into()));
                f("icmp.code", Dec(code.into()));
                f("icmp.checksum", Hex(checksum.into(), 4));
                if let Some((id, seq)) = ident {
                    f("icmp.ident", Dec(id.into()));
                    f("icmp.seq", Dec(seq.into()));
                }
                if let Some(m) = mtu {
                    f("icmp.mtu", Dec(m.into()));
                }
            }
            Layer::Icmpv6 { kind, code, checksum, target, mtu, echo } => {
                f("icmpv6.type", Dec(kind.into()));
                f("icmpv6.code", Dec(code.into()));
                f("icmpv6.checksum", Hex(checksum.into(), 4));
                if let Some(m) = mtu {
                    f("icmpv6.mtu", Dec(m.into()));
                }
                if let Some((id, seq)) = echo {
                    f("icmpv6.echo.identifier", Hex(id.into(), 4));
                    f("icmpv6.echo.sequence_number", Dec(seq.into()));
                }
                match (kind, target) {
                    (icmpv6::TYPE_NEIGHBOR_SOLICIT, Some(t)) => f("icmpv6.nd.ns.target_address", V6(t)),
                    (icmpv6::TYPE_NEIGHBOR_ADVERT, Some(t)) => f("icmpv6.nd.na.target_address", V6(t)),
                    _ => {}
                }
            }
            Layer::Udp { sport, dport, len, checksum } => {
                f("udp.srcport", Dec(sport.into()));
                f("udp.dstport", Dec(dport.into()));
                f("udp.length", Dec(len.into()));
                f("udp.checksum", Hex(checksum.into(), 4));
            }
            Layer::Tcp { sport, dport, seq, ack, hdr_len, flags, window, checksum, payload, quoted } => {
                f("tcp.srcport", Dec(sport.into()));
                f("tcp.dstport", Dec(dport.into()));
                f(if quoted { "tcp.seq" } else { "tcp.seq_raw" }, Dec(seq.into()));
                f("tcp.ack_raw", Dec(ack.into()));
                f("tcp.hdr_len", Dec(hdr_len.into()));
                f("tcp.flags", Hex(flags.into(), 4));
                f("tcp.window_size_value", Dec(window.into()));
                f("tcp.checksum", Hex(checksum.into(), 4));
                if !quoted {
                    f("tcp.len", Dec(payload as u64));
                }
            }
            Layer::Vxlan { flags, vni } => {
                f("vxlan.flags", Hex(flags.into(), 4));
                f("vxlan.vni", Dec(vni.into()));
            }
            Layer::Geneve { version, opt_len, oam, critical, proto, vni, options } => {
                f("geneve.version", Dec(version.into()));
                f("geneve.flags.oam", Bool(oam));
                f("geneve.flags.critical", Bool(critical));
                f("geneve.proto_type", Hex(proto.into(), 4));
                f("geneve.vni", Hex(vni.into(), 6));
                // Wireshark names the options area's length (Opt Len, in bytes) like each option's.
                if opt_len > 0 {
                    f("geneve.option.length", Dec(u64::from(opt_len) * 4));
                }
                let mut rest = options;
                while rest.len() >= 4 {
                    let len = 4 + usize::from(rest[3] & 0x1f) * 4;
                    if len > rest.len() {
                        break;
                    }
                    f("geneve.option.class", Hex(u16::from_be_bytes([rest[0], rest[1]]).into(), 4));
                    f("geneve.option.type", Hex(rest[2].into(), 2));
                    f("geneve.option.type.critical", Bool(rest[2] & geneve::TYPE_CRITICAL != 0));
                    f("geneve.option.length", Dec(len as u64));
                    rest = &rest[len..];
                }
            }
            Layer::Gre { flags, proto, checksum, key, seq } => {
                f("gre.flags_and_version", Hex(flags.into(), 4));
                f("gre.flags.checksum", Bool(flags & gre::FLAG_CSUM != 0));
                f("gre.flags.key", Bool(flags & gre::FLAG_KEY != 0));
                f("gre.flags.sequence_number", Bool(flags & gre::FLAG_SEQ != 0));
                f("gre.proto", Hex(proto.into(), 4));
                if let Some(c) = checksum {
                    f("gre.checksum", Hex(c.into(), 4));
                }
                if let Some(k) = key {
                    f("gre.key", Hex(k.into(), 8));
                }
                if let Some(s) = seq {
                    f("gre.sequence_number", Dec(s.into()));
                }
            }
            Layer::Esp { spi, seq } => {
                f("esp.spi", Hex(spi.into(), 8));
                f("esp.sequence", Dec(seq.into()));
            }
            Layer::Data { len } => f("data.len", Dec(len as u64)),
        }
    }

    /// The heading of this layer in the `-V` tree, as Wireshark words it.
    pub fn title(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        match *self {
            Layer::Sll { version, .. } => write!(out, "Linux cooked capture v{version}"),
            Layer::Eth { dst, src, .. } => write!(out, "Ethernet II, Src: {src}, Dst: {dst}"),
            Layer::Vlan { pcp, vid, tpid, .. } => {
                let kind = if tpid == EtherType::QINQ { "802.1ad" } else { "802.1Q" };
                write!(out, "{kind} Virtual LAN, PRI: {pcp}, ID: {vid}")
            }
            Layer::Arp { op, .. } => {
                write!(out, "Address Resolution Protocol ({})", if op == arp::OP_REPLY { "reply" } else { "request" })
            }
            Layer::Ipv4 { src, dst, .. } => write!(out, "Internet Protocol Version 4, Src: {src}, Dst: {dst}"),
            Layer::Ipv6 { src, dst, .. } => write!(out, "Internet Protocol Version 6, Src: {src}, Dst: {dst}"),
            Layer::Icmp { .. } => write!(out, "Internet Control Message Protocol"),
            Layer::Icmpv6 { .. } => write!(out, "Internet Control Message Protocol v6"),
            Layer::Udp { sport, dport, .. } => {
                write!(out, "User Datagram Protocol, Src Port: {sport}, Dst Port: {dport}")
            }
            Layer::Tcp { sport, dport, seq, payload, .. } => write!(
                out,
                "Transmission Control Protocol, Src Port: {sport}, Dst Port: {dport}, Seq: {seq}, Len: {payload}"
            ),
            Layer::Vxlan { .. } => write!(out, "Virtual eXtensible Local Area Network"),
            Layer::Geneve { .. } => write!(out, "Generic Network Virtualization Encapsulation"),
            Layer::Gre { proto, .. } => write!(out, "Generic Routing Encapsulation ({})", ethertype_name(proto)),
            Layer::Esp { .. } => write!(out, "Encapsulating Security Payload"),
            Layer::Data { len } => write!(out, "Data ({len} bytes)"),
        }
    }
}

fn ethertype_name(t: u16) -> &'static str {
    match t {
        EtherType::IPV4 => "IP",
        EtherType::IPV6 => "IPv6",
        EtherType::ARP => "ARP",
        EtherType::TEB => "Transparent Ethernet bridging",
        EtherType::VLAN => "802.1Q Virtual LAN",
        _ => "unknown",
    }
}

/// Where dissection stopped short: the layer and what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    pub layer: &'static str,
    pub error: Error,
}

/// The layers of one packet. Reuse one across packets: clearing keeps its memory.
#[derive(Debug, Default)]
pub struct Dissection<'a> {
    pub layers: Vec<Layer<'a>>,
    pub malformed: Option<Malformed>,
    /// Dissecting the packet an ICMP error quotes.
    quoted: bool,
}

/// Empties `v` and returns its memory as a vector of `B` (here: the same type under another lifetime, so the
/// allocation is reused in place; otherwise a new, empty vector).
// filter_map changes the element type, which is the point; clippy sees only the filter.
#[allow(clippy::unnecessary_filter_map)]
pub fn reuse<A, B>(mut v: Vec<A>) -> Vec<B> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// Deepest nesting followed (tunnels in tunnels, tags in tags).
const MAX_LAYERS: usize = 32;

impl<'a> Dissection<'a> {
    pub fn clear(&mut self) {
        self.layers.clear();
        self.malformed = None;
        self.quoted = false;
    }

    /// Forgets the packet this dissection borrows, keeping the memory for the next packet (which lives
    /// in the same reused read buffer, under a new borrow).
    pub fn recycle<'b>(self) -> Dissection<'b> {
        Dissection { layers: reuse(self.layers), malformed: None, quoted: false }
    }

    fn push(&mut self, l: Layer<'a>) -> bool {
        if self.layers.len() >= MAX_LAYERS {
            let error = Error::Malformed { layer: "packet", what: "too many layers" };
            self.malformed = Some(Malformed { layer: l.name(), error });
            return false;
        }
        self.layers.push(l);
        true
    }

    fn fail(&mut self, layer: &'static str, error: Error) {
        self.malformed = Some(Malformed { layer, error });
    }

    /// The innermost layer with network addresses, for the source and destination columns.
    pub fn addresses(&self) -> Option<(String, String)> {
        self.layers.iter().rev().find_map(|l| match *l {
            Layer::Ipv4 { src, dst, .. } => Some((src.to_string(), dst.to_string())),
            Layer::Ipv6 { src, dst, .. } => Some((src.to_string(), dst.to_string())),
            Layer::Eth { src, dst, .. } => Some((src.to_string(), dst.to_string())),
            _ => None,
        })
    }

    /// The protocol column: the innermost layer other than raw data.
    pub fn protocol(&self) -> &'static str {
        self.layers.iter().rev().find(|l| !matches!(l, Layer::Data { .. })).map_or("", |l| l.protocol_column())
    }

    /// The info column for the innermost layer that has one.
    pub fn info(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        let n = self.layers.len();
        for i in (0..n).rev() {
            let l = &self.layers[i];
            let ip_ttl = self.layers[..i].iter().rev().find_map(|l| match *l {
                Layer::Ipv4 { ttl, .. } => Some(ttl),
                Layer::Ipv6 { hlim, .. } => Some(hlim),
                _ => None,
            });
            match *l {
                Layer::Arp { op: arp::OP_REQUEST, spa, tpa, .. } => return write!(out, "Who has {tpa}? Tell {spa}"),
                Layer::Arp { op: arp::OP_REPLY, spa, sha, .. } => return write!(out, "{spa} is at {sha}"),
                Layer::Arp { op, .. } => return write!(out, "ARP opcode {op}"),
                Layer::Icmp { kind, code, ident, mtu, .. } => {
                    return match (kind, ident) {
                        (icmpv4::TYPE_ECHO_REQUEST | icmpv4::TYPE_ECHO_REPLY, Some((id, seq))) => write!(
                            out,
                            "Echo (ping) {:<9}id=0x{id:04x}, seq={seq}/{}, ttl={}",
                            if kind == icmpv4::TYPE_ECHO_REQUEST { "request" } else { "reply" },
                            seq.swap_bytes(),
                            ip_ttl.unwrap_or(0)
                        ),
                        (icmpv4::TYPE_DEST_UNREACHABLE, _) if code == icmpv4::CODE_FRAG_NEEDED => {
                            write!(out, "Destination unreachable (Fragmentation needed), MTU {}", mtu.unwrap_or(0))
                        }
                        _ => write!(out, "ICMP type {kind} code {code}"),
                    };
                }
                Layer::Icmpv6 { kind, target, mtu, echo, .. } => {
                    return match kind {
                        icmpv6::TYPE_NEIGHBOR_SOLICIT => {
                            write!(out, "Neighbor Solicitation for {}", target.unwrap_or(Ipv6Addr::UNSPECIFIED))
                        }
                        icmpv6::TYPE_NEIGHBOR_ADVERT => {
                            write!(out, "Neighbor Advertisement {}", target.unwrap_or(Ipv6Addr::UNSPECIFIED))
                        }
                        icmpv6::TYPE_ROUTER_SOLICIT => write!(out, "Router Solicitation"),
                        icmpv6::TYPE_ROUTER_ADVERT => write!(out, "Router Advertisement"),
                        icmpv6::TYPE_PACKET_TOO_BIG => write!(out, "Packet Too Big, MTU {}", mtu.unwrap_or(0)),
                        icmpv6::TYPE_ECHO_REQUEST | icmpv6::TYPE_ECHO_REPLY => {
                            let (id, seq) = echo.unwrap_or((0, 0));
                            write!(
                                out,
                                "Echo (ping) {} id=0x{id:04x}, seq={seq}, hop limit={}",
                                if kind == icmpv6::TYPE_ECHO_REQUEST { "request" } else { "reply" },
                                ip_ttl.unwrap_or(0)
                            )
                        }
                        143 => write!(out, "Multicast Listener Report Message v2"),
                        _ => write!(out, "ICMPv6 type {kind}"),
                    };
                }
                Layer::Tcp { sport, dport, seq, ack, flags, window, payload, .. } => {
                    write!(out, "{sport} → {dport} [")?;
                    let names =
                        [(0x02, "SYN"), (0x10, "ACK"), (0x08, "PSH"), (0x01, "FIN"), (0x04, "RST"), (0x20, "URG")];
                    let mut first = true;
                    for (bit, name) in names {
                        if flags & bit != 0 {
                            if !first {
                                out.write_str(", ")?;
                            }
                            out.write_str(name)?;
                            first = false;
                        }
                    }
                    return write!(out, "] Seq={seq} Ack={ack} Win={window} Len={payload}");
                }
                Layer::Udp { sport, dport, len, .. } => {
                    return write!(out, "{sport} → {dport} Len={}", len.saturating_sub(8));
                }
                Layer::Esp { spi, .. } => return write!(out, "ESP (SPI=0x{spi:08x})"),
                Layer::Gre { proto, .. } => return write!(out, "Encapsulated {}", ethertype_name(proto)),
                _ => {}
            }
        }
        Ok(())
    }
}

pub use walk::dissect;

#[cfg(test)]
mod tests {
    use super::*;

    fn names(d: &Dissection<'_>) -> Vec<&'static str> {
        d.layers.iter().map(Layer::name).collect()
    }

    #[test]
    fn fast_formatting_matches_display() {
        let values = [
            Value::Dec(0),
            Value::Dec(u64::MAX),
            Value::Hex(0, 4),
            Value::Hex(0x6558, 4),
            Value::Hex(0x1_2345, 2),
            Value::Hex(u64::MAX, 8),
            Value::Bool(true),
            Value::Mac(EthernetAddress([0, 0x1a, 0xff, 2, 3, 4])),
            Value::V4(Ipv4Addr::new(192, 0, 2, 255)),
            Value::V6("2001:db8::1".parse().unwrap()),
            Value::Bytes(&[1, 0xab]),
        ];
        for v in values {
            let mut fast = String::new();
            v.push_to(&mut fast);
            assert_eq!(fast, v.to_string());
        }
    }

    #[test]
    fn decode_as_rules() {
        let mut o = DecodeAs::default();
        o.add("udp.port==8472,vxlan").unwrap();
        assert_eq!(o.udp_tunnel(40000, 8472), Some(UdpTunnel::Vxlan));
        assert_eq!(o.udp_tunnel(6081, 1), Some(UdpTunnel::Geneve));
        assert!(o.add("tcp.port==1,vxlan").is_err());
        assert!(o.add("udp.port==1,gre").is_err());
        assert!(o.add("udp.port==99999,vxlan").is_err());
    }

    #[test]
    fn truncation_is_reported_at_its_layer() {
        // Ethernet + IPv4 header cut after 10 bytes.
        let mut f = vec![0xffu8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0, 0, 64, 17]);
        let mut d = Dissection::default();
        dissect(LINKTYPE_ETHERNET, &f, &DecodeAs::default(), &mut d);
        assert_eq!(names(&d), ["eth"]);
        assert_eq!(d.malformed.map(|m| m.layer), Some("ip"));
    }
}
