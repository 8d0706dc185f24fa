//! The manifest and directive bodies, rendered once (at publish) and served byte for byte, so a
//! signature over them stays valid. Field order is fixed by these structs; there are no `null`s.

use crate::error::ApiError;
use crate::protocol::export::content_type_for_ext;
use crate::protocol::hash::{self, Digests};
use crate::{protocol::id, protocol::time, validate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub id: String,
    pub created_at: String,
    pub runtime_version: String,
    pub launch_asset: ManifestAsset,
    pub assets: Vec<ManifestAsset>,
    pub metadata: BTreeMap<String, String>,
    pub extra: Extra,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestAsset {
    pub hash: String,
    pub key: String,
    pub file_extension: String,
    pub content_type: String,
    pub url: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Extra {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expo_client: Option<Map<String, Value>>,
}

/// One file of an update as the publisher describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub digests: Digests,
    /// Extension without the dot (`png`); ignored for the launch asset.
    pub ext: String,
}

pub struct ManifestInput<'a> {
    pub id: String,
    pub created_at_ms: u64,
    pub runtime_version: &'a str,
    pub launch_asset: FileEntry,
    pub assets: Vec<FileEntry>,
    pub metadata: BTreeMap<String, String>,
    pub expo_client: Option<Map<String, Value>>,
    /// `<origin>/api/assets/<slug>/<platform>/<runtimeVersion>`; see [`asset_url`].
    pub asset_base_url: &'a str,
}

/// Builds the manifest. Assets with the same content are listed once (the client keys them by
/// `key` anyway).
pub fn build(input: ManifestInput<'_>) -> Manifest {
    let asset = |f: &FileEntry, ext: &str, content_type: &str| ManifestAsset {
        hash: f.digests.sha256_base64url(),
        key: f.digests.md5_hex(),
        file_extension: format!(".{ext}"),
        content_type: content_type.to_string(),
        url: asset_url(input.asset_base_url, &f.digests.sha256, ext),
    };
    // The launch asset counts as seen: the client keys files by `key`, and validation refuses a
    // key listed twice.
    let mut seen = BTreeSet::from([input.launch_asset.digests.sha256]);
    let assets = input
        .assets
        .iter()
        .filter(|f| seen.insert(f.digests.sha256))
        .map(|f| asset(f, &f.ext, content_type_for_ext(&f.ext)))
        .collect();
    Manifest {
        id: input.id,
        created_at: time::format_millis(input.created_at_ms),
        runtime_version: input.runtime_version.to_string(),
        // Expo's reference server describes every launch asset, Hermes or not, this way.
        launch_asset: asset(&input.launch_asset, "bundle", "application/javascript"),
        assets,
        metadata: input.metadata,
        extra: Extra { expo_client: input.expo_client },
    }
}

/// `<base>/<sha256 hex>.<ext>`: the extension in the URL decides the served content type, so
/// the same bytes can be a `.png` in one update and a `.jpg` in another without conflict.
pub fn asset_url(base: &str, sha256: &[u8; 32], ext: &str) -> String {
    format!("{base}/{}.{ext}", hash::hex(sha256))
}

impl Manifest {
    pub fn render(&self) -> String {
        serde_json::to_string(self).expect("manifest serializes")
    }
}

/// Manifests carry their channel in `metadata`, so `expo-manifest-filters: channel="…"` makes a
/// device that switched channels abandon the old channel's updates (protocol notes §5.3).
pub fn channel_metadata(channel: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("channel".to_string(), channel.to_string())])
}

/// The same update published again: new id and createdAt (clients only take a strictly newer
/// update), the given channel, asset URLs rebuilt under `asset_base_url`; same files, so
/// devices download nothing new. Used by rollback, promote and delete-promotes-previous.
pub fn republish(m: &Manifest, id: String, created_at_ms: u64, channel: &str, asset_base_url: &str) -> Manifest {
    let rebase = |a: &ManifestAsset| {
        let mut a = a.clone();
        if let Some(sha) = hash::parse_sha256_base64url(&a.hash) {
            a.url = asset_url(asset_base_url, &sha, a.file_extension.trim_start_matches('.'));
        }
        a
    };
    let mut metadata = m.metadata.clone();
    metadata.insert("channel".into(), channel.into());
    Manifest {
        id,
        created_at: time::format_millis(created_at_ms),
        runtime_version: m.runtime_version.clone(),
        launch_asset: rebase(&m.launch_asset),
        assets: m.assets.iter().map(rebase).collect(),
        metadata,
        extra: m.extra.clone(),
    }
}

pub const MAX_MANIFEST_BYTES: usize = 512 * 1024;

/// A file the manifest names, as the server must find it in storage.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequiredFile {
    pub sha256: [u8; 32],
    pub md5_key: String,
    pub is_launch_asset: bool,
}

/// Checks a manifest body the publisher rendered (and perhaps signed) before the server stores
/// it: it must be exactly what [`Manifest::render`] produces for its own content, name only this
/// runtime's files under this server's asset URLs, and satisfy every client rule (§4, §9).
pub fn validate_published(
    body: &str,
    runtime_version: &str,
    channel: &str,
    asset_base_url: &str,
    max_files: usize,
) -> Result<(Manifest, Vec<RequiredFile>), ApiError> {
    let bad = |m: String| ApiError::unprocessable(format!("manifest rejected: {m}"));
    if body.len() > MAX_MANIFEST_BYTES {
        return Err(ApiError::too_large(format!("manifest is larger than {MAX_MANIFEST_BYTES} bytes")));
    }
    let m: Manifest = serde_json::from_str(body).map_err(|e| bad(format!("not a valid manifest: {e}")))?;
    if m.render() != body {
        return Err(bad("body is not in canonical form (render it with the shared manifest types)".into()));
    }
    if !id::is_canonical_uuid(&m.id) {
        return Err(bad(format!("id {:?} is not a lowercase UUID", validate::truncate(&m.id))));
    }
    if time::parse_millis(&m.created_at).is_none() {
        return Err(bad("createdAt must be YYYY-MM-DDTHH:mm:ss.sssZ".into()));
    }
    if m.runtime_version != runtime_version {
        return Err(bad(format!(
            "runtimeVersion {:?} does not match the route's {runtime_version:?}",
            validate::truncate(&m.runtime_version)
        )));
    }
    if m.assets.len() + 1 > max_files {
        return Err(ApiError::too_large(format!(
            "update names {} files; the limit (MAX_FILES_PER_UPDATE) is {max_files}",
            m.assets.len() + 1
        )));
    }
    if m.metadata.get("channel").map(String::as_str) != Some(channel) {
        return Err(bad(format!("metadata.channel must be {channel:?}, the channel it is published to")));
    }
    let mut lower = BTreeSet::new();
    for k in m.metadata.keys() {
        // iOS lowercases metadata keys into a dictionary that traps on duplicates.
        if !lower.insert(k.to_ascii_lowercase()) {
            return Err(bad(format!("metadata keys {k:?} differ only in case")));
        }
    }
    let mut files = Vec::with_capacity(m.assets.len() + 1);
    let mut keys = BTreeSet::new();
    for (i, a) in std::iter::once(&m.launch_asset).chain(&m.assets).enumerate() {
        let what = if i == 0 { "launchAsset".to_string() } else { format!("assets[{}]", i - 1) };
        let sha = hash::parse_sha256_base64url(&a.hash)
            .ok_or_else(|| bad(format!("{what}.hash is not unpadded base64url SHA-256")))?;
        if hash::parse_hex::<16>(&a.key).is_none() {
            return Err(bad(format!("{what}.key must be the file's MD5 hex")));
        }
        if !keys.insert(a.key.clone()) {
            return Err(bad(format!("{what}.key {} is listed twice", a.key)));
        }
        let ext_ok = a.file_extension.len() >= 2
            && a.file_extension.len() <= 17
            && a.file_extension.starts_with('.')
            && a.file_extension[1..].bytes().all(|c| c.is_ascii_alphanumeric());
        if !ext_ok || (i == 0 && a.file_extension != ".bundle") {
            return Err(bad(format!("{what}.fileExtension {:?} is invalid", validate::truncate(&a.file_extension))));
        }
        let ext = &a.file_extension[1..];
        let expected_type = if i == 0 { "application/javascript" } else { content_type_for_ext(ext) };
        if a.content_type != expected_type {
            return Err(bad(format!("{what}.contentType must be {expected_type} for {}", a.file_extension)));
        }
        let expected_url = asset_url(asset_base_url, &sha, ext);
        if a.url != expected_url {
            return Err(bad(format!("{what}.url must be {expected_url}")));
        }
        files.push(RequiredFile { sha256: sha, md5_key: a.key.clone(), is_launch_asset: i == 0 });
    }
    Ok((m, files))
}

/// Directive bodies (protocol 1, multipart `directive` part).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Directive {
    NoUpdateAvailable,
    RollBackToEmbedded { parameters: RollBackParameters },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollBackParameters {
    pub commit_time: String,
}

impl Directive {
    pub fn render(&self) -> String {
        serde_json::to_string(self).expect("directive serializes")
    }
    pub fn roll_back_to_embedded(commit_time_ms: u64) -> Self {
        Directive::RollBackToEmbedded {
            parameters: RollBackParameters { commit_time: time::format_millis(commit_time_ms) },
        }
    }
}

/// Checks a publisher-rendered `rollBackToEmbedded` body; returns its commitTime in ms.
pub fn validate_rollback_directive(body: &str) -> Result<u64, ApiError> {
    let bad = |m: &str| ApiError::unprocessable(format!("directive rejected: {m}"));
    if body.len() > 4096 {
        return Err(bad("too large"));
    }
    match serde_json::from_str::<Directive>(body) {
        Ok(d @ Directive::RollBackToEmbedded { .. }) if d.render() == body => {
            let Directive::RollBackToEmbedded { parameters } = d else { unreachable!() };
            time::parse_millis(&parameters.commit_time)
                .ok_or_else(|| bad("commitTime must be YYYY-MM-DDTHH:mm:ss.sssZ"))
        }
        Ok(Directive::RollBackToEmbedded { .. }) => Err(bad("body is not in canonical form")),
        Ok(_) => Err(bad("only rollBackToEmbedded can be published")),
        Err(e) => Err(bad(&format!("not a directive: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://ota.example.com/api/assets/demo-app/ios/1.0.3";

    fn entry(bytes: &[u8], ext: &str) -> FileEntry {
        FileEntry { digests: Digests::of(bytes), ext: ext.into() }
    }

    fn sample() -> Manifest {
        build(ManifestInput {
            id: id::uuid_v4([7; 16]),
            created_at_ms: 1_714_566_896_789,
            runtime_version: "1.0.3",
            launch_asset: entry(b"bundle bytes", "hbc"),
            assets: vec![
                entry(b"png1", "png"),
                entry(b"font", "ttf"),
                entry(b"png1", "png"),
                entry(b"bundle bytes", "png"),
            ],
            metadata: channel_metadata("production"),
            expo_client: Some(serde_json::from_str(r#"{"slug":"demo-app","version":"1.0.3"}"#).unwrap()),
            asset_base_url: BASE,
        })
    }

    #[test]
    fn renders_every_field_the_client_needs() {
        let body = sample().render();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["createdAt"], "2024-05-01T12:34:56.789Z");
        assert_eq!(v["runtimeVersion"], "1.0.3");
        let la = &v["launchAsset"];
        assert_eq!(la["fileExtension"], ".bundle");
        assert_eq!(la["contentType"], "application/javascript");
        assert_eq!(la["key"], Digests::of(b"bundle bytes").md5_hex());
        assert_eq!(la["hash"], Digests::of(b"bundle bytes").sha256_base64url());
        assert_eq!(la["url"], format!("{BASE}/{}.bundle", Digests::of(b"bundle bytes").sha256_hex()));
        // Duplicate content is listed once.
        let assets = v["assets"].as_array().unwrap();
        assert_eq!(assets.len(), 2);
        for a in assets {
            for f in ["key", "hash", "fileExtension", "contentType", "url"] {
                assert!(a[f].is_string(), "{f}");
            }
            let url = a["url"].as_str().unwrap();
            assert!(url.starts_with("https://"));
            assert!(url.ends_with(a["fileExtension"].as_str().unwrap()), "{url}");
            assert!(a["fileExtension"].as_str().unwrap().starts_with('.'));
        }
        assert_eq!(v["metadata"], serde_json::json!({"channel": "production"}));
        assert_eq!(v["extra"]["expoClient"]["slug"], "demo-app");
        assert!(!body.contains("null"));
    }

    #[test]
    fn extra_is_an_empty_object_without_config() {
        let mut m = sample();
        m.extra.expo_client = None;
        assert!(m.render().ends_with(r#""metadata":{"channel":"production"},"extra":{}}"#));
    }

    #[test]
    fn validate_accepts_own_rendering() {
        let m = sample();
        let (parsed, files) = validate_published(&m.render(), "1.0.3", "production", BASE, 100).unwrap();
        assert_eq!(parsed, m);
        assert_eq!(files.len(), 3);
        assert!(files[0].is_launch_asset);
    }

    #[test]
    fn validate_rejects_tampering() {
        let good = sample().render();
        let cases: Vec<(String, &str)> = vec![
            (good.replace("\"createdAt\"", " \"createdAt\""), "canonical"),
            (good.replace("2024-05-01T12:34:56.789Z", "2024-05-01T12:34:56Z"), "createdAt"),
            (good.replace(BASE, "https://evil.example.com/x"), "url"),
            (good.replace("\"id\":\"", "\"id\":\"A"), "id"),
            (good.replacen(".bundle", ".js", 1), "fileExtension"),
            (good.replacen("font/ttf", "image/png", 1), "contentType"),
            (good.replace("}", ",\"x\":null}"), "valid manifest"),
        ];
        for (body, what) in cases {
            let e = validate_published(&body, "1.0.3", "production", BASE, 100).unwrap_err();
            assert!(e.status == 422, "{what}: {e}");
            assert!(e.message.contains(what), "{what}: {e}");
        }
        assert_eq!(validate_published(&good, "2.0.0", "production", BASE, 100).unwrap_err().status, 422);
        assert_eq!(validate_published(&good, "1.0.3", "production", BASE, 2).unwrap_err().status, 413);
        assert!(validate_published(&good, "1.0.3", "staging", BASE, 100)
            .unwrap_err()
            .message
            .contains("metadata.channel"));
        let mut m = sample();
        m.metadata.insert("Branch".into(), "a".into());
        m.metadata.insert("branch".into(), "b".into());
        assert!(validate_published(&m.render(), "1.0.3", "production", BASE, 100)
            .unwrap_err()
            .message
            .contains("case"));
    }

    #[test]
    fn republish_keeps_files_and_changes_identity() {
        let m = sample();
        let other = "https://new.example.com/api/assets/demo-app/ios/1.0.3";
        let r = republish(&m, id::uuid_v4([9; 16]), 1_714_566_999_000, "staging", other);
        assert_ne!(r.id, m.id);
        assert_eq!(r.created_at, "2024-05-01T12:36:39.000Z");
        assert_eq!(r.metadata["channel"], "staging");
        assert_eq!(r.launch_asset.hash, m.launch_asset.hash);
        assert_eq!(r.launch_asset.key, m.launch_asset.key);
        assert!(r.launch_asset.url.starts_with(other));
        assert_eq!(r.assets.len(), m.assets.len());
        assert!(validate_published(&r.render(), "1.0.3", "staging", other, 100).is_ok());
    }

    #[test]
    fn rollback_directive_validation() {
        let d = Directive::roll_back_to_embedded(1_714_566_896_789).render();
        assert_eq!(validate_rollback_directive(&d).unwrap(), 1_714_566_896_789);
        assert!(validate_rollback_directive(&Directive::NoUpdateAvailable.render()).is_err());
        assert!(validate_rollback_directive(&d.replace(".789Z", "Z")).is_err());
        assert!(validate_rollback_directive(&d.replace("{\"type\"", "{ \"type\"")).is_err());
        assert!(validate_rollback_directive("[]").is_err());
    }

    #[test]
    fn directives() {
        assert_eq!(Directive::NoUpdateAvailable.render(), r#"{"type":"noUpdateAvailable"}"#);
        let rb = Directive::RollBackToEmbedded {
            parameters: RollBackParameters { commit_time: "2024-05-01T12:34:56.789Z".into() },
        };
        assert_eq!(
            rb.render(),
            r#"{"type":"rollBackToEmbedded","parameters":{"commitTime":"2024-05-01T12:34:56.789Z"}}"#
        );
        assert_eq!(serde_json::from_str::<Directive>(&rb.render()).unwrap(), rb);
    }
}
