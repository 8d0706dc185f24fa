//! What one manifest check says about update health, read from the client's own headers and
//! nothing else. Every value is validated or dropped here, before it reaches memory shared
//! with other requests: the install id becomes a 64-bit hash (never stored raw), update ids
//! must be UUIDs (or, for other protocols, short plain names), the failed-id list is an SFV list
//! of at most [`MAX_FAILED_IDS`] strings, and a fatal-error text is its first line, at most
//! [`MAX_FATAL_CHARS`] characters with control and bidi characters replaced. Garbage is
//! ignored, never an error: health must never fail a check.

use super::{Kind, Signal};
use crate::protocol::id;
use sfv::visitor::{EntryVisitor, Ignored, ListVisitor};
use sfv::{BareItemFromInput, Parser, Version};
use sha2::{Digest, Sha256};
use std::convert::Infallible;

/// The client sends at most 5 (`LIMIT 5` in its query); more are ignored.
pub const MAX_FAILED_IDS: usize = 5;
/// Characters of an `expo-fatal-error` first line kept.
pub const MAX_FATAL_CHARS: usize = 200;
/// Longest `expo-recent-failed-update-ids` value parsed (5 quoted UUIDs take ~200 bytes).
pub const MAX_FAILED_HEADER: usize = 1024;
/// Longest install id accepted (`EAS-Client-ID` is a 36-character UUID).
pub const MAX_CLIENT_ID: usize = 64;

/// The install id as a 64-bit hash: case-insensitive (Android sends lowercase, iOS uppercase),
/// `None` unless it is 1..=64 characters of `[A-Za-z0-9-_.]`.
pub fn client_hash(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    let ok = !raw.is_empty()
        && raw.len() <= MAX_CLIENT_ID
        && raw.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        return None;
    }
    let digest = Sha256::digest(raw.to_ascii_lowercase().as_bytes());
    Some(u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")))
}

/// An update key another protocol may send (a Capacitor bundle version): 1..=64 characters of
/// `[A-Za-z0-9-_.]`. Expo ids go through [`id::normalize_uuid`] instead.
pub fn is_update_key(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The ids of `expo-recent-failed-update-ids`: the list's string members that are UUIDs
/// (lowercased), at most [`MAX_FAILED_IDS`], duplicates removed. Anything unparsable is none.
pub fn failed_ids(raw: &str) -> Vec<String> {
    if raw.len() > MAX_FAILED_HEADER {
        return Vec::new();
    }
    let strings = Parser::new(raw).with_version(Version::Rfc8941).parse_list_with_visitor(Strings::default());
    let mut ids: Vec<String> = Vec::new();
    for s in strings.unwrap_or_default() {
        if let Some(u) = id::normalize_uuid(&s) {
            if !ids.contains(&u) {
                ids.push(u);
            }
        }
    }
    ids
}

/// Collects the string members of a list (at most [`MAX_FAILED_IDS`]); other members,
/// parameters and inner lists are checked for syntax by the parser and dropped.
#[derive(Default)]
struct Strings(Vec<String>);

impl<'de> ListVisitor<'de> for Strings {
    type Out = Vec<String>;
    type Error = Infallible;

    fn entry(&mut self) -> Result<impl EntryVisitor<'de>, Infallible> {
        Ok(StringEntry(&mut self.0))
    }

    fn finish(self) -> Result<Vec<String>, Infallible> {
        Ok(self.0)
    }
}

struct StringEntry<'a>(&'a mut Vec<String>);

impl<'de> EntryVisitor<'de> for StringEntry<'_> {
    type Error = Infallible;

    fn item(self) -> Result<impl sfv::visitor::ItemVisitor<'de>, Infallible> {
        Ok(move |bare: BareItemFromInput<'de>| {
            if let BareItemFromInput::String(s) = bare {
                if self.0.len() < MAX_FAILED_IDS {
                    self.0.push(s.as_str().to_string());
                }
            }
            Ok::<_, Infallible>(Ignored)
        })
    }

    fn inner_list(self) -> Result<impl sfv::visitor::InnerListVisitor<'de>, Infallible> {
        Ok(Ignored)
    }
}

/// The first non-empty line of a fatal-error text, at most [`MAX_FATAL_CHARS`] characters, with
/// control and bidi-override characters replaced by `?` so that it can be printed and stored.
pub fn fatal_text(raw: &str) -> Option<String> {
    let line = raw.lines().map(str::trim).find(|l| !l.is_empty())?;
    let text: String =
        line.chars().take(MAX_FATAL_CHARS).map(|c| if c.is_control() || is_bidi(c) { '?' } else { c }).collect();
    Some(text)
}

fn is_bidi(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// [`from_check`] over a parsed check: both adapters (the Worker and the CLI's test server) record
/// exactly this. `client_id` is the raw `eas-client-id` header (hashed by [`client_hash`], which
/// accepts more than the UUIDs rollout bucketing does).
pub fn from_manifest_request(req: &crate::check::ManifestRequest, client_id: Option<&str>) -> Vec<Signal> {
    from_check(
        req.channel.as_str(),
        client_id,
        req.current_update_id.as_deref(),
        req.embedded_update_id.as_deref(),
        req.recent_failed_update_ids.as_deref(),
        req.fatal_error.as_deref(),
    )
}

/// What an expo-updates manifest check reports, as signals: the launched update (current, unless
/// it is the embedded update, which this server can neither serve nor halt) and every failed id
/// other than the current one. No valid install id: no signals (devices are never counted by
/// request). The fatal text rides on the first failure, else on the launched signal.
pub fn from_check(
    channel: &str,
    client_id: Option<&str>,
    current: Option<&str>,
    embedded: Option<&str>,
    failed_header: Option<&str>,
    fatal_header: Option<&str>,
) -> Vec<Signal> {
    let Some(client) = client_id.and_then(client_hash) else { return Vec::new() };
    let current = current.and_then(id::normalize_uuid);
    let embedded = embedded.and_then(id::normalize_uuid);
    let mut fatal = fatal_header.and_then(fatal_text);
    let mut out = Vec::new();
    if let Some(c) = current.as_ref().filter(|c| Some(*c) != embedded.as_ref()) {
        out.push(Signal { channel: channel.into(), update_id: c.clone(), client, kind: Kind::Launched, fatal: None });
    }
    for f in failed_header.map(failed_ids).unwrap_or_default() {
        if Some(&f) != current.as_ref() {
            out.push(Signal { channel: channel.into(), update_id: f, client, kind: Kind::Failed, fatal: None });
        }
    }
    // The error most likely belongs to the update whose launch failed.
    let at = out.iter().position(|s| s.kind == Kind::Failed).unwrap_or(0);
    if let Some(s) = out.get_mut(at) {
        s.fatal = fatal.take();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const U1: &str = "11111111-1111-4111-8111-111111111111";
    const U2: &str = "22222222-2222-4222-8222-222222222222";
    const C: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";

    #[test]
    fn client_hash_case_insensitive_and_garbage_refused() {
        assert_eq!(client_hash(C), client_hash(&C.to_ascii_uppercase()));
        assert_ne!(client_hash(C), client_hash(U1));
        assert_eq!(client_hash(""), None);
        assert_eq!(client_hash("a b"), None);
        assert_eq!(client_hash("x\u{1b}[2J"), None);
        assert_eq!(client_hash(&"a".repeat(65)), None);
        assert!(client_hash(&"a".repeat(64)).is_some());
    }

    #[test]
    fn failed_ids_list_shapes() {
        assert_eq!(failed_ids(&format!("\"{U1}\", \"{U2}\"")), vec![U1, U2]);
        assert_eq!(failed_ids(&format!("\"{}\"", U1.to_ascii_uppercase())), vec![U1], "uppercase normalized");
        assert_eq!(failed_ids(&format!("\"{U1}\",\"{U1}\"")), vec![U1], "duplicates once");
        assert_eq!(failed_ids(&format!("\"{U1}\";p=1, tok, 5, (\"{U2}\")")), vec![U1], "non-strings dropped");
        assert!(failed_ids("\"not-a-uuid\"").is_empty());
        assert!(failed_ids("\"unterminated").is_empty(), "unparsable is none");
        assert!(failed_ids("").is_empty());
        let many: Vec<String> = (0..8).map(|i| format!("\"{i}{}\"", &U1[1..])).collect();
        assert_eq!(failed_ids(&many.join(", ")).len(), MAX_FAILED_IDS, "capped at 5");
        let long = format!("\"{U1}\", {}", "x, ".repeat(400));
        assert!(failed_ids(&long).is_empty(), "over the length cap: not parsed");
    }

    #[test]
    fn fatal_text_first_line_capped_and_escaped() {
        assert_eq!(fatal_text("\n  Fatal error: Time: 1\nDomain: x").as_deref(), Some("Fatal error: Time: 1"));
        assert_eq!(fatal_text(&"é".repeat(500)).unwrap().chars().count(), MAX_FATAL_CHARS);
        assert_eq!(fatal_text("a\u{1b}[31mb\u{202e}c").as_deref(), Some("a?[31mb?c"));
        assert_eq!(fatal_text(" \n \n"), None);
    }

    #[test]
    fn from_check_counts_launch_and_other_failures_only() {
        let list = format!("\"{U1}\", \"{U2}\"");
        let s = from_check("production", Some(C), Some(U2), None, Some(&list), Some("boom\nmore"));
        let got: Vec<_> = s.iter().map(|s| (s.update_id.as_str(), s.kind)).collect();
        assert_eq!(got, vec![(U2, Kind::Launched), (U1, Kind::Failed)], "U2 is current: not failed");
        assert_eq!((s[0].fatal.as_deref(), s[1].fatal.as_deref()), (None, Some("boom")), "on the failure");
        let launched_only = from_check("production", Some(C), Some(U2), None, None, Some("boom"));
        assert_eq!(launched_only[0].fatal.as_deref(), Some("boom"));
        assert!(s.iter().all(|x| x.client == client_hash(C).unwrap()));
        // Running the embedded update: no launch counted.
        assert!(from_check("production", Some(C), Some(U1), Some(U1), None, None).is_empty());
        // No or bad install id: nothing at all.
        assert!(from_check("production", None, Some(U1), None, Some(&list), None).is_empty());
        assert!(from_check("production", Some("bad id"), Some(U1), None, None, None).is_empty());
        // Garbage current id: ignored, failures still count.
        let s = from_check("production", Some(C), Some("zzz"), None, Some(&list), None);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].kind, Kind::Failed);
    }
}
