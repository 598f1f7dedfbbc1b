//! The `rate_limit` plugin: local GCRA and concurrency limits, and cluster-wide limits on a real
//! `redis-server` (single node and Redis Cluster) started by the tests on ephemeral ports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// A `redis-server` on 127.0.0.1, without persistence, killed on drop.
struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Redis {
    /// Starts a server on a free port and waits (≤ 10 s) until it answers PING.
    fn start() -> Redis {
        Self::start_with(free_port(), &[])
    }

    fn start_with(port: u16, extra: &[&str]) -> Redis {
        let mut r = Redis {
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        r.restart();
        r
    }

    /// Starts the server (again) on its port and waits until it answers PING.
    fn restart(&mut self) {
        let spawned = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot run redis-server ({e}); the rate-limit tests need it: `scripts/deps test` installs it"
            ),
        };
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(10), || ping(port)),
            "redis-server on port {port} did not answer PING"
        );
    }

    /// Stops the server and waits until its port refuses connections.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let port = self.port;
        assert!(wait_until(Duration::from_secs(5), || !ping(port)));
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `redis-cli -p port ARGS...` and returns its output, trimmed.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli (`scripts/deps test` installs it)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether a Redis on `port` answers `PING` with `+PONG`.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// A gateway with one route `/` to `upstream` carrying `rate_limit: {settings}`, on two threads.
fn gateway(upstream: &Upstream, settings: &str) -> (Meridian, u16) {
    let port = free_port();
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
server: {{ threads: 2, upgrade_sock: "{{dir}}/upgrade.sock", pid_file: "{{dir}}/meridian.pid" }}
upstreams:
  app: {{ targets: ["{addr}"] }}
routes:
  - name: all
    match: {{ path_prefix: / }}
    upstream: app
    plugins:
      - rate_limit: {settings}
"#,
            addr = upstream.addr
        ),
    ));
    (m, port)
}

/// A response's status and the rate-limit header fields.
#[derive(Debug)]
struct Answer {
    status: u16,
    policy: Option<String>,
    state: Option<String>,
    retry_after: Option<u64>,
    body: String,
}

async fn get(c: &reqwest::Client, port: u16, headers: &[(&str, &str)]) -> Answer {
    let mut req = c.get(format!("http://127.0.0.1:{port}/"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (policy, state) = (header("ratelimit-policy"), header("ratelimit"));
    let retry_after = header("retry-after").map(|v| v.parse().expect("Retry-After is seconds"));
    let status = r.status().as_u16();
    let body = r.text().await.expect("body");
    Answer {
        status,
        policy,
        state,
        retry_after,
        body,
    }
}

/// Sends `n` requests at once, spread round-robin over `ports`; returns the statuses.
async fn burst(ports: &[u16], n: usize) -> Vec<u16> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let port = ports[i % ports.len()];
            tokio::spawn(async move { get(&client(), port, &[]).await.status })
        })
        .collect();
    let mut statuses = Vec::with_capacity(n);
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    statuses
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

/// The value of the metric `name` with `labels` at the admin `/metrics` of `m` (0 if absent).
async fn metric(m: &Meridian, name: &str, labels: &str) -> f64 {
    let text = client()
        .get(format!("{}/metrics", m.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let series = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0.0, |v| v.trim().parse().expect("metric value"))
}

fn stderr_count(m: &Meridian, needle: &str) -> usize {
    std::fs::read_to_string(&m.stderr)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn local_limit_allows_the_burst_then_429_with_headers() {
    burst_then_429_with_headers("").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_limit_allows_the_burst_then_429_with_headers() {
    let redis = Redis::start();
    let mode = format!(
        ", mode: redis, redis: {{ url: \"{}\", timeout: 500ms }}",
        redis.url()
    );
    burst_then_429_with_headers(&mode).await;
}

/// A limit of 3/m keyed by a header (`extra` settings appended): three requests pass with the
/// remaining count going down, the fourth gets a 429 with the fields and `Retry-After`; other
/// header values, and requests without the header (by client IP), have their own budgets.
async fn burst_then_429_with_headers(extra: &str) {
    let up = Upstream::start("app").await;
    let settings = format!("{{ limit: 3/m, burst: 3, key: [\"header:x-tenant\"]{extra} }}");
    let (_m, port) = gateway(&up, &settings);
    let c = client();
    let tenant = [("x-tenant", "acme")];
    for remaining in [2, 1, 0] {
        let a = get(&c, port, &tenant).await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.policy.as_deref(), Some("\"default\";q=3;w=60"));
        let state = a.state.expect("RateLimit on an allowed response");
        assert!(
            state.starts_with(&format!("\"default\";r={remaining};t=")),
            "{state}"
        );
    }
    let a = get(&c, port, &tenant).await;
    assert_eq!(a.status, 429, "{a:?}");
    assert_eq!(a.body, "rate limit exceeded\n");
    assert_eq!(a.policy.as_deref(), Some("\"default\";q=3;w=60"));
    let state = a.state.expect("RateLimit on the 429");
    let t: u64 = state
        .strip_prefix("\"default\";r=0;t=")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{state}"));
    assert!(
        (41..=60).contains(&t),
        "the whole burst is back in ~60 s: {t}"
    );
    let retry = a.retry_after.expect("Retry-After on the 429");
    assert!((1..=20).contains(&retry), "one request every 20 s: {retry}");
    assert_eq!(
        up.hits(),
        3,
        "the refused request never reached the upstream"
    );

    // Another header value has its own budget; no header falls back to the client IP.
    assert_eq!(get(&c, port, &[("x-tenant", "globex")]).await.status, 200);
    for _ in 0..3 {
        assert_eq!(get(&c, port, &[]).await.status, 200);
    }
    assert_eq!(get(&c, port, &[]).await.status, 429);
    assert_eq!(get(&c, port, &[("x-tenant", "globex")]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn local_limit_is_exact_under_concurrency() {
    let up = Upstream::start("app").await;
    let (_m, port) = gateway(&up, "{ limit: 25/h }");
    let statuses = burst(&[port], 60).await;
    assert_eq!(count(&statuses, 200), 25, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 35, "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_limit_counts_requests_in_flight() {
    let up = Upstream::start("app").await;
    up.set_delay(Duration::from_millis(800));
    let (_m, port) = gateway(&up, "{ concurrency: 2 }");
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get(&client(), port, &[]).await.status }))
        .collect();
    assert!(
        wait_until(Duration::from_secs(5), || up.hits() == 2),
        "two requests in flight"
    );
    let c = client();
    let a = get(&c, port, &[]).await;
    assert_eq!(a.status, 429, "{a:?}");
    assert_eq!(a.retry_after, Some(1));
    assert!(
        a.body.contains("too many concurrent requests"),
        "{}",
        a.body
    );
    assert!(a.state.is_none(), "no rate limit, no RateLimit field");
    for t in slow {
        assert_eq!(t.await.expect("task"), 200);
    }
    // Their slots were released when they ended.
    up.set_delay(Duration::ZERO);
    for _ in 0..5 {
        assert_eq!(get(&c, port, &[]).await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_slots_are_released_on_errors_and_client_aborts() {
    let up = Upstream::start("app").await;
    let (_m, port) = gateway(&up, "{ concurrency: 1 }");
    // An upstream that refuses connections: each request fails (502), none stays counted.
    up.state
        .up
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let c = client();
    for _ in 0..3 {
        let s = get(&c, port, &[]).await.status;
        assert!((500..600).contains(&s), "an upstream error, not 429: {s}");
    }
    up.state.up.store(true, std::sync::atomic::Ordering::SeqCst);
    // A client that gives up while its request is in flight.
    up.set_delay(Duration::from_millis(600));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .expect("client");
    let gave_up = impatient
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client timed out");
    up.set_delay(Duration::ZERO);
    let freed = async {
        for _ in 0..100 {
            if get(&c, port, &[]).await.status == 200 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    assert!(freed.await, "the aborted request's slot was released");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_two_gateways_share_one_limit_exactly() {
    let redis = Redis::start();
    let up = Upstream::start("app").await;
    let settings = format!(
        "{{ limit: 30/h, mode: redis, redis: {{ url: \"{}\", timeout: 500ms }} }}",
        redis.url()
    );
    let (m1, p1) = gateway(&up, &settings);
    let (m2, p2) = gateway(&up, &settings);
    let statuses = burst(&[p1, p2], 90).await;
    assert_eq!(count(&statuses, 200), 30, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 60, "{statuses:?}");
    assert_eq!(up.hits(), 30);
    let allowed = metric(
        &m1,
        "meridian_ratelimit_requests_total",
        "decision=\"allowed\",policy=\"default\"",
    )
    .await
        + metric(
            &m2,
            "meridian_ratelimit_requests_total",
            "decision=\"allowed\",policy=\"default\"",
        )
        .await;
    assert_eq!(allowed, 30.0);
    // Both gateways see the shared state in their headers.
    let a = get(&client(), p2, &[]).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.policy.as_deref(), Some("\"default\";q=30;w=3600"));
    assert!(a.state.is_some_and(|s| s.starts_with("\"default\";r=0;t=")));
    // One key, in a hash tag, expiring when its state would be fresh again (≤ 30 × 120 s).
    let keys = redis_cli(redis.port, &["--scan"]);
    assert_eq!(keys, "{meridian:rl:default:ip=127.0.0.1}");
    let ttl: u64 = redis_cli(redis.port, &["pttl", &keys])
        .parse()
        .expect("PTTL");
    assert!((3_500_000..=3_600_000).contains(&ttl), "{ttl}");
}

/// Sends requests to `port` until one answers 200 with a `RateLimit` field (Redis answered),
/// then counts those until the first 429; returns how many were allowed.
async fn allowed_until_limited(c: &reqwest::Client, port: u16) -> usize {
    let mut allowed = 0;
    let mut recovered = false;
    for _ in 0..400 {
        let a = get(c, port, &[]).await;
        match (a.status, a.state.is_some()) {
            (200, true) => {
                recovered = true;
                allowed += 1;
            }
            (429, _) if recovered => return allowed,
            (200, false) | (503, _) if !recovered => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            other => panic!("unexpected {other:?}: {a:?}"),
        }
    }
    panic!("no limit enforced after 400 requests ({allowed} allowed)");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_outage_fails_open_or_closed_and_recovers() {
    let mut redis = Redis::start();
    let up = Upstream::start("app").await;
    let settings = |policy: &str, fail: &str| {
        format!(
            "{{ limit: 5/h, policy: {policy}, mode: redis, redis: {{ url: \"{}\", timeout: 250ms, fail: {fail} }} }}",
            redis.url()
        )
    };
    let (open, p_open) = gateway(&up, &settings("open", "open"));
    let (closed, p_closed) = gateway(&up, &settings("closed", "closed"));
    let c = client();
    assert_eq!(allowed_until_limited(&c, p_open).await, 5);
    assert_eq!(allowed_until_limited(&c, p_closed).await, 5);

    redis.stop();
    for _ in 0..10 {
        let a = get(&c, p_open, &[]).await;
        assert_eq!(
            (a.status, a.state.is_none()),
            (200, true),
            "fail open: {a:?}"
        );
        let a = get(&c, p_closed, &[]).await;
        assert_eq!(a.status, 503, "fail closed: {a:?}");
        assert_eq!(a.retry_after, Some(1));
    }
    // While Redis is down only probes (one per 100 ms) ask it; the others are answered at once.
    let errors = "policy=\"open\"";
    assert!(metric(&open, "meridian_ratelimit_redis_errors_total", errors).await >= 1.0);
    let failed = "decision=\"failed_open\",policy=\"open\"";
    assert_eq!(
        metric(&open, "meridian_ratelimit_requests_total", failed).await,
        10.0
    );
    let failed = "decision=\"failed_closed\",policy=\"closed\"";
    assert_eq!(
        metric(&closed, "meridian_ratelimit_requests_total", failed).await,
        10.0
    );
    for m in [&open, &closed] {
        assert_eq!(
            stderr_count(m, "Redis unavailable"),
            1,
            "logged once per incident"
        );
    }

    // Redis comes back empty on the same port: both recover and enforce fresh limits.
    redis.restart();
    assert_eq!(allowed_until_limited(&c, p_open).await, 5);
    assert_eq!(allowed_until_limited(&c, p_closed).await, 5);
    for m in [&open, &closed] {
        assert_eq!(stderr_count(m, "Redis answers again"), 1, "recovery logged");
        assert_eq!(stderr_count(m, "Redis unavailable"), 1);
    }
}

#[test]
fn bad_settings_are_reported_at_their_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let head = "listeners: [ { name: a, address: \"127.0.0.1:1\" } ]\nupstreams:\n  u: { targets: [\"127.0.0.1:2\"] }\nroutes:\n";
    let err = check_fails(
        dir.path(),
        "bad.yaml",
        &format!("{head}  - {{ name: r, match: {{ path_prefix: / }}, upstream: u, plugins: [ {{ rate_limit: {{ limit: 10/fortnight }} }} ] }}\n"),
    );
    assert!(
        err.contains("bad.yaml:5:") && err.contains("plugin rate_limit.limit: \"10/fortnight\""),
        "{err}"
    );
    let err = check_fails(
        dir.path(),
        "bad.yaml",
        &format!("{head}  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    plugins:\n      - rate_limit:\n          limit: 10/s\n          key: [client_ip, \"cookie:session\"]\n"),
    );
    assert!(
        err.contains("bad.yaml:11:28: plugin rate_limit.key[1]: unknown key \"cookie:session\""),
        "{err}"
    );
}

/// A port `p` with `p + 10000` (the cluster bus port) free too.
fn cluster_port() -> u16 {
    for _ in 0..1000 {
        let p = free_port();
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
    panic!("no port with a free cluster bus port");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_cluster_two_gateways_share_limits_across_nodes() {
    let args = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ];
    let nodes: Vec<Redis> = (0..3)
        .map(|_| Redis::start_with(cluster_port(), &args))
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli --cluster create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let ready = wait_until(Duration::from_secs(15), || {
        nodes
            .iter()
            .all(|n| redis_cli(n.port, &["cluster", "info"]).contains("cluster_state:ok"))
    });
    assert!(ready, "the cluster became ready");

    let up = Upstream::start("app").await;
    let urls: Vec<String> = nodes.iter().map(|n| format!("\"{}\"", n.url())).collect();
    let settings = format!(
        "{{ limit: 10/h, key: [\"header:x-tenant\"], mode: redis, redis: {{ urls: [{}], cluster: true, timeout: 500ms }} }}",
        urls.join(", ")
    );
    let (_m1, p1) = gateway(&up, &settings);
    let (_m2, p2) = gateway(&up, &settings);
    let tenants = ["acme", "globex", "initech", "umbrella", "hooli", "stark"];
    let tasks: Vec<_> = (0..tenants.len() * 25)
        .map(|i| {
            let tenant = tenants[i % tenants.len()];
            let port = [p1, p2][i / tenants.len() % 2];
            tokio::spawn(async move {
                (
                    tenant,
                    get(&client(), port, &[("x-tenant", tenant)]).await.status,
                )
            })
        })
        .collect();
    let mut allowed = std::collections::HashMap::new();
    for t in tasks {
        let (tenant, status) = t.await.expect("task");
        assert!(status == 200 || status == 429, "{tenant}: {status}");
        *allowed.entry(tenant).or_insert(0) += usize::from(status == 200);
    }
    for tenant in tenants {
        assert_eq!(allowed.get(tenant), Some(&10), "{tenant}: {allowed:?}");
    }
    // The keys landed on more than one node.
    let holding = nodes
        .iter()
        .filter(|n| redis_cli(n.port, &["dbsize"]) != "0")
        .count();
    assert!(holding >= 2, "keys on {holding} node(s)");
}
