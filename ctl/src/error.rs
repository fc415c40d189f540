//! Failures that come from the cluster, typed by what the user should do,
//! which is also what the exit code tells a script.

use std::fmt;

/// Exit code of a failure on this side: bad usage, a bad local file, a
/// declined confirmation.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code when an agent refused the operation (a 4xx answer).
pub const EXIT_REFUSED: u8 = 2;
/// Exit code when no agent answered, or one failed (a 5xx answer).
pub const EXIT_UNAVAILABLE: u8 = 3;

#[derive(Debug)]
pub enum CtlError {
    /// The agent understood and said no; retrying the same call will not help.
    Refused {
        /// The call, e.g. `POST http://127.0.0.1:8008/switchover`.
        call: String,
        status: u16,
        message: String,
    },
    /// The request never reached the agent, so another member may be tried.
    Unreachable { url: String, cause: String },
    /// The agent may have got the request but gave no usable answer: a
    /// timeout, a 5xx, or a body raftgresctl cannot read.
    Unavailable(String),
    /// A call that needs the credentials, to an address the user did not
    /// name: it was not sent.
    Untrusted { call: String },
    /// `query`: a member's Postgres refused the login or the SQL; the text
    /// names the member and gives Postgres's words.
    PgRefused(String),
}

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Refused { .. } | CtlError::PgRefused(_) => EXIT_REFUSED,
            CtlError::Unreachable { .. } | CtlError::Unavailable(_) => EXIT_UNAVAILABLE,
            CtlError::Untrusted { .. } => EXIT_FAILURE,
        }
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Refused {
                call,
                status,
                message,
            } => {
                let reason = reqwest::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default();
                write!(f, "{call} was refused ({status}{reason}): {message}")?;
                match status {
                    401 => write!(
                        f,
                        "; the credentials are missing or wrong: pass --username and --password-file (or set RAFTGRESCTL_USERNAME and RAFTGRESCTL_PASSWORD)"
                    ),
                    403 => write!(
                        f,
                        "; the agent has no restapi.authentication configured, so its mutating endpoints are disabled"
                    ),
                    _ => Ok(()),
                }
            }
            CtlError::Unreachable { url, cause } => write!(f, "cannot reach {url}: {cause}"),
            CtlError::Unavailable(message) | CtlError::PgRefused(message) => f.write_str(message),
            CtlError::Untrusted { call } => write!(
                f,
                "{call} was not sent: raftgresctl sends the credentials only to the agents you \
                 named (--url, --lab, --config), and this address came from the cluster's \
                 state; if it is one of yours, name it with --url"
            ),
        }
    }
}

impl std::error::Error for CtlError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_status_and_what_to_do() {
        let refused = |status| CtlError::Refused {
            call: "PATCH http://h:8008/config".into(),
            status,
            message: "no".into(),
        };
        assert_eq!(
            refused(412).to_string(),
            "PATCH http://h:8008/config was refused (412 Precondition Failed): no"
        );
        assert!(refused(401).to_string().ends_with("RAFTGRESCTL_PASSWORD)"));
        assert!(refused(403).to_string().contains("restapi.authentication"));
        assert_eq!(refused(499).exit_code(), EXIT_REFUSED);
        assert_eq!(
            CtlError::Unavailable("x".into()).exit_code(),
            EXIT_UNAVAILABLE
        );
    }
}
