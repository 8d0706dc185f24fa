//! The Capacitor plugin's endpoints and the bundle/APK downloads in the Worker: read the app's
//! Capacitor state (kept per isolate for CHECK_CACHE_MS, dropped when this isolate writes it),
//! call the core's [`plugin`] decisions, send the reply. Downloads stream from R2 (the bytes never
//! enter wasm) with `Range` support. Nothing here writes.

use super::r2::R2Store;
use super::{header, internal, reply_api};
use crate::capacitor::route::{CapRoute, ChannelVerb};
use crate::capacitor::state::{self, AppState};
use crate::capacitor::{deploy as capdeploy, health as cap_health, plugin, ByteRange};
use crate::deploy::service::Ctx;
use crate::error::ApiError;
use crate::validate::Slug;
use futures_util::StreamExt;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use worker::{Context, Env, Headers, Request, Response};

type Result<T> = std::result::Result<T, ApiError>;

/// Apps whose state one isolate keeps at most (bounded memory; dropped all at once when full).
const MAX_CACHED: usize = 256;

thread_local! {
    static STATES: RefCell<HashMap<String, (u64, Rc<AppState>)>> = RefCell::new(HashMap::new());
}

/// Forgets cached states under a storage prefix (the deploy path wrote them).
pub fn invalidate(prefix: &str) {
    STATES.with(|c| c.borrow_mut().retain(|k, _| !k.starts_with(prefix)));
}

async fn app_state(store: &R2Store, slug: &str, ctx: &Ctx<'_>) -> Result<Rc<AppState>> {
    let key = state::state_key(slug);
    let ttl = ctx.limits.check_cache_ms;
    let hit = STATES
        .with(|c| c.borrow().get(&key).filter(|(at, _)| ctx.now_ms.saturating_sub(*at) < ttl).map(|(_, s)| s.clone()));
    if let Some(s) = hit {
        return Ok(s);
    }
    let fresh = Rc::new(state::load(store, slug).await?.0);
    if ttl > 0 {
        STATES.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= MAX_CACHED {
                c.clear();
            }
            c.insert(key, (ctx.now_ms, fresh.clone()));
        });
    }
    Ok(fresh)
}

/// The request body, at most `cap` bytes (refused by Content-Length before reading, and while
/// reading whatever Content-Length says).
async fn body(req: &mut Request, cap: usize) -> Result<Vec<u8>> {
    let too_large = || ApiError::too_large(format!("JSON body is larger than {cap} bytes (MAX_JSON_BYTES)"));
    if header(req, "content-length").and_then(|l| l.trim().parse::<usize>().ok()).is_some_and(|l| l > cap) {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    let Ok(mut stream) = req.stream() else { return Ok(buf) };
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.map_err(|e| ApiError::bad_request(format!("cannot read body: {e}")))?);
        if buf.len() > cap {
            return Err(too_large());
        }
    }
    Ok(buf)
}

pub async fn serve(
    route: CapRoute,
    req: &mut Request,
    store: &R2Store,
    query: &str,
    ctx: &Ctx<'_>,
    env: &Env,
    wctx: &Context,
) -> Result<Response> {
    let slug = route.slug().to_string();
    // Downloads stream; everything else reads at most one small body and the app's state, each
    // at one await (every await point of an async fn is more wasm).
    let file = match &route {
        CapRoute::Bundle { sha256, head, .. } => {
            Some((state::bundle_key(&slug, sha256), capdeploy::ZIP_TYPE, None, *head))
        }
        CapRoute::ApkFile { sha256, head, .. } => {
            let name = format!("attachment; filename=\"{slug}-{}.apk\"", &sha256[..12]);
            Some((state::apk_key(&slug, sha256), capdeploy::APK_TYPE, Some(name), *head))
        }
        _ => None,
    };
    if let Some((key, content_type, disposition, head)) = file {
        return download(req, store, &key, content_type, disposition.as_deref(), head).await;
    }
    let reads_body = !matches!(
        route,
        CapRoute::ApkLatest { .. } | CapRoute::ChannelSelf { verb: ChannelVerb::List | ChannelVerb::Unset, .. }
    );
    let raw = if reads_body { body(req, ctx.limits.max_json_bytes as usize).await? } else { Vec::new() };
    if let CapRoute::Stats { .. } = route {
        let events = plugin::parse_stats(&raw)?;
        if super::health::enabled(env) && events.iter().any(|e| e.kind() != plugin::StatKind::Other) {
            // Health never fails a stats call: without the state, the events are not counted.
            if let (Ok(s), Ok(app)) = (app_state(store, &slug, ctx).await, Slug::parse(&slug)) {
                for (target, served, signals) in cap_health::signals(&s, &app, &events) {
                    super::health::record(env, wctx, &target, &served, &signals, ctx.origin);
                }
            }
        }
        return reply_api(plugin::stats_reply(&events));
    }
    let device = if reads_body { plugin::DeviceInfo::parse_json(&raw)? } else { plugin::DeviceInfo::default() };
    let s = app_state(store, &slug, ctx).await?;
    let reply = match route {
        CapRoute::Updates { .. } => plugin::decide_update(&s, &device, ctx.origin, &slug),
        CapRoute::Check { .. } => plugin::decide_compat(&s, &device, ctx.origin, &slug),
        CapRoute::ChannelSelf { verb, .. } => match verb {
            ChannelVerb::List => plugin::channel_list(&s),
            ChannelVerb::Unset => plugin::channel_unset(),
            ChannelVerb::Set => plugin::channel_set(&s, &device),
            ChannelVerb::Get => plugin::channel_get(&s, &device),
        },
        CapRoute::ApkLatest { .. } => {
            let channel = crate::http::route::query_param(query, "channel")
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| state::DEFAULT_APK_CHANNEL.into());
            let latest = s.apk.get(&channel).and_then(|l| l.last()).ok_or_else(|| {
                ApiError::not_found(format!("no APK published on channel {:?}", crate::validate::truncate(&channel)))
            })?;
            let v = serde_json::json!({
                "version": latest.version,
                "url": state::apk_url(ctx.origin, &slug, &latest.sha256),
                "sha256": latest.sha256,
                "size": latest.size,
                "publishedAt": latest.published_at,
                "channel": channel,
            });
            crate::deploy::dispatch::json(200, &v)?
        }
        _ => return Err(ApiError::internal("not a public Capacitor route")),
    };
    reply_api(reply)
}

/// Streams an immutable, content-addressed object with 200 or 206 (`Range`), never re-encoded.
async fn download(
    req: &Request,
    store: &R2Store,
    key: &str,
    content_type: &str,
    disposition: Option<&str>,
    head_only: bool,
) -> Result<Response> {
    let not_found = || ApiError::not_found("no such file (deleted, or never uploaded)");
    let meta = store.0.head(key.to_string()).await.map_err(internal)?.ok_or_else(not_found)?;
    let size = meta.size();
    let range = ByteRange::parse(header(req, "range").as_deref(), size);
    let h = Headers::new();
    let set = |k: &str, v: &str| h.set(k, v).map_err(internal);
    set("content-type", content_type)?;
    set("etag", &meta.http_etag())?;
    // no-transform: the bytes must arrive exactly as stored (the plugin hashes them).
    set("cache-control", "public, max-age=31536000, immutable, no-transform")?;
    set("accept-ranges", "bytes")?;
    set("x-content-type-options", "nosniff")?;
    if let Some(d) = disposition {
        set("content-disposition", d)?;
    }
    if let Some(cr) = range.content_range(size) {
        set("content-range", &cr)?;
    }
    let (status, len, r2range) = match range {
        ByteRange::Whole => (200, size, None),
        ByteRange::Part { offset, len } => (206, len, Some(worker::Range::OffsetWithLength { offset, length: len })),
        ByteRange::Unsatisfiable => {
            return Ok(Response::empty().map_err(internal)?.with_status(416).with_headers(h));
        }
    };
    set("content-length", &len.to_string())?;
    if head_only {
        return Ok(Response::empty().map_err(internal)?.with_status(status).with_headers(h));
    }
    if status == 200 && header(req, "if-none-match").as_deref() == Some(meta.http_etag().as_str()) {
        return Ok(Response::empty().map_err(internal)?.with_status(304).with_headers(h));
    }
    let mut get = store.0.get(key.to_string());
    if let Some(r) = r2range {
        get = get.range(r);
    }
    let obj = get.execute().await.map_err(internal)?.ok_or_else(not_found)?;
    let body = obj.body().ok_or_else(not_found)?.response_body().map_err(internal)?;
    Ok(Response::from_body(body).map_err(internal)?.with_status(status).with_headers(h))
}
