//! Memory-tier hit reads through the `Storage` trait, as pingora-cache performs them.

use std::time::SystemTime;

use bytes::Bytes;
use cdn_edge::{StorageConfig, TieredStorage};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pingora_cache::storage::Storage;
use pingora_cache::trace::Span;
use pingora_cache::{CacheKey, CacheMeta};
use pingora_http::ResponseHeader;

fn meta() -> CacheMeta {
    let mut header = ResponseHeader::build(200, None).expect("status");
    header
        .append_header("content-type", "video/mp2t")
        .expect("header");
    let now = SystemTime::now();
    CacheMeta::new(
        now + std::time::Duration::from_secs(3600),
        now,
        0,
        0,
        header,
    )
}

fn memory_hits(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let storage: &'static TieredStorage = TieredStorage::new(StorageConfig {
        memory_bytes: 64 << 20,
        memory_max_object: 8 << 20,
        disk: None,
    })
    .expect("storage")
    .leak();
    let span = Span::inactive().handle();
    let mut group = c.benchmark_group("memory_hit");
    for size in [1024usize, 1 << 20] {
        let key = CacheKey::new(format!("bench-{size}"), "");
        rt.block_on(async {
            let mut miss = storage
                .get_miss_handler(&key, &meta(), &span)
                .await
                .expect("miss handler");
            miss.write_body(Bytes::from(vec![7u8; size]), true)
                .await
                .expect("write");
            miss.finish().await.expect("finish");
        });
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &key, |b, key| {
            b.iter(|| {
                rt.block_on(async {
                    let (_meta, mut hit) = storage
                        .lookup(key, &span)
                        .await
                        .expect("lookup")
                        .expect("hit");
                    let mut read = 0;
                    while let Some(chunk) = hit.read_body().await.expect("read") {
                        read += chunk.len();
                    }
                    assert_eq!(read, size);
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, memory_hits);
criterion_main!(benches);
