//! `Accept-Encoding` normalisation, so that `Vary: Accept-Encoding` can be cached without the
//! key exploding.
//!
//! Almost every compressing origin (nginx `gzip_vary`, most frameworks) answers with
//! `Vary: Accept-Encoding`, and clients spell that header in dozens of ways
//! (`gzip, deflate, br, zstd`, `br;q=1, gzip;q=0.5`, `gzip`, …). Keying on the raw value would
//! store one copy per spelling. Instead, a route normalises the request's header to a
//! *class*: the set of the route's content codings ([`Encodings`], by default br, zstd and
//! gzip) the client accepts (RFC 9110 §12.5.3: q-values, `q=0` exclusions, `*`). The request
//! then carries the class's canonical value (`br, gzip`, or `identity` when it accepts none),
//! both as the variance key and upstream on a miss, so the origin chooses among exactly the
//! codings every client of the class accepts: whatever it answers can be served to all of
//! them. A set rather than a single preferred coding, so that a gzip-only origin still
//! compresses for clients that also accept br. With n codings there are at most 2ⁿ classes
//! ([`MAX_CODINGS`] bounds n).

use http::HeaderValue;

/// Most content codings a route normalises over (at most 2⁴ = 16 classes).
pub const MAX_CODINGS: usize = 4;

/// Most list members of a request's `Accept-Encoding` looked at; the rest are ignored.
pub const MAX_MEMBERS: usize = 32;

/// The codings normalised over when a route does not say: what browsers and origins use.
pub const DEFAULT_CODINGS: [&str; 3] = ["br", "zstd", "gzip"];

/// The value of the class that accepts none of the route's codings.
const IDENTITY: &str = "identity";

/// [`IDENTITY`] as a header value.
static IDENTITY_VALUE: HeaderValue = HeaderValue::from_static(IDENTITY);

/// A route's content codings, in its order of preference, with the canonical header value of
/// every class precomputed (normalising allocates nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encodings {
    codings: Vec<String>,
    /// Indexed by [`Class`] bits.
    values: Vec<HeaderValue>,
}

/// A set of a route's codings, one bit per coding in [`Encodings`] order; 0 is identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Class(u8);

impl Class {
    /// Accepts none of the route's codings: the body is sent unencoded.
    pub const IDENTITY: Class = Class(0);

    fn has(self, index: usize) -> bool {
        self.0 & (1 << index) != 0
    }
}

impl Encodings {
    /// The codings `names` (in order of preference; see [`coding`]). Errors name the first
    /// problem: more than [`MAX_CODINGS`], a name [`coding`] refuses, a duplicate.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        if names.len() > MAX_CODINGS {
            return Err(format!(
                "expected at most {MAX_CODINGS} codings, found {}",
                names.len()
            ));
        }
        let mut codings: Vec<String> = Vec::with_capacity(names.len());
        for name in names {
            let name = coding(name.as_ref())?;
            if codings.contains(&name) {
                return Err(format!("\"{name}\" is listed twice"));
            }
            codings.push(name);
        }
        let values = (0..1usize << codings.len())
            .map(|bits| {
                let listed: Vec<&str> = codings
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| bits & (1 << i) != 0)
                    .map(|(_, c)| c.as_str())
                    .collect();
                let text = if listed.is_empty() {
                    IDENTITY.to_string()
                } else {
                    listed.join(", ")
                };
                // Tokens, commas and spaces only: always a valid header value.
                HeaderValue::from_str(&text).unwrap_or_else(|_| IDENTITY_VALUE.clone())
            })
            .collect();
        Ok(Self { codings, values })
    }

    /// The codings, in order of preference.
    pub fn codings(&self) -> &[String] {
        &self.codings
    }

    /// The class of a request whose `Accept-Encoding` field lines are `lines` (none: the
    /// header is absent). A coding is in the class when its q-value, or else that of `*`, is
    /// above 0. An absent or empty header, or one naming none of the codings, is
    /// [`Class::IDENTITY`]: RFC 9110 lets a server encode for a request without the header,
    /// but clients that send none (curl, scripts) expect plain bodies. A member with a
    /// malformed q-value is taken as not acceptable; the first mention of a coding counts;
    /// `x-gzip` is gzip (RFC 9110 §8.4.1.3).
    pub fn classify<'a>(&self, lines: impl IntoIterator<Item = &'a [u8]>) -> Class {
        let mut explicit: [Option<bool>; MAX_CODINGS] = [None; MAX_CODINGS];
        let mut star: Option<bool> = None;
        let members = lines
            .into_iter()
            .flat_map(|line| line.split(|&b| b == b','))
            .take(MAX_MEMBERS);
        for member in members {
            let mut parts = member.split(|&b| b == b';');
            let Some(name) = parts.next().map(trim) else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            let accepted = quality(parts).is_some_and(|q| q > 0);
            if name == b"*" {
                star.get_or_insert(accepted);
                continue;
            }
            let name = if name.eq_ignore_ascii_case(b"x-gzip") {
                b"gzip".as_slice()
            } else {
                name
            };
            if let Some(i) = self
                .codings
                .iter()
                .position(|c| c.as_bytes().eq_ignore_ascii_case(name))
            {
                if let Some(slot) = explicit.get_mut(i) {
                    slot.get_or_insert(accepted);
                }
            }
        }
        let mut bits = 0u8;
        for (i, slot) in explicit.iter().enumerate().take(self.codings.len()) {
            if slot.or(star).unwrap_or(false) {
                bits |= 1 << i;
            }
        }
        Class(bits)
    }

    /// The canonical `Accept-Encoding` value of `class` (`br, gzip`, `identity`, …), which
    /// classifies back to `class`.
    pub fn value(&self, class: Class) -> &HeaderValue {
        self.values
            .get(usize::from(class.0))
            .unwrap_or(&IDENTITY_VALUE)
    }

    /// Whether a response with `Content-Encoding: content_encoding` may be served to every
    /// client of `class`: false when it names one of the route's codings the class does not
    /// accept. A coding the route does not list (`deflate`, a private one) cannot be judged by
    /// the class and is allowed: every client of the class sends the origin the same value,
    /// so the stored response is what the origin answers each of them (RFC 9111 §3.1: a cache
    /// stores `Content-Encoding` as it came).
    pub fn serves(&self, class: Class, content_encoding: &[u8]) -> bool {
        content_encoding
            .split(|&b| b == b',')
            .map(trim)
            .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case(IDENTITY.as_bytes()))
            .all(|c| {
                let c = if c.eq_ignore_ascii_case(b"x-gzip") {
                    b"gzip".as_slice()
                } else {
                    c
                };
                self.codings
                    .iter()
                    .position(|n| n.as_bytes().eq_ignore_ascii_case(c))
                    .is_none_or(|i| class.has(i))
            })
    }
}

/// A content coding a route may normalise over, lower case, `x-gzip` spelled gzip; an error
/// when `name` is not an HTTP token, or is `identity` or `*` (not codings a response carries).
pub fn coding(name: &str) -> Result<String, String> {
    let name = canonical(name.trim());
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!("\"{name}\" is not a content coding"));
    }
    if name == IDENTITY || name == "*" {
        return Err(format!(
            "\"{name}\" is not a content coding a response can carry"
        ));
    }
    Ok(name)
}

/// Whether `Content-Encoding: content_encoding` names any coding but identity (the body is
/// not what an identity-only client can read).
pub fn is_encoded(content_encoding: &[u8]) -> bool {
    content_encoding
        .split(|&b| b == b',')
        .map(trim)
        .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case(IDENTITY.as_bytes()))
}

/// Lower case, with `x-gzip` spelled gzip.
fn canonical(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower == "x-gzip" {
        "gzip".to_string()
    } else {
        lower
    }
}

/// The q-value among a member's parameters in thousandths (1000 when there is none); `None`
/// when it is malformed (RFC 9110 §12.4.2: `0[.ddd]` or `1[.000]`).
fn quality<'a>(params: impl Iterator<Item = &'a [u8]>) -> Option<u16> {
    for param in params {
        let param = trim(param);
        let Some(eq) = param.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, value) = (trim(&param[..eq]), trim(&param[eq + 1..]));
        if name.eq_ignore_ascii_case(b"q") {
            return parse_qvalue(value);
        }
    }
    Some(1000)
}

fn parse_qvalue(v: &[u8]) -> Option<u16> {
    let (&first, rest) = v.split_first()?;
    let fraction = match rest {
        [] => &[][..],
        [b'.', digits @ ..] if digits.len() <= 3 => digits,
        _ => return None,
    };
    if !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for (i, d) in fraction.iter().enumerate() {
        thousandths += u16::from(d - b'0') * [100, 10, 1][i];
    }
    match first {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The route default: br, zstd, gzip.
    fn defaults() -> Encodings {
        Encodings::new(&DEFAULT_CODINGS).expect("valid")
    }

    fn class_of(e: &Encodings, header: Option<&str>) -> String {
        let class = e.classify(header.map(str::as_bytes));
        e.value(class).to_str().expect("ascii").to_string()
    }

    #[test]
    fn common_clients_land_in_few_classes() {
        let e = defaults();
        let cases = [
            // Chrome, Edge.
            (Some("gzip, deflate, br, zstd"), "br, zstd, gzip"),
            // Firefox, Safari.
            (Some("gzip, deflate, br"), "br, gzip"),
            (Some("br;q=1, gzip;q=0.5"), "br, gzip"),
            (Some("br, gzip, deflate"), "br, gzip"),
            // curl --compressed (without brotli), most libraries.
            (Some("gzip"), "gzip"),
            (Some("deflate, gzip"), "gzip"),
            (Some("x-gzip"), "gzip"),
            (Some("GZIP"), "gzip"),
            // Nothing, or nothing we know.
            (None, "identity"),
            (Some(""), "identity"),
            (Some("identity"), "identity"),
            (Some("deflate"), "identity"),
            (Some("compress, deflate"), "identity"),
        ];
        for (header, want) in cases {
            assert_eq!(class_of(&e, header), want, "{header:?}");
        }
    }

    #[test]
    fn q_values_exclusions_and_star() {
        let e = defaults();
        let cases = [
            ("gzip;q=0", "identity"),
            ("gzip; q=0.000", "identity"),
            ("gzip;Q=0.001", "gzip"),
            ("br;q=0, gzip", "gzip"),
            ("*", "br, zstd, gzip"),
            ("*;q=0.5", "br, zstd, gzip"),
            ("*, br;q=0", "zstd, gzip"),
            ("*;q=0", "identity"),
            ("*;q=0, gzip", "gzip"),
            ("identity;q=0, gzip", "gzip"),
            // Malformed q-values: not acceptable.
            ("gzip;q=2", "identity"),
            ("gzip;q=0.5000", "identity"),
            ("gzip;q=1.5", "identity"),
            ("gzip;q=", "identity"),
            ("gzip;q=abc, br", "br"),
            ("gzip;q=1.000", "gzip"),
            // Other parameters are ignored; the first mention counts.
            ("gzip;level=9", "gzip"),
            ("gzip;q=0, gzip", "identity"),
            (" ,, gzip ,", "gzip"),
        ];
        for (header, want) in cases {
            assert_eq!(class_of(&e, Some(header)), want, "{header:?}");
        }
    }

    #[test]
    fn garbage_is_read_without_panicking() {
        let e = defaults();
        let cases: [(&[u8], &str); 9] = [
            (b"\xff\xfe, gzip", "gzip"),
            (b"gz\x00ip, br", "br"),
            (b";q=1", "identity"),
            (b";;;,,,", "identity"),
            (b"gzip;;q=0", "identity"),
            (b"gzip;q", "gzip"),
            (b"gzip;=;q=0.5", "gzip"),
            (b"gzip q=0", "identity"),
            (b"\t gzip\t;\tq=0.5\t", "gzip"),
        ];
        for (header, want) in cases {
            let class = e.classify([header]);
            assert_eq!(e.value(class), want, "{header:?}");
        }
        // Pseudo-random bytes from the header's alphabet: any class, and its value reads back.
        let alphabet = b"gzipbrstd*;q=0.15, \t\xff";
        let mut x = 0x9e37_79b9_u32;
        for _ in 0..20_000 {
            let header: Vec<u8> = (0..(x % 40))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    alphabet[(x % alphabet.len() as u32) as usize]
                })
                .collect();
            let class = e.classify([header.as_slice()]);
            assert_eq!(e.classify([e.value(class).as_bytes()]), class, "{header:?}");
        }
    }

    #[test]
    fn several_field_lines_are_one_list() {
        let e = defaults();
        let class = e.classify([b"gzip".as_slice(), b"br;q=0.8".as_slice()]);
        assert_eq!(e.value(class), "br, gzip");
    }

    #[test]
    fn members_beyond_the_bound_are_ignored() {
        let e = defaults();
        let mut header = "x, ".repeat(MAX_MEMBERS);
        header.push_str("gzip");
        assert_eq!(class_of(&e, Some(&header)), "identity");
        let long = format!("{}gzip", "a;q=0.1, ".repeat(10_000));
        assert_eq!(class_of(&e, Some(&long)), "identity");
    }

    #[test]
    fn canonical_values_classify_to_themselves() {
        let e = Encodings::new(&["zstd", "br", "gzip", "deflate"]).expect("valid");
        for bits in 0..16u8 {
            let class = Class(bits);
            let value = e.value(class).clone();
            assert_eq!(e.classify([value.as_bytes()]), class, "{value:?}");
        }
    }

    #[test]
    fn route_order_is_the_value_order() {
        let e = Encodings::new(&["gzip", "br"]).expect("valid");
        assert_eq!(class_of(&e, Some("br, gzip, zstd")), "gzip, br");
        let none = Encodings::new::<&str>(&[]).expect("valid");
        assert_eq!(class_of(&none, Some("gzip")), "identity");
    }

    #[test]
    fn bad_coding_lists_are_refused() {
        let too_many = ["a", "b", "c", "d", "e"];
        assert!(Encodings::new(&too_many)
            .expect_err("five")
            .contains("at most 4"));
        assert!(Encodings::new(&["identity"])
            .expect_err("identity")
            .contains("can carry"));
        assert!(Encodings::new(&["*"])
            .expect_err("star")
            .contains("can carry"));
        assert!(Encodings::new(&["g zip"])
            .expect_err("space")
            .contains("not a content coding"));
        assert!(Encodings::new(&["gzip", "x-gzip"])
            .expect_err("dup")
            .contains("twice"));
    }

    #[test]
    fn responses_are_judged_against_the_class() {
        let e = defaults();
        let gzip = e.classify([b"gzip".as_slice()]);
        assert!(e.serves(gzip, b"gzip"));
        assert!(e.serves(gzip, b"x-gzip"));
        assert!(!e.serves(gzip, b"br"));
        assert!(!e.serves(Class::IDENTITY, b"gzip"));
        assert!(e.serves(Class::IDENTITY, b"identity"));
        assert!(e.serves(Class::IDENTITY, b""));
        // Not one of the route's codings: the class cannot judge it.
        assert!(e.serves(Class::IDENTITY, b"deflate"));
        assert!(e.serves(Class::IDENTITY, b"x-custom"));
        assert!(e.serves(gzip, b"identity, GZIP"));
        assert!(!e.serves(gzip, b"x-custom, br"));
        assert!(!e.serves(gzip, b"gzip, br"));
        assert!(is_encoded(b"gzip"));
        assert!(is_encoded(b"x-custom"));
        assert!(!is_encoded(b"identity"));
        assert!(!is_encoded(b" "));
    }
}
