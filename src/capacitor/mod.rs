//! Capacitor apps (the `@capgo/capacitor-updater` plugin, majors 5 to 8) and APK downloads on the
//! same server as Expo apps: same tokens, scopes, audit log and one writer per app. The app id is
//! the slug (`com.example.app`).
//!
//! - [`plugin`] — the plugin's wire protocol: device info, update decision, `channel_self`, stats.
//! - [`state`] — the per-app document (channels, history, APKs) and the writes that change it.
//! - [`zipcheck`] — what a bundle zip must be before it is stored.
//! - [`route`] — the routes and the scope each write needs.
//! - [`deploy`] — the deploy routes' handlers (run by [`crate::deploy::dispatch`]).
//!
//! Public reads (the plugin's endpoints, downloads) are decided here and served by the Worker
//! adapter; they never write.

pub mod deploy;
pub mod health;
pub mod plugin;
pub mod route;
pub mod state;
pub mod zipcheck;

/// A single `Range: bytes=…` request resolved against an object of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// No (usable) range: send the whole object with 200. Multi-range and malformed headers
    /// land here too (RFC 9110 lets a server ignore them).
    Whole,
    /// Send `len` bytes from `offset` with 206 and `Content-Range`.
    Part { offset: u64, len: u64 },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

impl ByteRange {
    pub fn parse(header: Option<&str>, size: u64) -> Self {
        let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return ByteRange::Whole };
        if spec.contains(',') {
            return ByteRange::Whole;
        }
        let Some((a, b)) = spec.trim().split_once('-') else { return ByteRange::Whole };
        let num = |s: &str| s.trim().parse::<u64>().ok();
        let (start, end) = match (a.trim().is_empty(), num(a), num(b)) {
            // bytes=-N: the last N bytes.
            (true, _, Some(n)) if n > 0 => (size.saturating_sub(n), size.saturating_sub(1)),
            (true, _, _) => return ByteRange::Unsatisfiable,
            (false, Some(s), None) if b.trim().is_empty() => (s, size.saturating_sub(1)),
            (false, Some(s), Some(e)) if e >= s => (s, e.min(size.saturating_sub(1))),
            _ => return ByteRange::Whole,
        };
        if size == 0 || start >= size {
            return ByteRange::Unsatisfiable;
        }
        ByteRange::Part { offset: start, len: end - start + 1 }
    }

    /// The `Content-Range` value of a 206 (or of a 416 when `self` is unsatisfiable).
    pub fn content_range(&self, size: u64) -> Option<String> {
        match self {
            ByteRange::Whole => None,
            ByteRange::Part { offset, len } => Some(format!("bytes {offset}-{}/{size}", offset + len - 1)),
            ByteRange::Unsatisfiable => Some(format!("bytes */{size}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteRange::{self, *};

    #[test]
    fn range_forms_resolve_against_the_size() {
        let r = |h: &str| ByteRange::parse(Some(h), 100);
        assert_eq!(ByteRange::parse(None, 100), Whole);
        assert_eq!(r("bytes=0-9"), Part { offset: 0, len: 10 });
        assert_eq!(r("bytes=90-"), Part { offset: 90, len: 10 });
        assert_eq!(r("bytes=90-500"), Part { offset: 90, len: 10 });
        assert_eq!(r("bytes=-5"), Part { offset: 95, len: 5 });
        assert_eq!(r("bytes=-500"), Part { offset: 0, len: 100 });
        assert_eq!(r("bytes=100-"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
        assert_eq!(r("bytes=0-1,5-6"), Whole);
        assert_eq!(r("bytes=9-2"), Whole);
        assert_eq!(r("items=0-1"), Whole);
        assert_eq!(r("bytes=90-").content_range(100).as_deref(), Some("bytes 90-99/100"));
        assert_eq!(Unsatisfiable.content_range(100).as_deref(), Some("bytes */100"));
    }
}
