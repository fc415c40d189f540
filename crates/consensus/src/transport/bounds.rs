//! What a peer's message may carry. Honest terms grow by one per election
//! and log indexes by one per entry, so neither comes near [`MAX_NUMBER`];
//! openraft adds one to both without checking, so a message near the end of
//! the range (a vote with term `u64::MAX`) would make the next election
//! overflow and panic the Raft core, for good, since the term is stored
//! with the vote. Snapshots here are small (the cluster state), so a chunk
//! past [`MAX_SNAPSHOT_BYTES`] is a forgery that would make the receiver
//! allocate it.

use crate::types::{NodeId, TypeConfig};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{LogId, Vote};

/// The largest term or log index accepted from the wire.
pub const MAX_NUMBER: u64 = u64::MAX / 4;
/// The largest snapshot accepted from the wire, in bytes.
pub const MAX_SNAPSHOT_BYTES: u64 = 256 << 20;

fn number(what: &str, n: u64) -> Result<(), String> {
    if n > MAX_NUMBER {
        return Err(format!(
            "{what} {n} is beyond any an honest member reaches (at most {MAX_NUMBER}); refused"
        ));
    }
    Ok(())
}

fn vote(v: &Vote<NodeId>) -> Result<(), String> {
    number("term", v.leader_id.term)
}

fn log_id(l: Option<&LogId<NodeId>>) -> Result<(), String> {
    match l {
        Some(l) => {
            number("log term", l.leader_id.term)?;
            number("log index", l.index)
        }
        None => Ok(()),
    }
}

/// A message (or a reply) within the bounds an honest member keeps.
pub trait WithinBounds {
    fn within_bounds(&self) -> Result<(), String>;
}

impl WithinBounds for VoteRequest<NodeId> {
    fn within_bounds(&self) -> Result<(), String> {
        vote(&self.vote)?;
        log_id(self.last_log_id.as_ref())
    }
}

impl WithinBounds for AppendEntriesRequest<TypeConfig> {
    fn within_bounds(&self) -> Result<(), String> {
        vote(&self.vote)?;
        log_id(self.prev_log_id.as_ref())?;
        log_id(self.leader_commit.as_ref())?;
        self.entries
            .iter()
            .try_for_each(|entry| log_id(Some(&entry.log_id)))
    }
}

impl WithinBounds for InstallSnapshotRequest<TypeConfig> {
    fn within_bounds(&self) -> Result<(), String> {
        vote(&self.vote)?;
        log_id(self.meta.last_log_id.as_ref())?;
        let end = u64::try_from(self.data.len())
            .ok()
            .and_then(|len| self.offset.checked_add(len));
        match end {
            Some(end) if end <= MAX_SNAPSHOT_BYTES => Ok(()),
            _ => Err(format!(
                "a snapshot chunk at offset {} of {} bytes ends beyond {MAX_SNAPSHOT_BYTES} bytes; refused",
                self.offset,
                self.data.len()
            )),
        }
    }
}

impl WithinBounds for VoteResponse<NodeId> {
    fn within_bounds(&self) -> Result<(), String> {
        vote(&self.vote)?;
        log_id(self.last_log_id.as_ref())
    }
}

impl WithinBounds for AppendEntriesResponse<NodeId> {
    fn within_bounds(&self) -> Result<(), String> {
        match self {
            AppendEntriesResponse::HigherVote(v) => vote(v),
            AppendEntriesResponse::PartialSuccess(l) => log_id(l.as_ref()),
            AppendEntriesResponse::Success | AppendEntriesResponse::Conflict => Ok(()),
        }
    }
}

impl WithinBounds for InstallSnapshotResponse<NodeId> {
    fn within_bounds(&self) -> Result<(), String> {
        vote(&self.vote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    #[test]
    fn terms_and_indexes_near_the_end_of_the_range_are_refused() {
        let honest = VoteRequest {
            vote: Vote::new(7, 1),
            last_log_id: Some(LogId::new(CommittedLeaderId::new(6, 1), 120)),
        };
        assert_eq!(honest.within_bounds(), Ok(()));
        let forged = VoteRequest {
            vote: Vote::new(u64::MAX - 1, 1),
            ..honest.clone()
        };
        assert!(forged.within_bounds().unwrap_err().contains("term"));
        let forged = VoteRequest {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(6, 1), u64::MAX)),
            ..honest
        };
        assert!(forged.within_bounds().unwrap_err().contains("log index"));
        let reply = AppendEntriesResponse::<NodeId>::HigherVote(Vote::new(u64::MAX, 2));
        assert!(reply.within_bounds().is_err());
    }
}
