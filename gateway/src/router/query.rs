//! Query-string access for predicates: `name=value` pairs compared after percent-decoding
//! (`+` decodes to a space, as in HTML forms), without allocating for plain comparisons.

use std::borrow::Cow;

use super::normalize::hex_val;

/// The raw `(name, value)` pairs of a query string; a pair without `=` has an empty value.
pub(crate) fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The decoded bytes of a raw query component. Invalid escapes stay as they are.
struct Decoded<'a> {
    bytes: &'a [u8],
    i: usize,
}

impl Iterator for Decoded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.i)?;
        self.i += 1;
        match b {
            b'+' => Some(b' '),
            b'%' => {
                let hi = self.bytes.get(self.i).copied().and_then(hex_val);
                let lo = self.bytes.get(self.i + 1).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        self.i += 2;
                        Some((h << 4) | l)
                    }
                    _ => Some(b'%'),
                }
            }
            b => Some(b),
        }
    }
}

fn decoded(raw: &str) -> Decoded<'_> {
    Decoded {
        bytes: raw.as_bytes(),
        i: 0,
    }
}

/// True when `raw`, decoded, equals `expected`.
pub(crate) fn decoded_eq(raw: &str, expected: &str) -> bool {
    decoded(raw).eq(expected.bytes())
}

/// `raw` decoded; borrowed when there is nothing to decode. Invalid UTF-8 is replaced.
pub(crate) fn decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains(['%', '+']) {
        return Cow::Borrowed(raw);
    }
    let bytes: Vec<u8> = decoded(raw).collect();
    Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_pairs() {
        let got: Vec<_> = pairs("a=1&&b&c=x=y&").collect();
        assert_eq!(got, [("a", "1"), ("b", ""), ("c", "x=y")]);
    }

    #[test]
    fn decodes_escapes_and_plus() {
        assert!(decoded_eq("hello%20world", "hello world"));
        assert!(decoded_eq("a+b", "a b"));
        assert!(decoded_eq("%7e", "~"));
        assert!(decoded_eq("100%", "100%"));
        assert!(decoded_eq("%zz", "%zz"));
        assert!(!decoded_eq("abc", "abcd"));
        assert_eq!(decode("plain"), "plain");
        assert!(matches!(decode("plain"), Cow::Borrowed(_)));
        assert_eq!(decode("caf%C3%A9+au+lait"), "café au lait");
    }
}
