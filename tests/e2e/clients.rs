//! Meridian against the clients of the real world: slowloris request heads and bodies, a client
//! that stops reading its response, a client that vanishes while the cached object it started
//! is still filling, pipelined requests, half-closed sockets, and 10,000 connections opened and
//! dropped. Meridian runs with one worker thread and short client timeouts, and in every case a
//! probe on another connection must be answered within 100 ms throughout: a worker held up by
//! a client fails the test.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;

/// The client timeouts Meridian runs with here: short, so that each case takes seconds.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
/// How much later than [`CLIENT_TIMEOUT`] a timed-out client may be answered or closed.
const SLACK: Duration = Duration::from_millis(1500);
/// The longest a probe may wait for its answer.
const PROBE_LIMIT: Duration = Duration::from_millis(100);
/// The same while 200 connections at a time are opened and dropped: the probe's connection
/// queues in the same accept backlog, behind up to 200 others, for the one worker thread; on a
/// loaded 2-core machine that queue alone took 295 ms. A stalled worker (the stall watchdog's
/// 5 s) is still an order of magnitude beyond it.
const PROBE_LIMIT_UNDER_CHURN: Duration = Duration::from_secs(1);
/// The body of `/cached/slow/…`: 256 KiB, sent in [`SLOW_PIECES`] pieces [`SLOW_GAP`] apart.
const SLOW_LEN: usize = 256 * 1024;
const SLOW_PIECES: usize = 16;
const SLOW_GAP: Duration = Duration::from_millis(100);
/// The body of `/plain/big`: more than every socket buffer between the origin and a client
/// that does not read (the kernel here lets a receive buffer grow to 32 MiB).
const BIG_LEN: usize = 96 * 1024 * 1024;

type Body = BoxBody<Bytes, Infallible>;

// ---------------------------------------------------------------------------------------------
// The origin

/// What the origin saw: requests per path, and its open connections.
#[derive(Default)]
struct OriginState {
    hits: Mutex<HashMap<String, usize>>,
    open: AtomicUsize,
    /// `/plain/big` bodies being sent (hyper drops a body when it is done or its connection
    /// went).
    big_bodies: Arc<AtomicUsize>,
}

/// The origin behind Meridian, on hyper (HTTP/1.1):
/// - `/cached/slow/…`: a cacheable [`SLOW_LEN`]-byte body, dripped in pieces;
/// - `/cached/…`: a cacheable body naming the URI;
/// - `/plain/big`: [`BIG_LEN`] bytes, as fast as the connection takes them;
/// - anything else: `METHOD URI BODY`, the request echoed, after `?ms=N` milliseconds.
struct Origin {
    addr: SocketAddr,
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
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                st.open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = service_fn({
                        let st = st.clone();
                        move |req| answer(st.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    st.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Origin { addr, state, task }
    }

    fn hits(&self, path: &str) -> usize {
        let hits = self.state.hits.lock().expect("lock");
        hits.get(path).copied().unwrap_or(0)
    }

    fn open(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }
}

/// The bytes of `/cached/slow/…`.
fn slow_body() -> Bytes {
    (0..SLOW_LEN).map(|i| (i % 251) as u8).collect()
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

/// `body` in `pieces` frames, `gap` apart.
fn dripped(body: Bytes, pieces: usize, gap: Duration) -> Body {
    let step = body.len().div_ceil(pieces);
    let frames = futures::stream::unfold(0usize, move |at| {
        let body = body.clone();
        async move {
            if at >= body.len() {
                return None;
            }
            if at > 0 {
                tokio::time::sleep(gap).await;
            }
            let end = (at + step).min(body.len());
            Some((Ok(Frame::data(body.slice(at..end))), end))
        }
    });
    BodyExt::boxed(StreamBody::new(frames))
}

/// Counts one body in `bodies` while it lives.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(bodies: &Arc<AtomicUsize>) -> Live {
        bodies.fetch_add(1, Ordering::SeqCst);
        Live(bodies.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// [`BIG_LEN`] bytes in 64 KiB frames, counted in `bodies` while being sent.
fn big(bodies: &Arc<AtomicUsize>) -> Body {
    static CHUNK: [u8; 65536] = [b'x'; 65536];
    let live = Live::new(bodies);
    let frames = futures::stream::iter((0..BIG_LEN / CHUNK.len()).map(move |_| {
        let _live = &live;
        Ok(Frame::data(Bytes::from_static(&CHUNK)))
    }));
    BodyExt::boxed(StreamBody::new(frames))
}

async fn answer(
    st: Arc<OriginState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let uri = req.uri().to_string();
    *st.hits
        .lock()
        .expect("lock")
        .entry(path.clone())
        .or_default() += 1;
    let ok = |len: usize| {
        Response::builder()
            .status(200)
            .header("content-length", len.to_string())
    };
    if path.starts_with("/cached/slow/") {
        let body = slow_body();
        return Ok(ok(body.len())
            .header("cache-control", "max-age=300")
            .body(dripped(body, SLOW_PIECES, SLOW_GAP))
            .expect("response"));
    }
    if path.starts_with("/cached/") {
        let body = format!("cached {uri}");
        return Ok(ok(body.len())
            .header("cache-control", "max-age=300")
            .body(full(body))
            .expect("response"));
    }
    if path == "/plain/big" {
        return Ok(ok(BIG_LEN).body(big(&st.big_bodies)).expect("response"));
    }
    let method = req.method().to_string();
    let delay = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("ms="))
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis);
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Ok(Response::builder()
            .status(400)
            .body(full("incomplete body"))
            .expect("response"));
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let echo = format!("{method} {uri} {}", String::from_utf8_lossy(&body));
    Ok(ok(echo.len()).body(full(echo)).expect("response"))
}

// ---------------------------------------------------------------------------------------------
// Meridian, its origins and the probe

/// A running case: Meridian (one worker thread) in front of two origins — `uploads` serves
/// only `/upload/…`, so its open connections tell whether Meridian let go of them — and the
/// probe.
struct Edge {
    meridian: Meridian,
    port: u16,
    origin: Origin,
    uploads: Origin,
    probe: Probe,
}

impl Edge {
    async fn start() -> Edge {
        let (origin, uploads) = (Origin::start().await, Origin::start().await);
        let port = free_port();
        let t = format!("{}s", CLIENT_TIMEOUT.as_secs());
        let meridian = Meridian::start(&format!(
            r#"server:
  threads: 1
  upgrade_sock: "{{dir}}/upgrade.sock"
  pid_file: "{{dir}}/meridian.pid"
  client_header_timeout: {t}
  client_body_timeout: {t}
  client_send_timeout: {t}
listeners: [ {{ name: public, address: "127.0.0.1:{port}" }} ]
admin: {{ address: "{{admin}}" }}
telemetry: {{ access_log: off }}
cache: {{ memory: 64MiB }}
upstreams:
  origin: {{ targets: ["{origin}"], retries: {{ attempts: 0 }} }}
  uploads: {{ targets: ["{uploads}"], retries: {{ attempts: 0 }} }}
routes:
  - {{ name: plain, match: {{ path_prefix: /plain }}, upstream: origin }}
  - {{ name: upload, match: {{ path_prefix: /upload }}, upstream: uploads }}
  - {{ name: cached, match: {{ path_prefix: /cached }}, upstream: origin, cache: {{}} }}
"#,
            origin = origin.addr,
            uploads = uploads.addr,
        ));
        let probe = Probe::start(port);
        Edge {
            meridian,
            port,
            origin,
            uploads,
            probe,
        }
    }

    /// `GET path` on a new connection: the response, which must come within 2 s.
    async fn get(&self, path: &str) -> Resp {
        let mut c = Conn::open(self.port).await;
        c.send(format!("GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n").as_bytes())
            .await;
        c.response(false).await.expect("a response")
    }

    /// Stops the probe and asserts that it was answered within [`PROBE_LIMIT`] throughout.
    fn check_probe(self) -> Meridian {
        self.check_probe_within(PROBE_LIMIT)
    }

    /// Stops the probe and asserts that it was answered within `limit` throughout.
    fn check_probe_within(self, limit: Duration) -> Meridian {
        let report = self.probe.finish();
        eprintln!("probe: {report:?}");
        assert!(
            report.failures.is_empty(),
            "probes failed: {:?}",
            report.failures
        );
        assert!(report.answered >= 5, "too few probes: {report:?}");
        assert!(
            report.slowest < limit,
            "a probe waited {:?} (limit {limit:?})",
            report.slowest
        );
        self.meridian
    }
}

/// Requests on other connections while a case runs: each a new connection asking Meridian for
/// a path no route serves (Meridian answers 404 itself, so only its own worker is measured).
struct Probe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<ProbeReport>,
}

#[derive(Debug, Default)]
struct ProbeReport {
    answered: usize,
    slowest: Duration,
    failures: Vec<String>,
}

impl Probe {
    fn start(port: u16) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut report = ProbeReport::default();
            // Bounded: at most 100,000 probes (an hour at this pace).
            for _ in 0..100_000 {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let t = Instant::now();
                match probe_once(port) {
                    Ok(404) => {
                        report.answered += 1;
                        report.slowest = report.slowest.max(t.elapsed());
                    }
                    Ok(status) => report.failures.push(format!("status {status}")),
                    Err(e) => report.failures.push(format!("{e} after {:?}", t.elapsed())),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            report
        });
        Probe { stop, thread }
    }

    fn finish(self) -> ProbeReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("probe thread")
    }
}

fn probe_once(port: u16) -> std::io::Result<u16> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(b"GET /probe HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(status_of(&String::from_utf8_lossy(&out)))
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client

/// A response as a raw client read it.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// A client connection that reads responses one after the other (pipelining-safe: bytes of a
/// next response stay in `buf`).
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        Conn { s, buf: Vec::new() }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("send");
    }

    /// Reads more into `buf`; 0 at the end of the stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut tmp = [0u8; 16384];
        let n = self.s.read(&mut tmp).await?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// The next response (to a HEAD request when `head`), within 5 s.
    async fn response(&mut self, head: bool) -> std::io::Result<Resp> {
        tokio::time::timeout(Duration::from_secs(5), self.read_response(head))
            .await
            .map_err(|_| std::io::Error::other("no response within 5 s"))?
    }

    async fn read_response(&mut self, head: bool) -> std::io::Result<Resp> {
        let end = self.until(b"\r\n\r\n").await?;
        let text = String::from_utf8_lossy(&self.buf[..end]).to_string();
        self.buf.drain(..end);
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if head || status < 200 || status == 204 || status == 304 {
            return Ok(resp);
        }
        if resp.header("transfer-encoding") == "chunked" {
            loop {
                let line_end = self.until(b"\r\n").await?;
                let line = String::from_utf8_lossy(&self.buf[..line_end - 2]).to_string();
                self.buf.drain(..line_end);
                let size =
                    usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| std::io::Error::other(format!("bad chunk line {line:?}")))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        let end = self.until(b"\r\n").await?;
                        self.buf.drain(..end);
                        if end == 2 {
                            return Ok(resp);
                        }
                    }
                }
                self.need(size + 2).await?;
                resp.body.extend_from_slice(&self.buf[..size]);
                self.buf.drain(..size + 2);
            }
        }
        if let Ok(len) = resp.header("content-length").parse::<usize>() {
            self.need(len).await?;
            resp.body = self.buf.drain(..len).collect();
            return Ok(resp);
        }
        while self.fill().await? > 0 {}
        resp.body = std::mem::take(&mut self.buf);
        Ok(resp)
    }

    /// Reads until `buf` holds `pattern`; the index just past its first occurrence.
    async fn until(&mut self, pattern: &[u8]) -> std::io::Result<usize> {
        loop {
            if let Some(i) = self.buf.windows(pattern.len()).position(|w| w == pattern) {
                return Ok(i + pattern.len());
            }
            if self.fill().await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads until `buf` holds at least `n` bytes.
    async fn need(&mut self, n: usize) -> std::io::Result<()> {
        while self.buf.len() < n {
            if self.fill().await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// Whether the server closes the connection within `limit`: `Some(what it sent first)`.
    async fn closed_within(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(std::mem::take(&mut self.buf)),
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// Sends `bytes` on a new connection `gap` apart, one byte at a time, and stops writing when the
/// server answers or closes. Returns what the server sent, how long after the first byte the
/// server closed (or `None` within 10 s), and how many bytes were written.
async fn trickle(
    port: u16,
    prefix: &[u8],
    bytes: &[u8],
    gap: Duration,
) -> (Vec<u8>, Option<Duration>, usize) {
    let mut c = Conn::open(port).await;
    if !prefix.is_empty() {
        c.send(prefix).await;
    }
    let (mut rd, mut wr) = c.s.into_split();
    let bytes = bytes.to_vec();
    let written = Arc::new(AtomicUsize::new(0));
    let count = written.clone();
    let writer = tokio::spawn(async move {
        for b in bytes {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            count.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(gap).await;
        }
        // Keep the write side open: the client is slow, not gone.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf)).await {
            Err(_) => break None,
            Ok(Ok(0)) | Ok(Err(_)) => break Some(start.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    };
    writer.abort();
    (got, closed, written.load(Ordering::SeqCst))
}

/// Asserts that a slow client was answered `408` (when `answered`) or closed silently, and
/// that the server closed the connection `expected` after the client began (give or take
/// [`SLACK`]).
fn assert_timed_out(
    case: &str,
    got: &[u8],
    closed: Option<Duration>,
    expected: Duration,
    answered: bool,
) {
    let text = String::from_utf8_lossy(got);
    let Some(after) = closed else {
        panic!("{case}: still open after 10 s (got {text:?})");
    };
    if answered {
        assert!(text.starts_with("HTTP/1.1 408 "), "{case}: got {text:?}");
    } else {
        assert!(got.is_empty(), "{case}: got {text:?}");
    }
    assert!(
        after + Duration::from_millis(100) >= expected && after <= expected + SLACK,
        "{case}: closed after {after:?}, expected {expected:?}"
    );
}

/// A request head, 64 bytes long.
const HEAD: &[u8] = b"GET /plain/slow-head HTTP/1.1\r\nHost: edge\r\nX-Pad: 0123456789\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// The cases

/// Slowloris heads: a head that trickles in one byte every 100 ms, a partial head and then
/// nothing, a connection that sends nothing, and a slow second head on a kept-alive connection
/// are all bounded by `client_header_timeout` (408 where bytes came, closed where none did);
/// then 200 such clients at once while ordinary requests are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_request_heads_are_answered_408_at_the_header_timeout() {
    let edge = Edge::start().await;
    let port = edge.port;
    let gap = Duration::from_millis(100);
    let drip = tokio::spawn(trickle(port, b"", HEAD, gap));
    let partial = tokio::spawn(trickle(port, b"", &HEAD[..20], Duration::ZERO));
    let silent = tokio::spawn(trickle(port, b"", b"", Duration::ZERO));
    let keepalive = tokio::spawn(async move {
        // A whole request answered first; then the next head trickles.
        let full = b"GET /plain/first HTTP/1.1\r\nHost: edge\r\n\r\n";
        let mut c = Conn::open(port).await;
        c.send(full).await;
        let first = c.response(false).await.expect("first response");
        assert_eq!(first.status, 200);
        let (mut rd, mut wr) = c.s.into_split();
        let writer = tokio::spawn(async move {
            for b in HEAD {
                if wr.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let start = Instant::now();
        let mut got = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut got))
            .await
            .ok()
            .map(|_| start.elapsed());
        writer.abort();
        (got, closed)
    });
    let (got, closed, written) = drip.await.expect("drip");
    assert_timed_out("one byte every 100 ms", &got, closed, CLIENT_TIMEOUT, true);
    assert!(
        written < HEAD.len(),
        "the whole head got through ({written} bytes)"
    );
    let (got, closed, _) = partial.await.expect("partial");
    assert_timed_out("a partial head", &got, closed, CLIENT_TIMEOUT, true);
    let (got, closed, _) = silent.await.expect("silent");
    assert_timed_out("nothing sent", &got, closed, CLIENT_TIMEOUT, false);
    let (got, closed) = keepalive.await.expect("keepalive");
    assert_timed_out("a slow second head", &got, closed, CLIENT_TIMEOUT, true);

    // 200 at once, half trickling, half stalled, while ordinary requests are served.
    let slow: Vec<_> = (0..200)
        .map(|i| {
            let head = if i % 2 == 0 { HEAD } else { &HEAD[..30] };
            tokio::spawn(trickle(
                port,
                b"",
                head,
                if i % 2 == 0 { gap } else { Duration::ZERO },
            ))
        })
        .collect();
    for i in 0..20 {
        let t = Instant::now();
        let r = edge.get(&format!("/plain/during-{i}")).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "took {:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, s) in slow.into_iter().enumerate() {
        let (got, closed, _) = s.await.expect("slow client");
        assert_timed_out(
            &format!("slow client {i} of 200"),
            &got,
            closed,
            CLIENT_TIMEOUT,
            true,
        );
    }
    assert_eq!(edge.get("/plain/after").await.status, 200);
    edge.check_probe();
}

/// Slowloris bodies: a body that stops mid-way (Content-Length and chunked) is answered 408
/// `client_body_timeout` after its last byte and the upstream connection is released; a body
/// that trickles in with gaps under the bound goes through whole; 50 stalled bodies at once do
/// not stop ordinary requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_request_bodies_are_answered_408_at_the_body_timeout() {
    let edge = Edge::start().await;
    let port = edge.port;
    let head = b"POST /upload/stalled HTTP/1.1\r\nHost: edge\r\nContent-Length: 1000\r\n\r\n";
    let (got, closed, _) = trickle(port, head, b"0123456789", Duration::ZERO).await;
    assert_timed_out("a body that stops", &got, closed, CLIENT_TIMEOUT, true);
    assert!(
        wait_until(Duration::from_secs(3), || edge.uploads.open() == 0),
        "the upstream connection is still open ({})",
        edge.uploads.open()
    );

    let head = b"POST /upload/chunked HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (got, closed, _) = trickle(port, head, b"a\r\n01234", Duration::ZERO).await;
    assert_timed_out(
        "a chunked body that stops",
        &got,
        closed,
        CLIENT_TIMEOUT,
        true,
    );
    assert!(
        wait_until(Duration::from_secs(3), || edge.uploads.open() == 0),
        "the upstream connection is still open ({})",
        edge.uploads.open()
    );

    // 20 bytes over 2 s, never more than 100 ms apart: under the (idle) bound, whole.
    let body = b"abcdefghijklmnopqrst";
    let head = b"POST /upload/trickle HTTP/1.1\r\nHost: edge\r\nConnection: close\r\nContent-Length: 20\r\n\r\n";
    let (got, closed, written) = trickle(port, head, body, Duration::from_millis(100)).await;
    assert_eq!(written, body.len());
    assert!(closed.is_some(), "not closed after its response");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text:?}");
    assert!(
        text.ends_with("POST /upload/trickle abcdefghijklmnopqrst"),
        "{text:?}"
    );

    // 50 stalled bodies at once.
    let stalled: Vec<_> = (0..50)
        .map(|i| {
            let head = format!(
                "POST /upload/many-{i} HTTP/1.1\r\nHost: edge\r\nContent-Length: 100\r\n\r\n"
            );
            tokio::spawn(
                async move { trickle(port, head.as_bytes(), b"xyz", Duration::ZERO).await },
            )
        })
        .collect();
    for i in 0..10 {
        let r = edge.get(&format!("/plain/during-{i}")).await;
        assert_eq!(r.status, 200, "{r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, s) in stalled.into_iter().enumerate() {
        let (got, closed, _) = s.await.expect("stalled client");
        assert_timed_out(
            &format!("stalled body {i} of 50"),
            &got,
            closed,
            CLIENT_TIMEOUT,
            true,
        );
    }
    assert!(
        wait_until(Duration::from_secs(3), || edge.uploads.open() == 0),
        "upstream connections still open ({})",
        edge.uploads.open()
    );
    edge.check_probe();
}

/// A client that asks for a large response and stops reading it is dropped
/// `client_send_timeout` after Meridian's last write went out, and the upstream connection
/// with it; meanwhile others are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_is_dropped_at_the_send_timeout() {
    let edge = Edge::start().await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    // A small receive window, so that the response stops moving soon.
    socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
    let s = socket
        .connect(([127, 0, 0, 1], edge.port).into())
        .await
        .expect("connect");
    let mut c = Conn { s, buf: Vec::new() };
    c.send(b"GET /plain/big HTTP/1.1\r\nHost: edge\r\n\r\n")
        .await;
    assert!(
        wait_until(Duration::from_secs(3), || edge.origin.hits("/plain/big")
            == 1),
        "the request reached the origin"
    );
    let r = edge.get("/plain/meanwhile").await;
    assert_eq!(r.status, 200);
    // The origin's response stops when Meridian gives up on the client (the connection of the
    // request above stays in Meridian's pool).
    let t = Instant::now();
    let bodies = || edge.origin.state.big_bodies.load(Ordering::SeqCst);
    assert!(
        wait_until(CLIENT_TIMEOUT + Duration::from_secs(5), || bodies() == 0),
        "the origin is still sending after {:?}",
        t.elapsed()
    );
    assert_eq!(edge.origin.open(), 1, "only the pooled connection is left");
    // And the client's connection is closed: what it reads now ends well short of the body.
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match c.s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the client connection is still open");
    assert!(received < BIG_LEN, "the whole body arrived");
    edge.check_probe();
}

/// A client that starts a cache fill and vanishes mid-body changes nothing for the others: the
/// readers that joined the fill get the whole body, and the object is stored and served as a
/// hit afterwards, from one origin request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_vanishes_mid_fill_leaves_the_fill_whole() {
    let edge = Edge::start().await;
    let port = edge.port;
    let path = "/cached/slow/vanish";
    let expected = slow_body();
    // The first client reads the head and a few pieces, then resets its connection.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    let s = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect");
    let mut first = Conn { s, buf: Vec::new() };
    first
        .send(format!("GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n").as_bytes())
        .await;
    let head_end = tokio::time::timeout(Duration::from_secs(3), first.until(b"\r\n\r\n"))
        .await
        .expect("a head within 3 s")
        .expect("a head");
    assert!(String::from_utf8_lossy(&first.buf[..head_end]).starts_with("HTTP/1.1 200 "));
    // Ten readers join the fill.
    let readers: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = Conn::open(port).await;
                c.send(format!("GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n").as_bytes())
                    .await;
                c.response(false).await
            })
        })
        .collect();
    tokio::time::timeout(
        Duration::from_secs(3),
        first.need(head_end + 3 * SLOW_LEN / SLOW_PIECES),
    )
    .await
    .expect("three pieces within 3 s")
    .expect("three pieces");
    first.s.set_zero_linger().expect("SO_LINGER");
    drop(first);
    for (i, r) in readers.into_iter().enumerate() {
        let r = r.await.expect("reader").expect("a whole response");
        assert_eq!(r.status, 200, "reader {i}");
        assert!(
            r.body == expected,
            "reader {i}: {} of {SLOW_LEN} bytes, or different ones",
            r.body.len()
        );
    }
    // Stored: a hit, whole, and the origin asked once.
    let hit = edge.get(path).await;
    assert_eq!(hit.status, 200);
    assert!(
        hit.header("cache-status").contains("hit"),
        "{:?}",
        hit.headers
    );
    assert!(hit.body == expected, "the hit has {} bytes", hit.body.len());
    assert_eq!(edge.origin.hits(path), 1);
    edge.check_probe();
}

/// Pipelined requests — plain and cached, with Content-Length and chunked bodies, a HEAD, a
/// batch larger than one read, and a chunked body whose last bytes arrive in a second write
/// together with the next request — are answered in order, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_requests_are_answered_in_order() {
    let edge = Edge::start().await;
    let mut c = Conn::open(edge.port).await;
    let batch = [
        "GET /plain/p1 HTTP/1.1\r\nHost: edge\r\n\r\n",
        "POST /plain/p2 HTTP/1.1\r\nHost: edge\r\nContent-Length: 5\r\n\r\nhello",
        "GET /cached/c1 HTTP/1.1\r\nHost: edge\r\n\r\n",
        "POST /plain/p3 HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nworld\r\n0\r\n\r\n",
        "GET /cached/c1 HTTP/1.1\r\nHost: edge\r\n\r\n",
        "HEAD /plain/p4 HTTP/1.1\r\nHost: edge\r\n\r\n",
        "PUT /plain/p5 HTTP/1.1\r\nHost: edge\r\nContent-Length: 3\r\n\r\nabc",
        "GET /plain/p6 HTTP/1.1\r\nHost: edge\r\n\r\n",
    ]
    .concat();
    c.send(batch.as_bytes()).await;
    let expect = [
        (false, "GET /plain/p1 "),
        (false, "POST /plain/p2 hello"),
        (false, "cached /cached/c1"),
        (false, "POST /plain/p3 world"),
        (false, "cached /cached/c1"),
        (true, ""),
        (false, "PUT /plain/p5 abc"),
        (false, "GET /plain/p6 "),
    ];
    for (i, (head, body)) in expect.iter().enumerate() {
        let r = c
            .response(*head)
            .await
            .unwrap_or_else(|e| panic!("response {i}: {e}"));
        assert_eq!(r.status, 200, "response {i}: {r:?}");
        assert_eq!(r.text(), *body, "response {i}");
    }
    assert_eq!(edge.origin.hits("/cached/c1"), 1, "the second was a hit");

    // 40 requests with bodies in one write of about 10 KiB: more than one read.
    let body = "b".repeat(200);
    let batch: String = (0..40)
        .map(|i| {
            format!(
                "POST /plain/big-batch-{i} HTTP/1.1\r\nHost: edge\r\nContent-Length: 200\r\n\r\n{body}"
            )
        })
        .collect();
    assert!(batch.len() > 8192);
    c.send(batch.as_bytes()).await;
    for i in 0..40 {
        let r = c
            .response(false)
            .await
            .unwrap_or_else(|e| panic!("batch response {i}: {e}"));
        assert_eq!(r.text(), format!("POST /plain/big-batch-{i} {body}"));
    }

    // A chunked body whose final CRLF arrives with the next request, in a later write.
    c.send(b"POST /plain/split HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r")
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.send(b"\nGET /plain/after-split HTTP/1.1\r\nHost: edge\r\n\r\n")
        .await;
    let r = c.response(false).await.expect("the split body's response");
    assert_eq!(r.text(), "POST /plain/split abc");
    let r = c
        .response(false)
        .await
        .expect("the next request's response");
    assert_eq!(r.text(), "GET /plain/after-split ");

    // A chunked body directly followed by a request, in one write.
    c.send(b"POST /plain/ch HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /plain/last HTTP/1.1\r\nHost: edge\r\n\r\n")
        .await;
    assert_eq!(
        c.response(false).await.expect("chunked").text(),
        "POST /plain/ch hi"
    );
    assert_eq!(
        c.response(false).await.expect("last").text(),
        "GET /plain/last "
    );
    edge.check_probe();
}

/// A client that sends its request and then shuts its write side still gets its response
/// (plain and cached); one that half-closes mid-head is closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_closed_clients() {
    let edge = Edge::start().await;
    for path in ["/plain/half?ms=300", "/cached/slow/half"] {
        let mut c = Conn::open(edge.port).await;
        c.send(format!("GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n").as_bytes())
            .await;
        c.s.shutdown().await.expect("shutdown(SHUT_WR)");
        let r = c
            .response(false)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(r.status, 200, "{path}");
        if path.starts_with("/cached") {
            assert!(r.body == slow_body(), "{path}: {} bytes", r.body.len());
        } else {
            assert_eq!(r.text(), "GET /plain/half?ms=300 ");
        }
        assert!(
            c.closed_within(Duration::from_secs(2)).await.is_some(),
            "{path}: not closed"
        );
    }
    let mut c = Conn::open(edge.port).await;
    c.send(&HEAD[..25]).await;
    c.s.shutdown().await.expect("shutdown(SHUT_WR)");
    let t = Instant::now();
    let got = c.closed_within(Duration::from_secs(3)).await;
    assert!(got.is_some(), "a half-closed partial head is still open");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "closed after {:?}",
        t.elapsed()
    );
    edge.check_probe();
}

/// Socket file descriptors of `pid` whose local (`local`) or remote port is `port`, listening
/// sockets left out.
fn sockets(pid: u32, port: u16, local: bool) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().to_string();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let suffix = format!(":{port:04X}");
    tcp.lines()
        .skip(1)
        .filter(|l| {
            // sl, local address, remote address, state (0A: listening), …, inode
            let f: Vec<&str> = l.split_whitespace().collect();
            let address = if local { 1 } else { 2 };
            f.len() > 9 && f[address].ends_with(&suffix) && f[3] != "0A" && inodes.contains(f[9])
        })
        .count()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The `meridian_downstream_connections_active` gauge.
fn connections_gauge(admin: &str) -> Option<i64> {
    let metrics = raw_get(admin.trim_start_matches("http://"), "/metrics")?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("meridian_downstream_connections_active "))
        .and_then(|v| v.trim().parse().ok())
}

/// 10,000 connections opened and dropped — before sending anything, mid-head, after a request
/// without reading the answer, after reading it, and reset instead of closed — 200 at a time:
/// Meridian keeps serving, the connections gauge returns to 0 and no descriptor leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_connections_opened_and_dropped() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    // Meridian inherits this process's limit: room for 200 clients on both sides and more.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard.min(20_000) {
        setrlimit(Resource::RLIMIT_NOFILE, hard.min(20_000), hard).expect("setrlimit");
    }
    let edge = Edge::start().await;
    let (port, pid) = (edge.port, edge.meridian.pid());
    // Warm up the upstream pool, then count descriptors.
    for i in 0..5 {
        assert_eq!(edge.get(&format!("/plain/warm-{i}")).await.status, 200);
    }
    let origin_port = edge.origin.addr.port();
    let before = open_fds(pid);
    let pooled_before = sockets(pid, origin_port, false);
    let t = Instant::now();
    let served = Arc::new(AtomicUsize::new(0));
    let client = |i: usize| {
        let served = served.clone();
        async move {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
                return Err(format!("client {i}: connect"));
            };
            let request = format!("GET /plain/c{i} HTTP/1.1\r\nHost: edge\r\n\r\n");
            let sent = match i % 5 {
                0 => Ok(()),
                1 => s.write_all(&HEAD[..17]).await,
                2 => s.write_all(request.as_bytes()).await,
                3 => {
                    let mut c = Conn { s, buf: Vec::new() };
                    c.send(request.as_bytes()).await;
                    let r = c.response(false).await;
                    return match r {
                        Ok(r) if r.status == 200 => {
                            served.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        }
                        other => Err(format!("client {i}: {other:?}")),
                    };
                }
                _ => match s.write_all(&HEAD[..30]).await {
                    Ok(()) => s.set_zero_linger(),
                    Err(e) => Err(e),
                },
            };
            sent.map_err(|e| format!("client {i}: {e}"))
        }
    };
    // 200 at a time, then a request on a new connection: its answer means that Meridian has
    // accepted every connection before it. Clients that drop their connection at once are
    // done before Meridian accepts it, so without this the kernel's accept queue grows by
    // thousands, and the probe measures that queue rather than Meridian's worker.
    let mut failed = Vec::new();
    for batch in 0..50 {
        let clients = futures::stream::iter(batch * 200..(batch + 1) * 200).map(client);
        let errors: Vec<String> = clients
            .buffer_unordered(200)
            .filter_map(|r| async move { r.err() })
            .collect()
            .await;
        failed.extend(errors);
        assert_eq!(edge.get("/plain/barrier").await.status, 200);
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    eprintln!("10,000 connections in {:?}", t.elapsed());
    assert_eq!(served.load(Ordering::SeqCst), 2000);
    assert_eq!(edge.get("/plain/after").await.status, 200);
    let port_sockets = || sockets(pid, port, true);
    assert!(
        wait_until(Duration::from_secs(5), || port_sockets() == 0),
        "Meridian still holds {} client sockets",
        port_sockets()
    );
    let admin = edge.meridian.admin.clone();
    let meridian = edge.check_probe_within(PROBE_LIMIT_UNDER_CHURN);
    assert!(
        wait_until(Duration::from_secs(5), || connections_gauge(&admin)
            == Some(0)),
        "meridian_downstream_connections_active is {:?}",
        connections_gauge(&admin)
    );
    // Descriptors: back to what they were, but for the upstream pool's idle connections.
    let (after, pooled) = (open_fds(pid), sockets(pid, origin_port, false));
    eprintln!(
        "descriptors: {before} before ({pooled_before} to the origin), {after} after ({pooled})"
    );
    assert!(
        after - pooled <= before - pooled_before + 2,
        "descriptors: {before} before ({pooled_before} to the origin), {after} after ({pooled})"
    );
    drop(meridian);
}
