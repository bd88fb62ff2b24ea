//! Scanning: after a push, each image's layers are read for its OS and packages
//! ([`berth_scan`]), the inventory is kept (by manifest digest) with its findings
//! against the imported advisories, and a CycloneDX SBOM is attached to the image as an
//! OCI referrer. Pushes never wait: a bounded queue feeds a fixed number of workers,
//! and what the queue drops is scanned on demand (`berth scan`, the API).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use berth_core::{Algorithm, Digest, Reference, RepoName};
use berth_meta::{ImageScan, MetaStore};
use berth_scan::layers::Compression;
use berth_scan::matching::lookup_keys;
use berth_scan::sbom::{self, CYCLONEDX_JSON};
use berth_scan::{AdvisoryIndex, Collector, Finding, Inventory, Severity};
use bytes::Bytes;
use futures::TryStreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::{RegistryError, Result};
use crate::registry::Registry;

/// Pushed images waiting for a worker; beyond this, pushes are not queued (they are
/// scanned when asked for).
const QUEUE: usize = 4096;
/// Who the tag history and audit name for SBOMs berth attaches.
pub const SCANNER_ACTOR: &str = "berth-scanner";
/// The empty JSON object, the config of an artifact manifest (image-spec's
/// `application/vnd.oci.empty.v1+json`).
const EMPTY_CONFIG: &[u8] = b"{}";
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Config media types of container images (what is scanned; artifacts are not).
const IMAGE_CONFIGS: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// How long the registry must have been without requests for a scan to start at once;
/// under steady load scans still run, one per [`BUSY_PACE`] per worker.
const QUIET: Duration = Duration::from_millis(250);
const BUSY_PACE: Duration = Duration::from_secs(1);

/// The queue of pushed images and its workers.
pub struct Scanner {
    queue: Option<mpsc::Sender<(RepoName, Digest)>>,
    /// What is queued and not yet taken: the same image pushed under many tags is
    /// queued once.
    pending: Arc<std::sync::Mutex<std::collections::HashSet<(RepoName, Digest)>>>,
    /// When the last registry request arrived (milliseconds since `epoch`): scans give
    /// way to requests, since both share the same cores.
    last_request: Arc<AtomicU64>,
    epoch: Instant,
}

impl Scanner {
    /// Starts `workers` scanning tasks (none: pushes are not scanned, only on demand).
    pub fn start(registry: Arc<Registry>, workers: usize) -> Scanner {
        let last_request = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let pending: Arc<std::sync::Mutex<std::collections::HashSet<(RepoName, Digest)>>> =
            Arc::default();
        if workers == 0 {
            return Scanner {
                queue: None,
                pending,
                last_request,
                epoch,
            };
        }
        let (tx, rx) = mpsc::channel::<(RepoName, Digest)>(QUEUE);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..workers {
            let (registry, rx, last_request, pending) = (
                registry.clone(),
                rx.clone(),
                last_request.clone(),
                pending.clone(),
            );
            tokio::spawn(async move {
                let mut last_scan = Instant::now();
                loop {
                    let Some((repo, digest)) = rx.lock().await.recv().await else {
                        return;
                    };
                    pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&(repo.clone(), digest.clone()));
                    // Wait for a quiet moment, or for this worker's turn under load.
                    loop {
                        let since_request = epoch.elapsed().saturating_sub(Duration::from_millis(
                            last_request.load(Ordering::Relaxed),
                        ));
                        if since_request >= QUIET || last_scan.elapsed() >= BUSY_PACE {
                            break;
                        }
                        tokio::time::sleep(
                            QUIET
                                .saturating_sub(since_request)
                                .max(Duration::from_millis(10)),
                        )
                        .await;
                    }
                    // In a task of its own: a panic ends that scan, not the worker.
                    let job = {
                        let (registry, repo, digest) =
                            (registry.clone(), repo.clone(), digest.clone());
                        tokio::spawn(async move {
                            scan_image(&registry, &repo, &digest, Sbom::Always).await
                        })
                    };
                    let outcome = match job.await {
                        Ok(outcome) => outcome,
                        Err(e) => Err(RegistryError::internal(e)),
                    };
                    match outcome {
                        Ok(Some(scan)) => {
                            tracing::debug!(%repo, %digest, findings = scan.findings.len(), "scanned")
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(%repo, %digest, error = %e, "scanning failed"),
                    }
                    last_scan = Instant::now();
                }
            });
        }
        Scanner {
            queue: Some(tx),
            pending,
            last_request,
            epoch,
        }
    }

    /// Notes that a registry request arrived (scans wait for quiet).
    pub fn note_request(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_request.store(now, Ordering::Relaxed);
    }

    /// Queues a pushed manifest (an artifact or index is skipped by the worker).
    pub fn pushed(&self, repo: &RepoName, digest: &Digest) {
        let Some(queue) = &self.queue else {
            return;
        };
        let job = (repo.clone(), digest.clone());
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.contains(&job) {
            return;
        }
        if queue.try_send(job.clone()).is_ok() {
            pending.insert(job);
        } else {
            tracing::warn!(%repo, %digest, "scan queue full: scanned when asked for");
        }
    }
}

/// A stored scan with its parts read back.
#[derive(Debug, Clone)]
pub struct ScanReport {
    pub digest: Digest,
    pub inventory: Inventory,
    pub findings: Vec<Finding>,
    pub scanned_at: i64,
    pub matched_at: i64,
}

impl ScanReport {
    pub fn from_stored(scan: &ImageScan) -> Result<ScanReport> {
        Ok(ScanReport {
            digest: scan.digest.clone(),
            inventory: serde_json::from_str(&scan.inventory).map_err(RegistryError::internal)?,
            findings: serde_json::from_str(&scan.findings).map_err(RegistryError::internal)?,
            scanned_at: scan.scanned_at,
            matched_at: scan.matched_at,
        })
    }

    /// Findings not accepted by `allowed` (advisory ids or aliases).
    pub fn open_findings<'a>(&'a self, allowed: &'a [String]) -> impl Iterator<Item = &'a Finding> {
        self.findings.iter().filter(move |f| {
            !allowed
                .iter()
                .any(|a| *a == f.id || f.aliases.iter().any(|alias| alias == a))
        })
    }
}

/// The worst of some findings (highest severity, then id for a stable answer).
pub fn worst<'a>(findings: impl Iterator<Item = &'a Finding>) -> Option<&'a Finding> {
    findings.max_by(|a, b| a.severity.cmp(&b.severity).then_with(|| b.id.cmp(&a.id)))
}

fn now() -> i64 {
    crate::accounts::now()
}

/// When [`scan_image`] attaches the SBOM to the image in the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sbom {
    /// After a push: the same image pushed to another repository gets its SBOM there.
    Always,
    /// When asked (`berth scan`, the API): only with a scan made now, so reading a
    /// scan never writes.
    WhenScanned,
}

/// An image's scan: the stored one, or (none yet) read from its layers now and stored,
/// its SBOM attached in `repo` as `sbom` says. `None` when the manifest is not an image
/// (an index or an artifact).
pub async fn scan_image(
    registry: &Registry,
    repo: &RepoName,
    digest: &Digest,
    sbom: Sbom,
) -> Result<Option<ScanReport>> {
    let manifest = registry
        .get_manifest(repo, &Reference::Digest(digest.clone()))
        .await?;
    let Some(layers) = image_layers(&manifest.body) else {
        return Ok(None);
    };
    let meta = &*registry.meta;
    let stored = match meta.image_scan(digest).await? {
        Some(stored) => stored,
        None => {
            let inventory = read_inventory(registry, repo, &layers).await?;
            // Scanned meanwhile (a worker and `berth scan` at once): that one stands.
            match meta.image_scan(digest).await? {
                Some(stored) => stored,
                None => {
                    let findings = match_findings(meta, &inventory).await?;
                    let at = now();
                    let report = ScanReport {
                        digest: digest.clone(),
                        inventory,
                        findings,
                        scanned_at: at,
                        matched_at: at,
                    };
                    meta.save_scan(&stored_scan(&report)?).await?;
                    attach_sbom(
                        registry,
                        repo,
                        &manifest.media_type,
                        manifest.body.len(),
                        &report,
                    )
                    .await?;
                    return Ok(Some(report));
                }
            }
        }
    };
    let report = ScanReport::from_stored(&stored)?;
    if sbom == Sbom::Always {
        attach_sbom(
            registry,
            repo,
            &manifest.media_type,
            manifest.body.len(),
            &report,
        )
        .await?;
    }
    Ok(Some(report))
}

/// A scanned image of a reference: itself, or one platform of its index.
#[derive(Debug, Clone)]
pub struct ScannedImage {
    /// `linux/arm64/v8` for a platform of an index.
    pub platform: Option<String>,
    pub report: ScanReport,
}

impl ScannedImage {
    /// The JSON `berth scan --format json` and `/api/v1` give for one image.
    pub fn to_json(&self) -> Value {
        let r = &self.report;
        json!({
            "digest": r.digest.to_string(),
            "platform": self.platform,
            "os": r.inventory.os,
            "packages": r.inventory.packages,
            "findings": r.findings,
            "notes": r.inventory.notes,
            "scanned_at": r.scanned_at,
            "matched_at": r.matched_at,
        })
    }
}

/// The scans of what `reference` names in `repo`: the image, or each platform of an
/// index that is stored here; scanned now where they have not been.
pub async fn scan_reference(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Vec<ScannedImage>> {
    let manifest = registry.get_manifest(repo, reference).await?;
    let body: Value = serde_json::from_slice(&manifest.body).map_err(RegistryError::internal)?;
    let Some(children) = body.get("manifests").and_then(Value::as_array) else {
        return Ok(
            scan_image(registry, repo, &manifest.digest, Sbom::WhenScanned)
                .await?
                .map(|report| ScannedImage {
                    platform: None,
                    report,
                })
                .into_iter()
                .collect(),
        );
    };
    let mut images = Vec::new();
    for child in children {
        let Some(digest) = child
            .get("digest")
            .and_then(Value::as_str)
            .and_then(|d| d.parse::<Digest>().ok())
        else {
            continue;
        };
        let platform = child.get("platform").map(|p| {
            let part = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
            [part("os"), part("architecture"), part("variant")]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("/")
        });
        // A sparse index may lack a platform here; an artifact in it is no image.
        match scan_image(registry, repo, &digest, Sbom::WhenScanned).await {
            Ok(Some(report)) => images.push(ScannedImage { platform, report }),
            Ok(None) | Err(RegistryError::ManifestUnknown) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(images)
}

/// The scan as the store keeps it.
pub fn stored_scan(report: &ScanReport) -> Result<ImageScan> {
    Ok(ImageScan {
        digest: report.digest.clone(),
        scanned_at: report.scanned_at,
        matched_at: report.matched_at,
        inventory: serde_json::to_string(&report.inventory).map_err(RegistryError::internal)?,
        findings: serde_json::to_string(&report.findings).map_err(RegistryError::internal)?,
        worst: worst(report.findings.iter()).map(|f| f.severity.as_str().to_owned()),
    })
}

/// An image manifest's layers (digest, media type), or `None` for anything else.
fn image_layers(body: &[u8]) -> Option<Vec<(Digest, String)>> {
    // Only these fields are read (annotations, however large, are skipped unparsed).
    #[derive(serde::Deserialize)]
    struct Described {
        #[serde(rename = "mediaType")]
        media_type: String,
        #[serde(default)]
        digest: String,
    }
    #[derive(serde::Deserialize)]
    struct ImageManifest {
        config: Described,
        layers: Vec<Described>,
    }
    let manifest: ImageManifest = serde_json::from_slice(body).ok()?;
    if !IMAGE_CONFIGS.contains(&manifest.config.media_type.as_str()) {
        return None;
    }
    manifest
        .layers
        .into_iter()
        .map(|l| Some((l.digest.parse().ok()?, l.media_type)))
        .collect()
}

/// Reads an image's layers, top-most first, each streamed from the blob store through
/// the decompressor in a blocking task. A layer that cannot be read is noted in the
/// inventory (the scan is kept, not retried on every request).
async fn read_inventory(
    registry: &Registry,
    repo: &RepoName,
    layers: &[(Digest, String)],
) -> Result<Inventory> {
    let scratch = tempfile::tempdir().map_err(RegistryError::internal)?;
    let mut notes = Vec::new();
    let handle = tokio::runtime::Handle::current();
    let mut opened = Vec::new();
    for (digest, media_type) in layers.iter().rev() {
        match Compression::of_layer(media_type) {
            Some(compression) => opened.push((digest.clone(), compression)),
            None => notes.push(format!("layer {digest}: {media_type} is not read")),
        }
    }
    let blobs = registry.blobs.clone();
    let repo = repo.clone();
    let (files, scratch, layer_notes) = tokio::task::spawn_blocking(move || {
        let mut collector = Collector::new(scratch.path());
        let mut notes = Vec::new();
        for (digest, compression) in opened {
            // A layer the store cannot give (not fetched yet by a mirror, or the store
            // failing) fails the scan: nothing is kept; it is tried again when asked.
            let body = match handle.block_on(blobs.open(&digest, None)) {
                Ok(Some(body)) => body,
                Ok(None) => return Err(RegistryError::BlobUnknown(digest)),
                Err(e) => return Err(RegistryError::internal(e)),
            };
            let reader =
                tokio_util::io::StreamReader::new(body.stream.map_err(std::io::Error::other));
            let reader = tokio_util::io::SyncIoBridge::new_with_handle(reader, handle.clone());
            if let Err(e) = collector.read_layer(reader, compression) {
                tracing::info!(%repo, %digest, error = %e, "layer not readable");
                notes.push(format!("layer {digest}: {e}"));
            }
        }
        Ok((collector.finish(), scratch, notes))
    })
    .await
    .map_err(RegistryError::internal)??;
    let mut inventory = Inventory::from_files(&files).await;
    drop(files);
    drop(scratch);
    notes.extend(layer_notes);
    inventory.notes.extend(notes);
    Ok(inventory)
}

/// Matches an inventory against the advisories about its packages.
pub async fn match_findings(meta: &dyn MetaStore, inventory: &Inventory) -> Result<Vec<Finding>> {
    let keys = lookup_keys(inventory);
    let mut index = AdvisoryIndex::new();
    for body in meta.advisories_for(&keys).await? {
        match serde_json::from_str(&body) {
            Ok(advisory) => index.add(advisory),
            Err(e) => tracing::warn!(error = %e, "a stored advisory is not readable"),
        }
    }
    Ok(index.findings(inventory))
}

/// Attaches the scan's SBOM to the image in `repo`: the CycloneDX document as the one
/// layer of an artifact manifest whose subject is the image.
async fn attach_sbom(
    registry: &Registry,
    repo: &RepoName,
    media_type: &str,
    size: usize,
    report: &ScanReport,
) -> Result<Digest> {
    let scanned_at = humantime::format_rfc3339_seconds(
        SystemTime::UNIX_EPOCH + Duration::from_secs(report.scanned_at.max(0) as u64),
    )
    .to_string();
    let document = sbom::cyclonedx(
        &report.inventory,
        &sbom::Subject {
            repository: repo.as_str(),
            digest: &report.digest.to_string(),
            scanned_at: &scanned_at,
        },
    );
    let document_digest = Algorithm::Sha256.digest_of(&document);
    let config_digest = Algorithm::Sha256.digest_of(EMPTY_CONFIG);
    for (digest, bytes) in [
        (&config_digest, Bytes::from_static(EMPTY_CONFIG)),
        (&document_digest, Bytes::from(document.clone())),
    ] {
        if registry.meta.repository_blob(repo, digest).await?.is_none() {
            let body: crate::registry::ByteStream =
                Box::pin(futures::stream::once(async move { Ok(bytes) }));
            registry.upload_whole(repo, digest, body).await?;
        }
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": CYCLONEDX_JSON,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": config_digest.to_string(),
            "size": EMPTY_CONFIG.len(),
            "data": "e30=",
        },
        "layers": [{
            "mediaType": CYCLONEDX_JSON,
            "digest": document_digest.to_string(),
            "size": document.len(),
            "annotations": {"org.opencontainers.image.title": "sbom.cdx.json"},
        }],
        "subject": {
            "mediaType": media_type,
            "digest": report.digest.to_string(),
            "size": size,
        },
        "annotations": {
            "org.opencontainers.image.created": scanned_at,
            "dev.berth.sbom.generator": concat!("berth ", env!("CARGO_PKG_VERSION")),
        },
    });
    let body = Bytes::from(serde_json::to_vec(&manifest).map_err(RegistryError::internal)?);
    let digest = Algorithm::Sha256.digest_of(&body);
    registry
        .put_manifest(
            repo,
            &Reference::Digest(digest.clone()),
            Some(OCI_MANIFEST),
            body,
            Vec::new(),
            SCANNER_ACTOR,
        )
        .await?;
    Ok(digest)
}

/// An image whose findings changed when the advisories did.
#[derive(Debug, Clone)]
pub struct Rematched {
    pub digest: Digest,
    /// Findings it did not have before.
    pub new: Vec<Finding>,
    pub findings: usize,
}

/// Matches every stored inventory again (after an import), without reading layers:
/// the whole advisory database is loaded once. Returns the images whose findings grew.
pub async fn rematch_all(meta: &dyn MetaStore) -> Result<(Vec<Rematched>, u64)> {
    let mut index = AdvisoryIndex::new();
    let mut after: Option<String> = None;
    loop {
        let page = meta.advisories(after.as_deref(), 5000).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (_, body) in page {
            if let Ok(advisory) = serde_json::from_str(&body) {
                index.add(advisory);
            }
        }
    }
    let mut changed = Vec::new();
    let mut seen = 0u64;
    let mut after: Option<Digest> = None;
    loop {
        let page = meta.image_scans(after.as_ref(), 100).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        let mut saves = Vec::new();
        for stored in page {
            seen += 1;
            let mut report = ScanReport::from_stored(&stored)?;
            let findings = index.findings(&report.inventory);
            if findings == report.findings {
                continue;
            }
            let new: Vec<Finding> = findings
                .iter()
                .filter(|f| {
                    !report
                        .findings
                        .iter()
                        .any(|old| old.id == f.id && old.package == f.package)
                })
                .cloned()
                .collect();
            report.findings = findings;
            report.matched_at = now();
            saves.push(stored_scan(&report)?);
            if !new.is_empty() {
                changed.push(Rematched {
                    digest: report.digest.clone(),
                    findings: report.findings.len(),
                    new,
                });
            }
        }
        // Together, so that the store commits them in one group.
        futures::future::try_join_all(saves.iter().map(|scan| meta.save_scan(scan))).await?;
    }
    Ok((changed, seen))
}

/// How long the `block-vulnerable` settings are reused before they are read again
/// (a change made on another node, or by `berth policy set`, applies within this).
const GATE_REFRESH: Duration = Duration::from_secs(5);

/// `block-vulnerable` for pulls: the settings of every scope, kept in memory, so a pull
/// where no scope blocks anything costs no database read.
pub struct PullGate {
    meta: Arc<dyn MetaStore>,
    known: std::sync::Mutex<Option<(Instant, Arc<GateRules>)>>,
}

#[derive(Default)]
struct GateRules {
    /// (scope, value) of `block-vulnerable` and `allow-vulnerabilities`.
    block: Vec<(String, String)>,
    allow: Vec<(String, String)>,
}

impl GateRules {
    /// The repository's own setting, else its namespace's.
    fn value<'a>(list: &'a [(String, String)], repo: &RepoName) -> Option<&'a str> {
        let find = |scope: &str| {
            list.iter()
                .find(|(s, _)| s == scope)
                .map(|(_, v)| v.as_str())
        };
        find(repo.as_str()).or_else(|| find(repo.namespace()))
    }

    fn threshold(&self, repo: &RepoName) -> Option<Severity> {
        match GateRules::value(&self.block, repo)? {
            "off" => None,
            word => Severity::from_word(word),
        }
    }

    fn allowed(&self, repo: &RepoName) -> Vec<String> {
        match GateRules::value(&self.allow, repo) {
            None | Some("off") => Vec::new(),
            Some(list) => list.split(',').map(str::to_owned).collect(),
        }
    }
}

impl PullGate {
    pub fn new(meta: Arc<dyn MetaStore>) -> PullGate {
        PullGate {
            meta,
            known: std::sync::Mutex::new(None),
        }
    }

    async fn rules(&self) -> Result<Arc<GateRules>> {
        if let Some((read_at, rules)) = &*self.known.lock().unwrap_or_else(|e| e.into_inner())
            && read_at.elapsed() < GATE_REFRESH
        {
            return Ok(rules.clone());
        }
        let rules = Arc::new(GateRules {
            block: self
                .meta
                .policy_scopes(crate::policy::BLOCK_VULNERABLE)
                .await?,
            allow: self
                .meta
                .policy_scopes(crate::policy::ALLOW_VULNERABILITIES)
                .await?,
        });
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), rules.clone()));
        Ok(rules)
    }

    /// Why a pull of `digest` from `repo` is refused, if the policy refuses it: its
    /// scan has an accepted-by-no-one finding at or above the threshold. Images not
    /// scanned yet (and indexes: their platforms are checked when pulled) pass.
    pub async fn refusal(&self, repo: &RepoName, digest: &Digest) -> Result<Option<String>> {
        let rules = self.rules().await?;
        let Some(threshold) = rules.threshold(repo) else {
            return Ok(None);
        };
        let Some(scan) = self.meta.image_scan(digest).await? else {
            return Ok(None);
        };
        let worst = scan.worst.as_deref().and_then(Severity::from_word);
        if worst.is_none_or(|w| w < threshold) {
            return Ok(None);
        }
        let report = ScanReport::from_stored(&scan)?;
        Ok(refusal(&report, threshold, &rules.allowed(repo)))
    }
}

/// The policy's answer for a pull of a scanned image: the worst open finding at or
/// above `threshold`, as the refusal's message.
pub fn refusal(report: &ScanReport, threshold: Severity, allowed: &[String]) -> Option<String> {
    let worst = worst(
        report
            .open_findings(allowed)
            .filter(|f| f.severity >= threshold),
    )?;
    let fixed = match &worst.fixed {
        Some(v) => format!("fixed in {v}"),
        None => "no fix yet".to_owned(),
    };
    let aliases = if worst.aliases.is_empty() {
        String::new()
    } else {
        format!(" ({})", worst.aliases.join(", "))
    };
    Some(format!(
        "image {} has a {} vulnerability: {}{aliases} in {} {} ({fixed}); the repository's policy blocks pulls of images with {} or worse findings",
        report.digest,
        worst.severity.as_str(),
        worst.id,
        worst.package,
        worst.installed,
        threshold.as_str(),
    ))
}
