//! The dashboard in a real browser (tests/browser/dashboard.mjs: playwright-core + Debian's
//! Chromium, headless, 375 px wide) against this binary's server: sign in, see the published
//! update ids, the health panel's counts (sent as device checks), the rollout panel's channel
//! state and the Capacitor panel's bundle; roll back from the page and see the served update
//! change over the API; halt from the page and see `explain` report it; create and revoke an API
//! key; CSRF refusal; a session that ends; a viewer without action buttons (rollout ones included)
//! whom the API refuses anyway. The app page's screenshots are left in target/artifacts/.

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
    let served_or_directive = |s: &Server| {
        let r = s.check(&slug, "ios", "1.0.3", &[]);
        match r.part("manifest") {
            Some(_) => r.manifest()["id"].as_str().unwrap().to_string(),
            None => r.directive()["type"].as_str().unwrap().to_string(),
        }
    };

    // Health for the health panel: six devices launched v2, one crashed on it and went back to
    // v1 (the same headers a client sends; below the automatic halt's thresholds). Flushes are
    // batched per isolate (launches within ~5 s): wait for them, bounded.
    for i in 0..7u32 {
        let install = format!("{i:08x}-0000-4000-8000-00000000b10c");
        let mut h = vec![("eas-client-id", install.as_str())];
        let failed = format!("\"{}\"", ids[1]);
        if i < 6 {
            h.push(("expo-current-update-id", ids[1].as_str()));
        } else {
            h.extend([
                ("expo-current-update-id", ids[0].as_str()),
                ("expo-recent-failed-update-ids", failed.as_str()),
                ("expo-fatal-error", "TypeError: undefined is not an object"),
            ]);
        }
        let r = s.check(&slug, "ios", "1.0.3", &h);
        assert!(r.status == 200 || r.status == 204, "check {i}: {}", r.text());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = s.api("GET", &format!("/api/health?slug={slug}"), None);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let row = v["updates"].as_array().and_then(|u| u.iter().find(|u| u["updateId"] == json!(ids[1])).cloned());
        if row.as_ref().is_some_and(|r| r["launched"] == json!(6) && r["failed"] == json!(1)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "health counters not flushed in 10 s: {v}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }

    // A second app of the owner's with a staged rollout at 10 %, for the rollout panel's actions.
    let staged = unique_slug("browser-staged");
    assert_eq!(s.api("POST", "/api/apps", Some(&json!({"slug": staged, "owner": owner}))).status, 201);
    s.publish(&staged, "demo-app-v1", &["--platform", "ios"]);
    let staged_id = s.publish(&staged, "demo-app-v2", &["--platform", "ios", "--rollout-percentage", "10"])["updates"]
        [0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // A Capacitor bundle under the same app id, for the Capacitor panel.
    let zip = fixture("capacitor/bundles/1.0.1/com.example.capota_1.0.1.zip");
    let out = s.cli(&["capacitor", "publish", "--app-id", &slug, "--version", "1.0.1", "--zip", zip.to_str().unwrap()]);
    assert!(out.ok, "capacitor publish: {}", out.stderr);

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
        .env("STAGED_SLUG", &staged)
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
    // Rolled back from the page: the server then served something else, the same as the page
    // showed (the halt below was sent with it as expectedCurrent, and explain names it).
    let after = seen["servedAfter"].as_str().unwrap().to_string();
    assert_ne!(after, ids[1]);
    // Health as the page showed it: the counts the checks above sent.
    assert_eq!((seen["healthLaunched"].as_str(), seen["healthFailed"].as_str()), (Some("6"), Some("1")), "{seen}");
    assert!(seen["healthRate"].as_str().unwrap().contains('%'), "{seen}");
    assert_eq!(seen["rolloutRows"], json!(1), "one served channel in the rollout panel: {seen}");
    assert!(seen["rolloutState"].as_str().unwrap().contains("No rollout"), "{seen}");
    assert_eq!(seen["capacitorCurrent"], json!("1.0.1"), "{seen}");
    // Halted from the page: explain (over the API) reports the halt of what was served, with the
    // page's reason, and the channel serves something else, as the page shows.
    let explain =
        s.api("GET", &format!("/api/explain?slug={slug}&platform=ios&runtimeVersion=1.0.3&channel=production"), None);
    assert_eq!(explain.status, 200, "{}", explain.text());
    let explain = explain.json();
    assert_eq!(explain["halted"]["updateId"], json!(after), "{explain}");
    assert_eq!(explain["halted"]["reason"], json!("halted from the browser test"), "{explain}");
    assert_eq!(seen["haltedShown"], json!(after));
    assert_eq!(seen["resumeOffered"], json!(1));
    // What it serves instead: the update before it republished, or (here: before the rolled-back
    // republish there is nothing the halt goes back to) a rollBackToEmbedded directive.
    let after_halt = served_or_directive(s);
    assert_ne!(after_halt, after);
    assert_ne!(seen["servedAfterHalt"], json!(after), "the page shows the change: {seen}");
    // The staged rollout, grown from the page from 10 % to 50 %: explain reports it.
    assert!(seen["stagedBefore"].as_str().unwrap().contains("rollout 10 %"), "{seen}");
    assert!(seen["stagedAfter"].as_str().unwrap().contains("rollout 50 %"), "{seen}");
    assert!(seen["stagedHealthEmpty"].as_str().unwrap().contains("publish-cli health"), "{seen}");
    // What the API's explain answered right after the grow (fetched by the page, same session).
    let e: Value = serde_json::from_str(seen["stagedExplainAfterGrow"].as_str().unwrap()).unwrap();
    assert_eq!(
        (e["rollout"]["updateId"].as_str(), e["rollout"]["percentage"].as_u64()),
        (Some(staged_id.as_str()), Some(50)),
        "{e}"
    );
    // Halted, then resumed from the page: the halted update is served to everyone again,
    // republished (a new id), with no halt and no rollout left.
    assert_eq!(seen["stagedHalted"], json!(staged_id));
    assert_eq!(
        (seen["stagedResumedHaltShown"].as_u64(), seen["stagedHaltOffered"].as_u64()),
        (Some(0), Some(1)),
        "{seen}"
    );
    let e = s
        .api("GET", &format!("/api/explain?slug={staged}&platform=ios&runtimeVersion=1.0.3&channel=production"), None)
        .json();
    assert!(e.get("halted").is_none() && e.get("rollout").is_none(), "{e}");
    let resumed = e["serving"].as_str().unwrap();
    assert_ne!(resumed, staged_id);
    let u = s.api("GET", &format!("/api/updates?slug={staged}"), None).json();
    assert!(u.to_string().contains(&format!("\"republishedFrom\":\"{staged_id}\"")), "{u}");
    assert_eq!(
        seen["shrinkRefusedAt10"].as_str(),
        Some("A rollout only grows: enter a whole number from 11 to 100."),
        "{seen}"
    );
    assert_eq!(
        seen["shrinkRefused"].as_str(),
        Some("A rollout only grows: enter a whole number from 51 to 100."),
        "{seen}"
    );
    assert!(seen["healthFatal"].as_str().unwrap().contains("TypeError: undefined is not an object"), "{seen}");
    // The key the page created was revoked from the page: it no longer authenticates.
    let key = seen["createdKey"].as_str().unwrap();
    let auth = format!("Bearer {key}");
    http("GET", &s.url(&format!("/api/updates?slug={slug}")), &[("authorization", &auth)], None).assert_error(401);
    assert_eq!(seen["logout"], json!(200));
    assert_eq!(seen["viewerRole"], json!("viewer"));
    assert_eq!(seen["viewerButtons"], json!(0), "a viewer sees no action buttons");
    assert_eq!(seen["viewerRolloutRows"], json!(1), "a viewer sees the rollout state: {seen}");
    assert_eq!(seen["viewerHaltedShown"], json!(after));
    assert_eq!(seen["viewerRolloutButtons"], json!(0), "nor rollout actions: {seen}");
    assert_eq!(seen["viewerRollback"], json!(403), "and the API refuses the action anyway");
    assert_eq!(served_or_directive(s), after_halt, "the viewer's attempt changed nothing");
    assert_eq!(seen["ownerProblems"], json!([]), "no page errors: {seen}");
    assert_eq!(seen["viewerProblems"], json!([]), "no page errors: {seen}");
    assert!(artifacts.join("dashboard-app-page.png").is_file());
}
