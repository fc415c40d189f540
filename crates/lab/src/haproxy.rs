//! HAProxy in front of the lab's database members, from the same template
//! operators deploy (`deploy/haproxy/haproxy.cfg.j2`), so the lab tests the
//! shipped health-check wiring.

use crate::daemon::{self, Launch};
use crate::process::{LabError, io};
use crate::spec::LabMember;
use nix::unistd::User;
use serde::Serialize;
use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TEMPLATE: &str = include_str!("../../../deploy/haproxy/haproxy.cfg.j2");
/// `haproxy -c` only parses; far longer means something is wrong.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Where both frontends bind.
pub(crate) const LISTEN_ADDRESS: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The installed HAProxy the lab runs: Debian's `/usr/sbin/haproxy` (not on
/// a plain user's PATH), else the first `haproxy` on PATH.
pub fn binary() -> Option<PathBuf> {
    daemon::installed("haproxy")
}

#[derive(Serialize)]
struct Server<'a> {
    name: &'a str,
    host: &'a str,
    port: u16,
    check_port: u16,
}

/// The template rendered for the database members: Postgres as the server
/// address, the agent's REST API port for the checks, over HTTPS verified
/// against `check_ca_file` when given.
pub(crate) fn render(
    members: &[LabMember],
    write_port: u16,
    read_port: u16,
    check_ca_file: Option<&Path>,
) -> Result<String, LabError> {
    let mut servers = Vec::new();
    for m in members {
        let (Some(host), Some(port)) = (&m.pg_host, m.pg_port) else {
            continue;
        };
        let check_port = m
            .api_url
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .ok_or_else(|| {
                LabError::Setup(format!("{}'s api_url {} has no port", m.name, m.api_url))
            })?;
        servers.push(Server {
            name: &m.name,
            host,
            port,
            check_port,
        });
    }
    let mut env = minijinja::Environment::new();
    // As Ansible's template module does, so both render the same file.
    env.set_trim_blocks(true);
    env.add_template("haproxy.cfg.j2", TEMPLATE)
        .and_then(|_| env.get_template("haproxy.cfg.j2"))
        .and_then(|template| {
            template.render(minijinja::context! {
                listen_address => LISTEN_ADDRESS.to_string(),
                write_port,
                read_port,
                servers,
                check_ca_file => check_ca_file.map(|p| p.display().to_string()),
            })
        })
        .map_err(|e| {
            LabError::Setup(format!(
                "cannot render deploy/haproxy/haproxy.cfg.j2: {e}; fix the template"
            ))
        })
}

/// `haproxy -c -f CONFIG`, so a bad file is reported before anything starts.
pub(crate) fn check(binary: &Path, config: &Path) -> Result<(), LabError> {
    let shown = format!("{} -c -f {}", binary.display(), config.display());
    let mut child = Command::new(binary)
        .arg("-c")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io(binary))?;
    let deadline = Instant::now() + CHECK_TIMEOUT;
    while child.try_wait().map_err(io(binary))?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LabError::Setup(format!(
                "`{shown}` did not finish within {CHECK_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Its few lines of output fit in the pipes, so it could finish.
    let output = child.wait_with_output().map_err(io(binary))?;
    if output.status.success() {
        return Ok(());
    }
    let said: Vec<String> = [&output.stdout, &output.stderr]
        .iter()
        .map(|bytes| String::from_utf8_lossy(bytes).trim().to_owned())
        .filter(|text| !text.is_empty())
        .collect();
    Err(LabError::Setup(format!(
        "`{shown}` rejected the rendered deploy/haproxy/haproxy.cfg.j2 ({}): {}",
        output.status,
        said.join("\n")
    )))
}

/// Starts HAProxy in the foreground (`-db`), so the PID is HAProxy itself,
/// logging to `log`, and returns once both ports accept connections.
pub(crate) fn start(
    binary: &Path,
    config: &Path,
    log: &Path,
    run_as: Option<&User>,
    ports: [u16; 2],
) -> Result<Child, LabError> {
    // Not `-q`: it silences the template's `log stderr` too. So the log
    // shows each state change twice, as a warning and as a log line.
    let args = [OsStr::new("-db"), OsStr::new("-f"), config.as_os_str()];
    Launch {
        binary,
        args: &args,
        config,
        log,
        run_as,
        netns: None,
        listen: &ports.map(|port| SocketAddr::from((LISTEN_ADDRESS, port))),
    }
    .start()
}

/// Whether `pid` is still the HAProxy started with `config`: an HAProxy
/// executable whose command line names that file, and not a zombie. A
/// reused PID, or another lab's HAProxy, does not count.
pub(crate) fn is_ours(pid: u32, config: &Path) -> bool {
    daemon::is_ours(pid, "haproxy", config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, pg_port: Option<u16>, api_port: u16) -> LabMember {
        LabMember {
            name: name.to_owned(),
            node_id: 1,
            witness: pg_port.is_none(),
            raft_addr: "127.0.0.1:7101".to_owned(),
            config: PathBuf::from("/lab/m.yml"),
            data_dir: PathBuf::from("/lab/m"),
            log: PathBuf::from("/lab/m.log"),
            agent_pid: 0,
            pg_host: pg_port.map(|_| "127.0.0.1".to_owned()),
            pg_port,
            dsn: None,
            api_url: format!("http://127.0.0.1:{api_port}"),
            netns: None,
            pgbouncer_port: None,
            pgbouncer_dsn: None,
            pgbouncer_admin_dsn: None,
            pgbouncer_config: None,
            pgbouncer_databases_file: None,
            pgbouncer_log: None,
            pgbouncer_pid: None,
            pg_disk: None,
            pg_data_dir: None,
        }
    }

    fn rendered() -> String {
        let members = [
            member("node1", Some(5432), 8008),
            member("node2", Some(5433), 8009),
            member("witness", None, 8010),
        ];
        render(&members, 5000, 5001, None).expect("render")
    }

    #[test]
    fn checks_go_over_verified_tls_with_a_ca() {
        let members = [member("node1", Some(5432), 8008)];
        let text =
            render(&members, 5000, 5001, Some(Path::new("/lab/tls/ca.pem"))).expect("render");
        let line = "    server node1 127.0.0.1:5432 check port 8008 check-ssl verify required \
                    ca-file /lab/tls/ca.pem\n";
        assert_eq!(text.matches(line).count(), 2, "{text}");
    }

    #[test]
    fn template_checks_primary_for_writes_and_replica_for_reads() {
        let text = rendered();
        assert!(text.starts_with("# managed by raftgres\n"), "{text}");
        assert!(text.ends_with('\n'), "{text}");
        let block = |name: &str| {
            // At a line start: `default_backend` lines name the backends too.
            let start = text
                .find(&format!("\n{name}\n"))
                .unwrap_or_else(|| panic!("no {name} in {text}"));
            let rest = &text[start + 1..];
            rest[..rest.find("\n\n").unwrap_or(rest.len())].to_owned()
        };
        let servers = "    server node1 127.0.0.1:5432 check port 8008\n    \
                       server node2 127.0.0.1:5433 check port 8009";
        let write = block("backend postgres_primary");
        for line in [
            "option httpchk",
            "http-check send meth OPTIONS uri /primary",
            "http-check expect status 200",
            "default-server inter 1s fastinter 100ms downinter 200ms fall 2 rise 1 \
             on-marked-down shutdown-sessions",
            "option redispatch",
            servers,
        ] {
            assert!(write.contains(line), "{line:?} not in {write}");
        }
        let read = block("backend postgres_replicas");
        for line in [
            "balance roundrobin",
            "http-check send meth OPTIONS uri /replica",
            "http-check expect status 200",
            "default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions",
            servers,
        ] {
            assert!(read.contains(line), "{line:?} not in {read}");
        }
        assert!(block("frontend postgres_write").contains("bind 127.0.0.1:5000"));
        assert!(block("frontend postgres_read").contains("bind 127.0.0.1:5001"));
        assert!(!text.contains("witness"), "a witness runs no Postgres");
    }

    #[test]
    fn installed_haproxy_accepts_the_rendered_template() {
        let Some(bin) = binary() else {
            eprintln!("HAProxy is not installed; skipping its config check");
            return;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, rendered()).expect("write config");
        check(&bin, &config).expect("haproxy -c");
    }
}
