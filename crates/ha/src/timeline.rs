//! Rule 10: a member competes for the lease, and starts as primary, only
//! with data on the cluster's current timeline.
//!
//! Every promotion forks a new timeline, and WAL written on the old one
//! after the fork point is on a branch the cluster has left. A fenced
//! ex-primary that was never rewound holds such a branch: its LSN can look
//! ahead of everybody's, yet starting it as primary would drop every write
//! the primaries after it acknowledged.

use crate::local::DataInfo;
use raftgres_state::ClusterState;

/// Why a member's data may not lead the cluster now. Each says what has
/// to happen first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffTimeline {
    #[error(
        "{member}'s data is on timeline {data}, behind the cluster's timeline {current}; it must follow the primary (or rewind) before it can lead"
    )]
    Behind {
        member: String,
        data: u32,
        current: u32,
    },
    #[error(
        "{member}'s data ended as primary on timeline {data}, and another member has held the lease since (the cluster's timeline is {current}); it may have forked, so {member} must rewind before it can lead"
    )]
    Branched {
        member: String,
        data: u32,
        current: u32,
    },
    #[error("{member} has not reported its timeline yet; wait for its next status")]
    Unknown { member: String },
}

/// Whether `member`'s data, on `timeline` and last run as a primary or
/// not, may lead the cluster: compete for the lease, be promoted, or start
/// as primary.
///
/// - Before the cluster has a database, or before any primary reported a
///   timeline, nothing is current and anything may lead.
/// - Replica data may lead on the current timeline or a later one. A later
///   one exists only when a holder promoted and died before a renewal
///   reported it, and a replica that streamed from it has that holder's
///   writes.
/// - Ex-primary data may lead only on the current timeline, and only if it
///   is the timeline's owner: its primary renewed on it last and no other
///   member has held the lease since. Any other holder promotes, so the
///   owner's WAL past that fork is a branch even while no renewal has
///   reported the new timeline yet.
pub fn on_current_timeline(
    state: &ClusterState,
    member: &str,
    timeline: Option<u32>,
    was_primary: bool,
) -> Result<(), OffTimeline> {
    let lease = &state.lease;
    let Some(current) = lease.timeline.filter(|_| state.identity.is_some()) else {
        return Ok(());
    };
    let Some(data) = timeline else {
        return Err(OffTimeline::Unknown {
            member: member.to_owned(),
        });
    };
    let member = member.to_owned();
    if data < current {
        return Err(OffTimeline::Behind {
            member,
            data,
            current,
        });
    }
    if was_primary && (data != current || lease.timeline_owner.as_deref() != Some(&member)) {
        return Err(OffTimeline::Branched {
            member,
            data,
            current,
        });
    }
    Ok(())
}

/// [`on_current_timeline`] for this member's own data, as it observed it.
pub fn data_on_current_timeline(
    state: &ClusterState,
    me: &str,
    data: &DataInfo,
) -> Result<(), OffTimeline> {
    on_current_timeline(state, me, Some(data.timeline), data.was_primary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::cluster;

    #[test]
    fn who_may_lead_by_timeline() {
        // The cluster is on timeline 2, owned by b unless a row says otherwise.
        let on_two = |owner: Option<&str>| {
            let mut s = cluster(Some("b"));
            s.lease.timeline = Some(2);
            s.lease.timeline_owner = owner.map(Into::into);
            s
        };
        let mut no_timeline = cluster(Some("a"));
        no_timeline.lease.timeline = None;
        let mut no_database = on_two(None);
        no_database.identity = None;
        let behind = |member: &str, data| OffTimeline::Behind {
            member: member.into(),
            data,
            current: 2,
        };
        let branched = |member: &str, data| OffTimeline::Branched {
            member: member.into(),
            data,
            current: 2,
        };
        // (row, state, member, data timeline, was primary, want)
        type Row<'a> = (
            &'a str,
            ClusterState,
            &'a str,
            Option<u32>,
            bool,
            Result<(), OffTimeline>,
        );
        #[rustfmt::skip]
        let rows: Vec<Row<'_>> = vec![
            ("replica on the current timeline", on_two(Some("b")), "c", Some(2), false, Ok(())),
            ("replica that streamed from a promotion no renewal reported yet", on_two(None), "c", Some(3), false, Ok(())),
            ("replica on an older timeline", on_two(Some("b")), "c", Some(1), false, Err(behind("c", 1))),
            ("fenced ex-primary on the old timeline", on_two(Some("b")), "a", Some(1), true, Err(behind("a", 1))),
            ("the owner's own stopped primary", on_two(Some("b")), "b", Some(2), true, Ok(())),
            ("ex-primary on the recorded timeline after another member took the lease", on_two(None), "b", Some(2), true, Err(branched("b", 2))),
            ("ex-primary on the recorded timeline that another member owns", on_two(Some("c")), "b", Some(2), true, Err(branched("b", 2))),
            ("ex-primary of a promotion no renewal reported", on_two(None), "c", Some(3), true, Err(branched("c", 3))),
            ("member that reported no timeline", on_two(Some("b")), "c", None, false, Err(OffTimeline::Unknown { member: "c".into() })),
            ("no primary reported a timeline yet", no_timeline, "a", Some(1), true, Ok(())),
            ("no database yet", no_database, "a", Some(1), true, Ok(())),
        ];
        for (row, state, member, timeline, was_primary, want) in rows {
            assert_eq!(
                on_current_timeline(&state, member, timeline, was_primary),
                want,
                "{row}"
            );
        }
    }
}
