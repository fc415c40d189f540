use super::*;
use clap::CommandFactory;

#[test]
fn the_command_line_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn tls_issue_takes_members_as_name_and_node_id() {
    let cli = Cli::try_parse_from([
        "raftgresctl",
        "tls",
        "issue",
        "--dir",
        "/tmp/pki",
        "--member",
        "db1:1",
        "--member",
        "db2:2",
        "--tools",
        "admin",
        "--api",
        "db1=10.0.0.11,db1.example.com",
        "--postgres",
        "db1=10.0.0.11,127.0.0.1",
    ])
    .expect("parses");
    match cli.command {
        Cmd::Tls {
            action:
                TlsCmd::Issue {
                    members,
                    tools,
                    api,
                    postgres,
                    ..
                },
        } => {
            assert_eq!(members, [("db1".to_owned(), 1), ("db2".to_owned(), 2)]);
            assert_eq!(tools, ["admin"]);
            assert_eq!(
                api,
                [(
                    "db1".to_owned(),
                    vec!["10.0.0.11".to_owned(), "db1.example.com".to_owned()]
                )]
            );
            assert_eq!(
                postgres,
                [(
                    "db1".to_owned(),
                    vec!["10.0.0.11".to_owned(), "127.0.0.1".to_owned()]
                )]
            );
        }
        _ => panic!("not tls issue"),
    }
    for (flag, bad, needle) in [
        ("--api", "db1", "expected NAME=HOST"),
        ("--api", "=10.0.0.1", "needs a name"),
        ("--api", "db1=10.0.0.1,,x", "is empty"),
        ("--api", "db1=", "is empty"),
        ("--postgres", "db1", "expected NAME=HOST"),
        ("--postgres", "db1=10.0.0.1,", "is empty"),
        ("--member", "db1", "expected NAME:NODE_ID"),
        ("--member", "db1:x", "is not a whole number"),
        ("--member", "db1:0", "node ids start at 1"),
    ] {
        let err = Cli::try_parse_from([
            "raftgresctl",
            "tls",
            "issue",
            "--dir",
            "/tmp/pki",
            flag,
            bad,
        ])
        .err()
        .expect(bad)
        .to_string();
        assert!(err.contains(needle), "{flag} {bad}: {err}");
    }
}

#[test]
fn watch_takes_an_optional_interval() {
    let parse = |args: &[&str]| match cluster_command(args) {
        Ok((_, ClusterCmd::List { watch_seconds, .. })) => watch_seconds,
        _ => panic!("{args:?} should parse as list"),
    };
    assert_eq!(parse(&["raftgresctl", "list"]), None);
    assert_eq!(parse(&["raftgresctl", "list", "--watch"]), Some(2));
    assert_eq!(parse(&["raftgresctl", "list", "--watch", "5"]), Some(5));
    assert!(Cli::try_parse_from(["raftgresctl", "list", "--watch", "0"]).is_err());
    assert!(Cli::try_parse_from(["raftgresctl", "list", "-W", "-w", "3"]).is_err());
    assert!(Cli::try_parse_from(["raftgresctl", "list", "-W", "-e", "-t"]).is_ok());
}

#[test]
fn pooler_takes_its_options_with_defaults() {
    let parse = |args: &[&str]| -> Result<PoolerArgs, String> {
        match cluster_command(args)? {
            (_, ClusterCmd::Pooler(pooler)) => Ok(pooler),
            _ => panic!("{args:?} should parse as pooler"),
        }
    };
    let base = ["raftgresctl", "pooler", "--databases-file", "/etc/db.ini"];
    let args = parse(&[&base[..], &["--admin", "127.0.0.1:6432"]].concat()).expect("valid");
    assert_eq!(args.admin, ("127.0.0.1".to_owned(), 6432));
    assert_eq!(
        (
            args.admin_user.as_str(),
            args.write_db.as_str(),
            args.dbname.as_str()
        ),
        ("pgbouncer_admin", "postgres", "postgres")
    );
    assert_eq!(
        (args.read_db, args.interval_ms, args.once),
        (None, 500, false)
    );
    let args = parse(&[&base[..], &["--admin", "[::1]:6432", "--once"]].concat()).expect("IPv6");
    assert_eq!(args.admin, ("::1".to_owned(), 6432));
    assert!(args.once);
    let args =
        parse(&[&base[..], &["--admin", "/var/run/postgresql:6432"]].concat()).expect("socket dir");
    assert_eq!(args.admin.0, "/var/run/postgresql");
    for (bad, want) in [
        ("6432", "has no port"),
        (":6432", "has no host"),
        ("h:x", "is not a port"),
        ("h:70000", "is not a port"),
    ] {
        let error = parse(&[&base[..], &["--admin", bad]].concat()).expect_err(bad);
        assert!(error.contains(want), "{bad}: {error}");
    }
    assert!(parse(&base).is_err(), "--admin is required");
}

/// The command `args` parse to, one that talks to a cluster, or clap's
/// error.
fn cluster_command(args: &[&str]) -> Result<(TargetOpts, ClusterCmd), String> {
    match Cli::try_parse_from(args) {
        Ok(Cli {
            target,
            command: Cmd::Cluster(command),
        }) => Ok((target, command)),
        Ok(_) => panic!("{args:?} should parse as a cluster command"),
        Err(e) => Err(e.to_string()),
    }
}

fn query_args(args: &[&str]) -> Result<(TargetOpts, QueryArgs), String> {
    match cluster_command(args)? {
        (target, ClusterCmd::Query(query)) => Ok((target, query)),
        _ => panic!("{args:?} should parse as query"),
    }
}

/// patronictl's `-c patroni.yml` comes before the command, and query's
/// own `-c` is the SQL, so both fit on one line.
#[test]
fn global_c_is_the_config_file_and_query_s_c_is_the_sql() {
    let (target, query) = query_args(&[
        "raftgresctl",
        "-c",
        "/etc/raftgres/agent.yml",
        "query",
        "-c",
        "SELECT 1",
    ])
    .expect("valid");
    assert_eq!(
        target.config_file.as_deref(),
        Some(std::path::Path::new("/etc/raftgres/agent.yml"))
    );
    assert_eq!(query.command.as_deref(), Some("SELECT 1"));
    let (target, _) = query_args(&[
        "raftgresctl",
        "--config-file",
        "/a.yml",
        "query",
        "--command",
        "SELECT 1",
    ])
    .expect("long forms");
    assert!(target.config_file.is_some());
    // After the command, -c is not the config file; --config is, anywhere.
    assert!(Cli::try_parse_from(["raftgresctl", "list", "-c", "/a.yml"]).is_err());
    let cli = Cli::try_parse_from(["raftgresctl", "list", "--config", "/a.yml"]).expect("valid");
    assert!(cli.target.config.is_some());
    let err = Cli::try_parse_from(["raftgresctl", "-c", "/a.yml", "--config", "/b.yml", "list"])
        .err()
        .expect("two config files")
        .to_string();
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn query_takes_patronictl_s_options() {
    let (_, query) = query_args(&["raftgresctl", "query", "-c", "SELECT 1"]).expect("valid");
    assert_eq!(
        (
            query.role,
            query.member.as_deref(),
            query.login.dbname.as_str(),
            query.login.dbuser.as_deref(),
            query.login.password,
            query.delimiter.as_str(),
            query.watch_seconds,
            query.watch_every_2s,
        ),
        (None, None, "postgres", None, false, "\t", None, false)
    );
    assert!(
        query.format == Format::Tsv,
        "patronictl's default for query"
    );
    let (_, query) = query_args(&[
        "raftgresctl",
        "query",
        "-f",
        "-",
        "-r",
        "primary",
        "-d",
        "app",
        "-U",
        "admin",
        "--password",
        "--format",
        "json",
        "--delimiter",
        ";",
        "-W",
    ])
    .expect("valid");
    assert_eq!(query.file.as_deref(), Some(std::path::Path::new("-")));
    assert_eq!(query.role, Some(RoleFilter::Leader));
    assert_eq!(
        (
            query.login.dbname.as_str(),
            query.login.dbuser.as_deref(),
            query.login.password
        ),
        ("app", Some("admin"), true)
    );
    assert!(query.format == Format::Json && query.watch_every_2s);
    let (_, query) =
        query_args(&["raftgresctl", "query", "-c", "x", "-r", "standby", "-w"]).expect("valid");
    assert_eq!(
        (query.role, query.watch_seconds),
        (Some(RoleFilter::Replica), Some(2))
    );
    for (args, want) in [
        (&["raftgresctl", "query"][..], "required"),
        (
            &["raftgresctl", "query", "-c", "x", "-f", "f.sql"][..],
            "cannot be used with",
        ),
        (
            &[
                "raftgresctl",
                "query",
                "-c",
                "x",
                "-m",
                "m1",
                "-r",
                "replica",
            ][..],
            "cannot be used with",
        ),
        (
            &["raftgresctl", "query", "-c", "x", "-W", "-w", "3"][..],
            "cannot be used with",
        ),
        (
            &["raftgresctl", "query", "-c", "x", "-r", "standby-leader"][..],
            "invalid value",
        ),
    ] {
        let err = query_args(args)
            .err()
            .unwrap_or_else(|| panic!("{args:?} parsed"));
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn drill_takes_an_action_and_an_entry() {
    let parse = |args: &[&str]| -> Result<DrillArgs, String> {
        match cluster_command(args)? {
            (_, ClusterCmd::Drill(drill)) => Ok(drill),
            _ => panic!("{args:?} should parse as drill"),
        }
    };
    let args = parse(&["raftgresctl", "drill", "switchover"]).expect("defaults");
    assert!(args.action == crate::drill::Action::Switchover);
    assert!(matches!(args.entry, EntryArg::Primary));
    assert_eq!((args.duration, args.writes_per_second), (30, 10));
    assert!(args.format == ReportFormat::Pretty && !args.force);
    let args = parse(&[
        "raftgresctl",
        "drill",
        "failover",
        "--force",
        "--duration",
        "8",
        "--writes-per-second",
        "20",
        "--format",
        "json",
        "--entry",
        "host=db1,db2 port=5432 dbname=app target_session_attrs=read-write",
    ])
    .expect("all options");
    assert!(args.action == crate::drill::Action::Failover && args.force);
    let EntryArg::Dsn(config) = &args.entry else {
        panic!("a connection string");
    };
    assert_eq!(config.get_hosts().len(), 2);
    assert_eq!(config.get_dbname(), Some("app"));
    for word in ["haproxy", "pgbouncer"] {
        let args = parse(&["raftgresctl", "drill", "switchover", "--entry", word]).expect(word);
        assert!(matches!(
            (word, args.entry),
            ("haproxy", EntryArg::Haproxy) | ("pgbouncer", EntryArg::Pgbouncer)
        ));
    }
    let bad = parse(&["raftgresctl", "drill", "switchover", "--entry", "haproxi"])
        .expect_err("a typo is no connection string");
    assert!(bad.contains("not primary, haproxy or pgbouncer"), "{bad}");
    for bad in [["--duration", "3"], ["--writes-per-second", "0"]] {
        assert!(parse(&[&["raftgresctl", "drill", "switchover"][..], &bad].concat()).is_err());
    }
    assert!(parse(&["raftgresctl", "drill", "restart"]).is_err());
}

#[test]
fn flush_takes_its_target_then_members() {
    let flush = |args: &[&str]| -> Result<_, String> {
        match cluster_command(&[&["raftgresctl", "flush"], args].concat())? {
            (
                _,
                ClusterCmd::Flush {
                    members,
                    target,
                    role,
                    ..
                },
            ) => Ok((members, target, role)),
            _ => panic!("{args:?} should parse as flush"),
        }
    };
    assert_eq!(
        flush(&["restart"]),
        Ok((vec![], FlushTarget::Restart, None))
    );
    assert_eq!(
        flush(&["restart", "m1", "m2", "--role", "replica"]),
        Ok((
            vec!["m1".to_owned(), "m2".to_owned()],
            FlushTarget::Restart,
            Some(RoleFilter::Replica)
        ))
    );
    assert_eq!(
        flush(&["switchover", "--force"]),
        Ok((vec![], FlushTarget::Switchover, None))
    );
    assert!(flush(&["m1", "restart"]).is_err(), "the target comes first");
}

#[test]
fn restart_and_reinit_take_patronictl_s_options() {
    let cli = Cli::try_parse_from([
        "raftgresctl",
        "restart",
        "m1",
        "--scheduled",
        "2026-11-22T10:00:00Z",
        "--pg-version",
        "15.4",
        "--timeout",
        "90s",
        "--pending",
    ])
    .expect("parses");
    match cli.command {
        Cmd::Cluster(ClusterCmd::Restart {
            members,
            scheduled,
            pg_version,
            timeout,
            pending,
            ..
        }) => {
            assert_eq!(members, ["m1"]);
            assert_eq!(scheduled.as_deref(), Some("2026-11-22T10:00:00Z"));
            assert_eq!(pg_version.as_deref(), Some("15.4"));
            assert_eq!(timeout.as_deref(), Some("90s"));
            assert!(pending);
        }
        _ => panic!("not restart"),
    }
    let cli = Cli::try_parse_from(["raftgresctl", "reinit", "m2", "m3", "--wait"]).expect("parses");
    match cli.command {
        Cmd::Cluster(ClusterCmd::Reinit { members, wait, .. }) => {
            assert_eq!(members, ["m2", "m3"]);
            assert!(wait);
        }
        _ => panic!("not reinit"),
    }
    assert!(
        Cli::try_parse_from(["raftgresctl", "reinit", "--wait"]).is_err(),
        "a member is required"
    );
}

#[test]
fn lab_up_takes_a_postgres_bin_dir() {
    let parse = |extra: &[&str]| {
        let args = ["raftgresctl", "lab", "up"].iter().chain(extra);
        match Cli::try_parse_from(args).expect("parses").command {
            Cmd::Lab {
                action: LabCmd::Up { pg_bin_dir, .. },
            } => pg_bin_dir,
            _ => panic!("not lab up"),
        }
    };
    assert_eq!(parse(&[]), None);
    assert_eq!(
        parse(&["--pg-bin-dir", "/opt/pg18/bin"]),
        Some(PathBuf::from("/opt/pg18/bin"))
    );
}
