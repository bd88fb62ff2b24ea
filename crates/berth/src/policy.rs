//! `berth policy set|show`, `berth tag history|plan` and `berth golden add|ls|rm`: tag
//! policies on namespaces and repositories, what they did, and the golden images that
//! `require-golden-base` checks pushes against. Like the account commands, they act on the
//! metadata store directly, as an administrator.

use anyhow::Context;
use berth_core::{RepoName, Tag};
use berth_server::policy;
use clap::Subcommand;

use crate::admin::{StoreArgs, open, when};

/// Who the history names for changes made from the command line.
const CLI_ACTOR: &str = "admin (cli)";

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Set a policy on a namespace (gallery) or repository (gallery/ui); a repository's
    /// setting wins over its namespace's. Keys and values:
    /// floating-tags semver|off; immutable-tags GLOB[,GLOB…]|off;
    /// require-golden-base off|warn|enforce; retention "keep-last=N match=GLOBS
    /// unpulled=DURATION protect=GLOBS"|off (see `berth retention run`);
    /// block-vulnerable critical|high|medium|off (pulls of images with findings that bad
    /// refused, except for those who may push); allow-vulnerabilities ID[,ID…]|off
    /// (accepted advisories or CVE ids). The value `inherit` removes the setting.
    Set {
        scope: String,
        key: String,
        value: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show the settings on a namespace or repository (a repository's with its
    /// namespace's, and the policy in force).
    Show {
        scope: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum TagCommand {
    /// Every recorded move of a repository's tags (or of one tag), newest first: who,
    /// when, from which manifest to which.
    History {
        /// REPO or REPO:TAG
        reference: String,
        /// Most moves to show.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Dry run: which tags a push of REPO:TAG would point at the pushed manifest under
    /// the repository's policy now, and where they point today.
    Plan {
        /// REPO:TAG
        reference: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum GoldenCommand {
    /// Make REPO's images golden: every tag, or those matching TAG-GLOB (`2.*`).
    Add {
        /// REPO or REPO:TAG-GLOB
        reference: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the golden images.
    Ls {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a golden image entry, exactly as it was added.
    Rm {
        /// REPO or REPO:TAG-GLOB
        reference: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `REPO[:TAG-GLOB]`.
fn golden_reference(reference: &str) -> anyhow::Result<(RepoName, Option<String>)> {
    let (repo, glob) = berth_core::name::split_tag(reference);
    let repo: RepoName = repo
        .parse()
        .with_context(|| format!("repository {repo:?}"))?;
    let glob = glob
        .map(|g| berth_core::tag_policy::TagPattern::parse(g).map(|p| p.as_str().to_owned()))
        .transpose()?;
    Ok((repo, glob))
}

pub async fn golden(command: GoldenCommand) -> anyhow::Result<()> {
    match command {
        GoldenCommand::Add { reference, store } => {
            let (repo, glob) = golden_reference(&reference)?;
            let accounts = open(&store).await?;
            let added = accounts
                .meta()
                .add_golden(&repo, glob.as_deref(), CLI_ACTOR)
                .await?;
            let what = format!("{repo}:{}", glob.as_deref().unwrap_or("*"));
            if added {
                println!("golden: {what}");
            } else {
                println!("golden already: {what}");
            }
        }
        GoldenCommand::Ls { store } => {
            let accounts = open(&store).await?;
            println!("{:<40} {:<16} ADDED", "REPOSITORY", "TAGS");
            for g in accounts.meta().golden_images().await? {
                println!(
                    "{:<40} {:<16} by {} at {}",
                    g.repository.as_str(),
                    g.tags.as_deref().unwrap_or("*"),
                    g.added_by,
                    when(Some(g.added_at))
                );
            }
        }
        GoldenCommand::Rm { reference, store } => {
            let (repo, glob) = golden_reference(&reference)?;
            let accounts = open(&store).await?;
            if !accounts
                .meta()
                .remove_golden(&repo, glob.as_deref())
                .await?
            {
                anyhow::bail!("{reference} is not a golden image entry (berth golden ls)");
            }
            println!("removed golden image entry {reference}");
        }
    }
    Ok(())
}

pub async fn policy(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Set {
            scope,
            key,
            value,
            store,
        } => {
            policy::check_scope(&scope)?;
            let stored = policy::normalize(&key, &value)?;
            let accounts = open(&store).await?;
            accounts
                .meta()
                .set_policy(&scope, &key, stored.as_deref(), CLI_ACTOR)
                .await?;
            match stored {
                Some(v) => println!("{scope}: {key} {v}"),
                None => println!("{scope}: {key} inherited"),
            }
        }
        PolicyCommand::Show { scope, store } => {
            policy::check_scope(&scope)?;
            let accounts = open(&store).await?;
            let meta = accounts.meta();
            match scope.parse::<RepoName>() {
                Ok(repo) if scope.contains('/') => {
                    let settings = meta.policies(&[repo.namespace(), repo.as_str()]).await?;
                    let effective = policy::effective(&repo, &settings);
                    println!("{:<22} {:<28} SET ON", "KEY", "VALUE");
                    let immutable: Vec<&str> =
                        effective.immutable.iter().map(|p| p.as_str()).collect();
                    let rows = [
                        (
                            policy::FLOATING_TAGS,
                            if effective.semver_floats {
                                "semver"
                            } else {
                                "off"
                            }
                            .to_owned(),
                        ),
                        (
                            policy::IMMUTABLE_TAGS,
                            if immutable.is_empty() {
                                "off".to_owned()
                            } else {
                                immutable.join(",")
                            },
                        ),
                        (
                            policy::REQUIRE_GOLDEN_BASE,
                            format!("{:?}", effective.golden).to_lowercase(),
                        ),
                    ];
                    for (key, value) in rows {
                        let from = settings
                            .iter()
                            .filter(|s| s.key == key)
                            .max_by_key(|s| s.scope.len())
                            .map_or("(default)".to_owned(), |s| {
                                format!(
                                    "{} by {} at {}",
                                    s.scope,
                                    s.updated_by,
                                    when(Some(s.updated_at))
                                )
                            });
                        println!("{key:<22} {value:<28} {from}");
                    }
                }
                _ => {
                    let settings = meta.policies(&[scope.as_str()]).await?;
                    if settings.is_empty() {
                        println!("{scope}: no policies set");
                    }
                    for s in settings {
                        println!(
                            "{:<22} {:<28} by {} at {}",
                            s.key,
                            s.value,
                            s.updated_by,
                            when(Some(s.updated_at))
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// `REPO[:TAG]`.
fn split_reference(reference: &str) -> anyhow::Result<(RepoName, Option<Tag>)> {
    let (repo, tag) = berth_core::name::split_tag(reference);
    let repo: RepoName = repo
        .parse()
        .with_context(|| format!("repository {repo:?}"))?;
    let tag = tag
        .map(|t| t.parse::<Tag>().with_context(|| format!("tag {t:?}")))
        .transpose()?;
    Ok((repo, tag))
}

fn short(digest: Option<&berth_core::Digest>) -> String {
    match digest {
        Some(d) => {
            let s = d.to_string();
            s.chars().take(19).collect()
        }
        None => "-".to_owned(),
    }
}

pub async fn tag(command: TagCommand) -> anyhow::Result<()> {
    match command {
        TagCommand::History {
            reference,
            limit,
            store,
        } => {
            let (repo, tag) = split_reference(&reference)?;
            let accounts = open(&store).await?;
            let moves = accounts
                .meta()
                .tag_history(&repo, tag.as_ref().map(Tag::as_str), None, limit)
                .await?;
            println!(
                "{:<21} {:<20} {:<7} {:<20} {:<20} BY",
                "WHEN", "TAG", "REASON", "FROM", "TO"
            );
            for m in moves {
                println!(
                    "{:<21} {:<20} {:<7} {:<20} {:<20} {}",
                    when(Some(m.at)),
                    m.tag,
                    m.reason.as_str(),
                    short(m.from.as_ref()),
                    short(m.to.as_ref()),
                    m.actor
                );
            }
        }
        TagCommand::Plan { reference, store } => {
            let (repo, tag) = split_reference(&reference)?;
            let tag = tag.context("name the tag to push: REPO:TAG")?;
            let accounts = open(&store).await?;
            let plan = policy::plan_tag_push(accounts.meta(), &repo, &tag).await?;
            if !plan.policy.semver_floats {
                println!("{repo}: floating-tags is off; only {tag} would move");
            }
            println!("{:<20} {:<20} NOTE", "TAG", "NOW AT");
            for m in plan.moves {
                let note = if m.immutable && m.current.is_some() {
                    "immutable: refused unless the same manifest"
                } else if m.tag == tag.as_str() {
                    "pushed"
                } else {
                    "floats to the pushed manifest"
                };
                println!("{:<20} {:<20} {note}", m.tag, short(m.current.as_ref()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_tag() {
        let (r, t) = split_reference("gallery/ui:2.1").unwrap();
        assert_eq!((r.as_str(), t.unwrap().as_str()), ("gallery/ui", "2.1"));
        let (r, t) = split_reference("gallery/ui").unwrap();
        assert_eq!((r.as_str(), t), ("gallery/ui", None));
        assert!(split_reference("gallery/ui:bad tag").is_err());
    }
}
