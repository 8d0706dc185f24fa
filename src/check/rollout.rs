//! Rollout bucketing: a device is inside a rollout of update U at p % exactly when
//! `u64be(sha256("<U>:<lowercase EAS-Client-ID>")[0..8]) / 2^64 < p / 100`. The salt (U's id)
//! never changes while U rolls out, so raising p only adds devices (monotonic); hashing keeps
//! the UUID's fixed version/variant bits out of the fraction (see the reference, B.1); ids are
//! lowercased when parsed, so iOS (UPPERCASE) and Android (lowercase) spellings agree. The
//! comparison is in integers, so no device's answer depends on float rounding.

use crate::protocol::hash;

/// The device's bucket for a rollout salted with `update_id`: a number in `0..2^64`.
pub fn bucket(update_id: &str, client_id: &str) -> u64 {
    let digest = hash::sha256(format!("{update_id}:{client_id}").as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Whether `bucket` falls under `percentage` (0..=100): `bucket / 2^64 < percentage / 100`.
pub fn inside(bucket: u64, percentage: u8) -> bool {
    u128::from(bucket) * 100 < u128::from(percentage.min(100)) << 64
}

/// The bucket in basis points of the fleet (0..=9999: `floor(bucket / 2^64 * 10 000)`), for
/// people (explain). Integer-only, so the Worker carries no float formatting; decisions use
/// [`inside`].
pub fn basis_points(bucket: u64) -> u16 {
    ((u128::from(bucket) * 10_000) >> 64) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "0f8d2a8e-0000-4000-8000-000000000001";

    /// Deterministic pseudo-random v4 UUIDs (splitmix64), so the test needs no RNG crate.
    fn ids(n: usize) -> Vec<String> {
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        (0..n)
            .map(|_| {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&next().to_le_bytes());
                b[8..].copy_from_slice(&next().to_le_bytes());
                crate::protocol::id::uuid_v4(b)
            })
            .collect()
    }

    #[test]
    fn inside_percentage_bounds_are_exact() {
        assert!(!inside(0, 0), "0 % holds nobody");
        assert!(inside(0, 1));
        assert!(inside(u64::MAX, 100), "100 % holds everybody");
        assert!(!inside(u64::MAX, 99));
        // 2^64 / 100 * 10 is the first bucket outside 10 %.
        let edge = ((1u128 << 64) * 10).div_ceil(100) as u64;
        assert!(inside(edge - 1, 10) && !inside(edge, 10));
    }

    #[test]
    fn basis_points_agree_with_inside() {
        for id in ids(2_000) {
            let b = bucket(U, &id);
            let bp = basis_points(b);
            assert!(bp < 10_000);
            // Inside p % exactly when the basis points are below p * 100.
            for p in [1u8, 10, 50, 99] {
                assert_eq!(inside(b, p), bp < u16::from(p) * 100, "{id} at {p} %");
            }
        }
    }

    #[test]
    fn bucket_growing_percentage_never_drops_a_device() {
        for id in ids(2_000) {
            let b = bucket(U, &id);
            let first_in = (0..=100u8).find(|p| inside(b, *p)).expect("in at 100 %");
            assert!((first_in..=100).all(|p| inside(b, p)), "{id} left the rollout as it grew");
        }
    }

    #[test]
    fn bucket_random_ids_uniform_within_two_percent() {
        let ids = ids(100_000);
        for pct in [1u8, 10, 25, 50, 75, 90] {
            let n = ids.iter().filter(|id| inside(bucket(U, id), pct)).count();
            let got = n as f64 / ids.len() as f64;
            assert!((got - f64::from(pct) / 100.0).abs() < 0.02, "{pct} %: {got}");
        }
        // Per decile as well: no clustering of the fraction.
        let mut deciles = [0usize; 10];
        for id in &ids {
            deciles[usize::from(basis_points(bucket(U, id)) / 1_000)] += 1;
        }
        assert!(deciles.iter().all(|d| (*d as f64 / 100_000.0 - 0.1).abs() < 0.02), "{deciles:?}");
    }

    #[test]
    fn bucket_salt_reshuffles_cohorts_per_update() {
        let other = "0f8d2a8e-0000-4000-8000-000000000002";
        let ids = ids(10_000);
        let both = ids.iter().filter(|id| inside(bucket(U, id), 10) && inside(bucket(other, id), 10)).count();
        assert!(both < 300, "the same 10 % would be first for every rollout: {both}");
    }
}
