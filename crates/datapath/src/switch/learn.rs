//! The actions that ask the control plane to change flows: `learn` (the fields it reads) and `fin_timeout`
//! (a TCP FIN or RST met).

use super::*;

/// `learn`: reads the fields its [`ActRt::LearnSrc`]s name (the first of `rest`) into a record for the control
/// plane. How many of `rest` it took.
pub(super) fn learn<O: Observer>(r: &mut Run<'_, '_, O>, act: ActRt, rest: &[ActRt], st: &ActState) -> usize {
    let ActRt::Learn { n, ordinal, flow } = act else { return 0 };
    let srcs = &rest[..usize::from(n).min(rest.len())];
    let mut l = LearnedFlow { bridge: r.bridge, flow, ordinal, n: 0, values: [0; LEARN_SOURCES] };
    for (v, a) in l.values.iter_mut().zip(srcs) {
        if let ActRt::LearnSrc(s) = *a {
            *v = st.key.get_bits(s);
            l.n += 1;
        }
    }
    r.obs.on(|| note(format!("learn: the {} field(s) a flow is learned from", l.n)));
    r.out.learned.push(l);
    srcs.len()
}

/// `fin_timeout`: a TCP packet with FIN or RST asks for the flow's timeouts to come down.
pub(super) fn fin_timeout<O: Observer>(r: &mut Run<'_, '_, O>, act: ActRt, st: &ActState) {
    const FIN_OR_RST: u128 = 0x001 | 0x004;
    let ActRt::FinTimeout { idle, hard, flow } = act else { return };
    if st.key.get(slot::TCP_FLAGS) & FIN_OR_RST != 0 && flow != u64::MAX {
        r.obs.on(|| note("fin_timeout: a FIN or RST; the flow's timeouts come down".to_string()));
        r.out.fins.push(FinSeen { bridge: r.bridge, flow, idle, hard });
    }
}
