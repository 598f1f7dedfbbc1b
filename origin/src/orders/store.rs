//! The embedded SQLite store (WAL mode): the append-only event store with its outbox, and the
//! handle through which every other table is reached. SQLite is synchronous, so every call runs
//! on tokio's blocking pool, one at a time on one connection; each call is one transaction.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, Transaction};

use super::events::{Event, Recorded};

/// What can go wrong talking to the store.
#[derive(Debug)]
pub enum StoreError {
    /// SQLite said no.
    Sqlite(rusqlite::Error),
    /// A stored event or document did not parse (the store was written by something else).
    Corrupt(String),
    /// The blocking task died or the connection's lock was poisoned by a panic.
    Unavailable(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(e) => write!(f, "sqlite: {e}"),
            Self::Corrupt(what) => write!(f, "corrupt store: {what}"),
            Self::Unavailable(what) => write!(f, "store unavailable: {what}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::Corrupt(e.to_string())
    }
}

/// A store result.
pub type StoreResult<T> = Result<T, StoreError>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    at INTEGER NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE TRIGGER IF NOT EXISTS events_are_never_updated BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_are_never_deleted BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TABLE IF NOT EXISTS outbox (
    event_seq INTEGER PRIMARY KEY REFERENCES events (seq),
    published_at INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (event_seq) WHERE published_at IS NULL;
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    stream_id TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT,
    UNIQUE (consumer, event_seq)
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (consumer, state, next_attempt_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    stream_id TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    failed_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cleared_faults (
    order_id TEXT PRIMARY KEY,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS order_view (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS order_view_created ON order_view (created_at);
CREATE INDEX IF NOT EXISTS order_view_status ON order_view (status, created_at);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created_at);
CREATE TABLE IF NOT EXISTS payments (
    order_id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    state TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    order_id TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    eta_minutes INTEGER NOT NULL,
    state TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
";

/// The orders service's store: one SQLite connection, used from the blocking pool.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

/// An append lost a race: the stream is no longer at the version the caller read.
#[derive(Debug, PartialEq, Eq)]
pub struct VersionConflict;

impl Store {
    /// Opens (creating if needed) `orders.db` under `dir`, in WAL mode, with the schema.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        let conn = Connection::open(dir.join("orders.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` in one transaction on the blocking pool; commits if it returns `Ok`.
    pub async fn tx<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.tx_then(f, |_| ()).await
    }

    /// Like [`Store::tx`], and runs `after` with the result once the transaction has committed,
    /// still holding the connection (nothing else reaches the store in between).
    pub async fn tx_then<T, F, A>(&self, f: F, after: A) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| StoreError::Unavailable("connection lock poisoned".into()))?;
            commit_then(&mut conn, f, after)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }
}

/// Runs `f` in a transaction on `conn`, commits, then runs `after` with the result.
fn commit_then<T, F, A>(conn: &mut Connection, f: F, after: A) -> StoreResult<T>
where
    F: FnOnce(&Transaction<'_>) -> StoreResult<T>,
    A: FnOnce(&T),
{
    let tx = conn.transaction()?;
    let value = f(&tx)?;
    tx.commit()?;
    after(&value);
    Ok(value)
}

/// Appends `events` to `stream_id`, which must be at `expected_version` (0 for a new stream),
/// and writes an outbox row for each, in the caller's transaction. Returns their `seq`s.
pub fn append(
    tx: &Transaction<'_>,
    stream_id: &str,
    expected_version: i64,
    events: &[Event],
) -> StoreResult<Result<Vec<i64>, VersionConflict>> {
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?1",
        [stream_id],
        |r| r.get(0),
    )?;
    if current != expected_version {
        return Ok(Err(VersionConflict));
    }
    let at = now_ms();
    let mut seqs = Vec::with_capacity(events.len());
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (stream_id, version, kind, data, at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut outbox = tx.prepare_cached("INSERT INTO outbox (event_seq) VALUES (?1)")?;
    for (offset, event) in (1..).zip(events) {
        insert.execute(params![
            stream_id,
            expected_version + offset,
            event.kind(),
            event.data()?,
            at
        ])?;
        let seq = tx.last_insert_rowid();
        outbox.execute([seq])?;
        seqs.push(seq);
    }
    Ok(Ok(seqs))
}

/// The events of `stream_id`, in order (empty for an unknown stream).
pub fn read_stream(tx: &Transaction<'_>, stream_id: &str) -> StoreResult<Vec<Recorded>> {
    let mut stmt = tx.prepare_cached(
        "SELECT seq, version, kind, data, at FROM events WHERE stream_id = ?1 ORDER BY version",
    )?;
    let rows = stmt.query_map([stream_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, version, kind, data, at_ms) = row?;
        let event = Event::from_stored(&kind, &data)
            .map_err(|e| StoreError::Corrupt(format!("event {seq} ({kind}): {e}")))?;
        out.push(Recorded {
            seq,
            stream_id: stream_id.to_string(),
            version,
            at_ms,
            event,
        });
    }
    Ok(out)
}

/// An order's events with the per-order faults still in force.
pub struct OrderStream {
    /// Its events, in order.
    pub events: Vec<Recorded>,
    /// The `X-Fault` entries it was placed with, unless a dead-letter replay lifted them.
    pub faults: Vec<String>,
}

impl OrderStream {
    /// The stream's version (0 when empty).
    pub fn version(&self) -> i64 {
        self.events.last().map_or(0, |e| e.version)
    }
}

/// Reads order `id`'s stream and its faults.
pub fn read_order(tx: &Transaction<'_>, id: &str) -> StoreResult<OrderStream> {
    let events = read_stream(tx, id)?;
    let cleared: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM cleared_faults WHERE order_id = ?1)",
        [id],
        |r| r.get(0),
    )?;
    let faults = match events.first().map(|e| &e.event) {
        Some(Event::OrderPlaced { faults, .. }) if !cleared => faults.clone(),
        _ => Vec::new(),
    };
    Ok(OrderStream { events, faults })
}

/// Outbox rows not yet published.
pub fn outbox_pending(tx: &Transaction<'_>) -> StoreResult<i64> {
    Ok(tx.query_row(
        "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL",
        [],
        |r| r.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed() -> Event {
        Event::NotificationSent {
            about: "test".into(),
        }
    }

    #[tokio::test]
    async fn appends_are_versioned_and_conflicts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = store
            .tx(|tx| append(tx, "o1", 0, &[placed(), placed()]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.len(), 2);
        let stale = store
            .tx(|tx| append(tx, "o1", 1, &[placed()]))
            .await
            .unwrap();
        assert_eq!(stale, Err(VersionConflict));
        let events = store.tx(|tx| read_stream(tx, "o1")).await.unwrap();
        assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(store.tx(outbox_pending).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn events_cannot_be_updated_or_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .tx(|tx| append(tx, "o1", 0, &[placed()]))
            .await
            .unwrap()
            .unwrap();
        let update = store
            .tx(|tx| Ok(tx.execute("UPDATE events SET kind = 'x'", [])?))
            .await;
        assert!(update.is_err());
        let delete = store
            .tx(|tx| Ok(tx.execute("DELETE FROM events", [])?))
            .await;
        assert!(delete.is_err());
    }
}
