//! End-to-end tests: a real `meridian` process between real HTTP clients and real upstream
//! servers, all on 127.0.0.1. The demo platform's tests (`stack`, `orders`, `urls`, `video`) need
//! the binary's `stack` feature (on by default).

mod harness;

mod admin;
mod auth_api_key;
mod auth_idp;
mod auth_introspection;
mod auth_jwt;
mod auth_oidc;
mod balancing;
mod breaker;
mod cache;
mod cache_policy;
mod clients;
mod dashboard;
mod embedded;
mod faulty_origin;
mod health;
mod hls;
mod httpfx;
#[cfg(feature = "stack")]
mod orders;
mod origins;
mod plugin_chain;
mod protection;
mod rate_limit;
mod reload;
mod retries;
mod routing;
#[cfg(feature = "stack")]
mod stack;
mod stale_on_error;
mod telemetry;
mod tier;
mod timeouts;
mod tls;
mod upgrade;
#[cfg(feature = "stack")]
mod urls;
mod vary_encoding;
#[cfg(feature = "stack")]
mod video;
mod workers;
