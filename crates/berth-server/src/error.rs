//! What can go wrong in the registry service, in terms a client can act on.
//! The HTTP layer turns each variant into a status and an OCI error code
//! (`http::error`), by an exhaustive match.

use berth_core::{Digest, RepoName};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("blob {0} is not in this repository")]
    BlobUnknown(Digest),
    #[error("upload session unknown")]
    UploadUnknown,
    #[error("chunk starts at {got}, but the upload holds {offset} bytes")]
    UploadOutOfOrder { offset: u64, got: u64 },
    #[error("{0}")]
    UploadInvalid(String),
    #[error("{0}")]
    DigestInvalid(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    SizeInvalid(String),
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("manifest unknown")]
    ManifestUnknown,
    #[error("manifest references {0}, which is not in this repository")]
    ManifestBlobUnknown(Digest),
    #[error("manifest is larger than {limit} bytes")]
    ManifestTooLarge { limit: usize },
    #[error("repository {0} is not known")]
    NameUnknown(RepoName),
    #[error("this client has {limit} upload sessions open already; finish or cancel some first")]
    TooManyUploads { limit: u32 },
    /// The `immutable-tags` policy protects the tag (the message is what Docker shows).
    #[error("tag {repository}:{tag} is immutable")]
    TagImmutable { repository: RepoName, tag: String },
    /// `require-golden-base enforce` refused an image (the message names the closest
    /// golden image).
    #[error("{0}")]
    NotGolden(String),
    /// `block-vulnerable` refused a pull (the message names the worst finding).
    #[error("{0}")]
    Vulnerable(String),
    /// The namespace's storage quota would be exceeded.
    #[error(
        "namespace {namespace} is over its storage quota: this push would bring it to {} of {} \
         (remove images, or ask an administrator for more)",
        berth_core::size::human(*.would_use),
        berth_core::size::human(*.quota)
    )]
    QuotaExceeded {
        namespace: String,
        quota: u64,
        would_use: u64,
    },
    /// A mirror's upstream could not serve what was not cached (the message names it).
    #[error(transparent)]
    Upstream(#[from] crate::mirror::UpstreamError),
    /// Mirrored repositories are copies of their upstream's.
    #[error("{0} is a read-only mirror of {1}")]
    ReadOnlyMirror(RepoName, String),
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// A fault of the server or its stores: logged with its cause, sent as `UNKNOWN`.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl RegistryError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> RegistryError {
        RegistryError::Internal(Box::new(e))
    }
}

impl From<berth_meta::MetaError> for RegistryError {
    fn from(e: berth_meta::MetaError) -> Self {
        RegistryError::internal(e)
    }
}

impl From<std::io::Error> for RegistryError {
    fn from(e: std::io::Error) -> Self {
        RegistryError::internal(e)
    }
}

pub type Result<T> = std::result::Result<T, RegistryError>;
