//! Hand-written LL-HLS and malformed playlists: LL-HLS attributes, TTLs and key rules, and
//! clear errors (never panics) for bad bodies.

use std::time::Duration;

use cdn_edge::hls::{self, HlsRules, Kind, Playlist, PlaylistError};
use url::Url;

/// The LL-HLS example of RFC 8216bis §9.
const LL_HLS: &str = r#"#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-VERSION:6
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0,CAN-SKIP-UNTIL=12.0
#EXT-X-PART-INF:PART-TARGET=0.33334
#EXT-X-MEDIA-SEQUENCE:266
#EXT-X-PROGRAM-DATE-TIME:2019-02-14T02:13:36.106Z
#EXT-X-MAP:URI="init.mp4"
#EXTINF:4.00008,
fileSequence266.mp4
#EXTINF:4.00008,
fileSequence267.mp4
#EXT-X-PART:DURATION=0.33334,URI="filePart268.0.mp4",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.33334,URI="filePart268.1.mp4"
#EXTINF:4.00008,
fileSequence268.mp4
#EXT-X-PART:DURATION=0.33334,URI="filePart269.0.mp4",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="filePart269.1.mp4"
#EXT-X-RENDITION-REPORT:URI="../1M/waitForMSN.php",LAST-MSN=273,LAST-PART=2
"#;

fn parse(body: &[u8]) -> Result<Playlist, PlaylistError> {
    hls::parse(body, hls::DEFAULT_MAX_PLAYLIST_BYTES)
}

#[test]
fn ll_hls_playlist() {
    let Ok(Playlist::Media(m)) = parse(LL_HLS.as_bytes()) else {
        panic!("expected a media playlist");
    };
    assert!(!m.finished);
    assert!(m.can_block_reload);
    assert_eq!(m.media_sequence, 266);
    assert_eq!(m.target_duration, Duration::from_secs(4));
    assert_eq!(m.part_target, Some(Duration::from_secs_f64(0.33334)));
    let uris: Vec<&str> = m.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "fileSequence266.mp4",
            "fileSequence267.mp4",
            "fileSequence268.mp4"
        ]
    );
    assert!(m
        .segments
        .iter()
        .all(|s| s.init_uri.as_deref() == Some("init.mp4")));

    let rules = HlsRules::default();
    let ttl = rules
        .ttl(Kind::MediaPlaylist, Some(&Playlist::Media(m.clone())))
        .unwrap();
    assert_eq!(ttl, Duration::from_secs_f64(0.33334) / 2);

    let base = Url::parse("https://ll.test/a/lowLatencyHLS.m3u8").unwrap();
    let plan = hls::plan(&m, &base, hls::After::Playlist, 2);
    let urls: Vec<&str> = plan.urls.iter().map(Url::as_str).collect();
    assert_eq!(
        urls,
        [
            "https://ll.test/a/init.mp4",
            "https://ll.test/a/fileSequence267.mp4",
            "https://ll.test/a/fileSequence268.mp4"
        ]
    );
}

#[test]
fn ll_hls_request_keys_and_blocking_reloads() {
    let rules = HlsRules::default();
    let q = "_HLS_part=1&player=abc&_HLS_msn=273";
    assert_eq!(
        rules.key_query(Kind::MediaPlaylist, q),
        "_HLS_msn=273&_HLS_part=1"
    );
    assert!(hls::is_blocking_reload(Kind::MediaPlaylist, q));
    assert!(!hls::is_blocking_reload(Kind::MediaPlaylist, "player=abc"));
    assert_eq!(rules.key_query(Kind::Segment, "player=abc&_HLS_msn=1"), "");
}

#[test]
fn byte_range_playlist() {
    let body = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXT-X-VERSION:4\n\
        #EXTINF:10,\n#EXT-X-BYTERANGE:75232@0\nsegment.ts\n\
        #EXTINF:10,\n#EXT-X-BYTERANGE:82112@752321\nsegment.ts\n\
        #EXTINF:10,\n#EXT-X-BYTERANGE:69864\nsegment.ts\n#EXT-X-ENDLIST\n";
    let Ok(Playlist::Media(m)) = parse(body) else {
        panic!("expected a media playlist");
    };
    assert!(m.finished);
    assert_eq!(m.segments.len(), 3);
    let ranges: Vec<_> = m
        .segments
        .iter()
        .map(|s| s.byte_range.map(|r| (r.length, r.offset)))
        .collect();
    assert_eq!(
        ranges,
        [
            Some((75232, Some(0))),
            Some((82112, Some(752321))),
            Some((69864, None))
        ]
    );
    let base = Url::parse("http://e.test/p.m3u8").unwrap();
    let plan = hls::plan(&m, &base, hls::After::Playlist, 2);
    assert!(plan.urls.is_empty());
    assert_eq!(plan.skipped_byte_ranges, 3);
}

#[test]
fn malformed_playlists_are_clear_errors() {
    assert_eq!(
        parse(b"<html>nope</html>"),
        Err(PlaylistError::NotAPlaylist)
    );
    assert_eq!(parse(b""), Err(PlaylistError::NotAPlaylist));
    assert_eq!(parse(b"#EXTM3U\n\xff\xfe"), Err(PlaylistError::NotUtf8));
    assert_eq!(
        hls::parse(LL_HLS.as_bytes(), 100),
        Err(PlaylistError::TooLarge {
            size: LL_HLS.len(),
            limit: 100
        })
    );
    let no_target = parse(b"#EXTM3U\n#EXTINF:2,\na.ts\n").unwrap_err();
    assert!(
        no_target.to_string().contains("TARGETDURATION"),
        "{no_target}"
    );
    let bad_part = LL_HLS.replace("PART-TARGET=0.33334", "PART-TARGET=-1");
    let e = parse(bad_part.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("PART-TARGET"), "{e}");
    let nan_part = LL_HLS.replace("PART-TARGET=0.33334", "PART-TARGET=NaN");
    assert!(parse(nan_part.as_bytes()).is_err());
    for bad in [
        "#EXTM3U\n#EXT-X-TARGETDURATION:abc\n#EXTINF:2,\na.ts\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:99999999999999999999999\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:zz,\na.ts\n",
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=x\nv.m3u8\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-BYTERANGE:@@\na.ts\n",
    ] {
        // Whatever the verdict, it is a value, not a panic.
        let _ = parse(bad.as_bytes());
    }
}

#[test]
fn truncated_and_corrupted_playlists_never_panic() {
    let bytes = LL_HLS.as_bytes();
    for end in 0..bytes.len() {
        let _ = parse(&bytes[..end]);
    }
    // Deterministic corruption: flip one byte at a time to a set of troublemakers.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..2_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut body = bytes.to_vec();
        let at = (state as usize) % body.len();
        body[at] = [b'\n', b'"', b',', b'=', b'#', b':', 0, b'9', 0xc3][(state >> 32) as usize % 9];
        let _ = parse(&body);
    }
}
