//! The append-only audit log of deploy operations. Where it is stored is behind [`AuditLog`]: the
//! Worker keeps it in D1 (`src/worker/audit_d1.rs`); the object-store layout below ([`StoreLog`])
//! serves the native test server and the host tests, and is where earlier Worker versions wrote
//! (the Worker's cron moves those entries to D1: [`take_stored_page`], [`delete_stored`]).
//! Three invariants of the object-store layout:
//!
//! - every stored entry went through [`AuditEntry::sanitized`]: free text is truncated on a char
//!   boundary with control and bidi characters replaced, identifiers are kept only when they pass
//!   their validator (a token or update id that does not is stored as [`INVALID`]; a slug,
//!   channel or runtimeVersion that does not is left out), at most [`MAX_UPDATE_IDS`] update ids
//!   are kept, and the serialized entry never exceeds [`MAX_ENTRY_BYTES`], whatever a caller or
//!   an attacker put in it;
//! - a read costs O(limit): keys carry the *inverted* time, so R2's ascending listing yields the
//!   newest entry first, and reading stops as soon as `limit` entries are collected or an entry
//!   older than `since` is reached; older pages are reached with a cursor (`before`);
//! - the entry is also the object's custom metadata when it fits, so a read normally opens no
//!   object (and at most `limit` when entries are large).
//!
//! ```text
//! _system/audit/all/<inverted ms>-<8 hex>            every entry: the cross-app view (ADMIN_TOKEN)
//! _system/audit/app/<slug>/<inverted ms>-<8 hex>     the same entry again when it names a valid app
//! ```
//!
//! `<inverted ms>` is `9999999999999 - ms since the epoch`, 13 digits, zero-padded. Both copies
//! of an entry share their name. Entries written before this layout
//! (`_system/audit/<ms>-<8 hex>.json`) are not read by [`list_page`]; [`migrate_legacy`] moves
//! them into it, one listing page per call.

use crate::access::auth::{Principal, TokenRecord};
use crate::access::tokens::is_token_id;
use crate::deploy::service::Ctx;
use crate::error::ApiError;
use crate::protocol::{hash, id, time};
use crate::storage::layout::Target;
use crate::storage::store::{Condition, ObjectMeta, ObjectStore, PutOptions};
use crate::validate::{self, Platform};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything of the audit log lives under this prefix (and only legacy entries directly in it).
pub const PREFIX: &str = "_system/audit/";
/// Every entry, newest first.
pub const ALL_PREFIX: &str = "_system/audit/all/";
/// `<this><slug>/`: the entries of one app, newest first.
pub const APP_PREFIX: &str = "_system/audit/app/";
/// No serialized entry is larger (a hostile-input test holds every field at its cap).
pub const MAX_ENTRY_BYTES: usize = 4096;
/// Update ids kept per entry; the rest are only counted (`omittedUpdateIds`).
pub const MAX_UPDATE_IDS: usize = 20;
/// Characters of an error message kept (then `…`).
pub const MAX_ERROR_CHARS: usize = 300;
/// Characters of a token name kept (token names are at most 64 at creation).
pub const MAX_ACTOR_NAME_CHARS: usize = 64;
/// An action is a short kebab-case word (`publish`, `token-revoke`, …).
pub const MAX_ACTION_LEN: usize = 40;
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// Stored in place of a token or update id that did not pass validation.
pub const INVALID: &str = "invalid";
/// The actor of what the server does by itself after update-health signals (automatic halts).
pub const SYSTEM_HEALTH: &str = "system:health";
/// The action of an entry recording a revoked or expired (but genuine) token being used.
pub const TOKEN_REFUSED: &str = "token-refused";
/// R2 allows 2 KiB of custom metadata per object, keys included; larger entries are read from
/// the object body instead.
const METADATA_MAX_BYTES: usize = 1800;
/// Keys hold `TIME_CEILING - ms` so that newer entries sort first (13 digits reach year 2286).
const TIME_CEILING: u64 = 9_999_999_999_999;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub at: String,
    /// `admin` or the token id — never a secret.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    /// publish, republish, rollback-to-embedded, delete-runtime, delete-update, token-create,
    /// token-revoke, token-refused
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub update_ids: Vec<String>,
    /// How many update ids beyond [`MAX_UPDATE_IDS`] were not kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_update_ids: usize,
    /// The token a token operation was about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// HTTP status of the outcome.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl AuditEntry {
    pub fn new(who: &Principal, action: &str) -> Self {
        let (actor, actor_name) = who.actor();
        AuditEntry { actor, actor_name, action: action.into(), ..Default::default() }
    }

    /// Someone presented a genuine token (its secret matched) that is revoked or expired.
    pub fn token_refused(record: &TokenRecord, error: &ApiError) -> Self {
        AuditEntry {
            actor: record.id.clone(),
            actor_name: Some(record.name.clone()),
            action: TOKEN_REFUSED.into(),
            token_id: Some(record.id.clone()),
            status: error.status,
            error: Some(error.message.clone()),
            ..Default::default()
        }
    }

    pub fn target(mut self, t: &Target) -> Self {
        self.slug = validate::slug(&t.slug).ok().map(str::to_string);
        self.platform = Some(t.platform.to_string());
        self.runtime_version = validate::runtime_version(&t.runtime_version).ok().map(str::to_string);
        self
    }

    /// The app, when `raw` is a valid slug (else none: the entry then lands in the cross-app view only).
    pub fn with_slug(mut self, raw: &str) -> Self {
        self.slug = validate::slug(raw).ok().map(str::to_string);
        self
    }

    pub fn with_runtime_version(mut self, raw: &str) -> Self {
        self.runtime_version = validate::runtime_version(raw).ok().map(str::to_string);
        self
    }

    pub fn with_channel(mut self, raw: &str) -> Self {
        self.channel = validate::channel(raw).ok().map(str::to_string);
        self
    }

    /// The token an operation was about: `raw` when it is a token id (16 lowercase hex), else
    /// [`INVALID`] — never the raw path text of a refused request.
    pub fn with_token_id(mut self, raw: &str) -> Self {
        self.token_id = Some(token_id_or_invalid(raw));
        self
    }

    /// Adds update ids: lowercase UUIDs as they are, anything else as [`INVALID`]; beyond
    /// [`MAX_UPDATE_IDS`] they are only counted.
    pub fn with_update_ids<I>(mut self, ids: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        for raw in ids {
            if self.update_ids.len() < MAX_UPDATE_IDS {
                self.update_ids.push(update_id_or_invalid(raw.as_ref()));
            } else {
                self.omitted_update_ids += 1;
            }
        }
        self
    }

    pub fn result<T>(mut self, r: &Result<T, ApiError>, ok_status: u16) -> Self {
        match r {
            Ok(_) => self.status = ok_status,
            Err(e) => {
                self.status = e.status;
                self.error = Some(clean_text(&e.message, MAX_ERROR_CHARS));
            }
        }
        self
    }

    /// The entry as it may be stored: every rule of the module invariant applied. Idempotent.
    pub fn sanitized(self) -> Self {
        let mut ids = Vec::new();
        let mut omitted = self.omitted_update_ids;
        for raw in &self.update_ids {
            if ids.len() < MAX_UPDATE_IDS {
                ids.push(update_id_or_invalid(raw));
            } else {
                omitted += 1;
            }
        }
        let action_ok = !self.action.is_empty()
            && self.action.len() <= MAX_ACTION_LEN
            && self.action.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
        AuditEntry {
            at: if time::parse_millis(&self.at).is_some() { self.at } else { String::new() },
            actor: if self.actor == "admin"
                || self.actor == SYSTEM_HEALTH
                || is_token_id(&self.actor)
                || is_user_actor(&self.actor)
            {
                self.actor
            } else {
                INVALID.into()
            },
            actor_name: self.actor_name.map(|n| clean_text(&n, MAX_ACTOR_NAME_CHARS)),
            action: if action_ok { self.action } else { INVALID.into() },
            slug: self.slug.filter(|s| validate::slug(s).is_ok()),
            platform: self.platform.filter(|p| Platform::parse(p).is_ok()),
            runtime_version: self.runtime_version.filter(|r| validate::runtime_version(r).is_ok()),
            channel: self.channel.filter(|c| validate::channel(c).is_ok()),
            update_ids: ids,
            omitted_update_ids: omitted,
            token_id: self.token_id.map(|t| token_id_or_invalid(&t)),
            status: self.status,
            error: self.error.map(|e| clean_text(&e, MAX_ERROR_CHARS)),
        }
    }

    /// The sanitized entry's JSON, at most [`MAX_ENTRY_BYTES`]. The field caps keep every entry
    /// under it (about 3 KiB at worst); should that ever fail, the free text goes, not the bound.
    pub fn to_capped_json(&self) -> String {
        let mut e = self.clone().sanitized();
        let json = serde_json::to_string(&e).expect("serializes");
        if json.len() <= MAX_ENTRY_BYTES {
            return json;
        }
        e.error = Some(format!("entry exceeded {MAX_ENTRY_BYTES} bytes; its text was dropped"));
        e.actor_name = None;
        e.update_ids.truncate(1);
        serde_json::to_string(&e).expect("serializes")
    }
}

fn token_id_or_invalid(raw: &str) -> String {
    if is_token_id(raw) {
        raw.into()
    } else {
        INVALID.into()
    }
}

fn update_id_or_invalid(raw: &str) -> String {
    if id::is_canonical_uuid(raw) {
        raw.into()
    } else {
        INVALID.into()
    }
}

/// Bidi embedding, override and isolate controls (and the marks): they reorder what a terminal
/// or browser shows around them.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// At most `max_chars` characters (then `…`), cut on a char boundary, with control and bidi
/// characters replaced by U+FFFD, so every kept character serializes to at most 4 bytes.
fn clean_text(s: &str, max_chars: usize) -> String {
    let mut out: String =
        s.chars().take(max_chars).map(|c| if c.is_control() || is_bidi_control(c) { '\u{FFFD}' } else { c }).collect();
    if s.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

/// `<inverted ms>-<suffix>`: an entry's name under either prefix.
fn entry_name(ms: u64, suffix: &str) -> String {
    format!("{:013}-{suffix}", TIME_CEILING - ms.min(TIME_CEILING))
}

/// The time of a well-formed entry name (`<13 digits>-<8 lowercase hex>`), else `None`.
fn parse_entry_name(name: &str) -> Option<u64> {
    let (inv, suffix) = name.split_once('-')?;
    let ok = inv.len() == 13
        && inv.bytes().all(|c| c.is_ascii_digit())
        && suffix.len() == 8
        && suffix.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    ok.then(|| TIME_CEILING - inv.parse::<u64>().expect("13 digits"))
}

/// Time and suffix of a legacy key's name (`<13 digits ms>-<8 hex>.json`).
fn parse_legacy_name(name: &str) -> Option<(u64, &str)> {
    let (ms, rest) = name.split_once('-')?;
    let suffix = rest.strip_suffix(".json")?;
    let ok = ms.len() == 13
        && ms.bytes().all(|c| c.is_ascii_digit())
        && suffix.len() == 8
        && suffix.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    ok.then(|| (ms.parse().expect("13 digits"), suffix))
}

fn app_prefix(slug: &str) -> String {
    format!("{APP_PREFIX}{slug}/")
}

/// Appends `entry` (sanitized, timestamped now) to the cross-app log and, when it names a valid
/// app, to that app's log.
pub async fn append<S: ObjectStore>(store: &S, mut entry: AuditEntry, ctx: &Ctx<'_>) -> Result<(), ApiError> {
    entry.at = time::format_millis(ctx.now_ms);
    write(store, entry, ctx.now_ms, &hash::hex(&(ctx.random)()[..4])).await
}

async fn write<S: ObjectStore>(store: &S, entry: AuditEntry, ms: u64, suffix: &str) -> Result<(), ApiError> {
    let entry = entry.sanitized();
    let json = entry.to_capped_json();
    let name = entry_name(ms, suffix);
    let mut keys = vec![format!("{ALL_PREFIX}{name}")];
    keys.extend(entry.slug.as_deref().map(|s| format!("{}{name}", app_prefix(s))));
    let mut custom = BTreeMap::new();
    if json.len() <= METADATA_MAX_BYTES {
        custom.insert("entry".to_string(), json.clone());
    }
    for key in keys {
        let opts = PutOptions {
            content_type: Some("application/json".into()),
            custom: custom.clone(),
            // Entries are immutable: a name collision (same millisecond, same 32 random bits)
            // keeps the first.
            condition: Condition::IfAbsent,
            ..Default::default()
        };
        store.put(&key, json.clone().into_bytes(), opts).await?;
    }
    Ok(())
}

/// One page of the log: which app (none = every app), how far back, from where, how many.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditQuery {
    pub slug: Option<String>,
    /// Only entries at or after this time.
    pub since_ms: u64,
    /// Continue after this cursor (a previous page's `nextCursor`): older entries.
    pub before: Option<String>,
    /// 1..=[`MAX_LIMIT`].
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self { slug: None, since_ms: 0, before: None, limit: DEFAULT_LIMIT }
    }
}

impl AuditQuery {
    /// From `GET /api/audit?slug=&since=&before=&limit=` (`cursor=` is accepted for `before`),
    /// each parameter validated: 400 with the rule when one is malformed.
    pub fn from_params(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ApiError> {
        let slug = get("slug").map(|s| validate::slug(&s).map(str::to_string)).transpose()?;
        let since_ms = match get("since") {
            Some(s) => {
                time::parse_millis(&s).ok_or_else(|| ApiError::bad_request("since must be YYYY-MM-DDTHH:mm:ss.sssZ"))?
            }
            None => 0,
        };
        let before = get("before").or_else(|| get("cursor"));
        if let Some(b) = &before {
            check_cursor(b)?;
        }
        let limit = match get("limit") {
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| ApiError::bad_request(format!("limit must be a number from 1 to {MAX_LIMIT}")))?,
            None => DEFAULT_LIMIT,
        };
        Ok(Self { slug, since_ms, before, limit })
    }
}

fn check_cursor(c: &str) -> Result<(), ApiError> {
    match parse_entry_name(c) {
        Some(_) => Ok(()),
        None => {
            Err(ApiError::bad_request("invalid audit cursor: pass a previous answer's nextCursor as before= unchanged"))
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditList {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `before=` for the next (older) page; absent when this page reached the end or `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One page of entries, newest first: at most `q.limit`, none older than `q.since_ms`, starting
/// after `q.before`. Reads listing pages only until the page is full, and opens at most
/// `q.limit` objects (only entries too large for custom metadata are opened).
pub async fn list_page<S: ObjectStore>(store: &S, q: &AuditQuery) -> Result<AuditList, ApiError> {
    let prefix = match &q.slug {
        Some(s) => app_prefix(validate::slug(s)?),
        None => ALL_PREFIX.to_string(),
    };
    if let Some(b) = &q.before {
        check_cursor(b)?;
    }
    let limit = q.limit.clamp(1, MAX_LIMIT);
    let start_after = q.before.as_ref().map(|b| format!("{prefix}{b}"));
    let mut out = AuditList::default();
    let mut last: Option<String> = None;
    let mut cursor: Option<String> = None;
    loop {
        let first = cursor.is_none();
        let page = store.list(&prefix, None, cursor.take(), if first { start_after.as_deref() } else { None }).await?;
        for o in &page.objects {
            let Some(name) = o.key.strip_prefix(&prefix) else { continue };
            let Some(ms) = parse_entry_name(name) else { continue };
            if ms < q.since_ms {
                // Everything after this key is older still.
                return Ok(out);
            }
            if out.entries.len() == limit {
                out.next_cursor = last;
                return Ok(out);
            }
            if let Some(e) = read_entry(store, o, ms).await? {
                out.entries.push(e);
                last = Some(name.to_string());
            }
        }
        match page.cursor {
            // Full, and more may follow: offer the cursor rather than list another page to be sure.
            Some(_) if out.entries.len() == limit => {
                out.next_cursor = last;
                return Ok(out);
            }
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// The first page: entries at or after `since_ms`, of one app or all, newest first.
pub async fn list<S: ObjectStore>(
    store: &S,
    slug: Option<&str>,
    since_ms: u64,
    limit: usize,
) -> Result<AuditList, ApiError> {
    list_page(store, &AuditQuery { slug: slug.map(str::to_string), since_ms, before: None, limit }).await
}

/// The entry behind a listed key: from its custom metadata, else from its body. A corrupt
/// object reads as an `unreadable` entry, so one bad object neither hides itself nor breaks
/// the log. `None` when it vanished between listing and reading.
async fn read_entry<S: ObjectStore>(store: &S, o: &ObjectMeta, ms: u64) -> Result<Option<AuditEntry>, ApiError> {
    let parsed = match o.custom.get("entry") {
        Some(e) => serde_json::from_str::<AuditEntry>(e).map_err(|e| e.to_string()),
        None if o.size > MAX_ENTRY_BYTES as u64 * 2 => Err(format!("{} bytes, over the entry cap", o.size)),
        None => match store.get(&o.key).await? {
            Some((_, b)) => serde_json::from_slice::<AuditEntry>(&b).map_err(|e| e.to_string()),
            None => return Ok(None),
        },
    };
    Ok(Some(stored_or_unreadable(parsed, ms)))
}

/// A stored entry as read back: sanitized again, or an `unreadable` entry saying why it could
/// not be parsed; `at` from `ms` when it has none.
fn stored_or_unreadable(parsed: Result<AuditEntry, String>, ms: u64) -> AuditEntry {
    let mut e = match parsed {
        Ok(e) => e.sanitized(),
        Err(why) => AuditEntry {
            actor: INVALID.into(),
            action: "unreadable".into(),
            status: 500,
            error: Some(clean_text(&format!("corrupt audit entry: {why}"), MAX_ERROR_CHARS)),
            ..Default::default()
        },
    };
    if e.at.is_empty() {
        e.at = time::format_millis(ms);
    }
    e
}

/// One row of a database-backed log: its time, row id and stored JSON.
pub struct AuditRow {
    pub ms: u64,
    pub id: u32,
    pub json: String,
}

/// A page from rows a database returned newest first for `limit + 1` rows: at most `limit`
/// entries, and a [`row_cursor`] to the last one when a further row exists.
pub fn page_from_rows(rows: Vec<AuditRow>, limit: usize) -> AuditList {
    let more = rows.len() > limit;
    let mut out = AuditList::default();
    let mut last = None;
    for r in rows.into_iter().take(limit) {
        out.entries.push(stored_or_unreadable(serde_json::from_str(&r.json).map_err(|e| e.to_string()), r.ms));
        last = Some(row_cursor(r.ms, r.id));
    }
    if more {
        out.next_cursor = last;
    }
    out
}

/// Moves up to one listing page (1000) of entries written before this layout
/// (`_system/audit/<ms>-<hex>.json`) into it, sanitized, and deletes the originals; returns how
/// many moved (0 once none are left). Safe to repeat after a failure: rewriting uses the same
/// names, and an existing copy is kept.
pub async fn migrate_legacy<S: ObjectStore>(store: &S) -> Result<usize, ApiError> {
    // The delimiter folds `all/` and `app/` into two prefixes: only legacy objects are listed.
    let page = store.list(PREFIX, Some("/"), None, None).await?;
    let mut moved = Vec::new();
    for o in &page.objects {
        let Some((ms, suffix)) = o.key.strip_prefix(PREFIX).and_then(parse_legacy_name) else { continue };
        if let Some(entry) = read_entry(store, o, ms).await? {
            write(store, entry, ms, suffix).await?;
        }
        moved.push(o.key.clone());
    }
    store.delete(&moved).await?;
    Ok(moved.len())
}

/// Where the audit log lives. The core decides what an entry holds ([`AuditEntry::sanitized`],
/// [`AuditEntry::to_capped_json`]) and who may read which page; an implementation only stores
/// entries and answers pages newest first, `q.limit` at most, with a cursor in the format
/// [`AuditQuery::from_params`] accepts (`<13 digits>-<8 lowercase hex>`).
///
/// [`StoreLog`] keeps it in an [`ObjectStore`] (the native test server, host tests); the
/// Worker keeps it in D1 (`src/worker/audit_d1.rs`).
#[allow(async_fn_in_trait)]
pub trait AuditLog {
    /// Appends `entry`, timestamped `ctx.now_ms` and sanitized.
    async fn append(&self, entry: AuditEntry, ctx: &Ctx<'_>) -> Result<(), ApiError>;
    async fn list_page(&self, q: &AuditQuery) -> Result<AuditList, ApiError>;
}

/// The audit log in an object store: the layout of this module's free functions.
pub struct StoreLog<'s, S>(pub &'s S);

impl<S: ObjectStore> AuditLog for StoreLog<'_, S> {
    async fn append(&self, entry: AuditEntry, ctx: &Ctx<'_>) -> Result<(), ApiError> {
        append(self.0, entry, ctx).await
    }
    async fn list_page(&self, q: &AuditQuery) -> Result<AuditList, ApiError> {
        list_page(self.0, q).await
    }
}

/// A database cursor in the same format as an object-store one: `<inverted ms>-<row id, 8 hex>`,
/// so [`AuditQuery::from_params`] validates both alike.
pub fn row_cursor(ms: u64, row_id: u32) -> String {
    entry_name(ms, &format!("{row_id:08x}"))
}

/// The `(ms, row id)` of a [`row_cursor`]; `None` when malformed.
pub fn parse_row_cursor(c: &str) -> Option<(u64, u32)> {
    let ms = parse_entry_name(c)?;
    let id = u32::from_str_radix(c.split_once('-')?.1, 16).ok()?;
    Some((ms, id))
}

/// An entry still in the object store, on its way to another log (see [`take_stored_page`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    /// Its name under [`ALL_PREFIX`] (`<inverted ms>-<8 hex>`): unique, the key an importing log
    /// deduplicates on so a repeated move inserts nothing twice.
    pub name: String,
    pub ms: u64,
    /// Sanitized; `at` is set.
    pub entry: AuditEntry,
}

/// Entries of the object store, at most `max` (≤ 1000) of them, for another log to import:
/// legacy entries are first brought into the current layout ([`migrate_legacy`]), then the first
/// listing page of [`ALL_PREFIX`] is read. Costs at most two listings, plus one read per entry
/// too large for custom metadata. Once the importer stored them, [`delete_stored`] removes them.
pub async fn take_stored_page<S: ObjectStore>(store: &S, max: usize) -> Result<Vec<StoredEntry>, ApiError> {
    migrate_legacy(store).await?;
    let page = store.list(ALL_PREFIX, None, None, None).await?;
    let mut out = Vec::new();
    for o in page.objects.iter().take(max.min(1000)) {
        let Some(name) = o.key.strip_prefix(ALL_PREFIX) else { continue };
        let Some(ms) = parse_entry_name(name) else { continue };
        // One that vanished meanwhile leaves at most an app copy, which the orphan sweep of
        // `delete_stored` removes.
        if let Some(entry) = read_entry(store, o, ms).await? {
            out.push(StoredEntry { name: name.to_string(), ms, entry });
        }
    }
    Ok(out)
}

/// Deletes both copies (cross-app and per-app) of entries another log has imported. When there
/// are none, deletes a listing page of per-app copies left without their cross-app copy (an entry
/// that was unreadable had no app to delete by). Returns how many keys were deleted.
pub async fn delete_stored<S: ObjectStore>(store: &S, done: &[StoredEntry]) -> Result<usize, ApiError> {
    let mut keys = Vec::new();
    for d in done {
        keys.push(format!("{ALL_PREFIX}{}", d.name));
        if let Some(slug) = &d.entry.slug {
            keys.push(format!("{}{}", app_prefix(slug), d.name));
        }
    }
    if keys.is_empty() && store.list(ALL_PREFIX, None, None, None).await?.objects.is_empty() {
        let page = store.list(APP_PREFIX, None, None, None).await?;
        keys.extend(page.objects.into_iter().map(|o| o.key));
    }
    for chunk in keys.chunks(1000) {
        store.delete(chunk).await?;
    }
    Ok(keys.len())
}

/// `user:<login>`: a signed-in user, by a login that passes the login rule.
fn is_user_actor(s: &str) -> bool {
    s.strip_prefix("user:").is_some_and(|l| crate::access::accounts::login(l).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::storage::store::{ListPage, MemoryStore};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts what a read costs.
    struct Counting<'a> {
        inner: &'a MemoryStore,
        lists: AtomicUsize,
        gets: AtomicUsize,
    }

    impl<'a> Counting<'a> {
        fn new(inner: &'a MemoryStore) -> Self {
            Self { inner, lists: AtomicUsize::new(0), gets: AtomicUsize::new(0) }
        }
        fn costs(&self) -> (usize, usize) {
            (self.lists.swap(0, Ordering::SeqCst), self.gets.swap(0, Ordering::SeqCst))
        }
    }

    impl ObjectStore for Counting<'_> {
        async fn get(&self, key: &str) -> Result<Option<(ObjectMeta, Vec<u8>)>, crate::storage::store::StoreError> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            self.inner.get(key).await
        }
        async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, crate::storage::store::StoreError> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            self.inner.head(key).await
        }
        async fn put(
            &self,
            key: &str,
            body: Vec<u8>,
            opts: PutOptions,
        ) -> Result<Option<ObjectMeta>, crate::storage::store::StoreError> {
            self.inner.put(key, body, opts).await
        }
        async fn list(
            &self,
            prefix: &str,
            delimiter: Option<&str>,
            cursor: Option<String>,
            start_after: Option<&str>,
        ) -> Result<ListPage, crate::storage::store::StoreError> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            self.inner.list(prefix, delimiter, cursor, start_after).await
        }
        async fn delete(&self, keys: &[String]) -> Result<(), crate::storage::store::StoreError> {
            self.inner.delete(keys).await
        }
    }

    fn counter_random() -> [u8; 16] {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst) as u32;
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&n.to_be_bytes());
        b
    }

    async fn add(s: &impl ObjectStore, ms: u64, slug: &str, action: &str) {
        let ctx = Ctx { origin: "x", now_ms: ms, limits: Limits::default(), random: &counter_random };
        let e = AuditEntry::new(&Principal::Admin, action).with_slug(slug).result(&Ok::<(), ApiError>(()), 201);
        append(s, e, &ctx).await.unwrap();
    }

    fn times(l: &AuditList) -> Vec<u64> {
        l.entries.iter().map(|e| time::parse_millis(&e.at).unwrap()).collect()
    }

    fn uuid(n: u8) -> String {
        id::uuid_v4([n; 16])
    }

    #[test]
    fn append_writes_all_and_app_copies_newest_first() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            add(&s, 1000, "demo-app", "publish").await;
            add(&s, 2000, "utility-app", "publish").await;
            add(&s, 3000, "demo-app", "delete-runtime").await;
            let ctx = Ctx { origin: "x", now_ms: 4000, limits: Limits::default(), random: &counter_random };
            append(&s, AuditEntry::new(&Principal::Admin, "token-create").with_token_id("0123456789abcdef"), &ctx)
                .await
                .unwrap();
            let keys = s.keys();
            assert_eq!(keys.iter().filter(|k| k.starts_with(ALL_PREFIX)).count(), 4);
            assert_eq!(keys.iter().filter(|k| k.starts_with(&app_prefix("demo-app"))).count(), 2);
            assert!(keys.iter().all(|k| k.starts_with(ALL_PREFIX) || k.starts_with(APP_PREFIX)), "{keys:?}");

            let all = list(&s, None, 0, 100).await.unwrap();
            assert_eq!(times(&all), [4000, 3000, 2000, 1000], "newest first");
            assert_eq!(all.next_cursor, None);
            assert_eq!(all.entries[0].token_id.as_deref(), Some("0123456789abcdef"));
            assert_eq!((all.entries[1].actor.as_str(), all.entries[1].status), ("admin", 201));
            assert_eq!(all.entries[0].at, "1970-01-01T00:00:04.000Z");
        });
    }

    #[test]
    fn list_apps_are_isolated() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            for (ms, slug) in [(1, "demo-app"), (2, "demo-app2"), (3, "demo"), (4, "demo-app")] {
                add(&s, ms, slug, "publish").await;
            }
            let demo = list(&s, Some("demo-app"), 0, 100).await.unwrap();
            assert_eq!(times(&demo), [4, 1]);
            assert!(demo.entries.iter().all(|e| e.slug.as_deref() == Some("demo-app")));
            assert_eq!(times(&list(&s, Some("demo"), 0, 100).await.unwrap()), [3]);
            assert!(list(&s, Some("other"), 0, 100).await.unwrap().entries.is_empty());
            assert_eq!(list(&s, Some("../x"), 0, 1).await.unwrap_err().status, 400);
        });
    }

    #[test]
    fn list_of_5000_reads_one_listing_page_and_no_objects() {
        pollster::block_on(async {
            let mem = MemoryStore::new();
            for i in 0..5000u64 {
                add(&mem, 1_000_000 + i * 1000, if i % 2 == 0 { "demo-app" } else { "utility-app" }, "publish").await;
            }
            let s = Counting::new(&mem);
            let page = list(&s, None, 0, 10).await.unwrap();
            assert_eq!(s.costs(), (1, 0), "(list calls, object reads) for limit=10");
            let newest = 1_000_000 + 4999 * 1000;
            assert_eq!(times(&page), (0..10).map(|i| newest - i * 1000).collect::<Vec<_>>());
            let cursor = page.next_cursor.clone().expect("older entries remain");

            // The next page continues exactly where this one stopped.
            let q = AuditQuery { before: Some(cursor), limit: 10, ..Default::default() };
            let older = list_page(&s, &q).await.unwrap();
            assert_eq!(s.costs(), (1, 0));
            assert_eq!(times(&older)[0], newest - 10 * 1000);
            assert_eq!(older.entries.len(), 10);

            // Per app, the same bound.
            let app = list(&s, Some("utility-app"), 0, 10).await.unwrap();
            assert_eq!(s.costs(), (1, 0));
            assert_eq!(times(&app)[..2], [newest, newest - 2000]);

            // `since` stops the read at the first older entry.
            let recent = list(&s, None, newest - 4500, 1000).await.unwrap();
            assert_eq!(s.costs(), (1, 0));
            assert_eq!(recent.entries.len(), 5);
            assert_eq!(recent.next_cursor, None, "since was reached: nothing more to page");
        });
    }

    #[test]
    fn list_with_small_pages_stops_once_limit_is_reached() {
        pollster::block_on(async {
            let mut mem = MemoryStore::new();
            mem.page_size = 3;
            for i in 0..5000u64 {
                add(&mem, i, "demo-app", "publish").await;
            }
            let s = Counting::new(&mem);
            let page = list(&s, None, 0, 10).await.unwrap();
            let (lists, gets) = s.costs();
            assert!(lists <= 4 && gets == 0, "{lists} list calls for 10 entries in pages of 3");
            assert_eq!(times(&page), (4990..5000).rev().collect::<Vec<_>>());
            // Walking every page by cursor sees each entry once, in order.
            let mut seen = times(&page);
            let mut before = page.next_cursor;
            while let Some(b) = before {
                let p =
                    list_page(&s, &AuditQuery { before: Some(b), limit: 1000, ..Default::default() }).await.unwrap();
                seen.extend(times(&p));
                before = p.next_cursor;
            }
            assert_eq!(seen, (0..5000).rev().collect::<Vec<_>>());
        });
    }

    #[test]
    fn list_opens_at_most_limit_objects_when_entries_exceed_metadata() {
        pollster::block_on(async {
            let mem = MemoryStore::new();
            for i in 0..200u64 {
                let ctx = Ctx { origin: "x", now_ms: i, limits: Limits::default(), random: &counter_random };
                // 300 four-byte characters and 20 update ids: too large for R2 custom metadata.
                let e = AuditEntry::new(&Principal::Admin, "publish")
                    .with_update_ids((0..20).map(uuid))
                    .result(&Err::<(), _>(ApiError::bad_request("😀".repeat(400))), 201);
                append(&mem, e, &ctx).await.unwrap();
            }
            assert!(mem.keys().iter().all(|k| mem.bytes(k).unwrap().len() > METADATA_MAX_BYTES));
            let s = Counting::new(&mem);
            let page = list(&s, None, 0, 7).await.unwrap();
            assert_eq!(page.entries.len(), 7);
            assert_eq!(s.costs(), (1, 7));
            assert_eq!(page.entries[0].error.as_ref().unwrap().chars().count(), MAX_ERROR_CHARS + 1);
        });
    }

    #[test]
    fn entries_hold_hostile_input_under_the_cap() {
        let long = "\u{1b}[2J\u{202e}\r\n\0\"\\€😀".repeat(2000);
        let mut e = AuditEntry {
            at: long.clone(),
            actor: long.clone(),
            actor_name: Some(long.clone()),
            action: long.clone(),
            slug: Some(long.clone()),
            platform: Some(long.clone()),
            runtime_version: Some(long.clone()),
            channel: Some(long.clone()),
            update_ids: vec![long.clone(); 500],
            omitted_update_ids: 0,
            token_id: Some(long.clone()),
            status: 500,
            error: Some(long.clone()),
        };
        let json = e.to_capped_json();
        assert!(json.len() <= MAX_ENTRY_BYTES, "{} bytes", json.len());
        let stored: AuditEntry = serde_json::from_str(&json).unwrap();
        assert_eq!((stored.actor.as_str(), stored.action.as_str()), (INVALID, INVALID));
        assert_eq!(stored.token_id.as_deref(), Some(INVALID));
        assert_eq!((stored.slug, stored.platform, stored.runtime_version, stored.channel), (None, None, None, None));
        assert_eq!(stored.update_ids.len(), MAX_UPDATE_IDS);
        assert_eq!(stored.omitted_update_ids, 500 - MAX_UPDATE_IDS);
        let text = stored.error.unwrap();
        assert!(!text.contains(|c: char| c.is_control() || is_bidi_control(c)), "{text:?}");
        assert_eq!(text.chars().count(), MAX_ERROR_CHARS + 1);

        // The worst valid entry: every field valid and at its longest, text of 4-byte characters.
        e = AuditEntry {
            at: time::format_millis(0),
            actor: "0123456789abcdef".into(),
            actor_name: Some("😀".repeat(100)),
            action: "a".repeat(MAX_ACTION_LEN),
            slug: Some("s".repeat(validate::MAX_SLUG_LEN)),
            platform: Some("android".into()),
            runtime_version: Some("1".repeat(validate::MAX_RUNTIME_VERSION_LEN)),
            channel: Some("c".repeat(validate::MAX_CHANNEL_LEN)),
            update_ids: vec![uuid(1); 100],
            omitted_update_ids: usize::MAX / 2,
            token_id: Some("0123456789abcdef".into()),
            status: 500,
            error: Some("😀".repeat(1000)),
        };
        let json = e.to_capped_json();
        assert!(json.len() <= MAX_ENTRY_BYTES, "{} bytes", json.len());
        assert!(json.contains(&"😀".repeat(MAX_ERROR_CHARS)), "valid text survives the cap");
        assert_eq!(e.clone().sanitized(), e.clone().sanitized().sanitized(), "idempotent");
    }

    #[test]
    fn constructors_store_only_valid_identifiers() {
        let e = AuditEntry::new(&Principal::Admin, "token-revoke").with_token_id("../../_system/tokens/x\u{1b}[2J");
        assert_eq!(e.token_id.as_deref(), Some(INVALID));
        assert_eq!(AuditEntry::default().with_token_id("0123456789ABCDEF").token_id.as_deref(), Some(INVALID));
        assert_eq!(
            AuditEntry::default().with_token_id("0123456789abcdef").token_id.as_deref(),
            Some("0123456789abcdef")
        );
        let ids = AuditEntry::default().with_update_ids([uuid(1), uuid(0xab).to_uppercase(), "x".into()]);
        assert_eq!(ids.update_ids, [uuid(1), INVALID.into(), INVALID.into()]);
        let many = AuditEntry::default().with_update_ids((0..30).map(uuid));
        assert_eq!((many.update_ids.len(), many.omitted_update_ids), (MAX_UPDATE_IDS, 10));
        assert_eq!(AuditEntry::default().with_slug("a/b").slug, None);
        assert_eq!(AuditEntry::default().with_slug("demo-app").slug.as_deref(), Some("demo-app"));
        assert_eq!(AuditEntry::default().with_channel("prod\n").channel, None);
        assert_eq!(AuditEntry::default().with_channel("production").channel.as_deref(), Some("production"));
        assert_eq!(AuditEntry::default().with_runtime_version("1.0/..").runtime_version, None);
        let failed = AuditEntry::new(&Principal::Admin, "delete-runtime")
            .result(&Err::<(), _>(ApiError::not_found("no\u{1b}[2Jthing")), 200);
        assert_eq!((failed.status, failed.error.as_deref()), (404, Some("no\u{FFFD}[2Jthing")));
    }

    #[test]
    fn query_params_are_validated() {
        let q = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            AuditQuery::from_params(&move |n| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
        };
        assert_eq!(q(&[]).unwrap(), AuditQuery::default());
        let full = q(&[
            ("slug", "demo-app"),
            ("since", "1970-01-01T00:00:01.000Z"),
            ("cursor", "9999999998999-0000abcd"),
            ("limit", "5"),
        ])
        .unwrap();
        assert_eq!(
            full,
            AuditQuery {
                slug: Some("demo-app".into()),
                since_ms: 1000,
                before: Some("9999999998999-0000abcd".into()),
                limit: 5
            }
        );
        for bad in [
            ("slug", "../x"),
            ("since", "yesterday"),
            ("before", "../../tokens"),
            ("before", "9999999998999-0000ABCD"),
            ("limit", "0"),
            ("limit", "1001"),
            ("limit", "x"),
        ] {
            assert_eq!(q(&[bad]).unwrap_err().status, 400, "{bad:?}");
        }
    }

    #[test]
    fn corrupt_objects_read_as_unreadable_entries() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            add(&s, 1000, "demo-app", "publish").await;
            s.put_file(&format!("{ALL_PREFIX}{}", entry_name(2000, "00000000")), b"{not json", "application/json");
            let l = list(&s, None, 0, 10).await.unwrap();
            assert_eq!(l.entries.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["unreadable", "publish"]);
            assert_eq!(l.entries[0].at, "1970-01-01T00:00:02.000Z");
        });
    }

    /// What any [`AuditLog`] must do, shown with the object-store one: appended entries come
    /// back newest first, a slug filter isolates an app, and the cursor walks every page once.
    #[test]
    fn store_log_implements_the_trait() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            let log = StoreLog(&s);
            for ms in 1..=5u64 {
                let ctx = Ctx { origin: "x", now_ms: ms, limits: Limits::default(), random: &counter_random };
                let slug = if ms % 2 == 0 { "demo-app" } else { "utility-app" };
                log.append(AuditEntry::new(&Principal::Admin, "publish").with_slug(slug), &ctx).await.unwrap();
            }
            let q = AuditQuery { slug: Some("utility-app".into()), limit: 2, ..Default::default() };
            let first = log.list_page(&q).await.unwrap();
            assert_eq!(times(&first), [5, 3]);
            let q = AuditQuery { before: first.next_cursor, ..q };
            let second = log.list_page(&q).await.unwrap();
            assert_eq!((times(&second), second.next_cursor), (vec![1], None));
        });
    }

    #[test]
    fn row_cursors_round_trip_and_pass_query_validation() {
        let c = row_cursor(1_700_000_000_123, 0xdead_beef);
        assert_eq!(parse_row_cursor(&c), Some((1_700_000_000_123, 0xdead_beef)));
        assert!(check_cursor(&c).is_ok());
        assert_eq!(parse_row_cursor("../x"), None);
        assert_eq!(parse_row_cursor("9999999998999-0000ABCD"), None);
    }

    #[test]
    fn page_from_rows_offers_a_cursor_only_when_a_row_is_left() {
        let e = |ms: u64| {
            let mut e = AuditEntry::new(&Principal::Admin, "publish");
            e.at = time::format_millis(ms);
            e.to_capped_json()
        };
        let rows = |n: u64| (0..n).map(|i| AuditRow { ms: 100 - i, id: (100 - i) as u32, json: e(100 - i) }).collect();
        let full = page_from_rows(rows(3), 2);
        assert_eq!(times(&full), [100, 99]);
        assert_eq!(full.next_cursor.as_deref().and_then(parse_row_cursor), Some((99, 99)));
        let last = page_from_rows(rows(2), 2);
        assert_eq!((last.entries.len(), last.next_cursor), (2, None));
        let bad = page_from_rows(vec![AuditRow { ms: 7, id: 1, json: "{not json".into() }], 5);
        assert_eq!(
            (bad.entries[0].action.as_str(), bad.entries[0].at.as_str()),
            ("unreadable", "1970-01-01T00:00:00.007Z")
        );
    }

    /// The move to another log (D1 in the Worker): legacy and current entries are taken a page at
    /// a time, sanitized, and both copies deleted once imported; orphaned app copies go last.
    #[test]
    fn stored_entries_are_taken_by_page_then_deleted() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            for ms in 1..=5u64 {
                add(&s, ms * 1000, "demo-app", "publish").await;
            }
            let legacy = serde_json::json!({"at": time::format_millis(500), "actor": "admin", "action": "token-revoke",
                "tokenId": "../x", "status": 404});
            s.put_file(&format!("{PREFIX}0000000000500-0000000a.json"), legacy.to_string().as_bytes(), "a/b");
            s.put_file(&format!("{}{}", app_prefix("gone-app"), entry_name(1, "00000001")), b"{}", "a/b");
            let mut moved = Vec::new();
            loop {
                let page = take_stored_page(&s, 4).await.unwrap();
                // Taking again before deleting yields the same names: an importer keyed on them
                // inserts nothing twice.
                assert_eq!(take_stored_page(&s, 4).await.unwrap(), page);
                delete_stored(&s, &page).await.unwrap();
                if page.is_empty() {
                    break;
                }
                assert!(page.len() <= 4);
                moved.extend(page);
            }
            let ms: Vec<u64> = moved.iter().map(|e| e.ms).collect();
            assert_eq!(ms, [5000, 4000, 3000, 2000, 1000, 500]);
            assert_eq!(moved[5].entry.token_id.as_deref(), Some(INVALID), "sanitized on the way");
            assert_eq!(moved[0].entry.at, "1970-01-01T00:00:05.000Z");
            assert!(s.keys().is_empty(), "{:?}", s.keys());
        });
    }

    #[test]
    fn legacy_entries_migrate_sanitized_then_disappear() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            add(&s, 5000, "demo-app", "publish").await;
            let legacy = |ms: u64, slug: &str, token: &str| {
                let e = serde_json::json!({"at": time::format_millis(ms), "actor": "admin", "action": "token-revoke",
                    "slug": slug, "tokenId": token, "status": 404});
                s.put_file(&format!("{PREFIX}{ms:013}-0000000{}.json", ms / 1000), e.to_string().as_bytes(), "a/b");
            };
            legacy(1000, "demo-app", "../../x");
            legacy(2000, "utility-app", "0123456789abcdef");
            assert_eq!(times(&list(&s, None, 0, 10).await.unwrap()), [5000], "legacy entries are not read");
            assert_eq!(migrate_legacy(&s).await.unwrap(), 2);
            assert_eq!(migrate_legacy(&s).await.unwrap(), 0);
            let all = list(&s, None, 0, 10).await.unwrap();
            assert_eq!(times(&all), [5000, 2000, 1000]);
            assert_eq!(all.entries[2].token_id.as_deref(), Some(INVALID), "sanitized on the way");
            assert_eq!(times(&list(&s, Some("demo-app"), 0, 10).await.unwrap()), [5000, 1000]);
            assert!(s.keys().iter().all(|k| !k.ends_with(".json")), "originals deleted");
        });
    }
}
