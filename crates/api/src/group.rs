//! OpenFlow groups (OpenFlow 1.3 §5.6): a flow's `group:N` action hands the packet to group N, whose buckets
//! each hold an action list. `all` runs every bucket (on its own copy of the packet), `select` one bucket
//! chosen by a hash of the flow (weighted, so one flow stays on one bucket), `indirect` its only bucket,
//! `fast_failover` the first bucket whose watched port is up. Groups belong to a bridge's configuration (they
//! survive restarts with the flows); GROUP_MOD changes them, one configuration transaction each.

use crate::flow::Action;
use crate::ofp::{actions_from, OfError};
use serde::{Deserialize, Serialize};
use weft_wire::openflow::{error, Tlv};

/// OFPG_ANY / OFPP_ANY: "no group / port watched"; OFPG_ALL: every group (in a delete).
pub const ANY: u32 = 0xffff_ffff;
pub const ALL: u32 = 0xffff_fffc;
/// Group ids above this are reserved.
pub const MAX: u32 = 0xffff_ff00;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupType {
    All,
    Select,
    Indirect,
    FastFailover,
}

impl GroupType {
    pub fn name(self) -> &'static str {
        match self {
            GroupType::All => "all",
            GroupType::Select => "select",
            GroupType::Indirect => "indirect",
            GroupType::FastFailover => "ff",
        }
    }

    fn wire(self) -> u8 {
        self as u8
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub weight: u16,
    /// The port (OpenFlow number) and group whose liveness decides a fast-failover bucket ([`ANY`]: none).
    pub watch_port: u32,
    pub watch_group: u32,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: u32,
    pub kind: GroupType,
    pub buckets: Vec<Bucket>,
}

/// GROUP_MOD's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Modify,
    Delete,
}

/// A decoded GROUP_MOD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMod {
    pub command: Command,
    pub group: Group,
}

const FAILED: u16 = error::GROUP_MOD_FAILED;

/// Decodes an OpenFlow 1.3 GROUP_MOD body and checks it as OpenFlow says (the error to answer otherwise).
pub fn parse_group_mod(body: &[u8]) -> Result<GroupMod, OfError> {
    if body.len() < 8 {
        return Err((error::BAD_REQUEST, error::BAD_LEN));
    }
    let command = match u16::from_be_bytes([body[0], body[1]]) {
        0 => Command::Add,
        1 => Command::Modify,
        2 => Command::Delete,
        _ => return Err((FAILED, error::group::BAD_COMMAND)),
    };
    let kind = match body[2] {
        0 => GroupType::All,
        1 => GroupType::Select,
        2 => GroupType::Indirect,
        3 => GroupType::FastFailover,
        _ if command == Command::Delete => GroupType::All,
        _ => return Err((FAILED, error::group::BAD_TYPE)),
    };
    let id = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    if command != Command::Delete && id > MAX {
        return Err((FAILED, error::group::INVALID_GROUP));
    }
    let mut buckets = Vec::new();
    let mut rest = &body[8..];
    while !rest.is_empty() {
        if rest.len() < 16 {
            return Err((error::BAD_REQUEST, error::BAD_LEN));
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if len < 16 || len > rest.len() || len % 8 != 0 {
            return Err((error::BAD_REQUEST, error::BAD_LEN));
        }
        let b = &rest[..len];
        let tlvs: Vec<Tlv<'_>> =
            weft_wire::openflow::parse_tlvs(&b[16..], "action").map_err(|_| (error::BAD_ACTION, error::BAD_LEN))?;
        let mut actions = Vec::new();
        actions_from(&tlvs, &mut actions)?;
        if actions.iter().any(|a| matches!(a, Action::Group(_))) {
            return Err((FAILED, error::group::CHAINING_UNSUPPORTED));
        }
        // A learned flow names the flow that learned it: weft learns from flows only.
        if actions.iter().any(|a| matches!(a, Action::Learn(_))) {
            return Err((error::BAD_ACTION, error::BAD_ACTION_TYPE));
        }
        buckets.push(Bucket {
            weight: u16::from_be_bytes([b[2], b[3]]),
            watch_port: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            watch_group: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            actions,
        });
        rest = &rest[len..];
    }
    let group = Group { id, kind, buckets };
    if command != Command::Delete {
        check(&group)?;
    }
    Ok(GroupMod { command, group })
}

/// What OpenFlow asks of a group's buckets.
fn check(g: &Group) -> Result<(), OfError> {
    match g.kind {
        GroupType::Indirect if g.buckets.len() != 1 => Err((FAILED, error::group::INVALID_GROUP)),
        GroupType::Select if g.buckets.iter().any(|b| b.weight == 0) && g.buckets.len() > 1 => {
            Err((FAILED, error::group::WEIGHT_UNSUPPORTED))
        }
        GroupType::FastFailover if g.buckets.iter().any(|b| b.watch_port == ANY && b.watch_group == ANY) => {
            Err((FAILED, error::group::BAD_WATCH))
        }
        // Liveness by another group's is not followed: only ports are watched.
        GroupType::FastFailover if g.buckets.iter().any(|b| b.watch_group != ANY) => {
            Err((FAILED, error::group::WATCH_UNSUPPORTED))
        }
        _ => Ok(()),
    }
}

/// A group as GROUP_DESC describes it (length, type, id, buckets).
pub fn put_group_desc(out: &mut Vec<u8>, g: &Group) {
    let at = out.len();
    out.extend_from_slice(&[0, 0, g.kind.wire(), 0]);
    out.extend_from_slice(&g.id.to_be_bytes());
    for b in &g.buckets {
        let bat = out.len();
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&b.weight.to_be_bytes());
        out.extend_from_slice(&b.watch_port.to_be_bytes());
        out.extend_from_slice(&b.watch_group.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        crate::ofp::put_action_list(out, &b.actions, crate::flow::Ctx::default());
        let len = (out.len() - bat) as u16;
        out[bat..bat + 2].copy_from_slice(&len.to_be_bytes());
    }
    let len = (out.len() - at) as u16;
    out[at..at + 2].copy_from_slice(&len.to_be_bytes());
}

/// GROUP_FEATURES: the four types, weights and liveness; at most [`MAX_GROUPS`] of each type.
pub fn put_group_features(out: &mut Vec<u8>) {
    out.extend_from_slice(&0xfu32.to_be_bytes()); // all, select, indirect, fast failover
    out.extend_from_slice(&0x3u32.to_be_bytes()); // select weight, select liveness
    for _ in 0..4 {
        out.extend_from_slice(&(MAX_GROUPS as u32).to_be_bytes());
    }
    // Actions each type's buckets may hold: output, the VLAN, MPLS and TTL ones, set_field, experimenter.
    let actions: u32 = (1 << 0)
        | (1 << 11)
        | (1 << 12)
        | (1 << 15)
        | (1 << 16)
        | (1 << 17)
        | (1 << 18)
        | (1 << 19)
        | (1 << 20)
        | (1 << 21)
        | (1 << 23)
        | (1 << 24)
        | (1 << 25);
    for _ in 0..4 {
        out.extend_from_slice(&actions.to_be_bytes());
    }
}

/// Groups one bridge may hold.
pub const MAX_GROUPS: usize = 65_536;

impl std::fmt::Display for Group {
    /// As `ovs-ofctl -O OpenFlow13 dump-groups` prints a group.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "group_id={},type={}", self.id, self.kind.name())?;
        for b in &self.buckets {
            f.write_str(",bucket=")?;
            if self.kind == GroupType::Select && b.weight != 0 {
                write!(f, "weight:{},", b.weight)?;
            }
            if b.watch_port != ANY {
                write!(f, "watch_port:{},", b.watch_port)?;
            }
            f.write_str("actions=")?;
            if b.actions.is_empty() {
                f.write_str("drop")?;
            }
            for (i, a) in b.actions.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{a}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(weight: u16, watch: u32, port: u32) -> Vec<u8> {
        let mut b = vec![0, 32];
        b.extend_from_slice(&weight.to_be_bytes());
        b.extend_from_slice(&watch.to_be_bytes());
        b.extend_from_slice(&ANY.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&[0, 0, 0, 16]);
        b.extend_from_slice(&port.to_be_bytes());
        b.extend_from_slice(&[0xff, 0xe5, 0, 0, 0, 0, 0, 0]);
        b
    }

    fn group_mod(cmd: u16, kind: u8, id: u32, buckets: &[Vec<u8>]) -> Vec<u8> {
        let mut m = cmd.to_be_bytes().to_vec();
        m.extend_from_slice(&[kind, 0]);
        m.extend_from_slice(&id.to_be_bytes());
        for b in buckets {
            m.extend_from_slice(b);
        }
        m
    }

    #[test]
    fn group_mods_are_read_checked_and_described_back_as_sent() {
        let body = group_mod(0, 1, 7, &[bucket(1, ANY, 2), bucket(2, ANY, 3)]);
        let gm = parse_group_mod(&body).unwrap();
        assert_eq!(
            (gm.command, gm.group.id, gm.group.kind, gm.group.buckets.len()),
            (Command::Add, 7, GroupType::Select, 2)
        );
        assert_eq!(
            gm.group.to_string(),
            "group_id=7,type=select,bucket=weight:1,actions=output:2,bucket=weight:2,actions=output:3"
        );
        let mut desc = Vec::new();
        put_group_desc(&mut desc, &gm.group);
        assert_eq!(&desc[8..], &body[8..], "buckets read back byte for byte");
        assert_eq!(u16::from_be_bytes([desc[0], desc[1]]) as usize, desc.len());
        // What OpenFlow forbids.
        let bad = |b: Vec<u8>| parse_group_mod(&b).unwrap_err();
        assert_eq!(bad(group_mod(0, 2, 1, &[bucket(0, ANY, 2), bucket(0, ANY, 3)])).1, error::group::INVALID_GROUP);
        assert_eq!(bad(group_mod(0, 3, 1, &[bucket(0, ANY, 2)])).1, error::group::BAD_WATCH);
        assert_eq!(bad(group_mod(0, 9, 1, &[])).1, error::group::BAD_TYPE);
        assert_eq!(bad(group_mod(7, 0, 1, &[])).1, error::group::BAD_COMMAND);
        assert_eq!(bad(group_mod(0, 0, ALL, &[])).1, error::group::INVALID_GROUP);
        let mut short = group_mod(0, 0, 1, &[bucket(0, ANY, 2)]);
        short.truncate(short.len() - 3);
        assert_eq!(bad(short), (error::BAD_REQUEST, error::BAD_LEN));
        // A fast-failover group watching ports is fine; deleting every group needs no type.
        assert!(parse_group_mod(&group_mod(0, 3, 1, &[bucket(0, 2, 2), bucket(0, 3, 3)])).is_ok());
        assert_eq!(parse_group_mod(&group_mod(2, 0, ALL, &[])).unwrap().command, Command::Delete);
    }
}
