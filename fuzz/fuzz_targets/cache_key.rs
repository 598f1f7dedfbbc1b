//! Cache-key building: distinct (host, path, query) give distinct keys; the query's parameter
//! order does not split the cache; normalising is idempotent; the LL-HLS key keeps only the
//! parameters it names.
#![no_main]

use cdn_edge::hls::{key_query, Kind, LL_HLS_DIRECTIVES};
use cdn_edge::key::{cache_key, normalise_query, QueryRule};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // host \n path \n query \n other path
    let mut parts = text.splitn(4, '\n');
    let (host, path, query, other) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let rules = [
        QueryRule::All,
        QueryRule::Allow(vec!["a".into(), "_HLS_msn".into()]),
        QueryRule::Deny(vec!["a".into()]),
        QueryRule::Ignore,
    ];
    for rule in &rules {
        let normal = normalise_query(Some(query), rule);
        assert_eq!(
            normalise_query(Some(&normal), rule),
            normal,
            "{query:?} under {rule:?} is not stable"
        );
        // Reordering parameters with distinct names keeps the key.
        let pairs: Vec<&str> = query.split('&').collect();
        let names: Vec<&str> = pairs
            .iter()
            .map(|p| p.split_once('=').map_or(*p, |(n, _)| n))
            .collect();
        let distinct = names
            .iter()
            .enumerate()
            .all(|(i, n)| !names[..i].contains(n));
        if distinct {
            let reversed: Vec<&str> = pairs.iter().rev().copied().collect();
            assert_eq!(
                normalise_query(Some(&reversed.join("&")), rule),
                normal,
                "{query:?} reordered under {rule:?}"
            );
        }
        let key = cache_key("https", host, path, Some(query), rule);
        if other != path {
            let key2 = cache_key("https", host, other, Some(query), rule);
            assert_ne!(
                key.primary_key(),
                key2.primary_key(),
                "{path:?} vs {other:?}"
            );
        }
    }
    for kind in [Kind::MediaPlaylist, Kind::Segment] {
        let kept = key_query(kind, query, &["token".to_string()]);
        for pair in kept.split('&').filter(|p| !p.is_empty()) {
            assert!(
                query.split('&').any(|p| p == pair),
                "{pair:?} not in {query:?}"
            );
        }
        if kind == Kind::Segment {
            for pair in kept.split('&') {
                let name = pair.split_once('=').map_or(pair, |(n, _)| n);
                assert!(
                    !LL_HLS_DIRECTIVES.contains(&name),
                    "{kept:?} keeps {name} on a segment"
                );
            }
        }
    }
});
