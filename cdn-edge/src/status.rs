//! The `Cache-Status` response header (RFC 9211), as this cache reports itself.
//!
//! `meridian; hit; ttl=42`, `meridian; fwd=miss; stored`, `meridian; fwd=uri-miss; collapsed`,
//! `meridian; fwd=stale; fwd-status=304`, `meridian; fwd=bypass; detail=no-store`, …

use std::fmt::Write;

/// The cache's name in `Cache-Status`.
pub const CACHE_NAME: &str = "meridian";

/// Why the request went forward to the origin (RFC 9211 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// The cache was not used for this request (method, configuration).
    Bypass,
    /// No stored object for this request (a missing `Vary` variant included: pingora-cache
    /// does not tell the two apart).
    UriMiss,
    /// The object was stale and was revalidated or refetched.
    Stale,
}

impl Forward {
    fn token(self) -> &'static str {
        match self {
            Forward::Bypass => "bypass",
            Forward::UriMiss => "uri-miss",
            Forward::Stale => "stale",
        }
    }
}

/// What the cache did for one response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStatus {
    /// Served from the cache without going forward (fresh, or stale allowed).
    pub hit: bool,
    /// Why the request went forward, when it did.
    pub forward: Option<Forward>,
    /// Status of the forwarded response (only reported when it differs from the final one).
    pub forward_status: Option<u16>,
    /// Remaining freshness in seconds (negative when stale).
    pub ttl: Option<i64>,
    /// The forwarded response was stored.
    pub stored: bool,
    /// The request waited for another request's fill of the same object.
    pub collapsed: bool,
    /// A short token telling why it was not stored or not served (`no-store`, `status`, …).
    pub detail: Option<&'static str>,
}

impl CacheStatus {
    /// The header value.
    pub fn render(&self) -> String {
        let mut out = String::from(CACHE_NAME);
        if self.hit {
            out.push_str("; hit");
        }
        if let Some(fwd) = self.forward {
            let _ = write!(out, "; fwd={}", fwd.token());
        }
        if let Some(status) = self.forward_status {
            let _ = write!(out, "; fwd-status={status}");
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(out, "; ttl={ttl}");
        }
        if self.stored {
            out.push_str("; stored");
        }
        if self.collapsed {
            out.push_str("; collapsed");
        }
        if let Some(detail) = self.detail {
            let _ = write!(out, "; detail={detail}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc_9211_parameters() {
        let hit = CacheStatus {
            hit: true,
            ttl: Some(42),
            ..CacheStatus::default()
        };
        assert_eq!(hit.render(), "meridian; hit; ttl=42");
        let miss = CacheStatus {
            forward: Some(Forward::UriMiss),
            stored: true,
            collapsed: true,
            ..CacheStatus::default()
        };
        assert_eq!(miss.render(), "meridian; fwd=uri-miss; stored; collapsed");
        let bypass = CacheStatus {
            forward: Some(Forward::Bypass),
            detail: Some("method"),
            ..CacheStatus::default()
        };
        assert_eq!(bypass.render(), "meridian; fwd=bypass; detail=method");
    }
}
