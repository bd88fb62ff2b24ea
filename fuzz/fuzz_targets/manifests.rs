//! Manifests and indexes of every media type, as pushed with `PUT …/manifests/<ref>`.
//!
//! The input is `CONTENT-TYPE\nBODY` (an empty first line: no `Content-Type`). Checks,
//! besides "no panic" (and no stack overflow on deep nesting):
//! - `check_json` agrees with serde_json: it accepts exactly the documents serde_json
//!   parses as a `Value` that nest at most `MAX_JSON_DEPTH` arrays/objects deep;
//! - `manifest::parse` succeeding implies `check_json` succeeds;
//! - what it returns is consistent: an image lists its config (and no child manifests),
//!   an index lists no blobs, a declared known media type decides the kind, and every
//!   digest it returns re-parses to itself.
#![no_main]

use berth_core::Digest;
use berth_core::manifest::{
    self, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MAX_JSON_DEPTH, ManifestKind, OCI_INDEX,
    OCI_MANIFEST, essence,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b""[..], data),
    };
    let Ok(content_type) = std::str::from_utf8(content_type) else {
        return;
    };
    let content_type = (!content_type.is_empty()).then_some(content_type);

    let checked = manifest::check_json(body);
    let by_serde =
        serde_json::from_slice::<Value>(body).is_ok() && max_depth(body) <= MAX_JSON_DEPTH;
    assert_eq!(
        checked.is_ok(),
        by_serde,
        "check_json and serde_json disagree: {checked:?}"
    );

    let Ok(parsed) = manifest::parse(content_type, body) else {
        return;
    };
    assert!(checked.is_ok(), "parse accepted what check_json refuses");
    assert!(!parsed.media_type.is_empty());
    match parsed.kind {
        ManifestKind::Image => {
            assert!(!parsed.blobs.is_empty(), "an image has a config");
            assert!(parsed.manifests.is_empty());
        }
        ManifestKind::Index => assert!(parsed.blobs.is_empty()),
    }
    // A known media type declared in the header, or else in the document, decides.
    let field = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned));
    let declared = content_type
        .map(essence)
        .and_then(kind_of)
        .or_else(|| field.as_deref().and_then(kind_of));
    if let Some(kind) = declared {
        assert_eq!(parsed.kind, kind, "declared {content_type:?} / {field:?}");
    }
    for digest in parsed
        .blobs
        .iter()
        .chain(&parsed.manifests)
        .chain(&parsed.subject)
    {
        let again: Digest = digest
            .to_string()
            .parse()
            .expect("a returned digest re-parses");
        assert_eq!(&again, digest);
    }
});

fn kind_of(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        _ => None,
    }
}

/// Deepest nesting of arrays and objects in a valid JSON text (a scalar is 0, `[]` is
/// 1), counted on the text itself: a `Value` would lose duplicate keys' earlier values.
fn max_depth(json: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}
