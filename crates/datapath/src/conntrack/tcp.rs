//! TCP state and window tracking, the algorithm pf and Open vSwitch's userspace conntrack use (Guido van
//! Rooij, "Real Stateful TCP Packet Filtering in IP Filter"): each end's lowest sequence number not yet
//! acknowledged, the highest the other end's window allows it to send, and its largest window. A segment
//! must fall in the window its receiver advertised and acknowledge nothing the other end has not sent;
//! a reset must carry the sequence number the receiver expects. What does not fit is invalid, and changes
//! nothing.

use super::packet::TcpSeg;
use weft_wire::tcp::{FLAG_ACK, FLAG_FIN, FLAG_PSH, FLAG_RST, FLAG_SYN};

const FLAG_URG: u8 = 0x20;

/// One end's state (ordered as the connection goes: a later state is a larger value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum PeerState {
    #[default]
    Closed,
    Listen,
    SynSent,
    SynRecv,
    Established,
    /// It sent a FIN.
    Closing,
    CloseWait,
    FinWait1,
    /// Its FIN was acknowledged.
    FinWait2,
    TimeWait,
}

impl PeerState {
    pub fn name(self) -> &'static str {
        match self {
            PeerState::Closed => "CLOSED",
            PeerState::Listen => "LISTEN",
            PeerState::SynSent => "SYN_SENT",
            PeerState::SynRecv => "SYN_RECV",
            PeerState::Established => "ESTABLISHED",
            PeerState::Closing => "CLOSING",
            PeerState::CloseWait => "CLOSE_WAIT",
            PeerState::FinWait1 => "FIN_WAIT_1",
            PeerState::FinWait2 => "FIN_WAIT_2",
            PeerState::TimeWait => "TIME_WAIT",
        }
    }
}

/// Window scale: the option was seen (the low bits hold the shift), or the connection was picked up in the
/// middle and the shift is unknown (then the largest is assumed).
const WS_SEEN: u8 = 0x80;
const WS_UNKNOWN: u8 = 0x40;
const WS_MASK: u8 = 0x0f;
const MAX_WSCALE: u8 = 14;
/// How far behind an acknowledgement may be: a maximal window and a segment's slack.
const MAX_ACK_WINDOW: i64 = 0xffff + 1500;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peer {
    pub state: PeerState,
    seqlo: u32,
    seqhi: u32,
    max_win: u32,
    wscale: u8,
}

/// What a segment did to its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// In the window: the connection goes on (it is established as far as matching goes).
    Valid,
    /// In the looser window (see [`update`]): it passes, but the connection's timer is not renewed.
    Loose,
    /// A SYN again before the other end answered: still a new connection.
    ValidNew,
    /// A SYN on a connection both ends closed: the old one is over, this starts a new one.
    Reopen,
    Invalid,
}

/// The timeout class a connection is in, from its ends' states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    FirstPacket,
    Opening,
    Established,
    Closing,
    FinWait,
    Closed,
}

/// Flag combinations no TCP sends (SYN with RST or FIN; no ACK with FIN, PUSH or URG; neither ACK, SYN nor
/// RST).
pub fn invalid_flags(flags: u8) -> bool {
    if flags & FLAG_SYN != 0 {
        if flags & (FLAG_RST | FLAG_FIN) != 0 {
            return true;
        }
    } else if flags & (FLAG_ACK | FLAG_RST) == 0 {
        return true;
    }
    flags & FLAG_ACK == 0 && flags & (FLAG_FIN | FLAG_PSH | FLAG_URG) != 0
}

/// Whether a segment may start a connection: valid flags and not a SYN-ACK (a connection is picked up
/// from its SYN or from the middle, not from half an opening).
pub fn valid_new(s: &TcpSeg) -> bool {
    !invalid_flags(s.flags) && s.flags & (FLAG_SYN | FLAG_ACK) != (FLAG_SYN | FLAG_ACK)
}

fn seq_geq(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) as i32 >= 0
}

fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The two ends of a connection from its first segment (sent by end 0).
pub fn new_conn(s: &TcpSeg) -> [Peer; 2] {
    let mut src = Peer { seqlo: s.seq, seqhi: s.seq.wrapping_add(s.payload).wrapping_add(1), ..Peer::default() };
    let mut dst = Peer::default();
    if s.flags & FLAG_SYN != 0 {
        src.seqhi = src.seqhi.wrapping_add(1);
        src.wscale = s.wscale.map_or(0, |w| w | WS_SEEN);
    } else {
        src.wscale = WS_UNKNOWN;
        dst.wscale = WS_UNKNOWN;
    }
    src.max_win = u32::from(s.win).max(1);
    if src.wscale & WS_MASK != 0 {
        src.max_win = src.max_win.div_ceil(1 << (src.wscale & WS_MASK));
    }
    if s.flags & FLAG_FIN != 0 {
        src.seqhi = src.seqhi.wrapping_add(1);
    }
    dst.seqhi = 1;
    dst.max_win = 1;
    src.state = PeerState::SynSent;
    dst.state = PeerState::Closed;
    [src, dst]
}

/// A segment from end `from` (0 the originator) on a tracked connection.
pub fn update(peers: &mut [Peer; 2], from: usize, s: &TcpSeg) -> Update {
    let flags = s.flags;
    if invalid_flags(flags) {
        return Update::Invalid;
    }
    let (a, b) = peers.split_at_mut(1);
    let (src, dst) = if from == 0 { (&mut a[0], &mut b[0]) } else { (&mut b[0], &mut a[0]) };
    if flags & (FLAG_SYN | FLAG_ACK) == FLAG_SYN {
        if dst.state >= PeerState::FinWait2 && src.state >= PeerState::FinWait2 {
            src.state = PeerState::Closed;
            dst.state = PeerState::Closed;
            return Update::Reopen;
        } else if src.state <= PeerState::SynSent {
            src.state = PeerState::SynSent;
            return Update::ValidNew;
        }
    }
    let (mut sws, mut dws) = (0u32, 0u32);
    if flags & FLAG_SYN == 0 {
        if src.wscale & WS_SEEN != 0 && dst.wscale & WS_SEEN != 0 {
            sws = u32::from(src.wscale & WS_MASK);
            dws = u32::from(dst.wscale & WS_MASK);
        } else if src.wscale & WS_UNKNOWN != 0 && dst.wscale & WS_UNKNOWN != 0 {
            sws = u32::from(MAX_WSCALE);
            dws = u32::from(MAX_WSCALE);
        }
    }
    let mut win = u32::from(s.win);
    let orig_seq = s.seq;
    let mut seq = s.seq;
    let mut end = seq.wrapping_add(s.payload);
    if flags & FLAG_SYN != 0 {
        end = end.wrapping_add(1);
    }
    if flags & FLAG_FIN != 0 {
        end = end.wrapping_add(1);
    }
    let mut check_ackskew = true;
    if src.state < PeerState::SynSent {
        // This end's first segment (the answer to a SYN, or a connection picked up in the middle).
        if flags & FLAG_SYN != 0 && dst.wscale & WS_SEEN != 0 {
            match s.wscale {
                Some(w) => {
                    src.wscale = w | WS_SEEN;
                    sws = u32::from(w);
                    win = win.div_ceil(1 << sws);
                    dws = u32::from(dst.wscale & WS_MASK);
                }
                None => {
                    // No scaling after all: the other end's window was counted scaled.
                    dst.max_win <<= dst.wscale & WS_MASK;
                    dst.wscale = 0;
                }
            }
        }
        src.seqlo = seq;
        src.state = PeerState::SynSent;
        let reach = end.wrapping_add((dst.max_win << dws).max(1));
        if src.seqhi == 1 || seq_geq(reach, src.seqhi) {
            src.seqhi = reach;
            check_ackskew = false;
        }
        src.max_win = src.max_win.max(win);
    }
    let mut ack = s.ack;
    if flags & FLAG_ACK == 0 || (ack == 0 && flags & (FLAG_ACK | FLAG_RST) == FLAG_ACK | FLAG_RST) {
        ack = dst.seqlo;
    }
    if seq == end {
        // No data: only the acknowledgement is checked.
        seq = src.seqlo;
        end = seq;
    }
    let ackskew = if check_ackskew { i64::from(dst.seqlo.wrapping_sub(ack) as i32) } else { 0 };
    let rst_ok = flags & FLAG_RST == 0
        || orig_seq == src.seqlo
        || orig_seq == src.seqlo.wrapping_add(1)
        || orig_seq.wrapping_add(1) == src.seqlo;
    let in_window = seq_geq(src.seqhi, end)
        && seq_geq(seq, src.seqlo.wrapping_sub(dst.max_win << dws))
        && ackskew >= -MAX_ACK_WINDOW
        && ackskew <= MAX_ACK_WINDOW << sws
        && rst_ok;
    let slide = |src: &mut Peer, dst: &mut Peer| {
        src.max_win = src.max_win.max(win);
        if seq_gt(end, src.seqlo) {
            src.seqlo = end;
        }
        let reach = ack.wrapping_add(win << sws);
        if seq_geq(reach, dst.seqhi) {
            dst.seqhi = ack.wrapping_add((win << sws).max(1));
        }
    };
    if in_window {
        slide(src, dst);
        if flags & FLAG_SYN != 0 && src.state < PeerState::SynSent {
            src.state = PeerState::SynSent;
        }
        if flags & FLAG_FIN != 0 && src.state < PeerState::Closing {
            src.state = PeerState::Closing;
        }
        if flags & FLAG_ACK != 0 {
            if dst.state == PeerState::SynSent {
                dst.state = PeerState::Established;
            } else if dst.state == PeerState::Closing {
                dst.state = PeerState::FinWait2;
            }
        }
        if flags & FLAG_RST != 0 {
            src.state = PeerState::TimeWait;
            dst.state = PeerState::TimeWait;
        }
        Update::Valid
    } else if (dst.state < PeerState::SynSent || dst.state >= PeerState::FinWait2 || src.state >= PeerState::FinWait2)
        && seq_geq(src.seqhi.wrapping_add(MAX_ACK_WINDOW as u32), end)
        && seq_geq(seq, src.seqlo.wrapping_sub(MAX_ACK_WINDOW as u32))
    {
        // Looser: SYNs shot before the other end answers, a connection picked up late, stray segments
        // right after a close. The state's timer is not renewed, so a flood of these does not keep it.
        slide(src, dst);
        if flags & FLAG_FIN != 0 && src.state < PeerState::Closing {
            src.state = PeerState::Closing;
        }
        if flags & FLAG_RST != 0 {
            src.state = PeerState::TimeWait;
            dst.state = PeerState::TimeWait;
        }
        Update::Loose
    } else {
        Update::Invalid
    }
}

/// The timeout class of a connection whose ends are in these states.
pub fn phase(p: &[Peer; 2]) -> Phase {
    let (a, b) = (p[0].state, p[1].state);
    if a >= PeerState::FinWait2 && b >= PeerState::FinWait2 {
        Phase::Closed
    } else if a >= PeerState::Closing && b >= PeerState::Closing {
        Phase::FinWait
    } else if a < PeerState::Established || b < PeerState::Established {
        Phase::Opening
    } else if a >= PeerState::Closing || b >= PeerState::Closing {
        Phase::Closing
    } else {
        Phase::Established
    }
}
