//! The background task that writes pending clicks to the store: every `flush_interval`,
//! earlier when [`Clicks`] asks for it, and once more when told to stop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;

use super::clicks::Clicks;
use super::store::UrlStore;
use crate::http::BoxError;

/// Tries of the final flush at shutdown before giving up (with doubling pauses from
/// [`FINAL_RETRY_PAUSE`]).
const FINAL_TRIES: u32 = 5;

/// First pause between tries of the final flush.
const FINAL_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Flushes `clicks` into `store` until `stop` fires (or its sender is dropped), then flushes
/// what is left. Fails only if that last flush cannot be written after a few tries; the
/// error says how many clicks are lost.
pub async fn run(
    clicks: Arc<Clicks>,
    store: Arc<dyn UrlStore>,
    interval: Duration,
    mut stop: oneshot::Receiver<()>,
) -> Result<(), BoxError> {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // After a failure, early flushes wait for the next tick so a failing store is not hammered.
    let mut failing = false;
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = tick.tick() => {}
            () = clicks.flush_wanted(), if !failing => {}
        }
        match flush(&clicks, &store).await {
            Ok(_) => failing = false,
            Err(e) => {
                failing = true;
                log::warn!(
                    "urls: writing clicks failed, {} kept for the next try: {e}",
                    clicks.pending()
                );
            }
        }
    }
    let mut pause = FINAL_RETRY_PAUSE;
    let mut attempt = 1;
    loop {
        match flush(&clicks, &store).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt < FINAL_TRIES => {
                log::warn!("urls: final flush failed (try {attempt}): {e}");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            Err(e) => {
                return Err(format!(
                    "urls: {} clicks could not be written at shutdown: {e}",
                    clicks.pending()
                )
                .into())
            }
        }
    }
}

async fn flush(clicks: &Arc<Clicks>, store: &Arc<dyn UrlStore>) -> Result<u64, BoxError> {
    let (clicks, store) = (clicks.clone(), store.clone());
    Ok(tokio::task::spawn_blocking(move || clicks.flush(store.as_ref())).await??)
}
