//! Sessions: a random `ses_<64 hex>` token of which only the SHA-256 is stored, of one kind —
//! a `cookie` session (HttpOnly, Secure, SameSite=Strict; for the dashboard) is only accepted from
//! the cookie, a `bearer` session (for the CLI and scripts) only from `Authorization`, so a token
//! shown to a script can never ride on a browser's cookie and the other way round. Every
//! state-changing request authenticated by the cookie must carry the session's CSRF token (derived
//! from the session token, so the page learns it from a same-origin read only) and an `Origin`
//! that is this server.

use crate::access::secret::SecretDigest;
use crate::error::ApiError;
use crate::protocol::hash;

pub const COOKIE: &str = "ota_session";
pub const PREFIX: &str = "ses_";
/// How long a session lives, from login (no sliding renewal: sign in again).
pub const TTL_MS: u64 = 12 * 3_600_000;
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Cookie,
    Bearer,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cookie => "cookie",
            Kind::Bearer => "bearer",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cookie" => Some(Kind::Cookie),
            "bearer" => Some(Kind::Bearer),
            _ => None,
        }
    }
}

/// A new session token from 32 random bytes.
pub fn new_token(random: &dyn Fn() -> [u8; 16]) -> String {
    format!("{PREFIX}{}{}", hash::hex(&random()), hash::hex(&random()))
}

pub fn is_session_token(s: &str) -> bool {
    s.strip_prefix(PREFIX)
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)))
}

/// What is stored for a token: its SHA-256, hex.
pub fn digest_hex(token: &str) -> String {
    hash::hex(&hash::sha256(token.as_bytes()))
}

/// The CSRF token of a cookie session: a digest of the session token under its own label, so it
/// reveals nothing of the session and needs no storage.
pub fn csrf_token(session_token: &str) -> String {
    hash::hex(&hash::sha256(format!("expo-ota csrf\0{session_token}").as_bytes()))
}

pub fn set_cookie(token: &str) -> String {
    format!("{COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}", TTL_MS / 1000)
}

pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

/// The session credential a request presents: a `ses_` bearer token, else (only when there is
/// no `Authorization` at all) the session cookie. `None`: not a session (ADMIN_TOKEN, scoped
/// token, or nothing), for the existing token authentication to judge.
pub fn credential(authorization: Option<&str>, cookie: Option<&str>) -> Option<(Kind, String)> {
    if let Some(a) = authorization {
        let t = a.trim().strip_prefix("Bearer ").or_else(|| a.trim().strip_prefix("bearer "))?.trim();
        return is_session_token(t).then(|| (Kind::Bearer, t.to_string()));
    }
    let value = cookie?.split(';').filter_map(|c| c.trim().split_once('=')).find(|(k, _)| *k == COOKIE)?.1.trim();
    // A malformed cookie value is still a session attempt (401), never a fall-through.
    Some((Kind::Cookie, value.to_string()))
}

/// Methods that change nothing need no CSRF token.
pub fn is_safe_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// The CSRF rule for a cookie-authenticated request: safe methods pass; anything else needs
/// `Origin` equal to this server's origin and the session's CSRF token in `X-CSRF-Token`.
pub fn check_csrf(
    method: &str,
    session_token: &str,
    origin_header: Option<&str>,
    own_origin: &str,
    csrf_header: Option<&str>,
) -> Result<(), ApiError> {
    if is_safe_method(method) {
        return Ok(());
    }
    if origin_header.map(|o| o.trim_end_matches('/')) != Some(own_origin.trim_end_matches('/')) {
        return Err(ApiError::new(
            403,
            "cross-site request refused: a cookie-authenticated change must come from this server's own pages (Origin)",
        ));
    }
    let want = SecretDigest::of(csrf_token(session_token).as_bytes());
    let given = SecretDigest::of(csrf_header.unwrap_or("").as_bytes());
    if !want.ct_eq(&given) {
        return Err(ApiError::new(403, "missing or wrong X-CSRF-Token header: reload the dashboard and try again"));
    }
    Ok(())
}

/// A stored session as authentication sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub user_id: i64,
    pub kind: Kind,
    pub expires_at: u64,
}

/// Is `row` (found by the token's digest) a live session of the kind presented?
pub fn check_session(row: Option<SessionRow>, kind: Kind, now_ms: u64) -> Result<i64, ApiError> {
    let row = row.ok_or_else(|| ApiError::unauthorized("invalid or signed-out session: sign in again"))?;
    if row.kind != kind {
        // Same answer as unknown: a bearer token must not learn it is a valid cookie, or back.
        return Err(ApiError::unauthorized("invalid or signed-out session: sign in again"));
    }
    if row.expires_at <= now_ms {
        return Err(ApiError::unauthorized("session expired: sign in again"));
    }
    Ok(row.user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ses_0000000000000000000000000000000000000000000000000000000000000001";
    const ORIGIN: &str = "http://127.0.0.1:8787";

    #[test]
    fn new_token_is_a_session_token_and_random() {
        let mut n = 0u8;
        let rnd = move || {
            n = n.wrapping_add(1);
            [n; 16]
        };
        let cell = std::cell::RefCell::new(rnd);
        let f = || (cell.borrow_mut())();
        let (a, b) = (new_token(&f), new_token(&f));
        assert!(is_session_token(&a) && is_session_token(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn credential_bearer_session_cookie_or_neither() {
        let cookie = format!("theme=dark; {COOKIE}={TOKEN}");
        assert_eq!(credential(Some(&format!("Bearer {TOKEN}")), None), Some((Kind::Bearer, TOKEN.into())));
        assert_eq!(credential(None, Some(&cookie)), Some((Kind::Cookie, TOKEN.into())));
        // An Authorization header (ADMIN_TOKEN, scoped token) wins over any cookie.
        assert_eq!(credential(Some("Bearer ota_x"), Some(&cookie)), None);
        assert_eq!(credential(None, Some("theme=dark")), None);
        assert_eq!(credential(None, None), None);
        assert_eq!(credential(None, Some(&format!("{COOKIE}=junk"))), Some((Kind::Cookie, "junk".into())));
    }

    #[test]
    fn csrf_safe_method_passes_without_token() {
        assert!(check_csrf("GET", TOKEN, None, ORIGIN, None).is_ok());
    }

    #[test]
    fn csrf_missing_or_foreign_origin_is_403() {
        let good = csrf_token(TOKEN);
        assert_eq!(check_csrf("POST", TOKEN, None, ORIGIN, Some(&good)).unwrap_err().status, 403);
        let e = check_csrf("POST", TOKEN, Some("https://evil.example"), ORIGIN, Some(&good)).unwrap_err();
        assert!(e.message.contains("Origin"), "{}", e.message);
    }

    #[test]
    fn csrf_missing_or_wrong_token_is_403() {
        assert_eq!(check_csrf("DELETE", TOKEN, Some(ORIGIN), ORIGIN, None).unwrap_err().status, 403);
        let other = csrf_token("ses_0000000000000000000000000000000000000000000000000000000000000002");
        assert_eq!(check_csrf("POST", TOKEN, Some(ORIGIN), ORIGIN, Some(&other)).unwrap_err().status, 403);
        assert!(check_csrf("POST", TOKEN, Some(ORIGIN), ORIGIN, Some(&csrf_token(TOKEN))).is_ok());
    }

    #[test]
    fn session_expired_unknown_or_other_kind_is_401() {
        let row = SessionRow { user_id: 7, kind: Kind::Cookie, expires_at: 1000 };
        assert_eq!(check_session(Some(row.clone()), Kind::Cookie, 999).unwrap(), 7);
        let e = check_session(Some(row.clone()), Kind::Cookie, 1000).unwrap_err();
        assert_eq!((e.status, e.message.contains("expired")), (401, true));
        assert_eq!(check_session(Some(row), Kind::Bearer, 0).unwrap_err().status, 401);
        assert_eq!(check_session(None, Kind::Cookie, 0).unwrap_err().status, 401);
    }

    #[test]
    fn cookie_attributes_are_strict() {
        let c = set_cookie(TOKEN);
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(c.contains(attr), "{c}");
        }
        assert!(clear_cookie().contains("Max-Age=0"));
    }
}
