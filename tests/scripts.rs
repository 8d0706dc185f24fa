//! The project scripts users run: `wrangler deploy --dry-run` builds the real bundle, and the
//! local dev command serves.

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn wrangler_dry_run_builds_the_worker_bundle() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(root().join("node_modules/.bin/wrangler"))
        .args(["deploy", "--dry-run", "--outdir"])
        .arg(out_dir.path())
        .current_dir(root())
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

/// The README's first command: `npm run dev` (scripts/dev.sh) serves locally on the port asked
/// for and prints the local ADMIN_TOKEN with an app.json snippet.
#[test]
fn dev_script_serves_and_prints_the_token() {
    use std::io::Read;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = tempfile::NamedTempFile::new().unwrap();
    // One open file for both streams, so they append instead of overwriting each other.
    let sink = log.reopen().unwrap();
    let mut cmd = std::process::Command::new("bash");
    cmd.args([
        "scripts/dev.sh",
        "--port",
        &port.to_string(),
        "--inspector-port",
        "0",
        "--show-interactive-dev-session=false",
    ])
    .current_dir(root())
    .env("WRANGLER_SEND_METRICS", "false")
    .stdin(std::process::Stdio::null())
    .stdout(sink.try_clone().unwrap())
    .stderr(sink);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap();
    let health = format!("http://127.0.0.1:{port}/health");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let mut ok = false;
    while std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        if ureq::get(&health).call().is_ok_and(|r| r.status() == 200) {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
    let mut out = String::new();
    log.reopen().unwrap().read_to_string(&mut out).unwrap();
    assert!(ok, "dev server did not answer on port {port}:\n{out}");
    let token = std::fs::read_to_string(root().join(".dev.vars"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("ADMIN_TOKEN=").map(str::to_string))
        .expect("ADMIN_TOKEN in .dev.vars");
    assert!(out.contains(&format!("ADMIN_TOKEN (from .dev.vars): {token}")), "{out}");
    assert!(out.contains(&format!("\"url\": \"http://127.0.0.1:{port}/api/manifest?slug=<your-slug>\"")), "{out}");
}
