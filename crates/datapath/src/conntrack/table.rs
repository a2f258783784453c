//! The table's housekeeping: finding a connection by either of its keys, putting one in, taking one out
//! (with its NAT alias, which may live in another shard: taken out after the connection's shard is let go,
//! so that no two shard locks are ever held at once), the limits, expiry, dumps and flushes.

use super::*;

impl Conntrack {
    /// The connection `key` leads to: its shard (index and guard), its slot, and whether `key` is the
    /// alias of its reply direction. A stale alias (its connection gone) is taken away on the way.
    pub(super) fn find(&self, key: &ConnKey) -> Option<(usize, MutexGuard<'_, Shard>, u32, bool)> {
        let si = self.shard_of(key);
        let shard = lock(&self.shards[si]);
        match *shard.map.get(key)? {
            Entry::Conn(i) => Some((si, shard, i, false)),
            Entry::Alias { shard: ms, slot, gen } => {
                drop(shard);
                let ms = usize::from(ms);
                let main = lock(&self.shards[ms]);
                let ok = main
                    .conns
                    .get(slot as usize)
                    .is_some_and(|c| c.live && c.gen == gen && c.nat.as_ref().is_some_and(|n| n.alias == *key));
                if ok {
                    return Some((ms, main, slot, true));
                }
                drop(main);
                if slot != u32::MAX {
                    self.unlink(Some((*key, si as u16)), ms, slot);
                }
                None
            }
        }
    }

    /// Puts a connection into shard `si` unless its key is there already: its slot and generation.
    pub(super) fn insert(&self, si: usize, mut conn: Conn) -> Option<(u32, u32)> {
        let mut shard = lock(&self.shards[si]);
        if shard.map.contains_key(&conn.key) {
            return None;
        }
        let i = match shard.free.pop() {
            Some(i) => {
                conn.gen = shard.conns[i as usize].gen.wrapping_add(1);
                shard.conns[i as usize] = conn;
                i
            }
            None => {
                shard.conns.push(conn);
                (shard.conns.len() - 1) as u32
            }
        };
        shard.map.insert(conn.key, Entry::Conn(i));
        Some((i, conn.gen))
    }

    /// Takes connection `i` out of its shard; returns its NAT alias (key, shard) to [`Conntrack::unlink`]
    /// once the shard is let go.
    pub(super) fn remove(&self, shard: &mut Shard, i: u32) -> Option<(ConnKey, u16)> {
        let c = &mut shard.conns[i as usize];
        if !c.live {
            return None;
        }
        c.live = false;
        let (key, alias) = (c.key, c.nat.map(|n| (n.alias, n.alias_shard)));
        shard.map.remove(&key);
        shard.free.push(i);
        self.unreserve(key.zone);
        alias
    }

    /// Takes away an alias, if it still names slot `slot` of shard `main` (or is one being made, `slot`
    /// u32::MAX).
    pub(super) fn unlink(&self, alias: Option<(ConnKey, u16)>, main: usize, slot: u32) {
        let Some((key, si)) = alias else { return };
        let mut shard = lock(&self.shards[usize::from(si)]);
        if let Some(Entry::Alias { shard: ms, slot: s, .. }) = shard.map.get(&key) {
            if usize::from(*ms) == main && (*s == slot || *s == u32::MAX) {
                shard.map.remove(&key);
            }
        }
    }

    /// Counts a new connection in, if the table and its zone have room.
    pub(super) fn reserve(&self, zone: u16) -> bool {
        if self.count.fetch_add(1, Ordering::Relaxed) >= self.limit() {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let limit = self.zone_limits.read().unwrap_or_else(|e| e.into_inner()).get(&zone).copied();
        let mut counts = lock(&self.zone_counts);
        let n = counts.entry(zone).or_insert(0);
        if limit.is_some_and(|l| *n >= l) {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        *n += 1;
        true
    }

    /// Counts a connection out.
    pub(super) fn unreserve(&self, zone: u16) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        let mut counts = lock(&self.zone_counts);
        if let Some(n) = counts.get_mut(&zone) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&zone);
            }
        }
    }

    /// Removes expired connections, looking at `budget` entries at most (spread over the shards, each
    /// shard's walk going on where the last one stopped); returns how many it removed.
    pub fn sweep(&self, now: Nanos, budget: usize) -> usize {
        let per = (budget / SHARDS).max(1);
        let mut removed = 0;
        let mut aliases = Vec::new();
        let start = self.sweep_at.fetch_add(1, Ordering::Relaxed);
        for k in 0..SHARDS {
            let si = (start + k) % SHARDS;
            let mut shard = lock(&self.shards[si]);
            let n = shard.conns.len();
            for _ in 0..per.min(n) {
                let i = shard.cursor % n;
                shard.cursor = i + 1;
                let c = &shard.conns[i];
                if c.live && c.expires <= now {
                    if let Some(a) = self.remove(&mut shard, i as u32) {
                        aliases.push((a, si, i as u32));
                    }
                    removed += 1;
                }
            }
            drop(shard);
            for (a, si, i) in aliases.drain(..) {
                self.unlink(Some(a), si, i);
            }
        }
        self.counters.expired.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Every live connection (of `zone`, if given).
    pub fn dump(&self, zone: Option<u16>, now: Nanos) -> Vec<CtEntry> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            let shard = lock(s);
            for c in shard.conns.iter().filter(|c| c.live && c.expires > now) {
                if zone.is_some_and(|z| z != c.key.zone) {
                    continue;
                }
                let (tcp, icmp) = match c.proto {
                    Proto::Tcp(p) => (Some((p[0].state, p[1].state)), None),
                    Proto::Icmp { icmp_type, code, .. } => (None, Some((icmp_type, code))),
                    Proto::Other(_) => (None, None),
                };
                out.push(CtEntry {
                    zone: c.key.zone,
                    orig: c.orig(),
                    mark: c.mark,
                    label: c.label,
                    tcp,
                    icmp,
                    expires_in: (c.expires - now).div_ceil(SECOND),
                    reply: c.nat.map(|n| n.reply),
                });
            }
        }
        out
    }

    /// Forgets every connection (of `zone`, if given); returns how many.
    pub fn flush(&self, zone: Option<u16>) -> usize {
        let mut n = 0;
        let mut aliases = Vec::new();
        for (si, s) in self.shards.iter().enumerate() {
            let mut shard = lock(s);
            for i in 0..shard.conns.len() {
                let c = &shard.conns[i];
                if c.live && zone.is_none_or(|z| z == c.key.zone) {
                    if let Some(a) = self.remove(&mut shard, i as u32) {
                        aliases.push((a, si, i as u32));
                    }
                    n += 1;
                }
            }
            drop(shard);
            for (a, si, i) in aliases.drain(..) {
                self.unlink(Some(a), si, i);
            }
        }
        n
    }
}
