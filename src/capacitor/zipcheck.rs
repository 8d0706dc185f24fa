//! What a Capacitor bundle zip must be before it is stored as one: every entry name safe to
//! extract (no `..` segment, no absolute, `~`, drive-letter, backslash, NUL or control-character
//! name, which the plugin refuses or which escape its folder) and `index.html` at the root or in
//! a single top folder (the only layouts both the Android and the iOS plugin can run; hidden and
//! `__MACOSX` entries count as top-level entries because iOS counts them).
//!
//! Only the zip's central directory is read (the end record, then the directory it points at,
//! both bounded), through [`RangeRead`]: the Worker reads those ranges from R2 and never loads
//! the bundle; the form route and the CLI read them from memory. This is not a zip codec: no
//! entry is decompressed, only fixed-layout directory records are parsed. ZIP64 archives
//! (over 65 535 entries or 4 GiB) are refused.

use crate::error::ApiError;

/// End of central directory record: 22 bytes, then a comment of at most 65 535 bytes.
const EOCD_LEN: u64 = 22;
const MAX_COMMENT: u64 = 0xffff;
/// A web bundle's directory is a few KB; 4 MiB is ~40 000 long names.
pub const MAX_DIRECTORY_BYTES: u64 = 4 << 20;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ZipError {
    #[error("not a zip file: {0}")]
    NotZip(&'static str),
    #[error("ZIP64 archives are not supported: a bundle must have fewer than 65535 entries and be under 4 GiB")]
    Zip64,
    #[error("the zip's central directory is {0} bytes; the limit is {MAX_DIRECTORY_BYTES} (too many files for a web bundle)")]
    DirectoryTooLarge(u64),
    #[error("unsafe entry name {0}: entries may not be absolute, use '..', '.', backslashes, NUL or control characters (zip from inside the web directory, e.g. `cd dist && zip -r ../bundle.zip .`)")]
    UnsafeName(String),
    #[error("no index.html at the zip's root or in a single top folder (top-level entries: {0}); zip the built web directory (Capacitor's webDir) so index.html is at the root")]
    NoIndex(String),
    #[error("the zip has no entries")]
    Empty,
}

impl From<ZipError> for ApiError {
    fn from(e: ZipError) -> Self {
        ApiError::unprocessable(format!("invalid bundle zip: {e}"))
    }
}

/// Reads `len` bytes at `offset` of the zip (the caller keeps both within the file).
#[allow(async_fn_in_trait)]
pub trait RangeRead {
    async fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, ApiError>;
}

impl RangeRead for [u8] {
    async fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, ApiError> {
        let start = (offset as usize).min(self.len());
        Ok(self[start..start.saturating_add(len as usize).min(self.len())].to_vec())
    }
}

/// A file held in blocks (the form route): ranges are copied out without joining the blocks.
impl RangeRead for [Vec<u8>] {
    async fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, ApiError> {
        let (mut out, mut at) = (Vec::with_capacity(len as usize), 0u64);
        for b in self {
            let end = at + b.len() as u64;
            if end > offset && at < offset + len {
                let s = offset.saturating_sub(at) as usize;
                let e = ((offset + len).min(end) - at) as usize;
                out.extend_from_slice(&b[s..e]);
            }
            at = end;
        }
        Ok(out)
    }
}

/// What a valid bundle holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZipSummary {
    pub entries: usize,
    /// The single top folder `index.html` sits in, when it is not at the root.
    pub top_folder: Option<String>,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Checks the zip of `size` bytes that `src` reads (see the module doc).
pub async fn check<R: RangeRead + ?Sized>(src: &R, size: u64) -> Result<ZipSummary, ApiError> {
    if size < EOCD_LEN {
        return Err(ZipError::NotZip("shorter than a zip's end record").into());
    }
    let tail_len = size.min(EOCD_LEN + MAX_COMMENT);
    let tail = src.read_at(size - tail_len, tail_len).await?;
    // The end record is the last signature whose comment length reaches exactly the file's end.
    let eocd = (0..=tail.len().saturating_sub(EOCD_LEN as usize))
        .rev()
        .find(|&i| {
            tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06]
                && i + EOCD_LEN as usize + u16_at(&tail, i + 20) as usize == tail.len()
        })
        .ok_or(ZipError::NotZip("no end of central directory record"))?;
    let e = &tail[eocd..];
    let (entries, dir_size, dir_offset) = (u16_at(e, 10), u32_at(e, 12), u32_at(e, 16));
    if entries == 0xffff || dir_size == u32::MAX || dir_offset == u32::MAX {
        return Err(ZipError::Zip64.into());
    }
    let eocd_at = size - tail_len + eocd as u64;
    let (dir_size, dir_offset) = (u64::from(dir_size), u64::from(dir_offset));
    if dir_size > MAX_DIRECTORY_BYTES {
        return Err(ZipError::DirectoryTooLarge(dir_size).into());
    }
    if dir_offset + dir_size > eocd_at {
        return Err(ZipError::NotZip("central directory overlaps its end record").into());
    }
    let dir = src.read_at(dir_offset, dir_size).await?;
    let mut names = Vec::with_capacity(entries as usize);
    let mut at = 0usize;
    for _ in 0..entries {
        if at + 46 > dir.len() || u32_at(&dir, at) != 0x0201_4b50 {
            return Err(ZipError::NotZip("truncated central directory").into());
        }
        let (n, x, c) =
            (u16_at(&dir, at + 28) as usize, u16_at(&dir, at + 30) as usize, u16_at(&dir, at + 32) as usize);
        let name = dir.get(at + 46..at + 46 + n).ok_or(ZipError::NotZip("truncated entry name"))?;
        names.push(entry_name(name)?);
        at += 46 + n + x + c;
    }
    layout(&names)
}

/// An entry name as a safe relative path (directories keep their trailing `/`).
fn entry_name(raw: &[u8]) -> Result<String, ZipError> {
    let shown = || format!("{:?}", crate::validate::truncate(&String::from_utf8_lossy(raw)));
    let name = std::str::from_utf8(raw).map_err(|_| ZipError::UnsafeName(shown()))?;
    let drive = name.len() >= 2 && name.as_bytes()[1] == b':';
    let unsafe_char = name.chars().any(|c| c == '\\' || c.is_control());
    let path = name.strip_suffix('/').unwrap_or(name);
    let bad_segment = path.split('/').any(|s| s.is_empty() || s == "." || s == "..");
    if name.starts_with('/') || name.starts_with('~') || drive || unsafe_char || bad_segment {
        return Err(ZipError::UnsafeName(shown()));
    }
    Ok(name.to_string())
}

fn layout(names: &[String]) -> Result<ZipSummary, ApiError> {
    if names.is_empty() {
        return Err(ZipError::Empty.into());
    }
    let summary = |top_folder| Ok(ZipSummary { entries: names.len(), top_folder });
    if names.iter().any(|n| n == "index.html") {
        return summary(None);
    }
    let mut tops: Vec<&str> = names.iter().map(|n| n.split('/').next().unwrap_or("")).collect();
    tops.sort_unstable();
    tops.dedup();
    if let [top] = tops.as_slice() {
        if names.iter().any(|n| n.strip_prefix(top).and_then(|r| r.strip_prefix('/')) == Some("index.html")) {
            return summary(Some(top.to_string()));
        }
    }
    let mut shown: Vec<String> = tops.iter().take(8).map(|t| format!("{t:?}")).collect();
    if tops.len() > 8 {
        shown.push(format!("and {} more", tops.len() - 8));
    }
    Err(ZipError::NoIndex(shown.join(", ")).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zip with these entry names (stored, empty bodies), written by the `zip` crate.
    pub(crate) fn zip_of(names: &[&str]) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for n in names {
            if let Some(d) = n.strip_suffix('/') {
                w.add_directory(d, opts).unwrap();
            } else {
                w.start_file(*n, opts).unwrap();
                w.write_all(b"x").unwrap();
            }
        }
        w.finish().unwrap().into_inner()
    }

    fn check_bytes(b: &[u8]) -> Result<ZipSummary, ApiError> {
        pollster::block_on(check(b, b.len() as u64))
    }

    #[test]
    fn zipcheck_fixture_bundles_pass_with_index_at_root() {
        for v in ["1.0.0", "1.0.1"] {
            let b = std::fs::read(format!(
                "{}/tests/fixtures/capacitor/bundles/{v}/com.example.capota_{v}.zip",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            assert_eq!(check_bytes(&b).unwrap(), ZipSummary { entries: 6, top_folder: None }, "{v}");
        }
    }

    #[test]
    fn zipcheck_single_top_folder_passes_and_names_it() {
        let z = zip_of(&["dist/", "dist/index.html", "dist/assets/a.js"]);
        assert_eq!(check_bytes(&z).unwrap().top_folder.as_deref(), Some("dist"));
    }

    #[test]
    fn zipcheck_missing_or_nested_index_is_refused_with_the_top_entries() {
        for names in [
            &["assets/a.js", "main.js"][..],
            &["a/b/index.html"],
            // A Finder zip: iOS counts __MACOSX as a second top-level entry.
            &["dist/index.html", "__MACOSX/dist/._index.html"],
            &["app.apk/AndroidManifest.xml", "classes.dex"],
        ] {
            let e = check_bytes(&zip_of(names)).unwrap_err();
            assert_eq!(e.status, 422, "{names:?}");
            assert!(e.message.contains("no index.html"), "{}", e.message);
        }
    }

    #[test]
    fn zipcheck_unsafe_names_are_refused() {
        for bad in ["../index.html", "a/../../x", "/etc/passwd", "a\\b.js", "C:/x", "~/x", "./index.html", "a//b"] {
            let z = zip_of(&["index.html", bad]);
            let e = check_bytes(&z).unwrap_err();
            assert!(e.message.contains("unsafe entry name"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn zipcheck_not_a_zip_and_truncations_are_refused() {
        assert!(check_bytes(b"hello").unwrap_err().message.contains("not a zip"));
        assert!(check_bytes(&[0u8; 100]).unwrap_err().message.contains("not a zip"));
        let z = zip_of(&["index.html"]);
        // Cutting the directory's first bytes leaves an end record pointing past real data.
        let cut = [&z[..z.len() - 60], &z[z.len() - 22..]].concat();
        assert_eq!(check_bytes(&cut).unwrap_err().status, 422);
    }

    #[test]
    fn zipcheck_blocks_read_the_same_ranges_as_one_buffer() {
        let z = zip_of(&["dist/index.html", "dist/x.js"]);
        let blocks: Vec<Vec<u8>> = z.chunks(7).map(<[u8]>::to_vec).collect();
        let got = pollster::block_on(check(blocks.as_slice(), z.len() as u64)).unwrap();
        assert_eq!(got, check_bytes(&z).unwrap());
    }
}
