//! Pooler-only mode on a real lab: `raftgresctl pooler` keeps a pgbouncer of
//! an "application host" (no Postgres beside it; here a pgbouncer of its own
//! outside the lab, from the same template) pointed at the primary, through
//! the members' REST API. `--once` points it at the leader and exits 0; the
//! loop follows an unplanned failover, and SIGTERM ends it with exit 0;
//! with no member reachable `--once` fences pgbouncer and exits 3.

use raftgres_lab::StandalonePgbouncer;
use raftgres_tests::{
    count_rows, ctl_bin, eventually, execute, lab_dir, members_except, serial_lab, writable,
};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const APP_WRITE_DB: &str = "postgres";
const APP_READ_DB: &str = "postgres_ro";

/// `raftgresctl --lab LAB pooler ...` for the app pgbouncer.
fn pooler_command(lab: &Path, pgbouncer: &StandalonePgbouncer, once: bool) -> Command {
    let mut command = Command::new(ctl_bin());
    command.arg("--lab").arg(lab);
    pooler_args(&mut command, pgbouncer, once);
    command
}

fn pooler_args(command: &mut Command, pgbouncer: &StandalonePgbouncer, once: bool) {
    command
        .arg("pooler")
        .arg("--databases-file")
        .arg(&pgbouncer.databases_file)
        .arg("--admin")
        .arg(format!("127.0.0.1:{}", pgbouncer.port))
        .arg("--admin-user")
        .arg(raftgres_lab::PGBOUNCER_ADMIN_USER)
        .env(
            "RAFTGRESCTL_PGBOUNCER_PASSWORD",
            pgbouncer.auth.pgbouncer_admin.as_str(),
        )
        .arg("--read-db")
        .arg(APP_READ_DB)
        .arg("--interval-ms")
        .arg("200")
        .stdin(Stdio::null());
    if once {
        command.arg("--once");
    }
}

/// The looping pooler; killed by its PID if the test fails before its
/// SIGTERM.
struct Pooler {
    child: Option<Child>,
}

impl Drop for Pooler {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn show(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// Whether a new connection through `through` writes on a primary.
async fn writes(through: &str, sql: &str) -> bool {
    raftgres_lab::pg_query_bool(through, "SELECT NOT pg_is_in_recovery()").await == Ok(true)
        && execute(through, sql).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_host_pgbouncer_follows_the_primary_through_the_rest_api() {
    let (dir, mut lab, old) = serial_lab(3, false).await;
    let app_dir = lab_dir();
    let auth = lab.pg_auth().expect("the lab's passwords").clone();
    let ca = lab.description.tls.as_ref().map(|t| t.ca_file.clone());
    let mut pgbouncer =
        StandalonePgbouncer::start(app_dir.path(), "app", None, &auth, ca.as_deref())
            .expect("start the application host's pgbouncer (is pgbouncer installed?)");
    let through = pgbouncer.dsn(APP_WRITE_DB);

    // --once: one round; the lab's holder may take a moment to be reported
    // running, which is exit 3, so only that is retried.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = pooler_command(dir.path(), &pgbouncer, true)
            .output()
            .expect("run raftgresctl pooler --once");
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => break,
            Some(3) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            code => panic!(
                "raftgresctl pooler --once exited {code:?}: {stderr}\npgbouncer log:\n{}",
                show(&pgbouncer.log)
            ),
        }
    }
    execute(
        &through,
        "CREATE TABLE app_host (via text); INSERT INTO app_host VALUES ('once')",
    )
    .await
    .unwrap_or_else(|e| panic!("a write through the app pgbouncer after --once: {e}"));
    assert_eq!(
        count_rows(&lab, &old, "app_host WHERE via = 'once'").await,
        Ok(1),
        "the write through the app pgbouncer is on the primary {old}"
    );

    // The loop, in the background.
    let log_path = app_dir.path().join("pooler.log");
    let log = std::fs::File::create(&log_path).expect("pooler log");
    let mut pooler = Pooler {
        child: Some(
            pooler_command(dir.path(), &pgbouncer, false)
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start raftgresctl pooler"),
        ),
    };
    // The loop fences first; only its own repoint counts, not --once's.
    eventually(
        Duration::from_secs(20),
        "the looping pooler points the app pgbouncer at the leader",
        || async { show(&log_path).contains("now reaches leader").then_some(()) },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "a write through the app pgbouncer",
        || async {
            writes(&through, "INSERT INTO app_host VALUES ('loop')")
                .await
                .then_some(())
        },
    )
    .await;

    lab.kill(&old).expect("SIGKILL the primary's agent");
    let killed = Instant::now();
    let survivors = members_except(&lab, &[&old]);
    eventually(
        Duration::from_secs(40),
        "a new connection through the app pgbouncer writes on the new primary",
        || async {
            let sql = "INSERT INTO app_host VALUES ('after failover')";
            if !writes(&through, sql).await {
                return None;
            }
            let mut on = Vec::new();
            for name in &survivors {
                if count_rows(&lab, name, "app_host WHERE via = 'after failover'")
                    .await
                    .is_ok_and(|n| n > 0)
                    && writable(&lab).await.contains(name)
                {
                    on.push(name.clone());
                }
            }
            (!on.is_empty()).then_some(())
        },
    )
    .await;
    println!(
        "first write through the app pgbouncer on the new primary {:?} after the kill",
        killed.elapsed()
    );

    let mut child = pooler.child.take().expect("the pooler runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM the pooler");
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait for the pooler") {
            break exit;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the pooler did not stop within 10s of SIGTERM; its log:\n{}",
                show(&log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let pooler_log = show(&log_path);
    println!("pooler log:\n{pooler_log}");
    assert_eq!(exit.code(), Some(0), "{pooler_log}");
    assert!(pooler_log.contains("fenced at start"), "{pooler_log}");
    assert!(pooler_log.contains("now reaches leader"), "{pooler_log}");
    assert!(
        pooler_log.contains("\"postgres\" fenced, pointed at no server"),
        "the write database was fenced while there was no primary: {pooler_log}"
    );

    // No member reachable: --once fences and says so with exit 3.
    let mut unreachable = Command::new(ctl_bin());
    unreachable.arg("--url").arg("http://127.0.0.1:1");
    pooler_args(&mut unreachable, &pgbouncer, true);
    let out = unreachable.output().expect("run raftgresctl pooler --once");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("is fenced"), "{stderr}");
    let refused = execute(&through, "INSERT INTO app_host VALUES ('fenced')").await;
    assert!(
        refused.is_err(),
        "a write through the fenced app pgbouncer went through"
    );
    pgbouncer.stop(Duration::from_secs(5));
}
