//! The Worker: parse the route, run the core, and do the I/O the core cannot (streaming file
//! bytes between the client and R2 without copying them into wasm).

mod r2;
mod signing;

use crate::api::{PrepareRequest, UploadResponse};
use crate::cache::PointerCache;
use crate::record::UpdateRecord;
use std::cell::RefCell;
use std::rc::Rc;
use crate::check::{self, Reply};
use crate::config::{self, Limits};
use crate::error::ApiError;
use crate::formpublish::{self, FormPublish};
use crate::layout::Target;
use crate::route::{self, Route};
use crate::service::{self, Ctx};
use crate::{hash, multipart};
use futures_util::StreamExt;
use r2::R2Store;
use serde::Serialize;
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
    if route.needs_auth() {
        let token = env.secret("ADMIN_TOKEN").ok().map(|s| s.to_string());
        config::check_admin(header(&req, "authorization").as_deref(), token.as_deref())?;
    }
    let store = R2Store(env.bucket(BUCKET).map_err(internal)?);
    let limits = Limits::from_vars(&|n| env.var(n).ok().map(|v| v.to_string()))?;
    let public = env.var("PUBLIC_URL").ok().map(|v| v.to_string()).filter(|v| !v.is_empty());
    let origin = public.unwrap_or_else(|| url.origin().ascii_serialization()).trim_end_matches('/').to_string();
    let ctx = Ctx { origin: &origin, now_ms: Date::now().as_millis(), limits, random: &random16 };

    match route {
        Route::Health => json(200, &serde_json::json!({"ok": true, "service": "expo-ota", "version": env!("CARGO_PKG_VERSION")})),
        Route::Manifest => {
            let mreq = check::parse_request(url.query().unwrap_or(""), &|n| header(&req, n))?;
            let current = cached_current(&store, &mreq.target, &mreq.channel, &ctx).await?;
            let outcome = check::decide(&mreq, current.as_deref());
            let signature = match check::needs_server_signature(&mreq, &outcome) {
                Some(body) => signing::sign(env, body.as_bytes()).await?,
                None => None,
            };
            console_log!("{}", check::log_line(&mreq, &outcome));
            reply_api(check::respond(&mreq, &outcome, signature.as_deref()))
        }
        Route::Asset { target, sha256, ext, head } => asset(&req, &store, &target, &sha256, ext.as_deref(), head).await,
        Route::PublishPrepare { target } => {
            let body: PrepareRequest = read_json(&mut req, 1 << 20).await?;
            json(200, &service::prepare(&store, &target, &body, &ctx).await?)
        }
        Route::UploadFile { target, sha256 } => upload(&req, &store, &target, &sha256, &ctx).await,
        Route::PublishCommit { target } => {
            let body = read_json(&mut req, 1 << 20).await?;
            let done = service::commit(&store, &target, body, &ctx).await;
            invalidate(&target);
            json(201, &done?)
        }
        Route::PublishForm { slug } => {
            let done = publish_form(&mut req, &store, &slug, &ctx).await;
            POINTERS.with(|c| c.borrow_mut().invalidate_prefix(&format!("{slug}/")));
            done
        }
        Route::ListUpdates => {
            let slug = route::query_param(url.query().unwrap_or(""), "slug").ok_or_else(|| ApiError::bad_request("missing slug query parameter"))?;
            json(200, &service::list(&store, &slug).await?)
        }
        Route::DeleteRuntime { target } => {
            let done = service::delete_runtime(&store, &target).await;
            invalidate(&target);
            json(200, &done?)
        }
        Route::GetUpdate { target, id } => json(200, &service::get_record(&store, &target, &id).await?),
        Route::DeleteUpdate { target, id } => {
            let done = service::delete_update(&store, &target, &id, &ctx).await;
            invalidate(&target);
            json(200, &done?)
        }
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
}

async fn cached_current(store: &R2Store, t: &Target, channel: &str, ctx: &Ctx<'_>) -> std::result::Result<Option<Rc<UpdateRecord>>, ApiError> {
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
async fn asset(req: &Request, store: &R2Store, t: &Target, sha256: &str, ext: Option<&str>, head_only: bool) -> std::result::Result<Response, ApiError> {
    let key = t.file_key(sha256);
    let not_found = || ApiError::not_found(format!("no asset {sha256} for {} {} runtimeVersion {}", t.slug, t.platform, t.runtime_version));
    let headers = |obj: &Object| -> std::result::Result<Headers, ApiError> {
        let h = Headers::new();
        let ct = match ext {
            Some(e) => crate::export::content_type_for_ext(e).to_string(),
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
async fn upload(req: &Request, store: &R2Store, t: &Target, sha256: &str, ctx: &Ctx<'_>) -> std::result::Result<Response, ApiError> {
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

async fn publish_form(req: &mut Request, store: &R2Store, slug: &str, ctx: &Ctx<'_>) -> std::result::Result<Response, ApiError> {
    let ct = header(req, "content-type").unwrap_or_default();
    if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(ApiError::new(415, "expected a multipart/form-data body"));
    }
    let boundary = multipart::boundary_of(&ct).ok_or_else(|| ApiError::bad_request("multipart/form-data without a boundary"))?;
    let len = header(req, "content-length").and_then(|l| l.trim().parse().ok());
    formpublish::check_content_length(len, ctx)?;
    let mut form = FormPublish::new(slug, &boundary, header(req, "expo-platform").as_deref(), header(req, "expo-runtime-version").as_deref())?;
    let mut body = req.stream().map_err(|e| ApiError::bad_request(format!("cannot read body: {e}")))?;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("cannot read body: {e}")))?;
        form.feed(store, &chunk, ctx).await?;
    }
    json(201, &form.finish(store, ctx).await?)
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
