//! Telemetry: `/metrics` scraped and parsed, the JSON access log read line by line, and OTLP
//! spans received by an OTLP/HTTP endpoint the test runs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::harness::*;

/// Parses Prometheus text format into `name{labels}` → value (labels as written).
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn metric(m: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            k.split('{').next() == Some(name)
                && labels
                    .iter()
                    .all(|(l, v)| k.contains(&format!("{l}=\"{v}\"")))
        })
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_access_log() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let m = Meridian::start(&format!(
        r#"
listeners: [ {{ name: public, address: "127.0.0.1:{port}" }} ]
admin: {{ address: "{{admin}}" }}
telemetry: {{ access_log: stdout }}
upstreams:
  up: {{ targets: ["{up}"] }}
routes:
  - {{ name: api, match: {{ path_prefix: /api }}, upstream: up }}
"#,
        up = up.addr
    ));
    let c = client();
    for _ in 0..7 {
        assert_eq!(
            c.get(format!("http://127.0.0.1:{port}/api/x?q=1"))
                .send()
                .await
                .expect("req")
                .status(),
            200
        );
    }
    for _ in 0..3 {
        assert_eq!(
            c.get(format!("http://127.0.0.1:{port}/nope"))
                .send()
                .await
                .expect("req")
                .status(),
            404
        );
    }
    let r = c
        .get(format!("http://127.0.0.1:{port}/api/kept"))
        .header("x-request-id", "client-chosen-id-1")
        .send()
        .await
        .expect("req");
    assert_eq!(r.headers()["x-request-id"], "client-chosen-id-1");
    // A request is counted once its response is sent, so the last one may land a moment later.
    let mut text = String::new();
    for _ in 0..100 {
        text = c
            .get(format!("{}/metrics", m.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        let counted = metric(&parse_metrics(&text), "meridian_http_requests_total", &[]);
        if counted >= 11.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let parsed = parse_metrics(&text);
    assert_eq!(
        metric(
            &parsed,
            "meridian_http_requests_total",
            &[("route", "api"), ("status_class", "2xx")]
        ),
        8.0,
        "{text}"
    );
    assert!(
        metric(
            &parsed,
            "meridian_http_request_duration_seconds_count",
            &[("route", "api")]
        ) >= 8.0
    );
    assert_eq!(
        metric(
            &parsed,
            "meridian_upstream_target_healthy",
            &[("upstream", "up")]
        ),
        1.0,
        "{text}"
    );

    // The client keeps its connection to the listener open (keep-alive) while we scrape.
    assert!(
        metric(&parsed, "meridian_downstream_connections_active", &[]) >= 1.0,
        "{text}"
    );
    let mut lines = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        lines = m.access_log();
        lines.len() >= 11
    }));
    let ok: Vec<_> = lines.iter().filter(|l| l["route"] == "api").collect();
    assert_eq!(ok.len(), 8);
    for l in &ok {
        assert_eq!(l["status"], 200);
        assert_eq!(l["upstream"], "up");
        assert_eq!(l["method"], "GET");
        assert!(l["request_id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(l["trace_id"].as_str().is_some_and(|s| s.len() == 32));
        assert!(l["duration_ms"].as_f64().is_some());
        assert!(l["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    assert!(ok.iter().any(|l| l["request_id"] == "client-chosen-id-1"));
    let missed: Vec<_> = lines.iter().filter(|l| l["status"] == 404).collect();
    assert_eq!(missed.len(), 3);
    assert_eq!(missed[0]["error"], "no route");
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_spans_carry_the_incoming_trace_id() {
    // The OTLP/HTTP endpoint: records every POST body to /v1/traces.
    let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let otlp = listener.local_addr().expect("addr");
    let b = bodies.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let b = b.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let b = b.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        if path == "/v1/traces" {
                            b.lock().expect("lock").push(body);
                        }
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let up = Upstream::start("up").await;
    let port = free_port();
    let _m = Meridian::start(&format!(
        r#"
listeners: [ {{ name: public, address: "127.0.0.1:{port}" }} ]
admin: {{ address: "{{admin}}" }}
telemetry: {{ access_log: off, otlp: {{ endpoint: "http://{otlp}", service_name: meridian-test }} }}
upstreams:
  up: {{ targets: ["{up}"] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: up }}
"#,
        up = up.addr
    ));
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let r = client()
        .get(format!("http://127.0.0.1:{port}/traced"))
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 200);
    // The upstream got the same trace id with Meridian's span as parent.
    let tp = up
        .last()
        .expect("seen")
        .headers
        .get("traceparent")
        .cloned()
        .expect("traceparent upstream");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts[1], trace_id);
    assert_ne!(parts[2], parent);
    // The exported span (protobuf) carries the trace id and the client's span as parent.
    let tid = hex(trace_id);
    let pid = hex(parent);
    let found = wait_until(Duration::from_secs(15), || {
        bodies
            .lock()
            .expect("lock")
            .iter()
            .any(|b| contains(b, &tid) && contains(b, &pid))
    });
    server.abort();
    assert!(
        found,
        "no exported span with trace id {trace_id} and parent {parent}"
    );
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
