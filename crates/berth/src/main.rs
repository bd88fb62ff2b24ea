//! `berth`: the one binary. Parses the command line, reads the config file and the
//! environment (the only place that does), and hands a typed config to berth-server.
//! [`serve`] runs the registry; [`admin`] holds the account commands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod audit;
mod gc;
mod lint;
mod mirror;
mod policy;
mod retention;
mod scan;
mod serve;
mod tls;
mod webhook;

// jemalloc hands memory back to the system a few seconds after a burst (decay, run by
// its background threads); glibc's malloc kept hundreds of MiB in per-thread arenas
// after bursts of large manifests. Measured in ARCHITECTURE.md ("Memory").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A container image registry (OCI Distribution)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve(Box<serve::ServeArgs>),
    /// Manage users (against the same database as `berth serve`).
    #[command(subcommand)]
    User(admin::UserCommand),
    /// Manage organizations and their members.
    #[command(subcommand)]
    Org(admin::OrgCommand),
    /// Create, list and revoke personal access tokens.
    #[command(subcommand)]
    Token(admin::TokenCommand),
    /// Repository settings.
    #[command(subcommand)]
    Repo(admin::RepoCommand),
    /// Namespace settings.
    #[command(subcommand)]
    Namespace(admin::NamespaceCommand),
    /// Tag policies on namespaces and repositories: floating semver tags, immutable tags,
    /// golden bases.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// What tag policies did and would do: tag history, the dry run of a push.
    #[command(subcommand)]
    Tag(policy::TagCommand),
    /// Check Dockerfiles in CI: every image a build uses must be a golden image of the
    /// registry (or allowed), tagged, and with --require-digest pinned. Exits 0 when
    /// clean, 1 with findings, 2 on a usage or parse error.
    Lint(Box<lint::LintArgs>),
    /// Golden images: the bases that `require-golden-base` and `berth lint` accept.
    #[command(subcommand)]
    Golden(policy::GoldenCommand),
    /// Mirrors of other registries: fill the cache ahead of time.
    #[command(subcommand)]
    Mirror(mirror::MirrorCommand),
    /// An image's packages and known vulnerabilities (scanned now if the server has
    /// not yet). Exits 0 without findings, 1 with findings, 2 on errors.
    Scan(Box<scan::ScanArgs>),
    /// The offline vulnerability database (OSV advisories) scans match against.
    #[command(subcommand)]
    Vulndb(scan::VulnDbCommand),
    /// Retention: remove old tags as the `retention` policies say.
    #[command(subcommand)]
    Retention(retention::RetentionCommand),
    /// Webhooks: tell a URL about pushes, deletes, tag moves and pulls.
    #[command(subcommand)]
    Webhook(webhook::WebhookCommand),
    /// The audit log: who did what, from where, when.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// HTTPS certificates: a local CA and a server certificate clients can trust.
    #[command(subcommand)]
    Tls(tls::TlsCommand),
    /// Collect garbage once: blobs no manifest uses any more (same storage, database
    /// and settings as `berth serve`; safe beside running servers).
    Gc(Box<gc::GcArgs>),
}

fn main() -> ExitCode {
    #[cfg(not(target_env = "msvc"))]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!(
            "berth: jemalloc background threads unavailable ({e}); memory is returned more slowly"
        );
    }
    let argv: Vec<String> = std::env::args().collect();
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Command::Serve(args) => match args.log_format() {
            Ok(format) => format,
            Err(e) => {
                eprintln!("berth: {e:#}");
                return ExitCode::from(2);
            }
        },
        _ => serve::LogFormat::Text,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log_format {
        serve::LogFormat::Json => logs.json().init(),
        serve::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<ExitCode> = runtime.block_on(async {
        let done = match cli.command {
            Command::Lint(args) => return Ok(lint::lint(*args).await),
            Command::Scan(args) => return Ok(scan::scan(*args).await),
            Command::Vulndb(c) => scan::vulndb(c).await,
            Command::Mirror(c) => return Ok(mirror::mirror(c).await),
            Command::Serve(args) => serve::serve(*args).await,
            Command::Gc(args) => gc::gc(*args).await,
            Command::Tls(c) => tls::tls(c),
            Command::Audit(c) => audit::audit(c).await,
            Command::Webhook(c) => webhook::webhook(c).await,
            Command::Retention(c) => retention::retention(c).await,
            Command::User(c) => admin::user(c).await,
            Command::Org(c) => admin::org(c).await,
            Command::Token(c) => admin::token(c).await,
            Command::Repo(c) => admin::repo(c).await,
            Command::Namespace(c) => admin::namespace(c).await,
            Command::Policy(c) => policy::policy(c).await,
            Command::Tag(c) => policy::tag(c).await,
            Command::Golden(c) => policy::golden(c).await,
        };
        if done.is_ok() {
            admin::audit_command(&argv).await;
        }
        done.map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}
