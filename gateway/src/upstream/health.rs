//! Active health checks: one probe (HTTP `GET` or TCP connect) and the thresholds that turn
//! probe results into a healthy/unhealthy verdict.
//!
//! The HTTP probe is a minimal HTTP/1.1 client: it writes one `GET` with `Connection: close`
//! and reads no more than the status line (at most [`MAX_STATUS_LINE`] bytes).

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{HealthCheck, HealthKind};

use super::target::TargetState;

/// Most bytes read while looking for the status line of a health-check response.
pub const MAX_STATUS_LINE: usize = 512;

/// Why a probe failed.
#[derive(Debug)]
pub(crate) enum ProbeError {
    /// The probe did not finish within the check timeout.
    Timeout,
    /// Connecting, writing or reading failed.
    Io(std::io::Error),
    /// The configured path or host cannot be sent in a request line or header.
    InvalidRequest,
    /// The answer did not start with an HTTP/1.x status line.
    BadStatusLine,
    /// The status is outside the expected range.
    Status(u16),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Timeout => f.write_str("timed out"),
            ProbeError::Io(err) => write!(f, "{err}"),
            ProbeError::InvalidRequest => f.write_str("path or host not sendable"),
            ProbeError::BadStatusLine => f.write_str("no HTTP/1.x status line"),
            ProbeError::Status(status) => write!(f, "unexpected status {status}"),
        }
    }
}

/// Probes `addr` once as `kind` says, within `timeout`. `authority` is the `Host` sent when
/// the check names none.
pub(crate) async fn probe(
    addr: SocketAddr,
    kind: &HealthKind,
    authority: &str,
    timeout: Duration,
) -> Result<(), ProbeError> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.map_err(ProbeError::Io)?;
        match kind {
            HealthKind::Tcp => Ok(()),
            HealthKind::Http { path, host, expect } => {
                let host = host.as_deref().unwrap_or(authority);
                let request = http_request(path, host).ok_or(ProbeError::InvalidRequest)?;
                stream
                    .write_all(request.as_bytes())
                    .await
                    .map_err(ProbeError::Io)?;
                let status = read_status(&mut stream).await?;
                if (expect.0..=expect.1).contains(&status) {
                    Ok(())
                } else {
                    Err(ProbeError::Status(status))
                }
            }
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(Err(ProbeError::Timeout))
}

/// The request of an HTTP check; `None` if `path` or `host` holds characters that would break
/// the request line or header.
fn http_request(path: &str, host: &str) -> Option<String> {
    let sendable = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !path.starts_with('/') || !sendable(path) || !sendable(host) {
        return None;
    }
    Some(format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: meridian-health-check\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    ))
}

/// Reads the status line (bounded by [`MAX_STATUS_LINE`]) and returns its status code.
async fn read_status(stream: &mut TcpStream) -> Result<u16, ProbeError> {
    let mut buf = [0u8; MAX_STATUS_LINE];
    let mut filled = 0;
    while filled < buf.len() {
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(ProbeError::Io)?;
        if n == 0 {
            break;
        }
        filled += n;
        if buf[..filled].contains(&b'\n') {
            break;
        }
    }
    parse_status_line(&buf[..filled]).ok_or(ProbeError::BadStatusLine)
}

/// The status code of `HTTP/1.x NNN ...` at the start of `bytes`.
fn parse_status_line(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    let digits = rest.strip_prefix(b" ")?.get(..3)?;
    if !minor.is_ascii_digit() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if rest
        .get(4)
        .is_some_and(|&b| b != b' ' && b != b'\r' && b != b'\n')
    {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Applies one probe result to `state` with the thresholds of `check`: `unhealthy_after`
/// consecutive failures make a healthy target unhealthy, `healthy_after` consecutive
/// successes make an unhealthy one healthy. Returns the new verdict when it changed.
pub(crate) fn record_check(state: &TargetState, ok: bool, check: &HealthCheck) -> Option<bool> {
    let (streak, other, threshold) = if ok {
        (
            &state.check_successes,
            &state.check_failures,
            check.healthy_after,
        )
    } else {
        (
            &state.check_failures,
            &state.check_successes,
            check.unhealthy_after,
        )
    };
    other.store(0, Ordering::Relaxed);
    let count = streak.fetch_add(1, Ordering::Relaxed).saturating_add(1);
    if state.is_healthy() != ok && count >= threshold.max(1) {
        state.set_healthy(ok);
        Some(ok)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(unhealthy_after: u32, healthy_after: u32) -> HealthCheck {
        HealthCheck {
            kind: HealthKind::Tcp,
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(100),
            unhealthy_after,
            healthy_after,
        }
    }

    #[test]
    fn thresholds_flip_the_verdict() {
        let state = TargetState::default();
        let check = check(3, 2);
        assert_eq!(record_check(&state, false, &check), None);
        assert_eq!(record_check(&state, false, &check), None);
        // A success in between restarts the failure count.
        assert_eq!(record_check(&state, true, &check), None);
        assert_eq!(record_check(&state, false, &check), None);
        assert_eq!(record_check(&state, false, &check), None);
        assert!(state.is_healthy());
        assert_eq!(record_check(&state, false, &check), Some(false));
        assert!(!state.is_healthy());
        assert_eq!(record_check(&state, false, &check), None);
        assert_eq!(record_check(&state, true, &check), None);
        assert!(!state.is_healthy());
        assert_eq!(record_check(&state, true, &check), Some(true));
        assert!(state.is_healthy());
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503\r\n"), Some(503));
        assert_eq!(parse_status_line(b"HTTP/1.1 204"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.1 2000 OK\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/2 200\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2x0 OK\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    /// Serves one connection: returns the request head it read after writing `answer`.
    async fn one_shot(answer: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "request ended early");
                head.extend_from_slice(&buf[..n]);
            }
            stream.write_all(answer).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        (addr, served)
    }

    fn http(host: Option<&str>) -> HealthKind {
        HealthKind::Http {
            path: "/ready".to_owned(),
            host: host.map(str::to_owned),
            expect: (200, 299),
        }
    }

    #[tokio::test]
    async fn http_probe_sends_the_configured_host_and_checks_the_status() {
        let timeout = Duration::from_secs(2);
        let (addr, served) = one_shot(b"HTTP/1.1 503 Busy\r\n\r\n").await;
        let result = probe(addr, &http(Some("api.internal")), "ignored:1", timeout).await;
        assert!(matches!(result, Err(ProbeError::Status(503))), "{result:?}");
        let head = served.await.unwrap();
        assert!(
            head.starts_with("GET /ready HTTP/1.1\r\nHost: api.internal\r\n"),
            "{head}"
        );

        let (addr, served) = one_shot(b"HTTP/1.1 200 OK\r\n\r\n").await;
        let result = probe(addr, &http(None), "svc.local:8080", timeout).await;
        assert!(result.is_ok(), "{result:?}");
        assert!(served
            .await
            .unwrap()
            .contains("\r\nHost: svc.local:8080\r\n"));
    }

    #[tokio::test]
    async fn http_probe_reads_a_bounded_amount() {
        static NOISE: [u8; 4 * MAX_STATUS_LINE] = [b'x'; 4 * MAX_STATUS_LINE];
        let (addr, _served) = one_shot(&NOISE).await;
        let result = probe(addr, &http(None), "a:1", Duration::from_secs(2)).await;
        assert!(
            matches!(result, Err(ProbeError::BadStatusLine)),
            "{result:?}"
        );
    }

    #[test]
    fn requests_refuse_unsendable_values() {
        let request = http_request("/healthz", "api:80").unwrap();
        assert!(request.starts_with("GET /healthz HTTP/1.1\r\nHost: api:80\r\n"));
        assert!(request.ends_with("\r\n\r\n"));
        assert_eq!(http_request("healthz", "api"), None);
        assert_eq!(http_request("/a b", "api"), None);
        assert_eq!(http_request("/a", "api\r\nX: y"), None);
        assert_eq!(http_request("/a", ""), None);
    }
}
