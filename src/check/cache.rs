//! A tiny per-isolate cache of channel pointers, so most checks do no R2 read at all. Entries
//! live `ttl_ms` (CHECK_CACHE_MS, default 1000; 0 disables); writes in this isolate invalidate
//! their runtime's entries at once, other isolates see a change within the TTL. Devices check on
//! launch, so a second of staleness is invisible to them.

use crate::storage::record::UpdateRecord;
use std::collections::HashMap;
use std::rc::Rc;

pub const DEFAULT_TTL_MS: u64 = 1000;
const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
pub struct PointerCache {
    entries: HashMap<String, (u64, Option<Rc<UpdateRecord>>)>,
}

impl PointerCache {
    /// `Some(value)` when a fresh entry exists; the value itself may be "nothing published".
    pub fn get(&self, key: &str, now_ms: u64, ttl_ms: u64) -> Option<Option<Rc<UpdateRecord>>> {
        let (at, v) = self.entries.get(key)?;
        (now_ms.saturating_sub(*at) < ttl_ms).then(|| v.clone())
    }

    pub fn put(&mut self, key: String, now_ms: u64, value: Option<Rc<UpdateRecord>>) {
        if self.entries.len() >= MAX_ENTRIES {
            // Bounded memory: dropping everything is cheap and rare.
            self.entries.clear();
        }
        self.entries.insert(key, (now_ms, value));
    }

    /// Forgets every entry under a storage prefix (a runtime that was just written).
    pub fn invalidate_prefix(&mut self, prefix: &str) {
        self.entries.retain(|k, _| !k.starts_with(prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_invalidation() {
        let mut c = PointerCache::default();
        assert_eq!(c.get("a/ios/1/channels/production.json", 0, 1000), None);
        c.put("a/ios/1/channels/production.json".into(), 100, None);
        c.put("b/ios/1/channels/production.json".into(), 100, None);
        assert_eq!(c.get("a/ios/1/channels/production.json", 1099, 1000), Some(None));
        assert_eq!(c.get("a/ios/1/channels/production.json", 1100, 1000), None, "expired");
        assert_eq!(c.get("a/ios/1/channels/production.json", 100, 0), None, "ttl 0 disables");
        c.invalidate_prefix("a/ios/1/");
        assert_eq!(c.get("a/ios/1/channels/production.json", 101, 1000), None);
        assert_eq!(c.get("b/ios/1/channels/production.json", 101, 1000), Some(None));
    }

    #[test]
    fn bounded() {
        let mut c = PointerCache::default();
        for i in 0..MAX_ENTRIES + 1 {
            c.put(format!("k{i}"), 0, None);
        }
        assert!(c.entries.len() <= MAX_ENTRIES);
    }
}
