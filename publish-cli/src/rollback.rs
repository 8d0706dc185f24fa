//! `rollback` and `promote`. Both republish a stored update onto a channel: devices only take a
//! strictly newer update, so going back means serving the old files again under a new id and
//! createdAt. Nothing is re-uploaded; with --private-key the new body is signed here.
//! `delete --update-id` uses the same path to keep its channel signed.

use crate::cli::{PromoteArgs, RollbackArgs};
use crate::commit::{self, Body, Meta};
use crate::printer::{MovedList, MovedReport, Printer};
use crate::sign::Signer;
use crate::upload::{label, Client};
use crate::verify;
use anyhow::{anyhow, bail, Context, Result};
use expo_ota::deploy::api::{ListResponse, PrepareResponse, RuntimeUpdates, UpdateSummary};
use expo_ota::protocol::manifest::{self, Directive, Manifest};
use expo_ota::storage::layout::Target;
use expo_ota::storage::record::{RecordKind, UpdateRecord};
use expo_ota::validate::Platform;

/// What a channel should serve.
pub enum Source {
    /// A stored update (a rollBackToEmbedded record is installed as a fresh directive).
    Record(Box<UpdateRecord>),
    /// The update embedded in the app build.
    Embedded,
}

/// A source checked against the server: its manifest parsed and every file still stored.
struct Plan {
    target: Target,
    manifest: Option<Manifest>,
    republished_from: Option<String>,
    files: Vec<String>,
    prep: PrepareResponse,
}

async fn plan(client: &Client, target: Target, source: Source) -> Result<Plan> {
    let (manifest, republished_from, files) = match source {
        Source::Record(r) if r.kind == RecordKind::Update => {
            let m: Manifest =
                serde_json::from_str(&r.body).with_context(|| format!("update {} has an unreadable manifest", r.id))?;
            (Some(m), Some(r.id), r.files)
        }
        Source::Record(r) => (None, Some(r.id), Vec::new()),
        Source::Embedded => (None, None, Vec::new()),
    };
    // Also yields the asset base URL and the runtime's latest createdAt for the new body.
    let prep = client.prepare(&target, files.clone()).await?;
    if !prep.missing.is_empty() {
        bail!(
            "update {} of {} names {} file(s) the server no longer stores ({}); publish it again instead",
            republished_from.as_deref().unwrap_or("?"),
            label(&target),
            prep.missing.len(),
            prep.missing.join(", ")
        );
    }
    Ok(Plan { target, manifest, republished_from, files, prep })
}

/// Commits the planned body onto `channel`, then checks devices on that channel get it.
async fn install(
    client: &Client,
    p: Plan,
    channel: &str,
    signer: Option<&Signer>,
    message: String,
) -> Result<MovedReport> {
    let meta = Meta {
        channel: Some(channel.to_string()),
        message: Some(message),
        git_commit: None,
        republished_from: p.republished_from.clone(),
    };
    let c = commit::commit(client, &p.target, &p.files, p.prep, signer, &meta, |prep, created| {
        Ok(match &p.manifest {
            Some(m) => Body::Manifest(
                manifest::republish(m, commit::new_update_id()?, created, channel, &prep.asset_base_url).render(),
            ),
            None => Body::Directive(Directive::roll_back_to_embedded(created).render()),
        })
    })
    .await?;
    verify::served(client, &p.target, Some(channel), &c).await?;
    let r = c.response;
    Ok(MovedReport {
        platform: r.platform,
        runtime_version: r.runtime_version,
        channel: r.channel,
        id: r.id,
        created_at: r.created_at,
        kind: r.kind,
        republished_from: p.republished_from,
        signed: c.signature.is_some(),
    })
}

/// Makes `source` what `channel` of `target` serves (one platform).
pub async fn make_current(
    client: &Client,
    target: Target,
    channel: &str,
    source: Source,
    signer: Option<&Signer>,
    message: String,
) -> Result<MovedReport> {
    let p = plan(client, target, source).await?;
    install(client, p, channel, signer, message).await
}

pub async fn rollback(args: RollbackArgs, out: &Printer) -> Result<()> {
    let token = crate::auth::require(args.server.auth_token.as_deref())?;
    let signer = crate::sign::from_args(&args.signing)?;
    let client = Client::new(&args.server.server, token)?;
    let list = client.list(&args.runtime.slug).await?;
    let mut rts = runtimes(&list, args.runtime.platform, &args.runtime.runtime_version)?;
    if let Some(id) = &args.to {
        // An update id belongs to one platform: without --platform, that one.
        rts.retain(|rt| rt.updates.iter().any(|u| &u.id == id));
        if rts.is_empty() {
            bail!(
                "update {id} is not published for {} runtimeVersion {}{}",
                args.runtime.slug,
                args.runtime.runtime_version,
                on_platform(args.runtime.platform)
            );
        }
    }
    // Resolve every platform before committing any: all or nothing.
    let mut plans = Vec::new();
    for rt in rts {
        let target = target_of(&args.runtime.slug, rt)?;
        let (source, message) = if args.to_embedded {
            (Source::Embedded, "rollback to embedded".to_string())
        } else {
            let to = match &args.to {
                Some(id) => rt.updates.iter().find(|u| &u.id == id).expect("filtered above"),
                None => {
                    let current = current_in(rt, &args.channel).ok_or_else(|| {
                        anyhow!("nothing is current in channel {:?} for {}", args.channel, label(&target))
                    })?;
                    previous(rt, current).ok_or_else(|| {
                        anyhow!("channel {:?} of {} has no update before {}; use --to-embedded to roll back to the embedded update", args.channel, label(&target), current.id)
                    })?
                }
            };
            if to.kind != RecordKind::Update {
                bail!(
                    "{} of {} is a rollBackToEmbedded directive, not an update; use --to-embedded",
                    to.id,
                    label(&target)
                );
            }
            (Source::Record(Box::new(client.get_update(&target, &to.id).await?)), format!("rollback to {}", to.id))
        };
        plans.push((plan(&client, target, source).await?, args.message.clone().unwrap_or(message)));
    }
    let mut moved = Vec::new();
    for (p, message) in plans {
        let r = install(&client, p, &args.channel, signer.as_ref(), message).await?;
        out.line(r.line());
        moved.push(r);
    }
    if out.json() {
        out.emit(&MovedList { slug: args.runtime.slug, updates: moved });
    }
    Ok(())
}

pub async fn promote(args: PromoteArgs, out: &Printer) -> Result<()> {
    if args.from == args.to {
        bail!("--from and --to are both {:?}", args.from);
    }
    let token = crate::auth::require(args.server.auth_token.as_deref())?;
    let signer = crate::sign::from_args(&args.signing)?;
    let client = Client::new(&args.server.server, token)?;
    let list = client.list(&args.runtime.slug).await?;
    let mut plans = Vec::new();
    for rt in runtimes(&list, args.runtime.platform, &args.runtime.runtime_version)? {
        let target = target_of(&args.runtime.slug, rt)?;
        let from = current_in(rt, &args.from)
            .ok_or_else(|| anyhow!("nothing is current in channel {:?} for {}", args.from, label(&target)))?;
        let record = client.get_update(&target, &from.id).await?;
        plans.push(plan(&client, target, Source::Record(Box::new(record))).await?);
    }
    let mut moved = Vec::new();
    for p in plans {
        let r = install(&client, p, &args.to, signer.as_ref(), format!("promoted from {}", args.from)).await?;
        out.line(r.line());
        moved.push(r);
    }
    if out.json() {
        out.emit(&MovedList { slug: args.runtime.slug, updates: moved });
    }
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
    Ok(Target { slug: slug.to_string(), platform, runtime_version: rt.runtime_version.clone() })
}

/// What `channel` serves now.
pub fn current_in<'a>(rt: &'a RuntimeUpdates, channel: &str) -> Option<&'a UpdateSummary> {
    rt.updates.iter().find(|u| u.current && u.channel == channel)
}

/// The update to roll back to: the newest update of `current`'s channel published before the
/// update `current` is a copy of. Following `republishedFrom` first makes repeated rollbacks walk
/// further back instead of alternating between the last two updates.
pub fn previous<'a>(rt: &'a RuntimeUpdates, current: &UpdateSummary) -> Option<&'a UpdateSummary> {
    let at = origin_position(rt, current)?;
    rt.updates[at + 1..].iter().find(|u| u.channel == current.channel && u.kind == RecordKind::Update)
}

/// What the channel served before `doomed` (any kind, directives included): the server's rule
/// when it promotes on delete, so a keyed delete installs the same state, signed.
pub fn prior_state<'a>(rt: &'a RuntimeUpdates, doomed: &UpdateSummary) -> Option<&'a UpdateSummary> {
    let at = rt.updates.iter().position(|u| u.id == doomed.id)?;
    rt.updates[at + 1..].iter().find(|u| u.channel == doomed.channel)
}

/// Position (newest first) of the original publish behind `u`'s chain of republishes.
fn origin_position(rt: &RuntimeUpdates, u: &UpdateSummary) -> Option<usize> {
    let mut at = rt.updates.iter().position(|x| x.id == u.id)?;
    // Bounded: a chain cannot be longer than the history.
    for _ in 0..rt.updates.len() {
        let Some(from) = rt.updates[at].republished_from.as_deref() else { break };
        match rt.updates.iter().position(|x| x.id == from) {
            Some(p) if p > at => at = p,
            _ => break,
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn summary(id: &str, channel: &str, kind: RecordKind, current: bool) -> UpdateSummary {
        UpdateSummary {
            id: id.into(),
            created_at: String::new(),
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
    fn previous_skips_other_channels_and_directives() {
        use RecordKind::*;
        let rt = RuntimeUpdates {
            platform: "ios".into(),
            runtime_version: "1".into(),
            updates: vec![
                summary("s2", "staging", Update, true),
                summary("p3", "production", Update, true),
                summary("s1", "staging", Update, false),
                summary("e", "production", RollBackToEmbedded, false),
                summary("p2", "production", Update, false),
                summary("p1", "production", Update, false),
            ],
        };
        let cur = current_in(&rt, "production").unwrap();
        assert_eq!(cur.id, "p3");
        assert_eq!(previous(&rt, cur).unwrap().id, "p2");
        assert_eq!(previous(&rt, current_in(&rt, "staging").unwrap()).unwrap().id, "s1");
        assert!(previous(&rt, &rt.updates[2]).is_none(), "s1 is the oldest of staging");
        assert!(current_in(&rt, "beta").is_none());
    }

    #[test]
    fn repeated_rollbacks_walk_back() {
        use RecordKind::*;
        let republish = |id: &str, from: &str, current: bool| UpdateSummary {
            republished_from: Some(from.into()),
            ..summary(id, "production", Update, current)
        };
        // a, b, c published; rolled back once (b' from b): the next rollback goes to a, not c.
        let rt = RuntimeUpdates {
            platform: "ios".into(),
            runtime_version: "1".into(),
            updates: vec![
                republish("b2", "b", true),
                summary("c", "production", Update, false),
                summary("b", "production", Update, false),
                summary("a", "production", Update, false),
            ],
        };
        assert_eq!(previous(&rt, &rt.updates[0]).unwrap().id, "a");
        // Rolled back to the first update: nothing older to go to.
        let rt = RuntimeUpdates {
            updates: vec![
                republish("a2", "a", true),
                summary("b", "production", Update, false),
                summary("a", "production", Update, false),
            ],
            ..rt
        };
        assert!(previous(&rt, &rt.updates[0]).is_none());
    }

    #[test]
    fn prior_state_includes_directives() {
        use RecordKind::*;
        let rt = RuntimeUpdates {
            platform: "ios".into(),
            runtime_version: "1".into(),
            updates: vec![
                summary("b", "production", Update, true),
                summary("s", "staging", Update, true),
                summary("e", "production", RollBackToEmbedded, false),
                summary("a", "production", Update, false),
            ],
        };
        assert_eq!(prior_state(&rt, &rt.updates[0]).unwrap().id, "e");
        assert_eq!(prior_state(&rt, &rt.updates[2]).unwrap().id, "a");
        assert!(prior_state(&rt, &rt.updates[3]).is_none());
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
}
