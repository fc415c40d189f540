//! A restart of a member's Postgres that an operator asked for: Patroni's
//! conditions (`role`, `postgres_version`, `restart_pending`) and
//! `timeout`, and the restart scheduled for a set time that a member keeps
//! in its own record (Patroni's `scheduled_restart`), so that it outlives
//! the agent and every member shows it.

use serde::{Deserialize, Serialize};

/// Why a restart's condition was refused. Each message names the key and
/// what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestartError {
    #[error("role {0:?} is neither primary nor replica")]
    Role(String),
    #[error("role standby_leader: raftgres has no standby clusters; send primary or replica")]
    StandbyLeader,
    #[error(
        "postgres_version {0:?} is not a PostgreSQL version: X.Y from version 10 on (15.4), \
         X.Y.Z before (9.6.24)"
    )]
    Version(String),
}

/// Patroni's `role` condition: restart only a member that runs in this role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartRole {
    Primary,
    Replica,
}

impl RestartRole {
    /// Patroni's words, `master` included (its name before 3.0).
    pub fn parse(text: &str) -> Result<RestartRole, RestartError> {
        match text {
            "primary" | "master" => Ok(RestartRole::Primary),
            "replica" => Ok(RestartRole::Replica),
            "standby_leader" => Err(RestartError::StandbyLeader),
            _ => Err(RestartError::Role(text.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RestartRole::Primary => "primary",
            RestartRole::Replica => "replica",
        }
    }
}

/// A PostgreSQL version as Patroni's `postgres_version` takes it, kept as
/// written (it is shown back) and compared as `server_version_num`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PostgresVersion(String);

impl PostgresVersion {
    /// `X.Y` from version 10 on, `X.Y.Z` before, as Patroni reads it.
    pub fn parse(text: &str) -> Result<PostgresVersion, RestartError> {
        let version = PostgresVersion(text.to_owned());
        version
            .num()
            .map(|_| version)
            .ok_or_else(|| RestartError::Version(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// As `server_version_num` counts: 15.2 is 150002, 9.6.3 is 90603.
    /// `None` for text [`Self::parse`] refuses, which a record can only
    /// hold if a later agent wrote it.
    pub fn num(&self) -> Option<u32> {
        let parts: Vec<u32> = self
            .0
            .split('.')
            .map(|part| {
                (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| part.parse().ok())
                    .flatten()
            })
            .collect::<Option<_>>()?;
        let (major, minor, patch) = match parts[..] {
            [major, minor] if major >= 10 => (major, 0, minor),
            [major, minor, patch] => (major, minor, patch),
            _ => return None,
        };
        (minor < 100 && patch < 100)
            .then(|| major.checked_mul(10_000)?.checked_add(minor * 100 + patch))
            .flatten()
    }
}

/// The conditions and timeout of a restart, as Patroni's `POST /restart`
/// takes them beside `schedule`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RestartOptions {
    /// Only if the member runs in this role then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RestartRole>,
    /// Only if the running server's version is lower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_version: Option<PostgresVersion>,
    /// Only if a setting waits for a restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_pending: bool,
    /// How long the restart waits for Postgres to accept connections
    /// before it counts as failed; `None`: the agent's start timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// A restart that runs at a set time, in the record of the member it
/// restarts. Only that member's agent writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledRestart {
    /// When, in Unix milliseconds, as the requester's clock read the time
    /// it was given (a wall-clock time by its nature).
    pub at_unix_ms: u64,
    #[serde(flatten)]
    pub options: RestartOptions,
    /// When the postmaster running at the time of scheduling started: a
    /// restart since (by an operator, or after a crash) makes this one
    /// moot, as in Patroni.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postmaster_start_unix_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_as_server_version_num() {
        #[rustfmt::skip]
        let rows = [
            ("15.2", Some(150_002)),
            ("10.0", Some(100_000)),
            ("17.10", Some(170_010)),
            ("9.6.3", Some(90_603)),
            ("9.6", None),
            ("15", None),
            ("15.2.1.0", None),
            ("15.x", None),
            ("15.-1", None),
            ("15.+1", None),
            ("15.", None),
            ("", None),
            ("15.100", None),
            ("99999999.1", None),
        ];
        for (text, want) in rows {
            let version = PostgresVersion(text.to_owned());
            assert_eq!(version.num(), want, "{text:?}");
            assert_eq!(
                PostgresVersion::parse(text).is_ok(),
                want.is_some(),
                "{text:?}"
            );
        }
        let err = PostgresVersion::parse("fifteen").unwrap_err().to_string();
        assert!(err.contains("postgres_version \"fifteen\""), "{err}");
    }

    #[test]
    fn roles_are_patronis_words() {
        assert_eq!(RestartRole::parse("primary"), Ok(RestartRole::Primary));
        assert_eq!(RestartRole::parse("master"), Ok(RestartRole::Primary));
        assert_eq!(RestartRole::parse("replica"), Ok(RestartRole::Replica));
        assert_eq!(
            RestartRole::parse("standby_leader"),
            Err(RestartError::StandbyLeader)
        );
        assert_eq!(
            RestartRole::parse("leader"),
            Err(RestartError::Role("leader".into()))
        );
    }

    /// A record written before any option existed reads back, and one
    /// with options leaves out what is not set.
    #[test]
    fn a_scheduled_restart_is_written_compactly() {
        let bare: ScheduledRestart =
            serde_json::from_str(r#"{"at_unix_ms": 5}"#).expect("a bare record");
        assert_eq!(
            bare,
            ScheduledRestart {
                at_unix_ms: 5,
                options: RestartOptions::default(),
                postmaster_start_unix_ms: None,
            }
        );
        let full = ScheduledRestart {
            at_unix_ms: 5,
            options: RestartOptions {
                role: Some(RestartRole::Replica),
                postgres_version: Some(PostgresVersion::parse("15.4").expect("a version")),
                restart_pending: true,
                timeout_ms: Some(30_000),
            },
            postmaster_start_unix_ms: Some(7),
        };
        let text = serde_json::to_string(&full).expect("JSON");
        assert_eq!(
            text,
            r#"{"at_unix_ms":5,"role":"replica","postgres_version":"15.4","restart_pending":true,"timeout_ms":30000,"postmaster_start_unix_ms":7}"#
        );
        assert_eq!(
            serde_json::from_str::<ScheduledRestart>(&text).expect("reads back"),
            full
        );
        assert_eq!(
            serde_json::to_string(&bare).expect("JSON"),
            r#"{"at_unix_ms":5}"#
        );
    }
}
