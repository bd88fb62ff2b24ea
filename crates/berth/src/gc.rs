//! `berth gc`: one garbage-collection pass against the storage and database `berth
//! serve` uses (same flags, environment and config file), beside running servers.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::serve::{self, ServeArgs};

#[derive(Args)]
pub struct GcArgs {
    /// Report what would go; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The grace for this pass instead of --gc-grace (such as 0s: everything no manifest
    /// uses goes now, except what pushes in progress uploaded).
    #[arg(long, value_parser = humantime::parse_duration)]
    grace: Option<Duration>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    serve: ServeArgs,
}

pub async fn gc(args: GcArgs) -> anyhow::Result<()> {
    let config = serve::resolve(args.serve)?;
    let mut options = config.gc.clone();
    options.dry_run = args.dry_run;
    if let Some(grace) = args.grace {
        options.grace = grace;
    }
    let blobs = berth_server::open_blobs(&config.storage).await?;
    let meta = berth_server::open_meta(&config.database).await?;
    let registry = Arc::new(berth_server::Registry::new(blobs, meta));
    let report = registry.collect_garbage(&options).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let verb = if report.dry_run {
            "would remove"
        } else {
            "removed"
        };
        println!(
            "{verb} {} blobs ({}), {} untagged manifests, {} unused links, {} orphaned blobs, \
             {} abandoned uploads",
            report.blobs,
            berth_core::size::human(report.bytes),
            report.manifests,
            report.links,
            report.orphan_blobs,
            report.uploads
        );
    }
    Ok(())
}
