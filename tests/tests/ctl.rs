//! The built `raftgresctl` against a real lab, found through `--lab DIR`
//! (its lab.json gives the members and the API credentials): what it shows,
//! the changes of primary it asks for, maintenance mode, and the exit code
//! a script sees for each way an operation can fail (0 ok, 1 this side,
//! 2 refused by an agent, 3 no agent reachable).

use raftgres_lab::Lab;
use raftgres_tests::http::{Api, api_url};
use raftgres_tests::process::{output_within, run_ok};
use raftgres_tests::settle::{SETTLE_WITHIN, roles_settled, until, until_eq};
use raftgres_tests::{
    PrimaryMonitor, any_replica, ctl_bin, other_member, serial_lab, settled_lab, until_holds,
    until_streaming, writable,
};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// A command waits for at most one change of primary (75 s in raftgresctl).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
const AGENT_LOG_LINES: usize = 40;

/// One finished `raftgresctl` run.
struct Run {
    command: String,
    /// `None` when killed by a signal.
    exit_code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Standard output as JSON, which it must be.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("`{}` printed no JSON ({e}):\n{}", self.command, self.stdout)
        })
    }
}

/// Runs `raftgresctl` against one lab, and on a surprise shows what the
/// agents logged, since the lab directory is gone once the test ends.
struct Ctl {
    lab_dir: PathBuf,
    agent_logs: Vec<(String, PathBuf)>,
}

impl Ctl {
    fn for_lab(lab: &Lab) -> Ctl {
        Ctl {
            lab_dir: lab.description.dir.clone(),
            agent_logs: lab
                .description
                .members
                .iter()
                .map(|m| (m.name.clone(), m.log.clone()))
                .collect(),
        }
    }

    /// `raftgresctl --lab DIR args...`.
    async fn run(&self, args: &[&str]) -> Run {
        let lab = self.lab_dir.to_str().expect("a UTF-8 lab path");
        let mut all = vec!["--lab", lab];
        all.extend_from_slice(args);
        run_ctl(&all).await
    }

    /// Runs `args` and fails the test, with the agents' logs, unless it
    /// exits with `exit_code`.
    async fn expect(&self, exit_code: i32, args: &[&str]) -> Run {
        let run = self.run(args).await;
        self.check(&run, exit_code);
        run
    }

    fn check(&self, run: &Run, exit_code: i32) {
        assert!(
            run.exit_code == Some(exit_code),
            "`{}` exited with {:?}, expected {exit_code}\n--- stdout\n{}--- stderr\n{}{}",
            run.command,
            run.exit_code,
            run.stdout,
            run.stderr,
            self.agent_log_tails()
        );
    }

    fn agent_log_tails(&self) -> String {
        let mut out = String::new();
        for (name, path) in &self.agent_logs {
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("({e})\n"));
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(AGENT_LOG_LINES)..];
            out.push_str(&format!("--- {name}: {}\n", path.display()));
            for line in tail {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// `list --format json`: patronictl's rows, one a member.
    async fn members(&self) -> Vec<Value> {
        let run = self.expect(0, &["list", "--format", "json"]).await;
        run.json()
            .as_array()
            .unwrap_or_else(|| panic!("`{}` printed no array:\n{}", run.command, run.stdout))
            .clone()
    }

    /// `raftgresctl --lab DIR args...` with `env`, failing the test unless
    /// it exits with `exit_code`.
    async fn expect_with(
        &self,
        exit_code: i32,
        env: &[(&str, &str)],
        stdin: Option<&str>,
        args: &[&str],
    ) -> Run {
        let lab = self.lab_dir.to_str().expect("a UTF-8 lab path");
        let all: Vec<&str> = ["--lab", lab].iter().chain(args).copied().collect();
        let run = run_ctl_with(&all, env, stdin).await;
        self.check(&run, exit_code);
        run
    }

    /// `show-config --format json`.
    async fn config(&self) -> Value {
        self.expect(0, &["show-config", "--format", "json"])
            .await
            .json()
    }
}

/// `raftgresctl args...` with stdin not a terminal and no cluster taken
/// from the environment, killed after [`COMMAND_TIMEOUT`].
async fn run_ctl(args: &[&str]) -> Run {
    run_ctl_with(args, &[], None).await
}

/// [`run_ctl`] with `env` set (no other libpq variable from ours) and
/// `stdin`, when given, as standard input.
async fn run_ctl_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    use tokio::io::AsyncWriteExt;
    let command = format!("raftgresctl {}", args.join(" "));
    let mut child = tokio::process::Command::new(ctl_bin());
    child.args(args);
    for var in [
        "RAFTGRESCTL_URL",
        "RAFTGRESCTL_USERNAME",
        "RAFTGRESCTL_PASSWORD",
        "RAFTGRESCTL_CACERT",
        "RAFTGRESCTL_CERT",
        "RAFTGRESCTL_KEY",
        "PGUSER",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSSLMODE",
        "PGSSLROOTCERT",
    ] {
        child.env_remove(var);
    }
    let mut child = child
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("`{command}`: cannot write its stdin: {e}"));
    }
    let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{command}` did not finish within {COMMAND_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("`{command}`: {e}"));
    Run {
        command,
        exit_code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn name(member: &Value) -> &str {
    member["Member"].as_str().unwrap_or_default()
}

/// The members `list --format json` calls leader.
fn leaders(members: &[Value]) -> Vec<String> {
    members
        .iter()
        .filter(|m| m["Role"] == "Leader")
        .map(|m| name(m).to_owned())
        .collect()
}

async fn wait_streaming(lab: &Lab, member: &str) {
    let what = format!("{member} streams from the primary");
    until_streaming(lab, member, Duration::from_secs(60), &what).await;
}

/// Waits until `show-config` says the cluster is `paused` (or not): it
/// may ask a member that applies the change a moment later.
async fn until_config_paused(ctl: &Ctl, paused: bool) {
    until_eq(
        SETTLE_WITHIN,
        "show-config's pause",
        &Value::Bool(paused),
        || async { ctl.config().await["pause"].clone() },
    )
    .await;
}

/// [`until_config_paused`], then until `list` shows maintenance mode on
/// when `paused`, and not at all otherwise.
async fn until_shown_paused(ctl: &Ctl, paused: bool) {
    until_config_paused(ctl, paused).await;
    until_holds(
        Duration::from_secs(10),
        "`list` shows the maintenance mode as it is",
        || async {
            let table = ctl.expect(0, &["list"]).await.stdout;
            if paused {
                table.contains("Maintenance mode: on")
            } else {
                !table.contains("Maintenance mode")
            }
        },
    )
    .await;
}

/// Writes `text` to `path`, readable by its owner only (a password file).
fn write_private(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod 600");
}

/// Until `/cluster` names `leader` as the one leader: each member reports
/// its own role through Raft, so the document follows a change shortly.
async fn wait_listed_leader(ctl: &Ctl, leader: &str) -> Vec<Value> {
    let mut last = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            last = ctl.members().await;
            if leaders(&last) == [leader] {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "`list --format json` never named {leader} the only leader; last: {last:#?}"
    );
    last
}

/// `raftgresctl COMMAND --candidate CANDIDATE --force` (switchover or
/// failover): once it returns, the candidate is the one writable member,
/// and then `list` names it the leader.
async fn move_primary(ctl: &Ctl, lab: &Lab, command: &str, candidate: &str) {
    let run = ctl
        .expect(0, &[command, "--candidate", candidate, "--force"])
        .await;
    assert_eq!(writable(lab).await, [candidate], "after `{}`", run.command);
    wait_listed_leader(ctl, candidate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_shows_the_cluster_and_moves_the_primary() {
    let (_dir, lab, first) = serial_lab(3, false).await;
    let ctl = Ctl::for_lab(&lab);
    let monitor = PrimaryMonitor::start(&lab);
    let mut names = lab.names();
    names.sort();

    let members = wait_listed_leader(&ctl, &first).await;
    let mut listed: Vec<String> = members.iter().map(|m| name(m).to_owned()).collect();
    listed.sort();
    assert_eq!(listed, names, "{members:#?}");

    let table = ctl.expect(0, &["list"]).await.stdout;
    for member in &names {
        assert!(
            table.contains(member.as_str()),
            "{member} missing:\n{table}"
        );
    }
    assert!(table.contains("Leader"), "{table}");
    assert!(!table.contains("Maintenance mode"), "{table}");
    // Each replica shows under the leader once it published itself a replica.
    let replicas: Vec<&String> = names.iter().filter(|n| **n != first).collect();
    until(
        SETTLE_WITHIN,
        "every replica under the leader in `topology`",
        || async { ctl.expect(0, &["topology"]).await.stdout },
        |tree| replicas.iter().all(|r| tree.contains(&format!("+ {r}"))),
    )
    .await;

    // Switchover to a named replica.
    let target = any_replica(&lab, &first);
    // The switchover is judged on the candidate's published state.
    roles_settled(&lab, &first).await;
    move_primary(&ctl, &lab, "switchover", &target).await;
    wait_streaming(&lab, &first).await;

    let history = ctl.expect(0, &["history"]).await.stdout;
    assert!(
        history
            .lines()
            .any(|l| l.contains("switchover") && l.contains(target.as_str())),
        "no switchover to {target} in:\n{history}"
    );

    // A failover to a healthy replica while a leader exists hands over too.
    let third = other_member(&lab, &[&first, &target]);
    roles_settled(&lab, &target).await;
    move_primary(&ctl, &lab, "failover", &third).await;

    monitor.assert_never_two().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_pauses_and_exits_by_what_went_wrong() {
    // Until the leader is shown healthy, a switchover is refused for that
    // reason instead of the unknown candidate this asserts.
    let (dir, lab, primary) = settled_lab(3).await;
    let ctl = Ctl::for_lab(&lab);
    let replica = any_replica(&lab, &primary);

    // Refused by the agent: 2, with the agent's reason.
    let run = ctl
        .expect(2, &["switchover", "--candidate", "nobody", "--force"])
        .await;
    assert!(
        run.stderr.contains("412") && run.stderr.contains("nobody"),
        "the agent's reason should name the candidate:\n{}",
        run.stderr
    );

    // Nobody to confirm: 1, and nothing is sent.
    let run = ctl
        .expect(1, &["switchover", "--candidate", &replica])
        .await;
    assert!(run.stderr.contains("--force"), "{}", run.stderr);

    // Nothing listening: 3. Without --lab, so no member can answer instead.
    let run = run_ctl(&["list", "--url", "http://127.0.0.1:1"]).await;
    ctl.check(&run, 3);
    assert!(run.stderr.contains("127.0.0.1:1"), "{}", run.stderr);

    // Wrong password: 2, and the cluster stays unpaused.
    let wrong = dir.path().join("wrong-password");
    write_private(&wrong, "wrong\n");
    let wrong = wrong.to_str().expect("a UTF-8 path");
    let run = ctl.expect(2, &["pause", "--password-file", wrong]).await;
    assert!(
        run.stderr.contains("401") && run.stderr.contains("credentials"),
        "{}",
        run.stderr
    );
    assert_eq!(ctl.config().await["pause"], false);
    assert_eq!(writable(&lab).await, vec![primary.clone()]);

    // Maintenance mode on, shown by show-config and list; pausing again is fine.
    ctl.expect(0, &["pause"]).await;
    until_shown_paused(&ctl, true).await;
    let run = ctl.expect(0, &["pause"]).await;
    assert!(run.stdout.contains("already paused"), "{}", run.stdout);

    // `resume --wait` returns once every member's own status says so.
    let run = ctl.expect(0, &["resume", "--wait"]).await;
    assert!(run.stdout.contains("Success"), "{}", run.stdout);
    let api = Api::of(&lab);
    for name in lab.names() {
        let doc = api
            .get(&api_url(&lab, &name), "/patroni")
            .await
            .expect("GET /patroni")
            .body;
        assert_eq!(
            doc["pause"], false,
            "{name} still paused after resume --wait"
        );
    }
    until_shown_paused(&ctl, false).await;
    assert_eq!(writable(&lab).await, vec![primary.clone()]);

    // `dsn`: the leader's address by default, a replica's by role or name,
    // an unknown member refused.
    let address = |name: &str| {
        let m = lab.member(name).expect("member");
        format!(
            "host={} port={}",
            m.pg_host.as_deref().expect("a Postgres host"),
            m.pg_port.expect("a Postgres port")
        )
    };
    let run = ctl.expect(0, &["dsn"]).await;
    assert_eq!(run.stdout.trim(), address(&primary), "{}", run.stdout);
    let run = ctl.expect(0, &["dsn", &replica]).await;
    assert_eq!(run.stdout.trim(), address(&replica), "{}", run.stdout);
    let run = ctl.expect(0, &["dsn", "--role", "replica"]).await;
    assert_ne!(run.stdout.trim(), address(&primary), "{}", run.stdout);
    let run = ctl.expect(1, &["dsn", "nobody"]).await;
    assert!(
        run.stderr.contains("nobody is not a member"),
        "{}",
        run.stderr
    );

    // `reload` of the replicas: each says how it went.
    let run = ctl
        .expect(0, &["reload", "--role", "replica", "--force"])
        .await;
    assert!(
        run.stdout.contains(&format!("{replica}: ")),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains(&format!("{primary}: ")),
        "{}",
        run.stdout
    );

    // `flush switchover` with nothing scheduled says so.
    let run = ctl.expect(0, &["flush", "switchover", "--force"]).await;
    assert!(
        run.stdout.contains("No pending scheduled switchover"),
        "{}",
        run.stdout
    );
    assert_eq!(writable(&lab).await, vec![primary]);
}

/// `SHOW name` on every member, by name.
async fn setting_everywhere(lab: &Lab, name: &str) -> Vec<String> {
    let mut values = Vec::new();
    for member in lab.names() {
        let dsn = raftgres_tests::dsn(lab, &member);
        let value = raftgres_tests::query_i64(
            &dsn,
            &format!("SELECT pg_size_bytes(current_setting('{name}'))::bigint"),
        )
        .await
        .map_or_else(|e| format!("({e})"), |v| v.to_string());
        values.push(value);
    }
    values
}

fn pending_members(members: &[Value]) -> Vec<String> {
    members
        .iter()
        .filter(|m| m["Pending restart"] == "*")
        .filter_map(|m| m["Member"].as_str().map(str::to_owned))
        .collect()
}

/// The cluster's `postgresql.parameters` reach every member: a reloadable
/// one at once, a restart-only one shown as pending restart until
/// `restart --pending` applies it; a value Postgres refuses is refused by
/// the edit and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_parameters_reach_every_member_and_restart_pending_applies_them() {
    let (_dir, lab, primary) = settled_lab(3).await;
    let ctl = Ctl::for_lab(&lab);
    let mut all = lab.names();
    all.sort();

    ctl.expect(
        0,
        &[
            "edit-config",
            "--pg",
            "work_mem=7MB",
            "--pg",
            "max_connections=120",
            "--force",
        ],
    )
    .await;
    let seven_mb = (7 * 1024 * 1024).to_string();
    until_eq(
        SETTLE_WITHIN,
        "work_mem on every member after a reload",
        &vec![seven_mb.clone(); 3],
        || setting_everywhere(&lab, "work_mem"),
    )
    .await;
    until_eq(
        SETTLE_WITHIN,
        "every member waits for a restart for max_connections",
        &all.clone(),
        || async { pending_members(&ctl.members().await) },
    )
    .await;
    let listed = ctl.expect(0, &["list"]).await;
    assert!(
        listed.stdout.contains("Pending restart"),
        "{}",
        listed.stdout
    );
    let status = Api::of(&lab)
        .get(&api_url(&lab, &primary), "/patroni")
        .await
        .expect("GET /patroni")
        .body;
    assert_eq!(
        status["pending_restart_reason"]["max_connections"],
        serde_json::json!({"old_value": "100", "new_value": "120"}),
        "{status}"
    );

    // Refused by Postgres itself: named, and the config stays as it was.
    let run = ctl
        .expect(2, &["edit-config", "--pg", "work_mem=banana", "--force"])
        .await;
    assert!(
        run.stderr
            .contains("invalid value for parameter \"work_mem\""),
        "{}",
        run.stderr
    );
    assert_eq!(
        ctl.config().await["postgresql"]["parameters"]["work_mem"],
        "7MB"
    );

    let monitor = PrimaryMonitor::start(&lab);
    let run = ctl.expect(0, &["restart", "--pending", "--force"]).await;
    let leader_line = run
        .stdout
        .lines()
        .position(|l| l.starts_with(&format!("{primary}:")))
        .expect("the leader was restarted");
    assert_eq!(leader_line, 2, "the leader comes last:\n{}", run.stdout);
    until_eq(
        SETTLE_WITHIN,
        "max_connections on every member after the restarts",
        &vec![Some(120); 3],
        || async {
            let mut values = Vec::new();
            for member in lab.names() {
                let dsn = raftgres_tests::dsn(&lab, &member);
                values.push(
                    raftgres_tests::query_i64(
                        &dsn,
                        "SELECT current_setting('max_connections')::bigint",
                    )
                    .await
                    .ok(),
                );
            }
            values
        },
    )
    .await;
    until_eq(
        SETTLE_WITHIN,
        "no member waits for a restart",
        &Vec::<String>::new(),
        || async { pending_members(&ctl.members().await) },
    )
    .await;
    let run = ctl.expect(0, &["restart", "--pending", "--force"]).await;
    assert!(run.stdout.contains("nothing to restart"), "{}", run.stdout);
    monitor.assert_never_two().await;
    assert_eq!(writable(&lab).await, vec![primary]);
}

/// Completions and the man page come from the CLI definition: a bash
/// script bash accepts that knows the commands, and a roff page naming them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_man_page_come_from_the_cli() {
    let run = run_ctl(&["completion", "bash"]).await;
    assert_eq!(run.exit_code, Some(0), "{}", run.stderr);
    for word in ["switchover", "reload", "dsn", "--format"] {
        assert!(run.stdout.contains(word), "no {word} in:\n{}", run.stdout);
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let script = dir.path().join("raftgresctl.bash");
    std::fs::write(&script, &run.stdout).expect("write the script");
    run_ok(
        std::process::Command::new("bash").arg("-n").arg(&script),
        "bash -n on the completion script",
    );
    // A usage error, exit 1 as documented, naming the shells there are.
    let run = run_ctl(&["completion", "nosh"]).await;
    assert_eq!(run.exit_code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("zsh"), "{}", run.stderr);

    let run = run_ctl(&["man"]).await;
    assert_eq!(run.exit_code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains(".TH raftgresctl 1"), "{}", run.stdout);
    assert!(run.stdout.contains("switchover"), "{}", run.stdout);
}

/// The first command a user runs: `lab up` prints where clients connect,
/// and the printed `psql` line for HAProxy's write port writes; `lab
/// status` prints the same lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_up_prints_psql_lines_that_connect() {
    let _serial = raftgres_tests::serial().await;
    let dir = raftgres_tests::lab_dir();
    let dir_arg = dir.path().to_str().expect("a UTF-8 path").to_owned();
    let up = output_within(
        tokio::process::Command::new(ctl_bin())
            .args(["lab", "up", "--dir", &dir_arg, "--members", "3"])
            .stdin(Stdio::null()),
        Duration::from_secs(120),
        "raftgresctl lab up",
    )
    .await;
    // From here the lab is stopped when this guard drops, pass or fail: a
    // lab another process started is not this one's to stop on drop.
    let _down = LabDown(dir.path());
    let lab = Lab::open(dir.path()).expect("the lab raftgresctl started");
    let stdout = String::from_utf8_lossy(&up.stdout).into_owned();
    assert!(
        up.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let line = |label: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_once("PGPASSFILE="))
            .map(|(_, rest)| format!("PGPASSFILE={rest}"))
            .unwrap_or_else(|| panic!("no {label} line in:\n{stdout}"))
    };
    let writes = line("writes (HAProxy)");
    line("reads (HAProxy)");
    for name in lab.names() {
        line(&format!("{name} (pgbouncer)"));
    }
    // The line as printed, run by a shell, writes through HAProxy once
    // HAProxy's checks have found the primary.
    let psql = format!(
        "{writes} -v ON_ERROR_STOP=1 -c 'CREATE TABLE IF NOT EXISTS first_write AS SELECT 1 AS one'"
    );
    let mut last = String::new();
    let wrote = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let ran = tokio::process::Command::new("sh")
                .args(["-c", &psql])
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .expect("sh runs");
            if ran.status.success() {
                return;
            }
            last = String::from_utf8_lossy(&ran.stderr).into_owned();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        wrote.is_ok(),
        "`{psql}` never wrote within 30 s; last: {last}"
    );
    let status = run_ctl(&["lab", "status", "--dir", &dir_arg]).await;
    assert_eq!(status.exit_code, Some(0), "{}", status.stderr);
    assert!(status.stdout.contains(&writes), "{}", status.stdout);
}

/// Runs `lab down` on its directory when dropped.
struct LabDown<'a>(&'a std::path::Path);

impl Drop for LabDown<'_> {
    fn drop(&mut self) {
        if let Err(e) = raftgres_lab::down(self.0, Duration::from_secs(30)) {
            eprintln!("lab down in {}: {e}", self.0.display());
        }
    }
}

/// A private pgpass with the lab's superuser password, as `lab up` writes
/// one; the environment that points libpq (and `query`) at it.
fn lab_pgpass(lab: &Lab, dir: &std::path::Path) -> String {
    let password = &lab
        .description
        .pg_auth
        .as_ref()
        .expect("the lab's Postgres passwords")
        .superuser;
    let path = dir.join("pgpass");
    write_private(&path, &format!("*:*:*:postgres:{password}\n"));
    path.to_str().expect("a UTF-8 path").to_owned()
}

fn pg_port(lab: &Lab, name: &str) -> String {
    lab.member(name)
        .expect("member")
        .pg_port
        .expect("a Postgres port")
        .to_string()
}

/// `query`: the leader's Postgres by default, a replica's with `-r
/// replica`, the named member's with `-m`; the login from libpq's
/// environment (a pgpass file, PGPASSWORD, PGSSLMODE); a refusal exits 2
/// and names the member, its address and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_runs_sql_on_the_member_the_role_or_name_gives() {
    let (dir, lab, primary) = serial_lab(3, false).await;
    let ctl = Ctl::for_lab(&lab);
    let pgpass = lab_pgpass(&lab, dir.path());
    let env = [("PGPASSFILE", pgpass.as_str()), ("PGUSER", "postgres")];
    let replicas: Vec<String> = lab.names().into_iter().filter(|n| *n != primary).collect();
    wait_listed_leader(&ctl, &primary).await;
    for replica in &replicas {
        wait_streaming(&lab, replica).await;
    }
    let where_sql = "SELECT pg_is_in_recovery() AS recovery, current_setting('port') AS port";

    // The leader by default, in patronictl's default tsv: header, then rows.
    let run = ctl
        .expect_with(0, &env, None, &["query", "-c", where_sql])
        .await;
    assert_eq!(
        run.stdout,
        format!("recovery\tport\nf\t{}\n", pg_port(&lab, &primary))
    );

    // -r replica: a replica, in recovery; JSON rows keyed by column.
    let run = ctl
        .expect_with(
            0,
            &env,
            None,
            &[
                "query", "-r", "replica", "-c", where_sql, "--format", "json",
            ],
        )
        .await;
    let rows = run.json();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["recovery"], "t", "{rows}");
    let replica_ports: Vec<String> = replicas.iter().map(|r| pg_port(&lab, r)).collect();
    assert!(
        replica_ports.iter().any(|p| rows[0]["port"] == p.as_str()),
        "{rows} is not on a replica ({replica_ports:?})"
    );

    // -m names the member; -f - reads the SQL from stdin; several
    // statements print a result set each.
    let named = &replicas[1];
    let run = ctl
        .expect_with(
            0,
            &env,
            Some("SELECT current_setting('port') AS port; SELECT 2 AS two;"),
            &["query", "-m", named, "-f", "-"],
        )
        .await;
    assert_eq!(
        run.stdout,
        format!("port\n{}\n\ntwo\n2\n", pg_port(&lab, named))
    );

    // TLS checked against the lab's CA, as PGSSLMODE=verify-full says.
    let ca = lab
        .description
        .tls
        .as_ref()
        .expect("the lab's CA")
        .ca_file
        .to_str()
        .expect("a UTF-8 path")
        .to_owned();
    let verified = [
        env[0],
        env[1],
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", ca.as_str()),
    ];
    let run = ctl
        .expect_with(
            0,
            &verified,
            None,
            &[
                "query",
                "-c",
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            ],
        )
        .await;
    assert_eq!(run.stdout, "ssl\nt\n");

    // Refused by Postgres: 2, with the member, its address and Postgres's words.
    let at = format!("{primary} (127.0.0.1:{})", pg_port(&lab, &primary));
    let run = ctl
        .expect_with(2, &env, None, &["query", "-c", "SELECT nonsense"])
        .await;
    assert!(
        run.stderr.contains(&at) && run.stderr.contains("SQLSTATE 42703"),
        "{}",
        run.stderr
    );
    // PGPASSWORD comes before the password file.
    let wrong = [env[0], env[1], ("PGPASSWORD", "wrong")];
    let run = ctl
        .expect_with(2, &wrong, None, &["query", "-c", "SELECT 1"])
        .await;
    assert!(
        run.stderr.contains(&at)
            && run.stderr.contains("refused the login of postgres")
            && run.stderr.contains("28P01"),
        "{}",
        run.stderr
    );
    let missing = dir.path().join("no-pgpass");
    let missing = missing.to_str().expect("a UTF-8 path");
    let run = ctl
        .expect_with(
            2,
            &[("PGPASSFILE", missing), env[1]],
            None,
            &["query", "-c", "SELECT 1"],
        )
        .await;
    assert!(
        run.stderr.contains("asks postgres for a password") && run.stderr.contains(missing),
        "{}",
        run.stderr
    );
    // patronictl's --username is the database user; here it is -U.
    let run = ctl
        .expect_with(
            1,
            &env,
            None,
            &["query", "--username", "postgres", "-c", "SELECT 1"],
        )
        .await;
    assert!(run.stderr.contains("-U USER"), "{}", run.stderr);
    assert_eq!(writable(&lab).await, vec![primary]);
}

/// `-c FILE` before the command, as patronictl's `-c patroni.yml`: a
/// member's own settings file finds the cluster (its REST address, CA and
/// credentials), alone; a file of another cluster is refused by its scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_s_settings_file_finds_the_cluster() {
    let (dir, lab, primary) = serial_lab(3, false).await;
    let replica = any_replica(&lab, &primary);
    let settings = lab.member(&replica).expect("member").config.clone();
    let settings = settings.to_str().expect("a UTF-8 path");
    let ctl = Ctl::for_lab(&lab);
    wait_listed_leader(&ctl, &primary).await;

    // Read-only: the members, without --lab.
    let run = run_ctl(&["-c", settings, "list", "--format", "json"]).await;
    ctl.check(&run, 0);
    let members = run.json();
    let mut listed: Vec<&str> = members
        .as_array()
        .expect("a list")
        .iter()
        .map(name)
        .collect();
    listed.sort();
    let mut names = lab.names();
    names.sort();
    assert_eq!(listed, names, "{members:#}");

    // A change needs the file's credentials; --config is the same file.
    ctl.check(&run_ctl(&["-c", settings, "pause"]).await, 0);
    until_config_paused(&ctl, true).await;
    let run = run_ctl(&["resume", "--wait", "--config", settings]).await;
    ctl.check(&run, 0);
    assert!(run.stdout.contains("Success"), "{}", run.stdout);

    // Both -c's on one line: the file before the command, the SQL after.
    let pgpass = lab_pgpass(&lab, dir.path());
    let run = run_ctl_with(
        &[
            "-c",
            settings,
            "query",
            "-U",
            "postgres",
            "-c",
            "SELECT 1 AS one",
        ],
        &[("PGPASSFILE", pgpass.as_str())],
        None,
    )
    .await;
    ctl.check(&run, 0);
    assert_eq!(run.stdout, "one\n1\n");

    // After the command, -c is not the config file: a usage error.
    let run = run_ctl(&["list", "-c", settings]).await;
    ctl.check(&run, 1);

    // Another cluster's file: its agents are not asked (3, naming both scopes).
    let text = std::fs::read_to_string(settings).expect("the member's settings");
    let renamed: Vec<&str> = text
        .lines()
        .map(|l| if l == "scope: lab" { "scope: other" } else { l })
        .collect();
    assert!(
        renamed.contains(&"scope: other"),
        "no `scope: lab` line in:\n{text}"
    );
    let other = dir.path().join("other.yml");
    write_private(&other, &(renamed.join("\n") + "\n"));
    let run = run_ctl(&["-c", other.to_str().expect("a UTF-8 path"), "list"]).await;
    ctl.check(&run, 3);
    assert!(
        run.stderr.contains("serves cluster lab, not other"),
        "{}",
        run.stderr
    );
    assert_eq!(writable(&lab).await, vec![primary]);
}

/// `drill switchover`: numbered writes through the primary while the
/// agents switch over; every acknowledged write is on the new primary,
/// the primary moved, and the drill's table is gone afterwards. A failover
/// drill without --force is refused before anything happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_measures_a_switchover_without_losing_a_write() {
    let (dir, lab, primary) = serial_lab(3, false).await;
    let ctl = Ctl::for_lab(&lab);
    let pgpass = lab_pgpass(&lab, dir.path());
    let env = [("PGPASSFILE", pgpass.as_str()), ("PGUSER", "postgres")];
    wait_listed_leader(&ctl, &primary).await;
    for replica in lab.names().iter().filter(|n| **n != primary) {
        wait_streaming(&lab, replica).await;
    }
    // The switchover is judged on the candidates' published state.
    roles_settled(&lab, &primary).await;

    let refused = ctl
        .expect_with(1, &env, None, &["drill", "failover", "--duration", "4"])
        .await;
    assert!(
        refused.stderr.contains("refused without --force"),
        "{}",
        refused.stderr
    );
    assert_eq!(writable(&lab).await, vec![primary.clone()]);

    let run = ctl
        .expect_with(
            0,
            &env,
            None,
            &[
                "drill",
                "switchover",
                "--duration",
                "8",
                "--writes-per-second",
                "20",
                "--format",
                "json",
            ],
        )
        .await;
    // The figures, for whoever reads the test's output.
    eprintln!("{}{}", run.stderr, run.stdout);
    let report = run.json();
    assert_eq!(report["action"], "switchover", "{report:#}");
    assert_eq!(report["rpo"]["lost"], 0, "{report:#}");
    assert_eq!(report["old_primary"], primary.as_str(), "{report:#}");
    let new_primary = report["new_primary"]
        .as_str()
        .expect("new_primary")
        .to_owned();
    assert_ne!(new_primary, primary, "{report:#}");
    assert!(
        report["writes"]["acknowledged"].as_u64() > Some(20),
        "{report:#}"
    );
    assert!(
        report["rto"]["to_new_primary_ms"].is_u64(),
        "the new primary acknowledged no write: {report:#}"
    );
    assert!(
        report["new_timeline"].as_u64() > report["old_timeline"].as_u64(),
        "{report:#}"
    );
    assert_eq!(report["table_dropped"], true, "{report:#}");
    assert_eq!(writable(&lab).await, vec![new_primary.clone()]);

    // The table is gone: on the new primary, and so everywhere.
    let table = report["table"].as_str().expect("table");
    assert!(table.starts_with("raftgres_drill_"), "{table}");
    let run = ctl
        .expect_with(
            0,
            &env,
            None,
            &[
                "query",
                "-c",
                &format!("SELECT count(*) FROM pg_catalog.pg_class WHERE relname = '{table}'"),
            ],
        )
        .await;
    assert_eq!(run.stdout, "count\n0\n", "{table} is still there");
}
