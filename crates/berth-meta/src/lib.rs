//! The metadata store: everything about the registry that is not blob bytes.
//!
//! Repositories, which blobs each repository may serve, manifests (stored whole: they
//! are small and read on every pull), tags, the subject index behind referrers, and
//! upload sessions, so that a session survives a restart and can later be shared by
//! several nodes; and accounts ([`accounts`]). One trait method is one transaction;
//! lookups return `Option`, absence is not an error; no backend type (sqlx) crosses the
//! trait.

use async_trait::async_trait;
use berth_core::{Algorithm, Digest, RepoName, Tag};

pub mod accounts;
pub mod postgres;
pub mod sqlite;
pub mod testsuite;

pub use accounts::{
    AccessToken, AccountRefusal, AccountStore, Member, Namespace, NamespaceKind, Org, SignInWindow,
    User, Viewer, WebSession,
};
pub use postgres::PgMetaStore;
pub use sqlite::SqliteMetaStore;

#[derive(Debug, thiserror::Error)]
#[error("metadata store: {0}")]
pub struct MetaError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

pub type Result<T> = std::result::Result<T, MetaError>;

/// An upload in progress. Its bytes live in the blob store under `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    pub id: String,
    pub repository: RepoName,
    /// The algorithm the bytes are hashed with while they stream in.
    pub algorithm: Algorithm,
    /// Bytes received and recorded so far; the next chunk must start here.
    pub offset: u64,
    /// The hash of those `offset` bytes, serialized (empty: nothing hashed yet). Kept
    /// with the offset so that any node can take the next chunk without reading back.
    pub hash_state: Vec<u8>,
    /// What the blob store needs to continue the upload (a multipart upload's id and
    /// parts), opaque to everyone else; recorded with the offset it belongs to.
    pub store_state: Vec<u8>,
    /// Unix seconds of the last change, for expiring idle sessions.
    pub updated_at: i64,
    /// Who opened it (`user:NAME`, or `addr:ADDRESS` when anonymous), for the limit on
    /// open sessions per client.
    pub client: String,
}

/// A manifest as stored: the exact pushed bytes and what indexes need.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    /// The exact pushed bytes (shared, not copied, on their way to the store).
    pub body: bytes::Bytes,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    /// The manifest's `annotations` as JSON text, served in referrers.
    pub annotations: Option<String>,
}

/// One entry of a referrers listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// A page of names in lexical order, and whether more follow it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    pub items: Vec<String>,
    pub more: bool,
}

/// Why a manifest could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PutManifestError {
    #[error("blob {0} is not in the repository")]
    MissingBlob(Digest),
    #[error("manifest {0} is not in the repository")]
    MissingManifest(Digest),
    #[error(transparent)]
    Store(#[from] MetaError),
}

#[async_trait]
pub trait MetaStore: AccountStore {
    // ---- blobs ----
    /// Size of `digest` if `repository` may serve it (pushed, mounted or linked there).
    async fn repository_blob(&self, repository: &RepoName, digest: &Digest) -> Result<Option<u64>>;
    /// Size of `digest` if any repository holds it.
    async fn blob(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Reserves `digest` for `repository` before its bytes are published: records it
    /// as pending (not served) if it is new, and links it freshly (a push in progress,
    /// which collection leaves alone). `false` if a collector is deleting the digest's
    /// bytes right now: publish nothing, and try again shortly.
    async fn pin_blob(&self, repository: &RepoName, digest: &Digest, size: u64) -> Result<bool>;
    /// Records that the blob store now holds `digest` (live: served from now on) and
    /// links it freshly into `repository` (creating the repository on first push).
    /// Called after [`MetaStore::pin_blob`] and publishing.
    async fn link_blob(&self, repository: &RepoName, digest: &Digest, size: u64) -> Result<()>;
    /// Links a live blob into `repository` (a cross-repository mount, a fresh link) and
    /// returns its size; with `from`, only if that repository holds it. `None` if it is
    /// not there or being collected.
    async fn mount_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<Option<u64>>;
    /// Removes `digest` from `repository` (the bytes stay for other repositories); a
    /// release, as for a deleted manifest.
    async fn unlink_blob(&self, repository: &RepoName, digest: &Digest) -> Result<bool>;

    // ---- upload sessions ----
    /// Records a new session unless its client holds `max_per_client` open sessions
    /// already (then `false`; checked and written in one transaction).
    async fn create_upload(&self, session: &UploadSession, max_per_client: u32) -> Result<bool>;
    async fn upload(&self, id: &str) -> Result<Option<UploadSession>>;
    /// Records `progress` (its offset, hash and store state, and `updated_at`) for
    /// session `progress.id` if the session is still at offset `from`; `false` if it
    /// was not (another request got there first) or is gone.
    async fn advance_upload(&self, progress: &UploadSession, from: u64) -> Result<bool>;
    async fn delete_upload(&self, id: &str) -> Result<bool>;
    /// Finishes upload `id`, whose bytes the blob store now holds as `digest`: records
    /// the blob, links it into `repository` and forgets the session, in one transaction.
    async fn complete_upload(
        &self,
        id: &str,
        repository: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<()>;
    /// Sessions not touched since `idle_since` (unix seconds).
    async fn stale_uploads(&self, idle_since: i64) -> Result<Vec<String>>;

    // ---- manifests and tags ----
    /// Stores a manifest and points `tags` at it, in one transaction, after checking that
    /// every blob in `blobs` and manifest in `children` is in the repository.
    async fn put_manifest(
        &self,
        repository: &RepoName,
        manifest: &ManifestRecord,
        blobs: &[Digest],
        children: &[Digest],
        tags: &[Tag],
    ) -> std::result::Result<(), PutManifestError>;
    async fn manifest_by_digest(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>>;
    async fn manifest_by_tag(
        &self,
        repository: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>>;
    /// Deletes a manifest and every tag pointing at it.
    async fn delete_manifest(&self, repository: &RepoName, digest: &Digest) -> Result<bool>;
    /// Deletes one tag; the manifest stays.
    async fn delete_tag(&self, repository: &RepoName, tag: &Tag) -> Result<bool>;
    /// Tags after `last`, at most `limit`; `None` if the repository does not exist.
    async fn list_tags(
        &self,
        repository: &RepoName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Page>>;
    /// Manifests whose `subject` is `digest`, optionally only of one artifact type.
    async fn referrers(
        &self,
        repository: &RepoName,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>>;

    // ---- repositories ----
    async fn list_repositories(&self, last: Option<&str>, limit: u32) -> Result<Page>;
    /// Bytes each repository holds (its linked blobs and its manifests; a blob shared by
    /// several repositories counts in each), for repositories after `last`, at most
    /// `limit`, in name order; with `namespace`, only its repositories.
    async fn repository_usage(
        &self,
        namespace: Option<&str>,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RepositoryUsage>>;
    /// Bytes a namespace holds: each distinct blob linked in any of its repositories
    /// once, plus its manifests.
    async fn namespace_usage(&self, namespace: &str) -> Result<u64>;

    // ---- garbage collection (see ARCHITECTURE.md, "Garbage collection") ----
    /// Collectable blobs after `after` in digest order, at most `limit`, without claiming
    /// them (for a dry run): see [`GcCutoffs`] for what is collectable.
    async fn gc_candidates(
        &self,
        cutoffs: &GcCutoffs,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<GcBlob>>;
    /// Claims at most `limit` collectable blobs for deletion (state `deleting`, with the
    /// time): from the commit on they are neither served nor linked, pinned or mounted,
    /// and other collectors skip them unless the claim is older than
    /// `cutoffs.claimed_before`. The caller deletes their bytes, then forgets them.
    async fn gc_claim_blobs(&self, cutoffs: &GcCutoffs, limit: u32) -> Result<Vec<GcBlob>>;
    /// Forgets claimed blobs whose bytes are gone: their records and links.
    async fn gc_forget_blobs(&self, digests: &[Digest]) -> Result<()>;
    /// Whether any record of `digest` exists, in any state.
    async fn gc_blob_known(&self, digest: &Digest) -> Result<bool>;
    /// Claims bytes the blob store holds that no record describes (published before a
    /// crash cut their metadata): inserts a `deleting` record unless any record exists
    /// (then `false`: leave them).
    async fn gc_claim_orphan(&self, digest: &Digest, size: u64) -> Result<bool>;
    /// Removes (or with `dry_run` only counts) links of blobs into repositories none of
    /// whose manifests references them, linked before `cutoffs.linked_before`, of live
    /// blobs released before `cutoffs.released_before` (or never referenced): what a
    /// repository no longer uses stops counting as its storage.
    async fn gc_stale_links(&self, cutoffs: &GcCutoffs, dry_run: bool) -> Result<u64>;
    /// Manifests with no tag in repositories named in `scopes` (a namespace `ns`, every
    /// repository under it, or one repository `ns/repo`), that no manifest of their
    /// repository lists as a child, whose subject (if any) is gone from the repository,
    /// created before `cutoffs.linked_before` and untagged before
    /// `cutoffs.released_before`: deleted as [`MetaStore::delete_manifest`] does (their
    /// blobs released), unless `dry_run`. Returns them.
    async fn gc_untagged_manifests(
        &self,
        scopes: &[String],
        cutoffs: &GcCutoffs,
        dry_run: bool,
    ) -> Result<Vec<(RepoName, Digest)>>;
}

/// When things stop being protected from garbage collection (unix seconds). A blob is
/// collectable when it is live or pending (not already claimed, or claimed before
/// `claimed_before`) and
/// - no manifest in any repository references it (as config, layer or blob),
/// - no link of it is younger than `linked_before` (a push in progress: uploaded,
///   pinned or mounted, its manifest not yet pushed; deleting a manifest or unlinking
///   ends the links it involved by setting their time to 0), and
/// - it was released (its last reference went: a manifest deleted, a blob unlinked)
///   before `released_before`, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcCutoffs {
    /// `now - grace`.
    pub released_before: i64,
    /// `now - max(grace, push window)`.
    pub linked_before: i64,
    /// `now - claim timeout`: older claims were left by a collector that died.
    pub claimed_before: i64,
}

/// A blob as garbage collection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcBlob {
    pub digest: Digest,
    pub size: u64,
}

/// What a repository holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryUsage {
    pub repository: RepoName,
    /// Bytes of its linked live blobs plus its manifests.
    pub bytes: u64,
    pub blobs: u64,
    pub manifests: u64,
    pub tags: u64,
}
