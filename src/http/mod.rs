//! HTTP at the edge of the core: routes parsed into a plain enum.

pub mod route;
