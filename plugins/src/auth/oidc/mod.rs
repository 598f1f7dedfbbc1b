//! The `oidc` plugin: OpenID Connect authorization-code login with PKCE (S256) for browser
//! routes. An unauthenticated `GET` is redirected to the provider with `state` and `nonce`
//! (kept in a sealed login cookie); the callback path exchanges the code, verifies the ID
//! token (issuer, audience, signature from the provider's JWKS, nonce) and sets a sealed
//! session cookie; the logout path clears it and sends the browser to the provider's
//! `end_session_endpoint` when there is one.

mod provider;
mod session;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pingora::http::RequestHeader;
use pingora::proxy::Session as HttpSession;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;

use self::provider::Provider;
use self::session::{Cookies, Login, Session};
use super::challenge::{self, BearerError};
use super::client::{ClientAuth, Credentials};
use super::forward::Forward;
use super::jwks::Timing;
use super::require::Require;
use super::verify::Policy;
use super::{fetch, jwt, metrics, units};
use crate::{settings, ConfigError, Flow, Hooks, Identity, LocalResponse, Plugin, PluginCtx};

/// How long after a failed discovery the next one may be tried.
const DISCOVERY_RETRY: Duration = Duration::from_secs(5);
/// The longest page address kept in the login cookie to return to after login.
const MAX_RETURN_TO: usize = 1024;
/// The largest ID token accepted.
const MAX_ID_TOKEN: usize = 16 * 1024;
/// Claims kept in the session cookie when all of them would make it too large.
const KEPT_CLAIMS: [&str; 6] = ["iss", "sub", "aud", "exp", "email", "name"];
/// The largest claims JSON kept whole in the session cookie (browsers take 4 KiB cookies).
const MAX_SESSION_CLAIMS: usize = 2048;

/// The `oidc` settings, documented in `docs/plugins/auth.md`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    issuer: String,
    client_id: String,
    client_secret: String,
    #[serde(default)]
    client_auth: ClientAuth,
    redirect_uri: String,
    #[serde(default = "default_logout_path")]
    logout_path: String,
    post_logout_redirect_uri: Option<String>,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    cookie_secret: String,
    #[serde(default = "default_cookie_name")]
    cookie_name: String,
    #[serde(default = "default_true")]
    cookie_secure: bool,
    #[serde(
        default = "default_session_lifetime",
        deserialize_with = "units::duration"
    )]
    session_lifetime: Duration,
    #[serde(
        default = "default_login_timeout",
        deserialize_with = "units::duration"
    )]
    login_timeout: Duration,
    #[serde(default = "default_algorithms")]
    algorithms: Vec<String>,
    #[serde(default = "jwt::default_leeway", deserialize_with = "units::duration")]
    leeway: Duration,
    #[serde(default = "jwt::default_timeout", deserialize_with = "units::duration")]
    timeout: Duration,
    ca: Option<String>,
    #[serde(default)]
    forward_claims: BTreeMap<String, String>,
    #[serde(default)]
    require: Require,
    #[serde(default = "jwt::default_realm")]
    realm: String,
}

fn default_logout_path() -> String {
    "/oidc/logout".into()
}
fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}
fn default_cookie_name() -> String {
    "meridian_session".into()
}
fn default_true() -> bool {
    true
}
fn default_session_lifetime() -> Duration {
    Duration::from_secs(8 * 3600)
}
fn default_login_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}

/// The `oidc` plugin.
pub struct Oidc {
    issuer: String,
    credentials: Credentials,
    redirect_uri: String,
    callback_path: String,
    logout_path: String,
    post_logout_redirect_uri: Option<String>,
    scope: String,
    cookies: Cookies,
    algorithms: Vec<jsonwebtoken::Algorithm>,
    leeway: Duration,
    client: reqwest::Client,
    provider: OnceCell<Provider>,
    discovery_failed: Mutex<Option<Instant>>,
    forward: Forward,
    require: Require,
    realm: String,
}

/// Builds the `oidc` plugin from its settings.
pub fn build(value: &serde_json::Value) -> Result<Arc<dyn Plugin>, ConfigError> {
    let s: Settings = settings(value)?;
    jwt::check_url(&s.issuer).map_err(|m| ConfigError::at("issuer", m))?;
    jwt::check_url(&s.redirect_uri).map_err(|m| ConfigError::at("redirect_uri", m))?;
    let callback_path = reqwest::Url::parse(&s.redirect_uri)
        .map(|u| u.path().to_string())
        .map_err(|e| ConfigError::at("redirect_uri", e.to_string()))?;
    if !s.logout_path.starts_with('/') || s.logout_path == callback_path {
        return Err(ConfigError::at(
            "logout_path",
            "expected a path starting with / other than the redirect_uri's path",
        ));
    }
    if let Some(uri) = &s.post_logout_redirect_uri {
        jwt::check_url(uri).map_err(|m| ConfigError::at("post_logout_redirect_uri", m))?;
    }
    if s.cookie_secret.len() < session::MIN_SECRET {
        return Err(ConfigError::at(
            "cookie_secret",
            format!("too short; expected at least {} bytes", session::MIN_SECRET),
        ));
    }
    if !is_token(&s.cookie_name) {
        return Err(ConfigError::at(
            "cookie_name",
            "not a cookie name; expected letters, digits and !#$%&'*+-.^_`|~",
        ));
    }
    let mut scopes = s.scopes;
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    Ok(Arc::new(Oidc {
        issuer: s.issuer,
        credentials: Credentials {
            id: s.client_id,
            secret: s.client_secret,
            method: s.client_auth,
        },
        redirect_uri: s.redirect_uri,
        callback_path,
        logout_path: s.logout_path,
        post_logout_redirect_uri: s.post_logout_redirect_uri,
        scope: scopes.join(" "),
        cookies: Cookies::new(
            s.cookie_secret.as_bytes(),
            &s.cookie_name,
            s.cookie_secure,
            s.session_lifetime,
            s.login_timeout,
        ),
        algorithms: jwt::parse_algorithms(&s.algorithms)?,
        leeway: s.leeway,
        client: fetch::client(s.timeout, s.ca.as_deref()).map_err(|m| ConfigError::at("ca", m))?,
        provider: OnceCell::new(),
        discovery_failed: Mutex::new(None),
        forward: Forward::parse(&s.forward_claims, "forward_claims")?,
        require: s.require,
        realm: s.realm,
    }))
}

/// Whether `name` is an RFC 7230 token (what RFC 6265 allows as a cookie name).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// 32 random bytes, base64url.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A redirect to `location`, with `Set-Cookie` headers.
fn redirect(location: &str, cookies: &[String]) -> Flow {
    let mut r = LocalResponse::new(302)
        .with_header("location", location)
        .with_header("cache-control", "no-store");
    for c in cookies {
        r = r.with_header("set-cookie", c);
    }
    r.into_flow()
}

/// `path` if it is a local path of at most [`MAX_RETURN_TO`] bytes; `/` otherwise (no open
/// redirect to `//host`, no login cookie too large for a browser).
fn local_path(path: &str) -> &str {
    let local = path.starts_with('/') && !path.starts_with("//") && !path.starts_with("/\\");
    if local && path.len() <= MAX_RETURN_TO {
        path
    } else {
        "/"
    }
}

impl Oidc {
    /// The provider, discovered on first use. A failed discovery is retried by a request
    /// at least [`DISCOVERY_RETRY`] later; requests in between fail at once.
    async fn provider(&self) -> Result<&Provider, String> {
        if let Some(p) = self.provider.get() {
            return Ok(p);
        }
        let failed = self
            .discovery_failed
            .lock()
            .map(|at| at.is_some_and(|at| at.elapsed() < DISCOVERY_RETRY))
            .unwrap_or(false);
        if failed {
            return Err("discovery failed recently; not retried yet".into());
        }
        let found = self
            .provider
            .get_or_try_init(|| async {
                let policy = Policy {
                    algorithms: self.algorithms.clone(),
                    issuers: Vec::new(),
                    audiences: vec![self.credentials.id.clone()],
                    required_claims: vec!["exp".into(), "sub".into(), "nonce".into()],
                    leeway: self.leeway,
                    max_token_size: MAX_ID_TOKEN,
                    cache: None,
                };
                let timing = Timing {
                    refresh: Duration::from_secs(3600),
                    min_refresh: Duration::from_secs(10),
                };
                provider::discover(&self.client, &self.issuer, policy, timing).await
            })
            .await;
        if found.is_err() {
            if let Ok(mut at) = self.discovery_failed.lock() {
                *at = Some(Instant::now());
            }
        }
        found
    }

    /// Sends the browser to the provider, remembering where it was going.
    async fn start_login(&self, return_to: &str) -> Flow {
        let provider = match self.provider().await {
            Ok(p) => p,
            Err(e) => return unavailable(&e),
        };
        let login = Login {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            return_to: local_path(return_to).to_string(),
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(login.verifier.as_bytes()));
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.credentials.id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &self.scope)
            .append_pair("state", &login.state)
            .append_pair("nonce", &login.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        let sep = if provider.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let location = format!("{}{sep}{query}", provider.authorization_endpoint);
        match self.cookies.set_login(&login) {
            Some(cookie) => redirect(&location, &[cookie]),
            None => LocalResponse::text(500, "cannot seal the login cookie").into_flow(),
        }
    }

    /// The provider's redirect back: checks `state`, exchanges the code, verifies the ID
    /// token and its nonce, and starts the session.
    async fn callback(&self, req: &RequestHeader) -> Flow {
        let query: BTreeMap<String, String> =
            form_urlencoded::parse(req.uri.query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let Some(login) = self.cookies.login(&req.headers) else {
            return LocalResponse::text(400, "no login in progress (or it expired)").into_flow();
        };
        let state = query.get("state").map(String::as_str).unwrap_or_default();
        if !bool::from(state.as_bytes().ct_eq(login.state.as_bytes())) {
            return LocalResponse::text(400, "login state mismatch").into_flow();
        }
        if let Some(error) = query.get("error") {
            metrics::decision("oidc", "invalid");
            let error: String = error
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(64)
                .collect();
            return LocalResponse::text(401, &format!("login failed: {error}")).into_flow();
        }
        let Some(code) = query.get("code") else {
            return LocalResponse::text(400, "callback without code").into_flow();
        };
        let provider = match self.provider().await {
            Ok(p) => p,
            Err(e) => return unavailable(&e),
        };
        let id_token = match provider
            .exchange(
                &self.client,
                &self.credentials,
                code,
                &self.redirect_uri,
                &login.verifier,
            )
            .await
        {
            Ok(t) => t,
            Err(e) => {
                log::warn!("oidc: {e}");
                return LocalResponse::text(502, "code exchange failed").into_flow();
            }
        };
        let claims = match provider.verifier.verify(&id_token).await {
            Ok(c) => c,
            Err(e) => {
                metrics::decision("oidc", "invalid");
                let reason = format!("ID token refused: {}", e.description());
                return LocalResponse::text(401, &reason).into_flow();
            }
        };
        let nonce = claims
            .get("nonce")
            .and_then(|n| n.as_str())
            .unwrap_or_default();
        if !bool::from(nonce.as_bytes().ct_eq(login.nonce.as_bytes())) {
            metrics::decision("oidc", "invalid");
            return LocalResponse::text(401, "ID token refused: nonce mismatch").into_flow();
        }
        let session = Session {
            claims: self.session_claims(Arc::unwrap_or_clone(claims)),
        };
        match self.cookies.set_session(&session) {
            Some(cookie) => redirect(&login.return_to, &[cookie, self.cookies.clear_login()]),
            None => LocalResponse::text(500, "cannot seal the session cookie").into_flow(),
        }
    }

    /// The claims kept in the session: all of them, or when large only the usual ones and
    /// those the plugin forwards or requires.
    fn session_claims(
        &self,
        claims: serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let size = serde_json::to_vec(&claims)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size <= MAX_SESSION_CLAIMS {
            return claims;
        }
        claims
            .into_iter()
            .filter(|(k, _)| {
                KEPT_CLAIMS.contains(&k.as_str()) || self.forward.names(k) || self.require.names(k)
            })
            .collect()
    }

    /// Clears the session and sends the browser to the provider's logout, if it has one.
    async fn logout(&self) -> Flow {
        let clear = [self.cookies.clear_session(), self.cookies.clear_login()];
        let end_session = match self.provider().await {
            Ok(p) => p.end_session_endpoint.clone(),
            Err(e) => {
                log::warn!("oidc: {e}");
                None
            }
        };
        let location = match end_session {
            Some(end) => {
                let mut query = form_urlencoded::Serializer::new(String::new());
                query.append_pair("client_id", &self.credentials.id);
                if let Some(after) = &self.post_logout_redirect_uri {
                    query.append_pair("post_logout_redirect_uri", after);
                }
                let sep = if end.contains('?') { '&' } else { '?' };
                format!("{end}{sep}{}", query.finish())
            }
            None => self
                .post_logout_redirect_uri
                .clone()
                .unwrap_or_else(|| "/".into()),
        };
        redirect(&location, &clear)
    }
}

fn unavailable(e: &str) -> Flow {
    log::warn!("oidc: {e}");
    LocalResponse::text(503, "identity provider unavailable").into_flow()
}

#[async_trait]
impl Plugin for Oidc {
    fn hooks(&self) -> Hooks {
        Hooks {
            request: true,
            upstream_request: true,
            ..Hooks::NONE
        }
    }

    async fn request_filter(
        &self,
        session: &mut HttpSession,
        ctx: &mut PluginCtx,
    ) -> pingora::Result<Flow> {
        let req = session.req_header();
        let path = req.uri.path();
        if path == self.callback_path {
            return Ok(self.callback(req).await);
        }
        if path == self.logout_path {
            return Ok(self.logout().await);
        }
        if let Some(s) = self.cookies.session(&req.headers) {
            let identity = Identity {
                subject: s
                    .claims
                    .get("sub")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string(),
                method: "oidc",
                claims: Arc::new(s.claims),
            };
            return super::admit::admit(
                identity,
                &self.require,
                &self.forward,
                &self.realm,
                "oidc",
                ctx,
            );
        }
        metrics::decision("oidc", "missing");
        if req.method == http::Method::GET || req.method == http::Method::HEAD {
            let return_to = req
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .to_string();
            return Ok(self.start_login(&return_to).await);
        }
        Ok(
            challenge::bearer(&self.realm, BearerError::Missing, "login required", None)
                .into_flow(),
        )
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut HttpSession,
        request: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> pingora::Result<()> {
        self.forward.apply(request, ctx)?;
        // The session cookies are the gateway's: the upstream does not see them.
        let others: Vec<String> = request
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .filter(|c| !self.cookies.is_ours(c.name()))
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect();
        request.remove_header(&http::header::COOKIE);
        if !others.is_empty() {
            request.insert_header(http::header::COOKIE, others.join("; "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> serde_json::Value {
        serde_json::json!({
            "issuer": "https://idp.example",
            "client_id": "gw", "client_secret": "s",
            "redirect_uri": "https://app.example/oidc/callback",
            "cookie_secret": "0123456789abcdef0123456789abcdef",
        })
    }

    #[test]
    fn config_errors_point_at_the_field() {
        assert!(build(&settings()).is_ok());
        let err = |k: &str, v: serde_json::Value| {
            let mut s = settings();
            s[k] = v;
            match build(&s) {
                Err(e) => e,
                Ok(_) => panic!("built with {k}"),
            }
        };
        assert_eq!(err("cookie_secret", "short".into()).path, "cookie_secret");
        assert_eq!(err("redirect_uri", "/cb".into()).path, "redirect_uri");
        assert_eq!(
            err("logout_path", "/oidc/callback".into()).path,
            "logout_path"
        );
        assert_eq!(err("session_lifetime", "8".into()).path, "session_lifetime");
        assert_eq!(
            err("algorithms", serde_json::json!(["none"])).path,
            "algorithms[0]"
        );
        assert_eq!(err("cookie_name", "a b".into()).path, "cookie_name");
    }

    #[test]
    fn return_paths_stay_local() {
        assert_eq!(local_path("/app?x=1"), "/app?x=1");
        assert_eq!(local_path("//evil.example/x"), "/");
        assert_eq!(local_path("/\\evil.example"), "/");
        assert_eq!(local_path("https://evil.example"), "/");
        assert_eq!(local_path(&format!("/{}", "a".repeat(MAX_RETURN_TO))), "/");
    }
}
