//! Staged rollouts, halts, reverts and resumes. All of it runs inside the app's writer and
//! changes only the channel pointer (and, for a revert, installs a republish of the control), so
//! every decision made from the pointer holds until the write lands; the pointer moves with a
//! compare-and-swap as every install does. A rollout only ever moves the channel between two
//! updates already published on it (the rollout update and its control), and every body the
//! channel serves is built by the server; a publisher who keeps the key signs the revert body at
//! publish time and the server stores that signature only if the body is byte for byte the one
//! it builds (`revert_record`).

use crate::check::DEFAULT_CHANNEL;
use crate::deploy::api::{CommitRequest, CommitResponse, ReleaseResponse, RollbackRequest, SignedBody, ToSign};
use crate::deploy::release::{self, Source};
use crate::deploy::service::{self, get_record, install_with, latest_created, next_created_ms, Ctx, Expect};
use crate::error::ApiError;
use crate::protocol::time::Timestamp;
use crate::protocol::{hash, id, time};
use crate::storage::layout::Target;
use crate::storage::record::{RecordKind, UpdateRecord};
use crate::storage::rollout::{Halted, Revert, Rollout};
use crate::storage::store::{Condition, ObjectStore, PutOptions};
use crate::validate;
use serde::{Deserialize, Serialize};

/// `POST /api/rollout/:slug/:platform/:runtimeVersion` (scope `rollback`): exactly one of
/// `percentage` (100 completes the rollout), `revert`, `halt`, `resume`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Grow the rollout to this percentage (it never shrinks; 100 completes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<u8>,
    /// End the rollout: every device goes back to the control update (republished).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revert: bool,
    /// Halt what the channel serves (`expectedCurrent`, when given), rollout or not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub halt: bool,
    /// Serve the halted update again (republished; `prepareOnly`/`body`/`signature` as rollback).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resume: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The update id the caller saw served; 409 when the channel serves something else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_current: Option<String>,
    /// Resume only, as [`SignedBody`] on a rollback (spelled out: `flatten` costs wasm size).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prepare_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// What a channel serves, for `health`, the dashboard and `rollout` answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelState {
    pub channel: String,
    /// The pointer's update (`None`: nothing published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_kind: Option<RecordKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<Halted>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutState {
    pub update_id: String,
    pub percentage: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_update_id: Option<String>,
}

/// What a [`halt`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HaltResult {
    /// The update was served and now the revert is.
    Halted,
    /// The channel already serves this update's revert: nothing changed.
    AlreadyHalted,
    /// The channel does not serve this update (any more): nothing changed.
    NotServing,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HaltOutcome {
    pub result: HaltResult,
    pub update_id: String,
    /// What the channel serves after the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<String>,
    /// The revert installed (only when `result` is `halted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<CommitResponse>,
}

/// What a rollout change did. Over HTTP the inner value is the body; this tagged form only
/// travels between the Worker and the app's writer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutOutcome {
    /// The rollout's percentage now (100: completed, the update is the plain latest).
    Moved(RolloutState),
    Halted(Box<HaltOutcome>),
    Resumed(ReleaseResponse),
}

/// The largest reason stored with a halt.
const MAX_REASON_CHARS: usize = 200;

/// The state of `channel` (one read of its pointer).
pub async fn channel_state<S: ObjectStore>(store: &S, t: &Target, channel: &str) -> Result<ChannelState, ApiError> {
    let channel = validate::channel(channel)?;
    let pointer = service::current(store, t, channel).await?;
    Ok(state_of(channel, pointer.as_ref()))
}

fn state_of(channel: &str, p: Option<&UpdateRecord>) -> ChannelState {
    ChannelState {
        channel: channel.to_string(),
        serving: p.map(|p| p.id.clone()),
        serving_kind: p.map(|p| p.kind),
        rollout: p.and_then(|p| {
            let r = p.rollout.as_ref()?;
            Some(RolloutState {
                update_id: p.id.clone(),
                percentage: r.percentage,
                control_update_id: r.control.as_ref().map(|c| c.id.clone()),
            })
        }),
        halted: p.and_then(|p| p.halted.as_deref().cloned()),
    }
}

/// The channel pointer with the version it was read at.
async fn read_pointer<S: ObjectStore>(
    store: &S,
    t: &Target,
    channel: &str,
) -> Result<Option<(String, UpdateRecord)>, ApiError> {
    match store.get(&t.channel_key(channel)).await? {
        Some((meta, bytes)) => Ok(Some((meta.etag, UpdateRecord::from_json(&bytes)?))),
        None => Ok(None),
    }
}

/// Rewrites the pointer in place (same update, new rollout state), only over the version read.
async fn rewrite_pointer<S: ObjectStore>(
    store: &S,
    t: &Target,
    etag: String,
    pointer: &UpdateRecord,
) -> Result<(), ApiError> {
    let opts = PutOptions {
        content_type: Some("application/json".into()),
        custom: service::record_metadata(pointer),
        condition: Condition::IfEtag(etag),
        ..Default::default()
    };
    match store.put(&t.channel_key(&pointer.channel), pointer.to_json().into_bytes(), opts).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::conflict("the channel changed while the rollout was being updated; run it again")),
    }
}

fn check_reason(reason: &str) -> Result<String, ApiError> {
    if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "reason must be at most {MAX_REASON_CHARS} characters without control characters"
        )));
    }
    Ok(reason.to_string())
}

/// Halts `update_id` on `channel`: the channel serves what it served before `update_id` again,
/// republished (new id, createdAt newer than the halted update; the publisher's pre-signed revert
/// when it is stored and still applicable), or rollBackToEmbedded when nothing came before.
/// Re-checks here, in the writer, that `update_id` is what the channel serves (as latest or as a
/// rollout); answers `notServing` or `alreadyHalted` (not errors) otherwise. Idempotent.
pub async fn halt<S: ObjectStore>(
    store: &S,
    t: &Target,
    channel: &str,
    update_id: &str,
    reason: &str,
    ctx: &Ctx<'_>,
) -> Result<HaltOutcome, ApiError> {
    let channel = validate::channel(channel)?;
    let update_id =
        id::normalize_uuid(update_id).ok_or_else(|| ApiError::bad_request("updateId must be an update id"))?;
    let reason = check_reason(reason)?;
    let pointer = service::current(store, t, channel).await?;
    let outcome = |result, serving| HaltOutcome { result, update_id: update_id.clone(), serving, revert: None };
    let Some(p) = pointer else { return Ok(outcome(HaltResult::NotServing, None)) };
    if p.halted.as_ref().is_some_and(|h| h.update_id == update_id) {
        return Ok(outcome(HaltResult::AlreadyHalted, Some(p.id)));
    }
    if p.id != update_id {
        return Ok(outcome(HaltResult::NotServing, Some(p.id)));
    }
    let halted = get_record(store, t, &update_id).await?;
    let control = match (&p.rollout, &halted.revert) {
        (Some(r), _) => r.control.as_deref().cloned(),
        (None, Some(rev)) => match &rev.control_update_id {
            Some(c) => Some(get_record(store, t, c).await?),
            None => None,
        },
        // Published before reverts were recorded: follow the channel's served log.
        (None, None) => release::previous_update(store, t, &halted).await?,
    }
    .filter(|c| c.kind == RecordKind::Update);
    let mut record = match presigned(store, t, channel, &halted, control.as_ref(), ctx).await? {
        Some(r) => r,
        None => {
            let created_ms = next_created_ms(ctx.now_ms, latest_created(store, t).await?);
            revert_record(t, channel, control.as_ref(), id::uuid_v4((ctx.random)()), created_ms, ctx)?
        }
    };
    release::verify_still_stored(store, t, &record).await?;
    record.message = Some(format!("revert of {update_id}: {reason}"));
    let mark = Halted {
        update_id: update_id.clone(),
        at: Timestamp::from_millis(ctx.now_ms),
        reason,
        control_update_id: control.map(|c| c.id),
    };
    let installed = install_with(store, t, record, &Expect::Current(Some(update_id.clone())), None, Some(mark)).await?;
    Ok(HaltOutcome {
        result: HaltResult::Halted,
        update_id,
        serving: Some(installed.id.clone()),
        revert: Some(installed),
    })
}

/// The publisher's pre-signed revert of `halted`, when it has one and it can still be served:
/// its createdAt (the halted update's + 1 ms) must still be the newest in the runtime and its id
/// unused (a second halt after a resume needs a fresh, unsigned revert).
async fn presigned<S: ObjectStore>(
    store: &S,
    t: &Target,
    channel: &str,
    halted: &UpdateRecord,
    control: Option<&UpdateRecord>,
    ctx: &Ctx<'_>,
) -> Result<Option<UpdateRecord>, ApiError> {
    let Some(rev) = halted.revert.as_deref() else { return Ok(None) };
    let (Some(body), Some(signature)) = (&rev.body, &rev.signature) else { return Ok(None) };
    let created_ms = halted.created_at.millis() + 1;
    if latest_created(store, t).await?.is_some_and(|l| l >= created_ms) {
        return Ok(None);
    }
    let revert_id = revert_id(&halted.id);
    if store.head(&t.record_key(&revert_id)).await?.is_some() {
        return Ok(None);
    }
    let mut record = revert_record(t, channel, control, revert_id, created_ms, ctx)?;
    if record.body != *body {
        // Checked at commit; a control that changed since (deleted, re-served) makes it stale.
        return Ok(None);
    }
    record.signature = Some(signature.clone());
    record.key_id = rev.key_id.clone();
    Ok(Some(record))
}

/// The id of the revert of `update_id`, fixed so the publisher can sign the body in advance.
pub fn revert_id(update_id: &str) -> String {
    let seed = hash::sha256(format!("revert:{update_id}").as_bytes());
    id::uuid_v4(seed[..16].try_into().expect("16 bytes"))
}

/// The revert record: `control` republished on `channel` with `id` and `created_ms`, or a
/// rollBackToEmbedded directive with that commitTime when there is no control. Deterministic,
/// so the server can compare a publisher-signed body with the one it builds.
pub fn revert_record(
    t: &Target,
    channel: &str,
    control: Option<&UpdateRecord>,
    id: String,
    created_ms: u64,
    ctx: &Ctx<'_>,
) -> Result<UpdateRecord, ApiError> {
    let source = match control {
        Some(c) if c.kind == RecordKind::Update => Source::Record(Box::new(c.clone())),
        _ => Source::Embedded,
    };
    release::build(t, channel, &source, id, created_ms, ctx)
}

/// Commit-time rollout work, inside the writer: records what a halt of `record` goes back to
/// (the channel's current update), checks and keeps the publisher's pre-signed revert, and
/// returns the rollout the pointer starts with.
pub(crate) async fn on_commit<S: ObjectStore>(
    store: &S,
    t: &Target,
    record: &mut UpdateRecord,
    req: &CommitRequest,
    ctx: &Ctx<'_>,
) -> Result<Option<Rollout>, ApiError> {
    let percentage = match req.rollout_percentage {
        None | Some(100) => None,
        Some(p @ 1..=99) => Some(p),
        Some(p) => return Err(ApiError::bad_request(format!("rolloutPercentage must be 1-100, got {p}"))),
    };
    if record.kind != RecordKind::Update {
        if percentage.is_some() || req.revert_body.is_some() {
            return Err(ApiError::bad_request("a rollBackToEmbedded directive cannot be rolled out or reverted"));
        }
        return Ok(None);
    }
    let control = service::current(store, t, &record.channel).await?.map(UpdateRecord::plain);
    let mut revert = Revert {
        control_update_id: control.as_ref().filter(|c| c.kind == RecordKind::Update).map(|c| c.id.clone()),
        ..Default::default()
    };
    match (&req.revert_body, &req.revert_signature) {
        (Some(body), Some(signature)) => {
            service::check_signature(Some(signature), req.key_id.as_deref())?;
            let want = revert_record(
                t,
                &record.channel,
                control.as_ref(),
                revert_id(&record.id),
                record.created_at.millis() + 1,
                ctx,
            )?;
            if *body != want.body {
                return Err(ApiError::conflict(
                    "revertBody is not the revert the server builds from what the channel serves now (it changed since you prepared it?); publish again",
                ));
            }
            revert.body = Some(body.clone());
            revert.signature = Some(signature.clone());
            revert.key_id = req.key_id.clone();
        }
        (None, None) => {}
        _ => return Err(ApiError::bad_request("send revertBody and revertSignature together")),
    }
    record.revert = Some(Box::new(revert));
    Ok(percentage.map(|percentage| Rollout { percentage, control: control.map(Box::new) }))
}

/// `prepareRevert` on a commit: the revert body the publisher must sign for this manifest (read
/// only; the commit re-checks it inside the writer).
pub async fn revert_to_sign<S: ObjectStore>(
    store: &S,
    t: &Target,
    req: &CommitRequest,
    ctx: &Ctx<'_>,
) -> Result<ToSign, ApiError> {
    let channel = validate::channel(req.channel.as_deref().unwrap_or(DEFAULT_CHANNEL))?;
    // The manifest type every commit parses anyway (one more struct parser costs wasm size).
    let i: crate::protocol::manifest::Manifest = serde_json::from_str(&req.manifest)
        .map_err(|e| ApiError::bad_request(format!("prepareRevert needs the manifest: {e}")))?;
    let update_id = id::normalize_uuid(&i.id).ok_or_else(|| ApiError::bad_request("manifest id is not a UUID"))?;
    let created_ms =
        time::parse_millis(&i.created_at).ok_or_else(|| ApiError::bad_request("manifest has an invalid createdAt"))?;
    let control = service::current(store, t, channel).await?.map(UpdateRecord::plain);
    let r = revert_record(t, channel, control.as_ref(), revert_id(&update_id), created_ms + 1, ctx)?;
    Ok(ToSign {
        body: r.body,
        kind: r.kind,
        channel: channel.to_string(),
        republished_from: r.republished_from,
        current: control.map(|c| c.id),
    })
}

/// Applies a rollout change (inside the writer).
pub async fn change<S: ObjectStore>(
    store: &S,
    t: &Target,
    req: RolloutRequest,
    ctx: &Ctx<'_>,
) -> Result<RolloutOutcome, ApiError> {
    let channel = validate::channel(req.channel.as_deref().unwrap_or(DEFAULT_CHANNEL))?.to_string();
    let actions = [req.percentage.is_some(), req.revert, req.halt, req.resume];
    if actions.iter().filter(|a| **a).count() != 1 {
        return Err(ApiError::bad_request("send exactly one of percentage (100 completes), revert, halt or resume"));
    }
    let Some((etag, mut p)) = read_pointer(store, t, &channel).await? else {
        return Err(ApiError::not_found(format!("nothing is published on channel {channel:?}")));
    };
    if let Some(expected) = &req.expected_current {
        let expected = id::normalize_uuid(expected)
            .ok_or_else(|| ApiError::bad_request("expectedCurrent must be an update id"))?;
        if expected != p.id {
            return Err(ApiError::conflict(format!(
                "channel {channel:?} serves {} now, not {expected}; look again and retry",
                p.id
            )));
        }
    }
    if req.halt || req.revert {
        if req.revert && p.rollout.is_none() {
            return Err(ApiError::unprocessable(format!(
                "no rollout is in progress on channel {channel:?}; use halt, or rollback"
            )));
        }
        // What the channel serves (and, with expectedCurrent, what the caller saw: checked above).
        let update_id = p.id.clone();
        let default = if req.revert { "rollout reverted" } else { "halted by hand" };
        let reason = req.reason.as_deref().unwrap_or(default);
        return Ok(RolloutOutcome::Halted(Box::new(halt(store, t, &channel, &update_id, reason, ctx).await?)));
    }
    if req.resume {
        let Some(h) = p.halted.as_deref() else {
            return Err(ApiError::unprocessable(format!("nothing is halted on channel {channel:?}")));
        };
        let rb = RollbackRequest {
            channel: Some(channel.clone()),
            to: Some(h.update_id.clone()),
            expected_current: Some(p.id.clone()),
            message: Some(format!("resume of {}", h.update_id)),
            signed: SignedBody {
                prepare_only: req.prepare_only,
                body: req.body,
                signature: req.signature,
                key_id: req.key_id,
            },
        };
        return Ok(RolloutOutcome::Resumed(release::rollback(store, t, rb, ctx).await?));
    }
    let Some(rollout) = p.rollout.as_deref_mut() else {
        return Err(ApiError::unprocessable(format!(
            "no rollout is in progress on channel {channel:?} (publish with --rollout-percentage to start one)"
        )));
    };
    match req.percentage {
        Some(m) if m < rollout.percentage || m > 100 => {
            return Err(ApiError::unprocessable(format!(
                "percentage must be between {} (the rollout's current percentage: it only grows, so devices keep the update) and 100; use revert to stop it",
                rollout.percentage
            )))
        }
        Some(m) if m < 100 => rollout.percentage = m,
        // 100 %: the update becomes the channel's plain latest.
        _ => p.rollout = None,
    }
    rewrite_pointer(store, t, etag, &p).await?;
    Ok(RolloutOutcome::Moved(RolloutState {
        update_id: p.id.clone(),
        percentage: p.rollout.as_ref().map_or(100, |r| r.percentage),
        control_update_id: p.rollout.and_then(|r| r.control.map(|c| c.id)),
    }))
}

#[cfg(test)]
mod tests;
