//! `list` and `delete`: the deploy API's listing and deletion with human or JSON output.

use crate::cli::{DeleteArgs, ListArgs};
use crate::printer::{MovedReport, Printer};
use crate::rollback::{self, Source};
use crate::sign::Signer;
use crate::upload::{label, Client};
use anyhow::{anyhow, bail, Result};
use expo_ota::deploy::api::ListResponse;
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
    let target = Target { slug: args.slug, platform: args.platform, runtime_version: args.runtime_version };
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
    fields["slug"] = t.slug.clone().into();
    fields["platform"] = t.platform.as_str().into();
    fields["runtimeVersion"] = t.runtime_version.clone().into();
    fields
}

/// Deletes one update. If its channel serves it and we hold the key, the previous update (or
/// the embedded one, when none is left) is made current first, signed, so the server has
/// nothing to promote; otherwise the server promotes, unsigned.
async fn delete_update(
    client: &Client,
    target: Target,
    id: &str,
    signer: Option<&Signer>,
    out: &Printer,
) -> Result<()> {
    let mut promoted = None;
    if let Some(signer) = signer {
        let list = client.list(&target.slug).await?;
        let rt = list
            .runtimes
            .iter()
            .find(|rt| rt.platform == target.platform.as_str() && rt.runtime_version == target.runtime_version);
        let doomed = rt.and_then(|rt| Some((rt, rt.updates.iter().find(|u| u.id == id)?)));
        let (rt, doomed) = doomed.ok_or_else(|| anyhow!("update {id} is not published for {}", label(&target)))?;
        if doomed.current {
            let source = match rollback::prior_state(rt, doomed) {
                Some(p) => Source::Record(Box::new(client.get_update(&target, &p.id).await?)),
                None => Source::Embedded,
            };
            let message = format!("promoted after deleting {id}");
            promoted = Some(
                rollback::make_current(client, target.clone(), &doomed.channel, source, Some(signer), message).await?,
            );
        }
    }
    let r = client.delete_update(&target, id).await?;
    let promoted = promoted.or_else(|| r.promoted.as_ref().map(MovedReport::from_server));
    if out.json() {
        out.emit(&with_target(
            &target,
            serde_json::json!({"deleted": r.deleted, "deletedFiles": r.deleted_files, "promoted": promoted}),
        ));
    } else {
        out.line(format!(
            "deleted update {} of {} ({} file(s) no other update used)",
            r.deleted,
            label(&target),
            r.deleted_files
        ));
        if let Some(p) = &promoted {
            out.line(p.line());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use expo_ota::deploy::api::{RuntimeUpdates, UpdateSummary};

    #[test]
    fn list_shows_every_column() {
        let u = |id: &str, current, kind, signed| UpdateSummary {
            id: id.into(),
            created_at: "2024-05-01T12:34:56.789Z".into(),
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
