//! HLS hot paths: parsing a 1,000-segment VOD playlist and a live LL-HLS playlist, the
//! cache-key query rule, and planning the next segments.

use std::fmt::Write;
use std::hint::black_box;

use cdn_edge::hls::{self, After, Kind, Playlist};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use url::Url;

fn vod_playlist(segments: usize) -> String {
    let mut p = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:VOD\n",
    );
    for i in 0..segments {
        let _ = write!(p, "#EXTINF:4.000000,\nsegment_{i:05}.ts\n");
    }
    p.push_str("#EXT-X-ENDLIST\n");
    p
}

fn ll_hls_playlist() -> String {
    let mut p = String::from(
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-VERSION:9\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0,CAN-SKIP-UNTIL=24.0\n\
         #EXT-X-PART-INF:PART-TARGET=0.33334\n#EXT-X-MEDIA-SEQUENCE:1000\n\
         #EXT-X-MAP:URI=\"init.mp4\"\n",
    );
    for msn in 1000..1006 {
        for part in 0..12 {
            let _ = writeln!(
                p,
                "#EXT-X-PART:DURATION=0.33334,URI=\"part{msn}.{part}.m4s\"{}",
                if part % 4 == 0 {
                    ",INDEPENDENT=YES"
                } else {
                    ""
                }
            );
        }
        let _ = write!(p, "#EXTINF:4.00008,\nseg{msn}.m4s\n");
    }
    p.push_str("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part1006.0.m4s\"\n");
    p
}

fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("playlist_parse");
    for (name, body) in [
        ("vod_1000_segments", vod_playlist(1000)),
        ("live_ll_hls", ll_hls_playlist()),
    ] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| hls::parse(black_box(body.as_bytes()), hls::DEFAULT_MAX_PLAYLIST_BYTES))
        });
    }
    group.finish();
}

fn key_query(c: &mut Criterion) {
    let mut group = c.benchmark_group("key_query");
    let keep = vec!["token".to_string()];
    group.bench_function("ll_hls_playlist", |b| {
        b.iter(|| {
            hls::key_query(
                Kind::MediaPlaylist,
                black_box("_HLS_part=3&CMCD=bl%3D21300%2Csid%3D%226e2f%22&_HLS_msn=1004"),
                &keep,
            )
        })
    });
    group.bench_function("segment_with_token", |b| {
        b.iter(|| {
            hls::key_query(
                Kind::Segment,
                black_box("session=99&token=abc&CMCD=bl%3D21300"),
                &keep,
            )
        })
    });
    group.finish();
}

fn planning(c: &mut Criterion) {
    let Ok(Playlist::Media(media)) = hls::parse(vod_playlist(1000).as_bytes(), 1 << 20) else {
        panic!("bench playlist must parse");
    };
    let Ok(base) = Url::parse("http://edge.test/vod/index.m3u8") else {
        panic!("bench URL must parse");
    };
    let Ok(requested) = base.join("segment_00500.ts") else {
        panic!("bench URL must join");
    };
    c.bench_function("plan_next_3_of_1000", |b| {
        b.iter(|| hls::plan(&media, &base, After::Segment(black_box(&requested)), 3))
    });
    let index = hls::PlaylistIndex::new(10_000);
    index.remember(&base, std::sync::Arc::new(media));
    c.bench_function("index_plan_after_segment_3_of_1000", |b| {
        b.iter(|| index.plan_after_segment(black_box(&requested), None, 3))
    });
}

criterion_group!(benches, parsing, key_query, planning);
criterion_main!(benches);
