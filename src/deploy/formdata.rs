//! Incremental `multipart/form-data` parser for the single-request publish route. It is fed the
//! request body chunk by chunk and hands back field events, so the Worker never holds more than
//! the current file part.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A part begins: its `name`, `filename` (if any) and `content-type` (if any).
    Start {
        name: String,
        filename: Option<String>,
        content_type: Option<String>,
    },
    Data(Vec<u8>),
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first delimiter (the preamble is discarded).
    Preamble,
    /// Right after a delimiter: `\r\n` starts a part, `--` ends the body.
    AfterDelimiter,
    Headers,
    Body,
    Done,
}

pub struct Parser {
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    state: State,
}

const MAX_HEADER_BLOCK: usize = 16 * 1024;

impl Parser {
    pub fn new(boundary: &str) -> Self {
        // Pretend the body starts with CRLF so the first delimiter looks like every other one.
        Self { delimiter: format!("\r\n--{boundary}").into_bytes(), buf: b"\r\n".to_vec(), state: State::Preamble }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds the next chunk; returns the events it completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, String> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        loop {
            match self.state {
                State::Preamble | State::Body => {
                    let in_body = self.state == State::Body;
                    match find(&self.buf, &self.delimiter) {
                        Some(i) => {
                            if in_body {
                                if i > 0 {
                                    events.push(Event::Data(self.buf[..i].to_vec()));
                                }
                                events.push(Event::End);
                            }
                            self.buf.drain(..i + self.delimiter.len());
                            self.state = State::AfterDelimiter;
                        }
                        None => {
                            // Keep a tail that could be the start of a delimiter.
                            let keep = self.delimiter.len() - 1;
                            if self.buf.len() > keep {
                                let n = self.buf.len() - keep;
                                if in_body {
                                    events.push(Event::Data(self.buf[..n].to_vec()));
                                }
                                self.buf.drain(..n);
                            }
                            return Ok(events);
                        }
                    }
                }
                State::AfterDelimiter => {
                    // Transport padding (spaces/tabs) may follow a delimiter.
                    let pad = self.buf.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
                    if self.buf.len() < pad + 2 {
                        return Ok(events);
                    }
                    match &self.buf[pad..pad + 2] {
                        b"--" => {
                            self.state = State::Done;
                            self.buf.clear();
                            return Ok(events);
                        }
                        b"\r\n" => {
                            self.buf.drain(..pad + 2);
                            self.state = State::Headers;
                        }
                        _ => return Err("malformed multipart delimiter".into()),
                    }
                }
                State::Headers => match find(&self.buf, b"\r\n\r\n") {
                    Some(i) => {
                        let block = std::str::from_utf8(&self.buf[..i])
                            .map_err(|_| "part headers are not UTF-8".to_string())?;
                        events.push(parse_part_headers(block)?);
                        self.buf.drain(..i + 4);
                        self.state = State::Body;
                    }
                    None if self.buf.len() > MAX_HEADER_BLOCK => return Err("part headers are too large".into()),
                    None => return Ok(events),
                },
                State::Done => {
                    // The epilogue after the closing delimiter is ignored.
                    self.buf.clear();
                    return Ok(events);
                }
            }
        }
    }

    /// Call at end of input: an unterminated body is an error.
    pub fn finish(&self) -> Result<(), String> {
        if self.state == State::Done {
            Ok(())
        } else {
            Err("multipart body ended before its closing boundary".into())
        }
    }
}

fn parse_part_headers(block: &str) -> Result<Event, String> {
    let mut name = None;
    let mut filename = None;
    let mut content_type = None;
    for line in block.split("\r\n") {
        let (k, v) = line.split_once(':').ok_or_else(|| "malformed part header line".to_string())?;
        if k.trim().eq_ignore_ascii_case("content-disposition") {
            let mut params = split_params(v);
            let kind = params.next().unwrap_or_default();
            if !kind.trim().eq_ignore_ascii_case("form-data") {
                return Err("part content-disposition must be form-data".into());
            }
            for p in params {
                let Some((pk, pv)) = p.split_once('=') else { continue };
                let pv = unquote(pv.trim());
                match pk.trim().to_ascii_lowercase().as_str() {
                    "name" => name = Some(pv),
                    "filename" => filename = Some(pv),
                    _ => {}
                }
            }
        } else if k.trim().eq_ignore_ascii_case("content-type") {
            content_type = Some(v.trim().to_string());
        }
    }
    let name = name.ok_or_else(|| "part has no content-disposition name".to_string())?;
    Ok(Event::Start { name, filename, content_type })
}

/// Splits `a; b="x;y"; c` on `;` outside quotes.
fn split_params(s: &str) -> impl Iterator<Item = String> + '_ {
    let mut out = Vec::new();
    let (mut cur, mut quoted, mut escaped) = (String::new(), false, false);
    for c in s.chars() {
        match c {
            _ if escaped => {
                cur.push(c);
                escaped = false;
            }
            '\\' if quoted => {
                cur.push(c);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => v.to_string(),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A whole field: `(name, filename, bytes)`.
pub type Field = (String, Option<String>, Vec<u8>);

/// Collapses a parse into whole fields; for tests and small bodies.
pub fn parse_all(boundary: &str, body: &[u8], chunk: usize) -> Result<Vec<Field>, String> {
    let mut p = Parser::new(boundary);
    let mut out: Vec<Field> = Vec::new();
    for c in body.chunks(chunk.max(1)) {
        for e in p.feed(c)? {
            match e {
                Event::Start { name, filename, .. } => out.push((name, filename, Vec::new())),
                Event::Data(d) => out.last_mut().ok_or("data before part")?.2.extend_from_slice(&d),
                Event::End => {}
            }
        }
    }
    p.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"runtimeVersion\"\r\n\r\n1.0.3\r\n");
        b.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"assets/abc\"; filename=\"a;b.png\"\r\nContent-Type: image/png\r\n\r\n");
        b.extend_from_slice(b"\x89PNG\r\n--Xy not a boundary\r\n\x00\xff");
        b.extend_from_slice(b"\r\n--XyZ--\r\nepilogue");
        b
    }

    #[test]
    fn parses_in_any_chunking() {
        let whole = parse_all("XyZ", &body(), usize::MAX).unwrap();
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0], ("runtimeVersion".into(), None, b"1.0.3".to_vec()));
        assert_eq!(whole[1].0, "assets/abc");
        assert_eq!(whole[1].1.as_deref(), Some("a;b.png"));
        assert_eq!(whole[1].2, b"\x89PNG\r\n--Xy not a boundary\r\n\x00\xff");
        for chunk in [1, 2, 3, 7, 64] {
            assert_eq!(parse_all("XyZ", &body(), chunk).unwrap(), whole, "chunk {chunk}");
        }
    }

    #[test]
    fn rejects_malformed() {
        let b = body();
        assert!(parse_all("XyZ", &b[..b.len() - 20], 5).is_err(), "truncated");
        assert!(parse_all("other", &b, 5).is_err(), "wrong boundary");
        assert!(
            parse_all("XyZ", b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--", 4).is_err(),
            "no name"
        );
        assert!(parse_all("XyZ", b"--XyZjunk\r\n", 4).is_err(), "bad delimiter");
        assert!(
            parse_all("XyZ", b"--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--XyZ--", 4).is_err()
        );
        let huge = format!("--XyZ\r\nX: {}\r\n", "a".repeat(20_000));
        assert!(parse_all("XyZ", huge.as_bytes(), 100).is_err(), "huge headers");
    }

    #[test]
    fn preamble_is_ignored() {
        let mut b = b"preamble text\r\n".to_vec();
        b.extend_from_slice(&body());
        assert_eq!(parse_all("XyZ", &b, 3).unwrap().len(), 2);
    }
}
