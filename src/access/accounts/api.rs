//! The account API: sign-in, sessions, users, apps, members and per-app API keys. Every handler
//! runs after `auth::authorize` accepted the route's [`Need`] (see [`handle`]); each change is one
//! control-plane statement (or one conditional R2 write for keys), and every change is returned
//! with an audit entry for the adapter to append. Request bodies arrive already bounded by the
//! adapter (MAX_JSON_BYTES).

use super::password::{self, Kdf};
use super::route::{AccountRoute, Need};
use super::session::{self, Kind};
use super::{principal, ControlPlane, MemberChange, Role, UserPrincipal};
use crate::access::audit::AuditEntry;
use crate::access::auth::{self, Principal};
use crate::access::tokens::{self, CreateTokenRequest};
use crate::check::Reply;
use crate::deploy::dispatch::json;
use crate::deploy::service::Ctx;
use crate::error::ApiError;
use crate::protocol::time;
use crate::storage::store::ObjectStore;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    pub login: String,
    pub admin: bool,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    pub user: UserInfo,
    /// A bearer session for the CLI and scripts (`Authorization: Bearer ses_…`), never a cookie.
    pub token: String,
    pub expires_at: String,
    /// The CSRF token of the cookie session set alongside.
    pub csrf: String,
}

/// What the adapter does with a handled account request.
#[derive(Debug)]
pub struct Handled {
    pub reply: Result<Reply, ApiError>,
    pub audit: Option<AuditEntry>,
}

/// A JSON object body with only the `allowed` fields. Read as a `serde_json` value rather than
/// a derived struct per request: one deserializer in the Worker's wasm instead of seven.
struct Fields(serde_json::Map<String, serde_json::Value>);

fn parse(body: &[u8], allowed: &[&str]) -> Result<Fields, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("missing JSON body"));
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let serde_json::Value::Object(map) = v else {
        return Err(ApiError::bad_request("the JSON body must be an object"));
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown field {:?}: expected {}",
            crate::validate::truncate(k),
            allowed.join(", ")
        )));
    }
    Ok(Fields(map))
}

impl Fields {
    fn opt_str(&self, k: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(k) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::bad_request(format!("{k} must be a string"))),
        }
    }
    fn str(&self, k: &str) -> Result<&str, ApiError> {
        self.opt_str(k)?.ok_or_else(|| ApiError::bad_request(format!("missing field {k}")))
    }
    fn flag(&self, k: &str) -> Result<bool, ApiError> {
        match self.0.get(k) {
            None => Ok(false),
            Some(serde_json::Value::Bool(b)) => Ok(*b),
            Some(_) => Err(ApiError::bad_request(format!("{k} must be true or false"))),
        }
    }
    fn strings(&self, k: &str) -> Result<Vec<String>, ApiError> {
        let bad = || ApiError::bad_request(format!("{k} must be a list of strings"));
        let list = self.0.get(k).ok_or_else(|| ApiError::bad_request(format!("missing field {k}")))?;
        list.as_array().ok_or_else(bad)?.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(bad)).collect()
    }
}

fn salt(ctx: &Ctx<'_>) -> [u8; 16] {
    (ctx.random)()
}

/// `POST /api/auth/login`: throttled per account and per client address before any password
/// work; an unknown login costs the same derivation as a wrong password and gets the same answer.
/// On success: a bearer session in the body and a cookie session in `Set-Cookie`.
pub async fn login(
    cp: &impl ControlPlane,
    kdf: &impl Kdf,
    body: &[u8],
    client_address: Option<&str>,
    ctx: &Ctx<'_>,
) -> Result<Reply, ApiError> {
    let req = parse(body, &["login", "password"])?;
    let (name, given) = (super::login(req.str("login")?.trim())?, req.str("password")?);
    let account_key = format!("login:{name}");
    let address_key = format!("ip:{}", client_address.unwrap_or("unknown"));
    if cp.login_failures(&account_key, ctx.now_ms).await? >= super::MAX_FAILURES_PER_ACCOUNT {
        return Err(ApiError::new(
            429,
            format!(
                "too many failed sign-ins for {name:?}: {} within {} minutes; wait and try again",
                super::MAX_FAILURES_PER_ACCOUNT,
                super::LOGIN_WINDOW_MS / 60_000
            ),
        ));
    }
    if cp.login_failures(&address_key, ctx.now_ms).await? >= super::MAX_FAILURES_PER_ADDRESS {
        return Err(ApiError::new(
            429,
            format!(
                "too many failed sign-ins from this address: {} within {} minutes; wait and try again",
                super::MAX_FAILURES_PER_ADDRESS,
                super::LOGIN_WINDOW_MS / 60_000
            ),
        ));
    }
    let user = cp.user_by_login(name).await?;
    let stored = user.as_ref().map_or(password::DECOY, |u| u.password_hash.as_str());
    let ok = password::verify(kdf, given, stored).await? && user.is_some();
    let Some(user) = user.filter(|_| ok) else {
        cp.note_login_failure(&account_key, ctx.now_ms).await?;
        cp.note_login_failure(&address_key, ctx.now_ms).await?;
        return Err(ApiError::unauthorized("wrong login or password"));
    };
    cp.clear_login_failures(&account_key).await?;
    let expires = ctx.now_ms + session::TTL_MS;
    let bearer = session::new_token(ctx.random);
    let cookie = session::new_token(ctx.random);
    cp.create_session(&session::digest_hex(&bearer), user.id, Kind::Bearer, ctx.now_ms, expires).await?;
    cp.create_session(&session::digest_hex(&cookie), user.id, Kind::Cookie, ctx.now_ms, expires).await?;
    let body = LoginResponse {
        user: UserInfo { login: user.login, admin: user.admin },
        token: bearer,
        expires_at: time::format_millis(expires),
        csrf: session::csrf_token(&cookie),
    };
    let mut reply = json(200, &body)?;
    reply.headers.push(("set-cookie", session::set_cookie(&cookie)));
    reply.headers.push(("cache-control", "no-store".into()));
    Ok(reply)
}

/// A session presented by a request, as [`authenticate`] found it.
pub struct SessionAuth {
    pub principal: Principal,
    pub kind: Kind,
    pub token: String,
}

/// The parts of a request session authentication reads.
pub struct SessionRequest<'a> {
    pub method: &'a str,
    pub authorization: Option<&'a str>,
    pub cookie: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub csrf: Option<&'a str>,
    /// This server's origin as the browser sees it (the request URL's).
    pub own_origin: &'a str,
}

/// `None` when the request presents no session (the token authentication judges it); else the
/// signed-in user, or 401 (unknown, expired, wrong kind) / 403 (CSRF).
pub async fn authenticate(
    cp: &impl ControlPlane,
    req: &SessionRequest<'_>,
    now_ms: u64,
) -> Option<Result<SessionAuth, ApiError>> {
    let (kind, token) = session::credential(req.authorization, req.cookie)?;
    Some(
        async {
            if !session::is_session_token(&token) {
                return Err(ApiError::unauthorized("invalid or signed-out session: sign in again"));
            }
            let user_id = session::check_session(cp.session(&session::digest_hex(&token)).await?, kind, now_ms)?;
            if kind == Kind::Cookie {
                session::check_csrf(req.method, &token, req.origin, req.own_origin, req.csrf)?;
            }
            let p = principal(cp, user_id).await?;
            Ok(SessionAuth { principal: Principal::User(Box::new(p)), kind, token })
        }
        .await,
    )
}

/// What account handlers work with: the control plane, the password derivation, and the object
/// store that holds API keys (scoped tokens).
pub struct Deps<'a, C, K, S> {
    pub cp: &'a C,
    pub kdf: &'a K,
    pub store: &'a S,
}

/// Authorizes and runs one account route for an authenticated caller (`session`: the session it
/// came with, if any). [`AccountRoute::Login`] is served by [`login`], before authentication.
pub async fn handle<C: ControlPlane, K: Kdf, S: ObjectStore>(
    deps: &Deps<'_, C, K, S>,
    who: &Principal,
    session: Option<&SessionAuth>,
    route: AccountRoute,
    body: &[u8],
    ctx: &Ctx<'_>,
) -> Handled {
    let mut audit = audit_entry(&route, who);
    let reply = async {
        match route.need() {
            Need::Public => return Err(ApiError::internal("sign-in is served before authentication")),
            Need::SignedIn => {}
            Need::Act(action, app) => auth::authorize(who, action, app.as_deref())?,
        }
        run(deps.cp, deps.kdf, deps.store, who, session, route, body, ctx, audit.as_mut()).await
    }
    .await;
    let audit = audit.map(|e| match &reply {
        Ok(r) => e.result::<()>(&Ok(()), r.status),
        Err(err) => e.result::<()>(&Err(err.clone()), 0),
    });
    Handled { reply, audit }
}

/// Changes are audited (refusals included); reads and sign-out are not.
fn audit_entry(route: &AccountRoute, who: &Principal) -> Option<AuditEntry> {
    use AccountRoute::*;
    let on = |action: &str, slug: &str| Some(AuditEntry::new(who, action).with_slug(slug));
    match route {
        ChangePassword => Some(AuditEntry::new(who, "password-change")),
        CreateUser => Some(AuditEntry::new(who, "user-create")),
        CreateApp => Some(AuditEntry::new(who, "app-create")),
        SetMember { slug, .. } => on("member-set", slug),
        RemoveMember { slug, .. } => on("member-remove", slug),
        CreateKey { slug } => on("token-create", slug),
        RenameKey { slug, id } => on("token-rename", slug).map(|e| e.with_token_id(id)),
        RevokeKey { slug, id } => on("token-revoke", slug).map(|e| e.with_token_id(id)),
        Login | Logout | Me | ListApps | Members { .. } | ListKeys { .. } => None,
    }
}

fn user_of(who: &Principal) -> Result<&UserPrincipal, ApiError> {
    match who {
        Principal::User(u) => Ok(u),
        _ => Err(ApiError::new(403, "this needs a signed-in user (POST /api/auth/login), not a token")),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run<C: ControlPlane, K: Kdf, S: ObjectStore>(
    cp: &C,
    kdf: &K,
    store: &S,
    who: &Principal,
    session: Option<&SessionAuth>,
    route: AccountRoute,
    body: &[u8],
    ctx: &Ctx<'_>,
    audit: Option<&mut AuditEntry>,
) -> Result<Reply, ApiError> {
    use AccountRoute::*;
    match route {
        Login => Err(ApiError::internal("sign-in is served before authentication")),
        Logout => {
            let s = session.ok_or_else(|| ApiError::bad_request("no session to sign out of"))?;
            cp.delete_session(&session::digest_hex(&s.token)).await?;
            let mut reply = json(200, &serde_json::json!({"signedOut": true}))?;
            reply.headers.push(("set-cookie", session::clear_cookie()));
            Ok(reply)
        }
        Me => {
            let (user, apps) = match who {
                Principal::Admin => (UserInfo { login: "admin".into(), admin: true }, owner_of_all(cp).await?),
                Principal::User(u) if u.admin => {
                    (UserInfo { login: u.login.clone(), admin: true }, owner_of_all(cp).await?)
                }
                Principal::User(u) => (UserInfo { login: u.login.clone(), admin: false }, roles_json(&u.roles)),
                Principal::Token(_) => return Err(user_of(who).unwrap_err()),
            };
            let mut out = serde_json::json!({"user": user, "apps": apps});
            if let Some(s) = session.filter(|s| s.kind == Kind::Cookie) {
                out["csrf"] = session::csrf_token(&s.token).into();
            }
            let mut reply = json(200, &out)?;
            reply.headers.push(("cache-control", "no-store".into()));
            Ok(reply)
        }
        ChangePassword => {
            let u = user_of(who)?;
            let req = parse(body, &["current", "new"])?;
            let row = cp.user_by_id(u.id).await?.ok_or_else(|| ApiError::unauthorized("unknown user"))?;
            if !password::verify(kdf, req.str("current")?, &row.password_hash).await? {
                return Err(ApiError::new(403, "the current password is wrong"));
            }
            let new = req.str("new")?;
            password::check_policy(new)?;
            let h = password::hash(kdf, new, salt(ctx)).await?;
            cp.set_password(u.id, &h.encode(), ctx.now_ms).await?;
            // Every other session of this user ends; the one that changed the password stays.
            let keep = session.map(|s| session::digest_hex(&s.token));
            cp.delete_sessions_of(u.id, keep.as_deref()).await?;
            json(200, &serde_json::json!({"changed": true}))
        }
        CreateUser => {
            let req = parse(body, &["login", "password", "admin"])?;
            let login = super::login(req.str("login")?.trim())?.to_string();
            let (pw, admin) = (req.str("password")?, req.flag("admin")?);
            password::check_policy(pw)?;
            let h = password::hash(kdf, pw, salt(ctx)).await?;
            match cp.create_user(&login, &h.encode(), admin, ctx.now_ms).await? {
                Some(_) => json(201, &UserInfo { login, admin }),
                None => Err(ApiError::conflict(format!("login {login:?} is taken"))),
            }
        }
        ListApps => match who {
            Principal::Admin => json(200, &serde_json::json!({"apps": owner_of_all(cp).await?})),
            Principal::User(u) if u.admin => json(200, &serde_json::json!({"apps": owner_of_all(cp).await?})),
            Principal::User(u) => json(200, &serde_json::json!({"apps": roles_json(&u.roles)})),
            Principal::Token(_) => Err(user_of(who).unwrap_err()),
        },
        CreateApp => {
            let req = parse(body, &["slug", "owner"])?;
            let slug = crate::validate::slug(req.str("slug")?.trim())?.to_string();
            if let Some(e) = audit {
                e.slug = Some(slug.clone());
            }
            let owner = match (req.opt_str("owner")?, who) {
                (Some(l), _) => user_id(cp, l).await?,
                (None, Principal::User(u)) => u.id,
                (None, _) => return Err(ApiError::bad_request("name the app's first owner: {\"owner\": \"<login>\"}")),
            };
            if cp.create_app(&slug, owner, ctx.now_ms).await? {
                json(201, &serde_json::json!({"slug": slug}))
            } else {
                Err(ApiError::conflict(format!("app {slug:?} is registered already")))
            }
        }
        Members { slug } => json(200, &serde_json::json!({"members": cp.members(&slug).await?})),
        SetMember { slug, login } => {
            let role = Role::parse(parse(body, &["role"])?.str("role")?)?;
            let id = user_id(cp, &login).await?;
            member_change(cp.set_member(&slug, id, role, ctx.now_ms).await?, &slug, &login)?;
            json(200, &super::Member { login, role })
        }
        RemoveMember { slug, login } => {
            let id = user_id(cp, &login).await?;
            member_change(cp.remove_member(&slug, id).await?, &slug, &login)?;
            json(200, &serde_json::json!({"removed": login}))
        }
        ListKeys { slug } => {
            let keys: Vec<_> = tokens::list(store).await?.tokens.into_iter().filter(|t| is_key_of(t, &slug)).collect();
            json(200, &serde_json::json!({"keys": keys}))
        }
        CreateKey { slug } => {
            let req = parse(body, &["name", "scopes", "expiresIn"])?;
            let create = CreateTokenRequest {
                name: req.str("name")?.to_string(),
                apps: vec![slug],
                all_apps: false,
                scopes: req.strings("scopes")?,
                expires_in: req.opt_str("expiresIn")?.map(str::to_string),
            };
            let created = tokens::create(store, create, ctx).await?;
            if let Some(e) = audit {
                e.token_id = Some(created.info.id.clone());
            }
            json(201, &created)
        }
        RenameKey { slug, id } => {
            let req = parse(body, &["name"])?;
            let (r, etag) = key_of(store, &slug, &id).await?;
            json(200, &tokens::rename(store, r, etag, req.str("name")?).await?)
        }
        RevokeKey { slug, id } => {
            key_of(store, &slug, &id).await?;
            json(200, &tokens::revoke(store, &id, ctx.now_ms).await?)
        }
    }
}

/// An API key of `slug`: a scoped token for that app alone. Tokens spanning several apps (or all)
/// stay with the ADMIN_TOKEN (`/api/tokens`): an owner of one app cannot see or change them.
fn is_key_of(t: &tokens::TokenInfo, slug: &str) -> bool {
    !t.all_apps && t.apps.len() == 1 && t.apps[0] == slug
}

async fn key_of<S: ObjectStore>(store: &S, slug: &str, id: &str) -> Result<(auth::TokenRecord, String), ApiError> {
    match tokens::lookup(store, id).await? {
        Some((r, etag)) if is_key_of(&r.info, slug) => Ok((r, etag)),
        _ => Err(ApiError::not_found(format!("no API key {id} on app {slug:?}"))),
    }
}

async fn user_id(cp: &impl ControlPlane, login: &str) -> Result<i64, ApiError> {
    let login = super::login(login.trim())?;
    Ok(cp.user_by_login(login).await?.ok_or_else(|| ApiError::not_found(format!("no user {login:?}")))?.id)
}

fn member_change(c: MemberChange, slug: &str, login: &str) -> Result<(), ApiError> {
    match c {
        MemberChange::Done => Ok(()),
        MemberChange::LastOwner => {
            Err(ApiError::conflict(format!("{login:?} is the last owner of {slug:?}: make another member owner first")))
        }
        MemberChange::Missing => {
            Err(ApiError::not_found(format!("{login:?} is not a member of {slug:?}, or {slug:?} is not registered")))
        }
    }
}

fn roles_json(roles: &[(String, Role)]) -> Vec<super::AppRole> {
    roles.iter().map(|(slug, role)| super::AppRole { slug: slug.clone(), role: *role }).collect()
}

async fn owner_of_all(cp: &impl ControlPlane) -> Result<Vec<super::AppRole>, ApiError> {
    Ok(cp.all_apps().await?.into_iter().map(|slug| super::AppRole { slug, role: Role::Owner }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::accounts::memory::MemoryControlPlane;
    use crate::access::accounts::route::AccountRoute as R;
    use crate::deploy::testing;
    use crate::storage::store::MemoryStore;
    use pollster::block_on;

    const PW: &str = "correct horse battery";

    /// A stand-in derivation (SHA-256 of its inputs) so these tests exercise the account rules
    /// without 100 000 PBKDF2 rounds per login; the real one is tested against vectors in
    /// `password`.
    struct FastKdf;
    impl Kdf for FastKdf {
        async fn pbkdf2_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> Result<[u8; 32], ApiError> {
            Ok(crate::protocol::hash::sha256(&[password, b"\0", salt, &iterations.to_be_bytes()].concat()))
        }
    }
    const ORIGIN: &str = "http://127.0.0.1:8787";

    struct World {
        cp: MemoryControlPlane,
        store: MemoryStore,
    }

    fn pw_hash() -> &'static str {
        static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        H.get_or_init(|| block_on(password::hash(&FastKdf, PW, [9; 16])).unwrap().encode())
    }

    fn world() -> World {
        let w = World { cp: MemoryControlPlane::default(), store: MemoryStore::new() };
        for (login, admin) in [("root", true), ("olivia", false), ("pablo", false), ("vera", false), ("nina", false)] {
            block_on(w.cp.create_user(login, pw_hash(), admin, 0)).unwrap().unwrap();
        }
        let r =
            handle_as(&w, &Principal::Admin, R::CreateApp, serde_json::json!({"slug": "demo-app", "owner": "olivia"}));
        assert_eq!(status(&r), 201);
        let olivia = user(&w, "olivia");
        for (login, role) in [("pablo", "publisher"), ("vera", "viewer")] {
            let route = R::SetMember { slug: "demo-app".into(), login: login.into() };
            assert_eq!(status(&handle_as(&w, &olivia, route, serde_json::json!({"role": role}))), 200);
        }
        w
    }

    fn user(w: &World, login: &str) -> Principal {
        let id = block_on(w.cp.user_by_login(login)).unwrap().unwrap().id;
        Principal::User(Box::new(block_on(principal(&w.cp, id)).unwrap()))
    }

    fn handle_as(w: &World, who: &Principal, route: AccountRoute, body: serde_json::Value) -> Handled {
        let body = if body.is_null() { Vec::new() } else { serde_json::to_vec(&body).unwrap() };
        block_on(handle(
            &Deps { cp: &w.cp, kdf: &FastKdf, store: &w.store },
            who,
            None,
            route,
            &body,
            &testing::ctx(1_000),
        ))
    }

    fn status(h: &Handled) -> u16 {
        match &h.reply {
            Ok(r) => r.status,
            Err(e) => e.status,
        }
    }

    fn login_at(w: &World, login: &str, pw: &str, ip: &str, now: u64) -> Result<Reply, ApiError> {
        let body = serde_json::to_vec(&serde_json::json!({"login": login, "password": pw})).unwrap();
        block_on(super::login(&w.cp, &FastKdf, &body, Some(ip), &testing::ctx(now)))
    }

    fn session_req<'a>(
        method: &'a str,
        auth: Option<&'a str>,
        cookie: Option<&'a str>,
        csrf: Option<&'a str>,
    ) -> SessionRequest<'a> {
        SessionRequest { method, authorization: auth, cookie, origin: Some(ORIGIN), csrf, own_origin: ORIGIN }
    }

    fn cookie_of(r: &Reply) -> String {
        let c = r.headers.iter().find(|(k, _)| *k == "set-cookie").unwrap().1.clone();
        c.split(';').next().unwrap().to_string()
    }

    #[test]
    fn login_right_password_gives_bearer_and_cookie_sessions_of_their_kind() {
        let w = world();
        let r = login_at(&w, "pablo", PW, "1.2.3.4", 10).unwrap();
        let body: LoginResponse = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body.user, UserInfo { login: "pablo".into(), admin: false });
        let cookie = cookie_of(&r);
        let bearer = format!("Bearer {}", body.token);
        let via_bearer =
            block_on(authenticate(&w.cp, &session_req("POST", Some(&bearer), None, None), 20)).unwrap().unwrap();
        assert_eq!(via_bearer.kind, Kind::Bearer);
        let via_cookie =
            block_on(authenticate(&w.cp, &session_req("GET", None, Some(&cookie), None), 20)).unwrap().unwrap();
        assert_eq!(via_cookie.kind, Kind::Cookie);
        assert_eq!(body.csrf, session::csrf_token(&via_cookie.token));
        // The bearer token does not work as a cookie, nor the cookie as a bearer token.
        let swapped = format!("{}={}", session::COOKIE, body.token);
        let e =
            block_on(authenticate(&w.cp, &session_req("GET", None, Some(&swapped), None), 20)).unwrap().err().unwrap();
        assert_eq!(e.status, 401);
        let as_bearer = format!("Bearer {}", via_cookie.token);
        let e = block_on(authenticate(&w.cp, &session_req("GET", Some(&as_bearer), None, None), 20))
            .unwrap()
            .err()
            .unwrap();
        assert_eq!(e.status, 401);
    }

    #[test]
    fn login_wrong_password_or_unknown_login_same_401() {
        let w = world();
        let a = login_at(&w, "pablo", "wrong password!", "1.2.3.4", 10).unwrap_err();
        let b = login_at(&w, "nobody", PW, "1.2.3.4", 10).unwrap_err();
        assert_eq!((a.status, &a.message), (b.status, &b.message));
        assert_eq!(a.status, 401);
    }

    #[test]
    fn login_after_ten_failures_is_429_even_with_the_right_password_until_the_window_ends() {
        let w = world();
        for i in 0..crate::access::accounts::MAX_FAILURES_PER_ACCOUNT {
            assert_eq!(login_at(&w, "pablo", "wrong password!", &format!("10.0.0.{i}"), 10).unwrap_err().status, 401);
        }
        let e = login_at(&w, "pablo", PW, "10.9.9.9", 20).unwrap_err();
        assert_eq!(e.status, 429, "{}", e.message);
        // Another account from the same addresses is not locked out.
        assert!(login_at(&w, "vera", PW, "10.0.0.1", 20).is_ok());
        assert!(login_at(&w, "pablo", PW, "10.9.9.9", 20 + crate::access::accounts::LOGIN_WINDOW_MS).is_ok());
    }

    #[test]
    fn login_from_one_address_failing_on_many_accounts_is_429() {
        let w = world();
        for i in 0..crate::access::accounts::MAX_FAILURES_PER_ADDRESS {
            let _ = login_at(&w, &format!("guess{i}"), "wrong password!", "6.6.6.6", 10);
        }
        assert_eq!(login_at(&w, "vera", PW, "6.6.6.6", 20).unwrap_err().status, 429);
        assert!(login_at(&w, "vera", PW, "7.7.7.7", 20).is_ok());
    }

    #[test]
    fn session_after_ttl_is_401_expired() {
        let w = world();
        let r = login_at(&w, "vera", PW, "1.2.3.4", 10).unwrap();
        let cookie = cookie_of(&r);
        let req = session_req("GET", None, Some(&cookie), None);
        assert!(block_on(authenticate(&w.cp, &req, 10 + session::TTL_MS - 1)).unwrap().is_ok());
        let e = block_on(authenticate(&w.cp, &req, 10 + session::TTL_MS)).unwrap().err().unwrap();
        assert_eq!(e.status, 401);
        assert!(e.message.contains("expired"));
    }

    #[test]
    fn cookie_change_without_csrf_token_is_403_with_it_passes() {
        let w = world();
        let r = login_at(&w, "olivia", PW, "1.2.3.4", 10).unwrap();
        let body: LoginResponse = serde_json::from_slice(&r.body).unwrap();
        let cookie = cookie_of(&r);
        let e =
            block_on(authenticate(&w.cp, &session_req("POST", None, Some(&cookie), None), 20)).unwrap().err().unwrap();
        assert_eq!(e.status, 403);
        let ok = block_on(authenticate(&w.cp, &session_req("POST", None, Some(&cookie), Some(&body.csrf)), 20));
        assert!(ok.unwrap().is_ok());
        // A bearer session needs no CSRF token: no browser attaches it by itself.
        let bearer = format!("Bearer {}", body.token);
        assert!(block_on(authenticate(&w.cp, &session_req("POST", Some(&bearer), None, None), 20)).unwrap().is_ok());
    }

    #[test]
    fn no_session_credential_is_left_to_token_authentication() {
        let w = world();
        assert!(block_on(authenticate(&w.cp, &session_req("GET", Some("Bearer ota_x"), None, None), 1)).is_none());
        assert!(block_on(authenticate(&w.cp, &session_req("GET", None, None, None), 1)).is_none());
    }

    #[test]
    fn logout_ends_that_session_only() {
        let w = world();
        let a = login_at(&w, "vera", PW, "1.2.3.4", 10).unwrap();
        let b: LoginResponse = serde_json::from_slice(&a.body).unwrap();
        let bearer = format!("Bearer {}", b.token);
        let s = block_on(authenticate(&w.cp, &session_req("POST", Some(&bearer), None, None), 20)).unwrap().unwrap();
        let done = block_on(handle(
            &Deps { cp: &w.cp, kdf: &FastKdf, store: &w.store },
            &s.principal,
            Some(&s),
            R::Logout,
            b"",
            &testing::ctx(30),
        ));
        assert_eq!(status(&done), 200);
        assert!(block_on(authenticate(&w.cp, &session_req("POST", Some(&bearer), None, None), 40)).unwrap().is_err());
        let cookie = cookie_of(&a);
        assert!(block_on(authenticate(&w.cp, &session_req("GET", None, Some(&cookie), None), 40)).unwrap().is_ok());
    }

    #[test]
    fn password_change_needs_current_password_and_ends_other_sessions() {
        let w = world();
        let first = login_at(&w, "nina", PW, "1.2.3.4", 10).unwrap();
        let second: LoginResponse =
            serde_json::from_slice(&login_at(&w, "nina", PW, "1.2.3.4", 11).unwrap().body).unwrap();
        let bearer = format!("Bearer {}", second.token);
        let s = block_on(authenticate(&w.cp, &session_req("POST", Some(&bearer), None, None), 20)).unwrap().unwrap();
        let change = |current: &str| {
            let body =
                serde_json::to_vec(&serde_json::json!({"current": current, "new": "a brand new secret"})).unwrap();
            block_on(handle(
                &Deps { cp: &w.cp, kdf: &FastKdf, store: &w.store },
                &s.principal,
                Some(&s),
                R::ChangePassword,
                &body,
                &testing::ctx(30),
            ))
        };
        assert_eq!(status(&change("not the password")), 403);
        assert_eq!(status(&change(PW)), 200);
        assert!(block_on(authenticate(&w.cp, &session_req("POST", Some(&bearer), None, None), 40)).unwrap().is_ok());
        let old_cookie = cookie_of(&first);
        assert!(block_on(authenticate(&w.cp, &session_req("GET", None, Some(&old_cookie), None), 40))
            .unwrap()
            .is_err());
        assert_eq!(login_at(&w, "nina", PW, "1.2.3.4", 50).unwrap_err().status, 401);
        assert!(login_at(&w, "nina", "a brand new secret", "1.2.3.4", 50).is_ok());
    }

    /// Roles × account operations on demo-app: the exact status each gets, and refusals change
    /// nothing (members and keys as before).
    #[test]
    fn account_routes_every_role_exact_status() {
        let key_id = "0123456789abcdef";
        let ops: Vec<(&str, AccountRoute, serde_json::Value, Option<crate::access::auth::Action>, u16)> = {
            use crate::access::auth::Action::*;
            let s = || "demo-app".to_string();
            vec![
                ("members", R::Members { slug: s() }, serde_json::Value::Null, Some(Read), 200),
                (
                    "add member",
                    R::SetMember { slug: s(), login: "nina".into() },
                    serde_json::json!({"role": "viewer"}),
                    Some(Manage),
                    200,
                ),
                (
                    "remove member",
                    R::RemoveMember { slug: s(), login: "vera".into() },
                    serde_json::Value::Null,
                    Some(Manage),
                    200,
                ),
                ("list keys", R::ListKeys { slug: s() }, serde_json::Value::Null, Some(Manage), 200),
                (
                    "create key",
                    R::CreateKey { slug: s() },
                    serde_json::json!({"name": "ci", "scopes": ["publish"]}),
                    Some(Manage),
                    201,
                ),
                (
                    "rename key",
                    R::RenameKey { slug: s(), id: key_id.into() },
                    serde_json::json!({"name": "x"}),
                    Some(Manage),
                    404,
                ),
                (
                    "revoke key",
                    R::RevokeKey { slug: s(), id: key_id.into() },
                    serde_json::Value::Null,
                    Some(Manage),
                    404,
                ),
                ("create user", R::CreateUser, serde_json::json!({"login": "zed", "password": PW}), Some(Admin), 201),
                ("create app", R::CreateApp, serde_json::json!({"slug": "new-app", "owner": "nina"}), Some(Admin), 201),
                ("me", R::Me, serde_json::Value::Null, None, 200),
                ("list apps", R::ListApps, serde_json::Value::Null, None, 200),
            ]
        };
        let mut checked = 0;
        for who in ["root", "olivia", "pablo", "vera", "nina"] {
            for (name, route, body, action, ok) in ops.clone() {
                let w = world();
                let p = user(&w, who);
                let Principal::User(u) = &p else { unreachable!() };
                let allowed = u.admin
                    || action.is_none_or(|a| {
                        a != crate::access::auth::Action::Admin && u.role_in("demo-app").is_some_and(|r| r.permits(a))
                    });
                let before = (block_on(w.cp.members("demo-app")).unwrap(), w.store.keys());
                let done = handle_as(&w, &p, route, body);
                let want = if allowed { ok } else { 403 };
                assert_eq!(status(&done), want, "{name} by {who}: {:?}", done.reply);
                if !allowed {
                    assert_eq!(
                        before,
                        (block_on(w.cp.members("demo-app")).unwrap(), w.store.keys()),
                        "{name} by {who}"
                    );
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 5 * 11);
    }

    #[test]
    fn last_owner_cannot_be_removed_or_demoted() {
        let w = world();
        let olivia = user(&w, "olivia");
        let demote = handle_as(
            &w,
            &olivia,
            R::SetMember { slug: "demo-app".into(), login: "olivia".into() },
            serde_json::json!({"role": "viewer"}),
        );
        assert_eq!(status(&demote), 409);
        let remove = handle_as(
            &w,
            &olivia,
            R::RemoveMember { slug: "demo-app".into(), login: "olivia".into() },
            serde_json::Value::Null,
        );
        assert_eq!(status(&remove), 409);
        // With a second owner, the first may step down.
        handle_as(
            &w,
            &olivia,
            R::SetMember { slug: "demo-app".into(), login: "pablo".into() },
            serde_json::json!({"role": "owner"}),
        );
        assert_eq!(
            status(&handle_as(
                &w,
                &olivia,
                R::RemoveMember { slug: "demo-app".into(), login: "olivia".into() },
                serde_json::Value::Null
            )),
            200
        );
    }

    #[test]
    fn owner_keys_are_scoped_to_their_app_and_other_tokens_stay_hidden() {
        let w = world();
        let olivia = user(&w, "olivia");
        let created = handle_as(
            &w,
            &olivia,
            R::CreateKey { slug: "demo-app".into() },
            serde_json::json!({"name": "ci", "scopes": ["publish", "read"]}),
        );
        let created: tokens::CreateTokenResponse = serde_json::from_slice(&created.reply.unwrap().body).unwrap();
        assert_eq!(created.info.apps, vec!["demo-app".to_string()]);
        // A token the ADMIN_TOKEN minted for two apps is not this owner's to see or revoke.
        let req = CreateTokenRequest {
            name: "wide".into(),
            apps: vec!["demo-app".into(), "other".into()],
            scopes: vec!["read".into()],
            ..Default::default()
        };
        let wide = block_on(tokens::create(&w.store, req, &testing::ctx(5))).unwrap();
        let listed = handle_as(&w, &olivia, R::ListKeys { slug: "demo-app".into() }, serde_json::Value::Null);
        let listed: serde_json::Value = serde_json::from_slice(&listed.reply.unwrap().body).unwrap();
        let ids: Vec<&str> = listed["keys"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
        assert_eq!(ids, vec![created.info.id.as_str()]);
        assert!(
            !String::from_utf8_lossy(&serde_json::to_vec(&listed).unwrap()).contains(&created.token),
            "no secret in a listing"
        );
        let revoke_wide = handle_as(
            &w,
            &olivia,
            R::RevokeKey { slug: "demo-app".into(), id: wide.info.id.clone() },
            serde_json::Value::Null,
        );
        assert_eq!(status(&revoke_wide), 404);
        let rename = handle_as(
            &w,
            &olivia,
            R::RenameKey { slug: "demo-app".into(), id: created.info.id.clone() },
            serde_json::json!({"name": "deploy bot"}),
        );
        assert_eq!(status(&rename), 200);
        let revoke = handle_as(
            &w,
            &olivia,
            R::RevokeKey { slug: "demo-app".into(), id: created.info.id.clone() },
            serde_json::Value::Null,
        );
        assert_eq!(status(&revoke), 200);
        let audit = revoke.audit.unwrap();
        assert_eq!(
            (audit.actor.as_str(), audit.action.as_str(), audit.token_id.as_deref()),
            ("user:olivia", "token-revoke", Some(created.info.id.as_str()))
        );
        let (r, _) = block_on(tokens::lookup(&w.store, &created.info.id)).unwrap().unwrap();
        assert_eq!((r.name.as_str(), r.revoked_at.is_some()), ("deploy bot", true));
    }

    #[test]
    fn body_unknown_field_wrong_type_or_not_an_object_is_400() {
        let w = world();
        let olivia = user(&w, "olivia");
        let route = || R::SetMember { slug: "demo-app".into(), login: "nina".into() };
        for body in [
            serde_json::json!({"role": "viewer", "admin": true}),
            serde_json::json!({"role": 1}),
            serde_json::json!(["viewer"]),
        ] {
            let done = handle_as(&w, &olivia, route(), body.clone());
            assert_eq!(status(&done), 400, "{body}: {:?}", done.reply);
        }
        let e = login_at(&w, "vera", PW, "1.2.3.4", 1).map(|_| ());
        assert!(e.is_ok());
        let extra =
            serde_json::to_vec(&serde_json::json!({"login": "vera", "password": PW, "remember": true})).unwrap();
        let e = block_on(super::login(&w.cp, &FastKdf, &extra, None, &testing::ctx(2))).unwrap_err();
        assert!(e.message.contains("remember"), "{}", e.message);
    }
}
