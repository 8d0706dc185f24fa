//! Content hashing shared by the Worker and the CLI.
//!
//! The manifest `hash` is SHA-256 in unpadded base64url (compared by exact string equality on
//! device); the asset `key` is the MD5 hex of the bytes (Expo's convention, and what export asset
//! file names already are); storage is keyed by SHA-256 hex.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use md5::Md5;
use sha2::{Digest as _, Sha256};

/// Digests of one file's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Digests {
    pub sha256: [u8; 32],
    pub md5: [u8; 16],
    pub size: u64,
}

impl Digests {
    pub fn of(bytes: &[u8]) -> Self {
        let mut h = FileHasher::new();
        h.update(bytes);
        h.finish()
    }
    /// The manifest `hash` value.
    pub fn sha256_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.sha256)
    }
    /// The storage key part.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
    /// The manifest asset `key`.
    pub fn md5_hex(&self) -> String {
        hex(&self.md5)
    }
}

/// Streaming hasher: feed chunks, get both digests without holding the file.
#[derive(Clone, Default)]
pub struct FileHasher {
    sha256: Sha256,
    md5: Md5,
    size: u64,
}

impl FileHasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, chunk: &[u8]) {
        self.sha256.update(chunk);
        self.md5.update(chunk);
        self.size += chunk.len() as u64;
    }
    pub fn finish(self) -> Digests {
        Digests { sha256: self.sha256.finalize().into(), md5: self.md5.finalize().into(), size: self.size }
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Parses exactly `2 * N` lowercase hex digits.
pub fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != N * 2 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nib(b[2 * i])? << 4 | nib(b[2 * i + 1])?;
    }
    Some(out)
}

/// Decodes a manifest `hash` (unpadded base64url SHA-256). Padded or standard base64 is rejected,
/// because the client compares the string exactly.
pub fn parse_sha256_base64url(s: &str) -> Option<[u8; 32]> {
    if s.len() != 43 {
        return None;
    }
    let v = URL_SAFE_NO_PAD.decode(s).ok()?;
    let arr: [u8; 32] = v.try_into().ok()?;
    (URL_SAFE_NO_PAD.encode(arr) == s).then_some(arr)
}

pub fn base64_standard(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn base64_standard_decode(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s).ok()
}

/// Hermes bytecode files start with this magic, then a u32 LE bytecode version.
pub const HERMES_MAGIC: [u8; 8] = [0xc6, 0x1f, 0xbc, 0x03, 0xc1, 0x03, 0x19, 0x1f];

/// Returns the Hermes bytecode version when `head` (the first 12 bytes or more) is Hermes bytecode.
pub fn hermes_version(head: &[u8]) -> Option<u32> {
    if head.len() >= 12 && head[..8] == HERMES_MAGIC {
        Some(u32::from_le_bytes([head[8], head[9], head[10], head[11]]))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let d = Digests::of(b"hello expo-updates");
        assert_eq!(d.sha256_hex(), "08b6d1de623dee563f714ff6b7680571f44bee036ae9aa27e6916d6744c22d0b");
        assert_eq!(d.size, 18);
        // Streaming in pieces gives the same answer as one shot.
        let mut h = FileHasher::new();
        for c in b"hello expo-updates".chunks(5) {
            h.update(c);
        }
        assert_eq!(h.finish(), d);
        assert_eq!(Digests::of(b"").md5_hex(), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn base64url_is_unpadded_and_strict() {
        let d = Digests::of(b"hello expo-updates");
        let s = d.sha256_base64url();
        assert_eq!(s.len(), 43);
        assert!(!s.contains('=') && !s.contains('+') && !s.contains('/'));
        assert_eq!(parse_sha256_base64url(&s), Some(d.sha256));
        assert_eq!(parse_sha256_base64url(&format!("{s}=")), None);
        // Standard base64 of 32 bytes is always padded, so it never passes.
        assert_eq!(parse_sha256_base64url(&STANDARD.encode(d.sha256)), None);
        assert_eq!(
            parse_sha256_base64url(&s.replace('-', "+").replace('_', "/")),
            (!s.contains(['-', '_'])).then_some(d.sha256)
        );
    }

    #[test]
    fn hex_round_trip() {
        let d = Digests::of(b"x");
        assert_eq!(parse_hex::<32>(&d.sha256_hex()), Some(d.sha256));
        assert_eq!(parse_hex::<32>(&d.sha256_hex().to_uppercase()), None);
        assert_eq!(parse_hex::<16>("zz"), None);
    }

    #[test]
    fn hermes_magic() {
        let mut head = HERMES_MAGIC.to_vec();
        head.extend_from_slice(&96u32.to_le_bytes());
        assert_eq!(hermes_version(&head), Some(96));
        assert_eq!(hermes_version(b"var __BUNDLE_START_TIME__"), None);
    }
}
