//! Strict patterns for every name that reaches the filesystem or the store: video ids,
//! rendition names, playlist/segment file names, and the client's file name and title.
//! Path parts are only ever built from names that passed these checks.

use rand::Rng;

/// Length of a video id: lowercase hex of 64 random bits.
const ID_LEN: usize = 16;
/// Longest rendition name.
const MAX_RENDITION: usize = 16;
/// Longest client file name kept as metadata.
const MAX_NAME: usize = 255;
/// Longest title.
const MAX_TITLE: usize = 200;

/// A fresh random video id.
pub fn new_id() -> String {
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}

/// True when `id` looks like one [`new_id`] makes.
pub fn is_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True for a rendition name: 1–16 of `[a-z0-9_]`, starting with an alphanumeric.
pub fn is_rendition(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_RENDITION
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// The name a rendition's media playlist has.
pub const MEDIA_PLAYLIST: &str = "index.m3u8";
/// The name of the master playlist.
pub const MASTER_PLAYLIST: &str = "master.m3u8";
/// The `ffmpeg` segment file name template that [`is_segment`] accepts.
pub const SEGMENT_TEMPLATE: &str = "seg_%05d.ts";

/// True for a segment file name as written by [`SEGMENT_TEMPLATE`]: `seg_` + 5 to 9 digits +
/// `.ts`.
pub fn is_segment(name: &str) -> bool {
    let Some(digits) = name
        .strip_prefix("seg_")
        .and_then(|rest| rest.strip_suffix(".ts"))
    else {
        return false;
    };
    (5..=9).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Checks the client's file name (metadata only, never used as a path): at most 255 bytes, no
/// path separator, no `..`, no NUL or other control characters. Returns the reason it is
/// refused.
pub fn check_file_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty file name");
    }
    if name.len() > MAX_NAME {
        return Err("file name too long");
    }
    if name.contains(['/', '\\']) {
        return Err("file name must not contain a path separator");
    }
    if name.contains("..") {
        return Err("file name must not contain '..'");
    }
    if name.chars().any(char::is_control) {
        return Err("file name must not contain control characters");
    }
    Ok(())
}

/// Checks a title: 1–200 bytes, no control characters. Returns the reason it is refused.
pub fn check_title(title: &str) -> Result<(), &'static str> {
    if title.trim().is_empty() {
        return Err("empty title");
    }
    if title.len() > MAX_TITLE {
        return Err("title too long (at most 200 bytes)");
    }
    if title.chars().any(char::is_control) {
        return Err("title must not contain control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_made_and_recognised() {
        let id = new_id();
        assert!(is_id(&id), "{id}");
        assert_ne!(id, new_id());
        for bad in [
            "",
            "..",
            "0123456789abcdeF",
            "0123456789abcde",
            "0123456789abcdef0",
            "../../etc/passwd",
            "0123456789abcd/f",
        ] {
            assert!(!is_id(bad), "{bad}");
        }
    }

    #[test]
    fn renditions_and_segments_are_strict() {
        for good in ["240p", "720p", "a", "hd_1"] {
            assert!(is_rendition(good), "{good}");
        }
        for bad in [
            "",
            "..",
            ".",
            "_x",
            "240P",
            "a/b",
            "a\\b",
            "abcdefghijklmnopq",
            "%2e",
        ] {
            assert!(!is_rendition(bad), "{bad}");
        }
        for good in ["seg_00000.ts", "seg_123456789.ts"] {
            assert!(is_segment(good), "{good}");
        }
        for bad in [
            "seg_0000.ts",
            "seg_1234567890.ts",
            "seg_00000.ts/..",
            "../seg_00000.ts",
            "seg_0000a.ts",
            "seg_00000.m4s",
            "index.m3u8",
        ] {
            assert!(!is_segment(bad), "{bad}");
        }
    }

    #[test]
    fn hostile_file_names_are_refused() {
        assert!(check_file_name("clip.mp4").is_ok());
        assert!(check_file_name("my holiday (1).mov").is_ok());
        for bad in [
            "",
            "../clip.mp4",
            "..",
            "a/b.mp4",
            "/etc/passwd",
            "C:\\x.mp4",
            "a\0b",
            "a\nb",
            "a\u{7f}b",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_file_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn titles_are_checked() {
        assert!(check_title("My clip").is_ok());
        assert!(check_title("   ").is_err());
        assert!(check_title("a\r\nb").is_err());
        assert!(check_title(&"t".repeat(201)).is_err());
    }
}
