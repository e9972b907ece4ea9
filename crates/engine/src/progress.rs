//! What the engine tells its caller while it works, and how the caller tells it to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The stage a job is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Decoding the image and writing it to the target (the first chunk is held back).
    Write,
    /// Checking the image's checksum, writing the held-back first chunk, flushing.
    Finish,
    /// Reading the target back and comparing it with what was written.
    Verify,
    /// Hashing an image.
    Hash,
    /// Reading a device back into a file.
    Read,
}

impl Phase {
    /// The phase as the JSON output names it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Write => "write",
            Phase::Finish => "finish",
            Phase::Verify => "verify",
            Phase::Hash => "hash",
            Phase::Read => "read",
        }
    }
}

/// One progress report. Reported at most once per chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// What the job is doing.
    pub phase: Phase,
    /// Image bytes handled so far in this phase.
    pub bytes_done: u64,
    /// The image's size when it is known (exactly or as an estimate).
    pub bytes_total: Option<u64>,
}

/// A cheap, cloneable flag that stops a running job at the next chunk boundary.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that has not fired.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Fires it: every job holding a clone stops at its next chunk.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether it has fired.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(Cancelled)` once cancelled.
    pub fn check(&self) -> Result<(), crate::Error> {
        if self.is_cancelled() {
            Err(crate::Error::Cancelled)
        } else {
            Ok(())
        }
    }
}
