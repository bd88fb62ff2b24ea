//! Scanning (issue 15) through the real binary: images from the fixture generator
//! (crates/berth/tests/fixtures/scan: Debian with a zstd layer, distroless with a
//! whiteout and an opaque directory, Alpine, Rocky's rpmdb.sqlite, Python and npm)
//! pushed with skopeo; their SBOMs found through the referrers API and pulled by digest
//! with skopeo; `berth scan` reporting exactly the expected findings; a later advisory
//! matched without reading the layers again; `block-vulnerable` enforced for the
//! Docker engine and not for a writer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::clients::{DockerDaemon, blocking, oci_ref, skopeo_ok};
use crate::process::{BerthProcess, berth_binary};
use crate::{ADMIN_PASSWORD, anonymous, basic};

/// `python3 -m http.server` over a directory, stopped when dropped (where `vulndb update
/// --from` downloads from).
struct WebServer {
    child: std::process::Child,
    base: String,
}

impl WebServer {
    fn serve(dir: &Path) -> WebServer {
        let port = crate::process::free_port();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "python3 -m http.server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        WebServer { child, base }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Generates the fixtures (layout, advisories, expectations) into a new directory.
fn fixtures() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scan/make_fixtures.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make_fixtures.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.path().to_owned();
    (dir, path)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Runs `berth ARGS --data-dir DIR`: (exit code, stdout, stderr).
async fn run_berth(args: &[&str], data_dir: &Path) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let data_dir = data_dir.to_owned();
    blocking(move || {
        let out = std::process::Command::new(berth_binary())
            .args(&args)
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
}

async fn berth_ok(args: &[&str], data_dir: &Path) -> String {
    let (code, out, err) = run_berth(args, data_dir).await;
    assert_eq!(code, 0, "berth {args:?}: {err}");
    out
}

/// `berth scan IMAGE --format json`, its exit code and the one image it reports.
async fn scan_json(image: &str, data_dir: &Path) -> (i32, Value) {
    let (code, out, err) = run_berth(&["scan", image, "--format", "json"], data_dir).await;
    assert!(
        code == 0 || code == 1,
        "berth scan {image}: exit {code}: {err}"
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{report:#}");
    (code, images[0].clone())
}

/// The report's packages and findings in expected.json's shape.
fn as_expected(image: &Value) -> (Value, Value) {
    let mut packages: Vec<Value> = image["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!({"name": p["name"], "version": p["version"], "type": p["kind"]}))
        .collect();
    packages.sort_by_key(|p| {
        (
            p["type"].to_string(),
            p["name"].to_string(),
            p["version"].to_string(),
        )
    });
    let findings: Vec<Value> = image["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            json!({"id": f["id"], "package": f["package"], "installed": f["installed"],
                   "fixed": f["fixed"], "severity": f["severity"], "aliases": f["aliases"]})
        })
        .collect();
    (Value::Array(packages), Value::Array(findings))
}

/// Waits for the image's SBOM referrer (attached in the background after the push).
async fn sbom_referrer(berth: &BerthProcess, repo: &str, digest: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = anonymous()
            .get(berth.url(&format!("/v2/{repo}/referrers/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let index: Value = r.json().await.unwrap();
        let sboms: Vec<Value> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["artifactType"] == "application/vnd.cyclonedx+json")
            .cloned()
            .collect();
        if let [sbom] = sboms.as_slice() {
            return sbom.clone();
        }
        assert!(sboms.is_empty(), "more than one SBOM: {index:#}");
        assert!(
            Instant::now() < deadline,
            "no SBOM for {repo}@{digest} after 30 s\n{}",
            berth.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const TAGS: [&str; 6] = [
    "debian",
    "distroless",
    "distroless-opaque",
    "alpine",
    "rocky",
    "python",
];

/// Every fixture image pushed with skopeo gets its SBOM as a referrer within seconds
/// (the SBOM lists the packages and pulls by digest with skopeo), and `berth scan`
/// reports exactly the expected packages and findings — epochs, `~`, `_p`/`_rc`,
/// release numbers, the Debian 11 advisory not matching Debian 12, the package a
/// whiteout removed and the removed dpkg entry not reported — in table, JSON and SARIF,
/// exiting 1 with findings, 0 without, 2 on errors. Then an advisory imported after the
/// push adds its one finding to the stored inventory, with the image's layers gone from
/// storage (so they cannot have been read again).
#[tokio::test(flavor = "multi_thread")]
async fn pushed_images_get_sboms_and_exactly_the_expected_findings() {
    let (_fixtures, out) = fixtures();
    let expected = read_json(&out.join("expected.json"));
    let summary = read_json(&out.join("summary.json"));
    assert_eq!(
        summary["zstd"], true,
        "the debian fixture has a zstd layer only with the zstd tool (scripts/install-test-deps.sh)"
    );
    let berth = BerthProcess::start().await;
    let data = berth.data_dir.clone();
    // The database first, so that the scan after each push matches at once: files and
    // folders from disk, and OSV's zip form fetched from a web server (`update --from`).
    let imported = berth_ok(
        &["vulndb", "import", out.join("osv").to_str().unwrap()],
        &data,
    )
    .await;
    assert!(imported.contains("31 new"), "{imported}");
    let web = WebServer::serve(&out);
    let url = format!("{}/osv-zip/Debian.zip", web.base);
    let updated = berth_ok(&["vulndb", "update", "--from", &url], &data).await;
    assert!(updated.contains("5 new"), "{updated}");
    let status = berth_ok(&["vulndb", "status"], &data).await;
    assert!(status.contains("36 advisories"), "{status}");
    assert!(status.contains("Debian:12"), "{status}");
    assert!(status.contains(&format!("from {url}")), "{status}");
    let missing = run_berth(
        &[
            "vulndb",
            "update",
            "--from",
            &format!("{}/nothing.zip", web.base),
        ],
        &data,
    )
    .await;
    assert_ne!(missing.0, 0, "a failed download is an error");

    let layout = out.join("layout");
    let host = berth.url("").trim_start_matches("http://").to_owned();
    for tag in TAGS {
        let (source, target) = (
            oci_ref(&layout, tag),
            format!("docker://{host}/fx/img:{tag}"),
        );
        blocking(move || skopeo_ok(&["copy", "--dest-tls-verify=false", &source, &target])).await;
    }

    for tag in TAGS {
        let digest = summary["images"][tag]["manifest"].as_str().unwrap();
        let sbom = sbom_referrer(&berth, "fx/img", digest).await;
        // Pulled by digest with skopeo: the SBOM document is its one file.
        let dir = tempfile::tempdir().unwrap();
        let (source, target) = (
            format!(
                "docker://{host}/fx/img@{}",
                sbom["digest"].as_str().unwrap()
            ),
            format!("dir:{}", dir.path().display()),
        );
        blocking(move || skopeo_ok(&["copy", "--src-tls-verify=false", &source, &target])).await;
        let manifest = read_json(&dir.path().join("manifest.json"));
        assert_eq!(manifest["subject"]["digest"], digest);
        let layer = manifest["layers"][0]["digest"].as_str().unwrap();
        let document = read_json(&dir.path().join(layer.trim_start_matches("sha256:")));
        assert_eq!(document["bomFormat"], "CycloneDX", "{tag}");
        let names: Vec<&str> = document["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["type"] == "library")
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        for package in expected[tag]["packages"].as_array().unwrap() {
            assert!(
                names.contains(&package["name"].as_str().unwrap()),
                "{tag}: SBOM lacks {package}"
            );
        }
        assert_eq!(
            names.len(),
            expected[tag]["packages"].as_array().unwrap().len(),
            "{tag}"
        );

        let (code, image) = scan_json(&format!("fx/img:{tag}"), &data).await;
        let (packages, findings) = as_expected(&image);
        let want = &expected[tag];
        assert_eq!(
            format!(
                "{} {}",
                image["os"]["id"].as_str().unwrap(),
                image["os"]["version_id"].as_str().unwrap()
            ),
            want["os"].as_str().unwrap()
        );
        assert_eq!(packages, want["packages"], "{tag}: packages");
        assert_eq!(findings, want["findings"], "{tag}: findings");
        assert_eq!(code, 1, "{tag}: findings exit 1");
    }

    // The API says the same; the web site's tag page lists the findings.
    let r = anonymous()
        .get(berth.url("/api/v1/repositories/fx/img/scans/alpine"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let api: Value = r.json().await.unwrap();
    assert_eq!(
        as_expected(&api["images"][0]).1,
        expected["alpine"]["findings"]
    );
    let r = anonymous()
        .get(berth.url("/api/v1/repositories/fx/img/scans/absent"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let page = anonymous()
        .get(berth.url("/r/fx/img/-/tags/alpine"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Packages and vulnerabilities"), "{page}");
    assert!(page.contains("ALPINE-CVE-2099-20001"), "{page}");
    assert!(page.contains("3 high, 2 medium, 2 low"), "{page}");

    // Table and SARIF say the same.
    let (code, table, _) = run_berth(&["scan", "fx/img:alpine"], &data).await;
    assert_eq!(code, 1);
    assert!(table.contains("alpine 3.19.1: "), "{table}");
    assert!(
        table.contains("ALPINE-CVE-2099-20001") && table.contains("libcrypto3"),
        "{table}"
    );
    let (code, sarif, _) = run_berth(&["scan", "fx/img:rocky", "--format", "sarif"], &data).await;
    assert_eq!(code, 1);
    let sarif: Value = serde_json::from_str(&sarif).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(
        sarif["runs"][0]["results"].as_array().unwrap().len(),
        expected["rocky"]["findings"].as_array().unwrap().len()
    );
    // Exit 2: nothing there.
    let (code, _, err) = run_berth(&["scan", "fx/img:absent"], &data).await;
    assert_eq!(code, 2, "{err}");
    // Exit 0: an image with no known vulnerability.
    crate::clients::mkimage(
        &out.join("clean"),
        &["--layers", "4K", "--tag", "clean", "--seed", "clean"],
    );
    let (source, target) = (
        oci_ref(&out.join("clean"), "clean"),
        format!("docker://{host}/fx/clean:1"),
    );
    blocking(move || skopeo_ok(&["copy", "--dest-tls-verify=false", &source, &target])).await;
    let (code, image) = scan_json("fx/clean:1", &data).await;
    assert_eq!((code, image["findings"].as_array().unwrap().len()), (0, 0));

    // A newer database: the stored inventory gets the one new finding, though the
    // image's layers are no longer in storage.
    let debian = summary["images"]["debian"].clone();
    let (_, before) = scan_json("fx/img:debian", &data).await;
    for layer in debian["layers"].as_array().unwrap() {
        let hex = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        std::fs::remove_file(data.join("blobs/sha256").join(&hex[..2]).join(hex)).unwrap();
    }
    // Announced to webhooks that ask for it (queued for the server to deliver).
    let hook = berth_ok(
        &[
            "webhook",
            "add",
            "fx",
            "http://127.0.0.1:9/hook",
            "--events",
            "vulnerabilities",
        ],
        &data,
    )
    .await;
    let imported = berth_ok(
        &["vulndb", "import", out.join("osv-later").to_str().unwrap()],
        &data,
    )
    .await;
    let deliveries = berth_ok(&["webhook", "deliveries", hook.trim()], &data).await;
    assert_eq!(
        deliveries.matches("vulnerabilities").count(),
        1,
        "{deliveries}"
    );
    assert!(imported.contains("1 with new findings"), "{imported}");
    assert!(
        imported.contains("fx/img@") && imported.contains("DSA-9099-1"),
        "{imported}"
    );
    let (_, after) = scan_json("fx/img:debian", &data).await;
    let (_, findings) = as_expected(&after);
    let (_, old) = as_expected(&before);
    let added: Vec<&Value> = findings
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !old.as_array().unwrap().contains(f))
        .collect();
    assert_eq!(added, [&expected["later"]["finding"]]);
    assert_eq!(
        after["scanned_at"], before["scanned_at"],
        "not scanned again"
    );
}

/// `block-vulnerable high` on a namespace: the Docker engine's anonymous pull is refused
/// with `denied` and a message naming the worst finding; the administrator (who may
/// push, and must be able to fix it) pulls; accepting the high findings in
/// `allow-vulnerabilities` lets everyone pull; `off` too.
#[tokio::test(flavor = "multi_thread")]
async fn block_vulnerable_refuses_pulls_except_to_writers() {
    let (_fixtures, out) = fixtures();
    let berth = BerthProcess::start_with(&[], &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)]).await;
    let data = berth.data_dir.clone();
    berth_ok(
        &["vulndb", "import", out.join("osv").to_str().unwrap()],
        &data,
    )
    .await;
    let port = berth.url("").rsplit(':').next().unwrap().to_owned();
    let target = format!("docker://localhost:{port}/fx/img:alpine");
    let source = oci_ref(&out.join("layout"), "alpine");
    let creds = format!("admin:{ADMIN_PASSWORD}");
    blocking(move || {
        skopeo_ok(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &source,
            &target,
        ])
    })
    .await;
    // Scanned (now, if the background worker has not yet).
    let (code, _) = scan_json("fx/img:alpine", &data).await;
    assert_eq!(code, 1);
    berth_ok(&["policy", "set", "fx", "block-vulnerable", "high"], &data).await;

    let image = format!("localhost:{port}/fx/img:alpine");
    let docker = DockerDaemon::shared();
    // Anonymous (public repository): refused, with the finding named. The policy is
    // read again within 5 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    let refused = loop {
        let pulled = {
            let image = image.clone();
            blocking(move || docker.docker(&["pull", &image])).await
        };
        let stderr = String::from_utf8_lossy(&pulled.stderr).into_owned();
        if !pulled.status.success() {
            break stderr;
        }
        blocking({
            let image = image.clone();
            move || docker.docker(&["rmi", "-f", &image])
        })
        .await;
        assert!(Instant::now() < deadline, "the pull was never refused");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(refused.contains("denied"), "{refused}");
    assert!(
        refused.contains("ALPINE-CVE-2099-20001") && refused.contains("high"),
        "{refused}"
    );
    // The same over HTTP: DENIED in the spec's error body.
    let manifest_url = berth.url("/v2/fx/img/manifests/alpine");
    let accept = "application/vnd.oci.image.manifest.v1+json";
    let r = anonymous()
        .get(&manifest_url)
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");

    // The administrator may push: they pull, with the Docker engine.
    let login = {
        let registry = format!("localhost:{port}");
        blocking(move || {
            docker.docker_input(
                &["login", &registry, "-u", "admin", "--password-stdin"],
                ADMIN_PASSWORD,
            )
        })
        .await
    };
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let pulled = {
        let image = image.clone();
        blocking(move || docker.docker(&["pull", &image])).await
    };
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let r = anonymous()
        .get(&manifest_url)
        .header("accept", accept)
        .header("authorization", basic("admin", ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    blocking({
        let image = image.clone();
        move || docker.docker(&["rmi", "-f", &image])
    })
    .await;

    // The high findings accepted: anonymous pulls pass (medium ones remain).
    berth_ok(
        &[
            "policy",
            "set",
            "fx",
            "allow-vulnerabilities",
            "ALPINE-CVE-2099-20001,CVE-2099-20007",
        ],
        &data,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = anonymous()
            .get(&manifest_url)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {}", r.status());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // medium blocks again (the medium findings are not accepted); off lets it through.
    berth_ok(
        &["policy", "set", "fx", "block-vulnerable", "medium"],
        &data,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let r = anonymous()
        .get(&manifest_url)
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    berth_ok(&["policy", "set", "fx", "block-vulnerable", "off"], &data).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let r = anonymous()
        .get(&manifest_url)
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Scanning on whichever stores the suite runs on (files and SQLite, or S3 and
/// PostgreSQL): a pushed image's layers are read from the blob store, its SBOM is
/// attached, and the API gives its packages.
#[tokio::test(flavor = "multi_thread")]
async fn scans_read_layers_from_the_configured_stores() {
    let (_fixtures, out) = fixtures();
    let expected = read_json(&out.join("expected.json"));
    let summary = read_json(&out.join("summary.json"));
    let server = crate::TestServer::start_with(|c| c.scan_workers = 1).await;
    let host = server.base.trim_start_matches("http://").to_owned();
    let (source, target) = (
        oci_ref(&out.join("layout"), "rocky"),
        format!("docker://{host}/scan/stores:rocky"),
    );
    blocking(move || skopeo_ok(&["copy", "--dest-tls-verify=false", &source, &target])).await;
    let digest = summary["images"]["rocky"]["manifest"].as_str().unwrap();
    // The SBOM arrives by itself (the background worker).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let index: Value = crate::http()
            .get(server.url(&format!("/v2/scan/stores/referrers/{digest}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["artifactType"] == "application/vnd.cyclonedx+json")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no SBOM after 30 s: {index:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report: Value = crate::http()
        .get(server.url("/api/v1/repositories/scan/stores/scans/rocky"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (packages, _) = as_expected(&report["images"][0]);
    assert_eq!(packages, expected["rocky"]["packages"]);
}
