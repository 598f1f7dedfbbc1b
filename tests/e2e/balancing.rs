//! Load-balancing distribution through the proxy, per algorithm.

use std::time::Duration;

use crate::harness::*;

async fn setup(balance: &str, weights: [u32; 3]) -> (Vec<Upstream>, Meridian, u16) {
    let ups = vec![
        Upstream::start("u0").await,
        Upstream::start("u1").await,
        Upstream::start("u2").await,
    ];
    let port = free_port();
    let targets: Vec<String> = ups
        .iter()
        .zip(weights)
        .map(|(u, w)| format!("{{ address: \"{}\", weight: {w} }}", u.addr))
        .collect();
    let m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  pool: {{ targets: [{}], balance: {balance}, outlier: off }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool }}
"#,
            targets.join(", ")
        ),
    ));
    (ups, m, port)
}

fn hits(ups: &[Upstream]) -> Vec<usize> {
    ups.iter().map(Upstream::hits).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_is_even() {
    let (ups, _m, port) = setup("round_robin", [1, 1, 1]).await;
    let c = client();
    get_ok(&c, port, 30).await;
    assert_eq!(hits(&ups), vec![10, 10, 10]);
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_follows_weights() {
    let (ups, _m, port) = setup("weighted", [5, 3, 1]).await;
    let c = client();
    get_ok(&c, port, 90).await;
    assert_eq!(hits(&ups), vec![50, 30, 10]);
}

#[tokio::test(flavor = "multi_thread")]
async fn ketama_keeps_a_key_on_one_target() {
    let (ups, _m, port) = setup("{ algorithm: ketama, key: { header: x-user } }", [1, 1, 1]).await;
    let c = client();
    for user in 0..30 {
        let before = hits(&ups);
        for _ in 0..5 {
            let r = c
                .get(format!("http://127.0.0.1:{port}/"))
                .header("x-user", format!("user-{user}"))
                .send()
                .await
                .expect("req");
            assert_eq!(r.status(), 200);
        }
        let after = hits(&ups);
        let moved: Vec<usize> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        assert!(moved.contains(&5), "user-{user} was spread: {moved:?}");
    }
    assert!(
        hits(&ups).iter().all(|&h| h > 0),
        "30 keys all on one target: {:?}",
        hits(&ups)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn least_conn_avoids_the_busy_target() {
    let (ups, _m, port) = setup("least_conn", [1, 1, 1]).await;
    ups[0].set_delay(Duration::from_millis(400));
    let c = client();
    // Occupy target 0 with long requests, then check new requests avoid it.
    let mut slow = Vec::new();
    for _ in 0..3 {
        let c = c.clone();
        slow.push(tokio::spawn(async move {
            c.get(format!("http://127.0.0.1:{port}/")).send().await
        }));
    }
    assert!(wait_until(Duration::from_secs(5), || ups[0].hits() >= 1));
    let busy_before = ups[0].hits();
    get_ok(&c, port, 20).await;
    for s in slow {
        let _ = s.await;
    }
    let extra_on_busy = ups[0].hits() - busy_before;
    assert!(
        extra_on_busy <= 2,
        "least_conn sent {extra_on_busy} of 20 to the busy target"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn p2c_ewma_prefers_the_fast_targets() {
    let (ups, _m, port) = setup("p2c_ewma", [1, 1, 1]).await;
    ups[0].set_delay(Duration::from_millis(60));
    let c = client();
    get_ok(&c, port, 150).await;
    let h = hits(&ups);
    assert!(h[0] * 4 < h[1] + h[2], "slow target got too many: {h:?}");
}
