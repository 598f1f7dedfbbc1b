//! Plugins working together: the global chain before a route's own, a route plugin replacing
//! a global one of the same name, an auth plugin's identity keying a rate limit, and a local
//! refusal passing through the response hooks of the plugins before it.

use crate::harness::*;

const SECRET: &str = "chain-test-secret-chain-test-secret-0123";

fn token(sub: &str) -> String {
    let claims = serde_json::json!({ "sub": sub, "exp": 4102444800u64 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

#[tokio::test(flavor = "multi_thread")]
async fn global_chain_identity_keyed_limits_and_local_responses() {
    let up = Upstream::start("api").await;
    let port = free_port();
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  api: {{ targets: ["{up}"] }}
plugins:
  - cors: {{ allow_origins: ["https://app.example"] }}
  - headers: {{ response: {{ set: {{ x-chain: global }} }} }}
routes:
  - name: users
    match: {{ path_prefix: /users }}
    upstream: api
    plugins:
      - jwt: {{ algorithms: [HS256], secret: "{SECRET}" }}
      - rate_limit: {{ limit: 2/m, key: ["claim:sub"] }}
  - name: keys
    match: {{ path_prefix: /keys }}
    upstream: api
    plugins:
      - headers: {{ response: {{ set: {{ x-chain: route }} }} }}
      - api_key: {{ keys: [ {{ id: team-a, hash: "{a}" }}, {{ id: team-b, hash: "{b}" }} ] }}
      - rate_limit: {{ limit: 1/m, key: [api_key] }}
"#,
            up = up.addr,
            a = api_key_hash("key-a"),
            b = api_key_hash("key-b"),
        ),
    ));
    let c = client();
    let base = format!("http://127.0.0.1:{port}");
    let send = |path: &str, auth: Option<(&'static str, String)>| {
        let mut req = c
            .get(format!("{base}{path}"))
            .header("origin", "https://app.example");
        if let Some((name, value)) = auth {
            req = req.header(name, value);
        }
        req.send()
    };

    // No token: the jwt plugin refuses, and the global cors plugin's headers are on the 401.
    let r = send("/users/1", None).await.expect("request");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(r.headers()["x-chain"], "global");
    assert!(r.headers().contains_key("www-authenticate"));

    // The limit is per `sub`: alice gets 2, then 429 (with CORS); bob still gets his own 2.
    let bearer = |sub: &str| Some(("authorization", format!("Bearer {}", token(sub))));
    for _ in 0..2 {
        let r = send("/users/1", bearer("alice")).await.expect("request");
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("ratelimit"));
    }
    let r = send("/users/1", bearer("alice")).await.expect("request");
    assert_eq!(r.status(), 429);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(r.headers().contains_key("retry-after"));
    let r = send("/users/1", bearer("bob")).await.expect("request");
    assert_eq!(r.status(), 200, "bob has his own budget");

    // The route's `headers` replaces the global one; limits are per API key id.
    let key = |k: &str| Some(("x-api-key", k.to_string()));
    let r = send("/keys/1", key("key-a")).await.expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-chain"], "route");
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let r = send("/keys/1", key("key-a")).await.expect("request");
    assert_eq!(r.status(), 429, "team-a's second request");
    let r = send("/keys/1", key("key-b")).await.expect("request");
    assert_eq!(r.status(), 200, "team-b has its own budget");
    drop(m);
}

#[test]
fn bad_global_plugin_settings_point_at_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = check_fails(
        dir.path(),
        "bad.yaml",
        "listeners: [ { name: public, address: \"127.0.0.1:1\" } ]\n\
         plugins:\n  - rate_limit:\n      limit: 10/fortnight\n  - nope: {}\n",
    );
    assert!(
        err.contains("bad.yaml:4:7: plugin rate_limit.limit:"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml:5:5: plugin nope: unknown plugin"),
        "{err}"
    );
}
