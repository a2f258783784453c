//! METER_MOD (one configuration transaction each, like a FLOW_MOD) and the meter multipart replies.

use super::*;
use weft_api::meter::{self, Command, MeterStats};

/// Adds, changes or deletes a meter of `bridge`. Deleting a meter deletes the flows that use it, as Open
/// vSwitch does; deleting OFPM_ALL deletes every meter (and those flows); deleting a meter that is not there
/// is no error.
pub(super) fn meter_mod(st: &mut dyn Daemon, bridge: &str, body: &[u8]) -> Result<(), (u16, u16)> {
    use error::meter as code;
    let mm = meter::parse_meter_mod(body)?;
    let failed = |c: u16| (error::METER_MOD_FAILED, c);
    let mut new = st.config().clone();
    let b = new.bridges.iter_mut().find(|b| b.name == bridge).ok_or(failed(code::INVALID_METER))?;
    let id = mm.meter.id;
    let at = b.meters.binary_search_by_key(&id, |m| m.id);
    match (mm.command, at) {
        (Command::Add, Ok(_)) => return Err(failed(code::METER_EXISTS)),
        (Command::Add, Err(_)) if b.meters.len() >= meter::MAX_METERS => return Err(failed(code::OUT_OF_METERS)),
        (Command::Add, Err(i)) => b.meters.insert(i, mm.meter),
        (Command::Modify, Ok(i)) => b.meters[i] = mm.meter,
        (Command::Modify, Err(_)) => return Err(failed(code::UNKNOWN_METER)),
        (Command::Delete, _) => {
            let gone = |m: u32| id == meter::ALL || m == id;
            b.meters.retain(|m| !gone(m.id));
            b.flows
                .retain(|s| !s.flow.actions.iter().any(|a| matches!(*a, weft_api::flow::Action::Meter(m) if gone(m))));
        }
    }
    st.set_removal_reason(weft_wire::openflow::removed::METER_DELETE);
    st.commit_config(new).map_err(|e| {
        tracing::warn!("OpenFlow meter_mod failed: {e}");
        failed(code::INVALID_METER)
    })
}

/// The METER (statistics), METER_CONFIG or METER_FEATURES reply entries; `req` is the request's body
/// (the meter id, OFPM_ALL for all).
pub(super) fn describe(st: &dyn Daemon, bridge: &str, kind: u16, req: &[u8]) -> Result<Vec<Vec<u8>>, (u16, u16)> {
    if kind == of::mp::METER_FEATURES {
        let mut e = Vec::new();
        meter::put_meter_features(&mut e);
        return Ok(vec![e]);
    }
    let id = match req {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => return Err((error::BAD_REQUEST, error::BAD_LEN)),
    };
    let Some(b) = st.config().bridge(bridge) else { return Ok(Vec::new()) };
    let chosen: Vec<&meter::Meter> = b.meters.iter().filter(|m| id == meter::ALL || m.id == id).collect();
    if chosen.is_empty() && id != meter::ALL {
        return Err((error::METER_MOD_FAILED, error::meter::UNKNOWN_METER));
    }
    Ok(chosen
        .into_iter()
        .map(|m| {
            let mut e = Vec::new();
            if kind == of::mp::METER_CONFIG {
                meter::put_meter_config(&mut e, m);
            } else {
                let flows =
                    b.flows.iter().filter(|s| s.flow.actions.contains(&weft_api::flow::Action::Meter(m.id))).count()
                        as u32;
                let (counts, duration) = st.meter_counts(bridge, m.id).unwrap_or_default();
                let mut bands = counts.bands;
                bands.resize(m.bands.len(), (0, 0));
                let s = MeterStats { id: m.id, flows, packets: counts.packets, bytes: counts.bytes, duration, bands };
                meter::put_meter_stats(&mut e, &s);
            }
            e
        })
        .collect())
}
