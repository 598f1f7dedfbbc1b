//! Each timeout: per-try read, total, and connect.

use std::time::{Duration, Instant};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn read_timeout_gives_504() {
    let slow = Upstream::start("slow").await;
    slow.set_delay(Duration::from_secs(3));
    let port = free_port();
    let _m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  pool: {{ targets: ["{slow}"], timeouts: {{ read: 200ms }}, retries: {{ attempts: 0 }} }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool }}
"#,
            slow = slow.addr
        ),
    ));
    let t = Instant::now();
    let r = client()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 504);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn total_timeout_bounds_retries() {
    let (s1, s2) = (Upstream::start("s1").await, Upstream::start("s2").await);
    s1.set_delay(Duration::from_secs(3));
    s2.set_delay(Duration::from_secs(3));
    let port = free_port();
    let _m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  pool:
    targets: ["{s1}", "{s2}"]
    timeouts: {{ read: 400ms, total: 600ms }}
    retries: {{ attempts: 3, on: [timeout], backoff: 1ms..2ms }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool }}
"#,
            s1 = s1.addr,
            s2 = s2.addr
        ),
    ));
    let t = Instant::now();
    let r = client()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .expect("req");
    let took = t.elapsed();
    assert_eq!(r.status(), 504);
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
    assert_eq!(
        s1.hits() + s2.hits(),
        2,
        "first try 400ms, the retry gets the 200ms left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_timeout_gives_502() {
    // A listener whose accept queue is full: further SYNs are dropped, so connects hang.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let full = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..512 {
        match std::net::TcpStream::connect_timeout(&full, Duration::from_millis(50)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    let port = free_port();
    let _m = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  pool: {{ targets: ["{full}"], timeouts: {{ connect: 200ms }}, retries: {{ attempts: 0 }} }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool }}
"#
        ),
    ));
    let t = Instant::now();
    let r = client()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 502);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        t.elapsed()
    );
    drop(listener);
}
