//! What a client may ask to shorten: target URLs, aliases and expiries, each checked with a
//! short reason for the 400 when it is refused.

use http::HeaderValue;
use url::Url;

/// Longest target URL accepted, in bytes (as sent and as normalised).
pub const MAX_URL_LEN: usize = 2048;

/// Shortest alias accepted.
pub const MIN_ALIAS_LEN: usize = 3;

/// Longest alias accepted (also the longest code a redirect looks up).
pub const MAX_ALIAS_LEN: usize = 64;

/// Longest expiry accepted: ten years, in seconds.
pub const MAX_EXPIRES_IN: i64 = 10 * 365 * 24 * 3600;

/// Aliases refused whatever their case: paths of the platform, or names that would mislead.
const RESERVED: &[&str] = &[
    "about",
    "admin",
    "api",
    "assets",
    "dashboard",
    "health",
    "healthz",
    "help",
    "login",
    "logout",
    "metrics",
    "new",
    "orders",
    "r",
    "static",
    "stats",
    "urls",
    "videos",
    "www",
];

/// Checks a target URL and returns it normalised (the form stored and redirected to).
///
/// Accepted: absolute `http`/`https` URLs with a host, no user name or password, at most
/// [`MAX_URL_LEN`] bytes, that do not point back at this shortener's own redirects
/// (`<public_base>/r/…`, which would loop).
pub fn target_url(raw: &str, public_base: &Url) -> Result<Url, String> {
    if raw.len() > MAX_URL_LEN {
        return Err(format!("url is longer than {MAX_URL_LEN} bytes"));
    }
    let url = Url::parse(raw).map_err(|e| format!("invalid url: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "url scheme '{}' is not allowed (http or https only)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("url has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not carry a user name or password".into());
    }
    if url.as_str().len() > MAX_URL_LEN {
        return Err(format!(
            "url is longer than {MAX_URL_LEN} bytes once normalised"
        ));
    }
    if HeaderValue::from_str(url.as_str()).is_err() {
        return Err("url cannot be sent in a Location header".into());
    }
    let redirects = format!("{}/r/", public_base.path().trim_end_matches('/'));
    if url.origin() == public_base.origin() && url.path().starts_with(&redirects) {
        return Err("url points at this shortener's own redirects".into());
    }
    Ok(url)
}

/// Checks a custom alias: `[A-Za-z0-9_-]{3,64}` and not a reserved word.
pub fn alias(alias: &str) -> Result<(), String> {
    if alias.len() < MIN_ALIAS_LEN || alias.len() > MAX_ALIAS_LEN {
        return Err(format!(
            "alias must be {MIN_ALIAS_LEN} to {MAX_ALIAS_LEN} characters"
        ));
    }
    if !alias.bytes().all(is_code_byte) {
        return Err("alias may only contain letters, digits, '_' and '-'".into());
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(alias)) {
        return Err(format!("alias '{alias}' is reserved"));
    }
    Ok(())
}

/// Checks an expiry in seconds from now: 1 to [`MAX_EXPIRES_IN`].
pub fn expires_in(seconds: i64) -> Result<(), String> {
    if !(1..=MAX_EXPIRES_IN).contains(&seconds) {
        return Err(format!("expires_in must be 1 to {MAX_EXPIRES_IN} seconds"));
    }
    Ok(())
}

/// Whether `code` could name a link at all (so hostile paths never reach the store).
pub fn plausible_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= MAX_ALIAS_LEN && code.bytes().all(is_code_byte)
}

fn is_code_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://127.0.0.1:8080").unwrap()
    }

    #[test]
    fn good_urls_are_normalised() {
        let u = target_url("HTTPS://Example.COM/a b?q=1#f", &base()).unwrap();
        assert_eq!(u.as_str(), "https://example.com/a%20b?q=1#f");
        assert!(target_url("http://[::1]:9000/x", &base()).is_ok());
        assert!(target_url("http://127.0.0.1:8080/api/urls", &base()).is_ok());
    }

    #[test]
    fn bad_urls_are_refused() {
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        let cases = [
            "",
            "example.com",
            "/relative",
            "javascript:alert(1)",
            "ftp://example.com/file",
            "file:///etc/passwd",
            "data:text/html,hi",
            "http://",
            "https://user@example.com/",
            "https://user:pw@example.com/",
            "http://127.0.0.1:8080/r/abc",
            long.as_str(),
        ];
        for case in cases {
            assert!(target_url(case, &base()).is_err(), "{case:?} was accepted");
        }
    }

    #[test]
    fn links_to_our_own_redirects_are_refused_under_a_base_path() {
        let base = Url::parse("https://short.example/s/").unwrap();
        assert!(target_url("https://short.example/s/r/abc", &base).is_err());
        assert!(target_url("https://short.example/r/abc", &base).is_ok());
        assert!(target_url("https://other.example/s/r/abc", &base).is_ok());
    }

    #[test]
    fn aliases() {
        for good in ["abc", "My_Link-2", &"x".repeat(64)] {
            assert_eq!(alias(good), Ok(()), "{good}");
        }
        for bad in [
            "ab",
            &"x".repeat(65),
            "a b",
            "a/b",
            "../etc",
            "ünï",
            "API",
            "admin",
            "healthz",
            "Metrics",
        ] {
            assert!(alias(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn expiries() {
        assert!(expires_in(1).is_ok());
        assert!(expires_in(MAX_EXPIRES_IN).is_ok());
        for bad in [0, -1, MAX_EXPIRES_IN + 1, i64::MAX, i64::MIN] {
            assert!(expires_in(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plausible_codes() {
        assert!(plausible_code("aZ09_-"));
        assert!(!plausible_code(""));
        assert!(!plausible_code("../x"));
        assert!(!plausible_code(&"a".repeat(65)));
    }
}
