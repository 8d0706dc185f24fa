//! Update health end to end: a simulated fleet reports a bad update through the client's own
//! headers only (`EAS-Client-ID`, `expo-current-update-id`, `expo-recent-failed-update-ids`,
//! `expo-fatal-error`); the update halts by itself, devices on it are offered the previous update
//! again (new id, newer createdAt, same content), `publish-cli health` shows the counts and the
//! reason, and the audit log has the halt.

use crate::util::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const DEVICES: usize = 120;
const RV: &str = "1.0.3";

fn ios(published: &Value) -> Value {
    published["updates"].as_array().unwrap().iter().find(|u| u["platform"] == "ios").unwrap().clone()
}

/// Install ids as the clients send them: iOS sends UPPERCASE, Android lowercase.
fn install_id(i: usize) -> String {
    let id = format!("{i:08x}-0000-4000-8000-{:012x}", i * 7919);
    if i % 2 == 0 {
        id.to_ascii_uppercase()
    } else {
        id
    }
}

/// Half the fleet runs v2; the other half crashed on it, rolled back to v1 by itself, and now
/// lists v2 as failed (some with a fatal error). Every check must still be answered normally.
fn fleet_checks(s: &Server, app: &str, v1: &str, v2: &str) {
    let failed = format!("\"{v2}\"");
    for i in 0..DEVICES {
        let id = install_id(i);
        let mut h = vec![("eas-client-id", id.as_str())];
        if i % 2 == 0 {
            h.push(("expo-current-update-id", v2));
        } else {
            h.push(("expo-current-update-id", v1));
            h.push(("expo-recent-failed-update-ids", failed.as_str()));
            if i % 3 == 0 {
                h.push(("expo-fatal-error", "TypeError: undefined is not an object"));
            }
        }
        let r = s.check(app, "ios", RV, &h);
        assert!(r.status == 200 || r.status == 204, "check {i}: {} {}", r.status, r.text());
    }
}

fn health(s: &Server, app: &str) -> Value {
    let out = s.cli(&["health", "--slug", app, "--platform", "ios", "--runtime-version", RV, "--json"]);
    assert!(out.ok, "health failed: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn update<'a>(report: &'a Value, id: &str) -> Option<&'a Value> {
    report["updates"].as_array()?.iter().find(|u| u["updateId"] == id)
}

#[test]
fn failing_update_halts_by_itself_and_devices_on_it_get_the_previous_update() {
    let s = server();
    let app = unique_slug("health-halt");
    let v1 = ios(&s.publish(&app, "demo-app-v1", &[]));
    let v1_manifest = s.check(&app, "ios", RV, &[]).manifest();
    let v2 = ios(&s.publish(&app, "demo-app-v2", &[]));
    let (id1, id2) = (v1["id"].as_str().unwrap(), v2["id"].as_str().unwrap());

    // Garbage signals never fail a check.
    let r = s.check(
        &app,
        "ios",
        RV,
        &[("eas-client-id", "not an id!"), ("expo-recent-failed-update-ids", "\"unterminated")],
    );
    assert_eq!(r.status, 200);

    fleet_checks(s, &app, id1, id2);
    // Flushes are batched per isolate (failures within ~1 s, launches within ~5 s): poll, bounded.
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let report = health(s, &app);
        let done = update(&report, id2).is_some_and(|u| {
            u["halt"].is_object() && u["launched"] == DEVICES as u64 / 2 && u["failed"] == DEVICES as u64 / 2
        });
        if done {
            break report;
        }
        assert!(Instant::now() < deadline, "v2 not halted with full counts after 20 s: {report:#}\n{}", tail(&s.log()));
        std::thread::sleep(Duration::from_millis(500));
    };

    // `health` shows the counts, the interval, the rule and the reason.
    let u2 = update(&report, id2).unwrap();
    assert_eq!(u2["failureRate"], 0.5);
    let interval = u2["failureRateInterval"].as_array().unwrap();
    assert!(interval[0].as_f64().unwrap() > 0.3 && interval[1].as_f64().unwrap() < 0.7, "{interval:?}");
    assert_eq!(u2["halt"]["by"], "system:health");
    assert!(u2["halt"]["error"].is_null(), "the halt was applied: {u2:#}");
    let reason = u2["halt"]["reason"].as_str().unwrap();
    assert!(reason.contains("devices failed to launch it") && reason.contains("95 % lower bound"), "{reason}");
    assert_eq!(u2["topFatalErrors"][0]["text"], "TypeError: undefined is not an object");
    assert_eq!(report["rule"]["minOutcomes"], 50);
    let u1 = update(&report, id1).expect("v1 counted as launched by the rolled-back devices");
    assert_eq!((u1["launched"].as_u64(), u1["failed"].as_u64()), (Some(60), Some(0)));

    // A device still on v2 gets v1 again, republished: another id, a newer createdAt, v1's content.
    let m = s.check(&app, "ios", RV, &[("expo-current-update-id", id2)]).manifest();
    assert_ne!(m["id"], id2);
    assert_ne!(m["id"], id1);
    assert!(m["createdAt"].as_str().unwrap() > v2["createdAt"].as_str().unwrap(), "{m:#}");
    assert_eq!(m["launchAsset"]["hash"], v1_manifest["launchAsset"]["hash"]);

    // More reports of the same devices never count twice, and the halt is sticky.
    fleet_checks(s, &app, id1, id2);
    std::thread::sleep(Duration::from_millis(1_500));
    let again = health(s, &app);
    let u2 = update(&again, id2).unwrap();
    assert_eq!((u2["launched"].as_u64(), u2["failed"].as_u64()), (Some(60), Some(60)));
    assert_eq!(u2["halt"]["at"], update(&report, id2).unwrap()["halt"]["at"]);

    // The audit log has the halt, by the system actor, with the reason.
    let audit = s.api("GET", &format!("/api/audit?slug={app}"), None).json();
    let halts: Vec<&Value> =
        audit["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "auto-halt").collect();
    assert_eq!(halts.len(), 1, "{audit:#}");
    assert_eq!(halts[0]["actor"], "system:health");
    assert_eq!(halts[0]["status"], 201);
    assert_eq!(halts[0]["updateIds"][0], id2);
    assert!(halts[0]["error"].as_str().unwrap().contains("devices failed to launch it"));
}

#[test]
fn health_needs_the_read_scope_of_the_app() {
    let s = server();
    let app = unique_slug("health-auth");
    let r = http("GET", &s.url(&format!("/api/health?slug={app}")), &[], None);
    assert_eq!(r.status, 401);
    let r = s.api("GET", &format!("/api/health?slug={app}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["updates"], serde_json::json!([]));
    assert_eq!(s.api("GET", "/api/health?slug=bad%20slug", None).status, 400);
}

/// The end of the server log without the request lines.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.starts_with("[wrangler:info]")).collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn health_off_counts_nothing_and_never_halts() {
    let s = server_with(Config::HealthOff);
    let app = unique_slug("health-off");
    let v1 = ios(&s.publish(&app, "demo-app-v1", &[]));
    let v2 = ios(&s.publish(&app, "demo-app-v2", &[]));
    let (id1, id2) = (v1["id"].as_str().unwrap(), v2["id"].as_str().unwrap());
    fleet_checks(s, &app, id1, id2);
    // Longer than a launch flush (5 s) would take with HEALTH=on.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(health(s, &app)["updates"], serde_json::json!([]));
    let m = s.check(&app, "ios", RV, &[]).manifest();
    assert_eq!(m["id"], id2, "still served");
}
