//! Authentication and authorization over HTTP: the challenge, the token endpoint (GET
//! and the OAuth2 POST grants), scope intersection, JWTs that must be refused,
//! visibility, mounts across namespaces, catalog filtering, organizations, failed-login
//! limits and the `/api/v1` account API. The real clients (docker, skopeo) are in
//! `auth_clients.rs`.

use base64::Engine as _;
use berth_auth::TokenSigner;
use berth_meta::AccountStore as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::accounts::{PASSWORD, add_token, add_user, admin, call};
use crate::{TestServer, anonymous, basic, error_code, header, image_manifest, sha256};

/// A server with auth on, whatever mode the suite runs in.
async fn auth_server() -> TestServer {
    TestServer::start_with(|c| c.open = false).await
}

/// `GET /token` with optional Basic credentials; returns the status and the body.
async fn fetch_token(
    server: &TestServer,
    credentials: Option<(&str, &str)>,
    scopes: &[&str],
) -> (StatusCode, Value) {
    let mut url = "/token?service=berth".to_string();
    for scope in scopes {
        url.push_str(&format!("&scope={}", urlencode(scope)));
    }
    let authorization = credentials.map(|(u, p)| basic(u, p));
    let r = call(server, Method::GET, &url, authorization.as_deref(), None).await;
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn bearer_for(
    server: &TestServer,
    credentials: Option<(&str, &str)>,
    scopes: &[&str],
) -> String {
    let (status, body) = fetch_token(server, credentials, scopes).await;
    assert_eq!(status, 200, "{body}");
    format!("Bearer {}", body["token"].as_str().unwrap())
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A")
        .replace('/', "%2F")
        .replace(',', "%2C")
        .replace(' ', "%20")
}

/// `GET /token?offline_token=true` as `user` with their password.
async fn fetch_token_offline(server: &TestServer, user: &str) -> (StatusCode, Value) {
    let r = call(
        server,
        Method::GET,
        "/token?service=berth&offline_token=true&client_id=test",
        Some(&basic(user, PASSWORD)),
        None,
    )
    .await;
    let status = r.status();
    (status, r.json().await.unwrap())
}

/// The payload of a JWT (not verified: this is what the client would see).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The actions the token grants on a repository.
fn granted(token: &Value, repo: &str) -> Vec<String> {
    claims(token["token"].as_str().unwrap())["access"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["name"] == repo)
        .flat_map(|g| g["actions"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// Pushes a blob (monolithic POST) with the given credentials.
async fn post_blob(
    server: &TestServer,
    repo: &str,
    auth: Option<&str>,
    bytes: &[u8],
) -> reqwest::Response {
    let path = format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(bytes));
    let mut request = anonymous()
        .post(server.url(&path))
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec());
    if let Some(value) = auth {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

/// Pushes a config, a layer and a manifest tagged `tag`, asserting each step.
async fn push_image_as(server: &TestServer, repo: &str, tag: &str, auth: &str) -> Vec<u8> {
    let config = format!("{{\"repo\":\"{repo}\"}}").into_bytes();
    let layer = format!("layer of {repo}").into_bytes();
    for blob in [&config, &layer] {
        let r = post_blob(server, repo, Some(auth), blob).await;
        assert_eq!(r.status(), 201, "blob into {repo}");
    }
    let manifest = image_manifest(&config, &[&layer]);
    let r = anonymous()
        .put(server.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("authorization", auth)
        .header("content-type", crate::OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "manifest into {repo}");
    manifest
}

async fn get_manifest(
    server: &TestServer,
    repo: &str,
    tag: &str,
    auth: Option<&str>,
) -> reqwest::Response {
    call(
        server,
        Method::GET,
        &format!("/v2/{repo}/manifests/{tag}"),
        auth,
        None,
    )
    .await
}

async fn set_visibility(server: &TestServer, repo: &str, visibility: &str, auth: &str) {
    let r = call(
        server,
        Method::PUT,
        &format!("/api/v1/repositories/{repo}/visibility"),
        Some(auth),
        Some(json!({ "visibility": visibility })),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// The HS256 key the server signs with, read from its database like a second node would.
async fn signing_key(server: &TestServer) -> String {
    let url = format!("sqlite://{}", server.data_dir.join("berth.db").display());
    let store = berth_meta::SqliteMetaStore::open(&url).await.unwrap();
    store.init_setting("jwt_hs256_key", "unused").await.unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn v2_challenges_and_the_realm_follows_the_proxy() {
    let server = auth_server().await;
    let r = call(&server, Method::GET, "/v2/", None, None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(&r, "www-authenticate"),
        format!(
            "Bearer realm=\"http://{}/token\",service=\"berth\"",
            server.host
        )
    );
    assert_eq!(error_code(r).await, "UNAUTHORIZED");

    // Forwarded headers from anyone are ignored...
    let forwarded = |server: &TestServer| {
        anonymous()
            .get(server.url("/v2/"))
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "registry.example.com")
            .send()
    };
    let r = forwarded(&server).await.unwrap();
    assert_eq!(
        header(&r, "www-authenticate"),
        format!(
            "Bearer realm=\"http://{}/token\",service=\"berth\"",
            server.host
        )
    );
    // ...but behind a TLS-terminating proxy that sets them, the realm is the public URL.
    let proxied = TestServer::start_with(|c| {
        c.open = false;
        c.auth.trust_forwarded_host = true;
    })
    .await;
    let r = forwarded(&proxied).await.unwrap();
    assert_eq!(
        header(&r, "www-authenticate"),
        "Bearer realm=\"https://registry.example.com/token\",service=\"berth\""
    );

    // An anonymous token opens /v2/ (that is how clients learn the registry speaks v2).
    let bearer = bearer_for(&server, None, &[]).await;
    let r = call(&server, Method::GET, "/v2/", Some(&bearer), None).await;
    assert_eq!(r.status(), 200);
    // So do Basic credentials sent straight to /v2/; wrong ones do not.
    let r = call(&server, Method::GET, "/v2/", Some(&admin()), None).await;
    assert_eq!(r.status(), 200);
    let r = call(
        &server,
        Method::GET,
        "/v2/",
        Some(&basic("admin", "wrong-password")),
        None,
    )
    .await;
    assert_eq!(r.status(), 401);
    let r = call(&server, Method::GET, "/v2/", Some("Bearer not.a.jwt"), None).await;
    assert_eq!(r.status(), 401);
    assert!(header(&r, "www-authenticate").contains("error=\"invalid_token\""));

    // A configured realm wins.
    let configured = TestServer::start_with(|c| {
        c.open = false;
        c.auth.realm = Some("https://reg.example.org/token".into());
        c.auth.service = "reg.example.org".into();
    })
    .await;
    let r = call(&configured, Method::GET, "/v2/", None, None).await;
    assert_eq!(
        header(&r, "www-authenticate"),
        "Bearer realm=\"https://reg.example.org/token\",service=\"reg.example.org\""
    );
}

#[tokio::test]
async fn tokens_grant_the_intersection_of_asked_and_allowed() {
    let server = auth_server().await;
    add_user(&server, "alice").await;
    add_user(&server, "bob").await;
    let (_, rw) = add_token(&server, "alice", "read-write").await;
    push_image_as(&server, "bob/public", "v1", &admin()).await;

    let (status, token) = fetch_token(
        &server,
        Some(("alice", &rw)),
        &[
            "repository:alice/app:pull,push,delete",
            "repository:bob/app:pull,push",
            "repository:bob/public:pull,push",
            "repository:localhost:5000/alice/other:pull",
            "registry:catalog:*",
            "nonsense",
        ],
    )
    .await;
    assert_eq!(status, 200, "a partial grant is not an error");
    assert_eq!(
        granted(&token, "alice/app"),
        ["pull", "push"],
        "the token's scope caps delete"
    );
    // The response's scope says what was granted, not what was asked.
    let scope = token["scope"].as_str().unwrap();
    assert!(scope.contains("repository:alice/app:pull,push"), "{scope}");
    assert!(
        !scope.contains("bob/app") && !scope.contains("delete"),
        "{scope}"
    );
    assert!(granted(&token, "bob/app").is_empty());
    assert_eq!(granted(&token, "bob/public"), ["pull"]);
    assert_eq!(
        granted(&token, "alice/other"),
        ["pull"],
        "host:port is stripped"
    );
    let jwt = claims(token["token"].as_str().unwrap());
    assert_eq!(jwt["sub"], "alice");
    assert_eq!(jwt["aud"], "berth");
    assert!(jwt["exp"].as_i64().unwrap() - jwt["iat"].as_i64().unwrap() >= 60);
    assert!(token["expires_in"].as_i64().unwrap() >= 60);
    assert!(token["issued_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        jwt["access"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["type"] == "registry" && g["name"] == "catalog")
    );

    // Anonymous: pull on public repositories only.
    let (_, token) = fetch_token(
        &server,
        None,
        &[
            "repository:bob/public:pull,push",
            "repository:alice/app:pull",
        ],
    )
    .await;
    assert_eq!(granted(&token, "bob/public"), ["pull"]);
    assert!(granted(&token, "alice/app").is_empty());
    assert!(token.get("refresh_token").is_none());

    // Wrong credentials get no token at all, and a foreign service is refused.
    let (status, body) = fetch_token(&server, Some(("alice", "nope-nope")), &[]).await;
    assert_eq!(status, 401);
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
    let r = call(&server, Method::GET, "/token?service=elsewhere", None, None).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn users_push_only_into_their_own_namespace() {
    let server = auth_server().await;
    add_user(&server, "alice").await;
    add_user(&server, "bob").await;
    let (_, rw) = add_token(&server, "alice", "read-write").await;

    let bearer = bearer_for(
        &server,
        Some(("alice", &rw)),
        &["repository:alice/app:pull,push"],
    )
    .await;
    push_image_as(&server, "alice/app", "v1", &bearer).await;
    // The same token says nothing about bob/app: a new token would not help either.
    let r = post_blob(&server, "bob/app", Some(&bearer), b"x").await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "DENIED");
    let bearer = bearer_for(
        &server,
        Some(("alice", &rw)),
        &["repository:bob/app:pull,push"],
    )
    .await;
    let r = post_blob(&server, "bob/app", Some(&bearer), b"x").await;
    assert_eq!(r.status(), 403);
    // Basic credentials straight to /v2/ follow the same rules.
    let r = post_blob(&server, "bob/app", Some(&basic("alice", &rw)), b"x").await;
    assert_eq!(r.status(), 403);
    let r = post_blob(&server, "alice/app", Some(&basic("alice", PASSWORD)), b"y").await;
    assert_eq!(r.status(), 201);

    // A token for another repository of her own gets a challenge for the right scope.
    let narrow = bearer_for(
        &server,
        Some(("alice", &rw)),
        &["repository:alice/app:pull"],
    )
    .await;
    let r = post_blob(&server, "alice/app", Some(&narrow), b"z").await;
    assert_eq!(r.status(), 401);
    let challenge = header(&r, "www-authenticate");
    assert!(
        challenge.contains("scope=\"repository:alice/app:pull,push\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );

    // Anonymous pushes are challenged.
    let r = post_blob(&server, "alice/app", None, b"z").await;
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
}

#[tokio::test]
async fn a_private_repository_looks_exactly_like_a_missing_one() {
    let server = auth_server().await;
    add_user(&server, "alice").await;
    add_user(&server, "bob").await;
    let alice = basic("alice", PASSWORD);
    // Made private before its first push: it is never public, not even for a moment.
    set_visibility(&server, "alice/secret", "private", &alice).await;
    push_image_as(&server, "alice/secret", "v1", &alice).await;
    push_image_as(&server, "alice/open", "v1", &alice).await;

    // Anonymous pull of a public repository works without any token.
    let r = get_manifest(&server, "alice/open", "v1", None).await;
    assert_eq!(r.status(), 200);
    let bearer = bearer_for(&server, None, &["repository:alice/open:pull"]).await;
    assert_eq!(
        get_manifest(&server, "alice/open", "v1", Some(&bearer))
            .await
            .status(),
        200
    );

    // Private and missing: the same status, code, message and challenge (but the name).
    async fn refusal(server: &TestServer, repo: &str, auth: Option<&str>) -> (u16, String, String) {
        let r = get_manifest(server, repo, "v1", auth).await;
        let status = r.status().as_u16();
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().replace(repo, "NAME"))
            .unwrap_or_default();
        (
            status,
            challenge,
            r.text().await.unwrap().replace(repo, "NAME"),
        )
    }
    let private = refusal(&server, "alice/secret", None).await;
    let missing = refusal(&server, "alice/nothing", None).await;
    assert_eq!(private.0, 401);
    assert_eq!(private, missing);
    for repo in ["alice/secret", "alice/nothing"] {
        let (_, token) = fetch_token(&server, None, &[&format!("repository:{repo}:pull")]).await;
        assert!(granted(&token, repo).is_empty());
    }
    let bob = basic("bob", PASSWORD);
    let private = refusal(&server, "alice/secret", Some(&bob)).await;
    let missing = refusal(&server, "alice/nothing", Some(&bob)).await;
    assert_eq!(private.0, 403);
    assert_eq!(private, missing);
    for path in ["/v2/alice/secret/tags/list", "/v2/alice/nothing/tags/list"] {
        let r = call(&server, Method::GET, path, Some(&bob), None).await;
        assert_eq!(r.status(), 403);
    }
    let r = call(
        &server,
        Method::GET,
        "/api/v1/repositories/alice/secret",
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(r.status(), 404);

    // The owner sees it.
    assert_eq!(
        get_manifest(&server, "alice/secret", "v1", Some(&alice))
            .await
            .status(),
        200
    );
    let r = call(
        &server,
        Method::GET,
        "/api/v1/repositories/alice/secret",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["visibility"], "private");
    // Bob may not change its visibility.
    let r = call(
        &server,
        Method::PUT,
        "/api/v1/repositories/alice/secret/visibility",
        Some(&bob),
        Some(json!({ "visibility": "public" })),
    )
    .await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn read_tokens_cannot_push_and_revocation_is_immediate() {
    let server = auth_server().await;
    add_user(&server, "alice").await;
    let (_, read) = add_token(&server, "alice", "read").await;
    let r = post_blob(&server, "alice/app", Some(&basic("alice", &read)), b"x").await;
    assert_eq!(r.status(), 403);
    let (_, token) = fetch_token(
        &server,
        Some(("alice", &read)),
        &["repository:alice/app:pull,push"],
    )
    .await;
    assert_eq!(granted(&token, "alice/app"), ["pull"]);

    let (id, rw) = add_token(&server, "alice", "read-write").await;
    let bearer = bearer_for(
        &server,
        Some(("alice", &rw)),
        &["repository:alice/app:pull,push"],
    )
    .await;
    assert_eq!(
        post_blob(&server, "alice/app", Some(&bearer), b"one")
            .await
            .status(),
        201
    );
    let r = call(
        &server,
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        Some(&basic("alice", PASSWORD)),
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    // The bearer token issued before the revocation stops working at once, and so
    // does the token itself.
    let r = post_blob(&server, "alice/app", Some(&bearer), b"two").await;
    assert_eq!(r.status(), 401);
    assert!(header(&r, "www-authenticate").contains("invalid_token"));
    let (status, _) = fetch_token(&server, Some(("alice", &rw)), &[]).await;
    assert_eq!(status, 401);
    let r = post_blob(&server, "alice/app", Some(&basic("alice", &rw)), b"two").await;
    assert_eq!(r.status(), 401);

    // An expired token is refused like a revoked one.
    let r = call(
        &server,
        Method::POST,
        "/api/v1/tokens",
        Some(&basic("alice", PASSWORD)),
        Some(json!({ "scope": "read", "expires_in": "1s" })),
    )
    .await;
    let short = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, _) = fetch_token(&server, Some(("alice", &short)), &[]).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn tampered_expired_and_foreign_jwts_are_refused() {
    let server = auth_server().await;
    add_user(&server, "alice").await;
    let alice = basic("alice", PASSWORD);
    push_image_as(&server, "alice/app", "v1", &alice).await;
    set_visibility(&server, "alice/app", "private", &alice).await;
    let key = signing_key(&server).await;
    let pull = vec![berth_auth::Grant {
        kind: "repository".into(),
        name: "alice/app".into(),
        actions: vec!["pull".into()],
    }];
    let url = format!("sqlite://{}", server.data_dir.join("berth.db").display());
    let store = berth_meta::SqliteMetaStore::open(&url).await.unwrap();
    let epoch = store
        .user("alice")
        .await
        .unwrap()
        .unwrap()
        .credentials_epoch;
    let as_alice = berth_auth::Credential::Password { epoch };

    // A correctly signed token works: the test signs the way the server does.
    let good = TokenSigner::new(key.as_bytes(), "berth", 300)
        .issue_access(Some("alice"), Some(&as_alice), pull.clone(), now())
        .unwrap();
    let ok = get_manifest(&server, "alice/app", "v1", Some(&format!("Bearer {good}"))).await;
    assert_eq!(ok.status(), 200);

    let expired = TokenSigner::new(key.as_bytes(), "berth", 300)
        .issue_access(Some("alice"), Some(&as_alice), pull.clone(), now() - 3600)
        .unwrap();
    let wrong_audience = TokenSigner::new(key.as_bytes(), "another-registry", 300)
        .issue_access(Some("alice"), Some(&as_alice), pull.clone(), now())
        .unwrap();
    let wrong_key = TokenSigner::new(b"someone else's key", "berth", 300)
        .issue_access(Some("alice"), Some(&as_alice), pull.clone(), now())
        .unwrap();
    // An anonymous token edited to claim alice's name: the signature no longer matches.
    let anonymous_token = TokenSigner::new(key.as_bytes(), "berth", 300)
        .issue_access(None, None, pull.clone(), now())
        .unwrap();
    let mut payload = claims(&anonymous_token);
    payload["sub"] = "alice".into();
    payload["epoch"] = epoch.into();
    let parts: Vec<&str> = anonymous_token.split('.').collect();
    let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&payload).unwrap());
    let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    // "alg": "none" with no signature.
    let unsigned_header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{unsigned_header}.{forged_payload}.");
    // A refresh token is not an access token.
    let refresh = TokenSigner::new(key.as_bytes(), "berth", 300)
        .issue_refresh("alice", &as_alice, now(), now() + 600)
        .unwrap();

    for (what, jwt) in [
        ("expired", &expired),
        ("wrong audience", &wrong_audience),
        ("wrong key", &wrong_key),
        ("tampered", &tampered),
        ("unsigned", &unsigned),
        ("refresh token", &refresh),
    ] {
        let r = get_manifest(&server, "alice/app", "v1", Some(&format!("Bearer {jwt}"))).await;
        assert_eq!(r.status(), 401, "{what}");
        assert!(
            header(&r, "www-authenticate").contains("invalid_token"),
            "{what}"
        );
        assert_eq!(error_code(r).await, "UNAUTHORIZED", "{what}");
    }

    // A password change ends tokens issued on the old password.
    let r = call(
        &server,
        Method::PUT,
        "/api/v1/users/alice/password",
        Some(&alice),
        Some(json!({ "password": "another-long-password", "current_password": PASSWORD })),
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = get_manifest(&server, "alice/app", "v1", Some(&format!("Bearer {good}"))).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn oauth_password_and_refresh_grants() {
    let server = auth_server().await;
    add_user(&server, "alice").await;
    let form = |fields: &[(&str, &str)]| {
        fields
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    let post = |body: String| {
        anonymous()
            .post(server.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = post(form(&[
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", PASSWORD),
        ("service", "berth"),
        ("client_id", "docker"),
        ("access_type", "offline"),
        ("scope", "repository:alice/app:pull,push"),
    ]))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(granted(&body, "alice/app"), ["pull", "push"]);
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();

    let r = post(form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh),
        ("service", "berth"),
        ("client_id", "docker"),
        (
            "scope",
            "repository:alice/app:pull repository:alice/other:push",
        ),
    ]))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(granted(&body, "alice/app"), ["pull"]);
    assert_eq!(granted(&body, "alice/other"), ["push"]);
    assert!(body["access_token"].is_string());

    let r = post(form(&[
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "wrong-password"),
        ("client_id", "docker"),
    ]))
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let r = post(form(&[("grant_type", "client_credentials")]))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // A password change ends the refresh token (docker's stored identity token).
    let r = call(
        &server,
        Method::PUT,
        "/api/v1/users/alice/password",
        Some(&basic("alice", PASSWORD)),
        Some(json!({ "password": "another-long-password", "current_password": PASSWORD })),
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = post(form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh),
        ("client_id", "docker"),
    ]))
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn mounts_need_pull_rights_on_the_source() {
    let server = auth_server().await;
    add_user(&server, "alice").await;
    add_user(&server, "bob").await;
    let alice = basic("alice", PASSWORD);
    let bob = basic("bob", PASSWORD);
    let layer = b"alice's private base layer".to_vec();
    set_visibility(&server, "alice/base", "private", &alice).await;
    assert_eq!(
        post_blob(&server, "alice/base", Some(&alice), &layer)
            .await
            .status(),
        201
    );
    let digest = sha256(&layer);
    let mount = |auth: String| {
        let url = server.url(&format!(
            "/v2/bob/app/blobs/uploads/?mount={digest}&from=alice/base"
        ));
        async move {
            anonymous()
                .post(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap()
        }
    };

    // Bob cannot read alice/base: no mount, an ordinary upload session instead.
    let r = mount(bob.clone()).await;
    assert_eq!(r.status(), 202);
    assert!(header(&r, "location").contains("/v2/bob/app/blobs/uploads/"));
    let head = call(
        &server,
        Method::HEAD,
        &format!("/v2/bob/app/blobs/{digest}"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(head.status(), 404);
    // Nor by leaving out `from`.
    let r = anonymous()
        .post(server.url(&format!("/v2/bob/app/blobs/uploads/?mount={digest}")))
        .header("authorization", &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // Once alice/base is public, the same mount succeeds, with a bearer token too.
    set_visibility(&server, "alice/base", "public", &alice).await;
    let bearer = bearer_for(
        &server,
        Some(("bob", PASSWORD)),
        &["repository:bob/app:pull,push", "repository:alice/base:pull"],
    )
    .await;
    let r = mount(bearer).await;
    assert_eq!(r.status(), 201);
    let head = call(
        &server,
        Method::HEAD,
        &format!("/v2/bob/app/blobs/{digest}"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(head.status(), 200);
}

#[tokio::test]
async fn the_catalog_lists_only_what_the_caller_may_read() {
    let server = auth_server().await;
    add_user(&server, "alice").await;
    add_user(&server, "bob").await;
    let alice = basic("alice", PASSWORD);
    let bob = basic("bob", PASSWORD);
    push_image_as(&server, "alice/open", "v1", &alice).await;
    set_visibility(&server, "alice/secret", "private", &alice).await;
    push_image_as(&server, "alice/secret", "v1", &alice).await;
    set_visibility(&server, "bob/secret", "private", &bob).await;
    push_image_as(&server, "bob/secret", "v1", &bob).await;

    async fn catalog(server: &TestServer, auth: Option<&str>) -> Vec<String> {
        let r = call(server, Method::GET, "/v2/_catalog", auth, None).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        body["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }
    assert_eq!(catalog(&server, None).await, ["alice/open"]);
    assert_eq!(
        catalog(&server, Some(&alice)).await,
        ["alice/open", "alice/secret"]
    );
    assert_eq!(
        catalog(&server, Some(&bob)).await,
        ["alice/open", "bob/secret"]
    );
    assert_eq!(
        catalog(&server, Some(&admin())).await,
        ["alice/open", "alice/secret", "bob/secret"]
    );
    // A bearer token needs the registry:catalog:* scope, which anyone may have.
    let without = bearer_for(&server, Some(("bob", PASSWORD)), &[]).await;
    let r = call(&server, Method::GET, "/v2/_catalog", Some(&without), None).await;
    assert_eq!(r.status(), 401);
    assert!(header(&r, "www-authenticate").contains("scope=\"registry:catalog:*\""));
    let with = bearer_for(&server, Some(("bob", PASSWORD)), &["registry:catalog:*"]).await;
    assert_eq!(
        catalog(&server, Some(&with)).await,
        ["alice/open", "bob/secret"]
    );
    // The account API lists the same.
    let r = call(
        &server,
        Method::GET,
        "/api/v1/repositories?n=1",
        Some(&bob),
        None,
    )
    .await;
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["repositories"], json!(["alice/open"]));
    assert_eq!(page["more"], true);
    let r = call(&server, Method::GET, "/api/v1/repositories", None, None).await;
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["repositories"], json!(["alice/open"]));
}

#[tokio::test]
async fn organization_roles_decide_push_and_pull() {
    let server = auth_server().await;
    for user in ["owner", "writer", "reader", "outsider"] {
        add_user(&server, user).await;
    }
    let owner = basic("owner", PASSWORD);
    let r = call(
        &server,
        Method::POST,
        "/api/v1/orgs",
        Some(&owner),
        Some(json!({ "name": "team" })),
    )
    .await;
    assert_eq!(r.status(), 201);
    for (user, role) in [("writer", "write"), ("reader", "read")] {
        let r = call(
            &server,
            Method::PUT,
            &format!("/api/v1/orgs/team/members/{user}"),
            Some(&owner),
            Some(json!({ "role": role })),
        )
        .await;
        assert_eq!(r.status(), 204);
    }
    // Only the organization's admins manage members.
    let r = call(
        &server,
        Method::PUT,
        "/api/v1/orgs/team/members/outsider",
        Some(&basic("writer", PASSWORD)),
        Some(json!({ "role": "admin" })),
    )
    .await;
    assert_eq!(r.status(), 403);

    let writer = basic("writer", PASSWORD);
    set_visibility(&server, "team/app", "private", &owner).await;
    push_image_as(&server, "team/app", "v1", &writer).await;
    let reader = basic("reader", PASSWORD);
    assert_eq!(
        post_blob(&server, "team/app", Some(&reader), b"r")
            .await
            .status(),
        403
    );
    assert_eq!(
        get_manifest(&server, "team/app", "v1", Some(&reader))
            .await
            .status(),
        200
    );
    let outsider = basic("outsider", PASSWORD);
    assert_eq!(
        get_manifest(&server, "team/app", "v1", Some(&outsider))
            .await
            .status(),
        403
    );
    // Deleting needs write rights and the delete scope.
    let (_, rw) = add_token(&server, "writer", "read-write").await;
    let (_, rwd) = add_token(&server, "writer", "read-write-delete").await;
    let delete = |auth: String| {
        let url = server.url("/v2/team/app/manifests/v1");
        async move {
            anonymous()
                .delete(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(delete(reader.clone()).await.status(), 403);
    assert_eq!(delete(basic("writer", &rw)).await.status(), 403);
    assert_eq!(delete(basic("writer", &rwd)).await.status(), 202);

    let r = call(
        &server,
        Method::GET,
        "/api/v1/orgs/team/members",
        Some(&reader),
        None,
    )
    .await;
    let members: Value = r.json().await.unwrap();
    assert_eq!(members["members"].as_array().unwrap().len(), 3);

    // A bearer token stops granting what its holder has lost, before it expires.
    let bearer = bearer_for(
        &server,
        Some(("writer", PASSWORD)),
        &["repository:team/app:pull,push"],
    )
    .await;
    assert_eq!(
        post_blob(&server, "team/app", Some(&bearer), b"w1")
            .await
            .status(),
        201
    );
    let r = call(
        &server,
        Method::DELETE,
        "/api/v1/orgs/team/members/writer",
        Some(&owner),
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = post_blob(&server, "team/app", Some(&bearer), b"w2").await;
    assert_eq!(r.status(), 403);
    let r = get_manifest(&server, "team/app", "v1", Some(&bearer)).await;
    assert!(r.status() == 403 || r.status() == 404, "{}", r.status());
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_address_and_per_user() {
    let server = TestServer::start_with(|c| {
        c.open = false;
        c.auth.login_failures = 3;
    })
    .await;
    add_user(&server, "alice").await;
    add_user(&server, "carol").await;
    add_user(&server, "dave").await;
    let (_, alice_token) = add_token(&server, "alice", "read").await;
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let attempt = |client: reqwest::Client, user: &str, password: &str| {
        let url = server.url("/v2/");
        let auth = basic(user, password);
        async move {
            client
                .get(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap()
        }
    };
    // Three wrong passwords from one address...
    for _ in 0..3 {
        assert_eq!(
            attempt(from("127.0.0.2"), "alice", "wrong-guess")
                .await
                .status(),
            401
        );
    }
    // ...and that address is refused even with the right password, for another user
    // too, and on /token.
    let r = attempt(from("127.0.0.2"), "alice", PASSWORD).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(error_code(r).await, "TOOMANYREQUESTS");
    assert_eq!(
        attempt(from("127.0.0.2"), "carol", PASSWORD).await.status(),
        429
    );
    let r = from("127.0.0.2")
        .get(server.url("/token?service=berth"))
        .header("authorization", basic("carol", PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // The user alice is locked out too (she was the one guessed at), from anywhere.
    assert_eq!(
        attempt(from("127.0.0.3"), "alice", PASSWORD).await.status(),
        429
    );
    // Her access tokens still work: they cannot be guessed.
    assert_eq!(
        attempt(from("127.0.0.3"), "alice", &alice_token)
            .await
            .status(),
        200
    );
    // Others elsewhere are not affected.
    assert_eq!(
        attempt(from("127.0.0.3"), "carol", PASSWORD).await.status(),
        200
    );
    // A burst of guesses sent at once gets no more tries than guesses sent in turn.
    let burst: Vec<_> = (0..12)
        .map(|_| attempt(from("127.0.0.4"), "dave", "wrong-guess"))
        .collect();
    let statuses: Vec<u16> = futures::future::join_all(burst)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        9,
        "{statuses:?}"
    );
}

/// Two nodes on one database (the first one's SQLite file, or PostgreSQL with
/// `BERTH_TEST_DATABASE=postgres`) count failed sign-ins together: guesses alternating
/// between them get `--login-failures` tries in all, not per node, and the lock then
/// holds on both until the window ends — for the right password too, even where a node
/// verified it a moment ago.
#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_in_limits_hold_across_nodes() {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
    let a = TestServer::start_with(|c| {
        c.open = false;
        c.auth.login_failures = 3;
        c.auth.login_window = WINDOW;
    })
    .await;
    let database = a.database.clone();
    let b = TestServer::start_with(move |c| {
        c.open = false;
        c.auth.login_failures = 3;
        c.auth.login_window = WINDOW;
        c.database = database;
    })
    .await;
    add_user(&a, "alice").await;
    add_user(&a, "carol").await;
    let (_, alice_token) = add_token(&a, "alice", "read").await;
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let attempt = |node: &TestServer, ip: &str, user: &str, password: &str| {
        from(ip)
            .get(node.url("/v2/"))
            .header("authorization", basic(user, password))
            .send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    // alice's password, verified on both nodes: each remembers it.
    for node in [&a, &b] {
        assert_eq!(
            status(attempt(node, "127.0.0.3", "alice", PASSWORD).await.unwrap()),
            200
        );
    }
    // Three wrong guesses from one address, alternating nodes: no node saw three.
    for (i, node) in [&a, &b, &a].into_iter().enumerate() {
        let r = attempt(node, "127.0.0.2", "alice", "wrong-guess")
            .await
            .unwrap();
        assert_eq!(status(r), 401, "guess {}", i + 1);
    }
    // The fourth is refused, on either node.
    for node in [&b, &a] {
        let r = attempt(node, "127.0.0.2", "alice", "wrong-guess")
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "node {}", node.port);
        let wait: u64 = header(&r, "retry-after").parse().unwrap();
        assert!((1..=WINDOW.as_secs()).contains(&wait), "{wait}");
    }
    // So is the right password: from that address (for another user too), and for
    // alice from anywhere, even on the node that remembers it. Access tokens still
    // work, and others elsewhere are not affected.
    for node in [&a, &b] {
        let port = node.port;
        let r = attempt(node, "127.0.0.2", "alice", PASSWORD).await.unwrap();
        assert_eq!(status(r), 429, "node {port}: the address and the user");
        let r = attempt(node, "127.0.0.3", "alice", PASSWORD).await.unwrap();
        assert_eq!(status(r), 429, "node {port}: the user, from elsewhere");
        let r = attempt(node, "127.0.0.2", "carol", PASSWORD).await.unwrap();
        assert_eq!(status(r), 429, "node {port}: another user from the address");
        let r = attempt(node, "127.0.0.3", "alice", &alice_token)
            .await
            .unwrap();
        assert_eq!(status(r), 200, "node {port}: an access token");
        let r = attempt(node, "127.0.0.3", "carol", PASSWORD).await.unwrap();
        assert_eq!(status(r), 200, "node {port}: someone else elsewhere");
    }
    // When the window ends, the right password works again on both.
    let r = attempt(&a, "127.0.0.2", "alice", PASSWORD).await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = header(&r, "retry-after").parse().unwrap();
    tokio::time::sleep(
        std::time::Duration::from_secs(wait) + std::time::Duration::from_millis(500),
    )
    .await;
    for node in [&a, &b] {
        let r = attempt(node, "127.0.0.2", "alice", PASSWORD).await.unwrap();
        assert_eq!(status(r), 200, "node {}", node.port);
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_limited() {
    let server = TestServer::start_with(|c| {
        c.open = false;
        c.auth.login_failures = 2;
        c.auth.trust_forwarded_for = true;
    })
    .await;
    add_user(&server, "alice").await;
    add_user(&server, "bob").await;
    let attempt = |forwarded: &str, user: &str, password: &str| {
        anonymous()
            .get(server.url("/v2/"))
            .header("x-forwarded-for", forwarded)
            .header("authorization", basic(user, password))
            .send()
    };
    for _ in 0..2 {
        let r = attempt("10.9.9.9, 10.0.0.1", "alice", "wrong-guess")
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // The proxy's entry (the last one) is the client: spoofing the first changes nothing.
    let r = attempt("1.2.3.4, 10.0.0.1", "bob", PASSWORD).await.unwrap();
    assert_eq!(r.status(), 429);
    // Another client behind the same proxy is not locked out with it.
    let r = attempt("10.0.0.2", "bob", PASSWORD).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_account_api_with_sessions_and_tokens() {
    let server = auth_server().await;
    add_user(&server, "alice").await;
    // Sign in for a session cookie.
    let r = call(
        &server,
        Method::POST,
        "/api/v1/session",
        None,
        Some(json!({ "username": "alice", "password": PASSWORD })),
    )
    .await;
    assert_eq!(r.status(), 200);
    let set_cookie = header(&r, "set-cookie").to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let with_cookie = |method: Method, path: &str, body: Option<Value>| {
        let mut request = anonymous()
            .request(method, server.url(path))
            .header("cookie", cookie.clone());
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    // Cookie requests from another origin are refused.
    let r = anonymous()
        .get(server.url("/api/v1/me"))
        .header("cookie", cookie.clone())
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A docker identity token (refresh token) is not a session.
    let (_, body) = fetch_token_offline(&server, "alice").await;
    let refresh = body["refresh_token"].as_str().unwrap();
    let r = anonymous()
        .get(server.url("/api/v1/me"))
        .header("cookie", format!("berth_session={refresh}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let me: Value = with_cookie(Method::GET, "/api/v1/me", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["name"], "alice");
    assert_eq!(me["admin"], false);

    let r = with_cookie(
        Method::POST,
        "/api/v1/tokens",
        Some(json!({ "name": "ci", "scope": "read-write", "expires_in": "30d" })),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("berth_pat_"));
    assert!(created["expires_at"].as_i64().unwrap() > now() + 29 * 24 * 3600);

    // Listing shows the token, when it was last used, but never its secret.
    let r = with_cookie(Method::GET, "/api/v1/tokens", None)
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("\"ci\"") && !text.contains(&secret[10..]));
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert!(listed["tokens"][0]["last_used_at"].is_null());
    let r = call(
        &server,
        Method::GET,
        "/v2/",
        Some(&basic("alice", &secret)),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let listed: Value = with_cookie(Method::GET, "/api/v1/tokens", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed["tokens"][0]["last_used_at"].as_i64().unwrap() >= now() - 60);
    // A token may read the API but not mint more tokens or touch users.
    let as_token = format!("Bearer {secret}");
    let r = call(&server, Method::GET, "/api/v1/me", Some(&as_token), None).await;
    assert_eq!(r.json::<Value>().await.unwrap()["via_token"], true);
    let r = call(
        &server,
        Method::POST,
        "/api/v1/tokens",
        Some(&as_token),
        Some(json!({ "scope": "read-write-delete" })),
    )
    .await;
    assert_eq!(r.status(), 403);
    // Only administrators manage users.
    let r = with_cookie(Method::GET, "/api/v1/users", None)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = call(&server, Method::GET, "/api/v1/users", Some(&admin()), None).await;
    let users: Value = r.json().await.unwrap();
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "alice"]);
    let r = call(
        &server,
        Method::POST,
        "/api/v1/users",
        Some(&admin()),
        Some(json!({ "name": "alice", "password": PASSWORD })),
    )
    .await;
    assert_eq!(r.status(), 409);
    let r = call(
        &server,
        Method::POST,
        "/api/v1/users",
        Some(&admin()),
        Some(json!({ "name": "Not Valid", "password": PASSWORD })),
    )
    .await;
    assert_eq!(r.status(), 400);

    // Signing out clears the cookie; without credentials the API answers 401.
    let r = call(&server, Method::DELETE, "/api/v1/session", None, None).await;
    assert!(header(&r, "set-cookie").contains("Max-Age=0"));
    let r = call(&server, Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(r.status(), 401);
    // Removing a user ends their tokens and sessions.
    let r = call(
        &server,
        Method::DELETE,
        "/api/v1/users/alice",
        Some(&admin()),
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = call(&server, Method::GET, "/api/v1/me", Some(&as_token), None).await;
    assert_eq!(r.status(), 401);
    let r = with_cookie(Method::GET, "/api/v1/me", None).await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn namespace_and_server_defaults_decide_new_repositories() {
    let server = TestServer::start_with(|c| {
        c.open = false;
        c.auth.default_public = false;
    })
    .await;
    add_user(&server, "alice").await;
    add_user(&server, "bob").await;
    let alice = basic("alice", PASSWORD);
    push_image_as(&server, "alice/app", "v1", &alice).await;
    assert_eq!(
        get_manifest(&server, "alice/app", "v1", None)
            .await
            .status(),
        401
    );
    let r = call(
        &server,
        Method::PUT,
        "/api/v1/namespaces/bob/default-visibility",
        Some(&basic("bob", PASSWORD)),
        Some(json!({ "visibility": "public" })),
    )
    .await;
    assert_eq!(r.status(), 204);
    push_image_as(&server, "bob/app", "v1", &basic("bob", PASSWORD)).await;
    assert_eq!(
        get_manifest(&server, "bob/app", "v1", None).await.status(),
        200
    );
    // Alice may not set bob's default.
    let r = call(
        &server,
        Method::PUT,
        "/api/v1/namespaces/bob/default-visibility",
        Some(&alice),
        Some(json!({ "visibility": "private" })),
    )
    .await;
    assert_eq!(r.status(), 403);
}

/// The real binary with auth on, stdout and stderr appended to a log file.
struct LoggedBerth {
    child: std::process::Child,
    base: String,
}

impl LoggedBerth {
    /// Starts `berth serve` on `port` over `data_dir` (no `BERTH_*` from the test's
    /// environment, only `env`) and waits until it answers.
    async fn start(
        data_dir: &std::path::Path,
        port: u16,
        log_path: &std::path::Path,
        env: &[(&str, &str)],
    ) -> LoggedBerth {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_berth"));
        command
            .args([
                "serve",
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data_dir);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("BERTH_") {
                command.env_remove(key);
            }
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .unwrap();
        let child = command
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let berth = LoggedBerth {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if anonymous()
                .get(format!("{}/v2/", berth.base))
                .send()
                .await
                .is_ok()
            {
                return berth;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        berth.stop();
        panic!(
            "berth did not start: {}",
            std::fs::read_to_string(log_path).unwrap_or_default()
        );
    }

    /// SIGTERM (through the kill command: no extra crate for signals), then wait.
    fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// Runs the real binary with debug logging (request traces included) through sign-ins,
/// token grants, a session, a failed login and a push, then searches its whole log for
/// every secret that passed through it.
#[tokio::test(flavor = "multi_thread")]
async fn no_log_line_contains_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("berth.log");
    let admin_password = "admin-password-in-the-environment";
    let berth = LoggedBerth::start(
        &dir.path().join("data"),
        free_port(),
        &log_path,
        &[
            ("BERTH_ADMIN_PASSWORD", admin_password),
            ("RUST_LOG", "debug,tower_http=trace"),
        ],
    )
    .await;
    let base = berth.base.clone();
    let client = anonymous();
    let admin = basic("admin", admin_password);
    let mut secrets: Vec<String> = vec![
        admin_password.into(),
        PASSWORD.into(),
        "wrong-password-guess".into(),
    ];

    let r = client
        .post(format!("{base}/api/v1/users"))
        .header("authorization", &admin)
        .json(&json!({ "name": "alice", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .post(format!("{base}/api/v1/tokens"))
        .header("authorization", basic("alice", PASSWORD))
        .json(&json!({ "scope": "read-write" }))
        .send()
        .await
        .unwrap();
    let pat = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.push(pat.clone());
    let r = client
        .get(format!(
            "{base}/token?service=berth&offline_token=true&scope=repository:alice/app:pull,push"
        ))
        .header("authorization", basic("alice", &pat))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let jwt = body["token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    secrets.extend([jwt.clone(), refresh.clone()]);
    let r = client
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("service", "berth"),
            ("client_id", "test"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    secrets.push(
        r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let r = client
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("access_type", "offline"),
            ("client_id", "test"),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    secrets.push(body["refresh_token"].as_str().unwrap().to_owned());
    let r = client
        .post(format!("{base}/api/v1/session"))
        .json(&json!({ "username": "alice", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let cookie = header(&r, "set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    secrets.push(cookie.split_once('=').unwrap().1.to_owned());
    let r = client
        .get(format!("{base}/v2/"))
        .header("authorization", basic("alice", "wrong-password-guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(format!(
            "{base}/v2/alice/app/blobs/uploads/?digest={}",
            sha256(b"layer")
        ))
        .header("authorization", format!("Bearer {jwt}"))
        .body(b"layer".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    berth.stop();
    let log = std::fs::read_to_string(&log_path).unwrap();
    // The log is really there, at debug level, with requests and the failed sign-in.
    assert!(
        log.contains("failed sign-in") && log.contains("/token"),
        "{log}"
    );
    let hashes_or_keys = ["$argon2", "jwt_hs256_key", "berth_pat_"];
    for secret in secrets.iter().map(String::as_str).chain(hashes_or_keys) {
        assert!(
            !log.contains(secret),
            "the log contains a secret ({secret:.12}…):\n{log}"
        );
    }
    // Nor any part of a token or JWT long enough to matter.
    for secret in &secrets {
        if secret.len() > 40 {
            assert!(
                !log.contains(&secret[secret.len() - 24..]),
                "a secret's tail is in the log"
            );
        }
    }
}

/// With no password given, the first administrator's is generated and logged once, and
/// it works.
#[tokio::test(flavor = "multi_thread")]
async fn the_generated_admin_password_is_logged_once_and_works() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log_path = dir.path().join("berth.log");
    let data_dir = dir.path().join("data");
    let base = format!("http://127.0.0.1:{port}");
    let sign_in = |password: String| {
        let url = format!("{base}/v2/");
        async move {
            anonymous()
                .get(url)
                .header("authorization", basic("admin", &password))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let berth = LoggedBerth::start(&data_dir, port, &log_path, &[]).await;
    // Signing in waits for the administrator to exist, so this cannot race start-up.
    assert_eq!(sign_in("not-the-password".into()).await, 401);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let password = log
        .split("password \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no generated password in the log:\n{log}"))
        .to_owned();
    assert_eq!(sign_in(password.clone()).await, 200);
    berth.stop();
    // A restart does not generate (or print) another.
    let berth = LoggedBerth::start(&data_dir, port, &log_path, &[]).await;
    assert_eq!(sign_in(password.clone()).await, 200);
    berth.stop();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(
        log.matches("created the first administrator").count(),
        1,
        "{log}"
    );
}
