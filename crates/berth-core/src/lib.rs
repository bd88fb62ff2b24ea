//! The OCI Distribution vocabulary berth speaks: validated names, tags, digests and
//! references, manifest parsing, the spec's error codes, and the pure routing of a request
//! line into an [`Endpoint`].
//!
//! This crate does no IO: no tokio, no axum, no sqlx. Everything here is table-testable.

pub mod account;
pub mod digest;
pub mod endpoint;
pub mod error;
pub mod golden;
pub mod manifest;
pub mod name;
pub mod range;
pub mod size;
pub mod tag_policy;

pub use account::{
    AccountError, AccountName, Actions, Relation, RepositoryFacts, Role, TokenScope,
};
pub use digest::{Algorithm, Digest, DigestError, HashStateError, Hasher};
pub use endpoint::{Endpoint, EndpointError};
pub use error::ErrorCode;
pub use name::{NameError, Reference, RepoName, Tag};
