//! Which queued tunnel datagrams leave together as one UDP_SEGMENT train (see `Dataplane::batch_trains`).
//!
//! A train is the datagrams of one socket to one destination, every one as long as the first but the last,
//! which may be shorter. They need not be neighbours in the queue: a batch of many flows interleaves the
//! sockets of a pool, and the kernel keeps order only per socket and destination anyway. A datagram of that
//! socket and destination that cannot join ends the train, so each destination still receives a socket's
//! datagrams in queue order. The plan is made here, apart from the bytes, so that it can be tested alone.

use super::{UDP_GSO_BYTES, UDP_GSO_SEGMENTS};

/// No next datagram in a train.
pub(super) const NO_NEXT: u32 = u32::MAX;

/// Trains being gathered at once; with all of them open, a further socket's ends the one in the first slot.
const OPEN_TRAINS: usize = 32;

/// What the plan needs to know of one queued entry.
#[derive(Clone, Copy, Debug)]
pub(super) struct Candidate<K, C> {
    /// The socket and destination it leaves by, or `None` when it is no tunnel datagram at all.
    pub key: Option<K>,
    /// It may be part of a train (a single datagram that is not already a train and needs no late header).
    pub joinable: bool,
    /// What must be equal across a train besides the key (the port, the outer TOS and TTL).
    pub compat: C,
    /// Its length on the wire.
    pub len: usize,
}

#[derive(Clone, Copy)]
struct Open<K, C> {
    key: K,
    compat: C,
    last: u32,
    size: usize,
    count: u16,
    total: usize,
}

/// Plans the trains of `queue`: afterwards `next[j]` is the entry after `j` in its train ([`NO_NEXT`] at
/// a train's end or for an entry alone), and `member[j]` says that `j` joined an earlier entry's train.
pub(super) fn plan<K: Copy + PartialEq, C: Copy + PartialEq>(
    queue: impl Iterator<Item = Candidate<K, C>>,
    next: &mut Vec<u32>,
    member: &mut Vec<bool>,
) {
    next.clear();
    member.clear();
    let mut open: [Option<Open<K, C>>; OPEN_TRAINS] = [None; OPEN_TRAINS];
    let mut opened = 0;
    for (j, c) in queue.enumerate() {
        next.push(NO_NEXT);
        member.push(false);
        let Some(key) = c.key else { continue };
        let found =
            open[..opened].iter_mut().enumerate().find_map(|(k, o)| Some(k).zip(o.as_mut().filter(|o| o.key == key)));
        if let Some((k, o)) = found {
            let fits = c.joinable
                && o.compat == c.compat
                && c.len <= o.size
                && usize::from(o.count) < UDP_GSO_SEGMENTS
                && o.total + c.len <= UDP_GSO_BYTES;
            // Whether it joins or not, a shorter datagram or one that does not fit ends the train.
            let ends = !fits || c.len < o.size;
            if fits {
                next[o.last as usize] = j as u32;
                member[j] = true;
                o.last = j as u32;
                o.count += 1;
                o.total += c.len;
            }
            if ends {
                opened -= 1;
                open.swap(k, opened);
            }
            if fits {
                continue;
            }
        }
        if !c.joinable {
            continue;
        }
        if opened == OPEN_TRAINS {
            // Full: the train in the first slot ends where it is (its datagrams keep their order).
            open.copy_within(1.., 0);
            opened -= 1;
        }
        open[opened] = Some(Open { key, compat: c.compat, last: j as u32, size: c.len, count: 1, total: c.len });
        opened += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries as (key, len); every one joinable, one compat.
    fn run(q: &[(Option<u8>, usize)]) -> (Vec<u32>, Vec<bool>) {
        let (mut next, mut member) = (Vec::new(), Vec::new());
        let cands = q.iter().map(|&(key, len)| Candidate { key, joinable: true, compat: (), len });
        plan(cands, &mut next, &mut member);
        (next, member)
    }

    /// The trains as lists of entries, in the order their first entries are queued.
    fn trains(next: &[u32], member: &[bool]) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        for j in 0..next.len() {
            if member[j] {
                continue;
            }
            let mut t = vec![j];
            let mut k = next[j];
            while k != NO_NEXT {
                t.push(k as usize);
                k = next[k as usize];
            }
            out.push(t);
        }
        out
    }

    #[test]
    fn interleaved_sockets_each_make_one_train_in_queue_order() {
        // Four sockets, round robin, five datagrams each: four trains of five, each in queue order.
        let q: Vec<_> = (0..20).map(|i| (Some((i % 4) as u8), 100)).collect();
        let (next, member) = run(&q);
        let t = trains(&next, &member);
        assert_eq!(t.len(), 4);
        for (s, train) in t.iter().enumerate() {
            assert_eq!(train, &(0..5).map(|r| r * 4 + s).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_datagram_that_cannot_join_ends_its_sockets_train_only() {
        // Socket 1's second datagram is longer than its first: socket 1 starts again from it (a train may
        // not overtake it), socket 0's train goes on across it; the short one ends socket 0's train.
        let q = [(Some(0), 100), (Some(1), 100), (Some(1), 200), (Some(0), 100), (Some(1), 200), (Some(0), 50)];
        let (next, member) = run(&q);
        assert_eq!(trains(&next, &member), vec![vec![0, 3, 5], vec![1], vec![2, 4]]);
        // After a short last datagram, the socket's next datagram starts a new train.
        let q = [(Some(0), 100), (Some(0), 50), (Some(0), 100), (Some(0), 100)];
        let (next, member) = run(&q);
        assert_eq!(trains(&next, &member), vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn entries_that_may_not_join_keep_their_place() {
        let (mut next, mut member) = (Vec::new(), Vec::new());
        // Socket 0: a datagram, one that may not join (already a train), another; socket 1 of another port;
        // an entry of no socket between them.
        let q = [
            Candidate { key: Some(0u8), joinable: true, compat: 1u8, len: 100 },
            Candidate { key: None, joinable: false, compat: 1, len: 100 },
            Candidate { key: Some(1), joinable: true, compat: 1, len: 100 },
            Candidate { key: Some(1), joinable: true, compat: 2, len: 100 },
            Candidate { key: Some(0), joinable: false, compat: 1, len: 100 },
            Candidate { key: Some(0), joinable: true, compat: 1, len: 100 },
            Candidate { key: Some(0), joinable: true, compat: 1, len: 100 },
        ];
        plan(q.into_iter(), &mut next, &mut member);
        assert_eq!(trains(&next, &member), vec![vec![0], vec![1], vec![2], vec![3], vec![4], vec![5, 6]]);
    }

    #[test]
    fn trains_stop_at_the_kernels_limits() {
        let q: Vec<_> = (0..100).map(|_| (Some(0u8), 100)).collect();
        let (next, member) = run(&q);
        let t = trains(&next, &member);
        assert_eq!(t.iter().map(Vec::len).collect::<Vec<_>>(), vec![UDP_GSO_SEGMENTS, 100 - UDP_GSO_SEGMENTS]);
        let q: Vec<_> = (0..60).map(|_| (Some(0u8), 1400)).collect();
        let (next, member) = run(&q);
        let t = trains(&next, &member);
        assert!(t.iter().all(|t| t.len() * 1400 <= UDP_GSO_BYTES));
        assert_eq!(t.iter().map(Vec::len).sum::<usize>(), 60);
        assert_eq!(t[0].len(), UDP_GSO_BYTES / 1400);
    }

    #[test]
    fn more_sockets_than_open_trains_still_keep_each_sockets_order() {
        // 40 sockets round robin, three rounds: every entry appears once, and each socket's entries appear
        // in queue order in whatever trains they are in.
        let q: Vec<_> = (0..120).map(|i| (Some((i % 40) as u8), 100)).collect();
        let (next, member) = run(&q);
        let t = trains(&next, &member);
        let mut seen: Vec<usize> = t.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..120).collect::<Vec<_>>());
        for s in 0..40 {
            // The trains holding socket s's entries, in the order they leave.
            let order: Vec<usize> = t.iter().flatten().copied().filter(|&j| j % 40 == s).collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "socket {s}: {order:?}");
        }
    }
}
