//! A member whose agent died must not look alive (issue 12, hole 9): after
//! a replica's agent is SIGKILLed, `/cluster` on another member, and
//! `raftgresctl list --format json` through it, show the dead member as
//! `unknown` with a report age above the ttl and no lag, while the live
//! members, the witness among them, keep reporting within a ttl.

use raftgres_lab::Lab;
use raftgres_tests::http::Api;
use raftgres_tests::{ctl_bin, eventually, log_tail, serial_lab};
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A dead member is stale one ttl after its last heartbeat was first seen;
/// heartbeats come every third of a ttl, so a few ttls is ample.
const STALE_WITHIN: Duration = Duration::from_secs(20);
const CTL_TIMEOUT: Duration = Duration::from_secs(30);

fn member<'a>(members: &'a Value, name: &str) -> Option<&'a Value> {
    members
        .as_array()?
        .iter()
        .find(|m| m["name"].as_str() == Some(name))
}

/// The dead member reads as stale: `unknown`, silent for more than `ttl_ms`,
/// no lag; every other member reads as live: reported within `ttl_ms`, not
/// `unknown`. `None` while that is not (yet) so.
fn stale_only(members: &Value, dead: &str, ttl_ms: u64) -> Option<()> {
    let gone = member(members, dead)?;
    let silent = gone["report_age_ms"].as_u64()?;
    let marked = gone["state"] == "unknown"
        && gone["stale"] == true
        && silent > ttl_ms
        && gone.get("lag").is_some_and(Value::is_null);
    let others_live = members
        .as_array()?
        .iter()
        .filter(|m| m["name"] != dead)
        .all(|m| {
            m["stale"] == false
                && m["state"] != "unknown"
                && m["report_age_ms"].as_u64().is_some_and(|age| age <= ttl_ms)
        });
    (marked && others_live).then_some(())
}

/// The same judgement in `raftgresctl list`'s rows (patronictl's keys):
/// the dead member `unknown`, its last report marked stale, no positions;
/// every other member not stale.
fn listed_stale_only(rows: &Value, dead: &str) -> Option<()> {
    let rows = rows.as_array()?;
    let row = |name: &str| rows.iter().find(|r| r["Member"] == name);
    let gone = row(dead)?;
    let report = |r: &Value| r["Last report"].as_str().unwrap_or_default().to_owned();
    let marked = gone["State"] == "unknown"
        && report(gone).ends_with("(stale)")
        && gone["Replay Lag"] == ""
        && gone["Replay LSN"] == "";
    let others_live = rows
        .iter()
        .filter(|r| r["Member"] != dead)
        .all(|r| r["State"] != "unknown" && report(r).ends_with(" s ago"));
    (marked && others_live).then_some(())
}

/// `raftgresctl --lab DIR list --format json`, its stdout as JSON.
async fn ctl_list_json(lab: &Lab) -> Result<Value, String> {
    let dir = lab.description.dir.to_str().expect("a UTF-8 lab path");
    let child = tokio::process::Command::new(ctl_bin())
        .args(["--lab", dir, "list", "--format", "json"])
        .env_remove("RAFTGRESCTL_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start raftgresctl: {e}"))?;
    let output = tokio::time::timeout(CTL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("raftgresctl list did not finish within {CTL_TIMEOUT:?}"))?
        .map_err(|e| format!("raftgresctl list: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "raftgresctl list exited with {:?}: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "raftgresctl list printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_agent_is_shown_stale_with_its_report_age() {
    // Two database members and a witness: the shape the brief supports,
    // and the witness, which runs no Postgres, must report as live too.
    let (dir, mut lab, holder) = serial_lab(2, true).await;
    let api = Api::for_lab(&dir.path().join("lab.json"));
    let dead = lab
        .description
        .members
        .iter()
        .find(|m| m.dsn.is_some() && m.name != holder)
        .expect("a replica")
        .name
        .clone();
    let observer_url = lab.member(&holder).expect("holder").api_url.clone();
    let config = api
        .get(&observer_url, "/config")
        .await
        .expect("GET /config");
    let ttl_ms = config.body["ttl_ms"].as_u64().expect("ttl_ms in /config");

    lab.kill(&dead).expect("SIGKILL the replica's agent");
    let killed = Instant::now();

    let mut last = Value::Null;
    let found = tokio::time::timeout(STALE_WITHIN, async {
        loop {
            if let Ok(reply) = api.get(&observer_url, "/cluster").await {
                last = reply.body["members"].clone();
                if stale_only(&last, &dead, ttl_ms).is_some() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "/cluster on {holder} never showed {dead} stale (unknown, report age over {ttl_ms} ms, \
         no lag) and the others live within {STALE_WITHIN:?}; last members: {last:#}\n{}",
        log_tail(&lab, &holder)
    );
    println!(
        "{dead} shown stale {:?} after SIGKILL (ttl {ttl_ms} ms), report age {} ms",
        killed.elapsed(),
        member(&last, &dead).map_or(Value::Null, |m| m["report_age_ms"].clone())
    );

    let listed = eventually(
        STALE_WITHIN,
        &format!("raftgresctl list --format json shows {dead} stale"),
        || async {
            let rows = ctl_list_json(&lab).await.ok()?;
            listed_stale_only(&rows, &dead).map(|()| rows)
        },
    )
    .await;
    assert!(
        listed
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["Member"] == dead.as_str()
                && (r["Role"] == "Replica" || r["Role"] == "Sync Standby"))),
        "a stale member keeps its last role: {listed:#}"
    );
}
