//! `wrangler deploy --dry-run` must build the real bundle users deploy.

mod util;

#[test]
fn wrangler_dry_run_builds_the_worker_bundle() {
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
    let wasm = files.iter().find(|p| p.extension().is_some_and(|e| e == "wasm")).unwrap_or_else(|| panic!("no wasm in {files:?}"));
    assert!(std::fs::read(wasm).unwrap().starts_with(b"\0asm"));
    let shim = files.iter().find(|p| p.file_name().is_some_and(|n| n == "shim.js")).expect("shim.js");
    assert!(std::fs::read_to_string(shim).unwrap().contains("fetch"));
}
