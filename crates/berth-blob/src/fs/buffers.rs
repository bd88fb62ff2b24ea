//! Block-aligned buffers for direct I/O, pooled so that large transfers reuse memory
//! that is already mapped instead of faulting in fresh pages.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Direct I/O wants buffer addresses, file offsets and lengths in whole logical
/// blocks; 4 KiB covers every common device.
pub(super) const ALIGN: usize = 4096;
/// One buffer: a large upload holds two (one filling, one being written), a large
/// download up to three (one being read, one queued, one being sent).
pub(super) const BUFFER: usize = 4 * 1024 * 1024;
/// Buffers kept for the next transfer.
const POOLED: usize = 6;
/// Buffers lent out at once, across all transfers (64 MiB). Past it, transfers go
/// through the page cache in small chunks: slower here, but memory stays bounded
/// however many large pushes and pulls run.
const BUDGET: usize = 16;

/// A `BUFFER`-sized, `ALIGN`-aligned region inside an ordinary `Vec`.
pub(super) struct AlignedBuffer {
    storage: Vec<u8>,
    start: usize,
}

impl AlignedBuffer {
    fn new() -> AlignedBuffer {
        let storage = vec![0u8; BUFFER + ALIGN];
        // Always < ALIGN for bytes; if it were not, direct I/O would fail with EINVAL
        // and the callers fall back to the page cache, which is still correct.
        let start = storage.as_ptr().align_offset(ALIGN).min(ALIGN);
        AlignedBuffer { storage, start }
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.storage[self.start..self.start + BUFFER]
    }

    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + BUFFER]
    }
}

/// Buffers shared by all transfers of one store.
#[derive(Clone, Default)]
pub(super) struct BufferPool(Arc<Mutex<PoolState>>);

struct PoolState {
    free: Vec<AlignedBuffer>,
    lent: usize,
    /// When a buffer was last taken or given back.
    last_used: Instant,
}

impl Default for PoolState {
    fn default() -> PoolState {
        PoolState {
            free: Vec::new(),
            lent: 0,
            last_used: Instant::now(),
        }
    }
}

impl BufferPool {
    /// A buffer, unless `BUDGET` buffers are out already.
    pub(super) fn try_take(&self) -> Option<AlignedBuffer> {
        let pooled = {
            let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if pool.lent >= BUDGET {
                return None;
            }
            pool.lent += 1;
            pool.last_used = Instant::now();
            pool.free.pop()
        };
        Some(pooled.unwrap_or_else(AlignedBuffer::new))
    }

    pub(super) fn give(&self, buffer: AlignedBuffer) {
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        pool.lent = pool.lent.saturating_sub(1);
        pool.last_used = Instant::now();
        if pool.free.len() < POOLED {
            pool.free.push(buffer);
        }
    }

    /// Frees the pooled buffers if none was taken or given back for `idle`; returns the
    /// bytes freed. A burst of large transfers leaves nothing behind once it is over.
    pub(super) fn release_idle(&self, idle: Duration) -> usize {
        let released = {
            let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if pool.last_used.elapsed() < idle {
                return 0;
            }
            std::mem::take(&mut pool.free)
        };
        released.len() * (BUFFER + ALIGN)
    }

    /// The first `len` bytes of `buffer` as `Bytes`, without copying; the buffer comes
    /// back to the pool when the last reference is dropped (after the socket write).
    pub(super) fn share(&self, buffer: AlignedBuffer, len: usize) -> Bytes {
        Bytes::from_owner(PooledBytes {
            buffer: Some(buffer),
            len: len.min(BUFFER),
            pool: self.clone(),
        })
    }
}

struct PooledBytes {
    buffer: Option<AlignedBuffer>,
    len: usize,
    pool: BufferPool,
}

impl AsRef<[u8]> for PooledBytes {
    fn as_ref(&self) -> &[u8] {
        match &self.buffer {
            Some(buffer) => &buffer.bytes()[..self.len],
            None => &[],
        }
    }
}

impl Drop for PooledBytes {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.give(buffer);
        }
    }
}

/// Opens `path` for direct I/O (reading, or writing when `write`).
#[cfg(target_os = "linux")]
pub(super) fn open_direct(path: &Path, write: bool) -> io::Result<File> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(OFlags::DIRECT.bits() as i32)
        .open(path)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn open_direct(_path: &Path, _write: bool) -> io::Result<File> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_lent_buffers_and_giving_back_restores_it() {
        let pool = BufferPool::default();
        let lent: Vec<AlignedBuffer> = (0..BUDGET).map_while(|_| pool.try_take()).collect();
        assert_eq!(lent.len(), BUDGET);
        assert!(pool.try_take().is_none(), "no buffer past the budget");
        let mut lent = lent.into_iter();
        let first = lent.next().unwrap();
        assert_eq!(
            first.bytes().as_ptr() as usize % ALIGN,
            0,
            "buffers are aligned"
        );
        let shared = pool.share(first, 10);
        assert!(pool.try_take().is_none(), "a shared buffer is still lent");
        drop(shared);
        assert!(
            pool.try_take().is_some(),
            "dropping the last reference gives it back"
        );
        lent.for_each(|buffer| pool.give(buffer));
        let pooled = pool.0.lock().unwrap().free.len();
        assert_eq!(pooled, POOLED, "only POOLED buffers are kept");
        assert_eq!(
            pool.release_idle(Duration::from_secs(60)),
            0,
            "not idle yet"
        );
        assert_eq!(pool.release_idle(Duration::ZERO), POOLED * (BUFFER + ALIGN));
        assert!(pool.0.lock().unwrap().free.is_empty());
    }
}
