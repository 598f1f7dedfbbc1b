//! The shortener's HTTP endpoints: `POST /api/urls`, `GET /api/urls/{code}` (and
//! `/api/urls/{code}/stats`), and `GET`/`HEAD /r/{code}`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{header, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use url::Url;

use super::clicks::Clicks;
use super::code;
use super::metrics::Metrics;
use super::store::{CreateError, Link, UrlStore};
use super::validate;
use crate::http::{ApiError, Json};

/// Tries at a free generated code before answering 503 (each collides with odds ~n / 62^7).
const CODE_TRIES: usize = 8;

/// What the handlers share.
pub struct App {
    /// Where links live.
    pub store: Arc<dyn UrlStore>,
    /// Clicks not yet in the store.
    pub clicks: Arc<Clicks>,
    /// The shortener's metrics.
    pub metrics: Metrics,
    /// Base of `short_url`s, without a trailing slash.
    pub public_base: Url,
    /// Longest `max-age` of a redirect, in seconds.
    pub redirect_max_age: u64,
    /// `max-age` of a 404 from `/r/{code}`, in seconds (0: `no-store`).
    pub not_found_max_age: u64,
}

/// The shortener's routes over `app`. Responses that set no `Cache-Control` get `no-store`.
pub fn router(app: App) -> Router {
    Router::new()
        .route(
            "/api/urls",
            post(create).fallback(|| method_not_allowed("POST")),
        )
        .route(
            "/api/urls/{code}",
            get(show).fallback(|| method_not_allowed("GET, HEAD")),
        )
        .route(
            "/api/urls/{code}/stats",
            get(show).fallback(|| method_not_allowed("GET, HEAD")),
        )
        .route(
            "/r/{code}",
            get(redirect).fallback(|| method_not_allowed("GET, HEAD")),
        )
        .layer(axum::middleware::map_response(no_store_by_default))
        .with_state(Arc::new(app))
}

/// The body of `POST /api/urls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    url: String,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// A link as answered.
#[derive(Debug, Serialize)]
struct LinkView {
    code: String,
    short_url: String,
    url: String,
    created_at: i64,
    expires_at: Option<i64>,
}

/// A link with its clicks, as answered by `GET /api/urls/{code}`.
#[derive(Debug, Serialize)]
struct StatsView {
    #[serde(flatten)]
    link: LinkView,
    clicks: u64,
    expired: bool,
}

impl App {
    fn view(&self, link: Link) -> LinkView {
        let base = self.public_base.as_str().trim_end_matches('/');
        LinkView {
            short_url: format!("{base}/r/{}", link.code),
            code: link.code,
            url: link.url,
            created_at: link.created_at,
            expires_at: link.expires_at,
        }
    }
}

async fn create(
    State(app): State<Arc<App>>,
    Json(req): Json<CreateRequest>,
) -> Result<Response, ApiError> {
    let url = validate::target_url(&req.url, &app.public_base).map_err(ApiError::bad_request)?;
    if let Some(alias) = &req.alias {
        validate::alias(alias).map_err(ApiError::bad_request)?;
    }
    if let Some(seconds) = req.expires_in {
        validate::expires_in(seconds).map_err(ApiError::bad_request)?;
    }
    let now = now_ms();
    let created_at = now.div_euclid(1000);
    // Rounded up to a whole second: a link lives at least `expires_in` seconds.
    let expires_at = req
        .expires_in
        .map(|s| (now + s * 1000 + 999).div_euclid(1000));
    let store = app.store.clone();
    let url = String::from(url);
    let link = tokio::task::spawn_blocking(move || {
        insert(
            store.as_ref(),
            url,
            req.alias,
            created_at,
            expires_at,
            code::generate,
        )
    })
    .await
    .map_err(ApiError::internal)??;
    app.metrics.links_created.inc();
    let location =
        HeaderValue::from_str(&format!("/api/urls/{}", link.code)).map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(app.view(link)),
    )
        .into_response())
}

/// Stores a link under `alias`, or under a generated code (retried a few times on collision).
fn insert(
    store: &dyn UrlStore,
    url: String,
    alias: Option<String>,
    created_at: i64,
    expires_at: Option<i64>,
    mut next_code: impl FnMut() -> String,
) -> Result<Link, ApiError> {
    let mut link = Link {
        code: String::new(),
        url,
        created_at,
        expires_at,
    };
    if let Some(alias) = alias {
        link.code = alias;
        return match store.create(&link) {
            Ok(()) => Ok(link),
            Err(CreateError::Taken) => Err(ApiError::conflict(format!(
                "alias '{}' is taken",
                link.code
            ))),
            Err(CreateError::Store(e)) => Err(ApiError::internal(e)),
        };
    }
    for _ in 0..CODE_TRIES {
        link.code = next_code();
        match store.create(&link) {
            Ok(()) => return Ok(link),
            Err(CreateError::Taken) => {}
            Err(CreateError::Store(e)) => return Err(ApiError::internal(e)),
        }
    }
    log::error!("urls: {CODE_TRIES} generated codes in a row were taken");
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no free code found, try again",
    ))
}

async fn show(
    State(app): State<Arc<App>>,
    code: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<StatsView>, ApiError> {
    let code = match code {
        Ok(Path(code)) if validate::plausible_code(&code) => code,
        _ => return Err(ApiError::not_found("no such link")),
    };
    let (store, clicks) = (app.store.clone(), app.clicks.clone());
    let (found, pending) =
        tokio::task::spawn_blocking(move || clicks.read_with_pending(&code, || store.get(&code)))
            .await
            .map_err(ApiError::internal)?;
    let stored = found
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no such link"))?;
    let expired = stored.link.is_expired(now_ms());
    Ok(axum::Json(StatsView {
        link: app.view(stored.link),
        clicks: stored.clicks + pending,
        expired,
    }))
}

async fn redirect(
    State(app): State<Arc<App>>,
    method: Method,
    code: Result<Path<String>, PathRejection>,
) -> Response {
    let (status, response) = resolve(&app, &method, code).await;
    app.metrics
        .redirects
        .with_label_values(&[status.as_str()])
        .inc();
    response
}

/// Answers `/r/{code}`: the redirect, or why not; the status is returned for the metrics.
async fn resolve(
    app: &App,
    method: &Method,
    code: Result<Path<String>, PathRejection>,
) -> (StatusCode, Response) {
    let code = match code {
        Ok(Path(code)) if validate::plausible_code(&code) => code,
        _ => return not_found(app),
    };
    let store = app.store.clone();
    let found = match tokio::task::spawn_blocking(move || store.get(&code)).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    };
    let Some(stored) = found else {
        return not_found(app);
    };
    let link = stored.link;
    let now = now_ms();
    if link.is_expired(now) {
        // Codes are never reused, so an expired link stays gone: the edge may cache that.
        return error(
            StatusCode::GONE,
            "link has expired",
            &public_max_age(app.redirect_max_age),
        );
    }
    let (status, max_age) = match link.seconds_left(now) {
        None => (StatusCode::MOVED_PERMANENTLY, app.redirect_max_age),
        Some(left) => (StatusCode::FOUND, left.min(app.redirect_max_age)),
    };
    let location = match HeaderValue::from_str(&link.url) {
        Ok(location) => location,
        Err(e) => return internal(e),
    };
    if method != Method::HEAD {
        app.clicks.record(&link.code);
    }
    let cache_control = public_max_age(max_age);
    (
        status,
        (
            status,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, cache_control),
            ],
        )
            .into_response(),
    )
}

fn not_found(app: &App) -> (StatusCode, Response) {
    let cache_control = if app.not_found_max_age == 0 {
        HeaderValue::from_static("no-store")
    } else {
        public_max_age(app.not_found_max_age)
    };
    error(StatusCode::NOT_FOUND, "no such link", &cache_control)
}

fn internal(cause: impl std::fmt::Display) -> (StatusCode, Response) {
    let e = ApiError::internal(cause);
    (e.status, e.into_response())
}

fn error(status: StatusCode, reason: &str, cache_control: &HeaderValue) -> (StatusCode, Response) {
    let mut response = ApiError::new(status, reason).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, cache_control.clone());
    (status, response)
}

fn public_max_age(seconds: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("public, max-age={seconds}"))
        .unwrap_or_else(|_| HeaderValue::from_static("no-store"))
}

async fn method_not_allowed(allow: &'static str) -> Response {
    let mut response =
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

async fn no_store_by_default(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Now, in unix milliseconds (0 if the clock is before 1970).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::urls::store::{StoreError, StoredLink};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store where every code is taken.
    #[derive(Default)]
    struct FullStore {
        tries: AtomicUsize,
    }

    impl UrlStore for FullStore {
        fn create(&self, _: &Link) -> Result<(), CreateError> {
            self.tries.fetch_add(1, Ordering::SeqCst);
            Err(CreateError::Taken)
        }
        fn get(&self, _: &str) -> Result<Option<StoredLink>, StoreError> {
            Ok(None)
        }
        fn add_clicks(&self, _: &HashMap<String, u64>) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[test]
    fn generated_codes_are_retried_a_bounded_number_of_times() {
        let store = FullStore::default();
        let e = insert(&store, "https://a.example/".into(), None, 0, None, || {
            "same123".into()
        })
        .unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(store.tries.load(Ordering::SeqCst), CODE_TRIES);
    }

    #[test]
    fn a_taken_alias_is_not_retried() {
        let store = FullStore::default();
        let e = insert(
            &store,
            "https://a.example/".into(),
            Some("mine".into()),
            0,
            None,
            || unreachable!("an alias needs no generated code"),
        )
        .unwrap_err();
        assert_eq!(e, ApiError::conflict("alias 'mine' is taken"));
        assert_eq!(store.tries.load(Ordering::SeqCst), 1);
    }
}
