//! One app's Capacitor state — its channels (settings, bundle history, current version) and its
//! APK channels — is one small JSON document, `<slug>/capacitor/state.json`, changed only by
//! [`apply`] inside the app's writer (so every decision below — which version is previous, whether
//! a bundle is still named — is made on the state the write replaces; the document is also
//! replaced only if its etag is still the one read). Bundle and APK bytes are content-addressed
//! objects beside it and are immutable; a bundle's bytes are deleted only when no channel names
//! its checksum any more.
//!
//! ```text
//! <slug>/capacitor/state.json                 settings, channels, history, APK history
//! <slug>/capacitor/bundles/<sha256>.zip       a bundle zip exactly as uploaded
//! <slug>/apk/files/<sha256>.apk               an APK exactly as uploaded
//! ```

use crate::deploy::service::Ctx;
use crate::error::ApiError;
use crate::protocol::time::Timestamp;
use crate::storage::store::{Condition, ObjectStore, PutOptions};
use crate::validate::Slug;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The channel devices use when they name none (and none was made the default).
pub const DEFAULT_CHANNEL: &str = "production";
/// The APK channel `apk publish` and `GET /api/apk/<app>/latest` use when none is given.
pub const DEFAULT_APK_CHANNEL: &str = "apk";
/// The version name that sends devices back to the bundle in their binary.
pub const BUILTIN: &str = "builtin";
/// Versions one channel keeps; a publish beyond it is refused (delete old versions first).
pub const MAX_VERSIONS: usize = 200;
/// Channels (bundle and APK) one app may have.
pub const MAX_CHANNELS: usize = 64;
pub const MAX_VERSION_LEN: usize = 64;

pub fn state_key(slug: &str) -> String {
    format!("{slug}/capacitor/state.json")
}
pub fn bundle_key(slug: &str, sha256: &str) -> String {
    format!("{slug}/capacitor/bundles/{sha256}.zip")
}
pub fn apk_key(slug: &str, sha256: &str) -> String {
    format!("{slug}/apk/files/{sha256}.apk")
}
/// What a write to an app's Capacitor state makes stale in a cache.
pub fn prefix(slug: &str) -> String {
    format!("{slug}/capacitor/")
}
pub fn bundle_url(origin: &str, slug: &str, sha256: &str) -> String {
    format!("{origin}/api/capacitor/{slug}/bundles/{sha256}.zip")
}
pub fn apk_url(origin: &str, slug: &str, sha256: &str) -> String {
    format!("{origin}/api/apk/{slug}/files/{sha256}.apk")
}

/// Bundle and APK version names (`1.2.0`, `1.2.0-beta.1+7`): letters, digits, `.`, `_`, `+`,
/// `-`, starting with a letter or digit; `builtin` is reserved.
pub fn version(s: &str) -> Result<&str, ApiError> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_VERSION_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || b"._+-".contains(&c));
    if !ok {
        return Err(ApiError::bad_request(format!(
            "invalid version {:?}: use 1-{MAX_VERSION_LEN} letters, digits, '.', '_', '+' or '-', starting with a letter or digit",
            crate::validate::truncate(s)
        )));
    }
    if s == BUILTIN {
        return Err(ApiError::bad_request("\"builtin\" is reserved: it sends devices back to the binary's bundle"));
    }
    Ok(s)
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppState {
    /// `None`: [`DEFAULT_CHANNEL`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_channel: Option<String>,
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelState>,
    #[serde(default)]
    pub apk: BTreeMap<String, Vec<ApkEntry>>,
    /// The id the next new channel gets (`channel_self` lists integer ids).
    #[serde(default)]
    pub next_channel_id: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelState {
    pub id: u32,
    /// Listed to devices (`GET channel_self`) and usable as a device's `defaultChannel`.
    #[serde(default)]
    pub public: bool,
    /// Devices may move themselves onto it (`POST channel_self`).
    #[serde(default)]
    pub allow_self_set: bool,
    /// The version devices are offered: a version of `versions`, [`BUILTIN`], or none.
    #[serde(default)]
    pub current: Option<String>,
    /// Oldest first.
    #[serde(default)]
    pub versions: Vec<Bundle>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub version: String,
    /// Lowercase SHA-256 hex of the zip bytes (what the plugin compares).
    pub checksum: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_native_version: Option<String>,
    pub published_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApkEntry {
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub published_at: String,
}

impl AppState {
    pub fn default_channel(&self) -> &str {
        self.default_channel.as_deref().unwrap_or(DEFAULT_CHANNEL)
    }
    /// A device may use `name` as its channel: the default, a public or a self-assignable one.
    pub fn usable(&self, name: &str) -> Option<&ChannelState> {
        let c = self.channels.get(name)?;
        (name == self.default_channel() || c.public || c.allow_self_set).then_some(c)
    }
    fn referenced(&self, checksum: &str) -> bool {
        self.channels.values().any(|c| c.versions.iter().any(|b| b.checksum == checksum))
    }
    fn channel_mut(&mut self, name: &str) -> Result<&mut ChannelState, ApiError> {
        if !self.channels.contains_key(name) {
            if self.channels.len() + self.apk.len() >= MAX_CHANNELS {
                return Err(ApiError::conflict(format!("an app has at most {MAX_CHANNELS} channels")));
            }
            self.next_channel_id += 1;
            let id = self.next_channel_id;
            self.channels.insert(name.to_string(), ChannelState { id, ..Default::default() });
        }
        Ok(self.channels.get_mut(name).expect("inserted above"))
    }
}

/// The state and the etag it was read at (`None`: no state yet).
pub async fn load<S: ObjectStore>(store: &S, slug: &str) -> Result<(AppState, Option<String>), ApiError> {
    match store.get(&state_key(slug)).await? {
        None => Ok((AppState::default(), None)),
        Some((meta, bytes)) => {
            let state = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::internal(format!("corrupt stored object {}: {e}", state_key(slug)))
            })?;
            Ok((state, Some(meta.etag)))
        }
    }
}

async fn save<S: ObjectStore>(store: &S, slug: &str, state: &AppState, etag: Option<String>) -> Result<(), ApiError> {
    let body = serde_json::to_vec(state).map_err(|e| ApiError::internal(e.to_string()))?;
    let condition = etag.map_or(Condition::IfAbsent, Condition::IfEtag);
    let opts = PutOptions { content_type: Some("application/json".into()), condition, ..Default::default() };
    match store.put(&state_key(slug), body, opts).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::conflict("the app's Capacitor state changed during this write; retry")),
    }
}

/// A change to one app's Capacitor state, applied by its writer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CapOp {
    Publish { slug: Slug, request: PublishRequest },
    Rollback { slug: Slug, request: RollbackRequest },
    Delete { slug: Slug, channel: Option<String>, version: String },
    Channel { slug: Slug, channel: String, request: ChannelSettings },
    ApkPublish { slug: Slug, request: ApkPublishRequest },
}

impl CapOp {
    pub fn slug(&self) -> &str {
        match self {
            CapOp::Publish { slug, .. }
            | CapOp::Rollback { slug, .. }
            | CapOp::Delete { slug, .. }
            | CapOp::Channel { slug, .. }
            | CapOp::ApkPublish { slug, .. } => slug,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishRequest {
    pub version: String,
    #[serde(default)]
    pub channel: Option<String>,
    /// Lowercase SHA-256 hex of a bundle uploaded before (`PUT …/bundles/<sha256>`).
    pub checksum: String,
    #[serde(default)]
    pub min_native_version: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRequest {
    #[serde(default)]
    pub channel: Option<String>,
    /// A version of the channel's history; none: the one before the current one.
    #[serde(default)]
    pub to: Option<String>,
    /// Send devices back to the binary's bundle.
    #[serde(default)]
    pub to_builtin: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSettings {
    #[serde(default)]
    pub public: Option<bool>,
    #[serde(default)]
    pub allow_self_set: Option<bool>,
    /// Make it the channel of devices that name none.
    #[serde(default)]
    pub make_default: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApkPublishRequest {
    pub version: String,
    #[serde(default)]
    pub channel: Option<String>,
    pub sha256: String,
}

/// What a [`CapOp`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CapOutcome {
    Published(Published),
    RolledBack(RolledBack),
    Deleted(Deleted),
    Channel(ChannelView),
    ApkPublished(ApkEntry),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    pub channel: String,
    pub version: String,
    pub checksum: String,
    pub size: u64,
    /// The version the channel served before.
    pub previous: Option<String>,
    /// The same version with the same bytes was already published.
    pub unchanged: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledBack {
    pub channel: String,
    pub from: Option<String>,
    /// The version devices are offered now ([`BUILTIN`] for the binary's bundle).
    pub to: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    pub channel: String,
    pub version: String,
    /// What the channel serves now.
    pub current: Option<String>,
    /// The zip was deleted too (no channel names its checksum any more).
    pub bundle_deleted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelView {
    pub name: String,
    pub id: u32,
    pub public: bool,
    pub allow_self_set: bool,
    pub is_default: bool,
    pub current: Option<String>,
}

fn channel_name(c: Option<&str>, default: &str) -> Result<String, ApiError> {
    Ok(crate::validate::channel(c.unwrap_or(default))?.to_string())
}

fn not_found_version(channel: &str, v: &str) -> ApiError {
    ApiError::not_found(format!(
        "no version {:?} on channel {channel}: see `publish-cli capacitor list`",
        crate::validate::truncate(v)
    ))
}

/// Applies one operation (the caller holds the app's writer).
pub async fn apply<S: ObjectStore>(store: &S, op: CapOp, ctx: &Ctx<'_>) -> Result<CapOutcome, ApiError> {
    let slug = op.slug().to_string();
    let (mut state, etag) = load(store, &slug).await?;
    let now = Timestamp::from_millis(ctx.now_ms).to_string();
    let mut delete_bundle = None;
    let outcome = match op {
        CapOp::Publish { request: r, .. } => {
            let channel = channel_name(r.channel.as_deref(), state.default_channel())?;
            version(&r.version)?;
            if let Some(m) = &r.min_native_version {
                version(m)?;
            }
            // Re-checked here, under the writer: a delete may have collected the bytes since the upload.
            let meta = store.head(&bundle_key(&slug, &r.checksum)).await?.ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "bundle {} is not uploaded (or was deleted since): upload it again with PUT /api/capacitor/{slug}/bundles/<sha256>",
                    r.checksum
                ))
            })?;
            let c = state.channel_mut(&channel)?;
            let previous = c.current.clone();
            let unchanged = match c.versions.iter().find(|b| b.version == r.version) {
                Some(b) if b.checksum != r.checksum => {
                    return Err(ApiError::conflict(format!(
                        "version {} is already published on {channel} with other bytes (checksum {}); devices never download a version name twice: publish under a new version",
                        r.version, b.checksum
                    )))
                }
                Some(_) => true,
                None => {
                    if c.versions.len() >= MAX_VERSIONS {
                        return Err(ApiError::conflict(format!(
                            "channel {channel} holds {MAX_VERSIONS} versions (the limit): delete old ones with `publish-cli capacitor delete`"
                        )));
                    }
                    c.versions.push(Bundle {
                        version: r.version.clone(),
                        checksum: r.checksum.clone(),
                        size: meta.size,
                        min_native_version: r.min_native_version.clone(),
                        published_at: now,
                    });
                    false
                }
            };
            c.current = Some(r.version.clone());
            CapOutcome::Published(Published {
                channel,
                version: r.version,
                checksum: r.checksum,
                size: meta.size,
                previous,
                unchanged,
            })
        }
        CapOp::Rollback { request: r, .. } => {
            let channel = channel_name(r.channel.as_deref(), state.default_channel())?;
            let c = state.channels.get_mut(&channel).ok_or_else(|| {
                ApiError::not_found(format!("channel {channel} has nothing published"))
            })?;
            let from = c.current.clone();
            let to = if r.to_builtin {
                BUILTIN.to_string()
            } else if let Some(v) = &r.to {
                c.versions.iter().find(|b| &b.version == v).ok_or_else(|| not_found_version(&channel, v))?.version.clone()
            } else {
                let at = from.as_ref().and_then(|f| c.versions.iter().position(|b| &b.version == f));
                match at {
                    Some(i) if i > 0 => c.versions[i - 1].version.clone(),
                    Some(_) => {
                        return Err(ApiError::unprocessable(format!(
                            "nothing was published on {channel} before {}: use --to-builtin to send devices back to the binary's bundle",
                            from.unwrap_or_default()
                        )))
                    }
                    None => {
                        return Err(ApiError::unprocessable(format!(
                            "channel {channel} serves no published version: use --to VERSION"
                        )))
                    }
                }
            };
            c.current = Some(to.clone());
            CapOutcome::RolledBack(RolledBack { channel, from, to })
        }
        CapOp::Delete { channel, version: v, .. } => {
            let channel = channel_name(channel.as_deref(), state.default_channel())?;
            let c = state.channels.get_mut(&channel).ok_or_else(|| not_found_version(&channel, &v))?;
            let i = c.versions.iter().position(|b| b.version == v).ok_or_else(|| not_found_version(&channel, &v))?;
            let gone = c.versions.remove(i);
            if c.current.as_deref() == Some(v.as_str()) {
                // The previous version is promoted; devices accept the downgrade.
                c.current = i.checked_sub(1).map(|p| c.versions[p].version.clone());
            }
            let current = c.current.clone();
            let bundle_deleted = !state.referenced(&gone.checksum);
            if bundle_deleted {
                delete_bundle = Some(bundle_key(&slug, &gone.checksum));
            }
            CapOutcome::Deleted(Deleted { channel, version: v, current, bundle_deleted })
        }
        CapOp::Channel { channel, request: r, .. } => {
            crate::validate::channel(&channel)?;
            let c = state.channel_mut(&channel)?;
            if let Some(p) = r.public {
                c.public = p;
            }
            if let Some(a) = r.allow_self_set {
                c.allow_self_set = a;
            }
            let (id, public, allow_self_set, current) = (c.id, c.public, c.allow_self_set, c.current.clone());
            if r.make_default {
                state.default_channel = Some(channel.clone());
            }
            let is_default = state.default_channel() == channel;
            CapOutcome::Channel(ChannelView { name: channel, id, public, allow_self_set, is_default, current })
        }
        CapOp::ApkPublish { request: r, .. } => {
            let channel = channel_name(r.channel.as_deref(), DEFAULT_APK_CHANNEL)?;
            version(&r.version)?;
            let meta = store.head(&apk_key(&slug, &r.sha256)).await?.ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "APK {} is not uploaded: upload it with PUT /api/apk/{slug}/files/<sha256>",
                    r.sha256
                ))
            })?;
            if !state.apk.contains_key(&channel) && state.channels.len() + state.apk.len() >= MAX_CHANNELS {
                return Err(ApiError::conflict(format!("an app has at most {MAX_CHANNELS} channels")));
            }
            let list = state.apk.entry(channel.clone()).or_default();
            if let Some(e) = list.iter().find(|e| e.version == r.version) {
                if e.sha256 != r.sha256 {
                    return Err(ApiError::conflict(format!(
                        "APK version {} is already published on {channel} with other bytes: publish under a new version",
                        r.version
                    )));
                }
                return Ok(CapOutcome::ApkPublished(e.clone()));
            }
            if list.len() >= MAX_VERSIONS {
                list.remove(0);
            }
            let entry = ApkEntry { version: r.version, sha256: r.sha256, size: meta.size, published_at: now };
            list.push(entry.clone());
            CapOutcome::ApkPublished(entry)
        }
    };
    save(store, &slug, &state, etag).await?;
    if let Some(key) = delete_bundle {
        store.delete(&[key]).await?;
    }
    Ok(outcome)
}
