//! Mirrors: a second berth (with accounts, so the upstream's token flow runs) is the
//! upstream, and a mirror berth in front of it serves `up/…` as read-only copies.
//! skopeo pulls through the mirror byte-identical; concurrent pulls of an uncached blob
//! fetch it once; with the upstream stopped, cached images still pull (with a
//! `Warning`) and uncached ones fail at once naming the upstream.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts::{PASSWORD, add_user, admin, call};
use crate::clients::{
    blocking, layout_blob, layout_blob_names, layout_ref_digest, mkimage, oci_ref,
};
use crate::{TestServer, anonymous, basic, error_code, header};

/// `skopeo copy --all` of a layout's `tag` to `docker://DEST`, signed in as `creds`.
fn skopeo_push(layout: &std::path::Path, tag: &str, creds: &str, dest: &str) {
    let out = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds,
            &oci_ref(layout, tag),
            &format!("docker://{dest}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The upstream: auth on, `alice` owns a private repository holding a two-platform
/// image (tag 1) and another image (tag 2), pushed with skopeo.
async fn upstream_with_images(dir: &std::path::Path) -> TestServer {
    let upstream = TestServer::start_with(|c| c.open = false).await;
    add_user(&upstream, "alice").await;
    let r = call(
        &upstream,
        Method::PUT,
        "/api/v1/repositories/alice/app/visibility",
        Some(&admin()),
        Some(json!({ "visibility": "private" })),
    )
    .await;
    assert_eq!(r.status(), 200);
    let host = upstream.host.clone();
    let dir = dir.to_owned();
    blocking(move || {
        for (tag, seed, extra) in [("1", "mirror-one", true), ("2", "mirror-two", false)] {
            let layout = dir.join(format!("layout-{tag}"));
            let mut args = vec!["--layers", "300K,120K", "--seed", seed, "--tag", tag];
            if extra {
                args.push("--multiarch");
            }
            mkimage(&layout, &args);
            let creds = format!("alice:{PASSWORD}");
            skopeo_push(&layout, tag, &creds, &format!("{host}/alice/app:{tag}"));
        }
    })
    .await;
    upstream
}

fn mirror_of(upstream: &TestServer, tag_ttl: Duration) -> berth_server::UpstreamConfig {
    let mut config = berth_server::UpstreamConfig::parse(&format!("up={}", upstream.base)).unwrap();
    config.username = Some("alice".into());
    config.password = Some(PASSWORD.into());
    config.tag_ttl = tag_ttl;
    config.timeout = Duration::from_secs(3);
    config
}

async fn mirror_counters(mirror: &TestServer) -> Value {
    let r = call(mirror, Method::GET, "/api/v1/mirrors", Some(&admin()), None).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["mirrors"][0].clone()
}

/// `skopeo copy --all` of `up/alice/app:TAG` from the mirror at `host` into a layout.
async fn skopeo_pull(host: &str, tag: &str, dest: &std::path::Path) -> std::process::Output {
    let (source, dest) = (
        format!("docker://{host}/up/alice/app:{tag}"),
        format!("oci:{}:{tag}", dest.display()),
    );
    blocking(move || {
        std::process::Command::new("skopeo")
            .args(["copy", "--all", "--src-tls-verify=false", &source, &dest])
            .output()
            .unwrap()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_pulls_through_a_mirror_and_it_keeps_serving_when_the_upstream_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = upstream_with_images(tmp.path()).await;
    let config = mirror_of(&upstream, Duration::from_secs(1));
    let mirror = TestServer::start_with(move |c| {
        c.open = false;
        c.upstreams = vec![config];
    })
    .await;

    // Pulled anonymously through the mirror (its prefix is public by default), the
    // image is byte-identical to what was pushed upstream.
    let pulled = tmp.path().join("pulled");
    let out = skopeo_pull(&mirror.host, "1", &pulled).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let source = tmp.path().join("layout-1");
    assert_eq!(
        layout_ref_digest(&pulled, "1"),
        layout_ref_digest(&source, "1")
    );
    let mut names = layout_blob_names(&source);
    names.sort();
    let mut got = layout_blob_names(&pulled);
    got.sort();
    assert_eq!(got, names, "every blob and manifest of both platforms");
    for name in &names {
        let digest = format!("sha256:{name}");
        assert_eq!(
            layout_blob(&pulled, &digest),
            layout_blob(&source, &digest),
            "{name}"
        );
    }
    let first = mirror_counters(&mirror).await;
    assert!(first["misses"].as_u64().unwrap() >= 5, "{first}");

    // Again: served from the mirror's copy.
    let out = skopeo_pull(&mirror.host, "1", &tmp.path().join("again")).await;
    assert!(out.status.success());
    let second = mirror_counters(&mirror).await;
    assert!(
        second["hits"].as_u64().unwrap() > first["hits"].as_u64().unwrap()
            && second["bytes_saved"].as_u64().unwrap() > 400_000,
        "{second}"
    );

    // Mirrored repositories are read-only.
    let r = anonymous()
        .post(mirror.url("/v2/up/alice/app/blobs/uploads/"))
        .header("authorization", admin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "DENIED");

    // The upstream goes away: the cached tag still pulls, marked as possibly stale
    // once its TTL has passed; what was never cached fails at once, naming the upstream.
    drop(upstream);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = anonymous()
        .get(mirror.url("/v2/up/alice/app/manifests/1"))
        .header(
            "accept",
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let warning = header(&r, "warning").to_owned();
    assert!(
        warning.starts_with("110 ") && warning.contains("may be stale"),
        "{warning}"
    );
    let out = skopeo_pull(&mirror.host, "1", &tmp.path().join("offline")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    let r = anonymous()
        .get(mirror.url("/v2/up/alice/app/manifests/2"))
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("upstream up"), "{message}");
    assert!(
        mirror_counters(&mirror).await["upstream_errors"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

/// Ten clients asking for the same uncached blob at once: it is fetched from the
/// upstream once, and every client gets all of it.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_of_an_uncached_blob_fetch_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = upstream_with_images(tmp.path()).await;
    let config = mirror_of(&upstream, Duration::from_secs(300));
    let mirror = TestServer::start_with(move |c| {
        c.open = false;
        c.upstreams = vec![config];
    })
    .await;
    // The image of tag 2: its manifest (cached now) names its layers.
    let r = anonymous()
        .get(mirror.url("/v2/up/alice/app/manifests/2"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let manifest: Value = r.json().await.unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let size = manifest["layers"][0]["size"].as_u64().unwrap();
    let before = mirror_counters(&mirror).await;
    let pulls: Vec<_> = (0..10)
        .map(|_| {
            let url = mirror.url(&format!("/v2/up/alice/app/blobs/{layer}"));
            tokio::spawn(async move {
                let r = anonymous().get(url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap()
            })
        })
        .collect();
    let expected = layout_blob(&tmp.path().join("layout-2"), &layer);
    for pull in pulls {
        let bytes = pull.await.unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert_eq!(bytes.as_ref(), expected.as_slice());
    }
    let after = mirror_counters(&mirror).await;
    let misses = after["misses"].as_u64().unwrap() - before["misses"].as_u64().unwrap();
    let hits = after["hits"].as_u64().unwrap() - before["hits"].as_u64().unwrap();
    assert_eq!((misses, hits), (1, 9), "{after}");
    drop(upstream);
}

/// A tag moved upstream is served as it was until its TTL has passed, then as moved.
#[tokio::test(flavor = "multi_thread")]
async fn a_moved_tag_is_followed_after_its_ttl() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = upstream_with_images(tmp.path()).await;
    let config = mirror_of(&upstream, Duration::from_secs(2));
    let mirror = TestServer::start_with(move |c| {
        c.open = false;
        c.upstreams = vec![config];
    })
    .await;
    let accept =
        "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";
    let digest_via_mirror = || async {
        let r = anonymous()
            .get(mirror.url("/v2/up/alice/app/manifests/2"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        header(&r, "docker-content-digest").to_owned()
    };
    let before = digest_via_mirror().await;
    // Upstream, tag 2 now names the image of tag 1.
    let alice = basic("alice", PASSWORD);
    let r = anonymous()
        .get(upstream.url("/v2/alice/app/manifests/1"))
        .header("authorization", &alice)
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    let media_type = header(&r, "content-type").to_owned();
    let moved_to = header(&r, "docker-content-digest").to_owned();
    let body = r.bytes().await.unwrap();
    let r = anonymous()
        .put(upstream.url("/v2/alice/app/manifests/2"))
        .header("authorization", &alice)
        .header("content-type", media_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_ne!(before, moved_to);
    assert_eq!(digest_via_mirror().await, before, "fresh for its TTL");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        digest_via_mirror().await,
        moved_to,
        "checked again after it"
    );
}

/// Registry-mirror mode: the Docker engine with `registry-mirrors` pointing at berth
/// pulls a Docker-Hub-style name (`alpine:3`) through it from the default upstream;
/// containerd's `?ns=` is echoed as `OCI-Namespace`.
#[tokio::test(flavor = "multi_thread")]
async fn the_docker_engine_pulls_docker_hub_names_through_registry_mirror_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestServer::start_with(|c| c.open = false).await;
    let host = upstream.host.clone();
    let dir = tmp.path().to_owned();
    blocking(move || {
        let layout = dir.join("alpine");
        mkimage(
            &layout,
            &["--layers", "200K", "--seed", "mirror-mode", "--tag", "3"],
        );
        let creds = format!("admin:{}", crate::ADMIN_PASSWORD);
        skopeo_push(&layout, "3", &creds, &format!("{host}/library/alpine:3"));
    })
    .await;
    let mut config =
        berth_server::UpstreamConfig::parse(&format!("hub={}", upstream.base)).unwrap();
    config.timeout = Duration::from_secs(3);
    let mirror = TestServer::start_with(move |c| {
        c.open = false;
        c.upstreams = vec![config];
        c.mirror_default = Some("hub".into());
    })
    .await;

    // containerd asks with ?ns=docker.io (the host it mirrors); the upstream here is no
    // Docker Hub, so the default one serves it.
    let r = anonymous()
        .get(mirror.url("/v2/library/alpine/manifests/3?ns=docker.io"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "oci-namespace"), "docker.io");
    let digest = header(&r, "docker-content-digest").to_owned();
    // Cached under the upstream's prefix.
    let r = anonymous()
        .get(mirror.url(&format!("/v2/hub/library/alpine/manifests/{digest}")))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let port = mirror.port;
    let pulled = blocking(move || {
        let docker = crate::clients::DockerDaemon::shared();
        docker.set_registry_mirrors(&[format!("http://127.0.0.1:{port}")]);
        let out = docker.docker_ok(&["pull", "alpine:3"]);
        let id = docker.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "alpine:3"]);
        docker.docker_ok(&["image", "rm", "alpine:3"]);
        docker.set_registry_mirrors(&[]);
        (out, id)
    })
    .await;
    assert!(
        pulled.0.contains("Downloaded newer image for alpine:3"),
        "{}",
        pulled.0
    );
    assert!(pulled.1.trim().starts_with("sha256:"), "{}", pulled.1);
    let counters = mirror_counters(&mirror).await;
    assert!(counters["misses"].as_u64().unwrap() >= 2, "{counters}");

    // A repository that exists here is served from here, not from the upstream.
    let r = anonymous()
        .get(mirror.url("/v2/gallery/none/manifests/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "not upstream either");
}

/// `berth mirror sync` fills the cache ahead of time, from arguments and a file, with
/// `--platform` taking one platform of an index: after the upstream is gone, what was
/// synced pulls, and the platform left out does not.
#[tokio::test(flavor = "multi_thread")]
async fn mirror_sync_fills_the_cache_for_offline_use() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = upstream_with_images(tmp.path()).await;
    let config = mirror_of(&upstream, Duration::from_secs(300));
    let mirror = TestServer::start_with(move |c| {
        c.open = false;
        c.upstreams = vec![config];
    })
    .await;
    let list = tmp.path().join("images.txt");
    std::fs::write(&list, "# to keep offline\nup/alice/app:2\n").unwrap();
    let base = mirror.base.clone();
    let runs = blocking(move || {
        let sync = |args: &[&str]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
                .args(["mirror", "sync", "--registry", &base])
                .args(args)
                .output()
                .unwrap()
        };
        (
            sync(&[
                "up/alice/app:1",
                "--platform",
                "linux/arm64/v8",
                "--from-file",
                list.to_str().unwrap(),
            ]),
            sync(&["up/alice/app:no-such-tag"]),
            sync(&[]),
        )
    })
    .await;
    let (ok, missing, usage) = runs;
    let said = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(
        ok.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(said.contains("cached up/alice/app:1 (1 image)"), "{said}");
    assert!(said.contains("cached up/alice/app:2 (1 image)"), "{said}");
    assert_eq!(
        missing.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&missing.stdout)
    );
    assert_eq!(usage.status.code(), Some(2));

    drop(upstream);
    let get = |path: String, accept: &'static str| {
        let url = mirror.url(&path);
        async move {
            anonymous()
                .get(url)
                .header("accept", accept)
                .send()
                .await
                .unwrap()
        }
    };
    let index_type = "application/vnd.oci.image.index.v1+json";
    let image_type = "application/vnd.oci.image.manifest.v1+json";
    let index: Value = get("/v2/up/alice/app/manifests/1".into(), index_type)
        .await
        .json()
        .await
        .unwrap();
    let child = |arch: &str| {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == arch)
            .map(|m| m["digest"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let arm = get(
        format!("/v2/up/alice/app/manifests/{}", child("arm64")),
        image_type,
    )
    .await;
    assert_eq!(arm.status(), 200);
    let arm: Value = arm.json().await.unwrap();
    let r = get(
        format!("/v2/up/alice/app/manifests/{}", child("amd64")),
        image_type,
    )
    .await;
    assert_eq!(r.status(), 503, "left out, and the upstream is gone");
    let two: Value = get("/v2/up/alice/app/manifests/2".into(), image_type)
        .await
        .json()
        .await
        .unwrap();
    for image in [&arm, &two] {
        let layers = image["layers"].as_array().unwrap().iter();
        for d in layers.chain([&image["config"]]) {
            let r = get(
                format!("/v2/up/alice/app/blobs/{}", d["digest"].as_str().unwrap()),
                "*/*",
            )
            .await;
            assert_eq!(r.status(), 200);
            assert_eq!(
                r.bytes().await.unwrap().len() as u64,
                d["size"].as_u64().unwrap()
            );
        }
    }
}

/// A platform left out of a synced index (the cache holds a sparse index) is fetched
/// from the upstream when a client asks for it, and is then kept for offline use.
#[tokio::test(flavor = "multi_thread")]
async fn a_platform_left_out_of_a_synced_index_is_fetched_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = upstream_with_images(tmp.path()).await;
    let config = mirror_of(&upstream, Duration::from_secs(300));
    let mirror = TestServer::start_with(move |c| {
        c.open = false;
        c.upstreams = vec![config];
    })
    .await;
    let base = mirror.base.clone();
    let synced = blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["mirror", "sync", "--registry", &base, "up/alice/app:1"])
            .args(["--platform", "linux/arm64/v8"])
            .output()
            .unwrap()
    })
    .await;
    assert!(synced.status.success(), "{synced:?}");
    let amd64 = json_child(&layout_index(&tmp.path().join("layout-1"), "1"), "amd64");
    let pull_amd64 = |dest: std::path::PathBuf| {
        let source = format!("docker://{}/up/alice/app:1", mirror.host);
        blocking(move || {
            std::process::Command::new("skopeo")
                .args(["copy", "--override-arch", "amd64", "--src-tls-verify=false"])
                .arg(&source)
                .arg(oci_ref(&dest, "1"))
                .output()
                .unwrap()
        })
    };
    let before = mirror_counters(&mirror).await;
    let first = tmp.path().join("first");
    let out = pull_amd64(first.clone()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(layout_ref_digest(&first, "1"), amd64);
    let after = mirror_counters(&mirror).await;
    assert!(
        after["misses"].as_u64() > before["misses"].as_u64(),
        "fetched from the upstream: {before} then {after}"
    );

    drop(upstream);
    let second = tmp.path().join("second");
    let out = pull_amd64(second.clone()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(layout_ref_digest(&second, "1"), amd64);
    assert_eq!(layout_blob_names(&first), layout_blob_names(&second));
}

/// The index a layout's `tag` names.
fn layout_index(layout: &std::path::Path, tag: &str) -> Value {
    serde_json::from_slice(&layout_blob(layout, &layout_ref_digest(layout, tag))).unwrap()
}

/// The digest of the child of `index` for `arch`.
fn json_child(index: &Value, arch: &str) -> String {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .and_then(|m| m["digest"].as_str())
        .unwrap()
        .to_owned()
}

/// Under a small cap, the cache keeps the most recently pulled images, keeps pinned ones
/// whatever their age, and never takes anything from a local image.
#[tokio::test(flavor = "multi_thread")]
async fn a_capped_cache_keeps_recent_and_pinned_images_and_local_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = upstream_with_images(tmp.path()).await;
    let mut config = mirror_of(&upstream, Duration::from_secs(300));
    // One image (about 420 kB) fits, two do not.
    config.max_size = Some(700_000);
    let mirror = TestServer::start_with(move |c| {
        c.open = false;
        c.upstreams = vec![config];
    })
    .await;
    // A local image with the same layers as the upstream's tag 2.
    let (host, layout) = (mirror.host.clone(), tmp.path().join("layout-2"));
    blocking(move || {
        let creds = format!("admin:{}", crate::ADMIN_PASSWORD);
        skopeo_push(&layout, "2", &creds, &format!("{host}/local/app:1"));
    })
    .await;
    let base = mirror.base.clone();
    let sync = move |args: Vec<&'static str>| {
        let base = base.clone();
        blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
                .args(["mirror", "sync", "--registry", &base])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        })
    };
    let cached_tags = || async {
        let r = anonymous()
            .get(mirror.url("/v2/up/alice/app/tags/list"))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        body["tags"].as_array().cloned().unwrap_or_default()
    };
    let settled = || async {
        for _ in 0..100 {
            let c = mirror_counters(&mirror).await;
            if c["bytes"].as_u64().unwrap() <= 700_000 {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the cache stayed over its cap: {}",
            mirror_counters(&mirror).await
        );
    };
    let admin = admin();
    let pin = |method: Method| {
        let url = if method == Method::DELETE {
            "/api/v1/mirrors/pins?reference=up/alice/app:1"
        } else {
            "/api/v1/mirrors/pins"
        };
        let body = (method == Method::PUT).then(|| json!({ "reference": "up/alice/app:1" }));
        call(&mirror, method, url, Some(&admin), body)
    };

    // Tag 1 (one platform) pinned, then tag 2: over the cap, and the pin holds, so the
    // newer tag 2 is what goes.
    sync(vec!["up/alice/app:1", "--platform", "linux/arm64/v8"]).await;
    assert_eq!(pin(Method::PUT).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sync(vec!["up/alice/app:2"]).await;
    let after = settled().await;
    assert_eq!(after["max_size"], 700_000);
    assert_eq!(cached_tags().await, [json!("1")], "{after}");

    // Unpinned, tag 1 is the least recently pulled once tag 2 comes again.
    assert_eq!(pin(Method::DELETE).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sync(vec!["up/alice/app:2"]).await;
    settled().await;
    assert!(cached_tags().await.contains(&json!("2")));

    // With the upstream gone: tag 2 is here, tag 1's platform is not, and the local
    // image has every byte (its layers were tag 2's, cached and evicted meanwhile).
    drop(upstream);
    let get = |path: String| {
        let url = mirror.url(&path);
        async move {
            anonymous()
                .get(url)
                .header("accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        get("/v2/up/alice/app/manifests/2".into()).await.status(),
        200
    );
    // Tag 1's platform went first (its index, a few hundred bytes, may stay: the
    // platform would be fetched again when asked for).
    let index = get("/v2/up/alice/app/manifests/1".into()).await;
    if index.status() == 200 {
        let index: Value = index.json().await.unwrap();
        let arm = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == "arm64")
            .map(|m| m["digest"].as_str().unwrap().to_owned())
            .unwrap();
        let r = get(format!("/v2/up/alice/app/manifests/{arm}")).await;
        assert_eq!(r.status(), 503, "evicted, and the upstream is gone");
    } else {
        assert_eq!(index.status(), 503);
    }
    let local = get("/v2/local/app/manifests/1".into()).await;
    assert_eq!(local.status(), 200);
    let local: Value = local.json().await.unwrap();
    for layer in local["layers"].as_array().unwrap() {
        let r = get(format!(
            "/v2/local/app/blobs/{}",
            layer["digest"].as_str().unwrap()
        ))
        .await;
        assert_eq!(r.status(), 200);
    }
}
