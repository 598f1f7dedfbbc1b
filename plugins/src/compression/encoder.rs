//! The downstream HTTP module that encodes response bodies: pingora's
//! [`ResponseCompressionCtx`] (its gzip, brotli and zstd encoders and its header handling),
//! off until the `compression` plugin turns it on for a response, with one fix: pingora's
//! brotli encoder flushes at the end of the body but never writes the final (ISLAST)
//! meta-block (cloudflare/pingora#1013), which strict decoders reject; this module appends it.

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::{HttpModule, HttpModuleBuilder, Module, ModuleBuilder};
use pingora::protocols::http::compression::ResponseCompressionCtx;
use pingora::Result;

use super::negotiate::Coding;

/// The end of a brotli stream that is byte-aligned (as it is after a flush): an empty last
/// meta-block, ISLAST = 1 and ISLASTEMPTY = 1.
const BROTLI_END: u8 = 0x03;

/// The per-response encoder module. Install it with [`response_encoder`].
pub struct ResponseEncoder {
    ctx: ResponseCompressionCtx,
    brotli: bool,
    ended: bool,
}

impl ResponseEncoder {
    fn new() -> ResponseEncoder {
        ResponseEncoder {
            ctx: ResponseCompressionCtx::new(0, false, false),
            brotli: false,
            ended: false,
        }
    }

    /// Encodes this response with `coding` at `level`. Does nothing once the response header
    /// went through the module.
    pub(crate) fn enable(&mut self, coding: Coding, level: u32) -> Result<()> {
        if !self.ctx.is_header_phase() {
            return Ok(());
        }
        self.ctx.adjust_algorithm_level(coding.algorithm(), level);
        // The context encodes with the first coding the request accepts: hand it only this one.
        let mut chosen = RequestHeader::build("GET", b"/", Some(1))?;
        chosen.insert_header(http::header::ACCEPT_ENCODING, coding.token())?;
        self.ctx.request_filter(&chosen);
        self.brotli = coding == Coding::Brotli;
        Ok(())
    }

    /// Encodes the last piece of the body and ends the stream.
    fn finish(&mut self, last: Option<&Bytes>) -> Option<Bytes> {
        self.ended = true;
        let encoded = self.ctx.response_body_filter(last, true);
        // `get_info` is `None` when the encoder gave up (pingora then passes data through).
        if !self.brotli || self.ctx.get_info().is_none() {
            return encoded;
        }
        let mut out = BytesMut::from(encoded.unwrap_or_default());
        out.put_u8(BROTLI_END);
        Some(out.freeze())
    }

    /// Whether body chunks are to be encoded.
    fn encoding(&self) -> bool {
        !self.ended && !self.ctx.is_header_phase() && self.ctx.is_enabled()
    }
}

#[async_trait]
impl HttpModule for ResponseEncoder {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    async fn response_header_filter(
        &mut self,
        resp: &mut ResponseHeader,
        end_of_stream: bool,
    ) -> Result<()> {
        if self.ctx.is_header_phase() {
            self.ctx.response_header_filter(resp, end_of_stream);
        }
        Ok(())
    }

    fn response_body_filter(
        &mut self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> Result<()> {
        if !self.encoding() {
            return Ok(());
        }
        let encoded = if end_of_stream {
            self.finish(body.as_ref())
        } else {
            self.ctx.response_body_filter(body.as_ref(), false)
        };
        if encoded.is_some() {
            *body = encoded;
        }
        Ok(())
    }

    fn response_done_filter(&mut self) -> Result<Option<Bytes>> {
        if !self.encoding() {
            return Ok(None);
        }
        Ok(self.finish(None))
    }
}

struct Builder;

impl HttpModuleBuilder for Builder {
    fn init(&self) -> Module {
        Box::new(ResponseEncoder::new())
    }

    fn order(&self) -> i16 {
        // After other modules, as pingora's own compression module.
        i16::MIN / 2
    }
}

/// The builder a proxy adds in `ProxyHttp::init_downstream_modules` (in place of pingora's
/// default compression module) so the `compression` plugin can encode responses.
pub fn response_encoder() -> ModuleBuilder {
    Box::new(Builder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    async fn encode(coding: Coding, chunks: &[&'static [u8]]) -> (ResponseHeader, Vec<u8>) {
        let mut m = ResponseEncoder::new();
        m.enable(coding, 5).unwrap();
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-type", "text/plain").unwrap();
        resp.insert_header("content-length", "4096").unwrap();
        m.response_header_filter(&mut resp, false).await.unwrap();
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let mut body = Some(Bytes::from_static(c));
            m.response_body_filter(&mut body, i + 1 == chunks.len())
                .unwrap();
            out.extend_from_slice(&body.unwrap_or_default());
        }
        if let Some(rest) = m.response_done_filter().unwrap() {
            out.extend_from_slice(&rest);
        }
        (resp, out)
    }

    #[tokio::test]
    async fn brotli_streams_are_finished() {
        let chunk: &'static [u8] = &[b'a'; 2048];
        let (resp, out) = encode(Coding::Brotli, &[chunk, chunk]).await;
        assert_eq!(resp.headers["content-encoding"], "br");
        assert!(resp.headers.get("content-length").is_none());
        let mut plain = Vec::new();
        // A strict decoder: an unfinished stream is an error.
        brotli::Decompressor::new(&out[..], 4096)
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, [b'a'; 4096]);
    }

    #[tokio::test]
    async fn off_unless_enabled() {
        let mut m = ResponseEncoder::new();
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-type", "text/plain").unwrap();
        m.response_header_filter(&mut resp, false).await.unwrap();
        let mut body = Some(Bytes::from_static(b"plain"));
        m.response_body_filter(&mut body, true).unwrap();
        assert_eq!(body.unwrap(), "plain");
        assert!(resp.headers.get("content-encoding").is_none());
        assert_eq!(m.response_done_filter().unwrap(), None);
    }

    #[tokio::test]
    async fn done_without_end_flag_still_finishes() {
        let mut m = ResponseEncoder::new();
        m.enable(Coding::Brotli, 4).unwrap();
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-type", "text/plain").unwrap();
        m.response_header_filter(&mut resp, false).await.unwrap();
        let mut body = Some(Bytes::from_static(b"hello hello hello hello"));
        m.response_body_filter(&mut body, false).unwrap();
        let mut out = body.unwrap_or_default().to_vec();
        out.extend_from_slice(&m.response_done_filter().unwrap().unwrap());
        let mut plain = Vec::new();
        brotli::Decompressor::new(&out[..], 4096)
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, b"hello hello hello hello");
    }
}
