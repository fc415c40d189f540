//! What a member knows about its own Postgres, as the agent last observed it.

use crate::lease::MonoInstant;
use raftgres_state::{Lsn, MemberRole, PgState};

/// Facts about the data directory that survive a stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataInfo {
    pub system_id: String,
    pub timeline: u32,
    /// The last run ended (or is) as a primary, so following anyone else
    /// needs a rewind first.
    pub was_primary: bool,
    /// The furthest WAL position this data is known to have.
    pub lsn: Lsn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgView {
    /// A witness: no Postgres at all.
    Absent,
    /// No data directory yet.
    Uninitialized,
    /// A long action (initdb, clone, rewind, start) is running.
    Busy {
        action: &'static str,
    },
    Stopped {
        data: DataInfo,
    },
    Running {
        data: DataInfo,
        in_recovery: bool,
        /// The member whose Postgres this one is configured to stream from.
        upstream: Option<String>,
        /// Its WAL receiver is connected and streaming right now.
        streaming: bool,
    },
    /// The postmaster died or stopped answering at `since`.
    Down {
        data: DataInfo,
        since: MonoInstant,
        /// Some process of the server still lives (an unanswering
        /// postmaster, or backends that outlived it): it may still commit,
        /// so it must be fenced before anything else.
        alive: bool,
    },
}

impl PgView {
    pub fn data(&self) -> Option<&DataInfo> {
        match self {
            PgView::Stopped { data } | PgView::Running { data, .. } | PgView::Down { data, .. } => {
                Some(data)
            }
            _ => None,
        }
    }

    pub fn is_writable_primary(&self) -> bool {
        matches!(
            self,
            PgView::Running {
                in_recovery: false,
                ..
            }
        )
    }

    /// Whether other members stream WAL from this server, so it keeps
    /// their replication slots: a writable primary while it holds the
    /// lease, and a running standby (cascading).
    pub fn serves_wal(&self, holds_lease: bool) -> bool {
        (holds_lease && self.is_writable_primary())
            || matches!(
                self,
                PgView::Running {
                    in_recovery: true,
                    ..
                }
            )
    }

    /// The role and state a member publishes for this view. Primary only
    /// while the lease names the member: a writable server without the
    /// lease is about to be fenced, and is shown as neither primary nor
    /// replica, so nobody follows it and no pooler sends it writes.
    pub fn published(&self, lease_names_me: bool) -> (MemberRole, PgState) {
        match self {
            PgView::Absent => (MemberRole::Witness, PgState::Absent),
            PgView::Running {
                in_recovery: false, ..
            } if lease_names_me => (MemberRole::Primary, PgState::Running),
            PgView::Running {
                in_recovery: true, ..
            } => (MemberRole::Replica, PgState::Running),
            PgView::Running { .. } => (MemberRole::Unknown, PgState::Running),
            PgView::Busy { .. } => (MemberRole::Unknown, PgState::Starting),
            PgView::Stopped { .. } | PgView::Uninitialized => {
                (MemberRole::Unknown, PgState::Stopped)
            }
            PgView::Down { .. } => (MemberRole::Unknown, PgState::Crashed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, data};

    #[test]
    fn wal_is_served_by_the_holding_primary_and_by_running_standbys() {
        let running = |in_recovery| PgView::Running {
            data: data("sys", 1, false),
            in_recovery,
            upstream: None,
            streaming: false,
        };
        assert!(running(false).serves_wal(true));
        assert!(
            !running(false).serves_wal(false),
            "writable without a lease"
        );
        assert!(running(true).serves_wal(false));
        let stopped = PgView::Stopped {
            data: data("sys", 1, false),
        };
        assert!(!stopped.serves_wal(true));
    }

    #[test]
    fn the_published_role_follows_the_view_and_the_lease() {
        let d = || data("sys", 1, false);
        let running = |in_recovery| PgView::Running {
            data: d(),
            in_recovery,
            upstream: None,
            streaming: false,
        };
        let down = PgView::Down {
            data: d(),
            since: at(0),
            alive: false,
        };
        use MemberRole::*;
        #[rustfmt::skip]
        let rows: Vec<(&str, PgView, bool, (MemberRole, PgState))> = vec![
            ("witness", PgView::Absent, false, (Witness, PgState::Absent)),
            ("writable with the lease: primary", running(false), true, (Primary, PgState::Running)),
            ("writable without the lease: neither", running(false), false, (Unknown, PgState::Running)),
            ("in recovery: replica, lease or not", running(true), true, (Replica, PgState::Running)),
            ("in recovery without the lease", running(true), false, (Replica, PgState::Running)),
            ("busy: starting", PgView::Busy { action: "clone" }, false, (Unknown, PgState::Starting)),
            ("stopped", PgView::Stopped { data: d() }, true, (Unknown, PgState::Stopped)),
            ("no data yet", PgView::Uninitialized, false, (Unknown, PgState::Stopped)),
            ("down: crashed", down, true, (Unknown, PgState::Crashed)),
        ];
        for (name, view, lease_names_me, want) in rows {
            assert_eq!(view.published(lease_names_me), want, "{name}");
        }
    }
}
