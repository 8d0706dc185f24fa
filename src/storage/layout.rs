//! Where things live in R2. Everything of one app/platform/runtime is under one prefix, so a
//! runtime can be listed or deleted alone and apps never share keys:
//!
//! ```text
//! <slug>/<platform>/<runtimeVersion>/files/<sha256 hex>          file bytes, immutable, R2-verified digest
//! <slug>/<platform>/<runtimeVersion>/files/<sha256 hex>.br|.gz   the same file, precompressed by the CLI
//! <slug>/<platform>/<runtimeVersion>/patches/<base sha>-<target sha>
//!                                                                BSDIFF40 patch between two launch assets
//! <slug>/<platform>/<runtimeVersion>/updates/<update id>.json    update record, immutable (manifest bytes inside)
//! <slug>/<platform>/<runtimeVersion>/channels/<channel>.json     current update of a channel (a copy of its record)
//! <slug>/<platform>/<runtimeVersion>/served/<channel>/<13-digit inverted ms>-<update id>
//!                                                                what the channel served, newest first
//! <slug>/runtimes/<platform>/<runtimeVersion>                    index: runtimes that got a commit
//! ```
//!
//! `served/` entries are written only after the channel pointer moved, so a record whose commit
//! died before its pointer write never appears there and is never promoted. The `runtimes/`
//! index lets `list` skip runtimes that only hold uploads (a platform segment is `ios` or
//! `android`, so it cannot collide with `runtimes`).

use crate::validate::{Platform, RuntimeVersion, Slug};

/// One app + platform + runtime version: the unit of compatibility.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub slug: Slug,
    pub platform: Platform,
    pub runtime_version: RuntimeVersion,
}

impl Target {
    /// Parses the three names at the edge (400 on a bad one).
    pub fn parse(slug: &str, platform: &str, runtime_version: &str) -> Result<Self, crate::error::ApiError> {
        Ok(Target {
            slug: Slug::parse(slug)?,
            platform: Platform::parse(platform)?,
            runtime_version: RuntimeVersion::parse(runtime_version)?,
        })
    }
}

impl Target {
    pub fn prefix(&self) -> String {
        format!("{}/{}/{}/", self.slug, self.platform, self.runtime_version)
    }
    pub fn file_key(&self, sha256_hex: &str) -> String {
        format!("{}files/{sha256_hex}", self.prefix())
    }
    /// A precompressed variant of `files/<sha>` (`ext`: `br` or `gz`); it belongs to that file.
    pub fn encoded_key(&self, sha256_hex: &str, ext: &str) -> String {
        format!("{}files/{sha256_hex}.{ext}", self.prefix())
    }
    /// A patch is named by the launch assets it joins, not by updates, so every update that
    /// republishes either bundle reuses it.
    pub fn patch_key(&self, base_sha256_hex: &str, target_sha256_hex: &str) -> String {
        format!("{}{base_sha256_hex}-{target_sha256_hex}", self.patches_prefix())
    }
    pub fn patches_prefix(&self) -> String {
        format!("{}patches/", self.prefix())
    }
    pub fn files_prefix(&self) -> String {
        format!("{}files/", self.prefix())
    }
    pub fn record_key(&self, update_id: &str) -> String {
        format!("{}updates/{update_id}.json", self.prefix())
    }
    pub fn records_prefix(&self) -> String {
        format!("{}updates/", self.prefix())
    }
    pub fn channel_key(&self, channel: &str) -> String {
        format!("{}channels/{channel}.json", self.prefix())
    }
    pub fn channels_prefix(&self) -> String {
        format!("{}channels/", self.prefix())
    }
    pub fn served_prefix(&self, channel: &str) -> String {
        format!("{}served/{channel}/", self.prefix())
    }
    /// Newest first: R2 lists keys in lexicographic order, so the time is inverted.
    pub fn served_key(&self, channel: &str, created_ms: u64, update_id: &str) -> String {
        format!("{}{:013}-{update_id}", self.served_prefix(channel), MAX_MS.saturating_sub(created_ms))
    }
    pub fn runtime_index_key(&self) -> String {
        format!("{}{}/{}", runtime_index_prefix(&self.slug), self.platform, self.runtime_version)
    }
    /// Path part of asset URLs; a file's URL is `<origin><this>/<sha256 hex>`.
    pub fn asset_path(&self) -> String {
        format!("/api/assets/{}/{}/{}", self.slug, self.platform, encode_segment(&self.runtime_version))
    }
}

/// The largest time a served-log key can carry (year 2286); keys stay 13 digits.
const MAX_MS: u64 = 9_999_999_999_999;

/// Where the index of committed runtimes of an app lives.
pub fn runtime_index_prefix(slug: &str) -> String {
    format!("{slug}/runtimes/")
}

/// runtimeVersion may contain `+ ( )`; keep URLs unambiguous by escaping `+`.
fn encode_segment(s: &str) -> String {
    s.replace('+', "%2B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let t = Target::parse("demo-app", Platform::Ios.as_str(), "1.0.3").unwrap();
        assert_eq!(t.prefix(), "demo-app/ios/1.0.3/");
        assert_eq!(t.file_key("ab"), "demo-app/ios/1.0.3/files/ab");
        assert_eq!(t.encoded_key("ab", "br"), "demo-app/ios/1.0.3/files/ab.br");
        assert_eq!(t.patch_key("ab", "cd"), "demo-app/ios/1.0.3/patches/ab-cd");
        assert_eq!(t.record_key("id"), "demo-app/ios/1.0.3/updates/id.json");
        assert_eq!(t.channel_key("production"), "demo-app/ios/1.0.3/channels/production.json");
        assert_eq!(t.asset_path(), "/api/assets/demo-app/ios/1.0.3");
        assert_eq!(t.served_key("production", 1, "u"), "demo-app/ios/1.0.3/served/production/9999999999998-u");
        assert!(t.served_key("production", 2, "a") < t.served_key("production", 1, "b"), "newest sorts first");
        assert_eq!(t.runtime_index_key(), "demo-app/runtimes/ios/1.0.3");
        let plus = Target { runtime_version: RuntimeVersion::parse("1+2").unwrap(), ..t };
        assert_eq!(plus.asset_path(), "/api/assets/demo-app/ios/1%2B2");
    }
}
