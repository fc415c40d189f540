//! Whether a lab is healthy, and the calls that tell: each agent's gRPC
//! status and a query on each member's Postgres.

use super::{Lab, LabError};
use raftgres_proto::v1::{AgentStatusReply, AgentStatusRequest, agent_client::AgentClient};
use std::time::{Duration, Instant};

impl Lab {
    /// Polls until exactly one member holds the lease, every running member
    /// sees that holder, the holder's Postgres takes writes and every other
    /// database member's Postgres streams from it; or `within` passes.
    pub async fn wait_healthy(&self, within: Duration) -> Result<String, LabError> {
        let deadline = Instant::now() + within;
        let mut detail = String::from("no status yet");
        while Instant::now() < deadline {
            let mut holders = Vec::new();
            let mut seen = Vec::new();
            for m in &self.description.members {
                match agent_status(&m.raft_addr, self.description.tls.as_ref()).await {
                    Ok(s) => {
                        if s.holds_lease {
                            holders.push(m.name.clone());
                        }
                        seen.push(s.lease_holder_seen);
                    }
                    Err(e) => seen.push(format!("<{} unreachable: {e}>", m.name)),
                }
            }
            let lease_ok =
                matches!(holders.as_slice(), [holder] if seen.iter().all(|s| s == holder));
            if lease_ok {
                let holder = holders[0].clone();
                match self.postgres_problem(&holder).await {
                    None => return Ok(holder),
                    Some(problem) => detail = format!("lease held by {holder}; {problem}"),
                }
            } else {
                detail = format!("valid holders {holders:?}, holders seen {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(LabError::Unhealthy {
            after: within,
            detail,
            dir: self.description.dir.clone(),
        })
    }

    /// What keeps the database members from "one primary, replicas streaming".
    async fn postgres_problem(&self, holder: &str) -> Option<String> {
        for m in &self.description.members {
            let Some(dsn) = &m.dsn else { continue };
            let want = if m.name == holder {
                "SELECT NOT pg_is_in_recovery()"
            } else {
                "SELECT pg_is_in_recovery() AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')"
            };
            match pg_query_bool(dsn, want).await {
                Ok(true) => {}
                Ok(false) if m.name == holder => {
                    return Some(format!("{} is not writable yet", m.name));
                }
                Ok(false) => return Some(format!("{} is not streaming yet", m.name)),
                Err(e) => return Some(format!("{}: {e}", m.name)),
            }
        }
        None
    }
}

/// One boolean query, bounded to two seconds.
pub async fn pg_query_bool(dsn: &str, query: &str) -> Result<bool, String> {
    let work = async {
        let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let row = client
            .query_one(query, &[])
            .await
            .map_err(|e| e.to_string());
        drop(client);
        let _ = driver.await;
        row?.try_get::<_, bool>(0).map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(2), work)
        .await
        .map_err(|_| "no answer within 2s".to_owned())?
}

/// A connection to a member's Raft port, over mutual TLS with the tools'
/// certificate when the lab has it (`tls`).
pub async fn member_channel(
    raft_addr: &str,
    tls: Option<&crate::tls::LabTls>,
) -> Result<tonic::transport::Channel, String> {
    let endpoint = match tls {
        Some(tls) => tonic::transport::Endpoint::from_shared(format!("https://{raft_addr}"))
            .map_err(|e| e.to_string())?
            .tls_config(tls.client_config()?)
            .map_err(|e| e.to_string())?,
        None => tonic::transport::Endpoint::from_shared(format!("http://{raft_addr}"))
            .map_err(|e| e.to_string())?,
    };
    endpoint.connect().await.map_err(|e| format!("{e:?}"))
}

/// One agent's own view, over its gRPC status service, within one second;
/// over mutual TLS when the lab has it (`tls`).
pub async fn agent_status(
    raft_addr: &str,
    tls: Option<&crate::tls::LabTls>,
) -> Result<AgentStatusReply, String> {
    let call = async {
        let mut client = AgentClient::new(member_channel(raft_addr, tls).await?);
        client
            .status(AgentStatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|e| e.message().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(1), call)
        .await
        .map_err(|_| "no answer within 1s".to_owned())?
}
