//! Manifest media types and the validation berth does before storing a manifest.
//!
//! Manifests are stored and served byte for byte; parsing only extracts what the
//! registry must check or index: the blobs and child manifests it references, its
//! `subject` (for referrers) and its artifact type.

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Largest manifest accepted (distribution-spec: registries SHOULD accept at least 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Deepest nesting of arrays and objects accepted anywhere in a manifest.
pub const MAX_JSON_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image (or artifact) manifest: config + layers.
    Image,
    /// An index / manifest list: references other manifests.
    Index,
}

fn kind_of(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        _ => None,
    }
}

/// What berth needs to know about a manifest it is asked to store.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedManifest {
    pub kind: ManifestKind,
    /// The `Content-Type` to store and serve it with.
    pub media_type: String,
    /// Blobs that must already be in the repository (config and distributable layers).
    pub blobs: Vec<Digest>,
    /// Child manifests that must already be in the repository (indexes).
    pub manifests: Vec<Digest>,
    pub subject: Option<Digest>,
    /// `artifactType`, or for an image manifest without one, its config's media type.
    pub artifact_type: Option<String>,
    /// The `annotations` object as JSON text, kept only for a manifest with a `subject`
    /// (the referrers listing shows them).
    pub annotations: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest invalid: {0}")]
pub struct ManifestError(pub String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest<'a> {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    /// Left unparsed (it may be most of a large manifest); checked to be an object.
    #[serde(borrow)]
    annotations: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
    size: i64,
    #[serde(default)]
    urls: Vec<String>,
}

impl RawDescriptor {
    fn digest(&self, field: &str) -> Result<Digest, ManifestError> {
        if self.size < 0 {
            return Err(ManifestError(format!("{field} has a negative size")));
        }
        self.digest
            .parse()
            .map_err(|e| ManifestError(format!("{field} has an invalid digest: {e}")))
    }
}

/// Strips parameters (`; charset=…`) and surrounding space from a `Content-Type`.
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Walks a whole JSON document without keeping it, so that every part is checked,
/// also the fields berth does not read (which serde would skip unchecked): strings are
/// decoded (valid UTF-8, no lone surrogate escapes) and nesting stays within
/// [`MAX_JSON_DEPTH`].
struct Checked {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested::<A::Error>()?;
        while seq.next_element_seed(Checked { depth: inner })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested::<A::Error>()?;
        while map.next_key_seed(Checked { depth: inner })?.is_some() {
            map.next_value_seed(Checked { depth: inner })?;
        }
        Ok(())
    }
}

impl Checked {
    fn nested<E: serde::de::Error>(&self) -> Result<usize, E> {
        if self.depth >= MAX_JSON_DEPTH {
            return Err(E::custom(format!(
                "nested deeper than {MAX_JSON_DEPTH} levels"
            )));
        }
        Ok(self.depth + 1)
    }
}

/// Checks that `body` is one well-formed JSON document (RFC 8259: UTF-8, every string
/// valid, nothing after it) nested at most [`MAX_JSON_DEPTH`] deep.
pub fn check_json(body: &[u8]) -> Result<(), ManifestError> {
    let invalid = |e: &dyn std::fmt::Display| ManifestError(format!("not valid JSON: {e}"));
    std::str::from_utf8(body).map_err(|e| invalid(&e))?;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    Checked { depth: 0 }
        .deserialize(&mut deserializer)
        .map_err(|e| invalid(&e))?;
    deserializer.end().map_err(|e| invalid(&e))
}

/// Validates a manifest body pushed with `content_type`.
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<ParsedManifest, ManifestError> {
    check_json(body)?;
    let raw: RawManifest = serde_json::from_slice(body)
        .map_err(|e| ManifestError(format!("not a valid manifest JSON document: {e}")))?;

    let header_type = content_type.map(essence).filter(|t| !t.is_empty());
    let field_type = raw.media_type.as_deref();
    for t in [header_type, field_type].into_iter().flatten() {
        if DOCKER_SCHEMA1.contains(&t) {
            return Err(ManifestError(
                "Docker schema 1 manifests are not supported".into(),
            ));
        }
    }
    if let (Some(h), Some(f)) = (header_type, field_type)
        && kind_of(h).is_some()
        && h != f
    {
        return Err(ManifestError(format!(
            "mediaType {f:?} does not match Content-Type {h:?}"
        )));
    }
    if raw.schema_version != Some(2) {
        return Err(ManifestError("schemaVersion must be 2".into()));
    }

    // The kind comes from what the client declared; the shape of the document decides
    // only when it declared nothing we know.
    let declared = header_type
        .and_then(kind_of)
        .or_else(|| field_type.and_then(kind_of));
    let kind = match declared {
        Some(k) => k,
        None if raw.manifests.is_some() => ManifestKind::Index,
        None if raw.config.is_some() => ManifestKind::Image,
        None => {
            return Err(ManifestError(
                "neither an image manifest nor an index".into(),
            ));
        }
    };
    let media_type = header_type
        .map(str::to_owned)
        .or_else(|| raw.media_type.clone())
        .unwrap_or_else(|| match kind {
            ManifestKind::Image => OCI_MANIFEST.to_owned(),
            ManifestKind::Index => OCI_INDEX.to_owned(),
        });

    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    let mut artifact_type = raw.artifact_type.clone();
    match kind {
        ManifestKind::Image => {
            let config = raw
                .config
                .as_ref()
                .ok_or_else(|| ManifestError("an image manifest needs a config".into()))?;
            blobs.push(config.digest("config")?);
            if artifact_type.is_none() {
                artifact_type = config.media_type.clone();
            }
            for (i, layer) in raw.layers.iter().flatten().enumerate() {
                let digest = layer.digest(&format!("layers[{i}]"))?;
                // Non-distributable layers live elsewhere (their `urls`); they need not be pushed.
                if layer.urls.is_empty() {
                    blobs.push(digest);
                }
            }
        }
        ManifestKind::Index => {
            let children = raw
                .manifests
                .as_ref()
                .ok_or_else(|| ManifestError("an index needs a manifests list".into()))?;
            for (i, child) in children.iter().enumerate() {
                manifests.push(child.digest(&format!("manifests[{i}]"))?);
            }
        }
    }
    let subject = raw
        .subject
        .as_ref()
        .map(|s| s.digest("subject"))
        .transpose()?;
    if raw
        .annotations
        .is_some_and(|a| !a.get().trim_start().starts_with('{'))
    {
        return Err(ManifestError("annotations must be an object".into()));
    }
    let annotations = subject
        .as_ref()
        .and(raw.annotations)
        .map(|a| a.get().to_owned());

    Ok(ParsedManifest {
        kind,
        media_type,
        blobs,
        manifests,
        subject,
        artifact_type,
        annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":3}}]{extra}}}"#
        )
    }

    #[test]
    fn image_manifest_lists_config_and_layers() {
        let m = parse(Some(OCI_MANIFEST), image("").as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert_eq!(m.subject, None);
    }

    #[test]
    fn subject_and_artifact_type_are_extracted() {
        let extra = format!(
            r#","artifactType":"application/x.sig","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":9}}"#
        );
        let m = parse(Some(OCI_MANIFEST), image(&extra).as_bytes()).unwrap();
        assert_eq!(m.subject.unwrap().to_string(), D1);
        assert_eq!(m.artifact_type.as_deref(), Some("application/x.sig"));
    }

    #[test]
    fn non_distributable_layers_need_not_exist() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{D1}","size":2}},
            "layers":[{{"mediaType":"y","digest":"{D2}","size":3,"urls":["https://example.com/l"]}}]}}"#
        );
        let m = parse(Some(DOCKER_MANIFEST), body.as_bytes()).unwrap();
        assert_eq!(m.blobs.len(), 1);
    }

    #[test]
    fn index_lists_children() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":5}}]}}"#
        );
        let m = parse(Some(OCI_INDEX), body.as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.manifests.len(), 1);
        assert!(m.blobs.is_empty());
    }

    #[test]
    fn rejects_invalid_documents() {
        let mismatched = image("");
        for (ct, body) in [
            (Some(OCI_MANIFEST), "not json".to_string()),
            (Some(OCI_MANIFEST), "[]".to_string()),
            (Some(OCI_INDEX), mismatched.clone()),
            (
                Some(OCI_MANIFEST),
                mismatched.replace("\"schemaVersion\":2", "\"schemaVersion\":1"),
            ),
            (Some(OCI_MANIFEST), mismatched.replace(D2, "sha256:nothex")),
            (
                Some(OCI_MANIFEST),
                mismatched.replace("\"size\":3", "\"size\":-3"),
            ),
            (
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
                mismatched.clone(),
            ),
        ] {
            assert!(parse(ct, body.as_bytes()).is_err(), "{ct:?} {body}");
        }
    }

    #[test]
    fn every_part_of_the_document_must_be_valid_json() {
        let with_unknown = |value: &str| {
            let mut body = image("").into_bytes();
            body.pop(); // the closing brace
            body.extend_from_slice(format!(r#","x-unknown":{value}}}"#).as_bytes());
            body
        };
        assert!(parse(Some(OCI_MANIFEST), &with_unknown("[1,\"a\",{\"b\":null}]")).is_ok());
        let lone_surrogate = with_unknown(r#""\ud800""#);
        let mut invalid_utf8 = with_unknown(r#""ab""#);
        let at = invalid_utf8.len() - 3;
        invalid_utf8[at] = 0xff;
        let deep = with_unknown(&format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)));
        let just_deep_enough = with_unknown(&format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH - 1),
            "]".repeat(MAX_JSON_DEPTH - 1)
        ));
        let too_deep = with_unknown(&format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        ));
        assert!(parse(Some(OCI_MANIFEST), &just_deep_enough).is_ok());
        for (what, body) in [
            ("a lone surrogate", lone_surrogate),
            ("invalid UTF-8", invalid_utf8),
            ("100,000 levels", deep),
            ("one level too deep", too_deep),
            ("trailing bytes", format!("{} x", image("")).into_bytes()),
        ] {
            let e = parse(Some(OCI_MANIFEST), &body).unwrap_err();
            assert!(e.0.contains("not valid JSON"), "{what}: {e}");
        }
    }

    #[test]
    fn content_type_parameters_are_ignored() {
        assert_eq!(
            essence("application/json; charset=utf-8"),
            "application/json"
        );
    }
}
