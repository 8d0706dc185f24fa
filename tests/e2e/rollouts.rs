//! Staged rollouts against the real Worker: a simulated fleet of distinct EAS-Client-IDs (half
//! of them UPPERCASE, as iOS sends them) checked at 10 % then 50 %, the revert and a manual halt
//! (devices on the rolled-out update get a newer republish of the control), the publisher's
//! pre-signed revert verified as the client verifies it, resume, and `explain` agreeing with the
//! check. Every test uses its own apps.

use crate::util::*;
use serde_json::{json, Value};

const EXPECT_MAIN: &str = r#"sig, keyid="main", alg="rsa-v1_5-sha256""#;
const DEVICES: u32 = 2_000;
/// Checks in flight at once: enough to finish quickly, few enough for a loaded 2-core machine.
const IN_FLIGHT: usize = 8;

fn key() -> String {
    fixture("codesigning/keys/private-key.pem").display().to_string()
}

fn cert() -> String {
    codesigning("certs/certificate-backdated-2020-2040.pem")
}

fn ok_json(out: CliOutput) -> Value {
    assert!(out.ok, "{}\n{}", out.stderr, out.stdout);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn ios_id(published: &Value) -> String {
    published["updates"].as_array().unwrap().iter().find(|u| u["platform"] == "ios").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Device `i`'s EAS-Client-ID: a v4 UUID, UPPERCASE for odd devices (iOS) and lowercase for
/// even ones (Android).
fn client_id(i: u32) -> String {
    let id =
        expo_ota::protocol::id::uuid_v4(expo_ota::protocol::hash::sha256(&i.to_be_bytes())[..16].try_into().unwrap());
    if i % 2 == 1 {
        id.to_uppercase()
    } else {
        id
    }
}

/// What each device is served: `Some(update id)` or `None` for "no update".
fn fleet(s: &Server, app: &str, current: Option<&str>) -> Vec<Option<String>> {
    let ids: Vec<u32> = (0..DEVICES).collect();
    let chunks: Vec<&[u32]> = ids.chunks(ids.len().div_ceil(IN_FLIGHT)).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|i| {
                            let cid = client_id(*i);
                            let mut h = vec![("eas-client-id", cid.as_str())];
                            if let Some(c) = current {
                                h.push(("expo-current-update-id", c));
                            }
                            served(&s.check(app, "ios", "1.0.3", &h))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

fn served(r: &Reply) -> Option<String> {
    assert_eq!(r.status, 200, "{}", r.text());
    match r.part("manifest") {
        Some(_) => Some(r.manifest()["id"].as_str().unwrap().to_string()),
        None => {
            assert_eq!(r.directive()["type"], "noUpdateAvailable");
            None
        }
    }
}

fn share(served: &[Option<String>], id: &str) -> f64 {
    served.iter().filter(|s| s.as_deref() == Some(id)).count() as f64 / served.len() as f64
}

fn rollout(s: &Server, app: &str, extra: &[&str]) -> Value {
    let mut args = vec!["rollout", "--slug", app, "--platform", "ios", "--runtime-version", "1.0.3", "--json"];
    args.extend_from_slice(extra);
    let v = ok_json(s.cli(&args));
    // Other isolates may hold the old pointer for CHECK_CACHE_MS.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    v
}

fn launch_hash(s: &Server, app: &str, id: &str) -> Value {
    let rec = s.api("GET", &format!("/api/updates/{app}/ios/1.0.3/{id}"), None).json();
    serde_json::from_str::<Value>(rec["body"].as_str().unwrap()).unwrap()["launchAsset"]["hash"].clone()
}

#[test]
fn rollout_ten_then_fifty_percent_keeps_devices_and_revert_republishes_the_control() {
    let s = server();
    let app = unique_slug("rollout");
    let app = app.as_str();
    let v1 = ios_id(&s.publish(app, "demo-app-v1", &["--platform", "ios"]));
    let v2 = ios_id(&s.publish(app, "demo-app-v2", &["--platform", "ios", "--rollout-percentage", "10"]));

    let at10 = fleet(s, app, None);
    let f10 = share(&at10, &v2);
    assert!((f10 - 0.10).abs() < 0.025, "10 % rollout served v2 to {f10}");
    assert!(at10.iter().all(|s| s.as_deref() == Some(v1.as_str()) || s.as_deref() == Some(v2.as_str())));
    // Devices outside that already run the control are told "no update"; a device without an
    // EAS-Client-ID is outside.
    let on_v1 = fleet(s, app, Some(&v1));
    for (i, (before, now)) in at10.iter().zip(&on_v1).enumerate() {
        if before.as_deref() == Some(v1.as_str()) {
            assert_eq!(now, &None, "device {i} outside the rollout, on v1");
        }
    }
    assert_eq!(served(&s.check(app, "ios", "1.0.3", &[])).as_deref(), Some(v1.as_str()));

    let state = rollout(s, app, &["--percentage", "50"]);
    assert_eq!(state["percentage"], 50);
    assert_eq!(state["controlUpdateId"], v1.as_str());
    let at50 = fleet(s, app, None);
    let f50 = share(&at50, &v2);
    assert!((f50 - 0.50).abs() < 0.035, "50 % rollout served v2 to {f50}");
    for (i, (before, now)) in at10.iter().zip(&at50).enumerate() {
        if before.as_deref() == Some(v2.as_str()) {
            assert_eq!(now.as_deref(), Some(v2.as_str()), "device {i} lost v2 when the rollout grew");
        }
    }
    // Shrinking is refused.
    let out =
        s.cli(&["rollout", "--slug", app, "--platform", "ios", "--runtime-version", "1.0.3", "--percentage", "20"]);
    assert!(!out.ok && out.stderr.contains("only grows"), "{}", out.stderr);

    // explain says the same as the check, for a device inside and one outside.
    for i in [
        at50.iter().position(|s| s.as_deref() == Some(v2.as_str())).unwrap(),
        at50.iter().position(|s| s.as_deref() == Some(v1.as_str())).unwrap(),
    ] {
        let cid = client_id(i as u32);
        let e = ok_json(s.cli(&[
            "explain",
            "--slug",
            app,
            "--platform",
            "ios",
            "--runtime-version",
            "1.0.3",
            "--client-id",
            &cid,
            "--json",
        ]));
        assert_eq!(e["answer"], "update");
        assert_eq!(e["updateId"].as_str(), at50[i].as_deref());
        assert_eq!(e["rollout"]["inside"], at50[i].as_deref() == Some(v2.as_str()));
        assert_eq!(e["rollout"]["percentage"], 50);
        let words =
            s.cli(&["explain", "--slug", app, "--platform", "ios", "--runtime-version", "1.0.3", "--client-id", &cid]);
        assert!(words.ok && words.stdout.contains("rolling out to 50 %"), "{}", words.stdout);
    }

    // Revert: devices on v2 get v1's content under a new id with a newer createdAt.
    let h = rollout(s, app, &["--revert"]);
    assert_eq!(h["result"], "halted");
    let on_v2 = s.check(app, "ios", "1.0.3", &[("eas-client-id", &client_id(1)), ("expo-current-update-id", &v2)]);
    let m = on_v2.manifest();
    assert_ne!(m["id"], v1.as_str());
    assert_ne!(m["id"], v2.as_str());
    let v2_created = s.api("GET", &format!("/api/updates/{app}/ios/1.0.3/{v2}"), None).json()["createdAt"].clone();
    assert!(m["createdAt"].as_str().unwrap() > v2_created.as_str().unwrap());
    assert_eq!(m["launchAsset"]["hash"], launch_hash(s, app, &v1));
    download_and_verify_assets(&m);
    assert_eq!(served(&s.check(app, "ios", "1.0.3", &[("expo-current-update-id", &v1)])), None, "on the control");
    let e = ok_json(s.cli(&[
        "explain",
        "--slug",
        app,
        "--platform",
        "ios",
        "--runtime-version",
        "1.0.3",
        "--current-update-id",
        &v2,
        "--json",
    ]));
    assert_eq!((e["answer"].as_str(), e["updateId"].as_str()), (Some("update"), m["id"].as_str()));
    assert_eq!(e["halted"]["updateId"], v2.as_str());
    // The audit log has the rollout changes.
    let audit = s.api("GET", &format!("/api/audit?slug={app}"), None).json();
    let rollouts = audit["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "rollout").count();
    assert_eq!(rollouts, 3, "{audit}");
}

#[test]
fn halt_route_serves_the_presigned_revert_and_resume_serves_the_update_again() {
    // No server key: every signature comes from the CLI, the revert's included.
    let s = server();
    let app = unique_slug("halt-signed");
    let app = app.as_str();
    let v1 = ios_id(&s.publish(app, "demo-app-v1", &["--platform", "ios", "--private-key", &key()]));
    let v2 = ios_id(&s.publish(
        app,
        "demo-app-v2",
        &["--platform", "ios", "--private-key", &key(), "--rollout-percentage", "20"],
    ));
    let h = s.api(
        "POST",
        &format!("/api/rollout/{app}/ios/1.0.3"),
        Some(&json!({"halt": true, "expectedCurrent": v2, "reason": "e2e halt"})),
    );
    assert_eq!(h.status, 200, "{}", h.text());
    let h = h.json();
    assert_eq!(h["result"], "halted");
    assert_eq!(h["revert"]["signed"], true, "the pre-signed revert is served");
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    // A signing device on v2 gets v1's content as a newer update, signed by the publisher's key.
    let r = s.check(app, "ios", "1.0.3", &[("expo-expect-signature", EXPECT_MAIN), ("expo-current-update-id", &v2)]);
    let m = r.manifest();
    verify_part_signature(&r.part("manifest").unwrap(), &cert(), "main");
    assert_eq!(m["id"], h["revert"]["id"]);
    let v2_created = s.api("GET", &format!("/api/updates/{app}/ios/1.0.3/{v2}"), None).json()["createdAt"].clone();
    let ms = |v: &Value| expo_ota::protocol::time::parse_millis(v.as_str().unwrap()).unwrap();
    assert_eq!(ms(&m["createdAt"]), ms(&v2_created) + 1, "createdAt is the halted update's + 1 ms");
    assert_eq!(m["launchAsset"]["hash"], launch_hash(s, app, &v1));
    // A halt of something the channel does not serve (any more) is refused and changes nothing.
    let before = s.fingerprint(&[app]);
    let stale =
        s.api("POST", &format!("/api/rollout/{app}/ios/1.0.3"), Some(&json!({"halt": true, "expectedCurrent": v2})));
    stale.assert_error(409);
    assert_eq!(s.fingerprint(&[app]), before);

    // Resume with the key: v2 again, republished and signed, for every device.
    let out = s.cli(&[
        "rollout",
        "--slug",
        app,
        "--platform",
        "ios",
        "--runtime-version",
        "1.0.3",
        "--resume",
        "--private-key",
        &key(),
        "--json",
    ]);
    let c = ok_json(out);
    assert_eq!((c["republishedFrom"].as_str(), c["signed"].as_bool()), (Some(v2.as_str()), Some(true)));
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let r = s.check(
        app,
        "ios",
        "1.0.3",
        &[("expo-expect-signature", EXPECT_MAIN), ("expo-current-update-id", m["id"].as_str().unwrap())],
    );
    let resumed = r.manifest();
    verify_part_signature(&r.part("manifest").unwrap(), &cert(), "main");
    assert_eq!(resumed["id"], c["id"]);
    assert_eq!(resumed["launchAsset"]["hash"], launch_hash(s, app, &v2));
}

#[test]
fn rollout_route_refusals_change_nothing() {
    let s = server();
    let app = unique_slug("rollout-refusals");
    let app = app.as_str();
    let path = format!("/api/rollout/{app}/ios/1.0.3");
    s.api("POST", &path, Some(&json!({"percentage": 50}))).assert_error(404);
    s.publish(app, "demo-app-v1", &["--platform", "ios"]);
    let before = s.fingerprint(&[app]);
    let e = s.api("POST", &path, Some(&json!({"percentage": 50}))).assert_error(422);
    assert!(e.contains("no rollout"), "{e}");
    s.api("POST", &path, Some(&json!({"percentage": 50, "halt": true}))).assert_error(400);
    s.api("POST", &path, Some(&json!({"halt": true, "reason": "line\nbreak"}))).assert_error(400);
    s.api("POST", &path, Some(&json!({"resume": true}))).assert_error(422);
    assert_eq!(s.fingerprint(&[app]), before);
}
