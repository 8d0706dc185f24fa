//! Who may do what: credentials, scopes and the audit log. Depends only on `protocol` and
//! `storage` types, never on the operations it guards.

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod secret;
pub mod tokens;
