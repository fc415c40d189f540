//! Finding a server's processes in `/proc`. Liveness is never judged by
//! `kill(pid, 0)`: a zombie passes that test, and these machines' PID 1 can
//! leave one around for seconds.

use std::fs;
use std::path::Path;

/// Live processes running `exe` (or a binary of the same name, see
/// [`same_program`]) with their working directory in
/// `data_dir`: every process a postmaster forks starts there (it chdirs to
/// the data directory first), and each backend calls `setsid()`, so neither
/// the postmaster's process group nor its list of children (emptied when it
/// dies) finds them all. Both paths must be canonical. A zombie has no cwd,
/// so only live processes match. Processes of other users are unreadable to
/// a non-root caller and are skipped; the server's own are not.
pub(crate) fn processes_running_in(data_dir: &Path, exe: &Path) -> Vec<u32> {
    let own = std::process::id();
    let mut pids = Vec::new();
    for pid in all_pids() {
        if pid == own {
            continue;
        }
        let in_dir = fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == data_dir);
        if in_dir && fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| same_program(&e, exe))
        {
            pids.push(pid);
        }
    }
    pids
}

/// The PIDs in `/proc` right now, dead or alive; none when it is unreadable.
pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether a process whose `/proc/PID/exe` reads `running` runs the server
/// binary `exe`. By file name, not by path: a package upgrade replaces the
/// binary under a running server, whose processes then show `PATH (deleted)`,
/// and a major upgrade moves it to another directory. Only a server's own
/// processes work in its data directory, so the name is enough there.
fn same_program(running: &Path, exe: &Path) -> bool {
    let name = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.trim_end_matches(" (deleted)").to_owned())
    };
    running == exe || (name(running).is_some() && name(running) == name(exe))
}

/// Whether `pid` exists and has not finished dying: not a zombie (`Z`) or
/// dead (`X`). A process killed a moment ago loses its cwd early in exit,
/// before it becomes a zombie, so `processes_running_in` alone cannot tell
/// that it is gone.
pub(crate) fn is_alive(pid: u32) -> bool {
    !matches!(state_of(pid), Some('Z' | 'X' | 'x') | None)
}

/// Whether `pid` is stopped by a signal (`T`: SIGSTOP, SIGTSTP): alive, but
/// it runs nothing until continued. A tracer's stop (`t`) is not counted:
/// strace puts its tracee there for a moment at every system call.
pub(crate) fn is_stopped(pid: u32) -> bool {
    state_of(pid) == Some('T')
}

/// The state letter of `/proc/PID/stat`, `None` once the process is gone.
fn state_of(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain ") ".
    stat.rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next())
        .and_then(|field| field.chars().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_from_stat() {
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(u32::MAX));
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        // Exited but not reaped: a zombie, which `kill(pid, 0)` would call alive.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while is_alive(child.id()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!is_alive(child.id()));
        assert!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), None).is_ok()
        );
        child.wait().unwrap();
    }

    #[test]
    fn a_stopped_process_is_alive_and_stopped_until_continued() {
        use nix::sys::signal::{Signal, kill};
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        assert!(!is_stopped(child.id()));
        kill(pid, Signal::SIGSTOP).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !is_stopped(child.id()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(is_stopped(child.id()));
        assert!(is_alive(child.id()));
        kill(pid, Signal::SIGCONT).unwrap();
        while is_stopped(child.id()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!is_stopped(child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!is_stopped(child.id()));
    }

    #[test]
    fn finds_a_child_by_working_directory_and_binary() {
        let dir = tempfile::tempdir().unwrap();
        let dir_path = fs::canonicalize(dir.path()).unwrap();
        let sleep = fs::canonicalize("/bin/sleep").unwrap();
        let mut child = std::process::Command::new(&sleep)
            .arg("30")
            .current_dir(&dir_path)
            .spawn()
            .unwrap();
        let found = processes_running_in(&dir_path, &sleep);
        // Another binary in the same directory is not ours.
        let other = processes_running_in(&dir_path, Path::new("/usr/bin/true"));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, vec![child.id()]);
        assert!(other.is_empty());
        assert!(processes_running_in(&dir_path, &sleep).is_empty());
    }

    #[test]
    fn a_replaced_or_moved_binary_is_still_the_server() {
        let exe = Path::new("/usr/lib/postgresql/15/bin/postgres");
        for running in [
            "/usr/lib/postgresql/15/bin/postgres",
            "/usr/lib/postgresql/15/bin/postgres (deleted)",
            "/opt/pg/bin/postgres",
        ] {
            assert!(same_program(Path::new(running), exe), "{running}");
        }
        for other in [
            "/usr/bin/sleep",
            "/usr/lib/postgresql/15/bin/postgres_fdw",
            "/",
        ] {
            assert!(!same_program(Path::new(other), exe), "{other}");
        }
    }
}
