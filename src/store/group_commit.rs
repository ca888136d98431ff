//! Group commit: concurrent ingest requests hand their rows to one writer
//! task, which takes everything waiting at that moment (up to a limit) and
//! commits it in ONE transaction, one disk flush. Each caller gets its own
//! result only after that commit returns, so the 200 still follows the
//! flush — durability without a flush per request.
//!
//! On a backend with a single writer (SQLite) the queue's claims and
//! completions go through the same writer and ride in the same
//! transactions: one writer and one flush for ingest and processing
//! together, instead of the queue's transactions taking turns with the
//! group commit, each with a flush of its own. Elsewhere they go straight
//! to the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use crate::telemetry::metrics as m;

use super::{
    ClaimRequest, Claimed, CompleteBatch, Completed, DynStore, GroupOutcome, Inserted, NewRequest,
    StoreError, StoreResult, WriteGroup,
};

/// One caller's write, and where its result goes.
enum Op {
    Insert(NewRequest, oneshot::Sender<StoreResult<Vec<Inserted>>>),
    Complete(CompleteBatch, oneshot::Sender<StoreResult<()>>),
    Claim(ClaimRequest, oneshot::Sender<StoreResult<Vec<Claimed>>>),
}

#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::Sender<Op>,
    store: DynStore,
    stats: Arc<Stats>,
}

/// Commits and rows, so tests and benchmarks can see the grouping work.
#[derive(Debug, Default)]
pub struct Stats {
    pub commits: AtomicU64,
    pub requests: AtomicU64,
    /// Queue writes (claims and completions) that shared a commit.
    pub queue_ops: AtomicU64,
}

/// Queue writes taken into one group besides `max_batch` requests: a few
/// per worker is plenty, and the bound keeps one group's query small.
const MAX_QUEUE_OPS: usize = 64;

fn stopped() -> StoreError {
    StoreError::Unavailable("the writer has stopped".into())
}

impl GroupCommitter {
    /// Spawn one writer task. It ends when every `GroupCommitter` clone is
    /// dropped, after committing what it already took. A commit still
    /// running after `timeout` is dropped (and with it, its connection):
    /// its requests get 503, which is honest even if the database did
    /// commit — a sender's retry is then a duplicate.
    pub fn spawn(store: DynStore, max_batch: usize, timeout: Duration) -> GroupCommitter {
        GroupCommitter::spawn_writers(store, max_batch, 1, timeout)
    }

    /// `spawn` with up to `writers` groups committing at once (at least
    /// one; exactly one on a single-writer backend). Each writer takes what
    /// is waiting when it is free, so while one group waits for its flush
    /// the next is already being written.
    pub fn spawn_writers(
        store: DynStore,
        max_batch: usize,
        writers: usize,
        timeout: Duration,
    ) -> GroupCommitter {
        let max_batch = max_batch.max(1);
        let writers = if store.single_writer() {
            1
        } else {
            writers.max(1)
        };
        let (tx, rx) = mpsc::channel::<Op>(max_batch * 4);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let stats = Arc::new(Stats::default());
        for _ in 0..writers {
            tokio::spawn(run_writer(
                store.clone(),
                rx.clone(),
                stats.clone(),
                max_batch,
                timeout,
            ));
        }
        GroupCommitter { tx, store, stats }
    }

    async fn send<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> Op,
    ) -> StoreResult<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(op(reply)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Durably insert one request; resolves after its group's commit.
    pub async fn insert(&self, request: NewRequest) -> StoreResult<Vec<Inserted>> {
        self.send(|reply| Op::Insert(request, reply)).await
    }

    /// `Store::claim`, in the writer's next group on a single-writer
    /// backend.
    pub async fn claim(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<Claimed>> {
        if !self.store.single_writer() {
            return self.store.claim(now_ms, lease_until_ms, limit).await;
        }
        let claim = ClaimRequest {
            now_ms,
            lease_until_ms,
            limit,
        };
        self.send(|reply| Op::Claim(claim, reply)).await
    }

    /// `Store::complete_many`, in the writer's next group on a
    /// single-writer backend.
    pub async fn complete_many(&self, done: Vec<Completed>, now_ms: i64) -> StoreResult<()> {
        if done.is_empty() {
            return Ok(());
        }
        if !self.store.single_writer() {
            return self.store.complete_many(&done, now_ms).await;
        }
        self.send(|reply| Op::Complete(CompleteBatch { done, now_ms }, reply))
            .await
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }
}

/// One writer: take the first op waiting and everything queued behind it
/// (up to the limits), commit them as one group, answer each caller.
/// Ends when every `GroupCommitter` clone is dropped and the queue is
/// empty.
async fn run_writer(
    store: DynStore,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Op>>>,
    task_stats: Arc<Stats>,
    max_batch: usize,
    timeout: Duration,
) {
    let mut waiting: Vec<Op> = Vec::with_capacity(max_batch);
    loop {
        let (mut requests, mut queue_ops) = (0usize, 0usize);
        let count = |op: &Op, requests: &mut usize, queue_ops: &mut usize| match op {
            Op::Insert(..) => *requests += 1,
            _ => *queue_ops += 1,
        };
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            count(&first, &mut requests, &mut queue_ops);
            waiting.push(first);
            while requests < max_batch && queue_ops < MAX_QUEUE_OPS {
                match rx.try_recv() {
                    Ok(next) => {
                        count(&next, &mut requests, &mut queue_ops);
                        waiting.push(next);
                    }
                    Err(_) => break,
                }
            }
        }
        let mut group = WriteGroup::default();
        let mut insert_replies = Vec::with_capacity(requests);
        let mut complete_replies = Vec::new();
        let mut claim_replies = Vec::new();
        for op in waiting.drain(..) {
            match op {
                Op::Insert(r, reply) => {
                    group.requests.push(r);
                    insert_replies.push(reply);
                }
                Op::Complete(c, reply) => {
                    group.completes.push(c);
                    complete_replies.push(reply);
                }
                Op::Claim(c, reply) => {
                    group.claims.push(c);
                    claim_replies.push(reply);
                }
            }
        }
        // A panic below must not kill the writer: every later
        // request would then be refused until a restart. It fails
        // this group (503, nothing acknowledged) and the writer
        // goes on.
        let commit = AssertUnwindSafe(store.write_group(&group)).catch_unwind();
        let failed = |e: StoreError| GroupOutcome {
            inserted: Err(e.clone()),
            completes: group.completes.iter().map(|_| Err(e.clone())).collect(),
            claims: group.claims.iter().map(|_| Err(e.clone())).collect(),
        };
        let outcome = match tokio::time::timeout(timeout, commit).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => failed(StoreError::Unavailable(
                "the storage writer panicked".into(),
            )),
            Err(_) => failed(StoreError::Unavailable(format!(
                "the commit did not finish within {} ms",
                timeout.as_millis()
            ))),
        };
        task_stats.commits.fetch_add(1, Ordering::Relaxed);
        task_stats
            .requests
            .fetch_add(group.requests.len() as u64, Ordering::Relaxed);
        task_stats
            .queue_ops
            .fetch_add(queue_ops as u64, Ordering::Relaxed);
        metrics::counter!(m::GROUP_COMMITS).increment(1);
        metrics::counter!(m::GROUP_COMMIT_REQUESTS).increment(group.requests.len() as u64);
        metrics::counter!(m::GROUP_COMMIT_QUEUE_WRITES).increment(queue_ops as u64);
        match outcome.inserted {
            Ok(inserted) if inserted.len() == insert_replies.len() => {
                for (reply, outcome) in insert_replies.into_iter().zip(inserted) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Ok(_) => {
                // A backend bug; never acknowledge on a guess.
                let e = StoreError::Unavailable("the writer lost track of a batch".into());
                for reply in insert_replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                if !insert_replies.is_empty() {
                    tracing::warn!(error = %e, rows = insert_replies.len(), "group commit failed");
                }
                for reply in insert_replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        let mut completes = outcome.completes.into_iter();
        for reply in complete_replies {
            let _ = reply.send(completes.next().unwrap_or_else(|| Err(stopped())));
        }
        let mut claims = outcome.claims.into_iter();
        for reply in claim_replies {
            let _ = reply.send(claims.next().unwrap_or_else(|| Err(stopped())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{DeliveryStatus, NewDelivery, Store};
    use async_trait::async_trait;
    use std::sync::Mutex;
    use tokio::sync::Semaphore;

    /// The real SQLite store, with a gate that holds the first commit open
    /// so the test can queue requests behind it, and a log of batch sizes.
    struct Gated {
        inner: SqliteStore,
        gate: Semaphore,
        entered: AtomicU64,
        sizes: Mutex<Vec<usize>>,
        panic_once: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl Store for Gated {
        async fn insert_requests(&self, batch: &[NewRequest]) -> StoreResult<Vec<Vec<Inserted>>> {
            if self.panic_once.swap(false, Ordering::SeqCst) {
                panic!("injected fault");
            }
            self.entered.fetch_add(1, Ordering::SeqCst);
            self.sizes.lock().unwrap().push(batch.len());
            let _permit = self.gate.acquire().await.unwrap();
            self.inner.insert_requests(batch).await
        }
        async fn claim(&self, a: i64, b: i64, c: u32) -> StoreResult<Vec<super::super::Claimed>> {
            self.inner.claim(a, b, c).await
        }
        async fn complete_many(&self, a: &[super::super::Completed], b: i64) -> StoreResult<()> {
            self.inner.complete_many(a, b).await
        }
        async fn fail(
            &self,
            a: &str,
            b: i64,
            c: &str,
            d: super::super::Retry,
            e: i64,
        ) -> StoreResult<()> {
            self.inner.fail(a, b, c, d, e).await
        }
        async fn record_rejections(&self, a: &[super::super::Rejection]) -> StoreResult<()> {
            self.inner.record_rejections(a).await
        }
        async fn list_events(
            &self,
            a: i64,
            b: &[crate::catalog::TypePattern],
            c: u32,
        ) -> StoreResult<Vec<super::super::StoredEvent>> {
            self.inner.list_events(a, b, c).await
        }
        async fn get_event(&self, a: &str) -> StoreResult<Option<super::super::StoredEvent>> {
            self.inner.get_event(a).await
        }
        async fn get_delivery(&self, a: &str) -> StoreResult<Option<super::super::DeliveryRecord>> {
            self.inner.get_delivery(a).await
        }
        async fn list_deliveries(
            &self,
            a: &super::super::DeliveryFilter,
            b: Option<&super::super::Position>,
            c: u32,
        ) -> StoreResult<Vec<super::super::DeliveryRecord>> {
            self.inner.list_deliveries(a, b, c).await
        }
        async fn delivery_request(
            &self,
            a: &str,
        ) -> StoreResult<Option<super::super::RequestRecord>> {
            self.inner.delivery_request(a).await
        }
        async fn delivery_attempts(
            &self,
            a: &str,
        ) -> StoreResult<Vec<super::super::AttemptRecord>> {
            self.inner.delivery_attempts(a).await
        }
        async fn delivery_events(&self, a: &str) -> StoreResult<Vec<(String, String)>> {
            self.inner.delivery_events(a).await
        }
        async fn list_rejections(
            &self,
            a: &super::super::RejectionFilter,
            b: Option<&super::super::Position>,
            c: u32,
        ) -> StoreResult<Vec<super::super::RejectionRecord>> {
            self.inner.list_rejections(a, b, c).await
        }
        async fn get_rejection(
            &self,
            a: &str,
        ) -> StoreResult<Option<(super::super::RejectionRecord, Option<Vec<u8>>)>> {
            self.inner.get_rejection(a).await
        }
        async fn recover_leases(&self, a: i64) -> StoreResult<u64> {
            self.inner.recover_leases(a).await
        }
        async fn sink_lease(&self, a: &str, b: &str, c: i64, d: i64) -> StoreResult<Option<i64>> {
            self.inner.sink_lease(a, b, c, d).await
        }
        async fn advance_sink(&self, a: &str, b: &str, c: i64) -> StoreResult<bool> {
            self.inner.advance_sink(a, b, c).await
        }
        async fn release_sink(&self, a: &str, b: &str) -> StoreResult<()> {
            self.inner.release_sink(a, b).await
        }
        async fn upsert_config_subscriptions(
            &self,
            a: &[crate::store::NewSubscription],
            b: i64,
        ) -> StoreResult<()> {
            self.inner.upsert_config_subscriptions(a, b).await
        }
        async fn create_subscription(
            &self,
            a: &crate::store::NewSubscription,
            b: i64,
        ) -> StoreResult<bool> {
            self.inner.create_subscription(a, b).await
        }
        async fn list_subscriptions(&self) -> StoreResult<Vec<crate::store::SubscriptionRecord>> {
            self.inner.list_subscriptions().await
        }
        async fn get_subscription(
            &self,
            a: &str,
        ) -> StoreResult<Option<crate::store::SubscriptionRecord>> {
            self.inner.get_subscription(a).await
        }
        async fn set_subscription_status(
            &self,
            a: &str,
            b: crate::store::SubscriptionStatus,
            c: Option<&str>,
            d: i64,
        ) -> StoreResult<bool> {
            self.inner.set_subscription_status(a, b, c, d).await
        }
        async fn delete_subscription(&self, a: &str) -> StoreResult<bool> {
            self.inner.delete_subscription(a).await
        }
        async fn rotate_subscription_secret(
            &self,
            a: &str,
            b: &secrecy::SecretString,
            c: i64,
            d: i64,
        ) -> StoreResult<bool> {
            self.inner.rotate_subscription_secret(a, b, c, d).await
        }
        async fn enqueue_messages(&self, a: &[crate::store::NewMessage]) -> StoreResult<u64> {
            self.inner.enqueue_messages(a).await
        }
        async fn claim_messages(
            &self,
            a: i64,
            b: i64,
            c: u32,
        ) -> StoreResult<Vec<crate::store::ClaimedMessage>> {
            self.inner.claim_messages(a, b, c).await
        }
        async fn finish_message(
            &self,
            a: &crate::store::PushAttempt,
            b: i64,
        ) -> StoreResult<crate::store::FailureStreak> {
            self.inner.finish_message(a, b).await
        }
        async fn disable_subscription(
            &self,
            a: &str,
            b: &str,
            c: &crate::store::NewEvent,
            d: i64,
        ) -> StoreResult<bool> {
            self.inner.disable_subscription(a, b, c, d).await
        }
        async fn list_messages(
            &self,
            a: &str,
            b: Option<&str>,
            c: Option<i64>,
            d: u32,
        ) -> StoreResult<Vec<crate::store::MessageRecord>> {
            self.inner.list_messages(a, b, c, d).await
        }
        async fn list_push_attempts(
            &self,
            a: &str,
            b: Option<&str>,
            c: Option<i64>,
            d: u32,
        ) -> StoreResult<Vec<crate::store::PushAttemptRecord>> {
            self.inner.list_push_attempts(a, b, c, d).await
        }
        async fn purge_push_messages(&self, a: i64, b: u32) -> StoreResult<u64> {
            self.inner.purge_push_messages(a, b).await
        }
        async fn replay_messages(&self, a: &str, b: Option<&str>, c: i64) -> StoreResult<u64> {
            self.inner.replay_messages(a, b, c).await
        }
        async fn requeue(
            &self,
            a: &str,
            b: &[DeliveryStatus],
            c: i64,
        ) -> StoreResult<super::super::Transition> {
            self.inner.requeue(a, b, c).await
        }
        async fn requeue_matching(
            &self,
            a: &super::super::DeliveryFilter,
            b: &[DeliveryStatus],
            c: i64,
            d: bool,
        ) -> StoreResult<u64> {
            self.inner.requeue_matching(a, b, c, d).await
        }
        async fn discard(
            &self,
            a: &str,
            b: &[DeliveryStatus],
            c: &str,
            d: i64,
        ) -> StoreResult<super::super::Transition> {
            self.inner.discard(a, b, c, d).await
        }
        async fn purge(
            &self,
            a: &super::super::Purge,
            b: i64,
        ) -> StoreResult<super::super::Purged> {
            self.inner.purge(a, b).await
        }
        async fn delivery_body(&self, a: &str) -> StoreResult<Option<(Vec<u8>, Option<i64>)>> {
            self.inner.delivery_body(a).await
        }
        async fn queue_stats(&self) -> StoreResult<super::super::QueueStats> {
            self.inner.queue_stats().await
        }
        async fn source_stats(&self, a: i64) -> StoreResult<Vec<super::super::SourceStats>> {
            self.inner.source_stats(a).await
        }
        async fn ping(&self) -> StoreResult<()> {
            self.inner.ping().await
        }
        async fn close(&self) {
            self.inner.close().await
        }
    }

    fn request(n: usize, event_id: &str) -> NewRequest {
        NewRequest {
            id: format!("req_{n}"),
            source: "s".into(),
            provider: "p".into(),
            received_at_ms: 1,
            remote_addr: None,
            headers_json: "{}".into(),
            body: b"{}".to_vec(),
            deliveries: vec![NewDelivery {
                id: format!("dlv_{n}"),
                item_index: None,
                provider_event_id: event_id.into(),
                provider_event_type: None,
                occurred_at_ms: None,
                status: DeliveryStatus::Pending,
                violations: None,
            }],
        }
    }

    /// A `Gated` store over a fresh SQLite file (kept while the dir lives),
    /// with `permits` commits let through and maybe one injected panic.
    async fn gated(permits: usize, panic_once: bool) -> (tempfile::TempDir, Arc<Gated>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("g.db").display());
        let store = Arc::new(Gated {
            inner: SqliteStore::open(&url).await.unwrap(),
            gate: Semaphore::new(permits),
            entered: AtomicU64::new(0),
            sizes: Mutex::new(Vec::new()),
            panic_once: std::sync::atomic::AtomicBool::new(panic_once),
        });
        (dir, store)
    }

    #[tokio::test]
    async fn group_commit_batches_requests_waiting_behind_a_commit() {
        let (_dir, store) = gated(0, false).await;
        let gc = GroupCommitter::spawn(store.clone(), 64, Duration::from_secs(30));
        let first = tokio::spawn({
            let gc = gc.clone();
            async move { gc.insert(request(0, "e0")).await }
        });
        // Wait until the writer is blocked in its first commit, then queue
        // five more behind it — one of them a duplicate of another.
        while store.entered.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (1..=5)
            .map(|n| {
                let gc = gc.clone();
                let id = if n == 5 {
                    "e1".to_string()
                } else {
                    format!("e{n}")
                };
                tokio::spawn(async move { gc.insert(request(n, &id)).await })
            })
            .collect();
        while gc.tx.max_capacity() - gc.tx.capacity() < 5 {
            tokio::task::yield_now().await;
        }
        store.gate.add_permits(100);
        let r0 = first.await.unwrap().unwrap();
        assert!(!r0[0].duplicate);
        let mut outcomes = Vec::new();
        for r in rest {
            outcomes.push(r.await.unwrap().unwrap().remove(0));
        }
        assert_eq!(
            *store.sizes.lock().unwrap(),
            vec![1, 5],
            "one commit for the five waiting"
        );
        assert_eq!(gc.stats().commits.load(Ordering::Relaxed), 2);
        // The duplicate inside one batch resolves to the first copy.
        assert!(!outcomes[0].duplicate);
        assert!(outcomes[4].duplicate);
        assert_eq!(outcomes[4].id, outcomes[0].id);
    }

    /// With two writers (a backend with concurrent writers), a second
    /// group is written while the first still waits for its commit.
    #[tokio::test]
    async fn group_commit_writers_commit_groups_side_by_side() {
        let (_dir, store) = gated(0, false).await;
        let gc = GroupCommitter::spawn_writers(store.clone(), 64, 2, Duration::from_secs(30));
        let mut inserts = Vec::new();
        for n in 0..2u64 {
            let gc_n = gc.clone();
            inserts.push(tokio::spawn(async move {
                gc_n.insert(request(n as usize, &format!("e{n}"))).await
            }));
            // The n-th group is inside a commit before the next is sent;
            // with one writer the second would wait for the gate, and
            // this would never end.
            tokio::time::timeout(Duration::from_secs(30), async {
                while store.entered.load(Ordering::SeqCst) <= n {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("a free writer took the group while the other was held");
        }
        store.gate.add_permits(100);
        for insert in inserts {
            assert!(!insert.await.unwrap().unwrap()[0].duplicate);
        }
        assert_eq!(*store.sizes.lock().unwrap(), vec![1, 1]);
    }

    #[tokio::test]
    async fn group_commit_writer_survives_a_panicking_commit() {
        let (_dir, store) = gated(100, true).await;
        let gc = GroupCommitter::spawn(store.clone(), 8, Duration::from_secs(30));
        let first = gc.insert(request(0, "e0")).await;
        assert!(
            matches!(first, Err(StoreError::Unavailable(_))),
            "{first:?}"
        );
        // Nothing was acknowledged, so the sender's retry is a new delivery.
        let retry = gc.insert(request(1, "e0")).await.unwrap();
        assert!(!retry[0].duplicate);
    }

    /// A commit that hangs (a black-holed database) is abandoned after the
    /// timeout with 503 for its requests, and the writer takes the next
    /// batch: it does not wait for the hung one.
    #[tokio::test]
    async fn group_commit_abandons_a_hung_commit_after_the_timeout() {
        // No permits: the first commit waits for ever.
        let (_dir, store) = gated(0, false).await;
        let gc = GroupCommitter::spawn(store.clone(), 8, Duration::from_millis(200));
        let hung = gc.insert(request(0, "e0")).await;
        assert!(
            matches!(&hung, Err(StoreError::Unavailable(m)) if m.contains("did not finish")),
            "{hung:?}"
        );
        store.gate.add_permits(100);
        let next = gc.insert(request(1, "e0")).await.unwrap();
        assert!(!next[0].duplicate, "the abandoned commit stored nothing");
        assert_eq!(store.entered.load(Ordering::SeqCst), 2);
    }
}
