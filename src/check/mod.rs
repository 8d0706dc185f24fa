//! The manifest check: parse what the client sent, decide, and build the exact response bytes.

pub mod cache;
pub mod explain;
pub mod log;
pub mod patch;
pub mod rollout;

use crate::error::ApiError;
use crate::http::route::query_param;
use crate::protocol::id;
use crate::protocol::manifest::Directive;
use crate::protocol::multipart::{self, Part};
use crate::protocol::sfv::{self, ExpectSignature};
use crate::storage::layout::Target;
use crate::storage::record::{RecordKind, UpdateRecord};
#[cfg(test)]
use crate::validate::Platform;
use crate::validate::{self, Channel};
use serde::Serialize;

pub const DEFAULT_CHANNEL: &str = "production";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRequest {
    pub target: Target,
    /// 0 or 1. A missing header means 0 (the v0 spec).
    pub protocol_version: u8,
    pub current_update_id: Option<String>,
    pub embedded_update_id: Option<String>,
    pub channel: Channel,
    /// Present when the client verifies signatures (`expo-expect-signature`).
    pub expect_signature: Option<ExpectSignature>,
    pub fatal_error: Option<String>,
    pub recent_failed_update_ids: Option<String>,
    /// `eas-client-id`, lowercased; `None` when missing or not a UUID (such a device is outside
    /// every rollout: it gets the control update).
    pub client_id: Option<String>,
}

/// Reads a check from the query string and headers (header names lowercase).
pub fn parse_request(query: &str, header: &dyn Fn(&str) -> Option<String>) -> Result<ManifestRequest, ApiError> {
    let slug = query_param(query, "slug").ok_or_else(|| {
        ApiError::bad_request("missing slug query parameter (use /api/manifest?slug=<your app slug>)")
    })?;
    let platform = header("expo-platform")
        .or_else(|| query_param(query, "platform"))
        .ok_or_else(|| ApiError::bad_request("missing expo-platform header"))?;
    let runtime_version = header("expo-runtime-version")
        .or_else(|| query_param(query, "runtimeVersion"))
        .or_else(|| query_param(query, "runtime-version"))
        .ok_or_else(|| ApiError::bad_request("missing expo-runtime-version header"))?;
    let target = Target::parse(&slug, &platform, &runtime_version)?;
    let protocol_version = match header("expo-protocol-version").as_deref().map(str::trim) {
        None => 0,
        Some("0") => 0,
        Some("1") => 1,
        Some(v) if v.parse::<u32>().is_ok() => 1,
        Some(v) => {
            return Err(ApiError::bad_request(format!("invalid expo-protocol-version {:?}", validate::truncate(v))))
        }
    };
    let uuid_header = |name: &str| -> Result<Option<String>, ApiError> {
        match header(name) {
            None => Ok(None),
            Some(v) => {
                id::normalize_uuid(&v).map(Some).ok_or_else(|| ApiError::bad_request(format!("{name} is not a UUID")))
            }
        }
    };
    let channel = match header("expo-channel-name") {
        Some(c) => Channel::parse(c.trim())?,
        None => Channel::production(),
    };
    Ok(ManifestRequest {
        target,
        protocol_version,
        current_update_id: uuid_header("expo-current-update-id")?,
        embedded_update_id: uuid_header("expo-embedded-update-id")?,
        channel,
        expect_signature: header("expo-expect-signature")
            .map(|v| {
                sfv::parse_expect_signature(&v)
                    .map_err(|e| ApiError::bad_request(format!("invalid expo-expect-signature: {e}")))
            })
            .transpose()?,
        fatal_error: header("expo-fatal-error").map(|e| e.chars().take(1024).collect()),
        recent_failed_update_ids: header("expo-recent-failed-update-ids").map(|e| e.chars().take(2048).collect()),
        client_id: header("eas-client-id").and_then(|c| id::normalize_uuid(&c)),
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Serve this record: a manifest, or a rollBackToEmbedded directive.
    Serve(&'a UpdateRecord),
    NoUpdate,
    /// Protocol 0 has no directives: with nothing to serve the only answer is an error.
    NothingForV0,
}

/// How a rollout placed this device (see [`rollout`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    pub percentage: u8,
    /// `None`: the request carried no usable `eas-client-id`, so the device is outside.
    pub bucket: Option<u64>,
    pub inside: bool,
}

/// The one check decision, with what led to it: the public check and `explain` both call
/// [`decide_explained`], so they cannot disagree.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision<'a> {
    pub outcome: Outcome<'a>,
    /// Set when the channel's update is in a staged rollout.
    pub rollout: Option<Placement>,
    /// The device was answered from the rollout's control update instead of the channel's.
    pub served_control: bool,
    /// The channel serves a revert of a halted update and the device already runs what it
    /// reverts to, so it is told "no update".
    pub on_halt_control: bool,
}

pub fn decide<'a>(req: &ManifestRequest, pointer: Option<&'a UpdateRecord>) -> Outcome<'a> {
    decide_explained(req, pointer).outcome
}

/// Decides a check from the channel pointer (the update with its rollout and halt state).
pub fn decide_explained<'a>(req: &ManifestRequest, pointer: Option<&'a UpdateRecord>) -> Decision<'a> {
    let mut d = Decision { outcome: Outcome::NoUpdate, rollout: None, served_control: false, on_halt_control: false };
    let mut serve = pointer;
    if let Some(p) = pointer {
        if let Some(r) = &p.rollout {
            let bucket = req.client_id.as_deref().map(|c| rollout::bucket(&p.id, c));
            let inside = bucket.is_some_and(|b| rollout::inside(b, r.percentage));
            d.rollout = Some(Placement { percentage: r.percentage, bucket, inside });
            if !inside {
                // Outside: the control update (nothing when the rollout started on an empty channel).
                serve = r.control.as_deref();
                d.served_control = true;
            }
        }
        if let Some(h) = &p.halted {
            let on_control = h.control_update_id.is_some() && req.current_update_id == h.control_update_id;
            if on_control && req.protocol_version == 1 {
                d.on_halt_control = true;
                d.outcome = Outcome::NoUpdate;
                return d;
            }
        }
    }
    d.outcome = plain_decision(req, serve);
    d
}

/// The answer for a channel serving `current` to every device.
fn plain_decision<'a>(req: &ManifestRequest, current: Option<&'a UpdateRecord>) -> Outcome<'a> {
    let v0 = req.protocol_version == 0;
    match current {
        None if v0 => Outcome::NothingForV0,
        None => Outcome::NoUpdate,
        Some(r) if r.kind == RecordKind::RollBackToEmbedded => {
            if v0 {
                Outcome::NothingForV0
            } else if req.current_update_id.is_some() && req.current_update_id == req.embedded_update_id {
                // Already on the embedded update: nothing to do.
                Outcome::NoUpdate
            } else {
                Outcome::Serve(r)
            }
        }
        // v0 clients cannot be told "no update"; they ignore an update they already run.
        Some(r) if v0 => Outcome::Serve(r),
        Some(r) if req.current_update_id.as_deref() == Some(r.id.as_str()) => Outcome::NoUpdate,
        Some(r) => Outcome::Serve(r),
    }
}

/// The body the server must sign itself for this answer: only when the client expects a
/// signature and the publisher did not store one.
pub fn needs_server_signature(req: &ManifestRequest, outcome: &Outcome<'_>) -> Option<String> {
    req.expect_signature.as_ref()?;
    match outcome {
        Outcome::Serve(r) if r.signature.is_none() => Some(r.body.clone()),
        Outcome::NoUpdate => Some(Directive::NoUpdateAvailable.render()),
        _ => None,
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
        // Clients (the Capacitor plugin among them) only back off when told for how long.
        if e.status == 429 {
            headers.push(("retry-after", RETRY_AFTER_SECONDS.to_string()));
        }
        Reply { status: e.status, headers, body: e.body().into_bytes() }
    }
}

/// What every 429 asks a client to wait (the deploy rate limiter counts per minute).
pub const RETRY_AFTER_SECONDS: u32 = 60;

pub const EXTENSIONS_BODY: &str = r#"{"assetRequestHeaders":{}}"#;

/// Builds the answer. `server_signature` is the server key's signature over
/// [`needs_server_signature`]'s body, when the server holds a key.
pub fn respond(req: &ManifestRequest, outcome: &Outcome<'_>, server_signature: Option<&str>) -> Reply {
    let protocol = req.protocol_version.to_string();
    let common = |mut h: Vec<(&'static str, String)>| {
        h.push(("expo-protocol-version", protocol.clone()));
        h.push(("expo-sfv-version", "0".into()));
        h.push(("cache-control", "private, max-age=0".into()));
        // Manifests carry metadata.channel; a device that switched channels drops the old ones.
        if let Ok(v) = sfv::string_item(&req.channel) {
            h.push(("expo-manifest-filters", format!("channel={v}")));
        }
        h
    };
    let expect = req.expect_signature.as_ref();
    let multipart = |parts: &[Part]| {
        let (ct, body) = multipart::render(parts);
        Reply { status: 200, headers: common(vec![("content-type", ct)]), body }
    };
    match outcome {
        Outcome::Serve(r) => {
            let sig = r.signature.as_deref().or(server_signature);
            let header = match (expect, sig) {
                (Some(e), Some(s)) => Some(sfv::signature_header(s, &e.keyid)),
                (Some(_), None) => {
                    let e = ApiError::new(
                        406,
                        format!("update {} is not signed and this server has no signing key, but the client requires a signature (publish with --private-key, or set CODE_SIGNING_PRIVATE_KEY)", r.id),
                    );
                    let mut reply = Reply::error(&e);
                    reply.headers = common(reply.headers);
                    return reply;
                }
                (None, _) => None,
            };
            match r.kind {
                RecordKind::Update => multipart(&[
                    Part::new("manifest", r.body.as_bytes()).signed(header),
                    Part::new("extensions", EXTENSIONS_BODY),
                ]),
                RecordKind::RollBackToEmbedded => {
                    multipart(&[Part::new("directive", r.body.as_bytes()).signed(header)])
                }
            }
        }
        Outcome::NoUpdate => match (expect, server_signature) {
            // Nothing to sign with: an empty answer has nothing to verify.
            // Only protocol 1 reaches NoUpdate, so this 204 carries expo-protocol-version: 1.
            (Some(_), None) => Reply { status: 204, headers: common(vec![]), body: vec![] },
            (e, s) => {
                let header = e.zip(s).map(|(e, s)| sfv::signature_header(s, &e.keyid));
                multipart(&[Part::new("directive", Directive::NoUpdateAvailable.render()).signed(header)])
            }
        },
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
        Outcome::Serve(r) if r.kind == RecordKind::RollBackToEmbedded => "rollBackToEmbedded",
        Outcome::Serve(r) => r.id.as_str(),
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

    #[test]
    fn error_reply_429_always_says_when_to_retry() {
        let r = Reply::error(&ApiError::new(429, "slow down"));
        assert_eq!(r.header("retry-after"), Some("60"));
        assert_eq!(Reply::error(&ApiError::bad_request("x")).header("retry-after"), None);
    }
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
            created_at: crate::protocol::time::Timestamp::parse("2024-05-01T12:34:56.789Z").unwrap(),
            slug: "demo-app".into(),
            platform: "ios".into(),
            runtime_version: "1.0.3".into(),
            channel: "production".into(),
            kind: RecordKind::Update,
            message: None,
            git_commit: None,
            republished_from: None,
            body: format!("{{\"id\":\"{id}\"}}"),
            signature: None,
            key_id: None,
            launch_asset_bytes: 1,
            file_count: 1,
            total_bytes: 1,
            files: vec![],
            rollout: None,
            halted: None,
            revert: None,
        }
    }
    const ID: &str = "0f8d2a8e-0000-4000-8000-000000000001";

    #[test]
    fn reads_headers_and_query_fallbacks() {
        let r = parse(
            "slug=demo-app",
            &[
                ("expo-platform", "ios"),
                ("expo-runtime-version", "1.0.3"),
                ("expo-protocol-version", "1"),
                ("expo-current-update-id", &ID.to_uppercase()),
            ],
        )
        .unwrap();
        assert_eq!(r.target.platform, Platform::Ios);
        assert_eq!(r.protocol_version, 1);
        assert_eq!(r.current_update_id.as_deref(), Some(ID));
        assert_eq!(r.channel, "production");
        let q = parse("slug=demo-app&platform=android&runtime-version=2.0.0", &[]).unwrap();
        assert_eq!(
            (q.target.platform, q.target.runtime_version.as_str(), q.protocol_version),
            (Platform::Android, "2.0.0", 0)
        );
        assert_eq!(parse("slug=a&platform=ios&runtimeVersion=3", &[]).unwrap().target.runtime_version, "3");
    }

    #[test]
    fn rejects_bad_requests_with_400() {
        let ok = [("expo-platform", "ios"), ("expo-runtime-version", "1")];
        assert_eq!(parse("", &ok).unwrap_err().status, 400);
        assert_eq!(parse("slug=../x", &ok).unwrap_err().status, 400);
        assert_eq!(
            parse("slug=a", &[("expo-platform", "web"), ("expo-runtime-version", "1")]).unwrap_err().status,
            400
        );
        assert_eq!(parse("slug=a", &[("expo-platform", "ios")]).unwrap_err().status, 400);
        assert_eq!(parse("slug=a", &[ok[0], ok[1], ("expo-protocol-version", "one")]).unwrap_err().status, 400);
        assert_eq!(parse("slug=a", &[ok[0], ok[1], ("expo-current-update-id", "123")]).unwrap_err().status, 400);
        assert_eq!(parse("slug=a", &[ok[0], ok[1], ("expo-channel-name", "a/b")]).unwrap_err().status, 400);
    }

    /// Review finding: a device sending neither `expo-current-update-id` nor
    /// `expo-embedded-update-id` must be offered what the channel serves, never "no update".
    #[test]
    fn decide_device_without_update_ids_gets_what_the_channel_serves() {
        let req = parse(
            "slug=demo-app",
            &[("expo-platform", "ios"), ("expo-runtime-version", "1.0.3"), ("expo-protocol-version", "1")],
        )
        .unwrap();
        assert_eq!((req.current_update_id.as_deref(), req.embedded_update_id.as_deref()), (None, None));
        let update = record(ID);
        assert_eq!(decide(&req, Some(&update)), Outcome::Serve(&update));
        let rollback = UpdateRecord { kind: RecordKind::RollBackToEmbedded, ..record(ID) };
        assert_eq!(decide(&req, Some(&rollback)), Outcome::Serve(&rollback));
    }

    #[test]
    fn decisions() {
        let mut req = parse(
            "slug=demo-app",
            &[("expo-platform", "ios"), ("expo-runtime-version", "1.0.3"), ("expo-protocol-version", "1")],
        )
        .unwrap();
        let rec = record(ID);
        assert_eq!(decide(&req, None), Outcome::NoUpdate);
        assert_eq!(decide(&req, Some(&rec)), Outcome::Serve(&rec));
        req.current_update_id = Some(ID.into());
        assert_eq!(decide(&req, Some(&rec)), Outcome::NoUpdate);
        req.protocol_version = 0;
        assert_eq!(decide(&req, Some(&rec)), Outcome::Serve(&rec));
        assert_eq!(decide(&req, None), Outcome::NothingForV0);
    }

    #[test]
    fn responses_carry_protocol_headers() {
        let req = parse(
            "slug=demo-app",
            &[("expo-platform", "ios"), ("expo-runtime-version", "1.0.3"), ("expo-protocol-version", "1")],
        )
        .unwrap();
        let rec = record(ID);
        let r = respond(&req, &Outcome::Serve(&rec), None);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("expo-protocol-version"), Some("1"));
        assert_eq!(r.header("expo-sfv-version"), Some("0"));
        assert_eq!(r.header("cache-control"), Some("private, max-age=0"));
        let parts = multipart::parse(r.header("content-type").unwrap(), &r.body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name().as_deref(), Some("manifest"));
        assert_eq!(parts[0].body, rec.body.as_bytes());
        assert_eq!(r.header("expo-manifest-filters"), Some("channel=\"production\""));
        assert_eq!(parts[1].name().as_deref(), Some("extensions"));
        let ext: serde_json::Value = serde_json::from_slice(&parts[1].body).unwrap();
        assert!(ext["assetRequestHeaders"].is_object());

        let n = respond(&req, &Outcome::NoUpdate, None);
        let parts = multipart::parse(n.header("content-type").unwrap(), &n.body).unwrap();
        assert_eq!(parts[0].name().as_deref(), Some("directive"));
        assert_eq!(parts[0].body, br#"{"type":"noUpdateAvailable"}"#);

        let mut v0 = req.clone();
        v0.protocol_version = 0;
        let e = respond(&v0, &Outcome::NothingForV0, None);
        assert_eq!(e.status, 404);
        assert_eq!(e.header("expo-protocol-version"), Some("0"));
        assert!(String::from_utf8(e.body).unwrap().starts_with("{\"error\":"));
    }

    fn signing_request() -> ManifestRequest {
        parse(
            "slug=demo-app",
            &[
                ("expo-platform", "ios"),
                ("expo-runtime-version", "1.0.3"),
                ("expo-protocol-version", "1"),
                ("expo-expect-signature", r#"sig, keyid="main", alg="rsa-v1_5-sha256""#),
            ],
        )
        .unwrap()
    }

    #[test]
    fn signatures_when_the_client_expects_them() {
        let req = signing_request();
        assert_eq!(req.expect_signature.as_ref().unwrap().keyid, "main");
        let mut rec = record(ID);
        // Publisher-signed: served with the requested keyid, no server work needed.
        rec.signature = Some("c2ln".into());
        assert_eq!(needs_server_signature(&req, &Outcome::Serve(&rec)), None);
        let r = respond(&req, &Outcome::Serve(&rec), None);
        let parts = multipart::parse(r.header("content-type").unwrap(), &r.body).unwrap();
        let sig = parts[0].headers.iter().find(|(k, _)| k == "expo-signature").expect("lowercase expo-signature");
        assert_eq!(sig.1, r#"sig="c2ln", keyid="main", alg="rsa-v1_5-sha256""#);
        assert!(parts[1].header("expo-signature").is_none(), "extensions are not signed");

        // Unsigned: the server signs it if it can, and refuses if it cannot.
        rec.signature = None;
        assert_eq!(needs_server_signature(&req, &Outcome::Serve(&rec)).as_deref(), Some(rec.body.as_str()));
        let r = respond(&req, &Outcome::Serve(&rec), Some("c2VydmVy"));
        assert!(String::from_utf8(r.body).unwrap().contains(r#"expo-signature: sig="c2VydmVy", keyid="main""#));
        let refused = respond(&req, &Outcome::Serve(&rec), None);
        assert_eq!(refused.status, 406);
        assert!(String::from_utf8(refused.body).unwrap().contains("not signed"));

        // No update: a signed directive with a key, a 204 without one.
        assert_eq!(
            needs_server_signature(&req, &Outcome::NoUpdate).as_deref(),
            Some(r#"{"type":"noUpdateAvailable"}"#)
        );
        let signed = respond(&req, &Outcome::NoUpdate, Some("c2ln"));
        let parts = multipart::parse(signed.header("content-type").unwrap(), &signed.body).unwrap();
        assert_eq!(parts[0].header("expo-signature"), Some(r#"sig="c2ln", keyid="main", alg="rsa-v1_5-sha256""#));
        let empty = respond(&req, &Outcome::NoUpdate, None);
        assert_eq!((empty.status, empty.header("expo-protocol-version"), empty.body.len()), (204, Some("1"), 0));

        // Without expo-expect-signature nothing is signed.
        let plain = parse(
            "slug=demo-app",
            &[("expo-platform", "ios"), ("expo-runtime-version", "1.0.3"), ("expo-protocol-version", "1")],
        )
        .unwrap();
        assert_eq!(needs_server_signature(&plain, &Outcome::NoUpdate), None);
        assert!(!String::from_utf8(respond(&plain, &Outcome::Serve(&rec), None).body)
            .unwrap()
            .contains("expo-signature"));
        assert_eq!(
            parse(
                "slug=a",
                &[("expo-platform", "ios"), ("expo-runtime-version", "1"), ("expo-expect-signature", "sig, keyid=1")]
            )
            .unwrap_err()
            .status,
            400
        );
    }

    #[test]
    fn rollback_to_embedded_records() {
        let mut req = signing_request();
        req.expect_signature = None;
        let mut rec = record(ID);
        rec.kind = RecordKind::RollBackToEmbedded;
        rec.body = Directive::roll_back_to_embedded(1_714_566_896_789).render();
        let emb = "11111111-2222-4333-8444-555555555555";
        req.current_update_id = Some("0f8d2a8e-0000-4000-8000-000000000009".into());
        req.embedded_update_id = Some(emb.into());
        let r = respond(&req, &decide(&req, Some(&rec)), None);
        let parts = multipart::parse(r.header("content-type").unwrap(), &r.body).unwrap();
        assert_eq!((parts.len(), parts[0].name().as_deref()), (1, Some("directive")));
        assert_eq!(parts[0].body, rec.body.as_bytes());
        // A device already on its embedded update has nothing to do.
        req.current_update_id = Some(emb.into());
        assert_eq!(decide(&req, Some(&rec)), Outcome::NoUpdate);
        req.protocol_version = 0;
        assert_eq!(decide(&req, Some(&rec)), Outcome::NothingForV0);
    }

    #[test]
    fn filters_follow_the_channel() {
        let r = parse(
            "slug=a",
            &[
                ("expo-platform", "ios"),
                ("expo-runtime-version", "1"),
                ("expo-protocol-version", "1"),
                ("expo-channel-name", "staging"),
            ],
        )
        .unwrap();
        assert_eq!(r.channel, "staging");
        let reply = respond(&r, &Outcome::NoUpdate, None);
        let f = crate::protocol::sfv::parse_dictionary(reply.header("expo-manifest-filters").unwrap()).unwrap();
        assert_eq!(f, vec![("channel".to_string(), crate::protocol::sfv::Item::String("staging".into()))]);
    }

    #[test]
    fn log_line_names_what_was_served() {
        let mut req = parse(
            "slug=demo-app",
            &[("expo-platform", "ios"), ("expo-runtime-version", "1.0.3"), ("expo-fatal-error", "TypeError: x")],
        )
        .unwrap();
        req.embedded_update_id = Some(ID.into());
        let rec = record(ID);
        let v: serde_json::Value = serde_json::from_str(&log_line(&req, &Outcome::Serve(&rec))).unwrap();
        assert_eq!(v["served"], ID);
        assert_eq!(v["embeddedUpdateId"], ID);
        assert_eq!(v["currentUpdateId"], "none");
        assert_eq!(v["fatalError"], "TypeError: x");
        assert!(v.get("recentFailedUpdateIds").is_none());
        let v: serde_json::Value = serde_json::from_str(&log_line(&req, &Outcome::NoUpdate)).unwrap();
        assert_eq!(v["served"], "none");
    }
}
