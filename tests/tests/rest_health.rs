//! The agents' REST health endpoints on a real lab: `/primary` answers 200
//! on exactly the member whose Postgres takes writes, `/replica` on the
//! streaming replicas, for GET, HEAD and OPTIONS (HAProxy's httpchk), and
//! the answer moves with a failover.

use raftgres_tests::{PrimaryMonitor, eventually, lab_dir, serial, start_lab, writable};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The status code of one HTTP/1.1 request, on a fresh connection.
async fn http_status(api_url: &str, method: &str, path: &str) -> Result<u16, String> {
    let addr = api_url.strip_prefix("http://").ok_or("not an http URL")?;
    let work = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        stream
            .read_to_end(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&reply);
        text.split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or(format!("bad reply {text:?}"))
    };
    tokio::time::timeout(Duration::from_secs(2), work)
        .await
        .map_err(|_| "no answer".to_owned())?
}

async fn statuses(lab: &raftgres_lab::Lab, path: &str) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for m in &lab.description.members {
        for method in ["GET", "HEAD", "OPTIONS"] {
            let code = http_status(&m.api_url, method, path).await.unwrap_or(0);
            out.push((format!("{} {method}", m.name), code));
        }
    }
    out
}

fn expect(lab: &raftgres_lab::Lab, ok: &[&str]) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for m in &lab.description.members {
        for method in ["GET", "HEAD", "OPTIONS"] {
            let code = if ok.contains(&m.name.as_str()) {
                200
            } else {
                503
            };
            out.push((format!("{} {method}", m.name), code));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_and_replica_checks_follow_the_writable_postgres() {
    let _serial = serial().await;
    let dir = lab_dir();
    let (mut lab, primary) = start_lab(&dir, 3, false).await;
    let monitor = PrimaryMonitor::start(&lab);
    let replicas: Vec<String> = lab.names().into_iter().filter(|n| *n != primary).collect();
    let replica_refs: Vec<&str> = replicas.iter().map(String::as_str).collect();
    assert_eq!(statuses(&lab, "/primary").await, expect(&lab, &[&primary]));
    assert_eq!(
        statuses(&lab, "/replica").await,
        expect(&lab, &replica_refs)
    );
    for alias in ["/", "/leader", "/read-write", "/master"] {
        assert_eq!(
            statuses(&lab, alias).await,
            expect(&lab, &[&primary]),
            "{alias}"
        );
    }
    assert_eq!(
        http_status(
            &lab.member(&primary).unwrap().api_url,
            "GET",
            "/replica?lag=abc"
        )
        .await,
        Ok(400)
    );
    assert_eq!(
        http_status(
            &lab.member(&primary).unwrap().api_url,
            "GET",
            "/no-such-check"
        )
        .await,
        Ok(404)
    );

    lab.kill(&primary).expect("SIGKILL the primary's agent");
    let new = eventually(Duration::from_secs(30), "a new primary", || async {
        match writable(&lab).await.as_slice() {
            [one] if *one != primary => Some(one.clone()),
            _ => None,
        }
    })
    .await;
    let survivors = replica_refs.clone();
    eventually(
        Duration::from_secs(10),
        "/primary moves to the new primary",
        || async {
            let now: Vec<(String, u16)> = statuses(&lab, "/primary")
                .await
                .into_iter()
                .filter(|(who, _)| survivors.iter().any(|s| who.starts_with(&format!("{s} "))))
                .collect();
            let want: Vec<(String, u16)> = expect(&lab, &[&new])
                .into_iter()
                .filter(|(who, _)| survivors.iter().any(|s| who.starts_with(&format!("{s} "))))
                .collect();
            (now == want).then_some(())
        },
    )
    .await;
    monitor.assert_never_two().await;
}
