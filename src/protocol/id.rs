//! Update ids: canonical lowercase UUIDs (iOS parses them strictly and crashes on anything else).

/// A random (version 4) UUID from 16 random bytes, lowercase and hyphenated.
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h = crate::protocol::hash::hex(&bytes);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// True for a canonical lowercase 8-4-4-4-12 UUID.
pub fn is_canonical_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// Normalises a client-sent update id (iOS may send uppercase in some headers); `None` when it
/// is not a UUID at all.
pub fn normalize_uuid(s: &str) -> Option<String> {
    let lower = s.trim().to_ascii_lowercase();
    is_canonical_uuid(&lower).then_some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_is_canonical() {
        let id = uuid_v4([0xff; 16]);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert!(is_canonical_uuid(&id));
        assert!(is_canonical_uuid(&uuid_v4([0; 16])));
    }

    #[test]
    fn rejects_non_canonical() {
        assert!(!is_canonical_uuid("FFFFFFFF-FFFF-4FFF-BFFF-FFFFFFFFFFFF"));
        assert!(!is_canonical_uuid("ffffffffffff4fffbfffffffffffffff"));
        assert!(!is_canonical_uuid("ffffffff-ffff-4fff-bfff-fffffffffffg"));
        assert_eq!(
            normalize_uuid(" 90D68ADD-3F1E-7DD9-2CCA-2930D66620B2 ").as_deref(),
            Some("90d68add-3f1e-7dd9-2cca-2930d66620b2")
        );
        assert_eq!(normalize_uuid("not-a-uuid"), None);
    }
}
