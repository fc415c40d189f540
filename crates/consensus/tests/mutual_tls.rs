//! Three members over real gRPC with mutual TLS: they form a group and
//! commit, while a caller without a certificate, or with one from another
//! CA, is refused before any RPC runs, and a member that sends a vote or a
//! join in another member's name is refused.

mod common;

use common::*;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{SnapshotMeta, StoredMembership, Vote};
use raftgres_consensus::transport::grpc::GrpcNetwork;
use raftgres_consensus::transport::incoming;
use raftgres_consensus::transport::server::{Callers, services};
use raftgres_consensus::transport::tls::{MEMBER_NAME, PeerTls, node_name};
use raftgres_consensus::types::NodeId;
use raftgres_consensus::types::TypeConfig;
use raftgres_consensus::{Consensus, OperationTimeout};
use raftgres_proto::v1::cluster_client::ClusterClient;
use raftgres_proto::v1::raft_client::RaftClient;
use raftgres_proto::v1::{JoinRequest, RaftPayload};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Server};

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A member certificate for node `id`, as the deployment issues them.
    fn member(&self, id: NodeId) -> PeerTls {
        let key = KeyPair::generate().expect("member key");
        let mut params =
            CertificateParams::new(vec![MEMBER_NAME.to_owned(), node_name(id)]).expect("params");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        PeerTls::from_pem(
            self.pem.clone().into_bytes(),
            cert.pem().into_bytes(),
            key.serialize_pem().into_bytes(),
        )
    }
}

/// Starts member `id` with its certificate on a loopback port, its Raft
/// port taking connections within `limits`.
async fn start(
    dir: &std::path::Path,
    id: NodeId,
    tls: &PeerTls,
    listener: tokio::net::TcpListener,
    limits: incoming::Limits,
) -> Consensus {
    let (log, machine) = open_store(&store_path(dir, id)).await;
    let network = GrpcNetwork::new(
        Duration::from_millis(500),
        OperationTimeout::new(OPERATION_TIMEOUT),
    )
    .with_tls(tls);
    let consensus = Consensus::start(
        &settings(id, NO_SNAPSHOTS),
        log,
        machine,
        network.clone(),
        Arc::new(network),
    )
    .await
    .expect("start the member");
    let (raft, cluster) = services(&consensus, Callers::Authenticated);
    let server = Server::builder()
        .add_service(raft)
        .add_service(cluster)
        .serve_with_incoming(incoming::tls(
            listener,
            tls.acceptor().expect("server TLS"),
            limits,
        ));
    tokio::spawn(server);
    consensus
}

/// A client channel to `addr` presenting `identity` (or none).
async fn channel(
    addr: &str,
    ca: &Ca,
    identity: Option<&PeerTls>,
) -> Result<tonic::transport::Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.pem))
        .domain_name(MEMBER_NAME);
    if let Some(peer) = identity {
        tls = peer.client_config();
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// A Raft RPC's body for the member incarnation `to_incarnation`.
fn payload(message: &impl serde::Serialize, to_incarnation: u64) -> RaftPayload {
    RaftPayload {
        json: serde_json::to_vec(message).expect("encode"),
        to_incarnation,
    }
}

fn vote_from(candidate: NodeId, to_incarnation: u64) -> RaftPayload {
    let request: VoteRequest<NodeId> = VoteRequest {
        vote: Vote::new(1, candidate),
        last_log_id: None,
    };
    payload(&request, to_incarnation)
}

/// Sends a vote from `candidate` over `channel`, if it connected; why not
/// when either failed.
async fn try_vote(
    channel: Result<tonic::transport::Channel, String>,
    candidate: NodeId,
    to_incarnation: u64,
) -> Result<(), String> {
    RaftClient::new(channel?)
        .vote(vote_from(candidate, to_incarnation))
        .await
        .map(drop)
        .map_err(|s| s.to_string())
}

/// Requires `answer`, to a call made in another member's name, to be a
/// refusal; returns it.
#[track_caller]
fn denied<T: std::fmt::Debug>(answer: Result<T, tonic::Status>, what: &str) -> tonic::Status {
    let status = answer.expect_err(what);
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_members_speak_raft_and_each_only_as_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("raftgres test cluster");
    let mut members = BTreeMap::new();
    let mut voters = BTreeMap::new();
    let mut certs = BTreeMap::new();
    let mut listeners = Vec::new();
    for id in [1, 2, 3] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        voters.insert(id, listener.local_addr().expect("addr").to_string());
        listeners.push((id, listener));
    }
    for (id, listener) in listeners {
        let tls = ca.member(id);
        members.insert(
            id,
            start(dir.path(), id, &tls, listener, incoming::Limits::default()).await,
        );
        certs.insert(id, tls);
    }
    for member in members.values() {
        bounded("initialize", SETTLE, member.initialize(&voters))
            .await
            .expect("initialize");
    }
    // The group forms and commits over mutual TLS.
    let leader = eventually("a leader", SETTLE, || {
        members.values().find_map(|m| {
            let s = m.status();
            s.is_leader.then_some(s.node_id)
        })
    })
    .await;
    commit_through_any(&members, &member_command(1)).await;

    let target = if leader == 1 { 2 } else { 1 };
    let addr = &voters[&target];
    let incarnation = members[&target].incarnation();

    // No certificate, or one from another CA: no connection at all.
    let without = try_vote(channel(addr, &ca, None).await, 3, incarnation).await;
    assert!(without.is_err(), "a caller without a certificate got in");
    let stranger = Ca::new("another cluster").member(3);
    let foreign = try_vote(channel(addr, &ca, Some(&stranger)).await, 3, incarnation).await;
    assert!(
        foreign.is_err(),
        "a certificate from another CA got in: {foreign:?}"
    );

    // A member's certificate, speaking for another member: refused.
    let impostor = if target == 3 { 2 } else { 3 };
    let other = *[1, 2, 3]
        .iter()
        .find(|id| **id != target && **id != impostor)
        .expect("a third member");
    let channel = channel(addr, &ca, Some(&certs[&impostor]))
        .await
        .expect("a member connects");
    let mut raft = RaftClient::new(channel.clone());
    let status = denied(
        raft.vote(vote_from(other, incarnation)).await,
        "a vote in another member's name",
    );
    assert!(
        status
            .message()
            .contains(&format!("does not name member {other}")),
        "{status}"
    );
    let append: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
        vote: Vote::new_committed(1, other),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    denied(
        raft.append_entries(payload(&append, incarnation)).await,
        "an append in another member's name",
    );
    let chunk: InstallSnapshotRequest<TypeConfig> = InstallSnapshotRequest {
        vote: Vote::new_committed(1, other),
        meta: SnapshotMeta {
            last_log_id: None,
            last_membership: StoredMembership::default(),
            snapshot_id: "forged".into(),
        },
        offset: 0,
        data: vec![],
        done: false,
    };
    denied(
        raft.install_snapshot(payload(&chunk, incarnation)).await,
        "a snapshot in another member's name",
    );
    let join = JoinRequest {
        node_id: 9,
        raft_addr: "127.0.0.1:9".into(),
        incarnation: 77,
    };
    denied(
        ClusterClient::new(channel).join(join).await,
        "a join in another id's name",
    );
    // As itself, its vote reaches Raft (and is answered, not refused).
    let own = raft.vote(vote_from(impostor, incarnation)).await;
    assert!(own.is_ok(), "a member's vote as itself: {own:?}");

    // The group still commits.
    commit_through_any(&members, &member_command(2)).await;
}

/// Whether the server closed `socket`, within `within`.
async fn closed(socket: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1];
    matches!(
        tokio::time::timeout(within, socket.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_cannot_take_the_raft_port_from_the_members() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("raftgres test cluster");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let tls = ca.member(1);
    let limits = incoming::Limits {
        handshake_timeout: Duration::from_secs(1),
        max_connections: 64,
        max_connections_per_address: 16,
    };
    let member = start(dir.path(), 1, &tls, listener, limits).await;
    bounded(
        "initialize",
        SETTLE,
        member.initialize(&BTreeMap::from([(1, addr.clone())])),
    )
    .await
    .expect("initialize");

    // 100 sockets from one address that never start a handshake.
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    // The member, from another address, still gets through.
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .tls_config(tls.client_config())
        .expect("client TLS")
        .local_address(Some("127.0.0.2".parse().expect("address")))
        .connect_timeout(Duration::from_secs(2));
    let vote = async {
        let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"));
        try_vote(channel, 1, member.incarnation()).await
    };
    let vote = bounded("a member's call during the flood", SETTLE, vote).await;
    assert!(vote.is_ok(), "a member's call during the flood: {vote:?}");

    // Beyond its share the flood is closed at once, and the rest once the
    // handshake time is up: none holds a descriptor of the member for long.
    let mut open = 0;
    for socket in &mut flood {
        if !closed(socket, Duration::from_millis(50)).await {
            open += 1;
        }
    }
    assert!(open <= 16, "{open} idle sockets from one address are held");
    for (i, socket) in flood.iter_mut().enumerate() {
        assert!(
            closed(socket, Duration::from_secs(5)).await,
            "idle socket {i} is still open after the handshake time"
        );
    }
}
