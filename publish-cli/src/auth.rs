//! The deploy token. clap already merged `--auth-token` with `EXPO_UPDATES_AUTH_TOKEN`; this
//! checks it is usable so a missing or mangled token fails before any upload starts.

use anyhow::{bail, Result};

pub const ENV_VAR: &str = "EXPO_UPDATES_AUTH_TOKEN";

/// The token to send as `Authorization: Bearer <token>`.
pub fn require(token: Option<&str>) -> Result<String> {
    let t = token.map(str::trim).unwrap_or_default();
    if t.is_empty() {
        bail!("no deploy token: pass --auth-token <token> or set {ENV_VAR} (the server's ADMIN_TOKEN)");
    }
    // A header value cannot hold these; reqwest would fail later with a less useful message.
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the deploy token contains spaces or non-printable characters; check {ENV_VAR} / --auth-token");
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rules() {
        assert_eq!(require(Some("  s3cret\n")).unwrap(), "s3cret");
        let missing = require(None).unwrap_err().to_string();
        assert!(missing.contains("--auth-token") && missing.contains(ENV_VAR), "{missing}");
        assert!(require(Some("   ")).is_err());
        assert!(require(Some("a b")).is_err());
        assert!(require(Some("tök")).is_err());
    }
}
