//! Permanent replication slots (the config's `slots`): which ones this
//! member's server creates, advances and drops. Pure: the agent lists the
//! server's slots and carries the plan out.
//!
//! Every running server keeps every permanent physical slot, so that one
//! survives a failover. On the primary a consumer moves it; a replica's
//! copy is advanced to the primary's position (published in the holder's
//! member record), never past its own replay nor backwards, so that after
//! a failover the consumer continues from the new primary while no
//! replica keeps WAL for ever. Only slots this member made for the config
//! and the config no longer names are dropped: an operator's own slot is
//! never touched.

use raftgres_state::{ClusterState, Lsn, SlotKind, member_slot_name};
use std::collections::BTreeSet;

/// A replication slot as the local server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSlot {
    pub name: String,
    pub physical: bool,
    pub active: bool,
    pub restart_lsn: Option<Lsn>,
}

/// What the local server is, for the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotServer {
    /// A writable primary holding the lease: consumers move the slots.
    Primary,
    /// A running standby, at this replay position.
    Replica { replay_lsn: Lsn },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermanentSlotPlan {
    pub create: Vec<String>,
    /// Slot name and the position to advance it to, always ahead of its own.
    pub advance: Vec<(String, Lsn)>,
    pub drop: Vec<String>,
    /// The names this member made for the config and still keeps once the
    /// plan is carried out: remembered (in its member record) to drop them
    /// when the config no longer names them.
    pub kept: BTreeSet<String>,
}

/// The physical slots the config asks for, less any named like a member's
/// own slot (refused by the config's validation; a member that joins
/// later under such a name keeps its slot managed once, as a member's).
pub fn permanent_slot_names(state: &ClusterState) -> BTreeSet<String> {
    let taken: BTreeSet<String> = state.members.keys().map(|m| member_slot_name(m)).collect();
    state
        .config
        .iter()
        .flat_map(|config| &config.values.slots)
        .filter(|(name, slot)| slot.kind == SlotKind::Physical && !taken.contains(*name))
        .map(|(name, _)| name.clone())
        .collect()
}

/// The plan for `me`'s server, whose slots are `present`; `made` are the
/// names it made for the config before (see [`PermanentSlotPlan::kept`]).
pub fn plan_permanent_slots(
    state: &ClusterState,
    me: &str,
    server: SlotServer,
    present: &[LocalSlot],
    made: &BTreeSet<String>,
) -> PermanentSlotPlan {
    let wanted = permanent_slot_names(state);
    let found = |name: &str| present.iter().find(|s| s.name == name);
    let member_slots: BTreeSet<String> =
        state.members.keys().map(|m| member_slot_name(m)).collect();
    let mut plan = PermanentSlotPlan::default();
    for name in &wanted {
        if found(name).is_none() {
            plan.create.push(name.clone());
        }
        plan.kept.insert(name.clone());
    }
    for name in made.difference(&wanted) {
        let Some(slot) = found(name) else {
            continue;
        };
        if !slot.physical || member_slots.contains(name) {
            // Not the slot this member made: leave it to its owner.
            continue;
        }
        let ignored = state
            .config
            .as_ref()
            .is_some_and(|config| config.values.ignores_slot(name));
        if slot.active || ignored {
            // A consumer still uses it, or `ignore_slots` keeps it: drop
            // it once it lets go, or the config stops protecting it.
            plan.kept.insert(name.clone());
        } else {
            plan.drop.push(name.clone());
        }
    }
    let SlotServer::Replica { replay_lsn } = server else {
        return plan;
    };
    let Some(primary) = state
        .lease
        .holder
        .as_deref()
        .filter(|holder| *holder != me)
        .and_then(|holder| state.members.get(holder))
    else {
        return plan;
    };
    for name in &wanted {
        let (Some(slot), Some(&at_primary)) = (found(name), primary.permanent_slots.get(name))
        else {
            continue;
        };
        let target = at_primary.min(replay_lsn);
        if slot.restart_lsn.is_some_and(|own| target > own) {
            plan.advance.push((name.clone(), target));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::cluster;
    use raftgres_state::PermanentSlot;

    fn with_slots(names: &[&str]) -> ClusterState {
        let mut s = cluster(Some("a"));
        let config = s.config.as_mut().unwrap();
        for name in names {
            config
                .values
                .slots
                .insert((*name).into(), PermanentSlot::physical());
        }
        s
    }

    fn slot(name: &str, restart: u64) -> LocalSlot {
        LocalSlot {
            name: name.into(),
            physical: true,
            active: false,
            restart_lsn: Some(Lsn(restart)),
        }
    }

    fn made(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn replica(lsn: u64) -> SlotServer {
        SlotServer::Replica {
            replay_lsn: Lsn(lsn),
        }
    }

    #[test]
    fn creates_the_missing_ones_on_primary_and_replicas() {
        let s = with_slots(&["keep_me", "other"]);
        for (who, server) in [("a", SlotServer::Primary), ("b", replica(4000))] {
            let plan = plan_permanent_slots(&s, who, server, &[slot("other", 10)], &made(&[]));
            assert_eq!(plan.create, strings(&["keep_me"]), "{who}");
            assert_eq!(plan.kept, made(&["keep_me", "other"]), "{who}");
            assert!(plan.drop.is_empty(), "{who}");
        }
    }

    #[test]
    fn a_replica_advances_to_the_primary_position_within_its_replay() {
        // Row: primary's position, replica's replay, replica's own, expected.
        for (at_primary, replay, own, expected) in [
            (Some(3000), 4000, 1000, Some(3000)),
            (Some(3000), 2000, 1000, Some(2000)),
            (Some(3000), 4000, 3000, None),
            (Some(1000), 4000, 3000, None),
            (None, 4000, 1000, None),
        ] {
            let mut s = with_slots(&["keep_me"]);
            if let Some(lsn) = at_primary {
                let a = s.members.get_mut("a").unwrap();
                a.permanent_slots.insert("keep_me".into(), Lsn(lsn));
            }
            let plan = plan_permanent_slots(
                &s,
                "b",
                replica(replay),
                &[slot("keep_me", own)],
                &made(&["keep_me"]),
            );
            let want: Vec<(String, Lsn)> = expected
                .map(|lsn| ("keep_me".to_owned(), Lsn(lsn)))
                .into_iter()
                .collect();
            assert_eq!(plan.advance, want, "{at_primary:?} {replay} {own}");
        }
    }

    #[test]
    fn the_primary_and_a_replica_without_holder_advance_nothing() {
        let mut s = with_slots(&["keep_me"]);
        s.members
            .get_mut("a")
            .unwrap()
            .permanent_slots
            .insert("keep_me".into(), Lsn(3000));
        let present = [slot("keep_me", 1000)];
        let plan = plan_permanent_slots(&s, "a", SlotServer::Primary, &present, &made(&[]));
        assert!(plan.advance.is_empty());
        s.lease.holder = None;
        let plan = plan_permanent_slots(&s, "b", replica(4000), &present, &made(&[]));
        assert!(plan.advance.is_empty());
    }

    #[test]
    fn drops_only_what_it_made_and_nobody_uses() {
        let s = with_slots(&[]);
        let mut active = slot("busy", 10);
        active.active = true;
        let mut logical = slot("logical_one", 10);
        logical.physical = false;
        let present = [
            slot("gone", 10),
            slot("operators", 10),
            active,
            logical,
            slot("b", 10),
        ];
        let plan = plan_permanent_slots(
            &s,
            "a",
            SlotServer::Primary,
            &present,
            &made(&["gone", "busy", "logical_one", "b", "absent"]),
        );
        assert_eq!(plan.drop, strings(&["gone"]));
        assert_eq!(plan.kept, made(&["busy"]));
        assert!(plan.create.is_empty());
    }

    #[test]
    fn ignore_slots_keeps_what_it_matches() {
        let mut s = with_slots(&[]);
        s.config
            .as_mut()
            .unwrap()
            .values
            .ignore_slots
            .push(raftgres_state::IgnoredSlot {
                name: Some("gone".into()),
                ..Default::default()
            });
        let present = [slot("gone", 10), slot("other", 10)];
        let plan = plan_permanent_slots(
            &s,
            "a",
            SlotServer::Primary,
            &present,
            &made(&["gone", "other"]),
        );
        assert_eq!(plan.drop, strings(&["other"]));
        assert_eq!(plan.kept, made(&["gone"]));
    }

    #[test]
    fn a_name_taken_by_a_member_slot_is_not_permanent() {
        let s = with_slots(&["b", "keep_me"]);
        assert_eq!(permanent_slot_names(&s), made(&["keep_me"]));
    }
}
