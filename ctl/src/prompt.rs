//! Confirmation before an operation that changes the cluster.

use anyhow::{Context, bail};
use std::io::{BufRead, IsTerminal, Write};

/// Asks `question` on the terminal unless `force`. Without a terminal
/// there is nobody to ask, so a script has to say --force explicitly.
pub async fn confirm(question: String, operation: &str, force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to {operation} without confirmation: stdin is not a terminal; pass --force"
        );
    }
    let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut stdout = std::io::stdout();
        write!(stdout, "{question} [y/N] ")?;
        stdout.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        Ok(answer)
    })
    .await
    .context("the confirmation prompt failed")?
    .context("cannot read the answer")?;
    if is_yes(&answer) {
        Ok(())
    } else {
        bail!("{operation} aborted: nothing was changed")
    }
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_confirms() {
        for yes in ["y\n", "Y", " yes ", "YES\n"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yess", "sure"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }
}
