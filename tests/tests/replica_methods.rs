//! Patroni's `create_replica_methods` on a real lab: a reinitialize tries
//! the listed methods in order, goes past one that fails, and keeps the
//! copy of the first that succeeds (here a script that runs pg_basebackup
//! itself from the `--connstring` it is given), which then streams.

use raftgres_lab::Lab;
use raftgres_tests::http::{Api, api_url};
use raftgres_tests::{
    a_write_reaches, any_replica, data_file, settled_lab, shared_tempdir, until_streaming,
};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(90);
/// What the script leaves in the data directory it wrote; a pg_basebackup
/// copy of the primary has no such file.
const MARKER: &str = "raftgres-test-copied-by-script";

fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write the script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// `name`'s settings with `methods` and their sections added to its
/// `postgresql` section.
fn with_methods(lab: &Lab, name: &str, methods: &str) -> String {
    let member = lab.member(name).expect("member");
    let text = std::fs::read_to_string(&member.config).expect("settings");
    assert!(text.contains("\npostgresql:\n"), "{text}");
    text.replacen("\npostgresql:\n", &format!("\npostgresql:\n{methods}"), 1)
}

/// The binaries' directory the member's settings name, or the default.
fn bin_dir(settings: &str) -> String {
    settings
        .lines()
        .find_map(|line| line.trim().strip_prefix("bin_dir: "))
        .map(|dir| dir.trim_matches(['"', '\'']).to_owned())
        .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reinitialize_tries_the_methods_in_order_and_keeps_the_first_that_works() {
    let (_dir, lab, primary) = settled_lab(2).await;
    let api = Api::authenticated(&lab);
    let replica = any_replica(&lab, &primary);

    let scripts = shared_tempdir("raftgres-test-replica-methods");
    // Written by the scripts, which run as the server's user.
    let runs = scripts.path().join("runs");
    std::fs::create_dir(&runs).expect("mkdir");
    std::fs::set_permissions(&runs, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let settings =
        std::fs::read_to_string(&lab.member(&replica).expect("member").config).expect("settings");
    let broken = scripts.path().join("broken.sh");
    write_script(
        &broken,
        &format!(
            "#!/bin/sh\necho \"$@\" > {}/broken.ran\necho 'no backup to restore' >&2\nexit 1\n",
            runs.display()
        ),
    );
    let copy = scripts.path().join("copy.sh");
    write_script(
        &copy,
        &format!(
            r#"#!/bin/sh
set -e
for arg in "$@"; do
  case "$arg" in
    --datadir=*) datadir="${{arg#--datadir=}}" ;;
    --connstring=*) connstring="${{arg#--connstring=}}" ;;
    --marker=*) marker="${{arg#--marker=}}" ;;
  esac
done
echo "$@" > {runs}/copy_script.ran
{bin}/pg_basebackup -D "$datadir" -d "$connstring" -X stream --checkpoint=fast --no-password
echo "$marker" > "$datadir/{MARKER}"
"#,
            runs = runs.display(),
            bin = bin_dir(&settings),
        ),
    );
    let methods = format!(
        "  create_replica_methods: [broken, copy_script, basebackup]\n  \
         broken: {{command: {}}}\n  copy_script: {{command: {}, marker: made-by-copy-script}}\n",
        broken.display(),
        copy.display()
    );
    let member = lab.member(&replica).expect("member");
    let reply = api
        .reload_with(member, &with_methods(&lab, &replica, &methods))
        .await;
    assert!(
        reply.contains("postgresql.create_replica_methods"),
        "{reply}"
    );

    api.send_ok(
        "POST",
        &api_url(&lab, &replica),
        "/reinitialize",
        &json!({"force": true}),
    )
    .await;
    until_streaming(&lab, &replica, WITHIN, "the fresh replica streams").await;

    let broken_args = std::fs::read_to_string(runs.join("broken.ran")).expect("broken ran");
    assert!(broken_args.contains("--role=replica"), "{broken_args}");
    let copy_args = std::fs::read_to_string(runs.join("copy_script.ran")).expect("copy_script ran");
    assert!(
        copy_args.contains("--marker=made-by-copy-script") && copy_args.contains("--scope="),
        "{copy_args}"
    );
    assert!(!copy_args.contains("password"), "{copy_args}");
    // The copy in place is the script's, not a pg_basebackup one.
    let marker = std::fs::read_to_string(data_file(&lab, &replica, &format!("pgdata/{MARKER}")))
        .expect("the data directory is the script's copy");
    assert_eq!(marker.trim(), "made-by-copy-script");
    let log = std::fs::read_to_string(&member.log).unwrap_or_default();
    assert!(
        log.contains("replica creation method failed") && log.contains("broken"),
        "the agent's log names the failed method"
    );
    a_write_reaches(
        &lab,
        &primary,
        &replica,
        "after_custom_replica_method",
        WITHIN,
        "the script's copy replays new writes",
    )
    .await;
}
