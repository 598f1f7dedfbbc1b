//! The routing table, as data: request → which upstream saw what.

use crate::harness::*;

struct Case {
    host: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    status: u16,
    upstream: &'static str,
    upstream_uri: &'static str,
}

const fn case(
    host: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    status: u16,
    upstream: &'static str,
    upstream_uri: &'static str,
) -> Case {
    Case {
        host,
        method,
        path,
        headers,
        status,
        upstream,
        upstream_uri,
    }
}

const CASES: &[Case] = &[
    // exact host + exact path beats the wildcard host
    case(
        "api.example.com",
        "GET",
        "/v1/users",
        &[],
        200,
        "a",
        "/v1/users",
    ),
    // wildcard host, prefix
    case(
        "shop.example.com",
        "GET",
        "/v1/users",
        &[],
        200,
        "b",
        "/v1/users",
    ),
    case("deep.shop.example.com", "GET", "/x", &[], 200, "b", "/x"),
    // template with capture and rewrite; query kept
    case(
        "other.test",
        "GET",
        "/items/42?full=1",
        &[],
        200,
        "c",
        "/internal/items/42?full=1",
    ),
    // regex
    case(
        "other.test",
        "GET",
        "/v7/legacy/thing",
        &[],
        200,
        "a",
        "/v7/legacy/thing",
    ),
    // method predicate
    case("other.test", "POST", "/submit", &[], 200, "a", "/submit"),
    case("other.test", "GET", "/submit", &[], 200, "b", "/submit"),
    // header predicate beats the same path without it
    case(
        "other.test",
        "GET",
        "/feature",
        &[("x-canary", "1")],
        200,
        "c",
        "/feature",
    ),
    case("other.test", "GET", "/feature", &[], 200, "a", "/feature"),
    // query predicate
    case(
        "other.test",
        "GET",
        "/feature?preview=1",
        &[],
        200,
        "c",
        "/feature?preview=1",
    ),
    // strip_prefix rewrite
    case("other.test", "GET", "/svc/b/hello", &[], 200, "b", "/hello"),
    // normalisation: dot segments and merged slashes before matching, and upstream sees it
    case(
        "other.test",
        "GET",
        "/public/../items/7",
        &[],
        200,
        "c",
        "/internal/items/7",
    ),
    case(
        "other.test",
        "GET",
        "//items///8",
        &[],
        200,
        "c",
        "/internal/items/8",
    ),
    // `/a/../admin` cannot bypass the admin rule (deny all)
    case("other.test", "GET", "/public/../admin/x", &[], 403, "", ""),
    case("other.test", "GET", "/%2e%2e/admin", &[], 403, "", ""),
    case("other.test", "GET", "/admin", &[], 403, "", ""),
    // encoded slash refused by default
    case("other.test", "GET", "/a%2Fb", &[], 400, "", ""),
    // fallback
    case("other.test", "GET", "/anything", &[], 200, "a", "/anything"),
];

#[tokio::test(flavor = "multi_thread")]
async fn routing_table() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let port = free_port();
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  a: {{ targets: ["{a}"] }}
  b: {{ targets: ["{b}"] }}
  c: {{ targets: ["{c}"] }}
routes:
  - {{ name: fallback, match: {{ path_prefix: / }}, upstream: a }}
  - {{ name: users, match: {{ host: api.example.com, path: /v1/users }}, upstream: a }}
  - {{ name: wild, match: {{ host: "*.example.com", path_prefix: / }}, upstream: b }}
  - {{ name: items, match: {{ path: "/items/{{id}}" }}, upstream: c, rewrite: "/internal/items/{{id}}" }}
  - {{ name: legacy, match: {{ path_regex: "^/v[0-9]+/legacy/.*$" }}, upstream: a }}
  - {{ name: submit-post, match: {{ path: /submit, methods: [POST] }}, upstream: a }}
  - {{ name: submit-any, match: {{ path: /submit }}, upstream: b }}
  - {{ name: feature, match: {{ path: /feature }}, upstream: a }}
  - {{ name: canary, match: {{ path: /feature, headers: {{ x-canary: "1" }} }}, upstream: c }}
  - {{ name: preview, match: {{ path: /feature, query: {{ preview: "1" }} }}, upstream: c }}
  - {{ name: strip, match: {{ path_prefix: /svc/b/ }}, upstream: b, rewrite: {{ strip_prefix: / }} }}
  - {{ name: admin, match: {{ path_prefix: /admin }}, upstream: a, access: {{ deny: [0.0.0.0/0, "::/0"] }} }}
"#,
            a = a.addr,
            b = b.addr,
            c = c.addr
        ),
    ));
    let _ = &m;
    let ups = [("a", &a), ("b", &b), ("c", &c)];
    for (i, t) in CASES.iter().enumerate() {
        let mut req = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            t.method, t.path, t.host
        );
        for (k, v) in t.headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if t.method == "POST" {
            req.push_str("Content-Length: 0\r\n");
        }
        req.push_str("\r\n");
        let before: Vec<usize> = ups.iter().map(|(_, u)| u.hits()).collect();
        let resp = raw(&format!("127.0.0.1:{port}"), req.as_bytes());
        assert_eq!(
            status_of(&resp),
            t.status,
            "case {i} {} {}: {resp}",
            t.method,
            t.path
        );
        for (j, (name, u)) in ups.iter().enumerate() {
            let got = u.hits() - before[j];
            let want = usize::from(*name == t.upstream);
            assert_eq!(
                got, want,
                "case {i} {} {}: upstream {name} hits",
                t.method, t.path
            );
            if want == 1 {
                let seen = u.last().expect("seen");
                assert_eq!(seen.uri, t.upstream_uri, "case {i}: upstream URI");
                assert_eq!(seen.method, t.method, "case {i}: method");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_split_and_header_rules() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let port = free_port();
    let _m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  a: {{ targets: ["{a}"] }}
  b: {{ targets: ["{b}"] }}
routes:
  - name: split
    match: {{ path_prefix: / }}
    split: [ {{ upstream: a, weight: 80 }}, {{ upstream: b, weight: 20 }} ]
    request_headers: {{ set: {{ x-set: "yes" }}, add: {{ x-add: "1" }}, remove: [x-drop] }}
    response_headers: {{ set: {{ x-served-by: meridian }}, remove: [x-upstream] }}
"#,
            a = a.addr,
            b = b.addr
        ),
    ));
    let c = client();
    let n = 500;
    for _ in 0..n {
        let r = c
            .get(format!("http://127.0.0.1:{port}/x"))
            .header("x-drop", "secret")
            .header("x-add", "0")
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-served-by"], "meridian");
        assert!(r.headers().get("x-upstream").is_none());
    }
    let share_a = a.hits() as f64 / n as f64;
    assert!(
        (0.72..=0.88).contains(&share_a),
        "split share of a: {share_a}"
    );
    assert_eq!(a.hits() + b.hits(), n);
    let seen = a.last().expect("seen");
    assert_eq!(seen.headers.get("x-set").map(String::as_str), Some("yes"));
    assert_eq!(seen.headers.get("x-add").map(String::as_str), Some("0, 1"));
    assert!(!seen.headers.contains_key("x-drop"));
    // forwarded headers and request id
    assert_eq!(
        seen.headers.get("x-forwarded-for").map(String::as_str),
        Some("127.0.0.1")
    );
    assert_eq!(
        seen.headers.get("x-forwarded-proto").map(String::as_str),
        Some("http")
    );
    assert!(seen
        .headers
        .get("forwarded")
        .is_some_and(|f| f.starts_with("for=127.0.0.1;proto=http")));
    assert!(seen
        .headers
        .get("x-request-id")
        .is_some_and(|id| !id.is_empty()));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http10_upstream_is_answered_in_http11() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An HTTP/1.0 origin (like `python3 -m http.server`): answers and closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
        }
    });
    let port = free_port();
    let _m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  old: {{ targets: ["{origin}"] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: old }}
"#
        ),
    ));
    let resp = raw(
        &format!("127.0.0.1:{port}"),
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    server.abort();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("ok"), "{resp}");
}
