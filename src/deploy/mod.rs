//! Deploy operations (publish, commit, delete, rollback, promote, file collection), the per-app
//! writer that serializes them, and the dispatcher that maps a parsed deploy request and a
//! credential to an operation, its audit entry and the check-cache invalidations to perform.

pub mod api;
pub mod dispatch;
pub mod formdata;
pub mod formpublish;
pub mod gc;
pub mod patches;
pub mod release;
pub mod rollout;
pub mod service;
#[cfg(test)]
pub(crate) mod testing;
pub mod writer;
