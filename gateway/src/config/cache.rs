//! Reading the top-level `cache:` (storage) section and a route's `cache:` section.

use std::path::Path;
use std::time::Duration;

use super::error::Errors;
use super::fields::{choice, duration, list_of, non_empty, positive_duration, size, Fields};
use super::model::{CacheDisk, CacheProfile, CacheQuery, CacheStorage, RouteCache};
use super::yaml::Node;

/// Most names in a query allow/deny list or a `vary` list.
const MAX_NAMES: usize = 64;
/// Longest `lock_timeout`.
const MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// Smallest memory tier.
const MIN_MEMORY: u64 = 64 * 1024;

/// Reads the top-level `cache:` section.
pub(crate) fn read_storage(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    base: &Path,
) -> Option<CacheStorage> {
    let mut f = Fields::open(node, path, errs)?;
    let mut memory_pos = f.pos();
    let memory = f.get_or("memory", 256 << 20, errs, |n, p, e| {
        memory_pos = n.pos;
        size(n, p, e)
    });
    let memory_max_object = f.get_or("memory_max_object", 16 << 20, errs, positive_size);
    let disk = f.get("disk", errs, |n, p, e| read_disk(n, p, e, base));
    let max_object = f.get("max_object", errs, positive_size);
    f.finish(errs);
    if memory < MIN_MEMORY {
        errs.add(
            memory_pos,
            format!("{path}.memory: expected at least 64KiB, found {memory} bytes"),
        );
        return None;
    }
    Some(CacheStorage {
        memory,
        memory_max_object: memory_max_object.min(memory),
        disk,
        max_object,
    })
}

fn read_disk(node: &Node, path: &str, errs: &mut Errors, base: &Path) -> Option<CacheDisk> {
    let mut f = Fields::open(node, path, errs)?;
    let dir = f.require("path", errs, non_empty);
    let disk_size = f.get_or("size", 10 << 30, errs, positive_size);
    let max_object = f.get_or("max_object", 1 << 30, errs, positive_size);
    f.finish(errs);
    Some(CacheDisk {
        path: base.join(dir?),
        size: disk_size,
        max_object: max_object.min(disk_size),
    })
}

fn positive_size(node: &Node, path: &str, errs: &mut Errors) -> Option<u64> {
    let n = size(node, path, errs)?;
    if n == 0 {
        errs.add(
            node.pos,
            format!("{path}: expected a size of at least 1 byte"),
        );
        return None;
    }
    Some(n)
}

/// Reads a route's `cache:` section.
pub(crate) fn read_route_cache(node: &Node, path: &str, errs: &mut Errors) -> Option<RouteCache> {
    let mut f = Fields::open(node, path, errs)?;
    let profile = f.get_or("profile", CacheProfile::Default, errs, |n, p, e| {
        choice(
            n,
            p,
            e,
            &[
                ("default", CacheProfile::Default),
                ("hls", CacheProfile::Hls),
            ],
        )
    });
    let default_ttl = f.get("default_ttl", errs, duration);
    let negative_ttl = f.get_or("negative_ttl", Duration::from_secs(10), errs, duration);
    let stale_while_revalidate = f.get_or("stale_while_revalidate", Duration::ZERO, errs, duration);
    let stale_if_error = f.get_or("stale_if_error", Duration::ZERO, errs, duration);
    let query = f.get_or("query", CacheQuery::All, errs, read_query);
    let vary = f.get_or("vary", Vec::new(), errs, header_names);
    let mut lock_pos = f.pos();
    let lock_timeout = f.get_or("lock_timeout", Duration::from_secs(5), errs, |n, p, e| {
        lock_pos = n.pos;
        positive_duration(n, p, e)
    });
    let max_object = f.get("max_object", errs, positive_size);
    f.finish(errs);
    if lock_timeout > MAX_LOCK_TIMEOUT {
        errs.add(
            lock_pos,
            format!("{path}.lock_timeout: expected at most 60s"),
        );
        return None;
    }
    Some(RouteCache {
        profile,
        default_ttl,
        negative_ttl,
        stale_while_revalidate,
        stale_if_error,
        query,
        vary,
        lock_timeout,
        max_object,
    })
}

/// `query: all | ignore | { allow: [...] } | { deny: [...] }`.
fn read_query(node: &Node, path: &str, errs: &mut Errors) -> Option<CacheQuery> {
    if let super::yaml::Kind::Scalar { .. } = node.kind {
        return choice(
            node,
            path,
            errs,
            &[("all", CacheQuery::All), ("ignore", CacheQuery::Ignore)],
        );
    }
    let mut f = Fields::open(node, path, errs)?;
    let allow = f.get("allow", errs, names);
    let deny = f.get("deny", errs, names);
    let pos = f.pos();
    f.finish(errs);
    match (allow, deny) {
        (Some(a), None) => Some(CacheQuery::Allow(a)),
        (None, Some(d)) => Some(CacheQuery::Deny(d)),
        _ => {
            errs.add(
                pos,
                format!("{path}: expected exactly one of allow or deny"),
            );
            None
        }
    }
}

/// A bounded list of non-empty names.
fn names(node: &Node, path: &str, errs: &mut Errors) -> Option<Vec<String>> {
    let list = list_of(node, path, errs, non_empty)?;
    if list.len() > MAX_NAMES {
        errs.add(
            node.pos,
            format!(
                "{path}: expected at most {MAX_NAMES} names, found {}",
                list.len()
            ),
        );
        return None;
    }
    Some(list)
}

/// A bounded list of valid header names, lower-cased.
fn header_names(node: &Node, path: &str, errs: &mut Errors) -> Option<Vec<String>> {
    let list = names(node, path, errs)?;
    let mut out = Vec::with_capacity(list.len());
    for name in list {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            errs.add(
                node.pos,
                format!("{path}: \"{name}\" is not a valid header name"),
            );
            return None;
        }
        out.push(name.to_ascii_lowercase());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{load_str, CacheProfile, CacheQuery};

    const HEAD: &str = "listeners: [{ name: p, address: 127.0.0.1:8080 }]\nupstreams: { o: { targets: [127.0.0.1:1] } }\n";

    fn route(cache: &str) -> String {
        format!(
            "{HEAD}routes:\n  - {{ match: {{ path_prefix: / }}, upstream: o, cache: {cache} }}\n"
        )
    }

    #[test]
    fn storage_and_route_cache_read_with_defaults() {
        let text = format!(
            "{}cache: {{ memory: 1MiB, disk: {{ path: /tmp/x, size: 2GiB }} }}\n",
            route("{ profile: hls, query: { allow: [v] }, vary: [Accept-Language] }")
        );
        let cfg = load_str(&text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        let storage = cfg.cache.expect("storage");
        assert_eq!(storage.memory, 1 << 20);
        assert_eq!(storage.memory_max_object, 1 << 20, "capped at memory");
        let disk = storage.disk.expect("disk");
        assert_eq!((disk.size, disk.max_object), (2 << 30, 1 << 30));
        let rc = cfg.routes[0].cache.clone().expect("route cache");
        assert_eq!(rc.profile, CacheProfile::Hls);
        assert_eq!(rc.query, CacheQuery::Allow(vec!["v".into()]));
        assert_eq!(rc.vary, vec!["accept-language".to_string()]);
        assert_eq!(rc.negative_ttl, Duration::from_secs(10));
        assert_eq!(rc.lock_timeout, Duration::from_secs(5));
        assert_eq!(rc.default_ttl, None);
    }

    #[test]
    fn bad_cache_sections_are_explained() {
        let cases = [
            (route("{}"), "no top-level cache: section"),
            (
                format!("{}cache: {{ memory: 1KiB }}\n", route("{}")),
                "cache.memory: expected at least 64KiB",
            ),
            (
                format!(
                    "{}cache: {{}}\n",
                    route("{ query: { allow: [a], deny: [b] } }")
                ),
                "routes[0].cache.query: expected exactly one of allow or deny",
            ),
            (
                format!("{}cache: {{}}\n", route("{ query: sorted }")),
                "unknown value \"sorted\"; expected one of all, ignore",
            ),
            (
                format!("{}cache: {{}}\n", route("{ vary: [\"bad header\"] }")),
                "is not a valid header name",
            ),
            (
                format!("{}cache: {{}}\n", route("{ lock_timeout: 5m }")),
                "lock_timeout: expected at most 60s",
            ),
            (
                format!("{}cache: {{ disk: {{ size: 1GiB }} }}\n", route("{}")),
                "cache.disk: missing required key \"path\"",
            ),
        ];
        for (text, want) in cases {
            let err = load_str(&text, "t.yaml").expect_err(want).to_string();
            assert!(err.contains(want), "{want}\n  not in\n{err}");
        }
    }
}
