//! The blob store: bytes addressed by digest, shared by the whole registry.
//!
//! This crate knows nothing about repositories, tags or manifests, and it never hashes:
//! the service layer hashes bytes as they stream past and hands the verified digest to
//! [`BlobStore::commit_upload`]. A store's one promise is that a published blob appears
//! atomically and completely under the digest it was committed with.

use std::io;
use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use berth_core::Digest;
use bytes::Bytes;
use futures::stream::BoxStream;

pub mod fs;
pub mod s3;
pub mod testsuite;

pub use fs::FsBlobStore;
pub use s3::S3BlobStore;

/// A readable blob (or a byte range of one).
pub struct BlobBody {
    /// Number of bytes `stream` yields.
    pub len: u64,
    pub stream: BoxStream<'static, io::Result<Bytes>>,
}

/// A published blob, as a store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    /// When its bytes were written (for leaving fresh ones to a grace period).
    pub modified: SystemTime,
}

/// An upload's staging space, as a store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedUpload {
    pub id: String,
    /// The last write to it.
    pub modified: SystemTime,
}

/// What a store needs to continue an upload (a multipart upload's id and its parts),
/// opaque to everyone else. The metadata store records it together with the offset it
/// belongs to, so that the next chunk can go to any node. Empty for the filesystem.
pub type UploadState = Vec<u8>;

/// Appends bytes to an upload in progress.
#[async_trait]
pub trait UploadWriter: Send {
    async fn write(&mut self, bytes: Bytes) -> io::Result<()>;
    /// Hands everything written to the backend; the upload's length includes it
    /// afterwards. Returns the upload's state after these bytes: the one to record with
    /// the new offset. Where another node may take the next chunk the bytes are stored
    /// when this returns; a single-node store may still be landing them (its later
    /// calls on the upload wait for that).
    async fn finish(self: Box<Self>) -> io::Result<UploadState>;
}

/// Content-addressed storage. Every method is safe to call concurrently, including two
/// uploads of the same content: publishing is idempotent.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size of a published blob, `None` if absent.
    async fn stat(&self, digest: &Digest) -> io::Result<Option<u64>>;

    /// Reads a published blob, or the half-open byte `range` of it (already checked
    /// against its size by the caller). `None` if absent.
    async fn open(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> io::Result<Option<BlobBody>>;

    /// Removes a published blob's bytes. `false` if it was not there.
    async fn delete(&self, digest: &Digest) -> io::Result<bool>;

    /// Creates empty staging space for upload `id`; returns its first state.
    async fn create_upload(&self, id: &str) -> io::Result<UploadState>;

    /// Opens upload `id` for appending at `offset`, where `state` was recorded. Bytes
    /// past `offset` (left by a request that died before its progress was recorded) are
    /// discarded. A missing upload or an `offset` past the end may be reported here or
    /// only by the writer's first `write` or its `finish`.
    async fn append_upload(
        &self,
        id: &str,
        offset: u64,
        state: &[u8],
    ) -> io::Result<Box<dyn UploadWriter>>;

    /// Reads back the first `len` bytes staged for upload `id`, for the rare upload
    /// finished with another digest algorithm than it was hashed with. Stores that
    /// cannot read unfinished uploads (S3) answer [`io::ErrorKind::Unsupported`].
    async fn read_upload(&self, id: &str, len: u64, state: &[u8]) -> io::Result<BlobBody>;

    /// Publishes the first `len` bytes of upload `id` as blob `digest`: durable first,
    /// then visible atomically. Staged bytes past `len` (never recorded) are dropped.
    /// The caller has verified that those `len` bytes hash to `digest`.
    async fn commit_upload(
        &self,
        id: &str,
        state: &[u8],
        digest: &Digest,
        len: u64,
    ) -> io::Result<()>;

    /// Drops upload `id` and its bytes; absent uploads are not an error.
    async fn abort_upload(&self, id: &str, state: &[u8]) -> io::Result<()>;

    /// Every published blob, in no particular order, streamed (a store may hold
    /// millions). Objects that are not blobs are skipped.
    fn list_blobs(&self) -> BoxStream<'static, io::Result<StoredBlob>>;

    /// Every upload that has staging space, in no particular order, each once.
    fn list_uploads(&self) -> BoxStream<'static, io::Result<StagedUpload>>;

    /// A URL the client may fetch the published blob from directly (a presigned object
    /// store URL), if the store is configured to send clients there; `None`: stream it.
    async fn redirect_url(&self, _digest: &Digest) -> io::Result<Option<String>> {
        Ok(None)
    }

    /// Whether the store can be used now (a readiness probe): a filesystem root that
    /// takes a write, an object store that answers.
    async fn check(&self) -> io::Result<()>;

    /// Hands back memory the store keeps for reuse (transfer buffers) if none of it was
    /// used for `idle`. Returns the bytes released.
    fn release_idle_memory(&self, _idle: std::time::Duration) -> usize {
        0
    }
}
