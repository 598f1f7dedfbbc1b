//! The `introspection` plugin against a local RFC 7662 endpoint: answers cached (counted at
//! the endpoint), bounded by the token's `exp`; both client authentication methods.

use std::time::{Duration, Instant};

use crate::auth_idp::*;
use crate::harness::*;

async fn setup() -> (Idp, Upstream, Meridian, u16) {
    let idp = Idp::start(&[]).await;
    let up = Upstream::start("api").await;
    let port = free_port();
    let common = format!(
        "endpoint: \"{}/introspect\", client_id: {CLIENT_ID}",
        idp.url()
    );
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  api: {{ targets: ["{up}"] }}
routes:
  - name: basic
    match: {{ path_prefix: /basic }}
    upstream: api
    plugins:
      - introspection: {{ {common}, client_secret: "{CLIENT_SECRET}", forward_claims: {{ sub: x-user-id }} }}
  - name: post
    match: {{ path_prefix: /post }}
    upstream: api
    plugins:
      - introspection: {{ {common}, client_secret: "{CLIENT_SECRET}", client_auth: post, require: {{ scope: [admin] }} }}
  - name: wrong
    match: {{ path_prefix: /wrong }}
    upstream: api
    plugins:
      - introspection: {{ {common}, client_secret: not-the-secret }}
"#,
            up = up.addr,
        ),
    ));
    let answers = [
        (
            "tok-a",
            serde_json::json!({ "active": true, "sub": USER, "scope": "read", "exp": now() + 300 }),
        ),
        (
            "tok-admin",
            serde_json::json!({ "active": true, "sub": "root", "scope": "read admin", "exp": now() + 300 }),
        ),
        (
            "tok-soon",
            serde_json::json!({ "active": true, "sub": USER, "exp": now() + 2 }),
        ),
    ];
    idp.state
        .introspection
        .lock()
        .expect("lock")
        .extend(answers.map(|(t, a)| (t.to_string(), a)));
    (idp, up, m, port)
}

async fn call(port: u16, path: &str, token: &str) -> (u16, String) {
    let r = client()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(token)
        .header("x-user-id", "mallory")
        .send()
        .await
        .expect("request");
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii").to_string())
        .unwrap_or_default();
    (r.status().as_u16(), challenge)
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_are_cached_and_bounded_by_exp() {
    let (idp, up, _m, port) = setup().await;
    for _ in 0..5 {
        assert_eq!(call(port, "/basic", "tok-a").await.0, 200);
    }
    assert_eq!(idp.hits("/introspect"), 1, "one lookup for five requests");
    assert_eq!(
        up.last()
            .expect("seen")
            .headers
            .get("x-user-id")
            .map(String::as_str),
        Some(USER)
    );

    // Inactive (unknown) tokens: 401, and the negative answer is cached too.
    for _ in 0..3 {
        let (status, challenge) = call(port, "/basic", "tok-revoked").await;
        assert_eq!(status, 401);
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
    assert_eq!(idp.hits("/introspect"), 2);

    // A token that expires in two seconds is cached until then, not for the 60s default;
    // after its exp the endpoint is asked again, and the expired answer is refused.
    assert_eq!(call(port, "/basic", "tok-soon").await.0, 200);
    assert_eq!(call(port, "/basic", "tok-soon").await.0, 200);
    assert_eq!(idp.hits("/introspect"), 3);
    let deadline = Instant::now() + Duration::from_secs(6);
    let refused = loop {
        let status = call(port, "/basic", "tok-soon").await.0;
        if status == 401 || Instant::now() > deadline {
            break status == 401;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(refused, "tok-soon still admitted after its exp");
    assert_eq!(idp.hits("/introspect"), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_auth_methods_and_required_scope() {
    let (idp, _up, _m, port) = setup().await;
    // Client secret in the form body; scope required.
    assert_eq!(call(port, "/post", "tok-admin").await.0, 200);
    let (status, challenge) = call(port, "/post", "tok-a").await;
    assert_eq!(status, 403);
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"admin\""), "{challenge}");
    // The endpoint refuses a wrong client secret: the gateway fails closed with 503.
    assert_eq!(call(port, "/wrong", "tok-a").await.0, 503);
    // No token at all: no lookup.
    let before = idp.hits("/introspect");
    let r = client()
        .get(format!("http://127.0.0.1:{port}/basic"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"meridian\"");
    assert_eq!(idp.hits("/introspect"), before);
}
