//! The storage seam: R2 in the Worker, memory in host tests. Only small objects (records,
//! pointers) go through `get`/`put` here; file bytes stream in the adapter and never enter wasm.

/// What a store can fail with. The HTTP status each one maps to is decided in one place,
/// `crate::http::status`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The bytes sent are not the bytes their digest promised (the client's fault).
    #[error("uploaded bytes do not match their digest: {0}")]
    DigestMismatch(String),
    /// The body ended before (or after) its declared length (the client's fault).
    #[error("body does not match its Content-Length: {0}")]
    LengthMismatch(String),
    /// An object the server wrote cannot be read back as what it wrote.
    #[error("corrupt stored object: {0}")]
    Corrupt(String),
    /// The storage service failed.
    #[error("storage error: {0}")]
    Backend(String),
}
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub sha256: Option<[u8; 32]>,
    pub md5: Option<[u8; 16]>,
    pub content_type: Option<String>,
    pub custom: BTreeMap<String, String>,
    /// When the object was written (ms since epoch): the garbage collector's grace period.
    pub uploaded_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Condition {
    #[default]
    None,
    /// Create only; fails when the key exists.
    IfAbsent,
    /// Replace only the version we read.
    IfEtag(String),
}

#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    pub content_type: Option<String>,
    /// Digests the store must verify on write (R2 rejects a mismatching body) and record.
    pub sha256: Option<[u8; 32]>,
    pub md5: Option<[u8; 16]>,
    pub custom: BTreeMap<String, String>,
    pub condition: Condition,
}

#[derive(Clone, Debug, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    pub prefixes: Vec<String>,
    pub cursor: Option<String>,
}

/// A file's bytes in blocks that were never joined into one buffer (the form publish route holds
/// a part this way); shared so one part can be stored under several keys without a copy.
pub type Blocks = std::sync::Arc<[Vec<u8>]>;

#[allow(async_fn_in_trait)]
pub trait ObjectStore {
    async fn get(&self, key: &str) -> Result<Option<(ObjectMeta, Vec<u8>)>, StoreError>;
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;
    /// `Ok(None)` when the condition did not hold (nothing was written).
    async fn put(&self, key: &str, body: Vec<u8>, opts: PutOptions) -> Result<Option<ObjectMeta>, StoreError>;
    /// `put` for a file held in blocks. R2 streams the blocks without joining them; a store that
    /// keeps bytes in memory (this default, so `MemoryStore`) joins them.
    async fn put_blocks(&self, key: &str, blocks: Blocks, opts: PutOptions) -> Result<Option<ObjectMeta>, StoreError> {
        self.put(key, blocks.concat(), opts).await
    }
    /// At most `len` bytes from `offset` (fewer past the end), `None` when the key is absent. R2
    /// reads only that range; this default (memory stores) slices a whole read.
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(key).await?.map(|(_, b)| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
            let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX)).min(b.len());
            b[start..end].to_vec()
        }))
    }
    /// One page (at most 1000 keys) under `prefix`, continuing from `cursor` or starting after
    /// the key `start_after`; with a delimiter, common prefixes are folded.
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        cursor: Option<String>,
        start_after: Option<&str>,
    ) -> Result<ListPage, StoreError>;
    /// Deletes up to 1000 keys.
    async fn delete(&self, keys: &[String]) -> Result<(), StoreError>;
}

/// Every key under `prefix`, following cursors past the 1000-per-page limit.
pub async fn list_all<S: ObjectStore>(store: &S, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
    list_all_after(store, prefix, None).await
}

/// Every key under `prefix` that sorts after `start_after`.
pub async fn list_all_after<S: ObjectStore>(
    store: &S,
    prefix: &str,
    start_after: Option<&str>,
) -> Result<Vec<ObjectMeta>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list(prefix, None, cursor.clone(), if cursor.is_none() { start_after } else { None }).await?;
        out.extend(page.objects);
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// In-memory store with R2's semantics (conditional puts, paged listing); for host tests.
#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, (ObjectMeta, Vec<u8>)>>,
    pub page_size: usize,
    version: Mutex<u64>,
    /// The clock stamped on writes (`uploaded_ms`); tests move it to age objects.
    now_ms: std::sync::atomic::AtomicU64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self { page_size: 1000, ..Default::default() }
    }
    /// Stores a file as the upload route would (digests recorded, like R2 checksums).
    pub fn put_file(&self, key: &str, bytes: &[u8], content_type: &str) {
        let d = crate::protocol::hash::Digests::of(bytes);
        let meta = ObjectMeta {
            key: key.into(),
            size: bytes.len() as u64,
            etag: d.md5_hex(),
            sha256: Some(d.sha256),
            md5: Some(d.md5),
            content_type: Some(content_type.into()),
            custom: BTreeMap::new(),
            uploaded_ms: self.now(),
        };
        self.objects.lock().unwrap().insert(key.into(), (meta, bytes.to_vec()));
    }
    /// Sets the time stamped on later writes.
    pub fn set_now(&self, ms: u64) {
        self.now_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }
    fn now(&self) -> u64 {
        self.now_ms.load(std::sync::atomic::Ordering::Relaxed)
    }
    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }
    pub fn bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.objects.lock().unwrap().get(key).map(|(_, b)| b.clone())
    }
}

impl ObjectStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<(ObjectMeta, Vec<u8>)>, StoreError> {
        Ok(self.objects.lock().unwrap().get(key).cloned())
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self.objects.lock().unwrap().get(key).map(|(m, _)| m.clone()))
    }
    async fn put(&self, key: &str, body: Vec<u8>, opts: PutOptions) -> Result<Option<ObjectMeta>, StoreError> {
        let mut objects = self.objects.lock().unwrap();
        let existing = objects.get(key).map(|(m, _)| m.etag.clone());
        let ok = match &opts.condition {
            Condition::None => true,
            Condition::IfAbsent => existing.is_none(),
            Condition::IfEtag(e) => existing.as_deref() == Some(e.as_str()),
        };
        if !ok {
            return Ok(None);
        }
        let mut v = self.version.lock().unwrap();
        *v += 1;
        let d = crate::protocol::hash::Digests::of(&body);
        if opts.sha256.is_some_and(|s| s != d.sha256) || opts.md5.is_some_and(|m| m != d.md5) {
            return Err(StoreError::DigestMismatch("body does not match its digest".into()));
        }
        let meta = ObjectMeta {
            key: key.into(),
            size: body.len() as u64,
            etag: format!("{}-{}", d.md5_hex(), *v),
            sha256: opts.sha256,
            md5: Some(d.md5),
            content_type: opts.content_type,
            custom: opts.custom,
            uploaded_ms: self.now(),
        };
        objects.insert(key.into(), (meta.clone(), body));
        Ok(Some(meta))
    }
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        cursor: Option<String>,
        start_after: Option<&str>,
    ) -> Result<ListPage, StoreError> {
        let objects = self.objects.lock().unwrap();
        let mut page = ListPage::default();
        let mut prefixes = std::collections::BTreeSet::new();
        let start = cursor.or(start_after.map(str::to_string)).unwrap_or_default();
        for (k, (m, _)) in objects.range(start.clone()..).filter(|(k, _)| k.starts_with(prefix) && **k > start) {
            if page.objects.len() + prefixes.len() >= self.page_size {
                page.cursor = page.objects.last().map(|o: &ObjectMeta| o.key.clone()).or(Some(k.clone()));
                break;
            }
            match delimiter.and_then(|d| k[prefix.len()..].find(d).map(|i| &k[..prefix.len() + i + d.len()])) {
                Some(p) => {
                    prefixes.insert(p.to_string());
                }
                None => page.objects.push(m.clone()),
            }
        }
        page.prefixes = prefixes.into_iter().collect();
        Ok(page)
    }
    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut objects = self.objects.lock().unwrap();
        for k in keys {
            objects.remove(k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_puts() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            let a = s
                .put("k", b"1".to_vec(), PutOptions { condition: Condition::IfAbsent, ..Default::default() })
                .await
                .unwrap()
                .unwrap();
            assert!(s
                .put("k", b"2".to_vec(), PutOptions { condition: Condition::IfAbsent, ..Default::default() })
                .await
                .unwrap()
                .is_none());
            assert!(s
                .put(
                    "k",
                    b"2".to_vec(),
                    PutOptions { condition: Condition::IfEtag("nope".into()), ..Default::default() }
                )
                .await
                .unwrap()
                .is_none());
            assert!(s
                .put("k", b"2".to_vec(), PutOptions { condition: Condition::IfEtag(a.etag), ..Default::default() })
                .await
                .unwrap()
                .is_some());
            assert_eq!(s.bytes("k").unwrap(), b"2");
        });
    }

    #[test]
    fn paged_listing() {
        pollster::block_on(async {
            let mut s = MemoryStore::new();
            s.page_size = 3;
            for i in 0..10 {
                s.put_file(&format!("p/{i}"), b"x", "a/b");
            }
            s.put_file("q/0", b"x", "a/b");
            let all = list_all(&s, "p/").await.unwrap();
            assert_eq!(all.len(), 10);
            let folded = s.list("", Some("/"), None, None).await.unwrap();
            assert_eq!(folded.prefixes, vec!["p/".to_string(), "q/".to_string()]);
            let after = list_all_after(&s, "p/", Some("p/6")).await.unwrap();
            assert_eq!(after.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["p/7", "p/8", "p/9"]);
        });
    }
}
