//! The NORMAL action: a learning switch.
//!
//! Source addresses are learned per VLAN (with the remote VTEP when the frame came through a tunnel);
//! known unicast goes to one port, broadcast, multicast and unknown unicast are flooded to every port but the
//! one the frame came in on.

use crate::fdb::{Fdb, Learned};
use crate::{Nanos, PortIdx};
use std::net::IpAddr;
use weft_wire::EthernetAddress;

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// To one port (and, for a tunnel port, to this remote VTEP when known).
    Output { port: PortIdx, remote: Option<IpAddr> },
    /// To every port of the bridge except the input port.
    Flood,
    /// Nowhere: the destination sits behind the port the frame came from.
    Filter,
}

/// What learning the source did alongside the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub forward: Forward,
    pub learned: Option<Learned>,
}

/// Learns `src` and decides where a frame to `dst` goes.
#[inline]
pub fn normal(
    fdb: &mut Fdb,
    in_port: PortIdx,
    in_remote: Option<IpAddr>,
    vlan: u16,
    src: EthernetAddress,
    dst: EthernetAddress,
    now: Nanos,
) -> Decision {
    let learned = src.is_unicast().then(|| fdb.learn(vlan, src, in_port, in_remote, now));
    Decision { forward: decide(fdb, in_port, vlan, dst, now), learned }
}

/// Where a frame to `dst` goes, without learning anything (`weft trace` asks this).
#[inline]
pub fn decide(fdb: &Fdb, in_port: PortIdx, vlan: u16, dst: EthernetAddress, now: Nanos) -> Forward {
    if dst.is_multicast() {
        return Forward::Flood;
    }
    match fdb.lookup(vlan, dst, now) {
        Some(e) if e.port == in_port => Forward::Filter,
        Some(e) => Forward::Output { port: e.port, remote: e.remote },
        None => Forward::Flood,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SECOND;

    const A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xa]);
    const B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xb]);

    #[test]
    fn floods_unknown_then_forwards_learned() {
        let mut fdb = Fdb::default();
        let d = normal(&mut fdb, PortIdx(0), None, 0, A, EthernetAddress::BROADCAST, 0);
        assert_eq!(d.forward, Forward::Flood);
        assert_eq!(d.learned, Some(Learned::New));
        let vtep: IpAddr = "192.0.2.12".parse().unwrap();
        assert_eq!(
            normal(&mut fdb, PortIdx(2), Some(vtep), 0, B, A, SECOND).forward,
            Forward::Output { port: PortIdx(0), remote: None }
        );
        assert_eq!(
            normal(&mut fdb, PortIdx(0), None, 0, A, B, SECOND).forward,
            Forward::Output { port: PortIdx(2), remote: Some(vtep) }
        );
    }

    #[test]
    fn unknown_unicast_floods_and_vlans_are_separate() {
        let mut fdb = Fdb::default();
        normal(&mut fdb, PortIdx(1), None, 10, B, A, 0);
        assert_eq!(normal(&mut fdb, PortIdx(0), None, 20, A, B, 0).forward, Forward::Flood);
        assert_eq!(
            normal(&mut fdb, PortIdx(0), None, 10, A, B, 0).forward,
            Forward::Output { port: PortIdx(1), remote: None }
        );
    }

    #[test]
    fn same_port_is_filtered_and_multicast_sources_not_learned() {
        let mut fdb = Fdb::default();
        normal(&mut fdb, PortIdx(1), None, 0, B, A, 0);
        assert_eq!(normal(&mut fdb, PortIdx(1), None, 0, A, B, 0).forward, Forward::Filter);
        let d = normal(&mut fdb, PortIdx(1), None, 0, EthernetAddress::BROADCAST, A, 0);
        assert_eq!(d.learned, None);
    }

    #[test]
    fn entries_age_back_to_flooding() {
        let mut fdb = Fdb::new(300, 100);
        normal(&mut fdb, PortIdx(1), None, 0, B, A, 0);
        assert!(matches!(normal(&mut fdb, PortIdx(0), None, 0, A, B, 299 * SECOND).forward, Forward::Output { .. }));
        assert_eq!(normal(&mut fdb, PortIdx(0), None, 0, A, B, 600 * SECOND).forward, Forward::Flood);
    }
}
