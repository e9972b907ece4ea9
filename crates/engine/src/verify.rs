//! Comparing an image with what is on a target, byte for byte, reading the target with
//! O_DIRECT so the page cache cannot answer for the medium.

use crate::buffer::AlignedBuf;
use crate::image::Image;
use crate::pipeline::{Decoding, CHUNK};
use crate::progress::{CancelToken, Phase, Progress};
use crate::target::{Target, TargetKind};
use crate::Error;

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Bytes compared: the whole decoded image.
    pub bytes: u64,
    /// Whether the target was read with O_DIRECT (otherwise its cache was dropped first).
    pub bypassed_cache: bool,
}

/// Compares the decoded `image` with the start of `target`. A device may be larger than the
/// image; a file must be exactly as long.
pub fn verify(
    image: Image,
    target: &Target,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<VerifyReport, Error> {
    let bytes = compare(image, target, 0, cancel, progress)?;
    Ok(VerifyReport {
        bytes,
        bypassed_cache: target.reads_bypass_cache(),
    })
}

/// The index of the first byte where `a` and `b` differ, comparing their common length.
pub(crate) fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    let n = a.len().min(b.len());
    if a[..n] == b[..n] {
        return None;
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}

pub(crate) fn mismatch_at(target: &Target, offset: u64, why: &str) -> Error {
    Error::VerifyMismatch {
        path: target.path().to_owned(),
        offset: Some(offset),
        detail: format!("{why}: first difference at byte {offset} (0x{offset:x})"),
    }
}

/// Compares from the chunk holding `skip` onwards; returns the image's length.
pub(crate) fn compare(
    image: Image,
    target: &Target,
    skip: u64,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<u64, Error> {
    let total = image.size().map(|s| s.bytes);
    let decoding = Decoding::start(image, false, skip, cancel);
    let mut theirs = AlignedBuf::new(CHUNK);
    let outcome = (|| {
        while let Some(chunk) = decoding.next()? {
            let got = target.read_at(&mut theirs, chunk.len, chunk.offset)?;
            if let Some(i) = first_difference(chunk.data(), &theirs[..got]) {
                return Err(mismatch_at(
                    target,
                    chunk.offset + i as u64,
                    "the content differs",
                ));
            }
            if got < chunk.len {
                let end = chunk.offset + got as u64;
                return Err(mismatch_at(
                    target,
                    end,
                    "the target ends before the image does",
                ));
            }
            progress(Progress {
                phase: Phase::Verify,
                bytes_done: chunk.end(),
                bytes_total: total,
            });
            decoding.recycle(chunk.buf);
        }
        Ok(())
    })();
    let len = decoding.finish(outcome)?.len;
    if len == 0 {
        return Err(Error::EmptyImage);
    }
    if let (TargetKind::File, Some(file_len)) = (target.kind(), target.size()) {
        if file_len > len {
            return Err(mismatch_at(
                target,
                len,
                "the file is longer than the image",
            ));
        }
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::first_difference;

    #[test]
    fn finds_the_first_differing_byte() {
        assert_eq!(first_difference(b"abcdef", b"abcdef"), None);
        assert_eq!(first_difference(b"abcdef", b"abXdeY"), Some(2));
        assert_eq!(first_difference(b"abc", b"ab"), None);
    }
}
