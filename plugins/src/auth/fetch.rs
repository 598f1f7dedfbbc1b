//! Bounded HTTP fetches of JSON documents (JWKS, introspection answers, OIDC discovery).

use std::time::Duration;

use serde::de::DeserializeOwned;

/// The largest JSON document read from an identity provider.
pub const MAX_DOCUMENT: usize = 1 << 20;

/// An HTTP client for identity-provider calls: rustls with the public roots plus the CA
/// certificates in `ca` (PEM), no redirects, a total timeout.
pub fn client(timeout: Duration, ca: Option<&str>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err("no PEM certificate found".into());
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Sends `request` and reads a JSON answer of at most [`MAX_DOCUMENT`] bytes. A status other
/// than 2xx is an error.
pub async fn json<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, String> {
    let mut response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!("answer larger than {MAX_DOCUMENT} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("answer is not the expected JSON: {e}"))
}
