//! The I/O edge of [`crate::transition`]: runs its steps against one
//! pgbouncer's databases file and admin console.

use crate::admin::Admin;
use crate::error::{PoolerError, Result};
use crate::file::write_databases_file;
use crate::routes::Routes;
use crate::settings::PoolerSettings;
use crate::transition::{self, Action, Applied, Desired};

/// How a run that reached its end went.
#[derive(Debug)]
pub enum Executed {
    AsPlanned,
    /// The switchover's PAUSE failed or timed out and was counted as done
    /// ([`Action::Pause`]); the error says what the clients see now.
    PauseUnfinished(PoolerError),
}

/// Takes pgbouncer from `applied` towards `desired`: runs the planned steps
/// in order and records each that succeeded in `applied`. It stops at the
/// first failure; the next call plans what is left.
pub async fn converge<S: Copy + PartialEq>(
    admin: &Admin,
    settings: &PoolerSettings,
    applied: &mut Applied<S>,
    desired: &Desired<S>,
) -> Result<Executed> {
    let steps = applied.plan(desired);
    run(admin, settings, applied, desired, &steps).await
}

/// Fences the write database whatever pgbouncer did before: its entry may
/// name a stale primary, or no server, where one client's login would shut
/// the pool for `server_login_retry` once a primary is known. Returns what
/// pgbouncer does then.
pub async fn fence_at_start<S: Copy + PartialEq>(
    admin: &Admin,
    settings: &PoolerSettings,
) -> Result<Applied<S>> {
    let knows_write_db = admin
        .show_databases()
        .await?
        .iter()
        .any(|d| d.name == settings.write_db);
    let mut applied = Applied::unknown();
    let nowhere = Desired::without_switchover(settings.routes(None, Vec::new()));
    let steps = transition::fence_at_start(knows_write_db);
    run(admin, settings, &mut applied, &nowhere, &steps).await?;
    Ok(applied)
}

async fn run<S: Copy + PartialEq>(
    admin: &Admin,
    settings: &PoolerSettings,
    applied: &mut Applied<S>,
    desired: &Desired<S>,
    steps: &[Action<S>],
) -> Result<Executed> {
    let db = settings.write_db.as_str();
    let mut executed = Executed::AsPlanned;
    for &step in steps {
        match step {
            Action::Fence => admin.fence(db).await?,
            Action::Rewrite => rewrite(settings, admin, &desired.routes).await?,
            Action::Enable => admin.enable(db).await?,
            Action::KillResume => {
                admin.kill(db).await?;
                admin.resume(Some(db)).await?;
            }
            Action::Pause(_) => {
                if let Err(e) = admin.pause(Some(db), settings.pause_timeout).await {
                    executed = Executed::PauseUnfinished(e);
                }
            }
            Action::PauseFenced(_) => {}
            Action::Resume => admin.resume(Some(db)).await?,
        }
        applied.record(step, desired);
    }
    Ok(executed)
}

async fn rewrite(settings: &PoolerSettings, admin: &Admin, routes: &Routes) -> Result<()> {
    write_databases_file(&settings.databases_file, routes)?;
    // Always RELOAD: the file may have been written by an earlier run
    // whose RELOAD never happened.
    admin.reload().await?;
    if let Some(read_db) = &routes.read_db {
        if routes.read.is_empty() {
            admin.disable(read_db).await?;
        } else {
            admin.enable(read_db).await?;
        }
    }
    Ok(())
}
