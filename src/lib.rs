//! expo-ota: a self-hosted over-the-air update server for Expo apps on Cloudflare Workers.
//!
//! The core decides everything and is plain Rust, tested on the host; adapters only translate.
//! Floors, from the ground up (a module only imports from its own floor or below):
//!
//! - [`error`], [`validate`], [`config`] — the ground: one error value, input rules, limits.
//! - [`protocol`] — expo-updates wire formats: manifest, multipart, directives, SFV, PEM, time,
//!   ids, digests, `npx expo export` output.
//! - [`storage`] — the `ObjectStore` seam (R2 / memory), the key layout, update records.
//! - [`access`] — credentials, scopes, the audit log.
//! - [`check`] — the public manifest check and its per-isolate cache.
//! - [`deploy`] — publish, commit, delete, rollback, promote, and the dispatcher that maps a deploy
//!   request and a credential to an operation, an audit entry and cache invalidations.
//! - [`capacitor`] — Capacitor apps (`@capgo/capacitor-updater`) and APK downloads: the plugin's
//!   protocol, the per-app Capacitor state and its writes, bundle zip checks (beside [`deploy`],
//!   whose dispatcher and writer run its operations).
//! - [`health`] — update health from the client's own headers: signals, the per-isolate batch,
//!   counters, the automatic-halt rule.
//! - [`http`] — routes parsed into a plain enum.
//! - `worker` (wasm32 only) — the workers-rs adapter: `worker::Request` ↔ core types, streaming,
//!   R2, WebCrypto, the per-app writer Durable Object.
//!
//! `publish-cli` (its own crate) is the other adapter: the publisher's command line and a native
//! test server over the same core.

pub mod access;
pub mod capacitor;
pub mod check;
pub mod config;
pub mod deploy;
pub mod error;
pub mod health;
pub mod http;
pub mod protocol;
pub mod storage;
pub mod validate;

#[cfg(target_arch = "wasm32")]
mod worker;
