//! `berth scan REPO:TAG|REPO@DIGEST [--format table|json|sarif]`: an image's packages
//! and known vulnerabilities (scanning it now if the server has not), and `berth vulndb
//! import|status|update`: the offline advisory database — both against the storage and
//! database `berth serve` uses.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use berth_core::{Reference, RepoName, Tag};
use berth_meta::{AdvisoryRecord, ImportCounts, MetaStore};
use berth_server::scanning::{self, ScanReport, ScannedImage};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::admin::StoreArgs;
use crate::serve::{self, ServeArgs};

/// Exit statuses of `berth scan`.
const FOUND: u8 = 1;
const FAILED: u8 = 2;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Sarif,
}

#[derive(Args)]
pub struct ScanArgs {
    /// The image: REPO:TAG or REPO@DIGEST (an index: each platform).
    image: String,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    #[command(flatten)]
    serve: ServeArgs,
}

/// Exits 0 without findings, 1 with findings, 2 when the image cannot be scanned.
pub async fn scan(args: ScanArgs) -> ExitCode {
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth scan: {e:#}");
            ExitCode::from(FAILED)
        }
    }
}

async fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let (repo, reference) = parse_image(&args.image)?;
    let config = serve::resolve(args.serve)?;
    let blobs = berth_server::open_blobs(&config.storage).await?;
    let meta = berth_server::open_meta(&config.database).await?;
    let registry = Arc::new(berth_server::Registry::new(blobs, meta));
    let images = scanning::scan_reference(&registry, &repo, &reference)
        .await
        .with_context(|| format!("{repo}:{reference}"))?;
    anyhow::ensure!(
        !images.is_empty(),
        "{repo}:{reference} is not a container image (nor an index of any stored here)"
    );
    match args.format {
        Format::Table => print_table(&repo, &reference, &images),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "repository": repo.as_str(),
                "reference": reference.to_string(),
                "images": images.iter().map(ScannedImage::to_json).collect::<Vec<_>>(),
            }))?
        ),
        Format::Sarif => println!(
            "{}",
            serde_json::to_string_pretty(&as_sarif(&repo, &images))?
        ),
    }
    let found = images.iter().any(|i| !i.report.findings.is_empty());
    Ok(if found {
        ExitCode::from(FOUND)
    } else {
        ExitCode::SUCCESS
    })
}

/// `gallery/ui:2.1`, `gallery/ui@sha256:…`, `gallery/ui` (latest).
fn parse_image(image: &str) -> anyhow::Result<(RepoName, Reference)> {
    let (name, reference) = match image.split_once('@') {
        Some((name, digest)) => (name, Reference::Digest(digest.parse()?)),
        None => match image.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((name, tag)) => (name, Reference::Tag(tag.parse::<Tag>()?)),
            None => (image, Reference::Tag("latest".parse::<Tag>()?)),
        },
    };
    Ok((name.parse::<RepoName>()?, reference))
}

fn os_of(report: &ScanReport) -> String {
    report
        .inventory
        .os
        .as_ref()
        .map(|o| format!("{} {}", o.id, o.version_id))
        .unwrap_or_else(|| "unknown OS".into())
}

fn print_table(repo: &RepoName, reference: &Reference, images: &[ScannedImage]) {
    for image in images {
        let report = &image.report;
        let platform = image
            .platform
            .as_deref()
            .map(|p| format!(" [{p}]"))
            .unwrap_or_default();
        println!(
            "{repo}{}{platform}  {}  {}: {} packages, {} findings",
            match reference {
                Reference::Tag(t) => format!(":{t}"),
                Reference::Digest(_) => String::new(),
            },
            report.digest,
            os_of(report),
            report.inventory.packages.len(),
            report.findings.len()
        );
        for note in &report.inventory.notes {
            println!("  note: {note}");
        }
        if report.findings.is_empty() {
            continue;
        }
        let rows: Vec<[String; 6]> = report
            .findings
            .iter()
            .map(|f| {
                [
                    f.severity.as_str().to_uppercase(),
                    f.id.clone(),
                    f.package.clone(),
                    f.installed.clone(),
                    f.fixed.clone().unwrap_or_else(|| "-".into()),
                    f.aliases.join(","),
                ]
            })
            .collect();
        let header =
            ["SEVERITY", "ID", "PACKAGE", "INSTALLED", "FIXED", "ALIASES"].map(String::from);
        let widths: Vec<usize> = (0..6)
            .map(|c| {
                rows.iter()
                    .chain([&header])
                    .map(|r| r[c].len())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in [&header].into_iter().chain(rows.iter()) {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            println!("  {}", line.join("  ").trim_end());
        }
    }
}

/// SARIF 2.1.0: one rule per advisory, one result per finding, located at the package
/// database that lists the package.
fn as_sarif(repo: &RepoName, images: &[ScannedImage]) -> Value {
    let mut rules: Vec<Value> = Vec::new();
    let mut results = Vec::new();
    for image in images {
        for f in &image.report.findings {
            if !rules.iter().any(|r| r["id"] == f.id.as_str()) {
                let score = match f.severity {
                    berth_scan::Severity::Critical => "9.5",
                    berth_scan::Severity::High => "8.0",
                    berth_scan::Severity::Medium => "5.5",
                    berth_scan::Severity::Low => "2.0",
                    berth_scan::Severity::Unknown => "0.0",
                };
                rules.push(json!({
                    "id": f.id,
                    "shortDescription": {"text": if f.summary.is_empty() { f.id.clone() } else { f.summary.clone() }},
                    "properties": {"security-severity": score, "tags": ["security", "vulnerability"], "aliases": f.aliases},
                }));
            }
            let level = match f.severity {
                berth_scan::Severity::Critical | berth_scan::Severity::High => "error",
                berth_scan::Severity::Medium => "warning",
                _ => "note",
            };
            let path = image
                .report
                .inventory
                .packages
                .iter()
                .find(|p| p.name == f.package && p.version == f.installed)
                .map(|p| p.path.clone())
                .unwrap_or_default();
            results.push(json!({
                "ruleId": f.id,
                "level": level,
                "message": {"text": format!(
                    "{} {} in {repo}@{} is affected by {} ({}); fixed in {}",
                    f.package, f.installed, image.report.digest, f.id, f.severity.as_str(),
                    f.fixed.as_deref().unwrap_or("no release yet")
                )},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": path}}}],
                "partialFingerprints": {"finding": format!("{}/{}/{}", image.report.digest, f.id, f.package)},
            }));
        }
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "berth",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/berth/berth",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

#[derive(Subcommand)]
pub enum VulnDbCommand {
    /// Load OSV advisories: JSON files, folders of them, or OSV's per-ecosystem zip
    /// archives. Stored images are matched again; those with new findings are listed
    /// (and announced to `vulnerabilities` webhooks).
    Import {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The registry's address as clients use it, for links in webhook payloads.
        #[arg(long, default_value = "localhost:5000")]
        host: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// What the advisory database holds and how old it is.
    Status {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Download advisories (an OSV zip or JSON file) and import them, when online.
    Update {
        #[arg(long)]
        from: String,
        #[arg(long, default_value = "localhost:5000")]
        host: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn vulndb(command: VulnDbCommand) -> anyhow::Result<()> {
    match command {
        VulnDbCommand::Import { paths, host, store } => {
            let meta = crate::admin::open(&store).await?.shared_meta();
            let source = paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ");
            import(&meta, &paths, &source, &host).await
        }
        VulnDbCommand::Status { store } => {
            let meta = crate::admin::open(&store).await?.shared_meta();
            status(&*meta).await
        }
        VulnDbCommand::Update { from, host, store } => {
            let meta = crate::admin::open(&store).await?.shared_meta();
            let dir = tempfile::tempdir()?;
            let name = if from.ends_with(".json") {
                "advisories.json"
            } else {
                "advisories.zip"
            };
            let file = dir.path().join(name);
            download(&from, &file).await?;
            import(&meta, &[file], &from, &host).await
        }
    }
}

/// Imports in batches (one transaction each), then matches stored images again.
async fn import(
    meta: &Arc<dyn MetaStore>,
    paths: &[PathBuf],
    source: &str,
    host: &str,
) -> anyhow::Result<()> {
    const BATCH: usize = 1000;
    let mut batch = Vec::with_capacity(BATCH);
    let mut counts = ImportCounts::default();
    let handle = tokio::runtime::Handle::current();
    for path in paths {
        let meta = meta.clone();
        let mut pending = std::mem::take(&mut batch);
        let (done, path_counts) = tokio::task::block_in_place(|| {
            let mut path_counts = ImportCounts::default();
            let read = berth_scan::osv::read_path(path, &mut |advisory, body| {
                pending.push(AdvisoryRecord {
                    packages: advisory.keys(),
                    withdrawn: advisory.withdrawn.is_some(),
                    id: advisory.id,
                    modified: advisory.modified,
                    body,
                });
                if pending.len() >= BATCH {
                    path_counts += handle
                        .block_on(meta.import_advisories(&pending))
                        .map_err(|e| berth_scan::ScanError::Advisories(e.to_string()))?;
                    pending.clear();
                }
                Ok(())
            });
            (read.map(|()| pending), path_counts)
        });
        counts += path_counts;
        batch = done?;
    }
    if !batch.is_empty() {
        counts += meta.import_advisories(&batch).await?;
    }
    meta.record_vulndb_import(source, counts, berth_server::accounts::now())
        .await?;
    println!(
        "imported from {source}: {} new, {} updated, {} withdrawn, {} unchanged",
        counts.added, counts.updated, counts.removed, counts.unchanged
    );
    let (changed, seen) = scanning::rematch_all(&**meta).await?;
    println!(
        "matched {seen} stored images again: {} with new findings",
        changed.len()
    );
    let webhooks = berth_server::ops::webhooks::Webhooks::new(meta.clone(), false);
    for image in &changed {
        let mut ids: Vec<&str> = image.new.iter().map(|f| f.id.as_str()).collect();
        ids.dedup();
        for (repo, tags) in meta.image_locations(&image.digest).await? {
            println!(
                "  {repo}@{} [{}]: new {}",
                image.digest,
                tags.join(", "),
                ids.join(", ")
            );
            let detail = json!({
                "reference": image.digest.to_string(),
                "digest": image.digest.to_string(),
                "tags": tags,
                "new_findings": image.new,
                "findings": image.findings,
            });
            let event = berth_server::ops::audit::event(
                "berth-vulndb",
                "cli",
                "vulnerabilities",
                Some(repo.as_str()),
                detail,
            );
            webhooks.notify(&event, host).await;
        }
    }
    Ok(())
}

async fn status(meta: &dyn MetaStore) -> anyhow::Result<()> {
    let status = meta.vulndb_status().await?;
    if status.advisories == 0 {
        println!("no advisories loaded: berth vulndb import PATH (OSV JSON, folders or zips)");
        return Ok(());
    }
    println!("{} advisories", status.advisories);
    for (ecosystem, count) in &status.ecosystems {
        println!("  {ecosystem:<24} {count}");
    }
    if let Some(newest) = &status.newest_modified {
        let age = humantime::parse_rfc3339_weak(newest)
            .ok()
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
            .map(|d| format!(" ({} days old)", d.as_secs() / 86_400))
            .unwrap_or_default();
        println!("newest advisory modified {newest}{age}");
    }
    if let Some((source, at, counts)) = &status.last_import {
        let when = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs((*at).max(0) as u64),
        );
        println!(
            "last import {when} from {source}: {} new, {} updated, {} withdrawn, {} unchanged",
            counts.added, counts.updated, counts.removed, counts.unchanged
        );
    }
    Ok(())
}

async fn download(url: &str, to: &std::path::Path) -> anyhow::Result<()> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let response = reqwest::Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build()?
        .get(url)
        .send()
        .await
        .with_context(|| format!("fetching {url}"))?
        .error_for_status()
        .with_context(|| format!("fetching {url}"))?;
    let mut file = tokio::fs::File::create(to).await?;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        file.write_all(&chunk.with_context(|| format!("reading {url}"))?)
            .await?;
    }
    file.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        let (repo, reference) = parse_image("gallery/ui:2.1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (repo.as_str(), reference.to_string().as_str()),
            ("gallery/ui", "2.1")
        );
        let (_, reference) = parse_image("gallery/ui").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reference.to_string(), "latest");
        let digest = format!("sha256:{}", "a".repeat(64));
        let (_, reference) =
            parse_image(&format!("gallery/ui@{digest}")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reference.to_string(), digest);
    }
}
