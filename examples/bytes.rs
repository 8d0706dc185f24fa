//! Bytes the server sends one device for a whole update (a benchmark that prints figures, not a
//! test): a device on demo-app v1 updating to v2, and to v3, counted as manifest, launch asset
//! and the assets it does not have yet, in three ways — plain (identity bytes, no patch), with
//! precompressed variants (`Accept-Encoding: br, gzip`), and with bsdiff patches on top — next
//! to the size of the whole export (a fresh install of that update). The requests are the ones
//! expo-updates makes; bytes are the response bodies as sent.
//!
//! Run with `cargo run --release --example bytes` (part of `npm run bench`).

#[path = "../tests/e2e/util.rs"]
mod util;

use serde_json::Value;
use std::collections::BTreeSet;
use util::*;

const RV: &str = "1.0.3";

fn id_of(v: &Value, platform: &str) -> String {
    let u = v["updates"].as_array().unwrap().iter().find(|u| u["platform"] == platform).expect("platform");
    u["id"].as_str().unwrap().to_string()
}

/// What one device on `from` downloads to install the update the channel serves now.
struct Sent {
    manifest: u64,
    launch: u64,
    assets: u64,
}

impl Sent {
    fn total(&self) -> u64 {
        self.manifest + self.launch + self.assets
    }
}

fn device_update(
    s: &Server,
    app: &str,
    platform: &str,
    from: &str,
    from_manifest: &Value,
    compress: bool,
    patch: bool,
) -> (Sent, u64) {
    let check = s.check(app, platform, RV, &[("expo-current-update-id", from)]);
    let m = check.manifest();
    let to = m["id"].as_str().unwrap().to_string();
    let have: BTreeSet<&str> = std::iter::once(&from_manifest["launchAsset"])
        .chain(from_manifest["assets"].as_array().unwrap())
        .filter_map(|a| a["hash"].as_str())
        .collect();
    let mut headers: Vec<(&str, &str)> =
        vec![("expo-platform", platform), ("expo-current-update-id", from), ("expo-requested-update-id", &to)];
    if compress {
        headers.push(("accept-encoding", "br, gzip"));
    }
    let get = |url: &str, extra: &[(&str, &str)]| {
        let mut h = headers.clone();
        h.extend_from_slice(extra);
        let r = http("GET", url, &h, None);
        assert_eq!(r.status, 200, "{url}");
        r.body.len() as u64
    };
    let launch_url = m["launchAsset"]["url"].as_str().unwrap();
    let launch = get(launch_url, if patch { &[("a-im", "bsdiff")] } else { &[] });
    let assets = m["assets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !have.contains(a["hash"].as_str().unwrap()))
        .map(|a| get(a["url"].as_str().unwrap(), &[]))
        .sum();
    // A fresh install of the same update: every file, identity bytes.
    let export: u64 = std::iter::once(&m["launchAsset"])
        .chain(m["assets"].as_array().unwrap())
        .map(|a| http("GET", a["url"].as_str().unwrap(), &[], None).body.len() as u64)
        .sum();
    (Sent { manifest: check.body.len() as u64, launch, assets }, export)
}

fn main() {
    let s = server();
    let app = unique_slug("bench-bytes");
    let app = app.as_str();
    let v1 = s.publish(app, "demo-app-v1", &[]);
    let manifests: Vec<(String, Value)> = ["ios", "android"]
        .iter()
        .map(|p| {
            let id = id_of(&v1, p);
            let r = s.api("GET", &format!("/api/updates/{app}/{p}/{RV}/{id}"), None);
            (id, serde_json::from_str(r.json()["body"].as_str().unwrap()).unwrap())
        })
        .collect();
    println!("bytes sent to one device for a whole update (manifest + launch asset + new assets)");
    println!(
        "{:<8} {:<9} {:>12} {:>12} {:>12} {:>12}",
        "platform", "update", "full export", "plain", "br/gzip", "+ patches"
    );
    for to in ["demo-app-v2", "demo-app-v3"] {
        s.publish(app, to, &[]);
        for (platform, (from, from_m)) in ["ios", "android"].iter().zip(&manifests) {
            let (plain, export) = device_update(s, app, platform, from, from_m, false, false);
            let (compressed, _) = device_update(s, app, platform, from, from_m, true, false);
            let (patched, _) = device_update(s, app, platform, from, from_m, true, true);
            println!(
                "{platform:<8} v1 -> {:<3} {export:>12} {:>12} {:>12} {:>12}   (launch asset {} / {} / {}; manifest {})",
                &to[to.len() - 2..],
                plain.total(),
                compressed.total(),
                patched.total(),
                plain.launch,
                compressed.launch,
                patched.launch,
                plain.manifest
            );
        }
    }
}
