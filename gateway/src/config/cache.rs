//! Reading the top-level `cache:` (storage) section and a route's `cache:` section.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use cdn_edge::shield::{TierGuard, TIER_HEADER};

use cdn_edge::encoding::{self, DEFAULT_CODINGS, MAX_CODINGS};
use cdn_edge::hls::{HlsRules, MAX_PREFETCH};

use super::error::Errors;

use super::fields::{
    choice, duration, list, list_of, non_empty, number, positive_duration, size, size_usize, Fields,
};
use super::model::{
    CacheDisk, CacheProfile, CacheQuery, CacheStorage, Route, RouteCache, RouteShield,
    ShieldFallback, Upstream,
};
use super::yaml::Node;

/// Most names in a query allow/deny list or a `vary` list.
const MAX_NAMES: usize = 64;
/// Longest `lock_timeout`.
const MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a stored response stays usable when the origin fails, when its origin sent no
/// `stale-if-error` (a route's `stale_if_error`): Varnish's grace and nginx's
/// `proxy_cache_use_stale` keep serving what they hold while the origin is down.
pub const DEFAULT_STALE_IF_ERROR: Duration = Duration::from_secs(3600);

/// The longest `stale_if_error` a route may set.
const MAX_STALE_IF_ERROR: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest `hls.max_playlist_bytes`: playlists are parsed in memory on each fill.
const MAX_PLAYLIST_BYTES: usize = 16 << 20;
/// Longest HLS freshness setting.
const MAX_HLS_TTL: Duration = Duration::from_secs(365 * 86_400);
/// Smallest memory tier.
const MIN_MEMORY: u64 = 64 * 1024;
/// Largest `tier.max_hops`.
const MAX_HOPS: u64 = 16;
/// Default `tier.max_hops`: an edge, a shield and one more level.
const DEFAULT_MAX_HOPS: usize = 3;

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
    let tier = f.get("tier", errs, read_tier);
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
        tier,
    })
}

/// `tier: { name, max_hops }`.
fn read_tier(node: &Node, path: &str, errs: &mut Errors) -> Option<TierGuard> {
    let mut f = Fields::open(node, path, errs)?;
    let mut name_pos = f.pos();
    let name = f.require("name", errs, |n, p, e| {
        name_pos = n.pos;
        non_empty(n, p, e)
    });
    let max_hops = f.get_or("max_hops", DEFAULT_MAX_HOPS, errs, |n, p, e| {
        number(n, p, e, 1, MAX_HOPS)
    });
    f.finish(errs);
    match TierGuard::new(&name?, max_hops) {
        Ok(guard) => Some(guard),
        Err(why) => {
            errs.add(name_pos, format!("{path}.name: {why}"));
            None
        }
    }
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
pub(crate) fn read_route_cache(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    upstreams: &BTreeSet<String>,
) -> Option<RouteCache> {
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
    let mut sie_pos = f.pos();
    let stale_if_error = f.get_or("stale_if_error", DEFAULT_STALE_IF_ERROR, errs, |n, p, e| {
        sie_pos = n.pos;
        duration(n, p, e)
    });
    let query = f.get_or("query", CacheQuery::All, errs, read_query);
    let vary = f.get_or("vary", Vec::new(), errs, header_names);
    let accept_encoding = f.get_or(
        "accept_encoding",
        DEFAULT_CODINGS.iter().map(|c| (*c).to_string()).collect(),
        errs,
        codings,
    );
    let mut lock_pos = f.pos();
    let lock_timeout = f.get_or("lock_timeout", Duration::from_secs(5), errs, |n, p, e| {
        lock_pos = n.pos;
        positive_duration(n, p, e)
    });
    let max_object = f.get("max_object", errs, positive_size);
    let mut hls_pos = None;
    let hls = f
        .get("hls", errs, |n, p, e| {
            hls_pos = Some(n.pos);
            read_hls(n, p, e)
        })
        .unwrap_or_default();
    let shield = f.get("shield", errs, |n, p, e| read_shield(n, p, e, upstreams));
    f.finish(errs);
    if let (Some(pos), CacheProfile::Default) = (hls_pos, profile) {
        errs.add(pos, format!("{path}.hls: expected profile: hls with hls:"));
        return None;
    }
    if lock_timeout > MAX_LOCK_TIMEOUT {
        errs.add(
            lock_pos,
            format!("{path}.lock_timeout: expected at most 60s"),
        );
        return None;
    }
    if stale_if_error > MAX_STALE_IF_ERROR {
        errs.add(
            sie_pos,
            format!("{path}.stale_if_error: expected at most 7d"),
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
        accept_encoding,
        lock_timeout,
        max_object,
        hls,
        shield,
    })
}

/// `shield: { upstream: NAME, fallback: origin | error }`.
fn read_shield(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    upstreams: &BTreeSet<String>,
) -> Option<RouteShield> {
    let mut f = Fields::open(node, path, errs)?;
    let mut at = f.pos();
    let upstream = f.require("upstream", errs, |n, p, e| {
        at = n.pos;
        super::routes::upstream_ref(n, p, e, upstreams)
    });
    let fallback = f.get_or("fallback", ShieldFallback::Origin, errs, |n, p, e| {
        choice(
            n,
            p,
            e,
            &[
                ("origin", ShieldFallback::Origin),
                ("error", ShieldFallback::Error),
            ],
        )
    });
    f.finish(errs);
    Some(RouteShield {
        upstream: upstream?,
        fallback,
        shields: Vec::new(),
        at,
    })
}

/// Fills in each route's shields from its shield upstream's targets, which must be IP
/// literals (the ring is fixed for the life of a config; DNS would move keys between
/// shields), and requires `cache.tier` when a route has a shield (loop prevention).
pub(crate) fn resolve_shields(
    routes: &mut [Route],
    upstreams: &BTreeMap<String, Upstream>,
    storage: Option<&CacheStorage>,
    errs: &mut Errors,
) {
    for route in routes.iter_mut() {
        let path = format!("routes: route {}: cache.shield.upstream", route.name);
        let Some(shield) = route.cache.as_mut().and_then(|c| c.shield.as_mut()) else {
            continue;
        };
        if storage.is_some_and(|s| s.tier.is_none()) {
            errs.add(
                shield.at,
                format!(
                    "{path}: a shield needs this process's tier name for loop prevention \
                     (expected cache: {{ tier: {{ name: edge-a }} }})"
                ),
            );
        }
        let Some(up) = upstreams.get(&shield.upstream) else {
            // Reported where the upstream itself is read.
            continue;
        };
        for t in &up.targets {
            match t.host.parse::<IpAddr>() {
                Ok(ip) => shield.shields.push((SocketAddr::new(ip, t.port), t.weight)),
                Err(_) => {
                    errs.add(
                        shield.at,
                        format!(
                            "{path}: upstream \"{}\" has target \"{}\"; shield targets must be \
                             IP addresses so every edge hashes over the same ring",
                            shield.upstream,
                            t.authority()
                        ),
                    );
                    shield.shields.clear();
                    break;
                }
            }
        }
    }
}

/// A route's `cache.hls:` section (the [`HlsRules`] fields; every one optional).
fn read_hls(node: &Node, path: &str, errs: &mut Errors) -> Option<HlsRules> {
    let d = HlsRules::default();
    let mut f = Fields::open(node, path, errs)?;
    let mut bounds = Vec::new();
    let mut ttl = |f: &mut Fields, key: &'static str, default: Duration, errs: &mut Errors| {
        f.get_or(key, default, errs, |n, p, e| {
            let v = positive_duration(n, p, e)?;
            bounds.push((n.pos, p.to_owned(), v));
            Some(v)
        })
    };
    let rules = HlsRules {
        vod_playlist_ttl: ttl(&mut f, "vod_playlist_ttl", d.vod_playlist_ttl, errs),
        master_playlist_ttl: ttl(&mut f, "master_playlist_ttl", d.master_playlist_ttl, errs),
        live_playlist_min_ttl: ttl(
            &mut f,
            "live_playlist_min_ttl",
            d.live_playlist_min_ttl,
            errs,
        ),
        live_playlist_max_ttl: ttl(
            &mut f,
            "live_playlist_max_ttl",
            d.live_playlist_max_ttl,
            errs,
        ),
        segment_ttl: ttl(&mut f, "segment_ttl", d.segment_ttl, errs),
        init_segment_ttl: ttl(&mut f, "init_segment_ttl", d.init_segment_ttl, errs),
        blocking_reload_lock_timeout: ttl(
            &mut f,
            "blocking_reload_lock_timeout",
            d.blocking_reload_lock_timeout,
            errs,
        ),
        max_playlist_bytes: f.get_or(
            "max_playlist_bytes",
            d.max_playlist_bytes,
            errs,
            |n, p, e| {
                let v = size_usize(n, p, e)?;
                if v > MAX_PLAYLIST_BYTES {
                    e.add(n.pos, format!("{p}: expected at most 16MiB"));
                    return None;
                }
                Some(v)
            },
        ),
        key_query_keep: f.get_or("key_query_keep", Vec::new(), errs, names),
        prefetch: f.get_or("prefetch", d.prefetch, errs, |n, p, e| {
            number(n, p, e, 0, MAX_PREFETCH as u64)
        }),
    };
    let pos = f.pos();
    f.finish(errs);
    for (at, p, v) in bounds {
        if v > MAX_HLS_TTL {
            errs.add(at, format!("{p}: expected at most 365d"));
            return None;
        }
    }
    if rules.live_playlist_min_ttl > rules.live_playlist_max_ttl {
        errs.add(
            pos,
            format!("{path}: expected live_playlist_min_ttl at most live_playlist_max_ttl"),
        );
        return None;
    }
    if rules.blocking_reload_lock_timeout > MAX_LOCK_TIMEOUT {
        errs.add(
            pos,
            format!("{path}.blocking_reload_lock_timeout: expected at most 60s"),
        );
        return None;
    }
    Some(rules)
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

/// `accept_encoding: [br, gzip]`: at most [`MAX_CODINGS`] distinct content codings, lower
/// case (see [`encoding::coding`]).
fn codings(node: &Node, path: &str, errs: &mut Errors) -> Option<Vec<String>> {
    let items = list(node, path, errs)?;
    if items.len() > MAX_CODINGS {
        errs.add(
            node.pos,
            format!(
                "{path}: expected at most {MAX_CODINGS} codings, found {}",
                items.len()
            ),
        );
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = non_empty(item, &format!("{path}[{i}]"), errs)?;
        let name = match encoding::coding(&name) {
            Ok(name) => name,
            Err(why) => {
                errs.add(item.pos, format!("{path}[{i}]: {why}"));
                return None;
            }
        };
        if out.contains(&name) {
            errs.add(item.pos, format!("{path}[{i}]: \"{name}\" is listed twice"));
            return None;
        }
        out.push(name);
    }
    Some(out)
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
        if name.eq_ignore_ascii_case(TIER_HEADER) {
            errs.add(
                node.pos,
                format!("{path}: \"{TIER_HEADER}\" is the tier hop header and cannot be keyed"),
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

    use crate::config::{load_str, CacheProfile, CacheQuery, ShieldFallback};

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
        assert_eq!(rc.stale_if_error, Duration::from_secs(3600));
    }

    #[test]
    fn accept_encoding_reads_with_its_default() {
        let cfg = load_str(&format!("{}cache: {{}}\n", route("{}")), "t.yaml")
            .unwrap_or_else(|e| panic!("{e}"));
        let rc = cfg.routes[0].cache.clone().expect("route cache");
        assert_eq!(rc.accept_encoding, ["br", "zstd", "gzip"]);
        assert!(rc.vary.is_empty(), "the allow-list stays empty");
        let cases: [(&str, &[&str]); 3] = [
            ("{ accept_encoding: [GZIP, Br] }", &["gzip", "br"]),
            (
                "{ accept_encoding: [x-gzip, deflate] }",
                &["gzip", "deflate"],
            ),
            ("{ accept_encoding: [] }", &[]),
        ];
        for (cache, want) in cases {
            let text = format!("{}cache: {{}}\n", route(cache));
            let cfg = load_str(&text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
            let rc = cfg.routes[0].cache.clone().expect("route cache");
            assert_eq!(rc.accept_encoding, want, "{cache}");
        }
    }

    #[test]
    fn bad_accept_encoding_is_explained_with_its_position() {
        // `route` puts the route on line 4; the cache mapping starts at column 54.
        let cases = [
            (
                "{ accept_encoding: [br, identity] }",
                "t.yaml:4:78: routes[0].cache.accept_encoding[1]: \"identity\" is not a content coding a response can carry",
            ),
            (
                "{ accept_encoding: [gzip, \"*\"] }",
                "t.yaml:4:80: routes[0].cache.accept_encoding[1]: \"*\" is not a content coding",
            ),
            (
                "{ accept_encoding: [\"g zip\"] }",
                "t.yaml:4:74: routes[0].cache.accept_encoding[0]: \"g zip\" is not a content coding",
            ),
            (
                "{ accept_encoding: [gzip, x-gzip] }",
                "t.yaml:4:80: routes[0].cache.accept_encoding[1]: \"gzip\" is listed twice",
            ),
            (
                "{ accept_encoding: [a, b, c, d, e] }",
                "t.yaml:4:73: routes[0].cache.accept_encoding: expected at most 4 codings, found 5",
            ),
            (
                "{ accept_encoding: gzip }",
                "t.yaml:4:73: routes[0].cache.accept_encoding: expected a list",
            ),
        ];
        for (cache, want) in cases {
            let text = format!("{}cache: {{}}\n", route(cache));
            let err = load_str(&text, "t.yaml").expect_err(want).to_string();
            assert!(err.contains(want), "{want}\n  not in\n{err}");
        }
    }

    #[test]
    fn hls_rules_read_with_units_and_defaults() {
        let text = format!(
            "{}cache: {{}}\n",
            route("{ profile: hls, hls: { vod_playlist_ttl: 2h, live_playlist_min_ttl: 250ms, max_playlist_bytes: 64KiB, key_query_keep: [token], prefetch: 4 } }")
        );
        let cfg = load_str(&text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        let hls = cfg.routes[0].cache.clone().expect("route cache").hls;
        assert_eq!(hls.vod_playlist_ttl, Duration::from_secs(7200));
        assert_eq!(hls.live_playlist_min_ttl, Duration::from_millis(250));
        assert_eq!(hls.max_playlist_bytes, 64 * 1024);
        assert_eq!(hls.key_query_keep, vec!["token".to_string()]);
        assert_eq!(hls.prefetch, 4);
        assert_eq!(hls.segment_ttl, Duration::from_secs(86_400), "default kept");
        let text = format!("{}cache: {{}}\n", route("{ profile: hls }"));
        let cfg = load_str(&text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.routes[0].cache.clone().expect("route cache").hls,
            cdn_edge::hls::HlsRules::default()
        );
    }

    #[test]
    fn bad_hls_rules_are_explained_with_their_position() {
        let cases = [
            (
                "{ hls: { prefetch: 2 } }",
                "t.yaml:4:61: routes[0].cache.hls: expected profile: hls",
            ),
            (
                "{ profile: hls, hls: { prefetch: 17 } }",
                "routes[0].cache.hls.prefetch: expected a whole number from 0 to 16",
            ),
            (
                "{ profile: hls, hls: { vod_ttl: 1d } }",
                "routes[0].cache.hls.vod_ttl: unknown key; expected one of vod_playlist_ttl",
            ),
            (
                "{ profile: hls, hls: { segment_ttl: 1 fortnight } }",
                "routes[0].cache.hls.segment_ttl",
            ),
            (
                "{ profile: hls, hls: { segment_ttl: 0s } }",
                "expected a duration longer than zero",
            ),
            (
                "{ profile: hls, hls: { segment_ttl: 400d } }",
                "segment_ttl: expected at most 365d",
            ),
            (
                "{ profile: hls, hls: { max_playlist_bytes: 1GiB } }",
                "max_playlist_bytes: expected at most 16MiB",
            ),
            (
                "{ profile: hls, hls: { live_playlist_min_ttl: 20s } }",
                "expected live_playlist_min_ttl at most live_playlist_max_ttl",
            ),
            (
                "{ profile: hls, hls: { blocking_reload_lock_timeout: 2m } }",
                "blocking_reload_lock_timeout: expected at most 60s",
            ),
        ];
        for (cache, want) in cases {
            let text = format!("{}cache: {{}}\n", route(cache));
            let err = load_str(&text, "t.yaml").expect_err(want).to_string();
            assert!(err.contains(want), "{want}\n  not in\n{err}");
        }
    }

    /// A config with an origin and a `shields` upstream whose targets are `shields`.
    fn with_shields(shields: &str, storage: &str, shield: &str) -> String {
        format!(
            "listeners: [{{ name: p, address: 127.0.0.1:8080 }}]\nupstreams: {{ o: {{ targets: [127.0.0.1:1] }}, s: {{ targets: {shields} }} }}\nroutes:\n  - {{ match: {{ path_prefix: / }}, upstream: o, cache: {{ shield: {shield} }} }}\ncache: {storage}\n"
        )
    }

    #[test]
    fn tier_and_shield_read_with_defaults() {
        let text = with_shields(
            "[127.0.0.1:2, { address: \"[::1]:3\", weight: 4 }]",
            "{ tier: { name: edge-a } }",
            "{ upstream: s }",
        );
        let cfg = load_str(&text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        let tier = cfg.cache.expect("storage").tier.expect("tier");
        assert_eq!((tier.name(), tier.max_hops()), ("edge-a", 3));
        let shield = cfg.routes[0]
            .cache
            .clone()
            .expect("cache")
            .shield
            .expect("shield");
        assert_eq!(shield.upstream, "s");
        assert_eq!(shield.fallback, ShieldFallback::Origin);
        assert_eq!(
            shield.shields,
            vec![
                ("127.0.0.1:2".parse().expect("addr"), 1),
                ("[::1]:3".parse().expect("addr"), 4)
            ]
        );
    }

    #[test]
    fn bad_tiers_and_shields_are_explained() {
        let ok_tier = "{ tier: { name: edge-a } }";
        let cases = [
            (
                with_shields("[127.0.0.1:2]", "{}", "{ upstream: s }"),
                "t.yaml:4:76: routes: route route-0: cache.shield.upstream: a shield needs this process's tier name",
            ),
            (
                with_shields("[shield.example:80]", ok_tier, "{ upstream: s }"),
                "shield targets must be IP addresses",
            ),
            (
                with_shields("[127.0.0.1:2]", ok_tier, "{ upstream: nope }"),
                "routes[0].cache.shield.upstream: unknown upstream \"nope\"",
            ),
            (
                with_shields("[127.0.0.1:2]", ok_tier, "{ upstream: s, fallback: retry }"),
                "unknown value \"retry\"; expected one of origin, error",
            ),
            (
                with_shields(
                    "[127.0.0.1:2]",
                    "{ tier: { name: \"a,b\" } }",
                    "{ upstream: s }",
                ),
                "cache.tier.name: tier name \"a,b\" must be",
            ),
            (
                with_shields(
                    "[127.0.0.1:2]",
                    "{ tier: { name: e, max_hops: 0 } }",
                    "{ upstream: s }",
                ),
                "cache.tier.max_hops: expected a whole number from 1 to 16",
            ),
            (
                format!("{}cache: {{}}\n", route("{ vary: [X-Meridian-Tier] }")),
                "is the tier hop header and cannot be keyed",
            ),
        ];
        for (text, want) in cases {
            let err = load_str(&text, "t.yaml").expect_err(want).to_string();
            assert!(err.contains(want), "{want}\n  not in\n{err}");
        }
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
                format!("{}cache: {{}}\n", route("{ stale_if_error: 8d }")),
                "stale_if_error: expected at most 7d",
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
