//! What the rest of the daemon asks of the switch and tells it outside the packet path: MAC tables and
//! their changes, counters and statistics, link state, control-plane routes.

use super::*;

impl Switch {
    /// Makes this switch (a copy for `weft trace`) leave shared state alone: its `ct` actions ask the
    /// connection tracker what would happen and change nothing.
    pub fn dry_run(&mut self) {
        self.t.ct_dry = true;
    }

    /// The ports (by name) whose link is down: frames to them are counted as `link_down`, not sent.
    pub fn set_link_down(&mut self, names: HashSet<String>) {
        self.t.link_down = names;
        self.t.link_down_rt = self.pipe.ports.iter().map(|np| self.t.link_down.contains(&np.name)).collect();
    }

    /// The counters of port `port`, for the caller's receive and send accounting.
    pub fn counter(&mut self, port: PortIdx) -> &mut PortCounters {
        &mut self.t.counters[usize::from(port.0)]
    }

    /// The VTEPs a `remote_ip=flow` port's floods go to, as its control plane last said.
    pub fn flood_list(&self, port: PortIdx) -> Option<&Arc<[IpAddr]>> {
        self.t.cp_flood_rt.get(usize::from(port.0))?.as_ref()
    }

    /// Applies a control plane's changes to bridge `bridge`; false when there is no such bridge.
    pub fn control_plane(&mut self, bridge: &str, u: CpUpdate) -> bool {
        let Some(bi) = self.pipe.bridge_named(bridge) else { return false };
        let p = self.pipe.clone();
        let b = &p.bridges[bi];
        let port_of = |name: &str| b.ports.iter().copied().find(|i| p.port(*i).name == name);
        let origin = u.origin.unwrap_or(Origin::Etcd);
        if u.reset {
            self.t.fdbs[bi].remove_origin(origin);
            for i in &b.ports {
                self.t.cp_flood.remove(&p.port(*i).name);
                self.t.cp_flood_rt[usize::from(i.0)] = None;
            }
        }
        for (port, vteps) in u.flood {
            if let Some(i) = port_of(&port) {
                self.t.cp_flood_rt[usize::from(i.0)] = Some(vteps.clone());
            }
            self.t.cp_flood.insert(port, vteps);
        }
        for (vlan, mac) in u.remove {
            self.t.fdbs[bi].uninstall(vlan, mac, origin);
        }
        for (vlan, mac, port, vtep) in u.install {
            if let Some(i) = port_of(&port) {
                self.t.fdbs[bi].install(vlan, mac, i, Some(vtep), origin);
            }
        }
        true
    }

    /// `fdb show`.
    pub fn fdb_rows(&self, bridge: &str, now: Nanos) -> Option<Vec<FdbRow>> {
        let bi = self.pipe.bridge_named(bridge)?;
        let rows = self.t.fdbs[bi].snapshot(now).into_iter().map(
            |(vlan, mac, e, age): (u16, EthernetAddress, FdbEntry, u64)| {
                let port = self.pipe.port(e.port);
                FdbRow {
                    port: port.name.clone(),
                    ofport: port.ofport,
                    vlan,
                    mac,
                    age,
                    remote: e.remote,
                    origin: e.origin,
                }
            },
        );
        Some(rows.collect())
    }

    /// Starts or stops remembering what changes in a bridge's MAC table, for a watcher (a control plane)
    /// that is pushed the changes instead of reading the whole table again and again; false when there is
    /// no such bridge. The watch stays with the bridge across new pipelines.
    pub fn watch_fdb(&mut self, bridge: &str, on: bool) -> bool {
        let Some(bi) = self.pipe.bridge_named(bridge) else { return false };
        self.t.fdbs[bi].watch(on);
        true
    }

    /// Makes sure bridge `bridge` is watched (a bridge a new pipeline added again starts unwatched); false
    /// when there is no such bridge.
    pub fn watch_fdb_kept(&mut self, bridge: &str) -> bool {
        let Some(bi) = self.pipe.bridge_named(bridge) else { return false };
        if !self.t.fdbs[bi].watched() {
            self.t.fdbs[bi].watch(true);
        }
        true
    }

    /// What changed in a watched bridge's MAC table since the last call (`None`: nothing, not watched, or no
    /// such bridge). Bounded: past `fdb::CHANGE_LOG_MAX` changes it is the whole table once.
    pub fn fdb_changes(&mut self, bridge: &str, now: Nanos) -> Option<FdbDelta> {
        let bi = self.pipe.bridge_named(bridge)?;
        let row = |pipe: &Pipeline, vlan: u16, mac: EthernetAddress, e: FdbEntry, age: u64| {
            let port = pipe.port(e.port);
            FdbRow { port: port.name.clone(), ofport: port.ofport, vlan, mac, age, remote: e.remote, origin: e.origin }
        };
        let pipe = &self.pipe;
        Some(match self.t.fdbs[bi].take_changes(now)? {
            FdbChanges::Whole(all) => {
                FdbDelta::Whole(all.into_iter().map(|(v, m, e, a)| row(pipe, v, m, e, a)).collect())
            }
            FdbChanges::Some(list) => {
                FdbDelta::Changed(list.into_iter().map(|(v, m, e)| (v, m, e.map(|e| row(pipe, v, m, e, 0)))).collect())
            }
        })
    }

    /// `fdb flush`: forgets every learned entry of the bridge; false when there is no such bridge.
    pub fn fdb_flush(&mut self, bridge: &str) -> bool {
        let Some(bi) = self.pipe.bridge_named(bridge) else { return false };
        self.t.fdbs[bi].flush_learned();
        true
    }

    pub fn fdb_stats(&self, bridge: &str) -> Option<FdbStats> {
        let f = &self.t.fdbs[self.pipe.bridge_named(bridge)?];
        Some(FdbStats {
            entries: f.len(),
            max_entries: f.max_entries(),
            learn_misses: f.learn_misses,
            moves: f.moves,
            aged: f.aged,
        })
    }

    /// Every port of the bridge with its ofport and counters.
    pub fn port_counters(&self, bridge: &str) -> Option<Vec<(String, u32, PortCounters)>> {
        let b = &self.pipe.bridges[self.pipe.bridge_named(bridge)?];
        let row = |p: &PortIdx| {
            let port = self.pipe.port(*p);
            (port.name.clone(), port.ofport, self.t.counters[usize::from(p.0)].clone())
        };
        Some(b.ports.iter().map(row).collect())
    }

    /// Each flow's (id, packets, bytes, seconds since last used), the default flow's included.
    pub fn flow_stats(&self, bridge: &str, now: Nanos) -> Option<Vec<(u64, u64, u64, u64)>> {
        let bi = self.pipe.bridge_named(bridge)?;
        let b = &self.pipe.bridges[bi];
        let row = |id: u64, s: &FlowStat| (id, s.packets, s.bytes, now.saturating_sub(s.last_used) / SECOND);
        let mut out: Vec<_> = b.default_flow.map(|id| row(id, &self.t.default_stats[bi])).into_iter().collect();
        for (ti, t) in b.tables.iter().enumerate() {
            for (ri, r) in t.rules.iter().enumerate() {
                out.push(row(r.id, &self.t.flow_stats[bi][ti][ri]));
            }
        }
        Some(out)
    }

    /// Each group's statistics (this worker's share), by group id.
    pub fn group_stats(&self, bridge: &str) -> Option<Vec<(u32, group::GroupStat)>> {
        let bi = self.pipe.bridge_named(bridge)?;
        let stats = self.t.group_stats.get(bi)?;
        Some(self.pipe.bridges[bi].groups.iter().zip(stats).map(|(g, s)| (g.id, s.clone())).collect())
    }

    /// Each table's (lookups, matches), table 0 first.
    pub fn table_stats(&self, bridge: &str) -> Option<Vec<(u64, u64)>> {
        Some(self.t.table_stats[self.pipe.bridge_named(bridge)?].clone())
    }
}
