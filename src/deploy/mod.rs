//! Deploy operations (publish, commit, delete, rollback, promote) and the dispatcher that maps
//! a parsed deploy request and a credential to an operation, its audit entry and the check-cache
//! invalidations to perform.

pub mod api;
pub mod formdata;
pub mod formpublish;
pub mod service;
