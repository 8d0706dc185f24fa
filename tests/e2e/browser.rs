//! The dashboard in a real browser (tests/browser/dashboard.mjs: playwright-core + Debian's
//! Chromium, headless, 375 px wide) against this binary's server: sign in, see the published
//! update ids, roll back from the page and see the served update change over the API, create and
//! revoke an API key, CSRF refusal, a session that ends, a viewer without action buttons whom the
//! API refuses anyway. The app page's screenshot is left in target/artifacts/.

use crate::util::*;
use serde_json::{json, Value};
use std::process::Command;

const PW: &str = "correct horse battery";

fn tail(log: &str) -> &str {
    let from = log.char_indices().rev().nth(4000).map_or(0, |(i, _)| i);
    &log[from..]
}

#[test]
fn dashboard_in_chromium_owner_rolls_back_viewer_cannot() {
    let s = server();
    let slug = unique_slug("browser");
    let (owner, viewer) = (unique_slug("owner"), unique_slug("viewer"));
    for login in [&owner, &viewer] {
        let r = s.api("POST", "/api/users", Some(&json!({"login": login, "password": PW})));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    assert_eq!(s.api("POST", "/api/apps", Some(&json!({"slug": slug, "owner": owner}))).status, 201);
    let r = s.api("PUT", &format!("/api/apps/{slug}/members/{viewer}"), Some(&json!({"role": "viewer"})));
    assert_eq!(r.status, 200, "{}", r.text());
    let ids: Vec<String> = ["demo-app-v1", "demo-app-v2"]
        .iter()
        .map(|f| s.publish(&slug, f, &["--platform", "ios"])["updates"][0]["id"].as_str().unwrap().to_string())
        .collect();
    let served = |s: &Server| s.check(&slug, "ios", "1.0.3", &[]).manifest()["id"].as_str().unwrap().to_string();
    assert_eq!(served(s), ids[1]);

    let artifacts = root().join("target/artifacts");
    let out = Command::new("node")
        .arg(root().join("tests/browser/dashboard.mjs"))
        .current_dir(root())
        .env("BASE", &s.base)
        .env("SLUG", &slug)
        .env("OWNER", &owner)
        .env("VIEWER", &viewer)
        .env("PASSWORD", PW)
        .env("UPDATE_IDS", ids.join(","))
        .env("ARTIFACTS", &artifacts)
        .output()
        .expect("run node tests/browser/dashboard.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{}\nserver log (tail):\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&s.log())
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("browser output is not JSON ({e}): {stdout}"));

    assert_eq!(seen["servedBefore"], json!(ids[1]));
    assert!(seen["scrollWidth"].as_u64().unwrap() <= 375, "the app page is wider than a phone: {seen}");
    assert_eq!(seen["csrfMissing"], json!(403), "a change without the CSRF token is refused");
    // Rolled back from the page: the server now serves something else, the same as the page shows.
    let after = served(s);
    assert_ne!(after, ids[1]);
    assert_eq!(seen["servedAfter"], json!(after));
    // The key the page created was revoked from the page: it no longer authenticates.
    let key = seen["createdKey"].as_str().unwrap();
    let auth = format!("Bearer {key}");
    http("GET", &s.url(&format!("/api/updates?slug={slug}")), &[("authorization", &auth)], None).assert_error(401);
    assert_eq!(seen["logout"], json!(200));
    assert_eq!(seen["viewerRole"], json!("viewer"));
    assert_eq!(seen["viewerButtons"], json!(0), "a viewer sees no action buttons");
    assert_eq!(seen["viewerRollback"], json!(403), "and the API refuses the action anyway");
    assert_eq!(served(s), after, "the viewer's attempt changed nothing");
    assert_eq!(seen["ownerProblems"], json!([]), "no page errors: {seen}");
    assert_eq!(seen["viewerProblems"], json!([]), "no page errors: {seen}");
    assert!(artifacts.join("dashboard-app-page.png").is_file());
}
