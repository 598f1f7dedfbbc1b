//! The live dashboard: a source serving Prometheus text, a source that is down, traffic
//! through the gateway, then the page rendered by headless Chromium, and the sources following
//! a reload.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::*;

const TOKEN: &str = "dash-token";

/// What the fake orders origin (with an edge's cache series) exports.
const ORDERS_METRICS: &str = "\
# TYPE orders_saga_outcomes_total counter
orders_saga_outcomes_total{outcome=\"completed\"} 7
orders_saga_outcomes_total{outcome=\"compensated\"} 1
# TYPE orders_dlq_depth gauge
orders_dlq_depth 2
# TYPE meridian_cache_requests_total counter
meridian_cache_requests_total{result=\"hit\"} 3
meridian_cache_requests_total{result=\"miss\"} 1
";

/// Serves `body` as Prometheus text to every request; the task ends with the test runtime.
async fn metrics_server(body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/metrics")
}

fn config(port: u16, up: &str, sources: &str) -> String {
    format!(
        r#"
listeners: [ {{ name: public, address: "127.0.0.1:{port}" }} ]
admin:
  address: "{{admin}}"
  token: "{TOKEN}"
  dashboard: {{ scrape_every: 200ms, sources: {{ {sources} }} }}
telemetry: {{ access_log: off }}
upstreams:
  api: {{ targets: ["{up}"], circuit_breaker: {{}} }}
routes:
  - {{ name: api, match: {{ path_prefix: / }}, upstream: api }}
"#
    )
}

async fn dashboard_json(m: &Meridian) -> serde_json::Value {
    client()
        .get(format!("{}/admin/dashboard", m.admin))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("dashboard json")
        .json()
        .await
        .expect("json body")
}

/// Waits (≤ 10 s) until the dashboard JSON satisfies `ok`, and returns it.
async fn wait_json(m: &Meridian, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = dashboard_json(m).await;
        if ok(&v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs headless Chromium on `url` (≤ 60 s) and returns the rendered DOM.
fn chromium_dom(url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is installed (scripts/deps test)");
    let finished = wait_until(Duration::from_secs(60), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromium did not finish within 60 s");
    }
    let out = child.wait_with_output().expect("chromium output");
    assert!(out.status.success(), "chromium failed: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `data-value` and text of the element with `data-metric="name"`.
fn metric(dom: &str, name: &str) -> Option<(String, String)> {
    let at = dom.find(&format!("data-metric=\"{name}\""))?;
    let tag_end = at + dom[at..].find('>')?;
    let tag = &dom[at..tag_end];
    let value = tag
        .split("data-value=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap_or("")
        .to_owned();
    let text_end = tag_end + dom[tag_end..].find('<')?;
    Some((value, dom[tag_end + 1..text_end].to_owned()))
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_shows_live_numbers_in_chromium() {
    let up = Upstream::start("api").await;
    let orders = metrics_server(ORDERS_METRICS).await;
    let gone = format!("http://127.0.0.1:{}/metrics", free_port());
    let port = free_port();
    let m = Meridian::start(&config(
        port,
        &up.addr.to_string(),
        &format!("orders: \"{orders}\", gone: \"{gone}\""),
    ));
    let c = client();
    for _ in 0..5 {
        let r = c
            .get(format!("http://127.0.0.1:{port}/x"))
            .send()
            .await
            .expect("proxied");
        assert_eq!(r.status(), 200);
    }

    // The page is public; its data needs the token.
    let page = c
        .get(format!("{}/dashboard", m.admin))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .is_ok_and(|t| t.starts_with("text/html")));
    let unauthorized = c
        .get(format!("{}/admin/dashboard", m.admin))
        .send()
        .await
        .expect("json");
    assert_eq!(unauthorized.status(), 401);

    let v = wait_json(&m, |v| {
        v["gateway"]["panel"]["requests"]["requests_total"].as_u64() >= Some(5)
            && v["sources"][0]["up"] == true
            && v["sources"][1]["status"] != "waiting for the first scrape"
    })
    .await;
    assert!(
        v["gateway"]["panel"]["requests"]["requests_total"].as_u64() >= Some(5),
        "{v:#}"
    );
    assert_eq!(v["sources"][0]["panel"]["saga"]["completed"], 7, "{v:#}");
    assert_eq!(v["sources"][0]["panel"]["dlq_depth"], 2.0);
    assert_eq!(v["sources"][0]["panel"]["cache"]["hit_ratio"], 0.75);
    let gone_status = v["sources"][1]["status"].as_str().unwrap_or_default();
    assert!(gone_status.starts_with("down: "), "{gone_status}");
    assert_eq!(
        v["upstreams"]["upstreams"]["api"]["circuit_breaker"]["state"],
        "closed"
    );

    // The token travels in the fragment, which the browser never sends to the server.
    let dom = tokio::task::spawn_blocking({
        let url = format!("{}/dashboard#token={TOKEN}", m.admin);
        move || chromium_dom(&url)
    })
    .await
    .expect("chromium task");
    let value = |name: &str| {
        metric(&dom, name)
            .unwrap_or_else(|| panic!("no data-metric {name} in the rendered page:\n{dom}"))
    };
    let requests: u64 = value("gateway.requests_total").0.parse().unwrap_or(0);
    assert!(requests >= 5, "gateway requests {requests}");
    assert!(
        value("gateway.route.api.requests_total")
            .0
            .parse::<u64>()
            .unwrap_or(0)
            >= 5
    );
    assert!(value("gateway.latency_total_p99_ms")
        .0
        .parse::<f64>()
        .is_ok());
    assert_eq!(
        value("source.orders.saga.completed"),
        ("7".into(), "7".into())
    );
    assert_eq!(value("source.orders.dlq_depth"), ("2".into(), "2".into()));
    assert_eq!(
        value("source.orders.cache.hit_ratio"),
        ("0.75".into(), "75.0%".into())
    );
    assert_eq!(value("source.orders.status").1, "up");
    assert!(value("source.gone.status").1.starts_with("down: "));
    assert_eq!(value("upstream.api.breaker").1, "closed");
    assert_eq!(value("upstream.api.healthy_targets").0, "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_changes_the_sources() {
    let up = Upstream::start("api").await;
    let orders = metrics_server(ORDERS_METRICS).await;
    let urls = metrics_server("urls_clicks_flushed_total 40\n").await;
    let port = free_port();
    let addr = up.addr.to_string();
    let m = Meridian::start(&config(port, &addr, &format!("orders: \"{orders}\"")));
    let v = wait_json(&m, |v| v["sources"][0]["up"] == true).await;
    assert_eq!(v["sources"][0]["name"], "orders", "{v:#}");

    m.write_config(&config(port, &addr, &format!("urls: \"{urls}\"")));
    let r: serde_json::Value = client()
        .post(format!("{}/admin/reload", m.admin))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("reload")
        .json()
        .await
        .expect("reload json");
    assert_eq!(r["warnings"], serde_json::json!([]), "{r:#}");
    let v = wait_json(&m, |v| {
        v["sources"][0]["name"] == "urls" && v["sources"][0]["up"] == true
    })
    .await;
    assert_eq!(v["sources"].as_array().map(Vec::len), Some(1), "{v:#}");
    assert_eq!(v["sources"][0]["panel"]["clicks_flushed"], 40, "{v:#}");
}
