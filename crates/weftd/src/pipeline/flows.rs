//! Compiling a bridge's flows, groups and meters from the configuration into what the datapath core runs.

use super::*;
use weft_datapath::switch::pipeline::CtRt;

/// A bridge's TLV map laid out in the key (validation has checked that it fits).
pub(super) fn tun_map(b: &weft_api::BridgeConfig) -> TunMap {
    use weft_datapath::classifier::{slot, Slot};
    let places = weft_api::tlv::layout(&b.tlv_map).unwrap_or_default();
    let fields = places
        .iter()
        .filter_map(|p| {
            let m = b.tlv_map.iter().find(|m| m.index == p.index)?;
            Some(TunField {
                index: m.index,
                class: m.class,
                kind: m.kind,
                len: m.len,
                slot: Slot::new(slot::TUN_MD_WORD + usize::from(p.word), u32::from(p.shift), u32::from(p.bits)),
                present: slot::tun_md_present(usize::from(p.present)),
            })
        })
        .collect();
    TunMap { fields }
}

/// Where a field lives in the classifier's key (`None`: a tun_metadata field the bridge's TLV map does not
/// name; validation refuses flows with those, and a packet-out's write to one does nothing, as in OVS).
pub(super) fn field_slot(f: weft_api::flow::Field, tun: &TunMap) -> Option<weft_datapath::classifier::Slot> {
    use weft_api::flow::Field;
    use weft_datapath::classifier::slot;
    Some(match f {
        Field::InPort => slot::IN_PORT,
        Field::DlSrc => slot::DL_SRC,
        Field::DlDst => slot::DL_DST,
        Field::DlType => slot::DL_TYPE,
        Field::VlanTci => slot::VLAN_TCI,
        // IPv4 addresses go in the low half of the 128-bit address slots, as the datapath puts them.
        Field::NwSrc | Field::ArpSpa | Field::Ipv6Src => slot::NW_SRC,
        Field::NwDst | Field::ArpTpa | Field::Ipv6Dst => slot::NW_DST,
        Field::NwProto | Field::ArpOp => slot::NW_PROTO,
        Field::NwTos => slot::NW_TOS,
        Field::TpSrc | Field::IcmpType => slot::TP_SRC,
        Field::TpDst | Field::IcmpCode => slot::TP_DST,
        Field::TunId => slot::TUN_ID,
        Field::TunSrc => slot::TUN_SRC,
        Field::TunDst => slot::TUN_DST,
        Field::Reg(n) => slot::reg(usize::from(n)),
        Field::XReg(n) => slot::xreg(usize::from(n)),
        Field::XXReg(n) => slot::xxreg(usize::from(n)),
        Field::Metadata => slot::METADATA,
        Field::PktMark => slot::PKT_MARK,
        Field::NwEcn => slot::NW_ECN,
        Field::NwTtl => slot::NW_TTL,
        Field::Ipv6Label => slot::IPV6_LABEL,
        Field::ArpSha => slot::ARP_SHA,
        Field::ArpTha => slot::ARP_THA,
        Field::NdTarget => slot::ND_TARGET,
        Field::MplsLabel => slot::MPLS_LABEL,
        Field::MplsTc => slot::MPLS_TC,
        Field::MplsBos => slot::MPLS_BOS,
        Field::MplsTtl => slot::MPLS_TTL,
        Field::NwFrag => slot::NW_FRAG,
        Field::CtState => slot::CT_STATE,
        Field::CtZone => slot::CT_ZONE,
        Field::CtMark => slot::CT_MARK,
        Field::CtLabel => slot::CT_LABEL,
        Field::CtNwProto => slot::CT_NW_PROTO,
        Field::CtNwSrc | Field::CtIpv6Src => slot::CT_NW_SRC,
        Field::CtNwDst | Field::CtIpv6Dst => slot::CT_NW_DST,
        Field::CtTpSrc => slot::CT_TP_SRC,
        Field::CtTpDst => slot::CT_TP_DST,
        Field::TcpFlags => slot::TCP_FLAGS,
        Field::ConjId => slot::CONJ_ID,
        Field::TunMetadata(n) => tun.slots(n)?.0,
    })
}

pub(super) fn sub_slot(s: weft_api::flow::SubField, tun: &TunMap) -> Option<weft_datapath::classifier::SubSlot> {
    let slot = field_slot(s.field, tun)?;
    // A mapped field is as wide as its option (at most 128 bits): bits past it are not there.
    let nbits = u32::from(s.nbits).min((slot.bits).saturating_sub(u32::from(s.ofs)));
    (nbits > 0).then_some(weft_datapath::classifier::SubSlot { slot, ofs: u32::from(s.ofs), nbits })
}

/// The classifier key and mask of a flow's match.
pub(super) fn flow_rule(
    m: &[weft_api::flow::Match],
    tun: &TunMap,
) -> (weft_datapath::classifier::FlowKey, weft_datapath::classifier::FlowKey) {
    use weft_datapath::classifier::FlowKey;
    let (mut key, mut mask) = (FlowKey::default(), FlowKey::default());
    for x in m {
        let Some(s) = field_slot(x.field, tun) else { continue };
        key.put(s, x.value);
        mask.put(s, x.mask);
        // A match on tunnel metadata asks for the option too.
        if let weft_api::flow::Field::TunMetadata(n) = x.field {
            if let Some((_, present)) = tun.slots(n) {
                key.put(present, 1);
                mask.put(present, 1);
            }
        }
    }
    (key, mask)
}

/// What a bundle's or multipath's hash covers, as the core has it.
pub(super) fn hash_on(f: weft_api::flow::bundle::HashFields) -> weft_datapath::switch::bundle::HashOn {
    use weft_api::flow::bundle::HashFields;
    use weft_datapath::switch::bundle::HashOn;
    match f {
        HashFields::EthSrc => HashOn::EthSrc,
        HashFields::NwSrc => HashOn::NwSrc,
        HashFields::NwDst => HashOn::NwDst,
        HashFields::SymmetricL3 => HashOn::Symmetric { macs: false, ports: false },
        HashFields::SymmetricL3L4 | HashFields::SymmetricL3L4Udp => HashOn::Symmetric { macs: false, ports: true },
        HashFields::SymmetricL4 => HashOn::Symmetric { macs: true, ports: true },
    }
}

/// A flow's (or a packet-out's) action as the core runs it, with OpenFlow port numbers turned into the
/// pipeline's ports by `port`; `None` for an action with no effect (drop, or an output to a port that is
/// not there).
/// A `ct` action goes into `cts` (the bridge's, or a packet-out's own numbered from `base`), named by its
/// index there.
pub fn act_rt(
    a: &weft_api::flow::Action,
    port: &dyn Fn(u32) -> Option<PortIdx>,
    (cts, base): (&mut Vec<CtRt>, usize),
    tun: &TunMap,
) -> Option<ActRt> {
    use weft_api::flow::{Action, SetField};
    use weft_datapath::classifier::{slot, Slot};
    use weft_datapath::switch::pipeline::REASON_AUTO;
    Some(match *a {
        Action::Output(n) => ActRt::Output(port(n)?),
        Action::DecTtl => ActRt::DecTtl,
        Action::Group(g) => ActRt::Group(g),
        Action::Meter(m) => ActRt::Meter(m),
        Action::PushMpls(t) => ActRt::PushMpls(t),
        Action::PopMpls(t) => ActRt::PopMpls(t),
        Action::SetMplsTtl(t) => ActRt::SetMplsTtl(t),
        Action::DecMplsTtl => ActRt::DecMplsTtl,
        Action::SetNwTtl(t) => {
            ActRt::SetBits { slot: weft_datapath::classifier::slot::NW_TTL, value: u128::from(t), mask: 0xff }
        }
        Action::OutputMaxLen(..) => return act_rt(&a.plain(), port, (cts, base), tun),
        Action::Ct(ct) => {
            use weft_datapath::switch::pipeline::CtWriteRt;
            let mut exec = [None; 4];
            for (slot, w) in exec.iter_mut().zip(ct.exec_writes()) {
                *slot = match w {
                    weft_api::flow::CtWrite::Const { label, value, mask } => {
                        Some(CtWriteRt::Const { label, value, mask })
                    }
                    weft_api::flow::CtWrite::Move { label, src, ofs } => {
                        sub_slot(src, tun).map(|src| CtWriteRt::Move { label, src, ofs: u32::from(ofs) })
                    }
                };
            }
            cts.push(CtRt {
                commit: ct.commit,
                force: ct.force,
                zone: match ct.zone {
                    weft_api::flow::CtZone::Imm(z) => Ok(z),
                    weft_api::flow::CtZone::Field(sf) => sub_slot(sf, tun).map_or(Ok(0), Err),
                },
                table: ct.table,
                exec,
                nat: ct.nat.map(|n| {
                    use weft_datapath::conntrack::{NatArgs, NatKind};
                    let num = |a: std::net::IpAddr| match a {
                        std::net::IpAddr::V4(v) => u128::from(u32::from(v)),
                        std::net::IpAddr::V6(v) => u128::from(v),
                    };
                    NatArgs {
                        kind: match n.kind {
                            weft_api::flow::NatKind::Reverse => NatKind::Reverse,
                            weft_api::flow::NatKind::Src => NatKind::Src,
                            weft_api::flow::NatKind::Dst => NatKind::Dst,
                        },
                        addrs: n.addrs.map(|(a, b)| (num(a), num(b))),
                        v6: n.addrs.is_some_and(|(a, _)| a.is_ipv6()),
                        ports: n.ports,
                        persistent: n.persistent,
                    }
                }),
            });
            ActRt::Ct((base + cts.len() - 1) as u32)
        }
        Action::CtClear => ActRt::CtClear,
        Action::Local => ActRt::Output(port(OFPORT_LOCAL)?),
        Action::Normal => ActRt::Normal,
        Action::Flood => ActRt::Flood,
        Action::All => ActRt::All,
        Action::InPort => ActRt::InPort,
        Action::Controller => ActRt::Controller { max_len: u16::MAX, reason: REASON_AUTO, id: 0 },
        Action::ControllerMaxLen(n) => ActRt::Controller { max_len: n, reason: REASON_AUTO, id: 0 },
        Action::ControllerEx { max_len, reason, id } => ActRt::Controller { max_len, reason, id },
        Action::Drop => return None,
        Action::ModVlanVid(v) => ActRt::ModVlanVid(v),
        Action::StripVlan => ActRt::StripVlan,
        Action::PushVlan(_) => ActRt::PushVlan,
        Action::SetField(SetField::EthSrc(m)) => ActRt::SetEthSrc(m),
        Action::SetField(SetField::EthDst(m)) => ActRt::SetEthDst(m),
        Action::SetField(SetField::VlanVid(v)) => ActRt::ModVlanVid(v),
        Action::SetField(SetField::TunId(v)) | Action::SetTunnel(v) => ActRt::SetTunId(v),
        Action::SetField(SetField::TunDst(a)) => ActRt::SetTunDst(a),
        Action::Resubmit { port: p, table } => ActRt::Resubmit { port: p.and_then(port), table },
        Action::GotoTable(t) => ActRt::GotoTable(t),
        Action::Load { dst, value } => {
            let bits = Slot::bits_mask(u32::from(dst.ofs), u32::from(dst.nbits));
            ActRt::SetBits { slot: field_slot(dst.field, tun)?, value: value << dst.ofs, mask: bits }
        }
        Action::SetReg { field, value, mask } => ActRt::SetBits { slot: field_slot(field, tun)?, value, mask },
        Action::WriteMetadata { value, mask } => {
            ActRt::SetBits { slot: slot::METADATA, value: u128::from(value), mask: u128::from(mask) }
        }
        Action::Move { src, dst } => ActRt::Move { src: sub_slot(src, tun)?, dst: sub_slot(dst, tun)? },
        Action::StackPush(sf) => ActRt::StackPush(sub_slot(sf, tun)?),
        Action::Multipath(m) => ActRt::Multipath {
            on: hash_on(m.fields),
            basis: m.basis,
            algorithm: m.algorithm,
            n_links: m.n_links,
            arg: m.arg,
            dst: sub_slot(m.dst, tun)?,
        },
        Action::Bundle(b) => {
            let on = hash_on(b.fields);
            let mut members = [None; 8];
            for (m, p) in members.iter_mut().zip(b.members()) {
                *m = port(*p);
            }
            ActRt::Bundle(weft_datapath::switch::pipeline::BundleRt {
                on,
                basis: b.basis,
                hrw: b.hrw,
                members,
                n: b.n,
                dst: b.dst.and_then(|d| sub_slot(d, tun)),
            })
        }
        Action::OutputTrunc(weft_api::flow::OFPP_IN_PORT, n) => ActRt::OutputTrunc(None, n),
        Action::OutputTrunc(p, n) => ActRt::OutputTrunc(Some(port(p)?), n),
        Action::StackPop(sf) => ActRt::StackPop(sub_slot(sf, tun)?),
        Action::OutputReg(src) => ActRt::OutputReg(sub_slot(src, tun)?),
        Action::Exit => ActRt::Exit,
        Action::ClearActions => ActRt::ClearActions,
        // Counted by `compile_actions`, which knows how many of the written actions are there.
        Action::WriteActions(_) | Action::Clone(_) => return None,
        // No queues: nothing to do (see the actions' documentation).
        Action::SetQueue(_) | Action::PopQueue | Action::Note { .. } => return None,
        // No IPFIX exporter: nothing to sample for (see the action's documentation).
        Action::Sample(_) => return None,
        // The rule is part of a conjunctive flow: its clauses are the classifier's (`build_tables`).
        Action::Conjunction { .. } => return None,
        // Compiled with their pieces by `compile_actions`.
        Action::Learn(_) | Action::LearnSpec(_) => return None,
        // Which flow: filled in by `build_tables` (in a group's bucket or a packet-out, none: no effect).
        Action::FinTimeout { idle, hard } => ActRt::FinTimeout { idle, hard, flow: u64::MAX },
    })
}

/// A flow's (or a bucket's, or a packet-out's) actions as the core runs them ([`act_rt`] each); a
/// `write_actions` or `clone` marker counts what is left of the actions it holds (an output to a port that
/// is not there leaves nothing), clones within clones included.
pub fn compile_actions(
    actions: &[weft_api::flow::Action],
    port: &dyn Fn(u32) -> Option<PortIdx>,
    (cts, base): (&mut Vec<CtRt>, usize),
    tun: &TunMap,
) -> Vec<ActRt> {
    use weft_api::flow::Action;
    let mut out = Vec::with_capacity(actions.len());
    let mut i = 0;
    while i < actions.len() {
        if let Action::WriteActions(_) | Action::Clone(_) = actions[i] {
            let end = i + 1 + weft_api::flow::nested_len(actions, i);
            let inner = compile_actions(&actions[i + 1..end], port, (&mut *cts, base), tun);
            let n = inner.len().min(255) as u8;
            out.push(if matches!(actions[i], Action::Clone(_)) { ActRt::Clone(n) } else { ActRt::WriteActions(n) });
            out.extend(inner.into_iter().take(255));
            i = end;
            continue;
        }
        if let Action::Learn(_) = actions[i] {
            let end = i + 1 + weft_api::flow::nested_len(actions, i);
            // The fields the learn reads from the packet (a field the core cannot read: no learn).
            let srcs: Option<Vec<ActRt>> = actions[i + 1..end]
                .iter()
                .filter_map(|a| match a {
                    Action::LearnSpec(s) => s.packet_field(),
                    _ => None,
                })
                .map(|sf| sub_slot(sf, tun).map(ActRt::LearnSrc))
                .collect();
            if let Some(srcs) = srcs.filter(|s| s.len() <= weft_datapath::switch::LEARN_SOURCES) {
                // Which flow and which of its learns: filled in by `build_tables`.
                out.push(ActRt::Learn { n: srcs.len() as u8, ordinal: 0, flow: u64::MAX });
                out.extend(srcs);
            }
            i = end;
            continue;
        }
        let before = out.len();
        out.extend(act_rt(&actions[i], port, (&mut *cts, base), tun));
        // A write to tunnel metadata makes the option there (so that later matches see it and it is sent).
        if let (true, Some(n)) = (out.len() > before, written_tun_metadata(&actions[i])) {
            if let Some((_, present)) = tun.slots(n) {
                out.push(ActRt::SetBits { slot: present, value: 1, mask: 1 });
            }
        }
        i += 1;
    }
    out
}

/// The `tun_metadataN` an action writes, if it writes one.
fn written_tun_metadata(a: &weft_api::flow::Action) -> Option<u8> {
    use weft_api::flow::{Action, Field};
    let f = match *a {
        Action::Load { dst, .. } | Action::Move { dst, .. } => dst.field,
        Action::SetReg { field, .. } => field,
        Action::StackPop(sf) => sf.field,
        Action::Multipath(m) => m.dst.field,
        Action::Bundle(b) => b.dst?.field,
        _ => return None,
    };
    match f {
        Field::TunMetadata(n) => Some(n),
        _ => None,
    }
}

/// Builds the flow tables of a bridge (none when it has only the default NORMAL flow).
pub(super) fn build_tables(
    b: &weft_api::BridgeConfig,
    ofports: &HashMap<u32, PortIdx>,
    cts: &mut Vec<CtRt>,
    tun: &TunMap,
) -> Vec<TableRt> {
    use weft_api::flow::Action;
    use weft_datapath::classifier::Clause;
    let only_normal = b.flows.len() == 1 && {
        let f = &b.flows[0].flow;
        f.table == 0 && f.matches.is_empty() && f.actions == [Action::Normal]
    };
    if only_normal {
        return Vec::new();
    }
    let top = b.flows.iter().map(|f| usize::from(f.flow.table)).max().unwrap_or(0);
    (0..=top)
        .map(|t| {
            let mut rules = Vec::new();
            let mut entries = Vec::new();
            let mut soft = Vec::new();
            for s in b.flows.iter().filter(|s| usize::from(s.flow.table) == t) {
                let clauses: Vec<Clause> = s
                    .flow
                    .actions
                    .iter()
                    .filter_map(|a| match *a {
                        Action::Conjunction { id, k, n } => Some(Clause { id, k, n }),
                        _ => None,
                    })
                    .collect();
                if !clauses.is_empty() {
                    soft.push((rules.len() as u32, clauses));
                }
                let port = |n: u32| ofports.get(&n).copied();
                let mut actions = compile_actions(&s.flow.actions, &port, (&mut *cts, 0), tun);
                // Each learn names its flow and its place among the flow's learns (in the order of the list).
                let learns = actions.iter_mut().filter_map(|a| match a {
                    ActRt::Learn { ordinal, flow, .. } => Some((ordinal, flow)),
                    _ => None,
                });
                for (n, (ordinal, flow)) in learns.enumerate() {
                    (*ordinal, *flow) = (n as u8, s.id);
                }
                for a in actions.iter_mut() {
                    if let ActRt::FinTimeout { flow, .. } = a {
                        *flow = s.id;
                    }
                }
                let (key, mask) = flow_rule(&s.flow.matches, tun);
                entries.push(weft_datapath::classifier::Rule {
                    key,
                    mask,
                    priority: s.flow.priority,
                    id: rules.len() as u32,
                });
                let table_miss = s.flow.priority == 0 && s.flow.matches.is_empty();
                rules.push(RuleRt { id: s.id, cookie: s.flow.cookie, table_miss, actions });
            }
            TableRt { classifier: weft_datapath::classifier::Classifier::with_conjunctions(entries, soft), rules }
        })
        .collect()
}

/// A bridge's groups for the core: buckets' actions compiled as a flow's, watched ports by index.
pub(super) fn build_groups(
    b: &weft_api::BridgeConfig,
    ofports: &HashMap<u32, PortIdx>,
    cts: &mut Vec<CtRt>,
    tun: &TunMap,
) -> Vec<GroupRt> {
    use weft_api::group::GroupType;
    let port = |n: u32| ofports.get(&n).copied();
    let mut groups: Vec<GroupRt> = b
        .groups
        .iter()
        .map(|g| GroupRt {
            id: g.id,
            kind: match g.kind {
                GroupType::All => GroupKind::All,
                GroupType::Select => GroupKind::Select,
                GroupType::Indirect => GroupKind::Indirect,
                GroupType::FastFailover => GroupKind::FastFailover,
            },
            buckets: g
                .buckets
                .iter()
                .map(|bk| BucketRt {
                    weight: bk.weight,
                    watch: port(bk.watch_port),
                    actions: compile_actions(&bk.actions, &port, (&mut *cts, 0), tun),
                })
                .collect(),
        })
        .collect();
    groups.sort_by_key(|g| g.id);
    groups
}

/// A meter's state (buckets, counters) and when it was made, by (bridge, meter id): kept across pipelines
/// while the meter stays as configured.
pub type MeterStates = HashMap<(String, u32), (weft_api::meter::Meter, Arc<MeterState>, std::time::Instant)>;

/// A bridge's meters for the core, each with its state from `states` (new state for a new or changed meter).
pub(super) fn build_meters(b: &weft_api::BridgeConfig, states: &mut MeterStates) -> Vec<MeterRt> {
    let mut meters: Vec<MeterRt> = b
        .meters
        .iter()
        .map(|m| {
            let bands: Vec<BandRt> = m
                .bands
                .iter()
                .map(|band| BandRt {
                    rate: u64::from(band.rate),
                    depth: weft_datapath::switch::meter::depth(band.rate, m.burst(band), m.pktps()),
                    remark: match band.kind {
                        weft_api::meter::BandType::Drop => None,
                        weft_api::meter::BandType::DscpRemark(p) => Some(p),
                    },
                })
                .collect();
            let key = (b.name.clone(), m.id);
            let state = match states.get(&key) {
                Some((was, state, _)) if was == m => state.clone(),
                _ => {
                    let depths: Vec<u64> = bands.iter().map(|b| b.depth).collect();
                    let state = Arc::new(MeterState::new(&depths));
                    states.insert(key, (m.clone(), state.clone(), std::time::Instant::now()));
                    state
                }
            };
            MeterRt { id: m.id, pktps: m.pktps(), bands, state }
        })
        .collect();
    meters.sort_by_key(|m| m.id);
    meters
}
