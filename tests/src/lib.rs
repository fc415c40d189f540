//! Shared helpers for the real-process tests: they start real agents through
//! the same lab code as `raftgresctl lab`, and kill them with real signals.

pub mod bench;
pub mod faults;
mod fixture;
pub mod http;
pub mod matrix;
mod monitor;
pub mod process;
pub mod settle;
pub mod steady;
pub mod writer;

pub use fixture::{
    LabDir, any_replica, member_with_id, members_except, monitored_lab, other_member, serial_lab,
    settled_lab,
};
pub use monitor::{NeverTwoPrimaries, PrimaryMonitor};
use raftgres_lab::{Lab, LabSpec, agent_status};
use raftgres_proto::v1::AgentStatusReply;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Real clusters share two cores; running them one at a time keeps timing sane.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// `target/<profile>/raftgres-agent`, built by `cargo build --workspace --bins`.
pub fn agent_bin() -> PathBuf {
    built_bin("raftgres-agent")
}

/// `target/<profile>/raftgresctl`, built by `cargo build --workspace --bins`.
pub fn ctl_bin() -> PathBuf {
    built_bin("raftgresctl")
}

/// `target/<profile>/<name>`, which must have been built.
fn built_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join(name))
        .expect("target directory");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace --bins` before the tests (scripts/test-all does)",
        bin.display()
    );
    bin
}

/// The PID in the member's `postmaster.pid`, if Postgres left one there.
pub fn postmaster_pid(lab: &Lab, name: &str) -> Option<i32> {
    let pid_file = lab
        .member(name)
        .expect("member")
        .data_dir
        .join("pgdata/postmaster.pid");
    std::fs::read_to_string(pid_file)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The one writable member other than `old`, once there is one.
pub async fn new_primary(lab: &Lab, old: &str, within: Duration) -> String {
    eventually(
        within,
        "another member's Postgres becomes writable",
        || async {
            match writable(lab).await.as_slice() {
                [one] if one != old => Some(one.clone()),
                _ => None,
            }
        },
    )
    .await
}

/// `target/bench`, where benchmarks write their figures.
pub fn bench_dir() -> PathBuf {
    let out = agent_bin()
        .parent()
        .and_then(|p| p.parent())
        .expect("target directory")
        .join("bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    out
}

/// Prints a benchmark's figures and writes them to
/// `target/bench/<name>.json` beside the binaries they measured.
pub fn report_bench(name: &str, report: &serde_json::Value) {
    let text = serde_json::to_string_pretty(report).expect("figures as JSON");
    println!("{text}");
    let file = bench_dir().join(format!("{name}.json"));
    std::fs::write(&file, &text).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    println!("written to {}", file.display());
}

/// The last lines of a log file, headed by its path, for failure messages.
pub fn file_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(25)..].join("\n");
    format!("--- last lines of {}:\n{tail}", path.display())
}

/// The member's agent log tail, and its pgbouncer's when it has one.
pub fn log_tail(lab: &Lab, name: &str) -> String {
    let member = lab.member(name).expect("member");
    let mut tails = file_tail(&member.log);
    if let Some(log) = &member.pgbouncer_log {
        tails = format!("{tails}\n{}", file_tail(log));
    }
    tails
}

/// [`log_tail`] of each of `names`, one after the other.
pub fn log_tails<S: AsRef<str>>(lab: &Lab, names: &[S]) -> String {
    names
        .iter()
        .map(|name| log_tail(lab, name.as_ref()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A lab directory under /tmp, which the postgres user can always reach.
pub fn lab_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("raftgres-test-")
        .tempdir_in("/tmp")
        .expect("temporary lab directory")
}

/// The environment variable that runs the real-process tests on other
/// PostgreSQL binaries than the system's 15, e.g. what
/// `scripts/fetch-postgres 18` prints (`scripts/test-all` sets it).
pub const PG_BIN_DIR_VAR: &str = "RAFTGRES_TEST_PG_BIN_DIR";

/// What every test lab runs: `members` database members (and a witness),
/// on the Postgres binaries in [`PG_BIN_DIR_VAR`] when it is set.
pub fn lab_spec(dir: &Path, members: usize, witness: bool) -> LabSpec {
    LabSpec {
        pg_bin_dir: std::env::var_os(PG_BIN_DIR_VAR)
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from),
        ..LabSpec::new(dir.to_owned(), members, witness, agent_bin())
    }
}

pub async fn start_lab(dir: &tempfile::TempDir, members: usize, witness: bool) -> (Lab, String) {
    let spec = lab_spec(dir.path(), members, witness);
    let lab = Lab::up(&spec).expect("lab up");
    let holder = lab
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("lab healthy");
    (lab, holder)
}

pub async fn status(lab: &Lab, name: &str) -> Result<AgentStatusReply, String> {
    agent_status(
        &lab.member(name).expect("member").raft_addr,
        lab.description.tls.as_ref(),
    )
    .await
}

/// Waits (up to 30 s) until the group records `name`'s place: a new
/// cluster's members claim theirs just after the start.
pub async fn wait_place_recorded(lab: &Lab, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !status(lab, name).await.is_ok_and(|s| s.place_recorded) {
        assert!(
            Instant::now() < deadline,
            "{name}'s Raft place was not recorded within 30s\n{}",
            file_tail(&lab.member(name).expect("member").log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first of `among` that reports holding the lease, once one does;
/// the test fails if none does within `within`.
pub async fn new_holder(lab: &Lab, among: &[String], within: Duration) -> String {
    let what = format!("one of {among:?} takes the lease");
    eventually(within, &what, || async {
        holders(lab, among).await.into_iter().next()
    })
    .await
}

/// Every status `name`'s agent gives for `during`, polled every 20 ms; the
/// test fails at the first that claims the lease.
pub async fn never_claims_the_lease(
    lab: &Lab,
    name: &str,
    during: Duration,
) -> Vec<AgentStatusReply> {
    let since = Instant::now();
    let mut answers = Vec::new();
    while since.elapsed() < during {
        if let Ok(s) = status(lab, name).await {
            assert!(!s.holds_lease, "{name}'s agent claims the lease: {s:?}");
            answers.push(s);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    answers
}

/// Stops `name`'s agent with SIGSTOP, as a hung process; its Postgres runs on.
pub fn freeze_agent(lab: &Lab, name: &str) {
    lab.signal(name, nix::sys::signal::Signal::SIGSTOP)
        .unwrap_or_else(|e| panic!("SIGSTOP {name}'s agent: {e}"));
}

/// Lets `name`'s agent run again after [`freeze_agent`].
pub fn thaw_agent(lab: &Lab, name: &str) {
    lab.signal(name, nix::sys::signal::Signal::SIGCONT)
        .unwrap_or_else(|e| panic!("SIGCONT {name}'s agent: {e}"));
}

/// `relative` under `name`'s data directory (its agent's, which holds
/// `pgdata`, `keeper.log` and `postgres.log`).
pub fn data_file(lab: &Lab, name: &str, relative: &str) -> PathBuf {
    lab.member(name).expect("member").data_dir.join(relative)
}

/// A directory under /tmp that the agents, run as the postgres user, may
/// read: for files a test writes for an agent outside a lab.
pub fn shared_tempdir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// A replaced disk under a member's Raft store: SIGKILLs its agent, deletes
/// the store and starts the agent again under its old id.
pub fn wipe_raft_store_and_restart(lab: &mut Lab, name: &str) {
    lab.kill(name).expect("SIGKILL the agent");
    let store = lab.member(name).expect("member").data_dir.join("raft.redb");
    std::fs::remove_file(&store).unwrap_or_else(|e| panic!("delete {}: {e}", store.display()));
    lab.start(name).expect("start the agent on an empty store");
}

/// What the refusal of a wiped member says to do: once its agent exited,
/// remove it through `via`'s API, then start it again as a new member.
pub async fn readd_refused_member(lab: &mut Lab, wiped: &str, via: &str) {
    let log = lab.member(wiped).expect("member").log.clone();
    assert!(
        lab.wait_exit(wiped, Duration::from_secs(60)).is_some(),
        "the agent of {wiped} kept running on an empty Raft store under its old id\n{}",
        file_tail(&log)
    );
    let api = http::Api::of(lab);
    let url = http::api_url(lab, via);
    let reply = api
        .call("DELETE", &url, &format!("/members/{wiped}"), None, true)
        .await
        .expect("DELETE /members");
    assert_eq!(reply.status, 200, "{reply:?}");
    lab.start(wiped).expect("start the wiped member again");
}

/// Polls `check` every 50 ms until it returns Some; None once `within`
/// has passed.
async fn poll<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns Some, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    poll(within, check)
        .await
        .unwrap_or_else(|| panic!("timed out after {within:?} waiting for: {what}"))
}

/// Polls `check` until it holds, or panics after `within` saying `what`
/// was awaited.
pub async fn until_holds<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually(within, what, || {
        let checked = check();
        async move { checked.await.then_some(()) }
    })
    .await
}

/// Polls `check` until it holds. After `within` it returns an error, not a
/// panic, so that a scenario can record the failure and go on. The error
/// says what was awaited and carries the log tails of the members in `logs`.
pub async fn wait_until<F, Fut>(
    lab: &Lab,
    logs: &[&str],
    within: Duration,
    what: &str,
    mut check: F,
) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let holds = poll(within, || {
        let checked = check();
        async move { checked.await.then_some(()) }
    });
    holds.await.ok_or_else(|| {
        format!(
            "timed out after {within:?} waiting for: {what}\n{}",
            log_tails(lab, logs)
        )
    })
}

/// Runs `scenario` to its end on a thread and runtime of its own; its
/// panic comes back as an error. A file whose tests each judge one
/// property of a costly scenario keeps the result in a `OnceLock` filled
/// by this: a test's own runtime ends with that test, taking along
/// whatever the scenario spawned on it, and a panicking initializer would
/// leave the cell empty for the next test to run the scenario again.
pub fn run_scenario<T, Fut>(scenario: impl FnOnce() -> Fut + Send + 'static) -> Result<T, String>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    std::thread::Builder::new()
        .name("scenario".into())
        .spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("scenario runtime")
                .block_on(scenario())
        })
        .expect("scenario thread")
        .join()
        .map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic without a message".to_owned())
        })
        .and_then(|recorded| recorded)
}

/// The members (among `names`) that report holding a valid lease right now.
pub async fn holders(lab: &Lab, names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        if status(lab, name).await.is_ok_and(|s| s.holds_lease) {
            out.push(name.clone());
        }
    }
    out
}

/// Runs `work` on a fresh connection to `dsn`, the whole bounded to two
/// seconds.
async fn on_fresh_connection<T>(
    dsn: &str,
    work: impl AsyncFnOnce(&tokio_postgres::Client) -> Result<T, tokio_postgres::Error>,
) -> Result<T, String> {
    let session = async {
        let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let result = work(&client).await.map_err(|e| e.to_string());
        drop(client);
        let _ = driver.await;
        result
    };
    tokio::time::timeout(Duration::from_secs(2), session)
        .await
        .map_err(|_| "no answer within 2s".to_owned())?
}

/// Runs one statement through a fresh connection, bounded to two seconds.
pub async fn execute(dsn: &str, sql: &str) -> Result<(), String> {
    on_fresh_connection(dsn, async |client| client.batch_execute(sql).await).await
}

/// [`execute`] on `name`'s Postgres, which must succeed; a failure names
/// the member and the statement.
pub async fn execute_on(lab: &Lab, name: &str, sql: &str) {
    execute(&dsn(lab, name), sql)
        .await
        .unwrap_or_else(|e| panic!("{sql} on {name}: {e}"));
}

/// One integer (or count) from a query, bounded to two seconds.
pub async fn query_i64(dsn: &str, sql: &str) -> Result<i64, String> {
    on_fresh_connection(dsn, async |client| {
        client.query_one(sql, &[]).await?.try_get::<_, i64>(0)
    })
    .await
}

/// The first column of every row of a query, as integers, bounded to two
/// seconds.
pub async fn query_i64s(dsn: &str, sql: &str) -> Result<Vec<i64>, String> {
    on_fresh_connection(dsn, async |client| {
        client
            .query(sql, &[])
            .await?
            .iter()
            .map(|row| row.try_get::<_, i64>(0))
            .collect()
    })
    .await
}

/// `SELECT count(*) FROM rows` on `name`'s Postgres, bounded to two
/// seconds; `rows` is a table, with a `WHERE` clause when one is wanted.
pub async fn count_rows(lab: &Lab, name: &str, rows: &str) -> Result<i64, String> {
    query_i64(&dsn(lab, name), &format!("SELECT count(*) FROM {rows}")).await
}

/// Creates `table` with one row on `primary`, then waits until `replica`
/// has replayed it; after `within`, panics saying `what` was awaited.
pub async fn a_write_reaches(
    lab: &Lab,
    primary: &str,
    replica: &str,
    table: &str,
    within: Duration,
    what: &str,
) {
    let sql = format!("CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1)");
    execute_on(lab, primary, &sql).await;
    until_holds(within, what, || async {
        count_rows(lab, replica, table).await == Ok(1)
    })
    .await
}

/// A session on `name`'s Postgres that lives as long as the client, for a
/// statement that must run across a fault.
pub async fn connect(lab: &Lab, name: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&dsn(lab, name), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {name}'s Postgres: {e}"));
    tokio::spawn(connection);
    client
}

pub fn dsn(lab: &Lab, name: &str) -> String {
    lab.member(name)
        .expect("member")
        .dsn
        .clone()
        .expect("a database member")
}

/// The DSN of the write database through the member's own pgbouncer.
pub fn pgbouncer_dsn(lab: &Lab, name: &str) -> String {
    lab.member(name)
        .expect("member")
        .pgbouncer_dsn
        .clone()
        .expect("the lab runs a pgbouncer per database member (is pgbouncer installed?)")
}

/// The database members whose Postgres is a writable primary right now.
pub async fn writable(lab: &Lab) -> Vec<String> {
    let mut out = Vec::new();
    for m in &lab.description.members {
        if let Some(dsn) = &m.dsn
            && raftgres_lab::pg_query_bool(dsn, "SELECT NOT pg_is_in_recovery()").await == Ok(true)
        {
            out.push(m.name.clone());
        }
    }
    out
}

/// Whether `name`'s Postgres is a replica streaming from a primary.
pub async fn streaming(lab: &Lab, name: &str) -> bool {
    raftgres_lab::pg_query_bool(
        &dsn(lab, name),
        "SELECT pg_is_in_recovery() AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')",
    )
    .await
        == Ok(true)
}

/// Waits until `name`'s Postgres streams from a primary; after `within`,
/// panics saying `what` was awaited.
pub async fn until_streaming(lab: &Lab, name: &str, within: Duration, what: &str) {
    until_holds(within, what, || streaming(lab, name)).await
}

/// Waits until `name` is the one writable member; after `within`, panics
/// saying `what` was awaited.
pub async fn until_sole_writable(lab: &Lab, name: &str, within: Duration, what: &str) {
    until_holds(within, what, || async { writable(lab).await == [name] }).await
}
