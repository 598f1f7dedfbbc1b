//! Human units (stub).
use std::time::Duration;

/// Formats a duration.
pub fn format_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}
