//! `multipart/mixed` exactly as both clients parse it (§3 of the protocol notes): the body starts
//! with `--B\r\n`, CRLF everywhere, part bodies are not followed by an extra CRLF (it would be
//! signed), and the body ends `\r\n--B--\r\n`. The parser is strict in the same way and is used by
//! tests and by the CLI to check what clients will receive.

use crate::protocol::hash;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// `manifest`, `directive`, `extensions` or `certificate_chain`.
    pub name: String,
    pub body: Vec<u8>,
    /// Value of the lowercase `expo-signature` part header, when signed.
    pub signature: Option<String>,
}

impl Part {
    pub fn new(name: &str, body: impl Into<Vec<u8>>) -> Self {
        Self { name: name.into(), body: body.into(), signature: None }
    }
    pub fn signed(mut self, signature: Option<String>) -> Self {
        self.signature = signature;
        self
    }
}

/// Renders parts; returns `(content-type header value, body)`. The boundary is derived from the
/// parts' digest, so the same parts always give the same bytes and a body cannot contain it.
pub fn render(parts: &[Part]) -> (String, Vec<u8>) {
    assert!(!parts.is_empty(), "a parts-less multipart body is an error on both clients");
    let mut h = hash::FileHasher::new();
    for p in parts {
        h.update(p.name.as_bytes());
        h.update(&p.body);
        h.update(p.signature.as_deref().unwrap_or("").as_bytes());
    }
    let boundary = format!("ota-{}", &h.finish().sha256_hex()[..32]);
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.body.len() + 160).sum());
    for p in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(b"content-type: application/json; charset=utf-8\r\n");
        out.extend_from_slice(format!("content-disposition: form-data; name=\"{}\"\r\n", p.name).as_bytes());
        if let Some(sig) = &p.signature {
            out.extend_from_slice(format!("expo-signature: {sig}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&p.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/mixed; boundary={boundary}"), out)
}

/// Extracts the `boundary` parameter of a multipart content type (token or quoted string).
pub fn boundary_of(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    for p in params.split(';') {
        let (k, v) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("boundary") {
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            let ok = !v.is_empty() && v.len() <= 70 && v.bytes().all(|c| c.is_ascii_graphic() || c == b' ');
            return ok.then(|| v.to_string());
        }
    }
    None
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedPart {
    /// Header names as sent (the iOS client looks `expo-signature` up case-sensitively).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ParsedPart {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// The `name` parameter of `content-disposition`, read the way Android does (needs a `;`).
    pub fn name(&self) -> Option<String> {
        let cd = self.header("content-disposition")?;
        let (_, params) = cd.split_once(';')?;
        params.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
        })
    }
}

/// Parses a multipart/mixed body with the intersection of the Android and iOS rules; any
/// deviation (LF-only lines, missing final CRLF, preamble, no parts) is an error.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Vec<ParsedPart>, String> {
    let b = boundary_of(content_type).ok_or("content-type has no multipart boundary")?;
    let first = format!("--{b}\r\n");
    if !body.starts_with(first.as_bytes()) {
        return Err("body must start with --boundary CRLF".into());
    }
    let close = format!("\r\n--{b}--\r\n");
    if !body.ends_with(close.as_bytes()) {
        return Err("body must end with CRLF --boundary-- CRLF".into());
    }
    if body.len() < first.len() + close.len() {
        // The opening and closing delimiters overlap: a body without parts.
        return Err("multipart body has no parts".into());
    }
    let inner = &body[first.len()..body.len() - close.len()];
    let sep = format!("\r\n--{b}\r\n");
    let mut parts = Vec::new();
    for raw in split(inner, sep.as_bytes()) {
        let end = find(raw, b"\r\n\r\n").ok_or("part has no CRLF CRLF header terminator")?;
        let mut headers = Vec::new();
        for line in split(&raw[..end], b"\r\n") {
            let line = std::str::from_utf8(line).map_err(|_| "part header is not UTF-8")?;
            if line.contains('\n') || line.contains('\r') {
                return Err("part header lines must end with CRLF".into());
            }
            let (k, v) = line.split_once(':').ok_or("part header line without ':'")?;
            headers.push((k.to_string(), v.trim().to_string()));
        }
        parts.push(ParsedPart { headers, body: raw[end + 4..].to_vec() });
    }
    Ok(parts)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn split<'a>(mut hay: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some(i) = find(hay, sep) {
        out.push(&hay[..i]);
        hay = &hay[i + sep.len()..];
    }
    out.push(hay);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_exact_layout() {
        let (ct, body) = render(&[Part::new("manifest", "{\"id\":\"x\"}"), Part::new("extensions", "{}")]);
        let b = boundary_of(&ct).unwrap();
        assert!(ct.starts_with("multipart/mixed; boundary=ota-"));
        let expected = format!(
            "--{b}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-disposition: form-data; name=\"manifest\"\r\n\r\n{{\"id\":\"x\"}}\r\n\
             --{b}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-disposition: form-data; name=\"extensions\"\r\n\r\n{{}}\r\n--{b}--\r\n"
        );
        assert_eq!(String::from_utf8(body).unwrap(), expected);
    }

    #[test]
    fn signature_header_is_lowercase_and_body_exact() {
        let sig = r#"sig="AAAA", keyid="main", alg="rsa-v1_5-sha256""#;
        let (ct, body) = render(&[Part::new("directive", "{\"type\":\"noUpdateAvailable\"}").signed(Some(sig.into()))]);
        let s = String::from_utf8(body.clone()).unwrap();
        assert!(s.contains(&format!("\r\nexpo-signature: {sig}\r\n\r\n")));
        let parts = parse(&ct, &body).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].name().as_deref(), Some("directive"));
        assert_eq!(parts[0].body, b"{\"type\":\"noUpdateAvailable\"}");
        assert_eq!(parts[0].headers.iter().find(|(k, _)| k == "expo-signature").unwrap().1, sig);
    }

    #[test]
    fn deterministic_and_boundary_not_in_body() {
        let parts = [Part::new("manifest", "a"), Part::new("extensions", "{}")];
        let (ct1, b1) = render(&parts);
        let (ct2, b2) = render(&parts);
        assert_eq!((ct1.clone(), b1), (ct2, b2));
        let (ct3, _) = render(&[Part::new("manifest", "b")]);
        assert_ne!(ct1, ct3);
    }

    #[test]
    fn parser_is_strict() {
        let (ct, body) = render(&[Part::new("manifest", "{}")]);
        let s = String::from_utf8(body).unwrap();
        assert!(parse(&ct, s.replace("\r\n", "\n").as_bytes()).is_err());
        assert!(parse(&ct, s.trim_end().as_bytes()).is_err());
        assert!(parse(&ct, format!("preamble\r\n{s}").as_bytes()).is_err());
        assert!(parse("application/json", s.as_bytes()).is_err());
        assert!(parse("multipart/mixed; boundary=b", b"--b\r\n--b--\r\n").is_err(), "overlapping delimiters, no parts");
    }

    #[test]
    fn boundary_parsing() {
        assert_eq!(boundary_of("multipart/mixed; boundary=abc").as_deref(), Some("abc"));
        assert_eq!(boundary_of("multipart/form-data; charset=x; Boundary=\"a b\"").as_deref(), Some("a b"));
        assert_eq!(boundary_of("application/json; boundary=abc"), None);
        assert_eq!(boundary_of("multipart/mixed"), None);
        assert_eq!(boundary_of(&format!("multipart/mixed; boundary={}", "x".repeat(71))), None);
    }
}
