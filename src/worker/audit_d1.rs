//! The audit log in D1 (table `audit`, `migrations/0002_audit.sql`). The core decides what an
//! entry holds and who may read which page; this only stores the sanitized JSON (at most
//! [`audit::MAX_ENTRY_BYTES`]) beside the columns reads filter and order by, and reads pages newest
//! first by keyset (`(at, id)` below the cursor), `limit + 1` rows at most.

use super::d1::BINDING;
use super::internal;
use crate::access::audit::{self, AuditEntry, AuditList, AuditLog, AuditQuery, AuditRow, StoredEntry};
use crate::deploy::service::Ctx;
use crate::error::ApiError;
use crate::protocol::time;
use crate::validate;
use js_sys::Array;
use wasm_bindgen::{JsCast, JsValue};
use worker::{D1Database, Env};

/// Entries moved from R2 per cron run: one R2 listing, one D1 batch, one R2 delete (plus one
/// read per entry too large for R2 custom metadata), far below a run's subrequest budget.
pub const MOVE_PER_RUN: usize = 100;

pub struct D1Audit(D1Database);

impl D1Audit {
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        env.d1(BINDING).map(D1Audit).map_err(|e| {
            ApiError::internal(format!("the D1 binding {BINDING} is missing (wrangler.toml [[d1_databases]]): {e}"))
        })
    }

    /// Moves one page of entries still in R2 (written before the log moved to D1) into D1,
    /// then deletes them from R2; returns how many moved. Idempotent: an entry inserted before
    /// a failed delete is ignored the next time (unique `r2_key`).
    pub async fn move_from_r2<S: crate::storage::store::ObjectStore>(&self, store: &S) -> Result<usize, ApiError> {
        let page = audit::take_stored_page(store, MOVE_PER_RUN).await?;
        if !page.is_empty() {
            self.import(&page).await?;
        }
        audit::delete_stored(store, &page).await?;
        Ok(page.len())
    }

    async fn import(&self, entries: &[StoredEntry]) -> Result<(), ApiError> {
        let sql = "INSERT OR IGNORE INTO audit (at, actor, action, slug, status, entry, r2_key) \
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
        let mut stmts = Vec::with_capacity(entries.len());
        for e in entries {
            let mut args = columns(&e.entry, e.ms);
            args.push(JsValue::from_str(&e.name));
            stmts.push(self.0.prepare(sql).bind(&args).map_err(d1)?);
        }
        self.0.batch(stmts).await.map_err(d1)?;
        Ok(())
    }
}

/// at, actor, action, slug, status, entry: of the sanitized entry.
fn columns(entry: &AuditEntry, ms: u64) -> Vec<JsValue> {
    let e = entry.clone().sanitized();
    let json = e.to_capped_json();
    vec![
        JsValue::from_f64(ms as f64),
        JsValue::from_str(&e.actor),
        JsValue::from_str(&e.action),
        e.slug.as_deref().map_or(JsValue::NULL, JsValue::from_str),
        JsValue::from_f64(f64::from(e.status)),
        JsValue::from_str(&json),
    ]
}

impl AuditLog for D1Audit {
    async fn append(&self, mut entry: AuditEntry, ctx: &Ctx<'_>) -> Result<(), ApiError> {
        entry.at = time::format_millis(ctx.now_ms);
        let sql = "INSERT INTO audit (at, actor, action, slug, status, entry) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
        self.0.prepare(sql).bind(&columns(&entry, ctx.now_ms)).map_err(d1)?.run().await.map_err(d1)?;
        Ok(())
    }

    async fn list_page(&self, q: &AuditQuery) -> Result<AuditList, ApiError> {
        let limit = q.limit.clamp(1, audit::MAX_LIMIT);
        let mut sql = String::from("SELECT at, id, entry FROM audit WHERE at >= ?1");
        let mut args = vec![JsValue::from_f64(q.since_ms as f64)];
        if let Some(slug) = &q.slug {
            args.push(JsValue::from_str(validate::slug(slug)?));
            sql.push_str(&format!(" AND slug = ?{}", args.len()));
        }
        if let Some(c) = &q.before {
            let (ms, id) = audit::parse_row_cursor(c).ok_or_else(|| {
                ApiError::bad_request("invalid audit cursor: pass a previous answer's nextCursor as before= unchanged")
            })?;
            args.push(JsValue::from_f64(ms as f64));
            args.push(JsValue::from_f64(f64::from(id)));
            let (a, i) = (args.len() - 1, args.len());
            sql.push_str(&format!(" AND (at < ?{a} OR (at = ?{a} AND id < ?{i}))"));
        }
        sql.push_str(&format!(" ORDER BY at DESC, id DESC LIMIT {}", limit + 1));
        let rows = self.0.prepare(&sql).bind(&args).map_err(d1)?.raw_js_value().await.map_err(d1)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let r: Array = r.unchecked_into();
            let num =
                |i: u32| r.get(i).as_f64().ok_or_else(|| internal(format!("audit table: column {i} is not a number")));
            out.push(AuditRow {
                ms: num(0)? as u64,
                id: num(1)? as u32,
                json: r.get(2).as_string().ok_or_else(|| internal("audit table: entry is not text"))?,
            });
        }
        Ok(audit::page_from_rows(out, limit))
    }
}

/// "no such table" means migrations/0002_audit.sql was not applied: say how.
fn d1(e: worker::Error) -> ApiError {
    let m = e.to_string();
    if m.contains("no such table") {
        return ApiError::internal(format!(
            "the audit table is missing: run `npx wrangler d1 migrations apply {BINDING}` (--local or --remote) ({m})"
        ));
    }
    internal(m)
}
