//! Tiering: edges that send their misses to shields (the same binary with another config)
//! chosen by consistent hashing of the cache key, loop prevention, failover, and every
//! example config in `conf/` accepted by `meridian check`.

use std::collections::HashMap;
use std::net::SocketAddr;

use cdn_edge::key::{cache_key, QueryRule};
use cdn_edge::shield::{Shield, Shields};

use crate::harness::*;

/// Storage and tier of a process called `tier`.
fn cache_section(tier: &str) -> String {
    format!("cache: {{ memory: 8MiB, tier: {{ name: {tier}, max_hops: 3 }} }}\n")
}

/// A shield: one cached route (60 s default TTL) to `origin`.
fn shield_config(port: u16, tier: &str, origin: SocketAddr) -> String {
    with_listener(
        port,
        &format!(
            "{}upstreams: {{ origin: {{ targets: [\"{origin}\"] }} }}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    upstream: origin\n    cache: {{ default_ttl: 60s }}\n",
            cache_section(tier)
        ),
    )
}

/// An edge: one cached route to `origin` whose fills go to `shields` (`fallback` as given).
fn edge_config(
    port: u16,
    tier: &str,
    origin: SocketAddr,
    shields: &[SocketAddr],
    fallback: &str,
) -> String {
    edge_config_ttl(port, tier, origin, shields, fallback, "60s")
}

/// [`edge_config`] with the route's `default_ttl`.
fn edge_config_ttl(
    port: u16,
    tier: &str,
    origin: SocketAddr,
    shields: &[SocketAddr],
    fallback: &str,
    ttl: &str,
) -> String {
    let edge = Edge {
        port,
        tier,
        origin,
        shields,
    };
    edge_config_with(&edge, fallback, ttl, "")
}

/// Who an edge is: its port, tier name, origin and shields.
struct Edge<'a> {
    port: u16,
    tier: &'a str,
    origin: SocketAddr,
    shields: &'a [SocketAddr],
}

/// An edge's config, with `shields_extra` (YAML starting with ", ") added to the settings of
/// its shields upstream.
fn edge_config_with(edge: &Edge<'_>, fallback: &str, ttl: &str, shields_extra: &str) -> String {
    let Edge {
        port,
        tier,
        origin,
        shields,
    } = *edge;
    let targets: Vec<String> = shields.iter().map(|s| format!("\"{s}\"")).collect();
    with_listener(
        port,
        &format!(
            "{}upstreams:\n  origin: {{ targets: [\"{origin}\"] }}\n  shields: {{ targets: [{}], timeouts: {{ connect: 1s }}, retries: {{ attempts: 0 }}{shields_extra} }}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    upstream: origin\n    cache: {{ default_ttl: {ttl}, shield: {{ upstream: shields, fallback: {fallback} }} }}\n",
            cache_section(tier),
            targets.join(", ")
        ),
    )
}

/// The shield the edges' ring picks for `path` (requested as `http://127.0.0.1:…{path}`).
fn picked(ring: &Shields, path: &str) -> SocketAddr {
    let key = cache_key("http", "127.0.0.1", path, None, &QueryRule::All);
    ring.pick(key.primary_key()).expect("a shield")
}

fn ring(shields: &[SocketAddr]) -> Shields {
    let list: Vec<Shield> = shields
        .iter()
        .map(|&addr| Shield { addr, weight: 1 })
        .collect();
    Shields::new(&list)
}

async fn metrics(c: &reqwest::Client, m: &Meridian) -> String {
    c.get(format!("{}/metrics", m.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of the sample `line` (name and labels as rendered), 0 when absent.
fn sample(metrics: &str, line: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or(0)
}

async fn get(c: &reqwest::Client, port: u16, path: &str, hops: Option<&str>) -> (u16, String) {
    let mut req = c.get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(h) = hops {
        req = req.header("x-meridian-tier", h);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_shield_origin_hashing() {
    let origin = Upstream::start("origin").await;
    let (s1, s2) = (free_port(), free_port());
    let shields = [addr(s1), addr(s2)];
    let shield1 = Meridian::start(&shield_config(s1, "shield-1", origin.addr));
    let shield2 = Meridian::start(&shield_config(s2, "shield-2", origin.addr));
    let (ea, eb) = (free_port(), free_port());
    let edge_a = Meridian::start(&edge_config(ea, "edge-a", origin.addr, &shields, "origin"));
    let edge_b = Meridian::start(&edge_config(eb, "edge-b", origin.addr, &shields, "origin"));
    let c = client();
    let ring = ring(&shields);
    const N: usize = 24;
    let paths: Vec<String> = (0..N).map(|i| format!("/objects/{i}.bin")).collect();
    let mut expected: HashMap<SocketAddr, u64> = HashMap::new();
    for p in &paths {
        *expected.entry(picked(&ring, p)).or_default() += 1;
    }
    assert_eq!(expected.len(), 2, "both shields get keys: {expected:?}");

    for port in [ea, eb] {
        for p in &paths {
            let (status, body) = get(&c, port, p, None).await;
            assert_eq!(status, 200, "{p}: {body}");
            assert!(body.contains(p.as_str()), "{body}");
        }
    }
    assert_eq!(origin.hits(), N, "the origin sees each key once");
    let hops = origin.last().expect("a request").headers["x-meridian-tier"].clone();
    assert!(hops.starts_with("edge-a, shield-"), "{hops}");

    // Each key went to the shield the ring picks: every shield missed exactly its keys (from
    // edge A) and hit them (from edge B), and both edges counted them per shield.
    for (m, shield) in [(&shield1, shields[0]), (&shield2, shields[1])] {
        let text = metrics(&c, m).await;
        let want = expected[&shield];
        for result in ["miss", "hit"] {
            let line = format!("meridian_cache_requests_total{{result=\"{result}\"}}");
            assert_eq!(sample(&text, &line), want, "{shield} {result}\n{text}");
        }
        for edge in [&edge_a, &edge_b] {
            let text = metrics(&c, edge).await;
            let line = format!(
                "meridian_cache_shield_requests_total{{result=\"ok\",shield=\"{shield}\"}}"
            );
            assert_eq!(sample(&text, &line), want, "{line}\n{text}");
        }
    }

    // A forged hop header naming the key's shield gets that request refused (508) by the
    // shield; the refusal is not stored, so the next plain request is served normally.
    let fresh = "/objects/forged.bin";
    let name = if picked(&ring, fresh) == shields[0] {
        "shield-1"
    } else {
        "shield-2"
    };
    assert_eq!(get(&c, ea, fresh, Some(name)).await.0, 508);
    assert_eq!(get(&c, ea, fresh, Some("edge-a")).await.0, 508);
    assert_eq!(get(&c, ea, fresh, None).await.0, 200);
    assert_eq!(get(&c, ea, fresh, None).await.0, 200);
    assert_eq!(origin.hits(), N + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_object_is_refetched_through_the_shield() {
    let origin = Upstream::start("origin").await;
    let s = free_port();
    let _shield = Meridian::start(&shield_config(s, "shield-1", origin.addr));
    let e = free_port();
    let edge = Meridian::start(&edge_config_ttl(
        e,
        "edge-a",
        origin.addr,
        &[addr(s)],
        "error",
        "1s",
    ));
    let c = client();
    let cache_status = |c: reqwest::Client| async move {
        let resp = c
            .get(format!("http://127.0.0.1:{e}/r"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        resp.headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert!(cache_status(c.clone()).await.contains("fwd=uri-miss"));
    // Poll (bounded) until the edge's copy expired and was fetched again.
    let mut refetched = String::new();
    for _ in 0..40 {
        let cs = cache_status(c.clone()).await;
        if !cs.contains("; hit") {
            refetched = cs;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refetched.contains("fwd=stale"), "{refetched}");
    // The refetch went to the shield (still fresh there), not to the origin.
    assert_eq!(origin.hits(), 1);
    let text = metrics(&c, &edge).await;
    let line = format!(
        "meridian_cache_shield_requests_total{{result=\"ok\",shield=\"{}\"}}",
        addr(s)
    );
    assert_eq!(sample(&text, &line), 2, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forwarding_loop_is_refused_with_508() {
    let origin = Upstream::start("origin").await;
    let (edge_port, shield_port) = (free_port(), free_port());
    // The "shield" is misconfigured as an edge whose shield is the edge itself.
    let edge = Meridian::start(&edge_config(
        edge_port,
        "edge-a",
        origin.addr,
        &[addr(shield_port)],
        "error",
    ));
    let shield = Meridian::start(&edge_config(
        shield_port,
        "shield-x",
        origin.addr,
        &[addr(edge_port)],
        "error",
    ));
    let c = client();
    let (status, _) = get(&c, edge_port, "/looped", None).await;
    assert_eq!(status, 508);
    assert_eq!(origin.hits(), 0);
    // One round: edge → shield → edge (refused); nothing was repeated.
    let ok = "meridian_cache_shield_requests_total{result=\"ok\",shield=";
    let edge_text = metrics(&c, &edge).await;
    let shield_text = metrics(&c, &shield).await;
    assert_eq!(
        sample(&edge_text, &format!("{ok}\"{}\"}}", addr(shield_port))),
        1,
        "{edge_text}"
    );
    assert_eq!(
        sample(&shield_text, &format!("{ok}\"{}\"}}", addr(edge_port))),
        1,
        "{shield_text}"
    );
    // Too many hops are refused as well.
    let (status, body) = get(&c, edge_port, "/x", Some("a, b, c, d")).await;
    assert_eq!(status, 508, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_down_shield_is_failed_over() {
    let origin = Upstream::start("origin").await;
    let live = free_port();
    let dead = addr(free_port());
    let shield = Meridian::start(&shield_config(live, "shield-1", origin.addr));
    let shields = [dead, addr(live)];
    let ring = ring(&shields);
    let (ep, eo, ee) = (free_port(), free_port(), free_port());
    let _edge = Meridian::start(&edge_config(ep, "edge-a", origin.addr, &shields, "error"));
    let _to_origin = Meridian::start(&edge_config(eo, "edge-o", origin.addr, &[dead], "origin"));
    let _to_error = Meridian::start(&edge_config(ee, "edge-e", origin.addr, &[dead], "error"));
    let c = client();

    // Keys of the dead shield go to the next one in ring order.
    let paths: Vec<String> = (0..16).map(|i| format!("/f/{i}")).collect();
    let on_dead = paths.iter().filter(|p| picked(&ring, p) == dead).count();
    assert!(on_dead > 0, "some keys hash to the dead shield");
    for p in &paths {
        assert_eq!(get(&c, ep, p, None).await.0, 200, "{p}");
    }
    assert_eq!(origin.hits(), paths.len());
    let text = metrics(&c, &shield).await;
    assert_eq!(
        sample(&text, "meridian_cache_requests_total{result=\"miss\"}"),
        paths.len() as u64,
        "{text}"
    );

    // Every shield down: straight to the origin, or 502 with `fallback: error`.
    assert_eq!(get(&c, eo, "/o", None).await.0, 200);
    assert_eq!(origin.hits(), paths.len() + 1);
    let (status, body) = get(&c, ee, "/e", None).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(origin.hits(), paths.len() + 1);
}

/// A shield the shield upstream's health checks mark down is tried last for its keys: fills go
/// to the live shield without first being refused by the down one. When it is up again, its
/// keys come back to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shield_marked_down_by_health_checks_is_skipped() {
    let origin = Upstream::start("origin").await;
    // The down shield's port refuses connections, and stays reserved, until that shield starts.
    let (reserved, flaky) = refusing_addr();
    let flaky = flaky.port();
    let live = free_port();
    let _live = Meridian::start(&shield_config(live, "shield-live", origin.addr));
    let shields = [addr(flaky), addr(live)];
    let ring = ring(&shields);
    let ep = free_port();
    let edge = Meridian::start(&edge_config_with(
        &Edge {
            port: ep,
            tier: "edge-h",
            origin: origin.addr,
            shields: &shields,
        },
        "error",
        "60s",
        ", health: { tcp: true, interval: 100ms, timeout: 500ms, unhealthy_after: 1, healthy_after: 1 }",
    ));
    let c = client();
    let shield_state = |want_healthy: bool| {
        let (admin, flaky) = (edge.admin.clone(), addr(flaky).to_string());
        async move {
            for _ in 0..100 {
                let v = upstreams_json(&admin).await;
                let found = v["upstreams"]["shields"]["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["address"] == flaky.as_str() && t["healthy"] == want_healthy);
                if found {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert!(
        shield_state(false).await,
        "the closed shield never became unhealthy"
    );

    let paths: Vec<String> = (0..16).map(|i| format!("/h/{i}")).collect();
    let on_flaky = paths
        .iter()
        .filter(|p| picked(&ring, p) == addr(flaky))
        .count();
    assert!(on_flaky > 0, "some keys hash to the down shield");
    for p in &paths {
        assert_eq!(get(&c, ep, p, None).await.0, 200, "{p}");
    }
    let refused = format!(
        "meridian_cache_shield_requests_total{{result=\"connect_error\",shield=\"{}\"}}",
        addr(flaky)
    );
    let text = metrics(&c, &edge).await;
    assert_eq!(
        sample(&text, &refused),
        0,
        "the down shield was tried first: {text}"
    );

    // The shield comes up: after its health check passes, its keys go to it again.
    drop(reserved);
    let _flaky = Meridian::start(&shield_config(flaky, "shield-flaky", origin.addr));
    assert!(
        shield_state(true).await,
        "the shield never became healthy again"
    );
    let back = (0..64)
        .map(|i| format!("/k/{i}"))
        .find(|p| picked(&ring, p) == addr(flaky))
        .expect("a new key of that shield");
    let hits_before = origin.hits();
    assert_eq!(get(&c, ep, &back, None).await.0, 200);
    assert_eq!(origin.hits(), hits_before + 1);
    let ok_on_flaky = format!(
        "meridian_cache_shield_requests_total{{result=\"ok\",shield=\"{}\"}}",
        addr(flaky)
    );
    let text = metrics(&c, &edge).await;
    assert_eq!(sample(&text, &ok_on_flaky), 1, "{text}");
}

/// Without health checks, the shield upstream's outlier detection sees every shield attempt:
/// after `consecutive_5xx` refused connections the dead shield is ejected, and later fills of
/// its keys go to the live shield without trying it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shield_that_keeps_refusing_is_ejected() {
    let origin = Upstream::start("origin").await;
    let (reserved, dead) = refusing_addr();
    let live = free_port();
    let _live = Meridian::start(&shield_config(live, "shield-live", origin.addr));
    let shields = [dead, addr(live)];
    let ring = ring(&shields);
    let ep = free_port();
    let edge = Meridian::start(&edge_config_with(
        &Edge {
            port: ep,
            tier: "edge-o",
            origin: origin.addr,
            shields: &shields,
        },
        "error",
        "60s",
        ", outlier: { consecutive_5xx: 2, base_ejection: 30s, max_ejection_percent: 50 }",
    ));
    let c = client();
    let on_dead: Vec<String> = (0..256)
        .map(|i| format!("/e/{i}"))
        .filter(|p| picked(&ring, p) == dead)
        .take(6)
        .collect();
    assert_eq!(on_dead.len(), 6, "keys of the dead shield");
    for p in &on_dead {
        assert_eq!(get(&c, ep, p, None).await.0, 200, "{p}");
    }
    let refused = format!(
        "meridian_cache_shield_requests_total{{result=\"connect_error\",shield=\"{dead}\"}}"
    );
    let text = metrics(&c, &edge).await;
    assert_eq!(
        sample(&text, &refused),
        2,
        "ejected after two refusals: {text}"
    );
    let v = upstreams_json(&edge.admin).await;
    let ejected = v["upstreams"]["shields"]["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["address"] == dead.to_string().as_str() && t["ejections"] == 1);
    assert!(ejected, "{v}");
    drop(reserved);
}
