//! The account commands: `berth user|org|token|repo|namespace …`. They open the same
//! database as `berth serve` (which may be running: SQLite in WAL mode lets both write)
//! and go through the same accounts service as `/api/v1`.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use berth_core::{RepoName, Role, TokenScope};
use berth_server::Accounts;
use clap::{Args, Subcommand};

/// Where the database is: the same flags and variables as `berth serve`.
#[derive(Args)]
pub struct StoreArgs {
    /// TOML file with `data_dir`/`database` (as for `berth serve`).
    #[arg(long, env = "BERTH_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Where embedded storage lives [default: ./berth-data]
    #[arg(long, env = "BERTH_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Metadata database URL [default: sqlite://<data-dir>/berth.db]
    #[arg(long, env = "BERTH_DATABASE", global = true)]
    database: Option<String>,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user (and their namespace). Prints a generated password unless
    /// --password-stdin is given.
    Add {
        name: String,
        /// Make the user a server administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Change a user's password; their sessions and docker logins made with the old
    /// password end.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a user, their tokens and memberships. Their repositories stay.
    Rm {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List users.
    Ls {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum OrgCommand {
    /// Create an organization, with OWNER as its first admin.
    Add {
        name: String,
        #[arg(long)]
        owner: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List organizations.
    Ls {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Manage an organization's members.
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Subcommand)]
pub enum MemberCommand {
    /// Add a member, or change their role.
    Add {
        org: String,
        user: String,
        /// read, write or admin.
        #[arg(long)]
        role: Role,
        #[command(flatten)]
        store: StoreArgs,
    },
    Rm {
        org: String,
        user: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    Ls {
        org: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a personal access token; it is printed once and never again.
    Create {
        #[arg(long)]
        user: String,
        /// read, read-write or read-write-delete.
        #[arg(long)]
        scope: TokenScope,
        /// Lifetime, such as 30d or 12h [default: never expires]
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        /// A label to recognise it by.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a user's tokens (never their secrets).
    Ls {
        #[arg(long)]
        user: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token; it stops working at the next request.
    Revoke {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum RepoCommand {
    /// List repositories with what each stores (a blob shared by several repositories
    /// counts in each; a namespace's total counts it once).
    Ls {
        /// Only this namespace's repositories, with the namespace's total.
        namespace: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Make a repository public or private (creating it empty if it does not exist, so
    /// it can be private from its first push).
    Visibility {
        name: RepoName,
        #[arg(value_parser = ["public", "private"])]
        visibility: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum NamespaceCommand {
    /// Set the visibility of new repositories in a namespace (`default`: the server's).
    Visibility {
        name: String,
        #[arg(value_parser = ["public", "private", "default"])]
        visibility: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Mark a namespace official or verified (a verified publisher), or remove its mark.
    /// `library` (where bare names such as `alpine` live) is official unless marked
    /// otherwise.
    Mark {
        name: String,
        #[arg(value_parser = ["official", "verified", "none"])]
        mark: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a namespace's storage quota (such as 20GiB; `none` removes it), or with no
    /// size show it and what the namespace uses. A push that would pass it is refused.
    Quota {
        name: String,
        size: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub(crate) async fn open(store: &StoreArgs) -> anyhow::Result<Accounts> {
    let database = crate::serve::database_of(
        store.config.as_deref(),
        store.data_dir.clone(),
        store.database.clone(),
    )?;
    if let berth_server::DatabaseConfig::Sqlite(url) = &database
        && let Some(path) = url.strip_prefix("sqlite://")
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let meta = berth_server::open_meta(&database).await?;
    let _ = OPENED.set(meta.clone());
    // The first administrator is `berth serve`'s to create (it logs the password); a
    // command never creates an account it was not asked to.
    Ok(Accounts::open_for_commands(meta).await?)
}

/// The database a command opened, for its audit record.
static OPENED: std::sync::OnceLock<std::sync::Arc<dyn berth_meta::MetaStore>> =
    std::sync::OnceLock::new();

/// Subcommands that only read: not recorded.
const READS: [&str; 7] = [
    "ls",
    "show",
    "deliveries",
    "history",
    "plan",
    "status",
    "list",
];

/// Records a command that changed something (`berth org member add …`) in the audit
/// log, as done by `cli` (and the system user who ran it) on this machine. Its
/// arguments hold no secret: passwords and token secrets come on standard input or in
/// files.
pub async fn audit_command(argv: &[String]) {
    let Some(meta) = OPENED.get() else {
        return;
    };
    if argv.get(2).is_some_and(|sub| READS.contains(&sub.as_str()))
        || argv.iter().any(|a| a == "--dry-run")
    {
        return;
    }
    let who = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_default();
    let detail =
        serde_json::json!({ "command": argv.get(1..).unwrap_or_default(), "system_user": who });
    let event = berth_server::ops::audit::event("cli", "local", "command", None, detail);
    berth_server::ops::audit::record_now(&**meta, &event).await;
}

/// A command about the user `admin` on a data dir where `berth serve` never ran says
/// where that account comes from, rather than only that it does not exist.
async fn explain_missing_admin(accounts: &Accounts, user: &str, e: anyhow::Error) -> anyhow::Error {
    let never_served = accounts
        .meta()
        .setting(berth_server::accounts::FIRST_ADMIN_CREATED)
        .await
        .is_ok_and(|s| s.is_none());
    if user == berth_server::accounts::FIRST_ADMIN && never_served {
        e.context(
            "the first administrator \"admin\" is created by `berth serve` on its first \
             start (it logs the password); start the server once, or create users with \
             `berth user add NAME --admin`",
        )
    } else {
        e
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((berth_auth::secret::new_password(), true));
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the password from standard input")?;
    Ok((text.trim_end_matches(['\n', '\r']).to_owned(), false))
}

pub(crate) fn when(t: Option<i64>) -> String {
    match t {
        Some(t) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64),
        )
        .to_string(),
        None => "-".to_owned(),
    }
}

pub async fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            admin,
            password_stdin,
            store,
        } => {
            let accounts = open(&store).await?;
            let (password, generated) = read_password(password_stdin)?;
            accounts.create_user(&name, &password, admin).await?;
            if generated {
                println!("created user {name}; password: {password}");
            } else {
                println!("created user {name}");
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin,
            store,
        } => {
            let accounts = open(&store).await?;
            let (password, generated) = read_password(password_stdin)?;
            if let Err(e) = accounts.set_password(&name, &password).await {
                return Err(explain_missing_admin(&accounts, &name, e.into()).await);
            }
            if generated {
                println!("changed the password of {name}; new password: {password}");
            } else {
                println!("changed the password of {name}");
            }
        }
        UserCommand::Rm { name, store } => {
            open(&store).await?.delete_user(&name).await?;
            println!("removed user {name}");
        }
        UserCommand::Ls { store } => {
            let accounts = open(&store).await?;
            println!("{:<24} {:<6} CREATED", "NAME", "ADMIN");
            for u in accounts.meta().list_users().await? {
                let admin = if u.admin { "yes" } else { "no" };
                println!("{:<24} {:<6} {}", u.name, admin, when(Some(u.created_at)));
            }
        }
    }
    Ok(())
}

pub async fn org(command: OrgCommand) -> anyhow::Result<()> {
    match command {
        OrgCommand::Add { name, owner, store } => {
            open(&store).await?.create_org(&name, &owner).await?;
            println!("created organization {name} (owner: {owner})");
        }
        OrgCommand::Ls { store } => {
            for org in open(&store).await?.meta().list_orgs().await? {
                println!("{}", org.name);
            }
        }
        OrgCommand::Member(MemberCommand::Add {
            org,
            user,
            role,
            store,
        }) => {
            open(&store).await?.set_member(&org, &user, role).await?;
            println!("{user} is now a member of {org} with role {role}");
        }
        OrgCommand::Member(MemberCommand::Rm { org, user, store }) => {
            open(&store).await?.remove_member(&org, &user).await?;
            println!("removed {user} from {org}");
        }
        OrgCommand::Member(MemberCommand::Ls { org, store }) => {
            let members = open(&store)
                .await?
                .meta()
                .members(&org)
                .await?
                .with_context(|| format!("no organization named {org}"))?;
            for m in members {
                println!("{:<24} {}", m.user, m.role);
            }
        }
    }
    Ok(())
}

pub async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            user,
            scope,
            expires,
            name,
            store,
        } => {
            let accounts = open(&store).await?;
            let created = match accounts
                .create_token(&user, scope, expires, name.as_deref())
                .await
            {
                Ok(created) => created,
                Err(e) => return Err(explain_missing_admin(&accounts, &user, e.into()).await),
            };
            eprintln!(
                "created token {} for {user} (scope {scope}, expires {}); it is shown only now:",
                created.token.id,
                when(created.token.expires_at)
            );
            println!("{}", created.secret);
        }
        TokenCommand::Ls { user, store } => {
            let accounts = open(&store).await?;
            println!(
                "{:<18} {:<16} {:<18} {:<8} {:<21} LAST USED",
                "ID", "NAME", "SCOPE", "STATE", "EXPIRES"
            );
            let t = berth_server::accounts::now();
            for token in accounts.meta().list_tokens(&user).await? {
                let state = if token.revoked_at.is_some() {
                    "revoked"
                } else if token.is_active(t) {
                    "active"
                } else {
                    "expired"
                };
                println!(
                    "{:<18} {:<16} {:<18} {:<8} {:<21} {}",
                    token.id,
                    token.name,
                    token.scope,
                    state,
                    when(token.expires_at),
                    when(token.last_used_at)
                );
            }
        }
        TokenCommand::Revoke { id, store } => {
            open(&store).await?.revoke_token(&id).await?;
            println!("revoked token {id}");
        }
    }
    Ok(())
}

pub async fn repo(command: RepoCommand) -> anyhow::Result<()> {
    match command {
        RepoCommand::Ls { namespace, store } => list_repositories(namespace, &store).await,
        RepoCommand::Visibility {
            name,
            visibility,
            store,
        } => {
            open(&store)
                .await?
                .meta()
                .set_repository_visibility(&name, visibility == "public")
                .await?;
            println!("{name} is now {visibility}");
            Ok(())
        }
    }
}

async fn list_repositories(namespace: Option<String>, store: &StoreArgs) -> anyhow::Result<()> {
    const PAGE: u32 = 1000;
    let accounts = open(store).await?;
    let meta = accounts.meta();
    println!(
        "{:<40} {:>10} {:>6} {:>10} {:>8}",
        "REPOSITORY", "SIZE", "TAGS", "MANIFESTS", "BLOBS"
    );
    let mut last: Option<String> = None;
    loop {
        let page = meta
            .repository_usage(namespace.as_deref(), last.as_deref(), PAGE)
            .await?;
        for usage in &page {
            println!(
                "{:<40} {:>10} {:>6} {:>10} {:>8}",
                usage.repository.as_str(),
                berth_core::size::human(usage.bytes),
                usage.tags,
                usage.manifests,
                usage.blobs
            );
        }
        if page.len() < PAGE as usize {
            break;
        }
        last = page.last().map(|u| u.repository.as_str().to_owned());
    }
    if let Some(namespace) = namespace {
        let total = meta.namespace_usage(&namespace).await?;
        println!("{namespace}: {} in all", berth_core::size::human(total));
    }
    Ok(())
}

pub async fn namespace(command: NamespaceCommand) -> anyhow::Result<()> {
    let (name, visibility, store) = match command {
        NamespaceCommand::Quota { name, size, store } => {
            berth_server::policy::check_scope(&name)?;
            let accounts = open(&store).await?;
            let meta = accounts.meta();
            if let Some(size) = size {
                let bytes = match size.as_str() {
                    "none" => None,
                    text => Some(berth_core::size::parse(text).map_err(anyhow::Error::msg)?),
                };
                berth_server::policy::set_quota(meta, &name, bytes, "cli").await?;
            }
            let quota = berth_server::policy::quota_of(meta, &name).await?;
            let used = meta.namespace_usage(&name).await?;
            let human = berth_core::size::human;
            match quota {
                Some(quota) => println!(
                    "{name}: quota {}, using {} ({:.0}%)",
                    human(quota),
                    human(used),
                    used as f64 * 100.0 / quota.max(1) as f64
                ),
                None => println!("{name}: no quota, using {}", human(used)),
            }
            return Ok(());
        }
        NamespaceCommand::Visibility {
            name,
            visibility,
            store,
        } => (name, visibility, store),
        NamespaceCommand::Mark { name, mark, store } => {
            format!("{name}/x")
                .parse::<RepoName>()
                .with_context(|| format!("namespace {name:?}"))?;
            let mark = berth_server::marks::NamespaceMark::parse(&mark)
                .context("use official, verified or none")?;
            let accounts = open(&store).await?;
            berth_server::marks::set(accounts.meta(), &name, mark).await?;
            println!("{name} is now {}", mark.as_str());
            return Ok(());
        }
    };
    let public = match visibility.as_str() {
        "public" => Some(true),
        "private" => Some(false),
        _ => None,
    };
    if !open(&store)
        .await?
        .meta()
        .set_namespace_default(&name, public)
        .await?
    {
        anyhow::bail!("no user or organization named {name}");
    }
    println!("new repositories in {name} will be {visibility}");
    Ok(())
}
