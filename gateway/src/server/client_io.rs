//! A plain client connection with a write buffer of one MSS, sent together with the write that
//! overflows it.
//!
//! pingora sizes a connection's L4 buffers during its TLS-capable handshake step, which the
//! lean accept loop ([`super::accept`]) skips; a stream made straight from a socket writes
//! through unbuffered, and pingora's HTTP/1 layer then sends a response's header and its body
//! in two `send`s. This wrapper restores the one-MSS write buffer, so a small response still
//! leaves in one. A larger body does not go through the buffer: it leaves in one vectored
//! `send` with the header still buffered before it (a tokio `BufWriter` would send the header
//! alone first), so a 1 MiB cache hit is one `writev`, as Varnish's.
//!
//! It also makes the one-byte peek of the keep-alive loop ([`super::connections`]) cheap.
//! pingora's stream peeks by reading the byte and pushing it back as a new `Vec`, so its next
//! read returns that byte alone and pingora parses a one-byte request head before reading the
//! rest. Here the byte is kept in the connection, and the next read returns it together with
//! whatever the socket already holds: one allocation, one read and one parse fewer per request.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use pingora::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// A client TCP connection whose writes are buffered up to one MSS until flushed.
#[derive(Debug)]
pub struct ClientConn {
    io: L4Stream,
    /// Bytes written and not yet sent: at most [`WRITE_BUFFER`] of them. They leave on a flush,
    /// or in one vectored send together with the next write that does not fit beside them.
    pending: Vec<u8>,
    /// A byte read by a one-byte [`Peek::try_peek`], returned by the next read before anything
    /// read from the socket.
    peeked: Option<u8>,
}

/// The write buffer: one MSS, as pingora's own buffered streams.
const WRITE_BUFFER: usize = DEFAULT_L4_WRITE_BUFFER_SIZE;

impl ClientConn {
    /// Wraps an accepted stream.
    pub fn new(stream: L4Stream) -> Self {
        Self {
            io: stream,
            pending: Vec::new(),
            peeked: None,
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
            let sent = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices))?;
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
            [one] => Pin::new(&mut self.io).poll_write(cx, one),
            _ => Pin::new(&mut self.io).poll_write_vectored(cx, bufs),
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
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(byte) = self.peeked else {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        };
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        buf.put_slice(&[byte]);
        self.peeked = None;
        // The rest of the request is usually in the socket already: return it with the byte.
        // Nothing more yet, or an error, still returns the byte; the next read waits for more
        // or reports the error.
        if buf.remaining() > 0 {
            let _ = Pin::new(&mut self.io).poll_read(cx, buf);
        }
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
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
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
        self.io.id()
    }
}

impl Ssl for ClientConn {}

#[async_trait]
impl Peek for ClientConn {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        if let [slot] = buf {
            let byte = match self.peeked {
                Some(byte) => byte,
                None => self.io.read_u8().await?,
            };
            *slot = byte;
            self.peeked = Some(byte);
            return Ok(true);
        }
        // A longer peek: pingora's stream replays what it reads, after the byte kept here.
        if let Some(byte) = self.peeked.take() {
            self.io.rewind(&[byte]);
        }
        self.io.try_peek(buf).await
    }
}

impl GetTimingDigest for ClientConn {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.io.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.io.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.io.get_write_pending_time()
    }
}

impl GetProxyDigest for ClientConn {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.io.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.io.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for ClientConn {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.io.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.io.set_socket_digest(digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair: the client end, and the server end wrapped in a [`ClientConn`].
    async fn pair() -> (TcpStream, ClientConn) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, ClientConn::new(L4Stream::from(server)))
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
    async fn peeking_a_closed_connection_fails() {
        let (client, mut conn) = pair().await;
        drop(client);
        let mut first = [0u8; 1];
        assert!(conn.try_peek(&mut first).await.is_err());
    }
}
