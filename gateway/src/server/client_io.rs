//! A plain client connection with a write buffer of one MSS.
//!
//! pingora sizes a connection's L4 buffers during its TLS-capable handshake step, which the
//! lean accept loop ([`super::accept`]) skips; a stream made straight from a socket writes
//! through unbuffered, and pingora's HTTP/1 layer then sends a response's header and its body
//! in two `send`s. This wrapper restores the one-MSS write buffer, so a small response still
//! leaves in one, and passes everything else through to pingora's stream.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
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
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};

/// A client TCP connection whose writes are buffered up to one MSS until flushed.
#[derive(Debug)]
pub struct ClientConn {
    io: BufWriter<L4Stream>,
}

impl ClientConn {
    /// Wraps an accepted stream.
    pub fn new(stream: L4Stream) -> Self {
        Self {
            io: BufWriter::with_capacity(DEFAULT_L4_WRITE_BUFFER_SIZE, stream),
        }
    }
}

impl Drop for ClientConn {
    fn drop(&mut self) {
        // As pingora's own stream does on drop: send what is buffered if the socket takes it
        // now (pingora flushes at the end of each response, so this is normally empty).
        let _ = self.io.flush().now_or_never();
    }
}

impl AsyncRead for ClientConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for ClientConn {
    async fn shutdown(&mut self) {
        if let Err(e) = AsyncWriteExt::shutdown(&mut self.io).await {
            log::debug!("shutting a client connection down: {e}");
        }
    }
}

impl UniqueID for ClientConn {
    fn id(&self) -> UniqueIDType {
        self.io.get_ref().id()
    }
}

impl Ssl for ClientConn {}

#[async_trait]
impl Peek for ClientConn {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.io.get_mut().try_peek(buf).await
    }
}

impl GetTimingDigest for ClientConn {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.io.get_ref().get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.io.get_ref().get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.io.get_ref().get_write_pending_time()
    }
}

impl GetProxyDigest for ClientConn {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.io.get_ref().get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.io.get_mut().set_proxy_digest(digest);
    }
}

impl GetSocketDigest for ClientConn {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.io.get_ref().get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.io.get_mut().set_socket_digest(digest);
    }
}
