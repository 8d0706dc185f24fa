//! `POST /api/publish/:slug` with a `multipart/form-data` body, for small exports and curl-only
//! CI jobs. Two field conventions are accepted:
//!
//! * seed style: a `manifest` field (metadata.json, or `{"metadata": …, "expoConfig": …}`) and one
//!   `file_<export path>` field per file, with `expo-platform` / `expo-runtime-version` headers;
//! * curl style: `runtimeVersion`, `metadata.json`, `expoConfig.json` and one field named by each
//!   export path (`-F "assets/abc=@dist/assets/abc"`).
//!
//! File parts are stored as soon as the server knows where they go (metadata and runtime
//! version seen), so only the current part is held; parts that arrive before that are held
//! until it is known, within the MAX_FORM_BYTES bound. The commit is the CLI's commit.

use crate::deploy::api::{CommitRequest, FormPublishResponse};
use crate::deploy::formdata::{Event, Parser};
use crate::deploy::service::{self, Ctx};
use crate::error::ApiError;
use crate::protocol::export::{content_type_for_ext, normalize_path, parse_metadata, ExpoConfig, PlatformFiles};
use crate::protocol::hash::{Digests, FileHasher};
use crate::protocol::id;
use crate::protocol::manifest::{self, FileEntry, ManifestInput};
use crate::storage::layout::Target;
use crate::storage::store::{ObjectStore, PutOptions};
use crate::validate::{self, Platform};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const MAX_TEXT_FIELD: usize = 1 << 20;

enum Kind {
    Text(String),
    File(String),
}

pub struct FormPublish {
    slug: String,
    header_platform: Option<Platform>,
    header_runtime_version: Option<String>,
    parser: Parser,
    received: u64,
    part: Option<(Kind, Vec<u8>, FileHasher)>,
    text: BTreeMap<String, Vec<u8>>,
    /// Export path → digests of what was received.
    files: BTreeMap<String, Digests>,
    /// Files received before their destination was known.
    pending: Vec<(String, Vec<u8>)>,
    /// `(target, sha256)` already written or found present.
    stored: BTreeSet<(String, [u8; 32])>,
}

struct Plan {
    platforms: Vec<(Target, PlatformFiles)>,
    expo_config: Option<ExpoConfig>,
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
            text: BTreeMap::new(),
            files: BTreeMap::new(),
            pending: Vec::new(),
            stored: BTreeSet::new(),
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
                Event::Start { name, .. } => self.part = Some((classify(&name)?, Vec::new(), FileHasher::new())),
                Event::Data(d) => {
                    let (kind, buf, hasher) =
                        self.part.as_mut().ok_or_else(|| ApiError::bad_request("data outside a part"))?;
                    if matches!(kind, Kind::Text(_)) && buf.len() + d.len() > MAX_TEXT_FIELD {
                        return Err(ApiError::too_large("a text field is larger than 1 MiB"));
                    }
                    if matches!(kind, Kind::File(_)) && (buf.len() + d.len()) as u64 > ctx.limits.max_file_bytes {
                        return Err(ApiError::too_large(format!(
                            "a file is larger than MAX_FILE_BYTES ({} bytes)",
                            ctx.limits.max_file_bytes
                        )));
                    }
                    hasher.update(&d);
                    buf.extend_from_slice(&d);
                }
                Event::End => {
                    let (kind, buf, hasher) =
                        self.part.take().ok_or_else(|| ApiError::bad_request("part end outside a part"))?;
                    match kind {
                        Kind::Text(name) => {
                            if self.text.insert(name.clone(), buf).is_some() {
                                return Err(ApiError::bad_request(format!("field {name} appears twice")));
                            }
                            // A field may have made the destination known: flush what waits.
                            if !self.pending.is_empty() {
                                if let Some(plan) = self.plan(false)? {
                                    for (path, bytes) in std::mem::take(&mut self.pending) {
                                        self.store_file(store, &plan, &path, bytes).await?;
                                    }
                                }
                            }
                        }
                        Kind::File(path) => {
                            let digests = hasher.finish();
                            if self.files.insert(path.clone(), digests).is_some() {
                                return Err(ApiError::bad_request(format!("file {path} appears twice")));
                            }
                            match self.plan(false)? {
                                Some(plan) => self.store_file(store, &plan, &path, buf).await?,
                                None => self.pending.push((path, buf)),
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Where files go; `None` while metadata or the runtime version is still unknown (unless
    /// `required`, when that is an error).
    fn plan(&self, required: bool) -> Result<Option<Plan>, ApiError> {
        let (metadata, mut expo_config) = match (self.text.get("manifest"), self.text.get("metadata.json")) {
            (Some(m), _) => seed_manifest(m)?,
            (None, Some(m)) => (m.clone(), None),
            (None, None) if required => return Err(ApiError::bad_request("missing metadata.json (or manifest) field")),
            (None, None) => return Ok(None),
        };
        if let Some(c) = self.text.get("expoConfig.json") {
            expo_config = Some(ExpoConfig::parse(c)?);
        }
        let explicit_rv = match self.text.get("runtimeVersion") {
            Some(rv) => Some(
                std::str::from_utf8(rv)
                    .map_err(|_| ApiError::bad_request("runtimeVersion is not UTF-8"))?
                    .trim()
                    .to_string(),
            ),
            None => self.header_runtime_version.clone(),
        };
        let only = match self.text.get("platform") {
            Some(p) => Some(Platform::parse(std::str::from_utf8(p).unwrap_or("").trim())?),
            None => self.header_platform,
        };
        if explicit_rv.is_none() && expo_config.is_none() {
            return if required {
                Err(ApiError::bad_request("missing runtimeVersion field (or expoConfig.json to resolve it from)"))
            } else {
                Ok(None)
            };
        }
        let mut platforms = Vec::new();
        for pf in parse_metadata(&metadata)? {
            if only.is_some_and(|o| o != pf.platform) {
                continue;
            }
            let rv = match &explicit_rv {
                Some(rv) => validate::runtime_version(rv)?.to_string(),
                None => expo_config.as_ref().expect("checked above").resolve_runtime_version(pf.platform)?,
            };
            platforms.push((Target { slug: self.slug.clone(), platform: pf.platform, runtime_version: rv }, pf));
        }
        if platforms.is_empty() {
            return Err(ApiError::bad_request("metadata.json exports nothing for the requested platform"));
        }
        Ok(Some(Plan { platforms, expo_config }))
    }

    async fn store_file<S: ObjectStore>(
        &mut self,
        store: &S,
        plan: &Plan,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<(), ApiError> {
        let d = self.files[path];
        for (t, pf) in &plan.platforms {
            let ext = if pf.bundle == path {
                Some("bundle")
            } else {
                pf.assets.iter().find(|a| a.path == path).map(|a| a.ext.as_str())
            };
            let Some(ext) = ext else { continue };
            if !self.stored.insert((t.prefix(), d.sha256)) {
                continue;
            }
            let key = t.file_key(&d.sha256_hex());
            if store.head(&key).await?.is_some() {
                continue; // content-addressed: never rewrite bytes a manifest may name
            }
            let opts = PutOptions {
                content_type: Some(content_type_for_ext(ext).into()),
                sha256: Some(d.sha256),
                md5: Some(d.md5),
                ..Default::default()
            };
            store.put(&key, bytes.clone(), opts).await?;
        }
        Ok(())
    }

    pub async fn finish<S: ObjectStore>(mut self, store: &S, ctx: &Ctx<'_>) -> Result<FormPublishResponse, ApiError> {
        self.parser.finish().map_err(|e| ApiError::bad_request(format!("malformed multipart/form-data body: {e}")))?;
        let plan = self.plan(true)?.expect("required");
        for (path, bytes) in std::mem::take(&mut self.pending) {
            self.store_file(store, &plan, &path, bytes).await?;
        }
        let channel = self.text_field("channel")?;
        let channel_name = validate::channel(channel.as_deref().unwrap_or(crate::check::DEFAULT_CHANNEL))?.to_string();
        let message = self.text_field("message")?;
        // Check every platform before committing any, so a bad field publishes nothing.
        let mut manifests = Vec::new();
        for (t, pf) in &plan.platforms {
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
            let latest = service::latest_created(store, t).await?;
            let m = manifest::build(ManifestInput {
                id: id::uuid_v4((ctx.random)()),
                created_at_ms: service::next_created_ms(ctx.now_ms, latest),
                runtime_version: &t.runtime_version,
                launch_asset,
                assets,
                metadata: manifest::channel_metadata(&channel_name),
                expo_client: plan.expo_config.as_ref().map(|c| c.raw.clone()),
                asset_base_url: &ctx.asset_base_url(t),
            });
            manifests.push((t.clone(), m.render()));
        }
        let mut updates = Vec::new();
        for (t, body) in manifests {
            let req = CommitRequest {
                manifest: body,
                channel: channel.clone(),
                message: message.clone(),
                ..Default::default()
            };
            updates.push(service::commit(store, &t, req, ctx).await?);
        }
        Ok(FormPublishResponse { updates })
    }

    fn text_field(&self, name: &str) -> Result<Option<String>, ApiError> {
        self.text
            .get(name)
            .map(|b| {
                String::from_utf8(b.clone())
                    .map(|s| s.trim().to_string())
                    .map_err(|_| ApiError::bad_request(format!("{name} is not UTF-8")))
            })
            .transpose()
    }
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

fn classify(name: &str) -> Result<Kind, ApiError> {
    const TEXT: [&str; 7] =
        ["manifest", "runtimeVersion", "platform", "metadata.json", "expoConfig.json", "channel", "message"];
    match name {
        "runtime-version" => Ok(Kind::Text("runtimeVersion".into())),
        "metadata" => Ok(Kind::Text("metadata.json".into())),
        "expoConfig" => Ok(Kind::Text("expoConfig.json".into())),
        n if TEXT.contains(&n) => Ok(Kind::Text(n.into())),
        n => {
            let path = n.strip_prefix("file_").unwrap_or(n);
            if !path.contains('/') && !path.contains('\\') {
                return Err(ApiError::bad_request(format!("unknown form field {:?}", validate::truncate(n))));
            }
            Ok(Kind::File(normalize_path(path)?))
        }
    }
}

/// The seed's `manifest` field: metadata.json itself, or an object holding it.
fn seed_manifest(bytes: &[u8]) -> Result<(Vec<u8>, Option<ExpoConfig>), ApiError> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("manifest field is not JSON: {e}")))?;
    if v.get("fileMetadata").is_some() {
        return Ok((bytes.to_vec(), None));
    }
    let metadata = v.get("metadata").filter(|m| m.get("fileMetadata").is_some()).ok_or_else(|| {
        ApiError::bad_request("manifest field must be metadata.json or {\"metadata\": …, \"expoConfig\": …}")
    })?;
    let config = v.get("expoConfig").or_else(|| v.get("extra").and_then(|e| e.get("expoClient")));
    let config = config.map(|c| ExpoConfig::parse(c.to_string().as_bytes())).transpose()?;
    Ok((metadata.to_string().into_bytes(), config))
}
