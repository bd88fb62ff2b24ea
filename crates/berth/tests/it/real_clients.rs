//! Real clients against an in-process berth: skopeo 1.9 (containers/image)
//! and the Docker engine 20.10. Images come from `shared/tools/mkimage.py`,
//! so every digest is known in advance and every pulled byte is checked.
//!
//! Client commands block, so each test runs them through [`blocking`] (the
//! server runs on the same tokio runtime).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::TestServer;
use crate::clients::*;

fn tags_of(list_tags: &Value) -> Vec<String> {
    list_tags["Tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no Tags array in skopeo list-tags output: {list_tags}"))
        .iter()
        .map(|t| {
            t.as_str()
                .unwrap_or_else(|| panic!("tag is not a string: {t}"))
                .to_string()
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_string()
        })
        .collect()
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berth-it-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"))
}

/// a. One image (3 layers) from an OCI layout into berth and back out:
/// same manifest digest, every blob byte-identical.
#[tokio::test(flavor = "multi_thread")]
async fn skopeo_copy_single_image_roundtrip() {
    let server = TestServer::start().await;
    let host = server.host.clone();
    blocking(move || {
        let tmp = scratch();
        let src = tmp.path().join("src");
        let summary = mkimage(
            &src,
            &[
                "--layers",
                "1M,512K,4M",
                "--tag",
                "v1",
                "--seed",
                "roundtrip",
            ],
        );
        let base = &summary[0];
        let digest = json_str(base, "digest").to_string();
        assert_eq!(json_str(base, "kind"), "manifest");
        let layers = summary_layers(base, 0);
        assert_eq!(layers.len(), 3);

        let sk = Skopeo::new();
        let dest = format!("docker://{host}/test/base:v1");
        sk.ok(&[
            "copy",
            &oci_ref(&src, "v1"),
            &dest,
            "--dest-tls-verify=false",
        ]);

        // What the registry serves for the tag: same digest, same layers.
        let inspect = sk.json(&["inspect", "--tls-verify=false", &dest]);
        assert_eq!(json_str(&inspect, "Digest"), digest, "inspect: {inspect}");
        assert_eq!(strings(&inspect["Layers"]), layers, "inspect: {inspect}");
        let raw = sk.ok_bytes(&["inspect", "--raw", "--tls-verify=false", &dest]);
        assert!(
            raw == layout_blob(&src, &digest),
            "manifest bytes changed on the way through the registry"
        );
        let config = sk.ok_bytes(&["inspect", "--config", "--raw", "--tls-verify=false", &dest]);
        let config_digest = json_str(&base["images"][0], "config");
        assert!(
            config == layout_blob(&src, config_digest),
            "config bytes differ"
        );

        // And back out into a fresh layout (its parent must exist).
        let pulled = tmp.path().join("pulled");
        sk.ok(&[
            "copy",
            &dest,
            &oci_ref(&pulled, "v1"),
            "--src-tls-verify=false",
        ]);
        assert_eq!(layout_ref_digest(&pulled, "v1"), digest);
        assert_layout_blobs_identical(&src, &pulled);
        assert_eq!(layout_blob_names(&pulled), layout_blob_names(&src));

        // By digest as well as by tag.
        let by_digest = format!("docker://{host}/test/base@{digest}");
        let raw = sk.ok_bytes(&["inspect", "--raw", "--tls-verify=false", &by_digest]);
        assert!(
            raw == layout_blob(&src, &digest),
            "manifest by digest differs"
        );
    })
    .await;
    drop(server);
}

/// b. A multi-arch OCI index with `--all`: the index digest and bytes are
/// preserved, each platform resolves, and the pull gives the same layout.
#[tokio::test(flavor = "multi_thread")]
async fn skopeo_copy_all_multiarch_index() {
    let server = TestServer::start().await;
    let host = server.host.clone();
    blocking(move || {
        let tmp = scratch();
        let src = tmp.path().join("multi");
        let summary = mkimage(
            &src,
            &[
                "--layers",
                "1M,256K",
                "--multiarch",
                "--tag",
                "multi",
                "--seed",
                "7",
            ],
        );
        let idx = &summary[0];
        assert_eq!(json_str(idx, "kind"), "index");
        let index_digest = json_str(idx, "digest").to_string();
        let images = idx["images"]
            .as_array()
            .unwrap_or_else(|| panic!("no images: {idx}"));
        assert_eq!(images.len(), 2);
        let amd64 = &images[0];
        let arm64 = &images[1];
        assert_eq!(json_str(arm64, "platform"), "linux/arm64/v8");

        let sk = Skopeo::new();
        let dest = format!("docker://{host}/test/multi:latest");
        sk.ok(&[
            "copy",
            "--all",
            &oci_ref(&src, "multi"),
            &dest,
            "--dest-tls-verify=false",
        ]);

        // Exact index bytes back.
        let raw = sk.ok_bytes(&["inspect", "--raw", "--tls-verify=false", &dest]);
        let expected = layout_blob(&src, &index_digest);
        assert!(
            raw == expected,
            "index bytes differ:\n got {}\nwant {}",
            String::from_utf8_lossy(&raw),
            String::from_utf8_lossy(&expected)
        );

        // Platform resolution through the index.
        let arm = sk.json(&[
            "inspect",
            "--override-arch",
            "arm64",
            "--tls-verify=false",
            &dest,
        ]);
        assert_eq!(json_str(&arm, "Architecture"), "arm64", "{arm}");
        assert_eq!(json_str(&arm, "Digest"), index_digest, "{arm}");
        assert_eq!(strings(&arm["Layers"]), summary_layers(idx, 1), "{arm}");
        let amd = sk.json(&[
            "inspect",
            "--override-arch",
            "amd64",
            "--tls-verify=false",
            &dest,
        ]);
        assert_eq!(json_str(&amd, "Architecture"), "amd64", "{amd}");
        assert_eq!(strings(&amd["Layers"]), summary_layers(idx, 0), "{amd}");

        // Child manifests by digest, byte for byte.
        for image in [amd64, arm64] {
            let m = json_str(image, "manifest");
            let by_digest = format!("docker://{host}/test/multi@{m}");
            let raw = sk.ok_bytes(&["inspect", "--raw", "--tls-verify=false", &by_digest]);
            assert!(raw == layout_blob(&src, m), "child manifest {m} differs");
        }

        // Whole index back out.
        let pulled = tmp.path().join("pulled");
        sk.ok(&[
            "copy",
            "--all",
            &dest,
            &oci_ref(&pulled, "latest"),
            "--src-tls-verify=false",
        ]);
        assert_eq!(layout_ref_digest(&pulled, "latest"), index_digest);
        assert_layout_blobs_identical(&src, &pulled);
        assert_eq!(layout_blob_names(&pulled), layout_blob_names(&src));
    })
    .await;
    drop(server);
}

/// `skopeo copy --multi-arch index-only` pushes an index without its platforms (a
/// sparse index): stored byte for byte; a platform fails to resolve, clearly, until it
/// is copied on its own, and then pulls through the index.
#[tokio::test(flavor = "multi_thread")]
async fn skopeo_pushes_a_sparse_index_and_its_platforms_later() {
    let server = TestServer::start().await;
    let host = server.host.clone();
    blocking(move || {
        let tmp = scratch();
        let src = tmp.path().join("multi");
        let summary = mkimage(
            &src,
            &[
                "--layers",
                "64K",
                "--multiarch",
                "--tag",
                "multi",
                "--seed",
                "11",
            ],
        );
        let idx = &summary[0];
        let index_digest = json_str(idx, "digest").to_string();
        let sk = Skopeo::new();
        let dest = format!("docker://{host}/test/sparse:latest");
        sk.ok(&[
            "copy",
            "--multi-arch",
            "index-only",
            &oci_ref(&src, "multi"),
            &dest,
            "--dest-tls-verify=false",
        ]);
        let raw = sk.ok_bytes(&["inspect", "--raw", "--tls-verify=false", &dest]);
        assert!(
            raw == layout_blob(&src, &index_digest),
            "index bytes differ"
        );
        let arm64 = [
            "inspect",
            "--override-arch",
            "arm64",
            "--tls-verify=false",
            &dest,
        ];
        let err = sk.fails(&arm64);
        assert!(err.contains("manifest unknown"), "{err}");

        // The arm64 platform on its own, then through the index.
        sk.ok(&[
            "copy",
            "--override-arch",
            "arm64",
            &oci_ref(&src, "multi"),
            &format!("docker://{host}/test/sparse:arm64"),
            "--dest-tls-verify=false",
        ]);
        let arm = sk.json(&arm64);
        assert_eq!(json_str(&arm, "Architecture"), "arm64", "{arm}");
        assert_eq!(strings(&arm["Layers"]), summary_layers(idx, 1), "{arm}");
        let pulled = tmp.path().join("pulled");
        sk.ok(&[
            "copy",
            "--override-arch",
            "arm64",
            &dest,
            &oci_ref(&pulled, "latest"),
            "--src-tls-verify=false",
        ]);
        assert_eq!(
            layout_ref_digest(&pulled, "latest"),
            json_str(&idx["images"][1], "manifest")
        );
    })
    .await;
    drop(server);
}

/// c. Base and derived images sharing their 2 bottom layers, in two
/// repositories: the derived image comes back byte-identical and each
/// shared layer is stored once on disk.
#[tokio::test(flavor = "multi_thread")]
async fn skopeo_shared_layers_stored_once() {
    let server = TestServer::start().await;
    let host = server.host.clone();
    let data_dir = server.data_dir.clone();
    blocking(move || {
        let tmp = scratch();
        let base_dir = tmp.path().join("base");
        let app_dir = tmp.path().join("app");
        let app_dir_s = app_dir.to_string_lossy().into_owned();
        let summary = mkimage(
            &base_dir,
            &[
                "--layers",
                "1M,512K,4M",
                "--tag",
                "v1",
                "--seed",
                "shared",
                "--derived-out",
                &app_dir_s,
                "--derived-tag",
                "v1",
                "--shared",
                "2",
                "--derived-layers",
                "3M",
            ],
        );
        let base = &summary[0];
        let app = &summary[1];
        let base_layers = summary_layers(base, 0);
        let app_layers = summary_layers(app, 0);
        assert_eq!(
            base_layers[..2],
            app_layers[..2],
            "mkimage did not share the bottom layers"
        );
        assert_ne!(base_layers[2], app_layers[2]);

        let sk = Skopeo::new();
        let base_ref = format!("docker://{host}/test/base:v1");
        let app_ref = format!("docker://{host}/test/app:v1");
        sk.ok(&[
            "copy",
            &oci_ref(&base_dir, "v1"),
            &base_ref,
            "--dest-tls-verify=false",
        ]);
        sk.ok(&[
            "copy",
            &oci_ref(&app_dir, "v1"),
            &app_ref,
            "--dest-tls-verify=false",
        ]);

        let pulled = tmp.path().join("pulled");
        sk.ok(&[
            "copy",
            &app_ref,
            &oci_ref(&pulled, "v1"),
            "--src-tls-verify=false",
        ]);
        assert_eq!(layout_ref_digest(&pulled, "v1"), json_str(app, "digest"));
        assert_layout_blobs_identical(&app_dir, &pulled);

        // The base is still intact after the derived push.
        let inspect = sk.json(&["inspect", "--tls-verify=false", &base_ref]);
        assert_eq!(json_str(&inspect, "Digest"), json_str(base, "digest"));

        // Content-addressed storage: every layer exactly once under the
        // server's data dir, the shared ones included.
        assert!(data_dir.is_dir(), "no data dir {}", data_dir.display());
        let mut all = base_layers.clone();
        all.push(app_layers[2].clone());
        for layer in &all {
            let n = count_files_named(&data_dir, hex_of(layer));
            assert_eq!(
                n,
                1,
                "layer {layer} stored {n} times under {}",
                data_dir.display()
            );
        }
    })
    .await;
    drop(server);
}

/// d. list-tags shows the pushed tags; delete removes a manifest, after which
/// it can't be inspected by tag or digest, while the other tag stays.
#[tokio::test(flavor = "multi_thread")]
async fn skopeo_list_tags_and_delete() {
    let server = TestServer::start().await;
    let host = server.host.clone();
    blocking(move || {
        let tmp = scratch();
        let src = tmp.path().join("tags");
        // Two different images in one layout, so deleting one manifest
        // cannot take the other tag with it.
        let s1 = mkimage(
            &src,
            &["--layers", "64K", "--tag", "v1", "--seed", "tags-1"],
        );
        let s2 = mkimage(
            &src,
            &["--layers", "64K", "--tag", "v2", "--seed", "tags-2"],
        );
        let d1 = json_str(&s1[0], "digest").to_string();
        let d2 = json_str(&s2[0], "digest").to_string();
        assert_ne!(d1, d2);

        let sk = Skopeo::new();
        let repo = format!("docker://{host}/test/tags");
        for tag in ["v1", "v2"] {
            sk.ok(&[
                "copy",
                &oci_ref(&src, tag),
                &format!("{repo}:{tag}"),
                "--dest-tls-verify=false",
            ]);
        }
        let listed = sk.json(&["list-tags", "--tls-verify=false", &repo]);
        assert_eq!(tags_of(&listed), ["v1", "v2"], "{listed}");
        assert_eq!(json_str(&listed, "Repository"), format!("{host}/test/tags"));

        // skopeo delete resolves the tag and sends DELETE /v2/test/tags/manifests/<digest>.
        sk.ok(&["delete", "--tls-verify=false", &format!("{repo}:v2")]);

        let err = sk.fails(&["inspect", "--tls-verify=false", &format!("{repo}:v2")]);
        assert!(
            err.contains("manifest unknown"),
            "inspect of deleted tag: {err}"
        );
        let err = sk.fails(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("{repo}@{d2}"),
        ]);
        assert!(
            err.contains("manifest unknown"),
            "inspect of deleted digest: {err}"
        );

        let v1 = sk.json(&["inspect", "--tls-verify=false", &format!("{repo}:v1")]);
        assert_eq!(json_str(&v1, "Digest"), d1);
        let listed = sk.json(&["list-tags", "--tls-verify=false", &repo]);
        assert_eq!(tags_of(&listed), ["v1"], "{listed}");

        // A repository nobody pushed to has no tag list.
        sk.fails(&[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{host}/test/never-pushed"),
        ]);
    })
    .await;
    drop(server);
}

/// Short layer id as `docker push` prints it: the first 12 hex digits of the
/// layer's diff_id.
fn short_id(diff_id: &str) -> &str {
    &hex_of(diff_id)[..12]
}

/// e. Docker engine: load, push, remove, pull back (same image id); then a
/// derived image sharing 2 layers pushed to another repository mounts (or
/// finds) those layers instead of uploading them again.
#[tokio::test(flavor = "multi_thread")]
async fn docker_push_pull_and_cross_repo_mount() {
    let server = TestServer::start().await;
    let port = server.port;
    let host = server.host.clone();
    blocking(move || {
        let docker = DockerDaemon::shared();
        let tmp = scratch();
        let ui_name = format!("localhost:{port}/gallery/ui:v1");
        let app_name = format!("localhost:{port}/gallery/app:v1");
        let ui_tar = tmp.path().join("ui.tar");
        let ui_tar_s = ui_tar.to_string_lossy().into_owned();
        let app_dir = tmp.path().join("app");
        let app_dir_s = app_dir.to_string_lossy().into_owned();
        let summary = mkimage(
            &tmp.path().join("ui"),
            &[
                "--layers",
                "1M,512K,2M",
                "--tag",
                "v1",
                "--seed",
                "gallery",
                "--derived-out",
                &app_dir_s,
                "--derived-tag",
                "v1",
                "--shared",
                "2",
                "--derived-layers",
                "1M",
                "--docker-archive",
                &ui_tar_s,
                "--docker-name",
                &ui_name,
            ],
        );
        let ui = &summary[0];
        let app = &summary[1];
        let ui_config = json_str(&ui["images"][0], "config").to_string();
        let app_config = json_str(&app["images"][0], "config").to_string();
        let ui_diff_ids = summary_diff_ids(ui, 0);
        let app_diff_ids = summary_diff_ids(app, 0);

        // Load and push the base image.
        let out = docker.docker_ok(&["load", "-i", &ui_tar_s]);
        assert!(
            out.contains(&format!("Loaded image: {ui_name}")),
            "docker load: {out}"
        );
        let id = docker.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &ui_name]);
        assert_eq!(id.trim(), ui_config, "image id is the config digest");

        let push = docker.docker_ok(&["image", "push", &ui_name]);
        assert!(push.contains("v1: digest: sha256:"), "docker push: {push}");
        assert!(push.contains(" size: "), "docker push: {push}");
        for d in &ui_diff_ids {
            assert!(
                push.contains(&format!("{}: Pushed", short_id(d))),
                "layer {d} not pushed:\n{push}"
            );
        }
        let ui_digest = pushed_digest(&push, "v1");

        // The registry serves that manifest under the tag (skopeo computes
        // the digest from the bytes it gets).
        let sk = Skopeo::new();
        let ui_docker_ref = format!("docker://{host}/gallery/ui:v1");
        let inspect = sk.json(&["inspect", "--tls-verify=false", &ui_docker_ref]);
        assert_eq!(json_str(&inspect, "Digest"), ui_digest, "{inspect}");

        // Remove and pull back: same image id.
        docker.docker_ok(&["image", "rm", &ui_name]);
        let gone = docker.docker(&["image", "inspect", &ui_name]);
        assert!(
            !gone.status.success(),
            "image still present after docker image rm"
        );
        let pull = docker.docker_ok(&["pull", &ui_name]);
        assert!(
            pull.contains(&format!("Digest: {ui_digest}")),
            "docker pull: {pull}"
        );
        let id = docker.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &ui_name]);
        assert_eq!(id.trim(), ui_config, "pulled image id");

        // The derived image: mkimage's docker archive holds the base image
        // only, so skopeo turns the derived OCI layout into one.
        let app_tar = tmp.path().join("app.tar");
        sk.ok(&[
            "copy",
            &oci_ref(&app_dir, "v1"),
            &format!("docker-archive:{}:{app_name}", app_tar.display()),
        ]);
        let out = docker.docker_ok(&["load", "-i", &app_tar.to_string_lossy()]);
        assert!(
            out.contains(&format!("Loaded image: {app_name}")),
            "docker load: {out}"
        );
        let id = docker.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &app_name]);
        assert_eq!(id.trim(), app_config);

        let push = docker.docker_ok(&["image", "push", &app_name]);
        for d in &app_diff_ids[..2] {
            let mounted = format!("{}: Mounted from gallery/ui", short_id(d));
            let exists = format!("{}: Layer already exists", short_id(d));
            assert!(
                push.contains(&mounted) || push.contains(&exists),
                "shared layer {d} was uploaded again instead of mounted:\n{push}"
            );
        }
        assert!(
            push.contains(&format!("{}: Pushed", short_id(&app_diff_ids[2]))),
            "own layer not pushed:\n{push}"
        );
        let app_digest = pushed_digest(&push, "v1");
        assert_ne!(app_digest, ui_digest);

        // Pull the derived image back: same image id.
        docker.docker_ok(&["image", "rm", &app_name]);
        let pull = docker.docker_ok(&["pull", &app_name]);
        assert!(
            pull.contains(&format!("Digest: {app_digest}")),
            "docker pull: {pull}"
        );
        let id = docker.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &app_name]);
        assert_eq!(id.trim(), app_config, "pulled derived image id");

        // Tags as another client sees them.
        let tags = sk.json(&[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{host}/gallery/app"),
        ]);
        assert_eq!(tags_of(&tags), ["v1"], "{tags}");
        let tags = sk.json(&[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{host}/gallery/ui"),
        ]);
        assert_eq!(tags_of(&tags), ["v1"], "{tags}");

        // Keep the shared daemon's vfs store small.
        docker.docker(&["image", "rm", &ui_name, &app_name]);
    })
    .await;
    drop(server);
}

/// f. The engine probes HTTPS first, even for localhost; the server must
/// answer or close the TLS ClientHello at once (a silent server costs a 10 s
/// handshake timeout per connection). A pull of a missing tag must fail fast
/// with "manifest unknown".
#[tokio::test(flavor = "multi_thread")]
async fn docker_https_probe_and_missing_manifest_fail_fast() {
    let server = TestServer::start().await;
    let port = server.port;
    blocking(move || {
        let docker = DockerDaemon::shared();
        let name = format!("localhost:{port}/none/such:v1");
        let started = Instant::now();
        let out = docker.docker(&["pull", &name]);
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "pull of a missing image succeeded");
        assert!(
            stderr.contains("manifest unknown") || stderr.contains("not found"),
            "docker pull: {stderr}"
        );
        assert!(
            took < Duration::from_secs(8),
            "docker pull took {took:?}: does the server leave the TLS ClientHello unanswered?"
        );
    })
    .await;
    drop(server);
}
