//! The configuration files this crate owns: `raftgres.conf` (included from
//! `postgresql.conf`), `pg_hba.conf`, and the standby signal. Operators'
//! own settings stay in `postgresql.conf`; ours are rewritten whole.

use crate::error::{PgError, Result};
use crate::files;
use crate::settings::{PgSettings, Role, Upstream};
use crate::tools::{Tool, stderr_text};
use crate::version::{bin, file, guc};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Appended once to `postgresql.conf`. `include_if_exists`, so a data
/// directory whose managed file was lost still starts (with defaults).
fn include_line() -> String {
    format!("include_if_exists = '{}'", file::MANAGED_CONF)
}

/// Makes `postgresql.conf` include the managed file; idempotent.
pub(crate) fn ensure_include(settings: &PgSettings) -> Result<()> {
    let conf = settings.data_dir.join(file::POSTGRESQL_CONF);
    files::append_line_once(&conf, &include_line(), settings.run_as)
}

/// Writes `raftgres.conf` for `role` (atomically), makes sure
/// `postgresql.conf` includes it (appending one line, once), creates or
/// removes `standby.signal` to match, and rewrites `pg_hba.conf` and the
/// password file. Takes effect at the next start; a standby's upstream and
/// slot, and the logins, also on reload.
pub fn write_managed_conf(settings: &PgSettings, role: &Role) -> Result<()> {
    settings.validate()?;
    if let Role::Standby {
        slot: Some(slot), ..
    } = role
    {
        crate::control::check_slot_name(slot)?;
    }
    ensure_include(settings)?;
    write_hba(settings)?;
    files::write_passfile(settings)?;
    let text = render_managed_conf(settings, role);
    let dir = &settings.data_dir;
    files::write_atomic(
        &dir.join(file::MANAGED_CONF),
        text.as_bytes(),
        settings.run_as,
    )?;
    // A leftover recovery.signal would stop a primary at the end of its WAL.
    files::remove_if_exists(&dir.join(file::RECOVERY_SIGNAL))?;
    let signal = dir.join(file::STANDBY_SIGNAL);
    match role {
        Role::Standby { .. } | Role::DetachedStandby => {
            files::write_atomic(&signal, b"", settings.run_as)?
        }
        Role::Primary => {
            files::remove_if_exists(&signal)?;
        }
    }
    files::sync_dir(dir)?;
    tracing::info!(data_dir = %dir.display(), role = ?role, "wrote the managed configuration");
    Ok(())
}

pub(crate) fn render_managed_conf(settings: &PgSettings, role: &Role) -> String {
    let mut out = String::from(
        "# Written by raftgres on every role change; edits here are lost.\n\
         # Put your own settings in postgresql.conf or the agent's parameters.\n",
    );
    let mut set = |name: &str, value: &str| {
        let _ = writeln!(out, "{name} = {value}");
    };
    set("listen_addresses", &quote(&settings.host));
    set("port", &settings.port.to_string());
    set(
        "unix_socket_directories",
        &quote(&settings.socket_dir.display().to_string()),
    );
    set("cluster_name", &quote(&settings.application_name));
    set("wal_level", "replica");
    set("hot_standby", "on");
    // pg_rewind needs hint bits logged (initdb also enables checksums).
    set("wal_log_hints", "on");
    set("max_wal_senders", "10");
    set("max_replication_slots", "10");
    // Lets a standby without a slot, or a rewound ex-primary, catch up.
    set(guc::WAL_KEEP_SIZE, "'128MB'");
    set("hot_standby_feedback", "on");
    if let Role::Standby { upstream, slot } = role {
        set(
            guc::PRIMARY_CONNINFO,
            &quote(&primary_conninfo(settings, upstream)),
        );
        if let Some(slot) = slot {
            set(guc::PRIMARY_SLOT_NAME, &quote(slot));
        }
    }
    set(
        "synchronous_standby_names",
        &quote(&settings.synchronous_standbys.setting()),
    );
    for (name, value) in &settings.parameters {
        set(name, &quote(value));
    }
    out
}

/// Asks this member's own `postgres` binary whether it takes `parameters`.
/// `postgres -C` parses every setting and starts nothing, so it runs beside
/// a live server and before a data directory exists. A value it refuses
/// must never reach the managed file: every reload would ignore the whole
/// file, and the next start would fail.
pub async fn check_parameters(
    settings: &PgSettings,
    parameters: &BTreeMap<String, String>,
) -> Result<()> {
    let Some(first) = parameters.keys().next() else {
        return Ok(());
    };
    PgSettings {
        parameters: parameters.clone(),
        ..settings.clone()
    }
    .validate()?;
    // No configuration file and no data directory: each value is judged on
    // its own, so a bad line already in a file cannot fail every check.
    let mut tool = Tool::new(settings, bin::POSTGRES)?
        .arg("-D")
        .arg("/")
        .arg("-c")
        .arg("config_file=/dev/null");
    for (name, value) in parameters {
        tool = tool.arg("-c").arg(format!("{name}={value}"));
    }
    let output = tool.arg("-C").arg(first).output().await?;
    if output.status.success() {
        return Ok(());
    }
    let text = stderr_text(&output);
    // Postgres prefixes a timestamp and pid; the reason follows FATAL.
    let reason = text
        .split_once("FATAL:")
        .map_or(text.as_str(), |(_, reason)| reason)
        .trim()
        .to_owned();
    Err(PgError::ParametersRefused { reason })
}

/// The libpq connection string a standby streams with.
pub(crate) fn primary_conninfo(settings: &PgSettings, upstream: &Upstream) -> String {
    let port = upstream.port.to_string();
    let passfile = settings.passfile.display().to_string();
    let mut pairs = vec![
        ("host", upstream.host.as_str()),
        ("port", &port),
        ("user", &settings.replication.user),
        // The walreceiver reads the password there: none in this setting,
        // which any superuser can read with SHOW.
        ("passfile", &passfile),
        ("application_name", &settings.application_name),
        // Without it a dead upstream host stalls the walreceiver for the
        // kernel's TCP timeout before it retries.
        ("connect_timeout", "2"),
    ];
    let tls = settings.tls.conninfo_pairs();
    pairs.extend(tls.iter().map(|(key, value)| (*key, value.as_str())));
    conninfo(&pairs)
}

/// Builds a libpq `key=value` string, quoting every value.
pub(crate) fn conninfo(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| {
            let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
            format!("{key}='{escaped}'")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `postgresql.conf` string literal.
pub(crate) fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Writes `pg_hba.conf`: the members' own logins first, then the
/// operator's lines. Nothing over TCP is `trust`: every login there needs a
/// password (SCRAM), and the Unix socket lets in only the OS user of the
/// same name (`peer`), so a local `psql` as `postgres` still works.
fn write_hba(settings: &PgSettings) -> Result<()> {
    let path = settings.data_dir.join(file::PG_HBA_CONF);
    files::write_atomic(&path, render_hba(settings).as_bytes(), settings.run_as)
}

pub(crate) fn render_hba(settings: &PgSettings) -> String {
    const SCRAM: &str = "scram-sha-256";
    // Members' own logins in clear are refused when they must use TLS.
    let member = if settings.tls.mode.requires_tls() {
        "hostssl"
    } else {
        "host"
    };
    let repl = settings.replication.user.as_str();
    let rewinder = settings.rewinder().user.as_str();
    let mut out = String::from(
        "# Written by raftgres at every start and role change; edits here are lost.\n\
         # Add lines with the agent's postgresql.pg_hba setting.\n\
         # TYPE  DATABASE     USER         ADDRESS         METHOD\n",
    );
    let rules: [(&str, &str, &str, &str, &str); 8] = [
        ("local", "all", "all", "", "peer"),
        ("local", "replication", "all", "", "peer"),
        // The agent's own control connections, and clients on this host.
        ("host", "all", "all", "127.0.0.1/32", SCRAM),
        ("host", "all", "all", "::1/128", SCRAM),
        (member, "replication", repl, "127.0.0.1/32", SCRAM),
        (member, "replication", repl, "::1/128", SCRAM),
        // The other members: `samenet` is any address in a subnet this
        // server is directly on. pg_rewind uses a normal connection.
        (member, "replication", repl, "samenet", SCRAM),
        (member, "all", rewinder, "samenet", SCRAM),
    ];
    for (kind, database, user, address, method) in rules {
        let _ = writeln!(
            out,
            "{kind:<7} {database:<12} {user:<12} {address:<15} {method}"
        );
    }
    if settings.hba.is_empty() {
        let _ = writeln!(
            out,
            "host    all          all          all             {SCRAM}"
        );
    } else {
        out.push_str("# postgresql.pg_hba\n");
        for line in &settings.hba {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn settings() -> PgSettings {
        let mut s = PgSettings::new("/srv/pg/node1", 5433, "node1");
        s.socket_dir = PathBuf::from("/srv/pg/sock");
        s
    }

    #[test]
    fn primary_conf_has_no_upstream() {
        let text = render_managed_conf(&settings(), &Role::Primary);
        assert!(text.contains("listen_addresses = '127.0.0.1'\n"));
        assert!(text.contains("port = 5433\n"));
        assert!(text.contains("unix_socket_directories = '/srv/pg/sock'\n"));
        assert!(text.contains("wal_log_hints = on\n"));
        assert!(text.contains("wal_keep_size = '128MB'\n"));
        assert!(!text.contains("primary_conninfo"));
        assert!(!text.contains("primary_slot_name"));
    }

    #[test]
    fn standby_conf_names_upstream_slot_and_member() {
        let role = Role::Standby {
            upstream: Upstream {
                host: "10.0.0.1".into(),
                port: 5432,
            },
            slot: Some("node1".into()),
        };
        let text = render_managed_conf(&settings(), &role);
        assert!(
            text.contains(
                "primary_conninfo = 'host=''10.0.0.1'' port=''5432'' user=''replicator'' \
             passfile=''/srv/pg/node1-pgpass'' application_name=''node1'' \
             connect_timeout=''2'' sslmode=''prefer'''\n"
            ),
            "{text}"
        );
        assert!(text.contains("primary_slot_name = 'node1'\n"));
    }

    #[test]
    fn a_standby_streams_with_the_members_sslmode_and_root_certificate() {
        let mut s = settings();
        s.tls = crate::tls::ClientTls {
            mode: crate::tls::SslMode::VerifyFull,
            root_cert: Some("/etc/raftgres/ca.pem".into()),
        };
        let role = Role::Standby {
            upstream: Upstream {
                host: "db1.example".into(),
                port: 5432,
            },
            slot: None,
        };
        let text = render_managed_conf(&s, &role);
        assert!(
            text.contains(
                "connect_timeout=''2'' sslmode=''verify-full'' \
                 sslrootcert=''/etc/raftgres/ca.pem'''\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn detached_standby_conf_has_no_upstream() {
        let text = render_managed_conf(&settings(), &Role::DetachedStandby);
        assert!(text.contains("hot_standby = on\n"), "{text}");
        assert!(!text.contains("primary_conninfo"));
        assert!(!text.contains("primary_slot_name"));
    }

    #[test]
    fn user_parameters_come_last_and_quoted() {
        let mut s = settings();
        s.parameters.insert("work_mem".into(), "4MB".into());
        s.parameters.insert("search_path".into(), "it's".into());
        let text = render_managed_conf(&s, &Role::Primary);
        let tail: Vec<_> = text.lines().rev().take(2).collect();
        assert_eq!(tail, ["work_mem = '4MB'", "search_path = 'it''s'"]);
    }

    #[test]
    fn synchronous_standbys_are_named_in_full() {
        let mut s = settings();
        let line = |s: &PgSettings| {
            render_managed_conf(s, &Role::Primary)
                .lines()
                .find(|l| l.starts_with("synchronous_standby_names"))
                .map(str::to_owned)
        };
        assert_eq!(line(&s).as_deref(), Some("synchronous_standby_names = ''"));
        s.synchronous_standbys = crate::SyncStandbys::AnyOne;
        assert_eq!(line(&s).as_deref(), Some("synchronous_standby_names = '*'"));
        s.synchronous_standbys =
            crate::SyncStandbys::All(["node-2".to_owned(), "node3".to_owned()].into());
        assert_eq!(
            line(&s).as_deref(),
            Some(r#"synchronous_standby_names = 'FIRST 2 ("node-2", "node3")'"#)
        );
        s.synchronous_standbys = crate::SyncStandbys::Any {
            n: 1,
            names: ["node-2".to_owned(), "node3".to_owned()].into(),
        };
        assert_eq!(
            line(&s).as_deref(),
            Some(r#"synchronous_standby_names = 'ANY 1 ("node-2", "node3")'"#)
        );
        s.synchronous_standbys = crate::SyncStandbys::All(["a\"b".to_owned()].into());
        assert!(s.validate().is_err(), "a quote would break the list");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(r"a'b\c"), r"'a''b\\c'");
        assert_eq!(
            conninfo(&[("host", "h"), ("password", r"p'q\")]),
            r"host='h' password='p\'q\\'"
        );
    }

    fn rules(text: &str) -> Vec<Vec<&str>> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect()
    }

    #[test]
    fn hba_never_trusts_and_asks_a_password_over_tcp() {
        let text = render_hba(&settings());
        let rules = rules(&text);
        assert!(!text.contains("trust"), "{text}");
        for rule in &rules {
            let method = rule.last().unwrap();
            match rule[0] {
                "local" => assert_eq!(*method, "peer", "{text}"),
                _ => assert_eq!(*method, "scram-sha-256", "{text}"),
            }
        }
        assert!(rules.contains(&vec![
            "host",
            "replication",
            "replicator",
            "samenet",
            "scram-sha-256"
        ]));
        // Without a rewind user, the superuser rewinds from the peers.
        assert!(rules.contains(&vec!["host", "all", "postgres", "samenet", "scram-sha-256"]));
        assert_eq!(
            rules.last().unwrap(),
            &vec!["host", "all", "all", "all", "scram-sha-256"]
        );
    }

    #[test]
    fn members_must_use_tls_when_their_sslmode_requires_it() {
        for (mode, kind) in [
            (crate::tls::SslMode::Disable, "host"),
            (crate::tls::SslMode::Prefer, "host"),
            (crate::tls::SslMode::Require, "hostssl"),
            (crate::tls::SslMode::VerifyCa, "hostssl"),
            (crate::tls::SslMode::VerifyFull, "hostssl"),
        ] {
            let mut s = settings();
            s.tls.mode = mode;
            let text = render_hba(&s);
            let rules = rules(&text);
            let members: Vec<_> = rules
                .iter()
                .filter(|r| r[0] != "local")
                .filter(|r| r[1] == "replication" || r[2] == "postgres" && r[3] == "samenet")
                .collect();
            assert_eq!(members.len(), 4, "{mode:?}: {rules:?}");
            for rule in members {
                assert_eq!(rule[0], kind, "{mode:?}: {rule:?}");
            }
        }
    }

    #[test]
    fn hba_takes_the_operators_lines_after_the_members_own() {
        let mut s = settings();
        s.rewind = Some(crate::settings::Login::new("rewinder", "x"));
        s.hba = vec![
            "hostssl all app 10.1.0.0/16 scram-sha-256".into(),
            "host all all 0.0.0.0/0 reject".into(),
        ];
        let text = render_hba(&s);
        let rules = rules(&text);
        assert!(rules.contains(&vec!["host", "all", "rewinder", "samenet", "scram-sha-256"]));
        assert!(!rules.contains(&vec!["host", "all", "all", "all", "scram-sha-256"]));
        let n = rules.len();
        assert_eq!(
            rules[n - 2],
            vec!["hostssl", "all", "app", "10.1.0.0/16", "scram-sha-256"]
        );
        assert_eq!(
            rules[n - 1],
            vec!["host", "all", "all", "0.0.0.0/0", "reject"]
        );
    }
}
