//! The blob store: bytes addressed by digest, shared by the whole registry.
//!
//! This crate knows nothing about repositories, tags or manifests, and it never hashes:
//! the service layer hashes bytes as they stream past and hands the verified digest to
//! [`BlobStore::commit_upload`]. A store's one promise is that a published blob appears
//! atomically and completely under the digest it was committed with.

use std::io;
use std::ops::Range;

use async_trait::async_trait;
use berth_core::Digest;
use bytes::Bytes;
use futures::stream::BoxStream;

pub mod fs;
pub mod testsuite;

pub use fs::FsBlobStore;

/// A readable blob (or a byte range of one).
pub struct BlobBody {
    /// Number of bytes `stream` yields.
    pub len: u64,
    pub stream: BoxStream<'static, io::Result<Bytes>>,
}

/// Appends bytes to an upload in progress.
#[async_trait]
pub trait UploadWriter: Send {
    async fn write(&mut self, bytes: Bytes) -> io::Result<()>;
    /// Hands everything written to the backend; the upload's length includes it afterwards.
    async fn finish(self: Box<Self>) -> io::Result<()>;
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

    /// Creates empty staging space for upload `id`.
    async fn create_upload(&self, id: &str) -> io::Result<()>;

    /// Opens upload `id` for appending at `offset`. Bytes past `offset` (left by a
    /// request that died before its progress was recorded) are discarded first. A
    /// missing upload or an `offset` past the end may be reported here or only by the
    /// writer's first `write` or its `finish`.
    async fn append_upload(&self, id: &str, offset: u64) -> io::Result<Box<dyn UploadWriter>>;

    /// Reads back the first `len` bytes staged for upload `id`. Only for recovering a
    /// hash state that was lost (a restart between chunks); never on the normal path.
    async fn read_upload(&self, id: &str, len: u64) -> io::Result<BlobBody>;

    /// Publishes the first `len` bytes of upload `id` as blob `digest`: durable first
    /// (fsync), then visible atomically. Staged bytes past `len` (never recorded) are
    /// dropped. The caller has verified that those `len` bytes hash to `digest`.
    async fn commit_upload(&self, id: &str, digest: &Digest, len: u64) -> io::Result<()>;

    /// Drops upload `id` and its bytes; absent uploads are not an error.
    async fn abort_upload(&self, id: &str) -> io::Result<()>;

    /// Hands back memory the store keeps for reuse (transfer buffers) if none of it was
    /// used for `idle`. Returns the bytes released.
    fn release_idle_memory(&self, _idle: std::time::Duration) -> usize {
        0
    }
}
