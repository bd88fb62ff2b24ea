//! What a tag's page and a repository's tag list say about a manifest: its kind, size,
//! platforms, layers, config and build history. Read from the stored manifest and, for
//! an image, its config blob (small); a broken or unusual document shows less, never
//! fails the page.

use berth_core::{Digest, Reference, RepoName};
use serde_json::Value;

use crate::registry::Registry;

/// Largest config blob read for a page.
const MAX_CONFIG: u64 = 1024 * 1024;
/// Platforms of an index a page reads the manifests of (an index may list thousands,
/// or the same one thousands of times).
const MAX_PLATFORMS: usize = 64;

pub struct Platform {
    /// `linux/arm64/v8`.
    pub name: String,
    pub digest: String,
    /// Compressed: config plus layers, as pulled.
    pub size: u64,
}

pub struct Layer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

pub struct Summary {
    /// `image`, `index` or `artifact`.
    pub kind: &'static str,
    pub artifact_type: Option<String>,
    pub platforms: Vec<Platform>,
    /// An image's own layers (empty for an index).
    pub layers: Vec<Layer>,
    pub config: Option<(String, u64)>,
    /// The config's build history (`created_by`), oldest first.
    pub history: Vec<String>,
}

impl Summary {
    /// The platforms as one line: `linux/amd64, linux/arm64`.
    pub fn platform_names(&self) -> String {
        self.platforms
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `31.4 MB`, or a range over an index's platforms.
    pub fn size_text(&self) -> String {
        let sizes = self.platforms.iter().map(|p| p.size);
        let (Some(low), Some(high)) = (sizes.clone().min(), sizes.max()) else {
            return String::new();
        };
        let (low, high) = (super::view::size(low), super::view::size(high));
        if low == high {
            low
        } else {
            format!("{low} – {high}")
        }
    }
}

fn descriptor_size(d: &Value) -> u64 {
    d.get("size").and_then(Value::as_u64).unwrap_or(0)
}

fn descriptor_digest(d: &Value) -> String {
    d.get("digest")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Config plus layers.
fn image_size(manifest: &Value) -> u64 {
    let layers: u64 = manifest
        .get("layers")
        .and_then(Value::as_array)
        .map_or(0, |ls| ls.iter().map(descriptor_size).sum());
    layers + manifest.get("config").map_or(0, descriptor_size)
}

fn platform_name(p: &Value) -> Option<String> {
    let os = p.get("os").and_then(Value::as_str)?;
    let arch = p.get("architecture").and_then(Value::as_str)?;
    Some(match p.get("variant").and_then(Value::as_str) {
        Some(variant) => format!("{os}/{arch}/{variant}"),
        None => format!("{os}/{arch}"),
    })
}

pub async fn summarize(
    registry: &Registry,
    repo: &RepoName,
    digest: &str,
    body: &[u8],
    with_details: bool,
) -> Summary {
    let manifest: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let artifact_type = manifest
        .get("artifactType")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(children) = manifest.get("manifests").and_then(Value::as_array) {
        let mut platforms: Vec<Platform> = Vec::new();
        for child in children {
            if platforms.len() == MAX_PLATFORMS {
                break;
            }
            // Attestations (buildx's unknown/unknown entries) are not platforms.
            let Some(name) = child.get("platform").and_then(platform_name) else {
                continue;
            };
            if name.starts_with("unknown/") {
                continue;
            }
            let child_digest = descriptor_digest(child);
            if platforms.iter().any(|p| p.digest == child_digest) {
                continue;
            }
            let size = match child_digest.parse::<Digest>() {
                Ok(d) => match registry.get_manifest(repo, &Reference::Digest(d)).await {
                    Ok(m) => serde_json::from_slice(&m.body)
                        .map(|v: Value| image_size(&v))
                        .unwrap_or(0),
                    _ => 0,
                },
                Err(_) => 0,
            };
            platforms.push(Platform {
                name,
                digest: child_digest,
                size,
            });
        }
        return Summary {
            kind: "index",
            artifact_type,
            platforms,
            layers: Vec::new(),
            config: None,
            history: Vec::new(),
        };
    }
    let layers: Vec<Layer> = manifest
        .get("layers")
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .map(|l| Layer {
                    digest: descriptor_digest(l),
                    size: descriptor_size(l),
                    media_type: l
                        .get("mediaType")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    let config = manifest.get("config");
    let config_type = config
        .and_then(|c| c.get("mediaType"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let is_image = config_type.contains("image.config") || config_type.contains("container.image");
    let config_ref = config.map(|c| (descriptor_digest(c), descriptor_size(c)));
    // The platform and history live in the config blob.
    let config_doc = match (&config_ref, is_image) {
        (Some((d, _)), true) => match d.parse::<Digest>() {
            Ok(d) => registry
                .read_small_blob(repo, &d, MAX_CONFIG)
                .await
                .ok()
                .flatten()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok()),
            Err(_) => None,
        },
        _ => None,
    };
    let platform = config_doc.as_ref().and_then(platform_name);
    let history = if with_details {
        config_doc
            .as_ref()
            .and_then(|c| c.get("history"))
            .and_then(Value::as_array)
            .map(|h| {
                h.iter()
                    .filter_map(|step| step.get("created_by").and_then(Value::as_str))
                    .map(|s| s.trim_start_matches("/bin/sh -c #(nop) ").trim().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let kind = if is_image && artifact_type.is_none() {
        "image"
    } else {
        "artifact"
    };
    Summary {
        kind,
        artifact_type: artifact_type.or_else(|| (!is_image).then(|| config_type.to_owned())),
        platforms: platform
            .map(|name| Platform {
                name,
                digest: digest.to_owned(),
                size: image_size(&manifest),
            })
            .into_iter()
            .collect(),
        layers,
        config: config_ref,
        history,
    }
}
