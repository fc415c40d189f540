//! The fence that works when the agent cannot: a small process, the agent's
//! child, that SIGKILLs every process of the local Postgres server once the
//! lease deadline it was last fed has passed. A stopped (SIGSTOP) or wedged
//! agent stops feeding it, so Postgres stops accepting writes at the
//! holder's deadline, before any other member may take the lease.
//!
//! It is started as `raftgres-agent watchdog --data-dir D --exe E` and
//! fences the processes running `E` from `D` (a server's processes are
//! found by working directory and binary: backends leave the postmaster's
//! process group). Commands on stdin, one line each: `arm DEADLINE_NS` (a
//! writable primary, valid until that CLOCK_MONOTONIC instant) and `disarm`.
//! End of input means the agent died: the watchdog fences if armed, then exits.

use crate::clock::{mono_now, nanos};
use nix::sys::signal::Signal;
use raftgres_ha::MonoInstant;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long one fence keeps killing until no server process is left.
const FENCE_BOUND: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Armed {
    deadline: Option<MonoInstant>,
    agent_gone: bool,
}

fn parse(line: &str) -> Result<Option<MonoInstant>, String> {
    match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["disarm"] => Ok(None),
        ["arm", deadline] => deadline
            .parse::<u64>()
            .map(|ns| Some(MonoInstant(Duration::from_nanos(ns))))
            .map_err(|_| format!("bad deadline {deadline:?} in {line:?}")),
        _ => Err(format!("unknown watchdog command {line:?}")),
    }
}

fn fence(data_dir: &Path, exe: &Path) {
    let started = Instant::now();
    let mut killed = 0;
    loop {
        let round = raftgres_postgres::kill_server_processes(data_dir, exe);
        if round.is_empty() || started.elapsed() > FENCE_BOUND {
            break;
        }
        killed += round.len();
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::warn!(data_dir = %data_dir.display(), killed, "watchdog: lease deadline passed unfed; killed the Postgres server");
}

/// The watchdog process' main loop.
pub fn run(data_dir: &Path, exe: &Path) -> std::process::ExitCode {
    let shared = Arc::new((Mutex::new(Armed::default()), Condvar::new()));
    let reader = shared.clone();
    std::thread::spawn(move || {
        let (lock, wake) = &*reader;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match parse(&line) {
                Ok(deadline) => lock.lock().unwrap_or_else(|e| e.into_inner()).deadline = deadline,
                Err(e) => tracing::error!(error = %e, "watchdog: ignoring a bad command"),
            }
            wake.notify_all();
        }
        lock.lock().unwrap_or_else(|e| e.into_inner()).agent_gone = true;
        wake.notify_all();
    });
    let (lock, wake) = &*shared;
    let mut armed = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = mono_now();
        match armed.deadline {
            Some(deadline) if armed.agent_gone || now >= deadline => {
                fence(data_dir, exe);
                armed.deadline = None;
            }
            _ if armed.agent_gone => return std::process::ExitCode::SUCCESS,
            Some(deadline) => {
                armed = wake
                    .wait_timeout(armed, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            None => armed = wake.wait(armed).unwrap_or_else(|e| e.into_inner()),
        }
    }
}

/// The agent's end: starts the watchdog and feeds it.
pub struct Watchdog {
    _child: Child,
    stdin: ChildStdin,
    last: Option<MonoInstant>,
}

impl Watchdog {
    /// Must be called from the main thread: the parent-death signal follows
    /// the thread that forked.
    pub fn start(data_dir: &Path, exe: &Path) -> std::io::Result<Watchdog> {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("watchdog")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--exe")
            .arg(exe)
            .stdin(Stdio::piped())
            // Its own process group: a signal meant for the agent's group must
            // not stop the fence too.
            .process_group(0);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("watchdog has no stdin"))?;
        Ok(Watchdog {
            _child: child,
            stdin,
            last: None,
        })
    }

    /// Arms (or re-arms with a new deadline) the fence of a writable primary.
    pub fn arm(&mut self, deadline: MonoInstant) -> std::io::Result<()> {
        if self.last == Some(deadline) {
            return Ok(());
        }
        writeln!(self.stdin, "arm {}", nanos(deadline))?;
        self.last = Some(deadline);
        Ok(())
    }

    pub fn disarm(&mut self) -> std::io::Result<()> {
        if self.last.is_none() {
            return Ok(());
        }
        writeln!(self.stdin, "disarm")?;
        self.last = None;
        Ok(())
    }
}

/// The arguments of `raftgres-agent watchdog`.
#[derive(clap::Args)]
pub struct WatchdogArgs {
    /// The Postgres data directory whose server to fence.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The `postgres` binary the server runs.
    #[arg(long)]
    pub exe: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_rejects_bad_ones() {
        assert_eq!(parse("disarm"), Ok(None));
        assert_eq!(
            parse("arm 1000000000"),
            Ok(Some(MonoInstant(Duration::from_secs(1))))
        );
        for bad in ["", "arm", "arm x", "arm -3", "arm 1 2", "fence now"] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
