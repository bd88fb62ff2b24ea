//! Garbage collection through `berth gc` (the real binary) beside a serving berth, on
//! whatever storage and database the suite runs with (filesystem and SQLite, or S3 and
//! PostgreSQL): what deleted images alone used goes, and nothing a tagged image or a
//! push in progress needs ever does.

use serde_json::Value;

use crate::process::berth_binary;
use crate::{
    OCI_INDEX, TestServer, http, image_manifest, pseudo_random, push_blob, put_manifest, sha256,
};

/// Runs `berth gc ARGS --json` on the server's storage and database.
fn gc(server: &TestServer, args: &[&str]) -> Value {
    let storage = match &server.storage {
        berth_server::StorageConfig::Filesystem(path) => format!("file://{}", path.display()),
        berth_server::StorageConfig::S3 { url, .. } => url.clone(),
    };
    let database = match &server.database {
        berth_server::DatabaseConfig::Sqlite(url) | berth_server::DatabaseConfig::Postgres(url) => {
            url.clone()
        }
    };
    let mut command = std::process::Command::new(berth_binary());
    command
        .args([
            "gc",
            "--json",
            "--storage",
            &storage,
            "--database",
            &database,
        ])
        .args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BERTH_") {
            command.env_remove(key);
        }
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "berth gc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "berth gc printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn count(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {report}"))
}

/// An image: its config and layers pushed, its manifest put under `reference`.
struct Image {
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
    manifest: Vec<u8>,
}

impl Image {
    fn new(seed: u64, shared: &[u8]) -> Image {
        let config = format!("{{\"seed\":{seed}}}").into_bytes();
        let layers = vec![
            shared.to_vec(),
            pseudo_random(200_000 + seed as usize, seed),
        ];
        let refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
        let manifest = image_manifest(&config, &refs);
        Image {
            config,
            layers,
            manifest,
        }
    }

    fn digest(&self) -> String {
        sha256(&self.manifest)
    }

    /// Its own bytes: config and the layer no other image shares.
    fn own_bytes(&self) -> u64 {
        (self.config.len() + self.layers[1].len()) as u64
    }

    async fn push(&self, base: &str, repo: &str, reference: &str) -> reqwest::Response {
        push_blob(base, repo, &self.config).await;
        for layer in &self.layers {
            push_blob(base, repo, layer).await;
        }
        put_manifest(base, repo, reference, &self.manifest).await
    }

    /// Every blob served byte for byte, and the manifest.
    async fn assert_pulls(&self, base: &str, repo: &str) {
        let r = http()
            .get(format!("{base}/v2/{repo}/manifests/{}", self.digest()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "manifest {} in {repo}", self.digest());
        assert_eq!(r.bytes().await.unwrap(), self.manifest);
        for blob in std::iter::once(&self.config).chain(&self.layers) {
            let digest = sha256(blob);
            let r = http()
                .get(format!("{base}/v2/{repo}/blobs/{digest}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "blob {digest} in {repo}");
            assert!(r.bytes().await.unwrap() == *blob, "blob {digest} differs");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_images_go_and_tagged_images_keep_every_byte() {
    let server = TestServer::start().await;
    let base = &server.base;
    let shared = pseudo_random(300_000, 1);
    let kept = Image::new(2, &shared);
    let deleted = Image::new(3, &shared);
    assert_eq!(kept.push(base, "gc/app", "kept").await.status(), 201);
    assert_eq!(deleted.push(base, "gc/app", "deleted").await.status(), 201);
    // Nothing is unreferenced yet.
    assert_eq!(
        count(&gc(&server, &["--grace", "0s", "--dry-run"]), "blobs"),
        0
    );

    let r = http()
        .delete(format!("{base}/v2/gc/app/manifests/{}", deleted.digest()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // With the default grace (24 h) nothing goes yet.
    assert_eq!(count(&gc(&server, &[]), "blobs"), 0);

    let predicted = gc(&server, &["--grace", "0s", "--dry-run"]);
    assert_eq!(count(&predicted, "blobs"), 2, "{predicted}");
    assert_eq!(
        count(&predicted, "bytes"),
        deleted.own_bytes(),
        "{predicted}"
    );
    let report = gc(&server, &["--grace", "0s"]);
    assert_eq!(
        count(&report, "blobs"),
        count(&predicted, "blobs"),
        "{report}"
    );
    assert_eq!(
        count(&report, "bytes"),
        count(&predicted, "bytes"),
        "the dry run predicted what went: {report}"
    );
    for gone in [&deleted.config, &deleted.layers[1]] {
        assert_eq!(
            server.stored_copies(&sha256(gone)).await,
            0,
            "bytes still stored"
        );
        let r = http()
            .get(format!("{base}/v2/gc/app/blobs/{}", sha256(gone)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    assert_eq!(server.stored_copies(&sha256(&shared)).await, 1);
    kept.assert_pulls(base, "gc/app").await;
    // A second pass finds nothing more.
    assert_eq!(count(&gc(&server, &["--grace", "0s"]), "blobs"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_in_progress_and_blobs_awaiting_their_manifest_survive() {
    let server = TestServer::start().await;
    let base = &server.base;
    // A blob pushed, its manifest not yet.
    let image = Image::new(4, &pseudo_random(100_000, 5));
    push_blob(base, "gc/push", &image.config).await;
    for layer in &image.layers {
        push_blob(base, "gc/push", layer).await;
    }
    // An upload session half done.
    let r = http()
        .post(format!("{base}/v2/gc/push/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = format!("{base}{}", crate::header(&r, "location"));
    let data = pseudo_random(1_000_000, 6);
    let r = http()
        .patch(&location)
        .header("content-type", "application/octet-stream")
        .body(data[..400_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let report = gc(&server, &["--grace", "0s"]);
    assert_eq!(count(&report, "blobs"), 0, "{report}");
    assert_eq!(count(&report, "uploads"), 0, "{report}");

    let location = format!("{base}{}", crate::header(&r, "location"));
    let r = http()
        .put(crate::with_digest(&location, &sha256(&data)))
        .header("content-type", "application/octet-stream")
        .body(data[400_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "the upload finishes after the pass");
    assert_eq!(
        put_manifest(base, "gc/push", "v1", &image.manifest)
            .await
            .status(),
        201,
        "the manifest finds its blobs"
    );
    image.assert_pulls(base, "gc/push").await;
}

/// With no push window at all, collection takes blobs the moment they are pushed; a
/// manifest PUT racing it is either refused (its blob is gone: the client pushes it
/// again) or stored with every blob still there, never stored over deleted bytes.
#[tokio::test(flavor = "multi_thread")]
async fn pushes_racing_collection_never_reference_deleted_bytes() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (server, stop) = (server.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            let mut passes = 0;
            let mut removed = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let report = gc(&server, &["--grace", "0s", "--gc-push-window", "0s"]);
                removed += count(&report, "blobs");
                passes += 1;
            }
            (passes, removed)
        })
    };
    let mut stored = Vec::new();
    let mut refused = 0;
    for i in 0..40 {
        let image = Image::new(100 + i, &pseudo_random(50_000, 7));
        let r = image.push(&server.base, "gc/race", &format!("t{i}")).await;
        match r.status().as_u16() {
            201 => stored.push(image),
            400 => {
                let body = r.text().await.unwrap();
                assert!(body.contains("MANIFEST_BLOB_UNKNOWN"), "{body}");
                refused += 1;
            }
            other => panic!("manifest PUT answered {other}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (passes, removed) = collector.await.unwrap();
    eprintln!(
        "{} stored, {refused} refused, {passes} passes removed {removed} blobs",
        stored.len()
    );
    assert!(passes >= 2, "collection ran during the pushes");
    // A pass between two pushes sees every blob of the stored images referenced.
    for image in &stored {
        image.assert_pulls(&server.base, "gc/race").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn untagged_manifests_go_where_asked_but_never_index_children_or_referrers() {
    let server = TestServer::start().await;
    let base = &server.base;
    let shared = pseudo_random(100_000, 8);
    let old = Image::new(10, &shared);
    let new = Image::new(11, &shared);
    assert_eq!(old.push(base, "gc/untagged", "latest").await.status(), 201);
    assert_eq!(new.push(base, "gc/untagged", "latest").await.status(), 201);
    // An index whose children were pushed by digest, untagged.
    let children = [Image::new(12, &shared), Image::new(13, &shared)];
    for child in &children {
        assert_eq!(
            child
                .push(base, "gc/untagged", &child.digest())
                .await
                .status(),
            201
        );
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|c| serde_json::json!({
            "mediaType": crate::OCI_MANIFEST,
            "digest": c.digest(),
            "size": c.manifest.len(),
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let r = http()
        .put(format!("{base}/v2/gc/untagged/manifests/multi"))
        .header("content-type", OCI_INDEX)
        .body(index)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A referrer (a signature, say) of the new image, untagged.
    let signature = pseudo_random(1_000, 14);
    push_blob(base, "gc/untagged", &signature).await;
    let empty = b"{}";
    push_blob(base, "gc/untagged", empty).await;
    let referrer = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(empty), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sha256(&signature), "size": signature.len()}],
        "subject": {"mediaType": crate::OCI_MANIFEST, "digest": new.digest(), "size": new.manifest.len()},
    }))
    .unwrap();
    let r = put_manifest(base, "gc/untagged", &sha256(&referrer), &referrer).await;
    assert_eq!(r.status(), 201);
    // Untagged too, but in a repository not in scope.
    let elsewhere = Image::new(15, &shared);
    assert_eq!(
        elsewhere
            .push(base, "keep/all", &elsewhere.digest())
            .await
            .status(),
        201
    );

    let args = [
        "--grace",
        "0s",
        "--gc-push-window",
        "0s",
        "--gc-untagged",
        "gc",
    ];
    let report = gc(&server, &args);
    assert_eq!(
        count(&report, "manifests"),
        1,
        "only the old image: {report}"
    );
    assert_eq!(
        count(&report, "blobs"),
        2,
        "its config and own layer: {report}"
    );
    let r = http()
        .get(format!("{base}/v2/gc/untagged/manifests/{}", old.digest()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    new.assert_pulls(base, "gc/untagged").await;
    for child in &children {
        child.assert_pulls(base, "gc/untagged").await;
    }
    elsewhere.assert_pulls(base, "keep/all").await;
    let r = http()
        .get(format!("{base}/v2/gc/untagged/referrers/{}", new.digest()))
        .send()
        .await
        .unwrap();
    let listing: Value = r.json().await.unwrap();
    assert_eq!(listing["manifests"][0]["digest"], sha256(&referrer));
    assert_eq!(count(&gc(&server, &args), "manifests"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_used_is_shown_per_repository_and_namespace() {
    let server = TestServer::start().await;
    let base = &server.base;
    let image = Image::new(20, &pseudo_random(70_000, 21));
    assert_eq!(image.push(base, "usage/one", "v1").await.status(), 201);
    assert_eq!(image.push(base, "usage/two", "v1").await.status(), 201);
    let blobs: u64 = std::iter::once(&image.config)
        .chain(&image.layers)
        .map(|b| b.len() as u64)
        .sum();
    let manifest = image.manifest.len() as u64;

    let r = http()
        .get(format!("{base}/api/v1/repositories/usage/one"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let shown: Value = r.json().await.unwrap();
    assert_eq!(shown["storage"]["bytes"], blobs + manifest, "{shown}");
    assert_eq!(shown["storage"]["blobs"], 3, "{shown}");
    assert_eq!(shown["storage"]["manifests"], 1, "{shown}");
    assert_eq!(shown["storage"]["tags"], 1, "{shown}");

    let database = match &server.database {
        berth_server::DatabaseConfig::Sqlite(url) | berth_server::DatabaseConfig::Postgres(url) => {
            url.clone()
        }
    };
    let out = std::process::Command::new(berth_binary())
        .args(["repo", "ls", "usage", "--database", &database])
        .env_remove("BERTH_DATABASE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.contains("usage/one"), "{listing}");
    assert!(listing.contains("usage/two"), "{listing}");
    // The namespace counts the shared blobs once, and both manifests.
    let total = blobs + 2 * manifest;
    let expected = format!("{:.1} KiB in all", total as f64 / 1024.0);
    assert!(listing.contains(&expected), "{expected} in {listing}");

    // Deleting the image from one repository and collecting frees nothing yet (the
    // other still uses every blob) but that repository no longer counts them.
    let r = http()
        .delete(format!("{base}/v2/usage/two/manifests/{}", image.digest()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let report = gc(&server, &["--grace", "0s", "--gc-push-window", "0s"]);
    assert_eq!(count(&report, "blobs"), 0, "{report}");
    assert_eq!(count(&report, "links"), 3, "{report}");
    let shown: Value = http()
        .get(format!("{base}/api/v1/repositories/usage/two"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["storage"]["bytes"], 0, "{shown}");
    image.assert_pulls(base, "usage/one").await;
}
