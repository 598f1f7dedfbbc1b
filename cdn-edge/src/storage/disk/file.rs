//! The object file format: a fixed header, the serialized meta, then the body.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "MRDNOBJ2"
//!      8    16  object key (combined cache key hash)
//!     24    16  primary key hash (of the URL; differs from the object key for a `Vary`
//!               variant other than the first)
//!     40     4  internal meta length (LE)
//!     44     4  header meta length (LE)
//!     48     8  body length (LE)
//!     56     8  xxh3-64 of internal meta followed by header meta
//!     64     8  xxh3-64 of the body
//!     72     8  xxh3-64 of bytes 0..72
//!     80        internal meta, header meta, body
//! ```
//!
//! Files of the first format ("MRDNOBJ1": the same without the primary key, so a 64-byte
//! header) are still read and served; they are rewritten in the first format, and their
//! variants are not known to a purge by URL after a restart.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

use crate::storage::{MetaBytes, ObjectKey};

const MAGIC: &[u8; 8] = b"MRDNOBJ2";
const MAGIC_V1: &[u8; 8] = b"MRDNOBJ1";
/// Size of the fixed header.
const HEADER_LEN: u64 = 80;
/// Size of the fixed header of a first-format file.
const HEADER_LEN_V1: u64 = 64;
/// Size of one read or write when streaming a body.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Why an object file cannot be used.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The file is torn or corrupt and must be dropped.
    Corrupt(&'static str),
    /// The file could not be read (including: it is gone).
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadError::Corrupt("short file")
        } else {
            ReadError::Io(e)
        }
    }
}

/// The decoded fixed header of an object file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ObjectHeader {
    pub key: ObjectKey,
    /// The primary (URL) key; `None` in a first-format file, which does not record it.
    pub primary: Option<ObjectKey>,
    pub internal_len: u32,
    pub header_len: u32,
    pub body_len: u64,
    pub meta_hash: u64,
    pub body_hash: u64,
}

impl ObjectHeader {
    /// Offset of the meta in the file: the size of its fixed header.
    pub fn meta_offset(&self) -> u64 {
        if self.primary.is_some() {
            HEADER_LEN
        } else {
            HEADER_LEN_V1
        }
    }

    /// Offset of the body in the file.
    pub fn body_offset(&self) -> u64 {
        self.meta_offset() + u64::from(self.internal_len) + u64::from(self.header_len)
    }

    /// Size of the whole file.
    pub fn file_len(&self) -> u64 {
        self.body_offset() + self.body_len
    }

    /// The fixed header as written: the current format, or the first one for a header read from
    /// a first-format file (which has no primary key to write).
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN as usize);
        match &self.primary {
            Some(primary) => {
                out.extend_from_slice(MAGIC);
                out.extend_from_slice(&self.key);
                out.extend_from_slice(primary);
            }
            None => {
                out.extend_from_slice(MAGIC_V1);
                out.extend_from_slice(&self.key);
            }
        }
        out.extend_from_slice(&self.internal_len.to_le_bytes());
        out.extend_from_slice(&self.header_len.to_le_bytes());
        out.extend_from_slice(&self.body_len.to_le_bytes());
        out.extend_from_slice(&self.meta_hash.to_le_bytes());
        out.extend_from_slice(&self.body_hash.to_le_bytes());
        let check = xxh3_64(&out);
        out.extend_from_slice(&check.to_le_bytes());
        out
    }

    /// Decodes a fixed header: `raw` holds its first [`HEADER_LEN_V1`] bytes, and `rest` reads
    /// the bytes after those when the format has more.
    fn decode(
        raw: &[u8; HEADER_LEN_V1 as usize],
        rest: impl FnOnce(&mut [u8]) -> io::Result<()>,
    ) -> Result<Self, ReadError> {
        let mut all = [0u8; HEADER_LEN as usize];
        all[..raw.len()].copy_from_slice(raw);
        let (primary_len, len) = match &raw[0..8] {
            m if m == MAGIC => {
                rest(&mut all[raw.len()..])?;
                (16, HEADER_LEN as usize)
            }
            m if m == MAGIC_V1 => (0, HEADER_LEN_V1 as usize),
            _ => return Err(ReadError::Corrupt("bad magic")),
        };
        let fields = &all[..len];
        let le64 = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&fields[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let le32 = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&fields[at..at + 4]);
            u32::from_le_bytes(b)
        };
        if xxh3_64(&fields[..len - 8]) != le64(len - 8) {
            return Err(ReadError::Corrupt("bad header checksum"));
        }
        let mut key = ObjectKey::default();
        key.copy_from_slice(&fields[8..24]);
        let primary = (primary_len > 0).then(|| {
            let mut primary = ObjectKey::default();
            primary.copy_from_slice(&fields[24..40]);
            primary
        });
        let at = 24 + primary_len;
        Ok(ObjectHeader {
            key,
            primary,
            internal_len: le32(at),
            header_len: le32(at + 4),
            body_len: le64(at + 8),
            meta_hash: le64(at + 16),
            body_hash: le64(at + 24),
        })
    }
}

/// Length of the file an object with this meta and body makes.
pub(crate) fn object_file_len(meta: &MetaBytes, body_len: usize) -> u64 {
    HEADER_LEN + (meta.0.len() + meta.1.len() + body_len) as u64
}

fn meta_hash(internal: &[u8], header: &[u8]) -> u64 {
    let mut hasher = Xxh3Default::new();
    hasher.update(internal);
    hasher.update(header);
    hasher.digest()
}

fn meta_lens(meta: &MetaBytes) -> io::Result<(u32, u32)> {
    let conv = |n: usize| {
        u32::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "meta too large"))
    };
    Ok((conv(meta.0.len())?, conv(meta.1.len())?))
}

/// Writes a complete object file at `path` (a temp path: the caller renames it into place)
/// and syncs it. Returns the file length.
pub(crate) fn write_object(
    path: &Path,
    key: &ObjectKey,
    primary: &ObjectKey,
    meta: &MetaBytes,
    body: &[u8],
) -> io::Result<u64> {
    let (internal_len, header_len) = meta_lens(meta)?;
    let header = ObjectHeader {
        key: *key,
        primary: Some(*primary),
        internal_len,
        header_len,
        body_len: body.len() as u64,
        meta_hash: meta_hash(&meta.0, &meta.1),
        body_hash: xxh3_64(body),
    };
    let mut file = File::create(path)?;
    file.write_all(&header.encode())?;
    file.write_all(&meta.0)?;
    file.write_all(&meta.1)?;
    for chunk in body.chunks(CHUNK) {
        file.write_all(chunk)?;
    }
    file.sync_data()?;
    Ok(header.file_len())
}

/// Writes a copy of the object in `old` at `path` with new meta (the body and its checksum are
/// copied as they are), and syncs it. Returns the file length.
pub(crate) fn rewrite_meta(
    old: &File,
    old_header: &ObjectHeader,
    path: &Path,
    meta: &MetaBytes,
) -> io::Result<u64> {
    let (internal_len, header_len) = meta_lens(meta)?;
    let header = ObjectHeader {
        internal_len,
        header_len,
        meta_hash: meta_hash(&meta.0, &meta.1),
        ..*old_header
    };
    let mut file = File::create(path)?;
    file.write_all(&header.encode())?;
    file.write_all(&meta.0)?;
    file.write_all(&meta.1)?;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    while pos < old_header.body_len {
        let n = usize::try_from((old_header.body_len - pos).min(CHUNK as u64)).unwrap_or(CHUNK);
        old.read_exact_at(&mut buf[..n], old_header.body_offset() + pos)?;
        file.write_all(&buf[..n])?;
        pos += n as u64;
    }
    file.sync_data()?;
    Ok(header.file_len())
}

/// Reads and checks the header of `file` (magic, header checksum, length against the file).
pub(crate) fn read_header(file: &File) -> Result<ObjectHeader, ReadError> {
    let mut raw = [0u8; HEADER_LEN_V1 as usize];
    file.read_exact_at(&mut raw, 0)?;
    let header = ObjectHeader::decode(&raw, |rest| file.read_exact_at(rest, HEADER_LEN_V1))?;
    if file.metadata()?.len() != header.file_len() {
        return Err(ReadError::Corrupt("file length does not match its header"));
    }
    Ok(header)
}

/// Reads and checks the header and the meta of `file`.
pub(crate) fn read_meta(file: &File) -> Result<(ObjectHeader, MetaBytes), ReadError> {
    let header = read_header(file)?;
    let mut internal = vec![0u8; header.internal_len as usize];
    let mut head = vec![0u8; header.header_len as usize];
    file.read_exact_at(&mut internal, header.meta_offset())?;
    file.read_exact_at(
        &mut head,
        header.meta_offset() + u64::from(header.internal_len),
    )?;
    if meta_hash(&internal, &head) != header.meta_hash {
        return Err(ReadError::Corrupt("bad meta checksum"));
    }
    Ok((header, (internal, head)))
}

/// Reads the whole body in chunks and checks its checksum; returns it when `keep` is set.
pub(crate) fn verify_body(
    file: &File,
    header: &ObjectHeader,
    keep: bool,
) -> Result<Option<Bytes>, ReadError> {
    let mut hasher = Xxh3Default::new();
    let mut kept = BytesMut::new();
    if keep {
        kept.reserve(usize::try_from(header.body_len).unwrap_or(0));
    }
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    while pos < header.body_len {
        let n = usize::try_from((header.body_len - pos).min(CHUNK as u64)).unwrap_or(CHUNK);
        file.read_exact_at(&mut buf[..n], header.body_offset() + pos)?;
        hasher.update(&buf[..n]);
        if keep {
            kept.extend_from_slice(&buf[..n]);
        }
        pos += n as u64;
    }
    // Nothing may follow the body (the length check already covers this; belt and braces for
    // a file that grew between the two reads).
    let mut extra = [0u8; 1];
    if file.read_at(&mut extra, header.file_len())? != 0 {
        return Err(ReadError::Corrupt("trailing bytes"));
    }
    if hasher.digest() != header.body_hash {
        return Err(ReadError::Corrupt("bad body checksum"));
    }
    Ok(keep.then(|| kept.freeze()))
}
