//! Several workers, each with its own copy of the switch, that tell each other what they learn
//! ([`Switch::take_learnt`] / [`Switch::apply_learnt`]): one address in the same place everywhere, moves
//! won by the latest sighting, and copies that do not age out while another worker sees the address.

use super::*;

/// `n` workers running one pipeline, sharing what they learn.
fn workers(p: Arc<Pipeline>, n: usize) -> Vec<Harness> {
    (0..n)
        .map(|_| {
            let mut h = Harness::new(p.clone());
            h.sw.share_learning(true);
            h
        })
        .collect()
}

/// Hands every worker what the others learned since the last exchange (what weftd does between batches).
fn exchange(ws: &mut [Harness]) {
    let mut all: Vec<Vec<Learnt>> = Vec::new();
    for w in ws.iter_mut() {
        let mut v = Vec::new();
        w.sw.take_learnt(&mut v);
        all.push(v);
    }
    for (i, w) in ws.iter_mut().enumerate() {
        for (j, changes) in all.iter().enumerate() {
            if i != j {
                w.sw.apply_learnt(changes);
            }
        }
    }
}

fn at(ws: &mut [Harness], now: Nanos) {
    for w in ws {
        w.now = now;
    }
}

#[test]
fn an_address_one_worker_learns_is_known_to_the_others() {
    let mut ws = workers(two_taps().build(), 2);
    ws[0].send("p1", &raw(BCAST, A));
    assert_eq!(ws[1].ports("p2", &raw(A, B)), ["br0", "p1", "p3"], "not told yet: a flood");
    exchange(&mut ws);
    assert_eq!(ws[1].ports("p2", &raw(A, C)), ["p1"]);
    let rows = ws[1].sw.fdb_rows("br0", ws[1].now).unwrap();
    assert!(rows.iter().any(|r| r.mac == A && r.port == "p1"));
}

#[test]
fn nothing_is_noted_for_others_when_the_switch_runs_alone() {
    let mut h = Harness::new(two_taps().build());
    h.send("p1", &raw(BCAST, A));
    let mut v = Vec::new();
    h.sw.take_learnt(&mut v);
    assert!(v.is_empty());
}

#[test]
fn the_same_address_seen_on_two_workers_at_once_ends_where_it_was_seen_last() {
    let mut ws = workers(two_taps().build(), 2);
    // Both learn A in the same batch, on different ports; worker 1's sighting is a nanosecond later.
    ws[0].send("p1", &raw(BCAST, A));
    ws[1].now += 1;
    ws[1].send("p2", &raw(BCAST, A));
    exchange(&mut ws);
    for w in ws.iter_mut() {
        assert_eq!(w.ports("p3", &raw(A, C)), ["p2"]);
    }
    // It moves back to p1 on worker 0: both follow, and the move is counted once in all.
    at(&mut ws, 2 * SECOND);
    ws[0].send("p1", &raw(BCAST, A));
    exchange(&mut ws);
    for w in ws.iter_mut() {
        assert_eq!(w.ports("p3", &raw(A, C)), ["p1"]);
    }
    let moves: u64 = ws.iter().map(|w| w.sw.fdb_stats("br0").unwrap().moves).sum();
    assert_eq!(moves, 1, "worker 1 learned A on p2 before hearing of p1; worker 0 moved it back");
}

#[test]
fn an_older_sighting_does_not_undo_a_newer_one() {
    let mut ws = workers(two_taps().build(), 2);
    at(&mut ws, 5 * SECOND);
    ws[1].send("p2", &raw(BCAST, A));
    let mut newer = Vec::new();
    ws[1].sw.take_learnt(&mut newer);
    // Worker 0 saw A on p1 earlier, but tells it only now.
    at(&mut ws, 4 * SECOND);
    ws[0].send("p1", &raw(BCAST, A));
    let mut older = Vec::new();
    ws[0].sw.take_learnt(&mut older);
    ws[1].sw.apply_learnt(&older);
    ws[0].sw.apply_learnt(&newer);
    at(&mut ws, 5 * SECOND);
    for w in ws.iter_mut() {
        assert_eq!(w.ports("p3", &raw(A, C)), ["p2"]);
    }
}

#[test]
fn a_copy_stays_while_another_worker_sees_the_address_and_ages_with_it() {
    let mut ws = workers(two_taps().limits(10, 1024).build(), 2);
    ws[0].send("p1", &raw(BCAST, A));
    exchange(&mut ws);
    // Only worker 0 sees A, every 250 ms for 30 s (three times the ageing time).
    let mut now = SECOND;
    while now < 31 * SECOND {
        now += SECOND / 4;
        at(&mut ws, now);
        ws[0].send("p1", &raw(BCAST, A));
        exchange(&mut ws);
        for w in ws.iter_mut() {
            w.sw.tick(now);
        }
    }
    let mut changes = 0;
    ws[0].sw.share_learning(true);
    ws[0].send("p1", &raw(BCAST, A));
    let mut v = Vec::new();
    ws[0].sw.take_learnt(&mut v);
    changes += v.len();
    assert!(changes <= 1, "a refresh within the same second is not repeated");
    assert_eq!(ws[1].ports("p2", &raw(A, B)), ["p1"], "worker 1's copy was kept alive");
    // Nobody sees A any more: every copy ages out.
    at(&mut ws, now + 11 * SECOND);
    for w in ws.iter_mut() {
        w.sw.tick(now + 11 * SECOND);
        assert_eq!(w.ports("p3", &raw(A, C)), ["br0", "p1", "p2"]);
    }
}

#[test]
fn changes_from_a_replaced_pipeline_are_left_out() {
    let mut ws = workers(two_taps().build(), 2);
    ws[0].send("p1", &raw(BCAST, A));
    let mut v = Vec::new();
    ws[0].sw.take_learnt(&mut v);
    let mut next = Net::default().bridge("br0").tap("p3", 3).tap("p1", 1).tap("p2", 2).build();
    Arc::get_mut(&mut next).unwrap().generation = 2;
    let now = ws[1].now;
    ws[1].sw.install(next, now);
    ws[1].sw.apply_learnt(&v);
    assert_eq!(ws[1].ports("p2", &raw(A, B)), ["br0", "p1", "p3"], "port 1 of generation 1 is not p1 now");
}

#[test]
fn workers_on_threads_agree_after_learning_and_moving_the_same_addresses() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc::{channel, Receiver, Sender};
    let p = two_taps().build();
    // One clock for both, as weftd's workers read one: each round of a worker starts at a later time.
    let clock = Arc::new(AtomicU64::new(SECOND));
    let (to_1, from_0) = channel::<Vec<Learnt>>();
    let (to_0, from_1) = channel::<Vec<Learnt>>();
    let run = |id: u64, tx: Sender<Vec<Learnt>>, rx: Receiver<Vec<Learnt>>| {
        let (p, clock) = (p.clone(), clock.clone());
        std::thread::spawn(move || {
            let mut h = Harness::new(p);
            h.sw.share_learning(true);
            // 64 addresses, each seen on a port that changes with the round; both workers see every one.
            let mut last = Vec::new();
            for round in 0..300u64 {
                h.now = clock.fetch_add(1, Ordering::SeqCst);
                last.clear();
                for i in 0..64u8 {
                    let mac = EthernetAddress([2, 0, 0, 1, 0, i]);
                    let port = ["p1", "p2", "p3"][((round + u64::from(i) + id) % 3) as usize];
                    h.send(port, &raw(BCAST, mac));
                    last.push((mac, h.now, port.to_string()));
                }
                let mut v = Vec::new();
                h.sw.take_learnt(&mut v);
                let _ = tx.send(v);
                while let Ok(v) = rx.try_recv() {
                    h.sw.apply_learnt(&v);
                }
            }
            drop(tx);
            for v in rx.iter() {
                h.sw.apply_learnt(&v);
            }
            let now = clock.load(Ordering::SeqCst);
            let mut rows: Vec<(EthernetAddress, String)> =
                h.sw.fdb_rows("br0", now).unwrap().into_iter().map(|r| (r.mac, r.port)).collect();
            rows.sort();
            (rows, last)
        })
    };
    let w0 = run(0, to_1, from_1);
    let w1 = run(1, to_0, from_0);
    let ((t0, last0), (t1, last1)) = (w0.join().unwrap(), w1.join().unwrap());
    assert_eq!(t0.len(), 64);
    assert_eq!(t0, t1, "both copies hold every address at one place");
    // That place is each address's latest sighting, whichever worker made it.
    for ((mac, port), (a, b)) in t0.iter().zip(last0.iter().zip(&last1)) {
        assert_eq!((mac, &a.0), (mac, &b.0));
        let latest = if a.1 > b.1 { &a.2 } else { &b.2 };
        assert_eq!(port, latest, "{mac}");
    }
}
