//! LL-HLS cache-key rules: which query parameters of an HLS request belong in the cache key,
//! and whether a request is a blocking playlist reload.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use super::classify::Kind;

/// LL-HLS delivery directives kept in the key of playlist requests (RFC 8216bis §6.2.5).
pub const LL_HLS_DIRECTIVES: [&str; 3] = ["_HLS_msn", "_HLS_part", "_HLS_skip"];

/// The query string that belongs in the cache key of an object of `kind`.
///
/// Playlists keep the LL-HLS directives ([`LL_HLS_DIRECTIVES`]); every HLS object keeps the
/// parameters named in `keep`; everything else (session ids, CMCD, tokens) is dropped. The
/// kept `name=value` pairs are sorted so parameter order does not split the cache, and
/// returned without a leading `?` (empty when nothing is kept). Names are compared after
/// percent-decoding; pairs are copied as sent. [`Kind::Other`] objects are not HLS: their
/// query is returned unchanged for the HTTP key policy to decide.
pub fn key_query(kind: Kind, query: &str, keep: &[String]) -> String {
    if kind == Kind::Other {
        return query.to_owned();
    }
    let mut kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = param_name(pair);
            !pair.is_empty()
                && ((kind.is_playlist() && LL_HLS_DIRECTIVES.contains(&name.as_ref()))
                    || keep.iter().any(|k| k == name.as_ref()))
        })
        .collect();
    kept.sort_unstable();
    kept.dedup();
    kept.join("&")
}

/// Whether a request for an object of `kind` with `query` is an LL-HLS blocking playlist
/// reload (`_HLS_msn`, optionally with `_HLS_part`): the origin holds it until the requested
/// media sequence exists, so the gateway should coalesce such requests with
/// [`HlsRules::blocking_reload_lock_timeout`](super::HlsRules::blocking_reload_lock_timeout)
/// rather than its normal lock timeout.
pub fn is_blocking_reload(kind: Kind, query: &str) -> bool {
    kind.is_playlist()
        && query
            .split('&')
            .any(|pair| param_name(pair) == "_HLS_msn" || param_name(pair) == "_HLS_part")
}

fn param_name(pair: &str) -> Cow<'_, str> {
    let name = pair.split('=').next().unwrap_or_default();
    percent_decode_str(name).decode_utf8_lossy()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlists_keep_ll_hls_directives_sorted() {
        let q = "session=9&_HLS_part=2&CMCD=bl%3D100&_HLS_msn=47";
        assert_eq!(
            key_query(Kind::MediaPlaylist, q, &[]),
            "_HLS_msn=47&_HLS_part=2"
        );
        assert_eq!(
            key_query(Kind::MediaPlaylist, "_HLS_msn=47&_HLS_part=2", &[]),
            key_query(Kind::MediaPlaylist, "_HLS_part=2&_HLS_msn=47", &[])
        );
        assert_eq!(
            key_query(Kind::MediaPlaylist, "_HLS_skip=YES&x=1", &[]),
            "_HLS_skip=YES"
        );
        assert_eq!(key_query(Kind::MediaPlaylist, "", &[]), "");
        assert_eq!(key_query(Kind::MediaPlaylist, "&&", &[]), "");
    }

    #[test]
    fn segments_drop_directives_and_keep_the_keep_list() {
        let keep = vec!["token".to_string()];
        assert_eq!(key_query(Kind::Segment, "_HLS_msn=4&x=1", &[]), "");
        assert_eq!(
            key_query(Kind::Segment, "z=1&token=abc&a=2", &keep),
            "token=abc"
        );
        assert_eq!(
            key_query(Kind::MasterPlaylist, "token=abc&_HLS_msn=1", &keep),
            "_HLS_msn=1&token=abc"
        );
        assert_eq!(
            key_query(Kind::Segment, "%74oken=abc", &keep),
            "%74oken=abc"
        );
        assert_eq!(key_query(Kind::Other, "b=1&a=2", &keep), "b=1&a=2");
    }

    #[test]
    fn blocking_reloads() {
        assert!(is_blocking_reload(Kind::MediaPlaylist, "_HLS_msn=5"));
        assert!(is_blocking_reload(
            Kind::MediaPlaylist,
            "a=1&_HLS_msn=5&_HLS_part=0"
        ));
        assert!(!is_blocking_reload(Kind::MediaPlaylist, "_HLS_skip=YES"));
        assert!(!is_blocking_reload(Kind::Segment, "_HLS_msn=5"));
        assert!(!is_blocking_reload(Kind::MediaPlaylist, ""));
    }
}
