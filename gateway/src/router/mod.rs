//! Routing (stub).
