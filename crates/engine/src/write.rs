//! The write path: decode on one thread, write on this one, hash on a third; hold the first
//! chunk back until the image has proven itself, then read everything back to verify.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

use sha2::{Digest, Sha256};

use crate::bmap::{Bmap, RangeHashes};
use crate::buffer::AlignedBuf;
use crate::format::Format;
use crate::hash::to_hex;
use crate::image::Image;
use crate::pipeline::{join, Chunk, Decoding, CHUNK, POOL};
use crate::progress::{CancelToken, Phase, Progress};
use crate::size::SizeKind;
use crate::target::Target;
use crate::verify::compare;
use crate::Error;

/// How to write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// The SHA-256 the image must have: of the decompressed image or of the file as stored.
    pub expected_sha256: Option<[u8; 32]>,
    /// The SHA-256 the decompressed image must have (a catalog's `extract_sha256`).
    pub image_sha256: Option<[u8; 32]>,
    /// The SHA-256 the file as stored must have (a catalog's `image_download_sha256`).
    pub stored_sha256: Option<[u8; 32]>,
    /// Read the target back and compare after writing.
    pub verify: bool,
    /// Write (and verify) only the blocks this map names; the rest of the target keeps
    /// what it held. Its ranges' checksums, when it has them, are checked before the
    /// first chunk is committed.
    pub map: Option<Bmap>,
    /// Without a map: work one out from the image's partition table and filesystem
    /// metadata as they stream past, and skip what it already knows to be unused.
    pub map_as_it_streams: bool,
    /// Discard (BLKDISCARD) the skipped ranges on a device that takes it.
    pub discard: bool,
}

/// Which bytes the expected SHA-256 matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumMatch {
    /// The decompressed image, as written.
    Image,
    /// The compressed file as downloaded.
    StoredFile,
}

/// What a successful write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReport {
    /// Image bytes written.
    pub bytes: u64,
    /// Which SHA-256 given matched, when one was given.
    pub checksum: Option<ChecksumMatch>,
    /// SHA-256 of the decompressed image, when one was computed.
    pub image_sha256: Option<String>,
    /// Whether the target was read back and compared.
    pub verified: bool,
    /// Whether the target was read back with O_DIRECT (otherwise its cache was dropped first).
    pub bypassed_cache: bool,
    /// Whether the kernel re-read the partition table.
    pub partitions_reread: bool,
    /// Bytes written to the target (all of `bytes` without a map).
    pub written: u64,
    /// Bytes read back and compared.
    pub verified_bytes: u64,
    /// Bytes discarded (with `discard`, on a device that takes it).
    pub discarded: u64,
}

/// Writes `image` to `target`. On any failure or cancellation the target is left so it cannot
/// pass for a good image (see [`Target::scrub_after_failure`]).
pub fn write(
    image: Image,
    target: &Target,
    options: &WriteOptions,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<WriteReport, Error> {
    if let Err(e) = check_before_writing(&image, target).and_then(|()| check_map(&image, options)) {
        target.abandon();
        return Err(e);
    }
    if let Err(e) = target.prepare() {
        target.scrub_after_failure();
        return Err(e);
    }
    let result = write_and_verify(image, target, options, cancel, progress);
    if result.is_err() {
        target.scrub_after_failure();
    }
    result
}

/// Everything that can be refused before a single byte is written.
fn check_before_writing(image: &Image, target: &Target) -> Result<(), Error> {
    target.check_not_source(image.identity(), &image.input().to_string())?;
    if let (Some(capacity), Some(size)) = (target.size(), image.size()) {
        if let Some(at_least) = size.lower_bound().filter(|&n| n > capacity) {
            return Err(Error::ImageTooLarge {
                path: target.path().to_owned(),
                image: at_least,
                exact: size.kind == SizeKind::Exact,
                target: capacity,
            });
        }
    }
    if image
        .size()
        .is_some_and(|s| s.kind == SizeKind::Exact && s.bytes == 0)
    {
        return Err(Error::EmptyImage);
    }
    Ok(())
}

/// With a map whose image size is not the image's, nothing is written.
fn check_map(image: &Image, options: &WriteOptions) -> Result<(), Error> {
    let (Some(map), Some(size)) = (&options.map, image.size()) else {
        return Ok(());
    };
    if size.kind == SizeKind::Exact {
        map.check_size(size.bytes)?;
    }
    Ok(())
}

fn write_and_verify(
    image: Image,
    target: &Target,
    options: &WriteOptions,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<WriteReport, Error> {
    let reopen = image.reopen_args();
    let mut written = write_stream(image, target, options, cancel, progress)?;

    check_published(options, &written)?;
    let checksum = match options.expected_sha256 {
        None => None,
        Some(expected) => Some(check_sha256(expected, &written)?),
    };
    progress(Progress {
        phase: Phase::Finish,
        bytes_done: written.len,
        bytes_total: Some(written.len),
    });
    let first_parts = written.parts.first().cloned().unwrap_or_default();
    for (start, end) in first_parts {
        target.write_at(&written.first[start..end], start as u64)?;
    }
    target.ensure_len(written.len)?;
    target.sync()?;

    let mut verified_bytes = 0;
    if options.verify {
        target.drop_cache();
        let bad_chunk = read_back(target, &mut written, cancel, progress)?;
        verified_bytes = written.written;
        if let Some(index) = bad_chunk {
            // Bytes outside the map are not the image's: only a full image pins it down.
            let reopened = reopen
                .filter(|_| options.map.is_none() && !options.map_as_it_streams)
                .map(|(input, open_as)| Image::open(&input, open_as));
            return Err(locate_mismatch(reopened, target, index, cancel));
        }
    }
    Ok(WriteReport {
        bytes: written.len,
        checksum,
        image_sha256: written.decoded_sha256.map(|d| to_hex(&d)),
        verified: options.verify,
        bypassed_cache: target.reads_bypass_cache(),
        partitions_reread: target.reread_partitions(),
        written: written.written,
        verified_bytes,
        discarded: written.discarded,
    })
}

/// The parts of the chunk at `offset` (`len` bytes) to write, as `(start, end)` within
/// it: all of it without a map, else where it meets the map's ranges.
pub(crate) fn pieces(map: Option<&Bmap>, offset: u64, len: usize) -> Vec<(usize, usize)> {
    let Some(map) = map else {
        return vec![(0, len)];
    };
    let end = offset + len as u64;
    let first = map.ranges.partition_point(|r| map.span(r).1 <= offset);
    map.ranges[first..]
        .iter()
        .map(|r| map.span(r))
        .take_while(|&(a, _)| a < end)
        .map(|(a, b)| {
            (
                (a.max(offset) - offset) as usize,
                (b.min(end) - offset) as usize,
            )
        })
        .filter(|(a, b)| a < b)
        .collect()
}

/// The error for the first range whose bytes (hashed as they streamed past) do not have
/// the checksum the map gives them, if one does not.
fn check_ranges(map: &Bmap, digests: Vec<Option<Vec<u8>>>) -> Result<(), Error> {
    let bad = map
        .ranges
        .iter()
        .zip(digests)
        .find(|(r, got)| r.digest.is_some() && r.digest != *got);
    let Some((r, _)) = bad else {
        return Ok(());
    };
    let (a, b) = map.span(r);
    Err(Error::Bmap {
        what: "given".into(),
        detail: format!(
            "blocks {}-{} (bytes {a}..{b}) of the image do not have the checksum the map gives \
             them: the map belongs to another image, or the image is damaged. Nothing was \
             written to the start of the target",
            r.first, r.last
        ),
    })
}

/// What the streaming phase leaves behind: everything but the first chunk is on the target.
struct Written {
    len: u64,
    /// Bytes written (or, for the first chunk, to be written): the mapped ones.
    written: u64,
    /// Bytes discarded.
    discarded: u64,
    /// Discards are asked for, and the device has not turned one down.
    discards: bool,
    first: AlignedBuf,
    first_len: usize,
    /// A fast hash of every chunk as written, for the read-back comparison.
    chunk_sums: Vec<u64>,
    /// The parts of each chunk written (`(start, end)` within it).
    parts: Vec<Vec<(usize, usize)>>,
    decoded_sha256: Option<[u8; 32]>,
    stored_sha256: Option<[u8; 32]>,
}

fn write_stream(
    image: Image,
    target: &Target,
    options: &WriteOptions,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<Written, Error> {
    let total = image.size().map(|s| s.bytes);
    let image_exact = image.size().is_some_and(|s| s.kind == SizeKind::Exact);
    let raw = image.format() == Format::Raw;
    let want_stored = options.expected_sha256.is_some() || options.stored_sha256.is_some();
    let want_sha256 = want_stored || options.image_sha256.is_some();
    let hash_stored = want_stored && !raw;
    let decoding = Decoding::start(image, hash_stored, 0, cancel);
    let hashing = want_sha256.then(|| spawn_hasher(decoding.returns()));
    let map = options.map.as_ref();
    let mut checks = map.and_then(|m| Some(RangeHashes::new(m, m.checksum?)));
    let mut streaming = (map.is_none() && options.map_as_it_streams)
        .then(|| crate::usage::StreamMap::new(total.filter(|_| image_exact)));
    let mut written = Written {
        len: 0,
        written: 0,
        discarded: 0,
        discards: options.discard,
        first: AlignedBuf::new(CHUNK),
        first_len: 0,
        chunk_sums: Vec::new(),
        parts: Vec::new(),
        decoded_sha256: None,
        stored_sha256: None,
    };

    let outcome = (|| {
        while let Some(chunk) = decoding.next()? {
            if let Some(capacity) = target.size().filter(|&c| chunk.end() > c) {
                return Err(Error::ImageTooLarge {
                    path: target.path().to_owned(),
                    image: chunk.end(),
                    exact: false,
                    target: capacity,
                });
            }
            let parts = match &mut streaming {
                Some(stream) => {
                    stream.feed(chunk.offset, chunk.data());
                    stream.pieces(chunk.offset, chunk.len)
                }
                None => pieces(map, chunk.offset, chunk.len),
            };
            let mut sum = xxhash_rust::xxh3::Xxh3::new();
            for &(a, b) in &parts {
                let data = &chunk.data()[a..b];
                sum.update(data);
                written.written += (b - a) as u64;
                if let Some(checks) = &mut checks {
                    checks.feed(chunk.offset + a as u64, data);
                }
                if chunk.offset != 0 {
                    target.write_at(data, chunk.offset + a as u64)?;
                }
            }
            written.chunk_sums.push(sum.digest());
            // What this chunk skipped (not the held-back first one), discarded when asked.
            if written.discards && chunk.offset != 0 {
                let mut at = 0;
                for &(a, b) in parts.iter().chain(std::iter::once(&(chunk.len, chunk.len))) {
                    if a > at {
                        let len = (a - at) as u64;
                        // Whole 4 KiB blocks only; a device that refuses stops the asking.
                        let start = chunk.offset + at as u64;
                        if start % 4096 == 0 && len % 4096 == 0 {
                            if target.discard(start, len)? {
                                written.discarded += len;
                            } else {
                                written.discards = false;
                                break;
                            }
                        }
                    }
                    at = b;
                }
            }
            written.parts.push(parts);
            if chunk.offset == 0 {
                written.first[..chunk.len].copy_from_slice(chunk.data());
                written.first_len = chunk.len;
            }
            written.len = chunk.end();
            progress(Progress {
                phase: Phase::Write,
                bytes_done: written.len,
                bytes_total: total,
            });
            match &hashing {
                Some((tx, _)) => {
                    let _ = tx.send(chunk);
                }
                None => decoding.recycle(chunk.buf),
            }
        }
        Ok(())
    })();
    // Closing the hasher's channel lets it finish whatever happened.
    let decoded_sha256 = hashing.map(|(tx, handle)| {
        drop(tx);
        join(handle)
    });
    let summary = decoding.finish(outcome)?;
    if summary.len == 0 {
        return Err(Error::EmptyImage);
    }
    if let Some(map) = map {
        map.check_size(summary.len)?;
    }
    if let (Some(map), Some(checks)) = (map, checks) {
        check_ranges(map, checks.finish())?;
    }
    written.decoded_sha256 = decoded_sha256;
    // A raw image is stored as it decodes.
    written.stored_sha256 = if raw {
        decoded_sha256
    } else {
        summary.stored_sha256
    };
    Ok(written)
}

/// Hashes chunks on a thread of its own (SHA-256 is slower than xz decoding on small
/// machines) and returns their buffers to the pool.
fn spawn_hasher(returns: SyncSender<AlignedBuf>) -> (SyncSender<Chunk>, JoinHandle<[u8; 32]>) {
    let (tx, rx): (SyncSender<Chunk>, Receiver<Chunk>) = sync_channel(POOL);
    let handle = thread::Builder::new()
        .name("cardsmith-sha256".into())
        .spawn(move || {
            let mut hasher = Sha256::new();
            for chunk in rx {
                hasher.update(chunk.data());
                let _ = returns.send(chunk.buf);
            }
            hasher.finalize().into()
        })
        .expect("spawning the hashing thread");
    (tx, handle)
}

/// Checks the hashes a publisher gave for the download and for the decompressed image.
fn check_published(options: &WriteOptions, written: &Written) -> Result<(), Error> {
    let pairs = [
        ("download", options.stored_sha256, written.stored_sha256),
        (
            "decompressed image",
            options.image_sha256,
            written.decoded_sha256,
        ),
    ];
    for (what, expected, actual) in pairs {
        if let Some(expected) = expected {
            if actual != Some(expected) {
                return Err(Error::PublishedChecksumMismatch {
                    what,
                    expected: to_hex(&expected),
                    actual: actual.map(|a| to_hex(&a)).unwrap_or_default(),
                });
            }
        }
    }
    Ok(())
}

fn check_sha256(expected: [u8; 32], written: &Written) -> Result<ChecksumMatch, Error> {
    if written.decoded_sha256 == Some(expected) {
        return Ok(ChecksumMatch::Image);
    }
    if written.stored_sha256 == Some(expected) {
        return Ok(ChecksumMatch::StoredFile);
    }
    Err(Error::ChecksumMismatch {
        expected: to_hex(&expected),
        decoded: written
            .decoded_sha256
            .map(|d| to_hex(&d))
            .unwrap_or_default(),
        stored: written.stored_sha256.map(|d| to_hex(&d)),
    })
}

/// Reads every chunk back (with a map, its mapped parts) and compares its fast hash;
/// returns the first chunk that differs.
fn read_back(
    target: &Target,
    written: &mut Written,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<Option<usize>, Error> {
    let buf = &mut written.first;
    for (index, expected) in written.chunk_sums.iter().enumerate() {
        cancel.check()?;
        let offset = (index * CHUNK) as u64;
        let len = (written.len - offset).min(CHUNK as u64) as usize;
        let mut sum = xxhash_rust::xxh3::Xxh3::new();
        for &(a, b) in &written.parts[index] {
            // Each part starts on a block boundary, so the aligned buffer serves as it is.
            let got = target.read_at(buf, b - a, offset + a as u64)?;
            if got < b - a {
                return Ok(Some(index));
            }
            sum.update(&buf[..b - a]);
        }
        if sum.digest() != *expected {
            return Ok(Some(index));
        }
        progress(Progress {
            phase: Phase::Verify,
            bytes_done: offset + len as u64,
            bytes_total: Some(written.len),
        });
    }
    Ok(None)
}

/// Pins a read-back difference in chunk `index` down to a byte by decoding the image again,
/// when it can be read again; otherwise reports the chunk's range.
fn locate_mismatch(
    reopened: Option<Result<Image, Error>>,
    target: &Target,
    index: usize,
    cancel: &CancelToken,
) -> Error {
    let start = (index * CHUNK) as u64;
    if let Some(Ok(image)) = reopened {
        if let Err(e) = compare(image, target, start, cancel, &mut |_| {}) {
            return e;
        }
    }
    Error::VerifyMismatch {
        path: target.path().to_owned(),
        offset: None,
        detail: format!(
            "somewhere in bytes {start}..{} (the image could not be read again to pin it down)",
            start + CHUNK as u64
        ),
    }
}
