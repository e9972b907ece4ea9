//! Page-aligned buffers for O_DIRECT I/O, allocated once per job and recycled.

use std::alloc::{self, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Alignment that satisfies O_DIRECT on every block device and filesystem we meet.
pub const ALIGN: usize = 4096;

/// A zero-initialised heap buffer whose start is [`ALIGN`]-aligned.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Box<[u8]>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only read, like a &[u8].
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `len` zeroed bytes; `len` is rounded up to a multiple of [`ALIGN`].
    pub fn new(len: usize) -> AlignedBuf {
        let len = round_up(len.max(ALIGN) as u64) as usize;
        let layout = Layout::from_size_align(len, ALIGN).expect("buffer size overflows");
        // SAFETY: layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, len }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid for len initialised bytes for the buffer's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len, ALIGN).expect("layout was valid at alloc");
        // SAFETY: allocated in `new` with this very layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) }
    }
}

/// Rounds up to the next multiple of [`ALIGN`].
pub fn round_up(n: u64) -> u64 {
    n.div_ceil(ALIGN as u64) * ALIGN as u64
}

/// A fixed set of buffers passed around the pipeline: whoever is done with one sends it back
/// through `returns`, and the producer takes the next from `free`. Memory stays at
/// `count * size` however large the image is.
pub struct Pool {
    pub free: Receiver<AlignedBuf>,
    pub returns: SyncSender<AlignedBuf>,
}

impl Pool {
    pub fn new(count: usize, size: usize) -> Pool {
        let (returns, free) = sync_channel(count);
        for _ in 0..count {
            returns
                .send(AlignedBuf::new(size))
                .expect("the receiver is alive here");
        }
        Pool { free, returns }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_zeroed_and_rounded() {
        let buf = AlignedBuf::new(5000);
        assert_eq!(buf.as_ptr() as usize % ALIGN, 0);
        assert_eq!(buf.len(), 8192);
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn pool_hands_out_exactly_its_buffers() {
        let pool = Pool::new(3, 4096);
        let taken: Vec<_> = (0..3).map(|_| pool.free.recv().unwrap()).collect();
        assert!(pool.free.try_recv().is_err());
        for buf in taken {
            pool.returns.send(buf).unwrap();
        }
        assert!(pool.free.try_recv().is_ok());
    }
}
