-- The audit log of deploy and account operations (it lived in R2 under _system/audit/ before;
-- the hourly cron moves what is left there into this table, one bounded page per run).
-- `entry` is the sanitized entry's JSON exactly as GET /api/audit returns it, at most 4 KiB
-- (src/access/audit.rs MAX_ENTRY_BYTES); the other columns are what reads filter and order by.

CREATE TABLE audit (
  id INTEGER PRIMARY KEY,
  -- ms since the epoch
  at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  -- the app the entry names (NULL: cross-app only, e.g. token operations)
  slug TEXT,
  status INTEGER NOT NULL,
  entry TEXT NOT NULL CHECK (length(CAST(entry AS BLOB)) <= 4096),
  -- the R2 name of an entry moved from R2 (`<inverted ms>-<8 hex>`): a repeated move of the
  -- same entry inserts nothing (INSERT OR IGNORE); NULL for entries written here directly
  r2_key TEXT UNIQUE
);
-- Pages are keyset-paginated newest first: per app, and across apps (the cursor is (at, id)).
CREATE INDEX audit_by_app ON audit(slug, at DESC, id DESC);
CREATE INDEX audit_by_time ON audit(at DESC, id DESC);
