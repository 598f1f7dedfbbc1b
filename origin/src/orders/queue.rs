//! The consumers' durable queues (`messages`) and the dead-letter table: what the outbox relay
//! publishes into and what the consumers claim, acknowledge, retry or give up on.

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use super::store::StoreResult;

/// The consumers of the order events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Consumer {
    /// The saga orchestrator: drives payment, delivery and compensation.
    Saga,
    /// The read model (CQRS projection).
    Projection,
    /// Tells the customer about delivery or cancellation.
    Notifier,
}

impl Consumer {
    /// Every consumer.
    pub const ALL: [Consumer; 3] = [Self::Saga, Self::Projection, Self::Notifier];

    /// Its name in the queue tables and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Saga => "saga",
            Self::Projection => "projection",
            Self::Notifier => "notifier",
        }
    }

    /// The consumer called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether it is sent events of `kind`.
    pub fn wants(self, kind: &str) -> bool {
        match self {
            Self::Saga | Self::Projection => true,
            Self::Notifier => matches!(kind, "DeliveryScheduled" | "OrderCancelled"),
        }
    }
}

/// A message on a consumer's queue: one event to handle.
#[derive(Debug, Clone)]
pub struct Message {
    /// Queue row id.
    pub id: i64,
    /// Whose queue.
    pub consumer: Consumer,
    /// The event's global position.
    pub event_seq: i64,
    /// The order it belongs to.
    pub stream_id: String,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// Moves up to `limit` unpublished outbox rows onto the queues of the consumers that want them
/// and marks them published, in the caller's transaction. Returns how many were published.
pub fn publish(tx: &Transaction<'_>, now: i64, limit: usize) -> StoreResult<usize> {
    let pending: Vec<(i64, String, String)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT o.event_seq, e.stream_id, e.kind FROM outbox o JOIN events e ON e.seq = o.event_seq
             WHERE o.published_at IS NULL ORDER BY o.event_seq LIMIT ?1",
        )?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let mut enqueue = tx.prepare_cached(
        "INSERT OR IGNORE INTO messages (consumer, event_seq, stream_id, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut mark = tx.prepare_cached("UPDATE outbox SET published_at = ?2 WHERE event_seq = ?1")?;
    for (seq, stream_id, kind) in &pending {
        for consumer in Consumer::ALL.into_iter().filter(|c| c.wants(kind)) {
            enqueue.execute(params![consumer.name(), seq, stream_id, now])?;
        }
        mark.execute(params![seq, now])?;
    }
    Ok(pending.len())
}

/// Claims up to `limit` of `consumer`'s messages that are due, oldest event first.
pub fn claim(
    tx: &Transaction<'_>,
    consumer: Consumer,
    now: i64,
    limit: usize,
) -> StoreResult<Vec<Message>> {
    let claimed: Vec<Message> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id, event_seq, stream_id, attempts FROM messages
             WHERE consumer = ?1 AND state = 'pending' AND next_attempt_at <= ?2
             ORDER BY event_seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![
                consumer.name(),
                now,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok(Message {
                    id: r.get(0)?,
                    consumer,
                    event_seq: r.get(1)?,
                    stream_id: r.get(2)?,
                    attempts: r.get(3)?,
                })
            },
        )?;
        rows.collect::<Result<_, _>>()?
    };
    let mut mark = tx.prepare_cached("UPDATE messages SET state = 'inflight' WHERE id = ?1")?;
    for m in &claimed {
        mark.execute([m.id])?;
    }
    Ok(claimed)
}

/// When `consumer`'s next waiting message falls due (ms since the Unix epoch), if it has any.
pub fn next_due(tx: &Transaction<'_>, consumer: Consumer) -> StoreResult<Option<i64>> {
    Ok(tx.query_row(
        "SELECT MIN(next_attempt_at) FROM messages WHERE consumer = ?1 AND state = 'pending'",
        [consumer.name()],
        |r| r.get(0),
    )?)
}

/// Puts messages claimed by a previous run back on their queues (at start-up, when no
/// consumer runs yet).
pub fn reclaim_inflight(tx: &Transaction<'_>) -> StoreResult<usize> {
    Ok(tx.execute(
        "UPDATE messages SET state = 'pending' WHERE state = 'inflight'",
        [],
    )?)
}

/// The message was handled: it leaves the queue.
pub fn ack(tx: &Transaction<'_>, id: i64) -> StoreResult<()> {
    tx.execute("DELETE FROM messages WHERE id = ?1", [id])?;
    Ok(())
}

/// The message was not handled, through no fault of its own (shutdown): back on the queue,
/// no attempt counted.
pub fn release(tx: &Transaction<'_>, id: i64) -> StoreResult<()> {
    tx.execute("UPDATE messages SET state = 'pending' WHERE id = ?1", [id])?;
    Ok(())
}

/// What became of a failed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// It will be tried again.
    Retry,
    /// It ran out of attempts and moved to the dead-letter table.
    Dead,
}

/// Records a failed attempt at `msg`: retried at `retry_at`, or, once `max_attempts` have
/// failed, moved to the dead-letter table with `error`.
pub fn fail(
    tx: &Transaction<'_>,
    msg: &Message,
    error: &str,
    now: i64,
    retry_at: i64,
    max_attempts: u32,
) -> StoreResult<Failed> {
    let attempts = msg.attempts.saturating_add(1);
    if attempts >= max_attempts {
        tx.execute(
            "INSERT INTO dead_letters (consumer, event_seq, stream_id, attempts, last_error, failed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![msg.consumer.name(), msg.event_seq, msg.stream_id, attempts, error, now],
        )?;
        tx.execute("DELETE FROM messages WHERE id = ?1", [msg.id])?;
        Ok(Failed::Dead)
    } else {
        tx.execute(
            "UPDATE messages SET state = 'pending', attempts = ?2, next_attempt_at = ?3,
             last_error = ?4 WHERE id = ?1",
            params![msg.id, attempts, retry_at, error],
        )?;
        Ok(Failed::Retry)
    }
}

/// A message that ran out of attempts.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Its id in the dead-letter table (what replay takes).
    pub id: i64,
    /// Whose message it was.
    pub consumer: String,
    /// The event's global position.
    pub event_seq: i64,
    /// The order.
    pub order_id: String,
    /// The event's kind.
    pub kind: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: String,
    /// When it was given up on, in ms since the Unix epoch.
    pub failed_at_ms: i64,
}

/// The oldest `limit` dead letters.
pub fn dead_letters(tx: &Transaction<'_>, limit: usize) -> StoreResult<Vec<DeadLetter>> {
    let mut stmt = tx.prepare_cached(
        "SELECT d.id, d.consumer, d.event_seq, d.stream_id, e.kind, d.attempts, d.last_error,
                d.failed_at
         FROM dead_letters d JOIN events e ON e.seq = d.event_seq ORDER BY d.id LIMIT ?1",
    )?;
    let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
        Ok(DeadLetter {
            id: r.get(0)?,
            consumer: r.get(1)?,
            event_seq: r.get(2)?,
            order_id: r.get(3)?,
            kind: r.get(4)?,
            attempts: r.get(5)?,
            last_error: r.get(6)?,
            failed_at_ms: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many dead letters there are.
pub fn dead_depth(tx: &Transaction<'_>) -> StoreResult<i64> {
    Ok(tx.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?)
}

/// Puts dead letter `id` back on its consumer's queue with fresh attempts, and lifts the
/// per-order faults of its order (a replay says the cause was dealt with). Returns the
/// consumer, or `None` for an unknown id.
pub fn replay(tx: &Transaction<'_>, id: i64, now: i64) -> StoreResult<Option<Consumer>> {
    let found: Option<(String, i64, String)> = tx
        .query_row(
            "SELECT consumer, event_seq, stream_id FROM dead_letters WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((name, event_seq, stream_id)) = found else {
        return Ok(None);
    };
    let Some(consumer) = Consumer::from_name(&name) else {
        return Ok(None);
    };
    tx.execute(
        "INSERT OR REPLACE INTO messages (consumer, event_seq, stream_id, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![name, event_seq, stream_id, now],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO cleared_faults (order_id, at) VALUES (?1, ?2)",
        params![stream_id, now],
    )?;
    tx.execute("DELETE FROM dead_letters WHERE id = ?1", [id])?;
    Ok(Some(consumer))
}

/// Messages waiting on any queue (claimed or not): the backlog new orders are refused over.
pub fn backlog(tx: &Transaction<'_>) -> StoreResult<i64> {
    Ok(tx.query_row(
        "SELECT (SELECT COUNT(*) FROM messages)
              + (SELECT COUNT(*) FROM outbox WHERE published_at IS NULL)",
        [],
        |r| r.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::super::events::Event;
    use super::super::store::{append, Store};
    use super::*;

    #[tokio::test]
    async fn publish_claim_fail_dead_replay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cancelled = Event::OrderCancelled {
            reason: "x".into(),
            compensated: false,
        };
        store
            .tx(move |tx| append(tx, "o1", 0, &[Event::OrderCompleted {}, cancelled]))
            .await
            .unwrap()
            .unwrap();
        let published = store.tx(|tx| publish(tx, 1, 100)).await.unwrap();
        assert_eq!(published, 2);
        // Publishing again finds nothing: the outbox rows are marked.
        assert_eq!(store.tx(|tx| publish(tx, 1, 100)).await.unwrap(), 0);
        // The notifier only gets the cancellation.
        let claimed = store
            .tx(|tx| claim(tx, Consumer::Notifier, 1, 10))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        // Claimed messages are not handed out twice.
        let again = store
            .tx(|tx| claim(tx, Consumer::Notifier, 1, 10))
            .await
            .unwrap();
        assert!(again.is_empty());
        let msg = claimed[0].clone();
        let outcome = store
            .tx(move |tx| fail(tx, &msg, "boom", 1, 1, 1))
            .await
            .unwrap();
        assert_eq!(outcome, Failed::Dead);
        let dead = store.tx(|tx| dead_letters(tx, 10)).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].last_error, "boom");
        assert_eq!(dead[0].kind, "OrderCancelled");
        let id = dead[0].id;
        let replayed = store.tx(move |tx| replay(tx, id, 2)).await.unwrap();
        assert_eq!(replayed, Some(Consumer::Notifier));
        assert_eq!(store.tx(dead_depth).await.unwrap(), 0);
        assert_eq!(store.tx(move |tx| replay(tx, id, 2)).await.unwrap(), None);
        let back = store
            .tx(|tx| claim(tx, Consumer::Notifier, 2, 10))
            .await
            .unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].attempts, 0);
    }
}
