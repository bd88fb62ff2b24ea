//! `berth retention run [--dry-run]`: applies the `retention` policies now (set them
//! with `berth policy set SCOPE retention "keep-last=10 unpulled=90d protect=latest"`),
//! against the same database as `berth serve`.

use clap::Subcommand;

use crate::admin::{StoreArgs, open};

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Remove the tags the retention policies say go (and manifests no tag points at
    /// any more, so garbage collection frees their blobs); with --dry-run, only list them.
    Run {
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn retention(command: RetentionCommand) -> anyhow::Result<()> {
    let RetentionCommand::Run { dry_run, store } = command;
    let accounts = open(&store).await?;
    let meta = accounts.meta();
    let removals = berth_server::retention::plan(meta, berth_server::accounts::now()).await?;
    for removal in &removals {
        println!(
            "{}{}:{}  {}  ({})",
            if dry_run { "would remove " } else { "remove " },
            removal.repository,
            removal.tag,
            removal.digest,
            removal.why
        );
    }
    if dry_run {
        println!(
            "{} tags would be removed (dry run: nothing changed)",
            removals.len()
        );
    } else {
        let removed = berth_server::retention::apply(meta, &removals).await?;
        println!("{removed} tags removed");
    }
    Ok(())
}
