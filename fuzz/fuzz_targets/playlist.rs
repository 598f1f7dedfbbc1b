//! HLS playlist parsing: any body is a playlist or an error, never a panic; the size limit
//! holds; parsing is deterministic.
#![no_main]

use cdn_edge::hls::{parse as parse_playlist, PlaylistError};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let first = parse_playlist(data, LIMIT);
    if data.len() > LIMIT {
        assert!(matches!(first, Err(PlaylistError::TooLarge { .. })));
        return;
    }
    assert_eq!(
        first,
        parse_playlist(data, LIMIT),
        "parsing is deterministic"
    );
    // A limit below the size refuses the same body.
    if !data.is_empty() {
        assert!(matches!(
            parse_playlist(data, data.len() - 1),
            Err(PlaylistError::TooLarge { .. })
        ));
    }
});
