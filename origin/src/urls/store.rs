//! What the shortener keeps: the [`UrlStore`] trait its handlers and click flusher use, and
//! the records it stores.
//!
//! The trait is synchronous (SQLite is), so callers run it in `spawn_blocking`. Another
//! backend (Postgres, say) implements the same three operations; see `docs/origins/urls.md`.

use std::collections::HashMap;
use std::fmt;

/// One short link as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The short code (generated or the client's alias).
    pub code: String,
    /// The target URL, as normalised by the `url` crate.
    pub url: String,
    /// When it was created, in unix seconds.
    pub created_at: i64,
    /// When it stops redirecting, in unix seconds (`None`: never).
    pub expires_at: Option<i64>,
}

impl Link {
    /// Whether the link has expired at `now_ms` (unix milliseconds).
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at
            .is_some_and(|at| now_ms >= at.saturating_mul(1000))
    }

    /// Whole seconds the link still redirects for at `now_ms` (`None`: it never expires).
    pub fn seconds_left(&self, now_ms: i64) -> Option<u64> {
        self.expires_at.map(|at| {
            let left_ms = at.saturating_mul(1000).saturating_sub(now_ms).max(0);
            u64::try_from(left_ms / 1000).unwrap_or(0)
        })
    }
}

/// A stored link with the clicks flushed to the store so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLink {
    /// The link.
    pub link: Link,
    /// Clicks written by the flusher (clicks still pending in memory are not included).
    pub clicks: u64,
}

/// A store failure (I/O, a corrupt file, a lost connection …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "url store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// Why a link could not be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateError {
    /// A link with that code exists already (the store's uniqueness constraint said so).
    Taken,
    /// The store failed.
    Store(StoreError),
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Taken => f.write_str("code is taken"),
            Self::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CreateError {}

impl From<StoreError> for CreateError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Where links and their flushed click counts live.
///
/// Implementations must make [`UrlStore::create`] atomic with respect to the code: of any
/// number of concurrent creations of one code exactly one succeeds and the others get
/// [`CreateError::Taken`] (a uniqueness constraint, not a check-then-insert).
pub trait UrlStore: Send + Sync + 'static {
    /// Inserts `link` with zero clicks.
    fn create(&self, link: &Link) -> Result<(), CreateError>;

    /// The link with `code`, if there is one (expired links included).
    fn get(&self, code: &str) -> Result<Option<StoredLink>, StoreError>;

    /// Adds each count of `batch` to its code's clicks, all in one transaction: either every
    /// count is written or none is. Codes the store does not hold are skipped.
    fn add_clicks(&self, batch: &HashMap<String, u64>) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(expires_at: Option<i64>) -> Link {
        Link {
            code: "abc".into(),
            url: "https://example.com/".into(),
            created_at: 100,
            expires_at,
        }
    }

    #[test]
    fn permanent_links_never_expire() {
        let l = link(None);
        assert!(!l.is_expired(i64::MAX));
        assert_eq!(l.seconds_left(0), None);
    }

    #[test]
    fn expiry_is_exact_to_the_millisecond() {
        let l = link(Some(110));
        assert!(!l.is_expired(109_999));
        assert!(l.is_expired(110_000));
        assert_eq!(l.seconds_left(100_000), Some(10));
        assert_eq!(l.seconds_left(109_001), Some(0));
        assert_eq!(l.seconds_left(200_000), Some(0));
    }
}
