//! The file operations whose failure poisons the writer.
//!
//! Routing every segment write and fsync through here keeps the fault injector in
//! one place and makes it obvious which calls can leave the disk in an unknown
//! state.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::format::{encode_segment_header, segment_path, segment_tmp_path};
use crate::options::FaultInjector;
use crate::LogError;

/// Writes all of `buf`, unless the injector cuts the write short.
pub(crate) fn write_all(faults: &FaultInjector, file: &mut File, buf: &[u8]) -> io::Result<()> {
    let (admitted, fail) = faults.admit_write(buf.len());
    file.write_all(&buf[..admitted])?;
    if fail {
        return Err(io::Error::other(format!(
            "injected write failure after {admitted} of {} bytes",
            buf.len()
        )));
    }
    Ok(())
}

/// fdatasync, unless the injector says it fails.
pub(crate) fn sync_data(faults: &FaultInjector, file: &File) -> io::Result<()> {
    faults.check_fsync()?;
    file.sync_data()
}

/// fsync of a directory, so that created, renamed and removed entries persist.
pub(crate) fn sync_dir(faults: &FaultInjector, dir: &Path) -> io::Result<()> {
    faults.check_fsync()?;
    File::open(dir)?.sync_all()
}

/// Creates the segment starting at `first_lsn` atomically: the header is written
/// and synced under a temporary name, then renamed into place and the directory
/// synced. A crash therefore leaves either no segment or one with a whole header.
/// Returns the segment opened for appending.
pub(crate) fn create_segment(
    faults: &FaultInjector,
    dir: &Path,
    first_lsn: u64,
) -> Result<File, LogError> {
    let tmp = segment_tmp_path(dir, first_lsn);
    let path = segment_path(dir, first_lsn);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .map_err(|e| LogError::io("creating segment", &tmp, e))?;
    write_all(faults, &mut file, &encode_segment_header(first_lsn))
        .map_err(|e| LogError::io("writing segment header to", &tmp, e))?;
    sync_data(faults, &file).map_err(|e| LogError::io("syncing", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| LogError::io("renaming into place", &tmp, e))?;
    sync_dir(faults, dir).map_err(|e| LogError::io("syncing directory", dir, e))?;
    OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| LogError::io("opening segment for append", &path, e))
}
