//! One long-lived thread that forks every postmaster.
//!
//! The postmaster gets `PR_SET_PDEATHSIG(SIGKILL)`, and Linux fires that
//! signal when the *thread* that forked it exits, not the process. Tokio's
//! worker and blocking-pool threads come and go (idle blocking threads exit
//! after ten seconds), so forking from one of them would kill a healthy
//! postmaster at a random moment. This thread is started once and never
//! returns: its channel's sender lives in a static.

use std::io;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::sync::mpsc;
use tokio::sync::oneshot;

struct Request {
    command: Command,
    reply: oneshot::Sender<io::Result<Child>>,
}

static SPAWNER: Mutex<Option<mpsc::Sender<Request>>> = Mutex::new(None);

fn sender() -> io::Result<mpsc::Sender<Request>> {
    // A poisoned lock only means another caller panicked while holding it;
    // the sender inside is still good.
    let mut slot = SPAWNER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(sender) = slot.as_ref() {
        return Ok(sender.clone());
    }
    let (sender, requests) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("raftgres-postmaster-spawner".into())
        .spawn(move || serve(requests))?;
    *slot = Some(sender.clone());
    Ok(sender)
}

fn serve(requests: mpsc::Receiver<Request>) {
    // Ends only if every sender is gone, and the static keeps one forever.
    while let Ok(Request { mut command, reply }) = requests.recv() {
        if let Err(Ok(mut orphan)) = reply.send(command.spawn()) {
            // The caller stopped waiting; nobody would ever stop or reap
            // this postmaster, so it must not live.
            tracing::warn!(
                pid = orphan.id(),
                "caller gave up on a starting postmaster; killing it"
            );
            if let Ok(pid) = i32::try_from(orphan.id()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = orphan.wait();
        }
    }
}

/// Spawns `command` from the spawner thread.
pub(crate) async fn spawn(command: Command) -> io::Result<Child> {
    let (reply, answer) = oneshot::channel();
    sender()?
        .send(Request { command, reply })
        .map_err(|_| io::Error::other("the postmaster spawner thread is gone"))?;
    answer
        .await
        .map_err(|_| io::Error::other("the postmaster spawner thread dropped the request"))?
}
