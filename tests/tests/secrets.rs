//! No secret leaks over a whole lab run with a failover: not the REST
//! password, the Postgres and pgbouncer passwords, nor any member's TLS key, in any log file the lab's processes
//! wrote, in any process's command line, in the environment of any
//! Postgres process, or in any GET answer.

use raftgres_tests::{new_primary, serial_lab};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every regular file under `dir` whose name says it is a log.
fn logs_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            logs_under(&path, out);
        } else if kind.is_file() {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| n.ends_with(".log") || n.ends_with(".out")) {
                out.push(path);
            }
        }
    }
}

/// The distinctive middle line of a PEM key: enough to recognise it.
fn key_fingerprint(pem: &Path) -> String {
    let text = std::fs::read_to_string(pem).expect("a key file");
    text.lines()
        .filter(|l| !l.starts_with("-----"))
        .nth(1)
        .expect("a key body")
        .to_owned()
}

fn leaks(haystack: &str, secrets: &[(String, String)]) -> Vec<String> {
    secrets
        .iter()
        .filter(|(_, secret)| haystack.contains(secret.as_str()))
        .map(|(what, _)| what.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_a_command_line_an_environment_or_a_get() {
    let (_dir, mut lab, old) = serial_lab(3, false).await;
    let mut secrets: Vec<(String, String)> = vec![(
        "the REST password".into(),
        lab.api_auth().expect("api auth").password.clone(),
    )];
    let pg_auth = lab.pg_auth().expect("the lab's Postgres passwords").clone();
    for (what, password) in [
        ("the Postgres superuser's password", &pg_auth.superuser),
        ("the replication password", &pg_auth.replication),
        ("pgbouncer's console password", &pg_auth.pgbouncer_admin),
    ] {
        secrets.push((what.into(), password.clone()));
    }
    let tls_dir = lab.description.dir.join("tls");
    for entry in std::fs::read_dir(&tls_dir)
        .expect("the lab's tls directory")
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "key") {
            secrets.push((
                format!("the key {}", path.display()),
                key_fingerprint(&path),
            ));
        }
    }
    assert!(secrets.len() > 6, "the keys of every member: {secrets:?}");

    // A failover, so the logs hold elections, a promotion and a rejoin.
    lab.kill_host(&old).expect("lose the primary's host");
    new_primary(&lab, &old, Duration::from_secs(30)).await;
    lab.start(&old).expect("the old primary's agent again");
    lab.wait_healthy(Duration::from_secs(60))
        .await
        .expect("healthy again");

    let mut found = Vec::new();
    let client = raftgres_tests::http::lab_client(&lab, Duration::from_secs(10));
    for member in &lab.description.members {
        for path in [
            "/config", "/cluster", "/patroni", "/history", "/metrics", "/health",
        ] {
            let text = client
                .get(format!("{}{path}", member.api_url))
                .send()
                .await
                .expect("GET")
                .text()
                .await
                .expect("a body");
            assert!(
                !text.is_empty(),
                "GET {path} on {} answered nothing",
                member.name
            );
            for what in leaks(&text, &secrets) {
                found.push(format!("GET {path} on {}: {what}", member.name));
            }
        }
    }
    let mut logs = Vec::new();
    logs_under(&lab.description.dir, &mut logs);
    assert!(!logs.is_empty(), "the lab wrote no logs?");
    for log in &logs {
        let text = String::from_utf8_lossy(&std::fs::read(log).expect("read a log")).into_owned();
        for what in leaks(&text, &secrets) {
            found.push(format!("{}: {what}", log.display()));
        }
    }
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let read = |file: &str| std::fs::read(entry.path().join(file)).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&read("cmdline")).replace('\0', " ");
        for what in leaks(&cmdline, &secrets) {
            found.push(format!("the command line of pid {pid} ({cmdline}): {what}"));
        }
        let ours = cmdline.contains(&lab.description.dir.display().to_string());
        if ours {
            let environ = String::from_utf8_lossy(&read("environ")).replace('\0', " ");
            for what in leaks(&environ, &secrets) {
                found.push(format!("the environment of pid {pid} ({cmdline}): {what}"));
            }
        }
    }
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
}

/// What a client gets from `dsn`: `Ok` once logged in, else the refusal.
async fn log_in(dsn: &str) -> Result<(), String> {
    match tokio_postgres::connect(dsn, tokio_postgres::NoTls).await {
        Ok((_client, connection)) => {
            drop(connection);
            Ok(())
        }
        // The cause ("password missing", the server's message) is only in
        // the debug form.
        Err(e) => Err(format!("{e:?}")),
    }
}

/// The dsn with its password removed, or replaced.
fn with_password(dsn: &str, password: Option<&str>) -> String {
    let mut words: Vec<String> = dsn
        .split_whitespace()
        .filter(|w| !w.starts_with("password="))
        .map(str::to_owned)
        .collect();
    if let Some(password) = password {
        words.push(format!("password={password}"));
    }
    words.join(" ")
}

/// Anyone who reaches a member's Postgres, HAProxy or pgbouncer was a
/// superuser: every member's pg_hba.conf trusted TCP logins. Now every way
/// in asks for the password, and takes the right one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_into_postgres_asks_for_the_password() {
    let (_dir, lab, holder) = serial_lab(3, false).await;
    lab.wait_healthy(Duration::from_secs(60))
        .await
        .expect("healthy");
    let mut ways: Vec<(String, String)> = Vec::new();
    for member in &lab.description.members {
        if let Some(dsn) = &member.dsn {
            ways.push((format!("{}'s Postgres", member.name), dsn.clone()));
        }
        if let Some(dsn) = &member.pgbouncer_admin_dsn {
            ways.push((format!("{}'s pgbouncer console", member.name), dsn.clone()));
        }
    }
    let holder_bouncer = lab
        .member(&holder)
        .expect("the holder")
        .pgbouncer_dsn
        .clone()
        .expect("pgbouncer is installed (scripts/test-all installs it)");
    ways.push((format!("{holder}'s pgbouncer"), holder_bouncer.clone()));
    let haproxy = lab
        .haproxy_dsn(true)
        .expect("HAProxy is installed (scripts/test-all installs it)");
    ways.push(("HAProxy's write port".into(), haproxy));
    assert!(ways.len() >= 8, "{ways:?}");

    for (way, dsn) in &ways {
        let err = log_in(&with_password(dsn, None))
            .await
            .expect_err(&format!("{way} let a client in without a password"));
        assert!(err.contains("password"), "{way}: {err}");
        let err = log_in(&with_password(dsn, Some("wrong")))
            .await
            .expect_err(&format!("{way} let a client in with a wrong password"));
        assert!(
            err.contains("password") || err.contains("SASL authentication failed"),
            "{way}: {err}"
        );
        // The right one: through pgbouncer, once its agent routes it.
        raftgres_tests::eventually(
            Duration::from_secs(30),
            &format!("a login through {way}"),
            || async { log_in(dsn).await.ok() },
        )
        .await;
    }
    // Nothing in any pg_hba.conf trusts anyone.
    for member in &lab.description.members {
        let data = member
            .pg_data_dir
            .clone()
            .unwrap_or_else(|| member.data_dir.join("pgdata"));
        let hba = std::fs::read_to_string(data.join("pg_hba.conf")).expect("pg_hba.conf");
        assert!(!hba.contains("trust"), "{}: {hba}", member.name);
    }
}
