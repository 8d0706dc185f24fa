//! The Capacitor and APK deploy routes, run by [`crate::deploy::dispatch`] after it authorized the
//! caller. Uploads stream into content-addressed objects (the digest is verified as the store
//! writes, exactly as Expo files are; a bundle is then checked with [`zipcheck`] and deleted again
//! when it is not a valid bundle, so a refused zip leaves nothing stored). Every state change is
//! a [`CapOp`] applied by the app's writer, which re-checks what it depends on.

use super::route::CapRoute;
use super::state::{self, CapAction, CapOp, CapRequest};
use super::zipcheck::{self, RangeRead};
use crate::check::Reply;
use crate::deploy::dispatch::{json, read_json, Backend, Body};
use crate::deploy::formdata::{Event, Parser};
use crate::deploy::service::{self, Ctx, UploadHeaders};
use crate::deploy::writer::{WriteOp, WriteOutcome, Writer};
use crate::error::ApiError;
use crate::http::route::query_param;
use crate::protocol::hash::{self, FileHasher};
use crate::storage::store::{ObjectStore, PutOptions};
use crate::validate::Slug;
use serde::Serialize;

pub const ZIP_TYPE: &str = "application/zip";
pub const APK_TYPE: &str = "application/vnd.android.package-archive";
/// Largest APK (the Worker streams it into R2 and never holds it).
pub const MAX_APK_BYTES: u64 = 100 << 20;

/// A zip stored in the object store, read by ranges.
struct Stored<'a, S> {
    store: &'a S,
    key: &'a str,
}

impl<S: ObjectStore> RangeRead for Stored<'_, S> {
    async fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, ApiError> {
        self.store.get_range(self.key, offset, len).await?.ok_or_else(|| ApiError::not_found("the bundle vanished"))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Uploaded<'a> {
    sha256: &'a str,
    size: u64,
    stored: bool,
}

/// Runs one deploy route; returns the reply and the channel it acted on (for the audit entry).
pub async fn run<B: Backend>(
    b: &B,
    route: CapRoute,
    query: &str,
    header: &dyn Fn(&str) -> Option<String>,
    body: &mut impl Body,
    ctx: &Ctx<'_>,
) -> Result<(Reply, Option<String>), ApiError> {
    let cap = ctx.limits.max_json_bytes as usize;
    let store = b.store();
    let slug = Slug::parse(route.slug())?;
    // One await per kind of work (upload, listing, form, JSON body): each await point of an async
    // fn is more wasm, so the routes share them.
    let upload_to = match &route {
        CapRoute::UploadBundle { sha256, .. } => {
            Some((state::bundle_key(&slug, sha256), sha256, ZIP_TYPE, ctx.limits.max_file_bytes))
        }
        CapRoute::UploadApk { sha256, .. } => {
            Some((state::apk_key(&slug, sha256), sha256, APK_TYPE, MAX_APK_BYTES.max(ctx.limits.max_file_bytes)))
        }
        _ => None,
    };
    if let Some((key, sha256, content_type, limit)) = upload_to {
        return Ok((upload(store, &key, sha256, content_type, limit, header, body).await?, None));
    }
    if let CapRoute::List { .. } = route {
        let (s, _) = state::load(store, &slug).await?;
        let listing = serde_json::json!({
            "appId": slug.as_str(),
            "defaultChannel": s.default_channel(),
            "channels": s.channels,
            "apk": s.apk,
        });
        return Ok((json(200, &listing)?, None));
    }
    let (action, ok) = match &route {
        CapRoute::Publish { .. } => (CapAction::Publish, 201),
        CapRoute::Rollback { .. } => (CapAction::Rollback, 200),
        CapRoute::DeleteVersion { .. } => (CapAction::Delete, 200),
        CapRoute::ChannelSettings { .. } => (CapAction::Channel, 200),
        CapRoute::ApkPublish { .. } => (CapAction::ApkPublish, 201),
        _ => return Err(ApiError::internal("not a deploy route")),
    };
    let form = action == CapAction::Publish
        && header("content-type").unwrap_or_default().to_ascii_lowercase().starts_with("multipart/form-data");
    let mut request = if form {
        publish_form(store, &slug, header, body, ctx).await?
    } else if action == CapAction::Delete {
        CapRequest { channel: query_param(query, "channel"), ..Default::default() }
    } else {
        read_json(body, header, cap).await?
    };
    // What the path names wins over the body.
    match route {
        CapRoute::DeleteVersion { version, .. } => request.version = Some(version),
        CapRoute::ChannelSettings { channel, .. } => request.channel = Some(channel),
        _ => {}
    }
    let outcome = match b.writer().write(WriteOp::Capacitor(CapOp { action, slug, request }), ctx).await? {
        WriteOutcome::Capacitor(v) => v,
        other => return Err(ApiError::internal(format!("the app's writer answered an unexpected outcome: {other:?}"))),
    };
    // Publishing what is already published changes nothing.
    let status = if outcome["unchanged"] == true { 200 } else { ok };
    let channel = outcome["channel"].as_str().map(str::to_string);
    Ok((json(status, &outcome)?, channel))
}

/// One raw file into its content-addressed key (never rewritten once stored).
async fn upload<S: ObjectStore>(
    store: &S,
    key: &str,
    sha256: &str,
    content_type: &str,
    limit: u64,
    header: &dyn Fn(&str) -> Option<String>,
    body: &mut impl Body,
) -> Result<Reply, ApiError> {
    let limits = crate::config::Limits { max_file_bytes: limit, ..Default::default() };
    let up = UploadHeaders { content_type: content_type.into(), ..service::upload_headers(header, &limits)? };
    if let Some(existing) = store.head(key).await? {
        return json(200, &Uploaded { sha256, size: existing.size, stored: false });
    }
    let sha = hash::parse_hex::<32>(sha256).ok_or_else(|| ApiError::bad_request("file id must be SHA-256 hex"))?;
    let stored = body.store_file(key, &up, sha).await?;
    if stored.size != up.len {
        store.delete(&[key.to_string()]).await?;
        return Err(ApiError::bad_request("body length does not match Content-Length"));
    }
    if content_type == ZIP_TYPE {
        if let Err(e) = zipcheck::check(&Stored { store, key }, stored.size).await {
            store.delete(&[key.to_string()]).await?;
            return Err(e);
        }
    }
    json(201, &Uploaded { sha256, size: stored.size, stored: true })
}

const MAX_TEXT_FIELD: usize = 1024;

/// The hand-written scripts' upload: `multipart/form-data` with `file`, `version`, `channel`,
/// `checksum` (verified when given) and optionally `min_native_version`. The zip is checked and
/// its checksum compared before anything is stored.
async fn publish_form<S: ObjectStore>(
    store: &S,
    slug: &str,
    header: &dyn Fn(&str) -> Option<String>,
    body: &mut impl Body,
    ctx: &Ctx<'_>,
) -> Result<CapRequest, ApiError> {
    let ct = header("content-type").unwrap_or_default();
    let boundary = crate::protocol::multipart::boundary_of(&ct)
        .ok_or_else(|| ApiError::bad_request("multipart/form-data without a boundary"))?;
    let len = header("content-length").and_then(|l| l.trim().parse().ok());
    crate::deploy::formpublish::check_content_length(len, ctx)?;
    let mut parser = Parser::new(&boundary);
    let (mut received, mut current, mut file_seen) = (0u64, None::<String>, false);
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut hasher = FileHasher::new();
    let mut fields = std::collections::BTreeMap::<String, Vec<u8>>::new();
    while let Some(chunk) = body.chunk().await {
        let chunk = chunk?;
        received += chunk.len() as u64;
        if received > ctx.limits.max_form_bytes {
            return Err(ApiError::too_large(format!(
                "form is larger than MAX_FORM_BYTES ({} bytes): upload with `publish-cli capacitor publish`",
                ctx.limits.max_form_bytes
            )));
        }
        let events = parser
            .feed(&chunk)
            .map_err(|e| ApiError::bad_request(format!("malformed multipart/form-data body: {e}")))?;
        for e in events {
            match e {
                Event::Start { name, .. } => {
                    if name == "file" && std::mem::replace(&mut file_seen, true) {
                        return Err(ApiError::bad_request("the form has two `file` fields"));
                    }
                    current = Some(name);
                }
                Event::Data(d) => match current.as_deref() {
                    Some("file") => {
                        let held: usize = blocks.iter().map(Vec::len).sum();
                        if (held + d.len()) as u64 > ctx.limits.max_file_bytes {
                            return Err(ApiError::too_large(format!(
                                "the bundle is larger than MAX_FILE_BYTES ({} bytes)",
                                ctx.limits.max_file_bytes
                            )));
                        }
                        hasher.update(&d);
                        blocks.push(d);
                    }
                    Some(name @ ("version" | "channel" | "checksum" | "min_native_version" | "minNativeVersion")) => {
                        let f = fields.entry(name.to_string()).or_default();
                        if f.len() + d.len() > MAX_TEXT_FIELD {
                            return Err(ApiError::bad_request(format!(
                                "form field {name} is longer than {MAX_TEXT_FIELD} bytes"
                            )));
                        }
                        f.extend_from_slice(&d);
                    }
                    // Unknown fields are ignored (scripts send extras such as `app_id`).
                    _ => {}
                },
                Event::End => current = None,
            }
        }
    }
    parser.finish().map_err(|e| ApiError::bad_request(format!("malformed multipart/form-data body: {e}")))?;
    let field =
        |n: &str| fields.get(n).map(|v| String::from_utf8_lossy(v).trim().to_string()).filter(|v| !v.is_empty());
    if !file_seen {
        return Err(ApiError::bad_request("the form has no `file` field (the bundle zip)"));
    }
    let version = field("version").ok_or_else(|| ApiError::bad_request("the form has no `version` field"))?;
    state::version(&version)?;
    let digests = hasher.finish();
    let checksum = digests.sha256_hex();
    if let Some(given) = field("checksum") {
        if !given.eq_ignore_ascii_case(&checksum) {
            return Err(ApiError::unprocessable(format!(
                "checksum mismatch: the form says {}, the uploaded file's SHA-256 is {checksum}; nothing was stored",
                crate::validate::truncate(&given)
            )));
        }
    }
    let size: u64 = blocks.iter().map(|b| b.len() as u64).sum();
    zipcheck::check(blocks.as_slice(), size).await?;
    let key = state::bundle_key(slug, &checksum);
    if store.head(&key).await?.is_none() {
        let opts =
            PutOptions { content_type: Some(ZIP_TYPE.into()), sha256: Some(digests.sha256), ..Default::default() };
        store.put_blocks(&key, blocks.into(), opts).await?;
    }
    Ok(CapRequest {
        version: Some(version),
        channel: field("channel"),
        checksum: Some(checksum),
        min_native_version: field("min_native_version").or_else(|| field("minNativeVersion")),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::dispatch::BufferedBody;
    use crate::deploy::testing::{self, MemoryBackend};
    use crate::storage::store::MemoryStore;

    const APP: &str = "com.example.capota";

    fn fixture(v: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/capacitor/bundles/{v}/com.example.capota_{v}.zip",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn run_route(
        b: &MemoryBackend,
        route: CapRoute,
        query: &str,
        headers: Vec<(&'static str, String)>,
        bytes: Vec<u8>,
    ) -> Result<Reply, ApiError> {
        let header = move |n: &str| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        let mut body = BufferedBody { bytes: Some(bytes), store: b.store() };
        pollster::block_on(run(b, route, query, &header, &mut body, &testing::ctx(1_000))).map(|(r, _)| r)
    }

    fn form(fields: &[(&str, &[u8])]) -> (String, Vec<u8>) {
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--B\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--B--\r\n");
        ("multipart/form-data; boundary=B".into(), body)
    }

    fn post_form(b: &MemoryBackend, fields: &[(&str, &[u8])]) -> Result<Reply, ApiError> {
        let (ct, body) = form(fields);
        let headers = vec![("content-type", ct), ("content-length", body.len().to_string())];
        run_route(b, CapRoute::Publish { slug: APP.into() }, "", headers, body)
    }

    #[test]
    fn form_publish_with_matching_checksum_stores_the_exact_bytes() {
        let b = MemoryBackend::new(MemoryStore::new());
        let zip = fixture("1.0.1");
        let sha = hash::Digests::of(&zip).sha256_hex();
        let r = post_form(&b, &[("file", &zip), ("version", b"1.0.1"), ("checksum", sha.as_bytes())]).unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(b.store().bytes(&state::bundle_key(APP, &sha)).unwrap(), zip);
        let (s, _) = pollster::block_on(state::load(b.store(), APP)).unwrap();
        assert_eq!(s.channels["production"].current.as_deref(), Some("1.0.1"));
    }

    #[test]
    fn form_publish_with_wrong_checksum_or_bad_zip_stores_nothing() {
        let b = MemoryBackend::new(MemoryStore::new());
        let zip = fixture("1.0.0");
        let wrong = "0".repeat(64);
        let e = post_form(&b, &[("file", &zip), ("version", b"1.0.0"), ("checksum", wrong.as_bytes())]).unwrap_err();
        assert_eq!(e.status, 422);
        assert!(e.message.contains("checksum mismatch"), "{}", e.message);
        let apk =
            std::fs::read(format!("{}/tests/fixtures/capacitor/apk/capota-demo-1.0.1.apk", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        let e = post_form(&b, &[("file", &apk), ("version", b"1.0.0")]).unwrap_err();
        assert!(e.message.contains("no index.html"), "{}", e.message);
        assert!(b.store().keys().is_empty(), "{:?}", b.store().keys());
    }

    #[test]
    fn upload_of_a_non_bundle_zip_is_deleted_again() {
        let b = MemoryBackend::new(MemoryStore::new());
        let bytes = b"not a zip at all, just text".to_vec();
        let sha = hash::Digests::of(&bytes).sha256_hex();
        let headers = vec![("content-length", bytes.len().to_string())];
        let e =
            run_route(&b, CapRoute::UploadBundle { slug: APP.into(), sha256: sha }, "", headers, bytes).unwrap_err();
        assert_eq!(e.status, 422);
        assert!(b.store().keys().is_empty());
    }

    #[test]
    fn publish_delete_rollback_follow_the_history() {
        let b = MemoryBackend::new(MemoryStore::new());
        let mut shas = Vec::new();
        for v in ["1.0.0", "1.0.1"] {
            let zip = fixture(v);
            let sha = hash::Digests::of(&zip).sha256_hex();
            let headers = vec![("content-length", zip.len().to_string())];
            let r = run_route(&b, CapRoute::UploadBundle { slug: APP.into(), sha256: sha.clone() }, "", headers, zip)
                .unwrap();
            assert_eq!(r.status, 201);
            let body = serde_json::json!({"version": v, "checksum": sha}).to_string().into_bytes();
            let r = run_route(&b, CapRoute::Publish { slug: APP.into() }, "", vec![], body).unwrap();
            assert_eq!(r.status, 201);
            shas.push(sha);
        }
        // Same version, other bytes: refused.
        let body = serde_json::json!({"version": "1.0.1", "checksum": shas[0]}).to_string().into_bytes();
        assert_eq!(run_route(&b, CapRoute::Publish { slug: APP.into() }, "", vec![], body).unwrap_err().status, 409);
        let rb = run_route(&b, CapRoute::Rollback { slug: APP.into() }, "", vec![], b"{}".to_vec()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&rb.body).unwrap();
        assert_eq!((v["from"].as_str(), v["to"].as_str()), (Some("1.0.1"), Some("1.0.0")));
        let again = run_route(&b, CapRoute::Rollback { slug: APP.into() }, "", vec![], b"{}".to_vec()).unwrap_err();
        assert_eq!(again.status, 422, "{}", again.message);
        let fwd = br#"{"to":"1.0.1"}"#.to_vec();
        run_route(&b, CapRoute::Rollback { slug: APP.into() }, "", vec![], fwd).unwrap();
        let d =
            run_route(&b, CapRoute::DeleteVersion { slug: APP.into(), version: "1.0.1".into() }, "", vec![], vec![])
                .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
        assert_eq!((v["current"].as_str(), v["bundleDeleted"].as_bool()), (Some("1.0.0"), Some(true)));
        assert!(b.store().bytes(&state::bundle_key(APP, &shas[1])).is_none());
        assert!(b.store().bytes(&state::bundle_key(APP, &shas[0])).is_some());
    }

    #[test]
    fn publish_of_a_bundle_never_uploaded_is_refused_at_the_write() {
        let b = MemoryBackend::new(MemoryStore::new());
        let body = serde_json::json!({"version": "1.0.0", "checksum": "a".repeat(64)}).to_string().into_bytes();
        assert_eq!(run_route(&b, CapRoute::Publish { slug: APP.into() }, "", vec![], body).unwrap_err().status, 422);
        assert!(b.store().keys().is_empty());
    }
}
