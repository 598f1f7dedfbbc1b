//! Refusals with a `WWW-Authenticate` challenge (RFC 6750 §3 for bearer tokens).

use super::extract::Source;
use crate::LocalResponse;

/// Why a bearer token was refused, as an RFC 6750 error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No credentials at all: the challenge carries no `error` attribute.
    Missing,
    /// The token is malformed, expired, revoked or otherwise invalid: 401.
    InvalidToken,
    /// The token is valid but lacks a required scope or claim: 403.
    InsufficientScope,
}

/// A refusal of a bearer-token request: 401 or 403 with its challenge.
pub fn bearer(
    realm: &str,
    error: BearerError,
    description: &str,
    scope: Option<&str>,
) -> LocalResponse {
    let mut challenge = format!("Bearer realm=\"{}\"", quoted(realm));
    let (status, code) = match error {
        BearerError::Missing => (401, None),
        BearerError::InvalidToken => (401, Some("invalid_token")),
        BearerError::InsufficientScope => (403, Some("insufficient_scope")),
    };
    if let Some(code) = code {
        challenge.push_str(&format!(
            ", error=\"{code}\", error_description=\"{}\"",
            quoted(description)
        ));
    }
    if let Some(scope) = scope {
        challenge.push_str(&format!(", scope=\"{}\"", quoted(scope)));
    }
    LocalResponse::text(status, description).with_header("www-authenticate", challenge)
}

/// The 401 for a bearer-token plugin (`plugin` names it in the metrics) when the request
/// carries no token where `source` looks.
pub fn missing_bearer(plugin: &'static str, realm: &str, source: &Source) -> LocalResponse {
    super::metrics::decision(plugin, "missing");
    let reason = format!("token required in {}", source.describe());
    bearer(realm, BearerError::Missing, &reason, None)
}

/// A refusal of an API-key request: 401 with an `ApiKey` challenge naming where the key goes.
pub fn api_key(realm: &str, description: &str) -> LocalResponse {
    LocalResponse::text(401, description).with_header(
        "www-authenticate",
        format!("ApiKey realm=\"{}\"", quoted(realm)),
    )
}

/// Keeps only the characters RFC 6750 allows inside a quoted attribute (printable ASCII
/// without `"` and `\`).
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|&c| (' '..='~').contains(&c) && c != '"' && c != '\\')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(r: &LocalResponse) -> String {
        let v = r.header.headers.get("www-authenticate").expect("challenge");
        String::from_utf8_lossy(v.as_bytes()).into_owned()
    }

    #[test]
    fn missing_token_has_no_error_attribute() {
        let r = bearer("api", BearerError::Missing, "no token", None);
        assert_eq!(r.header.status.as_u16(), 401);
        assert_eq!(challenge(&r), "Bearer realm=\"api\"");
    }

    #[test]
    fn invalid_and_insufficient() {
        let r = bearer(
            "api",
            BearerError::InvalidToken,
            "token \"expired\"\n",
            None,
        );
        assert_eq!(r.header.status.as_u16(), 401);
        assert_eq!(
            challenge(&r),
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"token expired\""
        );
        let r = bearer(
            "api",
            BearerError::InsufficientScope,
            "missing scope",
            Some("orders:write"),
        );
        assert_eq!(r.header.status.as_u16(), 403);
        assert!(challenge(&r).ends_with("error=\"insufficient_scope\", error_description=\"missing scope\", scope=\"orders:write\""));
    }
}
