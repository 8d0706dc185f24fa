//! Deploy operations over any [`ObjectStore`]: the same code runs on R2 in the Worker and on
//! memory in host tests.

use crate::check::DEFAULT_CHANNEL;
use crate::config::Limits;
use crate::deploy::api::*;
use crate::error::ApiError;
use crate::protocol::hash;
use crate::protocol::manifest;
use crate::protocol::time::Timestamp;
use crate::storage::layout::Target;
use crate::storage::record::{RecordKind, UpdateRecord};
use crate::storage::store::{list_all, Condition, ObjectMeta, ObjectStore, PutOptions};
use crate::{protocol::time, validate};
use std::collections::{BTreeMap, BTreeSet};

/// How far in the future a publisher's createdAt may be (clock skew). A createdAt further ahead
/// would block every later publish until the wall clock passes it.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

pub struct Ctx<'a> {
    /// `https://host` the clients reach this server at (PUBLIC_URL, else the request's origin).
    pub origin: &'a str,
    pub now_ms: u64,
    pub limits: Limits,
    /// 16 random bytes (ids of server-made republishes).
    pub random: &'a (dyn Fn() -> [u8; 16] + Sync),
}

impl Ctx<'_> {
    pub fn asset_base_url(&self, t: &Target) -> String {
        format!("{}{}", self.origin, t.asset_path())
    }
}

/// The current update of a channel, or `None` when nothing is published.
pub async fn current<S: ObjectStore>(store: &S, t: &Target, channel: &str) -> Result<Option<UpdateRecord>, ApiError> {
    match store.get(&t.channel_key(channel)).await? {
        Some((_, bytes)) => Ok(Some(UpdateRecord::from_json(&bytes)?)),
        None => Ok(None),
    }
}

/// One stored record (manifest or directive body included), for rollback and promote.
pub async fn get_record<S: ObjectStore>(store: &S, t: &Target, id: &str) -> Result<UpdateRecord, ApiError> {
    if !crate::protocol::id::is_canonical_uuid(id) {
        return Err(ApiError::bad_request("update id must be a lowercase UUID"));
    }
    match store.get(&t.record_key(id)).await? {
        Some((_, bytes)) => UpdateRecord::from_json(&bytes),
        None => Err(ApiError::not_found(format!(
            "no update {id} for {} {} runtimeVersion {}",
            t.slug, t.platform, t.runtime_version
        ))),
    }
}

pub async fn prepare<S: ObjectStore>(
    store: &S,
    t: &Target,
    req: &PrepareRequest,
    ctx: &Ctx<'_>,
) -> Result<PrepareResponse, ApiError> {
    if req.files.len() > ctx.limits.max_files_per_update {
        return Err(too_many_files(req.files.len(), ctx.limits));
    }
    for f in &req.files {
        hash::parse_hex::<32>(f).ok_or_else(|| ApiError::bad_request("files must be lowercase SHA-256 hex digests"))?;
    }
    let present: BTreeSet<String> = list_all(store, &t.files_prefix()).await?.into_iter().map(|o| o.key).collect();
    let mut seen = BTreeSet::new();
    let missing = req.files.iter().filter(|f| seen.insert(*f) && !present.contains(&t.file_key(f))).cloned().collect();
    Ok(PrepareResponse {
        missing,
        asset_base_url: ctx.asset_base_url(t),
        latest_created_at: latest_created(store, t).await?.map(Timestamp::from_millis),
        max_file_bytes: ctx.limits.max_file_bytes,
    })
}

fn too_many_files(n: usize, limits: Limits) -> ApiError {
    ApiError::too_large(format!(
        "update names {n} files; the limit (MAX_FILES_PER_UPDATE) is {}",
        limits.max_files_per_update
    ))
}

/// Every record of a runtime with its list metadata (no record is opened).
async fn records<S: ObjectStore>(store: &S, t: &Target) -> Result<Vec<RecordMeta>, ApiError> {
    Ok(list_all(store, &t.records_prefix()).await?.into_iter().filter_map(RecordMeta::from_object).collect())
}

struct RecordMeta {
    id: String,
    created_ms: u64,
    channel: String,
}

impl RecordMeta {
    fn from_object(o: ObjectMeta) -> Option<Self> {
        let id = o.key.rsplit('/').next()?.strip_suffix(".json")?.to_string();
        let created_ms = o.custom.get("createdAt").and_then(|c| time::parse_millis(c))?;
        let channel = o.custom.get("channel").cloned().unwrap_or_default();
        Some(Self { id, created_ms, channel })
    }
}

/// createdAt must grow strictly per slug/platform/runtime, across channels. The newest one is
/// kept in the runtime's index entry, written by the app's writer at every install, so this is
/// one read; runtimes published before the index existed are listed once.
pub async fn latest_created<S: ObjectStore>(store: &S, t: &Target) -> Result<Option<u64>, ApiError> {
    if let Some(meta) = store.head(&t.runtime_index_key()).await? {
        if let Some(ms) = meta.custom.get(LATEST_CREATED_AT).and_then(|c| time::parse_millis(c)) {
            return Ok(Some(ms));
        }
    }
    Ok(records(store, t).await?.into_iter().map(|r| r.created_ms).max())
}

/// Custom-metadata key of the runtime index entry holding the newest createdAt.
const LATEST_CREATED_AT: &str = "latestCreatedAt";

/// The createdAt for a new update: now, unless that is not strictly after the latest one
/// published (a clock behind, or two publishes in one millisecond) — clients only take a
/// strictly newer update.
pub fn next_created_ms(now_ms: u64, latest_ms: Option<u64>) -> u64 {
    latest_ms.map_or(now_ms, |l| now_ms.max(l.saturating_add(1)))
}

/// Makes a published manifest, or a `rollBackToEmbedded` directive, current. Every file the
/// manifest names is verified first; then [`install`] writes the record and moves the pointer.
pub async fn commit<S: ObjectStore>(
    store: &S,
    t: &Target,
    req: CommitRequest,
    ctx: &Ctx<'_>,
) -> Result<CommitResponse, ApiError> {
    let channel = validate::channel(req.channel.as_deref().unwrap_or(DEFAULT_CHANNEL))?.to_string();
    if let Some(m) = &req.message {
        check_message(m)?;
    }
    let req_rollout = CommitRequest {
        rollout_percentage: req.rollout_percentage,
        revert_body: req.revert_body.clone(),
        revert_signature: req.revert_signature.clone(),
        key_id: req.key_id.clone(),
        ..Default::default()
    };
    if req.git_commit.as_ref().is_some_and(|c| c.len() < 7 || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(ApiError::bad_request("gitCommit must be a hex commit hash"));
    }
    check_signature(req.signature.as_deref(), req.key_id.as_deref())?;
    if req.republished_from.as_ref().is_some_and(|r| !crate::protocol::id::is_canonical_uuid(r)) {
        return Err(ApiError::bad_request("republishedFrom must be an update id"));
    }
    let mut record = UpdateRecord {
        id: String::new(),
        created_at: Timestamp::default(),
        slug: t.slug.to_string(),
        platform: t.platform.to_string(),
        runtime_version: t.runtime_version.to_string(),
        channel: channel.clone(),
        kind: RecordKind::Update,
        message: req.message,
        git_commit: req.git_commit,
        republished_from: req.republished_from,
        body: String::new(),
        signature: req.signature,
        key_id: req.key_id,
        launch_asset_bytes: 0,
        file_count: 0,
        total_bytes: 0,
        files: Vec::new(),
        rollout: None,
        halted: None,
        revert: None,
    };
    let created_ms = match (req.directive, req.manifest.is_empty()) {
        (Some(directive), true) => {
            let commit_ms = manifest::validate_rollback_directive(&directive)?;
            // The directive has no id; derive a stable one for its record.
            let seed = hash::sha256(format!("{}{channel}\n{directive}", t.prefix()).as_bytes());
            record.id = crate::protocol::id::uuid_v4(seed[..16].try_into().expect("16 bytes"));
            record.kind = RecordKind::RollBackToEmbedded;
            record.body = directive;
            commit_ms
        }
        (None, false) => {
            let (m, files) = manifest::validate_published(
                &req.manifest,
                &t.runtime_version,
                &channel,
                &ctx.asset_base_url(t),
                ctx.limits.max_files_per_update,
            )?;
            let sizes = verify_files(store, t, &files).await?;
            record.id = m.id.clone();
            record.launch_asset_bytes = sizes.values().filter(|(_, l)| *l).map(|(s, _)| s).sum();
            record.file_count = sizes.len() as u32;
            record.total_bytes = sizes.values().map(|(s, _)| s).sum();
            record.files = sizes.keys().cloned().collect();
            record.body = req.manifest;
            time::parse_millis(&m.created_at).expect("validated")
        }
        _ => return Err(ApiError::bad_request("send exactly one of manifest or directive")),
    };
    if created_ms > ctx.now_ms + MAX_CLOCK_SKEW_MS {
        return Err(ApiError::unprocessable(format!(
            "createdAt {} is in the future; check this machine's clock",
            time::format_millis(created_ms)
        )));
    }
    record.created_at = Timestamp::from_millis(created_ms);
    let rollout = crate::deploy::rollout::on_commit(store, t, &mut record, &req_rollout, ctx).await?;
    install_with(store, t, record, &Expect::Anything, rollout, None).await
}

/// An update message: at most 1000 characters, no NUL.
pub(crate) fn check_message(m: &str) -> Result<(), ApiError> {
    if m.chars().count() > 1000 || m.contains('\0') {
        return Err(ApiError::bad_request("message must be at most 1000 characters"));
    }
    Ok(())
}

/// A publisher's signature (padded standard base64 of at most 1024 bytes) and its keyId (1-128
/// printable characters without quotes), as they will be echoed in `expo-signature`.
pub(crate) fn check_signature(signature: Option<&str>, key_id: Option<&str>) -> Result<(), ApiError> {
    if signature.is_some_and(|sig| hash::base64_standard_decode(sig).is_none_or(|s| s.is_empty() || s.len() > 1024)) {
        return Err(ApiError::bad_request("signature must be padded standard base64"));
    }
    if key_id.is_some_and(|k| {
        k.is_empty() || k.len() > 128 || !k.bytes().all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\\')
    }) {
        return Err(ApiError::bad_request("keyId must be 1-128 printable characters without quotes"));
    }
    Ok(())
}

/// Every named file must be stored, whole and with the bytes its hash and key promise.
/// Returns sha256 hex → (size, is launch asset).
async fn verify_files<S: ObjectStore>(
    store: &S,
    t: &Target,
    files: &[manifest::RequiredFile],
) -> Result<BTreeMap<String, (u64, bool)>, ApiError> {
    let mut sizes = BTreeMap::new();
    let mut missing = Vec::new();
    for f in files {
        let hex = hash::hex(&f.sha256);
        match store.head(&t.file_key(&hex)).await? {
            None => missing.push(hex),
            Some(meta) => {
                verify_file(&meta, f)?;
                sizes.insert(hex, (meta.size, f.is_launch_asset));
            }
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::unprocessable(format!(
            "{} file(s) named by the manifest are not uploaded: {}",
            missing.len(),
            missing.join(", ")
        )));
    }
    Ok(sizes)
}

/// What a write expects the channel to serve. Checked inside the app's writer, so the
/// expectation holds for the whole operation (a listing read earlier is re-checked here).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is current (a publish).
    #[default]
    Anything,
    /// This update id, or nothing at all when `None`; otherwise 409.
    Current(Option<String>),
}

/// The atomic tail of every publish: createdAt strictly newer than anything in the runtime, the
/// immutable record written create-only, and only then the channel pointer moved with a
/// conditional write against the version read; then the served log and the runtime index. A
/// publish that dies at any step leaves the previous update served, and a record whose pointer
/// write never happened is never in the served log, so it is never promoted later.
pub(crate) async fn install<S: ObjectStore>(
    store: &S,
    t: &Target,
    record: UpdateRecord,
    expect: &Expect,
) -> Result<CommitResponse, ApiError> {
    install_with(store, t, record, expect, None, None).await
}

/// [`install`], with the rollout or halt state the channel pointer starts with (see
/// `deploy::rollout`). The pointer never carries the record's pre-signed revert: the check does
/// not need it.
pub(crate) async fn install_with<S: ObjectStore>(
    store: &S,
    t: &Target,
    record: UpdateRecord,
    expect: &Expect,
    rollout: Option<crate::storage::rollout::Rollout>,
    halted: Option<crate::storage::rollout::Halted>,
) -> Result<CommitResponse, ApiError> {
    let pointer_key = t.channel_key(&record.channel);
    let previous = store.head(&pointer_key).await?;
    if let Expect::Current(want) = expect {
        let serving = previous.as_ref().and_then(|p| p.custom.get("updateId").cloned());
        if &serving != want {
            return Err(ApiError::conflict(format!(
                "channel {:?} serves {} now, not {}; list the updates again and retry",
                record.channel,
                serving.as_deref().unwrap_or("nothing"),
                want.as_deref().unwrap_or("nothing")
            )));
        }
    }
    let created_ms = record.created_at.millis();
    if let Some(latest) = latest_created(store, t).await? {
        if latest >= created_ms {
            return Err(ApiError::conflict(format!(
                "createdAt {} is not later than {} already published for this runtime; clients only take strictly newer updates",
                record.created_at,
                time::format_millis(latest)
            )));
        }
    }
    let json = record.to_json().into_bytes();
    let custom = record_metadata(&record);
    let record_key = t.record_key(&record.id);
    let opts = |condition| PutOptions {
        content_type: Some("application/json".into()),
        custom: custom.clone(),
        condition,
        ..Default::default()
    };
    if store.put(&record_key, json.clone(), opts(Condition::IfAbsent)).await?.is_none() {
        return Err(ApiError::conflict(format!("update {} already exists", record.id)));
    }
    let cond = match previous {
        Some(p) => Condition::IfEtag(p.etag),
        None => Condition::IfAbsent,
    };
    // The pointer is the record, plus rollout/halt state, minus the pre-signed revert.
    let json = if rollout.is_none() && halted.is_none() && record.revert.is_none() {
        json
    } else {
        let pointer = UpdateRecord {
            rollout: rollout.map(Box::new),
            halted: halted.map(Box::new),
            revert: None,
            ..record.clone()
        };
        pointer.to_json().into_bytes()
    };
    if store.put(&pointer_key, json, opts(cond)).await?.is_none() {
        // Another publish moved the pointer since we read it; ours must not appear in history.
        store.delete(&[record_key]).await?;
        return Err(ApiError::conflict("another publish to this channel finished first; run the publish again"));
    }
    let small = |custom: BTreeMap<String, String>| PutOptions { custom, ..Default::default() };
    let served = BTreeMap::from([
        ("updateId".to_string(), record.id.clone()),
        ("kind".to_string(), record.kind.as_str().to_string()),
    ]);
    store.put(&t.served_key(&record.channel, created_ms, &record.id), Vec::new(), small(served)).await?;
    let index = BTreeMap::from([(LATEST_CREATED_AT.to_string(), record.created_at.to_string())]);
    store.put(&t.runtime_index_key(), Vec::new(), small(index)).await?;
    Ok(CommitResponse {
        signed: record.signature.is_some(),
        republished_from: record.republished_from,
        id: record.id,
        created_at: record.created_at,
        kind: record.kind,
        slug: record.slug,
        platform: record.platform,
        runtime_version: record.runtime_version,
        channel: record.channel,
        launch_asset_bytes: record.launch_asset_bytes,
        file_count: record.file_count,
        total_bytes: record.total_bytes,
    })
}

fn verify_file(meta: &ObjectMeta, f: &manifest::RequiredFile) -> Result<(), ApiError> {
    let hex = hash::hex(&f.sha256);
    if meta.sha256.is_some_and(|s| s != f.sha256) {
        return Err(ApiError::unprocessable(format!("stored file {hex} does not have that SHA-256")));
    }
    if meta.md5.is_some_and(|m| hash::hex(&m) != f.md5_key) {
        return Err(ApiError::unprocessable(format!("asset key {} is not the MD5 of file {hex}", f.md5_key)));
    }
    Ok(())
}

/// Deletes one update. When it is what its channel serves, what the channel served before it
/// (the newest older entry of the served log whose record still exists) is republished first —
/// new id and createdAt, so devices switch to it — or a rollBackToEmbedded directive is
/// installed when nothing is left. The promotion is conditional on the doomed update still being
/// served. Files are not deleted here: [`crate::deploy::gc`] collects files no record names,
/// after a grace period, inside the same writer, so a racing commit never loses a file it names.
/// Reads: the record, the pointer, and at most one page of the channel's served log.
pub async fn delete_update<S: ObjectStore>(
    store: &S,
    t: &Target,
    id: &str,
    ctx: &Ctx<'_>,
) -> Result<DeleteUpdateResponse, ApiError> {
    let doomed = get_record(store, t, id).await?;
    let doomed_ms = doomed.created_at.millis();
    let pointer = current(store, t, &doomed.channel).await?;
    // Devices outside a rollout are served its control from the pointer: its record (and so its
    // files) must outlive the rollout.
    if pointer.as_ref().and_then(|p| p.rollout.as_ref()?.control.as_ref()).is_some_and(|c| c.id == doomed.id) {
        return Err(ApiError::conflict(format!(
            "update {} is the control of the rollout on channel {:?}: complete or revert the rollout first",
            doomed.id, doomed.channel
        )));
    }
    let serving = pointer.is_some_and(|c| c.id == doomed.id);
    let mut promoted = None;
    if serving {
        let created_ms = next_created_ms(ctx.now_ms, latest_created(store, t).await?);
        let mut record = match served_before(store, t, &doomed.channel, &doomed.id).await? {
            Some(prev) => republished(&prev, t, created_ms, ctx)?,
            None => UpdateRecord {
                kind: RecordKind::RollBackToEmbedded,
                body: manifest::Directive::roll_back_to_embedded(created_ms).render(),
                files: vec![],
                launch_asset_bytes: 0,
                file_count: 0,
                total_bytes: 0,
                republished_from: None,
                git_commit: None,
                id: crate::protocol::id::uuid_v4((ctx.random)()),
                ..doomed.clone().plain()
            },
        };
        record.created_at = Timestamp::from_millis(created_ms);
        record.signature = None;
        record.key_id = None;
        record.message = Some(format!("promoted after deleting {}", doomed.id));
        promoted = Some(install(store, t, record, &Expect::Current(Some(doomed.id.clone()))).await?);
    }
    store.delete(&[t.record_key(&doomed.id), t.served_key(&doomed.channel, doomed_ms, &doomed.id)]).await?;
    Ok(DeleteUpdateResponse { deleted: doomed.id, deleted_files: 0, promoted })
}

/// What `channel` served before `not` (newest first, skipping `not` and entries whose record
/// was deleted). Reads one page of the served log; runtimes published before the log existed
/// fall back to the newest older record of the channel.
pub(crate) async fn served_before<S: ObjectStore>(
    store: &S,
    t: &Target,
    channel: &str,
    not: &str,
) -> Result<Option<UpdateRecord>, ApiError> {
    let page = store.list(&t.served_prefix(channel), None, None, None).await?;
    if page.objects.is_empty() {
        let mut legacy: Vec<RecordMeta> =
            records(store, t).await?.into_iter().filter(|r| r.channel == channel && r.id != not).collect();
        legacy.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
        return match legacy.first() {
            Some(r) => Ok(Some(get_record(store, t, &r.id).await?)),
            None => Ok(None),
        };
    }
    for entry in page.objects {
        let Some(id) = entry.custom.get("updateId") else { continue };
        if id == not {
            continue;
        }
        if let Some((_, bytes)) = store.get(&t.record_key(id)).await? {
            return Ok(Some(UpdateRecord::from_json(&bytes)?));
        }
    }
    Ok(None)
}

/// A stored update as a new record: same files, new id and createdAt, URLs under today's origin.
pub(crate) fn republished(
    prev: &UpdateRecord,
    t: &Target,
    created_ms: u64,
    ctx: &Ctx<'_>,
) -> Result<UpdateRecord, ApiError> {
    let id = crate::protocol::id::uuid_v4((ctx.random)());
    let body = match prev.kind {
        RecordKind::Update => {
            let m: manifest::Manifest = serde_json::from_str(&prev.body)
                .map_err(|e| ApiError::internal(format!("stored manifest unreadable: {e}")))?;
            manifest::republish(&m, id.clone(), created_ms, &prev.channel, &ctx.asset_base_url(t)).render()
        }
        RecordKind::RollBackToEmbedded => manifest::Directive::roll_back_to_embedded(created_ms).render(),
    };
    Ok(UpdateRecord { id, body, republished_from: Some(prev.id.clone()), ..prev.clone().plain() })
}

/// What listing needs, kept in R2 custom metadata so `list` never opens a record.
pub(crate) fn record_metadata(r: &UpdateRecord) -> BTreeMap<String, String> {
    let mut m = BTreeMap::from([
        ("createdAt".to_string(), r.created_at.to_string()),
        ("updateId".to_string(), r.id.clone()),
        ("channel".to_string(), r.channel.clone()),
        ("launchAssetBytes".to_string(), r.launch_asset_bytes.to_string()),
        ("fileCount".to_string(), r.file_count.to_string()),
        ("totalBytes".to_string(), r.total_bytes.to_string()),
        ("signed".to_string(), r.signature.is_some().to_string()),
        ("kind".to_string(), r.kind.as_str().to_string()),
    ]);
    if let Some(c) = &r.git_commit {
        m.insert("gitCommit".into(), c.clone());
    }
    if let Some(f) = &r.republished_from {
        m.insert("republishedFrom".into(), f.clone());
    }
    if let Some(msg) = &r.message {
        // Custom metadata is size-limited; the full message stays in the record.
        m.insert("message".into(), msg.chars().take(200).collect());
    }
    m
}

/// Every committed runtime of an app with its updates, newest first. Runtimes come from the
/// app's runtime index, so runtimes that only ever received uploads cost nothing here.
pub async fn list<S: ObjectStore>(store: &S, slug: &str) -> Result<ListResponse, ApiError> {
    validate::slug(slug)?;
    let mut runtimes = Vec::new();
    for (platform, rvs) in committed_runtimes(store, slug).await? {
        for rv in rvs {
            let Ok(t) = Target::parse(slug, platform.as_str(), &rv) else { continue };
            let current: BTreeSet<String> = list_all(store, &t.channels_prefix())
                .await?
                .into_iter()
                .filter_map(|o| o.custom.get("updateId").cloned())
                .collect();
            let mut updates: Vec<UpdateSummary> = list_all(store, &t.records_prefix())
                .await?
                .into_iter()
                .map(|o| {
                    let c = &o.custom;
                    let num = |k: &str| c.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                    let id = c.get("updateId").cloned().unwrap_or_default();
                    UpdateSummary {
                        current: current.contains(&id),
                        id,
                        created_at: c.get("createdAt").and_then(|c| Timestamp::parse(c)).unwrap_or_default(),
                        channel: c.get("channel").cloned().unwrap_or_default(),
                        kind: if c.get("kind").map(String::as_str) == Some("rollBackToEmbedded") {
                            RecordKind::RollBackToEmbedded
                        } else {
                            RecordKind::Update
                        },
                        signed: c.get("signed").map(String::as_str) == Some("true"),
                        git_commit: c.get("gitCommit").cloned(),
                        republished_from: c.get("republishedFrom").cloned(),
                        launch_asset_bytes: num("launchAssetBytes"),
                        file_count: num("fileCount") as u32,
                        total_bytes: num("totalBytes"),
                        message: c.get("message").cloned(),
                    }
                })
                .collect();
            if updates.is_empty() {
                continue;
            }
            updates.sort_by_key(|u| std::cmp::Reverse(u.created_at));
            runtimes.push(RuntimeUpdates { platform: platform.to_string(), runtime_version: rv, updates });
        }
    }
    Ok(ListResponse { slug: slug.to_string(), runtimes })
}

/// Marks an app whose runtime index was completed from a full scan (apps published before the
/// index existed are scanned once).
fn index_complete_key(slug: &str) -> String {
    format!("{}.complete", crate::storage::layout::runtime_index_prefix(slug).trim_end_matches('/'))
}

/// The app's committed runtimes per platform, from the index.
async fn committed_runtimes<S: ObjectStore>(
    store: &S,
    slug: &str,
) -> Result<Vec<(validate::Platform, Vec<String>)>, ApiError> {
    if store.head(&index_complete_key(slug)).await?.is_none() {
        backfill_runtime_index(store, slug).await?;
    }
    let prefix = crate::storage::layout::runtime_index_prefix(slug);
    let mut out = Vec::new();
    for platform in validate::Platform::ALL {
        let pprefix = format!("{prefix}{platform}/");
        let rvs = list_all(store, &pprefix)
            .await?
            .into_iter()
            .filter_map(|o| o.key.strip_prefix(&pprefix).map(str::to_string));
        out.push((platform, rvs.collect()));
    }
    Ok(out)
}

/// One full scan for apps published before the index: every runtime with a record gets an index
/// entry (create-only, so a concurrent install's newer entry is never replaced).
async fn backfill_runtime_index<S: ObjectStore>(store: &S, slug: &str) -> Result<(), ApiError> {
    for t in stored_runtimes(store, slug).await? {
        if !store.list(&t.records_prefix(), None, None, None).await?.objects.is_empty() {
            let opts = PutOptions { condition: Condition::IfAbsent, ..Default::default() };
            store.put(&t.runtime_index_key(), Vec::new(), opts).await?;
        }
    }
    store.put(&index_complete_key(slug), Vec::new(), PutOptions::default()).await?;
    Ok(())
}

/// Every runtime prefix an app has in storage, committed or not (one delimited listing per
/// platform page). Keys no client could have made (not a valid runtimeVersion) are skipped.
pub(crate) async fn stored_runtimes<S: ObjectStore>(store: &S, slug: &str) -> Result<Vec<Target>, ApiError> {
    let mut out = Vec::new();
    for platform in validate::Platform::ALL {
        let pprefix = format!("{slug}/{platform}/");
        let mut cursor = None;
        loop {
            let page = store.list(&pprefix, Some("/"), cursor, None).await?;
            let rvs = page.prefixes.iter().filter_map(|p| p.strip_prefix(&pprefix)?.strip_suffix('/'));
            out.extend(rvs.filter_map(|rv| Target::parse(slug, platform.as_str(), rv).ok()));
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    Ok(out)
}

/// Removes everything under a runtime prefix, 1000 keys per call. Pointers go first so that a
/// delete interrupted half way already answers "no update".
pub async fn delete_runtime<S: ObjectStore>(store: &S, t: &Target) -> Result<DeleteResponse, ApiError> {
    let mut keys: Vec<String> = list_all(store, &t.prefix()).await?.into_iter().map(|o| o.key).collect();
    if keys.is_empty() {
        return Err(ApiError::not_found(format!(
            "nothing is published for {} {} runtimeVersion {}",
            t.slug, t.platform, t.runtime_version
        )));
    }
    let channels = t.channels_prefix();
    keys.sort_by_key(|k| !k.starts_with(&channels));
    for chunk in keys.chunks(1000) {
        store.delete(chunk).await?;
    }
    store.delete(&[t.runtime_index_key()]).await?;
    Ok(DeleteResponse { deleted_objects: keys.len() as u64 })
}

/// What an upload request promises about its body, checked before a byte is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadHeaders {
    pub len: u64,
    pub md5: Option<[u8; 16]>,
    pub content_type: String,
}

/// `PUT /api/files/…` preconditions: Content-Length present (411) and within MAX_FILE_BYTES
/// (413), a well-formed `x-content-md5` and a printable Content-Type.
pub fn upload_headers(header: &dyn Fn(&str) -> Option<String>, limits: &Limits) -> Result<UploadHeaders, ApiError> {
    let len: u64 = header("content-length")
        .ok_or_else(|| ApiError::new(411, "Content-Length is required (upload the raw file bytes)"))?
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request("Content-Length is not a number"))?;
    if len > limits.max_file_bytes {
        return Err(ApiError::too_large(format!(
            "file is {len} bytes; the limit (MAX_FILE_BYTES) is {}",
            limits.max_file_bytes
        )));
    }
    let md5 = match header("x-content-md5") {
        Some(m) => Some(
            hash::parse_hex::<16>(m.trim())
                .ok_or_else(|| ApiError::bad_request("x-content-md5 must be 32 lowercase hex digits"))?,
        ),
        None => None,
    };
    let content_type = header("content-type").unwrap_or_else(|| "application/octet-stream".into());
    if content_type.len() > 100 || !content_type.bytes().all(|c| c.is_ascii_graphic() || c == b' ') {
        return Err(ApiError::bad_request("invalid Content-Type"));
    }
    Ok(UploadHeaders { len, md5, content_type })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::hash::Digests;
    use crate::protocol::manifest::{build, FileEntry, ManifestInput};
    use crate::storage::store::MemoryStore;
    use crate::validate::Platform;

    fn target() -> Target {
        Target::parse("demo-app", Platform::Ios.as_str(), "1.0.3").unwrap()
    }
    fn ctx(now_ms: u64) -> Ctx<'static> {
        Ctx { origin: "https://ota.example.com", now_ms, limits: Limits::default(), random: &rand16 }
    }
    fn rand16() -> [u8; 16] {
        static N: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
        [N.fetch_add(1, std::sync::atomic::Ordering::SeqCst); 16]
    }
    fn manifest(files: &[(&[u8], &str)], created_ms: u64) -> String {
        let t = target();
        let entry = |(b, e): &(&[u8], &str)| FileEntry { digests: Digests::of(b), ext: e.to_string() };
        build(ManifestInput {
            id: crate::protocol::id::uuid_v4([created_ms as u8; 16]),
            created_at_ms: created_ms,
            runtime_version: "1.0.3",
            launch_asset: entry(&files[0]),
            assets: files[1..].iter().map(entry).collect(),
            metadata: crate::protocol::manifest::channel_metadata("production"),
            expo_client: None,
            asset_base_url: &ctx(0).asset_base_url(&t),
        })
        .render()
    }

    #[test]
    fn next_created_is_strictly_after_latest() {
        assert_eq!(next_created_ms(1_000, None), 1_000);
        assert_eq!(next_created_ms(1_000, Some(500)), 1_000);
        assert_eq!(next_created_ms(1_000, Some(1_000)), 1_001);
        assert_eq!(next_created_ms(1_000, Some(5_000)), 5_001, "a clock behind the last publish");
    }

    #[test]
    fn upload_preconditions() {
        let l = Limits { max_file_bytes: 10, ..Limits::default() };
        let h = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
        };
        assert_eq!(upload_headers(&h(&[]), &l).unwrap_err().status, 411);
        assert_eq!(upload_headers(&h(&[("content-length", "11")]), &l).unwrap_err().status, 413);
        assert_eq!(upload_headers(&h(&[("content-length", "x")]), &l).unwrap_err().status, 400);
        assert_eq!(
            upload_headers(&h(&[("content-length", "1"), ("x-content-md5", "zz")]), &l).unwrap_err().status,
            400
        );
        assert_eq!(
            upload_headers(&h(&[("content-length", "1"), ("content-type", "a\u{7f}b")]), &l).unwrap_err().status,
            400
        );
        let ok = upload_headers(&h(&[("content-length", "10"), ("content-type", "image/png")]), &l).unwrap();
        assert_eq!((ok.len, ok.content_type.as_str(), ok.md5), (10, "image/png", None));
    }

    #[test]
    fn commit_moves_pointer_only_when_complete_and_newer() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            let t = target();
            let files: [(&[u8], &str); 2] = [(b"bundle", "bundle"), (b"png", "png")];
            let body = manifest(&files, 1_000);
            let req = |b: &str| CommitRequest { manifest: b.to_string(), ..Default::default() };
            // Missing files: nothing is written at all.
            assert_eq!(commit(&s, &t, req(&body), &ctx(1_000)).await.unwrap_err().status, 422);
            assert!(s.keys().is_empty());
            for (b, _) in &files {
                s.put_file(&t.file_key(&Digests::of(b).sha256_hex()), b, "x");
            }
            let c = commit(&s, &t, req(&body), &ctx(1_000)).await.unwrap();
            assert_eq!((c.file_count, c.total_bytes, c.launch_asset_bytes), (2, 9, 6));
            assert_eq!(current(&s, &t, "production").await.unwrap().unwrap().body, body);
            // Older or equal createdAt loses; the current update is untouched.
            let older = manifest(&files, 999);
            assert_eq!(commit(&s, &t, req(&older), &ctx(1_000)).await.unwrap_err().status, 409);
            assert_eq!(current(&s, &t, "production").await.unwrap().unwrap().id, c.id);
            // Far-future createdAt would block later publishes.
            let future = manifest(&files, 1_000 + MAX_CLOCK_SKEW_MS + 10);
            assert_eq!(commit(&s, &t, req(&future), &ctx(1_000)).await.unwrap_err().status, 422);
            let p = prepare(
                &s,
                &t,
                &PrepareRequest { files: vec![Digests::of(b"bundle").sha256_hex(), Digests::of(b"new").sha256_hex()] },
                &ctx(1),
            )
            .await
            .unwrap();
            assert_eq!(p.missing, vec![Digests::of(b"new").sha256_hex()]);
            assert_eq!(p.latest_created_at.map(|t| t.to_string()).as_deref(), Some("1970-01-01T00:00:01.000Z"));
        });
    }

    #[test]
    fn delete_update_promotes_previous_then_collection_removes_unnamed_files() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            let t = target();
            let req = |b: String| CommitRequest { manifest: b, ..Default::default() };
            let v1: [(&[u8], &str); 2] = [(b"bundle1", "bundle"), (b"shared", "png")];
            let v2: [(&[u8], &str); 2] = [(b"bundle2", "bundle"), (b"shared", "png")];
            for (b, _) in v1.iter().chain(&v2) {
                s.put_file(&t.file_key(&Digests::of(b).sha256_hex()), b, "x");
            }
            let c1 = commit(&s, &t, req(manifest(&v1, 1_000)), &ctx(1_000)).await.unwrap();
            let c2 = commit(&s, &t, req(manifest(&v2, 2_000)), &ctx(2_000)).await.unwrap();

            // Deleting the current update republishes the previous one, newer than both.
            let d = delete_update(&s, &t, &c2.id, &ctx(3_000)).await.unwrap();
            let p = d.promoted.expect("promoted");
            assert_ne!(p.id, c1.id);
            assert_eq!(p.created_at.to_string(), "1970-01-01T00:00:03.000Z");
            let now = current(&s, &t, "production").await.unwrap().unwrap();
            assert_eq!((now.id.as_str(), now.republished_from.as_deref()), (p.id.as_str(), Some(c1.id.as_str())));
            let m: crate::protocol::manifest::Manifest = serde_json::from_str(&now.body).unwrap();
            assert_eq!((m.id.as_str(), m.created_at.as_str()), (p.id.as_str(), "1970-01-01T00:00:03.000Z"));
            // bundle2 is named by nothing left: kept during the grace period, then collected;
            // the shared asset stays.
            assert_eq!(d.deleted_files, 0, "deletes never remove files inline");
            let gc = |now| crate::deploy::gc::collect_files(&s, &t, now, crate::deploy::gc::GRACE_MS);
            assert_eq!(gc(3_000).await.unwrap().deleted_files, 0, "within the grace period");
            assert_eq!(gc(3_000 + crate::deploy::gc::GRACE_MS).await.unwrap().deleted_files, 1);
            assert!(s.bytes(&t.file_key(&Digests::of(b"bundle2").sha256_hex())).is_none());
            assert!(s.bytes(&t.file_key(&Digests::of(b"shared").sha256_hex())).is_some());

            // Deleting a non-current update moves nothing.
            let d = delete_update(&s, &t, &c1.id, &ctx(4_000)).await.unwrap();
            assert!(d.promoted.is_none());
            assert_eq!(d.deleted_files, 0, "the republished copy still names its files");

            // Deleting the last one falls back to rollBackToEmbedded.
            let d = delete_update(&s, &t, &p.id, &ctx(5_000)).await.unwrap();
            assert_eq!(d.promoted.unwrap().kind, RecordKind::RollBackToEmbedded);
            let now = current(&s, &t, "production").await.unwrap().unwrap();
            assert_eq!(
                now.body,
                r#"{"type":"rollBackToEmbedded","parameters":{"commitTime":"1970-01-01T00:00:05.000Z"}}"#
            );
            assert_eq!(gc(5_000 + crate::deploy::gc::GRACE_MS).await.unwrap().deleted_files, 2);
            assert_eq!(delete_update(&s, &t, &c1.id, &ctx(6_000)).await.unwrap_err().status, 404);
        });
    }

    #[test]
    fn rollback_directive_commits() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            let t = target();
            let d = crate::protocol::manifest::Directive::roll_back_to_embedded(1_000).render();
            let c = commit(
                &s,
                &t,
                CommitRequest { directive: Some(d.clone()), channel: Some("staging".into()), ..Default::default() },
                &ctx(1_000),
            )
            .await
            .unwrap();
            assert_eq!(c.kind, RecordKind::RollBackToEmbedded);
            assert_eq!(current(&s, &t, "staging").await.unwrap().unwrap().body, d);
            assert!(current(&s, &t, "production").await.unwrap().is_none());
            // Both bodies at once, or neither, is a client error.
            let both = CommitRequest { directive: Some(d), manifest: "{}".into(), ..Default::default() };
            assert_eq!(commit(&s, &t, both, &ctx(2_000)).await.unwrap_err().status, 400);
            assert_eq!(commit(&s, &t, CommitRequest::default(), &ctx(2_000)).await.unwrap_err().status, 400);
        });
    }

    #[test]
    fn delete_pages_past_1000_objects() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            let t = target();
            for i in 0..2500 {
                s.put_file(&t.file_key(&format!("{i:064}")), b"x", "x");
            }
            s.put_file("demo-app/android/1.0.3/files/a", b"x", "x");
            assert_eq!(delete_runtime(&s, &t).await.unwrap().deleted_objects, 2500);
            assert_eq!(s.keys(), vec!["demo-app/android/1.0.3/files/a".to_string()]);
            assert_eq!(delete_runtime(&s, &t).await.unwrap_err().status, 404);
        });
    }
}
