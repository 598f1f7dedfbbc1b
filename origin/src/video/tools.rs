//! Running `ffmpeg` and `ffprobe`: finding them, a time limit per run, cancellation at
//! shutdown, and bounded output (stdout up to a limit, the tail of stderr for reasons).

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::watch;

/// Most stdout kept from a run (ffprobe's JSON is a few KiB).
const MAX_STDOUT: usize = 1 << 20;
/// How much of the end of stderr is kept for a failure's reason.
const STDERR_TAIL: usize = 4096;
/// Longest reason derived from stderr.
const MAX_REASON: usize = 400;

/// Why a tool run did not succeed.
#[derive(Debug)]
pub enum RunError {
    /// The program could not be found or started.
    Spawn(String),
    /// It ran longer than its time limit and was killed.
    TimedOut(Duration),
    /// Shutdown began; it was killed.
    Cancelled,
    /// It exited unsuccessfully; the reason is the end of its stderr.
    Failed(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spawn(e) => write!(f, "{e}"),
            RunError::TimedOut(limit) => write!(f, "timed out after {}s", limit.as_secs_f64()),
            RunError::Cancelled => write!(f, "cancelled by shutdown"),
            RunError::Failed(reason) => write!(f, "{reason}"),
        }
    }
}

/// The full path of `program`: itself if it names a path, else the first match on `PATH`.
/// `None` unless it is an executable regular file.
pub async fn resolve(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        return is_executable(program).await.then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if is_executable(&candidate).await {
            return Some(candidate);
        }
    }
    None
}

async fn is_executable(path: &Path) -> bool {
    match tokio::fs::metadata(path).await {
        Ok(meta) => meta.is_file() && meta.permissions().mode() & 0o111 != 0,
        Err(_) => false,
    }
}

/// Runs `program args`, killing it after `limit` or when `cancel` turns true. Returns its
/// stdout (refused if over 1 MiB).
pub async fn run(
    program: &Path,
    args: &[OsString],
    limit: Duration,
    cancel: &mut watch::Receiver<bool>,
) -> Result<Vec<u8>, RunError> {
    let name = program
        .file_name()
        .map_or_else(|| "tool".into(), |n| n.to_string_lossy().into_owned());
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RunError::Spawn(format!("cannot start {name}: {e}")))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(RunError::Spawn(format!("{name}: no pipes")));
    };
    let work = async {
        let (out, err, status) = tokio::join!(
            read_head(stdout, MAX_STDOUT),
            read_tail(stderr, STDERR_TAIL),
            child.wait()
        );
        (out, err, status)
    };
    if *cancel.borrow() {
        return Err(RunError::Cancelled);
    }
    let (out, err, status) = tokio::select! {
        done = work => done,
        () = tokio::time::sleep(limit) => return Err(RunError::TimedOut(limit)),
        _ = cancel.wait_for(|stop| *stop) => return Err(RunError::Cancelled),
    };
    let status = status.map_err(|e| RunError::Failed(format!("{name}: {e}")))?;
    if !status.success() {
        let code = status
            .code()
            .map_or_else(|| "a signal".to_string(), |c| format!("status {c}"));
        return Err(RunError::Failed(cut(&format!(
            "{name} exited with {code}: {}",
            last_lines(&err)
        ))));
    }
    let (out, whole) = out;
    if !whole {
        return Err(RunError::Failed(format!(
            "{name}: output over {MAX_STDOUT} bytes"
        )));
    }
    Ok(out)
}

/// Reads all of `r`, keeping the first `max` bytes; the flag says whether that was all.
async fn read_head(mut r: impl AsyncRead + Unpin, max: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut whole = true;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return (kept, whole),
            Ok(n) => {
                let room = max - kept.len();
                kept.extend_from_slice(&buf[..n.min(room)]);
                whole &= n <= room;
            }
        }
    }
}

/// Reads all of `r`, keeping the last `max` bytes.
async fn read_tail(mut r: impl AsyncRead + Unpin, max: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > max {
                    kept.drain(..kept.len() - max);
                }
            }
        }
    }
}

/// The last non-empty lines of `stderr` (up to three), joined with `; `.
fn last_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return "no error output".to_string();
    }
    lines[lines.len().saturating_sub(3)..].join("; ")
}

fn cut(reason: &str) -> String {
    if reason.len() <= MAX_REASON {
        return reason.to_string();
    }
    let mut end = MAX_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

/// What `ffprobe` says about a source.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Width of the first video stream.
    pub width: u32,
    /// Height of the first video stream.
    pub height: u32,
    /// Whether there is an audio stream.
    pub has_audio: bool,
    /// Duration in seconds, if known.
    pub duration: Option<f64>,
}

#[derive(Deserialize)]
struct ProbeJson {
    #[serde(default)]
    streams: Vec<StreamJson>,
    format: Option<FormatJson>,
}

#[derive(Deserialize)]
struct StreamJson {
    codec_type: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
}

#[derive(Deserialize)]
struct FormatJson {
    duration: Option<String>,
}

/// The `ffprobe` arguments that [`parse_probe`] reads.
pub fn probe_args(input: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(input.as_os_str().to_owned());
    args
}

/// Reads `ffprobe`'s JSON. A source without a video stream of known size is refused with the
/// reason.
pub fn parse_probe(json: &[u8]) -> Result<Probe, String> {
    let probe: ProbeJson =
        serde_json::from_slice(json).map_err(|e| format!("unreadable ffprobe output: {e}"))?;
    let video = probe
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video"))
        .ok_or("no video stream")?;
    let (Some(width), Some(height)) = (video.width, video.height) else {
        return Err("video stream without a size".to_string());
    };
    if width == 0 || height == 0 {
        return Err("video stream without a size".to_string());
    }
    let has_audio = probe
        .streams
        .iter()
        .any(|s| s.codec_type.as_deref() == Some("audio"));
    let duration = probe
        .format
        .and_then(|f| f.duration)
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0);
    Ok(Probe {
        width,
        height,
        has_audio,
        duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_read() {
        let json = br#"{"streams":[{"codec_type":"audio"},{"codec_type":"video","width":320,"height":240}],
            "format":{"duration":"3.000000"}}"#;
        assert_eq!(
            parse_probe(json),
            Ok(Probe {
                width: 320,
                height: 240,
                has_audio: true,
                duration: Some(3.0)
            })
        );
        let audio_only = br#"{"streams":[{"codec_type":"audio"}],"format":{}}"#;
        assert_eq!(parse_probe(audio_only), Err("no video stream".to_string()));
        assert!(parse_probe(b"not json").is_err());
        let sizeless = br#"{"streams":[{"codec_type":"video"}]}"#;
        assert!(parse_probe(sizeless).is_err());
    }

    #[test]
    fn stderr_is_kept_bounded() {
        assert_eq!(last_lines(b"a\n\nb\nc\nd\n"), "b; c; d");
        assert_eq!(last_lines(b""), "no error output");
        assert!(cut(&"x".repeat(1000)).len() <= MAX_REASON + '…'.len_utf8());
    }

    #[tokio::test]
    async fn runs_are_limited_and_report_failures() {
        let (_tx, mut rx) = watch::channel(false);
        let sh = Path::new("/bin/sh");
        let args = |s: &str| vec![OsString::from("-c"), OsString::from(s)];
        let out = run(sh, &args("echo hi"), Duration::from_secs(5), &mut rx).await;
        assert_eq!(out.ok(), Some(b"hi\n".to_vec()));
        let failed = run(
            sh,
            &args("echo boom >&2; exit 3"),
            Duration::from_secs(5),
            &mut rx,
        )
        .await;
        assert!(
            matches!(&failed, Err(RunError::Failed(r)) if r == "sh exited with status 3: boom"),
            "{failed:?}"
        );
        let slow = run(sh, &args("sleep 10"), Duration::from_millis(100), &mut rx).await;
        assert!(matches!(slow, Err(RunError::TimedOut(_))));
        let missing = run(
            Path::new("/nonexistent/ffmpeg"),
            &[],
            Duration::from_secs(1),
            &mut rx,
        )
        .await;
        assert!(matches!(missing, Err(RunError::Spawn(_))));
        assert_eq!(resolve(Path::new("/nonexistent/ffmpeg")).await, None);
        assert!(resolve(Path::new("sh")).await.is_some());
    }
}
