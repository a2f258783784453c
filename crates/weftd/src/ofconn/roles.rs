//! Controller roles (OpenFlow 1.3 §6.3.7): each connection is `equal` until its controller asks otherwise
//! with ROLE_REQUEST. A `master` request makes every other master of the bridge a slave; a `slave` may read
//! but not change the switch (FLOW_MOD, GROUP_MOD, METER_MOD, PORT_MOD, TABLE_MOD and PACKET_OUT get
//! OFPBRC_IS_SLAVE) and gets neither packet-ins nor flow removals, only port status (the default
//! asynchronous configuration). Master and slave requests carry a generation ID: one older than the largest
//! seen for the bridge (compared as a signed difference, as the specification says) is refused as stale.

use super::*;
use std::sync::atomic::AtomicU32;

pub const NOCHANGE: u32 = 0;
pub const EQUAL: u32 = 1;
pub const MASTER: u32 = 2;
pub const SLAVE: u32 = 3;

/// OFPET_ROLE_REQUEST_FAILED and its codes; OFPBRC_IS_SLAVE.
const ROLE_REQUEST_FAILED: u16 = 11;
const STALE: u16 = 0;
const BAD_ROLE: u16 = 2;
const IS_SLAVE: u16 = 10;

/// The error a slave gets for a message that would change the switch, if `kind` is one.
pub(super) fn refused_to_slave(kind: u8, role: &AtomicU32) -> Option<(u16, u16)> {
    const TABLE_MOD: u8 = 17;
    let changes =
        matches!(kind, msg::FLOW_MOD | msg::GROUP_MOD | msg::METER_MOD | msg::PORT_MOD | msg::PACKET_OUT | TABLE_MOD);
    (changes && role.load(Ordering::Relaxed) == SLAVE).then_some((error::BAD_REQUEST, IS_SLAVE))
}

/// OpenFlow 1.4's ROLE_STATUS and its reason "another controller asked to be master".
pub(super) const ROLE_STATUS: u8 = 30;
const MASTER_REQUEST: u8 = 0;

/// Makes every master of the bridge but `mine` a slave, and tells each one so with ROLE_STATUS (queued in
/// 1.3's framing; only 1.4 and 1.5 connections are sent it, as only they have the message).
fn demote_others(mine: &Arc<AtomicU32>, sessions: &Mutex<Vec<Session>>, generation: Option<u64>) {
    for s in sessions.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if !Arc::ptr_eq(&s.role, mine)
            && s.role.compare_exchange(MASTER, SLAVE, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            let mut m = Vec::with_capacity(24);
            let at = of::start(&mut m, ROLE_STATUS, 0);
            m.extend_from_slice(&SLAVE.to_be_bytes());
            m.extend_from_slice(&[MASTER_REQUEST, 0, 0, 0]);
            m.extend_from_slice(&generation.unwrap_or(u64::MAX).to_be_bytes());
            of::finish(&mut m, at);
            let _ = s.queue.try_send(m);
        }
    }
}

/// Answers a ROLE_REQUEST body (role, pad, generation ID) of the connection whose role is `mine`: the
/// ROLE_REPLY body, or the error.
pub(super) fn role_request(
    body: &[u8],
    mine: &Arc<AtomicU32>,
    sessions: &Mutex<Vec<Session>>,
    generation: &Mutex<Option<u64>>,
) -> Result<Vec<u8>, (u16, u16)> {
    if body.len() < 16 {
        return Err((error::BAD_REQUEST, error::BAD_LEN));
    }
    let role = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let id = u64::from_be_bytes([body[8], body[9], body[10], body[11], body[12], body[13], body[14], body[15]]);
    let mut g = generation.lock().unwrap_or_else(|e| e.into_inner());
    match role {
        NOCHANGE | EQUAL => {}
        MASTER | SLAVE => {
            if g.is_some_and(|seen| (id.wrapping_sub(seen) as i64) < 0) {
                return Err((ROLE_REQUEST_FAILED, STALE));
            }
            *g = Some(id);
        }
        _ => return Err((ROLE_REQUEST_FAILED, BAD_ROLE)),
    }
    if role == MASTER {
        demote_others(mine, sessions, *g);
    }
    if role != NOCHANGE {
        mine.store(role, Ordering::Relaxed);
    }
    let mut r = mine.load(Ordering::Relaxed).to_be_bytes().to_vec();
    r.extend_from_slice(&[0; 4]);
    r.extend_from_slice(&g.unwrap_or(u64::MAX).to_be_bytes());
    Ok(r)
}

/// Nicira's NXT_ROLE_REQUEST (OpenFlow 1.0, no generation ID): body the role (0 other, that is equal; 1
/// master; 2 slave); the NXT_ROLE_REPLY body (the role now), or the error.
pub(super) fn nx_role_request(
    body: &[u8],
    mine: &Arc<AtomicU32>,
    sessions: &Mutex<Vec<Session>>,
) -> Result<Vec<u8>, (u16, u16)> {
    let Some(w) = body.get(..4) else { return Err((error::BAD_REQUEST, error::BAD_LEN)) };
    let role = match u32::from_be_bytes([w[0], w[1], w[2], w[3]]) {
        0 => EQUAL,
        1 => MASTER,
        2 => SLAVE,
        _ => return Err((ROLE_REQUEST_FAILED, BAD_ROLE)),
    };
    if role == MASTER {
        demote_others(mine, sessions, None);
    }
    mine.store(role, Ordering::Relaxed);
    Ok(match role {
        MASTER => 1u32,
        SLAVE => 2,
        _ => 0,
    }
    .to_be_bytes()
    .to_vec())
}

/// The error a slave gets for an OpenFlow 1.0 message that would change the switch (FLOW_MOD, PACKET_OUT,
/// PORT_MOD, and Nicira's flow and TLV table changes), if `m` is one.
pub(super) fn refused_to_slave10(m: &[u8], role: &AtomicU32) -> Option<(u16, u16)> {
    const PACKET_OUT: u8 = 13;
    const FLOW_MOD: u8 = 14;
    let vendor_change = m.get(1) == Some(&weft_api::of10::msg::VENDOR)
        && m.get(12..16).is_some_and(|s| {
            let sub = u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
            sub == weft_api::of10::nxt::FLOW_MOD || sub == super::tlv::TABLE_MOD
        });
    let changes =
        matches!(m.get(1).copied(), Some(PACKET_OUT | FLOW_MOD | weft_api::of10::msg::PORT_MOD)) || vendor_change;
    (changes && role.load(Ordering::Relaxed) == SLAVE).then_some((error::BAD_REQUEST, IS_SLAVE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(role: u32, id: u64) -> Vec<u8> {
        let mut b = role.to_be_bytes().to_vec();
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&id.to_be_bytes());
        b
    }

    /// Two connections' roles (starting as given) and the bridge's list of them.
    fn two_sessions(ra: u32, rb: u32) -> (Arc<AtomicU32>, Arc<AtomicU32>, Mutex<Vec<Session>>) {
        let (tx, _rx) = std::sync::mpsc::sync_channel(4);
        let (a, b) = (Arc::new(AtomicU32::new(ra)), Arc::new(AtomicU32::new(rb)));
        let session = |queue, role: &Arc<AtomicU32>| Session {
            queue,
            role: role.clone(),
            controller_id: Default::default(),
            asynccfg: Default::default(),
        };
        let sessions = Mutex::new(vec![session(tx.clone(), &a), session(tx, &b)]);
        (a, b, sessions)
    }

    #[test]
    fn nicira_roles_over_openflow_1_0() {
        let (a, b, sessions) = two_sessions(EQUAL, MASTER);
        assert_eq!(nx_role_request(&1u32.to_be_bytes(), &a, &sessions).unwrap(), 1u32.to_be_bytes());
        assert_eq!((a.load(Ordering::Relaxed), b.load(Ordering::Relaxed)), (MASTER, SLAVE), "one master");
        assert_eq!(nx_role_request(&9u32.to_be_bytes(), &a, &sessions), Err((ROLE_REQUEST_FAILED, BAD_ROLE)));
        // A 1.0 FLOW_MOD and an NXT_FLOW_MOD from the slave are refused; a stats request is not.
        let flow_mod = [1u8, 14, 0, 72, 0, 0, 0, 1];
        let mut nx = vec![1u8, 4, 0, 24, 0, 0, 0, 2];
        nx.extend_from_slice(&of::act::NX_VENDOR.to_be_bytes());
        nx.extend_from_slice(&weft_api::of10::nxt::FLOW_MOD.to_be_bytes());
        assert_eq!(refused_to_slave10(&flow_mod, &b), Some((error::BAD_REQUEST, IS_SLAVE)));
        assert_eq!(refused_to_slave10(&nx, &b), Some((error::BAD_REQUEST, IS_SLAVE)));
        assert_eq!(refused_to_slave10(&[1u8, 16, 0, 12, 0, 0, 0, 3], &b), None);
        assert_eq!(refused_to_slave10(&flow_mod, &a), None, "the master may");
    }

    #[test]
    fn one_master_slaves_refused_changes_stale_generations_refused() {
        let (a, b, sessions) = two_sessions(EQUAL, EQUAL);
        let generation = Mutex::new(None);
        let reply = role_request(&request(MASTER, 5), &a, &sessions, &generation).unwrap();
        assert_eq!(&reply[..4], &MASTER.to_be_bytes());
        assert_eq!(&reply[8..], &5u64.to_be_bytes());
        // b becomes master: a is a slave now, and may not change the switch; it is told so (ROLE_STATUS:
        // slave, because of a master request, generation 6).
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        sessions.lock().unwrap()[0].queue = tx;
        role_request(&request(MASTER, 6), &b, &sessions, &generation).unwrap();
        let status = rx.try_recv().expect("a ROLE_STATUS for the old master");
        assert_eq!(status[1], ROLE_STATUS);
        assert_eq!(&status[8..], &[&SLAVE.to_be_bytes()[..], &[0; 4], &6u64.to_be_bytes()].concat());
        assert!(rx.try_recv().is_err(), "one message");
        assert_eq!((a.load(Ordering::Relaxed), b.load(Ordering::Relaxed)), (SLAVE, MASTER));
        assert_eq!(refused_to_slave(msg::FLOW_MOD, &a), Some((error::BAD_REQUEST, IS_SLAVE)));
        assert_eq!(refused_to_slave(msg::MULTIPART_REQUEST, &a), None, "reading is fine");
        assert_eq!(refused_to_slave(msg::FLOW_MOD, &b), None);
        // An older generation is stale; wrapping around counts as newer.
        assert_eq!(role_request(&request(MASTER, 4), &a, &sessions, &generation), Err((ROLE_REQUEST_FAILED, STALE)));
        assert_eq!(a.load(Ordering::Relaxed), SLAVE, "nothing changed");
        *generation.lock().unwrap() = Some(u64::MAX - 1);
        assert!(role_request(&request(SLAVE, 3), &a, &sessions, &generation).is_ok());
        // NOCHANGE reads the role; equal needs no generation; an unknown role is refused.
        let reply = role_request(&request(NOCHANGE, 0), &b, &sessions, &generation).unwrap();
        assert_eq!(&reply[..4], &MASTER.to_be_bytes());
        role_request(&request(EQUAL, 0), &a, &sessions, &generation).unwrap();
        assert_eq!(a.load(Ordering::Relaxed), EQUAL);
        assert_eq!(role_request(&request(7, 9), &a, &sessions, &generation), Err((ROLE_REQUEST_FAILED, BAD_ROLE)));
    }
}
