//! The crate against Debian's real pgbouncer 1.18 and real PostgreSQL 15:
//! repointing, PAUSE/RESUME, fencing a database with no server, and errors.

mod common;

use common::{CONNECT, READ_DB, WRITE_DB, database, routes, server_port};
use raftgres_pooler::{NO_SERVER_HOST, PoolerError, write_databases_file};
use std::time::{Duration, Instant};

/// pgbouncer's default `server_login_retry`: a pool shut by a failed login
/// stays shut this long.
const LOGIN_RETRY: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repointed_entry_sends_new_clients_to_the_new_server() {
    let Some(scratch) = common::scratch() else {
        return;
    };
    let a = scratch.postgres("a").await;
    let b = scratch.postgres("b").await;
    let bouncer = scratch.pgbouncer(&routes(Some(&a.target), &[&b.target]));
    let admin = bouncer.admin();

    let before = bouncer.client(WRITE_DB, "client").await;
    assert_eq!(server_port(&before).await, Ok(a.target.port));
    let reader = bouncer.client(READ_DB, "reader").await;
    assert_eq!(server_port(&reader).await, Ok(b.target.port));

    // Unplanned failover: b is the new primary.
    assert!(bouncer.repoint(&routes(Some(&b.target), &[])).await);
    admin.kill(WRITE_DB).await.expect("KILL");
    admin.resume(Some(WRITE_DB)).await.expect("RESUME");

    assert!(
        server_port(&before).await.is_err(),
        "KILL drops the clients connected to the old primary"
    );
    let after = bouncer.client(WRITE_DB, "new client").await;
    assert_eq!(server_port(&after).await, Ok(b.target.port));
    let write = database(&admin, WRITE_DB, "SHOW DATABASES").await;
    assert_eq!(write.host.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        (write.port, write.paused, write.disabled),
        (b.target.port, false, false)
    );
    let read = database(&admin, READ_DB, "SHOW DATABASES").await;
    assert_eq!(read.host.as_deref(), Some(NO_SERVER_HOST));
    assert!(
        !write_databases_file(&bouncer.databases_file, &routes(Some(&b.target), &[]))
            .expect("same routes")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_queries_until_resume() {
    let Some(served) = common::served_by_a().await else {
        return;
    };
    let (admin, a) = (&served.admin, &served.a);

    admin
        .pause(Some(WRITE_DB), Duration::from_secs(5))
        .await
        .expect("PAUSE with no transaction running");
    let client = served.client;
    let query = tokio::spawn(async move { server_port(&client).await });
    // A client arriving now waits too, without making pgbouncer dial: the
    // server's parameters are still cached.
    let late = tokio::spawn({
        let port = served.bouncer.port;
        async move {
            let mut config = tokio_postgres::Config::new();
            config
                .host("127.0.0.1")
                .port(port)
                .user("postgres")
                .password(common::CLIENT_PASSWORD)
                .dbname(WRITE_DB);
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            server_port(&client).await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !query.is_finished(),
        "a query ran through a paused database"
    );
    assert!(
        !late.is_finished(),
        "a new client got through a paused database"
    );
    let waiting: u32 = admin
        .show_pools()
        .await
        .expect("SHOW POOLS")
        .iter()
        .filter(|p| p.database == WRITE_DB)
        .map(|p| p.cl_waiting)
        .sum();
    assert!(waiting >= 1, "SHOW POOLS counts the waiting query");

    admin.resume(Some(WRITE_DB)).await.expect("RESUME");
    let answer = tokio::time::timeout(CONNECT, query).await;
    assert_eq!(
        answer.expect("answer after RESUME").expect("task"),
        Ok(a.target.port)
    );
    let late = tokio::time::timeout(CONNECT, late).await;
    assert_eq!(
        late.expect("late client after RESUME").expect("task"),
        Ok(a.target.port)
    );
    admin
        .resume(Some(WRITE_DB))
        .await
        .expect("RESUME of what is not paused is no error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_times_out_on_a_running_transaction_and_stays_paused() {
    let Some(served) = common::served_by_a().await else {
        return;
    };
    let (admin, client) = (&served.admin, &served.client);
    client.simple_query("BEGIN").await.expect("BEGIN");

    let started = Instant::now();
    let err = admin
        .pause(Some(WRITE_DB), Duration::from_millis(300))
        .await
        .expect_err("PAUSE cannot finish while a transaction runs");
    assert!(started.elapsed() < CONNECT, "the timeout bounds PAUSE");
    assert!(matches!(err, PoolerError::PauseTimeout { .. }), "{err}");
    assert!(err.to_string().contains("RESUME to give up"), "{err}");
    let write = database(
        admin,
        WRITE_DB,
        "SHOW DATABASES on a new console connection",
    )
    .await;
    assert!(write.paused, "the database stays paused after the timeout");

    admin.resume(Some(WRITE_DB)).await.expect("RESUME");
    client.simple_query("COMMIT").await.expect("COMMIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_database_refuses_clients_and_serves_at_once_when_repointed() {
    let Some(served) = common::served_by_a().await else {
        return;
    };
    let (admin, bouncer, a) = (&served.admin, &served.bouncer, &served.a);

    // This node lost its lease.
    let lost = routes(None, &[]);
    admin.fence(WRITE_DB).await.expect("fence");
    assert!(bouncer.repoint(&lost).await);
    assert!(
        server_port(&served.client).await.is_err(),
        "connected clients are dropped"
    );
    let refused = bouncer
        .connect(WRITE_DB, CONNECT)
        .await
        .expect_err("a fenced database refuses");
    assert!(refused.contains("disabled"), "{refused}");

    // A primary is known again: served at once, not after server_login_retry.
    bouncer.repoint(&routes(Some(&a.target), &[])).await;
    admin.enable(WRITE_DB).await.expect("ENABLE");
    let started = Instant::now();
    let client = bouncer.client(WRITE_DB, "client after ENABLE").await;
    assert_eq!(server_port(&client).await, Ok(a.target.port));
    assert!(
        started.elapsed() < LOGIN_RETRY,
        "the pool was shut by a failed login"
    );
}

/// Why [`raftgres_pooler::Admin::fence`] exists: without it a client dials
/// the entry's dead address, and the pool stays shut after the repoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dialing_no_server_shuts_the_pool_past_the_repoint() {
    let Some(scratch) = common::scratch() else {
        return;
    };
    let a = scratch.postgres("a").await;
    let bouncer = scratch.pgbouncer(&routes(None, &[]));
    let err = bouncer
        .connect(WRITE_DB, CONNECT)
        .await
        .expect_err("no server behind the entry");
    assert!(!err.is_empty());

    bouncer.repoint(&routes(Some(&a.target), &[])).await;
    let shut = bouncer.connect(WRITE_DB, Duration::from_secs(2)).await;
    let served = match &shut {
        Ok(client) => tokio::time::timeout(Duration::from_secs(2), server_port(client))
            .await
            .is_ok_and(|port| port.is_ok()),
        Err(_) => false,
    };
    assert!(
        !served,
        "pgbouncer 1.18 served at once after a failed login; if a newer one ends server_login_retry on RELOAD, the crate docs can say so"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_admin_commands_get_errors_that_say_what_failed() {
    let Some(scratch) = common::scratch() else {
        return;
    };
    let bouncer = scratch.pgbouncer(&routes(None, &[]));
    let admin = bouncer.admin();
    assert!(
        admin
            .version()
            .await
            .expect("SHOW VERSION")
            .starts_with("PgBouncer 1.")
    );

    let err = admin.kill("nosuch").await.expect_err("unknown database");
    assert!(matches!(err, PoolerError::Rejected { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("refused KILL nosuch: no such database: nosuch"),
        "{text}"
    );

    let err = admin
        .pause(Some("app; SHUTDOWN"), CONNECT)
        .await
        .expect_err("bad name");
    assert!(matches!(err, PoolerError::InvalidSetting { .. }), "{err}");
    assert!(
        admin.version().await.is_ok(),
        "nothing was sent, pgbouncer still runs"
    );

    // The console still works after a refused command.
    admin.reload().await.expect("RELOAD after an error");

    let closed = raftgres_pooler::Admin::new(raftgres_pooler::AdminTarget::new(
        "127.0.0.1",
        common::free_port(),
        "postgres",
    ));
    let err = closed.reload().await.expect_err("nothing listens there");
    assert!(matches!(err, PoolerError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("admin_users"), "{err}");
}
