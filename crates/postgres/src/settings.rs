use crate::error::{PgError, Result};
use crate::version;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to reach and run the one local PostgreSQL this crate drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// Directory holding `postgres`, `initdb`, `pg_basebackup`, `pg_rewind`
    /// and `pg_controldata`.
    pub bin_dir: PathBuf,
    /// Absolute path of the data directory.
    pub data_dir: PathBuf,
    /// Listen address (`listen_addresses`); control queries connect here too.
    pub host: String,
    pub port: u16,
    /// Where the server puts its Unix socket (`unix_socket_directories`).
    pub socket_dir: PathBuf,
    /// The role control queries and `pg_rewind` use (created by initdb).
    pub superuser: String,
    /// The role standbys stream with (created by [`crate::initdb`]).
    pub replication_user: String,
    /// This member's name: `application_name` upstream and `cluster_name`.
    pub application_name: String,
    /// Extra server settings, written after ours so they win.
    pub parameters: BTreeMap<String, String>,
    /// What a primary's commits wait for (`synchronous_standby_names`).
    pub synchronous_standbys: SyncStandbys,
    /// Only for a caller running as root (the lab, tests): run every
    /// PostgreSQL binary as this user, since PostgreSQL refuses root. The
    /// agent itself runs as `postgres` and leaves this `None`.
    pub run_as: Option<RunAs>,
    /// Where the postmaster's stdout and stderr are appended; `None` means
    /// `<data_dir's parent>/<application_name>-postgres.log`, outside the data
    /// directory so a clone or rewind never copies or clobbers it.
    pub log_file: Option<PathBuf>,
    /// Bound on establishing a control connection.
    pub connect_timeout: Duration,
    /// Bound on each control query.
    pub query_timeout: Duration,
}

impl PgSettings {
    /// Settings with the defaults of a lab member: PostgreSQL 15 from
    /// Debian's package, listening on loopback, roles `postgres` and
    /// `replicator`, 2 s bounds on control connections and queries.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        port: u16,
        application_name: impl Into<String>,
    ) -> Self {
        PgSettings {
            bin_dir: PathBuf::from(version::DEFAULT_BIN_DIR),
            data_dir: data_dir.into(),
            host: "127.0.0.1".to_owned(),
            port,
            socket_dir: PathBuf::from("/var/run/postgresql"),
            superuser: "postgres".to_owned(),
            replication_user: "replicator".to_owned(),
            application_name: application_name.into(),
            parameters: BTreeMap::new(),
            synchronous_standbys: SyncStandbys::Nobody,
            run_as: None,
            log_file: None,
            connect_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(2),
        }
    }

    /// The server binary, whose processes are the server.
    pub fn server_binary(&self) -> PathBuf {
        self.binary(crate::version::bin::POSTGRES)
    }

    /// The path of one of the PostgreSQL binaries.
    pub(crate) fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Fails with a message naming the missing binary before anything runs.
    pub(crate) fn require_binary(&self, name: &str) -> Result<PathBuf> {
        let path = self.binary(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(PgError::BinaryMissing { path })
        }
    }

    pub fn log_path(&self) -> PathBuf {
        if let Some(path) = &self.log_file {
            return path.clone();
        }
        let parent = self.data_dir.parent().unwrap_or(Path::new("/"));
        parent.join(format!("{}-postgres.log", self.application_name))
    }

    /// The address control queries use: a wildcard listen address is not
    /// something a client can connect to, so those go to loopback.
    pub(crate) fn control_host(&self) -> &str {
        match self.host.as_str() {
            "" | "*" | "0.0.0.0" => "127.0.0.1",
            "::" => "::1",
            host => host,
        }
    }

    /// Checks what would otherwise fail late or be misread by PostgreSQL.
    pub fn validate(&self) -> Result<()> {
        for (what, path) in [
            ("bin_dir", &self.bin_dir),
            ("data_dir", &self.data_dir),
            ("socket_dir", &self.socket_dir),
        ] {
            if !path.is_absolute() {
                return Err(PgError::InvalidInput {
                    what,
                    value: path.display().to_string(),
                    reason: "must be an absolute path (the server and tools run from another working directory)",
                });
            }
        }
        if self.port == 0 {
            return Err(PgError::InvalidInput {
                what: "port",
                value: "0".to_owned(),
                reason: "must be a fixed port so peers and clients can find the server",
            });
        }
        check_role_name("superuser", &self.superuser)?;
        check_role_name("replication_user", &self.replication_user)?;
        check_conf_text("host", &self.host)?;
        check_conf_text("application_name", &self.application_name)?;
        if self.application_name.is_empty() {
            return Err(PgError::InvalidInput {
                what: "application_name",
                value: String::new(),
                reason: "must name this member so the primary can tell its standbys apart",
            });
        }
        if let SyncStandbys::All(names) | SyncStandbys::Any { names, .. } =
            &self.synchronous_standbys
        {
            for name in names {
                check_conf_text("synchronous standby name", name)?;
                if name.is_empty() || name.contains(['"', '\'']) {
                    return Err(PgError::InvalidInput {
                        what: "synchronous standby name",
                        value: name.clone(),
                        reason: "an application_name in synchronous_standby_names is quoted, \
                                 so it cannot be empty or hold quotes",
                    });
                }
            }
        }
        for (name, value) in &self.parameters {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            {
                return Err(PgError::InvalidInput {
                    what: "parameter name",
                    value: name.clone(),
                    reason: "a server setting name is letters, digits, '_' and '.'",
                });
            }
            check_conf_text("parameter value", value)?;
        }
        Ok(())
    }
}

/// What a primary's commits wait for before they are acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SyncStandbys {
    /// Nothing: asynchronous replication.
    #[default]
    Nobody,
    /// Any one connected standby.
    AnyOne,
    /// Every one of these standbys (by `application_name`).
    All(BTreeSet<String>),
    /// Any `n` of these standbys: quorum commit.
    Any { n: u32, names: BTreeSet<String> },
}

impl SyncStandbys {
    /// The value of `synchronous_standby_names`, unquoted.
    pub fn setting(&self) -> String {
        match self {
            SyncStandbys::Nobody => String::new(),
            SyncStandbys::AnyOne => "*".to_owned(),
            SyncStandbys::All(names) => format!("FIRST {} ({})", names.len(), quoted(names)),
            SyncStandbys::Any { n, names } => format!("ANY {n} ({})", quoted(names)),
        }
    }
}

fn quoted(names: &BTreeSet<String>) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Role names go unquoted into `pg_hba.conf`, command lines and SQL, so they
/// are kept to plain identifiers.
fn check_role_name(what: &'static str, name: &str) -> Result<()> {
    let mut bytes = name.bytes();
    let plain = matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.len() <= 63;
    if plain {
        Ok(())
    } else {
        Err(PgError::InvalidInput {
            what,
            value: name.to_owned(),
            reason: "a role name here is 1 to 63 lowercase letters, digits or '_', not starting with a digit",
        })
    }
}

/// A configuration file line cannot carry a line break or NUL, even quoted.
fn check_conf_text(what: &'static str, text: &str) -> Result<()> {
    if text.contains(['\n', '\r', '\0']) {
        return Err(PgError::InvalidInput {
            what,
            value: text.to_owned(),
            reason: "must not contain line breaks or NUL",
        });
    }
    Ok(())
}

/// The user and group PostgreSQL's processes run as when the caller is root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// Looks up a user (normally `postgres`) and its primary group.
    pub fn user(name: &str) -> Result<RunAs> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(user)) => Ok(RunAs {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            }),
            Ok(None) => Err(PgError::InvalidInput {
                what: "run_as user",
                value: name.to_owned(),
                reason: "no such user on this machine; install PostgreSQL (it creates `postgres`) or name another",
            }),
            Err(errno) => Err(PgError::Io {
                action: "look up the user in",
                path: PathBuf::from("/etc/passwd"),
                source: errno.into(),
            }),
        }
    }
}

/// Another member's PostgreSQL, to clone from, rewind from or stream from.
/// Roles come from [`PgSettings`]: every member shares them because a clone
/// copies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What the managed configuration makes of the server at its next start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Primary,
    /// Streams from `upstream` as `PgSettings::replication_user`, through
    /// the physical slot `slot` when given (the primary must have created it).
    Standby {
        upstream: Upstream,
        slot: Option<String>,
    },
    /// In recovery with no upstream: replays the WAL it has and waits to be
    /// promoted or pointed at a primary (e.g. when no member leads yet).
    DetachedStandby,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PgSettings {
        PgSettings::new("/var/lib/postgresql/15/main", 5432, "node1")
    }

    #[test]
    fn defaults_are_valid() {
        settings().validate().unwrap();
    }

    #[test]
    fn rejects_relative_paths_and_odd_names() {
        let mut s = settings();
        s.data_dir = PathBuf::from("data");
        assert!(s.validate().unwrap_err().to_string().contains("data_dir"));

        let mut s = settings();
        s.replication_user = "repl user".into();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("replication_user")
        );

        let mut s = settings();
        s.parameters.insert("work_mem\nfsync".into(), "off".into());
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("parameter name")
        );

        let mut s = settings();
        s.parameters
            .insert("work_mem".into(), "4MB\nfsync = off".into());
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("line breaks")
        );
    }

    #[test]
    fn default_log_sits_beside_the_data_directory() {
        assert_eq!(
            settings().log_path(),
            PathBuf::from("/var/lib/postgresql/15/node1-postgres.log")
        );
    }

    #[test]
    fn upstream_display_brackets_ipv6() {
        let v6 = Upstream {
            host: "::1".into(),
            port: 5432,
        };
        assert_eq!(v6.to_string(), "[::1]:5432");
        let v4 = Upstream {
            host: "10.0.0.1".into(),
            port: 5432,
        };
        assert_eq!(v4.to_string(), "10.0.0.1:5432");
    }
}
