//! The `oidc` plugin walked end to end by a browser-like client (cookie store, following
//! redirects) against the local provider: discovery, authorize, token, JWKS, then logout.

use std::sync::Arc;
use std::time::Duration;

use crate::auth_idp::*;
use crate::harness::*;

const COOKIE_SECRET: &str = "an-oidc-cookie-secret-of-32-bytes-or-more";

fn browser(jar: &Arc<reqwest::cookie::Jar>, follow: bool) -> reqwest::Client {
    let policy = if follow {
        reqwest::redirect::Policy::limited(10)
    } else {
        reqwest::redirect::Policy::none()
    };
    reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(policy)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn login_and_logout() {
    let idp = Idp::start(&[K1]).await;
    let up = Upstream::start("app").await;
    let port = free_port();
    let _m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  app: {{ targets: ["{up}"] }}
routes:
  - name: app
    match: {{ path_prefix: / }}
    upstream: app
    plugins:
      - oidc:
          issuer: "{issuer}"
          client_id: {CLIENT_ID}
          client_secret: "{CLIENT_SECRET}"
          redirect_uri: "http://127.0.0.1:{port}/oidc/callback"
          post_logout_redirect_uri: "http://127.0.0.1:{port}/bye"
          cookie_secret: "{COOKIE_SECRET}"
          cookie_secure: false
          forward_claims: {{ sub: x-user-id, email: x-user-email }}
"#,
            up = up.addr,
            issuer = idp.url(),
        ),
    ));
    let app = format!("http://127.0.0.1:{port}");
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let follow = browser(&jar, true);
    let manual = browser(&jar, false);

    // An API call without a session is refused, not redirected.
    let r = manual
        .post(format!("{app}/app/orders"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"meridian\"");

    // The first page view goes to the provider with PKCE, state and nonce.
    let r = manual
        .get(format!("{app}/app/page?x=1"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().expect("ascii").to_string();
    assert!(
        location.starts_with(&format!("{}/authorize?", idp.url())),
        "{location}"
    );
    for param in [
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
        "scope=openid",
    ] {
        assert!(location.contains(param), "{param} in {location}");
    }
    let set_cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        set_cookie.starts_with("meridian_session_login="),
        "{set_cookie}"
    );
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );

    // A callback whose state is not the one in the login cookie is refused.
    let r = manual
        .get(format!("{app}/oidc/callback?code=x&state=forged"))
        .send()
        .await
        .expect("callback");
    assert_eq!(r.status(), 400);

    // The whole dance, redirects followed: authorize → callback → the page.
    let r = follow
        .get(format!("{app}/app/page?x=1"))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
    assert_eq!(r.url().as_str(), format!("{app}/app/page?x=1"));
    assert_eq!(idp.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(idp.hits("/authorize"), 1);
    assert_eq!(idp.hits("/token"), 1);
    assert_eq!(idp.hits("/jwks"), 1);
    let seen = up.last().expect("seen");
    assert_eq!(seen.uri, "/app/page?x=1");
    assert_eq!(
        seen.headers.get("x-user-id").map(String::as_str),
        Some(USER)
    );
    assert_eq!(
        seen.headers.get("x-user-email").map(String::as_str),
        Some("alice@example.com")
    );
    assert!(
        !seen
            .headers
            .get("cookie")
            .is_some_and(|c| c.contains("meridian_session")),
        "session cookie forwarded: {:?}",
        seen.headers.get("cookie")
    );

    // The session cookie admits the next requests without the provider.
    let r = manual
        .post(format!("{app}/app/orders"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(idp.hits("/authorize"), 1);

    // Logout clears the session and goes to the provider's end_session_endpoint.
    let r = manual
        .get(format!("{app}/oidc/logout"))
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().expect("ascii").to_string();
    assert!(
        location.starts_with(&format!("{}/logout?", idp.url())),
        "{location}"
    );
    assert!(location.contains("post_logout_redirect_uri="), "{location}");
    assert!(
        r.headers().get_all("set-cookie").iter().any(|c| c
            .to_str()
            .is_ok_and(|c| c.starts_with("meridian_session=;") && c.contains("Max-Age=0"))),
        "{:?}",
        r.headers()
    );
    let r = manual
        .get(format!("{app}/app/page"))
        .send()
        .await
        .expect("after logout");
    assert_eq!(r.status(), 302, "logged out");
}

#[test]
fn bad_oidc_settings_are_reported_at_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = check_fails(dir.path(), "oidc.yaml", "listeners: [ { name: a, address: \"127.0.0.1:1\" } ]\nupstreams:\n  u: { targets: [\"127.0.0.1:2\"] }\nroutes:\n  - name: r\n    match: { path_prefix: / }\n    upstream: u\n    plugins:\n      - oidc:\n          issuer: https://idp.example\n          client_id: c\n          client_secret: s\n          redirect_uri: https://app.example/cb\n          cookie_secret: too-short\n");
    assert!(
        err.lines().any(|l| l.contains("oidc.yaml:14:")
            && l.contains("cookie_secret")
            && l.contains("too short")),
        "{err}"
    );
}
