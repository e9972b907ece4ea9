//! The decoder thread shared by write, verify and hash: it fills pooled buffers with the
//! decoded image and hands them on in order, so decoding overlaps with I/O and hashing.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::{self, JoinHandle};

use crate::buffer::AlignedBuf;
use crate::image::Image;
use crate::progress::CancelToken;
use crate::Error;

/// Bytes per chunk: large enough for devices to stream at full speed with O_DIRECT, small
/// enough that cancelling stops within a fraction of a second.
pub const CHUNK: usize = 4 << 20;

/// Buffers in flight between the decoder and its consumer(s).
pub const POOL: usize = 4;

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

/// Starts decoding `image` into buffers taken from `free`. Chunks wholly before `skip` are
/// decoded but not sent. The thread stops when the image ends, when `cancel` fires, or when
/// the consumer drops its receiver.
pub fn spawn_decoder(
    image: Image,
    free: Receiver<AlignedBuf>,
    hash_stored: bool,
    skip: u64,
    cancel: CancelToken,
) -> (Receiver<Chunk>, JoinHandle<Result<DecodeSummary, Error>>) {
    let (tx, rx) = sync_channel(crate::pipeline::POOL);
    let handle = thread::Builder::new()
        .name("cardsmith-decode".into())
        .spawn(move || {
            let (len, stored_sha256) = image.decode(hash_stored, |decoded| {
                let mut offset = 0u64;
                let mut spare: Option<AlignedBuf> = None;
                loop {
                    cancel.check()?;
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
    (rx, handle)
}

/// Waits for the decoder thread; a panic there is a bug, so it is passed on.
pub fn join<T>(handle: JoinHandle<T>) -> T {
    match handle.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
