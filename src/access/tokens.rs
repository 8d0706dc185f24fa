//! Scoped publish tokens in R2 under `_system/tokens/` (no slug can start with `_`). Only the
//! SHA-256 of a token is stored; the secret is shown once, at creation.

pub use crate::access::auth::TokenInfo;
use crate::access::auth::{Scope, TokenRecord};
use crate::deploy::service::Ctx;
use crate::error::ApiError;
use crate::protocol::hash;
use crate::storage::store::{list_all, Condition, ObjectStore, PutOptions};
use crate::{protocol::time, validate};
use serde::{Deserialize, Serialize};

pub const PREFIX: &str = "_system/tokens/";
/// "Last used" is recorded at most this often, so checking a token is not an R2 write.
pub const TOUCH_EVERY_MS: u64 = 3_600_000;

pub fn key(id: &str) -> String {
    format!("{PREFIX}{id}.json")
}

/// A token id as minted: 16 lowercase hex digits (8 random bytes). Only such ids become keys or
/// audit fields.
pub fn is_token_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTokenRequest {
    pub name: String,
    #[serde(default)]
    pub apps: Vec<String>,
    #[serde(default)]
    pub all_apps: bool,
    pub scopes: Vec<String>,
    /// `90d`, `12h`…; none means the token does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTokenResponse {
    /// The secret; shown this once and never stored.
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

pub async fn create<S: ObjectStore>(
    store: &S,
    req: CreateTokenRequest,
    ctx: &Ctx<'_>,
) -> Result<CreateTokenResponse, ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("name must be 1-64 printable characters"));
    }
    let mut apps: Vec<String> = Vec::new();
    for a in &req.apps {
        let a = validate::slug(a)?.to_string();
        if !apps.contains(&a) {
            apps.push(a);
        }
    }
    match (apps.is_empty(), req.all_apps) {
        (true, false) => return Err(ApiError::bad_request("name at least one app (apps) or allApps")),
        (false, true) => return Err(ApiError::bad_request("use either apps or allApps, not both")),
        _ => {}
    }
    if apps.len() > ctx.limits.max_apps_per_token {
        return Err(ApiError::unprocessable(format!(
            "token names {} apps; the limit (MAX_APPS_PER_TOKEN) is {}",
            apps.len(),
            ctx.limits.max_apps_per_token
        )));
    }
    let mut scopes = req.scopes.iter().map(|s| Scope::parse(s)).collect::<Result<Vec<_>, _>>()?;
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(ApiError::bad_request("name at least one scope: publish, rollback, delete, read"));
    }
    let expires_at = req
        .expires_in
        .as_deref()
        .map(crate::access::auth::parse_duration)
        .transpose()?
        .map(|d| time::format_millis(ctx.now_ms + d));
    let id = hash::hex(&(ctx.random)()[..8]);
    let secret = format!("{}{}", hash::hex(&(ctx.random)()), hash::hex(&(ctx.random)()));
    let token = format!("{}{id}_{secret}", crate::access::auth::TOKEN_PREFIX);
    let record = TokenRecord {
        hash: hash::hex(&hash::sha256(token.as_bytes())),
        info: TokenInfo {
            id: id.clone(),
            name: name.to_string(),
            apps,
            all_apps: req.all_apps,
            scopes,
            created_at: time::format_millis(ctx.now_ms),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        },
    };
    let body = serde_json::to_vec(&record).expect("serializes");
    if store.put(&key(&id), body, PutOptions { condition: Condition::IfAbsent, ..Default::default() }).await?.is_none()
    {
        return Err(ApiError::conflict("token id collision; try again"));
    }
    Ok(CreateTokenResponse { token, info: record.info.clone() })
}

/// The stored record and its etag, or `None` for an unknown id.
pub async fn lookup<S: ObjectStore>(store: &S, id: &str) -> Result<Option<(TokenRecord, String)>, ApiError> {
    match store.get(&key(id)).await? {
        None => Ok(None),
        Some((meta, bytes)) => {
            let r: TokenRecord =
                serde_json::from_slice(&bytes).map_err(|e| ApiError::internal(format!("corrupt token record: {e}")))?;
            Ok(Some((r, meta.etag)))
        }
    }
}

pub async fn list<S: ObjectStore>(store: &S) -> Result<TokenList, ApiError> {
    let mut tokens = Vec::new();
    for o in list_all(store, PREFIX).await? {
        if let Some(id) = o.key.strip_prefix(PREFIX).and_then(|k| k.strip_suffix(".json")) {
            if let Some((r, _)) = lookup(store, id).await? {
                tokens.push(r.info);
            }
        }
    }
    tokens.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    Ok(TokenList { tokens })
}

/// Revokes (the record stays, for the audit trail).
pub async fn revoke<S: ObjectStore>(store: &S, id: &str, now_ms: u64) -> Result<TokenInfo, ApiError> {
    if !is_token_id(id) {
        return Err(ApiError::bad_request("token id must be 16 lowercase hex digits"));
    }
    let (mut r, etag) = lookup(store, id).await?.ok_or_else(|| ApiError::not_found(format!("no token {id}")))?;
    if r.revoked_at.is_none() {
        r.revoked_at = Some(time::format_millis(now_ms));
        write(store, &r, etag).await?.ok_or_else(|| ApiError::conflict("token changed meanwhile; try again"))?;
    }
    Ok(r.info)
}

/// Gives a token a new name (a conditional write on the version read: a concurrent change wins
/// and this one asks to retry).
pub async fn rename<S: ObjectStore>(
    store: &S,
    mut r: TokenRecord,
    etag: String,
    name: &str,
) -> Result<TokenInfo, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("name must be 1-64 printable characters"));
    }
    r.name = name.to_string();
    write(store, &r, etag).await?.ok_or_else(|| ApiError::conflict("token changed meanwhile; try again"))?;
    Ok(r.info)
}

/// Records use at most once per [`TOUCH_EVERY_MS`]; losing a race is fine.
pub async fn touch<S: ObjectStore>(store: &S, mut r: TokenRecord, etag: String, now_ms: u64) -> Result<(), ApiError> {
    if r.last_used_at
        .as_deref()
        .and_then(time::parse_millis)
        .is_some_and(|last| now_ms.saturating_sub(last) < TOUCH_EVERY_MS)
    {
        return Ok(());
    }
    r.last_used_at = Some(time::format_millis(now_ms));
    write(store, &r, etag).await.map(|_| ())
}

async fn write<S: ObjectStore>(
    store: &S,
    r: &TokenRecord,
    etag: String,
) -> Result<Option<crate::storage::store::ObjectMeta>, ApiError> {
    store
        .put(
            &key(&r.id),
            serde_json::to_vec(r).expect("serializes"),
            PutOptions { condition: Condition::IfEtag(etag), ..Default::default() },
        )
        .await
        .map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::auth::{authorize, token_id, verify_token, Action, Principal};
    use crate::config::Limits;
    use crate::storage::store::MemoryStore;

    fn rand16() -> [u8; 16] {
        static N: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::array::from_fn(|i| n.wrapping_mul(31).wrapping_add(i as u8))
    }
    fn ctx(now_ms: u64) -> Ctx<'static> {
        Ctx {
            origin: "https://x",
            now_ms,
            limits: Limits { max_apps_per_token: 2, ..Limits::default() },
            random: &rand16,
        }
    }
    fn req(apps: &[&str], scopes: &[&str]) -> CreateTokenRequest {
        CreateTokenRequest {
            name: "ci-demo".into(),
            apps: apps.iter().map(|s| s.to_string()).collect(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires_in: Some("1d".into()),
            ..Default::default()
        }
    }

    #[test]
    fn lifecycle() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            let c = create(&s, req(&["demo-app"], &["publish", "read", "publish"]), &ctx(1000)).await.unwrap();
            assert_eq!(c.info.scopes, vec![Scope::Publish, Scope::Read]);
            assert_eq!(c.info.expires_at.as_deref(), Some("1970-01-02T00:00:01.000Z"));
            // Only the digest is stored.
            let stored = String::from_utf8(s.bytes(&key(&c.info.id)).unwrap()).unwrap();
            assert!(!stored.contains(&c.token) && stored.contains(&hash::hex(&hash::sha256(c.token.as_bytes()))));
            let id = token_id(&c.token).unwrap();
            assert_eq!(id, c.info.id);
            let (r, etag) = lookup(&s, id).await.unwrap().unwrap();
            let r = verify_token(&c.token, Some(r), 2000).unwrap();
            assert!(authorize(&Principal::Token(Box::new(r.clone())), Action::Publish, Some("demo-app")).is_ok());
            assert!(verify_token(&c.token, Some(r.clone()), 86_400_000 + 1000).is_err(), "expired after a day");

            // Coarse last-use: one write per hour at most.
            touch(&s, r.clone(), etag.clone(), 5000).await.unwrap();
            let (r2, etag2) = lookup(&s, id).await.unwrap().unwrap();
            assert_eq!(r2.last_used_at.as_deref(), Some("1970-01-01T00:00:05.000Z"));
            touch(&s, r2.clone(), etag2.clone(), 6000).await.unwrap();
            assert_eq!(lookup(&s, id).await.unwrap().unwrap().1, etag2, "no write within the hour");

            let listed = list(&s).await.unwrap();
            assert_eq!(listed.tokens.len(), 1);
            assert!(!serde_json::to_string(&listed).unwrap().contains("hash"));
            revoke(&s, id, 7000).await.unwrap();
            let (r3, _) = lookup(&s, id).await.unwrap().unwrap();
            assert!(verify_token(&c.token, Some(r3), 8000).unwrap_err().to_string().contains("revoked"));
            assert_eq!(revoke(&s, "ffffffffffffffff", 1).await.unwrap_err().status, 404);
            assert_eq!(revoke(&s, "FFFFFFFFFFFFFFFF", 1).await.unwrap_err().status, 400, "ids are lowercase");
            assert_eq!(revoke(&s, "../../x", 1).await.unwrap_err().status, 400);
        });
    }

    #[test]
    fn creation_rules() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            let e = create(&s, req(&["a", "b", "c"], &["read"]), &ctx(0)).await.unwrap_err();
            assert_eq!(e.status, 422);
            assert!(e.message.contains("MAX_APPS_PER_TOKEN"));
            assert_eq!(create(&s, req(&[], &["read"]), &ctx(0)).await.unwrap_err().status, 400);
            assert_eq!(create(&s, req(&["../x"], &["read"]), &ctx(0)).await.unwrap_err().status, 400);
            assert_eq!(create(&s, req(&["a"], &["admin"]), &ctx(0)).await.unwrap_err().status, 400);
            assert_eq!(create(&s, req(&["a"], &[]), &ctx(0)).await.unwrap_err().status, 400);
            let mut all = req(&[], &["read"]);
            all.all_apps = true;
            assert!(create(&s, all, &ctx(0)).await.unwrap().info.all_apps);
        });
    }
}
