//! Clients that write across a fault and record what every attempt came to:
//! acknowledged, refused, or cut short after the statement was sent, so
//! that it may have committed. Telling the last two apart is what lets a
//! test prove that a fenced primary took no write, and not merely that its
//! clients saw errors.
//!
//! Every row goes to [`TABLE`], tagged with the name of the writer that
//! sent it and, for a [`Writer`], a number, so that after the fault a test
//! can tell which acknowledged rows survived and which unacknowledged ones
//! did.

use crate::{dsn, execute, log_tails, query_i64s};
use raftgres_lab::{Lab, enter_netns};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The table the writers write to; [`create_table`] makes it.
pub const TABLE: &str = "probe_writes";

/// Creates [`TABLE`] through `dsn`, the primary's.
pub async fn create_table(dsn: &str) -> Result<(), String> {
    let sql =
        format!("CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, writer text NOT NULL, n bigint)");
    execute(dsn, &sql).await
}

/// The statement that writes row `n` of `writer`, or an unnumbered row.
pub fn insert(writer: &str, n: Option<i64>) -> String {
    let n = n.map_or_else(|| "NULL".to_owned(), |n| n.to_string());
    format!("INSERT INTO {TABLE} (writer, n) VALUES ('{writer}', {n})")
}

/// The `n` of every numbered row `writer` wrote, as `dsn`'s server has them.
pub async fn rows_of(dsn: &str, writer: &str) -> Result<Vec<i64>, String> {
    let sql =
        format!("SELECT n FROM {TABLE} WHERE writer = '{writer}' AND n IS NOT NULL ORDER BY n");
    query_i64s(dsn, &sql).await
}

/// What one write attempt came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The server acknowledged the commit.
    Committed,
    /// Definitely not committed: no connection, or the server said no.
    Refused(String),
    /// The connection broke (or the attempt timed out) after the statement
    /// was sent: it may have committed, at the latest by the attempt's end.
    Ambiguous(String),
}

impl Outcome {
    pub fn is_committed(&self) -> bool {
        matches!(self, Outcome::Committed)
    }

    /// Whether the row may be in the database: acknowledged, or cut short
    /// after the statement was sent.
    pub fn may_have_committed(&self) -> bool {
        !matches!(self, Outcome::Refused(_))
    }
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

/// One write attempt of a [`Writer`].
#[derive(Debug, Clone)]
pub struct Attempt {
    /// When the attempt (connecting, or the statement) began.
    pub sent: Instant,
    /// When its outcome was known.
    pub at: Instant,
    /// The row's `n`; `None` when no statement was sent (no connection).
    pub n: Option<i64>,
    pub outcome: Outcome,
}

/// One statement on a fresh connection; connecting and the statement are
/// each bounded by `bound`.
pub async fn attempt(dsn: &str, sql: &str, bound: Duration) -> Outcome {
    let (client, driver) = match connect(dsn, bound).await {
        Ok(session) => session,
        Err(refused) => return refused,
    };
    let outcome = statement(&client, sql, bound).await;
    drop(client);
    driver.abort();
    outcome
}

type Session = (
    tokio_postgres::Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
);

/// The client and the task driving its connection, or why there is none.
async fn connect(dsn: &str, bound: Duration) -> Result<Session, Outcome> {
    match tokio::time::timeout(bound, tokio_postgres::connect(dsn, tokio_postgres::NoTls)).await {
        Ok(Ok((client, connection))) => Ok((client, tokio::spawn(connection))),
        Ok(Err(e)) => Err(Outcome::Refused(format!("connect: {}", why(&e)))),
        Err(_) => Err(Outcome::Refused(format!(
            "connect: no answer within {bound:?}"
        ))),
    }
}

async fn statement(client: &tokio_postgres::Client, sql: &str, bound: Duration) -> Outcome {
    // The simple query protocol: a prepared statement would not survive
    // pgbouncer's transaction pooling.
    match tokio::time::timeout(bound, client.batch_execute(sql)).await {
        Ok(Ok(())) => Outcome::Committed,
        // The server answered with an error: this transaction did not commit.
        Ok(Err(e)) if e.as_db_error().is_some() => Outcome::Refused(why(&e)),
        Ok(Err(e)) => Outcome::Ambiguous(why(&e)),
        Err(_) => Outcome::Ambiguous(format!("no answer within {bound:?}")),
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

/// The first write a member acknowledged, as [`first_acknowledged`] found it.
#[derive(Debug, Clone)]
pub struct FirstWrite {
    pub member: String,
    /// The tag of the row it wrote.
    pub writer: String,
    /// When the first attempt that may have committed, on any member,
    /// began: no member's first commit came earlier.
    pub sent: Instant,
    /// When the member acknowledged it.
    pub acked: Instant,
}

/// Writes one row at a time to each of `members` in turn, through fresh
/// connections from the test's own network, until one acknowledges: that
/// member is the one taking writes. An error, with the members' logs, when
/// none did within `within`.
pub async fn first_acknowledged(
    lab: &Lab,
    members: &[String],
    within: Duration,
) -> Result<FirstWrite, String> {
    let deadline = Instant::now() + within;
    let mut first_sent = None;
    loop {
        for member in members {
            let writer = format!("first:{member}");
            let sent = Instant::now();
            let sql = insert(&writer, None);
            let outcome = attempt(&dsn(lab, member), &sql, Duration::from_secs(1)).await;
            if !outcome.may_have_committed() {
                continue;
            }
            let sent = *first_sent.get_or_insert(sent);
            if outcome.is_committed() {
                return Ok(FirstWrite {
                    member: member.clone(),
                    writer,
                    sent,
                    acked: Instant::now(),
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "none of {members:?} acknowledged a write within {within:?}\n{}",
                log_tails(lab, members)
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A client that keeps writing rows `(name, n)` with `n` = 1, 2, ...
/// through one DSN whatever happens to the server, and records every
/// attempt. It keeps one connection until an attempt fails, then opens a
/// new one, as a pooled application would. Stops when dropped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    pause: Arc<Pause>,
    attempts: Attempts,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Attempts = Arc<Mutex<Vec<Attempt>>>;

/// Lets the test hold a [`Writer`] between attempts.
#[derive(Default)]
struct Pause {
    wanted: AtomicBool,
    /// Set before an attempt starts and cleared after it ends; the writer
    /// checks `wanted` only after setting it, so once `wanted` is set and
    /// this is seen clear, no attempt runs until `wanted` is cleared.
    attempting: AtomicBool,
}

impl Writer {
    /// Starts writing as `name` through `dsn`, each step bounded by `bound`,
    /// on a thread of its own. With `netns`, that thread runs inside the
    /// network namespace, as a member's local client does: cutting the
    /// member's link leaves it connected to the member.
    pub fn start(netns: Option<&str>, dsn: &str, name: &str, bound: Duration) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(Pause::default());
        let attempts = Attempts::default();
        let (netns, dsn, name) = (netns.map(str::to_owned), dsn.to_owned(), name.to_owned());
        let writing = WriteLoop {
            stop: stop.clone(),
            pause: pause.clone(),
            attempts: attempts.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("writer-{name}"))
            .spawn(move || {
                // Only this thread moves; its sockets belong to the namespace.
                if let Some(ns) = &netns {
                    enter_netns(ns).unwrap_or_else(|e| panic!("enter the namespace {ns}: {e}"));
                }
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("writer runtime")
                    .block_on(writing.run(&dsn, &name, bound));
            })
            .expect("writer thread");
        Writer {
            stop,
            pause,
            attempts,
            thread: Some(thread),
        }
    }

    /// Every attempt so far, in order.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many attempts so far were acknowledged.
    pub fn committed(&self) -> usize {
        self.attempts()
            .iter()
            .filter(|a| a.outcome.is_committed())
            .count()
    }

    /// Returns once no attempt runs, and none starts until [`Self::resume`].
    pub async fn hold(&self) {
        self.pause.wanted.store(true, Ordering::SeqCst);
        while self.pause.attempting.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn resume(&self) {
        self.pause.wanted.store(false, Ordering::SeqCst);
    }

    /// Stops writing; every attempt, in order.
    pub fn finish(mut self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // Every step in the loop is bounded, so this returns within
            // about two bounds.
            thread.join().expect("writer thread");
        }
        self.attempts()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The loop of a [`Writer`], on its own thread.
struct WriteLoop {
    stop: Arc<AtomicBool>,
    pause: Arc<Pause>,
    attempts: Attempts,
}

impl WriteLoop {
    fn record(&self, sent: Instant, n: Option<i64>, outcome: Outcome) {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Attempt {
                sent,
                at: Instant::now(),
                n,
                outcome,
            });
    }

    async fn run(&self, dsn: &str, name: &str, bound: Duration) {
        let mut client = None;
        let mut n: i64 = 0;
        while !self.stop.load(Ordering::Relaxed) {
            self.pause.attempting.store(true, Ordering::SeqCst);
            if self.pause.wanted.load(Ordering::SeqCst) {
                self.pause.attempting.store(false, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            let sent = Instant::now();
            let failed = match &client {
                None => match connect(dsn, bound).await {
                    // The driver task ends when the client is dropped.
                    Ok((connected, _driver)) => {
                        client = Some(connected);
                        false
                    }
                    Err(refused) => {
                        self.record(sent, None, refused);
                        true
                    }
                },
                Some(connected) => {
                    n += 1;
                    let outcome = statement(connected, &insert(name, Some(n)), bound).await;
                    let failed = !outcome.is_committed();
                    self.record(sent, Some(n), outcome);
                    failed
                }
            };
            if failed {
                client = None;
            }
            self.pause.attempting.store(false, Ordering::SeqCst);
            let pace = if failed { 20 } else { 5 };
            tokio::time::sleep(Duration::from_millis(pace)).await;
        }
    }
}
