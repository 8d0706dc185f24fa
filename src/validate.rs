//! Validation of the names that become storage key segments. Each rule keeps `/`, `\`, `%`,
//! control characters and `..` out, so a name can never reach another app's prefix.

use crate::error::ApiError;

pub const MAX_SLUG_LEN: usize = 64;
pub const MAX_RUNTIME_VERSION_LEN: usize = 255;
pub const MAX_CHANNEL_LEN: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Ios,
    Android,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::Ios, Platform::Android];
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
        }
    }
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "ios" => Ok(Platform::Ios),
            "android" => Ok(Platform::Android),
            _ => Err(ApiError::bad_request(format!(
                "invalid platform {:?}: expected \"ios\" or \"android\"",
                truncate(s)
            ))),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// App slugs: Expo slugs (letters, digits, `-` and `_`) and Capacitor app ids, which are
/// reverse-DNS names (`com.example.app`): `.` only between two other characters, never doubled,
/// so no slug is `.`/`..` or ends in a dot. A slug starts with a letter or digit, so none can
/// reach the server's own `_system/` prefix.
pub fn slug(s: &str) -> Result<&str, ApiError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_SLUG_LEN
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && !s.ends_with('.')
        && !s.contains("..")
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.');
    if ok {
        Ok(s)
    } else {
        Err(ApiError::bad_request(format!(
            "invalid slug {:?}: use 1-{MAX_SLUG_LEN} letters, digits, '-', '_' or single dots between them (com.example.app), starting with a letter or digit",
            truncate(s)
        )))
    }
}

/// Expo's own runtimeVersion rule (`^[a-zA-Z\d][a-zA-Z\d._+()-]*$`, at most 255 characters).
pub fn runtime_version(s: &str) -> Result<&str, ApiError> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_RUNTIME_VERSION_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || b"._+()-".contains(&c));
    if ok {
        Ok(s)
    } else {
        Err(ApiError::bad_request(format!(
            "invalid runtimeVersion {:?}: must start with a letter or digit and contain only letters, digits and . _ + ( ) -",
            truncate(s)
        )))
    }
}

/// Channel names (`expo-channel-name`): letters, digits, `.`, `_`, `-`, starting alphanumeric.
pub fn channel(s: &str) -> Result<&str, ApiError> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_CHANNEL_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
    if ok {
        Ok(s)
    } else {
        Err(ApiError::bad_request(format!(
            "invalid channel {:?}: use 1-{MAX_CHANNEL_LEN} letters, digits, '.', '_' or '-'",
            truncate(s)
        )))
    }
}

/// A name that became a storage key segment, valid by construction: the only ways to make one
/// are `parse` and deserializing (which runs the same rule), so code that holds one never
/// re-checks it and cannot forget to.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $rule:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, ApiError> {
                $rule(s).map(|s| Self(s.to_string()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(|e| serde::de::Error::custom(e.message))
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }
    };
}

name_type!(
    /// An app's slug (see [`slug`]).
    Slug,
    slug
);
name_type!(
    /// A runtimeVersion (see [`runtime_version`]).
    RuntimeVersion,
    runtime_version
);
name_type!(
    /// A channel name (see [`channel`]).
    Channel,
    channel
);

impl Channel {
    /// What a device without `expo-channel-name` is on.
    pub fn production() -> Self {
        Self("production".to_string())
    }
}

/// Keeps error messages short and printable when echoing hostile input.
pub fn truncate(s: &str) -> String {
    let mut out: String = s.chars().take(80).filter(|c| !c.is_control()).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_types_parse_and_deserialize_with_the_same_rule() {
        assert_eq!(Slug::parse("demo-app").unwrap(), "demo-app");
        assert_eq!(Slug::parse("_system").unwrap_err().status, 400);
        assert!(serde_json::from_str::<Slug>("\"../x\"").is_err());
        assert_eq!(serde_json::from_str::<RuntimeVersion>("\"1.0.0+b(1)\"").unwrap().as_str(), "1.0.0+b(1)");
        assert!(serde_json::from_str::<Channel>("\"a/b\"").is_err());
        assert_eq!(serde_json::to_string(&Channel::production()).unwrap(), "\"production\"");
    }

    #[test]
    fn slugs() {
        assert!(slug("demo-app").is_ok());
        assert!(slug("utility_app2").is_ok());
        assert!(slug("com.example.app").is_ok(), "reverse-DNS Capacitor app ids are slugs");
        assert!(slug("com.example_2.my-app").is_ok());
        for bad in [
            "",
            "..",
            ".",
            "_system",
            "-x",
            "a/b",
            "demo-app/../x",
            "a\\b",
            "a%2fb",
            ".a",
            "a.",
            "a..b",
            "a b",
            &"x".repeat(65),
        ] {
            let e = slug(bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
        }
    }

    #[test]
    fn runtime_versions() {
        for ok in ["1.0.3", "2.0.0", "exposdk:54.0.0".replace(':', "-").as_str(), "1.0.0+build(3)"] {
            assert!(runtime_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "1.0/2", ".hidden", "1 0", "1.0\n", &"1".repeat(256)] {
            assert!(runtime_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn platforms_and_channels() {
        assert_eq!(Platform::parse("ios").unwrap(), Platform::Ios);
        assert!(Platform::parse("web").is_err());
        assert!(Platform::parse("IOS").is_err());
        assert!(channel("production").is_ok());
        assert!(channel("pr-12.preview").is_ok());
        assert!(channel("../x").is_err());
        assert!(channel("").is_err());
    }

    #[test]
    fn truncate_strips_controls() {
        assert_eq!(truncate("a\r\nb"), "ab");
        assert_eq!(truncate(&"x".repeat(100)).chars().count(), 81);
    }
}
