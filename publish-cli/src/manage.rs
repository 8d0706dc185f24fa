//! `list` and `delete`: the deploy API's listing and deletion with human or JSON output.

use crate::cli::{DeleteArgs, ListArgs};
use crate::printer::{MovedReport, Printer};
use crate::rollback::{self, Candidate, Op};
use crate::sign::Signer;
use crate::upload::{label, Client};
use anyhow::{anyhow, bail, Context, Result};
use expo_ota::deploy::api::{CommitResponse, ListResponse, RollbackRequest};
use expo_ota::storage::layout::Target;
use expo_ota::storage::record::RecordKind;
use indicatif::HumanBytes;

pub async fn list(args: ListArgs, out: &Printer) -> Result<()> {
    let token = crate::auth::require(args.server.auth_token.as_deref())?;
    let list = Client::new(&args.server.server, token)?.list(&args.slug).await?;
    if out.json() {
        out.emit(&list);
    } else {
        for line in list_lines(&list) {
            out.line(line);
        }
    }
    Ok(())
}

/// Updates grouped by platform/runtime, newest first as the server sorts them; `*` = what its
/// channel serves now.
fn list_lines(list: &ListResponse) -> Vec<String> {
    if list.runtimes.is_empty() {
        return vec![format!("nothing is published for {}", list.slug)];
    }
    let mut lines = Vec::new();
    for rt in &list.runtimes {
        lines.push(format!("{} {} runtimeVersion {}", list.slug, rt.platform, rt.runtime_version));
        for u in &rt.updates {
            let mut l = format!(
                "  {} {}  {}  {:<12} {:<18} {:<8}",
                if u.current { "*" } else { " " },
                u.id,
                u.created_at,
                u.channel,
                u.kind.as_str(),
                if u.signed { "signed" } else { "unsigned" },
            );
            if u.kind == RecordKind::Update {
                l.push_str(&format!(
                    "  launch {}  {} files  {}",
                    HumanBytes(u.launch_asset_bytes),
                    u.file_count,
                    HumanBytes(u.total_bytes)
                ));
            }
            if let Some(c) = &u.git_commit {
                l.push_str(&format!("  git {}", &c[..c.len().min(7)]));
            }
            if let Some(f) = &u.republished_from {
                l.push_str(&format!("  from {f}"));
            }
            if let Some(m) = &u.message {
                l.push_str(&format!("  {m:?}"));
            }
            lines.push(l);
        }
    }
    lines
}

pub async fn delete(args: DeleteArgs, out: &Printer) -> Result<()> {
    let target = Target::parse(&args.slug, args.platform.as_str(), &args.runtime_version)
        .map_err(|e| anyhow::anyhow!(e.message))?;
    if let Some(id) = args.update_id {
        let signer = crate::sign::from_args(&args.signing)?;
        let token = crate::auth::require(args.server.auth_token.as_deref())?;
        return delete_update(&Client::new(&args.server.server, token)?, target, &id, signer.as_ref(), out).await;
    }
    if args.signing.private_key.is_some() {
        bail!("--private-key only applies with --update-id (deleting a whole runtime serves nothing new)");
    }
    if !args.yes {
        bail!("refusing to delete every update and file of {} without --yes", label(&target));
    }
    let token = crate::auth::require(args.server.auth_token.as_deref())?;
    let r = Client::new(&args.server.server, token)?.delete(&target).await?;
    if out.json() {
        out.emit(&with_target(&target, serde_json::json!({"deletedObjects": r.deleted_objects})));
    } else {
        out.line(format!("deleted {} object(s) under {}", r.deleted_objects, label(&target)));
    }
    Ok(())
}

/// `fields` plus the slug, platform and runtimeVersion they are about.
fn with_target(t: &Target, mut fields: serde_json::Value) -> serde_json::Value {
    fields["slug"] = t.slug.as_str().into();
    fields["platform"] = t.platform.as_str().into();
    fields["runtimeVersion"] = t.runtime_version.as_str().into();
    fields
}

/// Deletes one update. When its channel served it, the server promotes what the channel served
/// before (unsigned, as it holds no key). With --private-key that promotion is then replaced by
/// a signed copy of the same state through `…/rollback` (`expectedCurrent`: the promoted id, so
/// a publish landing meanwhile is never overwritten). In between, a device that verifies
/// signatures is refused the unsigned copy (406, it keeps what it runs) unless the server holds
/// a key of its own and signs it.
async fn delete_update(
    client: &Client,
    target: Target,
    id: &str,
    signer: Option<&Signer>,
    out: &Printer,
) -> Result<()> {
    let r = client.delete_update(&target, id).await?;
    let mut promoted = r.promoted.as_ref().map(rollback::report);
    if let (Some(p), Some(signer)) = (&r.promoted, signer) {
        let resigned = resign(client, &target, id, p, signer, out).await.with_context(|| {
            format!(
                "deleted update {id} of {}; channel {:?} now serves {} unsigned and re-signing it failed (run `rollback --to {} --private-key …` to retry)",
                label(&target),
                p.channel,
                p.id,
                p.republished_from.as_deref().unwrap_or("embedded")
            )
        })?;
        promoted = Some(resigned);
    }
    if out.json() {
        out.emit(&with_target(
            &target,
            serde_json::json!({"deleted": r.deleted, "deletedFiles": r.deleted_files, "promoted": promoted}),
        ));
    } else {
        out.line(format!(
            "deleted update {} of {} (files no update names any more are collected later)",
            r.deleted,
            label(&target)
        ));
        if let Some(p) = &promoted {
            out.line(p.line());
        }
    }
    Ok(())
}

/// Replaces the server's unsigned promotion `p` with a signed republish of the same state.
async fn resign(
    client: &Client,
    target: &Target,
    deleted: &str,
    p: &CommitResponse,
    signer: &Signer,
    out: &Printer,
) -> Result<MovedReport> {
    let to = match (p.kind, &p.republished_from) {
        (RecordKind::RollBackToEmbedded, _) => "embedded".to_string(),
        (RecordKind::Update, Some(from)) => from.clone(),
        (RecordKind::Update, None) => bail!("the server promoted {} without saying what it republished", p.id),
    };
    let op = Op::Rollback(RollbackRequest {
        channel: Some(p.channel.clone()),
        to: Some(to),
        message: Some(format!("promoted after deleting {deleted}")),
        ..Default::default()
    });
    let only = Candidate { target: target.clone(), expected: Some(p.id.clone()) };
    let mut moved = rollback::release(client, vec![only], true, &op, Some(signer), out).await?;
    moved.pop().ok_or_else(|| anyhow!("the re-signing rollback installed nothing"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expo_ota::deploy::api::{RuntimeUpdates, UpdateSummary};

    #[test]
    fn list_shows_every_column() {
        let u = |id: &str, current, kind, signed| UpdateSummary {
            id: id.into(),
            created_at: expo_ota::protocol::time::Timestamp::parse("2024-05-01T12:34:56.789Z").unwrap(),
            channel: "production".into(),
            kind,
            current,
            signed,
            git_commit: Some("0123abcdef".into()),
            republished_from: None,
            launch_asset_bytes: 2048,
            file_count: 7,
            total_bytes: 4096,
            message: Some("hi".into()),
        };
        let mut c = u("c", false, RecordKind::Update, false);
        (c.git_commit, c.message, c.republished_from) = (None, None, Some("a".into()));
        let updates =
            vec![u("b", true, RecordKind::Update, true), u("e", false, RecordKind::RollBackToEmbedded, false), c];
        let list = ListResponse {
            slug: "demo-app".into(),
            runtimes: vec![RuntimeUpdates { platform: "ios".into(), runtime_version: "1.0.3".into(), updates }],
        };
        let lines = list_lines(&list);
        assert_eq!(lines[0], "demo-app ios runtimeVersion 1.0.3");
        assert_eq!(lines[1], "  * b  2024-05-01T12:34:56.789Z  production   update             signed    launch 2.00 KiB  7 files  4.00 KiB  git 0123abc  \"hi\"");
        assert_eq!(
            lines[2],
            "    e  2024-05-01T12:34:56.789Z  production   rollBackToEmbedded unsigned  git 0123abc  \"hi\""
        );
        assert!(lines[3].starts_with("    c ") && lines[3].ends_with("4.00 KiB  from a"), "{}", lines[3]);
        assert_eq!(list_lines(&ListResponse { slug: "x".into(), runtimes: vec![] }), ["nothing is published for x"]);
    }
}
