//! HTTP at the edge of the core: routes parsed into a plain enum, and the one place where each
//! layer's errors become a status and a JSON body.

pub mod route;
pub mod status;
