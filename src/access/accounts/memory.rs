//! The control plane in memory, for host tests and the CLI's native test server. It keeps the
//! same rules the D1 statements do (unique logins, the last owner stays, sessions by digest).

use super::session::{Kind, SessionRow};
use super::{AppRole, ControlPlane, Member, MemberChange, Role, UserRow, LOGIN_WINDOW_MS, MAX_APPS};
use crate::error::ApiError;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
struct State {
    users: Vec<UserRow>,
    apps: BTreeMap<String, ()>,
    /// (slug, user id) → role
    members: BTreeMap<(String, i64), Role>,
    sessions: BTreeMap<String, SessionRow>,
    /// key → (window start, failures)
    attempts: BTreeMap<String, (u64, u32)>,
}

/// Behind a mutex so a multi-threaded test server can share it; no lock is held across an await.
#[derive(Default)]
pub struct MemoryControlPlane(Mutex<State>);

impl MemoryControlPlane {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn owners(s: &State, slug: &str) -> usize {
        s.members.iter().filter(|((a, _), r)| a == slug && **r == Role::Owner).count()
    }
}

impl ControlPlane for MemoryControlPlane {
    async fn user_by_login(&self, login: &str) -> Result<Option<UserRow>, ApiError> {
        Ok(self.lock().users.iter().find(|u| u.login == login).cloned())
    }
    async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>, ApiError> {
        Ok(self.lock().users.iter().find(|u| u.id == id).cloned())
    }
    async fn create_user(&self, login: &str, hash: &str, admin: bool, _now: u64) -> Result<Option<i64>, ApiError> {
        let mut s = self.lock();
        if s.users.iter().any(|u| u.login == login) {
            return Ok(None);
        }
        let id = s.users.len() as i64 + 1;
        s.users.push(UserRow { id, login: login.into(), password_hash: hash.into(), admin });
        Ok(Some(id))
    }
    async fn set_password(&self, user_id: i64, hash: &str, _now: u64) -> Result<(), ApiError> {
        if let Some(u) = self.lock().users.iter_mut().find(|u| u.id == user_id) {
            u.password_hash = hash.into();
        }
        Ok(())
    }
    async fn roles_of(&self, user_id: i64) -> Result<Vec<AppRole>, ApiError> {
        let s = self.lock();
        let roles = s.members.iter().filter(|((_, u), _)| *u == user_id);
        Ok(roles.take(MAX_APPS as usize).map(|((slug, _), role)| AppRole { slug: slug.clone(), role: *role }).collect())
    }
    async fn create_session(&self, d: &str, user_id: i64, kind: Kind, _now: u64, exp: u64) -> Result<(), ApiError> {
        self.lock().sessions.insert(d.into(), SessionRow { user_id, kind, expires_at: exp });
        Ok(())
    }
    async fn session(&self, d: &str) -> Result<Option<SessionRow>, ApiError> {
        Ok(self.lock().sessions.get(d).cloned())
    }
    async fn delete_session(&self, d: &str) -> Result<(), ApiError> {
        self.lock().sessions.remove(d);
        Ok(())
    }
    async fn delete_sessions_of(&self, user_id: i64, keep: Option<&str>) -> Result<(), ApiError> {
        self.lock().sessions.retain(|d, r| r.user_id != user_id || Some(d.as_str()) == keep);
        Ok(())
    }
    async fn login_failures(&self, key: &str, now: u64) -> Result<u32, ApiError> {
        let s = self.lock();
        Ok(s.attempts.get(key).filter(|(start, _)| *start + LOGIN_WINDOW_MS > now).map_or(0, |(_, n)| *n))
    }
    async fn note_login_failure(&self, key: &str, now: u64) -> Result<(), ApiError> {
        let mut s = self.lock();
        let e = s.attempts.entry(key.into()).or_insert((now, 0));
        if e.0 + LOGIN_WINDOW_MS <= now {
            *e = (now, 0);
        }
        e.1 += 1;
        Ok(())
    }
    async fn clear_login_failures(&self, key: &str) -> Result<(), ApiError> {
        self.lock().attempts.remove(key);
        Ok(())
    }
    async fn create_app(&self, slug: &str, owner: i64, _now: u64) -> Result<bool, ApiError> {
        let mut s = self.lock();
        if s.apps.contains_key(slug) {
            return Ok(false);
        }
        s.apps.insert(slug.into(), ());
        s.members.insert((slug.into(), owner), Role::Owner);
        Ok(true)
    }
    async fn all_apps(&self) -> Result<Vec<String>, ApiError> {
        Ok(self.lock().apps.keys().take(MAX_APPS as usize).cloned().collect())
    }
    async fn app_exists(&self, slug: &str) -> Result<bool, ApiError> {
        Ok(self.lock().apps.contains_key(slug))
    }
    async fn members(&self, slug: &str) -> Result<Vec<Member>, ApiError> {
        let s = self.lock();
        let login = |id: i64| s.users.iter().find(|u| u.id == id).map(|u| u.login.clone()).unwrap_or_default();
        let mut out: Vec<Member> = s
            .members
            .iter()
            .filter(|((a, _), _)| a == slug)
            .map(|((_, u), r)| Member { login: login(*u), role: *r })
            .collect();
        out.sort_by(|a, b| a.login.cmp(&b.login));
        Ok(out)
    }
    async fn set_member(&self, slug: &str, user_id: i64, role: Role, _now: u64) -> Result<MemberChange, ApiError> {
        let mut s = self.lock();
        if !s.apps.contains_key(slug) {
            return Ok(MemberChange::Missing);
        }
        let key = (slug.to_string(), user_id);
        if s.members.get(&key) == Some(&Role::Owner) && role != Role::Owner && Self::owners(&s, slug) <= 1 {
            return Ok(MemberChange::LastOwner);
        }
        s.members.insert(key, role);
        Ok(MemberChange::Done)
    }
    async fn remove_member(&self, slug: &str, user_id: i64) -> Result<MemberChange, ApiError> {
        let mut s = self.lock();
        let key = (slug.to_string(), user_id);
        match s.members.get(&key) {
            None => Ok(MemberChange::Missing),
            Some(Role::Owner) if Self::owners(&s, slug) <= 1 => Ok(MemberChange::LastOwner),
            Some(_) => {
                s.members.remove(&key);
                Ok(MemberChange::Done)
            }
        }
    }
}
