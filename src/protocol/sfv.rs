//! The slice of Structured Field Values (RFC 8941) the protocol uses: dictionaries such as
//! `sig, keyid="main", alg="rsa-v1_5-sha256"` (expo-expect-signature, expo-signature) and
//! `channel="production"` (expo-manifest-filters). Parsing and serialising are the `sfv`
//! crate's; this module only maps its items to [`Item`], refuses what the protocol never sends
//! (inner lists; RFC 9651 dates and display strings, which RFC 8941 clients cannot read) and
//! caps the input at [`MAX_HEADER_LEN`]. Parameters are parsed and ignored, as the clients do.
//!
//! Every step is linear in the input: the `sfv` parser reads each byte a bounded number of
//! times, and duplicate keys are resolved through a hash index rather than by rescanning the
//! members already seen (which made a header of many distinct keys quadratic).

use sfv::visitor::{DictionaryVisitor, EntryVisitor, Ignored, InnerListVisitor, ItemVisitor, Never};
use sfv::{BareItemFromInput, DictSerializer, ItemSerializer, KeyRef, Parser, StringRef, Version};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    String(String),
    Token(String),
    Integer(i64),
    Decimal(f64),
    Boolean(bool),
    Bytes(Vec<u8>),
}

impl Item {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Item::String(s) | Item::Token(s) => Some(s),
            _ => None,
        }
    }
}

/// Longest header value parsed; longer ones are refused before any parsing.
pub const MAX_HEADER_LEN: usize = 8 * 1024;

/// Parses an SFV dictionary. Inner lists are rejected (the protocol never uses them). A later
/// duplicate key overwrites the earlier member's value in place (RFC 8941 §4.2.2).
pub fn parse_dictionary(input: &str) -> Result<Vec<(String, Item)>, String> {
    if input.len() > MAX_HEADER_LEN {
        return Err(format!("header longer than {MAX_HEADER_LEN} bytes; send a shorter value"));
    }
    Parser::new(input)
        .with_version(Version::Rfc8941)
        .parse_dictionary_with_visitor(Members::default())
        .map_err(|e| e.to_string())
}

/// Collects members in order; `index` maps a key to its position so a duplicate costs O(1).
#[derive(Default)]
struct Members {
    out: Vec<(String, Item)>,
    index: HashMap<String, usize>,
}

impl<'de> DictionaryVisitor<'de> for Members {
    type Out = Vec<(String, Item)>;
    type Error = Refused;

    fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>, Refused> {
        Ok(Member { members: self, key: key.as_str() })
    }

    fn finish(self) -> Result<Self::Out, Refused> {
        Ok(self.out)
    }
}

struct Member<'a, 'de> {
    members: &'a mut Members,
    key: &'de str,
}

impl<'de> EntryVisitor<'de> for Member<'_, 'de> {
    type Error = Refused;

    fn item(self) -> Result<impl ItemVisitor<'de>, Refused> {
        Ok(move |bare: BareItemFromInput<'de>| {
            let item = item(bare)?;
            let Members { out, index } = self.members;
            match index.get(self.key) {
                Some(&i) => out[i].1 = item,
                None => {
                    index.insert(self.key.to_string(), out.len());
                    out.push((self.key.to_string(), item));
                }
            }
            // Parameters are still checked syntactically by the parser, then dropped.
            Ok::<_, Refused>(Ignored)
        })
    }

    fn inner_list(self) -> Result<impl InnerListVisitor<'de>, Refused> {
        Err::<Never, _>(Refused("inner lists are not supported"))
    }
}

fn item(bare: BareItemFromInput<'_>) -> Result<Item, Refused> {
    Ok(match bare {
        BareItemFromInput::String(s) => Item::String(s.as_str().to_string()),
        BareItemFromInput::Token(t) => Item::Token(t.as_str().to_string()),
        BareItemFromInput::Integer(i) => Item::Integer(i.into()),
        BareItemFromInput::Decimal(d) => Item::Decimal(d.into()),
        BareItemFromInput::Boolean(b) => Item::Boolean(b),
        BareItemFromInput::ByteSequence(b) => Item::Bytes(b),
        // Unreachable under Version::Rfc8941, which refuses both while parsing.
        BareItemFromInput::Date(_) | BareItemFromInput::DisplayString(_) => {
            return Err(Refused("dates and display strings are not supported"))
        }
    })
}

/// Why a syntactically valid dictionary is still refused.
#[derive(Debug)]
struct Refused(&'static str);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Refused {}

/// Serialises a string item: `"` and `\` escaped; only printable ASCII is allowed.
pub fn string_item(s: &str) -> Result<String, String> {
    let s = StringRef::from_str(s).map_err(|_| "sf-string must be printable ASCII".to_string())?;
    Ok(ItemSerializer::new().bare_item(s).finish())
}

/// What `expo-expect-signature` asks for. `keyid` defaults to `root`, as on the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectSignature {
    pub keyid: String,
}

pub fn parse_expect_signature(value: &str) -> Result<ExpectSignature, String> {
    let dict = parse_dictionary(value)?;
    let get = |k: &str| dict.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    if let Some(alg) = get("alg") {
        if alg.as_str() != Some("rsa-v1_5-sha256") {
            return Err("only alg=\"rsa-v1_5-sha256\" is supported".into());
        }
    }
    let keyid = match get("keyid") {
        None => "root".to_string(),
        Some(Item::String(k)) if !k.is_empty() && k.len() <= 128 => k.clone(),
        Some(_) => return Err("keyid must be a non-empty string of at most 128 characters".into()),
    };
    Ok(ExpectSignature { keyid })
}

/// `expo-signature` value: every member a quoted string, because iOS casts the parsed
/// dictionary to `[String: String]`. A value that is not printable ASCII (never the case for
/// base64 and validated key ids) is sent as `""` rather than as an invalid header.
pub fn signature_header(sig_b64: &str, keyid: &str) -> String {
    fn s(v: &str) -> &StringRef {
        StringRef::from_str(v).unwrap_or_default()
    }
    let mut dict = DictSerializer::new();
    for (key, value) in [("sig", s(sig_b64)), ("keyid", s(keyid)), ("alg", s("rsa-v1_5-sha256"))] {
        let _ = dict.bare_item(KeyRef::constant(key), value);
    }
    dict.finish().expect("three members")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_clients_send() {
        let d = parse_dictionary(r#"sig, keyid="main", alg="rsa-v1_5-sha256""#).unwrap();
        assert_eq!(d[0], ("sig".into(), Item::Boolean(true)));
        assert_eq!(d[1], ("keyid".into(), Item::String("main".into())));
        assert_eq!(parse_expect_signature(r#"sig, keyid="main", alg="rsa-v1_5-sha256""#).unwrap().keyid, "main");
        assert_eq!(parse_expect_signature("sig").unwrap().keyid, "root");
        assert!(parse_expect_signature(r#"sig, alg="rsa-pss""#).is_err());
        assert!(parse_expect_signature("sig, keyid=5").is_err());
    }

    #[test]
    fn item_kinds_and_params() {
        let d = parse_dictionary(r#"a=1, b=-2.5, c=?0, d=tok/en, e=:aGk=:, f="x\"y\\z";p=1;q"#).unwrap();
        assert_eq!(d.len(), 6);
        assert_eq!(d[0].1, Item::Integer(1));
        assert_eq!(d[1].1, Item::Decimal(-2.5));
        assert_eq!(d[2].1, Item::Boolean(false));
        assert_eq!(d[3].1, Item::Token("tok/en".into()));
        assert_eq!(d[4].1, Item::Bytes(b"hi".to_vec()));
        assert_eq!(d[5].1, Item::String("x\"y\\z".into()));
        assert_eq!(parse_dictionary("a=1, a=2").unwrap(), vec![("a".into(), Item::Integer(2))]);
        assert_eq!(parse_dictionary("").unwrap(), vec![]);
    }

    #[test]
    fn duplicate_key_overwrites_in_place() {
        let d = parse_dictionary("a=1, b=2, a=3").unwrap();
        assert_eq!(d, vec![("a".into(), Item::Integer(3)), ("b".into(), Item::Integer(2))]);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "A=1",
            "a=",
            "a=\"unterminated",
            "a=1,",
            "a=1 b=2",
            "a=(1 2)",
            "a=\"\x01\"",
            "a=1.2345",
            "a=?2",
            "a=:!!:",
            "a=1234567890123456",
            // RFC 9651 additions an RFC 8941 client cannot read.
            "a=@1700000000",
            "a=%\"caf%c3%a9\"",
        ] {
            assert!(parse_dictionary(bad).is_err(), "{bad:?}");
        }
        assert!(parse_dictionary(&"a=1, ".repeat(3000)).is_err());
    }

    /// Distinct keys `k0, k1, …` filling `len` bytes exactly (padded with spaces before the
    /// last member, which the parser skips as OWS).
    fn distinct_keys(len: usize) -> String {
        let mut s = String::new();
        let mut i = 0;
        loop {
            let next = format!("k{i}");
            if s.len() + 2 + next.len() > len {
                break;
            }
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&next);
            i += 1;
        }
        let pad = len - s.len();
        s.insert_str(s.rfind(' ').unwrap_or(0), &" ".repeat(pad));
        s
    }

    #[test]
    fn maximal_adversarial_headers_parse_in_one_pass() {
        // ~1,400 distinct keys: every member is kept, in order, without rescanning earlier ones
        // (the hand-written parser's retain-per-member made exactly this input quadratic).
        let keys = distinct_keys(MAX_HEADER_LEN);
        assert_eq!(keys.len(), MAX_HEADER_LEN);
        let d = parse_dictionary(&keys).unwrap();
        assert!(d.len() > 1000, "{}", d.len());
        assert!(d.iter().enumerate().all(|(i, (k, v))| *k == format!("k{i}") && *v == Item::Boolean(true)));

        // One key repeated ~2,700 times collapses to one member holding the last value.
        let mut dup = "a=1,".repeat(MAX_HEADER_LEN / 4 - 1);
        dup.push_str("a=2");
        assert!(dup.len() <= MAX_HEADER_LEN);
        assert_eq!(parse_dictionary(&dup).unwrap(), vec![("a".into(), Item::Integer(2))]);

        // Thousands of parameters on one member are read once and dropped.
        let mut params = "sig".to_string();
        while params.len() + 4 <= MAX_HEADER_LEN {
            params.push_str(";p=1");
        }
        assert_eq!(parse_dictionary(&params).unwrap(), vec![("sig".into(), Item::Boolean(true))]);

        // A string of escapes up to the cap, then the same one byte too long.
        let body = "\\\"".repeat((MAX_HEADER_LEN - 4) / 2);
        let s = format!("a=\"{body}\"");
        assert!(s.len() <= MAX_HEADER_LEN);
        assert_eq!(parse_dictionary(&s).unwrap()[0].1, Item::String("\"".repeat(body.len() / 2)));
        // An unterminated one fails at the end, after one pass.
        assert!(parse_dictionary(&s[..s.len() - 1]).is_err());

        // One byte over the cap is refused before parsing, whatever it holds.
        let over = distinct_keys(MAX_HEADER_LEN + 1);
        assert!(parse_dictionary(&over).unwrap_err().contains("8192"));
        assert!(parse_expect_signature(&format!("sig, keyid=\"main\"{}", " ".repeat(MAX_HEADER_LEN))).is_err());
    }

    #[test]
    fn signature_header_round_trips() {
        let h = signature_header("ab+/==", "main");
        assert_eq!(h, r#"sig="ab+/==", keyid="main", alg="rsa-v1_5-sha256""#);
        let d = parse_dictionary(&h).unwrap();
        assert!(d.iter().all(|(_, v)| matches!(v, Item::String(_))), "iOS needs every member to be a string");
        assert_eq!(string_item("a\"b").unwrap(), r#""a\"b""#);
        assert_eq!(string_item(r"a\b").unwrap(), r#""a\\b""#);
        assert!(string_item("é").is_err());
        assert_eq!(signature_header("ab", "é"), r#"sig="ab", keyid="", alg="rsa-v1_5-sha256""#);
    }
}
