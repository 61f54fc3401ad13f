//! Snapshot files, kept in the log's directory.
//!
//! A snapshot holds the state produced by every record up to and including its
//! LSN, so after it is written the log can drop segments up to that LSN
//! ([`crate::Log::truncate_prefix`]). The content is opaque here: the layer above
//! streams it through a `Write`.
//!
//! File `snap-{lsn:020}.snap` is the content followed by a 32-byte trailer:
//!
//! ```text
//! lsn u64 LE | content length u64 LE | crc32c of content u32 LE
//! | format version u32 LE | magic "MRDNSNAP"
//! ```
//!
//! The trailer comes last so the content can be streamed without knowing its size.
//! A snapshot is written as `snap-{lsn:020}.tmp`, fsynced, renamed and the directory
//! fsynced, so a `.snap` file is always complete unless the disk damaged it. The
//! previous snapshot is kept as well, so an operator has a fallback when the newest
//! one turns out damaged; loading does not fall back on its own, because the log
//! may no longer reach back to the older snapshot's LSN and silently starting from
//! it could lose writes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::format::{parse_lsn_name, read_u32, read_u64};
use crate::LogError;

const SNAPSHOT_PREFIX: &str = "snap-";
const SNAPSHOT_SUFFIX: &str = ".snap";
const SNAPSHOT_TMP_SUFFIX: &str = ".tmp";
const SNAPSHOT_MAGIC: [u8; 8] = *b"MRDNSNAP";
const SNAPSHOT_FORMAT_VERSION: u32 = 1;
/// Size of the trailer at the end of every snapshot file.
pub const SNAPSHOT_TRAILER_BYTES: u64 = 32;
const SNAPSHOT_WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// What [`write_snapshot`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The final `.snap` file.
    pub path: PathBuf,
    /// The LSN the snapshot covers.
    pub lsn: u64,
    /// Bytes of content (trailer excluded).
    pub content_bytes: u64,
    /// Older snapshots deleted (all but the previous one).
    pub snapshots_removed: usize,
}

/// The path of the snapshot covering `lsn`.
pub fn snapshot_path(dir: &Path, lsn: u64) -> PathBuf {
    dir.join(format!("{SNAPSHOT_PREFIX}{lsn:020}{SNAPSHOT_SUFFIX}"))
}

fn snapshot_tmp_path(dir: &Path, lsn: u64) -> PathBuf {
    dir.join(format!("{SNAPSHOT_PREFIX}{lsn:020}{SNAPSHOT_TMP_SUFFIX}"))
}

/// Writes a snapshot covering every record up to and including `lsn`.
///
/// `write_content` streams the content; it is checksummed on the way. When this
/// returns `Ok`, the snapshot is durable and snapshots older than the previous
/// one are gone. If `write_content` fails, the temporary file is removed and its
/// error is returned as [`LogError::Io`].
pub fn write_snapshot<F>(dir: &Path, lsn: u64, write_content: F) -> Result<SnapshotInfo, LogError>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    fs::create_dir_all(dir).map_err(|e| LogError::io("creating directory", dir, e))?;
    let tmp = snapshot_tmp_path(dir, lsn);
    let path = snapshot_path(dir, lsn);
    let result = write_tmp(&tmp, lsn, write_content);
    let content_bytes = match result {
        Ok(bytes) => bytes,
        Err(err) => {
            // The temporary file is worthless now; a failure to remove it is
            // harmless because leftovers are removed at the next load.
            let _ = fs::remove_file(&tmp);
            return Err(err);
        }
    };
    fs::rename(&tmp, &path).map_err(|e| LogError::io("renaming into place", &tmp, e))?;
    sync_dir(dir)?;
    let snapshots_removed = remove_older_snapshots(dir, lsn)?;
    Ok(SnapshotInfo {
        path,
        lsn,
        content_bytes,
        snapshots_removed,
    })
}

fn write_tmp<F>(tmp: &Path, lsn: u64, write_content: F) -> Result<u64, LogError>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(tmp)
        .map_err(|e| LogError::io("creating", tmp, e))?;
    let mut writer = CrcWriter {
        inner: BufWriter::with_capacity(SNAPSHOT_WRITE_BUFFER_BYTES, file),
        crc: 0,
        bytes: 0,
    };
    write_content(&mut writer).map_err(|e| LogError::io("writing snapshot content to", tmp, e))?;
    let CrcWriter {
        inner: mut buffered,
        crc,
        bytes,
    } = writer;
    buffered
        .write_all(&encode_trailer(lsn, bytes, crc))
        .map_err(|e| LogError::io("writing snapshot trailer to", tmp, e))?;
    let file = buffered
        .into_inner()
        .map_err(|e| LogError::io("writing", tmp, e.into_error()))?;
    file.sync_all()
        .map_err(|e| LogError::io("syncing", tmp, e))?;
    Ok(bytes)
}

/// Loads the newest snapshot in `dir`, verifying its trailer and checksum.
/// Returns `None` when there is none. Leftover temporary files from an
/// interrupted [`write_snapshot`] are deleted first.
///
/// A damaged newest snapshot is [`LogError::Corrupt`]; older snapshots are not
/// tried (see the module documentation).
pub fn load_latest_snapshot(dir: &Path) -> Result<Option<(u64, Vec<u8>)>, LogError> {
    if !dir.exists() {
        return Ok(None);
    }
    let snapshots = list_snapshots(dir, true)?;
    let Some(&lsn) = snapshots.iter().max() else {
        return Ok(None);
    };
    let path = snapshot_path(dir, lsn);
    let content = read_verified(&path, lsn)?;
    Ok(Some((lsn, content)))
}

fn read_verified(path: &Path, lsn: u64) -> Result<Vec<u8>, LogError> {
    let mut file = File::open(path).map_err(|e| LogError::io("opening", path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| LogError::io("reading metadata of", path, e))?
        .len();
    if file_len < SNAPSHOT_TRAILER_BYTES {
        return Err(LogError::corrupt(
            path,
            0,
            format!(
                "snapshot file is {file_len} bytes, shorter than its {SNAPSHOT_TRAILER_BYTES}-byte trailer"
            ),
        ));
    }
    let capacity = usize::try_from(file_len).map_err(|_| {
        LogError::corrupt(path, 0, "snapshot is larger than this machine can address")
    })?;
    let mut bytes = Vec::with_capacity(capacity);
    (&mut file)
        .take(file_len)
        .read_to_end(&mut bytes)
        .map_err(|e| LogError::io("reading", path, e))?;
    if bytes.len() as u64 != file_len {
        return Err(LogError::io(
            "reading",
            path,
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "snapshot shrank while being read",
            ),
        ));
    }

    let trailer_at = bytes.len() - SNAPSHOT_TRAILER_BYTES as usize;
    let trailer_offset = trailer_at as u64;
    let trailer = &bytes[trailer_at..];
    if trailer[24..32] != SNAPSHOT_MAGIC {
        return Err(LogError::corrupt(
            path,
            trailer_offset + 24,
            "snapshot trailer magic is missing: the file is not a complete Meridian snapshot",
        ));
    }
    let version = read_u32(trailer, 20);
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(LogError::corrupt(
            path,
            trailer_offset + 20,
            format!(
                "snapshot format version {version} is not supported (this build reads version {SNAPSHOT_FORMAT_VERSION})"
            ),
        ));
    }
    let trailer_lsn = read_u64(trailer, 0);
    if trailer_lsn != lsn {
        return Err(LogError::corrupt(
            path,
            trailer_offset,
            format!("snapshot trailer declares lsn {trailer_lsn} but the file name declares {lsn}"),
        ));
    }
    let content_len = read_u64(trailer, 8);
    if content_len != trailer_offset {
        return Err(LogError::corrupt(
            path,
            trailer_offset + 8,
            format!(
                "snapshot trailer declares {content_len} content bytes but the file holds {trailer_offset}"
            ),
        ));
    }
    let stored_crc = read_u32(trailer, 16);
    bytes.truncate(trailer_at);
    let computed_crc = crc32c::crc32c(&bytes);
    if stored_crc != computed_crc {
        return Err(LogError::corrupt(
            path,
            0,
            format!(
                "snapshot content checksum mismatch over {content_len} bytes (stored {stored_crc:#010x}, \
                 computed {computed_crc:#010x})"
            ),
        ));
    }
    Ok(bytes)
}

fn encode_trailer(lsn: u64, content_bytes: u64, crc: u32) -> [u8; SNAPSHOT_TRAILER_BYTES as usize] {
    let mut trailer = [0u8; SNAPSHOT_TRAILER_BYTES as usize];
    trailer[0..8].copy_from_slice(&lsn.to_le_bytes());
    trailer[8..16].copy_from_slice(&content_bytes.to_le_bytes());
    trailer[16..20].copy_from_slice(&crc.to_le_bytes());
    trailer[20..24].copy_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    trailer[24..32].copy_from_slice(&SNAPSHOT_MAGIC);
    trailer
}

/// LSNs of the `.snap` files in `dir`; with `remove_tmp`, deletes `.tmp` leftovers.
fn list_snapshots(dir: &Path, remove_tmp: bool) -> Result<Vec<u64>, LogError> {
    let entries = fs::read_dir(dir).map_err(|e| LogError::io("listing", dir, e))?;
    let mut lsns = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("listing", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if let Some(lsn) = parse_lsn_name(name, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX) {
            lsns.push(lsn);
        } else if remove_tmp && parse_lsn_name(name, SNAPSHOT_PREFIX, SNAPSHOT_TMP_SUFFIX).is_some()
        {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| LogError::io("removing", &path, e))?;
        }
    }
    Ok(lsns)
}

/// Deletes snapshots older than `lsn` except the newest of them.
fn remove_older_snapshots(dir: &Path, lsn: u64) -> Result<usize, LogError> {
    let mut older: Vec<u64> = list_snapshots(dir, false)?
        .into_iter()
        .filter(|&other| other < lsn)
        .collect();
    older.sort_unstable_by(|a, b| b.cmp(a));
    let mut removed = 0;
    for &old in older.iter().skip(1) {
        let path = snapshot_path(dir, old);
        fs::remove_file(&path).map_err(|e| LogError::io("removing", &path, e))?;
        removed += 1;
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io("syncing directory", dir, e))
}

/// Passes writes through and keeps a crc32c and a byte count of what the inner
/// writer accepted.
struct CrcWriter<W> {
    inner: W,
    crc: u32,
    bytes: u64,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_writer_matches_one_shot_crc() {
        let mut writer = CrcWriter {
            inner: Vec::new(),
            crc: 0,
            bytes: 0,
        };
        writer.write_all(b"hello ").unwrap();
        writer.write_all(b"world").unwrap();
        assert_eq!(writer.crc, crc32c::crc32c(b"hello world"));
        assert_eq!(writer.bytes, 11);
    }

    #[test]
    fn trailer_layout_matches_the_documented_format() {
        let trailer = encode_trailer(5, 1000, 0xdead_beef);
        assert_eq!(read_u64(&trailer, 0), 5);
        assert_eq!(read_u64(&trailer, 8), 1000);
        assert_eq!(read_u32(&trailer, 16), 0xdead_beef);
        assert_eq!(read_u32(&trailer, 20), SNAPSHOT_FORMAT_VERSION);
        assert_eq!(&trailer[24..], b"MRDNSNAP");
    }
}
