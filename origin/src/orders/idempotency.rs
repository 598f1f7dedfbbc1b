//! Idempotency keys for `POST /api/orders`: the first request with a key stores its response;
//! a repeat with the same request gets that response again, a repeat with a different request
//! gets 422. The check, the order's append and the stored response commit in one transaction,
//! so concurrent duplicates create one order. Keys expire (`idempotency_ttl`) and are capped
//! (`idempotency_max_keys`, see the housekeeping).

use http::{HeaderMap, StatusCode};
use rusqlite::{params, OptionalExtension, Transaction};
use sha2::{Digest, Sha256};

use super::store::StoreResult;
use crate::http::ApiError;

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// Longest key accepted.
const MAX_KEY: usize = 128;

/// The request's key, if it has one: 1..=128 visible ASCII characters.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    if key.is_empty() || key.len() > MAX_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "Idempotency-Key must be 1-128 visible ASCII characters",
        ));
    }
    Ok(Some(key.to_string()))
}

/// A digest of what makes two requests the same.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.len().to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What a key says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Prior {
    /// Not seen (or expired): handle the request.
    New,
    /// Seen with the same request: answer this again.
    Replay {
        /// Stored status.
        status: StatusCode,
        /// Stored body.
        body: String,
    },
    /// Seen with a different request.
    Mismatch,
}

/// Looks `key` up (entries older than `ttl_ms` count as absent and are dropped).
pub fn check(
    tx: &Transaction<'_>,
    key: &str,
    fingerprint: &str,
    now: i64,
    ttl_ms: i64,
) -> StoreResult<Prior> {
    let row: Option<(String, u16, String, i64)> = tx
        .query_row(
            "SELECT fingerprint, status, body, created_at FROM idempotency WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    Ok(match row {
        None => Prior::New,
        Some((_, _, _, created)) if created <= now.saturating_sub(ttl_ms) => {
            tx.execute("DELETE FROM idempotency WHERE key = ?1", [key])?;
            Prior::New
        }
        Some((stored, status, body, _)) if stored == fingerprint => Prior::Replay {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            body,
        },
        Some(_) => Prior::Mismatch,
    })
}

/// Stores the response to `key`.
pub fn remember(
    tx: &Transaction<'_>,
    key: &str,
    fingerprint: &str,
    status: StatusCode,
    body: &str,
    now: i64,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO idempotency (key, fingerprint, status, body, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![key, fingerprint, status.as_u16(), body, now],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::store::Store;
    use super::*;

    #[test]
    fn keys_are_validated() {
        let mut h = HeaderMap::new();
        assert_eq!(key(&h).unwrap(), None);
        h.insert(HEADER, "abc-123".parse().unwrap());
        assert_eq!(key(&h).unwrap().as_deref(), Some("abc-123"));
        h.insert(HEADER, "x".repeat(129).parse().unwrap());
        assert!(key(&h).is_err());
        h.insert(HEADER, "has space".parse().unwrap());
        assert!(key(&h).is_err());
    }

    #[test]
    fn fingerprints_separate_their_parts() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["a"]), fingerprint(&["a"]));
    }

    #[tokio::test]
    async fn replays_mismatches_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .tx(|tx| remember(tx, "k", "f1", StatusCode::ACCEPTED, "{}", 1000))
            .await
            .unwrap();
        let same = store.tx(|tx| check(tx, "k", "f1", 1500, 1000)).await;
        assert_eq!(
            same.unwrap(),
            Prior::Replay {
                status: StatusCode::ACCEPTED,
                body: "{}".into()
            }
        );
        let other = store.tx(|tx| check(tx, "k", "f2", 1500, 1000)).await;
        assert_eq!(other.unwrap(), Prior::Mismatch);
        let expired = store.tx(|tx| check(tx, "k", "f2", 2000, 1000)).await;
        assert_eq!(expired.unwrap(), Prior::New);
    }
}
