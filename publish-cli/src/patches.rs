//! Smaller downloads, made once at publish: BSDIFF40 patches from the launch assets of the last
//! N updates of the same app/platform/runtime/channel to the new one, and brotli/gzip variants of
//! newly uploaded text files. Invariant: nothing is uploaded that was not proven on this machine
//! first — every patch is re-applied with `qbsdiff`'s patcher and must rebuild the exact target
//! SHA-256 (and start with the `BSDIFF40` magic expo-updates' bspatch checks), every variant is
//! decoded and must equal the file; a patch is kept only when it is at most 0.3 × the gzipped
//! full asset (smaller gains are not worth a second code path on devices), a variant only when it
//! is smaller than the file. Patches are an optimisation on an update that is already live, so
//! failing to make one is a warning, never a failed publish.

use crate::export::LocalFile;
use crate::printer::Printer;
use crate::upload::{read_capped, status_of, Client};
use anyhow::{anyhow, bail, Context, Result};
use expo_ota::check::patch::{is_compressible, launch_asset_sha, Encoding};
use expo_ota::deploy::api::UploadResponse;
use expo_ota::deploy::patches::{BASE_UPDATE_HEADER, DIGEST_HEADER, TARGET_UPDATE_HEADER};
use expo_ota::protocol::hash::{self, Digests};
use expo_ota::protocol::manifest::Manifest;
use expo_ota::storage::layout::Target;
use expo_ota::storage::record::RecordKind;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;
use serde::Serialize;
use std::io::{Read, Write};

/// Bases diffed against by default (`--patch-bases`).
pub const DEFAULT_BASES: u16 = 3;
/// A patch is kept when `patch × DEN ≤ gzip(full) × NUM` (0.3 ×).
const RATIO_NUM: u64 = 3;
const RATIO_DEN: u64 = 10;
/// Quality 9, not 11: on the demo Android bundle (1.76 MB) 11 gives 568 KB against 639 KB but
/// took 74 s against 1.9 s in a test build — a cost every publish and every test would pay.
const BROTLI_QUALITY: u32 = 9;
/// bspatch checks these 8 bytes and nothing else identifies the format.
pub const BSDIFF40: &[u8; 8] = b"BSDIFF40";

/// Whether a patch of `patch_len` bytes is worth serving instead of a full asset that gzips to
/// `gzip_len` bytes.
pub fn worth_keeping(patch_len: u64, gzip_len: u64) -> bool {
    patch_len.saturating_mul(RATIO_DEN) <= gzip_len.saturating_mul(RATIO_NUM)
}

/// A BSDIFF40 patch from `base` to `target`, proven by applying it.
pub fn diff(base: &[u8], target: &[u8]) -> Result<Vec<u8>> {
    let mut patch = Vec::new();
    qbsdiff::Bsdiff::new(base, target).compare(std::io::Cursor::new(&mut patch)).context("computing the patch")?;
    verify(base, &hash::sha256(target), &patch)?;
    Ok(patch)
}

/// Applies `patch` to `base` as a device would and checks the result's SHA-256.
pub fn verify(base: &[u8], target_sha: &[u8; 32], patch: &[u8]) -> Result<()> {
    if !patch.starts_with(BSDIFF40) {
        bail!("patch does not start with BSDIFF40 (the only format expo-updates applies)");
    }
    let mut rebuilt = Vec::new();
    qbsdiff::Bspatch::new(patch)
        .and_then(|p| p.apply(base, std::io::Cursor::new(&mut rebuilt)))
        .context("applying the patch")?;
    if &hash::sha256(&rebuilt) != target_sha {
        bail!("the patch does not rebuild the target bundle (SHA-256 differs); not uploading it");
    }
    Ok(())
}

pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes)?;
    Ok(e.finish()?)
}

pub fn brotli(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        // 4 MiB window (the whole bundle's redundancy); see BROTLI_QUALITY.
        let mut w = brotli::CompressorWriter::new(&mut out, 64 * 1024, BROTLI_QUALITY, 22);
        w.write_all(bytes)?;
    }
    Ok(out)
}

fn decode(enc: Encoding, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match enc {
        Encoding::Br => brotli::Decompressor::new(bytes, 64 * 1024).read_to_end(&mut out)?,
        Encoding::Gzip => flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?,
    };
    Ok(out)
}

/// The variants worth storing for `bytes`, each proven by decoding it back.
pub fn variants(bytes: &[u8]) -> Result<Vec<(Encoding, Vec<u8>)>> {
    let mut out = Vec::new();
    for (enc, encoded) in [(Encoding::Br, brotli(bytes)?), (Encoding::Gzip, gzip(bytes)?)] {
        if encoded.len() >= bytes.len() {
            continue;
        }
        if decode(enc, &encoded)? != bytes {
            bail!("the {} encoding does not decode to the file; not uploading it", enc.header());
        }
        out.push((enc, encoded));
    }
    Ok(out)
}

/// One patch as `publish` reports it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchReport {
    pub base_update_id: String,
    pub base_sha256: String,
    pub bytes: u64,
    pub gzip_bytes: u64,
    /// Within 0.3 × the gzipped bundle (otherwise not uploaded).
    pub kept: bool,
    /// False when the server already had it, or in a dry run.
    pub uploaded: bool,
}

/// A base: an earlier update's launch asset.
struct Base {
    id: String,
    sha256: String,
    url: String,
}

/// The launch assets of the newest `n` updates on `channel` of this runtime other than
/// `exclude` (the new update) and not equal to the new bundle, newest first, distinct.
async fn bases(
    client: &Client,
    t: &Target,
    channel: &str,
    exclude: Option<&str>,
    new_sha: &str,
    n: usize,
) -> Result<Vec<Base>> {
    let list = client.list(&t.slug).await?;
    let runtime = list
        .runtimes
        .into_iter()
        .find(|r| r.platform == t.platform.as_str() && r.runtime_version == t.runtime_version.as_str());
    let mut out: Vec<Base> = Vec::new();
    for u in runtime.map(|r| r.updates).unwrap_or_default() {
        if out.len() >= n {
            break;
        }
        if u.channel != channel || u.kind != RecordKind::Update || Some(u.id.as_str()) == exclude {
            continue;
        }
        let record = client.get_update_bytes(t, &u.id).await?;
        let Some(sha) = launch_asset_sha(&record) else { continue };
        if sha == new_sha || out.iter().any(|b| b.sha256 == sha) {
            continue;
        }
        #[derive(serde::Deserialize)]
        struct Record {
            body: String,
        }
        let body: Record = serde_json::from_slice(&record).context("update record")?;
        let m: Manifest = serde_json::from_str(&body.body).context("update manifest")?;
        out.push(Base { id: u.id, sha256: sha, url: m.launch_asset.url });
    }
    Ok(out)
}

/// Makes (and unless `dry_run`, uploads the missing of) the patches from the last `n` bases to
/// `bundle`, the launch asset of update `target_id` (`None` in a dry run).
#[allow(clippy::too_many_arguments)]
pub async fn produce(
    client: &Client,
    t: &Target,
    channel: &str,
    bundle: &LocalFile,
    target_id: Option<&str>,
    n: usize,
    max_file_bytes: u64,
    out: &Printer,
) -> Result<Vec<PatchReport>> {
    let new_sha = bundle.digests.sha256_hex();
    let bases = bases(client, t, channel, target_id, &new_sha, n).await?;
    if bases.is_empty() {
        return Ok(Vec::new());
    }
    let target = tokio::fs::read(&bundle.abs).await.with_context(|| format!("reading {}", bundle.path))?;
    if Digests::of(&target) != bundle.digests {
        bail!("{} changed on disk since it was hashed", bundle.path);
    }
    let target = std::sync::Arc::new(target);
    let gz = {
        let target = target.clone();
        tokio::task::spawn_blocking(move || gzip(&target)).await??.len() as u64
    };
    let mut reports = Vec::new();
    for base in bases {
        let stored = match target_id {
            Some(_) => client.patch_stored(t, &base.sha256, &new_sha).await?,
            None => false,
        };
        let base_bytes = download(&base.url, &base.sha256, max_file_bytes).await?;
        let patch = {
            let target = target.clone();
            tokio::task::spawn_blocking(move || diff(&base_bytes, &target)).await??
        };
        let kept = worth_keeping(patch.len() as u64, gz);
        let mut uploaded = false;
        if let (Some(id), true, false) = (target_id, kept, stored) {
            uploaded = client.upload_patch(t, &base.sha256, &new_sha, &base.id, id, patch.clone()).await?.stored;
        }
        out.line(format!(
            "  patch from {} ({}): {} bytes vs {gz} gzipped — {}",
            base.id,
            &base.sha256[..12],
            patch.len(),
            match (kept, stored, uploaded) {
                (false, _, _) => "over 0.3 × gzip, not kept",
                (true, true, _) => "already stored",
                (true, _, true) => "uploaded",
                (true, _, false) => "kept",
            }
        ));
        reports.push(PatchReport {
            base_update_id: base.id,
            base_sha256: base.sha256,
            bytes: patch.len() as u64,
            gzip_bytes: gz,
            kept,
            uploaded,
        });
    }
    Ok(reports)
}

/// A base bundle from the public asset route, as a client without patch or encoding support
/// gets it (no credentials: the URL may point at another host), checked against its hash.
async fn download(url: &str, sha256: &str, cap: u64) -> Result<Vec<u8>> {
    let what = format!("downloading base bundle {sha256}");
    let resp = reqwest::Client::new().get(url).send().await.with_context(|| what.clone())?;
    if !resp.status().is_success() {
        bail!("{what}: HTTP {}", resp.status());
    }
    let bytes = read_capped(&what, resp, usize::try_from(cap).unwrap_or(usize::MAX)).await?;
    if Digests::of(&bytes).sha256_hex() != sha256 {
        bail!("{what}: the server's bytes do not match the hash");
    }
    Ok(bytes)
}

/// Uploads brotli and gzip variants of the text files among `files` (just uploaded, so their
/// variants cannot be stored yet).
pub async fn upload_variants(client: &Client, t: &Target, files: &[&LocalFile], out: &Printer) -> Result<u64> {
    let mut saved = 0;
    for f in files.iter().filter(|f| is_compressible(Some(&f.ext))) {
        let bytes = tokio::fs::read(&f.abs).await.with_context(|| format!("reading {}", f.path))?;
        if Digests::of(&bytes) != f.digests {
            bail!("{} changed on disk since it was hashed", f.path);
        }
        let made = tokio::task::spawn_blocking(move || variants(&bytes)).await??;
        for (enc, encoded) in made {
            saved += f.digests.size - encoded.len() as u64;
            client.upload_variant(t, &f.digests.sha256_hex(), enc, encoded).await?;
        }
    }
    if saved > 0 {
        out.line(format!("  precompressed variants uploaded ({saved} bytes smaller than identity in total)"));
    }
    Ok(saved)
}

impl Client {
    /// One stored record as the server sends it (read scope).
    pub async fn get_update_bytes(&self, t: &Target, id: &str) -> Result<Vec<u8>> {
        let what = format!("reading update {id}");
        let path = format!("/api/updates/{}/{id}", crate::upload::target_path(t));
        let resp = self.send(&what, || async { Ok(self.request(Method::GET, &path)) }).await?;
        read_capped(&what, resp, crate::upload::MAX_JSON_RESPONSE_BYTES).await
    }

    pub async fn patch_stored(&self, t: &Target, base: &str, target: &str) -> Result<bool> {
        let what = format!("checking patch {base} → {target}");
        let path = format!("/api/patches/{}/{base}/{target}", crate::upload::target_path(t));
        match self.send(&what, || async { Ok(self.request(Method::HEAD, &path)) }).await {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn upload_patch(
        &self,
        t: &Target,
        base: &str,
        target: &str,
        base_id: &str,
        target_id: &str,
        patch: Vec<u8>,
    ) -> Result<UploadResponse> {
        let what = format!("uploading patch {base} → {target}");
        let path = format!("/api/patches/{}/{base}/{target}", crate::upload::target_path(t));
        let digest = Digests::of(&patch).sha256_hex();
        let resp = self
            .send(&what, || async {
                Ok(self
                    .request(Method::PUT, &path)
                    .header(CONTENT_LENGTH, patch.len())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(DIGEST_HEADER, &digest)
                    .header(BASE_UPDATE_HEADER, base_id)
                    .header(TARGET_UPDATE_HEADER, target_id)
                    .body(patch.clone()))
            })
            .await?;
        let r: UploadResponse = Client::json(&what, resp).await?;
        if r.sha256 != digest {
            return Err(anyhow!("{what}: server stored {}, expected {digest}", r.sha256));
        }
        Ok(r)
    }

    pub async fn upload_variant(
        &self,
        t: &Target,
        sha256: &str,
        enc: Encoding,
        bytes: Vec<u8>,
    ) -> Result<UploadResponse> {
        let what = format!("uploading the {} variant of {sha256}", enc.header());
        let path = format!("/api/files/{}/{sha256}/{}", crate::upload::target_path(t), enc.ext());
        let digest = Digests::of(&bytes).sha256_hex();
        let resp = self
            .send(&what, || async {
                Ok(self
                    .request(Method::PUT, &path)
                    .header(CONTENT_LENGTH, bytes.len())
                    .header(DIGEST_HEADER, &digest)
                    .body(bytes.clone()))
            })
            .await?;
        Client::json(&what, resp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_bundle(version: &str) -> Vec<u8> {
        let dir = crate::export::tests::fixture(&format!("demo-app-{version}"));
        let e = crate::export::read(&dir, Some(expo_ota::validate::Platform::Android)).unwrap();
        std::fs::read(&e.platforms[0].bundle.abs).unwrap()
    }

    #[test]
    fn diff_of_fixture_bundles_is_bsdiff40_and_rebuilds_the_target_hash() {
        let (v1, v2) = (fixture_bundle("v1"), fixture_bundle("v2"));
        let patch = diff(&v1, &v2).unwrap();
        assert_eq!(&patch[..8], BSDIFF40);
        // Header: control and diff block lengths, then the new file's size (offtin, little-endian).
        let new_size = i64::from_le_bytes(patch[24..32].try_into().unwrap());
        assert_eq!(new_size as usize, v2.len());
        // An independent application of the same bytes rebuilds v2 exactly.
        let mut rebuilt = Vec::new();
        qbsdiff::Bspatch::new(&patch).unwrap().apply(&v1, std::io::Cursor::new(&mut rebuilt)).unwrap();
        assert_eq!(hash::sha256(&rebuilt), hash::sha256(&v2));
        assert!(worth_keeping(patch.len() as u64, gzip(&v2).unwrap().len() as u64), "{} bytes", patch.len());
    }

    #[test]
    fn verify_refuses_a_patch_for_another_target_or_format() {
        let (v1, v2) = (b"hello old world".to_vec(), b"hello new world!".to_vec());
        let patch = diff(&v1, &v2).unwrap();
        assert!(verify(&v1, &hash::sha256(b"something else"), &patch).is_err());
        let mut other_magic = patch.clone();
        other_magic[..8].copy_from_slice(b"BSDIFF43");
        assert!(verify(&v1, &hash::sha256(&v2), &other_magic).is_err());
        assert!(verify(&v1, &hash::sha256(&v2), &patch).is_ok());
    }

    #[test]
    fn worth_keeping_is_at_most_three_tenths_of_gzip() {
        assert!(worth_keeping(300, 1000));
        assert!(!worth_keeping(301, 1000));
        assert!(worth_keeping(0, 0));
        assert!(!worth_keeping(1, 0));
        assert!(!worth_keeping(u64::MAX, 10), "no overflow");
    }

    #[test]
    fn variants_decode_to_the_file_and_skip_incompressible_bytes() {
        let text = b"function f(){return 1}\n".repeat(200);
        let v = variants(&text).unwrap();
        assert_eq!(v.iter().map(|(e, _)| *e).collect::<Vec<_>>(), vec![Encoding::Br, Encoding::Gzip]);
        for (e, bytes) in &v {
            assert_eq!(decode(*e, bytes).unwrap(), text);
        }
        // Random bytes do not compress: nothing worth uploading.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                // xorshift64: bytes without structure.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert!(variants(&noise).unwrap().is_empty());
    }
}
