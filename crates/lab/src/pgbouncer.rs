//! One pgbouncer beside each database member, from the same template
//! operators deploy (`deploy/pgbouncer/pgbouncer.ini.j2`). The lab writes
//! the first databases file with no primary; the member's agent owns it
//! from then on.

use crate::daemon::{self, Launch};
use crate::process::{LabError, io};
use crate::spec::PgAuth;
use nix::unistd::User;
use raftgres_pooler::{Routes, write_databases_file};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

const TEMPLATE: &str = include_str!("../../../deploy/pgbouncer/pgbouncer.ini.j2");
pub(crate) const LISTEN_ADDRESS: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// The OS user pgbouncer runs as (when the lab runs as root), and the
/// client user and database, as in each member's `dsn`, so `pgbouncer_dsn`
/// may create tables too.
pub(crate) const USER: &str = "postgres";
/// pgbouncer's console user: no Postgres role, so its password opens
/// nothing but the console.
pub const ADMIN_USER: &str = "pgbouncer_admin";
/// The console's database name.
pub(crate) const ADMIN_DB: &str = "pgbouncer";
pub(crate) const WRITE_DB: &str = "postgres";
pub(crate) const READ_DB: &str = "postgres_ro";

/// The installed pgbouncer: Debian's `/usr/sbin/pgbouncer` (not on a plain
/// user's PATH), else the first `pgbouncer` on PATH.
pub fn binary() -> Option<PathBuf> {
    daemon::installed("pgbouncer")
}

/// Where one member's pgbouncer keeps its files, all under the lab's DIR.
pub(crate) struct Files {
    pub config: PathBuf,
    pub databases: PathBuf,
    pub log: PathBuf,
    pub pidfile: PathBuf,
}

impl Files {
    pub fn of(dir: &Path, member: &str) -> Files {
        Files {
            config: dir.join(format!("{member}-pgbouncer.ini")),
            databases: dir.join(format!("{member}-pgbouncer-databases.ini")),
            log: dir.join(format!("{member}-pgbouncer.log")),
            pidfile: dir.join(format!("{member}-pgbouncer.pid")),
        }
    }
}

/// Where a member's pgbouncer listens: loopback, or, for a member in a
/// network namespace, its address there (where its Postgres listens too):
/// loopback inside a namespace is out of every other member's reach.
pub(crate) fn listen_host(netns_addr: Option<IpAddr>) -> IpAddr {
    netns_addr.unwrap_or(IpAddr::V4(LISTEN_ADDRESS))
}

/// The shared auth file: the clients' and the console's passwords, which
/// pgbouncer checks by SCRAM and sends on to Postgres.
pub(crate) fn auth_file(dir: &Path) -> PathBuf {
    dir.join("pgbouncer-users.txt")
}

/// What the lab's pgbouncers route before an agent manages them: nothing.
pub(crate) fn initial_routes() -> Routes {
    Routes {
        write: None,
        read: Vec::new(),
        write_db: WRITE_DB.to_owned(),
        read_db: Some(READ_DB.to_owned()),
        dbname: WRITE_DB.to_owned(),
    }
}

/// The template rendered for one member: loopback, SCRAM, `pgbouncer_admin`
/// as admin, Unix socket in DIR, logging to stderr (the log file), and TLS
/// to Postgres checked against `server_ca` (verify-full) when given.
pub(crate) fn render(
    dir: &Path,
    files: &Files,
    port: u16,
    server_ca: Option<&Path>,
) -> Result<String, LabError> {
    render_on(dir, files, LISTEN_ADDRESS.into(), port, server_ca)
}

/// As [`render`], listening on `listen` instead of loopback: a member in a
/// network namespace has its pgbouncer on its own address there.
pub(crate) fn render_on(
    dir: &Path,
    files: &Files,
    listen: IpAddr,
    port: u16,
    server_ca: Option<&Path>,
) -> Result<String, LabError> {
    let mut env = minijinja::Environment::new();
    // As Ansible's template module does, so both render the same file.
    env.set_trim_blocks(true);
    env.set_keep_trailing_newline(true);
    env.add_template("pgbouncer.ini.j2", TEMPLATE)
        .and_then(|_| env.get_template("pgbouncer.ini.j2"))
        .and_then(|template| {
            template.render(minijinja::context! {
                databases_file => files.databases.display().to_string(),
                listen_address => listen.to_string(),
                listen_port => port,
                unix_socket_dir => dir.display().to_string(),
                pidfile => files.pidfile.display().to_string(),
                auth_type => "scram-sha-256",
                auth_file => auth_file(dir).display().to_string(),
                admin_users => ADMIN_USER,
                server_tls_sslmode => server_ca.map(|_| "verify-full"),
                server_tls_ca_file => server_ca.map(|ca| ca.display().to_string()),
            })
        })
        .map_err(|e| {
            LabError::Setup(format!(
                "cannot render deploy/pgbouncer/pgbouncer.ini.j2: {e}; fix the template"
            ))
        })
}

/// Writes one member's config, and its databases file with no server.
pub(crate) fn write_files(
    dir: &Path,
    files: &Files,
    port: u16,
    auth: &PgAuth,
    server_ca: Option<&Path>,
) -> Result<(), LabError> {
    write_files_with(dir, files, &render(dir, files, port, server_ca)?, auth)
}

/// As [`write_files`], for a pgbouncer listening on `listen`.
pub(crate) fn write_files_on(
    dir: &Path,
    files: &Files,
    listen: IpAddr,
    port: u16,
    auth: &PgAuth,
    server_ca: Option<&Path>,
) -> Result<(), LabError> {
    write_files_with(
        dir,
        files,
        &render_on(dir, files, listen, port, server_ca)?,
        auth,
    )
}

fn write_files_with(
    dir: &Path,
    files: &Files,
    config: &str,
    auth: &PgAuth,
) -> Result<(), LabError> {
    let path = auth_file(dir);
    // Random hex passwords: nothing in them needs quoting.
    crate::process::write_private(
        &path,
        &format!(
            "\"{}\" \"{}\"\n\"{ADMIN_USER}\" \"{}\"\n",
            crate::process::PG_SUPERUSER,
            auth.superuser,
            auth.pgbouncer_admin
        ),
    )?;
    fs::write(&files.config, config).map_err(io(&files.config))?;
    write_databases_file(&files.databases, &initial_routes())
        .map_err(|e| LabError::Setup(e.to_string()))?;
    Ok(())
}

/// Starts pgbouncer in the foreground, so the PID is pgbouncer itself,
/// logging to `log`, and returns once its port accepts connections.
pub(crate) fn start(
    binary: &Path,
    files: &Files,
    run_as: Option<&User>,
    port: u16,
) -> Result<Child, LabError> {
    start_on(binary, files, run_as, (LISTEN_ADDRESS, port).into(), None)
}

/// As [`start`], for a pgbouncer listening on `listen`, started inside the
/// network namespace `netns` when given (as the member's agent is).
pub(crate) fn start_on(
    binary: &Path,
    files: &Files,
    run_as: Option<&User>,
    listen: SocketAddr,
    netns: Option<&str>,
) -> Result<Child, LabError> {
    Launch {
        binary,
        args: &[files.config.as_os_str()],
        config: &files.config,
        log: &files.log,
        run_as,
        netns,
        listen: &[listen],
    }
    .start()
}

/// A pgbouncer on its own, as on an application host that runs no
/// Postgres: the lab's template and start-up, with its files in one
/// directory and nothing else of a lab. Whoever follows the cluster (e.g.
/// `raftgresctl pooler`) owns its databases file, which starts with no
/// server. Dropping it stops pgbouncer by its PID.
pub struct StandalonePgbouncer {
    /// `None` once stopped and reaped: its PID may then be another's.
    child: Option<Child>,
    pub auth: PgAuth,
    pub port: u16,
    pub config: PathBuf,
    /// The file `config` includes; whoever follows the cluster rewrites it.
    pub databases_file: PathBuf,
    pub log: PathBuf,
}

impl StandalonePgbouncer {
    /// Renders `deploy/pgbouncer/pgbouncer.ini.j2` into `dir` for a
    /// pgbouncer named `name` on loopback `port` (a free one when `None`),
    /// with `postgres` (password `auth.superuser`, as the lab's Postgres
    /// has it) as client and database user, `pgbouncer_admin` (password
    /// `auth.pgbouncer_admin`) as admin, and
    /// starts it as the lab starts a member's: as `postgres` when run by
    /// root, in which case `dir` is handed to `postgres` (pgbouncer reads
    /// its files and puts its Unix socket there).
    pub fn start(
        dir: &Path,
        name: &str,
        port: Option<u16>,
        auth: &PgAuth,
        server_ca: Option<&Path>,
    ) -> Result<Self, LabError> {
        let binary = binary().ok_or_else(|| {
            LabError::Setup("pgbouncer is not installed (no /usr/sbin/pgbouncer and none on PATH); install it, e.g. `apt-get install pgbouncer`".to_owned())
        })?;
        let port = match port {
            Some(port) => port,
            None => crate::process::free_port()?,
        };
        let run_as = if nix::unistd::geteuid().is_root() {
            match User::from_name(USER) {
                Ok(Some(user)) => Some(user),
                _ => return Err(LabError::NoPostgresUser),
            }
        } else {
            None
        };
        let files = Files::of(dir, name);
        write_files(dir, &files, port, auth, server_ca)?;
        if let Some(user) = &run_as {
            for path in [dir, &files.config, &files.databases, &auth_file(dir)] {
                std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                    .map_err(|e| {
                        LabError::Setup(format!("cannot chown {} to {USER}: {e}", path.display()))
                    })?;
            }
        }
        let child = start(&binary, &files, run_as.as_ref(), port)?;
        Ok(StandalonePgbouncer {
            child: Some(child),
            auth: auth.clone(),
            port,
            config: files.config,
            databases_file: files.databases,
            log: files.log,
        })
    }

    /// `None` once stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A libpq connection string for `dbname` through this pgbouncer
    /// (`pgbouncer` is its admin console).
    pub fn dsn(&self, dbname: &str) -> String {
        let (user, password) = if dbname == ADMIN_DB {
            (ADMIN_USER, &self.auth.pgbouncer_admin)
        } else {
            (crate::process::PG_SUPERUSER, &self.auth.superuser)
        };
        format!(
            "host={LISTEN_ADDRESS} port={} user={user} password={password} dbname={dbname}",
            self.port
        )
    }

    /// SIGTERM to its PID, then SIGKILL after `grace`; reaped on return.
    /// Stopping again does nothing.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM is pgbouncer's immediate shutdown.
            daemon::stop(&mut child, grace);
        }
    }
}

impl Drop for StandalonePgbouncer {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Whether `pid` is still the pgbouncer started with `config`: a pgbouncer
/// executable whose command line names that file, and not a zombie.
pub(crate) fn is_ours(pid: u32, config: &Path) -> bool {
    daemon::is_ours(pid, "pgbouncer", config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tls_to_postgres_is_checked_against_the_ca_when_given() {
        let dir = Path::new("/lab");
        let files = Files::of(dir, "node1");
        let ca = Path::new("/lab/tls/ca.pem");
        let text = render(dir, &files, 6432, Some(ca)).expect("render");
        for line in [
            "server_tls_sslmode = verify-full",
            "server_tls_ca_file = /lab/tls/ca.pem",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in {text}");
        }
        let text = render(dir, &files, 6432, None).expect("render");
        assert!(!text.lines().any(|l| l.starts_with("server_tls")), "{text}");
    }

    #[test]
    fn template_includes_the_agents_file_and_pools_per_transaction() {
        let dir = Path::new("/lab");
        let text = render(dir, &Files::of(dir, "node1"), 6432, None).expect("render");
        assert!(text.starts_with("; managed by raftgres\n"), "{text}");
        assert!(text.ends_with('\n'));
        for line in [
            "%include /lab/node1-pgbouncer-databases.ini",
            "listen_addr = 127.0.0.1",
            "listen_port = 6432",
            "unix_socket_dir = /lab",
            "pidfile = /lab/node1-pgbouncer.pid",
            "auth_type = scram-sha-256",
            "auth_file = /lab/pgbouncer-users.txt",
            "admin_users = pgbouncer_admin",
            "pool_mode = transaction",
            "ignore_startup_parameters = extra_float_digits",
            "server_login_retry = 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} not a line of {text}"
            );
        }
        // The lab logs pgbouncer's stderr.
        assert!(
            !text.lines().any(|l| l.starts_with("logfile")),
            "logfile is set in {text}"
        );
    }

    /// The rendered file and the first databases file are accepted by the
    /// installed pgbouncer, whose admin console answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn installed_pgbouncer_runs_the_rendered_template() {
        let Some(bin) = binary() else {
            eprintln!("pgbouncer is not installed; skipping its config check");
            return;
        };
        let run_as = if nix::unistd::geteuid().is_root() {
            Some(
                User::from_name(USER)
                    .ok()
                    .flatten()
                    .expect("the postgres user"),
            )
        } else {
            None
        };
        let scratch = tempfile::Builder::new()
            .prefix("raftgres-lab-pgbouncer-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let dir = scratch.path();
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let files = Files::of(dir, "node1");
        let port = crate::process::free_port().expect("port");
        let auth = PgAuth {
            superuser: "su".into(),
            replication: "repl".into(),
            pgbouncer_admin: "console".into(),
        };
        write_files(dir, &files, port, &auth, None).expect("write files");
        if let Some(user) = &run_as {
            for path in [dir, &auth_file(dir)] {
                std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                    .expect("chown");
            }
        }
        let mut child = start(&bin, &files, run_as.as_ref(), port).expect("start pgbouncer");
        let mut target =
            raftgres_pooler::AdminTarget::new(LISTEN_ADDRESS.to_string(), port, ADMIN_USER);
        // Without the password the console is closed.
        let refused = raftgres_pooler::Admin::new(target.clone()).version().await;
        target.password = Some(auth.pgbouncer_admin.clone());
        let admin = raftgres_pooler::Admin::new(target);
        let version = admin.version().await;
        let databases = admin.show_databases().await;
        daemon::stop(&mut child, Duration::from_secs(5));
        assert!(
            refused.is_err(),
            "the console let a client in without a password"
        );
        assert!(
            version.expect("SHOW VERSION").starts_with("PgBouncer "),
            "see {}",
            files.log.display()
        );
        let names: Vec<String> = databases
            .expect("SHOW DATABASES")
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert!(names.contains(&WRITE_DB.to_owned()), "{names:?}");
        assert!(names.contains(&READ_DB.to_owned()), "{names:?}");
    }
}
