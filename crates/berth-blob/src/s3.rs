//! The S3 backend (AWS S3, Garage, MinIO, Ceph RGW), for several nodes sharing a bucket.
//!
//! Layout under the bucket's prefix: `blobs/<alg>/<hex[..2]>/<hex>` for published
//! blobs; for an upload, a multipart upload at `uploads/<id>/data` and the bytes past its
//! last part in one `uploads/<id>/tail-<nonce>` object.
//!
//! S3 parts must be at least 5 MiB (all but the last) and cannot be read back before the
//! upload completes, and the next chunk may arrive at another node. So an upload's state
//! ([`Staged`], recorded by the metadata store with the offset) says which parts hold
//! its first bytes (by ETag) and which tail object holds the rest. Every write goes to a
//! new part number or a new tail object and becomes part of the upload only when the
//! state naming it is recorded: bytes from a request that died (or lost a race) before
//! that are never used, and completing the multipart upload checks each part's ETag, so
//! what is published is exactly what was hashed.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_core::Digest;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{BlobBody, BlobStore, StagedUpload, StoredBlob, UploadState, UploadWriter};
use futures::stream::BoxStream;

/// Size of every part but the last: above S3's 5 MiB minimum, and equal sizes suit the
/// stores that require them (R2). 10,000 parts (S3's maximum) make 80 GiB.
const PART_SIZE: usize = 8 * 1024 * 1024;
const MAX_PARTS: usize = 10_000;

/// Parts being filled at once across all uploads: bounds the memory of buffered parts.
const PART_BUFFERS: usize = 16;

pub struct S3BlobStore {
    store: Arc<AmazonS3>,
    /// The key prefix inside the bucket (may be empty).
    prefix: String,
    part_buffers: Arc<Semaphore>,
    /// Answer blob GETs with a presigned URL valid this long, instead of streaming.
    redirect: Option<Duration>,
}

/// What the metadata records about an upload (as JSON), with the offset it belongs to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Staged {
    /// The multipart upload at `uploads/<id>/data`.
    multipart: String,
    /// ETags of parts 1.. (in order), each [`PART_SIZE`] bytes.
    parts: Vec<String>,
    /// The object holding the bytes after the parts (`tail-<nonce>`), and how many of its
    /// bytes count.
    tail: Option<String>,
    tail_len: u64,
    /// The tail object this state replaced: no longer needed once this state is
    /// recorded, so the next append removes it.
    replaced_tail: Option<String>,
}

/// The part of a ListMultipartUploads answer berth reads.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MultipartListing {
    #[serde(rename = "Upload", default)]
    uploads: Vec<MultipartEntry>,
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MultipartEntry {
    key: String,
    upload_id: String,
    initiated: String,
}

impl Staged {
    fn len(&self) -> u64 {
        (self.parts.len() * PART_SIZE) as u64 + self.tail_len
    }

    fn parse(state: &[u8]) -> io::Result<Staged> {
        serde_json::from_slice(state)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("upload state: {e}")))
    }

    fn encode(&self) -> io::Result<UploadState> {
        serde_json::to_vec(self).map_err(io::Error::other)
    }
}

fn store_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        e => io::Error::other(e),
    }
}

/// `s3://BUCKET[/PREFIX]` → (bucket, prefix without surrounding slashes).
pub fn parse_s3_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url:?} is not an s3://BUCKET[/PREFIX] URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid_bucket {
        return Err(format!(
            "{bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '-', '.')"
        ));
    }
    Ok((bucket.to_owned(), prefix.trim_matches('/').to_owned()))
}

impl S3BlobStore {
    /// A store on `s3://BUCKET[/PREFIX]`, with endpoint, region and credentials from the
    /// standard `AWS_*` environment variables. With `AWS_ENDPOINT_URL` set (Garage,
    /// MinIO, Ceph), requests are path-style and plain `http://` is allowed; without it
    /// (AWS itself), virtual-hosted-style. `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` overrides.
    pub fn from_env(url: &str, redirect: Option<Duration>) -> io::Result<S3BlobStore> {
        let (bucket, prefix) =
            parse_s3_url(url).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .ok();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if std::env::var_os("AWS_VIRTUAL_HOSTED_STYLE_REQUEST").is_none() {
            builder = builder.with_virtual_hosted_style_request(endpoint.is_none());
        }
        if let Some(endpoint) = &endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder
            .build()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(S3BlobStore {
            store: Arc::new(store),
            prefix,
            part_buffers: Arc::new(Semaphore::new(PART_BUFFERS)),
            redirect,
        })
    }

    fn key(&self, relative: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(relative)
        } else {
            Path::from(format!("{}/{relative}", self.prefix))
        }
    }

    /// Where the bytes of `digest` live once published.
    pub fn blob_key(&self, digest: &Digest) -> Path {
        let hex = digest.hex();
        self.key(&format!(
            "blobs/{}/{}/{hex}",
            digest.algorithm().as_str(),
            &hex[..2]
        ))
    }

    fn upload_key(&self, id: &str, name: &str) -> Path {
        // Upload ids are validated by berth-core (alphanumerics, '-', '_').
        self.key(&format!("uploads/{id}/{name}"))
    }

    /// The first `len` bytes of an upload's tail object.
    async fn read_tail(&self, id: &str, staged: &Staged) -> io::Result<Vec<Bytes>> {
        let Some(tail) = &staged.tail else {
            return Ok(Vec::new());
        };
        if staged.tail_len == 0 {
            return Ok(Vec::new());
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(0..staged.tail_len)),
            ..Default::default()
        };
        let got = self
            .store
            .get_opts(&self.upload_key(id, tail), options)
            .await
            .map_err(store_error)?;
        let chunks: Vec<Bytes> = got.into_stream().try_collect().await.map_err(store_error)?;
        let read: usize = chunks.iter().map(Bytes::len).sum();
        if read as u64 != staged.tail_len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "upload {id}: tail holds {read} bytes, not {}",
                    staged.tail_len
                ),
            ));
        }
        Ok(chunks)
    }

    /// Removes every object an upload staged (its tails, its assembled data).
    async fn remove_staged(&self, id: &str) -> io::Result<()> {
        let prefix = self.key(&format!("uploads/{id}"));
        let keys: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(store_error)?;
        for key in keys {
            self.delete_quietly(&key).await?;
        }
        Ok(())
    }

    /// Multipart uploads in progress under `uploads/` (or under `uploads/<id>/` with
    /// `id`): `(id, upload id, initiated)`. object_store has no call for this
    /// (ListMultipartUploads); it is one presigned GET, paged.
    async fn list_multipart(
        &self,
        id: Option<&str>,
    ) -> io::Result<Vec<(String, String, std::time::SystemTime)>> {
        use object_store::signer::{SignedUrlOptions, Signer};
        let root = self.key("uploads");
        let prefix = match id {
            Some(id) => format!("{}/{id}/", root.as_ref()),
            None => format!("{}/", root.as_ref()),
        };
        let client = reqwest::Client::new();
        let mut found = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![
                ("uploads".to_owned(), String::new()),
                ("prefix".to_owned(), prefix.clone()),
            ];
            if let Some((key, upload)) = &markers {
                query.push(("key-marker".to_owned(), key.clone()));
                query.push(("upload-id-marker".to_owned(), upload.clone()));
            }
            let options = SignedUrlOptions::new().with_query(query);
            let url = self
                .store
                .signed_url_opts(
                    http::Method::GET,
                    &Path::from(""),
                    Duration::from_secs(300),
                    &options,
                )
                .await
                .map_err(store_error)?;
            let answer = client.get(url).send().await.map_err(io::Error::other)?;
            let status = answer.status();
            let text = answer.text().await.map_err(io::Error::other)?;
            if !status.is_success() {
                return Err(io::Error::other(format!(
                    "listing multipart uploads: {status}: {text}"
                )));
            }
            let page: MultipartListing = quick_xml::de::from_str(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("multipart listing: {e}"),
                )
            })?;
            let under = format!("{}/", root.as_ref());
            for upload in page.uploads {
                // …/uploads/<id>/data → id
                let Some(id) = upload
                    .key
                    .strip_prefix(&under)
                    .and_then(|rest| rest.split_once('/'))
                    .map(|(id, _)| id.to_owned())
                else {
                    continue;
                };
                let initiated = humantime::parse_rfc3339_weak(&upload.initiated)
                    .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
                found.push((id, upload.upload_id, initiated));
            }
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(key), Some(upload)) => markers = Some((key, upload)),
                _ => break,
            }
        }
        Ok(found)
    }

    async fn delete_quietly(&self, key: &Path) -> io::Result<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    /// Asks the bucket for an object that is never there: an answer, even "not found",
    /// means it is reachable and the credentials work.
    async fn check(&self) -> io::Result<()> {
        let probe = self.key("ready-probe");
        match self.store.head(&probe).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    async fn stat(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match self.store.head(&self.blob_key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn open(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> io::Result<Option<BlobBody>> {
        if let Some(r) = &range
            && r.is_empty()
        {
            // S3 has no way to ask for zero bytes (the empty blob, or an empty range).
            return Ok(self.stat(digest).await?.map(|_| BlobBody {
                len: 0,
                stream: futures::stream::empty().boxed(),
            }));
        }
        let options = GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..Default::default()
        };
        let got = match self.store.get_opts(&self.blob_key(digest), options).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error(e)),
        };
        let len = match range {
            Some(r) => r.end - r.start,
            None => got.meta.size,
        };
        let stream = got.into_stream().map_err(store_error).boxed();
        Ok(Some(BlobBody { len, stream }))
    }

    async fn delete(&self, digest: &Digest) -> io::Result<bool> {
        let key = self.blob_key(digest);
        if self.stat(digest).await?.is_none() {
            return Ok(false);
        }
        self.delete_quietly(&key).await?;
        Ok(true)
    }

    async fn create_upload(&self, id: &str) -> io::Result<UploadState> {
        // Created now, not with the first part, so that its id is recorded with the
        // session from the start and an abandoned session can always abort it.
        let multipart = self
            .store
            .create_multipart(&self.upload_key(id, "data"))
            .await
            .map_err(store_error)?;
        Staged {
            multipart,
            ..Staged::default()
        }
        .encode()
    }

    async fn append_upload(
        &self,
        id: &str,
        offset: u64,
        state: &[u8],
    ) -> io::Result<Box<dyn UploadWriter>> {
        let staged = Staged::parse(state)?;
        if offset != staged.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "upload {id}: cannot append at {offset}; it holds {} bytes",
                    staged.len()
                ),
            ));
        }
        // This state is recorded, so the tail it replaced is garbage now.
        if let Some(old) = &staged.replaced_tail {
            self.delete_quietly(&self.upload_key(id, old)).await?;
        }
        Ok(Box::new(S3Writer {
            store: self.clone_handle(),
            id: id.to_owned(),
            started_with: staged.clone(),
            staged,
            pending: Vec::new(),
            pending_len: 0,
            tail_loaded: false,
            written: false,
            permit: None,
        }))
    }

    async fn read_upload(&self, id: &str, _len: u64, _state: &[u8]) -> io::Result<BlobBody> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("upload {id}: S3 cannot read back the parts of an unfinished upload"),
        ))
    }

    async fn commit_upload(
        &self,
        id: &str,
        state: &[u8],
        digest: &Digest,
        len: u64,
    ) -> io::Result<()> {
        let staged = Staged::parse(state)?;
        if len != staged.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("upload {id}: {len} bytes verified, {} staged", staged.len()),
            ));
        }
        let data = self.upload_key(id, "data");
        let target = self.blob_key(digest);
        if self.stat(digest).await?.is_some() {
            // Same digest, same bytes: someone published it first.
        } else if staged.parts.is_empty() {
            // Small blobs never needed a part: the tail is the whole blob.
            let tail = self.read_tail(id, &staged).await?;
            let payload: PutPayload = tail.into_iter().collect();
            self.store
                .put(&target, payload)
                .await
                .map_err(store_error)?;
        } else {
            let mut parts: Vec<PartId> = staged
                .parts
                .iter()
                .map(|etag| PartId {
                    content_id: etag.clone(),
                })
                .collect();
            if staged.tail_len > 0 {
                let tail = self.read_tail(id, &staged).await?;
                let part = self
                    .store
                    .put_part(
                        &data,
                        &staged.multipart,
                        parts.len(),
                        tail.into_iter().collect(),
                    )
                    .await
                    .map_err(store_error)?;
                parts.push(part);
            }
            self.store
                .complete_multipart(&data, &staged.multipart, parts)
                .await
                .map_err(store_error)?;
            // The digest is known only now, and S3 cannot rename: copy, then check.
            self.store.copy(&data, &target).await.map_err(store_error)?;
            let published = self.stat(digest).await?;
            if published != Some(len) {
                self.delete_quietly(&target).await?;
                return Err(io::Error::other(format!(
                    "upload {id}: published {published:?} bytes, not {len}"
                )));
            }
        }
        self.abort_upload(id, state).await
    }

    async fn abort_upload(&self, id: &str, state: &[u8]) -> io::Result<()> {
        let multiparts = match Staged::parse(state) {
            Ok(staged) => vec![staged.multipart],
            // No recorded state (a session lost before it was recorded): whatever the
            // bucket has started for this id.
            Err(_) => self
                .list_multipart(Some(id))
                .await?
                .into_iter()
                .map(|(_, upload, _)| upload)
                .collect(),
        };
        for multipart in multiparts {
            match self
                .store
                .abort_multipart(&self.upload_key(id, "data"), &multipart)
                .await
            {
                // Completed (it was committed) or already aborted: nothing to abort.
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::debug!(upload = id, error = %e, "aborting a multipart upload failed");
                }
            }
        }
        self.remove_staged(id).await
    }

    fn list_blobs(&self) -> BoxStream<'static, io::Result<StoredBlob>> {
        let root = self.key("blobs");
        let skip = root.as_ref().len() + 1;
        self.store
            .list(Some(&root))
            .map_err(store_error)
            .try_filter_map(move |meta| async move {
                // blobs/<alg>/<hex[..2]>/<hex> → "<alg>:<hex>"; anything else is skipped.
                let relative = meta.location.as_ref().get(skip..).unwrap_or_default();
                let digest = match relative.split('/').collect::<Vec<_>>()[..] {
                    [algorithm, _, hex] => format!("{algorithm}:{hex}").parse::<Digest>().ok(),
                    _ => None,
                };
                Ok(digest.map(|digest| StoredBlob {
                    digest,
                    size: meta.size,
                    modified: meta.last_modified.into(),
                }))
            })
            .boxed()
    }

    fn list_uploads(&self) -> BoxStream<'static, io::Result<StagedUpload>> {
        let root = self.key("uploads");
        let skip = root.as_ref().len() + 1;
        // An upload's objects (its tails) and its multipart upload may be listed in any
        // order: gather them, one entry per upload, keeping the newest write. Uploads in
        // flight are few.
        let listing = self.store.list(Some(&root)).map_err(store_error);
        let store = self.clone_handle();
        futures::stream::once(async move {
            let mut uploads = std::collections::BTreeMap::<String, std::time::SystemTime>::new();
            // Multipart uploads hold staged bytes too, and are not objects.
            for (id, _, initiated) in store.list_multipart(None).await? {
                let newest = uploads.entry(id).or_insert(initiated);
                *newest = (*newest).max(initiated);
            }
            let mut listing = std::pin::pin!(listing);
            while let Some(meta) = listing.try_next().await? {
                let relative = meta.location.as_ref().get(skip..).unwrap_or_default();
                let Some((id, _)) = relative.split_once('/') else {
                    continue;
                };
                let modified = meta.last_modified.into();
                let newest = uploads.entry(id.to_owned()).or_insert(modified);
                *newest = (*newest).max(modified);
            }
            Ok::<_, io::Error>(futures::stream::iter(
                uploads
                    .into_iter()
                    .map(|(id, modified)| Ok(StagedUpload { id, modified })),
            ))
        })
        .try_flatten()
        .boxed()
    }

    async fn redirect_url(&self, digest: &Digest) -> io::Result<Option<String>> {
        use object_store::signer::Signer;
        let Some(valid_for) = self.redirect else {
            return Ok(None);
        };
        let url = self
            .store
            .signed_url(http::Method::GET, &self.blob_key(digest), valid_for)
            .await
            .map_err(store_error)?;
        Ok(Some(url.to_string()))
    }
}

impl S3BlobStore {
    fn clone_handle(&self) -> S3BlobStore {
        S3BlobStore {
            store: self.store.clone(),
            prefix: self.prefix.clone(),
            part_buffers: self.part_buffers.clone(),
            redirect: self.redirect,
        }
    }
}

/// Appends to an upload: full parts go to the multipart upload as they fill, the rest
/// to a new tail object at `finish`.
struct S3Writer {
    store: S3BlobStore,
    id: String,
    /// The recorded state this append started from.
    started_with: Staged,
    /// The state after what was handed over so far.
    staged: Staged,
    /// Bytes after the last part: the recorded tail, then what was written.
    pending: Vec<Bytes>,
    pending_len: usize,
    tail_loaded: bool,
    written: bool,
    /// A share of the part-buffer budget, held while `pending` holds bytes.
    permit: Option<OwnedSemaphorePermit>,
}

impl S3Writer {
    async fn load_tail(&mut self) -> io::Result<()> {
        if !self.tail_loaded {
            self.pending = self.store.read_tail(&self.id, &self.staged).await?;
            self.pending_len = self.staged.tail_len as usize;
            self.tail_loaded = true;
        }
        Ok(())
    }

    /// Takes the first `n` pending bytes (splitting a chunk if needed).
    fn take_pending(&mut self, n: usize) -> Vec<Bytes> {
        let mut taken = Vec::new();
        let mut left = n;
        while left > 0 {
            let Some(first) = self.pending.first_mut() else {
                break;
            };
            if first.len() <= left {
                left -= first.len();
                taken.push(self.pending.remove(0));
            } else {
                taken.push(first.split_to(left));
                left = 0;
            }
        }
        self.pending_len -= n - left;
        taken
    }

    async fn put_full_parts(&mut self) -> io::Result<()> {
        while self.pending_len >= PART_SIZE {
            if self.staged.parts.len() + 1 >= MAX_PARTS {
                return Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    format!(
                        "upload {}: larger than {} parts of {PART_SIZE} bytes",
                        self.id, MAX_PARTS
                    ),
                ));
            }
            let part: PutPayload = self.take_pending(PART_SIZE).into_iter().collect();
            let data = self.store.upload_key(&self.id, "data");
            let put = self
                .store
                .store
                .put_part(&data, &self.staged.multipart, self.staged.parts.len(), part)
                .await
                .map_err(store_error)?;
            self.staged.parts.push(put.content_id);
        }
        Ok(())
    }
}

#[async_trait]
impl UploadWriter for S3Writer {
    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.permit.is_none() {
            let permit = self
                .store
                .part_buffers
                .clone()
                .acquire_owned()
                .await
                .map_err(io::Error::other)?;
            self.permit = Some(permit);
        }
        self.load_tail().await?;
        self.written = true;
        self.pending_len += bytes.len();
        self.pending.push(bytes);
        self.put_full_parts().await
    }

    async fn finish(mut self: Box<Self>) -> io::Result<UploadState> {
        if !self.written {
            return self.started_with.encode();
        }
        let tail = if self.pending_len > 0 {
            let name = format!("tail-{}", uuid::Uuid::new_v4().simple());
            let payload: PutPayload = std::mem::take(&mut self.pending).into_iter().collect();
            self.store
                .store
                .put(&self.store.upload_key(&self.id, &name), payload)
                .await
                .map_err(store_error)?;
            Some(name)
        } else {
            None
        };
        let staged = Staged {
            tail,
            tail_len: self.pending_len as u64,
            replaced_tail: self.started_with.tail.clone(),
            ..self.staged.clone()
        };
        staged.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bucket the tests use, from `BERTH_TEST_S3` (set by `scripts/test.sh`, which
    /// starts Garage), with a fresh prefix per test.
    pub(crate) async fn scratch_store() -> (S3BlobStore, ScratchPrefix) {
        let bucket = std::env::var("BERTH_TEST_S3").unwrap_or_else(|_| {
            panic!(
                "BERTH_TEST_S3 is not set: run scripts/test.sh, or start an S3 server \
                 (eval \"$(bash scripts/start-garage.sh)\") and export what it prints"
            )
        });
        let prefix = format!(
            "test-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let url = format!("{}/{prefix}", bucket.trim_end_matches('/'));
        let store = S3BlobStore::from_env(&url, None).unwrap();
        let guard = ScratchPrefix(store.clone_handle());
        (store, guard)
    }

    /// Removes everything under a test's prefix when the test ends.
    pub(crate) struct ScratchPrefix(S3BlobStore);

    impl Drop for ScratchPrefix {
        fn drop(&mut self) {
            let store = self.0.clone_handle();
            // Drop cannot await; a thread with its own runtime can.
            let cleanup = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let prefix = Path::from(store.prefix.as_str());
                    let keys: Vec<Path> = store
                        .store
                        .list(Some(&prefix))
                        .map_ok(|meta| meta.location)
                        .try_collect()
                        .await
                        .unwrap_or_default();
                    for key in keys {
                        let _ = store.store.delete(&key).await;
                    }
                });
            });
            let _ = cleanup.join();
        }
    }

    /// The blob store contract against a real S3 server, one test per check.
    mod contract {
        crate::blob_store_contract!(super::scratch_store());
    }

    #[test]
    fn s3_urls_name_a_bucket_and_an_optional_prefix() {
        assert_eq!(
            parse_s3_url("s3://berth-test").unwrap(),
            ("berth-test".into(), String::new())
        );
        assert_eq!(
            parse_s3_url("s3://berth-test/a/b/").unwrap(),
            ("berth-test".into(), "a/b".into())
        );
        for bad in ["berth-test", "s3://", "s3://ab", "s3://Upper", "file:///x"] {
            assert!(parse_s3_url(bad).is_err(), "{bad}");
        }
    }
}
