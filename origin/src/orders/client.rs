//! The saga's HTTP client for the participants (payment, delivery): every call has a timeout,
//! carries an idempotency key (order id + step), and is retried with backoff on 5xx, 429,
//! timeouts and connection errors. 4xx answers are final.

use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use tokio::sync::watch;

use super::backoff::Backoff;
use super::faults;

/// Why a participant call did not succeed.
#[derive(Debug)]
pub enum CallError {
    /// The participant answered 4xx: a final no.
    Rejected {
        /// Its status.
        status: StatusCode,
        /// Its `error` reason, if it gave one.
        reason: String,
    },
    /// Every attempt failed (5xx, timeout, connection); the last failure.
    Failed(String),
    /// The service is stopping.
    Interrupted,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rejected { status, reason } => write!(f, "refused ({status}): {reason}"),
            Self::Failed(last) => write!(f, "{last}"),
            Self::Interrupted => write!(f, "interrupted by shutdown"),
        }
    }
}

/// Calls the participants at one base URL.
pub struct ParticipantClient {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    attempts: u32,
    retry: Backoff,
    stop: watch::Receiver<bool>,
}

impl ParticipantClient {
    /// A client for `base`, with `timeout` per call and `attempts` calls per step.
    pub fn new(
        base: String,
        timeout: Duration,
        attempts: u32,
        retry: Backoff,
        stop: watch::Receiver<bool>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            http,
            base,
            timeout,
            attempts,
            retry,
            stop,
        })
    }

    /// POSTs `body` to `path` with `Idempotency-Key: key` (and `X-Fault` when `faults` is not
    /// empty); returns the JSON answer of the first 2xx.
    pub async fn call(
        &self,
        path: &str,
        key: &str,
        body: &Value,
        faults: &[String],
    ) -> Result<Value, CallError> {
        let url = format!("{}{path}", self.base);
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            if *self.stop.borrow() {
                return Err(CallError::Interrupted);
            }
            let mut request = self
                .http
                .post(&url)
                .header("idempotency-key", key)
                .json(body);
            if !faults.is_empty() {
                request = request.header(faults::HEADER, faults.join(","));
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let answer = response.json::<Value>().await;
                    if status.is_success() {
                        match answer {
                            Ok(value) => return Ok(value),
                            Err(e) => last = format!("POST {path}: unreadable answer: {e}"),
                        }
                    } else {
                        let reason = answer
                            .ok()
                            .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                            .unwrap_or_default();
                        if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
                            return Err(CallError::Rejected { status, reason });
                        }
                        last = format!("POST {path}: {status} {reason}");
                    }
                }
                Err(e) if e.is_timeout() => {
                    last = format!("POST {path}: no answer within {:?}", self.timeout);
                }
                Err(e) => last = format!("POST {path}: {e}"),
            }
            if attempt < self.attempts {
                tokio::time::sleep(self.retry.delay(attempt)).await;
            }
        }
        if *self.stop.borrow() {
            return Err(CallError::Interrupted);
        }
        Err(CallError::Failed(last))
    }
}
