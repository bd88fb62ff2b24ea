//! Account helpers shared by the tests that sign in: the administrator's credentials,
//! users and access tokens made through `/api/v1`, and one JSON request helper, for an
//! in-process server and the real binary alike.

use reqwest::Method;
use serde_json::{Value, json};

use crate::{ADMIN_PASSWORD, TestServer, anonymous, basic};

/// Every test user's password.
pub const PASSWORD: &str = "a-long-password";

/// A running berth, in-process or the binary.
pub trait Server {
    fn url(&self, path: &str) -> String;
}

impl Server for TestServer {
    fn url(&self, path: &str) -> String {
        TestServer::url(self, path)
    }
}

#[cfg(unix)]
impl Server for crate::process::BerthProcess {
    fn url(&self, path: &str) -> String {
        crate::process::BerthProcess::url(self, path)
    }
}

/// The administrator's Basic credentials.
pub fn admin() -> String {
    basic("admin", ADMIN_PASSWORD)
}

/// One request, with `authorization` and a JSON `body` when given.
pub async fn call(
    server: &impl Server,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = anonymous().request(method, server.url(path));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// Creates a user (with [`PASSWORD`]) through the API as the administrator.
pub async fn add_user(server: &impl Server, name: &str) {
    let r = call(
        server,
        Method::POST,
        "/api/v1/users",
        Some(&admin()),
        Some(json!({ "name": name, "password": PASSWORD })),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// Creates an access token for `user` (signed in with their password); returns its id
/// and secret.
pub async fn add_token(server: &impl Server, user: &str, scope: &str) -> (String, String) {
    let r = call(
        server,
        Method::POST,
        "/api/v1/tokens",
        Some(&basic(user, PASSWORD)),
        Some(json!({ "name": "test", "scope": scope })),
    )
    .await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["token"].as_str().unwrap().to_owned(),
    )
}
