//! The HTTP plugins: `cors`, `compression`, `size_limit`, `headers`, through a real gateway
//! with real clients.

use std::io::Read;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::*;

/// A text body that compresses well.
fn text(n: usize) -> Vec<u8> {
    b"meridian compresses text; "
        .iter()
        .copied()
        .cycle()
        .take(n)
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// An upstream written by hand, so responses can be shaped exactly: `GET /text/N` (text/plain,
/// N bytes), `/json/N`, `/jpeg/N`, `/gzipped/N` (already `Content-Encoding: gzip`),
/// `/chunked/N` (text/plain without `Content-Length`, in 1 KiB chunks).
struct RawUpstream {
    addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    async fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&head)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                    let _ = s.write_all(&respond(&path)).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        RawUpstream { addr, task }
    }
}

fn respond(path: &str) -> Vec<u8> {
    let mut parts = path.trim_start_matches('/').split('/');
    let kind = parts.next().unwrap_or("");
    let n: usize = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let fixed = |ctype: &str, extra: &str, body: Vec<u8>| {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\netag: \"v1\"\r\n{extra}connection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    };
    match kind {
        "text" => fixed("text/plain; charset=utf-8", "", text(n)),
        "json" => fixed("application/json", "", text(n)),
        "jpeg" => fixed("image/jpeg", "", text(n)),
        "gzipped" => fixed("text/plain", "content-encoding: gzip\r\n", gzip(&text(n))),
        "chunked" => {
            let mut r = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
            for chunk in text(n).chunks(1024) {
                r.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                r.extend_from_slice(chunk);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\n\r\n");
            r
        }
        _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
    }
}

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("gunzip");
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .expect("unbrotli");
        }
        "zstd" => out = zstd::stream::decode_all(body).expect("unzstd"),
        other => panic!("unexpected encoding {other:?}"),
    }
    out
}

/// `GET path` with `Accept-Encoding: accept`; returns (status, content-encoding, vary, body as
/// received, not decoded).
async fn fetch(port: u16, path: &str, accept: &str) -> (u16, String, String, Vec<u8>) {
    let r = client()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .header("accept-encoding", accept)
        .send()
        .await
        .expect("request");
    let header = |n: &str| {
        r.headers()
            .get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (status, ce, vary) = (
        r.status().as_u16(),
        header("content-encoding"),
        header("vary"),
    );
    let body = r.bytes().await.expect("body").to_vec();
    (status, ce, vary, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn compression_is_negotiated_per_algorithm() {
    let up = RawUpstream::start().await;
    let port = free_port();
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  raw: {{ targets: ["{up}"] }}
routes:
  - name: all
    match: {{ path_prefix: / }}
    upstream: raw
    plugins:
      - compression: {{ algorithms: [br, zstd, gzip], levels: {{ gzip: 9, br: 5 }}, min_size: 1KiB }}
"#,
            up = up.addr
        ),
    ));
    let cases = [
        ("gzip", "gzip"),
        ("gzip, deflate, br", "br"),
        ("br;q=1, gzip;q=0.5", "br"),
        ("br;q=0.2, gzip;q=0.5", "gzip"),
        ("gzip;q=0.5, zstd", "zstd"),
        ("*", "br"),
        ("br;q=0, *;q=0.5", "zstd"),
        ("identity", ""),
        ("gzip;q=0, identity", ""),
    ];
    let want = text(8192);
    for (accept, encoding) in cases {
        for path in ["/text/8192", "/chunked/8192"] {
            let (status, ce, vary, body) = fetch(port, path, accept).await;
            assert_eq!(status, 200, "{accept} {path}");
            assert_eq!(ce, encoding, "{accept} {path}");
            assert!(
                vary.to_ascii_lowercase().contains("accept-encoding"),
                "{accept} {path}: vary {vary:?}"
            );
            let plain = if encoding.is_empty() {
                body
            } else {
                decode(encoding, &body)
            };
            assert_eq!(plain, want, "{accept} {path}: decoded body differs");
        }
    }
    // JSON is in the default types too, and the strong ETag is weakened once encoded.
    let r = client()
        .get(format!("http://127.0.0.1:{port}/json/4096"))
        .header("accept-encoding", "zstd")
        .send()
        .await
        .expect("req");
    assert_eq!(r.headers()["content-encoding"], "zstd");
    assert_eq!(r.headers()["etag"], "W/\"v1\"");
    assert!(r.headers().get("content-length").is_none());
    // Counted per coding (gzip 2 cases, br 3, zstd 2, each on two paths, plus the JSON one).
    let metrics = metrics_text(&m).await;
    for (coding, n) in [("gzip", 4), ("br", 6), ("zstd", 5)] {
        let line = format!(
            "meridian_compression_responses_total{{algorithm=\"{coding}\",route=\"all\"}} {n}"
        );
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
}

async fn metrics_text(m: &Meridian) -> String {
    client()
        .get(format!("{}/metrics", m.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body")
}

#[tokio::test(flavor = "multi_thread")]
async fn compression_skips_small_precompressed_and_encoded_bodies() {
    let up = RawUpstream::start().await;
    let port = free_port();
    let _m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  raw: {{ targets: ["{up}"] }}
plugins:
  - compression: {{ min_size: 2KiB }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: raw }}
"#,
            up = up.addr
        ),
    ));
    // Below min_size: untouched.
    let (status, ce, _, body) = fetch(port, "/text/2047", "gzip, br, zstd").await;
    assert_eq!((status, ce.as_str(), body), (200, "", text(2047)));
    // At min_size: compressed.
    let (_, ce, _, _) = fetch(port, "/text/2048", "gzip").await;
    assert_eq!(ce, "gzip");
    // An already-compressed type.
    let (_, ce, vary, body) = fetch(port, "/jpeg/8192", "gzip, br, zstd").await;
    assert_eq!((ce.as_str(), body), ("", text(8192)));
    assert!(!vary.contains("accept-encoding"), "{vary}");
    // Already encoded by the upstream: passed through as it is, whatever the client prefers.
    let (_, ce, _, body) = fetch(port, "/gzipped/8192", "br, gzip").await;
    assert_eq!(ce, "gzip");
    assert_eq!(decode("gzip", &body), text(8192));
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_is_answered_at_the_edge() {
    let up = Upstream::start("api").await;
    let port = free_port();
    let _m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  api: {{ targets: ["{up}"] }}
routes:
  - name: api
    match: {{ path_prefix: / }}
    upstream: api
    plugins:
      - cors:
          allow_origins: ["https://app.example.com", "https://*.example.org"]
          allow_methods: [GET, PUT]
          allow_headers: [authorization, x-trace]
          expose_headers: [x-upstream]
          allow_credentials: true
          max_age: 10m
"#,
            up = up.addr
        ),
    ));
    let c = client();
    let url = format!("http://127.0.0.1:{port}/items");
    let preflight = |origin: &'static str, method: &'static str, headers: &'static str| {
        c.request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
    };
    let r = preflight("https://app.example.com", "PUT", "Authorization, X-Trace")
        .await
        .expect("preflight");
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-allow-methods"], "GET, PUT");
    assert_eq!(h["access-control-allow-headers"], "authorization, x-trace");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h["vary"].to_str().unwrap_or("").contains("origin"));
    // A subdomain pattern; the apex is not covered by it.
    let r = preflight("https://eu.shop.example.org", "GET", "x-trace")
        .await
        .expect("preflight");
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://eu.shop.example.org"
    );
    for (origin, method, headers) in [
        ("https://evil.example.com", "PUT", "x-trace"),
        ("https://example.org", "GET", "x-trace"),
        ("https://app.example.com", "DELETE", "x-trace"),
        ("https://app.example.com", "PUT", "x-secret"),
    ] {
        let r = preflight(origin, method, headers).await.expect("preflight");
        assert_eq!(r.status(), 403, "{origin} {method} {headers}");
        assert!(r.headers().get("access-control-allow-origin").is_none());
    }
    assert_eq!(up.hits(), 0, "no preflight may reach the upstream");

    // Actual requests: the origin is echoed (credentials never get `*`).
    let r = c
        .get(&url)
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert_eq!(r.headers()["access-control-expose-headers"], "x-upstream");
    assert_eq!(r.headers()["vary"], "origin");
    let r = c
        .get(&url)
        .header("origin", "https://evil.test")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert_eq!(r.headers()["vary"], "origin");
    // A plain OPTIONS (no preflight headers) is the upstream's business.
    let r = c
        .request(reqwest::Method::OPTIONS, &url)
        .send()
        .await
        .expect("options");
    assert_eq!(r.status(), 200);
    assert_eq!(up.hits(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_headers_reach_a_413_and_size_limits_apply() {
    let up = Upstream::start("api").await;
    let raw_up = RawUpstream::start().await;
    let port = free_port();
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  api: {{ targets: ["{up}"] }}
  raw: {{ targets: ["{raw}"] }}
plugins:
  - cors: {{ allow_origins: ["*"] }}
  - size_limit: {{ request_body: 1KiB }}
routes:
  - name: big
    match: {{ path_prefix: /text/ }}
    upstream: raw
    plugins:
      - size_limit: {{ request_body: 1KiB, response_body: 4KiB }}
  - name: chunked
    match: {{ path_prefix: /chunked/ }}
    upstream: raw
    plugins:
      - size_limit: {{ response_body: 4KiB }}
  - {{ name: api, match: {{ path_prefix: / }}, upstream: api }}
"#,
            up = up.addr,
            raw = raw_up.addr
        ),
    ));
    let c = client();
    let url = format!("http://127.0.0.1:{port}/upload");
    // Declared too large: 413 from the plugin, with the CORS headers of the plugin before it.
    let r = c
        .post(&url)
        .header("origin", "https://app.test")
        .body(vec![b'x'; 1025])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.text().await.expect("body"), "request body too large\n");
    assert_eq!(up.hits(), 0);
    let r = c
        .post(&url)
        .body(vec![b'x'; 1024])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(up.hits(), 1);

    // Streamed (chunked) bodies are counted as they arrive.
    let addr = format!("127.0.0.1:{port}");
    let chunked = |total: usize| {
        let mut req = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        for _ in 0..total / 512 {
            req.extend_from_slice(b"200\r\n");
            req.extend_from_slice(&[b'y'; 512]);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        req
    };
    assert_eq!(status_of(&raw(&addr, &chunked(1024))), 200);
    assert_eq!(up.hits(), 2);
    assert_eq!(status_of(&raw(&addr, &chunked(4096))), 413);
    assert_eq!(
        up.hits(),
        2,
        "an oversized streamed body must not be delivered"
    );

    // Responses: a declared length over the limit is a 502 before anything is sent.
    let r = c
        .get(format!("http://127.0.0.1:{port}/text/4096"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("body").len(), 4096);
    let r = c
        .get(format!("http://127.0.0.1:{port}/text/4097"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 502);
    // Streamed over the limit: never delivered whole (a 502, or a cut connection once the
    // header went out).
    let r = c
        .get(format!("http://127.0.0.1:{port}/chunked/3072"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.bytes().await.expect("body").len(), 3072);
    let got = match c
        .get(format!("http://127.0.0.1:{port}/chunked/16384"))
        .send()
        .await
    {
        Ok(r) if r.status() == 502 => None,
        Ok(r) => Some(r.bytes().await.map(|b| b.len())),
        Err(_) => None,
    };
    assert!(
        matches!(got, None | Some(Err(_))),
        "oversized streamed response was delivered: {got:?}"
    );
    let metrics = metrics_text(&m).await;
    for line in [
        "meridian_size_limit_refused_total{direction=\"request\",route=\"api\"} 1",
        "meridian_size_limit_refused_total{direction=\"response\",route=\"big\"} 1",
        "meridian_size_limit_refused_total{direction=\"response\",route=\"chunked\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn header_rules_edit_requests_and_responses() {
    let up = Upstream::start("api").await;
    let port = free_port();
    let _m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  api: {{ targets: ["{up}"] }}
routes:
  - name: api
    match: {{ path_prefix: / }}
    upstream: api
    plugins:
      - headers:
          request: {{ set: {{ x-env: prod }}, add: {{ x-tag: 2 }}, remove: [x-drop] }}
          response: {{ set: {{ x-served-by: meridian }}, add: {{ x-tag: b }}, remove: [x-upstream] }}
"#,
            up = up.addr
        ),
    ));
    let r = client()
        .get(format!("http://127.0.0.1:{port}/h"))
        .header("x-env", "dev")
        .header("x-tag", "1")
        .header("x-drop", "secret")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-served-by"], "meridian");
    assert_eq!(r.headers()["x-tag"], "b");
    assert!(r.headers().get("x-upstream").is_none());
    let seen = up.last().expect("upstream saw the request");
    assert_eq!(seen.headers["x-env"], "prod");
    assert_eq!(seen.headers["x-tag"], "1, 2");
    assert!(!seen.headers.contains_key("x-drop"));
}

#[test]
fn bad_plugin_settings_are_reported_at_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "cors: { allow_origins: [\"https://ok.test\", \"ftp:/nope\"] }",
            "plugin cors.allow_origins[1]:",
        ),
        (
            "compression: { types: [text/*, image/png] }",
            "plugin compression.types[1]:",
        ),
        (
            "compression: { levels: { br: 12 } }",
            "plugin compression.levels.br:",
        ),
        (
            "size_limit: { request_body: 10 parsecs }",
            "plugin size_limit.request_body:",
        ),
        (
            "headers: { response: { set: { \"bad name\": x } } }",
            "plugin headers.response.set.bad name:",
        ),
    ];
    for (plugin, want) in cases {
        let err = check_fails(dir.path(), "bad.yaml", &format!(
                "listeners: [ {{ name: a, address: \"127.0.0.1:1\" }} ]\nupstreams:\n  u: {{ targets: [\"127.0.0.1:2\"] }}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    plugins:\n      - {plugin}\n"
            ));
        assert!(
            err.lines()
                .any(|l| l.contains("bad.yaml:9:") && l.contains(want)),
            "{plugin}: expected {want:?} at line 9:\n{err}"
        );
    }
}
