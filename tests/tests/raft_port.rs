//! The agents' Raft port on a real lab, which runs mutual TLS as a
//! deployment does: a caller without a certificate from the cluster's CA
//! gets no answer at all, and a caller with one that names no member (the
//! lab's tools) cannot vote or join in a member's name; the cluster goes on.

use openraft::Vote;
use openraft::raft::VoteRequest;
use raftgres_lab::{agent_status, member_channel};
use raftgres_proto::v1::cluster_client::ClusterClient;
use raftgres_proto::v1::raft_client::RaftClient;
use raftgres_proto::v1::{JoinRequest, RaftPayload};
use raftgres_tests::{any_replica, serial_lab, status};
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_members_reach_the_raft_port_and_only_as_themselves() {
    let (_dir, lab, primary) = serial_lab(3, false).await;
    let tls = lab
        .description
        .tls
        .clone()
        .expect("the lab runs mutual TLS");
    let replica = any_replica(&lab, &primary);
    let addr = lab.member(&replica).expect("member").raft_addr.clone();

    // Plain TCP, as before TLS: no answer.
    let plain = agent_status(&addr, None).await;
    assert!(
        plain.is_err(),
        "a plain-text caller got an answer: {plain:?}"
    );

    // TLS that trusts the cluster's CA but shows no certificate: refused in
    // the handshake, before any RPC.
    let ca = std::fs::read(&tls.ca_file).expect("the lab's CA");
    let anonymous = async {
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| e.to_string())?
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&ca))
                    .domain_name("raftgres-member"),
            )
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .map_err(|e| format!("{e:?}"))?;
        RaftClient::new(channel)
            .vote(RaftPayload::default())
            .await
            .map(drop)
            .map_err(|s| s.to_string())
    }
    .await;
    assert!(anonymous.is_err(), "a caller without a certificate got in");

    // The tools' certificate is the cluster's but names no member: a vote
    // in the name of a member, or a join under an id, is refused.
    let channel = member_channel(&addr, Some(&tls))
        .await
        .expect("the tools connect");
    assert!(
        status(&lab, &replica).await.is_ok(),
        "the tools' certificate reads a member's status"
    );
    let forged = VoteRequest::<u64> {
        vote: Vote::new(u64::MAX / 8, 1),
        last_log_id: None,
    };
    let refused = RaftClient::new(channel.clone())
        .vote(RaftPayload {
            json: serde_json::to_vec(&forged).expect("encode"),
            to_incarnation: 0,
        })
        .await
        .expect_err("a vote in member 1's name");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    let refused = ClusterClient::new(channel)
        .join(JoinRequest {
            node_id: 9,
            raft_addr: "127.0.0.1:9".into(),
            incarnation: 99,
        })
        .await
        .expect_err("a join as node 9");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");

    // Nothing changed: the same primary, every member answering over TLS.
    let again = lab
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("still healthy");
    assert_eq!(again, primary);
}
