//! What scanning keeps: each image's inventory and findings (by manifest digest: the
//! same image in two repositories is one scan), and the imported vulnerability
//! advisories, looked up by the (ecosystem, package) pairs they affect.

use async_trait::async_trait;
use berth_core::{Digest, RepoName};

use crate::{MetaError, Result};

/// An image's scan: its inventory and the findings of its last matching (both JSON,
/// written and read by the scanner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageScan {
    pub digest: Digest,
    /// Unix seconds the layers were read.
    pub scanned_at: i64,
    /// Unix seconds the inventory was last matched against the advisories.
    pub matched_at: i64,
    pub inventory: String,
    pub findings: String,
    /// The severity of the worst finding (`critical`, ...), if any.
    pub worst: Option<String>,
}

/// An advisory to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisoryRecord {
    pub id: String,
    /// As the database says (RFC 3339); an advisory already stored with the same value
    /// is left alone.
    pub modified: String,
    /// The OSV JSON.
    pub body: String,
    /// (ecosystem, package) pairs it affects, as the scanner looks them up.
    pub packages: Vec<(String, String)>,
    /// Withdrawn upstream: importing it removes it.
    pub withdrawn: bool,
}

/// What an import changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub added: u64,
    pub updated: u64,
    pub removed: u64,
    pub unchanged: u64,
}

impl std::ops::AddAssign for ImportCounts {
    fn add_assign(&mut self, other: ImportCounts) {
        self.added += other.added;
        self.updated += other.updated;
        self.removed += other.removed;
        self.unchanged += other.unchanged;
    }
}

/// What the advisory database holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VulnDbStatus {
    pub advisories: u64,
    /// Advisories per ecosystem (an advisory about two counts in both).
    pub ecosystems: Vec<(String, u64)>,
    /// The newest `modified` of any advisory.
    pub newest_modified: Option<String>,
    /// The last import: source, unix seconds, what it changed.
    pub last_import: Option<(String, i64, ImportCounts)>,
}

#[async_trait]
pub trait ScanStore: Send + Sync + 'static {
    /// Stores (or replaces) an image's scan.
    async fn save_scan(&self, scan: &ImageScan) -> Result<()>;
    async fn image_scan(&self, digest: &Digest) -> Result<Option<ImageScan>>;
    /// Scans in digest order after `after`, at most `limit` (to match them all again).
    async fn image_scans(&self, after: Option<&Digest>, limit: u32) -> Result<Vec<ImageScan>>;
    /// Imports advisories in one transaction.
    async fn import_advisories(&self, batch: &[AdvisoryRecord]) -> Result<ImportCounts>;
    /// Records an import for `vulndb status`.
    async fn record_vulndb_import(&self, source: &str, counts: ImportCounts, at: i64)
    -> Result<()>;
    /// The OSV JSON of every advisory about any of these (ecosystem, package) pairs.
    async fn advisories_for(&self, keys: &[(String, String)]) -> Result<Vec<String>>;
    /// Advisories in id order after `after`, at most `limit`: (id, OSV JSON).
    async fn advisories(&self, after: Option<&str>, limit: u32) -> Result<Vec<(String, String)>>;
    async fn vulndb_status(&self) -> Result<VulnDbStatus>;
    /// Where an image is stored: each repository holding the manifest, with its tags.
    async fn image_locations(&self, digest: &Digest) -> Result<Vec<(RepoName, Vec<String>)>>;
}

/// What importing one advisory does, given the `modified` stored for its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImportStep {
    /// Withdrawn and never stored: nothing to do.
    Skip,
    /// Withdrawn: its row and packages go.
    Remove,
    /// Stored with the same `modified`: left alone.
    Unchanged,
    /// New (`added`) or newer: its row is written and its packages replaced.
    Write { added: bool },
}

impl ImportStep {
    pub(crate) fn of(stored: Option<&str>, record: &AdvisoryRecord) -> ImportStep {
        match (stored, record.withdrawn) {
            (None, true) => ImportStep::Skip,
            (Some(_), true) => ImportStep::Remove,
            (Some(m), false) if m == record.modified => ImportStep::Unchanged,
            (stored, false) => ImportStep::Write {
                added: stored.is_none(),
            },
        }
    }

    /// Counts the step in `counts`.
    pub(crate) fn count(self, counts: &mut ImportCounts) {
        match self {
            ImportStep::Skip => {}
            ImportStep::Remove => counts.removed += 1,
            ImportStep::Unchanged => counts.unchanged += 1,
            ImportStep::Write { added: true } => counts.added += 1,
            ImportStep::Write { added: false } => counts.updated += 1,
        }
    }
}

pub(crate) const SAVE_SCAN_SQL: &str = "INSERT INTO image_scans
        (digest, scanned_at, matched_at, inventory, findings, worst)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (digest) DO UPDATE SET scanned_at = excluded.scanned_at,
        matched_at = excluded.matched_at, inventory = excluded.inventory,
        findings = excluded.findings, worst = excluded.worst";

pub(crate) const SCAN_COLUMNS: &str = "digest, scanned_at, matched_at, inventory, findings, worst";

pub(crate) const ADVISORY_MODIFIED_SQL: &str = "SELECT modified FROM advisories WHERE id = $1";
pub(crate) const UPSERT_ADVISORY_SQL: &str = "INSERT INTO advisories (id, modified, body)
    VALUES ($1, $2, $3)
    ON CONFLICT (id) DO UPDATE SET modified = excluded.modified, body = excluded.body";
pub(crate) const DELETE_ADVISORY_PACKAGES_SQL: &str =
    "DELETE FROM advisory_packages WHERE advisory_id = $1";
pub(crate) const DELETE_ADVISORY_SQL: &str = "DELETE FROM advisories WHERE id = $1";
pub(crate) const ADD_ADVISORY_PACKAGE_SQL: &str =
    "INSERT INTO advisory_packages (ecosystem, name, advisory_id) VALUES ($1, $2, $3)
     ON CONFLICT DO NOTHING";
pub(crate) const RECORD_IMPORT_SQL: &str = "INSERT INTO vulndb_imports
        (source, imported_at, added, updated, removed, unchanged)
    VALUES ($1, $2, $3, $4, $5, $6)";
pub(crate) const ADVISORIES_PAGE_SQL: &str =
    "SELECT id, body FROM advisories WHERE id > $1 ORDER BY id LIMIT $2";
pub(crate) const ECOSYSTEM_COUNTS_SQL: &str = "SELECT ecosystem, COUNT(DISTINCT advisory_id)
    FROM advisory_packages GROUP BY ecosystem ORDER BY ecosystem";
pub(crate) const STATUS_SQL: &str = "SELECT COUNT(*), MAX(modified) FROM advisories";
pub(crate) const LAST_IMPORT_SQL: &str =
    "SELECT source, imported_at, added, updated, removed, unchanged
    FROM vulndb_imports ORDER BY id DESC LIMIT 1";
pub(crate) const IMAGE_LOCATIONS_SQL: &str = "SELECT r.name, t.name FROM manifests m
    JOIN repositories r ON r.id = m.repository_id
    LEFT JOIN tags t ON t.repository_id = m.repository_id AND t.digest = m.digest
    WHERE m.digest = $1 ORDER BY r.name, t.name";

/// Keys looked up per query (two bound values each).
pub(crate) const KEYS_PER_QUERY: usize = 400;

/// `SELECT DISTINCT a.body ...` for `n` keys, `$1..$2n` as (ecosystem, name) pairs.
pub(crate) fn advisories_for_sql(n: usize) -> String {
    let pairs: Vec<String> = (0..n)
        .map(|i| format!("(p.ecosystem = ${} AND p.name = ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    format!(
        "SELECT DISTINCT a.id, a.body FROM advisory_packages p
         JOIN advisories a ON a.id = p.advisory_id
         WHERE {} ORDER BY a.id",
        pairs.join(" OR ")
    )
}

/// `digest, scanned_at, matched_at, inventory, findings, worst`.
pub(crate) type ScanRow = (String, i64, i64, String, String, Option<String>);

pub(crate) fn scan(row: ScanRow) -> Result<ImageScan> {
    let (digest, scanned_at, matched_at, inventory, findings, worst) = row;
    Ok(ImageScan {
        digest: digest
            .parse()
            .map_err(|e| MetaError(format!("stored digest {digest:?}: {e}").into()))?,
        scanned_at,
        matched_at,
        inventory,
        findings,
        worst,
    })
}

/// Groups (repository, tag) rows into repositories with their tags.
pub(crate) fn locations(
    rows: Vec<(String, Option<String>)>,
) -> Result<Vec<(RepoName, Vec<String>)>> {
    let mut out: Vec<(RepoName, Vec<String>)> = Vec::new();
    for (repository, tag) in rows {
        let repository: RepoName = repository
            .parse()
            .map_err(|e| MetaError(format!("stored repository {repository:?}: {e}").into()))?;
        if out.last().is_none_or(|(r, _)| *r != repository) {
            out.push((repository, Vec::new()));
        }
        if let (Some(tag), Some((_, tags))) = (tag, out.last_mut()) {
            tags.push(tag);
        }
    }
    Ok(out)
}

/// `vulndb status` from its three queries' rows.
pub(crate) fn status(
    advisories: i64,
    newest_modified: Option<String>,
    ecosystems: Vec<(String, i64)>,
    last: Option<(String, i64, i64, i64, i64, i64)>,
) -> VulnDbStatus {
    let n = |v: i64| v.max(0) as u64;
    VulnDbStatus {
        advisories: n(advisories),
        ecosystems: ecosystems.into_iter().map(|(e, c)| (e, n(c))).collect(),
        newest_modified,
        last_import: last.map(|(source, at, added, updated, removed, unchanged)| {
            (
                source,
                at,
                ImportCounts {
                    added: n(added),
                    updated: n(updated),
                    removed: n(removed),
                    unchanged: n(unchanged),
                },
            )
        }),
    }
}
