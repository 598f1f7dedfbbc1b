//! Where a credential is read from: a header, a cookie or a query parameter.

use http::HeaderMap;
use serde::Deserialize;

/// Where to look for the credential, in this order: header, cookie, query parameter. With
/// nothing set, the plugin's default header is used.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A request header. For `authorization` the `Bearer` scheme is required and stripped.
    pub header: Option<String>,
    /// A cookie name.
    pub cookie: Option<String>,
    /// A query parameter name.
    pub query: Option<String>,
}

impl Source {
    /// This source, or just `default_header` when nothing is configured. Header names are
    /// lower-cased.
    pub fn or_header(mut self, default_header: &str) -> Source {
        if self.header.is_none() && self.cookie.is_none() && self.query.is_none() {
            self.header = Some(default_header.to_string());
        }
        self.header = self.header.map(|h| h.to_ascii_lowercase());
        self
    }

    /// Checks the header name; `path` is where this source sits in the settings.
    pub fn validate(&self, path: &str) -> Result<(), crate::ConfigError> {
        if let Some(h) = &self.header {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(crate::ConfigError::at(
                    format!("{path}.header"),
                    format!("\"{h}\" is not a header name"),
                ));
            }
        }
        Ok(())
    }

    /// The credential of a request, if it carries one here.
    pub fn find(&self, headers: &HeaderMap, query: Option<&str>) -> Option<String> {
        if let Some(name) = &self.header {
            if let Some(v) = headers.get(name.as_str()) {
                let v = v.to_str().ok()?.trim();
                if name == "authorization" {
                    // RFC 6750 §2.1: the scheme is case-insensitive.
                    let (scheme, token) = v.split_once(' ')?;
                    return scheme
                        .eq_ignore_ascii_case("bearer")
                        .then(|| token.trim().to_string());
                }
                return Some(v.to_string());
            }
        }
        if let Some(name) = &self.cookie {
            let found = headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(cookie::Cookie::split_parse)
                .filter_map(Result::ok)
                .find(|c| c.name() == name);
            if let Some(c) = found {
                return Some(c.value().to_string());
            }
        }
        if let (Some(name), Some(query)) = (&self.query, query) {
            return form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned());
        }
        None
    }

    /// Where the credential is looked for, for messages (`header authorization`).
    pub fn describe(&self) -> String {
        let mut places = Vec::new();
        if let Some(h) = &self.header {
            places.push(format!("header {h}"));
        }
        if let Some(c) = &self.cookie {
            places.push(format!("cookie {c}"));
        }
        if let Some(q) = &self.query {
            places.push(format!("query parameter {q}"));
        }
        places.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn bearer_header_by_default() {
        let s = Source::default().or_header("Authorization");
        let h = headers(&[("authorization", "bearer abc.def.ghi")]);
        assert_eq!(s.find(&h, None).as_deref(), Some("abc.def.ghi"));
        let h = headers(&[("authorization", "Basic dXNlcjpwdw==")]);
        assert_eq!(s.find(&h, None), None);
        assert_eq!(s.find(&HeaderMap::new(), Some("access_token=x")), None);
    }

    #[test]
    fn cookie_and_query() {
        let s = Source {
            cookie: Some("at".into()),
            query: Some("access_token".into()),
            ..Source::default()
        }
        .or_header("authorization");
        assert_eq!(s.header, None);
        let h = headers(&[("cookie", "a=1; at=tok%2E1"), ("cookie", "b=2")]);
        assert_eq!(s.find(&h, None).as_deref(), Some("tok%2E1"));
        assert_eq!(
            s.find(&HeaderMap::new(), Some("x=1&access_token=a%2Eb"))
                .as_deref(),
            Some("a.b")
        );
        assert_eq!(s.describe(), "cookie at, query parameter access_token");
    }
}
