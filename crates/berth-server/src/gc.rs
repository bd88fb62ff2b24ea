//! Online garbage collection: what no manifest needs any more goes, while every node
//! keeps serving reads and writes, and several nodes may collect at once.
//!
//! Safety rests on the metadata store (ARCHITECTURE.md, "Garbage collection"): a blob
//! is first *claimed* (from then on it is neither served nor linked, and publishing
//! the same digest waits), then its bytes are deleted, then its record is forgotten.
//! A push pins what it publishes before the bytes land, and a manifest PUT needs its
//! blobs live, so a push racing a sweep either keeps its blobs or is refused and
//! retried — never a manifest that references deleted bytes.

use std::time::{Duration, SystemTime};

use berth_meta::GcCutoffs;
use futures::TryStreamExt;
use serde::Serialize;

use crate::error::Result;
use crate::registry::Registry;

/// How a collection pass runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcOptions {
    /// How long a blob stays after its last reference went (`--gc-grace`).
    pub grace: Duration,
    /// How long what a push uploaded or mounted is kept without a manifest: a push
    /// sends its blobs first and its manifest last (at least `grace`).
    pub push_window: Duration,
    /// Namespaces or repositories whose untagged manifests are removed too.
    pub untagged: Vec<String>,
    /// Report what would go, change nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            grace: Duration::from_secs(24 * 60 * 60),
            push_window: Duration::from_secs(60 * 60),
            untagged: Vec::new(),
            dry_run: false,
        }
    }
}

/// What a pass removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Blobs whose bytes went (orphans included), and their bytes.
    pub blobs: u64,
    pub bytes: u64,
    /// Untagged manifests removed.
    pub manifests: u64,
    /// Links of blobs into repositories that no longer use them.
    pub links: u64,
    /// Bytes in storage that no record described (left by a crash), among `blobs`.
    pub orphan_blobs: u64,
    /// Staged uploads with no session (left by a crash), removed.
    pub uploads: u64,
}

/// Claims older than this belong to a collector that died: others may take them over.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// Staging space untouched this long, with no session, is abandoned.
const STAGING_IDLE: Duration = Duration::from_secs(15 * 60);
/// Blobs claimed (and deleted) per metadata transaction.
const BATCH: u32 = 256;

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl GcOptions {
    fn cutoffs(&self, now: SystemTime) -> GcCutoffs {
        let now = unix(now);
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
        // Times are whole seconds: "+ 1" makes a grace of 0 take what was released in
        // this very second too.
        GcCutoffs {
            released_before: now - secs(self.grace) + 1,
            linked_before: now - secs(self.grace.max(self.push_window)) + 1,
            claimed_before: now - secs(CLAIM_TIMEOUT),
        }
    }
}

impl Registry {
    /// One garbage-collection pass. Safe beside serving, and beside passes on other
    /// nodes (each blob is claimed by one of them).
    pub async fn collect_garbage(&self, options: &GcOptions) -> Result<GcReport> {
        let now = SystemTime::now();
        let cutoffs = options.cutoffs(now);
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        // Untagged manifests first: the blobs only they used go in the same pass.
        report.manifests = self
            .meta
            .gc_untagged_manifests(&options.untagged, &cutoffs, options.dry_run)
            .await?
            .len() as u64;
        if options.dry_run {
            let mut after = None;
            loop {
                let page = self
                    .meta
                    .gc_candidates(&cutoffs, after.as_ref(), BATCH)
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(last.digest.clone());
                report.blobs += page.len() as u64;
                report.bytes += page.iter().map(|b| b.size).sum::<u64>();
            }
        } else {
            loop {
                let claimed = self.meta.gc_claim_blobs(&cutoffs, BATCH).await?;
                if claimed.is_empty() {
                    break;
                }
                for blob in &claimed {
                    self.blobs.delete(&blob.digest).await?;
                }
                let digests: Vec<_> = claimed.iter().map(|b| b.digest.clone()).collect();
                self.meta.gc_forget_blobs(&digests).await?;
                report.blobs += claimed.len() as u64;
                report.bytes += claimed.iter().map(|b| b.size).sum::<u64>();
            }
        }
        report.links = self.meta.gc_stale_links(&cutoffs, options.dry_run).await?;
        // Bytes written long enough ago for their push to be over.
        let settled = now
            .checked_sub(options.grace.max(options.push_window))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.collect_orphans(settled, options.dry_run, &mut report)
            .await?;
        // A single-request upload stages bytes with no session: it is abandoned only
        // once nothing has been written to it for a while, whatever the push window.
        let abandoned = settled.min(
            now.checked_sub(STAGING_IDLE)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        );
        report.uploads = self.collect_staging(abandoned, options.dry_run).await?;
        tracing::info!(?report, "garbage collection pass");
        Ok(report)
    }

    /// Bytes in the blob store that no record describes: published by a process that
    /// died before recording them.
    async fn collect_orphans(
        &self,
        settled: SystemTime,
        dry_run: bool,
        report: &mut GcReport,
    ) -> Result<()> {
        let mut stored = self.blobs.list_blobs();
        while let Some(blob) = stored.try_next().await? {
            if blob.modified > settled || self.meta.gc_blob_known(&blob.digest).await? {
                continue;
            }
            if !dry_run {
                if !self.meta.gc_claim_orphan(&blob.digest, blob.size).await? {
                    continue; // Recorded meanwhile (a push just published it).
                }
                self.blobs.delete(&blob.digest).await?;
                self.meta
                    .gc_forget_blobs(std::slice::from_ref(&blob.digest))
                    .await?;
            }
            report.orphan_blobs += 1;
            report.blobs += 1;
            report.bytes += blob.size;
        }
        Ok(())
    }

    /// Staging space of uploads that have no session (their session expired or was
    /// never recorded). Sessions themselves expire with `--upload-timeout`.
    async fn collect_staging(&self, settled: SystemTime, dry_run: bool) -> Result<u64> {
        let mut staged = self.blobs.list_uploads();
        let mut removed = 0;
        while let Some(upload) = staged.try_next().await? {
            if upload.modified > settled || self.meta.upload(&upload.id).await?.is_some() {
                continue;
            }
            if !dry_run {
                self.blobs.abort_upload(&upload.id, &[]).await?;
            }
            removed += 1;
        }
        Ok(removed)
    }
}

/// Runs a pass every `interval` until the process ends, on every node (claims keep
/// them from doing the same work twice).
pub async fn run_periodically(
    registry: std::sync::Arc<Registry>,
    options: GcOptions,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // The first tick is immediate: let the server settle first.
    loop {
        tick.tick().await;
        if let Err(e) = registry.collect_garbage(&options).await {
            tracing::warn!(error = %e, "garbage collection pass failed");
        }
    }
}
