//! pgbouncer 1.18, with TLS to Postgres configured, recycles every server
//! connection on each RELOAD, and drops a server login in flight with
//! "connect string changed". It counts that as a failed login: the pool
//! dials nobody for `server_login_retry`. The agent RELOADs whenever a
//! replica comes or goes and at each failover, so with pgbouncer's default
//! (15 s) clients of the write database waited 15 s after some failovers
//! (the fault matrix found it: about one partition run in six). The shipped
//! template (`deploy/pgbouncer/pgbouncer.ini.j2`) keeps that wait short;
//! this runs the installed pgbouncer on it and measures the wait.
//!
//! The server is a listener that accepts and never answers, so a login
//! stays in flight for as long as the test wants.

use raftgres_certs::Authority;
use raftgres_lab::{PGBOUNCER_ADMIN_USER, PgAuth, StandalonePgbouncer};
use raftgres_pooler::{Admin, AdminTarget, Routes, Target, write_databases_file};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WRITE_DB: &str = "postgres";
/// Far below pgbouncer's default `server_login_retry` of 15 s, and above
/// what a pool whose login was cut short should wait to dial again.
const REDIAL_BOUND: Duration = Duration::from_secs(5);

/// Accepts connections on loopback and holds them open without a word;
/// reports when each arrived.
fn silent_server() -> (u16, mpsc::Receiver<Instant>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen on loopback");
    let port = listener.local_addr().expect("address").port();
    let (arrived, arrivals) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            held.push(stream);
            if arrived.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    (port, arrivals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_cuts_a_login_short_does_not_shut_the_pool() {
    if raftgres_lab::pgbouncer_binary().is_none() {
        eprintln!("pgbouncer is not installed; skipping (scripts/test-all installs it)");
        return;
    }
    let scratch = tempfile::Builder::new()
        .prefix("raftgres-pgbouncer-reload-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let dir = scratch.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // Any CA will do: the server never gets as far as a certificate. What
    // matters is that TLS to Postgres is configured, as the lab and the
    // Ansible role configure it.
    let ca = Authority::open_or_create(&dir.join("tls")).expect("a CA");
    std::fs::set_permissions(dir.join("tls"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod tls");
    let auth = PgAuth {
        superuser: "client-secret".into(),
        replication: "unused".into(),
        pgbouncer_admin: "console-secret".into(),
    };
    let pgbouncer = StandalonePgbouncer::start(dir, "reload", None, &auth, Some(&ca.ca.cert))
        .expect("start pgbouncer on the shipped template");

    let (port, arrivals) = silent_server();
    let routes = Routes {
        write: Some(Target {
            host: "127.0.0.1".into(),
            port,
        }),
        read: Vec::new(),
        write_db: WRITE_DB.into(),
        read_db: None,
        dbname: WRITE_DB.into(),
    };
    write_databases_file(&pgbouncer.databases_file, &routes).expect("point at the server");
    let mut target = AdminTarget::new("127.0.0.1", pgbouncer.port, PGBOUNCER_ADMIN_USER);
    target.password = Some(auth.pgbouncer_admin.clone());
    let admin = Admin::new(target);
    admin.reload().await.expect("RELOAD");
    admin.enable(WRITE_DB).await.expect("ENABLE");

    // A client's login makes pgbouncer dial the server, which never answers.
    let dsn = pgbouncer.dsn(WRITE_DB);
    let client =
        tokio::spawn(async move { tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await });
    arrivals
        .recv_timeout(REDIAL_BOUND)
        .expect("pgbouncer dials the server for the client's login");

    // The file is unchanged; with server TLS the RELOAD still recycles the
    // pool, and cuts the login in flight short.
    let reloaded = Instant::now();
    admin.reload().await.expect("RELOAD");
    let redialed = arrivals.recv_timeout(Duration::from_secs(30));
    client.abort();
    let log = std::fs::read_to_string(&pgbouncer.log).unwrap_or_default();
    assert!(
        log.contains("connect string changed"),
        "the RELOAD did not cut the login short, so this test shows nothing; pgbouncer's log:\n{log}"
    );
    let waited = redialed
        .map(|at| at - reloaded)
        .unwrap_or(Duration::from_secs(30));
    assert!(
        waited < REDIAL_BOUND,
        "pgbouncer dialed no server for {waited:?} after a RELOAD cut a login short: \
         server_login_retry in deploy/pgbouncer/pgbouncer.ini.j2 is too long, and every \
         client of the write database waits that long. pgbouncer's log:\n{log}"
    );
}
