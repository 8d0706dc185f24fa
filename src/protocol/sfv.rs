//! The slice of Structured Field Values (RFC 8941) the protocol uses: dictionaries such as
//! `sig, keyid="main", alg="rsa-v1_5-sha256"` (expo-expect-signature, expo-signature) and
//! `channel="production"` (expo-manifest-filters). Parameters are parsed and ignored, as the
//! clients do.

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

pub const MAX_HEADER_LEN: usize = 8 * 1024;

/// Parses an SFV dictionary. Inner lists are rejected (the protocol never uses them).
pub fn parse_dictionary(input: &str) -> Result<Vec<(String, Item)>, String> {
    if input.len() > MAX_HEADER_LEN {
        return Err("header too long".into());
    }
    let mut p = P { s: input.as_bytes(), i: 0 };
    let mut out: Vec<(String, Item)> = Vec::new();
    p.skip_sp();
    if p.done() {
        return Ok(out);
    }
    loop {
        let key = p.key()?;
        let value = if p.peek() == Some(b'=') {
            p.i += 1;
            p.bare_item()?
        } else {
            Item::Boolean(true)
        };
        p.params()?;
        // A later duplicate overrides an earlier one (RFC 8941 §4.2.2).
        out.retain(|(k, _)| *k != key);
        out.push((key, value));
        p.skip_ows();
        if p.done() {
            return Ok(out);
        }
        if p.next() != Some(b',') {
            return Err("expected ',' between dictionary members".into());
        }
        p.skip_ows();
        if p.done() {
            return Err("trailing ',' in dictionary".into());
        }
    }
}

/// Serialises a string item: `"` and `\` escaped; only printable ASCII is allowed.
pub fn string_item(s: &str) -> Result<String, String> {
    if !s.bytes().all(|c| (0x20..0x7f).contains(&c)) {
        return Err("sf-string must be printable ASCII".into());
    }
    Ok(format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += 1;
        c
    }
    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }
    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn key(&mut self) -> Result<String, String> {
        let start = self.i;
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => {}
            _ => return Err("dictionary key must start with a lowercase letter or '*'".into()),
        }
        while matches!(self.peek(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c)) {
            self.i += 1;
        }
        Ok(String::from_utf8(self.s[start..self.i].to_vec()).expect("ascii"))
    }
    fn params(&mut self) -> Result<(), String> {
        while self.peek() == Some(b';') {
            self.i += 1;
            self.skip_sp();
            self.key()?;
            if self.peek() == Some(b'=') {
                self.i += 1;
                self.bare_item()?;
            }
        }
        Ok(())
    }
    fn bare_item(&mut self) -> Result<Item, String> {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'?') => {
                self.i += 1;
                match self.next() {
                    Some(b'1') => Ok(Item::Boolean(true)),
                    Some(b'0') => Ok(Item::Boolean(false)),
                    _ => Err("invalid boolean".into()),
                }
            }
            Some(b':') => {
                self.i += 1;
                let start = self.i;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || b"+/=".contains(&c)) {
                    self.i += 1;
                }
                let b64 = std::str::from_utf8(&self.s[start..self.i]).expect("ascii");
                if self.next() != Some(b':') {
                    return Err("unterminated byte sequence".into());
                }
                crate::protocol::hash::base64_standard_decode(b64)
                    .map(Item::Bytes)
                    .ok_or_else(|| "invalid byte sequence".into())
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => {
                let start = self.i;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c)) {
                    self.i += 1;
                }
                Ok(Item::Token(String::from_utf8(self.s[start..self.i].to_vec()).expect("ascii")))
            }
            Some(b'(') => Err("inner lists are not supported".into()),
            _ => Err("invalid item".into()),
        }
    }
    fn string(&mut self) -> Result<Item, String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err("unterminated string".into()),
                Some(b'"') => return Ok(Item::String(out)),
                Some(b'\\') => match self.next() {
                    Some(c @ (b'"' | b'\\')) => out.push(c as char),
                    _ => return Err("invalid escape in string".into()),
                },
                Some(c) if (0x20..0x7f).contains(&c) => out.push(c as char),
                Some(_) => return Err("invalid character in string".into()),
            }
        }
    }
    fn number(&mut self) -> Result<Item, String> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let digits = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9' | b'.')) {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).expect("ascii");
        let body = &self.s[digits..self.i];
        if body.is_empty() || !body[0].is_ascii_digit() {
            return Err("invalid number".into());
        }
        if text.contains('.') {
            let (int, frac) = text.trim_start_matches('-').split_once('.').expect("has dot");
            if int.len() > 12 || frac.is_empty() || frac.len() > 3 || frac.contains('.') {
                return Err("invalid decimal".into());
            }
            text.parse().map(Item::Decimal).map_err(|_| "invalid decimal".into())
        } else {
            if body.len() > 15 {
                return Err("integer too long".into());
            }
            text.parse().map(Item::Integer).map_err(|_| "invalid integer".into())
        }
    }
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
        Some(_) => return Err("keyid must be a non-empty string".into()),
    };
    Ok(ExpectSignature { keyid })
}

/// `expo-signature` value: every member a quoted string, because iOS casts the parsed
/// dictionary to `[String: String]`.
pub fn signature_header(sig_b64: &str, keyid: &str) -> String {
    let q = |s: &str| string_item(s).unwrap_or_else(|_| "\"\"".into());
    format!("sig={}, keyid={}, alg=\"rsa-v1_5-sha256\"", q(sig_b64), q(keyid))
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
        ] {
            assert!(parse_dictionary(bad).is_err(), "{bad:?}");
        }
        assert!(parse_dictionary(&"a=1, ".repeat(3000)).is_err());
    }

    #[test]
    fn signature_header_round_trips() {
        let h = signature_header("ab+/==", "main");
        assert_eq!(h, r#"sig="ab+/==", keyid="main", alg="rsa-v1_5-sha256""#);
        let d = parse_dictionary(&h).unwrap();
        assert!(d.iter().all(|(_, v)| matches!(v, Item::String(_))), "iOS needs every member to be a string");
        assert_eq!(string_item("a\"b").unwrap(), r#""a\"b""#);
        assert!(string_item("é").is_err());
    }
}
