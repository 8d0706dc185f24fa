//! Where things live in R2. Everything of one app/platform/runtime is under one prefix, so a
//! runtime can be listed or deleted alone and apps never share keys:
//!
//! ```text
//! <slug>/<platform>/<runtimeVersion>/files/<sha256 hex>          file bytes, immutable, R2-verified digest
//! <slug>/<platform>/<runtimeVersion>/updates/<update id>.json    update record, immutable (manifest bytes inside)
//! <slug>/<platform>/<runtimeVersion>/channels/<channel>.json     current update of a channel (a copy of its record)
//! ```

use crate::validate::Platform;

/// One app + platform + runtime version: the unit of compatibility.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub slug: String,
    pub platform: Platform,
    pub runtime_version: String,
}

impl Target {
    pub fn prefix(&self) -> String {
        format!("{}/{}/{}/", self.slug, self.platform, self.runtime_version)
    }
    pub fn file_key(&self, sha256_hex: &str) -> String {
        format!("{}files/{sha256_hex}", self.prefix())
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
    /// Path part of asset URLs; a file's URL is `<origin><this>/<sha256 hex>`.
    pub fn asset_path(&self) -> String {
        format!("/api/assets/{}/{}/{}", self.slug, self.platform, encode_segment(&self.runtime_version))
    }
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
        let t = Target { slug: "demo-app".into(), platform: Platform::Ios, runtime_version: "1.0.3".into() };
        assert_eq!(t.prefix(), "demo-app/ios/1.0.3/");
        assert_eq!(t.file_key("ab"), "demo-app/ios/1.0.3/files/ab");
        assert_eq!(t.record_key("id"), "demo-app/ios/1.0.3/updates/id.json");
        assert_eq!(t.channel_key("production"), "demo-app/ios/1.0.3/channels/production.json");
        assert_eq!(t.asset_path(), "/api/assets/demo-app/ios/1.0.3");
        let plus = Target { runtime_version: "1+2".into(), ..t };
        assert_eq!(plus.asset_path(), "/api/assets/demo-app/ios/1%2B2");
    }
}
