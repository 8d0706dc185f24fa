//! Request routing as a plain enum, parsed from method + path and unit-tested; the Worker
//! adapter only `match`es on it.

use crate::check::patch::Encoding;
use crate::error::ApiError;
use crate::storage::layout::Target;
use crate::validate;
#[cfg(test)]
use crate::validate::Platform;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Health,
    /// `GET /api/manifest?slug=…` — what app.json `updates.url` points at.
    Manifest,
    /// `GET|HEAD /api/assets/:slug/:platform/:runtimeVersion/:sha256.:ext`
    Asset {
        target: Target,
        sha256: String,
        ext: Option<String>,
        head: bool,
    },
    /// `POST /api/publish/:slug` — single-request publish (multipart/form-data).
    PublishForm {
        slug: String,
    },
    /// `POST /api/publish/:slug/:platform/:runtimeVersion/prepare` — which files are missing.
    PublishPrepare {
        target: Target,
    },
    /// `PUT /api/files/:slug/:platform/:runtimeVersion/:sha256` — one raw file.
    UploadFile {
        target: Target,
        sha256: String,
    },
    /// `PUT /api/files/:slug/:platform/:runtimeVersion/:sha256/:encoding` — a precompressed
    /// variant (`br` or `gz`) of a stored file (see `deploy::patches`).
    UploadEncoded {
        target: Target,
        sha256: String,
        encoding: Encoding,
    },
    /// `PUT /api/patches/:slug/:platform/:runtimeVersion/:baseSha256/:targetSha256` — a BSDIFF40
    /// patch between two stored launch assets (see `deploy::patches`).
    UploadPatch {
        target: Target,
        base: String,
        sha256: String,
    },
    /// `HEAD /api/patches/:slug/:platform/:runtimeVersion/:baseSha256/:targetSha256` — 200 when
    /// that patch is stored, 404 when not (the CLI uploads only missing patches).
    PatchStatus {
        target: Target,
        base: String,
        sha256: String,
    },
    /// `POST /api/publish/:slug/:platform/:runtimeVersion/commit` — make an update current.
    PublishCommit {
        target: Target,
    },
    /// `GET /api/updates?slug=…`
    ListUpdates,
    /// `DELETE /api/updates/:slug/:platform/:runtimeVersion`
    DeleteRuntime {
        target: Target,
    },
    /// `GET /api/updates/:slug/:platform/:runtimeVersion/:id` — one record, body included.
    GetUpdate {
        target: Target,
        id: String,
    },
    /// `DELETE /api/updates/:slug/:platform/:runtimeVersion/:id` — delete one update (the
    /// previous one is promoted when it was current).
    DeleteUpdate {
        target: Target,
        id: String,
    },
    /// `POST /api/updates/:slug/:platform/:runtimeVersion/rollback` — republish a stored state.
    Rollback {
        target: Target,
    },
    /// `POST /api/updates/:slug/:platform/:runtimeVersion/promote` — republish onto another channel.
    Promote {
        target: Target,
    },
    /// `POST /api/tokens` (ADMIN_TOKEN) — mint a scoped token.
    CreateToken,
    /// `GET /api/tokens` (ADMIN_TOKEN)
    ListTokens,
    /// `DELETE /api/tokens/:id` (ADMIN_TOKEN)
    RevokeToken {
        id: String,
    },
    /// `GET /api/audit?slug=&since=&limit=`
    Audit,
    /// `/api/capacitor/:appId/…` and `/api/apk/:appId/…` (see `crate::capacitor::route`).
    Capacitor(crate::capacitor::route::CapRoute),
    /// `POST /api/rollout/:slug/:platform/:runtimeVersion` — grow, complete, revert, halt or
    /// resume a channel's staged rollout.
    Rollout {
        target: Target,
    },
    /// `GET /api/explain?slug=&platform=&runtimeVersion=&channel=&clientId=&…` — what a device
    /// would get from a check, and why.
    Explain,
    /// `GET /api/health?slug=&platform=&runtimeVersion=&channel=` — update health counters.
    HealthReport,
    /// Sign-in, sessions, users, apps, members, API keys (`crate::access::accounts::route`).
    Accounts(crate::access::accounts::route::AccountRoute),
}

impl Route {
    /// Deploy operations need a bearer token; reads are public.
    pub fn needs_auth(&self) -> bool {
        match self {
            Route::Capacitor(r) => r.needs_auth(),
            _ => !matches!(self, Route::Health | Route::Manifest | Route::Asset { .. }),
        }
    }
}

pub fn parse(method: &str, path: &str) -> Result<Route, ApiError> {
    let segs: Vec<String> = path.trim_start_matches('/').split('/').map(percent_decode).collect::<Result<_, _>>()?;
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let allow = |allowed: &'static str| -> Result<(), ApiError> {
        if allowed.split(", ").any(|m| m == method) {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(allowed))
        }
    };
    let target =
        |slug: &str, platform: &str, rv: &str| -> Result<Target, ApiError> { Target::parse(slug, platform, rv) };
    let sha = |s: &str| -> Result<String, ApiError> {
        crate::protocol::hash::parse_hex::<32>(s)
            .map(|_| s.to_string())
            .ok_or_else(|| ApiError::bad_request("file id must be a lowercase SHA-256 hex digest"))
    };
    if let Some(r) = crate::access::accounts::route::parse(method, &segs) {
        return r.map(Route::Accounts);
    }
    match segs.as_slice() {
        ["health"] => allow("GET, HEAD").map(|_| Route::Health),
        ["api", "manifest"] => allow("GET, HEAD").map(|_| Route::Manifest),
        ["api", "assets", slug, platform, rv, file] => {
            allow("GET, HEAD")?;
            let (hash, ext) = match file.split_once('.') {
                Some((h, e)) if !e.is_empty() && e.len() <= 16 && e.bytes().all(|c| c.is_ascii_alphanumeric()) => {
                    (h, Some(e.to_string()))
                }
                Some(_) => return Err(ApiError::bad_request("invalid asset file extension")),
                None => (*file, None),
            };
            Ok(Route::Asset { target: target(slug, platform, rv)?, sha256: sha(hash)?, ext, head: method == "HEAD" })
        }
        ["api", "publish", slug] => {
            allow("POST")?;
            Ok(Route::PublishForm { slug: validate::slug(slug)?.to_string() })
        }
        ["api", "publish", slug, platform, rv, "prepare"] => {
            allow("POST")?;
            Ok(Route::PublishPrepare { target: target(slug, platform, rv)? })
        }
        ["api", "publish", slug, platform, rv, "commit"] => {
            allow("POST")?;
            Ok(Route::PublishCommit { target: target(slug, platform, rv)? })
        }
        ["api", "files", slug, platform, rv, hash] => {
            allow("PUT")?;
            Ok(Route::UploadFile { target: target(slug, platform, rv)?, sha256: sha(hash)? })
        }
        ["api", "files", slug, platform, rv, hash, enc] => {
            allow("PUT")?;
            let encoding = Encoding::from_ext(enc)
                .ok_or_else(|| ApiError::bad_request("file encoding must be br or gz (the only variants served)"))?;
            Ok(Route::UploadEncoded { target: target(slug, platform, rv)?, sha256: sha(hash)?, encoding })
        }
        ["api", "patches", slug, platform, rv, base, hash] => {
            allow("PUT, HEAD")?;
            let (target, base, sha256) = (target(slug, platform, rv)?, sha(base)?, sha(hash)?);
            Ok(if method == "PUT" {
                Route::UploadPatch { target, base, sha256 }
            } else {
                Route::PatchStatus { target, base, sha256 }
            })
        }
        ["api", "updates"] => allow("GET").map(|_| Route::ListUpdates),
        ["api", "updates", slug, platform, rv] => {
            allow("DELETE")?;
            Ok(Route::DeleteRuntime { target: target(slug, platform, rv)? })
        }
        ["api", "updates", slug, platform, rv, op @ ("rollback" | "promote")] => {
            allow("POST")?;
            let target = target(slug, platform, rv)?;
            Ok(if *op == "rollback" { Route::Rollback { target } } else { Route::Promote { target } })
        }
        ["api", "updates", slug, platform, rv, id] => {
            allow("GET, DELETE")?;
            let target = target(slug, platform, rv)?;
            let id = crate::protocol::id::normalize_uuid(id)
                .ok_or_else(|| ApiError::bad_request("update id must be a UUID"))?;
            Ok(if method == "GET" { Route::GetUpdate { target, id } } else { Route::DeleteUpdate { target, id } })
        }
        ["api", "tokens"] => {
            allow("GET, POST")?;
            Ok(if method == "POST" { Route::CreateToken } else { Route::ListTokens })
        }
        ["api", "tokens", id] => {
            allow("DELETE")?;
            Ok(Route::RevokeToken { id: id.to_string() })
        }
        ["api", "audit"] => allow("GET").map(|_| Route::Audit),
        ["api", "capacitor" | "apk", _, ..] => crate::capacitor::route::parse(method, &segs).map(Route::Capacitor),
        ["api", "rollout", slug, platform, rv] => {
            allow("POST")?;
            Ok(Route::Rollout { target: target(slug, platform, rv)? })
        }
        ["api", "explain"] => allow("GET").map(|_| Route::Explain),
        ["api", "health"] => allow("GET").map(|_| Route::HealthReport),
        _ => Err(ApiError::not_found("no such route")),
    }
}

/// Decodes `%XX` escapes in one path segment (decoding is `percent-encoding`'s; the policy is
/// here). `percent-encoding` passes a malformed escape through as literal text, so every `%` is
/// first checked to start two hex digits (`%zz`, `%f`, `%+f` are 400s, not literal names). An
/// encoded `/`, `\` or NUL is refused outright: no route segment may contain one, and refusing
/// early keeps traversal attempts out of logs.
fn percent_decode(seg: &str) -> Result<String, ApiError> {
    for (i, _) in seg.match_indices('%') {
        let hex = seg.as_bytes().get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        let Some(hex) = hex else {
            return Err(ApiError::bad_request("malformed percent-encoding in path: use %XX with two hex digits"));
        };
        if matches!(hex, [b'2', b'f' | b'F'] | [b'5', b'c' | b'C'] | [b'0', b'0']) {
            return Err(ApiError::bad_request("encoded '/', '\\' or NUL in path"));
        }
    }
    percent_encoding::percent_decode_str(seg)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::bad_request("path is not UTF-8"))
}

/// Reads one query parameter (first occurrence), `+` as space, percent-decoded. A value that
/// does not decode (see [`percent_decode`]) reads as empty.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.trim_start_matches('?').split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| percent_decode(&v.replace('+', " ")).unwrap_or_default())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(slug: &str, p: Platform, rv: &str) -> Target {
        Target::parse(slug, p.as_str(), rv).unwrap()
    }
    const SHA: &str = "4dac9db3fa9ca072f7861fd916bf04bdceac6069d0f3a886f5e523d922e918f1";

    #[test]
    fn parses_every_route() {
        assert_eq!(parse("GET", "/health").unwrap(), Route::Health);
        assert_eq!(parse("GET", "/api/manifest").unwrap(), Route::Manifest);
        assert_eq!(
            parse("HEAD", &format!("/api/assets/demo-app/ios/1.0.3/{SHA}.png")).unwrap(),
            Route::Asset {
                target: t("demo-app", Platform::Ios, "1.0.3"),
                sha256: SHA.into(),
                ext: Some("png".into()),
                head: true
            }
        );
        assert_eq!(
            parse("GET", &format!("/api/assets/demo-app/ios/1.0.3/{SHA}")).unwrap(),
            Route::Asset { target: t("demo-app", Platform::Ios, "1.0.3"), sha256: SHA.into(), ext: None, head: false }
        );
        assert_eq!(parse("POST", "/api/publish/demo-app").unwrap(), Route::PublishForm { slug: "demo-app".into() });
        assert_eq!(
            parse("POST", "/api/publish/demo-app/android/2.0.0/prepare").unwrap(),
            Route::PublishPrepare { target: t("demo-app", Platform::Android, "2.0.0") }
        );
        assert_eq!(
            parse("POST", "/api/publish/demo-app/android/2.0.0/commit").unwrap(),
            Route::PublishCommit { target: t("demo-app", Platform::Android, "2.0.0") }
        );
        assert_eq!(
            parse("PUT", &format!("/api/files/demo-app/ios/1.0.0%2Bb%281%29/{SHA}")).unwrap(),
            Route::UploadFile { target: t("demo-app", Platform::Ios, "1.0.0+b(1)"), sha256: SHA.into() }
        );
        assert_eq!(
            parse("PUT", &format!("/api/files/demo-app/ios/1.0.0/{SHA}/br")).unwrap(),
            Route::UploadEncoded {
                target: t("demo-app", Platform::Ios, "1.0.0"),
                sha256: SHA.into(),
                encoding: Encoding::Br
            }
        );
        assert_eq!(parse("PUT", &format!("/api/files/demo-app/ios/1.0.0/{SHA}/zstd")).unwrap_err().status, 400);
        let other = "0".repeat(64);
        assert_eq!(
            parse("PUT", &format!("/api/patches/demo-app/android/1.0.0/{other}/{SHA}")).unwrap(),
            Route::UploadPatch {
                target: t("demo-app", Platform::Android, "1.0.0"),
                base: other.clone(),
                sha256: SHA.into()
            }
        );
        assert_eq!(
            parse("HEAD", &format!("/api/patches/demo-app/android/1.0.0/{other}/{SHA}")).unwrap(),
            Route::PatchStatus {
                target: t("demo-app", Platform::Android, "1.0.0"),
                base: other.clone(),
                sha256: SHA.into()
            }
        );
        assert_eq!(
            parse("GET", &format!("/api/patches/demo-app/ios/1.0.0/{other}/{SHA}")).unwrap_err().allow,
            Some("PUT, HEAD")
        );
        assert_eq!(parse("PUT", &format!("/api/patches/demo-app/ios/1.0.0/x/{SHA}")).unwrap_err().status, 400);
        assert_eq!(parse("GET", "/api/updates").unwrap(), Route::ListUpdates);
        assert_eq!(
            parse("POST", "/api/rollout/demo-app/ios/1.0.3").unwrap(),
            Route::Rollout { target: t("demo-app", Platform::Ios, "1.0.3") }
        );
        assert_eq!(parse("GET", "/api/explain").unwrap(), Route::Explain);
        assert_eq!(parse("GET", "/api/rollout/demo-app/ios/1.0.3").unwrap_err().status, 405);
        assert_eq!(
            parse("DELETE", "/api/updates/demo-app/ios/1.0.3").unwrap(),
            Route::DeleteRuntime { target: t("demo-app", Platform::Ios, "1.0.3") }
        );
        let id = "0f8d2a8e-0000-4000-8000-000000000001";
        assert_eq!(
            parse("GET", &format!("/api/updates/demo-app/ios/1.0.3/{id}")).unwrap(),
            Route::GetUpdate { target: t("demo-app", Platform::Ios, "1.0.3"), id: id.into() }
        );
        assert_eq!(
            parse("DELETE", &format!("/api/updates/demo-app/ios/1.0.3/{}", id.to_uppercase())).unwrap(),
            Route::DeleteUpdate { target: t("demo-app", Platform::Ios, "1.0.3"), id: id.into() }
        );
        assert_eq!(parse("DELETE", "/api/updates/demo-app/ios/1.0.3/nope").unwrap_err().status, 400);
        assert_eq!(
            parse("PUT", &format!("/api/updates/demo-app/ios/1.0.3/{id}")).unwrap_err().allow,
            Some("GET, DELETE")
        );
        assert_eq!(
            parse("POST", "/api/updates/demo-app/ios/1.0.3/rollback").unwrap(),
            Route::Rollback { target: t("demo-app", Platform::Ios, "1.0.3") }
        );
        assert_eq!(
            parse("POST", "/api/updates/demo-app/ios/1.0.3/promote").unwrap(),
            Route::Promote { target: t("demo-app", Platform::Ios, "1.0.3") }
        );
        assert_eq!(parse("GET", "/api/updates/demo-app/ios/1.0.3/rollback").unwrap_err().allow, Some("POST"));
        assert_eq!(parse("POST", "/api/tokens").unwrap(), Route::CreateToken);
        assert_eq!(parse("GET", "/api/tokens").unwrap(), Route::ListTokens);
        assert_eq!(
            parse("DELETE", "/api/tokens/0123456789abcdef").unwrap(),
            Route::RevokeToken { id: "0123456789abcdef".into() }
        );
        assert_eq!(parse("GET", "/api/audit").unwrap(), Route::Audit);
        assert_eq!(parse("GET", "/api/health").unwrap(), Route::HealthReport);
        assert_eq!(parse("POST", "/api/health").unwrap_err().allow, Some("GET"));
        assert_eq!(parse("PUT", "/api/tokens").unwrap_err().allow, Some("GET, POST"));
    }

    #[test]
    fn only_reads_are_public() {
        let sha = format!("{SHA}.png");
        for (m, p) in [
            ("GET", "/health".to_string()),
            ("GET", "/api/manifest".into()),
            ("HEAD", format!("/api/assets/a/ios/1/{sha}")),
        ] {
            assert!(!parse(m, &p).unwrap().needs_auth(), "{p}");
        }
        let id = "0f8d2a8e-0000-4000-8000-000000000001";
        for (m, p) in [
            ("POST", "/api/publish/a".to_string()),
            ("POST", "/api/publish/a/ios/1/prepare".into()),
            ("POST", "/api/publish/a/ios/1/commit".into()),
            ("PUT", format!("/api/files/a/ios/1/{SHA}")),
            ("PUT", format!("/api/files/a/ios/1/{SHA}/gz")),
            ("PUT", format!("/api/patches/a/ios/1/{SHA}/{SHA}")),
            ("HEAD", format!("/api/patches/a/ios/1/{SHA}/{SHA}")),
            ("GET", "/api/updates".into()),
            ("GET", format!("/api/updates/a/ios/1/{id}")),
            ("DELETE", format!("/api/updates/a/ios/1/{id}")),
            ("DELETE", "/api/updates/a/ios/1".into()),
            ("POST", "/api/updates/a/ios/1/rollback".into()),
            ("POST", "/api/updates/a/ios/1/promote".into()),
            ("POST", "/api/tokens".into()),
            ("GET", "/api/tokens".into()),
            ("DELETE", "/api/tokens/0123456789abcdef".into()),
            ("GET", "/api/audit".into()),
            ("GET", "/api/health".into()),
        ] {
            assert!(parse(m, &p).unwrap().needs_auth(), "{m} {p}");
        }
    }

    #[test]
    fn unknown_and_wrong_method() {
        assert_eq!(parse("GET", "/nope").unwrap_err().status, 404);
        assert_eq!(parse("GET", "/api/assets/demo-app/ios").unwrap_err().status, 404);
        let e = parse("POST", "/api/manifest").unwrap_err();
        assert_eq!((e.status, e.allow), (405, Some("GET, HEAD")));
        assert_eq!(parse("GET", "/api/publish/demo-app").unwrap_err().allow, Some("POST"));
        assert_eq!(parse("POST", "/api/updates/demo-app/ios/1").unwrap_err().allow, Some("DELETE"));
    }

    #[test]
    fn hostile_segments_are_400() {
        for p in [
            format!("/api/assets/..%2F..%2Fother/ios/1/{SHA}"),
            format!("/api/assets/demo-app/web/1/{SHA}"),
            format!("/api/assets/demo-app/ios/..%5c/{SHA}"),
            format!("/api/assets/demo-app/ios/../{SHA}"),
            "/api/assets/demo-app/ios/1/not-a-hash".to_string(),
            format!("/api/assets/demo-app/ios/1/{SHA}.p%2Fng"),
            format!("/api/assets/demo-app/ios/1/{SHA}."),
            format!("/api/assets/demo-app/ios/1/{SHA}.png%0d%0aX-Injected:1"),
            format!("/api/assets/demo-app/ios/1/{}", SHA.to_uppercase()),
            format!("/api/assets/demo%00app/ios/1/{SHA}"),
            format!("/api/assets/demo-app/ios/%zz/{SHA}"),
            format!("/api/assets/demo-app/ios/%ff/{SHA}"),
        ] {
            assert_eq!(parse("GET", &p).unwrap_err().status, 400, "{p}");
        }
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param("slug=demo-app&platform=ios", "platform").as_deref(), Some("ios"));
        assert_eq!(query_param("?slug=a%2Db", "slug").as_deref(), Some("a-b"));
        assert_eq!(query_param("slug=a", "x"), None);
        assert_eq!(query_param("flag", "flag").as_deref(), Some(""));
        assert_eq!(query_param("slug=caf%C3%A9+app%2B1", "slug").as_deref(), Some("café app+1"));
        // A value that does not decode reads as empty, never as its raw text.
        for bad in ["%zz", "%+f", "%4", "%", "%2F", "%5c", "%00", "%ff"] {
            assert_eq!(query_param(&format!("slug={bad}"), "slug").as_deref(), Some(""), "{bad}");
        }
    }

    #[test]
    fn percent_decoding_rules() {
        assert_eq!(percent_decode("1.0.0%2Bb%281%29").unwrap(), "1.0.0+b(1)");
        assert_eq!(percent_decode("%2e%2E").unwrap(), "..");
        assert_eq!(percent_decode("caf%c3%a9").unwrap(), "café");
        for (bad, why) in [
            ("%", "malformed"),
            ("a%4", "malformed"),
            ("%zz", "malformed"),
            // u8::from_str_radix would read "+f" as 15; two hex digits are required.
            ("%+f", "malformed"),
            ("%-1", "malformed"),
            ("%%41", "malformed"),
            ("a%2Fb", "encoded"),
            ("a%2fb", "encoded"),
            ("a%5Cb", "encoded"),
            ("a%5cb", "encoded"),
            ("a%00b", "encoded"),
            ("%E2%80", "UTF-8"),
            ("%ff", "UTF-8"),
        ] {
            let e = percent_decode(bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
    }
}
