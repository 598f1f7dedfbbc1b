//! YouTube-lite: uploads streamed to disk and sniffed, a persistent queue of `ffmpeg` jobs
//! that turn each into an HLS ladder (published atomically, retried with backoff), and the
//! playlists and segments served with the `Cache-Control` the edge expects.
//!
//! Layout under `data_dir`: `video.db` (the store and job queue), `uploads/` (sources: a
//! `.part` while streaming, then `{id}` until its job ends), `work/{id}/` (a transcode in
//! progress), `media/{id}/` (published ladders, only for ready videos).

mod api;
mod ladder;
mod media;
mod metrics;
mod names;
mod playlist;
mod sniff;
mod store;
mod tools;
mod upload;
mod worker;

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{watch, Notify, Semaphore};

use crate::http::{self, ApiError, BoxError};

pub use ladder::{default_ladder, Rung};
use store::{SqliteStore, Status, VideoStore};

use metrics::Metrics;

/// How the video service runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where its embedded store, uploads and published media live.
    pub data_dir: PathBuf,
    /// The `ffmpeg` program: a path, or a name looked up on `PATH`. Default `ffmpeg`.
    pub ffmpeg: PathBuf,
    /// The `ffprobe` program: a path, or a name looked up on `PATH`. Default `ffprobe`.
    pub ffprobe: PathBuf,
    /// Largest upload in bytes. Default 1 GiB.
    pub max_upload: u64,
    /// Transcode workers running at once (1–64). Default 1.
    pub workers: usize,
    /// The renditions to make (only those not above the source's height). Default
    /// [`default_ladder`]: 240p/480p/720p.
    pub ladder: Vec<Rung>,
    /// Target segment length in seconds (1–60). Default 4.
    pub segment_seconds: u32,
    /// Time limit of one transcode attempt (probe and ladder). Default 30 minutes.
    pub attempt_timeout: Duration,
    /// Attempts before a video is failed (at least 1). Default 3.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one, at most 10 minutes.
    /// Default 5 s.
    pub retry_backoff: Duration,
    /// Most videos waiting or being transcoded at once; further uploads get 429 until the
    /// queue drains. Default 100.
    pub max_queued: u64,
    /// Most uploads received at once; further ones get 503. Default 8.
    pub max_concurrent_uploads: usize,
    /// Longest an upload may send nothing before it is answered 408 and dropped. Default 60 s.
    pub upload_idle_timeout: Duration,
    /// `max-age` of published playlists in seconds (segments are always immutable for a
    /// year). Default 3600.
    pub playlist_max_age: u32,
}

impl Config {
    /// The defaults, with data under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            max_upload: 1 << 30,
            workers: 1,
            ladder: default_ladder(),
            segment_seconds: 4,
            attempt_timeout: Duration::from_secs(30 * 60),
            max_attempts: 3,
            retry_backoff: Duration::from_secs(5),
            max_queued: 100,
            max_concurrent_uploads: 8,
            upload_idle_timeout: Duration::from_secs(60),
            playlist_max_age: 3600,
        }
    }

    fn check(&self) -> Result<(), String> {
        ladder::check_ladder(&self.ladder)?;
        if !(1..=64).contains(&self.workers) {
            return Err("workers must be 1–64".into());
        }
        if !(1..=60).contains(&self.segment_seconds) {
            return Err("segment_seconds must be 1–60".into());
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if self.max_queued == 0 || self.max_concurrent_uploads == 0 {
            return Err("max_queued and max_concurrent_uploads must be at least 1".into());
        }
        if self.attempt_timeout.is_zero() || self.upload_idle_timeout.is_zero() {
            return Err("attempt_timeout and upload_idle_timeout must be positive".into());
        }
        Ok(())
    }
}

/// The directories under `data_dir`.
struct Dirs {
    uploads: PathBuf,
    work: PathBuf,
    media: PathBuf,
}

impl Dirs {
    fn new(data_dir: &Path) -> Self {
        Self {
            uploads: data_dir.join("uploads"),
            work: data_dir.join("work"),
            media: data_dir.join("media"),
        }
    }
}

/// What every handler and worker shares.
struct Service {
    config: Config,
    dirs: Dirs,
    store: Arc<dyn VideoStore>,
    metrics: Metrics,
    /// Ids of ready videos: the only ones whose media is served.
    ready: RwLock<HashSet<String>>,
    /// Wakes an idle worker when a job is queued.
    wake: Notify,
    /// Permits for uploads being received.
    uploading: Semaphore,
}

impl Service {
    /// Runs `f` on the store on a blocking thread.
    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn VideoStore) -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| format!("store task: {e}"))?
    }

    /// Like [`Service::store`], with failures answered as 500.
    async fn api_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn VideoStore) -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.store(f).await.map_err(ApiError::internal)
    }

    /// Sets the `video_jobs` gauge from the store.
    async fn refresh_jobs_gauge(&self) {
        match self.store(|s| s.counts()).await {
            Ok(counts) => self.metrics.set_jobs(&counts),
            Err(e) => log::warn!("video: cannot count jobs: {e}"),
        }
    }

    fn is_ready(&self, id: &str) -> bool {
        self.ready.read().is_ok_and(|ready| ready.contains(id))
    }

    fn mark_ready(&self, id: &str) {
        if let Ok(mut ready) = self.ready.write() {
            ready.insert(id.to_string());
        }
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Serves the video service on `listener` until `shutdown` resolves, then drains and returns:
/// in-flight requests finish, running transcodes are stopped and their jobs queued again
/// (resumed on the next start), workers exit.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let mut config = config;
    config.check()?;
    tokio::fs::create_dir_all(&config.data_dir)
        .await
        .map_err(|e| format!("video: cannot create {}: {e}", config.data_dir.display()))?;
    // Absolute, so no path handed to ffmpeg can be read as an option.
    config.data_dir = tokio::fs::canonicalize(&config.data_dir).await?;
    let dirs = Dirs::new(&config.data_dir);
    for dir in [&dirs.uploads, &dirs.work, &dirs.media] {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| format!("video: cannot create {}: {e}", dir.display()))?;
    }
    let db = config.data_dir.join("video.db");
    let store: Arc<dyn VideoStore> =
        Arc::new(tokio::task::spawn_blocking(move || SqliteStore::open(&db)).await??);

    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry)?;
    let config_uploads = config.max_concurrent_uploads;
    let service = Arc::new(Service {
        config,
        dirs,
        store,
        metrics,
        ready: RwLock::new(HashSet::new()),
        wake: Notify::new(),
        uploading: Semaphore::new(config_uploads),
    });
    worker::recover(&service).await?;
    service.refresh_jobs_gauge().await;
    if let Err(e) = upload::tools_available(&service.config).await {
        log::warn!("video: {e}; uploads are refused until it is installed");
    }

    let app = Router::new()
        .route("/api/videos", post(upload::upload).get(api::list))
        .route("/api/videos/{id}", get(api::status))
        .route("/videos/{id}/master.m3u8", get(media::master))
        .route(
            "/videos/{id}/{rendition}/{file}",
            get(media::rendition_file),
        )
        .with_state(service.clone());
    // The upload body is streamed, not buffered: the body limit only bounds other extractors.
    let app = http::finish(app, registry, "video", 64 * 1024)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let signal = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        signal.send_replace(true);
    });
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..service.config.workers {
        workers.spawn(worker::work(service.clone(), stop_rx.clone()));
    }
    let mut serve_stop = stop_rx.clone();
    let served = http::serve(listener, app, async move {
        let _ = serve_stop.wait_for(|stop| *stop).await;
    })
    .await;
    stop_tx.send_replace(true);
    while workers.join_next().await.is_some() {}
    served?;
    Ok(())
}
