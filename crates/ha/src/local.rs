//! What a member knows about its own Postgres, as the agent last observed it.

use crate::lease::MonoInstant;
use raftgres_state::Lsn;

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
}
