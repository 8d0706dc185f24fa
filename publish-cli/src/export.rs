//! Reads an `npx expo export` directory: which files make each platform's update, their digests
//! (streamed, 64 KiB at a time, so a large bundle never sits in memory) and the launch asset's
//! kind. Parsing and manifest rendering are the core's; this module only touches the disk.

use anyhow::{anyhow, bail, Context, Result};
use expo_ota::error::ApiError;
use expo_ota::protocol::export::{content_type_for_ext, parse_metadata, ExpoConfig};
use expo_ota::protocol::hash::{hermes_version, Digests, FileHasher};
use expo_ota::protocol::manifest::{self, FileEntry, Manifest, ManifestInput};
use expo_ota::validate::{self, Platform};
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

const CHUNK: usize = 64 * 1024;

/// What a file is, for the report (and so a plain-JS bundle is visible before publishing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Hermes(u32),
    JavaScript,
    Asset(String),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Hermes(v) => write!(f, "hermes bytecode v{v}"),
            Kind::JavaScript => f.write_str("javascript"),
            Kind::Asset(ext) => write!(f, "{ext} asset"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct LocalFile {
    /// Export-relative, `/`-separated, as metadata.json names it (normalised by the core).
    pub path: String,
    /// Canonical absolute path, checked to be a regular file inside the export dir.
    pub abs: PathBuf,
    pub digests: Digests,
    /// Extension without the dot; ignored for the launch asset.
    pub ext: String,
    pub kind: Kind,
}

impl LocalFile {
    pub fn is_launch_asset(&self) -> bool {
        !matches!(self.kind, Kind::Asset(_))
    }
    /// The type the server stores and serves the bytes with.
    pub fn content_type(&self) -> &'static str {
        if self.is_launch_asset() {
            "application/javascript"
        } else {
            content_type_for_ext(&self.ext)
        }
    }
    fn entry(&self) -> FileEntry {
        FileEntry { digests: self.digests, ext: self.ext.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct PlatformExport {
    pub platform: Platform,
    pub bundle: LocalFile,
    /// In metadata.json order (the manifest keeps it).
    pub assets: Vec<LocalFile>,
}

impl PlatformExport {
    /// Launch asset first, then assets, each content once: what prepare and upload deal in.
    pub fn unique_files(&self) -> Vec<&LocalFile> {
        let mut seen = std::collections::HashSet::new();
        std::iter::once(&self.bundle).chain(&self.assets).filter(|f| seen.insert(f.digests.sha256)).collect()
    }

    pub fn total_bytes(&self) -> u64 {
        self.unique_files().iter().map(|f| f.digests.size).sum()
    }

    /// The manifest for this platform, rendered by the core exactly as the server validates it.
    /// `metadata.channel` names the channel it is published to (the server requires it).
    pub fn manifest(
        &self,
        id: String,
        created_at_ms: u64,
        runtime_version: &str,
        channel: &str,
        config: Option<&ExpoConfig>,
        asset_base_url: &str,
    ) -> Manifest {
        manifest::build(ManifestInput {
            id,
            created_at_ms,
            runtime_version,
            launch_asset: FileEntry { digests: self.bundle.digests, ext: "bundle".into() },
            assets: self.assets.iter().map(LocalFile::entry).collect(),
            metadata: manifest::channel_metadata(channel),
            expo_client: config.map(|c| c.raw.clone()),
            asset_base_url,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Export {
    pub dir: PathBuf,
    pub platforms: Vec<PlatformExport>,
    pub config: Option<ExpoConfig>,
}

impl Export {
    /// `--runtime-version` when given, else the one expoConfig.json resolves to for `platform`.
    pub fn runtime_version(&self, platform: Platform, flag: Option<&str>) -> Result<String> {
        if let Some(rv) = flag {
            return Ok(validate::runtime_version(rv).map_err(core)?.to_string());
        }
        let config = self.config.as_ref().ok_or_else(|| {
            anyhow!("{} has no expoConfig.json to read runtimeVersion from; pass --runtime-version", self.dir.display())
        })?;
        config.resolve_runtime_version(platform).map_err(|e| anyhow!("{platform}: {}", e.message))
    }
}

/// Reads and hashes the export; `only` keeps one platform and fails if it was not exported.
pub fn read(dir: &Path, only: Option<Platform>) -> Result<Export> {
    let root = dir.canonicalize().with_context(|| format!("cannot open export dir {}", dir.display()))?;
    let meta_path = root.join("metadata.json");
    let meta = std::fs::read(&meta_path).with_context(|| {
        format!("cannot read {} (is this an `npx expo export` output directory?)", meta_path.display())
    })?;
    let mut listed = parse_metadata(&meta).map_err(|e| anyhow!("metadata.json: {}", e.message))?;
    if let Some(p) = only {
        let exported: Vec<&str> = listed.iter().map(|f| f.platform.as_str()).collect();
        if !exported.contains(&p.as_str()) {
            bail!("platform {p} was not exported: metadata.json has only {}", exported.join(", "));
        }
        listed.retain(|f| f.platform == p);
    }
    let config = match std::fs::read(root.join("expoConfig.json")) {
        Ok(bytes) => Some(ExpoConfig::parse(&bytes).map_err(|e| anyhow!("expoConfig.json: {}", e.message))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context("reading expoConfig.json"),
    };

    // Assets are usually shared by both platforms: hash each path once.
    let mut cache: HashMap<String, (PathBuf, Digests, Vec<u8>)> = HashMap::new();
    let mut hashed = |rel: &str| -> Result<(PathBuf, Digests, Vec<u8>)> {
        if let Some(hit) = cache.get(rel) {
            return Ok(hit.clone());
        }
        let abs = resolve(&root, rel)?;
        let (digests, head) = hash_file(&abs).with_context(|| format!("hashing {rel}"))?;
        cache.insert(rel.to_string(), (abs.clone(), digests, head.clone()));
        Ok((abs, digests, head))
    };
    let mut platforms = Vec::new();
    for pf in listed {
        let (abs, digests, head) = hashed(&pf.bundle)?;
        let kind = hermes_version(&head).map_or(Kind::JavaScript, Kind::Hermes);
        let bundle = LocalFile { path: pf.bundle, abs, digests, ext: "bundle".into(), kind };
        let mut assets = Vec::with_capacity(pf.assets.len());
        for a in pf.assets {
            let (abs, digests, _) = hashed(&a.path)?;
            assets.push(LocalFile { path: a.path, abs, digests, kind: Kind::Asset(a.ext.clone()), ext: a.ext });
        }
        platforms.push(PlatformExport { platform: pf.platform, bundle, assets });
    }
    Ok(Export { dir: root, platforms, config })
}

/// Joins an already-normalised relative path and proves the result is a regular file under the
/// export root even after symlinks are followed.
fn resolve(root: &Path, rel: &str) -> Result<PathBuf> {
    let abs = root
        .join(rel)
        .canonicalize()
        .with_context(|| format!("{rel} is listed in metadata.json but cannot be opened"))?;
    if !abs.starts_with(root) {
        bail!("{rel} resolves outside the export directory (symlink?)");
    }
    if !std::fs::metadata(&abs)?.is_file() {
        bail!("{rel} is listed in metadata.json but is not a regular file");
    }
    Ok(abs)
}

/// Streams a file through the core hasher; also returns its first 12 bytes for Hermes detection.
fn hash_file(path: &Path) -> std::io::Result<(Digests, Vec<u8>)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = FileHasher::new();
    let mut head = Vec::with_capacity(12);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if head.len() < 12 {
            head.extend_from_slice(&buf[..n.min(12 - head.len())]);
        }
        h.update(&buf[..n]);
    }
    Ok((h.finish(), head))
}

/// Core errors are already user-facing sentences; drop the HTTP status they carry.
pub fn core(e: ApiError) -> anyhow::Error {
    anyhow!(e.message)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use expo_ota::{protocol::id, protocol::manifest::validate_published};

    /// A fixture dir: `tests/fixtures` in the repo when copied there, else the shared checkout.
    pub fn fixture(name: &str) -> PathBuf {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let local = here.join("../tests/fixtures").join(name);
        if local.is_dir() {
            local
        } else {
            here.join("../../shared/fixtures").join(name)
        }
    }

    #[test]
    fn reads_demo_app_v1() {
        let e = read(&fixture("demo-app-v1"), None).unwrap();
        let names: Vec<_> = e.platforms.iter().map(|p| p.platform).collect();
        assert_eq!(names, [Platform::Ios, Platform::Android]);
        let ios = &e.platforms[0];
        assert_eq!(ios.bundle.path, "_expo/static/js/ios/index-5d7d6fad5484402dc4f398f4c8ec68c4.hbc");
        assert_eq!(ios.bundle.kind, Kind::Hermes(96));
        assert_eq!(ios.bundle.kind.to_string(), "hermes bytecode v96");
        assert_eq!(ios.bundle.digests.size, 1_754_617);
        assert_eq!(ios.bundle.digests.sha256_base64url(), "BovrwjGmW2ANn0bAAqk0QCDY2DLHOqX2Vd_Cz-q9MLc");
        assert_eq!(ios.bundle.content_type(), "application/javascript");
        assert_eq!(
            e.platforms[1].bundle.digests.sha256_hex(),
            "44eb7ab4c1217be4219fa9ab9e38031932ac8ab0f9faee9e51312f6754532c45"
        );
        // Assets keep metadata.json order, and their md5 is their file name.
        assert_eq!(ios.assets.len(), 6);
        assert_eq!(ios.assets[0].path, "assets/85bb2d0ec4a0da159de42e89089ccc0b");
        assert_eq!(ios.assets[0].content_type(), "font/ttf");
        for a in &ios.assets {
            assert_eq!(a.path, format!("assets/{}", a.digests.md5_hex()));
        }
        // Table total is 3881607 over 10 files; minus expoConfig.json (787) and metadata.json (998)
        // minus the other platform's bundle.
        assert_eq!(ios.total_bytes(), 3_881_607 - 787 - 998 - 1_762_264);
        assert!(e.config.is_some());
    }

    #[test]
    fn plain_js_bundle_is_reported() {
        let e = read(&fixture("demo-app-v1-plainjs"), Some(Platform::Android)).unwrap();
        assert_eq!(e.platforms.len(), 1);
        assert_eq!(e.platforms[0].bundle.kind, Kind::JavaScript);
        assert_eq!(e.platforms[0].bundle.digests.sha256_base64url(), "GJhAyMsX8MDo0TekNYYyjuBPKTxJEkO-F0p8sUCcx0k");
    }

    #[test]
    fn platform_filter() {
        let err = read(&fixture("utility-app-v1"), Some(Platform::Ios)).unwrap_err().to_string();
        assert!(err.contains("ios was not exported") && err.contains("android"), "{err}");
        let e = read(&fixture("utility-app-v1"), Some(Platform::Android)).unwrap();
        assert_eq!(e.platforms.len(), 1);
        assert_eq!(e.platforms[0].assets.len(), 7);
    }

    #[test]
    fn runtime_versions() {
        let demo = read(&fixture("demo-app-v1"), None).unwrap();
        assert_eq!(demo.runtime_version(Platform::Ios, None).unwrap(), "1.0.3");
        assert_eq!(demo.runtime_version(Platform::Android, None).unwrap(), "1.0.3");
        assert_eq!(demo.runtime_version(Platform::Ios, Some("9.9.9")).unwrap(), "9.9.9");
        let util = read(&fixture("utility-app-v1"), None).unwrap();
        assert_eq!(util.runtime_version(Platform::Android, None).unwrap(), "2.0.0");
        let mut bare = util.clone();
        bare.config = None;
        assert!(bare.runtime_version(Platform::Android, None).unwrap_err().to_string().contains("--runtime-version"));
        bare.config = Some(ExpoConfig::parse(br#"{"runtimeVersion":{"policy":"fingerprint"}}"#).unwrap());
        assert!(bare.runtime_version(Platform::Android, None).unwrap_err().to_string().contains("fingerprint"));
    }

    fn write_export(dir: &Path, metadata: &str) {
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("metadata.json"), metadata).unwrap();
        std::fs::write(dir.join("index.js"), "var x=1;").unwrap();
    }

    #[test]
    fn rejects_escaping_and_missing_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dist");
        std::fs::write(tmp.path().join("secret"), "s").unwrap();
        write_export(&dir, r#"{"fileMetadata":{"ios":{"bundle":"../secret","assets":[]}}}"#);
        let err = format!("{:#}", read(&dir, None).unwrap_err());
        assert!(err.contains("'..' is not allowed"), "{err}");

        write_export(
            &dir,
            r#"{"fileMetadata":{"ios":{"bundle":"index.js","assets":[{"path":"assets/nope","ext":"png"}]}}}"#,
        );
        assert!(format!("{:#}", read(&dir, None).unwrap_err()).contains("assets/nope"));

        write_export(&dir, r#"{"fileMetadata":{"ios":{"bundle":"assets","assets":[]}}}"#);
        assert!(format!("{:#}", read(&dir, None).unwrap_err()).contains("not a regular file"));

        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(tmp.path().join("secret"), dir.join("assets/link")).unwrap();
            write_export(
                &dir,
                r#"{"fileMetadata":{"ios":{"bundle":"index.js","assets":[{"path":"assets/link","ext":"png"}]}}}"#,
            );
            assert!(format!("{:#}", read(&dir, None).unwrap_err()).contains("outside the export directory"));
        }

        write_export(&dir, r#"{"fileMetadata":{"ios":{"bundle":"index.js","assets":[]}}}"#);
        let ok = read(&dir, None).unwrap();
        assert_eq!(ok.platforms[0].bundle.kind, Kind::JavaScript);
        assert!(ok.config.is_none());
        assert!(read(tmp.path(), None).is_err(), "no metadata.json");
    }

    #[test]
    fn manifest_passes_server_validation() {
        let e = read(&fixture("demo-app-v1"), None).unwrap();
        let base = "https://ota.example.com/api/assets/demo-app/ios/1.0.3";
        let ios = &e.platforms[0];
        let m = ios.manifest(id::uuid_v4([9; 16]), 1_714_566_896_789, "1.0.3", "staging", e.config.as_ref(), base);
        let body = m.render();
        let (parsed, files) = validate_published(&body, "1.0.3", "staging", base, 2000).unwrap();
        assert_eq!(parsed.metadata["channel"], "staging");
        assert!(validate_published(&body, "1.0.3", "production", base, 2000).is_err());
        assert_eq!(parsed.launch_asset.hash, "BovrwjGmW2ANn0bAAqk0QCDY2DLHOqX2Vd_Cz-q9MLc");
        assert_eq!(parsed.launch_asset.file_extension, ".bundle");
        assert_eq!(files.len(), 7);
        assert_eq!(parsed.assets[0].file_extension, ".ttf");
        assert_eq!(
            parsed.extra.expo_client.as_ref().and_then(|c| c.get("slug")).and_then(|s| s.as_str()),
            Some("demo-app")
        );
        // The set of files the manifest names is what prepare is asked about.
        let mut named: Vec<String> = files.iter().map(|f| expo_ota::protocol::hash::hex(&f.sha256)).collect();
        let mut local: Vec<String> = ios.unique_files().iter().map(|f| f.digests.sha256_hex()).collect();
        named.sort();
        local.sort();
        assert_eq!(named, local);
    }
}
