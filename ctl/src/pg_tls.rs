//! TLS to a member's Postgres for `query`, from libpq's `PGSSLMODE` and
//! `PGSSLROOTCERT`, with libpq's meaning, since tokio-postgres reads no
//! environment: `prefer` (the default) and `require` encrypt without
//! checking the certificate, `verify-ca` checks that it chains to the root
//! certificate, `verify-full` also that it names the host connected to.

use anyhow::{Context, bail};
use raftgres_postgres::{ClientTls, SslMode};
use std::path::{Path, PathBuf};
use tokio_postgres_rustls::MakeRustlsConnect;

/// `PGSSLMODE`'s value, libpq's `prefer` when unset or empty.
pub fn mode(value: Option<&str>) -> anyhow::Result<SslMode> {
    let text = value.filter(|v| !v.is_empty()).unwrap_or("prefer");
    if let Some(mode) = SslMode::ALL.into_iter().find(|m| m.as_libpq() == text) {
        return Ok(mode);
    }
    let names: Vec<&str> = SslMode::ALL.iter().map(|m| m.as_libpq()).collect();
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

/// The connector for `mode`, from the Postgres crate's, which the agent's
/// own connections use; `None` for `disable`.
pub fn connector(tls: &ClientTls) -> anyhow::Result<Option<MakeRustlsConnect>> {
    let Some(path) = tls.root_cert.as_deref().filter(|_| tls.mode.verifies()) else {
        if tls.mode.verifies() {
            bail!(
                "PGSSLMODE {} checks the server's certificate: set PGSSLROOTCERT to the CA file",
                tls.mode.as_libpq()
            );
        }
        return Ok(tls.connector()?);
    };
    tls.connector().with_context(|| {
        format!(
            "PGSSLMODE {} needs the CA that signs the members' Postgres certificates, and {} \
             cannot be used; set PGSSLROOTCERT to the CA file",
            tls.mode.as_libpq(),
            path.display()
        )
    })
}

/// `PGSSLMODE` and the root certificate as the connection's settings; the
/// root certificate only where the mode checks against it, as libpq.
pub fn settings(mode: SslMode, root: Option<PathBuf>) -> ClientTls {
    ClientTls {
        mode,
        root_cert: root.filter(|_| mode.verifies()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgsslmode_reads_libpq_s_names_and_defaults_to_prefer() {
        assert_eq!(mode(None).expect("unset"), SslMode::Prefer);
        assert_eq!(mode(Some("")).expect("empty"), SslMode::Prefer);
        assert_eq!(
            mode(Some("verify-full")).expect("known"),
            SslMode::VerifyFull
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
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let err = connector(&settings(mode, None))
                .err()
                .expect("no root")
                .to_string();
            assert!(err.contains("set PGSSLROOTCERT"), "{err}");
            for path in [dir.path().join("missing.pem"), empty.clone()] {
                let err = connector(&settings(mode, Some(path.clone())))
                    .err()
                    .expect("unusable")
                    .to_string();
                assert!(err.contains(&path.display().to_string()), "{err}");
            }
        }
        assert!(
            connector(&settings(SslMode::Disable, None))
                .expect("plain")
                .is_none()
        );
        assert!(
            connector(&settings(SslMode::Require, None))
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
