//! Output. Human text goes to stdout, progress bars and warnings to stderr; with `--json` stdout
//! carries exactly one JSON object so scripts can parse it, and nothing else is printed there.
//! Whatever is printed passes through [`escape_for_terminal`] (JSON through its JSON-preserving
//! twin): text from the server can never move the cursor, clear the screen, retitle the window
//! or reorder a line, whichever print path it takes.

use crate::export::{LocalFile, PlatformExport};
use expo_ota::deploy::api::CommitResponse;
use expo_ota::storage::record::RecordKind;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::IsTerminal;

#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    pub path: String,
    pub bytes: u64,
    pub kind: String,
    /// SHA-256 base64url: the manifest `hash` clients check.
    pub hash: String,
}

impl From<&LocalFile> for FileReport {
    fn from(f: &LocalFile) -> Self {
        Self {
            path: f.path.clone(),
            bytes: f.digests.size,
            kind: f.kind.to_string(),
            hash: f.digests.sha256_base64url(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PendingFile {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateReport {
    pub platform: String,
    pub runtime_version: String,
    /// `null` in a dry run: nothing was committed.
    pub id: Option<String>,
    pub created_at: Option<String>,
    /// `null` in a dry run.
    pub channel: Option<String>,
    /// True when the manifest was committed with a signature made by --private-key.
    pub signed: bool,
    pub uploaded_files: usize,
    pub uploaded_bytes: u64,
    /// Files the server already had.
    pub skipped_files: usize,
    pub total_bytes: u64,
    pub launch_asset: FileReport,
    pub files: Vec<FileReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_upload: Option<Vec<PendingFile>>,
    /// bsdiff patches made for the launch asset (empty: none, or `--no-patches`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<crate::patches::PatchReport>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishReport {
    pub updates: Vec<UpdateReport>,
    pub dry_run: bool,
    pub manifest_url: String,
}

/// What a channel serves after rollback, promote or delete: one per platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MovedReport {
    pub platform: String,
    pub runtime_version: String,
    pub channel: String,
    pub id: String,
    pub created_at: String,
    pub kind: RecordKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub republished_from: Option<String>,
    pub signed: bool,
}

impl MovedReport {
    /// What the server made current by itself (delete without a key): always unsigned.
    pub fn from_server(c: &CommitResponse) -> Self {
        Self {
            platform: c.platform.clone(),
            runtime_version: c.runtime_version.clone(),
            channel: c.channel.clone(),
            id: c.id.clone(),
            created_at: c.created_at.to_string(),
            kind: c.kind,
            republished_from: None,
            signed: false,
        }
    }

    pub fn line(&self) -> String {
        let what = match (self.kind, &self.republished_from) {
            (RecordKind::RollBackToEmbedded, _) => {
                format!("rolls back to the embedded update (directive {}, commitTime {})", self.id, self.created_at)
            }
            (RecordKind::Update, Some(from)) => {
                format!("serves {} (createdAt {}), republished from {from}", self.id, self.created_at)
            }
            (RecordKind::Update, None) => format!("serves {} (createdAt {})", self.id, self.created_at),
        };
        format!(
            "{} {} {}: now {what}, {}",
            self.platform,
            self.runtime_version,
            self.channel,
            if self.signed { "signed" } else { "unsigned" }
        )
    }
}

/// `rollback` and `promote` with `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct MovedList {
    pub slug: String,
    pub updates: Vec<MovedReport>,
}

/// True for what a terminal interprets or hides rather than shows: C0 and C1 controls (ESC,
/// CR, NUL, BEL, CSI U+009B …), DEL, bidi embeddings/overrides/isolates/marks (U+202A–U+202E,
/// U+2066–U+2069, U+200E, U+200F, U+061C), line and paragraph separators and the BOM.
pub fn is_terminal_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
                | '\u{2028}' | '\u{2029}' | '\u{FEFF}'
        )
}

/// `s` with every [`is_terminal_unsafe`] character shown as an escape: `\x1b` below U+0080,
/// `\u{202e}` above. Everything else, `\` included, is printed as is (so the output is
/// readable; a literal `\x1b` sent as text looks the same but does nothing). Idempotent.
pub fn escape_for_terminal(s: &str) -> String {
    if !s.chars().any(is_terminal_unsafe) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            c if !is_terminal_unsafe(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    out
}

/// Pretty JSON of `value` with every terminal-unsafe character inside its strings written as a
/// `\uXXXX` escape: the same JSON value, safe to print. (serde_json already escapes C0
/// controls; DEL, C1 controls and bidi characters it writes raw. Outside strings a pretty JSON
/// text only holds printable ASCII, spaces and newlines, and every unsafe character is in the BMP.)
pub fn json_for_terminal<T: Serialize>(value: &T) -> String {
    let raw = serde_json::to_string_pretty(value).expect("report serializes");
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c != '\n' && is_terminal_unsafe(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

pub struct Printer {
    json: bool,
    progress: bool,
}

impl Printer {
    pub fn new(json: bool) -> Self {
        Self { json, progress: !json && std::io::stderr().is_terminal() }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// A human line on stdout, escaped; silent in `--json` mode.
    pub fn line(&self, s: impl AsRef<str>) {
        if !self.json {
            println!("{}", escape_for_terminal(s.as_ref()));
        }
    }

    pub fn warn(&self, s: impl AsRef<str>) {
        eprintln!("warning: {}", escape_for_terminal(s.as_ref()));
    }

    /// The one JSON object of `--json` mode, with terminal-unsafe characters as `\uXXXX`.
    pub fn emit<T: Serialize>(&self, value: &T) {
        println!("{}", json_for_terminal(value));
    }

    /// A byte progress bar on stderr, or a hidden one when that is not a terminal.
    pub fn upload_bar(&self, label: &str, total: u64) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("valid template")
            .progress_chars("=> ");
        ProgressBar::new(total).with_style(style).with_prefix(format!("uploading {label}"))
    }

    pub fn platform_files(&self, p: &PlatformExport, runtime_version: &str) {
        let b = &p.bundle;
        self.line(format!("{} (runtimeVersion {runtime_version})", p.platform));
        self.line(format!(
            "  bundle  {}  {}  {}  {}",
            b.path,
            HumanBytes(b.digests.size),
            b.kind,
            b.digests.sha256_base64url()
        ));
        for a in &p.assets {
            self.line(format!(
                "  asset   {}  {}  {}  {}",
                a.path,
                HumanBytes(a.digests.size),
                a.kind,
                a.digests.sha256_base64url()
            ));
        }
    }

    pub fn dry_run(&self, r: &UpdateReport) {
        let pending = r.would_upload.as_deref().unwrap_or_default();
        let bytes: u64 = pending.iter().map(|f| f.bytes).sum();
        self.line(format!(
            "dry run {} {}: would upload {} file(s), {} new ({} already on the server)",
            r.platform,
            r.runtime_version,
            pending.len(),
            HumanBytes(bytes),
            r.skipped_files
        ));
        for f in pending {
            self.line(format!("  {}  {}", f.path, HumanBytes(f.bytes)));
        }
    }

    pub fn committed(&self, r: &UpdateReport) {
        self.line(format!("published {} update {}", r.platform, r.id.as_deref().unwrap_or("?")));
        self.line(format!("  createdAt       {}", r.created_at.as_deref().unwrap_or("?")));
        self.line(format!("  runtimeVersion  {}", r.runtime_version));
        self.line(format!("  channel         {}", r.channel.as_deref().unwrap_or("?")));
        self.line(format!("  signed          {}", if r.signed { "yes" } else { "no" }));
        self.line(format!(
            "  uploaded        {} file(s), {} ({} already on the server; update is {})",
            r.uploaded_files,
            HumanBytes(r.uploaded_bytes),
            r.skipped_files,
            HumanBytes(r.total_bytes)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let e = crate::export::read(&crate::export::tests::fixture("utility-app-v1"), None).unwrap();
        let p = &e.platforms[0];
        let r = UpdateReport {
            platform: "android".into(),
            runtime_version: "2.0.0".into(),
            id: None,
            created_at: None,
            channel: None,
            signed: false,
            uploaded_files: 0,
            uploaded_bytes: 0,
            skipped_files: 0,
            total_bytes: p.total_bytes(),
            launch_asset: (&p.bundle).into(),
            files: vec![],
            would_upload: Some(vec![PendingFile { path: "a".into(), sha256: "00".into(), bytes: 1 }]),
            patches: Vec::new(),
        };
        let v =
            serde_json::to_value(PublishReport { updates: vec![r], dry_run: true, manifest_url: "u".into() }).unwrap();
        assert_eq!(v["dryRun"], true);
        let u = &v["updates"][0];
        for k in [
            "platform",
            "runtimeVersion",
            "id",
            "createdAt",
            "channel",
            "signed",
            "uploadedFiles",
            "uploadedBytes",
            "skippedFiles",
            "totalBytes",
            "launchAsset",
            "wouldUpload",
        ] {
            assert!(u.get(k).is_some(), "{k}");
        }
        assert_eq!(u["launchAsset"]["kind"], "hermes bytecode v96");
        assert_eq!(u["launchAsset"]["hash"], "1_r2KCDxDoP-07alKp77j-BlZsSLZ8k1oo9VNznGPUU");
        assert_eq!(u["launchAsset"]["bytes"], 1_762_697);
        assert_eq!(u["wouldUpload"][0]["sha256"], "00");
    }

    #[test]
    fn escape_for_terminal_shows_controls_and_bidi_as_escapes() {
        assert_eq!(escape_for_terminal("plain ünïcödé 😀 \\ path"), "plain ünïcödé 😀 \\ path");
        assert_eq!(escape_for_terminal("\u{1b}[2J"), "\\x1b[2J");
        assert_eq!(escape_for_terminal("a\r\nb\0\t\u{7}\u{7f}"), "a\\x0d\\x0ab\\x00\\x09\\x07\\x7f");
        assert_eq!(escape_for_terminal("\u{9b}31m"), "\\u{9b}31m", "C1 CSI");
        for c in ['\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}', '\u{200f}', '\u{2028}', '\u{feff}'] {
            let e = escape_for_terminal(&format!("x{c}y"));
            assert_eq!(e, format!("x\\u{{{:x}}}y", c as u32));
        }
        let hostile = "\u{1b}]0;title\u{7}\u{202e}gnp.exe\r";
        let once = escape_for_terminal(hostile);
        assert!(!once.chars().any(is_terminal_unsafe), "{once}");
        assert_eq!(escape_for_terminal(&once), once, "idempotent");
    }

    #[test]
    fn json_for_terminal_is_the_same_json_without_unsafe_characters() {
        let v = serde_json::json!({"error": "\u{1b}[2J\u{202e}abc\u{9b}\u{7f}\n", "n": [1, 2]});
        let printed = json_for_terminal(&v);
        assert!(!printed.chars().any(|c| c != '\n' && is_terminal_unsafe(c)), "{printed}");
        assert!(printed.contains("\\u202e") && printed.contains("\\u001b"), "{printed}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&printed).unwrap(), v);
    }

    #[test]
    fn moved_report_shape_and_line() {
        let mut r = MovedReport {
            platform: "ios".into(),
            runtime_version: "1.0.3".into(),
            channel: "production".into(),
            id: "b".into(),
            created_at: "2024-05-01T12:34:56.789Z".into(),
            kind: RecordKind::Update,
            republished_from: Some("a".into()),
            signed: true,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"platform": "ios", "runtimeVersion": "1.0.3", "channel": "production", "id": "b", "createdAt": "2024-05-01T12:34:56.789Z", "kind": "update", "republishedFrom": "a", "signed": true})
        );
        assert_eq!(
            r.line(),
            "ios 1.0.3 production: now serves b (createdAt 2024-05-01T12:34:56.789Z), republished from a, signed"
        );
        (r.kind, r.republished_from, r.signed) = (RecordKind::RollBackToEmbedded, None, false);
        assert!(serde_json::to_value(&r).unwrap().get("republishedFrom").is_none());
        assert_eq!(serde_json::to_value(&r).unwrap()["kind"], "rollBackToEmbedded");
        assert!(r.line().contains("now rolls back to the embedded update") && r.line().ends_with("unsigned"));
    }
}
