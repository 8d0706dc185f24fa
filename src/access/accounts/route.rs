//! The account routes (`/api/auth/*`, `/api/users`, `/api/apps/*`) as a plain enum, and what each
//! requires — the same (action, app) pair `deploy::dispatch::requirement` gives deploy routes, so
//! one `auth::authorize` decides for both.

use crate::access::auth::Action;
use crate::access::tokens::is_token_id as tokens_id_ok;
use crate::error::ApiError;
use crate::validate;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountRoute {
    /// `POST /api/auth/login` — public, rate limited.
    Login,
    /// `POST /api/auth/logout`
    Logout,
    /// `GET /api/auth/me` — who am I, my apps, the CSRF token of a cookie session.
    Me,
    /// `POST /api/auth/password`
    ChangePassword,
    /// `POST /api/users` — admin.
    CreateUser,
    /// `GET /api/apps` — the apps the caller can see.
    ListApps,
    /// `POST /api/apps` — admin: register an app with its first owner.
    CreateApp,
    /// `GET /api/apps/:slug/members`
    Members { slug: String },
    /// `PUT /api/apps/:slug/members/:login` `{role}`
    SetMember { slug: String, login: String },
    /// `DELETE /api/apps/:slug/members/:login`
    RemoveMember { slug: String, login: String },
    /// `GET /api/apps/:slug/keys`
    ListKeys { slug: String },
    /// `POST /api/apps/:slug/keys` `{name, scopes, expiresIn?}`
    CreateKey { slug: String },
    /// `PATCH /api/apps/:slug/keys/:id` `{name}`
    RenameKey { slug: String, id: String },
    /// `DELETE /api/apps/:slug/keys/:id`
    RevokeKey { slug: String, id: String },
}

/// What a route needs from its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Anyone (sign-in).
    Public,
    /// Any authenticated caller; the handler answers for itself (who am I, sign out).
    SignedIn,
    /// `auth::authorize(who, action, app)`.
    Act(Action, Option<String>),
}

impl AccountRoute {
    pub fn need(&self) -> Need {
        use AccountRoute::*;
        let app = |s: &String| Some(s.clone());
        match self {
            Login => Need::Public,
            Logout | Me | ChangePassword | ListApps => Need::SignedIn,
            CreateUser | CreateApp => Need::Act(Action::Admin, None),
            Members { slug } => Need::Act(Action::Read, app(slug)),
            SetMember { slug, .. } | RemoveMember { slug, .. } => Need::Act(Action::Manage, app(slug)),
            ListKeys { slug } | CreateKey { slug } | RenameKey { slug, .. } | RevokeKey { slug, .. } => {
                Need::Act(Action::Manage, app(slug))
            }
        }
    }

    /// The app a route names in its path.
    pub fn app(&self) -> Option<&str> {
        match self.need() {
            Need::Act(_, Some(_)) => match self {
                AccountRoute::Members { slug }
                | AccountRoute::SetMember { slug, .. }
                | AccountRoute::RemoveMember { slug, .. }
                | AccountRoute::ListKeys { slug }
                | AccountRoute::CreateKey { slug }
                | AccountRoute::RenameKey { slug, .. }
                | AccountRoute::RevokeKey { slug, .. } => Some(slug),
                _ => None,
            },
            _ => None,
        }
    }
}

/// `Some` when `segs` (the decoded path) is an account route; `None` leaves it to the caller.
pub fn parse(method: &str, segs: &[&str]) -> Option<Result<AccountRoute, ApiError>> {
    use AccountRoute::*;
    let allow = |allowed: &'static str, r: AccountRoute| -> Result<AccountRoute, ApiError> {
        if allowed.split(", ").any(|m| m == method) {
            Ok(r)
        } else {
            Err(ApiError::method_not_allowed(allowed))
        }
    };
    let slug = |s: &str| validate::slug(s).map(str::to_string);
    let login = |s: &str| super::login(s).map(str::to_string);
    let key_id = |s: &str| {
        if tokens_id_ok(s) {
            Ok(s.to_string())
        } else {
            Err(ApiError::bad_request("API key id must be 16 lowercase hex digits"))
        }
    };
    Some(match segs {
        ["api", "auth", "login"] => allow("POST", Login),
        ["api", "auth", "logout"] => allow("POST", Logout),
        ["api", "auth", "me"] => allow("GET", Me),
        ["api", "auth", "password"] => allow("POST", ChangePassword),
        ["api", "users"] => allow("POST", CreateUser),
        ["api", "apps"] => match method {
            "GET" => Ok(ListApps),
            "POST" => Ok(CreateApp),
            _ => Err(ApiError::method_not_allowed("GET, POST")),
        },
        ["api", "apps", s, "members"] => slug(s).and_then(|slug| allow("GET", Members { slug })),
        ["api", "apps", s, "members", l] => slug(s).and_then(|slug| {
            let login = login(l)?;
            match method {
                "PUT" => Ok(SetMember { slug, login }),
                "DELETE" => Ok(RemoveMember { slug, login }),
                _ => Err(ApiError::method_not_allowed("PUT, DELETE")),
            }
        }),
        ["api", "apps", s, "keys"] => slug(s).and_then(|slug| match method {
            "GET" => Ok(ListKeys { slug }),
            "POST" => Ok(CreateKey { slug }),
            _ => Err(ApiError::method_not_allowed("GET, POST")),
        }),
        ["api", "apps", s, "keys", id] => slug(s).and_then(|slug| {
            let id = key_id(id)?;
            match method {
                "PATCH" => Ok(RenameKey { slug, id }),
                "DELETE" => Ok(RevokeKey { slug, id }),
                _ => Err(ApiError::method_not_allowed("PATCH, DELETE")),
            }
        }),
        ["api", "auth" | "users" | "apps", ..] => Err(ApiError::not_found("no such account route")),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: &str, path: &str) -> Option<Result<AccountRoute, ApiError>> {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        parse(method, &segs)
    }

    #[test]
    fn parse_every_account_route() {
        let s = || "demo-app".to_string();
        let id = "0123456789abcdef";
        let cases = [
            ("POST", "/api/auth/login", AccountRoute::Login),
            ("POST", "/api/auth/logout", AccountRoute::Logout),
            ("GET", "/api/auth/me", AccountRoute::Me),
            ("POST", "/api/auth/password", AccountRoute::ChangePassword),
            ("POST", "/api/users", AccountRoute::CreateUser),
            ("GET", "/api/apps", AccountRoute::ListApps),
            ("POST", "/api/apps", AccountRoute::CreateApp),
            ("GET", "/api/apps/demo-app/members", AccountRoute::Members { slug: s() }),
            ("PUT", "/api/apps/demo-app/members/bob", AccountRoute::SetMember { slug: s(), login: "bob".into() }),
            ("DELETE", "/api/apps/demo-app/members/bob", AccountRoute::RemoveMember { slug: s(), login: "bob".into() }),
            ("GET", "/api/apps/demo-app/keys", AccountRoute::ListKeys { slug: s() }),
            ("POST", "/api/apps/demo-app/keys", AccountRoute::CreateKey { slug: s() }),
            ("PATCH", &format!("/api/apps/demo-app/keys/{id}"), AccountRoute::RenameKey { slug: s(), id: id.into() }),
            ("DELETE", &format!("/api/apps/demo-app/keys/{id}"), AccountRoute::RevokeKey { slug: s(), id: id.into() }),
        ];
        for (m, path, want) in cases {
            assert_eq!(p(m, path).unwrap().unwrap(), want, "{m} {path}");
        }
    }

    #[test]
    fn parse_wrong_method_405_bad_segment_400_other_paths_none() {
        assert_eq!(p("GET", "/api/auth/login").unwrap().unwrap_err().status, 405);
        assert_eq!(p("POST", "/api/apps/demo-app/members/Bob").unwrap().unwrap_err().status, 400);
        assert_eq!(p("DELETE", "/api/apps/_system/keys/0123456789abcdef").unwrap().unwrap_err().status, 400);
        assert_eq!(p("PATCH", "/api/apps/demo-app/keys/..").unwrap().unwrap_err().status, 400);
        assert_eq!(p("GET", "/api/auth/nothing").unwrap().unwrap_err().status, 404);
        assert!(p("GET", "/api/updates").is_none());
    }
}
