//! Accounts end to end with real clients: users, organizations and tokens made with the
//! `berth` commands (against the data dir of a running server, as an operator would),
//! then `docker login` / push / pull / logout on the Docker engine, and `skopeo --creds`
//! and `skopeo login`.

use std::path::Path;
use std::process::{Command, Output};

use crate::TestServer;
use crate::clients::*;

/// Runs the real `berth` binary on `data_dir` with `input` on stdin.
fn berth(data_dir: &Path, args: &[&str], input: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(args).arg("--data-dir").arg(data_dir);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BERTH_") {
            cmd.env_remove(key);
        }
    }
    run_with_input(cmd, "berth", input)
}

/// Runs `berth`, asserts success, returns (stdout, stderr).
fn berth_ok(data_dir: &Path, args: &[&str], input: Option<&str>) -> (String, String) {
    let out = berth(data_dir, args, input);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "berth {args:?} failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// `berth token create …`: the secret (stdout) and the id (named on stderr).
fn create_token(data_dir: &Path, user: &str, scope: &str) -> (String, String) {
    let (stdout, stderr) = berth_ok(
        data_dir,
        &["token", "create", "--user", user, "--scope", scope],
        None,
    );
    let secret = stdout.trim().to_owned();
    assert!(secret.starts_with("berth_pat_"), "{stdout}");
    let id = stderr
        .split("created token ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no token id in: {stderr}"))
        .to_owned();
    (id, secret)
}

fn add_user(data_dir: &Path, name: &str, password: &str) {
    let (stdout, _) = berth_ok(
        data_dir,
        &["user", "add", name, "--password-stdin"],
        Some(password),
    );
    assert!(stdout.contains(&format!("created user {name}")), "{stdout}");
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether a client's error output says the registry refused (HEAD answers carry no
/// body, so some clients can only show the status).
fn refused(said: &str) -> bool {
    ["denied", "unauthorized", "403", "401"]
        .iter()
        .any(|word| said.contains(word))
}

/// A docker push that must fail, at once: a refusal is final, so docker must not retry
/// the layers.
fn assert_push_refused(out: &Output, who: &str) {
    assert!(!out.status.success(), "{who} pushed: {}", text(out));
    assert!(!text(out).contains("Retrying"), "{who}: {}", text(out));
}

async fn auth_server() -> TestServer {
    TestServer::start_with(|c| c.open = false).await
}

/// The account commands, and what they do to a running server.
#[tokio::test(flavor = "multi_thread")]
async fn account_commands_work_against_a_running_server() {
    let server = auth_server().await;
    let data = server.data_dir.clone();
    let base = server.base.clone();
    let ok = blocking(move || {
        add_user(&data, "alice", "alice-password");
        // Without --password-stdin a password is generated and printed once.
        let (stdout, _) = berth_ok(&data, &["user", "add", "bob"], None);
        let bob_password = stdout.trim().rsplit(' ').next().unwrap().to_owned();
        assert_eq!(bob_password.len(), 32, "{stdout}");
        let out = berth(&data, &["user", "add", "alice"], None);
        assert!(!out.status.success());
        assert!(text(&out).contains("already taken"), "{}", text(&out));
        let (users, _) = berth_ok(&data, &["user", "ls"], None);
        for name in ["admin", "alice", "bob"] {
            assert!(users.contains(name), "{users}");
        }
        berth_ok(&data, &["org", "add", "team", "--owner", "bob"], None);
        berth_ok(
            &data,
            &["org", "member", "add", "team", "alice", "--role", "write"],
            None,
        );
        let (members, _) = berth_ok(&data, &["org", "member", "ls", "team"], None);
        assert!(
            members.contains("alice") && members.contains("write"),
            "{members}"
        );
        let out = berth(
            &data,
            &["org", "member", "add", "team", "alice", "--role", "owner"],
            None,
        );
        assert!(!out.status.success(), "unknown roles are refused");

        let (id, secret) = create_token(&data, "alice", "read-write");
        let (listed, _) = berth_ok(&data, &["token", "ls", "--user", "alice"], None);
        assert!(
            listed.contains(&id) && listed.contains("active"),
            "{listed}"
        );
        assert!(!listed.contains(&secret), "token ls never shows secrets");
        berth_ok(
            &data,
            &["repo", "visibility", "alice/hidden", "private"],
            None,
        );
        berth_ok(
            &data,
            &["user", "passwd", "bob", "--password-stdin"],
            Some("bob-new-password"),
        );
        (id, secret, bob_password)
    })
    .await;
    let (id, secret, bob_old) = ok;
    let client = crate::anonymous();
    let get = |auth: String, path: &str| {
        client
            .get(format!("{base}{path}"))
            .header("authorization", auth)
            .send()
    };
    let r = get(crate::basic("alice", &secret), "/v2/").await.unwrap();
    assert_eq!(r.status(), 200, "a token made by the command signs in");
    let r = get(crate::basic("bob", &bob_old), "/v2/").await.unwrap();
    assert_eq!(r.status(), 401, "the old password is gone");
    let r = get(crate::basic("bob", "bob-new-password"), "/v2/")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("{base}/api/v1/repositories/alice/hidden"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "made private before any push");

    let data = server.data_dir.clone();
    blocking(move || {
        berth_ok(&data, &["token", "revoke", &id], None);
        berth_ok(&data, &["user", "rm", "bob"], None);
        // The first administrator, once removed, is not created again.
        berth_ok(&data, &["user", "add", "root", "--admin"], None);
        berth_ok(&data, &["user", "rm", "admin"], None);
        let (users, _) = berth_ok(&data, &["user", "ls"], None);
        assert!(!users.lines().any(|l| l.starts_with("admin ")), "{users}");
    })
    .await;
    let r = get(crate::basic("alice", &secret), "/v2/").await.unwrap();
    assert_eq!(
        r.status(),
        401,
        "revoked by the command: refused at the next request"
    );
    let r = get(crate::basic("bob", "bob-new-password"), "/v2/")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// The walk-through on the Docker engine: `docker login` with an access token,
/// push into one's own namespace, denied elsewhere, anonymous pulls after logout,
/// read-only and revoked tokens, organization roles.
#[tokio::test(flavor = "multi_thread")]
async fn docker_login_with_access_tokens() {
    let server = auth_server().await;
    let port = server.port;
    let data = server.data_dir.clone();
    blocking(move || {
        let docker = DockerDaemon::shared();
        let registry = format!("localhost:{port}");
        let image = |name: &str| format!("{registry}/{name}");
        add_user(&data, "alice", "alice-password");
        add_user(&data, "bob", "bob-password");
        add_user(&data, "carol", "carol-password");
        berth_ok(&data, &["org", "add", "team", "--owner", "bob"], None);
        berth_ok(
            &data,
            &["org", "member", "add", "team", "alice", "--role", "write"],
            None,
        );
        berth_ok(
            &data,
            &["org", "member", "add", "team", "carol", "--role", "read"],
            None,
        );
        berth_ok(
            &data,
            &["repo", "visibility", "alice/private", "private"],
            None,
        );
        let (_, rw) = create_token(&data, "alice", "read-write");
        let (_, read) = create_token(&data, "alice", "read");

        let tmp = tempfile::tempdir().unwrap();
        let tar = tmp.path().join("app.tar");
        let tar_s = tar.to_string_lossy().into_owned();
        let app = image("alice/app:v1");
        mkimage(
            &tmp.path().join("layout"),
            &[
                "--layers",
                "256K,128K",
                "--tag",
                "v1",
                "--seed",
                "auth-walkthrough",
                "--docker-archive",
                &tar_s,
                "--docker-name",
                &app,
            ],
        );
        docker.docker_ok(&["load", "-i", &tar_s]);

        let login = |user: &str, secret: &str| {
            docker.docker_input(
                &["login", &registry, "-u", user, "--password-stdin"],
                secret,
            )
        };
        let out = login("alice", &rw);
        assert!(
            out.status.success() && text(&out).contains("Login Succeeded"),
            "docker login: {}",
            text(&out)
        );
        let out = login("alice", "not-the-token");
        assert!(!out.status.success(), "a wrong secret must not log in");
        assert!(text(&out).contains("unauthorized"), "{}", text(&out));
        login("alice", &rw);

        let push = docker.docker_ok(&["push", &app]);
        assert!(push.contains("v1: digest: sha256:"), "{push}");
        // (The denied push goes last: docker forgets where a layer can be mounted from
        // after any failed mount.)
        for (target, allowed) in [
            ("team/app:v1", true),
            ("alice/private:v1", true),
            ("bob/app:v1", false),
        ] {
            docker.docker_ok(&["tag", &app, &image(target)]);
            let out = docker.docker(&["push", &image(target)]);
            let said = text(&out);
            if allowed {
                assert!(out.status.success(), "push {target}: {said}");
                // alice may pull alice/app, so its layers are mounted, not uploaded.
                assert!(
                    said.contains("Mounted from alice/app")
                        || said.contains("Mounted from team/app"),
                    "push {target}: {said}"
                );
                assert!(!said.contains("Pushed"), "push {target}: {said}");
            } else {
                assert!(
                    !out.status.success(),
                    "push into {target} must be denied: {said}"
                );
                assert!(said.contains("denied"), "push {target}: {said}");
                // A refusal is final: docker must not retry the layers.
                assert!(!said.contains("Retrying"), "push {target}: {said}");
            }
        }

        // Signed out: the public repository pulls, the private one fails exactly like
        // one that does not exist.
        docker.docker_ok(&["logout", &registry]);
        docker.docker_ok(&["image", "rm", &app, &image("alice/private:v1")]);
        let pull = docker.docker_ok(&["pull", &app]);
        assert!(pull.contains("Digest: sha256:"), "{pull}");
        let private = docker.docker(&["pull", &image("alice/private:v1")]);
        let missing = docker.docker(&["pull", &image("alice/nothing:v1")]);
        assert!(!private.status.success() && !missing.status.success());
        let said_private =
            String::from_utf8_lossy(&private.stderr).replace("alice/private", "NAME");
        let said_missing =
            String::from_utf8_lossy(&missing.stderr).replace("alice/nothing", "NAME");
        assert_eq!(said_private, said_missing);
        assert!(
            said_private.contains("pull access denied"),
            "{said_private}"
        );

        // A read token pulls the private repository but cannot push.
        login("alice", &read);
        docker.docker_ok(&["pull", &image("alice/private:v1")]);
        docker.docker_ok(&["tag", &app, &image("alice/app:v2")]);
        assert_push_refused(
            &docker.docker(&["push", &image("alice/app:v2")]),
            "a read token",
        );

        // A revoked token fails at once, though docker still holds its login.
        let (id, rw2) = create_token(&data, "alice", "read-write");
        login("alice", &rw2);
        docker.docker_ok(&["push", &image("alice/app:v2")]);
        berth_ok(&data, &["token", "revoke", &id], None);
        docker.docker_ok(&["tag", &app, &image("alice/app:v3")]);
        assert_push_refused(
            &docker.docker(&["push", &image("alice/app:v3")]),
            "a revoked token",
        );

        // Organization roles: carol (read) pulls from team but cannot push.
        docker.docker_ok(&["logout", &registry]);
        login("carol", "carol-password");
        docker.docker_ok(&["image", "rm", &image("team/app:v1")]);
        docker.docker_ok(&["pull", &image("team/app:v1")]);
        docker.docker_ok(&["tag", &app, &image("team/app:carol")]);
        assert_push_refused(
            &docker.docker(&["push", &image("team/app:carol")]),
            "a read member",
        );
        docker.docker_ok(&["logout", &registry]);

        let tags: Vec<String> = [
            "alice/app:v1",
            "alice/app:v2",
            "alice/app:v3",
            "bob/app:v1",
            "team/app:v1",
            "team/app:carol",
            "alice/private:v1",
        ]
        .iter()
        .map(|t| image(t))
        .collect();
        let mut rm = vec!["image", "rm", "--force"];
        rm.extend(tags.iter().map(String::as_str));
        docker.docker(&rm);
    })
    .await;
    drop(server);
}

/// skopeo with `--creds` and with `skopeo login`, the way CI jobs use it.
#[tokio::test(flavor = "multi_thread")]
async fn skopeo_creds_and_login() {
    let server = auth_server().await;
    let host = server.host.clone();
    let data = server.data_dir.clone();
    blocking(move || {
        add_user(&data, "alice", "alice-password");
        add_user(&data, "bob", "bob-password");
        berth_ok(
            &data,
            &["repo", "visibility", "alice/private", "private"],
            None,
        );
        let (_, rw) = create_token(&data, "alice", "read-write");
        let (_, read) = create_token(&data, "alice", "read");
        let tmp = tempfile::tempdir().unwrap();
        let layout = tmp.path().join("layout");
        mkimage(
            &layout,
            &["--layers", "64K", "--tag", "v1", "--seed", "skopeo-auth"],
        );
        let src = format!("oci:{}:v1", layout.display());
        let dest = |name: &str| format!("docker://{host}/{name}");
        let sk = Skopeo::new();
        let creds = format!("alice:{rw}");

        sk.ok(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &src,
            &dest("alice/sk:v1"),
        ]);
        let said = sk.fails(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &src,
            &dest("bob/sk:v1"),
        ]);
        assert!(refused(&said), "{said}");
        let read_creds = format!("alice:{read}");
        let said = sk.fails(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &read_creds,
            &src,
            &dest("alice/sk:v2"),
        ]);
        assert!(refused(&said), "{said}");

        // skopeo login writes an auth file; copies then need no --creds.
        let authfile = tmp.path().join("auth.json");
        let authfile_s = authfile.to_string_lossy().into_owned();
        let out = sk.ok(&[
            "login",
            "--tls-verify=false",
            "--authfile",
            &authfile_s,
            "-u",
            "alice",
            "-p",
            &rw,
            &host,
        ]);
        assert!(out.contains("Login Succeeded"), "{out}");
        sk.ok(&[
            "copy",
            "--dest-tls-verify=false",
            "--authfile",
            &authfile_s,
            &src,
            &dest("alice/private:v1"),
        ]);
        let inspect = sk.json(&[
            "inspect",
            "--tls-verify=false",
            "--authfile",
            &authfile_s,
            &dest("alice/private:v1"),
        ]);
        assert!(inspect["Digest"].as_str().unwrap().starts_with("sha256:"));
        sk.ok(&["logout", "--authfile", &authfile_s, &host]);

        // Anonymous: the public one inspects; the private one fails like a missing one.
        sk.ok(&["inspect", "--tls-verify=false", &dest("alice/sk:v1")]);
        let private = sk.fails(&["inspect", "--tls-verify=false", &dest("alice/private:v1")]);
        let missing = sk.fails(&["inspect", "--tls-verify=false", &dest("alice/nothing:v1")]);
        let normalize = |s: &str, name: &str| {
            s.lines()
                .map(|l| l.split_once("msg=").map_or(l, |(_, m)| m))
                .collect::<Vec<_>>()
                .join("\n")
                .replace(name, "NAME")
        };
        assert_eq!(
            normalize(&private, "alice/private"),
            normalize(&missing, "alice/nothing")
        );
        // With the read token it inspects, and lists tags.
        let tags = sk.json(&[
            "list-tags",
            "--tls-verify=false",
            "--creds",
            &read_creds,
            &dest("alice/private"),
        ]);
        assert_eq!(tags["Tags"], serde_json::json!(["v1"]));
    })
    .await;
    drop(server);
}
