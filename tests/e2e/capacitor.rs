//! Capacitor apps (`@capgo/capacitor-updater`) and the APK channel against the real Worker: the
//! fixture bundles zipped by `@capgo/cli`, published with the real CLI, checked with the bodies
//! the plugin sends, downloaded with and without Range.

use crate::util::*;
use expo_ota::protocol::hash;
use serde_json::{json, Value};

const V100_SHA: &str = "4ec6b0cdf50f1b7e8bd6b3998b4607faaa67e78db3e31b6448838c7b303fa043";
const V101_SHA: &str = "61e095092b0a2831f1f9ec89860d450087f0fdacb18374b66c5d564b52776813";
const APK_SHA: &str = "222d2cca9118911a66787085cd06c01981cb9ac1493a57bd7ed7a50cb4e25c85";

fn bundle(v: &str) -> std::path::PathBuf {
    fixture(&format!("capacitor/bundles/{v}/com.example.capota_{v}.zip"))
}

fn app_id(name: &str) -> String {
    format!("com.example.{}", unique_slug(name))
}

/// The body Android 8.51.23 sends (org.json order, `/` escaped as `\/`).
fn device(app: &str, version_name: &str, version_build: &str, channel: &str) -> Vec<u8> {
    format!(
        r#"{{"platform":"android","device_id":"8f3c6a52-1f4e-4a51-9c3e-2b7f0d6a9e11","app_id":"{app}","custom_id":"","version_build":"{version_build}","version_code":"10001","version_os":"14","version_name":"{version_name}","plugin_version":"8.51.23","is_emulator":false,"is_prod":true,"install_source":"","defaultChannel":"{channel}","note":"https:\/\/example.com\/x"}}"#
    )
    .into_bytes()
}

fn post(s: &Server, path: &str, body: &[u8]) -> Reply {
    let h = [
        ("content-type", "application/json; charset=utf-8"),
        ("user-agent", "CapacitorUpdater/8.51.23 (x) android/14"),
    ];
    http("POST", &s.url(path), &h, Some(body))
}

fn update(s: &Server, app: &str, version_name: &str, version_build: &str, channel: &str) -> Value {
    let r = post(s, &format!("/api/capacitor/{app}/updates"), &device(app, version_name, version_build, channel));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn cli_json(s: &Server, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = s.cli(&a);
    assert!(out.ok, "{args:?}: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn publish_zip(s: &Server, app: &str, version: &str, zip: &std::path::Path, extra: &[&str]) -> Value {
    let mut args = vec!["capacitor", "publish", "--app-id", app, "--version", version, "--zip", zip.to_str().unwrap()];
    args.extend_from_slice(extra);
    cli_json(s, &args)
}

const UP_TO_DATE: &str =
    r#"{"error":"no_new_version_available","kind":"up_to_date","message":"No new version available"}"#;

#[test]
fn capacitor_publish_offer_download_delete_rollback_builtin() {
    let s = server();
    let app = app_id("cap-cycle");
    let p = publish_zip(s, &app, "1.0.0", &bundle("1.0.0"), &[]);
    assert_eq!((p["checksum"].as_str(), p["uploaded"].as_bool()), (Some(V100_SHA), Some(true)));
    let p = publish_zip(s, &app, "1.0.1", &bundle("1.0.1"), &[]);
    assert_eq!((p["checksum"].as_str(), p["previous"].as_str()), (Some(V101_SHA), Some("1.0.0")));

    // A device on 1.0.0 is offered 1.0.1: exactly these keys, the fixture's checksum.
    let offer = update(s, &app, "1.0.0", "1.0", "");
    let url = s.url(&format!("/api/capacitor/{app}/bundles/{V101_SHA}.zip"));
    assert_eq!(offer, json!({"version": "1.0.1", "url": url, "checksum": V101_SHA, "session_key": ""}));

    // The download: the exact stored bytes, immutable, never re-encoded; then a resumed download.
    let full = http("GET", &url, &[("accept-encoding", "gzip, br")], None);
    assert_eq!(full.status, 200);
    assert_eq!(hash::Digests::of(&full.body).sha256_hex(), V101_SHA);
    assert_eq!(full.body, read(&bundle("1.0.1")));
    assert_eq!(full.header("content-type"), Some("application/zip"));
    assert!(full.header("cache-control").unwrap().contains("immutable"));
    assert_eq!(full.header("content-encoding"), None);
    let tail = http("GET", &url, &[("range", "bytes=1000-")], None);
    assert_eq!(tail.status, 206);
    assert_eq!(
        tail.header("content-range").map(str::to_string),
        Some(format!("bytes 1000-{}/{}", full.body.len() - 1, full.body.len()))
    );
    assert_eq!([&full.body[..1000], &tail.body[..]].concat(), full.body);
    assert_eq!(http("GET", &url, &[("range", "bytes=999999-")], None).status, 416);

    // On the current version: HTTP 200, up_to_date, exact keys.
    let r = post(s, &format!("/api/capacitor/{app}/updates"), &device(&app, "1.0.1", "1.0", ""));
    assert_eq!((r.status, r.text()), (200, UP_TO_DATE.to_string()));

    // Delete the current version: the previous one is offered again (a downgrade).
    let d = cli_json(s, &["capacitor", "delete", "--app-id", &app, "--version", "1.0.1"]);
    assert_eq!((d["current"].as_str(), d["bundleDeleted"].as_bool()), (Some("1.0.0"), Some(true)));
    assert_eq!(update(s, &app, "1.0.1", "1.0", "")["version"], "1.0.0");
    assert_eq!(http("GET", &url, &[], None).status, 404, "the deleted bundle's bytes are gone");

    // Publish 1.0.1 again, then roll back: the answer names the previous version.
    publish_zip(s, &app, "1.0.1", &bundle("1.0.1"), &[]);
    let rb = cli_json(s, &["capacitor", "rollback", "--app-id", &app]);
    assert_eq!((rb["from"].as_str(), rb["to"].as_str()), (Some("1.0.1"), Some("1.0.0")));
    assert_eq!(update(s, &app, "1.0.1", "1.0", "")["version"], "1.0.0");

    // Back to the binary's bundle; a device already on it (native version reported) is up to date.
    cli_json(s, &["capacitor", "rollback", "--app-id", &app, "--to-builtin"]);
    assert_eq!(update(s, &app, "1.0.0", "1.0", ""), json!({"version": "builtin"}));
    assert_eq!(update(s, &app, "1.0", "1.0", "")["kind"], "up_to_date");

    let list = cli_json(s, &["capacitor", "list", "--app-id", &app]);
    assert_eq!(list["channels"]["production"]["current"], "builtin");
    assert_eq!(list["channels"]["production"]["versions"].as_array().unwrap().len(), 2);
}

#[test]
fn capacitor_publish_dir_zips_like_capgo_and_min_native_version_blocks_old_binaries() {
    let s = server();
    let app = app_id("cap-dir");
    // The fixture's built web directory, unpacked.
    let dir = tempfile::tempdir().unwrap();
    zip::ZipArchive::new(std::fs::File::open(bundle("1.0.1")).unwrap()).unwrap().extract(dir.path()).unwrap();
    let dist = dir.path().to_str().unwrap();
    let args = ["capacitor", "publish", "--app-id", &app, "--version", "2.0.0", "--dir", dist, "--channel", "native"];
    let p = cli_json(s, &[&args[..], &["--min-native-version", "2.0"]].concat());
    let checksum = p["checksum"].as_str().unwrap().to_string();
    // Zipping the same files again uploads nothing.
    let again = cli_json(s, &[&args[..], &["--min-native-version", "2.0"]].concat());
    assert_eq!((again["checksum"].as_str(), again["uploaded"].as_bool()), (Some(checksum.as_str()), Some(false)));
    cli_json(s, &["capacitor", "channel", "--app-id", &app, "--channel", "native", "--public", "true"]);

    let blocked = update(s, &app, "builtin", "1.9.9", "native");
    assert_eq!((blocked["kind"].as_str(), blocked.get("url")), (Some("blocked"), None));
    let offer = update(s, &app, "builtin", "2.1", "native");
    assert_eq!((offer["version"].as_str(), offer["checksum"].as_str()), (Some("2.0.0"), Some(checksum.as_str())));
    let zip = http("GET", offer["url"].as_str().unwrap(), &[], None);
    assert_eq!(hash::Digests::of(&zip.body).sha256_hex(), checksum);
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(zip.body)).unwrap();
    assert!(z.by_name("index.html").is_ok(), "index.html at the root, as @capgo/cli zips it");

    // A directory without index.html: refused by the CLI, nothing sent.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("main.js"), "x").unwrap();
    let out = s.cli(&[
        "capacitor",
        "publish",
        "--app-id",
        &app,
        "--version",
        "3.0.0",
        "--dir",
        empty.path().to_str().unwrap(),
    ]);
    assert!(!out.ok && out.stderr.contains("index.html"), "{}", out.stderr);
}

#[test]
fn capacitor_stats_accept_array_and_object_with_200_json() {
    let s = server();
    let app = app_id("cap-stats");
    let one = json!({"platform": "ios", "device_id": "d", "version_name": "1.0.1", "action": "set", "timestamp": 1});
    let batch = json!([one, {"action": "update_fail", "version_name": "1.0.1"}, {"action": "some_future_action"}]);
    for (body, n) in [(one.to_string(), 1), (batch.to_string(), 3)] {
        let r = post(s, &format!("/api/capacitor/{app}/stats"), body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json(), json!({"status": "ok", "received": n}));
    }
}

#[test]
fn capacitor_channel_self_every_verb() {
    let s = server();
    let app = app_id("cap-chan");
    publish_zip(s, &app, "1.0.0", &bundle("1.0.0"), &[]);
    publish_zip(s, &app, "1.0.1", &bundle("1.0.1"), &["--channel", "beta"]);
    publish_zip(s, &app, "1.0.1", &bundle("1.0.1"), &["--channel", "internal"]);
    cli_json(s, &["capacitor", "channel", "--app-id", &app, "--channel", "beta", "--allow-self-set", "true"]);
    let path = format!("/api/capacitor/{app}/channel_self");
    let with_channel = |c: &str| {
        let mut v: Value = serde_json::from_slice(&device(&app, "1.0.0", "1.0", "")).unwrap();
        v["channel"] = c.into();
        v.to_string().into_bytes()
    };
    let set = post(s, &path, &with_channel("beta"));
    assert_eq!((set.status, set.json()), (200, json!({"status": "ok", "allowSet": true})));
    let refused = post(s, &path, &with_channel("internal"));
    assert_eq!((refused.status, refused.json()["error"].as_str()), (400, Some("channel_self_set_not_allowed")));
    assert_eq!(post(s, &path, &with_channel("nope")).json()["error"], "channel_not_found");
    // The device keeps the channel and sends it as defaultChannel: beta's bundle is offered.
    assert_eq!(update(s, &app, "1.0.0", "1.0", "beta")["version"], "1.0.1");
    assert_eq!(update(s, &app, "1.0.0", "1.0", "internal")["kind"], "blocked");

    let get = http(
        "PUT",
        &s.url(&path),
        &[("content-type", "application/json")],
        Some(&device(&app, "1.0.0", "1.0", "beta")),
    );
    assert_eq!(get.json(), json!({"channel": "beta", "status": "override", "allowSet": true}));
    let get =
        http("PUT", &s.url(&path), &[("content-type", "application/json")], Some(&device(&app, "1.0.0", "1.0", "")));
    assert_eq!(get.json(), json!({"channel": "production", "status": "default", "allowSet": true}));
    let list = http("GET", &s.url(&format!("{path}?platform=android&device_id=x&is_emulator=false")), &[], None);
    let list = list.json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!((list[0]["name"].as_str(), list[0]["allow_self_set"].as_bool()), (Some("beta"), Some(true)));
    assert!(list[0]["id"].is_u64(), "integer ids: {list}");
    let unset = http(
        "DELETE",
        &s.url(&path),
        &[("content-type", "application/json")],
        Some(&device(&app, "1.0.0", "1.0", "beta")),
    );
    assert_eq!((unset.status, unset.json()), (200, json!({"status": "ok"})));
}

#[test]
fn capacitor_compat_check_answers_version_url_checksum_or_empty() {
    let s = server();
    let app = app_id("cap-compat");
    let path = format!("/api/capacitor/{app}/check");
    assert_eq!(post(s, &path, br#"{"version_build":"1.0","channel":"production"}"#).json(), json!({}));
    publish_zip(s, &app, "1.0.1", &bundle("1.0.1"), &[]);
    let r = post(s, &path, br#"{"version_build":"1.0","channel":"production"}"#).json();
    assert_eq!((r["version"].as_str(), r["checksum"].as_str()), (Some("1.0.1"), Some(V101_SHA)));
    assert!(r["url"].as_str().unwrap().starts_with("http"), "absolute url");
    assert_eq!(post(s, &path, br#"{"version_name":"1.0.1"}"#).json(), json!({}));
}

#[test]
fn capacitor_form_upload_verifies_checksum_and_stores_nothing_when_wrong() {
    let s = server();
    let app = app_id("cap-form");
    let zip = read(&bundle("1.0.0"));
    let fields = |checksum: &str| {
        vec![
            ("file".to_string(), zip.clone()),
            ("version".to_string(), b"1.0.0".to_vec()),
            ("channel".to_string(), b"production".to_vec()),
            ("checksum".to_string(), checksum.as_bytes().to_vec()),
        ]
    };
    let (ct, body) = form_body(&fields(V101_SHA));
    let auth = s.auth();
    let h = [("authorization", auth.as_str()), ("content-type", ct.as_str())];
    let url = s.url(&format!("/api/capacitor/{app}/publish"));
    let r = http("POST", &url, &h, Some(&body));
    assert!(r.assert_error(422).contains("checksum mismatch"));
    assert!(s.fingerprint(&[&app]).is_empty(), "{:?}", s.fingerprint(&[&app]));

    let (ct, body) = form_body(&fields(V100_SHA));
    let h = [("authorization", auth.as_str()), ("content-type", ct.as_str())];
    let r = http("POST", &url, &h, Some(&body));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(update(s, &app, "builtin", "1.0", "")["checksum"], V100_SHA);

    // An APK is not a web bundle: refused on the raw upload too, and not kept.
    let apk = read(&fixture("capacitor/apk/capota-demo-1.0.1.apk"));
    let put = s.url(&format!("/api/capacitor/{app}/bundles/{APK_SHA}"));
    let r = http("PUT", &put, &[("authorization", auth.as_str()), ("content-type", "application/zip")], Some(&apk));
    assert!(r.assert_error(422).contains("index.html"));
    assert!(!s.fingerprint(&[&app]).iter().any(|k| k.contains(APK_SHA)));
}

#[test]
fn apk_publish_latest_and_ranged_download() {
    let s = server();
    let app = app_id("apk");
    let file = fixture("capacitor/apk/capota-demo-1.0.1.apk");
    assert_eq!(http("GET", &s.url(&format!("/api/apk/{app}/latest")), &[], None).status, 404);
    let p = cli_json(s, &["apk", "publish", "--app-id", &app, "--version", "1.0.1", "--file", file.to_str().unwrap()]);
    assert_eq!((p["sha256"].as_str(), p["channel"].as_str()), (Some(APK_SHA), Some("apk")));
    let latest = http("GET", &s.url(&format!("/api/apk/{app}/latest?channel=apk")), &[], None).json();
    assert_eq!(
        (latest["version"].as_str(), latest["sha256"].as_str(), latest["size"].as_u64()),
        (Some("1.0.1"), Some(APK_SHA), Some(925))
    );
    assert!(latest["publishedAt"].is_string());
    let url = latest["url"].as_str().unwrap();
    let full = http("GET", url, &[], None);
    assert_eq!((full.status, full.body.clone()), (200, read(&file)));
    assert_eq!(full.header("content-type"), Some("application/vnd.android.package-archive"));
    assert!(full.header("content-disposition").unwrap().starts_with("attachment"));
    let part = http("GET", url, &[("range", "bytes=0-99")], None);
    assert_eq!((part.status, part.header("content-range")), (206, Some("bytes 0-99/925")));
    assert_eq!(part.body, &full.body[..100]);
    // Never offered through the plugin's update route.
    assert_eq!(update(s, &app, "builtin", "1.0", "")["kind"], "up_to_date");
    assert_eq!(update(s, &app, "builtin", "1.0", "apk")["kind"], "blocked");
}

/// The plugin's stats feed the same health counters and automatic halt as expo checks: a version
/// that fails on half the devices is rolled back by itself, and devices on it are offered the
/// previous version.
#[test]
fn capacitor_failing_version_halts_by_itself_and_devices_get_the_previous_version() {
    let s = server();
    let app = app_id("cap-halt");
    publish_zip(s, &app, "1.0.0", &bundle("1.0.0"), &[]);
    publish_zip(s, &app, "1.0.1", &bundle("1.0.1"), &[]);
    assert_eq!(update(s, &app, "1.0.1", "1.0", "")["error"], "no_new_version_available");

    // 60 devices: half report the bundle set (launched), half report it failing; one batch
    // (array) per device, as plugins ≥ x.42 send them.
    let events: Vec<Value> = (0..60)
        .map(|i| {
            let action = if i % 2 == 0 { "set" } else { "update_fail" };
            json!({"platform": "android", "device_id": format!("00000000-0000-4000-8000-{i:012}"), "app_id": app,
                   "version_name": "1.0.1", "old_version_name": "1.0.0", "action": action, "defaultChannel": ""})
        })
        .collect();
    for chunk in events.chunks(10) {
        let r = post(s, &format!("/api/capacitor/{app}/stats"), Value::from(chunk.to_vec()).to_string().as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let row = loop {
        let r = s.api("GET", &format!("/api/health?slug={app}&platform=android&runtimeVersion=capacitor"), None);
        assert_eq!(r.status, 200, "{}", r.text());
        let report = r.json();
        let row = report["updates"].as_array().and_then(|u| u.iter().find(|u| u["updateId"] == "1.0.1").cloned());
        if let Some(row) = row.filter(|u| u["halt"].is_object() && u["failed"] == 30 && u["launched"] == 30) {
            break row;
        }
        assert!(std::time::Instant::now() < deadline, "1.0.1 not halted after 20 s: {report:#}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(row["halt"]["by"], "system:health");
    assert!(row["halt"]["error"].is_null(), "the halt was applied: {row:#}");

    // Devices on the bad version are offered the previous one (the plugin accepts downgrades).
    let offer = update(s, &app, "1.0.1", "1.0", "");
    assert_eq!(offer["version"], "1.0.0", "{offer:#}");
    assert_eq!(offer["checksum"], V100_SHA);
    let list = cli_json(s, &["capacitor", "list", "--app-id", &app]);
    assert!(list.to_string().contains("\"current\":\"1.0.0\""), "{list:#}");
}
