//! Capacitor stats → the same health counters and automatic halt as Expo apps. Invariant: a
//! stats event counts only when it names a platform, an install id and a bundle version, and the
//! device's channel serves a published version; it is keyed like an Expo update, under the
//! runtime [`HEALTH_RUNTIME`] (Capacitor bundles have no runtimeVersion), so the one report, rule
//! and halt log serve both. A halt of a Capacitor version is a guarded rollback of its channel
//! ([`halt_op`]): the previous version, or the binary's bundle when nothing came before.

use super::plugin::{self, StatEvent, StatKind};
use super::state::{AppState, CapAction, CapOp, CapRequest, BUILTIN};
use crate::health::{self, Kind, Signal};
use crate::storage::layout::Target;
use crate::validate::Slug;

/// The runtime segment Capacitor health rows are kept under.
pub const HEALTH_RUNTIME: &str = "capacitor";

/// One group of signals for the health aggregator: the (platform) target, the version the
/// device's channel serves now (the update under watch), and the signals.
pub type StatSignals = (Target, String, Vec<Signal>);

/// The health signals of one stats call, grouped by platform and channel. `set` is a launch of
/// `version_name`; the failure actions (see [`StatEvent::kind`]) are failures of it.
pub fn signals(state: &AppState, slug: &Slug, events: &[StatEvent]) -> Vec<StatSignals> {
    let mut out: Vec<StatSignals> = Vec::new();
    for e in events {
        let kind = match e.kind() {
            StatKind::Launched => Kind::Launched,
            StatKind::Failed => Kind::Failed,
            StatKind::Other => continue,
        };
        if e.version_name == BUILTIN {
            continue;
        }
        let Ok(target) = Target::parse(slug, &e.platform, HEALTH_RUNTIME) else { continue };
        let Ok(channel) = plugin::channel_for(state, &e.default_channel) else { continue };
        let Some(served) = state.channels.get(channel).and_then(|c| c.current.clone()).filter(|v| v != BUILTIN) else {
            continue;
        };
        let Some(signal) = health::signal(channel, &e.version_name, &e.device_id, kind, None) else { continue };
        match out.iter_mut().find(|(t, s, sig)| t == &target && s == &served && sig[0].channel == signal.channel) {
            Some((_, _, list)) => list.push(signal),
            None => out.push((target, served, vec![signal])),
        }
    }
    out
}

/// The write that halts `version` on `channel` when the rule decides so, or `None` when the key
/// is not a Capacitor one.
pub fn halt_op(target: &Target, channel: &str, version: &str) -> Option<CapOp> {
    (target.runtime_version.as_str() == HEALTH_RUNTIME).then(|| CapOp {
        action: CapAction::Rollback,
        slug: target.slug.clone(),
        request: CapRequest {
            channel: Some(channel.to_string()),
            expected_current: Some(version.to_string()),
            ..Default::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacitor::state::{Bundle, ChannelState};

    fn state() -> AppState {
        let mut s = AppState::default();
        let bundle = |v: &str| Bundle {
            version: v.into(),
            checksum: "0".repeat(64),
            size: 1,
            min_native_version: None,
            published_at: "2026-01-01T00:00:00.000Z".into(),
        };
        s.channels.insert(
            "production".into(),
            ChannelState {
                id: 1,
                current: Some("1.0.1".into()),
                versions: vec![bundle("1.0.0"), bundle("1.0.1")],
                ..Default::default()
            },
        );
        s
    }

    fn event(action: &str, platform: &str, version: &str) -> StatEvent {
        StatEvent {
            device_id: "6aa1d0a1-6a4e-4c1b-9e6e-2f9d1c0b7a11".into(),
            version_name: version.into(),
            action: action.into(),
            platform: platform.into(),
            default_channel: String::new(),
        }
    }

    #[test]
    fn signals_set_and_failures_count_under_the_capacitor_runtime() {
        let slug = Slug::parse("com.example.app").unwrap();
        let events = [
            event("set", "android", "1.0.1"),
            event("update_fail", "android", "1.0.1"),
            event("download_10", "android", "1.0.1"),
            event("set", "web", "1.0.1"),
            event("set", "ios", BUILTIN),
        ];
        let groups = signals(&state(), &slug, &events);
        assert_eq!(groups.len(), 1, "{groups:?}");
        let (target, served, list) = &groups[0];
        assert_eq!((target.platform.as_str(), target.runtime_version.as_str()), ("android", HEALTH_RUNTIME));
        assert_eq!(served, "1.0.1");
        let kinds: Vec<Kind> = list.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, vec![Kind::Launched, Kind::Failed]);
        assert!(list.iter().all(|s| s.update_id == "1.0.1" && s.channel == "production"));
    }

    #[test]
    fn signals_private_or_unknown_channel_counts_nothing() {
        let slug = Slug::parse("com.example.app").unwrap();
        let mut e = event("update_fail", "ios", "1.0.1");
        e.default_channel = "nope".into();
        assert!(signals(&state(), &slug, &[e]).is_empty());
    }

    #[test]
    fn halt_op_expo_target_is_none_capacitor_target_is_guarded_rollback() {
        let expo = Target::parse("app", "ios", "1.0.0").unwrap();
        assert!(halt_op(&expo, "production", "x").is_none());
        let cap = Target::parse("com.example.app", "ios", HEALTH_RUNTIME).unwrap();
        let op = halt_op(&cap, "production", "1.0.1").unwrap();
        assert_eq!(op.action, CapAction::Rollback);
        assert_eq!(op.request.expected_current.as_deref(), Some("1.0.1"));
    }
}
