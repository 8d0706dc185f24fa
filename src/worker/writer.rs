//! The per-app writer: a Durable Object named by the app's slug (binding `APP_WRITER`, class
//! `AppWriter`) that applies [`WriteOp`]s with the core's [`writer::apply`], one at a time. The
//! object awaits R2 inside each operation, and a Durable Object lets other requests in at any
//! non-storage await, so it holds an explicit FIFO queue for the whole operation. The Worker
//! reaches it through [`DoWriter`]; the public check path never does.

use super::r2::R2Store;
use super::{internal, random16, BUCKET};
use crate::config::Limits;
use crate::deploy::service::Ctx;
use crate::deploy::writer::{self, SerialQueue, WriteOp, WriteOutcome, Writer};
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, Date, DurableObject, Env, Method, Request, RequestInit, Response, Result, SqlStorage, State,
};

pub const BINDING: &str = "APP_WRITER";

/// What the Worker sends the object: the operation and the origin asset URLs are built under.
#[derive(Serialize, Deserialize)]
struct WriteRequest {
    op: WriteOp,
    origin: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum WriteReply {
    Ok(WriteOutcome),
    Error {
        status: u16,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    },
}

/// Sends operations to the app's Durable Object.
pub struct DoWriter<'a> {
    pub env: &'a Env,
    pub origin: &'a str,
}

impl Writer for DoWriter<'_> {
    async fn write(&self, op: WriteOp, _ctx: &Ctx<'_>) -> std::result::Result<WriteOutcome, ApiError> {
        let ns = self.env.durable_object(BINDING).map_err(internal)?;
        let stub = ns.id_from_name(op.slug()).map_err(internal)?.get_stub().map_err(internal)?;
        let body = serde_json::to_string(&WriteRequest { op, origin: self.origin.to_string() })
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(body.into()));
        let req = Request::new_with_init("https://app-writer.internal/write", &init).map_err(internal)?;
        let mut resp = stub.fetch_with_request(req).await.map_err(internal)?;
        let text = resp.text().await.map_err(internal)?;
        match serde_json::from_str::<WriteReply>(&text) {
            Ok(WriteReply::Ok(outcome)) => Ok(outcome),
            Ok(WriteReply::Error { status, message, detail }) => {
                let e = ApiError::new(status, message);
                Err(match detail {
                    Some(d) => e.with_detail(*d),
                    None => e,
                })
            }
            Err(e) => Err(ApiError::internal(format!("the app's writer answered {}: {e}", resp.status_code()))),
        }
    }
}

#[durable_object]
pub struct AppWriter {
    pub(super) env: Env,
    queue: SerialQueue,
    /// The object's SQLite storage: the app's update-health counters (see `health`).
    pub(super) sql: SqlStorage,
}

impl DurableObject for AppWriter {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        super::health::migrate(&sql);
        Self { env, queue: SerialQueue::default(), sql }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.path().starts_with("/health") {
            return super::health::serve(self, req).await;
        }
        let reply = match req.json::<WriteRequest>().await {
            Ok(w) => self.apply(w).await,
            Err(e) => WriteReply::Error { status: 400, message: format!("bad write request: {e}"), detail: None },
        };
        Response::from_json(&reply)
    }
}

impl AppWriter {
    async fn apply(&self, w: WriteRequest) -> WriteReply {
        match self.run(w.op, &w.origin).await {
            Ok(o) => WriteReply::Ok(o),
            Err(e) => WriteReply::Error { status: e.status, message: e.message, detail: e.detail },
        }
    }

    /// Applies one operation through this app's queue (also used by automatic halts).
    pub(super) async fn run(&self, op: WriteOp, origin: &str) -> std::result::Result<WriteOutcome, ApiError> {
        let result = async {
            let store = R2Store(self.env.bucket(BUCKET).map_err(internal)?);
            let limits = Limits::from_vars(&|n| self.env.var(n).ok().map(|v| v.to_string()))?;
            // The queue is held across every R2 await of the operation: no other write of this
            // app starts until this one has finished.
            self.queue
                .run(async {
                    let ctx = Ctx { origin, now_ms: Date::now().as_millis(), limits, random: &random16 };
                    writer::apply(&store, op, &ctx).await
                })
                .await
        }
        .await;
        result
    }
}

/// Where the cron's scan of apps stands (the last slug it collected).
const COLLECT_CURSOR: &str = "_system/collect-cursor";
/// Runtimes one cron run collects at most (whole apps at a time).
const COLLECT_BUDGET: usize = 25;

/// One cron step: the next apps' runtimes, each collected by its app's writer.
pub async fn collect_next(env: &Env) -> std::result::Result<(), ApiError> {
    use crate::storage::store::{ObjectStore, PutOptions};
    let store = R2Store(env.bucket(BUCKET).map_err(internal)?);
    let after = store.get(COLLECT_CURSOR).await?.and_then(|(_, b)| String::from_utf8(b).ok());
    let (targets, next) = crate::deploy::gc::next_runtimes(&store, after.as_deref(), COLLECT_BUDGET).await?;
    let limits = Limits::from_vars(&|n| env.var(n).ok().map(|v| v.to_string()))?;
    let ctx = Ctx { origin: "", now_ms: Date::now().as_millis(), limits, random: &random16 };
    let writer = DoWriter { env, origin: "" };
    for target in targets {
        writer.write(WriteOp::CollectFiles { target }, &ctx).await?;
    }
    match next {
        Some(slug) => Ok(store.put(COLLECT_CURSOR, slug.into_bytes(), PutOptions::default()).await.map(|_| ())?),
        None => Ok(store.delete(&[COLLECT_CURSOR.to_string()]).await?),
    }
}
