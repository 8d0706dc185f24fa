//! bsdiff patches and precompressed assets, as a device sees them: the real CLI publishes the
//! demo app's three successive exports, then requests are made with the headers expo-updates
//! SDK 55 and 56 send for a launch asset (expo-patches-rollouts-health.md §A.2). A patch must
//! rebuild (with a BSDIFF40 reader) a file whose SHA-256 is the manifest's hash; everything else
//! must be the full file, 200, never an error.

use crate::util::*;
use expo_ota::protocol::hash;
use serde_json::Value;
use std::io::Read;

const RV: &str = "1.0.3";

fn update<'a>(out: &'a Value, platform: &str) -> &'a Value {
    out["updates"].as_array().unwrap().iter().find(|u| u["platform"] == platform).unwrap()
}

fn id(out: &Value, platform: &str) -> String {
    update(out, platform)["id"].as_str().unwrap().to_string()
}

/// The stored manifest of an update (read scope).
fn manifest(s: &Server, app: &str, platform: &str, id: &str) -> Value {
    let r = s.api("GET", &format!("/api/updates/{app}/{platform}/{RV}/{id}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_str(r.json()["body"].as_str().unwrap()).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    hash::Digests::of(bytes).sha256_base64url()
}

/// A launch-asset request as expo-updates sends it; `sdk56` adds Expo-Runtime-Version.
fn launch_request(url: &str, platform: &str, current: &str, requested: &str, a_im: bool, sdk56: bool) -> Reply {
    let mut h = vec![
        ("expo-platform", platform),
        ("expo-protocol-version", "1"),
        ("expo-api-version", "1"),
        ("expo-current-update-id", current),
        ("expo-embedded-update-id", "0f8d2a8e-0000-4000-8000-0000000000ee"),
        ("expo-requested-update-id", requested),
        ("accept", "*/*"),
    ];
    if a_im {
        h.push(("a-im", "bsdiff"));
    }
    if sdk56 {
        h.push(("expo-runtime-version", RV));
    }
    http("GET", url, &h, None)
}

fn assert_full(r: &Reply, m: &Value, why: &str) {
    assert_eq!(r.status, 200, "{why}: {}", r.text());
    assert_eq!(r.header("im"), None, "{why}: not a patch");
    assert_eq!(b64(&r.body), m["launchAsset"]["hash"].as_str().unwrap(), "{why}: full bytes");
    assert_vary(r, why);
}

fn assert_vary(r: &Reply, why: &str) {
    let vary = r.header("vary").unwrap_or_default().to_ascii_lowercase();
    for h in ["a-im", "expo-current-update-id", "expo-embedded-update-id", "accept-encoding"] {
        assert!(vary.contains(h), "{why}: Vary {vary:?} lacks {h}");
    }
}

fn bspatch(base: &[u8], patch: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    qbsdiff::Bspatch::new(patch).unwrap().apply(base, std::io::Cursor::new(&mut out)).unwrap();
    out
}

#[test]
fn patch_v1_to_v2_rebuilds_the_manifest_hash_and_every_other_request_gets_full_bytes() {
    let s = server();
    let app = unique_slug("patches");
    let app = app.as_str();
    let v1 = s.publish(app, "demo-app-v1", &[]);
    let v2 = s.publish(app, "demo-app-v2", &[]);
    let v3 = s.publish(app, "demo-app-v3", &[]);
    for platform in ["android", "ios"] {
        let (id1, id2, id3) = (id(&v1, platform), id(&v2, platform), id(&v3, platform));
        // The CLI made, proved and uploaded v1 → v2, then v2 → v3 and v1 → v3.
        let p2 = update(&v2, platform)["patches"].as_array().cloned().unwrap_or_default();
        assert_eq!(p2.len(), 1, "{platform}: {p2:?}");
        assert_eq!((p2[0]["baseUpdateId"].as_str(), p2[0]["kept"].as_bool()), (Some(id1.as_str()), Some(true)));
        assert_eq!(p2[0]["uploaded"], true);
        assert!(p2[0]["bytes"].as_u64().unwrap() * 10 <= p2[0]["gzipBytes"].as_u64().unwrap() * 3);
        let p3 = update(&v3, platform)["patches"].as_array().cloned().unwrap_or_default();
        assert_eq!(p3.iter().map(|p| p["baseUpdateId"].as_str().unwrap()).collect::<Vec<_>>(), [&id2, &id1]);

        let (m1, m2) = (manifest(s, app, platform, &id1), manifest(s, app, platform, &id2));
        let url2 = m2["launchAsset"]["url"].as_str().unwrap();
        let v1_bundle = http("GET", m1["launchAsset"]["url"].as_str().unwrap(), &[], None).body;
        assert_eq!(b64(&v1_bundle), m1["launchAsset"]["hash"].as_str().unwrap());

        for sdk56 in [false, true] {
            let shape = if sdk56 { "sdk56" } else { "sdk55" };
            let r = launch_request(url2, platform, &id1, &id2, true, sdk56);
            assert_eq!(r.status, 200, "{platform} {shape}: {}", r.text());
            assert_eq!(r.header("im"), Some("bsdiff"), "{platform} {shape}");
            assert_eq!(r.header("expo-base-update-id"), Some(id1.as_str()));
            assert_eq!(r.header("cache-control"), Some("no-store"));
            assert_vary(&r, shape);
            assert_eq!(&r.body[..8], b"BSDIFF40");
            assert!(r.body.len() < v1_bundle.len() / 10, "{} bytes", r.body.len());
            let rebuilt = bspatch(&v1_bundle, &r.body);
            assert_eq!(b64(&rebuilt), m2["launchAsset"]["hash"].as_str().unwrap(), "{platform} {shape}: rebuilt hash");
        }
        // An iOS client sends its ids as it likes; the base header is always lowercase.
        let r = launch_request(url2, platform, &id1.to_uppercase(), &id2, true, false);
        assert_eq!(r.header("expo-base-update-id"), Some(id1.as_str()));

        let unknown = "0f8d2a8e-0000-4000-8000-0000000000aa";
        for (why, current, a_im) in [
            ("no A-IM", id1.as_str(), false),
            ("unknown base", unknown, true),
            ("base = embedded, none uploaded", "0f8d2a8e-0000-4000-8000-0000000000ee", true),
            ("base = requested", id2.as_str(), true),
            ("not a UUID", "../../x", true),
        ] {
            for sdk56 in [false, true] {
                assert_full(&launch_request(url2, platform, current, &id2, a_im, sdk56), &m2, why);
            }
        }
        // Another runtime's client cannot use a patch made here.
        let r = http(
            "GET",
            url2,
            &[("a-im", "bsdiff"), ("expo-current-update-id", &id1), ("expo-runtime-version", "9.9.9")],
            None,
        );
        assert_full(&r, &m2, "other runtime");
        // No patch is stored backwards (v3 → v2): full bytes, never an error.
        assert_full(&launch_request(url2, platform, &id3, &id2, true, true), &m2, "missing patch");
    }
}

#[test]
fn publish_again_reuses_stored_patches_and_no_patches_or_dry_run_uploads_none() {
    let s = server();
    let app = unique_slug("patch-reuse");
    let app = app.as_str();
    s.publish(app, "demo-app-v1", &["--platform", "android"]);
    // A dry run reports the patch it would make and uploads nothing.
    let dry = s.publish(app, "demo-app-v2", &["--platform", "android", "--dry-run"]);
    let p = &update(&dry, "android")["patches"][0];
    assert_eq!((p["kept"].as_bool(), p["uploaded"].as_bool()), (Some(true), Some(false)));
    assert!(p["bytes"].as_u64().unwrap() > 0);
    assert!(!s.objects().iter().any(|o| o.key.starts_with(&format!("{app}/")) && o.key.contains("/patches/")));

    let v2 = s.publish(app, "demo-app-v2", &["--platform", "android"]);
    assert_eq!(update(&v2, "android")["patches"][0]["uploaded"], true);
    // The same bundle again under a new id: its own bundle is no base, v1's patch is reused.
    let again = s.publish(app, "demo-app-v2", &["--platform", "android"]);
    let p = update(&again, "android")["patches"].as_array().unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!((p[0]["kept"].as_bool(), p[0]["uploaded"].as_bool()), (Some(true), Some(false)));

    let off = s.publish(app, "demo-app-v3", &["--platform", "android", "--no-patches"]);
    assert!(update(&off, "android").get("patches").is_none());
    let patches =
        s.objects().into_iter().filter(|o| o.key.starts_with(&format!("{app}/android/{RV}/patches/"))).count();
    assert_eq!(patches, 1, "only v1 → v2");
}

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "br" => brotli::Decompressor::new(body, 4096).read_to_end(&mut out).unwrap(),
        "gzip" => flate2::read::GzDecoder::new(body).read_to_end(&mut out).unwrap(),
        other => panic!("unexpected content-encoding {other}"),
    };
    out
}

#[test]
fn compressed_and_identity_launch_assets_decode_to_the_manifest_hash() {
    let s = server();
    let app = unique_slug("precompressed");
    let app = app.as_str();
    let v1 = s.publish(app, "demo-app-v1", &["--platform", "android"]);
    let m = manifest(s, app, "android", &id(&v1, "android"));
    let (url, want) = (m["launchAsset"]["url"].as_str().unwrap(), m["launchAsset"]["hash"].as_str().unwrap());
    let identity = http("GET", url, &[], None);
    assert_eq!(identity.header("content-encoding"), None);
    for (accept, encoding) in [
        ("br,gzip", Some("br")),
        ("zstd, br, gzip", Some("br")),
        ("gzip, deflate", Some("gzip")),
        ("br;q=0, gzip", Some("gzip")),
        ("br;q=0.4, gzip;q=0.8", Some("gzip")),
        ("identity", None),
        ("br;q=0, gzip;q=0", None),
    ] {
        let r = http("GET", url, &[("accept-encoding", accept)], None);
        assert_eq!(r.status, 200, "{accept}");
        assert_eq!(r.header("content-encoding"), encoding, "{accept}");
        assert_vary(&r, accept);
        assert_eq!(r.header("content-type"), Some("application/javascript"), "{accept}: the file's type");
        let decoded = match encoding {
            Some(e) => {
                assert!(r.body.len() < identity.body.len() / 2, "{accept}: {} bytes", r.body.len());
                decode(e, &r.body)
            }
            None => r.body.clone(),
        };
        assert_eq!(b64(&decoded), want, "{accept}");
    }
    // Images have no variants: identity whatever the client accepts.
    let png = m["assets"].as_array().unwrap().iter().find(|a| a["fileExtension"] == ".png").unwrap();
    let r = http("GET", png["url"].as_str().unwrap(), &[("accept-encoding", "br, gzip")], None);
    assert_eq!((r.status, r.header("content-encoding")), (200, None));
    assert_eq!(b64(&r.body), png["hash"].as_str().unwrap());
}
