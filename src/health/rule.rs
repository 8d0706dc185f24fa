//! The automatic-halt rule: a pure function of two updates' counts. An update halts when it has
//! enough outcomes and failures and the Wilson 95 % lower bound of its failure rate exceeds
//! max(`minRate`, `previousFactor` × the previous update's rate), or on the fast path (many
//! failures, not one launch). Defaults are the issue's; each is a Worker var (see README).

use crate::error::ApiError;
use serde::{Deserialize, Serialize};

/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Devices counted for one update: launched it, or reported it failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub launched: u64,
    pub failed: u64,
}

impl Counts {
    pub fn outcomes(&self) -> u64 {
        self.launched + self.failed
    }
    /// failed / (failed + launched); `None` without outcomes.
    pub fn rate(&self) -> Option<f64> {
        (self.outcomes() > 0).then(|| self.failed as f64 / self.outcomes() as f64)
    }
}

/// The Wilson score interval (95 %) of `failed` successes in `n` trials; `(0, 1)` for n = 0.
pub fn wilson(failed: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p) = (n as f64, failed.min(n) as f64 / n as f64);
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// HEALTH_AUTO_HALT ("on" | "off"): evaluate at all.
    pub enabled: bool,
    /// HEALTH_MIN_OUTCOMES: failed + launched before the rate rule applies.
    pub min_outcomes: u64,
    /// HEALTH_MIN_FAILURES
    pub min_failures: u64,
    /// HEALTH_MIN_RATE: the floor of the threshold (a fraction, 0.02 = 2 %).
    pub min_rate: f64,
    /// HEALTH_PREVIOUS_FACTOR: the threshold is at least this × the previous update's rate.
    pub previous_factor: f64,
    /// HEALTH_FAST_FAILURES: halt with this many failures and no launch at all.
    pub fast_failures: u64,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            enabled: true,
            min_outcomes: 50,
            min_failures: 5,
            min_rate: 0.02,
            previous_factor: 3.0,
            fast_failures: 10,
        }
    }
}

impl Rule {
    /// The defaults, overridden by the Worker vars that are set (and not empty).
    pub fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, ApiError> {
        let mut r = Rule::default();
        let get = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        // serde_json's number parser is already in the Worker; core's f64 parser would be
        // another 6 KB of wasm.
        fn num<T: serde::de::DeserializeOwned>(name: &str, v: &str) -> Result<T, ApiError> {
            serde_json::from_str(v)
                .map_err(|_| ApiError::internal(format!("{name} must be a number, not {v:?}; fix the Worker var")))
        }
        if let Some(v) = get("HEALTH_AUTO_HALT") {
            r.enabled = match v.as_str() {
                "on" => true,
                "off" => false,
                _ => return Err(ApiError::internal(format!("HEALTH_AUTO_HALT must be \"on\" or \"off\", not {v:?}"))),
            };
        }
        if let Some(v) = get("HEALTH_MIN_OUTCOMES") {
            r.min_outcomes = num("HEALTH_MIN_OUTCOMES", &v)?;
        }
        if let Some(v) = get("HEALTH_MIN_FAILURES") {
            r.min_failures = num("HEALTH_MIN_FAILURES", &v)?;
        }
        if let Some(v) = get("HEALTH_MIN_RATE") {
            r.min_rate = num("HEALTH_MIN_RATE", &v)?;
        }
        if let Some(v) = get("HEALTH_PREVIOUS_FACTOR") {
            r.previous_factor = num("HEALTH_PREVIOUS_FACTOR", &v)?;
        }
        if let Some(v) = get("HEALTH_FAST_FAILURES") {
            r.fast_failures = num("HEALTH_FAST_FAILURES", &v)?;
        }
        if !(0.0..=1.0).contains(&r.min_rate) || !(0.0..=f64::MAX).contains(&r.previous_factor) {
            return Err(ApiError::internal(
                "HEALTH_MIN_RATE must be a fraction in [0, 1] and HEALTH_PREVIOUS_FACTOR ≥ 0; fix the Worker vars",
            ));
        }
        Ok(r)
    }

    /// `Some(reason)` when `u` must halt, given the previous update's counts.
    pub fn evaluate(&self, u: Counts, previous: Option<Counts>) -> Option<String> {
        if !self.enabled {
            return None;
        }
        if self.fast_failures > 0 && u.failed >= self.fast_failures && u.launched == 0 {
            return Some(format!("{} devices reported a failed launch and none launched it", u.failed));
        }
        if u.outcomes() < self.min_outcomes || u.failed < self.min_failures {
            return None;
        }
        let prev_rate = previous.and_then(|p| p.rate()).unwrap_or(0.0);
        let threshold = self.min_rate.max(self.previous_factor * prev_rate);
        let (lower, _) = wilson(u.failed, u.outcomes());
        (lower > threshold).then(|| {
            format!(
                "{} of {} devices failed to launch it ({} %, 95 % lower bound {} %) > max({} %, {} × previous update's {} %)",
                u.failed,
                u.outcomes(),
                dec1(100.0 * u.failed as f64 / u.outcomes() as f64),
                dec1(100.0 * lower),
                dec1(100.0 * self.min_rate),
                dec1(self.previous_factor),
                dec1(100.0 * prev_rate)
            )
        })
    }
}

/// `x` with one decimal, by integer formatting: core's float formatting costs ~15 KB of wasm.
pub fn dec1(x: f64) -> String {
    let tenths = (x * 10.0).round() as i64;
    let sign = if tenths < 0 { "-" } else { "" };
    format!("{sign}{}.{}", tenths.abs() / 10, tenths.abs() % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(launched: u64, failed: u64) -> Counts {
        Counts { launched, failed }
    }

    #[test]
    fn wilson_matches_reference_values() {
        // Reference: Wilson score interval, z = 1.96 (e.g. statsmodels proportion_confint method="wilson").
        let (lo, hi) = wilson(5, 50);
        assert!((lo - 0.04347).abs() < 1e-4 && (hi - 0.21358).abs() < 1e-4, "{lo} {hi}");
        let (lo, hi) = wilson(0, 100);
        assert!(lo.abs() < 1e-12 && (hi - 0.03699).abs() < 1e-4, "{lo} {hi}");
        let (lo, hi) = wilson(60, 120);
        assert!((lo - 0.41195).abs() < 1e-4 && (hi - 0.58805).abs() < 1e-4, "{lo} {hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn rule_table_with_boundaries() {
        let r = Rule::default();
        let table: &[(Counts, Option<Counts>, bool, &str)] = &[
            (c(0, 0), None, false, "nothing yet"),
            (c(44, 5), None, false, "49 outcomes: below the minimum sample"),
            (c(45, 5), None, true, "50 outcomes, 5 failures, lower bound 4.3 % > 2 %"),
            (c(100, 4), None, false, "4 failures: below the minimum failures"),
            (c(995, 5), None, false, "0.5 %: lower bound under 2 %"),
            (c(45, 5), Some(c(90, 10)), false, "previous 10 % × 3 = 30 % threshold"),
            (c(40, 60), Some(c(90, 10)), true, "60 % against a 30 % threshold"),
            (c(0, 9), None, false, "fast path needs 10"),
            (c(0, 10), None, true, "fast path: 10 failures, no launch"),
            (c(1, 10), None, false, "one launch: not the fast path, and 11 outcomes < 50"),
        ];
        for (u, prev, halts, why) in table {
            assert_eq!(r.evaluate(*u, *prev).is_some(), *halts, "{why}: {u:?} prev {prev:?}");
        }
        let off = Rule { enabled: false, ..r };
        assert_eq!(off.evaluate(c(0, 100), None), None, "disabled");
    }

    #[test]
    fn dec1_rounds_to_one_decimal() {
        assert_eq!(
            [dec1(41.195), dec1(0.0), dec1(3.0), dec1(2.04), dec1(-1.25)],
            ["41.2", "0.0", "3.0", "2.0", "-1.3"]
        );
    }

    #[test]
    fn rule_reason_names_the_numbers() {
        let why = Rule::default().evaluate(c(60, 60), Some(c(60, 0))).unwrap();
        assert!(why.starts_with("60 of 120 devices failed"), "{why}");
        assert!(why.contains("50.0 %") && why.contains("41.2 %"), "{why}");
    }

    #[test]
    fn rule_from_vars_overrides_and_refuses_garbage() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
        };
        let r = Rule::from_vars(&vars(&[("HEALTH_MIN_OUTCOMES", "20"), ("HEALTH_AUTO_HALT", "off")])).unwrap();
        assert_eq!((r.min_outcomes, r.enabled, r.min_failures), (20, false, 5));
        assert_eq!(Rule::from_vars(&vars(&[])).unwrap(), Rule::default());
        assert_eq!(Rule::from_vars(&vars(&[("HEALTH_MIN_RATE", "5")])).unwrap_err().status, 500);
        assert!(Rule::from_vars(&vars(&[("HEALTH_AUTO_HALT", "yes")])).unwrap_err().message.contains("on"));
    }
}
