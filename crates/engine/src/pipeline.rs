//! The decoder thread shared by write, verify and hash: it fills pooled buffers with the
//! decoded image and hands them on in order, so decoding overlaps with I/O and hashing.

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::buffer::{AlignedBuf, Pool};
use crate::image::Image;
use crate::progress::CancelToken;
use crate::Error;

/// Bytes per chunk: large enough for devices to stream at full speed with O_DIRECT, small
/// enough that cancelling stops within a fraction of a second.
pub const CHUNK: usize = 4 << 20;

/// Buffers in flight between the decoder and its consumer(s).
pub const POOL: usize = 4;

/// How often a consumer waiting for the next chunk looks at the cancel token, so a stalled
/// source (a pipe, a slow download) cannot keep a cancelled job alive.
pub(crate) const CANCEL_POLL: Duration = Duration::from_millis(100);

/// A piece of the decoded image, `len` bytes at `offset`.
pub struct Chunk {
    pub buf: AlignedBuf,
    pub len: usize,
    pub offset: u64,
}

impl Chunk {
    pub fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn end(&self) -> u64 {
        self.offset + self.len as u64
    }
}

/// What the decoder thread reports when it is done.
pub struct DecodeSummary {
    /// Decoded bytes (all of the image, unless the consumer stopped early).
    pub len: u64,
    /// SHA-256 of the file as stored, when asked for.
    pub stored_sha256: Option<[u8; 32]>,
}

/// A running decoder thread and the consumer's ends of its channels.
pub struct Decoding {
    chunks: Receiver<Chunk>,
    returns: SyncSender<AlignedBuf>,
    thread: JoinHandle<Result<DecodeSummary, Error>>,
    cancel: CancelToken,
}

impl Decoding {
    /// Starts decoding `image` into a fresh pool of buffers. Chunks wholly before `skip` are
    /// decoded but not sent. The thread stops when the image ends, when `cancel` fires, or
    /// when the consumer goes away.
    pub fn start(image: Image, hash_stored: bool, skip: u64, cancel: &CancelToken) -> Decoding {
        let pool = Pool::new(POOL, CHUNK);
        let (tx, chunks) = sync_channel(POOL);
        let free = pool.free;
        let token = cancel.clone();
        let thread = thread::Builder::new()
            .name("cardsmith-decode".into())
            .spawn(move || {
                let (len, stored_sha256) = image.decode(hash_stored, |decoded| {
                    let mut offset = 0u64;
                    let mut spare: Option<AlignedBuf> = None;
                    loop {
                        token.check()?;
                        let Some(mut buf) = spare.take().or_else(|| free.recv().ok()) else {
                            return Ok(offset);
                        };
                        let len = decoded.fill(&mut buf[..CHUNK])?;
                        if len == 0 {
                            return Ok(offset);
                        }
                        let chunk = Chunk { buf, len, offset };
                        offset = chunk.end();
                        if chunk.end() <= skip {
                            spare = Some(chunk.buf);
                        } else if tx.send(chunk).is_err() {
                            return Ok(offset);
                        }
                        if len < CHUNK {
                            return Ok(offset);
                        }
                    }
                })?;
                Ok(DecodeSummary { len, stored_sha256 })
            })
            .expect("spawning the decoder thread");
        Decoding {
            chunks,
            returns: pool.returns,
            thread,
            cancel: cancel.clone(),
        }
    }

    /// The next chunk in order; `Error::Cancelled` once the token fires (checked before every
    /// chunk and every 100 ms while waiting); `None` once the decoder has finished (or
    /// failed: `finish` tells which).
    pub fn next(&self) -> Result<Option<Chunk>, Error> {
        loop {
            self.cancel.check()?;
            match self.chunks.recv_timeout(CANCEL_POLL) {
                Ok(chunk) => return Ok(Some(chunk)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
    }

    /// Hands a buffer back for the decoder to fill again.
    pub fn recycle(&self, buf: AlignedBuf) {
        // The decoder may already be gone; the buffer is then simply freed.
        let _ = self.returns.send(buf);
    }

    /// A handle for another thread (the hasher) to give buffers back.
    pub fn returns(&self) -> SyncSender<AlignedBuf> {
        self.returns.clone()
    }

    /// Ends the decoding after the consumer's loop: the consumer's own error wins, then the
    /// decoder's. A cancelled job does not wait for a decoder blocked on a stalled source;
    /// that thread ends by itself when its read returns.
    pub fn finish(self, consumer: Result<(), Error>) -> Result<DecodeSummary, Error> {
        drop(self.chunks);
        drop(self.returns);
        if self.cancel.is_cancelled() {
            consumer?;
            return Err(Error::Cancelled);
        }
        let decoded = join(self.thread);
        consumer?;
        decoded
    }
}

/// Waits for a pipeline thread; a panic there is a bug, so it is passed on.
pub fn join<T>(handle: JoinHandle<T>) -> T {
    match handle.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
