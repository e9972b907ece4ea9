//! A compressed or streamed image decoded into an unnamed, sparse temporary file, for what
//! needs random access to it (reading its filesystems): runs of zeros are skipped, not
//! stored, and the file vanishes when closed, also when the process is killed.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::image::Image;
use crate::progress::CancelToken;
use crate::Error;

/// Room left on the temporary folder's disk, for everything else on it.
const MARGIN: u64 = 512 << 20;
const BLOCK: usize = 1 << 20;

/// The decoded image: a file with no name, removed when dropped.
pub struct Unpacked {
    /// The unnamed file holding the decoded image.
    pub file: File,
    /// The decoded size.
    pub len: u64,
    /// The bytes that are not zero (what the file takes on disk).
    pub stored: u64,
}

impl Unpacked {
    /// A path to the unnamed file while it is open, for what opens files by name (this
    /// process, or a tool it runs: e2fsck, resize2fs).
    pub fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.file.as_raw_fd()
        ))
    }
}

/// Decodes `image` into an unnamed file in `dir`, storing only blocks that are not all
/// zeros, and stops with [`Error::NoSpace`] before the data would leave less than 512 MiB
/// free there.
pub fn unpack(image: Image, dir: &Path, cancel: &CancelToken) -> Result<Unpacked, Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
        .map_err(|source| Error::Open {
            path: dir.to_owned(),
            source,
        })?;
    let free = crate::read::free_space(dir).unwrap_or(u64::MAX);
    let room = free.saturating_sub(MARGIN);
    let place = || PathBuf::from(format!("a temporary file in {}", dir.display()));
    let mut buf = vec![0u8; BLOCK];
    let mut len = 0u64;
    let mut stored = 0u64;
    image.decode(false, |decoded| loop {
        cancel.check()?;
        let n = decoded.fill(&mut buf)?;
        let block = &buf[..n];
        if block.iter().any(|&b| b != 0) {
            stored += n as u64;
            if stored > room {
                return Err(Error::NoSpace {
                    path: place(),
                    needed: stored,
                    free,
                });
            }
            file.write_all_at(block, len)
                .map_err(|source| Error::Write {
                    path: place(),
                    offset: len,
                    source,
                })?;
        }
        len += n as u64;
        if n < buf.len() {
            return Ok(());
        }
    })?;
    file.set_len(len).map_err(|source| Error::Write {
        path: place(),
        offset: len,
        source,
    })?;
    Ok(Unpacked { file, len, stored })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Input, OpenAs};
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_compressed_image_unpacks_sparse_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut raw = vec![0u8; 8 << 20];
        raw[5] = 1;
        raw[(6 << 20) + 7] = 2;
        let packed = dir.path().join("img.zst");
        let mut enc = zstd::Encoder::new(File::create(&packed).unwrap(), 3).unwrap();
        enc.write_all(&raw).unwrap();
        enc.finish().unwrap();
        let image = Image::open(&Input::Path(packed), OpenAs::Detect).unwrap();
        let got = unpack(image, dir.path(), &CancelToken::new()).unwrap();
        assert_eq!((got.len, got.stored), (8 << 20, 2 << 20));
        let mut back = vec![0u8; raw.len()];
        got.file.read_exact_at(&mut back, 0).unwrap();
        assert!(back == raw, "the same bytes");
        let blocks = got.file.metadata().unwrap().blocks() * 512;
        assert!(
            blocks <= 3 << 20,
            "zeros take no room: {blocks} bytes stored"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no named file is left behind: {names:?}");
    }
}
