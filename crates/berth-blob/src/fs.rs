//! The filesystem backend: `blobs/<alg>/<hex[..2]>/<hex>` for published blobs,
//! `uploads/<id>` for staging.
//!
//! Publishing is staging file → fsync → rename → fsync directory, so after a crash a
//! blob path holds either nothing or the complete, verified bytes.

use std::io::{self, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use berth_core::Digest;
use bytes::Bytes;
use futures::StreamExt;
use std::io::{Read, Seek, Write};

use crate::{BlobBody, BlobStore, UploadWriter};

/// Read buffer for serving blobs: large enough that a GiB costs few syscalls.
const READ_CHUNK: usize = 512 * 1024;
/// Chunks a download may read ahead of the client.
const READ_AHEAD: usize = 1;
/// After this many bytes, a large upload starts flushing to disk in the background, so
/// the fsync that publishes it finds little left to do (the disk works while the
/// network does, instead of after it).
const EARLY_SYNC: u64 = 32 * 1024 * 1024;
/// How much an upload holds in memory before handing bytes to the OS in one call.
const WRITE_BUFFER: usize = 2 * 1024 * 1024;

pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// Opens (creating if needed) a store rooted at `root`. Does not scan anything.
    pub async fn open(root: impl Into<PathBuf>) -> io::Result<FsBlobStore> {
        let root = root.into();
        tokio::fs::create_dir_all(root.join("blobs")).await?;
        tokio::fs::create_dir_all(root.join("uploads")).await?;
        Ok(FsBlobStore { root })
    }

    /// Where the bytes of `digest` live once published.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        // Upload ids are validated by berth-core (alphanumerics, '-', '_'); never a path.
        self.root.join("uploads").join(id)
    }
}

fn not_found_as_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Streams `range` of a file. One blocking thread reads ahead in large chunks and hands
/// them over a small channel: far fewer thread hops and copies than an async file, and
/// at most `READ_AHEAD + 1` chunks in memory per download.
async fn read_file(path: &Path, range: Range<u64>) -> io::Result<BlobBody> {
    let path = path.to_owned();
    let mut file = tokio::task::spawn_blocking(move || -> io::Result<std::fs::File> {
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(range.start))?;
        Ok(file)
    })
    .await
    .map_err(io::Error::other)??;
    let len = range.end - range.start;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        while left > 0 {
            let want = left.min(READ_CHUNK as u64) as usize;
            let mut buf = Vec::with_capacity(want);
            let result = match (&mut file).take(want as u64).read_to_end(&mut buf) {
                Ok(n) if n == want => Ok(Bytes::from(buf)),
                Ok(_) => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                Err(e) => Err(e),
            };
            let failed = result.is_err();
            // A closed channel means the client went away: stop reading.
            if tx.blocking_send(result).is_err() || failed {
                return;
            }
            left -= want as u64;
        }
    });
    let stream = tokio_stream_from(rx).boxed();
    Ok(BlobBody { len, stream })
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Appends to a staging file. Incoming chunks are kept (not copied) until a batch is
/// large enough, then written by one blocking call: few thread hops, no double copy.
struct FsUploadWriter {
    /// `None` only while a batch is being written on the blocking pool.
    file: Option<std::fs::File>,
    pending: Vec<Bytes>,
    pending_len: usize,
    /// Where the file ends (the next byte's offset).
    offset: u64,
    /// An early flush to disk running beside the upload (see [`EARLY_SYNC`]).
    syncing: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

impl FsUploadWriter {
    async fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("upload file lost after a failed write"))?;
        let batch = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        let written: usize = batch.iter().map(Bytes::len).sum();
        let (file, result) = tokio::task::spawn_blocking(move || {
            let result = batch.iter().try_for_each(|chunk| file.write_all(chunk));
            (file, result)
        })
        .await
        .map_err(io::Error::other)?;
        result?;
        let before = self.offset;
        self.offset += written as u64;
        // Each time the file crosses an EARLY_SYNC boundary (counted from the start of the
        // file, so chunked uploads get it too), start a flush unless one is still running.
        let crossed = before / EARLY_SYNC != self.offset / EARLY_SYNC;
        if crossed && self.syncing.as_ref().is_none_or(|t| t.is_finished()) {
            let clone = file.try_clone()?;
            // Only an optimization: the publishing fsync is what makes the blob durable.
            self.syncing = Some(tokio::task::spawn_blocking(move || clone.sync_data()));
        }
        self.file = Some(file);
        Ok(())
    }
}

#[async_trait]
impl UploadWriter for FsUploadWriter {
    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        self.pending_len += bytes.len();
        self.pending.push(bytes);
        if self.pending_len >= WRITE_BUFFER {
            self.write_pending().await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> io::Result<()> {
        // A running early flush is left to finish on its own.
        self.write_pending().await
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> io::Result<Option<u64>> {
        let meta = not_found_as_none(tokio::fs::metadata(self.blob_path(digest)).await)?;
        Ok(meta.map(|m| m.len()))
    }

    async fn open(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> io::Result<Option<BlobBody>> {
        let path = self.blob_path(digest);
        let range = match range {
            Some(r) => r,
            None => match not_found_as_none(tokio::fs::metadata(&path).await)? {
                Some(m) => 0..m.len(),
                None => return Ok(None),
            },
        };
        not_found_as_none(read_file(&path, range).await)
    }

    async fn delete(&self, digest: &Digest) -> io::Result<bool> {
        Ok(not_found_as_none(tokio::fs::remove_file(self.blob_path(digest)).await)?.is_some())
    }

    async fn create_upload(&self, id: &str) -> io::Result<()> {
        tokio::fs::File::create(self.upload_path(id)).await?;
        Ok(())
    }

    async fn append_upload(&self, id: &str, offset: u64) -> io::Result<Box<dyn UploadWriter>> {
        let path = self.upload_path(id);
        let id = id.to_owned();
        let file = tokio::task::spawn_blocking(move || -> io::Result<std::fs::File> {
            let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
            let len = file.metadata()?.len();
            if len < offset {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("upload {id} holds {len} bytes, fewer than the {offset} recorded"),
                ));
            }
            if len > offset {
                file.set_len(offset)?;
            }
            file.seek(SeekFrom::Start(offset))?;
            Ok(file)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(Box::new(FsUploadWriter {
            file: Some(file),
            pending: Vec::new(),
            pending_len: 0,
            offset,
            syncing: None,
        }))
    }

    async fn read_upload(&self, id: &str, len: u64) -> io::Result<BlobBody> {
        read_file(&self.upload_path(id), 0..len).await
    }

    async fn commit_upload(&self, id: &str, digest: &Digest) -> io::Result<()> {
        let staging = self.upload_path(id);
        let target = self.blob_path(digest);
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let dir = target
                .parent()
                .ok_or_else(|| io::Error::other("blob path has no parent"))?;
            if target.exists() {
                // Same digest, same bytes: someone published it first.
                return std::fs::remove_file(&staging);
            }
            std::fs::File::open(&staging)?.sync_all()?;
            std::fs::create_dir_all(dir)?;
            std::fs::rename(&staging, &target)?;
            sync_dir(dir)
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn abort_upload(&self, id: &str) -> io::Result<()> {
        not_found_as_none(tokio::fs::remove_file(self.upload_path(id)).await)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fs_store_passes_the_blob_store_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        crate::testsuite::run_all(&store).await;
    }

    #[tokio::test]
    async fn published_blob_lives_at_its_digest_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let digest = crate::testsuite::put(&store, "u1", b"hello").await;
        let path = store.blob_path(&digest);
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert!(path.to_string_lossy().contains("/blobs/sha256/"));
        assert!(
            !dir.path().join("uploads/u1").exists(),
            "staging file must be gone"
        );
    }
}
