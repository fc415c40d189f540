//! Confirmation before an operation that changes the cluster, and the
//! password `query --password` asks for.

use anyhow::{Context, bail};
use dialoguer::console::Term;
use dialoguer::{Confirm, Password};
use std::io::IsTerminal;
use tokio::signal::unix::{SignalKind, signal};

/// Asks `question` on the terminal unless `force`. Without a terminal
/// there is nobody to ask, so a script has to say --force explicitly.
pub async fn confirm(question: String, operation: &str, force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    if let Some(refusal) = refusal(
        operation,
        std::io::stdin().is_terminal(),
        std::io::stderr().is_terminal(),
    ) {
        bail!(refusal);
    }
    // dialoguer reads keys in raw mode with the cursor hidden and answers
    // Ctrl-C by raising SIGINT; with its default action we would die with
    // the cursor still hidden, so SIGINT comes to us instead.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let answer = tokio::task::spawn_blocking(move || {
        Confirm::new()
            .with_prompt(question)
            .default(false)
            // As before, only Enter answers, so a stray key press does
            // not start an operation.
            .wait_for_newline(true)
            .interact()
    })
    .await
    .context("the confirmation prompt failed")?;
    match answer {
        Ok(true) => {}
        Ok(false) => bail!("{operation} aborted: nothing was changed"),
        Err(dialoguer::Error::IO(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
            let term = Term::stderr();
            // Best effort: the terminal is all that is left to tidy.
            let _ = term.show_cursor();
            let _ = term.write_line("");
            bail!("{operation} aborted: nothing was changed")
        }
        Err(e) => return Err(e).context("cannot read the answer"),
    }
    // SIGINT stays ours for the rest of the process; keep Ctrl-C ending
    // the command as it did before it was caught, with the shell's code
    // for death by SIGINT.
    tokio::spawn(async move {
        interrupt.recv().await;
        std::process::exit(130);
    });
    Ok(())
}

/// Asks for a password on the terminal, without echo, as
/// `patronictl query --password` does.
pub async fn password(question: String) -> anyhow::Result<String> {
    if let Some(missing) = missing_terminal(
        std::io::stdin().is_terminal(),
        std::io::stderr().is_terminal(),
    ) {
        bail!(
            "--password asks on the terminal, but {missing}; set PGPASSWORD or use a password \
             file (PGPASSFILE, else ~/.pgpass)"
        );
    }
    // Ctrl-C while echo is off would leave the shell without it: SIGINT
    // comes to us, and the terminal is put back before we exit as the
    // shell expects of death by SIGINT.
    let saved = nix::sys::termios::tcgetattr(std::io::stdin())
        .context("cannot read the terminal's settings")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let prompt = tokio::task::spawn_blocking(move || {
        Password::new()
            .with_prompt(question)
            .allow_empty_password(true)
            .interact()
    });
    tokio::select! {
        answer = prompt => {
            // As in `confirm`: Ctrl-C keeps ending the command.
            tokio::spawn(async move {
                interrupt.recv().await;
                std::process::exit(130);
            });
            answer
                .context("the password prompt failed")?
                .context("cannot read the password")
        }
        _ = interrupt.recv() => {
            // Best effort: the terminal is all that is left to tidy.
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                &saved,
            );
            eprintln!();
            std::process::exit(130);
        }
    }
}

/// Which of the prompt's streams is not a terminal: the answer is read from
/// stdin and dialoguer asks on stderr.
fn missing_terminal(stdin_is_terminal: bool, stderr_is_terminal: bool) -> Option<&'static str> {
    match (stdin_is_terminal, stderr_is_terminal) {
        (false, _) => Some("stdin is not a terminal"),
        (true, false) => Some("stderr, where the question is asked, is not a terminal"),
        (true, true) => None,
    }
}

/// Why nobody can be asked: the answer is read from stdin and dialoguer
/// asks on stderr, so both must be a terminal.
fn refusal(operation: &str, stdin_is_terminal: bool, stderr_is_terminal: bool) -> Option<String> {
    let missing = missing_terminal(stdin_is_terminal, stderr_is_terminal)?;
    Some(format!(
        "refusing to {operation} without confirmation: {missing}; pass --force"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_terminal_the_refusal_names_the_stream_and_force() {
        let stdin = refusal("switchover", false, true).expect("a refusal");
        assert_eq!(
            stdin,
            "refusing to switchover without confirmation: stdin is not a terminal; pass --force"
        );
        let stderr = refusal("switchover", true, false).expect("a refusal");
        assert!(
            stderr.contains("stderr") && stderr.ends_with("pass --force"),
            "{stderr}"
        );
        assert_eq!(refusal("switchover", true, true), None);
    }
}
