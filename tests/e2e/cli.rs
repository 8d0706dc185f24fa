//! The real `publish-cli` against the real Worker on workerd, with real `npx expo export`
//! output: the foundation's acceptance scenarios. Every test uses its own apps.

use crate::util::*;
use serde_json::Value;
use std::collections::BTreeSet;

fn update<'a>(out: &'a Value, platform: &str) -> &'a Value {
    out["updates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["platform"] == platform)
        .unwrap_or_else(|| panic!("no {platform} in {out}"))
}

fn bundle_size(fixture_name: &str, platform: &str) -> u64 {
    let dir = fixture(fixture_name);
    let meta: Value = serde_json::from_slice(&read(&dir.join("metadata.json"))).unwrap();
    std::fs::metadata(dir.join(meta["fileMetadata"][platform]["bundle"].as_str().unwrap())).unwrap().len()
}

#[test]
fn publish_v1_v2_v3_uploads_only_new_files_then_list_and_delete() {
    let s = server();
    let app = unique_slug("cli-demo");
    let app = app.as_str();

    // v1: both platforms, every file uploaded once per platform, Hermes reported.
    let v1 = s.publish(app, "demo-app-v1", &["--message", "first release"]);
    assert_eq!(v1["dryRun"], false);
    let mut ids = BTreeSet::new();
    for platform in ["ios", "android"] {
        let u = update(&v1, platform);
        assert_eq!(u["runtimeVersion"], "1.0.3", "resolved from the appVersion policy");
        assert_eq!(u["uploadedFiles"], 7);
        assert_eq!(u["launchAsset"]["kind"], "hermes bytecode v96");
        let m = s.check(app, platform, "1.0.3", &[]).manifest();
        assert_eq!(m["id"], u["id"]);
        assert_eq!(m["createdAt"], u["createdAt"]);
        assert_eq!(m["launchAsset"]["hash"], u["launchAsset"]["hash"]);
        assert_eq!(download_and_verify_assets(&m), u["totalBytes"].as_u64().unwrap());
        // The device that runs it is told there is nothing new.
        assert_eq!(
            s.check(app, platform, "1.0.3", &[("expo-current-update-id", u["id"].as_str().unwrap())]).directive()
                ["type"],
            "noUpdateAvailable"
        );
        ids.insert(u["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 2, "one id per platform");

    // v2 (JS-only change): only the two new bundles go over the wire.
    let v2 = s.publish(app, "demo-app-v2", &[]);
    let mut uploaded = 0;
    for platform in ["ios", "android"] {
        let (u1, u2) = (update(&v1, platform), update(&v2, platform));
        assert_eq!(u2["uploadedFiles"], 1, "{platform}: only the bundle is new");
        assert_eq!(u2["skippedFiles"], 6);
        uploaded += u2["uploadedBytes"].as_u64().unwrap();
        assert_ne!(u2["id"], u1["id"]);
        assert!(u2["createdAt"].as_str() > u1["createdAt"].as_str());
        // A device on v1 is offered v2.
        let m = s.check(app, platform, "1.0.3", &[("expo-current-update-id", u1["id"].as_str().unwrap())]).manifest();
        assert_eq!(m["id"], u2["id"]);
        download_and_verify_assets(&m);
    }
    assert_eq!(uploaded, bundle_size("demo-app-v2", "ios") + bundle_size("demo-app-v2", "android"));

    // v3 (asset change): the new banner and star are uploaded; the pattern is gone.
    let v3 = s.publish(app, "demo-app-v3", &[]);
    for platform in ["ios", "android"] {
        assert_eq!(update(&v3, platform)["uploadedFiles"], 3, "bundle + 2 new assets");
        let m = s.check(app, platform, "1.0.3", &[]).manifest();
        let keys: BTreeSet<&str> = m["assets"].as_array().unwrap().iter().map(|a| a["key"].as_str().unwrap()).collect();
        assert!(keys.contains("dbbe7152a19ceb0809c38a0ae8c98c88") && keys.contains("81aa1060a1ddfeb6c063f386ad268fa9"));
        assert!(
            !keys.contains("1c55265678b19143ee84a770b2bcfc19") && !keys.contains("ed702552983a8eec95c8d7f1252a4473")
        );
        download_and_verify_assets(&m);
    }

    // list shows the history, newest first, with sizes.
    let out = s.cli(&["list", "--slug", app, "--json"]);
    assert!(out.ok, "{}", out.stderr);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    for rt in list["runtimes"].as_array().unwrap() {
        let ups = rt["updates"].as_array().unwrap();
        assert_eq!(ups.len(), 3);
        assert_eq!(ups[0]["id"], update(&v3, rt["platform"].as_str().unwrap())["id"]);
        assert_eq!(ups[0]["current"], true);
        assert_eq!(ups[2]["message"], "first release");
    }
    let human = s.cli(&["list", "--slug", app]);
    assert!(human.ok && human.stdout.contains(update(&v3, "ios")["id"].as_str().unwrap()), "{}", human.stdout);

    // delete (needs --yes) → the next check answers no update.
    let refused = s.cli(&["delete", "--slug", app, "--platform", "ios", "--runtime-version", "1.0.3"]);
    assert!(!refused.ok && refused.stderr.contains("--yes"), "{}", refused.stderr);
    let out = s.cli(&["delete", "--slug", app, "--platform", "ios", "--runtime-version", "1.0.3", "--yes", "--json"]);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(s.check(app, "ios", "1.0.3", &[]).directive()["type"], "noUpdateAvailable");
    s.check(app, "android", "1.0.3", &[]).manifest();
}

#[test]
fn publish_android_only_and_plain_js_exports_apps_stay_isolated() {
    let s = server();
    let (demo, utility) = (unique_slug("cli-plainjs"), unique_slug("cli-utility"));
    let (demo, utility) = (demo.as_str(), utility.as_str());
    // utility-app is Android only: iOS gets no update, never an error.
    let u = s.publish(utility, "utility-app-v1", &[]);
    assert_eq!(u["updates"].as_array().unwrap().len(), 1);
    assert_eq!(update(&u, "android")["runtimeVersion"], "2.0.0");
    let m = s.check(utility, "android", "2.0.0", &[]).manifest();
    assert_eq!(m["assets"].as_array().unwrap().len(), 7);
    download_and_verify_assets(&m);
    assert_eq!(s.check(utility, "ios", "2.0.0", &[]).directive()["type"], "noUpdateAvailable");
    let only_ios = s.cli(&[
        "publish",
        "--slug",
        utility,
        "--export-dir",
        fixture("utility-app-v1").to_str().unwrap(),
        "--platform",
        "ios",
    ]);
    assert!(!only_ios.ok && only_ios.stderr.contains("ios"), "{}", only_ios.stderr);

    // The plain-JS export (no Hermes) publishes and serves the same way.
    let js = s.publish(demo, "demo-app-v1-plainjs", &[]);
    assert_eq!(update(&js, "ios")["launchAsset"]["kind"], "javascript");
    let m = s.check(demo, "ios", "1.0.3", &[]).manifest();
    let url = m["launchAsset"]["url"].as_str().unwrap();
    let body = http("GET", url, &[], None).body;
    assert!(body.starts_with(b"var __BUNDLE_START_TIME__"));
    download_and_verify_assets(&m);

    // Apps never see each other's updates, even for the same runtime/platform names.
    assert_eq!(s.check(utility, "android", "1.0.3", &[]).directive()["type"], "noUpdateAvailable");
    assert_eq!(s.check(demo, "android", "2.0.0", &[]).directive()["type"], "noUpdateAvailable");
}

#[test]
fn publish_dry_run_bad_auth_or_input_stores_nothing_and_overrides_apply() {
    let s = server();
    let app = unique_slug("cli-dry-run");
    let app = app.as_str();
    let dir = fixture("demo-app-v1");
    let dir = dir.to_str().unwrap();
    let before = s.fingerprint(&[app]);
    let out = s.cli(&["publish", "--slug", app, "--export-dir", dir, "--dry-run", "--json"]);
    assert!(out.ok, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["dryRun"], true);
    let would = update(&v, "ios")["wouldUpload"].as_array().unwrap();
    assert_eq!(would.len(), 7);
    assert_eq!(s.fingerprint(&[app]), before, "a dry run stores nothing");
    assert_eq!(s.check(app, "ios", "1.0.3", &[]).directive()["type"], "noUpdateAvailable");

    // Wrong or missing token: a clear error and a non-zero exit, nothing published.
    let bad = run_cli(
        &["publish", "--server", &s.base, "--auth-token", "nope", "--slug", app, "--export-dir", dir].map(String::from),
    );
    assert!(!bad.ok && bad.stderr.contains("401"), "{}", bad.stderr);
    let none = run_cli(&["publish", "--server", &s.base, "--slug", app, "--export-dir", dir].map(String::from));
    assert!(!none.ok && none.stderr.to_lowercase().contains("token"), "{}", none.stderr);
    // Unreachable server.
    let down = run_cli(
        &["publish", "--server", "http://127.0.0.1:9", "--auth-token", "x", "--slug", app, "--export-dir", dir]
            .map(String::from),
    );
    // The only other line is the warning that the export's slug is not this test's.
    let first = down.stderr.lines().find(|l| !l.starts_with("warning:")).unwrap_or("");
    assert!(!down.ok && first.starts_with("error:"), "{}", down.stderr);
    // Bad export dir and bad runtime version are refused before any request.
    let missing = s.cli(&["publish", "--slug", app, "--export-dir", "/nonexistent"]);
    assert!(!missing.ok && missing.stderr.contains("export dir"), "{}", missing.stderr);
    let badrv = s.cli(&["publish", "--slug", app, "--export-dir", dir, "--runtime-version", "../1"]);
    assert!(!badrv.ok && badrv.stderr.contains("runtimeVersion"), "{}", badrv.stderr);
    assert_eq!(s.fingerprint(&[app]), before);

    // --platform and --runtime-version override what the export says.
    let out = s.publish(app, "demo-app-v1", &["--platform", "android", "--runtime-version", "1.0.3-hotfix"]);
    assert_eq!(out["updates"].as_array().unwrap().len(), 1);
    let m = s.check(app, "android", "1.0.3-hotfix", &[]).manifest();
    assert_eq!(m["runtimeVersion"], "1.0.3-hotfix");
    assert_eq!(s.check(app, "android", "1.0.3", &[]).directive()["type"], "noUpdateAvailable");
    assert_eq!(s.check(app, "ios", "1.0.3-hotfix", &[]).directive()["type"], "noUpdateAvailable");
}
