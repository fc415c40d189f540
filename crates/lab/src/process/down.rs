//! The lab's processes found by PID, and `lab down`, which stops them.

use super::{LabError, read_description};
use crate::haproxy;
use crate::pgbouncer;
use crate::spec::{LabDescription, LabMember};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Whether `pid` exists and is not a zombie, which `kill(pid, 0)` cannot tell.
pub(crate) fn is_running(pid: u32) -> bool {
    let state = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next())
        })
        .flatten();
    !matches!(state, Some('Z') | Some('X') | None)
}

/// A PID still names our agent only if its executable is the lab's copy;
/// a zombie or a reused PID does not count.
pub(super) fn is_our_agent(pid: u32, agent_bin: &Path) -> bool {
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    fs::read_link(exe).is_ok_and(|exe| exe == agent_bin) && is_running(pid)
}

/// The members of the lab in DIR whose agents are still running; none if
/// there is no lab there.
pub fn running_members(dir: &Path) -> Vec<String> {
    match read_description(dir) {
        Ok(description) => description
            .members
            .iter()
            .filter(|m| is_our_agent(m.agent_pid, &description.agent_bin))
            .map(|m| m.name.clone())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A keeper stops Postgres with a fast shutdown, which may take a while
/// under load; after this, SIGKILL (its guard then kills Postgres).
pub(super) const KEEPER_GRACE: Duration = Duration::from_secs(30);

/// The keeper recorded in the member's data directory, if that PID still
/// runs the lab's agent binary as `keeper`.
pub(super) fn keeper_of(member: &LabMember, agent_bin: &Path) -> Option<u32> {
    let text = fs::read_to_string(member.data_dir.join("keeper.pid")).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    is_our_keeper(pid, agent_bin).then_some(pid)
}

fn is_our_keeper(pid: u32, agent_bin: &Path) -> bool {
    is_our_agent(pid, agent_bin)
        && fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.split(|b| *b == 0).nth(1) == Some(b"keeper".as_slice()))
}

/// The guard and Postgres processes of a member: every process running
/// the lab's agent binary as `keeper-guard` for its data directory, and
/// every process whose working directory is inside the member's data
/// directory (Postgres chdirs into its data directory).
pub(super) fn processes_in_lab_member(member: &LabMember, agent_bin: &Path) -> Vec<u32> {
    let Ok(dir) = fs::canonicalize(&member.data_dir) else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for pid in raftgres_postgres::all_pids() {
        let in_member =
            fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(&dir));
        let guard = is_our_agent(pid, agent_bin)
            && fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.get(1) == Some(&b"keeper-guard".as_slice())
                    && args.windows(2).any(|w| {
                        w[0] == b"--data-dir"
                            && Path::new(std::str::from_utf8(w[1]).unwrap_or(""))
                                .starts_with(&member.data_dir)
                    })
            });
        if (in_member || guard) && pid != std::process::id() {
            pids.push(pid);
        }
    }
    pids
}

/// SIGTERM to each keeper (a fast shutdown of its Postgres), SIGKILL to
/// those still running after `grace`.
pub(super) fn stop_keepers(pids: &[u32], agent_bin: &Path, grace: Duration) {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|p| is_our_keeper(*p, agent_bin)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids {
        if is_our_keeper(*pid, agent_bin) {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
    }
}

/// What `lab down` stops, by what its PID must still name.
enum Started<'a> {
    /// The lab's copy of the agent binary.
    Agent(&'a Path),
    /// HAProxy, started with this config file.
    Haproxy(&'a Path),
    /// A member's pgbouncer, started with this config file.
    Pgbouncer(&'a Path),
}

impl Started<'_> {
    fn runs_as(&self, pid: u32) -> bool {
        match self {
            Started::Agent(agent_bin) => is_our_agent(pid, agent_bin),
            Started::Haproxy(config) => haproxy::is_ours(pid, config),
            Started::Pgbouncer(config) => pgbouncer::is_ours(pid, config),
        }
    }
}

/// Stops what `lab up` started in DIR, by PID: the agents, pgbouncers and
/// HAProxy. A missing DIR or lab.json, or processes already gone, are not
/// errors. Returns what was stopped: member names, `NAME-pgbouncer`, and
/// `haproxy`.
pub fn down(dir: &Path, grace: Duration) -> Result<Vec<String>, LabError> {
    if !LabDescription::path(dir).exists() {
        return Ok(Vec::new());
    }
    let description = read_description(dir)?;
    let mut running: Vec<(String, u32, Started)> = Vec::new();
    for m in &description.members {
        let started = Started::Agent(&description.agent_bin);
        if started.runs_as(m.agent_pid) {
            running.push((m.name.clone(), m.agent_pid, started));
        }
        if let (Some(pid), Some(config)) = (m.pgbouncer_pid, &m.pgbouncer_config) {
            let started = Started::Pgbouncer(config);
            if started.runs_as(pid) {
                running.push((format!("{}-pgbouncer", m.name), pid, started));
            }
        }
    }
    if let Some(h) = &description.haproxy {
        let started = Started::Haproxy(&h.config);
        if started.runs_as(h.pid) {
            running.push(("haproxy".to_owned(), h.pid, started));
        }
    }
    for (_, pid, _) in &running {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline
        && running
            .iter()
            .any(|(_, pid, started)| started.runs_as(*pid))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (_, pid, started) in &running {
        if started.runs_as(*pid) {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
    }
    // Keepers after their agents, so that no agent restarts what they stop.
    let mut stopped: Vec<String> = running.into_iter().map(|(name, _, _)| name).collect();
    let mut keepers = Vec::new();
    for m in &description.members {
        if let Some(pid) = keeper_of(m, &description.agent_bin) {
            keepers.push(pid);
            stopped.push(format!("{}-keeper", m.name));
        }
    }
    stop_keepers(&keepers, &description.agent_bin, grace.max(KEEPER_GRACE));
    Ok(stopped)
}
