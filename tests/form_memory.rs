//! Peak heap of the single-request publish route while one 31 MiB file part streams through it
//! in 64 KiB chunks, measured by a counting global allocator (this binary holds one test, so
//! nothing else allocates meanwhile).

use expo_ota::config::Limits;
use expo_ota::deploy::formpublish::{self, FormPublish};
use expo_ota::deploy::service::{self, Ctx};
use expo_ota::protocol::hash::Digests;
use expo_ota::protocol::hash::FileHasher;
use expo_ota::storage::store::{Blocks, ListPage, MemoryStore, ObjectMeta, ObjectStore, PutOptions, StoreError};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(l.size(), SeqCst) + l.size();
            PEAK.fetch_max(now, SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        CURRENT.fetch_sub(l.size(), SeqCst);
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Like R2 seen from wasm: file bytes leave memory once stored (only their metadata stays).
#[derive(Default)]
struct SinkStore {
    small: MemoryStore,
    files: Mutex<BTreeMap<String, ObjectMeta>>,
}

impl SinkStore {
    fn record(&self, key: &str, d: Digests, opts: PutOptions) -> Result<Option<ObjectMeta>, StoreError> {
        if opts.sha256.is_some_and(|s| s != d.sha256) {
            return Err(StoreError::DigestMismatch("digest mismatch".into()));
        }
        let meta = ObjectMeta {
            key: key.into(),
            size: d.size,
            etag: d.md5_hex(),
            sha256: Some(d.sha256),
            md5: Some(d.md5),
            content_type: opts.content_type,
            custom: opts.custom,
            uploaded_ms: 0,
        };
        self.files.lock().unwrap().insert(key.into(), meta.clone());
        Ok(Some(meta))
    }
}

impl ObjectStore for SinkStore {
    async fn get(&self, key: &str) -> Result<Option<(ObjectMeta, Vec<u8>)>, StoreError> {
        self.small.get(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let file = self.files.lock().unwrap().get(key).cloned();
        match file {
            Some(m) => Ok(Some(m)),
            None => self.small.head(key).await,
        }
    }
    async fn put(&self, key: &str, body: Vec<u8>, opts: PutOptions) -> Result<Option<ObjectMeta>, StoreError> {
        if opts.sha256.is_some() {
            return self.record(key, Digests::of(&body), opts);
        }
        self.small.put(key, body, opts).await
    }
    async fn put_blocks(&self, key: &str, blocks: Blocks, opts: PutOptions) -> Result<Option<ObjectMeta>, StoreError> {
        let mut h = FileHasher::new();
        blocks.iter().for_each(|b| h.update(b));
        self.record(key, h.finish(), opts)
    }
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        cursor: Option<String>,
        start_after: Option<&str>,
    ) -> Result<ListPage, StoreError> {
        self.small.list(prefix, delimiter, cursor, start_after).await
    }
    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        self.small.delete(keys).await
    }
}

fn field(b: &mut Vec<u8>, name: &str, value: &[u8]) {
    b.extend_from_slice(format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes());
    b.extend_from_slice(value);
    b.extend_from_slice(b"\r\n");
}

fn rand16() -> [u8; 16] {
    [7; 16]
}

#[test]
fn form_31mib_part_peak_heap_is_one_part() {
    const PART: usize = 31 << 20;
    let meta = br#"{"fileMetadata":{"ios":{"bundle":"_expo/static/js/ios/index.hbc","assets":[]}}}"#;
    let bundle: Vec<u8> = (0..PART).map(|i| (i * 31 % 251) as u8).collect();
    let mut body = Vec::with_capacity(PART + 4096);
    field(&mut body, "runtimeVersion", b"1.0.0");
    field(&mut body, "metadata.json", meta);
    field(&mut body, "_expo/static/js/ios/index.hbc", &bundle);
    body.extend_from_slice(b"--XyZ--\r\n");
    drop(bundle);

    let ctx = Ctx {
        origin: "https://ota.example.com",
        now_ms: 1_700_000_000_000,
        limits: Limits::default(),
        random: &rand16,
    };
    let store = SinkStore::default();
    let baseline = CURRENT.load(SeqCst);
    PEAK.store(baseline, SeqCst);
    pollster::block_on(async {
        let mut form = FormPublish::new("demo-app", "XyZ", None, None).unwrap();
        for chunk in body.chunks(64 << 10) {
            form.feed(&store, chunk, &ctx).await.unwrap();
        }
        let commits = form.finish(&store, &ctx).await.unwrap();
        let store = &store;
        let ctx = &ctx;
        formpublish::commit_all(commits, |t, req| async move { service::commit(store, &t, req, ctx).await })
            .await
            .unwrap();
    });
    let peak = PEAK.load(SeqCst) - baseline;
    eprintln!("peak heap above baseline: {peak} bytes for a {PART}-byte part");
    assert_eq!(store.files.lock().unwrap().values().next().map(|m| m.size), Some(PART as u64));
    // One copy of the part, plus at most a few chunk-sized buffers and the small JSON state.
    let bound = PART + (1 << 20);
    assert!(
        peak <= bound,
        "peak heap {} bytes ({:.1} MiB) exceeds one part + 1 MiB ({bound})",
        peak,
        peak as f64 / (1 << 20) as f64
    );
}
