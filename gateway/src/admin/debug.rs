//! Debug-only hooks for tests that must make the engine misbehave on purpose. Compiled into
//! debug builds only, and even there answered only when the process runs with
//! `MERIDIAN_DEBUG_HOOKS=1`; a release binary has no such endpoint.
//!
//! `POST /admin/debug/stall?worker=N&ms=M` blocks worker `N`'s thread for `M` milliseconds
//! (at most a minute), as a deadlock or a blocking call on it would: the stall watchdog's
//! end-to-end test uses it.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use crate::server::watchdog::WorkerHealth;

/// The longest stall the hook makes.
const MAX_STALL: Duration = Duration::from_secs(60);

/// Whether the hooks are switched on for this process.
pub fn enabled() -> bool {
    std::env::var_os("MERIDIAN_DEBUG_HOOKS").is_some_and(|v| v == "1")
}

/// Blocks the worker named in `query` (`worker=N&ms=M`) for the time it names. Returns the
/// status and a JSON body.
pub fn stall(workers: &WorkerHealth, query: &str) -> (StatusCode, serde_json::Value) {
    let mut worker = None;
    let mut ms = None;
    for (key, value) in form_pairs(query) {
        match key {
            "worker" => worker = value.parse::<usize>().ok(),
            "ms" => ms = value.parse::<u64>().ok(),
            _ => {}
        }
    }
    let (Some(worker), Some(ms)) = (worker, ms) else {
        return (
            StatusCode::BAD_REQUEST,
            json!({ "errors": ["expected ?worker=N&ms=M"] }),
        );
    };
    let pause = Duration::from_millis(ms).min(MAX_STALL);
    let Some(handle) = workers.handle(worker) else {
        return (
            StatusCode::NOT_FOUND,
            json!({ "errors": [format!("no running worker {worker}")] }),
        );
    };
    // The point of the hook: block the worker's thread, as a bug would.
    handle.spawn(async move { std::thread::sleep(pause) });
    log::warn!("debug hook: stalling worker {worker} for {pause:?}");
    (
        StatusCode::ACCEPTED,
        json!({ "worker": worker, "ms": u64::try_from(pause.as_millis()).unwrap_or(u64::MAX) }),
    )
}

fn form_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').filter_map(|pair| pair.split_once('='))
}
