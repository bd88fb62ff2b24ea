//! What is inside an image, offline: berth reads an image's layers for its operating
//! system and packages ([`layers`], [`inventory`]), writes them down as a CycloneDX SBOM
//! ([`sbom`]), and matches them against OSV advisories ([`osv`], [`matching`]) by each
//! packaging system's own version order ([`versions`]).
//!
//! The crate reads what it is given (layer streams, advisory files) and keeps scratch
//! copies of package databases in a directory the caller names; storing inventories,
//! findings and advisories is the metadata store's job, fetching layers the server's.

pub mod inventory;
pub mod layers;
pub mod matching;
pub mod osv;
mod rpm;
pub mod sbom;
pub mod versions;

pub use inventory::{Inventory, Os, Package, PackageKind};
pub use layers::{Collector, Compression};
pub use matching::{AdvisoryIndex, Finding, Severity};
pub use osv::Advisory;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("reading a layer: {0}")]
    Layer(String),
    #[error("reading advisories: {0}")]
    Advisories(String),
}
