//! Content-coding negotiation: which coding a request's `Accept-Encoding` gets.

use pingora::protocols::http::compression::Algorithm;

/// A content coding the plugin can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// `gzip`.
    Gzip,
    /// `br`.
    Brotli,
    /// `zstd`.
    Zstd,
}

impl Coding {
    /// Every coding, in the default preference order.
    pub(crate) const ALL: [Coding; 3] = [Coding::Brotli, Coding::Zstd, Coding::Gzip];

    /// A dense index (0..3) for per-coding tables.
    pub(crate) fn index(self) -> usize {
        match self {
            Coding::Brotli => 0,
            Coding::Zstd => 1,
            Coding::Gzip => 2,
        }
    }

    /// The `Content-Encoding` token.
    pub(crate) fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// The coding a `Content-Encoding` / `Accept-Encoding` token names (`x-gzip` is gzip).
    pub(crate) fn from_token(t: &[u8]) -> Option<Coding> {
        Coding::ALL
            .into_iter()
            .find(|c| t.eq_ignore_ascii_case(c.token().as_bytes()))
            .or_else(|| t.eq_ignore_ascii_case(b"x-gzip").then_some(Coding::Gzip))
    }

    /// pingora's name for the coding.
    pub(crate) fn algorithm(self) -> Algorithm {
        match self {
            Coding::Gzip => Algorithm::Gzip,
            Coding::Brotli => Algorithm::Brotli,
            Coding::Zstd => Algorithm::Zstd,
        }
    }

    /// Valid levels and the default one.
    pub(crate) fn levels(self) -> (std::ops::RangeInclusive<u32>, u32) {
        match self {
            Coding::Gzip => (1..=9, 6),
            Coding::Brotli => (1..=11, 4),
            Coding::Zstd => (1..=22, 3),
        }
    }
}

/// Entries of `Accept-Encoding` looked at (the rest are ignored).
const MAX_ACCEPT_ENTRIES: usize = 32;

/// A q-value in thousandths (`q=0.5` is 500), or `None` when malformed.
fn parse_q(v: &[u8]) -> Option<u16> {
    let v = v.trim_ascii();
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &[][..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The coding to use for a request's `Accept-Encoding` (RFC 9110 §12.5.3): the highest q-value
/// among `preference`, ties to the earlier one; `None` means identity.
pub(crate) fn negotiate(accept: &[u8], preference: &[Coding]) -> Option<Coding> {
    let mut explicit: [Option<u16>; 3] = [None; 3];
    let mut star: Option<u16> = None;
    for entry in accept.split(|&b| b == b',').take(MAX_ACCEPT_ENTRIES) {
        let mut parts = entry.split(|&b| b == b';');
        let token = parts.next().unwrap_or_default().trim_ascii();
        let mut q = Some(1000);
        for param in parts {
            let param = param.trim_ascii();
            if param.len() >= 2 && param[..2].eq_ignore_ascii_case(b"q=") {
                q = parse_q(&param[2..]);
            }
        }
        let Some(q) = q else { continue };
        if token == b"*" {
            star = Some(q);
        } else if let Some(c) = Coding::from_token(token) {
            let slot = &mut explicit[c.index()];
            *slot = Some(slot.map_or(q, |prev| prev.max(q)));
        }
    }
    let mut best: Option<(Coding, u16)> = None;
    for &c in preference {
        let q = explicit[c.index()].or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((c, q));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::*;

    const PREF: [Coding; 3] = [Brotli, Zstd, Gzip];

    #[test]
    fn accept_encoding_negotiation() {
        let cases: &[(&str, Option<Coding>)] = &[
            ("gzip", Some(Gzip)),
            ("gzip, br", Some(Brotli)),
            ("br;q=1, gzip;q=0.5", Some(Brotli)),
            ("br;q=0.4, gzip;q=0.5", Some(Gzip)),
            ("gzip;q=1.0, zstd;q=1.000", Some(Zstd)),
            ("*", Some(Brotli)),
            ("*;q=0.1, gzip", Some(Gzip)),
            ("br;q=0, *", Some(Zstd)),
            ("identity", None),
            ("identity;q=0", None),
            ("gzip;q=0", None),
            ("deflate, compress", None),
            ("GZIP", Some(Gzip)),
            ("x-gzip", Some(Gzip)),
            ("br;q=2, gzip;q=0.3", Some(Gzip)),
            ("br;q=0.1234, gzip;q=0.001", Some(Gzip)),
            (" zstd ; q=0.9 , br ; q=0.8", Some(Zstd)),
            ("", None),
            (";;;,,,", None),
        ];
        for (accept, want) in cases {
            assert_eq!(negotiate(accept.as_bytes(), &PREF), *want, "{accept:?}");
        }
        assert_eq!(negotiate(b"gzip, br, zstd", &[Gzip, Brotli]), Some(Gzip));
        assert_eq!(negotiate(b"zstd", &[Gzip, Brotli]), None);
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q(b"1"), Some(1000));
        assert_eq!(parse_q(b"0.5"), Some(500));
        assert_eq!(parse_q(b"0.05"), Some(50));
        assert_eq!(parse_q(b"0"), Some(0));
        assert_eq!(parse_q(b"1.001"), None);
        assert_eq!(parse_q(b"0.5x"), None);
        assert_eq!(parse_q(b""), None);
    }
}
