//! Per-port packet counters, with drops kept by reason.

/// Why a packet was dropped. The name is what `weft dump-ports` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(usize)]
pub enum DropReason {
    /// Too short or inconsistent to be parsed.
    Malformed,
    /// A tunnel packet from an address no tunnel port of this socket is configured for.
    UnknownRemote,
    /// A tunnel packet from a configured remote, but with a VNI no tunnel port uses for it.
    WrongVni,
    /// Larger than the path behind the output port can carry.
    TooBig,
    /// The kernel refused to send it (full socket buffer, no route, interface down).
    TxError,
    /// A segmentation offload type weft does not implement.
    UnsupportedOffload,
    /// The MAC table is full and the source address could not be learned (the frame is still forwarded).
    FdbFull,
    /// A tunnel packet weft does not forward: a Geneve control (O bit) packet, or a payload that is not
    /// Ethernet.
    Unsupported,
    /// A Geneve packet with a critical option this port does not know (RFC 8926 §3.5 says drop it).
    CriticalOption,
    /// A frame of a VLAN the input port does not carry (a tagged frame on an access port, or a VLAN outside a
    /// trunk's list).
    Vlan,
    /// No flow of a table matched (OpenFlow 1.3 drops on a table miss).
    NoFlow,
    /// A flow's actions said drop (an empty action list).
    FlowDrop,
    /// `actions=controller` with no controller connected, or its queue full.
    NoController,
    /// A frame for a tunnel with IPsec before its SA is up (it never leaves in clear text).
    NoSa,
    /// A clear-text tunnel packet for a tunnel with IPsec (only ESP is accepted), or an ESP-protected one for a
    /// tunnel without.
    Cleartext,
    /// The output port's link is down (its interface gone or set down).
    LinkDown,
    /// `dec_ttl` on a packet whose TTL (hop limit) would reach zero.
    TtlExpired,
    /// Over the rate of an OpenFlow meter whose band drops.
    Meter,
    /// Sent through more patch ports, one behind the other, than a frame may cross (a loop of bridges).
    PatchLoop,
    /// The port's OpenFlow configuration (PORT_MOD: down, no-receive, no-forward) refuses it.
    PortConfig,
    /// A new connection the `ct` action was to commit, refused: the connection table (or its zone's share)
    /// is full.
    CtFull,
}

impl DropReason {
    pub const ALL: [DropReason; 21] = [
        DropReason::Malformed,
        DropReason::UnknownRemote,
        DropReason::WrongVni,
        DropReason::TooBig,
        DropReason::TxError,
        DropReason::UnsupportedOffload,
        DropReason::FdbFull,
        DropReason::Unsupported,
        DropReason::CriticalOption,
        DropReason::Vlan,
        DropReason::NoFlow,
        DropReason::FlowDrop,
        DropReason::NoController,
        DropReason::NoSa,
        DropReason::Cleartext,
        DropReason::LinkDown,
        DropReason::TtlExpired,
        DropReason::Meter,
        DropReason::PatchLoop,
        DropReason::PortConfig,
        DropReason::CtFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownRemote => "unknown_remote",
            DropReason::WrongVni => "wrong_vni",
            DropReason::TooBig => "too_big",
            DropReason::TxError => "tx_error",
            DropReason::UnsupportedOffload => "unsupported_offload",
            DropReason::FdbFull => "fdb_full",
            DropReason::Unsupported => "unsupported",
            DropReason::CriticalOption => "critical_option",
            DropReason::Vlan => "vlan",
            DropReason::NoFlow => "no_flow",
            DropReason::FlowDrop => "flow_drop",
            DropReason::NoController => "no_controller",
            DropReason::NoSa => "ipsec_no_sa",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::Cleartext => "ipsec_cleartext",
            DropReason::LinkDown => "link_down",
            DropReason::Meter => "meter",
            DropReason::PatchLoop => "patch_loop",
            DropReason::PortConfig => "port_config",
            DropReason::CtFull => "ct_full",
        }
    }
}

/// Counters of one port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DropReason::ALL.len()],
    /// On proxy tunnel ports: ARP requests / neighbour solicitations answered locally instead of sent.
    pub nd_answered: u64,
    /// On proxy tunnel ports: requests sent through because the answer was not known.
    pub nd_flooded: u64,
    /// On Geneve ports: options received (each option of each packet).
    pub geneve_options_rx: u64,
    /// Offloaded frames sent whole: a TSO/USO frame written to a TAP or AF_PACKET port with its virtio-net
    /// header, or a train of tunnel datagrams handed to the kernel in one UDP_SEGMENT send.
    pub gso_tx: u64,
    /// On tunnel ports: received TCP segments merged with others into one frame.
    pub gro_rx: u64,
}

impl PortCounters {
    /// Adds another worker's counters of the same port.
    pub fn add(&mut self, o: &PortCounters) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        for (a, b) in self.drops.iter_mut().zip(&o.drops) {
            *a += b;
        }
        self.nd_answered += o.nd_answered;
        self.nd_flooded += o.nd_flooded;
        self.geneve_options_rx += o.geneve_options_rx;
        self.gso_tx += o.gso_tx;
        self.gro_rx += o.gro_rx;
    }

    #[inline]
    pub fn rx(&mut self, bytes: usize) {
        self.rx_packets += 1;
        self.rx_bytes += bytes as u64;
    }

    #[inline]
    pub fn tx(&mut self, bytes: usize) {
        self.tx_packets += 1;
        self.tx_bytes += bytes as u64;
    }

    /// `packets` sent together, `bytes` in all.
    #[inline]
    pub fn tx_many(&mut self, packets: u16, bytes: usize) {
        self.tx_packets += u64::from(packets);
        self.tx_bytes += bytes as u64;
    }

    #[inline]
    pub fn drop(&mut self, why: DropReason) {
        self.drops[why as usize] += 1;
    }

    pub fn dropped(&self, why: DropReason) -> u64 {
        self.drops[why as usize]
    }

    /// Non-zero drop counters by name.
    pub fn drops_by_name(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL.iter().filter(|r| self.drops[**r as usize] > 0).map(|r| (r.name(), self.drops[*r as usize]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason() {
        let mut c = PortCounters::default();
        c.rx(100);
        c.drop(DropReason::WrongVni);
        c.drop(DropReason::WrongVni);
        assert_eq!(c.dropped(DropReason::WrongVni), 2);
        assert_eq!(c.drops_by_name().collect::<Vec<_>>(), vec![("wrong_vni", 2)]);
        assert_eq!((c.rx_packets, c.rx_bytes), (1, 100));
    }
}
