//! Telemetry (stub).
