//! The end-to-end harness: a few real `wrangler dev` servers (workerd + on-disk R2) shared by
//! every test of the binary, the real publish CLI, and the client's parsing rules.
//!
//! Invariant: each server configuration is started at most once per test binary (lazily, on
//! first use) and is gone when the binary is gone — however it ends. A bash watchdog owns each
//! server: it starts `wrangler dev` in a session of its own and waits on a pipe whose only
//! writer is this process; when the pipe closes (normal exit, a panic that ends the process,
//! or SIGKILL) it kills the server's whole process group (node and workerd) and deletes the
//! temporary `--persist-to` directory. At a normal exit an `atexit` hook closes the pipes and
//! waits for the watchdogs, so no wrangler/workerd outlives `cargo test`.
//!
//! Tests share servers, so they isolate by app: every test publishes under its own
//! [`unique_slug`] and compares only its own apps' objects ([`Server::fingerprint`]).
#![allow(dead_code)]

use expo_ota::{protocol::hash, protocol::id, protocol::multipart, protocol::time};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

pub fn codesigning(path: &str) -> String {
    std::fs::read_to_string(fixture("codesigning").join(path)).unwrap()
}

/// Deploy requests per minute per credential on [`Config::ServerKey`], the one server with a
/// limit low enough for a test to exhaust. The signing tests' CLI publishes share the admin
/// token's budget on it, and a publish now also sends patch and br/gzip variant requests: 30 ran
/// out within one minute.
pub const SERVER_KEY_DEPLOYS_PER_MINUTE: u32 = 100;
/// Everywhere else: high enough that tests sharing the admin token never trip it.
const UNLIMITED_DEPLOYS_PER_MINUTE: u32 = 1_000_000;

/// The server configurations of the binary; each is one `wrangler dev`, started on first use.
/// Prefer [`Config::Default`]; add a variant only for a setting a test cannot get otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    /// ADMIN_TOKEN set, wrangler.toml's limits, no server signing key.
    Default,
    /// ADMIN_TOKEN unset: deploy routes must answer 503, never fall open.
    NoAdminToken,
    /// MAX_FILE_BYTES 2 000 000, MAX_FORM_BYTES 3 000 000 (demo-app-v1 as a form is ~3.9 MB, so
    /// publish it there with the CLI), MAX_FILES_PER_UPDATE 50, MAX_JSON_BYTES 65 536. It also
    /// holds the server signing key as PKCS#8, so both key encodings run without a fifth server;
    /// nothing on it depends on there being no key. It also logs every check (LOG_CHECKS=all).
    SmallLimits,
    /// The server signing key as PKCS#1 (what `expo-updates codesigning:generate` writes) and
    /// [`SERVER_KEY_DEPLOYS_PER_MINUTE`]. Tests here share the admin token's budget: use it
    /// sparingly, or mint a token of your own (limits are per credential).
    ServerKey,
    /// HEALTH=off: checks record no health signals (the bench's baseline for aggregation cost).
    HealthOff,
}

const CONFIGS: usize = 5;

impl Config {
    fn index(self) -> usize {
        self as usize
    }
}

static SERVERS: [OnceLock<Result<Server, String>>; CONFIGS] =
    [OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new()];

/// The shared default server.
pub fn server() -> &'static Server {
    server_with(Config::Default)
}

/// The shared server of `config`, started on first use. A server that failed to start is not
/// retried: every test that needs it fails with the same message.
pub fn server_with(config: Config) -> &'static Server {
    let slot = SERVERS[config.index()].get_or_init(|| {
        std::panic::catch_unwind(|| Server::start(config)).map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into())
        })
    });
    match slot {
        Ok(s) => s,
        Err(e) => panic!("the {config:?} server did not start: {e}"),
    }
}

/// A slug no other test uses: `<name>-<8 hex>`. Tests share servers, so each app a test
/// publishes to must be its own.
pub fn unique_slug(name: &str) -> String {
    let r = rand16();
    let slug = format!("{name}-{}", hash::hex(&r[..4]));
    expo_ota::validate::slug(&slug).unwrap_or_else(|e| panic!("unique_slug({name:?}): {}", e.message));
    slug
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// `now` in the server's time format, for `since` filters that skip other tests' history.
pub fn now_iso() -> String {
    time::format_millis(now_ms())
}

static WORKER: Once = Once::new();
static CLI: Once = Once::new();

/// Builds the Worker bundle once per test binary (a no-op when fresh).
fn ensure_worker_built() {
    WORKER.call_once(|| {
        let out = Command::new("bash")
            .arg("scripts/build-worker.sh")
            .current_dir(root())
            .output()
            .expect("run build-worker.sh");
        assert!(out.status.success(), "worker build failed:\n{}", String::from_utf8_lossy(&out.stderr));
    });
}

/// Builds the CLI once per test binary, only for tests that run it.
fn ensure_cli_built() {
    CLI.call_once(|| {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "publish-cli"])
            .current_dir(root())
            .status()
            .expect("cargo build")
            .success();
        assert!(ok, "publish-cli build failed");
    });
}

/// The watchdogs of every server started, for the exit hook.
static WATCHDOGS: Mutex<Vec<Child>> = Mutex::new(Vec::new());
static EXIT_HOOK: Once = Once::new();

/// Runs `wrangler dev` (its argv NUL-separated in `$1/argv`, so this shell's own command line
/// names no port and `pgrep`/`/proc` find only wrangler) in a session of its own, then waits for
/// stdin to close and tears the session down: SIGTERM, up to 5 s, SIGKILL (workerd included,
/// even if node is already gone), and the state dir `$1` removed (kept, log included, when
/// E2E_KEEP_STATE is set, for looking into a failure). If wrangler exits first it says so in the
/// log (so a failed start is reported at once) and still waits for stdin.
const WATCHDOG: &str = r#"
state=$1
mapfile -d '' argv < "$state/argv"
exec 3<&0
setsid "${argv[@]}" </dev/null &
pid=$!
read -r _ <&3 &
reader=$!
wait -n "$pid" "$reader"
if kill -0 "$reader" 2>/dev/null; then
  echo "[watchdog: wrangler exited]"
  wait "$reader"
fi
kill -TERM -- "-$pid" 2>/dev/null
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -KILL -- "-$pid" 2>/dev/null
[ -n "${E2E_KEEP_STATE:-}" ] || rm -rf -- "$state"
"#;

extern "C" fn stop_servers_at_exit() {
    let mut all = WATCHDOGS.lock().unwrap_or_else(PoisonError::into_inner);
    // Close every pipe first so the servers stop in parallel, then wait for each watchdog.
    for w in all.iter_mut() {
        drop(w.stdin.take());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for w in all.iter_mut() {
        while Instant::now() < deadline && matches!(w.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub struct Server {
    pub config: Config,
    pub base: String,
    /// The ADMIN_TOKEN ("" on [`Config::NoAdminToken`]).
    pub token: String,
    dir: PathBuf,
}

impl Server {
    /// Runs wrangler dev from a config in a temp dir, so no developer `.dev.vars` leaks in and
    /// each server has its own R2 directory and secrets.
    fn start(config: Config) -> Server {
        ensure_worker_built();
        let (admin_token, vars, signing_key, deploys_per_minute) = match config {
            Config::Default => (true, vec![], None, UNLIMITED_DEPLOYS_PER_MINUTE),
            Config::NoAdminToken => (false, vec![], None, UNLIMITED_DEPLOYS_PER_MINUTE),
            Config::SmallLimits => (
                true,
                vec![
                    ("MAX_FILE_BYTES", "2000000"),
                    ("MAX_FORM_BYTES", "3000000"),
                    ("MAX_FILES_PER_UPDATE", "50"),
                    ("MAX_JSON_BYTES", "65536"),
                    ("LOG_CHECKS", "all"),
                ],
                Some(pkcs8_signing_key()),
                UNLIMITED_DEPLOYS_PER_MINUTE,
            ),
            Config::ServerKey => {
                (true, vec![], Some(codesigning("keys/private-key.pem")), SERVER_KEY_DEPLOYS_PER_MINUTE)
            }
            Config::HealthOff => (true, vec![("HEALTH", "off")], None, UNLIMITED_DEPLOYS_PER_MINUTE),
        };
        let token = if admin_token { format!("test-{}", id::uuid_v4(rand16())) } else { String::new() };
        let mut dev_vars = String::new();
        if admin_token {
            dev_vars.push_str(&format!("ADMIN_TOKEN={token}\n"));
        }
        if let Some(pem) = &signing_key {
            // dotenv: a double-quoted value turns \n into newlines.
            dev_vars.push_str(&format!("CODE_SIGNING_PRIVATE_KEY=\"{}\"\n", pem.trim().replace('\n', "\\n")));
        }
        // A free port picked here may be taken by another program before wrangler binds it
        // (other servers run on this machine); wrangler then exits and another port is tried.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = tempfile::Builder::new().prefix("expo-ota-e2e-").tempdir().unwrap().keep();
            std::fs::write(dir.join("wrangler.toml"), test_config(&vars, deploys_per_minute)).unwrap();
            std::fs::write(dir.join(".dev.vars"), &dev_vars).unwrap();
            apply_migrations(&dir);
            spawn_wrangler(&dir, free_port());
            let server = Server { config, base: String::new(), token: token.clone(), dir };
            match server.wait_ready() {
                Ok(port) => {
                    eprintln!("[e2e] {config:?} server on port {port}, state and log in {}", server.dir.display());
                    return Server { base: format!("http://127.0.0.1:{port}"), ..server };
                }
                Err(why) if attempt < 3 && why.contains("[watchdog: wrangler exited]") => continue,
                Err(why) => panic!("wrangler dev ({config:?}) did not become ready: {why}"),
            }
        }
    }

    /// Waits for wrangler's "Ready on" line and a healthy /health on the port it names.
    fn wait_ready(&self) -> Result<u16, String> {
        const READY: &str = "Ready on http://127.0.0.1:";
        // Generous: servers may start together on a busy 2-core machine.
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            let log = self.log();
            if log.contains("[watchdog: wrangler exited]") {
                return Err(log);
            }
            let port = log.find(READY).and_then(|i| {
                let digits: String = log[i + READY.len()..].chars().take_while(char::is_ascii_digit).collect();
                digits.parse::<u16>().ok()
            });
            if let Some(port) = port {
                let health =
                    ureq::get(&format!("http://127.0.0.1:{port}/health")).timeout(Duration::from_secs(2)).call();
                if health.is_ok_and(|r| r.status() == 200) {
                    return Ok(port);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!("no healthy server after 180 s:\n{}", self.log()))
    }

    /// wrangler's output since the server started (every test's requests, interleaved).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("wrangler.log")).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let cut = log.len().saturating_sub(4000);
        let cut = (cut..log.len()).find(|&i| log.is_char_boundary(i)).unwrap_or(log.len());
        log[cut..].to_string()
    }

    /// Every object of these apps as `key etag`, read from miniflare's object table. Equal
    /// fingerprints mean none of the apps' files, records or channel pointers was written or
    /// deleted. Tests share the bucket, so a test compares only its own apps.
    pub fn fingerprint(&self, slugs: &[&str]) -> Vec<String> {
        self.objects()
            .into_iter()
            .filter(|o| slugs.iter().any(|s| o.key.starts_with(&format!("{s}/"))))
            .map(|o| format!("{} {}", o.key, o.etag))
            .collect()
    }

    /// Every object in the bucket (all tests' apps, tokens and the audit log), by key.
    /// The stored password hash of `login` in this server's local D1 (the accounts database).
    pub fn password_hash(&self, login: &str) -> Option<String> {
        let dir = self.dir.join("state/v3/d1");
        let script = concat!(
            "import sqlite3, sys, glob\n",
            "for f in glob.glob(sys.argv[1] + '/**/*.sqlite', recursive=True):\n",
            "    db = sqlite3.connect(f, timeout=30)\n",
            "    if db.execute(\"select 1 from sqlite_master where name = 'users'\").fetchone():\n",
            "        for (h,) in db.execute('select password_hash from users where login = ?', (sys.argv[2],)):\n",
            "            print(h)\n",
        );
        let out = Command::new("python3").args(["-c", script]).arg(&dir).arg(login).output().expect("python3 reads D1");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().next().map(str::to_string)
    }

    /// The rows of this server's local D1 `audit` table (`migrations/0002_audit.sql`), oldest
    /// first, each as `{"id", "at", "slug", "action", "entry"}` (`entry` parsed).
    pub fn audit_rows(&self) -> Vec<Value> {
        let dir = self.dir.join("state/v3/d1");
        let script = concat!(
            "import sqlite3, sys, glob, json\n",
            "for f in glob.glob(sys.argv[1] + '/**/*.sqlite', recursive=True):\n",
            "    db = sqlite3.connect(f, timeout=30)\n",
            "    if db.execute(\"select 1 from sqlite_master where name = 'audit'\").fetchone():\n",
            "        for (i, at, slug, action, entry) in db.execute('select id, at, slug, action, entry from audit order by id'):\n",
            "            print(json.dumps({'id': i, 'at': at, 'slug': slug, 'action': action, 'entry': json.loads(entry)}))\n",
        );
        let out = Command::new("python3").args(["-c", script]).arg(&dir).output().expect("python3 reads D1");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    pub fn objects(&self) -> Vec<StoredObject> {
        let dir = self.dir.join("state/v3/r2/miniflare-R2BucketObject");
        let script = concat!(
            "import sqlite3, sys, glob, json\n",
            "for f in sorted(glob.glob(sys.argv[1] + '/*.sqlite')):\n",
            "    if not f.endswith('metadata.sqlite'):\n",
            "        db = sqlite3.connect(f, timeout=30)\n",
            // Miniflare creates the table with the bucket's first write.
            "        if db.execute(\"select 1 from sqlite_master where name = '_mf_objects'\").fetchone():\n",
            "            for row in db.execute('select key, etag, custom_metadata from _mf_objects order by key'):\n",
            "                print(json.dumps(row))\n",
        );
        let out =
            Command::new("python3").args(["-c", script]).arg(&dir).output().expect("python3 reads miniflare's sqlite");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let (key, etag, custom): (String, String, String) = serde_json::from_str(l).unwrap();
                StoredObject { key, etag, custom: serde_json::from_str(&custom).unwrap_or(Value::Null) }
            })
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Runs the real CLI against this server; `--server` and `--auth-token` are added.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        let mut full: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        full.extend(["--server".into(), self.base.clone()]);
        if !self.token.is_empty() {
            full.extend(["--auth-token".into(), self.token.clone()]);
        }
        run_cli(&full)
    }

    /// `publish-cli publish --json` of a fixture export; panics with the CLI's stderr.
    pub fn publish(&self, slug: &str, fixture_name: &str, extra: &[&str]) -> Value {
        let dir = fixture(fixture_name);
        let mut args = vec!["publish", "--slug", slug, "--export-dir", dir.to_str().unwrap(), "--json"];
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        assert!(out.ok, "publish failed: {}\nserver log (tail):\n{}", out.stderr, self.log_tail());
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("CLI --json output is not JSON ({e}): {}", out.stdout))
    }

    /// A manifest check as the client sends it (protocol 1 unless overridden).
    pub fn check(&self, slug: &str, platform: &str, rv: &str, extra: &[(&str, &str)]) -> Reply {
        let mut h = vec![
            ("accept", "multipart/mixed,application/expo+json,application/json"),
            ("expo-platform", platform),
            ("expo-runtime-version", rv),
            ("expo-protocol-version", "1"),
        ];
        for (k, v) in extra {
            h.retain(|(hk, _)| hk != k);
            h.push((k, v));
        }
        http("GET", &self.url(&format!("/api/manifest?slug={slug}")), &h, None)
    }

    /// The single-request form publish with the admin token.
    pub fn post_form(&self, slug: &str, fields: &[(String, Vec<u8>)], extra: &[(&str, &str)]) -> Reply {
        let (ct, body) = form_body(fields);
        let auth = self.auth();
        let mut h = vec![("authorization", auth.as_str()), ("content-type", ct.as_str())];
        h.extend_from_slice(extra);
        http("POST", &self.url(&format!("/api/publish/{slug}")), &h, Some(&body))
    }

    /// A JSON API call with the admin token.
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let auth = self.auth();
        let b = body.map(|v| v.to_string().into_bytes());
        http(
            method,
            &self.url(path),
            &[("authorization", auth.as_str()), ("content-type", "application/json")],
            b.as_deref(),
        )
    }
}

/// `wrangler dev` does not apply D1 migrations: apply them to the server's own state directory
/// first (the accounts schema in `migrations/`).
fn apply_migrations(dir: &Path) {
    let wrangler = root().join("node_modules/.bin/wrangler");
    let out = Command::new(&wrangler)
        .args(["d1", "migrations", "apply", "DB", "--local", "--config"])
        .arg(dir.join("wrangler.toml"))
        .arg("--persist-to")
        .arg(dir.join("state"))
        .current_dir(dir)
        .env("CI", "true")
        .env("WRANGLER_SEND_METRICS", "false")
        .output()
        .expect("run wrangler d1 migrations apply");
    assert!(
        out.status.success(),
        "wrangler d1 migrations apply failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `wrangler dev` for the config in `dir` under a watchdog (see [`WATCHDOG`]) whose
/// stdin pipe only this process holds, and registers the exit hook that closes it.
fn spawn_wrangler(dir: &Path, port: u16) {
    let wrangler = root().join("node_modules/.bin/wrangler");
    let (config, state) = (dir.join("wrangler.toml"), dir.join("state"));
    let argv = [
        wrangler.to_str().unwrap(),
        "dev",
        "--config",
        config.to_str().unwrap(),
        "--ip",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--inspector-port",
        &free_port().to_string(),
        "--persist-to",
        state.to_str().unwrap(),
        "--log-level",
        "log",
        "--show-interactive-dev-session=false",
    ]
    .map(|a| format!("{a}\0"))
    .concat();
    std::fs::write(dir.join("argv"), argv).unwrap();
    let log = std::fs::File::create(dir.join("wrangler.log")).unwrap();
    let mut cmd = Command::new("bash");
    cmd.args(["-c", WATCHDOG, "watchdog"])
        .arg(dir)
        .current_dir(dir)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "true")
        .stdin(Stdio::piped())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // Its own group: a Ctrl-C meant for cargo reaches the watchdog only through the pipe.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let watchdog = cmd.spawn().expect("spawn the wrangler watchdog (bash)");
    EXIT_HOOK.call_once(|| {
        // SAFETY: registers a plain extern "C" fn; it only touches Rust statics.
        let rc = unsafe { libc::atexit(stop_servers_at_exit) };
        assert_eq!(rc, 0, "atexit");
    });
    WATCHDOGS.lock().unwrap_or_else(PoisonError::into_inner).push(watchdog);
}

/// One row of miniflare's R2 object table.
#[derive(Debug)]
pub struct StoredObject {
    pub key: String,
    pub etag: String,
    /// R2 custom metadata (the audit log keeps each entry here).
    pub custom: Value,
}

/// The repository's wrangler.toml, pointed at the built bundle, without `[build]` (the harness
/// builds once), with `vars` overridden and the deploy rate limit set.
fn test_config(vars: &[(&str, &str)], deploys_per_minute: u32) -> String {
    let src = std::fs::read_to_string(root().join("wrangler.toml")).unwrap();
    let main = root().join("build/worker/shim.mjs");
    let mut out = String::new();
    let mut in_build = false;
    let mut limited = false;
    for line in src.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_build = t == "[build]";
        }
        if in_build {
            continue;
        }
        if t.starts_with("directory = \"./public\"") {
            out.push_str(&format!("directory = {:?}\n", root().join("public").display().to_string()));
        } else if t.starts_with("migrations_dir = ") {
            out.push_str(&format!("migrations_dir = {:?}\n", root().join("migrations").display().to_string()));
        } else if t.starts_with("main = ") {
            out.push_str(&format!("main = {:?}\n", main.display().to_string()));
        } else if t.starts_with("simple = ") {
            out.push_str(&format!("simple = {{ limit = {deploys_per_minute}, period = 60 }}\n"));
            limited = true;
        } else if let Some((k, v)) = vars.iter().find(|(k, _)| t.starts_with(&format!("{k} = "))) {
            out.push_str(&format!("{k} = {v:?}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(limited, "wrangler.toml has no DEPLOY_RATE_LIMITER `simple = {{ … }}` line to set");
    for (k, _) in vars {
        assert!(out.contains(&format!("{k} = ")), "wrangler.toml [vars] has no {k} to override");
    }
    out
}

/// The test key as PKCS#8 (`BEGIN PRIVATE KEY`), converted by the core's PEM handling.
fn pkcs8_signing_key() -> String {
    let der = expo_ota::protocol::pem::private_key_pkcs8_der(&codesigning("keys/private-key.pem")).unwrap();
    let b64 = hash::base64_standard(&der);
    let body: Vec<String> = b64.as_bytes().chunks(64).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", body.join("\n"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn rand16() -> [u8; 16] {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut b).unwrap();
    b
}

pub struct CliOutput {
    pub ok: bool,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn cli_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    target.join("debug/publish-cli")
}

/// Runs the real CLI with exactly these arguments (no server or token added).
pub fn run_cli(args: &[String]) -> CliOutput {
    ensure_cli_built();
    let out = Command::new(cli_path())
        .args(args)
        .env_remove("EXPO_UPDATES_AUTH_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run publish-cli");
    CliOutput {
        ok: out.status.success(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// A JSON error body with the given status.
    pub fn assert_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert!(self.header("content-type").unwrap_or("").starts_with("application/json"), "{:?}", self.headers);
        self.json()["error"].as_str().expect("error field").to_string()
    }
    pub fn parts(&self) -> Vec<multipart::ParsedPart> {
        multipart::parse(self.header("content-type").expect("content-type"), &self.body)
            .unwrap_or_else(|e| panic!("bad multipart ({e}): {}", self.text()))
    }
    pub fn part(&self, name: &str) -> Option<multipart::ParsedPart> {
        self.parts().into_iter().find(|p| p.name().as_deref() == Some(name))
    }
    /// The manifest of a 200 update response, checked against the client's rules.
    pub fn manifest(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text());
        let part = self.part("manifest").unwrap_or_else(|| panic!("no manifest part: {}", self.text()));
        let ext = self.part("extensions").expect("extensions part");
        let ext: Value = serde_json::from_slice(&ext.body).unwrap();
        assert!(ext["assetRequestHeaders"].is_object(), "extensions.assetRequestHeaders must be an object");
        let m: Value = serde_json::from_slice(&part.body).expect("manifest part is JSON");
        assert_client_accepts(&m);
        m
    }
    /// The directive of a 200 directive response.
    pub fn directive(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text());
        assert_eq!(self.header("expo-protocol-version"), Some("1"));
        let d = self.part("directive").unwrap_or_else(|| panic!("no directive part: {}", self.text()));
        assert!(self.part("manifest").is_none());
        serde_json::from_slice(&d.body).unwrap()
    }
}

/// The rules SDK 54/55 clients enforce on a manifest (protocol notes §4 and §9).
pub fn assert_client_accepts(m: &Value) {
    assert_no_nulls(m, "manifest");
    let id = m["id"].as_str().expect("id string");
    assert!(id::is_canonical_uuid(id), "id {id}");
    let created = m["createdAt"].as_str().expect("createdAt string");
    assert!(time::parse_millis(created).is_some(), "createdAt {created}");
    assert!(m["runtimeVersion"].is_string());
    assert!(m["metadata"].is_object() && m["extra"].is_object());
    let check_asset = |a: &Value, launch: bool| {
        for f in ["key", "url", "hash", "fileExtension"] {
            assert!(a[f].is_string(), "asset field {f} missing: {a}");
        }
        let url = a["url"].as_str().unwrap();
        assert!(url.starts_with("http://") || url.starts_with("https://"), "url must be absolute: {url}");
        let ext = a["fileExtension"].as_str().unwrap();
        assert!(ext.starts_with('.'), "fileExtension {ext}");
        if launch {
            assert_eq!(ext, ".bundle");
        }
        assert!(
            hash::parse_sha256_base64url(a["hash"].as_str().unwrap()).is_some(),
            "hash must be unpadded base64url sha256: {a}"
        );
    };
    check_asset(&m["launchAsset"], true);
    for a in m["assets"].as_array().expect("assets array") {
        check_asset(a, false);
    }
}

fn assert_no_nulls(v: &Value, at: &str) {
    match v {
        Value::Null => panic!("JSON null at {at}"),
        Value::Object(o) => o.iter().for_each(|(k, v)| assert_no_nulls(v, &format!("{at}.{k}"))),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| assert_no_nulls(v, &format!("{at}[{i}]"))),
        _ => {}
    }
}

/// Downloads every asset of a manifest as the client does and checks hash and key.
pub fn download_and_verify_assets(m: &Value) -> u64 {
    let mut total = 0;
    for a in std::iter::once(&m["launchAsset"]).chain(m["assets"].as_array().unwrap()) {
        let r = http("GET", a["url"].as_str().unwrap(), &[("expo-platform", "ios")], None);
        assert_eq!(r.status, 200, "{}", a["url"]);
        assert_eq!(r.header("cache-control"), Some("public, max-age=31536000, immutable"));
        assert!(r.header("etag").is_some());
        let d = hash::Digests::of(&r.body);
        assert_eq!(d.sha256_base64url(), a["hash"].as_str().unwrap(), "hash of {}", a["url"]);
        assert_eq!(d.md5_hex(), a["key"].as_str().unwrap(), "key of {}", a["url"]);
        assert_eq!(r.header("content-type"), a["contentType"].as_str(), "content-type of {}", a["url"]);
        total += r.body.len() as u64;
    }
    total
}

/// One HTTP request; any status is a [`Reply`], only a transport failure panics. Two hiccups of
/// the transport are retried, twice at most, and never an answer of the Worker itself:
///
/// - wrangler dev's proxy answers 503 "Your worker restarted mid-request" when its own hop to the
///   Worker fails for a non-GET request (seen rarely under load with concurrent requests); the
///   Worker never answered it, and wrangler asks to send it again;
/// - a body the server refuses from its Content-Length (413 before reading it) can make the
///   server close while the client is still writing: a broken pipe or reset instead of the
///   answer. Nothing was stored (the body never arrived whole); the request is sent again over a
///   socket that reads the answer while it writes ([`http_reading_while_writing`]).
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
    const PROXY_RESTART: &[u8] = b"Your worker restarted mid-request";
    let mut tries = 0;
    loop {
        tries += 1;
        match http_once(method, url, headers, body) {
            Ok(r) if r.status == 503 && r.body.starts_with(PROXY_RESTART) && tries < 3 => {
                eprintln!("[e2e] {method} {url}: wrangler dev's proxy lost the request; sending it again");
            }
            Ok(r) => return r,
            Err(e) if body.is_some() && (e.contains("Broken pipe") || e.contains("reset")) => {
                eprintln!("[e2e] {method} {url}: {e} while sending the body; sending it again");
                return http_reading_while_writing(method, url, headers, body.unwrap())
                    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            }
            Err(e) => panic!("{method} {url}: {e}"),
        }
    }
}

/// One HTTP/1.1 exchange over a plain socket whose body is written by another thread while this
/// one reads the answer to the end, so an answer sent before the body was read is not lost.
fn http_reading_while_writing(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Reply, String> {
    use std::io::Write;
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut sock = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut writer = sock.try_clone().map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    std::thread::scope(|scope| {
        // The server may stop reading at any point: a write error here is expected.
        scope.spawn(move || {
            let _ = writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(body));
        });
        // Read until the answer is complete (or the connection ends; a reset keeps what was read).
        let mut buf = [0u8; 64 * 1024];
        while !answer_complete(&raw) {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
        // Unblocks the writer if the server stopped reading.
        let _ = sock.shutdown(std::net::Shutdown::Both);
    });
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP answer before the connection closed: {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).ok_or("no status")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body).ok_or("malformed chunked body")?;
    }
    Ok(Reply { status, headers, body })
}

/// Whether `raw` holds a whole HTTP/1.1 answer: headers, then Content-Length bytes or a complete
/// chunked body.
fn answer_complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    let field = |name: &str| head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()));
    if field("transfer-encoding:").is_some_and(|v| v == "chunked") {
        return dechunk(body).is_some();
    }
    match field("content-length:").and_then(|v| v.parse::<usize>().ok()) {
        Some(n) => body.len() >= n,
        None => false,
    }
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&b[..end]).ok()?;
        let size = usize::from_str_radix(size_field.split(';').next()?.trim(), 16).ok()?;
        b = &b[end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

fn http_once(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<Reply, String> {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(60));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let res = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.status();
    let headers =
        resp.headers_names().into_iter().map(|n| (n.clone(), resp.header(&n).unwrap_or("").to_string())).collect();
    let mut body = Vec::new();
    resp.into_reader().take(256 << 20).read_to_end(&mut body).map_err(|e| e.to_string())?;
    Ok(Reply { status, headers, body })
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// A multipart/form-data body as curl -F would send it.
pub fn form_body(fields: &[(String, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = format!("------------------------{}", &hash::hex(&rand16())[..16]);
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Every file of an export as curl-style form fields: metadata.json, expoConfig.json, then
/// one field per export path.
pub fn export_fields(fixture_name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fixture(fixture_name);
    let mut fields = vec![
        ("metadata.json".to_string(), read(&dir.join("metadata.json"))),
        ("expoConfig.json".to_string(), read(&dir.join("expoConfig.json"))),
    ];
    let mut stack = vec![dir.join("_expo"), dir.join("assets")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                fields.push((p.strip_prefix(&dir).unwrap().display().to_string(), read(&p)));
            }
        }
    }
    fields
}

/// Verifies a part's `expo-signature` the way the client does: the lowercase header parsed as
/// an SFV dictionary of strings, `alg` and the echoed `keyid` checked, and RSASSA-PKCS1-v1_5 /
/// SHA-256 verified over the exact part bytes with the public key of a certificate that is
/// valid now and allowed to sign code.
pub fn verify_part_signature(part: &multipart::ParsedPart, cert_pem: &str, keyid: &str) {
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;
    use x509_cert::der::{DecodePem, Encode};
    let value = &part
        .headers
        .iter()
        .find(|(k, _)| k == "expo-signature")
        .unwrap_or_else(|| panic!("no lowercase expo-signature header: {:?}", part.headers))
        .1;
    let dict = expo_ota::protocol::sfv::parse_dictionary(value).unwrap();
    let get = |k: &str| match dict.iter().find(|(key, _)| key == k) {
        Some((_, expo_ota::protocol::sfv::Item::String(s))) => s.clone(),
        other => panic!("{k} must be a string member (iOS), got {other:?} in {value}"),
    };
    assert_eq!(get("alg"), "rsa-v1_5-sha256");
    assert_eq!(get("keyid"), keyid, "keyid must echo the client's");
    let sig = hash::base64_standard_decode(&get("sig")).expect("sig is padded standard base64");
    let cert = x509_cert::Certificate::from_pem(cert_pem).unwrap();
    let validity = &cert.tbs_certificate.validity;
    let now = std::time::SystemTime::now();
    assert!(
        validity.not_before.to_system_time() <= now && now <= validity.not_after.to_system_time(),
        "certificate not valid now"
    );
    let spki = cert.tbs_certificate.subject_public_key_info.to_der().unwrap();
    let key = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&spki).unwrap();
    VerifyingKey::<sha2::Sha256>::new(key)
        .verify(&part.body, &Signature::try_from(sig.as_slice()).unwrap())
        .unwrap_or_else(|e| panic!("signature does not verify over the part bytes: {e}"));
}
