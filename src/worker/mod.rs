//! The Worker: parse the route, run the core, and do the I/O the core cannot (streaming file
//! bytes between the client and R2 without copying them into wasm).

mod r2;
mod signing;

use crate::access::audit::{self, AuditEntry};
use crate::access::auth::{self, Action, Principal};
use crate::check::cache::PointerCache;
use crate::check::log::{self as checklog, LogChecks};
use crate::check::{self, Reply};
use crate::config::Limits;
use crate::deploy::api::{CommitRequest, FormPublishResponse, PrepareRequest, UploadResponse};
use crate::deploy::formpublish::{self, FormPublish};
use crate::deploy::service::{self, Ctx};
use crate::error::ApiError;
use crate::http::route::{self, Route};
use crate::storage::layout::Target;
use crate::storage::record::UpdateRecord;
use crate::{access::tokens, protocol::time, validate};
use crate::{protocol::hash, protocol::multipart};
use futures_util::StreamExt;
use r2::R2Store;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use worker::*;

const BUCKET: &str = "UPDATES";

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    match handle(req, &env).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            if e.status >= 500 {
                console_error!("{}", serde_json::json!({"event": "error", "status": e.status, "error": e.message}));
            }
            reply(Reply::error(&e))
        }
    }
}

async fn handle(mut req: Request, env: &Env) -> std::result::Result<Response, ApiError> {
    let url = req.url().map_err(internal)?;
    let method = req.method().to_string();
    let route = route::parse(&method, url.path())?;
    let store = R2Store(env.bucket(BUCKET).map_err(internal)?);
    let vars = vars(env)?;
    let origin = match &vars.public_url {
        Some(public) => public.clone(),
        None => url.origin().ascii_serialization().trim_end_matches('/').to_string(),
    };
    let ctx = Ctx { origin: &origin, now_ms: Date::now().as_millis(), limits: vars.limits, random: &random16 };
    let query = url.query().unwrap_or("");

    if route.needs_auth() {
        let who = authenticate(&req, env, &store, &ctx).await?;
        rate_limit(env, &who).await?;
        return deploy(route, &who, &mut req, query, &store, &ctx).await;
    }
    match route {
        Route::Health => {
            json(200, &serde_json::json!({"ok": true, "service": "expo-ota", "version": env!("CARGO_PKG_VERSION")}))
        }
        Route::Manifest => {
            let mreq = check::parse_request(query, &|n| header(&req, n))?;
            let current = cached_current(&store, &mreq.target, &mreq.channel, &ctx).await?;
            let outcome = check::decide(&mreq, current.as_deref());
            let signature = match check::needs_server_signature(&mreq, &outcome) {
                Some(body) => signing::sign(env, body.as_bytes()).await?,
                None => None,
            };
            let reply = respond_check(&mreq, current.as_ref(), &outcome, signature.as_deref());
            let tick = CHECKS.with(|n| n.replace(n.get().wrapping_add(1)));
            if vars.log_checks.should_log(&mreq, reply.status, tick) {
                console_log!("{}", check::log_line(&mreq, &outcome));
            }
            reply_api(reply)
        }
        Route::Asset { target, sha256, ext, head } => asset(&req, &store, &target, &sha256, ext.as_deref(), head).await,
        _ => unreachable!("every other route needs auth"),
    }
}

/// ADMIN_TOKEN, or a scoped token looked up by its id and checked against its digest.
async fn authenticate(
    req: &Request,
    env: &Env,
    store: &R2Store,
    ctx: &Ctx<'_>,
) -> std::result::Result<Principal, ApiError> {
    let admin = env.secret("ADMIN_TOKEN").ok().map(|s| s.to_string());
    let admin = auth::admin_secret(admin.as_deref())?;
    let authorization = header(req, "authorization");
    let given = auth::bearer(authorization.as_deref())?;
    if auth::is_admin(given, admin) {
        return Ok(Principal::Admin);
    }
    let id = auth::token_id(given).ok_or_else(|| ApiError::unauthorized("invalid token"))?;
    let found = tokens::lookup(store, id).await?;
    let etag = found.as_ref().map(|(_, e)| e.clone());
    let record = auth::verify_token(given, found.map(|(r, _)| r), ctx.now_ms)?;
    if let Some(etag) = etag {
        // Coarse "last used": at most one write per token per hour.
        tokens::touch(store, record.clone(), etag, ctx.now_ms).await?;
    }
    Ok(Principal::Token(Box::new(record)))
}

/// Deploy operations are rate limited per credential by the DEPLOY_RATE_LIMITER binding (when
/// configured); manifest and asset reads never are.
async fn rate_limit(env: &Env, who: &Principal) -> std::result::Result<(), ApiError> {
    let Ok(limiter) = env.rate_limiter("DEPLOY_RATE_LIMITER") else { return Ok(()) };
    let key = who.actor().0;
    match limiter.limit(key).await {
        Ok(o) if !o.success => {
            Err(ApiError::new(429, "too many deploy requests for this token; retry in a minute (DEPLOY_RATE_LIMITER)"))
        }
        _ => Ok(()),
    }
}

async fn deploy(
    route: Route,
    who: &Principal,
    req: &mut Request,
    query: &str,
    store: &R2Store,
    ctx: &Ctx<'_>,
) -> std::result::Result<Response, ApiError> {
    let cap = ctx.limits.max_json_bytes as usize;
    match route {
        Route::PublishPrepare { target } => {
            auth::authorize(who, Action::Publish, Some(&target.slug))?;
            let body: PrepareRequest = read_json(req, cap).await?;
            json(200, &service::prepare(store, &target, &body, ctx).await?)
        }
        Route::UploadFile { target, sha256 } => {
            auth::authorize(who, Action::Publish, Some(&target.slug))?;
            upload(req, store, &target, &sha256, ctx).await
        }
        Route::PublishCommit { target } => {
            let body: CommitRequest = read_json(req, cap).await?;
            let (action, name) = match (&body.directive, &body.republished_from) {
                (Some(_), _) => (Action::Rollback, "rollback-to-embedded"),
                (None, Some(_)) => (Action::Rollback, "republish"),
                (None, None) => (Action::Publish, "publish"),
            };
            let mut entry = AuditEntry::new(who, name).target(&target);
            entry.channel = Some(body.channel.clone().unwrap_or_else(|| check::DEFAULT_CHANNEL.into()));
            let done = async {
                auth::authorize(who, action, Some(&target.slug))?;
                service::commit(store, &target, body, ctx).await
            }
            .await;
            invalidate(&target);
            entry.update_ids = done.iter().map(|c| c.id.clone()).collect();
            audited(store, entry, &done, 201, ctx).await;
            json(201, &done?)
        }
        Route::PublishForm { slug } => {
            let mut entry = AuditEntry::new(who, "publish");
            entry.slug = Some(slug.clone());
            let done = async {
                auth::authorize(who, Action::Publish, Some(&slug))?;
                publish_form(req, store, &slug, ctx).await
            }
            .await;
            POINTERS.with(|c| c.borrow_mut().invalidate_prefix(&format!("{slug}/")));
            if let Ok(r) = &done {
                entry.update_ids = r.updates.iter().map(|u| u.id.clone()).collect();
                entry.runtime_version = r.updates.first().map(|u| u.runtime_version.clone());
                entry.channel = r.updates.first().map(|u| u.channel.clone());
            }
            audited(store, entry, &done, 201, ctx).await;
            json(201, &done?)
        }
        Route::ListUpdates => {
            let slug = route::query_param(query, "slug")
                .ok_or_else(|| ApiError::bad_request("missing slug query parameter"))?;
            auth::authorize(who, Action::Read, Some(&slug))?;
            json(200, &service::list(store, &slug).await?)
        }
        Route::GetUpdate { target, id } => {
            auth::authorize(who, Action::Read, Some(&target.slug))?;
            json(200, &service::get_record(store, &target, &id).await?)
        }
        Route::DeleteRuntime { target } => {
            let entry = AuditEntry::new(who, "delete-runtime").target(&target);
            let done = async {
                auth::authorize(who, Action::Delete, Some(&target.slug))?;
                service::delete_runtime(store, &target).await
            }
            .await;
            invalidate(&target);
            audited(store, entry, &done, 200, ctx).await;
            json(200, &done?)
        }
        Route::DeleteUpdate { target, id } => {
            let mut entry = AuditEntry::new(who, "delete-update").target(&target);
            let done = async {
                auth::authorize(who, Action::Delete, Some(&target.slug))?;
                service::delete_update(store, &target, &id, ctx).await
            }
            .await;
            invalidate(&target);
            entry.update_ids = std::iter::once(id)
                .chain(done.iter().filter_map(|d| d.promoted.as_ref().map(|p| p.id.clone())))
                .collect();
            audited(store, entry, &done, 200, ctx).await;
            json(200, &done?)
        }
        Route::CreateToken => {
            let mut entry = AuditEntry::new(who, "token-create");
            let done = async {
                auth::authorize(who, Action::Admin, None)?;
                tokens::create(store, read_json(req, cap).await?, ctx).await
            }
            .await;
            entry.token_id = done.as_ref().ok().map(|t| t.info.id.clone());
            audited(store, entry, &done, 201, ctx).await;
            json(201, &done?)
        }
        Route::ListTokens => {
            auth::authorize(who, Action::Admin, None)?;
            json(200, &tokens::list(store).await?)
        }
        Route::RevokeToken { id } => {
            let mut entry = AuditEntry::new(who, "token-revoke");
            entry.token_id = Some(id.chars().take(16).collect());
            let done = async {
                auth::authorize(who, Action::Admin, None)?;
                tokens::revoke(store, &id, ctx.now_ms).await
            }
            .await;
            audited(store, entry, &done, 200, ctx).await;
            json(200, &done?)
        }
        Route::Audit => {
            let slug = route::query_param(query, "slug");
            match &slug {
                Some(s) => auth::authorize(who, Action::Read, Some(validate::slug(s)?))?,
                None => auth::authorize(who, Action::Admin, None)?,
            }
            let since = match route::query_param(query, "since") {
                Some(s) => time::parse_millis(&s)
                    .ok_or_else(|| ApiError::bad_request("since must be YYYY-MM-DDTHH:mm:ss.sssZ"))?,
                None => 0,
            };
            let limit = route::query_param(query, "limit")
                .map(|l| l.parse::<usize>().map_err(|_| ApiError::bad_request("limit must be a number")))
                .transpose()?
                .unwrap_or(100)
                .clamp(1, 1000);
            json(200, &audit::list(store, slug.as_deref(), since, limit).await?)
        }
        Route::Health | Route::Manifest | Route::Asset { .. } => unreachable!("public routes need no auth"),
    }
}

/// Appends the audit entry; a failed audit write is logged but does not undo the operation.
async fn audited<T>(
    store: &R2Store,
    entry: AuditEntry,
    done: &std::result::Result<T, ApiError>,
    ok_status: u16,
    ctx: &Ctx<'_>,
) {
    if let Err(e) = audit::append(store, entry.result(done, ok_status), ctx).await {
        console_error!("{}", serde_json::json!({"event": "audit_write_failed", "error": e.message}));
    }
}

fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).expect("crypto.getRandomValues");
    b
}

thread_local! {
    /// Channel pointers this isolate read recently (see `cache`).
    static POINTERS: RefCell<PointerCache> = RefCell::new(PointerCache::default());
    /// The Worker vars, parsed by the first request of this isolate (see `vars`).
    static VARS: RefCell<Option<Rc<Vars>>> = const { RefCell::new(None) };
    /// Manifest checks this isolate answered: LOG_CHECKS=sample:N logs when it is a multiple of N.
    static CHECKS: Cell<u64> = const { Cell::new(0) };
    /// Update replies rendered for records the pointer cache holds (see `respond_check`).
    static RENDERED: RefCell<Vec<Rendered>> = const { RefCell::new(Vec::new()) };
}

/// Enough for every platform, runtime and channel an isolate serves at once; bounded because a
/// manifest of 2000 assets is a few hundred KB.
const MAX_RENDERED: usize = 16;

struct Rendered {
    record: Rc<UpdateRecord>,
    protocol_version: u8,
    channel: String,
    reply: Reply,
}

/// `check::respond`, rendered once per cached record: the reply to an unsigned request served
/// a record depends only on that record, the protocol version and the channel, and rendering it
/// copies and hashes the whole manifest (the multipart boundary is a digest of the parts). A
/// render is kept while the pointer cache still holds its record (`Rc` identity, so a record
/// read again from R2 is rendered again); signed answers are never kept.
fn respond_check(
    mreq: &check::ManifestRequest,
    current: Option<&Rc<UpdateRecord>>,
    outcome: &check::Outcome<'_>,
    signature: Option<&str>,
) -> Reply {
    let record = match (outcome, current) {
        (check::Outcome::Serve(_), Some(r)) if mreq.expect_signature.is_none() => r,
        _ => return check::respond(mreq, outcome, signature),
    };
    RENDERED.with(|cell| {
        let mut kept = cell.borrow_mut();
        let same = |e: &&Rendered| {
            Rc::ptr_eq(&e.record, record) && e.protocol_version == mreq.protocol_version && e.channel == mreq.channel
        };
        if let Some(hit) = kept.iter().find(same) {
            return hit.reply.clone();
        }
        let reply = check::respond(mreq, outcome, signature);
        // Renders whose record only this list still holds were replaced or invalidated.
        kept.retain(|e| Rc::strong_count(&e.record) > 1);
        if kept.len() < MAX_RENDERED {
            kept.push(Rendered {
                record: record.clone(),
                protocol_version: mreq.protocol_version,
                channel: mreq.channel.clone(),
                reply: reply.clone(),
            });
        }
        reply
    })
}

/// The Worker vars every request needs, parsed once per isolate: a deployment's vars cannot
/// change under a running isolate, so reading seven of them across the JS boundary and parsing
/// them again on every check is wasted work. A bad value is not cached, so every request reports
/// it until the var is fixed.
struct Vars {
    limits: Limits,
    /// PUBLIC_URL without its trailing slash; `None` when unset or empty.
    public_url: Option<String>,
    log_checks: LogChecks,
}

fn vars(env: &Env) -> std::result::Result<Rc<Vars>, ApiError> {
    if let Some(v) = VARS.with(|v| v.borrow().clone()) {
        return Ok(v);
    }
    let var = |n: &str| env.var(n).ok().map(|v| v.to_string());
    let parsed = Rc::new(Vars {
        limits: Limits::from_vars(&var)?,
        public_url: var("PUBLIC_URL").filter(|v| !v.is_empty()).map(|v| v.trim_end_matches('/').to_string()),
        log_checks: LogChecks::parse(var(checklog::VAR).as_deref())?,
    });
    VARS.with(|v| *v.borrow_mut() = Some(parsed.clone()));
    Ok(parsed)
}

async fn cached_current(
    store: &R2Store,
    t: &Target,
    channel: &str,
    ctx: &Ctx<'_>,
) -> std::result::Result<Option<Rc<UpdateRecord>>, ApiError> {
    let key = t.channel_key(channel);
    let ttl = ctx.limits.check_cache_ms;
    if let Some(hit) = POINTERS.with(|c| c.borrow().get(&key, ctx.now_ms, ttl)) {
        return Ok(hit);
    }
    let fresh = service::current(store, t, channel).await?.map(Rc::new);
    if ttl > 0 {
        POINTERS.with(|c| c.borrow_mut().put(key, ctx.now_ms, fresh.clone()));
    }
    Ok(fresh)
}

fn invalidate(t: &Target) {
    POINTERS.with(|c| c.borrow_mut().invalidate_prefix(&t.prefix()));
}

/// Streams a stored file from R2 straight to the client (the body never enters wasm).
/// The URL's extension decides the content type (see `manifest::asset_url`).
async fn asset(
    req: &Request,
    store: &R2Store,
    t: &Target,
    sha256: &str,
    ext: Option<&str>,
    head_only: bool,
) -> std::result::Result<Response, ApiError> {
    let key = t.file_key(sha256);
    let not_found = || {
        ApiError::not_found(format!(
            "no asset {sha256} for {} {} runtimeVersion {}",
            t.slug, t.platform, t.runtime_version
        ))
    };
    let headers = |obj: &Object| -> std::result::Result<Headers, ApiError> {
        let h = Headers::new();
        let ct = match ext {
            Some(e) => crate::protocol::export::content_type_for_ext(e).to_string(),
            None => obj.http_metadata().content_type.unwrap_or_else(|| "application/octet-stream".into()),
        };
        let set = |k: &str, v: &str| h.set(k, v).map_err(internal);
        set("content-type", &ct)?;
        set("etag", &obj.http_etag())?;
        set("cache-control", "public, max-age=31536000, immutable")?;
        set("content-length", &obj.size().to_string())?;
        set("x-content-type-options", "nosniff")?;
        Ok(h)
    };
    if head_only {
        let obj = store.0.head(key).await.map_err(internal)?.ok_or_else(not_found)?;
        return Ok(Response::empty().map_err(internal)?.with_headers(headers(&obj)?));
    }
    let obj = store.0.get(key).execute().await.map_err(internal)?.ok_or_else(not_found)?;
    let h = headers(&obj)?;
    if header(req, "if-none-match").as_deref() == Some(obj.http_etag().as_str()) {
        return Ok(Response::empty().map_err(internal)?.with_status(304).with_headers(h));
    }
    let body = obj.body().ok_or_else(not_found)?.response_body().map_err(internal)?;
    Ok(Response::from_body(body).map_err(internal)?.with_headers(h))
}

/// One raw file, keyed by its SHA-256: R2 verifies the digest while it stores the stream.
async fn upload(
    req: &Request,
    store: &R2Store,
    t: &Target,
    sha256: &str,
    ctx: &Ctx<'_>,
) -> std::result::Result<Response, ApiError> {
    let up = service::upload_headers(&|n| header(req, n), &ctx.limits)?;
    let key = t.file_key(sha256);
    if let Some(existing) = store.0.head(key.clone()).await.map_err(internal)? {
        // Content-addressed: the stored bytes already are these bytes; never rewrite them.
        return json(200, &UploadResponse { sha256: sha256.into(), size: existing.size(), stored: false });
    }
    let body = req.inner().body().ok_or_else(|| ApiError::bad_request("empty body"))?;
    let sha = hash::parse_hex::<32>(sha256).expect("route checked");
    let obj = store.put_stream(&key, body, &up.content_type, sha, up.md5).await?;
    if obj.size() != up.len {
        return Err(ApiError::bad_request("body length does not match Content-Length"));
    }
    json(201, &UploadResponse { sha256: sha256.into(), size: obj.size(), stored: true })
}

async fn publish_form(
    req: &mut Request,
    store: &R2Store,
    slug: &str,
    ctx: &Ctx<'_>,
) -> std::result::Result<FormPublishResponse, ApiError> {
    let ct = header(req, "content-type").unwrap_or_default();
    if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(ApiError::new(415, "expected a multipart/form-data body"));
    }
    let boundary =
        multipart::boundary_of(&ct).ok_or_else(|| ApiError::bad_request("multipart/form-data without a boundary"))?;
    let len = header(req, "content-length").and_then(|l| l.trim().parse().ok());
    formpublish::check_content_length(len, ctx)?;
    let mut form = FormPublish::new(
        slug,
        &boundary,
        header(req, "expo-platform").as_deref(),
        header(req, "expo-runtime-version").as_deref(),
    )?;
    let mut body = req.stream().map_err(|e| ApiError::bad_request(format!("cannot read body: {e}")))?;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("cannot read body: {e}")))?;
        form.feed(store, &chunk, ctx).await?;
    }
    form.finish(store, ctx).await
}

/// Reads a small JSON body, refusing more than `cap` bytes whatever Content-Length says.
async fn read_json<T: serde::de::DeserializeOwned>(req: &mut Request, cap: usize) -> std::result::Result<T, ApiError> {
    if header(req, "content-length").and_then(|l| l.trim().parse::<usize>().ok()).is_some_and(|l| l > cap) {
        return Err(ApiError::too_large(format!("JSON body is larger than {cap} bytes")));
    }
    let mut buf = Vec::new();
    let mut body = req.stream().map_err(|_| ApiError::bad_request("missing JSON body"))?;
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk.map_err(|e| ApiError::bad_request(format!("cannot read body: {e}")))?);
        if buf.len() > cap {
            return Err(ApiError::too_large(format!("JSON body is larger than {cap} bytes")));
        }
    }
    serde_json::from_slice(&buf).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn json<T: Serialize>(status: u16, body: &T) -> std::result::Result<Response, ApiError> {
    let body = serde_json::to_vec(body).map_err(|e| ApiError::internal(e.to_string()))?;
    reply_api(Reply { status, headers: vec![("content-type", "application/json".into())], body })
}

fn reply(r: Reply) -> Result<Response> {
    let h = Headers::new();
    for (k, v) in &r.headers {
        h.set(k, v)?;
    }
    Ok(Response::from_bytes(r.body)?.with_status(r.status).with_headers(h))
}

fn reply_api(r: Reply) -> std::result::Result<Response, ApiError> {
    reply(r).map_err(internal)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("internal error: {e}"))
}
