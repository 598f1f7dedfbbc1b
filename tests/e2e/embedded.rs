//! Meridian as a library: the embedded example, built by cargo with the tests, runs and serves
//! with its plugin; two gateways built in one process keep their own cache and metrics.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gateway::builder::GatewayBuilder;

use crate::harness::*;

fn example_binary() -> std::path::PathBuf {
    // target/<profile>/deps/e2e-<hash> → target/<profile>/examples/embedded
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile dir");
    profile_dir.join("examples").join("embedded")
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_example_serves_with_its_plugin() {
    let bin = example_binary();
    assert!(
        bin.exists(),
        "{} missing: cargo builds examples with the tests",
        bin.display()
    );
    let up = Upstream::start("origin").await;
    let (port, admin) = (free_port(), free_port());
    let mut child = Command::new(&bin)
        .args([
            format!("127.0.0.1:{port}"),
            up.addr.to_string(),
            format!("127.0.0.1:{admin}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn example");
    let ready = wait_until(Duration::from_secs(30), || {
        raw_get(&format!("127.0.0.1:{admin}"), "/readyz").is_some_and(|r| status_of(&r) == 200)
    });
    let result = async {
        assert!(ready, "embedded example never became ready");
        let r = client()
            .get(format!("http://127.0.0.1:{port}/hi"))
            .send()
            .await
            .expect("req");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-stamp"], "hello");
        assert_eq!(r.headers()["x-upstream"], "origin");
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// One gateway built in this process with the library: a memory cache on one route to
/// `origin`, the listener on `port`. Runs on a thread of its own until the test process ends.
fn embed_gateway(dir: &std::path::Path, name: &str, port: u16, admin: u16, origin: SocketAddr) {
    let yaml = format!(
        "server: {{ threads: 1, upgrade_sock: {d}/{name}.sock, pid_file: {d}/{name}.pid }}\n{}",
        with_listener(
            port,
            &format!(
                "cache: {{ memory: 4MiB }}\nupstreams: {{ origin: {{ targets: [\"{origin}\"] }} }}\nroutes:\n  - name: edge\n    match: {{ path_prefix: / }}\n    upstream: origin\n    cache: {{}}\n"
            ),
        )
        .replace("{admin}", &format!("127.0.0.1:{admin}")),
        d = dir.display()
    );
    let path = write_file(dir, &format!("{name}.yaml"), &yaml);
    std::thread::spawn(move || {
        let builder = GatewayBuilder::from_file(&path).expect("valid config");
        let gateway = builder.build().expect("gateway builds");
        gateway.run_forever()
    });
    let ready = wait_until(Duration::from_secs(30), || {
        raw_get(&format!("127.0.0.1:{admin}"), "/readyz").is_some_and(|r| status_of(&r) == 200)
    });
    assert!(ready, "gateway {name} never became ready");
}

/// The sum of the samples of `metric` whose labels contain `labels`, in a `/metrics` text.
fn sample_sum(text: &str, metric: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(labels))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// GET `/seg.ts` for `media.test` on `port`: its `Cache-Status`.
async fn cache_status(c: &reqwest::Client, port: u16) -> String {
    let r = c
        .get(format!("http://127.0.0.1:{port}/seg.ts"))
        .header("host", "media.test")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    r.headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_in_one_process_keep_their_own_cache_and_metrics() {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = listener.local_addr().expect("addr");
    let counted = hits.clone();
    let _origin = serve_http(listener, move |_req| {
        counted.fetch_add(1, Ordering::SeqCst);
        async {
            Ok(hyper::Response::builder()
                .header("cache-control", "max-age=600")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    b"segment",
                )))
                .expect("response"))
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, a_admin, b, b_admin) = (free_port(), free_port(), free_port(), free_port());
    embed_gateway(dir.path(), "a", a, a_admin, origin);
    embed_gateway(dir.path(), "b", b, b_admin, origin);

    let c = client();
    let first = cache_status(&c, a).await;
    assert_eq!(first, "meridian; fwd=uri-miss; stored");
    let again = cache_status(&c, a).await;
    assert!(again.starts_with("meridian; hit"), "{again}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // The same URL on the other gateway: its cache has never seen it.
    let other = cache_status(&c, b).await;
    assert_eq!(other, "meridian; fwd=uri-miss; stored", "B used A's cache");
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    let metrics = |admin: u16| {
        let c = c.clone();
        async move {
            c.get(format!("http://127.0.0.1:{admin}/metrics"))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("metrics text")
        }
    };
    let (text_a, text_b) = (metrics(a_admin).await, metrics(b_admin).await);
    let requests = "meridian_http_requests_total";
    assert_eq!(
        sample_sum(&text_a, requests, "route=\"edge\""),
        2.0,
        "{text_a}"
    );
    assert_eq!(
        sample_sum(&text_b, requests, "route=\"edge\""),
        1.0,
        "{text_b}"
    );
    let cache = "meridian_cache_requests_total";
    assert_eq!(sample_sum(&text_a, cache, "result=\"hit\""), 1.0);
    assert_eq!(sample_sum(&text_a, cache, "result=\"miss\""), 1.0);
    assert_eq!(sample_sum(&text_b, cache, "result=\"hit\""), 0.0);
    assert_eq!(sample_sum(&text_b, cache, "result=\"miss\""), 1.0);
}
