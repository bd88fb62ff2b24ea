//! Authentication and authorization, with no IO of its own: the caller brings the facts
//! from the metadata store and the clock.
//!
//! - [`credentials`]: what a request presents in `Authorization`, parsed one way.
//! - [`secret`]: passwords (argon2, in reusable work areas) and personal access tokens
//!   (random, stored hashed).
//! - [`jwt`]: the signed bearer and refresh tokens of Docker's token-auth flow.
//! - [`scope`]: Docker's `repository:NAME:pull,push` scope strings.
//! - [`policy`]: who may do what to a repository.
//! - [`token_request`]: what a client asks the token endpoint for.

pub mod credentials;
pub mod jwt;
pub mod policy;
pub mod scope;
pub mod secret;
pub mod token_request;

pub use jwt::{AccessClaims, Credential, Grant, RefreshClaims, TokenError, TokenSigner};
pub use policy::{Principal, repository_rights};
pub use scope::{Resource, Scope};
