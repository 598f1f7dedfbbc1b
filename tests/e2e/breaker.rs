//! Circuit breakers against real upstreams told to fail or slow down: every transition, the
//! half-open probe count, fallbacks, the admin API and config errors.

use std::time::Duration;

use crate::harness::*;

/// A breaker that decides on 4 calls, waits 300ms open and tries 2 calls in half-open.
const BREAKER: &str = "{ window: 4, minimum_calls: 4, wait_in_open: 300ms, \
                       permitted_calls_in_half_open: 2";

fn config(port: u16, api: &Upstream, spare: &Upstream, breaker_extra: &str, route: &str) -> String {
    with_listener(
        port,
        &format!(
            r#"
upstreams:
  api:
    targets: ["{api}"]
    outlier: off
    retries: {{ attempts: 0 }}
    circuit_breaker: {BREAKER}{breaker_extra} }}
  spare: {{ targets: ["{spare}"], outlier: off }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: api {route} }}
"#,
            api = api.addr,
            spare = spare.addr
        ),
    )
}

struct Setup {
    api: Upstream,
    spare: Upstream,
    m: Meridian,
    port: u16,
    c: reqwest::Client,
}

async fn setup(breaker_extra: &str, route: &str) -> Setup {
    let (api, spare) = (Upstream::start("api").await, Upstream::start("spare").await);
    let port = free_port();
    let m = Meridian::start(&config(port, &api, &spare, breaker_extra, route));
    Setup {
        api,
        spare,
        m,
        port,
        c: client(),
    }
}

impl Setup {
    async fn get(&self) -> reqwest::Response {
        self.c
            .get(format!("http://127.0.0.1:{}/x", self.port))
            .send()
            .await
            .expect("request")
    }

    async fn status(&self) -> u16 {
        self.get().await.status().as_u16()
    }

    async fn admin(&self) -> serde_json::Value {
        upstreams_json(&self.m.admin).await
    }

    async fn breaker(&self) -> serde_json::Value {
        self.admin().await["upstreams"]["api"]["circuit_breaker"].clone()
    }

    async fn force(&self, scope: &str, name: &str, body: &str) -> reqwest::Response {
        self.c
            .post(format!("{}/admin/{scope}/{name}/breaker", self.m.admin))
            .body(body.to_owned())
            .send()
            .await
            .expect("force")
    }

    /// Fails 4 calls so the breaker opens; checks that the upstream is no longer called.
    async fn open(&self) {
        self.api.set_status(500);
        let before = self.api.hits();
        for _ in 0..4 {
            assert_eq!(self.status().await, 500);
        }
        assert_eq!(self.api.hits(), before + 4);
        let r = self.get().await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["x-meridian-reason"], "circuit open");
        assert!(r.headers().contains_key("retry-after"));
        assert_eq!(r.text().await.expect("body").trim(), "circuit open");
        assert_eq!(self.api.hits(), before + 4, "an open breaker calls nobody");
        assert_eq!(self.breaker().await["state"], "open");
    }

    /// Waits (bounded) until the open breaker's wait is over.
    async fn wait_for_half_open(&self) {
        for _ in 0..100 {
            if self.breaker().await["open_remaining_ms"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the breaker stayed open: {}", self.breaker().await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn opens_on_failures_then_half_open_probes_close_it() {
    let s = setup("", "").await;
    s.open().await;
    s.api.set_status(200);
    s.api.set_delay(Duration::from_millis(400));
    s.wait_for_half_open().await;
    let before = s.api.hits();
    let statuses = concurrent_statuses(&format!("http://127.0.0.1:{}/x", s.port), 5).await;
    assert_eq!(
        s.api.hits(),
        before + 2,
        "exactly permitted_calls_in_half_open reach the upstream: {statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2);
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 3);
    assert_eq!(s.breaker().await["state"], "closed");
    s.api.set_delay(Duration::ZERO);
    assert_eq!(s.status().await, 200);
    let metrics =
        s.c.get(format!("{}/metrics", s.m.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
    for line in [
        r#"meridian_circuit_breaker_state{name="api",scope="upstream"} 0"#,
        r#"meridian_circuit_breaker_transitions_total{from="closed",name="api",scope="upstream",to="open"} 1"#,
        r#"meridian_circuit_breaker_transitions_total{from="half_open",name="api",scope="upstream",to="closed"} 1"#,
        r#"meridian_circuit_breaker_calls_total{name="api",outcome="rejected",scope="upstream"} 4"#,
    ] {
        assert!(metrics.contains(line), "missing {line}");
    }
}

/// Sends `n` requests to `url` at once and returns their statuses.
async fn concurrent_statuses(url: &str, n: usize) -> Vec<u16> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (c, url) = (client(), url.to_owned());
            tokio::spawn(async move { c.get(url).send().await.expect("request").status() })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.expect("task").as_u16());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn half_open_failure_reopens_with_backoff() {
    let s = setup(", backoff_multiplier: 3, max_wait: 5s", "").await;
    s.open().await;
    s.wait_for_half_open().await;
    let before = s.api.hits();
    assert_eq!(s.status().await, 500);
    assert_eq!(s.status().await, 500);
    assert_eq!(s.api.hits(), before + 2);
    let b = s.breaker().await;
    assert_eq!(b["state"], "open", "{b}");
    assert_eq!(b["reopenings"], 1, "{b}");
    let left = b["open_remaining_ms"].as_u64().expect("remaining");
    assert!(left > 400 && left <= 900, "300ms × 3 backoff, got {left}ms");
    assert_eq!(s.status().await, 503);
    assert_eq!(s.api.hits(), before + 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_calls_open_the_breaker() {
    let s = setup(
        ", slow_call_duration: 100ms, slow_call_rate_threshold: 50%",
        "",
    )
    .await;
    s.api.set_delay(Duration::from_millis(150));
    for _ in 0..4 {
        assert_eq!(s.status().await, 200);
    }
    let b = s.breaker().await;
    assert_eq!(b["state"], "open", "{b}");
    assert_eq!(b["slow_calls"], 4, "{b}");
    let hits = s.api.hits();
    assert_eq!(s.status().await, 503);
    assert_eq!(s.api.hits(), hits);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_forces_open_disables_and_closes() {
    let s = setup("", "").await;
    let r = s
        .force("upstreams", "api", r#"{"state":"forced_open"}"#)
        .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        (&v["from"], &v["to"]),
        (&"closed".into(), &"forced_open".into())
    );
    for _ in 0..3 {
        assert_eq!(s.status().await, 503);
    }
    assert_eq!(s.api.hits(), 0, "forced open calls nobody");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.status().await, 503, "forced open does not time out");
    assert_eq!(s.api.hits(), 0);

    s.force("upstreams", "api", r#"{"state":"disabled"}"#).await;
    s.api.set_status(500);
    for _ in 0..10 {
        assert_eq!(s.status().await, 500);
    }
    assert_eq!(s.api.hits(), 10, "disabled lets every call through");
    assert_eq!(s.breaker().await["state"], "disabled");

    s.force("upstreams", "api", r#"{"state":"closed"}"#).await;
    assert_eq!(s.breaker().await["state"], "closed");
    s.open().await;

    let bad = s
        .force("upstreams", "api", r#"{"state":"half_open"}"#)
        .await;
    assert_eq!(bad.status(), 400);
    let none = s.force("upstreams", "spare", r#"{"state":"closed"}"#).await;
    assert_eq!(none.status(), 404, "spare has no breaker");
}

#[tokio::test(flavor = "multi_thread")]
async fn fallback_upstream_takes_the_traffic() {
    let s = setup(", fallback: { upstream: spare }", "").await;
    s.api.set_status(500);
    for _ in 0..4 {
        assert_eq!(s.status().await, 500);
    }
    for _ in 0..5 {
        assert_eq!(s.status().await, 200);
    }
    assert_eq!(s.api.hits(), 4);
    assert_eq!(s.spare.hits(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn route_breaker_answers_with_its_static_fallback() {
    let route = format!(
        ", circuit_breaker: {BREAKER}, fallback: {{ status: 200, body: degraded, \
         headers: {{ x-degraded: yes }} }} }}"
    );
    let s = setup(", failure_statuses: [599]", &route).await;
    s.api.set_status(502);
    for _ in 0..4 {
        assert_eq!(s.status().await, 502);
    }
    let r = s.get().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-degraded"], "yes");
    assert_eq!(r.headers()["x-meridian-reason"], "circuit open");
    assert_eq!(r.text().await.expect("body"), "degraded");
    assert_eq!(s.api.hits(), 4);
    let admin = s.admin().await;
    assert_eq!(admin["route_breakers"]["all"]["state"], "open", "{admin}");
    assert_eq!(
        admin["upstreams"]["api"]["circuit_breaker"]["state"], "closed",
        "502 is not a failure for the upstream's breaker here"
    );
    s.force("routes", "all", r#"{"state":"closed"}"#).await;
    s.api.set_status(200);
    assert_eq!(s.status().await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn state_survives_a_reload_with_the_same_breaker() {
    let s = setup("", "").await;
    s.open().await;
    let reload = || async {
        let r =
            s.c.post(format!("{}/admin/reload", s.m.admin))
                .send()
                .await
                .expect("reload");
        let status = r.status();
        assert_eq!(status, 200, "{}", r.text().await.unwrap_or_default());
    };
    // Same breaker, another change to the upstream: the breaker stays open.
    s.m.write_config(&config(s.port, &s.api, &s.spare, "", "").replace(
        "retries: { attempts: 0 }",
        "retries: { attempts: 0 }\n    dns_refresh: 10s",
    ));
    reload().await;
    assert_eq!(s.breaker().await["state"], "open");
    s.m.write_config(&config(
        s.port,
        &s.api,
        &s.spare,
        ", failure_rate_threshold: 60%",
        "",
    ));
    reload().await;
    assert_eq!(
        s.breaker().await["state"],
        "closed",
        "a changed breaker starts closed"
    );
}

#[test]
fn bad_breaker_config_is_reported_at_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = check_fails(dir.path(), "bad.yaml", "upstreams:\n  api:\n    targets: [\"127.0.0.1:1\"]\n    circuit_breaker:\n      \
         window: 1500ms\n      failure_rate_threshold: 0%\n      fallback: { upstream: nope }\n\
         routes:\n  - { match: { path_prefix: / }, upstream: api, circuit_breaker: { widnow: 5 } }\n");
    for (at, what) in [
        ("bad.yaml:5:15:", "upstreams.api.circuit_breaker.window"),
        ("bad.yaml:6:31:", "expected a rate from 1% to 100%"),
        ("bad.yaml:7:29:", "unknown upstream \"nope\""),
        ("bad.yaml:9:", "did you mean \"window\""),
    ] {
        assert!(
            err.lines().any(|l| l.contains(at) && l.contains(what)),
            "no {at} {what} in:\n{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_attempt_is_a_call_of_the_upstream_breaker() {
    let s = setup("", "").await;
    let retrying = config(s.port, &s.api, &s.spare, "", "").replace(
        "retries: { attempts: 0 }",
        "retries: { attempts: 1, on: [500], backoff: 1ms..2ms }",
    );
    s.m.write_config(&retrying);
    let r =
        s.c.post(format!("{}/admin/reload", s.m.admin))
            .send()
            .await
            .expect("reload");
    assert_eq!(r.status(), 200);
    s.api.set_status(500);
    assert_eq!(s.status().await, 500);
    assert_eq!(s.status().await, 500);
    assert_eq!(s.api.hits(), 4, "two requests, each retried once");
    let b = s.breaker().await;
    assert_eq!(b["state"], "open", "4 failed attempts fill the window: {b}");
    assert_eq!(s.status().await, 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_errors_open_the_breaker_and_timeouts_can_be_ignored() {
    let dead = free_port();
    let slow = Upstream::start("slow").await;
    slow.set_delay(Duration::from_millis(300));
    let port = free_port();
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  dead:
    targets: ["127.0.0.1:{dead}"]
    outlier: off
    retries: {{ attempts: 0 }}
    circuit_breaker: {BREAKER} }}
  slow:
    targets: ["{slow}"]
    outlier: off
    retries: {{ attempts: 0 }}
    timeouts: {{ read: 50ms }}
    circuit_breaker: {BREAKER}, timeouts: false }}
routes:
  - {{ name: dead, match: {{ path_prefix: /dead }}, upstream: dead }}
  - {{ name: slow, match: {{ path_prefix: /slow }}, upstream: slow }}
"#,
            slow = slow.addr
        ),
    ));
    let c = client();
    let status = |path: &'static str| {
        let c = c.clone();
        async move {
            c.get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    };
    for _ in 0..4 {
        assert_eq!(status("/dead").await, 502);
    }
    assert_eq!(status("/dead").await, 503, "connect errors opened it");
    for _ in 0..5 {
        assert_eq!(status("/slow").await, 504);
    }
    let v = upstreams_json(&m.admin).await;
    let b = &v["upstreams"]["slow"]["circuit_breaker"];
    assert_eq!(b["state"], "closed", "{b}");
    assert_eq!(b["failed_calls"], 0, "{b}");
    assert_eq!(b["calls"], 4, "{b}");
}
