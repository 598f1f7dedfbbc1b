//! The HLS building blocks against playlists written by real `ffmpeg`: VOD (MPEG-TS and
//! fMP4 with an init segment), a live sliding window, and a multivariant playlist.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cdn_edge::hls::{self, After, HlsRules, Kind, Playlist};
use url::Url;

/// Runs ffmpeg with a 6-second, 25 fps test source cut into 1-second segments, writing
/// `out` (relative to `dir`) with the extra muxer arguments.
fn ffmpeg(dir: &Path, extra: &[&str], out: &str) {
    let status = Command::new("ffmpeg")
        .current_dir(dir)
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=6:size=320x240:rate=25",
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-sc_threshold", "0", "-f", "hls", "-hls_time", "1"])
        .args(extra)
        .arg(out)
        .status();
    match status {
        Ok(s) => assert!(s.success(), "ffmpeg failed: {s}"),
        Err(e) => panic!("ffmpeg is not runnable ({e}): run scripts/deps test"),
    }
}

fn parse_file(path: &Path) -> Playlist {
    let body = std::fs::read(path).unwrap();
    hls::parse(&body, hls::DEFAULT_MAX_PLAYLIST_BYTES).unwrap()
}

fn media(p: Playlist) -> hls::MediaPlaylist {
    match p {
        Playlist::Media(m) => m,
        Playlist::Master(_) => panic!("expected a media playlist"),
    }
}

fn strs(plan: &hls::Plan) -> Vec<&str> {
    plan.urls.iter().map(Url::as_str).collect()
}

#[test]
fn vod_mpegts_playlist() {
    let dir = tempfile::tempdir().unwrap();
    ffmpeg(dir.path(), &["-hls_playlist_type", "vod"], "vod.m3u8");
    let body = std::fs::read(dir.path().join("vod.m3u8")).unwrap();
    assert_eq!(hls::classify_body(&body), Some(Kind::MediaPlaylist));
    assert_eq!(hls::classify("/v/vod.m3u8", None), Kind::MediaPlaylist);

    let playlist = parse_file(&dir.path().join("vod.m3u8"));
    let rules = HlsRules::default();
    assert_eq!(
        rules.ttl(Kind::MediaPlaylist, Some(&playlist)),
        Some(rules.vod_playlist_ttl)
    );
    let m = media(playlist);
    assert!(m.finished);
    assert_eq!(m.target_duration, Duration::from_secs(1));
    assert_eq!(m.segments.len(), 6, "{:?}", m.segments);
    for s in &m.segments {
        assert_eq!(hls::classify(&s.uri, None), Kind::Segment);
        assert!(dir.path().join(&s.uri).is_file());
        assert!(s.byte_range.is_none() && s.init_uri.is_none());
    }

    let base = Url::parse("http://edge.test/v/vod.m3u8").unwrap();
    let first = hls::plan(&m, &base, After::Playlist, 2);
    assert_eq!(
        strs(&first),
        ["http://edge.test/v/vod0.ts", "http://edge.test/v/vod1.ts"]
    );
    let seg2 = base.join("vod2.ts?CMCD=bl%3D1").unwrap();
    let next = hls::plan(&m, &base, After::Segment(&seg2), 3);
    assert_eq!(
        strs(&next),
        [
            "http://edge.test/v/vod3.ts",
            "http://edge.test/v/vod4.ts",
            "http://edge.test/v/vod5.ts"
        ]
    );
}

#[test]
fn vod_fmp4_playlist_with_init_segment() {
    let dir = tempfile::tempdir().unwrap();
    ffmpeg(
        dir.path(),
        &[
            "-hls_playlist_type",
            "vod",
            "-hls_segment_type",
            "fmp4",
            "-hls_fmp4_init_filename",
            "init.mp4",
        ],
        "f.m3u8",
    );
    let m = media(parse_file(&dir.path().join("f.m3u8")));
    assert!(m.finished);
    assert!(m.segments.len() >= 5, "{:?}", m.segments);
    for s in &m.segments {
        assert_eq!(hls::classify(&s.uri, None), Kind::Segment, "{}", s.uri);
        assert_eq!(s.init_uri.as_deref(), Some("init.mp4"));
    }
    assert_eq!(hls::classify("init.mp4", None), Kind::InitSegment);
    assert!(dir.path().join("init.mp4").is_file());

    let base = Url::parse("http://edge.test/f/f.m3u8").unwrap();
    let plan = hls::plan(&m, &base, After::Playlist, 2);
    assert_eq!(plan.urls.len(), 3);
    assert_eq!(plan.urls[0].as_str(), "http://edge.test/f/init.mp4");
    let seg = base.join(&m.segments[0].uri).unwrap();
    let after = hls::plan(&m, &base, After::Segment(&seg), 2);
    assert_eq!(
        strs(&after),
        [
            base.join(&m.segments[1].uri).unwrap().as_str(),
            base.join(&m.segments[2].uri).unwrap().as_str()
        ]
    );
}

#[test]
fn live_sliding_window_playlist() {
    let dir = tempfile::tempdir().unwrap();
    ffmpeg(
        dir.path(),
        &[
            "-hls_list_size",
            "3",
            "-hls_flags",
            "delete_segments+omit_endlist",
        ],
        "live.m3u8",
    );
    let playlist = parse_file(&dir.path().join("live.m3u8"));
    let rules = HlsRules::default();
    assert_eq!(
        rules.ttl(Kind::MediaPlaylist, Some(&playlist)),
        Some(Duration::from_millis(500))
    );
    let m = media(playlist);
    assert!(!m.finished);
    assert_eq!(m.segments.len(), 3);
    assert!(m.media_sequence >= 3, "{}", m.media_sequence);
    // The live window's segments exist; deleted ones do not.
    for s in &m.segments {
        assert!(dir.path().join(&s.uri).is_file(), "{}", s.uri);
    }
    assert!(!dir.path().join("live0.ts").exists());

    let base = Url::parse("http://edge.test/l/live.m3u8").unwrap();
    let plan = hls::plan(&m, &base, After::Playlist, 2);
    let want: Vec<String> = m.segments[1..]
        .iter()
        .map(|s| base.join(&s.uri).unwrap().to_string())
        .collect();
    assert_eq!(strs(&plan), want);
}

#[test]
fn multivariant_playlist() {
    let dir = tempfile::tempdir().unwrap();
    ffmpeg(
        dir.path(),
        &[
            "-b:v",
            "300k",
            "-hls_playlist_type",
            "vod",
            "-master_pl_name",
            "master.m3u8",
            "-var_stream_map",
            "v:0",
        ],
        "variant_%v.m3u8",
    );
    let body = std::fs::read(dir.path().join("master.m3u8")).unwrap();
    assert_eq!(hls::classify_body(&body), Some(Kind::MasterPlaylist));
    let playlist = hls::parse(&body, hls::DEFAULT_MAX_PLAYLIST_BYTES).unwrap();
    let rules = HlsRules::default();
    assert_eq!(
        rules.ttl(Kind::MediaPlaylist, Some(&playlist)),
        Some(rules.master_playlist_ttl)
    );
    match playlist {
        Playlist::Master(m) => assert_eq!(m.uris, ["variant_0.m3u8"]),
        Playlist::Media(_) => panic!("expected a multivariant playlist"),
    }
}
