//! Which manifest checks get a log line (Worker var `LOG_CHECKS`). One `console.log` per check
//! is most of a check's cost locally and is billed on Cloudflare, so ordinary checks are not
//! logged by default; a check that reports a crash (`expo-fatal-error`,
//! `expo-recent-failed-update-ids`) or that the server could not answer (5xx, or 406 when a
//! signature is required and cannot be made) is logged under every policy. The decision is pure:
//! the caller passes a per-isolate counter for sampling, so no clock or randomness is read here.

use super::ManifestRequest;
use crate::error::ApiError;

/// The var that holds the policy.
pub const VAR: &str = "LOG_CHECKS";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogChecks {
    /// Only checks that carry crash signals or failed (the default).
    #[default]
    Errors,
    /// Also one in every N ordinary checks (N >= 1; `sample:1` logs every check).
    Sample(u64),
    /// Every check.
    All,
}

impl LogChecks {
    /// Reads the var's value; missing or empty means the default, `errors`.
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        let v = value.map(str::trim).unwrap_or("");
        match v {
            "" | "errors" => Ok(Self::Errors),
            "all" => Ok(Self::All),
            _ => v
                .strip_prefix("sample:")
                .and_then(|n| n.trim().parse::<u64>().ok())
                .filter(|n| *n >= 1)
                .map(Self::Sample)
                .ok_or_else(|| {
                    ApiError::internal(format!(
                        "Worker var {VAR} must be errors, sample:N (an integer N >= 1, logs 1 in N checks) or all; got {:?}",
                        crate::validate::truncate(v)
                    ))
                }),
        }
    }

    /// Whether this check gets a log line. `status` is the reply's HTTP status; `tick` counts
    /// this isolate's checks (0, 1, 2, ...) and only matters for `Sample`.
    pub fn should_log(self, req: &ManifestRequest, status: u16, tick: u64) -> bool {
        if must_log(req, status) {
            return true;
        }
        match self {
            Self::Errors => false,
            Self::Sample(n) => tick % n == 0,
            Self::All => true,
        }
    }
}

/// Checks every policy logs: a device reporting a crash, or an answer the device cannot use
/// because of the server (5xx), or its configuration (406: signature required, none possible).
fn must_log(req: &ManifestRequest, status: u16) -> bool {
    let present = |h: &Option<String>| h.as_deref().is_some_and(|v| !v.trim().is_empty());
    present(&req.fatal_error) || present(&req.recent_failed_update_ids) || status >= 500 || status == 406
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::layout::Target;
    use crate::validate::Platform;

    fn req() -> ManifestRequest {
        ManifestRequest {
            target: Target::parse("demo-app", Platform::Ios.as_str(), "1.0.3").unwrap(),
            protocol_version: 1,
            current_update_id: None,
            embedded_update_id: None,
            channel: crate::validate::Channel::production(),
            expect_signature: None,
            fatal_error: None,
            recent_failed_update_ids: None,
            client_id: None,
        }
    }

    #[test]
    fn parse_accepted_forms_give_their_policy() {
        assert_eq!(LogChecks::parse(None).unwrap(), LogChecks::Errors);
        assert_eq!(LogChecks::parse(Some("")).unwrap(), LogChecks::Errors);
        assert_eq!(LogChecks::parse(Some("errors")).unwrap(), LogChecks::Errors);
        assert_eq!(LogChecks::parse(Some(" all ")).unwrap(), LogChecks::All);
        assert_eq!(LogChecks::parse(Some("sample:100")).unwrap(), LogChecks::Sample(100));
        assert_eq!(LogChecks::parse(Some("sample:1")).unwrap(), LogChecks::Sample(1));
    }

    #[test]
    fn parse_invalid_value_names_the_var_and_the_forms() {
        for bad in ["sample:0", "sample:", "sample:-3", "sample:x", "sample", "ALL", "none", "true", "1"] {
            let e = LogChecks::parse(Some(bad)).unwrap_err();
            assert_eq!(e.status, 500, "{bad}");
            assert!(e.message.contains("LOG_CHECKS"), "{bad}: {}", e.message);
            assert!(e.message.contains("errors, sample:N"), "{bad}: {}", e.message);
            assert!(e.message.contains(" or all"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn errors_policy_ordinary_checks_are_not_logged() {
        for status in [200, 204, 400, 404] {
            for tick in 0..5 {
                assert!(!LogChecks::Errors.should_log(&req(), status, tick), "{status} {tick}");
            }
        }
    }

    #[test]
    fn every_policy_crash_signals_and_server_failures_are_logged() {
        let mut fatal = req();
        fatal.fatal_error = Some("TypeError: undefined is not a function".into());
        let mut failed = req();
        failed.recent_failed_update_ids = Some("\"0f8d2a8e-0000-4000-8000-000000000001\"".into());
        for policy in [LogChecks::Errors, LogChecks::Sample(1000), LogChecks::All] {
            for tick in [1, 7, 999] {
                assert!(policy.should_log(&fatal, 200, tick), "{policy:?} fatal");
                assert!(policy.should_log(&failed, 200, tick), "{policy:?} failed ids");
                assert!(policy.should_log(&req(), 500, tick), "{policy:?} 500");
                assert!(policy.should_log(&req(), 503, tick), "{policy:?} 503");
                assert!(policy.should_log(&req(), 406, tick), "{policy:?} 406");
            }
        }
    }

    #[test]
    fn errors_policy_empty_crash_headers_are_ordinary() {
        let mut r = req();
        r.fatal_error = Some(String::new());
        r.recent_failed_update_ids = Some("  ".into());
        assert!(!LogChecks::Errors.should_log(&r, 200, 0));
    }

    #[test]
    fn sample_policy_logs_one_in_n_ordinary_checks() {
        let logged = (0..1000).filter(|t| LogChecks::Sample(10).should_log(&req(), 200, *t)).count();
        assert_eq!(logged, 100);
        assert!(LogChecks::Sample(10).should_log(&req(), 200, 0), "the first check of an isolate is logged");
        assert!(!LogChecks::Sample(10).should_log(&req(), 200, 1));
        assert!((0..50).all(|t| LogChecks::Sample(1).should_log(&req(), 200, t)));
    }

    #[test]
    fn all_policy_logs_every_check() {
        assert!((0..50).all(|t| LogChecks::All.should_log(&req(), 200, t)));
        assert!(LogChecks::All.should_log(&req(), 404, 3));
    }
}
