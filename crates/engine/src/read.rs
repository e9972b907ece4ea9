//! Reading a card back into an image file: the device read with O_DIRECT (so the medium,
//! not the page cache, is copied), hashed as it goes, the file flushed before it counts.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::buffer::AlignedBuf;
use crate::hash::to_hex;
use crate::image::FileIdentity;
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
    // Only a regular file may be replaced: never a device, never the source itself.
    match fs::metadata(out) {
        Ok(meta) if !meta.is_file() => {
            return Err(Error::NotATarget {
                path: out.to_owned(),
            })
        }
        Ok(_) if !force => {
            return Err(Error::TargetExists {
                path: out.to_owned(),
            })
        }
        _ => {}
    }
    let open_err = |source| Error::Open {
        path: out.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(out)
        .map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    // The same file, or a file stored on the device being read, is refused before it is
    // emptied.
    source.check_not_source(Some(FileIdentity::of(&meta)), &out.display().to_string())?;
    let result = file
        .set_len(0)
        .map_err(open_err)
        .and_then(|()| copy(source, file, out, cancel, progress));
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
            if let Some(total) = total.filter(|&t| offset < t) {
                return Err(Error::read(
                    source.path().display().to_string(),
                    offset,
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the device ended early, {} bytes short", total - offset),
                    ),
                ));
            }
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
