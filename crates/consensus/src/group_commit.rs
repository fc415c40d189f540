//! Group commit: the commands proposed while the leader's log append waits
//! for its fsync go into the next log entry together.
//!
//! openraft 0.9 appends and fsyncs each client write on its own, one after
//! the other, in its core task. With every fsync taking 400 ms the leader
//! committed 2.5 commands a second however many were waiting; every member
//! publishes its status as its WAL position moves, so the primary's lease
//! renewals queued behind those until the deadline passed and it was fenced.
//! Gathering the waiting commands into one entry, and appending the next
//! entry only once the last one is answered, makes a slow disk cost each
//! command at most two fsyncs of latency (the one in progress, then its
//! own) at any rate of proposals.

use crate::store::FlushProgress;
use crate::timeout::OperationTimeout;
use crate::types::{Node, NodeId, Proposal, Raft};
use openraft::error::{ClientWriteError, Fatal, RaftError};
use raftgres_state::{Command, Response};
use tokio::sync::{mpsc, oneshot};

/// The most commands one entry carries: a backlog drains in a few entries
/// without making any one of them large.
const MAX_BATCH: usize = 256;

pub(crate) type Reply = Result<Response, RaftError<NodeId, ClientWriteError<NodeId, Node>>>;

struct Pending {
    command: Command,
    reply: oneshot::Sender<Reply>,
}

/// The way in for every client write of this member.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::UnboundedSender<Pending>,
}

impl GroupCommit {
    /// `answer_bound`: how long a proposer waits for its command.
    pub(crate) fn start(raft: Raft, flush: FlushProgress, answer_bound: OperationTimeout) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, flush, answer_bound, pending));
        Self { queue }
    }

    /// Writes `command` in the next entry and returns how it applied, or
    /// openraft's error for the entry (`ForwardToLeader` on a follower).
    pub(crate) async fn write(&self, command: Command) -> Reply {
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Pending { command, reply }).is_err() {
            return Err(RaftError::Fatal(Fatal::Stopped));
        }
        answer
            .await
            .unwrap_or(Err(RaftError::Fatal(Fatal::Stopped)))
    }
}

async fn run(
    raft: Raft,
    flush: FlushProgress,
    answer_bound: OperationTimeout,
    mut queue: mpsc::UnboundedReceiver<Pending>,
) {
    let mut flushes = flush.subscribe();
    while let Some(first) = queue.recv().await {
        // What arrives while an append is flushed joins this entry. An
        // error means the log store is gone; the write below then fails.
        let _ = flushes.wait_for(Option::is_none).await;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        // A proposer that gave up (its operation timed out) is not waiting
        // for its command: leave it out rather than commit it unseen.
        let (commands, replies): (Vec<Command>, Vec<oneshot::Sender<Reply>>) = batch
            .into_iter()
            .filter(|p| !p.reply.is_closed())
            .map(|p| (p.command, p.reply))
            .unzip();
        if commands.is_empty() {
            continue;
        }
        let receiver = match raft.client_write_ff(Proposal::Batch(commands)).await {
            Ok(receiver) => receiver,
            Err(fatal) => {
                for reply in replies {
                    let _ = reply.send(Err(RaftError::Fatal(fatal.clone())));
                }
                continue;
            }
        };
        let (answered, answered_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            match receiver.await {
                Ok(Ok(written)) if written.data.len() == replies.len() => {
                    for (reply, response) in replies.into_iter().zip(written.data) {
                        let _ = reply.send(Ok(response));
                    }
                }
                Ok(Ok(written)) => {
                    tracing::error!(
                        commands = replies.len(),
                        responses = written.data.len(),
                        "an entry applied with a response count unlike its command count"
                    );
                    for reply in replies {
                        let _ = reply.send(Err(RaftError::Fatal(Fatal::Panicked)));
                    }
                }
                Ok(Err(e)) => {
                    for reply in replies {
                        let _ = reply.send(Err(RaftError::APIError(e.clone())));
                    }
                }
                Err(_) => {
                    for reply in replies {
                        let _ = reply.send(Err(RaftError::Fatal(Fatal::Stopped)));
                    }
                }
            }
            let _ = answered.send(());
        });
        // Until this entry is answered; the next one gathers meanwhile.
        // Submitted at once, the next entry's append would hold openraft's
        // core in its fsync while this entry's acknowledgements wait to be
        // counted, adding a whole flush to this entry's commit. Bounded, so
        // an entry that cannot commit (no majority) holds back the ones after
        // it no longer than a proposer waits for it.
        let _ = tokio::time::timeout(answer_bound.get(), answered_rx).await;
    }
}
