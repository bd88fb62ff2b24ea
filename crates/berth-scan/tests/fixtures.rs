//! The scanner against the shared fixtures (crates/berth/tests/fixtures/scan): each
//! image's layers read from the OCI layout, its inventory and its findings against the
//! fixture OSV database exactly as `expected.json` lists them. The same fixtures go
//! through a running berth in the integration suite; this runs the logic alone, fast.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_scan::{AdvisoryIndex, Collector, Compression, Inventory};
use serde_json::Value;

fn fixtures() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../berth/tests/fixtures/scan/make_fixtures.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "make_fixtures.py failed");
    let path = dir.path().to_owned();
    (dir, path)
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The inventory of the image tagged `tag`, its layers read top-most first.
async fn inventory(layout: &Path, tag: &str) -> Inventory {
    let index = json(&layout.join("index.json"));
    let descriptor = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag}"));
    let manifest = json(&blob(layout, descriptor["digest"].as_str().unwrap()));
    let scratch = tempfile::tempdir().unwrap();
    let mut collector = Collector::new(scratch.path());
    for layer in manifest["layers"].as_array().unwrap().iter().rev() {
        let compression = Compression::of_layer(layer["mediaType"].as_str().unwrap()).unwrap();
        let file = std::fs::File::open(blob(layout, layer["digest"].as_str().unwrap())).unwrap();
        collector.read_layer(file, compression).unwrap();
    }
    Inventory::from_files(&collector.finish()).await
}

fn load(index: &mut AdvisoryIndex, path: &Path) {
    berth_scan::osv::read_path(path, &mut |advisory, _| {
        index.add(advisory);
        Ok(())
    })
    .unwrap();
}

fn packages_of(inventory: &Inventory) -> Value {
    let mut packages: Vec<Value> = inventory
        .packages
        .iter()
        .map(|p| serde_json::json!({"name": p.name, "version": p.version, "type": p.kind.as_str()}))
        .collect();
    packages.sort_by_key(|p| {
        (
            p["type"].to_string(),
            p["name"].to_string(),
            p["version"].to_string(),
        )
    });
    Value::Array(packages)
}

fn findings_of(index: &AdvisoryIndex, inventory: &Inventory) -> Value {
    Value::Array(
        index
            .findings(inventory)
            .into_iter()
            .map(|f| {
                serde_json::json!({
                    "id": f.id, "package": f.package, "installed": f.installed,
                    "fixed": f.fixed, "severity": f.severity.as_str(), "aliases": f.aliases,
                })
            })
            .collect(),
    )
}

#[tokio::test]
async fn every_fixture_image_has_exactly_the_expected_packages_and_findings() {
    let (_dir, out) = fixtures();
    let expected = json(&out.join("expected.json"));
    let mut index = AdvisoryIndex::new();
    load(&mut index, &out.join("osv"));
    load(&mut index, &out.join("osv-zip"));
    let layout = out.join("layout");
    let mut failures = Vec::new();
    for tag in [
        "debian",
        "distroless",
        "distroless-opaque",
        "alpine",
        "rocky",
        "python",
    ] {
        let inventory = inventory(&layout, tag).await;
        let want = &expected[tag];
        let os = inventory
            .os
            .as_ref()
            .map(|o| format!("{} {}", o.id, o.version_id));
        if Some(want["os"].as_str().unwrap().to_owned()) != os {
            failures.push(format!("{tag}: os {os:?}, want {}", want["os"]));
        }
        let packages = packages_of(&inventory);
        if packages != want["packages"] {
            failures.push(format!(
                "{tag}: packages\n got {packages}\nwant {}",
                want["packages"]
            ));
        }
        let findings = findings_of(&index, &inventory);
        if findings != want["findings"] {
            failures.push(format!(
                "{tag}: findings\n got {findings:#}\nwant {:#}",
                want["findings"]
            ));
        }
        assert!(inventory.notes.is_empty(), "{tag}: {:?}", inventory.notes);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // The later advisory adds exactly its one finding, from the stored inventory alone.
    let debian = inventory(&layout, "debian").await;
    let before = index.findings(&debian).len();
    load(&mut index, &out.join("osv-later"));
    let after = findings_of(&index, &debian);
    assert_eq!(after.as_array().unwrap().len(), before + 1);
    let later = &expected["later"];
    assert_eq!(later["tag"], "debian");
    assert!(
        after.as_array().unwrap().contains(&later["finding"]),
        "{after:#}"
    );
}
