use std::io;
use std::path::PathBuf;

/// Why the settings could not be loaded. Every variant names the file or the
/// environment variable, and the key variants name the dotted key path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, unreadable, a directory, or not UTF-8 text.
    #[error("cannot read settings file {}: {cause}", path.display())]
    Read { path: PathBuf, cause: io::Error },

    /// The file is not YAML, or its top level is not a map of keys.
    #[error("cannot parse settings file {}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },

    /// A `RAFTGRES_*` variable that cannot be mapped onto a settings key.
    #[error("invalid environment variable {var}: {reason}")]
    Env { var: String, reason: String },

    /// A key the schema does not have, usually a typo.
    #[error(
        "invalid settings in {}: unknown key `{key}`{}: known keys here are {known}",
        path.display(),
        set_by(env_var.as_deref())
    )]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
        /// The variable that introduced the key, when it came from the environment.
        env_var: Option<String>,
    },

    /// The file holds a secret and others than its owner may read it.
    #[error(
        "settings file {} holds a secret (`{key}`) but is readable by group or others \
         (mode {mode:04o}); make it private (chmod 600, owned by the agent's user), or \
         pass the secret in the environment instead",
        path.display()
    )]
    Exposed {
        path: PathBuf,
        key: String,
        mode: u32,
    },

    /// A key that is missing, of the wrong type, or out of range.
    #[error(
        "invalid settings in {}: key `{key}`{}: {reason}",
        path.display(),
        set_by(env_var.as_deref())
    )]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
        /// The variable that set the value, when it came from the environment.
        env_var: Option<String>,
    },
}

fn set_by(env_var: Option<&str>) -> String {
    env_var
        .map(|var| format!(" (set by environment variable {var})"))
        .unwrap_or_default()
}
