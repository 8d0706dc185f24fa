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
}

impl Action {
    fn scope(self) -> Option<Scope> {
        match self {
            Action::Publish => Some(Scope::Publish),
            Action::Rollback => Some(Scope::Rollback),
            Action::Delete => Some(Scope::Delete),
            Action::Read => Some(Scope::Read),
            Action::Admin => None,
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
}

impl Principal {
    /// Audit identity: never the secret.
    pub fn actor(&self) -> (String, Option<String>) {
        match self {
            Principal::Admin => ("admin".into(), None),
            Principal::Token(t) => (t.id.clone(), Some(t.name.clone())),
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

pub fn bearer(authorization: Option<&str>) -> Result<&str, ApiError> {
    authorization
        .map(str::trim)
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 512)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))
}

/// True when `given` is the root credential. Both are hashed first, so the constant-time
/// comparison runs over fixed-length digests and leaks neither content nor length.
pub fn is_admin(given: &str, admin_token: &str) -> bool {
    SecretDigest::of(given.as_bytes()).ct_eq(&SecretDigest::of(admin_token.as_bytes()))
}

/// The ADMIN_TOKEN secret, or 503: without it every deploy operation is refused, never open.
pub fn admin_secret(admin_token: Option<&str>) -> Result<&str, ApiError> {
    admin_token.map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::new(503, "deploy operations are disabled: the ADMIN_TOKEN secret is not set (wrangler secret put ADMIN_TOKEN, or .dev.vars locally)")
    })
}

/// Root-credential check alone (for callers that know no scoped tokens).
pub fn check_admin(authorization: Option<&str>, admin_token: Option<&str>) -> Result<(), ApiError> {
    let secret = admin_secret(admin_token)?;
    if is_admin(bearer(authorization)?, secret) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("invalid token"))
    }
}

/// Checks a presented scoped token against its stored record.
pub fn verify_token(given: &str, record: Option<TokenRecord>, now_ms: u64) -> Result<TokenRecord, ApiError> {
    let invalid = || ApiError::unauthorized("invalid token");
    let r = record.ok_or_else(invalid)?;
    let stored = SecretDigest::from_hex(&r.hash).ok_or_else(invalid)?;
    // SecretDigest has no `==`: ct_eq (constant time) is the only comparison there is.
    if !SecretDigest::of(given.as_bytes()).ct_eq(&stored) {
        return Err(invalid());
    }
    if r.revoked_at.is_some() {
        return Err(ApiError::unauthorized(format!("token {} was revoked", r.id)));
    }
    if r.expires_at.as_deref().and_then(time::parse_millis).is_some_and(|e| e <= now_ms) {
        return Err(ApiError::unauthorized(format!("token {} has expired", r.id)));
    }
    Ok(r)
}

/// May `who` do `action` on app `slug` (None = not app-specific)?
pub fn authorize(who: &Principal, action: Action, slug: Option<&str>) -> Result<(), ApiError> {
    let t = match who {
        Principal::Admin => return Ok(()),
        Principal::Token(t) => t,
    };
    let Some(scope) = action.scope() else {
        return Err(ApiError::new(403, "this operation needs the ADMIN_TOKEN"));
    };
    if !t.scopes.contains(&scope) {
        return Err(ApiError::new(403, format!("token {} lacks the {:?} scope", t.id, scope.as_str())));
    }
    match slug {
        Some(s) if !t.all_apps && !t.apps.iter().any(|a| a == s) => {
            Err(ApiError::new(403, format!("token {} is not valid for app {:?}", t.id, validate::truncate(s))))
        }
        None if !t.all_apps => Err(ApiError::new(403, format!("token {} is limited to its apps; name one", t.id))),
        _ => Ok(()),
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
        assert_eq!(verify_token("Secret", Some(r.clone()), 0).unwrap_err().status, 401);
        assert_eq!(verify_token("secret", None, 0).unwrap_err().status, 401);
        let mut revoked = r.clone();
        revoked.revoked_at = Some("2026-01-02T00:00:00.000Z".into());
        assert!(verify_token("secret", Some(revoked), 0).unwrap_err().message.contains("revoked"));
        let mut expired = r;
        expired.expires_at = Some("1970-01-01T00:00:01.000Z".into());
        assert!(verify_token("secret", Some(expired.clone()), 999).is_ok());
        assert!(verify_token("secret", Some(expired), 1000).unwrap_err().message.contains("expired"));
    }

    #[test]
    fn authorization_by_scope_and_app() {
        let p = Principal::Token(Box::new(token(vec![Scope::Publish, Scope::Read], &["demo-app"], false)));
        assert!(authorize(&p, Action::Publish, Some("demo-app")).is_ok());
        assert!(authorize(&p, Action::Read, Some("demo-app")).is_ok());
        assert_eq!(authorize(&p, Action::Publish, Some("utility-app")).unwrap_err().status, 403);
        assert_eq!(authorize(&p, Action::Delete, Some("demo-app")).unwrap_err().status, 403);
        assert_eq!(authorize(&p, Action::Rollback, Some("demo-app")).unwrap_err().status, 403);
        assert_eq!(authorize(&p, Action::Admin, None).unwrap_err().status, 403);
        assert_eq!(authorize(&p, Action::Read, None).unwrap_err().status, 403);
        let all = Principal::Token(Box::new(token(vec![Scope::Read], &[], true)));
        assert!(authorize(&all, Action::Read, Some("anything")).is_ok());
        assert!(authorize(&all, Action::Read, None).is_ok());
        assert!(authorize(&Principal::Admin, Action::Admin, None).is_ok());
    }

    #[test]
    fn admin_and_bearer() {
        assert_eq!(admin_secret(None).unwrap_err().status, 503);
        assert_eq!(admin_secret(Some(" ")).unwrap_err().status, 503);
        assert_eq!(bearer(None).unwrap_err().status, 401);
        assert_eq!(bearer(Some("Basic x")).unwrap_err().status, 401);
        assert_eq!(bearer(Some("Bearer x")).unwrap(), "x");
        assert!(is_admin("s3cret", "s3cret") && !is_admin("s3creT", "s3cret"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d").unwrap(), 90 * 86_400_000);
        assert_eq!(parse_duration("12h").unwrap(), 12 * 3_600_000);
        for bad in ["", "d", "10", "10y", "-1d", "0d", "99999d", "1.5d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
