//! Synchronous replication against a real lab: the holder names a
//! synchronous standby in the Raft state and in Postgres, only that standby
//! may take over, no acknowledged write is lost across the loss of the
//! primary's host, and strict mode makes commits wait with no standby left.
//! In quorum mode, no standby takes over before enough of the quorum
//! standbys have shown it holds every acknowledged commit.

use raftgres_lab::Lab;
use raftgres_tests::faults::{Ack, Writer, assert_no_write_after_takeover, first_write_on};
use raftgres_tests::http::{Api, api_url};
use raftgres_tests::{
    PrimaryMonitor, connect, dsn, eventually, execute_on, members_except, new_primary, query_i64,
    serial_lab, streaming, until_streaming,
};
use serde_json::{Value, json};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(30);
const TABLE: &str = "CREATE TABLE fault_writes (id bigint PRIMARY KEY, member text)";

async fn patch_config(lab: &Lab, via: &str, patch: Value) {
    let reply = Api::of(lab)
        .send("PATCH", &api_url(lab, via), "/config", &patch)
        .await
        .expect("PATCH /config");
    assert_eq!(reply.status, 200, "PATCH /config {patch}: {reply:?}");
}

/// The members `/cluster` shows as synchronous standbys.
async fn sync_standbys(lab: &Lab, via: &str) -> Option<Vec<String>> {
    let cluster = Api::of(lab)
        .get(&api_url(lab, via), "/cluster")
        .await
        .ok()?;
    Some(
        cluster.body["members"]
            .as_array()?
            .iter()
            .filter(|m| m["role"] == "sync_standby")
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect(),
    )
}

async fn get_status(lab: &Lab, name: &str, path: &str) -> u16 {
    Api::of(lab)
        .get(&api_url(lab, name), path)
        .await
        .map_or(0, |r| r.status)
}

/// Tags `name` nosync through its settings file and a reload.
async fn tag_nosync(lab: &Lab, name: &str) {
    let path = &lab.member(name).expect("member").config;
    let text = std::fs::read_to_string(path).expect("settings");
    std::fs::write(path, format!("tags: {{nosync: true}}\n{text}")).expect("write settings");
    let reply = Api::of(lab)
        .send("POST", &api_url(lab, name), "/reload", &json!({}))
        .await
        .expect("POST /reload");
    assert_eq!(reply.status, 202, "{reply:?}");
}

/// The one synchronous standby is the one the rules allow (here not the
/// member tagged nosync, which sorts first and so would win a tie among
/// equally advanced replicas), Postgres waits for it, the health endpoints
/// say so, and when the primary's host is lost it, and only it, takes
/// over, with every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_synchronous_standby_takes_over_and_no_acknowledged_write_is_lost() {
    let (_dir, mut lab, old) = serial_lab(3, false).await;
    let mut replicas = members_except(&lab, &[&old]);
    replicas.sort();
    let (nosync, sync) = (replicas[0].clone(), replicas[1].clone());
    tag_nosync(&lab, &nosync).await;
    execute_on(&lab, &old, TABLE).await;
    patch_config(&lab, &old, json!({"synchronous_mode": true})).await;

    eventually(
        WITHIN,
        "one synchronous standby, not the nosync one",
        || async { (sync_standbys(&lab, &old).await? == [sync.clone()]).then_some(()) },
    )
    .await;
    let names = query_i64(
        &dsn(&lab, &old),
        &format!(
            "SELECT (current_setting('synchronous_standby_names') = 'FIRST 1 (\"{sync}\")')::int::bigint"
        ),
    )
    .await;
    assert_eq!(names, Ok(1), "the primary waits for {sync}");
    eventually(
        WITHIN,
        "Postgres reports the standby synchronous",
        || async {
            let n = query_i64(
                &dsn(&lab, &old),
                &format!(
                    "SELECT count(*) FROM pg_stat_replication \
                 WHERE application_name = '{sync}' AND sync_state = 'sync'"
                ),
            )
            .await
            .ok()?;
            (n == 1).then_some(())
        },
    )
    .await;
    for (name, path, want) in [
        (&sync, "/sync", 200),
        (&sync, "/async", 503),
        (&sync, "/read-only-sync", 200),
        (&nosync, "/sync", 503),
        (&nosync, "/async", 200),
        (&nosync, "/read-only-sync", 503),
        (&old, "/read-only-sync", 200),
        (&old, "/quorum", 503),
    ] {
        assert_eq!(get_status(&lab, name, path).await, want, "{path} on {name}");
    }

    // Both replicas stream, so the nosync one is as advanced; in
    // asynchronous mode its name would win the tie.
    assert!(streaming(&lab, &nosync).await && streaming(&lab, &sync).await);
    let monitor = PrimaryMonitor::start(&lab);
    let writer = Writer::start(&old, &dsn(&lab, &old), 1, Duration::from_millis(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    lab.kill_host(&old).expect("lose the primary's host");
    let (acks, _) = writer.finish().await;
    assert!(!acks.is_empty(), "the writer never wrote before the fault");
    let new = new_primary(&lab, &old, WITHIN).await;
    assert_eq!(
        new, sync,
        "a member outside the synchronous set was promoted"
    );
    assert_takeover_kept(&lab, &new, &acks).await;
    monitor.assert_never_two().await;
}

/// Strict mode never falls back to asynchronous: with every standby gone,
/// a commit waits, and it completes once a standby returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_strict_mode_a_commit_waits_for_a_standby_to_return() {
    // A witness keeps the Raft majority while the only standby is gone.
    let (_dir, mut lab, primary) = serial_lab(2, true).await;
    let replica = lab
        .description
        .members
        .iter()
        .find(|m| m.name != primary && !m.witness)
        .map(|m| m.name.clone())
        .expect("a replica");
    execute_on(&lab, &primary, TABLE).await;
    patch_config(
        &lab,
        &primary,
        json!({"synchronous_mode": true, "synchronous_mode_strict": true}),
    )
    .await;
    eventually(WITHIN, "the replica is the synchronous standby", || async {
        (sync_standbys(&lab, &primary).await? == [replica.clone()]).then_some(())
    })
    .await;

    lab.kill_host(&replica).expect("lose the only standby");
    let client = connect(&lab, &primary).await;
    let insert = tokio::spawn(async move {
        client
            .execute("INSERT INTO fault_writes VALUES (1, 'strict')", &[])
            .await
    });
    // Once the holder has narrowed the set and reconfigured Postgres (in
    // non-strict mode it would now stop waiting), the commit still waits.
    eventually(WITHIN, "the primary waits for any standby", || async {
        let any = query_i64(
            &dsn(&lab, &primary),
            "SELECT (current_setting('synchronous_standby_names') = '*')::int::bigint",
        )
        .await
        .ok()?;
        (any == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !insert.is_finished(),
        "the commit completed with no standby: {:?}",
        insert.await
    );
    lab.start(&replica).expect("the standby returns");
    let done = tokio::time::timeout(WITHIN, insert)
        .await
        .expect("the commit completes once a standby returns")
        .expect("insert task");
    assert_eq!(done.expect("the insert commits"), 1);
}

/// A crashed primary in synchronous mode is not started again in place:
/// crash recovery would make visible the commits that still waited for the
/// standby. Its synchronous standby takes over, and the old primary
/// rejoins as a replica of it (its unconfirmed tail rewound away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_synchronous_primary_hands_over_to_its_standby() {
    let (_dir, lab, old) = serial_lab(3, false).await;
    execute_on(&lab, &old, TABLE).await;
    patch_config(&lab, &old, json!({"synchronous_mode": true})).await;
    let sync = eventually(WITHIN, "a synchronous standby", || async {
        match sync_standbys(&lab, &old).await?.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    })
    .await;
    let monitor = PrimaryMonitor::start(&lab);
    let postmaster = raftgres_tests::postmaster_pid(&lab, &old).expect("postmaster.pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(postmaster),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL the primary's postmaster");
    let new = new_primary(&lab, &old, WITHIN).await;
    assert_eq!(new, sync, "the synchronous standby takes over");
    until_streaming(
        &lab,
        &old,
        WITHIN,
        "the old primary streams from the new one",
    )
    .await;
    monitor.assert_never_two().await;
}

/// The members `/cluster` shows as quorum standbys.
async fn quorum_standbys(lab: &Lab, via: &str) -> Option<Vec<String>> {
    let cluster = Api::of(lab)
        .get(&api_url(lab, via), "/cluster")
        .await
        .ok()?;
    let mut names: Vec<String> = cluster.body["members"]
        .as_array()?
        .iter()
        .filter(|m| m["role"] == "quorum_standby")
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Some(names)
}

/// A gauge of `via`'s `/metrics`.
async fn gauge(lab: &Lab, via: &str, name: &str) -> Option<u64> {
    let reply = raftgres_tests::http::lab_client(lab, Duration::from_secs(5))
        .get(format!("{}/metrics", api_url(lab, via)))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    reply.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Quorum mode with synchronous_node_count 1: the primary waits for any one
/// of four quorum standbys, so a commit may be on one of them only, and a
/// candidate needs all four to have reported their positions. With the
/// primary's host and one standby's host lost, the three left hold a Raft
/// majority and are healthy, and still none takes over (it could lack a
/// commit only the lost standby had). Once that standby is back and
/// reports, the furthest takes over with every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_quorum_mode_nobody_takes_over_without_showing_every_commit() {
    let (_dir, mut lab, old) = serial_lab(5, false).await;
    let mut replicas = members_except(&lab, &[&old]);
    replicas.sort();
    execute_on(&lab, &old, TABLE).await;
    patch_config(&lab, &old, json!({"synchronous_mode": "quorum"})).await;
    eventually(
        WITHIN,
        "every replica a quorum standby, each commit on at least one",
        || async {
            let all = quorum_standbys(&lab, &old).await? == replicas;
            let k = gauge(&lab, &old, "raftgres_synchronous_quorum").await?;
            (all && k == 1).then_some(())
        },
    )
    .await;
    let quoted: Vec<String> = replicas.iter().map(|r| format!("\"{r}\"")).collect();
    let wanted = format!("ANY 1 ({})", quoted.join(", "));
    let setting = query_i64(
        &dsn(&lab, &old),
        &format!("SELECT (current_setting('synchronous_standby_names') = '{wanted}')::int::bigint"),
    )
    .await;
    assert_eq!(setting, Ok(1), "the primary waits for {wanted}");
    let (quorum, other) = (&replicas[0], &replicas[1]);
    for (name, path, want) in [
        (quorum, "/quorum", 200),
        (quorum, "/read-only-quorum", 200),
        (quorum, "/sync", 503),
        (quorum, "/async", 503),
        (&old, "/quorum", 503),
        (&old, "/read-only-quorum", 200),
    ] {
        assert_eq!(get_status(&lab, name, path).await, want, "{path} on {name}");
    }

    let monitor = PrimaryMonitor::start(&lab);
    let writer = Writer::start(&old, &dsn(&lab, &old), 1, Duration::from_millis(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    lab.kill_host(&old).expect("lose the primary's host");
    lab.kill_host(other).expect("lose a quorum standby's host");
    let (acks, _) = writer.finish().await;
    assert!(!acks.is_empty(), "the writer never wrote before the fault");

    // Three healthy quorum standbys and a Raft majority, but one report
    // missing: for three lease lifetimes and more, nobody takes over.
    let hold = Duration::from_secs(10);
    let until = tokio::time::Instant::now() + hold;
    while tokio::time::Instant::now() < until {
        let now = raftgres_tests::writable(&lab).await;
        assert!(now.is_empty(), "{now:?} took over without every report");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    lab.start(other).expect("the lost standby returns");
    let new = new_primary(&lab, &old, WITHIN * 2).await;
    assert!(replicas.contains(&new), "{new}");
    assert_takeover_kept(&lab, &new, &acks).await;
    monitor.assert_never_two().await;
}

/// The new primary `new` wrote nothing before the old one's last write
/// and holds every write acknowledged before the fault.
async fn assert_takeover_kept(lab: &Lab, new: &str, acks: &[Ack]) {
    let first = first_write_on(&dsn(lab, new), new, 1_000_000, WITHIN).await;
    assert_no_write_after_takeover(acks, &first);
    let last = acks.last().expect("acks").id;
    let kept = query_i64(
        &dsn(lab, new),
        &format!("SELECT count(*) FROM fault_writes WHERE id <= {last}"),
    )
    .await
    .expect("count on the new primary");
    assert_eq!(
        kept,
        acks.len() as i64,
        "acknowledged writes were lost (last acknowledged id {last})"
    );
}
