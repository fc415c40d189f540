//! Creating a data directory: initdb for the first member, pg_basebackup for
//! the others, pg_rewind for an ex-primary that must follow a new one.

use crate::conf;
use crate::controldata::controldata;
use crate::error::{PgError, Result};
use crate::files;
use crate::procfs;
use crate::progress::{self, ProgressSink};
use crate::settings::{PgSettings, Role, Upstream};
use crate::tools::{Tool, stderr_text};
use crate::version::{self, bin, file};
use std::path::Path;
use std::time::Duration;

/// `CHECKPOINT` on the rewind source; generous, since it writes every dirty
/// buffer of a busy primary.
const SOURCE_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a freshly created cluster is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub system_id: String,
    pub timeline: u32,
}

/// Whether `data_dir` holds a data directory (it has `PG_VERSION`).
pub fn is_initialized(data_dir: &Path) -> bool {
    data_dir.join(file::PG_VERSION).is_file()
}

pub(crate) fn require_initialized(data_dir: &Path) -> Result<()> {
    if is_initialized(data_dir) {
        Ok(())
    } else {
        Err(PgError::NotInitialized {
            path: data_dir.to_path_buf(),
        })
    }
}

/// Replacing or rewinding files under a running server would corrupt it.
pub(crate) fn refuse_if_running(settings: &PgSettings) -> Result<()> {
    let (Ok(data_dir), Ok(exe)) = (
        std::fs::canonicalize(&settings.data_dir),
        std::fs::canonicalize(settings.binary(bin::POSTGRES)),
    ) else {
        return Ok(());
    };
    let pids = procfs::processes_running_in(&data_dir, &exe);
    if pids.is_empty() {
        Ok(())
    } else {
        Err(PgError::AlreadyRunning { data_dir, pids })
    }
}

/// Creates a new cluster in an empty (or absent) `data_dir`, configured as
/// a primary, with the superuser's password set and the replication (and
/// rewind) roles created.
///
/// Checksums are on so that `pg_rewind` works (`wal_log_hints` is also set
/// in the managed configuration). The roles get SCRAM verifiers, never the
/// clear text; `pg_hba.conf` is the managed one (no `trust`).
pub async fn initdb(settings: &PgSettings) -> Result<ClusterInfo> {
    settings.validate()?;
    settings.require_binary(bin::POSTGRES)?;
    let tool = Tool::new(settings, bin::INITDB)?;
    files::empty_data_dir_for_initdb(&settings.data_dir, settings.run_as)?;
    // Before anything is written: the roles below depend on the major.
    version::check_binaries(settings).await?;
    tool.arg("-D")
        .arg(&settings.data_dir)
        .arg("--data-checksums")
        .arg("-U")
        .arg(&settings.superuser.user)
        // Nobody logs in before the managed pg_hba.conf replaces these, and
        // a password method here would need the password in a file.
        .arg("--auth-local=peer")
        .arg("--auth-host=reject")
        // The C locale sorts the same on every machine, so a clone on
        // another host never sees indexes in an order it disagrees with.
        .arg("--encoding=UTF8")
        .arg("--locale=C")
        .run()
        .await?;
    conf::write_managed_conf(settings, &Role::Primary)?;
    single_user(settings, &roles_sql(settings)).await?;
    let control = controldata(settings).await?;
    tracing::info!(data_dir = %settings.data_dir.display(), system_id = %control.system_id, "initialized a new cluster");
    Ok(ClusterInfo {
        system_id: control.system_id,
        timeline: control.timeline,
    })
}

/// One statement per line, as single-user mode reads them. Names are
/// checked identifiers (see `PgSettings::validate`); passwords go in as
/// SCRAM verifiers.
fn roles_sql(settings: &PgSettings) -> String {
    let su = &settings.superuser;
    let mut sql = format!(
        "ALTER ROLE {} WITH PASSWORD '{}';\n",
        su.user,
        su.password.scram_verifier()
    );
    let repl = &settings.replication;
    if repl.user != su.user {
        sql.push_str(&format!(
            "CREATE ROLE {} WITH LOGIN REPLICATION PASSWORD '{}';\n",
            repl.user,
            repl.password.scram_verifier()
        ));
    }
    if let Some(rewind) = settings.rewind.as_ref().filter(|r| r.user != su.user) {
        let user = &rewind.user;
        if rewind.user != repl.user {
            sql.push_str(&format!(
                "CREATE ROLE {user} WITH LOGIN PASSWORD '{}';\n",
                rewind.password.scram_verifier()
            ));
        }
        // What pg_rewind reads from its source (its documentation's list),
        // and the CHECKPOINT the agent runs there first.
        for function in [
            "pg_ls_dir(text, boolean, boolean)",
            "pg_stat_file(text, boolean)",
            "pg_read_binary_file(text)",
            "pg_read_binary_file(text, bigint, bigint, boolean)",
        ] {
            sql.push_str(&format!(
                "GRANT EXECUTE ON FUNCTION pg_catalog.{function} TO {user};\n"
            ));
        }
        sql.push_str(&format!("GRANT pg_checkpoint TO {user};\n"));
    }
    sql
}

/// `program`, checked with everything a clone or a rewind needs before it
/// touches the data directory: valid settings, the server binary the copy
/// is configured for, a slot name the upstream would accept, and binaries
/// that can serve the settings. Returns the binaries' major too.
pub(crate) async fn following_tool<'a>(
    settings: &'a PgSettings,
    program: &'static str,
    slot: Option<&str>,
) -> Result<(Tool<'a>, u32)> {
    settings.validate()?;
    settings.require_binary(bin::POSTGRES)?;
    if let Some(slot) = slot {
        crate::control::check_slot_name(slot)?;
    }
    let tool = Tool::new(settings, program)?;
    let major = version::binaries_major(settings).await?;
    version::check_settings(settings, major)?;
    Ok((tool, major))
}

/// Clones `upstream` into `settings.data_dir` with `pg_basebackup` and
/// configures the copy as its standby (streaming through `slot` if given).
///
/// A data directory that holds data keeps it until the new copy is
/// complete (the clone is written beside it, then swapped in); the old
/// data is then removed. Refuses while a server runs from it.
pub async fn basebackup(
    settings: &PgSettings,
    upstream: &Upstream,
    slot: Option<&str>,
    progress: Option<&ProgressSink>,
) -> Result<()> {
    basebackup_with(settings, upstream, slot, &[], progress).await
}

/// [`basebackup`] with the operator's own pg_basebackup `options`
/// (`postgresql.basebackup`, as `--key=value` or `--flag`), after ours.
pub(crate) async fn basebackup_with(
    settings: &PgSettings,
    upstream: &Upstream,
    slot: Option<&str>,
    options: &[String],
    progress: Option<&ProgressSink>,
) -> Result<()> {
    // The data directory being replaced may be of another major: only the
    // copy has to match the binaries.
    let (tool, major) = following_tool(settings, bin::PG_BASEBACKUP, slot).await?;
    refuse_if_running(settings)?;
    files::write_passfile(settings)?;
    let target = files::clone_target(&settings.data_dir, settings.run_as)?;
    tracing::info!(%upstream, data_dir = %settings.data_dir.display(), target = %target.display(), "cloning with pg_basebackup");
    let cloned = async {
        tool.arg("-D")
            .arg(&target)
            .arg("-h")
            .arg(&upstream.host)
            .arg("-p")
            .arg(upstream.port.to_string())
            .arg("-U")
            .arg(&settings.replication.user)
            // The password comes from the password file (PGPASSFILE).
            .arg("--no-password")
            .arg("--wal-method=stream")
            .arg("--checkpoint=fast")
            .arg("--progress")
            .args(options)
            .run_reporting(progress::reporter(progress))
            .await
            .map_err(|e| match e {
                // It refuses a server newer than itself, in its own words.
                PgError::ToolFailed { ref stderr, .. } => {
                    match version::incompatible_server_major(stderr) {
                        Some(found) => PgError::MajorMismatch {
                            what: format!("the upstream {upstream}"),
                            found,
                            bin_dir: settings.bin_dir.clone(),
                            major,
                        },
                        None => e,
                    }
                }
                other => other,
            })?;
        // An older server it copies, and these binaries could not start
        // the copy: refuse it before it replaces anything.
        if let Some(found) = version::data_dir_major(&target)? {
            let what = format!("the copy of the upstream {upstream}");
            version::check_same_major(settings, what, found, major)?;
        }
        // The copy carries the upstream's own files (its port, its address).
        let staged = PgSettings {
            data_dir: target.clone(),
            ..settings.clone()
        };
        conf::write_managed_conf(&staged, &standby(upstream, slot))
    }
    .await;
    if let Err(e) = cloned {
        // pg_basebackup empties what it wrote on failure, but not when it
        // is killed, nor what the configuration step wrote.
        if let Err(cleanup) = files::discard_clone(&settings.data_dir, &target) {
            tracing::warn!(error = %cleanup, "could not remove the failed clone");
        }
        return Err(e);
    }
    files::swap_in_clone(&settings.data_dir, &target)?;
    tracing::info!(%upstream, "clone complete");
    Ok(())
}

/// Rewinds a stopped ex-primary (or a standby that went past the fork
/// point) to `upstream`'s timeline with `pg_rewind`, then configures it as
/// that server's standby. Start it afterwards; it replays `upstream`'s WAL
/// from the last common checkpoint.
///
/// pg_rewind accepts only a cleanly shut down target; a crashed or fenced
/// one is first brought to a clean state by crash recovery in single-user
/// mode (no connections possible). `upstream` must run and let the rewind
/// login (or the superuser) in; it gets a `CHECKPOINT` first, because after a promotion
/// its control file shows the old timeline until a checkpoint completes, and
/// pg_rewind would wrongly conclude "no rewind required".
///
/// Fails with [`PgError::RewindFailed`] when pg_rewind itself fails (the
/// target's WAL since the fork was recycled, timelines unrelated, ...);
/// the data directory may then be unusable, so clone with [`basebackup`].
pub async fn rewind(
    settings: &PgSettings,
    upstream: &Upstream,
    slot: Option<&str>,
    progress: Option<&ProgressSink>,
) -> Result<()> {
    // Nothing to rewind is the error to name, before the binaries are run.
    settings.validate()?;
    require_initialized(&settings.data_dir)?;
    let (tool, major) = following_tool(settings, bin::PG_REWIND, slot).await?;
    if let Some(found) = version::data_dir_major(&settings.data_dir)? {
        version::check_same_major(settings, settings.data_dir.display(), found, major)?;
    }
    refuse_if_running(settings)?;

    let before = controldata(settings).await?;
    if !before.state.is_clean_shutdown() {
        tracing::warn!(state = ?before.state, "rewind target was not shut down cleanly; running crash recovery first");
        // Single-user mode refuses standby mode; the crash recovery it does
        // instead replays only local WAL and ends without a new timeline.
        for signal in [file::STANDBY_SIGNAL, file::RECOVERY_SIGNAL] {
            files::remove_if_exists(&settings.data_dir.join(signal))?;
        }
        single_user(settings, "").await?;
        let after = controldata(settings).await?;
        if !after.state.is_clean_shutdown() {
            return Err(PgError::RewindFailed {
                upstream: upstream.to_string(),
                status: "not run".to_owned(),
                stderr: format!(
                    "crash recovery left the target {:?}, not shut down",
                    after.state
                ),
            });
        }
    }

    checkpoint_source(settings, upstream).await?;
    files::write_passfile(settings)?;
    let source = conf::conninfo(&[
        ("host", &upstream.host),
        ("port", &upstream.port.to_string()),
        ("user", &settings.rewinder().user),
        ("dbname", "postgres"),
        ("connect_timeout", "10"),
        (
            "application_name",
            &format!("{}-rewind", settings.application_name),
        ),
    ]);
    tracing::info!(%upstream, data_dir = %settings.data_dir.display(), "running pg_rewind");
    let output = tool
        .arg("--target-pgdata")
        .arg(&settings.data_dir)
        .arg("--source-server")
        .arg(&source)
        .arg("--progress")
        .output_reporting(progress::reporter(progress))
        .await?;
    let report = stderr_text(&output);
    if !output.status.success() {
        return Err(PgError::RewindFailed {
            upstream: upstream.to_string(),
            status: output.status.to_string(),
            stderr: report,
        });
    }
    tracing::info!(%upstream, output = %report, "pg_rewind done");
    // pg_rewind copied the upstream's configuration files over ours.
    conf::write_managed_conf(settings, &standby(upstream, slot))
}

async fn checkpoint_source(settings: &PgSettings, upstream: &Upstream) -> Result<()> {
    const OP: &str = "CHECKPOINT on the rewind source";
    let client = crate::session::connect(
        settings,
        settings.tls.connector()?,
        &upstream.host,
        upstream.port,
        settings.rewinder(),
    )
    .await?;
    tokio::time::timeout(
        SOURCE_CHECKPOINT_TIMEOUT,
        client.batch_execute("CHECKPOINT"),
    )
    .await
    .map_err(|_| PgError::Timeout {
        operation: OP,
        after: SOURCE_CHECKPOINT_TIMEOUT,
    })?
    .map_err(|e| PgError::Query {
        operation: OP,
        reason: crate::error::describe(&e),
    })
}

pub(crate) fn standby(upstream: &Upstream, slot: Option<&str>) -> Role {
    Role::Standby {
        upstream: upstream.clone(),
        slot: slot.map(str::to_owned),
    }
}

/// Runs `input` through single-user `postgres` (no postmaster, no network);
/// with no input it only finishes crash recovery and shuts down cleanly.
async fn single_user(settings: &PgSettings, input: &str) -> Result<()> {
    refuse_if_running(settings)?;
    require_initialized(&settings.data_dir)?;
    Tool::new(settings, bin::POSTGRES)?
        .arg("--single")
        .arg("-D")
        .arg(&settings.data_dir)
        // Otherwise a failing statement is only printed and the exit
        // status is still 0.
        .arg("-c")
        .arg("exit_on_error=on")
        // A failing statement is not echoed into the error: it may hold a
        // password verifier.
        .arg("-c")
        .arg("log_min_error_statement=panic")
        .arg("postgres")
        .stdin(input.as_bytes())
        .run()
        .await
        .map(drop)
        .map_err(|e| match e {
            PgError::ToolFailed { status, stderr, .. } => PgError::ToolFailed {
                program: "postgres --single".to_owned(),
                status,
                stderr,
            },
            other => other,
        })
}
