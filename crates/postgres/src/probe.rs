//! The agent's repeated look at its own server, several times a second.
//!
//! A new connection per look proved that the postmaster still accepts
//! connections, but each one made the server fork, authenticate and set up a
//! backend: about 6 ms of the server's CPU, so 4 % of a core per member at
//! the default `loop_wait`, twice the agent's own cost at rest. So the
//! queries go over one kept session, and what the new connection proved is
//! proved another way: a postmaster stopped by a signal (SIGSTOP, the hang
//! the fault tests use) is seen in `/proc` at every look, and every
//! [`REOPEN_EVERY`] the session is replaced by a new one, which catches any
//! other way of no longer accepting connections, and lets a smart shutdown
//! (which waits for every client) finish.

use crate::control::{Control, PgStatus, StatusQueries, read_status};
use crate::error::{PgError, Result};
use crate::procfs;
use crate::session::Session;
use crate::settings::PgSettings;
use std::time::{Duration, Instant};

/// How long one kept session serves before a new connection replaces it.
pub const REOPEN_EVERY: Duration = Duration::from_secs(5);

/// Status reads of the local server over a kept session.
pub struct Probe {
    control: Control,
    kept: Option<Kept>,
}

struct Kept {
    session: Session,
    queries: StatusQueries,
    opened: Instant,
}

impl Probe {
    pub fn new(settings: &PgSettings) -> Probe {
        Probe {
            control: Control::new(settings),
            kept: None,
        }
    }

    /// Reads the server's role, position and replication peers, as
    /// [`Control::status`] does. `postmaster` is the running postmaster's
    /// PID when the caller knows it: a stopped one is an error at once,
    /// whatever the kept session's backend still answers.
    pub async fn status(&mut self, postmaster: Option<u32>) -> Result<PgStatus> {
        if let Some(pid) = postmaster.filter(|&pid| procfs::is_stopped(pid)) {
            self.kept = None;
            return Err(PgError::PostmasterStopped { pid });
        }
        if let Some(kept) = &self.kept
            && kept.opened.elapsed() < REOPEN_EVERY
        {
            match read_status(&kept.session, &kept.queries).await {
                Ok(status) => return Ok(status),
                // The server restarted (or ended the backend) since the
                // last look: that says nothing about the server now, so a
                // new connection answers instead.
                Err(e) if kept.session.client.is_closed() => {
                    tracing::debug!(error = %e, "the kept control session was closed; opening another");
                }
                Err(e) => {
                    self.kept = None;
                    return Err(e);
                }
            }
        }
        self.kept = None;
        let session = self.control.session().await?;
        let queries = StatusQueries::prepare(&session).await?;
        let status = read_status(&session, &queries).await?;
        self.kept = Some(Kept {
            session,
            queries,
            opened: Instant::now(),
        });
        Ok(status)
    }
}
