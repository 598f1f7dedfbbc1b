//! Periodic pruning that keeps the store bounded: expired idempotency keys (and the oldest
//! past the cap), and outbox rows published long ago.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;

use super::store::now_ms;
use super::Ctx;

/// How often it prunes.
const EVERY: Duration = Duration::from_secs(60);

/// How long published outbox rows are kept (for inspection) before they are deleted.
const KEEP_PUBLISHED_MS: i64 = 3600 * 1000;

/// Prunes every minute until the service stops.
pub async fn run(ctx: Arc<Ctx>) {
    let mut stop = ctx.stop.clone();
    loop {
        let ttl_ms = i64::try_from(ctx.idempotency_ttl.as_millis()).unwrap_or(i64::MAX);
        let max_keys = i64::from(ctx.idempotency_max_keys);
        let pruned = ctx
            .store
            .tx(move |tx| {
                let now = now_ms();
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
            })
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
