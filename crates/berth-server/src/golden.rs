//! The `require-golden-base` check of a pushed image manifest: is it built on one of
//! the registry's golden images (its layers begin with all of a golden image's layers),
//! and is the base it declares in its annotations a golden image? The layer logic is
//! `berth_core::golden`; this module gathers the golden images from the store.

use berth_core::golden::{self, GoldenLayers, ImageLayers, Verdict};
use berth_core::tag_policy::TagPattern;
use berth_core::{Digest, RepoName, Tag};
use berth_meta::{GoldenImage, MetaError, MetaStore};

/// Most golden manifests one check reads (tags of every golden entry, and the
/// platforms of their indexes).
const MAX_GOLDEN_MANIFESTS: usize = 2000;

/// Whether a golden entry covers `tag` (`None`: a push by digest, which any entry of
/// the repository covers: the children of a golden index).
pub fn entry_covers(entry: &GoldenImage, tag: Option<&str>) -> bool {
    match (&entry.tags, tag) {
        (None, _) | (_, None) => true,
        (Some(glob), Some(tag)) => TagPattern::parse(glob).is_ok_and(|p| p.matches(tag)),
    }
}

/// `None` if the image passes; otherwise why not, in a sentence naming the closest
/// golden image.
pub async fn check(
    meta: &dyn MetaStore,
    repo: &RepoName,
    tags: &[Tag],
    image: &ImageLayers,
) -> Result<Option<String>, MetaError> {
    let entries = meta.golden_images().await?;
    let pushed = match tags.first() {
        Some(tag) => format!("{repo}:{tag}"),
        None => repo.to_string(),
    };
    // A golden image itself (a new tag of it, or the platforms of its index).
    let own = entries.iter().any(|e| {
        &e.repository == repo
            && (tags.is_empty() || tags.iter().any(|t| entry_covers(e, Some(t.as_str()))))
    });
    if own {
        return Ok(None);
    }
    if entries.is_empty() {
        return Ok(Some(format!(
            "{pushed} is not built on a golden image: none are defined (berth golden add)"
        )));
    }
    let golden = golden_layers(meta, &entries).await?;
    if let Some(declared) = &image.base_name
        && !declared_base_is_golden(declared, image.base_digest.as_ref(), &entries, &golden)
    {
        return Ok(Some(format!(
            "{pushed} declares its base {declared}{}, which is not a golden image",
            image
                .base_digest
                .as_ref()
                .map(|d| format!("@{d}"))
                .unwrap_or_default()
        )));
    }
    Ok(match golden::check(&image.layers, &golden) {
        Verdict::BuiltOn(_) => None,
        Verdict::NotBuiltOn {
            closest: Some((name, shared, of)),
        } => Some(format!(
            "{pushed} is not built on a golden image; the closest is {name} \
             (the first {shared} of its {of} layers)"
        )),
        Verdict::NotBuiltOn { closest: None } => Some(format!(
            "{pushed} is not built on a golden image; none shares its first layer"
        )),
    })
}

/// The layers of every golden image: each tag an entry covers, each platform of an
/// index.
async fn golden_layers(
    meta: &dyn MetaStore,
    entries: &[GoldenImage],
) -> Result<Vec<GoldenLayers>, MetaError> {
    let mut found = Vec::new();
    for entry in entries {
        let mut last: Option<String> = None;
        while let Some(page) = meta
            .list_tags(&entry.repository, last.as_deref(), 1000)
            .await?
        {
            for name in &page.items {
                if found.len() >= MAX_GOLDEN_MANIFESTS {
                    return Ok(found);
                }
                if !entry_covers(entry, Some(name)) {
                    continue;
                }
                let Ok(tag) = name.parse::<Tag>() else {
                    continue;
                };
                let Some(record) = meta.manifest_by_tag(&entry.repository, &tag).await? else {
                    continue;
                };
                let title = format!("{}:{name}", entry.repository);
                if let Some(image) = golden::image_layers(&record.body) {
                    found.push(GoldenLayers {
                        name: title,
                        manifest: record.digest,
                        layers: image.layers,
                    });
                    continue;
                }
                for (child, platform) in index_children(&record.body) {
                    let Some(child_record) =
                        meta.manifest_by_digest(&entry.repository, &child).await?
                    else {
                        continue;
                    };
                    if let Some(image) = golden::image_layers(&child_record.body) {
                        found.push(GoldenLayers {
                            name: format!("{title} ({platform})"),
                            manifest: record.digest.clone(),
                            layers: image.layers,
                        });
                    }
                }
            }
            if !page.more {
                break;
            }
            last = page.items.last().cloned();
        }
    }
    Ok(found)
}

/// The children of an index with their platforms (`os/architecture[/variant]`).
fn index_children(body: &[u8]) -> Vec<(Digest, String)> {
    let Ok(index) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let Some(manifests) = index["manifests"].as_array() else {
        return Vec::new();
    };
    manifests
        .iter()
        .filter_map(|m| {
            let digest: Digest = m["digest"].as_str()?.parse().ok()?;
            let p = &m["platform"];
            let mut platform = format!(
                "{}/{}",
                p["os"].as_str().unwrap_or("unknown"),
                p["architecture"].as_str().unwrap_or("unknown")
            );
            if let Some(variant) = p["variant"].as_str() {
                platform = format!("{platform}/{variant}");
            }
            Some((digest, platform))
        })
        .collect()
}

/// Whether the base an image declares (`[registry/]ns/repo[:tag]`, and maybe its
/// digest) is a golden image of this registry.
fn declared_base_is_golden(
    declared: &str,
    digest: Option<&Digest>,
    entries: &[GoldenImage],
    golden: &[GoldenLayers],
) -> bool {
    let without_digest = declared.split('@').next().unwrap_or(declared);
    // The first component is a registry when it looks like a host (Docker's rule).
    let path = match without_digest.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest
        }
        _ => without_digest,
    };
    let (name, tag) = berth_core::name::split_tag(path);
    let Ok(repo) = name.parse::<RepoName>() else {
        return false;
    };
    let tag = tag.unwrap_or("latest");
    let named = entries
        .iter()
        .any(|e| e.repository == repo && entry_covers(e, Some(tag)));
    let prefix = format!("{repo}:{tag}");
    named
        && digest.is_none_or(|d| {
            golden
                .iter()
                .any(|g| &g.manifest == d && g.name.starts_with(&prefix))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::Algorithm;

    fn entry(repo: &str, tags: Option<&str>) -> GoldenImage {
        GoldenImage {
            repository: repo.parse().unwrap(),
            tags: tags.map(str::to_owned),
            added_by: "root".into(),
            added_at: 1,
        }
    }

    #[test]
    fn entries_cover_tags_by_glob() {
        assert!(entry_covers(&entry("g/base", None), Some("anything")));
        assert!(entry_covers(&entry("g/base", Some("2.*")), Some("2.1")));
        assert!(!entry_covers(&entry("g/base", Some("2.*")), Some("3.0")));
        assert!(entry_covers(&entry("g/base", Some("2.*")), None));
    }

    #[test]
    fn declared_bases_must_be_golden() {
        let d = Algorithm::Sha256.digest_of(b"base");
        let entries = [entry("gallery/base", Some("2.*"))];
        let golden = [GoldenLayers {
            name: "gallery/base:2.1".into(),
            manifest: d.clone(),
            layers: vec![],
        }];
        let ok = |name: &str, digest: Option<&Digest>| {
            declared_base_is_golden(name, digest, &entries, &golden)
        };
        assert!(ok("localhost:5000/gallery/base:2.1", None));
        assert!(ok("registry.example.com/gallery/base:2.1", Some(&d)));
        assert!(ok("gallery/base:2.1", None));
        assert!(!ok("gallery/base:3.0", None));
        assert!(!ok("gallery/base", None), "latest is not covered by 2.*");
        assert!(!ok(
            "gallery/base:2.1",
            Some(&Algorithm::Sha256.digest_of(b"other"))
        ));
        assert!(!ok("docker.io/library/alpine:3", None));
    }
}
