//! What a real client sees from the Worker running on workerd: "no update" answers, errors,
//! the single-request publish, and the structured check log. Every test uses its own apps.

use crate::util::*;

#[test]
fn manifest_check_nothing_published_answers_directives_and_json_errors() {
    let s = server();
    let app = unique_slug("empty");
    assert_eq!(http("GET", &s.url("/health"), &[], None).json()["ok"], true);

    // Nothing published: protocol 1 gets a directive, never a 404.
    let r = s.check(&app, "ios", "1.0.3", &[]);
    assert_eq!(r.directive()["type"], "noUpdateAvailable");
    assert_eq!(r.header("expo-sfv-version"), Some("0"));
    assert_eq!(r.header("cache-control"), Some("private, max-age=0"));
    assert!(r.header("content-type").unwrap().starts_with("multipart/mixed; boundary="));
    assert!(r.body.ends_with(
        format!(
            "\r\n--{}--\r\n",
            expo_ota::protocol::multipart::boundary_of(r.header("content-type").unwrap()).unwrap()
        )
        .as_bytes()
    ));

    // Protocol 0 has no directives: 404 JSON when nothing exists.
    let v0 = http(
        "GET",
        &s.url(&format!("/api/manifest?slug={app}")),
        &[("expo-platform", "ios"), ("expo-runtime-version", "1.0.3")],
        None,
    );
    v0.assert_error(404);
    assert_eq!(v0.header("expo-protocol-version"), Some("0"));

    // Query fallbacks work too.
    let q = http(
        "GET",
        &s.url(&format!("/api/manifest?slug={app}&platform=android&runtimeVersion=1.0.3")),
        &[("expo-protocol-version", "1")],
        None,
    );
    assert_eq!(q.directive()["type"], "noUpdateAvailable");

    // Bad input is 400 JSON.
    s.check(&app, "web", "1.0.3", &[]).assert_error(400);
    s.check("../other", "ios", "1.0.3", &[]).assert_error(400);
    s.check(&app, "ios", "1.0.3", &[("expo-current-update-id", "not-a-uuid")]).assert_error(400);
    http("GET", &s.url(&format!("/api/manifest?slug={app}")), &[("expo-platform", "ios")], None).assert_error(400);
    http("GET", &s.url("/api/manifest"), &[("expo-platform", "ios"), ("expo-runtime-version", "1")], None)
        .assert_error(400);

    // Routes: unknown 404, wrong method 405 with Allow.
    http("GET", &s.url("/nope"), &[], None).assert_error(404);
    let r = http("POST", &s.url(&format!("/api/manifest?slug={app}")), &[], Some(b"x"));
    r.assert_error(405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let sha = "0".repeat(64);
    http("GET", &s.url(&format!("/api/assets/{app}/ios/1.0.3/{sha}.png")), &[], None).assert_error(404);
    assert_eq!(http("HEAD", &s.url(&format!("/api/assets/{app}/ios/1.0.3/{sha}")), &[], None).status, 404);
    http("GET", &s.url(&format!("/api/assets/{app}/ios/1.0.3/nothex")), &[], None).assert_error(400);
}

#[test]
fn form_publish_curl_style_serves_both_platforms() {
    let s = server();
    let app = unique_slug("curl-form");
    let never_published = unique_slug("curl-form-other");
    let r = s.post_form(&app, &export_fields("demo-app-v1"), &[]);
    assert_eq!(r.status, 201, "{}", r.text());
    let updates = r.json()["updates"].as_array().unwrap().clone();
    assert_eq!(updates.len(), 2);

    for (platform, u) in [("ios", &updates[0]), ("android", &updates[1])] {
        assert_eq!(u["platform"], platform);
        let check = s.check(&app, platform, "1.0.3", &[]);
        let m = check.manifest();
        assert_eq!(m["id"], u["id"]);
        assert_eq!(m["runtimeVersion"], "1.0.3");
        assert_eq!(m["assets"].as_array().unwrap().len(), 6);
        // expoConfig.json of the export, whatever slug it is published under.
        assert_eq!(m["extra"]["expoClient"]["slug"], "demo-app");
        let bytes = download_and_verify_assets(&m);
        assert_eq!(bytes, u["totalBytes"].as_u64().unwrap());
        // The launch asset is the exported bundle, byte for byte.
        let meta: serde_json::Value = serde_json::from_slice(&read(&fixture("demo-app-v1/metadata.json"))).unwrap();
        let bundle = read(&fixture("demo-app-v1").join(meta["fileMetadata"][platform]["bundle"].as_str().unwrap()));
        assert_eq!(m["launchAsset"]["hash"], expo_ota::protocol::hash::Digests::of(&bundle).sha256_base64url());

        // The running update gets a directive; an embedded-only client gets the manifest.
        let id = m["id"].as_str().unwrap();
        assert_eq!(
            s.check(&app, platform, "1.0.3", &[("expo-current-update-id", id)]).directive()["type"],
            "noUpdateAvailable"
        );
        let emb = "11111111-2222-4333-8444-555555555555";
        let r = s.check(&app, platform, "1.0.3", &[("expo-current-update-id", emb), ("expo-embedded-update-id", emb)]);
        assert_eq!(r.manifest()["id"], id);
        // A v0 client always gets the manifest, with protocol version 0.
        let v0 = http(
            "GET",
            &s.url(&format!("/api/manifest?slug={app}")),
            &[("expo-platform", platform), ("expo-runtime-version", "1.0.3"), ("expo-current-update-id", id)],
            None,
        );
        assert_eq!(v0.header("expo-protocol-version"), Some("0"));
        assert_eq!(v0.manifest()["id"], id);
        // Other runtimes and other apps get nothing.
        assert_eq!(s.check(&app, platform, "1.0.4", &[]).directive()["type"], "noUpdateAvailable");
        assert_eq!(s.check(&never_published, platform, "1.0.3", &[]).directive()["type"], "noUpdateAvailable");
    }

    // Asset HEAD and conditional GET.
    let m = s.check(&app, "ios", "1.0.3", &[]).manifest();
    let url = m["launchAsset"]["url"].as_str().unwrap();
    let head = http("HEAD", url, &[], None);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-type"), Some("application/javascript"));
    let etag = head.header("etag").unwrap().to_string();
    assert_eq!(http("GET", url, &[("if-none-match", &etag)], None).status, 304);
}

#[test]
fn form_publish_seed_style_publishes_one_platform() {
    let s = server();
    let app = unique_slug("seed-form");
    let dir = fixture("utility-app-v1");
    let mut fields = vec![("manifest".to_string(), read(&dir.join("metadata.json")))];
    for (name, bytes) in export_fields("utility-app-v1").into_iter().skip(2) {
        fields.push((format!("file_{name}"), bytes));
    }
    let r = s.post_form(&app, &fields, &[("expo-platform", "android"), ("expo-runtime-version", "2.0.0")]);
    assert_eq!(r.status, 201, "{}", r.text());
    let m = s.check(&app, "android", "2.0.0", &[]).manifest();
    assert_eq!(m["assets"].as_array().unwrap().len(), 7);
    let exts: Vec<&str> =
        m["assets"].as_array().unwrap().iter().map(|a| a["fileExtension"].as_str().unwrap()).collect();
    for e in [".wav", ".ttf", ".jpg", ".gif", ".png"] {
        assert!(exts.contains(&e), "{e} in {exts:?}");
    }
    // No expoConfig.json: extra is an empty object, not null.
    assert_eq!(m["extra"], serde_json::json!({}));
    download_and_verify_assets(&m);
    // Android only: iOS has nothing.
    assert_eq!(s.check(&app, "ios", "2.0.0", &[]).directive()["type"], "noUpdateAvailable");
}

#[test]
fn form_publish_bad_bodies_rejected_and_nothing_stored() {
    // MAX_FORM_BYTES is 3 000 000 there; the demo export is ~3.9 MB.
    let s = server_with(Config::SmallLimits);
    let (demo, utility) = (unique_slug("bad-form-demo"), unique_slug("bad-form-utility"));
    let before = s.fingerprint(&[&demo, &utility]);
    let auth = s.auth();

    // Over MAX_FORM_BYTES: 413 pointing at the CLI.
    let e = s.post_form(&demo, &export_fields("demo-app-v1"), &[]).assert_error(413);
    assert!(e.contains("publish-cli"), "{e}");
    // Not multipart.
    http(
        "POST",
        &s.url(&format!("/api/publish/{demo}")),
        &[("authorization", &auth), ("content-type", "application/json")],
        Some(b"{}"),
    )
    .assert_error(415);
    // Malformed multipart: truncated body.
    let (ct, body) = form_body(&[("metadata.json".into(), read(&fixture("utility-app-v1/metadata.json")))]);
    http(
        "POST",
        &s.url(&format!("/api/publish/{demo}")),
        &[("authorization", &auth), ("content-type", &ct)],
        Some(&body[..body.len() - 10]),
    )
    .assert_error(400);
    // metadata.json names files that no field carries.
    let fields = vec![
        ("metadata.json".to_string(), read(&fixture("utility-app-v1/metadata.json"))),
        ("runtimeVersion".to_string(), b"2.0.0".to_vec()),
    ];
    let e = s.post_form(&utility, &fields, &[]).assert_error(400);
    assert!(e.contains("no form field carries it"), "{e}");
    // Traversal in a field name, unknown fields, invalid JSON.
    s.post_form(&utility, &[("../../etc/passwd".into(), b"x".to_vec())], &[]).assert_error(400);
    s.post_form(&utility, &[("bogus".into(), b"x".to_vec())], &[]).assert_error(400);
    s.post_form(&utility, &[("metadata.json".into(), b"{not json".to_vec())], &[]).assert_error(400);
    // Without a token nothing is even read.
    let (ct, body) = form_body(&export_fields("utility-app-v1"));
    http("POST", &s.url(&format!("/api/publish/{utility}")), &[("content-type", &ct)], Some(&body)).assert_error(401);

    assert_eq!(s.check(&utility, "android", "2.0.0", &[]).directive()["type"], "noUpdateAvailable");
    assert_eq!(s.fingerprint(&[&demo, &utility]), before, "R2 must be unchanged after rejected publishes");
}

#[test]
fn manifest_check_with_crash_headers_logs_one_structured_line() {
    let s = server();
    let app = unique_slug("check-log");
    let r = s.check(
        &app,
        "android",
        "1.0.3",
        &[
            ("expo-fatal-error", "TypeError: undefined is not a function"),
            ("expo-recent-failed-update-ids", "\"11111111-2222-4333-8444-555555555555\""),
        ],
    );
    assert_eq!(r.directive()["type"], "noUpdateAvailable");
    // The log is shared by every test on the server: find this app's line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = s.log();
        let line = log
            .lines()
            .find(|l| l.contains("\"event\":\"manifest_check\"") && l.contains(&format!("\"slug\":\"{app}\"")));
        if let Some(line) = line {
            let json = &line[line.find('{').unwrap()..];
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(v["slug"], app.as_str());
            assert_eq!(v["platform"], "android");
            assert_eq!(v["runtimeVersion"], "1.0.3");
            assert_eq!(v["served"], "none");
            assert_eq!(v["currentUpdateId"], "none");
            assert_eq!(v["fatalError"], "TypeError: undefined is not a function");
            assert!(v["recentFailedUpdateIds"].as_str().unwrap().contains("11111111"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no manifest_check line for {app} in log:\n{log}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// LOG_CHECKS (default `errors`): an ordinary check writes no line, a crash report still does;
/// `all` (the small-limits server) logs every check.
#[test]
fn check_log_checks_var_selects_which_checks_are_logged() {
    let slug = unique_slug("log-checks");
    let lines = |s: &Server| -> Vec<serde_json::Value> {
        s.log()
            .lines()
            .filter(|l| l.contains("\"event\":\"manifest_check\"") && l.contains(slug.as_str()))
            .map(|l| serde_json::from_str(&l[l.find('{').unwrap()..]).unwrap())
            .collect()
    };
    let crash = [("expo-fatal-error", "TypeError: x")];
    // The crash check goes last: once its line is in the log, an earlier line would be too.
    let run = |s: &Server| {
        assert_eq!(s.check(&slug, "ios", "9.9.9", &[]).directive()["type"], "noUpdateAvailable");
        assert_eq!(s.check(&slug, "ios", "1.0.3", &crash).directive()["type"], "noUpdateAvailable");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !lines(s).iter().any(|v| v["runtimeVersion"] == "1.0.3") {
            assert!(std::time::Instant::now() < deadline, "the crash report was not logged:\n{}", s.log());
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        lines(s).iter().filter(|v| v["runtimeVersion"] == "9.9.9").count()
    };
    assert_eq!(run(server()), 0, "default LOG_CHECKS=errors logs no ordinary check");
    assert_eq!(run(server_with(Config::SmallLimits)), 1, "LOG_CHECKS=all logs every check");
}
