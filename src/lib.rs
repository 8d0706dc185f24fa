//! Expo Updates server core: protocol, storage layout, validation and deploy logic as plain
//! Rust (host-tested), with a thin workers-rs adapter compiled only for wasm32.

pub mod api;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod check;
pub mod config;
pub mod error;
pub mod export;
pub mod formdata;
pub mod formpublish;
pub mod hash;
pub mod id;
pub mod layout;
pub mod manifest;
pub mod multipart;
pub mod pem;
pub mod record;
pub mod route;
pub mod service;
pub mod sfv;
pub mod store;
pub mod time;
pub mod tokens;
pub mod validate;

#[cfg(target_arch = "wasm32")]
mod worker_adapter;
