-- Control plane: people, the apps they work on and their role in each, sessions, and login
-- attempts for rate limiting. Bytes, manifests, scoped tokens and the audit log stay in R2; the
-- public manifest check never reads this database.

CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  login TEXT NOT NULL UNIQUE,
  -- pbkdf2-sha256$<iterations>$<salt, base64url>$<derived key, base64url>
  password_hash TEXT NOT NULL,
  is_admin INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  password_changed_at INTEGER NOT NULL
);

CREATE TABLE apps (
  slug TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL,
  created_by INTEGER REFERENCES users(id) ON DELETE SET NULL
);

CREATE TABLE memberships (
  app_slug TEXT NOT NULL REFERENCES apps(slug) ON DELETE CASCADE,
  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  role TEXT NOT NULL CHECK (role IN ('owner', 'publisher', 'viewer')),
  created_at INTEGER NOT NULL,
  PRIMARY KEY (app_slug, user_id)
);
-- Authentication loads one user's memberships; the members page lists one app's.
CREATE INDEX memberships_by_user ON memberships(user_id);

-- Only the SHA-256 of a session token is stored; a cookie session is never accepted as a bearer
-- token and the other way round.
CREATE TABLE sessions (
  token_hash TEXT PRIMARY KEY,
  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('cookie', 'bearer')),
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions(user_id);
CREATE INDEX sessions_by_expiry ON sessions(expires_at);

-- Failed logins per account ("login:<login>") and per client address ("ip:<address>") in a
-- fixed window.
CREATE TABLE login_attempts (
  key TEXT PRIMARY KEY,
  window_start INTEGER NOT NULL,
  failures INTEGER NOT NULL
);
