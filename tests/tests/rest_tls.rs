//! The REST API over TLS on a real agent (the lab's `restapi.certfile` and
//! `keyfile`, plus `cafile` and `verify_client: required`): plain HTTP gets
//! nothing, a client without a certificate from the CA is refused, and
//! raftgresctl with `--cacert`, `--cert` and `--key` operates the cluster
//! through it.

use raftgres_certs::Authority;
use raftgres_tests::settle::SETTLE_WITHIN;
use raftgres_tests::{any_replica, ctl_bin, eventually, serial_lab};
use std::process::Output;
use std::time::Duration;

async fn ctl(args: &[&str]) -> Output {
    tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(ctl_bin())
            .args(args)
            .env_remove("RAFTGRESCTL_URL")
            .env_remove("RAFTGRESCTL_USERNAME")
            .env_remove("RAFTGRESCTL_PASSWORD")
            .env_remove("RAFTGRESCTL_CACERT")
            .env_remove("RAFTGRESCTL_CERT")
            .env_remove("RAFTGRESCTL_KEY")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("raftgresctl finishes")
    .expect("raftgresctl runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_over_tls_with_client_certificates() {
    let (_dir, mut lab, primary) = serial_lab(3, false).await;
    let member = any_replica(&lab, &primary);
    // The lab's agents already serve HTTPS with certificates from the lab's
    // CA; the same CA signs the client certificate the member will require.
    let ca = Authority::open_or_create(&lab.description.dir.join("tls")).expect("the lab's CA");
    let client = ca.tools("admin").expect("a client certificate");

    // The member's agent, restarted to require a client certificate.
    let config = lab.member(&member).expect("member").config.clone();
    let text = std::fs::read_to_string(&config).expect("settings");
    assert!(
        text.contains("  certfile: "),
        "the lab serves HTTPS: {text}"
    );
    let text = text.replacen(
        "restapi:\n",
        &format!(
            "restapi:\n  cafile: {}\n  verify_client: required\n",
            ca.ca.cert.display()
        ),
        1,
    );
    std::fs::write(&config, text).expect("write settings");
    lab.restart_agent(&member, Duration::from_secs(30))
        .expect("restart the agent");
    let base = lab.member(&member).expect("member").api_url.clone();
    assert!(base.starts_with("https://"), "{base}");
    let plain = base.replacen("https://", "http://", 1);
    let (ca_file, cert, key) = (
        ca.ca.cert.display().to_string(),
        client.cert.display().to_string(),
        client.key.display().to_string(),
    );
    let with_certificate = |extra: &'static [&'static str]| {
        let mut args = vec![
            "--url".to_owned(),
            base.clone(),
            "--cacert".to_owned(),
            ca_file.clone(),
            "--cert".to_owned(),
            cert.clone(),
            "--key".to_owned(),
            key.clone(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args
    };

    // raftgresctl through HTTPS with its certificate: the whole cluster;
    // `version` asks every member at the address it publishes, which must
    // be its https one.
    let rows = eventually(SETTLE_WITHIN, "list over HTTPS, every member", || async {
        let args = with_certificate(&["list", "--format", "json"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ctl(&args).await;
        if !out.status.success() {
            return None;
        }
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (rows.as_array()?.len() == 3).then_some(rows)
    })
    .await;
    assert!(
        rows.as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["Member"] == member.as_str())),
        "{rows}"
    );
    // The member publishes its https address: the primary, which needs no
    // client certificate, shows it in /cluster.
    let with_ca = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&ca.ca.cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let primary_url = lab.member(&primary).expect("primary").api_url.clone();
    let cluster: serde_json::Value = with_ca
        .get(format!("{primary_url}/cluster"))
        .send()
        .await
        .expect("GET /cluster on the primary")
        .json()
        .await
        .expect("a JSON /cluster");
    let url = cluster["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == member.as_str()))
        .and_then(|m| m["api_url"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(url.starts_with(&base), "{url} is not {base}: {cluster}");

    // Without its certificate, and over plain HTTP: refused.
    let out = ctl(&["--url", &base, "--cacert", &ca_file, "list"]).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = ctl(&["--url", &plain, "list"]).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&ca.ca.cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap()
        .get(format!("{base}/primary"))
        .send()
        .await;
    assert!(
        anonymous.is_err(),
        "a client without a certificate: {anonymous:?}"
    );
}
