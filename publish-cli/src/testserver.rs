//! An in-process stand-in for the Worker, for the CLI's tests: a second native adapter over the
//! core. Every deploy request goes through `expo_ota::deploy::dispatch::handle` — the same
//! authorization, audit entries and operations as the Worker — with a `MemoryStore` and the
//! core's `LocalWriter`; manifest checks go through `check`. Only I/O lives here: a minimal
//! HTTP/1.1 listener (one request per connection), authentication as the Worker does it
//! (`TOKEN` is the ADMIN_TOKEN; scoped tokens are looked up and verified by the core), appending
//! what `dispatch` says to audit, follow-up writes after the response, and fault injection.

use expo_ota::access::audit;
use expo_ota::access::auth;
use expo_ota::check::{self, Reply};
use expo_ota::config::Limits;
use expo_ota::deploy::dispatch::{self, Backend};
use expo_ota::deploy::service::{self, Ctx};
use expo_ota::deploy::writer::{LocalWriter, WriteOp, Writer};
use expo_ota::error::ApiError;
use expo_ota::health::rule::Rule;
use expo_ota::http::route::{self, Route};
use expo_ota::storage::store::MemoryStore;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The server's ADMIN_TOKEN.
pub const TOKEN: &str = "test-token";

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// Runs against the server state just before a matching request is handled.
pub type Hook = Box<dyn FnOnce(&State) + Send>;

/// A hook for the request after `skip` more requests whose path contains `path`.
pub struct Before {
    pub path: &'static str,
    pub skip: usize,
    pub run: Hook,
}

pub struct State {
    pub store: Arc<MemoryStore>,
    writer: LocalWriter<MemoryStore>,
    /// Update-health counters; every check is ingested at once (no per-isolate batching here).
    pub health: expo_ota::health::store::MemoryHealth,
    /// `https://host` clients reach the server at.
    pub origin: String,
    /// `(path substring, status)`: the next request whose path matches gets that status instead.
    pub inject: Mutex<Vec<(&'static str, u16)>>,
    pub before: Mutex<Vec<Before>>,
    pub seen: Mutex<Vec<Seen>>,
    /// Users, apps, memberships and sessions (D1 in the Worker).
    pub accounts: expo_ota::access::accounts::memory::MemoryControlPlane,
}

impl Backend for State {
    type Store = MemoryStore;
    type Writer = LocalWriter<MemoryStore>;
    fn store(&self) -> &MemoryStore {
        &self.store
    }
    fn writer(&self) -> &LocalWriter<MemoryStore> {
        &self.writer
    }
    async fn health_report(&self, filter: &expo_ota::health::store::Filter) -> Result<Vec<u8>, ApiError> {
        let report = expo_ota::health::store::report(&self.health, filter, &Rule::default())?;
        Ok(serde_json::to_vec(&report).expect("serializes"))
    }
}

impl State {
    /// Applies one write as the app's writer, now (for hooks that change state mid-command).
    pub fn write(&self, op: WriteOp) -> Result<expo_ota::deploy::writer::WriteOutcome, ApiError> {
        with_ctx(&self.origin, |ctx| pollster::block_on(self.writer.write(op, ctx)))
    }
}

pub struct Server {
    pub url: String,
    pub state: Arc<State>,
}

pub async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let store = Arc::new(MemoryStore::new());
    let state = Arc::new(State {
        writer: LocalWriter::new(store.clone()),
        health: Default::default(),
        store,
        origin: url.clone(),
        inject: Mutex::default(),
        before: Mutex::default(),
        seen: Mutex::default(),
        accounts: Default::default(),
    });
    let st = state.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let st = st.clone();
            tokio::spawn(async move { serve(sock, &st).await });
        }
    });
    Server { url, state }
}

/// A request context stamped now, as the Worker makes one per request.
fn with_ctx<T>(origin: &str, f: impl FnOnce(&Ctx<'_>) -> T) -> T {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let random = || crate::commit::random_bytes().expect("OS randomness");
    f(&Ctx { origin, now_ms, limits: Limits::default(), random: &random })
}

async fn serve(mut sock: TcpStream, st: &State) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (first.next().unwrap_or_default().to_string(), first.next().unwrap_or_default().to_string());
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    if let Some(len) = headers.get("content-length").and_then(|l| l.parse::<usize>().ok()) {
        while body.len() < len {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    st.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.to_string(),
        headers: headers.clone(),
        body: body.clone(),
    });
    let hook = {
        let mut before = st.before.lock().unwrap();
        match before.iter().position(|b| path.contains(b.path)) {
            Some(i) if before[i].skip == 0 => Some(before.remove(i).run),
            Some(i) => {
                before[i].skip -= 1;
                None
            }
            None => None,
        }
    };
    if let Some(run) = hook {
        run(st);
    }
    let injected = {
        let mut inject = st.inject.lock().unwrap();
        inject.iter().position(|(p, _)| path.contains(p)).map(|i| inject.remove(i).1)
    };
    let (reply, after) = match injected {
        Some(status) => {
            let mut r = Reply::error(&ApiError::new(status, "injected failure"));
            r.headers.push(("retry-after", "0".into()));
            (r, Vec::new())
        }
        // The core's futures are not `Send` (and `Ctx` holds a `&dyn Fn`), so they cannot be held
        // across an await of this task; over memory they complete at once, so block on them here.
        None => with_ctx(&st.origin, |ctx| pollster::block_on(handle(&method, path, query, &headers, body, st, ctx))),
    };
    let mut out =
        format!("HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n", reply.status, reply.body.len());
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = sock.write_all(out.as_bytes()).await;
    let _ = sock.write_all(&reply.body).await;
    let _ = sock.shutdown().await;
    // Like the Worker's waitUntil: after the response, failures only logged.
    for op in after {
        if let Err(e) = st.write(op) {
            eprintln!("test server: follow-up write failed: {}", e.message);
        }
    }
}

/// One request: the reply, and the writes to run after responding.
async fn handle(
    method: &str,
    path: &str,
    query: &str,
    headers: &BTreeMap<String, String>,
    body: Vec<u8>,
    st: &State,
    ctx: &Ctx<'_>,
) -> (Reply, Vec<WriteOp>) {
    let header = |n: &str| headers.get(n).cloned();
    let route = match route::parse(method, path) {
        Ok(r) => r,
        Err(e) => return (Reply::error(&e), Vec::new()),
    };
    if !route.needs_auth() {
        return (public(route, query, &header, st).await.unwrap_or_else(|e| Reply::error(&e)), Vec::new());
    }
    if let Route::Accounts(r) = route {
        return (accounts(r, method, &header, &body, st, ctx).await.unwrap_or_else(|e| Reply::error(&e)), Vec::new());
    }
    // A signed-in user's session, as in the Worker; otherwise the token authentication below.
    let session = session_request(method, &header, &st.origin, |req| {
        pollster::block_on(expo_ota::access::accounts::api::authenticate(&st.accounts, req, ctx.now_ms))
    });
    if let Some(found) = session {
        return match found {
            Ok(s) => {
                let mut body = dispatch::BufferedBody { bytes: Some(body), store: &*st.store };
                let done = dispatch::handle(
                    st,
                    &s.principal,
                    dispatch::Request { route, query, header: &header },
                    &mut body,
                    ctx,
                )
                .await;
                if let Some(entry) = done.audit {
                    let _ = audit::append(&*st.store, entry, ctx).await;
                }
                (done.reply.unwrap_or_else(|e| Reply::error(&e)), done.after)
            }
            Err(e) => (Reply::error(&e), Vec::new()),
        };
    }
    let who = match auth::authenticate(&*st.store, Some(TOKEN), header("authorization").as_deref(), ctx.now_ms).await {
        Ok(who) => who,
        Err(failure) => {
            if let Some(entry) = failure.audit {
                let _ = audit::append(&*st.store, *entry, ctx).await;
            }
            return (Reply::error(&failure.error), Vec::new());
        }
    };
    let mut body = dispatch::BufferedBody { bytes: Some(body), store: &*st.store };
    let done = dispatch::handle(st, &who, dispatch::Request { route, query, header: &header }, &mut body, ctx).await;
    // No check cache here, so `done.invalidate` has nothing to drop.
    if let Some(entry) = done.audit {
        if let Err(e) = audit::append(&*st.store, entry, ctx).await {
            eprintln!("test server: audit write failed: {}", e.message);
        }
    }
    (done.reply.unwrap_or_else(|e| Reply::error(&e)), done.after)
}

/// What the Worker's check path and the app's writer do with a check's health signals, in one
/// step: count them, and halt (through the writer), audit and log what the rule decides.
fn observe_health(st: &State, req: &check::ManifestRequest, served: &str, header: &dyn Fn(&str) -> Option<String>) {
    use expo_ota::health::{self, notify, store};
    let signals = health::signals::from_manifest_request(req, header("eas-client-id").as_deref());
    let Some(batch) = health::batch_of(&req.target, Some(served), &signals) else { return };
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let halts = store::ingest(&st.health, &batch, &Rule::default(), now_ms).unwrap_or_default();
    for d in halts {
        let op = d.write_op();
        let (status, error) = match st.write(op) {
            Ok(_) => (201, None),
            Err(e) => (e.status, Some(e.message)),
        };
        if let Some(e) = &error {
            let _ = store::note_halt_error(&st.health, &d.key, e);
        }
        let entry = notify::audit_entry(&d, status, error.as_deref());
        let _ = with_ctx(&st.origin, |ctx| pollster::block_on(audit::append(&*st.store, entry, ctx)));
    }
}

fn session_request<T>(
    method: &str,
    header: &dyn Fn(&str) -> Option<String>,
    origin: &str,
    run: impl FnOnce(&expo_ota::access::accounts::api::SessionRequest<'_>) -> T,
) -> T {
    let (authorization, cookie) = (header("authorization"), header("cookie"));
    let (o, csrf) = (header("origin"), header("x-csrf-token"));
    run(&expo_ota::access::accounts::api::SessionRequest {
        method,
        authorization: authorization.as_deref(),
        cookie: cookie.as_deref(),
        origin: o.as_deref(),
        csrf: csrf.as_deref(),
        own_origin: origin,
    })
}

/// Account routes over the memory control plane and the host's PBKDF2, as the Worker serves them
/// over D1 and WebCrypto.
async fn accounts(
    route: expo_ota::access::accounts::route::AccountRoute,
    method: &str,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    st: &State,
    ctx: &Ctx<'_>,
) -> Result<Reply, ApiError> {
    use expo_ota::access::accounts::{api, password::NativeKdf, route::AccountRoute};
    if route == AccountRoute::Login {
        return api::login(&st.accounts, &NativeKdf, body, Some("127.0.0.1"), ctx).await;
    }
    let session = session_request(method, header, &st.origin, |req| {
        pollster::block_on(api::authenticate(&st.accounts, req, ctx.now_ms))
    })
    .transpose()?;
    let who = match &session {
        Some(s) => s.principal.clone(),
        None => auth::authenticate(&*st.store, Some(TOKEN), header("authorization").as_deref(), ctx.now_ms).await?,
    };
    let deps = api::Deps { cp: &st.accounts, kdf: &NativeKdf, store: &*st.store };
    let done = api::handle(&deps, &who, session.as_ref(), route, body, ctx).await;
    if let Some(entry) = done.audit {
        let _ = audit::append(&*st.store, entry, ctx).await;
    }
    done.reply
}

/// Routes without a token. The double holds no server key, like a Worker without
/// CODE_SIGNING_PRIVATE_KEY: only publisher signatures are served, and an unsigned update asked
/// to be signed is a 406.
async fn public(
    route: Route,
    query: &str,
    header: &dyn Fn(&str) -> Option<String>,
    st: &State,
) -> Result<Reply, ApiError> {
    match route {
        Route::Health => dispatch::json(200, &serde_json::json!({"ok": true})),
        Route::Manifest => {
            let req = check::parse_request(query, header)?;
            let current = service::current(&*st.store, &req.target, &req.channel).await?;
            let reply = check::respond(&req, &check::decide(&req, current.as_ref()), None);
            if let Some(served) = &current {
                observe_health(st, &req, &served.id, header);
            }
            Ok(reply)
        }
        other => Err(ApiError::not_found(format!("the test server does not serve {other:?}"))),
    }
}

/// The ADMIN_TOKEN, or a scoped token found by its id and checked against its digest — what
/// `src/worker/deploy.rs` does against R2.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::export::tests::fixture;
    use crate::printer::{Printer, PublishReport};
    use crate::sign::tests::{private_key_path, verifies};
    use crate::upload::Client;
    use crate::{manage, publish, rollback};
    use clap::Parser;
    use expo_ota::protocol::manifest::{Directive, Manifest};
    use expo_ota::storage::layout::Target;
    use expo_ota::storage::record::{RecordKind, UpdateRecord};
    use expo_ota::validate::Platform;

    fn cli(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("publish-cli").chain(args.iter().copied())).unwrap().command
    }

    async fn publish(server: &Server, app: &str, slug: &str, extra: &[&str]) -> anyhow::Result<PublishReport> {
        let dir = fixture(app);
        let mut args = vec![
            "publish",
            "--server",
            &server.url,
            "--slug",
            slug,
            "--export-dir",
            dir.to_str().unwrap(),
            "--json",
            "--git-commit",
            "0123abcd",
        ];
        args.extend_from_slice(extra);
        if !extra.contains(&"--auth-token") {
            args.extend_from_slice(&["--auth-token", TOKEN]);
        }
        let Command::Publish(a) = cli(&args) else { unreachable!() };
        publish::publish(a, &Printer::new(true)).await
    }

    /// Identity file uploads only (precompressed variants go to `…/<sha>/br|gz`).
    fn file_puts(server: &Server, path_part: &str) -> Vec<Seen> {
        let variant = |p: &str| p.ends_with("/br") || p.ends_with("/gz");
        seen(server, "PUT", path_part).into_iter().filter(|s| !variant(&s.path)).collect()
    }

    fn seen(server: &Server, method: &str, path_part: &str) -> Vec<Seen> {
        server
            .state
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == method && s.path.contains(path_part))
            .cloned()
            .collect()
    }

    #[tokio::test]
    async fn publishes_both_platforms_then_only_new_files() {
        let server = start().await;
        let r1 = publish(&server, "demo-app-v1", "demo-app", &[]).await.unwrap();
        assert!(!r1.dry_run);
        assert_eq!(r1.manifest_url, format!("{}/api/manifest?slug=demo-app", server.url));
        let platforms: Vec<_> = r1.updates.iter().map(|u| (u.platform.as_str(), u.runtime_version.as_str())).collect();
        assert_eq!(platforms, [("ios", "1.0.3"), ("android", "1.0.3")]);
        for u in &r1.updates {
            // Each platform has its own storage prefix, so shared assets go to both.
            assert_eq!((u.uploaded_files, u.skipped_files), (7, 0));
            assert_eq!(u.uploaded_bytes, u.total_bytes);
            assert_eq!(u.launch_asset.kind, "hermes bytecode v96");
        }
        assert_eq!(r1.updates[0].launch_asset.hash, "BovrwjGmW2ANn0bAAqk0QCDY2DLHOqX2Vd_Cz-q9MLc");
        let keys = server.state.store.keys();
        assert!(keys.contains(
            &"demo-app/ios/1.0.3/files/068bebc231a65b600d9f46c002a9344020d8d832c73aa5f655dfc2cfeabd30b7".to_string()
        ));
        assert!(keys.contains(
            &"demo-app/android/1.0.3/files/4dac9db3fa9ca072f7861fd916bf04bdceac6069d0f3a886f5e523d922e918f1"
                .to_string()
        ));

        // Upload requests carry the length, the file's type and its md5.
        let puts = file_puts(&server, "/api/files/demo-app/ios/1.0.3/");
        assert_eq!(puts.len(), 7);
        // The new bundle also went up brotli- and gzip-compressed; the PNGs did not.
        let variants: Vec<String> = seen(&server, "PUT", "/api/files/demo-app/ios/1.0.3/")
            .into_iter()
            .filter(|s| s.path.contains("068bebc231a65b600d9f46c002a9344020d8d832c73aa5f655dfc2cfeabd30b7/"))
            .map(|s| s.path.rsplit('/').next().unwrap().to_string())
            .collect();
        assert_eq!(variants, ["br", "gz"]);
        let bundle = puts
            .iter()
            .find(|s| s.path.ends_with("068bebc231a65b600d9f46c002a9344020d8d832c73aa5f655dfc2cfeabd30b7"))
            .unwrap();
        assert_eq!(bundle.headers["content-type"], "application/javascript");
        assert_eq!(bundle.headers["content-length"], "1754617");
        assert_eq!(bundle.headers["x-content-md5"], "c0c2f325fdb4408ce0c9958dbfd12fe7");
        assert_eq!(bundle.headers["authorization"], format!("Bearer {TOKEN}"));
        let font = puts
            .iter()
            .find(|s| s.path.ends_with("4dac9db3fa9ca072f7861fd916bf04bdceac6069d0f3a886f5e523d922e918f1"))
            .unwrap();
        assert_eq!(font.headers["content-type"], "font/ttf");
        // The publish verified what clients get, as each platform.
        let checks = seen(&server, "GET", "/api/manifest");
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[1].headers["expo-platform"], "android");
        assert_eq!(checks[1].headers["expo-protocol-version"], "1");

        // v2 changes only the bundles: one upload per platform, and a later createdAt.
        let r2 = publish(&server, "demo-app-v2", "demo-app", &["--message", "js only"]).await.unwrap();
        for (a, b) in r1.updates.iter().zip(&r2.updates) {
            assert_eq!((b.uploaded_files, b.skipped_files), (1, 6));
            assert_eq!(b.uploaded_bytes, b.launch_asset.bytes);
            assert!(b.created_at > a.created_at);
        }
        let Command::List(l) = cli(&["list", "--server", &server.url, "--slug", "demo-app", "--auth-token", TOKEN])
        else {
            unreachable!()
        };
        manage::list(l, &Printer::new(false)).await.unwrap();
        let list = crate::upload::Client::new(&server.url, TOKEN.into()).unwrap().list("demo-app").await.unwrap();
        assert_eq!(list.runtimes.len(), 2);
        for rt in &list.runtimes {
            let current: Vec<_> = rt.updates.iter().filter(|u| u.current).map(|u| u.id.clone()).collect();
            let expected = r2.updates.iter().find(|u| u.platform == rt.platform).unwrap().id.clone().unwrap();
            assert_eq!(current, [expected]);
            assert_eq!(rt.updates.len(), 2);
            assert_eq!(rt.updates[0].message.as_deref(), Some("js only"));
        }
    }

    #[tokio::test]
    async fn dry_run_uploads_and_commits_nothing() {
        let server = start().await;
        let r = publish(&server, "utility-app-v1", "utility-app", &["--dry-run"]).await.unwrap();
        assert!(r.dry_run);
        let u = &r.updates[0];
        assert_eq!((u.platform.as_str(), u.runtime_version.as_str(), u.id.as_deref()), ("android", "2.0.0", None));
        let would = u.would_upload.as_ref().unwrap();
        assert_eq!(would.len(), 8);
        assert_eq!(would.iter().map(|f| f.bytes).sum::<u64>(), u.total_bytes);
        assert_eq!(would[0].path, "_expo/static/js/android/index-747f5e310daebf5292a2f0ae384dcc9c.hbc");
        // The human-output path of the same command.
        let dir = fixture("utility-app-v1");
        let Command::Publish(a) = cli(&[
            "publish",
            "--server",
            &server.url,
            "--slug",
            "utility-app",
            "--export-dir",
            dir.to_str().unwrap(),
            "--auth-token",
            TOKEN,
            "--dry-run",
        ]) else {
            unreachable!()
        };
        publish::run(a, &Printer::new(false)).await.unwrap();
        assert_eq!(seen(&server, "POST", "/prepare").len(), 2);
        assert!(server.state.store.keys().is_empty());
        assert!(seen(&server, "PUT", "/").is_empty() && seen(&server, "POST", "/commit").is_empty());
    }

    #[tokio::test]
    async fn retries_transient_failures_only() {
        let server = start().await;
        server.state.inject.lock().unwrap().extend([("/prepare", 503), ("/prepare", 429), ("/api/files/", 500)]);
        let r = publish(&server, "utility-app-v1", "utility-app", &[]).await.unwrap();
        assert_eq!(r.updates[0].uploaded_files, 8);
        assert_eq!(seen(&server, "POST", "/prepare").len(), 3);
        assert_eq!(file_puts(&server, "/api/files/").len(), 9);

        server.state.inject.lock().unwrap().push(("/prepare", 400));
        let err = format!("{:#}", publish(&server, "utility-app-v1", "utility-app", &[]).await.unwrap_err());
        assert!(err.contains("prepare utility-app/android/2.0.0: HTTP 400: injected failure"), "{err}");
        assert_eq!(seen(&server, "POST", "/prepare").len(), 4, "a 400 is not retried");

        // Five 503s outlast the four attempts.
        server.state.inject.lock().unwrap().extend([("/prepare", 503); 5]);
        let err = format!("{:#}", publish(&server, "utility-app-v1", "utility-app", &[]).await.unwrap_err());
        assert!(err.contains("HTTP 503"), "{err}");
        assert_eq!(seen(&server, "POST", "/prepare").len(), 8);
    }

    #[tokio::test]
    async fn commit_conflict_is_retried_once_with_a_fresh_manifest() {
        let server = start().await;
        server.state.inject.lock().unwrap().push(("/commit", 409));
        let r = publish(&server, "utility-app-v1", "utility-app", &["--channel", "staging"]).await.unwrap();
        assert!(r.updates[0].id.is_some());
        assert_eq!(seen(&server, "POST", "/commit").len(), 2);
        assert_eq!(seen(&server, "POST", "/prepare").len(), 2);
        // Verification asked for the channel it published to.
        assert_eq!(seen(&server, "GET", "/api/manifest")[0].headers["expo-channel-name"], "staging");

        server.state.inject.lock().unwrap().extend([("/commit", 409), ("/commit", 409)]);
        let err = format!("{:#}", publish(&server, "utility-app-v1", "utility-app", &[]).await.unwrap_err());
        assert!(err.contains("HTTP 409"), "{err}");
    }

    #[tokio::test]
    async fn runtime_version_with_plus_and_parens() {
        let server = start().await;
        let r = publish(&server, "utility-app-v1", "utility-app", &["--runtime-version", "2.0.0+b(7)"]).await.unwrap();
        assert_eq!(r.updates[0].runtime_version, "2.0.0+b(7)");
        assert!(seen(&server, "POST", "/api/publish/utility-app/android/2.0.0%2Bb%287%29/commit").len() == 1);
        assert!(server.state.store.keys().iter().any(|k| k.starts_with("utility-app/android/2.0.0+b(7)/updates/")));
    }

    #[tokio::test]
    async fn bad_token_and_missing_platform_fail_clearly() {
        let server = start().await;
        let err =
            format!("{:#}", publish(&server, "demo-app-v1", "demo-app", &["--auth-token", "wrong"]).await.unwrap_err());
        assert!(err.contains("HTTP 401: invalid token"), "{err}");
        let err = format!(
            "{:#}",
            publish(&server, "utility-app-v1", "utility-app", &["--platform", "ios"]).await.unwrap_err()
        );
        assert!(err.contains("ios was not exported"), "{err}");
        assert!(server.state.seen.lock().unwrap().len() == 1, "a local error sends nothing");
    }

    #[tokio::test]
    async fn delete_needs_yes() {
        let server = start().await;
        publish(&server, "utility-app-v1", "utility-app", &[]).await.unwrap();
        let base = [
            "delete",
            "--server",
            &server.url,
            "--slug",
            "utility-app",
            "--platform",
            "android",
            "--runtime-version",
            "2.0.0",
            "--auth-token",
            TOKEN,
        ];
        let Command::Delete(d) = cli(&base) else { unreachable!() };
        let err = manage::delete(d, &Printer::new(true)).await.unwrap_err().to_string();
        assert!(err.contains("--yes"), "{err}");
        assert!(!server.state.store.keys().is_empty());
        let Command::Delete(d) = cli(&[&base[..], &["--yes"]].concat()) else { unreachable!() };
        manage::delete(d, &Printer::new(true)).await.unwrap();
        assert!(app_keys(&server).is_empty(), "only the audit log is left");
        let Command::Delete(d) = cli(&[&base[..], &["--yes"]].concat()) else { unreachable!() };
        let err = format!("{:#}", manage::delete(d, &Printer::new(true)).await.unwrap_err());
        assert!(err.contains("HTTP 404"), "{err}");
    }

    /// Runs a rollback, promote or delete command with the ADMIN_TOKEN and `--json`.
    async fn run(args: &[&str]) -> anyhow::Result<()> {
        run_as(TOKEN, args).await
    }

    async fn run_as(token: &str, args: &[&str]) -> anyhow::Result<()> {
        let all: Vec<&str> = args.iter().copied().chain(["--auth-token", token, "--json"]).collect();
        let out = Printer::new(true);
        match cli(&all) {
            Command::Rollback(a) => rollback::rollback(a, &out).await,
            Command::Promote(a) => rollback::promote(a, &out).await,
            Command::Delete(a) => manage::delete(a, &out).await,
            other => unreachable!("{other:?}"),
        }
    }

    fn key() -> String {
        private_key_path().to_str().unwrap().to_string()
    }

    fn target(slug: &str, platform: Platform, rv: &str) -> Target {
        Target::parse(slug, platform.as_str(), rv).unwrap()
    }

    async fn current(server: &Server, t: &Target, channel: &str) -> UpdateRecord {
        service::current(&*server.state.store, t, channel).await.unwrap().expect("a current update")
    }

    fn manifest_of(r: &UpdateRecord) -> Manifest {
        serde_json::from_str(&r.body).unwrap()
    }

    fn assert_signed(r: &UpdateRecord) {
        assert_eq!(r.key_id.as_deref(), Some("main"));
        assert!(verifies(r.body.as_bytes(), r.signature.as_deref().expect("signed")), "signature over the stored body");
    }

    const EXPECT_MAIN: &str = r#"sig, keyid="main", alg="rsa-v1_5-sha256""#;

    #[tokio::test]
    async fn signed_publish_stores_and_serves_the_publishers_signature() {
        let server = start().await;
        let k = key();
        let r = publish(&server, "demo-app-v1", "demo-app", &["--private-key", &k]).await.unwrap();
        assert!(r.updates.iter().all(|u| u.signed && u.channel.as_deref() == Some("production")));
        for p in [Platform::Ios, Platform::Android] {
            let rec = current(&server, &target("demo-app", p, "1.0.3"), "production").await;
            assert_signed(&rec);
            assert_eq!(manifest_of(&rec).metadata["channel"], "production");
        }
        // The commit carried only the signature; verification asked for it as a signing device does.
        let checks = seen(&server, "GET", "/api/manifest");
        assert_eq!(checks.len(), 2);
        assert!(checks.iter().all(|c| c.headers["expo-expect-signature"] == EXPECT_MAIN));
        let list = Client::new(&server.url, TOKEN.into()).unwrap().list("demo-app").await.unwrap();
        assert!(list.runtimes.iter().all(|rt| rt.updates[0].signed));

        // Unsigned publishes do not ask for a signature (the double, like a keyless Worker, would refuse).
        publish(&server, "demo-app-v2", "demo-app", &["--platform", "ios"]).await.unwrap();
        assert!(!seen(&server, "GET", "/api/manifest")[2].headers.contains_key("expo-expect-signature"));
        assert!(current(&server, &target("demo-app", Platform::Ios, "1.0.3"), "production").await.signature.is_none());
        // A key that cannot be read fails before anything is sent.
        let before = server.state.seen.lock().unwrap().len();
        let err = format!(
            "{:#}",
            publish(&server, "demo-app-v2", "demo-app", &["--private-key", "/nonexistent.pem"]).await.unwrap_err()
        );
        assert!(err.contains("--private-key /nonexistent.pem"), "{err}");
        assert_eq!(server.state.seen.lock().unwrap().len(), before);
    }

    #[tokio::test]
    async fn rollback_republishes_the_previous_update() {
        let server = start().await;
        let v1 = publish(&server, "demo-app-v1", "demo-app", &[]).await.unwrap();
        let v2 = publish(&server, "demo-app-v2", "demo-app", &[]).await.unwrap();
        let uploads = seen(&server, "PUT", "/api/files/").len();
        let base = ["rollback", "--server", &server.url, "--slug", "demo-app", "--runtime-version", "1.0.3"];
        let k = key();
        run(&[&base[..], &["--private-key", &k]].concat()).await.unwrap();
        assert_eq!(seen(&server, "PUT", "/api/files/").len(), uploads, "nothing is re-uploaded");
        for (a, b) in v1.updates.iter().zip(&v2.updates) {
            let t = target("demo-app", Platform::parse(&a.platform).unwrap(), "1.0.3");
            let now = current(&server, &t, "production").await;
            let old = a.id.clone().unwrap();
            assert!(now.id != old && now.id != b.id.clone().unwrap());
            assert!(now.created_at.to_string() > b.created_at.clone().unwrap(), "newer than what devices run");
            assert_eq!(now.republished_from.as_deref(), Some(old.as_str()));
            assert_eq!(now.message, Some(format!("rollback to {old}")));
            let m = manifest_of(&now);
            assert_eq!((m.id.as_str(), m.created_at.as_str()), (now.id.as_str(), now.created_at.to_string().as_str()));
            assert_eq!(m.launch_asset.hash, a.launch_asset.hash);
            assert_eq!(now.files, service::get_record(&*server.state.store, &t, &old).await.unwrap().files);
            assert_signed(&now);
        }
        let checks = seen(&server, "GET", "/api/manifest");
        assert!(checks[4..].iter().all(
            |c| c.headers["expo-channel-name"] == "production" && c.headers["expo-expect-signature"] == EXPECT_MAIN
        ));

        // --to an explicit update touches only its platform; an unknown id fails.
        let ios = target("demo-app", Platform::Ios, "1.0.3");
        let android_before = current(&server, &target("demo-app", Platform::Android, "1.0.3"), "production").await;
        let v2_ios = v2.updates[0].id.clone().unwrap();
        run(&[&base[..], &["--to", &v2_ios.to_uppercase(), "--message", "back to v2"]].concat()).await.unwrap();
        let now = current(&server, &ios, "production").await;
        assert_eq!(
            (now.republished_from.as_deref(), now.message.as_deref()),
            (Some(v2_ios.as_str()), Some("back to v2"))
        );
        assert!(now.signature.is_none());
        assert_eq!(
            current(&server, &target("demo-app", Platform::Android, "1.0.3"), "production").await,
            android_before
        );
        let err = format!(
            "{:#}",
            run(&[&base[..], &["--to", "0f8d2a8e-0000-4000-8000-000000000001"]].concat()).await.unwrap_err()
        );
        assert!(err.contains("is not published"), "{err}");
    }

    #[tokio::test]
    async fn rollback_to_embedded_and_back() {
        let server = start().await;
        publish(&server, "demo-app-v1", "demo-app", &[]).await.unwrap();
        let ios = target("demo-app", Platform::Ios, "1.0.3");
        let first = current(&server, &ios, "production").await;
        let base = [
            "rollback",
            "--server",
            &server.url,
            "--slug",
            "demo-app",
            "--runtime-version",
            "1.0.3",
            "--platform",
            "ios",
        ];
        // With one update there is nothing to go back to but the embedded one.
        let err = format!("{:#}", run(&base).await.unwrap_err());
        assert!(err.contains("no update before") && err.contains("\"embedded\""), "{err}");

        let k = key();
        run(&[&base[..], &["--to-embedded", "--private-key", &k]].concat()).await.unwrap();
        let now = current(&server, &ios, "production").await;
        assert_eq!(now.kind, RecordKind::RollBackToEmbedded);
        assert!(now.created_at > first.created_at);
        assert_eq!(now.body, Directive::roll_back_to_embedded(now.created_at.millis()).render());
        assert_signed(&now);
        // Verified as a device running a downloaded update: it must be told to roll back.
        let check = seen(&server, "GET", "/api/manifest").pop().unwrap();
        let (cur, emb) = (&check.headers["expo-current-update-id"], &check.headers["expo-embedded-update-id"]);
        assert!(
            expo_ota::protocol::id::is_canonical_uuid(cur)
                && expo_ota::protocol::id::is_canonical_uuid(emb)
                && cur != emb
        );
        assert_eq!(check.headers["expo-expect-signature"], EXPECT_MAIN);
        // Android is untouched.
        assert_eq!(
            current(&server, &target("demo-app", Platform::Android, "1.0.3"), "production").await.kind,
            RecordKind::Update
        );

        // Rolling back from the directive serves the last update again.
        run(&base).await.unwrap();
        let again = current(&server, &ios, "production").await;
        assert_eq!((again.kind, again.republished_from.as_deref()), (RecordKind::Update, Some(first.id.as_str())));
    }

    #[tokio::test]
    async fn promote_moves_staging_to_production() {
        let server = start().await;
        publish(&server, "utility-app-v1", "utility-app", &["--channel", "staging"]).await.unwrap();
        let t = target("utility-app", Platform::Android, "2.0.0");
        let staging = current(&server, &t, "staging").await;
        let uploads = seen(&server, "PUT", "/api/files/").len();
        let base = [
            "promote",
            "--server",
            &server.url,
            "--slug",
            "utility-app",
            "--runtime-version",
            "2.0.0",
            "--from",
            "staging",
            "--to",
            "production",
        ];
        let k = key();
        run(&[&base[..], &["--private-key", &k]].concat()).await.unwrap();
        assert_eq!(seen(&server, "PUT", "/api/files/").len(), uploads);
        let prod = current(&server, &t, "production").await;
        assert_ne!(prod.id, staging.id);
        assert!(prod.created_at > staging.created_at);
        assert_eq!(prod.republished_from.as_deref(), Some(staging.id.as_str()));
        assert_eq!(prod.message.as_deref(), Some("promoted from staging"));
        assert_eq!((prod.files.clone(), prod.channel.as_str()), (staging.files.clone(), "production"));
        let (pm, sm) = (manifest_of(&prod), manifest_of(&staging));
        assert_eq!((pm.metadata["channel"].as_str(), sm.metadata["channel"].as_str()), ("production", "staging"));
        assert_eq!((pm.launch_asset, pm.assets), (sm.launch_asset, sm.assets));
        assert_signed(&prod);
        assert_eq!(current(&server, &t, "staging").await, staging, "the source channel keeps its update");
        assert_eq!(seen(&server, "GET", "/api/manifest").pop().unwrap().headers["expo-channel-name"], "production");

        // A channel rolled back to embedded promotes as a fresh directive.
        run(&[
            "rollback",
            "--server",
            &server.url,
            "--slug",
            "utility-app",
            "--runtime-version",
            "2.0.0",
            "--channel",
            "staging",
            "--to-embedded",
        ])
        .await
        .unwrap();
        let directive = current(&server, &t, "staging").await;
        run(&base).await.unwrap();
        let prod = current(&server, &t, "production").await;
        assert_eq!(
            (prod.kind, prod.republished_from.as_deref()),
            (RecordKind::RollBackToEmbedded, Some(directive.id.as_str()))
        );
        assert!(prod.created_at > directive.created_at && prod.signature.is_none());

        let err = format!(
            "{:#}",
            run(&[
                "promote",
                "--server",
                &server.url,
                "--slug",
                "utility-app",
                "--runtime-version",
                "2.0.0",
                "--from",
                "beta",
                "--to",
                "production"
            ])
            .await
            .unwrap_err()
        );
        assert!(err.contains("nothing is current in channel \"beta\""), "{err}");
        assert!(run(&[
            "promote",
            "--server",
            &server.url,
            "--slug",
            "utility-app",
            "--runtime-version",
            "2.0.0",
            "--from",
            "a",
            "--to",
            "a"
        ])
        .await
        .is_err());
    }

    #[tokio::test]
    async fn delete_one_update_keeps_the_channel_served() {
        let server = start().await;
        let ios = target("demo-app", Platform::Ios, "1.0.3");
        let client = Client::new(&server.url, TOKEN.into()).unwrap();
        let only_ios = ["--platform", "ios"];
        let v1 = publish(&server, "demo-app-v1", "demo-app", &only_ios).await.unwrap().updates[0].id.clone().unwrap();
        let v2 = publish(&server, "demo-app-v2", "demo-app", &only_ios).await.unwrap().updates[0].id.clone().unwrap();
        let base = [
            "delete",
            "--server",
            &server.url,
            "--slug",
            "demo-app",
            "--platform",
            "ios",
            "--runtime-version",
            "1.0.3",
        ];

        // Without a key the server promotes the previous update, unsigned; no --yes needed.
        run(&[&base[..], &["--update-id", &v2]].concat()).await.unwrap();
        let now = current(&server, &ios, "production").await;
        assert_eq!((now.republished_from.as_deref(), now.signature.as_deref()), (Some(v1.as_str()), None));
        assert_eq!(service::get_record(&*server.state.store, &ios, &v2).await.unwrap_err().status, 404);

        // With a key the server's unsigned promotion is replaced by a signed copy of the same state.
        let k = key();
        let v3 = publish(&server, "demo-app-v3", "demo-app", &[&only_ios[..], &["--private-key", &k]].concat())
            .await
            .unwrap()
            .updates[0]
            .id
            .clone()
            .unwrap();
        run(&[&base[..], &["--update-id", &v3, "--private-key", &k]].concat()).await.unwrap();
        let signed = current(&server, &ios, "production").await;
        assert_eq!(signed.republished_from.as_deref(), Some(now.id.as_str()));
        assert_eq!(signed.message, Some(format!("promoted after deleting {v3}")));
        assert_signed(&signed);
        let history = client.list("demo-app").await.unwrap().runtimes.remove(0).updates;
        let unsigned = history.iter().find(|u| u.republished_from.as_deref() == Some(now.id.as_str()) && !u.signed);
        let unsigned = unsigned.expect("the server's promotion stays in history");
        assert!(!unsigned.current);
        // Deleted first; then re-signed through rollback, expecting the server's promotion current.
        let seen = server.state.seen.lock().unwrap().clone();
        let delete_at = seen.iter().rposition(|s| s.method == "DELETE").unwrap();
        let install = seen.iter().rposition(|s| s.path.ends_with("/rollback")).unwrap();
        assert!(delete_at < install);
        let sent: serde_json::Value = serde_json::from_slice(&seen[install].body).unwrap();
        assert_eq!(
            (sent["to"].as_str(), sent["expectedCurrent"].as_str()),
            (Some(now.id.as_str()), Some(unsigned.id.as_str()))
        );
        assert!(!seen[delete_at..].iter().any(|s| s.path.ends_with("/commit")), "commit never republishes");
        assert_eq!(service::get_record(&*server.state.store, &ios, &v3).await.unwrap_err().status, 404);

        // Deleting an update that is not current moves nothing.
        run(&[&base[..], &["--update-id", &v1, "--private-key", &k]].concat()).await.unwrap();
        assert_eq!(current(&server, &ios, "production").await, signed);

        // The last update of a channel gives way to a signed rollBackToEmbedded directive.
        let mut left = client.list("demo-app").await.unwrap().runtimes.remove(0).updates;
        assert_eq!(left.len(), 3, "two promotions and the signed copy");
        left.sort_by_key(|u| u.current);
        for id in left.iter().map(|u| &u.id) {
            run(&[&base[..], &["--update-id", id, "--private-key", &k]].concat()).await.unwrap();
        }
        let last = current(&server, &ios, "production").await;
        assert_eq!(last.kind, RecordKind::RollBackToEmbedded);
        assert_signed(&last);
        let err =
            format!("{:#}", run(&[&base[..], &["--update-id", &v1, "--private-key", &k]].concat()).await.unwrap_err());
        assert!(err.contains("HTTP 404"), "{err}");
    }

    /// Everything but the audit log and token records: what a deploy operation may change.
    fn app_keys(server: &Server) -> Vec<String> {
        server.state.store.keys().into_iter().filter(|k| !k.starts_with("_system/")).collect()
    }

    /// A token for `apps` with only `scopes`, minted with the ADMIN_TOKEN.
    async fn mint(server: &Server, apps: &[&str], scopes: &[&str]) -> (String, String) {
        let req = expo_ota::access::tokens::CreateTokenRequest {
            name: "ci-rollback".into(),
            apps: apps.iter().map(|a| a.to_string()).collect(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let created = Client::new(&server.url, TOKEN.into()).unwrap().create_token(&req).await.unwrap();
        (created.token, created.info.id)
    }

    /// The JSON bodies the CLI sent to `path_end`, in order.
    fn sent(server: &Server, path_end: &str) -> Vec<serde_json::Value> {
        let seen = server.state.seen.lock().unwrap();
        seen.iter().filter(|s| s.path.ends_with(path_end)).map(|s| serde_json::from_slice(&s.body).unwrap()).collect()
    }

    #[tokio::test]
    async fn rollback_only_token_rolls_back_and_promotes_signed() {
        let server = start().await;
        let v1 = publish(&server, "demo-app-v1", "demo-app", &[]).await.unwrap();
        let v2 = publish(&server, "demo-app-v2", "demo-app", &[]).await.unwrap();
        publish(&server, "utility-app-v1", "utility-app", &["--channel", "staging"]).await.unwrap();
        let (token, token_id) = mint(&server, &["demo-app", "utility-app"], &["rollback"]).await;
        // The token can neither read the history nor publish.
        let scoped = Client::new(&server.url, token.clone()).unwrap();
        assert_eq!(crate::upload::status_of(&scoped.list("demo-app").await.unwrap_err()), Some(403));
        let err =
            format!("{:#}", publish(&server, "demo-app-v3", "demo-app", &["--auth-token", &token]).await.unwrap_err());
        assert!(err.contains("HTTP 403"), "{err}");

        // Without --platform or `read`, both platforms are rolled back, signed with the publisher's key.
        let k = key();
        let before = server.state.seen.lock().unwrap().len();
        run_as(
            &token,
            &[
                "rollback",
                "--server",
                &server.url,
                "--slug",
                "demo-app",
                "--runtime-version",
                "1.0.3",
                "--private-key",
                &k,
            ],
        )
        .await
        .unwrap();
        for (a, b) in v1.updates.iter().zip(&v2.updates) {
            let t = target("demo-app", Platform::parse(&a.platform).unwrap(), "1.0.3");
            let now = current(&server, &t, "production").await;
            assert_eq!(now.republished_from, a.id, "{}", a.platform);
            assert!(now.created_at.to_string() > b.created_at.clone().unwrap());
            assert_signed(&now);
            assert_eq!(manifest_of(&now).launch_asset.hash, a.launch_asset.hash);
        }
        // What was current came from the device's view (no token), and both calls said so.
        let seen: Vec<Seen> = server.state.seen.lock().unwrap()[before..].to_vec();
        let views =
            seen.iter().filter(|s| s.path == "/api/manifest" && !s.headers.contains_key("expo-expect-signature"));
        assert_eq!(views.count(), 2);
        let calls = sent(&server, "/rollback");
        assert_eq!(calls.len(), 4, "prepare and install per platform");
        // Every platform is prepared before any is installed.
        let (prepares, installs) = calls.split_at(2);
        for ((prepare, install), v2u) in prepares.iter().zip(installs).zip(&v2.updates) {
            assert_eq!((prepare["prepareOnly"].as_bool(), install.get("prepareOnly")), (Some(true), None));
            assert_eq!(prepare["expectedCurrent"].as_str(), v2u.id.as_deref());
            assert_eq!(install["expectedCurrent"].as_str(), v2u.id.as_deref());
            assert!(install["signature"].is_string() && install["body"].is_string());
        }

        // Promote: utility-app has no iOS build; that platform is skipped, android moves.
        let staging = current(&server, &target("utility-app", Platform::Android, "2.0.0"), "staging").await;
        run_as(
            &token,
            &[
                "promote",
                "--server",
                &server.url,
                "--slug",
                "utility-app",
                "--runtime-version",
                "2.0.0",
                "--from",
                "staging",
                "--to",
                "production",
                "--message",
                "ship it",
            ],
        )
        .await
        .unwrap();
        let prod = current(&server, &target("utility-app", Platform::Android, "2.0.0"), "production").await;
        assert_eq!(
            (prod.republished_from.as_deref(), prod.message.as_deref(), prod.signature.as_deref()),
            (Some(staging.id.as_str()), Some("ship it"), None)
        );
        assert!(!app_keys(&server).iter().any(|k| k.starts_with("utility-app/ios/")));
        // With --platform a platform with nothing to promote is an error.
        let err = format!(
            "{:#}",
            run_as(
                &token,
                &[
                    "promote",
                    "--server",
                    &server.url,
                    "--slug",
                    "utility-app",
                    "--platform",
                    "ios",
                    "--runtime-version",
                    "2.0.0",
                    "--from",
                    "staging",
                    "--to",
                    "production"
                ]
            )
            .await
            .unwrap_err()
        );
        assert!(err.contains("HTTP 404") && err.contains("nothing is current in channel \"staging\""), "{err}");

        // Nor delete: refused, and audited as refused.
        let v2_ios = v2.updates[0].id.clone().unwrap();
        let delete = [
            "delete",
            "--server",
            &server.url,
            "--slug",
            "demo-app",
            "--platform",
            "ios",
            "--runtime-version",
            "1.0.3",
            "--update-id",
            &v2_ios,
        ];
        let err = format!("{:#}", run_as(&token, &delete).await.unwrap_err());
        assert!(err.contains("HTTP 403"), "{err}");

        // Every operation is in the audit log under the token, from the core's dispatcher.
        let log = Client::new(&server.url, TOKEN.into()).unwrap().audit(None, None, None, 1000).await.unwrap();
        let installed: Vec<_> = log
            .entries
            .iter()
            .filter(|e| e.actor == token_id && e.status == 201)
            .map(|e| (e.action.as_str(), e.slug.as_deref().unwrap(), e.platform.as_deref().unwrap()))
            .collect();
        // Newest first.
        assert_eq!(
            installed,
            [
                ("promote", "utility-app", "android"),
                ("rollback", "demo-app", "android"),
                ("rollback", "demo-app", "ios")
            ]
        );
        assert!(log.entries.iter().any(|e| e.actor == token_id && e.action == "delete-update" && e.status == 403));
    }

    /// Publishes `t`'s current files again under a new id, straight through the app's writer, as
    /// a publish from another machine would land.
    fn publish_now(st: &State, t: &Target) -> String {
        let cur = pollster::block_on(service::current(&*st.store, t, "production")).unwrap().unwrap();
        let latest = pollster::block_on(service::latest_created(&*st.store, t)).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let id = crate::commit::new_update_id().unwrap();
        let base = format!("{}{}", st.origin, t.asset_path());
        let m = expo_ota::protocol::manifest::republish(
            &manifest_of(&cur),
            id.clone(),
            service::next_created_ms(now, latest),
            "production",
            &base,
        );
        let request = expo_ota::deploy::api::CommitRequest { manifest: m.render(), ..Default::default() };
        st.write(WriteOp::Commit { target: t.clone(), request }).unwrap();
        id
    }

    #[tokio::test]
    async fn publish_between_prepare_and_install_fails_rollback_with_409() {
        let server = start().await;
        let only_ios = ["--platform", "ios"];
        publish(&server, "demo-app-v1", "demo-app", &only_ios).await.unwrap();
        publish(&server, "demo-app-v2", "demo-app", &only_ios).await.unwrap();
        let ios = target("demo-app", Platform::Ios, "1.0.3");
        let (scoped, _) = mint(&server, &["demo-app"], &["rollback"]).await;
        let k = key();
        let base = ["rollback", "--server", &server.url, "--slug", "demo-app", "--runtime-version", "1.0.3"];
        // Listed with the ADMIN_TOKEN, unsigned; then seen as a device sees it, signed.
        for (token, extra) in [(TOKEN, &[][..]), (scoped.as_str(), &["--private-key", k.as_str()][..])] {
            let landed = Arc::new(Mutex::new(None));
            let l = landed.clone();
            let run: Hook = Box::new(move |st: &State| {
                let id = publish_now(st, &target("demo-app", Platform::Ios, "1.0.3"));
                let keys: Vec<String> = st.store.keys().into_iter().filter(|k| !k.starts_with("_system/")).collect();
                *l.lock().unwrap() = Some((id, keys));
            });
            server.state.before.lock().unwrap().push(Before { path: "/rollback", skip: 1, run });
            let err = format!("{:#}", run_as(token, &[&base[..], extra].concat()).await.unwrap_err());
            assert!(err.contains("HTTP 409") && err.contains("changed after this command read it"), "{err}");
            assert!(err.contains("something was published since you looked"), "{err}");
            let (id, keys) = landed.lock().unwrap().take().expect("the hook ran between prepare and install");
            assert_eq!(app_keys(&server), keys, "nothing changed after the publish landed");
            assert_eq!(current(&server, &ios, "production").await.id, id);
        }
        // Run again, it rolls back from what is current now.
        let now = current(&server, &ios, "production").await;
        run_as(&scoped, &[&base[..], &["--platform", "ios"]].concat()).await.unwrap();
        let after = current(&server, &ios, "production").await;
        assert_ne!(after.id, now.id);
        assert_eq!(sent(&server, "/rollback").last().unwrap()["expectedCurrent"], now.id.as_str());
    }

    /// The native server counts health like the Worker (ingesting each check at once): a fleet
    /// failing on v2 halts it, devices on v2 get v1 republished, `health` and the audit say why.
    #[tokio::test]
    async fn failing_update_halts_and_health_reports_it() {
        let server = start().await;
        let v1 = publish(&server, "demo-app-v1", "demo-app", &["--platform", "ios"]).await.unwrap();
        let v2 = publish(&server, "demo-app-v2", "demo-app", &["--platform", "ios"]).await.unwrap();
        let (id1, id2) = (v1.updates[0].id.clone().unwrap(), v2.updates[0].id.clone().unwrap());
        let t = target("demo-app", Platform::Ios, "1.0.3");
        let client = Client::new(&server.url, "unused".into()).unwrap();
        for i in 0..60 {
            let device = format!("{i:08X}-0000-4000-8000-000000000000");
            let h = if i % 2 == 0 {
                vec![("eas-client-id", device), ("expo-current-update-id", id2.clone())]
            } else {
                vec![
                    ("eas-client-id", device),
                    ("expo-current-update-id", id1.clone()),
                    ("expo-recent-failed-update-ids", format!("\"{id2}\"")),
                ]
            };
            client.client_manifest(&t, &h).await.unwrap();
        }
        let now = current(&server, &t, "production").await;
        assert_eq!(now.republished_from.as_deref(), Some(id1.as_str()), "v2 halted: v1 republished");
        assert!(now.created_at.to_string() > v2.updates[0].created_at.clone().unwrap());

        let admin = Client::new(&server.url, TOKEN.into()).unwrap();
        let report = admin.health(&[("slug", "demo-app".to_string())]).await.unwrap();
        let u2 = report.updates.iter().find(|u| u.update_id == id2).unwrap();
        let halt = u2.halt.as_ref().expect("halted");
        assert_eq!((halt.by.as_str(), halt.error.as_deref()), ("system:health", None));
        assert!(u2.failed >= 5 && u2.failed + u2.launched >= 50, "{u2:?}");
        assert!(crate::health::lines(&report).iter().any(|l| l.contains(&id2) && l.ends_with("HALTED")));
        let audit = admin.audit(Some("demo-app"), None, None, 100).await.unwrap();
        let halts: Vec<_> = audit.entries.iter().filter(|e| e.action == "auto-halt").collect();
        assert_eq!(halts.len(), 1);
        assert_eq!(
            (halts[0].actor.as_str(), halts[0].status, &halts[0].update_ids),
            ("system:health", 201, &vec![id2])
        );
    }
}
