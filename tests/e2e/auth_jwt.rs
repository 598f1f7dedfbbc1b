//! The `jwt` plugin against a local JWKS server: the attack cases as one table, key
//! rotation with rate-limited refreshes, forwarded claims, token from cookie or query.

use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::auth_idp::*;
use crate::harness::*;

const ISSUER: &str = "https://issuer.test";
const SECRET: &str = "an-hmac-secret-of-at-least-32-bytes";

/// One attack-table row: case, path, token, status, WWW-Authenticate `error`,
/// `error_description`.
type Case<'a> = (&'a str, &'a str, Option<String>, u16, &'a str, &'a str);

/// Claims that pass on the `/api` routes.
fn claims() -> serde_json::Value {
    serde_json::json!({
        "iss": ISSUER, "aud": "orders", "sub": USER, "tenant": "t1",
        "scope": "orders:read", "exp": now() + 300,
    })
}

fn with(k: &str, v: serde_json::Value) -> serde_json::Value {
    let mut c = claims();
    c[k] = v;
    c
}

/// A token from raw header and claims JSON with `signature` (no signing).
fn raw(header: &str, claims: &serde_json::Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// The gateway with `jwks` timing settings (`jwks_min_refresh: 2s, ...`).
async fn setup(jwks: &str) -> (Idp, Upstream, Meridian, u16) {
    let idp = Idp::start(&[K1, E1]).await;
    let up = Upstream::start("api").await;
    let port = free_port();
    let jwt = format!(
        "algorithms: [RS256, ES256], jwks_url: \"{idp}/jwks\", {jwks}, \
         issuer: \"{ISSUER}\", audience: orders, required_claims: [exp, sub, tenant], \
         forward_claims: {{ sub: x-user-id, tenant: x-tenant }}",
        idp = idp.url()
    );
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  api: {{ targets: ["{up}"] }}
routes:
  - name: write
    match: {{ path_prefix: /api/orders }}
    upstream: api
    plugins:
      - jwt: {{ {jwt}, require: {{ scope: ["orders:write"] }} }}
  - name: read
    match: {{ path_prefix: /api }}
    upstream: api
    plugins:
      - jwt: {{ {jwt} }}
  - name: browser
    match: {{ path_prefix: /web }}
    upstream: api
    plugins:
      - jwt: {{ {jwt}, from: {{ cookie: at, query: access_token }} }}
  - name: mixed
    match: {{ path_prefix: /mixed }}
    upstream: api
    plugins:
      - jwt: {{ algorithms: [RS256, HS256], public_key: "{pem}", secret: "{SECRET}" }}
  - name: pem
    match: {{ path_prefix: /pem }}
    upstream: api
    plugins:
      - jwt: {{ algorithms: [RS256], public_key: "{pem}" }}
"#,
            up = up.addr,
            pem = RSA1_PUBLIC.trim().replace('\n', "\\n"),
        ),
    ));
    (idp, up, m, port)
}

async fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = client().get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii").to_string())
        .unwrap_or_default();
    (r.status().as_u16(), challenge)
}

#[tokio::test(flavor = "multi_thread")]
async fn attack_table() {
    let (_idp, up, _m, port) = setup("jwks_min_refresh: 10s").await;
    let attacker_jwk: Jwk = serde_json::from_value(K2.jwk()).expect("jwk");
    let header = |f: &dyn Fn(&mut Header)| {
        let mut h = Header::new(Algorithm::RS256);
        f(&mut h);
        h
    };
    let good = K1.sign(&claims());
    let (head, rest) = good.split_once('.').expect("jwt");
    let mut tampered = good.clone();
    tampered.replace_range(good.len() - 6.., "AAAAAA");
    let hs = |secret: &[u8]| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(secret),
        )
        .expect("sign")
    };
    let hs_with_public_key = hs(RSA1_PUBLIC.trim().as_bytes());
    let no_tenant = {
        let mut c = claims();
        c.as_object_mut().expect("object").remove("tenant");
        c
    };
    let a = "/api/x";

    // Embedded-key rows are signed with the real key and kid: only the header refuses them.
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("valid RS256", a, Some(good.clone()), 200, "", ""),
        ("valid ES256", a, Some(E1.sign(&claims())), 200, "", ""),
        ("no token", a, None, 401, "", ""),
        ("alg none", a, Some(raw(r#"{"alg":"none"}"#, &claims(), "")), 401, "invalid_token", "algorithm not allowed"),
        ("alg NONE", a, Some(raw(r#"{"alg":"NONE","typ":"JWT"}"#, &claims(), "")), 401, "invalid_token", "algorithm not allowed"),
        ("alg nOnE", a, Some(raw(r#"{"alg":"nOnE"}"#, &claims(), "x")), 401, "invalid_token", "algorithm not allowed"),
        ("alg HS256 not pinned", a, Some(hs(SECRET.as_bytes())), 401, "invalid_token", "algorithm not allowed"),
        ("RS->HS key confusion (jwks)", a, Some(hs_with_public_key.clone()), 401, "invalid_token", "algorithm not allowed"),
        ("RS->HS key confusion (pem)", "/pem/x", Some(hs_with_public_key.clone()), 401, "invalid_token", "algorithm not allowed"),
        ("RS->HS key confusion (RS256+HS256)", "/mixed/x", Some(hs_with_public_key), 401, "invalid_token", "bad signature"),
        ("HS256 with the secret (RS256+HS256)", "/mixed/x", Some(hs(SECRET.as_bytes())), 200, "", ""),
        ("RS256 (RS256+HS256)", "/mixed/x", Some(K1.sign(&claims())), 200, "", ""),
        ("pem route valid", "/pem/x", Some(K1.sign(&claims())), 200, "", ""),
        ("embedded jwk", a, Some(K1.sign_with(header(&|h| h.jwk = Some(attacker_jwk.clone())), &claims())), 401, "invalid_token", "embedded keys are not accepted"),
        ("jku", a, Some(K1.sign_with(header(&|h| h.jku = Some("http://127.0.0.1:1/jwks".into())), &claims())), 401, "invalid_token", "embedded keys are not accepted"),
        ("x5u", a, Some(K1.sign_with(header(&|h| h.x5u = Some("http://127.0.0.1:1/x5".into())), &claims())), 401, "invalid_token", "embedded keys are not accepted"),
        ("x5c", a, Some(K1.sign_with(header(&|h| h.x5c = Some(vec!["MIIB".into()])), &claims())), 401, "invalid_token", "embedded keys are not accepted"),
        ("attacker key, embedded jwk", a, Some(K2.sign_with(header(&|h| h.jwk = Some(attacker_jwk.clone())), &claims())), 401, "invalid_token", "embedded keys are not accepted"),
        ("crit header", a, Some(K1.sign_with(header(&|h| h.crit = Some(vec!["exp".into()])), &claims())), 401, "invalid_token", "unsupported crit header"),
        ("unknown kid", a, Some(K2.sign(&claims())), 401, "invalid_token", "unknown signing key"),
        ("bad signature", a, Some(tampered), 401, "invalid_token", "bad signature"),
        ("another key, known kid", a, Some(SigningKey { kid: "k1", ..K2 }.sign(&claims())), 401, "invalid_token", "bad signature"),
        ("expired", a, Some(K1.sign(&with("exp", (now() - 120).into()))), 401, "invalid_token", "token expired"),
        ("expired within leeway", a, Some(K1.sign(&with("exp", (now() - 10).into()))), 200, "", ""),
        ("not yet valid", a, Some(K1.sign(&with("nbf", (now() + 120).into()))), 401, "invalid_token", "token not yet valid"),
        ("wrong iss", a, Some(K1.sign(&with("iss", "https://evil".into()))), 401, "invalid_token", "wrong issuer"),
        ("wrong aud", a, Some(K1.sign(&with("aud", "billing".into()))), 401, "invalid_token", "wrong audience"),
        ("missing required claim", a, Some(K1.sign(&no_tenant)), 401, "invalid_token", "missing claim tenant"),
        ("malformed base64 header", a, Some(format!("!!{good}")), 401, "invalid_token", "malformed token"),
        ("malformed base64 signature", a, Some(format!("{good}!!")), 401, "invalid_token", "malformed token"),
        ("malformed base64 payload (signature checked first)", a, Some(format!("{head}.!!!{rest}")), 401, "invalid_token", "bad signature"),
        ("malformed JSON", a, Some(raw(r#"{"alg":"RS256""#, &claims(), "sig")), 401, "invalid_token", "malformed token"),
        ("claims not an object", a, Some(K1.sign(&serde_json::json!(["sub"]))), 401, "invalid_token", "malformed token"),
        ("two parts", a, Some(format!("{head}.{}", b64(b"{}"))), 401, "invalid_token", "malformed token"),
        ("oversize", a, Some(K1.sign(&with("pad", "x".repeat(9000).into()))), 401, "invalid_token", "token too large"),
        ("lacks scope", "/api/orders", Some(K1.sign(&claims())), 403, "insufficient_scope", "missing scope orders:write"),
        ("has scope", "/api/orders", Some(K1.sign(&with("scope", "orders:read orders:write".into()))), 200, "", ""),
    ];
    for (name, path, token, status, error, description) in cases {
        let hits = up.hits();
        let (got, challenge) = get(port, path, token.as_deref()).await;
        assert_eq!(got, status, "{name}: {challenge}");
        if status == 200 {
            assert!(challenge.is_empty(), "{name}: {challenge}");
            assert_eq!(up.hits(), hits + 1, "{name}");
            continue;
        }
        assert_eq!(
            up.hits(),
            hits,
            "{name}: refused requests do not reach the upstream"
        );
        if error.is_empty() {
            assert_eq!(challenge, "Bearer realm=\"meridian\"", "{name}");
        } else {
            let want = format!(
                "Bearer realm=\"meridian\", error=\"{error}\", error_description=\"{description}\""
            );
            assert!(challenge.starts_with(&want), "{name}: {challenge}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_refreshes_on_unknown_kid_at_most_once_per_interval() {
    let (idp, _up, _m, port) = setup("jwks_min_refresh: 2s").await;
    assert_eq!(get(port, "/api/x", Some(&K1.sign(&claims()))).await.0, 200);
    assert_eq!(idp.hits("/jwks"), 1, "first use fetches the set");
    // A burst of unknown kids right after a fetch: refused without fetching again.
    idp.add_key(K2);
    for _ in 0..10 {
        assert_eq!(get(port, "/api/x", Some(&K2.sign(&claims()))).await.0, 401);
    }
    assert_eq!(idp.hits("/jwks"), 1, "refreshes are rate-limited");
    // Once the interval has passed, the unknown kid triggers one refresh and is accepted.
    let token = K2.sign(&claims());
    let mut statuses = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    let accepted = loop {
        let status = get(port, "/api/x", Some(&token)).await.0;
        statuses.push(status);
        if status == 200 || std::time::Instant::now() > deadline {
            break status == 200;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(accepted, "new kid never accepted: {statuses:?}");
    assert_eq!(idp.hits("/jwks"), 2, "one refresh for the new kid");
    // Known kids do not fetch.
    for _ in 0..5 {
        assert_eq!(get(port, "/api/x", Some(&K1.sign(&claims()))).await.0, 200);
    }
    assert_eq!(idp.hits("/jwks"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn key_set_is_refreshed_on_its_period() {
    let (idp, _up, _m, port) = setup("jwks_refresh: 1s, jwks_min_refresh: 1s").await;
    let token = K1.sign(&claims());
    assert_eq!(get(port, "/api/x", Some(&token)).await.0, 200);
    assert_eq!(idp.hits("/jwks"), 1);
    // Known-kid traffic alone fetches the set again once it is older than jwks_refresh
    // (a new token each time: verified tokens are cached).
    let mut jti = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while idp.hits("/jwks") < 2 && std::time::Instant::now() < deadline {
        jti += 1;
        let fresh = K1.sign(&with("jti", jti.into()));
        assert_eq!(get(port, "/api/x", Some(&fresh)).await.0, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(idp.hits("/jwks"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn key_set_over_https_with_a_configured_ca() {
    let (idp, ca) = Idp::start_tls(&[K1]).await;
    let up = Upstream::start("api").await;
    let port = free_port();
    let jwt = format!("algorithms: [RS256], jwks_url: \"{}/jwks\"", idp.url());
    let _m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  api: {{ targets: ["{up}"] }}
routes:
  - name: trusted
    match: {{ path_prefix: /trusted }}
    upstream: api
    plugins:
      - jwt: {{ {jwt}, ca: "{ca}" }}
  - name: untrusted
    match: {{ path_prefix: /untrusted }}
    upstream: api
    plugins:
      - jwt: {{ {jwt} }}
"#,
            up = up.addr,
            ca = ca.trim().replace('\n', "\\n"),
        ),
    ));
    assert!(idp.url().starts_with("https://"));
    let token = K1.sign(&claims());
    assert_eq!(get(port, "/trusted/x", Some(&token)).await.0, 200);
    assert_eq!(idp.hits("/jwks"), 1);
    // Without the CA the set cannot be fetched (the TLS handshake fails): no key.
    let (status, challenge) = get(port, "/untrusted/x", Some(&token)).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("unknown signing key"), "{challenge}");
    assert_eq!(idp.hits("/jwks"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_are_forwarded_and_client_copies_stripped() {
    let (_idp, up, _m, port) = setup("jwks_min_refresh: 10s").await;
    let r = client()
        .get(format!("http://127.0.0.1:{port}/api/x"))
        .bearer_auth(K1.sign(&claims()))
        .header("x-user-id", "mallory")
        .header("x-tenant", "other")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let seen = up.last().expect("upstream saw the request");
    assert_eq!(
        seen.headers.get("x-user-id").map(String::as_str),
        Some(USER)
    );
    assert_eq!(seen.headers.get("x-tenant").map(String::as_str), Some("t1"));

    // Token in a cookie, then in the query.
    let token = K1.sign(&claims());
    let r = client()
        .get(format!("http://127.0.0.1:{port}/web/x"))
        .header("cookie", format!("theme=dark; at={token}"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let r = client()
        .get(format!(
            "http://127.0.0.1:{port}/web/x?access_token={token}"
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    // The cookie route does not read the Authorization header.
    assert_eq!(get(port, "/web/x", Some(&token)).await.0, 401);
}

#[test]
fn bad_jwt_settings_are_reported_at_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = check_fails(dir.path(), "auth.yaml", "listeners: [ { name: a, address: \"127.0.0.1:1\" } ]\nupstreams:\n  u: { targets: [\"127.0.0.1:2\"] }\nroutes:\n  - name: r\n    match: { path_prefix: / }\n    upstream: u\n    plugins:\n      - jwt:\n          algorithms: [RS256, none]\n          jwks_url: http://127.0.0.1:3/jwks\n");
    assert!(
        err.lines().any(|l| l.contains("auth.yaml:10:")
            && l.contains("algorithms[1]")
            && l.contains("unknown algorithm \"none\"")),
        "{err}"
    );
}
