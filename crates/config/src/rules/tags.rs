//! `tags`: Patroni's, and the operator's own. An own tag is any key that
//! is not a known one, so a misspelt known tag would silently do nothing:
//! a key within two edits of a known tag, or a part of one (`priority`),
//! is refused instead.

use super::values::identifier;
use crate::read::Ctx;
use crate::schema;
use crate::{ConfigError, Tags};
use std::collections::BTreeMap;

const KNOWN: [&str; 7] = [
    "nofailover",
    "failover_priority",
    "nosync",
    "noloadbalance",
    "clonefrom",
    "replicatefrom",
    "nostream",
];

pub(super) fn settings(ctx: &Ctx, file: schema::Tags, me: &str) -> Result<Tags, ConfigError> {
    if file.nostream {
        return Err(ctx.invalid(
            "tags.nostream",
            "is not built yet: a member that does not stream replays WAL from an archive \
             with a restore_command, which the agent does not configure; leave it out",
        ));
    }
    if let Some(from) = &file.replicatefrom {
        ctx.check("tags.replicatefrom", identifier(from))?;
        if from == me {
            return Err(ctx.invalid(
                "tags.replicatefrom",
                format!("names this member ({me}); name the member to stream from"),
            ));
        }
    }
    let mut custom = BTreeMap::new();
    for (name, value) in file.custom {
        let key = format!("tags.{name}");
        ctx.check(&key, own_tag_name(&name))?;
        let text = match value {
            serde_json::Value::String(text) => text,
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(ctx.invalid(
                    &key,
                    format!("is {other}; a tag's value is a string, a number or true/false"),
                ));
            }
        };
        custom.insert(name, text);
    }
    Ok(Tags {
        nofailover: file.nofailover,
        failover_priority: file.failover_priority,
        nosync: file.nosync,
        noloadbalance: file.noloadbalance,
        clonefrom: file.clonefrom,
        replicatefrom: file.replicatefrom,
        custom,
    })
}

/// An own tag's name: health checks match it as `?tag_<name>=`, so it is
/// URL-safe, and it is not a known tag misspelt.
fn own_tag_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || !name.chars().all(allowed) {
        return Err(format!(
            "{name:?} is no tag name; use letters, digits, `_` and `-`"
        ));
    }
    let lower = name.to_ascii_lowercase();
    let resembles = |known: &str| {
        edits(&lower, known) <= 2 || (lower.len() >= 4 && known.contains(lower.as_str()))
    };
    match KNOWN.iter().find(|known| resembles(known)) {
        Some(known) => Err(format!(
            "is not a known tag, and looks like {known} mistyped; write {known}, or give \
             your own tag a name further from it"
        )),
        None => Ok(()),
    }
}

/// Levenshtein distance.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_tags_may_not_look_like_known_ones() {
        for ok in ["zone", "dc", "rack", "app_tier", "no-backup", "NoSQL"] {
            assert_eq!(own_tag_name(ok), Ok(()), "{ok}");
        }
        for misspelt in [
            "nofailvoer",
            "nofailove",
            "no_sync",
            "NoLoadBalance",
            "clone_from",
            "priority",
            "stream",
        ] {
            assert!(own_tag_name(misspelt).is_err(), "{misspelt} was accepted");
        }
        for bad in ["", "a b", "zone?", "ä"] {
            assert!(own_tag_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn edits_count_insertions_deletions_and_substitutions() {
        assert_eq!(edits("nofailover", "nofailover"), 0);
        assert_eq!(edits("nofailvoer", "nofailover"), 2);
        assert_eq!(edits("nosync", "no_sync"), 1);
        assert_eq!(edits("zone", "nosync"), 4);
    }
}
