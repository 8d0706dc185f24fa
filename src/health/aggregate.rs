//! The per-isolate batch: signals from manifest checks wait here and leave in one flush per app
//! to its writer. Invariants:
//!
//! - the check path only records (no I/O); [`Aggregator::record`] says when the caller must
//!   schedule a flush, and a flush is always scheduled while anything waits, so nothing waits
//!   forever (as long as the isolate lives: an evicted isolate loses what it had not flushed);
//! - per app at most one flush per [`Policy::launch_interval_ms`], or per
//!   [`Policy::failure_interval_ms`] while failures wait;
//! - memory is bounded: launches beyond [`Policy::max_launches`] per app, and apps beyond
//!   [`Policy::max_apps`], are dropped (launches are counted approximately anyway); failure
//!   reports are never dropped — past [`Policy::max_failures`] the flush is due at once instead.

use super::{Batch, Group, Kind, Signal};
use crate::storage::layout::Target;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub launch_interval_ms: u64,
    pub failure_interval_ms: u64,
    pub max_launches: usize,
    pub max_failures: usize,
    pub max_apps: usize,
    /// Distinct fatal texts kept per update between flushes.
    pub max_fatal_texts: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            launch_interval_ms: 5_000,
            failure_interval_ms: 1_000,
            max_launches: 5_000,
            max_failures: 5_000,
            max_apps: 256,
            max_fatal_texts: 5,
        }
    }
}

type GroupKey = (Target, String, String);

#[derive(Default)]
struct Pending {
    groups: HashMap<GroupKey, Group>,
    launches: usize,
    failures: usize,
    last_flush_ms: Option<u64>,
    scheduled_at: Option<u64>,
}

#[derive(Default)]
pub struct Aggregator {
    pub policy: Policy,
    apps: HashMap<String, Pending>,
}

impl Aggregator {
    pub fn new(policy: Policy) -> Self {
        Aggregator { policy, apps: HashMap::new() }
    }

    /// Records one check's signals for `target`, whose channel served `served`. Returns the
    /// delay (ms) after which the caller must call [`Aggregator::take`] for this app, when a new
    /// flush has to be scheduled.
    pub fn record(&mut self, target: &Target, served: Option<&str>, signals: &[Signal], now_ms: u64) -> Option<u64> {
        if signals.is_empty() {
            return None;
        }
        let policy = self.policy;
        let full = self.apps.len() >= policy.max_apps && !self.apps.contains_key(target.slug.as_str());
        let p = self.apps.entry(target.slug.to_string()).or_default();
        for s in signals {
            let droppable = s.kind == Kind::Launched && (full || p.launches >= policy.max_launches);
            if droppable {
                continue;
            }
            let key = (target.clone(), s.channel.clone(), s.update_id.clone());
            let g = p.groups.entry(key).or_insert_with(|| Group {
                target: target.clone(),
                channel: s.channel.clone(),
                update_id: s.update_id.clone(),
                served: None,
                launched: Vec::new(),
                failed: Vec::new(),
                fatal: Vec::new(),
            });
            if g.served.is_none() {
                g.served = served.map(str::to_string);
            }
            let list = match s.kind {
                Kind::Launched => &mut g.launched,
                Kind::Failed => &mut g.failed,
            };
            if !list.contains(&s.client) {
                list.push(s.client);
                match s.kind {
                    Kind::Launched => p.launches += 1,
                    Kind::Failed => p.failures += 1,
                }
            }
            if let Some(text) = &s.fatal {
                match g.fatal.iter().position(|(t, _)| t == text) {
                    Some(i) => g.fatal[i].1 += 1,
                    None if g.fatal.len() < policy.max_fatal_texts => g.fatal.push((text.clone(), 1)),
                    None => {}
                }
            }
        }
        if p.groups.is_empty() {
            self.apps.remove(target.slug.as_str());
            return None;
        }
        let due = if p.failures >= policy.max_failures {
            now_ms
        } else {
            let interval = if p.failures > 0 { policy.failure_interval_ms } else { policy.launch_interval_ms };
            p.last_flush_ms.map_or(now_ms, |last| (last + interval).max(now_ms))
        };
        let due = due.max(now_ms);
        match p.scheduled_at {
            Some(at) if at <= due => None,
            _ => {
                p.scheduled_at = Some(due);
                Some(due - now_ms)
            }
        }
    }

    /// The app's batch, when a flush scheduled for now or earlier is still outstanding (a wake-up
    /// superseded by an earlier one finds nothing).
    pub fn take(&mut self, slug: &str, now_ms: u64) -> Option<Batch> {
        let p = self.apps.get_mut(slug)?;
        if p.scheduled_at.is_none_or(|at| at > now_ms) {
            return None;
        }
        let p = self.apps.remove(slug)?;
        // Keep when this app last flushed, so the next batch respects the interval.
        self.apps.insert(slug.to_string(), Pending { last_flush_ms: Some(now_ms), ..Default::default() });
        // In no particular order: the writer does not depend on it (and a sort is KBs of wasm).
        Some(Batch { slug: slug.to_string(), groups: p.groups.into_values().collect() })
    }

    /// Devices waiting in memory (launches, failures) across apps.
    pub fn waiting(&self) -> (usize, usize) {
        self.apps.values().fold((0, 0), |(l, f), p| (l + p.launches, f + p.failures))
    }

    /// Drops the bookkeeping of apps with nothing waiting (called by the adapter now and then).
    pub fn forget_idle(&mut self, now_ms: u64) {
        let keep_ms = self.policy.launch_interval_ms;
        self.apps.retain(|_, p| !p.groups.is_empty() || p.last_flush_ms.is_some_and(|t| t + keep_ms > now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Platform;

    const U: &str = "11111111-1111-4111-8111-111111111111";

    fn t(slug: &str) -> Target {
        Target::parse(slug, Platform::Ios.as_str(), "1").unwrap()
    }

    fn sig(kind: Kind, client: u64) -> Signal {
        Signal { channel: "production".into(), update_id: U.into(), client, kind, fatal: None }
    }

    #[test]
    fn aggregator_launches_wait_five_seconds_failures_one() {
        let mut a = Aggregator::default();
        let app = t("demo-app");
        // First signal: due at once (nothing flushed yet).
        assert_eq!(a.record(&app, Some(U), &[sig(Kind::Launched, 1)], 1_000), Some(0));
        let b = a.take("demo-app", 1_000).unwrap();
        assert_eq!(b.groups[0].launched, vec![1]);
        // Launches after a flush wait for the interval; one wake-up is scheduled, not one per check.
        assert_eq!(a.record(&app, Some(U), &[sig(Kind::Launched, 2)], 1_200), Some(4_800));
        assert_eq!(a.record(&app, Some(U), &[sig(Kind::Launched, 3)], 1_300), None);
        // A failure brings the flush forward to 1 s after the last one.
        assert_eq!(a.record(&app, Some(U), &[sig(Kind::Failed, 4)], 1_400), Some(600));
        assert!(a.take("demo-app", 1_999).is_none(), "not yet due");
        let b = a.take("demo-app", 2_000).unwrap();
        assert_eq!((b.groups[0].launched.len(), b.groups[0].failed.clone()), (2, vec![4]));
        // The superseded 5 s wake-up finds nothing.
        assert!(a.take("demo-app", 6_000).is_none());
    }

    #[test]
    fn aggregator_dedupes_devices_and_counts_fatal_texts() {
        let mut a = Aggregator::default();
        let app = t("demo-app");
        let mut s = sig(Kind::Failed, 7);
        s.fatal = Some("boom".into());
        a.record(&app, Some(U), &[s.clone(), s.clone(), sig(Kind::Failed, 7)], 0);
        let b = a.take("demo-app", 0).unwrap();
        assert_eq!(b.groups[0].failed, vec![7]);
        assert_eq!(b.groups[0].fatal, vec![("boom".to_string(), 2)]);
    }

    #[test]
    fn aggregator_memory_bounded_but_failures_never_dropped() {
        let policy = Policy { max_launches: 100, max_failures: 50, max_apps: 2, ..Default::default() };
        let mut a = Aggregator::new(policy);
        let app = t("demo-app");
        a.record(&app, Some(U), &[sig(Kind::Launched, 0)], 0);
        a.take("demo-app", 0);
        for i in 0..1_000 {
            a.record(&app, Some(U), &[sig(Kind::Launched, i)], 10);
        }
        assert_eq!(a.waiting(), (100, 0), "launches capped");
        let mut due_now = false;
        for i in 0..60 {
            due_now |= a.record(&app, Some(U), &[sig(Kind::Failed, i)], 20) == Some(0);
        }
        assert_eq!(a.waiting(), (100, 60), "every failure kept past the cap");
        assert!(due_now, "past max_failures the flush is due at once");
        assert_eq!(a.take("demo-app", 20).unwrap().groups[0].failed.len(), 60);
        // Apps beyond max_apps: launches dropped, failures kept.
        a.record(&t("second-app"), Some(U), &[sig(Kind::Launched, 1)], 30);
        a.record(&t("third-app"), Some(U), &[sig(Kind::Launched, 1), sig(Kind::Failed, 2)], 30);
        let third = a.take("third-app", 30).unwrap();
        assert!(third.groups[0].launched.is_empty());
        assert_eq!(third.groups[0].failed, vec![2]);
    }
}
