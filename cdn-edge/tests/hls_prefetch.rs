//! The `Prefetcher` against a real local HTTP server (hyper) that counts requests per path:
//! each URL fetched once, the `Host` and marker headers sent, the queue and concurrency
//! bounds held, and planner output prefetched end to end.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cdn_edge::hls::{self, Enqueued, PrefetchConfig, Prefetcher, PREFETCH_HEADER};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use url::Url;

/// What the origin saw.
#[derive(Default)]
struct Seen {
    hits: Mutex<HashMap<String, usize>>,
    hosts: Mutex<Vec<String>>,
    markers: Mutex<Vec<String>>,
    encodings: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A server answering `/missing*` with 404 and anything else with 1,000 bytes, once `gate`
/// has permits.
async fn origin(gate: Arc<Semaphore>) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let state = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (state, gate) = (Arc::clone(&state), Arc::clone(&gate));
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (state, gate) = (Arc::clone(&state), Arc::clone(&gate));
                    async move { Ok::<_, Infallible>(answer(req, &state, &gate).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn answer(req: Request<Incoming>, seen: &Seen, gate: &Semaphore) -> Response<Full<Bytes>> {
    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let path = req.uri().to_string();
    *seen.hits.lock().entry(path.clone()).or_default() += 1;
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    seen.hosts.lock().push(header("host"));
    seen.markers.lock().push(header(PREFETCH_HEADER));
    seen.encodings.lock().push(header("accept-encoding"));
    drop(gate.acquire().await.unwrap());
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    let status = if path.starts_with("/missing") {
        404
    } else {
        200
    };
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(vec![b'x'; 1000])))
        .unwrap()
}

fn config(addr: SocketAddr, queue: usize, concurrency: usize) -> PrefetchConfig {
    let mut c = PrefetchConfig::new(Url::parse(&format!("http://{addr}")).unwrap());
    c.queue = queue;
    c.concurrency = concurrency;
    c.timeout = Duration::from_secs(5);
    c
}

/// Polls `done` every 10 ms for at most 5 s.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

async fn with_timeout(f: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variant_is_fetched_with_its_headers_once_per_variant() {
    with_timeout(async {
        let (addr, seen) = origin(Arc::new(Semaphore::new(1 << 20))).await;
        let prefetcher = Prefetcher::start(config(addr, 64, 4)).unwrap();
        let u = url("http://edge.test:8080/live/0.ts");
        let ae = |v: &'static str| {
            vec![(
                reqwest::header::ACCEPT_ENCODING,
                reqwest::header::HeaderValue::from_static(v),
            )]
        };
        assert_eq!(prefetcher.enqueue_variant(&u, ae("gzip")), Enqueued::Queued);
        assert_eq!(prefetcher.enqueue_variant(&u, ae("br")), Enqueued::Queued);
        assert_eq!(
            prefetcher.enqueue_variant(&u, ae("gzip")),
            Enqueued::Duplicate
        );
        let stats = Arc::clone(prefetcher.stats());
        wait_until("2 prefetches done", || stats.snapshot().fetched == 2).await;
        let mut encodings = seen.encodings.lock().clone();
        encodings.sort();
        assert_eq!(encodings, ["br", "gzip"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_url_is_fetched_once_with_host_and_marker() {
    with_timeout(async {
        let (addr, seen) = origin(Arc::new(Semaphore::new(1 << 20))).await;
        let prefetcher = Prefetcher::start(config(addr, 64, 4)).unwrap();
        let urls: Vec<Url> = (0..5)
            .map(|i| url(&format!("http://edge.test:8080/live/{i}.ts?t=1")))
            .collect();
        for u in &urls {
            assert_eq!(prefetcher.enqueue(u), Enqueued::Queued);
        }
        for u in &urls {
            assert_eq!(prefetcher.enqueue(u), Enqueued::Duplicate);
        }
        assert_eq!(
            prefetcher.enqueue(&url("http://edge.test/missing.ts")),
            Enqueued::Queued
        );
        let stats = Arc::clone(prefetcher.stats());
        wait_until("6 prefetches done", || {
            let s = stats.snapshot();
            s.fetched + s.failed == 6
        })
        .await;
        // Later duplicates are still ignored within the window.
        assert_eq!(prefetcher.enqueue(&urls[0]), Enqueued::Duplicate);

        let s = stats.snapshot();
        assert_eq!(
            (s.enqueued, s.deduplicated, s.fetched, s.failed, s.dropped),
            (6, 6, 5, 1, 0)
        );
        assert_eq!(s.bytes, 6_000);
        let hits = seen.hits.lock().clone();
        assert_eq!(hits.len(), 6);
        for i in 0..5 {
            assert_eq!(hits[&format!("/live/{i}.ts?t=1")], 1);
        }
        assert_eq!(hits["/missing.ts"], 1);
        let hosts = seen.hosts.lock().clone();
        assert_eq!(
            hosts.iter().filter(|h| *h == "edge.test:8080").count(),
            5,
            "{hosts:?}"
        );
        assert!(hosts.contains(&"edge.test".to_string()));
        assert!(seen.markers.lock().iter().all(|m| m == "1"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_and_concurrency_are_bounded() {
    with_timeout(async {
        let gate = Arc::new(Semaphore::new(0));
        let (addr, seen) = origin(Arc::clone(&gate)).await;
        let (queue, concurrency) = (3, 2);
        let prefetcher = Prefetcher::start(config(addr, queue, concurrency)).unwrap();
        let urls: Vec<Url> = (0..20)
            .map(|i| url(&format!("http://edge.test/s{i}.ts")))
            .collect();
        let accepted: Vec<&Url> = urls
            .iter()
            .filter(|u| prefetcher.enqueue(u) == Enqueued::Queued)
            .collect();
        // The queue, plus one job the dispatcher holds and the ones in flight.
        assert!(
            (queue..=queue + 1 + concurrency).contains(&accepted.len()),
            "{}",
            accepted.len()
        );
        let stats = Arc::clone(prefetcher.stats());
        assert_eq!(stats.snapshot().dropped, (20 - accepted.len()) as u64);

        wait_until("the concurrency limit is reached", || {
            seen.in_flight.load(Ordering::SeqCst) == concurrency
        })
        .await;
        // Held there: nothing more starts while the origin is stalled.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(seen.max_in_flight.load(Ordering::SeqCst), concurrency);

        gate.add_permits(1 << 20);
        wait_until("all accepted prefetches fetched", || {
            stats.snapshot().fetched == accepted.len() as u64
        })
        .await;
        assert_eq!(seen.max_in_flight.load(Ordering::SeqCst), concurrency);
        let hits = seen.hits.lock().clone();
        assert_eq!(hits.len(), accepted.len());
        assert!(hits.values().all(|&n| n == 1));

        // A URL dropped for a full queue is not remembered: it can be queued later.
        let dropped = urls.iter().find(|u| !accepted.contains(u)).unwrap();
        assert_eq!(prefetcher.enqueue(dropped), Enqueued::Queued);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_segments_are_prefetched_after_a_segment_hit() {
    with_timeout(async {
        let (addr, seen) = origin(Arc::new(Semaphore::new(1 << 20))).await;
        let prefetcher = Prefetcher::start(config(addr, 64, 4)).unwrap();
        let body = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n\
            #EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2,\n10.m4s\n#EXTINF:2,\n11.m4s\n\
            #EXTINF:2,\n12.m4s\n#EXTINF:2,\n13.m4s\n";
        let hls::Playlist::Media(media) = hls::parse(body, 1 << 20).unwrap() else {
            panic!("expected a media playlist");
        };
        let index = hls::PlaylistIndex::new(1000);
        let playlist_url = url("http://edge.test/ch1/p.m3u8");
        index.remember(&playlist_url, Arc::new(media));
        let stats = Arc::clone(prefetcher.stats());
        // Two players hit segment 10; the next two segments are prefetched once.
        for _ in 0..2 {
            let plan = index.plan_after_segment(&url("http://edge.test/ch1/10.m4s"), None, 2);
            for u in &plan.urls {
                prefetcher.enqueue(u);
            }
        }
        wait_until("2 prefetches", || stats.snapshot().fetched == 2).await;
        let mut paths: Vec<String> = seen.hits.lock().keys().cloned().collect();
        paths.sort();
        assert_eq!(paths, ["/ch1/11.m4s", "/ch1/12.m4s"]);
        assert_eq!(stats.snapshot().deduplicated, 2);
    })
    .await;
}
