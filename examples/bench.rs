//! Prints the foundation's performance figures (a benchmark, not a test):
//! bytes uploaded for demo-app v1 → v2; manifest check latency at a fixed rate; checks/s at 8
//! connections as a ratio to a hello-world Worker (`bench/floor`) served by the same wrangler in
//! the same run, so the ratios say what the Worker costs rather than how fast this machine is;
//! worker wasm size; and the CLI's hashing throughput.
//!
//! Run with `npm run bench` (or `cargo run --release --example bench`). `LOG_CHECKS=all npm run
//! bench` measures with a log line per check (the Worker var of the same name).

#[path = "../tests/e2e/util.rs"]
mod util;

use std::time::{Duration, Instant};
use util::*;

/// Closed-loop rounds per path, interleaved (floor, /health, full, no-update, floor, ...) so a
/// busy neighbour on the machine slows every path alike instead of skewing one ratio.
const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_secs(2);
const CONNS: usize = 8;

type Probe<'a> = &'a (dyn Fn(&ureq::Agent, usize) -> Duration + Sync);

fn main() {
    // The shared test server configuration (wrangler.toml's vars: LOG_CHECKS=errors).
    let s = server();
    let floor = Floor::start();

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
    let id_of = |v: &serde_json::Value, platform: &str| -> String {
        let u = v["updates"].as_array().unwrap().iter().find(|u| u["platform"] == platform).expect("platform");
        u["id"].as_str().unwrap().to_string()
    };
    let platforms = ["ios", "android"];
    // A device on v1 gets v2's manifest; a device already on v2 gets noUpdateAvailable.
    let on_v1: Vec<String> = platforms.iter().map(|p| id_of(&v1, p)).collect();
    let on_v2: Vec<String> = platforms.iter().map(|p| id_of(&v2, p)).collect();

    let url = s.url("/api/manifest?slug=demo-app");
    let health = s.url("/health");
    let get = |agent: &ureq::Agent, url: &str| -> (Duration, Vec<u8>) {
        let t = Instant::now();
        let r = agent.get(url).call().expect(url);
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
        (t.elapsed(), body)
    };
    let floor_probe = |agent: &ureq::Agent, _i: usize| {
        let (t, body) = get(agent, &floor.url);
        assert_eq!(body, b"ok");
        t
    };
    let health_probe = |agent: &ureq::Agent, _i: usize| get(agent, &health).0;
    let check = |agent: &ureq::Agent, i: usize, current: &[String]| {
        let p = i % 2;
        let t = Instant::now();
        let r = agent
            .get(&url)
            .set("expo-platform", platforms[p])
            .set("expo-runtime-version", "1.0.3")
            .set("expo-protocol-version", "1")
            .set("expo-current-update-id", &current[p])
            .call()
            .expect("check");
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
        (t.elapsed(), body)
    };
    let full = |agent: &ureq::Agent, i: usize| {
        let (t, body) = check(agent, i, &on_v1);
        assert!(body.len() > 1000, "a manifest was served");
        t
    };
    let no_update = |agent: &ureq::Agent, i: usize| {
        let (t, body) = check(agent, i, &on_v2);
        assert!(body.windows(17).any(|w| w == b"noUpdateAvailable"), "a noUpdateAvailable directive");
        t
    };
    // Warm up both isolates and the connections.
    let agent = ureq::agent();
    for i in 0..50 {
        full(&agent, i);
        no_update(&agent, i);
        floor_probe(&agent, i);
    }

    // Fixed rate: 200 requests/s for 10 s from 8 connections, each request on its schedule.
    // /health first: the floor of the local stack (wrangler's proxy + workerd), no R2 involved.
    let (rate, secs) = (200usize, 10usize);
    let fixed_rate = |f: Probe| {
        let start = Instant::now() + Duration::from_millis(100);
        let lat = run_threads(CONNS, |c| {
            let agent = ureq::agent();
            let mut out = Vec::new();
            for k in (c..rate * secs).step_by(CONNS) {
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
    let (lat, wall) = fixed_rate(&health_probe);
    println!("/health at {rate}/s for {secs}s, {CONNS} connections: {}", Stats::of(lat, wall));
    let (lat, wall) = fixed_rate(&full);
    println!("checks at {rate}/s for {secs}s, {CONNS} connections (target p99 < 5 ms): {}", Stats::of(lat, wall));

    // Closed loop at 8 connections, as ratios to the hello-world floor. Two views: throughput
    // (what the targets are stated in; on a machine shared with other work it swings
    // from round to round) and the CPU the serving processes (wrangler + workerd) spend per
    // request, which a busy neighbour barely moves: floor CPU / path CPU is the throughput ratio
    // a saturated server would reach.
    let server = server_process_group(&s.base);
    let floor_group = floor.child.id() as i32;
    let paths: [(&str, Probe, i32, Option<f64>); 4] = [
        ("floor (hello-world Worker)", &floor_probe, floor_group, None),
        ("/health", &health_probe, server, None),
        ("full-manifest check", &full, server, Some(0.6)),
        ("no-update check", &no_update, server, Some(0.8)),
    ];
    // What the groups burn with no request at all (file watchers, timers), taken off below: the
    // quietest of three 1 s windows, so a one-off burst is not subtracted from every round.
    let idle = |group: i32| {
        let window = || {
            let (c0, t0) = (group_cpu(group), Instant::now());
            std::thread::sleep(Duration::from_secs(1));
            group_cpu(group).saturating_sub(c0).as_secs_f64() / t0.elapsed().as_secs_f64()
        };
        (0..3).map(|_| window()).fold(f64::INFINITY, f64::min)
    };
    let (idle_floor, idle_server) = (idle(floor_group), idle(server));
    println!("idle CPU: floor group {:.1}%, server group {:.1}%", idle_floor * 100.0, idle_server * 100.0);
    let mut runs: Vec<(Vec<Duration>, Duration, Duration)> =
        vec![(vec![], Duration::ZERO, Duration::ZERO); paths.len()];
    // Per round, each path's req/s over the floor's in the same round.
    let mut ratios: Vec<Vec<f64>> = vec![vec![]; paths.len()];
    for _ in 0..ROUNDS {
        let mut floor_rps = 0.0;
        for (k, (run, (_, f, group, _))) in runs.iter_mut().zip(&paths).enumerate() {
            let cpu0 = group_cpu(*group);
            let (lat, wall) = closed_loop(CONNS, ROUND, *f);
            let idle = if *group == floor_group { idle_floor } else { idle_server };
            let used = group_cpu(*group).saturating_sub(cpu0).as_secs_f64() - idle * wall.as_secs_f64();
            run.2 += Duration::from_secs_f64(used.max(0.0));
            let rps = lat.len() as f64 / wall.as_secs_f64();
            if k == 0 {
                floor_rps = rps;
            }
            ratios[k].push(rps / floor_rps);
            run.0.extend(lat);
            run.1 += wall;
        }
    }
    let cpu_per_request = |r: &(Vec<Duration>, Duration, Duration)| r.2.as_secs_f64() / r.0.len() as f64;
    let floor_cpu = cpu_per_request(&runs[0]);
    let verdict = |ratio: f64, target: Option<f64>| match target {
        Some(t) if ratio >= t => format!(" (target >= {t}x: met)"),
        Some(t) => format!(" (target >= {t}x: NOT met)"),
        None => String::new(),
    };
    println!("closed loop, {CONNS} connections, {ROUNDS} interleaved rounds of {}s per path:", ROUND.as_secs());
    for ((label, _, _, target), (run, mut r)) in paths.iter().zip(runs.into_iter().zip(ratios)) {
        r.sort_by(f64::total_cmp);
        let by_rps = r[r.len() / 2];
        let cpu = cpu_per_request(&run);
        let by_cpu = floor_cpu / cpu;
        println!("  {label}: {}", Stats::of(run.0, run.1));
        println!(
            "    throughput {by_rps:.2}x floor{} [median of rounds {:.2}..{:.2}]",
            verdict(by_rps, *target),
            r[0],
            r[r.len() - 1]
        );
        println!("    server CPU {:.0} us/request = {by_cpu:.2}x floor{}", cpu * 1e6, verdict(by_cpu, *target));
    }

    // Health aggregation: the same device-like check (an install id from a pool of 5 000, the
    // update it runs, 1 in 20 also listing a failed update) against the default server
    // (HEALTH=on) and one with HEALTH=off, interleaved rounds in the same run.
    let off = server_with(Config::HealthOff);
    let ids_on = (on_v1.clone(), on_v2.clone());
    let (v1_off, v2_off) = (off.publish("demo-app", "demo-app-v1", &[]), off.publish("demo-app", "demo-app-v2", &[]));
    let ids_off: (Vec<String>, Vec<String>) =
        (platforms.iter().map(|p| id_of(&v1_off, p)).collect(), platforms.iter().map(|p| id_of(&v2_off, p)).collect());
    let device_check = |base: &str, ids: &(Vec<String>, Vec<String>), agent: &ureq::Agent, i: usize| {
        let p = i % 2;
        let client = format!("{:08x}-0000-4000-8000-{:012x}", i % 5_000, i % 5_000);
        let failed = format!("\"{}\"", ids.0[p]);
        let t = Instant::now();
        let mut req = agent
            .get(&format!("{base}/api/manifest?slug=demo-app"))
            .set("expo-platform", platforms[p])
            .set("expo-runtime-version", "1.0.3")
            .set("expo-protocol-version", "1")
            .set("eas-client-id", &client)
            .set("expo-current-update-id", &ids.1[p]);
        if i % 20 == 0 {
            req = req.set("expo-recent-failed-update-ids", &failed);
        }
        let r = req.call().expect("check");
        std::io::Read::read_to_end(&mut r.into_reader(), &mut Vec::new()).unwrap();
        t.elapsed()
    };
    let probe_on = |agent: &ureq::Agent, i: usize| device_check(&s.base, &ids_on, agent, i);
    let probe_off = |agent: &ureq::Agent, i: usize| device_check(&off.base, &ids_off, agent, i);
    let off_group = server_process_group(&off.base);
    for i in 0..50 {
        probe_on(&agent, i);
        probe_off(&agent, i);
    }
    let (idle_on, idle_off) = (idle(server), idle(off_group));
    let (mut rps_ratios, mut cpu_on, mut cpu_off, mut n_on, mut n_off) = (vec![], 0.0, 0.0, 0usize, 0usize);
    for _ in 0..ROUNDS {
        let mut rps = [0.0; 2];
        for (k, (f, group, idle)) in
            [(&probe_off as Probe, off_group, idle_off), (&probe_on as Probe, server, idle_on)].into_iter().enumerate()
        {
            let cpu0 = group_cpu(group);
            let (lat, wall) = closed_loop(CONNS, ROUND, f);
            let used = (group_cpu(group).saturating_sub(cpu0).as_secs_f64() - idle * wall.as_secs_f64()).max(0.0);
            rps[k] = lat.len() as f64 / wall.as_secs_f64();
            if k == 0 {
                (cpu_off, n_off) = (cpu_off + used, n_off + lat.len());
            } else {
                (cpu_on, n_on) = (cpu_on + used, n_on + lat.len());
            }
        }
        rps_ratios.push(rps[1] / rps[0]);
    }
    rps_ratios.sort_by(f64::total_cmp);
    let by_rps = rps_ratios[rps_ratios.len() / 2];
    let (us_on, us_off) = (cpu_on / n_on as f64 * 1e6, cpu_off / n_off as f64 * 1e6);
    let met = |cost: f64| if cost < 10.0 { "met" } else { "NOT met" };
    println!("health aggregation, {CONNS} connections, {ROUNDS} interleaved rounds of {}s:", ROUND.as_secs());
    println!(
        "    throughput HEALTH=on / HEALTH=off = {by_rps:.3}x, cost {:.1}% (target < 10%: {}) [rounds {:.2}..{:.2}]",
        (1.0 - by_rps) * 100.0,
        met((1.0 - by_rps) * 100.0),
        rps_ratios[0],
        rps_ratios[rps_ratios.len() - 1]
    );
    println!(
        "    server CPU {us_on:.0} us/check on vs {us_off:.0} us/check off, cost {:.1}% (target < 10%: {})",
        (us_on / us_off - 1.0) * 100.0,
        met((us_on / us_off - 1.0) * 100.0)
    );

    // Worker size.
    let wasm = std::fs::read(root().join("build/index_bg.wasm")).expect("built wasm");
    let gz = gzip_len(&wasm);
    // The budget grew from 400 KB (Expo only) to 600 KB with Capacitor, rollouts, health,
    // patches and accounts (each ~10-40 KB gzipped; README "Benchmarks"). Cloudflare's limit is
    // 3 MB gzipped on Free; the budget is about startup (the isolate compiles the module).
    println!(
        "wasm    {} bytes raw, {} bytes gzipped ({:.0} KiB; target <= 600 KB)",
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

/// The hello-world Worker of `bench/floor` on the same wrangler, in its own process group.
struct Floor {
    url: String,
    child: std::process::Child,
    _state: tempfile::TempDir,
}

impl Floor {
    fn start() -> Floor {
        // Run from a copy: wrangler writes its .wrangler/ scratch directory beside the config.
        let state = tempfile::tempdir().unwrap();
        for f in ["wrangler.toml", "worker.js"] {
            std::fs::copy(root().join("bench/floor").join(f), state.path().join(f)).unwrap();
        }
        let port = free_port();
        let mut cmd = std::process::Command::new(root().join("node_modules/.bin/wrangler"));
        cmd.args(["dev", "--config"])
            .arg(state.path().join("wrangler.toml"))
            .args(["--ip", "127.0.0.1", "--port", &port.to_string(), "--inspector-port", &free_port().to_string()])
            .arg("--persist-to")
            .arg(state.path().join("state"))
            // The same flags as the Worker under test (tests/e2e/util.rs), so only the Worker differs.
            .args(["--log-level", "log", "--show-interactive-dev-session=false"])
            .current_dir(state.path())
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "true")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut floor =
            Floor { url: format!("http://127.0.0.1:{port}/"), child: cmd.spawn().expect("wrangler"), _state: state };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            assert!(floor.child.try_wait().unwrap().is_none(), "the floor Worker's wrangler exited");
            assert!(Instant::now() < deadline, "the floor Worker did not answer on {}", floor.url);
            if ureq::get(&floor.url).timeout(Duration::from_secs(2)).call().is_ok() {
                return floor;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// The process group of the `wrangler dev` serving `base` (tests/e2e/util.rs starts it as the leader
/// of its own group, with `--port N` in its command line).
fn server_process_group(base: &str) -> i32 {
    let port = base.rsplit(':').next().unwrap();
    let needle = format!("--port\0{port}\0");
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("wrangler") && cmdline.contains(&needle) {
            if let Some(stat) = proc_stat(&e.path()) {
                return stat[2].parse().unwrap();
            }
        }
    }
    panic!("no wrangler process serving {base}");
}

/// The fields of /proc/PID/stat after the command name (state is [0], pgrp [2], utime [11],
/// stime [12]).
fn proc_stat(dir: &std::path::Path) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().map(str::to_string).collect())
}

/// User + system CPU used so far by every live process of a process group.
fn group_cpu(pgid: i32) -> Duration {
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut ticks = 0u64;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some(f) = proc_stat(&e.path()).filter(|f| f.len() > 12 && f[2] == pgid.to_string()) {
            ticks += f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
        }
    }
    Duration::from_secs_f64(ticks as f64 / hz)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every connection sends its next request as soon as the last one is answered, for `dur`.
fn closed_loop(conns: usize, dur: Duration, f: Probe) -> (Vec<Duration>, Duration) {
    let t0 = Instant::now();
    let lat = run_threads(conns, |c| {
        let agent = ureq::agent();
        let mut out = Vec::new();
        let mut i = c;
        while t0.elapsed() < dur {
            out.push(f(&agent, i));
            i += conns;
        }
        out
    });
    (lat, t0.elapsed())
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

struct Stats {
    n: usize,
    rps: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Stats {
    fn of(mut lat: Vec<Duration>, wall: Duration) -> Stats {
        lat.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let pct = |p: f64| ms(lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]);
        Stats {
            n: lat.len(),
            rps: lat.len() as f64 / wall.as_secs_f64(),
            p50: pct(0.50),
            p99: pct(0.99),
            max: ms(*lat.last().unwrap()),
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests, {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.n, self.rps, self.p50, self.p99, self.max
        )
    }
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
