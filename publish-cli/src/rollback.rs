//! `rollback` and `promote`. The server republishes what it already stores (new id and
//! createdAt, same files, nothing uploaded), so a token with only the `rollback` scope can move a
//! channel between states it has served but can never bring new bytes. The CLI only picks the
//! platforms, says which update it saw current (`expectedCurrent`: the server answers 409 when a
//! publish landed since) and, with --private-key, signs the exact body the server built.
//!
//! Every platform is prepared first (`prepareOnly`: the server answers the body, writes nothing),
//! then installed with that body sent back, so a platform that cannot move fails the command
//! before any channel changes, what is installed is byte for byte what was prepared (and signed),
//! and a publish landing in between makes the install fail with 409 instead of being overwritten.

use crate::cli::{PromoteArgs, RollbackArgs, RuntimeArgs};
use crate::commit::{Body, Committed};
use crate::printer::{MovedList, MovedReport, Printer};
use crate::sign::Signer;
use crate::upload::{self, label, Client};
use crate::verify;
use anyhow::{anyhow, bail, Context, Result};
use expo_ota::check::DEFAULT_CHANNEL;
use expo_ota::deploy::api::{
    CommitResponse, ListResponse, PromoteRequest, RollbackRequest, RuntimeUpdates, SignedBody, ToSign, UpdateSummary,
};
use expo_ota::protocol::multipart;
use expo_ota::storage::layout::Target;
use expo_ota::storage::record::RecordKind;
use expo_ota::validate::Platform;
use serde::de::DeserializeOwned;

/// A rollback or promote of one platform, without `expectedCurrent` and the signed body (those
/// are per platform and per phase).
#[derive(Clone, Debug)]
pub enum Op {
    Rollback(RollbackRequest),
    Promote(PromoteRequest),
}

impl Op {
    /// The channel whose pointer moves.
    fn channel(&self) -> &str {
        match self {
            Op::Rollback(r) => r.channel.as_deref().unwrap_or(DEFAULT_CHANNEL),
            Op::Promote(p) => &p.to_channel,
        }
    }

    fn verb(&self) -> &'static str {
        match self {
            Op::Rollback(_) => "roll back",
            Op::Promote(_) => "promote",
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        client: &Client,
        t: &Target,
        expected_current: Option<String>,
        signed: SignedBody,
    ) -> Result<T> {
        match self {
            Op::Rollback(r) => client.rollback(t, &RollbackRequest { expected_current, signed, ..r.clone() }).await,
            Op::Promote(p) => client.promote(t, &PromoteRequest { expected_current, signed, ..p.clone() }).await,
        }
    }
}

/// One platform to act on, with the update the CLI saw its channel serve (`None`: unknown, or
/// nothing, or a directive seen from a device's side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub target: Target,
    pub expected: Option<String>,
}

/// Which platforms to act on and what their channel serves now. With `read` the listing says
/// both; without it (403) every requested platform is a candidate and the current update is read
/// the way a device reads it (no token needed). `with_update`: only the platform holding it.
async fn candidates(
    client: &Client,
    rt: &RuntimeArgs,
    channel: &str,
    with_update: Option<&str>,
) -> Result<Vec<Candidate>> {
    let list = match client.list(&rt.slug).await {
        Ok(list) => list,
        Err(e) if upload::status_of(&e) == Some(403) => {
            let platforms = rt.platform.map_or(Platform::ALL.to_vec(), |p| vec![p]);
            let mut out = Vec::new();
            for platform in platforms {
                let target =
                    Target::parse(&rt.slug, platform.as_str(), &rt.runtime_version).map_err(|e| anyhow!(e.message))?;
                let expected = served_now(client, &target, channel).await?;
                out.push(Candidate { target, expected });
            }
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    let mut rts = runtimes(&list, rt.platform, &rt.runtime_version)?;
    if let Some(id) = with_update {
        // An update id belongs to one platform: without --platform, that one.
        rts.retain(|r| r.updates.iter().any(|u| u.id == id));
        if rts.is_empty() {
            bail!(
                "update {id} is not published for {} runtimeVersion {}{}",
                rt.slug,
                rt.runtime_version,
                on_platform(rt.platform)
            );
        }
    }
    rts.into_iter()
        .map(|r| {
            Ok(Candidate { target: target_of(&rt.slug, r)?, expected: current_in(r, channel).map(|u| u.id.clone()) })
        })
        .collect()
}

/// The update id a device on `channel` is served now, read as a protocol-1 device reads it.
/// `None` when the channel serves nothing or a rollBackToEmbedded directive (which has no id).
/// A check cache may answer the previous state for a moment; that only makes the server refuse
/// with 409, never accept a move the CLI did not see.
async fn served_now(client: &Client, t: &Target, channel: &str) -> Result<Option<String>> {
    let (ct, body) = client.client_manifest(t, &[("expo-channel-name", channel.to_string())]).await?;
    let parts = multipart::parse(&ct, &body)
        .map_err(|e| anyhow!("the manifest response of {} is not valid multipart/mixed: {e}", label(t)))?;
    let Some(m) = parts.iter().find(|p| p.name().as_deref() == Some("manifest")) else { return Ok(None) };
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    let m: Id = serde_json::from_slice(&m.body).with_context(|| format!("the manifest of {} has no id", label(t)))?;
    Ok(Some(m.id))
}

/// Prepares every candidate, then installs each prepared body (signed when `signer` is given)
/// and checks devices on the channel get exactly it. Unless `strict`, a candidate the server
/// answers 404 for (nothing there to act on) is skipped with a warning, as long as another moves.
pub async fn release(
    client: &Client,
    candidates: Vec<Candidate>,
    strict: bool,
    op: &Op,
    signer: Option<&Signer>,
    out: &Printer,
) -> Result<Vec<MovedReport>> {
    let mut prepared = Vec::new();
    let mut skipped = Vec::new();
    for c in candidates {
        let prepare = SignedBody { prepare_only: true, ..Default::default() };
        match op.send::<ToSign>(client, &c.target, c.expected.clone(), prepare).await {
            Ok(body) => prepared.push((c, body)),
            Err(e) if !strict && upload::status_of(&e) == Some(404) => skipped.push(format!("{e:#}")),
            Err(e) => return Err(e),
        }
    }
    if prepared.is_empty() {
        bail!("nothing to {}: {}", op.verb(), skipped.join("; "));
    }
    for s in &skipped {
        out.warn(format!("skipped {s}"));
    }
    let mut moved: Vec<MovedReport> = Vec::new();
    for (c, to_sign) in prepared {
        let committed = install(client, &c, to_sign, op, signer).await.map_err(|e| {
            if moved.is_empty() {
                return e;
            }
            let done: Vec<String> = moved.iter().map(|m| format!("{} now serves {}", m.platform, m.id)).collect();
            e.context(format!("{} failed after this already moved: {}", c.target.platform, done.join(", ")))
        })?;
        moved.push(report(&committed.response));
    }
    Ok(moved)
}

/// Installs one prepared body with the same `expectedCurrent` it was prepared against.
async fn install(
    client: &Client,
    c: &Candidate,
    to_sign: ToSign,
    op: &Op,
    signer: Option<&Signer>,
) -> Result<Committed> {
    let signature = signer.map(|s| s.sign(to_sign.body.as_bytes()));
    let signed = SignedBody {
        prepare_only: false,
        body: Some(to_sign.body.clone()),
        signature: signature.as_ref().map(|s| s.sig.clone()),
        key_id: signature.as_ref().map(|s| s.key_id.clone()),
    };
    let response: CommitResponse = op.send(client, &c.target, c.expected.clone(), signed).await.map_err(|e| {
        match upload::status_of(&e) {
            Some(409) => e.context(format!(
                "channel {:?} of {} changed after this command read it; nothing was installed there, run the command again",
                op.channel(),
                label(&c.target)
            )),
            Some(422) => e.context(format!(
                "what channel {:?} of {} would get changed after this command prepared it; nothing was installed there",
                op.channel(),
                label(&c.target)
            )),
            _ => e,
        }
    })?;
    let body = match to_sign.kind {
        RecordKind::Update => Body::Manifest(to_sign.body),
        RecordKind::RollBackToEmbedded => Body::Directive(to_sign.body),
    };
    let committed = Committed { response, body, signature };
    verify::served(client, &c.target, Some(op.channel()), &committed).await?;
    Ok(committed)
}

/// What a channel serves after a release, as the server reported it.
pub fn report(c: &CommitResponse) -> MovedReport {
    MovedReport { republished_from: c.republished_from.clone(), signed: c.signed, ..MovedReport::from_server(c) }
}

fn print(slug: String, moved: Vec<MovedReport>, out: &Printer) {
    for m in &moved {
        out.line(m.line());
    }
    if out.json() {
        out.emit(&MovedList { slug, updates: moved });
    }
}

pub async fn rollback(args: RollbackArgs, out: &Printer) -> Result<()> {
    let token = crate::auth::require(args.server.auth_token.as_deref())?;
    let signer = crate::sign::from_args(&args.signing)?;
    let client = Client::new(&args.server.server, token)?;
    let to = match (&args.to, args.to_embedded) {
        (_, true) => Some("embedded".to_string()),
        (to, false) => to.clone(),
    };
    let cands = candidates(&client, &args.runtime, &args.channel, args.to.as_deref()).await?;
    let op = Op::Rollback(RollbackRequest {
        channel: Some(args.channel.clone()),
        to,
        message: args.message.clone(),
        ..Default::default()
    });
    let strict = args.runtime.platform.is_some();
    let moved = release(&client, cands, strict, &op, signer.as_ref(), out).await?;
    print(args.runtime.slug, moved, out);
    Ok(())
}

pub async fn promote(args: PromoteArgs, out: &Printer) -> Result<()> {
    if args.from == args.to {
        bail!("--from and --to are both {:?}", args.from);
    }
    let token = crate::auth::require(args.server.auth_token.as_deref())?;
    let signer = crate::sign::from_args(&args.signing)?;
    let client = Client::new(&args.server.server, token)?;
    let cands = candidates(&client, &args.runtime, &args.to, None).await?;
    let op = Op::Promote(PromoteRequest {
        from_channel: Some(args.from.clone()),
        to_channel: args.to.clone(),
        message: args.message.clone(),
        ..Default::default()
    });
    let strict = args.runtime.platform.is_some();
    let moved = release(&client, cands, strict, &op, signer.as_ref(), out).await?;
    print(args.runtime.slug, moved, out);
    Ok(())
}

/// The listed runtimes matching `runtime_version` (and `only`, when given).
fn runtimes<'a>(
    list: &'a ListResponse,
    only: Option<Platform>,
    runtime_version: &str,
) -> Result<Vec<&'a RuntimeUpdates>> {
    let rts: Vec<_> = list
        .runtimes
        .iter()
        .filter(|rt| rt.runtime_version == runtime_version && only.is_none_or(|p| rt.platform == p.as_str()))
        .collect();
    if rts.is_empty() {
        bail!("nothing is published for {} runtimeVersion {runtime_version}{}", list.slug, on_platform(only));
    }
    Ok(rts)
}

fn on_platform(p: Option<Platform>) -> String {
    p.map(|p| format!(" on {p}")).unwrap_or_default()
}

fn target_of(slug: &str, rt: &RuntimeUpdates) -> Result<Target> {
    let platform = Platform::parse(&rt.platform).map_err(|e| anyhow!("server listed {}", e.message))?;
    Target::parse(slug, platform.as_str(), &rt.runtime_version).map_err(|e| anyhow!("server listed {}", e.message))
}

/// What `channel` serves now.
fn current_in<'a>(rt: &'a RuntimeUpdates, channel: &str) -> Option<&'a UpdateSummary> {
    rt.updates.iter().find(|u| u.current && u.channel == channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(id: &str, channel: &str, kind: RecordKind, current: bool) -> UpdateSummary {
        UpdateSummary {
            id: id.into(),
            created_at: Default::default(),
            channel: channel.into(),
            kind,
            current,
            signed: false,
            git_commit: None,
            republished_from: None,
            launch_asset_bytes: 0,
            file_count: 0,
            total_bytes: 0,
            message: None,
        }
    }

    #[test]
    fn current_in_picks_the_channels_current_of_any_kind() {
        use RecordKind::*;
        let rt = RuntimeUpdates {
            platform: "ios".into(),
            runtime_version: "1".into(),
            updates: vec![
                summary("s2", "staging", Update, true),
                summary("e", "production", RollBackToEmbedded, true),
                summary("p1", "production", Update, false),
            ],
        };
        assert_eq!(current_in(&rt, "production").unwrap().id, "e", "a directive is what devices get");
        assert_eq!(current_in(&rt, "staging").unwrap().id, "s2");
        assert!(current_in(&rt, "beta").is_none());
    }

    #[test]
    fn runtime_selection() {
        let rt = |p: &str, rv: &str| RuntimeUpdates { platform: p.into(), runtime_version: rv.into(), updates: vec![] };
        let list =
            ListResponse { slug: "a".into(), runtimes: vec![rt("ios", "1"), rt("android", "1"), rt("android", "2")] };
        let names = |v: Vec<&RuntimeUpdates>| v.iter().map(|r| r.platform.clone()).collect::<Vec<_>>();
        assert_eq!(names(runtimes(&list, None, "1").unwrap()), ["ios", "android"]);
        assert_eq!(names(runtimes(&list, Some(Platform::Android), "1").unwrap()), ["android"]);
        assert_eq!(
            runtimes(&list, Some(Platform::Ios), "2").unwrap_err().to_string(),
            "nothing is published for a runtimeVersion 2 on ios"
        );
    }

    #[test]
    fn op_channel_is_the_one_that_moves() {
        let rb = Op::Rollback(RollbackRequest::default());
        assert_eq!((rb.channel(), rb.verb()), ("production", "roll back"));
        let pr = Op::Promote(PromoteRequest {
            from_channel: Some("staging".into()),
            to_channel: "beta".into(),
            ..Default::default()
        });
        assert_eq!((pr.channel(), pr.verb()), ("beta", "promote"));
    }

    #[test]
    fn report_keeps_the_servers_provenance_and_signature() {
        let c = CommitResponse {
            id: "n".into(),
            created_at: Default::default(),
            kind: RecordKind::Update,
            slug: "a".into(),
            platform: "ios".into(),
            runtime_version: "1".into(),
            channel: "production".into(),
            launch_asset_bytes: 0,
            file_count: 0,
            total_bytes: 0,
            signed: true,
            republished_from: Some("o".into()),
        };
        let r = report(&c);
        assert_eq!((r.republished_from.as_deref(), r.signed, r.id.as_str()), (Some("o"), true, "n"));
    }
}
