//! Where bytes live: the object-store seam (R2 in the Worker, memory in tests), the key layout,
//! and the immutable update record. Nothing here decides what may be written.

pub mod layout;
pub mod record;
pub mod rollout;
pub mod store;
