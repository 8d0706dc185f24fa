//! Limits, read from Worker vars (wrangler.toml `[vars]`) with documented defaults.

use crate::error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// MAX_FILE_BYTES: largest single file (default 50 MiB).
    pub max_file_bytes: u64,
    /// MAX_FILES_PER_UPDATE: launch asset + assets (default 2000).
    pub max_files_per_update: usize,
    /// MAX_FORM_BYTES: largest single-request (multipart/form-data) publish (default 32 MiB).
    pub max_form_bytes: u64,
    /// CHECK_CACHE_MS: how long an isolate reuses a channel pointer it read (default 1000; 0 = off).
    pub check_cache_ms: u64,
    /// MAX_APPS_PER_TOKEN: apps one scoped token may name (default 20).
    pub max_apps_per_token: usize,
    /// MAX_JSON_BYTES: largest JSON request body (default 1 MiB).
    pub max_json_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 50 << 20,
            max_files_per_update: 2000,
            max_form_bytes: 32 << 20,
            check_cache_ms: crate::check::cache::DEFAULT_TTL_MS,
            max_apps_per_token: 20,
            max_json_bytes: 1 << 20,
        }
    }
}

impl Limits {
    pub fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, ApiError> {
        let d = Self::default();
        let parse = |name: &str, default: u64, min: u64| -> Result<u64, ApiError> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= min)
                    .ok_or_else(|| ApiError::internal(format!("Worker var {name} must be an integer >= {min}"))),
            }
        };
        let num = |name: &str, default: u64| parse(name, default, 1);
        Ok(Self {
            max_file_bytes: num("MAX_FILE_BYTES", d.max_file_bytes)?,
            max_files_per_update: num("MAX_FILES_PER_UPDATE", d.max_files_per_update as u64)? as usize,
            max_form_bytes: num("MAX_FORM_BYTES", d.max_form_bytes)?,
            check_cache_ms: parse("CHECK_CACHE_MS", d.check_cache_ms, 0)?,
            max_apps_per_token: num("MAX_APPS_PER_TOKEN", d.max_apps_per_token as u64)? as usize,
            max_json_bytes: num("MAX_JSON_BYTES", d.max_json_bytes)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_from_vars() {
        assert_eq!(Limits::from_vars(&|_| None).unwrap(), Limits::default());
        let l = Limits::from_vars(&|n| (n == "MAX_FILE_BYTES").then(|| "1024".into())).unwrap();
        assert_eq!(l.max_file_bytes, 1024);
        assert!(Limits::from_vars(&|_| Some("lots".into())).is_err());
        assert!(Limits::from_vars(&|n| (n == "MAX_FILE_BYTES").then(|| "0".into())).is_err());
        assert_eq!(Limits::from_vars(&|n| (n == "CHECK_CACHE_MS").then(|| "0".into())).unwrap().check_cache_ms, 0);
    }
}
