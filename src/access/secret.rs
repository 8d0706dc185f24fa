//! Secrets typed so that mishandling them does not compile. A [`Secret`] (a bearer token as
//! presented, the ADMIN_TOKEN) never shows its value through `Debug` or `Display` and cannot
//! be compared at all; a [`SecretDigest`] (the SHA-256 that authenticates it) can only be
//! compared with [`SecretDigest::ct_eq`], in constant time (`subtle`). Neither implements
//! `PartialEq`, so `a == b` — an early-exit comparison that leaks, through timing, how much of a
//! guess was right — is a compile error, as the assertions below check.

use crate::protocol::hash;
use static_assertions::assert_not_impl_any;
use subtle::{Choice, ConstantTimeEq};

/// A raw secret string. Read it with [`Secret::expose`] only where the bytes are needed (to
/// hash them, or to send them on as a credential).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret's text. Named so that every use stands out in review.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its SHA-256, the only form in which it is ever compared or stored.
    pub fn digest(&self) -> SecretDigest {
        SecretDigest::of(self.0.as_bytes())
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// SHA-256 of a secret. Comparing digests rather than the secrets themselves keeps the
/// comparison fixed-length whatever the inputs' lengths.
#[derive(Clone)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    pub fn of(secret: &[u8]) -> Self {
        Self(hash::sha256(secret))
    }

    /// Reads a stored digest: exactly 64 lowercase hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        hash::parse_hex::<32>(hex).map(Self)
    }

    /// True when both digests are equal, examining every byte whatever the first difference.
    pub fn ct_eq(&self, other: &SecretDigest) -> bool {
        ConstantTimeEq::ct_eq(self, other).into()
    }
}

impl ConstantTimeEq for SecretDigest {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0[..].ct_eq(&other.0[..])
    }
}

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigest(<redacted>)")
    }
}

// No `==`, no ordering, no view of the bytes to compare with `==` instead, no serialisation.
assert_not_impl_any!(SecretDigest: PartialEq, Eq, PartialOrd, Ord, std::hash::Hash, std::ops::Deref, AsRef<[u8]>, serde::Serialize);
assert_not_impl_any!(Secret: PartialEq, PartialEq<str>, PartialEq<&'static str>, PartialEq<String>, PartialOrd, std::hash::Hash, std::ops::Deref, AsRef<str>, AsRef<[u8]>, serde::Serialize);

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ota_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn secret_formatting_never_shows_the_value() {
        let s = Secret::from(TOKEN);
        for shown in [format!("{s:?}"), format!("{s:#?}"), format!("{s}"), format!("{:?}", Some(s.clone()))] {
            assert!(!shown.contains(TOKEN) && !shown.contains("0123456789abcdef"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        assert_eq!(s.expose(), TOKEN);
    }

    #[test]
    fn digest_formatting_never_shows_the_digest() {
        let d = Secret::from(TOKEN).digest();
        let hex = hash::hex(&hash::sha256(TOKEN.as_bytes()));
        for shown in [format!("{d:?}"), format!("{d:#?}")] {
            assert_eq!(shown, "SecretDigest(<redacted>)");
            assert!(!shown.contains(&hex[..8]));
        }
    }

    #[test]
    fn ct_eq_is_equality_of_digests() {
        let d = SecretDigest::of(b"secret");
        assert!(d.ct_eq(&SecretDigest::of(b"secret")));
        assert!(!d.ct_eq(&SecretDigest::of(b"secreT")));
        assert!(!SecretDigest::of(b"").ct_eq(&SecretDigest::of(b"x")));
        let hex = hash::hex(&hash::sha256(b"secret"));
        assert!(SecretDigest::from_hex(&hex).unwrap().ct_eq(&d));
        // The last byte alone differing is still a difference (no truncated comparison).
        let mut last = hex.clone();
        last.replace_range(62.., if hex.ends_with("00") { "01" } else { "00" });
        assert!(!SecretDigest::from_hex(&last).unwrap().ct_eq(&d));
        assert!(SecretDigest::from_hex(&hex.to_uppercase()).is_none());
        assert!(SecretDigest::from_hex(&hex[..63]).is_none());
    }
}
