//! HTTP client for the deploy API. Every call goes through one retry loop: 429, 5xx and
//! connection failures are transient (the Worker or R2 hiccuped), any other 4xx is the caller's
//! mistake and retrying it would only repeat the error. No answer is trusted for its size: every
//! body is read through [`read_capped`], which refuses one over its limit before allocating it
//! (a declared Content-Length) or as soon as it grows past it (a stream), so a hostile or
//! broken server cannot make the CLI exhaust memory.

use crate::export::LocalFile;
use anyhow::{anyhow, bail, Context, Result};
use expo_ota::access::audit::AuditList;
use expo_ota::access::tokens::{CreateTokenRequest, CreateTokenResponse, TokenInfo, TokenList};
use expo_ota::check::explain::Explanation;
use expo_ota::deploy::api::*;
use expo_ota::deploy::rollout::RolloutRequest;
use expo_ota::storage::layout::Target;
use futures_util::StreamExt;
use indicatif::ProgressBar;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Body, Method, RequestBuilder, Response};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Largest JSON answer the CLI reads (the longest, a list of every update of an app, stays far
/// below it).
pub const MAX_JSON_RESPONSE_BYTES: usize = 16 << 20;
/// Largest manifest-check answer read when verifying a publish: a multipart body holding the
/// manifest the CLI committed (the server caps that at MAX_JSON_BYTES, 1 MiB by default) and
/// its extensions.
pub const MAX_MANIFEST_RESPONSE_BYTES: usize = 16 << 20;
/// Of an error answer only this much is read: its message is shown as one line anyway.
pub const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// The body of `resp`, refused with an error naming the limit when it is larger than `cap`.
pub async fn read_capped(what: &str, mut resp: Response, cap: usize) -> Result<Vec<u8>> {
    let too_big = |n: String| {
        anyhow!(
            "{what}: the server's answer is {n} bytes, over this CLI's limit of {cap} bytes for it; refusing to read it (is --server an expo-ota server?)"
        )
    };
    if let Some(len) = resp.content_length().filter(|l| *l > cap as u64) {
        return Err(too_big(len.to_string()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.with_context(|| format!("{what}: reading the answer"))? {
        if body.len() + chunk.len() > cap {
            return Err(too_big(format!("more than {cap}")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A non-2xx answer, carrying the server's `{"error": ...}` text.
#[derive(Debug)]
pub struct ServerError {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.message)
    }
}

impl std::error::Error for ServerError {}

/// The HTTP status behind an error, when the server answered.
pub fn status_of(e: &anyhow::Error) -> Option<u16> {
    e.downcast_ref::<ServerError>().map(|s| s.status)
}

#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    /// Caps both backoff and a server's Retry-After, so a bad header cannot hang the CLI.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 4, base: Duration::from_millis(250), max_delay: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    pub fn retryable_status(status: u16) -> bool {
        status == 429 || (500..=599).contains(&status)
    }
    /// Wait before retry number `retry` (0 = first retry): Retry-After when given, else doubling.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        retry_after.unwrap_or_else(|| self.base.saturating_mul(1 << retry.min(16))).min(self.max_delay)
    }
}

fn retry_after(resp: &Response) -> Option<Duration> {
    resp.headers().get(RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Errors that happened before a full answer arrived; the request may not have been processed.
fn transient(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request()
}

/// Percent-encodes one path segment, leaving only RFC 3986 unreserved characters (`+` → `%2B`).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn target_path(t: &Target) -> String {
    format!("{}/{}/{}", encode_segment(&t.slug), t.platform, encode_segment(&t.runtime_version))
}

pub struct Client {
    http: reqwest::Client,
    server: String,
    token: String,
    pub policy: RetryPolicy,
}

impl Client {
    /// `server` is already normalised (no trailing slash) by the CLI parser.
    pub fn new(server: &str, token: String) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("publish-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            .build()
            .context("building the HTTP client")?;
        Ok(Self { http, server: server.to_string(), token, policy: RetryPolicy::default() })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends the request `make` builds, rebuilding it for each attempt (a streamed body can only
    /// be sent once). Returns the first 2xx response.
    pub(crate) async fn send<F, Fut>(&self, what: &str, mut make: F) -> Result<Response>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<RequestBuilder>>,
    {
        let mut retry = 0;
        loop {
            let more = retry + 1 < self.policy.attempts;
            let err = match make().await?.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if !(more && RetryPolicy::retryable_status(status)) {
                        return Err(anyhow!(server_error(resp).await).context(what.to_string()));
                    }
                    let wait = self.policy.delay(retry, retry_after(&resp));
                    tokio::time::sleep(wait).await;
                    retry += 1;
                    continue;
                }
                Err(e) => e,
            };
            if !(more && transient(&err)) {
                return Err(anyhow!(err).context(what.to_string()));
            }
            tokio::time::sleep(self.policy.delay(retry, None)).await;
            retry += 1;
        }
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.server)).bearer_auth(&self.token)
    }

    pub(crate) async fn json<T: serde::de::DeserializeOwned>(what: &str, resp: Response) -> Result<T> {
        let body = read_capped(what, resp, MAX_JSON_RESPONSE_BYTES).await?;
        serde_json::from_slice(&body).with_context(|| format!("{what}: unexpected response body"))
    }

    pub async fn prepare(&self, t: &Target, files: Vec<String>) -> Result<PrepareResponse> {
        let what = format!("prepare {}", label(t));
        let body = PrepareRequest { files };
        let path = format!("/api/publish/{}/prepare", target_path(t));
        let resp = self.send(&what, || async { Ok(self.request(Method::POST, &path).json(&body)) }).await?;
        Self::json(&what, resp).await
    }

    /// Streams one file from disk with an explicit Content-Length; `bar` advances per chunk.
    pub async fn upload(&self, t: &Target, f: &LocalFile, bar: &ProgressBar) -> Result<UploadResponse> {
        let hex = f.digests.sha256_hex();
        let what = format!("upload {} to {}", f.path, label(t));
        let path = format!("/api/files/{}/{hex}", target_path(t));
        let sent = Arc::new(AtomicU64::new(0));
        let resp = self
            .send(&what, || async {
                // Undo the progress of a failed attempt before streaming again.
                bar.dec(sent.swap(0, Ordering::Relaxed));
                let file = tokio::fs::File::open(&f.abs).await.with_context(|| format!("opening {}", f.path))?;
                let len = file.metadata().await?.len();
                if len != f.digests.size {
                    bail!("{} changed on disk since it was hashed ({} → {len} bytes)", f.path, f.digests.size);
                }
                let (bar, sent) = (bar.clone(), sent.clone());
                let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).inspect(move |chunk| {
                    if let Ok(c) = chunk {
                        bar.inc(c.len() as u64);
                        sent.fetch_add(c.len() as u64, Ordering::Relaxed);
                    }
                });
                Ok(self
                    .request(Method::PUT, &path)
                    .header(CONTENT_LENGTH, len)
                    .header(CONTENT_TYPE, f.content_type())
                    .header("x-content-md5", f.digests.md5_hex())
                    .body(Body::wrap_stream(stream)))
            })
            .await?;
        let r: UploadResponse = Self::json(&what, resp).await?;
        if r.sha256 != hex || r.size != f.digests.size {
            bail!("{what}: server stored {} ({} bytes), expected {hex} ({} bytes)", r.sha256, r.size, f.digests.size);
        }
        Ok(r)
    }

    pub async fn commit(&self, t: &Target, req: &CommitRequest) -> Result<CommitResponse> {
        let what = format!("commit {}", label(t));
        let path = format!("/api/publish/{}/commit", target_path(t));
        let resp = self.send(&what, || async { Ok(self.request(Method::POST, &path).json(req)) }).await?;
        Self::json(&what, resp).await
    }

    /// `POST …/commit` with `prepareRevert`: the revert body to sign for this manifest.
    pub async fn prepare_revert(&self, t: &Target, req: &CommitRequest) -> Result<ToSign> {
        let what = format!("prepare the revert of {}", label(t));
        let path = format!("/api/publish/{}/commit", target_path(t));
        let resp = self.send(&what, || async { Ok(self.request(Method::POST, &path).json(req)) }).await?;
        Self::json(&what, resp).await
    }

    /// `POST /api/rollout/…` (scope `rollback`); the answer's shape depends on the action.
    pub async fn rollout<T: serde::de::DeserializeOwned>(&self, t: &Target, req: &RolloutRequest) -> Result<T> {
        let what = format!("rollout {}", label(t));
        let path = format!("/api/rollout/{}", target_path(t));
        let resp = self.send(&what, || async { Ok(self.request(Method::POST, &path).json(req)) }).await?;
        Self::json(&what, resp).await
    }

    /// `GET /api/explain?…` (scope `read`).
    pub async fn explain(&self, query: &[(&str, String)]) -> Result<Explanation> {
        let what = "explain".to_string();
        let resp = self.send(&what, || async { Ok(self.request(Method::GET, "/api/explain").query(query)) }).await?;
        Self::json(&what, resp).await
    }

    pub async fn list(&self, slug: &str) -> Result<ListResponse> {
        let what = format!("list {slug}");
        let resp = self
            .send(&what, || async { Ok(self.request(Method::GET, "/api/updates").query(&[("slug", slug)])) })
            .await?;
        Self::json(&what, resp).await
    }

    pub async fn delete(&self, t: &Target) -> Result<DeleteResponse> {
        let what = format!("delete {}", label(t));
        let path = format!("/api/updates/{}", target_path(t));
        let resp = self.send(&what, || async { Ok(self.request(Method::DELETE, &path)) }).await?;
        Self::json(&what, resp).await
    }

    /// One JSON call to an account route (`/api/auth/*`, `/api/users`, `/api/apps/*`).
    pub async fn account_call<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T> {
        let resp = self
            .send(what, || async {
                let r = self.request(method.clone(), path);
                Ok(match body {
                    Some(b) => r.json(b),
                    None => r,
                })
            })
            .await?;
        Self::json(what, resp).await
    }

    pub async fn create_token(&self, req: &CreateTokenRequest) -> Result<CreateTokenResponse> {
        let what = "create token";
        let resp = self.send(what, || async { Ok(self.request(Method::POST, "/api/tokens").json(req)) }).await?;
        Self::json(what, resp).await
    }

    pub async fn list_tokens(&self) -> Result<TokenList> {
        let what = "list tokens";
        let resp = self.send(what, || async { Ok(self.request(Method::GET, "/api/tokens")) }).await?;
        Self::json(what, resp).await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<TokenInfo> {
        let what = format!("revoke token {id}");
        let path = format!("/api/tokens/{}", encode_segment(id));
        let resp = self.send(&what, || async { Ok(self.request(Method::DELETE, &path)) }).await?;
        Self::json(&what, resp).await
    }

    /// One page of the audit log, newest first; `before` is a previous page's `nextCursor`.
    pub async fn audit(
        &self,
        slug: Option<&str>,
        since: Option<&str>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<AuditList> {
        let what = "read the audit log";
        let mut query = vec![("limit", limit.to_string())];
        query.extend(slug.map(|s| ("slug", s.to_string())));
        query.extend(since.map(|s| ("since", s.to_string())));
        query.extend(before.map(|s| ("before", s.to_string())));
        let resp = self.send(what, || async { Ok(self.request(Method::GET, "/api/audit").query(&query)) }).await?;
        Self::json(what, resp).await
    }

    /// `GET /api/health` with the filters given.
    pub async fn health(&self, query: &[(&str, String)]) -> Result<expo_ota::health::store::HealthReport> {
        let what = "read update health";
        let resp = self.send(what, || async { Ok(self.request(Method::GET, "/api/health").query(query)) }).await?;
        Self::json(what, resp).await
    }

    pub async fn delete_update(&self, t: &Target, id: &str) -> Result<DeleteUpdateResponse> {
        let what = format!("delete update {id} of {}", label(t));
        let path = format!("/api/updates/{}/{id}", target_path(t));
        let resp = self.send(&what, || async { Ok(self.request(Method::DELETE, &path)) }).await?;
        Self::json(&what, resp).await
    }

    /// `POST …/rollback` (scope `rollback`): with `prepareOnly` the body to sign ([`ToSign`],
    /// nothing written), else what was installed ([`CommitResponse`]).
    pub async fn rollback<T: serde::de::DeserializeOwned>(&self, t: &Target, req: &RollbackRequest) -> Result<T> {
        self.release("rollback", t, req).await
    }

    /// `POST …/promote` (scope `rollback`), answered like [`Client::rollback`].
    pub async fn promote<T: serde::de::DeserializeOwned>(&self, t: &Target, req: &PromoteRequest) -> Result<T> {
        self.release("promote", t, req).await
    }

    async fn release<T: serde::de::DeserializeOwned>(
        &self,
        op: &str,
        t: &Target,
        req: &impl serde::Serialize,
    ) -> Result<T> {
        let what = format!("{op} {}", label(t));
        let path = format!("/api/updates/{}/{op}", target_path(t));
        let resp = self.send(&what, || async { Ok(self.request(Method::POST, &path).json(req)) }).await?;
        Self::json(&what, resp).await
    }

    /// What a protocol-1 client of this platform/runtime receives when it sends `headers`
    /// (channel, expected signature, ...): (content-type, body).
    pub async fn client_manifest(&self, t: &Target, headers: &[(&str, String)]) -> Result<(String, Vec<u8>)> {
        let what = format!("fetch manifest of {}", label(t));
        let resp = self
            .send(&what, || async {
                let mut rb = self
                    .http
                    .get(format!("{}/api/manifest", self.server))
                    .query(&[("slug", t.slug.as_str())])
                    .header("expo-platform", t.platform.as_str())
                    .header("expo-runtime-version", t.runtime_version.as_str())
                    .header("expo-protocol-version", "1");
                for (k, v) in headers {
                    rb = rb.header(*k, v);
                }
                Ok(rb)
            })
            .await?;
        let ct = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let body = read_capped(&what, resp, MAX_MANIFEST_RESPONSE_BYTES).await?;
        Ok((ct, body))
    }
}

pub fn label(t: &Target) -> String {
    format!("{}/{}/{}", t.slug, t.platform, t.runtime_version)
}

/// Turns an error response into one line: the server's `error` field, else the start of the
/// body; only the first [`MAX_ERROR_BODY_BYTES`] are read.
async fn server_error(mut resp: Response) -> ServerError {
    let status = resp.status();
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY_BYTES {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c[..c.len().min(MAX_ERROR_BODY_BYTES - body.len())]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_string))
        .unwrap_or_else(|| {
            if text.trim().is_empty() {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                text.chars().take(200).collect()
            }
        });
    // One line, at most 500 characters, nothing a terminal would interpret.
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut message: String = line.chars().take(500).collect();
    if line.chars().nth(500).is_some() {
        message.push('…');
    }
    ServerError { status: status.as_u16(), message: crate::printer::escape_for_terminal(&message) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_classification() {
        for s in [429, 500, 502, 503, 504, 599] {
            assert!(RetryPolicy::retryable_status(s), "{s}");
        }
        // Client errors are final: auth, validation, digest mismatch, no length, too large, conflict.
        for s in [400, 401, 403, 404, 409, 411, 413, 422, 200, 201, 304] {
            assert!(!RetryPolicy::retryable_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_doubles_and_honours_retry_after() {
        let p = RetryPolicy::default();
        let ms = |d: Duration| d.as_millis();
        assert_eq!([0, 1, 2].map(|r| ms(p.delay(r, None))), [250, 500, 1000]);
        assert_eq!(p.delay(0, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(p.delay(0, Some(Duration::from_secs(3600))), p.max_delay);
        assert_eq!(p.delay(40, None), p.max_delay);
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("1.0.0+b(1)"), "1.0.0%2Bb%281%29");
        assert_eq!(encode_segment("2.0.0"), "2.0.0");
        let t = Target {
            slug: expo_ota::validate::Slug::parse("demo-app").unwrap(),
            platform: expo_ota::validate::Platform::Ios,
            runtime_version: expo_ota::validate::RuntimeVersion::parse("1+2").unwrap(),
        };
        assert_eq!(target_path(&t), "demo-app/ios/1%2B2");
        // The server's router decodes it back to the same target.
        let route = expo_ota::http::route::parse("POST", &format!("/api/publish/{}/prepare", target_path(&t))).unwrap();
        assert_eq!(route, expo_ota::http::route::Route::PublishPrepare { target: t });
    }
}
