//! End-to-end tests: a real `meridian` process between real HTTP clients and real upstream
//! servers, all on 127.0.0.1.

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
mod orders;
mod origins;
mod plugin_chain;
mod protection;
mod rate_limit;
mod reload;
mod retries;
mod routing;
mod stack;
mod stale_on_error;
mod telemetry;
mod tier;
mod timeouts;
mod tls;
mod upgrade;
mod urls;
mod vary_encoding;
mod video;
mod workers;
