//! The HLS edge: a `profile: hls` route in front of a static file origin serving what a real
//! `ffmpeg` wrote — played through the edge by `ffmpeg`/`ffprobe`, replayed from the cache,
//! segments prefetched before the player asks; live playlist TTL and LL-HLS cache keys.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::process::Command;

use crate::harness::*;

/// A static file server over a directory, counting requests per path.
struct FileOrigin {
    addr: std::net::SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FileOrigin {
    async fn start(dir: PathBuf) -> FileOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let (h, dir) = (hits.clone(), Arc::new(dir));
        let task = serve_http(listener, move |req| serve(dir.clone(), h.clone(), req));
        FileOrigin { addr, hits, task }
    }

    fn hits(&self, path: &str) -> usize {
        *self.hits.lock().expect("lock").get(path).unwrap_or(&0)
    }

    fn all_hits(&self) -> HashMap<String, usize> {
        self.hits.lock().expect("lock").clone()
    }
}

async fn serve(
    dir: Arc<PathBuf>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    *hits.lock().expect("lock").entry(path.clone()).or_insert(0) += 1;
    let name = path.trim_start_matches('/');
    let file = (!name.contains("..") && !name.contains('/'))
        .then(|| std::fs::read(dir.join(name)).ok())
        .flatten();
    let Some(body) = file else {
        return Ok(Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"not found\n")))
            .expect("resp"));
    };
    let content_type = if name.ends_with(".m3u8") {
        "application/vnd.apple.mpegurl"
    } else if name.ends_with(".ts") {
        "video/mp2t"
    } else {
        "application/octet-stream"
    };
    Ok(Response::builder()
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("resp"))
}

/// Fails the test with the fix when ffmpeg/ffprobe are not installed.
async fn require_ffmpeg() {
    for tool in ["ffmpeg", "ffprobe"] {
        let ok = Command::new(tool)
            .arg("-version")
            .output()
            .await
            .is_ok_and(|o| o.status.success());
        assert!(ok, "{tool} is not installed: run scripts/deps test");
    }
}

/// A 6 s VOD HLS stream of 1 s MPEG-TS segments (`index.m3u8`, `seg0.ts`…) in `dir`.
async fn make_vod(dir: &Path) {
    let out = Command::new("ffmpeg")
        .current_dir(dir)
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=6:size=160x120:rate=25",
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-sc_threshold", "0", "-f", "hls", "-hls_time", "1"])
        .args([
            "-hls_playlist_type",
            "vod",
            "-hls_segment_filename",
            "seg%d.ts",
        ])
        .arg("index.m3u8")
        .output()
        .await
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn hls_edge(port: u16, origin: &FileOrigin, hls: &str) -> String {
    with_listener(
        port,
        &format!(
            "cache: {{ memory: 16MiB }}\nupstreams: {{ origin: {{ targets: [\"{}\"] }} }}\nroutes:\n  - name: hls\n    match: {{ path_prefix: / }}\n    upstream: origin\n    cache: {{ profile: hls, hls: {hls} }}\n",
            origin.addr
        ),
    )
}

/// Decodes the stream at `url` to the end with ffmpeg; returns ffprobe's duration.
async fn play(url: &str) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-i", url, "-f", "null", "-"])
        .output()
        .await
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg could not play {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration"])
        .args(["-of", "default=noprint_wrappers=1:nokey=1", url])
        .output()
        .await
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe failed on {url}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a duration")
}

async fn get(c: &reqwest::Client, port: u16, path: &str) -> (u16, String, String) {
    let r = c
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let cs = r
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, cs, r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ffmpeg_plays_vod_through_the_edge_then_from_cache_with_prefetch() {
    require_ffmpeg().await;
    let dir = tempfile::tempdir().expect("tempdir");
    make_vod(dir.path()).await;
    assert!(dir.path().join("seg5.ts").exists(), "six 1 s segments");
    let origin = FileOrigin::start(dir.path().to_path_buf()).await;
    let port = free_port();
    let edge = Meridian::start(&hls_edge(port, &origin, "{ prefetch: 2 }"));
    let c = client();

    // The playlist and segment 0 only: prefetch brings segments 1 and 2 from the origin
    // before any player asked for them.
    let (status, _, body) = get(&c, port, "/index.m3u8").await;
    assert_eq!(status, 200);
    assert!(body.contains("#EXT-X-ENDLIST"), "{body}");
    assert_eq!(get(&c, port, "/seg0.ts").await.0, 200);
    assert!(
        wait_until(Duration::from_secs(5), || origin.hits("/seg1.ts") == 1
            && origin.hits("/seg2.ts") == 1),
        "segments 1 and 2 prefetched: {:?}",
        origin.all_hits()
    );
    let (_, cs, _) = get(&c, port, "/seg1.ts").await;
    assert!(
        cs.contains("hit"),
        "prefetched segment served from cache: {cs}"
    );

    // A real player through the edge.
    let url = format!("http://127.0.0.1:{port}/index.m3u8");
    let duration = play(&url).await;
    assert!((5.5..=6.5).contains(&duration), "duration {duration}");
    let after_first = origin.all_hits();
    for i in 0..6 {
        assert_eq!(
            after_first.get(&format!("/seg{i}.ts")),
            Some(&1),
            "{after_first:?}"
        );
    }
    assert_eq!(after_first.get("/index.m3u8"), Some(&1), "{after_first:?}");

    // Played again: every object is a hit (the VOD playlist is fresh for a day).
    let (_, cs, _) = get(&c, port, "/index.m3u8").await;
    assert!(cs.contains("hit"), "{cs}");
    let ttl: u64 = cs
        .split("ttl=")
        .nth(1)
        .and_then(|t| t.parse().ok())
        .expect("ttl");
    assert!(ttl > 86_000, "VOD playlist TTL {ttl}");
    play(&url).await;
    assert_eq!(
        origin.all_hits(),
        after_first,
        "the replay reached the origin"
    );

    let metrics = c
        .get(format!("{}/metrics", edge.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let fetched = metrics
        .lines()
        .find_map(|l| l.strip_prefix("meridian_cache_prefetch_total{result=\"fetched\"} "))
        .and_then(|n| n.parse::<u64>().ok())
        .expect("prefetch metric");
    assert!(fetched >= 2, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_playlist_fresh_for_half_its_target_and_ll_hls_directives_keyed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = |n: usize| {
        let mut s = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n");
        s.push_str("#EXT-X-MEDIA-SEQUENCE:0\n");
        for i in 0..n {
            s.push_str(&format!("#EXTINF:4.0,\nlive{i}.ts\n"));
        }
        s
    };
    write_file(dir.path(), "live.m3u8", &live(3));
    let origin = FileOrigin::start(dir.path().to_path_buf()).await;
    let port = free_port();
    let _edge = Meridian::start(&hls_edge(port, &origin, "{}"));
    let c = client();

    let (status, cs, _) = get(&c, port, "/live.m3u8").await;
    assert_eq!(status, 200);
    assert!(cs.contains("fwd=uri-miss; stored"), "{cs}");
    let (_, cs, _) = get(&c, port, "/live.m3u8").await;
    assert!(cs.contains("hit; ttl="), "{cs}");
    let ttl: u64 = cs
        .split("ttl=")
        .nth(1)
        .and_then(|t| t.parse().ok())
        .expect("ttl");
    assert!((1..=2).contains(&ttl), "half the 4 s target: {cs}");
    assert_eq!(origin.hits("/live.m3u8"), 1);

    // The origin adds a segment: the edge serves it once the 2 s TTL ran out.
    write_file(dir.path(), "live.m3u8", &live(4));
    let mut body = String::new();
    for _ in 0..40 {
        body = get(&c, port, "/live.m3u8").await.2;
        if body.contains("live3.ts") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        body.contains("live3.ts"),
        "the new segment within 4 s: {body}"
    );
    assert_eq!(origin.hits("/live.m3u8"), 2);

    // LL-HLS: `_HLS_msn` is keyed, session and CMCD parameters are not.
    let before = origin.hits("/live.m3u8");
    let (_, cs, _) = get(&c, port, "/live.m3u8?_HLS_msn=4&session=a&CMCD=bl%3D100").await;
    assert!(cs.contains("fwd=uri-miss"), "{cs}");
    let (_, cs, _) = get(&c, port, "/live.m3u8?session=b&_HLS_msn=4").await;
    assert!(cs.contains("hit"), "same key without session: {cs}");
    let (_, cs, _) = get(&c, port, "/live.m3u8?_HLS_msn=5").await;
    assert!(
        cs.contains("fwd=uri-miss"),
        "another msn, another key: {cs}"
    );
    assert_eq!(origin.hits("/live.m3u8"), before + 2);

    // A malformed playlist is served as the origin sent it, with the first (minimum) TTL.
    let garbage = "#EXTM3U\n#EXT-X-TARGETDURATION:banana\n\u{0}\u{7f}live0.ts\n";
    write_file(dir.path(), "bad.m3u8", garbage);
    let (status, cs, body) = get(&c, port, "/bad.m3u8").await;
    assert_eq!((status, body.as_str()), (200, garbage));
    assert!(cs.contains("stored"), "{cs}");
    assert_eq!(get(&c, port, "/bad.m3u8").await.2, garbage);
}
