//! OpenFlow 1.4 bundles (OFPT_BUNDLE_CONTROL, OFPT_BUNDLE_ADD_MESSAGE): flow, group, meter and port changes
//! gathered under an id and applied together on commit — as one configuration change, so that the switch
//! goes from the old tables to the new ones at once, or not at all when one of them fails (`ovs-ofctl
//! --bundle`). Over OpenFlow 1.3 the same messages come as ONF's experimenter extension (what
//! `ovs-ofctl -O OpenFlow13 --bundle` sends), with bundle errors as ONF experimenter errors.

use super::*;

pub(super) const CONTROL: u8 = 33;
pub(super) const ADD_MESSAGE: u8 = 34;
/// OFPET_BUNDLE_FAILED and its codes.
const FAILED: u16 = 17;
const BAD_ID: u16 = 2;
const BUNDLE_EXIST: u16 = 3;
const BUNDLE_CLOSED: u16 = 4;
const OUT_OF_BUNDLES: u16 = 5;
const BAD_TYPE: u16 = 6;
const MSG_BAD_LEN: u16 = 8;
const MSG_UNSUP: u16 = 10;
const MSG_TOO_MANY: u16 = 12;
const MSG_FAILED: u16 = 13;
/// Bundles one connection holds open at once, and messages one bundle holds.
const BUNDLES_MAX: usize = 16;
const MESSAGES_MAX: usize = 1 << 18;

/// ONF's experimenter id, and its bundle messages' types over OpenFlow 1.3 (the bodies are 1.4's).
const ONF: u32 = 0x4f4e_4600;
const ONF_CONTROL: u32 = 2300;
const ONF_ADD: u32 = 2301;
/// ONF's bundle error codes over 1.3: this plus 1.4's code, as an experimenter error.
const ONF_ERROR_BASE: u16 = 2300;

/// What a bundle control message asks (its replies are the request's type plus one).
const OPEN: u16 = 0;
const CLOSE: u16 = 2;
const COMMIT: u16 = 4;
const DISCARD: u16 = 6;

#[derive(Default)]
struct Bundle {
    closed: bool,
    /// In OpenFlow 1.3's form, as the handler takes them.
    msgs: Vec<Vec<u8>>,
}

/// A connection's open bundles.
#[derive(Default)]
pub(super) struct Bundles {
    open: std::collections::HashMap<u32, Bundle>,
}

/// A BUNDLE_CONTROL reply (or request echo) for `id`.
fn control_msg(xid: u32, id: u32, kind: u16, flags: u16) -> Vec<u8> {
    let mut r = Vec::new();
    let at = of::start(&mut r, CONTROL, xid);
    r.extend_from_slice(&id.to_be_bytes());
    r.extend_from_slice(&kind.to_be_bytes());
    r.extend_from_slice(&flags.to_be_bytes());
    of::finish(&mut r, at);
    r
}

impl Bundles {
    /// BUNDLE_ADD_MESSAGE: the message joins its bundle (opened by it if need be). An error, or nothing.
    pub(super) fn add(&mut self, h: &of::Header, m: &[u8], version: u8) -> Vec<Vec<u8>> {
        let body = &m[of::HEADER_LEN..];
        let fail = |code: u16| vec![error_msg(h.xid, (FAILED, code), m)];
        if body.len() < 8 + of::HEADER_LEN {
            return fail(MSG_BAD_LEN);
        }
        let id = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let inner = &body[8..];
        let Ok(ih) = of::Header::parse(inner) else { return fail(MSG_BAD_LEN) };
        let len = usize::from(ih.length);
        if len < of::HEADER_LEN || len > inner.len() || ih.version != version {
            return fail(MSG_BAD_LEN);
        }
        if !matches!(ih.kind, msg::FLOW_MOD | msg::GROUP_MOD | msg::PORT_MOD | msg::METER_MOD) {
            return fail(MSG_UNSUP);
        }
        if !self.open.contains_key(&id) && self.open.len() >= BUNDLES_MAX {
            return fail(OUT_OF_BUNDLES);
        }
        let b = self.open.entry(id).or_default();
        if b.closed {
            return fail(BUNDLE_CLOSED);
        }
        if b.msgs.len() >= MESSAGES_MAX {
            return fail(MSG_TOO_MANY);
        }
        let inner = match version {
            of::VERSION => inner[..len].to_vec(),
            of15::VERSION => match of15::to13(&inner[..len]) {
                Ok(t) => t,
                Err(e) => return vec![error_msg(ih.xid, e, &inner[..len])],
            },
            _ => of14::to13(&inner[..len]),
        };
        b.msgs.push(inner);
        vec![]
    }

    /// BUNDLE_CONTROL: open, close, commit or discard. Committing runs the bundle's messages through the
    /// handler with the configuration changes held back, then applies the result as one change; when a
    /// message fails, its error comes back (with its own xid) and nothing changes.
    pub(super) fn control(
        &mut self,
        st: &mut dyn Daemon,
        bridge: &str,
        h: &of::Header,
        m: &[u8],
        miss_send_len: &mut u16,
    ) -> Vec<Vec<u8>> {
        let body = &m[of::HEADER_LEN..];
        let fail = |code: u16| vec![error_msg(h.xid, (FAILED, code), m)];
        if body.len() < 8 {
            return fail(MSG_BAD_LEN);
        }
        let id = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let (kind, flags) = (u16::from_be_bytes([body[4], body[5]]), u16::from_be_bytes([body[6], body[7]]));
        let reply = |k: u16| vec![control_msg(h.xid, id, k + 1, flags)];
        match kind {
            OPEN if self.open.contains_key(&id) => fail(BUNDLE_EXIST),
            OPEN if self.open.len() >= BUNDLES_MAX => fail(OUT_OF_BUNDLES),
            OPEN => {
                // Atomic and ordered or not, a bundle commits as one change, in order.
                self.open.insert(id, Bundle::default());
                reply(OPEN)
            }
            CLOSE => match self.open.get_mut(&id) {
                None => fail(BAD_ID),
                Some(b) if b.closed => fail(BUNDLE_CLOSED),
                Some(b) => {
                    b.closed = true;
                    reply(CLOSE)
                }
            },
            DISCARD => match self.open.remove(&id) {
                None => fail(BAD_ID),
                Some(_) => reply(DISCARD),
            },
            COMMIT => {
                let Some(b) = self.open.remove(&id) else { return fail(BAD_ID) };
                let before = st.config().clone();
                st.defer_commits(true);
                let mut errors = Vec::new();
                for inner in &b.msgs {
                    let Ok(ih) = of::Header::parse(inner) else { continue };
                    let out = handle(st, bridge, &ih, inner, miss_send_len);
                    errors.extend(out.into_iter().filter(|r| r.get(1) == Some(&msg::ERROR)));
                    if !errors.is_empty() {
                        break;
                    }
                }
                st.defer_commits(false);
                let after = st.config().clone();
                st.restore_config(before);
                if errors.is_empty() {
                    if let Err(e) = st.commit_config(after) {
                        tracing::warn!(%bridge, "bundle {id}: {e}");
                        return fail(MSG_FAILED);
                    }
                    return reply(COMMIT);
                }
                errors.extend(fail(MSG_FAILED));
                errors
            }
            _ => fail(BAD_TYPE),
        }
    }
}

impl Bundles {
    /// An OpenFlow 1.3 EXPERIMENTER message that is ONF's bundle control or add message: handled as 1.4's
    /// (the same body), the replies turned back into ONF's shape. `None`: not one of those.
    pub(super) fn onf13(
        &mut self,
        st: &mut dyn Daemon,
        bridge: &str,
        m: &[u8],
        miss_send_len: &mut u16,
    ) -> Option<Vec<Vec<u8>>> {
        let body = m.get(of::HEADER_LEN..)?;
        let word = |i: usize| body.get(i..i + 4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
        if word(0)? != ONF {
            return None;
        }
        let kind = match word(4)? {
            ONF_CONTROL => CONTROL,
            ONF_ADD => ADD_MESSAGE,
            _ => return None,
        };
        let mut as14 = Vec::with_capacity(m.len() - 8);
        as14.extend_from_slice(&[m[0], kind, 0, 0]);
        as14.extend_from_slice(&m[4..8]);
        as14.extend_from_slice(&body[8..]);
        let len = u16::try_from(as14.len()).ok()?;
        as14[2..4].copy_from_slice(&len.to_be_bytes());
        let h = of::Header::parse(&as14).ok()?;
        let out = if kind == CONTROL {
            self.control(st, bridge, &h, &as14, miss_send_len)
        } else {
            self.add(&h, &as14, of::VERSION)
        };
        Some(out.into_iter().map(|r| onf_reply(r, m)).collect())
    }
}

/// A bundle reply in ONF's 1.3 shape: a control reply as an experimenter message, a bundle error as ONF's
/// experimenter error (about `request`); anything else (an error of a message the bundle held) as it is.
fn onf_reply(r: Vec<u8>, request: &[u8]) -> Vec<u8> {
    let xid = u32::from_be_bytes([r[4], r[5], r[6], r[7]]);
    let mut o = Vec::new();
    match r.get(1) {
        Some(&CONTROL) => {
            let at = of::start(&mut o, msg::EXPERIMENTER, xid);
            o.extend_from_slice(&ONF.to_be_bytes());
            o.extend_from_slice(&ONF_CONTROL.to_be_bytes());
            o.extend_from_slice(&r[of::HEADER_LEN..]);
            of::finish(&mut o, at);
        }
        Some(&msg::ERROR) if r.get(8..10) == Some(&FAILED.to_be_bytes()[..]) => {
            let code = u16::from_be_bytes([r[10], r[11]]);
            let at = of::start(&mut o, msg::ERROR, xid);
            o.extend_from_slice(&super::tlv::EXPERIMENTER_ERROR.to_be_bytes());
            o.extend_from_slice(&(ONF_ERROR_BASE + code).to_be_bytes());
            o.extend_from_slice(&ONF.to_be_bytes());
            o.extend_from_slice(&request[..request.len().min(64)]);
            of::finish(&mut o, at);
        }
        _ => return r,
    }
    o
}
