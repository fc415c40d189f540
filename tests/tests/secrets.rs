//! No secret leaks over a whole lab run with a failover: not the REST
//! password, nor any member's TLS key, in any log file the lab's processes
//! wrote, in any process's command line, in the environment of any
//! Postgres process, or in any GET answer.

use raftgres_tests::{lab_dir, new_primary, serial, start_lab};
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
    let _serial = serial().await;
    let dir = lab_dir();
    let (mut lab, old) = start_lab(&dir, 3, false).await;
    let mut secrets: Vec<(String, String)> = vec![(
        "the REST password".into(),
        lab.api_auth().expect("api auth").password.clone(),
    )];
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
    assert!(secrets.len() > 3, "the keys of every member: {secrets:?}");

    // A failover, so the logs hold elections, a promotion and a rejoin.
    lab.kill_host(&old).expect("lose the primary's host");
    new_primary(&lab, &old, Duration::from_secs(30)).await;
    lab.start(&old).expect("the old primary's agent again");
    lab.wait_healthy(Duration::from_secs(60))
        .await
        .expect("healthy again");

    let mut found = Vec::new();
    for member in &lab.description.members {
        for path in [
            "/config", "/cluster", "/patroni", "/history", "/metrics", "/health",
        ] {
            let text = reqwest::get(format!("{}{path}", member.api_url))
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
