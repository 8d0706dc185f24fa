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
use crate::validate;
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
    // A precompressed variant (`<sha>.br`) lives and dies with its file.
    let files = list_all(store, &files_prefix).await?.into_iter().map(|f| {
        let name = f.key.strip_prefix(&files_prefix).unwrap_or_default();
        let live = named.contains(name.split('.').next().unwrap_or_default());
        (f, live)
    });
    // A patch is only useful while both launch assets it joins are named.
    let patches_prefix = t.patches_prefix();
    let patches = list_all(store, &patches_prefix).await?.into_iter().map(|f| {
        let name = f.key.strip_prefix(&patches_prefix).unwrap_or_default();
        let live = name.split_once('-').is_some_and(|(b, t)| named.contains(b) && named.contains(t));
        (f, live)
    });
    for (f, live) in files.chain(patches.collect::<Vec<_>>()) {
        if live || f.uploaded_ms.saturating_add(grace_ms) > now_ms {
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
            out.extend(crate::deploy::service::stored_runtimes(store, slug).await?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::service;
    use crate::deploy::testing::{self, PausingStore};
    use crate::protocol::hash::Digests;
    use crate::storage::store::MemoryStore;
    use crate::validate::RuntimeVersion;

    const V1: [(&[u8], &str); 1] = [(b"bundle-1", "bundle")];

    /// Uploads V1 and commits it on `production` at t = 1 s.
    fn publish_v1(store: &MemoryStore, t: &Target) {
        testing::upload(store, t, &V1);
        let body = testing::manifest(t, &V1, 1_000, "production");
        pollster::block_on(service::commit(
            store,
            t,
            testing::commit_request(body, "production"),
            &testing::ctx(1_000),
        ))
        .unwrap();
    }

    /// Review finding: uploads under runtimes that never get a commit slowed `list` (300 junk
    /// runtimes: 0.03 s → 2 s). They are not in the runtime index, so `list` costs the same with
    /// or without them, and collection removes their files after the grace period.
    #[test]
    fn junk_runtimes_cost_list_nothing_and_are_collected() {
        let store = PausingStore::new(MemoryStore::new());
        let t = testing::target("demo-app");
        publish_v1(&store.inner, &t);
        let cost = |s: &PausingStore<MemoryStore>| {
            let before = s.attempts();
            let l = pollster::block_on(service::list(s, "demo-app")).unwrap();
            (l.runtimes.len(), s.attempts() - before)
        };
        cost(&store); // the app's first list completes its index once
        let (runtimes, clean_cost) = cost(&store);
        assert_eq!(runtimes, 1);
        for i in 0..300 {
            let junk = Target { runtime_version: RuntimeVersion::parse(&format!("junk-{i}")).unwrap(), ..t.clone() };
            store.inner.put_file(&junk.file_key(&format!("{i:064}")), b"x", "x");
        }
        assert_eq!(cost(&store), (1, clean_cost), "junk runtimes changed what list reads");
        let junk = Target { runtime_version: RuntimeVersion::parse("junk-7").unwrap(), ..t.clone() };
        assert_eq!(pollster::block_on(collect_files(&store.inner, &junk, 1_000, GRACE_MS)).unwrap().deleted_files, 0);
        assert_eq!(
            pollster::block_on(collect_files(&store.inner, &junk, GRACE_MS, GRACE_MS)).unwrap().deleted_files,
            1
        );
        // The committed runtime keeps its named file whatever its age.
        let c = pollster::block_on(collect_files(&store.inner, &t, 10 * GRACE_MS, GRACE_MS)).unwrap();
        assert_eq!(c, Collected { deleted_files: 0, kept_files: 1 });
        assert!(store.inner.bytes(&t.file_key(&Digests::of(b"bundle-1").sha256_hex())).is_some());
    }

    #[test]
    fn collect_files_variants_and_patches_follow_their_files() {
        let store = MemoryStore::new();
        let t = testing::target("demo-app");
        publish_v1(&store, &t);
        let named = Digests::of(b"bundle-1").sha256_hex();
        let gone = Digests::of(b"bundle-0").sha256_hex();
        store.put_file(&t.encoded_key(&named, "br"), b"v", "x");
        store.put_file(&t.encoded_key(&gone, "br"), b"v", "x");
        store.put_file(&t.patch_key(&gone, &named), b"p", "x");
        store.put_file(&t.patch_key(&named, &named), b"p", "x");
        let c = pollster::block_on(collect_files(&store, &t, 10 * GRACE_MS, GRACE_MS)).unwrap();
        assert_eq!(c, Collected { deleted_files: 2, kept_files: 3 });
        assert!(store.bytes(&t.encoded_key(&named, "br")).is_some());
        assert!(store.bytes(&t.encoded_key(&gone, "br")).is_none());
        assert!(store.bytes(&t.patch_key(&gone, &named)).is_none(), "its base is named by no update");
    }

    #[test]
    fn list_of_an_app_published_before_the_index_backfills_once() {
        let store = MemoryStore::new();
        let t = testing::target("old-app");
        publish_v1(&store, &t);
        // As an older server left it: no index.
        let index: Vec<String> = store.keys().into_iter().filter(|k| k.starts_with("old-app/runtimes")).collect();
        pollster::block_on(store.delete(&index)).unwrap();
        let l = pollster::block_on(service::list(&store, "old-app")).unwrap();
        assert_eq!(l.runtimes.len(), 1);
        assert!(store.keys().contains(&t.runtime_index_key()));
        assert_eq!(pollster::block_on(service::latest_created(&store, &t)).unwrap(), Some(1_000));
    }

    #[test]
    fn next_runtimes_pages_through_apps_and_skips_system_keys() {
        let store = MemoryStore::new();
        store.put_file("_system/tokens/x.json", b"{}", "x");
        for slug in ["a-app", "b-app", "c-app"] {
            for rv in ["1", "2"] {
                let t = Target { runtime_version: RuntimeVersion::parse(rv).unwrap(), ..testing::target(slug) };
                store.put_file(&t.file_key("00"), b"x", "x");
            }
        }
        let (first, next) = pollster::block_on(next_runtimes(&store, None, 3)).unwrap();
        assert_eq!(first.iter().map(|t| t.slug.as_str()).collect::<Vec<_>>(), ["a-app", "a-app", "b-app", "b-app"]);
        assert_eq!(next.as_deref(), Some("b-app"));
        let (rest, next) = pollster::block_on(next_runtimes(&store, next.as_deref(), 3)).unwrap();
        assert_eq!((rest.len(), rest[0].slug.as_str(), next), (2, "c-app", None));
    }
}
