//! Retries, counted at the upstreams.

use crate::harness::*;

async fn setup(extra_route: &str) -> (Upstream, Upstream, Meridian, u16) {
    let (bad, good) = (Upstream::start("bad").await, Upstream::start("good").await);
    bad.set_status(503);
    let port = free_port();
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  pool:
    targets: ["{bad}", "{good}"]
    balance: round_robin
    outlier: off
    retries: {{ attempts: 1, on: [connect_error, 503], backoff: 1ms..5ms }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool {extra_route} }}
"#,
            bad = bad.addr,
            good = good.addr
        ),
    ));
    (bad, good, m, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn get_is_retried_on_another_target() {
    let (bad, good, _m, port) = setup("").await;
    let c = client();
    for _ in 0..20 {
        let r = c
            .get(format!("http://127.0.0.1:{port}/x"))
            .send()
            .await
            .expect("req");
        assert_eq!(r.status(), 200);
    }
    // Every 503 from `bad` was retried once, on `good` (the round-robin cursor moves with each
    // attempt, so first attempts keep landing on `bad`).
    assert!(bad.hits() >= 10, "bad saw {}", bad.hits());
    assert_eq!(good.hits(), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn post_is_not_retried_by_default() {
    let (bad, good, _m, port) = setup("").await;
    let c = client();
    let mut failed = 0;
    for _ in 0..20 {
        let r = c
            .post(format!("http://127.0.0.1:{port}/x"))
            .body("order")
            .send()
            .await
            .expect("req");
        if r.status() == 503 {
            failed += 1;
        }
    }
    assert_eq!(bad.hits(), 10);
    assert_eq!(good.hits(), 10);
    assert_eq!(failed, 10, "the 503s of `bad` reach the client unretried");
}

#[tokio::test(flavor = "multi_thread")]
async fn post_is_retried_when_the_route_allows() {
    let (bad, good, _m, port) = setup(", retry_non_idempotent: true").await;
    let c = client();
    for _ in 0..20 {
        let r = c
            .post(format!("http://127.0.0.1:{port}/x"))
            .body("order")
            .send()
            .await
            .expect("req");
        assert_eq!(r.status(), 200);
    }
    assert!(bad.hits() >= 10, "bad saw {}", bad.hits());
    assert_eq!(good.hits(), 20);
    assert_eq!(
        good.last().expect("seen").body_len,
        5,
        "the body is replayed on retry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_errors_are_retried_elsewhere() {
    let good = Upstream::start("good").await;
    let dead = free_port();
    let port = free_port();
    let _m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  pool:
    targets: ["127.0.0.1:{dead}", "{good}"]
    outlier: off
    retries: {{ attempts: 1, backoff: 1ms..5ms }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool }}
"#,
            good = good.addr
        ),
    ));
    let c = client();
    for _ in 0..10 {
        assert_eq!(
            c.post(format!("http://127.0.0.1:{port}/"))
                .body("x")
                .send()
                .await
                .expect("req")
                .status(),
            200
        );
    }
    assert_eq!(good.hits(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn all_targets_down_gives_502_with_reason() {
    let dead = free_port();
    let port = free_port();
    let _m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  pool: {{ targets: ["127.0.0.1:{dead}"], retries: {{ attempts: 0 }} }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool }}
"#
        ),
    ));
    let r = client()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 502);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(
        r.text().await.expect("body").trim(),
        "upstream connect failed"
    );
}
