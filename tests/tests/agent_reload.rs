//! SIGHUP and `POST /reload` re-read a real agent's settings file: a new
//! `postgresql.parameters` value reaches Postgres and a new tag the
//! member's record; an invalid file changes nothing, is named in the log by
//! its key, and the agent keeps serving; a restart-only key is named in a
//! warning; new API credentials replace the old ones.

use nix::sys::signal::Signal;
use raftgres_lab::Lab;
use raftgres_tests::http::Api;
use raftgres_tests::{dsn, eventually, query_i64, serial_lab};
use serde_json::json;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(30);

fn settings(lab: &Lab, name: &str) -> String {
    std::fs::read_to_string(&lab.member(name).expect("member").config).expect("member settings")
}

/// Rewrites in place, so the file keeps its owner (postgres) and mode.
fn write_settings(lab: &Lab, name: &str, text: &str) {
    std::fs::write(&lab.member(name).expect("member").config, text).expect("write settings");
}

fn log(lab: &Lab, name: &str) -> String {
    std::fs::read_to_string(&lab.member(name).expect("member").log).unwrap_or_default()
}

/// `text` with `lines` added to the section that starts with `section:`.
fn add_to_section(text: &str, section: &str, lines: &str) -> String {
    let header = format!("{section}:\n");
    let at = text.find(&header).expect("section") + header.len();
    format!("{}{lines}{}", &text[..at], &text[at..])
}

async fn work_mem_is(dsn: &str, value: &str) -> bool {
    query_i64(
        dsn,
        &format!("SELECT (current_setting('work_mem') = '{value}')::int::bigint"),
    )
    .await
        == Ok(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_post_reload_reread_the_settings_file() {
    let (dir, lab, primary) = serial_lab(1, false).await;
    let api = Api::for_lab(&dir.path().join("lab.json"));
    let base = lab.member(&primary).expect("member").api_url.clone();
    let original = settings(&lab, &primary);
    let client = raftgres_tests::http::lab_client(&lab, Duration::from_secs(5));

    // Reloadable keys: Postgres takes the new parameter, and the member's
    // record in the cluster the new tag.
    let with_work_mem = format!(
        "tags: {{failover_priority: 3}}\n{}",
        // The lab's own parameters turn its Postgres's TLS on.
        add_to_section(&original, "  parameters", "    work_mem: 7MB\n")
    );
    write_settings(&lab, &primary, &with_work_mem);
    lab.signal(&primary, Signal::SIGHUP).expect("SIGHUP");
    eventually(WITHIN, "work_mem is 7MB after SIGHUP", || async {
        work_mem_is(&dsn(&lab, &primary), "7MB").await.then_some(())
    })
    .await;
    eventually(WITHIN, "the member record carries the new tag", || async {
        let cluster = api.get(&base, "/cluster").await.ok()?;
        cluster
            .body
            .to_string()
            .contains("\"failover_priority\":3")
            .then_some(())
    })
    .await;

    // An invalid file: logged by key, nothing changes, the agent serves on.
    let invalid = with_work_mem.replace("    work_mem: 7MB\n", "    Work_Mem: 8MB\n");
    write_settings(&lab, &primary, &invalid);
    lab.signal(&primary, Signal::SIGHUP).expect("SIGHUP");
    eventually(WITHIN, "the log names the invalid key", || async {
        log(&lab, &primary)
            .lines()
            .any(|l| l.contains("reload failed") && l.contains("postgresql.parameters.Work_Mem"))
            .then_some(())
    })
    .await;
    let health = client
        .get(format!("{base}/health"))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16());
    assert_eq!(
        health,
        200,
        "the agent stopped serving /health:\n{}",
        log(&lab, &primary)
    );
    assert!(work_mem_is(&dsn(&lab, &primary), "7MB").await);
    // POST /reload says the same, and fails.
    let reply = api
        .send("POST", &base, "/reload", &json!({}))
        .await
        .expect("POST /reload");
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply
            .body
            .to_string()
            .contains("postgresql.parameters.Work_Mem"),
        "{reply:?}"
    );

    // A restart-only key is named in a warning and kept.
    let restart_only = add_to_section(&with_work_mem, "raft", "  rpc_timeout_ms: 900\n");
    write_settings(&lab, &primary, &restart_only);
    lab.signal(&primary, Signal::SIGHUP).expect("SIGHUP");
    eventually(WITHIN, "a warning names raft.rpc_timeout_ms", || async {
        log(&lab, &primary)
            .lines()
            .any(|l| {
                l.contains("WARN") && l.contains("raft.rpc_timeout_ms") && l.contains("restart")
            })
            .then_some(())
    })
    .await;

    // POST /reload re-reads the file too: new credentials replace the old.
    let auth = lab.api_auth().expect("lab credentials").clone();
    let new_password = format!("{}-rotated", auth.password);
    write_settings(
        &lab,
        &primary,
        &restart_only.replace(&auth.password, &new_password),
    );
    let reply = api
        .send_accepted("POST", &base, "/reload", &json!({}))
        .await;
    let message = reply.body.to_string();
    assert!(
        message.contains("restapi.authentication")
            && message.contains("Postgres reloads its configuration next"),
        "{message}"
    );
    let old = api
        .send("POST", &base, "/reload", &json!({}))
        .await
        .expect("POST /reload with the old password");
    assert_eq!(old.status, 401, "the old password still works: {old:?}");
    let new = client
        .post(format!("{base}/reload"))
        .basic_auth(&auth.username, Some(&new_password))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16());
    assert_eq!(new, 202, "the new password is refused");
    assert!(work_mem_is(&dsn(&lab, &primary), "7MB").await);
}
