//! Releases with the key kept by the publisher: signed publish, rollback to the previous
//! update (a republish), rollback to embedded, promote between channels, and delete — each
//! verified the way the client verifies it — and rollback and promote with a token that has only
//! the `rollback` scope (the server builds the body; the CLI signs it). Every test uses its own apps.

use crate::util::*;
use serde_json::Value;

const EXPECT_MAIN: &str = r#"sig, keyid="main", alg="rsa-v1_5-sha256""#;

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

/// The manifest a signing client on `channel` gets, with its signature verified.
fn signed_manifest(s: &Server, app: &str, platform: &str, channel: &str, current: Option<&str>) -> Value {
    signed_manifest_of(s, (app, platform, "1.0.3"), channel, current)
}

/// The same for any runtimeVersion.
fn signed_manifest_of(
    s: &Server,
    (app, platform, rv): (&str, &str, &str),
    channel: &str,
    current: Option<&str>,
) -> Value {
    let mut h = vec![("expo-expect-signature", EXPECT_MAIN), ("expo-channel-name", channel)];
    if let Some(c) = current {
        h.push(("expo-current-update-id", c));
    }
    let r = s.check(app, platform, rv, &h);
    let m = r.manifest();
    verify_part_signature(&r.part("manifest").unwrap(), &cert(), "main");
    m
}

#[test]
fn publisher_key_signs_publish_rollback_and_promote() {
    // No server key: every signature below comes from the CLI.
    let s = server();
    let app = unique_slug("releases");
    let app = app.as_str();
    let v1 = s.publish(app, "demo-app-v1", &["--private-key", &key(), "--message", "v1"]);
    let v2 = s.publish(app, "demo-app-v2", &["--private-key", &key(), "--message", "v2"]);
    for platform in ["ios", "android"] {
        let id2 = v2["updates"].as_array().unwrap().iter().find(|u| u["platform"] == platform).unwrap()["id"].clone();
        let m = signed_manifest(s, app, platform, "production", None);
        assert_eq!(m["id"], id2);
        assert_eq!(m["metadata"]["channel"], "production");
    }
    let ios = |v: &Value| v["updates"].as_array().unwrap().iter().find(|u| u["platform"] == "ios").unwrap().clone();
    let (v1i, v2i) = (ios(&v1), ios(&v2));

    // Rollback to previous: a republish of v1 with a new id and a later createdAt, signed.
    let rb = ok_json(s.cli(&[
        "rollback",
        "--slug",
        app,
        "--platform",
        "ios",
        "--runtime-version",
        "1.0.3",
        "--private-key",
        &key(),
        "--json",
    ]));
    let u = &rb["updates"][0];
    assert_eq!(u["republishedFrom"], v1i["id"]);
    assert_ne!(u["id"], v1i["id"]);
    assert!(u["createdAt"].as_str() > v2i["createdAt"].as_str());
    let m = signed_manifest(s, app, "ios", "production", Some(v2i["id"].as_str().unwrap()));
    assert_eq!(m["id"], u["id"]);
    assert_eq!(m["launchAsset"]["hash"], v1i["launchAsset"]["hash"], "the old files");
    download_and_verify_assets(&m);
    // A device still on v1 is offered the republish too (same files, nothing to download).
    assert_eq!(signed_manifest(s, app, "ios", "production", Some(v1i["id"].as_str().unwrap()))["id"], u["id"]);
    // Rolling back again has nowhere further back to go.
    let again = s.cli(&["rollback", "--slug", app, "--platform", "ios", "--runtime-version", "1.0.3"]);
    assert!(!again.ok && again.stderr.contains("embedded"), "{}", again.stderr);

    // --to a specific update works across channels' history.
    let to = ok_json(s.cli(&[
        "rollback",
        "--slug",
        app,
        "--platform",
        "ios",
        "--runtime-version",
        "1.0.3",
        "--to",
        v2i["id"].as_str().unwrap(),
        "--private-key",
        &key(),
        "--json",
    ]));
    assert_eq!(to["updates"][0]["republishedFrom"], v2i["id"]);
    assert_eq!(signed_manifest(s, app, "ios", "production", None)["launchAsset"]["hash"], v2i["launchAsset"]["hash"]);

    // Rollback to embedded: a directive whose commitTime is later than the running update's.
    let running = signed_manifest(s, app, "ios", "production", None);
    let rte = ok_json(s.cli(&[
        "rollback",
        "--slug",
        app,
        "--platform",
        "ios",
        "--runtime-version",
        "1.0.3",
        "--to-embedded",
        "--private-key",
        &key(),
        "--json",
    ]));
    assert_eq!(rte["updates"][0]["kind"], "rollBackToEmbedded");
    let emb = "11111111-2222-4333-8444-555555555555";
    let r = s.check(
        app,
        "ios",
        "1.0.3",
        &[
            ("expo-expect-signature", EXPECT_MAIN),
            ("expo-current-update-id", running["id"].as_str().unwrap()),
            ("expo-embedded-update-id", emb),
        ],
    );
    let d = r.directive();
    assert_eq!(d["type"], "rollBackToEmbedded");
    assert!(d["parameters"]["commitTime"].as_str().unwrap() > running["createdAt"].as_str().unwrap());
    verify_part_signature(&r.part("directive").unwrap(), &cert(), "main");
    let r = s.check(app, "ios", "1.0.3", &[("expo-current-update-id", emb), ("expo-embedded-update-id", emb)]);
    assert_eq!(r.directive()["type"], "noUpdateAvailable");
    // Publishing again after a rollback-to-embedded gets a createdAt past the commitTime.
    let v3 = s.publish(app, "demo-app-v3", &["--platform", "ios", "--private-key", &key()]);
    assert!(v3["updates"][0]["createdAt"].as_str().unwrap() > d["parameters"]["commitTime"].as_str().unwrap());
    assert_eq!(signed_manifest(s, app, "ios", "production", None)["id"], v3["updates"][0]["id"]);

    // Promote staging → production without re-uploading: signed, channel rewritten.
    let staged =
        s.publish(app, "demo-app-v2", &["--platform", "android", "--channel", "staging", "--private-key", &key()]);
    assert_eq!(staged["updates"][0]["uploadedFiles"], 0, "v2's files are already stored");
    let keys = |s: &Server, part: &str| {
        s.fingerprint(&[app])
            .into_iter()
            .filter(|k| k.contains(part))
            .map(|k| k.split(' ').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let (files_before, records_before) = (keys(s, "/files/"), keys(s, "/updates/"));
    let pr = ok_json(s.cli(&[
        "promote",
        "--slug",
        app,
        "--platform",
        "android",
        "--runtime-version",
        "1.0.3",
        "--from",
        "staging",
        "--to",
        "production",
        "--private-key",
        &key(),
        "--json",
    ]));
    assert_eq!(keys(s, "/files/"), files_before, "nothing re-uploaded");
    assert_eq!(keys(s, "/updates/").len(), records_before.len() + 1, "one new record");
    let m = signed_manifest(s, app, "android", "production", None);
    assert_eq!(m["id"], pr["updates"][0]["id"]);
    assert_eq!(m["metadata"]["channel"], "production");
    let staging = signed_manifest(s, app, "android", "staging", None);
    assert_eq!(staging["launchAsset"]["hash"], m["launchAsset"]["hash"]);
    assert_ne!(staging["id"], m["id"]);

    // History lists everything with its channel, kind and signature.
    let list = ok_json(s.cli(&["list", "--slug", app, "--json"]));
    let ios_rt = list["runtimes"].as_array().unwrap().iter().find(|r| r["platform"] == "ios").unwrap();
    let ups = ios_rt["updates"].as_array().unwrap();
    assert_eq!(ups.len(), 6, "v1, v2, two rollbacks, rollback-to-embedded, v3");
    assert!(ups.iter().all(|u| u["signed"] == true), "{ups:?}");
    assert_eq!(ups.iter().filter(|u| u["kind"] == "rollBackToEmbedded").count(), 1);
    assert_eq!(ups.iter().find(|u| u["id"] == v1i["id"]).unwrap()["message"], "v1");
}

#[test]
fn delete_current_with_the_key_keeps_the_channel_signed() {
    let s = server();
    let app = unique_slug("delete-signed");
    let app = app.as_str();
    let v1 = s.publish(app, "demo-app-v1", &["--platform", "ios", "--private-key", &key()]);
    let v2 = s.publish(app, "demo-app-v2", &["--platform", "ios", "--private-key", &key()]);
    let (id1, id2) = (v1["updates"][0]["id"].as_str().unwrap(), v2["updates"][0]["id"].as_str().unwrap());
    let out = ok_json(s.cli(&[
        "delete",
        "--slug",
        app,
        "--platform",
        "ios",
        "--runtime-version",
        "1.0.3",
        "--update-id",
        id2,
        "--private-key",
        &key(),
        "--json",
    ]));
    assert_eq!(out["deleted"], id2);
    assert_eq!(out["promoted"]["republishedFrom"], id1);
    let m = signed_manifest(s, app, "ios", "production", Some(id2));
    assert_eq!(m["launchAsset"]["hash"], v1["updates"][0]["launchAsset"]["hash"]);
    download_and_verify_assets(&m);
    assert_eq!(out["promoted"]["signed"], true);
    assert_eq!(out["promoted"]["id"], m["id"]);
    // Files are collected later (after a grace period), never inline.
    assert_eq!(out["deletedFiles"], 0);
}

/// `publish-cli` with a token other than the ADMIN_TOKEN.
fn cli_as(s: &Server, token: &str, args: &[&str]) -> CliOutput {
    let mut full: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    full.extend(["--server".into(), s.base.clone(), "--auth-token".into(), token.to_string()]);
    run_cli(&full)
}

#[test]
fn rollback_only_token_rolls_back_and_promotes_through_the_worker() {
    let s = server();
    let (demo, utility) = (unique_slug("rollback-only"), unique_slug("promote-only"));
    let (demo, utility) = (demo.as_str(), utility.as_str());
    let v1 = s.publish(demo, "demo-app-v1", &["--private-key", &key()]);
    let v2 = s.publish(demo, "demo-app-v2", &["--private-key", &key()]);
    s.publish(utility, "utility-app-v1", &["--channel", "staging", "--private-key", &key()]);
    let minted = ok_json(s.cli(&[
        "token",
        "create",
        "--name",
        &format!("ci-rollback-{demo}"),
        "--slug",
        demo,
        "--slug",
        utility,
        "--scope",
        "rollback",
        "--json",
    ]));
    let token = minted["token"].as_str().unwrap().to_string();
    let id_of = |v: &Value, platform: &str| {
        v["updates"].as_array().unwrap().iter().find(|u| u["platform"] == platform).unwrap()["id"].clone()
    };

    // The token can neither read the history nor publish.
    let list = cli_as(s, &token, &["list", "--slug", demo]);
    assert!(!list.ok && list.stderr.contains("403"), "{}", list.stderr);
    let dir = fixture("demo-app-v3");
    let publish = cli_as(s, &token, &["publish", "--slug", demo, "--export-dir", dir.to_str().unwrap()]);
    assert!(!publish.ok && publish.stderr.contains("403"), "{}", publish.stderr);

    // A stale expectedCurrent is refused with 409, and a prepareOnly call writes nothing.
    let before = s.fingerprint(&[demo]);
    let auth = format!("Bearer {token}");
    let post = |path: &str, body: Value| {
        let b = body.to_string();
        http(
            "POST",
            &s.url(path),
            &[("authorization", auth.as_str()), ("content-type", "application/json")],
            Some(b.as_bytes()),
        )
    };
    let rollback_path = &format!("/api/updates/{demo}/ios/1.0.3/rollback");
    let stale = post(rollback_path, serde_json::json!({"expectedCurrent": id_of(&v1, "ios")}));
    assert!(stale.assert_error(409).contains("something was published since you looked"));
    let prepared = post(rollback_path, serde_json::json!({"prepareOnly": true, "expectedCurrent": id_of(&v2, "ios")}));
    assert_eq!(prepared.status, 200, "{}", prepared.text());
    assert_eq!(prepared.json()["republishedFrom"], id_of(&v1, "ios"));
    assert_eq!(s.fingerprint(&[demo]), before, "nothing written");

    // Without --platform or `read`, the CLI rolls back both platforms, signed with its key.
    let rb = cli_as(
        s,
        &token,
        &["rollback", "--slug", demo, "--runtime-version", "1.0.3", "--private-key", &key(), "--json"],
    );
    let rb = ok_json(rb);
    let moved = rb["updates"].as_array().unwrap();
    assert_eq!(moved.len(), 2);
    for u in moved {
        let platform = u["platform"].as_str().unwrap();
        assert_eq!(u["republishedFrom"], id_of(&v1, platform));
        assert_eq!(u["signed"], true);
        let m = signed_manifest(s, demo, platform, "production", Some(id_of(&v2, platform).as_str().unwrap()));
        assert_eq!(m["id"], u["id"]);
        download_and_verify_assets(&m);
    }

    // Promote: utility-app has no iOS build, so iOS is skipped (a warning) and Android moves.
    let pr = cli_as(
        s,
        &token,
        &[
            "promote",
            "--slug",
            utility,
            "--runtime-version",
            "2.0.0",
            "--from",
            "staging",
            "--to",
            "production",
            "--private-key",
            &key(),
            "--json",
        ],
    );
    assert!(pr.stderr.contains(&format!("skipped promote {utility}/ios/2.0.0: HTTP 404")), "{}", pr.stderr);
    let pr = ok_json(pr);
    assert_eq!(pr["updates"].as_array().unwrap().len(), 1);
    let app = (utility, "android", "2.0.0");
    let m = signed_manifest_of(s, app, "production", None);
    assert_eq!((&m["id"], &m["metadata"]["channel"]), (&pr["updates"][0]["id"], &Value::from("production")));
    let staging = signed_manifest_of(s, app, "staging", None);
    assert_eq!(pr["updates"][0]["republishedFrom"], staging["id"]);

    // The audit log names the token for every install.
    let log = ok_json(s.cli(&["audit", "--limit", "1000", "--json"]));
    let installs: Vec<(&str, &str)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actorName"] == format!("ci-rollback-{demo}").as_str() && e["status"] == 201)
        .map(|e| (e["action"].as_str().unwrap(), e["platform"].as_str().unwrap()))
        .collect();
    assert_eq!(installs, [("promote", "android"), ("rollback", "android"), ("rollback", "ios")], "newest first");
}
