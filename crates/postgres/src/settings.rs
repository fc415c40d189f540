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
    /// The role control queries use (created by initdb), and `pg_rewind`
    /// unless `rewind` is set.
    pub superuser: Login,
    /// The role standbys stream with (created by [`crate::initdb`]).
    pub replication: Login,
    /// A role that may only run `pg_rewind` and `CHECKPOINT` (created by
    /// [`crate::initdb`]); `None`: the superuser rewinds.
    pub rewind: Option<Login>,
    /// The libpq password file the tools and the walreceiver log in with
    /// (mode 0600, owned by the server's user), so no password is ever an
    /// argument or in a configuration file.
    pub passfile: PathBuf,
    /// Lines of `pg_hba.conf` for everyone but the members themselves, after
    /// the agent's own (Patroni's `postgresql.pg_hba`); empty: every login
    /// over TCP needs a password (`host all all all scram-sha-256`).
    pub hba: Vec<String>,
    /// TLS on every connection to a server over TCP: the agent's, the
    /// walreceiver's and the tools'. With a mode that requires TLS the
    /// members' replication and rewind lines in `pg_hba.conf` are
    /// `hostssl`, so the server refuses them in clear too.
    pub tls: crate::tls::ClientTls,
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
    /// `replicator`, 2 s bounds on control connections and queries. The
    /// passwords are empty, which [`PgSettings::validate`] refuses: the
    /// caller gives them.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        port: u16,
        application_name: impl Into<String>,
    ) -> Self {
        let data_dir: PathBuf = data_dir.into();
        let application_name: String = application_name.into();
        let passfile = data_dir
            .parent()
            .unwrap_or(Path::new("/"))
            .join(format!("{application_name}-pgpass"));
        PgSettings {
            bin_dir: PathBuf::from(version::DEFAULT_BIN_DIR),
            data_dir,
            host: "127.0.0.1".to_owned(),
            port,
            socket_dir: PathBuf::from("/var/run/postgresql"),
            superuser: Login::new("postgres", ""),
            replication: Login::new("replicator", ""),
            rewind: None,
            passfile,
            hba: Vec::new(),
            tls: crate::tls::ClientTls::default(),
            application_name,
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

    /// This process may log in as the superuser over the Unix socket by
    /// `peer` authentication: it runs as the OS user of that name (the
    /// agent runs as `postgres`; a test harness running as root does not).
    pub(crate) fn superuser_is_peer(&self) -> bool {
        static OS_USER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        OS_USER
            .get_or_init(|| {
                nix::unistd::User::from_uid(nix::unistd::geteuid())
                    .ok()
                    .flatten()
                    .map(|user| user.name)
            })
            .as_deref()
            == Some(self.superuser.user.as_str())
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
        self.superuser.check("superuser")?;
        self.replication.check("replication user")?;
        if let Some(rewind) = &self.rewind {
            rewind.check("rewind user")?;
        }
        // One role has one password.
        let logins = [&self.superuser, &self.replication, self.rewinder()];
        for (i, a) in logins.iter().enumerate() {
            if logins[..i]
                .iter()
                .any(|b| b.user == a.user && b.password != a.password)
            {
                return Err(PgError::InvalidInput {
                    what: "logins",
                    value: a.user.clone(),
                    reason: "is given twice (superuser, replication or rewind) with two passwords; \
                             a role has one",
                });
            }
        }
        if !self.passfile.is_absolute() {
            return Err(PgError::InvalidInput {
                what: "passfile",
                value: self.passfile.display().to_string(),
                reason: "must be an absolute path (the tools run from another working directory)",
            });
        }
        for line in &self.hba {
            check_conf_text("pg_hba line", line)?;
        }
        self.tls.validate()?;
        if let Some(root) = &self.tls.root_cert {
            check_conf_text("sslrootcert", &root.display().to_string())?;
        }
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

/// The role `pg_rewind` and the rewind source's `CHECKPOINT` log in as.
impl PgSettings {
    pub fn rewinder(&self) -> &Login {
        self.rewind.as_ref().unwrap_or(&self.superuser)
    }
}

/// A role and the password it logs in with over TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// A plain identifier (see `check_role_name`).
    pub user: String,
    pub password: Password,
}

impl Login {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Login {
        Login {
            user: user.into(),
            password: Password::new(password),
        }
    }

    fn check(&self, what: &'static str) -> Result<()> {
        check_role_name(what, &self.user)?;
        let password = self.password.expose();
        if password.is_empty() {
            return Err(PgError::InvalidInput {
                what,
                value: self.user.clone(),
                reason: "has no password: every login over TCP needs one",
            });
        }
        // A password file line cannot carry a line break.
        if password.contains(['\n', '\r', '\0']) {
            return Err(PgError::InvalidInput {
                what,
                value: self.user.clone(),
                reason: "has a password with a line break or NUL, which a password file cannot hold",
            });
        }
        Ok(())
    }
}

/// A password: never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    /// The clear text, for the one place that must send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SCRAM-SHA-256 verifier Postgres stores, so the clear text never
    /// reaches SQL or a server log.
    pub(crate) fn scram_verifier(&self) -> String {
        postgres_protocol::password::scram_sha_256(self.0.as_bytes())
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
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
    /// Streams from `upstream` as `PgSettings::replication`, through
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
        let mut s = PgSettings::new("/var/lib/postgresql/15/main", 5432, "node1");
        s.superuser.password = Password::new("su-secret");
        s.replication.password = Password::new("repl-secret");
        s
    }

    #[test]
    fn defaults_with_passwords_are_valid() {
        settings().validate().unwrap();
    }

    #[test]
    fn every_login_needs_a_password() {
        let empty = PgSettings::new("/var/lib/postgresql/15/main", 5432, "node1");
        let err = empty.validate().unwrap_err().to_string();
        assert!(
            err.contains("superuser") && err.contains("no password"),
            "{err}"
        );

        let mut s = settings();
        s.rewind = Some(Login::new("rewinder", ""));
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("rewind user") && err.contains("no password"),
            "{err}"
        );

        let mut s = settings();
        s.replication.password = Password::new("two\nlines");
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("line break"), "{err}");
        assert!(!err.contains("two"), "the password is not echoed: {err}");
    }

    #[test]
    fn a_password_never_prints() {
        let s = settings();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("su-secret") && !shown.contains("repl-secret"),
            "{shown}"
        );
        assert!(
            s.superuser
                .password
                .scram_verifier()
                .starts_with("SCRAM-SHA-256$4096:")
        );
    }

    #[test]
    fn the_passfile_sits_beside_the_data_directory() {
        assert_eq!(
            settings().passfile,
            PathBuf::from("/var/lib/postgresql/15/node1-pgpass")
        );
    }

    #[test]
    fn rejects_relative_paths_and_odd_names() {
        let mut s = settings();
        s.data_dir = PathBuf::from("data");
        assert!(s.validate().unwrap_err().to_string().contains("data_dir"));

        let mut s = settings();
        s.replication.user = "repl user".into();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("replication user")
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
