//! Validation of `CDN-Cache-Control` (RFC 9213), a *targeted* cache-control field.
//!
//! Unlike `Cache-Control`, a targeted field is a Structured Field Dictionary (RFC 8941). RFC 9213
//! §2.1: when it fails to parse, the cache "SHOULD" ignore it as a whole, behaving as if it were
//! absent (so `Cache-Control` governs). A directive whose value has the wrong type (e.g.
//! `max-age="60"`, a String where an Integer is due) is such a failure too: applying the rest of
//! the field would give the origin a policy it did not write. The syntax is checked here with
//! the `sfv` crate; the directives' meaning is still read by pingora-cache's parser, which
//! accepts every valid Dictionary this module lets through.

use http::HeaderMap;

/// The directives whose value must be a non-negative Integer (RFC 9213 §2.1 and RFC 9111
/// §5.2.2, `delta-seconds`; RFC 5861 for the two stale windows).
const DELTA_SECONDS: [&str; 4] = [
    "max-age",
    "s-maxage",
    "stale-while-revalidate",
    "stale-if-error",
];

/// Longest targeted field value checked, summed over its lines; a longer one is invalid (and
/// thus ignored). Far above any real policy, it bounds the parse.
pub const MAX_TARGETED_LEN: usize = 4096;

/// Whether the targeted field `name` of `headers` is present and valid: every line together a
/// Structured Field Dictionary whose delta-seconds directives are non-negative Integers.
/// `false` when absent, empty or invalid: the field is then ignored.
pub fn valid(headers: &HeaderMap, name: &str) -> bool {
    let mut joined: Vec<u8> = Vec::new();
    for (i, line) in headers.get_all(name).iter().enumerate() {
        if i > 0 {
            // RFC 8941 §4.2: lines of one field are combined with a comma.
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(line.as_bytes());
        if joined.len() > MAX_TARGETED_LEN {
            return false;
        }
    }
    if joined.iter().all(u8::is_ascii_whitespace) {
        return false;
    }
    let Ok(dictionary) = sfv::Parser::parse_dictionary(&joined) else {
        return false;
    };
    DELTA_SECONDS.iter().all(|directive| {
        dictionary.get(*directive).is_none_or(|member| {
            matches!(
                member,
                sfv::ListEntry::Item(sfv::Item {
                    bare_item: sfv::BareItem::Integer(n),
                    ..
                }) if *n >= 0
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append("cdn-cache-control", line.parse().expect("valid value"));
        }
        map
    }

    fn ok(lines: &[&str]) -> bool {
        valid(&headers(lines), "cdn-cache-control")
    }

    #[test]
    fn dictionaries_with_integer_lifetimes_are_valid() {
        assert!(ok(&["max-age=60"]));
        assert!(ok(&["max-age=60, must-revalidate"]));
        assert!(ok(&["no-store"]));
        assert!(ok(&["max-age=60", "stale-if-error=30"]));
        assert!(ok(&["max-age=60;foo=bar, extension=\"x\""]));
    }

    #[test]
    fn parse_failures_and_wrong_types_are_invalid() {
        assert!(!ok(&[]));
        assert!(!ok(&[""]));
        assert!(!ok(&["max-age=10000, &&&&&"]));
        assert!(!ok(&["max-age=\"10000\""]));
        assert!(!ok(&["max-age=1.5"]));
        assert!(!ok(&["max-age=-1"]));
        assert!(!ok(&["s-maxage=(1 2)"]));
        assert!(!ok(&["max-age=60", "MAX-AGE=1"]));
        let long = format!("max-age=1, x=\"{}\"", "a".repeat(MAX_TARGETED_LEN));
        assert!(!ok(&[&long]));
    }

    #[test]
    fn a_lifetime_must_be_an_integer_of_at_most_fifteen_digits() {
        // Token, Boolean, Decimal, Byte Sequence: the wrong type
        for wrong in [
            "max-age=abc",
            "max-age=?1",
            "max-age=60.0",
            "max-age=:AQ==:",
        ] {
            assert!(!ok(&[wrong]), "{wrong}");
        }
        assert!(ok(&["max-age=999999999999999"]));
        assert!(!ok(&["max-age=1000000000000000"]));
        assert!(!ok(&["stale-if-error=-5"]));
    }

    #[test]
    fn other_directives_take_any_value_and_spaces_around_are_fine() {
        assert!(ok(&["  max-age=60  "]));
        assert!(ok(&["no-cache=\"set-cookie\", max-age=60"]));
        assert!(ok(&["max-age=60, x-ext=?0, y-ext=1.5, z-ext=tok"]));
        assert!(!ok(&["max-age=60,"]));
        assert!(!ok(&["max-age = 60"]));
    }
}
