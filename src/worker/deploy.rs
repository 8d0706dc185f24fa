//! Deploy requests in the Worker: authenticate, rate-limit, then hand the request to the core's
//! [`dispatch`] with R2, the app's Durable Object writer and the request body; then do what it
//! returns (append the audit entry, drop stale cached pointers, run follow-up writes after the
//! response). Nothing here decides who may do what.

use super::audit_d1::D1Audit;
use super::r2::R2Store;
use super::writer::DoWriter;
use super::{header, random16, reply_api, POINTERS};
use crate::access::audit::{AuditList, AuditLog, AuditQuery};
use crate::access::auth::{self, Principal};
use crate::config::Limits;
use crate::deploy::dispatch::{self, Backend, Body};
use crate::deploy::service::{Ctx, UploadHeaders};
use crate::deploy::writer::{WriteOp, Writer};
use crate::error::ApiError;
use crate::http::route::Route;
use crate::storage::store::ObjectMeta;
use futures_util::StreamExt;
use worker::{console_error, ByteStream, Context, Date, Env, Request, Response};

struct WorkerBackend<'a> {
    store: R2Store,
    writer: DoWriter<'a>,
}

impl<'a> Backend for WorkerBackend<'a> {
    type Store = R2Store;
    type Writer = DoWriter<'a>;
    fn store(&self) -> &R2Store {
        &self.store
    }
    fn writer(&self) -> &DoWriter<'a> {
        &self.writer
    }
    async fn health_report(&self, filter: &crate::health::store::Filter) -> Result<Vec<u8>, ApiError> {
        super::health::report(self.writer.env, filter).await
    }
    async fn audit_page(&self, q: &AuditQuery) -> Result<AuditList, ApiError> {
        D1Audit::from_env(self.writer.env)?.list_page(q).await
    }
}

/// Appends to the audit log in D1; a failure is logged, never surfaced (the operation stands).
pub(super) async fn audit_append(env: &Env, entry: crate::access::audit::AuditEntry, ctx: &Ctx<'_>) {
    let appended = async { D1Audit::from_env(env)?.append(entry, ctx).await }.await;
    if let Err(e) = appended {
        console_error!("{}", serde_json::json!({"event": "audit_write_failed", "error": e.message}));
    }
}

/// The request body: chunks for the core, or streamed straight into R2 for file uploads.
struct WorkerBody<'r> {
    req: &'r mut Request,
    stream: Option<ByteStream>,
    store: &'r R2Store,
}

impl Body for WorkerBody<'_> {
    async fn chunk(&mut self) -> Option<Result<Vec<u8>, ApiError>> {
        if self.stream.is_none() {
            self.stream = Some(self.req.stream().ok()?);
        }
        let next = self.stream.as_mut()?.next().await?;
        Some(next.map_err(|e| ApiError::bad_request(format!("cannot read body: {e}"))))
    }
    async fn store_file(&mut self, key: &str, up: &UploadHeaders, sha256: [u8; 32]) -> Result<ObjectMeta, ApiError> {
        let body = self.req.inner().body().ok_or_else(|| ApiError::bad_request("empty body"))?;
        let obj = self.store.put_stream(key, body, &up.content_type, sha256, up.md5).await?;
        Ok(ObjectMeta { key: key.to_string(), size: obj.size(), ..Default::default() })
    }
}

pub async fn serve(
    route: Route,
    query: &str,
    req: &mut Request,
    env: &Env,
    wctx: &Context,
    store: R2Store,
    ctx: &Ctx<'_>,
) -> Result<Response, ApiError> {
    let who = authenticate(req, &route, env, &store, ctx).await?;
    rate_limit(env, &who).await?;
    let backend = WorkerBackend { store, writer: DoWriter { env, origin: ctx.origin } };
    // The body borrows the request mutably, so the core reads headers from a copy.
    let headers = req.headers().clone();
    let lookup = move |n: &str| headers.get(n).ok().flatten();
    let request = dispatch::Request { route, query, header: &lookup };
    let mut body = WorkerBody { req, stream: None, store: backend.store() };
    let done = dispatch::handle(&backend, &who, request, &mut body, ctx).await;
    for prefix in &done.invalidate {
        POINTERS.with(|c| c.borrow_mut().invalidate_prefix(prefix));
        super::capacitor::invalidate(prefix);
    }
    if let Some(entry) = done.audit {
        audit_append(env, entry, ctx).await;
    }
    if !done.after.is_empty() {
        run_after(env.clone(), ctx.origin.to_string(), ctx.limits, done.after, wctx);
    }
    reply_api(done.reply?)
}

/// Follow-up writes (file collection) after the response; failures are logged, never surfaced.
fn run_after(env: Env, origin: String, limits: Limits, ops: Vec<WriteOp>, wctx: &Context) {
    wctx.wait_until(async move {
        let ctx = Ctx { origin: &origin, now_ms: Date::now().as_millis(), limits, random: &random16 };
        let writer = DoWriter { env: &env, origin: &origin };
        for op in ops {
            if let Err(e) = writer.write(op, &ctx).await {
                console_error!("{}", serde_json::json!({"event": "follow_up_write_failed", "error": e.message}));
            }
        }
    });
}

/// The core's authentication with this Worker's secret; a genuine token used after it was
/// revoked or expired is audited (under the app the request names, when it names one).
pub(super) async fn authenticate(
    req: &Request,
    route: &Route,
    env: &Env,
    store: &R2Store,
    ctx: &Ctx<'_>,
) -> Result<Principal, ApiError> {
    let admin = env.secret("ADMIN_TOKEN").ok().map(|s| s.to_string());
    auth::admin_secret(admin.as_deref())?;
    // A signed-in user's session (bearer or cookie + CSRF); tokens go on below.
    if let Some(found) = super::accounts::session_of(req, env, ctx.now_ms).await {
        return found.map(|s| s.principal);
    }
    let authorization = header(req, "authorization");
    match auth::authenticate(store, admin.as_deref(), authorization.as_deref(), ctx.now_ms).await {
        Ok(who) => Ok(who),
        Err(failure) => {
            if let Some(entry) = failure.audit {
                let entry = match dispatch::app_of(route) {
                    Some(slug) => entry.with_slug(&slug),
                    None => *entry,
                };
                audit_append(env, entry, ctx).await;
            }
            Err(failure.error)
        }
    }
}

/// Deploy operations are rate limited per credential by the DEPLOY_RATE_LIMITER binding (when
/// configured); manifest and asset reads never are.
pub(super) async fn rate_limit(env: &Env, who: &Principal) -> Result<(), ApiError> {
    let Ok(limiter) = env.rate_limiter("DEPLOY_RATE_LIMITER") else { return Ok(()) };
    let key = who.actor().0;
    match limiter.limit(key).await {
        Ok(o) if !o.success => {
            Err(ApiError::new(429, "too many deploy requests for this token; retry in a minute (DEPLOY_RATE_LIMITER)"))
        }
        _ => Ok(()),
    }
}
