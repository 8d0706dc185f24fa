//! `login`, `logout` and `user create`: a person's sign-in from the command line. `login` keeps
//! the bearer session the server returns in the user's config directory, per server origin, in a
//! file only its owner can read; a command without `--auth-token`/`EXPO_UPDATES_AUTH_TOKEN` uses
//! the stored session of the exact server it talks to (never another server's) until it expires.

use crate::cli::{Command, LoginArgs, ServerArgs, TokenCommand, UserCommand, UserCreateArgs};
use crate::printer::Printer;
use crate::upload::Client;
use anyhow::{bail, Context, Result};
use expo_ota::protocol::time;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;

pub const PASSWORD_ENV: &str = "EXPO_OTA_PASSWORD";
/// Overrides where sessions are kept (tests; a CI job with its own directory).
pub const CONFIG_DIR_ENV: &str = "EXPO_OTA_CONFIG_DIR";

#[derive(Serialize, Deserialize, Default)]
struct Sessions {
    /// server origin → session
    servers: BTreeMap<String, Stored>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Stored {
    login: String,
    token: String,
    expires_at: String,
}

fn sessions_path() -> Result<PathBuf> {
    let dir = match std::env::var_os(CONFIG_DIR_ENV) {
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("XDG_CONFIG_HOME") {
            Some(x) => PathBuf::from(x).join("expo-ota"),
            None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set: set EXPO_OTA_CONFIG_DIR")?)
                .join(".config/expo-ota"),
        },
    };
    Ok(dir.join("sessions.json"))
}

fn load() -> Result<Sessions> {
    let path = sessions_path()?;
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("{} is not valid JSON", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Sessions::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn save(s: &Sessions) -> Result<()> {
    let path = sessions_path()?;
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(s)?)?;
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// The stored, unexpired session token for exactly this server.
pub fn stored_token(server: &str) -> Option<String> {
    let s = load().ok()?;
    let stored = s.servers.get(server)?;
    let live = time::parse_millis(&stored.expires_at).is_some_and(|e| e > now_ms());
    live.then(|| stored.token.clone())
}

/// Fills in a missing token from the stored session of this server.
pub fn with_stored(server: &mut ServerArgs) {
    if server.auth_token.as_deref().is_none_or(|t| t.trim().is_empty()) {
        server.auth_token = stored_token(&server.server);
    }
}

/// Every command that talks to a server with a token gets the stored session when it names none.
pub fn fill_tokens(cmd: &mut Command) {
    match cmd {
        Command::Publish(a) => with_stored(&mut a.server),
        Command::List(a) => with_stored(&mut a.server),
        Command::Delete(a) => with_stored(&mut a.server),
        Command::Rollback(a) => with_stored(&mut a.server),
        Command::Promote(a) => with_stored(&mut a.server),
        Command::Token(TokenCommand::Create(a)) => with_stored(&mut a.server),
        Command::Token(TokenCommand::List(a)) => with_stored(&mut a.server),
        Command::Token(TokenCommand::Revoke(a)) => with_stored(&mut a.server),
        Command::Audit(a) => with_stored(&mut a.server),
        Command::User(UserCommand::Create(a)) => with_stored(&mut a.server),
        Command::Rollout(a) => with_stored(&mut a.server),
        Command::Explain(a) => with_stored(&mut a.server),
        Command::Health(a) => with_stored(&mut a.server),
        Command::Capacitor(c) => {
            use crate::capacitor::CapacitorCommand as C;
            let app = match c {
                C::Publish(a) => &mut a.app,
                C::List(a) => a,
                C::Rollback(a) => &mut a.app,
                C::Delete(a) => &mut a.app,
                C::Channel(a) => &mut a.app,
            };
            with_stored(&mut app.server)
        }
        Command::Apk(crate::capacitor::ApkCommand::Publish(a)) => with_stored(&mut a.app.server),
        Command::Login(_) | Command::Logout(_) => {}
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// From `--password-stdin` (first line), else EXPO_OTA_PASSWORD.
fn password(from_stdin: bool) -> Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    match std::env::var(PASSWORD_ENV) {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => bail!("no password: pipe it with --password-stdin or set {PASSWORD_ENV}"),
    }
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct LoginReply {
    user: serde_json::Value,
    token: String,
    expires_at: String,
}

pub async fn login(a: LoginArgs) -> Result<()> {
    let out = Printer::new(a.json);
    let pw = password(a.password_stdin)?;
    let client = Client::new(&a.server, String::new())?;
    let body = serde_json::json!({"login": a.login, "password": pw});
    let r: LoginReply = client.account_call("sign in", Method::POST, "/api/auth/login", Some(&body)).await?;
    let mut s = load()?;
    s.servers.insert(
        a.server.clone(),
        Stored { login: a.login.clone(), token: r.token.clone(), expires_at: r.expires_at.clone() },
    );
    save(&s)?;
    if out.json() {
        out.emit(&serde_json::json!({"login": a.login, "server": a.server, "expiresAt": r.expires_at}));
    } else {
        out.line(format!("signed in to {} as {} until {}", a.server, a.login, r.expires_at));
    }
    Ok(())
}

pub async fn logout(mut a: ServerArgs) -> Result<()> {
    let out = Printer::new(a.json);
    with_stored(&mut a);
    let mut s = load()?;
    let stored = s.servers.remove(&a.server);
    if let Some(token) = stored.map(|st| st.token) {
        let client = Client::new(&a.server, token)?;
        // Ending the session on the server may fail (expired already); it is forgotten here anyway.
        let _ = client.account_call::<serde_json::Value>("sign out", Method::POST, "/api/auth/logout", None).await;
        save(&s)?;
        out.line(format!("signed out of {}", a.server));
    } else {
        out.line(format!("no stored session for {}", a.server));
    }
    Ok(())
}

pub async fn user_create(a: UserCreateArgs) -> Result<()> {
    let out = Printer::new(a.server.json);
    let pw = password(a.password_stdin)?;
    let client = Client::new(&a.server.server, crate::auth::require(a.server.auth_token.as_deref())?)?;
    let body = serde_json::json!({"login": a.login, "password": pw, "admin": a.admin});
    let created: serde_json::Value =
        client.account_call("create user", Method::POST, "/api/users", Some(&body)).await?;
    if out.json() {
        out.emit(&created);
    } else {
        out.line(format!("created user {}{}", a.login, if a.admin { " (admin)" } else { "" }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both tests point the process-wide config directory somewhere of their own.
    static CONFIG: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn stored_session_is_used_only_for_its_own_server_and_until_it_expires() {
        let _one = CONFIG.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var(CONFIG_DIR_ENV, dir.path());
        let mut s = Sessions::default();
        let future = time::format_millis(now_ms() + 3_600_000);
        let past = time::format_millis(now_ms() - 1);
        s.servers.insert(
            "https://a.example".into(),
            Stored { login: "x".into(), token: "ses_a".into(), expires_at: future },
        );
        s.servers
            .insert("https://b.example".into(), Stored { login: "x".into(), token: "ses_b".into(), expires_at: past });
        save(&s).unwrap();
        assert_eq!(stored_token("https://a.example").as_deref(), Some("ses_a"));
        assert_eq!(stored_token("https://b.example"), None, "expired");
        assert_eq!(stored_token("https://c.example"), None, "another server gets nothing");
        let mut given =
            ServerArgs { server: "https://a.example".into(), auth_token: Some("explicit".into()), json: false };
        with_stored(&mut given);
        assert_eq!(given.auth_token.as_deref(), Some("explicit"), "an explicit token wins");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(sessions_path().unwrap()).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "only its owner can read the sessions file");
        }
    }

    #[test]
    fn login_then_a_command_without_token_uses_the_session_with_the_users_role() {
        let _one = CONFIG.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tokio::runtime::Runtime::new().unwrap().block_on(login_flow());
    }

    async fn login_flow() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var(CONFIG_DIR_ENV, dir.path());
        let srv = crate::testserver::start().await;
        let admin = Client::new(&srv.url, crate::testserver::TOKEN.into()).unwrap();
        std::env::set_var(PASSWORD_ENV, "correct horse battery");
        let server = |token: Option<&str>| ServerArgs {
            server: srv.url.clone(),
            auth_token: token.map(str::to_string),
            json: true,
        };
        let create = UserCreateArgs {
            server: server(Some(crate::testserver::TOKEN)),
            login: "alice".into(),
            admin: false,
            password_stdin: false,
        };
        user_create(create).await.unwrap();
        let app = serde_json::json!({"slug": "demo-app", "owner": "alice"});
        let _: serde_json::Value = admin.account_call("app", Method::POST, "/api/apps", Some(&app)).await.unwrap();
        login(LoginArgs { server: srv.url.clone(), login: "alice".into(), password_stdin: false, json: true })
            .await
            .unwrap();

        let mut mine = server(None);
        with_stored(&mut mine);
        let token = mine.auth_token.clone().expect("the stored session");
        assert!(token.starts_with("ses_"));
        let as_alice = Client::new(&srv.url, token).unwrap();
        as_alice.list("demo-app").await.expect("an owner reads her app");
        let other = as_alice.list("other-app").await.unwrap_err();
        assert!(format!("{other:#}").contains("403"), "{other:#}");

        logout(server(None)).await.unwrap();
        assert_eq!(stored_token(&srv.url), None, "forgotten locally");
        std::env::remove_var(PASSWORD_ENV);
    }
}
