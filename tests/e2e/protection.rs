//! Protection cases as data: a raw request over TCP → the status Meridian answers, and
//! whether the upstream saw it.

use std::io::{Read, Write};
use std::time::Duration;

use crate::harness::*;

struct Case {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
}

fn case(name: &'static str, request: impl Into<Vec<u8>>, status: u16) -> Case {
    Case {
        name,
        request: request.into(),
        status,
    }
}

fn many_headers(n: usize) -> Vec<u8> {
    let mut r = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..n {
        r.push_str(&format!("X-H{i}: v\r\n"));
    }
    r.push_str("Connection: close\r\n\r\n");
    r.into_bytes()
}

fn cases() -> Vec<Case> {
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "a".repeat(9000)
    );
    vec![
        case("plain GET passes", "GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 200),
        case("99 headers pass", many_headers(97), 200),
        case("101 headers → 431", many_headers(100), 431),
        case("a 70 KiB header → 431", big_header, 431),
        case("a 9000-byte URI → 414", long_uri, 414),
        case(
            "declared body over the limit → 413",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n",
            413,
        ),
        case(
            "chunked body over the limit → 413",
            format!("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n7d0\r\n{}\r\n0\r\n\r\n", "b".repeat(2000)),
            413,
        ),
        case(
            "CL + TE → 400",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        case(
            "duplicate Content-Length → 400",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
            400,
        ),
        case(
            "comma-joined Content-Length → 400",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4, 4\r\n\r\nabcd",
            400,
        ),
        case(
            "invalid chunk size → 400",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            400,
        ),
        case(
            "TE other than chunked → 400",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        case("obs-fold → 400", "GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\nConnection: close\r\n\r\n", 400),
        case("bare LF → 400", "GET / HTTP/1.1\nHost: t\nConnection: close\n\n", 400),
        case("space in header name → 400", "GET / HTTP/1.1\r\nHost: t\r\nX A: b\r\n\r\n", 400),
        case("garbage request line → 400", "HELLO\r\n\r\n", 400),
        case("NUL in path → 400", "GET /a%00b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 400),
        case("bad percent escape → 400", "GET /a%zz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 400),
        case("denied client CIDR → 403", "GET /private HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 403),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn protection_table() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let _m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
limits: {{ max_body: 1KiB }}
upstreams:
  up: {{ targets: ["{up}"] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: up }}
  - {{ name: private, match: {{ path_prefix: /private }}, upstream: up, access: {{ allow: [10.0.0.0/8] }} }}
"#,
            up = up.addr
        ),
    ));
    let addr = format!("127.0.0.1:{port}");
    let mut failures = Vec::new();
    for c in cases() {
        let before = up.hits();
        let resp = raw(&addr, &c.request);
        let got = status_of(&resp);
        let reached = up.hits() > before;
        if got != c.status {
            failures.push(format!(
                "{}: want {}, got {got}: {:.120}",
                c.name, c.status, resp
            ));
        } else if c.status >= 400 && reached {
            failures.push(format!("{}: refused but the upstream saw it", c.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Requests pipelined in one write are all answered, in order, on the one connection.
#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let _m = Meridian::start(&one_route_to(port, up.addr));
    let request = |path: &str, close: bool| {
        let connection = if close { "Connection: close\r\n" } else { "" };
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{connection}\r\n")
    };
    let pipelined = [
        request("/p/1", false),
        request("/p/2", false),
        request("/p/3", true),
    ]
    .concat();
    let resp = raw(&format!("127.0.0.1:{port}"), pipelined.as_bytes());
    assert_eq!(resp.matches("HTTP/1.1 200").count(), 3, "{resp}");
    let at = |p: &str| resp.find(&format!("\"uri\":\"{p}\"")).unwrap_or(usize::MAX);
    assert!(
        at("/p/1") < at("/p/2") && at("/p/2") < at("/p/3") && at("/p/3") < usize::MAX,
        "{resp}"
    );
    assert_eq!(up.hits(), 3);

    // The next request arrives while the first is being proxied (the upstream is slow).
    up.set_delay(Duration::from_millis(300));
    let mut conn = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    conn.write_all(request("/q/1", false).as_bytes())
        .expect("send");
    assert!(
        wait_until(Duration::from_secs(5), || up.hits() == 4),
        "the first request never reached the upstream"
    );
    conn.write_all(request("/q/2", true).as_bytes())
        .expect("send");
    let mut resp = String::new();
    conn.read_to_string(&mut resp).expect("read");
    assert_eq!(resp.matches("HTTP/1.1 200").count(), 2, "{resp}");
    assert!(resp.find("/q/1") < resp.find("/q/2"), "{resp}");
}

/// An HTTP/1.0 request may come without `Host`; it goes upstream as HTTP/1.1, which needs one:
/// the target's authority, as nginx sends its `$proxy_host`. One with `Host` keeps it.
#[tokio::test(flavor = "multi_thread")]
async fn an_http10_request_without_host_gets_the_targets_authority() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let _m = Meridian::start(&one_route_to(port, up.addr));
    let addr = format!("127.0.0.1:{port}");
    let resp = raw(&addr, b"GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = up.last().expect("the upstream saw it");
    assert_eq!(seen.headers.get("host"), Some(&up.addr.to_string()));

    let resp = raw(&addr, b"GET /old HTTP/1.0\r\nHost: site.example\r\n\r\n");
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = up.last().expect("the upstream saw it");
    assert_eq!(
        seen.headers.get("host").map(String::as_str),
        Some("site.example")
    );
}
