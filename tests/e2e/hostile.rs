//! Hostile and malformed requests against the real Worker: each gets the right 4xx JSON error,
//! and the app data in R2 is byte-for-byte unchanged afterwards. The test uses its own apps and
//! compares only their objects, so other tests may run on the same server meanwhile.

use crate::util::*;
use expo_ota::protocol::hash::Digests;
use serde_json::json;
use std::io::{Read, Write};

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    status: u16,
}

fn case(name: &'static str, method: &'static str, path: impl Into<String>, status: u16) -> Case {
    Case { name, method, path: path.into(), headers: vec![], body: None, status }
}

impl Case {
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = Some(b.into());
        self
    }
    fn json(self, v: serde_json::Value) -> Self {
        self.header("content-type", "application/json").body(v.to_string())
    }
}

fn form(fields: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    form_body(&fields.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect::<Vec<_>>())
}

/// A raw HTTP/1.1 exchange, for what well-behaved clients refuse to send.
fn raw(s: &Server, request: &[u8]) -> String {
    let addr = s.base.trim_start_matches("http://");
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    sock.write_all(request).unwrap();
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let mut out = String::new();
    let _ = sock.read_to_string(&mut out);
    out
}

#[test]
fn hostile_requests_get_4xx_json_and_change_nothing() {
    // MAX_FILE_BYTES 2 000 000, MAX_FILES_PER_UPDATE 50, MAX_JSON_BYTES 65 536 there.
    let s = server_with(Config::SmallLimits);
    let (demo, utility) = (unique_slug("hostile-demo"), unique_slug("hostile-utility"));
    let (demo, utility) = (demo.as_str(), utility.as_str());
    // A published app to protect, and another app that hostile requests try to reach. The demo
    // export is over MAX_FORM_BYTES as one form, so it goes through the CLI.
    s.publish(demo, "demo-app-v1", &[]);
    assert_eq!(s.post_form(utility, &export_fields("utility-app-v1"), &[]).status, 201);
    let served = s.check(demo, "ios", "1.0.3", &[]).manifest();
    // The bucket is shared with other tests: these two apps are what must not change.
    let before = s.fingerprint(&[demo, utility]);
    let auth = s.auth();

    let png = read(&fixture("demo-app-v1/assets/b22ba1fb664cb723b7be61a3096083ff"));
    let d = Digests::of(&png);
    let sha = d.sha256_hex();
    let other_sha = Digests::of(b"other").sha256_hex();
    let meta = String::from_utf8(read(&fixture("utility-app-v1/metadata.json"))).unwrap();
    let bundle = "_expo/static/js/android/index-747f5e310daebf5292a2f0ae384dcc9c.hbc";
    let (traversal_ct, traversal_form) = form(&[
        ("metadata.json", meta.replace(bundle, "../../../etc/passwd").as_bytes()),
        ("runtimeVersion", b"2.0.0"),
    ]);
    let (abs_ct, abs_form) =
        form(&[("metadata.json", meta.replace(bundle, "/etc/passwd").as_bytes()), ("runtimeVersion", b"2.0.0")]);
    let (bs_ct, bs_form) =
        form(&[("metadata.json", meta.replace(bundle, "..\\\\..\\\\secret").as_bytes()), ("runtimeVersion", b"2.0.0")]);
    let (dup_ct, dup_form) = form(&[("metadata.json", meta.as_bytes()), ("metadata.json", meta.as_bytes())]);
    let (dupfile_ct, dupfile_form) = form(&[
        ("runtimeVersion", b"2.0.0"),
        ("metadata.json", meta.as_bytes()),
        ("assets/a", b"1"),
        ("assets/a", b"2"),
    ]);
    let (missing_ct, missing_form) = form(&[("runtimeVersion", b"2.0.0"), ("metadata.json", meta.as_bytes())]);
    let (field_ct, field_form) = form(&[("file_../../outside", b"x")]);
    let (plat_ct, plat_form) = form(&[
        ("metadata.json", br#"{"fileMetadata":{"windows":{"bundle":"a.js","assets":[]}}}"#),
        ("runtimeVersion", b"1"),
    ]);
    let (badjson_ct, badjson_form) = form(&[("metadata.json", b"{\"fileMetadata\": [1,2,"), ("runtimeVersion", b"1")]);
    let rv_traversal = format!("../../{demo}/ios/1.0.3");
    let (rv_ct, rv_form) = form(&[("metadata.json", meta.as_bytes()), ("runtimeVersion", rv_traversal.as_bytes())]);
    let base = served["launchAsset"]["url"].as_str().unwrap().rsplit_once('/').unwrap().0.to_string();
    let foreign = expo_ota::protocol::manifest::build(expo_ota::protocol::manifest::ManifestInput {
        id: expo_ota::protocol::id::uuid_v4(rand16()),
        created_at_ms: 4_000_000_000_000,
        runtime_version: "1.0.3",
        launch_asset: expo_ota::protocol::manifest::FileEntry {
            digests: Digests::of(b"never uploaded"),
            ext: "bundle".into(),
        },
        assets: vec![],
        metadata: expo_ota::protocol::manifest::channel_metadata("production"),
        expo_client: None,
        asset_base_url: &base,
    })
    .render();
    let utility_base = base.replace(&format!("/{demo}/ios/1.0.3"), &format!("/{utility}/android/2.0.0"));
    let with_null = foreign.replace("\"extra\":{}", "\"extra\":{\"expoClient\":null}");

    let cases = vec![
        // Path traversal in every routed segment.
        case(
            "slug with encoded slash",
            "GET",
            format!("/api/assets/{demo}%2F..%2F{utility}/android/2.0.0/{sha}.png"),
            400,
        ),
        case("slug with encoded backslash", "GET", format!("/api/assets/{demo}%5C..%5Cx/ios/1.0.3/{sha}.png"), 400),
        case("dot-dot slug (collapsed by URL parsing)", "GET", format!("/api/assets/%2E%2E/ios/1.0.3/{sha}.png"), 404),
        case("system prefix slug", "GET", format!("/api/assets/_system/ios/1.0.3/{sha}.png"), 400),
        case("encoded NUL in slug", "GET", format!("/api/assets/demo%00app/ios/1.0.3/{sha}.png"), 400),
        case("unknown platform in asset", "GET", format!("/api/assets/{demo}/web/1.0.3/{sha}.png"), 400),
        case("uppercase platform", "GET", format!("/api/assets/{demo}/IOS/1.0.3/{sha}.png"), 400),
        case("runtime version traversal", "GET", format!("/api/assets/{demo}/ios/..%2F..%2F{utility}/{sha}.png"), 400),
        case("asset hash not hex", "GET", format!("/api/assets/{demo}/ios/1.0.3/..%2Fchannels%2Fproduction.json"), 400),
        case(
            "asset extension injection",
            "GET",
            format!("/api/assets/{demo}/ios/1.0.3/{sha}.png%0d%0aSet-Cookie:x"),
            400,
        ),
        case("malformed percent-encoding", "GET", format!("/api/assets/{demo}/ios/1.0%zz/{sha}.png"), 400),
        // Manifest checks.
        case("check: slug traversal", "GET", format!("/api/manifest?slug=..%2F{utility}"), 400)
            .header("expo-platform", "android")
            .header("expo-runtime-version", "2.0.0"),
        case("check: unknown platform", "GET", format!("/api/manifest?slug={demo}"), 400)
            .header("expo-platform", "windows")
            .header("expo-runtime-version", "1.0.3"),
        case(
            "check: runtime version with CRLF",
            "GET",
            format!("/api/manifest?slug={demo}&platform=ios&runtimeVersion=1.0.3%0d%0aX-Injected:%201"),
            400,
        ),
        case(
            "check: runtime version traversal",
            "GET",
            format!("/api/manifest?slug={demo}&platform=ios&runtimeVersion=../../x"),
            400,
        ),
        case("check: bad current update id", "GET", format!("/api/manifest?slug={demo}"), 400)
            .header("expo-platform", "ios")
            .header("expo-runtime-version", "1.0.3")
            .header("expo-current-update-id", "'; DROP TABLE updates; --"),
        case("check: bad embedded update id", "GET", format!("/api/manifest?slug={demo}"), 400)
            .header("expo-platform", "ios")
            .header("expo-runtime-version", "1.0.3")
            .header("expo-embedded-update-id", "1234"),
        case("check: non-numeric protocol", "GET", format!("/api/manifest?slug={demo}"), 400)
            .header("expo-platform", "ios")
            .header("expo-runtime-version", "1.0.3")
            .header("expo-protocol-version", "1; drop"),
        case("check: channel traversal", "GET", format!("/api/manifest?slug={demo}"), 400)
            .header("expo-platform", "ios")
            .header("expo-runtime-version", "1.0.3")
            .header("expo-channel-name", "../staging"),
        case("check: channel header injection", "GET", format!("/api/manifest?slug={demo}"), 400)
            .header("expo-platform", "ios")
            .header("expo-runtime-version", "1.0.3")
            .header("expo-channel-name", "prod\", evil=\"1"),
        case("check: malformed expect-signature", "GET", format!("/api/manifest?slug={demo}"), 400)
            .header("expo-platform", "ios")
            .header("expo-runtime-version", "1.0.3")
            .header("expo-expect-signature", "sig, keyid=(1 2)"),
        // Uploads.
        case("upload: hash mismatch", "PUT", format!("/api/files/{demo}/ios/1.0.3/{other_sha}"), 422)
            .header("authorization", auth.clone())
            .body(png.clone()),
        case(
            "upload: md5 mismatch",
            "PUT",
            format!("/api/files/{demo}/ios/1.0.3/{}", Digests::of(b"fresh").sha256_hex()),
            422,
        )
        .header("authorization", auth.clone())
        .header("x-content-md5", Digests::of(b"x").md5_hex())
        .body(b"fresh".to_vec()),
        case("upload: oversized", "PUT", format!("/api/files/{demo}/ios/1.0.3/{other_sha}"), 413)
            .header("authorization", auth.clone())
            .body(vec![0u8; 2_000_001]),
        case(
            "upload: into another app's unknown platform",
            "PUT",
            format!("/api/files/{utility}/web/2.0.0/{sha}"),
            400,
        )
        .header("authorization", auth.clone())
        .body(png.clone()),
        case("upload: oversized content type", "PUT", format!("/api/files/{demo}/ios/1.0.3/{other_sha}"), 400)
            .header("authorization", auth.clone())
            .header("content-type", format!("image/{}", "x".repeat(200)))
            .body(b"other".to_vec()),
        case("upload: no token", "PUT", format!("/api/files/{demo}/ios/1.0.3/{sha}"), 401).body(png.clone()),
        case("upload: forged scoped token", "PUT", format!("/api/files/{demo}/ios/1.0.3/{sha}"), 401)
            .header("authorization", format!("Bearer ota_0123456789abcdef_{}", "a".repeat(64)))
            .body(png.clone()),
        // JSON bodies.
        case("prepare: invalid JSON", "POST", format!("/api/publish/{demo}/ios/1.0.3/prepare"), 400)
            .header("authorization", auth.clone())
            .header("content-type", "application/json")
            .body(b"{\"files\": [".to_vec()),
        case("prepare: wrong JSON type", "POST", format!("/api/publish/{demo}/ios/1.0.3/prepare"), 400)
            .header("authorization", auth.clone())
            .json(json!({"files": "all"})),
        case("prepare: huge JSON", "POST", format!("/api/publish/{demo}/ios/1.0.3/prepare"), 413)
            .header("authorization", auth.clone())
            .json(json!({"files": vec!["a".repeat(64); 2000]})),
        case("prepare: non-hex digests", "POST", format!("/api/publish/{demo}/ios/1.0.3/prepare"), 400)
            .header("authorization", auth.clone())
            .json(json!({"files": ["../../etc/passwd"]})),
        case("prepare: too many files", "POST", format!("/api/publish/{demo}/ios/1.0.3/prepare"), 413)
            .header("authorization", auth.clone())
            .json(json!({"files": vec![sha.clone(); 51]})),
        case("commit: files never uploaded", "POST", format!("/api/publish/{demo}/ios/1.0.3/commit"), 422)
            .header("authorization", auth.clone())
            .json(json!({"manifest": foreign})),
        case("commit: URLs of another app", "POST", format!("/api/publish/{demo}/ios/1.0.3/commit"), 422)
            .header("authorization", auth.clone())
            .json(json!({"manifest": foreign.replace(&base, &utility_base)})),
        case("commit: JSON null in manifest", "POST", format!("/api/publish/{demo}/ios/1.0.3/commit"), 422)
            .header("authorization", auth.clone())
            .json(json!({"manifest": with_null})),
        case("commit: bogus signature", "POST", format!("/api/publish/{demo}/ios/1.0.3/commit"), 400)
            .header("authorization", auth.clone())
            .json(json!({"manifest": foreign, "signature": "not base64!"})),
        case("commit: unknown directive", "POST", format!("/api/publish/{demo}/ios/1.0.3/commit"), 422)
            .header("authorization", auth.clone())
            .json(json!({"directive": "{\"type\":\"wipeDevice\"}"})),
        // Single-request publish.
        case("form: traversal in metadata path", "POST", format!("/api/publish/{utility}"), 400)
            .header("authorization", auth.clone())
            .header("content-type", traversal_ct)
            .body(traversal_form),
        case("form: absolute metadata path", "POST", format!("/api/publish/{utility}"), 400)
            .header("authorization", auth.clone())
            .header("content-type", abs_ct)
            .body(abs_form),
        case("form: backslash traversal", "POST", format!("/api/publish/{utility}"), 400)
            .header("authorization", auth.clone())
            .header("content-type", bs_ct)
            .body(bs_form),
        case("form: traversal in field name", "POST", format!("/api/publish/{utility}"), 400)
            .header("authorization", auth.clone())
            .header("content-type", field_ct)
            .body(field_form),
        case("form: duplicate metadata field", "POST", format!("/api/publish/{utility}"), 400)
            .header("authorization", auth.clone())
            .header("content-type", dup_ct)
            .body(dup_form),
        case("form: duplicate file", "POST", format!("/api/publish/{utility}"), 400)
            .header("authorization", auth.clone())
            .header("content-type", dupfile_ct)
            .body(dupfile_form),
        case("form: files named but not sent", "POST", format!("/api/publish/{utility}"), 400)
            .header("authorization", auth.clone())
            .header("content-type", missing_ct)
            .body(missing_form),
        case("form: unknown platform in metadata", "POST", format!("/api/publish/{utility}"), 400)
            .header("authorization", auth.clone())
            .header("content-type", plat_ct)
            .body(plat_form),
        case("form: invalid metadata JSON", "POST", format!("/api/publish/{utility}"), 400)
            .header("authorization", auth.clone())
            .header("content-type", badjson_ct)
            .body(badjson_form),
        case("form: runtime version traversal", "POST", format!("/api/publish/{utility}"), 400)
            .header("authorization", auth.clone())
            .header("content-type", rv_ct)
            .body(rv_form),
        case("form: no boundary", "POST", format!("/api/publish/{utility}"), 400)
            .header("authorization", auth.clone())
            .header("content-type", "multipart/form-data")
            .body(b"--x\r\n".to_vec()),
        case("form: garbage multipart", "POST", format!("/api/publish/{utility}"), 400)
            .header("authorization", auth.clone())
            .header("content-type", "multipart/form-data; boundary=zz")
            .body(b"--zz\r\nno headers here".to_vec()),
        // Deletes and tokens.
        case("delete: other app's traversal", "DELETE", format!("/api/updates/{demo}/ios/..%2F..%2F{utility}"), 400)
            .header("authorization", auth.clone()),
        case("delete: malformed update id", "DELETE", format!("/api/updates/{demo}/ios/1.0.3/.."), 400)
            .header("authorization", auth.clone()),
        case("token: revoke traversal", "DELETE", format!("/api/tokens/..%2F..%2F{demo}"), 400)
            .header("authorization", auth.clone()),
    ];
    assert!(cases.len() >= 30);
    let mut names = std::collections::BTreeSet::new();
    for c in &cases {
        assert!(names.insert(c.name), "duplicate case {}", c.name);
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = http(c.method, &s.url(&c.path), &headers, c.body.as_deref());
        assert_eq!(r.status, c.status, "{}: {}", c.name, r.text());
        assert!(r.header("content-type").unwrap_or("").starts_with("application/json"), "{}: not JSON", c.name);
        let e = r.json()["error"].as_str().unwrap_or_else(|| panic!("{}: no error field", c.name)).to_string();
        assert!(!e.is_empty() && !e.contains(&s.token), "{}: {e}", c.name);
        assert!(r.header("x-injected").is_none() && r.header("set-cookie").is_none(), "{}: header injected", c.name);
    }

    // What well-behaved HTTP clients refuse to send, over a raw socket.
    let lying_length = format!(
        "PUT /api/files/{demo}/ios/1.0.3/{other_sha} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 5000\r\nConnection: close\r\n\r\nshort body"
    );
    let answer = raw(s, lying_length.as_bytes());
    assert!(!answer.starts_with("HTTP/1.1 2"), "a body shorter than its Content-Length must not be stored: {answer}");
    let chunked = format!("PUT /api/files/{demo}/ios/1.0.3/{other_sha} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nother\r\n0\r\n\r\n");
    let answer = raw(s, chunked.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
    let smuggled = format!("GET /api/manifest?slug={demo} HTTP/1.1\r\nHost: x\r\nexpo-platform: ios\r\nexpo-runtime-version: 1.0.3\r\nexpo-channel-name: prod\rX-Evil: 1\r\nConnection: close\r\n\r\n");
    let answer = raw(s, smuggled.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 4"), "a bare CR in a header must be refused: {answer}");

    // Nothing of any app changed, and the published update is served as before.
    assert_eq!(s.fingerprint(&[demo, utility]), before, "R2 must be unchanged by hostile requests");
    let after = s.check(demo, "ios", "1.0.3", &[]).manifest();
    assert_eq!(after, served);
    download_and_verify_assets(&after);
    s.check(utility, "android", "2.0.0", &[]).manifest();
}
