//! "Primary isolated" (issue 3): every member's agent and Postgres run in a
//! network namespace of their own, joined by a bridge; the primary's link is
//! cut. The majority must promote a new primary, the isolated one must have
//! stopped taking writes before that, and after the link heals the old
//! primary must rejoin as a streaming replica of the new one (pg_rewind).
//!
//! Needs root (namespaces, veths, a bridge); skipped otherwise. Every address
//! is on the test's own bridge and namespaces (see `raftgres_lab::LabNetwork`).

use raftgres_lab::{Lab, LabNetwork, LabSpec, enter_netns, pg_query_bool};
use raftgres_tests::{agent_bin, lab_dir, serial, status};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one write attempt on the isolated primary came to.
#[derive(Debug, Clone)]
enum Outcome {
    /// The server acknowledged the commit.
    Committed,
    /// Definitely not committed: no connection, or the server said no.
    Refused(String),
    /// The connection broke (or the attempt timed out) after the statement
    /// was sent: it may have committed, at the latest by this instant.
    Ambiguous(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Committed => write!(f, "committed"),
            Outcome::Refused(why) => write!(f, "refused: {why}"),
            Outcome::Ambiguous(why) => write!(f, "maybe committed: {why}"),
        }
    }
}

/// `(instant the outcome was known, outcome)`, in order.
type WriteLog = Arc<Mutex<Vec<(Instant, Outcome)>>>;

/// A client inside a member's namespace that keeps writing to that member's
/// Postgres directly, whatever happens to the member's link, and records
/// every outcome. Stops (its thread exits) when dropped.
struct NsWriter {
    stop: Arc<AtomicBool>,
    log: WriteLog,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsWriter {
    fn start(ns: &str, dsn: &str) -> NsWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let log = WriteLog::default();
        let (ns, dsn) = (ns.to_owned(), dsn.to_owned());
        let (thread_stop, thread_log) = (stop.clone(), log.clone());
        let thread = std::thread::Builder::new()
            .name("ns-writer".into())
            .spawn(move || {
                // Only this thread moves; its sockets belong to the namespace.
                enter_netns(&ns).expect("enter the old primary's namespace");
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("writer runtime")
                    .block_on(write_loop(&dsn, &thread_stop, &thread_log));
            })
            .expect("writer thread");
        NsWriter {
            stop,
            log,
            thread: Some(thread),
        }
    }

    fn snapshot(&self) -> Vec<(Instant, Outcome)> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn committed(&self) -> usize {
        self.snapshot()
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Committed))
            .count()
    }

    fn finish(mut self) -> Vec<(Instant, Outcome)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // Every step in the loop is bounded, so this returns within ~2 s.
            thread.join().expect("writer thread");
        }
        self.snapshot()
    }
}

impl Drop for NsWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn write_loop(dsn: &str, stop: &AtomicBool, log: &WriteLog) {
    let record = |outcome| {
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((Instant::now(), outcome))
    };
    let bound = Duration::from_secs(1);
    let mut client = None;
    let mut n: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            match tokio::time::timeout(bound, tokio_postgres::connect(dsn, tokio_postgres::NoTls))
                .await
            {
                Ok(Ok((c, connection))) => {
                    tokio::spawn(connection);
                    client = Some(c);
                }
                Ok(Err(e)) => {
                    record(Outcome::Refused(format!("connect: {e}")));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(_) => {
                    record(Outcome::Refused("connect: no answer within 1s".into()));
                    continue;
                }
            }
        }
        let Some(c) = client.as_ref() else { continue };
        n += 1;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&n];
        let insert = c.execute(
            "INSERT INTO isolation_probe (writer, n) VALUES ('old', $1)",
            &params,
        );
        match tokio::time::timeout(bound, insert).await {
            Ok(Ok(_)) => record(Outcome::Committed),
            // The server answered with an error: this transaction did not commit.
            Ok(Err(e)) if e.as_db_error().is_some() => {
                record(Outcome::Refused(e.to_string()));
                client = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Err(e)) => {
                record(Outcome::Ambiguous(e.to_string()));
                client = None;
            }
            Err(_) => {
                record(Outcome::Ambiguous("no answer within 1s".into()));
                client = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One statement on a fresh connection, each step bounded to one second.
async fn attempt(dsn: &str, sql: &str) -> Outcome {
    let bound = Duration::from_secs(1);
    let (client, connection) = match tokio::time::timeout(
        bound,
        tokio_postgres::connect(dsn, tokio_postgres::NoTls),
    )
    .await
    {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Outcome::Refused(format!("connect: {e}")),
        Err(_) => return Outcome::Refused("connect: no answer within 1s".into()),
    };
    let driver = tokio::spawn(connection);
    let outcome = match tokio::time::timeout(bound, client.batch_execute(sql)).await {
        Ok(Ok(())) => Outcome::Committed,
        Ok(Err(e)) if e.as_db_error().is_some() => Outcome::Refused(e.to_string()),
        Ok(Err(e)) => Outcome::Ambiguous(e.to_string()),
        Err(_) => Outcome::Ambiguous("no answer within 1s".into()),
    };
    drop(client);
    driver.abort();
    outcome
}

/// Like [`attempt`], for setup steps that must succeed.
async fn execute(dsn: &str, sql: &str) -> Result<(), String> {
    match attempt(dsn, sql).await {
        Outcome::Committed => Ok(()),
        other => Err(other.to_string()),
    }
}

fn dsn(lab: &Lab, name: &str) -> String {
    lab.member(name)
        .expect("member")
        .dsn
        .clone()
        .expect("a database member")
}

fn log_tail(lab: &Lab, name: &str) -> String {
    let path = &lab.member(name).expect("member").log;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(25)..].join("\n");
    format!("--- last lines of {}:\n{tail}", path.display())
}

/// Polls `check` every 50 ms until it is true, or fails after `within` with
/// `what` and the given agents' log tails.
async fn wait_until<F, Fut>(lab: &Lab, logs: &[&str], within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        if Instant::now() >= deadline {
            let tails: Vec<String> = logs.iter().map(|n| log_tail(lab, n)).collect();
            panic!(
                "timed out after {within:?} waiting for: {what}\n{}",
                tails.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_primary_stops_writing_before_the_majority_promotes_and_rejoins_after_heal() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "skipped: the isolation test needs root to create network namespaces, veths and a bridge"
        );
        return;
    }
    let _serial = serial().await;
    let began = Instant::now();
    // Drop order (reverse of declaration): the lab's agents stop first, then
    // the network goes, then the directory.
    let dir = lab_dir();
    let net = LabNetwork::create(3).expect("create the lab network");
    let spec = LabSpec {
        dir: dir.path().to_owned(),
        members: 3,
        witness: false,
        ports: None,
        agent_bin: agent_bin(),
    };
    let lab = Lab::up_in_netns(&spec, &net.members()).expect("lab up in namespaces");
    let old = lab
        .wait_healthy(Duration::from_secs(60))
        .await
        .expect("lab healthy");
    let set_up = began.elapsed();
    let old_ns = lab
        .member(&old)
        .expect("member")
        .netns
        .clone()
        .expect("the old primary runs in a namespace");
    let others: Vec<String> = lab.names().into_iter().filter(|n| *n != old).collect();
    let old_epoch = status(&lab, &old).await.expect("holder status").lease_epoch;

    // A table every member has, written by the old primary's writer
    // (`writer = 'old'`) and by the new primary's first write.
    execute(
        &dsn(&lab, &old),
        "CREATE TABLE isolation_probe (id bigserial PRIMARY KEY, writer text NOT NULL, n bigint)",
    )
    .await
    .expect("create the probe table on the primary");
    for name in &others {
        let replica = dsn(&lab, name);
        wait_until(
            &lab,
            &[name.as_str()],
            Duration::from_secs(10),
            &format!("{name} replicates the probe table"),
            || async {
                pg_query_bool(
                    &replica,
                    "SELECT to_regclass('isolation_probe') IS NOT NULL",
                )
                .await
                    == Ok(true)
            },
        )
        .await;
    }

    // The writer connects to the old primary from inside its namespace, so
    // cutting the link does not cut the writer off.
    let writer = NsWriter::start(&old_ns, &dsn(&lab, &old));
    wait_until(
        &lab,
        &[old.as_str()],
        Duration::from_secs(10),
        "the in-namespace writer commits on the primary",
        || async { writer.committed() >= 10 },
    )
    .await;

    let cut = Instant::now();
    net.isolate(&old_ns).expect("cut the primary's link");

    // (1) The majority promotes one of its own: a remaining member's
    // Postgres accepts a write. The new primary's first commit came no
    // earlier than the start (`new_sent`) of the first attempt that may have
    // committed (acknowledged, or cut short after the statement was sent).
    let deadline = cut + Duration::from_secs(30);
    let mut new_sent = None;
    let (new, new_acked) = 'found: loop {
        for name in &others {
            let sent = Instant::now();
            let sql = format!("INSERT INTO isolation_probe (writer) VALUES ('new:{name}')");
            let outcome = attempt(&dsn(&lab, name), &sql).await;
            if !matches!(outcome, Outcome::Refused(_)) {
                new_sent.get_or_insert(sent);
            }
            if matches!(outcome, Outcome::Committed) {
                break 'found (name.clone(), Instant::now());
            }
        }
        if Instant::now() >= deadline {
            let tails: Vec<String> = others.iter().map(|n| log_tail(&lab, n)).collect();
            panic!(
                "no remaining member accepted a write within 30 s of the cut\n{}",
                tails.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let new_sent = new_sent.expect("set with the committed attempt");
    let new_status = status(&lab, &new).await.expect("new primary's status");
    assert!(
        new_status.holds_lease,
        "{new} accepts writes without holding the lease: {new_status:?}"
    );
    assert!(
        new_status.lease_epoch > old_epoch,
        "the lease epoch did not grow: {old_epoch} -> {new_status:?}"
    );

    // (2) Before that, the isolated primary already refused writes: whatever
    // it may have committed (acknowledged, or cut short mid-statement) was
    // known by an instant earlier than the new primary's first attempt.
    // Let the writer run on a little, so a later write on the old side,
    // a split brain, would be seen too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = writer.snapshot();
    let last_maybe_committed = |log: &[(Instant, Outcome)]| {
        log.iter()
            .filter(|(_, o)| !matches!(o, Outcome::Refused(_)))
            .map(|(at, _)| *at)
            .max()
    };
    let old_last = last_maybe_committed(&during).expect("the writer committed before the cut");
    let old_last_ack = during
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Committed))
        .map(|(at, _)| *at)
        .max()
        .expect("acknowledged writes");
    let first_refusal = during
        .iter()
        .find(|(at, o)| *at > old_last && matches!(o, Outcome::Refused(_)))
        .cloned();
    let refusals_before_promotion = during
        .iter()
        .filter(|(at, o)| *at > old_last && *at < new_sent && matches!(o, Outcome::Refused(_)))
        .count();
    assert!(
        old_last < new_sent,
        "the isolated primary may have committed a write {} after the new primary's first \
         write was sent ({}): two writable primaries. Writer log after the cut: {:?}",
        ms(old_last - new_sent),
        new,
        during
            .iter()
            .filter(|(at, _)| *at >= cut)
            .map(|(at, o)| format!("{} {o}", ms(*at - cut)))
            .collect::<Vec<_>>()
    );
    assert!(
        refusals_before_promotion > 0,
        "the writer did not see the old primary refuse a write before the promotion"
    );

    // (3) Heal: the old primary rejoins as a streaming replica of the new one.
    let healed = Instant::now();
    net.heal(&old_ns).expect("heal the primary's link");
    let (old_dsn, new_dsn) = (dsn(&lab, &old), dsn(&lab, &new));
    let new_host = lab
        .member(&new)
        .expect("member")
        .pg_host
        .clone()
        .expect("pg host");
    let follows = format!(
        "SELECT pg_is_in_recovery() AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver \
         WHERE status = 'streaming' AND sender_host = '{new_host}')"
    );
    let streams_to = format!(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_replication \
         WHERE application_name = '{old}' AND state = 'streaming')"
    );
    let has_new_row =
        format!("SELECT EXISTS (SELECT 1 FROM isolation_probe WHERE writer = 'new:{new}')");
    wait_until(
        &lab,
        &[old.as_str(), new.as_str()],
        Duration::from_secs(45),
        &format!("{old} streams from {new} with {new}'s writes"),
        || async {
            pg_query_bool(&old_dsn, &follows).await == Ok(true)
                && pg_query_bool(&new_dsn, &streams_to).await == Ok(true)
                && pg_query_bool(&old_dsn, &has_new_row).await == Ok(true)
        },
    )
    .await;
    let rejoined = healed.elapsed();
    let old_log = std::fs::read_to_string(&lab.member(&old).expect("member").log)
        .expect("old primary's agent log");
    assert!(
        old_log.contains("rewound to the primary"),
        "{old} rejoined without pg_rewind{}\n{}",
        if old_log.contains("cloning afresh") {
            " (the rewind failed and it cloned afresh)"
        } else {
            ""
        },
        log_tail(&lab, &old)
    );
    let holder = lab
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("the healed cluster is healthy");
    assert_eq!(holder, new, "the lease stays with the new primary");

    // Across the whole run, nothing the old primary may have committed came
    // after the new primary's first write.
    let whole = writer.finish();
    let old_last_overall = last_maybe_committed(&whole).expect("committed writes");
    assert_eq!(
        old_last_overall,
        old_last,
        "the old primary took a write after the promotion: {:?}",
        whole
            .iter()
            .filter(|(at, o)| *at > new_sent && !matches!(o, Outcome::Refused(_)))
            .map(|(at, o)| format!("{} after the cut: {o}", ms(*at - cut)))
            .collect::<Vec<_>>()
    );

    let since_cut = |at: Instant| {
        at.checked_duration_since(cut)
            .map_or_else(|| format!("-{}", ms(cut - at)), ms)
    };
    println!("isolation: lab healthy after {}", ms(set_up));
    println!("isolation: old primary {old}, new primary {new}");
    println!(
        "isolation: cut -> old primary's last acknowledged write {}, last possibly committed {}",
        since_cut(old_last_ack),
        since_cut(old_last)
    );
    if let Some((at, why)) = &first_refusal {
        println!(
            "isolation: cut -> old primary's first refusal {} ({why}); {refusals_before_promotion} refusals before the promotion",
            since_cut(*at)
        );
    }
    println!(
        "isolation: cut -> new primary's first accepted write sent {}, acknowledged {}; gap after the old primary's last write {}",
        since_cut(new_sent),
        since_cut(new_acked),
        ms(new_sent - old_last)
    );
    println!(
        "isolation: heal -> old primary streaming from the new one {}",
        ms(rejoined)
    );
    println!("isolation: whole test {}", ms(began.elapsed()));
}
