//! Permanent replication slots (Patroni's `slots` key of the dynamic
//! config): which names a slot may have, and what the config may ask for.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The kind of a permanent slot, Patroni's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotKind {
    Physical,
    /// Refused by [`check_permanent_slots`]: kept for its clear refusal.
    Logical,
}

/// One entry of the config's `slots` map, in Patroni's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermanentSlot {
    #[serde(rename = "type")]
    pub kind: SlotKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
}

impl PermanentSlot {
    pub fn physical() -> PermanentSlot {
        PermanentSlot {
            kind: SlotKind::Physical,
            database: None,
            plugin: None,
        }
    }
}

/// An entry of the config's `ignore_slots` (Patroni's): a slot matching
/// every property it gives is never dropped by raftgres, even one named
/// after a member, or one the config's `slots` named before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredSlot {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<SlotKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
}

impl IgnoredSlot {
    /// Whether this entry matches the physical slot `name`, the only kind
    /// raftgres ever drops: an entry naming a database or a plugin
    /// matches logical slots only.
    pub fn matches_physical(&self, name: &str) -> bool {
        self.name.as_deref().is_none_or(|own| own == name)
            && self.kind.is_none_or(|kind| kind == SlotKind::Physical)
            && self.database.is_none()
            && self.plugin.is_none()
    }
}

/// PostgreSQL's own rule for a replication slot name.
pub fn valid_slot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The slot a member's upstream keeps for it (`node-1` → `node_1`).
pub fn member_slot_name(member: &str) -> String {
    let mut name: String = member
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .take(63)
        .collect();
    if name.is_empty() {
        name.push('_');
    }
    name
}

/// What the `slots` map may hold: physical slots with valid names. The
/// message names the key.
pub(crate) fn check_permanent_slots(slots: &BTreeMap<String, PermanentSlot>) -> Result<(), String> {
    for (name, slot) in slots {
        if !valid_slot_name(name) {
            return Err(format!(
                "slots.{name}: not a replication slot name (1 to 63 lowercase letters, \
                 digits or '_')"
            ));
        }
        match slot.kind {
            SlotKind::Logical => {
                return Err(format!(
                    "slots.{name}: type logical is not supported: raftgres does not keep \
                     logical slots across a failover yet (PostgreSQL 15 does not copy them \
                     to standbys, so the slot would be lost at the first failover), and \
                     wal_level is fixed at replica; use a physical slot"
                ));
            }
            SlotKind::Physical if slot.database.is_some() || slot.plugin.is_some() => {
                return Err(format!(
                    "slots.{name}: database and plugin are for logical slots; a physical \
                     slot takes only type"
                ));
            }
            SlotKind::Physical => {}
        }
    }
    Ok(())
}

/// What `ignore_slots` may hold: names that can be slot names.
pub(crate) fn check_ignored_slots(ignored: &[IgnoredSlot]) -> Result<(), String> {
    for (at, entry) in ignored.iter().enumerate() {
        if let Some(name) = entry.name.as_deref().filter(|name| !valid_slot_name(name)) {
            return Err(format!(
                "ignore_slots.{at}.name: {name:?} is not a replication slot name (1 to 63 \
                 lowercase letters, digits or '_')"
            ));
        }
    }
    Ok(())
}

/// A permanent slot named like a member's own slot would be managed twice,
/// and dropped when that member streams elsewhere.
pub(crate) fn check_member_collision<'a>(
    slots: &BTreeMap<String, PermanentSlot>,
    members: impl IntoIterator<Item = &'a str>,
) -> Result<(), String> {
    for member in members {
        let taken = member_slot_name(member);
        if slots.contains_key(&taken) {
            return Err(format!(
                "slots.{taken}: the name of member {member}'s own replication slot; \
                 choose another name"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_member_slot_name_is_a_valid_slot_name() {
        assert_eq!(member_slot_name("Node-1.east"), "node_1_east");
        assert_eq!(member_slot_name(""), "_");
        for member in ["node-1", "", &"x".repeat(100)] {
            assert!(valid_slot_name(&member_slot_name(member)), "{member}");
        }
    }

    use super::*;

    fn slots(entries: &[(&str, PermanentSlot)]) -> BTreeMap<String, PermanentSlot> {
        entries
            .iter()
            .map(|(name, slot)| ((*name).to_owned(), slot.clone()))
            .collect()
    }

    #[test]
    fn physical_slots_with_valid_names_pass() {
        check_permanent_slots(&slots(&[("keep_me", PermanentSlot::physical())])).unwrap();
        check_permanent_slots(&BTreeMap::new()).unwrap();
    }

    #[test]
    fn refusals_name_the_key() {
        let logical = PermanentSlot {
            kind: SlotKind::Logical,
            database: Some("app".into()),
            plugin: Some("pgoutput".into()),
        };
        let with_plugin = PermanentSlot {
            plugin: Some("pgoutput".into()),
            ..PermanentSlot::physical()
        };
        for (name, slot, says) in [
            ("cdc", logical, "across a failover"),
            (
                "Keep-Me",
                PermanentSlot::physical(),
                "not a replication slot name",
            ),
            ("", PermanentSlot::physical(), "not a replication slot name"),
            ("p", with_plugin, "physical slot takes only type"),
        ] {
            let err = check_permanent_slots(&slots(&[(name, slot)])).unwrap_err();
            assert!(err.starts_with(&format!("slots.{name}:")), "{err}");
            assert!(err.contains(says), "{err}");
        }
        let long = "x".repeat(64);
        assert!(check_permanent_slots(&slots(&[(&long, PermanentSlot::physical())])).is_err());
    }

    #[test]
    fn a_member_slot_name_is_taken() {
        let s = slots(&[("node_2", PermanentSlot::physical())]);
        let err = check_member_collision(&s, ["node-1", "node-2"]).unwrap_err();
        assert!(err.starts_with("slots.node_2:"), "{err}");
        check_member_collision(&s, ["node-1", "node-3"]).unwrap();
    }

    #[test]
    fn ignore_entries_match_physical_slots_by_every_property_given() {
        let by_name = IgnoredSlot {
            name: Some("keep".into()),
            ..IgnoredSlot::default()
        };
        assert!(by_name.matches_physical("keep"));
        assert!(!by_name.matches_physical("other"));
        assert!(IgnoredSlot::default().matches_physical("anything"));
        let physical = IgnoredSlot {
            kind: Some(SlotKind::Physical),
            ..IgnoredSlot::default()
        };
        assert!(physical.matches_physical("x"));
        let logical = IgnoredSlot {
            kind: Some(SlotKind::Logical),
            ..by_name.clone()
        };
        assert!(!logical.matches_physical("keep"));
        let with_database = IgnoredSlot {
            database: Some("app".into()),
            ..by_name
        };
        assert!(!with_database.matches_physical("keep"));
        let bad = IgnoredSlot {
            name: Some("Bad-Name".into()),
            ..IgnoredSlot::default()
        };
        let err = check_ignored_slots(&[IgnoredSlot::default(), bad]).unwrap_err();
        assert!(err.starts_with("ignore_slots.1.name:"), "{err}");
    }

    #[test]
    fn member_slot_names() {
        assert_eq!(member_slot_name("Node-1.east"), "node_1_east");
        assert_eq!(member_slot_name(""), "_");
        assert!(valid_slot_name(&member_slot_name(&"x".repeat(100))));
    }
}
