//! `berth mirror sync REF…`: fills a running berth's mirror cache ahead of time (an
//! air-gapped site fills it before it goes offline). It pulls each image through the
//! server as a client would (the index, each platform's manifest, every blob), so the
//! server fetches, verifies and keeps what is not cached yet; with `--platform`, only
//! those platforms of an index (the cached index is then sparse: the other platforms
//! are fetched when first asked for, while the upstream answers).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// Every manifest type, as registries expect in `Accept`.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

#[derive(clap::Subcommand)]
pub enum MirrorCommand {
    /// Pull images through a running berth into its mirror cache: `PREFIX/NAME:TAG` or
    /// `PREFIX/NAME@DIGEST` (`hub/library/alpine:3`). Exits 0 when every image is
    /// cached, 1 when one failed, 2 on a usage error.
    Sync(SyncArgs),
}

#[derive(clap::Args)]
pub struct SyncArgs {
    /// Images to fetch, as named on this berth.
    #[arg(value_name = "REF")]
    refs: Vec<String>,
    /// A file of images, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// Only these platforms of a multi-platform image (repeatable): `linux/amd64`,
    /// `linux/arm64/v8` [default: all]
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    platforms: Vec<String>,
    /// The running berth.
    #[arg(long, value_name = "URL", default_value = "http://localhost:5000")]
    registry: String,
    /// Name of an environment variable holding an access token for it (not needed for
    /// public mirrors).
    #[arg(long, value_name = "VAR")]
    token_env: Option<String>,
}

pub async fn mirror(command: MirrorCommand) -> ExitCode {
    let MirrorCommand::Sync(args) = command;
    match sync(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("berth mirror sync: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `NAME:TAG` or `NAME@DIGEST` split into the name and its reference.
fn split_ref(text: &str) -> anyhow::Result<(String, String)> {
    if let Some((name, digest)) = text.split_once('@') {
        return Ok((name.to_owned(), digest.to_owned()));
    }
    let (name, tag) = berth_core::name::split_tag(text);
    let name: berth_core::RepoName = name
        .parse()
        .with_context(|| format!("{text:?}: not an image name"))?;
    Ok((name.to_string(), tag.unwrap_or("latest").to_owned()))
}

struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.get(format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn manifest(&self, name: &str, reference: &str) -> anyhow::Result<Value> {
        let response = self
            .get(&format!("/v2/{name}/manifests/{reference}"))
            .header("accept", MANIFEST_TYPES)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        anyhow::ensure!(
            status.is_success(),
            "{name}:{reference}: {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
        serde_json::from_slice(&body).context("the manifest is not JSON")
    }

    /// Reads a blob through, counting its bytes on `bar`.
    async fn blob(&self, name: &str, digest: &str, bar: &ProgressBar) -> anyhow::Result<()> {
        let response = self
            .get(&format!("/v2/{name}/blobs/{digest}"))
            .send()
            .await?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "{name}@{digest}: {status}");
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            bar.inc(chunk?.len() as u64);
        }
        Ok(())
    }
}

fn platform_of(entry: &Value) -> Option<String> {
    let p = entry.get("platform")?;
    let os = p.get("os")?.as_str()?;
    let arch = p.get("architecture")?.as_str()?;
    Some(match p.get("variant").and_then(Value::as_str) {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    })
}

fn descriptors(manifest: &Value) -> Vec<(String, u64)> {
    let config = manifest.get("config").into_iter();
    let layers = manifest
        .get("layers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    config
        .chain(layers)
        .filter_map(|d| {
            Some((
                d.get("digest")?.as_str()?.to_owned(),
                d.get("size").and_then(Value::as_u64).unwrap_or(0),
            ))
        })
        .collect()
}

async fn sync_one(
    client: &Client,
    text: &str,
    platforms: &[String],
    bar: &ProgressBar,
) -> anyhow::Result<usize> {
    let (name, reference) = split_ref(text)?;
    bar.set_message(text.to_owned());
    let top = client.manifest(&name, &reference).await?;
    let mut images = Vec::new();
    match top.get("manifests").and_then(Value::as_array) {
        Some(children) => {
            for child in children {
                let wanted = platforms.is_empty()
                    || platform_of(child).is_some_and(|p| platforms.contains(&p));
                if !wanted {
                    continue;
                }
                let digest = child
                    .get("digest")
                    .and_then(Value::as_str)
                    .context("an index entry without a digest")?;
                images.push(client.manifest(&name, digest).await?);
            }
            anyhow::ensure!(
                !images.is_empty(),
                "{text}: none of its platforms is {}",
                platforms.join(", ")
            );
        }
        None => images.push(top),
    }
    let blobs: Vec<(String, u64)> = images.iter().flat_map(descriptors).collect();
    bar.inc_length(blobs.iter().map(|(_, size)| size).sum());
    for (digest, _) in &blobs {
        client.blob(&name, digest, bar).await?;
    }
    Ok(images.len())
}

async fn sync(args: SyncArgs) -> anyhow::Result<bool> {
    let mut refs = args.refs.clone();
    if let Some(file) = &args.from_file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        refs.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or_default().trim())
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    anyhow::ensure!(!refs.is_empty(), "name at least one image (or --from-file)");
    for p in &args.platforms {
        anyhow::ensure!(
            (2..=3).contains(&p.split('/').count()),
            "--platform {p:?}: use OS/ARCH or OS/ARCH/VARIANT"
        );
    }
    let token = match &args.token_env {
        Some(var) => Some(std::env::var(var).with_context(|| format!("${var} is not set"))?),
        None => None,
    };
    let client = Client {
        base: args.registry.trim_end_matches('/').to_owned(),
        token,
        http: reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(120))
            .build()?,
    };
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )?
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    // Lines above the bar on a terminal; plain lines otherwise.
    let say = |line: String| {
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
    };
    let mut all_ok = true;
    for text in &refs {
        match sync_one(&client, text, &args.platforms, &bar).await {
            Ok(images) => say(format!(
                "cached {text} ({images} image{})",
                if images == 1 { "" } else { "s" }
            )),
            Err(e) => {
                all_ok = false;
                say(format!("failed {text}: {e:#}"));
            }
        }
    }
    bar.finish_and_clear();
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_name_and_tag_or_digest() {
        assert_eq!(
            split_ref("hub/library/alpine:3").unwrap(),
            ("hub/library/alpine".into(), "3".into())
        );
        assert_eq!(
            split_ref("hub/library/alpine").unwrap(),
            ("hub/library/alpine".into(), "latest".into())
        );
        assert_eq!(
            split_ref("hub/x@sha256:abc").unwrap(),
            ("hub/x".into(), "sha256:abc".into())
        );
        assert!(split_ref("Not A Name").is_err());
    }
}
