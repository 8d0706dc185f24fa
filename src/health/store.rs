//! The health counters of one app, behind [`HealthStore`] (SQLite in the app's Durable Object,
//! memory on the host), and the two operations on them: [`ingest`] a flushed [`Batch`] and
//! decide halts, and [`report`] for `GET /api/health`. Invariants:
//!
//! - a device is counted once per (runtime, channel, update, kind): failures in an exact set of
//!   install-id hashes (up to [`FAILED_EXACT_CAP`], then estimated), launches exactly up to
//!   [`LAUNCHED_EXACT_CAP`] and then by the HyperLogLog that is fed from the first launch;
//! - what is kept is bounded: at most [`MAX_TRACKED_UPDATES`] updates per (runtime, channel)
//!   besides the ones checks saw served, [`MAX_FATAL_TEXTS`] fatal texts per update;
//! - the rule runs only for updates a check saw served, once counts changed, and a halt is
//!   sticky: it is written into the update's row in the same synchronous step that decided it,
//!   so two batches can never both fire it;
//! - a batch only ever changes rows of its own app.

use super::rule::{wilson, Counts, Rule};
use super::sketch::Distinct;
use super::{Batch, Kind};
use crate::error::ApiError;
use crate::http::route::query_param;
use crate::protocol::time;
use crate::storage::layout::Target;
use crate::validate::{self, Platform};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

pub const LAUNCHED_EXACT_CAP: u64 = 1_000;
pub const FAILED_EXACT_CAP: u64 = 100_000;
pub const MAX_TRACKED_UPDATES: usize = 64;
pub const MAX_FATAL_TEXTS: usize = 20;
/// Updates shown per (runtime, channel) by [`report`], newest first.
pub const REPORT_UPDATES: usize = 10;
/// The actor of automatic halts in the audit log and in [`HaltState::by`].
pub const SYSTEM_ACTOR: &str = crate::access::audit::SYSTEM_HEALTH;

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("health counters: {0}")]
    Storage(String),
}

impl From<HealthError> for ApiError {
    fn from(e: HealthError) -> Self {
        ApiError::internal(e.to_string())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpdateKey {
    pub target: Target,
    pub channel: String,
    pub update_id: String,
}

impl UpdateKey {
    /// `<slug>/<platform>/<runtimeVersion>/<channel>/<update>`: none of the parts can hold `/`.
    pub fn id(&self) -> String {
        let t = &self.target;
        format!("{}/{}/{}/{}/{}", t.slug, t.platform, t.runtime_version, self.channel, self.update_id)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HaltState {
    pub at: String,
    pub reason: String,
    pub by: String,
    /// Set when applying the halt failed (the state stays halted: no second attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything kept about one update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRow {
    pub target: Target,
    pub channel: String,
    pub update_id: String,
    pub first_seen_ms: u64,
    /// When a check first reported this update as what the channel serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_ms: Option<u64>,
    pub launched: Distinct,
    pub failed: Distinct,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fatal: Vec<(String, u64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halt: Option<HaltState>,
}

impl UpdateRow {
    pub fn key(&self) -> UpdateKey {
        UpdateKey { target: self.target.clone(), channel: self.channel.clone(), update_id: self.update_id.clone() }
    }
    pub fn counts(&self) -> Counts {
        Counts { launched: self.launched.count(LAUNCHED_EXACT_CAP).0, failed: self.failed.count(FAILED_EXACT_CAP).0 }
    }
}

/// Storage of the counters. Synchronous on purpose: in the Durable Object these are SQLite
/// calls with no await between them, so one [`ingest`] is atomic with respect to other requests.
pub trait HealthStore {
    fn load(&self, key: &UpdateKey) -> Result<Option<UpdateRow>, HealthError>;
    fn save(&self, row: &UpdateRow) -> Result<(), HealthError>;
    /// Adds the device to the exact set of (key, kind); true when it was not in it.
    fn add_device(&self, key: &UpdateKey, kind: Kind, client: u64) -> Result<bool, HealthError>;
    /// Rows of the app, optionally of one platform, runtime and channel, in any order.
    fn rows(&self, filter: &Filter) -> Result<Vec<UpdateRow>, HealthError>;
}

/// Which rows: an app, and optionally one platform / runtime / channel. It travels as the
/// query string it was parsed from ([`Filter::to_query`]), not as JSON: one parser fewer in wasm.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub slug: String,
    pub platform: Option<String>,
    pub runtime_version: Option<String>,
    pub channel: Option<String>,
}

impl Filter {
    /// `GET /api/health?slug=&platform=&runtimeVersion=&channel=`: each value validated (400).
    pub fn from_query(query: &str) -> Result<Self, ApiError> {
        let get = |n: &str| query_param(query, n).filter(|v| !v.is_empty());
        let slug = get("slug").ok_or_else(|| ApiError::bad_request("missing slug query parameter"))?;
        Ok(Filter {
            slug: validate::slug(&slug)?.to_string(),
            platform: get("platform").map(|p| Platform::parse(&p).map(|p| p.as_str().to_string())).transpose()?,
            runtime_version: get("runtimeVersion")
                .map(|r| validate::runtime_version(&r).map(str::to_string))
                .transpose()?,
            channel: get("channel").map(|c| validate::channel(&c).map(str::to_string)).transpose()?,
        })
    }

    /// The query string [`Filter::from_query`] reads back (values percent-encoded).
    pub fn to_query(&self) -> String {
        let enc = |v: &str| percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string();
        let mut q = format!("slug={}", enc(&self.slug));
        for (name, v) in
            [("platform", &self.platform), ("runtimeVersion", &self.runtime_version), ("channel", &self.channel)]
        {
            if let Some(v) = v {
                q.push_str(&format!("&{name}={}", enc(v)));
            }
        }
        q
    }

    fn of_key(k: &UpdateKey) -> Self {
        Filter {
            slug: k.target.slug.to_string(),
            platform: Some(k.target.platform.as_str().to_string()),
            runtime_version: Some(k.target.runtime_version.to_string()),
            channel: Some(k.channel.clone()),
        }
    }

    fn matches_key(&self, k: &UpdateKey) -> bool {
        let t = &k.target;
        t.slug.as_str() == self.slug
            && self.platform.as_deref() == Some(t.platform.as_str())
            && self.runtime_version.as_deref() == Some(t.runtime_version.as_str())
            && self.channel.as_deref() == Some(k.channel.as_str())
    }

    pub fn matches(&self, r: &UpdateRow) -> bool {
        let t = &r.target;
        t.slug.as_str() == self.slug
            && self.platform.as_deref().is_none_or(|p| p == t.platform.as_str())
            && self.runtime_version.as_deref().is_none_or(|v| v == t.runtime_version.as_str())
            && self.channel.as_deref().is_none_or(|c| c == r.channel)
    }
}

/// An update the rule says must halt now (its row is already marked halted).
#[derive(Clone, Debug, PartialEq)]
pub struct HaltDecision {
    pub key: UpdateKey,
    pub reason: String,
    pub at: String,
    pub counts: Counts,
    pub previous: Option<(String, Counts)>,
}

impl HaltDecision {
    /// The write that carries this halt out: an Expo update is halted on its channel
    /// ([`WriteOp::Halt`]); a Capacitor version is rolled back on its channel, guarded by what
    /// the channel serves ([`crate::capacitor::health::halt_op`]).
    pub fn write_op(&self) -> crate::deploy::writer::WriteOp {
        use crate::deploy::writer::WriteOp;
        let k = &self.key;
        match crate::capacitor::health::halt_op(&k.target, &k.channel, &k.update_id) {
            Some(op) => WriteOp::Capacitor(op),
            None => WriteOp::Halt {
                target: k.target.clone(),
                channel: k.channel.clone(),
                update_id: k.update_id.clone(),
                reason: self.reason.clone(),
            },
        }
    }
}

/// Counts a batch and evaluates the rule for the updates its checks saw served.
pub fn ingest<H: HealthStore>(
    store: &H,
    batch: &Batch,
    rule: &Rule,
    now_ms: u64,
) -> Result<Vec<HaltDecision>, HealthError> {
    let mut watch: Vec<UpdateKey> = Vec::new();
    // Tracked updates per runtime and channel, read once per batch: a batch may name thousands
    // of made-up update ids, and each would otherwise read every row of its runtime.
    let mut counted: Vec<(Filter, usize)> = Vec::new();
    for g in batch.groups.iter().filter(|g| g.target.slug.as_str() == batch.slug) {
        let key = UpdateKey { target: g.target.clone(), channel: g.channel.clone(), update_id: g.update_id.clone() };
        let served_now = g.served.as_deref() == Some(g.update_id.as_str());
        let mut row = match store.load(&key)? {
            Some(r) => r,
            None if !served_now && tracked(store, &mut counted, &key)? >= MAX_TRACKED_UPDATES => continue,
            None => {
                // A new row: one more tracked update for its runtime and channel.
                tracked(store, &mut counted, &key)?;
                if let Some(c) = counted.iter_mut().find(|(f, _)| f.matches_key(&key)) {
                    c.1 += 1;
                }
                UpdateRow {
                    target: key.target.clone(),
                    channel: key.channel.clone(),
                    update_id: key.update_id.clone(),
                    first_seen_ms: now_ms,
                    served_ms: None,
                    launched: Distinct::default(),
                    failed: Distinct::default(),
                    fatal: Vec::new(),
                    halt: None,
                }
            }
        };
        if served_now && row.served_ms.is_none() {
            row.served_ms = Some(now_ms);
        }
        for (kind, clients, cap) in
            [(Kind::Launched, &g.launched, LAUNCHED_EXACT_CAP), (Kind::Failed, &g.failed, FAILED_EXACT_CAP)]
        {
            if clients.is_empty() {
                continue;
            }
            let distinct = if kind == Kind::Launched { &mut row.launched } else { &mut row.failed };
            // Below the cap a device joins the exact set (counted when new to it); the sketch
            // sees every device either way.
            let (mut members, mut joined) = (Vec::with_capacity(clients.len()), 0u64);
            for &c in clients {
                let new_in_set = distinct.exact + joined < cap && store.add_device(&key, kind, c)?;
                joined += u64::from(new_in_set);
                members.push((c, new_in_set));
            }
            distinct.add_all(members);
        }
        for (text, n) in &g.fatal {
            match row.fatal.iter().position(|(t, _)| t == text) {
                Some(i) => row.fatal[i].1 += *n,
                None if row.fatal.len() < MAX_FATAL_TEXTS => row.fatal.push((text.clone(), *n)),
                None => {}
            }
        }
        store.save(&row)?;
        if let Some(served) = &g.served {
            let k = UpdateKey { update_id: served.clone(), ..key };
            if !watch.contains(&k) {
                watch.push(k);
            }
        }
    }
    let mut halts = Vec::new();
    for key in watch {
        let Some(mut row) = store.load(&key)? else { continue };
        if row.halt.is_some() {
            continue;
        }
        let previous = previous(store, &row)?;
        let counts = row.counts();
        if let Some(reason) = rule.evaluate(counts, previous.as_ref().map(|p| p.counts())) {
            let at = time::format_millis(now_ms);
            row.halt = Some(HaltState { at: at.clone(), reason: reason.clone(), by: SYSTEM_ACTOR.into(), error: None });
            store.save(&row)?;
            halts.push(HaltDecision {
                key,
                reason,
                at,
                counts,
                previous: previous.map(|p| (p.update_id.clone(), p.counts())),
            });
        }
    }
    Ok(halts)
}

/// How many updates are tracked for `key`'s runtime and channel (read from the store once per
/// batch, then kept in `counted`).
fn tracked<H: HealthStore>(
    store: &H,
    counted: &mut Vec<(Filter, usize)>,
    key: &UpdateKey,
) -> Result<usize, HealthError> {
    if let Some((_, n)) = counted.iter().find(|(f, _)| f.matches_key(key)) {
        return Ok(*n);
    }
    let f = Filter::of_key(key);
    let n = store.rows(&f)?.len();
    counted.push((f, n));
    Ok(n)
}

/// The update checks saw served just before `row` on its runtime and channel.
fn previous<H: HealthStore>(store: &H, row: &UpdateRow) -> Result<Option<UpdateRow>, HealthError> {
    let Some(since) = row.served_ms else { return Ok(None) };
    let rows = store.rows(&Filter::of_key(&row.key()))?;
    Ok(rows
        .into_iter()
        .filter(|r| r.update_id != row.update_id && r.served_ms.is_some_and(|s| s < since))
        .max_by_key(|r| r.served_ms))
}

/// Records the outcome of applying a halt in the update's row (the halt itself stays).
pub fn note_halt_error<H: HealthStore>(store: &H, key: &UpdateKey, error: &str) -> Result<(), HealthError> {
    if let Some(mut row) = store.load(key)? {
        if let Some(h) = row.halt.as_mut() {
            h.error = Some(super::signals::fatal_text(error).unwrap_or_default());
            store.save(&row)?;
        }
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    pub slug: String,
    pub rule: Rule,
    pub updates: Vec<UpdateHealth>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateHealth {
    pub platform: String,
    pub runtime_version: String,
    pub channel: String,
    pub update_id: String,
    pub first_seen: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_since: Option<String>,
    pub launched: u64,
    /// True once launches are counted by the estimator (above the exact cap).
    pub launched_estimated: bool,
    pub failed: u64,
    pub failed_estimated: bool,
    /// failed / (failed + launched); absent without outcomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    /// The Wilson 95 % interval of the failure rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate_interval: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_fatal_errors: Vec<FatalCount>,
    /// From the channel pointer (filled by the deploy dispatcher, not kept with the counters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_percentage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halt: Option<HaltState>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FatalCount {
    pub text: String,
    pub count: u64,
}

/// The newest [`REPORT_UPDATES`] updates of each runtime and channel the filter selects.
pub fn report<H: HealthStore>(store: &H, filter: &Filter, rule: &Rule) -> Result<HealthReport, HealthError> {
    let mut rows = store.rows(filter)?;
    rows.retain(|r| filter.matches(r));
    // Grouped by runtime and channel, newest first: the key sorts as text (the time inverted).
    let mut keyed: Vec<(String, UpdateRow)> = rows
        .into_iter()
        .map(|r| {
            let newest = r.served_ms.unwrap_or(r.first_seen_ms).max(r.first_seen_ms);
            let t = &r.target;
            (format!("{}/{}/{}/{:020}", t.platform, t.runtime_version, r.channel, u64::MAX - newest), r)
        })
        .collect();
    insertion_sort_by(&mut keyed, |a, b| a.0 > b.0);
    // Rows of a group are adjacent now: count within the current one.
    let (mut group, mut n) = (None::<(Platform, String, String)>, 0);
    let mut updates = Vec::new();
    for (_, r) in keyed {
        let g = (r.target.platform, r.target.runtime_version.to_string(), r.channel.clone());
        if group.as_ref() != Some(&g) {
            (group, n) = (Some(g), 0);
        }
        n += 1;
        if n > REPORT_UPDATES {
            continue;
        }
        let (launched, launched_estimated) = r.launched.count(LAUNCHED_EXACT_CAP);
        let (failed, failed_estimated) = r.failed.count(FAILED_EXACT_CAP);
        let c = Counts { launched, failed };
        let mut fatal = r.fatal.clone();
        insertion_sort_by(&mut fatal, |a, b| (b.1, &a.0) > (a.1, &b.0));
        updates.push(UpdateHealth {
            platform: r.target.platform.as_str().to_string(),
            runtime_version: r.target.runtime_version.to_string(),
            channel: r.channel.clone(),
            update_id: r.update_id.clone(),
            first_seen: time::format_millis(r.first_seen_ms),
            served_since: r.served_ms.map(time::format_millis),
            launched,
            launched_estimated,
            failed,
            failed_estimated,
            failure_rate: c.rate(),
            failure_rate_interval: c.rate().map(|_| {
                let (lo, hi) = wilson(failed, c.outcomes());
                [lo, hi]
            }),
            top_fatal_errors: fatal.into_iter().take(5).map(|(text, count)| FatalCount { text, count }).collect(),
            rollout_percentage: None,
            halt: r.halt.clone(),
        });
    }
    Ok(HealthReport { slug: filter.slug.clone(), rule: *rule, updates })
}

/// Sorts the few rows of a report (at most [`MAX_TRACKED_UPDATES`] per runtime and channel):
/// the standard library's sorts are several KB of wasm per element type.
fn insertion_sort_by<T>(v: &mut [T], after: impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && after(&v[j - 1], &v[j]) {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// The host implementation (tests, the CLI's native test server).
#[derive(Default)]
pub struct MemoryHealth {
    rows: Mutex<HashMap<String, UpdateRow>>,
    devices: Mutex<HashSet<(String, Kind, u64)>>,
}

impl HealthStore for MemoryHealth {
    fn load(&self, key: &UpdateKey) -> Result<Option<UpdateRow>, HealthError> {
        Ok(self.rows.lock().expect("rows").get(&key.id()).cloned())
    }
    fn save(&self, row: &UpdateRow) -> Result<(), HealthError> {
        self.rows.lock().expect("rows").insert(row.key().id(), row.clone());
        Ok(())
    }
    fn add_device(&self, key: &UpdateKey, kind: Kind, client: u64) -> Result<bool, HealthError> {
        Ok(self.devices.lock().expect("devices").insert((key.id(), kind, client)))
    }
    fn rows(&self, filter: &Filter) -> Result<Vec<UpdateRow>, HealthError> {
        Ok(self.rows.lock().expect("rows").values().filter(|r| filter.matches(r)).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Group;

    const V1: &str = "11111111-1111-4111-8111-111111111111";
    const V2: &str = "22222222-2222-4222-8222-222222222222";

    fn t(slug: &str) -> Target {
        Target::parse(slug, "ios", "1").unwrap()
    }

    fn group(
        slug: &str,
        update: &str,
        served: &str,
        launched: std::ops::Range<u64>,
        failed: std::ops::Range<u64>,
    ) -> Group {
        Group {
            target: t(slug),
            channel: "production".into(),
            update_id: update.into(),
            served: Some(served.into()),
            launched: launched.collect(),
            failed: failed.collect(),
            fatal: Vec::new(),
        }
    }

    fn batch(groups: Vec<Group>) -> Batch {
        Batch { slug: "demo-app".into(), groups }
    }

    fn key(update: &str) -> UpdateKey {
        UpdateKey { target: t("demo-app"), channel: "production".into(), update_id: update.into() }
    }

    #[test]
    fn ingest_counts_devices_once_across_batches() {
        let h = MemoryHealth::default();
        let rule = Rule { enabled: false, ..Rule::default() };
        ingest(&h, &batch(vec![group("demo-app", V1, V1, 0..10, 100..103)]), &rule, 1).unwrap();
        ingest(&h, &batch(vec![group("demo-app", V1, V1, 5..15, 101..104)]), &rule, 2).unwrap();
        let row = h.load(&key(V1)).unwrap().unwrap();
        assert_eq!(row.counts(), Counts { launched: 15, failed: 4 });
        assert_eq!((row.first_seen_ms, row.served_ms), (1, Some(1)));
    }

    #[test]
    fn ingest_halts_once_when_the_rule_fires() {
        let h = MemoryHealth::default();
        let rule = Rule::default();
        // v1 served first and healthy, then v2 served and failing on half the fleet.
        assert!(ingest(&h, &batch(vec![group("demo-app", V1, V1, 0..100, 0..0)]), &rule, 1).unwrap().is_empty());
        let b = batch(vec![group("demo-app", V2, V2, 0..30, 0..0), group("demo-app", V2, V2, 0..0, 100..104)]);
        assert!(ingest(&h, &b, &rule, 2).unwrap().is_empty(), "4 failures: below the minimum");
        let b = batch(vec![group("demo-app", V2, V2, 30..40, 104..130)]);
        let halts = ingest(&h, &b, &rule, 3).unwrap();
        assert_eq!(halts.len(), 1);
        let d = &halts[0];
        assert_eq!((d.key.update_id.as_str(), d.counts), (V2, Counts { launched: 40, failed: 30 }));
        assert_eq!(d.previous, Some((V1.to_string(), Counts { launched: 100, failed: 0 })));
        assert!(h.load(&key(V2)).unwrap().unwrap().halt.is_some(), "marked halted in the same step");
        // Sticky: more failures never fire it again.
        assert!(ingest(&h, &batch(vec![group("demo-app", V2, V2, 0..0, 200..300)]), &rule, 4).unwrap().is_empty());
    }

    #[test]
    fn ingest_only_evaluates_served_updates_and_only_its_own_app() {
        let h = MemoryHealth::default();
        // Failures of V2 reported while V1 is served: counted, never halted from here.
        let halts = ingest(&h, &batch(vec![group("demo-app", V2, V1, 0..0, 0..100)]), &Rule::default(), 1).unwrap();
        assert!(halts.is_empty());
        assert_eq!(h.load(&key(V2)).unwrap().unwrap().counts().failed, 100);
        // A group naming another app is ignored.
        ingest(&h, &batch(vec![group("other-app", V1, V1, 0..5, 0..0)]), &Rule::default(), 1).unwrap();
        assert!(h.rows(&Filter { slug: "other-app".into(), ..Default::default() }).unwrap().is_empty());
    }

    #[test]
    fn ingest_caps_tracked_updates_but_never_the_served_one() {
        let h = MemoryHealth::default();
        let rule = Rule::default();
        for i in 0..(MAX_TRACKED_UPDATES as u64 + 10) {
            let id = format!("{i:08x}-1111-4111-8111-111111111111");
            ingest(&h, &batch(vec![group("demo-app", &id, V1, 0..1, 0..0)]), &rule, i).unwrap();
        }
        let all = Filter { slug: "demo-app".into(), ..Default::default() };
        assert_eq!(h.rows(&all).unwrap().len(), MAX_TRACKED_UPDATES);
        ingest(&h, &batch(vec![group("demo-app", V1, V1, 0..1, 0..0)]), &rule, 100).unwrap();
        assert_eq!(h.rows(&all).unwrap().len(), MAX_TRACKED_UPDATES + 1, "the served update is always kept");
        // The cap also holds within one batch naming many made-up ids.
        let fresh = MemoryHealth::default();
        let many = (0..200u64)
            .map(|i| group("demo-app", &format!("{i:08x}-2222-4222-8222-222222222222"), V1, 0..0, 0..1))
            .collect();
        ingest(&fresh, &batch(many), &rule, 1).unwrap();
        assert_eq!(fresh.rows(&all).unwrap().len(), MAX_TRACKED_UPDATES);
    }

    #[test]
    fn report_shows_counts_interval_and_halt() {
        let h = MemoryHealth::default();
        let mut g = group("demo-app", V2, V2, 0..60, 100..160);
        g.fatal = vec![("boom".into(), 3), ("bang".into(), 5)];
        ingest(&h, &batch(vec![g]), &Rule::default(), 1_000).unwrap();
        let r = report(&h, &Filter::from_query("slug=demo-app&platform=ios").unwrap(), &Rule::default()).unwrap();
        let u = &r.updates[0];
        assert_eq!((u.launched, u.failed, u.failure_rate), (60, 60, Some(0.5)));
        let [lo, hi] = u.failure_rate_interval.unwrap();
        assert!((lo - 0.41195).abs() < 1e-4 && (hi - 0.58805).abs() < 1e-4);
        assert_eq!(u.top_fatal_errors[0], FatalCount { text: "bang".into(), count: 5 });
        assert!(u.halt.as_ref().unwrap().reason.contains("60 of 120"));
        let none = report(&h, &Filter::from_query("slug=demo-app&platform=android").unwrap(), &Rule::default());
        assert!(none.unwrap().updates.is_empty());
        assert_eq!(Filter::from_query("slug=demo-app&channel=a%20b").unwrap_err().status, 400);
        let f = Filter::from_query("slug=demo-app&runtimeVersion=1.0.0%2Bb(1)&channel=beta").unwrap();
        assert_eq!(f.runtime_version.as_deref(), Some("1.0.0+b(1)"));
        assert_eq!(Filter::from_query(&f.to_query()).unwrap(), f, "round trip");
        assert_eq!(Filter::from_query("platform=ios").unwrap_err().status, 400);
    }
}
