//! The Meridian proxy engine.
//!
//! A request flows through the modules in this order:
//!
//! listener ([`server`]) → router ([`router`], compiled into a [`plan::Plan`]) → plugin chain
//! (request phase) → upstream selection ([`upstream`]: LB, health, outlier ejection) → pingora
//! connection pool → plugin chain (response phase) → logging and metrics ([`telemetry`]).
//!
//! [`proxy`] holds the pingora `ProxyHttp` implementation that strings these together;
//! [`config`] turns YAML into a validated model; [`reload`] swaps plans atomically; [`admin`]
//! serves the admin API; [`builder`] is the public entry point for embedders.

pub mod admin;
pub mod builder;
pub mod config;
pub mod control;
pub mod plan;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod server;
pub mod telemetry;
pub mod upstream;

// The README's Rust snippets are compiled by `cargo test --doc`, so the embedding example there
// cannot drift from the API. Its `sh`, `text` and `yaml` blocks are not Rust and are skipped; a
// fence without a language would be compiled as Rust.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
