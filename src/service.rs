//! Deploy operations over any [`ObjectStore`]: the same code runs on R2 in the Worker and on
//! memory in host tests.

use crate::api::*;
use crate::check::DEFAULT_CHANNEL;
use crate::config::Limits;
use crate::error::ApiError;
use crate::hash;
use crate::layout::Target;
use crate::manifest;
use crate::record::UpdateRecord;
use crate::store::{list_all, Condition, ObjectMeta, ObjectStore, PutOptions};
use crate::{time, validate};
use std::collections::{BTreeMap, BTreeSet};

/// How far in the future a publisher's createdAt may be (clock skew). A createdAt further ahead
/// would block every later publish until the wall clock passes it.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

pub struct Ctx<'a> {
    /// `https://host` the clients reach this server at (PUBLIC_URL, else the request's origin).
    pub origin: &'a str,
    pub now_ms: u64,
    pub limits: Limits,
}

impl Ctx<'_> {
    pub fn asset_base_url(&self, t: &Target) -> String {
        format!("{}{}", self.origin, t.asset_path())
    }
}

/// The current update of a channel, or `None` when nothing is published.
pub async fn current<S: ObjectStore>(store: &S, t: &Target, channel: &str) -> Result<Option<UpdateRecord>, ApiError> {
    match store.get(&t.channel_key(channel)).await? {
        Some((_, bytes)) => Ok(Some(UpdateRecord::from_json(&bytes)?)),
        None => Ok(None),
    }
}

pub async fn prepare<S: ObjectStore>(store: &S, t: &Target, req: &PrepareRequest, ctx: &Ctx<'_>) -> Result<PrepareResponse, ApiError> {
    if req.files.len() > ctx.limits.max_files_per_update {
        return Err(too_many_files(req.files.len(), ctx.limits));
    }
    for f in &req.files {
        hash::parse_hex::<32>(f).ok_or_else(|| ApiError::bad_request("files must be lowercase SHA-256 hex digests"))?;
    }
    let present: BTreeSet<String> = list_all(store, &t.files_prefix()).await?.into_iter().map(|o| o.key).collect();
    let mut seen = BTreeSet::new();
    let missing = req.files.iter().filter(|f| seen.insert(*f) && !present.contains(&t.file_key(f))).cloned().collect();
    let latest = records(store, t).await?.into_iter().map(|(_, created)| created).max();
    Ok(PrepareResponse {
        missing,
        asset_base_url: ctx.asset_base_url(t),
        latest_created_at: latest.map(time::format_millis),
        max_file_bytes: ctx.limits.max_file_bytes,
    })
}

fn too_many_files(n: usize, limits: Limits) -> ApiError {
    ApiError::too_large(format!("update names {n} files; the limit (MAX_FILES_PER_UPDATE) is {}", limits.max_files_per_update))
}

/// `(update id, createdAt ms)` of every record of a runtime, from list metadata alone.
async fn records<S: ObjectStore>(store: &S, t: &Target) -> Result<Vec<(String, u64)>, ApiError> {
    Ok(list_all(store, &t.records_prefix())
        .await?
        .into_iter()
        .filter_map(|o| {
            let id = o.key.rsplit('/').next()?.strip_suffix(".json")?.to_string();
            Some((id, o.custom.get("createdAt").and_then(|c| time::parse_millis(c))?))
        })
        .collect())
}

/// Makes a published manifest current. Order matters for atomicity: every file is verified,
/// then the immutable record is written, and only then does the channel pointer move, with a
/// conditional write against the version read. A publish that dies at any step leaves the
/// previous update served.
pub async fn commit<S: ObjectStore>(store: &S, t: &Target, req: CommitRequest, ctx: &Ctx<'_>) -> Result<CommitResponse, ApiError> {
    let channel = validate::channel(req.channel.as_deref().unwrap_or(DEFAULT_CHANNEL))?.to_string();
    if req.message.as_ref().is_some_and(|m| m.chars().count() > 1000 || m.contains('\0')) {
        return Err(ApiError::bad_request("message must be at most 1000 characters"));
    }
    if req.git_commit.as_ref().is_some_and(|c| c.len() < 7 || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(ApiError::bad_request("gitCommit must be a hex commit hash"));
    }
    if let Some(sig) = &req.signature {
        if hash::base64_standard_decode(sig).is_none_or(|s| s.is_empty() || s.len() > 1024) {
            return Err(ApiError::bad_request("signature must be padded standard base64"));
        }
    }
    let (m, files) = manifest::validate_published(&req.manifest, &t.runtime_version, &ctx.asset_base_url(t), ctx.limits.max_files_per_update)?;
    let created_ms = time::parse_millis(&m.created_at).expect("validated");
    if created_ms > ctx.now_ms + MAX_CLOCK_SKEW_MS {
        return Err(ApiError::unprocessable(format!("createdAt {} is in the future; check this machine's clock", m.created_at)));
    }

    // Every named file must be stored, whole and with the bytes its hash and key promise.
    let mut sizes = BTreeMap::new();
    let mut missing = Vec::new();
    for f in &files {
        let hex = hash::hex(&f.sha256);
        match store.head(&t.file_key(&hex)).await? {
            None => missing.push(hex),
            Some(meta) => {
                verify_file(&meta, f)?;
                sizes.insert(hex, (meta.size, f.is_launch_asset));
            }
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::unprocessable(format!("{} file(s) named by the manifest are not uploaded: {}", missing.len(), missing.join(", "))));
    }

    let pointer_key = t.channel_key(&channel);
    let previous = store.head(&pointer_key).await?;
    for (id, created) in records(store, t).await? {
        if id == m.id {
            return Err(ApiError::conflict(format!("update {id} already exists")));
        }
        if created >= created_ms {
            return Err(ApiError::conflict(format!(
                "createdAt {} is not later than {} already published for this runtime; clients only take strictly newer updates",
                m.created_at,
                time::format_millis(created)
            )));
        }
    }

    let record = UpdateRecord {
        id: m.id.clone(),
        created_at: m.created_at.clone(),
        slug: t.slug.clone(),
        platform: t.platform.to_string(),
        runtime_version: t.runtime_version.clone(),
        channel: channel.clone(),
        message: req.message,
        git_commit: req.git_commit,
        manifest: req.manifest,
        signature: req.signature,
        launch_asset_bytes: sizes.values().filter(|(_, l)| *l).map(|(s, _)| s).sum(),
        file_count: sizes.len() as u32,
        total_bytes: sizes.values().map(|(s, _)| s).sum(),
        files: sizes.keys().cloned().collect(),
    };
    let json = record.to_json().into_bytes();
    let custom = record_metadata(&record);
    let record_key = t.record_key(&record.id);
    let opts = |condition| PutOptions { content_type: Some("application/json".into()), custom: custom.clone(), condition, ..Default::default() };
    if store.put(&record_key, json.clone(), opts(Condition::IfAbsent)).await?.is_none() {
        return Err(ApiError::conflict(format!("update {} already exists", record.id)));
    }
    let cond = match previous {
        Some(p) => Condition::IfEtag(p.etag),
        None => Condition::IfAbsent,
    };
    if store.put(&pointer_key, json, opts(cond)).await?.is_none() {
        // Another publish moved the pointer since we read it; ours must not appear in history.
        store.delete(&[record_key]).await?;
        return Err(ApiError::conflict("another publish to this channel finished first; run the publish again"));
    }
    Ok(CommitResponse {
        id: record.id,
        created_at: record.created_at,
        slug: record.slug,
        platform: record.platform,
        runtime_version: record.runtime_version,
        channel,
        launch_asset_bytes: record.launch_asset_bytes,
        file_count: record.file_count,
        total_bytes: record.total_bytes,
    })
}

fn verify_file(meta: &ObjectMeta, f: &manifest::RequiredFile) -> Result<(), ApiError> {
    let hex = hash::hex(&f.sha256);
    if meta.sha256.is_some_and(|s| s != f.sha256) {
        return Err(ApiError::unprocessable(format!("stored file {hex} does not have that SHA-256")));
    }
    if meta.md5.is_some_and(|m| hash::hex(&m) != f.md5_key) {
        return Err(ApiError::unprocessable(format!("asset key {} is not the MD5 of file {hex}", f.md5_key)));
    }
    Ok(())
}

/// What listing needs, kept in R2 custom metadata so `list` never opens a record.
fn record_metadata(r: &UpdateRecord) -> BTreeMap<String, String> {
    let mut m = BTreeMap::from([
        ("createdAt".to_string(), r.created_at.clone()),
        ("updateId".to_string(), r.id.clone()),
        ("channel".to_string(), r.channel.clone()),
        ("launchAssetBytes".to_string(), r.launch_asset_bytes.to_string()),
        ("fileCount".to_string(), r.file_count.to_string()),
        ("totalBytes".to_string(), r.total_bytes.to_string()),
        ("signed".to_string(), r.signature.is_some().to_string()),
    ]);
    if let Some(msg) = &r.message {
        // Custom metadata is size-limited; the full message stays in the record.
        m.insert("message".into(), msg.chars().take(200).collect());
    }
    m
}

pub async fn list<S: ObjectStore>(store: &S, slug: &str) -> Result<ListResponse, ApiError> {
    validate::slug(slug)?;
    let mut runtimes = Vec::new();
    for platform in validate::Platform::ALL {
        let pprefix = format!("{slug}/{platform}/");
        let mut cursor = None;
        let mut rvs = Vec::new();
        loop {
            let page = store.list(&pprefix, Some("/"), cursor).await?;
            rvs.extend(page.prefixes.iter().filter_map(|p| p.strip_prefix(&pprefix)?.strip_suffix('/').map(str::to_string)));
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        for rv in rvs {
            let t = Target { slug: slug.to_string(), platform, runtime_version: rv.clone() };
            let current: BTreeSet<String> = list_all(store, &t.channels_prefix()).await?.into_iter().filter_map(|o| o.custom.get("updateId").cloned()).collect();
            let mut updates: Vec<UpdateSummary> = list_all(store, &t.records_prefix())
                .await?
                .into_iter()
                .map(|o| {
                    let c = &o.custom;
                    let num = |k: &str| c.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                    let id = c.get("updateId").cloned().unwrap_or_default();
                    UpdateSummary {
                        current: current.contains(&id),
                        id,
                        created_at: c.get("createdAt").cloned().unwrap_or_default(),
                        channel: c.get("channel").cloned().unwrap_or_default(),
                        launch_asset_bytes: num("launchAssetBytes"),
                        file_count: num("fileCount") as u32,
                        total_bytes: num("totalBytes"),
                        message: c.get("message").cloned(),
                    }
                })
                .collect();
            if updates.is_empty() {
                continue;
            }
            updates.sort_by(|a, b| b.created_at.cmp(&a.created_at));
            runtimes.push(RuntimeUpdates { platform: platform.to_string(), runtime_version: rv, updates });
        }
    }
    Ok(ListResponse { slug: slug.to_string(), runtimes })
}

/// Removes everything under a runtime prefix, 1000 keys per call. Pointers go first so that a
/// delete interrupted half way already answers "no update".
pub async fn delete_runtime<S: ObjectStore>(store: &S, t: &Target) -> Result<DeleteResponse, ApiError> {
    let mut keys: Vec<String> = list_all(store, &t.prefix()).await?.into_iter().map(|o| o.key).collect();
    if keys.is_empty() {
        return Err(ApiError::not_found(format!("nothing is published for {} {} runtimeVersion {}", t.slug, t.platform, t.runtime_version)));
    }
    let channels = t.channels_prefix();
    keys.sort_by_key(|k| !k.starts_with(&channels));
    for chunk in keys.chunks(1000) {
        store.delete(chunk).await?;
    }
    Ok(DeleteResponse { deleted_objects: keys.len() as u64 })
}

/// What an upload request promises about its body, checked before a byte is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadHeaders {
    pub len: u64,
    pub md5: Option<[u8; 16]>,
    pub content_type: String,
}

/// `PUT /api/files/…` preconditions: Content-Length present (411) and within MAX_FILE_BYTES
/// (413), a well-formed `x-content-md5` and a printable Content-Type.
pub fn upload_headers(header: &dyn Fn(&str) -> Option<String>, limits: &Limits) -> Result<UploadHeaders, ApiError> {
    let len: u64 = header("content-length")
        .ok_or_else(|| ApiError::new(411, "Content-Length is required (upload the raw file bytes)"))?
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request("Content-Length is not a number"))?;
    if len > limits.max_file_bytes {
        return Err(ApiError::too_large(format!("file is {len} bytes; the limit (MAX_FILE_BYTES) is {}", limits.max_file_bytes)));
    }
    let md5 = match header("x-content-md5") {
        Some(m) => Some(hash::parse_hex::<16>(m.trim()).ok_or_else(|| ApiError::bad_request("x-content-md5 must be 32 lowercase hex digits"))?),
        None => None,
    };
    let content_type = header("content-type").unwrap_or_else(|| "application/octet-stream".into());
    if content_type.len() > 100 || !content_type.bytes().all(|c| c.is_ascii_graphic() || c == b' ') {
        return Err(ApiError::bad_request("invalid Content-Type"));
    }
    Ok(UploadHeaders { len, md5, content_type })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Digests;
    use crate::manifest::{build, FileEntry, ManifestInput};
    use crate::store::MemoryStore;
    use crate::validate::Platform;

    fn target() -> Target {
        Target { slug: "demo-app".into(), platform: Platform::Ios, runtime_version: "1.0.3".into() }
    }
    fn ctx(now_ms: u64) -> Ctx<'static> {
        Ctx { origin: "https://ota.example.com", now_ms, limits: Limits::default() }
    }
    fn manifest(files: &[(&[u8], &str)], created_ms: u64) -> String {
        let t = target();
        let entry = |(b, e): &(&[u8], &str)| FileEntry { digests: Digests::of(b), ext: e.to_string() };
        build(ManifestInput {
            id: crate::id::uuid_v4([created_ms as u8; 16]),
            created_at_ms: created_ms,
            runtime_version: "1.0.3",
            launch_asset: entry(&files[0]),
            assets: files[1..].iter().map(entry).collect(),
            metadata: BTreeMap::new(),
            expo_client: None,
            asset_base_url: &ctx(0).asset_base_url(&t),
        })
        .render()
    }

    #[test]
    fn upload_preconditions() {
        let l = Limits { max_file_bytes: 10, ..Limits::default() };
        let h = |pairs: &'static [(&'static str, &'static str)]| move |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string());
        assert_eq!(upload_headers(&h(&[]), &l).unwrap_err().status, 411);
        assert_eq!(upload_headers(&h(&[("content-length", "11")]), &l).unwrap_err().status, 413);
        assert_eq!(upload_headers(&h(&[("content-length", "x")]), &l).unwrap_err().status, 400);
        assert_eq!(upload_headers(&h(&[("content-length", "1"), ("x-content-md5", "zz")]), &l).unwrap_err().status, 400);
        assert_eq!(upload_headers(&h(&[("content-length", "1"), ("content-type", "a\u{7f}b")]), &l).unwrap_err().status, 400);
        let ok = upload_headers(&h(&[("content-length", "10"), ("content-type", "image/png")]), &l).unwrap();
        assert_eq!((ok.len, ok.content_type.as_str(), ok.md5), (10, "image/png", None));
    }

    #[test]
    fn commit_moves_pointer_only_when_complete_and_newer() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            let t = target();
            let files: [(&[u8], &str); 2] = [(b"bundle", "bundle"), (b"png", "png")];
            let body = manifest(&files, 1_000);
            let req = |b: &str| CommitRequest { manifest: b.to_string(), ..Default::default() };
            // Missing files: nothing is written at all.
            assert_eq!(commit(&s, &t, req(&body), &ctx(1_000)).await.unwrap_err().status, 422);
            assert!(s.keys().is_empty());
            for (b, _) in &files {
                s.put_file(&t.file_key(&Digests::of(b).sha256_hex()), b, "x");
            }
            let c = commit(&s, &t, req(&body), &ctx(1_000)).await.unwrap();
            assert_eq!((c.file_count, c.total_bytes, c.launch_asset_bytes), (2, 9, 6));
            assert_eq!(current(&s, &t, "production").await.unwrap().unwrap().manifest, body);
            // Older or equal createdAt loses; the current update is untouched.
            let older = manifest(&files, 999);
            assert_eq!(commit(&s, &t, req(&older), &ctx(1_000)).await.unwrap_err().status, 409);
            assert_eq!(current(&s, &t, "production").await.unwrap().unwrap().id, c.id);
            // Far-future createdAt would block later publishes.
            let future = manifest(&files, 1_000 + MAX_CLOCK_SKEW_MS + 10);
            assert_eq!(commit(&s, &t, req(&future), &ctx(1_000)).await.unwrap_err().status, 422);
            let p = prepare(&s, &t, &PrepareRequest { files: vec![Digests::of(b"bundle").sha256_hex(), Digests::of(b"new").sha256_hex()] }, &ctx(1)).await.unwrap();
            assert_eq!(p.missing, vec![Digests::of(b"new").sha256_hex()]);
            assert_eq!(p.latest_created_at.as_deref(), Some("1970-01-01T00:00:01.000Z"));
        });
    }

    #[test]
    fn delete_pages_past_1000_objects() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            let t = target();
            for i in 0..2500 {
                s.put_file(&t.file_key(&format!("{i:064}")), b"x", "x");
            }
            s.put_file("demo-app/android/1.0.3/files/a", b"x", "x");
            assert_eq!(delete_runtime(&s, &t).await.unwrap().deleted_objects, 2500);
            assert_eq!(s.keys(), vec!["demo-app/android/1.0.3/files/a".to_string()]);
            assert_eq!(delete_runtime(&s, &t).await.unwrap_err().status, 404);
        });
    }
}
