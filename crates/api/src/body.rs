//! The JSON status document, shaped like Patroni's `GET /patroni`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::cluster::{PendingRestartDocument, RestartDocument};
use crate::health::{CopyProgress, NodeHealth, Role, Standby};

/// Field order follows Patroni's document.
#[derive(Serialize)]
struct Document<'a> {
    state: &'static str,
    /// A clone or rewind under way (raftgres only).
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<&'a CopyProgress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    postmaster_start_time: Option<&'a str>,
    /// When the server last read its configuration files (raftgres only):
    /// a reload moves it.
    #[serde(skip_serializing_if = "Option::is_none")]
    conf_load_time: Option<&'a str>,
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xlog: Option<Xlog<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<u32>,
    /// A primary's standbys; absent when none is connected, as in Patroni.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    replication: &'a [Standby],
    #[serde(skip_serializing_if = "Option::is_none")]
    replication_state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_system_identifier: Option<&'a str>,
    #[serde(flatten)]
    pending_restart: Option<PendingRestartDocument<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_restart: Option<RestartDocument<'a>>,
    pause: bool,
    tags: Tags<'a>,
    /// `GET /patroni` only: it moves with every heartbeat, so the health
    /// checks' bodies, rendered once per change, leave it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    dcs_last_seen: Option<i64>,
    patroni: Patroni<'a>,
}

/// A primary reports where it writes; a replica where it has received and
/// replayed to, the commit time of what it replayed last, and whether
/// replay is paused.
#[derive(Serialize)]
#[serde(untagged)]
enum Xlog<'a> {
    Primary {
        location: u64,
    },
    Replica {
        received_location: u64,
        replayed_location: u64,
        replayed_timestamp: Option<&'a str>,
        paused: bool,
    },
}

#[derive(Serialize)]
struct Patroni<'a> {
    version: &'static str,
    scope: &'a str,
    name: &'a str,
}

/// Tags as Patroni prints them from YAML: `true`/`false` as booleans,
/// integers as numbers, anything else as a string.
struct Tags<'a>(&'a BTreeMap<String, String>);

impl Serialize for Tags<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_tags(self.0, serializer)
    }
}

/// Tags as Patroni prints them (see [`Tags`]); `/cluster` shows members'
/// tags the same way.
pub(crate) fn serialize_tags<S: Serializer>(
    tags: &BTreeMap<String, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(tags.len()))?;
    for (key, value) in tags {
        match value.as_str() {
            "true" => map.serialize_entry(key, &true)?,
            "false" => map.serialize_entry(key, &false)?,
            _ => match value.parse::<i64>() {
                Ok(n) if n.to_string() == *value => map.serialize_entry(key, &n)?,
                _ => map.serialize_entry(key, value)?,
            },
        }
    }
    map.end()
}

/// The status document for `health`, serialized, with `dcs_last_seen`
/// (Unix seconds) when given.
pub(crate) fn document(health: &NodeHealth, dcs_last_seen: Option<i64>) -> Vec<u8> {
    let is_replica = health.in_recovery || health.role == Role::Replica;
    let server = &health.server;
    let doc = Document {
        state: match health.pg_state {
            "" if health.postgres_running => "running",
            "" => "stopped",
            state => state,
        },
        progress: server.progress.as_ref(),
        postmaster_start_time: server.postmaster_start_time.as_deref(),
        conf_load_time: server.conf_load_time.as_deref(),
        role: health.role.as_str(),
        server_version: server.server_version,
        xlog: health.xlog_location.map(|location| {
            if is_replica {
                Xlog::Replica {
                    received_location: server.received_lsn.unwrap_or(location),
                    replayed_location: server.replayed_lsn.unwrap_or(location),
                    replayed_timestamp: server.replayed_timestamp.as_deref(),
                    paused: server.replay_paused,
                }
            } else {
                Xlog::Primary { location }
            }
        }),
        timeline: health.timeline,
        replication: if is_replica { &[] } else { &server.replication },
        database_system_identifier: server.system_identifier.as_deref(),
        replication_state: (health.postgres_running && health.in_recovery && health.streaming)
            .then_some("streaming"),
        pending_restart: PendingRestartDocument::of(&health.pending_restart),
        scheduled_restart: health.scheduled_restart.as_ref().map(RestartDocument::from),
        pause: health.paused,
        tags: Tags(&health.tags),
        dcs_last_seen,
        patroni: Patroni {
            version: env!("CARGO_PKG_VERSION"),
            scope: &health.scope,
            name: &health.member,
        },
    };
    let mut out = Vec::with_capacity(384);
    if let Err(err) = serde_json::to_writer(&mut out, &doc) {
        // Strings, numbers and string-keyed maps into a Vec: cannot happen.
        tracing::error!(%err, "cannot serialize the status document");
        out.clear();
        out.extend_from_slice(b"{}");
    }
    out
}

/// `{"error": message}`, serialized.
pub(crate) fn error(message: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Error<'a> {
        error: &'a str,
    }
    serde_json::to_vec(&Error { error: message }).unwrap_or_else(|_| b"{}".to_vec())
}
