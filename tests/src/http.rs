//! The agents' REST API from a test: JSON calls with the lab's credentials,
//! and a monitor that polls `/primary` on every member throughout a test.

use crate::monitor::MostAtOnce;
use raftgres_lab::{Lab, LabMember};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A bounded HTTP client for one lab.
pub struct Api {
    client: reqwest::Client,
    auth: Option<(String, String)>,
}

/// One answer: status code and JSON body (`Null` when there is none).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// A client whose every request is bounded by `timeout`, trusting the
/// lab's CA, which signed its agents' HTTPS certificates (`ca_file` in
/// lab.json's `tls`).
pub fn https_client(ca_file: Option<&std::path::Path>, timeout: Duration) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(ca_file) = ca_file {
        let pem = std::fs::read(ca_file).expect("the lab's CA certificate");
        builder = builder
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("a PEM certificate")]);
    }
    builder.build().expect("HTTP client")
}

/// [`https_client`] for `lab`.
pub fn lab_client(lab: &Lab, timeout: Duration) -> reqwest::Client {
    https_client(
        lab.description.tls.as_ref().map(|t| t.ca_file.as_path()),
        timeout,
    )
}

/// The base URL of `name`'s REST API.
pub fn api_url(lab: &Lab, name: &str) -> String {
    lab.member(name).expect("member").api_url.clone()
}

impl Api {
    /// [`Api::for_lab`] on `lab`'s own `lab.json`.
    pub fn of(lab: &Lab) -> Api {
        Api::for_lab(&raftgres_lab::LabDescription::path(&lab.description.dir))
    }

    /// [`Api::of`] for a test of the authenticated calls: fails unless the
    /// lab enables API authentication.
    pub fn authenticated(lab: &Lab) -> Api {
        let api = Api::of(lab);
        assert!(api.has_auth(), "the lab must enable API authentication");
        api
    }

    /// Uses the credentials the lab wrote to `lab.json` (`api_auth`).
    pub fn for_lab(lab_json: &std::path::Path) -> Api {
        let text = std::fs::read_to_string(lab_json).expect("lab.json");
        let doc: Value = serde_json::from_str(&text).expect("lab.json is JSON");
        let auth = doc.get("api_auth").and_then(|a| {
            Some((
                a.get("username")?.as_str()?.to_owned(),
                a.get("password")?.as_str()?.to_owned(),
            ))
        });
        let ca_file = doc
            .pointer("/tls/ca_file")
            .and_then(Value::as_str)
            .map(std::path::PathBuf::from);
        Api {
            client: https_client(ca_file.as_deref(), Duration::from_secs(90)),
            auth,
        }
    }

    pub fn has_auth(&self) -> bool {
        self.auth.is_some()
    }

    /// `method` on `base_url` + `path`, with a JSON body when given, with
    /// the lab's credentials when `authenticated`.
    pub async fn call(
        &self,
        method: &str,
        base_url: &str,
        path: &str,
        body: Option<&str>,
        authenticated: bool,
    ) -> Result<Reply, String> {
        // Without credentials in lab.json, "authenticated" sends none.
        let credentials = match &self.auth {
            Some((user, password)) if authenticated => Credentials::Basic(user, password),
            _ => Credentials::Anonymous,
        };
        let answer = self
            .exchange(method, base_url, path, body, credentials, &[])
            .await?;
        Ok(Reply {
            status: answer.status,
            body: answer.body,
        })
    }

    pub async fn get(&self, base_url: &str, path: &str) -> Result<Reply, String> {
        self.call("GET", base_url, path, None, false).await
    }

    /// Rows of `GET /history`: [timeline, lsn, reason, time, new leader].
    pub async fn history(&self, base_url: &str) -> Vec<Value> {
        let reply = self.get(base_url, "/history").await.expect("GET /history");
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body.as_array().expect("history is an array").clone()
    }

    /// An authenticated call with a JSON body.
    pub async fn send(
        &self,
        method: &str,
        base_url: &str,
        path: &str,
        body: &Value,
    ) -> Result<Reply, String> {
        self.call(method, base_url, path, Some(&body.to_string()), true)
            .await
    }

    /// [`Api::send`], which must be answered 200: the reply, or a panic that
    /// names the request and shows what came back.
    pub async fn send_ok(&self, method: &str, base_url: &str, path: &str, body: &Value) -> Reply {
        self.send_expecting(200, method, base_url, path, body).await
    }

    /// [`Api::send`], which must be answered 202 (accepted; the work goes
    /// on after the answer, as `POST /reload`'s).
    pub async fn send_accepted(
        &self,
        method: &str,
        base_url: &str,
        path: &str,
        body: &Value,
    ) -> Reply {
        self.send_expecting(202, method, base_url, path, body).await
    }

    /// `POST /switchover` from `leader` to `candidate`, sent to `base_url`,
    /// whatever the answer.
    pub async fn switchover(
        &self,
        base_url: &str,
        leader: &str,
        candidate: &str,
    ) -> Result<Reply, String> {
        let body = json!({"leader": leader, "candidate": candidate});
        self.send("POST", base_url, "/switchover", &body).await
    }

    /// Writes `settings` over `member`'s settings file, in place so that
    /// the file keeps its owner and mode, and asks its agent to reload,
    /// which must be accepted; the reload's answer as text.
    pub async fn reload_with(&self, member: &LabMember, settings: &str) -> String {
        std::fs::write(&member.config, settings).expect("write settings");
        let reply = self
            .send_accepted("POST", &member.api_url, "/reload", &json!({}))
            .await;
        reply.body.to_string()
    }

    async fn send_expecting(
        &self,
        status: u16,
        method: &str,
        base_url: &str,
        path: &str,
        body: &Value,
    ) -> Reply {
        let reply = self
            .send(method, base_url, path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} {body}: {e}"));
        assert_eq!(reply.status, status, "{method} {path} {body}: {reply:?}");
        reply
    }
}

/// Polls `/primary` on every member and remembers the most members that
/// answered 200 at one moment.
pub struct ApiPrimaryMonitor {
    seen: MostAtOnce,
}

impl ApiPrimaryMonitor {
    pub fn start(lab: &Lab) -> ApiPrimaryMonitor {
        let urls: Arc<Vec<(String, String)>> = Arc::new(
            lab.description
                .members
                .iter()
                .map(|m| (m.name.clone(), m.api_url.clone()))
                .collect(),
        );
        let client = lab_client(lab, Duration::from_secs(2));
        let seen = MostAtOnce::start(Duration::from_millis(20), move || {
            // All members asked at once, so one round is one moment.
            let mut round = tokio::task::JoinSet::new();
            for (name, url) in urls.iter() {
                let request = client.get(format!("{url}/primary"));
                let name = name.clone();
                round.spawn(async move {
                    let ok = request
                        .send()
                        .await
                        .is_ok_and(|r| r.status().as_u16() == 200);
                    (name, ok)
                });
            }
            async move {
                let mut now: Vec<String> = round
                    .join_all()
                    .await
                    .into_iter()
                    .filter_map(|(name, ok)| ok.then_some(name))
                    .collect();
                now.sort();
                now
            }
        });
        ApiPrimaryMonitor { seen }
    }

    /// Stops polling; fails the test if two members ever answered 200 together.
    pub async fn assert_never_two(self) {
        let names = self.seen.finish().await;
        let count = names.len();
        assert!(
            count <= 1,
            "{count} members answered 200 on /primary at once: {names:?}"
        );
    }
}

/// Who a request says it is, for [`Api::exchange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No `Authorization` header.
    Anonymous,
    /// The lab's credentials from `lab.json`.
    Lab,
    /// These, right or wrong.
    Basic(&'a str, &'a str),
}

/// One answer with its headers.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The body as sent, for non-JSON answers such as `/metrics`.
    pub text: String,
    /// The body as JSON; `Null` when empty, a string when not JSON.
    pub body: Value,
}

impl Exchange {
    /// The header `name` as text, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Api {
    /// Like [`Api::call`], with chosen credentials, extra request headers
    /// (e.g. `If-Match`) and the answer's headers; a `body` is sent as is,
    /// labelled JSON, so it may be malformed on purpose.
    pub async fn exchange(
        &self,
        method: &str,
        base_url: &str,
        path: &str,
        body: Option<&str>,
        credentials: Credentials<'_>,
        headers: &[(&str, &str)],
    ) -> Result<Exchange, String> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut request = self.client.request(method, format!("{base_url}{path}"));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        match credentials {
            Credentials::Anonymous => {}
            Credentials::Lab => {
                let (user, password) =
                    self.auth.as_ref().ok_or("the lab has no API credentials")?;
                request = request.basic_auth(user, Some(password));
            }
            Credentials::Basic(user, password) => {
                request = request.basic_auth(user, Some(password));
            }
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| e.to_string())?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()))
        };
        Ok(Exchange {
            status,
            headers,
            text,
            body,
        })
    }
}
