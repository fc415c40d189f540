//! `log` in a real agent's settings: restarted with `type: json`, a `dir`,
//! a level and a level for one module, the agent writes JSON lines into a
//! file there, filtered as asked; a reload names the section as needing a
//! restart.

use raftgres_tests::http::Api;
use raftgres_tests::{eventually, serial_lab};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(30);

/// Every line of every file in `dir`, parsed; a line that is not JSON
/// fails the test.
fn json_lines(dir: &Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let value = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("not a JSON line in {}: {e}: {line}", entry.path().display())
            });
            lines.push(value);
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_writes_filtered_json_lines_into_log_dir() {
    let (_dir, mut lab, name) = serial_lab(1, false).await;
    let api = Api::of(&lab);
    let member = lab.member(&name).expect("member").clone();
    // Inside the agent's own directory, so the agent (postgres) may create it.
    let log_dir = member.data_dir.join("log");
    let settings = std::fs::read_to_string(&member.config).expect("settings");
    let with_log = format!(
        "{settings}log:\n  type: json\n  dir: {}\n  level: WARNING\n  loggers: {{raftgres_agent: INFO}}\n",
        log_dir.display()
    );
    let body = api.reload_with(&member, &with_log).await;
    assert!(body.contains("needs a restart [log."), "{body}");

    lab.restart_agent(&name, Duration::from_secs(30))
        .expect("restart the agent");
    let lines = eventually(WITHIN, "the agent writes its log into log.dir", || async {
        let lines = json_lines(&log_dir);
        lines
            .iter()
            .any(|line| line["fields"]["member"] == json!(name) && line["level"] == "INFO")
            .then_some(lines)
    })
    .await;
    for line in &lines {
        let target = line["target"].as_str().unwrap_or_default();
        let level = line["level"].as_str().unwrap_or_default();
        assert!(
            target.starts_with("raftgres_agent") || matches!(level, "WARN" | "ERROR"),
            "below WARNING only raftgres_agent's lines are written: {line}"
        );
    }
}
