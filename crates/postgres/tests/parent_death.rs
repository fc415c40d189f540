//! The postmaster dies with the process that started it, even when that
//! process is SIGKILLed and runs no cleanup (brief, lease rule 6).
//!
//! The outer test runs this same test binary again, filtered to the helper
//! test below, which starts a postmaster through the library, reports its
//! PID and sleeps. The outer test SIGKILLs the helper and watches the
//! postmaster go.

mod common;

use common::{Scratch, is_alive, live_server_processes, proc_state};
use raftgres_postgres::{PgSettings, Postmaster, RunAs, initdb};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set only in the helper process: where to find its settings.
const HELPER_ENV: &str = "RAFTGRES_PG_TEST_PARENT_DEATH_HELPER";

/// What the helper needs, passed as `data_dir|port|socket_dir|log|pid_file`.
fn encode(s: &PgSettings, pid_file: &Path) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        s.data_dir.display(),
        s.port,
        s.socket_dir.display(),
        s.log_path().display(),
        pid_file.display()
    )
}

/// The helper: a no-op unless started by the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_starts_a_postmaster_and_waits() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [data_dir, port, socket_dir, log, pid_file] = parts[..] else {
        panic!("bad {HELPER_ENV}: {spec}");
    };
    let mut s = PgSettings::new(data_dir, port.parse().unwrap(), "orphan");
    s.socket_dir = socket_dir.into();
    s.log_file = Some(log.into());
    common::set_test_logins(&mut s);
    if nix::unistd::geteuid().is_root() {
        s.run_as = Some(RunAs::user("postgres").unwrap());
    }
    let mut pm = Postmaster::start(&s).await.unwrap();
    pm.wait_ready(common::READY).await.unwrap();
    let tmp = PathBuf::from(format!("{pid_file}.tmp"));
    std::fs::write(&tmp, pm.pid().to_string()).unwrap();
    std::fs::rename(&tmp, pid_file).unwrap();
    // Outlive any reasonable test; the outer test kills us long before.
    tokio::time::sleep(Duration::from_secs(120)).await;
    // Never reached in the test; dropping would fence it anyway.
    std::mem::forget(pm);
}

/// Kills what a failed run could leave behind.
struct Cleanup<'a> {
    helper: Child,
    data_dir: &'a Path,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.helper.kill();
        let _ = self.helper.wait();
        for pid in live_server_processes(self.data_dir) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmaster_dies_when_its_parent_is_killed() {
    if std::env::var_os(HELPER_ENV).is_some() {
        return;
    }
    let Some(run_as) = common::run_as() else {
        return;
    };
    let scratch = Scratch::new(run_as);
    let settings = scratch.settings("orphan");
    initdb(&settings).await.unwrap();
    let pid_file = scratch.path().join("postmaster-pid");
    let helper_log = scratch.path().join("helper.log");
    let output = std::fs::File::create(&helper_log).unwrap();

    let helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_starts_a_postmaster_and_waits",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, encode(&settings, &pid_file))
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .unwrap();
    let mut cleanup = Cleanup {
        helper,
        data_dir: &settings.data_dir,
    };

    let deadline = Instant::now() + Duration::from_secs(60);
    let postmaster: u32 = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            break text.trim().parse().unwrap();
        }
        if let Some(status) = cleanup.helper.try_wait().unwrap() {
            let log = std::fs::read_to_string(&helper_log).unwrap_or_default();
            panic!("the helper exited ({status}) before starting a postmaster:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "the helper did not start a postmaster"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(is_alive(postmaster));
    // A connected client, to see what becomes of the backends.
    let client = common::connect(&settings).await;
    let backend: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    cleanup.helper.kill().unwrap();
    let killed = Instant::now();
    cleanup.helper.wait().unwrap();

    // Gone or a zombie awaiting its new parent: either way it serves nothing.
    while is_alive(postmaster) {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "postmaster {postmaster} still {:?} after its parent died",
            proc_state(postmaster)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let postmaster_gone = killed.elapsed();
    // Backends are not signalled by the kernel; they exit when they notice
    // the postmaster died.
    while !live_server_processes(&settings.data_dir).is_empty() || is_alive(backend as u32) {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "server processes {:?} outlived the postmaster",
            live_server_processes(&settings.data_dir)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_gone = killed.elapsed();
    eprintln!(
        "after SIGKILL of the parent: postmaster gone in {postmaster_gone:?}, every backend in {all_gone:?}"
    );
    assert!(client.query_one("SELECT 1", &[]).await.is_err());
}
