//! The project scripts users run: `wrangler deploy --dry-run` builds the real bundle, and the
//! local dev command serves.

#[path = "e2e/util.rs"]
mod util;

/// Held while a test's wrangler runs the `[build]` command: two builds at once would rewrite
/// `build/` under each other.
static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn building() -> std::sync::MutexGuard<'static, ()> {
    BUILDING.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn wrangler_dry_run_builds_the_worker_bundle() {
    let _building = building();
    let out_dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(util::root().join("node_modules/.bin/wrangler"))
        .args(["deploy", "--dry-run", "--outdir"])
        .arg(out_dir.path())
        .current_dir(util::root())
        .env("WRANGLER_SEND_METRICS", "false")
        .output()
        .expect("run wrangler (npm ci first)");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    assert!(log.contains("env.UPDATES"), "the R2 binding is declared: {log}");
    let files: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().flatten().map(|e| e.path()).collect();
    let wasm = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "wasm"))
        .unwrap_or_else(|| panic!("no wasm in {files:?}"));
    assert!(std::fs::read(wasm).unwrap().starts_with(b"\0asm"));
    let shim = files.iter().find(|p| p.file_name().is_some_and(|n| n == "shim.js")).expect("shim.js");
    assert!(std::fs::read_to_string(shim).unwrap().contains("fetch"));
}

/// A `npm run dev` process in its own process group (node, bash, wrangler and workerd), killed
/// as a group on drop; both output streams go to one log file.
struct Dev {
    child: std::process::Child,
    log: tempfile::NamedTempFile,
}

impl Dev {
    fn start(program: &str, args: &[&str]) -> Dev {
        let log = tempfile::NamedTempFile::new().unwrap();
        // One open file for both streams, so they append instead of overwriting each other.
        let sink = log.reopen().unwrap();
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .current_dir(util::root())
            .env("WRANGLER_SEND_METRICS", "false")
            .stdin(std::process::Stdio::null())
            .stdout(sink.try_clone().unwrap())
            .stderr(sink);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        Dev { child: cmd.spawn().unwrap(), log }
    }

    /// True once `/health` answers 200; false if the process exits or 180 s pass first.
    fn wait_healthy(&mut self, port: u16) -> bool {
        let health = format!("http://127.0.0.1:{port}/health");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        while std::time::Instant::now() < deadline && self.child.try_wait().unwrap().is_none() {
            if ureq::get(&health).timeout(std::time::Duration::from_secs(2)).call().is_ok_and(|r| r.status() == 200) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        false
    }

    fn output(&self) -> String {
        use std::io::Read;
        let mut out = String::new();
        self.log.reopen().unwrap().read_to_string(&mut out).unwrap();
        out
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The README's first command: `npm run dev` (scripts/dev.sh) serves locally on the port asked
/// for and prints the local ADMIN_TOKEN with an app.json snippet.
#[test]
fn dev_script_serves_and_prints_the_token() {
    let port = free_port();
    let port_arg = port.to_string();
    let building = building();
    let mut dev = Dev::start(
        "bash",
        &["scripts/dev.sh", "--port", &port_arg, "--inspector-port", "0", "--show-interactive-dev-session=false"],
    );
    let ok = dev.wait_healthy(port);
    drop(building);
    let out = dev.output();
    drop(dev);
    assert!(ok, "dev server did not answer on port {port}:\n{out}");
    let token = std::fs::read_to_string(util::root().join(".dev.vars"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("ADMIN_TOKEN=").map(str::to_string))
        .expect("ADMIN_TOKEN in .dev.vars");
    assert!(out.contains(&format!("ADMIN_TOKEN (from .dev.vars): {token}")), "{out}");
    assert!(out.contains(&format!("\"url\": \"http://127.0.0.1:{port}/api/manifest?slug=<your-slug>\"")), "{out}");
}

/// The wrangler options the README passes through replace dev.sh's defaults instead of being
/// repeated (wrangler refuses a second --persist-to), and the token printed is the one the
/// server actually accepts: `--var ADMIN_TOKEN:<t>` wins over .dev.vars.
#[test]
fn dev_script_passed_options_override_its_defaults() {
    let port = free_port();
    let (port_arg, state) = (format!("--port={port}"), tempfile::tempdir().unwrap());
    let token = format!("dev-{}", expo_ota::protocol::hash::hex(&util::rand16()));
    let var = format!("ADMIN_TOKEN:{token}");
    let building = building();
    let mut dev = Dev::start(
        "npm",
        &[
            "run",
            "dev",
            "--",
            &port_arg,
            "--persist-to",
            state.path().to_str().unwrap(),
            "--var",
            &var,
            "--inspector-port",
            "0",
            "--show-interactive-dev-session=false",
        ],
    );
    let ok = dev.wait_healthy(port);
    drop(building);
    let base = format!("http://127.0.0.1:{port}");
    let auth = format!("Bearer {token}");
    let listed = ok.then(|| util::http("GET", &format!("{base}/api/tokens"), &[("authorization", &auth)], None));
    // A write, so the simulated R2 has to put its files somewhere.
    let created = ok.then(|| {
        util::http(
            "POST",
            &format!("{base}/api/tokens"),
            &[("authorization", &auth), ("content-type", "application/json")],
            Some(br#"{"name":"dev-script-test","allApps":true,"scopes":["read"]}"#),
        )
    });
    let out = dev.output();
    drop(dev);
    assert!(ok, "dev server did not answer on port {port}:\n{out}");
    assert!(out.contains(&format!("ADMIN_TOKEN (from --var): {token}")), "{out}");
    assert!(out.contains(&format!("R2 data in {}", state.path().display())), "{out}");
    let listed = listed.unwrap();
    assert_eq!(listed.status, 200, "the printed token authenticates: {}", listed.text());
    let created = created.unwrap();
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_str().expect("token id").to_string();
    let keys = r2_keys(&state.path().join("v3/r2/miniflare-R2BucketObject"));
    assert!(
        keys.iter().any(|k| k.contains(&id)),
        "the new token {id} is stored under --persist-to {}: {keys:?}\n{out}",
        state.path().display()
    );
}

/// Every object key in a miniflare R2 state directory (its sqlite object tables).
fn r2_keys(dir: &std::path::Path) -> Vec<String> {
    let script = concat!(
        "import sqlite3, sys, glob\n",
        "for f in sorted(glob.glob(sys.argv[1] + '/*.sqlite')):\n",
        "    if not f.endswith('metadata.sqlite'):\n",
        "        for (k,) in sqlite3.connect(f).execute('select key from _mf_objects order by key'): print(k)\n",
    );
    let out = std::process::Command::new("python3").args(["-c", script]).arg(dir).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}
