//! The cache's storage policy (issue 13) through a real `meridian` and a scripted origin, on
//! both tiers and across a restart of the disk tier: a 304 updates the stored header, any
//! final status with explicit freshness is stored, an invalid `CDN-Cache-Control` is ignored
//! whole, `Age` is read from its first member, and fields named by `no-cache="…"` are kept out
//! of the stored copy but not out of the response that filled it. Two guards of rules Meridian
//! already kept: `private` wins over `s-maxage`, and `immutable` does not keep a stale
//! response fresh.
//!
//! Every scenario runs three ways at once: on a memory-only edge, on an edge whose objects are
//! too large for its memory tier (so they live on disk only), and again on a new edge over the
//! same disk directory after the first one was killed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpListener;

use crate::harness::*;

/// Bodies are this large, so that on the disk edge they exceed `memory_max_object`.
const BODY_LEN: usize = 8 * 1024;

/// What the origin answers on one path.
#[derive(Clone, Default)]
struct Script {
    status: u16,
    headers: Vec<(String, String)>,
    /// When set, a request with `If-None-Match` gets a 304 with these headers.
    not_modified: Option<Vec<(String, String)>>,
}

fn script(status: u16, headers: &[(&str, &str)]) -> Script {
    Script {
        status,
        headers: pairs(headers),
        not_modified: None,
    }
}

fn pairs(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The scripted origin: counts requests per path.
struct Origin {
    addr: std::net::SocketAddr,
    scripts: Arc<Mutex<HashMap<String, Script>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    async fn start(scripts: &[(&str, Script)]) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let scripts: HashMap<String, Script> = scripts
            .iter()
            .map(|(p, s)| (p.to_string(), s.clone()))
            .collect();
        let scripts = Arc::new(Mutex::new(scripts));
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let (s, h) = (scripts.clone(), hits.clone());
        let task = serve_http(listener, move |req| answer(s.clone(), h.clone(), req));
        Origin {
            addr,
            scripts,
            hits,
            task,
        }
    }

    fn hits(&self, path: &str) -> usize {
        *self.hits.lock().expect("lock").get(path).unwrap_or(&0)
    }

    fn set(&self, path: &str, s: Script) {
        self.scripts
            .lock()
            .expect("lock")
            .insert(path.to_string(), s);
    }
}

async fn answer(
    scripts: Arc<Mutex<HashMap<String, Script>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    *hits.lock().expect("lock").entry(path.clone()).or_insert(0) += 1;
    let s = scripts
        .lock()
        .expect("lock")
        .get(&path)
        .cloned()
        .unwrap_or_else(|| script(404, &[]));
    let conditional = req.headers().contains_key("if-none-match");
    let (status, headers, body) = match &s.not_modified {
        Some(h) if conditional => (304, h.clone(), Bytes::new()),
        _ => (s.status, s.headers, Bytes::from(vec![b'x'; BODY_LEN])),
    };
    let mut b = Response::builder().status(status);
    for (k, v) in &headers {
        b = b.header(k.as_str(), v.as_str());
    }
    Ok(b.body(Full::new(body)).expect("resp"))
}

/// Where the edge keeps its objects.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Tier {
    Memory,
    Disk,
}

/// An edge in front of `origin`, every path on one cached route.
fn edge_yaml(port: u16, origin: &Origin, tier: Tier, disk: &std::path::Path) -> String {
    let storage = match tier {
        Tier::Memory => "{ memory: 16MiB }".to_string(),
        Tier::Disk => format!(
            "{{ memory: 1MiB, memory_max_object: 1KiB, disk: {{ path: \"{}\", size: 64MiB }} }}",
            disk.display()
        ),
    };
    with_listener(
        port,
        &format!(
            "cache: {storage}\nupstreams: {{ origin: {{ targets: [\"{}\"] }} }}\nroutes:\n  - name: edge\n    match: {{ path_prefix: / }}\n    upstream: origin\n    cache: {{}}\n",
            origin.addr
        ),
    )
}

/// One response as the client saw it.
struct Seen {
    status: u16,
    headers: http::HeaderMap,
    len: usize,
}

impl Seen {
    fn cache_status(&self) -> &str {
        self.header("cache-status")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn hit(&self) -> bool {
        self.cache_status().contains("; hit")
    }
}

async fn get(c: &reqwest::Client, port: u16, path: &str) -> Seen {
    let resp = c
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let len = resp.bytes().await.expect("body").len();
    Seen {
        status,
        headers,
        len,
    }
}

/// Runs `first` (against a fresh edge) and `after_restart` (against a new edge over the same
/// storage: for the memory tier, the same edge, since nothing survives it) on both tiers at
/// once.
async fn on_both_tiers<F1, F2, Fut1, Fut2>(scripts: &[(&str, Script)], first: F1, after: F2)
where
    F1: Fn(Tier, Arc<Origin>, u16) -> Fut1,
    F2: Fn(Tier, Arc<Origin>, u16) -> Fut2,
    Fut1: Future<Output = ()>,
    Fut2: Future<Output = ()>,
{
    let run = |tier: Tier| {
        let (first, after) = (&first, &after);
        async move {
            let origin = Arc::new(Origin::start(scripts).await);
            let disk = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let yaml = edge_yaml(port, &origin, tier, disk.path());
            let edge = Meridian::start(&yaml);
            first(tier, origin.clone(), port).await;
            if tier == Tier::Disk {
                drop(edge);
                let _edge = Meridian::start(&yaml);
                after(tier, origin, port).await;
            } else {
                after(tier, origin, port).await;
            }
        }
    };
    tokio::join!(run(Tier::Memory), run(Tier::Disk));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_304_updates_the_stored_header_fields() {
    let stored = &[
        ("cache-control", "max-age=0"),
        ("etag", "\"v1\""),
        ("test-header", "a"),
        ("content-foo", "a"),
        ("x-content-foo", "a"),
        ("content-type", "text/plain"),
    ];
    let mut s = script(200, stored);
    s.not_modified = Some(pairs(&[
        ("cache-control", "max-age=600"),
        ("etag", "\"v1\""),
        ("test-header", "b"),
        ("content-foo", "b"),
        ("x-content-foo", "b"),
    ]));
    let scripts = [("/u", s)];
    let updated = |tier: Tier, seen: &Seen, when: &str| {
        for name in ["test-header", "content-foo", "x-content-foo"] {
            assert_eq!(seen.header(name), "b", "{tier:?} {when}: {name}");
        }
        assert_eq!(seen.header("content-type"), "text/plain", "{tier:?} {when}");
        assert_eq!(seen.len, BODY_LEN, "{tier:?} {when}");
    };
    on_both_tiers(
        &scripts,
        |tier, origin, port| async move {
            let c = client();
            let miss = get(&c, port, "/u").await;
            assert_eq!(miss.header("test-header"), "a", "{tier:?}");
            assert!(miss.cache_status().contains("stored"), "{tier:?}");
            let revalidated = get(&c, port, "/u").await;
            assert!(
                revalidated.cache_status().contains("fwd-status=304"),
                "{tier:?}: {}",
                revalidated.cache_status()
            );
            updated(tier, &revalidated, "revalidated");
            let hit = get(&c, port, "/u").await;
            assert!(hit.hit(), "{tier:?}: {}", hit.cache_status());
            updated(tier, &hit, "hit");
            assert_eq!(origin.hits("/u"), 2, "{tier:?}");
        },
        |tier, origin, port| async move {
            let hit = get(&client(), port, "/u").await;
            assert!(hit.hit(), "{tier:?} after restart: {}", hit.cache_status());
            updated(tier, &hit, "after restart");
            assert_eq!(origin.hits("/u"), 2, "{tier:?}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_304_without_age_makes_the_stored_response_new() {
    // Stored stale on arrival (`Age` past its lifetime); the 304 that validates it has no
    // `Age`: the freshened response is new, not as old as the one stored.
    let mut s = script(
        200,
        &[
            ("cache-control", "max-age=600"),
            ("age", "700"),
            ("etag", "\"v1\""),
        ],
    );
    s.not_modified = Some(pairs(&[
        ("cache-control", "max-age=600"),
        ("etag", "\"v1\""),
    ]));
    let scripts = [("/a", s)];
    let young = |tier: Tier, seen: &Seen, when: &str| {
        assert!(seen.hit(), "{tier:?} {when}: {}", seen.cache_status());
        let age: u64 = seen.header("age").parse().expect("a hit has an Age");
        assert!(age < 60, "{tier:?} {when}: Age {age}");
    };
    on_both_tiers(
        &scripts,
        |tier, origin, port| async move {
            let c = client();
            get(&c, port, "/a").await;
            let revalidated = get(&c, port, "/a").await;
            assert!(
                revalidated.cache_status().contains("fwd-status=304"),
                "{tier:?}: {}",
                revalidated.cache_status()
            );
            assert_ne!(revalidated.header("age"), "700", "{tier:?}");
            young(tier, &get(&c, port, "/a").await, "after the 304");
            assert_eq!(origin.hits("/a"), 2, "{tier:?}");
        },
        |tier, origin, port| async move {
            young(tier, &get(&client(), port, "/a").await, "after restart");
            assert_eq!(origin.hits("/a"), 2, "{tier:?}");
        },
    )
    .await;
}

/// Paths whose second request is a hit: any final status with explicit freshness, and a
/// status Meridian understands despite `no-store` when `must-understand` is there.
const STORED: [(&str, u16, &str); 6] = [
    ("/s299", 299, "max-age=600"),
    ("/s303", 303, "max-age=600"),
    ("/s400", 400, "max-age=600"),
    ("/s499", 499, "max-age=600"),
    ("/s599", 599, "max-age=600"),
    ("/mu200", 200, "max-age=600, no-store, must-understand"),
];

/// Paths whose second request goes to the origin again.
const NOT_REUSED: [(&str, u16, &str); 4] = [
    // an unknown status with `must-understand` is not stored
    ("/mu599", 599, "max-age=600, no-store, must-understand"),
    // stored stale (its Age is past its lifetime): revalidated, not reused
    ("/s599-stale", 599, "max-age=60"),
    // `immutable` does not make a stale response fresh (RFC 8246 §2: it applies while fresh)
    ("/immutable-stale", 200, "max-age=60, immutable"),
    // no explicit freshness, not heuristically cacheable
    ("/s400-none", 400, ""),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_final_status_with_explicit_freshness_is_stored() {
    let mut scripts: Vec<(&str, Script)> = Vec::new();
    for (path, status, cc) in STORED.iter().chain(&NOT_REUSED) {
        let mut headers = vec![("cache-control", *cc)];
        if path.ends_with("-stale") {
            headers.push(("age", "120"));
        }
        scripts.push((path, script(*status, &headers)));
    }
    on_both_tiers(
        &scripts,
        |tier, origin, port| async move {
            let c = client();
            for (path, status, _) in STORED.iter().chain(&NOT_REUSED) {
                let first = get(&c, port, path).await;
                assert_eq!(first.status, *status, "{tier:?} {path}");
            }
            for (path, status, _) in STORED {
                let second = get(&c, port, path).await;
                assert_eq!(second.status, status, "{tier:?} {path}");
                assert!(second.hit(), "{tier:?} {path}: {}", second.cache_status());
                assert_eq!(origin.hits(path), 1, "{tier:?} {path}");
            }
            for (path, _, _) in NOT_REUSED {
                let second = get(&c, port, path).await;
                assert!(!second.hit(), "{tier:?} {path}: {}", second.cache_status());
                assert_eq!(origin.hits(path), 2, "{tier:?} {path}");
            }
        },
        |tier, origin, port| async move {
            let c = client();
            for (path, status, _) in STORED {
                let again = get(&c, port, path).await;
                assert_eq!(again.status, status, "{tier:?} {path} after restart");
                assert!(again.hit(), "{tier:?} {path}: {}", again.cache_status());
                assert_eq!(again.len, BODY_LEN, "{tier:?} {path}");
                assert_eq!(origin.hits(path), 1, "{tier:?} {path}");
            }
        },
    )
    .await;
}

/// (path, `CDN-Cache-Control`, `Cache-Control`, stored?)
const TARGETED: [(&str, &str, &str, bool); 4] = [
    // invalid: ignored whole, so `Cache-Control: no-store` governs
    ("/cdn-garbage", "max-age=10000, &&&&&", "no-store", false),
    ("/cdn-string", "max-age=\"10000\"", "no-store", false),
    // invalid: ignored whole, so `Cache-Control: max-age` governs
    ("/cdn-string-cc", "max-age=\"10000\"", "max-age=600", true),
    // valid: it governs over `Cache-Control`
    ("/cdn-valid", "max-age=600", "no-store", true),
];

/// (path, `Age`, stored fresh?) for `Cache-Control: max-age=3600`.
const AGES: [(&str, &str, bool); 4] = [
    ("/age-suffix", "7200, 0", false),
    ("/age-prefix", "0, 7200", true),
    ("/age-parameter", "7200;foo=bar", false),
    ("/age-invalid", "abc", true),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_cdn_cache_control_is_ignored_and_age_is_its_first_member() {
    let mut scripts: Vec<(&str, Script)> = Vec::new();
    for (path, cdn, cc, _) in TARGETED {
        scripts.push((
            path,
            script(200, &[("cdn-cache-control", cdn), ("cache-control", cc)]),
        ));
    }
    for (path, age, _) in AGES {
        scripts.push((
            path,
            script(200, &[("cache-control", "max-age=3600"), ("age", age)]),
        ));
    }
    let reused: Vec<(&str, bool)> = TARGETED
        .iter()
        .map(|(p, _, _, r)| (*p, *r))
        .chain(AGES.iter().map(|(p, _, r)| (*p, *r)))
        .collect();
    let reused = &reused;
    on_both_tiers(
        &scripts,
        |tier, origin, port| async move {
            let c = client();
            for (path, _) in reused {
                get(&c, port, path).await;
            }
            for (path, expected) in reused {
                let second = get(&c, port, path).await;
                assert_eq!(
                    second.hit(),
                    *expected,
                    "{tier:?} {path}: {}",
                    second.cache_status()
                );
                assert_eq!(origin.hits(path), if *expected { 1 } else { 2 });
            }
        },
        |tier, origin, port| async move {
            let c = client();
            for (path, expected) in reused.iter().filter(|(_, r)| *r) {
                let again = get(&c, port, path).await;
                assert_eq!(again.hit(), *expected, "{tier:?} {path} after restart");
                assert_eq!(origin.hits(path), 1, "{tier:?} {path}");
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fields_named_by_no_cache_reach_the_filling_client_only() {
    let scripts = [(
        "/n",
        script(
            200,
            &[
                ("cache-control", "no-cache=\"a\""),
                ("cache-control", "max-age=600, private=\"c\""),
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
            ],
        ),
    )];
    let withheld = |tier: Tier, seen: &Seen, when: &str| {
        assert!(seen.hit(), "{tier:?} {when}: {}", seen.cache_status());
        assert_eq!(seen.header("b"), "2", "{tier:?} {when}");
        for name in ["a", "c"] {
            assert!(!seen.headers.contains_key(name), "{tier:?} {when}: {name}");
        }
    };
    on_both_tiers(
        &scripts,
        |tier, origin, port| async move {
            let c = client();
            let miss = get(&c, port, "/n").await;
            assert!(miss.cache_status().contains("stored"), "{tier:?}");
            for (name, value) in [("a", "1"), ("b", "2"), ("c", "3")] {
                assert_eq!(miss.header(name), value, "{tier:?} the filling response");
            }
            withheld(tier, &get(&c, port, "/n").await, "hit");
            assert_eq!(origin.hits("/n"), 1);
        },
        |tier, origin, port| async move {
            withheld(tier, &get(&client(), port, "/n").await, "after restart");
            assert_eq!(origin.hits("/n"), 1);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_origin_answer_replaces_a_private_one() {
    // `private` with `s-maxage`: a shared cache stores nothing, whatever `s-maxage` says;
    // once the origin allows it, the response is stored.
    let scripts = [(
        "/p",
        script(200, &[("cache-control", "private, s-maxage=600")]),
    )];
    on_both_tiers(
        &scripts,
        |tier, origin, port| async move {
            let c = client();
            get(&c, port, "/p").await;
            let second = get(&c, port, "/p").await;
            assert!(!second.hit(), "{tier:?}: {}", second.cache_status());
            assert_eq!(origin.hits("/p"), 2);
            origin.set("/p", script(200, &[("cache-control", "s-maxage=600")]));
            get(&c, port, "/p").await;
            assert!(get(&c, port, "/p").await.hit(), "{tier:?}");
            assert_eq!(origin.hits("/p"), 3);
        },
        |tier, origin, port| async move {
            assert!(get(&client(), port, "/p").await.hit(), "{tier:?}");
            assert_eq!(origin.hits("/p"), 3);
        },
    )
    .await;
}
