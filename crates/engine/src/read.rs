//! Reading a card back into an image file: the device read with O_DIRECT (so the medium,
//! not the page cache, is copied), hashed as it goes, the file flushed before it counts.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::buffer::AlignedBuf;
use crate::hash::to_hex;
use crate::pipeline::CHUNK;
use crate::progress::{CancelToken, Phase, Progress};
use crate::target::Target;
use crate::Error;

/// What a read produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReport {
    pub bytes: u64,
    /// SHA-256 of the image as written to the file.
    pub sha256: String,
}

/// Copies all of `source` (a device or file opened with [`Target::open_for_read`]) into
/// the new file `out`. An existing `out` is replaced only with `force`. On any failure or
/// cancellation the partial file is removed.
pub fn read(
    source: &Target,
    out: &Path,
    force: bool,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<ReadReport, Error> {
    if source.path() == out {
        return Err(Error::SameStorage {
            source_desc: source.path().display().to_string(),
            target: out.to_owned(),
        });
    }
    let open_err = |source| Error::Open {
        path: out.to_owned(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let file = options.open(out).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Error::TargetExists {
            path: out.to_owned(),
        },
        _ => open_err(e),
    })?;
    let result = copy(source, file, out, cancel, progress);
    if result.is_err() {
        let _ = fs::remove_file(out);
    }
    result
}

fn copy(
    source: &Target,
    mut file: File,
    out: &Path,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<ReadReport, Error> {
    let total = source.size();
    let mut buf = AlignedBuf::new(CHUNK);
    let mut hasher = Sha256::new();
    let mut offset = 0u64;
    loop {
        cancel.check()?;
        let want = total.map_or(CHUNK as u64, |t| (t - offset).min(CHUNK as u64)) as usize;
        if want == 0 {
            break;
        }
        let got = source.read_at(&mut buf, want, offset)?;
        if got == 0 {
            break;
        }
        let data = &buf[..got];
        hasher.update(data);
        file.write_all(data).map_err(|e| Error::Write {
            path: out.to_owned(),
            offset,
            source: e,
        })?;
        offset += got as u64;
        progress(Progress {
            phase: Phase::Read,
            bytes_done: offset,
            bytes_total: total,
        });
    }
    file.sync_all().map_err(|e| Error::Write {
        path: out.to_owned(),
        offset,
        source: e,
    })?;
    Ok(ReadReport {
        bytes: offset,
        sha256: to_hex(&hasher.finalize()),
    })
}
