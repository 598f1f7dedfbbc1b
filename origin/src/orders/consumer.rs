//! Runs a consumer over its durable queue: claims due messages in small batches, handles them
//! concurrently, and acknowledges, retries (exponential backoff with jitter) or dead-letters
//! each. Delivery is at least once; the handlers are idempotent, so a message handled twice has
//! one effect.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::queue::{self, Consumer, Failed, Message};
use super::store::{now_ms, StoreError};
use super::{notifier, projection, saga, Ctx};

/// Messages claimed at once by one consumer.
const BATCH: usize = 16;

/// Longest an idle consumer sleeps before looking again (it is woken when the relay publishes
/// or a dead letter is replayed, and sleeps only until its next retry is due).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Why a message was not handled.
#[derive(Debug)]
pub enum HandleError {
    /// It failed; counts as an attempt (retried, or dead-lettered when out of attempts).
    Failed(String),
    /// The service is stopping; the message goes back on the queue as it was.
    Interrupted,
}

impl From<StoreError> for HandleError {
    fn from(e: StoreError) -> Self {
        Self::Failed(e.to_string())
    }
}

/// Consumes `consumer`'s queue until the service stops; finishes the batch in hand first.
pub async fn run(ctx: Arc<Ctx>, consumer: Consumer) {
    let mut stop = ctx.stop.clone();
    loop {
        if ctx.stopping() {
            return;
        }
        let claimed = ctx
            .store
            .tx(move |tx| {
                let now = now_ms();
                let batch = queue::claim(tx, consumer, now, BATCH)?;
                let due = queue::next_due(tx, consumer)?.map(|at| at.saturating_sub(now));
                Ok((batch, due))
            })
            .await;
        let (batch, due_in_ms) = claimed.unwrap_or_else(|e| {
            log::error!("orders {}: cannot claim messages: {e}", consumer.name());
            (Vec::new(), None)
        });
        if batch.is_empty() {
            // Sleep until the next retry falls due, or a wake-up (new messages, a replay).
            let idle = due_in_ms
                .map_or(IDLE_POLL, |ms| {
                    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
                })
                .min(IDLE_POLL);
            tokio::select! {
                _ = stop.changed() => return,
                () = ctx.wake(consumer).notified() => {}
                () = tokio::time::sleep(idle) => {}
            }
            continue;
        }
        let mut unsettled: HashMap<i64, Message> = HashMap::new();
        let mut handlers = tokio::task::JoinSet::new();
        for msg in batch {
            unsettled.insert(msg.id, msg.clone());
            let ctx = ctx.clone();
            handlers.spawn(async move {
                let result = handle(&ctx, &msg).await;
                (msg, result)
            });
        }
        while let Some(joined) = handlers.join_next().await {
            match joined {
                Ok((msg, result)) => {
                    unsettled.remove(&msg.id);
                    settle(&ctx, msg, result).await;
                }
                Err(e) => log::error!("orders {}: handler died: {e}", consumer.name()),
            }
        }
        for (_, msg) in unsettled {
            settle(&ctx, msg, Err(HandleError::Failed("handler died".into()))).await;
        }
    }
}

async fn handle(ctx: &Ctx, msg: &Message) -> Result<(), HandleError> {
    match msg.consumer {
        Consumer::Saga => saga::handle(ctx, msg).await,
        Consumer::Projection => projection::handle(ctx, msg).await,
        Consumer::Notifier => notifier::handle(ctx, msg).await,
    }
}

/// Records what became of `msg`.
async fn settle(ctx: &Ctx, msg: Message, result: Result<(), HandleError>) {
    let consumer = msg.consumer;
    let id = msg.id;
    let outcome = match result {
        Ok(()) => ctx
            .store
            .tx(move |tx| queue::ack(tx, id))
            .await
            .map(|()| None),
        Err(HandleError::Interrupted) => ctx
            .store
            .tx(move |tx| queue::release(tx, id))
            .await
            .map(|()| None),
        Err(HandleError::Failed(error)) => {
            let delay = ctx.retry.delay(msg.attempts.saturating_add(1));
            let now = now_ms();
            let retry_at = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            let max_attempts = ctx.max_attempts;
            log::warn!(
                "orders {}: event {} of {} failed (attempt {}): {error}",
                consumer.name(),
                msg.event_seq,
                msg.stream_id,
                msg.attempts.saturating_add(1)
            );
            ctx.store
                .tx(move |tx| {
                    let failed = queue::fail(tx, &msg, &error, now, retry_at, max_attempts)?;
                    Ok(Some((failed, queue::dead_depth(tx)?)))
                })
                .await
        }
    };
    match outcome {
        Ok(None) => {}
        Ok(Some((Failed::Retry, _))) => {
            ctx.metrics
                .retries
                .with_label_values(&[consumer.name()])
                .inc();
        }
        Ok(Some((Failed::Dead, depth))) => {
            log::warn!(
                "orders {}: message {id} moved to the dead-letter queue",
                consumer.name()
            );
            ctx.metrics.dlq_depth.set(depth);
        }
        Err(e) => log::error!(
            "orders {}: cannot settle message {id}: {e}",
            consumer.name()
        ),
    }
}
