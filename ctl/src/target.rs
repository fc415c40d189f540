//! Which agents to ask, and with which credentials: from `--url`, a lab's
//! `lab.json`, or a small YAML file.

use crate::cli::TargetOpts;
use crate::client::{Credentials, base_url};
use anyhow::{Context, bail};
use reqwest::Url;
use serde::Deserialize;
use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

/// The agent's default `restapi.listen`, tried when nothing else is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8008";

#[derive(Debug)]
pub struct Target {
    /// Addresses to try in order until one answers `/cluster`.
    pub seeds: Vec<Url>,
    pub credentials: Option<Credentials>,
    pub tls: ClientTls,
    /// False when only [`DEFAULT_URL`] is known.
    pub given: bool,
}

/// The parts of `lab.json` raftgresctl needs; the rest belongs to
/// `raftgres-lab`, so it is ignored here.
#[derive(Debug, Deserialize)]
struct LabFile {
    #[serde(default)]
    members: Vec<LabFileMember>,
    #[serde(default)]
    api_auth: Option<LabAuth>,
    /// The lab's CA, which signed its agents' HTTPS certificates.
    #[serde(default)]
    tls: Option<LabFileTls>,
}

#[derive(Debug, Deserialize)]
struct LabFileTls {
    ca_file: std::path::PathBuf,
}

/// What `lab.json` tells: the agents' URLs, the credentials, the CA file.
struct LabTarget {
    urls: Vec<String>,
    credentials: Option<Credentials>,
    ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Deserialize)]
struct LabFileMember {
    api_url: String,
}

#[derive(Debug, Deserialize)]
struct LabAuth {
    username: String,
    password: String,
}

/// `--config FILE`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CtlConfig {
    pub urls: Vec<String>,
    pub credentials: Option<Credentials>,
}

impl TargetOpts {
    /// The addresses in order (`--url`, then the lab's, then the config
    /// file's) and the credentials (options first, then the files).
    pub fn resolve(&self) -> anyhow::Result<Target> {
        let mut addresses: Vec<String> = self.urls.clone();
        let mut file_credentials = None;
        let mut lab_ca = None;
        if let Some(dir) = &self.lab {
            let path = dir.join("lab.json");
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "cannot read {}; start a lab with `raftgresctl lab up --dir {}` or pass --url",
                    path.display(),
                    dir.display()
                )
            })?;
            let lab = parse_lab(&text)
                .with_context(|| format!("{} is not a lab.json", path.display()))?;
            addresses.extend(lab.urls);
            file_credentials = lab.credentials;
            lab_ca = lab.ca_file;
        }
        if let Some(path) = &self.config {
            let config = read_config(path)?;
            addresses.extend(config.urls);
            file_credentials = file_credentials.or(config.credentials);
        }
        let given = !addresses.is_empty();
        if !given {
            addresses.push(DEFAULT_URL.to_owned());
        }
        let mut seeds: Vec<Url> = Vec::new();
        for address in addresses.iter().filter(|a| !a.trim().is_empty()) {
            let url = base_url(address).map_err(|e| anyhow::anyhow!("bad cluster address: {e}"))?;
            if !seeds.contains(&url) {
                seeds.push(url);
            }
        }
        if seeds.is_empty() {
            bail!("no cluster address given: --url and RAFTGRESCTL_URL are empty");
        }
        // An option replaces its half of the file's credentials, so
        // `--lab DIR --password-file F` tries another password for the lab's user.
        let password = match &self.password_file {
            Some(path) => Some(read_password_file(path)?),
            None => std::env::var(PASSWORD_VAR).ok().filter(|p| !p.is_empty()),
        };
        let credentials = match (self.username.clone(), password, file_credentials) {
            (Some(username), Some(password), _) => Some(Credentials { username, password }),
            (None, None, file) => file,
            (Some(username), None, Some(file)) => Some(Credentials {
                username,
                password: file.password,
            }),
            (None, Some(password), Some(file)) => Some(Credentials {
                username: file.username,
                password,
            }),
            (Some(_), None, None) => {
                bail!("--username needs a password: --password-file FILE or {PASSWORD_VAR}")
            }
            (None, Some(_), None) => {
                bail!("a password needs --username (or RAFTGRESCTL_USERNAME)")
            }
        };
        Ok(Target {
            seeds,
            credentials,
            tls: self.client_tls(lab_ca.as_deref())?,
            given,
        })
    }

    /// `--cacert` (else the lab's CA), `--cert` and `--key`, read.
    fn client_tls(&self, lab_ca: Option<&Path>) -> anyhow::Result<ClientTls> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
        };
        let ca = match (self.cacert.as_deref(), lab_ca) {
            (Some(path), _) => Some(read("--cacert", path)?),
            (None, Some(path)) => Some(read("the lab's CA", path)?),
            (None, None) => None,
        };
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                check_private("--key", key)?;
                let mut pem = read("--cert", cert)?;
                pem.push(b'\n');
                pem.extend(read("--key", key)?);
                Some(pem)
            }
            _ => None,
        };
        Ok(ClientTls { ca, identity })
    }
}

/// What raftgresctl shows agents that serve HTTPS.
#[derive(Debug, Default, Clone)]
pub struct ClientTls {
    /// The CA that signs the agents' certificates (PEM).
    pub ca: Option<Vec<u8>>,
    /// A client certificate and its key (PEM, concatenated).
    pub identity: Option<Vec<u8>>,
}

fn check_private(what: &str, path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{what} {} may be read by others (mode {:o}): run `chmod 600` on it",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// Where the password may come from besides `--password-file`.
const PASSWORD_VAR: &str = "RAFTGRESCTL_PASSWORD";

/// The first line of a private file.
fn read_password_file(path: &Path) -> anyhow::Result<String> {
    check_private("the password file", path)?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the password file {}", path.display()))?;
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        bail!("the password file {} is empty", path.display());
    }
    Ok(password)
}

fn parse_lab(text: &str) -> anyhow::Result<LabTarget> {
    let lab: LabFile = serde_json::from_str(text)?;
    if lab.members.is_empty() {
        bail!("it lists no members");
    }
    Ok(LabTarget {
        urls: lab.members.into_iter().map(|m| m.api_url).collect(),
        credentials: lab.api_auth.map(|a| Credentials {
            username: a.username,
            password: a.password,
        }),
        ca_file: lab.tls.map(|t| t.ca_file),
    })
}

fn read_config(path: &Path) -> anyhow::Result<CtlConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    parse_config(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// `urls: [...]` (or one string), `username`, `password`; any other key is
/// an error, so a typo is not silently ignored.
pub fn parse_config(text: &str) -> Result<CtlConfig, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let root = match docs.as_slice() {
        [] => return Ok(CtlConfig::default()),
        [Yaml::Null] => return Ok(CtlConfig::default()),
        [Yaml::Hash(root)] => root,
        [_] => return Err("the top level must be a mapping (urls, username, password)".into()),
        _ => return Err("holds more than one YAML document".into()),
    };
    let mut config = CtlConfig::default();
    let (mut username, mut password) = (None, None);
    for (key, value) in root {
        let Yaml::String(key) = key else {
            return Err(format!("key {key:?} is not a string"));
        };
        match key.as_str() {
            "urls" => {
                config.urls = match value {
                    Yaml::String(url) => vec![url.clone()],
                    Yaml::Array(items) => items
                        .iter()
                        .map(|item| match item {
                            Yaml::String(url) => Ok(url.clone()),
                            other => Err(format!("urls: {other:?} is not a string")),
                        })
                        .collect::<Result<_, _>>()?,
                    other => return Err(format!("urls: {other:?} is not a list of URLs")),
                };
            }
            "username" => username = Some(scalar_text(key, value)?),
            "password" => password = Some(scalar_text(key, value)?),
            other => {
                return Err(format!(
                    "unknown key {other:?}; the keys are urls, username and password"
                ));
            }
        }
    }
    config.credentials = match (username, password) {
        (Some(username), Some(password)) => Some(Credentials { username, password }),
        (None, None) => None,
        (Some(_), None) => return Err("username is set but password is not".into()),
        (None, Some(_)) => return Err("password is set but username is not".into()),
    };
    Ok(config)
}

/// A password such as `12345` is read by YAML as a number; it is still
/// meant as text.
fn scalar_text(key: &str, value: &Yaml) -> Result<String, String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Ok(s.clone()),
        Yaml::Integer(i) => Ok(i.to_string()),
        Yaml::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("{key}: {other:?} is not a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(urls: &[&str]) -> TargetOpts {
        TargetOpts {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            lab: None,
            config: None,
            username: None,
            password_file: None,
            cacert: None,
            cert: None,
            key: None,
        }
    }

    /// A password file with `text`, of `mode`.
    fn password_file(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("password-{mode:o}"));
        std::fs::write(&path, text).expect("password file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn lab_json_gives_urls_optional_credentials_and_the_ca() {
        let text = r#"{"dir": "/tmp/l", "agent_bin": "/x", "members": [
            {"name": "m1", "node_id": 1, "api_url": "https://127.0.0.1:8008"},
            {"name": "m2", "node_id": 2, "api_url": "https://127.0.0.1:8009"}],
            "api_auth": {"username": "admin", "password": "secret"},
            "tls": {"ca_file": "/tmp/l/tls/ca.pem", "client_cert": "/c", "client_key": "/k"}}"#;
        let lab = parse_lab(text).expect("valid");
        assert_eq!(
            lab.urls,
            ["https://127.0.0.1:8008", "https://127.0.0.1:8009"]
        );
        assert_eq!(lab.ca_file.as_deref(), Some(Path::new("/tmp/l/tls/ca.pem")));
        assert_eq!(
            lab.credentials,
            Some(Credentials {
                username: "admin".into(),
                password: "secret".into()
            })
        );
        let bare = parse_lab(r#"{"members": [{"api_url": "http://h:1"}]}"#).expect("no api_auth");
        assert_eq!((bare.credentials, bare.ca_file), (None, None));
        assert!(parse_lab(r#"{"members": []}"#).is_err());
        assert!(parse_lab("not json").is_err());
    }

    #[test]
    fn config_file_reads_urls_and_credentials() {
        let config = parse_config(
            "urls:\n  - http://a:8008\n  - b:8008\nusername: admin\npassword: 12345\n",
        )
        .expect("valid");
        assert_eq!(config.urls, ["http://a:8008", "b:8008"]);
        assert_eq!(
            config.credentials,
            Some(Credentials {
                username: "admin".into(),
                password: "12345".into()
            })
        );
        assert_eq!(
            parse_config("urls: http://a:8008").map(|c| c.urls),
            Ok(vec!["http://a:8008".to_owned()])
        );
        assert_eq!(parse_config(""), Ok(CtlConfig::default()));
    }

    #[test]
    fn config_file_errors_name_the_key() {
        let cases = [
            ("url: http://a", "unknown key \"url\""),
            ("urls: {a: 1}", "urls:"),
            ("username: admin", "password is not"),
            ("- a", "mapping"),
            ("urls: [", "not YAML"),
        ];
        for (text, want) in cases {
            let error = parse_config(text).expect_err(text);
            assert!(error.contains(want), "{text}: {error}");
        }
    }

    #[test]
    fn defaults_to_the_local_agent_and_deduplicates() {
        let target = args(&[]).resolve().expect("default");
        assert!(!target.given);
        assert_eq!(target.seeds[0].as_str(), "http://127.0.0.1:8008/");
        let target = args(&["h:1", "http://h:1/patroni", "h:2"])
            .resolve()
            .expect("valid");
        assert!(target.given);
        assert_eq!(target.seeds.len(), 2);
    }

    #[test]
    fn credentials_come_in_pairs() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut half = args(&["h:1"]);
        half.username = Some("admin".into());
        assert!(half.resolve().is_err());
        half.password_file = Some(password_file(dir.path(), "pw\n", 0o600));
        assert_eq!(
            half.resolve().expect("pair").credentials,
            Some(Credentials {
                username: "admin".into(),
                password: "pw".into()
            })
        );
    }

    #[test]
    fn a_password_file_must_be_private_and_not_empty() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut opts = args(&["h:1"]);
        opts.username = Some("admin".into());
        opts.password_file = Some(password_file(dir.path(), "pw\n", 0o644));
        let err = opts.resolve().expect_err("readable by others").to_string();
        assert!(
            err.contains("mode 644") && err.contains("chmod 600"),
            "{err}"
        );
        opts.password_file = Some(password_file(dir.path(), "\n", 0o600));
        let err = opts.resolve().expect_err("empty").to_string();
        assert!(err.contains("is empty"), "{err}");
    }

    #[test]
    fn one_credential_option_replaces_its_half_of_the_lab_s() {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(
            dir.path().join("lab.json"),
            r#"{"members": [{"api_url": "http://h:1"}],
                "api_auth": {"username": "admin", "password": "secret"}}"#,
        )
        .expect("lab.json");
        let mut opts = args(&[]);
        opts.lab = Some(dir.path().to_owned());
        opts.password_file = Some(password_file(dir.path(), "wrong", 0o600));
        assert_eq!(
            opts.resolve().expect("completed by lab.json").credentials,
            Some(Credentials {
                username: "admin".into(),
                password: "wrong".into()
            })
        );
        opts.password_file = None;
        opts.username = Some("other".into());
        assert_eq!(
            opts.resolve().expect("completed by lab.json").credentials,
            Some(Credentials {
                username: "other".into(),
                password: "secret".into()
            })
        );
    }
}
