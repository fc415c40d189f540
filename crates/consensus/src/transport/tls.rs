//! Mutual TLS between members: only a holder of a certificate from the
//! cluster's CA reaches a member's Raft port at all, and a Raft message or
//! a join is accepted only from the member it speaks for.
//!
//! Each member's certificate carries two DNS names: [`MEMBER_NAME`], which
//! every member has (callers verify they reach *a* member of the cluster;
//! forwarded requests go to whichever member leads), and
//! [`node_name`]`(id)`, which only member `id` has (servers check that a
//! vote, an append, a snapshot or a join comes from the id it names).

use crate::types::NodeId;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// The DNS name every member's certificate carries.
pub const MEMBER_NAME: &str = "raftgres-member";

/// What every member's own DNS name starts with ([`node_name`]).
pub const NODE_NAME_PREFIX: &str = "raftgres-node-";

/// The DNS name only member `id`'s certificate carries.
pub fn node_name(id: NodeId) -> String {
    format!("{NODE_NAME_PREFIX}{id}")
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {reason}; check raft.tls_{what}_file")]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{what} {path} holds no PEM {expected}; check raft.tls_{what}_file")]
    NotPem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error(
        "cannot set up TLS on the Raft port: {reason}; check raft.tls_ca_file, tls_cert_file and tls_key_file"
    )]
    Setup { reason: String },
}

/// A member's CA, certificate and key, in PEM.
#[derive(Clone)]
pub struct PeerTls {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never reaches a log.
        f.write_str("PeerTls { .. }")
    }
}

fn read(what: &'static str, path: &Path, expected: &'static str) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::Read {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let marker = format!("-----BEGIN {expected}");
    let text = String::from_utf8_lossy(&bytes);
    let found = if expected == "PRIVATE KEY" {
        text.lines()
            .any(|l| l.starts_with("-----BEGIN") && l.contains("PRIVATE KEY"))
    } else {
        text.contains(&marker)
    };
    if !found {
        return Err(TlsError::NotPem {
            what,
            path: path.to_owned(),
            expected,
        });
    }
    Ok(bytes)
}

impl PeerTls {
    pub fn from_pem(ca: Vec<u8>, cert: Vec<u8>, key: Vec<u8>) -> Self {
        Self { ca, cert, key }
    }

    /// Reads the three files, checking each holds what it should.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            ca: read("ca", ca, "CERTIFICATE")?,
            cert: read("cert", cert, "CERTIFICATE")?,
            key: read("key", key, "PRIVATE KEY")?,
        })
    }

    /// The Raft port's side of the handshake: requires a client
    /// certificate from the cluster's CA, and speaks HTTP/2 (gRPC).
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let setup = |reason: String| TlsError::Setup { reason };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca) {
            let cert = cert.map_err(|e| setup(format!("the CA file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| setup(format!("the CA certificate: {e}")))?;
        }
        let clients =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| setup(format!("the client certificate check: {e}")))?;
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| setup(format!("the certificate file: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .map_err(|e| setup(format!("the key file: {e}")))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(e.to_string()))?
            .with_client_cert_verifier(clients)
            .with_single_cert(chain, key)
            .map_err(|e| setup(format!("the certificate and key: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Presents this member's certificate and accepts only a server whose
    /// certificate is a member's, from the cluster's CA.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
            .domain_name(MEMBER_NAME)
    }
}

/// Checks that the caller's certificate (already verified against the CA
/// by the handshake) names member `claimed`.
pub fn check_speaks_as(
    certs: Option<&[CertificateDer<'static>]>,
    claimed: NodeId,
) -> Result<(), String> {
    let Some(leaf) = certs.and_then(|c| c.first()) else {
        return Err(format!(
            "no client certificate: only member {claimed} may send this"
        ));
    };
    let cert = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("unreadable client certificate: {e:?}"))?;
    let name =
        ServerName::try_from(node_name(claimed)).map_err(|e| format!("node id {claimed}: {e}"))?;
    cert.verify_is_valid_for_subject_name(&name).map_err(|_| {
        format!(
            "the caller's certificate does not name member {claimed}, for whom this message speaks"
        )
    })
}
