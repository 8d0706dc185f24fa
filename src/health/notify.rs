//! What an automatic halt tells the world besides the channel: an audit entry (actor
//! [`SYSTEM_HEALTH`], action `auto-halt`) and, when HEALTH_WEBHOOK_URL is set, a JSON POST whose
//! body is signed with HMAC-SHA256 under HEALTH_WEBHOOK_SECRET (hex, in [`SIGNATURE_HEADER`] as
//! `sha256=<hex>`), so the receiver can tell it came from this server. Both are built here;
//! adapters only send them, after the halt, and never let their failure undo or block it.

use super::store::HaltDecision;
use crate::access::audit::{AuditEntry, SYSTEM_HEALTH};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "x-expo-ota-signature";
pub const AUDIT_ACTION: &str = "auto-halt";

/// The audit entry of a halt; `outcome` is the status and error of applying it.
pub fn audit_entry(d: &HaltDecision, status: u16, error: Option<&str>) -> AuditEntry {
    let mut e = AuditEntry { actor: SYSTEM_HEALTH.into(), action: AUDIT_ACTION.into(), ..Default::default() }
        .target(&d.key.target)
        .with_channel(&d.key.channel)
        .with_update_ids([d.key.update_id.as_str()]);
    e.status = status;
    // The reason is built by the rule from numbers; an error is the writer's message.
    e.error = Some(match error {
        Some(err) => format!("{} — halt failed: {err}", d.reason),
        None => d.reason.clone(),
    });
    e
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookBody<'a> {
    event: &'static str,
    at: &'a str,
    slug: &'a str,
    platform: &'a str,
    runtime_version: &'a str,
    channel: &'a str,
    update_id: &'a str,
    reason: &'a str,
    launched: u64,
    failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_update_id: Option<&'a str>,
    applied: bool,
}

/// The webhook's JSON body.
pub fn webhook_body(d: &HaltDecision, applied: bool) -> String {
    let t = &d.key.target;
    serde_json::to_string(&WebhookBody {
        event: "update.halted",
        at: &d.at,
        slug: &t.slug,
        platform: t.platform.as_str(),
        runtime_version: &t.runtime_version,
        channel: &d.key.channel,
        update_id: &d.key.update_id,
        reason: &d.reason,
        launched: d.counts.launched,
        failed: d.counts.failed,
        previous_update_id: d.previous.as_ref().map(|(id, _)| id.as_str()),
        applied,
    })
    .expect("serializes")
}

/// `sha256=<hex HMAC-SHA256 of body under secret>`.
pub fn signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body.as_bytes());
    format!("sha256={}", crate::protocol::hash::hex(&mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::rule::Counts;
    use crate::health::store::UpdateKey;
    use crate::storage::layout::Target;

    fn decision() -> HaltDecision {
        HaltDecision {
            key: UpdateKey {
                target: Target::parse("demo-app", "ios", "1").unwrap(),
                channel: "production".into(),
                update_id: "22222222-2222-4222-8222-222222222222".into(),
            },
            reason: "60 of 120 devices failed".into(),
            at: "2026-01-01T00:00:00.000Z".into(),
            counts: Counts { launched: 60, failed: 60 },
            previous: Some(("11111111-1111-4111-8111-111111111111".into(), Counts::default())),
        }
    }

    #[test]
    fn signature_is_rfc4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", "what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn webhook_body_names_the_update_and_the_numbers() {
        let v: serde_json::Value = serde_json::from_str(&webhook_body(&decision(), true)).unwrap();
        assert_eq!(v["event"], "update.halted");
        assert_eq!(v["updateId"], "22222222-2222-4222-8222-222222222222");
        assert_eq!((v["failed"].as_u64(), v["applied"].as_bool()), (Some(60), Some(true)));
        assert_eq!(v["previousUpdateId"], "11111111-1111-4111-8111-111111111111");
    }

    #[test]
    fn audit_entry_survives_sanitizing_with_the_system_actor() {
        let e = audit_entry(&decision(), 201, None).sanitized();
        assert_eq!((e.actor.as_str(), e.action.as_str(), e.status), (SYSTEM_HEALTH, AUDIT_ACTION, 201));
        assert_eq!(e.update_ids, vec!["22222222-2222-4222-8222-222222222222"]);
        assert_eq!(e.channel.as_deref(), Some("production"));
        assert!(e.error.unwrap().contains("60 of 120"));
    }
}
