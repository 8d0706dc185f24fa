//! Accounts against the real Worker with local D1: users made with the ADMIN_TOKEN, sign-in,
//! bearer and cookie sessions, roles on an app, CSRF, per-app API keys. Logins and slugs are
//! unique per test (servers are shared and never reset).

use crate::util::*;
use serde_json::{json, Value};

const PW: &str = "correct horse battery";

fn login_name(what: &str) -> String {
    unique_slug(what).replace('_', "-")
}

/// Signs in: (bearer token, `ota_session=…` cookie pair, csrf token).
fn sign_in(s: &Server, login: &str, pw: &str) -> (String, String, String) {
    let body = json!({"login": login, "password": pw}).to_string();
    let r = http("POST", &s.url("/api/auth/login"), &[("content-type", "application/json")], Some(body.as_bytes()));
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r.header("set-cookie").expect("a session cookie").to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let j = r.json();
    let pair = cookie.split(';').next().unwrap().to_string();
    (j["token"].as_str().unwrap().into(), pair, j["csrf"].as_str().unwrap().into())
}

fn as_bearer(s: &Server, token: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
    let auth = format!("Bearer {token}");
    let b = body.map(|v| v.to_string().into_bytes());
    http(method, &s.url(path), &[("authorization", &auth), ("content-type", "application/json")], b.as_deref())
}

fn as_cookie(s: &Server, cookie: &str, csrf: Option<&str>, method: &str, path: &str, body: Option<&Value>) -> Reply {
    let b = body.map(|v| v.to_string().into_bytes());
    let mut h = vec![("cookie", cookie), ("content-type", "application/json"), ("origin", s.base.as_str())];
    if let Some(c) = csrf {
        h.push(("x-csrf-token", c));
    }
    http(method, &s.url(path), &h, b.as_deref())
}

fn create_user(s: &Server, login: &str) {
    let r = s.api("POST", "/api/users", Some(&json!({"login": login, "password": PW})));
    assert_eq!(r.status, 201, "{}", r.text());
}

fn served_id(s: &Server, slug: &str) -> String {
    s.check(slug, "ios", "1.0.3", &[]).manifest()["id"].as_str().unwrap().to_string()
}

#[test]
fn roles_sessions_and_keys_owner_publishes_viewer_reads_only() {
    let s = server();
    let slug = unique_slug("accounts");
    let (owner, viewer) = (login_name("owner"), login_name("viewer"));
    create_user(s, &owner);
    create_user(s, &viewer);
    let r = s.api("POST", "/api/apps", Some(&json!({"slug": slug, "owner": owner})));
    assert_eq!(r.status, 201, "{}", r.text());

    // The owner publishes twice with the CLI, authenticated by the bearer session from sign-in.
    let (bearer, cookie, csrf) = sign_in(s, &owner, PW);
    for fixture_name in ["demo-app-v1", "demo-app-v2"] {
        let dir = fixture(fixture_name);
        let out = run_cli(&[
            "publish".into(),
            "--slug".into(),
            slug.clone(),
            "--export-dir".into(),
            dir.to_str().unwrap().into(),
            "--server".into(),
            s.base.clone(),
            "--auth-token".into(),
            bearer.clone(),
        ]);
        assert!(out.ok, "publish as the owner's session: {}", out.stderr);
    }
    let v2 = served_id(s, &slug);

    // Members: the owner adds the viewer.
    let r =
        as_bearer(s, &bearer, "PUT", &format!("/api/apps/{slug}/members/{viewer}"), Some(&json!({"role": "viewer"})));
    assert_eq!(r.status, 200, "{}", r.text());
    let (vbearer, vcookie, vcsrf) = sign_in(s, &viewer, PW);
    let me = as_cookie(s, &vcookie, None, "GET", "/api/auth/me", None).json();
    assert_eq!(me["apps"], json!([{"slug": slug, "role": "viewer"}]));
    assert_eq!(me["csrf"], json!(vcsrf));
    assert_eq!(as_bearer(s, &vbearer, "GET", &format!("/api/updates?slug={slug}"), None).status, 200);
    // The viewer may not roll back, through the cookie (with a valid CSRF token) or the bearer.
    let rollback = format!("/api/updates/{slug}/ios/1.0.3/rollback");
    let e = as_cookie(s, &vcookie, Some(&vcsrf), "POST", &rollback, Some(&json!({}))).assert_error(403);
    assert!(e.contains("viewer"), "{e}");
    as_bearer(s, &vbearer, "POST", &rollback, Some(&json!({}))).assert_error(403);
    assert_eq!(served_id(s, &slug), v2);

    // The owner's cookie without the CSRF token, or from another origin: refused, nothing moves.
    let e = as_cookie(s, &cookie, None, "POST", &rollback, Some(&json!({}))).assert_error(403);
    assert!(e.contains("CSRF"), "{e}");
    let body = json!({}).to_string();
    let foreign = [("cookie", cookie.as_str()), ("origin", "https://evil.example"), ("x-csrf-token", csrf.as_str())];
    http("POST", &s.url(&rollback), &foreign, Some(body.as_bytes())).assert_error(403);
    assert_eq!(served_id(s, &slug), v2);
    // With it, the rollback happens and devices are served the previous update again.
    let r = as_cookie(s, &cookie, Some(&csrf), "POST", &rollback, Some(&json!({})));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_ne!(served_id(s, &slug), v2);

    // API keys: created by the owner (secret once), usable, revoked, then refused.
    let r = as_cookie(
        s,
        &cookie,
        Some(&csrf),
        "POST",
        &format!("/api/apps/{slug}/keys"),
        Some(&json!({"name": "ci", "scopes": ["read"]})),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let (key, key_id) = (r.json()["token"].as_str().unwrap().to_string(), r.json()["id"].as_str().unwrap().to_string());
    assert_eq!(as_bearer(s, &key, "GET", &format!("/api/updates?slug={slug}"), None).status, 200);
    let listed = as_bearer(s, &bearer, "GET", &format!("/api/apps/{slug}/keys"), None).json();
    assert_eq!(listed["keys"][0]["id"], json!(key_id));
    assert!(!listed.to_string().contains(&key), "a listing never shows the secret");
    as_bearer(s, &vbearer, "DELETE", &format!("/api/apps/{slug}/keys/{key_id}"), None).assert_error(403);
    let r = as_cookie(s, &cookie, Some(&csrf), "DELETE", &format!("/api/apps/{slug}/keys/{key_id}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    as_bearer(s, &key, "GET", &format!("/api/updates?slug={slug}"), None).assert_error(401);

    // Who did what is in the app's audit log under the user's login.
    let audit = s.api("GET", &format!("/api/audit?slug={slug}&limit=50"), None).json();
    let actions: Vec<(String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap().to_string(), e["action"].as_str().unwrap().to_string()))
        .collect();
    for want in ["rollback", "token-create", "token-revoke", "member-set", "publish"] {
        assert!(actions.contains(&(format!("user:{owner}"), want.to_string())), "{want} in {actions:?}");
    }

    // Signing out ends the cookie session.
    let r = as_cookie(s, &cookie, Some(&csrf), "POST", "/api/auth/logout", None);
    assert_eq!(r.status, 200, "{}", r.text());
    as_cookie(s, &cookie, None, "GET", "/api/auth/me", None).assert_error(401);
}

#[test]
fn login_wrong_password_is_401_and_the_eleventh_try_is_429() {
    let s = server();
    let who = login_name("throttled");
    create_user(s, &who);
    let body = json!({"login": who, "password": "not the password"}).to_string();
    for _ in 0..10 {
        let r = http("POST", &s.url("/api/auth/login"), &[("content-type", "application/json")], Some(body.as_bytes()));
        r.assert_error(401);
    }
    let right = json!({"login": who, "password": PW}).to_string();
    let r = http("POST", &s.url("/api/auth/login"), &[("content-type", "application/json")], Some(right.as_bytes()));
    let e = r.assert_error(429);
    assert!(e.contains("too many"), "{e}");
}

#[test]
fn session_token_as_bearer_on_another_app_is_403() {
    let s = server();
    let (mine, theirs) = (unique_slug("mine"), unique_slug("theirs"));
    let who = login_name("member");
    create_user(s, &who);
    assert_eq!(s.api("POST", "/api/apps", Some(&json!({"slug": mine, "owner": who}))).status, 201);
    let (bearer, _, _) = sign_in(s, &who, PW);
    as_bearer(s, &bearer, "GET", &format!("/api/updates?slug={theirs}"), None).assert_error(403);
    as_bearer(s, &bearer, "POST", "/api/users", Some(&json!({"login": "x-y", "password": PW}))).assert_error(403);
}

/// The Worker derives with WebCrypto, the host with the `pbkdf2` crate: the hash the Worker stored
/// verifies on the host with the same parameters, and a wrong password does not.
#[test]
fn webcrypto_password_hash_verifies_natively() {
    use expo_ota::access::accounts::password::{self, NativeKdf, PasswordHash};
    let s = server();
    let who = login_name("kdf");
    create_user(s, &who);
    let stored = s.password_hash(&who).expect("the user's row in local D1");
    let parsed = PasswordHash::parse(&stored).expect("a well-formed hash");
    assert_eq!((parsed.iterations, parsed.salt.len()), (password::ITERATIONS, 16));
    assert!(pollster::block_on(password::verify(&NativeKdf, PW, &stored)).unwrap());
    assert!(!pollster::block_on(password::verify(&NativeKdf, "not the password", &stored)).unwrap());
}
