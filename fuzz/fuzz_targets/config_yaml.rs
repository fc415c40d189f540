//! The agent's settings file, through the one public entry point the agent
//! uses (`raftgres_config::load_with_env`, which reads a path): it never
//! panics, a loaded config plans no change against itself, and its passwords
//! do not show in its `Debug` output (which ends up in logs).
//!
//! The input is the file's bytes up to the first NUL; after it, one
//! `RAFTGRES_*=value` environment override per line.

#![no_main]

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use raftgres_config::{load_with_env, reload_plan, reloaded};

/// One file per fuzzing process, rewritten for every input; mode 0600 so
/// that a password in it is not refused as exposed before it is parsed.
fn settings_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        std::env::temp_dir().join(format!("raftgres-fuzz-config-{}.yaml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let (file, env) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let path = settings_file();
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("write the settings file");
    out.write_all(file).expect("write the settings file");
    drop(out);

    let Ok(config) = load_with_env(path, env.clone()) else {
        return;
    };
    assert!(
        reload_plan(&config, &config).is_empty(),
        "a config plans a change against itself"
    );
    assert_eq!(reloaded(&config, &config), config);
    assert_eq!(
        load_with_env(path, env).ok().as_ref(),
        Some(&config),
        "loading is not deterministic"
    );

    // The passwords must not change the Debug output at all: it ends up
    // in logs.
    let mut other = config.clone();
    if let Some(auth) = &mut other.restapi.authentication {
        auth.password = format!("not-{}", auth.password);
    }
    if let Some(password) = other
        .pgbouncer
        .as_mut()
        .and_then(|p| p.admin_password.as_mut())
    {
        *password = format!("not-{password}");
    }
    assert_eq!(
        format!("{config:?}"),
        format!("{other:?}"),
        "a password shows in the config's Debug output"
    );
});
