//! Who may do what. `ADMIN_TOKEN` (Worker secret) is the root credential; scoped tokens are
//! minted with it and stored only as SHA-256 digests. Answers distinguish 401 (who are you?)
//! from 403 (not allowed); secrets never appear in errors or logs.

use crate::access::secret::SecretDigest;
use crate::error::ApiError;
use crate::{protocol::time, validate};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Publish,
    Rollback,
    Delete,
    Read,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s.trim() {
            "publish" => Ok(Scope::Publish),
            "rollback" => Ok(Scope::Rollback),
            "delete" => Ok(Scope::Delete),
            "read" => Ok(Scope::Read),
            other => Err(ApiError::bad_request(format!(
                "unknown scope {:?}: use publish, rollback, delete or read",
                validate::truncate(other)
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Publish => "publish",
            Scope::Rollback => "rollback",
            Scope::Delete => "delete",
            Scope::Read => "read",
        }
    }
}

/// What a request wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Publish,
    /// Rollback, rollback-to-embedded and promote (republishing what was published).
    Rollback,
    Delete,
    Read,
    /// Minting, listing and revoking tokens, and the cross-app audit log: ADMIN_TOKEN only.
    Admin,
    /// An app's members and API keys: its owners (and admins); never a token.
    Manage,
}

impl Action {
    fn scope(self) -> Option<Scope> {
        match self {
            Action::Publish => Some(Scope::Publish),
            Action::Rollback => Some(Scope::Rollback),
            Action::Delete => Some(Scope::Delete),
            Action::Read => Some(Scope::Read),
            Action::Admin | Action::Manage => None,
        }
    }
}

/// A token as anyone may see it: everything but the digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub apps: Vec<String>,
    #[serde(default)]
    pub all_apps: bool,
    pub scopes: Vec<Scope>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

/// What is stored: the public part plus the SHA-256 hex of the whole secret token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub hash: String,
}

impl std::ops::Deref for TokenRecord {
    type Target = TokenInfo;
    fn deref(&self) -> &TokenInfo {
        &self.info
    }
}

impl std::ops::DerefMut for TokenRecord {
    fn deref_mut(&mut self) -> &mut TokenInfo {
        &mut self.info
    }
}

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Token(Box<TokenRecord>),
    /// A signed-in user (session), with their role in each app.
    User(Box<crate::access::accounts::UserPrincipal>),
}

impl Principal {
    /// Audit identity: never the secret.
    pub fn actor(&self) -> (String, Option<String>) {
        match self {
            Principal::Admin => ("admin".into(), None),
            Principal::Token(t) => (t.id.clone(), Some(t.name.clone())),
            Principal::User(u) => (format!("user:{}", u.login), Some(u.login.clone())),
        }
    }
}

pub const TOKEN_PREFIX: &str = "ota_";

/// `ota_<16 hex id>_<64 hex secret>`: the id finds the record, the digest of the whole string
/// authenticates it.
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let ok = id.len() == 16
        && secret.len() == 64
        && id.bytes().chain(secret.bytes()).all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    ok.then_some(id)
}

/// Why a caller may not do what it asked. The status each maps to is decided in
/// `crate::http::status` (503, 401, 403).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// Without ADMIN_TOKEN every deploy operation is refused: the server never falls open.
    #[error("deploy operations are disabled: the ADMIN_TOKEN secret is not set (wrangler secret put ADMIN_TOKEN, or .dev.vars locally)")]
    NotConfigured,
    /// Who is calling is unknown: no, a malformed, an unknown, a wrong, a revoked or an expired token.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but the app or the action is outside its scope.
    #[error("{0}")]
    Forbidden(String),
}

pub fn bearer(authorization: Option<&str>) -> Result<&str, AccessError> {
    authorization
        .map(str::trim)
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 512)
        .ok_or_else(|| AccessError::Unauthenticated("missing Authorization: Bearer <token>".into()))
}

/// True when `given` is the root credential. Both are hashed first, so the constant-time
/// comparison runs over fixed-length digests and leaks neither content nor length.
pub fn is_admin(given: &str, admin_token: &str) -> bool {
    SecretDigest::of(given.as_bytes()).ct_eq(&SecretDigest::of(admin_token.as_bytes()))
}

/// The ADMIN_TOKEN secret, or 503: without it every deploy operation is refused, never open.
pub fn admin_secret(admin_token: Option<&str>) -> Result<&str, AccessError> {
    admin_token.map(str::trim).filter(|s| !s.is_empty()).ok_or(AccessError::NotConfigured)
}

/// Checks a presented scoped token against its stored record.
pub fn verify_token(given: &str, record: Option<TokenRecord>, now_ms: u64) -> Result<TokenRecord, AccessError> {
    let invalid = || AccessError::Unauthenticated("invalid token".into());
    let r = record.ok_or_else(invalid)?;
    let stored = SecretDigest::from_hex(&r.hash).ok_or_else(invalid)?;
    // SecretDigest has no `==`: ct_eq (constant time) is the only comparison there is.
    if !SecretDigest::of(given.as_bytes()).ct_eq(&stored) {
        return Err(invalid());
    }
    if r.revoked_at.is_some() {
        return Err(AccessError::Unauthenticated(format!("token {} was revoked", r.id)));
    }
    if r.expires_at.as_deref().and_then(time::parse_millis).is_some_and(|e| e <= now_ms) {
        return Err(AccessError::Unauthenticated(format!("token {} has expired", r.id)));
    }
    Ok(r)
}

/// May `who` do `action` on app `slug` (None = not app-specific)?
pub fn authorize(who: &Principal, action: Action, slug: Option<&str>) -> Result<(), AccessError> {
    let t = match who {
        Principal::Admin => return Ok(()),
        Principal::Token(t) => t,
        Principal::User(u) => return authorize_user(u, action, slug),
    };
    let Some(scope) = action.scope() else {
        return Err(AccessError::Forbidden("this operation needs the ADMIN_TOKEN".into()));
    };
    if !t.scopes.contains(&scope) {
        return Err(AccessError::Forbidden(format!("token {} lacks the {:?} scope", t.id, scope.as_str())));
    }
    match slug {
        Some(s) if !t.all_apps && !t.apps.iter().any(|a| a == s) => {
            Err(AccessError::Forbidden(format!("token {} is not valid for app {:?}", t.id, validate::truncate(s))))
        }
        None if !t.all_apps => Err(AccessError::Forbidden(format!("token {} is limited to its apps; name one", t.id))),
        _ => Ok(()),
    }
}

/// A user: an admin may do anything; anyone else what their role in the named app permits
/// (`accounts::Role::permits`), and nothing that names no app.
fn authorize_user(
    u: &crate::access::accounts::UserPrincipal,
    action: Action,
    slug: Option<&str>,
) -> Result<(), AccessError> {
    if u.admin {
        return Ok(());
    }
    if action == Action::Admin {
        return Err(AccessError::Forbidden(format!(
            "{} is not an admin: this needs an admin account or the ADMIN_TOKEN",
            u.login
        )));
    }
    let Some(slug) = slug else {
        return Err(AccessError::Forbidden(format!("{} is not an admin: name one of your apps", u.login)));
    };
    match u.role_in(slug) {
        Some(role) if role.permits(action) => Ok(()),
        Some(role) => Err(AccessError::Forbidden(format!(
            "{} is a {} of {:?}, which may not {}",
            u.login,
            role.as_str(),
            validate::truncate(slug),
            action.verb()
        ))),
        None => {
            Err(AccessError::Forbidden(format!("{} is not a member of app {:?}", u.login, validate::truncate(slug))))
        }
    }
}

impl Action {
    /// For messages: "may not <verb>".
    pub fn verb(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Rollback => "roll back or promote",
            Action::Delete => "delete",
            Action::Read => "read",
            Action::Admin => "administer the server",
            Action::Manage => "manage members or API keys",
        }
    }
}

/// `90d`, `12h`, `30m`, `3600s` → milliseconds.
pub fn parse_duration(s: &str) -> Result<u64, ApiError> {
    let s = s.trim();
    let bad = || ApiError::bad_request(format!("invalid duration {:?}: use e.g. 90d, 12h, 30m", validate::truncate(s)));
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms).filter(|v| *v > 0 && *v <= 3650 * 86_400_000).ok_or_else(bad)
}

/// Why a request was not authenticated: the answer to send and, when a genuine token (known
/// id, matching secret) was refused for being revoked or expired, the audit entry recording
/// that it is still in use. Unknown or malformed tokens carry none: anyone could send those, and
/// auditing them would let anyone fill the log.
#[derive(Debug)]
pub struct AuthFailure {
    pub error: ApiError,
    pub audit: Option<Box<crate::access::audit::AuditEntry>>,
}

impl From<ApiError> for AuthFailure {
    fn from(error: ApiError) -> Self {
        Self { error, audit: None }
    }
}

impl From<AccessError> for AuthFailure {
    fn from(e: AccessError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<crate::storage::store::StoreError> for AuthFailure {
    fn from(e: crate::storage::store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<AuthFailure> for ApiError {
    fn from(f: AuthFailure) -> Self {
        f.error
    }
}

/// Who is calling: the ADMIN_TOKEN (503 when it is not configured: deploy routes never fall
/// open), else a scoped token found by its id and checked against its digest; its "last used"
/// is recorded at most hourly (`tokens::touch`). 401 for a missing, malformed, unknown, wrong,
/// revoked or expired token.
pub async fn authenticate<S: crate::storage::store::ObjectStore>(
    store: &S,
    admin_token: Option<&str>,
    authorization: Option<&str>,
    now_ms: u64,
) -> Result<Principal, AuthFailure> {
    use crate::access::{audit::AuditEntry, tokens};
    let admin = admin_secret(admin_token)?;
    let given = bearer(authorization)?;
    if is_admin(given, admin) {
        return Ok(Principal::Admin);
    }
    let id = token_id(given).ok_or_else(|| ApiError::unauthorized("invalid token"))?;
    let Some((record, etag)) = tokens::lookup(store, id).await? else {
        return Err(ApiError::unauthorized("invalid token").into());
    };
    match verify_token(given, Some(record.clone()), now_ms) {
        Ok(r) => {
            tokens::touch(store, r.clone(), etag, now_ms).await?;
            Ok(Principal::Token(Box::new(r)))
        }
        Err(error) => {
            let error = ApiError::from(error);
            // Was the secret right? The same check with revocation and expiry set aside.
            let mut live = record.clone();
            (live.revoked_at, live.expires_at) = (None, None);
            let genuine = verify_token(given, Some(live), now_ms).is_ok();
            Err(AuthFailure { audit: genuine.then(|| Box::new(AuditEntry::token_refused(&record, &error))), error })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::hash;

    fn token(scopes: Vec<Scope>, apps: &[&str], all: bool) -> TokenRecord {
        TokenRecord {
            hash: hash::hex(&hash::sha256(b"secret")),
            info: TokenInfo {
                id: "0123456789abcdef".into(),
                name: "ci".into(),
                apps: apps.iter().map(|s| s.to_string()).collect(),
                all_apps: all,
                scopes,
                created_at: "2026-01-01T00:00:00.000Z".into(),
                expires_at: None,
                revoked_at: None,
                last_used_at: None,
            },
        }
    }

    #[test]
    fn scope_names_round_trip() {
        for scope in [Scope::Publish, Scope::Rollback, Scope::Delete, Scope::Read] {
            assert_eq!(Scope::parse(scope.as_str()).unwrap(), scope);
            assert_eq!(serde_json::to_string(&scope).unwrap(), format!("\"{}\"", scope.as_str()));
        }
    }

    #[test]
    fn token_id_non_hex_characters_are_refused() {
        let secret = "ab".repeat(32);
        assert_eq!(token_id(&format!("ota_0123456789abcdeg_{secret}")), None, "g in the id");
        assert_eq!(token_id(&format!("ota_0123456789abcdef_{}x", &secret[1..])), None, "x in the secret");
    }

    #[test]
    fn bearer_empty_or_oversized_is_401() {
        assert!(bearer(Some("Bearer ")).is_err());
        assert!(bearer(Some(&format!("Bearer {}", "a".repeat(513)))).is_err());
        assert_eq!(bearer(Some(&format!("Bearer {}", "a".repeat(512)))).unwrap().len(), 512);
    }

    #[test]
    fn token_format() {
        let t = format!("ota_{}_{}", "0123456789abcdef", "ab".repeat(32));
        assert_eq!(token_id(&t), Some("0123456789abcdef"));
        assert_eq!(token_id("ota_0123456789abcdef_short"), None);
        assert_eq!(token_id(&t.to_uppercase()), None);
        assert_eq!(token_id("anything"), None);
    }

    #[test]
    fn verify_distinguishes_failures() {
        let r = token(vec![Scope::Publish], &["demo-app"], false);
        assert!(verify_token("secret", Some(r.clone()), 0).is_ok());
        assert_eq!(ApiError::from(verify_token("Secret", Some(r.clone()), 0).unwrap_err()).status, 401);
        assert_eq!(ApiError::from(verify_token("secret", None, 0).unwrap_err()).status, 401);
        let mut revoked = r.clone();
        revoked.revoked_at = Some("2026-01-02T00:00:00.000Z".into());
        assert!(verify_token("secret", Some(revoked), 0).unwrap_err().to_string().contains("revoked"));
        let mut expired = r;
        expired.expires_at = Some("1970-01-01T00:00:01.000Z".into());
        assert!(verify_token("secret", Some(expired.clone()), 999).is_ok());
        assert!(verify_token("secret", Some(expired), 1000).unwrap_err().to_string().contains("expired"));
    }

    #[test]
    fn authorization_by_scope_and_app() {
        let p = Principal::Token(Box::new(token(vec![Scope::Publish, Scope::Read], &["demo-app"], false)));
        assert!(authorize(&p, Action::Publish, Some("demo-app")).is_ok());
        assert!(authorize(&p, Action::Read, Some("demo-app")).is_ok());
        assert_eq!(ApiError::from(authorize(&p, Action::Publish, Some("utility-app")).unwrap_err()).status, 403);
        assert_eq!(ApiError::from(authorize(&p, Action::Delete, Some("demo-app")).unwrap_err()).status, 403);
        assert_eq!(ApiError::from(authorize(&p, Action::Rollback, Some("demo-app")).unwrap_err()).status, 403);
        assert_eq!(ApiError::from(authorize(&p, Action::Admin, None).unwrap_err()).status, 403);
        assert_eq!(ApiError::from(authorize(&p, Action::Read, None).unwrap_err()).status, 403);
        let all = Principal::Token(Box::new(token(vec![Scope::Read], &[], true)));
        assert!(authorize(&all, Action::Read, Some("anything")).is_ok());
        assert!(authorize(&all, Action::Read, None).is_ok());
        assert!(authorize(&Principal::Admin, Action::Admin, None).is_ok());
    }

    #[test]
    fn admin_and_bearer() {
        assert_eq!(ApiError::from(admin_secret(None).unwrap_err()).status, 503);
        assert_eq!(ApiError::from(admin_secret(Some(" ")).unwrap_err()).status, 503);
        assert_eq!(ApiError::from(bearer(None).unwrap_err()).status, 401);
        assert_eq!(ApiError::from(bearer(Some("Basic x")).unwrap_err()).status, 401);
        assert_eq!(bearer(Some("Bearer x")).unwrap(), "x");
        assert!(is_admin("s3cret", "s3cret") && !is_admin("s3creT", "s3cret"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d").unwrap(), 90 * 86_400_000);
        assert_eq!(parse_duration("12h").unwrap(), 12 * 3_600_000);
        assert_eq!(parse_duration("30m").unwrap(), 30 * 60_000);
        assert_eq!(parse_duration("3600s").unwrap(), 3_600_000);
        for bad in ["", "d", "10", "10y", "-1d", "0d", "99999d", "1.5d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod authenticate_tests {
    use super::*;
    use crate::access::audit::{self, TOKEN_REFUSED};
    use crate::access::tokens::{self, CreateTokenRequest};
    use crate::config::Limits;
    use crate::deploy::service::Ctx;
    use crate::storage::store::MemoryStore;

    const ADMIN: &str = "s3cret-admin";
    const DAY: u64 = 86_400_000;

    fn rand16() -> [u8; 16] {
        static N: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::array::from_fn(|i| n.wrapping_mul(37).wrapping_add(i as u8))
    }

    /// A store holding one token minted at t=0, expiring after a day; returns it and its id.
    fn minted() -> (MemoryStore, String, String) {
        pollster::block_on(async {
            let s = MemoryStore::new();
            let ctx = Ctx { origin: "x", now_ms: 0, limits: Limits::default(), random: &rand16 };
            let req = CreateTokenRequest {
                name: "ci".into(),
                apps: vec!["demo-app".into()],
                scopes: vec!["publish".into()],
                expires_in: Some("1d".into()),
                ..Default::default()
            };
            let c = tokens::create(&s, req, &ctx).await.unwrap();
            (s, c.token, c.info.id)
        })
    }

    fn auth(s: &MemoryStore, admin: Option<&str>, token: &str, now_ms: u64) -> Result<Principal, AuthFailure> {
        pollster::block_on(authenticate(s, admin, Some(&format!("Bearer {token}")), now_ms))
    }

    fn refused(r: Result<Principal, AuthFailure>) -> AuthFailure {
        r.expect_err("refused")
    }

    #[test]
    fn authenticate_admin_token_is_admin() {
        let (s, _, _) = minted();
        assert_eq!(auth(&s, Some(ADMIN), ADMIN, 1).unwrap(), Principal::Admin);
    }

    #[test]
    fn authenticate_without_admin_secret_refuses_503_even_a_valid_token() {
        let (s, token, _) = minted();
        for admin in [None, Some(""), Some("  ")] {
            let f = refused(auth(&s, admin, &token, 1));
            assert_eq!((f.error.status, f.audit.is_none()), (503, true), "{admin:?}");
            assert!(f.error.message.contains("ADMIN_TOKEN"));
        }
    }

    #[test]
    fn authenticate_missing_or_malformed_header_is_401_unaudited() {
        let (s, _, _) = minted();
        let f = refused(pollster::block_on(authenticate(&s, Some(ADMIN), None, 1)));
        assert_eq!((f.error.status, f.audit.is_none()), (401, true));
        let f = refused(pollster::block_on(authenticate(&s, Some(ADMIN), Some("Basic abc"), 1)));
        assert_eq!((f.error.status, f.audit.is_none()), (401, true));
        for bad in ["not-a-token", "ota_0123_abc", &format!("ota_{}_{}", "X".repeat(16), "a".repeat(64))] {
            let f = refused(auth(&s, Some(ADMIN), bad, 1));
            assert_eq!((f.error.status, f.audit.is_none()), (401, true), "{bad}");
        }
    }

    #[test]
    fn authenticate_unknown_id_or_wrong_secret_is_401_unaudited() {
        let (s, token, id) = minted();
        let f = refused(auth(&s, Some(ADMIN), &format!("ota_ffffffffffffffff_{}", "a".repeat(64)), 1));
        assert_eq!((f.error.status, f.audit.is_none()), (401, true));
        let wrong = format!("ota_{id}_{}", "a".repeat(64));
        assert_ne!(wrong, token);
        let f = refused(auth(&s, Some(ADMIN), &wrong, 1));
        assert_eq!((f.error.status, f.audit.is_none()), (401, true));
        assert!(!f.error.message.contains("revoked") && !f.error.message.contains("expired"));
    }

    #[test]
    fn authenticate_revoked_token_is_401_and_audited() {
        let (s, token, id) = minted();
        pollster::block_on(tokens::revoke(&s, &id, 10)).unwrap();
        let f = refused(auth(&s, Some(ADMIN), &token, 20));
        assert_eq!(f.error.status, 401);
        let e = f.audit.expect("a genuine revoked token is audited");
        assert_eq!(
            (e.action.as_str(), e.actor.as_str(), e.token_id.as_deref()),
            (TOKEN_REFUSED, id.as_str(), Some(id.as_str()))
        );
        assert_eq!((e.status, e.actor_name.as_deref()), (401, Some("ci")));
        assert!(e.error.unwrap().contains("revoked"));
        // A wrong secret for the same revoked id stays unaudited.
        let f = refused(auth(&s, Some(ADMIN), &format!("ota_{id}_{}", "a".repeat(64)), 20));
        assert!(f.audit.is_none());
    }

    #[test]
    fn authenticate_expired_token_is_401_and_audited() {
        let (s, token, id) = minted();
        let f = refused(auth(&s, Some(ADMIN), &token, DAY));
        assert_eq!(f.error.status, 401);
        let e = f.audit.expect("a genuine expired token is audited");
        assert_eq!((e.action.as_str(), e.token_id.as_deref()), (TOKEN_REFUSED, Some(id.as_str())));
        assert!(e.error.as_deref().unwrap().contains("expired"));
        // The entry is one the log accepts as is.
        let ctx = Ctx { origin: "x", now_ms: DAY, limits: Limits::default(), random: &rand16 };
        pollster::block_on(audit::append(&s, *e, &ctx)).unwrap();
        let logged = pollster::block_on(audit::list(&s, None, 0, 10)).unwrap();
        assert_eq!(logged.entries[0].token_id.as_deref(), Some(id.as_str()));
    }

    #[test]
    fn authenticate_good_token_is_principal_and_touches_last_used_hourly() {
        let (s, token, id) = minted();
        let Principal::Token(r) = auth(&s, Some(ADMIN), &token, 5000).unwrap() else { panic!("not a token") };
        assert_eq!(r.id, id);
        let (stored, etag) = pollster::block_on(tokens::lookup(&s, &id)).unwrap().unwrap();
        assert_eq!(stored.last_used_at.as_deref(), Some("1970-01-01T00:00:05.000Z"));
        auth(&s, Some(ADMIN), &token, 6000).unwrap();
        assert_eq!(pollster::block_on(tokens::lookup(&s, &id)).unwrap().unwrap().1, etag, "no write within the hour");
        auth(&s, Some(ADMIN), &token, 5000 + tokens::TOUCH_EVERY_MS).unwrap();
        let (later, _) = pollster::block_on(tokens::lookup(&s, &id)).unwrap().unwrap();
        assert_eq!(later.last_used_at.as_deref(), Some("1970-01-01T01:00:05.000Z"));
    }
}
