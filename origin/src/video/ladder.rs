//! The HLS ladder: which renditions a source becomes, and the `ffmpeg` arguments that make
//! them in one pass (one decode, one encoder per rendition, key frames aligned to segments).

use std::ffi::OsString;
use std::path::Path;

use super::names;

/// One rendition of the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rung {
    /// Its name, also its directory and URL part (`[a-z0-9_]{1,16}`, e.g. `480p`).
    pub name: String,
    /// Output height in pixels (even); the width follows the source's aspect ratio.
    pub height: u32,
    /// Target video bitrate in kbit/s (peak is capped at 1.07×, buffer 1.5×).
    pub video_kbps: u32,
    /// Audio bitrate in kbit/s (AAC stereo), used when the source has audio.
    pub audio_kbps: u32,
}

impl Rung {
    /// A rung named `name`.
    pub fn new(name: &str, height: u32, video_kbps: u32, audio_kbps: u32) -> Self {
        Self {
            name: name.to_string(),
            height,
            video_kbps,
            audio_kbps,
        }
    }
}

/// 240p/480p/720p at 400/1400/2800 kbit/s video, 64/96/128 kbit/s audio.
pub fn default_ladder() -> Vec<Rung> {
    vec![
        Rung::new("240p", 240, 400, 64),
        Rung::new("480p", 480, 1400, 96),
        Rung::new("720p", 720, 2800, 128),
    ]
}

/// Most renditions a ladder may have.
const MAX_RUNGS: usize = 8;

/// Checks a configured ladder: 1–8 rungs, valid unique names, even heights 16–4320, bitrates
/// 1–100000 kbit/s.
pub fn check_ladder(ladder: &[Rung]) -> Result<(), String> {
    if ladder.is_empty() || ladder.len() > MAX_RUNGS {
        return Err(format!("the ladder needs 1 to {MAX_RUNGS} renditions"));
    }
    for (i, rung) in ladder.iter().enumerate() {
        if !names::is_rendition(&rung.name) {
            return Err(format!(
                "rendition name {:?} is not [a-z0-9_]{{1,16}}",
                rung.name
            ));
        }
        if ladder[..i].iter().any(|r| r.name == rung.name) {
            return Err(format!("rendition {:?} appears twice", rung.name));
        }
        if rung.height % 2 != 0 || !(16..=4320).contains(&rung.height) {
            return Err(format!(
                "rendition {}: height must be even, 16–4320",
                rung.name
            ));
        }
        for kbps in [rung.video_kbps, rung.audio_kbps] {
            if !(1..=100_000).contains(&kbps) {
                return Err(format!(
                    "rendition {}: bitrates must be 1–100000 kbit/s",
                    rung.name
                ));
            }
        }
    }
    Ok(())
}

/// The rungs to make for a source `source_height` pixels high, lowest first: those not above
/// the source; if the source is below every rung, the lowest rung at the source's (even)
/// height — never upscaled.
pub fn pick(ladder: &[Rung], source_height: u32) -> Vec<Rung> {
    let mut rungs: Vec<Rung> = ladder
        .iter()
        .filter(|r| r.height <= source_height)
        .cloned()
        .collect();
    if rungs.is_empty() {
        if let Some(lowest) = ladder.iter().min_by_key(|r| r.height) {
            let mut rung = lowest.clone();
            rung.height = (source_height & !1).max(2);
            rungs.push(rung);
        }
    }
    rungs.sort_by_key(|r| r.height);
    rungs
}

/// The `ffmpeg` arguments that transcode `input` into `rungs` under `out_dir`:
/// `{out_dir}/{rung}/index.m3u8` + `seg_NNNNN.ts` (H.264 main + AAC in MPEG-TS, VOD playlists,
/// key frames every `segment_seconds`) and `{out_dir}/master.m3u8` with BANDWIDTH, RESOLUTION
/// and CODECS.
pub fn ffmpeg_args(
    input: &Path,
    out_dir: &Path,
    rungs: &[Rung],
    has_audio: bool,
    segment_seconds: u32,
) -> Vec<OsString> {
    let mut head: Vec<OsString> = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i"]
        .map(OsString::from)
        .to_vec();
    head.push(input.as_os_str().to_owned());

    // One decode, split into a scaled copy per rung.
    let n = rungs.len();
    let mut graph = format!("[0:v:0]split={n}");
    for i in 0..n {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, rung) in rungs.iter().enumerate() {
        graph.push_str(&format!(";[s{i}]scale=-2:{}[v{i}]", rung.height));
    }
    head.extend(["-filter_complex".into(), graph.into()]);

    // Output options; the paths come last.
    let mut args: Vec<String> = Vec::new();
    for i in 0..n {
        args.extend(["-map".into(), format!("[v{i}]")]);
        if has_audio {
            args.extend(["-map".into(), "0:a:0".into()]);
        }
    }
    args.extend(
        [
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "main",
            "-pix_fmt",
            "yuv420p",
        ]
        .map(String::from),
    );
    // Key frames exactly at segment boundaries, so every rendition cuts at the same times.
    args.extend([
        "-force_key_frames".into(),
        format!("expr:gte(t,n_forced*{segment_seconds})"),
    ]);
    for (i, rung) in rungs.iter().enumerate() {
        let kbps = rung.video_kbps;
        args.extend([format!("-b:v:{i}"), format!("{kbps}k")]);
        args.extend([
            format!("-maxrate:v:{i}"),
            format!("{}k", kbps + kbps * 7 / 100),
        ]);
        args.extend([format!("-bufsize:v:{i}"), format!("{}k", kbps + kbps / 2)]);
        if has_audio {
            args.extend([format!("-b:a:{i}"), format!("{}k", rung.audio_kbps)]);
        }
    }
    if has_audio {
        args.extend(["-c:a", "aac", "-ac", "2"].map(String::from));
    }
    args.extend(
        [
            "-f",
            "hls",
            "-hls_time",
            &segment_seconds.to_string(),
            "-hls_playlist_type",
            "vod",
            "-hls_flags",
            "independent_segments",
            "-hls_segment_type",
            "mpegts",
            "-master_pl_name",
            names::MASTER_PLAYLIST,
        ]
        .map(String::from),
    );
    let map: Vec<String> = rungs
        .iter()
        .enumerate()
        .map(|(i, rung)| {
            if has_audio {
                format!("v:{i},a:{i},name:{}", rung.name)
            } else {
                format!("v:{i},name:{}", rung.name)
            }
        })
        .collect();
    args.extend(["-var_stream_map".into(), map.join(" ")]);

    head.extend(args.into_iter().map(OsString::from));
    let per_rendition = out_dir.join("%v");
    head.push("-hls_segment_filename".into());
    head.push(per_rendition.join(names::SEGMENT_TEMPLATE).into_os_string());
    head.push(per_rendition.join(names::MEDIA_PLAYLIST).into_os_string());
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ladder_is_valid() {
        assert!(check_ladder(&default_ladder()).is_ok());
    }

    #[test]
    fn bad_ladders_are_refused() {
        assert!(check_ladder(&[]).is_err());
        assert!(check_ladder(&[Rung::new("../x", 240, 400, 64)]).is_err());
        assert!(check_ladder(&[Rung::new("a", 241, 400, 64)]).is_err());
        assert!(check_ladder(&[Rung::new("a", 240, 0, 64)]).is_err());
        assert!(
            check_ladder(&[Rung::new("a", 240, 400, 64), Rung::new("a", 480, 800, 64)]).is_err()
        );
    }

    #[test]
    fn sources_are_never_upscaled() {
        let ladder = default_ladder();
        let names = |rungs: Vec<Rung>| rungs.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(pick(&ladder, 1080)), ["240p", "480p", "720p"]);
        assert_eq!(names(pick(&ladder, 576)), ["240p", "480p"]);
        let small = pick(&ladder, 181);
        assert_eq!(small.len(), 1);
        assert_eq!((small[0].name.as_str(), small[0].height), ("240p", 180));
    }

    #[test]
    fn arguments_map_every_rung() {
        let rungs = pick(&default_ladder(), 720);
        let args = ffmpeg_args(Path::new("/in"), Path::new("/out"), &rungs, true, 4);
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("split=3[s0][s1][s2]"), "{joined}");
        assert!(joined.contains("v:0,a:0,name:240p v:1,a:1,name:480p v:2,a:2,name:720p"));
        assert!(joined.contains("-hls_playlist_type vod"));
        assert!(joined.contains("expr:gte(t,n_forced*4)"));
        assert_eq!(args.last().map(String::as_str), Some("/out/%v/index.m3u8"));
        let silent = ffmpeg_args(Path::new("/in"), Path::new("/out"), &rungs, false, 4);
        assert!(!silent.iter().any(|a| a == "0:a:0" || a == "aac"));
    }
}
