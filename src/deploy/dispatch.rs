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
use crate::deploy::api::{CommitRequest, PrepareRequest, PromoteRequest, ReleaseResponse, RollbackRequest};
use crate::deploy::formpublish::{self, FormPublish};
use crate::deploy::patches;
use crate::deploy::release;
use crate::deploy::rollout::{self, RolloutOutcome, RolloutRequest};
use crate::deploy::service::{self, Ctx, UploadHeaders};
use crate::deploy::writer::{WriteOp, WriteOutcome, Writer};
use crate::error::ApiError;
use crate::health;
use crate::http::route::{query_param, Route};
use crate::protocol::hash;
use crate::storage::layout::Target;
use crate::storage::store::{ObjectMeta, ObjectStore};
use crate::validate;
use serde::Serialize;

/// What a backend provides to the deploy API.
#[allow(async_fn_in_trait)]
pub trait Backend {
    type Store: ObjectStore;
    type Writer: Writer;
    fn store(&self) -> &Self::Store;
    fn writer(&self) -> &Self::Writer;
    /// The app's update-health report as JSON ([`health::store::HealthReport`]; the counters
    /// live beside its writer, which renders it); a backend without them answers 501.
    async fn health_report(&self, filter: &health::store::Filter) -> Result<Vec<u8>, ApiError> {
        let _ = filter;
        Err(ApiError::new(501, "update health is not available on this server"))
    }
    /// One page of the audit log, already authorized by [`handle`]. By default the log in the
    /// backend's store ([`audit::StoreLog`]); the Worker answers from D1.
    async fn audit_page(&self, q: &audit::AuditQuery) -> Result<audit::AuditList, ApiError> {
        audit::AuditLog::list_page(&audit::StoreLog(self.store()), q).await
    }
}

/// A request body: read in chunks by the core (JSON, forms), or streamed by the backend into
/// storage without passing through the core (file uploads: R2 verifies the digest as it stores).
#[allow(async_fn_in_trait)]
pub trait Body {
    async fn chunk(&mut self) -> Option<Result<Vec<u8>, ApiError>>;
    async fn store_file(&mut self, key: &str, up: &UploadHeaders, sha256: [u8; 32]) -> Result<ObjectMeta, ApiError>;
}

/// A request body already in memory, over any store: what the CLI's native test server and the
/// host tests hand the core. `store_file` asks the store to verify the digests, as R2 does (a
/// mismatch stores nothing and is a 422).
pub struct BufferedBody<'s, S> {
    pub bytes: Option<Vec<u8>>,
    pub store: &'s S,
}

impl<S: ObjectStore> Body for BufferedBody<'_, S> {
    async fn chunk(&mut self) -> Option<Result<Vec<u8>, ApiError>> {
        self.bytes.take().filter(|b| !b.is_empty()).map(Ok)
    }
    async fn store_file(&mut self, key: &str, up: &UploadHeaders, sha256: [u8; 32]) -> Result<ObjectMeta, ApiError> {
        let opts = crate::storage::store::PutOptions {
            content_type: Some(up.content_type.clone()),
            sha256: Some(sha256),
            md5: up.md5,
            ..Default::default()
        };
        let bytes = self.bytes.take().unwrap_or_default();
        self.store.put(key, bytes, opts).await?.ok_or_else(|| ApiError::internal("an unconditional put stored nothing"))
    }
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
    let app = |t: &Target| Some(t.slug.to_string());
    Ok(match route {
        Route::PublishPrepare { target } | Route::UploadFile { target, .. } | Route::PublishCommit { target } => {
            (Action::Publish, app(target))
        }
        // Publish scope already changes what devices run; a patch or variant is checked against
        // the runtime's stored updates and files (deploy::patches) so it cannot reach further.
        Route::UploadPatch { target, .. } | Route::PatchStatus { target, .. } | Route::UploadEncoded { target, .. } => {
            (Action::Publish, app(target))
        }
        Route::PublishForm { slug } => (Action::Publish, Some(slug.clone())),
        Route::Rollback { target } | Route::Promote { target } => (Action::Rollback, app(target)),
        // Rollout changes move a channel between updates already published on it (the rollout
        // update and its control), with server-built bodies: the rollback scope's promise.
        Route::Rollout { target } => (Action::Rollback, app(target)),
        Route::Explain => (Action::Read, Some(query_slug(query)?)),
        Route::ListUpdates => (Action::Read, Some(query_slug(query)?)),
        Route::GetUpdate { target, .. } => (Action::Read, app(target)),
        Route::DeleteRuntime { target } | Route::DeleteUpdate { target, .. } => (Action::Delete, app(target)),
        Route::CreateToken | Route::ListTokens | Route::RevokeToken { .. } => (Action::Admin, None),
        Route::Audit => match query_param(query, "slug") {
            Some(s) => (Action::Read, Some(validate::slug(&s)?.to_string())),
            None => (Action::Admin, None),
        },
        Route::Capacitor(r) => r.requirement()?,
        Route::HealthReport => (Action::Read, Some(query_slug(query)?)),
        Route::Accounts(r) => match r.need() {
            crate::access::accounts::route::Need::Act(action, app) => (action, app),
            _ => return Err(ApiError::internal("self-service account routes are served by access::accounts")),
        },
        Route::Health | Route::Manifest | Route::Asset { .. } => {
            return Err(ApiError::internal("public routes are not deploy operations"))
        }
    })
}

/// The app a deploy route names in its path, if any (for auditing refused credentials).
pub fn app_of(route: &Route) -> Option<String> {
    match route {
        Route::PublishPrepare { target }
        | Route::UploadFile { target, .. }
        | Route::UploadPatch { target, .. }
        | Route::PatchStatus { target, .. }
        | Route::UploadEncoded { target, .. }
        | Route::PublishCommit { target }
        | Route::Rollback { target }
        | Route::Promote { target }
        | Route::Rollout { target }
        | Route::GetUpdate { target, .. }
        | Route::DeleteRuntime { target }
        | Route::DeleteUpdate { target, .. } => Some(target.slug.to_string()),
        Route::PublishForm { slug } => Some(slug.clone()),
        Route::Capacitor(r) => Some(r.slug().to_string()),
        _ => None,
    }
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
        Route::PublishForm { slug } => Some(AuditEntry::new(who, "publish").with_slug(slug)),
        Route::Rollback { target } => on("rollback", target),
        Route::Promote { target } => on("promote", target),
        Route::Rollout { target } => on("rollout", target),
        Route::DeleteRuntime { target } => on("delete-runtime", target),
        Route::DeleteUpdate { target, id } => {
            Some(AuditEntry::new(who, "delete-update").target(target).with_update_ids([id]))
        }
        Route::CreateToken => Some(AuditEntry::new(who, "token-create")),
        // Only a well-formed id is stored: a refused request must not put raw path text in the log.
        Route::RevokeToken { id } => Some(AuditEntry::new(who, "token-revoke").with_token_id(id)),
        Route::Capacitor(r) => r.audit_action().map(|a| AuditEntry::new(who, a).with_slug(r.slug())),
        _ => None,
    }
}

/// Writes to a runtime make its cached pointers stale; a form publish may touch every runtime.
fn invalidations(route: &Route) -> Vec<String> {
    match route {
        Route::PublishCommit { target }
        | Route::Rollback { target }
        | Route::Promote { target }
        | Route::Rollout { target }
        | Route::DeleteRuntime { target }
        | Route::DeleteUpdate { target, .. } => vec![target.prefix()],
        Route::PublishForm { slug } => vec![format!("{slug}/")],
        Route::Capacitor(r) if r.audit_action().is_some() => vec![crate::capacitor::state::prefix(r.slug())],
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
    // A commit answers 200 only for `prepareRevert`. (A rollout answers 200 for its changes, so
    // a resume's `prepareOnly` is audited like any rollout request.)
    let releasing = matches!(req.route, Route::Rollback { .. } | Route::Promote { .. } | Route::PublishCommit { .. });
    let invalidate = invalidations(&req.route);
    let mut after = Vec::new();
    let reply = async {
        let (action, app) = requirement(&req.route, req.query)?;
        auth::authorize(who, action, app.as_deref())?;
        run(backend, who, req, body, ctx, audit.as_mut(), &mut after).await
    }
    .await;
    // Asking for the body to sign (rollback/promote `prepareOnly`) changes nothing: not audited.
    let prepared = releasing && matches!(&reply, Ok(r) if r.status == 200);
    let audit = audit.filter(|_| !prepared).map(|e| match &reply {
        Ok(r) => e.result::<()>(&Ok(()), r.status),
        // A single-request publish that failed after committing some platforms names them.
        Err(err) => committed_ids(err).fold(e, |e, id| e.with_update_ids([id])).result::<()>(&Err(err.clone()), 0),
    });
    Handled { reply, audit, invalidate, after }
}

async fn run<B: Backend>(
    b: &B,
    who: &Principal,
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
            let prep: PrepareRequest = read_json(body, req.header, cap).await?;
            json(200, &service::prepare(store, &target, &prep, ctx).await?)
        }
        Route::UploadFile { target, sha256 } => upload(store, &target, &sha256, req.header, body, ctx).await,
        Route::UploadPatch { target, base, sha256 } => {
            patches::upload_patch(store, &target, &base, &sha256, req.header, body, ctx).await
        }
        Route::PatchStatus { target, base, sha256 } => patches::status(store, &target, &base, &sha256).await,
        Route::UploadEncoded { target, sha256, encoding } => {
            patches::upload_encoded(store, &target, &sha256, encoding, req.header, body, ctx).await
        }
        Route::PublishCommit { target } => {
            let commit: CommitRequest = read_json(body, req.header, cap).await?;
            noted.channel(commit.channel.as_deref().unwrap_or(DEFAULT_CHANNEL));
            if commit.republished_from.is_some() {
                return Err(ApiError::bad_request(
                    "republishedFrom is set by the server: use POST …/rollback or …/promote to republish an update",
                ));
            }
            // A rollBackToEmbedded body is a rollback: the publish scope alone cannot send it.
            if commit.directive.is_some() {
                auth::authorize(who, Action::Rollback, Some(&target.slug))?;
            }
            if commit.prepare_revert {
                return json(200, &rollout::revert_to_sign(store, &target, &commit, ctx).await?);
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
            let request: RollbackRequest = read_json(body, req.header, cap).await?;
            noted.channel(request.channel.as_deref().unwrap_or(DEFAULT_CHANNEL));
            released(b.writer().write(WriteOp::Rollback { target, request }, ctx).await?, &mut noted)
        }
        Route::Promote { target } => {
            let request: PromoteRequest = read_json(body, req.header, cap).await?;
            noted.channel(&request.to_channel);
            released(b.writer().write(WriteOp::Promote { target, request }, ctx).await?, &mut noted)
        }
        Route::Rollout { target } => {
            let request: RolloutRequest = read_json(body, req.header, cap).await?;
            noted.channel(request.channel.as_deref().unwrap_or(DEFAULT_CHANNEL));
            let outcome = match b.writer().write(WriteOp::Rollout { target, request }, ctx).await? {
                WriteOutcome::RolledOut(o) => *o,
                other => return Err(unexpected(&other)),
            };
            match outcome {
                RolloutOutcome::Resumed(r) => released(WriteOutcome::Released(r), &mut noted),
                RolloutOutcome::Moved(state) => {
                    noted.update(&state.update_id);
                    json(200, &state)
                }
                RolloutOutcome::Halted(h) => {
                    noted.update(&h.update_id);
                    if let Some(r) = &h.revert {
                        noted.update(&r.id);
                    }
                    json(200, &h)
                }
            }
        }
        Route::Explain => {
            let mreq = crate::check::explain::request_from_query(req.query)?;
            let pointer = service::current(store, &mreq.target, &mreq.channel).await?;
            let sent = query_param(req.query, "clientId").is_some_and(|c| !c.is_empty());
            json(200, &crate::check::explain::explain(&mreq, sent, pointer.as_ref()))
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
            let created = tokens::create(store, read_json(body, req.header, cap).await?, ctx).await?;
            noted.token(&created.info.id);
            json(201, &created)
        }
        Route::ListTokens => json(200, &tokens::list(store).await?),
        Route::RevokeToken { id } => json(200, &tokens::revoke(store, &id, ctx.now_ms).await?),
        Route::Audit => {
            let q = audit::AuditQuery::from_params(&|n| query_param(req.query, n))?;
            json(200, &b.audit_page(&q).await?)
        }
        Route::Capacitor(r) => {
            let (reply, channel) = crate::capacitor::deploy::run(b, r, req.query, req.header, body, ctx).await?;
            if let Some(c) = channel {
                noted.channel(&c);
            }
            Ok(reply)
        }
        Route::HealthReport => {
            let body = b.health_report(&health::store::Filter::from_query(req.query)?).await?;
            let body = with_rollouts(store, body).await?;
            Ok(Reply { status: 200, headers: vec![("content-type", "application/json".into())], body })
        }
        Route::Health | Route::Manifest | Route::Asset { .. } | Route::Accounts(_) => {
            Err(ApiError::internal("not a deploy route"))
        }
    }
}

/// Fills each health row's rollout percentage from its channel's pointer (the writer keeps the
/// counters, the pointer keeps the rollout): the rollout's percentage for the rollout update,
/// 100 for the update a channel serves plainly. One pointer read per runtime and channel of the
/// report (bounded by the report, not by history); Capacitor rows have no rollouts.
async fn with_rollouts<S: ObjectStore>(store: &S, body: Vec<u8>) -> Result<Vec<u8>, ApiError> {
    let mut report: health::store::HealthReport =
        serde_json::from_slice(&body).map_err(|e| ApiError::internal(format!("health report: {e}")))?;
    let mut seen: Vec<((String, String, String), rollout::ChannelState)> = Vec::new();
    for u in &mut report.updates {
        if u.runtime_version == crate::capacitor::health::HEALTH_RUNTIME {
            continue;
        }
        let key = (u.platform.clone(), u.runtime_version.clone(), u.channel.clone());
        if !seen.iter().any(|(k, _)| k == &key) {
            let Ok(t) = Target::parse(&report.slug, &u.platform, &u.runtime_version) else { continue };
            seen.push((key.clone(), rollout::channel_state(store, &t, &u.channel).await?));
        }
        let state = &seen.iter().find(|(k, _)| k == &key).expect("pushed above").1;
        u.rollout_percentage = match &state.rollout {
            Some(r) if r.update_id == u.update_id => Some(f64::from(r.percentage)),
            _ if state.serving.as_deref() == Some(u.update_id.as_str()) => Some(100.0),
            _ => None,
        };
    }
    Ok(serde_json::to_vec(&report).expect("report serializes"))
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
            match &r {
                ReleaseResponse::Installed(c) => json(201, c),
                ReleaseResponse::ToSign(s) => json(200, s),
            }
        }
        other => Err(unexpected(&other)),
    }
}

fn committed_ids(err: &ApiError) -> impl Iterator<Item = String> + '_ {
    let committed = err.detail.as_ref().and_then(|d| d.get("committed")).and_then(|c| c.as_array());
    committed.into_iter().flatten().filter_map(|c| c.get("id")?.as_str().map(str::to_string))
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
    let sha = hash::parse_hex::<32>(sha256).ok_or_else(|| ApiError::bad_request("file id must be SHA-256 hex"))?;
    patches::store_once(store, &t.file_key(sha256), up, sha, body).await
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
    // Every platform is validated before any is committed; the writer commits them in order and
    // names exactly what landed if a later one fails.
    let commits = form.finish(b.store(), ctx).await?;
    match b.writer().write(WriteOp::Commits { commits }, ctx).await? {
        WriteOutcome::Published(p) => Ok(p),
        other => Err(unexpected(&other)),
    }
}

/// Reads a small JSON body, refusing more than `cap` bytes: at once when Content-Length says so
/// (before reading a byte, so the client is not cut off mid-send), and while reading whatever
/// Content-Length says.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    body: &mut impl Body,
    header: &dyn Fn(&str) -> Option<String>,
    cap: usize,
) -> Result<T, ApiError> {
    let too_large = || ApiError::too_large(format!("JSON body is larger than {cap} bytes (MAX_JSON_BYTES)"));
    if header("content-length").and_then(|l| l.trim().parse::<usize>().ok()).is_some_and(|l| l > cap) {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    while let Some(chunk) = body.chunk().await {
        buf.extend_from_slice(&chunk?);
        if buf.len() > cap {
            return Err(too_large());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::accounts::{Role, UserPrincipal};
    use crate::access::auth::{Scope, TokenInfo, TokenRecord};
    use crate::deploy::testing::{self, MemoryBackend};
    use crate::protocol::hash::Digests;
    use crate::storage::store::MemoryStore;

    #[test]
    fn health_report_rows_carry_their_channels_rollout_percentage() {
        use crate::deploy::writer::{apply, WriteOp};
        use crate::health::store::{HealthReport, UpdateHealth};
        let (store, t) = (MemoryStore::new(), testing::target("rollout-health"));
        type Files<'a> = &'a [(&'a [u8], &'a str)];
        let (v1, v2): (Files, Files) = (&[(b"one", "bundle")], &[(b"two", "bundle")]);
        testing::upload(&store, &t, v1);
        testing::upload(&store, &t, v2);
        let commit = |files, at, pct| {
            let mut request = testing::commit_request(testing::manifest(&t, files, at, "production"), "production");
            request.rollout_percentage = pct;
            match pollster::block_on(apply(&store, WriteOp::Commit { target: t.clone(), request }, &testing::ctx(at))) {
                Ok(crate::deploy::writer::WriteOutcome::Committed(c)) => c.id,
                other => panic!("{other:?}"),
            }
        };
        let (id1, id2) = (commit(v1, 1_000, None), commit(v2, 2_000, Some(10)));
        let row = |id: &str| UpdateHealth {
            platform: t.platform.as_str().into(),
            runtime_version: t.runtime_version.to_string(),
            channel: "production".into(),
            update_id: id.into(),
            first_seen: "2026-01-01T00:00:00.000Z".into(),
            served_since: None,
            launched: 1,
            launched_estimated: false,
            failed: 0,
            failed_estimated: false,
            failure_rate: None,
            failure_rate_interval: None,
            top_fatal_errors: Vec::new(),
            rollout_percentage: None,
            halt: None,
        };
        let report = HealthReport {
            slug: t.slug.to_string(),
            rule: Default::default(),
            updates: vec![row(&id2), row(&id1), row("00000000-0000-4000-8000-000000000000")],
        };
        let out = pollster::block_on(with_rollouts(&store, serde_json::to_vec(&report).unwrap())).unwrap();
        let out: HealthReport = serde_json::from_slice(&out).unwrap();
        let pct: Vec<Option<f64>> = out.updates.iter().map(|u| u.rollout_percentage).collect();
        assert_eq!(pct, vec![Some(10.0), None, None], "rollout update at 10 %, its control and a stranger without");
    }

    const OWN: &str = "own-app";
    const OTHER: &str = "other-app";
    const V1: [(&[u8], &str); 2] = [(b"bundle-1", "bundle"), (b"shared", "png")];

    /// Two apps, each with one update on production; returns the store and their update ids.
    fn seeded() -> (MemoryStore, [String; 2]) {
        let store = MemoryStore::new();
        let ids = [(OWN, 1), (OTHER, 2)].map(|(slug, n)| {
            let t = testing::target(slug);
            testing::upload(&store, &t, &V1);
            let body = testing::manifest_with_id(&t, &V1, 1_000, "production", [n; 16]);
            let c = pollster::block_on(service::commit(
                &store,
                &t,
                testing::commit_request(body, "production"),
                &testing::ctx(1_000),
            ))
            .unwrap();
            c.id
        });
        (store, ids)
    }

    fn token(scope: Scope, apps: &[&str], all_apps: bool) -> Principal {
        Principal::Token(Box::new(TokenRecord {
            hash: String::new(),
            info: TokenInfo {
                id: "0123456789abcdef".into(),
                name: "ci".into(),
                apps: apps.iter().map(|a| a.to_string()).collect(),
                all_apps,
                scopes: vec![scope],
                created_at: "2026-01-01T00:00:00.000Z".into(),
                expires_at: None,
                revoked_at: None,
                last_used_at: None,
            },
        }))
    }

    fn user(role: Option<Role>, admin: bool) -> Principal {
        let roles = role.map(|r| (OWN.to_string(), r)).into_iter().collect();
        Principal::User(Box::new(UserPrincipal { id: 1, login: "alice".into(), admin, roles }))
    }

    fn scope_action(s: Scope) -> Action {
        match s {
            Scope::Publish => Action::Publish,
            Scope::Rollback => Action::Rollback,
            Scope::Delete => Action::Delete,
            Scope::Read => Action::Read,
        }
    }

    /// One deploy request on `slug`: route, query, body, headers, the scope it needs (None:
    /// ADMIN_TOKEN only) and the status it gets when allowed.
    struct Case {
        name: &'static str,
        route: Route,
        query: String,
        body: Vec<u8>,
        headers: Vec<(&'static str, String)>,
        scope: Option<Scope>,
        ok: u16,
    }

    fn cases(slug: &str, update_id: &str) -> Vec<Case> {
        let t = testing::target(slug);
        let new_file = b"new-file";
        let new_sha = Digests::of(new_file).sha256_hex();
        let commit = CommitRequest { manifest: testing::manifest(&t, &V1, 2_000, "production"), ..Default::default() };
        let json = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
        let case = |name, route, query: &str, body, scope, ok| Case {
            name,
            route,
            query: query.to_string(),
            body,
            headers: Vec::new(),
            scope,
            ok,
        };
        let mut cases = vec![
            case(
                "prepare",
                Route::PublishPrepare { target: t.clone() },
                "",
                json(serde_json::json!({"files": [new_sha]})),
                Some(Scope::Publish),
                200,
            ),
            Case {
                headers: vec![("content-length", new_file.len().to_string()), ("content-type", "image/png".into())],
                ..case(
                    "upload",
                    Route::UploadFile { target: t.clone(), sha256: new_sha.clone() },
                    "",
                    new_file.to_vec(),
                    Some(Scope::Publish),
                    201,
                )
            },
            // The seeded app has one update, so a patch to an unknown target update is a 404 for
            // an allowed caller; the success path is in deploy::patches' tests.
            Case {
                headers: vec![
                    ("content-length", "4".into()),
                    (patches::DIGEST_HEADER, Digests::of(b"BSDI").sha256_hex()),
                    (patches::BASE_UPDATE_HEADER, update_id.into()),
                    (patches::TARGET_UPDATE_HEADER, "0f8d2a8e-0000-4000-8000-0000000000aa".into()),
                ],
                ..case(
                    "upload patch",
                    Route::UploadPatch {
                        target: t.clone(),
                        base: Digests::of(V1[0].0).sha256_hex(),
                        sha256: new_sha.clone(),
                    },
                    "",
                    b"BSDI".to_vec(),
                    Some(Scope::Publish),
                    404,
                )
            },
            case(
                "patch status",
                Route::PatchStatus {
                    target: t.clone(),
                    base: Digests::of(V1[0].0).sha256_hex(),
                    sha256: new_sha.clone(),
                },
                "",
                Vec::new(),
                Some(Scope::Publish),
                404,
            ),
            Case {
                headers: vec![
                    ("content-length", "2".into()),
                    (patches::DIGEST_HEADER, Digests::of(b"br").sha256_hex()),
                ],
                ..case(
                    "upload variant",
                    Route::UploadEncoded {
                        target: t.clone(),
                        sha256: Digests::of(V1[0].0).sha256_hex(),
                        encoding: crate::check::patch::Encoding::Br,
                    },
                    "",
                    b"br".to_vec(),
                    Some(Scope::Publish),
                    201,
                )
            },
            case(
                "commit",
                Route::PublishCommit { target: t.clone() },
                "",
                serde_json::to_vec(&commit).unwrap(),
                Some(Scope::Publish),
                201,
            ),
            // No content type: an allowed caller learns that (415); a refused one never gets that far.
            case("form publish", Route::PublishForm { slug: slug.into() }, "", Vec::new(), Some(Scope::Publish), 415),
            case(
                "rollback",
                Route::Rollback { target: t.clone() },
                "",
                json(serde_json::json!({"to": "embedded"})),
                Some(Scope::Rollback),
                201,
            ),
            case(
                "promote",
                Route::Promote { target: t.clone() },
                "",
                json(serde_json::json!({"updateId": update_id, "toChannel": "staging"})),
                Some(Scope::Rollback),
                201,
            ),
            case(
                "rollout halt",
                Route::Rollout { target: t.clone() },
                "",
                json(serde_json::json!({"halt": true, "expectedCurrent": update_id})),
                Some(Scope::Rollback),
                200,
            ),
            case(
                "explain",
                Route::Explain,
                &format!("slug={slug}&platform=ios&runtimeVersion=1.0.3"),
                Vec::new(),
                Some(Scope::Read),
                200,
            ),
            case("list", Route::ListUpdates, &format!("slug={slug}"), Vec::new(), Some(Scope::Read), 200),
            case(
                "get",
                Route::GetUpdate { target: t.clone(), id: update_id.into() },
                "",
                Vec::new(),
                Some(Scope::Read),
                200,
            ),
            case("audit of app", Route::Audit, &format!("slug={slug}"), Vec::new(), Some(Scope::Read), 200),
            case(
                "delete update",
                Route::DeleteUpdate { target: t.clone(), id: update_id.into() },
                "",
                Vec::new(),
                Some(Scope::Delete),
                200,
            ),
            case(
                "delete runtime",
                Route::DeleteRuntime { target: t.clone() },
                "",
                Vec::new(),
                Some(Scope::Delete),
                200,
            ),
            case(
                "token create",
                Route::CreateToken,
                "",
                json(serde_json::json!({"name": "x", "apps": [slug], "scopes": ["read"]})),
                None,
                201,
            ),
            case("token list", Route::ListTokens, "", Vec::new(), None, 200),
            case("token revoke", Route::RevokeToken { id: "fedcba9876543210".into() }, "", Vec::new(), None, 404),
            case("audit of every app", Route::Audit, "", Vec::new(), None, 200),
            case("health", Route::HealthReport, &format!("slug={slug}"), Vec::new(), Some(Scope::Read), 200),
        ];
        cases.extend(capacitor_cases(slug));
        cases
    }

    /// The Capacitor and APK deploy routes on `slug` (an app with no Capacitor state yet).
    fn capacitor_cases(slug: &str) -> Vec<Case> {
        use crate::capacitor::route::CapRoute;
        let zip = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/capacitor/bundles/1.0.0/com.example.capota_1.0.0.zip"
        ))
        .unwrap();
        let zip_sha = Digests::of(&zip).sha256_hex();
        let apk = b"apk-bytes".to_vec();
        let apk_sha = Digests::of(&apk).sha256_hex();
        let s = || slug.to_string();
        let json = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
        let case = |name, r, query: &str, body, scope, ok| Case {
            name,
            route: Route::Capacitor(r),
            query: query.to_string(),
            body,
            headers: Vec::new(),
            scope: Some(scope),
            ok,
        };
        let len = |b: &Vec<u8>| vec![("content-length", b.len().to_string())];
        vec![
            Case {
                headers: len(&zip),
                ..case(
                    "capacitor upload",
                    CapRoute::UploadBundle { slug: s(), sha256: zip_sha.clone() },
                    "",
                    zip.clone(),
                    Scope::Publish,
                    201,
                )
            },
            // Not uploaded in this fresh store: the writer refuses (422) and stores nothing.
            case(
                "capacitor publish",
                CapRoute::Publish { slug: s() },
                "",
                json(serde_json::json!({"version": "1.0.0", "checksum": zip_sha})),
                Scope::Publish,
                422,
            ),
            case("capacitor list", CapRoute::List { slug: s() }, "", Vec::new(), Scope::Read, 200),
            case("capacitor rollback", CapRoute::Rollback { slug: s() }, "", b"{}".to_vec(), Scope::Rollback, 404),
            case(
                "capacitor delete",
                CapRoute::DeleteVersion { slug: s(), version: "1.0.0".into() },
                "channel=production",
                Vec::new(),
                Scope::Delete,
                404,
            ),
            case(
                "capacitor channel settings",
                CapRoute::ChannelSettings { slug: s(), channel: "beta".into() },
                "",
                json(serde_json::json!({"allowSelfSet": true})),
                Scope::Publish,
                200,
            ),
            Case {
                headers: len(&apk),
                ..case(
                    "apk upload",
                    CapRoute::UploadApk { slug: s(), sha256: apk_sha.clone() },
                    "",
                    apk.clone(),
                    Scope::Publish,
                    201,
                )
            },
            case(
                "apk publish",
                CapRoute::ApkPublish { slug: s() },
                "",
                json(serde_json::json!({"version": "1.0.0", "sha256": apk_sha})),
                Scope::Publish,
                422,
            ),
        ]
    }

    fn run_case(who: &Principal, c: Case) -> (Handled, Vec<String>, Vec<String>) {
        let (store, _) = seeded();
        let before = store.keys();
        let backend = MemoryBackend::new(store);
        let headers = c.headers;
        let header = move |n: &str| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        let req = Request { route: c.route, query: &c.query, header: &header };
        let mut body = BufferedBody { bytes: Some(c.body), store: backend.store() };
        let done = pollster::block_on(handle(&backend, who, req, &mut body, &testing::ctx(5_000)));
        let after = backend.store().keys();
        (done, before, after)
    }

    #[test]
    fn authorization_every_route_every_scope_every_app_exact_status() {
        let (_, ids) = seeded();
        let mut principals: Vec<(String, Principal)> = vec![("admin".into(), Principal::Admin)];
        for scope in [Scope::Publish, Scope::Rollback, Scope::Delete, Scope::Read] {
            principals.push((format!("{scope:?} on {OWN}"), token(scope, &[OWN], false)));
            principals.push((format!("{scope:?} on all apps"), token(scope, &[], true)));
        }
        // Signed-in users: each role on OWN (none on OTHER), and an admin user.
        for role in [Role::Viewer, Role::Publisher, Role::Owner] {
            principals.push((format!("{role:?} of {OWN}"), user(Some(role), false)));
        }
        principals.push(("admin user".into(), user(None, true)));
        let mut checked = 0;
        for (who_name, who) in &principals {
            for (slug, id) in [(OWN, &ids[0]), (OTHER, &ids[1])] {
                for c in cases(slug, id) {
                    let allowed = match who {
                        Principal::Admin => true,
                        Principal::Token(t) => {
                            c.scope.is_some_and(|s| t.scopes.contains(&s))
                                && (t.all_apps || t.apps.iter().any(|a| a == slug))
                        }
                        Principal::User(u) => {
                            u.admin
                                || c.scope.is_some_and(|s| u.role_in(slug).is_some_and(|r| r.permits(scope_action(s))))
                        }
                    };
                    let (name, ok) = (c.name, c.ok);
                    let (done, before, after) = run_case(who, c);
                    let got = match &done.reply {
                        Ok(r) => r.status,
                        Err(e) => e.status,
                    };
                    let want = if allowed { ok } else { 403 };
                    assert_eq!(
                        got, want,
                        "{name} on {slug} by {who_name}: expected {want}, got {got} ({:?})",
                        done.reply
                    );
                    if !allowed {
                        assert_eq!(before, after, "{name} on {slug} by {who_name} was refused but changed storage");
                    }
                    // Refused writes are audited too, with the refusal's status.
                    if let Some(entry) = &done.audit {
                        assert_eq!(entry.status, got, "{name}: audit status");
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 13 * 2 * (15 + 8 + 2 + 1 + 3));
    }

    #[test]
    fn audit_entries_cover_every_write_and_only_writes() {
        let (_, ids) = seeded();
        for c in cases(OWN, &ids[0]) {
            let name = c.name;
            let writes = matches!(
                c.route,
                Route::PublishCommit { .. }
                    | Route::PublishForm { .. }
                    | Route::Rollback { .. }
                    | Route::Promote { .. }
                    | Route::Rollout { .. }
                    | Route::DeleteUpdate { .. }
                    | Route::DeleteRuntime { .. }
                    | Route::CreateToken
                    | Route::RevokeToken { .. }
            ) || matches!(&c.route, Route::Capacitor(r) if r.audit_action().is_some());
            let (done, _, _) = run_case(&Principal::Admin, c);
            assert_eq!(done.audit.is_some(), writes, "{name}");
        }
    }

    #[test]
    fn invalidation_follows_the_written_runtime() {
        let (_, ids) = seeded();
        let t = testing::target(OWN);
        for c in cases(OWN, &ids[0]) {
            let name = c.name;
            let want: Vec<String> = match &c.route {
                Route::PublishCommit { .. }
                | Route::Rollback { .. }
                | Route::Promote { .. }
                | Route::Rollout { .. }
                | Route::DeleteUpdate { .. }
                | Route::DeleteRuntime { .. } => vec![t.prefix()],
                Route::PublishForm { .. } => vec![format!("{OWN}/")],
                Route::Capacitor(r) if r.audit_action().is_some() => vec![format!("{OWN}/capacitor/")],
                _ => vec![],
            };
            let (done, _, _) = run_case(&Principal::Admin, c);
            assert_eq!(done.invalidate, want, "{name}");
        }
    }

    #[test]
    fn app_of_names_the_app_in_the_path_only() {
        let (_, ids) = seeded();
        for c in cases(OWN, &ids[0]) {
            let want = match c.route {
                Route::ListUpdates
                | Route::Explain
                | Route::Audit
                | Route::HealthReport
                | Route::CreateToken
                | Route::ListTokens
                | Route::RevokeToken { .. } => None,
                _ => Some(OWN.to_string()),
            };
            assert_eq!(app_of(&c.route), want, "{}", c.name);
        }
    }

    #[test]
    fn delete_update_schedules_file_collection() {
        let (_, ids) = seeded();
        let c = cases(OWN, &ids[0]).into_iter().find(|c| c.name == "delete update").unwrap();
        let (done, _, _) = run_case(&Principal::Admin, c);
        assert_eq!(done.after, vec![WriteOp::CollectFiles { target: testing::target(OWN) }]);
    }

    #[test]
    fn revoke_with_malformed_id_never_reaches_the_audit_log_verbatim() {
        let raw = "../../x\u{1b}[2J";
        let c = Case {
            name: "revoke",
            route: Route::RevokeToken { id: raw.into() },
            query: String::new(),
            body: Vec::new(),
            headers: Vec::new(),
            scope: None,
            ok: 404,
        };
        let (done, _, _) = run_case(&token(Scope::Read, &[OWN], false), c);
        let entry = done.audit.unwrap();
        assert_eq!((entry.status, entry.token_id.as_deref()), (403, Some("invalid")));
    }

    #[test]
    fn commit_of_a_directive_needs_the_rollback_scope() {
        let t = testing::target(OWN);
        let directive = crate::protocol::manifest::Directive::roll_back_to_embedded(4_000).render();
        let commit = CommitRequest { directive: Some(directive), ..Default::default() };
        let case = || Case {
            name: "commit directive",
            route: Route::PublishCommit { target: t.clone() },
            query: String::new(),
            body: serde_json::to_vec(&commit).unwrap(),
            headers: Vec::new(),
            scope: Some(Scope::Publish),
            ok: 201,
        };
        let (done, before, after) = run_case(&token(Scope::Publish, &[OWN], false), case());
        assert_eq!(done.reply.unwrap_err().status, 403);
        assert_eq!(before, after);
        let (done, _, _) = run_case(&Principal::Admin, case());
        assert_eq!(done.reply.unwrap().status, 201);
    }

    #[test]
    fn commit_carrying_republished_from_is_refused() {
        let (_, ids) = seeded();
        let t = testing::target(OWN);
        let commit = CommitRequest {
            manifest: testing::manifest(&t, &V1, 2_000, "production"),
            republished_from: Some(ids[0].clone()),
            ..Default::default()
        };
        let c = Case {
            name: "commit",
            route: Route::PublishCommit { target: t },
            query: String::new(),
            body: serde_json::to_vec(&commit).unwrap(),
            headers: Vec::new(),
            scope: Some(Scope::Publish),
            ok: 400,
        };
        let (done, before, after) = run_case(&Principal::Admin, c);
        assert_eq!(done.reply.unwrap_err().status, 400);
        assert_eq!(before, after);
    }
}
