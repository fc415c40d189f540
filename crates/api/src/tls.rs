//! TLS for the REST API (`restapi.certfile`, `keyfile`, `cafile`,
//! `verify_client`), as Patroni's: the basic-auth password never crosses
//! the network in clear, and client certificates can be asked for or
//! required.

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Patroni's `restapi.verify_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyClient {
    /// No client certificate is asked for.
    None,
    /// One is asked for; a client without one is served, one with a
    /// certificate the CA did not sign is refused.
    Optional,
    /// A client without a certificate from the CA is refused in the handshake.
    Required,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiTlsError {
    #[error("restapi.{key}: {reason}")]
    Pem { key: &'static str, reason: String },
    #[error(
        "restapi.verify_client is {0:?}: set restapi.cafile, the CA that signs client certificates"
    )]
    NoClientCa(VerifyClient),
    #[error("restapi TLS: {0}")]
    Config(String),
}

/// The server side of the REST API's TLS.
#[derive(Clone)]
pub struct ServerTls {
    pub(crate) acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls { .. }")
    }
}

fn pem_error(key: &'static str) -> impl Fn(rustls_pki_types::pem::Error) -> ApiTlsError {
    move |e| ApiTlsError::Pem {
        key,
        reason: e.to_string(),
    }
}

impl ServerTls {
    /// From PEM: the server's certificate chain and key, and the CA that
    /// signs client certificates (needed unless `verify` is `None`).
    pub fn from_pem(
        cert: &[u8],
        key: &[u8],
        ca: Option<&[u8]>,
        verify: VerifyClient,
    ) -> Result<ServerTls, ApiTlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<_, _>>()
            .map_err(pem_error("certfile"))?;
        if chain.is_empty() {
            return Err(ApiTlsError::Pem {
                key: "certfile",
                reason: "holds no PEM certificate".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(pem_error("keyfile"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ApiTlsError::Config(e.to_string()))?;
        let builder = match (verify, ca) {
            (VerifyClient::None, _) => builder.with_no_client_auth(),
            (_, None) => return Err(ApiTlsError::NoClientCa(verify)),
            (_, Some(ca)) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca) {
                    roots.add(cert.map_err(pem_error("cafile"))?).map_err(|e| {
                        ApiTlsError::Pem {
                            key: "cafile",
                            reason: e.to_string(),
                        }
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if verify == VerifyClient::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| ApiTlsError::Config(e.to_string()))?,
                )
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| ApiTlsError::Config(format!("certfile and keyfile: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}
