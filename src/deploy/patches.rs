//! Uploads that make downloads smaller: bsdiff patches between launch assets and precompressed
//! variants of files, both produced by the publish CLI (never by the Worker). Invariant: a
//! publish-scoped caller can only add an object that is tied to what the runtime already holds —
//! a patch only between the launch assets of two updates stored in this runtime (both records are
//! read and their launch-asset hashes compared with the path), a variant only beside a stored
//! file (whose content type it inherits). Both are immutable once stored (first write wins, like
//! files), streamed into storage with the uploader's SHA-256 verified by the store, and smaller
//! than the file they stand for. Their bytes are not decoded here: the client hashes what it
//! rebuilds or decodes against the manifest and falls back to the full file (patch) or fails
//! (variant) on a mismatch, and the publish scope can already change the code devices run; the
//! CLI proves each patch and variant by applying or decoding it before upload.
//!
//! The records read at upload are not re-checked later: a patch is a relation between two
//! content hashes, true whatever happens to the updates, and the file collector removes patches
//! and variants whose files no update names any more.

use crate::check::patch::{launch_asset_sha, Encoding};
use crate::check::Reply;
use crate::deploy::api::UploadResponse;
use crate::deploy::dispatch::{json, Body};
use crate::deploy::service::{self, Ctx, UploadHeaders};
use crate::error::ApiError;
use crate::protocol::{hash, id};
use crate::storage::layout::Target;
use crate::storage::record::UpdateRecord;
use crate::storage::store::ObjectStore;

/// The uploader's SHA-256 of the body (a patch or variant is not named by its own digest, so
/// the store needs it from a header to verify the transfer).
pub const DIGEST_HEADER: &str = "x-content-sha256";
/// The stored updates whose launch assets a patch joins.
pub const BASE_UPDATE_HEADER: &str = "x-base-update-id";
pub const TARGET_UPDATE_HEADER: &str = "x-target-update-id";

fn body_digest(header: &dyn Fn(&str) -> Option<String>) -> Result<[u8; 32], ApiError> {
    header(DIGEST_HEADER)
        .and_then(|h| hash::parse_hex::<32>(h.trim()))
        .ok_or_else(|| ApiError::bad_request("x-content-sha256 must be the body's SHA-256 as 64 lowercase hex digits"))
}

/// The launch asset and size of a stored update named by `name` (a header).
async fn launch_of<S: ObjectStore>(
    store: &S,
    t: &Target,
    header: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<(String, u64, String), ApiError> {
    let id = header(name)
        .and_then(|v| id::normalize_uuid(&v))
        .ok_or_else(|| ApiError::bad_request(format!("{name} must be the UUID of an update stored in this runtime")))?;
    let Some((_, bytes)) = store.get(&t.record_key(&id)).await? else {
        return Err(ApiError::not_found(format!(
            "no update {id} in {} {} runtimeVersion {} ({name})",
            t.slug, t.platform, t.runtime_version
        )));
    };
    let sha = launch_asset_sha(&bytes)
        .ok_or_else(|| ApiError::conflict(format!("update {id} is a directive: it has no launch asset to patch")))?;
    let record = UpdateRecord::from_json(&bytes)?;
    Ok((sha, record.launch_asset_bytes, id))
}

/// `PUT /api/patches/…/:base/:target`: stores the patch from launch asset `base` to `target_sha`.
pub async fn upload_patch<S: ObjectStore>(
    store: &S,
    t: &Target,
    base: &str,
    target_sha: &str,
    header: &dyn Fn(&str) -> Option<String>,
    body: &mut impl Body,
    ctx: &Ctx<'_>,
) -> Result<Reply, ApiError> {
    if base == target_sha {
        return Err(ApiError::bad_request("a patch joins two different launch assets (base equals target)"));
    }
    let up = service::upload_headers(header, &ctx.limits)?;
    let digest = body_digest(header)?;
    for (name, want) in [(BASE_UPDATE_HEADER, base), (TARGET_UPDATE_HEADER, target_sha)] {
        let (launch, launch_bytes, id) = launch_of(store, t, header, name).await?;
        if launch != want {
            return Err(ApiError::conflict(format!("update {id}'s launch asset is {launch}, not {want} ({name})")));
        }
        if name == TARGET_UPDATE_HEADER && up.len >= launch_bytes {
            return Err(ApiError::too_large(format!(
                "patch is {} bytes, not smaller than the {launch_bytes}-byte launch asset it rebuilds: clients \
                 should download the full asset, so do not upload it",
                up.len
            )));
        }
    }
    let up = UploadHeaders { content_type: "application/octet-stream".into(), ..up };
    store_once(store, &t.patch_key(base, target_sha), up, digest, body).await
}

/// `HEAD /api/patches/…/:base/:target`: whether the patch is stored (200) or not (404), so a
/// republish or a second run sends nothing it already sent.
pub async fn status<S: ObjectStore>(store: &S, t: &Target, base: &str, target_sha: &str) -> Result<Reply, ApiError> {
    match store.head(&t.patch_key(base, target_sha)).await? {
        Some(_) => Ok(Reply { status: 200, headers: Vec::new(), body: Vec::new() }),
        None => Err(ApiError::not_found("no such patch stored")),
    }
}

/// `PUT /api/files/…/:sha256/:encoding`: stores a precompressed variant of a stored file.
pub async fn upload_encoded<S: ObjectStore>(
    store: &S,
    t: &Target,
    sha256: &str,
    encoding: Encoding,
    header: &dyn Fn(&str) -> Option<String>,
    body: &mut impl Body,
    ctx: &Ctx<'_>,
) -> Result<Reply, ApiError> {
    let up = service::upload_headers(header, &ctx.limits)?;
    let digest = body_digest(header)?;
    let Some(identity) = store.head(&t.file_key(sha256)).await? else {
        return Err(ApiError::conflict(format!("file {sha256} is not stored: upload it before its variants")));
    };
    if up.len >= identity.size {
        return Err(ApiError::unprocessable(format!(
            "{} variant is {} bytes, not smaller than the {}-byte file: do not upload it",
            encoding.header(),
            up.len,
            identity.size
        )));
    }
    // The variant is served with the file's own type: an upload cannot change how it is read.
    let content_type = identity.content_type.unwrap_or_else(|| "application/octet-stream".into());
    store_once(store, &t.encoded_key(sha256, encoding.ext()), UploadHeaders { content_type, ..up }, digest, body).await
}

/// Streams `body` into `key` unless something is stored there already (every upload route:
/// files, variants and patches are all immutable), with the store verifying `digest`.
pub(crate) async fn store_once<S: ObjectStore>(
    store: &S,
    key: &str,
    up: UploadHeaders,
    digest: [u8; 32],
    body: &mut impl Body,
) -> Result<Reply, ApiError> {
    let hex = hash::hex(&digest);
    if let Some(existing) = store.head(key).await? {
        return json(200, &UploadResponse { sha256: hex, size: existing.size, stored: false });
    }
    let stored = body.store_file(key, &up, digest).await?;
    if stored.size != up.len {
        store.delete(&[key.to_string()]).await?;
        return Err(ApiError::bad_request("body length does not match Content-Length"));
    }
    json(201, &UploadResponse { sha256: hex, size: stored.size, stored: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::dispatch::BufferedBody;
    use crate::deploy::testing;
    use crate::protocol::hash::Digests;
    use crate::storage::store::MemoryStore;

    const V1: [(&[u8], &str); 2] = [(b"bundle-one-with-some-length", "bundle"), (b"shared", "png")];
    const V2: [(&[u8], &str); 2] = [(b"bundle-two-with-some-length", "bundle"), (b"shared", "png")];

    /// A runtime with v1 and v2 committed; their ids.
    fn seeded() -> (MemoryStore, Target, [String; 2]) {
        let store = MemoryStore::new();
        let t = testing::target("app");
        let ids = [(&V1, 1u8), (&V2, 2)].map(|(files, n)| {
            testing::upload(&store, &t, files);
            let body = testing::manifest_with_id(&t, files, 1_000 * n as u64, "production", [n; 16]);
            let req = testing::commit_request(body, "production");
            pollster::block_on(service::commit(&store, &t, req, &testing::ctx(1_000 * n as u64))).unwrap().id
        });
        (store, t, ids)
    }

    fn put_patch(
        store: &MemoryStore,
        t: &Target,
        ids: [&str; 2],
        base: &[u8],
        target: &[u8],
        patch: &[u8],
    ) -> Result<Reply, ApiError> {
        let headers = [
            ("content-length", patch.len().to_string()),
            (DIGEST_HEADER, Digests::of(patch).sha256_hex()),
            (BASE_UPDATE_HEADER, ids[0].to_string()),
            (TARGET_UPDATE_HEADER, ids[1].to_string()),
        ];
        let header = |n: &str| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        let mut body = BufferedBody { bytes: Some(patch.to_vec()), store };
        let (b, tg) = (Digests::of(base).sha256_hex(), Digests::of(target).sha256_hex());
        pollster::block_on(upload_patch(store, t, &b, &tg, &header, &mut body, &testing::ctx(5_000)))
    }

    #[test]
    fn upload_patch_between_stored_launch_assets_is_stored_once() {
        let (store, t, ids) = seeded();
        let ids = [ids[0].as_str(), ids[1].as_str()];
        let r = put_patch(&store, &t, ids, V1[0].0, V2[0].0, b"BSDIFF40-p").unwrap();
        assert_eq!(r.status, 201);
        let key = t.patch_key(&Digests::of(V1[0].0).sha256_hex(), &Digests::of(V2[0].0).sha256_hex());
        assert_eq!(store.bytes(&key).as_deref(), Some(&b"BSDIFF40-p"[..]));
        // Immutable: a second upload stores nothing.
        let again = put_patch(&store, &t, ids, V1[0].0, V2[0].0, b"BSDIFF40-q").unwrap();
        assert_eq!(again.status, 200);
        let (b, tg) = (Digests::of(V1[0].0).sha256_hex(), Digests::of(V2[0].0).sha256_hex());
        assert_eq!(pollster::block_on(status(&store, &t, &b, &tg)).unwrap().status, 200);
        assert_eq!(pollster::block_on(status(&store, &t, &tg, &b)).unwrap_err().status, 404);
        assert_eq!(store.bytes(&key).as_deref(), Some(&b"BSDIFF40-p"[..]));
    }

    #[test]
    fn upload_patch_not_tied_to_stored_updates_is_refused_and_stores_nothing() {
        let (store, t, ids) = seeded();
        let ids = [ids[0].as_str(), ids[1].as_str()];
        let unknown = "0f8d2a8e-0000-4000-8000-0000000000aa";
        let before = store.keys();
        for (name, who, base, target, patch, status) in [
            ("target hash is not the target update's launch asset", ids, V1[0].0, &b"other"[..], &b"p"[..], 409),
            ("base hash is not the base update's launch asset", ids, &b"other"[..], V2[0].0, &b"p"[..], 409),
            ("unknown base update", [unknown, ids[1]], V1[0].0, V2[0].0, &b"p"[..], 404),
            ("unknown target update", [ids[0], unknown], V1[0].0, V2[0].0, &b"p"[..], 404),
            ("base = target", [ids[1], ids[1]], V2[0].0, V2[0].0, &b"p"[..], 400),
            ("patch not smaller than the bundle", ids, V1[0].0, V2[0].0, &[0u8; 64][..], 413),
        ] {
            let e = put_patch(&store, &t, who, base, target, patch).unwrap_err();
            assert_eq!(e.status, status, "{name}: {}", e.message);
        }
        assert_eq!(store.keys(), before);
    }

    fn put_variant(
        store: &MemoryStore,
        t: &Target,
        of: &[u8],
        enc: Encoding,
        v: &[u8],
        digest: Option<String>,
    ) -> Result<Reply, ApiError> {
        let headers = [
            ("content-length", v.len().to_string()),
            ("content-type", "text/html".to_string()),
            (DIGEST_HEADER, digest.unwrap_or_else(|| Digests::of(v).sha256_hex())),
        ];
        let header = |n: &str| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        let mut body = BufferedBody { bytes: Some(v.to_vec()), store };
        let sha = Digests::of(of).sha256_hex();
        pollster::block_on(upload_encoded(store, t, &sha, enc, &header, &mut body, &testing::ctx(5_000)))
    }

    #[test]
    fn upload_encoded_needs_the_file_and_keeps_its_content_type() {
        let (store, t, _) = seeded();
        let r = put_variant(&store, &t, V1[0].0, Encoding::Br, b"tiny", None).unwrap();
        assert_eq!(r.status, 201);
        let key = t.encoded_key(&Digests::of(V1[0].0).sha256_hex(), "br");
        let (meta, bytes) = pollster::block_on(store.get(&key)).unwrap().unwrap();
        assert_eq!(bytes, b"tiny");
        assert_eq!(meta.content_type.as_deref(), Some("application/octet-stream"), "the file's type, not the upload's");

        let before = store.keys();
        let missing = put_variant(&store, &t, b"never uploaded", Encoding::Gzip, b"x", None).unwrap_err();
        assert_eq!(missing.status, 409);
        let bigger = put_variant(&store, &t, V1[0].0, Encoding::Gzip, &[1u8; 64], None).unwrap_err();
        assert_eq!(bigger.status, 422);
        let bad_digest = put_variant(&store, &t, V1[0].0, Encoding::Gzip, b"x", Some("zz".into())).unwrap_err();
        assert_eq!(bad_digest.status, 400);
        let wrong_digest =
            put_variant(&store, &t, V1[0].0, Encoding::Gzip, b"x", Some(Digests::of(b"y").sha256_hex())).unwrap_err();
        assert_eq!(wrong_digest.status, 422, "the store verifies the uploader's digest");
        assert_eq!(store.keys(), before);
    }
}
