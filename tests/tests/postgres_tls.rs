//! Postgres over TLS between members, on a real lab whose members run
//! `postgresql.tls.sslmode: verify-full` with the lab's CA and serve
//! Postgres with certificates from it: the replicas' walreceivers and every
//! agent's control connections that cross the network are encrypted
//! (`pg_stat_ssl`, and the server's connection log for the agents' short
//! probes, which stay on the Unix socket), and a
//! replication login in clear is refused even with the right password,
//! which the same login over verified TLS proves.

use raftgres_tests::http::{Api, api_url};
use raftgres_tests::settle::SETTLE_WITHIN;
use raftgres_tests::{data_file, dsn, eventually, query_i64, serial_lab, until_holds};
use serde_json::json;
use std::time::Duration;

/// The server's error for a replication login from psql with `tls`
/// (libpq's `sslmode` and friends), or `Ok` once it is in.
async fn replication_login(
    lab: &raftgres_lab::Lab,
    name: &str,
    tls: &str,
) -> Result<String, String> {
    let member = lab.member(name).expect("member");
    let password = &lab
        .description
        .pg_auth
        .as_ref()
        .expect("passwords")
        .replication;
    let bin = lab
        .description
        .pg_bin_dir
        .clone()
        .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into());
    let conninfo = format!(
        "host={} port={} user=replicator replication=true dbname=postgres connect_timeout=5 {tls}",
        member.pg_host.as_deref().expect("a database member"),
        member.pg_port.expect("a database member"),
    );
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(bin.join("psql"))
            .arg(&conninfo)
            .args(["-X", "-A", "-t", "-c", "IDENTIFY_SYSTEM"])
            .env("PGPASSWORD", password)
            .env_remove("PGSSLMODE")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("psql finishes")
    .expect("psql runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The agents' connections in a Postgres log with `log_connections`: each
/// as its "connection received" line (where from) and its "connection
/// authorized" line (encrypted or not), paired by the backend's PID.
fn control_connections(log: &str) -> Vec<(String, String)> {
    let pid = |line: &str| {
        line.split_once(" [")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(pid, _)| pid.to_owned())
    };
    let mut received = std::collections::HashMap::new();
    let mut pairs = Vec::new();
    for line in log.lines() {
        if line.contains("connection received:") {
            if let Some(pid) = pid(line) {
                received.insert(pid, line.to_owned());
            }
        } else if line.contains("connection authorized")
            && line.contains("application_name=raftgres-control")
        {
            let from = pid(line)
                .and_then(|pid| received.remove(&pid))
                .unwrap_or_else(|| panic!("no \"connection received\" line before {line}"));
            pairs.push((from, line.to_owned()));
        }
    }
    pairs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_reach_each_others_postgres_over_verified_tls_only() {
    let (_dir, lab, primary) = serial_lab(3, false).await;
    let primary_dsn = dsn(&lab, &primary);

    until_holds(SETTLE_WITHIN, "both replicas stream over TLS", || async {
        let sql = "SELECT count(*) FROM pg_stat_replication r \
                       JOIN pg_stat_ssl s USING (pid) WHERE s.ssl AND r.state = 'streaming'";
        query_i64(&primary_dsn, sql).await == Ok(2)
    })
    .await;
    let clear = query_i64(
        &primary_dsn,
        "SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE NOT s.ssl",
    )
    .await;
    assert_eq!(clear, Ok(0), "a walreceiver streams in clear");

    // The agents' control connections last one probe each: Postgres logs
    // every connection, where it came from and whether it is encrypted,
    // once asked to. An agent probes its own server over the Unix socket,
    // which never reaches the network; any that came over TCP must be
    // encrypted.
    let api = Api::of(&lab);
    let base = api_url(&lab, &primary);
    api.send_ok(
        "PATCH",
        &base,
        "/config",
        &json!({"postgresql": {"parameters": {"log_connections": "on"}}}),
    )
    .await;
    for name in lab.names() {
        let log = data_file(&lab, &name, "postgres.log");
        let probes = eventually(
            SETTLE_WITHIN,
            &format!("{name}'s Postgres logs its agent's probes"),
            || async {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let probes = control_connections(&text);
                (probes.len() >= 3).then_some(probes)
            },
        )
        .await;
        for (received, authorized) in probes {
            assert!(
                received.contains("host=[local]") || authorized.contains("SSL enabled"),
                "{name}'s agent probes over the network in clear: {received} / {authorized}"
            );
        }
    }

    let ca = &lab.description.tls.as_ref().expect("the lab's CA").ca_file;
    let verified = format!("sslmode=verify-full sslrootcert={}", ca.display());
    let system = replication_login(&lab, &primary, &verified)
        .await
        .expect("a replication login over verified TLS");
    assert!(!system.trim().is_empty(), "IDENTIFY_SYSTEM said nothing");
    let refused = replication_login(&lab, &primary, "sslmode=disable")
        .await
        .expect_err("a replication login in clear");
    assert!(
        refused.contains("no pg_hba.conf entry") && refused.contains("no encryption"),
        "{refused}"
    );
}
