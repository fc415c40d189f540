//! Shared by the integration tests: Debian's real pgbouncer and throwaway
//! PostgreSQL 15 servers in a scratch directory under /tmp, run as
//! `postgres` when the tests run as root (both refuse root).
#![allow(dead_code)]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres_pooler::{Admin, AdminTarget, DatabaseStatus, Routes, Target, write_databases_file};
use raftgres_postgres::{PgSettings, Postmaster, RunAs, initdb, version};
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PGBOUNCER: &str = "/usr/sbin/pgbouncer";
pub const WRITE_DB: &str = "app";
pub const READ_DB: &str = "app_ro";
/// How long a client may take to connect or to get an answer.
pub const CONNECT: Duration = Duration::from_secs(5);
const READY: Duration = Duration::from_secs(60);
const LISTEN: Duration = Duration::from_secs(10);
const STOP: Duration = Duration::from_secs(5);

/// Who the servers run as, or `None` when this machine cannot run them. As
/// root (CI) the tests never skip: a missing user or binary fails them.
pub fn run_as() -> Option<Option<RunAs>> {
    let binaries = [
        Path::new(version::DEFAULT_BIN_DIR).join("postgres"),
        PathBuf::from(PGBOUNCER),
    ];
    let missing: Vec<_> = binaries.iter().filter(|b| !b.is_file()).collect();
    if nix::unistd::geteuid().is_root() {
        assert!(missing.is_empty(), "not installed: {missing:?}");
        let user = RunAs::user("postgres").expect("as root, the tests need the `postgres` user");
        return Some(Some(user));
    }
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten();
    if me.is_some_and(|u| u.name == "postgres") && missing.is_empty() {
        return Some(None);
    }
    eprintln!("skipping: needs root or the postgres user, PostgreSQL 15 and pgbouncer");
    None
}

/// A scratch directory the `postgres` user can enter and write, removed at
/// the end; `None` when this machine cannot run the servers (see
/// [`run_as`]). Declare it before the servers so it is dropped after them.
pub fn scratch() -> Option<Scratch> {
    let run_as = run_as()?;
    let dir = tempfile::Builder::new()
        .prefix("raftgres-pooler-")
        .tempdir_in("/tmp")
        .expect("scratch dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    Some(Scratch { dir, run_as })
}

/// Postgres `a` as the primary behind pgbouncer, and a client of the write
/// database that a query showed is served by `a`; `None` when this machine
/// cannot run them. Fields drop in order: client, pgbouncer, Postgres, and
/// the scratch directory last.
pub async fn served_by_a() -> Option<Served> {
    let scratch = scratch()?;
    let a = scratch.postgres("a").await;
    let bouncer = scratch.pgbouncer(&routes(Some(&a.target), &[]));
    let client = bouncer.client(WRITE_DB, "client").await;
    assert_eq!(server_port(&client).await, Ok(a.target.port));
    Some(Served {
        client,
        admin: bouncer.admin(),
        bouncer,
        a,
        _scratch: scratch,
    })
}

pub struct Served {
    pub client: tokio_postgres::Client,
    pub admin: Admin,
    pub bouncer: Bouncer,
    pub a: Server,
    _scratch: Scratch,
}

/// See [`scratch`].
pub struct Scratch {
    dir: tempfile::TempDir,
    run_as: Option<RunAs>,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A subdirectory owned by the servers' user.
    fn own_dir(&self, name: &str) -> PathBuf {
        let dir = self.path().join(name);
        fs::create_dir_all(&dir).expect("create dir");
        if let Some(user) = self.run_as {
            chown(&dir, Some(user.uid), Some(user.gid)).expect("chown");
        }
        dir
    }

    /// initdb and start a Postgres on a free loopback port.
    pub async fn postgres(&self, name: &str) -> Server {
        let mut s = PgSettings::new(self.path().join(name), free_port(), name);
        s.socket_dir = self.path().join(format!("{name}-sock"));
        s.run_as = self.run_as;
        s.superuser.password = raftgres_postgres::Password::new(CLIENT_PASSWORD);
        s.replication.password = raftgres_postgres::Password::new("replication secret");
        // Servers share two cores and the test machine's memory.
        s.parameters.insert("shared_buffers".into(), "16MB".into());
        s.parameters.insert("max_connections".into(), "20".into());
        initdb(&s).await.expect("initdb");
        let mut postmaster = Postmaster::start(&s).await.expect("start postgres");
        postmaster.wait_ready(READY).await.expect("postgres ready");
        Server {
            target: Target {
                host: "127.0.0.1".into(),
                port: s.port,
            },
            _postmaster: postmaster,
        }
    }

    /// Starts pgbouncer (transaction pool mode, SCRAM, `pgbouncer_admin` as
    /// admin) with the databases file rendered from `routes`.
    pub fn pgbouncer(&self, routes: &Routes) -> Bouncer {
        let dir = self.own_dir("pgbouncer");
        let port = free_port();
        let databases_file = dir.join("databases.ini");
        write_databases_file(&databases_file, routes).expect("write databases file");
        let users = dir.join("users.txt");
        fs::write(
            &users,
            format!("\"postgres\" \"{CLIENT_PASSWORD}\"\n\"{ADMIN_USER}\" \"{ADMIN_PASSWORD}\"\n"),
        )
        .expect("write auth file");
        fs::set_permissions(&users, fs::Permissions::from_mode(0o600)).expect("chmod auth file");
        if let Some(user) = self.run_as {
            chown(&users, Some(user.uid), Some(user.gid)).expect("chown auth file");
        }
        let config = dir.join("pgbouncer.ini");
        let log = dir.join("pgbouncer.log");
        fs::write(
            &config,
            format!(
                "%include {databases}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir = {dir}\n\
                 auth_type = scram-sha-256\n\
                 auth_file = {users}\n\
                 admin_users = {ADMIN_USER}\n\
                 pool_mode = transaction\n\
                 pidfile = {dir}/pgbouncer.pid\n\
                 logfile = {log}\n",
                databases = databases_file.display(),
                dir = dir.display(),
                users = users.display(),
                log = log.display(),
            ),
        )
        .expect("write pgbouncer.ini");
        let stderr = fs::File::create(dir.join("pgbouncer.stderr")).expect("stderr file");
        let mut command = Command::new(PGBOUNCER);
        command
            .arg(&config)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(user) = self.run_as {
            command.uid(user.uid).gid(user.gid);
        }
        let child = command.spawn().expect("spawn pgbouncer");
        let mut bouncer = Bouncer {
            child,
            port,
            databases_file,
            log,
        };
        bouncer.wait_listening();
        bouncer
    }
}

/// The Postgres superuser's password, which clients send through pgbouncer.
pub const CLIENT_PASSWORD: &str = "pooler test secret";
/// pgbouncer's console user, no Postgres role, and its password.
pub const ADMIN_USER: &str = "pgbouncer_admin";
pub const ADMIN_PASSWORD: &str = "console secret";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A running Postgres; dropping it fences the postmaster.
pub struct Server {
    pub target: Target,
    _postmaster: Postmaster,
}

/// A pgbouncer child process, stopped by its PID on drop.
pub struct Bouncer {
    child: Child,
    pub port: u16,
    pub databases_file: PathBuf,
    pub log: PathBuf,
}

impl Bouncer {
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + LISTEN;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "pgbouncer exited at start ({status}); see {}",
                    self.log.display()
                );
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not listen on {addr} within {LISTEN:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Rewrites the databases file to `routes` and RELOADs; whether the
    /// file changed.
    pub async fn repoint(&self, routes: &Routes) -> bool {
        let changed = write_databases_file(&self.databases_file, routes).expect("rewrite");
        self.admin().reload().await.expect("RELOAD");
        changed
    }

    pub fn admin(&self) -> Admin {
        let mut target = AdminTarget::new("127.0.0.1", self.port, ADMIN_USER);
        target.password = Some(ADMIN_PASSWORD.to_owned());
        Admin::new(target)
    }

    /// A client of `db` through this pgbouncer, which must get one within
    /// [`CONNECT`] (`what` names it in the failure).
    pub async fn client(&self, db: &str, what: &str) -> tokio_postgres::Client {
        self.connect(db, CONNECT).await.expect(what)
    }

    /// A client of `db` through this pgbouncer, or why it got none within
    /// `within`.
    pub async fn connect(
        &self,
        db: &str,
        within: Duration,
    ) -> Result<tokio_postgres::Client, String> {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .password(CLIENT_PASSWORD)
            .dbname(db)
            .connect_timeout(within);
        match tokio::time::timeout(within, config.connect(tokio_postgres::NoTls)).await {
            Ok(Ok((client, connection))) => {
                tokio::spawn(connection);
                Ok(client)
            }
            Ok(Err(e)) => Err(e
                .as_db_error()
                .map_or_else(|| e.to_string(), |db| db.message().to_owned())),
            Err(_) => Err(format!("no connection within {within:?}")),
        }
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        // SIGINT: pgbouncer's "safe shutdown" waits for clients; SIGTERM
        // stops at once.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + STOP;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port of the server a simple query through `client` ran on.
pub async fn server_port(client: &tokio_postgres::Client) -> Result<u16, String> {
    let messages = client
        .simple_query("SELECT inet_server_port()")
        .await
        .map_err(|e| e.to_string())?;
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0)?.parse().ok(),
            _ => None,
        })
        .ok_or_else(|| "no port in the answer".to_owned())
}

/// Entry `name` of SHOW DATABASES.
pub async fn database(admin: &Admin, name: &str, what: &str) -> DatabaseStatus {
    admin
        .show_databases()
        .await
        .expect(what)
        .into_iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no entry {name} in SHOW DATABASES"))
}

pub fn routes(write: Option<&Target>, read: &[&Target]) -> Routes {
    Routes {
        write: write.cloned(),
        read: read.iter().map(|t| (*t).clone()).collect(),
        write_db: WRITE_DB.into(),
        read_db: Some(READ_DB.into()),
        dbname: "postgres".into(),
    }
}
