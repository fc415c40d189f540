//! `reinit`: members clone their data afresh from the leader, and with
//! `--wait` the clone is followed to its end.

use super::{Failed, member_status, post_to_member};
use crate::client::CHANGE_TIMEOUT;
use crate::cluster::Finder;
use crate::prompt::confirm;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

/// How long a reinitialize may take to show in `GET /patroni`, and a
/// member may go without answering while it copies.
const REINIT_SILENCE: Duration = Duration::from_secs(60);

/// Asks each member's own agent to clone its data afresh. The agent
/// answers once the clone has started; with `wait`, until each has its
/// fresh copy, its progress on stderr when that is a terminal.
pub async fn reinit(
    finder: &mut Finder,
    members: Vec<String>,
    force: bool,
    wait: bool,
) -> anyhow::Result<()> {
    let cluster = finder.cluster().await?;
    let bases = members
        .iter()
        .map(|member| Ok((member.clone(), cluster.member_api(member)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    confirm(
        format!(
            "Are you sure you want to reinitialize members {}? Their data directories are replaced by a fresh copy of the leader's.",
            members.join(", ")
        ),
        "reinitialize",
        force,
    )
    .await?;
    let body = json!({});
    let mut failed = Failed::default();
    let mut started = Vec::new();
    for (member, base) in bases {
        // Before the request: a postmaster that started since is the new copy's.
        let before = if wait {
            member_status(finder, &base)
                .await
                .ok()
                .and_then(|doc| doc.get("postmaster_start_time").cloned())
        } else {
            None
        };
        // CHANGE_TIMEOUT: the agent answers once its Postgres loop took the request.
        let taken = post_to_member(
            finder,
            &member,
            &base,
            "reinitialize",
            Some(&body),
            CHANGE_TIMEOUT,
            &mut failed,
        )
        .await;
        if taken {
            started.push(Reinit::new(member, base, before));
        }
    }
    if wait && !started.is_empty() {
        let names: Vec<&str> = started.iter().map(|r| r.member.as_str()).collect();
        println!(
            "Waiting for reinitialize to complete on: {}",
            names.join(", ")
        );
        wait_for_reinits(finder, started, &mut failed).await;
    }
    failed.into_result("the reinitialize of")
}

/// A reinitialize `reinit --wait` follows.
struct Reinit {
    member: String,
    base: reqwest::Url,
    /// `postmaster_start_time` before the request.
    before: Option<Value>,
    /// `GET /patroni` said `creating replica` once.
    seen: bool,
    /// When the member last answered (or the wait began).
    heard: Instant,
}

impl Reinit {
    fn new(member: String, base: reqwest::Url, before: Option<Value>) -> Reinit {
        Reinit {
            member,
            base,
            before,
            seen: false,
            heard: Instant::now(),
        }
    }

    /// `None` while it goes on; the outcome once it is over.
    fn judge(&mut self, doc: &Value) -> Option<Result<(), String>> {
        self.heard = Instant::now();
        let state = doc
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        if state == "creating replica" {
            self.seen = true;
            return None;
        }
        // A copy too quick to be seen left a new postmaster behind.
        let restarted = doc
            .get("postmaster_start_time")
            .is_some_and(|now| self.before.as_ref() != Some(now));
        if !self.seen && !restarted {
            return None;
        }
        Some(if state == "running" {
            Ok(())
        } else {
            Err(format!(
                "its Postgres is {state} after the reinitialize; see its agent's log"
            ))
        })
    }

    /// The outcome once the member was silent too long.
    fn silence(&self) -> Option<Result<(), String>> {
        (self.heard.elapsed() > REINIT_SILENCE).then(|| {
            Err(if self.seen {
                format!("it stopped answering for {REINIT_SILENCE:?} while copying")
            } else {
                format!("no reinitialize showed in its GET /patroni within {REINIT_SILENCE:?}")
            })
        })
    }
}

/// Follows each reinitialize in its member's `GET /patroni` until it is
/// over; the members whose reinitialize failed go to `failed`.
async fn wait_for_reinits(finder: &Finder, mut waiting: Vec<Reinit>, failed: &mut Failed) {
    use std::io::{IsTerminal, Write};
    let terminal = std::io::stderr().is_terminal();
    while !waiting.is_empty() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut next = Vec::new();
        for mut reinit in waiting {
            let outcome = match member_status(finder, &reinit.base).await {
                Ok(doc) => {
                    if terminal
                        && let Some(line) = doc
                            .get("progress")
                            .and_then(|p| progress_line(&reinit.member, p))
                    {
                        eprint!("\r{line}\x1b[K");
                        let _ = std::io::stderr().flush();
                    }
                    reinit.judge(&doc)
                }
                Err(_) => None,
            };
            let outcome = outcome.or_else(|| reinit.silence());
            if terminal && outcome.is_some() {
                eprint!("\r\x1b[K");
            }
            match outcome {
                None => next.push(reinit),
                Some(Ok(())) => println!("Reinitialize is completed on: {}", reinit.member),
                Some(Err(why)) => {
                    println!("{}: reinitialize failed: {why}", reinit.member);
                    failed.push(reinit.member);
                }
            }
        }
        waiting = next;
    }
}

/// One line of a copy's progress as `GET /patroni` reports it: bytes done
/// of the total, the share, and the rate.
fn progress_line(member: &str, progress: &Value) -> Option<String> {
    let bytes = |key: &str| progress.get(key).and_then(Value::as_u64);
    let (done, total) = (bytes("done_bytes")?, bytes("total_bytes")?);
    let rate = bytes("bytes_per_second").unwrap_or(0);
    let action = progress
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("copy");
    let mb = |bytes: u64| format!("{:.1} MB", bytes as f64 / 1_048_576.0);
    let percent = done.min(total) * 100 / total.max(1);
    Some(format!(
        "{member}: {action} {} of {} ({percent}%), {}/s",
        mb(done),
        mb(total),
        mb(rate)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_shows_bytes_share_and_rate() {
        let progress = json!({"action": "clone", "done_bytes": 3 << 20,
                              "total_bytes": 12 << 20, "bytes_per_second": 1 << 19});
        assert_eq!(
            progress_line("m2", &progress).as_deref(),
            Some("m2: clone 3.0 MB of 12.0 MB (25%), 0.5 MB/s")
        );
        let unknown_total = json!({"action": "rewind", "done_bytes": 5, "total_bytes": 0});
        assert_eq!(
            progress_line("m2", &unknown_total).as_deref(),
            Some("m2: rewind 0.0 MB of 0.0 MB (0%), 0.0 MB/s")
        );
        assert_eq!(progress_line("m2", &json!({"done_bytes": 1})), None);
    }

    #[test]
    fn a_reinitialize_is_over_once_it_was_seen_or_left_a_new_postmaster() {
        let base: reqwest::Url = "http://127.0.0.1:8008".parse().expect("a URL");
        let before = Some(json!("2026-12-07 15:06:54.87+00"));
        let doc =
            |state: &str, started: &str| json!({"state": state, "postmaster_start_time": started});
        let old = "2026-12-07 15:06:54.87+00";
        let new = "2026-12-07 15:09:00.01+00";

        let mut reinit = Reinit::new("m2".into(), base.clone(), before.clone());
        assert_eq!(reinit.judge(&doc("running", old)), None, "not begun yet");
        assert_eq!(reinit.judge(&json!({"state": "creating replica"})), None);
        assert_eq!(
            reinit.judge(&doc("starting", old)).map(|r| r.is_err()),
            Some(true)
        );

        let mut reinit = Reinit::new("m2".into(), base.clone(), before.clone());
        assert_eq!(reinit.judge(&json!({"state": "creating replica"})), None);
        assert_eq!(reinit.judge(&doc("running", new)), Some(Ok(())));

        // Too quick to be seen: the new postmaster tells.
        let mut reinit = Reinit::new("m2".into(), base, before);
        assert_eq!(reinit.judge(&doc("running", new)), Some(Ok(())));
    }
}
