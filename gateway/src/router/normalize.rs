//! Request-path normalisation, done once before routing so that `/a/../admin`, `//admin` and
//! `/%61dmin` all reach the rules written for `/admin`.
//!
//! The steps, in one pass over the path:
//! 1. percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, every other
//!    escape is kept with upper-case hex digits;
//! 2. `%2F`, `%5C` and a raw `\` follow the [`EncodedSlash`] policy;
//! 3. repeated slashes are merged;
//! 4. `.` and `..` segments (also spelled `%2E`) are removed as in RFC 3986 §5.2.4, never above
//!    the root.
//!
//! A path that is already normal is returned borrowed, without allocating.

use std::borrow::Cow;
use std::fmt;

use crate::config::model::EncodedSlash;

/// Why a request path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path is empty.
    Empty,
    /// The path does not start with `/` (the `*` of `OPTIONS *` is the caller's business).
    NotAbsolute,
    /// A `%` is not followed by two hex digits.
    BadEscape,
    /// A NUL byte, raw or `%00`.
    Nul,
    /// A raw control character.
    Control,
    /// An encoded slash or a backslash, refused by [`EncodedSlash::Reject`].
    EncodedSlash,
}

impl PathError {
    /// A short reason, fit for a 400 response body or a log line.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty path",
            Self::NotAbsolute => "path does not start with '/'",
            Self::BadEscape => "invalid percent-escape in path",
            Self::Nul => "NUL byte in path",
            Self::Control => "control character in path",
            Self::EncodedSlash => "encoded slash or backslash in path",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for PathError {}

/// Normalises a request path (the request-target without its query).
///
/// Returns [`Cow::Borrowed`] when `raw` is already normal, which is the common case.
pub fn normalize_path(raw: &str, policy: EncodedSlash) -> Result<Cow<'_, str>, PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(raw.as_bytes(), policy) {
        return Ok(Cow::Borrowed(raw));
    }
    rebuild(raw, policy).map(Cow::Owned)
}

/// The value of one hex digit, either case.
pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 unreserved characters: these are never kept percent-encoded.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// The value of an upper-case-hex escape at `bytes[i..i + 3]`, if it is one.
fn canonical_escape(bytes: &[u8], i: usize) -> Option<u8> {
    let upper = |b: &u8| matches!(b, b'0'..=b'9' | b'A'..=b'F');
    match (bytes.get(i + 1), bytes.get(i + 2)) {
        (Some(h), Some(l)) if upper(h) && upper(l) => Some((hex_val(*h)? << 4) | hex_val(*l)?),
        _ => None,
    }
}

/// A segment that normalisation would leave as it is (`last`: no slash follows it).
fn segment_is_normal(seg: &[u8], last: bool) -> bool {
    seg != b"." && seg != b".." && (last || !seg.is_empty())
}

/// True when [`rebuild`] would return `bytes` unchanged. `bytes` starts with `/`.
fn is_normal(bytes: &[u8], policy: EncodedSlash) -> bool {
    let mut seg_start = 1;
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'/' => {
                if !segment_is_normal(&bytes[seg_start..i], false) {
                    return false;
                }
                seg_start = i + 1;
            }
            b'%' => {
                let Some(v) = canonical_escape(bytes, i) else {
                    return false;
                };
                let slash = v == b'/' || v == b'\\';
                if v == 0 || is_unreserved(v) || (slash && policy != EncodedSlash::Keep) {
                    return false;
                }
                i += 3;
                continue;
            }
            b'\\' => return false,
            b if is_control(b) => return false,
            _ => {}
        }
        i += 1;
    }
    segment_is_normal(&bytes[seg_start..], true)
}

/// Builds the normal form of `raw` (which starts with `/`).
fn rebuild(raw: &str, policy: EncodedSlash) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    out.push('/');
    let mut seg_start = 1;
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'/' => {
                close_segment(&mut out, &mut seg_start, true);
                i += 1;
            }
            b'%' => {
                let v = match (
                    bytes.get(i + 1).copied().and_then(hex_val),
                    bytes.get(i + 2).copied().and_then(hex_val),
                ) {
                    (Some(h), Some(l)) => (h << 4) | l,
                    _ => return Err(PathError::BadEscape),
                };
                match v {
                    0 => return Err(PathError::Nul),
                    b'/' | b'\\' => slash(&mut out, &mut seg_start, policy, v)?,
                    v if is_unreserved(v) => out.push(char::from(v)),
                    v => push_escape(&mut out, v),
                }
                i += 3;
            }
            b'\\' => {
                slash(&mut out, &mut seg_start, policy, b'\\')?;
                i += 1;
            }
            0 => return Err(PathError::Nul),
            b if is_control(b) => return Err(PathError::Control),
            b if b.is_ascii() => {
                out.push(char::from(b));
                i += 1;
            }
            _ => {
                // A non-ASCII character: copied whole (i is always on a char boundary here).
                let Some(c) = raw.get(i..).and_then(|s| s.chars().next()) else {
                    break;
                };
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    close_segment(&mut out, &mut seg_start, false);
    Ok(out)
}

/// An encoded slash, encoded backslash or raw backslash, under `policy`.
fn slash(
    out: &mut String,
    seg_start: &mut usize,
    policy: EncodedSlash,
    v: u8,
) -> Result<(), PathError> {
    match policy {
        EncodedSlash::Reject => return Err(PathError::EncodedSlash),
        EncodedSlash::Keep => push_escape(out, v),
        EncodedSlash::Decode => close_segment(out, seg_start, true),
    }
    Ok(())
}

fn push_escape(out: &mut String, v: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(v >> 4)]));
    out.push(char::from(HEX[usize::from(v & 0xf)]));
}

/// Ends the segment that starts at `seg_start` in `out` (`separator`: a slash follows it),
/// applying the dot-segment and merged-slash rules. `out` always starts with `/`.
fn close_segment(out: &mut String, seg_start: &mut usize, separator: bool) {
    let seg = &out[*seg_start..];
    if seg == "." {
        out.truncate(*seg_start);
    } else if seg == ".." {
        out.truncate(*seg_start);
        if *seg_start > 1 {
            // Drop the previous segment too: `out` ends with "/prev/".
            let prev = out[..*seg_start - 1].rfind('/').map_or(1, |p| p + 1);
            out.truncate(prev);
        }
    } else if !seg.is_empty() && separator {
        out.push('/');
    }
    *seg_start = out.len();
}

#[cfg(test)]
mod tests {
    use super::*;
    use EncodedSlash::{Decode, Keep, Reject};

    /// (input, policy, expected normal form or error)
    const CASES: &[(&str, EncodedSlash, Result<&str, PathError>)] = &[
        ("/", Reject, Ok("/")),
        ("/a", Reject, Ok("/a")),
        ("/a/b/c", Reject, Ok("/a/b/c")),
        ("/a/b/", Reject, Ok("/a/b/")),
        ("//a///b", Reject, Ok("/a/b")),
        ("//", Reject, Ok("/")),
        ("/a//", Reject, Ok("/a/")),
        ("/a/./b/../c", Reject, Ok("/a/c")),
        ("/a/../admin", Reject, Ok("/admin")),
        ("/a/%2e%2e/b", Reject, Ok("/b")),
        ("/a/%2E%2E/b", Reject, Ok("/b")),
        ("/a/.%2e/b", Reject, Ok("/b")),
        ("/a/%2e/b", Reject, Ok("/a/b")),
        ("/..", Reject, Ok("/")),
        ("/../../etc/passwd", Reject, Ok("/etc/passwd")),
        ("/a/b/..", Reject, Ok("/a/")),
        ("/a/b/.", Reject, Ok("/a/b/")),
        ("/.", Reject, Ok("/")),
        ("/...", Reject, Ok("/...")),
        ("/a/..b/.c", Reject, Ok("/a/..b/.c")),
        ("/a//../b", Reject, Ok("/b")),
        ("/%41%42c", Reject, Ok("/ABc")),
        ("/%7e%5f%2D", Reject, Ok("/~_-")),
        ("/a%3fb", Reject, Ok("/a%3Fb")),
        ("/a%3Fb", Reject, Ok("/a%3Fb")),
        ("/%25", Reject, Ok("/%25")),
        ("/caf%c3%a9", Reject, Ok("/caf%C3%A9")),
        ("/café/./x", Reject, Ok("/café/x")),
        ("/a b", Reject, Ok("/a b")),
        ("/%0a", Reject, Ok("/%0A")),
        ("/%2F", Reject, Err(PathError::EncodedSlash)),
        ("/%2f", Reject, Err(PathError::EncodedSlash)),
        ("/a%5Cb", Reject, Err(PathError::EncodedSlash)),
        ("/a\\b", Reject, Err(PathError::EncodedSlash)),
        ("/%2F", Keep, Ok("/%2F")),
        ("/a%2fb/../c", Keep, Ok("/c")),
        ("/a%5cb", Keep, Ok("/a%5Cb")),
        ("/a\\b", Keep, Ok("/a%5Cb")),
        ("/%2F", Decode, Ok("/")),
        ("/a%2Fb", Decode, Ok("/a/b")),
        ("/a%5Cb", Decode, Ok("/a/b")),
        ("/a\\..\\admin", Decode, Ok("/admin")),
        ("/a%2F..%2Fadmin", Decode, Ok("/admin")),
        ("/%zz", Reject, Err(PathError::BadEscape)),
        ("/%4", Reject, Err(PathError::BadEscape)),
        ("/a%", Reject, Err(PathError::BadEscape)),
        ("/a%g1", Keep, Err(PathError::BadEscape)),
        ("/a%00", Reject, Err(PathError::Nul)),
        ("/a\0b", Keep, Err(PathError::Nul)),
        ("/a\nb", Keep, Err(PathError::Control)),
        ("/a\x7f", Keep, Err(PathError::Control)),
        ("/a\tb", Decode, Err(PathError::Control)),
        ("", Reject, Err(PathError::Empty)),
        ("a/b", Reject, Err(PathError::NotAbsolute)),
        ("*", Reject, Err(PathError::NotAbsolute)),
    ];

    #[test]
    fn normalisation_table() {
        for (input, policy, expected) in CASES {
            let got = normalize_path(input, *policy);
            assert_eq!(
                got.as_deref(),
                expected.as_deref(),
                "{input:?} under {policy:?}"
            );
        }
    }

    #[test]
    fn normal_forms_are_fixed_points_and_borrowed() {
        for (input, policy, expected) in CASES {
            if let Ok(normal) = expected {
                let again = normalize_path(normal, *policy).expect("normal form is valid");
                assert!(
                    matches!(again, Cow::Borrowed(_)),
                    "{normal:?} (from {input:?}) is not recognised as normal"
                );
                assert_eq!(again, *normal);
            }
        }
    }

    /// Random paths over an alphabet rich in the tricky characters: whatever comes out is in
    /// normal form (recognised as such, no empty, `.` or `..` segment before the end).
    #[test]
    fn random_paths_normalise_to_fixed_points() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        const ALPHABET: &[&str] = &[
            "/", "/", ".", ".", "%2e", "%2E", "%2F", "%5c", "\\", "a", "Z", "%41", "%3f", "%", "é",
        ];
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..20_000 {
            let mut raw = String::from("/");
            for _ in 0..rng.random_range(0..12) {
                raw.push_str(ALPHABET[rng.random_range(0..ALPHABET.len())]);
            }
            for policy in [Reject, Keep, Decode] {
                let Ok(normal) = normalize_path(&raw, policy) else {
                    continue;
                };
                let again = normalize_path(&normal, policy).expect("normal form is valid");
                assert!(matches!(again, Cow::Borrowed(_)), "{raw:?} → {normal:?}");
                assert_eq!(again, normal, "{raw:?} under {policy:?}");
                let body = &normal[1..];
                let mut segments = body.split('/').peekable();
                while let Some(seg) = segments.next() {
                    let last = segments.peek().is_none();
                    assert!(
                        segment_is_normal(seg.as_bytes(), last),
                        "{raw:?} → {normal:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn changed_paths_are_owned() {
        let got = normalize_path("/a/../b", Reject).expect("valid");
        assert!(matches!(got, Cow::Owned(_)));
    }

    #[test]
    fn every_error_has_a_reason() {
        for (_, _, expected) in CASES {
            if let Err(e) = expected {
                assert!(!e.reason().is_empty());
                assert_eq!(e.to_string(), e.reason());
            }
        }
    }
}
