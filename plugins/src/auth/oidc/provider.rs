//! The OpenID provider as found by discovery (OpenID Connect Discovery 1.0 §4), and the
//! authorization-code exchange at its token endpoint.

use serde::Deserialize;

use super::super::client::Credentials;
use super::super::fetch;
use super::super::jwks::{Jwks, Timing};
use super::super::verify::{Policy, Verifier};

/// The discovery document fields the plugin uses.
#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    end_session_endpoint: Option<String>,
}

/// A discovered provider.
pub struct Provider {
    /// Where browsers are sent to log in.
    pub authorization_endpoint: String,
    /// Where codes are exchanged.
    pub token_endpoint: String,
    /// Where browsers are sent to log out, if the provider has one.
    pub end_session_endpoint: Option<String>,
    /// Verifies ID tokens (issuer and audience pinned, keys from `jwks_uri`).
    pub verifier: Verifier,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: String,
}

/// Fetches `{issuer}/.well-known/openid-configuration` and checks that it names `issuer`.
/// `policy` gets the issuer set here; its audience is the client id.
pub async fn discover(
    client: &reqwest::Client,
    issuer: &str,
    mut policy: Policy,
    timing: Timing,
) -> Result<Provider, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let d: Discovery = fetch::json(client.get(&url))
        .await
        .map_err(|e| format!("discovery at {url}: {e}"))?;
    if d.issuer != issuer {
        return Err(format!(
            "discovery at {url} names issuer \"{}\", not \"{issuer}\"",
            d.issuer
        ));
    }
    policy.issuers = vec![d.issuer];
    let jwks = Jwks::new(d.jwks_uri, client.clone(), timing);
    Ok(Provider {
        authorization_endpoint: d.authorization_endpoint,
        token_endpoint: d.token_endpoint,
        end_session_endpoint: d.end_session_endpoint,
        verifier: Verifier::new(policy, Vec::new(), Some(jwks)),
    })
}

impl Provider {
    /// Exchanges an authorization `code` for an ID token (RFC 6749 §4.1.3, RFC 7636 §4.5).
    pub async fn exchange(
        &self,
        client: &reqwest::Client,
        credentials: &Credentials,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<String, String> {
        let form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let request = credentials.post_form(client, &self.token_endpoint, form);
        let answer: TokenResponse = fetch::json(request)
            .await
            .map_err(|e| format!("token endpoint: {e}"))?;
        Ok(answer.id_token)
    }
}
