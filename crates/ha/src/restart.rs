//! An operator's restart of the local Postgres, as Patroni judges it: when
//! a scheduled one runs (or is dropped), and whether a restart's
//! conditions hold at the moment it would run.

use std::fmt;
use std::time::Duration;

use raftgres_state::{RestartOptions, RestartRole, ScheduledRestart};

/// How late a scheduled restart may still run. One found later (the agent
/// was down, or busy with a clone, at its time) is dropped: a restart at a
/// moment nobody chose is worse than none. Patroni drops one found more
/// than 1.5 `loop_wait` late, 15 s with its defaults; raftgres's
/// `loop_wait` is much shorter, and a member busy for a few rounds must
/// not lose the operator's restart, so the window is fixed.
pub const SCHEDULED_RESTART_GRACE: Duration = Duration::from_secs(30);

/// What to do about a scheduled restart now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduledStep {
    /// Its time has not come: look again at `at_unix_ms`.
    Wait {
        at_unix_ms: u64,
    },
    /// The cluster is paused, and no scheduled action runs while it is (as
    /// in Patroni): it stays until the pause ends, or until its time has
    /// passed by more than the grace, when it is dropped.
    Paused,
    Run,
    /// Forget it without restarting.
    Drop(Dropped),
}

/// Why a scheduled restart is dropped without running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Postgres restarted since the restart was scheduled (Patroni's rule:
    /// what the restart was for has happened).
    AlreadyRestarted,
    /// Found this long after its time, past [`SCHEDULED_RESTART_GRACE`].
    Missed { late_ms: u64 },
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dropped::AlreadyRestarted => {
                f.write_str("Postgres has restarted since the restart was scheduled")
            }
            Dropped::Missed { late_ms } => write!(
                f,
                "its time passed {:.1} s ago, more than the {} s a scheduled restart may run late",
                *late_ms as f64 / 1000.0,
                SCHEDULED_RESTART_GRACE.as_secs()
            ),
        }
    }
}

/// The step for `restart` at `now_unix_ms`, with the cluster `paused` or
/// not and the running postmaster's start time, when it runs.
pub fn scheduled_restart_step(
    restart: &ScheduledRestart,
    now_unix_ms: u64,
    paused: bool,
    postmaster_start_unix_ms: Option<i64>,
) -> ScheduledStep {
    if let (Some(then), Some(now)) = (restart.postmaster_start_unix_ms, postmaster_start_unix_ms)
        && then != now
    {
        return ScheduledStep::Drop(Dropped::AlreadyRestarted);
    }
    let late_ms = now_unix_ms.saturating_sub(restart.at_unix_ms);
    if late_ms > SCHEDULED_RESTART_GRACE.as_millis() as u64 {
        return ScheduledStep::Drop(Dropped::Missed { late_ms });
    }
    if paused {
        return ScheduledStep::Paused;
    }
    if now_unix_ms < restart.at_unix_ms {
        return ScheduledStep::Wait {
            at_unix_ms: restart.at_unix_ms,
        };
    }
    ScheduledStep::Run
}

/// What a restart's conditions are judged against: the member at the
/// moment the restart would run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartSubject {
    /// The role its Postgres runs in; `None` when it does not run.
    pub role: Option<RestartRole>,
    /// `server_version_num` of the running server.
    pub server_version: Option<u32>,
    /// A setting waits for a restart.
    pub pending_restart: bool,
}

/// A condition of the restart that does not hold; the message is the
/// reason the restart is refused or dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unmet {
    #[error("the member runs as {is}, the restart asks for a {wanted}")]
    Role {
        wanted: &'static str,
        is: &'static str,
    },
    #[error(
        "the server runs version {running}, not lower than postgres_version {wanted}, \
         so it needs no restart for it"
    )]
    Version { wanted: String, running: u32 },
    #[error("the server's version is not known, so postgres_version {0} cannot be judged")]
    UnknownVersion(String),
    #[error("no setting waits for a restart here (restart_pending)")]
    NotPending,
}

/// Whether `options`' conditions hold for the member as `now` describes
/// it: Patroni's `restart_matches`. The first condition that fails is
/// the one named.
pub fn restart_conditions(options: &RestartOptions, now: &RestartSubject) -> Result<(), Unmet> {
    if let Some(wanted) = options.role
        && now.role != Some(wanted)
    {
        return Err(Unmet::Role {
            wanted: wanted.as_str(),
            is: now
                .role
                .map_or("nothing (Postgres is not running)", |r| r.as_str()),
        });
    }
    if let Some(version) = &options.postgres_version {
        let (Some(wanted), Some(running)) = (version.num(), now.server_version) else {
            return Err(Unmet::UnknownVersion(version.as_str().to_owned()));
        };
        if running >= wanted {
            return Err(Unmet::Version {
                wanted: version.as_str().to_owned(),
                running,
            });
        }
    }
    if options.restart_pending && !now.pending_restart {
        return Err(Unmet::NotPending);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftgres_state::PostgresVersion;

    const AT: u64 = 1_000_000;

    fn scheduled(postmaster_start_unix_ms: Option<i64>) -> ScheduledRestart {
        ScheduledRestart {
            at_unix_ms: AT,
            options: RestartOptions::default(),
            postmaster_start_unix_ms,
        }
    }

    #[test]
    fn a_scheduled_restart_runs_at_its_time_within_the_grace() {
        let grace = SCHEDULED_RESTART_GRACE.as_millis() as u64;
        let wait = ScheduledStep::Wait { at_unix_ms: AT };
        /// What, the postmaster's start when scheduled, now, paused, its
        /// start now, and the step.
        type Row = (
            &'static str,
            Option<i64>,
            u64,
            bool,
            Option<i64>,
            ScheduledStep,
        );
        #[rustfmt::skip]
        let rows: [Row; 11] = [
            ("long before", Some(7), AT - 60_000, false, Some(7), wait.clone()),
            ("a moment before", Some(7), AT - 1, false, Some(7), wait.clone()),
            ("at its time", Some(7), AT, false, Some(7), ScheduledStep::Run),
            ("late, within the grace", Some(7), AT + grace, false, Some(7), ScheduledStep::Run),
            ("past the grace", Some(7), AT + grace + 1, false, Some(7),
                ScheduledStep::Drop(Dropped::Missed { late_ms: grace + 1 })),
            ("Postgres restarted meanwhile", Some(7), AT - 60_000, false, Some(8),
                ScheduledStep::Drop(Dropped::AlreadyRestarted)),
            ("Postgres down now: start time unknown", Some(7), AT, false, None, ScheduledStep::Run),
            ("scheduled while down", None, AT, false, Some(8), ScheduledStep::Run),
            ("paused, before its time", Some(7), AT - 1, true, Some(7), ScheduledStep::Paused),
            ("paused at its time: held", Some(7), AT, true, Some(7), ScheduledStep::Paused),
            ("paused past the grace: dropped", Some(7), AT + grace + 1, true, Some(7),
                ScheduledStep::Drop(Dropped::Missed { late_ms: grace + 1 })),
        ];
        for (what, then, now, paused, running_since, want) in rows {
            assert_eq!(
                scheduled_restart_step(&scheduled(then), now, paused, running_since),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn a_dropped_restart_says_why() {
        let missed = Dropped::Missed { late_ms: 45_250 }.to_string();
        assert!(missed.contains("45.2 s ago"), "{missed}");
        assert!(missed.contains("30 s"), "{missed}");
    }

    fn options(
        role: Option<RestartRole>,
        version: Option<&str>,
        restart_pending: bool,
    ) -> RestartOptions {
        RestartOptions {
            role,
            postgres_version: version.map(|v| PostgresVersion::parse(v).expect("a version")),
            restart_pending,
            timeout_ms: None,
        }
    }

    #[test]
    fn conditions_are_patronis() {
        use RestartRole::{Primary, Replica};
        let replica = RestartSubject {
            role: Some(Replica),
            server_version: Some(150_004),
            pending_restart: false,
        };
        let pending = RestartSubject {
            pending_restart: true,
            ..replica
        };
        let stopped = RestartSubject {
            role: None,
            server_version: None,
            pending_restart: false,
        };
        let role = |wanted, is| Err(Unmet::Role { wanted, is });
        #[rustfmt::skip]
        let rows = [
            ("no conditions", options(None, None, false), replica, Ok(())),
            ("the role matches", options(Some(Replica), None, false), replica, Ok(())),
            ("another role", options(Some(Primary), None, false), replica,
                role("primary", "replica")),
            ("a role, Postgres down", options(Some(Replica), None, false), stopped,
                role("replica", "nothing (Postgres is not running)")),
            ("an older server", options(None, Some("15.5"), false), replica, Ok(())),
            ("the same version", options(None, Some("15.4"), false), replica,
                Err(Unmet::Version { wanted: "15.4".into(), running: 150_004 })),
            ("a newer server", options(None, Some("14.9"), false), replica,
                Err(Unmet::Version { wanted: "14.9".into(), running: 150_004 })),
            ("version unknown", options(None, Some("15.5"), false), stopped,
                Err(Unmet::UnknownVersion("15.5".into()))),
            ("pending, none waits", options(None, None, true), replica, Err(Unmet::NotPending)),
            ("pending, one waits", options(None, None, true), pending, Ok(())),
            ("all three hold", options(Some(Replica), Some("16.0"), true), pending, Ok(())),
        ];
        for (what, options, subject, want) in rows {
            assert_eq!(restart_conditions(&options, &subject), want, "{what}");
        }
    }
}
