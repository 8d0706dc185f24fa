//! Host-test fixtures for the deploy layer: a memory backend, request bodies, manifests, and a
//! store that can be paused at a chosen operation to replay an interleaving deterministically.

use crate::config::Limits;
use crate::deploy::api::CommitRequest;
use crate::deploy::dispatch::Backend;
use crate::deploy::service::Ctx;
use crate::deploy::writer::LocalWriter;
use crate::protocol::hash::Digests;
use crate::protocol::manifest::{build, channel_metadata, FileEntry, ManifestInput};
use crate::storage::layout::Target;
use crate::storage::store::{ListPage, MemoryStore, ObjectMeta, ObjectStore, PutOptions, StoreError};
use crate::validate::Platform;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

pub const ORIGIN: &str = "https://ota.example.com";

pub fn rand16() -> [u8; 16] {
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let mut b = [0x5a; 16];
    b[..8].copy_from_slice(&n.to_be_bytes());
    b
}

pub fn ctx(now_ms: u64) -> Ctx<'static> {
    Ctx { origin: ORIGIN, now_ms, limits: Limits::default(), random: &rand16 }
}

pub fn target(slug: &str) -> Target {
    Target::parse(slug, Platform::Ios.as_str(), "1.0.3").expect("a valid test target")
}

/// A manifest body naming `files` (bytes, extension; the first is the launch asset).
pub fn manifest(t: &Target, files: &[(&[u8], &str)], created_ms: u64, channel: &str) -> String {
    manifest_with_id(t, files, created_ms, channel, rand16())
}

/// The same with a chosen id (16 bytes made into a v4 UUID).
pub fn manifest_with_id(t: &Target, files: &[(&[u8], &str)], created_ms: u64, channel: &str, id: [u8; 16]) -> String {
    let entry = |(b, e): &(&[u8], &str)| FileEntry { digests: Digests::of(b), ext: e.to_string() };
    build(ManifestInput {
        id: crate::protocol::id::uuid_v4(id),
        created_at_ms: created_ms,
        runtime_version: &t.runtime_version,
        launch_asset: entry(&files[0]),
        assets: files[1..].iter().map(entry).collect(),
        metadata: channel_metadata(channel),
        expo_client: None,
        asset_base_url: &ctx(0).asset_base_url(t),
    })
    .render()
}

/// Stores `files` under `t` as an upload would.
pub fn upload(store: &MemoryStore, t: &Target, files: &[(&[u8], &str)]) {
    for (b, _) in files {
        store.put_file(&t.file_key(&Digests::of(b).sha256_hex()), b, "application/octet-stream");
    }
}

pub fn commit_request(body: String, channel: &str) -> CommitRequest {
    CommitRequest { manifest: body, channel: Some(channel.into()), ..Default::default() }
}

pub struct MemoryBackend {
    pub writer: LocalWriter<MemoryStore>,
    pub health: crate::health::store::MemoryHealth,
}

impl MemoryBackend {
    pub fn new(store: MemoryStore) -> Self {
        Self { writer: LocalWriter::new(Arc::new(store)), health: Default::default() }
    }
}

impl Backend for MemoryBackend {
    type Store = MemoryStore;
    type Writer = LocalWriter<MemoryStore>;
    fn store(&self) -> &MemoryStore {
        self.writer.store()
    }
    fn writer(&self) -> &LocalWriter<MemoryStore> {
        &self.writer
    }
    async fn health_report(&self, filter: &crate::health::store::Filter) -> Result<Vec<u8>, crate::error::ApiError> {
        let rule = crate::health::rule::Rule::default();
        let report = crate::health::store::report(&self.health, filter, &rule)?;
        Ok(serde_json::to_vec(&report).expect("serializes"))
    }
}

/// Wraps a store; once `pause_at` is set, the operation whose key contains it (and every later
/// operation) waits until `resume` — so a test can stop an operation at an exact step, run
/// another, and let the first finish. Counts operations so a test can see who touched the store.
pub struct PausingStore<S> {
    pub inner: S,
    /// Operations that reached the store (passed the gate).
    pub ops: AtomicUsize,
    /// Operations started, including ones waiting at the gate.
    pub attempts: AtomicUsize,
    pause_at: std::sync::Mutex<Option<String>>,
    paused: AtomicBool,
}

impl<S> PausingStore<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            ops: AtomicUsize::new(0),
            attempts: AtomicUsize::new(0),
            pause_at: Default::default(),
            paused: AtomicBool::new(false),
        }
    }
    pub fn pause_at(&self, key_part: &str) {
        *self.pause_at.lock().unwrap() = Some(key_part.to_string());
    }
    pub fn resume(&self) {
        *self.pause_at.lock().unwrap() = None;
        self.paused.store(false, Ordering::SeqCst);
    }
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
    async fn gate(&self, key: &str) {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let hit = self.pause_at.lock().unwrap().as_deref().is_some_and(|p| key.contains(p));
        if hit {
            self.paused.store(true, Ordering::SeqCst);
        }
        std::future::poll_fn(|cx| {
            if self.paused.load(Ordering::SeqCst) {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        self.ops.fetch_add(1, Ordering::SeqCst);
    }
}

impl<S: ObjectStore> ObjectStore for PausingStore<S> {
    async fn get(&self, key: &str) -> Result<Option<(ObjectMeta, Vec<u8>)>, StoreError> {
        self.gate(key).await;
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.gate(key).await;
        self.inner.head(key).await
    }
    async fn put(&self, key: &str, body: Vec<u8>, opts: PutOptions) -> Result<Option<ObjectMeta>, StoreError> {
        self.gate(key).await;
        self.inner.put(key, body, opts).await
    }
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        cursor: Option<String>,
        start_after: Option<&str>,
    ) -> Result<ListPage, StoreError> {
        self.gate(prefix).await;
        self.inner.list(prefix, delimiter, cursor, start_after).await
    }
    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        self.gate(keys.first().map_or("", String::as_str)).await;
        self.inner.delete(keys).await
    }
}

/// Polls a future once (no executor needed: every store here is ready at once unless paused).
pub fn poll_once<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    match f.poll(&mut std::task::Context::from_waker(waker)) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}
