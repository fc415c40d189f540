//! What the lab's helper daemons (HAProxy, pgbouncer) share: finding the
//! installed binary, starting it in the foreground so its PID is the
//! daemon itself, waiting until it listens, recognising it by PID later,
//! and stopping it.

use crate::netns::spawn_in_netns;
use crate::process::{LabError, io, is_running};
use nix::unistd::User;
use std::ffi::OsStr;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Debian's `/usr/sbin/NAME` (not on a plain user's PATH), else the first
/// `NAME` on PATH.
pub(crate) fn installed(name: &str) -> Option<PathBuf> {
    let debian = Path::new("/usr/sbin").join(name);
    if debian.is_file() {
        return Some(debian);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// How to start one daemon that stays in the foreground.
pub(crate) struct Launch<'a> {
    pub binary: &'a Path,
    pub args: &'a [&'a OsStr],
    /// Its main config file; its directory is the working directory.
    pub config: &'a Path,
    /// Both stdout and stderr are appended here.
    pub log: &'a Path,
    pub run_as: Option<&'a User>,
    /// Started inside this network namespace, as the member's agent is.
    pub netns: Option<&'a str>,
    /// Returns once every one of these accepts connections.
    pub listen: &'a [SocketAddr],
}

impl Launch<'_> {
    pub(crate) fn start(&self) -> Result<Child, LabError> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log)
            .map_err(io(self.log))?;
        let err = out.try_clone().map_err(io(self.log))?;
        let mut command = Command::new(self.binary);
        command
            .args(self.args)
            .current_dir(self.config.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // As the agents: a terminal's Ctrl-C reaches `lab up`, not the daemon.
            .process_group(0);
        if let Some(user) = self.run_as {
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        let mut child = match self.netns {
            None => command.spawn().map_err(io(self.binary))?,
            Some(ns) => spawn_in_netns(ns, &mut command)?,
        };
        match wait_listening(&mut child, self.listen) {
            Ok(()) => Ok(child),
            Err(problem) => {
                let _ = child.kill();
                let _ = child.wait();
                let args: Vec<_> = self.args.iter().map(|a| a.to_string_lossy()).collect();
                Err(LabError::Setup(format!(
                    "{} {} {problem}; see {}",
                    self.binary.display(),
                    args.join(" "),
                    self.log.display()
                )))
            }
        }
    }
}

fn wait_listening(child: &mut Child, addrs: &[SocketAddr]) -> Result<(), String> {
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    let accepts = |addr| TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited at start ({status})"));
        }
        if addrs.iter().all(accepts) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "did not accept connections on {addrs:?} within {LISTEN_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` is still the daemon started with `config`: an executable
/// called `exe_name` whose command line names that file, and not a zombie.
/// A reused PID, or another lab's daemon, does not count.
pub(crate) fn is_ours(pid: u32, exe_name: &str, config: &Path) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let is_exe = fs::read_link(proc_dir.join("exe"))
        .is_ok_and(|exe| exe.file_name().is_some_and(|name| name == exe_name));
    let names_config = fs::read(proc_dir.join("cmdline")).is_ok_and(|cmdline| {
        cmdline
            .split(|&b| b == 0)
            .any(|arg| arg == config.as_os_str().as_encoded_bytes())
    });
    is_exe && names_config && is_running(pid)
}

/// SIGTERM, then SIGKILL after `grace`; reaped on return.
pub(crate) fn stop(child: &mut Child, grace: Duration) {
    terminate(child);
    reap_by(child, Instant::now() + grace);
}

pub(crate) fn terminate(child: &Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
}

/// Waits for `child` to exit until `deadline`, then SIGKILLs it; reaped on
/// return.
pub(crate) fn reap_by(child: &mut Child, deadline: Instant) {
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
