//! The lab's own certificate authority, so that its agents speak Raft over
//! mutual TLS as a deployment's do: a CA, one certificate per member naming
//! `raftgres-member` and `raftgres-node-<id>`, and one for the lab's tools
//! (`lab status`, tests), which names `raftgres-member` only, so that it
//! can call a member but never vote, append or join as one. Each member's
//! REST API serves HTTPS, and each member's Postgres TLS, with a certificate
//! from the same CA naming the address clients reach it at; members verify
//! each other's Postgres certificate (`sslmode verify-full`).

use crate::process::LabError;
use raftgres_certs::Authority;
use raftgres_consensus::transport::tls::MEMBER_NAME;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// What `lab.json` says about the lab's TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabTls {
    /// The CA every member's and the tools' certificates are signed by.
    pub ca_file: PathBuf,
    /// The tools' certificate and key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// One member's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The REST API's server certificate and key.
    pub api_cert_file: PathBuf,
    pub api_key_file: PathBuf,
    /// Postgres's server certificate and key, for a database member.
    pub pg: Option<(PathBuf, PathBuf)>,
}

fn setup(e: raftgres_certs::CertError) -> LabError {
    LabError::Setup(format!("lab TLS: {e}"))
}

/// One member, as [`issue`] needs it.
pub(crate) struct Subject {
    pub name: String,
    pub node_id: u64,
    /// The REST API's address.
    pub api_host: String,
    /// Postgres's address, for a database member.
    pub pg_host: Option<String>,
}

/// Issues (or keeps, from an earlier lab in `dir`) the CA in `DIR/tls` and
/// certificates for the members, and for the tools.
pub(crate) fn issue(dir: &Path, members: &[Subject]) -> Result<(LabTls, Vec<MemberTls>), LabError> {
    let tls_dir = std::path::absolute(dir.join("tls"))
        .map_err(|e| LabError::Setup(format!("lab TLS directory: {e}")))?;
    let ca = Authority::open_or_create(&tls_dir).map_err(setup)?;
    let mut files = Vec::new();
    for m in members {
        let pair = ca.member(&m.name, m.node_id).map_err(setup)?;
        let api = ca
            .server(
                &format!("{}-api", m.name),
                std::slice::from_ref(&m.api_host),
            )
            .map_err(setup)?;
        let pg = match &m.pg_host {
            Some(host) => {
                let pg = ca
                    .server(&format!("{}-pg", m.name), std::slice::from_ref(host))
                    .map_err(setup)?;
                Some((pg.cert, pg.key))
            }
            None => None,
        };
        files.push(MemberTls {
            cert_file: pair.cert,
            key_file: pair.key,
            api_cert_file: api.cert,
            api_key_file: api.key,
            pg,
        });
    }
    let tools = ca.tools("tools").map_err(setup)?;
    Ok((
        LabTls {
            ca_file: ca.ca.cert.clone(),
            client_cert: tools.cert,
            client_key: tools.key,
        },
        files,
    ))
}

impl LabTls {
    /// The tools' side of mutual TLS with a member.
    pub fn client_config(&self) -> Result<ClientTlsConfig, String> {
        let read = |path: &Path| {
            fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca_file)?))
            .identity(Identity::from_pem(
                read(&self.client_cert)?,
                read(&self.client_key)?,
            ))
            .domain_name(MEMBER_NAME))
    }
}
