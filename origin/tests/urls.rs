//! The URL shortener run in-process by `origin::urls::run` on a loopback port, driven with a
//! real HTTP client: create → redirect → stats, batched click counting seen in /metrics,
//! clicks kept across a graceful shutdown and across store failures, concurrent alias
//! creation, expiry, and bad input.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use origin::http::BoxError;
use origin::urls::{
    run, run_with_store, Config, CreateError, Link, SqliteStore, StoreError, StoredLink, UrlStore,
};
use reqwest::{header, Client, Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running shortener.
struct Service {
    base: String,
    client: Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), BoxError>>,
}

impl Service {
    /// Runs the shortener with its SQLite store under `config.data_dir`.
    async fn start(config: Config) -> Self {
        Self::spawn(|listener, stopped| {
            run(config, listener, async {
                let _ = stopped.await;
            })
        })
        .await
    }

    /// Runs the shortener over `store`.
    async fn start_with_store(config: Config, store: Arc<dyn UrlStore>) -> Self {
        Self::spawn(|listener, stopped| {
            run_with_store(config, store, listener, async {
                let _ = stopped.await;
            })
        })
        .await
    }

    /// Spawns what `serve` returns for a loopback listener and a shutdown signal, and waits
    /// for `/healthz`.
    async fn spawn<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener, oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, stopped));
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let service = Self {
            base,
            client,
            stop: Some(stop),
            task,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let up = service.get("/healthz").await;
            if up.map(|r| r.status() == StatusCode::OK).unwrap_or(false) {
                return service;
            }
            assert!(Instant::now() < deadline, "the service did not come up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Resolves the shutdown future and waits for `run` to return.
    async fn stop(mut self) -> Result<(), BoxError> {
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("run did not return within 5 s after shutdown")
            .unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        self.client.get(format!("{}{path}", self.base)).send().await
    }

    async fn post(&self, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}/api/urls", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a link and returns its JSON.
    async fn shorten(&self, body: Value) -> Value {
        let r = self.post(body).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().await.unwrap()
    }

    async fn stats(&self, code: &str) -> Value {
        let r = self.get(&format!("/api/urls/{code}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// The value of the sample `name` (with its labels, as printed) in /metrics; 0 if absent.
    async fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                (key == name).then(|| value.parse().unwrap())
            })
            .unwrap_or(0.0)
    }

    /// Polls `name` until it is at least `want` (5 s at most) and returns it.
    async fn metric_reaches(&self, name: &str, want: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.metric(name).await;
            if got >= want {
                return got;
            }
            assert!(Instant::now() < deadline, "{name} stuck at {got} < {want}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn config(dir: &tempfile::TempDir) -> Config {
    Config::new(dir.path())
}

fn header(r: &reqwest::Response, name: header::HeaderName) -> &str {
    r.headers()
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn shorten_then_redirect_then_stats() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    cfg.public_base = "https://sho.rt/".into();
    cfg.redirect_max_age = Duration::from_secs(120);
    let svc = Service::start(cfg).await;

    let r = svc
        .post(json!({ "url": "HTTPS://Example.COM/some path?q=1" }))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, header::CACHE_CONTROL), "no-store");
    let location = header(&r, header::LOCATION).to_string();
    let link: Value = r.json().await.unwrap();
    let code = link["code"].as_str().unwrap();
    assert_eq!(code.len(), 7);
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()), "{code}");
    assert_eq!(location, format!("/api/urls/{code}"));
    assert_eq!(link["short_url"], format!("https://sho.rt/r/{code}"));
    assert_eq!(link["url"], "https://example.com/some%20path?q=1");
    assert!((link["created_at"].as_i64().unwrap() - unix_now()).abs() <= 2);
    assert_eq!(link["expires_at"], Value::Null);

    let r = svc.get(&format!("/r/{code}")).await.unwrap();
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        header(&r, header::LOCATION),
        "https://example.com/some%20path?q=1"
    );
    assert_eq!(header(&r, header::CACHE_CONTROL), "public, max-age=120");

    // HEAD answers the same but is not a click.
    let r = svc
        .client
        .head(format!("{}/r/{code}", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(header(&r, header::CACHE_CONTROL), "public, max-age=120");

    for path in [
        format!("/api/urls/{code}"),
        format!("/api/urls/{code}/stats"),
    ] {
        let r = svc.get(&path).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, header::CACHE_CONTROL), "no-store");
        let stats: Value = r.json().await.unwrap();
        assert_eq!(stats["code"], code);
        assert_eq!(stats["url"], link["url"]);
        assert_eq!(stats["short_url"], link["short_url"]);
        assert_eq!(stats["clicks"], 1);
        assert_eq!(stats["expired"], false);
    }

    // A custom alias.
    let aliased = svc
        .shorten(json!({ "url": "http://example.org/", "alias": "my_Link-1" }))
        .await;
    assert_eq!(aliased["code"], "my_Link-1");
    let r = svc.get("/r/my_Link-1").await.unwrap();
    assert_eq!(header(&r, header::LOCATION), "http://example.org/");

    let r = svc.get("/r/nope123").await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&r, header::CACHE_CONTROL), "public, max-age=5");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "no such link");

    assert_eq!(svc.metric("urls_links_created_total").await, 2.0);
    assert_eq!(
        svc.metric(r#"urls_redirects_total{status="301"}"#).await,
        3.0
    );
    assert_eq!(
        svc.metric(r#"urls_redirects_total{status="404"}"#).await,
        1.0
    );
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_are_written_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    cfg.flush_interval = Duration::from_millis(200);
    let svc = Service::start(cfg).await;
    let code = svc.shorten(json!({ "url": "https://example.com/" })).await["code"]
        .as_str()
        .unwrap()
        .to_string();

    let clicks: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (svc.client.clone(), format!("{}/r/{code}", svc.base));
            tokio::spawn(async move {
                for _ in 0..25 {
                    let r = client.get(&url).send().await.unwrap();
                    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
                }
            })
        })
        .collect();
    for c in clicks {
        c.await.unwrap();
    }
    // Counted at once (pending clicks are included) ...
    assert_eq!(svc.stats(&code).await["clicks"], 200);
    // ... and written in a few batches, not one write per click.
    svc.metric_reaches("urls_clicks_flushed_total", 200.0).await;
    let flushes = svc.metric("urls_click_flushes_total").await;
    assert!((1.0..=40.0).contains(&flushes), "{flushes} flushes");
    assert_eq!(svc.metric("urls_clicks_pending").await, 0.0);
    assert_eq!(svc.stats(&code).await["clicks"], 200);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn pending_clicks_past_flush_max_are_written_early() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    // The timer alone would not write anything during the test.
    cfg.flush_interval = Duration::from_secs(3600);
    cfg.flush_max = 50;
    let svc = Service::start(cfg).await;
    let code = svc.shorten(json!({ "url": "https://example.com/" })).await["code"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..49 {
        svc.get(&format!("/r/{code}")).await.unwrap();
    }
    assert_eq!(svc.metric("urls_clicks_pending").await, 49.0);
    assert_eq!(svc.metric("urls_click_flushes_total").await, 0.0);
    svc.get(&format!("/r/{code}")).await.unwrap();
    svc.metric_reaches("urls_clicks_flushed_total", 50.0).await;
    assert_eq!(svc.metric("urls_click_flushes_total").await, 1.0);
    assert_eq!(svc.metric("urls_clicks_pending").await, 0.0);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_writes_every_counted_click() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    cfg.flush_interval = Duration::from_secs(3600);
    let svc = Service::start(cfg.clone()).await;
    let code = svc.shorten(json!({ "url": "https://example.com/" })).await["code"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..37 {
        let r = svc.get(&format!("/r/{code}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    }
    assert_eq!(svc.metric("urls_clicks_pending").await, 37.0);
    assert_eq!(svc.metric("urls_clicks_flushed_total").await, 0.0);
    svc.stop().await.unwrap();

    // A new process over the same directory: the clicks come from the store.
    let svc = Service::start(cfg).await;
    assert_eq!(svc.metric("urls_clicks_pending").await, 0.0);
    assert_eq!(svc.stats(&code).await["clicks"], 37);
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creation_of_one_alias_has_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(config(&dir)).await;
    let attempts: Vec<_> = (0..32)
        .map(|i| {
            let (client, url) = (svc.client.clone(), format!("{}/api/urls", svc.base));
            tokio::spawn(async move {
                let body = json!({ "url": format!("https://example.com/{i}"), "alias": "race" });
                let r = client.post(&url).json(&body).send().await.unwrap();
                let status = r.status();
                let body: Value = r.json().await.unwrap();
                (i, status, body)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for attempt in attempts {
        let (i, status, body) = attempt.await.unwrap();
        match status {
            StatusCode::CREATED => winners.push(i),
            StatusCode::CONFLICT => assert_eq!(body["error"], "alias 'race' is taken"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stats = svc.stats("race").await;
    assert_eq!(stats["url"], format!("https://example.com/{}", winners[0]));
    assert_eq!(svc.metric("urls_links_created_total").await, 1.0);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn expiring_links_redirect_302_then_410() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(config(&dir)).await;

    // Expiring later than the redirect max-age: capped at 300 s.
    let later = svc
        .shorten(json!({ "url": "https://example.com/later", "expires_in": 3600 }))
        .await;
    let lived = later["expires_at"].as_i64().unwrap() - later["created_at"].as_i64().unwrap();
    assert!((3600..=3601).contains(&lived), "{lived}");
    let r = svc
        .get(&format!("/r/{}", later["code"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(header(&r, header::CACHE_CONTROL), "public, max-age=300");

    // Expiring sooner: max-age is the time left.
    let soon = svc
        .shorten(json!({ "url": "https://example.com/soon", "expires_in": 60 }))
        .await;
    let r = svc
        .get(&format!("/r/{}", soon["code"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let cc = header(&r, header::CACHE_CONTROL);
    let max_age: u64 = cc
        .strip_prefix("public, max-age=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{cc}"));
    // The seconds left, rounded down (a slow machine may have spent a few).
    assert!((50..=60).contains(&max_age), "{cc}");

    let brief = svc
        .shorten(json!({ "url": "https://example.com/brief", "expires_in": 1 }))
        .await;
    let code = brief["code"].as_str().unwrap();
    let r = svc.get(&format!("/r/{code}")).await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(header(&r, header::LOCATION), "https://example.com/brief");
    let deadline = Instant::now() + Duration::from_secs(4);
    let gone = loop {
        let r = svc.get(&format!("/r/{code}")).await.unwrap();
        if r.status() != StatusCode::FOUND {
            break r;
        }
        assert!(Instant::now() < deadline, "still redirecting after 4 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(gone.status(), StatusCode::GONE);
    assert!(gone.headers().get(header::LOCATION).is_none());
    let body: Value = gone.json().await.unwrap();
    assert_eq!(body["error"], "link has expired");
    let stats = svc.stats(code).await;
    assert_eq!(stats["expired"], true);
    assert!(stats["clicks"].as_u64().unwrap() >= 1);
    assert!(svc.metric(r#"urls_redirects_total{status="410"}"#).await >= 1.0);
    svc.stop().await.unwrap();
}

/// One bad request: method, path, body (`None`: no body), content type, expected status.
struct Case {
    method: Method,
    path: &'static str,
    body: Option<String>,
    json: bool,
    want: StatusCode,
}

fn post(body: impl Into<String>, want: StatusCode) -> Case {
    Case {
        method: Method::POST,
        path: "/api/urls",
        body: Some(body.into()),
        json: true,
        want,
    }
}

fn shorten(url: &str) -> Case {
    post(json!({ "url": url }).to_string(), StatusCode::BAD_REQUEST)
}

fn alias(alias: &str) -> Case {
    let body = json!({ "url": "https://example.com/", "alias": alias });
    post(body.to_string(), StatusCode::BAD_REQUEST)
}

fn expiry(expires_in: Value) -> Case {
    let body = json!({ "url": "https://example.com/", "expires_in": expires_in });
    post(body.to_string(), StatusCode::BAD_REQUEST)
}

fn get(path: &'static str, want: StatusCode) -> Case {
    Case {
        method: Method::GET,
        path,
        body: None,
        json: false,
        want,
    }
}

#[tokio::test]
async fn bad_input_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(config(&dir)).await;
    svc.shorten(json!({ "url": "https://example.com/", "alias": "taken" }))
        .await;
    let long_url = format!("https://example.com/{}", "a".repeat(2048));
    let self_loop = format!("{}/r/taken", "http://127.0.0.1:8080");
    let cases = [
        // Target URLs.
        shorten("javascript:alert(1)"),
        shorten("ftp://example.com/file"),
        shorten("file:///etc/passwd"),
        shorten("data:text/html,<script>alert(1)</script>"),
        shorten("http://"),
        shorten("example.com"),
        shorten("/just/a/path"),
        shorten(""),
        shorten("https://user@example.com/"),
        shorten("https://user:secret@example.com/"),
        shorten("http://exa mple.com/"),
        shorten(&long_url),
        shorten(&self_loop),
        // Aliases.
        alias("ab"),
        alias(&"x".repeat(65)),
        alias("has space"),
        alias("a/b"),
        alias("../../etc"),
        alias("naïve"),
        alias("api"),
        alias("ADMIN"),
        alias("healthz"),
        alias("metrics"),
        post(
            json!({ "url": "https://example.com/", "alias": "taken" }).to_string(),
            StatusCode::CONFLICT,
        ),
        // Expiries.
        expiry(json!(0)),
        expiry(json!(-5)),
        expiry(json!("60")),
        expiry(json!(1.5)),
        expiry(json!(1_000_000_000_000_i64)),
        expiry(json!(u64::MAX)),
        // Bodies.
        post("{", StatusCode::BAD_REQUEST),
        post("", StatusCode::BAD_REQUEST),
        post("[]", StatusCode::BAD_REQUEST),
        post("null", StatusCode::BAD_REQUEST),
        post("{}", StatusCode::BAD_REQUEST),
        post(r#"{"url": 5}"#, StatusCode::BAD_REQUEST),
        post(r#"{"url": null}"#, StatusCode::BAD_REQUEST),
        post(
            r#"{"url": "https://example.com/", "alias": 7}"#,
            StatusCode::BAD_REQUEST,
        ),
        post(
            r#"{"url": "https://example.com/", "expire": 60}"#,
            StatusCode::BAD_REQUEST,
        ),
        post(
            json!({ "url": format!("https://example.com/{}", "a".repeat(20_000)) }).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        Case {
            json: false,
            ..post(
                json!({ "url": "https://example.com/" }).to_string(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            )
        },
        // Unknown or hostile codes.
        get("/r/zzzzzzz", StatusCode::NOT_FOUND),
        get("/r/..%2F..%2Fetc%2Fpasswd", StatusCode::NOT_FOUND),
        get("/r/%FF%FE", StatusCode::NOT_FOUND),
        get("/r/%00abc", StatusCode::NOT_FOUND),
        get(
            "/r/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            StatusCode::NOT_FOUND,
        ),
        get("/api/urls/zzzzzzz", StatusCode::NOT_FOUND),
        get("/api/urls/zzzzzzz/stats", StatusCode::NOT_FOUND),
        get("/api/urls/%27%20OR%201=1", StatusCode::NOT_FOUND),
        get("/api/urls", StatusCode::METHOD_NOT_ALLOWED),
        Case {
            method: Method::DELETE,
            ..get("/api/urls/taken", StatusCode::METHOD_NOT_ALLOWED)
        },
    ];
    for case in cases {
        let mut req = svc
            .client
            .request(case.method.clone(), format!("{}{}", svc.base, case.path));
        if case.json {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(body) = &case.body {
            req = req.body(body.clone());
        }
        let r = req.send().await.unwrap();
        let what = format!(
            "{} {} {:.80}",
            case.method,
            case.path,
            case.body.as_deref().unwrap_or("")
        );
        assert_eq!(r.status(), case.want, "{what}");
        assert!(
            r.headers().get(header::CACHE_CONTROL).is_some(),
            "{what}: no Cache-Control"
        );
        let body: Value = r.json().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let reason = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {body}"));
        assert!(!reason.is_empty() && reason.len() < 400, "{what}: {reason}");
    }
    // Nothing bad was stored and the service still works.
    assert_eq!(svc.metric("urls_links_created_total").await, 1.0);
    let r = svc.get("/r/taken").await.unwrap();
    assert_eq!(header(&r, header::LOCATION), "https://example.com/");
    svc.stop().await.unwrap();
}

/// The SQLite store, except that writing clicks fails while `failing` is set.
struct FlakyStore {
    inner: SqliteStore,
    failing: AtomicBool,
}

impl UrlStore for FlakyStore {
    fn create(&self, link: &Link) -> Result<(), CreateError> {
        self.inner.create(link)
    }

    fn get(&self, code: &str) -> Result<Option<StoredLink>, StoreError> {
        self.inner.get(code)
    }

    fn add_clicks(&self, batch: &HashMap<String, u64>) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError("disk full".into()));
        }
        self.inner.add_clicks(batch)
    }
}

#[tokio::test]
async fn clicks_survive_a_failing_store_and_are_written_when_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FlakyStore {
        inner: SqliteStore::open(dir.path()).unwrap(),
        failing: AtomicBool::new(true),
    });
    let mut cfg = config(&dir);
    cfg.flush_interval = Duration::from_millis(50);
    let svc = Service::start_with_store(cfg, store.clone()).await;
    let code = svc.shorten(json!({ "url": "https://example.com/" })).await["code"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..10 {
        svc.get(&format!("/r/{code}")).await.unwrap();
    }
    svc.metric_reaches("urls_click_flush_failures_total", 2.0)
        .await;
    // Refused batches are kept, still counted, and not reported as written.
    assert_eq!(svc.stats(&code).await["clicks"], 10);
    assert_eq!(svc.metric("urls_clicks_pending").await, 10.0);
    assert_eq!(svc.metric("urls_clicks_flushed_total").await, 0.0);

    store.failing.store(false, Ordering::SeqCst);
    svc.metric_reaches("urls_clicks_flushed_total", 10.0).await;
    assert_eq!(svc.metric("urls_clicks_pending").await, 0.0);
    assert_eq!(store.inner.get(&code).unwrap().unwrap().clicks, 10);

    // A store still failing at shutdown: `run` says how many clicks it could not write.
    store.failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        svc.get(&format!("/r/{code}")).await.unwrap();
    }
    let err = svc.stop().await.unwrap_err().to_string();
    assert!(err.contains("3 clicks could not be written"), "{err}");
}

#[tokio::test]
async fn bad_config_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    type Change = fn(&mut Config);
    let bad: [(&str, Change); 4] = [
        ("public_base", |c| {
            c.public_base = "ftp://example.com".into()
        }),
        ("public_base", |c| c.public_base = "not a url".into()),
        ("public_base", |c| {
            c.public_base = "http://x.example/?q=1".into()
        }),
        ("flush_interval", |c| c.flush_interval = Duration::ZERO),
    ];
    for (field, change) in bad {
        let mut cfg = config(&dir);
        change(&mut cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            run(cfg, listener, std::future::pending()),
        )
        .await
        .expect("run should refuse at once");
        let err = result.unwrap_err().to_string();
        assert!(err.contains(field), "{err}");
    }
}
