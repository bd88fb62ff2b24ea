//! `berth audit ls`: the audit log, against the same database as `berth serve`.

use berth_meta::AuditQuery;
use clap::Subcommand;

use crate::admin::{StoreArgs, open};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// List audit events, newest first: sign-ins, tokens, pushes, deletes, tag moves,
    /// settings and membership changes, with who, from where and when.
    Ls {
        /// Only events since this: an age (24h, 7d), an RFC 3339 time or unix seconds.
        #[arg(long)]
        since: Option<String>,
        /// Only this user's events.
        #[arg(long)]
        user: Option<String>,
        /// Only events about this repository, or this namespace and its repositories.
        #[arg(long)]
        repo: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn audit(command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Ls {
        since,
        user,
        repo,
        limit,
        json,
        store,
    } = command;
    let now = berth_server::accounts::now();
    let since = since
        .map(|text| berth_server::ops::audit::parse_since(&text, now))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let accounts = open(&store).await?;
    let query = AuditQuery {
        since,
        actor: user,
        target: repo,
        before_id: None,
        limit: limit.max(1),
    };
    let entries = accounts.meta().audit_events(&query).await?;
    if !json {
        println!(
            "{:<20} {:<16} {:<16} {:<16} {:<24} DETAIL",
            "TIME", "ACTOR", "CLIENT", "ACTION", "TARGET"
        );
    }
    for entry in entries {
        let e = entry.event;
        let time = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.at.max(0) as u64),
        );
        if json {
            let detail: serde_json::Value =
                serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::Null);
            let line = serde_json::json!({
                "id": entry.id, "at": e.at, "time": time.to_string(), "actor": e.actor,
                "client": e.client, "action": e.action, "target": e.target, "detail": detail,
            });
            println!("{line}");
        } else {
            println!(
                "{:<20} {:<16} {:<16} {:<16} {:<24} {}",
                time.to_string(),
                e.actor,
                e.client,
                e.action,
                e.target.as_deref().unwrap_or("-"),
                e.detail
            );
        }
    }
    Ok(())
}
