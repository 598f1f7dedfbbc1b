//! Worker threads: every worker accepts on the listener, and a stuck one is noticed — named in
//! the error log, flagged in the metrics, and `/healthz` fails until it turns again — while
//! the others keep serving.

use std::time::{Duration, Instant};

use crate::harness::*;

/// The admin `/healthz` status and body.
async fn healthz(c: &reqwest::Client, admin: &str) -> (u16, String) {
    let r = c
        .get(format!("{admin}/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// The value of the series `name` (a metric name with its labels) in `/metrics`.
async fn metric(c: &reqwest::Client, admin: &str, name: &str) -> Option<f64> {
    let text = c
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `check` every 20 ms for up to `limit`.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_stalled_worker_is_noticed_and_the_others_keep_serving() {
    let up = Upstream::start("a").await;
    let port = free_port();
    // A 1 s stall limit and 6 s stalls: on a loaded 2-core machine a healthy worker's loop went
    // more than 300 ms without turning, which counted a stall that was not there.
    let m = Meridian::start(&format!(
        "server: {{ threads: 2, stall_timeout: 1s, upgrade_sock: {{dir}}/upgrade.sock, pid_file: {{dir}}/meridian.pid }}\n{}",
        one_route_to(port, up.addr)
    ));
    let c = client();
    assert_eq!(healthz(&c, &m.admin).await.0, 200);

    for worker in [0, 1] {
        let stall = c
            .post(format!(
                "{}/admin/debug/stall?worker={worker}&ms=6000",
                m.admin
            ))
            .send()
            .await
            .expect("stall hook");
        assert_eq!(stall.status().as_u16(), 202, "the debug stall hook answers");
        let stalled_at = Instant::now();

        // Noticed: /healthz names the worker, the metric flags it.
        let deadline = Instant::now() + Duration::from_secs(3);
        let (mut status, mut body) = healthz(&c, &m.admin).await;
        while status != 503 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            (status, body) = healthz(&c, &m.admin).await;
        }
        let noticed = status == 503;
        assert!(noticed, "/healthz failed while worker {worker} was stuck");
        assert!(
            body.contains(&format!(
                "worker {worker} (thread meridian-w{worker}) has not turned its event loop"
            )),
            "{body}"
        );
        let flag = format!("meridian_worker_stalled{{worker=\"{worker}\"}}");
        assert!(
            eventually(Duration::from_secs(1), || async {
                metric(&c, &m.admin, &flag).await == Some(1.0)
            })
            .await,
            "{flag} is 1 during the stall"
        );

        // Meanwhile the other worker takes every new connection, with its own upstream
        // connections (none of the stuck worker's).
        for i in 0..10 {
            let fresh = client();
            let t = Instant::now();
            let r = fresh
                .get(format!("http://127.0.0.1:{port}/served-{worker}-{i}"))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .unwrap_or_else(|e| panic!("request {i} while worker {worker} is stuck: {e}"));
            assert_eq!(r.status().as_u16(), 200);
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "{:?}",
                t.elapsed()
            );
        }
        assert!(
            stalled_at.elapsed() < Duration::from_millis(6000),
            "the checks ran inside the stall"
        );

        // It turns again: healthy, flag down, the stall counted once.
        assert!(
            eventually(Duration::from_secs(12), || async {
                healthz(&c, &m.admin).await.0 == 200
            })
            .await,
            "/healthz recovers after the stall"
        );
        assert!(
            eventually(Duration::from_secs(1), || async {
                metric(&c, &m.admin, &flag).await == Some(0.0)
            })
            .await,
            "{flag} is 0 again (the watchdog's next pass)"
        );
        let count = format!("meridian_worker_stalls_total{{worker=\"{worker}\"}}");
        assert_eq!(metric(&c, &m.admin, &count).await, Some(1.0));
    }

    let log = std::fs::read_to_string(&m.stderr).unwrap_or_default();
    for worker in [0, 1] {
        assert!(
            log.lines().any(|l| l.contains("ERROR")
                && l.contains(&format!(
                    "worker {worker} (thread meridian-w{worker}) has not turned its event loop"
                ))),
            "an error log line names worker {worker}:\n{log}"
        );
    }
}
