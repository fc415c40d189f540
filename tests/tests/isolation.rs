//! "Primary isolated" (issue 3): every member's agent and Postgres run in a
//! network namespace of their own, joined by a bridge; the primary's link is
//! cut. The majority must promote a new primary, the isolated one must have
//! stopped taking writes before that, and after the link heals the old
//! primary must rejoin as a streaming replica of the new one (pg_rewind).
//!
//! Each member's pgbouncer runs in its namespace too (issue 5). Through the
//! old primary's own pgbouncer, no write is acknowledged once the majority
//! has promoted, no write sent after the cut survives the heal, every write
//! it acknowledged before the cut does, and a surviving member's pgbouncer
//! takes writes once the new primary runs.
//!
//! A second test cuts off the Raft leader while it is a replica: the
//! primary must keep its lease through the election.
//!
//! Needs root (namespaces, veths, a bridge); skipped otherwise. Every address
//! is on the test's own bridge and namespaces (see `raftgres_lab::LabNetwork`).

use raftgres_lab::{Lab, LabNetwork, LabSpec, enter_netns, pg_query_bool};
use raftgres_tests::http::Api;
use raftgres_tests::steady::{SteadyPrimary, raft_leader_on_a_replica};
use raftgres_tests::{
    PrimaryMonitor, agent_bin, eventually, lab_dir, log_tail, serial, status, streaming,
};
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

/// One write attempt of an [`NsWriter`].
#[derive(Debug, Clone)]
struct Attempt {
    /// When the attempt (connecting, or the statement) began.
    sent: Instant,
    /// When its outcome was known.
    at: Instant,
    /// The row's `n`; `None` when no statement was sent (no connection).
    n: Option<i64>,
    outcome: Outcome,
}

/// Every attempt, in order.
type WriteLog = Arc<Mutex<Vec<Attempt>>>;

/// A client inside a member's namespace that keeps writing rows
/// `(writer, n)` with `n` = 1, 2, ... through `dsn` (the member's Postgres
/// or its pgbouncer), whatever happens to the member's link, and records
/// every outcome. It keeps one connection until an attempt fails, then
/// opens a new one. Stops (its thread exits) when dropped.
struct NsWriter {
    stop: Arc<AtomicBool>,
    pause: Arc<Pause>,
    log: WriteLog,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Lets the test hold an [`NsWriter`] between attempts.
#[derive(Default)]
struct Pause {
    wanted: AtomicBool,
    /// Set before an attempt starts and cleared after it ends; the writer
    /// checks `wanted` only after setting it, so once `wanted` is set and
    /// this is seen clear, no attempt runs until `wanted` is cleared.
    attempting: AtomicBool,
}

impl NsWriter {
    /// `writer` names its rows; each step is bounded by `bound`.
    fn start(ns: &str, dsn: &str, writer: &'static str, bound: Duration) -> NsWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(Pause::default());
        let log = WriteLog::default();
        let (ns, dsn) = (ns.to_owned(), dsn.to_owned());
        let (thread_stop, thread_pause, thread_log) = (stop.clone(), pause.clone(), log.clone());
        let thread = std::thread::Builder::new()
            .name(format!("ns-writer-{writer}"))
            .spawn(move || {
                // Only this thread moves; its sockets belong to the namespace.
                enter_netns(&ns).expect("enter the old primary's namespace");
                let writer = Writer {
                    dsn: &dsn,
                    name: writer,
                    bound,
                    stop: &thread_stop,
                    pause: &thread_pause,
                    log: &thread_log,
                };
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("writer runtime")
                    .block_on(writer.run());
            })
            .expect("writer thread");
        NsWriter {
            stop,
            pause,
            log,
            thread: Some(thread),
        }
    }

    fn snapshot(&self) -> Vec<Attempt> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn committed(&self) -> usize {
        self.snapshot()
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Committed))
            .count()
    }

    /// Returns once no attempt runs, and none starts until [`Self::resume`].
    async fn hold(&self) {
        self.pause.wanted.store(true, Ordering::SeqCst);
        while self.pause.attempting.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn resume(&self) {
        self.pause.wanted.store(false, Ordering::SeqCst);
    }

    fn finish(mut self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // Every step in the loop is bounded, so this returns within
            // about two bounds.
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

/// The loop of an [`NsWriter`], on its thread inside the namespace.
struct Writer<'a> {
    dsn: &'a str,
    name: &'static str,
    bound: Duration,
    stop: &'a AtomicBool,
    pause: &'a Pause,
    log: &'a WriteLog,
}

impl Writer<'_> {
    fn record(&self, sent: Instant, n: Option<i64>, outcome: Outcome) {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Attempt {
                sent,
                at: Instant::now(),
                n,
                outcome,
            });
    }

    async fn run(&self) {
        let mut client = None;
        let mut n: i64 = 0;
        while !self.stop.load(Ordering::Relaxed) {
            self.pause.attempting.store(true, Ordering::SeqCst);
            if self.pause.wanted.load(Ordering::SeqCst) {
                self.pause.attempting.store(false, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            let failed = self.attempt(&mut client, &mut n).await;
            self.pause.attempting.store(false, Ordering::SeqCst);
            let pace = if failed { 20 } else { 5 };
            tokio::time::sleep(Duration::from_millis(pace)).await;
        }
    }

    /// One attempt: connect if need be, else insert row `n + 1`. Whether it
    /// failed.
    async fn attempt(&self, client: &mut Option<tokio_postgres::Client>, n: &mut i64) -> bool {
        let bound = self.bound;
        let sent = Instant::now();
        let Some(c) = client.as_ref() else {
            let connect = tokio_postgres::connect(self.dsn, tokio_postgres::NoTls);
            match tokio::time::timeout(bound, connect).await {
                Ok(Ok((c, connection))) => {
                    tokio::spawn(connection);
                    *client = Some(c);
                    return false;
                }
                Ok(Err(e)) => self.record(
                    sent,
                    None,
                    Outcome::Refused(format!("connect: {}", why(&e))),
                ),
                Err(_) => {
                    let why = format!("connect: no answer within {bound:?}");
                    self.record(sent, None, Outcome::Refused(why));
                }
            }
            return true;
        };
        *n += 1;
        // The simple query protocol: a prepared statement would not survive
        // pgbouncer's transaction pooling.
        let insert = format!(
            "INSERT INTO isolation_probe (writer, n) VALUES ('{}', {n})",
            self.name
        );
        let outcome = match tokio::time::timeout(bound, c.batch_execute(&insert)).await {
            Ok(Ok(())) => Outcome::Committed,
            // The server answered with an error: this transaction did not commit.
            Ok(Err(e)) if e.as_db_error().is_some() => Outcome::Refused(why(&e)),
            Ok(Err(e)) => Outcome::Ambiguous(why(&e)),
            Err(_) => Outcome::Ambiguous(format!("no answer within {bound:?}")),
        };
        let failed = !matches!(outcome, Outcome::Committed);
        if failed {
            *client = None;
        }
        self.record(sent, Some(*n), outcome);
        failed
    }
}

/// Three members, each with its agent, Postgres and pgbouncer in a network
/// namespace of its own, joined by a bridge. Fields drop in declaration
/// order: the agents stop first, then the network goes, then the directory,
/// and last the lock that runs real clusters one at a time.
struct NetnsLab {
    lab: Lab,
    net: LabNetwork,
    dir: tempfile::TempDir,
    _serial: tokio::sync::MutexGuard<'static, ()>,
    /// When its set-up began, once this test had the lock.
    began: Instant,
}

impl NetnsLab {
    /// Starts it and waits until it is healthy; returns the primary too.
    /// `None`, after saying why, when not root: namespaces need it.
    async fn up() -> Option<(NetnsLab, String)> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "skipped: the isolation test needs root to create network namespaces, veths and a bridge"
            );
            return None;
        }
        let serial = serial().await;
        let began = Instant::now();
        let dir = lab_dir();
        let net = LabNetwork::create(3).expect("create the lab network");
        let spec = LabSpec::new(dir.path().to_owned(), 3, false, agent_bin());
        let lab = Lab::up_in_netns(&spec, &net.members()).expect("lab up in namespaces");
        let primary = lab
            .wait_healthy(Duration::from_secs(60))
            .await
            .expect("lab healthy");
        Some((
            NetnsLab {
                lab,
                net,
                dir,
                _serial: serial,
                began,
            },
            primary,
        ))
    }
}

/// The error with what caused it: the server's message, or the I/O error.
fn why(e: &tokio_postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{}: {}", db.severity(), db.message()),
        (None, Some(source)) => format!("{e}: {source}"),
        (None, None) => e.to_string(),
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
        Ok(Err(e)) => return Outcome::Refused(format!("connect: {}", why(&e))),
        Err(_) => return Outcome::Refused("connect: no answer within 1s".into()),
    };
    let driver = tokio::spawn(connection);
    let outcome = match tokio::time::timeout(bound, client.batch_execute(sql)).await {
        Ok(Ok(())) => Outcome::Committed,
        Ok(Err(e)) if e.as_db_error().is_some() => Outcome::Refused(why(&e)),
        Ok(Err(e)) => Outcome::Ambiguous(why(&e)),
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

/// The DSN of the write database through the member's own pgbouncer.
fn pgbouncer_dsn(lab: &Lab, name: &str) -> String {
    lab.member(name)
        .expect("member")
        .pgbouncer_dsn
        .clone()
        .expect("a pgbouncer beside the member")
}

/// The `n` of every row `writer` wrote, read directly from a member's
/// Postgres within two seconds.
async fn rows_of(dsn: &str, writer: &str) -> Result<Vec<i64>, String> {
    let work = async {
        let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let rows = client
            .query(
                "SELECT n FROM isolation_probe WHERE writer = $1 ORDER BY n",
                &[&writer],
            )
            .await
            .map_err(|e| e.to_string());
        drop(client);
        let _ = driver.await;
        rows?
            .iter()
            .map(|r| r.try_get::<_, i64>(0).map_err(|e| e.to_string()))
            .collect()
    };
    tokio::time::timeout(Duration::from_secs(2), work)
        .await
        .map_err(|_| "no answer within 2s".to_owned())?
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
    let Some((env, old)) = NetnsLab::up().await else {
        return;
    };
    let (lab, net) = (&env.lab, &env.net);
    let began = env.began;
    let set_up = began.elapsed();
    let old_ns = lab
        .member(&old)
        .expect("member")
        .netns
        .clone()
        .expect("the old primary runs in a namespace");
    let others: Vec<String> = lab.names().into_iter().filter(|n| *n != old).collect();
    let old_epoch = status(lab, &old).await.expect("holder status").lease_epoch;

    // A table every member has, written by the old primary's writer
    // (`writer = 'old'`) and by the new primary's first write.
    execute(
        &dsn(lab, &old),
        "CREATE TABLE isolation_probe (id bigserial PRIMARY KEY, writer text NOT NULL, n bigint)",
    )
    .await
    .expect("create the probe table on the primary");
    for name in &others {
        let replica = dsn(lab, name);
        wait_until(
            lab,
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

    // The writers connect to the old primary, directly and through its own
    // pgbouncer, from inside its namespace, so cutting the link does not
    // cut them off.
    let writer = NsWriter::start(&old_ns, &dsn(lab, &old), "old", Duration::from_secs(1));
    let pooled = NsWriter::start(
        &old_ns,
        &pgbouncer_dsn(lab, &old),
        "pgbouncer",
        Duration::from_secs(2),
    );
    wait_until(
        lab,
        &[old.as_str()],
        Duration::from_secs(10),
        "the in-namespace writer commits on the primary",
        || async { writer.committed() >= 10 },
    )
    .await;
    wait_until(
        lab,
        &[old.as_str()],
        Duration::from_secs(20),
        "the primary's own pgbouncer takes writes",
        || async { pooled.committed() >= 10 },
    )
    .await;

    // Replication is asynchronous: hold the pgbouncer writer until both
    // replicas have its last acknowledged row, so every row it acknowledged
    // before the cut must survive whoever wins.
    pooled.hold().await;
    let pooled_before = pooled.snapshot();
    let acked_before: Vec<i64> = pooled_before
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Committed))
        .filter_map(|a| a.n)
        .collect();
    let last_acked_before = *acked_before.last().expect("acknowledged through pgbouncer");
    for name in &others {
        let replica = dsn(lab, name);
        wait_until(
            lab,
            &[name.as_str()],
            Duration::from_secs(10),
            &format!("{name} replays the pgbouncer writer's row {last_acked_before}"),
            || async {
                rows_of(&replica, "pgbouncer")
                    .await
                    .is_ok_and(|rows| rows.contains(&last_acked_before))
            },
        )
        .await;
    }

    let cut = Instant::now();
    net.isolate(&old_ns).expect("cut the primary's link");
    pooled.resume();

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
            let outcome = attempt(&dsn(lab, name), &sql).await;
            if !matches!(outcome, Outcome::Refused(_)) {
                new_sent.get_or_insert(sent);
            }
            if matches!(outcome, Outcome::Committed) {
                break 'found (name.clone(), Instant::now());
            }
        }
        if Instant::now() >= deadline {
            let tails: Vec<String> = others.iter().map(|n| log_tail(lab, n)).collect();
            panic!(
                "no remaining member accepted a write within 30 s of the cut\n{}",
                tails.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let new_sent = new_sent.expect("set with the committed attempt");
    let new_status = status(lab, &new).await.expect("new primary's status");
    assert!(
        new_status.holds_lease,
        "{new} accepts writes without holding the lease: {new_status:?}"
    );
    assert!(
        new_status.lease_epoch > old_epoch,
        "the lease epoch did not grow: {old_epoch} -> {new_status:?}"
    );

    // A surviving member's pgbouncer sends writes to the new primary.
    let mut survivor_accepts = Vec::new();
    for name in &others {
        let through = pgbouncer_dsn(lab, name);
        let sql = format!("INSERT INTO isolation_probe (writer) VALUES ('pgbouncer:{name}')");
        wait_until(
            lab,
            &[name.as_str(), new.as_str()],
            Duration::from_secs(20),
            &format!("{name}'s pgbouncer takes a write once {new} is primary"),
            || async { matches!(attempt(&through, &sql).await, Outcome::Committed) },
        )
        .await;
        survivor_accepts.push((name.clone(), new_acked.elapsed()));
    }

    // (2) Before that, the isolated primary already refused writes: whatever
    // it may have committed (acknowledged, or cut short mid-statement) was
    // known by an instant earlier than the new primary's first attempt.
    // Let the writer run on a little, so a later write on the old side,
    // a split brain, would be seen too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = writer.snapshot();
    let last_maybe_committed = |log: &[Attempt]| {
        log.iter()
            .filter(|a| !matches!(a.outcome, Outcome::Refused(_)))
            .map(|a| a.at)
            .max()
    };
    let old_last = last_maybe_committed(&during).expect("the writer committed before the cut");
    let old_last_ack = during
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Committed))
        .map(|a| a.at)
        .max()
        .expect("acknowledged writes");
    let first_refusal = during
        .iter()
        .find(|a| a.at > old_last && matches!(a.outcome, Outcome::Refused(_)))
        .map(|a| (a.at, a.outcome.clone()));
    let refusals_before_promotion = during
        .iter()
        .filter(|a| a.at > old_last && a.at < new_sent && matches!(a.outcome, Outcome::Refused(_)))
        .count();
    assert!(
        old_last < new_sent,
        "the isolated primary may have committed a write {} after the new primary's first \
         write was sent ({}): two writable primaries. Writer log after the cut: {:?}",
        ms(old_last - new_sent),
        new,
        during
            .iter()
            .filter(|a| a.at >= cut)
            .map(|a| format!("{} {}", ms(a.at - cut), a.outcome))
            .collect::<Vec<_>>()
    );
    assert!(
        refusals_before_promotion > 0,
        "the writer did not see the old primary refuse a write before the promotion"
    );

    // (2b) The old primary's own pgbouncer: once the majority has promoted,
    // it acknowledges nothing; every attempt is refused or stalls. It is
    // stopped before the heal, after which it may rightly reach the new
    // primary.
    let pooled_log = pooled.finish();
    let after_cut = |a: &&Attempt| a.sent >= cut;
    let shown = |log: &[Attempt]| {
        log.iter()
            .filter(after_cut)
            .map(|a| format!("{} (n {:?}) {}", ms(a.at - cut), a.n, a.outcome))
            .collect::<Vec<_>>()
    };
    let pooled_acks_after_promotion: Vec<&Attempt> = pooled_log
        .iter()
        .filter(|a| a.at >= new_sent && matches!(a.outcome, Outcome::Committed))
        .collect();
    assert!(
        pooled_acks_after_promotion.is_empty(),
        "the isolated old primary's pgbouncer acknowledged {} writes after {new}'s first write \
         was sent: two writable primaries. Its writer after the cut: {:?}\n{}",
        pooled_acks_after_promotion.len(),
        shown(&pooled_log),
        log_tail(lab, &old)
    );
    let pooled_tried_after_promotion = pooled_log.iter().filter(|a| a.sent >= new_sent).count();
    assert!(
        pooled_tried_after_promotion > 0,
        "the pgbouncer writer made no attempt after the promotion: {:?}",
        shown(&pooled_log)
    );
    let pooled_acked_after_cut: Vec<&Attempt> = pooled_log
        .iter()
        .filter(|a| a.sent >= cut && matches!(a.outcome, Outcome::Committed))
        .collect();
    let pooled_first_failure = pooled_log
        .iter()
        .find(|a| a.sent >= cut && !matches!(a.outcome, Outcome::Committed))
        .map(|a| (a.at, a.outcome.clone()));

    // (3) Heal: the old primary rejoins as a streaming replica of the new one.
    let healed = Instant::now();
    net.heal(&old_ns).expect("heal the primary's link");
    let (old_dsn, new_dsn) = (dsn(lab, &old), dsn(lab, &new));
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
        lab,
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
        log_tail(lab, &old)
    );
    let holder = lab
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("the healed cluster is healthy");
    assert_eq!(holder, new, "the lease stays with the new primary");

    // (4) Of the pgbouncer writer's rows, the final primary holds every one
    // acknowledged before the cut and none sent after it.
    let final_rows = rows_of(&new_dsn, "pgbouncer")
        .await
        .expect("read the pgbouncer writer's rows on the final primary");
    let lost: Vec<i64> = acked_before
        .iter()
        .filter(|n| !final_rows.contains(n))
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "rows acknowledged through {old}'s pgbouncer before the cut are missing on {new}: {lost:?}"
    );
    let written_after_cut: Vec<i64> = pooled_log
        .iter()
        .filter(|a| a.sent >= cut)
        .filter_map(|a| a.n)
        .filter(|n| final_rows.contains(n))
        .collect();
    assert!(
        written_after_cut.is_empty(),
        "rows sent through {old}'s pgbouncer after the cut are on {new}: {written_after_cut:?}; \
         the writer after the cut: {:?}",
        shown(&pooled_log)
    );

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
            .filter(|a| a.at > new_sent && !matches!(a.outcome, Outcome::Refused(_)))
            .map(|a| format!("{} after the cut: {}", ms(a.at - cut), a.outcome))
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
        "isolation: pgbouncer of the old primary: {} rows acknowledged before the cut, {} \
         acknowledged after it (the last {}; all before the promotion, none survived), {} \
         attempts after the promotion, none acknowledged",
        acked_before.len(),
        pooled_acked_after_cut.len(),
        pooled_acked_after_cut
            .last()
            .map_or_else(|| "-".to_owned(), |a| since_cut(a.at)),
        pooled_tried_after_promotion
    );
    if let Some((at, why)) = &pooled_first_failure {
        println!(
            "isolation: cut -> old primary's pgbouncer first failed write {} ({why})",
            since_cut(*at)
        );
    }
    for (name, after) in &survivor_accepts {
        println!(
            "isolation: new primary's first acknowledged write -> {name}'s pgbouncer takes a write {}",
            ms(*after)
        );
    }
    println!(
        "isolation: heal -> old primary streaming from the new one {}",
        ms(rejoined)
    );
    println!("isolation: whole test {}", ms(began.elapsed()));
}

/// The partition flavour of "losing the Raft leader is no failover": the
/// Raft leader, a replica, is cut off, so the primary's renewals in flight
/// to it stall (no resets) instead of failing at once. The primary must
/// keep its lease through the election all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_raft_leader_that_is_a_replica_moves_no_primary() {
    let Some((env, _)) = NetnsLab::up().await else {
        return;
    };
    let (lab, net) = (&env.lab, &env.net);
    let api = Api::for_lab(&env.dir.path().join("lab.json"));
    let monitor = PrimaryMonitor::start(lab);
    let (primary, leader) = raft_leader_on_a_replica(lab, &api).await;
    let leader_ns = lab
        .member(&leader)
        .expect("member")
        .netns
        .clone()
        .expect("the Raft leader runs in a namespace");
    let steady = SteadyPrimary::start(lab, &api, &primary).await;
    net.isolate(&leader_ns).expect("cut the Raft leader's link");
    let live: Vec<String> = lab.names().into_iter().filter(|n| *n != leader).collect();
    steady
        .assert_unmoved(lab, &api, &live, "Raft leader isolated")
        .await;
    net.heal(&leader_ns).expect("heal the Raft leader's link");
    eventually(
        Duration::from_secs(60),
        "the healed replica streams again",
        || async { streaming(lab, &leader).await.then_some(()) },
    )
    .await;
    monitor.assert_never_two().await;
}
