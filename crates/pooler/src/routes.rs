//! What pgbouncer's `[databases]` section says: which server each
//! client-facing database name reaches.

use crate::error::{PoolerError, Result};
use std::fmt;

/// Where a database entry points when it has no server: a Unix socket in
/// `/nonexistent`, the directory Debian names as the home that must not
/// exist. Connecting fails at once with "no such file", so pgbouncer never
/// reaches a Postgres that could take writes through it, even after a restart
/// or a RELOAD the agent did not make.
pub const NO_SERVER_HOST: &str = "/nonexistent/raftgres-no-server";
/// pgbouncer requires a port even for a socket directory.
const NO_SERVER_PORT: u16 = 5432;

/// The name pgbouncer reserves for its admin console.
const ADMIN_DATABASE: &str = "pgbouncer";

/// One Postgres server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// An IP address, a host name, or a Unix socket directory (`/...`).
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Where pgbouncer should send clients now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// The current primary; `None` while none is known or this node cannot
    /// confirm it (for example after losing the lease).
    pub write: Option<Target>,
    /// Streaming replicas, most preferred first.
    pub read: Vec<Target>,
    /// The client-facing name of the write database, e.g. `app`.
    pub write_db: String,
    /// The client-facing name of the read database, e.g. `app_ro`; `None`
    /// renders no read entry.
    pub read_db: Option<String>,
    /// The database both entries open on the servers.
    pub dbname: String,
}

impl Routes {
    /// The database names whose entry points at no server
    /// ([`NO_SERVER_HOST`]). Keep them DISABLEd ([`crate::Admin::disable`]):
    /// a client that reaches one makes pgbouncer dial the dead address, and
    /// that failed login shuts the pool for `server_login_retry`, also after
    /// the entry is pointed at a live server again.
    pub fn without_server(&self) -> Vec<&str> {
        let mut names = Vec::new();
        if self.write.is_none() {
            names.push(self.write_db.as_str());
        }
        if let Some(read_db) = &self.read_db
            && self.read.is_empty()
        {
            names.push(read_db.as_str());
        }
        names
    }

    /// Rejects names and addresses pgbouncer would refuse: one bad entry
    /// makes it refuse the whole file, at start or on RELOAD.
    pub fn validate(&self) -> Result<()> {
        check_name("write_db", &self.write_db)?;
        check_name("dbname", &self.dbname)?;
        if let Some(read_db) = &self.read_db {
            check_name("read_db", read_db)?;
            if read_db == &self.write_db {
                return Err(PoolerError::InvalidSetting {
                    key: "read_db",
                    value: read_db.clone(),
                    reason: "it is the same name as write_db; reads need a name of their own",
                });
            }
        }
        for target in self.write.iter() {
            check_target(&self.write_db, target)?;
        }
        if let Some(read_db) = &self.read_db {
            for target in &self.read {
                check_target(read_db, target)?;
            }
        }
        Ok(())
    }
}

/// A database name pgbouncer takes unquoted (`[0-9A-Za-z_.-]`), and not
/// the admin console's.
pub(crate) fn check_name(key: &'static str, value: &str) -> Result<()> {
    let reason = if value.is_empty() {
        Some("it is empty")
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Some("use only letters, digits, '_', '.' and '-'")
    } else if value == ADMIN_DATABASE {
        Some("pgbouncer reserves that name for its admin console")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PoolerError::InvalidSetting {
            key,
            value: value.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn check_target(database: &str, target: &Target) -> Result<()> {
    let reason = if target.host.is_empty() {
        Some("the host is empty")
    } else if !target
        .host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'/'))
    {
        // A ',' would turn one host into a round-robin list, a space or
        // '=' into another parameter.
        Some("a host may hold only letters, digits, '.', '-', '_', ':' and '/'")
    } else if target.port == 0 {
        Some("port 0 is not a server port")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PoolerError::InvalidTarget {
            database: database.to_owned(),
            target: target.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The text of the file the main `pgbouncer.ini` includes: a `[databases]`
/// section with the write entry and, when `read_db` is set, the read entry.
///
/// The read entry names every replica as a round-robin host list when they
/// share one port (pgbouncer 1.18 takes one port per entry), else the first
/// replica alone. pgbouncer does not skip a dead host in a list, so pass only
/// replicas that are streaming now.
pub fn render_databases(routes: &Routes) -> Result<String> {
    routes.validate()?;
    let mut text = String::from(
        "; Managed by raftgres-agent, which rewrites this file whenever the\n\
         ; primary or the replicas change and then RELOADs pgbouncer.\n\
         ; Edits are lost; never template this file.\n\
         [databases]\n",
    );
    match &routes.write {
        Some(primary) => push_entry(&mut text, &routes.write_db, &routes.dbname, primary),
        None => push_no_server(&mut text, &routes.write_db, &routes.dbname, "no primary"),
    }
    if let Some(read_db) = &routes.read_db {
        match routes.read.as_slice() {
            [] => push_no_server(&mut text, read_db, &routes.dbname, "no streaming replica"),
            [first, rest @ ..] if rest.iter().all(|r| r.port == first.port) => {
                let hosts: Vec<&str> = routes.read.iter().map(|r| r.host.as_str()).collect();
                let list = Target {
                    host: hosts.join(","),
                    port: first.port,
                };
                push_entry(&mut text, read_db, &routes.dbname, &list);
            }
            [first, ..] => {
                text.push_str(&format!(
                    "; {} replicas on different ports: pgbouncer 1.18 lists hosts on one port only, so the first alone\n",
                    routes.read.len()
                ));
                push_entry(&mut text, read_db, &routes.dbname, first);
            }
        }
    }
    Ok(text)
}

fn push_entry(text: &mut String, name: &str, dbname: &str, target: &Target) {
    text.push_str(&format!(
        "{name} = host={} port={} dbname={dbname}\n",
        target.host, target.port
    ));
}

fn push_no_server(text: &mut String, name: &str, dbname: &str, why: &str) {
    text.push_str(&format!(
        "; {why}: the agent keeps {name} DISABLEd, and this address accepts no connection\n"
    ));
    push_entry(
        text,
        name,
        dbname,
        &Target {
            host: NO_SERVER_HOST.to_owned(),
            port: NO_SERVER_PORT,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16) -> Target {
        Target {
            host: host.to_owned(),
            port,
        }
    }

    fn routes(write: Option<Target>, read: Vec<Target>) -> Routes {
        Routes {
            write,
            read,
            write_db: "app".to_owned(),
            read_db: Some("app_ro".to_owned()),
            dbname: "appdb".to_owned(),
        }
    }

    /// The entries alone, without comments.
    fn entries(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with(';')).collect()
    }

    #[test]
    fn primary_and_replicas_on_one_port_make_a_round_robin_list() {
        let text = render_databases(&routes(
            Some(target("10.0.0.1", 5432)),
            vec![target("10.0.0.2", 5432), target("10.0.0.3", 5432)],
        ))
        .expect("render");
        assert_eq!(
            entries(&text),
            [
                "[databases]",
                "app = host=10.0.0.1 port=5432 dbname=appdb",
                "app_ro = host=10.0.0.2,10.0.0.3 port=5432 dbname=appdb",
            ]
        );
        assert!(text.ends_with('\n'));
        assert!(text.starts_with("; Managed by raftgres-agent"), "{text}");
    }

    #[test]
    fn replicas_on_different_ports_route_reads_to_the_first() {
        let text = render_databases(&routes(
            Some(target("127.0.0.1", 5432)),
            vec![target("127.0.0.1", 5433), target("127.0.0.1", 5434)],
        ))
        .expect("render");
        assert_eq!(
            entries(&text)[2],
            "app_ro = host=127.0.0.1 port=5433 dbname=appdb"
        );
        assert!(text.contains("first alone"), "{text}");
    }

    #[test]
    fn without_a_primary_the_write_entry_points_at_no_server() {
        let r = routes(None, vec![target("10.0.0.2", 5432)]);
        let text = render_databases(&r).expect("render");
        assert_eq!(
            entries(&text)[1],
            format!("app = host={NO_SERVER_HOST} port=5432 dbname=appdb")
        );
        assert!(!text.contains("10.0.0.1"));
        assert_eq!(r.without_server(), ["app"]);
    }

    #[test]
    fn without_replicas_the_read_entry_points_at_no_server() {
        let r = routes(Some(target("10.0.0.1", 5432)), vec![]);
        let text = render_databases(&r).expect("render");
        assert_eq!(
            entries(&text)[2],
            format!("app_ro = host={NO_SERVER_HOST} port=5432 dbname=appdb")
        );
        assert_eq!(r.without_server(), ["app_ro"]);
        let neither = routes(None, vec![]);
        assert_eq!(neither.without_server(), ["app", "app_ro"]);
    }

    #[test]
    fn no_read_db_renders_no_read_entry() {
        let mut r = routes(Some(target("10.0.0.1", 5432)), vec![]);
        r.read_db = None;
        let text = render_databases(&r).expect("render");
        assert_eq!(entries(&text).len(), 2, "{text}");
        assert!(r.without_server().is_empty());
    }

    #[test]
    fn ipv6_and_socket_hosts_are_written_as_pgbouncer_takes_them() {
        let text = render_databases(&routes(
            Some(target("::1", 5432)),
            vec![target("/var/run/postgresql", 5433)],
        ))
        .expect("render");
        assert_eq!(entries(&text)[1], "app = host=::1 port=5432 dbname=appdb");
        assert_eq!(
            entries(&text)[2],
            "app_ro = host=/var/run/postgresql port=5433 dbname=appdb"
        );
    }

    #[test]
    fn bad_names_and_targets_are_refused_naming_the_key() {
        let base = routes(Some(target("10.0.0.1", 5432)), vec![]);
        let cases: Vec<(Routes, &str)> = vec![
            (
                Routes {
                    write_db: String::new(),
                    ..base.clone()
                },
                "pgbouncer.write_db \"\" is invalid: it is empty",
            ),
            (
                Routes {
                    write_db: "pgbouncer".into(),
                    ..base.clone()
                },
                "admin console",
            ),
            (
                Routes {
                    dbname: "app db".into(),
                    ..base.clone()
                },
                "pgbouncer.dbname",
            ),
            (
                Routes {
                    read_db: Some("app".into()),
                    ..base.clone()
                },
                "same name as write_db",
            ),
            (
                Routes {
                    write: Some(target("a,b", 5432)),
                    ..base.clone()
                },
                "server a,b:5432 for pgbouncer database \"app\" is invalid",
            ),
            (
                Routes {
                    read: vec![target("10.0.0.2", 0)],
                    ..base.clone()
                },
                "port 0",
            ),
            (
                Routes {
                    write: Some(target("h port=1", 5432)),
                    ..base.clone()
                },
                "may hold only",
            ),
        ];
        for (routes, want) in cases {
            let err = render_databases(&routes).expect_err(want).to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }
}
