//! `berth lint`: checks Dockerfiles in CI. Every external image a build uses (`FROM`,
//! `COPY --from`, `RUN --mount from=`) must be a golden image of the registry given (or
//! allowed with `--allow`), tagged (not `latest`), and with `--require-digest` pinned.
//! The judgement is `berth_lint`'s; this module reads the files, asks the registry for
//! its golden images and resolves digests for the suggestions.
//!
//! Exit status: 0 clean, 1 findings, 2 a usage error, an unreadable Dockerfile, one that
//! does not parse, or a registry that cannot be asked.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use berth_lint::{AllowPattern, CheckOptions, Finding, ParseOptions, Reference, report, rules};
use clap::{Args, ValueEnum};
use serde::Deserialize;

#[derive(Args)]
pub struct LintArgs {
    /// The registry whose golden images every build must start from
    /// (http://HOST:PORT or https://HOST).
    #[arg(long, value_name = "URL")]
    registry: Option<String>,
    /// Name of an environment variable holding an access token for the registry.
    #[arg(long, value_name = "VAR")]
    token_env: Option<String>,
    /// Every external image must be pinned by digest (`@sha256:…`).
    #[arg(long)]
    require_digest: bool,
    /// Also allow an image: REF or REF:TAG-GLOB (`golang:1.22*`, `docker.io/library/alpine`).
    #[arg(long, value_name = "REF")]
    allow: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// A build argument, as `docker build --build-arg NAME=VALUE` gives it.
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    build_args: Vec<String>,
    #[arg(required = true, value_name = "DOCKERFILE")]
    dockerfiles: Vec<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Sarif,
}

/// Exit status for a usage error, an unreadable or unparsable Dockerfile.
const USAGE: u8 = 2;

pub async fn lint(args: LintArgs) -> ExitCode {
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth lint: {e:#}");
            ExitCode::from(USAGE)
        }
    }
}

/// A registry to ask: its base URL, the host its image references use, a token.
struct Registry {
    base: String,
    host: String,
    token: Option<String>,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct GoldenList {
    golden: Vec<GoldenEntry>,
}

#[derive(Deserialize)]
struct GoldenEntry {
    repository: String,
    tags: Option<String>,
}

impl Registry {
    fn new(url: &str, token: Option<String>) -> anyhow::Result<Registry> {
        let base = url.trim_end_matches('/').to_owned();
        let host = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .filter(|h| !h.is_empty() && !h.contains('/'))
            .with_context(|| {
                format!("--registry {url}: use http://HOST[:PORT] or https://HOST[:PORT]")
            })?
            .to_owned();
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Registry {
            base,
            host,
            token,
            client,
        })
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.get(format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Allow patterns for every golden image: `HOST/ns/repo[:glob]`, and for
    /// `library/x` also `HOST/x` (a bare name means `library/x`, as on Docker Hub).
    async fn golden_patterns(&self) -> anyhow::Result<Vec<AllowPattern>> {
        let response = self
            .get("/api/v1/golden")
            .send()
            .await
            .with_context(|| format!("asking {} for its golden images", self.base))?;
        if !response.status().is_success() {
            bail!(
                "asking {} for its golden images: {}",
                self.base,
                response.status()
            );
        }
        let list: GoldenList = response.json().await.context("the golden image list")?;
        let mut patterns = Vec::new();
        for entry in list.golden {
            let glob = entry.tags.map(|t| format!(":{t}")).unwrap_or_default();
            let mut names = vec![entry.repository.clone()];
            if let Some(bare) = entry.repository.strip_prefix("library/") {
                names.push(bare.to_owned());
            }
            for name in names {
                let text = format!("{}/{name}{glob}", self.host);
                patterns.push(
                    AllowPattern::parse(&text)
                        .map_err(|e| anyhow::anyhow!("golden image {text}: {e:?}"))?,
                );
            }
        }
        Ok(patterns)
    }

    /// The digest `reference` resolves to here, if it names an image of this registry.
    async fn resolve(&self, reference: &str) -> Option<String> {
        let parsed = Reference::parse(reference).ok()?;
        if parsed.registry != self.host {
            return None;
        }
        let tag = parsed.effective_tag()?.to_owned();
        let repository = if parsed.repository.contains('/') {
            parsed.repository.clone()
        } else {
            format!("library/{}", parsed.repository)
        };
        let response = self
            .client
            .head(format!("{}/v2/{repository}/manifests/{tag}", self.base))
            .header(
                "accept",
                "application/vnd.oci.image.index.v1+json, \
                 application/vnd.docker.distribution.manifest.list.v2+json, \
                 application/vnd.oci.image.manifest.v1+json, \
                 application/vnd.docker.distribution.manifest.v2+json",
            );
        let response = match &self.token {
            Some(token) => response.bearer_auth(token),
            None => response,
        }
        .send()
        .await
        .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let digest = response
            .headers()
            .get("docker-content-digest")?
            .to_str()
            .ok()?;
        Some(format!(
            "{}/{}:{tag}@{digest}",
            parsed.registry, parsed.repository
        ))
    }
}

async fn run(args: LintArgs) -> anyhow::Result<ExitCode> {
    // Every file first: a missing one is a usage error, whatever the others hold.
    let mut texts = Vec::with_capacity(args.dockerfiles.len());
    for path in &args.dockerfiles {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        texts.push((path.display().to_string(), text));
    }
    let token = match &args.token_env {
        Some(var) => Some(
            std::env::var(var)
                .with_context(|| format!("--token-env {var}: the variable is not set"))?,
        ),
        None => None,
    };
    let mut allowed = Vec::new();
    for text in &args.allow {
        allowed
            .push(AllowPattern::parse(text).map_err(|e| anyhow::anyhow!("--allow {text}: {e:?}"))?);
    }
    let registry = args
        .registry
        .as_deref()
        .map(|url| Registry::new(url, token))
        .transpose()?;
    if let Some(registry) = &registry {
        allowed.extend(registry.golden_patterns().await?);
    }
    let mut parse_options = ParseOptions::default();
    for pair in &args.build_args {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("--build-arg {pair}: use NAME=VALUE"))?;
        parse_options
            .build_args
            .insert(name.to_owned(), value.to_owned());
    }
    let options = CheckOptions {
        allowed,
        require_digest: args.require_digest,
    };

    let mut findings: Vec<Finding> = Vec::new();
    let mut unparsable = false;
    for (file, text) in &texts {
        match berth_lint::parse_with_options(text, &parse_options) {
            Ok(dockerfile) => findings.extend(berth_lint::check(file, &dockerfile, &options)),
            Err(e) => {
                unparsable = true;
                findings.push(Finding::parse_error(file, &e));
            }
        }
    }
    // Pinned references to suggest, resolved from the registry.
    if let Some(registry) = &registry {
        for finding in &mut findings {
            let pinnable = [rules::UNPINNED.id, rules::LATEST_TAG.id].contains(&finding.rule);
            if let (true, Some(reference)) = (pinnable, &finding.reference)
                && let Some(pinned) = registry.resolve(reference).await
            {
                finding.suggestion = Some(format!("pin it: {pinned}"));
            }
        }
    }
    let out = match args.format {
        Format::Text => report::text(&findings),
        Format::Json => report::json(&findings),
        Format::Sarif => report::sarif(&findings),
    };
    print!("{out}");
    if !out.ends_with('\n') {
        println!();
    }
    Ok(if unparsable {
        ExitCode::from(USAGE)
    } else if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
