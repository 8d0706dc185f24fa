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
use serde_json::{json, Map, Value};
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

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
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

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
            let state = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::internal(format!("corrupt stored object {}: {e}", state_key(slug))))?;
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

/// Which change a [`CapOp`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CapAction {
    /// Make an uploaded bundle (`checksum`) the channel's `version`.
    Publish,
    /// Serve the version before the current one, or `to`, or the binary's bundle (`toBuiltin`).
    Rollback,
    /// Delete `version` from the channel (the previous one is served when it was current).
    Delete,
    /// Channel settings: `public`, `allowSelfSet`, `makeDefault`.
    Channel,
    /// Make an uploaded APK (`sha256`) the APK channel's latest `version`.
    ApkPublish,
}

/// A change to one app's Capacitor state, applied by its writer. One flat request type serves
/// every action (each reads the fields it needs): the Worker and its writer exchange these as
/// JSON, and one type instead of one per action keeps the wasm small.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CapOp {
    pub action: CapAction,
    pub slug: Slug,
    pub request: CapRequest,
}

impl CapOp {
    pub fn slug(&self) -> &str {
        &self.slug
    }
}

/// The JSON body of the Capacitor/APK write routes (and the writer's request).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Default: the app's default channel (bundles) or [`DEFAULT_APK_CHANNEL`] (APKs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Lowercase SHA-256 hex of a bundle uploaded before (`PUT …/bundles/<sha256>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Lowercase SHA-256 hex of an APK uploaded before (`PUT /api/apk/…/files/<sha256>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_native_version: Option<String>,
    /// Rollback target: a version of the channel's history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub to_builtin: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_self_set: Option<bool>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub make_default: bool,
    /// Rollback only: roll back only if the channel still serves this version (the automatic
    /// halt's guard); otherwise answer `{"result":"notServing"}` and write nothing. With it, a
    /// channel with nothing before goes back to the binary's bundle instead of failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_current: Option<String>,
}

/// Reading these types: through `serde_json::Value` (whose parser the Worker has anyway) and the
/// few lines below, instead of derived deserializers — one per type and per input format (JSON
/// bodies, and the Durable Object's JS values) — which cost the wasm tens of KB.
macro_rules! deserialize_via_value {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = Value::deserialize(d)?;
                Self::from_value(&v).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_via_value!(AppState, CapOp, CapRequest);

type Fields = Map<String, Value>;

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Fields, String> {
    v.as_object().ok_or_else(|| format!("{what} must be a JSON object"))
}
fn opt_str(m: &Fields, k: &str) -> Result<Option<String>, String> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("\"{k}\" must be a string")),
    }
}
fn opt_bool(m: &Fields, k: &str) -> Result<Option<bool>, String> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("\"{k}\" must be true or false")),
    }
}
fn req_str(m: &Fields, k: &str) -> Result<String, String> {
    opt_str(m, k)?.ok_or_else(|| format!("\"{k}\" is missing"))
}
fn num(m: &Fields, k: &str) -> Result<u64, String> {
    m.get(k).and_then(Value::as_u64).ok_or_else(|| format!("\"{k}\" must be a non-negative integer"))
}

impl CapRequest {
    pub fn from_value(v: &Value) -> Result<Self, String> {
        let m = object(v, "the request body")?;
        Ok(CapRequest {
            version: opt_str(m, "version")?,
            channel: opt_str(m, "channel")?,
            checksum: opt_str(m, "checksum")?,
            sha256: opt_str(m, "sha256")?,
            min_native_version: opt_str(m, "minNativeVersion")?,
            to: opt_str(m, "to")?,
            to_builtin: opt_bool(m, "toBuiltin")?.unwrap_or(false),
            public: opt_bool(m, "public")?,
            allow_self_set: opt_bool(m, "allowSelfSet")?,
            make_default: opt_bool(m, "makeDefault")?.unwrap_or(false),
            expected_current: opt_str(m, "expectedCurrent")?,
        })
    }
}

impl CapOp {
    fn from_value(v: &Value) -> Result<Self, String> {
        let m = object(v, "a Capacitor write")?;
        let action = match req_str(m, "action")?.as_str() {
            "Publish" => CapAction::Publish,
            "Rollback" => CapAction::Rollback,
            "Delete" => CapAction::Delete,
            "Channel" => CapAction::Channel,
            "ApkPublish" => CapAction::ApkPublish,
            other => return Err(format!("unknown Capacitor action {other:?}")),
        };
        let slug = Slug::parse(&req_str(m, "slug")?).map_err(|e| e.message)?;
        let request = CapRequest::from_value(m.get("request").unwrap_or(&Value::Null))?;
        Ok(CapOp { action, slug, request })
    }
}

impl AppState {
    fn from_value(v: &Value) -> Result<Self, String> {
        let m = object(v, "the Capacitor state")?;
        let mut state = AppState {
            default_channel: opt_str(m, "defaultChannel")?,
            next_channel_id: m.get("nextChannelId").and_then(Value::as_u64).unwrap_or(0) as u32,
            ..Default::default()
        };
        for (name, c) in m.get("channels").and_then(Value::as_object).into_iter().flatten() {
            let c = object(c, "a channel")?;
            let mut versions = Vec::new();
            for b in c.get("versions").and_then(Value::as_array).into_iter().flatten() {
                let b = object(b, "a bundle")?;
                versions.push(Bundle {
                    version: req_str(b, "version")?,
                    checksum: req_str(b, "checksum")?,
                    size: num(b, "size")?,
                    min_native_version: opt_str(b, "minNativeVersion")?,
                    published_at: req_str(b, "publishedAt")?,
                });
            }
            let channel = ChannelState {
                id: num(c, "id")? as u32,
                public: opt_bool(c, "public")?.unwrap_or(false),
                allow_self_set: opt_bool(c, "allowSelfSet")?.unwrap_or(false),
                current: opt_str(c, "current")?,
                versions,
            };
            state.channels.insert(name.clone(), channel);
        }
        for (name, list) in m.get("apk").and_then(Value::as_object).into_iter().flatten() {
            let mut entries = Vec::new();
            for e in list.as_array().into_iter().flatten() {
                let e = object(e, "an APK entry")?;
                entries.push(ApkEntry {
                    version: req_str(e, "version")?,
                    sha256: req_str(e, "sha256")?,
                    size: num(e, "size")?,
                    published_at: req_str(e, "publishedAt")?,
                });
            }
            state.apk.insert(name.clone(), entries);
        }
        Ok(state)
    }
}

fn need<'a>(v: &'a Option<String>, field: &str, action: &str) -> Result<&'a str, ApiError> {
    v.as_deref().ok_or_else(|| ApiError::bad_request(format!("{action} needs \"{field}\" in the JSON body")))
}

fn sha_field<'a>(v: &'a Option<String>, field: &str, action: &str) -> Result<&'a str, ApiError> {
    let s = need(v, field, action)?;
    crate::protocol::hash::parse_hex::<32>(s)
        .map(|_| s)
        .ok_or_else(|| ApiError::bad_request(format!("\"{field}\" must be a lowercase SHA-256 hex digest")))
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

/// Applies one operation (the caller holds the app's writer); answers the JSON the route returns.
pub async fn apply<S: ObjectStore>(store: &S, op: CapOp, ctx: &Ctx<'_>) -> Result<Value, ApiError> {
    let CapOp { action, slug, request: r } = op;
    let (mut state, etag) = load(store, &slug).await?;
    let now = Timestamp::from_millis(ctx.now_ms).to_string();
    let mut delete_bundle = None;
    let outcome = match action {
        CapAction::Publish => {
            let channel = channel_name(r.channel.as_deref(), state.default_channel())?;
            let v = version(need(&r.version, "version", "publish")?)?.to_string();
            let checksum = sha_field(&r.checksum, "checksum", "publish")?.to_string();
            if let Some(m) = &r.min_native_version {
                version(m)?;
            }
            // Re-checked here, under the writer: a delete may have collected the bytes since the upload.
            let meta = store.head(&bundle_key(&slug, &checksum)).await?.ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "bundle {checksum} is not uploaded (or was deleted since): upload it again with PUT /api/capacitor/{slug}/bundles/<sha256>"
                ))
            })?;
            let c = state.channel_mut(&channel)?;
            let previous = c.current.clone();
            let unchanged = match c.versions.iter().find(|b| b.version == v) {
                Some(b) if b.checksum != checksum => {
                    return Err(ApiError::conflict(format!(
                        "version {v} is already published on {channel} with other bytes (checksum {}); devices never download a version name twice: publish under a new version",
                        b.checksum
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
                        version: v.clone(),
                        checksum: checksum.clone(),
                        size: meta.size,
                        min_native_version: r.min_native_version.clone(),
                        published_at: now,
                    });
                    false
                }
            };
            c.current = Some(v.clone());
            json!({"channel": channel, "version": v, "checksum": checksum, "size": meta.size, "previous": previous, "unchanged": unchanged})
        }
        CapAction::Rollback => {
            let channel = channel_name(r.channel.as_deref(), state.default_channel())?;
            let c = state
                .channels
                .get_mut(&channel)
                .ok_or_else(|| ApiError::not_found(format!("channel {channel} has nothing published")))?;
            let from = c.current.clone();
            if let Some(expected) = &r.expected_current {
                if from.as_deref() != Some(expected.as_str()) {
                    return Ok(json!({"channel": channel, "result": "notServing", "serving": from}));
                }
            }
            let to = if r.to_builtin {
                BUILTIN.to_string()
            } else if let Some(v) = &r.to {
                c.versions
                    .iter()
                    .find(|b| &b.version == v)
                    .ok_or_else(|| not_found_version(&channel, v))?
                    .version
                    .clone()
            } else {
                let at = from.as_ref().and_then(|f| c.versions.iter().position(|b| &b.version == f));
                match at {
                    Some(i) if i > 0 => c.versions[i - 1].version.clone(),
                    // A halt with nothing before: devices go back to the binary's bundle.
                    Some(_) if r.expected_current.is_some() => BUILTIN.to_string(),
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
            json!({"channel": channel, "from": from, "to": to})
        }
        CapAction::Delete => {
            let channel = channel_name(r.channel.as_deref(), state.default_channel())?;
            let v = need(&r.version, "version", "delete")?.to_string();
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
            json!({"channel": channel, "version": v, "current": current, "bundleDeleted": bundle_deleted})
        }
        CapAction::Channel => {
            let channel = channel_name(r.channel.as_deref(), state.default_channel())?;
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
            json!({"channel": channel, "id": id, "public": public, "allowSelfSet": allow_self_set, "isDefault": is_default, "current": current})
        }
        CapAction::ApkPublish => {
            let channel = channel_name(r.channel.as_deref(), DEFAULT_APK_CHANNEL)?;
            let v = version(need(&r.version, "version", "APK publish")?)?.to_string();
            let sha = sha_field(&r.sha256, "sha256", "APK publish")?.to_string();
            let meta = store.head(&apk_key(&slug, &sha)).await?.ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "APK {sha} is not uploaded: upload it with PUT /api/apk/{slug}/files/<sha256>"
                ))
            })?;
            if !state.apk.contains_key(&channel) && state.channels.len() + state.apk.len() >= MAX_CHANNELS {
                return Err(ApiError::conflict(format!("an app has at most {MAX_CHANNELS} channels")));
            }
            let list = state.apk.entry(channel.clone()).or_default();
            let entry = match list.iter().find(|e| e.version == v) {
                Some(e) if e.sha256 != sha => {
                    return Err(ApiError::conflict(format!(
                    "APK version {v} is already published on {channel} with other bytes: publish under a new version"
                )))
                }
                Some(e) => e.clone(),
                None => {
                    if list.len() >= MAX_VERSIONS {
                        list.remove(0);
                    }
                    let e = ApkEntry { version: v, sha256: sha, size: meta.size, published_at: now };
                    list.push(e.clone());
                    e
                }
            };
            json!({
                "channel": channel,
                "version": entry.version,
                "sha256": entry.sha256,
                "size": entry.size,
                "publishedAt": entry.published_at,
                "url": apk_url(ctx.origin, &slug, &entry.sha256),
            })
        }
    };
    save(store, &slug, &state, etag).await?;
    if let Some(key) = delete_bundle {
        store.delete(&[key]).await?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_its_json() {
        let mut s = AppState { default_channel: Some("beta".into()), next_channel_id: 2, ..Default::default() };
        s.channels.insert(
            "beta".into(),
            ChannelState {
                id: 2,
                public: true,
                allow_self_set: false,
                current: Some("1.0.0".into()),
                versions: vec![Bundle {
                    version: "1.0.0".into(),
                    checksum: "ab".into(),
                    size: 7,
                    min_native_version: Some("2.0".into()),
                    published_at: "2026-01-01T00:00:00.000Z".into(),
                }],
            },
        );
        s.apk.insert(
            "apk".into(),
            vec![ApkEntry { version: "1".into(), sha256: "cd".into(), size: 9, published_at: "t".into() }],
        );
        let back: AppState = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let op = CapOp {
            action: CapAction::Rollback,
            slug: Slug::parse("com.x.y").unwrap(),
            request: CapRequest { to_builtin: true, ..Default::default() },
        };
        let back: CapOp = serde_json::from_value(serde_json::to_value(&op).unwrap()).unwrap();
        assert_eq!(back, op);
    }

    #[test]
    fn request_fields_of_the_wrong_type_are_refused() {
        let e = serde_json::from_str::<CapRequest>(r#"{"public":"yes"}"#).unwrap_err();
        assert!(e.to_string().contains("\"public\" must be true or false"), "{e}");
        assert!(serde_json::from_str::<CapRequest>(r#"{"version":1}"#).is_err());
        let r: CapRequest = serde_json::from_str(r#"{"version":"1.0.0","unknown":[1]}"#).unwrap();
        assert_eq!(r.version.as_deref(), Some("1.0.0"));
    }

    #[test]
    fn rollback_with_expected_current_guards_and_falls_back_to_builtin() {
        use crate::storage::store::{MemoryStore, ObjectStore};
        let store = MemoryStore::new();
        let slug = Slug::parse("com.example.guard").unwrap();
        let ctx = crate::deploy::testing::ctx(1_000);
        let run =
            |action, request| pollster::block_on(apply(&store, CapOp { action, slug: slug.clone(), request }, &ctx));
        let sha = "ab".repeat(32);
        pollster::block_on(store.put(&bundle_key(&slug, &sha), b"zip".to_vec(), Default::default())).unwrap();
        let publish = CapRequest { version: Some("1.0.0".into()), checksum: Some(sha.clone()), ..Default::default() };
        run(CapAction::Publish, publish).unwrap();
        let guarded = |v: &str| CapRequest { expected_current: Some(v.into()), ..Default::default() };
        // The channel serves 1.0.0, not 0.9.0: nothing changes.
        let out = run(CapAction::Rollback, guarded("0.9.0")).unwrap();
        assert_eq!(out["result"], "notServing");
        let current =
            |s: &MemoryStore| pollster::block_on(load(s, &slug)).unwrap().0.channels["production"].current.clone();
        assert_eq!(current(&store).as_deref(), Some("1.0.0"));
        // Nothing before 1.0.0: the halt sends devices back to the binary's bundle.
        let out = run(CapAction::Rollback, guarded("1.0.0")).unwrap();
        assert_eq!(out["to"], BUILTIN);
        assert_eq!(current(&store).as_deref(), Some(BUILTIN));
        // An unguarded rollback with nothing before still refuses (the CLI says use --to-builtin).
        run(
            CapAction::Publish,
            CapRequest { version: Some("1.0.0".into()), checksum: Some(sha), ..Default::default() },
        )
        .unwrap();
        assert_eq!(run(CapAction::Rollback, CapRequest::default()).unwrap_err().status, 422);
    }
}
