//! TLS on the connections the agent and PostgreSQL's tools open to a
//! server: libpq's `sslmode` and `sslrootcert`, with libpq's meaning, for
//! the agent's own connections (rustls) as for the walreceiver,
//! `pg_basebackup` and `pg_rewind` (libpq).

use crate::error::{PgError, Result};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, without `allow` (plain first, TLS only if the
/// server insists), which protects nothing `prefer` does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, the certificate unchecked: libpq's
    /// default.
    Prefer,
    /// TLS or no connection; the certificate unchecked.
    Require,
    /// TLS, with a certificate signed by `sslrootcert`'s CA.
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host connected to.
    VerifyFull,
}

impl SslMode {
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// libpq's spelling.
    pub fn as_libpq(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// No connection without TLS.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }

    /// The server's certificate must chain to `sslrootcert`.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// How every connection to a PostgreSQL server is secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub mode: SslMode,
    /// The CA a server's certificate must chain to; required by the
    /// verifying modes.
    pub root_cert: Option<PathBuf>,
}

impl Default for ClientTls {
    /// libpq's default: TLS when offered, unchecked.
    fn default() -> Self {
        ClientTls {
            mode: SslMode::Prefer,
            root_cert: None,
        }
    }
}

impl ClientTls {
    pub(crate) fn validate(&self) -> Result<()> {
        if !self.mode.verifies() {
            // libpq would check the chain under `require` when given a root
            // certificate, and ignore it under `prefer`: neither is what the
            // setting says, so it goes with the verifying modes only.
            return match &self.root_cert {
                Some(path) => Err(PgError::Tls {
                    reason: format!(
                        "sslrootcert {} is given with sslmode {}, which does not check the \
                         server's certificate; use verify-ca or verify-full, or drop it",
                        path.display(),
                        self.mode.as_libpq()
                    ),
                }),
                None => Ok(()),
            };
        }
        match &self.root_cert {
            None => Err(PgError::Tls {
                reason: format!(
                    "sslmode {} checks the server's certificate: it needs sslrootcert, the CA file",
                    self.mode.as_libpq()
                ),
            }),
            Some(path) if !path.is_absolute() => Err(PgError::Tls {
                reason: format!("sslrootcert {} must be an absolute path", path.display()),
            }),
            // Read now, so that an unreadable or empty CA file stops the
            // start with its name rather than failing every probe later.
            Some(_) => self.roots().map(drop),
        }
    }

    /// The rustls connector for connections to a member's Postgres (the
    /// agent's own, `raftgresctl query`'s); `None` for `disable`.
    pub fn connector(&self) -> Result<Option<MakeRustlsConnect>> {
        if self.mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("choose TLS versions", e))?;
        let algorithms = provider.signature_verification_algorithms;
        let chain = if self.mode.verifies() {
            let roots = Arc::new(self.roots()?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider).build();
            Some(webpki.map_err(|e| tls_error("build the certificate verifier", e))?)
        } else {
            None
        };
        let config = match chain {
            Some(webpki) if self.mode == SslMode::VerifyFull => {
                builder.with_webpki_verifier(webpki)
            }
            chain => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(BelowVerifyFull { chain, algorithms })),
        };
        Ok(Some(MakeRustlsConnect::new(config.with_no_client_auth())))
    }

    /// tokio-postgres knows prefer and require; the verifying modes are
    /// require plus the connector's checks.
    pub fn tokio_mode(&self) -> tokio_postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }

    /// `key=value` pairs for a libpq connection string.
    pub(crate) fn conninfo_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![("sslmode", self.mode.as_libpq().to_owned())];
        if let Some(root) = &self.root_cert {
            pairs.push(("sslrootcert", root.display().to_string()));
        }
        pairs
    }

    /// The same for libpq's environment (`pg_basebackup`, `pg_rewind`).
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![("PGSSLMODE", self.mode.as_libpq().to_owned())];
        if let Some(root) = &self.root_cert {
            vars.push(("PGSSLROOTCERT", root.display().to_string()));
        }
        vars
    }

    fn roots(&self) -> Result<RootCertStore> {
        let path = self.root_cert.as_deref().unwrap_or(Path::new(""));
        let unreadable = |reason: String| PgError::Tls {
            reason: format!("sslrootcert {}: {reason}", path.display()),
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(e.to_string()))? {
            roots
                .add(cert.map_err(|e| unreadable(e.to_string()))?)
                .map_err(|e| unreadable(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(unreadable("holds no certificate".into()));
        }
        Ok(roots)
    }
}

/// The certificate problem behind a failed connection, when the server's
/// certificate was refused: retrying cannot help, the settings or the
/// server's certificate must change.
pub fn refused_certificate(error: &tokio_postgres::Error) -> Option<String> {
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        let rustls_error = inner.downcast_ref::<rustls::Error>().or_else(|| {
            inner
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|e| e.downcast_ref::<rustls::Error>())
        });
        if let Some(e @ rustls::Error::InvalidCertificate(_)) = rustls_error {
            return Some(e.to_string());
        }
        cause = inner.source();
    }
    None
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> PgError {
    PgError::Tls {
        reason: format!("cannot {what} for TLS to PostgreSQL: {e}"),
    }
}

/// What libpq checks of a server's certificate below `verify-full`. The
/// handshake's signatures are verified in every mode, so SCRAM's channel
/// binding ties the login to this connection.
#[derive(Debug)]
struct BelowVerifyFull {
    /// `verify-ca`: the chain is checked, the name is not; `None` for
    /// `prefer` and `require`: the certificate is not checked (libpq's
    /// meaning).
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for BelowVerifyFull {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_modes_need_an_absolute_root_certificate() {
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let tls = ClientTls {
                mode,
                root_cert: None,
            };
            assert!(
                tls.validate()
                    .unwrap_err()
                    .to_string()
                    .contains("needs sslrootcert")
            );
            let tls = ClientTls {
                mode,
                root_cert: Some("ca.pem".into()),
            };
            assert!(tls.validate().unwrap_err().to_string().contains("absolute"));
        }
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
            let tls = ClientTls {
                mode,
                root_cert: Some("/etc/raftgres/ca.pem".into()),
            };
            let err = tls.validate().unwrap_err().to_string();
            assert!(err.contains("does not check"), "{mode:?}: {err}");
            assert!(
                ClientTls {
                    mode,
                    root_cert: None
                }
                .validate()
                .is_ok()
            );
        }
    }

    #[test]
    fn libpq_gets_the_same_mode_and_root_as_the_agent() {
        let tls = ClientTls {
            mode: SslMode::VerifyFull,
            root_cert: Some("/etc/raftgres/tls/ca.pem".into()),
        };
        assert_eq!(
            tls.conninfo_pairs(),
            [
                ("sslmode", "verify-full".to_owned()),
                ("sslrootcert", "/etc/raftgres/tls/ca.pem".to_owned())
            ]
        );
        assert_eq!(
            tls.env(),
            [
                ("PGSSLMODE", "verify-full".to_owned()),
                ("PGSSLROOTCERT", "/etc/raftgres/tls/ca.pem".to_owned())
            ]
        );
        assert!(ClientTls::default().connector().unwrap().is_some());
        let off = ClientTls {
            mode: SslMode::Disable,
            root_cert: None,
        };
        assert!(off.connector().unwrap().is_none());
    }

    #[test]
    fn an_unreadable_or_empty_root_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for path in [dir.path().join("missing.pem"), empty] {
            let tls = ClientTls {
                mode: SslMode::VerifyFull,
                root_cert: Some(path.clone()),
            };
            for err in [tls.validate().err(), tls.connector().err()] {
                let err = err.expect("refused").to_string();
                assert!(err.contains(&path.display().to_string()), "{err}");
            }
        }
    }
}
