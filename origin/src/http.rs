//! What every origin service shares: errors answered as short JSON, a JSON body extractor with
//! 4xx reasons, request metrics, `/healthz` + `/metrics`, and the serve loop with graceful
//! shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, StatusCode};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use serde::de::DeserializeOwned;

/// Any error a service's setup or run can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Longest reason put in an error body; longer ones (serde's, say) are cut.
const MAX_REASON: usize = 200;

/// An error answered as `{"error": "<reason>"}` with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The response status.
    pub status: StatusCode,
    /// A short reason for the client.
    pub reason: String,
}

impl ApiError {
    /// An error with `status` and `reason` (cut to a few hundred bytes).
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.len() > MAX_REASON {
            let mut end = MAX_REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push('…');
        }
        Self { status, reason }
    }

    /// 400 Bad Request.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    /// 404 Not Found.
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason)
    }

    /// 409 Conflict.
    pub fn conflict(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, reason)
    }

    /// 500: the cause is logged, the client only learns that it was ours.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        log::error!("internal error: {cause}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status.as_u16(), self.reason)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.reason });
        (self.status, axum::Json(body)).into_response()
    }
}

/// A JSON request body. Unlike `axum::Json`, every rejection is an [`ApiError`]: malformed or
/// mistyped JSON → 400, a missing `application/json` content type → 415, a body over the
/// service's limit → 413, each with a short reason.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => {
                let status = match rejection.status() {
                    // axum says 422 for well-formed JSON of the wrong shape; to a client both
                    // are a bad request body.
                    StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
                    other => other,
                };
                Err(ApiError::new(status, rejection.body_text()))
            }
        }
    }
}

/// Request counts and latencies of one service, by route template, method and status.
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    /// Registers `origin_http_requests_total` and `origin_http_request_duration_seconds`,
    /// labelled with `service`, in `registry`.
    pub fn new(registry: &Registry, service: &str) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new("origin_http_requests_total", "Requests answered")
                .const_label("service", service),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "origin_http_request_duration_seconds",
                "Time to answer a request",
            )
            .const_label("service", service)
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }
}

async fn track(State(metrics): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = req.method().clone();
    let started = Instant::now();
    let response = next.run(req).await;
    metrics
        .duration
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[route.as_str(), method.as_str(), response.status().as_str()])
        .inc();
    response
}

/// Adds what every service has to its `app`: `GET /healthz`, `GET /metrics` (the Prometheus
/// text of `registry`, with request metrics labelled `service`), a body limit of `max_body`
/// bytes for extractors that buffer, and short JSON 404s for unknown paths.
pub fn finish(
    app: Router,
    registry: Registry,
    service: &str,
    max_body: usize,
) -> Result<Router, BoxError> {
    let metrics = Arc::new(HttpMetrics::new(&registry, service)?);
    let registry = Arc::new(registry);
    Ok(app
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { render(&registry) }
            }),
        )
        .fallback(|| async { ApiError::not_found("no such resource") })
        .layer(middleware::from_fn_with_state(metrics, track))
        .layer(DefaultBodyLimit::max(max_body)))
}

fn render(registry: &Registry) -> Response {
    let mut out = Vec::with_capacity(4096);
    match TextEncoder::new().encode(&registry.gather(), &mut out) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], out).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let e = ApiError::bad_request("é".repeat(300));
        assert!(e.reason.len() <= MAX_REASON + '…'.len_utf8());
        assert!(e.reason.ends_with('…'));
    }

    #[test]
    fn errors_render_as_json() {
        let r = ApiError::conflict("taken").into_response();
        assert_eq!(r.status(), StatusCode::CONFLICT);
        assert_eq!(
            r.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
    }
}
