//! The write path: decode on one thread, write on this one, hash on a third; hold the first
//! chunk back until the image has proven itself, then read everything back to verify.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::bmap::{Bmap, RangeHashes};
use crate::buffer::AlignedBuf;
use crate::format::Format;
use crate::hash::to_hex;
use crate::image::{Image, Input, OpenAs};
use crate::pipeline::{join, Chunk, Decoding, CANCEL_POLL, CHUNK, POOL};
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
    /// Say so ([`Step::Stalled`]) when a target has not finished a request for this long.
    pub stall: Option<std::time::Duration>,
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
    let mut own = None;
    let run = write_many(
        image,
        vec![target],
        options,
        cancel,
        &mut |_, step| match step {
            Step::Progress(p) => progress(p),
            Step::Finished(result, _) => own = Some(result),
            Step::Stopped(_) | Step::Stalled(_) => {}
        },
    );
    match (own, run) {
        (Some(result), _) => result,
        (None, Err(e)) => Err(e),
        (None, Ok(())) => unreachable!("write_many finishes every target or fails"),
    }
}

/// What happens to one target of [`write_many`], as it happens. Every target comes back
/// exactly once, through `Finished` or `Stopped`, so its owner can close it (and, say,
/// power the card off) while the others are still written.
#[derive(Debug)]
pub enum Step<T> {
    /// How far this target is.
    Progress(Progress),
    /// This target is done: written (and verified), or failed for a reason of its own (an
    /// I/O error, too small, a read-back difference), and then left as
    /// [`Target::leftover`] says.
    Finished(Result<WriteReport, Error>, T),
    /// The whole run stopped (the image failed, or it was cancelled) before this target
    /// was done; it was left as [`Target::leftover`] says.
    Stopped(T),
    /// This target has been busy with one request for this long (said once per request
    /// that takes longer than [`WriteOptions::stall`]): the card has stalled.
    Stalled(std::time::Duration),
}

/// Writes one decoded stream of `image` to every target at once: one decoder, one hasher,
/// one writer thread per target, all fed from the same pool of buffers, so memory does not
/// grow with the number of targets and the slowest target sets the pace. Each target is
/// checked, prepared, written, committed and read back on its own; one that fails is left
/// unbootable (see [`Target::scrub_after_failure`]) and the others carry on. `on` hears
/// each target's progress and, as soon as it is done, its outcome with the target itself,
/// on the calling thread.
///
/// `Err`: the image itself failed (it could not be decoded, a checksum or the block map
/// did not match) or the run was cancelled; every target without an outcome of its own by
/// then was left unbootable too, and came back through [`Step::Stopped`].
pub fn write_many<T: Borrow<Target> + Send>(
    image: Image,
    targets: Vec<T>,
    options: &WriteOptions,
    cancel: &CancelToken,
    on: &mut dyn FnMut(usize, Step<T>),
) -> Result<(), Error> {
    if let Err(e) = check_map(&image, options) {
        for (index, target) in targets.into_iter().enumerate() {
            target.borrow().abandon();
            on(index, Step::Stopped(target));
        }
        return Err(e);
    }
    let count = targets.len();
    let mut live = Vec::new();
    for (index, target) in targets.into_iter().enumerate() {
        let t = target.borrow();
        let ready = check_before_writing(&image, t)
            .inspect_err(|_| t.abandon())
            .and_then(|()| t.prepare().inspect_err(|_| t.scrub_after_failure()));
        match ready {
            Ok(()) => live.push((index, target)),
            Err(e) => on(index, Step::Finished(Err(e), target)),
        }
    }
    if live.is_empty() {
        return Ok(());
    }
    let total = image.size().map(|s| s.bytes);
    let reopen = image
        .reopen_args()
        .filter(|_| options.map.is_none() && !options.map_as_it_streams);
    // Since when each writer has been waiting for its device (0: it is not).
    let busy: Vec<AtomicU64> = (0..count).map(|_| AtomicU64::new(0)).collect();
    thread::scope(|scope| {
        let (tell, heard) = channel();
        let mut feeds = Vec::new();
        let busy = &busy;
        for (index, target) in live {
            let (pieces_tx, pieces_rx) = sync_channel(POOL);
            let (verdict_tx, verdict_rx) = sync_channel(1);
            feeds.push(Feed {
                pieces: Some(pieces_tx),
                verdict: verdict_tx,
            });
            let writer = Writer {
                target,
                options,
                cancel,
                total,
                reopen: reopen.clone(),
                index,
                tell: tell.clone(),
                busy: &busy[index],
            };
            thread::Builder::new()
                .name(format!("cardsmith-write-{index}"))
                .spawn_scoped(scope, move || writer.run(pieces_rx, verdict_rx))
                .expect("spawning a writer thread");
        }
        drop(tell);
        let distributor = thread::Builder::new()
            .name("cardsmith-fan-out".into())
            .spawn_scoped(scope, || distribute(image, options, cancel, feeds))
            .expect("spawning the fan-out thread");
        // A writer stops with the run only when it is cancelled (or the image failed, which
        // the distributor says): a cancel after the last chunk, during the read-backs, is
        // the run's too.
        let mut stopped = false;
        let mut said = vec![0u64; count];
        loop {
            match heard.recv_timeout(STALL_POLL) {
                Ok((index, step)) => {
                    stopped |= matches!(step, Step::Stopped(_));
                    on(index, step);
                }
                Err(RecvTimeoutError::Timeout) => {
                    let Some(limit) = options.stall else { continue };
                    for (index, since) in busy.iter().enumerate() {
                        let since = since.load(Ordering::Relaxed);
                        let waited = Duration::from_millis(now_ms().saturating_sub(since));
                        if since != 0 && since != said[index] && waited >= limit {
                            said[index] = since;
                            on(index, Step::Stalled(waited));
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let streamed = distributor
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match streamed {
            Ok(()) if stopped => Err(Error::Cancelled),
            streamed => streamed,
        }
    })
}

/// The way from the fan-out to one writer: pieces while the image streams (`None` once
/// the writer has gone), then the verdict on the whole image.
struct Feed {
    pieces: Option<SyncSender<Arc<Piece>>>,
    verdict: SyncSender<Option<Arc<Plan>>>,
}

/// A piece of the decoded image shared by every writer and the hasher; its buffer goes
/// back to the pool when the last of them lets go.
struct Piece {
    chunk: Option<Chunk>,
    /// The parts of it to write, `(start, end)` within it.
    parts: Vec<(usize, usize)>,
    returns: SyncSender<AlignedBuf>,
}

impl Piece {
    fn chunk(&self) -> &Chunk {
        self.chunk
            .as_ref()
            .expect("a piece holds its chunk until dropped")
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        if let Some(chunk) = self.chunk.take() {
            // The decoder may already be gone; the buffer is then simply freed.
            let _ = self.returns.send(chunk.buf);
        }
    }
}

/// What every writer needs once the image has streamed past and proven itself.
struct Plan {
    len: u64,
    /// Bytes written to each target: the mapped ones.
    written: u64,
    /// The first chunk, held back until now, and the parts of it to write.
    first: AlignedBuf,
    /// A fast hash of every chunk's written parts, for the read-back comparison.
    chunk_sums: Vec<u64>,
    /// The parts of each chunk written (`(start, end)` within it).
    parts: Vec<Vec<(usize, usize)>>,
    checksum: Option<ChecksumMatch>,
    decoded_sha256: Option<[u8; 32]>,
}

/// Decodes the image once and hands every piece to every writer still going; then judges
/// the whole image (checksums, the map) and tells each writer whether to commit.
fn distribute(
    image: Image,
    options: &WriteOptions,
    cancel: &CancelToken,
    mut feeds: Vec<Feed>,
) -> Result<(), Error> {
    let (verdict, result) = match stream(image, options, cancel, &mut feeds) {
        Ok(plan) => (plan.map(Arc::new), Ok(())),
        Err(e) => (None, Err(e)),
    };
    for feed in &feeds {
        // A writer that has gone has its own outcome already.
        let _ = feed.verdict.send(verdict.clone());
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

/// Streams the image past every writer: works out which parts of each chunk to write,
/// hashes them for the read-back, checks the map's range checksums, and keeps the first
/// chunk back. `Ok(None)`: every writer has gone (each with an outcome of its own).
fn stream(
    image: Image,
    options: &WriteOptions,
    cancel: &CancelToken,
    feeds: &mut [Feed],
) -> Result<Option<Plan>, Error> {
    let total = image.size().map(|s| s.bytes);
    let image_exact = image.size().is_some_and(|s| s.kind == SizeKind::Exact);
    let raw = image.format() == Format::Raw;
    let want_stored = options.expected_sha256.is_some() || options.stored_sha256.is_some();
    let want_sha256 = want_stored || options.image_sha256.is_some();
    let hash_stored = want_stored && !raw;
    let decoding = Decoding::start(image, hash_stored, 0, cancel);
    let hashing = want_sha256.then(spawn_hasher);
    let map = options.map.as_ref();
    let mut checks = map.and_then(|m| Some(RangeHashes::new(m, m.checksum?)));
    let mut streaming = (map.is_none() && options.map_as_it_streams)
        .then(|| crate::usage::StreamMap::new(total.filter(|_| image_exact)));
    let mut plan = Plan {
        len: 0,
        written: 0,
        first: AlignedBuf::new(CHUNK),
        chunk_sums: Vec::new(),
        parts: Vec::new(),
        checksum: None,
        decoded_sha256: None,
    };

    let outcome = (|| {
        while let Some(chunk) = decoding.next()? {
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
                plan.written += (b - a) as u64;
                if let Some(checks) = &mut checks {
                    checks.feed(chunk.offset + a as u64, data);
                }
            }
            plan.chunk_sums.push(sum.digest());
            plan.parts.push(parts.clone());
            if chunk.offset == 0 {
                plan.first[..chunk.len].copy_from_slice(chunk.data());
            }
            plan.len = chunk.end();
            let piece = Arc::new(Piece {
                chunk: Some(chunk),
                parts,
                returns: decoding.returns(),
            });
            let mut going = 0;
            for feed in feeds.iter_mut() {
                let sent = match &feed.pieces {
                    Some(tx) => tx.send(piece.clone()).is_ok(),
                    None => false,
                };
                if sent {
                    going += 1;
                } else {
                    feed.pieces = None;
                }
            }
            if going == 0 {
                return Ok(false);
            }
            if let Some((tx, _)) = &hashing {
                let _ = tx.send(piece);
            }
        }
        Ok(true)
    })();
    for feed in feeds.iter_mut() {
        // The end of the pieces: each writer now waits for the verdict.
        feed.pieces = None;
    }
    // Closing the hasher's channel lets it finish whatever happened.
    let decoded_sha256 = hashing.map(|(tx, handle)| {
        drop(tx);
        join(handle)
    });
    if outcome.as_ref().is_ok_and(|&going| !going) {
        // Nobody left to write to: the decoder stops by itself at its next chunk.
        return Ok(None);
    }
    let summary = decoding.finish(outcome.map(|_| ()))?;
    if summary.len == 0 {
        return Err(Error::EmptyImage);
    }
    if let Some(map) = map {
        map.check_size(summary.len)?;
    }
    if let (Some(map), Some(checks)) = (map, checks) {
        check_ranges(map, checks.finish())?;
    }
    // A raw image is stored as it decodes.
    let stored_sha256 = if raw {
        decoded_sha256
    } else {
        summary.stored_sha256
    };
    check_published(options, stored_sha256, decoded_sha256)?;
    plan.checksum = match options.expected_sha256 {
        None => None,
        Some(expected) => Some(check_sha256(expected, stored_sha256, decoded_sha256)?),
    };
    plan.decoded_sha256 = decoded_sha256;
    Ok(Some(plan))
}

/// One target's writer: its share of the stream, then the commit and the read-back; it
/// hands its target back to the calling thread at the end.
struct Writer<'a, T> {
    target: T,
    options: &'a WriteOptions,
    cancel: &'a CancelToken,
    total: Option<u64>,
    /// How to decode the image again to pin a read-back difference down.
    reopen: Option<(Input, OpenAs)>,
    index: usize,
    tell: Sender<(usize, Step<T>)>,
    /// Since when (ms, [`now_ms`]) this writer has been waiting for its device; 0: not.
    busy: &'a AtomicU64,
}

/// How often the calling thread looks for a stalled target while it hears nothing.
const STALL_POLL: Duration = Duration::from_millis(250);

/// Milliseconds since the epoch, for the stall watch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Bytes read back at a time: the read-back buffer is per target, so it stays small.
const READ_BACK: usize = 1 << 20;

impl<T: Borrow<Target>> Writer<'_, T> {
    fn run(self, pieces: Receiver<Arc<Piece>>, verdict: Receiver<Option<Arc<Plan>>>) {
        let outcome = self.write(pieces, verdict);
        if outcome.is_err() {
            self.target.borrow().scrub_after_failure();
        }
        let step = match outcome {
            Ok(report) => Step::Finished(Ok(report), self.target),
            Err(Some(e)) => Step::Finished(Err(e), self.target),
            Err(None) => Step::Stopped(self.target),
        };
        let _ = self.tell.send((self.index, step));
    }

    /// Runs one request to the device, marked busy meanwhile so that a stall is seen.
    fn device<R>(&self, request: impl FnOnce(&Target) -> R) -> R {
        self.busy.store(now_ms().max(1), Ordering::Relaxed);
        let done = request(self.target.borrow());
        self.busy.store(0, Ordering::Relaxed);
        done
    }

    /// Tells the calling thread how far this target is.
    fn progress(&self, phase: Phase, bytes_done: u64, bytes_total: Option<u64>) {
        let p = Progress {
            phase,
            bytes_done,
            bytes_total,
        };
        let _ = self.tell.send((self.index, Step::Progress(p)));
    }

    /// `Err(None)`: stopped with the whole run (cancelled, or the image failed).
    fn write(
        &self,
        pieces: Receiver<Arc<Piece>>,
        verdict: Receiver<Option<Arc<Plan>>>,
    ) -> Result<WriteReport, Option<Error>> {
        let own = |e: Error| match e {
            Error::Cancelled => None,
            e => Some(e),
        };
        let target = self.target.borrow();
        let mut discards = self.options.discard;
        let mut discarded = 0;
        loop {
            self.cancel.check().map_err(own)?;
            let piece = match pieces.recv_timeout(CANCEL_POLL) {
                Ok(piece) => piece,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let chunk = piece.chunk();
            if let Some(capacity) = target.size().filter(|&c| chunk.end() > c) {
                return Err(Some(Error::ImageTooLarge {
                    path: target.path().to_owned(),
                    image: chunk.end(),
                    exact: false,
                    target: capacity,
                }));
            }
            if chunk.offset != 0 {
                for &(a, b) in &piece.parts {
                    self.device(|t| t.write_at(&chunk.data()[a..b], chunk.offset + a as u64))?;
                }
                if discards {
                    let (n, more) = discard_gaps(target, chunk.offset, chunk.len, &piece.parts)?;
                    discarded += n;
                    discards = more;
                }
            }
            self.progress(Phase::Write, chunk.end(), self.total);
        }
        let Ok(Some(plan)) = verdict.recv() else {
            return Err(None);
        };
        self.progress(Phase::Finish, plan.len, Some(plan.len));
        for &(a, b) in plan.parts.first().into_iter().flatten() {
            self.device(|t| t.write_at(&plan.first[a..b], a as u64))?;
        }
        target.ensure_len(plan.len)?;
        self.device(|t| t.sync())?;
        let mut verified_bytes = 0;
        if self.options.verify {
            target.drop_cache();
            if let Some(index) = self.read_back(&plan).map_err(own)? {
                let reopened = self
                    .reopen
                    .as_ref()
                    .map(|(input, open_as)| Image::open(input, *open_as));
                return Err(own(locate_mismatch(reopened, target, index, self.cancel)));
            }
            verified_bytes = plan.written;
        }
        Ok(WriteReport {
            bytes: plan.len,
            checksum: plan.checksum,
            image_sha256: plan.decoded_sha256.map(|d| to_hex(&d)),
            verified: self.options.verify,
            bypassed_cache: target.reads_bypass_cache(),
            partitions_reread: target.reread_partitions(),
            written: plan.written,
            verified_bytes,
            discarded,
        })
    }

    /// Reads every chunk back (with a map, its mapped parts) and compares its fast hash;
    /// returns the first chunk that differs.
    fn read_back(&self, plan: &Plan) -> Result<Option<usize>, Error> {
        let mut buf = AlignedBuf::new(READ_BACK);
        for (index, expected) in plan.chunk_sums.iter().enumerate() {
            self.cancel.check()?;
            let offset = (index * CHUNK) as u64;
            let len = (plan.len - offset).min(CHUNK as u64) as usize;
            let mut sum = xxhash_rust::xxh3::Xxh3::new();
            for &(a, b) in &plan.parts[index] {
                // Each part starts on a block boundary, and so does every step through it.
                for at in (a..b).step_by(READ_BACK) {
                    let want = (b - at).min(READ_BACK);
                    let got = self
                        .device(|t| t.read_at(&mut buf, want, offset + at as u64))
                        .map_err(|e| crate::verify::unreadable(self.target.borrow(), e))?;
                    if got < want {
                        return Ok(Some(index));
                    }
                    sum.update(&buf[..want]);
                }
            }
            if sum.digest() != *expected {
                return Ok(Some(index));
            }
            self.progress(Phase::Verify, offset + len as u64, Some(plan.len));
        }
        Ok(None)
    }
}

/// Discards what the chunk at `offset` (`len` bytes) skipped, in whole 4 KiB blocks:
/// the bytes discarded, and whether to go on asking (not once the device turned one down).
fn discard_gaps(
    target: &Target,
    offset: u64,
    len: usize,
    parts: &[(usize, usize)],
) -> Result<(u64, bool), Error> {
    let mut discarded = 0;
    let mut at = 0;
    for &(a, b) in parts.iter().chain(std::iter::once(&(len, len))) {
        let start = offset + at as u64;
        let gap = a.saturating_sub(at) as u64;
        if gap > 0 && start % 4096 == 0 && gap % 4096 == 0 {
            if !target.discard(start, gap)? {
                return Ok((discarded, false));
            }
            discarded += gap;
        }
        at = b;
    }
    Ok((discarded, true))
}

/// Hashes the stream on a thread of its own (SHA-256 is slower than xz decoding on small
/// machines); each piece's buffer goes back to the pool once the writers are done with it
/// too.
fn spawn_hasher() -> (SyncSender<Arc<Piece>>, JoinHandle<[u8; 32]>) {
    let (tx, rx): (SyncSender<Arc<Piece>>, Receiver<Arc<Piece>>) = sync_channel(POOL);
    let handle = thread::Builder::new()
        .name("cardsmith-sha256".into())
        .spawn(move || {
            let mut hasher = Sha256::new();
            for piece in rx {
                hasher.update(piece.chunk().data());
            }
            hasher.finalize().into()
        })
        .expect("spawning the hashing thread");
    (tx, handle)
}

/// Checks the hashes a publisher gave for the download and for the decompressed image.
fn check_published(
    options: &WriteOptions,
    stored: Option<[u8; 32]>,
    decoded: Option<[u8; 32]>,
) -> Result<(), Error> {
    let pairs = [
        ("download", options.stored_sha256, stored),
        ("decompressed image", options.image_sha256, decoded),
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

fn check_sha256(
    expected: [u8; 32],
    stored: Option<[u8; 32]>,
    decoded: Option<[u8; 32]>,
) -> Result<ChecksumMatch, Error> {
    if decoded == Some(expected) {
        return Ok(ChecksumMatch::Image);
    }
    if stored == Some(expected) {
        return Ok(ChecksumMatch::StoredFile);
    }
    Err(Error::ChecksumMismatch {
        expected: to_hex(&expected),
        decoded: decoded.map(|d| to_hex(&d)).unwrap_or_default(),
        stored: stored.map(|d| to_hex(&d)),
    })
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
