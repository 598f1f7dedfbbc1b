//! Reads the playlists `ffmpeg` wrote, to check a ladder is complete before it is published.

use super::names;
use super::store::Rendition;

/// The renditions a master playlist lists, in its order. Each URI must be
/// `{rendition}/index.m3u8` with a valid rendition name, and each variant must carry
/// BANDWIDTH, RESOLUTION and CODECS.
pub fn parse_master(text: &str) -> Result<Vec<Rendition>, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        return Err("master playlist does not start with #EXTM3U".into());
    }
    let mut renditions = Vec::new();
    while let Some(line) = lines.next() {
        let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") else {
            continue;
        };
        let uri = lines.next().ok_or("variant without a URI")?;
        let name = uri
            .strip_suffix(&format!("/{}", names::MEDIA_PLAYLIST))
            .filter(|n| names::is_rendition(n))
            .ok_or_else(|| format!("unexpected variant URI {uri:?}"))?;
        let mut bandwidth = None;
        let mut resolution = None;
        let mut codecs = None;
        for (key, value) in attributes(attrs) {
            match key {
                "BANDWIDTH" => bandwidth = value.parse::<u64>().ok(),
                "RESOLUTION" => {
                    resolution = value
                        .split_once('x')
                        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
                }
                "CODECS" => codecs = Some(value.trim_matches('"').to_string()),
                _ => {}
            }
        }
        let (Some(bandwidth), Some((width, height)), Some(codecs)) =
            (bandwidth, resolution, codecs)
        else {
            return Err(format!(
                "variant {name} lacks BANDWIDTH, RESOLUTION or CODECS"
            ));
        };
        renditions.push(Rendition {
            name: name.to_string(),
            width,
            height,
            bandwidth,
            codecs,
        });
    }
    if renditions.is_empty() {
        return Err("master playlist lists no variants".into());
    }
    Ok(renditions)
}

/// `KEY=VALUE` pairs of an attribute list, split on commas outside quotes.
fn attributes(list: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in list.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.extend(list[start..i].split_once('='));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.extend(list[start..].split_once('='));
    out
}

/// The segment names of a complete VOD media playlist: it must end with `#EXT-X-ENDLIST`
/// and every URI must be a valid segment name.
pub fn parse_media(text: &str) -> Result<Vec<String>, String> {
    let mut segments = Vec::new();
    let mut ended = false;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line == "#EXT-X-ENDLIST" {
            ended = true;
        } else if !line.starts_with('#') {
            if !names::is_segment(line) {
                return Err(format!("unexpected segment URI {line:?}"));
            }
            segments.push(line.to_string());
        }
    }
    if !ended {
        return Err("media playlist has no #EXT-X-ENDLIST".into());
    }
    if segments.is_empty() {
        return Err("media playlist has no segments".into());
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:6\n\
        #EXT-X-STREAM-INF:BANDWIDTH=290400,RESOLUTION=192x144,CODECS=\"avc1.4d400c,mp4a.40.2\"\n\
        144p/index.m3u8\n\n\
        #EXT-X-STREAM-INF:BANDWIDTH=510400,RESOLUTION=320x240,CODECS=\"avc1.4d4014,mp4a.40.2\"\n\
        240p/index.m3u8\n";

    #[test]
    fn masters_are_read() {
        let r = parse_master(MASTER).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "144p");
        assert_eq!(
            (r[1].width, r[1].height, r[1].bandwidth),
            (320, 240, 510_400)
        );
        assert_eq!(r[1].codecs, "avc1.4d4014,mp4a.40.2");
    }

    #[test]
    fn incomplete_or_odd_masters_are_refused() {
        assert!(parse_master("").is_err());
        assert!(parse_master("#EXTM3U\n").is_err());
        assert!(parse_master("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n").is_err());
        let escape =
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=2x2,CODECS=\"a\"\n../x/index.m3u8\n";
        assert!(parse_master(escape).is_err());
        let bare = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na/index.m3u8\n";
        assert!(parse_master(bare).is_err());
    }

    #[test]
    fn media_playlists_must_be_complete() {
        let ok =
            "#EXTM3U\n#EXTINF:4.0,\nseg_00000.ts\n#EXTINF:1.0,\nseg_00001.ts\n#EXT-X-ENDLIST\n";
        assert_eq!(parse_media(ok).unwrap(), ["seg_00000.ts", "seg_00001.ts"]);
        assert!(parse_media("#EXTM3U\n#EXTINF:4.0,\nseg_00000.ts\n").is_err());
        assert!(parse_media("#EXTM3U\n#EXT-X-ENDLIST\n").is_err());
        assert!(parse_media("#EXTM3U\n/etc/passwd\n#EXT-X-ENDLIST\n").is_err());
    }
}
