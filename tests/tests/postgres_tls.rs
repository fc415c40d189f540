//! Postgres over TLS between members, on a real lab whose members run
//! `postgresql.tls.sslmode: verify-full` with the lab's CA and serve
//! Postgres with certificates from it: the replicas' walreceivers and every
//! agent's control connections are encrypted (`pg_stat_ssl`, and the
//! server's connection log for the agents' short probes), and a
//! replication login in clear is refused even with the right password,
//! which the same login over verified TLS proves.

use raftgres_tests::http::Api;
use raftgres_tests::settle::SETTLE_WITHIN;
use raftgres_tests::{dsn, eventually, query_i64, serial_lab};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_reach_each_others_postgres_over_verified_tls_only() {
    let (dir, lab, primary) = serial_lab(3, false).await;
    let primary_dsn = dsn(&lab, &primary);

    eventually(SETTLE_WITHIN, "both replicas stream over TLS", || async {
        let sql = "SELECT count(*) FROM pg_stat_replication r \
                       JOIN pg_stat_ssl s USING (pid) WHERE s.ssl AND r.state = 'streaming'";
        (query_i64(&primary_dsn, sql).await == Ok(2)).then_some(())
    })
    .await;
    let clear = query_i64(
        &primary_dsn,
        "SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE NOT s.ssl",
    )
    .await;
    assert_eq!(clear, Ok(0), "a walreceiver streams in clear");

    // The agents' control connections last one probe each: Postgres logs
    // every connection, and whether it is encrypted, once asked to.
    let api = Api::for_lab(&dir.path().join("lab.json"));
    let base = lab.member(&primary).expect("member").api_url.clone();
    api.send_ok(
        "PATCH",
        &base,
        "/config",
        &json!({"postgresql": {"parameters": {"log_connections": "on"}}}),
    )
    .await;
    for name in lab.names() {
        let log = lab
            .member(&name)
            .expect("member")
            .data_dir
            .join("postgres.log");
        let probes = eventually(
            SETTLE_WITHIN,
            &format!("{name}'s Postgres logs its agent's probes"),
            || async {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let probes: Vec<String> = text
                    .lines()
                    .filter(|l| {
                        l.contains("connection authorized")
                            && l.contains("application_name=raftgres-control")
                    })
                    .map(str::to_owned)
                    .collect();
                (probes.len() >= 3).then_some(probes)
            },
        )
        .await;
        for probe in probes {
            assert!(
                probe.contains("SSL enabled"),
                "{name}'s agent probes in clear: {probe}"
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
