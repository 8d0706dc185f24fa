//! The Worker: parse the route, run the core, and do the I/O the core cannot (streaming file
//! bytes between the client and R2 without copying them into wasm).

mod accounts;
mod audit_d1;
mod capacitor;
mod d1;
mod deploy;
mod health;
mod r2;
mod signing;
mod writer;

use crate::check::cache::PointerCache;
use crate::check::log::{self as checklog, LogChecks};
use crate::check::patch;
use crate::check::{self, Reply};
use crate::config::Limits;
use crate::deploy::service::{self, Ctx};
use crate::error::ApiError;
use crate::http::route::{self, Route};
use crate::storage::layout::Target;
use crate::storage::record::UpdateRecord;
use r2::R2Store;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use worker::*;

const BUCKET: &str = "UPDATES";

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    match handle(req, &env, &ctx).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            if e.status >= 500 {
                console_error!("{}", serde_json::json!({"event": "error", "status": e.status, "error": e.message}));
            }
            reply(Reply::error(&e))
        }
    }
}

async fn handle(mut req: Request, env: &Env, wctx: &Context) -> std::result::Result<Response, ApiError> {
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

    if let Route::Accounts(r) = route {
        return accounts::serve(r, &mut req, env, store, &ctx).await;
    }
    if route.needs_auth() {
        return deploy::serve(route, query, &mut req, env, wctx, store, &ctx).await;
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
            health::observe(env, wctx, &req, &mreq, current.as_deref(), &origin);
            let tick = CHECKS.with(|n| n.replace(n.get().wrapping_add(1)));
            if vars.log_checks.should_log(&mreq, reply.status, tick) {
                console_log!("{}", check::log_line(&mreq, &outcome));
            }
            reply_api(reply)
        }
        Route::Asset { target, sha256, ext, head } => asset(&req, &store, &target, &sha256, ext.as_deref(), head).await,
        Route::Capacitor(r) => capacitor::serve(r, &mut req, &store, query, &ctx, env, wctx).await,
        _ => unreachable!("every other route needs auth"),
    }
}

pub(crate) fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).expect("crypto.getRandomValues");
    b
}

thread_local! {
    /// Channel pointers this isolate read recently (see `cache`).
    pub(crate) static POINTERS: RefCell<PointerCache> = RefCell::new(PointerCache::default());
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
    /// The reply serves the rollout's control, embedded in `record` (not `record` itself).
    control: bool,
    protocol_version: u8,
    channel: crate::validate::Channel,
    reply: Reply,
}

/// `check::respond`, rendered once per cached record: the reply to an unsigned request served
/// a record (the pointer's, or the rollout control embedded in it) depends only on that record,
/// the protocol version and the channel, and rendering it copies and hashes the whole manifest (the multipart boundary is a digest of the parts). A
/// render is kept while the pointer cache still holds its record (`Rc` identity, so a record
/// read again from R2 is rendered again); signed answers are never kept.
fn respond_check(
    mreq: &check::ManifestRequest,
    current: Option<&Rc<UpdateRecord>>,
    outcome: &check::Outcome<'_>,
    signature: Option<&str>,
) -> Reply {
    let (record, control) = match (outcome, current) {
        (check::Outcome::Serve(s), Some(r)) if mreq.expect_signature.is_none() => (r, !std::ptr::eq(*s, &**r)),
        _ => return check::respond(mreq, outcome, signature),
    };
    RENDERED.with(|cell| {
        let mut kept = cell.borrow_mut();
        let same = |e: &&Rendered| {
            Rc::ptr_eq(&e.record, record)
                && e.control == control
                && e.protocol_version == mreq.protocol_version
                && e.channel == mreq.channel
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
                control,
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

/// Streams a stored file from R2 straight to the client (the body never enters wasm). Which
/// stored object is sent is `check::patch`'s decision: a bsdiff patch when the client asked for
/// one against a stored update and it was uploaded, else a precompressed variant the request
/// accepts, else the identity bytes. Anything failing on the way to a patch or variant falls
/// back to the full file: a non-2xx here fails the client's whole update.
async fn asset(
    req: &Request,
    store: &R2Store,
    t: &Target,
    sha256: &str,
    ext: Option<&str>,
    head_only: bool,
) -> std::result::Result<Response, ApiError> {
    let h = |n: &str| header(req, n);
    if !head_only {
        if let Some(resp) = patch_response(store, t, sha256, &h).await {
            return Ok(resp);
        }
    }
    let key = t.file_key(sha256);
    let not_found = || {
        ApiError::not_found(format!(
            "no asset {sha256} for {} {} runtimeVersion {}",
            t.slug, t.platform, t.runtime_version
        ))
    };
    let headers = |obj: &Object, encoding: Option<patch::Encoding>| -> std::result::Result<Headers, ApiError> {
        let h = Headers::new();
        // What the publisher stored with the file, never the URL's extension: a URL can be
        // rewritten by anyone, the stored type only by a publish.
        let ct = obj.http_metadata().content_type.unwrap_or_else(|| "application/octet-stream".into());
        let set = |k: &str, v: &str| h.set(k, v).map_err(internal);
        set("content-type", &ct)?;
        set("etag", &obj.http_etag())?;
        set("cache-control", "public, max-age=31536000, immutable")?;
        set("content-length", &obj.size().to_string())?;
        set("x-content-type-options", "nosniff")?;
        set("content-security-policy", "sandbox")?;
        set("vary", patch::VARY)?;
        if let Some(e) = encoding {
            set("content-encoding", e.header())?;
        }
        Ok(h)
    };
    if head_only {
        let obj = store.0.head(key).await.map_err(internal)?.ok_or_else(not_found)?;
        return Ok(Response::empty().map_err(internal)?.with_headers(headers(&obj, None)?));
    }
    // One read for a variant (only for text files whose request accepts one), then the file.
    let wanted =
        if patch::is_compressible(ext) { patch::choose_encoding(client_accept_encoding(req).as_deref()) } else { None };
    let variant = match wanted {
        Some(e) => store.0.get(t.encoded_key(sha256, e.ext())).execute().await.ok().flatten().map(|o| (o, e)),
        None => None,
    };
    let (obj, encoding) = match variant {
        Some((o, e)) => (o, Some(e)),
        None => (store.0.get(key).execute().await.map_err(internal)?.ok_or_else(not_found)?, None),
    };
    let h = headers(&obj, encoding)?;
    if header(req, "if-none-match").as_deref() == Some(obj.http_etag().as_str()) {
        return Ok(Response::empty().map_err(internal)?.with_status(304).with_headers(h));
    }
    let body = obj.body().ok_or_else(not_found)?.response_body().map_err(internal)?;
    // Manual: the bytes are already encoded; the runtime must not compress them again.
    Ok(Response::from_body(body).map_err(internal)?.with_headers(h).with_encode_body(EncodeBody::Manual))
}

/// The patch reply, if `check::patch` picks one and it is stored: one record read and one GET.
async fn patch_response(
    store: &R2Store,
    t: &Target,
    sha256: &str,
    h: &dyn Fn(&str) -> Option<String>,
) -> Option<Response> {
    let p = patch::candidate(store, t, sha256, h).await?;
    let obj = store.0.get(&p.key).execute().await.ok().flatten()?;
    let size = obj.size();
    let body = obj.body()?.response_body().ok()?;
    let headers = Headers::new();
    for (k, v) in p.headers() {
        headers.set(k, &v).ok()?;
    }
    headers.set("content-length", &size.to_string()).ok()?;
    headers.set("vary", patch::VARY).ok()?;
    headers.set("x-content-type-options", "nosniff").ok()?;
    Some(Response::from_body(body).ok()?.with_headers(headers))
}

/// The client's own `Accept-Encoding`. Cloudflare (and `wrangler dev`, to match) replaces the
/// header a Worker sees with `br, gzip` and keeps the client's value in
/// `request.cf.clientAcceptEncoding` (absent when the client sent none); without `cf` (not on
/// Cloudflare) the header is the client's.
fn client_accept_encoding(req: &Request) -> Option<String> {
    let cf = js_sys::Reflect::get(req.inner(), &"cf".into()).ok().filter(|v| v.is_object());
    match cf {
        Some(cf) => js_sys::Reflect::get(&cf, &"clientAcceptEncoding".into()).ok()?.as_string(),
        None => header(req, "accept-encoding"),
    }
}

pub(crate) fn header(req: &Request, name: &str) -> Option<String> {
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

pub(crate) fn reply_api(r: Reply) -> std::result::Result<Response, ApiError> {
    reply(r).map_err(internal)
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("internal error: {e}"))
}

/// Hourly (wrangler.toml `[triggers]`): collect unnamed files of the next few apps' runtimes,
/// each through its app's writer, and move a page of audit entries still in R2 into D1. The scan
/// position is kept in R2 between runs, so each run does a bounded amount of work.
#[event(scheduled)]
pub async fn scheduled(_ev: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    if let Err(e) = writer::collect_next(&env).await {
        console_error!("{}", serde_json::json!({"event": "collect_failed", "error": e.message}));
    }
    // Audit entries written to R2 by earlier versions move into D1, one bounded page per run
    // (a no-op once none are left).
    let moved = async {
        let store = R2Store(env.bucket(BUCKET).map_err(internal)?);
        audit_d1::D1Audit::from_env(&env)?.move_from_r2(&store).await
    }
    .await;
    if let Ok(n @ 1..) = &moved {
        console_log!("{}", serde_json::json!({"event": "audit_moved_to_d1", "entries": n}));
    }
    if let Err(e) = moved {
        console_error!("{}", serde_json::json!({"event": "audit_migration_failed", "error": e.message}));
    }
}
