//! The `api_key` plugin: good, bad and missing keys, from a header or the query; the key
//! never reaches the upstream.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn good_bad_and_missing_keys() {
    let up = Upstream::start("api").await;
    let port = free_port();
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  api: {{ targets: ["{up}"] }}
routes:
  - name: keyed
    match: {{ path_prefix: / }}
    upstream: api
    plugins:
      - api_key:
          from: {{ header: X-Api-Key, query: api_key }}
          keys:
            - {{ id: team-a, hash: "{a}", metadata: {{ plan: gold }} }}
            - {{ id: team-b, hash: "{b}" }}
"#,
            up = up.addr,
            a = api_key_hash("key-of-team-a"),
            b = api_key_hash("key-of-team-b"),
        ),
    ));
    let c = client();
    let url = format!("http://127.0.0.1:{port}/orders");
    // (case, header, query, status)
    let cases = [
        ("good header", Some("key-of-team-a"), "", 200),
        ("other good key", Some("key-of-team-b"), "", 200),
        ("good query", None, "?x=1&api_key=key-of-team-b&y=%20", 200),
        ("bad key", Some("key-of-team-c"), "", 401),
        ("key with suffix", Some("key-of-team-aa"), "", 401),
        ("empty key", Some(""), "", 401),
        ("bad query key", None, "?api_key=nope", 401),
        ("missing", None, "", 401),
    ];
    for (name, header, query, status) in cases {
        let hits = up.hits();
        let mut req = c.get(format!("{url}{query}"));
        if let Some(h) = header {
            req = req.header("x-api-key", h);
        }
        let r = req.send().await.expect("request");
        assert_eq!(r.status(), status, "{name}");
        if status == 401 {
            let challenge = r.headers().get("www-authenticate").expect("challenge");
            assert_eq!(challenge, "ApiKey realm=\"meridian\"", "{name}");
            assert_eq!(
                up.hits(),
                hits,
                "{name}: refused requests do not reach the upstream"
            );
        } else {
            let seen = up.last().expect("seen");
            assert!(
                !seen.headers.contains_key("x-api-key"),
                "{name}: key forwarded"
            );
            assert!(
                !seen.uri.contains("api_key"),
                "{name}: key forwarded in {}",
                seen.uri
            );
        }
    }
    assert_eq!(up.last().expect("seen").uri, "/orders?x=1&y=%20");

    // Decisions are counted (the request hook has run before the response is sent).
    let metrics = c
        .get(format!("{}/metrics", m.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    for (result, count) in [("ok", 3), ("invalid", 4), ("missing", 1)] {
        let line = format!(
            "meridian_auth_decisions_total{{plugin=\"api_key\",result=\"{result}\"}} {count}"
        );
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}
