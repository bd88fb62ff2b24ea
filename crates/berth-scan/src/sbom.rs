//! The inventory as a CycloneDX 1.5 JSON document (the SBOM berth attaches to each
//! image as an OCI referrer).

use serde_json::{Value, json};

use crate::inventory::{Inventory, Package, PackageKind};

/// The SBOM's media type, and the `artifactType` of the manifest that carries it.
pub const CYCLONEDX_JSON: &str = "application/vnd.cyclonedx+json";

/// What the document is about.
pub struct Subject<'a> {
    /// `gallery/ui`
    pub repository: &'a str,
    /// The image manifest's digest.
    pub digest: &'a str,
    /// RFC 3339, when the image was scanned.
    pub scanned_at: &'a str,
}

/// The CycloneDX document for an image's inventory. The same inventory and subject
/// always give the same bytes (so the same image pushed twice gets one SBOM).
pub fn cyclonedx(inventory: &Inventory, subject: &Subject<'_>) -> Vec<u8> {
    let distro = inventory
        .os
        .as_ref()
        .map(|os| format!("{}-{}", os.id, os.version_id));
    let mut components: Vec<Value> = Vec::new();
    if let Some(os) = &inventory.os {
        components.push(json!({
            "type": "operating-system",
            "bom-ref": format!("os:{}", os.id),
            "name": os.id,
            "version": os.version_id,
            "description": os.pretty_name,
        }));
    }
    for package in &inventory.packages {
        let purl = purl(package, inventory, distro.as_deref());
        let mut properties =
            vec![json!({"name": "berth:package:type", "value": package.kind.as_str()})];
        if let Some(source) = &package.source {
            properties.push(json!({"name": "berth:package:source", "value": source}));
        }
        if let Some(version) = &package.source_version {
            properties.push(json!({"name": "berth:package:source-version", "value": version}));
        }
        if !package.path.is_empty() {
            properties.push(json!({"name": "berth:package:path", "value": package.path}));
        }
        let mut component = json!({
            "type": "library",
            "bom-ref": format!("{purl}#{}", package.path),
            "name": package.name,
            "version": package.version,
            "purl": purl,
            "properties": properties,
        });
        if let Some(license) = &package.license {
            component["licenses"] = json!([{"expression": license}]);
        }
        components.push(component);
    }
    let hex = subject.digest.rsplit(':').next().unwrap_or_default();
    // A name-based UUID from the digest: stable, and unique per image.
    let serial = if hex.len() >= 32 {
        format!(
            "urn:uuid:{}-{}-5{}-8{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[13..16],
            &hex[17..20],
            &hex[20..32]
        )
    } else {
        String::new()
    };
    let document = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial,
        "version": 1,
        "metadata": {
            "timestamp": subject.scanned_at,
            "tools": {"components": [{"type": "application", "name": "berth", "version": env!("CARGO_PKG_VERSION")}]},
            "component": {
                "type": "container",
                "bom-ref": subject.digest,
                "name": subject.repository,
                "version": subject.digest,
            },
        },
        "components": components,
    });
    serde_json::to_vec_pretty(&document).unwrap_or_default()
}

/// The package URL (purl-spec) of a package.
fn purl(package: &Package, inventory: &Inventory, distro: Option<&str>) -> String {
    let enc = |s: &str| percent_encode(s);
    let os_id = inventory
        .os
        .as_ref()
        .map(|o| o.id.as_str())
        .unwrap_or("unknown");
    let mut qualifiers = Vec::new();
    if let Some(arch) = &package.arch {
        qualifiers.push(format!("arch={}", enc(arch)));
    }
    let base = match package.kind {
        PackageKind::Deb | PackageKind::Apk | PackageKind::Rpm => {
            if let Some(distro) = distro {
                qualifiers.push(format!("distro={}", enc(distro)));
            }
            if let Some(source) = &package.source {
                qualifiers.push(format!("upstream={}", enc(source)));
            }
            format!(
                "pkg:{}/{}/{}@{}",
                package.kind.as_str(),
                enc(os_id),
                enc(&package.name),
                enc(&package.version)
            )
        }
        PackageKind::Pypi => format!(
            "pkg:pypi/{}@{}",
            enc(&package.name.to_ascii_lowercase()),
            enc(&package.version)
        ),
        PackageKind::Npm => match package.name.split_once('/') {
            Some((scope, name)) => format!(
                "pkg:npm/{}/{}@{}",
                enc(scope),
                enc(name),
                enc(&package.version)
            ),
            None => format!("pkg:npm/{}@{}", enc(&package.name), enc(&package.version)),
        },
    };
    if qualifiers.is_empty() {
        base
    } else {
        format!("{base}?{}", qualifiers.join("&"))
    }
}

/// purl-spec escaping: everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    const PURL: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'.')
        .remove(b'-')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, PURL).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Os;

    #[test]
    fn a_cyclonedx_document_lists_the_os_and_packages_with_purls() {
        let inventory = Inventory {
            os: Some(Os {
                id: "debian".into(),
                version_id: "12".into(),
                pretty_name: "Debian 12".into(),
            }),
            packages: vec![Package {
                kind: PackageKind::Deb,
                name: "libssl3".into(),
                version: "3.0.11-1~deb12u2".into(),
                source: Some("openssl".into()),
                source_version: None,
                arch: Some("amd64".into()),
                license: None,
                path: "var/lib/dpkg/status".into(),
            }],
            notes: vec![],
        };
        let digest = format!("sha256:{}", "ab".repeat(32));
        let subject = Subject {
            repository: "gallery/ui",
            digest: &digest,
            scanned_at: "2026-12-03T00:00:00Z",
        };
        let bytes = cyclonedx(&inventory, &subject);
        assert_eq!(bytes, cyclonedx(&inventory, &subject), "stable bytes");
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["bomFormat"], "CycloneDX");
        assert_eq!(doc["components"][0]["type"], "operating-system");
        assert_eq!(
            doc["components"][1]["purl"],
            "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12&upstream=openssl"
        );
        assert_eq!(doc["metadata"]["component"]["version"], digest.as_str());
    }
}
