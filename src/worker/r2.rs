//! [`ObjectStore`] on an R2 bucket binding.

use crate::storage::store::{Blocks, Condition, ListPage, ObjectMeta, ObjectStore, PutOptions, StoreError};
use worker::{Bucket, Conditional, Data, FixedLengthStream, HttpMetadata, Include, Object};

pub struct R2Store(pub Bucket);

fn meta(o: &Object) -> ObjectMeta {
    let sums = o.checksum();
    ObjectMeta {
        key: o.key(),
        size: o.size(),
        etag: o.etag(),
        sha256: sums.sha256.and_then(|v| v.try_into().ok()),
        md5: sums.md5.and_then(|v| v.try_into().ok()),
        content_type: o.http_metadata().content_type,
        custom: o.custom_metadata().map(|m| m.into_iter().collect()).unwrap_or_default(),
        uploaded_ms: o.uploaded().as_millis(),
    }
}

fn conditional(c: &Condition) -> Option<Conditional> {
    match c {
        Condition::None => None,
        Condition::IfAbsent => Some(Conditional { etag_does_not_match: Some("*".into()), ..Default::default() }),
        Condition::IfEtag(e) => Some(Conditional { etag_matches: Some(e.clone()), ..Default::default() }),
    }
}

/// R2 rejects a body whose digest differs from the one given; that is the client's fault.
fn put_error(e: worker::Error) -> StoreError {
    let s = e.to_string();
    let l = s.to_ascii_lowercase();
    if l.contains("checksum") || l.contains("digest") || l.contains("did not match") || l.contains("bad digest") {
        StoreError::DigestMismatch(s)
    } else if l.contains("length") || l.contains("unexpected end") {
        StoreError::LengthMismatch(s)
    } else {
        StoreError::Backend(s)
    }
}

fn backend(e: worker::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl R2Store {
    pub async fn put_stream(
        &self,
        key: &str,
        body: web_sys::ReadableStream,
        content_type: &str,
        sha256: [u8; 32],
        md5: Option<[u8; 16]>,
    ) -> Result<Object, StoreError> {
        let mut b = self
            .0
            .put(key, Data::ReadableStream(body))
            .http_metadata(HttpMetadata { content_type: Some(content_type.into()), ..Default::default() })
            .sha256(sha256.to_vec());
        if let Some(m) = md5 {
            b = b.md5(m.to_vec());
        }
        b.execute().await.map_err(put_error)?.ok_or_else(|| StoreError::Backend("R2 put returned nothing".into()))
    }

    async fn put_data(&self, key: &str, body: Data, opts: PutOptions) -> Result<Option<ObjectMeta>, StoreError> {
        let mut b =
            self.0.put(key, body).custom_metadata(opts.custom.into_iter().collect::<std::collections::HashMap<_, _>>());
        if let Some(ct) = opts.content_type {
            b = b.http_metadata(HttpMetadata { content_type: Some(ct), ..Default::default() });
        }
        if let Some(s) = opts.sha256 {
            b = b.sha256(s.to_vec());
        }
        if let Some(m) = opts.md5 {
            b = b.md5(m.to_vec());
        }
        if let Some(c) = conditional(&opts.condition) {
            b = b.only_if(c);
        }
        Ok(b.execute().await.map_err(put_error)?.as_ref().map(meta))
    }
}

impl ObjectStore for R2Store {
    async fn get(&self, key: &str) -> Result<Option<(ObjectMeta, Vec<u8>)>, StoreError> {
        let Some(o) = self.0.get(key).execute().await.map_err(backend)? else { return Ok(None) };
        let bytes = match o.body() {
            Some(b) => b.bytes().await.map_err(backend)?,
            None => Vec::new(),
        };
        Ok(Some((meta(&o), bytes)))
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let range = worker::Range::OffsetWithLength { offset, length: len };
        let Some(o) = self.0.get(key).range(range).execute().await.map_err(backend)? else { return Ok(None) };
        match o.body() {
            Some(b) => Ok(Some(b.bytes().await.map_err(backend)?)),
            None => Ok(Some(Vec::new())),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self.0.head(key).await.map_err(backend)?.as_ref().map(meta))
    }

    async fn put(&self, key: &str, body: Vec<u8>, opts: PutOptions) -> Result<Option<ObjectMeta>, StoreError> {
        self.put_data(key, Data::Bytes(body), opts).await
    }

    /// Streams the blocks through a FixedLengthStream (R2 needs the length of a streamed body):
    /// each block is copied into JS as R2 reads it, so the file is never joined in wasm memory
    /// nor held whole on the JS side.
    async fn put_blocks(&self, key: &str, blocks: Blocks, opts: PutOptions) -> Result<Option<ObjectMeta>, StoreError> {
        if blocks.len() <= 1 {
            return self.put(key, blocks.first().cloned().unwrap_or_default(), opts).await;
        }
        let len = blocks.iter().map(|b| b.len() as u64).sum();
        let chunks = futures_util::stream::iter((0..blocks.len()).map(move |i| Ok(blocks[i].clone())));
        self.put_data(key, Data::Stream(FixedLengthStream::wrap(chunks, len)), opts).await
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        cursor: Option<String>,
        start_after: Option<&str>,
    ) -> Result<ListPage, StoreError> {
        let mut b = self.0.list().prefix(prefix).include(vec![Include::HttpMetadata, Include::CustomMetadata]);
        if let Some(d) = delimiter {
            b = b.delimiter(d);
        }
        if let Some(c) = cursor {
            b = b.cursor(c);
        }
        if let Some(a) = start_after {
            b = b.start_after(a);
        }
        let page = b.execute().await.map_err(backend)?;
        Ok(ListPage {
            objects: page.objects().iter().map(meta).collect(),
            prefixes: page.delimited_prefixes(),
            cursor: if page.truncated() { page.cursor() } else { None },
        })
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.0.delete_multiple(keys.iter().map(String::as_str).collect()).await.map_err(backend)
    }
}
