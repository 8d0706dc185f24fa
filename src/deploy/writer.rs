//! One writer per app. Every state change of an app — commit, delete of an update or a runtime,
//! rollback, promote, file collection — is a [`WriteOp`] applied by [`apply`], and a backend
//! runs `apply` for one slug at a time: in the Worker, a Durable Object per slug that holds an
//! explicit queue for the whole operation (R2 awaits would otherwise let other requests in); on
//! the host, [`LocalWriter`] with the same queue per slug. Decisions made from state read inside
//! `apply` therefore hold until its writes land. The public check path never goes through here.

use crate::deploy::api::{
    CommitRequest, CommitResponse, DeleteResponse, DeleteUpdateResponse, FormPublishResponse, PromoteRequest,
    ReleaseResponse, RollbackRequest,
};
use crate::deploy::service::{self, Ctx};
use crate::deploy::{formpublish, gc, release};
use crate::error::ApiError;
use crate::storage::layout::Target;
use crate::storage::store::ObjectStore;
use futures_util::lock::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// A state change of one app. Serializable: the Worker sends it to the app's Durable Object.
/// Externally tagged (serde's default): internally tagged enums cost far more wasm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    Commit {
        target: Target,
        request: CommitRequest,
    },
    /// A single-request publish: every platform's commit, validated before, applied in order.
    Commits {
        commits: Vec<(Target, CommitRequest)>,
    },
    Rollback {
        target: Target,
        request: RollbackRequest,
    },
    Promote {
        target: Target,
        request: PromoteRequest,
    },
    DeleteUpdate {
        target: Target,
        id: String,
    },
    DeleteRuntime {
        target: Target,
    },
    /// Collects files no record names, older than the grace period.
    CollectFiles {
        target: Target,
    },
    /// Stops serving `update_id` on `channel` if it is still served (h-rollout implements it;
    /// this stub republishes the previous update with `expectedCurrent = update_id`).
    Halt {
        target: Target,
        channel: String,
        update_id: String,
        reason: String,
    },
}

impl WriteOp {
    /// The app whose writer must apply this.
    pub fn slug(&self) -> &str {
        match self {
            WriteOp::Commit { target, .. }
            | WriteOp::Rollback { target, .. }
            | WriteOp::Promote { target, .. }
            | WriteOp::DeleteUpdate { target, .. }
            | WriteOp::DeleteRuntime { target }
            | WriteOp::CollectFiles { target }
            | WriteOp::Halt { target, .. } => &target.slug,
            WriteOp::Commits { commits } => commits.first().map_or("", |(t, _)| t.slug.as_str()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOutcome {
    Committed(CommitResponse),
    Published(FormPublishResponse),
    Released(ReleaseResponse),
    DeletedUpdate(DeleteUpdateResponse),
    DeletedRuntime(DeleteResponse),
    Collected(gc::Collected),
}

/// Applies one operation. Callers must hold the app's writer (see the module doc).
pub async fn apply<S: ObjectStore>(store: &S, op: WriteOp, ctx: &Ctx<'_>) -> Result<WriteOutcome, ApiError> {
    Ok(match op {
        WriteOp::Commit { target, request } => {
            WriteOutcome::Committed(service::commit(store, &target, request, ctx).await?)
        }
        WriteOp::Commits { commits } => WriteOutcome::Published(
            formpublish::commit_all(commits, |t, req| async move { service::commit(store, &t, req, ctx).await })
                .await?,
        ),
        WriteOp::Rollback { target, request } => {
            WriteOutcome::Released(release::rollback(store, &target, request, ctx).await?)
        }
        WriteOp::Promote { target, request } => {
            WriteOutcome::Released(release::promote(store, &target, request, ctx).await?)
        }
        WriteOp::DeleteUpdate { target, id } => {
            WriteOutcome::DeletedUpdate(service::delete_update(store, &target, &id, ctx).await?)
        }
        WriteOp::DeleteRuntime { target } => {
            WriteOutcome::DeletedRuntime(service::delete_runtime(store, &target).await?)
        }
        WriteOp::CollectFiles { target } => {
            WriteOutcome::Collected(gc::collect_files(store, &target, ctx.now_ms, gc::GRACE_MS).await?)
        }
        WriteOp::Halt { target, channel, update_id, reason } => {
            let message: String = format!("halt: {reason}").chars().take(200).collect();
            let request = RollbackRequest {
                channel: Some(channel),
                expected_current: Some(update_id),
                message: Some(message),
                ..Default::default()
            };
            WriteOutcome::Released(release::rollback(store, &target, request, ctx).await?)
        }
    })
}

/// What a backend provides to run [`WriteOp`]s: each op of one slug applied alone, in arrival
/// order.
#[allow(async_fn_in_trait)]
pub trait Writer {
    async fn write(&self, op: WriteOp, ctx: &Ctx<'_>) -> Result<WriteOutcome, ApiError>;
}

/// A FIFO queue: one holder at a time, waiters in arrival order, held across awaits. The
/// Durable Object keeps one; [`LocalWriter`] keeps one per slug.
#[derive(Default)]
pub struct SerialQueue(Mutex<()>);

impl SerialQueue {
    /// Runs `f` while no other `run` of this queue is in progress.
    pub async fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let _held = self.0.lock().await;
        f.await
    }
}

/// The in-process writer (host tests and the CLI's native test server): one queue per slug over
/// one store.
pub struct LocalWriter<S> {
    store: Arc<S>,
    queues: std::sync::Mutex<HashMap<String, Arc<SerialQueue>>>,
}

impl<S: ObjectStore> LocalWriter<S> {
    pub fn new(store: Arc<S>) -> Self {
        Self { store, queues: Default::default() }
    }
    pub fn store(&self) -> &S {
        &self.store
    }
    fn queue(&self, slug: &str) -> Arc<SerialQueue> {
        self.queues.lock().expect("queue map").entry(slug.to_string()).or_default().clone()
    }
}

impl<S: ObjectStore> Writer for LocalWriter<S> {
    async fn write(&self, op: WriteOp, ctx: &Ctx<'_>) -> Result<WriteOutcome, ApiError> {
        let queue = self.queue(op.slug());
        queue.run(apply(&*self.store, op, ctx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::api::RollbackRequest;
    use crate::deploy::testing::{self, poll_once, PausingStore};
    use crate::protocol::hash::Digests;
    use crate::storage::record::RecordKind;
    use crate::storage::store::MemoryStore;

    const V1: [(&[u8], &str); 2] = [(b"bundle-1", "bundle"), (b"shared", "png")];
    const V2: [(&[u8], &str); 2] = [(b"bundle-2", "bundle"), (b"shared", "png")];

    fn writer() -> LocalWriter<PausingStore<MemoryStore>> {
        LocalWriter::new(Arc::new(PausingStore::new(MemoryStore::new())))
    }

    fn commit(t: &Target, files: &[(&[u8], &str)], created: u64, channel: &str) -> WriteOp {
        WriteOp::Commit {
            target: t.clone(),
            request: testing::commit_request(testing::manifest(t, files, created, channel), channel),
        }
    }

    fn committed(o: Result<WriteOutcome, ApiError>) -> CommitResponse {
        match o {
            Ok(WriteOutcome::Committed(c)) => c,
            other => panic!("expected a commit, got {other:?}"),
        }
    }

    #[test]
    fn writer_second_op_of_an_app_waits_without_touching_storage() {
        let w = writer();
        let t = testing::target("demo-app");
        testing::upload(&w.store().inner, &t, &V1);
        let ctx = testing::ctx(1_000);
        w.store().pause_at("/channels/production.json");
        let mut first = Box::pin(w.write(commit(&t, &V1, 1_000, "production"), &ctx));
        assert!(poll_once(first.as_mut()).is_none(), "paused inside the first commit");
        let attempts = w.store().attempts();
        let mut second = Box::pin(w.write(WriteOp::DeleteRuntime { target: t.clone() }, &ctx));
        assert!(poll_once(second.as_mut()).is_none());
        assert_eq!(
            w.store().attempts(),
            attempts,
            "the second operation touched storage while the first held the writer"
        );
        // Another app is not held up.
        let other = testing::target("other-app");
        let mut third = Box::pin(w.write(WriteOp::DeleteRuntime { target: other }, &ctx));
        let _ = poll_once(third.as_mut());
        assert!(w.store().attempts() > attempts, "other apps have their own writer");
        w.store().resume();
        committed(poll_once(first.as_mut()).expect("first finishes"));
        assert!(matches!(poll_once(second.as_mut()), Some(Ok(WriteOutcome::DeletedRuntime(_)))));
    }

    /// Review finding: deleting an update while a commit sharing its files lands must not leave a
    /// served manifest naming deleted files. The commit holds the writer until its record and
    /// pointer are written; collection runs after it and sees the new record.
    #[test]
    fn delete_and_collect_racing_a_commit_never_delete_a_served_file() {
        let w = writer();
        let t = testing::target("demo-app");
        let store = &w.store().inner;
        testing::upload(store, &t, &V1);
        let ctx = testing::ctx(1_000);
        let v1 = committed(pollster::block_on(w.write(commit(&t, &V1, 1_000, "production"), &ctx)));
        testing::upload(store, &t, &V2);
        let later = testing::ctx(10_000 + crate::deploy::gc::GRACE_MS);
        // The v2 commit stops after verifying its files, before writing its record.
        w.store().pause_at("/updates/");
        let mut v2 = Box::pin(w.write(commit(&t, &V2, 2_000, "production"), &later));
        assert!(poll_once(v2.as_mut()).is_none());
        let mut delete = Box::pin(w.write(WriteOp::DeleteUpdate { target: t.clone(), id: v1.id.clone() }, &later));
        let mut collect = Box::pin(w.write(WriteOp::CollectFiles { target: t.clone() }, &later));
        assert!(poll_once(delete.as_mut()).is_none() && poll_once(collect.as_mut()).is_none());
        w.store().resume();
        let v2 = committed(poll_once(v2.as_mut()).unwrap());
        poll_once(delete.as_mut()).unwrap().unwrap();
        poll_once(collect.as_mut()).unwrap().unwrap();
        let served = pollster::block_on(service::current(store, &t, "production")).unwrap().unwrap();
        assert_eq!(served.id, v2.id);
        for f in &served.files {
            assert!(store.bytes(&t.file_key(f)).is_some(), "served manifest names deleted file {f}");
        }
        assert!(
            store.bytes(&t.file_key(&Digests::of(b"bundle-1").sha256_hex())).is_none(),
            "v1's own bundle collected"
        );
    }

    /// Review finding: deleting the current update while a newer publish lands must not replace
    /// the newer publish. Replayed the old way (no writer): the delete decides from the pointer
    /// it read, a newer publish lands, then the delete installs — and its conditional install
    /// refuses.
    #[test]
    fn delete_current_racing_a_newer_publish_keeps_the_newer_publish() {
        let store = PausingStore::new(MemoryStore::new());
        let t = testing::target("demo-app");
        testing::upload(&store.inner, &t, &V1);
        testing::upload(&store.inner, &t, &V2);
        let c = |n| testing::ctx(n);
        let run = |op| pollster::block_on(apply(&store.inner, op, &c(5_000)));
        let v1 = committed(run(commit(&t, &V1, 1_000, "production")));
        let v2 = committed(run(commit(&t, &V2, 2_000, "production")));
        store.pause_at("/served/production/");
        let ctx = c(5_000);
        let mut delete = Box::pin(service::delete_update(&store, &t, &v2.id, &ctx));
        assert!(poll_once(delete.as_mut()).is_none(), "the delete has read the pointer (v2 current)");
        let v3 = committed(run(commit(&t, &V1, 3_000, "production")));
        store.resume();
        let err = poll_once(delete.as_mut()).unwrap().unwrap_err();
        assert_eq!(err.status, 409, "{err:?}");
        let served = pollster::block_on(service::current(&store.inner, &t, "production")).unwrap().unwrap();
        assert_eq!(served.id, v3.id, "the newer publish stays served");
        assert_ne!(served.republished_from.as_deref(), Some(v1.id.as_str()));
    }

    /// Review finding: a commit interrupted between its record write and its pointer write must
    /// never be promoted later: promotion follows what was served, not the newest record.
    #[test]
    fn interrupted_commit_is_never_promoted() {
        let store = MemoryStore::new();
        let t = testing::target("demo-app");
        testing::upload(&store, &t, &V1);
        testing::upload(&store, &t, &V2);
        let run = |op, now| pollster::block_on(apply(&store, op, &testing::ctx(now)));
        let v1 = committed(run(commit(&t, &V1, 1_000, "production"), 1_000));
        let v2 = committed(run(commit(&t, &V2, 2_000, "production"), 2_000));
        // A third commit wrote its record (newest createdAt) and died before moving the pointer.
        let mut orphan = pollster::block_on(service::get_record(&store, &t, &v2.id)).unwrap();
        orphan.id = crate::protocol::id::uuid_v4([9; 16]);
        orphan.created_at = crate::protocol::time::Timestamp::from_millis(3_000);
        let custom = service::record_metadata(&orphan);
        pollster::block_on(store.put(
            &t.record_key(&orphan.id),
            orphan.to_json().into_bytes(),
            crate::storage::store::PutOptions { custom, ..Default::default() },
        ))
        .unwrap();
        let deleted = match run(WriteOp::DeleteUpdate { target: t.clone(), id: v2.id.clone() }, 4_000) {
            Ok(WriteOutcome::DeletedUpdate(d)) => d,
            other => panic!("{other:?}"),
        };
        let promoted = deleted.promoted.unwrap();
        assert_eq!(promoted.republished_from.as_deref(), Some(v1.id.as_str()), "promoted the orphan instead of v1");
        // Rollback's "previous" follows the served log the same way.
        let rb = RollbackRequest { expected_current: Some(promoted.id.clone()), ..Default::default() };
        let r = run(WriteOp::Rollback { target: t.clone(), request: rb }, 5_000);
        assert_eq!(r.unwrap_err().status, 422, "nothing was served before v1");
    }

    /// Review finding: createdAt grows strictly per runtime across channels, also when commits to
    /// two channels arrive together.
    #[test]
    fn concurrent_commits_to_two_channels_keep_created_at_strictly_increasing() {
        let w = writer();
        let t = testing::target("demo-app");
        testing::upload(&w.store().inner, &t, &V1);
        let ctx = testing::ctx(1_000);
        w.store().pause_at("/channels/");
        let mut prod = Box::pin(w.write(commit(&t, &V1, 1_000, "production"), &ctx));
        let mut staging = Box::pin(w.write(commit(&t, &V1, 1_000, "staging"), &ctx));
        assert!(poll_once(prod.as_mut()).is_none() && poll_once(staging.as_mut()).is_none());
        w.store().resume();
        committed(poll_once(prod.as_mut()).unwrap());
        assert_eq!(poll_once(staging.as_mut()).unwrap().unwrap_err().status, 409);
        let older = pollster::block_on(w.write(commit(&t, &V1, 999, "beta"), &ctx));
        assert_eq!(older.unwrap_err().status, 409);
        committed(pollster::block_on(w.write(commit(&t, &V1, 1_001, "staging"), &ctx)));
    }

    /// Review finding: a rollback must not overwrite a publish that landed after the caller read
    /// the list: it names the update it saw current and the writer answers 409 otherwise.
    #[test]
    fn rollback_with_stale_expected_current_is_refused_and_changes_nothing() {
        let w = writer();
        let t = testing::target("demo-app");
        testing::upload(&w.store().inner, &t, &V1);
        testing::upload(&w.store().inner, &t, &V2);
        let ctx = testing::ctx(5_000);
        let v1 = committed(pollster::block_on(w.write(commit(&t, &V1, 1_000, "production"), &ctx)));
        let v2 = committed(pollster::block_on(w.write(commit(&t, &V2, 2_000, "production"), &ctx)));
        let before = w.store().inner.keys();
        let rb = RollbackRequest { expected_current: Some(v1.id.clone()), ..Default::default() };
        let r = pollster::block_on(w.write(WriteOp::Rollback { target: t.clone(), request: rb }, &ctx));
        assert_eq!(r.unwrap_err().status, 409);
        assert_eq!(w.store().inner.keys(), before);
        let rb = RollbackRequest { expected_current: Some(v2.id.clone()), ..Default::default() };
        match pollster::block_on(w.write(WriteOp::Rollback { target: t.clone(), request: rb }, &ctx)) {
            Ok(WriteOutcome::Released(crate::deploy::api::ReleaseResponse::Installed(c))) => {
                assert_eq!(c.republished_from.as_deref(), Some(v1.id.as_str()));
                assert_eq!(c.kind, RecordKind::Update);
            }
            other => panic!("{other:?}"),
        }
    }
}
