//! Comparing an image with what is on a target, byte for byte, reading the target with
//! O_DIRECT so the page cache cannot answer for the medium.

use crate::bmap::Bmap;
use crate::buffer::AlignedBuf;
use crate::image::Image;
use crate::pipeline::{Decoding, CHUNK};
use crate::progress::{CancelToken, Phase, Progress};
use crate::target::{Target, TargetKind};
use crate::Error;

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The decoded image's length.
    pub bytes: u64,
    /// Bytes compared: all of `bytes`, or with a map the mapped ones.
    pub compared: u64,
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
    verify_blocks(image, target, Blocks::All, cancel, progress)
}

/// Which bytes a verification compares.
pub enum Blocks<'a> {
    /// Every byte of the image.
    All,
    /// Those the map names (a card written with it keeps other bytes).
    Map(&'a Bmap),
    /// Those the image's own metadata says are used, worked out as it streams past.
    AsItStreams,
}

/// Compares the decoded `image` with `target` where `blocks` says.
pub fn verify_blocks(
    image: Image,
    target: &Target,
    blocks: Blocks<'_>,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<VerifyReport, Error> {
    if let (Blocks::Map(map), Some(size)) = (&blocks, image.size()) {
        if size.kind == crate::size::SizeKind::Exact {
            map.check_size(size.bytes)?;
        }
    }
    let (bytes, compared) = compare_blocks(image, target, 0, blocks, cancel, progress)?;
    Ok(VerifyReport {
        bytes,
        compared,
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
    compare_blocks(image, target, skip, Blocks::All, cancel, progress).map(|(len, _)| len)
}

/// [`compare`] where `blocks` says; returns the image's length and the bytes compared.
fn compare_blocks(
    image: Image,
    target: &Target,
    skip: u64,
    blocks: Blocks<'_>,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<(u64, u64), Error> {
    let total = image.size().map(|s| s.bytes);
    let exact = image
        .size()
        .is_some_and(|s| s.kind == crate::size::SizeKind::Exact);
    let decoding = Decoding::start(image, false, skip, cancel);
    let mut theirs = AlignedBuf::new(CHUNK);
    let mut stream = matches!(blocks, Blocks::AsItStreams)
        .then(|| crate::usage::StreamMap::new(total.filter(|_| exact)));
    let mut compared = 0u64;
    let outcome = (|| {
        while let Some(chunk) = decoding.next()? {
            let parts = match (&blocks, &mut stream) {
                (_, Some(stream)) => {
                    stream.feed(chunk.offset, chunk.data());
                    stream.pieces(chunk.offset, chunk.len)
                }
                (Blocks::Map(map), None) => {
                    crate::write::pieces(Some(map), chunk.offset, chunk.len)
                }
                _ => vec![(0, chunk.len)],
            };
            for (a, b) in parts {
                let at = chunk.offset + a as u64;
                let got = target
                    .read_at(&mut theirs, b - a, at)
                    .map_err(|e| unreadable(target, e))?;
                if let Some(i) = first_difference(&chunk.data()[a..b], &theirs[..got]) {
                    return Err(mismatch_at(target, at + i as u64, "the content differs"));
                }
                if got < b - a {
                    let end = at + got as u64;
                    return Err(mismatch_at(
                        target,
                        end,
                        "the target ends before the image does",
                    ));
                }
                compared += (b - a) as u64;
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
    if let Blocks::Map(map) = &blocks {
        map.check_size(len)?;
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
    Ok((len, compared))
}

/// A read of the target that failed while verifying it: a sector that cannot be read back
/// is a verification failure; a card that stopped answering stops the verifying.
pub(crate) fn unreadable(target: &Target, e: Error) -> Error {
    match e {
        Error::Read { offset, source, .. } => Error::VerifyUnreadable {
            path: target.path().to_owned(),
            offset,
            source,
        },
        Error::StoppedAnswering {
            path,
            offset,
            source,
            ..
        } => Error::StoppedAnswering {
            path,
            doing: "verifying",
            offset,
            source,
        },
        e => e,
    }
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
