//! `Vary: Accept-Encoding` with a default route config, against a real compressing origin:
//! nginx with `gzip on` and `gzip_vary on`, started on a loopback port in a temp dir.
//!
//! Browsers, curl and scripts spell `Accept-Encoding` differently; the edge normalises it to a
//! class (cdn_edge::encoding), so each URL is stored a few times, not once per spelling, and
//! reaches (almost) only hits after warm-up. Every case runs on a small object (memory tier),
//! a large one (over `memory_max_object`: disk tier) and, for the disk tier, after a restart
//! of Meridian on the same cache directory.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt};

use crate::harness::*;

/// A real nginx serving `www/` with gzip, in its own temp dir, killed on drop.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Starts nginx (one process, in the foreground) with `files` under its root; waits
    /// (≤ 10 s) until it answers. Everything is `text/plain`, fresh for an hour, gzipped for
    /// clients that accept it with `Vary: Accept-Encoding`, except: `/novary/` compresses
    /// without `Vary` (gzip_vary off); `/always/` sends the `.gz` file next to the one asked
    /// for whatever the client accepts (`gzip_static always`); `/plain/` does not compress;
    /// `/hls/` serves playlists
    /// and MPEG-TS segments uncompressed with `Vary: Accept-Encoding`, as frameworks'
    /// compression middleware add it to every response.
    fn start(files: &[(&str, &[u8])]) -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("tmp")).expect("mkdir");
        for (name, body) in files {
            let path = d.join("www").join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(path, body).expect("write file");
        }
        let port = free_port();
        let conf = format!(
            "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    log_format ae '$uri|$http_accept_encoding';
    access_log {d}/access.log ae;
    default_type text/plain;
    gzip on;
    gzip_vary on;
    gzip_types text/plain;
    gzip_min_length 1;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
        expires 1h;
        location /novary/ {{ gzip_vary off; }}
        location /plain/ {{ gzip off; }}
        location /always/ {{ gzip_static always; }}
        location /hls/ {{
            types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
            add_header Vary Accept-Encoding;
        }}
    }}
}}
",
            d = d.display()
        );
        let conf_path = d.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(d)
            .arg("-e")
            .arg(d.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx { child, dir, port };
        let addr = format!("127.0.0.1:{port}");
        let ready = wait_until(Duration::from_secs(10), || {
            matches!(nginx.child.try_wait(), Ok(Some(_)))
                || raw_get(&addr, "/").is_some_and(|r| r.starts_with("HTTP/1.1"))
        });
        let log = std::fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default();
        assert!(
            ready && matches!(nginx.child.try_wait(), Ok(None)),
            "nginx did not start: {log}"
        );
        nginx
    }

    /// The `Accept-Encoding` of every request nginx served for `path`, in order.
    fn requests(&self, path: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('|'))
            .filter(|(uri, _)| *uri == path)
            .map(|(_, ae)| ae.to_string())
            .collect()
    }
}

/// The four `Accept-Encoding` values most clients send: Chrome, Firefox/Safari, Python's
/// requests and most libraries, none (curl without `--compressed`, scripts). `None`: no
/// header.
const CLIENTS: [Option<&str>; 4] = [
    Some("gzip, deflate, br, zstd"),
    Some("gzip, deflate, br"),
    Some("gzip, deflate"),
    None,
];

/// Requests per client value and object after warm-up.
const ROUNDS: usize = 50;

/// Requests in flight at once.
const CONCURRENCY: usize = 16;

/// What the edge answered.
struct Answer {
    status: u16,
    cache_status: String,
    encoding: Option<String>,
    vary: String,
    body: Bytes,
}

async fn fetch(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    accept_encoding: Option<&str>,
    range: Option<&str>,
) -> Answer {
    let mut req = c.request(method, url);
    if let Some(ae) = accept_encoding {
        req = req.header("accept-encoding", ae);
    }
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let resp = req.send().await.expect("request");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (cache_status, encoding, vary) = (
        header("cache-status").unwrap_or_default(),
        header("content-encoding"),
        header("vary").unwrap_or_default(),
    );
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("body");
    Answer {
        status,
        cache_status,
        encoding,
        vary,
        body,
    }
}

/// The body as the client reads it: decoded when encoded.
fn decoded(a: &Answer) -> Vec<u8> {
    let mut out = Vec::new();
    match a.encoding.as_deref() {
        None => return a.body.to_vec(),
        Some("gzip") => {
            flate2::read::GzDecoder::new(a.body.as_ref())
                .read_to_end(&mut out)
                .expect("valid gzip");
        }
        Some("br") => {
            brotli::Decompressor::new(a.body.as_ref(), 4096)
                .read_to_end(&mut out)
                .expect("valid brotli");
        }
        Some("zstd") => out = zstd::stream::decode_all(a.body.as_ref()).expect("valid zstd"),
        Some(other) => panic!("unexpected content-encoding {other}"),
    }
    out
}

/// Checks one full answer: 200, the content, gzip exactly when the client accepts it.
fn check_full(a: &Answer, accept_encoding: Option<&str>, content: &[u8], what: &str) {
    assert_eq!(a.status, 200, "{what}: {}", a.cache_status);
    let wants_gzip = accept_encoding.is_some_and(|ae| ae.contains("gzip"));
    assert_eq!(
        a.encoding.as_deref(),
        wants_gzip.then_some("gzip"),
        "{what} ({accept_encoding:?}): {}",
        a.cache_status
    );
    assert!(
        a.vary.to_ascii_lowercase().contains("accept-encoding"),
        "{what}: vary {:?}",
        a.vary
    );
    assert!(decoded(a) == content, "{what}: the content");
}

/// `ROUNDS` requests per client value for each of `objects`, concurrently; returns (hits,
/// requests), every answer checked.
async fn load(c: &reqwest::Client, port: u16, objects: &[(&str, &[u8])]) -> (usize, usize) {
    let jobs: Vec<(&str, &[u8], Option<&str>)> = (0..ROUNDS)
        .flat_map(|_| {
            objects
                .iter()
                .flat_map(|(path, content)| CLIENTS.iter().map(move |ae| (*path, *content, *ae)))
        })
        .collect();
    let total = jobs.len();
    let hits = stream::iter(jobs)
        .map(|(path, content, ae)| async move {
            let url = format!("http://127.0.0.1:{port}{path}");
            let a = fetch(c, reqwest::Method::GET, &url, ae, None).await;
            check_full(&a, ae, content, path);
            usize::from(a.cache_status.contains("; hit"))
        })
        .buffer_unordered(CONCURRENCY)
        .fold(0, |n, hit| async move { n + hit })
        .await;
    (hits, total)
}

/// Text that gzip shrinks but not to nothing: `len` bytes of pseudo-random lower-case letters.
fn text(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// The edge: memory and disk tiers (objects over 4 KiB on disk only), and default route
/// configs but for `/hls/` (the HLS profile, prefetching 2 segments), `/plain/` (the
/// `compression` plugin) and `/raw/` (`accept_encoding: []`).
fn edge_yaml(port: u16, origin: u16, disk: &Path) -> String {
    with_listener(
        port,
        &format!(
            "cache: {{ memory: 16MiB, memory_max_object: 4KiB, disk: {{ path: \"{}\", size: 64MiB }} }}
upstreams: {{ origin: {{ targets: [\"127.0.0.1:{origin}\"] }} }}
routes:
  - name: hls
    match: {{ path_prefix: /hls/ }}
    upstream: origin
    cache: {{ profile: hls, hls: {{ prefetch: 2 }} }}
  - name: plain
    match: {{ path_prefix: /plain/ }}
    upstream: origin
    cache: {{}}
    plugins:
      - compression: {{ min_size: 1KiB }}
  - name: raw
    match: {{ path_prefix: /raw/ }}
    upstream: origin
    cache: {{ accept_encoding: [] }}
  - name: edge
    match: {{ path_prefix: / }}
    upstream: origin
    cache: {{}}
",
            disk.display()
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accept_encoding_origin_reaches_99_percent_hits_on_both_tiers_and_after_a_restart() {
    // Small: ~2 KiB plain, a few hundred bytes gzipped (memory tier). Large: 64 KiB plain,
    // ~40 KiB gzipped, both over memory_max_object (disk tier).
    let small = text(2000, 7);
    let large = text(64 << 10, 11);
    let nginx = Nginx::start(&[("small.txt", &small), ("large.txt", &large)]);
    let objects: [(&str, &[u8]); 2] = [("/small.txt", &small), ("/large.txt", &large)];
    let disk = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let yaml = edge_yaml(port, nginx.port, disk.path());
    let c = client();
    {
        let _m = Meridian::start(&yaml);
        // Warm-up: one request per client value and object, each a miss that is stored.
        for (path, content) in objects {
            for ae in CLIENTS {
                let url = format!("http://127.0.0.1:{port}{path}");
                let a = fetch(&c, reqwest::Method::GET, &url, ae, None).await;
                check_full(&a, ae, content, path);
                assert!(
                    a.cache_status.contains("fwd=uri-miss; stored"),
                    "{path} {ae:?}: {}",
                    a.cache_status
                );
            }
        }
        let (hits, total) = load(&c, port, &objects).await;
        // Counted on the origin's side too: its access log.
        let filled: usize = objects.iter().map(|(p, _)| nginx.requests(p).len()).sum();
        let origin_hits = total - (filled - 4 * objects.len());
        eprintln!("after warm-up: {hits}/{total} Cache-Status hits, {origin_hits}/{total} not seen by the origin");
        assert!(
            hits * 100 >= total * 99 && origin_hits * 100 >= total * 99,
            "hit ratio after warm-up: {hits}/{total}, origin side {origin_hits}/{total}"
        );
        // One origin request per class and object, each with the class's canonical value.
        for (path, _) in objects {
            let mut seen = nginx.requests(path);
            seen.sort();
            assert_eq!(
                seen,
                ["br, gzip", "br, zstd, gzip", "gzip", "identity"],
                "{path}"
            );
        }
        same_class_spellings_hit(&c, port, &objects).await;
        head_and_ranges(&c, port, &objects).await;
        for (path, _) in objects {
            assert_eq!(nginx.requests(path).len(), 4, "{path}: no further fill");
        }
    }
    // Restart on the same disk cache: the large object's four variants are found on disk.
    let _m = Meridian::start(&yaml);
    for ae in CLIENTS {
        let url = format!("http://127.0.0.1:{port}/large.txt");
        let a = fetch(&c, reqwest::Method::GET, &url, ae, None).await;
        check_full(&a, ae, &large, "/large.txt after restart");
        assert!(
            a.cache_status.contains("; hit"),
            "{ae:?}: {}",
            a.cache_status
        );
    }
    let disk_only: [(&str, &[u8]); 1] = [("/large.txt", &large)];
    let (hits, total) = load(&c, port, &disk_only).await;
    assert!(
        hits * 100 >= total * 99,
        "hit ratio after restart: {hits}/{total}"
    );
    assert_eq!(nginx.requests("/large.txt").len(), 4, "no refill");
    same_class_spellings_hit(&c, port, &disk_only).await;
    head_and_ranges(&c, port, &disk_only).await;
}

/// Other spellings of the warmed classes are hits with the right body.
async fn same_class_spellings_hit(c: &reqwest::Client, port: u16, objects: &[(&str, &[u8])]) {
    let spellings = [
        ("br;q=1, gzip;q=0.5", true),
        ("br, gzip", true),
        // Go's net/http.
        ("gzip", true),
        ("GZIP;q=0.8", true),
        ("*", true),
        ("gzip;q=0", false),
        ("identity", false),
        ("deflate", false),
        ("*;q=0, identity", false),
    ];
    for (path, content) in objects {
        for (ae, gzip) in spellings {
            let url = format!("http://127.0.0.1:{port}{path}");
            let a = fetch(c, reqwest::Method::GET, &url, Some(ae), None).await;
            assert!(
                a.cache_status.contains("; hit"),
                "{path} {ae}: {}",
                a.cache_status
            );
            assert_eq!(a.encoding.is_some(), gzip, "{path} {ae}");
            assert!(decoded(&a) == *content, "{path} {ae}: content");
        }
    }
}

/// HEAD is a hit with the class's headers; a range is cut from the stored representation of
/// the class (the gzip bytes for gzip clients, RFC 9110 §14: ranges apply to the selected
/// representation).
async fn head_and_ranges(c: &reqwest::Client, port: u16, objects: &[(&str, &[u8])]) {
    for (path, content) in objects {
        let url = format!("http://127.0.0.1:{port}{path}");
        let full_gzip = fetch(c, reqwest::Method::GET, &url, Some("gzip"), None).await;
        for ae in CLIENTS {
            let head = fetch(c, reqwest::Method::HEAD, &url, ae, None).await;
            assert_eq!(head.status, 200, "HEAD {path} {ae:?}");
            assert!(
                head.cache_status.contains("; hit"),
                "HEAD {path} {ae:?}: {}",
                head.cache_status
            );
            let gzip = ae.is_some_and(|v| v.contains("gzip"));
            assert_eq!(head.encoding.is_some(), gzip, "HEAD {path} {ae:?}");
            assert!(head.body.is_empty(), "HEAD {path}: no body");
            let part = fetch(c, reqwest::Method::GET, &url, ae, Some("bytes=10-109")).await;
            assert_eq!(
                part.status, 206,
                "range {path} {ae:?}: {}",
                part.cache_status
            );
            assert!(part.cache_status.contains("; hit"), "range {path} {ae:?}");
            assert_eq!(part.encoding.is_some(), gzip, "range {path} {ae:?}");
            let whole: &[u8] = if gzip { &full_gzip.body } else { content };
            assert!(
                part.body == whole[10..110],
                "range {path} {ae:?}: the bytes"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encoded_responses_without_vary_never_reach_identity_clients() {
    // nginx with gzip_vary off: gzip bodies without `Vary: Accept-Encoding`. Without the
    // implied Vary, the first (gzip) fill would be the URL's only object, served to all.
    let small = text(2000, 3);
    let large = text(64 << 10, 5);
    let nginx = Nginx::start(&[("novary/small.txt", &small), ("novary/large.txt", &large)]);
    let objects: [(&str, &[u8]); 2] =
        [("/novary/small.txt", &small), ("/novary/large.txt", &large)];
    let disk = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let yaml = edge_yaml(port, nginx.port, disk.path());
    let c = client();
    let rounds = |expect_hit: bool| {
        let c = &c;
        let objects = &objects;
        async move {
            for (path, content) in objects {
                let url = format!("http://127.0.0.1:{port}{path}");
                for ae in CLIENTS {
                    let a = fetch(c, reqwest::Method::GET, &url, ae, None).await;
                    check_full(&a, ae, content, path);
                    assert_eq!(
                        a.cache_status.contains("; hit"),
                        expect_hit,
                        "{path} {ae:?}: {}",
                        a.cache_status
                    );
                }
            }
        }
    };
    {
        let _m = Meridian::start(&yaml);
        rounds(false).await;
        rounds(true).await;
    }
    let _m = Meridian::start(&yaml);
    let url = format!("http://127.0.0.1:{port}/novary/large.txt");
    for ae in CLIENTS {
        let a = fetch(&c, reqwest::Method::GET, &url, ae, None).await;
        check_full(&a, ae, &large, "after restart");
        assert!(
            a.cache_status.contains("; hit"),
            "{ae:?}: {}",
            a.cache_status
        );
    }
    assert_eq!(nginx.requests("/novary/large.txt").len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gzip_the_class_does_not_accept_is_never_served_from_cache() {
    // nginx's `gzip_static always` answers every request with the gzip file: right for the
    // gzip classes (stored, then hits), not for the identity class (forwarded as the origin
    // sent it, never stored: no client of the class gets it from the cache).
    let small = text(2000, 13);
    let large = text(64 << 10, 17);
    let gz = |plain: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, plain).expect("gzip");
        enc.finish().expect("gzip")
    };
    let (small_gz, large_gz) = (gz(&small), gz(&large));
    let nginx = Nginx::start(&[
        ("always/small.txt", &small),
        ("always/small.txt.gz", &small_gz),
        ("always/large.txt", &large),
        ("always/large.txt.gz", &large_gz),
    ]);
    let disk = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _m = Meridian::start(&edge_yaml(port, nginx.port, disk.path()));
    let c = client();
    for path in ["/always/small.txt", "/always/large.txt"] {
        let url = format!("http://127.0.0.1:{port}{path}");
        for round in 0..3 {
            for ae in [None, Some("deflate"), Some("gzip, deflate")] {
                let a = fetch(&c, reqwest::Method::GET, &url, ae, None).await;
                assert_eq!(a.status, 200, "{path} {ae:?}: {}", a.cache_status);
                assert_eq!(a.encoding.as_deref(), Some("gzip"), "{path} {ae:?}");
                let identity = ae.is_none_or(|v| !v.contains("gzip"));
                let want = if identity {
                    "fwd=uri-miss; detail=content-encoding"
                } else if round == 0 {
                    "fwd=uri-miss; stored"
                } else {
                    "; hit"
                };
                assert!(
                    a.cache_status.contains(want),
                    "{path} round {round} {ae:?}: {}",
                    a.cache_status
                );
            }
        }
        // Six identity-class requests and one gzip fill reached the origin.
        assert_eq!(nginx.requests(path).len(), 7, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hls_prefetch_warms_the_players_encoding_class() {
    // A VOD playlist of four 1 s segments; every response says `Vary: Accept-Encoding`.
    let mut playlist = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-PLAYLIST-TYPE:VOD\n",
    );
    for i in 0..4 {
        playlist.push_str(&format!("#EXTINF:1.0,\nseg{i}.ts\n"));
    }
    playlist.push_str("#EXT-X-ENDLIST\n");
    let segments: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("hls/seg{i}.ts"), text(3000, 20 + i)))
        .collect();
    let mut files: Vec<(&str, &[u8])> = vec![("hls/index.m3u8", playlist.as_bytes())];
    files.extend(segments.iter().map(|(n, b)| (n.as_str(), b.as_slice())));
    let nginx = Nginx::start(&files);
    let disk = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _m = Meridian::start(&edge_yaml(port, nginx.port, disk.path()));
    let c = client();
    let player = Some("gzip, deflate, br");
    let base = format!("http://127.0.0.1:{port}/hls");
    let a = fetch(
        &c,
        reqwest::Method::GET,
        &format!("{base}/index.m3u8"),
        player,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.cache_status);
    let a = fetch(
        &c,
        reqwest::Method::GET,
        &format!("{base}/seg0.ts"),
        player,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.cache_status);
    // The edge prefetches the next segments with the player's class, before it asks.
    assert!(
        wait_until(Duration::from_secs(5), || {
            nginx.requests("/hls/seg1.ts").len() == 1 && nginx.requests("/hls/seg2.ts").len() == 1
        }),
        "segments 1 and 2 prefetched: {:?} {:?}",
        nginx.requests("/hls/seg1.ts"),
        nginx.requests("/hls/seg2.ts")
    );
    for (i, (_, content)) in segments.iter().enumerate().skip(1).take(2) {
        let path = format!("/hls/seg{i}.ts");
        assert_eq!(nginx.requests(&path), ["br, gzip"], "{path}");
        for ae in [player, Some("br;q=1, gzip;q=0.5")] {
            let a = fetch(
                &c,
                reqwest::Method::GET,
                &format!("{base}/seg{i}.ts"),
                ae,
                None,
            )
            .await;
            assert!(
                a.cache_status.contains("; hit"),
                "{path} {ae:?}: {}",
                a.cache_status
            );
            assert_eq!(a.encoding, None, "{path}");
            assert!(a.body == content.as_slice(), "{path}: the content");
        }
        assert_eq!(nginx.requests(&path).len(), 1, "{path}: no further fill");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compression_plugin_encodes_hits_per_class_from_one_stored_object() {
    // An origin that does not compress: its plain response (no `Vary`) is stored once, and
    // the `compression` plugin encodes it on the way out with a coding the client's class
    // accepts (its own preference: br, zstd, gzip).
    let content = text(8192, 9);
    let nginx = Nginx::start(&[("plain/doc.txt", &content)]);
    let disk = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _m = Meridian::start(&edge_yaml(port, nginx.port, disk.path()));
    let c = client();
    let url = format!("http://127.0.0.1:{port}/plain/doc.txt");
    let cases = [
        (Some("gzip, deflate, br, zstd"), Some("br")),
        (Some("gzip, deflate, br"), Some("br")),
        (Some("gzip;q=0.5, zstd"), Some("zstd")),
        (Some("gzip, deflate"), Some("gzip")),
        (Some("deflate"), None),
        (None, None),
    ];
    for round in 0..2 {
        for (ae, want) in cases {
            let a = fetch(&c, reqwest::Method::GET, &url, ae, None).await;
            assert_eq!(a.status, 200, "{ae:?}: {}", a.cache_status);
            assert_eq!(
                a.encoding.as_deref(),
                want,
                "round {round} {ae:?}: {}",
                a.cache_status
            );
            assert!(decoded(&a) == content, "round {round} {ae:?}: the content");
            assert!(
                a.vary.to_ascii_lowercase().contains("accept-encoding"),
                "round {round} {ae:?}: vary {:?}",
                a.vary
            );
            let first = round == 0 && ae == cases[0].0;
            assert_eq!(
                a.cache_status.contains("; hit"),
                !first,
                "round {round} {ae:?}: {}",
                a.cache_status
            );
        }
    }
    assert_eq!(nginx.requests("/plain/doc.txt").len(), 1, "one fill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accept_encoding_off_leaves_the_header_to_the_allow_list() {
    // `accept_encoding: []`: the client's value goes to the origin as sent, and a response
    // varying on it is not stored, as `vary` does not list it.
    let content = text(2000, 29);
    let nginx = Nginx::start(&[("raw/doc.txt", &content)]);
    let disk = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _m = Meridian::start(&edge_yaml(port, nginx.port, disk.path()));
    let c = client();
    let url = format!("http://127.0.0.1:{port}/raw/doc.txt");
    for _ in 0..2 {
        let a = fetch(
            &c,
            reqwest::Method::GET,
            &url,
            Some("gzip, deflate, br"),
            None,
        )
        .await;
        check_full(&a, Some("gzip"), &content, "/raw/doc.txt");
        assert!(
            a.cache_status.contains("fwd=uri-miss; detail=vary"),
            "{}",
            a.cache_status
        );
    }
    assert_eq!(
        nginx.requests("/raw/doc.txt"),
        ["gzip, deflate, br", "gzip, deflate, br"]
    );
}
