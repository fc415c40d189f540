//! HTTP calls to one agent's REST API (docs/rest-api.md), each bounded by a
//! timeout and turned into a [`CtlError`] that says what to do next.

use crate::error::CtlError;
use reqwest::header::{ETAG, IF_MATCH};
use reqwest::{Method, Url};
use serde_json::Value;
use std::time::Duration;

/// Status documents are answered from the agent's memory.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A config change or pause is one Raft commit.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(15);
/// The agent waits up to 60 s for the new primary; the margin lets its own
/// answer, success or not, arrive before ours gives up.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(75);
/// Restart and reinitialize include a start or a clone of Postgres, which
/// the agent waits up to 300 s for.
pub const POSTGRES_TIMEOUT: Duration = Duration::from_secs(330);
/// Removing a member is a Raft membership change.
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);

/// A failed connect should not eat the whole request budget: the next
/// member gets its turn sooner.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// One answer with a 2xx status.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub etag: Option<String>,
    /// `Null` when the body is empty.
    pub body: Value,
}

impl Reply {
    /// The `message` every success body carries, or a stand-in.
    pub fn message(&self) -> &str {
        self.body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("done (the agent sent no message)")
    }
}

/// A request to send: [`Api::call`] adds credentials to every method but GET.
pub struct Call<'a> {
    pub method: Method,
    pub url: Url,
    pub body: Option<&'a Value>,
    pub if_match: Option<&'a str>,
    pub timeout: Duration,
}

impl<'a> Call<'a> {
    /// A change: `body` sent with `method`, waiting up to `timeout`, with
    /// no version condition.
    pub fn change(
        method: Method,
        url: Url,
        body: Option<&'a Value>,
        timeout: Duration,
    ) -> Call<'a> {
        Call {
            method,
            url,
            body,
            if_match: None,
            timeout,
        }
    }

    pub fn get(url: Url) -> Call<'static> {
        Call {
            method: Method::GET,
            url,
            body: None,
            if_match: None,
            timeout: READ_TIMEOUT,
        }
    }
}

pub struct Api {
    http: reqwest::Client,
    credentials: Option<Credentials>,
    /// The origins (scheme, host, port) the user named: the only ones that
    /// get the credentials. An address read from the cluster's state could
    /// be anyone's.
    trusted: Vec<reqwest::Url>,
}

/// The scheme, host and port of `url`, which decide where a request goes.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

impl Api {
    /// `trusted`: the addresses the user gave (`--url`, `--lab`, `--config`).
    pub fn new(
        credentials: Option<Credentials>,
        trusted: &[Url],
        tls: &crate::target::ClientTls,
    ) -> anyhow::Result<Api> {
        let mut http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // Agents are reached directly; a proxy from the environment
            // would answer for them and hide which member is down.
            .no_proxy()
            .user_agent(concat!("raftgresctl/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &tls.ca {
            for cert in reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| anyhow::anyhow!("--cacert holds no PEM certificate: {e}"))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        if let Some(pem) = &tls.identity {
            http = http.identity(
                reqwest::Identity::from_pem(pem)
                    .map_err(|e| anyhow::anyhow!("--cert and --key: {e}"))?,
            );
        }
        let http = http.build()?;
        Ok(Api {
            http,
            credentials,
            trusted: trusted.to_vec(),
        })
    }

    /// Whether a call to `url` needing credentials may carry them.
    pub fn may_send_credentials(&self, url: &Url) -> bool {
        self.trusted.iter().any(|t| same_origin(t, url))
    }

    /// A call that carries the credentials: any but GET, once there are some.
    pub fn needs_credentials(&self, method: &Method) -> bool {
        *method != Method::GET && self.credentials.is_some()
    }

    pub async fn call(&self, call: Call<'_>) -> Result<Reply, CtlError> {
        let what = format!("{} {}", call.method, call.url);
        let url_text = call.url.to_string();
        let mutating = call.method != Method::GET;
        let trusted = self.may_send_credentials(&call.url);
        if self.needs_credentials(&call.method) && !trusted {
            return Err(CtlError::Untrusted { call: what });
        }
        let mut request = self
            .http
            .request(call.method, call.url)
            .timeout(call.timeout);
        if let Some(body) = call.body {
            request = request.json(body);
        }
        if let Some(version) = call.if_match {
            request = request.header(IF_MATCH, version);
        }
        // Reads carry them too where they may go: an agent with
        // restapi.authenticate_reads asks for them on every call.
        if let Some(c) = &self.credentials
            && trusted
        {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                CtlError::Unreachable {
                    url: url_text.clone(),
                    cause: root_cause(&e),
                }
            } else if e.is_timeout() {
                CtlError::Unavailable(timeout_message(&what, call.timeout, mutating))
            } else {
                CtlError::Unavailable(format!("{what} failed: {}", root_cause(&e)))
            }
        })?;
        let status = response.status();
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.map_err(|e| {
            if e.is_timeout() {
                CtlError::Unavailable(timeout_message(&what, call.timeout, mutating))
            } else {
                CtlError::Unavailable(format!("{what}: the answer broke off: {}", root_cause(&e)))
            }
        })?;
        if status.is_success() {
            let body = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).map_err(|e| {
                    CtlError::Unavailable(format!(
                        "{what} answered {status} with a body that is not JSON ({e}): {}",
                        snippet(&text)
                    ))
                })?
            };
            return Ok(Reply {
                status: status.as_u16(),
                etag,
                body,
            });
        }
        let message = error_text(&text).unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no explanation given")
                .to_owned()
        });
        if status.is_client_error() {
            Err(CtlError::Refused {
                call: what,
                status: status.as_u16(),
                message,
            })
        } else {
            Err(CtlError::Unavailable(format!(
                "{what} failed ({status}): {message}"
            )))
        }
    }
}

/// The server's `{"error": ...}` text, or the raw body when it is not that.
fn error_text(body: &str) -> Option<String> {
    if body.trim().is_empty() {
        return None;
    }
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    match parsed.as_ref().and_then(|v| v.get("error")) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
        None => Some(snippet(body)),
    }
}

fn timeout_message(what: &str, timeout: Duration, mutating: bool) -> String {
    if mutating {
        format!(
            "{what}: no answer within {}s; the operation may still complete, check with `raftgresctl list`",
            timeout.as_secs()
        )
    } else {
        format!(
            "{what}: no answer within {}s; the agent may be overloaded or hung",
            timeout.as_secs()
        )
    }
}

/// reqwest's own message names only the URL; the innermost source says
/// why (e.g. "Connection refused (os error 111)").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// Keeps an error line one line, whatever the server sent.
fn snippet(text: &str) -> String {
    const MAX_CHARS: usize = 200;
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > MAX_CHARS {
        let cut: String = one_line.chars().take(MAX_CHARS).collect();
        format!("{cut}...")
    } else {
        one_line
    }
}

/// A user's or a member's address as the base of REST calls: a scheme is
/// added when missing, and Patroni's `/patroni` suffix of `api_url` is cut.
pub fn base_url(address: &str) -> Result<Url, String> {
    let trimmed = address.trim();
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let mut url = Url::parse(&with_scheme).map_err(|e| format!("{address:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{address:?} is not an http:// URL with a host"));
    }
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix("/patroni").unwrap_or(path).to_owned();
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// `base` with `segments` appended, each percent-encoded as needed.
pub fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    // base_url only makes URLs that can be a base, so this cannot fail;
    // an unchanged URL would still get a clear 404 from the agent.
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server: answers 200 `{}` and returns the request it read.
    async fn one_request(listener: tokio::net::TcpListener) -> String {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.expect("read");
            request.extend_from_slice(&buf[..n]);
            if n == 0 || request.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let _ = socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
            .await;
        String::from_utf8_lossy(&request).to_lowercase()
    }

    /// The credentials go only to an address the user named; one read from
    /// the cluster's state (here: any other) is never even connected to.
    #[tokio::test]
    async fn credentials_go_only_to_the_agents_the_user_named() {
        let named = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = |l: &tokio::net::TcpListener| {
            base_url(&l.local_addr().unwrap().to_string()).expect("url")
        };
        let (named_url, other_url) = (url(&named), url(&other));
        let api = Api::new(
            Some(Credentials {
                username: "admin".into(),
                password: "s3cret".into(),
            }),
            std::slice::from_ref(&named_url),
            &Default::default(),
        )
        .unwrap();
        let body = Value::Null;
        let post = |url: Url| Call {
            method: Method::POST,
            url,
            body: Some(&body),
            if_match: None,
            timeout: Duration::from_secs(5),
        };

        let err = api
            .call(post(endpoint(&other_url, &["switchover"])))
            .await
            .unwrap_err();
        assert!(matches!(err, CtlError::Untrusted { .. }), "{err}");
        assert!(err.to_string().contains("name it with --url"), "{err}");
        let connected = tokio::time::timeout(Duration::from_millis(300), other.accept()).await;
        assert!(
            connected.is_err(),
            "raftgresctl connected to an address it was not given"
        );
        // A GET carries no credentials, so any member may answer it.
        let server = tokio::spawn(one_request(other));
        api.call(Call::get(endpoint(&other_url, &["cluster"])))
            .await
            .expect("a GET to any member");
        assert!(!server.await.unwrap().contains("authorization:"));

        let server = tokio::spawn(one_request(named));
        api.call(post(endpoint(&named_url, &["switchover"])))
            .await
            .expect("a POST to a named agent");
        let request = server.await.unwrap();
        assert!(request.contains("authorization: basic"), "{request}");
    }

    #[test]
    fn base_url_adds_the_scheme_and_cuts_the_patroni_suffix() {
        let cases = [
            ("127.0.0.1:8008", "http://127.0.0.1:8008/"),
            ("http://127.0.0.1:8008/patroni", "http://127.0.0.1:8008/"),
            ("http://h:8008/", "http://h:8008/"),
            ("https://h/prefix/patroni/", "https://h/prefix"),
            (" http://[::1]:8008 ", "http://[::1]:8008/"),
        ];
        for (input, want) in cases {
            assert_eq!(base_url(input).map(|u| u.to_string()), Ok(want.to_owned()));
        }
        assert!(base_url("http://").is_err());
        assert!(base_url("ftp://h/").is_err());
    }

    #[test]
    fn endpoint_encodes_member_names() {
        let base = base_url("http://h:8008").expect("valid");
        assert_eq!(
            endpoint(&base, &["members", "a b/c"]).as_str(),
            "http://h:8008/members/a%20b%2Fc"
        );
        let prefixed = base_url("http://h/api/").expect("valid");
        assert_eq!(
            endpoint(&prefixed, &["cluster"]).as_str(),
            "http://h/api/cluster"
        );
    }

    #[test]
    fn error_text_prefers_the_error_field() {
        assert_eq!(
            error_text(r#"{"error": "candidate m9 is unknown"}"#).as_deref(),
            Some("candidate m9 is unknown")
        );
        assert_eq!(
            error_text("<html>\n bad gateway </html>").as_deref(),
            Some("<html> bad gateway </html>")
        );
        assert_eq!(error_text("  "), None);
    }
}
