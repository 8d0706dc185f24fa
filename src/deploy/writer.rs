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
use crate::deploy::{gc, release};
use crate::error::ApiError;
use crate::storage::layout::Target;
use crate::storage::store::ObjectStore;
use futures_util::lock::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// A state change of one app. Serializable: the Worker sends it to the app's Durable Object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
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
            | WriteOp::CollectFiles { target } => &target.slug,
            WriteOp::Commits { commits } => commits.first().map_or("", |(t, _)| t.slug.as_str()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "value", rename_all = "camelCase")]
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
        WriteOp::Commits { commits } => WriteOutcome::Published(commit_all(store, commits, ctx).await?),
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
    })
}

/// Commits in order; when one fails after others landed, the error says exactly which landed.
async fn commit_all<S: ObjectStore>(
    store: &S,
    commits: Vec<(Target, CommitRequest)>,
    ctx: &Ctx<'_>,
) -> Result<FormPublishResponse, ApiError> {
    let mut updates = Vec::new();
    for (target, request) in commits {
        match service::commit(store, &target, request, ctx).await {
            Ok(c) => updates.push(c),
            Err(e) if updates.is_empty() => return Err(e),
            Err(e) => {
                let landed: Vec<String> =
                    updates.iter().map(|u| format!("{} {} ({})", u.platform, u.id, u.channel)).collect();
                return Err(ApiError::new(
                    e.status,
                    format!(
                        "{}: {} failed after these were committed: {}",
                        e.message,
                        target.platform,
                        landed.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(FormPublishResponse { updates })
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
