//! VLAN membership of a port, as Open vSwitch's `tag` and `trunks` define it.
//!
//! Inside the switch a frame is untagged and belongs to one VLAN (0 for untagged traffic); ports decide
//! which VLANs they let in and out, and whether a frame leaves tagged.
//! - An **access** port (`tag=N`) takes untagged (or priority-tagged, VID 0) frames into VLAN N and drops
//!   tagged ones; it sends only VLAN N's frames, untagged.
//! - A **trunk** port (no tag) carries the VLANs in `trunks`, or all of them when the list is empty. Tagged
//!   frames join their VLAN, untagged ones VLAN 0; frames of VLAN 0 leave untagged, others tagged. Tunnel
//!   ports are trunks unless configured otherwise, so 802.1Q frames cross a tunnel unchanged.

use std::sync::Arc;

/// Where a port stands on VLANs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VlanMode {
    Access(u16),
    /// A trunk; `None` carries every VLAN, otherwise a bitmap of the 4096 VLAN IDs.
    Trunk(Option<Arc<[u64; 64]>>),
}

impl Default for VlanMode {
    fn default() -> Self {
        VlanMode::Trunk(None)
    }
}

/// How a frame of some VLAN leaves a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// The port does not carry the VLAN.
    Drop,
    Untagged,
    Tagged,
}

impl VlanMode {
    /// From the configuration's `tag` and `trunks`.
    pub fn new(tag: Option<u16>, trunks: &[u16]) -> VlanMode {
        match tag {
            Some(t) => VlanMode::Access(t & 0x0fff),
            None if trunks.is_empty() => VlanMode::Trunk(None),
            None => {
                let mut bits = [0u64; 64];
                for &v in trunks {
                    let v = usize::from(v & 0x0fff);
                    bits[v / 64] |= 1 << (v % 64);
                }
                VlanMode::Trunk(Some(Arc::new(bits)))
            }
        }
    }

    fn carries(&self, vid: u16) -> bool {
        match self {
            VlanMode::Access(t) => *t == vid,
            VlanMode::Trunk(None) => true,
            VlanMode::Trunk(Some(bits)) => {
                let v = usize::from(vid & 0x0fff);
                bits[v / 64] & (1 << (v % 64)) != 0
            }
        }
    }

    /// The VLAN a frame arriving with 802.1Q tag control `tci` (or untagged) belongs to, with the priority
    /// bits it keeps (as a TCI); `None` when the port does not accept it.
    pub fn ingress(&self, tci: Option<u16>) -> Option<u16> {
        let vid = tci.map_or(0, |t| t & 0x0fff);
        match self {
            VlanMode::Access(t) if vid == 0 => Some(*t),
            VlanMode::Access(_) => None,
            VlanMode::Trunk(_) if self.carries(vid) => Some(tci.unwrap_or(0)),
            VlanMode::Trunk(_) => None,
        }
    }

    /// How a frame of VLAN `vid` leaves this port.
    pub fn egress(&self, vid: u16) -> Egress {
        let vid = vid & 0x0fff;
        match self {
            VlanMode::Access(t) if *t == vid => Egress::Untagged,
            VlanMode::Trunk(_) if self.carries(vid) && vid == 0 => Egress::Untagged,
            VlanMode::Trunk(_) if self.carries(vid) => Egress::Tagged,
            _ => Egress::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_port() {
        let a = VlanMode::new(Some(10), &[]);
        assert_eq!(a.ingress(None), Some(10));
        assert_eq!(a.ingress(Some(0x6000)), Some(10), "priority-tagged frames are untagged ones");
        assert_eq!(a.ingress(Some(10)), None, "tagged frames are dropped, even of its own VLAN");
        assert_eq!(a.egress(10), Egress::Untagged);
        assert_eq!(a.egress(11), Egress::Drop);
        assert_eq!(a.egress(0), Egress::Drop);
    }

    #[test]
    fn trunk_of_all_and_of_some() {
        let all = VlanMode::default();
        assert_eq!(all.ingress(None), Some(0));
        assert_eq!(all.ingress(Some(0xa014)), Some(0xa014), "priority bits are kept");
        assert_eq!((all.egress(0), all.egress(4094)), (Egress::Untagged, Egress::Tagged));

        let some = VlanMode::new(None, &[20, 30]);
        assert_eq!(some.ingress(Some(20)), Some(20));
        assert_eq!(some.ingress(Some(21)), None);
        assert_eq!(some.ingress(None), None, "untagged frames need VLAN 0 in trunks");
        assert_eq!((some.egress(30), some.egress(0), some.egress(31)), (Egress::Tagged, Egress::Drop, Egress::Drop));
        let with_native = VlanMode::new(None, &[0, 20]);
        assert_eq!(with_native.ingress(None), Some(0));
        assert_eq!(with_native.egress(0), Egress::Untagged);
    }
}
