//! systemd's service notifications (`Type=notify`) and its service watchdog
//! (`WatchdogSec=`, here "sd watchdog"). Not the fencing watchdog of
//! `watchdog.rs`: that one stops Postgres when the agent stops feeding it,
//! for safety; this one lets systemd restart an agent whose loops wedged,
//! for liveness. Without `NOTIFY_SOCKET` (the lab, the tests, a shell)
//! every call here does nothing.

use crate::clock::{mono_now, nanos};
use raftgres_api::{NodeHealth, Role};
use sd_notify::NotifyState;
use std::ffi::OsString;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often a loop that waits or runs a long action still says it lives:
/// well under any sd watchdog interval worth configuring (a few seconds).
const BEAT_EVERY: Duration = Duration::from_millis(250);
/// How often STATUS= is refreshed when systemd asks for no watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// Where notifications go, taken from the environment once at start.
pub struct SdNotifier {
    socket: Option<OsString>,
    /// `WATCHDOG_USEC`, when meant for this process (`WATCHDOG_PID`).
    watchdog: Option<Duration>,
}

impl SdNotifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, then removes
    /// them from the environment: the postmaster (Debian's is built with
    /// systemd support) and the fencing watchdog would inherit them, and
    /// their own `READY=1`/`STOPPING=1` must never reach systemd as ours.
    ///
    /// # Safety
    /// No other thread may run yet (it would race `remove_var`).
    pub unsafe fn take_from_env() -> SdNotifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty());
        let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
        // SAFETY: the caller guarantees a single thread.
        unsafe {
            std::env::remove_var("NOTIFY_SOCKET");
            std::env::remove_var("WATCHDOG_USEC");
            std::env::remove_var("WATCHDOG_PID");
        }
        SdNotifier { socket, watchdog }
    }

    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.socket.is_some())
    }

    /// Sends one datagram. The crate's own `notify` reads `NOTIFY_SOCKET`
    /// at every call, which `take_from_env` removed; so it only formats.
    pub fn send(&self, states: &[NotifyState<'_>]) {
        let Some(socket) = &self.socket else { return };
        let message: String = states.iter().map(|s| format!("{s}\n")).collect();
        if let Err(e) = send_to(socket, message.as_bytes()) {
            tracing::warn!(socket = %socket.to_string_lossy(), error = %e, "cannot notify systemd");
        }
    }
}

fn send_to(socket: &OsString, message: &[u8]) -> std::io::Result<()> {
    let datagram = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    // `@name` is an abstract socket, as sd_notify(3) defines.
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            datagram.send_to_addr(message, &address)?
        }
        None => datagram.send_to(message, std::path::Path::new(socket))?,
    };
    if sent == message.len() {
        Ok(())
    } else {
        Err(std::io::Error::other("the notification was cut short"))
    }
}

/// The last instant (CLOCK_MONOTONIC) a loop was seen making progress.
#[derive(Clone)]
pub struct Progress {
    last_ns: Arc<AtomicU64>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            last_ns: Arc::new(AtomicU64::new(nanos(mono_now()))),
        }
    }

    pub fn beat(&self) {
        self.last_ns.store(nanos(mono_now()), Ordering::Relaxed);
    }

    fn last(&self) -> Duration {
        Duration::from_nanos(self.last_ns.load(Ordering::Relaxed))
    }

    /// Runs `work` and beats while it is driven: a loop waiting for its next
    /// round or running a long action (a clone may take an hour) is alive
    /// as long as its task is still polled. A blocked thread, a deadlock or
    /// a loop that never comes back round stops the beats.
    pub async fn during<F: Future>(&self, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        let mut beats = tokio::time::interval(BEAT_EVERY);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = beats.tick() => self.beat(),
            }
        }
    }
}

/// How long the quietest of `loops` has gone without progress at `now`.
pub fn quiet(loops: &[Progress], now: Duration) -> Duration {
    loops
        .iter()
        .map(|progress| now.saturating_sub(progress.last()))
        .max()
        .unwrap_or_default()
}

/// The first loop not seen within `limit` of `now`, and for how long.
fn stalled(
    loops: &[(&'static str, Progress)],
    now: Duration,
    limit: Duration,
) -> Option<(&'static str, Duration)> {
    loops.iter().find_map(|(name, progress)| {
        let quiet = now.saturating_sub(progress.last());
        (quiet >= limit).then_some((*name, quiet))
    })
}

/// The `STATUS=` line `systemctl status` shows.
pub fn status_line(health: &NodeHealth) -> String {
    match health.role {
        Role::Primary => "primary: holds the lease, Postgres takes writes".into(),
        Role::Replica if health.streaming => "replica: streaming from the primary".into(),
        Role::Replica => "replica: not streaming".into(),
        Role::Witness => "witness: votes in Raft, runs no Postgres".into(),
        _ if health.postgres_running => "Postgres running; role not settled yet".into(),
        _ => "Postgres not running yet".into(),
    }
}

/// Sends `WATCHDOG=1` every half interval while every loop in `loops` made
/// progress within the interval, and a fresh `STATUS=` when it changes.
/// When a loop stalls the pings stop, and systemd restarts the agent within
/// one more interval (a lease holder's Postgres is fenced meanwhile by the
/// fencing watchdog, whose deadline nobody renews).
pub async fn watch_loops(
    notifier: Arc<SdNotifier>,
    loops: Vec<(&'static str, Progress)>,
    status: impl Fn() -> String + Send + 'static,
) {
    let interval = notifier.watchdog_interval();
    let mut ticks = tokio::time::interval(interval.map_or(STATUS_EVERY, |i| i / 2));
    let mut shown = String::new();
    let mut was_stalled = false;
    loop {
        ticks.tick().await;
        let now = mono_now().0;
        let stall = interval.and_then(|limit| stalled(&loops, now, limit));
        let line = match stall {
            Some((name, quiet)) => {
                if !was_stalled {
                    tracing::error!(
                        stalled = name,
                        quiet_ms = u64::try_from(quiet.as_millis()).unwrap_or(u64::MAX),
                        "a loop made no progress within the systemd watchdog interval; no longer telling systemd the agent is alive, so it restarts the agent"
                    );
                }
                format!(
                    "{name} loop stalled for {}s; systemd will restart the agent",
                    quiet.as_secs()
                )
            }
            None => status(),
        };
        was_stalled = stall.is_some();
        let mut states = Vec::with_capacity(2);
        if interval.is_some() && stall.is_none() {
            states.push(NotifyState::Watchdog);
        }
        if line != shown {
            states.push(NotifyState::Status(&line));
        }
        if !states.is_empty() {
            notifier.send(&states);
        }
        shown = line;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress_at(last: Duration) -> Progress {
        let p = Progress::new();
        p.last_ns.store(last.as_nanos() as u64, Ordering::Relaxed);
        p
    }

    #[test]
    fn a_loop_quiet_for_the_interval_is_stalled() {
        let s = Duration::from_secs;
        let loops = vec![
            ("lease", progress_at(s(100))),
            ("postgres", progress_at(s(95))),
        ];
        assert_eq!(stalled(&loops, s(104), s(10)), None);
        assert_eq!(stalled(&loops, s(105), s(10)), Some(("postgres", s(10))));
        assert_eq!(stalled(&loops, s(111), s(10)), Some(("lease", s(11))));
        assert_eq!(stalled(&[], s(1000), s(10)), None);
    }

    #[test]
    fn status_lines_name_the_role() {
        let mut health = NodeHealth::default();
        assert_eq!(status_line(&health), "Postgres not running yet");
        health.role = Role::Primary;
        assert!(status_line(&health).starts_with("primary"));
        health.role = Role::Replica;
        health.streaming = true;
        assert!(status_line(&health).contains("streaming from"));
        health.role = Role::Witness;
        assert!(status_line(&health).starts_with("witness"));
    }

    #[tokio::test]
    async fn during_beats_while_the_work_runs() {
        let progress = progress_at(Duration::ZERO);
        progress
            .during(tokio::time::sleep(Duration::from_millis(300)))
            .await;
        assert!(mono_now().0 - progress.last() < Duration::from_millis(200));
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        let notifier = SdNotifier {
            socket: None,
            watchdog: Some(Duration::from_secs(10)),
        };
        assert_eq!(notifier.watchdog_interval(), None);
        notifier.send(&[NotifyState::Ready]);
    }
}
