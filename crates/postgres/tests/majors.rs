//! Binaries of one PostgreSQL major against data of another: refused with
//! an error that names both majors and `postgresql.bin_dir`, before any
//! server or tool runs on the data.
//!
//! The data here is the system's PostgreSQL 15; the other majors come from
//! `scripts/fetch-postgres 14` and `scripts/fetch-postgres 18`, which
//! `scripts/test-all` runs first. Without them these tests say so loudly
//! and pass.

mod common;

use common::*;
use raftgres_postgres::{Login, PgError, Postmaster, basebackup, initdb};
use std::path::PathBuf;

/// `ROOT/MAJOR/bin`, as `scripts/fetch-postgres MAJOR ROOT/MAJOR` leaves
/// it: ROOT is `PG_MAJORS_ROOT` (scripts/test-all sets it), else the
/// script's default, `target/postgres`.
fn fetched(major: u32) -> Option<PathBuf> {
    let root = std::env::var_os("PG_MAJORS_ROOT").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/postgres"),
        PathBuf::from,
    );
    let bin = root.join(major.to_string()).join("bin");
    if bin.join("postgres").is_file() {
        return Some(bin);
    }
    eprintln!(
        "\n!!! SKIPPED: PostgreSQL {major}'s binaries are not in {}; run `scripts/fetch-postgres {major}` (scripts/test-all does), or set PG_MAJORS_ROOT !!!\n",
        bin.display()
    );
    None
}

#[tokio::test]
async fn a_data_directory_of_15_does_not_start_on_18s_binaries() {
    let Some(scratch) = scratch() else { return };
    let Some(bin_18) = fetched(18) else { return };
    let mut node = scratch.initialized("n1").await;
    node.settings.bin_dir = bin_18.clone();
    let Err(err) = Postmaster::start(&node.settings).await else {
        panic!("18's postgres must not start on 15's data");
    };
    assert!(
        matches!(
            err,
            PgError::MajorMismatch {
                found: 15,
                major: 18,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    for part in [
        node.settings.data_dir.display().to_string(),
        bin_18.display().to_string(),
        "postgresql.bin_dir".into(),
    ] {
        assert!(text.contains(&part), "{part} in {text}");
    }
    assert!(
        !node.settings.data_dir.join("postmaster.pid").exists(),
        "no server ran"
    );
}

#[tokio::test]
async fn a_clone_of_15_with_14s_pg_basebackup_is_refused() {
    let Some(scratch) = scratch() else { return };
    let Some(bin_14) = fetched(14) else { return };
    let primary = scratch.running("alpha").await;
    let mut spare = Node::new(scratch.settings("beta"));
    spare.settings.bin_dir = bin_14;
    // Which 14 would refuse on its own (see the test below).
    spare.settings.rewind = None;
    let err = basebackup(&spare.settings, &primary.upstream(), None, None)
        .await
        .expect_err("14's pg_basebackup cannot copy 15");
    assert!(
        matches!(
            err,
            PgError::MajorMismatch {
                found: 15,
                major: 14,
                ..
            }
        ),
        "{err}"
    );
    assert!(!raftgres_postgres::is_initialized(&spare.settings.data_dir));
}

#[tokio::test]
async fn on_14_a_rewind_login_apart_from_the_superuser_is_refused() {
    let Some(scratch) = scratch() else { return };
    let Some(bin_14) = fetched(14) else { return };
    let mut settings = scratch.settings("n1");
    settings.bin_dir = bin_14;
    settings.rewind = Some(Login::new("rewinder", "rewinder-secret"));
    let err = initdb(&settings)
        .await
        .expect_err("14 has no pg_checkpoint");
    assert!(
        matches!(err, PgError::RewindLoginNeedsMajor { major: 14, .. }),
        "{err}"
    );
    assert!(!raftgres_postgres::is_initialized(&settings.data_dir));
}
