//! Scoped tokens, the audit log and deploy rate limiting, against the real Worker.

mod util;

use serde_json::{json, Value};
use util::*;

fn create_token(s: &Server, body: Value) -> Reply {
    s.api("POST", "/api/tokens", Some(&body))
}

fn as_token<'a>(token: &'a str) -> impl Fn(&str, &str, Option<&[u8]>) -> Reply + 'a {
    move |method: &str, url: &str, body: Option<&[u8]>| {
        let auth = format!("Bearer {token}");
        http(method, url, &[("authorization", &auth), ("content-type", "application/json")], body)
    }
}

#[test]
fn scoped_tokens_are_limited_to_their_apps_and_actions() {
    let s = Server::start();
    let r = create_token(
        &s,
        json!({"name": "ci-demo", "apps": ["demo-app"], "scopes": ["publish", "read"], "expiresIn": "90d"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(token.starts_with("ota_") && token.contains(&id));
    assert!(created["expiresAt"].is_string());
    let call = as_token(&token);

    // Publish to its app works, with the real form route.
    let (ct, body) = form_body(&export_fields("demo-app-v1"));
    let auth = format!("Bearer {token}");
    let r =
        http("POST", &s.url("/api/publish/demo-app"), &[("authorization", &auth), ("content-type", &ct)], Some(&body));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(call("GET", &s.url("/api/updates?slug=demo-app"), None).status, 200);

    // Another app, or an action outside its scopes: 403 (known token, not allowed).
    let e = call("POST", &s.url("/api/publish/utility-app/android/2.0.0/prepare"), Some(br#"{"files":[]}"#))
        .assert_error(403);
    assert!(e.contains("utility-app"), "{e}");
    call("GET", &s.url("/api/updates?slug=utility-app"), None).assert_error(403);
    let e = call("DELETE", &s.url("/api/updates/demo-app/ios/1.0.3"), None).assert_error(403);
    assert!(e.contains("delete"), "{e}");
    let directive = expo_ota::protocol::manifest::Directive::roll_back_to_embedded(4_000_000_000_000).render();
    call(
        "POST",
        &s.url("/api/publish/demo-app/ios/1.0.3/commit"),
        Some(json!({"directive": directive}).to_string().as_bytes()),
    )
    .assert_error(403);
    // Token management and the cross-app audit log need the ADMIN_TOKEN.
    call("POST", &s.url("/api/tokens"), Some(br#"{"name":"x","allApps":true,"scopes":["delete"]}"#)).assert_error(403);
    call("GET", &s.url("/api/tokens"), None).assert_error(403);
    call("GET", &s.url("/api/audit"), None).assert_error(403);
    assert_eq!(call("GET", &s.url("/api/audit?slug=demo-app"), None).status, 200, "read scope sees its app's audit");

    // Unknown or malformed tokens: 401 (who are you?). The secret never comes back.
    let forged = format!("ota_{id}_{}", "0".repeat(64));
    let e = as_token(&forged)("GET", &s.url("/api/updates?slug=demo-app"), None).assert_error(401);
    assert!(!e.contains(&token[20..]));
    as_token("ota_0000000000000000_")("GET", &s.url("/api/updates?slug=demo-app"), None).assert_error(401);

    // Listing never shows secrets or digests; it shows last use.
    let list = s.api("GET", "/api/tokens", None);
    assert_eq!(list.status, 200);
    let text = list.text();
    assert!(!text.contains(&token) && !text.contains("hash"), "{text}");
    let t = &list.json()["tokens"][0];
    assert_eq!(t["id"], id.as_str());
    assert!(t["lastUsedAt"].is_string(), "last use is recorded: {t}");

    // Revoked: 401 from then on.
    assert_eq!(s.api("DELETE", &format!("/api/tokens/{id}"), None).status, 200);
    let e = call("GET", &s.url("/api/updates?slug=demo-app"), None).assert_error(401);
    assert!(e.contains("revoked"), "{e}");
    s.api("DELETE", "/api/tokens/ffffffffffffffff", None).assert_error(404);

    // Limits on minting.
    let many: Vec<String> = (0..21).map(|i| format!("app-{i}")).collect();
    let e = create_token(&s, json!({"name": "wide", "apps": many, "scopes": ["read"]})).assert_error(422);
    assert!(e.contains("MAX_APPS_PER_TOKEN"), "{e}");
    create_token(&s, json!({"name": "bad", "apps": ["../x"], "scopes": ["read"]})).assert_error(400);
    create_token(&s, json!({"name": "bad", "apps": ["a"], "scopes": ["root"]})).assert_error(400);
    create_token(&s, json!({"name": "bad", "apps": ["a"], "scopes": ["read"], "expiresIn": "forever"}))
        .assert_error(400);
}

#[test]
fn audit_log_records_every_deploy_operation() {
    let s = Server::start();
    let r = create_token(&s, json!({"name": "ci-all", "allApps": true, "scopes": ["publish", "delete", "read"]}));
    let token = r.json()["token"].as_str().unwrap().to_string();
    let token_id = r.json()["id"].as_str().unwrap().to_string();
    let auth = format!("Bearer {token}");
    let (ct, body) = form_body(&export_fields("utility-app-v1"));
    let published = http(
        "POST",
        &s.url("/api/publish/utility-app"),
        &[("authorization", &auth), ("content-type", &ct)],
        Some(&body),
    )
    .json();
    let update_id = published["updates"][0]["id"].as_str().unwrap().to_string();
    http("DELETE", &s.url("/api/updates/utility-app/android/9.9.9"), &[("authorization", &auth)], None)
        .assert_error(404);
    assert_eq!(
        http("DELETE", &s.url("/api/updates/utility-app/android/2.0.0"), &[("authorization", &auth)], None).status,
        200
    );
    assert_eq!(s.api("DELETE", &format!("/api/tokens/{token_id}"), None).status, 200);

    let log = s.api("GET", "/api/audit", None);
    assert_eq!(log.status, 200, "{}", log.text());
    let entries = log.json()["entries"].as_array().unwrap().clone();
    let actions: Vec<(&str, u64)> =
        entries.iter().map(|e| (e["action"].as_str().unwrap(), e["status"].as_u64().unwrap())).collect();
    assert_eq!(
        actions,
        vec![
            ("token-revoke", 200),
            ("delete-runtime", 200),
            ("delete-runtime", 404),
            ("publish", 201),
            ("token-create", 201)
        ],
        "newest first"
    );
    let publish = &entries[3];
    assert_eq!(publish["actor"], token_id.as_str());
    assert_eq!(publish["actorName"], "ci-all");
    assert_eq!(publish["slug"], "utility-app");
    assert_eq!(publish["runtimeVersion"], "2.0.0");
    assert_eq!(publish["updateIds"][0], update_id.as_str());
    assert_eq!(entries[4]["actor"], "admin");
    assert_eq!(entries[4]["tokenId"], token_id.as_str());
    assert!(!log.text().contains(&token), "secrets never reach the audit log");
    // Filters.
    let only = s.api("GET", "/api/audit?slug=utility-app", None).json();
    assert_eq!(only["entries"].as_array().unwrap().len(), 3);
    let future = s.api("GET", "/api/audit?since=2999-01-01T00:00:00.000Z", None).json();
    assert!(future["entries"].as_array().unwrap().is_empty());
    s.api("GET", "/api/audit?since=yesterday", None).assert_error(400);
    // Entries are immutable objects: nothing overwrote an earlier one. Each is in the cross-app
    // log, and again in its app's log when it names one.
    assert_eq!(s.objects().iter().filter(|k| k.starts_with("_system/audit/all/")).count(), 5);
    assert_eq!(s.objects().iter().filter(|k| k.starts_with("_system/audit/app/utility-app/")).count(), 3);
}

#[test]
fn deploy_operations_are_rate_limited_per_credential_reads_are_not() {
    let s = Server::start_with(ServerOptions { deploy_rate_limit: Some(5), ..Default::default() });
    // Minting is the admin's first deploy operation of the window.
    let token = create_token(&s, json!({"name": "reader", "allApps": true, "scopes": ["read"]})).json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(s.api("GET", "/api/updates?slug=demo-app", None).status);
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 429, 429]);
    let e = s.api("GET", "/api/updates?slug=demo-app", None).assert_error(429);
    assert!(e.contains("DEPLOY_RATE_LIMITER"), "{e}");
    // Another credential has its own budget.
    assert_eq!(as_token(&token)("GET", &s.url("/api/updates?slug=demo-app"), None).status, 200);
    // Manifest checks and health are never limited.
    for _ in 0..20 {
        assert_eq!(s.check("demo-app", "ios", "1.0.3", &[]).status, 200);
        assert_eq!(http("GET", &s.url("/health"), &[], None).status, 200);
    }
}

#[test]
fn cli_token_lifecycle_and_audit() {
    let s = Server::start();
    let run = |args: &[&str]| -> Value {
        let out = s.cli(args);
        assert!(out.ok, "{:?}: {}", args, out.stderr);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
    };
    let created = run(&[
        "token",
        "create",
        "--name",
        "ci-utility",
        "--slug",
        "utility-app",
        "--scope",
        "publish,read",
        "--expires-in",
        "30d",
        "--json",
    ]);
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();

    // The CI job publishes with the scoped token (and cannot touch another app).
    let dir = fixture("utility-app-v1");
    let publish = |slug: &str| {
        run_cli(
            &[
                "publish",
                "--server",
                &s.base,
                "--auth-token",
                &token,
                "--slug",
                slug,
                "--export-dir",
                dir.to_str().unwrap(),
                "--json",
            ]
            .map(String::from),
        )
    };
    let ok = publish("utility-app");
    assert!(ok.ok, "{}", ok.stderr);
    let denied = publish("demo-app");
    assert!(!denied.ok && denied.stderr.contains("403"), "{}", denied.stderr);

    let listed = run(&["token", "list", "--json"]);
    let t = &listed["tokens"][0];
    assert_eq!((t["id"].as_str(), t["name"].as_str()), (Some(id.as_str()), Some("ci-utility")));
    assert!(t["lastUsedAt"].is_string());
    assert!(!s.cli(&["token", "list"]).stdout.contains(&token), "never prints secrets");

    let log = run(&["audit", "--slug", "utility-app", "--since", "1d", "--json"]);
    let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["publish"]);
    assert_eq!(log["entries"][0]["actorName"], "ci-utility");
    let human = s.cli(&["audit"]);
    assert!(
        human.ok && human.stdout.contains("token-create") && human.stdout.contains("ci-utility"),
        "{}",
        human.stdout
    );

    run(&["token", "revoke", &id, "--json"]);
    let after = publish("utility-app");
    assert!(!after.ok && after.stderr.contains("revoked"), "{}", after.stderr);
}
