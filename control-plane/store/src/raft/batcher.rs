//! Group commit on the leader: concurrent writes share one raft entry, hence one log append,
//! one fsync and one state-machine batch.
//!
//! openraft 0.9's core appends one entry per `client_write` and waits for that append to be
//! on disk before it takes the next message, so the log store never sees two appends to
//! sync together: 64 writers cost 64 sequential fsyncs. Here a single task queues writes
//! instead, and while up to [`MAX_IN_FLIGHT`] earlier batches are still being committed, the
//! writes that arrive wait and then leave together as one [`Command::Batch`] (a lone write
//! goes as itself, so an idle store writes exactly the entries it did before). Each write of
//! a batch still succeeds or fails on its own, at its own revision (see `state_machine.rs`).
//!
//! Submission order is arrival order, so a writer that waits for its answer before writing
//! again sees its writes applied in order.

use std::sync::Arc;

use openraft::Raft;
use openraft::error::RaftError;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::cluster::write_error;
use super::peer::ForwardError;
use super::{Command, CommandResponse, TypeConfig};

/// Batches being committed at once. One more than one so that a batch that left with only
/// the first writer (the others were a moment late) does not hold the rest back.
const MAX_IN_FLIGHT: usize = 2;
/// Writes per entry at most: bounds an entry's size (and a follower's append) while still
/// covering every client of a busy api server in one fsync.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<CommandResponse, ForwardError>>;

struct Pending {
    cmd: Command,
    reply: Reply,
}

/// The queue of writes to run on this member's raft (as leader). Cheap to share; the task
/// behind it ends when the batcher is dropped.
pub(crate) struct WriteBatcher {
    tx: mpsc::UnboundedSender<Pending>,
}

impl WriteBatcher {
    /// Start the batching task (needs a tokio runtime).
    pub(crate) fn new(raft: Raft<TypeConfig>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        WriteBatcher { tx }
    }

    /// Run `cmd` through raft with whatever other writes are waiting, and return what
    /// applying it produced. Errors as `serve_forwarded` reports them: `NotLeader` and
    /// `Unavailable` mean nothing was written, `Failed` that the outcome is unknown.
    pub(crate) async fn write(&self, cmd: Command) -> Result<CommandResponse, ForwardError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { cmd, reply })
            .map_err(|_| ForwardError::Unavailable("the store is shutting down".into()))?;
        answer.await.map_err(|_| ForwardError::Failed("raft stopped while writing".into()))?
    }
}

async fn run(raft: Raft<TypeConfig>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // Wait for a free slot before looking at the queue: what arrives meanwhile joins.
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else { return };
        // Writers woken by the previous batch's answers are usually about to write again;
        // let them run first so they catch this batch rather than the next one.
        tokio::task::yield_now().await;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (cmds, replies): (Vec<Command>, Vec<Reply>) =
            batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
        let batched = cmds.len() > 1;
        let cmd = match <[Command; 1]>::try_from(cmds) {
            Ok([only]) => only,
            Err(cmds) => Command::Batch(cmds),
        };
        match raft.client_write_ff(cmd).await {
            // Raft has stopped and did not take the entry: certainly not written.
            Err(fatal) => answer_all(replies, &Err(ForwardError::Unavailable(fatal.to_string()))),
            Ok(pending) => {
                tokio::spawn(async move {
                    let outcome = match pending.await {
                        Ok(Ok(resp)) => Ok(resp.data),
                        Ok(Err(e)) => Err(write_error(RaftError::APIError(e))),
                        Err(_) => Err(ForwardError::Failed("raft stopped while writing".into())),
                    };
                    drop(permit);
                    match outcome {
                        Ok(CommandResponse::Batch(responses)) if batched => {
                            distribute(replies, responses);
                        }
                        Ok(resp) if !batched => answer_all(replies, &Ok(resp)),
                        Ok(other) => answer_all(
                            replies,
                            &Err(ForwardError::Failed(format!(
                                "a batch of writes answered {other:?}"
                            ))),
                        ),
                        Err(e) => answer_all(replies, &Err(e)),
                    }
                });
            }
        }
    }
}

fn distribute(replies: Vec<Reply>, responses: Vec<CommandResponse>) {
    if responses.len() != replies.len() {
        let why = format!("{} answers for a batch of {} writes", responses.len(), replies.len());
        return answer_all(replies, &Err(ForwardError::Failed(why)));
    }
    for (reply, response) in replies.into_iter().zip(responses) {
        // A writer that gave up waiting is no reason to fail the others.
        let _ = reply.send(Ok(response));
    }
}

fn answer_all(replies: Vec<Reply>, outcome: &Result<CommandResponse, ForwardError>) {
    for reply in replies {
        let _ = reply.send(outcome.clone());
    }
}
