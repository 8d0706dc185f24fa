//! The manifest check: parse what the client sent, decide, and build the exact response bytes.

use crate::error::ApiError;
use crate::layout::Target;
use crate::manifest::Directive;
use crate::multipart::{self, Part};
use crate::record::UpdateRecord;
use crate::route::query_param;
use crate::validate::{self, Platform};
use crate::id;
use serde::Serialize;

pub const DEFAULT_CHANNEL: &str = "production";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRequest {
    pub target: Target,
    /// 0 or 1. A missing header means 0 (the v0 spec).
    pub protocol_version: u8,
    pub current_update_id: Option<String>,
    pub embedded_update_id: Option<String>,
    pub channel: String,
    pub expect_signature: Option<String>,
    pub fatal_error: Option<String>,
    pub recent_failed_update_ids: Option<String>,
}

/// Reads a check from the query string and headers (header names lowercase).
pub fn parse_request(query: &str, header: &dyn Fn(&str) -> Option<String>) -> Result<ManifestRequest, ApiError> {
    let slug = query_param(query, "slug").ok_or_else(|| ApiError::bad_request("missing slug query parameter (use /api/manifest?slug=<your app slug>)"))?;
    let platform = header("expo-platform")
        .or_else(|| query_param(query, "platform"))
        .ok_or_else(|| ApiError::bad_request("missing expo-platform header"))?;
    let runtime_version = header("expo-runtime-version")
        .or_else(|| query_param(query, "runtimeVersion"))
        .or_else(|| query_param(query, "runtime-version"))
        .ok_or_else(|| ApiError::bad_request("missing expo-runtime-version header"))?;
    let target = Target {
        slug: validate::slug(&slug)?.to_string(),
        platform: Platform::parse(&platform)?,
        runtime_version: validate::runtime_version(&runtime_version)?.to_string(),
    };
    let protocol_version = match header("expo-protocol-version").as_deref().map(str::trim) {
        None => 0,
        Some("0") => 0,
        Some("1") => 1,
        Some(v) if v.parse::<u32>().is_ok() => 1,
        Some(v) => return Err(ApiError::bad_request(format!("invalid expo-protocol-version {:?}", validate::truncate(v)))),
    };
    let uuid_header = |name: &str| -> Result<Option<String>, ApiError> {
        match header(name) {
            None => Ok(None),
            Some(v) => id::normalize_uuid(&v).map(Some).ok_or_else(|| ApiError::bad_request(format!("{name} is not a UUID"))),
        }
    };
    let channel = match header("expo-channel-name") {
        Some(c) => validate::channel(c.trim())?.to_string(),
        None => DEFAULT_CHANNEL.to_string(),
    };
    Ok(ManifestRequest {
        target,
        protocol_version,
        current_update_id: uuid_header("expo-current-update-id")?,
        embedded_update_id: uuid_header("expo-embedded-update-id")?,
        channel,
        expect_signature: header("expo-expect-signature"),
        fatal_error: header("expo-fatal-error").map(|e| e.chars().take(1024).collect()),
        recent_failed_update_ids: header("expo-recent-failed-update-ids").map(|e| e.chars().take(2048).collect()),
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    Update(&'a UpdateRecord),
    NoUpdate,
    /// Protocol 0 has no directives: with nothing published the only answer is an error.
    NothingForV0,
}

pub fn decide<'a>(req: &ManifestRequest, current: Option<&'a UpdateRecord>) -> Outcome<'a> {
    match (current, req.protocol_version) {
        (None, 0) => Outcome::NothingForV0,
        (None, _) => Outcome::NoUpdate,
        // v0 clients cannot be told "no update"; they reject the same id themselves.
        (Some(r), 0) => Outcome::Update(r),
        (Some(r), _) if req.current_update_id.as_deref() == Some(r.id.as_str()) => Outcome::NoUpdate,
        (Some(r), _) => Outcome::Update(r),
    }
}

/// A response as status, headers and body, built without any platform types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn error(e: &ApiError) -> Self {
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(allow) = e.allow {
            headers.push(("allow", allow.to_string()));
        }
        Reply { status: e.status, headers, body: e.body().into_bytes() }
    }
}

pub const EXTENSIONS_BODY: &str = r#"{"assetRequestHeaders":{}}"#;

pub fn respond(req: &ManifestRequest, outcome: &Outcome<'_>) -> Reply {
    let protocol = req.protocol_version.to_string();
    let common = |mut h: Vec<(&'static str, String)>| {
        h.push(("expo-protocol-version", protocol.clone()));
        h.push(("expo-sfv-version", "0".into()));
        h.push(("cache-control", "private, max-age=0".into()));
        h
    };
    match outcome {
        Outcome::Update(r) => {
            let (ct, body) = multipart::render(&[
                Part::new("manifest", r.manifest.as_bytes()).signed(r.signature.as_ref().map(|s| signature_header(s, "main"))),
                Part::new("extensions", EXTENSIONS_BODY),
            ]);
            Reply { status: 200, headers: common(vec![("content-type", ct)]), body }
        }
        Outcome::NoUpdate => {
            let (ct, body) = multipart::render(&[Part::new("directive", Directive::NoUpdateAvailable.render())]);
            Reply { status: 200, headers: common(vec![("content-type", ct)]), body }
        }
        Outcome::NothingForV0 => {
            let e = ApiError::not_found(format!(
                "no update published for {} {} runtimeVersion {}",
                req.target.slug, req.target.platform, req.target.runtime_version
            ));
            let mut r = Reply::error(&e);
            r.headers = common(r.headers);
            r
        }
    }
}

/// `expo-signature` value: every member a quoted string (iOS casts the dictionary to strings).
pub fn signature_header(sig_b64: &str, keyid: &str) -> String {
    format!("sig=\"{sig_b64}\", keyid=\"{keyid}\", alg=\"rsa-v1_5-sha256\"")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckLog<'a> {
    event: &'static str,
    slug: &'a str,
    platform: &'a str,
    runtime_version: &'a str,
    channel: &'a str,
    protocol_version: u8,
    current_update_id: &'a str,
    embedded_update_id: &'a str,
    served: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fatal_error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recent_failed_update_ids: Option<&'a str>,
}

/// One structured line per check for `wrangler tail`: what the device runs and what it got.
pub fn log_line(req: &ManifestRequest, outcome: &Outcome<'_>) -> String {
    let served = match outcome {
        Outcome::Update(r) => r.id.as_str(),
        _ => "none",
    };
    serde_json::to_string(&CheckLog {
        event: "manifest_check",
        slug: &req.target.slug,
        platform: req.target.platform.as_str(),
        runtime_version: &req.target.runtime_version,
        channel: &req.channel,
        protocol_version: req.protocol_version,
        current_update_id: req.current_update_id.as_deref().unwrap_or("none"),
        embedded_update_id: req.embedded_update_id.as_deref().unwrap_or("none"),
        served,
        fatal_error: req.fatal_error.as_deref(),
        recent_failed_update_ids: req.recent_failed_update_ids.as_deref(),
    })
    .expect("log serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
    fn parse(query: &str, h: &[(&str, &str)]) -> Result<ManifestRequest, ApiError> {
        let h = headers(h);
        parse_request(query, &|n| h.get(n).cloned())
    }
    fn record(id: &str) -> UpdateRecord {
        UpdateRecord {
            id: id.into(),
            created_at: "2024-05-01T12:34:56.789Z".into(),
            slug: "demo-app".into(),
            platform: "ios".into(),
            runtime_version: "1.0.3".into(),
            channel: "production".into(),
            message: None,
            git_commit: None,
            manifest: format!("{{\"id\":\"{id}\"}}"),
            signature: None,
            launch_asset_bytes: 1,
            file_count: 1,
            total_bytes: 1,
            files: vec![],
        }
    }
    const ID: &str = "0f8d2a8e-0000-4000-8000-000000000001";

    #[test]
    fn reads_headers_and_query_fallbacks() {
        let r = parse("slug=demo-app", &[("expo-platform", "ios"), ("expo-runtime-version", "1.0.3"), ("expo-protocol-version", "1"), ("expo-current-update-id", &ID.to_uppercase())]).unwrap();
        assert_eq!(r.target.platform, Platform::Ios);
        assert_eq!(r.protocol_version, 1);
        assert_eq!(r.current_update_id.as_deref(), Some(ID));
        assert_eq!(r.channel, "production");
        let q = parse("slug=demo-app&platform=android&runtime-version=2.0.0", &[]).unwrap();
        assert_eq!((q.target.platform, q.target.runtime_version.as_str(), q.protocol_version), (Platform::Android, "2.0.0", 0));
        assert_eq!(parse("slug=a&platform=ios&runtimeVersion=3", &[]).unwrap().target.runtime_version, "3");
    }

    #[test]
    fn rejects_bad_requests_with_400() {
        let ok = [("expo-platform", "ios"), ("expo-runtime-version", "1")];
        assert_eq!(parse("", &ok).unwrap_err().status, 400);
        assert_eq!(parse("slug=../x", &ok).unwrap_err().status, 400);
        assert_eq!(parse("slug=a", &[("expo-platform", "web"), ("expo-runtime-version", "1")]).unwrap_err().status, 400);
        assert_eq!(parse("slug=a", &[("expo-platform", "ios")]).unwrap_err().status, 400);
        assert_eq!(parse("slug=a", &[ok[0], ok[1], ("expo-protocol-version", "one")]).unwrap_err().status, 400);
        assert_eq!(parse("slug=a", &[ok[0], ok[1], ("expo-current-update-id", "123")]).unwrap_err().status, 400);
        assert_eq!(parse("slug=a", &[ok[0], ok[1], ("expo-channel-name", "a/b")]).unwrap_err().status, 400);
    }

    #[test]
    fn decisions() {
        let mut req = parse("slug=demo-app", &[("expo-platform", "ios"), ("expo-runtime-version", "1.0.3"), ("expo-protocol-version", "1")]).unwrap();
        let rec = record(ID);
        assert_eq!(decide(&req, None), Outcome::NoUpdate);
        assert_eq!(decide(&req, Some(&rec)), Outcome::Update(&rec));
        req.current_update_id = Some(ID.into());
        assert_eq!(decide(&req, Some(&rec)), Outcome::NoUpdate);
        req.protocol_version = 0;
        assert_eq!(decide(&req, Some(&rec)), Outcome::Update(&rec));
        assert_eq!(decide(&req, None), Outcome::NothingForV0);
    }

    #[test]
    fn responses_carry_protocol_headers() {
        let req = parse("slug=demo-app", &[("expo-platform", "ios"), ("expo-runtime-version", "1.0.3"), ("expo-protocol-version", "1")]).unwrap();
        let rec = record(ID);
        let r = respond(&req, &Outcome::Update(&rec));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("expo-protocol-version"), Some("1"));
        assert_eq!(r.header("expo-sfv-version"), Some("0"));
        assert_eq!(r.header("cache-control"), Some("private, max-age=0"));
        let parts = multipart::parse(r.header("content-type").unwrap(), &r.body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name().as_deref(), Some("manifest"));
        assert_eq!(parts[0].body, rec.manifest.as_bytes());
        assert_eq!(parts[1].name().as_deref(), Some("extensions"));
        let ext: serde_json::Value = serde_json::from_slice(&parts[1].body).unwrap();
        assert!(ext["assetRequestHeaders"].is_object());

        let n = respond(&req, &Outcome::NoUpdate);
        let parts = multipart::parse(n.header("content-type").unwrap(), &n.body).unwrap();
        assert_eq!(parts[0].name().as_deref(), Some("directive"));
        assert_eq!(parts[0].body, br#"{"type":"noUpdateAvailable"}"#);

        let mut v0 = req.clone();
        v0.protocol_version = 0;
        let e = respond(&v0, &Outcome::NothingForV0);
        assert_eq!(e.status, 404);
        assert_eq!(e.header("expo-protocol-version"), Some("0"));
        assert!(String::from_utf8(e.body).unwrap().starts_with("{\"error\":"));
    }

    #[test]
    fn log_line_names_what_was_served() {
        let mut req = parse("slug=demo-app", &[("expo-platform", "ios"), ("expo-runtime-version", "1.0.3"), ("expo-fatal-error", "TypeError: x")]).unwrap();
        req.embedded_update_id = Some(ID.into());
        let rec = record(ID);
        let v: serde_json::Value = serde_json::from_str(&log_line(&req, &Outcome::Update(&rec))).unwrap();
        assert_eq!(v["served"], ID);
        assert_eq!(v["embeddedUpdateId"], ID);
        assert_eq!(v["currentUpdateId"], "none");
        assert_eq!(v["fatalError"], "TypeError: x");
        assert!(v.get("recentFailedUpdateIds").is_none());
        let v: serde_json::Value = serde_json::from_str(&log_line(&req, &Outcome::NoUpdate)).unwrap();
        assert_eq!(v["served"], "none");
    }
}
