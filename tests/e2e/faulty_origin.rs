//! A scriptable misbehaving HTTP/1 origin for the origin-behaviour matrix (`origins.rs`).
//!
//! It is raw tokio TCP, not an HTTP library, because the point is to break HTTP's framing in
//! the ways real origins do: lengths that lie, bad chunks, bodies on 204/304, resets, silence.
//! One origin serves every case: the request path picks the behaviour,
//!
//! ```text
//! /{kind}/{case}/{behaviour}/{len}/{pause_ms}/{file}
//! ```
//!
//! where `behaviour` is a [`Behaviour`] name, `len` the entity's length in bytes, `pause_ms` a
//! pause between the response head and its body (so waiters join a fill in progress), and
//! `kind`/`case` only make the path distinct. A `file` ending in `.m3u8` gets a VOD playlist
//! of three segments (`seg0.ts`…) in the same directory, whatever the behaviour: HLS cases
//! fault on their segments. Requests are counted per path as soon as their head arrives, so a
//! test can tell whether a response came from a cache.
//!
//! A connection that can no longer carry a response — one the origin sent stray bytes on
//! (after a 204, a 304, a HEAD response or past a `Content-Length`), or one it means to close
//! (a keep-alive race) — is closed when the next request arrives on it, and that request is
//! not counted: no response can come of it, and it is usually another case's. So counts stay
//! exact while the cases run at once.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the origin does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// `Content-Length` and the body.
    ContentLength,
    /// `Transfer-Encoding: chunked`, three chunks.
    Chunked,
    /// Chunked, with a `Trailer` header and trailer fields after the last chunk.
    ChunkedTrailers,
    /// Chunked, with chunk extensions on every size line.
    ChunkExtensions,
    /// HTTP/1.0 without a length: the body ends when the connection closes.
    Close10,
    /// HTTP/1.1 with `Connection: close` and no length: the body ends with the connection.
    Close11,
    /// `Content-Length` shorter than what is sent: 8 more bytes follow the body.
    ShortLength,
    /// `Content-Length` 100 bytes longer than the body, then the connection closes.
    LongLength,
    /// `Content-Length` 100 bytes longer than the body, then nothing (the connection stays).
    StallMidBody,
    /// Chunked: half the body, then a size line that is not hex.
    InvalidChunk,
    /// `100 Continue`, then the response.
    Continue100,
    /// `103 Early Hints` with a `Link`, then the response.
    EarlyHints103,
    /// `204 No Content` followed by 8 bytes of body (no length).
    NoContentWithBody,
    /// `304 Not Modified` with the entity's `Content-Length`, followed by the entity.
    NotModifiedWithBody,
    /// `Content-Length`; a HEAD gets the body too.
    HeadWithBody,
    /// The entity is gzip (`Content-Encoding: gzip`, `Vary: Accept-Encoding`), chunked.
    Gzip,
    /// `Content-Length`; the last 8 bytes one every 100 ms.
    Drip,
    /// `Content-Length` 100 bytes longer than the body, then a TCP reset.
    ResetMidBody,
    /// 100 KiB of response headers (100 headers of 1 KiB), then the response.
    HugeHeaders,
    /// Reads the request and never answers.
    Silent,
    /// Reads the request and closes the connection without a byte.
    Empty,
    /// Answers with keep-alive, then closes the connection when the next request arrives on it
    /// (the race with a proxy reusing a pooled connection, always lost).
    KeepAliveRace,
    /// Answers with keep-alive, then closes the connection after 20 ms idle.
    KeepAliveIdleClose,
}

impl Behaviour {
    /// Every behaviour with its path name.
    pub const ALL: [(&'static str, Behaviour); 23] = [
        ("content-length", Behaviour::ContentLength),
        ("chunked", Behaviour::Chunked),
        ("chunked-trailers", Behaviour::ChunkedTrailers),
        ("chunk-extensions", Behaviour::ChunkExtensions),
        ("close-http10", Behaviour::Close10),
        ("close-http11", Behaviour::Close11),
        ("short-length", Behaviour::ShortLength),
        ("long-length", Behaviour::LongLength),
        ("stall-mid-body", Behaviour::StallMidBody),
        ("invalid-chunk", Behaviour::InvalidChunk),
        ("continue-100", Behaviour::Continue100),
        ("early-hints-103", Behaviour::EarlyHints103),
        ("204-with-body", Behaviour::NoContentWithBody),
        ("304-with-body", Behaviour::NotModifiedWithBody),
        ("head-with-body", Behaviour::HeadWithBody),
        ("gzip", Behaviour::Gzip),
        ("drip", Behaviour::Drip),
        ("reset-mid-body", Behaviour::ResetMidBody),
        ("huge-headers", Behaviour::HugeHeaders),
        ("silent", Behaviour::Silent),
        ("empty", Behaviour::Empty),
        ("keepalive-race", Behaviour::KeepAliveRace),
        ("keepalive-idle-close", Behaviour::KeepAliveIdleClose),
    ];

    /// The behaviour named `name` in a path.
    pub fn parse(name: &str) -> Option<Behaviour> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
    }

    /// The name of this behaviour in a path.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map(|(n, _)| *n)
            .expect("every behaviour is named")
    }
}

/// The path of a request for `behaviour`, distinct per `kind` and `case`.
pub fn path(
    kind: &str,
    case: &str,
    behaviour: Behaviour,
    len: usize,
    pause_ms: u64,
    file: &str,
) -> String {
    format!(
        "/{kind}/{case}/{}/{len}/{pause_ms}/{file}",
        behaviour.name()
    )
}

/// What a path asks of the origin.
struct Script {
    behaviour: Behaviour,
    len: usize,
    pause: Duration,
    playlist: bool,
}

impl Script {
    fn of(path: &str) -> Option<Script> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let [_kind, _case, behaviour, len, pause, file] = parts[..] else {
            return None;
        };
        Some(Script {
            behaviour: Behaviour::parse(behaviour)?,
            len: len.parse().ok().filter(|l| *l <= 1 << 20)?,
            pause: Duration::from_millis(pause.parse().ok().filter(|p| *p <= 5_000)?),
            playlist: file.ends_with(".m3u8"),
        })
    }
}

/// The representation the origin means to send for `path` (for a `gzip` behaviour: the
/// compressed bytes): a case expecting a body expects exactly these bytes. Each path has its
/// own bytes, so a response served for the wrong path cannot pass.
pub fn entity(path: &str) -> Vec<u8> {
    let Some(script) = Script::of(path) else {
        return Vec::new();
    };
    if script.playlist {
        return PLAYLIST.as_bytes().to_vec();
    }
    let plain: Vec<u8> = path.bytes().chain(*b"|").cycle().take(script.len).collect();
    if script.behaviour != Behaviour::Gzip {
        return plain;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&plain).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
}

/// The media playlist served for any `*.m3u8` path: finished (VOD), three 1 s segments.
const PLAYLIST: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:1.0,\nseg0.ts\n#EXTINF:1.0,\nseg1.ts\n#EXTINF:1.0,\nseg2.ts\n#EXT-X-ENDLIST\n";

/// Longest request head the origin reads.
const MAX_HEAD: usize = 64 * 1024;

/// How long a connection the origin holds open (silent, stalled) lives at most.
const HOLD: Duration = Duration::from_secs(10);

/// Bytes that follow a body they do not belong to.
const GARBAGE: &[u8] = b"GARBAGE!";

/// A running faulty origin.
pub struct FaultyOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultyOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultyOrigin {
    /// Starts the origin on an ephemeral loopback port.
    pub async fn start() -> FaultyOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let counted = hits.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            connections.spawn(serve(stream, counted.clone()));
                        }
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        FaultyOrigin { addr, hits, task }
    }

    /// Requests whose head arrived for `path` (the path part of the target only).
    pub fn hits(&self, path: &str) -> usize {
        *self.hits.lock().expect("lock").get(path).unwrap_or(&0)
    }
}

/// A request head as the origin needs it.
struct Head {
    method: String,
    path: String,
}

/// Reads one request head from `stream`, keeping bytes past it in `buf`. `None` at the end of
/// the stream, on a malformed head or one over [`MAX_HEAD`]; `idle` bounds the wait for its
/// first byte.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, idle: Duration) -> Option<Head> {
    let mut first = true;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
            let head = Head {
                method: req.method?.to_string(),
                path: req.path?.split('?').next()?.to_string(),
            };
            // GET and HEAD from a proxy carry no body: whatever follows is the next request.
            buf.drain(..n);
            return Some(head);
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 8192];
        let wait = if first && buf.is_empty() { idle } else { HOLD };
        first = false;
        let n = tokio::time::timeout(wait, stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Serves one connection until a behaviour ends it or the peer closes.
async fn serve(mut stream: TcpStream, hits: Arc<Mutex<HashMap<String, usize>>>) {
    let mut buf = Vec::new();
    let mut idle = HOLD;
    // Set once the connection can no longer carry a response: it was advertised as reusable
    // but the origin means to close it (a keep-alive race), or stray bytes were sent on it
    // that a proxy would read as the start of the next response.
    let mut spoilt = false;
    while let Some(head) = read_head(&mut stream, &mut buf, idle).await {
        if spoilt {
            // Closed at the next request, which is not counted: no response can come of it,
            // and it is usually another case's.
            return;
        }
        *hits
            .lock()
            .expect("lock")
            .entry(head.path.clone())
            .or_insert(0) += 1;
        let Some(script) = Script::of(&head.path) else {
            let _ = stream
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await;
            continue;
        };
        let head_only = head.method == "HEAD";
        match respond(&mut stream, &head.path, &script, head_only).await {
            Ok(Next::KeepAlive) => {}
            Ok(Next::Spoilt) => spoilt = true,
            Ok(Next::Close) | Err(_) => return,
        }
        idle = match script.behaviour {
            Behaviour::KeepAliveIdleClose if !script.playlist => Duration::from_millis(20),
            _ => HOLD,
        };
    }
}

/// What happens to the connection after a response.
enum Next {
    /// It serves the next request.
    KeepAlive,
    /// It is closed when the next request arrives.
    Spoilt,
    /// It is closed now.
    Close,
}

/// The response head of a 200 with `fields` (each ending in CRLF) and the cache headers.
fn ok_head(version: &str, fields: &str) -> String {
    format!(
        "HTTP/{version} 200 OK\r\nCache-Control: max-age=3600\r\nContent-Type: application/octet-stream\r\n{fields}\r\n"
    )
}

/// `body` as chunks (three, or one when short), each size line followed by `ext`.
fn chunked(body: &[u8], ext: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.chunks(body.len().div_ceil(3).max(1)) {
        out.extend_from_slice(format!("{:x}{ext}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Writes the response `script` asks for.
async fn respond(
    stream: &mut TcpStream,
    path: &str,
    script: &Script,
    head_only: bool,
) -> std::io::Result<Next> {
    let body = entity(path);
    let len = body.len();
    if script.playlist {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.apple.mpegurl\r\nContent-Length: {len}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await?;
        if !head_only {
            stream.write_all(&body).await?;
        }
        return Ok(Next::KeepAlive);
    }
    // Writes the head, pauses, then (unless a HEAD) the body parts.
    macro_rules! send {
        ($head:expr, $($part:expr),*) => {
            send(stream, script, head_only, &$head, &[$(&$part[..]),*]).await?
        };
    }
    let cl = |n: usize| format!("Content-Length: {n}\r\n");
    let half = len / 2;
    match script.behaviour {
        Behaviour::ContentLength | Behaviour::KeepAliveIdleClose => {
            send!(ok_head("1.1", &cl(len)), body);
        }
        Behaviour::KeepAliveRace => {
            send!(ok_head("1.1", &cl(len)), body);
            stream.flush().await?;
            return Ok(Next::Spoilt);
        }
        Behaviour::Chunked => {
            send!(
                ok_head("1.1", "Transfer-Encoding: chunked\r\n"),
                chunked(&body, ""),
                b"0\r\n\r\n"
            );
        }
        Behaviour::ChunkedTrailers => {
            send!(
                ok_head("1.1", "Transfer-Encoding: chunked\r\nTrailer: x-digest\r\n"),
                chunked(&body, ""),
                b"0\r\nx-digest: sha-256=:abc=:\r\n\r\n"
            );
        }
        Behaviour::ChunkExtensions => {
            send!(
                ok_head("1.1", "Transfer-Encoding: chunked\r\n"),
                chunked(&body, ";part=1;last"),
                b"0;end=\"yes\"\r\n\r\n"
            );
        }
        Behaviour::Close10 => {
            send!(ok_head("1.0", ""), body);
            return Ok(Next::Close);
        }
        Behaviour::Close11 => {
            send!(ok_head("1.1", "Connection: close\r\n"), body);
            return Ok(Next::Close);
        }
        Behaviour::ShortLength => {
            send!(ok_head("1.1", &cl(len)), body, GARBAGE);
            stream.flush().await?;
            return Ok(Next::Spoilt);
        }
        Behaviour::LongLength => {
            send!(ok_head("1.1", &cl(len + 100)), body);
            return Ok(Next::Close);
        }
        Behaviour::StallMidBody => {
            send!(ok_head("1.1", &cl(len + 100)), body);
            hold(stream).await;
            return Ok(Next::Close);
        }
        Behaviour::InvalidChunk => {
            send!(
                ok_head("1.1", "Transfer-Encoding: chunked\r\n"),
                chunked(&body[..half], ""),
                b"zz\r\nnot a chunk\r\n"
            );
            hold(stream).await;
            return Ok(Next::Close);
        }
        Behaviour::Continue100 => {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            send!(ok_head("1.1", &cl(len)), body);
        }
        Behaviour::EarlyHints103 => {
            stream
                .write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
                .await?;
            send!(ok_head("1.1", &cl(len)), body);
        }
        Behaviour::NoContentWithBody => {
            let head = "HTTP/1.1 204 No Content\r\nCache-Control: max-age=3600\r\n\r\n";
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(GARBAGE).await?;
            stream.flush().await?;
            return Ok(Next::Spoilt);
        }
        Behaviour::NotModifiedWithBody => {
            let head = format!(
                "HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=3600\r\n{}\r\n",
                cl(len)
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await?;
            stream.flush().await?;
            return Ok(Next::Spoilt);
        }
        Behaviour::HeadWithBody => {
            stream
                .write_all(ok_head("1.1", &cl(len)).as_bytes())
                .await?;
            stream.write_all(&body).await?;
            stream.flush().await?;
            return Ok(if head_only {
                Next::Spoilt
            } else {
                Next::KeepAlive
            });
        }
        Behaviour::Gzip => {
            send!(
                ok_head(
                    "1.1",
                    "Transfer-Encoding: chunked\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\n"
                ),
                chunked(&body, ""),
                b"0\r\n\r\n"
            );
        }
        Behaviour::Drip => {
            let fast = len.saturating_sub(8);
            send!(ok_head("1.1", &cl(len)), body[..fast]);
            if !head_only {
                for byte in &body[fast..] {
                    stream.flush().await?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    stream.write_all(std::slice::from_ref(byte)).await?;
                }
            }
        }
        Behaviour::ResetMidBody => {
            send!(ok_head("1.1", &cl(len + 100)), body[..half]);
            stream.flush().await?;
            // Let the bytes leave before the reset discards what is still queued.
            tokio::time::sleep(Duration::from_millis(20)).await;
            stream.set_zero_linger()?;
            return Ok(Next::Close);
        }
        Behaviour::HugeHeaders => {
            let filler: String = (0..100)
                .map(|i| format!("x-filler-{i:03}: {}\r\n", "a".repeat(1000)))
                .collect();
            send!(ok_head("1.1", &format!("{filler}{}", cl(len))), body);
        }
        Behaviour::Silent => {
            hold(stream).await;
            return Ok(Next::Close);
        }
        Behaviour::Empty => return Ok(Next::Close),
    }
    stream.flush().await?;
    Ok(Next::KeepAlive)
}

/// Writes `head`, pauses as `script` says, then (unless `head_only`) the body `parts`.
async fn send(
    stream: &mut TcpStream,
    script: &Script,
    head_only: bool,
    head: &str,
    parts: &[&[u8]],
) -> std::io::Result<()> {
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;
    if !script.pause.is_zero() {
        tokio::time::sleep(script.pause).await;
    }
    if !head_only {
        for part in parts {
            stream.write_all(part).await?;
        }
    }
    Ok(())
}

/// Keeps the connection open without writing until the peer closes it or [`HOLD`] passes.
async fn hold(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(HOLD, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
