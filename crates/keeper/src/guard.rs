//! The keeper's guard: a second small process that kills the server when
//! the keeper cannot. The keeper owns the postmaster, whose parent-death
//! signal kills it with the keeper, but backends outlive their postmaster
//! (a CPU-bound statement notices nothing and commits at its end), and a
//! stopped (SIGSTOP) keeper cannot time its own deadline.
//!
//! The guard reads the keeper's arming on stdin, one line each: `arm
//! DEADLINE_NS` or `disarm`. It SIGKILLs every process of the server (found
//! in `/proc` by data directory and binary name, so a replaced binary is
//! still found) when an armed deadline passes, and keeps doing so while it
//! stays armed past it. End of input means the keeper died: it kills the
//! server whatever the arming, since a server nobody owns must not run, and
//! exits. It has no parent-death signal and its own process group, so what
//! kills the keeper does not kill it.

use crate::clock::mono_ns;
use std::io::BufRead;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long one fence keeps killing until no server process is left.
const FENCE_BOUND: Duration = Duration::from_secs(5);
/// While armed past the deadline, look for server processes this often.
const ENFORCE_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Armed {
    deadline_ns: Option<u64>,
    keeper_gone: bool,
}

pub(crate) fn parse(line: &str) -> Result<Option<u64>, String> {
    match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["disarm"] => Ok(None),
        ["arm", deadline] => deadline
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("bad deadline {deadline:?} in {line:?}")),
        _ => Err(format!("unknown guard command {line:?}")),
    }
}

/// Kills every process of the server until none is left (bounded); returns
/// how many were signalled.
pub fn fence(data_dir: &Path, exe: &Path) -> usize {
    let started = Instant::now();
    let mut killed = 0;
    loop {
        let round = raftgres_postgres::kill_server_processes(data_dir, exe);
        if round.is_empty() || started.elapsed() > FENCE_BOUND {
            return killed;
        }
        killed += round.len();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The guard process' main loop.
pub fn run(data_dir: &Path, exe: &Path) -> std::process::ExitCode {
    let shared = Arc::new((Mutex::new(Armed::default()), Condvar::new()));
    let reader = shared.clone();
    std::thread::spawn(move || {
        let (lock, wake) = &*reader;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match parse(&line) {
                Ok(deadline) => {
                    lock.lock().unwrap_or_else(|e| e.into_inner()).deadline_ns = deadline
                }
                Err(e) => tracing::error!(error = %e, "keeper guard: ignoring a bad command"),
            }
            wake.notify_all();
        }
        lock.lock().unwrap_or_else(|e| e.into_inner()).keeper_gone = true;
        wake.notify_all();
    });
    let (lock, wake) = &*shared;
    let mut armed = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if armed.keeper_gone {
            let killed = fence(data_dir, exe);
            if killed > 0 {
                tracing::warn!(data_dir = %data_dir.display(), killed, "keeper guard: the keeper died; killed its Postgres server");
            }
            return std::process::ExitCode::SUCCESS;
        }
        let now = mono_ns();
        match armed.deadline_ns {
            Some(deadline) if now >= deadline => {
                let killed = fence(data_dir, exe);
                if killed > 0 {
                    tracing::warn!(data_dir = %data_dir.display(), killed, "keeper guard: lease deadline passed unrenewed; killed the Postgres server");
                }
                armed = wake
                    .wait_timeout(armed, ENFORCE_EVERY)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            Some(deadline) => {
                armed = wake
                    .wait_timeout(armed, Duration::from_nanos(deadline - now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            None => armed = wake.wait(armed).unwrap_or_else(|e| e.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_rejects_bad_ones() {
        assert_eq!(parse("disarm"), Ok(None));
        assert_eq!(parse("arm 1000000000"), Ok(Some(1_000_000_000)));
        for bad in ["", "arm", "arm x", "arm -3", "arm 1 2", "fence now"] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
