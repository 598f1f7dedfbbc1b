//! The video service run in-process with real `ffmpeg`/`ffprobe`: upload → transcode → HLS
//! ladder served with the right headers; refusals that leave nothing behind; path traversal;
//! a missing `ffmpeg`; corrupt sources; jobs resumed after a restart.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use origin::video::{Config, Rung};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest a test waits for a job to finish.
const JOB_DEADLINE: Duration = Duration::from_secs(60);

struct Running {
    base: String,
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), String>>,
}

impl Running {
    /// Shuts the service down and waits (bounded) for `run` to return.
    async fn stop(mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("run returns within 10 s of shutdown")
            .expect("run task")
    }
}

/// A config for tests: a tiny two-rung ladder, 1 s segments, fast retries.
fn test_config(data: &Path) -> Config {
    let mut config = Config::new(data);
    config.ladder = vec![
        Rung::new("144p", 144, 150, 48),
        Rung::new("240p", 240, 300, 64),
    ];
    config.segment_seconds = 1;
    config.retry_backoff = Duration::from_millis(50);
    config.attempt_timeout = Duration::from_secs(30);
    config
}

async fn start(config: Config) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        origin::video::run(config, listener, async move {
            let _ = stopped.await;
        })
        .await
        .map_err(|e| e.to_string())
    });
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "service did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Running {
        base,
        addr,
        stop: Some(stop),
        task,
    }
}

/// Makes a 3 s 320x240 clip with a sine tone in `dir`.
async fn make_clip(dir: &Path) -> PathBuf {
    let clip = dir.join("clip.mp4");
    let status = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=3:size=320x240:rate=25",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=3"])
        .args([
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&clip)
        .status()
        .await
        .expect("ffmpeg runs");
    assert!(status.success());
    clip
}

/// An executable shell script at `path`.
fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

async fn upload(base: &str, query: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/api/videos{query}"))
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn status(base: &str, id: &str) -> Value {
    let r = reqwest::get(format!("{base}/api/videos/{id}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Polls the status of `id` until it is `want` (bounded); panics on another final status.
async fn wait_for(base: &str, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let s = status(base, id).await;
        let now = s["status"].as_str().unwrap().to_string();
        if now == want {
            return s;
        }
        assert!(
            now != "ready" && now != "failed",
            "video ended {now}, wanted {want}: {s}"
        );
        assert!(
            Instant::now() < deadline,
            "still {now} after {JOB_DEADLINE:?}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Names of the entries in `dir`.
fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn assert_nothing_written(data: &Path) {
    assert_eq!(entries(&data.join("uploads")), Vec::<String>::new());
    assert_eq!(entries(&data.join("work")), Vec::<String>::new());
    assert_eq!(entries(&data.join("media")), Vec::<String>::new());
}

async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Sends `path` as a raw request line (no client-side normalisation) and returns the status
/// and body.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("answer within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_becomes_a_served_hls_ladder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clip = make_clip(dir.path()).await;
    let svc = start(test_config(&data)).await;
    let base = &svc.base;

    let r = upload(
        base,
        "?title=Demo%20clip&name=clip.mp4",
        std::fs::read(&clip).unwrap(),
    )
    .await;
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(body["status"], "queued");
    assert_eq!(location, format!("/api/videos/{id}"));

    let s = wait_for(base, &id, "ready").await;
    assert_eq!(s["title"], "Demo clip");
    assert_eq!(s["file_name"], "clip.mp4");
    assert_eq!(s["attempts"], 1);
    assert_eq!(s["playlist"], format!("/videos/{id}/master.m3u8"));
    assert!((s["duration"].as_f64().unwrap() - 3.0).abs() < 0.5, "{s}");
    let renditions = s["renditions"].as_array().unwrap();
    let names: Vec<&str> = renditions
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["144p", "240p"]);
    assert_eq!(renditions[1]["height"], 240);
    assert!(s.get("error").is_none());

    // The master lists both renditions with what a player needs.
    let r = reqwest::get(format!("{base}/videos/{id}/master.m3u8"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.apple.mpegurl");
    assert_eq!(r.headers()["cache-control"], "public, max-age=3600");
    let master = r.text().await.unwrap();
    for rendition in ["144p", "240p"] {
        assert!(
            master.contains(&format!("\n{rendition}/index.m3u8")),
            "{master}"
        );
    }
    let variants: Vec<&str> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .collect();
    assert_eq!(variants.len(), 2, "{master}");
    for v in &variants {
        assert!(
            v.contains("BANDWIDTH=") && v.contains("RESOLUTION=") && v.contains("CODECS="),
            "{v}"
        );
    }

    // A media playlist: VOD, complete, segments named as the server serves them.
    let r = reqwest::get(format!("{base}/videos/{id}/240p/index.m3u8"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.apple.mpegurl");
    let media = r.text().await.unwrap();
    assert!(
        media.contains("#EXT-X-PLAYLIST-TYPE:VOD") && media.contains("#EXT-X-ENDLIST"),
        "{media}"
    );
    let segment = media
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .unwrap()
        .to_string();
    assert_eq!(segment, "seg_00000.ts");

    // Segments: type, immutable caching, validators, ranges, HEAD, 304.
    let url = format!("{base}/videos/{id}/240p/{segment}");
    let client = reqwest::Client::new();
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "video/mp2t");
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(r.headers().contains_key("last-modified"));
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let whole = r.bytes().await.unwrap();
    assert_eq!(whole[0], 0x47, "an MPEG-TS packet");
    let r = client
        .get(&url)
        .header("range", "bytes=0-187")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 0-187/{}", whole.len()).as_str()
    );
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.bytes().await.unwrap(), whole.slice(0..188));
    let r = client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());
    let r = client.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        whole.len().to_string().as_str()
    );
    assert!(r.bytes().await.unwrap().is_empty());

    // A player (ffprobe) reads the ladder over HTTP.
    let out = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_streams"])
        .arg(format!("{base}/videos/{id}/master.m3u8"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe: Value = serde_json::from_slice(&out.stdout).unwrap();
    let video_streams = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .count();
    assert!(video_streams >= 2, "{probe}");

    // Listed; source and work gone; published under media/.
    let list: Value = reqwest::get(format!("{base}/api/videos"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["videos"][0]["id"], id.as_str());
    assert_eq!(entries(&data.join("uploads")), Vec::<String>::new());
    assert_eq!(entries(&data.join("work")), Vec::<String>::new());
    assert_eq!(entries(&data.join("media")), vec![id.clone()]);

    let m = metrics(base).await;
    assert!(
        m.contains("video_uploads_total{result=\"accepted\"} 1"),
        "{m}"
    );
    assert!(m.contains("video_jobs{state=\"ready\"} 1"), "{m}");
    assert!(m.contains("video_transcode_seconds_count 1"), "{m}");
    assert!(m.contains("video_transcode_failures_total 0"), "{m}");

    // Paths that try to leave the media directory never reach a file (raw request lines:
    // no client-side normalisation of `..` or `%2e%2e`).
    let upper = id.to_uppercase();
    let traversal: &[String] = &[
        format!("/videos/{id}/../../video.db"),
        format!("/videos/{id}/240p/../../../video.db"),
        format!("/videos/{id}/240p/..%2f..%2f..%2fvideo.db"),
        format!("/videos/{id}/%2e%2e/%2e%2e%2fvideo.db"),
        format!("/videos/{id}/240p/%2e%2e"),
        format!("/videos/{id}/%2e%2e%2f%2e%2e/video.db"),
        "/videos/..%2f..%2fvideo.db/master.m3u8".to_string(),
        "/videos/%2e%2e/master.m3u8".to_string(),
        "/videos/%2e%2e%2f%2e%2e%2fvideo.db/master.m3u8".to_string(),
        "/videos//etc/passwd".to_string(),
        "/videos/%2Fetc%2Fpasswd/master.m3u8".to_string(),
        format!("/videos/{id}/240p/%2Fetc%2Fpasswd"),
        format!("/videos/{id}/240p/..%5c..%5cvideo.db"),
        format!("/videos/{id}/..%5c..%5c/index.m3u8"),
        format!("/videos/{id}/240p/seg_00000.ts%00"),
        format!("/videos/{id}/240p/seg_00000.ts%2f.."),
        format!("/videos/{id}/master.m3u8%2f..%2f..%2fvideo.db"),
        format!("/videos/{id}/240p/video.db"),
        format!("/videos/{id}/240p"),
        format!("/videos/{upper}/master.m3u8"),
        format!("/videos/{id}/240P/index.m3u8"),
        format!("/videos/{id}/nope/index.m3u8"),
        format!("/videos/{id}/240p/seg_99999.ts"),
    ];
    for path in traversal {
        let (code, text) = raw_get(svc.addr, path).await;
        assert!(code == 404 || code == 400, "{path} → {code}\n{text}");
        assert!(!text.contains("SQLite"), "{path} leaked the store");
    }
    let (code, _) = raw_get(svc.addr, &format!("/videos/{id}/240p/index.m3u8")).await;
    assert_eq!(code, 200, "the table's control case");

    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_visible_until_the_ladder_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clip = make_clip(dir.path()).await;
    // An ffmpeg that takes its time, so the processing state can be watched.
    let slow = dir.path().join("slow-ffmpeg");
    script(&slow, "sleep 1\nexec ffmpeg \"$@\"");
    let mut config = test_config(&data);
    config.ffmpeg = slow;
    let svc = start(config).await;
    let base = &svc.base;

    let r = upload(base, "", std::fs::read(&clip).unwrap()).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + JOB_DEADLINE;
    let mut seen_processing = false;
    loop {
        let s = status(base, &id).await;
        let state = s["status"].as_str().unwrap().to_string();
        let master = client
            .get(format!("{base}/videos/{id}/master.m3u8"))
            .send()
            .await
            .unwrap()
            .status();
        let media = client
            .get(format!("{base}/videos/{id}/144p/index.m3u8"))
            .send()
            .await
            .unwrap()
            .status();
        let s = status(base, &id).await;
        if s["status"] == "ready" && state == "ready" {
            assert_eq!(master, 200);
            assert_eq!(media, 200);
            break;
        }
        // Checked between two non-ready observations: nothing may be served.
        if s["status"] != "ready" {
            assert_eq!(master, 404, "master visible while {state}");
            assert_eq!(media, 404, "media playlist visible while {state}");
            seen_processing |= state == "processing";
        }
        assert_ne!(s["status"], "failed", "{s}");
        assert!(Instant::now() < deadline, "not ready in time: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen_processing, "the processing state was never observed");
    assert_eq!(status(base, &id).await["title"], "untitled");
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_videos_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let svc = start(test_config(&data)).await;
    let cases: &[(&[u8], &str)] = &[
        (
            b"hello, I am a text file pretending to be clip.mp4\n",
            "not a video (text)",
        ),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "not a video (PNG image)"),
        (b"%PDF-1.7\n", "not a video (PDF document)"),
        (b"", "not a video (empty)"),
        (
            &[0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
            "not a video (unrecognised content)",
        ),
    ];
    for (body, reason) in cases {
        // The name and the declared type say video; the bytes decide.
        let r = reqwest::Client::new()
            .post(format!("{}/api/videos?name=clip.mp4", svc.base))
            .header("content-type", "video/mp4")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "{reason}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], *reason);
    }
    assert_nothing_written(&data);
    let list: Value = reqwest::get(format!("{}/api/videos", svc.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["videos"], Value::Array(vec![]));
    let m = metrics(&svc.base).await;
    assert!(
        m.contains("video_uploads_total{result=\"not_video\"} 5"),
        "{m}"
    );
    assert!(m.contains("video_jobs{state=\"queued\"} 0"), "{m}");
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_uploads_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = test_config(&data);
    config.max_upload = 4096;
    let svc = start(config).await;
    let mut big = b"\0\0\0\x18ftypisom\0\0\x02\0".to_vec();
    big.resize(10_000, 7);

    // Declared too large: refused before the body is read.
    let r = upload(&svc.base, "", big.clone()).await;
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "upload over 4096 bytes"
    );
    assert_nothing_written(&data);

    // Chunked, no length: refused while streaming, the partial file removed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let r = reqwest::Client::new()
        .post(format!("{}/api/videos", svc.base))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_nothing_written(&data);

    // Exactly at the limit is fine.
    let r = upload(&svc.base, "", big[..4096].to_vec()).await;
    assert_eq!(r.status(), 202);
    let m = metrics(&svc.base).await;
    assert!(
        m.contains("video_uploads_total{result=\"too_large\"} 2"),
        "{m}"
    );
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let svc = start(test_config(&data)).await;
    let body = b"\0\0\0\x18ftypisom\0\0\x02\0rest".to_vec();
    for query in [
        "?name=../../etc/passwd",
        "?name=..",
        "?name=a/b.mp4",
        "?name=%2Fetc%2Fpasswd",
        "?name=..%5C..%5Cwin.ini",
        "?name=clip%00.mp4",
        "?name=clip%0A.mp4",
        "?title=%1B%5B31mred",
        "?title=",
    ] {
        let r = upload(&svc.base, query, body.clone()).await;
        assert_eq!(r.status(), 400, "{query}");
        let e: Value = r.json().await.unwrap();
        assert!(
            e["error"].as_str().is_some_and(|s| !s.is_empty()),
            "{query}"
        );
    }
    let r = reqwest::Client::new()
        .post(format!("{}/api/videos", svc.base))
        .header(
            "content-disposition",
            "attachment; filename=\"../../video.db\"",
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_nothing_written(&data);
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ffmpeg_uploads_get_503_and_the_rest_works() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = test_config(&data);
    config.ffmpeg = dir.path().join("no-such-ffmpeg");
    let svc = start(config).await;
    let base = &svc.base;
    let r = upload(
        base,
        "?name=clip.mp4",
        b"\0\0\0\x18ftypisom\0\0\x02\0".to_vec(),
    )
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "transcoding unavailable: ffmpeg not found"
    );
    assert_nothing_written(&data);
    assert_eq!(
        reqwest::get(format!("{base}/api/videos"))
            .await
            .unwrap()
            .status(),
        200
    );
    let r = reqwest::get(format!("{base}/api/videos/0123456789abcdef"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "no such video");
    assert_eq!(
        reqwest::get(format!("{base}/api/videos/.."))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        reqwest::get(format!("{base}/videos/0123456789abcdef/master.m3u8"))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    let m = metrics(base).await;
    assert!(
        m.contains("video_uploads_total{result=\"unavailable\"} 1"),
        "{m}"
    );
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_file_with_a_video_header_fails_after_its_retries() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = test_config(&data);
    config.max_attempts = 2;
    let svc = start(config).await;
    let mut body = b"\0\0\0\x18ftypisom\0\0\x02\0".to_vec();
    body.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let r = upload(&svc.base, "?title=broken", body).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = wait_for(&svc.base, &id, "failed").await;
    assert_eq!(s["attempts"], 2);
    let error = s["error"].as_str().unwrap();
    assert!(
        error.starts_with("gave up after 2 attempts: ffprobe exited with"),
        "{error}"
    );
    assert!(s.get("renditions").is_none());
    assert_eq!(
        reqwest::get(format!("{}/videos/{id}/master.m3u8", svc.base))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_nothing_written(&data);
    let m = metrics(&svc.base).await;
    assert!(m.contains("video_transcode_failures_total 2"), "{m}");
    assert!(m.contains("video_jobs{state=\"failed\"} 1"), "{m}");
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stopped_by_shutdown_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clip = make_clip(dir.path()).await;
    let stuck = dir.path().join("stuck-ffmpeg");
    script(&stuck, "exec sleep 60");
    let mut config = test_config(&data);
    config.ffmpeg = stuck;
    let svc = start(config).await;
    let r = upload(&svc.base, "?title=resumed", std::fs::read(&clip).unwrap()).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(&svc.base, &id, "processing").await;
    // Shutdown kills the stuck transcode and puts the job back, uncounted.
    svc.stop().await.unwrap();
    assert_eq!(entries(&data.join("work")), Vec::<String>::new());
    assert_eq!(entries(&data.join("uploads")), vec![id.clone()]);

    let svc = start(test_config(&data)).await;
    let s = wait_for(&svc.base, &id, "ready").await;
    assert_eq!(s["attempts"], 1, "the interrupted attempt is not counted");
    assert_eq!(s["title"], "resumed");
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_transcodes_time_out_and_the_queue_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clip = std::fs::read(make_clip(dir.path()).await).unwrap();
    let stuck = dir.path().join("stuck-ffmpeg");
    script(&stuck, "exec sleep 60");
    let mut config = test_config(&data);
    config.ffmpeg = stuck;
    config.attempt_timeout = Duration::from_millis(300);
    config.max_attempts = 2;
    config.max_queued = 1;
    let svc = start(config).await;

    let r = upload(&svc.base, "", clip.clone()).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // One video waiting is the limit: the next is refused, nothing written for it.
    let r = upload(&svc.base, "", clip.clone()).await;
    assert_eq!(r.status(), 429);
    assert_eq!(entries(&data.join("uploads")), vec![id.clone()]);

    let s = wait_for(&svc.base, &id, "failed").await;
    assert_eq!(s["attempts"], 2);
    assert_eq!(s["error"], "gave up after 2 attempts: timed out after 0.3s");
    assert_nothing_written(&data);
    // The queue drained: uploads are taken again.
    assert_eq!(upload(&svc.base, "", clip).await.status(), 202);
    let m = metrics(&svc.base).await;
    assert!(m.contains("video_uploads_total{result=\"busy\"} 1"), "{m}");
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_time_out_and_concurrent_uploads_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = test_config(&data);
    config.max_concurrent_uploads = 1;
    config.upload_idle_timeout = Duration::from_millis(500);
    let svc = start(config).await;
    let mut start_of_video = b"\0\0\0\x18ftypisom\0\0\x02\0".to_vec();
    start_of_video.resize(2000, 1);

    // An upload that sends its first bytes, then nothing.
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    tx.send(start_of_video.clone()).await.unwrap();
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    let url = format!("{}/api/videos", svc.base);
    let stalled = tokio::spawn(
        reqwest::Client::new()
            .post(url)
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while entries(&data.join("uploads")).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the stalled upload never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // It holds the only upload slot.
    let r = upload(&svc.base, "", start_of_video.clone()).await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "too many uploads in progress, try again later"
    );

    // Then it is dropped with 408 and its partial file removed.
    let answer = tokio::time::timeout(Duration::from_secs(5), stalled)
        .await
        .expect("the stalled upload is answered")
        .unwrap();
    let r = answer.expect("the 408 reaches the client");
    assert_eq!(r.status(), 408);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "upload stalled: nothing received for 0.5s"
    );
    assert_nothing_written(&data);
    drop(tx);
    assert_eq!(upload(&svc.base, "", start_of_video).await.status(), 202);
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_silent_sources_are_not_upscaled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clip = dir.path().join("small.mp4");
    let made = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=2:size=160x120:rate=25",
        ])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&clip)
        .status()
        .await
        .unwrap();
    assert!(made.success());
    let svc = start(test_config(&data)).await;
    let r = upload(&svc.base, "", std::fs::read(&clip).unwrap()).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = wait_for(&svc.base, &id, "ready").await;
    let renditions = s["renditions"].as_array().unwrap();
    assert_eq!(renditions.len(), 1, "{s}");
    assert_eq!(renditions[0]["name"], "144p");
    assert_eq!(
        (
            renditions[0]["width"].as_u64(),
            renditions[0]["height"].as_u64()
        ),
        (Some(160), Some(120))
    );
    assert!(
        !renditions[0]["codecs"].as_str().unwrap().contains("mp4a"),
        "{s}"
    );
    let master = reqwest::get(format!("{}/videos/{id}/master.m3u8", svc.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        master.contains("144p/index.m3u8") && !master.contains("240p"),
        "{master}"
    );
    svc.stop().await.unwrap();
}
