//! The per-app writer and the asset route through the real Worker (workerd, the `AppWriter`
//! Durable Object, simulated R2): concurrent writes to one app are applied one at a time, and
//! assets are served with the type they were uploaded with.

use crate::util::{http, server, unique_slug};
use expo_ota::protocol::hash::Digests;
use expo_ota::protocol::manifest::Manifest;
use serde_json::json;

/// Eight rollbacks sent at once, all naming the update they saw current: the writer applies
/// them one at a time, so exactly one lands and the others see the channel moved (409).
#[test]
fn writer_concurrent_rollbacks_naming_one_current_exactly_one_lands() {
    let s = server();
    let slug = unique_slug("writer-race");
    let v1 = s.publish(&slug, "demo-app-v1", &["--platform", "ios"]);
    let v2 = s.publish(&slug, "demo-app-v2", &["--platform", "ios"]);
    let (v1_id, v2_id) = (v1["updates"][0]["id"].as_str().unwrap(), v2["updates"][0]["id"].as_str().unwrap());
    let rv = v2["updates"][0]["runtimeVersion"].as_str().unwrap();
    let path = format!("/api/updates/{slug}/ios/{rv}/rollback");
    let body = json!({"expectedCurrent": v2_id});
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let sent: Vec<_> = (0..8).map(|_| scope.spawn(|| s.api("POST", &path, Some(&body)).status)).collect();
        sent.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses.iter().filter(|c| **c == 201).count(), 1, "expected one 201, got {statuses:?}");
    assert!(statuses.iter().all(|c| *c == 201 || *c == 409), "expected 201 or 409, got {statuses:?}");
    let list = s.api("GET", &format!("/api/updates?slug={slug}"), None).json();
    let updates = list["runtimes"][0]["updates"].as_array().unwrap();
    assert_eq!(updates.len(), 3, "v1, v2 and one rollback: {updates:#?}");
    let current: Vec<_> = updates.iter().filter(|u| u["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["republishedFrom"], v1_id, "the channel serves v1 again");
}

/// Commits to two channels of one runtime sent at once with the same createdAt: one lands, the
/// other is refused, so createdAt stays strictly increasing across channels.
#[test]
fn writer_concurrent_commits_across_channels_keep_created_at_strictly_increasing() {
    let s = server();
    let slug = unique_slug("writer-created");
    let v1 = s.publish(&slug, "demo-app-v1", &["--platform", "ios"]);
    let rv = v1["updates"][0]["runtimeVersion"].as_str().unwrap().to_string();
    let id = v1["updates"][0]["id"].as_str().unwrap();
    let record = s.api("GET", &format!("/api/updates/{slug}/ios/{rv}/{id}"), None).json();
    let base: Manifest = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
    let created = expo_ota::protocol::time::format_millis(crate::util::now_ms() + 1_000);
    let commit = |channel: &str, n: u8| {
        let mut m = base.clone();
        m.id = expo_ota::protocol::id::uuid_v4([n; 16]);
        m.created_at = created.clone();
        m.metadata.insert("channel".into(), channel.into());
        json!({"manifest": m.render(), "channel": channel})
    };
    let path = format!("/api/publish/{slug}/ios/{rv}/commit");
    let (a, b) = (commit("staging", 7), commit("beta", 8));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let x = scope.spawn(|| s.api("POST", &path, Some(&a)).status);
        let y = scope.spawn(|| s.api("POST", &path, Some(&b)).status);
        vec![x.join().unwrap(), y.join().unwrap()]
    });
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(sorted, [201, 409], "got {statuses:?}");
}

/// The review found a `.jpg` served as `image/png` when the URL said so: the type now comes from
/// the upload, and asset responses can never render as a page on this origin.
#[test]
fn asset_content_type_comes_from_the_upload_not_the_url_extension() {
    let s = server();
    let slug = unique_slug("asset-type");
    let bytes = b"\xff\xd8\xff\xe0 a jpeg, or so its uploader says";
    let sha = Digests::of(bytes).sha256_hex();
    let auth = s.auth();
    let put = http(
        "PUT",
        &s.url(&format!("/api/files/{slug}/ios/1.0.0/{sha}")),
        &[("authorization", auth.as_str()), ("content-type", "image/jpeg")],
        Some(bytes),
    );
    assert_eq!(put.status, 201, "{}", put.text());
    for ext in ["jpg", "png", "html", "svg"] {
        let r = http("GET", &s.url(&format!("/api/assets/{slug}/ios/1.0.0/{sha}.{ext}")), &[], None);
        assert_eq!(r.status, 200, ".{ext}");
        assert_eq!(r.header("content-type"), Some("image/jpeg"), ".{ext}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), ".{ext}");
        assert_eq!(r.header("content-security-policy"), Some("sandbox"), ".{ext}");
        assert_eq!(r.body, bytes, ".{ext}");
    }
}
