//! Password hashes: PBKDF2-HMAC-SHA-256, a random 16-byte salt per user, 100 000 iterations
//! (the most WebCrypto on Workers accepts), stored as
//! `pbkdf2-sha256$<iterations>$<salt base64url>$<key base64url>`. The derivation itself is behind
//! [`Kdf`] (WebCrypto in the Worker, the `pbkdf2` crate on the host) so both run the same
//! parameters against the same vectors; the comparison of derived keys is constant time.

use crate::error::ApiError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;

/// The Workers runtime refuses PBKDF2 above 100 000 iterations.
pub const ITERATIONS: u32 = 100_000;
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Bounds the work one login request can ask for.
pub const MAX_PASSWORD_BYTES: usize = 256;
const SCHEME: &str = "pbkdf2-sha256";

/// PBKDF2-HMAC-SHA-256 with a 32-byte output.
#[allow(async_fn_in_trait)]
pub trait Kdf {
    async fn pbkdf2_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> Result<[u8; 32], ApiError>;
}

/// The host's derivation (tests, the CLI's test server); the Worker uses WebCrypto instead.
#[cfg(not(target_arch = "wasm32"))]
pub struct NativeKdf;

#[cfg(not(target_arch = "wasm32"))]
impl Kdf for NativeKdf {
    async fn pbkdf2_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> Result<[u8; 32], ApiError> {
        Ok(pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, 32>(password, salt, iterations))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordHash {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub key: [u8; 32],
}

impl PasswordHash {
    pub fn encode(&self) -> String {
        format!(
            "{SCHEME}${}${}${}",
            self.iterations,
            URL_SAFE_NO_PAD.encode(&self.salt),
            URL_SAFE_NO_PAD.encode(self.key)
        )
    }

    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('$');
        if parts.next()? != SCHEME {
            return None;
        }
        let iterations: u32 = parts.next()?.parse().ok().filter(|i| (1..=ITERATIONS).contains(i))?;
        let salt = URL_SAFE_NO_PAD.decode(parts.next()?).ok().filter(|s| (8..=64).contains(&s.len()))?;
        let key: [u8; 32] = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?.try_into().ok()?;
        parts.next().is_none().then_some(PasswordHash { iterations, salt, key })
    }
}

/// Refuses passwords a login could not be made with (too short, too long, control characters).
pub fn check_policy(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::bad_request(format!("password must be at least {MIN_PASSWORD_CHARS} characters")));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::bad_request(format!("password must be at most {MAX_PASSWORD_BYTES} bytes")));
    }
    if password.chars().any(char::is_control) {
        return Err(ApiError::bad_request("password must not contain control characters"));
    }
    Ok(())
}

pub async fn hash(kdf: &impl Kdf, password: &str, salt: [u8; 16]) -> Result<PasswordHash, ApiError> {
    let key = kdf.pbkdf2_sha256(password.as_bytes(), &salt, ITERATIONS).await?;
    Ok(PasswordHash { iterations: ITERATIONS, salt: salt.to_vec(), key })
}

/// True when `password` derives the stored key. An unparsable stored hash never verifies.
pub async fn verify(kdf: &impl Kdf, password: &str, stored: &str) -> Result<bool, ApiError> {
    let Some(h) = PasswordHash::parse(stored) else { return Ok(false) };
    if password.len() > MAX_PASSWORD_BYTES {
        return Ok(false);
    }
    let key = kdf.pbkdf2_sha256(password.as_bytes(), &h.salt, h.iterations).await?;
    Ok(bool::from(key.ct_eq(&h.key)))
}

/// A well-formed hash of nothing anyone knows: verified against when the login does not exist,
/// so an unknown login costs the same derivation as a wrong password.
pub const DECOY: &str = "pbkdf2-sha256$100000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::hash::hex;

    /// PBKDF2-HMAC-SHA-256 vectors (RFC 7914 §11 and the widely used RFC 6070-style set); the
    /// Worker's WebCrypto derivation is checked against the same ones end to end.
    pub const VECTORS: &[(&str, &str, u32, &str)] = &[
        ("password", "salt", 1, "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"),
        ("password", "salt", 2, "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"),
        ("password", "salt", 4096, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"),
    ];

    #[test]
    fn native_kdf_matches_published_vectors() {
        for (p, s, i, want) in VECTORS {
            let got = pollster::block_on(NativeKdf.pbkdf2_sha256(p.as_bytes(), s.as_bytes(), *i)).unwrap();
            assert_eq!(hex(&got), *want, "{p}/{s}/{i}");
        }
    }

    #[test]
    fn hash_then_verify_right_password_only() {
        let h = pollster::block_on(hash(&NativeKdf, "correct horse battery", [7; 16])).unwrap();
        assert_eq!(h.iterations, ITERATIONS);
        let stored = h.encode();
        assert_eq!(PasswordHash::parse(&stored), Some(h));
        assert!(pollster::block_on(verify(&NativeKdf, "correct horse battery", &stored)).unwrap());
        assert!(!pollster::block_on(verify(&NativeKdf, "correct horse batterY", &stored)).unwrap());
    }

    #[test]
    fn same_password_different_salt_different_hash() {
        let a = pollster::block_on(hash(&NativeKdf, "correct horse battery", [1; 16])).unwrap();
        let b = pollster::block_on(hash(&NativeKdf, "correct horse battery", [2; 16])).unwrap();
        assert_ne!(a.key, b.key);
    }

    #[test]
    fn parse_malformed_or_excessive_hash_is_none() {
        for bad in [
            "",
            "bcrypt$1$AAAAAAAAAAA$AAAA",
            "pbkdf2-sha256$0$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "pbkdf2-sha256$100001$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA$AAAA",
            "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$x",
        ] {
            assert_eq!(PasswordHash::parse(bad), None, "{bad}");
        }
        assert!(PasswordHash::parse(DECOY).is_some(), "the decoy is well formed, so it costs a derivation");
    }

    #[test]
    fn policy_short_long_or_control_password_is_400() {
        assert_eq!(check_policy("short").unwrap_err().status, 400);
        assert_eq!(check_policy(&"x".repeat(MAX_PASSWORD_BYTES + 1)).unwrap_err().status, 400);
        assert_eq!(check_policy("ten chars\n!").unwrap_err().status, 400);
        assert!(check_policy("ten chars!").is_ok());
    }
}
