//! GROUP_MOD (one configuration transaction each, like a FLOW_MOD) and the group descriptions.

use super::*;
use weft_api::group::{self, Command};

/// Adds, changes or deletes a group of `bridge`. Deleting a group deletes the flows that send to it, as
/// OpenFlow 1.3 says; deleting OFPG_ALL deletes every group (and those flows).
pub(super) fn group_mod(st: &mut dyn Daemon, bridge: &str, body: &[u8]) -> Result<(), (u16, u16)> {
    use error::group as code;
    let gm = group::parse_group_mod(body)?;
    let failed = |c: u16| (error::GROUP_MOD_FAILED, c);
    let mut new = st.config().clone();
    let b = new.bridges.iter_mut().find(|b| b.name == bridge).ok_or(failed(code::INVALID_GROUP))?;
    let id = gm.group.id;
    let at = b.groups.binary_search_by_key(&id, |g| g.id);
    match (gm.command, at) {
        (Command::Add, Ok(_)) => return Err(failed(code::GROUP_EXISTS)),
        (Command::Add, Err(_)) if b.groups.len() >= group::MAX_GROUPS => return Err(failed(code::OUT_OF_GROUPS)),
        (Command::Add, Err(i)) => b.groups.insert(i, gm.group),
        (Command::Modify, Ok(i)) => b.groups[i] = gm.group,
        (Command::Modify, Err(_)) => return Err(failed(code::UNKNOWN_GROUP)),
        (Command::Delete, _) => {
            let gone = |g: u32| id == group::ALL || g == id;
            b.groups.retain(|g| !gone(g.id));
            b.flows
                .retain(|s| !s.flow.actions.iter().any(|a| matches!(*a, weft_api::flow::Action::Group(g) if gone(g))));
        }
    }
    st.set_removal_reason(weft_wire::openflow::removed::GROUP_DELETE);
    st.commit_config(new).map_err(|e| {
        tracing::warn!("OpenFlow group_mod failed: {e}");
        failed(code::INVALID_GROUP)
    })
}

/// The GROUP (statistics) reply entries for group `id` (OFPG_ALL: every group; one that is not there: none):
/// the flows that send to it, what it and each bucket took (summed over the datapath workers), and how long
/// it has been as it is.
pub(super) fn stats(st: &dyn Daemon, bridge: &str, req: &[u8]) -> Result<Vec<Vec<u8>>, (u16, u16)> {
    let [a, b, c, d, ..] = *req else { return Err((error::BAD_REQUEST, error::BAD_LEN)) };
    let id = u32::from_be_bytes([a, b, c, d]);
    let Some(br) = st.config().bridge(bridge) else { return Ok(Vec::new()) };
    let refs =
        |g: u32| br.flows.iter().filter(|s| s.flow.actions.contains(&weft_api::flow::Action::Group(g))).count() as u32;
    Ok(st
        .group_stats(bridge)
        .into_iter()
        .filter(|(g, ..)| id == group::ALL || *g == id)
        .map(|(g, s, age)| {
            let mut e = ((40 + 16 * s.buckets.len()) as u16).to_be_bytes().to_vec();
            e.extend_from_slice(&[0, 0]);
            e.extend_from_slice(&g.to_be_bytes());
            e.extend_from_slice(&refs(g).to_be_bytes());
            e.extend_from_slice(&[0; 4]);
            e.extend_from_slice(&s.packets.to_be_bytes());
            e.extend_from_slice(&s.bytes.to_be_bytes());
            e.extend_from_slice(&(age.as_secs() as u32).to_be_bytes());
            e.extend_from_slice(&age.subsec_nanos().to_be_bytes());
            for (p, b) in &s.buckets {
                e.extend_from_slice(&p.to_be_bytes());
                e.extend_from_slice(&b.to_be_bytes());
            }
            e
        })
        .collect())
}

/// The GROUP_DESC (every group) or GROUP_FEATURES reply entries.
pub(super) fn describe(st: &dyn Daemon, bridge: &str, kind: u16) -> Vec<Vec<u8>> {
    if kind == of::mp::GROUP_FEATURES {
        let mut e = Vec::new();
        group::put_group_features(&mut e);
        return vec![e];
    }
    let Some(b) = st.config().bridges.iter().find(|b| b.name == bridge) else { return Vec::new() };
    b.groups
        .iter()
        .map(|g| {
            let mut e = Vec::new();
            group::put_group_desc(&mut e, g);
            e
        })
        .collect()
}
