//! The origin-behaviour matrix: every way an origin answers (well or badly) × every kind of
//! route, against one `meridian` with one worker thread.
//!
//! For each cell the client must get the right answer: the exact body with the right framing,
//! or Meridian's own 502/504 with a reason, or — once the head has gone out — a connection
//! closed before the body's framing completes, so the client sees the truncation (never a
//! clean-looking short body). A following request tells whether the response was stored: a
//! truncated or invalid body must never be served as a hit. Throughout, a probe on other
//! connections to a healthy route must be answered within 100 ms: with one worker, a stalled
//! worker stops the probe.
//!
//! The matrix is data ([`MATRIX`]): a row per origin behaviour ([`faulty_origin::Behaviour`]),
//! a cell per route kind ([`Kind`]). Adding a case is adding a row. All cells run at once, on
//! distinct paths, so the whole matrix takes a few seconds.

use std::net::TcpStream as StdTcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::faulty_origin::{self, entity, Behaviour, FaultyOrigin};
use crate::harness::*;

/// A kind of route the origin's response goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// No cache.
    Plain,
    /// Cached; objects small enough for the memory tier.
    Memory,
    /// Cached; objects larger than the memory tier's `memory_max_object`: disk only.
    Disk,
    /// Cached; 10 concurrent clients miss at once and wait for one fill, which pauses after
    /// its head so they stream it while it is written.
    Coalesced,
    /// Cached; the client asks for a byte range of the object.
    Range,
    /// The HLS profile: the playlist's first segment is prefetched by the edge, then asked.
    Hls,
}

impl Kind {
    /// In the order of the table's columns.
    const ALL: [Kind; 6] = [
        Kind::Plain,
        Kind::Memory,
        Kind::Disk,
        Kind::Coalesced,
        Kind::Range,
        Kind::Hls,
    ];

    /// The first path segment, which routes to this kind.
    fn prefix(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Memory => "memory",
            Kind::Disk => "disk",
            Kind::Coalesced => "coalesced",
            Kind::Range => "range",
            Kind::Hls => "hls",
        }
    }

    /// The entity length: small, except on the disk route (above `memory_max_object`).
    fn len(self) -> usize {
        match self {
            Kind::Disk => 6000,
            _ => 64,
        }
    }

    /// Pause between the origin's head and body.
    fn pause_ms(self) -> u64 {
        match self {
            Kind::Coalesced => 300,
            _ => 0,
        }
    }
}

/// The requested range on [`Kind::Range`] routes: bytes 2 to 9.
const RANGE: (usize, usize) = (2, 9);

/// What the client must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// 200 and exactly the origin's entity.
    Body,
    /// 206 with exactly the bytes of [`RANGE`] and its `Content-Range`.
    Range,
    /// [`Outcome::Range`], or 200 and the whole entity: a fill of unknown length (chunked,
    /// close-delimited) cannot be cut before it ends, and RFC 9110 §14.2 lets a server ignore
    /// `Range`.
    RangeOrBody,
    /// 200 to a HEAD: no body.
    Head,
    /// This status and no body.
    Empty(u16),
    /// Meridian's own error: this status with a one-line reason.
    Error(u16),
    /// Meridian's 502/504 with a reason, or a head and then a connection closed before the
    /// body's framing completed (what arrived being a prefix of the entity). A range that lies
    /// in what arrived before the break may be answered whole.
    Truncated,
}

/// What the request after the first does at the origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    /// Served from the cache: the origin saw exactly one request for the path (the fill; on
    /// [`Kind::Hls`], the prefetch), however many clients asked.
    Hit,
    /// Reaches the origin again (nothing was stored, or the route does not cache).
    Origin,
}

/// The expectation of one cell: the first exchange (each of the 10 on [`Kind::Coalesced`]),
/// the following GET, and where that GET is served from.
#[derive(Clone, Copy, Debug)]
struct Expect {
    first: Outcome,
    next: Outcome,
    store: Store,
}

const fn expect(first: Outcome, next: Outcome, store: Store) -> Expect {
    Expect { first, next, store }
}

use Outcome::*;
use Store::*;

/// The body, forwarded (plain route).
const FWD: Expect = expect(Body, Body, Origin);
/// The body, stored: the next request is a hit.
const HIT: Expect = expect(Body, Body, Hit);
/// The range, cut from the fill and then from the stored object.
const RANGE_HIT: Expect = expect(Range, Range, Hit);
/// The range or the whole body while a fill of unknown length runs; the range from the hit.
const PART_HIT: Expect = expect(RangeOrBody, Range, Hit);
/// Truncated (or 502/504), never stored.
const CUT: Expect = expect(Truncated, Truncated, Origin);
/// 502 with a reason, nothing stored.
const E502: Expect = expect(Error(502), Error(502), Origin);
/// 504 with a reason, nothing stored.
const E504: Expect = expect(Error(504), Error(504), Origin);
/// HEAD, then a GET, both forwarded.
const HEAD_FWD: Expect = expect(Head, Body, Origin);
/// HEAD (filled with a GET), then a GET served from the cache.
const HEAD_HIT: Expect = expect(Head, Body, Hit);
/// HEAD with `Range` (ignored: ranges are defined for GET only), then a ranged GET hit.
const HEAD_RANGE: Expect = expect(Head, Range, Hit);
/// 204 without its stray bytes, forwarded.
const NC_FWD: Expect = expect(Empty(204), Empty(204), Origin);
/// 204 without its stray bytes, stored (204 is cacheable with `max-age`).
const NC_HIT: Expect = expect(Empty(204), Empty(204), Hit);
/// 304 without its stray bytes; a 304 is never stored.
const NM: Expect = expect(Empty(304), Empty(304), Origin);

/// One origin behaviour and the client's method, with an expectation per [`Kind`].
struct Row {
    case: &'static str,
    behaviour: Behaviour,
    method: Method,
    cells: [Expect; 6],
}

const fn row(case: &'static str, behaviour: Behaviour, method: Method, cells: [Expect; 6]) -> Row {
    Row {
        case,
        behaviour,
        method,
        cells,
    }
}

const GET: Method = Method::GET;
const HEAD: Method = Method::HEAD;

/// The matrix. Columns: plain, memory, disk, coalesced, range, hls.
#[rustfmt::skip]
const MATRIX: &[Row] = &[
    row("content-length",    Behaviour::ContentLength,      GET,  [FWD, HIT, HIT, HIT, RANGE_HIT, HIT]),
    row("chunked",           Behaviour::Chunked,            GET,  [FWD, HIT, HIT, HIT, PART_HIT, HIT]),
    row("chunked-trailers",  Behaviour::ChunkedTrailers,    GET,  [FWD, HIT, HIT, HIT, PART_HIT, HIT]),
    row("chunk-extensions",  Behaviour::ChunkExtensions,    GET,  [FWD, HIT, HIT, HIT, PART_HIT, HIT]),
    row("close-http10",      Behaviour::Close10,            GET,  [FWD, HIT, HIT, HIT, PART_HIT, HIT]),
    row("close-http11",      Behaviour::Close11,            GET,  [FWD, HIT, HIT, HIT, PART_HIT, HIT]),
    // The body is what Content-Length frames; the stray bytes after it must not be read as
    // the next response on a reused connection.
    row("short-length",      Behaviour::ShortLength,        GET,  [FWD, HIT, HIT, HIT, RANGE_HIT, HIT]),
    row("long-length",       Behaviour::LongLength,         GET,  [CUT, CUT, CUT, CUT, CUT, CUT]),
    row("stall-mid-body",    Behaviour::StallMidBody,       GET,  [CUT, CUT, CUT, CUT, CUT, CUT]),
    row("invalid-chunk",     Behaviour::InvalidChunk,       GET,  [CUT, CUT, CUT, CUT, CUT, CUT]),
    row("continue-100",      Behaviour::Continue100,        GET,  [FWD, HIT, HIT, HIT, RANGE_HIT, HIT]),
    row("early-hints-103",   Behaviour::EarlyHints103,      GET,  [FWD, HIT, HIT, HIT, RANGE_HIT, HIT]),
    row("204-with-body",     Behaviour::NoContentWithBody,  GET,  [NC_FWD, NC_HIT, NC_HIT, NC_HIT, NC_HIT, NC_HIT]),
    row("304-with-body",     Behaviour::NotModifiedWithBody, GET, [NM, NM, NM, NM, NM, NM]),
    // A cached route fills a HEAD with a GET; a plain one forwards the HEAD.
    row("head",              Behaviour::ContentLength,      HEAD, [HEAD_FWD, HEAD_HIT, HEAD_HIT, HEAD_HIT, HEAD_RANGE, HEAD_HIT]),
    row("head-with-body",    Behaviour::HeadWithBody,       HEAD, [HEAD_FWD, HEAD_HIT, HEAD_HIT, HEAD_HIT, HEAD_RANGE, HEAD_HIT]),
    // Passed through as encoded (the client accepts gzip); chunked, as nginx's gzip sends it.
    row("gzip",              Behaviour::Gzip,               GET,  [FWD, HIT, HIT, HIT, PART_HIT, HIT]),
    row("drip",              Behaviour::Drip,               GET,  [FWD, HIT, HIT, HIT, RANGE_HIT, HIT]),
    row("reset-mid-body",    Behaviour::ResetMidBody,       GET,  [CUT, CUT, CUT, CUT, CUT, CUT]),
    // nginx (proxy_buffer_size), Varnish (http_resp_hdr_len) and Envoy (60 KiB) refuse it.
    row("huge-headers",      Behaviour::HugeHeaders,        GET,  [E502, E502, E502, E502, E502, E502]),
    row("silent",            Behaviour::Silent,             GET,  [E504, E504, E504, E504, E504, E504]),
    row("empty",             Behaviour::Empty,              GET,  [E502, E502, E502, E502, E502, E502]),
    // The second request on the pooled connection must not fail.
    row("keepalive-race",    Behaviour::KeepAliveRace,      GET,  [FWD, HIT, HIT, HIT, RANGE_HIT, HIT]),
    row("keepalive-idle",    Behaviour::KeepAliveIdleClose, GET,  [FWD, HIT, HIT, HIT, RANGE_HIT, HIT]),
];

/// Longest a single exchange may take before the cell fails as hung.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(10);

/// Cells running at once.
const CONCURRENT_CELLS: usize = 16;

/// Longest a probe may take.
const PROBE_LIMIT: Duration = Duration::from_millis(100);

fn edge_config(port: u16, origin: &FaultyOrigin, probe: std::net::SocketAddr) -> String {
    let cached = "{ lock_timeout: 2s, vary: [accept-encoding] }";
    format!(
        "server: {{ upgrade_sock: {{dir}}/upgrade.sock, pid_file: {{dir}}/meridian.pid, threads: 1 }}
listeners: [ {{ name: public, address: \"127.0.0.1:{port}\" }} ]
admin: {{ address: \"{{admin}}\" }}
telemetry: {{ access_log: off }}
cache: {{ memory: 16MiB, memory_max_object: 4KiB, disk: {{ path: \"{{dir}}/cache\", size: 64MiB }} }}
upstreams:
  origin: {{ targets: [\"{origin}\"], outlier: off, timeouts: {{ connect: 1s, read: 1s, write: 1s, total: 5s }} }}
  healthy: {{ targets: [\"{probe}\"] }}
routes:
  - {{ name: probe, match: {{ path_prefix: /probe/ }}, upstream: healthy }}
  - {{ name: plain, match: {{ path_prefix: /plain/ }}, upstream: origin }}
  - {{ name: memory, match: {{ path_prefix: /memory/ }}, upstream: origin, cache: {cached} }}
  - {{ name: disk, match: {{ path_prefix: /disk/ }}, upstream: origin, cache: {cached} }}
  - {{ name: coalesced, match: {{ path_prefix: /coalesced/ }}, upstream: origin, cache: {cached} }}
  - {{ name: range, match: {{ path_prefix: /range/ }}, upstream: origin, cache: {cached} }}
  - {{ name: hls, match: {{ path_prefix: /hls/ }}, upstream: origin, cache: {{ profile: hls, hls: {{ prefetch: 1 }}, lock_timeout: 2s, vary: [accept-encoding] }} }}
",
        origin = origin.addr
    )
}

/// What one exchange brought back.
#[derive(Debug)]
struct Got {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    /// Why the body did not arrive whole (the connection closed, a framing error).
    body_error: Option<String>,
}

/// One client connection to the edge.
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    /// hyper's connection task: an error means the edge sent bytes that are not a response
    /// (for example a body after a 204), a clean end that it closed the connection.
    task: tokio::task::JoinHandle<Result<(), hyper::Error>>,
}

async fn connect(port: u16) -> Result<Conn, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    // As many headers as an origin may send, so what Meridian forwards is seen, not refused.
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_headers(1000)
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(Conn {
        sender,
        task: tokio::spawn(conn),
    })
}

/// Why an exchange failed.
#[derive(Debug)]
enum Failed {
    /// The connection was closed before any response byte (the edge may close a keep-alive
    /// connection; a client sends again on a new one).
    Closed(String),
    /// Anything else: no answer in time, a malformed response.
    Other(String),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Closed(e) => write!(f, "connection closed before a response: {e}"),
            Failed::Other(e) => f.write_str(e),
        }
    }
}

/// Whether `e` says the connection ended (closed, or reset by a server closing it with a
/// request unread), not that something other than a response arrived on it.
fn closed_cleanly(e: &hyper::Error) -> bool {
    use std::error::Error as _;
    e.is_closed()
        || e.is_incomplete_message()
        || e.is_canceled()
        || e.source().is_some_and(|s| s.is::<std::io::Error>())
}

/// Sends one request on `conn` and reads the response to its end (or its error).
async fn exchange(
    conn: &mut Conn,
    method: &Method,
    path: &str,
    range: bool,
) -> Result<Got, Failed> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "edge.test")
        .header("accept-encoding", "gzip");
    if range {
        req = req.header("range", format!("bytes={}-{}", RANGE.0, RANGE.1));
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| Failed::Other(e.to_string()))?;
    let closed = |e: hyper::Error| {
        if closed_cleanly(&e) {
            Failed::Closed(e.to_string())
        } else {
            Failed::Other(format!("no response: {e}"))
        }
    };
    let run = async {
        conn.sender.ready().await.map_err(closed)?;
        let resp = conn.sender.send_request(req).await.map_err(closed)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        let mut body_error = None;
        let mut incoming = resp.into_body();
        while let Some(frame) = incoming.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        body.extend_from_slice(d);
                    }
                }
                Err(e) => {
                    body_error = Some(e.to_string());
                    break;
                }
            }
        }
        Ok(Got {
            status,
            headers,
            body,
            body_error,
        })
    };
    tokio::time::timeout(EXCHANGE_LIMIT, run)
        .await
        .map_err(|_| Failed::Other(format!("hung: no complete answer in {EXCHANGE_LIMIT:?}")))?
}

/// [`exchange`] on a new connection.
async fn exchange_new(port: u16, method: &Method, path: &str, range: bool) -> Result<Got, Failed> {
    let mut conn = connect(port).await.map_err(Failed::Other)?;
    exchange(&mut conn, method, path, range).await
}

/// The next GET on `conn`, which a complete response left open: if the edge closed it
/// cleanly, on a new connection (as any client does); if the connection broke because the
/// edge sent bytes that are not a response, that is the failure.
async fn exchange_again(mut conn: Conn, port: u16, path: &str, range: bool) -> Result<Got, Failed> {
    match exchange(&mut conn, &GET, path, range).await {
        Err(Failed::Closed(why)) => {
            drop(conn.sender);
            match tokio::time::timeout(Duration::from_secs(1), conn.task).await {
                Ok(Ok(Ok(()))) => exchange_new(port, &GET, path, range).await,
                Ok(Ok(Err(e))) if closed_cleanly(&e) => exchange_new(port, &GET, path, range).await,
                other => Err(Failed::Other(format!(
                    "the connection broke after a complete response: {other:?} ({why})"
                ))),
            }
        }
        other => other,
    }
}

/// Checks `got` against `want` for the entity of `path`; `None` when right.
fn check(want: Outcome, path: &str, got: &Result<Got, Failed>) -> Option<String> {
    let entity = entity(path);
    let got = match got {
        Ok(g) => g,
        Err(e) => return Some(e.to_string()),
    };
    let short = |b: &[u8]| {
        let s = String::from_utf8_lossy(&b[..b.len().min(80)]).to_string();
        format!("{} bytes {s:?}", b.len())
    };
    let describe = || {
        format!(
            "status {} body {}{}",
            got.status,
            short(&got.body),
            got.body_error
                .as_ref()
                .map(|e| format!(" then error: {e}"))
                .unwrap_or_default()
        )
    };
    let complete = got.body_error.is_none();
    let slice = &entity[RANGE.0..=RANGE.1.min(entity.len().saturating_sub(1))];
    let content_range = format!("bytes {}-{}/{}", RANGE.0, RANGE.1, entity.len());
    let header = |n: &str| {
        got.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let is_range = got.status == 206
        && complete
        && got.body == slice
        && header("content-range") == content_range;
    // The range of a fill that broke later: its bytes arrived whole, and the length is the one
    // the origin declared.
    let is_early_range = got.status == 206
        && complete
        && got.body == slice
        && header("content-range").starts_with(&format!("bytes {}-{}/", RANGE.0, RANGE.1));
    let is_body = got.status == 200 && complete && got.body == entity;
    let is_reason = |code: u16| {
        got.status == code
            && complete
            && !got.body.is_empty()
            && got.body.len() < 100
            && got.body.ends_with(b"\n")
    };
    let ok = match want {
        Body => is_body,
        Range => is_range,
        RangeOrBody => is_range || is_body,
        Head => got.status == 200 && complete && got.body.is_empty(),
        Empty(code) => got.status == code && complete && got.body.is_empty(),
        Error(code) => is_reason(code),
        Truncated => {
            is_reason(502)
                || is_reason(504)
                || (got.status == 200 && !complete && entity.starts_with(&got.body))
                || (got.status == 206 && !complete && slice.starts_with(&got.body))
                || is_early_range
        }
    };
    (!ok).then(|| format!("wanted {want:?}, got {}", describe()))
}

/// The outcome of one cell: failures, and when it ran (to name the cells a slow probe overlapped).
struct CellReport {
    name: String,
    failures: Vec<String>,
    span: (Instant, Instant),
}

/// Runs one cell: the first exchange(s), the following GET, the store check.
async fn run_cell(
    port: u16,
    origin: Arc<FaultyOrigin>,
    row: &'static Row,
    kind: Kind,
    want: Expect,
) -> CellReport {
    let start = Instant::now();
    let name = format!("{}×{}", row.case, kind.prefix());
    let mut failures = Vec::new();
    let file = if kind == Kind::Hls {
        "seg0.ts"
    } else {
        "object"
    };
    let path = faulty_origin::path(
        kind.prefix(),
        row.case,
        row.behaviour,
        kind.len(),
        kind.pause_ms(),
        file,
    );
    let range = kind == Kind::Range;

    if kind == Kind::Hls {
        let playlist = faulty_origin::path(
            kind.prefix(),
            row.case,
            row.behaviour,
            kind.len(),
            0,
            "index.m3u8",
        );
        let got = exchange_new(port, &GET, &playlist, false).await;
        if let Some(f) = check(Body, &playlist, &got) {
            failures.push(format!("playlist: {f}"));
        }
        // The edge prefetches the first segment: wait until its request reaches the origin.
        let deadline = Instant::now() + Duration::from_secs(3);
        while origin.hits(&path) == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if origin.hits(&path) == 0 {
            failures.push("the segment was not prefetched".into());
        }
    }

    // The first exchange: one client, or ten at once.
    let clients = if kind == Kind::Coalesced { 10 } else { 1 };
    let firsts = futures::future::join_all((0..clients).map(|_| {
        let (path, method) = (path.clone(), row.method.clone());
        async move {
            let mut conn = connect(port).await?;
            let got = exchange(&mut conn, &method, &path, range).await;
            Ok::<_, String>((conn, got))
        }
    }))
    .await;
    let mut kept = None;
    for (i, first) in firsts.into_iter().enumerate() {
        let (conn, got) = match first {
            Ok(pair) => pair,
            Err(e) => {
                failures.push(format!("first #{i}: {e}"));
                continue;
            }
        };
        if let Some(f) = check(want.first, &path, &got) {
            failures.push(format!("first #{i}: {f}"));
        }
        let reusable = got.as_ref().is_ok_and(|g| {
            g.body_error.is_none()
                && g.status < 500
                && g.headers
                    .get("connection")
                    .is_none_or(|v| !v.as_bytes().eq_ignore_ascii_case(b"close"))
        });
        if kept.is_none() {
            kept = Some((conn, reusable));
        }
    }
    let after_first = origin.hits(&path);

    // The following GET: on the same connection when the first response left it open (stray
    // bytes after a badly framed response would break it), else on a new one.
    let next = match kept {
        Some((conn, true)) => exchange_again(conn, port, &path, range).await,
        _ => exchange_new(port, &GET, &path, range).await,
    };
    if let Some(f) = check(want.next, &path, &next) {
        failures.push(format!("next: {f}"));
    }
    let after_next = origin.hits(&path);
    match want.store {
        Hit if after_first != 1 || after_next != 1 => failures.push(format!(
            "stored: the origin saw {after_first} request(s) after the first exchange and \
             {after_next} after the next, wanted 1 and 1"
        )),
        Origin if after_next <= after_first => failures.push(format!(
            "served from the cache: the next request did not reach the origin \
             ({after_first} then {after_next} requests)"
        )),
        _ => {}
    }
    CellReport {
        name,
        failures,
        span: (start, Instant::now()),
    }
}

/// A probe failure: when it started, how long it took, what went wrong.
type ProbeFailure = (Instant, Duration, String);

/// Probes `GET /probe/` on a new connection every 20 ms until `stop`, on its own thread
/// (blocking sockets: the test's runtime being busy cannot slow it). Returns the failures and
/// the slowest probe that answered.
fn start_probe(
    port: u16,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<ProbeFailure>, Duration, usize)> {
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut failures = Vec::new();
        let mut slowest = Duration::ZERO;
        let mut count = 0;
        // Bounded: at most 5,000 probes (100 s).
        for _ in 0..5_000 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let start = Instant::now();
            let result = (|| -> Result<(), String> {
                let mut s = StdTcpStream::connect_timeout(
                    &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                    PROBE_LIMIT,
                )
                .map_err(|e| format!("connect: {e}"))?;
                s.set_write_timeout(Some(PROBE_LIMIT)).ok();
                s.write_all(
                    b"GET /probe/ping HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n",
                )
                .map_err(|e| format!("write: {e}"))?;
                let mut out = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let left = PROBE_LIMIT.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        return Err("no complete answer in time".into());
                    }
                    s.set_read_timeout(Some(left)).ok();
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => out.extend_from_slice(&buf[..n]),
                        Err(e) => return Err(format!("read: {e}")),
                    }
                }
                let text = String::from_utf8_lossy(&out);
                if !text.starts_with("HTTP/1.1 200") {
                    return Err(format!("answer: {text:?}"));
                }
                Ok(())
            })();
            let took = start.elapsed();
            count += 1;
            match result {
                Ok(()) if took <= PROBE_LIMIT => slowest = slowest.max(took),
                Ok(()) => failures.push((start, took, "slow".to_string())),
                Err(e) => failures.push((start, took, e)),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (failures, slowest, count)
    })
}

/// The probe route's upstream, on its own runtime and thread so the test's load cannot slow
/// it; it stops when the returned sender is dropped.
fn start_probe_upstream() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let up = Upstream::start("probe").await;
            addr_tx.send(up.addr).expect("send address");
            let _ = stop_rx.await;
        });
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("probe upstream started");
    (addr, stop_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_origin_behaviour_on_every_route_kind() {
    let origin = Arc::new(FaultyOrigin::start().await);
    let (probe_addr, _probe_upstream) = start_probe_upstream();
    let port = free_port();
    let edge = Meridian::start(&edge_config(port, &origin, probe_addr));

    let stop = Arc::new(AtomicBool::new(false));
    let probe = start_probe(port, stop.clone());
    let began = Instant::now();
    // At most this many cells at once: the probe measures a stalled worker, not the queue of
    // a hundred cells' requests in front of one thread.
    let running = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CELLS));
    let mut cells = Vec::new();
    for row in MATRIX {
        for (k, kind) in Kind::ALL.into_iter().enumerate() {
            let want = row.cells[k];
            let origin = origin.clone();
            let running = running.clone();
            cells.push(tokio::spawn(async move {
                let _slot = running.acquire_owned().await.expect("semaphore");
                run_cell(port, origin, row, kind, want).await
            }));
        }
    }
    let mut reports = Vec::new();
    for cell in cells {
        reports.push(cell.await.expect("cell task"));
    }
    let took = began.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (probe_failures, slowest, probes) = probe.join().expect("probe thread");

    let mut problems: Vec<String> = reports
        .iter()
        .flat_map(|r| r.failures.iter().map(move |f| format!("{}: {f}", r.name)))
        .collect();
    for (at, took, why) in &probe_failures {
        let during: Vec<&str> = reports
            .iter()
            .filter(|r| r.span.0 <= *at + *took && *at <= r.span.1)
            .map(|r| r.name.as_str())
            .collect();
        problems.push(format!(
            "probe at +{:?} took {took:?}: {why} (cells running: {})",
            at.saturating_duration_since(began),
            during.len()
        ));
    }
    let mut edge = edge;
    if !edge.running() {
        problems.push("meridian exited".into());
    }
    let stderr = std::fs::read_to_string(&edge.stderr).unwrap_or_default();
    if stderr.contains("panicked") {
        problems.push(format!("meridian panicked:\n{stderr}"));
    }
    eprintln!(
        "origin matrix: {} cells in {took:?}; {probes} probes, slowest {slowest:?}",
        reports.len()
    );
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
