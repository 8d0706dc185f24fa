//! Update health from the client's own headers, and the automatic halt. Invariant: the public
//! check path only *records* (signals → the per-isolate [`aggregate::Aggregator`], no I/O, no
//! error); counting, the [`rule`] and halting happen in the app's writer, where a
//! [`store::HealthStore`] holds the counters and [`store::ingest`] applies a [`Batch`] and names
//! the updates to halt. Devices are counted once per update and kind by a hash of their install
//! id, never by request; failures exactly, launches exactly up to a cap and then estimated
//! ([`sketch`]).
//!
//! - [`signals`] — headers → [`Signal`]s (validated, capped);
//! - [`aggregate`] — the per-isolate batch and its flush policy;
//! - [`store`] — counters, ingest, rule evaluation, the `GET /api/health` report;
//! - [`rule`] — the halt rule and the Wilson interval;
//! - [`sketch`] — exact set + HyperLogLog;
//! - [`notify`] — the audit entry and the webhook body/signature of an automatic halt.

pub mod aggregate;
pub mod notify;
pub mod rule;
pub mod signals;
pub mod sketch;
pub mod store;

use crate::storage::layout::Target;
use serde::{Deserialize, Serialize};

/// What a device reported about one update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Running it (expo: `expo-current-update-id`).
    Launched,
    /// Its launch failed (expo: listed in `expo-recent-failed-update-ids` while not current).
    Failed,
}

/// One device's report about one update: what every protocol adapter produces (expo headers
/// through [`signals::from_check`]; other protocols build it directly, see [`signal`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    pub channel: String,
    pub update_id: String,
    /// The install id's hash ([`signals::client_hash`]).
    pub client: u64,
    pub kind: Kind,
    /// A validated fatal-error first line ([`signals::fatal_text`]).
    pub fatal: Option<String>,
}

/// The entry point for already-parsed signals of any protocol (e.g. a Capacitor stats call):
/// validates the raw values the way the expo path does; `None` when the install id or the update
/// key is not acceptable.
pub fn signal(channel: &str, update_id: &str, client_id: &str, kind: Kind, fatal: Option<&str>) -> Option<Signal> {
    let client = signals::client_hash(client_id)?;
    let update_id = crate::protocol::id::normalize_uuid(update_id)
        .or_else(|| signals::is_update_key(update_id).then(|| update_id.to_string()))?;
    let channel = crate::validate::channel(channel).ok()?.to_string();
    Some(Signal { channel, update_id, client, kind, fatal: fatal.and_then(signals::fatal_text) })
}

/// One flush of one isolate for one app: what its writer ingests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub slug: String,
    pub groups: Vec<Group>,
}

/// The devices of a batch for one (runtime, channel, update).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub target: Target,
    pub channel: String,
    pub update_id: String,
    /// What the channel served when the check was answered (the update under watch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub launched: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fatal: Vec<(String, u64)>,
}

/// One check's signals as a batch of their own, for adapters that do not aggregate (the CLI's
/// native test server ingests every check at once).
pub fn batch_of(target: &Target, served: Option<&str>, signals: &[Signal]) -> Option<Batch> {
    let mut a = aggregate::Aggregator::default();
    a.record(target, served, signals, 0)?;
    a.take(&target.slug, 0)
}

/// `HEALTH` ("on" | "off", default on): whether checks record signals at all.
pub fn enabled(var: Option<&str>) -> bool {
    !matches!(var.map(str::trim), Some("off"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_entry_point_validates_like_the_expo_path() {
        let u = "11111111-1111-4111-8111-111111111111";
        let s = signal("production", &u.to_ascii_uppercase(), "ABC-1", Kind::Failed, Some("x\ny")).unwrap();
        assert_eq!((s.update_id.as_str(), s.fatal.as_deref()), (u, Some("x")));
        assert_eq!(s.client, signals::client_hash("abc-1").unwrap());
        assert!(signal("production", "1.2.3", "abc", Kind::Launched, None).is_some(), "a bundle version");
        assert!(signal("production", "../x", "abc", Kind::Launched, None).is_none());
        assert!(signal("production", u, "", Kind::Launched, None).is_none());
        assert!(signal("bad channel!", u, "abc", Kind::Launched, None).is_none());
    }

    #[test]
    fn batch_of_one_check_holds_its_signals() {
        let t = Target::parse("demo-app", "ios", "1").unwrap();
        let s = signal("production", "11111111-1111-4111-8111-111111111111", "abc", Kind::Failed, None).unwrap();
        let b = batch_of(&t, Some("x"), std::slice::from_ref(&s)).unwrap();
        assert_eq!((b.slug.as_str(), b.groups[0].failed.as_slice()), ("demo-app", [s.client].as_slice()));
        assert!(batch_of(&t, None, &[]).is_none());
    }

    #[test]
    fn health_var_defaults_on() {
        assert!(enabled(None) && enabled(Some("on")) && !enabled(Some("off")));
    }
}
