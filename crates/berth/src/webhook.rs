//! `berth webhook add|ls|rm|deliveries`: webhooks on a namespace or repository, against
//! the same database as `berth serve` (a running server picks changes up within
//! seconds).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::admin::{StoreArgs, open};

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Tell URL about events in SCOPE (a namespace, or a repository NS/REPO): an HTTP
    /// POST per event, signed with the secret (X-Berth-Signature-256: sha256=<HMAC>),
    /// retried with backoff until the receiver answers 2xx. Prints its id.
    Add {
        scope: String,
        url: String,
        /// Comma-separated: push, delete, tag-move, pull, vulnerabilities (new findings
        /// for a stored image after `berth vulndb import`).
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// A file holding the signing secret.
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// The body: Docker Hub's payload or a CloudEvent.
        #[arg(long, default_value = "docker-hub", value_parser = ["docker-hub", "cloudevents"])]
        format: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List webhooks (of SCOPE, or all).
    Ls {
        scope: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a webhook and its delivery history.
    Rm {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// A webhook's deliveries, newest first: event, state, attempts, the receiver's
    /// last status or error.
    Deliveries {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn webhook(command: WebhookCommand) -> anyhow::Result<()> {
    match command {
        WebhookCommand::Add {
            scope,
            url,
            events,
            secret_file,
            format,
            store,
        } => {
            let secret = match secret_file {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?
                        .trim_end_matches(['\n', '\r'])
                        .to_owned(),
                ),
                None => None,
            };
            let hook = berth_server::http::api::webhooks::checked_webhook(
                &scope,
                &url,
                &events,
                secret,
                Some(&format),
                "cli",
            )
            .map_err(anyhow::Error::msg)?;
            open(&store).await?.meta().add_webhook(&hook).await?;
            println!("{}", hook.id);
        }
        WebhookCommand::Ls { scope, store } => {
            let accounts = open(&store).await?;
            println!(
                "{:<34} {:<24} {:<22} {:<12} URL",
                "ID", "SCOPE", "EVENTS", "FORMAT"
            );
            for hook in accounts.meta().webhooks().await? {
                if scope
                    .as_deref()
                    .is_some_and(|s| hook.scope != s && hook.scope.split('/').next() != Some(s))
                {
                    continue;
                }
                println!(
                    "{:<34} {:<24} {:<22} {:<12} {}",
                    hook.id,
                    hook.scope,
                    hook.events.join(","),
                    hook.format,
                    hook.url
                );
            }
        }
        WebhookCommand::Rm { id, store } => {
            if !open(&store).await?.meta().remove_webhook(&id).await? {
                anyhow::bail!("no webhook {id}");
            }
            println!("removed {id}");
        }
        WebhookCommand::Deliveries { id, store } => {
            let accounts = open(&store).await?;
            println!(
                "{:<8} {:<9} {:<10} {:>8} {:>6}  ERROR",
                "ID", "EVENT", "STATE", "ATTEMPTS", "STATUS"
            );
            for d in accounts.meta().deliveries(&id, 100).await? {
                println!(
                    "{:<8} {:<9} {:<10} {:>8} {:>6}  {}",
                    d.id,
                    d.event,
                    d.state,
                    d.attempts,
                    d.last_status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "-".into()),
                    d.last_error.as_deref().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
