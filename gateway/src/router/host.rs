//! Host patterns: `api.example.com` (exact) and `*.example.com` (one or more labels).

/// A compiled host pattern, lower-case, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// The whole host equals this.
    Exact(Box<str>),
    /// The host ends with `.` followed by this suffix (so it has at least one more label).
    Wildcard(Box<str>),
}

impl HostPattern {
    /// Parses a host pattern from config.
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        let lower = pattern.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        let (wildcard, name) = match name.strip_prefix("*.") {
            Some(suffix) => (true, suffix),
            None => (false, name),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|label| !label.is_empty())
            && name.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'[' | b']')
            });
        if !valid {
            return Err(format!(
                "host pattern `{pattern}` is not a host name or `*.` followed by one"
            ));
        }
        Ok(if wildcard {
            Self::Wildcard(name.into())
        } else {
            Self::Exact(name.into())
        })
    }
}

/// The suffixes a wildcard pattern may be stored under for `host`, longest (most labels) first:
/// `a.b.example.com` → `b.example.com`, `example.com`, `com`. A suffix always leaves at least
/// one non-empty label before it.
pub(crate) fn wildcard_suffixes(host: &str) -> impl Iterator<Item = &str> {
    host.match_indices('.')
        .filter(|&(i, _)| i > 0 && host.as_bytes()[i - 1] != b'.')
        .map(move |(i, _)| &host[i + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_and_wildcard() {
        assert_eq!(
            HostPattern::parse("API.Example.com."),
            Ok(HostPattern::Exact("api.example.com".into()))
        );
        assert_eq!(
            HostPattern::parse("*.example.com"),
            Ok(HostPattern::Wildcard("example.com".into()))
        );
        assert_eq!(
            HostPattern::parse("127.0.0.1"),
            Ok(HostPattern::Exact("127.0.0.1".into()))
        );
    }

    #[test]
    fn rejects_malformed_patterns() {
        for bad in [
            "",
            "*",
            "*.",
            "a.*.com",
            "a..com",
            "a b.com",
            "*example.com",
            "a/b",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn suffixes_longest_first() {
        let got: Vec<_> = wildcard_suffixes("a.b.example.com").collect();
        assert_eq!(got, ["b.example.com", "example.com", "com"]);
        assert_eq!(wildcard_suffixes("localhost").count(), 0);
        let got: Vec<_> = wildcard_suffixes(".example.com").collect();
        assert_eq!(got, ["com"]);
    }
}
