//! What the data directory's control file says, read with `pg_controldata`
//! (which works whether or not the server runs).

use crate::error::{PgError, Result};
use crate::lsn::Lsn;
use crate::settings::PgSettings;
use crate::tools::Tool;
use crate::version::{bin, controldata as field};
use std::path::Path;

/// `Database cluster state` from the control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbState {
    Starting,
    /// Clean shutdown of a primary.
    ShutDown,
    /// Clean shutdown of a standby.
    ShutDownInRecovery,
    ShuttingDown,
    InCrashRecovery,
    /// Running (or crashed) as a standby.
    InArchiveRecovery,
    /// Running as a primary, or crashed while running as one.
    InProduction,
    /// A label this version of the crate does not know.
    Other(String),
}

impl DbState {
    fn parse(text: &str) -> DbState {
        use crate::version::controldata::state::*;
        match text {
            STARTING => DbState::Starting,
            SHUT_DOWN => DbState::ShutDown,
            SHUT_DOWN_IN_RECOVERY => DbState::ShutDownInRecovery,
            SHUTTING_DOWN => DbState::ShuttingDown,
            IN_CRASH_RECOVERY => DbState::InCrashRecovery,
            IN_ARCHIVE_RECOVERY => DbState::InArchiveRecovery,
            IN_PRODUCTION => DbState::InProduction,
            other => DbState::Other(other.to_owned()),
        }
    }

    /// pg_rewind (and a switchover's "has the candidate got the shutdown
    /// checkpoint") accept only these two.
    pub fn is_clean_shutdown(&self) -> bool {
        matches!(self, DbState::ShutDown | DbState::ShutDownInRecovery)
    }

    /// Whether the data directory was last used by a primary, i.e. may hold
    /// WAL no standby has: such a directory must be rewound (or cloned)
    /// before it may follow another primary.
    pub fn was_primary(&self) -> bool {
        matches!(
            self,
            DbState::ShutDown
                | DbState::ShuttingDown
                | DbState::InProduction
                | DbState::InCrashRecovery
        )
    }
}

/// The fields of `pg_controldata` the agent decides with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    /// The cluster's identity; equal on a primary and all its clones.
    pub system_id: String,
    pub state: DbState,
    /// `Latest checkpoint's TimeLineID`. Lags behind a promotion until the
    /// first checkpoint after it completes.
    pub timeline: u32,
    pub checkpoint_lsn: Lsn,
    pub redo_lsn: Lsn,
    /// A standby is consistent (may be promoted or opened) only past this.
    pub min_recovery_end_lsn: Lsn,
    pub min_recovery_end_timeline: u32,
}

/// Runs `pg_controldata` on `settings.data_dir`.
pub async fn controldata(settings: &PgSettings) -> Result<ControlData> {
    settings.validate()?;
    crate::bootstrap::require_initialized(&settings.data_dir)?;
    let output = Tool::new(settings, bin::PG_CONTROLDATA)?
        .arg("-D")
        .arg(&settings.data_dir)
        .run()
        .await?;
    parse(&String::from_utf8_lossy(&output.stdout), &settings.data_dir)
}

/// Parses `pg_controldata` output printed with `LC_ALL=C`.
pub fn parse(text: &str, data_dir: &Path) -> Result<ControlData> {
    let value = |name: &'static str| {
        text.lines()
            .find_map(|line| {
                let (label, value) = line.split_once(':')?;
                (label.trim() == name).then(|| value.trim())
            })
            .ok_or_else(|| missing(data_dir, name))
    };
    let lsn = |name: &'static str| Lsn::parse(value(name)?).map_err(|_| missing(data_dir, name));
    let number = |name: &'static str| {
        value(name)?
            .parse::<u32>()
            .map_err(|_| missing(data_dir, name))
    };
    let system_id = value(field::SYSTEM_ID)?;
    if system_id.is_empty() || !system_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(missing(data_dir, field::SYSTEM_ID));
    }
    Ok(ControlData {
        system_id: system_id.to_owned(),
        state: DbState::parse(value(field::STATE)?),
        timeline: number(field::TIMELINE)?,
        checkpoint_lsn: lsn(field::CHECKPOINT_LSN)?,
        redo_lsn: lsn(field::REDO_LSN)?,
        min_recovery_end_lsn: lsn(field::MIN_RECOVERY_LSN)?,
        min_recovery_end_timeline: number(field::MIN_RECOVERY_TIMELINE)?,
    })
}

fn missing(data_dir: &Path, field: &'static str) -> PgError {
    PgError::ControlData {
        path: data_dir.to_path_buf(),
        field,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `LC_ALL=C pg_controldata` of a PostgreSQL 15.x standby that was
    /// streaming and then was killed (trimmed after the fields we read).
    const STANDBY_KILLED: &str = "\
pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7710869394241131953
Database cluster state:               in archive recovery
pg_control last modified:             Sun Nov 22 05:51:24 2026
Latest checkpoint location:           0/3000060
Latest checkpoint's REDO location:    0/3000028
Latest checkpoint's REDO WAL file:    000000020000000000000003
Latest checkpoint's TimeLineID:       2
Latest checkpoint's PrevTimeLineID:   1
Latest checkpoint's full_page_writes: on
Latest checkpoint's NextXID:          0:724
Time of latest checkpoint:            Sun Nov 22 05:51:24 2026
Fake LSN counter for unlogged rels:   0/3E8
Minimum recovery ending location:     0/3000110
Min recovery ending loc's timeline:   2
Backup start location:                0/0
Data page checksum version:           1
Mock authentication nonce:            c1dfd2bc20d5582585845ca8a601d59b64e3c045922e0f11858ca7164e56759a
";

    #[test]
    fn parses_the_fields_we_use() {
        let cd = parse(STANDBY_KILLED, Path::new("/d")).unwrap();
        assert_eq!(
            cd,
            ControlData {
                system_id: "7710869394241131953".into(),
                state: DbState::InArchiveRecovery,
                timeline: 2,
                checkpoint_lsn: Lsn(0x3000060),
                redo_lsn: Lsn(0x3000028),
                min_recovery_end_lsn: Lsn(0x3000110),
                min_recovery_end_timeline: 2,
            }
        );
        assert!(!cd.state.is_clean_shutdown());
        assert!(!cd.state.was_primary());
    }

    #[test]
    fn states() {
        let with_state = |s: &str| STANDBY_KILLED.replace("in archive recovery", s);
        let state = |s: &str| parse(&with_state(s), Path::new("/d")).unwrap().state;
        assert_eq!(state("shut down"), DbState::ShutDown);
        assert!(state("shut down").is_clean_shutdown());
        assert!(state("shut down").was_primary());
        assert_eq!(state("shut down in recovery"), DbState::ShutDownInRecovery);
        assert!(state("shut down in recovery").is_clean_shutdown());
        assert!(!state("shut down in recovery").was_primary());
        assert_eq!(state("in production"), DbState::InProduction);
        assert!(!state("in production").is_clean_shutdown());
        assert_eq!(state("in crash recovery"), DbState::InCrashRecovery);
        assert_eq!(
            state("something new"),
            DbState::Other("something new".into())
        );
    }

    #[test]
    fn missing_or_garbled_fields_name_the_field_and_directory() {
        let without = STANDBY_KILLED.replace("Latest checkpoint's TimeLineID:       2\n", "");
        let err = parse(&without, Path::new("/srv/data"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("TimeLineID") && err.contains("/srv/data"),
            "{err}"
        );

        let garbled = STANDBY_KILLED.replace("0/3000060", "zz");
        let err = parse(&garbled, Path::new("/d")).unwrap_err().to_string();
        assert!(err.contains("Latest checkpoint location"), "{err}");

        assert!(parse("", Path::new("/d")).is_err());
    }
}
