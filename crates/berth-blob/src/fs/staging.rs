//! Appending upload bytes to a staging file.
//!
//! Small uploads go through the page cache. Large ones are copied into reused,
//! block-aligned buffers and written with direct I/O (`O_DIRECT`), which
//! skips the page cache: growing the page cache means touching memory the kernel has
//! not used lately, and on virtual machines that hand free memory back to the host
//! (free page reporting) every such page costs a trip to the host. Measured on this
//! project's 2-core VM, 1 GiB written and synced: 205 MB/s through fresh page cache,
//! 1.4 GB/s with direct I/O. A staged blob is read back at most once (publishing
//! renames it), so the page cache bought nothing here. While the pool's buffer budget
//! is spent, large uploads go through the page cache too.
//!
//! While earlier buffers are being written on the blocking pool, the next one fills
//! from the network, so the disk and the request overlap; a request's last writes are
//! still landing when it is answered (the upload's lock orders them before anything
//! that reads or extends the file).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::OwnedMutexGuard;
use tokio::task::JoinHandle;

use super::buffers::{ALIGN, BUFFER, BufferPool, open_direct};
use crate::{UploadState, UploadWriter};

/// Below this, bytes are written through the page cache: a small blob is not worth a
/// buffer, and the tail of a large one is not worth a padded block.
const DIRECT_MIN: usize = 256 * 1024;
/// Buffer writes one upload may have running at once. Each direct write waits for the
/// device; with two, a request rarely waits for one, and memory stays at three buffers.
const IN_FLIGHT: usize = 2;
/// After this many bytes, a large upload starts flushing to disk in the background, so
/// the fsync that publishes it finds little left to do.
const EARLY_SYNC: u64 = 32 * 1024 * 1024;

/// A staging file opened twice: through the page cache, and (when first needed) with
/// `O_DIRECT`.
struct StagingFile {
    path: PathBuf,
    cached: File,
    direct: OnceLock<Option<File>>,
    /// Cleared when the filesystem refuses direct I/O; the page cache takes over.
    direct_works: AtomicBool,
    /// The upload's lock, released when the writer and its last write are done.
    lock: Mutex<OwnedMutexGuard<StagedState>>,
}

impl StagingFile {
    /// Marks the staged bytes as incomplete: a write failed after the request that
    /// sent the bytes may already have been answered. The upload cannot be published.
    fn poison(&self) {
        self.lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lost_write = true;
    }

    fn direct(&self) -> Option<&File> {
        if !self.direct_works.load(Ordering::Relaxed) {
            return None;
        }
        self.direct
            .get_or_init(|| open_direct(&self.path, true).ok())
            .as_ref()
    }

    /// Writes `buf[lo..hi]` at file offset `base + lo`; `base` is block-aligned and
    /// `buf` starts on a block. The whole blocks in the range go direct; the partial
    /// blocks at either end (and short ranges) go through the page cache. Linux keeps
    /// the two coherent: a direct write flushes and drops cached pages it overlaps.
    fn write_region(&self, buf: &[u8], base: u64, lo: usize, hi: usize) -> io::Result<()> {
        let first_block = lo.next_multiple_of(ALIGN);
        let end_block = hi - hi % ALIGN;
        let direct = match self.direct() {
            Some(direct) if end_block > first_block && hi - lo >= DIRECT_MIN => direct,
            _ => return self.cached.write_all_at(&buf[lo..hi], base + lo as u64),
        };
        self.cached
            .write_all_at(&buf[lo..first_block], base + lo as u64)?;
        let whole = &buf[first_block..end_block];
        let at = base + first_block as u64;
        if let Err(e) = direct.write_all_at(whole, at) {
            if e.kind() != io::ErrorKind::InvalidInput {
                return Err(e);
            }
            // The device wants another alignment: stop trying, write it cached.
            tracing::debug!(path = %self.path.display(), "direct I/O refused; using the page cache");
            self.direct_works.store(false, Ordering::Relaxed);
            self.cached.write_all_at(whole, at)?;
        }
        self.cached
            .write_all_at(&buf[end_block..hi], base + end_block as u64)
    }
}

/// What the upload lock guards: whether the staged bytes can still be trusted.
#[derive(Default)]
pub(super) struct StagedState {
    pub(super) lost_write: bool,
}

/// Opens the staging file once the upload's earlier writes have landed (it waits for
/// the upload's lock): the file, and the lock to hold while writing.
pub(super) type Opening = JoinHandle<io::Result<(File, OwnedMutexGuard<StagedState>)>>;

enum Staged {
    /// Bytes may fill the first buffer meanwhile: a chunk starts hashing and filling
    /// while the previous chunk's last write is still landing.
    Opening(Opening),
    Open(Arc<StagingFile>),
    /// Opening failed; every later call fails the same way.
    Failed(io::ErrorKind, String),
}

/// Appends to a staging file from `offset` on.
pub(super) struct StagingWriter {
    path: PathBuf,
    staged: Staged,
    pool: BufferPool,
    /// Chunks kept as they came (no copy) while the upload is still small.
    pending: Vec<Bytes>,
    pending_len: usize,
    /// Where the next byte goes once it has left `pending` and `fill`.
    offset: u64,
    /// The buffer filling now; index 0 is file offset `fill_base` (block-aligned) and
    /// `fill[fill_lo..fill_hi]` holds bytes not yet written.
    fill: Option<super::buffers::AlignedBuffer>,
    fill_base: u64,
    fill_lo: usize,
    fill_hi: usize,
    /// Writes of earlier buffers, oldest first, each with where the file ends once
    /// it is done.
    in_flight: VecDeque<(JoinHandle<io::Result<()>>, u64)>,
    /// How far the file is written, and an early flush running beside the upload.
    written: u64,
    syncing: Option<JoinHandle<io::Result<()>>>,
}

impl StagingWriter {
    pub(super) fn new(path: PathBuf, opening: Opening, offset: u64, pool: BufferPool) -> Self {
        StagingWriter {
            path,
            staged: Staged::Opening(opening),
            pool,
            pending: Vec::new(),
            pending_len: 0,
            offset,
            fill: None,
            fill_base: 0,
            fill_lo: 0,
            fill_hi: 0,
            in_flight: VecDeque::new(),
            written: offset,
            syncing: None,
        }
    }

    /// The open staging file, waiting for it the first time.
    async fn file(&mut self) -> io::Result<Arc<StagingFile>> {
        if let Staged::Opening(task) = &mut self.staged {
            let opened = task.await.map_err(io::Error::other).and_then(|r| r);
            self.staged = match opened {
                Ok((cached, lock)) => Staged::Open(Arc::new(StagingFile {
                    path: self.path.clone(),
                    cached,
                    direct: OnceLock::new(),
                    direct_works: AtomicBool::new(true),
                    lock: Mutex::new(lock),
                })),
                Err(e) => Staged::Failed(e.kind(), e.to_string()),
            };
        }
        match &self.staged {
            Staged::Open(file) => Ok(file.clone()),
            Staged::Failed(kind, message) => Err(io::Error::new(*kind, message.clone())),
            Staged::Opening(_) => Err(io::Error::other("staging file is still opening")),
        }
    }

    /// Makes `buffer` the one filling, placed so that its index 0 is the start of the
    /// block holding the next byte.
    fn start_fill(&mut self, buffer: super::buffers::AlignedBuffer) {
        let in_block = (self.offset % ALIGN as u64) as usize;
        self.fill = Some(buffer);
        self.fill_base = self.offset - in_block as u64;
        self.fill_lo = in_block;
        self.fill_hi = in_block;
    }

    /// Copies `bytes` into aligned buffers, handing each full one to the disk. When the
    /// pool's budget is spent, the rest waits in `pending` for the page cache.
    async fn copy_in(&mut self, mut bytes: Bytes) -> io::Result<()> {
        while !bytes.is_empty() {
            let Some(buffer) = self.fill.as_mut() else {
                self.pending_len += bytes.len();
                self.pending.push(bytes);
                return Ok(());
            };
            let n = (BUFFER - self.fill_hi).min(bytes.len());
            buffer.bytes_mut()[self.fill_hi..self.fill_hi + n].copy_from_slice(&bytes[..n]);
            self.fill_hi += n;
            self.offset += n as u64;
            bytes = bytes.slice(n..);
            if self.fill_hi == BUFFER {
                self.submit_fill().await?;
                if let Some(next) = self.pool.try_take() {
                    self.start_fill(next);
                }
            }
        }
        Ok(())
    }

    /// Starts writing the filling buffer, once fewer than `IN_FLIGHT` writes run. The
    /// write gives the buffer back to the pool and poisons the upload if it fails.
    async fn submit_fill(&mut self) -> io::Result<()> {
        while self.in_flight.len() >= IN_FLIGHT {
            self.wait_oldest().await?;
        }
        if self.fill.is_none() {
            return Ok(());
        }
        let file = self.file().await?;
        let Some(buffer) = self.fill.take() else {
            return Ok(());
        };
        let pool = self.pool.clone();
        let (base, lo, hi) = (self.fill_base, self.fill_lo, self.fill_hi);
        let task = tokio::task::spawn_blocking(move || {
            let result = file.write_region(buffer.bytes(), base, lo, hi);
            pool.give(buffer);
            if result.is_err() {
                file.poison();
            }
            result
        });
        self.in_flight.push_back((task, base + hi as u64));
        Ok(())
    }

    async fn wait_oldest(&mut self) -> io::Result<()> {
        let Some((task, end)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        task.await.map_err(io::Error::other)??;
        self.advance_written(end);
        Ok(())
    }

    /// Each time the file crosses an `EARLY_SYNC` boundary (counted from the start of
    /// the file, so chunked uploads get it too), starts a flush unless one is running.
    fn advance_written(&mut self, end: u64) {
        let crossed = self.written / EARLY_SYNC != end / EARLY_SYNC;
        self.written = end;
        if crossed && self.syncing.as_ref().is_none_or(|t| t.is_finished()) {
            // Only an optimization: the publishing fsync is what makes the blob durable.
            // It runs on its own descriptor so that it does not hold the upload's lock.
            let cloned = match &self.staged {
                Staged::Open(file) => file.cached.try_clone().ok(),
                _ => None,
            };
            if let Some(file) = cloned {
                self.syncing = Some(tokio::task::spawn_blocking(move || file.sync_data()));
            }
        }
    }

    /// Writes the kept chunks through the page cache: a small upload, or a large one
    /// while the pool's budget is spent.
    async fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let file = self.file().await?;
        let batch = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        let at = self.offset;
        let len: usize = batch.iter().map(Bytes::len).sum();
        tokio::task::spawn_blocking(move || {
            let mut at = at;
            let result = batch.iter().try_for_each(|chunk| {
                file.cached.write_all_at(chunk, at)?;
                at += chunk.len() as u64;
                Ok::<_, io::Error>(())
            });
            if result.is_err() {
                file.poison();
            }
            result
        })
        .await
        .map_err(io::Error::other)??;
        self.offset += len as u64;
        self.advance_written(self.offset);
        Ok(())
    }

    fn return_buffer(&mut self) {
        if let Some(buffer) = self.fill.take() {
            self.pool.give(buffer);
        }
    }
}

#[async_trait]
impl UploadWriter for StagingWriter {
    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        if self.fill.is_some() {
            return self.copy_in(bytes).await;
        }
        // `pending` only ever holds bytes while no buffer is filling.
        self.pending_len += bytes.len();
        self.pending.push(bytes);
        if self.pending_len < DIRECT_MIN {
            return Ok(());
        }
        // Large: into aligned buffers if the budget allows, else through the page cache.
        let Some(buffer) = self.pool.try_take() else {
            return self.write_pending().await;
        };
        self.start_fill(buffer);
        self.pending_len = 0;
        for chunk in std::mem::take(&mut self.pending) {
            self.copy_in(chunk).await?;
        }
        Ok(())
    }

    /// Returns once the last buffers' writes have started, not finished: the response
    /// goes out while the disk works. Those writes hold the upload's lock until they
    /// land, so the next append, the commit (whose fsync makes them durable) and a
    /// read-back all wait for them, and a failure poisons the upload. An early flush
    /// still running is left to finish on its own.
    async fn finish(mut self: Box<Self>) -> io::Result<UploadState> {
        // Even with nothing to write, this reports a staging file that failed to open.
        self.file().await?;
        self.write_pending().await?;
        self.submit_fill().await?;
        Ok(UploadState::new())
    }
}

impl Drop for StagingWriter {
    fn drop(&mut self) {
        self.return_buffer();
    }
}
