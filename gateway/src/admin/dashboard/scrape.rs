//! Fetching one source's Prometheus text: plain HTTP, a short timeout, a capped body.

use std::time::Duration;

use super::digest::Digest;
use super::prom;

/// Largest metrics body read from a source.
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;

/// The HTTP client every scrape shares: no proxy from the environment, no redirects.
pub(crate) fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Scrapes `url` within `timeout`; the error says why the source is down.
pub(crate) async fn scrape(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<Digest, String> {
    let text = tokio::time::timeout(timeout, fetch(client, url))
        .await
        .map_err(|_| format!("no answer within {}ms", timeout.as_millis()))??;
    let samples = prom::parse(&text).map_err(|e| format!("not Prometheus text: {e}"))?;
    Ok(Digest::of(&samples))
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let mut response = client.get(url).send().await.map_err(|e| cause(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err(format!("metrics larger than {} MiB", MAX_BODY >> 20));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| cause(&e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("metrics larger than {} MiB", MAX_BODY >> 20));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "metrics are not UTF-8".to_owned())
}

/// The innermost cause of a client error ("Connection refused (os error 111)"), which says
/// more than reqwest's "error sending request for url".
fn cause(e: &reqwest::Error) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Serves one canned HTTP response per connection.
    async fn serve(response: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let _ = conn.write_all(&response).await;
            }
        });
        format!("http://{addr}/metrics")
    }

    fn http(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn sources_up_down_and_garbage() {
        let client = client().expect("client");
        let t = Duration::from_secs(2);
        let ok = serve(http("200 OK", "orders_dlq_depth 2\n")).await;
        assert_eq!(
            scrape(&client, &ok, t).await.expect("up").dlq_depth,
            Some(2.0)
        );
        let failing = serve(http("503 Service Unavailable", "")).await;
        let err = scrape(&client, &failing, t).await.expect_err("503");
        assert!(err.contains("HTTP 503"), "{err}");
        let garbage = serve(http("200 OK", "<html>hello</html>\n")).await;
        let err = scrape(&client, &garbage, t).await.expect_err("garbage");
        assert!(err.starts_with("not Prometheus text: line 1"), "{err}");
        let huge = serve(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                MAX_BODY + 1
            )
            .into_bytes(),
        )
        .await;
        let err = scrape(&client, &huge, t).await.expect_err("oversize");
        assert!(err.contains("larger than 4 MiB"), "{err}");
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            format!("http://{}/metrics", l.local_addr().expect("addr"))
        };
        let err = scrape(&client, &closed, t).await.expect_err("refused");
        assert!(err.to_lowercase().contains("refused"), "{err}");
    }

    #[tokio::test]
    async fn a_silent_source_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/metrics", listener.local_addr().expect("addr"));
        let client = client().expect("client");
        let err = scrape(&client, &url, Duration::from_millis(200))
            .await
            .expect_err("silent");
        assert_eq!(err, "no answer within 200ms");
        drop(listener);
    }
}
