//! Code signing with the key on the server, "no update" and rollback-to-embedded directives,
//! channels with manifest filters, delete-promotes-previous and protocol v0 — verified the
//! way the client verifies them. Every test uses its own apps.

use crate::util::*;
use serde_json::{json, Value};

const EXPECT_MAIN: &str = r#"sig, keyid="main", alg="rsa-v1_5-sha256""#;

fn cert() -> String {
    // The backdated certificate (2020-2040) has the same key, so the test does not depend on
    // the machine's clock being after the fixture was made.
    codesigning("certs/certificate-backdated-2020-2040.pem")
}

/// A server holding the test key signs the "no update" directive and every update published
/// unsigned, over the exact part bytes, echoing the client's keyid.
fn server_key_signs_manifests_and_directives(s: &Server) {
    let app = unique_slug("server-key");
    let app = app.as_str();
    // No update yet: a signed noUpdateAvailable directive, keyid echoed.
    let r = s.check(app, "ios", "1.0.3", &[("expo-expect-signature", EXPECT_MAIN)]);
    assert_eq!(r.directive()["type"], "noUpdateAvailable");
    verify_part_signature(&r.part("directive").unwrap(), &cert(), "main");
    let r = s.check(app, "ios", "1.0.3", &[("expo-expect-signature", "sig")]);
    verify_part_signature(&r.part("directive").unwrap(), &cert(), "root");

    // An update published unsigned (the CLI without --private-key; the form route is over
    // MAX_FORM_BYTES on the small-limits server) is signed by the server over the exact bytes.
    s.publish(app, "demo-app-v1", &[]);
    let r = s.check(app, "ios", "1.0.3", &[("expo-expect-signature", EXPECT_MAIN)]);
    let m = r.manifest();
    verify_part_signature(&r.part("manifest").unwrap(), &cert(), "main");
    assert!(r.part("extensions").unwrap().header("expo-signature").is_none());
    // Signing does not change the bytes: the same body is served to unsigned clients.
    let plain = s.check(app, "ios", "1.0.3", &[]);
    assert_eq!(plain.part("manifest").unwrap().body, r.part("manifest").unwrap().body);
    assert!(plain.part("manifest").unwrap().header("expo-signature").is_none());
    // The running update gets a signed directive.
    let r = s.check(
        app,
        "ios",
        "1.0.3",
        &[("expo-expect-signature", EXPECT_MAIN), ("expo-current-update-id", m["id"].as_str().unwrap())],
    );
    assert_eq!(r.directive()["type"], "noUpdateAvailable");
    verify_part_signature(&r.part("directive").unwrap(), &cert(), "main");
}

#[test]
fn server_key_pkcs1_signs_manifests_and_directives() {
    server_key_signs_manifests_and_directives(server_with(Config::ServerKey));
}

#[test]
fn server_key_pkcs8_signs_manifests_and_directives() {
    // The same key as PKCS#8 (`BEGIN PRIVATE KEY`) is held by the small-limits server.
    server_key_signs_manifests_and_directives(server_with(Config::SmallLimits));
}

#[test]
fn server_without_key_answers_204_for_no_update_and_406_for_unsigned() {
    let s = server();
    let app = unique_slug("no-server-key");
    let app = app.as_str();
    // "No update" has nothing to sign: 204 with expo-protocol-version 1.
    let r = s.check(app, "ios", "1.0.3", &[("expo-expect-signature", EXPECT_MAIN)]);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("expo-protocol-version"), Some("1"));
    assert!(r.body.is_empty());
    // An unsigned update is never served to a client that demands a signature.
    assert_eq!(s.post_form(app, &export_fields("demo-app-v1"), &[]).status, 201);
    let e = s.check(app, "ios", "1.0.3", &[("expo-expect-signature", EXPECT_MAIN)]).assert_error(406);
    assert!(e.contains("not signed"), "{e}");
    // Clients that do not verify still get it; malformed expectations are 400.
    s.check(app, "ios", "1.0.3", &[]).manifest();
    s.check(app, "ios", "1.0.3", &[("expo-expect-signature", "sig, alg=\"rsa-pss\"")]).assert_error(400);
}

#[test]
fn delete_current_promotes_previous_and_rollback_to_embedded_is_signed() {
    let s = server_with(Config::ServerKey);
    let app = unique_slug("rollback-embedded");
    let app = app.as_str();
    let v1 = s.post_form(app, &export_fields("demo-app-v1"), &[]).json();
    let v2 = s.post_form(app, &export_fields("demo-app-v2"), &[]).json();
    let (id1, id2) =
        (v1["updates"][0]["id"].as_str().unwrap().to_string(), v2["updates"][0]["id"].as_str().unwrap().to_string());
    assert_eq!(v2["updates"][0]["platform"], "ios");

    // Delete the current update: the previous one is republished (new id, later createdAt, v1's files).
    let d = s.api("DELETE", &format!("/api/updates/{app}/ios/1.0.3/{id2}"), None);
    assert_eq!(d.status, 200, "{}", d.text());
    let d = d.json();
    assert_eq!(d["deleted"], id2.as_str());
    assert_eq!(d["deletedFiles"], 0, "files are collected later, never inline");
    let promoted = d["promoted"]["id"].as_str().unwrap().to_string();
    assert_ne!(promoted, id1);
    let m = s.check(app, "ios", "1.0.3", &[("expo-current-update-id", &id2)]).manifest();
    assert_eq!(m["id"], promoted.as_str());
    assert!(m["createdAt"].as_str().unwrap() > v2["updates"][0]["createdAt"].as_str().unwrap());
    let v1m: Value = serde_json::from_str(
        s.api("GET", &format!("/api/updates/{app}/ios/1.0.3/{id1}"), None).json()["body"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(m["launchAsset"]["hash"], v1m["launchAsset"]["hash"]);
    download_and_verify_assets(&m);
    let list = s.api("GET", &format!("/api/updates?slug={app}"), None).json();
    let ios = list["runtimes"].as_array().unwrap().iter().find(|r| r["platform"] == "ios").unwrap();
    assert_eq!(ios["updates"][0]["republishedFrom"], id1.as_str());
    assert_eq!(ios["updates"][0]["current"], true);

    // Roll back to embedded through the commit API; commitTime later than anything published.
    let commit_ms = expo_ota::protocol::time::parse_millis(m["createdAt"].as_str().unwrap()).unwrap() + 1000;
    let directive = expo_ota::protocol::manifest::Directive::roll_back_to_embedded(commit_ms).render();
    let r = s.api("POST", &format!("/api/publish/{app}/ios/1.0.3/commit"), Some(&json!({"directive": directive})));
    assert_eq!(r.status, 201, "{}", r.text());
    let emb = "11111111-2222-4333-8444-555555555555";
    let r = s.check(
        app,
        "ios",
        "1.0.3",
        &[
            ("expo-current-update-id", &promoted),
            ("expo-embedded-update-id", emb),
            ("expo-expect-signature", EXPECT_MAIN),
        ],
    );
    let d = r.directive();
    assert_eq!(d["type"], "rollBackToEmbedded");
    let commit_time = d["parameters"]["commitTime"].as_str().unwrap();
    assert!(expo_ota::protocol::time::parse_millis(commit_time).is_some());
    assert!(commit_time > m["createdAt"].as_str().unwrap(), "commitTime must be after the running update's");
    verify_part_signature(&r.part("directive").unwrap(), &cert(), "main");
    // A device already on its embedded update gets noUpdateAvailable.
    let r = s.check(app, "ios", "1.0.3", &[("expo-current-update-id", emb), ("expo-embedded-update-id", emb)]);
    assert_eq!(r.directive()["type"], "noUpdateAvailable");
    // An older commitTime is refused: it would not take effect on devices.
    let stale = expo_ota::protocol::manifest::Directive::roll_back_to_embedded(commit_ms - 5000).render();
    s.api("POST", &format!("/api/publish/{app}/ios/1.0.3/commit"), Some(&json!({"directive": stale})))
        .assert_error(409);
    // v0 clients cannot receive directives.
    let v0 = http(
        "GET",
        &s.url(&format!("/api/manifest?slug={app}")),
        &[("expo-platform", "ios"), ("expo-runtime-version", "1.0.3")],
        None,
    );
    v0.assert_error(404);

    // Android was never touched.
    s.check(app, "android", "1.0.3", &[]).manifest();
}

#[test]
fn channels_serve_their_own_updates_with_matching_manifest_filters() {
    let s = server();
    let app = unique_slug("channels");
    let app = app.as_str();
    let mut staging = export_fields("demo-app-v2");
    staging.push(("channel".into(), b"staging".to_vec()));
    assert_eq!(s.post_form(app, &export_fields("demo-app-v1"), &[]).status, 201);
    assert_eq!(s.post_form(app, &staging, &[]).status, 201);

    let prod = s.check(app, "ios", "1.0.3", &[]);
    let stag = s.check(app, "ios", "1.0.3", &[("expo-channel-name", "staging")]);
    let (pm, sm) = (prod.manifest(), stag.manifest());
    assert_ne!(pm["id"], sm["id"]);
    assert_eq!(pm["metadata"]["channel"], "production");
    assert_eq!(sm["metadata"]["channel"], "staging");
    // Each response's filters match its own manifest (the client checks) and reject the other
    // channel's updates already on the device.
    for (r, m, other) in [(&prod, &pm, &sm), (&stag, &sm, &pm)] {
        let filters = expo_ota::protocol::sfv::parse_dictionary(r.header("expo-manifest-filters").unwrap()).unwrap();
        assert_eq!(filters.len(), 1);
        let (k, v) = &filters[0];
        assert_eq!(k, "channel");
        assert_eq!(v.as_str(), m["metadata"]["channel"].as_str());
        assert_ne!(v.as_str(), other["metadata"]["channel"].as_str());
    }
    // An empty channel has nothing, and says so with its own filter.
    let beta = s.check(app, "ios", "1.0.3", &[("expo-channel-name", "beta")]);
    assert_eq!(beta.directive()["type"], "noUpdateAvailable");
    assert_eq!(beta.header("expo-manifest-filters"), Some("channel=\"beta\""));
    s.check(app, "ios", "1.0.3", &[("expo-channel-name", "../production")]).assert_error(400);
    // History lists both channels.
    let list = s.api("GET", &format!("/api/updates?slug={app}"), None).json();
    let ios = list["runtimes"].as_array().unwrap().iter().find(|r| r["platform"] == "ios").unwrap();
    let channels: Vec<&str> =
        ios["updates"].as_array().unwrap().iter().map(|u| u["channel"].as_str().unwrap()).collect();
    assert_eq!(channels, vec!["staging", "production"]);
    assert!(ios["updates"].as_array().unwrap().iter().all(|u| u["current"] == true && u["signed"] == false));
}
