//! The keeper's guard as a real process: it kills the server's processes
//! once the deadline passes unrenewed (and any that appear while it stays
//! armed past it), or when the keeper's end of the pipe closes, armed or
//! not; it never kills anything outside its directory, nor after a disarm.
//! A `sleep` started from a directory stands in for a Postgres server there.

use raftgres_tests::agent_bin;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn mono_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

fn sleep_exe() -> PathBuf {
    std::fs::canonicalize("/bin/sleep").expect("sleep binary")
}

fn victim(dir: &Path) -> Child {
    Command::new(sleep_exe())
        .arg("60")
        .current_dir(dir)
        .spawn()
        .expect("sleep")
}

fn watchdog(dir: &Path) -> Child {
    Command::new(agent_bin())
        .arg("keeper-guard")
        .arg("--data-dir")
        .arg(dir)
        .arg("--exe")
        .arg(sleep_exe())
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("raftgres-agent keeper-guard")
}

fn feed(dog: &mut Child, line: &str) {
    writeln!(dog.stdin.as_mut().expect("stdin"), "{line}").expect("feed");
}

/// Arms the guard with a deadline `after` from now.
fn arm(dog: &mut Child, after: Duration) {
    let deadline = mono_ns() + u64::try_from(after.as_nanos()).expect("a short deadline");
    feed(dog, &format!("arm {deadline}"));
}

/// A directory with a server (a victim) running from it and a guard
/// started on it, not yet armed.
fn guarded_server() -> (tempfile::TempDir, Child, Child) {
    let dir = tempfile::tempdir().expect("dir");
    let server = victim(dir.path());
    let dog = watchdog(dir.path());
    (dir, server, dog)
}

/// Whether the victim exits (is killed) within `within`.
fn dies_within(victim: &mut Child, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if victim.try_wait().expect("try_wait").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn cleanup(mut victims: Vec<Child>, mut dog: Child) {
    for v in &mut victims {
        let _ = v.kill();
        let _ = v.wait();
    }
    drop(dog.stdin.take());
    let _ = dog.kill();
    let _ = dog.wait();
}

#[test]
fn an_unfed_deadline_kills_the_server_and_only_it() {
    let (_dir, mut v, mut dog) = guarded_server();
    let elsewhere = tempfile::tempdir().expect("dir");
    let mut bystander = victim(elsewhere.path());
    arm(&mut dog, Duration::from_millis(300));
    assert!(
        !dies_within(&mut v, Duration::from_millis(100)),
        "killed before its deadline"
    );
    assert!(
        dies_within(&mut v, Duration::from_secs(5)),
        "not killed after its deadline"
    );
    assert!(
        !dies_within(&mut bystander, Duration::from_millis(300)),
        "a process in another directory was killed"
    );
    cleanup(vec![v, bystander], dog);
}

#[test]
fn feeding_a_later_deadline_postpones_and_disarm_cancels() {
    let (_dir, mut v, mut dog) = guarded_server();
    // The superseded deadlines leave room for a slow start of the watchdog
    // on a loaded machine: a deadline that passes before the watchdog reads
    // its replacement is rightly fenced.
    arm(&mut dog, Duration::from_millis(1500));
    arm(&mut dog, Duration::from_millis(60_000));
    assert!(
        !dies_within(&mut v, Duration::from_millis(2_500)),
        "a later deadline was ignored"
    );
    arm(&mut dog, Duration::from_millis(1500));
    feed(&mut dog, "disarm");
    assert!(
        !dies_within(&mut v, Duration::from_millis(2_500)),
        "disarm was ignored"
    );
    cleanup(vec![v], dog);
}

#[test]
fn the_keeper_dying_kills_the_server_even_disarmed() {
    let (_dir, mut v, mut dog) = guarded_server();
    feed(&mut dog, "disarm");
    drop(dog.stdin.take());
    assert!(
        dies_within(&mut v, Duration::from_secs(5)),
        "the keeper's end closed and the server lived on"
    );
    assert!(dog.wait().expect("guard exit").success());
    cleanup(vec![v], dog);
}

#[test]
fn past_the_deadline_it_stays_armed_and_kills_what_appears() {
    let (dir, mut first, mut dog) = guarded_server();
    arm(&mut dog, Duration::from_millis(200));
    assert!(
        dies_within(&mut first, Duration::from_secs(5)),
        "not killed after its deadline"
    );
    // A server started again without a new lease must not live either.
    let mut second = victim(dir.path());
    assert!(
        dies_within(&mut second, Duration::from_secs(5)),
        "the guard disarmed itself after firing"
    );
    cleanup(vec![first, second], dog);
}

#[test]
fn a_replaced_binary_is_still_found() {
    let dir = tempfile::tempdir().expect("dir");
    let bin = tempfile::tempdir().expect("bin dir");
    let exe = bin.path().join("postgres");
    std::fs::copy(sleep_exe(), &exe).expect("copy sleep");
    let mut v = spawn_fresh_copy(&exe, dir.path());
    // A package upgrade: the binary under the running server is replaced,
    // so /proc shows the old one as "(deleted)".
    std::fs::remove_file(&exe).expect("remove the binary");
    std::fs::copy(sleep_exe(), &exe).expect("install the new binary");
    let mut dog = Command::new(agent_bin())
        .arg("keeper-guard")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--exe")
        .arg(&exe)
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("raftgres-agent keeper-guard");
    arm(&mut dog, Duration::from_millis(100));
    assert!(
        dies_within(&mut v, Duration::from_secs(5)),
        "a server whose binary was replaced survived the fence"
    );
    cleanup(vec![v], dog);
}

/// Runs a binary just written. Another test thread forking while the copy's
/// file was open for writing holds it open in its child for a moment, and
/// exec then fails with "Text file busy": retried, bounded.
fn spawn_fresh_copy(exe: &Path, dir: &Path) -> Child {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Command::new(exe).arg("60").current_dir(dir).spawn() {
            Ok(child) => return child,
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the copied binary: {e}"),
        }
    }
}
