//! Collecting files no update names. Files are content-addressed and shared by every update of a
//! runtime, so deleting an update never deletes a file inline: a commit racing the delete could
//! name it. Instead the app's writer (as [`crate::deploy::writer::WriteOp::CollectFiles`], run
//! after deletes and by the hourly cron) deletes files that no record names and that were
//! uploaded more than [`GRACE_MS`] ago — long enough for any publish between its upload and its
//! commit. Runtimes that only ever received uploads are collected the same way. This work is
//! proportional to the runtime's history, so it never runs on a request path.

use crate::error::ApiError;
use crate::storage::layout::Target;
use crate::storage::record::UpdateRecord;
use crate::storage::store::{list_all, ObjectStore};
use crate::validate::{self, Platform};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Files younger than this are never collected (an upload waiting for its commit).
pub const GRACE_MS: u64 = 24 * 60 * 60 * 1000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Collected {
    pub deleted_files: u64,
    pub kept_files: u64,
}

/// Deletes the runtime's files that no record names and that are older than `grace_ms`.
pub async fn collect_files<S: ObjectStore>(
    store: &S,
    t: &Target,
    now_ms: u64,
    grace_ms: u64,
) -> Result<Collected, ApiError> {
    let mut named = BTreeSet::new();
    for r in list_all(store, &t.records_prefix()).await? {
        if let Some((_, bytes)) = store.get(&r.key).await? {
            named.extend(UpdateRecord::from_json(&bytes)?.files);
        }
    }
    let files_prefix = t.files_prefix();
    let mut doomed = Vec::new();
    let mut kept = 0;
    for f in list_all(store, &files_prefix).await? {
        let sha = f.key.strip_prefix(&files_prefix).unwrap_or_default();
        if named.contains(sha) || f.uploaded_ms.saturating_add(grace_ms) > now_ms {
            kept += 1;
        } else {
            doomed.push(f.key);
        }
    }
    for chunk in doomed.chunks(1000) {
        store.delete(chunk).await?;
    }
    Ok(Collected { deleted_files: doomed.len() as u64, kept_files: kept })
}

/// The next runtimes the cron should collect: every runtime of the apps after `after` (a slug),
/// whole apps at a time, until at least `budget` runtimes. Returns them and the last app seen
/// (the next call's `after`; `None` once the scan wrapped around).
pub async fn next_runtimes<S: ObjectStore>(
    store: &S,
    after: Option<&str>,
    budget: usize,
) -> Result<(Vec<Target>, Option<String>), ApiError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let start = after.map(|a| format!("{a}/\u{10ffff}"));
        let page =
            store.list("", Some("/"), cursor.clone(), if cursor.is_none() { start.as_deref() } else { None }).await?;
        for p in &page.prefixes {
            let slug = p.trim_end_matches('/');
            if validate::slug(slug).is_err() {
                continue; // `_system/` and anything that is not an app
            }
            for platform in Platform::ALL {
                let pprefix = format!("{slug}/{platform}/");
                let mut c = None;
                loop {
                    let rts = store.list(&pprefix, Some("/"), c, None).await?;
                    for rv in rts.prefixes.iter().filter_map(|r| r.strip_prefix(&pprefix)?.strip_suffix('/')) {
                        out.push(Target { slug: slug.to_string(), platform, runtime_version: rv.to_string() });
                    }
                    match rts.cursor {
                        Some(n) => c = Some(n),
                        None => break,
                    }
                }
            }
            if out.len() >= budget {
                return Ok((out, Some(slug.to_string())));
            }
        }
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => return Ok((out, None)),
        }
    }
}
