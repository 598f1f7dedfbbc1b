//! Short error responses written by Meridian itself (never by an upstream).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// Writes `status` with a one-line plain-text `reason` body. Protocol errors (400, 413, 414,
/// 431) and a client timeout (408) close the connection afterwards: the rest of the stream
/// cannot be trusted.
pub async fn respond(
    session: &mut Session,
    status: u16,
    reason: &str,
    request_id: &str,
) -> pingora::Result<()> {
    respond_with(session, status, reason, request_id, None).await
}

/// [`respond`], with the `Cache-Status` of a cached route when there is one.
pub async fn respond_with(
    session: &mut Session,
    status: u16,
    reason: &str,
    request_id: &str,
    cache_status: Option<http::HeaderValue>,
) -> pingora::Result<()> {
    let body = Bytes::from(format!("{reason}\n"));
    let mut resp = ResponseHeader::build(status, Some(5))?;
    resp.insert_header("content-type", "text/plain; charset=utf-8")?;
    resp.insert_header("content-length", body.len().to_string())?;
    if !request_id.is_empty() {
        resp.insert_header("x-request-id", request_id)?;
    }
    if let Some(v) = cache_status {
        resp.insert_header("cache-status", v)?;
    }
    if matches!(status, 400 | 408 | 413 | 414 | 431) {
        resp.insert_header("connection", "close")?;
        session.set_keepalive(None);
    }
    session.write_error_response(resp, body).await
}

/// Writes a plugin's local response. Unlike [`respond`], the connection stays open: a 429 or a
/// CORS preflight is a normal answer, not a broken stream.
pub async fn local(
    session: &mut Session,
    local: plugins::LocalResponse,
    request_id: &str,
) -> pingora::Result<()> {
    let plugins::LocalResponse { mut header, body } = local;
    // RFC 9110 §8.6: no Content-Length on 1xx and 204.
    let status = header.status.as_u16();
    if !(status < 200 || status == 204) {
        header.insert_header("content-length", body.len().to_string())?;
    }
    if !request_id.is_empty() {
        header.insert_header("x-request-id", request_id)?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(header), false)
        .await?;
    let body = (!head_only && !body.is_empty()).then_some(body);
    session.write_response_body(body, true).await
}
