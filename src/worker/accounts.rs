//! Account routes in the Worker and session authentication for every authenticated route: the
//! D1 control plane, PBKDF2 through WebCrypto, and the request parts the core needs. Nothing here
//! decides who may do what (`access::accounts` and `auth::authorize` do).

use super::d1::D1Plane;
use super::r2::R2Store;
use super::{header, internal, reply_api};
use crate::access::accounts::api::{self, Deps, SessionAuth, SessionRequest};
use crate::access::accounts::password::Kdf;
use crate::access::accounts::route::AccountRoute;
use crate::access::accounts::session;
use crate::access::auth;
use crate::deploy::service::Ctx;
use crate::error::ApiError;
use crate::http::route::Route;
use futures_util::StreamExt;
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Crypto, CryptoKey, SubtleCrypto};
use worker::{Env, Request, Response};

/// PBKDF2-HMAC-SHA-256 through WebCrypto (`crypto.subtle.deriveBits`), which runs natively
/// outside the wasm instance.
pub struct WebKdf;

impl Kdf for WebKdf {
    async fn pbkdf2_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> Result<[u8; 32], ApiError> {
        derive(password, salt, iterations)
            .await
            .map_err(|e| ApiError::internal(format!("PBKDF2 through WebCrypto failed: {e:?}")))
    }
}

async fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Result<[u8; 32], JsValue> {
    let crypto: Crypto = Reflect::get(&js_sys::global(), &"crypto".into())?.dyn_into()?;
    let subtle: SubtleCrypto = crypto.subtle();
    let raw: Object = Uint8Array::from(password).into();
    let usages = Array::of1(&"deriveBits".into());
    let key: CryptoKey =
        JsFuture::from(subtle.import_key_with_str("raw", &raw, "PBKDF2", false, &usages)?).await?.dyn_into()?;
    let alg = Object::new();
    Reflect::set(&alg, &"name".into(), &"PBKDF2".into())?;
    Reflect::set(&alg, &"hash".into(), &"SHA-256".into())?;
    Reflect::set(&alg, &"iterations".into(), &JsValue::from(iterations))?;
    Reflect::set(&alg, &"salt".into(), &Uint8Array::from(salt))?;
    let bits = JsFuture::from(subtle.derive_bits_with_object(&alg, &key, 256)?).await?;
    let out = Uint8Array::new(&bits).to_vec();
    out.try_into().map_err(|_| JsValue::from_str("deriveBits returned other than 32 bytes"))
}

/// The session a request presents (`None`: it presents none; token authentication judges it).
pub async fn session_of(req: &Request, env: &Env, now_ms: u64) -> Option<Result<SessionAuth, ApiError>> {
    let authorization = header(req, "authorization");
    let cookie = header(req, "cookie");
    // Pure check first: requests with a scoped token or the ADMIN_TOKEN never touch D1.
    session::credential(authorization.as_deref(), cookie.as_deref())?;
    let cp = match D1Plane::from_env(env) {
        Ok(cp) => cp,
        Err(e) => return Some(Err(e)),
    };
    let own_origin = req.url().map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    let (origin, csrf) = (header(req, "origin"), header(req, session::CSRF_HEADER));
    let method = req.method().to_string();
    let sreq = SessionRequest {
        method: &method,
        authorization: authorization.as_deref(),
        cookie: cookie.as_deref(),
        origin: origin.as_deref(),
        csrf: csrf.as_deref(),
        own_origin: &own_origin,
    };
    api::authenticate(&cp, &sreq, now_ms).await
}

/// Serves one account route: sign-in before authentication; anything else authenticated (a
/// session, or a token through the deploy path's authentication), rate limited per credential,
/// run by the core, audited.
pub async fn serve(
    route: AccountRoute,
    req: &mut Request,
    env: &Env,
    store: R2Store,
    ctx: &Ctx<'_>,
) -> Result<Response, ApiError> {
    // Without ADMIN_TOKEN every authenticated route is closed (503), sign-in included.
    let admin = env.secret("ADMIN_TOKEN").ok().map(|s| s.to_string());
    auth::admin_secret(admin.as_deref())?;
    let cp = D1Plane::from_env(env)?;
    let body = read_body(req, ctx.limits.max_json_bytes as usize).await?;
    if route == AccountRoute::Login {
        let address = header(req, "cf-connecting-ip");
        return reply_api(api::login(&cp, &WebKdf, &body, address.as_deref(), ctx).await?);
    }
    let session = match session_of(req, env, ctx.now_ms).await {
        Some(found) => Some(found?),
        None => None,
    };
    let who = match &session {
        Some(s) => s.principal.clone(),
        None => super::deploy::authenticate(req, &Route::Accounts(route.clone()), env, &store, ctx).await?,
    };
    super::deploy::rate_limit(env, &who).await?;
    let deps = Deps { cp: &cp, kdf: &WebKdf, store: &store };
    let done = api::handle(&deps, &who, session.as_ref(), route, &body, ctx).await;
    if let Some(entry) = done.audit {
        super::deploy::audit_append(env, entry, ctx).await;
    }
    reply_api(done.reply?)
}

/// The whole body, at most `cap` bytes (refused from Content-Length before reading, and while
/// reading whatever it says).
async fn read_body(req: &mut Request, cap: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::too_large(format!("JSON body is larger than {cap} bytes (MAX_JSON_BYTES)"));
    if header(req, "content-length").and_then(|l| l.trim().parse::<usize>().ok()).is_some_and(|l| l > cap) {
        return Err(too_large());
    }
    if matches!(req.method(), worker::Method::Get | worker::Method::Head) {
        return Ok(Vec::new());
    }
    let mut buf = Vec::new();
    let Ok(mut stream) = req.stream() else { return Ok(buf) };
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.map_err(internal)?);
        if buf.len() > cap {
            return Err(too_large());
        }
    }
    Ok(buf)
}
