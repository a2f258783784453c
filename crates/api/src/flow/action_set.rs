//! Actions that hold others (`write_actions`, `clone`) and the OpenFlow 1.1+ action set's order.

use super::{err, Action, FlowError};

/// How many actions after `actions[i]` belong to it (a `write_actions` or `clone` marker's).
pub fn nested_len(actions: &[Action], i: usize) -> usize {
    match actions.get(i) {
        Some(Action::WriteActions(n) | Action::Clone(n)) => usize::from(*n).min(actions.len() - i - 1),
        Some(Action::Learn(l)) => usize::from(l.n).min(actions.len() - i - 1),
        _ => 0,
    }
}

/// Where an action goes in an OpenFlow 1.1+ action set (as Open vSwitch orders it): a slot of its own
/// (the last one written is kept; slots run in this order), the final action (only the last of the
/// highest class runs, and the set runs only when it has one), or the sets and moves (all of them, in
/// order, between the slots and the final action). `None`: not allowed in an action set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SetClass {
    /// 0 strip_vlan, 1 pop_mpls, 2 push_mpls, 3 push_vlan, 4 dec_ttl, 5 dec_mpls_ttl.
    Slot(u8),
    SetOrMove,
    /// 0 ct, 1 ct_clear, 2 resubmit, 3 output, 4 group.
    Final(u8),
}

/// The action-set class of an action, `None` when it may not be written into an action set.
pub fn action_set_class(a: &Action) -> Option<SetClass> {
    Some(match a {
        Action::StripVlan => SetClass::Slot(0),
        Action::PopMpls(_) => SetClass::Slot(1),
        Action::PushMpls(_) => SetClass::Slot(2),
        Action::PushVlan(_) => SetClass::Slot(3),
        Action::DecTtl => SetClass::Slot(4),
        Action::DecMplsTtl => SetClass::Slot(5),
        Action::SetField(_)
        | Action::SetTunnel(_)
        | Action::Load { .. }
        | Action::SetReg { .. }
        | Action::Move { .. }
        | Action::ModVlanVid(_)
        | Action::SetNwTtl(_)
        | Action::SetMplsTtl(_)
        | Action::SetQueue(_) => SetClass::SetOrMove,
        Action::Ct(_) => SetClass::Final(0),
        Action::CtClear => SetClass::Final(1),
        Action::Resubmit { .. } => SetClass::Final(2),
        Action::Output(_)
        | Action::OutputMaxLen(..)
        | Action::Local
        | Action::Normal
        | Action::Flood
        | Action::All
        | Action::InPort
        // `controller` and `controller:N` are outputs to the CONTROLLER port (as in OVS); `controller(…)`
        // saying more is not.
        | Action::Controller
        | Action::ControllerMaxLen(_) => SetClass::Final(3),
        Action::Group(_) => SetClass::Final(4),
        _ => return None,
    })
}

/// The instructions of a flow's list in OpenFlow 1.1+'s order (as OVS checks it): meter first, then the
/// actions, clear_actions, write_actions, write_metadata and goto_table (to a later table than `table`), each
/// once.
pub(super) fn check_instruction_order(actions: &[Action], table: u8) -> Result<(), FlowError> {
    // meter is an instruction that runs before the others (so it comes first), once.
    if let Some(i) = actions.iter().rposition(|a| matches!(a, Action::Meter(_))) {
        if i != 0 {
            return Err(err(
                "meter",
                if actions[..i].iter().any(|a| matches!(a, Action::Meter(_))) {
                    "duplicate meter instruction not allowed, for OpenFlow 1.1+ compatibility"
                } else {
                    "invalid instruction ordering: meter must appear before apply_actions, for OpenFlow 1.1+ \
                     compatibility"
                },
            ));
        }
    }
    // write_actions is an instruction: after the actions and clear_actions, once.
    if let Some(i) = actions.iter().position(|a| matches!(a, Action::WriteActions(_))) {
        let Action::WriteActions(n) = actions[i] else { unreachable!() };
        let after = &actions[i + 1 + usize::from(n)..];
        if after.iter().any(|a| matches!(a, Action::WriteActions(_))) {
            return Err(err("write_actions", "duplicate write_actions instruction not allowed"));
        }
        if after.iter().any(|a| !matches!(a, Action::GotoTable(_) | Action::WriteMetadata { .. })) {
            return Err(err(
                "write_actions",
                "invalid instruction ordering: apply_actions and clear_actions must appear before write_actions",
            ));
        }
    }
    // write_metadata and clear_actions are instructions: OpenFlow runs them after the actions, in the order
    // clear_actions, write_actions, write_metadata, goto_table.
    if let Some(i) = actions.iter().position(|a| matches!(a, Action::WriteMetadata { .. })) {
        if actions[i + 1..].iter().any(|a| !matches!(a, Action::GotoTable(_))) {
            return Err(err(
                "write_metadata",
                "invalid instruction ordering: apply_actions must appear before write_metadata",
            ));
        }
    }
    if let Some(i) = actions.iter().position(|a| *a == Action::ClearActions) {
        let rest = &actions[i + 1..];
        let set = match rest.first() {
            Some(Action::WriteActions(n)) => 1 + usize::from(*n),
            _ => 0,
        };
        if rest[set..].iter().any(|a| !matches!(a, Action::GotoTable(_) | Action::WriteMetadata { .. })) {
            return Err(err(
                "clear_actions",
                "invalid instruction ordering: apply_actions must appear before clear_actions",
            ));
        }
    }
    if let Some(i) = actions.iter().position(|a| matches!(a, Action::GotoTable(_))) {
        if i != actions.len() - 1 {
            return Err(err("goto_table", "must be the last action"));
        }
        if let Action::GotoTable(t) = actions[i] {
            if t <= table {
                return Err(err("goto_table", format!("table {t} is not after table {}", table)));
            }
        }
    }
    Ok(())
}
