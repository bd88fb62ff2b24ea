//! Whether an image is built on a golden image, from manifests alone: an image is built
//! on another when its layers begin with all of that image's layers (a golden image
//! itself passes, and so does anything built `FROM` it). Images may also declare their
//! base in the `org.opencontainers.image.base.name` / `.base.digest` annotations.

use serde::Deserialize;

use crate::Digest;

/// The annotation that names an image's base (`registry/ns/repo:tag`).
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
/// The annotation that pins an image's base manifest.
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// What the golden check needs of an image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayers {
    /// Every layer, in order (non-distributable ones too: they are part of the image).
    pub layers: Vec<Digest>,
    pub base_name: Option<String>,
    pub base_digest: Option<Digest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawImage {
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
}

/// Config media types of runnable images (artifacts and attestations are not images).
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// The layers of an image manifest that holds a runnable image: a known image config
/// and at least one filesystem layer (tar). `None` for indexes, artifacts and
/// attestation manifests (in-toto layers), which the golden check leaves alone.
pub fn image_layers(body: &[u8]) -> Option<ImageLayers> {
    let raw: RawImage = serde_json::from_slice(body).ok()?;
    let config_type = raw.config?.media_type?;
    if !IMAGE_CONFIGS.contains(&config_type.as_str()) {
        return None;
    }
    let is_tar = |d: &RawDescriptor| {
        d.media_type
            .as_deref()
            .is_some_and(|t| t.contains(".tar") || t.contains(".layer."))
    };
    if !raw.layers.iter().any(is_tar) {
        return None;
    }
    let layers = raw
        .layers
        .iter()
        .map(|l| l.digest.parse::<Digest>().ok())
        .collect::<Option<Vec<_>>>()?;
    Some(ImageLayers {
        layers,
        base_name: raw.annotations.get(BASE_NAME).cloned(),
        base_digest: raw
            .annotations
            .get(BASE_DIGEST)
            .and_then(|d| d.parse().ok()),
    })
}

/// How many leading layers two images share.
pub fn shared_leading_layers(a: &[Digest], b: &[Digest]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Whether `image` is built on `base`: it begins with all of `base`'s layers.
pub fn built_on(image: &[Digest], base: &[Digest]) -> bool {
    !base.is_empty() && image.len() >= base.len() && image[..base.len()] == *base
}

/// A golden image as the check sees it: a name to show and its layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenLayers {
    /// `ns/repo:tag` (with the platform, for a child of an index).
    pub name: String,
    pub manifest: Digest,
    pub layers: Vec<Digest>,
}

/// The outcome of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Built on `name`.
    BuiltOn(String),
    /// Built on none; `closest` shares the most leading layers (`None`: none shares any).
    NotBuiltOn {
        closest: Option<(String, usize, usize)>,
    },
}

/// Checks `image` against every golden image.
pub fn check(image: &[Digest], golden: &[GoldenLayers]) -> Verdict {
    if let Some(g) = golden.iter().find(|g| built_on(image, &g.layers)) {
        return Verdict::BuiltOn(g.name.clone());
    }
    let closest = golden
        .iter()
        .map(|g| (g, shared_leading_layers(image, &g.layers)))
        .filter(|(_, shared)| *shared > 0)
        // The most shared layers; on a tie, the golden image with fewer layers
        // (closer to being a prefix), then the name, so that the answer is stable.
        .max_by(|(a, sa), (b, sb)| {
            sa.cmp(sb)
                .then(b.layers.len().cmp(&a.layers.len()))
                .then(b.name.cmp(&a.name))
        })
        .map(|(g, shared)| (g.name.clone(), shared, g.layers.len()));
    Verdict::NotBuiltOn { closest }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Algorithm;

    fn d(s: &str) -> Digest {
        Algorithm::Sha256.digest_of(s.as_bytes())
    }

    fn golden(name: &str, layers: &[&str]) -> GoldenLayers {
        GoldenLayers {
            name: name.into(),
            manifest: d(name),
            layers: layers.iter().map(|l| d(l)).collect(),
        }
    }

    #[test]
    fn built_on_means_all_of_the_base_layers_first() {
        let base = [d("a"), d("b")];
        assert!(built_on(&[d("a"), d("b"), d("c")], &base));
        assert!(
            built_on(&[d("a"), d("b")], &base),
            "the golden image itself"
        );
        assert!(!built_on(&[d("a")], &base));
        assert!(!built_on(&[d("b"), d("a"), d("c")], &base));
        assert!(!built_on(&[d("a")], &[]), "an empty base is no base");
    }

    #[test]
    fn the_closest_golden_image_shares_the_most_leading_layers() {
        let gold = [
            golden("gallery/base:1", &["a", "b", "c"]),
            golden("gallery/base:2", &["a", "x"]),
            golden("gallery/other:1", &["z"]),
        ];
        let image: Vec<Digest> = ["a", "b", "q", "r"].iter().map(|l| d(l)).collect();
        assert_eq!(
            check(&image, &gold),
            Verdict::NotBuiltOn {
                closest: Some(("gallery/base:1".into(), 2, 3))
            }
        );
        let unrelated = [d("u")];
        assert_eq!(
            check(&unrelated, &gold),
            Verdict::NotBuiltOn { closest: None }
        );
        let on_two: Vec<Digest> = ["a", "x", "app"].iter().map(|l| d(l)).collect();
        assert_eq!(
            check(&on_two, &gold),
            Verdict::BuiltOn("gallery/base:2".into())
        );
    }

    #[test]
    fn only_runnable_images_are_checked() {
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":1}}],
            "annotations":{{"{BASE_NAME}":"localhost:5000/gallery/base:1","{BASE_DIGEST}":"{}"}}}}"#,
            d("c"),
            d("l"),
            d("m")
        );
        let found = image_layers(image.as_bytes()).unwrap();
        assert_eq!(found.layers, [d("l")]);
        assert_eq!(
            found.base_name.as_deref(),
            Some("localhost:5000/gallery/base:1")
        );
        assert_eq!(found.base_digest, Some(d("m")));
        let attestation = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},
            "layers":[{{"mediaType":"application/vnd.in-toto+json","digest":"{}","size":1}}]}}"#,
            d("c"),
            d("l")
        );
        assert_eq!(image_layers(attestation.as_bytes()), None);
        let artifact = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{}","size":1}},
            "layers":[{{"mediaType":"application/vnd.cncf.helm.chart.content.v1.tar+gzip","digest":"{}","size":1}}]}}"#,
            d("c"),
            d("l")
        );
        assert_eq!(image_layers(artifact.as_bytes()), None);
        assert_eq!(image_layers(br#"{"schemaVersion":2,"manifests":[]}"#), None);
    }
}
