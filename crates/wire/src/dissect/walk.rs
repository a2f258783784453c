//! The walk through a packet, layer by layer: link types, Ethernet and VLAN tags, IPv4 and IPv6 (with
//! extension headers), UDP, TCP, ICMP, ARP, and the tunnels inside (VXLAN, Geneve, GRE, ESP, IKE).

use super::*;

/// Dissects one captured packet of link type `linktype` into `out` (cleared first).
pub fn dissect<'a>(linktype: u32, data: &'a [u8], opts: &DecodeAs, out: &mut Dissection<'a>) {
    out.clear();
    match linktype {
        LINKTYPE_ETHERNET => ethernet(data, opts, out),
        LINKTYPE_LINUX_SLL => sll(data, 1, opts, out),
        LINKTYPE_LINUX_SLL2 => sll(data, 2, opts, out),
        LINKTYPE_RAW | 12 | 14 | LINKTYPE_IPV4 | LINKTYPE_IPV6 => match data.first().map(|b| b >> 4) {
            Some(4) => ip4(data, opts, out),
            Some(6) => ip6(data, opts, out),
            _ => out.fail("ip", Error::Malformed { layer: "ip", what: "version is neither 4 nor 6" }),
        },
        _ => {
            out.push(Layer::Data { len: data.len() });
        }
    }
}

fn sll<'a>(data: &'a [u8], version: u8, opts: &DecodeAs, out: &mut Dissection<'a>) {
    let need = if version == 1 { 16 } else { 20 };
    if data.len() < need {
        return out.fail("sll", Error::Truncated { layer: "sll", needed: need, have: data.len() });
    }
    let be16 = |at: usize| u16::from_be_bytes([data[at], data[at + 1]]);
    let (pkttype, hatype, halen, addr_at, protocol) = if version == 1 {
        (be16(0), be16(2), usize::from(be16(4)), 6, be16(14))
    } else {
        (u16::from(data[10]), be16(8), usize::from(data[11]), 12, be16(0))
    };
    let addr = &data[addr_at..addr_at + halen.min(8)];
    if !out.push(Layer::Sll { version, pkttype, hatype, addr, protocol }) {
        return;
    }
    by_ethertype(protocol, &data[need..], opts, out, 0);
}

fn ethernet<'a>(data: &'a [u8], opts: &DecodeAs, out: &mut Dissection<'a>) {
    ethernet_at(data, opts, out, 0);
}

fn ethernet_at<'a>(data: &'a [u8], opts: &DecodeAs, out: &mut Dissection<'a>, depth: u8) {
    if data.len() < 14 {
        return out.fail("eth", Error::Truncated { layer: "eth", needed: 14, have: data.len() });
    }
    let ethertype = u16::from_be_bytes([data[12], data[13]]);
    let l = Layer::Eth {
        dst: EthernetAddress::from_bytes(&data[0..6]),
        src: EthernetAddress::from_bytes(&data[6..12]),
        ethertype,
    };
    if out.push(l) {
        by_ethertype(ethertype, &data[14..], opts, out, depth);
    }
}

fn by_ethertype<'a>(mut ethertype: u16, mut data: &'a [u8], opts: &DecodeAs, out: &mut Dissection<'a>, depth: u8) {
    while ethertype == EtherType::VLAN || ethertype == EtherType::QINQ {
        let Ok(tag) = vlan::VlanPacket::new_checked(data) else {
            return out.fail("vlan", Error::Truncated { layer: "vlan", needed: 4, have: data.len() });
        };
        let next = tag.ethertype();
        let l = Layer::Vlan { tpid: ethertype, pcp: tag.pcp(), dei: tag.dei(), vid: tag.vid(), ethertype: next };
        if !out.push(l) {
            return;
        }
        ethertype = next;
        data = &data[vlan::HEADER_LEN..];
    }
    match ethertype {
        EtherType::ARP => match arp::ArpPacket::new_checked(data) {
            Ok(a) => {
                let r = arp::ArpRepr::parse(&a);
                out.push(Layer::Arp {
                    op: r.operation,
                    sha: r.sender_hardware_addr,
                    spa: r.sender_protocol_addr,
                    tha: r.target_hardware_addr,
                    tpa: r.target_protocol_addr,
                });
            }
            Err(e) => out.fail("arp", e),
        },
        EtherType::IPV4 => ip4_at(data, opts, out, depth),
        EtherType::IPV6 => ip6_at(data, opts, out, depth),
        _ if !data.is_empty() => {
            out.push(Layer::Data { len: data.len() });
        }
        _ => {}
    }
}

fn ip4<'a>(data: &'a [u8], opts: &DecodeAs, out: &mut Dissection<'a>) {
    ip4_at(data, opts, out, 0);
}

fn ip6<'a>(data: &'a [u8], opts: &DecodeAs, out: &mut Dissection<'a>) {
    ip6_at(data, opts, out, 0);
}

fn ip4_at<'a>(data: &'a [u8], opts: &DecodeAs, out: &mut Dissection<'a>, depth: u8) {
    let p = match ipv4::Ipv4Packet::new_header_checked(data) {
        Ok(p) => p,
        Err(e) => return out.fail("ip", e),
    };
    let hl = p.header_len();
    let flags_off = u16::from_be_bytes([data[6], data[7]]);
    let l = Layer::Ipv4 {
        hdr_len: hl as u8,
        dsfield: p.dscp_ecn(),
        len: p.total_len(),
        id: p.ident(),
        flags: (flags_off >> 13) as u8,
        frag_offset: flags_off & 0x1fff,
        ttl: p.hop_limit(),
        proto: p.protocol(),
        checksum: p.checksum(),
        src: p.src_addr(),
        dst: p.dst_addr(),
    };
    if !out.push(l) {
        return;
    }
    let end = usize::from(p.total_len()).clamp(hl, data.len());
    let payload = &data[hl..end];
    // Only the first fragment carries the upper-layer header.
    if flags_off & 0x1fff != 0 {
        out.push(Layer::Data { len: payload.len() });
        return;
    }
    let ttl = p.hop_limit();
    upper(p.protocol(), payload, opts, out, depth, ttl);
}

fn ip6_at<'a>(data: &'a [u8], opts: &DecodeAs, out: &mut Dissection<'a>, depth: u8) {
    let p = match ipv6::Ipv6Packet::new_header_checked(data) {
        Ok(p) => p,
        Err(e) => return out.fail("ipv6", e),
    };
    let plen = usize::from(p.payload_len());
    let payload = &data[ipv6::HEADER_LEN..(ipv6::HEADER_LEN + plen).min(data.len())];
    // List the extension headers, then find the upper layer.
    let mut ext = [(0u8, 0u16); 4];
    let mut ext_count = 0u8;
    let mut next = p.next_header();
    let mut at = 0usize;
    let upper_at = loop {
        match next {
            Protocol::HOPOPTS | Protocol::IPV6_ROUTE | Protocol::IPV6_OPTS | Protocol::IPV6_FRAG => {
                if payload.len() < at + 8 {
                    break Err(Error::Truncated {
                        layer: "ipv6 extension header",
                        needed: at + 8,
                        have: payload.len(),
                    });
                }
                let len = if next == Protocol::IPV6_FRAG { 8 } else { (usize::from(payload[at + 1]) + 1) * 8 };
                if payload.len() < at + len {
                    break Err(Error::Truncated {
                        layer: "ipv6 extension header",
                        needed: at + len,
                        have: payload.len(),
                    });
                }
                if usize::from(ext_count) < ext.len() {
                    ext[usize::from(ext_count)] = (next, len as u16);
                }
                ext_count = ext_count.saturating_add(1);
                if ext_count > 16 {
                    break Err(Error::Malformed { layer: "ipv6", what: "more than 16 extension headers" });
                }
                let fragment_tail =
                    next == Protocol::IPV6_FRAG && u16::from_be_bytes([payload[at + 2], payload[at + 3]]) & 0xfff8 != 0;
                next = payload[at];
                at += len;
                if fragment_tail {
                    next = Protocol::IPV6_NONXT;
                }
            }
            _ => break Ok(at),
        }
    };
    let l = Layer::Ipv6 {
        tclass: p.traffic_class(),
        flow: p.flow_label(),
        plen: p.payload_len(),
        nxt: p.next_header(),
        hlim: p.hop_limit(),
        src: p.src_addr(),
        dst: p.dst_addr(),
        ext,
        ext_count,
    };
    if !out.push(l) {
        return;
    }
    match upper_at {
        Ok(at) if next == Protocol::IPV6_NONXT => {
            if payload.len() > at {
                out.push(Layer::Data { len: payload.len() - at });
            }
        }
        Ok(at) => upper(next, &payload[at..], opts, out, depth, p.hop_limit()),
        Err(e) => out.fail("ipv6", e),
    }
}

fn upper<'a>(proto: u8, data: &'a [u8], opts: &DecodeAs, out: &mut Dissection<'a>, depth: u8, ttl: u8) {
    match proto {
        Protocol::UDP => {
            let u = match udp::UdpPacket::new_header_checked(data) {
                Ok(u) => u,
                Err(e) => return out.fail("udp", e),
            };
            let (sport, dport) = (u.src_port(), u.dst_port());
            if !out.push(Layer::Udp { sport, dport, len: u.len(), checksum: u.checksum() }) {
                return;
            }
            let end = usize::from(u.len()).clamp(udp::HEADER_LEN, data.len());
            let payload = &data[udp::HEADER_LEN..end];
            if depth < 8 {
                match opts.udp_tunnel(sport, dport) {
                    Some(UdpTunnel::Vxlan) => return vxlan_layer(payload, opts, out, depth),
                    Some(UdpTunnel::Geneve) => return geneve_layer(payload, opts, out, depth),
                    None => {}
                }
            }
            if sport == esp::NAT_T_PORT || dport == esp::NAT_T_PORT {
                // RFC 3948: a zero first word is the non-ESP marker of IKE; anything else is ESP.
                if payload.len() >= 4 && payload[..4] != [0, 0, 0, 0] {
                    return esp_layer(payload, out);
                }
            }
            if !payload.is_empty() {
                out.push(Layer::Data { len: payload.len() });
            }
        }
        Protocol::TCP => match tcp::TcpPacket::new_checked(data) {
            Ok(t) => {
                out.push(Layer::Tcp {
                    sport: t.src_port(),
                    dport: t.dst_port(),
                    seq: t.seq_number(),
                    ack: t.ack_number(),
                    hdr_len: t.header_len() as u8,
                    flags: u16::from_be_bytes([data[12], data[13]]) & 0x0fff,
                    window: t.window_len(),
                    checksum: t.checksum(),
                    payload: t.payload().len(),
                    quoted: out.quoted,
                });
            }
            Err(e) => out.fail("tcp", e),
        },
        Protocol::ICMP => match icmpv4::Icmpv4Packet::new_checked(data) {
            Ok(i) => {
                let kind = i.msg_type();
                let echo = matches!(kind, icmpv4::TYPE_ECHO_REQUEST | icmpv4::TYPE_ECHO_REPLY);
                let frag = kind == icmpv4::TYPE_DEST_UNREACHABLE && i.msg_code() == icmpv4::CODE_FRAG_NEEDED;
                let pushed = out.push(Layer::Icmp {
                    kind,
                    code: i.msg_code(),
                    checksum: i.checksum(),
                    ident: echo.then(|| (i.echo_ident(), i.echo_seq_no())),
                    mtu: frag.then(|| i.next_hop_mtu()),
                    ttl,
                });
                // Errors quote the packet that caused them, which Wireshark dissects too.
                let error = matches!(kind, icmpv4::TYPE_DEST_UNREACHABLE | icmpv4::TYPE_TIME_EXCEEDED | 12);
                if pushed && error && depth < 8 && data.len() > icmpv4::HEADER_LEN {
                    out.quoted = true;
                    ip4_at(&data[icmpv4::HEADER_LEN..], opts, out, depth + 1);
                }
            }
            Err(e) => out.fail("icmp", e),
        },
        Protocol::ICMPV6 => match icmpv6::Icmpv6Packet::new_checked(data) {
            Ok(i) => {
                let kind = i.msg_type();
                let echo = matches!(kind, icmpv6::TYPE_ECHO_REQUEST | icmpv6::TYPE_ECHO_REPLY);
                out.push(Layer::Icmpv6 {
                    kind,
                    code: i.msg_code(),
                    checksum: i.checksum(),
                    target: i.nd_target(),
                    mtu: (kind == icmpv6::TYPE_PACKET_TOO_BIG).then(|| i.mtu()),
                    echo: echo
                        .then(|| (u16::from_be_bytes([data[4], data[5]]), u16::from_be_bytes([data[6], data[7]]))),
                });
            }
            Err(e) => out.fail("icmpv6", e),
        },
        Protocol::GRE => match gre::GrePacket::new_checked(data) {
            Ok(g) => {
                let l = Layer::Gre {
                    flags: g.flags(),
                    proto: g.protocol(),
                    checksum: g.checksum(),
                    key: g.key(),
                    seq: g.sequence(),
                };
                if !out.push(l) {
                    return;
                }
                let payload = &data[g.header_len()..];
                match g.protocol() {
                    EtherType::TEB if depth < 8 => ethernet_at(payload, opts, out, depth + 1),
                    EtherType::IPV4 if depth < 8 => ip4_at(payload, opts, out, depth + 1),
                    EtherType::IPV6 if depth < 8 => ip6_at(payload, opts, out, depth + 1),
                    _ if !payload.is_empty() => {
                        out.push(Layer::Data { len: payload.len() });
                    }
                    _ => {}
                }
            }
            Err(e) => out.fail("gre", e),
        },
        Protocol::ESP => esp_layer(data, out),
        _ if !data.is_empty() => {
            out.push(Layer::Data { len: data.len() });
        }
        _ => {}
    }
}

fn esp_layer(data: &[u8], out: &mut Dissection<'_>) {
    match esp::EspPacket::new_checked(data) {
        Ok(e) => {
            out.push(Layer::Esp { spi: e.spi(), seq: e.sequence() });
        }
        Err(e) => out.fail("esp", e),
    }
}

fn vxlan_layer<'a>(data: &'a [u8], opts: &DecodeAs, out: &mut Dissection<'a>, depth: u8) {
    match vxlan::VxlanPacket::new_checked(data) {
        Ok(v) => {
            if out.push(Layer::Vxlan { flags: v.flags16(), vni: v.vni() }) {
                ethernet_at(&data[vxlan::HEADER_LEN..], opts, out, depth + 1);
            }
        }
        Err(e) => out.fail("vxlan", e),
    }
}

fn geneve_layer<'a>(data: &'a [u8], opts: &DecodeAs, out: &mut Dissection<'a>, depth: u8) {
    let g = match geneve::GenevePacket::new_checked(data) {
        Ok(g) => g,
        Err(e) => return out.fail("geneve", e),
    };
    let hl = g.header_len();
    let l = Layer::Geneve {
        version: g.version(),
        opt_len: (g.options_len() / 4) as u8,
        oam: g.is_oam(),
        critical: g.is_critical(),
        proto: g.protocol(),
        vni: g.vni(),
        options: &data[geneve::HEADER_LEN..hl],
    };
    if !out.push(l) {
        return;
    }
    if let Some(Err(e)) = g.options().find(|o| o.is_err()) {
        return out.fail("geneve", e);
    }
    let payload = &data[hl..];
    match g.protocol() {
        EtherType::TEB => ethernet_at(payload, opts, out, depth + 1),
        EtherType::IPV4 => ip4_at(payload, opts, out, depth + 1),
        EtherType::IPV6 => ip6_at(payload, opts, out, depth + 1),
        _ if !payload.is_empty() => {
            out.push(Layer::Data { len: payload.len() });
        }
        _ => {}
    }
}
