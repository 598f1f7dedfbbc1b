//! The outbox relay: moves committed events from the outbox onto the consumers' queues. An
//! order's events and their outbox rows commit in one transaction, and publishing marks the
//! rows in another, so a crash in between loses nothing: the next run publishes what is left.

use std::sync::Arc;
use std::time::Duration;

use super::queue::{self, Consumer};
use super::store::{self, now_ms};
use super::Ctx;

/// Outbox rows published per transaction.
const BATCH: usize = 256;

/// How often the relay looks without being woken (it is woken after every append).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Publishes outbox rows until the service stops.
pub async fn relay(ctx: Arc<Ctx>) {
    let mut stop = ctx.stop.clone();
    loop {
        match ctx
            .store
            .tx(|tx| {
                let published = queue::publish(tx, now_ms(), BATCH)?;
                Ok((published, store::outbox_pending(tx)?))
            })
            .await
        {
            Ok((published, pending)) => {
                ctx.metrics.outbox_pending.set(pending);
                if published > 0 {
                    for consumer in Consumer::ALL {
                        ctx.wake(consumer).notify_one();
                    }
                    if pending > 0 {
                        continue;
                    }
                }
            }
            Err(e) => log::error!("orders outbox relay: {e}"),
        }
        if ctx.stopping() {
            return;
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = ctx.relay_wake.notified() => {}
            () = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}
