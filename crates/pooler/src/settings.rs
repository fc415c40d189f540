//! The agent's pgbouncer settings, checked before anything is written.

use crate::admin::AdminTarget;
use crate::error::{PoolerError, Result};
use crate::routes::{Routes, Target, check_name};
use std::path::PathBuf;
use std::time::Duration;

/// What an agent needs to keep one pgbouncer pointed at the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolerSettings {
    /// The file pgbouncer.ini `%include`s; the agent owns it.
    pub databases_file: PathBuf,
    pub admin: AdminTarget,
    /// Client-facing name of the write database.
    pub write_db: String,
    /// Client-facing name of the read database, if any.
    pub read_db: Option<String>,
    /// The database opened on the servers.
    pub dbname: String,
    /// How long a switchover's PAUSE may wait for running transactions.
    pub pause_timeout: Duration,
}

impl PoolerSettings {
    /// Rejects what would fail later, naming the key: the error reads
    /// `pgbouncer.KEY "VALUE" is invalid: why; fix the agent config`.
    pub fn validate(&self) -> Result<()> {
        let invalid =
            |key, value: String, reason| Err(PoolerError::InvalidSetting { key, value, reason });
        let file = &self.databases_file;
        if !file.is_absolute() {
            return invalid(
                "databases_file",
                file.display().to_string(),
                "it must be an absolute path, as pgbouncer's %include resolves a relative one against its own working directory",
            );
        }
        if file.file_name().is_none() {
            return invalid(
                "databases_file",
                file.display().to_string(),
                "it names no file",
            );
        }
        if self.admin.host.is_empty() {
            return invalid("listen", String::new(), "the host is empty");
        }
        if self.admin.port == 0 {
            return invalid(
                "listen",
                format!("{}:0", self.admin.host),
                "port 0 is not pgbouncer's listen_port",
            );
        }
        if self.admin.user.is_empty() {
            return invalid(
                "admin_user",
                String::new(),
                "name a user listed in pgbouncer's admin_users",
            );
        }
        for (key, timeout) in [
            ("pause_timeout", self.pause_timeout),
            ("connect_timeout", self.admin.connect_timeout),
            ("command_timeout", self.admin.command_timeout),
        ] {
            if timeout.is_zero() {
                return invalid(key, "0s".to_owned(), "a zero timeout fails every call");
            }
        }
        check_name("write_db", &self.write_db)?;
        self.routes(None, Vec::new()).validate()
    }

    /// Routes over these settings' names.
    pub fn routes(&self, write: Option<Target>, read: Vec<Target>) -> Routes {
        Routes {
            write,
            read,
            write_db: self.write_db.clone(),
            read_db: self.read_db.clone(),
            dbname: self.dbname.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PoolerSettings {
        PoolerSettings {
            databases_file: PathBuf::from("/etc/pgbouncer/raftgres-databases.ini"),
            admin: AdminTarget::new("127.0.0.1", 6432, "postgres"),
            write_db: "app".into(),
            read_db: Some("app_ro".into()),
            dbname: "app".into(),
            pause_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn good_settings_pass() {
        settings().validate().expect("valid");
    }

    type Spoil = fn(&mut PoolerSettings);

    #[test]
    fn each_bad_setting_is_named() {
        let cases: Vec<(Spoil, &str)> = vec![
            (
                |s| s.databases_file = "databases.ini".into(),
                "pgbouncer.databases_file \"databases.ini\" is invalid: it must be an absolute path",
            ),
            (
                |s| s.databases_file = "/".into(),
                "pgbouncer.databases_file \"/\" is invalid: it names no file",
            ),
            (|s| s.admin.port = 0, "pgbouncer.listen"),
            (|s| s.admin.user.clear(), "pgbouncer.admin_user"),
            (|s| s.write_db.clear(), "pgbouncer.write_db"),
            (|s| s.read_db = Some("app".into()), "pgbouncer.read_db"),
            (|s| s.dbname = "my db".into(), "pgbouncer.dbname"),
            (
                |s| s.pause_timeout = Duration::ZERO,
                "pgbouncer.pause_timeout",
            ),
        ];
        for (spoil, want) in cases {
            let mut s = settings();
            spoil(&mut s);
            let err = s.validate().expect_err(want).to_string();
            assert!(
                err.starts_with(want),
                "{err:?} does not start with {want:?}"
            );
            assert!(err.ends_with("fix the agent config"), "{err}");
        }
    }
}
