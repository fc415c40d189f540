//! A primary with a cloned standby: streaming, replay pause, promotion, and
//! an ex-primary rejoining with pg_rewind.

mod common;

use common::{CONVERGE, Node, Scratch, eventually};
use raftgres_postgres::{
    DbState, Lsn, PgStatus, Role, basebackup, controldata, rewind, write_managed_conf,
};
use std::time::Duration;

const PROMOTE_WAIT: Duration = Duration::from_secs(30);

/// Waits until `primary` shows `standby` streaming from it.
async fn wait_streaming(primary: &Node, standby: &Node) {
    let name = standby.settings.application_name.clone();
    eventually(
        &format!("{name} to stream from the primary"),
        CONVERGE,
        || async {
            let status = primary.control.status().await.ok()?;
            status
                .replication
                .iter()
                .any(|peer| peer.application_name == name && peer.state == "streaming")
                .then_some(())
        },
    )
    .await;
}

async fn wait_row(node: &Node, id: i32) {
    let what = format!("row {id} on {}", node.settings.application_name);
    eventually(&what, CONVERGE, || async {
        node.has_row(id).await.then_some(())
    })
    .await;
}

async fn status_where(node: &Node, what: &str, pred: impl Fn(&PgStatus) -> bool) -> PgStatus {
    eventually(what, CONVERGE, || async {
        node.control.status().await.ok().filter(|s| pred(s))
    })
    .await
}

/// `alpha` running as the primary with an empty table `t`, and `beta`, not
/// cloned yet.
async fn primary_and_spare(scratch: &Scratch) -> (Node, Node) {
    let primary = scratch.running("alpha").await;
    primary.execute("CREATE TABLE t (id int PRIMARY KEY)").await;
    (primary, Node::new(scratch.settings("beta")))
}

/// Clones `standby` from `primary` without a slot.
async fn clone_of(standby: &Node, primary: &Node) {
    basebackup(&standby.settings, &primary.upstream(), None, None)
        .await
        .unwrap();
}

/// Like [`primary_and_spare`], with `beta` cloned (not started).
async fn primary_and_clone(scratch: &Scratch) -> (Node, Node) {
    let (primary, standby) = primary_and_spare(scratch).await;
    clone_of(&standby, &primary).await;
    (primary, standby)
}

/// The rows of two primaries that diverged, and of a write after the loser
/// rejoined.
struct Diverged {
    won: i32,
    lost: i32,
    new: i32,
}

/// Starts the rewound `loser` and checks that it follows `winner`: it
/// streams and replays the new row, and holds the winner's diverged row,
/// not its own.
async fn rejoins(loser: &mut Node, winner: &Node, rows: Diverged) {
    loser.start().await;
    wait_streaming(winner, loser).await;
    winner
        .execute(&format!("INSERT INTO t VALUES ({})", rows.new))
        .await;
    wait_row(loser, rows.new).await;
    assert!(loser.has_row(rows.won).await);
    assert!(
        !loser.has_row(rows.lost).await,
        "the diverged write is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_streams_pauses_replay_and_is_promoted() {
    let Some(scratch) = common::scratch() else {
        return;
    };
    let (mut primary, mut standby) = primary_and_spare(&scratch).await;
    primary.control.create_physical_slot("beta").await.unwrap();

    let progress = tokio::sync::watch::Sender::new(None);
    basebackup(
        &standby.settings,
        &primary.upstream(),
        Some("beta"),
        Some(&progress),
    )
    .await
    .unwrap();
    let reported = progress
        .borrow()
        .expect("pg_basebackup reported its progress");
    assert!(
        reported.total_bytes > 1024 * 1024 && reported.done_bytes == reported.total_bytes,
        "the last report is the whole copy: {reported:?}"
    );
    assert!(standby.settings.data_dir.join("standby.signal").exists());
    standby.start().await;
    wait_streaming(&primary, &standby).await;
    let slots = primary.control.list_slots().await.unwrap();
    assert!(
        slots.iter().any(|s| s.name == "beta" && s.active),
        "{slots:?}"
    );

    primary.execute("INSERT INTO t VALUES (1)").await;
    wait_row(&standby, 1).await;
    let status = standby.status().await;
    assert!(status.in_recovery);
    assert_eq!(status.timeline, 1);
    assert_eq!(status.system_id, primary.status().await.system_id);
    let receiver = status
        .wal_receiver
        .expect("a streaming standby has a WAL receiver");
    assert_eq!(receiver.status, "streaming");
    assert_eq!(receiver.upstream(), Some(primary.upstream().to_string()));
    assert_eq!(receiver.slot_name.as_deref(), Some("beta"));

    // Paused replay: WAL still arrives, but replay_lsn stands still.
    standby.control.pause_wal_replay().await.unwrap();
    let paused = status_where(&standby, "replay to pause", |s| s.wal_replay_paused).await;
    let replay_before = paused
        .replay_lsn
        .expect("a standby reports its replay position");
    primary
        .execute("INSERT INTO t SELECT generate_series(2, 100)")
        .await;
    let written = primary.status().await.wal_lsn;
    status_where(&standby, "the standby to receive the new WAL", |s| {
        s.receive_lsn.is_some_and(|r| r >= written)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = standby.status().await;
    assert_eq!(still.replay_lsn, Some(replay_before));
    assert!(still.wal_lsn >= written, "wal_lsn counts received WAL");
    assert!(!standby.has_row(2).await);
    standby.control.resume_wal_replay().await.unwrap();
    wait_row(&standby, 100).await;
    assert!(!standby.status().await.wal_replay_paused);

    // Failover: the primary goes away, the standby is promoted.
    primary.stop_fast().await;
    assert!(standby.control.promote(PROMOTE_WAIT).await.unwrap());
    let promoted = standby.status().await;
    assert!(!promoted.in_recovery);
    assert_eq!(promoted.timeline, 2);
    assert!(promoted.wal_lsn > Lsn(0));
    standby.execute("INSERT INTO t VALUES (101)").await;

    // The cleanly stopped old primary has nothing the new one lacks, so it
    // follows it without a rewind (the switchover path).
    assert_eq!(
        controldata(&primary.settings).await.unwrap().state,
        DbState::ShutDown
    );
    let follow = Role::Standby {
        upstream: standby.upstream(),
        slot: None,
    };
    write_managed_conf(&primary.settings, &follow).unwrap();
    primary.start().await;
    wait_streaming(&standby, &primary).await;
    wait_row(&primary, 101).await;
    status_where(&primary, "the old primary on timeline 2", |s| {
        s.in_recovery && s.timeline == 2
    })
    .await;
    primary.stop_fast().await;
    standby.stop_fast().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverged_ex_primaries_rejoin_with_rewind() {
    let Some(scratch) = common::scratch() else {
        return;
    };
    let (mut a, mut b) = primary_and_clone(&scratch).await;
    b.start().await;
    wait_streaming(&a, &b).await;

    // Split brain on purpose: b is promoted while a still takes writes.
    assert!(b.control.promote(PROMOTE_WAIT).await.unwrap());
    b.execute("INSERT INTO t VALUES (10)").await;
    a.execute("INSERT INTO t VALUES (20)").await;
    a.stop_fast().await;

    // a (cleanly stopped, diverged on timeline 1) rewinds to b.
    let progress = tokio::sync::watch::Sender::new(None);
    rewind(&a.settings, &b.upstream(), None, Some(&progress))
        .await
        .unwrap();
    let reported = progress.borrow().expect("pg_rewind reported its progress");
    assert_eq!(reported.done_bytes, reported.total_bytes, "{reported:?}");
    assert!(a.settings.data_dir.join("standby.signal").exists());
    let rows = Diverged {
        won: 10,
        lost: 20,
        new: 30,
    };
    rejoins(&mut a, &b, rows).await;
    let status = status_where(&a, "alpha on timeline 2", |s| s.timeline == 2).await;
    assert!(status.in_recovery);

    // Roles swap again, and this time the loser is fenced (killed), not
    // stopped: the rewind must first finish its crash recovery.
    assert!(a.control.promote(PROMOTE_WAIT).await.unwrap());
    b.execute("INSERT INTO t VALUES (40)").await;
    a.execute("INSERT INTO t VALUES (50)").await;
    b.pm().fence().await.unwrap();
    b.postmaster = None;
    assert_eq!(
        controldata(&b.settings).await.unwrap().state,
        DbState::InProduction
    );

    rewind(&b.settings, &a.upstream(), None, None)
        .await
        .unwrap();
    let rows = Diverged {
        won: 50,
        lost: 40,
        new: 60,
    };
    rejoins(&mut b, &a, rows).await;
    status_where(&b, "beta on timeline 3", |s| {
        s.timeline == 3 && s.in_recovery
    })
    .await;

    b.stop_fast().await;
    a.stop_fast().await;
}

/// The entries next to `data_dir` that a clone may leave behind (staging
/// copies, replaced data directories), by name.
fn leftovers_beside(data_dir: &std::path::Path) -> Vec<String> {
    let name = data_dir.file_name().unwrap().to_string_lossy().into_owned();
    let mut found: Vec<String> = std::fs::read_dir(data_dir.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{name}.")))
        .collect();
    found.sort();
    found
}

/// A re-clone must not double disk use for good: a failed one leaves the
/// member's data where it was, a successful one leaves only the new copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reclone_replaces_the_data_only_once_the_copy_is_complete() {
    let Some(scratch) = common::scratch() else {
        return;
    };
    let (mut primary, mut standby) = primary_and_clone(&scratch).await;
    let marker = standby.settings.data_dir.join("marker-of-the-old-copy");
    std::fs::write(&marker, "old").unwrap();

    // Nothing listens there: the clone fails before copying a byte.
    let nobody = raftgres_postgres::Upstream {
        host: "127.0.0.1".to_owned(),
        port: common::free_port(),
    };
    basebackup(&standby.settings, &nobody, None, None)
        .await
        .expect_err("a clone from a closed port fails");
    assert!(
        marker.exists() && standby.settings.data_dir.join("PG_VERSION").exists(),
        "a failed clone must leave the old data in place"
    );
    assert_eq!(
        leftovers_beside(&standby.settings.data_dir),
        Vec::<String>::new()
    );

    primary.execute("INSERT INTO t VALUES (1)").await;
    clone_of(&standby, &primary).await;
    assert!(!marker.exists(), "the data directory holds the new copy");
    assert!(standby.settings.data_dir.join("standby.signal").exists());
    assert_eq!(
        leftovers_beside(&standby.settings.data_dir),
        Vec::<String>::new(),
        "the replaced data must be gone once the new copy is in place"
    );
    standby.start().await;
    wait_streaming(&primary, &standby).await;
    wait_row(&standby, 1).await;
    standby.stop_fast().await;
    primary.stop_fast().await;
}
