//! Actions that hold actions, as the wire carries them: NXAST_CLONE's subtype and a decoded clone checked.

use super::*;

/// NXAST_CLONE's subtype (for the OpenFlow 1.0 coder).
pub(crate) fn act_nxast_clone() -> u16 {
    act::NXAST_CLONE
}

/// A decoded clone: its marker, then what it holds (instructions may not be there, as OVS has it).
pub(crate) fn push_clone(out: &mut Vec<Action>, inner: Vec<Action>) -> Result<(), OfError> {
    let instruction = inner.iter().any(|a| {
        matches!(
            a,
            Action::GotoTable(_)
                | Action::WriteMetadata { .. }
                | Action::ClearActions
                | Action::WriteActions(_)
                | Action::Meter(_)
        )
    });
    if instruction || inner.len() > 255 {
        return Err((error::BAD_ACTION, error::BAD_ACTION_TYPE));
    }
    out.push(Action::Clone(inner.len() as u8));
    out.extend(inner);
    Ok(())
}
