//! Shared by the integration tests: real PostgreSQL 15 in scratch
//! directories under /tmp, run as `postgres` when the tests run as root.
#![allow(dead_code)]

use raftgres_postgres::{Control, PgSettings, PgStatus, Postmaster, RunAs, initdb, version};
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const READY: Duration = Duration::from_secs(60);
pub const STOP: Duration = Duration::from_secs(30);
pub const CONVERGE: Duration = Duration::from_secs(30);

/// Who the servers run as, or `None` when this machine cannot run them.
/// As root (CI) the tests never skip: a missing `postgres` user or binary
/// fails them.
pub fn run_as() -> Option<Option<RunAs>> {
    // The library's logs, shown for failing tests (or with --nocapture).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "raftgres_postgres=info".into()),
        )
        .with_ansi(false)
        .with_test_writer()
        .try_init();
    let bin = Path::new(version::DEFAULT_BIN_DIR);
    if nix::unistd::geteuid().is_root() {
        assert!(
            bin.join("postgres").is_file(),
            "PostgreSQL 15 is not installed at {}",
            bin.display()
        );
        let user =
            RunAs::user("postgres").expect("running as root, the tests need the `postgres` user");
        return Some(Some(user));
    }
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten();
    if me.is_some_and(|u| u.name == "postgres") && bin.join("postgres").is_file() {
        return Some(None);
    }
    eprintln!(
        "skipping: needs root or the postgres user, and PostgreSQL 15 in {}",
        bin.display()
    );
    None
}

/// A scratch directory for this machine's servers, or `None` when it cannot
/// run them (see [`run_as`]).
pub fn scratch() -> Option<Scratch> {
    run_as().map(Scratch::new)
}

/// Member `n1` in a scratch directory of its own, not initialized yet;
/// `None` when this machine cannot run it.
pub fn lone_node() -> Option<Node> {
    let scratch = scratch()?;
    let mut node = Node::new(scratch.settings("n1"));
    node.scratch = Some(scratch);
    Some(node)
}

/// Like [`lone_node`], initialized and running.
pub async fn solo_node() -> Option<Node> {
    let mut node = lone_node()?;
    initdb(&node.settings).await.unwrap();
    node.start().await;
    Some(node)
}

/// A scratch directory the `postgres` user can enter; removed at the end.
/// Declare it before any node so it is dropped after them.
pub struct Scratch {
    dir: tempfile::TempDir,
    run_as: Option<RunAs>,
}

impl Scratch {
    pub fn new(run_as: Option<RunAs>) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("raftgres-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch { dir, run_as }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Settings for member `name` on a free loopback port.
    pub fn settings(&self, name: &str) -> PgSettings {
        let mut s = PgSettings::new(self.path().join(name), free_port(), name);
        s.socket_dir = self.path().join(format!("{name}-sock"));
        s.run_as = self.run_as;
        set_test_logins(&mut s);
        // Several servers share two cores and the test machine's memory.
        s.parameters.insert("shared_buffers".into(), "16MB".into());
        s.parameters.insert("max_connections".into(), "20".into());
        s.connect_timeout = Duration::from_secs(2);
        s.query_timeout = Duration::from_secs(5);
        s
    }

    /// Member `name`, initialized but not started.
    pub async fn initialized(&self, name: &str) -> Node {
        let node = Node::new(self.settings(name));
        initdb(&node.settings).await.unwrap();
        node
    }

    /// Member `name`, initialized and running.
    pub async fn running(&self, name: &str) -> Node {
        let mut node = self.initialized(name).await;
        node.start().await;
        node
    }
}

/// The tests' passwords (with the characters a password file escapes).
pub fn set_test_logins(s: &mut PgSettings) {
    s.superuser.password = raftgres_postgres::Password::new("test superuser's secret");
    s.replication.password = raftgres_postgres::Password::new("test:replication\\secret");
    // A rewind role of its own, so every rewind here proves its grants.
    s.rewind = Some(raftgres_postgres::Login::new(
        "rewinder",
        "test rewind secret",
    ));
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One member: settings, its control connection and, while it runs, its
/// postmaster (whose drop fences it, so a failing test leaves nothing).
pub struct Node {
    pub settings: PgSettings,
    pub control: Control,
    pub postmaster: Option<Postmaster>,
    /// The node's own scratch directory, if it has one: the last field, so
    /// it is removed after the postmaster is gone.
    scratch: Option<Scratch>,
}

impl Node {
    pub fn new(settings: PgSettings) -> Node {
        Node {
            control: Control::new(&settings),
            settings,
            postmaster: None,
            scratch: None,
        }
    }

    pub async fn start(&mut self) {
        let mut pm = Postmaster::start(&self.settings).await.unwrap();
        let ready = pm.wait_ready(READY).await;
        self.postmaster = Some(pm);
        ready.unwrap();
    }

    pub fn pm(&mut self) -> &mut Postmaster {
        self.postmaster.as_mut().expect("the node is not running")
    }

    pub async fn stop_fast(&mut self) {
        let status = self
            .pm()
            .stop(raftgres_postgres::StopMode::Fast, STOP)
            .await
            .unwrap();
        assert!(status.success(), "fast shutdown ended with {status}");
        self.postmaster = None;
    }

    pub async fn status(&self) -> PgStatus {
        self.control.status().await.unwrap()
    }

    pub fn upstream(&self) -> raftgres_postgres::Upstream {
        raftgres_postgres::Upstream {
            host: "127.0.0.1".into(),
            port: self.settings.port,
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.settings).await
    }

    pub async fn execute(&self, sql: &str) {
        self.client().await.batch_execute(sql).await.unwrap();
    }

    /// Whether row `id` of table `t` is visible here.
    pub async fn has_row(&self, id: i32) -> bool {
        let row = self
            .client()
            .await
            .query_one("SELECT count(*) FROM t WHERE id = $1", &[&id])
            .await
            .unwrap();
        row.get::<_, i64>(0) == 1
    }
}

/// The PID of the backend serving `client`.
pub async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

pub async fn connect(settings: &PgSettings) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(settings.port)
        .user(&settings.superuser.user)
        .password(settings.superuser.password.expose())
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5))
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Polls `check` until it yields a value, panicking after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The state letter of `/proc/<pid>/stat`, `None` once the PID is gone.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

pub fn is_alive(pid: u32) -> bool {
    proc_state(pid).is_some_and(|s| !matches!(s, 'Z' | 'X'))
}

/// Live (non-zombie) processes whose process group is `pgid`.
pub fn live_in_group(pgid: u32) -> Vec<u32> {
    live_processes(|stat| {
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap_or(0) + 1..]
            .split_whitespace()
            .collect();
        fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
    })
}

/// Live processes of the PostgreSQL binary whose working directory is
/// `data_dir` (every process a postmaster forks).
pub fn live_server_processes(data_dir: &Path) -> Vec<u32> {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let exe =
        std::fs::canonicalize(PathBuf::from(version::DEFAULT_BIN_DIR).join("postgres")).unwrap();
    let mut pids = Vec::new();
    for pid in raftgres_postgres::all_pids() {
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
        let bin = std::fs::read_link(format!("/proc/{pid}/exe"));
        if cwd.is_ok_and(|c| c == dir) && bin.is_ok_and(|b| b == exe) && is_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

fn live_processes(matches: impl Fn(&str) -> bool) -> Vec<u32> {
    let mut pids = Vec::new();
    for pid in raftgres_postgres::all_pids() {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && matches(&stat)
            && is_alive(pid)
        {
            pids.push(pid);
        }
    }
    pids
}
