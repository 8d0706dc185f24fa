//! `token create|list|revoke` and `audit`: thin views over the server's token and audit routes.

use crate::cli::{AuditArgs, ServerArgs, TokenCommand};
use crate::printer::Printer;
use crate::upload::Client;
use anyhow::{bail, Result};
use expo_ota::access::audit::AuditList;
use expo_ota::access::tokens::{CreateTokenRequest, TokenInfo};
use expo_ota::{access::auth, protocol::time};

fn client(s: &ServerArgs) -> Result<Client> {
    Client::new(&s.server, crate::auth::require(s.auth_token.as_deref())?)
}

pub async fn run(cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create(a) => {
            let out = Printer::new(a.server.json);
            let req = CreateTokenRequest {
                name: a.name,
                apps: a.slugs,
                all_apps: a.all_apps,
                scopes: a.scope,
                expires_in: a.expires_in,
            };
            // Check locally first so a typo costs no request.
            for s in &req.scopes {
                auth::Scope::parse(s).map_err(|e| anyhow::anyhow!(e.message))?;
            }
            if let Some(d) = &req.expires_in {
                auth::parse_duration(d).map_err(|e| anyhow::anyhow!(e.message))?;
            }
            let created = client(&a.server)?.create_token(&req).await?;
            if out.json() {
                out.emit(&created);
            } else {
                out.line(describe(&created.info));
                out.line(format!("token (shown once, store it as a CI secret): {}", created.token));
            }
        }
        TokenCommand::List(a) => {
            let out = Printer::new(a.server.json);
            let list = client(&a.server)?.list_tokens().await?;
            if out.json() {
                out.emit(&list);
            } else if list.tokens.is_empty() {
                out.line("no tokens");
            } else {
                list.tokens.iter().for_each(|t| out.line(describe(t)));
            }
        }
        TokenCommand::Revoke(a) => {
            let out = Printer::new(a.server.json);
            let info = client(&a.server)?.revoke_token(&a.id).await?;
            if out.json() {
                out.emit(&info);
            } else {
                out.line(format!("revoked {}", describe(&info)));
            }
        }
    }
    Ok(())
}

fn describe(t: &TokenInfo) -> String {
    let apps = if t.all_apps { "all apps".to_string() } else { t.apps.join(",") };
    let scopes: Vec<&str> = t.scopes.iter().map(|s| s.as_str()).collect();
    let state = match (&t.revoked_at, &t.expires_at) {
        (Some(r), _) => format!("revoked {r}"),
        (None, Some(e)) => format!("expires {e}"),
        (None, None) => "no expiry".to_string(),
    };
    let used = t.last_used_at.as_deref().unwrap_or("never");
    format!("{}  {}  apps: {apps}  scopes: {}  {state}  last used: {used}", t.id, t.name, scopes.join(","))
}

/// One page of the audit log, newest first, then how to reach older entries. Every field came
/// from the server: the printer escapes what a terminal would interpret.
pub async fn audit(a: AuditArgs, out: &Printer) -> Result<()> {
    let since = a.since.as_deref().map(|s| since(s, now_ms())).transpose()?;
    let list =
        client(&a.server)?.audit(a.slug.as_deref(), since.as_deref(), a.before.as_deref(), a.limit.into()).await?;
    if out.json() {
        out.emit(&list);
        return Ok(());
    }
    audit_lines(&list).iter().for_each(|l| out.line(l));
    Ok(())
}

fn audit_lines(list: &AuditList) -> Vec<String> {
    let mut lines = Vec::new();
    if list.entries.is_empty() {
        lines.push("no audit entries".to_string());
    }
    for e in &list.entries {
        let who = e.actor_name.as_ref().map_or(e.actor.clone(), |n| format!("{} ({n})", e.actor));
        let target = [e.slug.as_deref(), e.platform.as_deref(), e.runtime_version.as_deref(), e.channel.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let mut ids =
            if e.update_ids.is_empty() { String::new() } else { format!(" updates {}", e.update_ids.join(",")) };
        if e.omitted_update_ids > 0 {
            ids.push_str(&format!(" (+{} more)", e.omitted_update_ids));
        }
        let token = e.token_id.as_ref().map(|t| format!(" token {t}")).unwrap_or_default();
        let err = e.error.as_ref().map(|m| format!(": {m}")).unwrap_or_default();
        lines.push(format!("{}  {}  {who}  {}  {target}{ids}{token}{err}", e.at, e.status, e.action));
    }
    if let Some(c) = &list.next_cursor {
        lines.push(format!("older entries: --before {c}"));
    }
    lines
}

/// `--since` as the server's time format: an absolute time as is, or `7d`/`12h` back from now.
fn since(s: &str, now_ms: u64) -> Result<String> {
    if time::parse_millis(s).is_some() {
        return Ok(s.to_string());
    }
    match auth::parse_duration(s) {
        Ok(d) => Ok(time::format_millis(now_ms.saturating_sub(d))),
        Err(_) => bail!("--since must be YYYY-MM-DDTHH:mm:ss.sssZ or a lookback such as 7d"),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn since_accepts_times_and_lookbacks() {
        assert_eq!(since("2026-01-01T00:00:00.000Z", 0).unwrap(), "2026-01-01T00:00:00.000Z");
        assert_eq!(since("1d", 2 * 86_400_000).unwrap(), "1970-01-02T00:00:00.000Z");
        assert!(since("yesterday", 0).is_err());
    }

    #[test]
    fn token_create_parsing() {
        let cli = Cli::try_parse_from([
            "publish-cli",
            "token",
            "create",
            "--server",
            "http://x",
            "--name",
            "ci",
            "--slug",
            "demo-app",
            "--slug",
            "utility-app",
            "--scope",
            "publish,read",
            "--expires-in",
            "90d",
        ])
        .unwrap();
        let Command::Token(TokenCommand::Create(a)) = cli.command else { panic!("not token create") };
        assert_eq!(a.slugs, ["demo-app", "utility-app"]);
        assert_eq!(a.scope, ["publish", "read"]);
        assert!(
            Cli::try_parse_from([
                "publish-cli",
                "token",
                "create",
                "--server",
                "http://x",
                "--name",
                "ci",
                "--scope",
                "read"
            ])
            .is_err(),
            "needs --slug or --all-apps"
        );
        assert!(Cli::try_parse_from([
            "publish-cli",
            "token",
            "create",
            "--server",
            "http://x",
            "--name",
            "ci",
            "--all-apps",
            "--slug",
            "a",
            "--scope",
            "read"
        ])
        .is_err());
        assert!(Cli::try_parse_from([
            "publish-cli",
            "token",
            "create",
            "--server",
            "http://x",
            "--name",
            "ci",
            "--slug",
            "../x",
            "--scope",
            "read"
        ])
        .is_err());
    }

    #[test]
    fn audit_lines_show_every_field_and_the_next_cursor() {
        use expo_ota::access::audit::AuditEntry;
        let e = AuditEntry {
            at: "2026-01-01T00:00:00.000Z".into(),
            actor: "0123456789abcdef".into(),
            actor_name: Some("ci".into()),
            action: "publish".into(),
            slug: Some("demo-app".into()),
            platform: Some("ios".into()),
            runtime_version: Some("1.0.3".into()),
            channel: Some("production".into()),
            update_ids: vec!["u1".into()],
            omitted_update_ids: 2,
            status: 409,
            error: Some("conflict".into()),
            ..Default::default()
        };
        let list = AuditList { entries: vec![e], next_cursor: Some("9999999999999-00000000".into()) };
        assert_eq!(
            audit_lines(&list),
            [
                "2026-01-01T00:00:00.000Z  409  0123456789abcdef (ci)  publish  demo-app ios 1.0.3 production updates u1 (+2 more): conflict",
                "older entries: --before 9999999999999-00000000"
            ]
        );
        assert_eq!(audit_lines(&AuditList::default()), ["no audit entries"]);
    }

    #[test]
    fn describes_tokens_without_secrets() {
        let t = TokenInfo {
            id: "0123456789abcdef".into(),
            name: "ci".into(),
            apps: vec!["demo-app".into()],
            all_apps: false,
            scopes: vec![auth::Scope::Publish],
            created_at: "2026-01-01T00:00:00.000Z".into(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        assert_eq!(describe(&t), "0123456789abcdef  ci  apps: demo-app  scopes: publish  no expiry  last used: never");
    }
}
