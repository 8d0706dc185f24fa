//! End-to-end tests: the real Worker on workerd (`wrangler dev`, simulated R2) driven over HTTP
//! and with the real publish CLI. One binary, so the servers start once for all suites.
//!
//! Invariant: tests share servers and never reset them, so every test works only on apps it
//! made up itself and never assumes the bucket, the token list or the audit log is empty.
//!
//! Adding a test:
//! - put it in the suite module it belongs to (or a new `mod` below), named
//!   `subject_condition_outcome`;
//! - `let s = server();` for the shared default server, or `server_with(Config::X)` when the
//!   test needs one of the other configurations (see `util::Config`; add a variant only for a
//!   setting no existing server has — each variant is one more `wrangler dev` start);
//! - publish only under `unique_slug("what-it-tests")`, one per app the test needs, and compare
//!   state with `s.fingerprint(&[&slug])` (that app's objects only); filter shared lists (tokens,
//!   audit) by your own ids or `since`;
//! - helpers: `s.check`, `s.publish`/`s.cli`/`run_cli`, `s.post_form`, `s.api`, `http`.
//!
//! Servers are torn down when the binary exits, including on panics (see `util`).

mod util;

mod accounts;
mod browser;
mod capacitor;
mod cli;
mod deploy;
mod health;
mod hostile;
mod patches;
mod protocol;
mod releases;
mod rollouts;
mod signing;
mod tokens;
mod writer;
