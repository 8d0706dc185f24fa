//! The Capacitor and APK routes, parsed from the path segments after `/api/capacitor/<appId>/`
//! and `/api/apk/<appId>/`, and who may call each: the plugin's endpoints and the downloads are
//! public reads; every write goes through the deploy API with the same tokens and scopes as an
//! Expo app (upload/publish/channel settings: `publish`; rollback: `rollback`; delete:
//! `delete`; listing: `read`).

use crate::access::auth::Action;
use crate::error::ApiError;
use crate::validate;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelVerb {
    /// POST: `setChannel`.
    Set,
    /// PUT: `getChannel`.
    Get,
    /// GET: `listChannels`.
    List,
    /// DELETE: `unsetChannel` of old plugins.
    Unset,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapRoute {
    /// `POST /api/capacitor/:app/updates` — the plugin's `updateUrl`.
    Updates { slug: String },
    /// `POST /api/capacitor/:app/stats` — `statsUrl`.
    Stats { slug: String },
    /// `POST|PUT|GET|DELETE /api/capacitor/:app/channel_self` — `channelUrl`.
    ChannelSelf { slug: String, verb: ChannelVerb },
    /// `POST /api/capacitor/:app/check` — hand-written setups' `{version, url, checksum}` check.
    Check { slug: String },
    /// `GET|HEAD /api/capacitor/:app/bundles/:sha256.zip` — a bundle's bytes.
    Bundle { slug: String, sha256: String, head: bool },
    /// `PUT /api/capacitor/:app/bundles/:sha256` — upload a bundle zip (raw body).
    UploadBundle { slug: String, sha256: String },
    /// `POST /api/capacitor/:app/publish` — JSON (after an upload) or multipart/form-data.
    Publish { slug: String },
    /// `GET /api/capacitor/:app/versions` — channels, settings and history.
    List { slug: String },
    /// `DELETE /api/capacitor/:app/versions/:version?channel=`
    DeleteVersion { slug: String, version: String },
    /// `POST /api/capacitor/:app/rollback`
    Rollback { slug: String },
    /// `POST /api/capacitor/:app/channels/:channel` — public / self-assign / default.
    ChannelSettings { slug: String, channel: String },
    /// `GET /api/apk/:app/latest?channel=`
    ApkLatest { slug: String },
    /// `GET|HEAD /api/apk/:app/files/:sha256.apk`
    ApkFile { slug: String, sha256: String, head: bool },
    /// `PUT /api/apk/:app/files/:sha256` — upload an APK (raw body).
    UploadApk { slug: String, sha256: String },
    /// `POST /api/apk/:app/publish`
    ApkPublish { slug: String },
}

fn sha(s: &str) -> Result<String, ApiError> {
    crate::protocol::hash::parse_hex::<32>(s)
        .map(|_| s.to_string())
        .ok_or_else(|| ApiError::bad_request("file id must be a lowercase SHA-256 hex digest"))
}

/// `segs` is the whole decoded path, starting `api`, `capacitor`|`apk`, the app id.
pub fn parse(method: &str, segs: &[&str]) -> Result<CapRoute, ApiError> {
    let allow = |allowed: &'static str| -> Result<(), ApiError> {
        if allowed.split(", ").any(|m| m == method) {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(allowed))
        }
    };
    let (kind, app, rest) = match segs {
        ["api", kind @ ("capacitor" | "apk"), app, rest @ ..] => (*kind, *app, rest),
        _ => return Err(ApiError::not_found("no such route")),
    };
    let slug = validate::slug(app)?.to_string();
    let head = method == "HEAD";
    Ok(match (kind, rest) {
        ("capacitor", ["updates"]) => allow("POST").map(|_| CapRoute::Updates { slug })?,
        ("capacitor", ["stats"]) => allow("POST").map(|_| CapRoute::Stats { slug })?,
        ("capacitor", ["check"]) => allow("POST").map(|_| CapRoute::Check { slug })?,
        ("capacitor", ["channel_self"]) => {
            allow("POST, PUT, GET, DELETE")?;
            let verb = match method {
                "POST" => ChannelVerb::Set,
                "PUT" => ChannelVerb::Get,
                "GET" => ChannelVerb::List,
                _ => ChannelVerb::Unset,
            };
            CapRoute::ChannelSelf { slug, verb }
        }
        ("capacitor", ["bundles", file]) => match file.strip_suffix(".zip") {
            Some(h) => allow("GET, HEAD").and_then(|_| Ok(CapRoute::Bundle { slug, sha256: sha(h)?, head }))?,
            None => allow("PUT").and_then(|_| Ok(CapRoute::UploadBundle { slug, sha256: sha(file)? }))?,
        },
        ("capacitor", ["publish"]) => allow("POST").map(|_| CapRoute::Publish { slug })?,
        ("capacitor", ["versions"]) => allow("GET").map(|_| CapRoute::List { slug })?,
        ("capacitor", ["versions", v]) => {
            allow("DELETE")?;
            CapRoute::DeleteVersion { slug, version: super::state::version(v)?.to_string() }
        }
        ("capacitor", ["rollback"]) => allow("POST").map(|_| CapRoute::Rollback { slug })?,
        ("capacitor", ["channels", c]) => {
            allow("POST")?;
            CapRoute::ChannelSettings { slug, channel: validate::channel(c)?.to_string() }
        }
        ("apk", ["latest"]) => allow("GET").map(|_| CapRoute::ApkLatest { slug })?,
        ("apk", ["files", file]) => match file.strip_suffix(".apk") {
            Some(h) => allow("GET, HEAD").and_then(|_| Ok(CapRoute::ApkFile { slug, sha256: sha(h)?, head }))?,
            None => allow("PUT").and_then(|_| Ok(CapRoute::UploadApk { slug, sha256: sha(file)? }))?,
        },
        ("apk", ["publish"]) => allow("POST").map(|_| CapRoute::ApkPublish { slug })?,
        _ => return Err(ApiError::not_found("no such route")),
    })
}

impl CapRoute {
    pub fn slug(&self) -> &str {
        match self {
            CapRoute::Updates { slug }
            | CapRoute::Stats { slug }
            | CapRoute::ChannelSelf { slug, .. }
            | CapRoute::Check { slug }
            | CapRoute::Bundle { slug, .. }
            | CapRoute::UploadBundle { slug, .. }
            | CapRoute::Publish { slug }
            | CapRoute::List { slug }
            | CapRoute::DeleteVersion { slug, .. }
            | CapRoute::Rollback { slug }
            | CapRoute::ChannelSettings { slug, .. }
            | CapRoute::ApkLatest { slug }
            | CapRoute::ApkFile { slug, .. }
            | CapRoute::UploadApk { slug, .. }
            | CapRoute::ApkPublish { slug } => slug,
        }
    }

    /// Plugin endpoints and downloads are public; everything else needs a credential.
    pub fn needs_auth(&self) -> bool {
        self.requirement().is_ok()
    }

    /// The scope a deploy route needs and the app it acts on.
    pub fn requirement(&self) -> Result<(Action, Option<String>), ApiError> {
        let action = match self {
            CapRoute::UploadBundle { .. }
            | CapRoute::Publish { .. }
            | CapRoute::ChannelSettings { .. }
            | CapRoute::UploadApk { .. }
            | CapRoute::ApkPublish { .. } => Action::Publish,
            CapRoute::Rollback { .. } => Action::Rollback,
            CapRoute::DeleteVersion { .. } => Action::Delete,
            CapRoute::List { .. } => Action::Read,
            _ => return Err(ApiError::internal("public routes are not deploy operations")),
        };
        Ok((action, Some(self.slug().to_string())))
    }

    /// The audit action of a write (uploads and reads are not audited, as for Expo apps).
    pub fn audit_action(&self) -> Option<&'static str> {
        Some(match self {
            CapRoute::Publish { .. } => "capacitor-publish",
            CapRoute::Rollback { .. } => "capacitor-rollback",
            CapRoute::DeleteVersion { .. } => "capacitor-delete",
            CapRoute::ChannelSettings { .. } => "capacitor-channel",
            CapRoute::ApkPublish { .. } => "apk-publish",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "4ec6b0cdf50f1b7e8bd6b3998b4607faaa67e78db3e31b6448838c7b303fa043";

    fn p(method: &str, path: &str) -> Result<CapRoute, ApiError> {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        parse(method, &segs)
    }

    #[test]
    fn capacitor_routes_parse_with_reverse_dns_app_ids() {
        let slug = || "com.example.app".to_string();
        assert_eq!(p("POST", "/api/capacitor/com.example.app/updates").unwrap(), CapRoute::Updates { slug: slug() });
        assert_eq!(
            p("GET", "/api/capacitor/com.example.app/channel_self").unwrap(),
            CapRoute::ChannelSelf { slug: slug(), verb: ChannelVerb::List }
        );
        assert_eq!(
            p("HEAD", &format!("/api/capacitor/com.example.app/bundles/{SHA}.zip")).unwrap(),
            CapRoute::Bundle { slug: slug(), sha256: SHA.into(), head: true }
        );
        assert_eq!(
            p("PUT", &format!("/api/capacitor/com.example.app/bundles/{SHA}")).unwrap(),
            CapRoute::UploadBundle { slug: slug(), sha256: SHA.into() }
        );
        assert_eq!(
            p("DELETE", "/api/capacitor/com.example.app/versions/1.0.1").unwrap(),
            CapRoute::DeleteVersion { slug: slug(), version: "1.0.1".into() }
        );
        assert_eq!(
            p("GET", &format!("/api/apk/com.example.app/files/{SHA}.apk")).unwrap(),
            CapRoute::ApkFile { slug: slug(), sha256: SHA.into(), head: false }
        );
        assert_eq!(p("GET", "/api/capacitor/com.example.app/updates").unwrap_err().allow, Some("POST"));
        assert_eq!(p("PUT", &format!("/api/capacitor/a/bundles/{SHA}.zip")).unwrap_err().status, 405);
        assert_eq!(p("POST", "/api/capacitor/../updates").unwrap_err().status, 400);
        assert_eq!(p("POST", "/api/capacitor/a/versions/builtin").unwrap_err().status, 405);
        assert_eq!(p("DELETE", "/api/capacitor/a/versions/builtin").unwrap_err().status, 400);
        assert_eq!(p("GET", "/api/apk/a/nope").unwrap_err().status, 404);
    }

    #[test]
    fn capacitor_plugin_routes_are_public_and_writes_need_their_scope() {
        let public = ["/api/capacitor/a/updates", "/api/capacitor/a/stats", "/api/capacitor/a/check"];
        for path in public {
            assert!(!p("POST", path).unwrap().needs_auth(), "{path}");
        }
        assert!(!p("GET", "/api/apk/a/latest").unwrap().needs_auth());
        assert_eq!(p("POST", "/api/capacitor/a/rollback").unwrap().requirement().unwrap().0, Action::Rollback);
        assert_eq!(p("GET", "/api/capacitor/a/versions").unwrap().requirement().unwrap().0, Action::Read);
    }
}
