//! Running PostgreSQL's short-lived tools (initdb, pg_basebackup, pg_rewind,
//! pg_controldata, single-user `postgres`) with their output captured.

use crate::error::{PgError, Result};
use crate::settings::PgSettings;
use std::ffi::OsStr;
use std::process::{Output, Stdio};
use tokio::io::AsyncWriteExt;

/// Keep error messages readable: tools can print pages.
const MAX_STDERR: usize = 4000;

/// A tool invocation: the binary is looked up in `settings.bin_dir` and runs
/// as `settings.run_as`.
pub(crate) struct Tool<'a> {
    settings: &'a PgSettings,
    name: &'static str,
    command: tokio::process::Command,
    stdin: Option<Vec<u8>>,
}

/// What every program run for the server gets: the given settings as its
/// only input, the password file, the server's OS user.
pub(crate) fn as_server_tool(command: &mut tokio::process::Command, settings: &PgSettings) {
    command
        // The given settings must be the only input: a stray PGHOST,
        // PGPORT or PGDATA in the agent's environment would point a tool
        // at another server or directory.
        .env_clear()
        .envs(safe_env())
        // Parsed output (pg_controldata) and messages stay in English.
        .env("LC_ALL", "C")
        // pg_basebackup and pg_rewind log in with it, never with a
        // password on their command line.
        .env("PGPASSFILE", &settings.passfile)
        .envs(settings.tls.env())
        // The caller's working directory (often /root) may be closed to
        // the `postgres` user, and the tools call getcwd().
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A caller that gives up (timeout, drop) leaves no tool running.
        .kill_on_drop(true);
    if let Some(run_as) = settings.run_as {
        command.uid(run_as.uid).gid(run_as.gid);
    }
}

impl<'a> Tool<'a> {
    pub(crate) fn new(settings: &'a PgSettings, name: &'static str) -> Result<Tool<'a>> {
        let program = settings.require_binary(name)?;
        let mut command = tokio::process::Command::new(&program);
        as_server_tool(&mut command, settings);
        Ok(Tool {
            settings,
            name,
            command,
            stdin: None,
        })
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub(crate) fn args(mut self, args: &[String]) -> Self {
        self.command.args(args);
        self
    }

    pub(crate) fn stdin(mut self, input: &[u8]) -> Self {
        self.command.stdin(Stdio::piped());
        self.stdin = Some(input.to_vec());
        self
    }

    /// Runs to completion; a non-zero exit becomes `ToolFailed`.
    pub(crate) async fn run(self) -> Result<Output> {
        self.run_reporting(|_| false).await
    }

    /// Runs to completion and returns whatever it produced.
    pub(crate) async fn output(self) -> Result<Output> {
        self.output_reporting(|_| false).await
    }

    /// [`Tool::run`] with [`Tool::output_reporting`].
    pub(crate) async fn run_reporting(self, on_line: impl FnMut(&str) -> bool) -> Result<Output> {
        let name = self.name;
        let output = self.output_reporting(on_line).await?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(PgError::ToolFailed {
                program: name.to_owned(),
                status: output.status.to_string(),
                stderr: stderr_text(&output),
            })
        }
    }

    /// [`Tool::output`], handing each line of stderr to `on_line` as it
    /// comes (lines end at `\n` or `\r`, as progress reports do on a
    /// terminal). A line it answers `true` for (a progress report) is left
    /// out of the returned stderr, which error messages quote.
    pub(crate) async fn output_reporting(
        mut self,
        mut on_line: impl FnMut(&str) -> bool,
    ) -> Result<Output> {
        use tokio::io::AsyncReadExt;
        let program = self.settings.binary(self.name);
        tracing::debug!(command = ?self.command.as_std(), "running");
        let spawn_err = |source| PgError::Spawn {
            program: program.clone(),
            source,
        };
        let mut child = self.command.spawn().map_err(spawn_err)?;
        if let (Some(input), Some(mut pipe)) = (self.stdin.take(), child.stdin.take()) {
            // A tool that exits early closes its stdin; its exit status
            // then tells what went wrong, not this write.
            let _ = pipe.write_all(&input).await;
            drop(pipe);
        }
        let mut stdout_pipe = child.stdout.take();
        let mut stderr_pipe = child.stderr.take();
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let read_stdout = async {
            if let Some(pipe) = stdout_pipe.as_mut() {
                let _ = pipe.read_to_end(&mut stdout).await;
            }
        };
        let read_stderr = async {
            let Some(pipe) = stderr_pipe.as_mut() else {
                return;
            };
            let mut line = Vec::new();
            let mut chunk = [0u8; 4096];
            let mut end_line = |line: &mut Vec<u8>, stderr: &mut Vec<u8>| {
                if !line.is_empty() && !on_line(&String::from_utf8_lossy(line)) {
                    stderr.extend_from_slice(line);
                    stderr.push(b'\n');
                }
                line.clear();
            };
            while let Ok(n) = pipe.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                for &byte in &chunk[..n] {
                    if byte == b'\n' || byte == b'\r' {
                        end_line(&mut line, &mut stderr);
                    } else {
                        line.push(byte);
                    }
                }
            }
            end_line(&mut line, &mut stderr);
        };
        tokio::join!(read_stdout, read_stderr);
        let status = child.wait().await.map_err(spawn_err)?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

/// The caller's environment minus every `PG*` variable (a stray one would
/// point a tool at another server) and every `RAFTGRES*` one (the agent's
/// settings, which may carry its secrets, mean nothing to Postgres).
pub(crate) fn safe_env() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    without_ours(std::env::vars_os())
}

fn without_ours(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    vars.filter(|(k, _)| {
        let k = k.to_string_lossy();
        !k.starts_with("PG") && !k.to_ascii_uppercase().starts_with("RAFTGRES")
    })
    .collect()
}

/// The end of stderr (or stdout when stderr is empty), where tools put the
/// reason they failed.
pub(crate) fn stderr_text(output: &Output) -> String {
    let raw = if output.stderr.iter().all(u8::is_ascii_whitespace) {
        &output.stdout
    } else {
        &output.stderr
    };
    let text = String::from_utf8_lossy(raw);
    let text = text.trim();
    match text.char_indices().rev().nth(MAX_STDERR) {
        Some((cut, _)) => format!("...{}", &text[cut..]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_libpq_settings_nor_the_agent_s_secrets_reach_a_tool() {
        let vars = [
            ("PATH", "/usr/bin"),
            ("PGHOST", "elsewhere"),
            ("RAFTGRES_RESTAPI__AUTHENTICATION__PASSWORD", "s3cret"),
            ("raftgres_pgbouncer__admin_password", "s3cret"),
            ("RAFTGRESCTL_PASSWORD", "s3cret"),
            ("LANG", "C.UTF-8"),
        ]
        .map(|(k, v)| (k.into(), v.into()));
        let kept: Vec<String> = without_ours(vars.into_iter())
            .into_iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(kept, ["PATH", "LANG"]);
    }
}
