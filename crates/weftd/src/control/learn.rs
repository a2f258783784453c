//! Flows that `learn` actions build: the workers' reads ([`crate::dataplane::FlowMsg`]) become flows of the
//! configuration, changed together in one commit per batch, and refreshed without one; and the timeouts a
//! `fin_timeout` brings down.

use super::*;

impl State {
    /// Adds or modifies the flows a batch of learns builds. A flow learned again as it is changes nothing but
    /// the start of its hard timeout (kept here, not in the configuration); a learn whose flow is gone (the
    /// configuration changed since the packet ran it), or whose flow cannot be built (an output to a port
    /// the bridge no longer has), is dropped.
    pub fn learn(&mut self, batch: Vec<crate::dataplane::FlowMsg>) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut new = self.config.config().clone();
        let mut changed = false;
        for m in batch {
            let m = match m {
                crate::dataplane::FlowMsg::Learn(m) => m,
                crate::dataplane::FlowMsg::Fin { bridge, flow, idle, hard } => {
                    changed |= new.reduce_timeouts(&bridge, flow, idle, hard);
                    continue;
                }
            };
            let Some(b) = new.bridge(&m.bridge) else { continue };
            let Some(s) = b.flows.iter().find(|s| s.id == m.flow) else { continue };
            let learns = weft_api::flow::learn::learns_in(&s.flow.actions);
            let Some((_, l, specs)) = learns.get(usize::from(m.ordinal)) else { continue };
            let Some(text) = weft_api::flow::learn::learned_flow_text(l, specs, &m.values) else { continue };
            let flow = match new.parse_flows(&m.bridge, std::slice::from_ref(&text)) {
                Ok(mut f) => f.remove(0),
                Err(e) => {
                    tracing::debug!(bridge = %m.bridge, "learn: cannot add {text:?}: {e}");
                    continue;
                }
            };
            match new.learn_flow(&m.bridge, flow, l.limit) {
                Ok(weft_api::config::Learned::Refreshed(id)) => {
                    self.learn_refreshed.insert((m.bridge.clone(), id), now);
                }
                Ok(weft_api::config::Learned::Added | weft_api::config::Learned::Modified) => changed = true,
                Ok(weft_api::config::Learned::Limited) | Err(_) => {}
            }
        }
        if changed {
            if let Err(e) = self.commit_config(new) {
                tracing::warn!("learn: cannot add the learned flows: {e}");
            }
        }
    }

    /// When flow `id` of `bridge` was last learned again as it was (seconds since the epoch), if it was.
    pub fn learned_again(&self, bridge: &str, id: u64) -> Option<u64> {
        self.learn_refreshed.get(&(bridge.to_string(), id)).copied()
    }
}
