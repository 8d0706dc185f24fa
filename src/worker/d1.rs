//! The control plane in D1 (binding `DB`, schema in `migrations/`). Each method is one statement
//! (or one batch, which D1 runs as a transaction), so the rules that depend on other rows — the
//! last owner of an app stays — are decided inside the statement that writes, never from an
//! earlier read.

use super::internal;
use crate::access::accounts::session::{Kind, SessionRow};
use crate::access::accounts::{AppRole, ControlPlane, Member, MemberChange, Role, UserRow, LOGIN_WINDOW_MS, MAX_APPS};
use crate::error::ApiError;
use js_sys::Array;
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

pub const BINDING: &str = "DB";

pub struct D1Plane(D1Database);

impl D1Plane {
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        env.d1(BINDING).map(D1Plane).map_err(|e| {
            ApiError::internal(format!("the D1 binding {BINDING} is missing (wrangler.toml [[d1_databases]]): {e}"))
        })
    }

    fn stmt(&self, sql: &str, args: &[JsValue]) -> Result<D1PreparedStatement, ApiError> {
        self.0.prepare(sql).bind(args).map_err(d1)
    }

    async fn changes(&self, sql: &str, args: &[JsValue]) -> Result<usize, ApiError> {
        let r = self.stmt(sql, args)?.run().await.map_err(d1)?;
        Ok(r.meta().map_err(d1)?.and_then(|m| m.changes).unwrap_or(0))
    }

    /// Rows as arrays of column values in SELECT order (read by [`Row`], no serde in between:
    /// a deserializer per row type would grow the wasm for nothing).
    async fn all(&self, sql: &str, args: &[JsValue]) -> Result<Vec<Row>, ApiError> {
        let rows = self.stmt(sql, args)?.raw_js_value().await.map_err(d1)?;
        Ok(rows.into_iter().map(|r| Row(r.unchecked_into())).collect())
    }

    async fn first(&self, sql: &str, args: &[JsValue]) -> Result<Option<Row>, ApiError> {
        Ok(self.all(sql, args).await?.into_iter().next())
    }
}

/// One result row: column values by position.
struct Row(Array);

impl Row {
    fn str(&self, i: u32) -> Result<String, ApiError> {
        self.0
            .get(i)
            .as_string()
            .ok_or_else(|| ApiError::internal(format!("accounts database: column {i} is not text")))
    }
    fn num(&self, i: u32) -> Result<f64, ApiError> {
        self.0
            .get(i)
            .as_f64()
            .ok_or_else(|| ApiError::internal(format!("accounts database: column {i} is not a number")))
    }
    fn user(&self) -> Result<UserRow, ApiError> {
        Ok(UserRow {
            id: self.num(0)? as i64,
            login: self.str(1)?,
            password_hash: self.str(2)?,
            admin: self.num(3)? != 0.0,
        })
    }
}

/// "no such table" means the migrations were not applied: say how.
fn d1(e: worker::Error) -> ApiError {
    let m = e.to_string();
    if m.contains("no such table") {
        return ApiError::internal(format!(
            "the accounts database has no schema: run `npx wrangler d1 migrations apply {BINDING}` (--local or --remote) ({m})"
        ));
    }
    internal(m)
}

fn s(v: &str) -> JsValue {
    JsValue::from_str(v)
}

/// Integers cross into JS as numbers: ids and millisecond times are far below 2^53.
fn n(v: impl Into<f64>) -> JsValue {
    JsValue::from_f64(v.into())
}

fn ms(v: u64) -> JsValue {
    JsValue::from_f64(v as f64)
}

fn role(s: &str) -> Result<Role, ApiError> {
    Role::parse(s).map_err(|_| ApiError::internal(format!("unknown role {s:?} in the accounts database")))
}

const USER_COLUMNS: &str = "SELECT id, login, password_hash, is_admin FROM users";

impl ControlPlane for D1Plane {
    async fn user_by_login(&self, login: &str) -> Result<Option<UserRow>, ApiError> {
        self.first(&format!("{USER_COLUMNS} WHERE login = ?1"), &[s(login)]).await?.map(|r| r.user()).transpose()
    }
    async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>, ApiError> {
        self.first(&format!("{USER_COLUMNS} WHERE id = ?1"), &[n(id as f64)]).await?.map(|r| r.user()).transpose()
    }
    async fn create_user(&self, login: &str, hash: &str, admin: bool, now: u64) -> Result<Option<i64>, ApiError> {
        let sql = "INSERT INTO users (login, password_hash, is_admin, created_at, password_changed_at) \
                   VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT(login) DO NOTHING RETURNING id";
        let row = self.first(sql, &[s(login), s(hash), n(u8::from(admin)), ms(now)]).await?;
        row.map(|r| r.num(0).map(|id| id as i64)).transpose()
    }
    async fn set_password(&self, user_id: i64, hash: &str, now: u64) -> Result<(), ApiError> {
        let sql = "UPDATE users SET password_hash = ?2, password_changed_at = ?3 WHERE id = ?1";
        self.changes(sql, &[n(user_id as f64), s(hash), ms(now)]).await.map(|_| ())
    }
    async fn roles_of(&self, user_id: i64) -> Result<Vec<AppRole>, ApiError> {
        let sql = format!(
            "SELECT app_slug AS slug, role FROM memberships WHERE user_id = ?1 ORDER BY app_slug LIMIT {MAX_APPS}"
        );
        let rows = self.all(&sql, &[n(user_id as f64)]).await?;
        rows.into_iter().map(|r| Ok(AppRole { slug: r.str(0)?, role: role(&r.str(1)?)? })).collect()
    }
    async fn create_session(&self, d: &str, user_id: i64, kind: Kind, now: u64, exp: u64) -> Result<(), ApiError> {
        let sql =
            "INSERT INTO sessions (token_hash, user_id, kind, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)";
        self.changes(sql, &[s(d), n(user_id as f64), s(kind.as_str()), ms(now), ms(exp)]).await.map(|_| ())
    }
    async fn session(&self, d: &str) -> Result<Option<SessionRow>, ApiError> {
        let sql = "SELECT user_id, kind, expires_at FROM sessions WHERE token_hash = ?1";
        let Some(r) = self.first(sql, &[s(d)]).await? else { return Ok(None) };
        let kind = Kind::parse(&r.str(1)?).ok_or_else(|| ApiError::internal("unknown session kind in the database"))?;
        Ok(Some(SessionRow { user_id: r.num(0)? as i64, kind, expires_at: r.num(2)? as u64 }))
    }
    async fn delete_session(&self, d: &str) -> Result<(), ApiError> {
        self.changes("DELETE FROM sessions WHERE token_hash = ?1", &[s(d)]).await.map(|_| ())
    }
    async fn delete_sessions_of(&self, user_id: i64, keep: Option<&str>) -> Result<(), ApiError> {
        let sql = "DELETE FROM sessions WHERE user_id = ?1 AND token_hash != ?2";
        self.changes(sql, &[n(user_id as f64), s(keep.unwrap_or(""))]).await.map(|_| ())
    }
    async fn login_failures(&self, key: &str, now: u64) -> Result<u32, ApiError> {
        let sql = "SELECT failures AS n FROM login_attempts WHERE key = ?1 AND window_start > ?2";
        let row = self.first(sql, &[s(key), ms(now.saturating_sub(LOGIN_WINDOW_MS))]).await?;
        Ok(row.map(|r| r.num(0)).transpose()?.map_or(0, |n| n as u32))
    }
    async fn note_login_failure(&self, key: &str, now: u64) -> Result<(), ApiError> {
        // A window that ended starts again at 1; otherwise the count grows. SET reads old values.
        let sql = "INSERT INTO login_attempts (key, window_start, failures) VALUES (?1, ?2, 1) \
                   ON CONFLICT(key) DO UPDATE SET \
                   failures = CASE WHEN window_start <= ?3 THEN 1 ELSE failures + 1 END, \
                   window_start = CASE WHEN window_start <= ?3 THEN ?2 ELSE window_start END";
        self.changes(sql, &[s(key), ms(now), ms(now.saturating_sub(LOGIN_WINDOW_MS))]).await.map(|_| ())
    }
    async fn clear_login_failures(&self, key: &str) -> Result<(), ApiError> {
        self.changes("DELETE FROM login_attempts WHERE key = ?1", &[s(key)]).await.map(|_| ())
    }
    async fn create_app(&self, slug: &str, owner: i64, now: u64) -> Result<bool, ApiError> {
        // One transaction: the app, and its first owner only when the app has no member yet (so
        // a slug registered meanwhile never gains an owner from this request).
        let app = self.stmt(
            "INSERT INTO apps (slug, created_at, created_by) VALUES (?1, ?2, ?3) ON CONFLICT(slug) DO NOTHING",
            &[s(slug), ms(now), n(owner as f64)],
        )?;
        let member = self.stmt(
            "INSERT INTO memberships (app_slug, user_id, role, created_at) SELECT ?1, ?2, 'owner', ?3 \
             WHERE NOT EXISTS (SELECT 1 FROM memberships WHERE app_slug = ?1)",
            &[s(slug), n(owner as f64), ms(now)],
        )?;
        let results = self.0.batch(vec![app, member]).await.map_err(d1)?;
        let created = results.first().and_then(|r| r.meta().ok().flatten()).and_then(|m| m.changes).unwrap_or(0);
        Ok(created == 1)
    }
    async fn all_apps(&self) -> Result<Vec<String>, ApiError> {
        let sql = format!("SELECT slug FROM apps ORDER BY slug LIMIT {MAX_APPS}");
        self.all(&sql, &[]).await?.into_iter().map(|r| r.str(0)).collect()
    }
    async fn app_exists(&self, slug: &str) -> Result<bool, ApiError> {
        Ok(self.first("SELECT slug FROM apps WHERE slug = ?1", &[s(slug)]).await?.is_some())
    }
    async fn members(&self, slug: &str) -> Result<Vec<Member>, ApiError> {
        let sql = format!(
            "SELECT u.login AS login, m.role AS role FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.app_slug = ?1 ORDER BY u.login LIMIT {MAX_APPS}"
        );
        let rows = self.all(&sql, &[s(slug)]).await?;
        rows.into_iter().map(|r| Ok(Member { login: r.str(0)?, role: role(&r.str(1)?)? })).collect()
    }
    async fn set_member(&self, slug: &str, user_id: i64, r: Role, now: u64) -> Result<MemberChange, ApiError> {
        let sql = "INSERT INTO memberships (app_slug, user_id, role, created_at) \
                   SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM apps WHERE slug = ?1) \
                   ON CONFLICT(app_slug, user_id) DO UPDATE SET role = excluded.role \
                   WHERE memberships.role != 'owner' OR excluded.role = 'owner' \
                   OR (SELECT count(*) FROM memberships WHERE app_slug = ?1 AND role = 'owner') > 1";
        if self.changes(sql, &[s(slug), n(user_id as f64), s(r.as_str()), ms(now)]).await? == 1 {
            return Ok(MemberChange::Done);
        }
        Ok(if self.app_exists(slug).await? { MemberChange::LastOwner } else { MemberChange::Missing })
    }
    async fn remove_member(&self, slug: &str, user_id: i64) -> Result<MemberChange, ApiError> {
        let sql = "DELETE FROM memberships WHERE app_slug = ?1 AND user_id = ?2 AND (role != 'owner' \
                   OR (SELECT count(*) FROM memberships WHERE app_slug = ?1 AND role = 'owner') > 1)";
        if self.changes(sql, &[s(slug), n(user_id as f64)]).await? == 1 {
            return Ok(MemberChange::Done);
        }
        let still = "SELECT app_slug AS slug, role FROM memberships WHERE app_slug = ?1 AND user_id = ?2";
        let member = self.first(still, &[s(slug), n(user_id as f64)]).await?;
        Ok(if member.is_some() { MemberChange::LastOwner } else { MemberChange::Missing })
    }
}
