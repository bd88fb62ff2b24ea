//! The metadata store: everything about the registry that is not blob bytes.
//!
//! Repositories, which blobs each repository may serve, manifests (stored whole: they
//! are small and read on every pull), tags, the subject index behind referrers, and
//! upload sessions, so that a session survives a restart and can later be shared by
//! several nodes; accounts ([`accounts`]); and the catalog the web site and search
//! read ([`catalog`]). One trait method is one transaction;
//! lookups return `Option`, absence is not an error; no backend type (sqlx) crosses the
//! trait.

use async_trait::async_trait;
use berth_core::{Algorithm, Digest, RepoName, Tag};

pub mod accounts;
pub mod catalog;
pub mod mirror;
pub mod ops;
pub mod postgres;
mod rows;
pub mod scans;
pub mod sqlite;
pub mod testsuite;

pub use accounts::{
    AccessToken, AccountRefusal, AccountStore, Member, Namespace, NamespaceKind, Org, SignInWindow,
    User, Viewer, WebSession,
};
pub use catalog::{CatalogStore, RecentScope, RepositoryCard, SearchQuery, SearchResults, TagRow};
pub use mirror::{MirrorPin, MirrorStore};
pub use ops::{
    AttemptOutcome, AuditEntry, AuditEvent, AuditQuery, Delivery, OpsStore, RequestWindow, TagAge,
    Webhook, WebhookStore,
};
pub use postgres::PgMetaStore;
pub use scans::{AdvisoryRecord, ImageScan, ImportCounts, ScanStore, VulnDbStatus};
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
    /// An immutable tag points at another manifest already.
    #[error("tag {0} is immutable")]
    TagImmutable(Tag),
    #[error(transparent)]
    Store(#[from] MetaError),
}

/// How a manifest PUT moves tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagUpdate {
    /// Tags to point at the manifest.
    pub tags: Vec<Tag>,
    /// Of those, the ones that may not move once they point somewhere
    /// (`immutable-tags`): pointing one elsewhere refuses the whole PUT.
    pub immutable: Vec<Tag>,
    /// `floating-tags semver`: each release among `tags` also moves the floats of its
    /// lines (`berth_core::tag_policy::floats_moved_by`), decided in the same
    /// transaction against every tag then in the repository, so that concurrent pushes
    /// leave each float at the highest release.
    pub semver_floats: bool,
    /// Who pushed: recorded in the tag history.
    pub actor: String,
    /// A copy of another registry's manifest (a mirror's cache): its blobs arrive
    /// later, when clients ask for them, so they are recorded as its references (which
    /// keeps them from collection once they are here) without being required to be here
    /// already. (Child manifests never are required: any index may be sparse.)
    pub mirrored: bool,
}

impl TagUpdate {
    /// Plain tags, no policy.
    pub fn plain(tags: &[Tag], actor: &str) -> TagUpdate {
        TagUpdate {
            tags: tags.to_vec(),
            actor: actor.to_owned(),
            ..TagUpdate::default()
        }
    }
}

/// Why a tag moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagMoveReason {
    /// Pushed by name (`PUT /v2/NAME/manifests/TAG`, or `?tag=`).
    Push,
    /// Moved by the `floating-tags semver` policy, along with a pushed release.
    Float,
    /// Deleted, or taken away with its manifest.
    Delete,
}

impl TagMoveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            TagMoveReason::Push => "push",
            TagMoveReason::Float => "float",
            TagMoveReason::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<TagMoveReason> {
        match s {
            "push" => Some(TagMoveReason::Push),
            "float" => Some(TagMoveReason::Float),
            "delete" => Some(TagMoveReason::Delete),
            _ => None,
        }
    }
}

/// One change of one tag, as its history records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMove {
    /// Increasing with time within a store: pages of history go by it.
    pub id: i64,
    pub repository: RepoName,
    pub tag: String,
    /// The manifest it pointed at before (`None`: it did not exist).
    pub from: Option<Digest>,
    /// The manifest it points at after (`None`: deleted).
    pub to: Option<Digest>,
    pub reason: TagMoveReason,
    pub actor: String,
    /// Unix seconds.
    pub at: i64,
}

/// One policy setting on a namespace (`gallery`) or repository (`gallery/ui`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySetting {
    pub scope: String,
    pub key: String,
    pub value: String,
    pub updated_by: String,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A golden image entry: every tag of `repository`, or those matching `tags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenImage {
    pub repository: RepoName,
    /// A tag glob (`2.*`); `None`: every tag.
    pub tags: Option<String>,
    pub added_by: String,
    /// Unix seconds.
    pub added_at: i64,
}

/// A warning recorded about a pushed manifest (`require-golden-base warn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushWarning {
    pub id: i64,
    pub repository: RepoName,
    pub digest: Digest,
    pub message: String,
    pub actor: String,
    /// Unix seconds.
    pub at: i64,
}

#[async_trait]
pub trait MetaStore:
    AccountStore + CatalogStore + MirrorStore + OpsStore + WebhookStore + ScanStore
{
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
    /// Stores a manifest and moves tags to it as `update` says, in one transaction,
    /// after checking that every blob in `blobs` and manifest in `children` is in the
    /// repository; records every tag that changed in its history and returns those
    /// changes.
    async fn put_manifest_with(
        &self,
        repository: &RepoName,
        manifest: &ManifestRecord,
        blobs: &[Digest],
        children: &[Digest],
        update: &TagUpdate,
    ) -> std::result::Result<Vec<TagMove>, PutManifestError>;
    /// [`MetaStore::put_manifest_with`] with plain `tags` and no one to name.
    async fn put_manifest(
        &self,
        repository: &RepoName,
        manifest: &ManifestRecord,
        blobs: &[Digest],
        children: &[Digest],
        tags: &[Tag],
    ) -> std::result::Result<(), PutManifestError> {
        let update = TagUpdate::plain(tags, "");
        self.put_manifest_with(repository, manifest, blobs, children, &update)
            .await
            .map(drop)
    }
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
    /// Deletes a manifest and every tag pointing at it (recorded in their history as
    /// done by `actor`).
    async fn delete_manifest(
        &self,
        repository: &RepoName,
        digest: &Digest,
        actor: &str,
    ) -> Result<bool>;
    /// Deletes one tag; the manifest stays.
    async fn delete_tag(&self, repository: &RepoName, tag: &Tag, actor: &str) -> Result<bool>;
    /// The tags pointing at a manifest, in name order.
    async fn manifest_tags(&self, repository: &RepoName, digest: &Digest) -> Result<Vec<String>>;
    /// Recorded changes of the repository's tags (of `tag` only, if given), newest
    /// first, with ids below `before`, at most `limit`.
    async fn tag_history(
        &self,
        repository: &RepoName,
        tag: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<TagMove>>;

    // ---- policies ----
    /// Sets (or with `None` removes) policy `key` on `scope`.
    async fn set_policy(
        &self,
        scope: &str,
        key: &str,
        value: Option<&str>,
        actor: &str,
    ) -> Result<()>;
    /// The settings on any of `scopes`, by scope then key.
    async fn policies(&self, scopes: &[&str]) -> Result<Vec<PolicySetting>>;

    // ---- trust: golden images, namespace marks, push warnings ----
    /// Adds a golden image entry; `false` if it was there already.
    async fn add_golden(
        &self,
        repository: &RepoName,
        tags: Option<&str>,
        actor: &str,
    ) -> Result<bool>;
    /// Removes one; `false` if there was none.
    async fn remove_golden(&self, repository: &RepoName, tags: Option<&str>) -> Result<bool>;
    /// Every golden image entry, by repository then tag glob.
    async fn golden_images(&self) -> Result<Vec<GoldenImage>>;
    /// Marks a namespace (`official`, `verified`), or with `None` removes its mark.
    async fn set_namespace_mark(&self, namespace: &str, mark: Option<&str>) -> Result<()>;
    /// Every namespace mark `(namespace, mark)` that was set, by namespace.
    async fn namespace_marks(&self) -> Result<Vec<(String, String)>>;
    /// Records a warning about a pushed manifest.
    async fn record_push_warning(
        &self,
        repository: &RepoName,
        digest: &Digest,
        message: &str,
        actor: &str,
    ) -> Result<()>;
    /// The repository's push warnings, newest first, at most `limit`.
    async fn push_warnings(&self, repository: &RepoName, limit: u32) -> Result<Vec<PushWarning>>;
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
    /// Bytes the whole registry holds: each live blob once, plus every manifest.
    async fn stored_bytes(&self) -> Result<u64>;

    // ---- operations ----
    /// Whether the store can be used now (a readiness probe): it answers a query, and a
    /// database file is still the one opened (not removed or replaced underneath).
    async fn check(&self) -> Result<()>;

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

/// Whether `update` may move floats: semver floats on, and a release among its tags.
/// (Backends then read the repository's tag names for [`tags_to_move`].)
pub(crate) fn pushes_releases(update: &TagUpdate) -> bool {
    update.semver_floats
        && update.tags.iter().any(|t| {
            berth_core::tag_policy::TagVersion::parse(t.as_str()).is_some_and(|v| v.is_release())
        })
}

/// The tags a manifest PUT points at its manifest, in name order, each once: the
/// update's own, then the floats its releases move given `existing` (every tag name in
/// the repository, read in the same transaction).
pub(crate) fn tags_to_move(
    update: &TagUpdate,
    existing: &[String],
) -> Vec<(String, TagMoveReason)> {
    let mut wanted: Vec<(String, TagMoveReason)> = update
        .tags
        .iter()
        .map(|t| (t.as_str().to_owned(), TagMoveReason::Push))
        .collect();
    if pushes_releases(update) {
        let all: Vec<&str> = existing
            .iter()
            .map(String::as_str)
            .chain(update.tags.iter().map(Tag::as_str))
            .collect();
        for pushed in &update.tags {
            for float in
                berth_core::tag_policy::floats_moved_by(pushed.as_str(), all.iter().copied())
            {
                if !wanted.iter().any(|(name, _)| *name == float) {
                    wanted.push((float, TagMoveReason::Float));
                }
            }
        }
    }
    wanted.sort_by(|a, b| a.0.cmp(&b.0));
    wanted.dedup_by(|a, b| a.0 == b.0);
    wanted
}
