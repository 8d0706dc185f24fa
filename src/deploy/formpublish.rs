//! `POST /api/publish/:slug` with a `multipart/form-data` body, for small exports and curl-only
//! CI jobs. Two field conventions are accepted:
//!
//! * seed style: a `manifest` field (metadata.json, or `{"metadata": …, "expoConfig": …}`) and one
//!   `file_<export path>` field per file, with `expo-platform` / `expo-runtime-version` headers;
//! * curl style: `runtimeVersion`, `metadata.json`, `expoConfig.json` and one field named by each
//!   export path (`-F "assets/abc=@dist/assets/abc"`).
//!
//! Linear: each text field is parsed once, when its part ends, and the plan (targets, and which
//! platforms name each export path) is rebuilt from those parsed values only when a field that
//! decides it arrives. Once a file was stored under the plan, a later field may not change it.
//!
//! Memory: a file part is hashed as its chunks arrive and held once, in blocks of at most 64 KiB
//! that are never joined or copied; when the part ends its key (the SHA-256) is known and the
//! blocks stream to the store ([`ObjectStore::put_blocks`]) and are dropped. Peak: one file part
//! (≤ one 64 KiB block of slack, no copies) plus the parser's chunk buffer, or, when file parts
//! precede the fields that say where they go, those parts too, within MAX_FORM_BYTES. Measured
//! in `tests/form_memory.rs`: a 31 MiB part peaks at 31.2 MiB of heap (it was 63 MiB).
//!
//! Nothing is committed here: [`FormPublish::finish`] renders and validates every platform's
//! manifest (and checks every file it names is stored with those digests) and returns the
//! commits; [`commit_all`] makes them current in order and says exactly what a failure left.

use crate::deploy::api::{CommitRequest, CommitResponse, FormPublishResponse};
use crate::deploy::formdata::{Event, Parser};
use crate::deploy::service::{self, Ctx};
use crate::error::ApiError;
use crate::protocol::export::{content_type_for_ext, normalize_path, parse_metadata, ExpoConfig, PlatformFiles};
use crate::protocol::hash::{self, Digests, FileHasher};
use crate::protocol::manifest::{self, FileEntry, ManifestInput};
use crate::protocol::{id, time};
use crate::storage::layout::Target;
use crate::storage::store::{Blocks, ObjectStore, PutOptions};
use crate::validate::{self, Platform};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

const MAX_TEXT_FIELD: usize = 1 << 20;

/// Largest block a file part is held in. Blocks are appended, never grown by reallocation, so
/// holding a part costs its size plus at most one block, and no copy.
pub const BLOCK: usize = 64 << 10;

/// A file part's bytes as they arrive: blocks whose capacity doubles from the first chunk's size
/// up to [`BLOCK`], so a small file costs about its size and a large one never reallocates.
#[derive(Default)]
struct PartBytes {
    blocks: Vec<Vec<u8>>,
    len: usize,
}

impl PartBytes {
    fn push(&mut self, mut d: &[u8]) {
        while !d.is_empty() {
            if self.blocks.last().is_none_or(|b| b.len() == b.capacity()) {
                self.blocks.push(Vec::with_capacity(self.len.max(d.len()).clamp(1, BLOCK)));
            }
            let b = self.blocks.last_mut().expect("pushed above");
            let n = (b.capacity() - b.len()).min(d.len());
            b.extend_from_slice(&d[..n]);
            self.len += n;
            d = &d[n..];
        }
    }

    fn capacity(&self) -> usize {
        self.blocks.iter().map(Vec::capacity).sum()
    }

    fn into_blocks(self) -> Blocks {
        self.blocks.into()
    }
}

enum Part {
    Text { name: &'static str, buf: Vec<u8> },
    File { path: String, bytes: PartBytes, hasher: Box<FileHasher> },
}

/// Text fields, each parsed once when its part ends.
#[derive(Default)]
struct Fields {
    seen: BTreeSet<&'static str>,
    /// From the seed `manifest` field: it wins over `metadata.json`.
    seed_metadata: Option<Vec<PlatformFiles>>,
    seed_config: Option<ExpoConfig>,
    metadata: Option<Vec<PlatformFiles>>,
    /// `expoConfig.json`: it wins over the seed manifest's config.
    expo_config: Option<ExpoConfig>,
    runtime_version: Option<String>,
    platform: Option<Platform>,
    channel: Option<String>,
    message: Option<String>,
}

impl Fields {
    fn metadata(&self) -> Option<&[PlatformFiles]> {
        self.seed_metadata.as_deref().or(self.metadata.as_deref())
    }
    fn expo_config(&self) -> Option<&ExpoConfig> {
        self.expo_config.as_ref().or(self.seed_config.as_ref())
    }
}

/// Where files go.
#[derive(PartialEq)]
struct Plan {
    platforms: Vec<(Target, PlatformFiles)>,
    /// Export path → `(index into platforms, extension)` for each platform naming it.
    routes: BTreeMap<String, Vec<(usize, String)>>,
}

impl Plan {
    fn new(platforms: Vec<(Target, PlatformFiles)>) -> Self {
        let mut routes: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
        for (i, (_, pf)) in platforms.iter().enumerate() {
            let named = std::iter::once((&pf.bundle, "bundle")).chain(pf.assets.iter().map(|a| (&a.path, &*a.ext)));
            for (path, ext) in named {
                let r = routes.entry(path.clone()).or_default();
                // The first mention within a platform decides the content type.
                if !r.iter().any(|(j, _)| *j == i) {
                    r.push((i, ext.to_string()));
                }
            }
        }
        Self { platforms, routes }
    }
}

/// Work counters, so tests can assert the route stays linear.
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Work {
    metadata_parses: usize,
    plans: usize,
}

pub struct FormPublish {
    slug: String,
    header_platform: Option<Platform>,
    header_runtime_version: Option<String>,
    parser: Parser,
    received: u64,
    part: Option<Part>,
    fields: Fields,
    plan: Option<Plan>,
    /// Export path → digests of what was received.
    files: BTreeMap<String, Digests>,
    /// Files received before their destination was known.
    pending: Vec<(String, Blocks, Digests)>,
    /// `(platform index in the plan, sha256)` written, or found present with those digests.
    stored: BTreeSet<(usize, [u8; 32])>,
    #[cfg(test)]
    work: Work,
}

impl FormPublish {
    pub fn new(
        slug: &str,
        boundary: &str,
        header_platform: Option<&str>,
        header_runtime_version: Option<&str>,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            slug: validate::slug(slug)?.to_string(),
            header_platform: header_platform.map(Platform::parse).transpose()?,
            header_runtime_version: header_runtime_version
                .map(|r| validate::runtime_version(r).map(str::to_string))
                .transpose()?,
            parser: Parser::new(boundary),
            received: 0,
            part: None,
            fields: Fields::default(),
            plan: None,
            files: BTreeMap::new(),
            pending: Vec::new(),
            stored: BTreeSet::new(),
            #[cfg(test)]
            work: Work::default(),
        })
    }

    pub async fn feed<S: ObjectStore>(&mut self, store: &S, chunk: &[u8], ctx: &Ctx<'_>) -> Result<(), ApiError> {
        self.received += chunk.len() as u64;
        if self.received > ctx.limits.max_form_bytes {
            return Err(form_too_large(ctx));
        }
        let events = self
            .parser
            .feed(chunk)
            .map_err(|e| ApiError::bad_request(format!("malformed multipart/form-data body: {e}")))?;
        for e in events {
            match e {
                Event::Start { name, .. } => self.part = Some(classify(&name)?),
                Event::Data(d) => {
                    match self.part.as_mut().ok_or_else(|| ApiError::bad_request("data outside a part"))? {
                        Part::Text { buf, .. } => {
                            if buf.len() + d.len() > MAX_TEXT_FIELD {
                                return Err(ApiError::too_large("a text field is larger than 1 MiB"));
                            }
                            buf.extend_from_slice(&d);
                        }
                        Part::File { bytes, hasher, .. } => {
                            if (bytes.len + d.len()) as u64 > ctx.limits.max_file_bytes {
                                return Err(ApiError::too_large(format!(
                                    "a file is larger than MAX_FILE_BYTES ({} bytes)",
                                    ctx.limits.max_file_bytes
                                )));
                            }
                            hasher.update(&d);
                            bytes.push(&d);
                        }
                    }
                }
                Event::End => match self.part.take().ok_or_else(|| ApiError::bad_request("part end outside a part"))? {
                    Part::Text { name, buf } => self.end_text(store, name, buf).await?,
                    Part::File { path, bytes, hasher } => {
                        let digests = hasher.finish();
                        if self.files.insert(path.clone(), digests).is_some() {
                            return Err(ApiError::bad_request(format!("file {path} appears twice")));
                        }
                        let blocks = bytes.into_blocks();
                        match &self.plan {
                            Some(plan) => store_file(store, plan, &mut self.stored, &path, blocks, digests).await?,
                            None => self.pending.push((path, blocks, digests)),
                        }
                    }
                },
            }
        }
        Ok(())
    }

    /// Bytes this publish holds between feeds: the parser's buffer, the current part and the
    /// parts waiting for their destination.
    pub fn held_bytes(&self) -> usize {
        let part = match &self.part {
            Some(Part::Text { buf, .. }) => buf.capacity(),
            Some(Part::File { bytes, .. }) => bytes.capacity(),
            None => 0,
        };
        let pending: usize = self.pending.iter().map(|(_, b, _)| b.iter().map(Vec::capacity).sum::<usize>()).sum();
        self.parser.buffered() + part + pending
    }

    /// Parses a finished text field (once) and, when it decides where files go, re-plans.
    async fn end_text<S: ObjectStore>(&mut self, store: &S, name: &'static str, buf: Vec<u8>) -> Result<(), ApiError> {
        if !self.fields.seen.insert(name) {
            return Err(ApiError::bad_request(format!("field {name} appears twice")));
        }
        let text = |b: &[u8]| {
            std::str::from_utf8(b)
                .map(|s| s.trim().to_string())
                .map_err(|_| ApiError::bad_request(format!("{name} is not UTF-8")))
        };
        let f = &mut self.fields;
        match name {
            "manifest" => {
                #[cfg(test)]
                {
                    self.work.metadata_parses += 1;
                }
                let (metadata, config) = seed_manifest(&buf)?;
                f.seed_metadata = Some(metadata);
                f.seed_config = config;
            }
            "metadata.json" => {
                #[cfg(test)]
                {
                    self.work.metadata_parses += 1;
                }
                f.metadata = Some(parse_metadata(&buf)?);
            }
            "expoConfig.json" => f.expo_config = Some(ExpoConfig::parse(&buf)?),
            "runtimeVersion" => f.runtime_version = Some(validate::runtime_version(&text(&buf)?)?.to_string()),
            "platform" => f.platform = Some(Platform::parse(std::str::from_utf8(&buf).unwrap_or("").trim())?),
            "channel" => f.channel = Some(text(&buf)?),
            "message" => f.message = Some(text(&buf)?),
            _ => unreachable!("classify names every text field"),
        }
        if matches!(name, "channel" | "message") {
            return Ok(());
        }
        let Some(plan) = self.plan(false)? else { return Ok(()) };
        if let Some(old) = &self.plan {
            if *old == plan {
                return Ok(());
            }
            if !self.files.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "field {name} changes where files go, but file parts before it were already stored; send manifest/metadata.json, expoConfig.json, runtimeVersion and platform before the files"
                )));
            }
        }
        let plan = self.plan.insert(plan);
        for (path, blocks, digests) in std::mem::take(&mut self.pending) {
            store_file(store, plan, &mut self.stored, &path, blocks, digests).await?;
        }
        Ok(())
    }

    /// Where files go; `None` while metadata or the runtime version is still unknown (unless
    /// `required`, when that is an error). Uses only parsed fields.
    fn plan(&mut self, required: bool) -> Result<Option<Plan>, ApiError> {
        let f = &self.fields;
        let Some(metadata) = f.metadata() else {
            return if required {
                Err(ApiError::bad_request("missing metadata.json (or manifest) field"))
            } else {
                Ok(None)
            };
        };
        let explicit_rv = f.runtime_version.as_ref().or(self.header_runtime_version.as_ref());
        let only = f.platform.or(self.header_platform);
        let expo_config = f.expo_config();
        if explicit_rv.is_none() && expo_config.is_none() {
            return if required {
                Err(ApiError::bad_request("missing runtimeVersion field (or expoConfig.json to resolve it from)"))
            } else {
                Ok(None)
            };
        }
        let mut platforms = Vec::new();
        for pf in metadata {
            if only.is_some_and(|o| o != pf.platform) {
                continue;
            }
            let rv = match (explicit_rv, expo_config) {
                (Some(rv), _) => rv.clone(),
                (None, Some(c)) => c.resolve_runtime_version(pf.platform)?,
                (None, None) => unreachable!("checked above"),
            };
            let t = Target::parse(&self.slug, pf.platform.as_str(), &rv)?;
            platforms.push((t, pf.clone()));
        }
        if platforms.is_empty() {
            return Err(ApiError::bad_request("metadata.json exports nothing for the requested platform"));
        }
        #[cfg(test)]
        {
            self.work.plans += 1;
        }
        Ok(Some(Plan::new(platforms)))
    }

    /// Validates every platform's update and returns the commits, in platform order; commits
    /// nothing. Every manifest is rendered, passes [`manifest::validate_published`] as the commit
    /// will, and names only files this publish stored (or found stored) with those digests, so a
    /// bad platform fails the whole publish before any platform is made current.
    pub async fn finish<S: ObjectStore>(
        mut self,
        store: &S,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<(Target, CommitRequest)>, ApiError> {
        self.parser.finish().map_err(|e| ApiError::bad_request(format!("malformed multipart/form-data body: {e}")))?;
        if self.plan.is_none() {
            self.plan = self.plan(true)?;
        }
        let plan = self.plan.take().expect("required");
        for (path, blocks, digests) in std::mem::take(&mut self.pending) {
            store_file(store, &plan, &mut self.stored, &path, blocks, digests).await?;
        }
        let channel = self.fields.channel.take();
        let channel_name = validate::channel(channel.as_deref().unwrap_or(crate::check::DEFAULT_CHANNEL))?.to_string();
        let message = self.fields.message.take();
        let expo_client = self.fields.expo_config().map(|c| c.raw.clone());
        let mut commits = Vec::new();
        for (i, (t, pf)) in plan.platforms.iter().enumerate() {
            let entry = |path: &str, ext: &str| -> Result<FileEntry, ApiError> {
                let d = self.files.get(path).ok_or_else(|| {
                    ApiError::bad_request(format!("metadata.json names {path} but no form field carries it"))
                })?;
                Ok(FileEntry { digests: *d, ext: ext.to_string() })
            };
            let launch_asset = entry(&pf.bundle, "bundle")?;
            let assets = pf.assets.iter().map(|a| entry(&a.path, &a.ext)).collect::<Result<Vec<_>, _>>()?;
            if assets.len() + 1 > ctx.limits.max_files_per_update {
                return Err(ApiError::too_large(format!(
                    "update names {} files; the limit (MAX_FILES_PER_UPDATE) is {}",
                    assets.len() + 1,
                    ctx.limits.max_files_per_update
                )));
            }
            let created_ms = service::next_created_ms(ctx.now_ms, service::latest_created(store, t).await?);
            if created_ms > ctx.now_ms + service::MAX_CLOCK_SKEW_MS {
                return Err(ApiError::unprocessable(format!(
                    "{} runtimeVersion {} already has an update from {}, in the future; check the publishing machines' clocks",
                    t.platform,
                    t.runtime_version,
                    time::format_millis(created_ms - 1)
                )));
            }
            let body = manifest::build(ManifestInput {
                id: id::uuid_v4((ctx.random)()),
                created_at_ms: created_ms,
                runtime_version: &t.runtime_version,
                launch_asset,
                assets,
                metadata: manifest::channel_metadata(&channel_name),
                expo_client: expo_client.clone(),
                asset_base_url: &ctx.asset_base_url(t),
            })
            .render();
            let (_, required) = manifest::validate_published(
                &body,
                &t.runtime_version,
                &channel_name,
                &ctx.asset_base_url(t),
                ctx.limits.max_files_per_update,
            )
            .map_err(|e| ApiError::new(e.status, format!("{} update: {}", t.platform, e.message)))?;
            if let Some(f) = required.iter().find(|f| !self.stored.contains(&(i, f.sha256))) {
                return Err(ApiError::unprocessable(format!(
                    "{} update names file {} that this publish did not store",
                    t.platform,
                    hash::hex(&f.sha256)
                )));
            }
            let req = CommitRequest {
                manifest: body,
                channel: channel.clone(),
                message: message.clone(),
                ..Default::default()
            };
            commits.push((t.clone(), req));
        }
        Ok(commits)
    }

    #[cfg(test)]
    fn work(&self) -> Work {
        self.work
    }
}

/// Writes one received file under every target whose platform names it, unless already there.
/// A key already present must hold these bytes (its recorded digests are checked).
async fn store_file<S: ObjectStore>(
    store: &S,
    plan: &Plan,
    stored: &mut BTreeSet<(usize, [u8; 32])>,
    path: &str,
    blocks: Blocks,
    d: Digests,
) -> Result<(), ApiError> {
    let Some(routes) = plan.routes.get(path) else { return Ok(()) };
    for (i, ext) in routes {
        if stored.contains(&(*i, d.sha256)) {
            continue;
        }
        let t = &plan.platforms[*i].0;
        let key = t.file_key(&d.sha256_hex());
        match store.head(&key).await? {
            // Content-addressed: never rewrite bytes a manifest may name.
            Some(meta) => {
                if meta.sha256.is_some_and(|s| s != d.sha256) || meta.md5.is_some_and(|m| m != d.md5) {
                    return Err(ApiError::unprocessable(format!(
                        "stored file {key} does not hold the bytes its name promises; delete that runtime ({} {}) and publish again",
                        t.platform, t.runtime_version
                    )));
                }
            }
            None => {
                let opts = PutOptions {
                    content_type: Some(content_type_for_ext(ext).into()),
                    sha256: Some(d.sha256),
                    md5: Some(d.md5),
                    ..Default::default()
                };
                store.put_blocks(&key, blocks.clone(), opts).await?;
            }
        }
        stored.insert((*i, d.sha256));
    }
    Ok(())
}

/// Commits validated updates in order with `commit_one` (the caller's route to the writer).
/// When one fails after others succeeded, the error says which updates are now current (ids,
/// platforms) and which failed or were not attempted, in its message and, as `committed`,
/// `failed` and `notAttempted`, in its JSON body.
pub async fn commit_all<F, Fut>(
    commits: Vec<(Target, CommitRequest)>,
    mut commit_one: F,
) -> Result<FormPublishResponse, ApiError>
where
    F: FnMut(Target, CommitRequest) -> Fut,
    Fut: Future<Output = Result<CommitResponse, ApiError>>,
{
    let mut updates = Vec::with_capacity(commits.len());
    let mut rest = commits.into_iter();
    while let Some((t, req)) = rest.next() {
        match commit_one(t.clone(), req).await {
            Ok(c) => updates.push(c),
            Err(e) if updates.is_empty() => return Err(e),
            Err(e) => return Err(partly_committed(&updates, &t, &e, rest.map(|(t, _)| t).collect())),
        }
    }
    Ok(FormPublishResponse { updates })
}

fn partly_committed(done: &[CommitResponse], failed: &Target, e: &ApiError, not_attempted: Vec<Target>) -> ApiError {
    let committed: Vec<String> = done
        .iter()
        .map(|c| {
            format!("{} update {} (runtimeVersion {}, channel {})", c.platform, c.id, c.runtime_version, c.channel)
        })
        .collect();
    let mut message = format!(
        "publish partly applied: committed {}; the {} update (runtimeVersion {}) failed: {}",
        committed.join(", "),
        failed.platform,
        failed.runtime_version,
        e.message
    );
    let target = |t: &Target| json!({"platform": t.platform.as_str(), "runtimeVersion": t.runtime_version});
    if !not_attempted.is_empty() {
        let names: Vec<&str> = not_attempted.iter().map(|t| t.platform.as_str()).collect();
        message.push_str(&format!("; not attempted: {}", names.join(", ")));
    }
    message.push_str(&format!(
        ". The committed updates stay current; publish the rest again with the platform field (-F platform={})",
        failed.platform
    ));
    let mut failed_json = target(failed);
    failed_json["status"] = e.status.into();
    failed_json["error"] = e.message.clone().into();
    let mut detail = serde_json::Map::new();
    detail.insert("committed".into(), serde_json::to_value(done).expect("serializes"));
    detail.insert("failed".into(), failed_json);
    detail.insert("notAttempted".into(), Value::Array(not_attempted.iter().map(target).collect()));
    ApiError::new(e.status, message).with_detail(detail)
}

fn form_too_large(ctx: &Ctx<'_>) -> ApiError {
    ApiError::too_large(format!(
        "request body is larger than MAX_FORM_BYTES ({} bytes); publish large exports with `cargo run -p publish-cli -- publish`, which uploads files one by one",
        ctx.limits.max_form_bytes
    ))
}

/// The single-request route's Content-Length precheck.
pub fn check_content_length(len: Option<u64>, ctx: &Ctx<'_>) -> Result<(), ApiError> {
    match len {
        Some(n) if n > ctx.limits.max_form_bytes => Err(form_too_large(ctx)),
        _ => Ok(()),
    }
}

fn classify(name: &str) -> Result<Part, ApiError> {
    const TEXT: [&str; 7] =
        ["manifest", "runtimeVersion", "platform", "metadata.json", "expoConfig.json", "channel", "message"];
    let text = |name: &'static str| Ok(Part::Text { name, buf: Vec::new() });
    match name {
        "runtime-version" => text("runtimeVersion"),
        "metadata" => text("metadata.json"),
        "expoConfig" => text("expoConfig.json"),
        n => match TEXT.iter().find(|t| **t == n) {
            Some(t) => text(t),
            None => {
                let path = n.strip_prefix("file_").unwrap_or(n);
                if !path.contains('/') && !path.contains('\\') {
                    return Err(ApiError::bad_request(format!("unknown form field {:?}", validate::truncate(n))));
                }
                Ok(Part::File { path: normalize_path(path)?, bytes: PartBytes::default(), hasher: Box::default() })
            }
        },
    }
}

/// The seed's `manifest` field: metadata.json itself, or an object holding it.
fn seed_manifest(bytes: &[u8]) -> Result<(Vec<PlatformFiles>, Option<ExpoConfig>), ApiError> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("manifest field is not JSON: {e}")))?;
    if v.get("fileMetadata").is_some() {
        return Ok((parse_metadata(bytes)?, None));
    }
    let metadata = v.get("metadata").filter(|m| m.get("fileMetadata").is_some()).ok_or_else(|| {
        ApiError::bad_request("manifest field must be metadata.json or {\"metadata\": …, \"expoConfig\": …}")
    })?;
    let config = v.get("expoConfig").or_else(|| v.get("extra").and_then(|e| e.get("expoClient")));
    let config = config.map(|c| ExpoConfig::parse(c.to_string().as_bytes())).transpose()?;
    Ok((parse_metadata(metadata.to_string().as_bytes())?, config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::storage::store::MemoryStore;
    use std::time::{Duration, Instant};

    const BOUNDARY: &str = "form-boundary-1234";
    const NOW: u64 = 1_700_000_000_000;

    fn body(fields: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (name, value) in fields {
            b.extend_from_slice(
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            );
            b.extend_from_slice(value);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        b
    }
    fn field(name: &str, value: impl AsRef<[u8]>) -> (String, Vec<u8>) {
        (name.to_string(), value.as_ref().to_vec())
    }
    fn rand16() -> [u8; 16] {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.to_le_bytes());
        b
    }
    fn ctx(now_ms: u64) -> Ctx<'static> {
        Ctx { origin: "https://ota.example.com", now_ms, limits: Limits::default(), random: &rand16 }
    }
    fn target(platform: Platform) -> Target {
        Target::parse("demo-app", platform.as_str(), "1.0.0").unwrap()
    }
    /// metadata.json for both platforms: a bundle each and a shared `assets/shared`.
    fn metadata() -> Vec<u8> {
        serde_json::to_vec(&json!({"fileMetadata": {
            "ios": {"bundle": "js/ios.hbc", "assets": [{"path": "assets/shared", "ext": "png"}]},
            "android": {"bundle": "js/android.hbc", "assets": [{"path": "assets/shared", "ext": "png"}]},
        }}))
        .unwrap()
    }
    fn curl_fields() -> Vec<(String, Vec<u8>)> {
        vec![
            field("runtimeVersion", "1.0.0"),
            field("metadata.json", metadata()),
            field("js/ios.hbc", "ios bundle"),
            field("js/android.hbc", "android bundle"),
            field("assets/shared", "shared png"),
        ]
    }

    async fn feed_all<S: ObjectStore>(
        s: &S,
        fields: &[(String, Vec<u8>)],
        chunk: usize,
        headers: (Option<&str>, Option<&str>),
        ctx: &Ctx<'_>,
    ) -> Result<FormPublish, ApiError> {
        let mut f = FormPublish::new("demo-app", BOUNDARY, headers.0, headers.1)?;
        for c in body(fields).chunks(chunk) {
            f.feed(s, c, ctx).await?;
        }
        Ok(f)
    }

    async fn commit_each(
        s: &MemoryStore,
        commits: Vec<(Target, CommitRequest)>,
        ctx: &Ctx<'_>,
    ) -> Result<FormPublishResponse, ApiError> {
        commit_all(commits, |t, req| async move { service::commit(s, &t, req, ctx).await }).await
    }

    async fn publish(
        s: &MemoryStore,
        fields: &[(String, Vec<u8>)],
        ctx: &Ctx<'_>,
    ) -> Result<FormPublishResponse, ApiError> {
        let commits = feed_all(s, fields, 7, (None, None), ctx).await?.finish(s, ctx).await?;
        commit_each(s, commits, ctx).await
    }

    async fn current_id(s: &MemoryStore, platform: Platform) -> Option<String> {
        service::current(s, &target(platform), "production").await.unwrap().map(|r| r.id)
    }

    #[test]
    fn form_3000_file_parts_parse_metadata_once_and_finish_fast() {
        // Two platforms of 1499 assets + a bundle: 3000 file parts in 64 KiB chunks.
        let per = 1499;
        let platform = |p: &str| {
            let assets: Vec<Value> =
                (0..per).map(|i| json!({"path": format!("assets/{p}-{i:032x}"), "ext": "png"})).collect();
            json!({"bundle": format!("js/{p}.hbc"), "assets": assets})
        };
        let meta = json!({"fileMetadata": {"ios": platform("ios"), "android": platform("android")}});
        let mut fields =
            vec![field("runtimeVersion", "1.0.0"), field("metadata.json", serde_json::to_vec(&meta).unwrap())];
        for p in ["ios", "android"] {
            fields.push(field(&format!("js/{p}.hbc"), format!("{p} bundle")));
            for i in 0..per {
                fields.push(field(&format!("assets/{p}-{i:032x}"), format!("asset {p} {i}")));
            }
        }
        let s = MemoryStore::new();
        let ctx = ctx(NOW);
        let started = Instant::now();
        pollster::block_on(async {
            let f = feed_all(&s, &fields, 64 << 10, (None, None), &ctx).await.unwrap();
            assert_eq!(
                f.work(),
                Work { metadata_parses: 1, plans: 1 },
                "each field is parsed once, the plan made once"
            );
            let commits = f.finish(&s, &ctx).await.unwrap();
            let done = commit_each(&s, commits, &ctx).await.unwrap();
            assert_eq!(done.updates.iter().map(|u| u.file_count).collect::<Vec<_>>(), vec![per as u32 + 1; 2]);
        });
        // Re-parsing metadata at every part took minutes here; linear work takes well under a second.
        let took = started.elapsed();
        assert!(took < Duration::from_secs(20), "3000 parts took {took:?}");
    }

    #[test]
    fn finish_validates_all_and_commits_nothing_then_commit_all_commits_in_order() {
        let s = MemoryStore::new();
        let ctx = ctx(NOW);
        pollster::block_on(async {
            let commits =
                feed_all(&s, &curl_fields(), 5, (None, None), &ctx).await.unwrap().finish(&s, &ctx).await.unwrap();
            let platforms: Vec<Platform> = commits.iter().map(|(t, _)| t.platform).collect();
            assert_eq!(platforms, vec![Platform::Ios, Platform::Android]);
            assert_eq!(current_id(&s, Platform::Ios).await, None, "finish commits nothing");
            assert_eq!(current_id(&s, Platform::Android).await, None);
            let done = commit_each(&s, commits, &ctx).await.unwrap();
            assert_eq!(done.updates.len(), 2);
            assert_eq!(current_id(&s, Platform::Ios).await.as_ref(), Some(&done.updates[0].id));
            assert_eq!(current_id(&s, Platform::Android).await.as_ref(), Some(&done.updates[1].id));
            // The shared asset is stored once per platform, the bundles once each.
            assert_eq!(s.keys().iter().filter(|k| k.contains("/files/")).count(), 4);
        });
    }

    #[test]
    fn invalid_second_platform_commits_nothing() {
        pollster::block_on(async {
            // Android's runtime already has an update from 20 minutes ahead (a fast clock
            // somewhere): its manifest cannot get a createdAt within the skew allowance.
            let s = MemoryStore::new();
            let mut android_only = curl_fields();
            android_only.insert(0, field("platform", "android"));
            publish(&s, &android_only, &ctx(NOW + 20 * 60 * 1000)).await.unwrap();
            let before = current_id(&s, Platform::Android).await;
            let e = publish(&s, &curl_fields(), &ctx(NOW)).await.unwrap_err();
            assert_eq!(e.status, 422, "{e}");
            assert!(e.message.contains("android"), "{e}");
            assert_eq!(current_id(&s, Platform::Ios).await, None, "iOS must not be committed");
            assert_eq!(current_id(&s, Platform::Android).await, before);

            // A corrupt object already sits at Android's key for its bundle.
            let s = MemoryStore::new();
            let key = target(Platform::Android).file_key(&Digests::of(b"android bundle").sha256_hex());
            s.put_file(&key, b"other bytes", "application/javascript");
            let e = publish(&s, &curl_fields(), &ctx(NOW)).await.unwrap_err();
            assert_eq!(e.status, 422, "{e}");
            assert_eq!(current_id(&s, Platform::Ios).await, None, "iOS must not be committed");
        });
    }

    #[test]
    fn commit_all_second_failure_names_first_committed_update() {
        let s = MemoryStore::new();
        let ctx = ctx(NOW);
        pollster::block_on(async {
            let commits =
                feed_all(&s, &curl_fields(), 64, (None, None), &ctx).await.unwrap().finish(&s, &ctx).await.unwrap();
            let (sr, cr) = (&s, &ctx);
            let e = commit_all(commits, |t, req| async move {
                match t.platform {
                    Platform::Ios => service::commit(sr, &t, req, cr).await,
                    Platform::Android => Err(ApiError::conflict("createdAt is not later than the latest")),
                }
            })
            .await
            .unwrap_err();
            let ios = current_id(&s, Platform::Ios).await.expect("iOS was committed");
            assert_eq!(e.status, 409);
            assert!(e.message.contains(&format!("ios update {ios}")), "{e}");
            assert!(e.message.contains("the android update (runtimeVersion 1.0.0) failed: createdAt"), "{e}");
            let body: Value = serde_json::from_str(&e.body()).unwrap();
            assert_eq!(body["committed"][0]["id"], ios.as_str());
            assert_eq!(body["committed"][0]["platform"], "ios");
            assert_eq!(
                body["failed"],
                json!({"platform": "android", "runtimeVersion": "1.0.0", "status": 409, "error": "createdAt is not later than the latest"})
            );
            assert_eq!(body["notAttempted"], json!([]));

            // A first failure is passed through as is and stops there.
            let commits =
                feed_all(&s, &curl_fields(), 64, (None, None), &ctx).await.unwrap().finish(&s, &ctx).await.unwrap();
            let mut calls = 0;
            let e = commit_all(commits, |_, _| {
                calls += 1;
                async { Err(ApiError::conflict("busy")) }
            })
            .await
            .unwrap_err();
            assert_eq!((e.message.as_str(), e.detail.is_none(), calls), ("busy", true, 1));
        });
    }

    #[test]
    fn files_before_metadata_wait_then_publish() {
        let s = MemoryStore::new();
        let ctx = ctx(NOW);
        let mut fields = curl_fields();
        fields.rotate_left(2); // the files first, then runtimeVersion and metadata.json
        pollster::block_on(async {
            let done = publish(&s, &fields, &ctx).await.unwrap();
            assert_eq!(done.updates.len(), 2);
        });
    }

    #[test]
    fn field_changing_the_plan_after_stored_files_is_refused() {
        let s = MemoryStore::new();
        let ctx = ctx(NOW);
        let config = br#"{"slug": "demo-app", "runtimeVersion": "1.0.0"}"#;
        pollster::block_on(async {
            // expoConfig.json decided 1.0.0, files went there, then runtimeVersion says 2.0.0.
            let mut fields = curl_fields();
            fields[0] = field("expoConfig.json", config);
            fields.push(field("runtimeVersion", "2.0.0"));
            let e = feed_all(&s, &fields, 64, (None, None), &ctx).await.err().expect("refused");
            assert_eq!(e.status, 400);
            assert!(e.message.contains("field runtimeVersion changes where files go"), "{e}");
            // A late field that changes nothing is fine: runtimeVersion decided, expoConfig.json after.
            let mut fields = curl_fields();
            fields.push(field("expoConfig.json", config));
            let done = publish(&s, &fields, &ctx).await.unwrap();
            assert_eq!(done.updates.len(), 2);
            let m = service::current(&s, &target(Platform::Ios), "production").await.unwrap().unwrap();
            assert!(m.body.contains(r#""expoClient":{"#), "late expoConfig.json is still served");
        });
    }

    #[test]
    fn seed_style_fields_and_headers_publish_one_platform() {
        let s = MemoryStore::new();
        let ctx = ctx(NOW);
        let manifest = json!({"metadata": serde_json::from_slice::<Value>(&metadata()).unwrap(), "expoConfig": {"slug": "demo-app", "name": "Demo"}});
        let fields = vec![
            field("manifest", serde_json::to_vec(&manifest).unwrap()),
            field("file_js/android.hbc", "android bundle"),
            field("file_assets/shared", "shared png"),
            field("channel", "staging"),
        ];
        pollster::block_on(async {
            let f = feed_all(&s, &fields, 3, (Some("android"), Some("1.0.0")), &ctx).await.unwrap();
            let commits = f.finish(&s, &ctx).await.unwrap();
            assert_eq!(commits.len(), 1);
            assert_eq!(commits[0].0, target(Platform::Android));
            assert!(commits[0].1.manifest.contains(r#""name":"Demo""#));
            let done = commit_each(&s, commits, &ctx).await.unwrap();
            assert_eq!(done.updates[0].channel, "staging");
        });
    }

    #[test]
    fn text_fields_are_checked_once_and_duplicates_refused() {
        let s = MemoryStore::new();
        let ctx = ctx(NOW);
        pollster::block_on(async {
            let fields = vec![field("runtimeVersion", "1.0.0"), field("runtime-version", "1.0.0")];
            let e = feed_all(&s, &fields, 64, (None, None), &ctx).await.err().expect("refused");
            assert!(e.message.contains("field runtimeVersion appears twice"), "{e}");
            let e = feed_all(&s, &[field("metadata.json", "{not json")], 64, (None, None), &ctx)
                .await
                .err()
                .expect("refused");
            assert_eq!(e.status, 400);
            let e = feed_all(&s, &[field("bogus", "x")], 64, (None, None), &ctx).await.err().expect("refused");
            assert!(e.message.contains("unknown form field"), "{e}");
            let fields = vec![field("metadata.json", metadata()), field("runtimeVersion", "1.0.0")];
            let e = feed_all(&s, &fields, 64, (None, None), &ctx).await.unwrap().finish(&s, &ctx).await.unwrap_err();
            assert!(e.message.contains("no form field carries it"), "{e}");
            assert!(s.keys().is_empty());
        });
    }

    #[test]
    fn part_bytes_grow_in_blocks_without_copies_or_slack() {
        let mut p = PartBytes::default();
        for _ in 0..100_000 {
            p.push(b"x");
        }
        assert_eq!(p.len, 100_000);
        assert!(p.capacity() <= p.len + BLOCK, "slack {}", p.capacity() - p.len);
        assert!(p.blocks.iter().all(|b| b.capacity() <= BLOCK));
        let mut small = PartBytes::default();
        small.push(b"tiny file");
        assert_eq!(small.capacity(), 9, "a small file costs its size");
        let mut big = PartBytes::default();
        big.push(&vec![7u8; 3 * BLOCK + 5]);
        assert_eq!(big.blocks.iter().map(Vec::len).collect::<Vec<_>>(), vec![BLOCK, BLOCK, BLOCK, 5]);
        assert_eq!(big.into_blocks().concat(), vec![7u8; 3 * BLOCK + 5]);
    }

    /// Records what reaches `put_blocks`; file bytes are dropped, as R2 takes them.
    #[derive(Default)]
    struct BlockSink {
        inner: MemoryStore,
        max_block: std::sync::atomic::AtomicUsize,
    }

    impl ObjectStore for BlockSink {
        async fn get(
            &self,
            key: &str,
        ) -> Result<Option<(crate::storage::store::ObjectMeta, Vec<u8>)>, crate::storage::store::StoreError> {
            self.inner.get(key).await
        }
        async fn head(
            &self,
            key: &str,
        ) -> Result<Option<crate::storage::store::ObjectMeta>, crate::storage::store::StoreError> {
            self.inner.head(key).await
        }
        async fn put(
            &self,
            _: &str,
            _: Vec<u8>,
            _: PutOptions,
        ) -> Result<Option<crate::storage::store::ObjectMeta>, crate::storage::store::StoreError> {
            panic!("file parts must go through put_blocks");
        }
        async fn put_blocks(
            &self,
            key: &str,
            blocks: Blocks,
            opts: PutOptions,
        ) -> Result<Option<crate::storage::store::ObjectMeta>, crate::storage::store::StoreError> {
            assert!(opts.sha256.is_some() && opts.md5.is_some(), "R2 verifies the digests it is given");
            let longest = blocks.iter().map(Vec::len).max().unwrap_or(0);
            self.max_block.fetch_max(longest, std::sync::atomic::Ordering::SeqCst);
            self.inner.put(key, Vec::new(), PutOptions::default()).await
        }
        async fn list(
            &self,
            prefix: &str,
            delimiter: Option<&str>,
            cursor: Option<String>,
            start_after: Option<&str>,
        ) -> Result<crate::storage::store::ListPage, crate::storage::store::StoreError> {
            self.inner.list(prefix, delimiter, cursor, start_after).await
        }
        async fn delete(&self, keys: &[String]) -> Result<(), crate::storage::store::StoreError> {
            self.inner.delete(keys).await
        }
    }

    #[test]
    fn feeding_a_31mib_part_holds_at_most_one_part_and_streams_it_in_blocks() {
        const PART: usize = 31 << 20;
        const CHUNK: usize = 64 << 10;
        let meta = br#"{"fileMetadata":{"ios":{"bundle":"js/ios.hbc","assets":[]}}}"#;
        let bundle: Vec<u8> = (0..PART).map(|i| (i % 251) as u8).collect();
        let b = body(&[field("runtimeVersion", "1.0.0"), field("metadata.json", meta), ("js/ios.hbc".into(), bundle)]);
        let s = BlockSink::default();
        let ctx = ctx(NOW);
        pollster::block_on(async {
            let mut f = FormPublish::new("demo-app", BOUNDARY, None, None).unwrap();
            let mut peak = 0;
            for c in b.chunks(CHUNK) {
                f.feed(&s, c, &ctx).await.unwrap();
                peak = peak.max(f.held_bytes());
                // Never more than the part itself plus a block of slack and the parser's chunk
                // buffer (one chunk, rounded up to a power of two).
                assert!(f.held_bytes() <= PART + BLOCK + 3 * CHUNK, "held {} bytes", f.held_bytes());
            }
            assert!(peak > PART - BLOCK, "the part was held while it arrived (peak {peak})");
            assert!(f.held_bytes() <= 3 * CHUNK, "the part is dropped once stored ({} bytes held)", f.held_bytes());
            assert_eq!(
                s.max_block.load(std::sync::atomic::Ordering::SeqCst),
                BLOCK,
                "stored as 64 KiB blocks, never joined"
            );
            f.finish(&s, &ctx).await.unwrap();
        });
    }
}
