//! The web site and search: the site in real headless Chromium (Debian's `chromium`
//! driven by Playwright, `tests/browser/site.test.mjs`) with the Docker engine pushing
//! between its steps; `docker search` on the Docker engine; and, over HTTP, what every
//! page must hold to: CSRF tokens and same-origin forms, strict headers, page weight,
//! sign-in limits shared with the API, and search in `/api/v1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts::{PASSWORD, add_user, admin, call};
use crate::clients::{DockerDaemon, blocking, find_executable, mkimage, run_with_input};
use crate::{TestServer, anonymous, basic, sha256};

async fn auth_server() -> TestServer {
    TestServer::start_with(|c| c.open = false).await
}

/// Pushes a small linux/amd64 image as the administrator.
async fn admin_push(server: &TestServer, repo: &str, tag: &str, seed: &str) {
    let client = anonymous();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [] },
        "history": [{ "created_by": format!("/bin/sh -c #(nop) LABEL seed={seed}") }],
    })
    .to_string()
    .into_bytes();
    let layer = format!("layer of {seed}").into_bytes();
    for blob in [&config, &layer] {
        let r = client
            .post(server.url(&format!(
                "/v2/{repo}/blobs/uploads/?digest={}",
                sha256(blob)
            )))
            .header("authorization", admin())
            .header("content-type", "application/octet-stream")
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let manifest = crate::image_manifest(&config, &[&layer]);
    let r = client
        .put(server.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("authorization", admin())
        .header("content-type", crate::OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

async fn describe(server: &TestServer, repo: &str, text: &str) {
    let r = call(
        server,
        Method::PUT,
        &format!("/api/v1/repositories/{repo}/description"),
        Some(&admin()),
        Some(json!({ "description": text })),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn make_private(server: &TestServer, repo: &str) {
    let r = call(
        server,
        Method::PUT,
        &format!("/api/v1/repositories/{repo}/visibility"),
        Some(&admin()),
        Some(json!({ "visibility": "private" })),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where the browser tests write their screenshots.
fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/web-screenshots")
}

/// The scenario of `tests/browser/site.test.mjs`, against a berth with accounts and the
/// Docker engine of this test process.
#[tokio::test(flavor = "multi_thread")]
async fn web_site_in_headless_chromium() {
    let missing = "the browser tests need node, npm packages (npm ci in crates/berth/tests/browser) \
                   and Chromium (Debian package chromium); run the README test command \
                   (scripts/test.sh), which installs them";
    let chromium = find_executable("chromium").unwrap_or_else(|| panic!("{missing}"));
    assert!(find_executable("node").is_some(), "{missing}");
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "{missing}"
    );
    let server = auth_server().await;
    add_user(&server, "alice").await;
    let port = server.port;
    blocking(move || {
        let docker = DockerDaemon::shared();
        let registry = format!("localhost:{port}");
        let image = format!("{registry}/alice/ui:2.1.106");
        let tmp = tempfile::tempdir().unwrap();
        let tar = tmp.path().join("ui.tar");
        mkimage(
            &tmp.path().join("layout"),
            &[
                "--layers",
                "200K,100K",
                "--seed",
                "web-site",
                "--tag",
                "2.1.106",
                "--docker-archive",
                &tar.to_string_lossy(),
                "--docker-name",
                &image,
            ],
        );
        let mut node = Command::new("node");
        node.arg("--test")
            .arg("--test-reporter=spec")
            .arg(browser_dir().join("site.test.mjs"))
            .current_dir(browser_dir())
            .env("BERTH_URL", format!("http://{registry}"))
            .env("BERTH_REGISTRY", &registry)
            .env("BERTH_USER", "alice")
            .env("BERTH_PASSWORD", PASSWORD)
            .env("BERTH_IMAGE_TAR", &tar)
            .env("BERTH_IMAGE", &image)
            .env("BERTH_DOCKER_HOST", docker.host())
            .env("BERTH_DOCKER_CONFIG", docker.config_dir())
            .env("BERTH_SCREENSHOTS", screenshot_dir())
            .env("BERTH_CHROMIUM", chromium);
        let out = run_with_input(node, "node", None);
        let report = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "browser tests failed:\n{report}");
        assert!(report.contains("fail 0"), "{report}");
        for shot in [
            "repository-light-desktop",
            "home-dark-phone",
            "account-dark-desktop",
        ] {
            let file = screenshot_dir().join(format!("{shot}.png"));
            let len = std::fs::metadata(&file).map_or(0, |m| m.len());
            assert!(len > 5_000, "{} is missing or empty", file.display());
        }
    })
    .await;
}

/// `docker search` on the Docker engine: any part of a name matches, `is-official`
/// filters, `--limit` limits, and a private repository is never listed to someone who
/// may not read it.
#[tokio::test(flavor = "multi_thread")]
async fn docker_search_lists_what_the_caller_may_read() {
    let server = auth_server().await;
    for (repo, seed) in [
        ("gallery/ui", "ui"),
        ("gallery/api", "api"),
        ("tools/gallery-cli", "cli"),
        ("library/gallery", "official"),
        ("bob/gallery-secret", "secret"),
        ("tools/other", "other"),
    ] {
        admin_push(&server, repo, "1", seed).await;
    }
    describe(&server, "tools/other", "Renders the gallery's thumbnails").await;
    make_private(&server, "bob/gallery-secret").await;
    let port = server.port;
    let found = blocking(move || {
        let docker = DockerDaemon::shared();
        let term = format!("localhost:{port}/gallery");
        let search = |args: &[&str]| {
            let mut all = vec!["search", "--format", "{{.Name}}|{{.IsOfficial}}"];
            all.extend_from_slice(args);
            all.push(&term);
            let out = docker.docker_ok(&all);
            let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        (
            search(&[]),
            search(&["--filter", "is-official=true"]),
            search(&["--limit", "2"]),
        )
    })
    .await;
    let (all, official, limited) = found;
    assert_eq!(
        all,
        [
            "gallery/api|",
            "gallery/ui|",
            "gallery|[OK]",
            "tools/gallery-cli|",
            "tools/other|",
        ],
        "names first, then descriptions; never the private one"
    );
    assert_eq!(official, ["gallery|[OK]"]);
    assert_eq!(limited.len(), 2, "{limited:?}");

    // Over HTTP with credentials (the engine sends them over HTTPS): the owner's own
    // private repository is listed for them and the administrator, and only for them.
    add_user(&server, "bob").await;
    add_user(&server, "eve").await;
    let search_as = |who: Option<String>| {
        let url = server.url("/v1/search?q=secret");
        async move {
            let mut request = anonymous().get(url);
            if let Some(who) = who {
                request = request.header("authorization", who);
            }
            let body: Value = request.send().await.unwrap().json().await.unwrap();
            body["num_results"].as_u64().unwrap()
        }
    };
    assert_eq!(search_as(Some(basic("bob", PASSWORD))).await, 1);
    assert_eq!(search_as(Some(admin())).await, 1);
    assert_eq!(search_as(Some(basic("eve", PASSWORD))).await, 0);
    assert_eq!(search_as(None).await, 0);
    let wrong = anonymous()
        .get(server.url("/v1/search?q=secret"))
        .header("authorization", basic("bob", "wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        wrong.status(),
        401,
        "bad credentials are not taken for anonymous"
    );
}

/// The sign-in form's CSRF token and cookie, from a fresh visit.
async fn sign_in_form(client: &reqwest::Client, server: &TestServer) -> (String, String) {
    let r = client.get(server.url("/signin")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("berth_csrf="))
        .expect("a CSRF cookie on the first visit");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let html = r.text().await.unwrap();
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a csrf field")
        .to_owned();
    (cookie, token)
}

/// Forms without their token, with another's token, or from another origin are refused;
/// a good sign-in sets a session cookie the API accepts; failed sign-ins on the page
/// count toward the same limits as the API's.
#[tokio::test(flavor = "multi_thread")]
async fn web_forms_need_a_token_and_this_origin() {
    let server = TestServer::start_with(|c| {
        c.open = false;
        c.auth.login_failures = 3;
    })
    .await;
    add_user(&server, "carol").await;
    let client = anonymous();
    let (cookie, token) = sign_in_form(&client, &server).await;
    let post = |fields: Vec<(&'static str, String)>, headers: Vec<(&'static str, String)>| {
        let mut request = client
            .post(server.url("/signin"))
            .header("cookie", cookie.clone())
            .form(&fields);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        request.send()
    };
    let fields = |csrf: Option<&str>, password: &str| {
        let mut f = vec![
            ("username", "carol".to_owned()),
            ("password", password.to_owned()),
        ];
        if let Some(csrf) = csrf {
            f.push(("csrf", csrf.to_owned()));
        }
        f
    };
    let refused = post(fields(None, PASSWORD), vec![]).await.unwrap();
    assert_eq!(refused.status(), 403);
    let refused = post(fields(Some(&"f".repeat(64)), PASSWORD), vec![])
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let refused = post(
        fields(Some(&token), PASSWORD),
        vec![("origin", "http://evil.example".into())],
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 403);
    let refused = post(
        fields(Some(&token), PASSWORD),
        vec![("sec-fetch-site", "cross-site".into())],
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 403);
    // A token without its cookie is worth nothing.
    let r = client
        .post(server.url("/signin"))
        .form(&fields(Some(&token), PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let ok = post(
        fields(Some(&token), PASSWORD),
        vec![("origin", server.base.clone())],
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 303);
    let session = ok
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("berth_session="))
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(flag), "{session}");
    }
    let session = session.split(';').next().unwrap().to_owned();
    let me: Value = client
        .get(server.url("/api/v1/me"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["name"], "carol", "the API takes the web session");
    // A signed-in form needs the session's token, not the pre-session one.
    let r = client
        .post(server.url("/account/tokens"))
        .header("cookie", format!("{session}; {cookie}"))
        .form(&[("csrf", token.as_str()), ("scope", "read")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Failed sign-ins on the page count toward the API's limits (3 here).
    let (cookie2, token2) = sign_in_form(&client, &server).await;
    for _ in 0..3 {
        let r = client
            .post(server.url("/signin"))
            .header("cookie", &cookie2)
            .form(&[
                ("csrf", token2.as_str()),
                ("username", "carol"),
                ("password", "wrong"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = call(
        &server,
        Method::GET,
        "/api/v1/me",
        Some(&basic("carol", PASSWORD)),
        None,
    )
    .await;
    assert_eq!(r.status(), 429, "the API is locked too");
    let r = client
        .post(server.url("/signin"))
        .header("cookie", &cookie2)
        .form(&[
            ("csrf", token2.as_str()),
            ("username", "carol"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "and so is the page");
}

/// Every page: a strict Content-Security-Policy and no inline script or style it would
/// block; not cached; under 100 KB with its style sheet and script; a missing page is
/// an HTML 404.
#[tokio::test(flavor = "multi_thread")]
async fn web_pages_are_strict_and_small() {
    let server = auth_server().await;
    admin_push(&server, "gallery/ui", "2.1.106", "page").await;
    admin_push(&server, "library/redis", "7", "redis").await;
    describe(
        &server,
        "gallery/ui",
        "# UI\n\n<script>alert('x')</script>\n\n[x](javascript:alert(1))",
    )
    .await;
    let client = anonymous();
    let assets: u64 = {
        let mut total = 0;
        for asset in ["/static/berth.css", "/static/berth.js"] {
            let r = client.get(server.url(asset)).send().await.unwrap();
            assert_eq!(r.status(), 200);
            total += r.bytes().await.unwrap().len() as u64;
        }
        total
    };
    for path in [
        "/",
        "/search?q=gallery",
        "/search?q=gallery&official=on",
        "/u/gallery",
        "/r/gallery/ui",
        "/r/gallery/ui/-/tags/2.1.106",
        "/_/redis",
        "/signin",
    ] {
        let r = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let headers = r.headers().clone();
        let csp = headers["content-security-policy"].to_str().unwrap();
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let html = r.text().await.unwrap();
        assert!(!html.contains("<script>"), "{path}: an inline script");
        assert!(!html.contains(" style="), "{path}: an inline style");
        assert!(!html.contains("href=\"javascript:"), "{path}");
        let weight = html.len() as u64 + assets;
        assert!(weight < 100_000, "{path}: {weight} bytes");
    }
    let page = client
        .get(server.url("/r/gallery/ui"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;")
            || page.contains("&lt;script&gt;alert('x')&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        page.contains("linux/amd64"),
        "the platform, from the config"
    );
    let missing = client
        .get(server.url("/r/gallery/none"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("<html"));
}

/// `/api/v1/search` and descriptions: matches in names and descriptions, the filters on
/// marks and golden images, pages, and only what the caller may read.
#[tokio::test(flavor = "multi_thread")]
async fn api_search_filters_and_pages() {
    let server = auth_server().await;
    for repo in [
        "gallery/ui",
        "gallery/api",
        "acme/gallery-base",
        "library/gallery",
    ] {
        admin_push(&server, repo, "1", repo).await;
    }
    make_private(&server, "gallery/api").await;
    describe(&server, "gallery/ui", "The **UI** of the gallery").await;
    let r = call(
        &server,
        Method::PUT,
        "/api/v1/namespaces/acme/mark",
        Some(&admin()),
        Some(json!({ "mark": "verified" })),
    )
    .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = call(
        &server,
        Method::POST,
        "/api/v1/golden",
        Some(&admin()),
        Some(json!({ "repository": "acme/gallery-base", "tags": null })),
    )
    .await;
    assert_eq!(r.status(), 201);
    let search = |query: &'static str, who: Option<String>| {
        let server = &server;
        async move {
            let r = call(
                server,
                Method::GET,
                &format!("/api/v1/search?{query}"),
                who.as_deref(),
                None,
            )
            .await;
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            let names: Vec<String> = body["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_owned())
                .collect();
            (body, names)
        }
    };
    let (body, names) = search("q=gallery", None).await;
    assert_eq!(
        names,
        ["acme/gallery-base", "gallery/ui", "library/gallery"]
    );
    assert_eq!(body["total"], 3);
    let ui = &body["results"][1];
    assert_eq!(ui["description"], "The **UI** of the gallery");
    assert_eq!(ui["mark"], "none");
    assert_eq!(body["results"][0]["mark"], "verified");
    assert_eq!(body["results"][0]["golden"], true);
    assert_eq!(body["results"][2]["mark"], "official");
    let (_, names) = search("q=gallery", Some(admin())).await;
    assert_eq!(
        names.len(),
        4,
        "the administrator sees the private one: {names:?}"
    );
    let (_, names) = search("q=gallery&official=true", None).await;
    assert_eq!(names, ["library/gallery"]);
    let (_, names) = search("q=gallery&official=true&verified=true", None).await;
    assert_eq!(names, ["acme/gallery-base", "library/gallery"]);
    let (_, names) = search("q=gallery&golden=true", None).await;
    assert_eq!(names, ["acme/gallery-base"]);
    let (_, names) = search("q=of+the", None).await;
    assert_eq!(names, ["gallery/ui"], "descriptions match too");
    let (body, names) = search("q=gallery&n=2&page=2", None).await;
    assert_eq!(names, ["library/gallery"]);
    assert_eq!(
        (body["pages"].as_u64(), body["page"].as_u64()),
        (Some(2), Some(2))
    );
    let r = call(
        &server,
        Method::GET,
        "/api/v1/search?q=x&n=lots",
        None,
        None,
    )
    .await;
    assert_eq!(r.status(), 400);

    // Descriptions: only a manager sets one; it is in the repository's resource.
    add_user(&server, "mallory").await;
    let r = call(
        &server,
        Method::PUT,
        "/api/v1/repositories/gallery/ui/description",
        Some(&basic("mallory", PASSWORD)),
        Some(json!({ "description": "defaced" })),
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = call(
        &server,
        Method::PUT,
        "/api/v1/repositories/gallery/ui/description",
        Some(&admin()),
        Some(json!({ "description": "x".repeat(30_000) })),
    )
    .await;
    assert_eq!(r.status(), 400, "too long");
    let repo: Value = call(
        &server,
        Method::GET,
        "/api/v1/repositories/gallery/ui",
        None,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(repo["description"], "The **UI** of the gallery");
    assert!(repo["pushed_at"].as_i64().unwrap() > 0);
}
