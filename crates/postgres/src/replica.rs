//! Patroni's `create_replica_methods`: the ways a replica's data is
//! created, tried in order until one succeeds. `basebackup` is
//! pg_basebackup ([`crate::basebackup`]); any other method is the
//! operator's program (a pgBackRest or WAL-G restore, say).
//!
//! A program writes into a fresh directory beside the data directory, as
//! pg_basebackup does, so that a method that fails leaves the old data
//! intact. Its copy is accepted only when it is a data directory of this
//! cluster (its system identifier is the cluster's), then configured as a
//! standby exactly as a pg_basebackup copy is, and swapped in. A program
//! has no time limit, as pg_basebackup has none: a restore of a large
//! database takes hours; an agent that stops kills it with every process
//! it started.

use crate::bootstrap::{basebackup_with, following_tool, refuse_if_running, standby};
use crate::conf;
use crate::controldata::controldata;
use crate::error::{PgError, Result};
use crate::files;
use crate::progress::ProgressSink;
use crate::settings::{PgSettings, Upstream};
use crate::version::{self, bin};

/// One entry of `postgresql.create_replica_methods`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaMethod {
    /// pg_basebackup, with the operator's extra options (`--max-rate=100M`).
    Basebackup { options: Vec<String> },
    /// The operator's program.
    Command(CommandMethod),
}

impl ReplicaMethod {
    /// The name the operator listed it under.
    pub fn name(&self) -> &str {
        match self {
            ReplicaMethod::Basebackup { .. } => "basebackup",
            ReplicaMethod::Command(method) => &method.name,
        }
    }
}

/// A method section of `postgresql`: Patroni's `command`, `no_params` and
/// the other keys, which the program gets as `--key=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMethod {
    pub name: String,
    /// The program and its own arguments, already split into words.
    pub command: Vec<String>,
    /// No `--scope`, `--datadir`, `--role` and `--connstring` arguments.
    pub no_params: bool,
    /// The section's other keys, in order.
    pub options: Vec<(String, String)>,
}

impl CommandMethod {
    /// The words to execute, as Patroni builds them: the command, the
    /// four standard arguments unless `no_params`, then the options.
    pub fn argv(&self, scope: &str, data_dir: &str, connstring: &str) -> Vec<String> {
        let mut argv = self.command.clone();
        if !self.no_params {
            argv.extend([
                format!("--scope={scope}"),
                format!("--datadir={data_dir}"),
                "--role=replica".to_owned(),
                format!("--connstring={connstring}"),
            ]);
        }
        argv.extend(self.options.iter().map(|(k, v)| format!("--{k}={v}")));
        argv
    }
}

/// Where a replica is created from, and what it must be.
#[derive(Debug, Clone)]
pub struct ReplicaSource<'a> {
    pub upstream: &'a Upstream,
    /// The slot the standby will stream through.
    pub slot: Option<&'a str>,
    /// The cluster's name, `--scope` of a program.
    pub scope: &'a str,
    /// The cluster's system identifier: a program's copy must have it.
    pub system_id: Option<&'a str>,
}

/// Creates the replica with the first of `methods` that succeeds;
/// `starting` is told each method's name before it runs. Each failure is
/// logged with the method's name; when all fail, the old data is intact
/// and the error lists them.
pub async fn create_replica(
    settings: &PgSettings,
    methods: &[ReplicaMethod],
    source: &ReplicaSource<'_>,
    progress: Option<&ProgressSink>,
    mut starting: impl FnMut(&str),
) -> Result<String> {
    let mut tried = Vec::new();
    for method in methods {
        let name = method.name();
        starting(name);
        tracing::info!(method = name, upstream = %source.upstream, "creating the replica");
        let created = match method {
            ReplicaMethod::Basebackup { options } => {
                basebackup_with(settings, source.upstream, source.slot, options, progress).await
            }
            ReplicaMethod::Command(command) => run_command(settings, command, source).await,
        };
        match created {
            Ok(()) => {
                tracing::info!(method = name, upstream = %source.upstream, "replica created");
                return Ok(name.to_owned());
            }
            Err(e) => {
                tracing::warn!(method = name, error = %e, "replica creation method failed; trying the next one");
                tried.push(format!("{name}: {e}"));
            }
        }
    }
    Err(PgError::NoReplicaMethodSucceeded {
        tried: tried.join("; "),
    })
}

/// Runs the operator's program into a fresh directory, checks and
/// configures what it wrote, and swaps it in.
async fn run_command(
    settings: &PgSettings,
    method: &CommandMethod,
    source: &ReplicaSource<'_>,
) -> Result<()> {
    // Only to check the settings and the binaries the copy must suit.
    let (_, major) = following_tool(settings, bin::PG_CONTROLDATA, source.slot).await?;
    refuse_if_running(settings)?;
    files::write_passfile(settings)?;
    let target = files::clone_target(&settings.data_dir, settings.run_as)?;
    let failed = |reason: String| PgError::ReplicaMethodFailed {
        method: method.name.clone(),
        reason,
    };
    let created = async {
        let connstring = connstring(settings, source.upstream);
        let argv = method.argv(source.scope, &target.display().to_string(), &connstring);
        run_program(settings, &method.name, &argv)
            .await
            .map_err(failed)?;
        if !crate::bootstrap::is_initialized(&target) {
            return Err(failed(format!(
                "it exited 0 but {} holds no PG_VERSION: it wrote no data directory there",
                target.display()
            )));
        }
        if let Some(found) = version::data_dir_major(&target)? {
            let what = format!("the copy made by {}", method.name);
            version::check_same_major(settings, what, found, major)?;
        }
        let staged = PgSettings {
            data_dir: target.clone(),
            ..settings.clone()
        };
        let control = controldata(&staged).await?;
        if let Some(expected) = source.system_id
            && control.system_id != expected
        {
            return Err(failed(format!(
                "its copy has system identifier {}, not this cluster's {expected}: a copy of another cluster is refused",
                control.system_id
            )));
        }
        conf::write_managed_conf(&staged, &standby(source.upstream, source.slot))
    }
    .await;
    if let Err(e) = created {
        if let Err(cleanup) = files::discard_clone(&settings.data_dir, &target) {
            tracing::warn!(error = %cleanup, "could not remove the failed copy");
        }
        return Err(e);
    }
    files::swap_in_clone(&settings.data_dir, &target)
}

/// A libpq connection string to `upstream` as the replication login, the
/// one pg_basebackup uses; its password is in the password file
/// (`PGPASSFILE` in the program's environment), never here.
pub fn connstring(settings: &PgSettings, upstream: &Upstream) -> String {
    conf::conninfo(&[
        ("host", &upstream.host),
        ("port", &upstream.port.to_string()),
        ("user", &settings.replication.user),
        ("dbname", "postgres"),
        (
            "application_name",
            &format!("{}-clone", settings.application_name),
        ),
    ])
}

/// Runs `argv` as the server's user, in a process group of its own that
/// is killed whole if the caller gives up (the agent stops); its output is
/// logged. `Err` holds why it failed.
async fn run_program(
    settings: &PgSettings,
    name: &str,
    argv: &[String],
) -> std::result::Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("its command is empty".to_owned());
    };
    let mut command = tokio::process::Command::new(program);
    crate::tools::as_server_tool(&mut command, settings);
    // A group of its own, so that the guard below kills what it started too.
    command.args(args).process_group(0);
    let child = command
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let group = GroupGuard(child.id());
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| format!("cannot wait for {program}: {e}"))?;
    std::mem::forget(group);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    tracing::info!(method = name, status = %output.status, stdout = %stdout.trim(), stderr = %stderr.trim(), "replica creation program ended");
    if output.status.success() {
        Ok(())
    } else {
        let tail: String = {
            let text = stderr.trim();
            let start = text.len().saturating_sub(2000);
            text.get(start..).unwrap_or(text).to_owned()
        };
        Err(format!("{program} exited with {}: {tail}", output.status))
    }
}

/// Kills a program's whole process group when the wait for it is dropped
/// (the agent stops while a restore runs), so nothing it started lingers.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|pid| i32::try_from(pid).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(no_params: bool) -> CommandMethod {
        CommandMethod {
            name: "wal_g".into(),
            command: vec!["/usr/local/bin/wal-g-restore".into(), "--fast".into()],
            no_params,
            options: vec![("envdir".into(), "/etc/wal-g".into())],
        }
    }

    #[test]
    fn a_program_gets_patroni_s_four_arguments_then_its_options() {
        assert_eq!(
            method(false).argv("demo", "/data/pgdata.clone", "host='h' port='5432'"),
            [
                "/usr/local/bin/wal-g-restore",
                "--fast",
                "--scope=demo",
                "--datadir=/data/pgdata.clone",
                "--role=replica",
                "--connstring=host='h' port='5432'",
                "--envdir=/etc/wal-g",
            ]
        );
    }

    #[test]
    fn no_params_leaves_out_the_four_but_keeps_the_options() {
        assert_eq!(
            method(true).argv("demo", "/d", "c"),
            [
                "/usr/local/bin/wal-g-restore",
                "--fast",
                "--envdir=/etc/wal-g"
            ]
        );
    }

    #[test]
    fn the_connstring_names_the_replication_login_and_no_password() {
        let mut settings = PgSettings::new("/data/pgdata", 5433, "node2");
        settings.replication = crate::Login::new("replicator", "s3cret");
        let up = Upstream {
            host: "10.0.0.1".into(),
            port: 5432,
        };
        let text = connstring(&settings, &up);
        assert_eq!(
            text,
            "host='10.0.0.1' port='5432' user='replicator' dbname='postgres' application_name='node2-clone'"
        );
        assert!(!text.contains("s3cret"));
    }
}
