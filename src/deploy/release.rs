//! Rollback and promote: republish what the server already stores. The server builds the new
//! body itself from a stored record (new id and createdAt, same files, the target channel), so
//! the `rollback` scope can move a channel between states it has served but can never bring new
//! bytes or new metadata. A publisher who keeps the signing key asks for the body first
//! (`prepareOnly`), signs it, and sends it back; the server accepts only a body it rebuilds byte
//! for byte. Runs inside the app's writer, so `expectedCurrent` holds for the whole operation.

use crate::check::DEFAULT_CHANNEL;
use crate::deploy::api::{CommitResponse, PromoteRequest, ReleaseResponse, RollbackRequest, SignedBody, ToSign};
use crate::deploy::service::{
    self, current, get_record, install, latest_created, next_created_ms, Ctx, Expect, MAX_CLOCK_SKEW_MS,
};
use crate::error::ApiError;
use crate::protocol::time::Timestamp;
use crate::protocol::{id, manifest, time};
use crate::storage::layout::Target;
use crate::storage::record::{RecordKind, UpdateRecord};
use crate::storage::store::ObjectStore;
use crate::validate;

/// How far back `rollback` follows `republishedFrom` to find the original publish.
const MAX_CHAIN: usize = 64;

/// What a channel is made to serve.
pub(crate) enum Source {
    Record(Box<UpdateRecord>),
    Embedded,
}

pub async fn rollback<S: ObjectStore>(
    store: &S,
    t: &Target,
    req: RollbackRequest,
    ctx: &Ctx<'_>,
) -> Result<ReleaseResponse, ApiError> {
    let channel = validate::channel(req.channel.as_deref().unwrap_or(DEFAULT_CHANNEL))?.to_string();
    let serving = current(store, t, &channel).await?;
    check_expected(&channel, serving.as_ref(), req.expected_current.as_deref())?;
    let (source, message) = match req.to.as_deref() {
        Some("embedded") => (Source::Embedded, "rollback to embedded".to_string()),
        Some(to) => {
            let to = id::normalize_uuid(to)
                .ok_or_else(|| ApiError::bad_request("to must be an update id or \"embedded\""))?;
            let record = get_record(store, t, &to).await?;
            if record.kind != RecordKind::Update {
                return Err(ApiError::unprocessable(format!(
                    "{to} is a rollBackToEmbedded directive, not an update; roll back to \"embedded\" instead"
                )));
            }
            (Source::Record(Box::new(record)), format!("rollback to {to}"))
        }
        None => {
            let cur = serving.as_ref().ok_or_else(|| {
                ApiError::not_found(format!("nothing is current in channel {channel:?}; nothing to roll back"))
            })?;
            let prev = previous_update(store, t, cur).await?.ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "channel {channel:?} has no update before {}; roll back to \"embedded\" instead",
                    cur.id
                ))
            })?;
            let message = format!("rollback to {}", prev.id);
            (Source::Record(Box::new(prev)), message)
        }
    };
    let expect = Expect::Current(serving.map(|c| c.id));
    release(store, t, &channel, source, req.message.unwrap_or(message), req.signed, &expect, ctx).await
}

pub async fn promote<S: ObjectStore>(
    store: &S,
    t: &Target,
    req: PromoteRequest,
    ctx: &Ctx<'_>,
) -> Result<ReleaseResponse, ApiError> {
    let to_channel = validate::channel(&req.to_channel)?.to_string();
    let (record, from) = match (&req.update_id, &req.from_channel) {
        (Some(update_id), None) => {
            let update_id =
                id::normalize_uuid(update_id).ok_or_else(|| ApiError::bad_request("updateId must be an update id"))?;
            let r = get_record(store, t, &update_id).await?;
            let from = r.channel.clone();
            (r, from)
        }
        (None, Some(from)) => {
            let from = validate::channel(from)?.to_string();
            let r = current(store, t, &from)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("nothing is current in channel {from:?}")))?;
            (r, from)
        }
        _ => return Err(ApiError::bad_request("send exactly one of updateId or fromChannel")),
    };
    if from == to_channel {
        return Err(ApiError::bad_request(format!("the update is already on channel {to_channel:?}")));
    }
    let serving = current(store, t, &to_channel).await?;
    check_expected(&to_channel, serving.as_ref(), req.expected_current.as_deref())?;
    let expect = Expect::Current(serving.map(|c| c.id));
    let message = req.message.unwrap_or_else(|| format!("promoted from {from}"));
    release(store, t, &to_channel, Source::Record(Box::new(record)), message, req.signed, &expect, ctx).await
}

/// 409 unless the channel serves what the caller saw (when it says what it saw).
fn check_expected(channel: &str, serving: Option<&UpdateRecord>, expected: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = expected else { return Ok(()) };
    let expected =
        id::normalize_uuid(expected).ok_or_else(|| ApiError::bad_request("expectedCurrent must be an update id"))?;
    match serving {
        Some(s) if s.id == expected => Ok(()),
        other => Err(ApiError::conflict(format!(
            "channel {channel:?} serves {} now, not {expected}; something was published since you looked — list again and retry",
            other.map_or("nothing", |s| s.id.as_str())
        ))),
    }
}

/// The update to roll back to: the newest update the channel served before the original
/// publish behind `cur` (following `republishedFrom` on the same channel, so repeated rollbacks
/// walk further back instead of alternating). Reads one page of the served log.
pub(crate) async fn previous_update<S: ObjectStore>(
    store: &S,
    t: &Target,
    cur: &UpdateRecord,
) -> Result<Option<UpdateRecord>, ApiError> {
    let mut origin = cur.clone();
    for _ in 0..MAX_CHAIN {
        let Some(from) = origin.republished_from.clone() else { break };
        match store.get(&t.record_key(&from)).await? {
            Some((_, bytes)) => {
                let r = UpdateRecord::from_json(&bytes)?;
                if r.channel != cur.channel {
                    break;
                }
                origin = r;
            }
            None => break,
        }
    }
    let origin_ms = origin.created_at.millis();
    let page = store.list(&t.served_prefix(&cur.channel), None, None, None).await?;
    if page.objects.is_empty() {
        // Published before the served log existed: the newest older update record.
        return legacy_previous(store, t, &cur.channel, origin_ms).await;
    }
    let after = t.served_key(&cur.channel, origin_ms, &origin.id);
    for entry in page.objects.into_iter().filter(|o| o.key > after) {
        if entry.custom.get("kind").map(String::as_str) != Some(RecordKind::Update.as_str()) {
            continue;
        }
        let Some(update_id) = entry.custom.get("updateId") else { continue };
        if let Some((_, bytes)) = store.get(&t.record_key(update_id)).await? {
            return Ok(Some(UpdateRecord::from_json(&bytes)?));
        }
    }
    Ok(None)
}

async fn legacy_previous<S: ObjectStore>(
    store: &S,
    t: &Target,
    channel: &str,
    before_ms: u64,
) -> Result<Option<UpdateRecord>, ApiError> {
    let list = service::list(store, &t.slug).await?;
    let rt = list.runtimes.iter().find(|r| r.platform == t.platform.as_str() && t.runtime_version == r.runtime_version);
    let candidate = rt.and_then(|rt| {
        rt.updates
            .iter()
            .find(|u| u.channel == channel && u.kind == RecordKind::Update && u.created_at.millis() < before_ms)
    });
    match candidate {
        Some(u) => Ok(Some(get_record(store, t, &u.id).await?)),
        None => Ok(None),
    }
}

/// Builds the body for `source` on `channel` and installs it, or returns it to be signed.
#[allow(clippy::too_many_arguments)]
async fn release<S: ObjectStore>(
    store: &S,
    t: &Target,
    channel: &str,
    source: Source,
    message: String,
    signed: SignedBody,
    expect: &Expect,
    ctx: &Ctx<'_>,
) -> Result<ReleaseResponse, ApiError> {
    service::check_message(&message)?;
    let (update_id, created_ms) = match &signed.body {
        // The publisher signed a body we built earlier: rebuild it with its id and createdAt.
        Some(body) => body_identity(body)?,
        None => (id::uuid_v4((ctx.random)()), next_created_ms(ctx.now_ms, latest_created(store, t).await?)),
    };
    let mut record = build(t, channel, &source, update_id, created_ms, ctx)?;
    if signed.prepare_only {
        return Ok(ReleaseResponse::ToSign(ToSign {
            body: record.body,
            kind: record.kind,
            channel: channel.to_string(),
            republished_from: record.republished_from,
            current: match expect {
                Expect::Current(c) => c.clone(),
                Expect::Anything => None,
            },
        }));
    }
    if let Some(body) = &signed.body {
        if *body != record.body {
            return Err(ApiError::unprocessable(
                "the signed body is not the one the server builds from the stored update; ask for it again with prepareOnly",
            ));
        }
        if created_ms > ctx.now_ms + MAX_CLOCK_SKEW_MS {
            return Err(ApiError::unprocessable("the signed body's createdAt is in the future"));
        }
    }
    match (&signed.signature, &signed.key_id) {
        (Some(sig), key_id) => {
            if signed.body.is_none() {
                return Err(ApiError::bad_request("a signature needs the body it signs (ask with prepareOnly first)"));
            }
            service::check_signature(Some(sig), key_id.as_deref())?;
            record.signature = Some(sig.clone());
            record.key_id = key_id.clone();
        }
        (None, Some(_)) => return Err(ApiError::bad_request("keyId without a signature")),
        (None, None) => {}
    }
    verify_still_stored(store, t, &record).await?;
    record.message = Some(message);
    Ok(ReleaseResponse::Installed(install(store, t, record, expect).await?))
}

/// The id and createdAt a publisher-signed body carries (a directive has no id: a fresh one).
fn body_identity(body: &str) -> Result<(String, u64), ApiError> {
    if body.len() > manifest::MAX_MANIFEST_BYTES {
        return Err(ApiError::too_large("body is larger than a manifest may be"));
    }
    if let Ok(ms) = manifest::validate_rollback_directive(body) {
        return Ok((String::new(), ms));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Identity {
        id: String,
        created_at: String,
    }
    let i: Identity =
        serde_json::from_str(body).map_err(|e| ApiError::bad_request(format!("body is not a manifest: {e}")))?;
    let ms = time::parse_millis(&i.created_at).ok_or_else(|| ApiError::bad_request("body has an invalid createdAt"))?;
    if !id::is_canonical_uuid(&i.id) {
        return Err(ApiError::bad_request("body has an invalid id"));
    }
    Ok((i.id, ms))
}

/// The record `source` becomes on `channel`: same files, new id and createdAt.
pub(crate) fn build(
    t: &Target,
    channel: &str,
    source: &Source,
    update_id: String,
    created_ms: u64,
    ctx: &Ctx<'_>,
) -> Result<UpdateRecord, ApiError> {
    let directive = || manifest::Directive::roll_back_to_embedded(created_ms).render();
    let fresh_id = |update_id: String| if update_id.is_empty() { id::uuid_v4((ctx.random)()) } else { update_id };
    let mut record = match source {
        Source::Record(prev) if prev.kind == RecordKind::Update => {
            let m: manifest::Manifest = serde_json::from_str(&prev.body)
                .map_err(|e| ApiError::internal(format!("stored manifest unreadable: {e}")))?;
            if update_id.is_empty() {
                return Err(ApiError::unprocessable("the signed body is a directive, but this release is an update"));
            }
            let body = manifest::republish(&m, update_id.clone(), created_ms, channel, &ctx.asset_base_url(t)).render();
            UpdateRecord { id: update_id, body, republished_from: Some(prev.id.clone()), ..(**prev).clone().plain() }
        }
        Source::Record(prev) => UpdateRecord {
            id: fresh_id(update_id),
            body: directive(),
            republished_from: Some(prev.id.clone()),
            ..(**prev).clone().plain()
        },
        Source::Embedded => UpdateRecord {
            id: fresh_id(update_id),
            created_at: Timestamp::default(),
            slug: t.slug.to_string(),
            platform: t.platform.to_string(),
            runtime_version: t.runtime_version.to_string(),
            channel: String::new(),
            kind: RecordKind::RollBackToEmbedded,
            message: None,
            git_commit: None,
            republished_from: None,
            body: directive(),
            signature: None,
            key_id: None,
            launch_asset_bytes: 0,
            file_count: 0,
            total_bytes: 0,
            files: Vec::new(),
            rollout: None,
            halted: None,
            revert: None,
        },
    };
    if record.kind == RecordKind::RollBackToEmbedded {
        record.body = directive();
    }
    record.channel = channel.to_string();
    record.created_at = Timestamp::from_millis(created_ms);
    record.signature = None;
    record.key_id = None;
    Ok(record)
}

/// Every file of a republished update must still be stored (a runtime deleted and recreated
/// could have lost them); 422 names what is missing.
pub(crate) async fn verify_still_stored<S: ObjectStore>(
    store: &S,
    t: &Target,
    record: &UpdateRecord,
) -> Result<(), ApiError> {
    let mut missing = Vec::new();
    for f in &record.files {
        if store.head(&t.file_key(f)).await?.is_none() {
            missing.push(f.clone());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::unprocessable(format!(
            "{} file(s) of update {} are no longer stored ({}); publish it again instead",
            missing.len(),
            record.republished_from.as_deref().unwrap_or("?"),
            missing.join(", ")
        )))
    }
}

/// What a release installed, for audit entries.
pub fn installed(r: &ReleaseResponse) -> Option<&CommitResponse> {
    match r {
        ReleaseResponse::Installed(c) => Some(c),
        ReleaseResponse::ToSign(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::api::PromoteRequest;
    use crate::deploy::testing;
    use crate::storage::store::MemoryStore;

    const A: [(&[u8], &str); 1] = [(b"bundle-a", "bundle")];
    const B: [(&[u8], &str); 1] = [(b"bundle-b", "bundle")];
    const C: [(&[u8], &str); 1] = [(b"bundle-c", "bundle")];

    /// production: p1 (1s), p2 (3s), p3 (5s, current); staging: s1 (2s), s2 (4s), s3 (6s, current).
    fn history() -> (MemoryStore, Target, Vec<CommitResponse>) {
        let store = MemoryStore::new();
        let t = testing::target("demo-app");
        for f in [A, B, C] {
            testing::upload(&store, &t, &f);
        }
        let mut out = Vec::new();
        for (i, (files, channel)) in
            [(A, "production"), (A, "staging"), (B, "production"), (B, "staging"), (C, "production"), (C, "staging")]
                .into_iter()
                .enumerate()
        {
            let ms = (i as u64 + 1) * 1_000;
            let body = testing::manifest(&t, &files, ms, channel);
            let c = pollster::block_on(service::commit(
                &store,
                &t,
                testing::commit_request(body, channel),
                &testing::ctx(ms),
            ));
            out.push(c.unwrap());
        }
        (store, t, out)
    }

    fn installed_from(r: Result<ReleaseResponse, ApiError>) -> CommitResponse {
        match r {
            Ok(ReleaseResponse::Installed(c)) => c,
            other => panic!("expected an install, got {other:?}"),
        }
    }

    #[test]
    fn rollback_previous_walks_back_its_own_channel_only() {
        let (store, t, h) = history();
        let (p1, p2) = (&h[0], &h[2]);
        let rb = |now| pollster::block_on(rollback(&store, &t, RollbackRequest::default(), &testing::ctx(now)));
        let r1 = installed_from(rb(10_000));
        assert_eq!(r1.republished_from.as_deref(), Some(p2.id.as_str()), "not staging's newer s2/s3");
        assert_eq!(r1.channel, "production");
        let r2 = installed_from(rb(11_000));
        assert_eq!(r2.republished_from.as_deref(), Some(p1.id.as_str()), "repeated rollbacks walk back");
        assert_eq!(rb(12_000).unwrap_err().status, 422, "nothing before p1");
        // Staging untouched.
        let s = pollster::block_on(current(&store, &t, "staging")).unwrap().unwrap();
        assert_eq!(s.id, h[5].id);
    }

    #[test]
    fn delete_current_promotes_what_its_channel_served_before() {
        let (store, t, h) = history();
        let d = pollster::block_on(service::delete_update(&store, &t, &h[4].id, &testing::ctx(10_000))).unwrap();
        let p = d.promoted.unwrap();
        assert_eq!(
            p.republished_from.as_deref(),
            Some(h[2].id.as_str()),
            "p2, not p1 (older) nor s3 (newer, other channel)"
        );
        assert_eq!(p.channel, "production");
        // Deleting a non-current update of another channel promotes nothing.
        let d = pollster::block_on(service::delete_update(&store, &t, &h[3].id, &testing::ctx(11_000))).unwrap();
        assert!(d.promoted.is_none());
    }

    #[test]
    fn rollback_to_embedded_and_to_an_update_id() {
        let (store, t, h) = history();
        let req =
            RollbackRequest { to: Some("embedded".into()), channel: Some("staging".into()), ..Default::default() };
        let e = installed_from(pollster::block_on(rollback(&store, &t, req, &testing::ctx(10_000))));
        assert_eq!((e.kind, e.channel.as_str()), (RecordKind::RollBackToEmbedded, "staging"));
        let req =
            RollbackRequest { to: Some(h[1].id.to_uppercase()), channel: Some("staging".into()), ..Default::default() };
        let r = installed_from(pollster::block_on(rollback(&store, &t, req, &testing::ctx(11_000))));
        assert_eq!(r.republished_from.as_deref(), Some(h[1].id.as_str()));
        let req = RollbackRequest { to: Some(e.id.clone()), ..Default::default() };
        assert_eq!(pollster::block_on(rollback(&store, &t, req, &testing::ctx(12_000))).unwrap_err().status, 422);
    }

    #[test]
    fn promote_republishes_onto_the_target_channel_with_its_metadata() {
        let (store, t, h) = history();
        let req = PromoteRequest {
            from_channel: Some("staging".into()),
            to_channel: "production".into(),
            ..Default::default()
        };
        let p = installed_from(pollster::block_on(promote(&store, &t, req, &testing::ctx(10_000))));
        assert_eq!((p.republished_from.as_deref(), p.channel.as_str()), (Some(h[5].id.as_str()), "production"));
        let served = pollster::block_on(current(&store, &t, "production")).unwrap().unwrap();
        let m: manifest::Manifest = serde_json::from_str(&served.body).unwrap();
        assert_eq!(m.metadata.get("channel").map(String::as_str), Some("production"));
        assert_eq!(m.id, p.id);
        let same =
            PromoteRequest { update_id: Some(h[4].id.clone()), to_channel: "production".into(), ..Default::default() };
        assert_eq!(pollster::block_on(promote(&store, &t, same, &testing::ctx(11_000))).unwrap_err().status, 400);
    }

    /// The rollback scope must not be able to install new bytes: a signed body is accepted only
    /// when it is exactly what the server builds from the stored record.
    #[test]
    fn signed_release_accepts_only_the_body_the_server_builds() {
        let (store, t, h) = history();
        let before = store.keys();
        let prepare =
            RollbackRequest { signed: SignedBody { prepare_only: true, ..Default::default() }, ..Default::default() };
        let to_sign = match pollster::block_on(rollback(&store, &t, prepare, &testing::ctx(10_000))).unwrap() {
            ReleaseResponse::ToSign(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(store.keys(), before, "prepareOnly writes nothing");
        assert_eq!(to_sign.republished_from.as_deref(), Some(h[2].id.as_str()));
        let sig = "c2lnbmF0dXJl".to_string();
        let send = |body: String, now| {
            let req = RollbackRequest {
                expected_current: Some(h[4].id.clone()),
                signed: SignedBody {
                    body: Some(body),
                    signature: Some(sig.clone()),
                    key_id: Some("main".into()),
                    prepare_only: false,
                },
                ..Default::default()
            };
            pollster::block_on(rollback(&store, &t, req, &testing::ctx(now)))
        };
        // A body naming other bytes (another update's launch asset) is refused.
        let tampered = to_sign.body.replace(
            &crate::protocol::hash::Digests::of(b"bundle-b").sha256_base64url(),
            &crate::protocol::hash::Digests::of(b"bundle-c").sha256_base64url(),
        );
        assert_ne!(tampered, to_sign.body);
        assert_eq!(send(tampered, 10_500).unwrap_err().status, 422);
        let mut extra: serde_json::Value = serde_json::from_str(&to_sign.body).unwrap();
        extra["extra"]["injected"] = serde_json::json!(true);
        assert_eq!(send(extra.to_string(), 10_500).unwrap_err().status, 422);
        assert_eq!(store.keys(), before);
        let done = installed_from(send(to_sign.body.clone(), 10_500));
        assert!(done.signed);
        let served = pollster::block_on(current(&store, &t, "production")).unwrap().unwrap();
        assert_eq!((served.body, served.signature), (to_sign.body, Some(sig.clone())));
    }
}
