//! Update health in the Worker. Check path: [`observe`] turns the check's headers into signals
//! and records them in this isolate's [`Aggregator`] — no I/O, no error, nothing awaited by the
//! response; when the aggregator asks, a flush is scheduled with `ctx.wait_until` (sleep, take
//! the app's batch, POST it to the app's `AppWriter`). In the object: [`serve`] ingests a batch
//! into its SQLite counters ([`SqlHealth`]) in one synchronous step (no await between reads
//! and writes, so no other request interleaves), then applies each halt the rule decided
//! through the writer's queue, appends the audit entry and posts the webhook. `HEALTH = "off"`
//! turns the check-path part off.

use super::writer::{AppWriter, BINDING};
use super::{header, internal, random16};
use crate::access::audit::AuditLog;
use crate::check::ManifestRequest;
use crate::config::Limits;
use crate::deploy::service::Ctx;
use crate::error::ApiError;
use crate::health::aggregate::Aggregator;
use crate::health::rule::Rule;
use crate::health::store::{self, Filter, HaltDecision, HealthError, HealthReport, HealthStore, UpdateKey, UpdateRow};
use crate::health::{self, notify, Batch, Kind, Signal};
use crate::storage::layout::Target;
use crate::storage::record::UpdateRecord;
use std::cell::{Cell, RefCell};
use std::time::Duration;
use worker::{
    console_error, console_log, Context, Date, Delay, Env, Fetch, Headers, Method, Request, RequestInit, Response,
    SqlStorage,
};

thread_local! {
    static AGGREGATOR: RefCell<Aggregator> = RefCell::new(Aggregator::default());
    /// HEALTH, read once per isolate (vars cannot change under a running isolate).
    static ON: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Records what this check says about update health. Only checks answered from a channel that
/// serves something count (so made-up slugs cost nothing).
pub fn observe(
    env: &Env,
    wctx: &Context,
    req: &Request,
    mreq: &ManifestRequest,
    served: Option<&UpdateRecord>,
    origin: &str,
) {
    if !enabled(env) {
        return;
    }
    let Some(served) = served else { return };
    let signals = health::signals::from_manifest_request(mreq, header(req, "eas-client-id").as_deref());
    record(env, wctx, &mreq.target, &served.id, &signals, origin);
}

/// `HEALTH`, read once per isolate.
pub fn enabled(env: &Env) -> bool {
    ON.with(|c| match c.get() {
        Some(on) => on,
        None => {
            let on = health::enabled(env.var("HEALTH").ok().map(|v| v.to_string()).as_deref());
            c.set(Some(on));
            on
        }
    })
}

/// Records already-parsed signals (any protocol) about `target`, whose channel serves `served`,
/// in this isolate's batch, and schedules the flush the aggregator asks for.
pub fn record(env: &Env, wctx: &Context, target: &Target, served: &str, signals: &[Signal], origin: &str) {
    if signals.is_empty() {
        return;
    }
    let now = Date::now().as_millis();
    let delay = AGGREGATOR.with(|a| a.borrow_mut().record(target, Some(served), signals, now));
    if let Some(delay) = delay {
        let (env, slug, origin) = (env.clone(), target.slug.to_string(), origin.to_string());
        let due = now + delay;
        wctx.wait_until(async move {
            if delay > 0 {
                Delay::from(Duration::from_millis(delay)).await;
            }
            // The clock may not have moved past `due` inside the isolate; the wake-up is for `due`.
            let now = Date::now().as_millis().max(due);
            let batch = AGGREGATOR.with(|a| {
                let mut a = a.borrow_mut();
                let b = a.take(&slug, now);
                a.forget_idle(now);
                b
            });
            if let Some(batch) = batch {
                if let Err(e) = flush(&env, &origin, batch).await {
                    console_error!("{}", serde_json::json!({"event": "health_flush_failed", "error": e.message}));
                }
            }
        });
    }
}

/// The origin asset URLs are built under (a halt republishes), beside the batch.
const ORIGIN_HEADER: &str = "x-ota-origin";

async fn flush(env: &Env, origin: &str, batch: Batch) -> Result<(), ApiError> {
    let body = serde_json::to_string(&batch).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut resp = call(env, &batch.slug, "/health", Some(origin), body).await?;
    match resp.status_code() {
        200..=299 => Ok(()),
        s => {
            let why = resp.text().await.unwrap_or_default();
            Err(ApiError::internal(format!("the app's writer answered {s} to a health flush: {why}")))
        }
    }
}

async fn call(env: &Env, slug: &str, path: &str, origin: Option<&str>, body: String) -> Result<Response, ApiError> {
    let ns = env.durable_object(BINDING).map_err(internal)?;
    let stub = ns.id_from_name(slug).map_err(internal)?.get_stub().map_err(internal)?;
    let headers = Headers::new();
    if let Some(o) = origin {
        headers.set(ORIGIN_HEADER, o).map_err(internal)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(body.into()));
    let req = Request::new_with_init(&format!("https://app-writer.internal{path}"), &init).map_err(internal)?;
    stub.fetch_with_request(req).await.map_err(internal)
}

/// `GET /api/health`: the report's JSON, rendered by the app's object (its counters live
/// there) and passed through as is.
pub async fn report(env: &Env, filter: &Filter) -> Result<Vec<u8>, ApiError> {
    let path = format!("/health/report?{}", filter.to_query());
    let mut resp = call(env, &filter.slug, &path, None, String::new()).await?;
    if resp.status_code() == 200 {
        return resp.bytes().await.map_err(internal);
    }
    let text = resp.text().await.map_err(internal)?;
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| "the app's writer could not read its health counters".into());
    Err(ApiError::new(resp.status_code(), message))
}

fn rule(env: &Env) -> Result<Rule, ApiError> {
    Rule::from_vars(&|n| env.var(n).ok().map(|v| v.to_string()))
}

/// The object's side: `/health` (ingest a flush) and `/health/report`.
pub async fn serve(w: &AppWriter, mut req: Request) -> worker::Result<Response> {
    let store = SqlHealth(&w.sql);
    let result: Result<Option<HealthReport>, ApiError> = async {
        let rule = rule(&w.env)?;
        if req.path() == "/health/report" {
            let url = req.url().map_err(internal)?;
            let filter = Filter::from_query(url.query().unwrap_or(""))?;
            return Ok(Some(store::report(&store, &filter, &rule)?));
        }
        let origin = header(&req, ORIGIN_HEADER).unwrap_or_default();
        // serde_json on the text, not `req.json()`: install-id hashes are u64s, which a
        // JavaScript number cannot hold.
        let text = req.text().await.map_err(internal)?;
        let batch: Batch =
            serde_json::from_str(&text).map_err(|e| ApiError::bad_request(format!("bad health flush: {e}")))?;
        let halts = store::ingest(&store, &batch, &rule, Date::now().as_millis())?;
        for d in halts {
            halt(w, &store, d, &origin).await;
        }
        Ok(None)
    }
    .await;
    match result {
        Ok(Some(report)) => Response::from_json(&report),
        Ok(None) => Response::empty(),
        Err(e) => Ok(Response::from_json(&serde_json::json!({"error": e.message}))?.with_status(e.status)),
    }
}

/// Applies a decided halt through the writer's queue, then audits it and posts the webhook.
/// Failures of the last two are logged only: the halt stands either way.
async fn halt(w: &AppWriter, store: &SqlHealth<'_>, d: HaltDecision, origin: &str) {
    let op = d.write_op();
    let applied = w.run(op, origin).await;
    let (status, error) = match &applied {
        Ok(_) => (201, None),
        Err(e) => (e.status, Some(e.message.clone())),
    };
    console_log!(
        "{}",
        serde_json::json!({"event": "auto_halt", "slug": d.key.target.slug.as_str(), "updateId": d.key.update_id,
            "reason": d.reason, "status": status, "error": error})
    );
    if let Some(e) = &error {
        if let Err(e) = store::note_halt_error(store, &d.key, e) {
            console_error!("{}", serde_json::json!({"event": "health_store_failed", "error": e.to_string()}));
        }
    }
    let audited = async {
        let limits = Limits::from_vars(&|n| w.env.var(n).ok().map(|v| v.to_string()))?;
        let ctx = Ctx { origin, now_ms: Date::now().as_millis(), limits, random: &random16 };
        super::audit_d1::D1Audit::from_env(&w.env)?
            .append(notify::audit_entry(&d, status, error.as_deref()), &ctx)
            .await
    }
    .await;
    if let Err(e) = audited {
        console_error!("{}", serde_json::json!({"event": "audit_write_failed", "error": e.message}));
    }
    if let Err(e) = webhook(&w.env, &d, error.is_none()).await {
        console_error!("{}", serde_json::json!({"event": "health_webhook_failed", "error": e.to_string()}));
    }
}

async fn webhook(env: &Env, d: &HaltDecision, applied: bool) -> worker::Result<()> {
    let Some(url) = env.var("HEALTH_WEBHOOK_URL").ok().map(|v| v.to_string()).filter(|u| !u.is_empty()) else {
        return Ok(());
    };
    let body = notify::webhook_body(d, applied);
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    if let Ok(secret) = env.secret("HEALTH_WEBHOOK_SECRET") {
        headers.set(notify::SIGNATURE_HEADER, &notify::signature(&secret.to_string(), &body))?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(body.into()));
    let resp = Fetch::Request(Request::new_with_init(&url, &init)?).send().await?;
    if !(200..300).contains(&resp.status_code()) {
        return Err(worker::Error::RustError(format!("webhook answered {}", resp.status_code())));
    }
    Ok(())
}

/// Creates the object's health tables (idempotent; called when the object starts).
pub fn migrate(sql: &SqlStorage) {
    for stmt in [
        "CREATE TABLE IF NOT EXISTS health_rows(k TEXT PRIMARY KEY, platform TEXT NOT NULL, rv TEXT NOT NULL, \
         channel TEXT NOT NULL, row TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS health_devices(k TEXT NOT NULL, kind INTEGER NOT NULL, client TEXT NOT NULL, \
         PRIMARY KEY (k, kind, client)) WITHOUT ROWID",
    ] {
        if let Err(e) = sql.exec(stmt, None) {
            console_error!("{}", serde_json::json!({"event": "health_migration_failed", "error": e.to_string()}));
        }
    }
}

/// The counters in the object's SQLite storage: one JSON row per update, one row per counted
/// device (install-id hash as hex text: SQLite integers cross JavaScript as doubles).
pub struct SqlHealth<'a>(pub &'a SqlStorage);

/// The first column of every row, as text. Raw rows, not `to_array`: serde-wasm-bindgen would
/// add ~15 KB of wasm for one text column.
fn texts(cursor: worker::Result<worker::SqlCursor>) -> Result<Vec<String>, HealthError> {
    let mut out = Vec::new();
    for row in cursor.map_err(storage)?.raw() {
        match row.map_err(storage)?.into_iter().next() {
            Some(worker::SqlStorageValue::String(s)) => out.push(s),
            Some(_) => out.push(String::new()),
            None => {}
        }
    }
    Ok(out)
}

fn storage(e: impl std::fmt::Display) -> HealthError {
    HealthError::Storage(e.to_string())
}

impl HealthStore for SqlHealth<'_> {
    fn load(&self, key: &UpdateKey) -> Result<Option<UpdateRow>, HealthError> {
        let rows = texts(self.0.exec("SELECT row FROM health_rows WHERE k = ?", vec![key.id().into()]))?;
        rows.first().map(|r| serde_json::from_str(r).map_err(storage)).transpose()
    }

    fn save(&self, row: &UpdateRow) -> Result<(), HealthError> {
        let json = serde_json::to_string(row).map_err(storage)?;
        let t = &row.target;
        self.0
            .exec(
                "INSERT INTO health_rows(k, platform, rv, channel, row) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT(k) DO UPDATE SET row = excluded.row",
                vec![
                    row.key().id().into(),
                    t.platform.as_str().into(),
                    t.runtime_version.to_string().into(),
                    row.channel.clone().into(),
                    json.into(),
                ],
            )
            .map(|_| ())
            .map_err(storage)
    }

    fn add_device(&self, key: &UpdateKey, kind: Kind, client: u64) -> Result<bool, HealthError> {
        let kind = i64::from(kind == Kind::Failed);
        let inserted = texts(self.0.exec(
            "INSERT OR IGNORE INTO health_devices(k, kind, client) VALUES (?, ?, ?) RETURNING 'new'",
            vec![key.id().into(), kind.into(), format!("{client:016x}").into()],
        ))?;
        Ok(!inserted.is_empty())
    }

    fn rows(&self, f: &Filter) -> Result<Vec<UpdateRow>, HealthError> {
        let opt = |v: &Option<String>| -> worker::SqlStorageValue { v.clone().into() };
        let rows = texts(self.0.exec(
            "SELECT row FROM health_rows WHERE (? IS NULL OR platform = ?) AND (? IS NULL OR rv = ?) \
             AND (? IS NULL OR channel = ?)",
            vec![
                opt(&f.platform),
                opt(&f.platform),
                opt(&f.runtime_version),
                opt(&f.runtime_version),
                opt(&f.channel),
                opt(&f.channel),
            ],
        ))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let row: UpdateRow = serde_json::from_str(&r).map_err(storage)?;
            if f.matches(&row) {
                out.push(row);
            }
        }
        Ok(out)
    }
}
