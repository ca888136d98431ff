//! Group commit: concurrent ingest requests hand their rows to one writer
//! task, which takes everything waiting at that moment (up to a limit) and
//! commits it in ONE transaction, one disk flush. Each caller gets its own
//! result only after that commit returns, so the 200 still follows the
//! flush — durability without a flush per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{DynStore, Inserted, NewRequest, StoreError, StoreResult};

type Reply = oneshot::Sender<StoreResult<Vec<Inserted>>>;

#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::Sender<(NewRequest, Reply)>,
    stats: Arc<Stats>,
}

/// Commits and rows, so tests and benchmarks can see the grouping work.
#[derive(Debug, Default)]
pub struct Stats {
    pub commits: AtomicU64,
    pub requests: AtomicU64,
}

impl GroupCommitter {
    /// Spawn the writer task. It ends when every `GroupCommitter` clone is
    /// dropped, after committing what it already took.
    pub fn spawn(store: DynStore, max_batch: usize) -> GroupCommitter {
        let max_batch = max_batch.max(1);
        let (tx, mut rx) = mpsc::channel::<(NewRequest, Reply)>(max_batch * 4);
        let stats = Arc::new(Stats::default());
        let task_stats = stats.clone();
        tokio::spawn(async move {
            let mut waiting: Vec<(NewRequest, Reply)> = Vec::with_capacity(max_batch);
            while let Some(first) = rx.recv().await {
                waiting.push(first);
                while waiting.len() < max_batch {
                    match rx.try_recv() {
                        Ok(next) => waiting.push(next),
                        Err(_) => break,
                    }
                }
                let (requests, replies): (Vec<NewRequest>, Vec<Reply>) = waiting.drain(..).unzip();
                let result = store.insert_requests(&requests).await;
                task_stats.commits.fetch_add(1, Ordering::Relaxed);
                task_stats
                    .requests
                    .fetch_add(requests.len() as u64, Ordering::Relaxed);
                match result {
                    Ok(outcomes) => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, rows = requests.len(), "group commit failed");
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        GroupCommitter { tx, stats }
    }

    /// Durably insert one request; resolves after its group's commit.
    pub async fn insert(&self, request: NewRequest) -> StoreResult<Vec<Inserted>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((request, reply))
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }
}
