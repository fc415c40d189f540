//! Which agents to ask, and with which credentials: from the options, the
//! files named on the command line (a lab's `lab.json`, an agent's settings
//! file or a small YAML file), then the environment.

use crate::cli::TargetOpts;
use crate::client::{Credentials, base_url};
use anyhow::{Context, bail};
use reqwest::Url;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// The agent's default `restapi.listen`, tried when nothing else is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8008";

/// The environment, below the command line: a variable exported for one
/// cluster must not override a file named for another.
const URL_VAR: &str = "RAFTGRESCTL_URL";
const USERNAME_VAR: &str = "RAFTGRESCTL_USERNAME";
const PASSWORD_VAR: &str = "RAFTGRESCTL_PASSWORD";
const CACERT_VAR: &str = "RAFTGRESCTL_CACERT";
const CERT_VAR: &str = "RAFTGRESCTL_CERT";
const KEY_VAR: &str = "RAFTGRESCTL_KEY";

#[derive(Debug)]
pub struct Target {
    /// Addresses to try in order until one answers `/cluster`.
    pub seeds: Vec<Url>,
    pub credentials: Option<Credentials>,
    pub tls: ClientTls,
    /// False when only [`DEFAULT_URL`] is known.
    pub given: bool,
    /// The cluster an agent's settings file belongs to: an agent that
    /// serves another one is not asked.
    pub scope: Option<ExpectedScope>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedScope {
    pub scope: String,
    /// The settings file that names it.
    pub file: PathBuf,
}

impl ExpectedScope {
    /// For an error about an agent of another cluster.
    pub fn describe(&self) -> String {
        format!("{} (the scope in {})", self.scope, self.file.display())
    }
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
    ca_file: PathBuf,
}

/// What `lab.json` tells: the agents' URLs, the credentials, the CA file.
struct LabTarget {
    urls: Vec<String>,
    credentials: Option<Credentials>,
    ca_file: Option<PathBuf>,
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

/// What `-c/--config-file` (or `--config`) tells.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CtlConfig {
    pub urls: Vec<String>,
    pub credentials: Option<Credentials>,
    /// An agent's settings file only: its cluster.
    pub scope: Option<String>,
    /// An agent's settings file only: the CAs it names, which the operator
    /// uses for its REST certificate too.
    pub ca_files: Vec<PathBuf>,
}

/// Reads the process environment; an empty variable counts as unset.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl TargetOpts {
    pub fn resolve(&self) -> anyhow::Result<Target> {
        self.resolve_with(&process_env)
    }

    /// The addresses in order (`--url`, then the lab's, then the config
    /// file's; only without any, `RAFTGRESCTL_URL`'s), and the credentials
    /// and CA, each from the options, else the files, else `env`.
    fn resolve_with(&self, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Target> {
        let mut addresses: Vec<String> = self.urls.clone();
        let mut file_credentials = None;
        let mut file_cas = Vec::new();
        let mut scope = None;
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
            file_cas.extend(lab.ca_file);
        }
        if let Some(path) = self.config_file.as_ref().or(self.config.as_ref()) {
            let config = read_config(path)?;
            addresses.extend(config.urls);
            file_credentials = file_credentials.or(config.credentials);
            file_cas.extend(config.ca_files);
            scope = config.scope.map(|scope| ExpectedScope {
                scope,
                file: path.clone(),
            });
        }
        addresses.retain(|a| !a.trim().is_empty());
        if addresses.is_empty()
            && let Some(urls) = env(URL_VAR)
        {
            addresses.extend(urls.split(',').map(str::trim).map(str::to_owned));
            addresses.retain(|a| !a.is_empty());
        }
        let given = !addresses.is_empty();
        if !given {
            addresses.push(DEFAULT_URL.to_owned());
        }
        let mut seeds: Vec<Url> = Vec::new();
        for address in &addresses {
            let url = base_url(address).map_err(|e| anyhow::anyhow!("bad cluster address: {e}"))?;
            if !seeds.contains(&url) {
                seeds.push(url);
            }
        }
        Ok(Target {
            seeds,
            credentials: self.credentials(file_credentials, env)?,
            tls: self.client_tls(&file_cas, env)?,
            given,
            scope,
        })
    }

    /// Each half from the options, else the files' pair, else the
    /// environment: `--password-file F` with `--lab DIR` tries another
    /// password for the lab's user.
    fn credentials(
        &self,
        file: Option<Credentials>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<Credentials>> {
        let option_password = match &self.password_file {
            Some(path) => Some(read_password_file(path)?),
            None => None,
        };
        let (file_username, file_password) = match file {
            Some(c) => (Some(c.username), Some(c.password)),
            None => (None, None),
        };
        let username = self
            .username
            .clone()
            .or(file_username)
            .or_else(|| env(USERNAME_VAR));
        let password = option_password
            .or(file_password)
            .or_else(|| env(PASSWORD_VAR));
        match (username, password) {
            (Some(username), Some(password)) => Ok(Some(Credentials { username, password })),
            (None, None) => Ok(None),
            (Some(_), None) => {
                bail!("--username needs a password: --password-file FILE or {PASSWORD_VAR}")
            }
            (None, Some(_)) => bail!("a password needs --username (or {USERNAME_VAR})"),
        }
    }

    /// `--cacert`, else the files' CAs, else `RAFTGRESCTL_CACERT`; `--cert`
    /// and `--key`, else `RAFTGRESCTL_CERT` and `RAFTGRESCTL_KEY`; read.
    fn client_tls(
        &self,
        file_cas: &[PathBuf],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<ClientTls> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
        };
        let read_ca = |what: &str, path: &Path| {
            let pem = read(what, path)?;
            match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(certs) if !certs.is_empty() => Ok(pem),
                Ok(_) => bail!("{what} {} holds no PEM certificate", path.display()),
                Err(e) => bail!("{what} {} holds no PEM certificate: {e}", path.display()),
            }
        };
        let ca = match (&self.cacert, file_cas, env(CACERT_VAR)) {
            (Some(path), _, _) => Some(read_ca("--cacert", path)?),
            (None, [_, ..], _) => {
                let mut bundle = Vec::new();
                for path in file_cas {
                    bundle.extend(read_ca("the CA file", path)?);
                    bundle.push(b'\n');
                }
                Some(bundle)
            }
            (None, [], Some(path)) => Some(read_ca(CACERT_VAR, Path::new(&path))?),
            (None, [], None) => None,
        };
        let pair = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ => match (env(CERT_VAR), env(KEY_VAR)) {
                (Some(cert), Some(key)) => Some((cert.into(), key.into())),
                (None, None) => None,
                _ => bail!("{CERT_VAR} and {KEY_VAR} go together: set both or neither"),
            },
        };
        let identity = match pair {
            Some((cert, key)) => {
                check_private("the client key", &key)?;
                let mut pem = read("the client certificate", &cert)?;
                pem.push(b'\n');
                pem.extend(read("the client key", &key)?);
                Some(pem)
            }
            None => None,
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

/// An agent's settings file (it has `scope`), read as the agent reads it,
/// or else raftgresctl's own small file.
fn read_config(path: &Path) -> anyhow::Result<CtlConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    if !names_a_scope(&text) {
        return parse_config(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let agent = raftgres_config::load(path).with_context(|| {
        format!(
            "{} has `scope`, so it is read as an agent's settings file",
            path.display()
        )
    })?;
    Ok(from_agent_settings(&agent))
}

/// Whether `text` is a YAML mapping with a `scope` key, which every
/// agent's settings file has and raftgresctl's own file never does.
fn names_a_scope(text: &str) -> bool {
    match YamlLoader::load_from_str(text).as_deref() {
        Ok([Yaml::Hash(root)]) => root.contains_key(&Yaml::String("scope".into())),
        _ => false,
    }
}

/// What patronictl takes from `patroni.yml`: the member's own REST API
/// (its `connect_address`, https when it has a certificate), its
/// credentials, and the scope. The CAs: `restapi.cafile`, which
/// patronictl also checks the server with, and `raft.tls_ca_file`, the
/// cluster's CA, which the lab and the Ansible role sign the REST
/// certificates with.
fn from_agent_settings(agent: &raftgres_config::AgentConfig) -> CtlConfig {
    let mut ca_files: Vec<PathBuf> = agent
        .restapi
        .tls
        .iter()
        .filter_map(|tls| tls.cafile.clone())
        .collect();
    if let Some(raft) = &agent.raft.tls
        && !ca_files.contains(&raft.ca_file)
    {
        ca_files.push(raft.ca_file.clone());
    }
    CtlConfig {
        urls: vec![agent.restapi.url()],
        credentials: agent.restapi.authentication.as_ref().map(|a| Credentials {
            username: a.username.clone(),
            password: a.password.clone(),
        }),
        scope: Some(agent.scope.clone()),
        ca_files,
    }
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
                    "unknown key {other:?}; the keys are urls, username and password (an \
                     agent's settings file, read as such, has `scope`)"
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
    use serde_json::json;

    fn args(urls: &[&str]) -> TargetOpts {
        TargetOpts {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            lab: None,
            config_file: None,
            config: None,
            username: None,
            password_file: None,
            cacert: None,
            cert: None,
            key: None,
        }
    }

    /// Options naming a lab in `dir` of one member, whose API is at
    /// `api_url`, and whose login is admin/secret.
    fn lab_opts(dir: &Path, api_url: &str) -> TargetOpts {
        let lab = json!({"members": [{"api_url": api_url}],
                         "api_auth": {"username": "admin", "password": "secret"}});
        std::fs::write(dir.join("lab.json"), lab.to_string()).expect("lab.json");
        let mut opts = args(&[]);
        opts.lab = Some(dir.to_owned());
        opts
    }

    fn login(username: &str, password: &str) -> Option<Credentials> {
        Some(Credentials {
            username: username.into(),
            password: password.into(),
        })
    }

    /// An empty environment.
    fn no_env(_: &str) -> Option<String> {
        None
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
        assert_eq!(lab.credentials, login("admin", "secret"));
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
        assert_eq!(config.credentials, login("admin", "12345"));
        assert_eq!(
            parse_config("urls: http://a:8008").map(|c| c.urls),
            Ok(vec!["http://a:8008".to_owned()])
        );
        assert_eq!(parse_config(""), Ok(CtlConfig::default()));
        assert!(!names_a_scope("urls: [http://a:8008]\nusername: admin\n"));
        assert!(!names_a_scope("- scope"));
        assert!(names_a_scope("scope: demo\nname: n1\n"));
    }

    /// An agent's settings file: what patronictl takes from `patroni.yml`.
    #[test]
    fn an_agent_s_settings_file_gives_its_api_credentials_cas_and_scope() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("agent.yml");
        std::fs::write(
            &path,
            "scope: demo\nname: w1\nnode_id: 1\ndata_dir: /var/lib/raftgres/w1\nwitness: true
raft:
  listen: 127.0.0.1:7101
  tls_ca_file: /etc/raftgres/ca.pem
  tls_cert_file: /etc/raftgres/w1.pem
  tls_key_file: /etc/raftgres/w1.key
restapi:
  listen: 0.0.0.0:8010
  connect_address: w1.example:8010
  authentication: {username: admin, password: 'pass: word'}
  certfile: /etc/raftgres/api.pem
  keyfile: /etc/raftgres/api.key
members:
  - {id: 1, name: w1, raft_addr: 127.0.0.1:7101}
",
        )
        .expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let config = read_config(&path).expect("an agent's settings");
        assert_eq!(
            config,
            CtlConfig {
                urls: vec!["https://w1.example:8010".into()],
                credentials: login("admin", "pass: word"),
                scope: Some("demo".into()),
                ca_files: vec![PathBuf::from("/etc/raftgres/ca.pem")],
            }
        );
        // Read as the agent reads it: its errors, with the file named.
        std::fs::write(&path, "scope: demo\nname: w1\n").expect("write");
        let err = format!("{:#}", read_config(&path).expect_err("incomplete"));
        assert!(
            err.contains("read as an agent's settings file") && err.contains("agent.yml"),
            "{err}"
        );
        // `-c` before the command and `--config` anywhere name the same file.
        let mut opts = args(&[]);
        opts.config_file = Some(dir.path().join("missing.yml"));
        let err = format!("{:#}", opts.resolve_with(&no_env).expect_err("missing"));
        assert!(err.contains("missing.yml"), "{err}");
    }

    /// Options, then the files named on the command line, then the
    /// environment: a variable exported for one cluster does not override
    /// a file named for another.
    #[test]
    fn the_command_line_beats_the_environment() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let env = |name: &str| match name {
            URL_VAR => Some("http://env:1, http://env:2".to_owned()),
            USERNAME_VAR => Some("env-user".to_owned()),
            PASSWORD_VAR => Some("env-password".to_owned()),
            _ => None,
        };
        let target = lab_opts(dir.path(), "http://lab:1")
            .resolve_with(&env)
            .expect("lab");
        let seeds: Vec<String> = target.seeds.iter().map(Url::to_string).collect();
        assert_eq!(seeds, ["http://lab:1/"]);
        assert_eq!(target.credentials, login("admin", "secret"));
        // Without a file, the environment fills in.
        let target = args(&[]).resolve_with(&env).expect("environment");
        let seeds: Vec<String> = target.seeds.iter().map(Url::to_string).collect();
        assert_eq!(seeds, ["http://env:1/", "http://env:2/"]);
        assert!(target.given);
        assert_eq!(
            target.credentials.map(|c| c.username),
            Some("env-user".into())
        );
        // An option beats both.
        let mut opts = args(&["http://flag:1"]);
        opts.lab = Some(dir.path().to_owned());
        opts.username = Some("flag-user".into());
        let target = opts.resolve_with(&env).expect("options");
        let seeds: Vec<String> = target.seeds.iter().map(Url::to_string).collect();
        assert_eq!(seeds, ["http://flag:1/", "http://lab:1/"]);
        assert_eq!(target.credentials, login("flag-user", "secret"));
        // A client certificate needs its key, from the environment too.
        let half = |name: &str| (name == CERT_VAR).then(|| "/c.pem".to_owned());
        let err = args(&[])
            .resolve_with(&half)
            .expect_err("no key")
            .to_string();
        assert!(err.contains(KEY_VAR), "{err}");
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
        let target = args(&[]).resolve_with(&no_env).expect("default");
        assert!(!target.given);
        assert_eq!(target.seeds[0].as_str(), "http://127.0.0.1:8008/");
        let target = args(&["h:1", "http://h:1/patroni", "h:2"])
            .resolve_with(&no_env)
            .expect("valid");
        assert!(target.given);
        assert_eq!(target.seeds.len(), 2);
    }

    #[test]
    fn credentials_come_in_pairs() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut half = args(&["h:1"]);
        half.username = Some("admin".into());
        assert!(half.resolve_with(&no_env).is_err());
        half.password_file = Some(password_file(dir.path(), "pw\n", 0o600));
        assert_eq!(
            half.resolve_with(&no_env).expect("pair").credentials,
            login("admin", "pw")
        );
    }

    #[test]
    fn a_password_file_must_be_private_and_not_empty() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut opts = args(&["h:1"]);
        opts.username = Some("admin".into());
        opts.password_file = Some(password_file(dir.path(), "pw\n", 0o644));
        let err = opts
            .resolve_with(&no_env)
            .expect_err("readable by others")
            .to_string();
        assert!(
            err.contains("mode 644") && err.contains("chmod 600"),
            "{err}"
        );
        opts.password_file = Some(password_file(dir.path(), "\n", 0o600));
        let err = opts.resolve_with(&no_env).expect_err("empty").to_string();
        assert!(err.contains("is empty"), "{err}");
    }

    #[test]
    fn one_credential_option_replaces_its_half_of_the_lab_s() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut opts = lab_opts(dir.path(), "http://h:1");
        opts.password_file = Some(password_file(dir.path(), "wrong", 0o600));
        assert_eq!(
            opts.resolve_with(&no_env)
                .expect("completed by lab.json")
                .credentials,
            login("admin", "wrong")
        );
        opts.password_file = None;
        opts.username = Some("other".into());
        assert_eq!(
            opts.resolve_with(&no_env)
                .expect("completed by lab.json")
                .credentials,
            login("other", "secret")
        );
    }
}
