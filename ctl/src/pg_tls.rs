//! TLS to a member's Postgres for `query`, from libpq's `PGSSLMODE` and
//! `PGSSLROOTCERT`, with libpq's meaning, since tokio-postgres reads no
//! environment: `prefer` (the default) and `require` encrypt without
//! checking the certificate, `verify-ca` checks that it chains to the root
//! certificate, `verify-full` also that it names the host connected to.

use anyhow::{Context, bail};
use raftgres_config::PgSslMode;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// `PGSSLMODE`'s value, libpq's `prefer` when unset or empty.
pub fn mode(value: Option<&str>) -> anyhow::Result<PgSslMode> {
    let text = value.filter(|v| !v.is_empty()).unwrap_or("prefer");
    if let Some(mode) = PgSslMode::ALL.into_iter().find(|m| m.as_libpq() == text) {
        return Ok(mode);
    }
    let names: Vec<&str> = PgSslMode::ALL.iter().map(|m| m.as_libpq()).collect();
    let allow = if text == "allow" {
        " (`allow` tries plain first and protects nothing `prefer` does not)"
    } else {
        ""
    };
    bail!(
        "PGSSLMODE is {text:?}; raftgresctl knows {}{allow}",
        names.join(", ")
    )
}

/// The root certificate the verifying modes check against: `PGSSLROOTCERT`,
/// else libpq's `~/.postgresql/root.crt`.
pub fn root_cert(pgsslrootcert: Option<String>, home: Option<&Path>) -> Option<PathBuf> {
    match pgsslrootcert.filter(|p| !p.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => home.map(|h| h.join(".postgresql/root.crt")),
    }
}

/// The connector for `mode`; `None` for `disable`.
pub fn connector(
    mode: PgSslMode,
    root: Option<&Path>,
) -> anyhow::Result<Option<MakeRustlsConnect>> {
    if mode == PgSslMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = if mode.verifies() {
        let roots = Arc::new(roots(mode, root)?);
        Some(
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .context("cannot build the certificate verifier for TLS to Postgres")?,
        )
    } else {
        None
    };
    let verifier = ServerCheck {
        chain,
        check_name: mode == PgSslMode::VerifyFull,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("cannot choose TLS versions for Postgres")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// tokio-postgres knows prefer and require; the verifying modes are require
/// plus the connector's checks.
pub fn tokio_mode(mode: PgSslMode) -> tokio_postgres::config::SslMode {
    match mode {
        PgSslMode::Disable => tokio_postgres::config::SslMode::Disable,
        PgSslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    }
}

fn roots(mode: PgSslMode, path: Option<&Path>) -> anyhow::Result<RootCertStore> {
    let Some(path) = path else {
        bail!(
            "PGSSLMODE {} checks the server's certificate: set PGSSLROOTCERT to the CA file",
            mode.as_libpq()
        );
    };
    let unreadable = |reason: String| {
        anyhow::anyhow!(
            "PGSSLMODE {} needs the CA that signs the members' Postgres certificates, and {} \
             cannot be used: {reason}; set PGSSLROOTCERT to the CA file",
            mode.as_libpq(),
            path.display()
        )
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(e.to_string()))? {
        roots
            .add(cert.map_err(|e| unreadable(e.to_string()))?)
            .map_err(|e| unreadable(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(unreadable("it holds no certificate".into()));
    }
    Ok(roots)
}

/// One verifier for the three ways libpq treats a certificate: unchecked
/// (`prefer`, `require`; the handshake's signatures are still verified, so
/// SCRAM's channel binding ties the login to this connection), chained to
/// the root (`verify-ca`), chained and naming the host (`verify-full`).
#[derive(Debug)]
struct ServerCheck {
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ServerCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgsslmode_reads_libpq_s_names_and_defaults_to_prefer() {
        assert_eq!(mode(None).expect("unset"), PgSslMode::Prefer);
        assert_eq!(mode(Some("")).expect("empty"), PgSslMode::Prefer);
        assert_eq!(
            mode(Some("verify-full")).expect("known"),
            PgSslMode::VerifyFull
        );
        let err = mode(Some("allow")).expect_err("allow").to_string();
        assert!(err.contains("protects nothing"), "{err}");
        let err = mode(Some("strict")).expect_err("unknown").to_string();
        assert!(
            err.contains("\"strict\"") && err.contains("verify-ca"),
            "{err}"
        );
    }

    #[test]
    fn verifying_modes_need_a_readable_root_certificate() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        for mode in [PgSslMode::VerifyCa, PgSslMode::VerifyFull] {
            let err = connector(mode, None).err().expect("no root").to_string();
            assert!(err.contains("set PGSSLROOTCERT"), "{err}");
            for path in [dir.path().join("missing.pem"), empty.clone()] {
                let err = connector(mode, Some(&path))
                    .err()
                    .expect("unusable")
                    .to_string();
                assert!(err.contains(&path.display().to_string()), "{err}");
            }
        }
        assert!(
            connector(PgSslMode::Disable, None)
                .expect("plain")
                .is_none()
        );
        assert!(
            connector(PgSslMode::Require, None)
                .expect("unchecked")
                .is_some()
        );
        assert_eq!(
            root_cert(None, Some(Path::new("/home/u"))),
            Some(PathBuf::from("/home/u/.postgresql/root.crt"))
        );
        assert_eq!(
            root_cert(Some("/etc/ca.pem".into()), Some(Path::new("/home/u"))),
            Some(PathBuf::from("/etc/ca.pem"))
        );
    }
}
