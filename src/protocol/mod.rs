//! The wire formats of expo-updates: manifests, multipart bodies, directives, structured
//! headers, signatures' keys, timestamps, ids and digests, and `npx expo export` output. Pure
//! functions of their input; nothing here does I/O or knows about storage.

pub mod export;
pub mod hash;
pub mod id;
pub mod manifest;
pub mod multipart;
pub mod pem;
pub mod sfv;
pub mod time;
