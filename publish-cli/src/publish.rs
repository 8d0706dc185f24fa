//! `publish`: hash the export, ask the server what it lacks, upload that, commit a manifest
//! rendered by the core, then fetch it back as a client would to prove it is what is served.
//! Every platform is uploaded before any is committed, so a failed upload never leaves one
//! platform updated and the other not.

use crate::cli::PublishArgs;
use crate::export::{self, Export, LocalFile, PlatformExport};
use crate::printer::{FileReport, PendingFile, Printer, PublishReport, UpdateReport};
use crate::upload::{self, Client};
use anyhow::{anyhow, bail, Context, Result};
use expo_ota::api::{CommitRequest, CommitResponse, PrepareResponse};
use expo_ota::layout::Target;
use expo_ota::{id, multipart, time};
use futures_util::{stream, StreamExt};
use std::collections::HashSet;
use std::path::Path;

struct Plan<'a> {
    files: &'a PlatformExport,
    target: Target,
    prepared: Option<PrepareResponse>,
    uploaded: Vec<&'a LocalFile>,
}

impl Plan<'_> {
    fn hexes(&self) -> Vec<String> {
        self.files.unique_files().iter().map(|f| f.digests.sha256_hex()).collect()
    }

    fn report(&self, commit: Option<&CommitResponse>, would_upload: Option<Vec<PendingFile>>) -> UpdateReport {
        let unique = self.files.unique_files();
        let pending = would_upload.as_ref().map_or(self.uploaded.len(), Vec::len);
        UpdateReport {
            platform: self.target.platform.to_string(),
            runtime_version: self.target.runtime_version.clone(),
            id: commit.map(|c| c.id.clone()),
            created_at: commit.map(|c| c.created_at.clone()),
            uploaded_files: self.uploaded.len(),
            uploaded_bytes: self.uploaded.iter().map(|f| f.digests.size).sum(),
            skipped_files: unique.len() - pending,
            total_bytes: self.files.total_bytes(),
            launch_asset: (&self.files.bundle).into(),
            files: std::iter::once(&self.files.bundle).chain(&self.files.assets).map(FileReport::from).collect(),
            would_upload,
        }
    }
}

pub async fn run(args: PublishArgs, out: &Printer) -> Result<()> {
    let report = publish(args, out).await?;
    if out.json() {
        out.emit(&report);
    } else if !report.dry_run {
        out.line(format!("manifest URL: {}", report.manifest_url));
    }
    Ok(())
}

pub async fn publish(args: PublishArgs, out: &Printer) -> Result<PublishReport> {
    let token = crate::auth::require(args.server.auth_token.as_deref())?;
    if args.message.as_ref().is_some_and(|m| m.chars().count() > 1000 || m.contains('\0')) {
        bail!("--message must be at most 1000 characters");
    }
    let git_commit = match args.git_commit.clone() {
        Some(c) if is_commit_hash(&c) => Some(c),
        Some(c) => bail!("--git-commit {c:?} is not a hex commit hash"),
        None => None,
    };
    let (dir, only) = (args.export_dir.clone(), args.platform);
    let export: Export = tokio::task::spawn_blocking(move || export::read(&dir, only)).await??;
    if let Some(s) = export.config.as_ref().and_then(|c| c.slug()).filter(|s| *s != args.slug) {
        out.warn(format!("expoConfig.json has slug {s:?} but publishing to --slug {:?}", args.slug));
    }
    let git_commit = git_commit.or_else(|| git_head(&export.dir));

    // Resolve every runtime version before touching the network: all or nothing.
    let mut plans = Vec::new();
    for files in &export.platforms {
        let runtime_version = export.runtime_version(files.platform, args.runtime_version.as_deref())?;
        let target = Target { slug: args.slug.clone(), platform: files.platform, runtime_version };
        out.platform_files(files, &target.runtime_version);
        plans.push(Plan { files, target, prepared: None, uploaded: Vec::new() });
    }

    let client = Client::new(&args.server.server, token)?;
    let manifest_url = format!("{}/api/manifest?slug={}", client.server(), args.slug);
    let mut reports = Vec::new();
    for plan in &mut plans {
        let prep = client.prepare(&plan.target, plan.hexes()).await?;
        let missing: HashSet<&str> = prep.missing.iter().map(String::as_str).collect();
        let todo: Vec<&LocalFile> = plan.files.unique_files().into_iter().filter(|f| missing.contains(f.digests.sha256_hex().as_str())).collect();
        if let Some(big) = todo.iter().find(|f| f.digests.size > prep.max_file_bytes) {
            bail!("{} is {} bytes; the server accepts at most {} per file (MAX_FILE_BYTES)", big.path, big.digests.size, prep.max_file_bytes);
        }
        if args.dry_run {
            let pending = todo.iter().map(|f| PendingFile { path: f.path.clone(), sha256: f.digests.sha256_hex(), bytes: f.digests.size }).collect();
            let r = plan.report(None, Some(pending));
            out.dry_run(&r);
            reports.push(r);
            continue;
        }
        upload_all(&client, plan, todo, args.concurrency.into(), out).await?;
        plan.prepared = Some(prep);
    }

    for plan in plans.iter().filter(|p| p.prepared.is_some()) {
        let (commit, manifest) = commit(&client, plan, &export, &args, git_commit.clone()).await?;
        verify_served(&client, plan, args.channel.as_deref(), &manifest).await?;
        let r = plan.report(Some(&commit), None);
        out.committed(&r);
        reports.push(r);
    }
    Ok(PublishReport { updates: reports, dry_run: args.dry_run, manifest_url })
}

/// Fetches the manifest as a client would until it is the committed one. Other isolates may
/// serve the previous update for up to the server's CHECK_CACHE_MS (default 1 s), so a few
/// short retries are normal; a different body after that is an error.
async fn verify_served(client: &Client, plan: &Plan<'_>, channel: Option<&str>, manifest: &str) -> Result<()> {
    let mut last = None;
    for attempt in 0..6 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        let (ct, body) = client.client_manifest(&plan.target, channel).await?;
        match check_served(&ct, &body, manifest) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("tried")).with_context(|| format!("verifying {}", upload::label(&plan.target)))
}

/// Uploads `todo` with at most `concurrency` requests in flight; the first failure cancels the rest.
async fn upload_all<'a>(client: &Client, plan: &mut Plan<'a>, todo: Vec<&'a LocalFile>, concurrency: usize, out: &Printer) -> Result<()> {
    if todo.is_empty() {
        return Ok(());
    }
    let bar = out.upload_bar(&upload::label(&plan.target), todo.iter().map(|f| f.digests.size).sum());
    let target = &plan.target;
    let mut uploads = stream::iter(todo.iter().copied().map(|f| client.upload(target, f, &bar))).buffer_unordered(concurrency);
    while let Some(r) = uploads.next().await {
        r?;
    }
    drop(uploads);
    bar.finish_and_clear();
    plan.uploaded = todo;
    Ok(())
}

/// Commits; on 409 (an update with a later createdAt landed meanwhile) re-prepares once for the
/// new latestCreatedAt and commits a freshly rendered manifest. Returns the committed body.
async fn commit(client: &Client, plan: &Plan<'_>, export: &Export, args: &PublishArgs, git_commit: Option<String>) -> Result<(CommitResponse, String)> {
    let mut prep = plan.prepared.clone().expect("prepared before commit");
    for attempt in 0..2 {
        let created = created_at_ms(now_ms(), prep.latest_created_at.as_deref());
        let id = id::uuid_v4(random_bytes()?);
        let manifest = plan.files.manifest(id, created, &plan.target.runtime_version, export.config.as_ref(), &prep.asset_base_url).render();
        let req = CommitRequest {
            manifest: manifest.clone(),
            signature: None,
            channel: args.channel.clone(),
            message: args.message.clone(),
            git_commit: git_commit.clone(),
        };
        match client.commit(&plan.target, &req).await {
            Ok(c) => return Ok((c, manifest)),
            Err(e) if attempt == 0 && upload::status_of(&e) == Some(409) => {
                prep = client.prepare(&plan.target, plan.hexes()).await?;
                if !prep.missing.is_empty() {
                    bail!("{e:#}; and {} file(s) disappeared from the server meanwhile, run the publish again", prep.missing.len());
                }
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("second attempt returns")
}

/// Clients only take a strictly newer update, so createdAt must pass the latest one published.
pub fn created_at_ms(now_ms: u64, latest: Option<&str>) -> u64 {
    latest.and_then(time::parse_millis).map_or(now_ms, |l| now_ms.max(l + 1))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn random_bytes() -> Result<[u8; 16]> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| anyhow!("no OS randomness for the update id: {e}"))?;
    Ok(b)
}

/// The `manifest` part a protocol-1 client receives must be byte-identical to what was committed.
pub fn check_served(content_type: &str, body: &[u8], committed: &str) -> Result<()> {
    let parts = multipart::parse(content_type, body).map_err(|e| anyhow!("the manifest response is not valid multipart/mixed: {e}"))?;
    let part = parts
        .iter()
        .find(|p| p.name().as_deref() == Some("manifest"))
        .ok_or_else(|| anyhow!("the server answered without a manifest part (a directive instead?)"))?;
    if part.body != committed.as_bytes() {
        bail!(
            "the manifest served to clients ({} bytes) differs from the one committed ({} bytes); another publish may have raced this one",
            part.body.len(),
            committed.len()
        );
    }
    Ok(())
}

fn is_commit_hash(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// HEAD of the repository holding the project (the export dir's parent); `None` outside git.
fn git_head(export_dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(export_dir.parent()?)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let head = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && is_commit_hash(&head)).then_some(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expo_ota::multipart::{render, Part};

    #[test]
    fn created_at_is_after_latest() {
        assert_eq!(created_at_ms(1_000, None), 1_000);
        assert_eq!(created_at_ms(1_000, Some("1970-01-01T00:00:00.500Z")), 1_000);
        // A clock behind the last publish still produces a strictly newer update.
        assert_eq!(created_at_ms(1_000, Some("1970-01-01T00:00:05.000Z")), 5_001);
        assert_eq!(created_at_ms(1_000, Some("garbage")), 1_000);
    }

    #[test]
    fn served_manifest_must_match() {
        let (ct, body) = render(&[Part::new("manifest", "{\"id\":\"a\"}"), Part::new("extensions", "{}")]);
        assert!(check_served(&ct, &body, "{\"id\":\"a\"}").is_ok());
        assert!(check_served(&ct, &body, "{\"id\":\"b\"}").unwrap_err().to_string().contains("differs"));
        let (ct, body) = render(&[Part::new("directive", "{\"type\":\"noUpdateAvailable\"}")]);
        assert!(check_served(&ct, &body, "{}").unwrap_err().to_string().contains("without a manifest"));
        assert!(check_served("application/json", b"{}", "{}").is_err());
    }

    #[test]
    fn commit_hashes() {
        assert!(is_commit_hash("0123abc"));
        assert!(is_commit_hash(&"a".repeat(40)));
        assert!(!is_commit_hash("abc"));
        assert!(!is_commit_hash("zzzzzzzz"));
    }
}
