//! Command-line surface (clap derive). Values are validated here with the core's rules so a typo
//! fails before any file is hashed or any request is sent.

use clap::{Args, Parser, Subcommand};
use expo_ota::validate::{self, Platform};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "publish-cli", version, about = "Publish `npx expo export` output to an expo-ota server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload an export directory and make it the current update.
    Publish(PublishArgs),
    /// List published updates of an app.
    List(ListArgs),
    /// Delete one update (--update-id), or everything published for one platform + runtime version.
    Delete(DeleteArgs),
    /// Serve an earlier update again (republished with a new id), or roll back to the embedded update.
    ///
    /// The server republishes what it stores, so a token with only the `rollback` scope is
    /// enough. Without --platform every platform of the runtime is rolled back: the ones the
    /// listing shows when the token has `read`, else both, and a platform with nothing to roll
    /// back (HTTP 404) is skipped with a warning as long as another one moves. Every platform is
    /// prepared before any is changed, and a publish that lands in between fails the command with
    /// 409 (one gap: without `read`, a channel serving a rollBackToEmbedded directive shows the
    /// CLI no id to expect).
    Rollback(RollbackArgs),
    /// Republish a channel's current update onto another channel (same files, nothing uploaded).
    ///
    /// Needs only the `rollback` scope. Without --platform every platform of the runtime is
    /// promoted: the ones the listing shows when the token has `read`, else both, and a platform
    /// whose --from channel serves nothing (HTTP 404) is skipped with a warning as long as another
    /// one moves.
    Promote(PromoteArgs),
    /// Mint, list and revoke scoped deploy tokens (needs the ADMIN_TOKEN).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show the audit log of deploy operations.
    Audit(AuditArgs),
    /// Capacitor apps (@capgo/capacitor-updater): publish, list, roll back and delete web bundles.
    #[command(subcommand)]
    Capacitor(crate::capacitor::CapacitorCommand),
    /// Android APKs for direct download (never offered to the updater plugin).
    #[command(subcommand)]
    Apk(crate::capacitor::ApkCommand),
    /// Grow, complete, revert, halt or resume a channel's staged rollout (scope `rollback`).
    Rollout(RolloutArgs),
    /// Ask the server what a device would get from a check, and why (scope `read`).
    Explain(ExplainArgs),
    /// Show update health: devices that launched or failed each recent update, the failure rate
    /// with its 95 % interval, top fatal errors, and whether the update was halted (and why).
    Health(HealthArgs),
    /// Sign in as a user; the session is kept for this server and used when no token is given.
    Login(LoginArgs),
    /// End the stored session of this server.
    Logout(ServerArgs),
    /// Manage user accounts (needs the ADMIN_TOKEN or an admin user).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Server origin, e.g. https://ota.example.com
    #[arg(long, value_parser = parse_server)]
    pub server: String,
    #[arg(long)]
    pub login: String,
    /// Read the password from the first line of stdin (else EXPO_OTA_PASSWORD).
    #[arg(long)]
    pub password_stdin: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user with a password (from --password-stdin or EXPO_OTA_PASSWORD).
    Create(UserCreateArgs),
}

#[derive(Debug, Args)]
pub struct UserCreateArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[arg(long)]
    pub login: String,
    /// A server administrator (may do what the ADMIN_TOKEN may).
    #[arg(long)]
    pub admin: bool,
    /// Read the password from the first line of stdin (else EXPO_OTA_PASSWORD).
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token; its secret is printed once and never stored.
    Create(TokenCreateArgs),
    /// List tokens (never their secrets) with their last use.
    List(TokenListArgs),
    /// Revoke a token by id.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// A name to recognise it by in lists and the audit log, e.g. ci-demo.
    #[arg(long)]
    pub name: String,
    /// An app the token may act on (repeat for several).
    #[arg(long = "slug", value_parser = parse_slug, required_unless_present = "all_apps")]
    pub slugs: Vec<String>,
    /// Every app, present and future.
    #[arg(long, conflicts_with = "slugs")]
    pub all_apps: bool,
    /// What it may do: publish, rollback, delete, read (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub scope: Vec<String>,
    /// Lifetime such as 90d, 12h or 30m (default: no expiry).
    #[arg(long)]
    pub expires_in: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokenListArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The token id (16 hex digits, as `token list` shows).
    pub id: String,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Only this app (a scoped token with `read` may see its apps' log; all apps need the ADMIN_TOKEN).
    #[arg(long, value_parser = parse_slug)]
    pub slug: Option<String>,
    /// Entries from this time on: YYYY-MM-DDTHH:mm:ss.sssZ, or a lookback such as 7d or 12h.
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many entries (the newest), up to 1000.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
    /// Older entries: the cursor a previous page printed (`nextCursor` with --json).
    #[arg(long)]
    pub before: Option<String>,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// App slug (the `slug` of app.json; part of the app's updates.url).
    #[arg(long, value_parser = parse_slug)]
    pub slug: String,
    /// Only this platform.
    #[arg(long, value_parser = parse_platform)]
    pub platform: Option<Platform>,
    /// Only this runtimeVersion.
    #[arg(long, value_parser = parse_runtime_version)]
    pub runtime_version: Option<String>,
    /// Only this channel.
    #[arg(long, value_parser = parse_channel)]
    pub channel: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Server origin, e.g. https://ota.example.com
    #[arg(long, value_parser = parse_server)]
    pub server: String,
    /// Deploy token (the server's ADMIN_TOKEN).
    #[arg(long, env = "EXPO_UPDATES_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Print one JSON object on stdout instead of human output.
    #[arg(long)]
    pub json: bool,
}

/// Publisher-side code signing. Only the signature is sent; the key never leaves this machine.
#[derive(Debug, Args)]
pub struct SigningArgs {
    /// RSA private key (PEM, PKCS#1 or PKCS#8, unencrypted) to sign the manifest or directive
    /// with, e.g. the keys/private-key.pem of `npx expo-updates codesigning:generate`.
    #[arg(long)]
    pub private_key: Option<PathBuf>,
    /// The keyid the app's codeSigningMetadata names.
    #[arg(long, default_value = "main", value_parser = parse_key_id, requires = "private_key")]
    pub key_id: String,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// App slug (the `slug` of app.json; part of the app's updates.url).
    #[arg(long, value_parser = parse_slug)]
    pub slug: String,
    /// The `npx expo export` output directory (holds metadata.json).
    #[arg(long)]
    pub export_dir: PathBuf,
    /// Publish only this platform (default: every exported platform).
    #[arg(long, value_parser = parse_platform)]
    pub platform: Option<Platform>,
    /// Overrides the runtimeVersion resolved from expoConfig.json.
    #[arg(long, value_parser = parse_runtime_version)]
    pub runtime_version: Option<String>,
    /// Channel to publish to (server default: production).
    #[arg(long, value_parser = parse_channel)]
    pub channel: Option<String>,
    /// Free-text note stored with the update.
    #[arg(long, value_parser = parse_message)]
    pub message: Option<String>,
    #[command(flatten)]
    pub signing: SigningArgs,
    /// Commit hash to record; by default `git rev-parse HEAD` next to the export dir.
    #[arg(long)]
    pub git_commit: Option<String>,
    /// Ask the server what is missing, but upload and commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Files uploaded at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Serve the update to this percentage of the channel's devices only (1-100); the others
    /// keep getting what the channel served before. Grow it with `rollout`.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub rollout_percentage: Option<u8>,
    /// bsdiff patches: diff the new launch asset against the launch assets of this many earlier
    /// updates of the channel (needs the read scope to list them).
    #[arg(long, default_value_t = crate::patches::DEFAULT_BASES, value_parser = clap::value_parser!(u16).range(1..=20))]
    pub patch_bases: u16,
    /// Make and upload no bsdiff patches.
    #[arg(long)]
    pub no_patches: bool,
    /// Upload no brotli/gzip variants of text files.
    #[arg(long)]
    pub no_compress: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// App slug (the `slug` of app.json; part of the app's updates.url).
    #[arg(long, value_parser = parse_slug)]
    pub slug: String,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// App slug (the `slug` of app.json; part of the app's updates.url).
    #[arg(long, value_parser = parse_slug)]
    pub slug: String,
    #[arg(long, value_parser = parse_platform)]
    pub platform: Platform,
    #[arg(long, value_parser = parse_runtime_version)]
    pub runtime_version: String,
    /// Delete only this update. When it is what its channel serves, the server serves what the
    /// channel served before instead (republished unsigned); with --private-key the CLI then
    /// replaces that with a signed copy through rollback, which also needs the `rollback` scope.
    #[arg(long, value_parser = parse_update_id)]
    pub update_id: Option<String>,
    #[command(flatten)]
    pub signing: SigningArgs,
    /// Confirm deleting a whole runtime (every update and file of it); not needed with --update-id.
    #[arg(long)]
    pub yes: bool,
}

/// Which app and runtime a rollback or promote acts on.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// App slug (the `slug` of app.json; part of the app's updates.url).
    #[arg(long, value_parser = parse_slug)]
    pub slug: String,
    /// Only this platform (default: every platform of the runtime; see the command's help).
    #[arg(long, value_parser = parse_platform)]
    pub platform: Option<Platform>,
    /// The runtime version to act on.
    #[arg(long, value_parser = parse_runtime_version)]
    pub runtime_version: String,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Channel to roll back.
    #[arg(long, default_value = "production", value_parser = parse_channel)]
    pub channel: String,
    /// Serve this update again (default: the one published before the channel's current update).
    #[arg(long, value_parser = parse_update_id)]
    pub to: Option<String>,
    /// Make devices run the update embedded in their build (a rollBackToEmbedded directive).
    #[arg(long, conflicts_with = "to")]
    pub to_embedded: bool,
    #[command(flatten)]
    pub signing: SigningArgs,
    /// Note stored with the new update (default: `rollback to <id>`).
    #[arg(long, value_parser = parse_message)]
    pub message: Option<String>,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Channel whose current update is promoted.
    #[arg(long, value_parser = parse_channel)]
    pub from: String,
    /// Channel that serves it afterwards.
    #[arg(long, value_parser = parse_channel)]
    pub to: String,
    #[command(flatten)]
    pub signing: SigningArgs,
    /// Note stored with the new update (default: `promoted from <channel>`).
    #[arg(long, value_parser = parse_message)]
    pub message: Option<String>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("action").required(true))]
pub struct RolloutArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[arg(long, value_parser = parse_slug)]
    pub slug: String,
    #[arg(long, value_parser = parse_platform)]
    pub platform: Platform,
    #[arg(long, value_parser = parse_runtime_version)]
    pub runtime_version: String,
    #[arg(long, default_value = "production", value_parser = parse_channel)]
    pub channel: String,
    /// Grow the rollout to this percentage (it never shrinks: devices keep the update; 100 completes it).
    #[arg(long, group = "action", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub percentage: Option<u8>,
    /// Serve the rollout update to every device.
    #[arg(long, group = "action")]
    pub complete: bool,
    /// End the rollout: every device goes back to the control update (republished, so devices
    /// on the rollout update take it too; the publisher's pre-signed revert when there is one).
    #[arg(long, group = "action")]
    pub revert: bool,
    /// Stop serving what the channel serves now (rollout or not), like an automatic halt.
    #[arg(long, group = "action")]
    pub halt: bool,
    /// Serve the halted update again (republished; signed with --private-key).
    #[arg(long, group = "action")]
    pub resume: bool,
    /// Why (stored with a halt or revert; at most 200 characters).
    #[arg(long, value_parser = crate::rollout::parse_reason)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub signing: SigningArgs,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[arg(long, value_parser = parse_slug)]
    pub slug: String,
    #[arg(long, value_parser = parse_platform)]
    pub platform: Platform,
    #[arg(long, value_parser = parse_runtime_version)]
    pub runtime_version: String,
    #[arg(long, default_value = "production", value_parser = parse_channel)]
    pub channel: String,
    /// The device's EAS-Client-ID (any case); without it the device is outside every rollout.
    #[arg(long)]
    pub client_id: Option<String>,
    /// The update the device runs (expo-current-update-id).
    #[arg(long, value_parser = parse_update_id)]
    pub current_update_id: Option<String>,
    /// The update embedded in the device's build (expo-embedded-update-id).
    #[arg(long, value_parser = parse_update_id)]
    pub embedded_update_id: Option<String>,
}

/// Strips trailing slashes so paths can be appended; requires an http(s) URL without a query.
pub fn parse_server(s: &str) -> Result<String, String> {
    let trimmed = s.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(trimmed).map_err(|e| format!("invalid server URL {s:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("server URL {s:?} must be http:// or https:// with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("server URL {s:?} must not have a query or fragment"));
    }
    Ok(trimmed.to_string())
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s).map_err(|e| e.message)
}

pub(crate) fn parse_slug(s: &str) -> Result<String, String> {
    validate::slug(s).map(str::to_string).map_err(|e| e.message)
}

fn parse_runtime_version(s: &str) -> Result<String, String> {
    validate::runtime_version(s).map(str::to_string).map_err(|e| e.message)
}

pub(crate) fn parse_channel(s: &str) -> Result<String, String> {
    validate::channel(s).map(str::to_string).map_err(|e| e.message)
}

/// The server's limit, checked before anything is hashed or sent.
fn parse_message(s: &str) -> Result<String, String> {
    if s.chars().count() > 1000 || s.contains('\0') {
        return Err("must be at most 1000 characters, without NUL".into());
    }
    Ok(s.to_string())
}

fn parse_update_id(s: &str) -> Result<String, String> {
    expo_ota::protocol::id::normalize_uuid(s).ok_or_else(|| format!("{s:?} is not an update id (a UUID)"))
}

/// What the server stores and what an `expo-signature` sf-string can carry.
fn parse_key_id(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 128 || !s.bytes().all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\\') {
        return Err("must be 1-128 printable ASCII characters without spaces, quotes or backslashes".into());
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_publish() {
        let cli = Cli::try_parse_from([
            "publish-cli",
            "publish",
            "--server",
            "https://ota.example.com/",
            "--slug",
            "demo-app",
            "--export-dir",
            "dist",
            "--platform",
            "ios",
            "--runtime-version",
            "1.0.0+b(1)",
            "--auth-token",
            "t",
            "--channel",
            "staging",
            "--dry-run",
            "--json",
            "--concurrency",
            "8",
        ])
        .unwrap();
        let Command::Publish(p) = cli.command else { panic!("not publish") };
        assert_eq!(p.server.server, "https://ota.example.com");
        assert_eq!(p.slug, "demo-app");
        assert_eq!(p.platform, Some(Platform::Ios));
        assert_eq!(p.runtime_version.as_deref(), Some("1.0.0+b(1)"));
        assert_eq!(p.server.auth_token.as_deref(), Some("t"));
        assert_eq!(p.channel.as_deref(), Some("staging"));
        assert!(p.dry_run && p.server.json);
        assert_eq!(p.concurrency, 8);
    }

    #[test]
    fn publish_defaults() {
        let cli = Cli::try_parse_from([
            "publish-cli",
            "publish",
            "--server",
            "http://127.0.0.1:8787",
            "--slug",
            "a",
            "--export-dir",
            "d",
        ])
        .unwrap();
        let Command::Publish(p) = cli.command else { panic!("not publish") };
        assert_eq!((p.concurrency, p.dry_run, p.platform, p.server.json), (4, false, None, false));
    }

    #[test]
    fn rejects_bad_values() {
        let base =
            ["publish-cli", "publish", "--server", "https://x.example", "--slug", "demo-app", "--export-dir", "d"];
        let with = |extra: &[&str]| Cli::try_parse_from(base.iter().chain(extra).copied());
        assert!(with(&["--platform", "web"]).is_err());
        assert!(with(&["--runtime-version", "../x"]).is_err());
        assert!(with(&["--channel", "a/b"]).is_err());
        assert!(with(&["--concurrency", "0"]).is_err());
        assert!(Cli::try_parse_from([
            "publish-cli",
            "publish",
            "--server",
            "ftp://x",
            "--slug",
            "a",
            "--export-dir",
            "d"
        ])
        .is_err());
        assert!(Cli::try_parse_from([
            "publish-cli",
            "publish",
            "--server",
            "https://x",
            "--slug",
            "a/b",
            "--export-dir",
            "d"
        ])
        .is_err());
        // --export-dir is required.
        assert!(Cli::try_parse_from(["publish-cli", "publish", "--server", "https://x", "--slug", "a"]).is_err());
    }

    #[test]
    fn parses_list_and_delete() {
        let cli = Cli::try_parse_from([
            "publish-cli",
            "list",
            "--server",
            "https://x.example",
            "--slug",
            "demo-app",
            "--json",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Command::List(ListArgs { ref slug, server: ServerArgs { json: true, .. } }) if slug == "demo-app")
        );
        let cli = Cli::try_parse_from([
            "publish-cli",
            "delete",
            "--server",
            "https://x.example",
            "--slug",
            "demo-app",
            "--platform",
            "android",
            "--runtime-version",
            "2.0.0",
            "--yes",
        ])
        .unwrap();
        let Command::Delete(d) = cli.command else { panic!("not delete") };
        assert_eq!((d.platform, d.runtime_version.as_str(), d.yes), (Platform::Android, "2.0.0", true));
        assert!(Cli::try_parse_from([
            "publish-cli",
            "delete",
            "--server",
            "https://x.example",
            "--slug",
            "demo-app",
            "--platform",
            "android"
        ])
        .is_err());
    }

    #[test]
    fn parses_rollback_promote_and_signing() {
        let base = [
            "publish-cli",
            "rollback",
            "--server",
            "https://x.example",
            "--slug",
            "demo-app",
            "--runtime-version",
            "1.0.3",
        ];
        let with = |extra: &[&str]| Cli::try_parse_from(base.iter().chain(extra).copied());
        let Command::Rollback(r) = with(&[]).unwrap().command else { panic!("not rollback") };
        assert_eq!(
            (r.channel.as_str(), r.to.as_deref(), r.to_embedded, r.runtime.platform),
            ("production", None, false, None)
        );
        assert_eq!((r.signing.private_key.as_deref(), r.signing.key_id.as_str()), (None, "main"));
        let id = "0F8D2A8E-0000-4000-8000-000000000001";
        let Command::Rollback(r) = with(&[
            "--to",
            id,
            "--platform",
            "ios",
            "--private-key",
            "k.pem",
            "--key-id",
            "prod-2024",
            "--channel",
            "staging",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(r.to.as_deref(), Some("0f8d2a8e-0000-4000-8000-000000000001"), "ids are normalised");
        assert_eq!(
            (r.signing.private_key.unwrap().to_str(), r.signing.key_id.as_str(), r.channel.as_str()),
            (Some("k.pem"), "prod-2024", "staging")
        );
        assert!(with(&["--to", id, "--to-embedded"]).is_err());
        assert!(with(&["--to", "nope"]).is_err());
        assert!(with(&["--key-id", "main"]).is_err(), "--key-id needs --private-key");
        for bad in ["a b", "a\"b", ""] {
            assert!(with(&["--private-key", "k", "--key-id", bad]).is_err(), "{bad:?}");
        }
        assert!(with(&["--message", &"x".repeat(1001)]).is_err());

        let Command::Promote(p) = Cli::try_parse_from([
            "publish-cli",
            "promote",
            "--server",
            "https://x.example",
            "--slug",
            "demo-app",
            "--runtime-version",
            "1.0.3",
            "--from",
            "staging",
            "--to",
            "production",
        ])
        .unwrap()
        .command
        else {
            panic!("not promote")
        };
        assert_eq!((p.from.as_str(), p.to.as_str()), ("staging", "production"));
        assert!(Cli::try_parse_from([
            "publish-cli",
            "promote",
            "--server",
            "https://x.example",
            "--slug",
            "a",
            "--runtime-version",
            "1",
            "--from",
            "staging"
        ])
        .is_err());

        let Command::Delete(d) = Cli::try_parse_from([
            "publish-cli",
            "delete",
            "--server",
            "https://x.example",
            "--slug",
            "a",
            "--platform",
            "ios",
            "--runtime-version",
            "1",
            "--update-id",
            id,
            "--private-key",
            "k.pem",
        ])
        .unwrap()
        .command
        else {
            panic!("not delete")
        };
        assert_eq!((d.update_id.as_deref(), d.yes), (Some("0f8d2a8e-0000-4000-8000-000000000001"), false));
        let Command::Publish(p) = Cli::try_parse_from([
            "publish-cli",
            "publish",
            "--server",
            "https://x",
            "--slug",
            "a",
            "--export-dir",
            "d",
            "--private-key",
            "k.pem",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(p.signing.key_id, "main");
    }

    #[test]
    fn server_url_normalisation() {
        assert_eq!(parse_server("https://ota.example.com///").unwrap(), "https://ota.example.com");
        assert_eq!(parse_server("http://127.0.0.1:8787/base/").unwrap(), "http://127.0.0.1:8787/base");
        assert!(parse_server("ota.example.com").is_err());
        assert!(parse_server("https://x.example/?a=b").is_err());
    }
}
