//! Running a helper program from a test (a compiler, pgbench, wrk,
//! raftgresctl): its output, and a failure that shows what it printed.

use std::process::Output;
use std::time::Duration;

/// Fails the test unless `output` is a success, showing what `what`
/// printed on both streams.
pub fn assert_succeeded(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `command` to its end, which must succeed; its output.
pub fn run_ok(command: &mut std::process::Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert_succeeded(&output, what);
    output
}

/// Runs `command` to its end, killed and failing the test after `within`;
/// its output, whatever its exit status.
pub async fn output_within(
    command: &mut tokio::process::Command,
    within: Duration,
    what: &str,
) -> Output {
    let output = command.kill_on_drop(true).output();
    tokio::time::timeout(within, output)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {within:?}"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}
