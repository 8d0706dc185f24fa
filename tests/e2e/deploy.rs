//! The deploy API used by the CLI (prepare → upload → commit), driven directly so each failure
//! can be provoked: auth, limits, digest mismatches, unverifiable manifests, and atomicity.
//! Every test uses its own apps.

use crate::util::*;
use expo_ota::protocol::hash::Digests;
use expo_ota::protocol::manifest::{self, FileEntry, ManifestInput};
use serde_json::{json, Value};

/// One platform of an export, as (export path, bytes, ext).
fn platform_files(fixture_name: &str, platform: &str) -> Vec<(String, Vec<u8>, String)> {
    let dir = fixture(fixture_name);
    let meta: Value = serde_json::from_slice(&read(&dir.join("metadata.json"))).unwrap();
    let p = &meta["fileMetadata"][platform];
    let bundle = p["bundle"].as_str().unwrap().to_string();
    let mut out = vec![(bundle.clone(), read(&dir.join(&bundle)), "bundle".to_string())];
    for a in p["assets"].as_array().unwrap() {
        let path = a["path"].as_str().unwrap().to_string();
        out.push((path.clone(), read(&dir.join(&path)), a["ext"].as_str().unwrap().to_string()));
    }
    out
}

fn upload(s: &Server, prefix: &str, bytes: &[u8], ext: &str) -> Reply {
    let d = Digests::of(bytes);
    let auth = s.auth();
    let md5 = d.md5_hex();
    let ct = expo_ota::protocol::export::content_type_for_ext(ext);
    http(
        "PUT",
        &s.url(&format!("/api/files/{prefix}/{}", d.sha256_hex())),
        &[("authorization", &auth), ("content-type", ct), ("x-content-md5", &md5)],
        Some(bytes),
    )
}

fn render(files: &[(String, Vec<u8>, String)], base: &str, created_ms: u64) -> String {
    let entry = |(_, b, e): &(String, Vec<u8>, String)| FileEntry { digests: Digests::of(b), ext: e.clone() };
    manifest::build(ManifestInput {
        id: expo_ota::protocol::id::uuid_v4(rand16()),
        created_at_ms: created_ms,
        runtime_version: "1.0.3",
        launch_asset: entry(&files[0]),
        assets: files[1..].iter().map(entry).collect(),
        metadata: manifest::channel_metadata("production"),
        expo_client: None,
        asset_base_url: base,
    })
    .render()
}

/// The deploy routes of one app, as (method, path).
fn deploy_routes(app: &str) -> Vec<(&'static str, String)> {
    let sha = "a".repeat(64);
    vec![
        ("POST", format!("/api/publish/{app}/ios/1.0.3/prepare")),
        ("PUT", format!("/api/files/{app}/ios/1.0.3/{sha}")),
        ("POST", format!("/api/publish/{app}/ios/1.0.3/commit")),
        ("POST", format!("/api/publish/{app}")),
        ("GET", format!("/api/updates?slug={app}")),
        ("DELETE", format!("/api/updates/{app}/ios/1.0.3")),
    ]
}

#[test]
fn deploy_routes_without_the_admin_token_answer_401() {
    let s = server();
    let app = unique_slug("auth");
    for (m, p) in &deploy_routes(&app) {
        let body = (*m != "GET" && *m != "DELETE").then_some(&b"{}"[..]);
        http(m, &s.url(p), &[], body).assert_error(401);
        let e = http(m, &s.url(p), &[("authorization", "Bearer wrong")], body).assert_error(401);
        assert!(!e.contains(&s.token), "token must never be echoed");
    }
    // Reads stay public.
    assert_eq!(s.check(&app, "ios", "1.0.3", &[]).status, 200);
}

#[test]
fn deploy_routes_without_the_admin_secret_answer_503() {
    // Without the secret, deploy operations are refused, never open.
    let open = server_with(Config::NoAdminToken);
    for (m, p) in &deploy_routes(&unique_slug("no-secret")) {
        let e = http(m, &open.url(p), &[("authorization", "Bearer ")], None).assert_error(503);
        assert!(e.contains("ADMIN_TOKEN"), "{e}");
    }
}

#[test]
fn file_upload_bad_digest_size_or_target_rejected_good_one_stored_once() {
    // MAX_FILE_BYTES is 2 000 000 there.
    let s = server_with(Config::SmallLimits);
    let app = unique_slug("uploads");
    let prefix = format!("{app}/ios/1.0.3");
    let auth = s.auth();
    let before = s.fingerprint(&[&app]);
    let data = read(&fixture("demo-app-v1/assets/ed702552983a8eec95c8d7f1252a4473"));
    let d = Digests::of(&data);

    // Bytes that do not match the SHA-256 in the URL: R2 refuses them.
    let wrong = Digests::of(b"something else").sha256_hex();
    let e = http("PUT", &s.url(&format!("/api/files/{prefix}/{wrong}")), &[("authorization", &auth)], Some(&data))
        .assert_error(422);
    assert!(e.to_lowercase().contains("digest") || e.contains("SHA-256"), "{e}");
    // A lying MD5.
    let bad_md5 = Digests::of(b"x").md5_hex();
    http(
        "PUT",
        &s.url(&format!("/api/files/{prefix}/{}", d.sha256_hex())),
        &[("authorization", &auth), ("x-content-md5", &bad_md5)],
        Some(&data),
    )
    .assert_error(422);
    http(
        "PUT",
        &s.url(&format!("/api/files/{prefix}/{}", d.sha256_hex())),
        &[("authorization", &auth), ("x-content-md5", "zz")],
        Some(&data),
    )
    .assert_error(400);
    // Over MAX_FILE_BYTES: refused from Content-Length alone.
    let big = vec![7u8; 2_000_001];
    let e = upload(s, &prefix, &big, "ttf").assert_error(413);
    assert!(e.contains("MAX_FILE_BYTES"), "{e}");
    // No Content-Length (chunked): 411.
    let url = s.url(&format!("/api/files/{prefix}/{}", d.sha256_hex()));
    let r = ureq::put(&url).set("authorization", &auth).send(std::io::Cursor::new(data.clone()));
    let status = match r {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(c, _)) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(status, 411);
    // Hostile targets.
    upload(s, &format!("{app}/web/1.0.3"), &data, "png").assert_error(400);
    upload(s, &format!("..%2F{app}/ios/1.0.3"), &data, "png").assert_error(400);
    upload(s, &format!("{app}/ios/.."), &data, "png").assert_error(404);
    assert_eq!(s.fingerprint(&[&app]), before, "rejected uploads must store nothing");

    // A good upload stores once; the second is a no-op.
    let r = upload(s, &prefix, &data, "png");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["stored"], true);
    let after_first = s.fingerprint(&[&app]);
    assert_eq!(after_first.len(), 1, "{after_first:?}");
    let r = upload(s, &prefix, &data, "png");
    assert_eq!((r.status, r.json()["stored"].clone()), (200, json!(false)));
    assert_eq!(s.fingerprint(&[&app]), after_first, "content-addressed files are never rewritten");
}

#[test]
fn commit_unverifiable_or_incomplete_refused_and_serving_is_atomic() {
    let s = server();
    let app = unique_slug("commit");
    let prefix = format!("{app}/ios/1.0.3");
    let prefix = prefix.as_str();
    let v1 = platform_files("demo-app-v1", "ios");
    let prep = s.api(
        "POST",
        &format!("/api/publish/{prefix}/prepare"),
        Some(&json!({"files": v1.iter().map(|(_, b, _)| Digests::of(b).sha256_hex()).collect::<Vec<_>>()})),
    );
    assert_eq!(prep.status, 200, "{}", prep.text());
    let base = prep.json()["assetBaseUrl"].as_str().unwrap().to_string();
    assert_eq!(prep.json()["missing"].as_array().unwrap().len(), 7);
    assert!(prep.json().get("latestCreatedAt").is_none());

    // Committing before the files are there names what is missing, and publishes nothing.
    let body = render(&v1, &base, now_ms());
    let e = s.api("POST", &format!("/api/publish/{prefix}/commit"), Some(&json!({"manifest": body}))).assert_error(422);
    assert!(e.contains("not uploaded"), "{e}");
    assert_eq!(s.check(&app, "ios", "1.0.3", &[]).directive()["type"], "noUpdateAvailable");

    for (_, b, e) in &v1 {
        assert_eq!(upload(s, prefix, b, e).status, 201);
    }
    let prep = s.api(
        "POST",
        &format!("/api/publish/{prefix}/prepare"),
        Some(&json!({"files": v1.iter().map(|(_, b, _)| Digests::of(b).sha256_hex()).collect::<Vec<_>>()})),
    );
    assert!(prep.json()["missing"].as_array().unwrap().is_empty());

    // Tampered manifests are refused.
    let bad = [
        body.replace(&base, "https://evil.example.com/x"),
        body.replace("\"createdAt\":\"", "\"createdAt\": \""),
        body.replacen("\"runtimeVersion\":\"1.0.3\"", "\"runtimeVersion\":\"9.9.9\"", 1),
        render(&v1, &base, now_ms() + 24 * 3600 * 1000),
        "{}".to_string(),
    ];
    for b in &bad {
        s.api("POST", &format!("/api/publish/{prefix}/commit"), Some(&json!({"manifest": b}))).assert_error(422);
    }
    // An asset whose key is not its MD5.
    let forged = body.replacen("\"key\":\"", "\"key\":\"0", 1).replacen("\"key\":\"0", "\"key\":\"", 0);
    let v: Value = serde_json::from_str(&forged).unwrap();
    let real_key = v["assets"][0]["key"].as_str().unwrap().to_string();
    let forged = body.replace(&real_key, &"0".repeat(32));
    let e =
        s.api("POST", &format!("/api/publish/{prefix}/commit"), Some(&json!({"manifest": forged}))).assert_error(422);
    assert!(e.contains("MD5"), "{e}");
    s.api("POST", &format!("/api/publish/{prefix}/commit"), Some(&json!({"manifest": body, "channel": "../prod"})))
        .assert_error(400);
    http("POST", &s.url(&format!("/api/publish/{prefix}/commit")), &[("authorization", &s.auth())], Some(b"{not json"))
        .assert_error(400);
    assert_eq!(s.check(&app, "ios", "1.0.3", &[]).directive()["type"], "noUpdateAvailable");

    // The real commit.
    let r =
        s.api("POST", &format!("/api/publish/{prefix}/commit"), Some(&json!({"manifest": body, "message": "first"})));
    assert_eq!(r.status, 201, "{}", r.text());
    let first = r.json();
    let served = s.check(&app, "ios", "1.0.3", &[]);
    assert_eq!(served.part("manifest").unwrap().body, body.as_bytes(), "served bytes are the committed bytes");

    // The same id twice, or an older createdAt: 409, and v1 stays served.
    s.api("POST", &format!("/api/publish/{prefix}/commit"), Some(&json!({"manifest": body}))).assert_error(409);
    let older = render(&v1, &base, now_ms() - 60_000);
    let e =
        s.api("POST", &format!("/api/publish/{prefix}/commit"), Some(&json!({"manifest": older}))).assert_error(409);
    assert!(e.contains("strictly newer"), "{e}");

    // v2 half uploaded (the bundle never arrives): v1 is still served, intact.
    let v2 = platform_files("demo-app-v2", "ios");
    for (_, b, e) in &v2[1..] {
        assert!(matches!(upload(s, prefix, b, e).status, 200 | 201));
    }
    let v2_body = render(&v2, &base, now_ms());
    s.api("POST", &format!("/api/publish/{prefix}/commit"), Some(&json!({"manifest": v2_body}))).assert_error(422);
    let m = s.check(&app, "ios", "1.0.3", &[]).manifest();
    assert_eq!(m["id"], first["id"]);
    download_and_verify_assets(&m);

    // Finish v2: it becomes current with a later createdAt.
    assert_eq!(upload(s, prefix, &v2[0].1, "bundle").status, 201);
    let r = s.api("POST", &format!("/api/publish/{prefix}/commit"), Some(&json!({"manifest": v2_body})));
    assert_eq!(r.status, 201, "{}", r.text());
    let m2 = s.check(&app, "ios", "1.0.3", &[]).manifest();
    assert_ne!(m2["id"], first["id"]);
    assert!(m2["createdAt"].as_str().unwrap() > first["createdAt"].as_str().unwrap());
    // Files of v1 are still downloadable: URLs never change content.
    download_and_verify_assets(&m);
}

#[test]
fn delete_runtime_removes_only_that_runtime_and_list_shows_history() {
    let s = server();
    let (demo, utility) = (unique_slug("list-demo"), unique_slug("list-utility"));
    assert_eq!(s.post_form(&demo, &export_fields("demo-app-v1"), &[]).status, 201);
    assert_eq!(s.post_form(&demo, &export_fields("demo-app-v2"), &[]).status, 201);
    assert_eq!(s.post_form(&utility, &export_fields("utility-app-v1"), &[]).status, 201);

    let list = s.api("GET", &format!("/api/updates?slug={demo}"), None).json();
    let runtimes = list["runtimes"].as_array().unwrap();
    assert_eq!(runtimes.len(), 2, "{list}");
    for rt in runtimes {
        assert_eq!(rt["runtimeVersion"], "1.0.3");
        let ups = rt["updates"].as_array().unwrap();
        assert_eq!(ups.len(), 2);
        assert!(ups[0]["createdAt"].as_str() > ups[1]["createdAt"].as_str(), "newest first");
        assert_eq!((ups[0]["current"].as_bool(), ups[1]["current"].as_bool()), (Some(true), Some(false)));
        assert_eq!(ups[0]["fileCount"], 7);
        assert!(ups[0]["launchAssetBytes"].as_u64().unwrap() > 1_000_000);
        assert!(ups[0]["totalBytes"].as_u64().unwrap() > ups[0]["launchAssetBytes"].as_u64().unwrap());
    }
    s.api("GET", "/api/updates", None).assert_error(400);
    s.api("GET", "/api/updates?slug=../x", None).assert_error(400);

    let m = s.check(&demo, "ios", "1.0.3", &[]).manifest();
    let r = s.api("DELETE", &format!("/api/updates/{demo}/ios/1.0.3"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["deletedObjects"].as_u64().unwrap() >= 10);
    assert_eq!(s.check(&demo, "ios", "1.0.3", &[]).directive()["type"], "noUpdateAvailable");
    assert_eq!(http("GET", m["launchAsset"]["url"].as_str().unwrap(), &[], None).status, 404);
    s.api("DELETE", &format!("/api/updates/{demo}/ios/1.0.3"), None).assert_error(404);
    // Only that runtime went: android and the other app are untouched.
    assert_eq!(s.check(&demo, "android", "1.0.3", &[]).status, 200);
    s.check(&demo, "android", "1.0.3", &[]).manifest();
    s.check(&utility, "android", "2.0.0", &[]).manifest();
    let list = s.api("GET", &format!("/api/updates?slug={demo}"), None).json();
    assert_eq!(list["runtimes"].as_array().unwrap().len(), 1);
}
