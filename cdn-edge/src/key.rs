//! Cache keys: scheme, host, path and a normalised query.
//!
//! The primary key is the length-prefixed concatenation of its parts, so no two different
//! requests frame to the same bytes (`a` + `bc` ≠ `ab` + `c`). The query is split into its
//! `name=value` pairs, filtered by the route's allow or deny list, and sorted, so
//! `?b=2&a=1` and `?a=1&b=2` share one object. `Vary` is not part of the primary key: it is
//! pingora-cache's variance key, computed from the stored response's `Vary` header.

use pingora_cache::CacheKey;

/// Longest query (in bytes) that is normalised; longer queries are keyed as written.
///
/// Bounds the work and the memory spent per request on sorting.
const MAX_NORMALISED_QUERY: usize = 8 * 1024;

/// Which query parameters are part of the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QueryRule {
    /// Every parameter (sorted).
    #[default]
    All,
    /// Only these parameter names (sorted); every other one is dropped from the key.
    Allow(Vec<String>),
    /// Every parameter but these names (sorted).
    Deny(Vec<String>),
    /// No parameter: the query is ignored.
    Ignore,
}

impl QueryRule {
    fn keeps(&self, name: &str) -> bool {
        match self {
            QueryRule::All => true,
            QueryRule::Allow(names) => names.iter().any(|n| n == name),
            QueryRule::Deny(names) => !names.iter().any(|n| n == name),
            QueryRule::Ignore => false,
        }
    }
}

/// The query as it takes part in the key: the kept parameters, sorted, joined by `&`.
///
/// Parameters are compared as written (percent-encoding is not decoded), and sorting is
/// stable, so repeated names keep their relative order (`a=2&a=1` ≠ `a=1&a=2`).
pub fn normalise_query(query: Option<&str>, rule: &QueryRule) -> String {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return String::new();
    };
    if query.len() > MAX_NORMALISED_QUERY {
        return match rule {
            QueryRule::Ignore => String::new(),
            _ => query.to_string(),
        };
    }
    let mut pairs: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| rule.keeps(param_name(p)))
        .collect();
    pairs.sort_by(|a, b| param_name(a).cmp(param_name(b)));
    pairs.join("&")
}

/// The name part of a `name=value` query parameter.
fn param_name(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(name, _)| name)
}

/// The cache key of a request: `scheme`, `host` (lower case, no port), `path` and the query
/// normalised by `rule`.
pub fn cache_key(
    scheme: &str,
    host: &str,
    path: &str,
    query: Option<&str>,
    rule: &QueryRule,
) -> CacheKey {
    let query = normalise_query(query, rule);
    let mut primary = Vec::with_capacity(scheme.len() + host.len() + path.len() + query.len() + 32);
    for part in [scheme, host, path, query.as_str()] {
        primary.extend_from_slice(&(part.len() as u64).to_le_bytes());
        primary.extend_from_slice(part.as_bytes());
    }
    CacheKey::new(primary, "")
}

/// The URL a key stands for, as purge requests name it: `scheme://host/path?query`.
pub fn display_url(scheme: &str, host: &str, path: &str, query: &str) -> String {
    if query.is_empty() {
        format!("{scheme}://{host}{path}")
    } else {
        format!("{scheme}://{host}{path}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::key::CacheHashKey;

    #[test]
    fn queries_are_sorted_and_filtered() {
        assert_eq!(normalise_query(Some("b=2&a=1"), &QueryRule::All), "a=1&b=2");
        assert_eq!(normalise_query(Some("a=2&a=1"), &QueryRule::All), "a=2&a=1");
        assert_eq!(normalise_query(Some("&&"), &QueryRule::All), "");
        assert_eq!(normalise_query(None, &QueryRule::All), "");
        let allow = QueryRule::Allow(vec!["v".into()]);
        assert_eq!(normalise_query(Some("utm=x&v=3"), &allow), "v=3");
        let deny = QueryRule::Deny(vec!["utm".into()]);
        assert_eq!(normalise_query(Some("utm=x&v=3&b"), &deny), "b&v=3");
        assert_eq!(normalise_query(Some("v=3"), &QueryRule::Ignore), "");
    }

    #[test]
    fn keys_frame_their_parts() {
        let a = cache_key("http", "ab", "/c", None, &QueryRule::All);
        let b = cache_key("http", "a", "b/c", None, &QueryRule::All);
        assert_ne!(a.primary_bin(), b.primary_bin());
        let c = cache_key("http", "h", "/p", Some("b=1&a=2"), &QueryRule::All);
        let d = cache_key("http", "h", "/p", Some("a=2&b=1"), &QueryRule::All);
        assert_eq!(c.primary_bin(), d.primary_bin());
    }

    #[test]
    fn huge_queries_are_keyed_as_written() {
        let q = "z=1&".repeat(5000);
        assert_eq!(normalise_query(Some(&q), &QueryRule::All), q);
    }
}
