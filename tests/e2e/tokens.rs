//! Scoped tokens, the audit log and deploy rate limiting, against the real Worker. The token
//! list and the audit log are shared by every test on a server: each test looks only at its
//! own tokens (by id) and its own apps' entries.

use crate::util::*;
use serde_json::{json, Value};

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
fn scoped_token_outside_its_apps_or_scopes_gets_403_revoked_gets_401() {
    let s = server();
    let (demo, other) = (unique_slug("scoped"), unique_slug("scoped-other"));
    let (demo, other) = (demo.as_str(), other.as_str());
    let r =
        create_token(s, json!({"name": "ci-demo", "apps": [demo], "scopes": ["publish", "read"], "expiresIn": "90d"}));
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
    let r = http(
        "POST",
        &s.url(&format!("/api/publish/{demo}")),
        &[("authorization", &auth), ("content-type", &ct)],
        Some(&body),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(call("GET", &s.url(&format!("/api/updates?slug={demo}")), None).status, 200);

    // Another app, or an action outside its scopes: 403 (known token, not allowed).
    let e = call("POST", &s.url(&format!("/api/publish/{other}/android/2.0.0/prepare")), Some(br#"{"files":[]}"#))
        .assert_error(403);
    assert!(e.contains(other), "{e}");
    call("GET", &s.url(&format!("/api/updates?slug={other}")), None).assert_error(403);
    let e = call("DELETE", &s.url(&format!("/api/updates/{demo}/ios/1.0.3")), None).assert_error(403);
    assert!(e.contains("delete"), "{e}");
    // Rolling back needs the `rollback` scope, through the rollback route or as a committed
    // directive. The directive is valid (commitTime now), so only the missing scope refuses it.
    let e = call("POST", &s.url(&format!("/api/updates/{demo}/ios/1.0.3/rollback")), Some(b"{}")).assert_error(403);
    assert!(e.contains("rollback"), "{e}");
    let directive = expo_ota::protocol::manifest::Directive::roll_back_to_embedded(now_ms()).render();
    call(
        "POST",
        &s.url(&format!("/api/publish/{demo}/ios/1.0.3/commit")),
        Some(json!({"directive": directive}).to_string().as_bytes()),
    )
    .assert_error(403);
    // Token management and the cross-app audit log need the ADMIN_TOKEN.
    call("POST", &s.url("/api/tokens"), Some(br#"{"name":"x","allApps":true,"scopes":["delete"]}"#)).assert_error(403);
    call("GET", &s.url("/api/tokens"), None).assert_error(403);
    call("GET", &s.url("/api/audit"), None).assert_error(403);
    assert_eq!(
        call("GET", &s.url(&format!("/api/audit?slug={demo}")), None).status,
        200,
        "read scope sees its app's audit"
    );

    // Unknown or malformed tokens: 401 (who are you?). The secret never comes back.
    let forged = format!("ota_{id}_{}", "0".repeat(64));
    let e = as_token(&forged)("GET", &s.url(&format!("/api/updates?slug={demo}")), None).assert_error(401);
    assert!(!e.contains(&token[20..]));
    as_token("ota_0000000000000000_")("GET", &s.url(&format!("/api/updates?slug={demo}")), None).assert_error(401);

    // Listing never shows secrets or digests; it shows last use.
    let list = s.api("GET", "/api/tokens", None);
    assert_eq!(list.status, 200);
    let text = list.text();
    assert!(!text.contains(&token) && !text.contains("hash"), "{text}");
    let tokens = list.json()["tokens"].as_array().unwrap().clone();
    let t = tokens.iter().find(|t| t["id"] == id.as_str()).unwrap_or_else(|| panic!("{id} not listed: {text}"));
    assert!(t["lastUsedAt"].is_string(), "last use is recorded: {t}");

    // Revoked: 401 from then on.
    assert_eq!(s.api("DELETE", &format!("/api/tokens/{id}"), None).status, 200);
    let e = call("GET", &s.url(&format!("/api/updates?slug={demo}")), None).assert_error(401);
    assert!(e.contains("revoked"), "{e}");
    s.api("DELETE", "/api/tokens/ffffffffffffffff", None).assert_error(404);

    // Limits on minting.
    let many: Vec<String> = (0..21).map(|i| format!("app-{i}")).collect();
    let e = create_token(s, json!({"name": "wide", "apps": many, "scopes": ["read"]})).assert_error(422);
    assert!(e.contains("MAX_APPS_PER_TOKEN"), "{e}");
    create_token(s, json!({"name": "bad", "apps": ["../x"], "scopes": ["read"]})).assert_error(400);
    create_token(s, json!({"name": "bad", "apps": ["a"], "scopes": ["root"]})).assert_error(400);
    create_token(s, json!({"name": "bad", "apps": ["a"], "scopes": ["read"], "expiresIn": "forever"}))
        .assert_error(400);
}

/// The audit entries since `since` that are about `slug` or the token `token_id`: another
/// test's entries on the shared server are not this test's business.
fn own_audit_entries(s: &Server, since: &str, slug: &str, token_id: &str) -> (Reply, Vec<Value>) {
    let log = s.api("GET", &format!("/api/audit?since={since}&limit=1000"), None);
    assert_eq!(log.status, 200, "{}", log.text());
    let entries = log.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["slug"] == slug || e["tokenId"] == token_id)
        .cloned()
        .collect();
    (log, entries)
}

#[test]
fn audit_log_records_every_deploy_operation_once() {
    let s = server();
    let app = unique_slug("audit");
    let app = app.as_str();
    let since = now_iso();
    let r = create_token(s, json!({"name": "ci-all", "allApps": true, "scopes": ["publish", "delete", "read"]}));
    let token = r.json()["token"].as_str().unwrap().to_string();
    let token_id = r.json()["id"].as_str().unwrap().to_string();
    let auth = format!("Bearer {token}");
    let (ct, body) = form_body(&export_fields("utility-app-v1"));
    let published = http(
        "POST",
        &s.url(&format!("/api/publish/{app}")),
        &[("authorization", &auth), ("content-type", &ct)],
        Some(&body),
    )
    .json();
    let update_id = published["updates"][0]["id"].as_str().unwrap().to_string();
    http("DELETE", &s.url(&format!("/api/updates/{app}/android/9.9.9")), &[("authorization", &auth)], None)
        .assert_error(404);
    assert_eq!(
        http("DELETE", &s.url(&format!("/api/updates/{app}/android/2.0.0")), &[("authorization", &auth)], None).status,
        200
    );
    assert_eq!(s.api("DELETE", &format!("/api/tokens/{token_id}"), None).status, 200);

    let (log, entries) = own_audit_entries(s, &since, app, &token_id);
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
    assert_eq!(publish["slug"], app);
    assert_eq!(publish["runtimeVersion"], "2.0.0");
    assert_eq!(publish["updateIds"][0], update_id.as_str());
    assert_eq!(entries[4]["actor"], "admin");
    assert_eq!(entries[4]["tokenId"], token_id.as_str());
    assert!(!log.text().contains(&token), "secrets never reach the audit log");
    // Filters.
    let only = s.api("GET", &format!("/api/audit?slug={app}"), None).json();
    assert_eq!(only["entries"].as_array().unwrap().len(), 3);
    let future = s.api("GET", "/api/audit?since=2999-01-01T00:00:00.000Z", None).json();
    assert!(future["entries"].as_array().unwrap().is_empty());
    s.api("GET", "/api/audit?since=yesterday", None).assert_error(400);
    // The log is in D1: five rows of this test's, three naming the app; nothing in R2.
    let rows: Vec<Value> = s
        .audit_rows()
        .into_iter()
        .filter(|r| r["entry"]["slug"] == app || r["entry"]["tokenId"] == token_id.as_str())
        .collect();
    assert_eq!(rows.len(), 5, "{rows:#?}");
    assert_eq!(rows.iter().filter(|r| r["slug"] == app).count(), 3);
    assert!(s.objects().iter().all(|o| !o.key.starts_with("_system/audit/")), "no audit entry in R2");
}

/// Audit entries go to D1 (none to R2) and `GET /api/audit` pages them newest first by cursor,
/// with a slug and a `since` filter, each entry once.
#[test]
fn audit_log_is_in_d1_and_pages_by_cursor_with_filters() {
    let s = server();
    let app = unique_slug("audit-pages");
    let app = app.as_str();
    let since = now_iso();
    // Five audited operations on the app (each a 404: nothing to delete), one on another app.
    for v in 1..=5 {
        s.api("DELETE", &format!("/api/updates/{app}/android/{v}.0.0"), None).assert_error(404);
    }
    let other = unique_slug("audit-other");
    s.api("DELETE", &format!("/api/updates/{other}/android/1.0.0"), None).assert_error(404);

    let mut seen = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/audit?slug={app}&since={since}&limit=2");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = s.api("GET", &path, None).json();
        pages += 1;
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 2, "{page}");
        assert!(entries.iter().all(|e| e["slug"] == app), "the slug filter holds on every page: {page}");
        seen.extend(entries.iter().map(|e| e["runtimeVersion"].as_str().unwrap().to_string()));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 10, "the cursor must advance");
    }
    assert_eq!(seen, ["5.0.0", "4.0.0", "3.0.0", "2.0.0", "1.0.0"], "newest first, each once");
    assert_eq!(pages, 3);
    s.api("GET", "/api/audit?cursor=../../x", None).assert_error(400);

    // The same through the CLI.
    let out = s.cli(&["audit", "--slug", app, "--since", "1d", "--json"]);
    assert!(out.ok, "{}", out.stderr);
    let log: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(log["entries"].as_array().unwrap().len(), 5, "{log}");

    // Where they are: D1 rows, no R2 object.
    let rows = s.audit_rows();
    assert_eq!(rows.iter().filter(|r| r["slug"] == app).count(), 5);
    assert_eq!(rows.iter().filter(|r| r["slug"] == other.as_str()).count(), 1);
    assert!(s.objects().iter().all(|o| !o.key.starts_with("_system/audit/")), "no audit entry in R2");
}

#[test]
fn deploy_rate_limit_exhausted_credential_gets_429_others_and_reads_do_not() {
    // The only server with a limit a test can exhaust quickly. Limits are per credential, so the
    // subject is a token of this test's own, not the admin token other tests share.
    let s = server_with(Config::ServerKey);
    let app = unique_slug("rate-limit");
    let app = app.as_str();
    let limit = SERVER_KEY_DEPLOYS_PER_MINUTE as usize;
    let mint = |name: &str| {
        let r = create_token(s, json!({"name": name, "apps": [app], "scopes": ["publish", "read"]}));
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["token"].as_str().unwrap().to_string()
    };
    // miniflare counts per wall-clock minute: a run that straddles a minute starts again.
    let mut attempt = 0;
    let token = loop {
        attempt += 1;
        let token = mint("limited");
        let call = as_token(&token);
        let minute = now_ms() / 60_000;
        // Every deploy operation counts, not only listing: the first is a prepare.
        let mut statuses = vec![
            call("POST", &s.url(&format!("/api/publish/{app}/ios/1.0.3/prepare")), Some(br#"{"files":[]}"#)).status,
        ];
        for _ in 1..limit + 2 {
            statuses.push(call("GET", &s.url(&format!("/api/updates?slug={app}")), None).status);
        }
        if now_ms() / 60_000 != minute && attempt < 3 {
            continue;
        }
        let mut expected = vec![200; limit];
        expected.extend([429, 429]);
        assert_eq!(statuses, expected, "{limit} deploy requests per minute, then 429");
        drop(call);
        break token;
    };
    let e = as_token(&token)("GET", &s.url(&format!("/api/updates?slug={app}")), None).assert_error(429);
    assert!(e.contains("DEPLOY_RATE_LIMITER"), "{e}");
    // Another credential has its own budget.
    let other = mint("unlimited");
    assert_eq!(as_token(&other)("GET", &s.url(&format!("/api/updates?slug={app}")), None).status, 200);
    // Manifest checks and health are never limited.
    for _ in 0..20 {
        assert_eq!(s.check(app, "ios", "1.0.3", &[]).status, 200);
        assert_eq!(http("GET", &s.url("/health"), &[], None).status, 200);
    }
}

#[test]
fn cli_token_create_publish_list_audit_revoke() {
    let s = server();
    let (utility, other) = (unique_slug("cli-tokens"), unique_slug("cli-tokens-other"));
    let (utility, other) = (utility.as_str(), other.as_str());
    let since = now_iso();
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
        utility,
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
    let ok = publish(utility);
    assert!(ok.ok, "{}", ok.stderr);
    let denied = publish(other);
    assert!(!denied.ok && denied.stderr.contains("403"), "{}", denied.stderr);

    // Other tests' tokens are listed too: find this one by id.
    let listed = run(&["token", "list", "--json"]);
    let t = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {listed}"));
    assert_eq!((t["id"].as_str(), t["name"].as_str()), (Some(id.as_str()), Some("ci-utility")));
    assert!(t["lastUsedAt"].is_string());
    assert!(!s.cli(&["token", "list"]).stdout.contains(&token), "never prints secrets");

    let log = run(&["audit", "--slug", utility, "--since", "1d", "--json"]);
    let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["publish"]);
    assert_eq!(log["entries"][0]["actorName"], "ci-utility");
    // The whole log, from this test's start (other tests write to it meanwhile).
    let human = s.cli(&["audit", "--since", &since, "--limit", "1000"]);
    assert!(
        human.ok && human.stdout.contains("token-create") && human.stdout.contains("ci-utility"),
        "{}",
        human.stdout
    );

    run(&["token", "revoke", &id, "--json"]);
    let after = publish(utility);
    assert!(!after.ok && after.stderr.contains("revoked"), "{}", after.stderr);
}
