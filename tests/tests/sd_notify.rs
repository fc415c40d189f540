//! systemd's notify protocol against a real agent: a one-member cluster
//! started with `NOTIFY_SOCKET` pointing at a datagram socket this test
//! binds, and `WATCHDOG_USEC`. The agent says READY=1 once serving, pings
//! WATCHDOG=1 every half interval, says RELOADING=1 then READY=1 around a
//! SIGHUP and STOPPING=1 on SIGTERM; and its postmaster, which Debian builds
//! with systemd support, never reaches the socket (it would add its own
//! READY=1 and STOPPING=1).

use raftgres_tests::{agent_bin, serial, shared_tempdir};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the agent if the test fails half-way, and in any case stops the
/// keeper it started (which outlives the agent by design, and takes
/// Postgres down with it).
struct Agent(Child, std::path::PathBuf);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let pid_file = self.1.join("keeper.pid");
        let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        else {
            return;
        };
        // Only the keeper of this data directory: a stale pid file's PID
        // may belong to anything by now.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ours = String::from_utf8_lossy(&cmdline).contains("keeper")
            && String::from_utf8_lossy(&cmdline)
                .contains(&*self.1.parent().unwrap_or(&self.1).to_string_lossy());
        if !ours {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && nix::sys::signal::kill(pid, None).is_ok() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn postgres_user() -> Option<nix::unistd::User> {
    nix::unistd::geteuid().is_root().then(|| {
        nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .expect("a postgres user to run the agent as")
    })
}

fn chown_tree(path: &Path, user: &nix::unistd::User) {
    std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
        .expect("chown");
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read_dir") {
            chown_tree(&entry.expect("entry").path(), user);
        }
    }
}

/// The notifications received until `done` says so, or `within` passes,
/// or the agent exits (its log in the failure).
fn receive_until(
    socket: &UnixDatagram,
    agent: &mut Agent,
    seen: &mut Vec<String>,
    within: Duration,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while !done(seen) {
        let log = || std::fs::read_to_string(agent.1.with_extension("log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}; received {seen:?}\n{}",
            log()
        );
        if let Ok(Some(status)) = agent.0.try_wait() {
            panic!(
                "the agent exited ({status}) while waiting for {what}; received {seen:?}\n{}",
                log()
            );
        }
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            seen.extend(text.lines().map(str::to_owned));
        }
    }
}

fn count(seen: &[String], line: &str) -> usize {
    seen.iter().filter(|l| *l == line).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_notifies_systemd_and_pings_its_watchdog() {
    let _serial = serial().await;
    let dir = shared_tempdir("raftgres-sd-notify-");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    // The agent runs as postgres and must be allowed to send to it.
    std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o777))
        .expect("chmod socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");

    let (raft, pg, api) = (free_port(), free_port(), free_port());
    let data_dir = dir.path().join("node1");
    std::fs::create_dir(&data_dir).expect("data dir");
    let config = dir.path().join("node1.yml");
    std::fs::write(
        &config,
        format!(
            "scope: sdnotify\nname: node1\nnode_id: 1\ndata_dir: {}\nraft:\n  listen: 127.0.0.1:{raft}\n\
             postgresql:\n  listen: 127.0.0.1:{pg}\nrestapi:\n  listen: 127.0.0.1:{api}\n\
             members:\n  - {{id: 1, name: node1, raft_addr: \"127.0.0.1:{raft}\"}}\n",
            data_dir.display()
        ),
    )
    .expect("write config");
    let user = postgres_user();
    if let Some(user) = &user {
        chown_tree(dir.path(), user);
    }
    let bin = dir.path().join("raftgres-agent");
    std::fs::copy(agent_bin(), &bin).expect("copy the agent where postgres can run it");
    let log_path = dir.path().join("node1.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut command = Command::new(&bin);
    command
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        // 2 s: pings every second.
        .env("WATCHDOG_USEC", "2000000")
        .env(
            "RAFTGRES_POSTGRESQL__AUTHENTICATION__SUPERUSER__PASSWORD",
            "sd-notify-superuser",
        )
        .env(
            "RAFTGRES_POSTGRESQL__AUTHENTICATION__REPLICATION__PASSWORD",
            "sd-notify-replication",
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .process_group(0);
    if let Some(user) = &user {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    let mut agent = Agent(command.spawn().expect("start the agent"), data_dir.clone());
    let pid = nix::unistd::Pid::from_raw(agent.0.id() as i32);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let mut seen = Vec::new();
    receive_until(
        &socket,
        &mut agent,
        &mut seen,
        Duration::from_secs(60),
        "READY=1",
        |s| count(s, "READY=1") == 1,
    );
    let ready_at = seen.len();
    // The agent's Postgres (initdb, start) keeps the Postgres loop busy in
    // between: pings must go on through it.
    receive_until(
        &socket,
        &mut agent,
        &mut seen,
        Duration::from_secs(30),
        "five WATCHDOG=1 after READY=1",
        |s| count(&s[ready_at..], "WATCHDOG=1") >= 5,
    );
    assert!(
        seen.iter().any(|l| l.starts_with("STATUS=")),
        "no STATUS= line: {seen:?}"
    );

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    receive_until(
        &socket,
        &mut agent,
        &mut seen,
        Duration::from_secs(30),
        "RELOADING=1 then READY=1",
        |s| {
            s.iter()
                .position(|l| l == "RELOADING=1")
                .is_some_and(|at| count(&s[at..], "READY=1") == 1)
        },
    );
    let reloading = seen
        .iter()
        .position(|l| l == "RELOADING=1")
        .expect("reloading");
    assert!(
        seen[reloading..]
            .iter()
            .any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 without MONOTONIC_USEC (systemd 253+ needs it): {seen:?}"
    );

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = agent.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not stop within 40 s; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "the agent failed: {status}; log:\n{}",
        log()
    );
    // Whatever is still queued in the socket.
    let mut buf = [0u8; 4096];
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout");
    while let Ok(n) = socket.recv(&mut buf) {
        seen.extend(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_owned),
        );
    }
    // One each from the agent; a postmaster that inherited NOTIFY_SOCKET
    // would have added its own.
    assert_eq!(count(&seen, "STOPPING=1"), 1, "{seen:?}");
    assert_eq!(count(&seen, "READY=1"), 2, "{seen:?}");
}
