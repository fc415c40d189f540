//! What a peer (or anyone who reaches the Raft port) can send: the gRPC
//! messages of `proto/raftgres.proto`, decoded as tonic decodes them, then
//! the JSON they carry decoded as the consensus crate decodes it, then the
//! bounds check it applies before openraft sees the message
//! (`raftgres_consensus::transport::bounds`).
//!
//! It never panics; a message within bounds leaves openraft room to add one
//! to every term and index; and whatever decodes encodes back to the same
//! bytes' meaning (a message this member writes, another reads alike).
//!
//! The first byte picks the message; the rest is the protobuf encoding. The
//! rest is also read as the JSON payload directly, so the fuzzer does not
//! have to find the protobuf framing before it reaches the JSON. Two more
//! kinds build the Raft requests from the bytes, with terms, indexes and
//! offsets drawn near the bounds, and send them through JSON: a fuzzer
//! mutating JSON text rarely writes a 19-digit number.

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, SnapshotMeta, StoredMembership, Vote,
};
use prost::Message;
use raftgres_consensus::transport::bounds::{MAX_NUMBER, MAX_SNAPSHOT_BYTES, WithinBounds};
use raftgres_consensus::types::{NodeId, TypeConfig};
use raftgres_proto::v1::{
    AddMemberRequest, JoinRequest, ProposeReply, ProposeRequest, RaftPayload, ReadStateReply,
    RemoveMemberRequest,
};
use raftgres_state::{ClusterState, Command, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 9 {
        0 => raft_payload(rest, |json| {
            if let Some(request) = json_message::<VoteRequest<NodeId>>(json) {
                vote_request_bounds(&request);
            }
        }),
        1 => raft_payload(rest, |json| {
            if let Some(request) = json_message::<AppendEntriesRequest<TypeConfig>>(json) {
                append_request_bounds(&request);
            }
        }),
        2 => raft_payload(rest, |json| {
            if let Some(request) = json_message::<InstallSnapshotRequest<TypeConfig>>(json) {
                snapshot_request_bounds(&request);
            }
        }),
        // The replies a peer sends back, as the client side reads them.
        3 => raft_payload(rest, |json| {
            let _ = json_message::<Result<VoteResponse<NodeId>, RaftError<NodeId>>>(json)
                .and_then(Result::ok)
                .map(|reply| {
                    if reply.within_bounds().is_ok() {
                        vote(&reply.vote);
                        log_id(reply.last_log_id.as_ref());
                    }
                });
            let _ = json_message::<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>>(json)
                .and_then(Result::ok)
                .map(|reply| {
                    if reply.within_bounds().is_ok() {
                        match &reply {
                            AppendEntriesResponse::HigherVote(v) => vote(v),
                            AppendEntriesResponse::PartialSuccess(l) => log_id(l.as_ref()),
                            _ => {}
                        }
                    }
                });
            let _ = json_message::<
                Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
            >(json)
            .and_then(Result::ok)
            .map(|reply| {
                if reply.within_bounds().is_ok() {
                    vote(&reply.vote);
                }
            });
        }),
        4 => {
            if let Some(request) = protobuf::<ProposeRequest>(rest) {
                proposed(&request.command_json);
            }
            proposed(rest);
        }
        5 => {
            if let Some(reply) = protobuf::<ReadStateReply>(rest) {
                json_message::<ClusterState>(&reply.state_json);
            }
            json_message::<ClusterState>(rest);
            if let Some(reply) = protobuf::<ProposeReply>(rest) {
                json_message::<Response>(&reply.response_json);
            }
        }
        6 => {
            protobuf::<AddMemberRequest>(rest);
            protobuf::<RemoveMemberRequest>(rest);
        }
        7 => {
            protobuf::<JoinRequest>(rest);
        }
        _ => {
            let _ = built(&mut Unstructured::new(rest));
        }
    }
});

/// A term, index or offset: mostly near the bound or the end of the range.
fn near_bounds(u: &mut Unstructured) -> arbitrary::Result<u64> {
    Ok(match u.int_in_range(0..=6)? {
        0 => u.int_in_range(0..=1000)?,
        1 => MAX_NUMBER,
        2 => MAX_NUMBER + 1,
        3 => u64::MAX - u.int_in_range(0..=2)?,
        4 => MAX_SNAPSHOT_BYTES - u.int_in_range(0..=2)?,
        _ => u.arbitrary()?,
    })
}

fn built_vote(u: &mut Unstructured) -> arbitrary::Result<Vote<NodeId>> {
    let (term, node) = (near_bounds(u)?, u.int_in_range(1..=3)?);
    Ok(if u.arbitrary()? {
        Vote::new_committed(term, node)
    } else {
        Vote::new(term, node)
    })
}

fn built_log_id(u: &mut Unstructured) -> arbitrary::Result<Option<LogId<NodeId>>> {
    if u.ratio(1, 4)? {
        return Ok(None);
    }
    let leader = CommittedLeaderId::new(near_bounds(u)?, u.int_in_range(1..=3)?);
    Ok(Some(LogId::new(leader, near_bounds(u)?)))
}

/// A request built from the bytes, checked after a trip through JSON.
fn built(u: &mut Unstructured) -> arbitrary::Result<()> {
    match u.int_in_range(0..=2)? {
        0 => {
            let request = VoteRequest {
                vote: built_vote(u)?,
                last_log_id: built_log_id(u)?,
            };
            if let Some(request) = json_message(&serde_json::to_vec(&request).unwrap()) {
                vote_request_bounds(&request);
            }
        }
        1 => {
            let mut entries = Vec::new();
            for _ in 0..u.int_in_range(0..=3)? {
                if let Some(log_id) = built_log_id(u)? {
                    entries.push(Entry {
                        log_id,
                        payload: EntryPayload::Blank,
                    });
                }
            }
            let request = AppendEntriesRequest::<TypeConfig> {
                vote: built_vote(u)?,
                prev_log_id: built_log_id(u)?,
                entries,
                leader_commit: built_log_id(u)?,
            };
            if let Some(request) = json_message(&serde_json::to_vec(&request).unwrap()) {
                append_request_bounds(&request);
            }
        }
        _ => {
            let request = InstallSnapshotRequest::<TypeConfig> {
                vote: built_vote(u)?,
                meta: SnapshotMeta {
                    last_log_id: built_log_id(u)?,
                    last_membership: StoredMembership::default(),
                    snapshot_id: u.arbitrary()?,
                },
                offset: near_bounds(u)?,
                data: vec![0; u.int_in_range(0..=4)?],
                done: u.arbitrary()?,
            };
            if let Some(request) = json_message(&serde_json::to_vec(&request).unwrap()) {
                snapshot_request_bounds(&request);
            }
        }
    }
    Ok(())
}

/// Decodes as tonic's prost codec does; what decodes must encode to bytes
/// that decode to the same message.
fn protobuf<M: Message + Default + PartialEq>(bytes: &[u8]) -> Option<M> {
    let message = M::decode(bytes).ok()?;
    let again = M::decode(message.encode_to_vec().as_slice()).expect("re-encoded message decodes");
    assert!(again == message, "a protobuf message does not round-trip");
    Some(message)
}

fn raft_payload(bytes: &[u8], check: impl Fn(&[u8])) {
    if let Some(payload) = protobuf::<RaftPayload>(bytes) {
        check(&payload.json);
    }
    check(bytes);
}

/// Decodes as the consensus crate's transport does (`serde_json`); what
/// decodes must serialize to JSON that decodes to the same JSON again.
fn json_message<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Option<T> {
    let message: T = serde_json::from_slice(bytes).ok()?;
    let written = serde_json::to_vec(&message).expect("a decoded message serializes");
    let read: T = serde_json::from_slice(&written).expect("a written message reads back");
    let rewritten = serde_json::to_vec(&read).expect("a decoded message serializes");
    assert_eq!(written, rewritten, "a Raft message does not round-trip");
    Some(message)
}

/// A proposed command, as `Cluster/Propose` decodes it, applied to an
/// empty state as the leader would (the apply target explores deeper).
fn proposed(json: &[u8]) {
    if let Some(command) = json_message::<Command>(json) {
        let _ = ClusterState::default().apply(&command);
    }
}

/// openraft adds one to terms and indexes it accepts: that must not
/// overflow for anything the bounds check let through.
fn number(n: u64) {
    assert!(n <= MAX_NUMBER, "{n} passed the bounds check");
    assert!(n.checked_add(1).is_some());
}

fn vote(v: &Vote<NodeId>) {
    number(v.leader_id.term);
}

fn log_id(l: Option<&LogId<NodeId>>) {
    if let Some(l) = l {
        number(l.leader_id.term);
        number(l.index);
    }
}

fn vote_request_bounds(request: &VoteRequest<NodeId>) {
    if request.within_bounds().is_ok() {
        vote(&request.vote);
        log_id(request.last_log_id.as_ref());
    }
}

fn append_request_bounds(request: &AppendEntriesRequest<TypeConfig>) {
    if request.within_bounds().is_ok() {
        vote(&request.vote);
        log_id(request.prev_log_id.as_ref());
        log_id(request.leader_commit.as_ref());
        for entry in &request.entries {
            log_id(Some(&entry.log_id));
        }
    }
}

fn snapshot_request_bounds(request: &InstallSnapshotRequest<TypeConfig>) {
    if request.within_bounds().is_ok() {
        vote(&request.vote);
        log_id(request.meta.last_log_id.as_ref());
        let end = request.offset.checked_add(request.data.len() as u64);
        assert!(
            end.is_some_and(|end| end <= MAX_SNAPSHOT_BYTES),
            "a snapshot chunk beyond the limit passed the bounds check"
        );
    }
}
