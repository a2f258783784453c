//! OpenFlow's asynchronous configuration (SET_ASYNC, GET_ASYNC): which packet-ins, port status messages and
//! flow removals a connection gets, by reason, for each of its roles (master or equal, slave). Until a
//! controller sets it, a connection gets what OpenFlow's default says (a slave: port status only); once set,
//! its masks decide.

use super::*;
use std::sync::atomic::AtomicU32;

/// OVS's default masks, as GET_ASYNC reports them over 1.3: packet-in, port status and flow removed, each
/// for master/equal then slave. Invalid-TTL packet-ins (`dec_ttl` at the end of a packet's life) are left
/// out until a controller asks for them, as in OVS.
const DEFAULT: [u32; 6] = [0x3, 0x0, 0x7, 0x7, 0xf, 0x0];

/// One connection's configuration, shared by its thread (which sets it) and whoever queues messages for it.
#[derive(Debug)]
pub(super) struct AsyncConfig {
    set: AtomicBool,
    masks: [AtomicU32; 6],
}

impl Default for AsyncConfig {
    fn default() -> Self {
        AsyncConfig { set: AtomicBool::new(false), masks: DEFAULT.map(AtomicU32::new) }
    }
}

impl AsyncConfig {
    /// Whether the connection takes `m` (an OpenFlow 1.3 PACKET_IN, PORT_STATUS or FLOW_REMOVED; anything
    /// else passes) in its role.
    pub(super) fn takes(&self, m: &[u8], slave: bool) -> bool {
        let (pair, reason) = match m.get(1).copied() {
            Some(msg::PACKET_IN) => (0, m.get(of::HEADER_LEN + 6)),
            Some(msg::PORT_STATUS) => (1, m.get(of::HEADER_LEN)),
            Some(msg::FLOW_REMOVED) => (2, m.get(of::HEADER_LEN + 10)),
            _ => return true,
        };
        if !self.set.load(Ordering::Relaxed) {
            // OpenFlow's default: a slave gets port status only; a master or equal connection everything but
            // invalid-TTL packet-ins (reason 2).
            return (!slave || pair == 1) && !(pair == 0 && reason == Some(&2));
        }
        let Some(&r) = reason else { return true };
        let mask = self.masks[pair * 2 + usize::from(slave)].load(Ordering::Relaxed);
        r >= 32 || mask & (1 << r) != 0
    }

    /// OpenFlow 1.3's SET_ASYNC body: the six masks.
    pub(super) fn set13(&self, body: &[u8]) -> Result<(), (u16, u16)> {
        if body.len() < 24 {
            return Err((error::BAD_REQUEST, error::BAD_LEN));
        }
        for (i, m) in self.masks.iter().enumerate() {
            m.store(
                u32::from_be_bytes([body[4 * i], body[4 * i + 1], body[4 * i + 2], body[4 * i + 3]]),
                Ordering::Relaxed,
            );
        }
        self.set.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// OpenFlow 1.4/1.5's SET_ASYNC body: properties, each changing one mask (0 packet-in slave, 1 packet-in
    /// master, 2/3 port status, 4/5 flow removed; the others are not weft's messages and are left alone).
    pub(super) fn set_props(&self, mut body: &[u8]) -> Result<(), (u16, u16)> {
        let bad_len = (error::BAD_REQUEST, error::BAD_LEN);
        while !body.is_empty() {
            if body.len() < 4 {
                return Err(bad_len);
            }
            let (kind, len) =
                (u16::from_be_bytes([body[0], body[1]]), usize::from(u16::from_be_bytes([body[2], body[3]])));
            if len < 4 || len > body.len() {
                return Err(bad_len);
            }
            if kind < 6 && len >= 8 {
                let (pair, slave) = (usize::from(kind / 2), kind % 2 == 0);
                let v = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                self.masks[pair * 2 + usize::from(slave)].store(v, Ordering::Relaxed);
            }
            body = body.get(len.div_ceil(8) * 8..).unwrap_or_default();
        }
        // Masks no property named keep what they were (the defaults at first).
        self.set.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// GET_ASYNC_REPLY's body in OpenFlow 1.3's form (translated for 1.4 and 1.5 with the reply).
    pub(super) fn reply13(&self) -> Vec<u8> {
        self.masks.iter().flat_map(|m| m.load(Ordering::Relaxed).to_be_bytes()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1.3 message of `kind` whose reason byte (at `at` in the body) is `reason`.
    fn msg_with(kind: u8, at: usize, reason: u8) -> Vec<u8> {
        let mut m = vec![4, kind, 0, 0, 0, 0, 0, 0];
        m.resize(of::HEADER_LEN + 16, 0);
        m[of::HEADER_LEN + at] = reason;
        m
    }

    #[test]
    fn defaults_then_masks_decide() {
        let c = AsyncConfig::default();
        let (pin, ps, fr) =
            (msg_with(msg::PACKET_IN, 6, 1), msg_with(msg::PORT_STATUS, 0, 2), msg_with(msg::FLOW_REMOVED, 10, 0));
        // OpenFlow's default: a slave gets port status only; nobody invalid-TTL packet-ins.
        assert!(c.takes(&pin, false) && c.takes(&ps, false) && c.takes(&fr, false));
        assert!(!c.takes(&msg_with(msg::PACKET_IN, 6, 2), false));
        assert!(!c.takes(&pin, true) && c.takes(&ps, true) && !c.takes(&fr, true));
        assert_eq!(c.reply13(), DEFAULT.iter().flat_map(|m| m.to_be_bytes()).collect::<Vec<u8>>());
        // 1.3: packet-ins for reason ACTION only to masters, everything to slaves, no port status.
        let body: Vec<u8> = [0x2u32, 0x3f, 0, 0, 0xf, 0xf].iter().flat_map(|m| m.to_be_bytes()).collect();
        c.set13(&body).unwrap();
        assert!(c.takes(&pin, false) && c.takes(&pin, true) && !c.takes(&msg_with(msg::PACKET_IN, 6, 0), false));
        assert!(!c.takes(&ps, false) && !c.takes(&ps, true) && c.takes(&fr, true));
        assert!(c.set13(&body[..20]).is_err(), "a short body");
        // 1.4: one property (port status, master) changes one mask; the others stay.
        c.set_props(&[0, 3, 0, 8, 0, 0, 0, 0x4]).unwrap();
        assert!(c.takes(&ps, false) && !c.takes(&ps, true));
        assert!(c.set_props(&[0, 3, 0, 9, 0, 0, 0, 0x4]).is_err(), "a property past the end");
    }
}
