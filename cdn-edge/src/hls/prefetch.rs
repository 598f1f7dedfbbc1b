//! The prefetch worker: fetches planned segment URLs in the background, once each within a
//! window, through the edge's own listener so the normal cache path fills.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reqwest::header::{HeaderName, HeaderValue, HOST};
use tokio::sync::{mpsc, Semaphore};
use url::Url;

/// Header marking the edge's own prefetch requests, so the gateway does not plan prefetches
/// from them (no recursion). Its value is `1`.
pub const PREFETCH_HEADER: &str = "x-meridian-prefetch";

/// Prefetcher settings.
#[derive(Debug, Clone)]
pub struct PrefetchConfig {
    /// Where prefetch requests go: the edge's own listener, e.g. `http://127.0.0.1:8080`.
    /// Each request keeps the path and query of the planned URL and sends its host and port
    /// as `Host`, so it takes the same route as a player's request would.
    pub base: Url,
    /// Most URLs waiting to be fetched (at least 1); more are dropped (and counted).
    pub queue: usize,
    /// Most prefetch requests in flight at once (at least 1).
    pub concurrency: usize,
    /// A URL is prefetched at most once within this window.
    pub dedup_window: Duration,
    /// Most URLs remembered for deduplication (at least 1); the oldest are forgotten first.
    pub dedup_capacity: usize,
    /// Timeout of one prefetch request, body included.
    pub timeout: Duration,
}

impl PrefetchConfig {
    /// Defaults for prefetching through `base`: queue 1,024, concurrency 8, dedup window
    /// 60 s over at most 65,536 URLs, timeout 10 s.
    pub fn new(base: Url) -> Self {
        PrefetchConfig {
            base,
            queue: 1024,
            concurrency: 8,
            dedup_window: Duration::from_secs(60),
            dedup_capacity: 65_536,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why [`Prefetcher::start`] failed.
#[derive(Debug)]
pub enum StartError {
    /// Not called from within a tokio runtime.
    NoRuntime,
    /// The HTTP client could not be built.
    Client(reqwest::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NoRuntime => {
                f.write_str("the prefetcher must start inside a tokio runtime")
            }
            StartError::Client(e) => write!(f, "cannot build the prefetch HTTP client: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// What [`Prefetcher::enqueue`] did with a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued for fetching.
    Queued,
    /// Already queued, in flight or fetched within the dedup window: ignored.
    Duplicate,
    /// The queue is full: dropped.
    QueueFull,
}

/// Prefetch counters.
#[derive(Debug, Default)]
pub struct PrefetchStats {
    enqueued: AtomicU64,
    dropped: AtomicU64,
    deduplicated: AtomicU64,
    fetched: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

/// A point-in-time copy of [`PrefetchStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefetchStatsSnapshot {
    /// URLs queued.
    pub enqueued: u64,
    /// URLs dropped because the queue was full.
    pub dropped: u64,
    /// URLs ignored as duplicates within the window.
    pub deduplicated: u64,
    /// Prefetches answered with a 2xx or 304 and read to the end.
    pub fetched: u64,
    /// Prefetches that failed: connection error, timeout or another status.
    pub failed: u64,
    /// Body bytes read by prefetches.
    pub bytes: u64,
}

impl PrefetchStats {
    /// The current counter values.
    pub fn snapshot(&self) -> PrefetchStatsSnapshot {
        PrefetchStatsSnapshot {
            enqueued: self.enqueued.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            deduplicated: self.deduplicated.load(Ordering::Relaxed),
            fetched: self.fetched.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// Background segment prefetcher: a bounded queue feeding at most `concurrency` requests,
/// each URL fetched once per dedup window. Dropping it stops taking work; requests already
/// started finish.
pub struct Prefetcher {
    queue: mpsc::Sender<Job>,
    recent: Arc<RecentUrls>,
    stats: Arc<PrefetchStats>,
}

impl Prefetcher {
    /// Starts the worker on the current tokio runtime.
    ///
    /// # Errors
    /// When called outside a tokio runtime, or when the HTTP client cannot be built.
    pub fn start(config: PrefetchConfig) -> Result<Self, StartError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let concurrency = config.concurrency.max(1);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(concurrency)
            .timeout(config.timeout)
            .build()
            .map_err(StartError::Client)?;
        let (queue, jobs) = mpsc::channel(config.queue.max(1));
        let stats = Arc::new(PrefetchStats::default());
        let worker = Worker {
            client,
            base: config.base,
            slots: Arc::new(Semaphore::new(concurrency)),
            stats: Arc::clone(&stats),
        };
        runtime.spawn(worker.run(jobs));
        Ok(Prefetcher {
            queue,
            recent: Arc::new(RecentUrls::new(config.dedup_window, config.dedup_capacity)),
            stats,
        })
    }

    /// Queues `url` unless it was seen within the dedup window or the queue is full. Never
    /// blocks.
    pub fn enqueue(&self, url: &Url) -> Enqueued {
        self.enqueue_variant(url, Vec::new())
    }

    /// Queues `url`, to be fetched with `headers` (the values of the headers a route varies
    /// on, taken from the player's request, so the variant warmed is the one players ask
    /// for), unless the same URL and headers were seen within the dedup window or the queue
    /// is full. Never blocks.
    pub fn enqueue_variant(&self, url: &Url, headers: Vec<(HeaderName, HeaderValue)>) -> Enqueued {
        let key = dedup_key(url, &headers);
        if !self.recent.claim(&key) {
            bump(&self.stats.deduplicated, 1);
            return Enqueued::Duplicate;
        }
        let job = Job {
            url: url.clone(),
            headers,
        };
        match self.queue.try_send(job) {
            Ok(()) => {
                bump(&self.stats.enqueued, 1);
                Enqueued::Queued
            }
            Err(_) => {
                self.recent.release(&key);
                bump(&self.stats.dropped, 1);
                Enqueued::QueueFull
            }
        }
    }

    /// The prefetch counters.
    pub fn stats(&self) -> &Arc<PrefetchStats> {
        &self.stats
    }
}

/// The dedup key of a prefetch: its URL, then each header as `name: value` on a line.
fn dedup_key(url: &Url, headers: &[(HeaderName, HeaderValue)]) -> String {
    let mut key = url.as_str().to_owned();
    for (name, value) in headers {
        key.push('\n');
        key.push_str(name.as_str());
        key.push(':');
        key.push_str(&String::from_utf8_lossy(value.as_bytes()));
    }
    key
}

/// One queued prefetch.
struct Job {
    url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
}

struct Worker {
    client: reqwest::Client,
    base: Url,
    slots: Arc<Semaphore>,
    stats: Arc<PrefetchStats>,
}

impl Worker {
    async fn run(self, mut jobs: mpsc::Receiver<Job>) {
        let worker = Arc::new(self);
        while let Some(job) = jobs.recv().await {
            let Ok(slot) = Arc::clone(&worker.slots).acquire_owned().await else {
                return;
            };
            let worker = Arc::clone(&worker);
            tokio::spawn(async move {
                let ok = worker.fetch(&job).await;
                bump(
                    if ok {
                        &worker.stats.fetched
                    } else {
                        &worker.stats.failed
                    },
                    1,
                );
                drop(slot);
            });
        }
    }

    /// Fetches `url` through the base and reads the body to the end (so the cache stores
    /// all of it); true on a 2xx or 304.
    async fn fetch(&self, job: &Job) -> bool {
        let url = &job.url;
        let mut target = self.base.clone();
        target.set_path(url.path());
        target.set_query(url.query());
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return false,
        };
        let mut request = self.client.get(target);
        for (name, value) in &job.headers {
            request = request.header(name, value);
        }
        let request = request.header(HOST, host).header(PREFETCH_HEADER, "1");
        let Ok(mut response) = request.send().await else {
            return false;
        };
        let status = response.status();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => bump(&self.stats.bytes, chunk.len() as u64),
                Ok(None) => break,
                Err(_) => return false,
            }
        }
        status.is_success() || status == reqwest::StatusCode::NOT_MODIFIED
    }
}

/// URLs seen within a window, at most `capacity` of them (oldest forgotten first).
struct RecentUrls {
    window: Duration,
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    at: HashMap<String, Instant>,
    order: VecDeque<(String, Instant)>,
}

impl RecentUrls {
    fn new(window: Duration, capacity: usize) -> Self {
        RecentUrls {
            window,
            capacity: capacity.max(1),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Records `url` as seen now; false if it already was within the window.
    fn claim(&self, url: &str) -> bool {
        let now = Instant::now();
        let mut seen = self.seen.lock();
        while let Some((oldest, at)) = seen.order.front() {
            let expired = now.duration_since(*at) >= self.window;
            if !expired && seen.order.len() <= self.capacity {
                break;
            }
            let (oldest, at) = (oldest.clone(), *at);
            seen.order.pop_front();
            if seen.at.get(&oldest) == Some(&at) {
                seen.at.remove(&oldest);
            }
        }
        if seen.at.contains_key(url) {
            return false;
        }
        seen.at.insert(url.to_owned(), now);
        seen.order.push_back((url.to_owned(), now));
        if seen.order.len() > self.capacity {
            if let Some((oldest, at)) = seen.order.pop_front() {
                if seen.at.get(&oldest) == Some(&at) {
                    seen.at.remove(&oldest);
                }
            }
        }
        true
    }

    /// Forgets `url` (it was not queued after all).
    fn release(&self, url: &str) {
        self.seen.lock().at.remove(url);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_outside_a_runtime_is_an_error() {
        let base = Url::parse("http://127.0.0.1:1").unwrap();
        assert!(matches!(
            Prefetcher::start(PrefetchConfig::new(base)),
            Err(StartError::NoRuntime)
        ));
    }

    #[test]
    fn recent_urls_dedup_within_window_and_stay_bounded() {
        let recent = RecentUrls::new(Duration::from_secs(60), 3);
        assert!(recent.claim("a"));
        assert!(!recent.claim("a"));
        recent.release("a");
        assert!(recent.claim("a"));
        for u in ["b", "c", "d", "e"] {
            assert!(recent.claim(u));
        }
        let seen = recent.seen.lock();
        assert!(seen.at.len() <= 3 && seen.order.len() <= 3);
        drop(seen);
        // "a" was forgotten (capacity), so it may be prefetched again.
        assert!(recent.claim("a"));

        let short = RecentUrls::new(Duration::ZERO, 10);
        assert!(short.claim("x"));
        assert!(short.claim("x"));
    }
}
