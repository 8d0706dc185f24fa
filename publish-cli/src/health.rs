//! `health`: the server's update-health report as a table (or its JSON). Every text from the
//! server — fatal errors come from devices — goes through the printer, which escapes what a
//! terminal would interpret.

use crate::cli::HealthArgs;
use crate::printer::Printer;
use crate::upload::Client;
use anyhow::Result;
use expo_ota::health::store::{HealthReport, UpdateHealth};

pub async fn run(a: HealthArgs, out: &Printer) -> Result<()> {
    let token = crate::auth::require(a.server.auth_token.as_deref())?;
    let mut query = vec![("slug", a.slug.clone())];
    query.extend(a.platform.map(|p| ("platform", p.as_str().to_string())));
    query.extend(a.runtime_version.map(|r| ("runtimeVersion", r)));
    query.extend(a.channel.map(|c| ("channel", c)));
    let report = Client::new(&a.server.server, token)?.health(&query).await?;
    if out.json() {
        out.emit(&report);
    } else {
        lines(&report).iter().for_each(|l| out.line(l));
    }
    Ok(())
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn count(n: u64, estimated: bool) -> String {
    if estimated {
        format!("~{n}")
    } else {
        n.to_string()
    }
}

/// One block per runtime and channel, one line per update (newest first), its fatal errors and
/// halt reason indented below it; then the rule in force.
pub fn lines(r: &HealthReport) -> Vec<String> {
    let mut out = Vec::new();
    if r.updates.is_empty() {
        out.push(format!("no health data for {} yet (devices report with their next update check)", r.slug));
    }
    let mut group = None;
    for u in &r.updates {
        let g = (u.platform.as_str(), u.runtime_version.as_str(), u.channel.as_str());
        if group != Some(g) {
            out.push(format!("{} {} runtimeVersion {} channel {}", r.slug, g.0, g.1, g.2));
            out.push(format!(
                "  {:<36}  {:>8}  {:>8}  {:>7}  {:<17}  {:>7}  state",
                "update", "launched", "failed", "rate", "95% interval", "rollout"
            ));
            group = Some(g);
        }
        out.extend(update_lines(u));
    }
    let rule = &r.rule;
    out.push(format!(
        "auto-halt {}: >= {} outcomes and >= {} failures, Wilson 95% lower bound > max({}, {} x previous update's rate); or >= {} failures and no launch",
        if rule.enabled { "on" } else { "off" },
        rule.min_outcomes,
        rule.min_failures,
        pct(rule.min_rate),
        rule.previous_factor,
        rule.fast_failures
    ));
    out
}

fn update_lines(u: &UpdateHealth) -> Vec<String> {
    let rate = u.failure_rate.map_or("-".to_string(), pct);
    let interval = u.failure_rate_interval.map_or("-".to_string(), |[lo, hi]| format!("{}–{}", pct(lo), pct(hi)));
    let rollout = u.rollout_percentage.map_or("-".to_string(), |p| format!("{p}%"));
    let state = match &u.halt {
        Some(h) if h.error.is_some() => "HALT FAILED",
        Some(_) => "HALTED",
        None if u.served_since.is_some() => "served",
        None => "",
    };
    let mut lines = vec![format!(
        "  {:<36}  {:>8}  {:>8}  {:>7}  {:<17}  {:>7}  {state}",
        u.update_id,
        count(u.launched, u.launched_estimated),
        count(u.failed, u.failed_estimated),
        rate,
        interval,
        rollout
    )];
    if let Some(h) = &u.halt {
        lines.push(format!("    halted {} by {}: {}", h.at, h.by, h.reason));
        if let Some(e) = &h.error {
            lines.push(format!("    the halt could not be applied: {e}"));
        }
    }
    for f in &u.top_fatal_errors {
        lines.push(format!("    {:>5} × {}", f.count, f.text));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use expo_ota::health::rule::Rule;
    use expo_ota::health::store::{FatalCount, HaltState};

    fn report() -> HealthReport {
        HealthReport {
            slug: "demo-app".into(),
            rule: Rule::default(),
            updates: vec![UpdateHealth {
                platform: "ios".into(),
                runtime_version: "1.0.3".into(),
                channel: "production".into(),
                update_id: "22222222-2222-4222-8222-222222222222".into(),
                first_seen: "2026-01-01T00:00:00.000Z".into(),
                served_since: Some("2026-01-01T00:00:00.000Z".into()),
                launched: 60,
                launched_estimated: false,
                failed: 60,
                failed_estimated: false,
                failure_rate: Some(0.5),
                failure_rate_interval: Some([0.41195, 0.58805]),
                top_fatal_errors: vec![FatalCount { text: "TypeError \u{1b}[2J".into(), count: 3 }],
                rollout_percentage: None,
                halt: Some(HaltState {
                    at: "2026-01-01T00:00:05.000Z".into(),
                    reason: "60 of 120 devices failed".into(),
                    by: "system:health".into(),
                    error: None,
                }),
            }],
        }
    }

    #[test]
    fn health_lines_show_counts_interval_halt_and_rule() {
        let l = lines(&report());
        assert_eq!(l[0], "demo-app ios runtimeVersion 1.0.3 channel production");
        assert!(
            l[2].contains("60") && l[2].contains("50.0%") && l[2].contains("41.2%–58.8%") && l[2].ends_with("HALTED")
        );
        assert!(l[3].contains("by system:health: 60 of 120 devices failed"), "{}", l[3]);
        assert!(l.last().unwrap().starts_with("auto-halt on: >= 50 outcomes and >= 5 failures"));
        // Device text reaches the printer, which escapes it (escape_for_terminal on every line).
        let printed = crate::printer::escape_for_terminal(&l[4]);
        assert!(printed.contains("TypeError \\x1b[2J") && !printed.contains('\u{1b}'));
    }

    #[test]
    fn health_lines_without_data_say_so() {
        let r = HealthReport { updates: vec![], ..report() };
        assert!(lines(&r)[0].starts_with("no health data for demo-app"));
    }
}
