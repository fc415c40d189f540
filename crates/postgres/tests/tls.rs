//! The agent's own connections to a real server with `ssl = on`: each
//! `sslmode` checks the server's certificate as libpq's does, so an agent
//! set to `verify-full` never logs in to a server whose certificate comes
//! from another CA or names another host.

mod common;

use common::{Node, Scratch};
use raftgres_certs::Authority;
use raftgres_postgres::{ClientTls, Control, PgSettings, SslMode, initdb};
use std::path::{Path, PathBuf};

fn give_to(path: &Path, owner: Option<raftgres_postgres::RunAs>) {
    if let Some(owner) = owner {
        std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid)).unwrap();
    }
}

/// `status()` through a control connection made with `tls`, to `host`.
async fn probe(
    s: &PgSettings,
    host: &str,
    mode: SslMode,
    root: Option<&PathBuf>,
) -> Result<(), String> {
    let mut t = s.clone();
    t.host = host.to_owned();
    t.tls = ClientTls {
        mode,
        root_cert: root.cloned(),
    };
    Control::new(&t)
        .status()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sslmode_checks_the_servers_certificate_as_libpq_does() {
    let Some(run_as) = common::run_as() else {
        return;
    };
    let scratch = Scratch::new(run_as);
    let ca = Authority::open_or_create(&scratch.path().join("pki")).unwrap();
    // Names `localhost` only, while the server listens on 127.0.0.1.
    let server = ca.server("pg", &["localhost".to_owned()]).unwrap();
    let other = Authority::open_or_create(&scratch.path().join("other-pki")).unwrap();
    for path in [&scratch.path().join("pki"), &server.cert, &server.key] {
        give_to(path, run_as);
    }

    let mut s = scratch.settings("n1");
    s.parameters.insert("ssl".into(), "on".into());
    s.parameters
        .insert("ssl_cert_file".into(), server.cert.display().to_string());
    s.parameters
        .insert("ssl_key_file".into(), server.key.display().to_string());
    let mut node = Node::new(s.clone());
    initdb(&s).await.unwrap();
    node.start().await;

    let (ours, theirs) = (Some(&ca.ca.cert), Some(&other.ca.cert));
    for (host, mode, root) in [
        ("127.0.0.1", SslMode::Disable, None),
        ("127.0.0.1", SslMode::Prefer, None),
        ("127.0.0.1", SslMode::Require, None),
        // verify-ca checks the chain, not the name.
        ("127.0.0.1", SslMode::VerifyCa, ours),
        ("localhost", SslMode::VerifyFull, ours),
    ] {
        probe(&s, host, mode, root)
            .await
            .unwrap_or_else(|e| panic!("{host} {mode:?}: {e}"));
    }
    for (host, mode, root, why) in [
        ("127.0.0.1", SslMode::VerifyFull, ours, "not valid for name"),
        (
            "localhost",
            SslMode::VerifyFull,
            theirs,
            "invalid peer certificate",
        ),
        (
            "127.0.0.1",
            SslMode::VerifyCa,
            theirs,
            "invalid peer certificate",
        ),
    ] {
        let err = probe(&s, host, mode, root)
            .await
            .expect_err(&format!("{host} {mode:?} with the wrong CA or name"));
        assert!(
            err.contains("certificate is refused") && err.contains(why),
            "{host} {mode:?}: {err}"
        );
    }
}
