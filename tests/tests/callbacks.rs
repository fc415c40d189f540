//! `postgresql.callbacks` on a real lab, as a Patroni user relies on them to
//! move a virtual IP: added by a reload, each member's script is called with
//! the event, its role and the scope on a reload, on both sides of a
//! switchover (the old primary's stop and role change, the new primary's
//! role change) and on a restart; `before_stop` runs before each clean stop;
//! a `pre_promote` that fails vetoes the promotion and the next candidate
//! takes over.

use raftgres_lab::Lab;
use raftgres_tests::http::{Api, api_url};
use raftgres_tests::{
    any_replica, count_rows, eventually, execute_on, other_member, settled_lab,
    until_sole_writable, until_streaming,
};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(60);

/// Where `name`'s callback script writes: one line per call, its arguments.
fn calls_file(lab: &Lab, name: &str) -> PathBuf {
    lab.member(name)
        .expect("member")
        .data_dir
        .join("callbacks.log")
}

fn calls(lab: &Lab, name: &str) -> Vec<String> {
    std::fs::read_to_string(calls_file(lab, name))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until `name`'s calls hold `wanted` in this order (other calls may
/// come between them).
async fn until_called(lab: &Lab, name: &str, wanted: &[&str]) {
    let what = format!("{name}'s callbacks are called: {wanted:?}");
    let in_order = |seen: &[String]| {
        let mut seen = seen.iter();
        wanted.iter().all(|w| seen.any(|s| s == w))
    };
    let found = eventually(WITHIN, &what, || async {
        let seen = calls(lab, name);
        in_order(&seen).then_some(seen)
    })
    .await;
    assert!(in_order(&found), "{found:?}");
}

/// Writes an executable script into the lab's directory.
fn script(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// `text` with `line` added at the top of its `postgresql` section.
fn in_postgresql_section(text: &str, line: &str) -> String {
    let header = "postgresql:\n";
    let at = text.find(header).expect("postgresql section") + header.len();
    format!("{}{line}{}", &text[..at], &text[at..])
}

/// Adds every callback to `name`'s settings file, each running `script`
/// with this member's calls file first, and reloads the agent.
async fn add_callbacks(lab: &Lab, api: &Api, name: &str, script: &std::path::Path) {
    let member = lab.member(name).expect("member");
    let text = std::fs::read_to_string(&member.config).expect("settings");
    let command = format!("{} '{}'", script.display(), calls_file(lab, name).display());
    let events = [
        "on_start",
        "on_stop",
        "on_restart",
        "on_reload",
        "on_role_change",
    ];
    let lines: String = events
        .iter()
        .map(|event| format!("    {event}: {command}\n"))
        .collect();
    // Patroni passes before_stop no arguments: the word makes its line.
    let edited = in_postgresql_section(
        &text,
        &format!("  before_stop: {command} before_stop\n  callbacks:\n{lines}"),
    );
    let body = api.reload_with(member, &edited).await;
    assert!(body.contains("postgresql.callbacks"), "{body}");
    assert!(body.contains("postgresql.before_stop"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_called_on_reload_switchover_and_restart() {
    let (dir, lab, old) = settled_lab(2).await;
    let api = Api::of(&lab);
    let new = any_replica(&lab, &old);

    let script = script(
        dir.path(),
        "callback.sh",
        "#!/bin/sh\nout=$1\nshift\necho \"$*\" >> \"$out\"\n",
    );
    for name in [&old, &new] {
        add_callbacks(&lab, &api, name, &script).await;
    }
    until_called(&lab, &old, &["on_reload primary lab"]).await;
    until_called(&lab, &new, &["on_reload replica lab"]).await;

    let reply = api
        .switchover(&api_url(&lab, &old), &old, &new)
        .await
        .expect("POST /switchover");
    assert_eq!(reply.status, 200, "{reply:?}");
    until_called(
        &lab,
        &new,
        &["on_reload replica lab", "on_role_change primary lab"],
    )
    .await;
    until_called(
        &lab,
        &old,
        &[
            "on_reload primary lab",
            "before_stop",
            "on_stop primary lab",
            "on_role_change replica lab",
        ],
    )
    .await;
    until_streaming(&lab, &old, WITHIN, "the old primary follows the new one").await;

    api.send_ok("POST", &api_url(&lab, &new), "/restart", &json!({}))
        .await;
    until_called(
        &lab,
        &new,
        &[
            "on_role_change primary lab",
            "before_stop",
            "on_restart primary lab",
        ],
    )
    .await;
    let starts: Vec<_> = [&old, &new]
        .iter()
        .flat_map(|name| calls(&lab, name))
        .filter(|call| call.starts_with("on_start"))
        .collect();
    assert!(
        starts.is_empty(),
        "a role change or a restart is not a start: {starts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_promote_passes_the_promotion_to_the_next_candidate() {
    let (dir, lab, old) = settled_lab(3).await;
    let api = Api::of(&lab);
    let refuser = any_replica(&lab, &old);
    let next = other_member(&lab, &[&old, &refuser]);
    execute_on(
        &lab,
        &old,
        "CREATE TABLE before_veto (id int); INSERT INTO before_veto VALUES (1)",
    )
    .await;

    let refuse = script(
        dir.path(),
        "refuse.sh",
        "#!/bin/sh\necho pre_promote >> \"$1\"\nexit 1\n",
    );
    let member = lab.member(&refuser).expect("member");
    let text = std::fs::read_to_string(&member.config).expect("settings");
    let line = format!(
        "  pre_promote: {} '{}'\n",
        refuse.display(),
        calls_file(&lab, &refuser).display()
    );
    let reply = api
        .reload_with(member, &in_postgresql_section(&text, &line))
        .await;
    assert!(reply.contains("postgresql.pre_promote"), "{reply}");

    // The lease goes to the refuser, which refuses to promote: the switchover
    // itself is not answered with success, and is not what is asserted.
    let _ = api.switchover(&api_url(&lab, &old), &old, &refuser).await;
    until_called(&lab, &refuser, &["pre_promote"]).await;
    until_sole_writable(
        &lab,
        &next,
        WITHIN,
        "the next candidate is promoted in the refuser's place",
    )
    .await;
    assert_eq!(
        count_rows(&lab, &next, "before_veto").await,
        Ok(1),
        "the committed row is on the new primary"
    );
    let refused = calls(&lab, &refuser);
    assert!(
        refused.iter().all(|call| call == "pre_promote"),
        "{refused:?}"
    );
}
