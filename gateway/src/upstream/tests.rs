//! Pool-level tests: selection rules, active checks against real loopback servers, outlier
//! ejection through `report`, DNS, background task lifetime and registry reuse.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::*;
use crate::config::{
    Balance, HashKey, HealthCheck, HealthKind, Keepalive, Outlier, Retries, RetryOn, Target,
    Timeouts, Upstream,
};

const NO_KEY: SelectKey = SelectKey { hash: None };

fn target(addr: &str, weight: u32) -> Target {
    let addr: SocketAddr = addr.parse().unwrap();
    Target {
        host: addr.ip().to_string(),
        port: addr.port(),
        weight,
    }
}

/// An upstream with the config defaults and these targets.
fn upstream(targets: Vec<Target>, balance: Balance) -> Upstream {
    Upstream {
        targets,
        dns_refresh: Duration::from_secs(30),
        balance,
        health: None,
        outlier: Outlier {
            enabled: true,
            consecutive_5xx: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: 10,
        },
        retries: Retries {
            attempts: 1,
            on: vec![RetryOn::ConnectError, RetryOn::Status(502)],
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            budget_percent: 20,
            budget_min: 3,
        },
        timeouts: Timeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_secs(10),
            write: Duration::from_secs(10),
            total: Duration::from_secs(30),
        },
        tls: None,
        keepalive: Keepalive {
            pool_size: 128,
            idle_timeout: Duration::from_secs(60),
        },
        circuit_breaker: None,
    }
}

fn three(balance: Balance) -> UpstreamPool {
    let targets = (1..=3)
        .map(|i| target(&format!("127.0.0.1:900{i}"), 1))
        .collect();
    UpstreamPool::new("t", &upstream(targets, balance))
}

fn health(kind: HealthKind) -> HealthCheck {
    HealthCheck {
        kind,
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(500),
        unhealthy_after: 3,
        healthy_after: 2,
    }
}

fn http_check() -> HealthKind {
    HealthKind::Http {
        path: "/healthz".to_owned(),
        host: None,
        expect: (200, 399),
    }
}

/// Polls `cond` every 5 ms until it holds or `within` passes.
async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

/// Awaits `fut` for at most `within`.
async fn within<F: Future>(within: Duration, fut: F) -> Option<F::Output> {
    tokio::time::timeout(within, fut).await.ok()
}

/// A tiny HTTP server answering every request with the current `status`, counting requests
/// and requests that are not the expected health check (those get a 400).
struct StatusServer {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    requests: Arc<AtomicUsize>,
    malformed: Arc<AtomicUsize>,
}

impl StatusServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let requests = Arc::new(AtomicUsize::new(0));
        let malformed = Arc::new(AtomicUsize::new(0));
        let (s, r, m) = (
            Arc::clone(&status),
            Arc::clone(&requests),
            Arc::clone(&malformed),
        );
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (s, r, m) = (Arc::clone(&s), Arc::clone(&r), Arc::clone(&m));
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut filled = 0;
                    while !buf[..filled].windows(4).any(|w| w == b"\r\n\r\n") && filled < buf.len()
                    {
                        match stream.read(&mut buf[filled..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => filled += n,
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..filled]).to_ascii_lowercase();
                    let expected = head.starts_with("get /healthz http/1.1\r\n")
                        && head.contains("\r\nhost: 127.0.0.1:")
                        && head.contains("\r\nconnection: close\r\n");
                    r.fetch_add(1, Ordering::SeqCst);
                    let status = if expected {
                        s.load(Ordering::SeqCst)
                    } else {
                        m.fetch_add(1, Ordering::SeqCst);
                        400
                    };
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        StatusServer {
            addr,
            status,
            requests,
            malformed,
        }
    }
}

/// A loopback port with nothing listening.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn healthy(pool: &UpstreamPool, i: usize) -> bool {
    pool.snapshot().targets[i].healthy
}

#[test]
fn round_robin_cycles_through_the_pool() {
    let pool = three(Balance::RoundRobin);
    let picks: Vec<u16> = (0..6)
        .map(|_| pool.select(&NO_KEY, &[]).unwrap().addr.port())
        .collect();
    assert_eq!(picks, [9001, 9002, 9003, 9001, 9002, 9003]);
}

#[test]
fn weighted_pool_is_exact_over_900_picks() {
    let targets = vec![
        target("127.0.0.1:9001", 5),
        target("127.0.0.1:9002", 3),
        target("127.0.0.1:9003", 1),
    ];
    let pool = UpstreamPool::new("w", &upstream(targets, Balance::Weighted));
    let mut counts = [0; 3];
    for _ in 0..900 {
        counts[pool.select(&NO_KEY, &[]).unwrap().index] += 1;
    }
    assert_eq!(counts, [500, 300, 100]);
}

#[test]
fn least_conn_pool_prefers_the_idle_target() {
    let pool = three(Balance::LeastConn);
    let a = pool.select(&NO_KEY, &[]).unwrap();
    let _ga = pool.begin(&a);
    let b = pool.select(&NO_KEY, &[]).unwrap();
    let _gb = pool.begin(&b);
    assert_ne!(a.addr, b.addr);
    for _ in 0..10 {
        let c = pool.select(&NO_KEY, &[]).unwrap();
        assert_ne!(c.addr, a.addr);
        assert_ne!(c.addr, b.addr);
    }
    assert_eq!(
        pool.snapshot()
            .targets
            .iter()
            .map(|t| t.in_flight)
            .sum::<u64>(),
        2
    );
}

#[test]
fn ketama_pool_keeps_keys_and_fails_over() {
    let pool = three(Balance::Ketama {
        key: HashKey::ClientIp,
    });
    for i in 0..50 {
        let key = SelectKey {
            hash: Some(hash_key(format!("10.0.0.{i}").as_bytes())),
        };
        let first = pool.select(&key, &[]).unwrap();
        assert_eq!(pool.select(&key, &[]).unwrap().addr, first.addr);
        let retry = pool.select(&key, &[first.addr]).unwrap();
        assert_ne!(retry.addr, first.addr);
    }
}

#[test]
fn p2c_pool_prefers_the_faster_target_after_reports() {
    let targets = vec![target("127.0.0.1:9001", 1), target("127.0.0.1:9002", 1)];
    let pool = UpstreamPool::new("p", &upstream(targets, Balance::P2cEwma));
    let (mut slow, mut fast) = (None, None);
    while slow.is_none() || fast.is_none() {
        let pick = pool.select(&NO_KEY, &[]).unwrap();
        if pick.index == 0 {
            slow = Some(pick);
        } else {
            fast = Some(pick);
        }
    }
    pool.report(
        &slow.unwrap(),
        Outcome::Status(200),
        Duration::from_millis(80),
    );
    pool.report(
        &fast.unwrap(),
        Outcome::Status(200),
        Duration::from_millis(3),
    );
    for _ in 0..100 {
        assert_eq!(pool.select(&NO_KEY, &[]).unwrap().index, 1);
    }
    let snapshot = pool.snapshot();
    assert_eq!(snapshot.targets[1].ewma_ms, Some(3.0));
}

#[test]
fn tried_targets_are_skipped_then_reused_when_nothing_else_is_left() {
    let pool = three(Balance::RoundRobin);
    let all: Vec<SocketAddr> = pool.snapshot().targets.iter().map(|t| t.address).collect();
    for _ in 0..6 {
        assert_eq!(pool.select(&NO_KEY, &all[..2]).unwrap().addr, all[2]);
    }
    assert!(pool.select(&NO_KEY, &all).is_some());

    let single = UpstreamPool::new(
        "s",
        &upstream(vec![target("127.0.0.1:9001", 1)], Balance::RoundRobin),
    );
    let only = single.select(&NO_KEY, &[]).unwrap();
    assert_eq!(
        single.select(&NO_KEY, &[only.addr]).unwrap().addr,
        only.addr
    );
}

#[test]
fn outlier_ejects_after_five_5xx_and_selection_skips_it() {
    let mut config = upstream(
        (1..=3)
            .map(|i| target(&format!("127.0.0.1:900{i}"), 1))
            .collect(),
        Balance::RoundRobin,
    );
    config.outlier.base_ejection = Duration::from_millis(300);
    config.outlier.max_ejection_percent = 50;
    let pool = UpstreamPool::new("o", &config);
    let victim = pool.select(&NO_KEY, &[]).unwrap();
    for _ in 0..4 {
        pool.report(&victim, Outcome::Status(503), Duration::from_millis(1));
    }
    assert_eq!(
        pool.snapshot().targets[victim.index].consecutive_failures,
        4
    );
    pool.report(&victim, Outcome::Status(503), Duration::from_millis(1));
    let snapshot = pool.snapshot();
    let ejected = &snapshot.targets[victim.index];
    assert_eq!(ejected.ejections, 1);
    assert!(ejected.ejected_for_ms.is_some_and(|ms| ms <= 300));
    let deadline = std::time::Instant::now() + Duration::from_millis(250);
    while std::time::Instant::now() < deadline
        && pool.snapshot().targets[victim.index]
            .ejected_for_ms
            .is_some()
    {
        assert_ne!(pool.select(&NO_KEY, &[]).unwrap().addr, victim.addr);
    }
    // A second target may not be ejected too (50 % of 3 is 1).
    let other = pool.select(&NO_KEY, &[victim.addr]).unwrap();
    for _ in 0..5 {
        pool.report(&other, Outcome::ConnectError, Duration::from_millis(1));
    }
    assert_eq!(pool.snapshot().targets[other.index].ejections, 0);
}

#[tokio::test]
async fn ejection_expires_lazily() {
    let mut config = upstream(
        vec![target("127.0.0.1:9001", 1), target("127.0.0.1:9002", 1)],
        Balance::RoundRobin,
    );
    config.outlier.base_ejection = Duration::from_millis(50);
    let pool = UpstreamPool::new("e", &config);
    let bad = pool.select(&NO_KEY, &[]).unwrap();
    for _ in 0..5 {
        pool.report(&bad, Outcome::Timeout, Duration::from_millis(1));
    }
    // The ejected target is skipped while the other is live.
    for _ in 0..10 {
        assert_ne!(pool.select(&NO_KEY, &[]).unwrap().addr, bad.addr);
    }
    assert!(
        eventually(Duration::from_secs(2), || (0..4).any(|_| pool
            .select(&NO_KEY, &[])
            .is_some_and(|p| p.addr == bad.addr)))
        .await
    );
    // A success resets the failure streak.
    pool.report(&bad, Outcome::Status(500), Duration::from_millis(1));
    pool.report(&bad, Outcome::Status(404), Duration::from_millis(1));
    let snap = pool.snapshot();
    let t = snap.targets.iter().find(|t| t.address == bad.addr).unwrap();
    assert_eq!(t.consecutive_failures, 0);
}

#[tokio::test]
async fn panic_mode_serves_through_an_ejected_only_target() {
    let mut config = upstream(vec![target("127.0.0.1:9001", 1)], Balance::RoundRobin);
    config.outlier.base_ejection = Duration::from_secs(30);
    let pool = UpstreamPool::new("p", &config);
    let pick = pool.select(&NO_KEY, &[]).unwrap();
    for _ in 0..5 {
        pool.report(&pick, Outcome::Status(503), Duration::from_millis(1));
    }
    let snap = pool.snapshot();
    assert!(
        snap.targets[0].ejected_for_ms.is_some(),
        "the only target is ejected"
    );
    assert!(snap.panic, "no live target: panic mode");
    assert_eq!(pool.select(&NO_KEY, &[]).unwrap().addr, pick.addr);
}

#[tokio::test]
async fn http_check_marks_unhealthy_and_recovers() {
    let server = StatusServer::start().await;
    let other = StatusServer::start().await;
    let mut config = upstream(
        vec![
            target(&server.addr.to_string(), 1),
            target(&other.addr.to_string(), 1),
        ],
        Balance::RoundRobin,
    );
    config.health = Some(health(http_check()));
    let pool = Arc::new(UpstreamPool::new("h", &config));
    pool.start_background(&Handle::current());

    assert!(
        eventually(Duration::from_secs(5), || server
            .requests
            .load(Ordering::SeqCst)
            >= 3)
        .await
    );
    assert!(healthy(&pool, 0));

    server.status.store(500, Ordering::SeqCst);
    let flipped_at = server.requests.load(Ordering::SeqCst);
    assert!(eventually(Duration::from_secs(5), || !healthy(&pool, 0)).await);
    assert!(server.requests.load(Ordering::SeqCst) >= flipped_at + 3);
    assert!(healthy(&pool, 1));
    for _ in 0..4 {
        assert_eq!(pool.select(&NO_KEY, &[]).unwrap().addr, other.addr);
    }

    server.status.store(204, Ordering::SeqCst);
    let recovering_at = server.requests.load(Ordering::SeqCst);
    assert!(eventually(Duration::from_secs(5), || healthy(&pool, 0)).await);
    assert!(server.requests.load(Ordering::SeqCst) >= recovering_at + 2);
    assert_eq!(server.malformed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn closed_port_fails_both_check_kinds() {
    let open = StatusServer::start().await;
    let closed = closed_port().await;
    for kind in [HealthKind::Tcp, http_check()] {
        let mut config = upstream(
            vec![
                target(&open.addr.to_string(), 1),
                target(&closed.to_string(), 1),
            ],
            Balance::RoundRobin,
        );
        config.health = Some(health(kind.clone()));
        let pool = Arc::new(UpstreamPool::new("c", &config));
        pool.start_background(&Handle::current());
        assert!(
            eventually(Duration::from_secs(5), || !healthy(&pool, 1)).await,
            "{kind:?}"
        );
        assert!(healthy(&pool, 0), "{kind:?}");
        for _ in 0..4 {
            assert_eq!(pool.select(&NO_KEY, &[]).map(|p| p.addr), Some(open.addr));
        }
    }
}

#[tokio::test]
async fn http_check_times_out_on_a_silent_server() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = upstream(
        vec![target(&silent.local_addr().unwrap().to_string(), 1)],
        Balance::RoundRobin,
    );
    let mut check = health(http_check());
    check.timeout = Duration::from_millis(30);
    config.health = Some(check);
    let pool = Arc::new(UpstreamPool::new("silent", &config));
    pool.start_background(&Handle::current());
    assert!(eventually(Duration::from_secs(5), || !healthy(&pool, 0)).await);
    // Panic mode: no target is healthy, so health is ignored.
    let snapshot = pool.snapshot();
    assert!(snapshot.panic);
    assert!(pool.select(&NO_KEY, &[]).is_some());
}

#[tokio::test]
async fn background_tasks_stop_when_the_pool_is_dropped() {
    let server = StatusServer::start().await;
    let mut config = upstream(
        vec![
            target(&server.addr.to_string(), 1),
            Target {
                host: "localhost".to_owned(),
                port: server.addr.port(),
                weight: 1,
            },
        ],
        Balance::RoundRobin,
    );
    config.health = Some(health(HealthKind::Tcp));
    let pool = Arc::new(UpstreamPool::new("d", &config));
    let tasks = pool.spawn_background(&Handle::current());
    assert_eq!(tasks.len(), 2);
    let weak = Arc::downgrade(&pool);
    assert!(eventually(Duration::from_secs(5), || pool.is_resolved()).await);
    drop(pool);
    assert!(weak.upgrade().is_none(), "a task holds a strong reference");
    for task in tasks {
        assert!(
            within(Duration::from_secs(2), task).await.is_some(),
            "task still running"
        );
    }
}

#[tokio::test]
async fn dns_names_resolve_in_the_background() {
    let mut config = upstream(
        vec![Target {
            host: "localhost".to_owned(),
            port: 9009,
            weight: 4,
        }],
        Balance::Weighted,
    );
    config.dns_refresh = Duration::from_secs(1);
    let pool = Arc::new(UpstreamPool::new("dns", &config));
    assert!(!pool.is_resolved());
    assert!(pool.select(&NO_KEY, &[]).is_none());
    pool.start_background(&Handle::current());
    assert!(eventually(Duration::from_secs(5), || pool.is_resolved()).await);
    let snapshot = pool.snapshot();
    assert!(!snapshot.targets.is_empty());
    for t in &snapshot.targets {
        assert!(t.address.ip().is_loopback() && t.address.port() == 9009);
        assert_eq!(t.weight, 4);
        assert_eq!(t.authority, "localhost:9009");
    }
    assert!(pool.select(&NO_KEY, &[]).is_some());
}

#[tokio::test]
async fn registry_reuses_unchanged_pools_with_their_state() {
    let rt = Handle::current();
    let mut cfg = BTreeMap::new();
    cfg.insert(
        "a".to_owned(),
        upstream(vec![target("127.0.0.1:9001", 1)], Balance::RoundRobin),
    );
    cfg.insert(
        "b".to_owned(),
        upstream(vec![target("127.0.0.1:9002", 1)], Balance::RoundRobin),
    );
    let first = UpstreamRegistry::build(&cfg, None, &rt);
    let a = Arc::clone(first.get("a").unwrap());
    let pick = a.select(&NO_KEY, &[]).unwrap();
    for _ in 0..5 {
        a.report(&pick, Outcome::Status(502), Duration::from_millis(1));
    }
    assert_eq!(a.snapshot().targets[0].ejections, 1);

    // "a" unchanged, "b" changed, "c" new; nothing removed yet.
    cfg.get_mut("b").unwrap().balance = Balance::LeastConn;
    cfg.insert(
        "c".to_owned(),
        upstream(vec![target("127.0.0.1:9003", 1)], Balance::RoundRobin),
    );
    let second = UpstreamRegistry::build(&cfg, Some(&first), &rt);
    assert!(Arc::ptr_eq(second.get("a").unwrap(), &a));
    assert_eq!(second.get("a").unwrap().snapshot().targets[0].ejections, 1);
    assert!(!Arc::ptr_eq(
        second.get("b").unwrap(),
        first.get("b").unwrap()
    ));
    assert_eq!(
        second.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );

    // Removing "c": once the registries holding it are gone, so is the pool.
    let c = Arc::downgrade(second.get("c").unwrap());
    cfg.remove("c");
    let third = UpstreamRegistry::build(&cfg, Some(&second), &rt);
    assert!(third.get("c").is_none());
    drop((first, second));
    assert!(c.upgrade().is_none());
    assert!(Arc::ptr_eq(third.get("a").unwrap(), &a));

    // A breaker lives apart from its pool: adding one keeps the pool.
    cfg.get_mut("a").unwrap().circuit_breaker = Some(crate::config::CircuitBreaker::default());
    let fourth = UpstreamRegistry::build(&cfg, Some(&third), &rt);
    assert!(Arc::ptr_eq(fourth.get("a").unwrap(), &a));
}

#[test]
fn snapshot_serializes() {
    let pool = three(Balance::RoundRobin);
    let json = serde_json::to_value(pool.snapshot()).unwrap();
    assert_eq!(json["name"], "t");
    assert_eq!(json["algorithm"], "round_robin");
    assert_eq!(json["targets"][0]["address"], "127.0.0.1:9001");
    assert_eq!(json["targets"][0]["healthy"], true);
    assert_eq!(
        json["targets"][0]["ejected_for_ms"],
        serde_json::Value::Null
    );
}

#[test]
fn hash_key_is_stable() {
    assert_eq!(hash_key(b"abc"), hash_key(b"abc"));
    assert_ne!(hash_key(b"abc"), hash_key(b"abd"));
    // XXH3-64 of the empty input, a published test vector.
    assert_eq!(hash_key(b""), 0x2D06_8005_38D3_94C2);
}
