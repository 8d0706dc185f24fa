//! Incremental `multipart/form-data` parser for the single-request publish route. It is fed the
//! request body chunk by chunk and hands back field events, so the Worker never holds more than
//! the current file part.
//!
//! Linear in the body: every byte is scanned a bounded number of times and the internal buffer
//! keeps only what may still be the start of a delimiter (or an unfinished header block, at most
//! 16 KiB), so one `feed` costs O(chunk) whatever the number of parts in it.

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
    /// Bytes not consumed yet: at most a delimiter's length in the body, or a header block.
    buf: Vec<u8>,
    state: State,
    /// How much of an unfinished header block was already searched for its end.
    header_scanned: usize,
}

const MAX_HEADER_BLOCK: usize = 16 * 1024;
/// Buffer capacity kept between feeds; typical request chunks (≤ 64 KiB) fit.
const MAX_RETAINED: usize = 256 * 1024;

impl Parser {
    pub fn new(boundary: &str) -> Self {
        // Pretend the body starts with CRLF so the first delimiter looks like every other one.
        Self {
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            buf: b"\r\n".to_vec(),
            state: State::Preamble,
            header_scanned: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Capacity held between feeds: the unconsumed tail in at most `MAX_RETAINED`, or one chunk.
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }

    /// Feeds the next chunk; returns the events it completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, String> {
        if self.state == State::Done {
            // The epilogue after the closing delimiter is ignored.
            return Ok(Vec::new());
        }
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut pos = 0;
        let result = self.run(&mut pos, &mut events);
        // One shift per feed, of the unconsumed tail only: draining after every part would move
        // the rest of the chunk once per part (quadratic in parts per chunk).
        self.buf.drain(..pos);
        // A huge chunk must not leave a huge buffer behind for the rest of the body.
        if self.buf.capacity() > MAX_RETAINED {
            self.buf.shrink_to(MAX_HEADER_BLOCK);
        }
        result.map(|()| events)
    }

    fn run(&mut self, pos: &mut usize, events: &mut Vec<Event>) -> Result<(), String> {
        loop {
            let rest = &self.buf[*pos..];
            match self.state {
                State::Preamble | State::Body => {
                    let in_body = self.state == State::Body;
                    match find(rest, &self.delimiter) {
                        Some(i) => {
                            if in_body {
                                if i > 0 {
                                    events.push(Event::Data(rest[..i].to_vec()));
                                }
                                events.push(Event::End);
                            }
                            *pos += i + self.delimiter.len();
                            self.state = State::AfterDelimiter;
                        }
                        None => {
                            // Keep a tail that could be the start of a delimiter.
                            let keep = self.delimiter.len() - 1;
                            if rest.len() > keep {
                                let n = rest.len() - keep;
                                if in_body {
                                    events.push(Event::Data(rest[..n].to_vec()));
                                }
                                *pos += n;
                            }
                            return Ok(());
                        }
                    }
                }
                State::AfterDelimiter => {
                    // Transport padding (spaces/tabs) may follow a delimiter; consume it as it
                    // comes so a long run of it is not rescanned at every feed.
                    let pad = rest.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
                    *pos += pad;
                    let rest = &rest[pad..];
                    if rest.len() < 2 {
                        return Ok(());
                    }
                    match &rest[..2] {
                        b"--" => {
                            self.state = State::Done;
                            *pos = self.buf.len();
                            return Ok(());
                        }
                        b"\r\n" => {
                            *pos += 2;
                            self.state = State::Headers;
                            self.header_scanned = 0;
                        }
                        _ => return Err("malformed multipart delimiter".into()),
                    }
                }
                State::Headers => {
                    // Resume the search where the last feed stopped (minus a partial `\r\n\r\n`).
                    let from = self.header_scanned.saturating_sub(3);
                    match find(&rest[from..], b"\r\n\r\n").map(|i| i + from) {
                        Some(i) => {
                            let block = std::str::from_utf8(&rest[..i])
                                .map_err(|_| "part headers are not UTF-8".to_string())?;
                            events.push(parse_part_headers(block)?);
                            *pos += i + 4;
                            self.state = State::Body;
                        }
                        None if rest.len() > MAX_HEADER_BLOCK => return Err("part headers are too large".into()),
                        None => {
                            self.header_scanned = rest.len();
                            return Ok(());
                        }
                    }
                }
                State::Done => {
                    *pos = self.buf.len();
                    return Ok(());
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
    fn one_chunk_with_50000_parts_parses_in_linear_time() {
        let n = 50_000;
        let mut b = Vec::new();
        for i in 0..n {
            b.extend_from_slice(
                format!("--XyZ\r\nContent-Disposition: form-data; name=\"assets/{i}\"\r\n\r\nvalue {i}\r\n").as_bytes(),
            );
        }
        b.extend_from_slice(b"--XyZ--\r\n");
        let started = std::time::Instant::now();
        let mut p = Parser::new("XyZ");
        let events = p.feed(&b).unwrap();
        // Shifting the buffer after every part took ~20 s here (quadratic); one pass is milliseconds.
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(5), "{n} parts took {took:?}");
        assert_eq!(events.len(), 3 * n);
        assert_eq!(events[3 * n - 2], Event::Data(format!("value {}", n - 1).into_bytes()));
        assert!(p.is_done());
        assert!(p.buffered() <= 256 * 1024, "a huge chunk leaves no huge buffer ({} bytes)", p.buffered());
    }

    #[test]
    fn padding_and_headers_split_across_feeds() {
        let mut p = Parser::new("XyZ");
        let mut events = Vec::new();
        let body = b"--XyZ \t \r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--XyZ  --";
        for c in body.chunks(1) {
            events.extend(p.feed(c).unwrap());
        }
        assert_eq!(
            events,
            vec![
                Event::Start { name: "a".into(), filename: None, content_type: None },
                Event::Data(b"v".to_vec()),
                Event::End
            ]
        );
        assert!(p.finish().is_ok());
    }

    #[test]
    fn preamble_is_ignored() {
        let mut b = b"preamble text\r\n".to_vec();
        b.extend_from_slice(&body());
        assert_eq!(parse_all("XyZ", &b, 3).unwrap().len(), 2);
    }
}
