//! Tag policies end to end: floating semver tags and immutable tags with the Docker
//! engine, races of releases over HTTP, `/api/v1/policies`, the tag history and the dry
//! run, and the `berth policy` / `berth tag` commands.

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts::{PASSWORD, add_user, admin, call};
use crate::clients::*;
use crate::{TestServer, basic, http, push_image};

/// Runs `berth ARGS --data-dir DATA` (the commands act on the store directly); returns
/// (success, stdout, stderr).
fn berth_cli(data: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("BERTH_DATABASE")
        .env_remove("BERTH_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `skopeo copy [--all] oci:LAYOUT:TAG docker://HOST/TARGET`: `Err` holds what skopeo
/// said when the registry refused.
async fn skopeo_push(
    layout: &std::path::Path,
    tag: &str,
    host: &str,
    target: &str,
    all: bool,
) -> Result<(), String> {
    let from = oci_ref(layout, tag);
    let to = format!("docker://{host}/{target}");
    blocking(move || {
        let mut args = vec!["copy", "--dest-tls-verify=false"];
        if all {
            args.push("--all");
        }
        args.extend([from.as_str(), to.as_str()]);
        let out = Skopeo::new().run(&args);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    })
    .await
}

/// Makes REPO (the tags matching `tags`, or every tag) golden, as the administrator.
async fn add_golden(server: &TestServer, repository: &str, tags: Option<&str>) {
    let r = call(
        server,
        Method::POST,
        "/api/v1/golden",
        Some(&admin()),
        Some(json!({ "repository": repository, "tags": tags })),
    )
    .await;
    assert_eq!(r.status(), 201);
}

/// Sets `key` on `scope` as the administrator, through `/api/v1`.
async fn set_policy(server: &TestServer, scope: &str, key: &str, value: &str) {
    let r = call(
        server,
        Method::PUT,
        &format!("/api/v1/policies/{scope}/{key}"),
        Some(&admin()),
        Some(json!({ "value": value })),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// The digest a tag resolves to (`None`: no such tag).
async fn resolve(server: &TestServer, repo: &str, tag: &str) -> Option<String> {
    let r = http()
        .head(server.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .await
        .unwrap();
    match r.status().as_u16() {
        200 => Some(
            r.headers()["docker-content-digest"]
                .to_str()
                .unwrap()
                .to_owned(),
        ),
        404 => None,
        other => panic!("HEAD {repo}:{tag}: {other}"),
    }
}

/// The sequence with the Docker engine: with `floating-tags semver` on the
/// namespace, push 2.1.106, 2.2.31, 2.1.107; after each, `latest`, `2`, `2.1`, `2.2`
/// resolve as they should, and `docker pull …:2` gets the right image. Then with
/// `immutable-tags *.*.*`, re-pushing 2.1.106 with other content fails in the Docker
/// CLI with the message, the same image re-pushes fine, and deleting the tag is refused.
#[tokio::test(flavor = "multi_thread")]
async fn docker_floats_follow_releases_and_immutable_tags_hold() {
    let server = TestServer::start_with(|c| c.open = true).await;
    set_policy(&server, "gallery", "floating-tags", "semver").await;
    let port = server.port;
    let tmp = tempfile::tempdir().unwrap();
    let versions = ["2.1.106", "2.2.31", "2.1.107"];
    // One image per version (their own seeds: different configs and layers).
    let mut images = Vec::new();
    for v in versions {
        let name = format!("localhost:{port}/gallery/ui:{v}");
        let tar = tmp.path().join(format!("{v}.tar"));
        let summary = mkimage(
            &tmp.path().join(v),
            &[
                "--layers",
                "300K,200K",
                "--tag",
                v,
                "--seed",
                &format!("ui-{v}"),
                "--docker-archive",
                &tar.to_string_lossy(),
                "--docker-name",
                &name,
            ],
        );
        let config = json_str(&summary[0]["images"][0], "config").to_owned();
        images.push((name, tar, config));
    }
    let mut pushed = Vec::new();
    // After each push: which version each float should resolve to (None: absent).
    let expected: [[Option<usize>; 4]; 3] = [
        // latest, 2, 2.1, 2.2
        [Some(0), Some(0), Some(0), None],
        [Some(1), Some(1), Some(0), Some(1)],
        [Some(1), Some(1), Some(2), Some(1)],
    ];
    for (i, (name, tar, _)) in images.iter().enumerate() {
        let (name, tar) = (name.clone(), tar.clone());
        let push = blocking(move || {
            let docker = DockerDaemon::shared();
            docker.docker_ok(&["load", "-i", &tar.to_string_lossy()]);
            docker.docker_ok(&["image", "push", &name])
        })
        .await;
        pushed.push(pushed_digest(&push, versions[i]));
        for (float, want) in ["latest", "2", "2.1", "2.2"].iter().zip(expected[i]) {
            assert_eq!(
                resolve(&server, "gallery/ui", float).await,
                want.map(|w| pushed[w].clone()),
                "after pushing {}: {float}",
                versions[i]
            );
        }
    }
    // docker pull of the float gets 2.2.31's image.
    let (two, config_2231) = (
        format!("localhost:{port}/gallery/ui:2"),
        images[1].2.clone(),
    );
    let want_digest = pushed[1].clone();
    blocking(move || {
        let docker = DockerDaemon::shared();
        let pull = docker.docker_ok(&["pull", &two]);
        assert!(pull.contains(&format!("Digest: {want_digest}")), "{pull}");
        let id = docker.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &two]);
        assert_eq!(id.trim(), config_2231);
    })
    .await;

    // Immutable releases.
    set_policy(&server, "gallery/ui", "immutable-tags", "*.*.*").await;
    let (first, other_config, first_config) = (
        images[0].0.clone(),
        images[1].2.clone(),
        images[0].2.clone(),
    );
    blocking(move || {
        let docker = DockerDaemon::shared();
        docker.docker_ok(&["tag", &other_config, &first]);
        let out = docker.docker(&["image", "push", &first]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "re-push with other content succeeded"
        );
        assert!(
            stderr.contains("tag gallery/ui:2.1.106 is immutable"),
            "docker said: {stderr}"
        );
        // The same image again: an idempotent retry.
        docker.docker_ok(&["tag", &first_config, &first]);
        docker.docker_ok(&["image", "push", &first]);
    })
    .await;
    assert_eq!(
        resolve(&server, "gallery/ui", "2.1.106").await,
        Some(pushed[0].clone())
    );
    for reference in ["2.1.106", pushed[0].as_str()] {
        let r = http()
            .delete(server.url(&format!("/v2/gallery/ui/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "DELETE {reference}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "DENIED");
        assert_eq!(
            body["errors"][0]["message"],
            "tag gallery/ui:2.1.106 is immutable"
        );
    }
    // Floats are never immutable: the float 2.1 can be deleted.
    let r = http()
        .delete(server.url("/v2/gallery/ui/manifests/2.1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // The history has every move, newest first, with who did it.
    let r = call(
        &server,
        Method::GET,
        "/api/v1/tag-history/gallery/ui?tag=2.1",
        None,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let history: Value = r.json().await.unwrap();
    let moves: Vec<(Option<&str>, Option<&str>, &str)> = history["moves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["from"].as_str(),
                m["to"].as_str(),
                m["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            (Some(pushed[2].as_str()), None, "delete"),
            (Some(pushed[0].as_str()), Some(pushed[2].as_str()), "float"),
            (None, Some(pushed[0].as_str()), "float"),
        ]
    );
    assert!(
        history["moves"][0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("anonymous@")
    );
}

/// Releases pushed concurrently over HTTP: the floats end at the highest of each line,
/// whatever order the pushes commit in.
#[tokio::test(flavor = "multi_thread")]
async fn racing_releases_leave_floats_at_the_highest() {
    let server = TestServer::start().await;
    set_policy(&server, "race", "floating-tags", "semver").await;
    let versions = [
        "3.0.1", "3.0.9", "3.1.0", "3.1.4", "3.0.10", "2.9.9", "3.1.2", "3.0.2",
    ];
    let mut pushes = Vec::new();
    for v in versions {
        let base = server.base.clone();
        pushes.push(tokio::spawn(async move {
            push_image(&base, "race/app", v, &format!("race {v}"))
                .await
                .0
        }));
    }
    let mut digests = Vec::new();
    for p in pushes {
        digests.push(p.await.unwrap());
    }
    let of = |v: &str| Some(digests[versions.iter().position(|x| *x == v).unwrap()].clone());
    for (float, want) in [
        ("latest", "3.1.4"),
        ("3", "3.1.4"),
        ("3.1", "3.1.4"),
        ("3.0", "3.0.10"),
        ("2", "2.9.9"),
        ("2.9", "2.9.9"),
    ] {
        assert_eq!(
            resolve(&server, "race/app", float).await,
            of(want),
            "{float}"
        );
    }
}

/// `/api/v1/policies`: who may set what, values checked, a repository's setting over
/// its namespace's, and the dry run of a push.
#[tokio::test(flavor = "multi_thread")]
async fn policies_over_the_api() {
    let server = TestServer::start_with(|c| c.open = false).await;
    add_user(&server, "alice").await;
    add_user(&server, "mallory").await;
    let alice = basic("alice", PASSWORD);
    let mallory = basic("mallory", PASSWORD);
    let put = |who: String, path: &'static str, value: &'static str| {
        let server = &server;
        async move {
            call(
                server,
                Method::PUT,
                path,
                Some(&who),
                Some(json!({ "value": value })),
            )
            .await
        }
    };
    // The owner of a namespace sets policies on it; others may not.
    let r = put(
        alice.clone(),
        "/api/v1/policies/alice/floating-tags",
        "semver",
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = put(
        mallory.clone(),
        "/api/v1/policies/alice/floating-tags",
        "off",
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = put(
        mallory.clone(),
        "/api/v1/policies/alice/app/floating-tags",
        "off",
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = anonymous_put(&server, "/api/v1/policies/alice/floating-tags").await;
    assert_eq!(r.status(), 401);
    // An administrator may set one on a namespace no one owns yet.
    let r = put(
        admin(),
        "/api/v1/policies/company/immutable-tags",
        "release-*",
    )
    .await;
    assert_eq!(r.status(), 200);
    // Values and keys are checked.
    for (path, value) in [
        ("/api/v1/policies/alice/floating-tags", "calver"),
        ("/api/v1/policies/alice/immutable-tags", "a/b"),
        ("/api/v1/policies/alice/require-golden-base", "always"),
    ] {
        let r = put(alice.clone(), path, value).await;
        assert_eq!(r.status(), 400, "{path} {value}");
    }
    let r = put(alice.clone(), "/api/v1/policies/alice/colour", "red").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("unknown policy"));

    // A repository's setting wins; `inherit` (or DELETE) removes it.
    let r = put(
        alice.clone(),
        "/api/v1/policies/alice/app/floating-tags",
        "off",
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["effective"]["floating-tags"], "off");
    let r = put(
        alice.clone(),
        "/api/v1/policies/alice/app/immutable-tags",
        "*.*.*",
    )
    .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["effective"]["immutable-tags"], "*.*.*");
    assert_eq!(body["settings"].as_array().unwrap().len(), 3, "{body}");
    let r = put(
        alice.clone(),
        "/api/v1/policies/alice/app/floating-tags",
        "inherit",
    )
    .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["effective"]["floating-tags"], "semver");
    assert_eq!(body["settings"][0]["updated_by"], "alice");

    // The dry run: what a push of 1.2.3 would move, before and after one.
    let base = server.base.clone();
    let plan = |tag: &'static str| {
        let server = &server;
        let alice = alice.clone();
        async move {
            let r = call(
                server,
                Method::GET,
                &format!("/api/v1/tag-plan/alice/app?tag={tag}"),
                Some(&alice),
                None,
            )
            .await;
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    push_as(&base, &alice, "alice/app", "1.2.3").await;
    let p = plan("1.3.0").await;
    let tags: Vec<&str> = p["moves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["1.3.0", "1.3", "1", "latest"]);
    assert!(
        p["moves"][2]["current"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let p = plan("1.2.0").await;
    assert_eq!(
        p["moves"].as_array().unwrap().len(),
        1,
        "1.2.3 holds every float: {p}"
    );
    let p = plan("1.2.3").await;
    assert_eq!(p["moves"][0]["immutable"], true);
    // A private repository's policies and history are not found by others.
    let r = call(
        &server,
        Method::GET,
        "/api/v1/policies/alice/app",
        Some(&mallory),
        None,
    )
    .await;
    assert_eq!(r.status(), 200, "public by default");
    let r = call(
        &server,
        Method::GET,
        "/api/v1/tag-history/alice/none",
        Some(&mallory),
        None,
    )
    .await;
    assert_eq!(r.status(), 404);
}

async fn anonymous_put(server: &TestServer, path: &str) -> reqwest::Response {
    call(
        server,
        Method::PUT,
        path,
        None,
        Some(json!({ "value": "off" })),
    )
    .await
}

/// Pushes a small image as `who` (Basic credentials straight to `/v2/`).
async fn push_as(base: &str, who: &str, repo: &str, tag: &str) -> String {
    let client = reqwest::Client::new();
    let config = format!("{{\"tag\":\"{tag}\"}}").into_bytes();
    for blob in [&config] {
        let digest = crate::sha256(blob);
        let r = client
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
            .header("authorization", who)
            .header("content-type", "application/octet-stream")
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let manifest = crate::image_manifest(&config, &[]);
    let r = client
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("authorization", who)
        .header("content-type", crate::OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    crate::sha256(&manifest)
}

/// `berth policy set|show` and `berth tag history|plan` against a data dir, beside no
/// server: the same store, as an administrator.
#[test]
fn policy_and_tag_commands() {
    let dir = tempfile::tempdir().unwrap();
    let berth = |args: &[&str]| berth_cli(dir.path(), args);
    let (ok, out, err) = berth(&["policy", "set", "gallery", "floating-tags", "semver"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "gallery: floating-tags semver");
    let (ok, _, err) = berth(&[
        "policy",
        "set",
        "gallery/ui",
        "immutable-tags",
        "*.*.*, release-*",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = berth(&["policy", "set", "gallery/ui", "floating-tags", "sometimes"]);
    assert!(!ok);
    assert!(err.contains("use semver, off or inherit"), "{err}");
    let (ok, _, err) = berth(&["policy", "set", "Gallery", "floating-tags", "semver"]);
    assert!(!ok && err.contains("scope"), "{err}");
    let (ok, out, err) = berth(&["policy", "show", "gallery/ui"]);
    assert!(ok, "{err}");
    let row = |key: &str| out.lines().find(|l| l.starts_with(key)).unwrap().to_owned();
    assert!(row("floating-tags").contains("semver") && row("floating-tags").contains("gallery by"));
    assert!(row("immutable-tags").contains("*.*.*,release-*"));
    assert!(row("require-golden-base").contains("(default)"));
    let (ok, out, _) = berth(&["policy", "show", "gallery"]);
    assert!(
        ok && out.contains("floating-tags") && !out.contains("immutable-tags"),
        "{out}"
    );
    let (ok, out, err) = berth(&["tag", "plan", "gallery/ui:1.0.0"]);
    assert!(ok, "{err}");
    for tag in ["1.0.0 ", "1.0 ", "1 ", "latest "] {
        assert!(out.lines().any(|l| l.starts_with(tag)), "{tag} in {out}");
    }
    let (ok, out, err) = berth(&["tag", "history", "gallery/ui:1.0"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "only the header: {out}");
    let (ok, _, err) = berth(&["tag", "plan", "gallery/ui"]);
    assert!(!ok && err.contains("REPO:TAG"), "{err}");
}

/// `require-golden-base`: with the `oci-client`-free path of real clients (skopeo) and
/// images made by mkimage.py, an image built on a golden base is accepted under
/// `enforce`, one on another base is refused naming the closest golden image, `warn`
/// accepts and records; declared bases (annotations) must be golden too.
#[tokio::test(flavor = "multi_thread")]
async fn golden_bases_are_enforced_warned_and_declared() {
    let server = TestServer::start_with(|c| c.open = true).await;
    let host = server.host.clone();
    let tmp = tempfile::tempdir().unwrap();
    let (base, app, other) = (
        tmp.path().join("base"),
        tmp.path().join("app"),
        tmp.path().join("other"),
    );
    // The golden base (2 layers), an app on it (both layers + 1), and an image that
    // shares only the base's first layer.
    for (out, shared) in [(&app, "2"), (&other, "1")] {
        mkimage(
            &base,
            &[
                "--layers",
                "300K,200K",
                "--tag",
                "2.1",
                "--seed",
                "golden",
                "--derived-out",
                &out.to_string_lossy(),
                "--derived-tag",
                "1.0",
                "--shared",
                shared,
                "--derived-layers",
                "100K",
            ],
        );
    }
    let push = |layout: &std::path::Path, target: &str| {
        let tag = if layout.ends_with("base") {
            "2.1"
        } else {
            "1.0"
        };
        let (layout, target, host) = (layout.to_path_buf(), target.to_owned(), host.clone());
        async move { skopeo_push(&layout, tag, &host, &target, false).await }
    };
    push(&base, "gallery/base:2.1").await.unwrap();
    add_golden(&server, "gallery/base", Some("2.*")).await;
    set_policy(&server, "apps", "require-golden-base", "enforce").await;

    push(&app, "apps/app:1.0")
        .await
        .expect("built on the golden base");
    let refused = push(&other, "apps/other:1.0").await.unwrap_err();
    assert!(
        refused.contains(
            "apps/other:1.0 is not built on a golden image; the closest is gallery/base:2.1 \
             (the first 1 of its 2 layers)"
        ),
        "skopeo said: {refused}"
    );
    assert_eq!(
        resolve(&server, "apps/other", "1.0").await,
        None,
        "nothing stored"
    );

    // warn: accepted, and the warning recorded.
    set_policy(&server, "apps/other", "require-golden-base", "warn").await;
    push(&other, "apps/other:1.0").await.expect("warn accepts");
    let r = call(
        &server,
        Method::GET,
        "/api/v1/push-warnings/apps/other",
        None,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let warnings: Value = r.json().await.unwrap();
    assert_eq!(
        warnings["warnings"].as_array().unwrap().len(),
        1,
        "{warnings}"
    );
    assert!(
        warnings["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("the closest is gallery/base:2.1"),
        "{warnings}"
    );
    let r = call(
        &server,
        Method::GET,
        "/api/v1/push-warnings/apps/app",
        None,
        None,
    )
    .await;
    let none: Value = r.json().await.unwrap();
    assert!(none["warnings"].as_array().unwrap().is_empty());

    // Declared bases: the app's manifest with annotations naming a base.
    let manifest: Value = http()
        .get(server.url("/v2/apps/app/manifests/1.0"))
        .header("accept", crate::OCI_MANIFEST)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let base_digest = resolve(&server, "gallery/base", "2.1").await.unwrap();
    for (name, digest, accepted) in [
        (
            format!("{host}/gallery/base:2.1"),
            base_digest.clone(),
            true,
        ),
        ("gallery/base:2.1".to_owned(), base_digest.clone(), true),
        (
            "docker.io/library/debian:12".to_owned(),
            base_digest.clone(),
            false,
        ),
        (
            "gallery/base:2.1".to_owned(),
            crate::sha256(b"another manifest"),
            false,
        ),
    ] {
        let mut declared = manifest.clone();
        declared["annotations"] = json!({
            "org.opencontainers.image.base.name": name,
            "org.opencontainers.image.base.digest": digest,
        });
        let r = crate::put_manifest(
            &server.base,
            "apps/app",
            "declared",
            &serde_json::to_vec(&declared).unwrap(),
        )
        .await;
        if accepted {
            assert_eq!(r.status(), 201, "{name}@{digest}");
        } else {
            assert_eq!(r.status(), 403, "{name}@{digest}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["errors"][0]["code"], "DENIED");
            let message = body["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains("declares its base"), "{message}");
        }
    }

    // A golden image's own new tags pass, whatever their layers (and become golden).
    set_policy(&server, "gallery", "require-golden-base", "enforce").await;
    push(&other, "gallery/base:2.2")
        .await
        .expect("a golden repository's own tag");
    push(&other, "apps/third:1.0")
        .await
        .expect("built on gallery/base:2.2 now");

    // The list: for anyone who may pull the repository.
    let r = call(&server, Method::GET, "/api/v1/golden", None, None).await;
    let listed: Value = r.json().await.unwrap();
    assert_eq!(listed["golden"][0]["repository"], "gallery/base");
    assert_eq!(listed["golden"][0]["tags"], "2.*");
    let r = call(
        &server,
        Method::DELETE,
        "/api/v1/golden/gallery/base?tags=2.*",
        None,
        None,
    )
    .await;
    assert_eq!(r.status(), 401);
    let r = call(
        &server,
        Method::DELETE,
        "/api/v1/golden/gallery/base?tags=2.*",
        Some(&admin()),
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
}

/// `berth golden add|ls|rm`.
#[test]
fn golden_commands() {
    let dir = tempfile::tempdir().unwrap();
    let berth = |args: &[&str]| berth_cli(dir.path(), args);
    assert!(berth(&["golden", "add", "company/base"]).0);
    let (ok, out, _) = berth(&["golden", "add", "company/jdk:17*"]);
    assert!(ok && out.contains("golden: company/jdk:17*"), "{out}");
    let (ok, out, _) = berth(&["golden", "add", "company/jdk:17*"]);
    assert!(ok && out.contains("already"), "{out}");
    let (ok, _, err) = berth(&["golden", "add", "company/jdk:bad/glob"]);
    assert!(!ok, "{err}");
    let (ok, out, _) = berth(&["golden", "ls"]);
    assert!(ok);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0].starts_with("company/base") && rows[0].contains(" * "));
    assert!(rows[1].starts_with("company/jdk") && rows[1].contains("17*"));
    assert!(berth(&["golden", "rm", "company/jdk:17*"]).0);
    let (ok, _, err) = berth(&["golden", "rm", "company/jdk:17*"]);
    assert!(!ok && err.contains("not a golden image entry"), "{err}");
}

/// `berth lint` against a running registry: golden images from `/api/v1/golden`, exit
/// statuses 0/1/2, the pinned reference suggested from the registry, JSON and SARIF.
#[tokio::test(flavor = "multi_thread")]
async fn lint_checks_dockerfiles_against_the_registrys_golden_images() {
    let server = TestServer::start_with(|c| c.open = true).await;
    let (base_digest, _) = push_image(&server.base, "company/base", "2.1", "lint base").await;
    add_golden(&server, "company/base", Some("2.*")).await;
    let host = server.host.clone();
    let registry = format!("http://{host}");
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let good = write(
        "good.Dockerfile",
        format!(
            "# syntax=docker/dockerfile:1\nARG BASE={host}/company/base:2.1\nFROM $BASE AS build\nRUN make\nFROM build\n"
        ),
    );
    let bad = write(
        "bad.Dockerfile",
        format!(
            "FROM {host}/company/base:2.1 AS build\nFROM debian:12\nCOPY --from=build /app /app\n"
        ),
    );
    let broken = write(
        "broken.Dockerfile",
        "FROM alpine:3\nRUN <<EOF\necho never ends\n".into(),
    );
    let lint = move |args: Vec<String>| {
        blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
                .arg("lint")
                .args(&args)
                .env("LINT_TOKEN", "berth_pat_not_needed_here")
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v = vec!["--registry".to_owned(), registry.clone()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let (code, out, err) = lint(args(&[&good])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, _) = lint(args(&[&good, &bad])).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("{bad}:2 BL001")) && out.contains("docker.io/library/debian:12"),
        "{out}"
    );
    assert!(!out.contains("good.Dockerfile"), "{out}");
    // Allowed explicitly: clean.
    let (code, out, _) = lint(args(&["--allow", "debian:12", &bad])).await;
    assert_eq!(code, Some(0), "{out}");
    // Pinning: the suggestion is the reference resolved here.
    let (code, out, _) = lint(args(&["--require-digest", &good])).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("BL004"), "{out}");
    assert!(
        out.contains(&format!("pin it: {host}/company/base:2.1@{base_digest}")),
        "{out}"
    );
    // JSON: rule, file, line (an integer), message.
    let (code, out, _) = lint(args(&["--format", "json", &bad])).await;
    assert_eq!(code, Some(1));
    let json: Value = serde_json::from_str(&out).unwrap();
    let finding = &json["findings"][0];
    assert_eq!(finding["rule"], "BL001");
    assert_eq!(finding["file"], bad.as_str());
    assert_eq!(finding["line"], 2);
    assert!(finding["message"].as_str().unwrap().contains("debian"));
    // SARIF 2.1.0 (the schema check is berth-lint's test).
    let (_, out, _) = lint(args(&["--format", "sarif", &bad])).await;
    let sarif: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(sarif["runs"][0]["results"][0]["ruleId"], "BL001");
    // Exit 2: a parse error, a missing file, a bad flag, a token variable not set,
    // a registry that does not answer.
    let (code, out, _) = lint(args(&[&broken])).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("BL000"), "{out}");
    let missing = tmp.path().join("nope").to_string_lossy().into_owned();
    let (code, _, err) = lint(args(&[&good, &missing])).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read"), "{err}");
    let (code, _, _) = lint(args(&["--format", "yaml", &good])).await;
    assert_eq!(code, Some(2));
    let (code, _, err) = lint(args(&["--token-env", "BERTH_NO_SUCH_VARIABLE", &good])).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("BERTH_NO_SUCH_VARIABLE"), "{err}");
    let (code, _, _) = lint(args(&["--token-env", "LINT_TOKEN", &good])).await;
    assert_eq!(
        code,
        Some(2),
        "a token the registry does not know is refused"
    );
    let (code, _, _) = lint(vec![
        "--registry".into(),
        "http://127.0.0.1:1".into(),
        good.clone(),
    ])
    .await;
    assert_eq!(code, Some(2));
    // Without a registry only --allow counts.
    let (code, out, _) = lint(vec![good.clone()]).await;
    assert_eq!(code, Some(1), "{out}");
}

/// Official and verified namespaces: a bare name is `library/NAME` (official by
/// default), `berth namespace mark` (on the server's own database) marks a publisher
/// verified, and the marks show in `/api/v1`.
#[tokio::test(flavor = "multi_thread")]
async fn official_and_verified_namespaces() {
    let server = TestServer::start().await;
    let (digest, _) = push_image(&server.base, "alpine", "3", "bare alpine").await;
    assert_eq!(
        resolve(&server, "library/alpine", "3").await,
        Some(digest.clone())
    );
    assert_eq!(resolve(&server, "alpine", "3").await, Some(digest));
    let r = http()
        .get(server.url("/v2/alpine/tags/list"))
        .send()
        .await
        .unwrap();
    let tags: Value = r.json().await.unwrap();
    assert_eq!(tags["name"], "library/alpine");

    let get = |path: &'static str| {
        let server = &server;
        async move {
            let r = call(server, Method::GET, path, Some(&admin()), None).await;
            assert_eq!(r.status(), 200, "{path}");
            r.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(get("/api/v1/repositories/alpine").await["mark"], "official");
    assert_eq!(get("/api/v1/namespaces/library").await["mark"], "official");
    push_image(&server.base, "acme/tool", "1", "acme tool").await;
    assert_eq!(get("/api/v1/repositories/acme/tool").await["mark"], "none");

    // The command, on the server's own database.
    let database = match &server.database {
        berth_server::DatabaseConfig::Sqlite(url) | berth_server::DatabaseConfig::Postgres(url) => {
            url.clone()
        }
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "namespace",
            "mark",
            "acme",
            "verified",
            "--database",
            &database,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        get("/api/v1/repositories/acme/tool").await["mark"],
        "verified"
    );
    let listed = get("/api/v1/repositories").await;
    assert_eq!(listed["marks"]["acme"], "verified");
    assert_eq!(listed["marks"]["library"], "official");

    // Only administrators mark; `none` unmarks, even the official default.
    add_user(&server, "eve").await;
    let r = call(
        &server,
        Method::PUT,
        "/api/v1/namespaces/eve/mark",
        Some(&basic("eve", PASSWORD)),
        Some(json!({ "mark": "official" })),
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = call(
        &server,
        Method::PUT,
        "/api/v1/namespaces/library/mark",
        Some(&admin()),
        Some(json!({ "mark": "none" })),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(get("/api/v1/namespaces/library").await["mark"], "none");
    let r = call(
        &server,
        Method::PUT,
        "/api/v1/namespaces/acme/mark",
        Some(&admin()),
        Some(json!({ "mark": "gold" })),
    )
    .await;
    assert_eq!(r.status(), 400);
}

/// Multi-platform images: each platform of a pushed index is checked against the
/// platforms of the golden indexes.
#[tokio::test(flavor = "multi_thread")]
async fn golden_bases_of_multi_platform_images() {
    let server = TestServer::start_with(|c| c.open = true).await;
    let host = server.host.clone();
    let tmp = tempfile::tempdir().unwrap();
    let (base, app, stranger) = (
        tmp.path().join("base"),
        tmp.path().join("app"),
        tmp.path().join("stranger"),
    );
    mkimage(
        &base,
        &[
            "--layers",
            "100K,50K",
            "--multiarch",
            "--tag",
            "1",
            "--seed",
            "multi-golden",
            "--derived-out",
            &app.to_string_lossy(),
            "--derived-tag",
            "1",
            "--shared",
            "2",
            "--derived-layers",
            "20K",
        ],
    );
    mkimage(
        &stranger,
        &[
            "--layers",
            "100K,50K",
            "--multiarch",
            "--tag",
            "1",
            "--seed",
            "multi-stranger",
        ],
    );
    let push = |layout: std::path::PathBuf, target: &'static str| {
        let host = host.clone();
        async move { skopeo_push(&layout, "1", &host, target, true).await }
    };
    push(base, "company/multi:1").await.unwrap();
    add_golden(&server, "company/multi", None).await;
    set_policy(&server, "apps", "require-golden-base", "enforce").await;
    push(app, "apps/multi:1")
        .await
        .expect("every platform built on the golden one");
    let refused = push(stranger, "apps/stranger:1").await.unwrap_err();
    assert!(
        refused.contains("apps/stranger is not built on a golden image"),
        "skopeo said: {refused}"
    );
}
