//! The CDN edge: routes with `cache:` through a real `meridian` and a scripted origin —
//! RFC 9111 freshness, Cache-Status, coalescing, stale serving, ranges, purge, disk restart, and
//! fills from chunked and close-delimited origins on a one-thread edge.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpListener;

use crate::harness::*;

/// Response headers of a test case.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// A canned answer of the origin for one path.
#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

fn canned(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Canned {
    Canned {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.into(),
    }
}

/// The scripted origin: answers each path with its canned response (404 when none), counts
/// requests per path, answers `If-None-Match` matching the canned `ETag` with 304, and can
/// be slowed down. A body containing `{lang}` gets the request's `Accept-Language`.
#[derive(Default)]
struct OriginState {
    canned: Mutex<HashMap<String, Canned>>,
    hits: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
    delay_ms: AtomicU64,
    last_headers: Mutex<HashMap<String, http::HeaderMap>>,
}

struct Origin {
    addr: std::net::SocketAddr,
    state: Arc<OriginState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(OriginState::default());
        let st = state.clone();
        let task = serve_http(listener, move |req| answer(st.clone(), req));
        Origin { addr, state, task }
    }

    fn set(&self, path: &str, c: Canned) {
        self.state
            .canned
            .lock()
            .expect("lock")
            .insert(path.to_string(), c);
    }

    fn hits(&self, path: &str) -> usize {
        *self
            .state
            .hits
            .lock()
            .expect("lock")
            .get(path)
            .unwrap_or(&0)
    }

    fn last_headers(&self, path: &str) -> http::HeaderMap {
        self.state
            .last_headers
            .lock()
            .expect("lock")
            .get(path)
            .cloned()
            .unwrap_or_default()
    }
}

async fn answer(
    st: Arc<OriginState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    *st.hits
        .lock()
        .expect("lock")
        .entry(path.clone())
        .or_insert(0) += 1;
    st.total.fetch_add(1, Ordering::SeqCst);
    st.last_headers
        .lock()
        .expect("lock")
        .insert(path.clone(), req.headers().clone());
    let delay = st.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let c = st.canned.lock().expect("lock").get(&path).cloned();
    let Some(c) = c else {
        return Ok(Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"no such path\n")))
            .expect("resp"));
    };
    let etag = c
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("etag"))
        .map(|(_, v)| v.clone());
    let inm = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok());
    let not_modified = etag.is_some() && inm == etag.as_deref();
    let mut b = Response::builder().status(if not_modified { 304 } else { c.status });
    for (k, v) in &c.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let body = if not_modified {
        Bytes::new()
    } else if c.body.windows(6).any(|w| w == b"{lang}") {
        let lang = req
            .headers()
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        Bytes::from(String::from_utf8_lossy(&c.body).replace("{lang}", lang))
    } else {
        c.body.clone()
    };
    Ok(b.body(Full::new(body)).expect("resp"))
}

/// An edge in front of `origin` with one cached route for every path; `route_cache` is the
/// route's `cache:` mapping, `storage` the top-level one.
fn edge_config(port: u16, origin: &Origin, storage: &str, route_cache: &str) -> String {
    with_listener(
        port,
        &format!(
            "cache: {storage}\nupstreams: {{ origin: {{ targets: [\"{}\"] }} }}\nroutes:\n  - name: edge\n    match: {{ path_prefix: / }}\n    upstream: origin\n    cache: {route_cache}\n",
            origin.addr
        ),
    )
}

fn start_edge(origin: &Origin, route_cache: &str) -> (Meridian, u16) {
    let port = free_port();
    let m = Meridian::start(&edge_config(port, origin, "{ memory: 16MiB }", route_cache));
    (m, port)
}

/// GET `path` with extra headers; returns status, Cache-Status, Age and the body.
async fn get(
    c: &reqwest::Client,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Option<String>, Bytes) {
    let mut req = c.get(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let cs = resp
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let age = resp
        .headers()
        .get("age")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.expect("body");
    (status, cs, age, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_age_miss_hit_and_expiry() {
    let origin = Origin::start().await;
    origin.set(
        "/a",
        // Three seconds: `Date` has one-second granularity, and a loaded CI machine must still
        // get its second request in while the object is fresh.
        canned(200, &[("cache-control", "max-age=3")], "alpha"),
    );
    let (_m, port) = start_edge(&origin, "{}");
    let c = client();
    let (s, cs, _, body) = get(&c, port, "/a", &[]).await;
    assert_eq!((s, body.as_ref()), (200, &b"alpha"[..]));
    assert_eq!(cs, "meridian; fwd=uri-miss; stored");
    let (_, cs, age, body) = get(&c, port, "/a", &[]).await;
    assert!(cs.starts_with("meridian; hit; ttl="), "{cs}");
    assert!(age.is_some(), "a hit carries Age");
    assert_eq!(body.as_ref(), b"alpha");
    assert_eq!(origin.hits("/a"), 1);
    // After three seconds the object is stale and goes forward again.
    let mut last = String::new();
    let expired = wait_until(Duration::from_secs(8), || {
        let c = c.clone();
        let (_, cs, _, _) = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(get(&c, port, "/a", &[]))
        });
        last = cs;
        last.contains("fwd=stale")
    });
    assert!(expired, "never expired: {last}");
    assert_eq!(origin.hits("/a"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rfc_directives_decide_what_is_stored() {
    let origin = Origin::start().await;
    let cases: &[(&str, Headers, bool)] = &[
        (
            "/s-maxage",
            &[("cache-control", "max-age=0, s-maxage=60")],
            true,
        ),
        (
            "/cdn-wins",
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=60"),
            ],
            true,
        ),
        (
            "/cdn-no-store",
            &[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "no-store"),
            ],
            false,
        ),
        (
            "/no-store",
            &[("cache-control", "no-store, max-age=60")],
            false,
        ),
        (
            "/private",
            &[("cache-control", "private, max-age=60")],
            false,
        ),
        (
            "/set-cookie",
            &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
            false,
        ),
        (
            "/expires",
            &[("expires", "Thu, 01 Jan 2099 00:00:00 GMT")],
            true,
        ),
        ("/nothing", &[], false),
    ];
    for (path, headers, _) in cases {
        origin.set(path, canned(200, headers, "x"));
    }
    let (_m, port) = start_edge(&origin, "{}");
    let c = client();
    for (path, _, stored) in cases {
        let (s1, cs1, _, _) = get(&c, port, path, &[]).await;
        let (s2, cs2, _, _) = get(&c, port, path, &[]).await;
        assert_eq!((s1, s2), (200, 200), "{path}");
        let want_hits = if *stored { 1 } else { 2 };
        assert_eq!(origin.hits(path), want_hits, "{path}: {cs1} / {cs2}");
        if *stored {
            assert!(cs2.contains("; hit"), "{path}: {cs2}");
        } else {
            assert!(
                cs1.contains("fwd=uri-miss") && !cs1.contains("stored"),
                "{path}: {cs1}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etag_revalidation_merges_the_304() {
    let origin = Origin::start().await;
    origin.set(
        "/e",
        canned(
            200,
            &[
                ("cache-control", "no-cache"),
                ("etag", "\"v1\""),
                ("x-kept", "yes"),
            ],
            "entity",
        ),
    );
    let (_m, port) = start_edge(&origin, "{}");
    let c = client();
    let (_, cs, _, _) = get(&c, port, "/e", &[]).await;
    assert_eq!(cs, "meridian; fwd=uri-miss; stored");
    // no-cache: stored but revalidated on every use; the origin answers 304.
    origin.set(
        "/e",
        canned(
            200,
            &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
            "changed-but-304",
        ),
    );
    let resp = c
        .get(format!("http://127.0.0.1:{port}/e"))
        .send()
        .await
        .expect("request");
    let cs = resp.headers()["cache-status"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(cs.contains("fwd=stale; fwd-status=304"), "{cs}");
    assert_eq!(resp.headers()["x-kept"], "yes", "stored headers kept");
    assert_eq!(resp.bytes().await.expect("body").as_ref(), b"entity");
    assert_eq!(origin.last_headers("/e")["if-none-match"], "\"v1\"");
    // The 304's Cache-Control was merged: the object is now fresh.
    let (_, cs, _, body) = get(&c, port, "/e", &[]).await;
    assert!(cs.contains("; hit"), "{cs}");
    assert_eq!(body.as_ref(), b"entity");
    assert_eq!(origin.hits("/e"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vary_keeps_variants_apart() {
    let origin = Origin::start().await;
    origin.set(
        "/v",
        canned(
            200,
            &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
            "lang={lang}",
        ),
    );
    origin.set(
        "/v-other",
        canned(
            200,
            &[("cache-control", "max-age=60"), ("vary", "User-Agent")],
            "x",
        ),
    );
    let (_m, port) = start_edge(&origin, "{ vary: [accept-language] }");
    let c = client();
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    assert_eq!(get(&c, port, "/v", &en).await.3.as_ref(), b"lang=en");
    assert_eq!(get(&c, port, "/v", &fr).await.3.as_ref(), b"lang=fr");
    let (_, cs, _, body) = get(&c, port, "/v", &en).await;
    assert!(cs.contains("; hit"), "{cs}");
    assert_eq!(body.as_ref(), b"lang=en");
    let (_, cs, _, body) = get(&c, port, "/v", &fr).await;
    assert!(cs.contains("; hit"), "{cs}");
    assert_eq!(body.as_ref(), b"lang=fr");
    assert_eq!(origin.hits("/v"), 2);
    // Varying on a header the route does not allow: not stored.
    let (_, cs, _, _) = get(&c, port, "/v-other", &[]).await;
    assert!(cs.contains("detail=vary"), "{cs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negative_responses_use_negative_ttl() {
    let origin = Origin::start().await;
    origin.set("/gone", canned(410, &[], "gone"));
    let (m, port) = start_edge(&origin, "{ negative_ttl: 30s }");
    let c = client();
    assert_eq!(get(&c, port, "/gone", &[]).await.0, 410);
    let (s, cs, _, _) = get(&c, port, "/gone", &[]).await;
    assert_eq!(s, 410);
    assert!(cs.contains("; hit; ttl="), "{cs}");
    assert_eq!(origin.hits("/gone"), 1);
    let metrics = c
        .get(format!("{}/metrics", m.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        "meridian_cache_requests_total{result=\"hit\"} 1",
        "meridian_cache_requests_total{result=\"miss\"} 1",
        "meridian_cache_response_bytes_total{source=\"cache\"} 4",
        "meridian_cache_response_bytes_total{source=\"origin\"} 4",
        "meridian_cache_storage_objects{tier=\"memory\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsafe_methods_invalidate_and_unkeyed_headers_do_not_reach_the_origin() {
    let origin = Origin::start().await;
    origin.set(
        "/doc",
        canned(200, &[("cache-control", "max-age=60")], "doc"),
    );
    let (_m, port) = start_edge(&origin, "{}");
    let c = client();
    get(&c, port, "/doc", &[("x-forwarded-host", "evil.example")]).await;
    // Meridian sets its own X-Forwarded-Host; the client's never reaches the origin.
    assert_ne!(
        origin
            .last_headers("/doc")
            .get("x-forwarded-host")
            .map(|v| v.as_bytes()),
        Some(&b"evil.example"[..]),
        "an unkeyed header reached the origin"
    );
    assert!(get(&c, port, "/doc", &[]).await.1.contains("; hit"));
    let post = c
        .post(format!("http://127.0.0.1:{port}/doc"))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), 200);
    assert_eq!(
        post.headers()["cache-status"],
        "meridian; fwd=bypass; detail=method"
    );
    let (_, cs, _, _) = get(&c, port, "/doc", &[]).await;
    assert!(cs.contains("fwd=uri-miss"), "{cs}");
    assert_eq!(origin.hits("/doc"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_misses_make_one_origin_request() {
    let origin = Origin::start().await;
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    origin.set(
        "/seg.ts",
        canned(200, &[("cache-control", "max-age=60")], body.clone()),
    );
    origin.state.delay_ms.store(300, Ordering::SeqCst);
    let (_m, port) = start_edge(&origin, "{}");
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let n = 1000;
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let c = c.clone();
        tasks.push(tokio::spawn(
            async move { get(&c, port, "/seg.ts", &[]).await },
        ));
    }
    let mut collapsed = 0;
    for t in tasks {
        let (s, cs, _, b) = t.await.expect("task");
        assert_eq!(s, 200);
        assert_eq!(b.as_ref(), &body[..], "identical bodies");
        if cs.contains("collapsed") {
            collapsed += 1;
        }
    }
    assert_eq!(
        origin.hits("/seg.ts"),
        1,
        "one origin request for {n} clients"
    );
    assert!(collapsed > 0, "some requests waited for the fill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_while_revalidate_refreshes_once() {
    let origin = Origin::start().await;
    origin.set(
        "/swr",
        canned(
            200,
            &[("cache-control", "max-age=1, stale-while-revalidate=60")],
            "v1",
        ),
    );
    let (_m, port) = start_edge(&origin, "{}");
    let c = client();
    get(&c, port, "/swr", &[]).await;
    origin.set(
        "/swr",
        canned(200, &[("cache-control", "max-age=60")], "v2"),
    );
    origin.state.delay_ms.store(200, Ordering::SeqCst);
    // Wait for expiry by the clock (no request: each would be a refresh).
    let expired_at = std::time::Instant::now() + Duration::from_millis(2100);
    assert!(wait_until(
        Duration::from_secs(3),
        || std::time::Instant::now() >= expired_at
    ));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let c = c.clone();
        tasks.push(tokio::spawn(
            async move { get(&c, port, "/swr", &[]).await },
        ));
    }
    for t in tasks {
        let (s, cs, _, body) = t.await.expect("task");
        assert_eq!(s, 200);
        assert_eq!(body.as_ref(), b"v1", "stale served at once: {cs}");
        assert!(cs.contains("stale-while-revalidate"), "{cs}");
    }
    let refreshed = wait_until(Duration::from_secs(3), || origin.hits("/swr") == 2);
    assert!(refreshed, "one background refresh");
    let fresh = wait_until(Duration::from_secs(3), || {
        let c = c.clone();
        let (_, _, _, b) = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(get(&c, port, "/swr", &[]))
        });
        b.as_ref() == b"v2"
    });
    assert!(fresh);
    assert_eq!(origin.hits("/swr"), 2, "exactly one refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_if_error_serves_stale_when_the_origin_fails() {
    let origin = Origin::start().await;
    origin.set(
        "/sie",
        canned(200, &[("cache-control", "max-age=1")], "good"),
    );
    let (_m, port) = start_edge(&origin, "{ stale_if_error: 60s }");
    let c = client();
    get(&c, port, "/sie", &[]).await;
    origin.set("/sie", canned(503, &[], "broken"));
    let expired_at = std::time::Instant::now() + Duration::from_millis(2100);
    assert!(wait_until(
        Duration::from_secs(3),
        || std::time::Instant::now() >= expired_at
    ));
    let (s, cs, _, body) = get(&c, port, "/sie", &[]).await;
    assert_eq!((s, body.as_ref()), (200, &b"good"[..]), "{cs}");
    assert!(cs.contains("stale-if-error"), "{cs}");
    assert_eq!(origin.hits("/sie"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_of_the_edge_itself_carry_cache_status() {
    // An origin that is not listening: the edge answers 502 itself, and RFC 9211 still wants
    // a Cache-Status saying the request went forward and why nothing was served.
    let port = free_port();
    let dead = free_port();
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            "cache: {{ memory: 16MiB }}\nupstreams: {{ origin: {{ targets: [\"127.0.0.1:{dead}\"], outlier: off }} }}\nroutes:\n  - name: edge\n    match: {{ path_prefix: / }}\n    upstream: origin\n    cache: {{}}\n"
        ),
    ));
    let c = client();
    let (s, cs, _, _) = get(&c, port, "/down", &[]).await;
    assert_eq!(s, 502, "{cs}");
    assert!(cs.starts_with("meridian; fwd=uri-miss"), "{cs}");
    assert!(cs.contains("detail=origin-error"), "{cs}");
    assert!(!cs.contains("stored"), "{cs}");
    drop(m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranges_are_cut_from_one_full_fill() {
    let origin = Origin::start().await;
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    origin.set(
        "/big",
        canned(200, &[("cache-control", "max-age=60")], body.clone()),
    );
    let (_m, port) = start_edge(&origin, "{}");
    let c = client();
    let (s, _, _, part) = get(&c, port, "/big", &[("range", "bytes=10-19")]).await;
    assert_eq!(s, 206);
    assert_eq!(part.as_ref(), &body[10..20]);
    assert!(
        !origin.last_headers("/big").contains_key("range"),
        "fill without Range"
    );
    let (s, cs, _, part) = get(&c, port, "/big", &[("range", "bytes=99990-")]).await;
    assert_eq!(s, 206);
    assert!(cs.contains("; hit"), "{cs}");
    assert_eq!(part.as_ref(), &body[99990..]);
    let resp = c
        .get(format!("http://127.0.0.1:{port}/big"))
        .header("range", "bytes=0-1,5-6")
        .send()
        .await
        .expect("multi");
    assert_eq!(resp.status(), 206);
    let ct = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(ct.starts_with("multipart/byteranges"), "{ct}");
    let (s, _, _, _) = get(&c, port, "/big", &[("range", "bytes=200000-300000")]).await;
    assert_eq!(s, 416);
    assert_eq!(origin.hits("/big"), 1);
}

async fn purge(m: &Meridian, body: &str) -> serde_json::Value {
    let resp = client()
        .post(format!("{}/admin/cache/purge", m.admin))
        .body(body.to_string())
        .send()
        .await
        .expect("purge");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_by_url_surrogate_key_and_soft() {
    let origin = Origin::start().await;
    for p in ["/p1", "/p2", "/p3"] {
        origin.set(
            p,
            canned(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("surrogate-key", "group"),
                    ("etag", "\"e\""),
                ],
                "x",
            ),
        );
    }
    let (m, port) = start_edge(&origin, "{}");
    let c = client();
    for p in ["/p1", "/p2", "/p3"] {
        get(&c, port, p, &[]).await;
    }
    let v = purge(&m, &format!("{{\"url\": \"http://127.0.0.1:{port}/p1\"}}")).await;
    assert_eq!(v["purged"], 1, "{v}");
    assert!(get(&c, port, "/p1", &[]).await.1.contains("fwd=uri-miss"));
    let v = purge(&m, "{\"surrogate_key\": \"group\", \"soft\": true}").await;
    assert_eq!(v["purged"], 3, "{v}");
    let (_, cs, _, _) = get(&c, port, "/p2", &[]).await;
    assert!(
        cs.contains("fwd=stale; fwd-status=304"),
        "soft purge revalidates: {cs}"
    );
    let v = purge(&m, "{\"surrogate_key\": \"group\"}").await;
    assert!(v["purged"].as_u64().unwrap_or(0) >= 2, "{v}");
    assert!(get(&c, port, "/p3", &[]).await.1.contains("fwd=uri-miss"));
    let bad = client()
        .post(format!("{}/admin/cache/purge", m.admin))
        .body("{\"url\": \"ftp://x/\"}")
        .send()
        .await
        .expect("purge");
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_by_url_reaches_every_vary_variant() {
    let origin = Origin::start().await;
    origin.set(
        "/v",
        canned(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("vary", "Accept-Language"),
                ("etag", "\"e\""),
            ],
            "lang={lang}",
        ),
    );
    let (m, port) = start_edge(&origin, "{ vary: [accept-language] }");
    let c = client();
    let langs = ["en", "fr", "de"];
    let fetch = |lang: &'static str| {
        let c = c.clone();
        async move {
            let (status, cs, _, body) = get(&c, port, "/v", &[("accept-language", lang)]).await;
            assert_eq!(status, 200);
            assert_eq!(body, format!("lang={lang}").as_bytes(), "{cs}");
            cs
        }
    };
    for lang in langs {
        assert!(fetch(lang).await.contains("fwd=uri-miss"));
    }
    for lang in langs {
        assert!(fetch(lang).await.contains("; hit"));
    }
    assert_eq!(origin.hits("/v"), 3);
    let url = format!("{{\"url\": \"http://127.0.0.1:{port}/v\"");

    // Soft purge: every variant is stale and revalidated.
    let v = purge(&m, &format!("{url}, \"soft\": true}}")).await;
    assert_eq!(v["purged"], 3, "{v}");
    for lang in langs {
        let cs = fetch(lang).await;
        assert!(cs.contains("fwd=stale; fwd-status=304"), "{lang}: {cs}");
    }
    assert_eq!(origin.hits("/v"), 6);
    for lang in langs {
        assert!(fetch(lang).await.contains("; hit"));
    }

    // Hard purge: every variant misses.
    let v = purge(&m, &format!("{url}}}")).await;
    assert_eq!(v["purged"], 3, "{v}");
    for lang in langs {
        let cs = fetch(lang).await;
        assert!(cs.contains("fwd=uri-miss"), "{lang}: {cs}");
    }
    assert_eq!(origin.hits("/v"), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disk_tier_survives_a_restart_and_drops_corrupt_objects() {
    let origin = Origin::start().await;
    origin.set(
        "/d1",
        canned(200, &[("cache-control", "max-age=600")], "disk one"),
    );
    origin.set(
        "/d2",
        canned(200, &[("cache-control", "max-age=600")], "disk two"),
    );
    let disk = tempfile::tempdir().expect("tempdir");
    let storage = format!(
        "{{ memory: 1MiB, disk: {{ path: \"{}\", size: 64MiB }} }}",
        disk.path().display()
    );
    let port = free_port();
    let yaml = edge_config(port, &origin, &storage, "{}");
    let c = client();
    {
        let _m = Meridian::start(&yaml);
        get(&c, port, "/d1", &[]).await;
        get(&c, port, "/d2", &[]).await;
    }
    // Corrupt one object file: flip the last byte of the larger body file of /d2.
    let mut files = Vec::new();
    for dir in std::fs::read_dir(disk.path().join("objects")).expect("objects") {
        for f in std::fs::read_dir(dir.expect("dir").path()).expect("files") {
            files.push(f.expect("file").path());
        }
    }
    assert_eq!(files.len(), 2, "{files:?}");
    let victim = files
        .iter()
        .find(|f| std::fs::read(f).is_ok_and(|b| b.ends_with(b"disk two")))
        .expect("the /d2 object file")
        .clone();
    let mut bytes = std::fs::read(&victim).expect("read");
    if let Some(last) = bytes.last_mut() {
        *last ^= 0xff;
    }
    std::fs::write(&victim, bytes).expect("write");
    let _m = Meridian::start(&yaml);
    let (_, cs, _, body) = get(&c, port, "/d1", &[]).await;
    assert!(cs.contains("; hit"), "restored from disk: {cs}");
    assert_eq!(body.as_ref(), b"disk one");
    let (_, cs, _, body) = get(&c, port, "/d2", &[]).await;
    assert!(
        cs.contains("fwd=uri-miss"),
        "corrupt object refetched: {cs}"
    );
    assert_eq!(body.as_ref(), b"disk two");
    assert_eq!((origin.hits("/d1"), origin.hits("/d2")), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversize_objects_are_served_but_not_stored() {
    let origin = Origin::start().await;
    let body = vec![b'z'; 10_000];
    origin.set(
        "/huge",
        canned(200, &[("cache-control", "max-age=60")], body.clone()),
    );
    let (_m, port) = start_edge(&origin, "{ max_object: 1KiB }");
    let c = client();
    for _ in 0..2 {
        let (s, cs, _, b) = get(&c, port, "/huge", &[]).await;
        assert_eq!((s, b.len()), (200, body.len()), "{cs}");
        assert!(cs.contains("fwd=") && !cs.contains("stored"), "{cs}");
    }
    assert_eq!(origin.hits("/huge"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_keeps_the_storage_and_warns_about_size_changes() {
    let origin = Origin::start().await;
    origin.set(
        "/r",
        canned(200, &[("cache-control", "max-age=60")], "kept"),
    );
    let port = free_port();
    let m = Meridian::start(&edge_config(port, &origin, "{ memory: 16MiB }", "{}"));
    let c = client();
    get(&c, port, "/r", &[]).await;
    m.write_config(&edge_config(
        port,
        &origin,
        "{ memory: 32MiB }",
        "{ negative_ttl: 1s }",
    ));
    let resp = c
        .post(format!("{}/admin/reload", m.admin))
        .send()
        .await
        .expect("reload");
    assert_eq!(resp.status(), 200);
    // The file watcher may have reloaded first: the warning is in the log either way.
    let warned = wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&m.stderr).is_ok_and(|e| e.contains("cache storage changes"))
    });
    assert!(warned, "a storage change says it needs a restart");
    let (_, cs, _, body) = get(&c, port, "/r", &[]).await;
    assert!(cs.contains("; hit"), "storage kept across the reload: {cs}");
    assert_eq!(body.as_ref(), b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn age_and_heuristic_freshness() {
    let origin = Origin::start().await;
    origin.set(
        "/aged",
        canned(
            200,
            &[("cache-control", "max-age=60"), ("age", "50")],
            "aged",
        ),
    );
    origin.set(
        "/modified",
        canned(
            200,
            &[("last-modified", "Sat, 01 Jan 2000 00:00:00 GMT")],
            "m",
        ),
    );
    let (_m, port) = start_edge(&origin, "{}");
    let c = client();
    get(&c, port, "/aged", &[]).await;
    let (_, cs, age, _) = get(&c, port, "/aged", &[]).await;
    let age: u64 = age.and_then(|a| a.parse().ok()).expect("Age on a hit");
    assert!(age >= 50, "the origin's Age counts: {age}");
    let ttl: i64 = cs
        .rsplit("ttl=")
        .next()
        .and_then(|t| t.parse().ok())
        .expect("ttl");
    assert!(ttl <= 10, "freshness left is max-age minus Age: {cs}");
    // No Cache-Control, Last-Modified years ago: 10% of its age, capped at one day.
    get(&c, port, "/modified", &[]).await;
    let (_, cs, _, _) = get(&c, port, "/modified", &[]).await;
    assert!(cs.contains("; hit; ttl=8639"), "{cs}");
    // HEAD is answered from the same object.
    let head = c
        .head(format!("http://127.0.0.1:{port}/modified"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    assert!(head.headers()["cache-status"]
        .to_str()
        .expect("ascii")
        .contains("; hit"));
    assert_eq!(origin.hits("/modified"), 1);
}

/// How [`FramedOrigin`] delimits its bodies.
#[derive(Clone, Copy, Debug)]
enum Framing {
    /// `HTTP/1.1` with `Transfer-Encoding: chunked`, one chunk per part; the connection stays.
    Chunked,
    /// `HTTP/1.0` without a length: the body ends when the origin closes the connection.
    CloseDelimited,
}

/// Parts a [`FramedOrigin`] body is written in.
const FRAMED_PARTS: usize = 4;

/// A hand-written HTTP/1 origin for the body framings hyper does not use for a whole body.
/// Every path but `/probe` gets `Cache-Control: max-age=3600` and `body`, in [`FRAMED_PARTS`]
/// writes; the writes after the first wait until `release` is open (it is open unless a test
/// holds it). `/probe` gets an uncacheable `ok` with a Content-Length.
struct FramedOrigin {
    addr: std::net::SocketAddr,
    /// The paths requested, in order.
    seen: Arc<Mutex<Vec<String>>>,
    release: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FramedOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FramedOrigin {
    async fn start(framing: Framing, body: Bytes, open: bool) -> FramedOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (release, gate) = tokio::sync::watch::channel(open);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let connection =
                    serve_framed(stream, framing, body.clone(), log.clone(), gate.clone());
                tokio::spawn(connection);
            }
        });
        FramedOrigin {
            addr,
            seen,
            release,
            task,
        }
    }

    /// Requests for `path` so far.
    fn hits(&self, path: &str) -> usize {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

/// One origin connection: up to 100 requests, each head read whole (≤ 64 KiB) and answered.
async fn serve_framed(
    mut stream: tokio::net::TcpStream,
    framing: Framing,
    body: Bytes,
    seen: Arc<Mutex<Vec<String>>>,
    mut gate: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    for _ in 0..100 {
        let head_end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut more = [0u8; 4096];
            match stream.read(&mut more).await {
                Ok(n) if n > 0 && buf.len() < 64 * 1024 => buf.extend_from_slice(&more[..n]),
                _ => return,
            }
        };
        let head: Vec<u8> = buf.drain(..head_end).collect();
        let path = String::from_utf8_lossy(&head)
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_string();
        seen.lock().expect("lock").push(path.clone());
        if path == "/probe" {
            let probe =
                b"HTTP/1.1 200 OK\r\ncache-control: no-store\r\ncontent-length: 3\r\n\r\nok\n";
            if stream.write_all(probe).await.is_err() {
                return;
            }
            continue;
        }
        let head: &[u8] = match framing {
            Framing::Chunked => b"HTTP/1.1 200 OK\r\ncache-control: max-age=3600\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n",
            Framing::CloseDelimited => b"HTTP/1.0 200 OK\r\ncache-control: max-age=3600\r\ncontent-type: application/octet-stream\r\n\r\n",
        };
        if stream.write_all(head).await.is_err() {
            return;
        }
        for (n, part) in body.chunks(body.len().div_ceil(FRAMED_PARTS)).enumerate() {
            if n == 1 {
                // Bounded: a test that holds the body releases it within seconds.
                let opened =
                    tokio::time::timeout(Duration::from_secs(30), gate.wait_for(|open| *open));
                if !matches!(opened.await, Ok(Ok(_))) {
                    return;
                }
            }
            let written = match framing {
                Framing::Chunked => {
                    let mut chunk = format!("{:x}\r\n", part.len()).into_bytes();
                    chunk.extend_from_slice(part);
                    chunk.extend_from_slice(b"\r\n");
                    stream.write_all(&chunk).await
                }
                Framing::CloseDelimited => stream.write_all(part).await,
            };
            if written.is_err() {
                return;
            }
        }
        match framing {
            Framing::Chunked => {
                if stream.write_all(b"0\r\n\r\n").await.is_err() {
                    return;
                }
            }
            Framing::CloseDelimited => {
                let _ = stream.shutdown().await;
                return;
            }
        }
    }
}

/// How long one request of the framing tests may take before the edge counts as stalled.
const STALLED: Duration = Duration::from_secs(5);

/// GET `path` on a connection of its own, with at most [`STALLED`] for the whole answer.
async fn get_within(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, http::HeaderMap, Bytes) {
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(STALLED)
        .build()
        .expect("client");
    let mut req = c.get(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path} not answered within {STALLED:?}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let cs = headers
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: body not whole within {STALLED:?}: {e}"));
    (status, cs, headers, body)
}

/// Checks a response to `Range: bytes=1000-1999` of `body`: the exact bytes with a 206, or
/// the whole body with a 200 (a server may ignore a Range); never anything else.
fn assert_range_answer(
    what: &str,
    status: u16,
    headers: &http::HeaderMap,
    got: &[u8],
    body: &[u8],
) {
    match status {
        206 => {
            let range = headers.get("content-range").and_then(|v| v.to_str().ok());
            let expected = format!("bytes 1000-1999/{}", body.len());
            assert_eq!(range, Some(expected.as_str()), "{what}");
            assert!(got == &body[1000..2000], "{what}: 206 with other bytes");
        }
        200 => assert!(
            got == body,
            "{what}: 200 with {} of {} bytes",
            got.len(),
            body.len()
        ),
        other => panic!("{what}: status {other}"),
    }
}

/// Issue 12: an origin answering a cached route with a chunked or a close-delimited body (no
/// Content-Length, so the fill ends without an `eof` write) deadlocked the edge's only worker
/// thread in the memory tier. Per framing, with `threads: 1`: the fill's client gets the whole
/// body while a range request that arrives mid-fill is answered correctly; a request on a new
/// connection is a hit (one origin request); a probe on a third connection is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunked_and_close_delimited_fills_do_not_stall_the_edge() {
    let cases = [Framing::Chunked, Framing::CloseDelimited]
        .map(|framing| tokio::spawn(framed_fill(framing)));
    for case in cases {
        case.await.expect("case");
    }
}

async fn framed_fill(framing: Framing) {
    let body: Bytes = (0..64_000u32)
        .map(|i| (i % 249) as u8)
        .collect::<Vec<_>>()
        .into();
    // The origin holds all but the first part of its body until released.
    let origin = FramedOrigin::start(framing, body.clone(), false).await;
    let port = free_port();
    let config = with_listener(
        port,
        &format!(
            "server: {{ threads: 1, upgrade_sock: \"{{dir}}/upgrade.sock\", pid_file: \"{{dir}}/meridian.pid\" }}\ncache: {{ memory: 16MiB }}\nupstreams: {{ origin: {{ targets: [\"{}\"] }} }}\nroutes:\n  - name: edge\n    match: {{ path_prefix: / }}\n    upstream: origin\n    cache: {{}}\n",
            origin.addr
        ),
    );
    let _m = tokio::task::block_in_place(|| Meridian::start(&config));

    // The fill: its head and first part arrive while the origin holds the rest.
    let filler = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(STALLED)
        .build()
        .expect("client");
    let mut fill = filler
        .get(format!("http://127.0.0.1:{port}/obj"))
        .send()
        .await
        .expect("the fill's head");
    assert_eq!(fill.status(), 200, "{framing:?}");
    let mut filled = fill
        .chunk()
        .await
        .expect("first part")
        .expect("a first part")
        .to_vec();

    // A range request on another connection finds the object being written: its head comes
    // at once, while the origin still holds the body.
    let ranged = tokio::spawn(async move {
        let c = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(STALLED)
            .build()
            .expect("client");
        c.get(format!("http://127.0.0.1:{port}/obj"))
            .header("range", "bytes=1000-1999")
            .send()
            .await
    });
    let ranged = tokio::time::timeout(STALLED, ranged)
        .await
        .unwrap_or_else(|_| panic!("{framing:?}: a range request during the fill got no head"))
        .expect("task")
        .expect("the range request's head");
    origin.release.send_replace(true);
    while let Some(part) = fill.chunk().await.unwrap_or_else(|e| {
        panic!("{framing:?}: the rest of the fill did not come within {STALLED:?}: {e}")
    }) {
        filled.extend_from_slice(&part);
    }
    assert!(
        filled == body,
        "{framing:?}: the fill's client got {} of {} bytes",
        filled.len(),
        body.len()
    );
    let (status, headers) = (ranged.status().as_u16(), ranged.headers().clone());
    let got = ranged.bytes().await.expect("the range request's body");
    assert_range_answer(
        &format!("{framing:?} range during the fill"),
        status,
        &headers,
        &got,
        &body,
    );

    // A new connection: a hit, and the origin saw one request for the object.
    let (status, cs, _, got) = get_within(port, "/obj", &[]).await;
    assert_eq!(status, 200, "{framing:?}: {cs}");
    assert!(cs.contains("; hit"), "{framing:?}: {cs}");
    assert!(
        got == body,
        "{framing:?}: a hit with {} of {} bytes",
        got.len(),
        body.len()
    );
    let (status, _, headers, got) = get_within(port, "/obj", &[("range", "bytes=1000-1999")]).await;
    assert_range_answer(
        &format!("{framing:?} range on the hit"),
        status,
        &headers,
        &got,
        &body,
    );
    assert_eq!(origin.hits("/obj"), 1, "{framing:?}");

    // A probe on a third connection is answered promptly.
    let started = std::time::Instant::now();
    let (status, _, _, got) = get_within(port, "/probe", &[]).await;
    assert_eq!((status, got.as_ref()), (200, &b"ok\n"[..]), "{framing:?}");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "{framing:?}: the probe took {took:?}"
    );
}
