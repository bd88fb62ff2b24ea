//! The filesystem backend: `blobs/<alg>/<hex[..2]>/<hex>` for published blobs,
//! `uploads/<id>` for staging.
//!
//! Publishing is staging file → fsync → rename → fsync directory, so after a crash a
//! blob path holds either nothing or the complete, verified bytes.

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use berth_core::Digest;

mod buffers;
mod listing;
mod reading;
mod staging;

use crate::{BlobBody, BlobStore, StagedUpload, StoredBlob, UploadState, UploadWriter};
use buffers::BufferPool;
use futures::stream::BoxStream;
use reading::FileReader;
use staging::{StagedState, StagingWriter};

pub struct FsBlobStore {
    root: PathBuf,
    buffers: BufferPool,
    reader: FileReader,
    uploads: Arc<UploadLocks>,
}

/// One lock per upload, held by its writer until the last byte it started writing has
/// landed. A request dropped mid-write (its client went away), or one that answered
/// while its last buffer was still being written, leaves a write running on the
/// blocking pool; the next append, the commit, the read-back and the abort wait for it,
/// so a stale write can never land in bytes that were cut off and written again. The
/// lock also records a failed write, after which the upload cannot be used.
#[derive(Default)]
struct UploadLocks(std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<StagedState>>>>);

impl UploadLocks {
    /// Waits for the upload's writes to land.
    async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<StagedState> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(id.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Waits for the upload's writes to land; fails if one of them failed.
    async fn lock_intact(&self, id: &str) -> io::Result<tokio::sync::OwnedMutexGuard<StagedState>> {
        let guard = self.lock(id).await;
        if guard.lost_write {
            // NotFound: the staged bytes are as good as gone.
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("upload {id} lost a write to its staging file; it must be started again"),
            ));
        }
        Ok(guard)
    }

    /// Forgets an upload that no longer exists (called while holding its lock).
    fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

impl FsBlobStore {
    /// Opens (creating if needed) a store rooted at `root`. Does not scan anything.
    pub async fn open(root: impl Into<PathBuf>) -> io::Result<FsBlobStore> {
        let root = root.into();
        let buffers = BufferPool::default();
        tokio::fs::create_dir_all(root.join("blobs")).await?;
        tokio::fs::create_dir_all(root.join("uploads")).await?;
        Ok(FsBlobStore {
            root,
            buffers: buffers.clone(),
            reader: FileReader::new(buffers),
            uploads: Arc::default(),
        })
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

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl BlobStore for FsBlobStore {
    /// Writes and removes a probe file in the root (not a blob: listings skip it), and
    /// reads the blob directory.
    async fn check(&self) -> io::Result<()> {
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = self.root.join(format!(".ready-{}-{n}", std::process::id()));
        tokio::fs::write(&probe, b"ready").await?;
        tokio::fs::remove_file(&probe).await?;
        tokio::fs::read_dir(&self.root).await.map(drop)
    }

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
        not_found_as_none(self.reader.read(&path, range).await)
    }

    async fn delete(&self, digest: &Digest) -> io::Result<bool> {
        Ok(not_found_as_none(tokio::fs::remove_file(self.blob_path(digest)).await)?.is_some())
    }

    /// The staging file is all the state there is: the recorded offset says how much of
    /// it counts.
    async fn create_upload(&self, id: &str) -> io::Result<UploadState> {
        tokio::fs::File::create(self.upload_path(id)).await?;
        Ok(UploadState::new())
    }

    /// The writer comes back at once; the file is opened (and cut back to `offset`)
    /// once the upload's earlier writes have landed, and any failure to do so is
    /// reported by the first write that needs the file, or by `finish`.
    async fn append_upload(
        &self,
        id: &str,
        offset: u64,
        _state: &[u8],
    ) -> io::Result<Box<dyn UploadWriter>> {
        let uploads = self.uploads.clone();
        let path = self.upload_path(id);
        let id = id.to_owned();
        let opened = path.clone();
        let opening = tokio::spawn(async move {
            let guard = uploads.lock_intact(&id).await?;
            let file = tokio::task::spawn_blocking(move || -> io::Result<std::fs::File> {
                let file = std::fs::OpenOptions::new().write(true).open(opened)?;
                let len = file.metadata()?.len();
                if len < offset {
                    // Recorded bytes that are not there (lost in a crash): as good as gone.
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("upload {id} holds {len} bytes, fewer than the {offset} recorded"),
                    ));
                }
                if len > offset {
                    file.set_len(offset)?;
                }
                Ok(file)
            })
            .await
            .map_err(io::Error::other)??;
            Ok((file, guard))
        });
        Ok(Box::new(StagingWriter::new(
            path,
            opening,
            offset,
            self.buffers.clone(),
        )))
    }

    async fn read_upload(&self, id: &str, len: u64, _state: &[u8]) -> io::Result<BlobBody> {
        // Only to wait for writes still landing; appends are serialized by the caller.
        drop(self.uploads.lock_intact(id).await?);
        self.reader.read(&self.upload_path(id), 0..len).await
    }

    async fn commit_upload(
        &self,
        id: &str,
        _state: &[u8],
        digest: &Digest,
        len: u64,
    ) -> io::Result<()> {
        let _guard = self.uploads.lock_intact(id).await?;
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
            let file = std::fs::OpenOptions::new().write(true).open(&staging)?;
            let staged = file.metadata()?.len();
            if staged < len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("staged upload holds {staged} bytes, fewer than the {len} verified"),
                ));
            }
            if staged > len {
                file.set_len(len)?;
            }
            file.sync_all()?;
            std::fs::create_dir_all(dir)?;
            std::fs::rename(&staging, &target)?;
            sync_dir(dir)
        })
        .await
        .map_err(io::Error::other)??;
        self.uploads.forget(id);
        Ok(())
    }

    async fn abort_upload(&self, id: &str, _state: &[u8]) -> io::Result<()> {
        let _guard = self.uploads.lock(id).await;
        not_found_as_none(tokio::fs::remove_file(self.upload_path(id)).await)?;
        self.uploads.forget(id);
        Ok(())
    }

    fn list_blobs(&self) -> BoxStream<'static, io::Result<StoredBlob>> {
        listing::blobs(self.root.join("blobs"))
    }

    fn list_uploads(&self) -> BoxStream<'static, io::Result<StagedUpload>> {
        listing::uploads(self.root.join("uploads"))
    }

    fn release_idle_memory(&self, idle: std::time::Duration) -> usize {
        self.buffers.release_idle(idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UploadWriter;
    use bytes::Bytes;

    /// The blob store contract, one test per check, each on a fresh store.
    mod contract {
        use super::FsBlobStore;

        async fn fresh() -> (FsBlobStore, tempfile::TempDir) {
            let dir = tempfile::tempdir().unwrap();
            (FsBlobStore::open(dir.path()).await.unwrap(), dir)
        }

        crate::blob_store_contract!(fresh());
    }

    /// Past the buffer budget, uploads and reads go through the page cache in small
    /// chunks; with the budget spent from the start, and with one buffer left (so a
    /// transfer starts direct and falls back midway), every byte must still be kept.
    #[tokio::test]
    async fn with_the_buffer_budget_spent_every_byte_is_still_kept() {
        for left in [0, 1] {
            let dir = tempfile::tempdir().unwrap();
            let store = FsBlobStore::open(dir.path()).await.unwrap();
            let mut held: Vec<_> = std::iter::from_fn(|| store.buffers.try_take()).collect();
            assert!(
                held.len() > left,
                "the budget holds more than {left} buffer"
            );
            held.drain(..left)
                .for_each(|buffer| store.buffers.give(buffer));
            crate::testsuite::run_all(&store).await;
            held.into_iter()
                .for_each(|buffer| store.buffers.give(buffer));
        }
    }

    /// A write that fails after its request was answered (the last buffer lands in
    /// the background) must make the upload unusable, never publishable.
    #[tokio::test]
    async fn a_failed_write_poisons_the_upload() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let created = store.create_upload("p1").await.unwrap();
        let path = store.upload_path("p1");
        // The page-cache descriptor is read-only, so the unaligned tail cannot be written.
        let read_only = std::fs::File::open(&path).unwrap();
        let lock = store.uploads.lock("p1").await;
        let opening = tokio::spawn(async move { Ok((read_only, lock)) });
        let mut writer = StagingWriter::new(path, opening, 0, store.buffers.clone());
        let bytes = vec![7u8; 5 * 1024 * 1024 + 100];
        let written = writer.write(Bytes::from(bytes.clone())).await;
        let finished = Box::new(writer).finish().await;
        assert!(
            written.is_ok() && finished.is_ok(),
            "the tail is written in the background"
        );
        let digest = berth_core::Algorithm::Sha256.digest_of(&bytes);
        let refused = store
            .commit_upload("p1", &created, &digest, bytes.len() as u64)
            .await;
        assert!(refused.unwrap_err().to_string().contains("lost a write"));
        let writer = store.append_upload("p1", 0, &created).await.unwrap();
        assert!(
            writer.finish().await.is_err(),
            "a poisoned upload takes no more bytes"
        );
        assert!(store.read_upload("p1", 10, &created).await.is_err());
        assert_eq!(store.stat(&digest).await.unwrap(), None);
        store.abort_upload("p1", &created).await.unwrap();
        assert!(!dir.path().join("uploads/p1").exists());
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
