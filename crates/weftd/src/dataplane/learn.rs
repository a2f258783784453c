//! What `learn` actions read, and the `fin_timeout`s TCP FINs meet, on their way from the workers to the
//! control plane, which changes the flows ([`crate::control::State::learn`]). A worker sends the same learn
//! (same flow, same values) at most once a second, so that a stream of packets running a learn costs the
//! control plane one flow change, and a second's refresh of its hard timeout, however fast it runs.

use super::*;
use std::hash::{Hash, Hasher};
use weft_datapath::switch::{FinSeen, LearnedFlow};

/// A change of the flow tables the traffic asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowMsg {
    Learn(LearnMsg),
    /// A TCP FIN or RST ran flow `flow`'s `fin_timeout`: its timeouts come down to `idle` and `hard`.
    Fin {
        bridge: String,
        flow: u64,
        idle: u16,
        hard: u16,
    },
}

/// A learn for the control plane: the `ordinal`-th learn of flow `flow` of `bridge` read `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnMsg {
    pub bridge: String,
    pub flow: u64,
    pub ordinal: u8,
    pub values: Vec<u128>,
}

/// Learns waiting for the control plane, at most this many (more are dropped: the packets that run them
/// again will be learned later).
const QUEUE_MAX: usize = 4096;
/// Learns one worker remembers having sent (then it forgets those older than a second).
const SEEN_MAX: usize = 1 << 16;

/// The workers' learns, waiting for the control plane.
#[derive(Default)]
pub struct LearnQueue {
    queue: Mutex<Vec<FlowMsg>>,
    ready: std::sync::Condvar,
}

impl LearnQueue {
    fn push(&self, m: FlowMsg) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() < QUEUE_MAX {
            q.push(m);
            self.ready.notify_one();
        }
    }

    /// Waits for learns, then gives all that came within `gather` of the first.
    pub fn wait(&self, gather: std::time::Duration) -> Vec<FlowMsg> {
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            while q.is_empty() {
                q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        }
        std::thread::sleep(gather);
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Dataplane {
    /// Hands a learn to the control plane, unless this worker sent the same within the last second.
    pub(super) fn learn(&mut self, pipeline: &Pipeline, l: &LearnedFlow) {
        let values = &l.values[..usize::from(l.n)];
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (l.bridge, l.flow, l.ordinal, values).hash(&mut h);
        if !self.first_in_a_second(h.finish()) {
            return;
        }
        let Some(b) = pipeline.core.bridges.get(l.bridge) else { return };
        self.sharing.learns.push(FlowMsg::Learn(LearnMsg {
            bridge: b.name.clone(),
            flow: l.flow,
            ordinal: l.ordinal,
            values: values.to_vec(),
        }));
    }

    /// Hands a `fin_timeout` a FIN or RST met to the control plane (once a second per flow and timeouts).
    pub(super) fn fin(&mut self, pipeline: &Pipeline, f: &FinSeen) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ("fin", f.bridge, f.flow, f.idle, f.hard).hash(&mut h);
        if !self.first_in_a_second(h.finish()) {
            return;
        }
        let Some(b) = pipeline.core.bridges.get(f.bridge) else { return };
        self.sharing.learns.push(FlowMsg::Fin { bridge: b.name.clone(), flow: f.flow, idle: f.idle, hard: f.hard });
    }

    /// Whether this worker sent nothing with this hash within the last second (and remembers it now).
    fn first_in_a_second(&mut self, key: u64) -> bool {
        let now = self.now();
        if self.learn_seen.get(&key).is_some_and(|&t| now.saturating_sub(t) < weft_datapath::SECOND) {
            return false;
        }
        if self.learn_seen.len() >= SEEN_MAX {
            self.learn_seen.retain(|_, t| now.saturating_sub(*t) < weft_datapath::SECOND);
            if self.learn_seen.len() >= SEEN_MAX {
                self.learn_seen.clear();
            }
        }
        self.learn_seen.insert(key, now);
        true
    }
}
