//! OpenFlow 1.1+'s action set: what `write_actions` writes as a packet crosses the tables, run once when
//! its pipeline ends (after table 0's flow and every `goto_table` after it).
//!
//! The set holds no copies of actions: each `write_actions` met is an entry naming the flow and where its
//! actions lie in that flow's list (the pipeline outlives the packet). When the set runs it is read as Open
//! vSwitch reads it: of the actions with a slot (strip_vlan, pop_mpls, push_mpls, push_vlan, dec_ttl,
//! dec_mpls_ttl) the last written of each, in that order; then every set-field and move in the order
//! written; then the final action — of ct, ct_clear, resubmit, output and group, the last written of the
//! latest class in that list. A set without a final action does nothing.

use super::pipeline::ActRt;
use super::{ActState, Observer, Run, Tables};

/// `write_actions` instructions one packet's set remembers; past this the oldest is forgotten (flows that
/// write the set in more than eight tables of one pipeline are not met in practice).
pub const SET_MAX: usize = 8;
/// [`ActState::cur`] when no flow's actions run (a packet-out's).
pub const NOWHERE: u64 = u64::MAX;

/// Names flow `rule` of `table` while its actions run.
pub fn here(table: usize, rule: u32) -> u64 {
    ((table as u64 & 0xff) << 32) | u64::from(rule)
}

/// An entry: the table (8 bits), the rule (32), the offset of the first written action in its list (16)
/// and how many (8).
fn entry(cur: u64, off: usize, n: u8) -> u64 {
    ((cur >> 32) << 56) | ((cur & 0xffff_ffff) << 24) | ((off as u64 & 0xffff) << 8) | u64::from(n)
}

/// `write_actions`: the `n` actions from `off` of the running flow join the set.
pub fn write(st: &mut ActState, off: usize, n: u8) {
    if st.cur == NOWHERE || off > 0xffff {
        return;
    }
    let e = entry(st.cur, off, n);
    let len = usize::from(st.set_len);
    if len == SET_MAX {
        st.set.copy_within(1.., 0);
        st.set[SET_MAX - 1] = e;
    } else {
        st.set[len] = e;
        st.set_len += 1;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Slot(usize),
    SetOrMove,
    Final(u8),
}

fn class(a: &ActRt) -> Option<Class> {
    Some(match a {
        ActRt::StripVlan => Class::Slot(0),
        ActRt::PopMpls(_) => Class::Slot(1),
        ActRt::PushMpls(_) => Class::Slot(2),
        ActRt::PushVlan => Class::Slot(3),
        ActRt::DecTtl => Class::Slot(4),
        ActRt::DecMplsTtl => Class::Slot(5),
        ActRt::SetBits { .. }
        | ActRt::Move { .. }
        | ActRt::ModVlanVid(_)
        | ActRt::SetEthSrc(_)
        | ActRt::SetEthDst(_)
        | ActRt::SetTunId(_)
        | ActRt::SetTunDst(_)
        | ActRt::SetMplsTtl(_) => Class::SetOrMove,
        ActRt::Ct(_) => Class::Final(0),
        ActRt::CtClear => Class::Final(1),
        ActRt::Resubmit { .. } => Class::Final(2),
        // An output to the controller is one too (OVS: `controller` with nothing more is an output to the
        // CONTROLLER port).
        ActRt::Output(_) | ActRt::Normal | ActRt::Flood | ActRt::All | ActRt::InPort | ActRt::Controller { .. } => {
            Class::Final(3)
        }
        ActRt::Group(_) => Class::Final(4),
        _ => return None,
    })
}

impl Tables {
    /// Runs the packet's action set (its pipeline has ended) and empties it.
    pub(super) fn run_action_set<O: Observer>(&mut self, r: &mut Run<'_, '_, O>, st: &mut ActState) {
        let n = usize::from(st.set_len);
        if n == 0 || st.exit {
            return;
        }
        st.set_len = 0;
        let entries = st.set;
        let pipe = r.pipe;
        let tables = &pipe.bridges[r.bridge].tables;
        let acts = |e: u64| -> &[ActRt] {
            let (t, rule) = ((e >> 56) as usize, ((e >> 24) & 0xffff_ffff) as usize);
            let (off, k) = (((e >> 8) & 0xffff) as usize, (e & 0xff) as usize);
            tables.get(t).and_then(|t| t.rules.get(rule)).and_then(|r| r.actions.get(off..off + k)).unwrap_or(&[])
        };
        let mut slots: [Option<ActRt>; 6] = [None; 6];
        // The final action, and the table whose flow wrote it (a packet-in from it names that table).
        let mut last: Option<(u8, ActRt, usize)> = None;
        for &e in &entries[..n] {
            for a in acts(e) {
                match class(a) {
                    Some(Class::Slot(k)) => slots[k] = Some(*a),
                    Some(Class::Final(c)) if last.is_none_or(|(f, _, _)| c >= f) => {
                        last = Some((c, *a, (e >> 56) as usize))
                    }
                    _ => {}
                }
            }
        }
        let Some((_, last, table)) = last else { return };
        let run = |sw: &mut Self, r: &mut Run<'_, '_, O>, st: &mut ActState, a: &ActRt, table: usize| {
            sw.apply_actions(r, table, (u64::MAX, false), std::slice::from_ref(a), st, 0);
        };
        for a in slots.iter().flatten() {
            run(self, r, st, a, 0);
        }
        for &e in &entries[..n] {
            for a in acts(e).iter().filter(|a| class(a) == Some(Class::SetOrMove)) {
                run(self, r, st, a, 0);
            }
        }
        run(self, r, st, &last, table);
    }
}
