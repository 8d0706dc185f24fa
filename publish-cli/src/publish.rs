//! `publish`: hash the export, ask the server what it lacks, upload that, commit a manifest
//! rendered by the core, then fetch it back as a client would to prove it is what is served.
//! Every platform is uploaded before any is committed, so a failed upload never leaves one
//! platform updated and the other not.

use crate::cli::PublishArgs;
use crate::commit::{self, Body, Committed, Meta};
use crate::export::{self, Export, LocalFile, PlatformExport};
use crate::printer::{FileReport, PendingFile, Printer, PublishReport, UpdateReport};
use crate::sign::Signer;
use crate::upload::{self, Client};
use crate::verify;
use anyhow::{bail, Result};
use expo_ota::check::DEFAULT_CHANNEL;
use expo_ota::deploy::api::{CommitResponse, PrepareResponse};
use expo_ota::storage::layout::Target;
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
            runtime_version: self.target.runtime_version.to_string(),
            id: commit.map(|c| c.id.clone()),
            created_at: commit.map(|c| c.created_at.to_string()),
            channel: commit.map(|c| c.channel.clone()),
            signed: false,
            uploaded_files: self.uploaded.len(),
            uploaded_bytes: self.uploaded.iter().map(|f| f.digests.size).sum(),
            skipped_files: unique.len() - pending,
            total_bytes: self.files.total_bytes(),
            launch_asset: (&self.files.bundle).into(),
            files: std::iter::once(&self.files.bundle).chain(&self.files.assets).map(FileReport::from).collect(),
            would_upload,
            patches: Vec::new(),
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
    let signer = crate::sign::from_args(&args.signing)?;
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
        let target = Target::parse(&args.slug, files.platform.as_str(), &runtime_version)
            .map_err(|e| anyhow::anyhow!(e.message))?;
        out.platform_files(files, &target.runtime_version);
        plans.push(Plan { files, target, prepared: None, uploaded: Vec::new() });
    }

    let client = Client::new(&args.server.server, token)?;
    let manifest_url = format!("{}/api/manifest?slug={}", client.server(), args.slug);
    let mut reports = Vec::new();
    for plan in &mut plans {
        let prep = client.prepare(&plan.target, plan.hexes()).await?;
        let missing: HashSet<&str> = prep.missing.iter().map(String::as_str).collect();
        let todo: Vec<&LocalFile> = plan
            .files
            .unique_files()
            .into_iter()
            .filter(|f| missing.contains(f.digests.sha256_hex().as_str()))
            .collect();
        if let Some(big) = todo.iter().find(|f| f.digests.size > prep.max_file_bytes) {
            bail!(
                "{} is {} bytes; the server accepts at most {} per file (MAX_FILE_BYTES)",
                big.path,
                big.digests.size,
                prep.max_file_bytes
            );
        }
        if args.dry_run {
            let pending = todo
                .iter()
                .map(|f| PendingFile { path: f.path.clone(), sha256: f.digests.sha256_hex(), bytes: f.digests.size })
                .collect();
            let mut r = plan.report(None, Some(pending));
            out.dry_run(&r);
            // Nothing published in this runtime yet: no base to diff against.
            if !args.no_patches && prep.latest_created_at.is_some() {
                let channel = args.channel.as_deref().unwrap_or(DEFAULT_CHANNEL);
                r.patches = patches(&client, plan, channel, None, &args, prep.max_file_bytes, out).await;
            }
            reports.push(r);
            continue;
        }
        upload_all(&client, plan, todo, args.concurrency.into(), out).await?;
        // Variants only make downloads smaller: a server without them still serves the files.
        if !args.no_compress {
            if let Err(e) = crate::patches::upload_variants(&client, &plan.target, &plan.uploaded, out).await {
                out.warn(format!("no precompressed variants for {}: {e:#}", upload::label(&plan.target)));
            }
        }
        plan.prepared = Some(prep);
    }

    let meta = Meta {
        channel: args.channel.clone(),
        message: args.message.clone(),
        git_commit,
        rollout_percentage: args.rollout_percentage,
    };
    for plan in plans.iter().filter(|p| p.prepared.is_some()) {
        let c = commit(&client, plan, &export, &meta, signer.as_ref()).await?;
        verify::served(&client, &plan.target, args.channel.as_deref(), &c).await?;
        let mut r = UpdateReport { signed: c.signature.is_some(), ..plan.report(Some(&c.response), None) };
        let earlier = plan.prepared.as_ref().is_some_and(|p| p.latest_created_at.is_some());
        if !args.no_patches && earlier {
            let max = plan.prepared.as_ref().map_or(0, |p| p.max_file_bytes);
            r.patches = patches(&client, plan, &c.response.channel, Some(&c.response.id), &args, max, out).await;
        }
        out.committed(&r);
        reports.push(r);
    }
    Ok(PublishReport { updates: reports, dry_run: args.dry_run, manifest_url })
}

/// The update is live whatever happens here: a failure (e.g. a token without the read scope
/// to list earlier updates) is a warning and the devices download the full bundle.
async fn patches(
    client: &Client,
    plan: &Plan<'_>,
    channel: &str,
    id: Option<&str>,
    args: &PublishArgs,
    max_file_bytes: u64,
    out: &Printer,
) -> Vec<crate::patches::PatchReport> {
    let n = args.patch_bases.into();
    match crate::patches::produce(client, &plan.target, channel, &plan.files.bundle, id, n, max_file_bytes, out).await {
        Ok(r) => r,
        Err(e) => {
            out.warn(format!("no bsdiff patches for {}: {e:#}", upload::label(&plan.target)));
            Vec::new()
        }
    }
}

/// Uploads `todo` with at most `concurrency` requests in flight; the first failure cancels the rest.
async fn upload_all<'a>(
    client: &Client,
    plan: &mut Plan<'a>,
    todo: Vec<&'a LocalFile>,
    concurrency: usize,
    out: &Printer,
) -> Result<()> {
    if todo.is_empty() {
        return Ok(());
    }
    let bar = out.upload_bar(&upload::label(&plan.target), todo.iter().map(|f| f.digests.size).sum());
    let target = &plan.target;
    let mut uploads =
        stream::iter(todo.iter().copied().map(|f| client.upload(target, f, &bar))).buffer_unordered(concurrency);
    while let Some(r) = uploads.next().await {
        r?;
    }
    drop(uploads);
    bar.finish_and_clear();
    plan.uploaded = todo;
    Ok(())
}

/// Renders this platform's manifest for the createdAt `commit` picks, with metadata.channel set.
async fn commit(
    client: &Client,
    plan: &Plan<'_>,
    export: &Export,
    meta: &Meta,
    signer: Option<&Signer>,
) -> Result<Committed> {
    let prep = plan.prepared.clone().expect("prepared before commit");
    let channel = meta.channel.as_deref().unwrap_or(DEFAULT_CHANNEL);
    let rv = &plan.target.runtime_version;
    commit::commit(client, &plan.target, &plan.hexes(), prep, signer, meta, |prep, created| {
        let m = plan.files.manifest(
            commit::new_update_id()?,
            created,
            rv,
            channel,
            export.config.as_ref(),
            &prep.asset_base_url,
        );
        Ok(Body::Manifest(m.render()))
    })
    .await
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

    #[test]
    fn commit_hashes() {
        assert!(is_commit_hash("0123abc"));
        assert!(is_commit_hash(&"a".repeat(40)));
        assert!(!is_commit_hash("abc"));
        assert!(!is_commit_hash("zzzzzzzz"));
    }
}
