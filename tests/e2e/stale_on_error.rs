//! The CDN edge when the origin fails (issue 13): stored responses served stale when the
//! origin refuses, closes, resets, times out or answers 5xx (RFC 9111 §4.2.4) unless the
//! stored response forbids it; error statuses with explicit freshness are final, not retried
//! (§3, §4.2.2); a stale response served after a failed attempt tells the client the
//! connection closes instead of leaving its next request unanswered. Every case runs on a
//! memory-only edge and on a disk-tier edge (bodies over `memory_max_object`), and the disk
//! cases again after that edge restarts on the same cache directory.
//!
//! The origin is raw TCP (not an HTTP library) because closing, resetting and staying silent
//! are the behaviours under test.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::harness::*;

/// What the origin does with the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Answers 200 with the path's `Cache-Control` ([`cache_control`]).
    Ok,
    /// Answers `503` without freshness.
    Status503,
    /// Sends `103 Early Hints`, then answers as [`Mode::Status503`].
    Hints503,
    /// Reads the request and closes the connection without a byte.
    Close,
    /// Reads the request and resets the connection.
    Reset,
    /// Reads the request and never answers.
    Silent,
}

const MODES: [Mode; 6] = [
    Mode::Ok,
    Mode::Status503,
    Mode::Hints503,
    Mode::Close,
    Mode::Reset,
    Mode::Silent,
];

/// The cases: the last path segment names the stored response's `Cache-Control`.
const CASES: [(&str, &str); 6] = [
    ("plain", "max-age=1"),
    ("must-revalidate", "max-age=1, must-revalidate"),
    ("proxy-revalidate", "max-age=1, proxy-revalidate"),
    ("no-cache", "max-age=1, no-cache"),
    ("s-maxage", "s-maxage=1"),
    // The origin's own window, over by the time the origin fails.
    ("sie-over", "max-age=1, stale-if-error=1"),
];

fn cache_control(path: &str) -> &'static str {
    let case = path.rsplit('/').next().unwrap_or("");
    if case == "then-fresh" {
        // Stored while the origin is healthy, stale by the time it answers 503 with `max-age`.
        return "max-age=1";
    }
    CASES
        .iter()
        .find(|(name, _)| *name == case)
        .map_or("max-age=60", |(_, cc)| cc)
}

/// The body of `path`: 16 KiB under `/disk/` (over the disk edge's `memory_max_object`).
fn body_of(path: &str) -> Vec<u8> {
    let len = if path.starts_with("/disk/") {
        16 * 1024
    } else {
        64
    };
    let mut body = format!("body of {path};").into_bytes();
    body.resize(len, b'.');
    body
}

#[derive(Default)]
struct State {
    mode: AtomicU8,
    hits: Mutex<HashMap<String, usize>>,
    /// The connections' tasks, aborted when the origin starts refusing.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

struct FailingOrigin {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl Drop for FailingOrigin {
    fn drop(&mut self) {
        self.refuse();
    }
}

impl FailingOrigin {
    async fn start() -> FailingOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let task = tokio::spawn(serve(stream, st.clone()));
                st.tasks.lock().expect("lock").push(task);
            }
        });
        FailingOrigin {
            addr,
            state,
            accept,
        }
    }

    fn set(&self, mode: Mode) {
        let index = MODES.iter().position(|m| *m == mode).unwrap_or(0);
        self.state
            .mode
            .store(u8::try_from(index).unwrap_or(0), Ordering::SeqCst);
    }

    /// Stops listening and closes every connection: from now on connections are refused.
    fn refuse(&self) {
        self.accept.abort();
        for task in self.state.tasks.lock().expect("lock").drain(..) {
            task.abort();
        }
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

    fn total_hits(&self) -> usize {
        self.state.hits.lock().expect("lock").values().sum()
    }
}

async fn serve(mut stream: TcpStream, st: Arc<State>) {
    let mut buf = Vec::new();
    loop {
        // One request head (GET only: no body).
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 64 * 1024 {
                return;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        *st.hits
            .lock()
            .expect("lock")
            .entry(path.clone())
            .or_insert(0) += 1;
        let mode = MODES[usize::from(st.mode.load(Ordering::SeqCst)) % MODES.len()];
        let response = match mode {
            Mode::Ok => {
                let body = body_of(&path);
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\ncache-control: {}\r\ncontent-length: {}\r\n\r\n",
                    cache_control(&path),
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            }
            Mode::Status503 | Mode::Hints503 => {
                if mode == Mode::Hints503 {
                    let hints = b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n";
                    if stream.write_all(hints).await.is_err() {
                        return;
                    }
                }
                // With `max-age` when the path ends in `/fresh` or `/then-fresh`.
                let cc = if path.ends_with("fresh") {
                    "cache-control: max-age=60\r\n"
                } else {
                    ""
                };
                let body = body_of(&path);
                let mut r = format!(
                    "HTTP/1.1 503 Service Unavailable\r\n{cc}content-length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            }
            Mode::Close => return,
            Mode::Reset => {
                let _ = stream.set_zero_linger();
                return;
            }
            Mode::Silent => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
        };
        if stream.write_all(&response).await.is_err() {
            return;
        }
    }
}

/// A memory-only edge, or one whose disk tier holds the `/disk/` bodies (the memory tier
/// takes nothing over 4 KiB). Reads time out after 300 ms.
fn edge_yaml(port: u16, origin: SocketAddr, disk: Option<&std::path::Path>) -> String {
    let storage = match disk {
        Some(dir) => format!(
            "{{ memory: 1MiB, memory_max_object: 4KiB, disk: {{ path: \"{}\", size: 64MiB }} }}",
            dir.display()
        ),
        None => "{ memory: 16MiB }".to_string(),
    };
    with_listener(
        port,
        &format!(
            "cache: {storage}\nupstreams:\n  origin: {{ targets: [\"{origin}\"], outlier: off, timeouts: {{ read: 300ms }} }}\nroutes:\n  - name: edge\n    match: {{ path_prefix: / }}\n    upstream: origin\n    cache: {{}}\n"
        ),
    )
}

/// One HTTP/1.1 exchange on `stream` (Content-Length bodies only): the head (lower-cased
/// header names) and the body, or `None` when the connection ended before a response.
fn exchange(stream: &mut std::net::TcpStream, path: &str) -> Option<(String, Vec<u8>)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(req.as_bytes()).ok()?;
    read_response(stream)
}

/// Reads one response; interim (1xx) heads before it are skipped, as a client does.
fn read_response(stream: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if buf.starts_with(b"HTTP/1.1 1") {
                buf.drain(..i + 4);
                continue;
            }
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some((head, body))
}

fn connect(port: u16) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map_or("", str::trim)
}

/// The status the client gets when the origin fails in `mode` and nothing stale may stand in.
fn error_status(mode: Mode) -> u16 {
    match mode {
        Mode::Status503 | Mode::Hints503 => 503,
        Mode::Silent => 504,
        _ => 502,
    }
}

/// GETs every case of `tier` on a new connection each, concurrently, and checks each answer
/// for an origin failing in `mode` (`None`: connection refused). A stale answer leaves the
/// connection open: a second request on it is answered too.
async fn check_tier(port: u16, tier: &'static str, mode: Option<Mode>) {
    let checks = CASES.iter().map(|(case, _)| {
        tokio::task::spawn_blocking(move || {
            let path = format!("/{tier}/{case}");
            let mut s = connect(port);
            let (head, body) = exchange(&mut s, &path).expect("a response");
            let next = (status_of(&head) == 200).then(|| exchange(&mut s, &path));
            (path, head, body, next)
        })
    });
    for done in futures::future::join_all(checks).await {
        let (path, head, body, next) = done.expect("check");
        let status = status_of(&head);
        let cs = header(&head, "cache-status");
        let what = format!("{path} with the origin {mode:?}: {head}");
        let failed = mode.map_or(502, error_status);
        if path.ends_with("/plain") {
            assert_eq!(status, 200, "{what}");
            assert_eq!(body, body_of(&path), "{what}");
            assert!(cs.contains("; hit; fwd=stale"), "{what}");
            assert!(cs.contains(&format!("fwd-status={failed};")), "{what}");
            assert!(cs.contains("detail=stale-if-error"), "{what}");
            assert!(!head.contains("\r\nwarning:"), "{what}");
            assert_ne!(header(&head, "connection"), "close", "{what}");
            let next = next.flatten().map(|(h, _)| h);
            let next = next.unwrap_or_else(|| panic!("no answer on the same connection: {what}"));
            assert_eq!(status_of(&next), 200, "second request: {next}");
            assert!(next.contains("fwd=stale"), "second request: {next}");
        } else {
            assert_eq!(status, failed, "stale forbidden: {what}");
        }
    }
}

/// Stores every case on `port` (tier `tier`) and checks it was stored.
async fn fill(port: u16, tier: &'static str) {
    let c = client();
    for (case, _) in CASES {
        let url = format!("http://127.0.0.1:{port}/{tier}/{case}");
        let resp = c.get(&url).send().await.expect("fill");
        let cs = resp
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert_eq!(resp.status().as_u16(), 200, "{url}: {cs}");
        assert!(cs.contains("stored"), "{url}: {cs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_is_served_when_the_origin_fails_unless_forbidden() {
    let origin = FailingOrigin::start().await;
    let disk = tempfile::tempdir().expect("tempdir");
    let mem_port = free_port();
    let disk_port = free_port();
    let _mem = Meridian::start(&edge_yaml(mem_port, origin.addr, None));
    let disk_yaml = edge_yaml(disk_port, origin.addr, Some(disk.path()));
    let disk_edge = Meridian::start(&disk_yaml);
    fill(mem_port, "mem").await;
    fill(disk_port, "disk").await;
    // Every object is stale after 1 s, and `sie-over`'s own window ends at 2 s.
    let stale_at = Instant::now() + Duration::from_millis(2300);
    assert!(wait_until(Duration::from_secs(3), || Instant::now() >= stale_at));

    let modes = [
        Mode::Status503,
        Mode::Hints503,
        Mode::Close,
        Mode::Reset,
        Mode::Silent,
    ];
    for mode in modes {
        origin.set(mode);
        let before = (origin.hits("/mem/plain"), origin.hits("/mem/no-cache"));
        check_tier(mem_port, "mem", Some(mode)).await;
        check_tier(disk_port, "disk", Some(mode)).await;
        if error_status(mode) == 503 {
            // A 503 without freshness from the only target is final: asked once per request
            // (`check_tier` makes two on one connection when stale is served), not retried.
            let after = (origin.hits("/mem/plain"), origin.hits("/mem/no-cache"));
            assert_eq!(after, (before.0 + 2, before.1 + 1), "{mode:?}");
        }
    }

    // Connection refused; then the disk edge restarts on its cache directory.
    origin.refuse();
    check_tier(mem_port, "mem", None).await;
    check_tier(disk_port, "disk", None).await;
    drop(disk_edge);
    let _disk_edge = Meridian::start(&disk_yaml);
    check_tier(disk_port, "disk", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_statuses_with_freshness_are_final_and_others_are_retried_before_stale() {
    let one = FailingOrigin::start().await;
    let other = FailingOrigin::start().await;
    let disk = tempfile::tempdir().expect("tempdir");
    let storage = format!(
        "{{ memory: 1MiB, memory_max_object: 4KiB, disk: {{ path: \"{}\", size: 64MiB }} }}",
        disk.path().display()
    );
    let port = free_port();
    // Two targets, the default retries (`on: [connect_error, 502, 503, 504]`); `/direct/` is
    // not cached.
    let yaml = with_listener(
        port,
        &format!(
            "cache: {storage}\nupstreams:\n  origin: {{ targets: [\"{}\", \"{}\"], outlier: off }}\nroutes:\n  - name: direct\n    match: {{ path_prefix: /direct/ }}\n    upstream: origin\n  - name: edge\n    match: {{ path_prefix: / }}\n    upstream: origin\n    cache: {{}}\n",
            one.addr, other.addr
        ),
    );
    let total = |path: &str| one.hits(path) + other.hits(path);
    let c = client();
    let edge = Meridian::start(&yaml);
    let get = |path: &'static str| {
        let c = c.clone();
        async move {
            let resp = c
                .get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .expect("request");
            let cs = resp
                .headers()
                .get("cache-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            (resp.status().as_u16(), cs)
        }
    };
    // Objects that will be stale (`max-age=1`) when the origin fails.
    let stale = ["/mem/stale/plain", "/disk/stale/plain"];
    let then_fresh = ["/mem/stale/then-fresh", "/disk/stale/then-fresh"];
    for path in stale.into_iter().chain(then_fresh) {
        let (s, cs) = get(path).await;
        assert_eq!((s, total(path)), (200, 1), "{path}: {cs}");
    }
    let stale_at = Instant::now() + Duration::from_millis(1300);
    for o in [&one, &other] {
        o.set(Mode::Status503);
    }
    // A 503 with `max-age` is the origin's final answer: asked once, stored, then a hit.
    for path in ["/mem/fresh", "/disk/fresh"] {
        let (s, cs) = get(path).await;
        assert_eq!((s, total(path)), (503, 1), "{path}: {cs}");
        assert!(cs.contains("stored"), "{path}: {cs}");
        let (s, cs) = get(path).await;
        assert_eq!((s, total(path)), (503, 1), "{path}: {cs}");
        assert!(cs.contains("; hit"), "{path}: {cs}");
    }
    // A 503 without freshness is retried on the other target; on an uncached route too.
    let (s, cs) = get("/mem/plain").await;
    assert_eq!((s, total("/mem/plain")), (503, 2), "{cs}");
    let (s, _) = get("/direct/plain").await;
    assert_eq!((s, total("/direct/plain")), (503, 2));
    // With a stale object, the other target is asked too before the stale object stands in.
    assert!(wait_until(Duration::from_secs(2), || Instant::now() >= stale_at));
    for path in stale {
        let (s, cs) = get(path).await;
        assert_eq!((s, total(path)), (200, 1 + 2), "{path}: {cs}");
        assert!(cs.contains("fwd=stale; fwd-status=503"), "{path}: {cs}");
    }
    // A 503 with `max-age` is final with a stale object held too: asked once (no retry, no
    // stale object in its place), stored, then a hit.
    for path in then_fresh {
        let (s, cs) = get(path).await;
        assert_eq!((s, total(path)), (503, 1 + 1), "{path}: {cs}");
        let (s, cs) = get(path).await;
        assert_eq!((s, total(path)), (503, 1 + 1), "{path}: {cs}");
        assert!(cs.contains("; hit"), "{path}: {cs}");
    }
    // After a restart the stored 503 is still a hit (its body is over the memory tier's
    // `memory_max_object`: the disk tier holds it), and the stale object is served as before.
    drop(edge);
    let _edge = Meridian::start(&yaml);
    let (s, cs) = get("/disk/fresh").await;
    assert_eq!((s, total("/disk/fresh")), (503, 1), "{cs}");
    assert!(cs.contains("; hit"), "{cs}");
    let (s, cs) = get(stale[1]).await;
    assert_eq!((s, total(stale[1])), (200, 1 + 2 + 2), "{cs}");
    assert!(cs.contains("fwd=stale; fwd-status=503"), "{cs}");
}

/// A `103 Early Hints` before the final answer is not the attempt's outcome: the pool sees the
/// 503 that follows it, and ejects the target after `consecutive_5xx` of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_final_status_after_early_hints_counts_for_the_pool() {
    let hinting = FailingOrigin::start().await;
    hinting.set(Mode::Hints503);
    let healthy = FailingOrigin::start().await;
    let port = free_port();
    let yaml = with_listener(
        port,
        &format!(
            "cache: {{ memory: 16MiB }}\nupstreams:\n  origin: {{ targets: [\"{}\", \"{}\"], outlier: {{ consecutive_5xx: 3, base_ejection: 30s, max_ejection_percent: 50 }}, retries: {{ attempts: 0 }} }}\nroutes:\n  - name: edge\n    match: {{ path_prefix: / }}\n    upstream: origin\n    cache: {{}}\n",
            hinting.addr, healthy.addr
        ),
    );
    let _edge = Meridian::start(&yaml);
    let c = client();
    let mut failed = 0;
    for i in 0..40 {
        let resp = c
            .get(format!("http://127.0.0.1:{port}/mem/{i}"))
            .send()
            .await
            .expect("request");
        failed += usize::from(resp.status().as_u16() == 503);
    }
    assert_eq!(
        (hinting.total_hits(), failed),
        (3, 3),
        "the hinting target is ejected after 3 answers of 503"
    );
}
