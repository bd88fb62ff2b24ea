//! The registry service: every distribution-spec operation as a method, over one
//! [`BlobStore`] and one [`MetaStore`]. The only code that touches both.
//!
//! Write order is always bytes first (verified, durable), metadata second, so a crash
//! leaves unreferenced bytes (garbage), never a reference to bytes that are not there.
//! Blob bytes are hashed as they stream through, never read back on the normal path.

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_blob::{BlobBody, BlobStore};
use berth_core::manifest::{self, ParsedManifest};
use berth_core::{Algorithm, Digest, Hasher, Reference, RepoName, Tag};
use berth_meta::{
    ManifestRecord, MetaStore, Page, PutManifestError, Referrer, TagMove, TagUpdate, UploadSession,
};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::{RegistryError, Result};
use crate::golden;
use crate::policy::{self, GoldenMode};

/// A request body as the service sees it.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// The hash of an upload's first `offset` bytes, and the blob store's state for them:
/// what is recorded with the offset after each chunk.
struct Progress {
    offset: u64,
    hasher: Hasher,
    store_state: Vec<u8>,
}

/// Per-session lock that serializes this process's requests on one session (requests
/// through other nodes are ordered by the compare-and-set on the recorded offset).
type SessionSlot = Arc<tokio::sync::Mutex<()>>;

/// A manifest as stored by [`Registry::put_manifest`].
#[derive(Debug)]
pub struct StoredManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    /// The tags that moved (the pushed ones and the floats), in name order.
    pub moves: Vec<TagMove>,
    /// Why `require-golden-base warn` let it through with a warning (recorded).
    pub warning: Option<String>,
}

pub struct Registry {
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) meta: Arc<dyn MetaStore>,
    sessions: Mutex<HashMap<String, SessionSlot>>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A chunk that says where it starts (`Content-Range`) must start at the session's offset.
fn check_chunk_start(session: &UploadSession, start: Option<u64>) -> Result<()> {
    match start {
        Some(got) if got != session.offset => Err(RegistryError::UploadOutOfOrder {
            offset: session.offset,
            got,
        }),
        _ => Ok(()),
    }
}

/// Whether a store call on a session failed because its staged bytes are not there:
/// the file is missing or shorter than recorded, or a write to it failed.
fn staged_bytes_lost(e: &RegistryError) -> bool {
    let RegistryError::Internal(e) = e else {
        return false;
    };
    e.downcast_ref::<std::io::Error>().is_some_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::NotFound
        )
    })
}

/// How long a publish waits for a collector deleting the same digest (a claim is
/// deleted within seconds; this bounds the wait at 30 s).
const PIN_ATTEMPTS: u32 = 300;
const PIN_RETRY: Duration = Duration::from_millis(100);

fn new_upload_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Registry {
    pub fn new(blobs: Arc<dyn BlobStore>, meta: Arc<dyn MetaStore>) -> Registry {
        Registry {
            blobs,
            meta,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, id: &str) -> SessionSlot {
        let mut sessions = self
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions.entry(id.to_owned()).or_default().clone()
    }

    fn forget_slot(&self, id: &str) {
        let mut sessions = self
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions.remove(id);
    }

    /// Hands back memory the blob store keeps for reuse, if it has been idle for `idle`.
    pub fn release_idle_memory(&self, idle: Duration) -> usize {
        self.blobs.release_idle_memory(idle)
    }

    /// Whether the metadata store answers (a readiness probe).
    pub async fn check_database(&self) -> std::result::Result<(), berth_meta::MetaError> {
        self.meta.check().await
    }

    /// Whether the blob store can be used (a readiness probe).
    pub async fn check_storage(&self) -> io::Result<()> {
        self.blobs.check().await
    }

    /// Bytes the registry holds (each live blob once, plus manifests).
    pub async fn stored_bytes(&self) -> std::result::Result<u64, berth_meta::MetaError> {
        self.meta.stored_bytes().await
    }

    // ---------------------------------------------------------------- blobs

    /// Size of a blob this repository may serve.
    pub async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        self.meta
            .repository_blob(repo, digest)
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))
    }

    /// Opens a blob (or a range of it) this repository may serve.
    pub async fn open_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<BlobBody> {
        match self.blobs.open(digest, range).await? {
            Some(body) => Ok(body),
            None => {
                tracing::warn!(%repo, %digest, "blob is recorded but its bytes are missing");
                Err(RegistryError::BlobUnknown(digest.clone()))
            }
        }
    }

    /// A small blob whole (an image's config, for the web site), if this repository may
    /// serve it and it has at most `max` bytes.
    pub async fn read_small_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        max: u64,
    ) -> Result<Option<Bytes>> {
        match self.meta.repository_blob(repo, digest).await? {
            Some(size) if size <= max => {}
            _ => return Ok(None),
        }
        let mut body = self.open_blob(repo, digest, None).await?;
        let mut bytes = Vec::with_capacity(body.len as usize);
        while let Some(chunk) = body.stream.next().await {
            bytes.extend_from_slice(&chunk.map_err(RegistryError::internal)?);
            if bytes.len() as u64 > max {
                return Ok(None);
            }
        }
        Ok(Some(bytes.into()))
    }

    /// Records that a mirrored manifest was pulled now (for eviction's order).
    pub async fn record_mirrored_pull(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        Ok(self
            .meta
            .record_pull(repo, digest, crate::accounts::now())
            .await?)
    }

    /// Bytes the cache under `prefix/` holds (each blob its manifests reference, once).
    pub async fn mirrored_bytes(&self, prefix: &str) -> Result<u64> {
        Ok(self.meta.mirror_usage(prefix).await?)
    }

    /// Evicts the least recently pulled unpinned manifests under `prefix/` until it holds
    /// at most `max_bytes`; returns how many went. Their blobs become collectable (those
    /// a local image also uses stay with it).
    pub async fn evict_mirrored(&self, prefix: &str, max_bytes: u64) -> Result<u32> {
        let mut evicted = 0;
        while self.meta.mirror_usage(prefix).await? > max_bytes {
            let Some((repo, digest)) = self.meta.eviction_candidates(prefix, 1).await?.pop() else {
                break;
            };
            if self
                .meta
                .delete_manifest(&repo, &digest, "mirror eviction")
                .await?
            {
                evicted += 1;
            }
        }
        Ok(evicted)
    }

    /// Whether `repo` exists here (pushed, or made before its first push).
    pub async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        Ok(self.meta.repository_visibility(repo).await?.is_some())
    }

    /// A blob's size if the registry holds it (in any repository).
    pub async fn stored_blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.meta.blob(digest).await?)
    }

    /// Lets a mirrored repository serve a blob the registry holds already (anywhere);
    /// the caller has confirmed the upstream has it under the mirrored name;
    /// its size, or `None` if the registry does not hold it.
    pub async fn link_mirrored_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        Ok(self.meta.mount_blob(repo, digest, None).await?)
    }

    /// Where the client should fetch a blob from instead of through berth, if the blob
    /// store sends clients to presigned URLs.
    pub async fn blob_redirect(&self, digest: &Digest) -> Result<Option<String>> {
        Ok(self.blobs.redirect_url(digest).await?)
    }

    /// Removes a blob from a repository. Its bytes stay while anything else holds them.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if self.meta.unlink_blob(repo, digest).await? {
            Ok(())
        } else {
            Err(RegistryError::BlobUnknown(digest.clone()))
        }
    }

    /// Cross-repository mount. With `from`, the blob must be in that repository; without
    /// it, anywhere in the registry. Returns the size if mounted, `None` if not possible.
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<Option<u64>> {
        if self.meta.blob(digest).await?.is_none() {
            return Ok(None);
        }
        if self.blobs.stat(digest).await?.is_none() {
            tracing::warn!(%digest, "mount source is recorded but its bytes are missing");
            return Ok(None);
        }
        let quota = self.quota_to_hold(repo, digest).await?;
        let mounted = self.meta.mount_blob(repo, digest, from).await?;
        if mounted.is_some() {
            self.hold_to_quota(repo, digest, quota).await?;
        }
        Ok(mounted)
    }

    /// Reserves `digest` in `repo` before its bytes are published, so that a garbage
    /// collector cannot delete them between the publishing and the record. While a
    /// collector is deleting the same digest's old bytes, waits for it to finish.
    async fn pin_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        for _ in 0..PIN_ATTEMPTS {
            if self.meta.pin_blob(repo, digest, size).await? {
                return Ok(());
            }
            tokio::time::sleep(PIN_RETRY).await;
        }
        Err(RegistryError::internal(io::Error::other(format!(
            "blob {digest} is still being deleted by garbage collection; try again"
        ))))
    }

    // ---------------------------------------------------------------- quotas

    /// Refuses to add `adding` bytes to `repo`'s namespace when that would pass its
    /// storage quota (if it has one). Counted as `namespace_usage` counts: each blob of
    /// the namespace once, plus its manifests.
    async fn check_quota(&self, repo: &RepoName, adding: u64) -> Result<()> {
        match crate::policy::quota_of(&*self.meta, repo.namespace()).await? {
            Some(quota) => self.within_quota(repo, quota, adding).await,
            None => Ok(()),
        }
    }

    /// Refuses when `adding` bytes would take `repo`'s namespace past `quota`.
    async fn within_quota(&self, repo: &RepoName, quota: u64, adding: u64) -> Result<()> {
        let namespace = repo.namespace();
        let used = self.meta.namespace_usage(namespace).await?;
        let would_use = used.saturating_add(adding);
        if would_use > quota {
            return Err(RegistryError::QuotaExceeded {
                namespace: namespace.to_owned(),
                quota,
                would_use,
            });
        }
        Ok(())
    }

    /// Before `digest` is linked into `repo`: the quota to hold it to afterwards, if the
    /// namespace has one and the link will be new.
    async fn quota_to_hold(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let Some(quota) = crate::policy::quota_of(&*self.meta, repo.namespace()).await? else {
            return Ok(None);
        };
        let linked = self.meta.repository_blob(repo, digest).await?.is_some();
        Ok((!linked).then_some(quota))
    }

    /// After `digest` was newly linked into `repo`: if that took the namespace past
    /// `quota`, takes the link back and refuses. Checking after the link counts a blob
    /// the namespace already holds elsewhere once, as usage does. (Pushes at the same
    /// moment may each pass before the others count: a quota can be passed by what
    /// they upload together.)
    async fn hold_to_quota(
        &self,
        repo: &RepoName,
        digest: &Digest,
        quota: Option<u64>,
    ) -> Result<()> {
        let Some(quota) = quota else {
            return Ok(());
        };
        if let Err(refusal) = self.within_quota(repo, quota, 0).await {
            self.meta.unlink_blob(repo, digest).await?;
            return Err(refusal);
        }
        Ok(())
    }

    // ---------------------------------------------------------------- uploads

    /// Opens an upload session whose bytes will be hashed with `algorithm`, for
    /// `client` (`user:NAME` or `addr:ADDRESS`), who may hold `max_per_client` at once.
    pub async fn start_upload(
        &self,
        repo: &RepoName,
        algorithm: Algorithm,
        client: String,
        max_per_client: u32,
    ) -> Result<UploadSession> {
        // A namespace at its quota is told at once, before any byte is sent.
        self.check_quota(repo, 1).await?;
        let id = new_upload_id();
        let store_state = self.blobs.create_upload(&id).await?;
        let session = UploadSession {
            id,
            repository: repo.clone(),
            algorithm,
            offset: 0,
            hash_state: Vec::new(),
            store_state,
            updated_at: now(),
            client,
        };
        if !self.meta.create_upload(&session, max_per_client).await? {
            self.blobs
                .abort_upload(&session.id, &session.store_state)
                .await?;
            return Err(RegistryError::TooManyUploads {
                limit: max_per_client,
            });
        }
        Ok(session)
    }

    async fn session(&self, repo: &RepoName, id: &str) -> Result<UploadSession> {
        match self.meta.upload(id).await? {
            Some(s) if &s.repository == repo => Ok(s),
            Some(_) => Err(RegistryError::UploadUnknown),
            None => {
                // Requests for ids that never existed must not grow the slot map.
                self.forget_slot(id);
                Err(RegistryError::UploadUnknown)
            }
        }
    }

    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadSession> {
        self.session(repo, id).await
    }

    /// Appends a chunk. `start` is where the client says it begins (`Content-Range`);
    /// it must be the current offset. Returns the session after the chunk.
    pub async fn append_upload(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadSession> {
        let slot = self.slot(id);
        let _serialized = slot.lock().await;
        let session = self.session(repo, id).await?;
        check_chunk_start(&session, start)?;
        let mut progress = self.progress(&session).await?;
        let failure = self.write_chunk(&session, &mut progress, body).await?;
        // Bytes that arrived before a failure are kept and counted.
        let session = self.record_progress(&session, progress).await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(session),
        }
    }

    /// Streams `body` onto the staged bytes, feeding the hash with exactly what was
    /// written. Returns the failure that cut the body short, if any: the bytes before
    /// it are written and counted in `progress`.
    async fn write_chunk(
        &self,
        session: &UploadSession,
        progress: &mut Progress,
        mut body: ByteStream,
    ) -> Result<Option<RegistryError>> {
        let mut writer = self
            .blobs
            .append_upload(&session.id, session.offset, &session.store_state)
            .await?;
        let mut failure = None;
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    let len = bytes.len() as u64;
                    if let Err(e) = writer.write(bytes.clone()).await {
                        failure = Some(RegistryError::internal(e));
                        break;
                    }
                    progress.hasher.update(&bytes);
                    written += len;
                }
                Err(e) => {
                    failure = Some(RegistryError::UploadInvalid(format!(
                        "request body failed: {e}"
                    )));
                    break;
                }
            }
        }
        let finished = writer.finish().await.map_err(RegistryError::internal);
        if let Some(lost) = failure
            .iter()
            .chain(finished.as_ref().err())
            .find(|e| staged_bytes_lost(e))
        {
            // A crash (of the machine, or of the process while its last writes were
            // landing) took bytes the session had recorded. Resuming cannot work;
            // "unknown upload" makes clients start the blob again.
            tracing::warn!(upload = %session.id, error = %lost, "staged bytes are gone; dropping the upload");
            self.drop_session(session).await?;
            return Err(RegistryError::UploadUnknown);
        }
        progress.store_state = finished?;
        progress.offset += written;
        Ok(failure)
    }

    /// Records that the session now holds `progress.offset` bytes, with the hash and the
    /// store's state for them, so that the next chunk can continue on any node.
    async fn record_progress(
        &self,
        session: &UploadSession,
        progress: Progress,
    ) -> Result<UploadSession> {
        let advanced = UploadSession {
            offset: progress.offset,
            hash_state: progress.hasher.save(),
            store_state: progress.store_state,
            updated_at: now(),
            ..session.clone()
        };
        if !self.meta.advance_upload(&advanced, session.offset).await? {
            return Err(RegistryError::UploadInvalid(
                "the upload session changed while this chunk was being written".into(),
            ));
        }
        Ok(advanced)
    }

    /// The session's recorded progress: its hash restored from the recorded state (or,
    /// for a session recorded before hash states were kept, rebuilt once by reading the
    /// staged bytes back).
    async fn progress(&self, session: &UploadSession) -> Result<Progress> {
        let hasher = if session.offset > 0 && session.hash_state.is_empty() {
            tracing::info!(upload = %session.id, offset = session.offset, "rebuilding upload hash state");
            match self
                .hash_staged(session, session.offset, session.algorithm)
                .await
            {
                Ok(hasher) => hasher,
                Err(e) if staged_bytes_lost(&e) => {
                    tracing::warn!(upload = %session.id, error = %e, "staged bytes are gone; dropping the upload");
                    self.drop_session(session).await?;
                    return Err(RegistryError::UploadUnknown);
                }
                Err(e) => return Err(e),
            }
        } else {
            Hasher::restore(session.algorithm, &session.hash_state)
                .map_err(RegistryError::internal)?
        };
        Ok(Progress {
            offset: session.offset,
            hasher,
            store_state: session.store_state.clone(),
        })
    }

    async fn hash_staged(
        &self,
        session: &UploadSession,
        len: u64,
        algorithm: Algorithm,
    ) -> Result<Hasher> {
        let mut hasher = algorithm.hasher();
        let mut body = self
            .blobs
            .read_upload(&session.id, len, &session.store_state)
            .await?;
        while let Some(chunk) = body.stream.next().await {
            hasher.update(&chunk?);
        }
        Ok(hasher)
    }

    /// Completes an upload: appends the final chunk (if any; `start` as for
    /// [`Registry::append_upload`]), verifies the digest, and publishes the blob.
    /// An out-of-order chunk changes nothing; a digest mismatch cancels the session.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        start: Option<u64>,
        body: Option<ByteStream>,
    ) -> Result<u64> {
        let slot = self.slot(id);
        let _serialized = slot.lock().await;
        let session = self.session(repo, id).await?;
        check_chunk_start(&session, start)?;
        let mut progress = self.progress(&session).await?;
        if let Some(body) = body
            && let Some(failure) = self.write_chunk(&session, &mut progress, body).await?
        {
            // Keep what arrived, so the client can resume from there.
            self.record_progress(&session, progress).await?;
            return Err(failure);
        }
        // The final chunk's progress is never recorded: the session ends here.
        let len = progress.offset;
        let computed = if digest.algorithm() == session.algorithm {
            progress.hasher.finish()
        } else {
            // The client announced another algorithm than it finished with: hash again.
            let staged = UploadSession {
                store_state: progress.store_state.clone(),
                ..session.clone()
            };
            match self.hash_staged(&staged, len, digest.algorithm()).await {
                Ok(hasher) => hasher.finish(),
                Err(RegistryError::Internal(e))
                    if e.downcast_ref::<io::Error>()
                        .is_some_and(|e| e.kind() == io::ErrorKind::Unsupported) =>
                {
                    self.drop_session(&staged).await?;
                    return Err(RegistryError::DigestInvalid(format!(
                        "this upload was hashed with {}; finish it with a {} digest, or start it \
                         with ?digest-algorithm={}",
                        session.algorithm,
                        session.algorithm,
                        digest.algorithm()
                    )));
                }
                Err(e) => return Err(e),
            }
        };
        let finished = UploadSession {
            offset: len,
            store_state: progress.store_state,
            ..session
        };
        if &computed != digest {
            self.drop_session(&finished).await?;
            return Err(RegistryError::DigestInvalid(format!(
                "uploaded content has digest {computed}, not {digest}"
            )));
        }
        let quota = self.quota_to_hold(repo, digest).await?;
        self.pin_blob(repo, digest, len).await?;
        if let Err(e) = self
            .blobs
            .commit_upload(id, &finished.store_state, digest, len)
            .await
            .map_err(RegistryError::internal)
        {
            if staged_bytes_lost(&e) {
                tracing::warn!(upload = %id, error = %e, "staged bytes are gone; dropping the upload");
                self.drop_session(&finished).await?;
                return Err(RegistryError::UploadUnknown);
            }
            return Err(e);
        }
        self.meta.complete_upload(id, repo, digest, len).await?;
        self.forget_slot(id);
        self.hold_to_quota(repo, digest, quota).await?;
        Ok(len)
    }

    /// Single-request upload (`POST ?digest=` with the body). Needs no session record:
    /// it lives only as long as the request.
    pub async fn upload_whole(
        &self,
        repo: &RepoName,
        digest: &Digest,
        mut body: ByteStream,
    ) -> Result<u64> {
        let quota = self.quota_to_hold(repo, digest).await?;
        if let Some(quota) = quota {
            self.within_quota(repo, quota, 1).await?;
        }
        let id = new_upload_id();
        let mut store_state = self.blobs.create_upload(&id).await?;
        let result = async {
            let mut writer = self.blobs.append_upload(&id, 0, &store_state).await?;
            let mut hasher = digest.algorithm().hasher();
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let bytes = chunk.map_err(|e| {
                    RegistryError::UploadInvalid(format!("request body failed: {e}"))
                })?;
                size += bytes.len() as u64;
                writer.write(bytes.clone()).await?;
                hasher.update(&bytes);
            }
            store_state = writer.finish().await?;
            let computed = hasher.finish();
            if &computed != digest {
                return Err(RegistryError::DigestInvalid(format!(
                    "uploaded content has digest {computed}, not {digest}"
                )));
            }
            self.pin_blob(repo, digest, size).await?;
            self.blobs
                .commit_upload(&id, &store_state, digest, size)
                .await?;
            Ok(size)
        }
        .await;
        match result {
            Ok(size) => {
                self.meta.link_blob(repo, digest, size).await?;
                self.hold_to_quota(repo, digest, quota).await?;
                Ok(size)
            }
            Err(e) => {
                self.blobs.abort_upload(&id, &store_state).await?;
                Err(e)
            }
        }
    }

    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        let slot = self.slot(id);
        let _serialized = slot.lock().await;
        let session = self.session(repo, id).await?;
        self.drop_session(&session).await
    }

    async fn drop_session(&self, session: &UploadSession) -> Result<()> {
        self.blobs
            .abort_upload(&session.id, &session.store_state)
            .await?;
        self.meta.delete_upload(&session.id).await?;
        self.forget_slot(&session.id);
        Ok(())
    }

    /// Removes sessions idle for longer than `idle`, with their bytes.
    pub async fn expire_uploads(&self, idle: Duration) -> Result<usize> {
        let idle_since = now() - idle.as_secs() as i64;
        let stale = self.meta.stale_uploads(idle_since).await?;
        for id in &stale {
            let slot = self.slot(id);
            let _serialized = slot.lock().await;
            // (Looked up again: a chunk may have arrived since, here or on another node.)
            match self.meta.upload(id).await? {
                Some(session) if session.updated_at < idle_since => {
                    self.drop_session(&session).await?
                }
                Some(_) => {}
                None => self.forget_slot(id),
            }
        }
        Ok(stale.len())
    }

    // ---------------------------------------------------------------- manifests

    /// Validates and stores a manifest under `reference` and any extra `tags`, as the
    /// repository's policies say (floating tags move with releases, immutable tags stay);
    /// `actor` is who the tag history names. Returns its digest, its subject if it has
    /// one, and the tags that moved.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        extra_tags: Vec<Tag>,
        actor: &str,
    ) -> Result<StoredManifest> {
        if body.len() > manifest::MAX_MANIFEST_BYTES {
            return Err(RegistryError::ManifestTooLarge {
                limit: manifest::MAX_MANIFEST_BYTES,
            });
        }
        let parsed: ParsedManifest = manifest::parse(content_type, &body)
            .map_err(|e| RegistryError::ManifestInvalid(e.0))?;
        let mut tags = extra_tags;
        let digest = match reference {
            Reference::Digest(wanted) => {
                let computed = wanted.algorithm().digest_of(&body);
                if &computed != wanted {
                    return Err(RegistryError::DigestInvalid(format!(
                        "manifest has digest {computed}, not {wanted}"
                    )));
                }
                computed
            }
            Reference::Tag(tag) => {
                tags.insert(0, tag.clone());
                Algorithm::Sha256.digest_of(&body)
            }
        };
        // One read for the policy in force and the namespace's quota.
        let settings = self
            .meta
            .policies(&[repo.namespace(), repo.as_str()])
            .await?;
        // Under a quota, a new manifest counts (one stored again takes no more room).
        if let Some(quota) = policy::quota_in(&settings, repo.namespace())
            && self.meta.manifest_by_digest(repo, &digest).await?.is_none()
        {
            self.within_quota(repo, quota, body.len() as u64).await?;
        }
        let policy = policy::effective(repo, &settings);
        // require-golden-base: checked before anything is stored.
        let mut warning = None;
        if policy.golden != GoldenMode::Off
            && let Some(image) = berth_core::golden::image_layers(&body)
            && let Some(why) = golden::check(&*self.meta, repo, &tags, &image).await?
        {
            if policy.golden == GoldenMode::Enforce {
                return Err(RegistryError::NotGolden(why));
            }
            warning = Some(why);
        }
        let update = TagUpdate {
            immutable: tags
                .iter()
                .filter(|t| policy.is_immutable(t.as_str()))
                .cloned()
                .collect(),
            tags,
            semver_floats: policy.semver_floats,
            actor: actor.to_owned(),
            mirrored: false,
        };
        let record = ManifestRecord {
            digest: digest.clone(),
            media_type: parsed.media_type,
            body,
            subject: parsed.subject.clone(),
            artifact_type: parsed.artifact_type,
            annotations: parsed.annotations,
        };
        match self
            .meta
            .put_manifest_with(repo, &record, &parsed.blobs, &parsed.manifests, &update)
            .await
        {
            Ok(moves) => {
                if let Some(why) = &warning {
                    self.meta
                        .record_push_warning(repo, &digest, why, actor)
                        .await?;
                }
                Ok(StoredManifest {
                    digest,
                    subject: parsed.subject,
                    moves,
                    warning,
                })
            }
            Err(PutManifestError::MissingBlob(d)) => Err(RegistryError::ManifestBlobUnknown(d)),
            Err(PutManifestError::TagImmutable(tag)) => Err(RegistryError::TagImmutable {
                repository: repo.clone(),
                tag: tag.as_str().to_owned(),
            }),
            Err(PutManifestError::Store(e)) => Err(e.into()),
        }
    }

    /// Stores a mirror's copy of an upstream manifest (its digest verified by the
    /// caller), tagged `tag` if given: its blobs and child manifests come later, when
    /// clients ask for them.
    pub async fn put_mirrored_manifest(
        &self,
        repo: &RepoName,
        fetched: &crate::mirror::FetchedManifest,
        tag: Option<&Tag>,
        actor: &str,
    ) -> Result<ManifestRecord> {
        let parsed: ParsedManifest = manifest::parse(Some(&fetched.media_type), &fetched.body)
            .map_err(|e| RegistryError::ManifestInvalid(format!("from the upstream: {}", e.0)))?;
        let record = ManifestRecord {
            digest: fetched.digest.clone(),
            media_type: parsed.media_type,
            body: fetched.body.clone(),
            subject: parsed.subject,
            artifact_type: parsed.artifact_type,
            annotations: parsed.annotations,
        };
        let update = TagUpdate {
            mirrored: true,
            ..TagUpdate::plain(tag.map(std::slice::from_ref).unwrap_or_default(), actor)
        };
        match self
            .meta
            .put_manifest_with(repo, &record, &parsed.blobs, &parsed.manifests, &update)
            .await
        {
            Ok(_) => Ok(record),
            Err(PutManifestError::Store(e)) => Err(e.into()),
            Err(other) => Err(RegistryError::internal(other)),
        }
    }

    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestRecord> {
        let found = match reference {
            Reference::Digest(d) => self.meta.manifest_by_digest(repo, d).await?,
            Reference::Tag(t) => self.meta.manifest_by_tag(repo, t).await?,
        };
        found.ok_or(RegistryError::ManifestUnknown)
    }

    /// By digest: deletes the manifest and its tags. By tag: deletes that tag only.
    /// Refused if an immutable tag would go.
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        actor: &str,
    ) -> Result<()> {
        let policy = policy::for_repository(&*self.meta, repo).await?;
        let immutable = |tag: &str| RegistryError::TagImmutable {
            repository: repo.clone(),
            tag: tag.to_owned(),
        };
        let deleted = match reference {
            Reference::Digest(d) => {
                if !policy.immutable.is_empty() {
                    let tags = self.meta.manifest_tags(repo, d).await?;
                    if let Some(tag) = tags.iter().find(|t| policy.is_immutable(t)) {
                        return Err(immutable(tag));
                    }
                }
                self.meta.delete_manifest(repo, d, actor).await?
            }
            Reference::Tag(t) => {
                if policy.is_immutable(t.as_str())
                    && self.meta.manifest_by_tag(repo, t).await?.is_some()
                {
                    return Err(immutable(t.as_str()));
                }
                self.meta.delete_tag(repo, t, actor).await?
            }
        };
        if deleted {
            Ok(())
        } else {
            Err(RegistryError::ManifestUnknown)
        }
    }

    // ---------------------------------------------------------------- listings

    pub async fn list_tags(&self, repo: &RepoName, last: Option<&str>, limit: u32) -> Result<Page> {
        self.meta
            .list_tags(repo, last, limit)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repo.clone()))
    }

    pub async fn referrers(
        &self,
        repo: &RepoName,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        Ok(self.meta.referrers(repo, digest, artifact_type).await?)
    }

    /// The repositories `viewer` may read, a page at a time.
    pub async fn catalog(
        &self,
        viewer: berth_meta::Viewer<'_>,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Page> {
        Ok(self.meta.visible_repositories(viewer, last, limit).await?)
    }
}
