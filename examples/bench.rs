//! Prints the foundation's performance figures (a benchmark, not a test):
//! manifest checks/s and p50/p99 latency against a local `wrangler dev`, bytes uploaded for
//! demo-app v1 → v2, worker wasm size, and the CLI's hashing throughput.
//!
//! Run with `npm run bench` (or `cargo run --release --example bench`).

#[path = "../tests/e2e/util.rs"]
mod util;

use std::time::{Duration, Instant};
use util::*;

fn main() {
    let s = server();

    // Upload volume: v2 changes only JavaScript, so only the two bundles should travel.
    let v1 = s.publish("demo-app", "demo-app-v1", &[]);
    let v2 = s.publish("demo-app", "demo-app-v2", &[]);
    let sum = |v: &serde_json::Value, f: &str| {
        v["updates"].as_array().unwrap().iter().map(|u| u[f].as_u64().unwrap()).sum::<u64>()
    };
    let bundles: u64 =
        v2["updates"].as_array().unwrap().iter().map(|u| u["launchAsset"]["bytes"].as_u64().unwrap()).sum();
    println!("upload  v1: {} bytes in {} files", sum(&v1, "uploadedBytes"), sum(&v1, "uploadedFiles"));
    println!(
        "upload  v1 -> v2: {} bytes in {} files; the two new bundles are {} bytes; ratio {:.3} (target <= 1.05)",
        sum(&v2, "uploadedBytes"),
        sum(&v2, "uploadedFiles"),
        bundles,
        sum(&v2, "uploadedBytes") as f64 / bundles as f64
    );

    let url = s.url("/api/manifest?slug=demo-app");
    let health = s.url("/health");
    let probe = |agent: &ureq::Agent, _i: usize| {
        let t = Instant::now();
        let r = agent.get(&health).call().expect("health");
        std::io::Read::read_to_end(&mut r.into_reader(), &mut Vec::new()).unwrap();
        t.elapsed()
    };
    let check = |agent: &ureq::Agent, i: usize| {
        let platform = if i % 2 == 0 { "ios" } else { "android" };
        let t = Instant::now();
        let r = agent
            .get(&url)
            .set("expo-platform", platform)
            .set("expo-runtime-version", "1.0.3")
            .set("expo-protocol-version", "1")
            .call()
            .expect("check");
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
        assert!(body.len() > 1000, "a manifest was served");
        t.elapsed()
    };
    // Warm up the isolate and connections.
    let agent = ureq::agent();
    for i in 0..50 {
        check(&agent, i);
    }

    // Fixed rate: 200 requests/s for 10 s from 8 connections, each request on its schedule.
    // /health first: the floor of the local stack (wrangler's proxy + workerd), no R2 involved.
    let (rate, secs, conns) = (200usize, 10usize, 8usize);
    let fixed_rate = |f: &(dyn Fn(&ureq::Agent, usize) -> Duration + Sync)| {
        let start = Instant::now() + Duration::from_millis(100);
        let lat = run_threads(conns, |c| {
            let agent = ureq::agent();
            let mut out = Vec::new();
            for k in (c..rate * secs).step_by(conns) {
                let due = start + Duration::from_secs_f64(k as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                out.push(f(&agent, k));
            }
            out
        });
        (lat, start.elapsed())
    };
    let (lat, wall) = fixed_rate(&probe);
    report(&format!("/health at {rate}/s for {secs}s, {conns} connections (stack floor)"), lat, wall);
    let (lat, wall) = fixed_rate(&check);
    report(&format!("checks at {rate}/s for {secs}s, {conns} connections (target p99 < 5 ms)"), lat, wall);

    // Closed loop: as fast as 16 connections go, for 5 s.
    let conns = 16;
    let t0 = Instant::now();
    let lat = run_threads(conns, |c| {
        let agent = ureq::agent();
        let mut out = Vec::new();
        let mut i = c;
        while t0.elapsed() < Duration::from_secs(5) {
            out.push(check(&agent, i));
            i += conns;
        }
        out
    });
    report(&format!("checks closed loop, {conns} connections"), lat, t0.elapsed());

    // Worker size.
    let wasm = std::fs::read(root().join("build/index_bg.wasm")).expect("built wasm");
    let gz = gzip_len(&wasm);
    println!(
        "wasm    {} bytes raw, {} bytes gzipped ({:.0} KiB; target <= 400 KB)",
        wasm.len(),
        gz,
        gz as f64 / 1024.0
    );

    // CLI hashing throughput (the same FileHasher the CLI streams files through).
    let data: Vec<u8> = (0..64 << 20).map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let t = Instant::now();
    let mut rounds = 0;
    while t.elapsed() < Duration::from_secs(2) {
        let mut h = expo_ota::protocol::hash::FileHasher::new();
        for chunk in data.chunks(64 << 10) {
            h.update(chunk);
        }
        std::hint::black_box(h.finish());
        rounds += 1;
    }
    let mb = (rounds * data.len()) as f64 / 1e6;
    println!("hashing {:.0} MB/s (SHA-256 + MD5 together, 64 KiB chunks)", mb / t.elapsed().as_secs_f64());
}

fn run_threads(n: usize, f: impl Fn(usize) -> Vec<Duration> + Sync) -> Vec<Duration> {
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..n)
            .map(|c| {
                sc.spawn({
                    let f = &f;
                    move || f(c)
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

fn report(label: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "{label}: {} requests, {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        lat.len() as f64 / wall.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        lat.last().unwrap().as_secs_f64() * 1000.0
    );
}

fn gzip_len(bytes: &[u8]) -> usize {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-9c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out.stdout.len()
}
