//! Runs the operator's `postgresql.callbacks` as Patroni does: the command
//! line, then the event, the role and the scope as three more arguments.
//! Unlike Patroni, a callback is never killed because another one is due:
//! they run one after another, in the order of the events, so a virtual IP
//! moved by `on_stop` and then `on_role_change` is never left half-moved. A
//! callback still running after `callback_timeout` is killed with every
//! process of its group, so that one hung script cannot hold back the rest.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use raftgres_config::Callbacks;
use raftgres_ha::{CallbackEvent, CallbackRole};
use std::process::Stdio;
use std::time::Duration;
use tokio::sync::mpsc;

/// Events waiting behind a running callback; more means callbacks run far
/// longer than the events come, and the newest are dropped with a warning.
const QUEUE: usize = 16;

/// One callback to run: the words to execute and how long it may take.
struct Call {
    event: CallbackEvent,
    argv: Vec<String>,
    timeout: Duration,
}

/// The queue of callbacks of one agent, run by one task.
#[derive(Clone)]
pub struct CallbackRunner {
    member: String,
    scope: String,
    queue: mpsc::Sender<Call>,
}

impl CallbackRunner {
    /// Starts the task that runs the callbacks; it ends with the last
    /// clone of the runner.
    pub fn start(member: String, scope: String) -> CallbackRunner {
        let (queue, mut calls) = mpsc::channel::<Call>(QUEUE);
        let task_member = member.clone();
        tokio::spawn(async move {
            while let Some(call) = calls.recv().await {
                run(&task_member, call.event.as_str(), &call.argv, call.timeout).await;
            }
        });
        CallbackRunner {
            member,
            scope,
            queue,
        }
    }

    /// Queues the callback configured for `event`, if there is one.
    pub fn call(
        &self,
        callbacks: &Callbacks,
        timeout: Duration,
        event: CallbackEvent,
        role: CallbackRole,
    ) {
        let Some(command) = command_for(callbacks, event) else {
            return;
        };
        let mut argv = command.to_vec();
        argv.extend([event.as_str(), role.as_str(), &self.scope].map(str::to_owned));
        tracing::info!(member = %self.member, event = event.as_str(), role = role.as_str(), "calling back");
        if self
            .queue
            .try_send(Call {
                event,
                argv,
                timeout,
            })
            .is_err()
        {
            tracing::warn!(
                member = %self.member,
                event = event.as_str(),
                "callback dropped: {QUEUE} callbacks already wait behind one that is still running"
            );
        }
    }

    /// Runs a hook (`pre_promote`, `before_stop`) at once and waits for it,
    /// without arguments, as Patroni does; true when it exited 0 within
    /// `timeout`.
    pub async fn run_hook(&self, key: &str, argv: &[String], timeout: Duration) -> bool {
        tracing::info!(member = %self.member, hook = key, "running");
        run(&self.member, key, argv, timeout).await
    }
}

fn command_for(callbacks: &Callbacks, event: CallbackEvent) -> Option<&[String]> {
    match event {
        CallbackEvent::OnStart => callbacks.on_start.as_deref(),
        CallbackEvent::OnStop => callbacks.on_stop.as_deref(),
        CallbackEvent::OnRestart => callbacks.on_restart.as_deref(),
        CallbackEvent::OnReload => callbacks.on_reload.as_deref(),
        CallbackEvent::OnRoleChange => callbacks.on_role_change.as_deref(),
    }
}

/// Runs `argv` to its end or until `timeout`, logging how it ended under
/// `what` (the event or the hook's key); true when it exited 0.
async fn run(member: &str, what: &str, argv: &[String], timeout: Duration) -> bool {
    let command = argv.join(" ");
    let Some((program, args)) = argv.split_first() else {
        return false;
    };
    // A group of its own, so that a timeout kills what the script started too.
    let spawned = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!(member, what, %command, error = %e, "cannot run the script");
            return false;
        }
    };
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            tracing::info!(member, what, %command, "script finished");
            true
        }
        Ok(Ok(status)) => {
            tracing::warn!(member, what, %command, %status, "script failed");
            false
        }
        Ok(Err(e)) => {
            tracing::warn!(member, what, %command, error = %e, "cannot wait for the script");
            false
        }
        Err(_) => {
            if let Some(pid) = pid.and_then(|pid| i32::try_from(pid).ok()) {
                // ESRCH: the group ended between the timeout and the kill.
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = child.wait().await;
            tracing::warn!(
                member,
                what,
                %command,
                timeout_ms = timeout.as_millis() as u64,
                "script killed: still running after postgresql.callback_timeout_ms"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Instant;

    /// A callback that runs `script` in sh, with the appended arguments as
    /// `$1`, `$2` and `$3`.
    fn sh(script: &str) -> Vec<String> {
        ["/bin/sh", "-c", script, "callback"]
            .map(str::to_owned)
            .to_vec()
    }

    /// Calls back `calls` in order on one runner, each bounded by
    /// `timeout`, with the callbacks `scripts` writes for a file in a fresh
    /// directory; returns what the file holds once it holds `text`, and the
    /// directory.
    async fn written_by(
        scripts: impl FnOnce(&Path) -> Callbacks,
        timeout: Duration,
        calls: &[(CallbackEvent, CallbackRole)],
        text: &str,
    ) -> (String, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let callbacks = scripts(&out);
        let runner = CallbackRunner::start("node1".into(), "demo".into());
        for &(event, role) in calls {
            runner.call(&callbacks, timeout, event, role);
        }
        (until_contains(&out, text).await, dir)
    }

    async fn until_contains(path: &Path, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let written = std::fs::read_to_string(path).unwrap_or_default();
            if written.contains(text) {
                return written;
            }
            assert!(
                Instant::now() < deadline,
                "{} never held {text:?}; it holds {written:?}",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_callback_gets_the_event_the_role_and_the_scope() {
        let (written, _dir) = written_by(
            |out| Callbacks {
                on_role_change: Some(sh(&format!("echo \"$@\" >> {}", out.display()))),
                ..Callbacks::default()
            },
            Duration::from_secs(10),
            &[
                (CallbackEvent::OnStart, CallbackRole::Primary),
                (CallbackEvent::OnRoleChange, CallbackRole::Primary),
            ],
            "on_role_change primary demo\n",
        )
        .await;
        assert_eq!(
            written, "on_role_change primary demo\n",
            "only the configured event calls back"
        );
    }

    #[tokio::test]
    async fn callbacks_run_in_order_and_a_slow_one_is_not_cut_short() {
        let (written, _dir) = written_by(
            |out| {
                let out = out.display();
                Callbacks {
                    on_stop: Some(sh(&format!("sleep 0.5; echo \"$1\" >> {out}"))),
                    on_role_change: Some(sh(&format!("echo \"$1\" >> {out}"))),
                    ..Callbacks::default()
                }
            },
            Duration::from_secs(10),
            &[
                (CallbackEvent::OnStop, CallbackRole::Primary),
                (CallbackEvent::OnRoleChange, CallbackRole::Replica),
            ],
            "on_role_change",
        )
        .await;
        assert_eq!(written, "on_stop\non_role_change\n");
    }

    #[tokio::test]
    async fn a_callback_past_its_timeout_is_killed_with_what_it_started() {
        let (written, dir) = written_by(
            |out| Callbacks {
                on_stop: Some(sh(&format!(
                    "sleep 60 & echo $! > {}; wait; echo finished >> {}",
                    out.with_file_name("started").display(),
                    out.display()
                ))),
                on_start: Some(sh(&format!("echo next >> {}", out.display()))),
                ..Callbacks::default()
            },
            Duration::from_millis(300),
            &[
                (CallbackEvent::OnStop, CallbackRole::Primary),
                (CallbackEvent::OnStart, CallbackRole::Replica),
            ],
            "next",
        )
        .await;
        assert_eq!(written, "next\n", "the hung callback never finished");
        let sleeper: i32 = until_contains(&dir.path().join("started"), "\n")
            .await
            .trim()
            .parse()
            .expect("pid");
        // Killed processes stay zombies until reaped by init; gone or a
        // zombie both mean the kill reached the script's child.
        let state = std::fs::read_to_string(format!("/proc/{sleeper}/stat")).unwrap_or_default();
        let alive = state
            .rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'));
        assert!(!alive, "the callback's child still runs: {state}");
    }
}
