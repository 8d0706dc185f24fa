//! Property tests for the protocol core's parsers: every parser is total (no panic, whatever
//! the input) and every render/parse pair round-trips.
//!
//! The default run is bounded (proptest's 256 cases per property, or `PROPTEST_CASES`) so CI
//! stays fast; `scripts/proptest-long.sh` runs the same properties much longer. Failures are not
//! persisted to `proptest-regressions/`: a failure prints its minimal input, which belongs in the
//! bug report (and, once fixed, in a unit test next to the code).

use expo_ota::check;
use expo_ota::deploy::formdata;
use expo_ota::http::route::{self, Route};
use expo_ota::protocol::export;
use expo_ota::protocol::hash::{self, Digests};
use expo_ota::protocol::id;
use expo_ota::protocol::manifest::{self, Directive, FileEntry, ManifestInput};
use expo_ota::protocol::multipart;
use expo_ota::protocol::pem;
use expo_ota::protocol::sfv::{self, Item};
use expo_ota::protocol::time;
use expo_ota::storage::layout::Target;
use expo_ota::validate::{self, Platform};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Proptest's defaults (cases from `PROPTEST_CASES`, else 256), without regression files.
fn config() -> ProptestConfig {
    ProptestConfig { failure_persistence: None, ..ProptestConfig::default() }
}

// ---------------------------------------------------------------------------------------------
// Shared generators
// ---------------------------------------------------------------------------------------------

/// Truncates to at most `max` bytes, on a char boundary.
fn cap(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut i = max;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        s.truncate(i);
    }
    s
}

/// Any Unicode scalar values, controls and NUL included (at most 1.2 KB).
fn any_string() -> BoxedStrategy<String> {
    vec(any::<char>(), 0..300).prop_map(|v| v.into_iter().collect()).boxed()
}

fn any_bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    vec(any::<u8>(), 0..=max).boxed()
}

/// Pieces that break naive path, query and header handling.
const HOSTILE: &[&str] = &[
    "%",
    "..",
    ".",
    "/",
    "\\",
    "%2F",
    "%2f",
    "%5C",
    "%5c",
    "%00",
    "%0d%0a",
    "%0A",
    "%zz",
    "%f",
    "%ff",
    "%C3%A9",
    "%E2%80",
    "%+f",
    "%-1",
    "%2e%2e",
    "%2E",
    "é",
    "😀",
    "\u{202e}",
    "\u{feff}",
    "\u{0}",
    "\u{7f}",
    "\u{85}",
    "\r\n",
    "\n",
    "\t",
    " ",
    ":",
    "C:",
    "~",
    "+",
    "?",
    "#",
    "&",
    "=",
    ";",
    ",",
    "\"",
    "'",
    "*",
    "(",
    ")",
    "//",
    "\\\\?\\",
    "..%2F",
    "%2e%2e%2f",
];

fn fragment() -> BoxedStrategy<String> {
    prop_oneof![
        5 => select(HOSTILE).prop_map(str::to_string),
        3 => "[a-zA-Z0-9._+()-]{1,12}",
        1 => any::<char>().prop_map(String::from),
        // Very long segments.
        1 => (64usize..700, select(&["a", "é", "%2e", "..", "1"][..])).prop_map(|(n, s)| s.repeat(n / s.len())),
    ]
    .boxed()
}

/// Concatenated hostile fragments, at most 2 KB.
fn hostile_string() -> BoxedStrategy<String> {
    vec(fragment(), 0..16).prop_map(|v| cap(v.concat(), 2048)).boxed()
}

/// Percent-encodes the chars picked by `mask` (all their UTF-8 bytes), upper- or lowercase hex.
fn pct_encode(s: &str, mask: u64, upper: bool) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if mask >> (i % 64) & 1 == 1 {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&if upper { format!("%{b:02X}") } else { format!("%{b:02x}") });
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A valid value, sometimes partly or wholly percent-encoded.
fn maybe_encoded(s: impl Strategy<Value = String> + 'static) -> BoxedStrategy<String> {
    (s, any::<u64>(), 0..4u8)
        .prop_map(|(s, mask, mode)| match mode {
            0 | 1 => s,
            2 => pct_encode(&s, mask, mask & 1 == 0),
            _ => pct_encode(&s, u64::MAX, mask & 1 == 0),
        })
        .boxed()
}

fn valid_slug() -> BoxedStrategy<String> {
    "[a-zA-Z0-9_-]{1,64}".boxed()
}

fn valid_rv() -> BoxedStrategy<String> {
    "[a-zA-Z0-9][a-zA-Z0-9._+()-]{0,40}".boxed()
}

fn platform_name() -> BoxedStrategy<String> {
    select(&["ios", "android", "web", "IOS", "Android", "", "ios ", "windows"][..]).prop_map(str::to_string).boxed()
}

fn sha_hex() -> BoxedStrategy<String> {
    any::<[u8; 32]>().prop_map(|b| hash::hex(&b)).boxed()
}

fn uuid_like() -> BoxedStrategy<String> {
    (any::<[u8; 16]>(), 0..4u8, select(&["", " ", "\t", "  "][..]))
        .prop_map(|(b, mode, pad)| {
            let u = id::uuid_v4(b);
            match mode {
                0 => u,
                1 => u.to_uppercase(),
                2 => format!("{pad}{u}{pad}"),
                _ => u.replace('-', ""),
            }
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// 1. route::parse and route::query_param
// ---------------------------------------------------------------------------------------------

fn method() -> BoxedStrategy<String> {
    prop_oneof![
        6 => select(&["GET", "HEAD", "POST", "PUT", "DELETE"][..]).prop_map(str::to_string),
        2 => select(&["PATCH", "OPTIONS", "get", "", "GET ", "G\u{0}T", "GET, HEAD", "POST, PUT", "HEAD\r\n"][..]).prop_map(str::to_string),
        1 => any_string(),
    ]
    .boxed()
}

/// Mostly the expected segment, sometimes something hostile in its place.
fn slot(valid: impl Strategy<Value = String> + 'static) -> BoxedStrategy<String> {
    prop_oneof![12 => maybe_encoded(valid), 1 => hostile_string()].boxed()
}

fn kw(k: &'static str) -> BoxedStrategy<String> {
    slot(Just(k.to_string()))
}

fn platform_slot() -> BoxedStrategy<String> {
    slot(prop_oneof![6 => select(&["ios", "android"][..]).prop_map(str::to_string), 1 => platform_name()])
}

fn asset_file() -> BoxedStrategy<String> {
    (sha_hex(), option::of(prop_oneof![6 => "[a-zA-Z0-9]{1,16}".boxed(), 1 => "[a-zA-Z0-9]{17,20}".boxed(), 1 => Just(String::new()).boxed(), 1 => hostile_string()]))
        .prop_map(|(h, ext)| match ext {
            Some(e) => format!("{h}.{e}"),
            None => h,
        })
        .boxed()
}

/// Segment lists shaped like each route, with the methods the route allows.
fn route_segments() -> BoxedStrategy<(Vec<String>, &'static [&'static str])> {
    let target = || (slot(valid_slug()), platform_slot(), slot(valid_rv()));
    let m = |ms: &'static [&'static str]| Just(ms);
    prop_oneof![
        (kw("health"), m(&["GET", "HEAD"])).prop_map(|(a, m)| (vec![a], m)),
        (kw("api"), kw("manifest"), m(&["GET", "HEAD"])).prop_map(|(a, b, m)| (vec![a, b], m)),
        (kw("api"), kw("assets"), target(), slot(asset_file()), m(&["GET", "HEAD"]))
            .prop_map(|(a, b, (s, p, r), f, m)| (vec![a, b, s, p, r, f], m)),
        (kw("api"), kw("publish"), slot(valid_slug()), m(&["POST"])).prop_map(|(a, b, s, m)| (vec![a, b, s], m)),
        (
            kw("api"),
            kw("capacitor"),
            slot(valid_slug()),
            slot(
                select(&["updates", "stats", "channel_self", "check", "publish", "versions", "rollback"][..])
                    .prop_map(str::to_string)
            ),
            m(&["POST", "PUT", "GET", "DELETE"])
        )
            .prop_map(|(a, b, s, op, m)| (vec![a, b, s, op], m)),
        (
            kw("api"),
            kw("publish"),
            target(),
            slot(select(&["prepare", "commit"][..]).prop_map(str::to_string)),
            m(&["POST"])
        )
            .prop_map(|(a, b, (s, p, r), op, m)| (vec![a, b, s, p, r, op], m)),
        (kw("api"), kw("files"), target(), slot(sha_hex()), m(&["PUT"]))
            .prop_map(|(a, b, (s, p, r), h, m)| (vec![a, b, s, p, r, h], m)),
        (kw("api"), kw("updates"), m(&["GET"])).prop_map(|(a, b, m)| (vec![a, b], m)),
        (kw("api"), kw("updates"), target(), m(&["DELETE"])).prop_map(|(a, b, (s, p, r), m)| (vec![a, b, s, p, r], m)),
        (kw("api"), kw("updates"), target(), slot(uuid_like()), m(&["GET", "DELETE"]))
            .prop_map(|(a, b, (s, p, r), u, m)| (vec![a, b, s, p, r, u], m)),
        (kw("api"), kw("tokens"), m(&["GET", "POST"])).prop_map(|(a, b, m)| (vec![a, b], m)),
        (kw("api"), kw("tokens"), slot("[0-9a-f]{16}"), m(&["DELETE"])).prop_map(|(a, b, t, m)| (vec![a, b, t], m)),
        (kw("api"), kw("audit"), m(&["GET"])).prop_map(|(a, b, m)| (vec![a, b], m)),
        (kw("api"), kw("health"), m(&["GET"])).prop_map(|(a, b, m)| (vec![a, b], m)),
        // Random segment lists from the hostile alphabet.
        (
            vec(
                prop_oneof![
                    hostile_string(),
                    select(&["api", "assets", "updates", "ios"][..]).prop_map(str::to_string)
                ],
                0..9
            ),
            m(&["GET"])
        ),
    ]
    .boxed()
}

/// `(method, path)`: mostly a method the route shape allows, sometimes any method.
fn route_request() -> BoxedStrategy<(String, String)> {
    prop_oneof![
        8 => (route_segments(), any::<prop::sample::Index>(), prop_oneof![3 => Just(None), 1 => method().prop_map(Some)], prop_oneof![6 => Just("/"), 1 => Just(""), 1 => Just("//"), 1 => Just("\\")], prop::bool::weighted(0.1))
            .prop_map(|((segs, methods), i, other, lead, trail)| {
                let mut p = format!("{lead}{}", segs.join("/"));
                if trail {
                    p.push('/');
                }
                (other.unwrap_or_else(|| i.get(methods).to_string()), p)
            }),
        1 => (method(), hostile_string()),
        1 => (method(), any_string()),
    ]
    .boxed()
}

/// A name that ends up as a storage key segment: no separator, escape, control char or dot
/// segment. (A runtimeVersion may contain `..` inside, e.g. `1..2`: Expo's own rule allows it,
/// and without `/` or `\` it cannot be a traversal, so only whole `.`/`..` values are refused.)
fn check_key_segment(s: &str) -> Result<(), TestCaseError> {
    prop_assert!(!s.is_empty());
    prop_assert!(!s.contains(['/', '\\', '%']), "{s:?}");
    prop_assert!(!s.chars().any(char::is_control), "{s:?}");
    prop_assert!(!s.starts_with('.'), "{s:?}");
    Ok(())
}

fn check_target(t: &Target) -> Result<(), TestCaseError> {
    prop_assert!(validate::slug(&t.slug).is_ok(), "{:?}", t.slug);
    prop_assert!(validate::runtime_version(&t.runtime_version).is_ok(), "{:?}", t.runtime_version);
    prop_assert_eq!(Platform::parse(t.platform.as_str()), Ok(t.platform));
    check_key_segment(&t.slug)?;
    prop_assert!(!t.slug.contains(".."));
    check_key_segment(&t.runtime_version)?;
    check_key_segment(t.platform.as_str())?;
    // Exactly three segments under the prefix, whatever the names were.
    prop_assert_eq!(t.prefix().split('/').count(), 4);
    Ok(())
}

fn check_sha(s: &str) -> Result<(), TestCaseError> {
    prop_assert!(hash::parse_hex::<32>(s).is_some(), "{s:?}");
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn route_parse_is_total_and_ok_routes_are_safe((method, path) in route_request()) {
        match route::parse(&method, &path) {
            Ok(r) => {
                prop_assert!(["GET", "HEAD", "POST", "PUT", "DELETE"].contains(&method.as_str()), "{method:?}");
                match &r {
                    Route::Health | Route::Manifest | Route::ListUpdates | Route::CreateToken | Route::ListTokens | Route::Audit | Route::Explain | Route::HealthReport => {}
                    // The token id is checked (16 hex digits) in tokens::revoke; the router only
                    // guarantees it is one segment.
                    Route::RevokeToken { id } => prop_assert!(!id.contains('/'), "{id:?}"),
                    Route::Asset { target, sha256, ext, head } => {
                        check_target(target)?;
                        check_sha(sha256)?;
                        if let Some(e) = ext {
                            prop_assert!(!e.is_empty() && e.len() <= 16 && e.bytes().all(|c| c.is_ascii_alphanumeric()), "{e:?}");
                        }
                        prop_assert_eq!(*head, method == "HEAD");
                    }
                    Route::PublishForm { slug } => {
                        prop_assert!(validate::slug(slug).is_ok());
                        check_key_segment(slug)?;
                    }
                    Route::PublishPrepare { target } | Route::PublishCommit { target } | Route::DeleteRuntime { target } | Route::Rollback { target } | Route::Promote { target } | Route::Rollout { target } => check_target(target)?,
                    Route::UploadFile { target, sha256 } | Route::UploadEncoded { target, sha256, .. } => {
                        check_target(target)?;
                        check_sha(sha256)?;
                    }
                    Route::UploadPatch { target, base, sha256 } | Route::PatchStatus { target, base, sha256 } => {
                        check_target(target)?;
                        check_sha(base)?;
                        check_sha(sha256)?;
                    }
                    Route::GetUpdate { target, id } | Route::DeleteUpdate { target, id } => {
                        check_target(target)?;
                        prop_assert!(id::is_canonical_uuid(id), "{id:?}");
                    }
                    Route::Capacitor(c) => {
                        prop_assert!(validate::slug(c.slug()).is_ok(), "{c:?}");
                        check_key_segment(c.slug())?;
                        prop_assert!(!c.slug().contains(".."), "{c:?}");
                    }
                    // Account routes name at most a validated slug (and a login or key id checked by the router).
                    Route::Accounts(a) => {
                        if let Some(slug) = a.app() {
                            prop_assert!(validate::slug(slug).is_ok());
                            check_key_segment(slug)?;
                        }
                    }
                }
            }
            Err(e) => {
                prop_assert!([400, 404, 405].contains(&e.status), "{e}");
                prop_assert_eq!(e.status == 405, e.allow.is_some());
            }
        }
    }

    #[test]
    fn query_param_is_total(query in prop_oneof![hostile_string(), any_string()], name in prop_oneof![select(&["slug", "platform", ""][..]).prop_map(str::to_string), hostile_string()]) {
        let _ = route::query_param(&query, &name);
    }

    #[test]
    fn query_param_decodes_what_was_encoded(
        name in "[a-zA-Z][a-zA-Z-]{0,8}",
        // Without `/`, `\` and NUL, which query_param refuses when encoded.
        value in vec(any::<char>().prop_map(|c| if matches!(c, '/' | '\\' | '\0') { '_' } else { c }), 0..40).prop_map(String::from_iter),
        others in vec(("[a-z]{1,6}", "[a-zA-Z0-9%+]{0,10}"), 0..3),
        mask in any::<u64>(),
        space_as_plus in any::<bool>(),
    ) {
        // Encode everything a query value cannot carry raw, plus random others.
        let mut enc = String::new();
        for (i, c) in value.chars().enumerate() {
            if c == ' ' && space_as_plus {
                enc.push('+');
            } else if !c.is_ascii_alphanumeric() || mask >> (i % 64) & 1 == 1 {
                enc.push_str(&pct_encode(&c.to_string(), 1, i % 2 == 0));
            } else {
                enc.push(c);
            }
        }
        let mut query: Vec<String> = others.iter().filter(|(k, _)| *k != name).map(|(k, v)| format!("{k}={v}")).collect();
        query.push(format!("{name}={enc}"));
        query.push(format!("{name}=second"));
        prop_assert_eq!(route::query_param(&format!("?{}", query.join("&")), &name), Some(value));
    }
}

// ---------------------------------------------------------------------------------------------
// 2. export::parse_metadata and export::normalize_path
// ---------------------------------------------------------------------------------------------

const PATH_FRAGMENTS: &[&str] = &[
    "..", ".", "", "/", "\\", "C:", "c:\\", "//", "\u{0}", "\n", "\u{7f}", "\u{85}", "é", "%2e%2e", "~", " ",
    "\\\\?\\", "a:", "...",
];

fn valid_export_path() -> BoxedStrategy<String> {
    let seg = "[a-zA-Z0-9_-]{1,12}(\\.[a-z]{1,4})?";
    prop_oneof![3 => vec(seg, 1..5).prop_map(|v| v.join("/")), 1 => vec(seg, 1..5).prop_map(|v| v.join("\\"))].boxed()
}

fn hostile_export_path() -> BoxedStrategy<String> {
    prop_oneof![
        4 => vec(prop_oneof![select(PATH_FRAGMENTS).prop_map(str::to_string), "[a-z]{1,6}".boxed()], 0..8).prop_map(|v| v.concat()),
        1 => hostile_string(),
        1 => any_string(),
    ]
    .boxed()
}

fn export_path() -> BoxedStrategy<String> {
    prop_oneof![1 => valid_export_path(), 1 => hostile_export_path()].boxed()
}

fn asset_ext() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "\\.?[a-zA-Z0-9]{1,8}",
        2 => select(&["", ".", "..", "p/ng", "png\n", "é", "aaaaaaaaaaaaaaaaa", ".aaaaaaaaaaaaaaaa", "png ", "p.ng"][..]).prop_map(str::to_string),
        1 => any_string(),
    ]
    .boxed()
}

/// metadata.json: `valid` in 0..=10 sets how often each piece is well-formed (10: always).
fn metadata_json() -> BoxedStrategy<Vec<u8>> {
    (0u32..=10)
        .prop_flat_map(|valid| {
            let (g, b) = (valid, 10 - valid);
            let pick = move |good: BoxedStrategy<String>, bad: BoxedStrategy<String>| -> BoxedStrategy<String> {
                match (g, b) {
                    (0, _) => bad,
                    (_, 0) => good,
                    _ => prop_oneof![g => good, b => bad].boxed(),
                }
            };
            let name = pick(
                prop_oneof![4 => select(&["ios", "android"][..]).prop_map(str::to_string), 1 => Just("web".to_string())].boxed(),
                prop_oneof![3 => platform_name(), 1 => any_string()].boxed(),
            );
            let ext = pick("\\.?[a-zA-Z0-9]{1,8}".boxed(), asset_ext());
            let platform = (
                name,
                pick(valid_export_path(), hostile_export_path()),
                vec((pick(valid_export_path(), hostile_export_path()), ext), 0..4),
                if valid == 10 { Just(9u8).boxed() } else { (0..10u8).boxed() },
            );
            vec(platform, 0..4)
        })
        .prop_map(|plats| {
            let mut fm = serde_json::Map::new();
            for (name, bundle, assets, shape) in plats {
                let assets: Vec<Value> = assets.into_iter().map(|(path, ext)| json!({ "path": path, "ext": ext })).collect();
                let v = match shape {
                    0 => json!({ "bundle": bundle }),
                    1 => json!({ "assets": assets }),
                    2 => json!({ "bundle": 5, "assets": assets }),
                    3 => json!({ "bundle": bundle, "assets": [{ "path": 1, "ext": null }] }),
                    4 => json!({ "bundle": bundle, "assets": assets, "extra": { "x": [null, true] } }),
                    _ => json!({ "bundle": bundle, "assets": assets }),
                };
                fm.insert(name, v);
            }
            serde_json::to_vec(&json!({ "version": 0, "bundler": "metro", "fileMetadata": fm })).expect("json")
        })
        .boxed()
}

#[derive(Clone, Debug)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn mutation_byte() -> BoxedStrategy<u8> {
    prop_oneof![
        3 => select(b"\"\\{}[],:0123456789abcdefABCDEF-._/ nultrue\n".to_vec()),
        1 => any::<u8>(),
    ]
    .boxed()
}

fn mutations() -> BoxedStrategy<Vec<Mutation>> {
    vec(
        prop_oneof![
            (any::<usize>(), mutation_byte()).prop_map(|(i, b)| Mutation::Replace(i, b)),
            (any::<usize>(), mutation_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Delete),
        ],
        1..5,
    )
    .boxed()
}

fn mutate(bytes: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for m in muts {
        match *m {
            Mutation::Replace(i, x) if !b.is_empty() => {
                let i = i % b.len();
                b[i] = x;
            }
            Mutation::Insert(i, x) => {
                let i = i % (b.len() + 1);
                b.insert(i, x);
            }
            Mutation::Delete(i) if !b.is_empty() => {
                let i = i % b.len();
                b.remove(i);
            }
            _ => {}
        }
    }
    b
}

fn check_export_path(p: &str) -> Result<(), TestCaseError> {
    prop_assert!(!p.is_empty() && p.len() <= 1024);
    prop_assert!(!p.starts_with('/'), "{p:?}");
    prop_assert!(!p.contains('\\'), "{p:?}");
    prop_assert!(p.as_bytes().get(1) != Some(&b':'), "drive letter: {p:?}");
    prop_assert!(!p.chars().any(char::is_control), "{p:?}");
    for seg in p.split('/') {
        prop_assert!(!matches!(seg, "" | "." | ".."), "{p:?}");
    }
    Ok(())
}

fn check_metadata(bytes: &[u8]) -> Result<(), TestCaseError> {
    match export::parse_metadata(bytes) {
        Ok(platforms) => {
            prop_assert!(!platforms.is_empty());
            prop_assert!(platforms.windows(2).all(|w| w[0].platform < w[1].platform), "ios before android, once each");
            for p in &platforms {
                check_export_path(&p.bundle)?;
                for a in &p.assets {
                    check_export_path(&a.path)?;
                    prop_assert!(!a.ext.is_empty() && a.ext.len() <= 16, "{:?}", a.ext);
                    prop_assert!(a.ext.bytes().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()), "{:?}", a.ext);
                }
            }
        }
        Err(e) => prop_assert!([400, 413].contains(&e.status), "{e}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_metadata_is_total_on_bytes(bytes in any_bytes(2048)) {
        check_metadata(&bytes)?;
    }

    #[test]
    fn parse_metadata_is_total_on_metadata_shaped_json(bytes in metadata_json()) {
        check_metadata(&bytes)?;
    }

    #[test]
    fn parse_metadata_is_total_on_mutated_json(bytes in metadata_json(), muts in mutations()) {
        check_metadata(&mutate(&bytes, &muts))?;
    }

    #[test]
    fn normalize_path_is_total_and_ok_paths_stay_inside(p in export_path()) {
        if let Ok(out) = export::normalize_path(&p) {
            check_export_path(&out)?;
            prop_assert_eq!(out, p.replace('\\', "/"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. sfv
// ---------------------------------------------------------------------------------------------

const SFV_FRAGMENTS: &[&str] = &[
    "sig",
    "keyid",
    "alg",
    "a",
    "*",
    "=",
    ",",
    ", ",
    ";",
    ";q",
    "\"",
    "\\",
    "\\\"",
    "?1",
    "?0",
    "?",
    "?2",
    ":",
    ":aGk=:",
    "::",
    ":!!:",
    "(",
    ")",
    "-",
    "1",
    "-0",
    "1.5",
    "1.",
    ".5",
    "1.2.3",
    "123456789012345",
    "1234567890123456",
    "-999999999999999",
    "0.1234",
    "1234567890123.1",
    " ",
    "\t",
    "tok/en",
    "\"rsa-v1_5-sha256\"",
    "\"main\"",
    "é",
    "\u{0}",
    "\u{7f}",
    "A",
    "\r\n",
];

/// One dictionary member's value: every item kind, well-formed or slightly off.
fn sfv_item() -> BoxedStrategy<String> {
    prop_oneof![
        "[ -~]{0,20}".prop_map(|v| sfv::string_item(&v).expect("printable")),
        "-?[0-9]{1,16}",
        "-?[0-9]{1,13}\\.[0-9]{0,4}",
        "[a-zA-Z*][a-zA-Z0-9!#$%&'*+.^_`|~:/-]{0,10}",
        select(&["?0", "?1", "?", "?2"][..]).prop_map(str::to_string),
        any_bytes(12).prop_map(|b| format!(":{}:", hash::base64_standard(&b))),
        Just(String::new()),
        select(SFV_FRAGMENTS).prop_map(str::to_string),
    ]
    .boxed()
}

fn sfv_string() -> BoxedStrategy<String> {
    let member = (
        prop_oneof![4 => "[a-z*][a-z0-9_.*-]{0,8}".boxed(), 1 => select(SFV_FRAGMENTS).prop_map(str::to_string).boxed()],
        option::of(sfv_item()),
        vec(("[a-z*][a-z0-9_.*-]{0,4}", option::of(sfv_item())), 0..2),
    )
        .prop_map(|(k, v, params)| {
            let mut m = k;
            if let Some(v) = v {
                m.push('=');
                m.push_str(&v);
            }
            for (pk, pv) in params {
                m.push(';');
                m.push_str(&pk);
                if let Some(pv) = pv {
                    m.push('=');
                    m.push_str(&pv);
                }
            }
            m
        });
    prop_oneof![
        3 => (vec(member, 0..6), select(&[",", ", ", " , ", "\t,", ",,", " "][..])).prop_map(|(ms, sep)| ms.join(sep)),
        3 => vec(prop_oneof![4 => select(SFV_FRAGMENTS).prop_map(str::to_string), 1 => "[a-z0-9]{1,6}".boxed(), 1 => any::<char>().prop_map(String::from)], 0..24)
            .prop_map(|v| v.concat()),
        1 => any_string(),
        1 => hostile_string(),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sfv_parse_dictionary_is_total(s in sfv_string()) {
        if let Ok(d) = sfv::parse_dictionary(&s) {
            // Keys are unique (a later duplicate overrides an earlier one).
            let mut keys: Vec<&str> = d.iter().map(|(k, _)| k.as_str()).collect();
            keys.sort_unstable();
            keys.dedup();
            prop_assert_eq!(keys.len(), d.len());
        }
    }

    #[test]
    fn sfv_string_dictionary_round_trips(
        members in vec(("[a-z*][a-z0-9_.*-]{0,12}", "[ -~]{0,40}"), 1..8),
        seps in vec(select(&[",", ", ", " ,  ", "\t,\t", ",\t"][..]), 8),
        lead in "[ ]{0,3}",
        trail in "[ \t]{0,3}",
    ) {
        let mut text = lead;
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                text.push_str(seps[i]);
            }
            text.push_str(&format!("{k}={}", sfv::string_item(v).expect("printable ASCII")));
        }
        text.push_str(&trail);
        // RFC 8941 §4.2.2: a later duplicate key overwrites the earlier member's value, which
        // keeps its place in the (ordered) dictionary.
        let mut expected: Vec<(String, Item)> = Vec::new();
        for (k, v) in &members {
            match expected.iter_mut().find(|(ek, _)| ek == k) {
                Some(member) => member.1 = Item::String(v.clone()),
                None => expected.push((k.clone(), Item::String(v.clone()))),
            }
        }
        prop_assert_eq!(sfv::parse_dictionary(&text), Ok(expected), "{}", text);
    }

    #[test]
    fn sfv_string_item_refuses_exactly_non_printable(s in any_string()) {
        let printable = s.bytes().all(|c| (0x20..0x7f).contains(&c));
        prop_assert_eq!(sfv::string_item(&s).is_ok(), printable);
    }

    #[test]
    fn sfv_signature_header_parses_back(sig in "[A-Za-z0-9+/]{0,400}={0,2}", keyid in "[ -~]{0,130}") {
        let h = sfv::signature_header(&sig, &keyid);
        let d = sfv::parse_dictionary(&h).map_err(TestCaseError::fail)?;
        let expected = vec![
            ("sig".to_string(), Item::String(sig.clone())),
            ("keyid".to_string(), Item::String(keyid.clone())),
            ("alg".to_string(), Item::String("rsa-v1_5-sha256".into())),
        ];
        prop_assert_eq!(d, expected);
        // What the server answers is also a valid expo-expect-signature for the same key.
        let e = sfv::parse_expect_signature(&h);
        if !keyid.is_empty() && keyid.len() <= 128 {
            prop_assert_eq!(e.map(|e| e.keyid), Ok(keyid));
        } else {
            prop_assert!(e.is_err());
        }
    }

    #[test]
    fn sfv_parse_expect_signature_is_total(s in sfv_string()) {
        if let Ok(e) = sfv::parse_expect_signature(&s) {
            prop_assert!(!e.keyid.is_empty() && e.keyid.len() <= 128);
            prop_assert!(e.keyid.bytes().all(|c| (0x20..0x7f).contains(&c)), "{:?}", e.keyid);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. multipart (the manifest response)
// ---------------------------------------------------------------------------------------------

const PART_NAMES: &[&str] = &["manifest", "directive", "extensions", "certificate_chain"];

/// Part bodies built to confuse a boundary scanner: dashes, CRLFs, fake boundaries.
fn part_body() -> BoxedStrategy<Vec<u8>> {
    let tricky: &[&[u8]] = &[
        b"--",
        b"\r\n",
        b"\r\n\r\n",
        b"--ota-",
        b"\r\n--",
        b"--\r\n",
        b"content-disposition: form-data; name=\"x\"",
        b":",
        b";",
        b"\"",
    ];
    vec(
        prop_oneof![
            3 => select(tricky).prop_map(<[u8]>::to_vec),
            1 => any::<[u8; 16]>().prop_map(|b| format!("\r\n--ota-{}\r\n", hash::hex(&b)).into_bytes()),
            1 => any::<[u8; 16]>().prop_map(|b| format!("\r\n--ota-{}--\r\n", hash::hex(&b)).into_bytes()),
            2 => vec(any::<u8>(), 0..64),
            2 => "[ -~]{0,64}".prop_map(String::into_bytes),
        ],
        0..48,
    )
    .prop_map(|v| {
        let mut b = v.concat();
        b.truncate(8 * 1024);
        b
    })
    .boxed()
}

fn content_type_string() -> BoxedStrategy<String> {
    const CT: &[&str] = &[
        "multipart/mixed",
        "multipart/form-data",
        "MULTIPART/Mixed",
        "multipart/",
        "application/json",
        ";",
        "; ",
        "boundary=",
        "Boundary=",
        " boundary = ",
        "\"",
        "=",
        " ",
        "abc",
        "ota-1",
        "charset=utf-8",
        "é",
        "\u{0}",
        "\t",
    ];
    prop_oneof![
        4 => vec(prop_oneof![4 => select(CT).prop_map(str::to_string), 1 => "[!-~]{0,80}".boxed()], 0..10).prop_map(|v| v.concat()),
        1 => any_string(),
    ]
    .boxed()
}

/// A boundary and a body assembled from that boundary's own delimiters: an opening, a middle
/// of delimiter-ish fragments (often empty) and a closing, each sometimes damaged.
fn boundary_shaped() -> BoxedStrategy<(String, Vec<u8>)> {
    prop_oneof![Just("b".to_string()), "[a-z0-9-]{1,8}".boxed(), "[!-~]{1,70}".boxed()]
        .prop_flat_map(|b| {
            let opening: Vec<Vec<u8>> = vec![
                format!("--{b}\r\n").into_bytes(),
                format!("--{b}").into_bytes(),
                Vec::new(),
                format!("--{b}\n").into_bytes(),
            ];
            let frags: Vec<Vec<u8>> = vec![
                format!("--{b}").into_bytes(),
                format!("--{b}--").into_bytes(),
                format!("--{b}\r\n").into_bytes(),
                format!("\r\n--{b}\r\n").into_bytes(),
                format!("\r\n--{b}--\r\n").into_bytes(),
                b"\r\n".to_vec(),
                b"\r\n\r\n".to_vec(),
                b"--".to_vec(),
                b"content-disposition: form-data; name=\"manifest\"".to_vec(),
                b"x: y".to_vec(),
                b"\xff\xfe".to_vec(),
                b.clone().into_bytes(),
            ];
            let closing: Vec<Vec<u8>> = vec![
                format!("\r\n--{b}--\r\n").into_bytes(),
                format!("--{b}--\r\n").into_bytes(),
                format!("\n--{b}--\r\n").into_bytes(),
                Vec::new(),
            ];
            let middle = prop_oneof![
                Just(Vec::new()),
                vec(prop_oneof![4 => select(frags), 1 => vec(any::<u8>(), 0..16)], 0..10).prop_map(|v| v.concat())
            ];
            let body = (select(opening), middle, select(closing)).prop_map(|(o, m, c)| [o, m, c].concat());
            (Just(format!("multipart/mixed; boundary={b}")), body)
        })
        .boxed()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn multipart_render_parse_round_trips(parts in vec((select(PART_NAMES), part_body(), option::of("[ -~]{0,120}")), 1..5)) {
        let parts: Vec<multipart::Part> = parts.into_iter().map(|(n, body, sig)| multipart::Part::new(n, body).signed(sig)).collect();
        let (ct, body) = multipart::render(&parts);
        let b = multipart::boundary_of(&ct).ok_or_else(|| TestCaseError::fail(format!("no boundary in {ct:?}")))?;
        let (open, close) = (format!("--{b}\r\n"), format!("\r\n--{b}--\r\n"));
        prop_assert!(body.starts_with(open.as_bytes()));
        prop_assert!(body.ends_with(close.as_bytes()));
        let parsed = multipart::parse(&ct, &body).map_err(TestCaseError::fail)?;
        prop_assert_eq!(parsed.len(), parts.len());
        for (p, q) in parts.iter().zip(&parsed) {
            prop_assert_eq!(q.name(), Some(p.name.clone()));
            prop_assert_eq!(&q.body, &p.body);
            // Header values lose surrounding whitespace (HTTP OWS), as on both clients.
            let sig = q.headers.iter().find(|(k, _)| k == "expo-signature").map(|(_, v)| v.as_str());
            prop_assert_eq!(sig, p.signature.as_deref().map(str::trim));
        }
    }

    #[test]
    fn multipart_boundary_of_is_total(ct in content_type_string()) {
        if let Some(b) = multipart::boundary_of(&ct) {
            prop_assert!(!b.is_empty() && b.len() <= 70, "{b:?}");
            prop_assert!(b.bytes().all(|c| c.is_ascii_graphic() || c == b' '), "{b:?}");
        }
    }

    #[test]
    fn multipart_boundary_of_reads_back_bchars(b in "[A-Za-z0-9'()+_,./:=?-]{1,70}", quoted in any::<bool>(), cased in any::<bool>()) {
        let ct = match (quoted, cased) {
            (true, _) => format!("multipart/mixed; charset=x; boundary=\"{b}\""),
            (false, true) => format!("Multipart/Mixed;Boundary={b}"),
            (false, false) => format!("multipart/mixed; boundary={b}"),
        };
        prop_assert_eq!(multipart::boundary_of(&ct), Some(b));
    }

    #[test]
    fn multipart_parse_is_total_on_random_input(ct in content_type_string(), body in any_bytes(2048)) {
        let _ = multipart::parse(&ct, &body);
    }

    // Found `--b\r\n--b--\r\n` (opening and closing delimiters overlapping) panicking at a
    // slice index in multipart::parse; fixed there since.
    #[test]
    fn multipart_parse_is_total_on_boundary_shaped_input((ct, body) in boundary_shaped()) {
        let _ = multipart::parse(&ct, &body);
    }
}

// ---------------------------------------------------------------------------------------------
// 5. formdata (the single-request publish body)
// ---------------------------------------------------------------------------------------------

fn form_value() -> BoxedStrategy<Vec<u8>> {
    let tricky: &[&[u8]] = &[b"--", b"\r\n", b"\r\n\r\n", b"\r\n--", b"\r", b"\n", b"\"", b";", b"\x00", b"\xff"];
    vec(
        prop_oneof![2 => select(tricky).prop_map(<[u8]>::to_vec), 2 => vec(any::<u8>(), 0..128), 1 => "[ -~]{0,64}".prop_map(String::into_bytes)],
        0..40,
    )
    .prop_map(|v| v.concat())
    .boxed()
}

type FormField = (String, Option<String>, Option<String>, Vec<u8>, bool);

fn form_field() -> BoxedStrategy<FormField> {
    let name = "[A-Za-z0-9_./\\[\\]-]{1,30}";
    (
        name,
        option::of(name),
        option::of(
            select(&["image/png", "application/octet-stream", "text/plain; charset=utf-8"][..])
                .prop_map(str::to_string),
        ),
        form_value(),
        any::<bool>(),
    )
        .boxed()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn formdata_parses_well_formed_bodies_in_any_chunking(
        boundary in "[A-Za-z0-9'()+_,./:=?-]{1,40}",
        fields in vec(form_field(), 0..5),
        preamble in option::of("[ -~\r\n]{0,40}"),
        padding in select(&["", " ", "\t ", "  "][..]),
        epilogue in any_bytes(64),
        chunk_seed in any::<usize>(),
    ) {
        // A boundary must not occur in the content (RFC 2046 §5.1.1): lengthen it until it does not.
        let mut boundary = boundary;
        let preamble_text = format!("\r\n{}", preamble.as_deref().unwrap_or(""));
        while fields.iter().map(|f| f.3.as_slice()).chain([preamble_text.as_bytes()]).any(|v| contains(v, format!("\r\n--{boundary}").as_bytes())) {
            boundary.push('_');
        }
        let mut body = Vec::new();
        if let Some(p) = &preamble {
            body.extend_from_slice(p.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        for (name, filename, content_type, value, lower) in &fields {
            body.extend_from_slice(format!("--{boundary}{padding}\r\n").as_bytes());
            let cd = if *lower { "content-disposition" } else { "Content-Disposition" };
            body.extend_from_slice(format!("{cd}: form-data; name=\"{name}\"").as_bytes());
            if let Some(f) = filename {
                body.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            if let Some(ct) = content_type {
                body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        body.extend_from_slice(&epilogue);
        let chunk = 1 + chunk_seed % (body.len() + 1);
        let expected: Vec<formdata::Field> = fields.iter().map(|(n, f, _, v, _)| (n.clone(), f.clone(), v.clone())).collect();
        prop_assert_eq!(formdata::parse_all(&boundary, &body, chunk), Ok(expected), "chunk {}", chunk);
    }

    #[test]
    fn formdata_is_total_on_garbage(
        boundary in prop_oneof![Just(String::new()), "[A-Za-z0-9-]{1,10}".boxed(), hostile_string()],
        frags in vec(prop_oneof![
            2 => select(&["--", "\r\n", "\r\n\r\n", "Content-Disposition: form-data; name=\"a\"", "content-disposition: attachment",
                          "name=\"x;y\"; filename=\"a\\\"b\"", ":", " ", "\t", "--B", "\r\n--B", "\r\n--B--", "\r\n--B\r\n"][..]).prop_map(|s| s.as_bytes().to_vec()),
            2 => vec(any::<u8>(), 0..64),
        ], 0..40),
        chunks in vec(1usize..64, 1..16),
    ) {
        // The fragments use the literal boundary `B`; swap in the generated one.
        let body: Vec<u8> = frags.concat();
        let body = if boundary.is_empty() { body } else { replace_all(&body, b"B", boundary.as_bytes()) };
        let body = &body[..body.len().min(8 * 1024)];
        let mut p = formdata::Parser::new(&boundary);
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = chunks[i % chunks.len()].min(rest.len());
            i += 1;
            if p.feed(&rest[..n]).is_err() {
                break;
            }
            rest = &rest[n..];
        }
        let _ = p.finish();
        let _ = formdata::parse_all(&boundary, body, chunks[0]);
    }
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 6. pem
// ---------------------------------------------------------------------------------------------

const KEY_PEM: &str = include_str!("fixtures/codesigning/keys/private-key.pem");

/// The fixture key's PKCS#1 DER.
fn key_der() -> Vec<u8> {
    let b64: String = KEY_PEM.lines().filter(|l| !l.starts_with("-----")).collect();
    hash::base64_standard_decode(&b64).expect("fixture key is base64")
}

/// DER-looking bytes: tags with short, long, indefinite and oversized lengths.
fn der_ish() -> BoxedStrategy<Vec<u8>> {
    let piece = prop_oneof![
        (select(&[0x30u8, 0x02, 0x04, 0x05, 0x06][..]), 0u8..0x80).prop_map(|(t, l)| vec![t, l]),
        (select(&[0x30u8, 0x02, 0x04][..]), 0x80u8..=0x86, vec(any::<u8>(), 0..6)).prop_map(|(t, l, rest)| {
            let mut v = vec![t, l];
            v.extend(rest);
            v
        }),
        Just(vec![0x02, 0x01, 0x00]),
        Just(vec![0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00]),
        Just(vec![0xff, 0xff, 0xff, 0xff]),
        vec(any::<u8>(), 0..32),
    ];
    vec(piece, 0..10).prop_map(|v| v.concat()).boxed()
}

fn pem_der() -> BoxedStrategy<Vec<u8>> {
    let der = key_der();
    let n = der.len();
    let (d1, d2) = (der.clone(), der.clone());

    let pkcs8 = pem::private_key_pkcs8_der(KEY_PEM).expect("fixture key");
    prop_oneof![
        any_bytes(600),
        der_ish(),
        Just(der),
        Just(pkcs8),
        (0..=n).prop_map(move |k| d1[..k].to_vec()),
        (any::<usize>(), any::<u8>()).prop_map(move |(i, b)| {
            let mut d = d2.clone();
            d[i % n] = b;
            d
        }),
    ]
    .boxed()
}

fn pem_like() -> BoxedStrategy<String> {
    let label = prop_oneof![
        6 => select(&["RSA PRIVATE KEY", "PRIVATE KEY"][..]).prop_map(str::to_string),
        3 => select(&["RSA PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "EC PRIVATE KEY", "PUBLIC KEY", "CERTIFICATE", "", " PRIVATE KEY", "RSA PRIVATE KEY "][..]).prop_map(str::to_string),
        1 => "[A-Z ]{0,12}PRIVATE KEY",
        1 => any_string(),
    ];
    (
        label,
        pem_der(),
        1usize..100,
        select(&["\n", "\r\n", "\r", "\n\n"][..]),
        option::weighted(0.2, select(&["Proc-Type: 4,ENCRYPTED", "DEK-Info: AES-128-CBC,00", "", "   "][..])),
        0..6u8,
        0..8u8,
        any::<usize>(),
        option::of(hostile_string()),
    )
        .prop_map(|(label, der, width, eol, header, end_kind, corrupt, pos, junk)| {
            let mut b64 = hash::base64_standard(&der);
            if !b64.is_empty() {
                let i = pos % b64.len();
                match corrupt {
                    0 => b64.truncate(i),
                    1 => b64.insert(i, '!'),
                    2 => b64.insert(i, '='),
                    _ => {}
                }
            }
            let mut s = junk.unwrap_or_default();
            s.push_str(&format!("{eol}-----BEGIN {label}-----{eol}"));
            if let Some(h) = header {
                s.push_str(h);
                s.push_str(eol);
            }
            for line in b64.as_bytes().chunks(width) {
                s.push_str(std::str::from_utf8(line).expect("ascii"));
                s.push_str(eol);
            }
            match end_kind {
                0 => {}
                1 => s.push_str("-----END OTHER KEY-----"),
                _ => s.push_str(&format!("-----END {label}-----{eol}")),
            }
            s
        })
        .boxed()
}

fn check_pem(s: &str) -> Result<(), TestCaseError> {
    if let Ok(der) = pem::private_key_pkcs8_der(s) {
        prop_assert_eq!(der.first(), Some(&0x30));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn pem_is_total_on_strings(s in prop_oneof![any_string(), hostile_string()]) {
        check_pem(&s)?;
    }

    #[test]
    fn pem_is_total_on_pem_like_input(s in pem_like()) {
        check_pem(&s)?;
    }

    #[test]
    fn pem_is_total_on_truncated_and_edited_real_key(cut in 0..=KEY_PEM.len(), drop_line in any::<usize>(), mode in 0..4u8) {
        let lines: Vec<&str> = KEY_PEM.lines().collect();
        let s = match mode {
            0 => KEY_PEM[..cut].to_string(),
            // Truncated body, END line restored.
            1 => format!("{}\n-----END RSA PRIVATE KEY-----\n", &KEY_PEM[..cut]),
            // One body line missing.
            2 => {
                let skip = 1 + drop_line % (lines.len() - 2);
                lines.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, l)| *l).collect::<Vec<_>>().join("\n")
            }
            _ => KEY_PEM[cut..].to_string(),
        };
        check_pem(&s)?;
    }

    #[test]
    fn pem_pkcs8_rewrapped_at_any_width_passes_through(width in 1usize..120, crlf in any::<bool>(), indent in "[ \t]{0,3}") {
        let der = pem::private_key_pkcs8_der(KEY_PEM).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let eol = if crlf { "\r\n" } else { "\n" };
        let b64 = hash::base64_standard(&der);
        let mut s = format!("-----BEGIN PRIVATE KEY-----{eol}");
        for line in b64.as_bytes().chunks(width) {
            s.push_str(&format!("{indent}{}{eol}", std::str::from_utf8(line).expect("ascii")));
        }
        s.push_str(&format!("-----END PRIVATE KEY-----{eol}"));
        prop_assert_eq!(pem::private_key_pkcs8_der(&s), Ok(der));
    }
}

// ---------------------------------------------------------------------------------------------
// 7. time
// ---------------------------------------------------------------------------------------------

const MAX_MS: u64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

fn date_shaped() -> BoxedStrategy<String> {
    (
        prop_oneof![
            (0..=MAX_MS).prop_map(time::format_millis),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z".boxed(),
        ],
        option::of((0usize..24, prop_oneof![3 => prop::char::range('0', '9'), 1 => any::<char>()])),
    )
        .prop_map(|(s, edit)| match edit {
            Some((i, c)) => s.chars().enumerate().map(|(j, d)| if i == j { c } else { d }).collect(),
            None => s,
        })
        .boxed()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn time_parse_is_total_and_only_accepts_canonical(s in prop_oneof![date_shaped(), any_string(), "[0-9TZ:.é-]{24}".boxed()]) {
        if let Some(ms) = time::parse_millis(&s) {
            prop_assert!(ms <= MAX_MS);
            prop_assert_eq!(time::format_millis(ms), s);
        }
    }

    #[test]
    fn time_format_parse_round_trips(ms in 0..=MAX_MS) {
        let s = time::format_millis(ms);
        prop_assert_eq!(s.len(), 24);
        prop_assert_eq!(time::parse_millis(&s), Some(ms));
    }
}

// ---------------------------------------------------------------------------------------------
// 8. manifest
// ---------------------------------------------------------------------------------------------

const BASE: &str = "https://ota.example.com/api/assets/demo-app/ios/1.0.3";
const EXTS: &[&str] = &["png", "ttf", "jpg", "JPG", "bin", "woff2", "svg", "json"];

/// A manifest as the publisher builds it, with distinct files (duplicates are
/// `manifest_build_output_passes_validation`'s job).
fn manifest_body() -> BoxedStrategy<String> {
    (
        any::<[u8; 16]>(),
        0..=MAX_MS,
        any_bytes(64),
        vec((any_bytes(32), select(EXTS)), 0..5),
        any::<bool>(),
    )
        .prop_map(|(idb, ms, launch, assets, with_config)| {
            let mut bundle = b"bundle:".to_vec();
            bundle.extend(launch);
            manifest::build(ManifestInput {
                id: id::uuid_v4(idb),
                created_at_ms: ms,
                runtime_version: "1.0.3",
                launch_asset: FileEntry { digests: Digests::of(&bundle), ext: "hbc".into() },
                assets: assets
                    .into_iter()
                    .map(|(b, ext)| FileEntry { digests: Digests::of(&[b"asset:".as_slice(), &b].concat()), ext: ext.into() })
                    .collect(),
                metadata: manifest::channel_metadata("production"),
                expo_client: with_config.then(|| {
                    json!({ "slug": "demo-app", "version": "1.0.3", "ios": { "buildNumber": "7" }, "extra": [1, "two", { "three": 3.5, "é": "\u{1F600}" }] })
                        .as_object()
                        .expect("object")
                        .clone()
                }),
                asset_base_url: BASE,
            })
            .render()
        })
        .boxed()
}

fn check_published(body: &str, max: usize) -> Result<(), TestCaseError> {
    match manifest::validate_published(body, "1.0.3", "production", BASE, max) {
        Ok((m, files)) => {
            prop_assert_eq!(m.render(), body);
            prop_assert_eq!(files.len(), m.assets.len() + 1);
            prop_assert!(files.len() <= max);
            prop_assert!(files[0].is_launch_asset && files[1..].iter().all(|f| !f.is_launch_asset));
            prop_assert!(id::is_canonical_uuid(&m.id));
            prop_assert!(time::parse_millis(&m.created_at).is_some());
            prop_assert_eq!(m.metadata.get("channel").map(String::as_str), Some("production"));
        }
        Err(e) => prop_assert!([413, 422].contains(&e.status), "{e}"),
    }
    Ok(())
}

fn check_directive(body: &str) -> Result<(), TestCaseError> {
    match manifest::validate_rollback_directive(body) {
        Ok(ms) => prop_assert_eq!(Directive::roll_back_to_embedded(ms).render(), body),
        Err(e) => prop_assert_eq!(e.status, 422, "{}", e),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn manifest_validation_is_total_on_strings(
        body in prop_oneof![any_string(), hostile_string(), sfv_string()],
        rv in prop_oneof![Just("1.0.3".to_string()), any_string()],
        channel in prop_oneof![Just("production".to_string()), any_string()],
        base in prop_oneof![Just(BASE.to_string()), any_string()],
        max in 0usize..300,
    ) {
        if let Ok((m, _)) = manifest::validate_published(&body, &rv, &channel, &base, max) {
            prop_assert_eq!(m.render(), body.as_str());
        }
        check_directive(&body)?;
    }

    #[test]
    fn manifest_built_is_accepted(body in manifest_body()) {
        let r = manifest::validate_published(&body, "1.0.3", "production", BASE, 100);
        prop_assert!(r.is_ok(), "{:?}", r.err());
    }

    /// Whatever files an update has, duplicates included (also of the launch asset: this found
    /// `build` listing a key twice, which `validate_published` refuses; fixed there since).
    #[test]
    fn manifest_build_output_passes_validation(
        launch in vec(0u8..2, 0..2),
        assets in vec((vec(0u8..2, 0..2), select(EXTS)), 0..4),
    ) {
        let distinct: std::collections::BTreeSet<&[u8]> = assets.iter().map(|(b, _)| b.as_slice()).chain([launch.as_slice()]).collect();
        let m = manifest::build(ManifestInput {
            id: id::uuid_v4([7; 16]),
            created_at_ms: 1_714_566_896_789,
            runtime_version: "1.0.3",
            launch_asset: FileEntry { digests: Digests::of(&launch), ext: "hbc".into() },
            assets: assets.iter().map(|(b, ext)| FileEntry { digests: Digests::of(b), ext: ext.to_string() }).collect(),
            metadata: manifest::channel_metadata("production"),
            expo_client: None,
            asset_base_url: BASE,
        });
        let (parsed, files) = manifest::validate_published(&m.render(), "1.0.3", "production", BASE, 100).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed, m);
        // Every distinct file once, the launch asset first.
        prop_assert_eq!(files.len(), distinct.len());
        prop_assert!(files[0].is_launch_asset);
    }

    #[test]
    fn manifest_mutations_are_rejected_or_canonical(body in manifest_body(), muts in mutations(), max in 1usize..10) {
        let mutated = String::from_utf8_lossy(&mutate(body.as_bytes(), &muts)).into_owned();
        check_published(&mutated, max)?;
    }

    #[test]
    fn rollback_directive_mutations_are_rejected_or_canonical(ms in 0..=MAX_MS, muts in mutations()) {
        let body = Directive::roll_back_to_embedded(ms).render();
        check_directive(&body)?;
        let mutated = String::from_utf8_lossy(&mutate(body.as_bytes(), &muts)).into_owned();
        check_directive(&mutated)?;
    }
}

// ---------------------------------------------------------------------------------------------
// 9. check::parse_request
// ---------------------------------------------------------------------------------------------

const CHECK_HEADERS: &[&str] = &[
    "expo-platform",
    "expo-runtime-version",
    "expo-protocol-version",
    "expo-current-update-id",
    "expo-embedded-update-id",
    "expo-channel-name",
    "expo-expect-signature",
    "expo-fatal-error",
    "expo-recent-failed-update-ids",
];

fn header_value() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(&[
            "ios", "android", "web", "1.0.3", "0", "1", "2", " 1 ", "4294967296", "-1", "+1", "production", "pr-1.preview", " staging ",
            "../x", "sig", "sig, keyid=\"main\"", "sig, keyid=\"main\", alg=\"rsa-v1_5-sha256\"", "sig, alg=\"rsa-pss\"", "sig, keyid=5",
        ][..]).prop_map(str::to_string),
        2 => uuid_like(),
        1 => sfv_string(),
        1 => hostile_string(),
        1 => any_string(),
    ]
    .boxed()
}

/// Per header: absent, a value of the right shape, or anything at all.
fn check_headers() -> BoxedStrategy<Vec<Option<String>>> {
    let shaped: Vec<BoxedStrategy<String>> = vec![
        select(&["ios", "android"][..]).prop_map(str::to_string).boxed(),
        valid_rv(),
        prop_oneof![select(&["0", "1", " 1 "][..]).prop_map(str::to_string), "[0-9]{1,11}".boxed()].boxed(),
        uuid_like(),
        uuid_like(),
        "[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}".boxed(),
        prop_oneof![
            Just("sig".to_string()),
            "[ -!#-\\[\\]-~]{1,20}".prop_map(|k| format!("sig, keyid=\"{k}\", alg=\"rsa-v1_5-sha256\""))
        ]
        .boxed(),
        any_string(),
        any_string(),
    ];
    shaped
        .into_iter()
        .map(|good| option::weighted(0.7, prop_oneof![6 => good, 1 => header_value()]).boxed())
        .collect::<Vec<_>>()
        .boxed()
}

fn check_query() -> BoxedStrategy<String> {
    prop_oneof![
        3 => (slot(valid_slug()), option::of(platform_slot()), option::of(slot(valid_rv())), any::<bool>()).prop_map(|(s, p, rv, dash)| {
            let mut q = format!("slug={s}");
            if let Some(p) = p {
                q.push_str(&format!("&platform={p}"));
            }
            if let Some(rv) = rv {
                q.push_str(&format!("&{}={rv}", if dash { "runtime-version" } else { "runtimeVersion" }));
            }
            q
        }),
        1 => hostile_string(),
        1 => any_string(),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn check_parse_request_is_total_and_errors_are_400(query in check_query(), values in check_headers()) {
        let headers: HashMap<&str, String> = CHECK_HEADERS.iter().zip(values).filter_map(|(k, v)| v.map(|v| (*k, v))).collect();
        let header = |name: &str| headers.get(name).cloned();
        match check::parse_request(&query, &header) {
            Ok(r) => {
                check_target(&r.target)?;
                prop_assert!(r.protocol_version <= 1);
                for id in [&r.current_update_id, &r.embedded_update_id].into_iter().flatten() {
                    prop_assert!(id::is_canonical_uuid(id), "{id:?}");
                }
                prop_assert!(validate::channel(&r.channel).is_ok(), "{:?}", r.channel);
                if let Some(e) = &r.expect_signature {
                    prop_assert!(!e.keyid.is_empty() && e.keyid.len() <= 128);
                }
                prop_assert!(r.fatal_error.as_ref().is_none_or(|e| e.chars().count() <= 1024));
                prop_assert!(r.recent_failed_update_ids.as_ref().is_none_or(|e| e.chars().count() <= 2048));
            }
            Err(e) => prop_assert_eq!(e.status, 400, "{}", e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 10. id and hash
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn normalize_uuid_is_total(s in prop_oneof![uuid_like(), any_string(), hostile_string(), "[0-9a-fA-FgG-]{36}".boxed()]) {
        if let Some(u) = id::normalize_uuid(&s) {
            prop_assert!(id::is_canonical_uuid(&u), "{u:?}");
            prop_assert_eq!(u, s.trim().to_ascii_lowercase());
        }
    }

    #[test]
    fn normalize_uuid_accepts_any_casing_and_padding(b in any::<[u8; 16]>(), mask in any::<u64>(), pad in "[ \t]{0,3}") {
        let u = id::uuid_v4(b);
        let mixed: String = u.chars().enumerate().map(|(i, c)| if mask >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c }).collect();
        prop_assert_eq!(id::normalize_uuid(&format!("{pad}{mixed}{pad}")), Some(u));
    }

    #[test]
    fn parse_sha256_base64url_is_total(s in prop_oneof![any_string(), "[A-Za-z0-9_+/=-]{40,46}".boxed()]) {
        if let Some(arr) = hash::parse_sha256_base64url(&s) {
            prop_assert_eq!(Digests { sha256: arr, md5: [0; 16], size: 0 }.sha256_base64url(), s);
        }
    }

    #[test]
    fn sha256_base64url_round_trips(arr in any::<[u8; 32]>()) {
        let s = Digests { sha256: arr, md5: [0; 16], size: 0 }.sha256_base64url();
        prop_assert_eq!(hash::parse_sha256_base64url(&s), Some(arr));
    }

    #[test]
    fn parse_hex_is_total(s in prop_oneof![any_string(), "[0-9a-fA-Fg]{62,66}".boxed(), sha_hex()]) {
        if let Some(arr) = hash::parse_hex::<32>(&s) {
            prop_assert_eq!(hash::hex(&arr), s.as_str());
        }
        let _ = hash::parse_hex::<16>(&s);
    }

    #[test]
    fn hex_round_trips(arr in any::<[u8; 32]>()) {
        let h = hash::hex(&arr);
        prop_assert_eq!(hash::parse_hex::<32>(&h), Some(arr));
        if h.bytes().any(|c| c.is_ascii_alphabetic()) {
            prop_assert_eq!(hash::parse_hex::<32>(&h.to_uppercase()), None);
        }
    }
}
