//! An append-only audit log of deploy operations under `_system/audit/`: one immutable object
//! per operation, keyed by time so listing is chronological. The entry is also kept in the
//! object's custom metadata, so reading the log never opens an object.

use crate::access::auth::Principal;
use crate::deploy::service::Ctx;
use crate::error::ApiError;
use crate::protocol::hash;
use crate::protocol::time;
use crate::storage::layout::Target;
use crate::storage::store::{list_all_after, Condition, ObjectStore, PutOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PREFIX: &str = "_system/audit/";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub at: String,
    /// `admin` or the token id — never a secret.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    /// publish, republish, rollback-to-embedded, delete-runtime, delete-update, token-create, token-revoke
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
    /// The token a token operation was about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// HTTP status of the outcome.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AuditEntry {
    pub fn new(who: &Principal, action: &str) -> Self {
        let (actor, actor_name) = who.actor();
        AuditEntry { actor, actor_name, action: action.into(), ..Default::default() }
    }
    pub fn target(mut self, t: &Target) -> Self {
        self.slug = Some(t.slug.clone());
        self.platform = Some(t.platform.to_string());
        self.runtime_version = Some(t.runtime_version.clone());
        self
    }
    pub fn result<T>(mut self, r: &Result<T, ApiError>, ok_status: u16) -> Self {
        match r {
            Ok(_) => self.status = ok_status,
            Err(e) => {
                self.status = e.status;
                self.error = Some(e.message.chars().take(300).collect());
            }
        }
        self
    }
}

pub async fn append<S: ObjectStore>(store: &S, mut entry: AuditEntry, ctx: &Ctx<'_>) -> Result<(), ApiError> {
    entry.at = time::format_millis(ctx.now_ms);
    let json = serde_json::to_string(&entry).expect("serializes");
    let key = format!("{PREFIX}{:013}-{}.json", ctx.now_ms, hash::hex(&(ctx.random)()[..4]));
    let mut custom = BTreeMap::new();
    // R2 custom metadata is limited to 2 KiB; longer entries are read from the body.
    if json.len() <= 1800 {
        custom.insert("entry".to_string(), json.clone());
    }
    let opts = PutOptions {
        content_type: Some("application/json".into()),
        custom,
        condition: Condition::IfAbsent,
        ..Default::default()
    };
    store.put(&key, json.into_bytes(), opts).await?;
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
}

/// Entries at or after `since_ms`, optionally of one app, oldest first, at most `limit` (the
/// newest ones when more match). Keys sort by time, so listing starts at `since_ms`.
pub async fn list<S: ObjectStore>(
    store: &S,
    slug: Option<&str>,
    since_ms: u64,
    limit: usize,
) -> Result<AuditList, ApiError> {
    let mut entries = Vec::new();
    // `<since>-…` sorts after `<since>`, every earlier time before it.
    let start_after = format!("{PREFIX}{since_ms:013}");
    for o in list_all_after(store, PREFIX, Some(&start_after)).await? {
        let ts = o.key.strip_prefix(PREFIX).and_then(|k| k.get(..13)).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
        if ts < since_ms {
            continue;
        }
        let entry: AuditEntry = match o.custom.get("entry") {
            Some(e) => serde_json::from_str(e).map_err(|e| ApiError::internal(format!("corrupt audit entry: {e}")))?,
            None => match store.get(&o.key).await? {
                Some((_, b)) => {
                    serde_json::from_slice(&b).map_err(|e| ApiError::internal(format!("corrupt audit entry: {e}")))?
                }
                None => continue,
            },
        };
        if slug.is_none_or(|s| entry.slug.as_deref() == Some(s)) {
            entries.push(entry);
        }
    }
    let skip = entries.len().saturating_sub(limit);
    Ok(AuditList { entries: entries.split_off(skip) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::storage::store::MemoryStore;
    use crate::validate::Platform;

    #[test]
    fn append_and_filter() {
        pollster::block_on(async {
            let s = MemoryStore::new();
            let rnd = || [7u8; 16];
            let t = Target { slug: "demo-app".into(), platform: Platform::Ios, runtime_version: "1.0.3".into() };
            for (ms, slug) in [(1000, "demo-app"), (2000, "utility-app"), (3000, "demo-app")] {
                let ctx = Ctx { origin: "x", now_ms: ms, limits: Limits::default(), random: &rnd };
                let e = AuditEntry::new(&Principal::Admin, "publish")
                    .target(&Target { slug: slug.into(), ..t.clone() })
                    .result(&Ok::<(), ApiError>(()), 201);
                append(&s, e, &ctx).await.unwrap();
            }
            let all = list(&s, None, 0, 100).await.unwrap().entries;
            assert_eq!(
                all.iter().map(|e| e.at.as_str()).collect::<Vec<_>>(),
                ["1970-01-01T00:00:01.000Z", "1970-01-01T00:00:02.000Z", "1970-01-01T00:00:03.000Z"]
            );
            assert_eq!(all[0].actor, "admin");
            assert_eq!(all[0].status, 201);
            assert_eq!(list(&s, Some("demo-app"), 0, 100).await.unwrap().entries.len(), 2);
            assert_eq!(list(&s, None, 2000, 100).await.unwrap().entries.len(), 2);
            assert_eq!(
                list(&s, None, 0, 1).await.unwrap().entries[0].at,
                "1970-01-01T00:00:03.000Z",
                "the newest when limited"
            );
            let failed = AuditEntry::new(&Principal::Admin, "delete-runtime")
                .result(&Err::<(), _>(ApiError::not_found("nothing")), 200);
            assert_eq!((failed.status, failed.error.as_deref()), (404, Some("nothing")));
        });
    }
}
