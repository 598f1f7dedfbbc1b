//! Plugin-chain benchmarks: the per-request cost of the chain the proxy runs, on a real pingora
//! session (an HTTP/1 request read from an in-memory stream).
//!
//! - `empty`: a route without plugins (the cost every request pays).
//! - `rate_limit+breaker`: local GCRA keyed by client IP, plus the upstream breaker's permit
//!   and result (what `proxy/attempt.rs` does per attempt).
//! - `jwt+rate_limit+breaker`: the same behind JWT verification (HS256, claims forwarded).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use plugins::breaker::{BreakerConfig, CircuitBreaker, SystemClock};
use plugins::{Chain, PluginCtx, Registry};
use tokio::io::AsyncWriteExt;

/// An HS256 token for `sub: bench`, `exp` far in the future, signed with `SECRET`.
const SECRET: &str = "bench-secret-bench-secret-bench-secret";

fn token() -> String {
    let claims = serde_json::json!({ "sub": "bench", "iss": "bench", "exp": 4102444800u64 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

/// A session holding one parsed request (the client half is returned to keep it open).
async fn session(request: String) -> (Session, tokio::io::DuplexStream) {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    client
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut session = Session::new_h1(Box::new(server));
    let read = session.read_request().await.expect("read request");
    assert!(read, "request parsed");
    (session, client)
}

fn chain(registry: &Registry, plugins: &[(&str, serde_json::Value)]) -> Chain {
    Chain::new(
        plugins
            .iter()
            .map(|(name, settings)| {
                let plugin = registry
                    .build(name, settings)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                (Arc::from(*name), plugin)
            })
            .collect(),
    )
}

fn bench_chain(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = Registry::with_builtins();
    let rate_limit = (
        "rate_limit",
        serde_json::json!({ "limit": "1000000000/s", "key": ["client_ip"] }),
    );
    let jwt = (
        "jwt",
        serde_json::json!({
            "algorithms": ["HS256"], "secret": SECRET, "issuer": "bench",
            "forward_claims": { "sub": "x-user-id" }
        }),
    );
    type Case<'a> = (&'a str, Vec<(&'a str, serde_json::Value)>, bool);
    let cases: [Case; 3] = [
        ("empty", vec![], false),
        ("rate_limit+breaker", vec![rate_limit.clone()], true),
        ("jwt+rate_limit+breaker", vec![jwt, rate_limit], true),
    ];
    let request = format!(
        "GET /api/items/42 HTTP/1.1\r\nHost: bench.example\r\nAuthorization: Bearer {}\r\n\r\n",
        token()
    );
    let response = ResponseHeader::build(200, Some(4)).expect("response");
    let mut group = c.benchmark_group("plugin_chain");
    for (name, plugins, with_breaker) in cases {
        let chain = chain(&registry, &plugins);
        let breaker = Arc::new(CircuitBreaker::new(
            BreakerConfig::default(),
            Arc::new(SystemClock::default()),
            Box::new(|_| {}),
        ));
        let (mut session, _client) = rt.block_on(session(request.clone()));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let mut ctx = PluginCtx {
                            client_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                            ..PluginCtx::default()
                        };
                        let local = chain.request_filter(&mut session, &mut ctx).await;
                        assert!(matches!(local, Ok(None)), "{name}: request refused");
                        let permit = with_breaker.then(|| breaker.try_acquire());
                        let mut resp = response.clone();
                        let _ = chain
                            .response_filter(&mut session, &mut resp, &mut ctx)
                            .await;
                        if let Some(Ok(p)) = permit {
                            black_box(p.record(false, Duration::from_micros(300)));
                        }
                        chain.logging(&mut session, &mut ctx).await;
                        black_box(resp);
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_chain);
criterion_main!(benches);
