//! Upstreams (stub).
