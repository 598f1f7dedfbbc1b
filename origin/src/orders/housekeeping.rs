//! Periodic pruning that keeps the store bounded: expired idempotency keys (and the oldest
//! past the cap), and outbox rows published long ago.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Transaction};

use super::store::{now_ms, StoreResult};
use super::Ctx;

/// How often it prunes.
const EVERY: Duration = Duration::from_secs(60);

/// How long published outbox rows are kept (for inspection) before they are deleted.
const KEEP_PUBLISHED_MS: i64 = 3600 * 1000;

/// Deletes idempotency keys older than `ttl_ms` and all but the newest `max_keys`, and outbox
/// rows published over an hour before `now`. Returns the rows deleted.
fn prune(tx: &Transaction<'_>, now: i64, ttl_ms: i64, max_keys: i64) -> StoreResult<usize> {
    let mut n = tx.execute(
        "DELETE FROM idempotency WHERE created_at <= ?1",
        [now.saturating_sub(ttl_ms)],
    )?;
    n += tx.execute(
        "DELETE FROM idempotency WHERE key IN (SELECT key FROM idempotency
         ORDER BY created_at DESC LIMIT -1 OFFSET ?1)",
        params![max_keys],
    )?;
    n += tx.execute(
        "DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at <= ?1",
        [now.saturating_sub(KEEP_PUBLISHED_MS)],
    )?;
    Ok(n)
}

/// Prunes every minute until the service stops.
pub async fn run(ctx: Arc<Ctx>) {
    let mut stop = ctx.stop.clone();
    loop {
        let ttl_ms = i64::try_from(ctx.idempotency_ttl.as_millis()).unwrap_or(i64::MAX);
        let max_keys = i64::from(ctx.idempotency_max_keys);
        let pruned = ctx
            .store
            .tx(move |tx| prune(tx, now_ms(), ttl_ms, max_keys))
            .await;
        match pruned {
            Ok(0) => {}
            Ok(n) => log::debug!("orders housekeeping: pruned {n} rows"),
            Err(e) => log::error!("orders housekeeping: {e}"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::events::Event;
    use super::super::idempotency::remember;
    use super::super::queue::publish;
    use super::super::store::{append, outbox_pending, Store};
    use super::*;
    use http::StatusCode;

    #[tokio::test]
    async fn prunes_expired_and_excess_keys_and_old_published_outbox_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .tx(|tx| {
                for (key, at) in [("old", 0), ("a", 900), ("b", 950), ("c", 990)] {
                    remember(tx, key, "f", StatusCode::ACCEPTED, "{}", at)?;
                }
                append(tx, "o1", 0, &[Event::OrderCompleted {}])?.ok();
                append(tx, "o2", 0, &[Event::OrderCompleted {}])?.ok();
                publish(tx, 0, 1)?;
                Ok(())
            })
            .await
            .unwrap();
        let now = KEEP_PUBLISHED_MS + 1000;
        // ttl: everything before 500 ms expires; cap: 2 keys.
        let pruned = store
            .tx(move |tx| prune(tx, now, now - 500, 2))
            .await
            .unwrap();
        assert_eq!(
            pruned, 3,
            "old (expired), a (over the cap), one published outbox row"
        );
        let keys: Vec<String> = store
            .tx(|tx| {
                let mut stmt = tx.prepare("SELECT key FROM idempotency ORDER BY key")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
            .unwrap();
        assert_eq!(keys, ["b", "c"]);
        // The unpublished outbox row is kept.
        assert_eq!(store.tx(outbox_pending).await.unwrap(), 1);
    }
}
