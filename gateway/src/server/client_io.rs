//! A plain client connection: the accepted TCP socket, read ahead when a request arrives and
//! written through a buffer of one MSS.
//!
//! The keep-alive loop ([`super::connections`]) waits for each request head with
//! [`ClientConn::read_head`] before handing the connection to pingora. That wait holds no
//! buffer while nothing arrives: it waits for the socket to become readable, then reads
//! whatever the client sent (a request, usually whole) into a buffer allocated only then and
//! keeps those bytes, which pingora's first read gets. One `recv` per request, as nginx; and an
//! idle connection still holds nothing but the socket. Because the whole head is read before
//! pingora sees it, the time a head may take is bounded there (`client_header_timeout`).
//!
//! No read returns bytes past the end of a request head or of a chunked body (the first
//! `\r\n\r\n` after what was read before, even one split across two reads): what follows is
//! the next, pipelined request, which stays here where the keep-alive loop finds it. pingora
//! would otherwise keep it as a "pipelined prefix" that the loop cannot see, and wait for the
//! client instead of answering it.
//!
//! Writes are buffered up to one MSS, so a small response (header and body) leaves in one
//! `send`. A larger body does not go through the buffer: it leaves in one vectored `send` with
//! the header still buffered before it (a tokio `BufWriter` would send the header alone first),
//! so a 1 MiB cache hit is one `writev`, as Varnish's.
//!
//! pingora's own `Stream` is not used for these connections: it keeps per-read timing and
//! peeks by reading and pushing back, and the socket itself is all this needs.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::SystemTime;

use async_trait::async_trait;
use futures::FutureExt;
use memchr::memmem;
use pingora::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The write buffer: one MSS, as pingora's own buffered streams.
const WRITE_BUFFER: usize = DEFAULT_L4_WRITE_BUFFER_SIZE;
/// The most one read-ahead takes from the socket: pingora's first read of a request head.
const READ_AHEAD: usize = 4096;
/// The most of a request head read ahead while waiting for its end: pingora refuses a head
/// larger than this (400) anyway.
const MAX_HEAD: usize = 1 << 20;
/// A partial head longer than this is not checked for early refusal (see [`Head::Refused`]).
const CHECKED_HEAD: usize = 16 * 1024;
/// The blank line that ends a request head, and a chunked body.
const BLANK_LINE: &[u8] = b"\r\n\r\n";

/// An accepted client TCP connection (see the module docs).
#[derive(Debug)]
pub struct ClientConn {
    tcp: TcpStream,
    /// Bytes read ahead while the keep-alive loop waits for a request, or read from the socket
    /// past a blank line; reads return them (from `read_at` on) before anything more from the
    /// socket. Empty, without capacity, once they are all returned.
    read_ahead: Vec<u8>,
    read_at: usize,
    /// Bytes written and not yet sent: at most [`WRITE_BUFFER`] of them. They leave on a flush,
    /// or in one vectored send together with the next write that does not fit beside them.
    pending: Vec<u8>,
    /// The last bytes reads returned (at most three) since the last blank line, to find one
    /// that straddles two reads.
    tail: Tail,
    /// When set, reads fail with `TimedOut` once it passes, until a blank line is returned: the
    /// bound on a request head that pingora reads itself (see [`ClientConn::bound_head`]).
    head_deadline: Option<Pin<Box<Sleep>>>,
    accepted_at: SystemTime,
    socket: Arc<SocketDigest>,
    proxy: Option<Arc<ProxyDigest>>,
}

impl ClientConn {
    /// Wraps a socket accepted from `peer`.
    pub fn new(tcp: TcpStream, peer: SocketAddr) -> Self {
        let socket = SocketDigest::from_raw_fd(tcp.as_raw_fd());
        // A new cell: the set cannot fail.
        let _ = socket.peer_addr.set(Some(peer.into()));
        Self {
            tcp,
            read_ahead: Vec::new(),
            read_at: 0,
            pending: Vec::new(),
            tail: Tail::default(),
            head_deadline: None,
            accepted_at: SystemTime::now(),
            socket: Arc::new(socket),
            proxy: None,
        }
    }

    /// The bytes read ahead and not yet returned.
    fn read_ahead(&self) -> &[u8] {
        &self.read_ahead[self.read_at..]
    }

    /// Waits until a request head is read ahead whole, or bytes that pingora refuses without
    /// waiting for more (see [`Head`]). Fails with `UnexpectedEof` when the client closed.
    pub async fn read_head(&mut self) -> io::Result<Head> {
        loop {
            match Head::of(self.read_ahead()) {
                Head::Partial => self.read_more().await?,
                ready => return Ok(ready),
            }
        }
    }

    /// Reads now what the socket holds, never waiting (the usual case needs no timer), and
    /// tells how far the request head is read ahead.
    pub fn head_now(&mut self) -> io::Result<Head> {
        match Head::of(self.read_ahead()) {
            Head::Partial => {
                self.read_now()?;
                Ok(Head::of(self.read_ahead()))
            }
            ready => Ok(ready),
        }
    }

    /// Whether a byte of a request is read ahead (empty lines before a request do not count).
    pub fn has_request_bytes(&self) -> bool {
        self.read_ahead()
            .iter()
            .any(|b| !matches!(b, b'\r' | b'\n'))
    }

    /// Bounds the reads of a request head handed to pingora before its end arrived: once
    /// `deadline` passes, reads fail until the head's end has been returned.
    pub fn bound_head(&mut self, deadline: Instant) {
        self.head_deadline = Some(Box::pin(tokio::time::sleep_until(deadline)));
    }

    /// Waits until the socket has data and reads what it holds onto the read-ahead. Fails with
    /// `UnexpectedEof` when the client closed.
    async fn read_more(&mut self) -> io::Result<()> {
        loop {
            self.tcp.readable().await?;
            if self.read_now()? {
                return Ok(());
            }
        }
    }

    /// Reads what the socket holds now onto the read-ahead; `false` when it held nothing. It
    /// reads straight into the read-ahead's spare capacity, which is allocated only now that
    /// the socket is readable, and freed again when the read finds nothing.
    fn read_now(&mut self) -> io::Result<bool> {
        self.read_ahead.reserve(READ_AHEAD);
        match self.tcp.try_read_buf(&mut self.read_ahead) {
            Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if self.read_ahead.is_empty() {
                    // Nothing kept while the connection waits again.
                    self.read_ahead = Vec::new();
                }
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends what is pending together with `bufs`, in one vectored write when the socket takes
    /// it all. Ready with how many bytes *of `bufs`* were sent (0 only when `bufs` is empty),
    /// once nothing is pending any more.
    fn poll_write_behind_pending(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        while !self.pending.is_empty() {
            let mut slices = Vec::with_capacity(bufs.len() + 1);
            slices.push(io::IoSlice::new(&self.pending));
            slices.extend_from_slice(bufs);
            let sent = ready!(Pin::new(&mut self.tcp).poll_write_vectored(cx, &slices))?;
            if sent == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if sent < self.pending.len() {
                self.pending.drain(..sent);
                continue;
            }
            let of_bufs = sent - self.pending.len();
            self.pending.clear();
            if of_bufs > 0 {
                return Poll::Ready(Ok(of_bufs));
            }
        }
        match bufs {
            [] => Poll::Ready(Ok(0)),
            [one] if one.is_empty() => Poll::Ready(Ok(0)),
            [one] => Pin::new(&mut self.tcp).poll_write(cx, one),
            _ => Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs),
        }
    }
}

/// The last bytes (at most three) returned since the last blank line.
#[derive(Debug, Default)]
struct Tail {
    bytes: [u8; 3],
    len: usize,
}

impl Tail {
    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Records `returned`, which ends at a blank line when `ended` (then nothing is kept: the
    /// next blank line starts after it).
    fn returned(&mut self, returned: &[u8], ended: bool) {
        if ended {
            self.len = 0;
            return;
        }
        let mut last = [0u8; 6];
        let kept = self.len;
        last[..kept].copy_from_slice(&self.bytes[..kept]);
        let tail_of_returned = &returned[returned.len().saturating_sub(3)..];
        last[kept..kept + tail_of_returned.len()].copy_from_slice(tail_of_returned);
        let all = kept + tail_of_returned.len();
        self.len = all.min(3);
        self.bytes[..self.len].copy_from_slice(&last[all - self.len..all]);
    }
}

/// Where the first blank line (`\r\n\r\n`) ends in `new`, counting one that began in `tail`,
/// the bytes just before it.
fn end_of_blank_line(tail: &[u8], new: &[u8]) -> Option<usize> {
    let mut window = [0u8; 6];
    let start = new.len().min(3);
    window[..tail.len()].copy_from_slice(tail);
    window[tail.len()..tail.len() + start].copy_from_slice(&new[..start]);
    // A blank line there ends within `new`: `tail` alone is shorter than one.
    if let Some(at) = memmem::find(&window[..tail.len() + start], BLANK_LINE) {
        return Some(at + BLANK_LINE.len() - tail.len());
    }
    memmem::find(new, BLANK_LINE).map(|at| at + BLANK_LINE.len())
}

/// How far the bytes of a request read ahead go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Not a whole head yet.
    Partial,
    /// A whole head: ended by a blank line (or by a bare-LF one, which the guard refuses).
    Whole,
    /// Bytes pingora refuses (400) without waiting for more: more than it takes
    /// ([`MAX_HEAD`]), or a start that cannot become a request (a TLS handshake on a plain
    /// port, say). Without this, such a client would wait for the header timeout.
    Refused,
}

impl Head {
    /// How far `ahead` goes.
    fn of(ahead: &[u8]) -> Head {
        if ahead.len() >= MAX_HEAD {
            return Head::Refused;
        }
        // Empty lines before a request line are ignored (RFC 9112 §2.2).
        let Some(start) = ahead.iter().position(|b| !matches!(b, b'\r' | b'\n')) else {
            return Head::Partial;
        };
        let head = &ahead[start..];
        if memmem::find(head, b"\n\r\n").is_some() || memmem::find(head, b"\n\n").is_some() {
            return Head::Whole;
        }
        if head.len() > CHECKED_HEAD {
            return Head::Partial;
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        match httparse::Request::new(&mut headers).parse(head) {
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => Head::Partial,
            Ok(httparse::Status::Complete(_)) => Head::Whole,
            Err(_) => Head::Refused,
        }
    }
}

impl Drop for ClientConn {
    fn drop(&mut self) {
        // As pingora's own stream does on drop: send what is buffered if the socket takes it
        // now (pingora flushes at the end of each response, so this is normally empty).
        let _ = self.flush().now_or_never();
    }
}

impl AsyncRead for ClientConn {
    /// Reads up to the next blank line at most (see the module docs): from the read-ahead while
    /// it holds bytes, else from the socket, keeping what a read brought past a blank line.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.read_at < this.read_ahead.len() {
            let ahead = &this.read_ahead[this.read_at..];
            let end = end_of_blank_line(this.tail.bytes(), ahead);
            let n = end.unwrap_or(ahead.len()).min(buf.remaining());
            buf.put_slice(&ahead[..n]);
            let ended = end == Some(n);
            this.tail.returned(&ahead[..n], ended);
            if ended {
                this.head_deadline = None;
            }
            this.read_at += n;
            if this.read_at == this.read_ahead.len() {
                // Nothing kept while the connection idles until its next request.
                this.read_ahead = Vec::new();
                this.read_at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(deadline) = this.head_deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head timeout",
                )));
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        let end = end_of_blank_line(this.tail.bytes(), read);
        let kept = match end {
            Some(end) if end < read.len() => {
                // The start of a next request: it waits here for the keep-alive loop.
                this.read_ahead.extend_from_slice(&read[end..]);
                this.read_at = 0;
                end
            }
            _ => read.len(),
        };
        let ended = end == Some(kept);
        this.tail.returned(&read[..kept], ended);
        if ended {
            this.head_deadline = None;
        }
        buf.set_filled(before + kept);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ClientConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.len() + buf.len() <= WRITE_BUFFER {
            self.pending.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        // A response header still pending leaves in the same send as the body that follows.
        self.poll_write_behind_pending(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.pending.len() + total <= WRITE_BUFFER {
            for b in bufs {
                self.pending.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        self.poll_write_behind_pending(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_behind_pending(cx, &[]))?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for ClientConn {
    async fn shutdown(&mut self) {
        if let Err(e) = AsyncWriteExt::shutdown(self).await {
            log::debug!("shutting a client connection down: {e}");
        }
    }
}

impl UniqueID for ClientConn {
    fn id(&self) -> UniqueIDType {
        self.tcp.as_raw_fd()
    }
}

impl Ssl for ClientConn {}

#[async_trait]
impl Peek for ClientConn {
    /// Waits until `buf.len()` bytes have arrived and copies them, leaving them to be read.
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        while self.read_ahead().len() < buf.len() {
            self.read_more().await?;
        }
        buf.copy_from_slice(&self.read_ahead()[..buf.len()]);
        Ok(true)
    }
}

impl GetTimingDigest for ClientConn {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        vec![Some(TimingDigest {
            established_ts: self.accepted_at,
            ..TimingDigest::default()
        })]
    }
}

impl GetProxyDigest for ClientConn {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.proxy.clone()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.proxy = Some(Arc::new(digest));
    }
}

impl GetSocketDigest for ClientConn {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        Some(self.socket.clone())
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.socket = Arc::new(digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair: the client end, and the server end wrapped in a [`ClientConn`].
    async fn pair() -> (TcpStream, ClientConn) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        (client, ClientConn::new(server, peer))
    }

    #[tokio::test]
    async fn a_peeked_byte_comes_back_with_the_rest_in_one_read() {
        let (mut client, mut conn) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut first = [0u8; 1];
        assert!(conn.try_peek(&mut first).await.unwrap());
        assert_eq!(&first, b"G");
        // Peeking again returns the same byte.
        assert!(conn.try_peek(&mut first).await.unwrap());
        assert_eq!(&first, b"G");
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn a_longer_peek_after_a_byte_keeps_the_order() {
        let (mut client, mut conn) = pair().await;
        client.write_all(b"PRI * HTTP/2.0").await.unwrap();
        let mut first = [0u8; 1];
        conn.try_peek(&mut first).await.unwrap();
        let mut head = [0u8; 3];
        assert!(conn.try_peek(&mut head).await.unwrap());
        assert_eq!(&head, b"PRI");
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while got.len() < 14 {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"PRI * HTTP/2.0");
    }

    #[tokio::test]
    async fn small_and_large_writes_arrive_whole_and_in_order() {
        let (mut client, mut conn) = pair().await;
        // Sizes below, at and far above the buffer, so that writes are buffered, sent behind
        // what is pending, and cut short by a full socket while the reader lags.
        let sizes = [
            10,
            WRITE_BUFFER - 10,
            5,
            3 * 1024 * 1024,
            1,
            WRITE_BUFFER,
            700_000,
            3,
        ];
        let mut expected = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            expected.extend((0..*size).map(|j| (i * 31 + j % 251) as u8));
        }
        let to_send = expected.clone();
        let writer = tokio::spawn(async move {
            let mut at = 0;
            for (i, size) in sizes.iter().enumerate() {
                let chunk = &to_send[at..at + size];
                if i % 2 == 0 {
                    conn.write_all(chunk).await.unwrap();
                } else {
                    let (a, b) = chunk.split_at(size / 2);
                    let mut slices = [io::IoSlice::new(a), io::IoSlice::new(b)];
                    let mut slices = &mut slices[..];
                    while !slices.is_empty() {
                        let n = conn.write_vectored(slices).await.unwrap();
                        io::IoSlice::advance_slices(&mut slices, n);
                    }
                }
                at += size;
            }
            conn.flush().await.unwrap();
            conn
        });
        let mut got = vec![0u8; expected.len()];
        client.read_exact(&mut got).await.unwrap();
        assert!(got == expected, "the bytes differ");
        let _conn = writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_small_write_waits_for_a_flush() {
        let (mut client, mut conn) = pair().await;
        conn.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let early = tokio::time::timeout(Duration::from_millis(50), client.read(&mut buf)).await;
        assert!(early.is_err(), "a buffered write was sent before the flush");
        conn.flush().await.unwrap();
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"HTTP/1.1 200 OK\r\n");
    }

    #[tokio::test]
    async fn a_request_larger_than_one_read_ahead_is_read_whole_and_then_nothing_is_kept() {
        let (mut client, mut conn) = pair().await;
        let request: Vec<u8> = (0..3 * READ_AHEAD + 17).map(|i| (i % 253) as u8).collect();
        client.write_all(&request).await.unwrap();
        let mut first = [0u8; 1];
        assert!(conn.try_peek(&mut first).await.unwrap());
        assert_eq!(first[0], request[0]);
        let mut got = vec![0u8; request.len()];
        conn.read_exact(&mut got).await.unwrap();
        assert!(got == request, "the bytes differ");
        assert_eq!(
            conn.read_ahead.capacity(),
            0,
            "a drained read-ahead is freed"
        );
    }

    #[tokio::test]
    async fn pipelined_request_heads_are_read_one_at_a_time() {
        let (mut client, mut conn) = pair().await;
        let one = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n";
        let two = b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
        client
            .write_all(&[&one[..], &two[..]].concat())
            .await
            .unwrap();
        let mut first = [0u8; 1];
        conn.try_peek(&mut first).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], one);
        // The next request waits in the connection: a peek finds it without the socket.
        assert!(conn.try_peek(&mut first).await.unwrap());
        let n = conn.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], two);
    }

    #[tokio::test]
    async fn the_socket_digest_knows_the_client_address() {
        let (client, conn) = pair().await;
        let digest = conn.get_socket_digest().unwrap();
        let peer = digest.peer_addr().and_then(|a| a.as_inet()).copied();
        assert_eq!(peer, Some(client.local_addr().unwrap()));
    }

    #[tokio::test]
    async fn peeking_a_closed_connection_fails() {
        let (client, mut conn) = pair().await;
        drop(client);
        let mut first = [0u8; 1];
        assert!(conn.try_peek(&mut first).await.is_err());
    }

    /// Reads `conn` until `expected` bytes came, each read's bytes apart.
    async fn reads(conn: &mut ClientConn, expected: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut total = 0;
        while total < expected {
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "end of stream after {total} bytes");
            total += n;
            out.push(buf[..n].to_vec());
        }
        out
    }

    #[tokio::test]
    async fn a_read_from_the_socket_stops_at_a_blank_line_and_keeps_the_rest() {
        let (mut client, mut conn) = pair().await;
        // A chunked body's end and the next request, straight from the socket.
        let body_end = b"3\r\nabc\r\n0\r\n\r\n";
        let next = b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
        client
            .write_all(&[&body_end[..], &next[..]].concat())
            .await
            .unwrap();
        conn.tcp.readable().await.unwrap();
        let got = reads(&mut conn, body_end.len()).await;
        assert_eq!(got.concat(), body_end);
        // The next request waits here: its head is whole at once.
        assert_eq!(conn.head_now().unwrap(), Head::Whole);
        assert_eq!(conn.read_ahead(), next);
    }

    #[tokio::test]
    async fn a_blank_line_split_across_two_reads_still_ends_a_read() {
        let (mut client, mut conn) = pair().await;
        client.write_all(b"0\r\n\r").await.unwrap();
        let got = reads(&mut conn, 4).await;
        assert_eq!(got.concat(), b"0\r\n\r");
        let next = b"GET /2 HTTP/1.1\r\n\r\n";
        client
            .write_all(&[&b"\n"[..], &next[..]].concat())
            .await
            .unwrap();
        let got = reads(&mut conn, 1).await;
        assert_eq!(
            got,
            vec![b"\n".to_vec()],
            "the read ends with the blank line"
        );
        assert_eq!(conn.read_ahead(), next);
    }

    #[test]
    fn the_tail_keeps_the_last_three_bytes_until_a_blank_line() {
        let mut tail = Tail::default();
        tail.returned(b"a", false);
        tail.returned(b"\r\n", false);
        assert_eq!(tail.bytes(), b"a\r\n");
        tail.returned(b"xyz\r", false);
        assert_eq!(tail.bytes(), b"yz\r");
        assert_eq!(end_of_blank_line(b"\n\r", b"\r\n"), None);
        assert_eq!(end_of_blank_line(b"z\r\n", b"\r\nGET"), Some(2));
        assert_eq!(end_of_blank_line(b"", b"a\r\n\r\nb"), Some(5));
        tail.returned(b"\n", true);
        assert_eq!(tail.bytes(), b"");
    }

    #[test]
    fn a_head_is_whole_partial_or_refused() {
        let cases: [(&[u8], Head); 9] = [
            (b"", Head::Partial),
            (b"\r\n", Head::Partial),
            (b"GET / HTTP/1.1\r\nHost: x\r\n", Head::Partial),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Head::Whole),
            (b"\r\nGET / HTTP/1.1\r\n\r\n", Head::Whole),
            // Bare LF: whole, for the guard to refuse.
            (b"GET / HTTP/1.1\nHost: x\n\n", Head::Whole),
            // A TLS ClientHello on a plain port.
            (
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                Head::Refused,
            ),
            (b"GET / HTTP/1.1\r\nBad Header: x\r\n", Head::Refused),
            (b"GE", Head::Partial),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                Head::of(bytes),
                expected,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let many: Vec<u8> = [&b"GET / HTTP/1.1\r\n"[..], &b"A: b\r\n".repeat(100)].concat();
        assert_eq!(Head::of(&many), Head::Partial, "more headers than checked");
        assert_eq!(Head::of(&vec![b'a'; MAX_HEAD]), Head::Refused);
    }

    #[tokio::test]
    async fn read_head_waits_for_the_whole_head() {
        let (mut client, mut conn) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let head = tokio::spawn(async move {
            let read = conn.read_head().await.map(|_| ());
            (read, conn)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!head.is_finished(), "a partial head is not a head");
        client.write_all(b"Host: x\r\n\r\n").await.unwrap();
        let (read, conn) = head.await.unwrap();
        read.unwrap();
        assert_eq!(conn.read_ahead(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        drop(client);
    }

    #[tokio::test]
    async fn a_bounded_head_fails_reads_after_its_deadline_until_it_ends() {
        let (mut client, mut conn) = pair().await;
        conn.bound_head(Instant::now() + Duration::from_millis(50));
        client.write_all(b"GET / HT").await.unwrap();
        let got = reads(&mut conn, 8).await;
        assert_eq!(got.concat(), b"GET / HT");
        let mut buf = [0u8; 64];
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // A head that ends in time lifts the bound.
        let (mut client, mut conn) = pair().await;
        conn.bound_head(Instant::now() + Duration::from_millis(50));
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        reads(&mut conn, 18).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.write_all(b"more").await.unwrap();
        assert_eq!(conn.read(&mut buf).await.unwrap(), 4);
    }
}
