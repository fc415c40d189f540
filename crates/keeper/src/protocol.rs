//! What the agent and its keeper say to each other: one JSON object per
//! line over a Unix socket in the agent's data directory, a reply for every
//! request. The socket is private to the user both run as (mode 0600).

use serde::{Deserialize, Serialize};

/// Bumped when a message changes meaning. An agent refuses a keeper that
/// speaks another version rather than guess (restart the keeper, which
/// restarts Postgres, or run the matching agent).
pub const PROTOCOL: u32 = 1;

/// PostgreSQL's shutdown modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopMode {
    Fast,
    Immediate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    /// Start the postmaster. `primary` starts are refused unless the fence
    /// is armed with a deadline still ahead.
    Start {
        primary: bool,
    },
    Stop {
        mode: StopMode,
        timeout_ms: u64,
    },
    /// SIGKILL every process of the server and reap them.
    Fence,
    /// SIGHUP to the postmaster: re-read the configuration files.
    Reload,
    /// This member holds the lease at `epoch` until `deadline_ns` on
    /// CLOCK_MONOTONIC; a later arm with an earlier deadline never
    /// shortens the current one for the same epoch.
    Arm(Arming),
    /// No lease here. Refused while any process of the server is alive.
    Disarm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arming {
    pub epoch: u64,
    pub deadline_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeeperStatus {
    pub protocol: u32,
    pub keeper_pid: u32,
    /// The running postmaster, if the keeper has one.
    pub postmaster_pid: Option<u32>,
    /// How many times a postmaster of this keeper has exited; a change the
    /// agent did not ask for is a crash.
    pub exits: u64,
    pub last_exit: Option<String>,
    /// Any process of the server alive: the postmaster, or backends that
    /// outlive it. Only `false` means the server cannot write.
    pub server_alive: bool,
    pub armed: Option<Arming>,
    /// How many times the deadline passed unrenewed and the keeper fenced.
    pub deadline_fences: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    Done {
        status: KeeperStatus,
    },
    Refused {
        reason: String,
        status: KeeperStatus,
    },
    /// The request could not be read; nothing was done.
    BadRequest {
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_unknown_ones_are_refused() {
        for request in [
            Request::Status,
            Request::Start { primary: true },
            Request::Stop {
                mode: StopMode::Fast,
                timeout_ms: 20_000,
            },
            Request::Fence,
            Request::Reload,
            Request::Arm(Arming {
                epoch: 3,
                deadline_ns: 1_000,
            }),
            Request::Disarm,
        ] {
            let line = serde_json::to_string(&request).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), request);
        }
        for bad in [
            r#"{"op":"explode"}"#,
            r#"{"op":"arm","epoch":1}"#,
            r#"{"op":"start","primary":true,"extra":1}"#,
            "not json",
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }
}
