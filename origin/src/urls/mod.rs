//! The URL shortener: create short links (validated URL, optional alias, optional expiry),
//! redirect with `Cache-Control` so the edge can serve hot links, and count clicks in memory,
//! written to the store in batches by a background flusher (and once more at shutdown).
//!
//! Links live behind the [`UrlStore`] trait; [`run`] uses the embedded [`SqliteStore`],
//! [`run_with_store`] any other. The API is described in `docs/origins/urls.md`.

mod api;
mod clicks;
mod code;
mod flusher;
mod metrics;
mod sqlite;
mod store;
mod validate;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tokio::sync::oneshot;
use url::Url;

use crate::http::{self, BoxError};

pub use sqlite::SqliteStore;
pub use store::{CreateError, Link, StoreError, StoredLink, UrlStore};

/// How the shortener runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where its embedded store lives (`urls.sqlite3` inside; created if missing).
    pub data_dir: PathBuf,
    /// Base of the `short_url`s it answers, as clients reach it (through the gateway):
    /// `short_url` is `<public_base>/r/<code>`; it may have a path prefix, not a query or
    /// fragment. Default `http://127.0.0.1:8080`.
    pub public_base: String,
    /// Longest `Cache-Control: max-age` of a redirect (a link that expires sooner gets the
    /// seconds it has left). Default 300 s.
    pub redirect_max_age: Duration,
    /// `max-age` of a 404 from `/r/{code}`, so the edge absorbs probes of unknown codes;
    /// zero answers `no-store`. Default 5 s.
    pub not_found_max_age: Duration,
    /// How often pending clicks are written to the store (non-zero). Default 1 s.
    pub flush_interval: Duration,
    /// Pending clicks that trigger a write before `flush_interval` is up. Default 10 000.
    pub flush_max: u64,
    /// Most distinct codes with clicks held in memory; half of it triggers an early write,
    /// at the cap clicks on further codes are dropped (and counted). Default 100 000.
    pub max_pending_codes: usize,
    /// Largest request body accepted, in bytes (413 above). Default 16 KiB.
    pub max_body: usize,
}

impl Config {
    /// The defaults, with the store in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            public_base: "http://127.0.0.1:8080".into(),
            redirect_max_age: Duration::from_secs(300),
            not_found_max_age: Duration::from_secs(5),
            flush_interval: Duration::from_secs(1),
            flush_max: 10_000,
            max_pending_codes: 100_000,
            max_body: 16 * 1024,
        }
    }
}

impl Default for Config {
    /// The defaults, with the store in `data/urls`.
    fn default() -> Self {
        Self::new("data/urls")
    }
}

/// Serves the shortener on `listener` with its SQLite store under `config.data_dir` until
/// `shutdown` resolves, then lets in-flight requests finish, writes every pending click and
/// returns.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&dir)).await??;
    run_with_store(config, Arc::new(store), listener, shutdown).await
}

/// [`run`] over any [`UrlStore`] (`config.data_dir` is not used).
pub async fn run_with_store(
    config: Config,
    store: Arc<dyn UrlStore>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let public_base = Url::parse(&config.public_base)
        .ok()
        .filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.has_host()
                && u.query().is_none()
                && u.fragment().is_none()
        })
        .ok_or_else(|| {
            format!(
                "urls: public_base {:?} is not an http(s) URL without query or fragment",
                config.public_base
            )
        })?;
    if config.flush_interval.is_zero() {
        return Err("urls: flush_interval must not be zero".into());
    }
    let registry = Registry::new();
    let metrics = metrics::Metrics::new(&registry)?;
    let clicks = Arc::new(clicks::Clicks::new(
        config.flush_max,
        config.max_pending_codes,
        metrics.clone(),
    ));
    let app = api::router(api::App {
        store: store.clone(),
        clicks: clicks.clone(),
        metrics,
        public_base,
        redirect_max_age: config.redirect_max_age.as_secs(),
        not_found_max_age: config.not_found_max_age.as_secs(),
    });
    let app = http::finish(app, registry, "urls", config.max_body)?;

    let (stop, stopped) = oneshot::channel();
    let flusher = tokio::spawn(flusher::run(clicks, store, config.flush_interval, stopped));
    let served = http::serve(listener, app, shutdown).await;
    // Every request has finished: no click can be counted after this final flush starts.
    let _ = stop.send(());
    let flushed = flusher.await;
    served?;
    flushed?
}
