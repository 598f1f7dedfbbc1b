//! The video store: one row per upload, which is also the persistent job queue. Behind
//! [`VideoStore`] so another database can follow; [`SqliteStore`] is the embedded one.
//! Calls are synchronous: run them on a blocking thread.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

/// A store error, as text.
pub type StoreError = String;

/// Where a video is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a worker (first attempt or a retry).
    Queued,
    /// A worker is transcoding it.
    Processing,
    /// Published: its playlists and segments are served.
    Ready,
    /// Given up; `error` says why.
    Failed,
}

impl Status {
    /// Every status, in the order of their life.
    pub const ALL: [Status; 4] = [
        Status::Queued,
        Status::Processing,
        Status::Ready,
        Status::Failed,
    ];

    /// Its name in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Processing => "processing",
            Status::Ready => "ready",
            Status::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// One published rendition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendition {
    /// Its name (and URL part).
    pub name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Peak bandwidth in bit/s, as in the master playlist.
    pub bandwidth: u64,
    /// Its codecs, as in the master playlist.
    pub codecs: String,
}

/// A video as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The client's file name, if given (metadata only).
    pub file_name: Option<String>,
    /// Size of the upload in bytes.
    pub size: u64,
    /// Its status.
    pub status: Status,
    /// Transcode attempts started.
    pub attempts: u32,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
    /// Duration in seconds, once probed.
    pub duration: Option<f64>,
    /// The renditions, once ready.
    pub renditions: Option<Vec<Rendition>>,
    /// When it was uploaded, in milliseconds since the Unix epoch.
    pub created_ms: i64,
}

/// A job taken by a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The video's id.
    pub id: String,
    /// Attempts started, counting this one.
    pub attempts: u32,
}

/// What the video service needs from its database.
pub trait VideoStore: Send + Sync {
    /// Adds a queued video.
    fn insert(
        &self,
        id: &str,
        title: &str,
        file_name: Option<&str>,
        size: u64,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// The video `id`, if any.
    fn get(&self, id: &str) -> Result<Option<Video>, StoreError>;
    /// Ready videos, newest first, at most `limit`.
    fn list_ready(&self, limit: u32) -> Result<Vec<Video>, StoreError>;
    /// Ids of every ready video.
    fn ready_ids(&self) -> Result<Vec<String>, StoreError>;
    /// Takes the oldest queued video due at `now_ms`: it becomes processing, its attempts
    /// counted.
    fn claim(&self, now_ms: i64) -> Result<Option<Job>, StoreError>;
    /// When the next queued video is due, if any is queued.
    fn next_due(&self) -> Result<Option<i64>, StoreError>;
    /// Marks `id` ready with what was published.
    fn set_ready(
        &self,
        id: &str,
        duration: Option<f64>,
        renditions: &[Rendition],
    ) -> Result<(), StoreError>;
    /// Queues `id` again, due at `due_ms`, keeping why the last attempt failed.
    fn retry(&self, id: &str, error: &str, due_ms: i64) -> Result<(), StoreError>;
    /// Gives up on `id`.
    fn fail(&self, id: &str, error: &str) -> Result<(), StoreError>;
    /// Puts a job stopped by shutdown back in the queue, its attempt not counted.
    fn release(&self, id: &str) -> Result<(), StoreError>;
    /// After a restart: processing videos are queued again, or failed once they have had
    /// `max_attempts`. Returns how many were touched.
    fn recover(&self, max_attempts: u32) -> Result<usize, StoreError>;
    /// How many videos are in each status.
    fn counts(&self) -> Result<Vec<(Status, u64)>, StoreError>;
}

/// The embedded SQLite store (WAL mode, one connection).
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS videos (
    id          TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    file_name   TEXT,
    size        INTEGER NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    duration    REAL,
    renditions  TEXT,
    due_ms      INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS videos_queue ON videos (status, due_ms, created_ms);
CREATE INDEX IF NOT EXISTS videos_ready ON videos (status, created_ms);
";

const COLUMNS: &str =
    "id, title, file_name, size, status, attempts, error, duration, renditions, created_ms";

fn err(e: impl std::fmt::Display) -> StoreError {
    e.to_string()
}

impl SqliteStore {
    /// Opens (creating if missing) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| "store lock poisoned".to_string())?;
        f(&mut conn).map_err(err)
    }
}

fn video(row: &Row<'_>) -> rusqlite::Result<Video> {
    let status: String = row.get(4)?;
    let renditions: Option<String> = row.get(8)?;
    Ok(Video {
        id: row.get(0)?,
        title: row.get(1)?,
        file_name: row.get(2)?,
        size: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
        status: Status::parse(&status).unwrap_or(Status::Failed),
        attempts: row.get(5)?,
        error: row.get(6)?,
        duration: row.get(7)?,
        renditions: renditions.and_then(|r| serde_json::from_str(&r).ok()),
        created_ms: row.get(9)?,
    })
}

impl VideoStore for SqliteStore {
    fn insert(
        &self,
        id: &str,
        title: &str,
        file_name: Option<&str>,
        size: u64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let size = i64::try_from(size).map_err(err)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO videos (id, title, file_name, size, status, due_ms, created_ms)
                 VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5)",
                params![id, title, file_name, size, now_ms],
            )
            .map(drop)
        })
    }

    fn get(&self, id: &str) -> Result<Option<Video>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM videos WHERE id = ?1"),
                [id],
                video,
            )
            .optional()
        })
    }

    fn list_ready(&self, limit: u32) -> Result<Vec<Video>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM videos WHERE status = 'ready'
                 ORDER BY created_ms DESC, id LIMIT ?1"
            ))?;
            let rows = stmt.query_map([limit], video)?;
            rows.collect()
        })
    }

    fn ready_ids(&self) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT id FROM videos WHERE status = 'ready'")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    fn claim(&self, now_ms: i64) -> Result<Option<Job>, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let job = tx
                .query_row(
                    "UPDATE videos SET status = 'processing', attempts = attempts + 1
                     WHERE id = (SELECT id FROM videos WHERE status = 'queued' AND due_ms <= ?1
                                 ORDER BY due_ms, created_ms LIMIT 1)
                     RETURNING id, attempts",
                    [now_ms],
                    |r| {
                        Ok(Job {
                            id: r.get(0)?,
                            attempts: r.get(1)?,
                        })
                    },
                )
                .optional()?;
            tx.commit()?;
            Ok(job)
        })
    }

    fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT MIN(due_ms) FROM videos WHERE status = 'queued'",
                [],
                |r| r.get(0),
            )
        })
    }

    fn set_ready(
        &self,
        id: &str,
        duration: Option<f64>,
        renditions: &[Rendition],
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(renditions).map_err(err)?;
        self.with(|c| {
            c.execute(
                "UPDATE videos SET status = 'ready', error = NULL, duration = ?2, renditions = ?3
                 WHERE id = ?1",
                params![id, duration, json],
            )
            .map(drop)
        })
    }

    fn retry(&self, id: &str, error: &str, due_ms: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE videos SET status = 'queued', error = ?2, due_ms = ?3 WHERE id = ?1",
                params![id, error, due_ms],
            )
            .map(drop)
        })
    }

    fn fail(&self, id: &str, error: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE videos SET status = 'failed', error = ?2 WHERE id = ?1",
                params![id, error],
            )
            .map(drop)
        })
    }

    fn release(&self, id: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE videos SET status = 'queued', attempts = MAX(attempts - 1, 0)
                 WHERE id = ?1 AND status = 'processing'",
                [id],
            )
            .map(drop)
        })
    }

    fn recover(&self, max_attempts: u32) -> Result<usize, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let failed = tx.execute(
                "UPDATE videos SET status = 'failed',
                     error = COALESCE(error || '; ', '') || 'interrupted by a restart'
                 WHERE status = 'processing' AND attempts >= ?1",
                [max_attempts],
            )?;
            let queued = tx.execute(
                "UPDATE videos SET status = 'queued' WHERE status = 'processing'",
                [],
            )?;
            tx.commit()?;
            Ok(failed + queued)
        })
    }

    fn counts(&self) -> Result<Vec<(Status, u64)>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare_cached("SELECT status, COUNT(*) FROM videos GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut counts: Vec<(Status, u64)> = Status::ALL.iter().map(|s| (*s, 0)).collect();
            for row in rows {
                let (status, n) = row?;
                if let Some(slot) = counts.iter_mut().find(|(s, _)| s.as_str() == status) {
                    slot.1 = u64::try_from(n).unwrap_or(0);
                }
            }
            Ok(counts)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("v.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn the_queue_hands_out_due_jobs_once() {
        let (_dir, s) = store();
        s.insert("a", "A", Some("a.mp4"), 10, 100).unwrap();
        s.insert("b", "B", None, 10, 200).unwrap();
        assert_eq!(s.claim(50).unwrap(), None, "not due yet");
        let a = s.claim(1000).unwrap().unwrap();
        assert_eq!((a.id.as_str(), a.attempts), ("a", 1));
        assert_eq!(s.claim(1000).unwrap().unwrap().id, "b");
        assert_eq!(s.claim(1000).unwrap(), None);

        s.retry("a", "boom", 5000).unwrap();
        assert_eq!(s.next_due().unwrap(), Some(5000));
        assert_eq!(s.claim(4999).unwrap(), None);
        let again = s.claim(5000).unwrap().unwrap();
        assert_eq!(again.attempts, 2);
        s.fail("a", "gave up").unwrap();
        let a = s.get("a").unwrap().unwrap();
        assert_eq!(
            (a.status, a.error.as_deref()),
            (Status::Failed, Some("gave up"))
        );

        let r = Rendition {
            name: "240p".into(),
            width: 320,
            height: 240,
            bandwidth: 500_000,
            codecs: "avc1.4d4014".into(),
        };
        s.set_ready("b", Some(3.0), std::slice::from_ref(&r))
            .unwrap();
        let b = s.get("b").unwrap().unwrap();
        assert_eq!(b.status, Status::Ready);
        assert_eq!(b.renditions, Some(vec![r]));
        assert_eq!(s.ready_ids().unwrap(), vec!["b".to_string()]);
        assert_eq!(s.list_ready(10).unwrap().len(), 1);
        assert!(s.get("zz").unwrap().is_none());
    }

    #[test]
    fn restarts_requeue_or_fail_interrupted_jobs() {
        let (_dir, s) = store();
        s.insert("a", "A", None, 1, 1).unwrap();
        s.insert("b", "B", None, 1, 2).unwrap();
        s.claim(10).unwrap();
        s.claim(10).unwrap();
        s.release("b").unwrap();
        assert_eq!(s.get("b").unwrap().unwrap().attempts, 0);
        s.claim(10).unwrap(); // b again, attempt 1
        s.retry("a", "x", 10).unwrap();
        s.claim(10).unwrap(); // a, attempt 2
        assert_eq!(s.recover(2).unwrap(), 2);
        assert_eq!(s.get("a").unwrap().unwrap().status, Status::Failed);
        assert_eq!(s.get("b").unwrap().unwrap().status, Status::Queued);
        let counts = s.counts().unwrap();
        assert!(counts.contains(&(Status::Queued, 1)));
        assert!(counts.contains(&(Status::Failed, 1)));
        assert!(counts.contains(&(Status::Ready, 0)));
    }
}
