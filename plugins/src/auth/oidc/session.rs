//! The OIDC plugin's cookies, sealed with AES-256-GCM (the `cookie` crate's private jar, key
//! derived from the configured secret with HKDF): a short-lived login cookie with the state,
//! nonce and PKCE verifier of a login in progress, and the session cookie with the claims.
//! Each carries its own expiry inside the sealed value, so a replayed old cookie is refused
//! whatever its `Max-Age` said.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cookie::{Cookie, CookieJar, Key, SameSite};
use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The shortest cookie secret accepted.
pub const MIN_SECRET: usize = 32;

/// A login in progress.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Login {
    /// The `state` sent to the provider.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// Where to send the browser after login (a local path).
    pub return_to: String,
}

/// A logged-in session.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Session {
    /// The ID token's claims (or the subset kept when they are large).
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// A sealed value with its expiry (seconds since the epoch).
#[derive(Serialize, Deserialize)]
struct Sealed<T> {
    exp: u64,
    value: T,
}

/// Seals and opens the plugin's cookies.
pub struct Cookies {
    key: Key,
    session_name: String,
    login_name: String,
    secure: bool,
    session_lifetime: Duration,
    login_lifetime: Duration,
}

impl Cookies {
    /// Cookies named `name` (session) and `name_login`, sealed with a key derived from
    /// `secret` (at least [`MIN_SECRET`] bytes; checked by the caller).
    pub fn new(
        secret: &[u8],
        name: &str,
        secure: bool,
        session_lifetime: Duration,
        login_lifetime: Duration,
    ) -> Cookies {
        Cookies {
            key: Key::derive_from(secret),
            session_name: name.to_string(),
            login_name: format!("{name}_login"),
            secure,
            session_lifetime,
            login_lifetime,
        }
    }

    /// Whether `name` is one of these cookies.
    pub fn is_ours(&self, name: &str) -> bool {
        name == self.session_name || name == self.login_name
    }

    /// `Set-Cookie` for a new session.
    pub fn set_session(&self, session: &Session) -> Option<String> {
        self.seal(&self.session_name, session, self.session_lifetime)
    }

    /// `Set-Cookie` for a login in progress.
    pub fn set_login(&self, login: &Login) -> Option<String> {
        self.seal(&self.login_name, login, self.login_lifetime)
    }

    /// The request's session, if its cookie opens and has not expired.
    pub fn session(&self, headers: &HeaderMap) -> Option<Session> {
        self.open(headers, &self.session_name)
    }

    /// The request's login in progress, if its cookie opens and has not expired.
    pub fn login(&self, headers: &HeaderMap) -> Option<Login> {
        self.open(headers, &self.login_name)
    }

    /// `Set-Cookie` that removes the session.
    pub fn clear_session(&self) -> String {
        self.clear(&self.session_name)
    }

    /// `Set-Cookie` that removes the login cookie.
    pub fn clear_login(&self) -> String {
        self.clear(&self.login_name)
    }

    fn seal<T: Serialize>(&self, name: &str, value: &T, lifetime: Duration) -> Option<String> {
        let sealed = Sealed {
            exp: unix_now().saturating_add(lifetime.as_secs()),
            value,
        };
        let json = serde_json::to_string(&sealed).ok()?;
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key)
            .add(Cookie::new(name.to_string(), json));
        let mut cookie = jar.get(name)?.clone();
        self.attributes(&mut cookie);
        cookie.set_max_age(cookie::time::Duration::seconds(
            i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX),
        ));
        Some(cookie.to_string())
    }

    fn open<T: DeserializeOwned>(&self, headers: &HeaderMap, name: &str) -> Option<T> {
        let mut jar = CookieJar::new();
        for c in headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .filter(|c| c.name() == name)
        {
            jar.add_original(c.into_owned());
        }
        let opened = jar.private(&self.key).get(name)?;
        let sealed: Sealed<T> = serde_json::from_str(opened.value()).ok()?;
        (sealed.exp > unix_now()).then_some(sealed.value)
    }

    fn clear(&self, name: &str) -> String {
        let mut cookie = Cookie::new(name.to_string(), "");
        self.attributes(&mut cookie);
        cookie.make_removal();
        cookie.to_string()
    }

    fn attributes(&self, cookie: &mut Cookie<'_>) {
        cookie.set_path("/");
        cookie.set_http_only(true);
        cookie.set_same_site(SameSite::Lax);
        cookie.set_secure(self.secure);
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a cookie secret of at least 32 bytes!";

    fn request_with(set_cookie: &str) -> HeaderMap {
        let pair = set_cookie.split(';').next().expect("pair");
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            format!("other=1; {pair}").parse().expect("value"),
        );
        h
    }

    #[test]
    fn seals_and_opens() {
        let c = Cookies::new(
            SECRET,
            "sid",
            true,
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let login = Login {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            return_to: "/a?b".into(),
        };
        let set = c.set_login(&login).expect("sealed");
        assert!(set.starts_with("sid_login="), "{set}");
        for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=60"] {
            assert!(set.contains(attr), "{attr} in {set}");
        }
        assert!(!set.contains("verifier"), "sealed: {set}");
        assert_eq!(c.login(&request_with(&set)), Some(login));
        // Not the session cookie; not openable with another key; not after tampering.
        assert!(c.session(&request_with(&set)).is_none());
        let other = Cookies::new(
            &[7u8; 32],
            "sid",
            true,
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        assert!(other.login(&request_with(&set)).is_none());
        let tampered = set.replacen("sid_login=", "sid_login=A", 1);
        assert!(c.login(&request_with(&tampered)).is_none());
    }

    #[test]
    fn expired_cookies_do_not_open() {
        let c = Cookies::new(SECRET, "sid", false, Duration::ZERO, Duration::ZERO);
        let set = c
            .set_session(&Session {
                claims: serde_json::Map::new(),
            })
            .expect("sealed");
        assert!(!set.contains("Secure"));
        assert!(c.session(&request_with(&set)).is_none());
        assert!(c.clear_session().contains("Max-Age=0"));
    }
}
