//! `list` and `delete`: thin wrappers over the deploy API with human or JSON output.

use crate::cli::{DeleteArgs, ListArgs};
use crate::printer::Printer;
use crate::upload::{label, Client};
use anyhow::{bail, Result};
use expo_ota::api::ListResponse;
use expo_ota::layout::Target;
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

/// Updates grouped by platform/runtime, newest first as the server sorts them; `*` = current.
fn list_lines(list: &ListResponse) -> Vec<String> {
    if list.runtimes.is_empty() {
        return vec![format!("nothing is published for {}", list.slug)];
    }
    let mut lines = Vec::new();
    for rt in &list.runtimes {
        lines.push(format!("{} {} runtimeVersion {}", list.slug, rt.platform, rt.runtime_version));
        for u in &rt.updates {
            let mut l = format!(
                "  {} {}  {}  {:<12} launch {}  {} files  {}",
                if u.current { "*" } else { " " },
                u.id,
                u.created_at,
                u.channel,
                HumanBytes(u.launch_asset_bytes),
                u.file_count,
                HumanBytes(u.total_bytes)
            );
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
    if !args.yes {
        bail!("refusing to delete every update and file of {} without --yes", label(&target));
    }
    let token = crate::auth::require(args.server.auth_token.as_deref())?;
    let r = Client::new(&args.server.server, token)?.delete(&target).await?;
    if out.json() {
        out.emit(&serde_json::json!({
            "slug": target.slug,
            "platform": target.platform.as_str(),
            "runtimeVersion": target.runtime_version,
            "deletedObjects": r.deleted_objects,
        }));
    } else {
        out.line(format!("deleted {} object(s) under {}", r.deleted_objects, label(&target)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use expo_ota::api::{RuntimeUpdates, UpdateSummary};

    #[test]
    fn list_marks_current() {
        let u = |id: &str, current| UpdateSummary {
            id: id.into(),
            created_at: "2024-05-01T12:34:56.789Z".into(),
            channel: "production".into(),
            current,
            launch_asset_bytes: 2048,
            file_count: 7,
            total_bytes: 4096,
            message: None,
        };
        let list = ListResponse { slug: "demo-app".into(), runtimes: vec![RuntimeUpdates { platform: "ios".into(), runtime_version: "1.0.3".into(), updates: vec![u("b", true), u("a", false)] }] };
        let lines = list_lines(&list);
        assert_eq!(lines[0], "demo-app ios runtimeVersion 1.0.3");
        assert!(lines[1].starts_with("  * b ") && lines[1].contains("7 files") && lines[1].contains("2.00 KiB"), "{}", lines[1]);
        assert!(lines[2].starts_with("    a "), "{}", lines[2]);
        assert_eq!(list_lines(&ListResponse { slug: "x".into(), runtimes: vec![] }), ["nothing is published for x"]);
    }
}
