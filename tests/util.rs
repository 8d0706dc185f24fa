//! Tiny harness for end-to-end tests: a real `wrangler dev` (workerd + on-disk R2) per test,
//! the real publish CLI, and the client's parsing rules.
#![allow(dead_code)]

use expo_ota::{protocol::hash, protocol::id, protocol::multipart, protocol::time};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
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

pub struct Server {
    pub base: String,
    pub token: String,
    child: Child,
    dir: tempfile::TempDir,
}

pub struct ServerOptions {
    pub admin_token: Option<String>,
    pub vars: Vec<(&'static str, String)>,
    /// PEM for the CODE_SIGNING_PRIVATE_KEY secret.
    pub signing_key: Option<String>,
    /// Deploy requests per minute per credential (DEPLOY_RATE_LIMITER).
    pub deploy_rate_limit: Option<u32>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            admin_token: Some(format!("test-{}", id::uuid_v4(rand16()))),
            vars: vec![],
            signing_key: None,
            deploy_rate_limit: None,
        }
    }
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(ServerOptions::default())
    }

    /// Runs wrangler dev from a config in a temp dir, so no developer `.dev.vars` leaks in and
    /// each server has its own R2 directory and secrets.
    pub fn start_with(opts: ServerOptions) -> Server {
        ensure_worker_built();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&opts.vars);
        if let Some(n) = opts.deploy_rate_limit {
            config = config
                .replace("simple = { limit = 600, period = 60 }", &format!("simple = {{ limit = {n}, period = 60 }}"));
        }
        std::fs::write(dir.path().join("wrangler.toml"), config).unwrap();
        let mut dev_vars = String::new();
        if let Some(t) = &opts.admin_token {
            dev_vars.push_str(&format!("ADMIN_TOKEN={t}\n"));
        }
        if let Some(pem) = &opts.signing_key {
            // dotenv: a double-quoted value turns \n into newlines.
            dev_vars.push_str(&format!("CODE_SIGNING_PRIVATE_KEY=\"{}\"\n", pem.trim().replace('\n', "\\n")));
        }
        std::fs::write(dir.path().join(".dev.vars"), dev_vars).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("wrangler.log")).unwrap();
        let mut cmd = Command::new(root().join("node_modules/.bin/wrangler"));
        cmd.args(["dev", "--config"])
            .arg(dir.path().join("wrangler.toml"))
            .args([
                "--ip",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--inspector-port",
                &free_port().to_string(),
                "--persist-to",
            ])
            .arg(dir.path().join("state"))
            .args(["--log-level", "log", "--show-interactive-dev-session=false"])
            .current_dir(dir.path())
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("spawn wrangler (run `npm ci` first)");
        let mut server = Server {
            base: format!("http://127.0.0.1:{port}"),
            token: opts.admin_token.unwrap_or_default(),
            child,
            dir,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("wrangler exited ({status}):\n{}", self.log());
            }
            if let Ok(r) = ureq::get(&format!("{}/health", self.base)).timeout(Duration::from_secs(2)).call() {
                if r.status() == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("wrangler dev did not become ready:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("wrangler.log")).unwrap_or_default()
    }

    /// Every object in the simulated R2 bucket as `key etag`, read from miniflare's object
    /// table, except the audit log (which records rejected operations too). Equal fingerprints
    /// mean no app data or token was written or deleted.
    pub fn state_fingerprint(&self) -> Vec<String> {
        self.objects().into_iter().filter(|k| !k.starts_with("_system/audit/")).collect()
    }

    /// Every object, audit log included.
    pub fn objects(&self) -> Vec<String> {
        let dir = self.dir.path().join("state/v3/r2/miniflare-R2BucketObject");
        let script = concat!(
            "import sqlite3, sys, glob\n",
            "for f in sorted(glob.glob(sys.argv[1] + '/*.sqlite')):\n",
            "    if not f.endswith('metadata.sqlite'):\n",
            "        for k, e in sqlite3.connect(f).execute('select key, etag from _mf_objects order by key'): print(k, e)\n",
        );
        let out =
            Command::new("python3").args(["-c", script]).arg(&dir).output().expect("python3 reads miniflare's sqlite");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
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

    pub fn publish(&self, slug: &str, fixture_name: &str, extra: &[&str]) -> Value {
        let dir = fixture(fixture_name);
        let mut args = vec!["publish", "--slug", slug, "--export-dir", dir.to_str().unwrap(), "--json"];
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        assert!(out.ok, "publish failed: {}\n{}", out.stderr, self.log());
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
}

impl Drop for Server {
    fn drop(&mut self) {
        // The group holds node and workerd; killing node alone leaves workerd running.
        let pgid = self.child.id() as i32;
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn test_config(vars: &[(&str, String)]) -> String {
    let src = std::fs::read_to_string(root().join("wrangler.toml")).unwrap();
    let main = root().join("build/worker/shim.mjs");
    let mut out = String::new();
    let mut in_build = false;
    for line in src.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_build = t == "[build]";
        }
        if in_build {
            continue;
        }
        if t.starts_with("main = ") {
            out.push_str(&format!("main = {:?}\n", main.display().to_string()));
            continue;
        }
        if let Some((k, _)) = vars.iter().find(|(k, _)| t.starts_with(&format!("{k} = "))) {
            let v = &vars.iter().find(|(kk, _)| kk == k).unwrap().1;
            out.push_str(&format!("{k} = {v:?}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn free_port() -> u16 {
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
    /// The directive type of a 200 directive response.
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

pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
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
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let headers =
        resp.headers_names().into_iter().map(|n| (n.clone(), resp.header(&n).unwrap_or("").to_string())).collect();
    let mut body = Vec::new();
    resp.into_reader().take(256 << 20).read_to_end(&mut body).unwrap();
    Reply { status, headers, body }
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

impl Server {
    pub fn post_form(&self, slug: &str, fields: &[(String, Vec<u8>)], extra: &[(&str, &str)]) -> Reply {
        let (ct, body) = form_body(fields);
        let auth = self.auth();
        let mut h = vec![("authorization", auth.as_str()), ("content-type", ct.as_str())];
        h.extend_from_slice(extra);
        http("POST", &self.url(&format!("/api/publish/{slug}")), &h, Some(&body))
    }

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

pub fn codesigning(path: &str) -> String {
    std::fs::read_to_string(fixture("codesigning").join(path)).unwrap()
}
