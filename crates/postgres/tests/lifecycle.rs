//! One primary: bootstrap, start, status, stop, fence, restart.

mod common;

use common::{
    STOP, Scratch, backend_pid, eventually, is_alive, live_in_group, live_server_processes,
};
use raftgres_postgres::{
    Control, DbState, Lsn, PendingSetting, PgError, Postmaster, Role, StopMode, check_parameters,
    controldata, initdb, is_initialized, kill_strays, write_managed_conf,
};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

/// Tries one login over TCP; the server's message when refused.
async fn login(
    s: &raftgres_postgres::PgSettings,
    user: &str,
    password: Option<&str>,
) -> Result<(), String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(s.port)
        .user(user)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5));
    if let Some(password) = password {
        config.password(password);
    }
    match config.connect(tokio_postgres::NoTls).await {
        Ok(_) => Ok(()),
        // The cause (such as "password missing") is only in the debug form.
        Err(e) => Err(format!("{e:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_login_over_tcp_needs_its_password() {
    let Some(mut node) = common::solo_node().await else {
        return;
    };
    let s = node.settings.clone();

    let rewinder = s.rewind.clone().unwrap();
    for login_as in [&s.superuser, &s.replication, &rewinder] {
        let user = login_as.user.as_str();
        let err = login(&s, user, None).await.unwrap_err();
        assert!(err.contains("password"), "{user} without a password: {err}");
        let err = login(&s, user, Some("guess")).await.unwrap_err();
        assert!(
            err.contains("password authentication failed"),
            "{user}: {err}"
        );
    }
    login(&s, &s.superuser.user, Some(s.superuser.password.expose()))
        .await
        .unwrap();
    login(&s, &rewinder.user, Some(rewinder.password.expose()))
        .await
        .unwrap();
    login(
        &s,
        &s.replication.user,
        Some(s.replication.password.expose()),
    )
    .await
    .unwrap();

    let hba = std::fs::read_to_string(s.data_dir.join("pg_hba.conf")).unwrap();
    assert!(!hba.contains("trust"), "{hba}");
    // The password file the tools and walreceiver use is private.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(&s.passfile).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    if let Some(owner) = s.run_as {
        assert_eq!(meta.uid(), owner.uid);
    }
    node.stop_fast().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_starts_reports_status_stops_and_restarts() {
    let Some(mut node) = common::lone_node() else {
        return;
    };
    let s = node.settings.clone();

    let info = initdb(&s).await.unwrap();
    assert!(is_initialized(&s.data_dir));
    assert!(!info.system_id.is_empty());
    assert_eq!(info.timeline, 1);

    node.start().await;
    let status = node.status().await;
    assert!(!status.in_recovery);
    assert_eq!(status.timeline, 1);
    assert_eq!(status.system_id, info.system_id);
    assert!(status.wal_lsn > Lsn(0));
    assert_eq!((status.receive_lsn, status.replay_lsn), (None, None));
    assert!(status.replication.is_empty());
    assert!(status.wal_receiver.is_none());
    assert!(!status.wal_replay_paused);

    // A second postmaster on the same data directory is refused up front.
    let err = Postmaster::start(&s).await.unwrap_err();
    assert!(matches!(err, PgError::AlreadyRunning { .. }), "{err}");

    // Slots: idempotent create and drop.
    node.control.create_physical_slot("n2").await.unwrap();
    node.control.create_physical_slot("n2").await.unwrap();
    let slots = node.control.list_slots().await.unwrap();
    assert_eq!(slots.len(), 1);
    assert_eq!(
        (slots[0].name.as_str(), slots[0].slot_type.as_str()),
        ("n2", "physical")
    );
    assert!(!slots[0].active);
    assert!(
        slots[0].restart_lsn.is_some(),
        "the slot reserves WAL at once"
    );
    node.control.drop_slot("n2").await.unwrap();
    node.control.drop_slot("n2").await.unwrap();
    assert!(node.control.list_slots().await.unwrap().is_empty());
    let err = node.control.create_physical_slot("n-2").await.unwrap_err();
    assert!(matches!(err, PgError::InvalidInput { .. }), "{err}");

    node.control
        .checkpoint(Duration::from_secs(30))
        .await
        .unwrap();
    // Promoting a primary is a harmless no-op, so retries are safe.
    assert!(node.control.promote(Duration::from_secs(5)).await.unwrap());
    let err = node.control.pause_wal_replay().await.unwrap_err();
    assert!(matches!(err, PgError::NotInRecovery { .. }), "{err}");

    node.stop_fast().await;
    let control = controldata(&s).await.unwrap();
    assert_eq!(control.state, DbState::ShutDown);
    assert_eq!(control.system_id, info.system_id);
    assert_eq!(control.timeline, 1);
    assert!(control.checkpoint_lsn >= control.redo_lsn);

    // Restart, then a smart stop.
    node.start().await;
    assert!(!node.status().await.in_recovery);
    let status = node.pm().stop(StopMode::Smart, STOP).await.unwrap();
    assert!(status.success(), "{status}");
    node.postmaster = None;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_kills_every_backend_and_restart_recovers() {
    let Some(mut node) = common::solo_node().await else {
        return;
    };
    node.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")
        .await;

    // An idle client and one in the middle of a long query.
    let idle = node.client().await;
    let idle_backend = backend_pid(&idle).await;
    let busy = node.client().await;
    let busy_query = tokio::spawn(async move { busy.batch_execute("SELECT pg_sleep(60)").await });
    let postmaster = node.pm().pid();
    assert!(live_server_processes(&node.settings.data_dir).len() > 3);

    let started = Instant::now();
    let status = node.pm().fence().await.unwrap();
    let took = started.elapsed();
    node.postmaster = None;
    eprintln!("fence took {took:?}");
    assert_eq!(status.signal(), Some(9), "{status}");

    // Nothing of the server runs any more: no backend, no process in the
    // postmaster's group.
    assert!(!is_alive(idle_backend as u32));
    assert_eq!(
        live_server_processes(&node.settings.data_dir),
        Vec::<u32>::new()
    );
    assert_eq!(live_in_group(postmaster), Vec::<u32>::new());
    assert!(idle.query_one("SELECT 1", &[]).await.is_err());
    let busy_result = tokio::time::timeout(Duration::from_secs(5), busy_query)
        .await
        .unwrap()
        .unwrap();
    assert!(busy_result.is_err());

    // Killed, not shut down: the next start runs crash recovery.
    let control = controldata(&node.settings).await.unwrap();
    assert_eq!(control.state, DbState::InProduction);
    node.start().await;
    assert!(node.has_row(1).await);
    node.stop_fast().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmaster_killed_from_outside_is_reaped_and_restarts() {
    let Some(mut node) = common::solo_node().await else {
        return;
    };
    // This backend outlives a SIGKILLed postmaster until it notices.
    let client = node.client().await;
    let backend = backend_pid(&client).await;

    let pid = node.pm().pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let pm = node.postmaster.as_mut().unwrap();
    let status = eventually(
        "the postmaster to be reaped",
        Duration::from_secs(10),
        || {
            let exited = pm.try_exited();
            async move { exited }
        },
    )
    .await;
    assert_eq!(status.signal(), Some(9));
    node.postmaster = None;
    // Reaping also killed what the postmaster left behind.
    eventually("orphaned backends to die", Duration::from_secs(5), || {
        let left = live_server_processes(&node.settings.data_dir);
        async move { left.is_empty().then_some(()) }
    })
    .await;
    assert!(!is_alive(backend as u32));

    // The stale postmaster.pid does not stop a new start.
    assert!(node.settings.data_dir.join("postmaster.pid").exists());
    node.start().await;
    assert!(!node.status().await.in_recovery);
    node.stop_fast().await;
}

#[tokio::test]
async fn errors_name_the_path_to_fix() {
    let scratch = Scratch::new(None);
    let mut s = scratch.settings("n1");
    s.bin_dir = "/nonexistent/pg/bin".into();

    let err = Postmaster::start(&s).await.unwrap_err();
    assert!(matches!(err, PgError::BinaryMissing { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent/pg/bin/postgres"),
        "{err}"
    );
    let err = initdb(&s).await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/pg/bin/"), "{err}");

    // A bin_dir that has the binaries (stand-ins are enough for the checks
    // that run first) and a data directory that was never initialized.
    let bin = scratch.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["postgres", "initdb", "pg_controldata", "pg_rewind"] {
        std::fs::write(bin.join(name), "").unwrap();
    }
    s.bin_dir = bin;
    let data = s.data_dir.display().to_string();
    let err = Postmaster::start(&s).await.unwrap_err();
    assert!(matches!(err, PgError::NotInitialized { .. }), "{err}");
    assert!(err.to_string().contains(&data), "{err}");
    let err = controldata(&s).await.unwrap_err();
    assert!(err.to_string().contains(&data), "{err}");
    let upstream = raftgres_postgres::Upstream {
        host: "127.0.0.1".into(),
        port: 1,
    };
    let err = raftgres_postgres::rewind(&s, &upstream, None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, PgError::NotInitialized { .. }), "{err}");

    // initdb never writes into a directory that holds something.
    std::fs::create_dir(&s.data_dir).unwrap();
    std::fs::write(s.data_dir.join("keep"), "x").unwrap();
    let err = initdb(&s).await.unwrap_err();
    assert!(matches!(err, PgError::DataDirNotEmpty { .. }), "{err}");
    assert!(err.to_string().contains(&data), "{err}");
    assert!(s.data_dir.join("keep").exists());

    // Relative paths are refused before anything runs.
    let mut relative = s.clone();
    relative.data_dir = "data".into();
    let err = Postmaster::start(&relative).await.unwrap_err();
    assert!(err.to_string().contains("data_dir"), "{err}");

    // Nobody listens: a bounded, named connection error.
    let started = Instant::now();
    let err = Control::new(&s).status().await.unwrap_err();
    assert!(matches!(err, PgError::Connect { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{}", s.port)),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmaster_outlives_the_thread_that_asked_for_it() {
    let Some(scratch) = common::scratch() else {
        return;
    };
    let mut node = scratch.initialized("n1").await;

    // The parent-death signal fires when the forking thread exits; a caller
    // on a short-lived thread must not take the postmaster with it.
    let settings = node.settings.clone();
    let pm = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(Postmaster::start(&settings)).unwrap()
    })
    .join()
    .unwrap();
    node.postmaster = Some(pm);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.pm().try_exited(), None);
    node.pm().wait_ready(common::READY).await.unwrap();
    let log = std::fs::read_to_string(node.pm().log_path()).unwrap();
    assert!(
        log.contains("database system is ready to accept connections"),
        "{log}"
    );
    node.stop_fast().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strays_of_a_lost_handle_are_killed_before_a_new_start() {
    let Some(mut node) = common::solo_node().await else {
        return;
    };
    // As if a previous agent had started it: nobody here owns it any more.
    let lost = node.postmaster.take().unwrap();
    let lost_pid = lost.pid();
    std::mem::forget(lost);

    let err = Postmaster::start(&node.settings).await.unwrap_err();
    match &err {
        PgError::AlreadyRunning { pids, .. } => assert!(pids.contains(&lost_pid), "{err}"),
        other => panic!("expected AlreadyRunning, got {other}"),
    }
    let killed = kill_strays(&node.settings, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(killed.contains(&lost_pid), "{killed:?}");
    assert!(!is_alive(lost_pid));
    assert!(live_server_processes(&node.settings.data_dir).is_empty());
    assert!(
        kill_strays(&node.settings, Duration::from_secs(5))
            .await
            .unwrap()
            .is_empty()
    );

    node.start().await;
    node.stop_fast().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_checked_by_postgres_and_a_restart_only_one_is_reported_pending() {
    let Some(mut node) = common::lone_node() else {
        return;
    };
    let params = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    // Before a data directory exists, as for a member about to be cloned.
    let err = check_parameters(&node.settings, &params(&[("work_mem", "banana")]))
        .await
        .expect_err("an invalid value is refused");
    assert!(
        err.to_string()
            .contains(r#"invalid value for parameter "work_mem": "banana""#),
        "{err}"
    );
    initdb(&node.settings).await.unwrap();
    node.start().await;

    // Beside the running server, as the agent checks a config change.
    check_parameters(
        &node.settings,
        &params(&[("work_mem", "8MB"), ("max_connections", "150")]),
    )
    .await
    .expect("valid settings are accepted");
    for (bad, named) in [
        (params(&[("work_mem", "banana")]), "work_mem"),
        (params(&[("no_such_setting", "1")]), "no_such_setting"),
        (
            params(&[("work_mem", "8MB"), ("shared_buffers", "lots")]),
            "shared_buffers",
        ),
    ] {
        let err = check_parameters(&node.settings, &bad)
            .await
            .expect_err("Postgres refuses it");
        assert!(
            matches!(&err, PgError::ParametersRefused { reason } if reason.contains(named)),
            "the refusal names {named}: {err}"
        );
    }
    assert!(node.status().await.pending_restart.is_empty());

    // A reload takes work_mem at once and leaves max_connections waiting.
    let mut changed = node.settings.clone();
    changed
        .parameters
        .extend(params(&[("work_mem", "8MB"), ("max_connections", "150")]));
    write_managed_conf(&changed, &Role::Primary).unwrap();
    node.pm().reload().unwrap();
    let pending = eventually(
        "max_connections waits for a restart",
        Duration::from_secs(10),
        || async {
            let status = node.control.status().await.ok()?;
            (!status.pending_restart.is_empty()).then_some(status.pending_restart)
        },
    )
    .await;
    assert_eq!(
        pending,
        vec![PendingSetting {
            name: "max_connections".into(),
            running: "20".into(),
            configured: Some("150".into()),
        }]
    );
    let client = node.client().await;
    let work_mem: String = client.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
    assert_eq!(work_mem, "8MB", "a reloadable setting applies on reload");

    node.stop_fast().await;
    node.start().await;
    assert!(node.status().await.pending_restart.is_empty());
    node.stop_fast().await;
}
