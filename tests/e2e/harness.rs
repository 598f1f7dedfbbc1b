//! Test harness: real upstream servers (hyper) and a real `meridian` process, on 127.0.0.1
//! ephemeral ports. Every wait is a bounded poll with a deadline.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// An address on loopback whose connections are refused: the socket is bound and not
/// listening, so the port stays reserved (no other test takes it) while the socket lives.
pub fn refusing_addr() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let addr = socket.local_addr().expect("address");
    (socket, addr)
}

/// Polls `f` every 20 ms until it is true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// What a test upstream does; changeable while it runs.
pub struct UpstreamState {
    /// Name, echoed in the `x-upstream` header and the body.
    pub name: String,
    /// Status of ordinary responses.
    pub status: AtomicU16,
    /// Status of `/healthz`.
    pub health_status: AtomicU16,
    /// Delay before answering ordinary requests, in ms.
    pub delay_ms: AtomicU64,
    /// Ordinary requests received (not `/healthz`).
    pub hits: AtomicUsize,
    /// Health checks received.
    pub health_hits: AtomicUsize,
    /// The last request's method, URI and headers.
    pub last: Mutex<Option<Seen>>,
    /// When false the upstream closes connections at once.
    pub up: AtomicBool,
}

/// A request as an upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers (lower-case names; values joined by ", ").
    pub headers: BTreeMap<String, String>,
    /// Body length.
    pub body_len: usize,
}

/// A running test upstream.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its behaviour and counters.
    pub state: Arc<UpstreamState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Starts an HTTP/1.1 + h2c upstream named `name` answering 200.
    pub async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(UpstreamState {
            name: name.to_string(),
            status: AtomicU16::new(200),
            health_status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
            hits: AtomicUsize::new(0),
            health_hits: AtomicUsize::new(0),
            last: Mutex::new(None),
            up: AtomicBool::new(true),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if !st.up.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let mut builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    builder.http1().max_headers(1000);
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Upstream { addr, state, task }
    }

    /// Ordinary requests received so far.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Sets the status of ordinary responses.
    pub fn set_status(&self, s: u16) {
        self.state.status.store(s, Ordering::SeqCst);
    }

    /// Sets the status of `/healthz`.
    pub fn set_health(&self, s: u16) {
        self.state.health_status.store(s, Ordering::SeqCst);
    }

    /// Sets the answer delay.
    pub fn set_delay(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// The last request seen.
    pub fn last(&self) -> Option<Seen> {
        self.state.last.lock().expect("lock").clone()
    }
}

async fn handle(
    st: Arc<UpstreamState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/healthz" {
        st.health_hits.fetch_add(1, Ordering::SeqCst);
        let s = st.health_status.load(Ordering::SeqCst);
        return Ok(Response::builder()
            .status(s)
            .body(Full::new(Bytes::from("health\n")))
            .expect("resp"));
    }
    let method = req.method().to_string();
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let mut headers = BTreeMap::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).to_string();
        headers
            .entry(k.as_str().to_string())
            .and_modify(|e: &mut String| {
                e.push_str(", ");
                e.push_str(&v)
            })
            .or_insert(v);
    }
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        // A body that did not arrive whole is not a request this upstream received.
        return Ok(Response::builder()
            .status(400)
            .body(Full::new(Bytes::new()))
            .expect("resp"));
    };
    st.hits.fetch_add(1, Ordering::SeqCst);
    *st.last.lock().expect("lock") = Some(Seen {
        method: method.clone(),
        uri: uri.clone(),
        headers,
        body_len: body.len(),
    });
    let delay = st.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = st.status.load(Ordering::SeqCst);
    let body = format!(
        "{{\"upstream\":\"{}\",\"method\":\"{method}\",\"uri\":\"{uri}\"}}",
        st.name
    );
    Ok(Response::builder()
        .status(status)
        .header("x-upstream", st.name.as_str())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("resp"))
}

/// A running `meridian run` process with its config in a temp dir.
pub struct Meridian {
    child: Child,
    /// The temp dir holding the config (and anything else the test puts there).
    pub dir: tempfile::TempDir,
    /// Config path.
    pub config: PathBuf,
    /// The admin base URL.
    pub admin: String,
    /// Captured stdout (access log) path.
    pub stdout: PathBuf,
    /// Captured stderr path.
    pub stderr: PathBuf,
}

impl Drop for Meridian {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of the built binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_meridian")
}

impl Meridian {
    /// Writes `yaml` (with `{admin}` replaced by a free admin address) and starts Meridian;
    /// waits (≤ 30 s) until `/readyz` answers 200.
    pub fn start(yaml: &str) -> Meridian {
        Self::try_start(yaml).expect("meridian became ready")
    }

    /// Like [`Meridian::start`] but returns the stderr text when it does not become ready.
    pub fn try_start(yaml: &str) -> Result<Meridian, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let admin_port = free_port();
        let yaml = yaml
            .replace("{admin}", &format!("127.0.0.1:{admin_port}"))
            .replace("{dir}", &dir.path().display().to_string());
        let yaml = if yaml.contains("upgrade_sock") {
            yaml
        } else {
            format!(
                "server: {{ upgrade_sock: {d}/upgrade.sock, pid_file: {d}/meridian.pid }}\n{yaml}",
                d = dir.path().display()
            )
        };
        let config = dir.path().join("meridian.yaml");
        std::fs::write(&config, &yaml).expect("write config");
        let stdout = dir.path().join("stdout.log");
        let stderr = dir.path().join("stderr.log");
        let child = Command::new(binary())
            .args(["run", "-c"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            // Debug builds only: lets a test stall a worker on purpose (workers.rs).
            .env("MERIDIAN_DEBUG_HOOKS", "1")
            .stdout(Stdio::from(
                std::fs::File::create(&stdout).expect("stdout file"),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(&stderr).expect("stderr file"),
            ))
            .spawn()
            .expect("spawn meridian");
        let mut m = Meridian {
            child,
            dir,
            config,
            admin: format!("http://127.0.0.1:{admin_port}"),
            stdout,
            stderr,
        };
        let ready = wait_until(Duration::from_secs(30), || {
            if let Ok(Some(_)) = m.child.try_wait() {
                return true;
            }
            raw_get(&format!("127.0.0.1:{admin_port}"), "/readyz")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        });
        if !ready || m.child.try_wait().ok().flatten().is_some() {
            let err = std::fs::read_to_string(&m.stderr).unwrap_or_default();
            return Err(format!("meridian did not become ready:\n{err}"));
        }
        Ok(m)
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig}");
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Rewrites the config file in place.
    pub fn write_config(&self, yaml: &str) {
        let admin = self.admin.trim_start_matches("http://");
        let d = self.dir.path().display();
        let yaml = yaml
            .replace("{admin}", admin)
            .replace("{dir}", &d.to_string());
        let yaml = format!(
            "server: {{ upgrade_sock: {d}/upgrade.sock, pid_file: {d}/meridian.pid }}\n{yaml}"
        );
        let tmp = self.dir.path().join("meridian.yaml.tmp");
        std::fs::write(&tmp, yaml).expect("write");
        std::fs::rename(&tmp, &self.config).expect("rename");
    }

    /// Access-log lines written so far, parsed.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).expect("access log line is JSON"))
            .collect()
    }
}

/// Sends raw bytes over TCP and returns what came back before the server closed or 3 s passed.
pub fn raw(addr: &str, request: &[u8]) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if out.len() > 1 << 20 {
            break;
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// A one-shot `GET path` with `Connection: close`.
pub fn raw_get(addr: &str, path: &str) -> Option<String> {
    let r = raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    (!r.is_empty()).then_some(r)
}

/// The status code of a raw HTTP/1.1 response text (0 when none).
pub fn status_of(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A reqwest client without connection reuse surprises.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// `GET url` with `c`, the body parsed as JSON.
pub async fn get_json(c: &reqwest::Client, url: &str) -> serde_json::Value {
    c.get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// `GET /admin/upstreams` of the admin listener at `admin` (a base URL), as JSON.
pub async fn upstreams_json(admin: &str) -> serde_json::Value {
    get_json(&client(), &format!("{admin}/admin/upstreams")).await
}

/// Directory of test fixtures written at run time.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write fixture");
    p
}

/// A config whose head is one plain listener on `127.0.0.1:port`, the admin on `{admin}` and
/// the access log off, followed by `rest` (upstreams, routes, anything else).
/// Writes `yaml` as `dir/name`, runs `meridian check -c` on it, asserts that it refused the
/// config (exit status 1), and returns its stderr.
pub fn check_fails(dir: &Path, name: &str, yaml: &str) -> String {
    let cfg = write_file(dir, name, yaml);
    let out = std::process::Command::new(binary())
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .expect("run meridian check");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{name}: {err}");
    err
}

pub fn with_listener(port: u16, rest: &str) -> String {
    format!(
        "listeners: [ {{ name: public, address: \"127.0.0.1:{port}\" }} ]\nadmin: {{ address: \"{{admin}}\" }}\ntelemetry: {{ access_log: off }}\n{rest}"
    )
}

/// A config that sends every request on listener `port` to the one target `upstream`.
pub fn one_route_to(port: u16, upstream: SocketAddr) -> String {
    with_listener(
        port,
        &format!(
            "upstreams:\n  up: {{ targets: [\"{upstream}\"] }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: up }}\n"
        ),
    )
}

/// Client load running in the background: workers sending `GET /` in a loop.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts `workers` clients sending `GET /` to `127.0.0.1:port` until [`Load::finish`]
/// (bounded: at most 100,000 requests each).
pub fn start_load(port: u16, workers: usize) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let tasks = (0..workers)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let c = client();
                // Bounded: at most 100,000 requests per worker.
                for _ in 0..100_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match c.get(format!("http://127.0.0.1:{port}/")).send().await {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::SeqCst),
                        other => {
                            eprintln!("request failed: {other:?}");
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            })
        })
        .collect();
    Load {
        stop,
        ok,
        failed,
        tasks,
    }
}

impl Load {
    /// Requests answered 200 so far.
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Stops the workers; returns (requests answered 200, requests failed).
    pub async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

/// Sends `n` sequential `GET /` to `127.0.0.1:port` and asserts each answers 200.
pub async fn get_ok(c: &reqwest::Client, port: u16, n: usize) {
    for i in 0..n {
        let r = c
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "request {i} of {n}");
    }
}

/// A short 320x240 test clip with a tone, made by the real `ffmpeg` in `dir`.
#[cfg(feature = "stack")]
pub fn test_clip(dir: &Path) -> PathBuf {
    let clip = dir.join("clip.mp4");
    let ok = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=2:size=320x240:rate=25",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=2"])
        .args([
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&clip)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ffmpeg makes the test clip");
    clip
}

/// Serves `handler` over HTTP/1.1 and h2c on `listener`, one task per connection, until the
/// returned task is aborted: the accept loop of the tests' hand-written origins.
pub fn serve_http<H, F>(listener: TcpListener, handler: H) -> tokio::task::JoinHandle<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(handler))
                    .await;
            });
        }
    })
}

/// How the `api_key` plugin's config stores a key: `sha256:` and its hex digest.
pub fn api_key_hash(key: &str) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(key.as_bytes()))
}

impl Meridian {
    /// The process id of the running `meridian`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}
