//! The embedded [`UrlStore`]: one SQLite file in WAL mode, one writer connection and a few
//! reader connections (WAL lets readers run beside the writer).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::store::{CreateError, Link, StoreError, StoredLink, UrlStore};

/// File name of the database under the data directory.
pub const FILE_NAME: &str = "urls.sqlite3";

/// Reader connections (redirects and stats read; creation and flushes write).
const READERS: usize = 4;

/// How long a connection waits for another's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS links (
    code       TEXT PRIMARY KEY NOT NULL,
    url        TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    clicks     INTEGER NOT NULL DEFAULT 0 CHECK (clicks >= 0)
) WITHOUT ROWID;
";

/// Links in `<data_dir>/urls.sqlite3`.
pub struct SqliteStore {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl SqliteStore {
    /// Opens (creating if needed) the store under `data_dir`, which is created if missing.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", data_dir.display())))?;
        let path = data_dir.join(FILE_NAME);
        let writer = Connection::open(&path).map_err(err)?;
        writer.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError(format!(
                "{} cannot use WAL (journal mode {mode})",
                path.display()
            )));
        }
        // In WAL mode NORMAL is safe against process crashes: a commit can only be lost to
        // an OS crash or power cut before the next checkpoint.
        writer
            .execute_batch("PRAGMA synchronous = NORMAL;")
            .map_err(err)?;
        writer.execute_batch(SCHEMA).map_err(err)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(err)?;
            reader.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
            readers.push(Mutex::new(reader));
        }
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    /// A free reader if there is one, else the next in turn (waiting for it).
    fn reader(&self) -> MutexGuard<'_, Connection> {
        for reader in &self.readers {
            if let Ok(guard) = reader.try_lock() {
                return guard;
            }
        }
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        lock(&self.readers[i])
    }
}

impl UrlStore for SqliteStore {
    fn create(&self, link: &Link) -> Result<(), CreateError> {
        let inserted = lock(&self.writer).execute(
            "INSERT INTO links (code, url, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![link.code, link.url, link.created_at, link.expires_at],
        );
        match inserted {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation =>
            {
                Err(CreateError::Taken)
            }
            Err(e) => Err(CreateError::Store(err(e))),
        }
    }

    fn get(&self, code: &str) -> Result<Option<StoredLink>, StoreError> {
        get_link(&self.reader(), code)
    }

    fn add_clicks(&self, batch: &HashMap<String, u64>) -> Result<(), StoreError> {
        add_clicks(&mut lock(&self.writer), batch)
    }
}

/// The link `code` as `conn` reads it.
fn get_link(conn: &Connection, code: &str) -> Result<Option<StoredLink>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT code, url, created_at, expires_at, clicks FROM links WHERE code = ?1",
        )
        .map_err(err)?;
    stmt.query_row([code], |row| {
        let clicks: i64 = row.get(4)?;
        Ok(StoredLink {
            link: Link {
                code: row.get(0)?,
                url: row.get(1)?,
                created_at: row.get(2)?,
                expires_at: row.get(3)?,
            },
            // The schema's CHECK keeps clicks non-negative.
            clicks: u64::try_from(clicks).unwrap_or(0),
        })
    })
    .optional()
    .map_err(err)
}

/// Adds `batch`'s clicks to their links in one transaction on `conn`.
fn add_clicks(conn: &mut Connection, batch: &HashMap<String, u64>) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(err)?;
    {
        let mut stmt = tx
            .prepare_cached("UPDATE links SET clicks = clicks + ?2 WHERE code = ?1")
            .map_err(err)?;
        for (code, n) in batch {
            let n = i64::try_from(*n)
                .map_err(|_| StoreError(format!("click count {n} is out of range")))?;
            stmt.execute(params![code, n]).map_err(err)?;
        }
    }
    tx.commit().map_err(err)
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding a connection cannot leave a transaction half-committed (an
    // uncommitted rusqlite transaction rolls back on drop), so the connection is still usable.
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

fn err(e: rusqlite::Error) -> StoreError {
    StoreError(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(code: &str) -> Link {
        Link {
            code: code.into(),
            url: "https://example.com/a".into(),
            created_at: 1_700_000_000,
            expires_at: Some(1_700_000_060),
        }
    }

    #[test]
    fn create_get_and_count_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            store.create(&link("abc")).unwrap();
            assert_eq!(store.create(&link("abc")), Err(CreateError::Taken));
            let batch = HashMap::from([("abc".to_string(), 5), ("nope".to_string(), 3)]);
            store.add_clicks(&batch).unwrap();
            store.add_clicks(&batch).unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let got = store.get("abc").unwrap().unwrap();
        assert_eq!(got.link, link("abc"));
        assert_eq!(got.clicks, 10);
        assert_eq!(store.get("nope").unwrap(), None);
    }

    #[test]
    fn a_batch_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let codes: Vec<String> = (0..10).map(|i| format!("ok{i}")).collect();
        let mut batch = HashMap::new();
        for code in &codes {
            store.create(&link(code)).unwrap();
            batch.insert(code.clone(), 1);
        }
        store.create(&link("bad")).unwrap();
        // One count cannot be stored: whatever was written before it must be rolled back.
        batch.insert("bad".to_string(), u64::MAX);
        assert!(store.add_clicks(&batch).is_err());
        for code in codes.iter().chain(["bad".to_string()].iter()) {
            assert_eq!(store.get(code).unwrap().unwrap().clicks, 0, "{code}");
        }
    }

    #[test]
    fn the_database_is_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let mode: String = store
            .reader()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
