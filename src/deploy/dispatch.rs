//! The deploy API in one place. Given a parsed route, the authenticated caller and what the
//! backend provides (an object store, the per-app [`Writer`], a request [`Body`]), [`handle`]
//! authorizes, runs the operation and returns the reply together with the audit entry to append,
//! the check-cache prefixes to invalidate and the follow-up writes to run after responding.
//! Adapters (the Worker, the CLI's test server) translate I/O and perform what it returns; no
//! rule about who may do what, or what is audited, lives anywhere else.

use crate::access::audit::{self, AuditEntry};
use crate::access::auth::{self, Action, Principal};
use crate::access::tokens;
use crate::check::{Reply, DEFAULT_CHANNEL};
use crate::deploy::api::{
    CommitRequest, PrepareRequest, PromoteRequest, ReleaseResponse, RollbackRequest, UploadResponse,
};
use crate::deploy::formpublish::{self, FormPublish};
use crate::deploy::release;
use crate::deploy::service::{self, Ctx, UploadHeaders};
use crate::deploy::writer::{WriteOp, WriteOutcome, Writer};
use crate::error::ApiError;
use crate::http::route::{query_param, Route};
use crate::protocol::{hash, time};
use crate::storage::layout::Target;
use crate::storage::store::{ObjectMeta, ObjectStore};
use crate::validate;
use serde::Serialize;

/// What a backend provides to the deploy API.
pub trait Backend {
    type Store: ObjectStore;
    type Writer: Writer;
    fn store(&self) -> &Self::Store;
    fn writer(&self) -> &Self::Writer;
}

/// A request body: read in chunks by the core (JSON, forms), or streamed by the backend into
/// storage without passing through the core (file uploads: R2 verifies the digest as it stores).
#[allow(async_fn_in_trait)]
pub trait Body {
    async fn chunk(&mut self) -> Option<Result<Vec<u8>, ApiError>>;
    async fn store_file(&mut self, key: &str, up: &UploadHeaders, sha256: [u8; 32]) -> Result<ObjectMeta, ApiError>;
}

/// The parts of an HTTP request the deploy API reads besides the body.
pub struct Request<'a> {
    pub route: Route,
    pub query: &'a str,
    /// Header lookup by lowercase name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
}

/// What the adapter must do with a handled request.
#[derive(Debug)]
pub struct Handled {
    pub reply: Result<Reply, ApiError>,
    /// Append to the audit log (refusals included).
    pub audit: Option<AuditEntry>,
    /// Key prefixes whose cached channel pointers are stale now.
    pub invalidate: Vec<String>,
    /// Writes to run after the response (file collection after a delete).
    pub after: Vec<WriteOp>,
}

/// Who may call `route`: the action and the app it acts on (`None`: not app-specific).
pub fn requirement(route: &Route, query: &str) -> Result<(Action, Option<String>), ApiError> {
    let app = |t: &Target| Some(t.slug.clone());
    Ok(match route {
        Route::PublishPrepare { target } | Route::UploadFile { target, .. } | Route::PublishCommit { target } => {
            (Action::Publish, app(target))
        }
        Route::PublishForm { slug } => (Action::Publish, Some(slug.clone())),
        Route::Rollback { target } | Route::Promote { target } => (Action::Rollback, app(target)),
        Route::ListUpdates => (Action::Read, Some(query_slug(query)?)),
        Route::GetUpdate { target, .. } => (Action::Read, app(target)),
        Route::DeleteRuntime { target } | Route::DeleteUpdate { target, .. } => (Action::Delete, app(target)),
        Route::CreateToken | Route::ListTokens | Route::RevokeToken { .. } => (Action::Admin, None),
        Route::Audit => match query_param(query, "slug") {
            Some(s) => (Action::Read, Some(validate::slug(&s)?.to_string())),
            None => (Action::Admin, None),
        },
        Route::Health | Route::Manifest | Route::Asset { .. } => {
            return Err(ApiError::internal("public routes are not deploy operations"))
        }
    })
}

fn query_slug(query: &str) -> Result<String, ApiError> {
    let s = query_param(query, "slug").ok_or_else(|| ApiError::bad_request("missing slug query parameter"))?;
    Ok(validate::slug(&s)?.to_string())
}

/// The audit entry a route starts with (`None`: reads and uploads are not audited).
fn audit_entry(route: &Route, who: &Principal) -> Option<AuditEntry> {
    let on = |action: &str, t: &Target| Some(AuditEntry::new(who, action).target(t));
    match route {
        Route::PublishCommit { target } => on("publish", target),
        Route::PublishForm { slug } => {
            let mut e = AuditEntry::new(who, "publish");
            e.slug = Some(slug.clone());
            Some(e)
        }
        Route::Rollback { target } => on("rollback", target),
        Route::Promote { target } => on("promote", target),
        Route::DeleteRuntime { target } => on("delete-runtime", target),
        Route::DeleteUpdate { target, id } => {
            let mut e = AuditEntry::new(who, "delete-update").target(target);
            e.update_ids = vec![id.clone()];
            Some(e)
        }
        Route::CreateToken => Some(AuditEntry::new(who, "token-create")),
        Route::RevokeToken { id } => {
            let mut e = AuditEntry::new(who, "token-revoke");
            // Only a well-formed id is stored: a refused request must not put raw path text in the log.
            e.token_id = tokens::is_token_id(id).then(|| id.clone());
            Some(e)
        }
        _ => None,
    }
}

/// Writes to a runtime make its cached pointers stale; a form publish may touch every runtime.
fn invalidations(route: &Route) -> Vec<String> {
    match route {
        Route::PublishCommit { target }
        | Route::Rollback { target }
        | Route::Promote { target }
        | Route::DeleteRuntime { target }
        | Route::DeleteUpdate { target, .. } => vec![target.prefix()],
        Route::PublishForm { slug } => vec![format!("{slug}/")],
        _ => Vec::new(),
    }
}

/// Authorizes and runs one deploy request for an authenticated caller.
pub async fn handle<B: Backend>(
    backend: &B,
    who: &Principal,
    req: Request<'_>,
    body: &mut impl Body,
    ctx: &Ctx<'_>,
) -> Handled {
    let mut audit = audit_entry(&req.route, who);
    let invalidate = invalidations(&req.route);
    let mut after = Vec::new();
    let reply = async {
        let (action, app) = requirement(&req.route, req.query)?;
        auth::authorize(who, action, app.as_deref())?;
        run(backend, req, body, ctx, audit.as_mut(), &mut after).await
    }
    .await;
    let audit = audit.map(|e| match &reply {
        Ok(r) => e.result::<()>(&Ok(()), r.status),
        Err(err) => e.result::<()>(&Err(err.clone()), 0),
    });
    Handled { reply, audit, invalidate, after }
}

async fn run<B: Backend>(
    b: &B,
    req: Request<'_>,
    body: &mut impl Body,
    ctx: &Ctx<'_>,
    audit: Option<&mut AuditEntry>,
    after: &mut Vec<WriteOp>,
) -> Result<Reply, ApiError> {
    let cap = ctx.limits.max_json_bytes as usize;
    let store = b.store();
    let mut noted = Noted(audit);
    match req.route {
        Route::PublishPrepare { target } => {
            let prep: PrepareRequest = read_json(body, cap).await?;
            json(200, &service::prepare(store, &target, &prep, ctx).await?)
        }
        Route::UploadFile { target, sha256 } => upload(store, &target, &sha256, req.header, body, ctx).await,
        Route::PublishCommit { target } => {
            let commit: CommitRequest = read_json(body, cap).await?;
            noted.channel(commit.channel.as_deref().unwrap_or(DEFAULT_CHANNEL));
            if commit.republished_from.is_some() {
                return Err(ApiError::bad_request(
                    "republishedFrom is set by the server: use POST …/rollback or …/promote to republish an update",
                ));
            }
            match b.writer().write(WriteOp::Commit { target, request: commit }, ctx).await? {
                WriteOutcome::Committed(c) => {
                    noted.update(&c.id);
                    json(201, &c)
                }
                other => Err(unexpected(&other)),
            }
        }
        Route::PublishForm { slug } => {
            let published = publish_form(b, &slug, req.header, body, ctx).await?;
            if let Some(first) = published.updates.first() {
                noted.runtime(&first.runtime_version, &first.channel);
            }
            for u in &published.updates {
                noted.update(&u.id);
            }
            json(201, &published)
        }
        Route::Rollback { target } => {
            let request: RollbackRequest = read_json(body, cap).await?;
            noted.channel(request.channel.as_deref().unwrap_or(DEFAULT_CHANNEL));
            released(b.writer().write(WriteOp::Rollback { target, request }, ctx).await?, &mut noted)
        }
        Route::Promote { target } => {
            let request: PromoteRequest = read_json(body, cap).await?;
            noted.channel(&request.to_channel);
            released(b.writer().write(WriteOp::Promote { target, request }, ctx).await?, &mut noted)
        }
        Route::ListUpdates => json(200, &service::list(store, &query_slug(req.query)?).await?),
        Route::GetUpdate { target, id } => json(200, &service::get_record(store, &target, &id).await?),
        Route::DeleteRuntime { target } => match b.writer().write(WriteOp::DeleteRuntime { target }, ctx).await? {
            WriteOutcome::DeletedRuntime(d) => json(200, &d),
            other => Err(unexpected(&other)),
        },
        Route::DeleteUpdate { target, id } => {
            match b.writer().write(WriteOp::DeleteUpdate { target: target.clone(), id }, ctx).await? {
                WriteOutcome::DeletedUpdate(d) => {
                    if let Some(p) = &d.promoted {
                        noted.channel(&p.channel);
                        noted.update(&p.id);
                    }
                    after.push(WriteOp::CollectFiles { target });
                    json(200, &d)
                }
                other => Err(unexpected(&other)),
            }
        }
        Route::CreateToken => {
            let created = tokens::create(store, read_json(body, cap).await?, ctx).await?;
            noted.token(&created.info.id);
            json(201, &created)
        }
        Route::ListTokens => json(200, &tokens::list(store).await?),
        Route::RevokeToken { id } => {
            if !tokens::is_token_id(&id) {
                return Err(ApiError::not_found("no such token (ids are 16 lowercase hex digits)"));
            }
            json(200, &tokens::revoke(store, &id, ctx.now_ms).await?)
        }
        Route::Audit => {
            let slug = query_param(req.query, "slug").map(|s| validate::slug(&s).map(str::to_string)).transpose()?;
            let since = match query_param(req.query, "since") {
                Some(s) => time::parse_millis(&s)
                    .ok_or_else(|| ApiError::bad_request("since must be YYYY-MM-DDTHH:mm:ss.sssZ"))?,
                None => 0,
            };
            let limit = query_param(req.query, "limit")
                .map(|l| l.parse::<usize>().map_err(|_| ApiError::bad_request("limit must be a number")))
                .transpose()?
                .unwrap_or(100)
                .clamp(1, 1000);
            json(200, &audit::list(store, slug.as_deref(), since, limit).await?)
        }
        Route::Health | Route::Manifest | Route::Asset { .. } => Err(ApiError::internal("not a deploy route")),
    }
}

/// Audit details learned while running (the entry itself is optional: reads are not audited).
struct Noted<'a>(Option<&'a mut AuditEntry>);

impl Noted<'_> {
    fn channel(&mut self, c: &str) {
        if let Some(e) = self.0.as_mut() {
            e.channel = validate::channel(c).ok().map(str::to_string);
        }
    }
    fn runtime(&mut self, rv: &str, channel: &str) {
        if let Some(e) = self.0.as_mut() {
            e.runtime_version = Some(rv.to_string());
        }
        self.channel(channel);
    }
    fn update(&mut self, id: &str) {
        if let Some(e) = self.0.as_mut() {
            if !e.update_ids.iter().any(|u| u == id) {
                e.update_ids.push(id.to_string());
            }
        }
    }
    fn token(&mut self, id: &str) {
        if let Some(e) = self.0.as_mut() {
            e.token_id = Some(id.to_string());
        }
    }
}

fn released(outcome: WriteOutcome, noted: &mut Noted<'_>) -> Result<Reply, ApiError> {
    match outcome {
        WriteOutcome::Released(r) => {
            if let Some(c) = release::installed(&r) {
                noted.update(c.id.as_str());
            }
            if let Some(from) = match &r {
                ReleaseResponse::Installed(c) => c.republished_from.as_deref(),
                ReleaseResponse::ToSign(s) => s.republished_from.as_deref(),
            } {
                noted.update(from);
            }
            let status = if release::installed(&r).is_some() { 201 } else { 200 };
            json(status, &r)
        }
        other => Err(unexpected(&other)),
    }
}

fn unexpected(o: &WriteOutcome) -> ApiError {
    ApiError::internal(format!("the app's writer answered an unexpected outcome: {o:?}"))
}

/// One raw file, keyed by its SHA-256; the backend streams it into storage with the digest
/// verified while storing. A file already stored is never rewritten (content-addressed).
async fn upload<S: ObjectStore>(
    store: &S,
    t: &Target,
    sha256: &str,
    header: &dyn Fn(&str) -> Option<String>,
    body: &mut impl Body,
    ctx: &Ctx<'_>,
) -> Result<Reply, ApiError> {
    let up = service::upload_headers(header, &ctx.limits)?;
    let key = t.file_key(sha256);
    if let Some(existing) = store.head(&key).await? {
        return json(200, &UploadResponse { sha256: sha256.into(), size: existing.size, stored: false });
    }
    let sha = hash::parse_hex::<32>(sha256).ok_or_else(|| ApiError::bad_request("file id must be SHA-256 hex"))?;
    let stored = body.store_file(&key, &up, sha).await?;
    if stored.size != up.len {
        store.delete(&[key]).await?;
        return Err(ApiError::bad_request("body length does not match Content-Length"));
    }
    json(201, &UploadResponse { sha256: sha256.into(), size: stored.size, stored: true })
}

async fn publish_form<B: Backend>(
    b: &B,
    slug: &str,
    header: &dyn Fn(&str) -> Option<String>,
    body: &mut impl Body,
    ctx: &Ctx<'_>,
) -> Result<crate::deploy::api::FormPublishResponse, ApiError> {
    let ct = header("content-type").unwrap_or_default();
    if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(ApiError::new(415, "expected a multipart/form-data body"));
    }
    let boundary = crate::protocol::multipart::boundary_of(&ct)
        .ok_or_else(|| ApiError::bad_request("multipart/form-data without a boundary"))?;
    let len = header("content-length").and_then(|l| l.trim().parse().ok());
    formpublish::check_content_length(len, ctx)?;
    let mut form = FormPublish::new(
        slug,
        &boundary,
        header("expo-platform").as_deref(),
        header("expo-runtime-version").as_deref(),
    )?;
    while let Some(chunk) = body.chunk().await {
        form.feed(b.store(), &chunk?, ctx).await?;
    }
    form.finish(b.store(), ctx).await
}

/// Reads a small JSON body, refusing more than `cap` bytes whatever Content-Length says.
pub async fn read_json<T: serde::de::DeserializeOwned>(body: &mut impl Body, cap: usize) -> Result<T, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = body.chunk().await {
        buf.extend_from_slice(&chunk?);
        if buf.len() > cap {
            return Err(ApiError::too_large(format!("JSON body is larger than {cap} bytes (MAX_JSON_BYTES)")));
        }
    }
    if buf.is_empty() {
        return Err(ApiError::bad_request("missing JSON body"));
    }
    serde_json::from_slice(&buf).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

pub fn json<T: Serialize>(status: u16, body: &T) -> Result<Reply, ApiError> {
    let body = serde_json::to_vec(body).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Reply { status, headers: vec![("content-type", "application/json".into())], body })
}
