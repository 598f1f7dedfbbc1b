//! Active health checks and passive outlier ejection.

use std::time::Duration;

use crate::harness::*;

/// Polls `/admin/upstreams` (≤ 5 s) until the targets of upstream `pool` satisfy `pred`.
async fn wait_for_targets(admin: &str, pred: impl Fn(&[serde_json::Value]) -> bool) -> bool {
    for _ in 0..100 {
        let v = upstreams_json(admin).await;
        if pred(
            v["upstreams"]["pool"]["targets"]
                .as_array()
                .map_or(&[][..], Vec::as_slice),
        ) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn active_check_ejects_and_recovers() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let port = free_port();
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  pool:
    targets: ["{a}", "{b}"]
    health: {{ http: /healthz, interval: 100ms, timeout: 500ms, unhealthy_after: 2, healthy_after: 2 }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool }}
"#,
            a = a.addr,
            b = b.addr
        ),
    ));
    b.set_health(500);
    assert!(wait_until(Duration::from_secs(5), || b
        .state
        .health_hits
        .load(std::sync::atomic::Ordering::SeqCst)
        >= 3));
    let unhealthy = wait_for_targets(&m.admin, |t| t.iter().any(|t| t["healthy"] == false)).await;
    assert!(unhealthy, "target b never became unhealthy");
    let c = client();
    let before = b.hits();
    get_ok(&c, port, 20).await;
    assert_eq!(b.hits(), before, "an unhealthy target got traffic");
    b.set_health(200);
    let mut recovered = false;
    for _ in 0..100 {
        for _ in 0..4 {
            c.get(format!("http://127.0.0.1:{port}/"))
                .send()
                .await
                .expect("req");
        }
        if b.hits() > before {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "target b never came back");
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_check_marks_a_closed_port_down() {
    let a = Upstream::start("a").await;
    let dead = free_port();
    let port = free_port();
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  pool:
    targets: ["{a}", "127.0.0.1:{dead}"]
    health: {{ tcp: true, interval: 100ms, timeout: 300ms, unhealthy_after: 1, healthy_after: 1 }}
    retries: {{ attempts: 0 }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool }}
"#,
            a = a.addr
        ),
    ));
    let down = wait_for_targets(&m.admin, |t| {
        t.iter().filter(|t| t["healthy"] == false).count() == 1
    })
    .await;
    assert!(down, "closed port never marked down");
    let c = client();
    get_ok(&c, port, 10).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn outlier_ejection_after_consecutive_5xx() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    b.set_status(500);
    let port = free_port();
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  pool:
    targets: ["{a}", "{b}"]
    outlier: {{ consecutive_5xx: 3, base_ejection: 30s, max_ejection_percent: 50 }}
    retries: {{ attempts: 0 }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool }}
"#,
            a = a.addr,
            b = b.addr
        ),
    ));
    let c = client();
    let mut fails = 0;
    for _ in 0..40 {
        let s = c
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .expect("req")
            .status();
        if s == 500 {
            fails += 1;
        }
    }
    assert_eq!(b.hits(), 3, "b should be ejected after 3 consecutive 5xx");
    assert_eq!(fails, 3);
    let v = upstreams_json(&m.admin).await;
    let targets = v["upstreams"]["pool"]["targets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(targets.iter().any(|t| t["ejections"] == 1), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_that_go_away_do_not_eject_the_upstream() {
    let slow = Upstream::start("slow").await;
    slow.set_delay(Duration::from_millis(300));
    let port = free_port();
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  pool: {{ targets: ["{slow}"], outlier: {{ consecutive_5xx: 2 }} }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool }}
"#,
            slow = slow.addr
        ),
    ));
    // Each client gives up before the upstream answers.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .expect("client");
    for _ in 0..6 {
        assert!(impatient
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .is_err());
    }
    assert!(wait_until(Duration::from_secs(5), || slow.hits() >= 6));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let v = upstreams_json(&m.admin).await;
    let target = &v["upstreams"]["pool"]["targets"][0];
    assert_eq!(target["ejections"], 0, "{v}");
    assert_eq!(target["consecutive_failures"], 0, "{v}");
    slow.set_delay(Duration::ZERO);
    let r = client()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 200);
}
