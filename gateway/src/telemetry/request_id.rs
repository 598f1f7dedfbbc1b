//! Request ids: generated for each request, or kept from a client's `X-Request-Id`.

use super::traceparent::push_hex;

/// Longest client-supplied request id that is kept.
const MAX_INCOMING_LEN: usize = 128;

/// A new request id: 128 random bits as 32 lower-case hex digits.
///
/// Uses the thread-local generator of `rand`, so concurrent callers never contend on a lock.
pub fn new_request_id() -> String {
    let mut id = String::with_capacity(32);
    push_hex(&mut id, &rand::random::<[u8; 16]>());
    id
}

/// Whether a client's `X-Request-Id` may be kept as the request id: 1 to 128 characters, each
/// an ASCII letter, digit, `.`, `_` or `-`. Anything else is replaced by [`new_request_id`],
/// so a client cannot inject separators or control characters into logs and upstream headers.
pub fn valid_incoming(id: &str) -> bool {
    (1..=MAX_INCOMING_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn new_ids_are_32_hex_digits_and_distinct() {
        let ids: HashSet<String> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(valid_incoming(id));
        }
    }

    #[test]
    fn incoming_ids_are_checked() {
        let cases: &[(&str, bool)] = &[
            ("abc", true),
            ("A-b_c.9", true),
            ("f81d4fae-7dec-11d0-a765-00a0c91e6bf6", true),
            ("", false),
            ("has space", false),
            ("semi;colon", false),
            ("new\nline", false),
            ("ünïcode", false),
            ("a/b", false),
        ];
        for (id, ok) in cases {
            assert_eq!(valid_incoming(id), *ok, "{id:?}");
        }
        assert!(valid_incoming(&"x".repeat(128)));
        assert!(!valid_incoming(&"x".repeat(129)));
    }
}
