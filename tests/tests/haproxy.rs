//! The lab's HAProxy, rendered from `deploy/haproxy/haproxy.cfg.j2`: its
//! write port reaches the writable primary and its read port the streaming
//! replicas, as the agents' `/primary` and `/replica` checks decide, also
//! after a failover and a switchover; `lab down` stops it; and lab.json
//! carries the API credentials every agent was configured with.

use raftgres_lab::{Lab, down, haproxy_binary, pg_query_bool, read_description};
use raftgres_tests::http::{Api, api_url};
use raftgres_tests::settle::roles_settled;
use raftgres_tests::{
    NeverTwoPrimaries, PrimaryMonitor, any_replica, count_rows, eventually, execute, query_i64,
    serial_lab, start_lab,
};
use serde_json::json;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// HAProxy marks a server after at most two 1 s checks.
const ROUTED_WITHIN: Duration = Duration::from_secs(10);
const FAILOVER_WITHIN: Duration = Duration::from_secs(30);

/// The lab's DSN through HAProxy, or `None` when HAProxy is not installed
/// (then the test has nothing to check).
fn haproxy_dsn(lab: &Lab, write: bool) -> Option<String> {
    let dsn = lab.haproxy_dsn(write);
    assert!(
        dsn.is_some() || haproxy_binary().is_none(),
        "HAProxy is installed but the lab did not start it"
    );
    if dsn.is_none() {
        eprintln!("HAProxy is not installed; nothing to test");
    }
    dsn
}

/// The Postgres port that served one new connection through `dsn`.
async fn served_by(dsn: &str) -> Option<u16> {
    let port = query_i64(dsn, "SELECT inet_server_port()::bigint")
        .await
        .ok()?;
    u16::try_from(port).ok()
}

fn pg_port(lab: &Lab, name: &str) -> u16 {
    lab.member(name)
        .expect("member")
        .pg_port
        .expect("a database member")
}

/// Gone or a zombie: `kill(pid, 0)` cannot tell.
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// Waits until the write port `write` reaches `primary`'s Postgres.
async fn until_write_port_reaches(lab: &Lab, write: &str, primary: &str) {
    eventually(
        ROUTED_WITHIN,
        "the write port reaches the primary",
        || async { (served_by(write).await == Some(pg_port(lab, primary))).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_port_reaches_the_primary_and_read_port_the_replicas() {
    let (_dir, lab, primary) = serial_lab(3, false).await;
    let (Some(write), Some(read)) = (haproxy_dsn(&lab, true), haproxy_dsn(&lab, false)) else {
        return;
    };
    let monitor = PrimaryMonitor::start(&lab);

    until_write_port_reaches(&lab, &write, &primary).await;
    assert_eq!(
        pg_query_bool(&write, "SELECT pg_is_in_recovery()").await,
        Ok(false)
    );
    execute(
        &write,
        "CREATE TABLE through_haproxy (id int); INSERT INTO through_haproxy VALUES (1)",
    )
    .await
    .expect("a table created through the write port");

    let replicas: BTreeSet<u16> = lab
        .names()
        .iter()
        .filter(|n| **n != primary)
        .map(|n| pg_port(&lab, n))
        .collect();
    // Before its first check fails, HAProxy counts a server as up, and two
    // reads in a row can miss the primary while it is still in the
    // rotation: wait for a run of reads long enough to have met it.
    let run = RefCell::new(Vec::new());
    eventually(
        ROUTED_WITHIN,
        "the read port reaches every replica, and only replicas",
        || async {
            let port = served_by(&read).await?;
            let mut run = run.borrow_mut();
            if !replicas.contains(&port) {
                run.clear();
                return None;
            }
            run.push(port);
            let reached: BTreeSet<u16> = run.iter().copied().collect();
            (reached == replicas && run.len() >= 2 * (replicas.len() + 1)).then_some(())
        },
    )
    .await;
    assert_eq!(
        pg_query_bool(&read, "SELECT pg_is_in_recovery()").await,
        Ok(true)
    );
    // Round-robin over replicas only, once the checks have settled.
    for _ in 0..6 {
        let port = served_by(&read).await.expect("a read through HAProxy");
        assert!(replicas.contains(&port), "read port reached {port}");
    }
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_port_follows_a_failover() {
    let (_dir, mut lab, primary) = serial_lab(3, false).await;
    let Some(write) = haproxy_dsn(&lab, true) else {
        return;
    };
    let monitor = PrimaryMonitor::start(&lab);
    until_write_port_reaches(&lab, &write, &primary).await;

    // The old primary is fenced (docs/fencing.md); until HAProxy's checks
    // mark it down, a write may still reach it, so wait for one that lands
    // elsewhere. The monitor fails the test if both were ever writable.
    lab.kill(&primary).expect("SIGKILL the primary's agent");
    let old_port = pg_port(&lab, &primary);
    eventually(
        FAILOVER_WITHIN,
        "a write through HAProxy on a new primary",
        || async {
            execute(&write, "CREATE TABLE IF NOT EXISTS after_failover (id int)")
                .await
                .ok()?;
            served_by(&write).await.filter(|port| *port != old_port)
        },
    )
    .await;
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_port_follows_a_switchover() {
    let (_dir, lab, old) = serial_lab(3, false).await;
    let Some(write) = haproxy_dsn(&lab, true) else {
        return;
    };
    let api = Api::authenticated(&lab);
    let monitor = NeverTwoPrimaries::start(&lab);
    until_write_port_reaches(&lab, &write, &old).await;
    execute(
        &write,
        "CREATE TABLE via_haproxy (id int); INSERT INTO via_haproxy VALUES (1)",
    )
    .await
    .expect("a write through the write port before the switchover");
    assert_eq!(
        count_rows(&lab, &old, "via_haproxy").await,
        Ok(1),
        "the write did not land on the primary"
    );

    let candidate = any_replica(&lab, &old);
    // The switchover is judged on the candidate's published state.
    roles_settled(&lab, &old).await;
    let reply = api
        .switchover(&api_url(&lab, &old), &old, &candidate)
        .await
        .expect("POST /switchover");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["leader"], json!(candidate), "{reply:?}");

    let new_port = pg_port(&lab, &candidate);
    eventually(
        FAILOVER_WITHIN,
        "a write through the write port lands on the candidate",
        || async {
            if served_by(&write).await != Some(new_port)
                || pg_query_bool(&write, "SELECT NOT pg_is_in_recovery()").await != Ok(true)
            {
                return None;
            }
            execute(&write, "INSERT INTO via_haproxy VALUES (2)")
                .await
                .ok()
        },
    )
    .await;
    assert_eq!(
        pg_query_bool(&write, "SELECT NOT pg_is_in_recovery()").await,
        Ok(true)
    );
    assert_eq!(
        count_rows(&lab, &candidate, "via_haproxy WHERE id = 1").await,
        Ok(1),
        "the write before the switchover is lost"
    );
    assert!(
        count_rows(&lab, &candidate, "via_haproxy WHERE id = 2")
            .await
            .is_ok_and(|n| n >= 1),
        "the write after the switchover is not on the candidate"
    );
    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_json_has_the_credentials_and_down_stops_haproxy() {
    let (dir, lab, _) = serial_lab(3, false).await;
    let description = read_description(dir.path()).expect("lab.json");
    let auth = description.api_auth.clone().expect("api_auth in lab.json");
    assert_eq!(Some(&auth), lab.api_auth());
    assert_eq!(auth.username, "raftgres");
    assert!(
        auth.password.len() == 32 && auth.password.bytes().all(|b| b.is_ascii_hexdigit()),
        "the password is not 16 random bytes in hex"
    );
    for m in &description.members {
        let config = std::fs::read_to_string(&m.config).expect("member config");
        assert!(
            config.contains(&auth.password),
            "{} has not the lab's API password",
            m.name
        );
    }
    for path in [
        raftgres_lab::LabDescription::path(dir.path()),
        description.members[0].config.clone(),
    ] {
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "{} holds the password readable by others",
            path.display()
        );
    }

    let Some(haproxy) = description.haproxy.clone() else {
        assert!(
            haproxy_binary().is_none(),
            "HAProxy is installed but lab.json has none"
        );
        return;
    };
    assert!(haproxy.config.is_file());
    let stopped_names = down(dir.path(), Duration::from_secs(60)).expect("lab down");
    assert!(
        stopped_names.contains(&"haproxy".to_owned()),
        "lab down stopped {stopped_names:?}"
    );
    assert!(
        stopped(haproxy.pid),
        "HAProxy (pid {}) still runs",
        haproxy.pid
    );
    drop(lab);

    // Restarted in the same DIR: the same ports and password, so what
    // scripts read from lab.json stays true.
    let (lab, primary) = start_lab(&dir, 3, false).await;
    let again = read_description(dir.path()).expect("lab.json");
    assert_eq!(again.api_auth, Some(auth));
    let again_haproxy = again.haproxy.expect("HAProxy after the restart");
    assert_eq!(
        (again_haproxy.write_port, again_haproxy.read_port),
        (haproxy.write_port, haproxy.read_port)
    );
    let write = lab.haproxy_dsn(true).expect("a write DSN");
    until_write_port_reaches(&lab, &write, &primary).await;
}
