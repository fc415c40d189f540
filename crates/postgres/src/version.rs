//! Everything that depends on the PostgreSQL major version: which majors
//! we run, how to tell the major of a set of binaries and of a data
//! directory, where Debian puts the binaries, the names of the files the
//! server reads, the labels `pg_controldata` prints, and what changed
//! between majors. Supporting another major starts (and ideally ends) here.

use crate::error::{PgError, Result};
use crate::settings::PgSettings;
use crate::tools::{Tool, stderr_text};
use std::path::Path;

/// The oldest major we run: `pg_get_wal_replay_pause_state()` (see [`sql`])
/// exists from 14 on. CI runs the failover tests on it.
pub const OLDEST_MAJOR: u32 = 14;
/// The newest major CI runs the failover tests on. A newer one is started
/// with a warning: it is not known to be unfit, only untested.
pub const NEWEST_MAJOR: u32 = 18;
/// The first major with the `pg_checkpoint` role, which lets a role other
/// than a superuser run `CHECKPOINT` (as a rewind needs on its source).
pub const PG_CHECKPOINT_ROLE_SINCE: u32 = 15;

/// Where Debian 12's `postgresql-15` package (the only major that release
/// ships) installs the server binaries.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The major of the binaries in `settings.bin_dir`, from `postgres
/// --version`, run as the server's user (so it also proves that user can
/// run them).
pub async fn binaries_major(settings: &PgSettings) -> Result<u32> {
    let output = Tool::new(settings, bin::POSTGRES)?
        .arg("--version")
        .run()
        .await?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_version_output(&text).ok_or_else(|| PgError::ToolFailed {
        program: settings.binary(bin::POSTGRES).display().to_string(),
        status: "ok".to_owned(),
        stderr: format!(
            "--version printed {:?}, not a PostgreSQL version; {}",
            text.trim(),
            stderr_text(&output)
        ),
    })
}

/// The major in `postgres --version`'s answer: `postgres (PostgreSQL)
/// 18.6`, `... 15.14 (Debian 15.14-0+deb12u1)`, `... 19beta1`, `... 19devel`.
pub fn parse_version_output(text: &str) -> Option<u32> {
    let version = text.trim().strip_prefix("postgres (PostgreSQL) ")?;
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The major a data directory was initialized for, from its `PG_VERSION`
/// (`15`; before 10 it read `9.6`, taken as 9); `None` when it has none.
pub fn data_dir_major(data_dir: &Path) -> Result<Option<u32>> {
    let path = data_dir.join(file::PG_VERSION);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PgError::Io {
                action: "read",
                path,
                source,
            });
        }
    };
    let digits: String = text
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    match digits.parse() {
        Ok(major) => Ok(Some(major)),
        Err(_) => Err(PgError::InvalidInput {
            what: "PG_VERSION",
            value: text.trim().to_owned(),
            reason: "it holds no major version; the data directory is damaged",
        }),
    }
}

/// Checks the binaries in `settings.bin_dir` before anything runs them
/// against data: a major we run, that the settings can be served by (see
/// [`check_settings`]), and the major of the data directory if there is
/// one. Returns the binaries' major.
///
/// Without it, binaries of one major on a data directory of another fail
/// obscurely and forever: the server refuses the configuration file
/// `initdb` wrote (`unrecognized configuration parameter`), or refuses the
/// data directory, on every start.
pub async fn check_binaries(settings: &PgSettings) -> Result<u32> {
    let major = binaries_major(settings).await?;
    check_settings(settings, major)?;
    if let Some(data_major) = data_dir_major(&settings.data_dir)? {
        check_same_major(settings, settings.data_dir.display(), data_major, major)?;
    }
    Ok(major)
}

/// Whether binaries of `major` can serve `settings`.
pub fn check_settings(settings: &PgSettings, major: u32) -> Result<()> {
    if major < OLDEST_MAJOR {
        return Err(PgError::UnsupportedMajor {
            bin_dir: settings.bin_dir.clone(),
            major,
        });
    }
    if major > NEWEST_MAJOR {
        tracing::warn!(
            major,
            newest = NEWEST_MAJOR,
            bin_dir = %settings.bin_dir.display(),
            "this PostgreSQL major is newer than any raftgres is tested with"
        );
    }
    // A rewind runs CHECKPOINT on its source as the rewind login. Before
    // 15 only a superuser may; granting the login superuser would undo the
    // reason to have one apart, and checkpointing as the superuser would
    // need the superuser let in from the other members, which the managed
    // pg_hba.conf lets in only for the rewind login. So refuse, and say
    // how to run without it.
    if major < PG_CHECKPOINT_ROLE_SINCE
        && let Some(rewind) = &settings.rewind
        && rewind.user != settings.superuser.user
    {
        return Err(PgError::RewindLoginNeedsMajor {
            user: rewind.user.clone(),
            major,
        });
    }
    Ok(())
}

/// Refuses `found` (the major of the data directory at `what`, or of the
/// server being cloned) unless it is the binaries' `major`.
pub(crate) fn check_same_major(
    settings: &PgSettings,
    what: impl std::fmt::Display,
    found: u32,
    major: u32,
) -> Result<()> {
    if found == major {
        return Ok(());
    }
    Err(PgError::MajorMismatch {
        what: what.to_string(),
        found,
        bin_dir: settings.bin_dir.clone(),
        major,
    })
}

/// The major of the server in `pg_basebackup`'s refusal of one newer
/// than itself: `pg_basebackup: error: incompatible server version 18.6`.
pub(crate) fn incompatible_server_major(stderr: &str) -> Option<u32> {
    let (_, rest) = stderr.split_once("incompatible server version ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The binaries this crate runs, all looked up in `PgSettings::bin_dir`.
pub(crate) mod bin {
    pub const INITDB: &str = "initdb";
    pub const POSTGRES: &str = "postgres";
    pub const PG_BASEBACKUP: &str = "pg_basebackup";
    pub const PG_REWIND: &str = "pg_rewind";
    pub const PG_CONTROLDATA: &str = "pg_controldata";
}

/// Files inside the data directory.
pub(crate) mod file {
    /// Present in every initialized data directory.
    pub const PG_VERSION: &str = "PG_VERSION";
    pub const POSTGRESQL_CONF: &str = "postgresql.conf";
    pub const PG_HBA_CONF: &str = "pg_hba.conf";
    /// Ours; `postgresql.conf` includes it. Rewritten on every role change.
    pub const MANAGED_CONF: &str = "raftgres.conf";
    /// Since PostgreSQL 12 the presence of this file, not a `recovery.conf`,
    /// makes the server start as a standby.
    pub const STANDBY_SIGNAL: &str = "standby.signal";
    /// Targeted recovery; we never create it, but a leftover one would make a
    /// primary stop at the end of its WAL instead of opening for writes.
    pub const RECOVERY_SIGNAL: &str = "recovery.signal";
    /// The postmaster's lock file; its first line is the postmaster's PID.
    pub const POSTMASTER_PID: &str = "postmaster.pid";
    /// A Unix socket is `<dir>/.s.PGSQL.<port>`, its lock file the same
    /// with `.lock` appended.
    pub const SOCKET_PREFIX: &str = ".s.PGSQL.";
}

/// Server settings whose names changed across versions.
pub(crate) mod guc {
    /// Renamed from `wal_keep_segments` in PostgreSQL 13.
    pub const WAL_KEEP_SIZE: &str = "wal_keep_size";
    /// In `postgresql.conf` (not `recovery.conf`) since PostgreSQL 12, and
    /// reloadable (SIGHUP) since 13, so a standby can follow a new primary
    /// without a restart.
    pub const PRIMARY_CONNINFO: &str = "primary_conninfo";
    pub const PRIMARY_SLOT_NAME: &str = "primary_slot_name";
}

/// The labels `pg_controldata` prints (with `LC_ALL=C`) for the fields we read.
pub(crate) mod controldata {
    pub const SYSTEM_ID: &str = "Database system identifier";
    pub const STATE: &str = "Database cluster state";
    pub const CHECKPOINT_LSN: &str = "Latest checkpoint location";
    pub const REDO_LSN: &str = "Latest checkpoint's REDO location";
    pub const TIMELINE: &str = "Latest checkpoint's TimeLineID";
    pub const MIN_RECOVERY_LSN: &str = "Minimum recovery ending location";
    pub const MIN_RECOVERY_TIMELINE: &str = "Min recovery ending loc's timeline";

    /// The values of `Database cluster state` (`dbState()` in
    /// `src/bin/pg_controldata/pg_controldata.c`).
    pub mod state {
        pub const STARTING: &str = "starting up";
        pub const SHUT_DOWN: &str = "shut down";
        pub const SHUT_DOWN_IN_RECOVERY: &str = "shut down in recovery";
        pub const SHUTTING_DOWN: &str = "shutting down";
        pub const IN_CRASH_RECOVERY: &str = "in crash recovery";
        pub const IN_ARCHIVE_RECOVERY: &str = "in archive recovery";
        pub const IN_PRODUCTION: &str = "in production";
    }
}

/// SQL whose spelling depends on the version.
pub(crate) mod sql {
    /// `pg_get_wal_replay_pause_state()` exists since PostgreSQL 14; before,
    /// `pg_is_wal_replay_paused()` could not tell "requested" from "paused".
    pub const REPLAY_PAUSE_STATE: &str = "pg_get_wal_replay_pause_state()";
    /// Its answer when no pause is requested.
    pub const NOT_PAUSED: &str = "not paused";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Login;

    #[test]
    fn the_major_of_each_version_line() {
        for (line, major) in [
            ("postgres (PostgreSQL) 18.6\n", Some(18)),
            ("postgres (PostgreSQL) 14.23", Some(14)),
            (
                "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)\n",
                Some(15),
            ),
            ("postgres (PostgreSQL) 19beta1", Some(19)),
            ("postgres (PostgreSQL) 19devel", Some(19)),
            ("postgres (PostgreSQL) 9.6.24", Some(9)),
            ("pg_ctl (PostgreSQL) 18.6", None),
            ("", None),
        ] {
            assert_eq!(parse_version_output(line), major, "{line:?}");
        }
    }

    #[test]
    fn the_major_of_a_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(data_dir_major(dir.path()).unwrap(), None);
        for (text, major) in [("15\n", 15), ("18", 18), ("9.6\n", 9)] {
            std::fs::write(dir.path().join(file::PG_VERSION), text).unwrap();
            assert_eq!(data_dir_major(dir.path()).unwrap(), Some(major), "{text:?}");
        }
        std::fs::write(dir.path().join(file::PG_VERSION), "x\n").unwrap();
        assert!(data_dir_major(dir.path()).is_err());
    }

    #[test]
    fn pg_basebackups_refusal_names_the_servers_major() {
        let stderr = "pg_basebackup: error: incompatible server version 18.6\n";
        assert_eq!(incompatible_server_major(stderr), Some(18));
        assert_eq!(incompatible_server_major("could not connect"), None);
    }

    fn settings() -> PgSettings {
        PgSettings::new("/srv/pg/node1", 5432, "node1")
    }

    #[test]
    fn another_major_than_the_data_directorys_names_both_and_the_setting() {
        let s = settings();
        assert!(check_same_major(&s, s.data_dir.display(), 15, 15).is_ok());
        let err = check_same_major(&s, s.data_dir.display(), 18, 15)
            .unwrap_err()
            .to_string();
        for part in [
            "/srv/pg/node1",
            "PostgreSQL 18",
            "PostgreSQL 15",
            "postgresql.bin_dir",
        ] {
            assert!(err.contains(part), "{part} in {err}");
        }
    }

    #[test]
    fn majors_before_14_are_refused() {
        let s = settings();
        let err = check_settings(&s, 13).unwrap_err().to_string();
        assert!(err.contains("PostgreSQL 13") && err.contains("14"), "{err}");
        for major in 14..=19 {
            assert!(check_settings(&s, major).is_ok(), "{major}");
        }
    }

    #[test]
    fn a_rewind_login_apart_from_the_superuser_needs_15() {
        let mut s = settings();
        s.rewind = Some(Login::new("rewinder", "secret"));
        let err = check_settings(&s, 14).unwrap_err().to_string();
        assert!(
            err.contains("rewinder") && err.contains("postgresql.authentication.rewind"),
            "{err}"
        );
        assert!(check_settings(&s, 15).is_ok());
        assert!(check_settings(&s, 18).is_ok());
        // The superuser named as the rewind login is no login apart.
        s.rewind = Some(s.superuser.clone());
        assert!(check_settings(&s, 14).is_ok());
    }
}
