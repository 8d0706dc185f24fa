//! What the asset route sends besides the stored identity bytes: a bsdiff patch or a
//! precompressed variant. Invariant: every decision here can only pick *which stored object* to
//! send for the requested file, never produce an error — any non-2xx on a launch asset fails the
//! client's whole update, so a missing header, an unknown base, an unreadable record or a missing
//! patch all mean "send the full file". A patch is only chosen when the client asked for one
//! (`A-IM: bsdiff`) against the update it runs (`Expo-Current-Update-ID`), that update is stored in
//! this runtime, and a patch from its launch asset to the requested file was uploaded; it is looked
//! up by (base launch-asset hash, requested hash), never by URL, so a cache keyed by URL never
//! sees it (patch replies are `no-store`).
//!
//! The Worker adapter runs the same steps as [`negotiate`] with one R2 read for the base record
//! and one GET of the patch (streamed), so the extra work per request is bounded.

use crate::protocol::hash;
use crate::protocol::id;
use crate::protocol::manifest::Manifest;
use crate::storage::layout::Target;
use crate::storage::record::UpdateRecord;
use crate::storage::store::ObjectStore;

/// Sent on every asset response: a cache must not hand a patch (or a full file chosen because
/// no patch existed) to a request with other patch headers.
pub const VARY: &str = "Accept-Encoding, A-IM, Expo-Current-Update-ID, Expo-Embedded-Update-ID";

/// A request that asked for a patch and named a plausible base update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    /// Lowercase canonical UUID of the update the client runs (the patch base).
    pub base_id: String,
}

/// The patch to send and the headers it goes with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    pub key: String,
    pub base_id: String,
}

impl Patch {
    /// Status 200 (not 226: some proxies mishandle it; both are accepted by the client).
    pub fn headers(&self) -> [(&'static str, String); 4] {
        [
            ("im", "bsdiff".into()),
            ("expo-base-update-id", self.base_id.clone()),
            ("cache-control", "no-store".into()),
            ("content-type", "application/octet-stream".into()),
        ]
    }
}

/// Step 1, headers only: does the request ask for a patch, and against which update?
/// SDK 55 sends no `Expo-Runtime-Version` on asset requests; 56.0.6+ does, and then it must name
/// this route's runtime (a client of another runtime cannot run a patch made here).
pub fn ask(header: &dyn Fn(&str) -> Option<String>, t: &Target) -> Option<Ask> {
    let a_im = header("a-im")?;
    let wants = a_im.split(',').any(|item| {
        let name = item.split(';').next().unwrap_or_default().trim();
        name.eq_ignore_ascii_case("bsdiff")
    });
    if !wants {
        return None;
    }
    let base_id = id::normalize_uuid(&header("expo-current-update-id")?)?;
    // The client never asks for a patch to the update it runs; a request that does is confused.
    if header("expo-requested-update-id").and_then(|r| id::normalize_uuid(&r)).as_deref() == Some(&base_id) {
        return None;
    }
    if let Some(rv) = header("expo-runtime-version") {
        if rv.trim() != t.runtime_version.as_str() {
            return None;
        }
    }
    Some(Ask { base_id })
}

/// The launch asset (SHA-256 hex) of a stored record; `None` for a directive or anything that
/// does not parse. Reads only the one field it needs.
pub fn launch_asset_sha(record_json: &[u8]) -> Option<String> {
    // The record and manifest types the Worker already decodes elsewhere: no new deserializer
    // code in the wasm.
    let record = UpdateRecord::from_json(record_json).ok()?;
    let m: Manifest = serde_json::from_str(&record.body).ok()?;
    hash::parse_sha256_base64url(&m.launch_asset.hash).map(|h| hash::hex(&h))
}

/// Step 2: the patch key for a base whose launch asset is `base_launch` (`None`: the base is not
/// a stored update of this runtime, e.g. an embedded update nobody uploaded). A base that already
/// runs the requested bundle gets the full file (a patch to itself is pointless).
pub fn patch_key(t: &Target, base_launch: Option<&str>, requested_sha: &str) -> Option<String> {
    let base = base_launch?;
    (base != requested_sha).then(|| t.patch_key(base, requested_sha))
}

/// Steps 1 and 2 with one record read; the caller fetches `Patch::key` and sends the full file
/// when it is missing. Store errors read as "no patch".
pub async fn candidate<S: ObjectStore>(
    store: &S,
    t: &Target,
    requested_sha: &str,
    header: &dyn Fn(&str) -> Option<String>,
) -> Option<Patch> {
    let Ask { base_id } = ask(header, t)?;
    let record = store.get(&t.record_key(&base_id)).await.ok().flatten()?;
    let key = patch_key(t, launch_asset_sha(&record.1).as_deref(), requested_sha)?;
    Some(Patch { key, base_id })
}

/// [`candidate`] plus the check that the patch is stored (a HEAD): the whole decision, for
/// adapters that read the patch afterwards and for the decision-table tests.
pub async fn negotiate<S: ObjectStore>(
    store: &S,
    t: &Target,
    requested_sha: &str,
    header: &dyn Fn(&str) -> Option<String>,
) -> Option<Patch> {
    let p = candidate(store, t, requested_sha, header).await?;
    store.head(&p.key).await.ok().flatten().map(|_| p)
}

/// A precompressed variant the publisher may have stored beside a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Br,
    Gzip,
}

impl Encoding {
    /// The `Content-Encoding` value.
    pub fn header(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Gzip => "gzip",
        }
    }
    /// The key suffix (`files/<sha>.<ext>`) and upload path segment.
    pub fn ext(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Gzip => "gz",
        }
    }
    pub fn from_ext(ext: &str) -> Option<Self> {
        match ext {
            "br" => Some(Encoding::Br),
            "gz" => Some(Encoding::Gzip),
            _ => None,
        }
    }
}

/// Asset extensions the CLI precompresses (text; images and fonts are already compressed or
/// gain little). The asset route only looks for a variant for these, so other files cost no
/// extra read.
pub fn is_compressible(ext: Option<&str>) -> bool {
    matches!(ext, Some("bundle" | "js" | "hbc" | "json" | "map" | "svg" | "txt" | "html" | "css" | "xml" | "ttf"))
}

/// The variant to send for `Accept-Encoding` (RFC 9110 §12.5.3): the accepted one with the
/// highest q-value, `br` on a tie; `*` covers codings not named; `q=0` refuses. `None`: identity.
pub fn choose_encoding(accept: Option<&str>) -> Option<Encoding> {
    let accept = accept?;
    // q-values in thousandths; `None`: the coding is not named.
    let (mut br, mut gzip, mut star) = (None::<u16>, None::<u16>, None::<u16>);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let mut q = 1000;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    // A malformed q-value refuses the coding rather than guessing.
                    q = qvalue(v.trim()).unwrap_or(0);
                }
            }
        }
        let slot = match name.as_str() {
            "br" => &mut br,
            "gzip" | "x-gzip" => &mut gzip,
            "*" => &mut star,
            _ => continue,
        };
        *slot = Some(slot.map_or(q, |old| old.max(q)));
    }
    let br = br.or(star).unwrap_or(0);
    let gzip = gzip.or(star).unwrap_or(0);
    match (br > 0, gzip > 0) {
        (false, false) => None,
        _ if br >= gzip => Some(Encoding::Br),
        _ => Some(Encoding::Gzip),
    }
}

/// RFC 9110 `qvalue` (`0`, `0.5`, `1.000`) in thousandths; integer parsing keeps float
/// formatting code out of the Worker.
fn qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = frac.bytes().fold(0u16, |n, b| n * 10 + u16::from(b - b'0')) * 10u16.pow(3 - frac.len() as u32);
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::{service, testing};
    use crate::protocol::hash::Digests;
    use crate::storage::store::MemoryStore;
    use crate::validate::Platform;

    const EMBEDDED_ID: &str = "0f8d2a8e-0000-4000-8000-0000000000ee";

    fn t() -> Target {
        Target::parse("demo-app", Platform::Android.as_str(), "1.0.0").unwrap()
    }
    fn sha(b: &[u8]) -> String {
        Digests::of(b).sha256_hex()
    }
    fn id_of(n: u8) -> String {
        id::uuid_v4([n; 16])
    }

    /// Commits an update whose launch asset is `bundle`; returns the store holding it.
    fn commit(s: &MemoryStore, bundle: &'static [u8], n: u8) {
        let t = t();
        let files: [(&[u8], &str); 1] = [(bundle, "bundle")];
        testing::upload(s, &t, &files);
        let body = testing::manifest_with_id(&t, &files, 1_000 * n as u64, "production", [n; 16]);
        let req = testing::commit_request(body, "production");
        pollster::block_on(service::commit(s, &t, req, &testing::ctx(1_000 * n as u64))).unwrap();
    }

    /// v1 and v2 stored, a patch v1 → v2 uploaded; v3 has no patch.
    fn store() -> MemoryStore {
        let s = MemoryStore::new();
        commit(&s, b"bundle-1", 1);
        commit(&s, b"bundle-2", 2);
        s.put_file(&t().patch_key(&sha(b"bundle-1"), &sha(b"bundle-2")), b"BSDIFF40...", "application/octet-stream");
        s
    }

    type Headers = Vec<(&'static str, String)>;

    /// Header sets as the clients send them on a launch-asset request (expo-patches §A.2).
    fn sdk55(current: &str, a_im: bool) -> Headers {
        let mut h = vec![
            ("expo-current-update-id", current.to_string()),
            ("expo-embedded-update-id", EMBEDDED_ID.to_string()),
            ("expo-requested-update-id", id_of(2)),
            ("expo-platform", "android".into()),
            ("accept", "*/*".into()),
            ("accept-encoding", "br,gzip".into()),
        ];
        if a_im {
            h.push(("a-im", "bsdiff".into()));
        }
        h
    }
    fn sdk56(current: &str, a_im: bool) -> Headers {
        let mut h = sdk55(current, a_im);
        h.push(("expo-runtime-version", "1.0.0".into()));
        h.retain(|(k, _)| *k != "accept-encoding");
        h.push(("accept-encoding", "zstd, br, gzip".into()));
        h
    }

    fn decide(headers: &[(&'static str, String)], requested: &[u8]) -> Option<Patch> {
        let header = |n: &str| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        pollster::block_on(negotiate(&store(), &t(), &sha(requested), &header))
    }

    #[test]
    fn negotiate_decision_table_sdk55_and_sdk56() {
        let (v1, v2) = (id_of(1), id_of(2));
        let patch = Some(Patch { key: t().patch_key(&sha(b"bundle-1"), &sha(b"bundle-2")), base_id: v1.clone() });
        let upper = v1.to_uppercase();
        for (shape, make) in [("sdk55", sdk55 as fn(&str, bool) -> _), ("sdk56", sdk56)] {
            let rows: [(&str, Headers, &[u8], Option<Patch>); 8] = [
                ("no A-IM", make(&v1, false), b"bundle-2", None),
                ("unknown base", make("0f8d2a8e-0000-4000-8000-0000000000aa", true), b"bundle-2", None),
                ("base = embedded, no embedded bundle uploaded", make(EMBEDDED_ID, true), b"bundle-2", None),
                ("base = requested update", make(&v2, true), b"bundle-2", None),
                ("base already runs the requested bundle", make(&v1, true), b"bundle-1", None),
                ("no patch stored for this pair", make(&v1, true), b"bundle-3", None),
                ("patch present", make(&v1, true), b"bundle-2", patch.clone()),
                ("patch present, base id in upper case", make(&upper, true), b"bundle-2", patch.clone()),
            ];
            for (name, headers, requested, want) in rows {
                assert_eq!(decide(&headers, requested), want, "{shape}: {name}");
            }
        }
    }

    #[test]
    fn ask_a_im_lists_and_runtime_header() {
        let t = t();
        let with = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            ask(&move |n: &str| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()), &t)
        };
        let v1 = id_of(1);
        let base = ("expo-current-update-id", v1.as_str());
        assert!(with(&[("a-im", "gzip, BSDIFF;q=1"), base]).is_some());
        assert!(with(&[("a-im", "vcdiff"), base]).is_none());
        assert!(with(&[("a-im", "bsdiff")]).is_none(), "no base");
        assert!(with(&[("a-im", "bsdiff"), ("expo-current-update-id", "../x")]).is_none());
        assert!(with(&[("a-im", "bsdiff"), base, ("expo-runtime-version", "1.0.0")]).is_some());
        assert!(with(&[("a-im", "bsdiff"), base, ("expo-runtime-version", "2.0.0")]).is_none(), "other runtime");
    }

    #[test]
    fn launch_asset_sha_reads_records_and_refuses_directives() {
        let s = store();
        let record = |n: u8| pollster::block_on(s.get(&t().record_key(&id_of(n)))).unwrap().unwrap().1;
        assert_eq!(launch_asset_sha(&record(1)), Some(sha(b"bundle-1")));
        let mut directive: serde_json::Value = serde_json::from_slice(&record(1)).unwrap();
        directive["body"] = "{\"type\":\"rollBackToEmbedded\"}".into();
        assert_eq!(launch_asset_sha(directive.to_string().as_bytes()), None);
        assert_eq!(launch_asset_sha(b"not json"), None);
    }

    #[test]
    fn patch_headers_are_the_clients_patch_signal() {
        let p = Patch { key: "k".into(), base_id: id_of(1) };
        let h = p.headers();
        assert!(h.contains(&("im", "bsdiff".into())));
        assert!(h.contains(&("expo-base-update-id", id_of(1))));
        assert!(h.contains(&("cache-control", "no-store".into())));
    }

    #[test]
    fn choose_encoding_honours_q_values() {
        use Encoding::*;
        for (accept, want) in [
            (None, None),
            (Some(""), None),
            (Some("identity"), None),
            (Some("br,gzip"), Some(Br)),
            (Some("zstd, br, gzip"), Some(Br)),
            (Some("gzip, deflate"), Some(Gzip)),
            (Some("gzip, deflate, br"), Some(Br)),
            (Some("br;q=0.5, gzip"), Some(Gzip)),
            (Some("br;q=0, gzip;q=0"), None),
            (Some("br;q=0"), None),
            (Some("*"), Some(Br)),
            (Some("*;q=0.1, gzip"), Some(Gzip)),
            (Some("br;q=0, *"), Some(Gzip)),
            (Some("BR ; Q=0.9"), Some(Br)),
            (Some("br;q=nope, gzip;q=0.2"), Some(Gzip)),
            (Some("br;q=2"), None),
            (Some("x-gzip"), Some(Gzip)),
            (Some("br;q=0.001"), Some(Br)),
            (Some("br;q=1.0, gzip;q=0.999"), Some(Br)),
            (Some("br;q=0.0000, gzip"), Some(Gzip)),
            (Some("br;q=1.5, gzip;q=.5"), None),
        ] {
            assert_eq!(choose_encoding(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn encoding_ext_round_trips() {
        for e in [Encoding::Br, Encoding::Gzip] {
            assert_eq!(Encoding::from_ext(e.ext()), Some(e));
        }
        assert_eq!(Encoding::from_ext("zst"), None);
        assert!(is_compressible(Some("bundle")) && !is_compressible(Some("png")) && !is_compressible(None));
    }
}
