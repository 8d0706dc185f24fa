//! Accounts: people with a login and a password, the apps they work on and their role in each.
//! What a signed-in user may do on an app is decided by [`Role::permits`] alone, through the same
//! `auth::authorize` every credential goes through; roles are read from the control plane at each
//! request, so a removed member loses access at their next request. The control plane is behind
//! [`ControlPlane`] (D1 in the Worker, [`memory::MemoryControlPlane`] on the host); the public
//! manifest check never reaches it.

pub mod api;
pub mod memory;
pub mod password;
pub mod route;
pub mod session;

use crate::access::auth::Action;
use crate::error::ApiError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Publisher,
    Owner,
}

impl Role {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "publisher" => Ok(Role::Publisher),
            "owner" => Ok(Role::Owner),
            other => Err(ApiError::bad_request(format!(
                "unknown role {:?}: use owner, publisher or viewer",
                crate::validate::truncate(other)
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Publisher => "publisher",
            Role::Owner => "owner",
        }
    }
    /// viewer reads; publisher also publishes, rolls back and promotes; owner also deletes and
    /// manages members and API keys. Server-wide administration is never a role on an app.
    pub fn permits(self, action: Action) -> bool {
        match action {
            Action::Read => true,
            Action::Publish | Action::Rollback => self >= Role::Publisher,
            Action::Delete | Action::Manage => self == Role::Owner,
            Action::Admin => false,
        }
    }
}

/// A signed-in user as authorization sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserPrincipal {
    pub id: i64,
    pub login: String,
    /// An admin user may do what the ADMIN_TOKEN may.
    pub admin: bool,
    /// (slug, role) for every app the user is a member of.
    pub roles: Vec<(String, Role)>,
}

impl UserPrincipal {
    pub fn role_in(&self, slug: &str) -> Option<Role> {
        self.roles.iter().find(|(s, _)| s == slug).map(|(_, r)| *r)
    }
}

/// Logins are lowercase, start with a letter or digit, 1–64 of `a-z 0-9 . _ -` (so they are safe
/// in audit entries, URLs and the dashboard as they are).
pub fn login(s: &str) -> Result<&str, ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(s)
    } else {
        Err(ApiError::bad_request(
            "login must be 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
        ))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub login: String,
    pub password_hash: String,
    pub admin: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRole {
    pub slug: String,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub login: String,
    pub role: Role,
}

/// What a change to a membership did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberChange {
    Done,
    /// The app would be left without an owner; nothing changed.
    LastOwner,
    /// No such membership (removal) or app (change).
    Missing,
}

/// Fixed-window login throttling: failures counted per account and per client address.
pub const LOGIN_WINDOW_MS: u64 = 15 * 60_000;
pub const MAX_FAILURES_PER_ACCOUNT: u32 = 10;
pub const MAX_FAILURES_PER_ADDRESS: u32 = 100;
/// At most this many apps are listed or loaded into a principal (bounded per request).
pub const MAX_APPS: u32 = 1000;

/// The control plane's storage. Each method is one statement in D1, so each is atomic; rules that
/// depend on other rows (the last owner stays) are inside the statement, not decided from an
/// earlier read.
#[allow(async_fn_in_trait)]
pub trait ControlPlane {
    async fn user_by_login(&self, login: &str) -> Result<Option<UserRow>, ApiError>;
    async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>, ApiError>;
    /// `None` when the login is taken.
    async fn create_user(
        &self,
        login: &str,
        password_hash: &str,
        admin: bool,
        now_ms: u64,
    ) -> Result<Option<i64>, ApiError>;
    async fn set_password(&self, user_id: i64, password_hash: &str, now_ms: u64) -> Result<(), ApiError>;
    /// The user's memberships, at most [`MAX_APPS`].
    async fn roles_of(&self, user_id: i64) -> Result<Vec<AppRole>, ApiError>;
    async fn create_session(
        &self,
        digest_hex: &str,
        user_id: i64,
        kind: session::Kind,
        now_ms: u64,
        expires_at: u64,
    ) -> Result<(), ApiError>;
    async fn session(&self, digest_hex: &str) -> Result<Option<session::SessionRow>, ApiError>;
    async fn delete_session(&self, digest_hex: &str) -> Result<(), ApiError>;
    /// Signs the user out everywhere but `keep` (a password change).
    async fn delete_sessions_of(&self, user_id: i64, keep: Option<&str>) -> Result<(), ApiError>;
    /// Failures recorded for `key` in the window that contains `now_ms`.
    async fn login_failures(&self, key: &str, now_ms: u64) -> Result<u32, ApiError>;
    async fn note_login_failure(&self, key: &str, now_ms: u64) -> Result<(), ApiError>;
    async fn clear_login_failures(&self, key: &str) -> Result<(), ApiError>;
    /// Registers an app with its first owner; `false` when the slug is registered already.
    async fn create_app(&self, slug: &str, owner: i64, now_ms: u64) -> Result<bool, ApiError>;
    /// Every registered app (admins), at most [`MAX_APPS`], by slug.
    async fn all_apps(&self) -> Result<Vec<String>, ApiError>;
    async fn app_exists(&self, slug: &str) -> Result<bool, ApiError>;
    async fn members(&self, slug: &str) -> Result<Vec<Member>, ApiError>;
    /// Adds or changes a membership; never demotes the last owner.
    async fn set_member(&self, slug: &str, user_id: i64, role: Role, now_ms: u64) -> Result<MemberChange, ApiError>;
    /// Removes a membership; never the last owner.
    async fn remove_member(&self, slug: &str, user_id: i64) -> Result<MemberChange, ApiError>;
}

/// Loads a user principal: the user and their roles.
pub async fn principal(cp: &impl ControlPlane, user_id: i64) -> Result<UserPrincipal, ApiError> {
    let u = cp
        .user_by_id(user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("this session's user no longer exists: sign in again"))?;
    let roles = cp.roles_of(u.id).await?.into_iter().map(|r| (r.slug, r.role)).collect();
    Ok(UserPrincipal { id: u.id, login: u.login, admin: u.admin, roles })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_permits_exactly_its_actions() {
        use Action::*;
        let table = [
            (Role::Viewer, [Read].as_slice()),
            (Role::Publisher, &[Read, Publish, Rollback]),
            (Role::Owner, &[Read, Publish, Rollback, Delete, Manage]),
        ];
        for (role, allowed) in table {
            for a in [Read, Publish, Rollback, Delete, Manage, Admin] {
                assert_eq!(role.permits(a), allowed.contains(&a), "{role:?} {a:?}");
            }
        }
    }

    #[test]
    fn login_rules_refuse_unsafe_text() {
        for ok in ["alice", "a.b_c-d", "0x"] {
            assert!(login(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Alice", "-a", "a b", "a<script>", "é", &"a".repeat(65)] {
            assert_eq!(login(bad).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn role_names_round_trip() {
        for r in [Role::Viewer, Role::Publisher, Role::Owner] {
            assert_eq!(Role::parse(r.as_str()).unwrap(), r);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
        assert_eq!(Role::parse("admin").unwrap_err().status, 400);
    }
}
