//! Tells video containers from everything else by their first bytes, never by a name or a
//! `Content-Type`.

/// How many leading bytes [`sniff`] wants to see (fewer is fine when the body is shorter).
pub const SNIFF_LEN: usize = 512;

/// MPEG transport stream packet size, and the M2TS (Blu-ray) one with its 4-byte timecode.
const TS_PACKET: usize = 188;
const M2TS_PACKET: usize = 192;

/// What the first bytes of an upload say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// A video container, by name.
    Video(&'static str),
    /// Not a video; what it looks like instead, for the refusal's reason.
    Other(&'static str),
}

/// Classifies `head`, the first (up to [`SNIFF_LEN`]) bytes of an upload.
pub fn sniff(head: &[u8]) -> Sniffed {
    if let Some(name) = video_container(head) {
        return Sniffed::Video(name);
    }
    Sniffed::Other(other_kind(head))
}

fn video_container(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(4, b"ftyp") {
        return Some("MP4/QuickTime");
    }
    // Old QuickTime files may start straight with a movie or data atom.
    if at(4, b"moov") || at(4, b"mdat") || at(4, b"wide") {
        return Some("QuickTime");
    }
    if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some("Matroska/WebM");
    }
    if at(0, b"RIFF") && at(8, b"AVI ") {
        return Some("AVI");
    }
    if at(0, b"FLV") && head.get(3) == Some(&1) {
        return Some("FLV");
    }
    if at(0, b"OggS") {
        return Some("Ogg");
    }
    if at(0, &[0x00, 0x00, 0x01, 0xBA]) {
        return Some("MPEG program stream");
    }
    if at(0, &[0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11]) {
        return Some("ASF/WMV");
    }
    if sync_bytes(head, 0, TS_PACKET) {
        return Some("MPEG transport stream");
    }
    if sync_bytes(head, 4, M2TS_PACKET) {
        return Some("MPEG-2 transport stream (M2TS)");
    }
    None
}

/// True when `head` has the transport-stream sync byte 0x47 at `first` and one and two
/// packets later (at least two packets must be present).
fn sync_bytes(head: &[u8], first: usize, packet: usize) -> bool {
    let mut seen = 0;
    for offset in [first, first + packet, first + 2 * packet] {
        match head.get(offset) {
            Some(0x47) => seen += 1,
            Some(_) => return false,
            None => break,
        }
    }
    seen >= 2
}

fn other_kind(head: &[u8]) -> &'static str {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if head.is_empty() {
        "empty"
    } else if at(0, b"\x89PNG") {
        "PNG image"
    } else if at(0, &[0xFF, 0xD8, 0xFF]) {
        "JPEG image"
    } else if at(0, b"GIF8") {
        "GIF image"
    } else if at(0, b"%PDF") {
        "PDF document"
    } else if at(0, b"PK\x03\x04") {
        "ZIP archive"
    } else if at(0, b"RIFF") && at(8, b"WAVE") {
        "WAV audio"
    } else if at(0, b"ID3") || at(0, b"fLaC") {
        "audio file"
    } else if at(0, b"\x7fELF") {
        "executable"
    } else if head
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace() || *b >= 0x80)
    {
        "text"
    } else {
        "unrecognised content"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(packets: usize, packet: usize, first: usize) -> Vec<u8> {
        let mut v = vec![0u8; packets * packet + first];
        for i in 0..packets {
            v[first + i * packet] = 0x47;
        }
        v
    }

    #[test]
    fn containers_are_recognised_by_magic() {
        let cases: &[(&[u8], &str)] = &[
            (b"\0\0\0\x18ftypisom\0\0\x02\0", "MP4/QuickTime"),
            (b"\0\0\0\x08wide\0\0\0\0", "QuickTime"),
            (&[0x1A, 0x45, 0xDF, 0xA3, 0x9F], "Matroska/WebM"),
            (b"RIFF\x10\0\0\0AVI LIST", "AVI"),
            (b"FLV\x01\x05\0\0\0\x09", "FLV"),
            (b"OggS\0\x02", "Ogg"),
            (&[0, 0, 1, 0xBA, 0x44], "MPEG program stream"),
            (
                &[0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11, 0xA6],
                "ASF/WMV",
            ),
        ];
        for (head, name) in cases {
            assert_eq!(sniff(head), Sniffed::Video(name), "{head:?}");
        }
        assert_eq!(
            sniff(&ts(3, 188, 0)),
            Sniffed::Video("MPEG transport stream")
        );
        assert_eq!(
            sniff(&ts(3, 192, 4)),
            Sniffed::Video("MPEG-2 transport stream (M2TS)")
        );
    }

    #[test]
    fn lookalikes_are_not_videos() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"\x89PNG\r\n\x1a\n", "PNG image"),
            (b"\xFF\xD8\xFF\xE0", "JPEG image"),
            (b"%PDF-1.7", "PDF document"),
            (b"RIFF\x10\0\0\0WAVEfmt ", "WAV audio"),
            (b"hello, this is not a video\n", "text"),
            (b"G", "text"),
            (&[0x00, 0x01, 0x02, 0x03], "unrecognised content"),
        ];
        for (head, kind) in cases {
            assert_eq!(sniff(head), Sniffed::Other(kind), "{head:?}");
        }
        // One sync byte, or a second one in the wrong place, is not a transport stream.
        let mut one = vec![0u8; 100];
        one[0] = 0x47;
        assert!(matches!(sniff(&one), Sniffed::Other(_)));
        let mut wrong = ts(3, 188, 0);
        wrong[376] = 0;
        assert!(matches!(sniff(&wrong), Sniffed::Other(_)));
    }
}
