//! What `npx expo export` writes: `metadata.json` (which files make each platform's update) and
//! the optional `expoConfig.json` (from `npx expo config --type public --json`).

use crate::error::ApiError;
use crate::validate::{self, Platform};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One platform's files, paths relative to the export root with `/` separators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformFiles {
    pub platform: Platform,
    pub bundle: String,
    pub assets: Vec<AssetRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetRef {
    pub path: String,
    /// Without the leading dot, as metadata.json writes it (`png`).
    pub ext: String,
}

#[derive(Deserialize)]
struct RawMetadata {
    #[serde(rename = "fileMetadata")]
    file_metadata: BTreeMap<String, RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    bundle: String,
    #[serde(default)]
    assets: Vec<RawAsset>,
}

#[derive(Deserialize)]
struct RawAsset {
    path: String,
    ext: String,
}

pub const MAX_METADATA_BYTES: usize = 1 << 20;

/// Parses `metadata.json`; returns only the platforms that were exported, ios before android.
/// Every path is normalised and checked (no absolute paths, no `..`).
pub fn parse_metadata(bytes: &[u8]) -> Result<Vec<PlatformFiles>, ApiError> {
    if bytes.len() > MAX_METADATA_BYTES {
        return Err(ApiError::too_large("metadata.json is larger than 1 MiB"));
    }
    let raw: RawMetadata = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("metadata.json is not valid export metadata: {e}")))?;
    let mut out = Vec::new();
    for (name, p) in raw.file_metadata {
        let platform = match name.as_str() {
            "ios" => Platform::Ios,
            "android" => Platform::Android,
            // `web` exports are not updates for native clients.
            "web" => continue,
            other => {
                return Err(ApiError::bad_request(format!(
                    "metadata.json names unknown platform {:?}",
                    validate::truncate(other)
                )))
            }
        };
        let bundle = normalize_path(&p.bundle)?;
        let assets = p
            .assets
            .into_iter()
            .map(|a| Ok(AssetRef { path: normalize_path(&a.path)?, ext: extension(&a.ext)? }))
            .collect::<Result<Vec<_>, ApiError>>()?;
        out.push(PlatformFiles { platform, bundle, assets });
    }
    if out.is_empty() {
        return Err(ApiError::bad_request("metadata.json exports no ios or android update"));
    }
    out.sort_by_key(|p| p.platform);
    Ok(out)
}

/// Normalises an export-relative path: Windows `\` becomes `/`; absolute paths, drive letters,
/// empty segments, `.` and `..` are rejected so a path can never leave the export directory.
pub fn normalize_path(p: &str) -> Result<String, ApiError> {
    let bad = |why: &str| Err(ApiError::bad_request(format!("invalid export path {:?}: {why}", validate::truncate(p))));
    let s = p.replace('\\', "/");
    if s.is_empty() || s.len() > 1024 {
        return bad("empty or too long");
    }
    if s.starts_with('/') || s.as_bytes().get(1) == Some(&b':') {
        return bad("absolute paths are not allowed");
    }
    if s.chars().any(|c| c.is_control()) {
        return bad("control characters are not allowed");
    }
    for seg in s.split('/') {
        match seg {
            "" | "." => return bad("empty or '.' segment"),
            ".." => return bad("'..' is not allowed"),
            _ => {}
        }
    }
    Ok(s)
}

fn extension(ext: &str) -> Result<String, ApiError> {
    let e = ext.strip_prefix('.').unwrap_or(ext);
    if e.is_empty() || e.len() > 16 || !e.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::bad_request(format!("invalid asset extension {:?}", validate::truncate(ext))));
    }
    Ok(e.to_ascii_lowercase())
}

/// Content type by extension, for assets and the launch asset.
pub fn content_type_for_ext(ext: &str) -> &'static str {
    match ext.trim_start_matches('.').to_ascii_lowercase().as_str() {
        "js" | "bundle" | "hbc" => "application/javascript",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "aac" => "audio/aac",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "html" => "text/html",
        "txt" => "text/plain",
        "css" => "text/css",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// The parts of `expoConfig.json` the server uses.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpoConfig {
    /// The whole public config, served as `extra.expoClient`.
    pub raw: serde_json::Map<String, Value>,
}

impl ExpoConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        if bytes.len() > MAX_METADATA_BYTES {
            return Err(ApiError::too_large("expoConfig.json is larger than 1 MiB"));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(raw)) => Ok(Self { raw: strip_nulls(raw) }),
            Ok(_) => Err(ApiError::bad_request("expoConfig.json must be a JSON object")),
            Err(e) => Err(ApiError::bad_request(format!("expoConfig.json is not valid JSON: {e}"))),
        }
    }

    pub fn slug(&self) -> Option<&str> {
        self.raw.get("slug").and_then(Value::as_str)
    }

    /// Resolves `runtimeVersion` for `platform` the way `expo-updates` does for the policies that
    /// need no native project: a string (top level or platform override), `appVersion` (the
    /// `version`) and `nativeVersion` (`version` + build number). `fingerprint` needs the native
    /// project, so it is refused with a pointer to `--runtime-version`.
    pub fn resolve_runtime_version(&self, platform: Platform) -> Result<String, ApiError> {
        let per_platform = self.raw.get(platform.as_str()).and_then(|p| p.get("runtimeVersion"));
        let rv = per_platform.or_else(|| self.raw.get("runtimeVersion"));
        let missing = || ApiError::bad_request("expoConfig.json has no runtimeVersion; pass --runtime-version");
        let resolved = match rv.ok_or_else(missing)? {
            Value::String(s) => s.clone(),
            Value::Object(o) => match o.get("policy").and_then(Value::as_str) {
                Some("appVersion") => self.version()?.to_string(),
                Some("nativeVersion") => {
                    let build = match platform {
                        Platform::Ios => self.raw.get("ios").and_then(|i| i.get("buildNumber")).and_then(Value::as_str).map(str::to_string),
                        Platform::Android => self
                            .raw
                            .get("android")
                            .and_then(|a| a.get("versionCode"))
                            .and_then(|v| v.as_u64().map(|n| n.to_string()).or_else(|| v.as_str().map(str::to_string))),
                    }
                    .unwrap_or_else(|| "1".to_string());
                    format!("{}({build})", self.version()?)
                }
                Some("fingerprint") => {
                    return Err(ApiError::bad_request(
                        "runtimeVersion policy \"fingerprint\" is computed from the native project; run `npx expo-updates fingerprint:generate` (or `eas`) and pass --runtime-version",
                    ))
                }
                Some(other) => return Err(ApiError::bad_request(format!("unsupported runtimeVersion policy {:?}; pass --runtime-version", validate::truncate(other)))),
                None => return Err(ApiError::bad_request("runtimeVersion object has no policy; pass --runtime-version")),
            },
            _ => return Err(ApiError::bad_request("runtimeVersion in expoConfig.json must be a string or a policy object")),
        };
        validate::runtime_version(&resolved)?;
        Ok(resolved)
    }

    fn version(&self) -> Result<&str, ApiError> {
        self.raw
            .get("version")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("runtimeVersion policy needs `version` in expoConfig.json"))
    }
}

/// iOS treats a JSON `null` as a present value of the wrong type and raises; the served config
/// therefore never contains one.
pub fn strip_nulls(map: serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls_value(v))).collect()
}

fn strip_nulls_value(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_nulls(m)),
        Value::Array(a) => Value::Array(a.into_iter().filter(|x| !x.is_null()).map(strip_nulls_value).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO_V1: &str = r#"{"version":0,"bundler":"metro","fileMetadata":{"ios":{"bundle":"_expo/static/js/ios/index-5d7d6fad5484402dc4f398f4c8ec68c4.hbc","assets":[{"path":"assets/85bb2d0ec4a0da159de42e89089ccc0b","ext":"ttf"}]},"android":{"bundle":"_expo/static/js/android/index-9e896f53e997fbc4342a5342e56e570d.hbc","assets":[{"path":"assets\\85bb2d0ec4a0da159de42e89089ccc0b","ext":"ttf"}]}}}"#;

    #[test]
    fn parses_platforms_in_order_and_normalises_backslashes() {
        let p = parse_metadata(DEMO_V1.as_bytes()).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].platform, Platform::Ios);
        assert_eq!(p[1].platform, Platform::Android);
        assert_eq!(p[1].assets[0].path, "assets/85bb2d0ec4a0da159de42e89089ccc0b");
        assert_eq!(p[1].assets[0].ext, "ttf");
    }

    #[test]
    fn rejects_escaping_paths() {
        for bad in ["/etc/passwd", "../x", "assets/../../x", "C:\\x", "a//b", "./a", "a\\..\\..\\b", ""] {
            assert!(normalize_path(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_path("assets\\abc").unwrap(), "assets/abc");
    }

    #[test]
    fn rejects_bad_metadata() {
        assert!(parse_metadata(b"{}").is_err());
        assert!(parse_metadata(b"not json").is_err());
        assert!(parse_metadata(br#"{"fileMetadata":{}}"#).is_err());
        assert!(parse_metadata(br#"{"fileMetadata":{"windows":{"bundle":"a.js"}}}"#).is_err());
        assert!(parse_metadata(br#"{"fileMetadata":{"ios":{"bundle":"a.js","assets":[{"path":"a","ext":"p/ng"}]}}}"#)
            .is_err());
        // A web-only export has nothing for native clients.
        assert!(parse_metadata(br#"{"fileMetadata":{"web":{"bundle":"a.js"}}}"#).is_err());
    }

    fn cfg(json: &str) -> ExpoConfig {
        ExpoConfig::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn runtime_version_policies() {
        assert_eq!(
            cfg(r#"{"version":"1.0.3","runtimeVersion":{"policy":"appVersion"}}"#)
                .resolve_runtime_version(Platform::Ios)
                .unwrap(),
            "1.0.3"
        );
        assert_eq!(cfg(r#"{"runtimeVersion":"2.0.0"}"#).resolve_runtime_version(Platform::Android).unwrap(), "2.0.0");
        let native = cfg(
            r#"{"version":"1.2.0","runtimeVersion":{"policy":"nativeVersion"},"ios":{"buildNumber":"7"},"android":{"versionCode":12}}"#,
        );
        assert_eq!(native.resolve_runtime_version(Platform::Ios).unwrap(), "1.2.0(7)");
        assert_eq!(native.resolve_runtime_version(Platform::Android).unwrap(), "1.2.0(12)");
        let per = cfg(r#"{"runtimeVersion":"1","android":{"runtimeVersion":"1-android"}}"#);
        assert_eq!(per.resolve_runtime_version(Platform::Android).unwrap(), "1-android");
        assert_eq!(per.resolve_runtime_version(Platform::Ios).unwrap(), "1");
        let fp =
            cfg(r#"{"runtimeVersion":{"policy":"fingerprint"}}"#).resolve_runtime_version(Platform::Ios).unwrap_err();
        assert!(fp.message.contains("--runtime-version"));
        assert!(cfg(r#"{}"#).resolve_runtime_version(Platform::Ios).is_err());
        assert!(cfg(r#"{"runtimeVersion":"../x"}"#).resolve_runtime_version(Platform::Ios).is_err());
    }

    #[test]
    fn strips_nulls() {
        let c = cfg(r#"{"a":null,"b":{"c":null,"d":[1,null]}}"#);
        assert_eq!(serde_json::to_string(&c.raw).unwrap(), r#"{"b":{"d":[1]}}"#);
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type_for_ext("png"), "image/png");
        assert_eq!(content_type_for_ext(".TTF"), "font/ttf");
        assert_eq!(content_type_for_ext("bundle"), "application/javascript");
        assert_eq!(content_type_for_ext("weird"), "application/octet-stream");
    }
}
