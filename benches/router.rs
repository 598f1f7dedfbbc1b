//! Router benchmarks: matching against 1,000 routes, and path normalisation.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::config::model::{
    EncodedSlash, HeaderRules, IpAccess, PathMatch, Route, RouteMatch, RouteUpstream,
};
use gateway::router::{normalize_path, RequestView, Router};

const ROUTES: usize = 1_000;

/// Route `i`: a mix of exact paths, templates, prefixes and a few regexes; a few routes are
/// bound to exact hosts or a wildcard.
fn route(i: usize) -> Route {
    let path = match i % 4 {
        0 => PathMatch::Exact(format!("/exact{i}/status")),
        1 => PathMatch::Template(format!("/svc{i}/items/{{id}}")),
        2 => PathMatch::Prefix(format!("/pre{i}/")),
        _ if i % 100 == 3 => PathMatch::Regex(format!(r"/re{i}/(?P<n>\d+)")),
        _ => PathMatch::Template(format!("/svc{i}/users/{{uid}}/orders/{{oid}}")),
    };
    let hosts = if i.is_multiple_of(50) {
        vec![format!("h{}.example.com", i % 5)]
    } else if i.is_multiple_of(97) {
        vec!["*.wild.example.com".to_owned()]
    } else {
        Vec::new()
    };
    Route {
        name: format!("route-{i}"),
        matcher: RouteMatch {
            hosts,
            path,
            methods: if i.is_multiple_of(3) {
                vec!["GET".to_owned()]
            } else {
                Vec::new()
            },
            headers: Vec::new(),
            query: Vec::new(),
        },
        upstream: RouteUpstream::Single("pool".to_owned()),
        rewrite: None,
        request_headers: HeaderRules::default(),
        response_headers: HeaderRules::default(),
        retry_non_idempotent: false,
        access: IpAccess::default(),
        max_body: None,
        plugins: Vec::new(),
        circuit_breaker: None,
        cache: None,
    }
}

fn bench_route(c: &mut Criterion) {
    let routes: Vec<Route> = (0..ROUTES).map(route).collect();
    let router = Router::new(&routes).expect("bench routes compile");
    // The header map's type comes from `RequestView` (the root package does not name `http`).
    let headers = Default::default();
    let request = |host, path| RequestView {
        host,
        path,
        method: "GET",
        headers: &headers,
        query: None,
    };
    let late_template = request("api.example.com", "/svc997/items/12345");
    let late_exact = request("api.example.com", "/exact996/status");
    let wildcard_host = request("x.wild.example.com", "/svc997/items/1");
    let miss = request("api.example.com", "/nope/x/y");
    assert_eq!(router.route(&late_template).map(|m| m.route), Some(997));
    assert_eq!(router.route(&late_exact).map(|m| m.route), Some(996));
    assert_eq!(router.route(&wildcard_host).map(|m| m.route), Some(997));
    assert!(router.route(&miss).is_none());

    let mut g = c.benchmark_group("route_1000");
    for (name, req) in [
        ("hit_template_late", &late_template),
        ("hit_exact_late", &late_exact),
        ("hit_via_wildcard_host", &wildcard_host),
        ("miss", &miss),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| router.route(black_box(req)).map(|m| m.route))
        });
    }
    g.finish();
}

fn bench_normalize(c: &mut Criterion) {
    let clean = "/v1/urls/abc123/details";
    let dirty = "/v1//urls/./%61bc123/../abc123/%2e%2e/abc123/details";
    assert_eq!(
        normalize_path(dirty, EncodedSlash::Reject).as_deref(),
        Ok(clean)
    );
    let mut g = c.benchmark_group("normalize_path");
    for (name, path) in [("clean", clean), ("dirty", dirty)] {
        g.bench_function(name, |b| {
            b.iter(|| normalize_path(black_box(path), EncodedSlash::Reject).map(|p| p.len()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_route, bench_normalize);
criterion_main!(benches);
