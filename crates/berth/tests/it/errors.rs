//! Bad input gets the spec's JSON error with the right code and status, never a panic,
//! a hang or a plain-text answer.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::*;

#[tokio::test(flavor = "multi_thread")]
async fn malformed_repository_names_are_name_invalid() {
    let s = TestServer::start().await;
    for name in [
        "UPPER/case",
        "a//b",
        "-lead",
        "trail_",
        "sp%20ace",
        &"x".repeat(256),
    ] {
        let r = http()
            .get(s.url(&format!("/v2/{name}/tags/list")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{name}");
        assert_eq!(header(&r, "content-type"), "application/json");
        assert_eq!(error_code(r).await, "NAME_INVALID", "{name}");
    }
    let r = http()
        .post(s.url("/v2/Bad/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "NAME_INVALID");
    // HTTP clients normalize dot segments away; a raw request keeps them.
    for path in [
        "/v2/a/../b/tags/list",
        "/v2/a/./b/tags/list",
        "/v2/../../etc/blobs/uploads/",
    ] {
        let answer = raw_request(
            &s.host,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("NAME_INVALID"), "{path}: {answer}");
    }
}

async fn raw_request(host: &str, request: &str) -> String {
    let (host, request) = (host.to_owned(), request.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_tags_on_put_are_refused() {
    let s = TestServer::start().await;
    let long = "t".repeat(129);
    for tag in [long.as_str(), ".dot", "-dash"] {
        let r = put_manifest(&s.base, "tags", tag, b"{}").await;
        assert_eq!(r.status(), 400, "{tag}");
        assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    }
    let r = put_manifest(&s.base, "tags", "sha256:abc?tag=bad!tag", b"{}").await;
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_digests_are_digest_invalid() {
    let s = TestServer::start().await;
    for digest in ["sha256:short", "sha256:ZZZZ", "nocolon", "sha256:"] {
        let r = http()
            .get(s.url(&format!("/v2/d/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{digest}");
        assert_eq!(error_code(r).await, "DIGEST_INVALID", "{digest}");
    }
    let r = http()
        .post(s.url("/v2/d/blobs/uploads/?mount=sha256:bad&from=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_endpoints_and_methods_answer_in_the_oci_envelope() {
    let s = TestServer::start().await;
    let r = http().get(s.url("/v2/just-a-name")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
    let r = http().get(s.url("/nothing/here")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
    let r = http().post(s.url("/v2/a/tags/list")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
    let r = http()
        .patch(s.url("/v2/a/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn error_bodies_have_the_spec_shape() {
    let s = TestServer::start().await;
    let r = http()
        .get(s.url("/v2/x/manifests/missing"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    let error = &body["errors"][0];
    assert_eq!(error["code"], "MANIFEST_UNKNOWN");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(error.get("detail").is_some());
}

/// The Docker engine tries HTTPS first; a plain-HTTP registry must answer or close at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_tls_client_hello_is_answered_or_closed_at_once() {
    let s = TestServer::start().await;
    let host = s.host.clone();
    let elapsed = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&host).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The start of a TLS 1.2/1.3 ClientHello record.
        let hello: [u8; 16] = [0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03, 1, 2, 3, 4, 5];
        stream.write_all(&hello).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 512];
        let result = stream.read(&mut buf);
        assert!(
            !matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
            "the server left a TLS handshake hanging"
        );
        started.elapsed()
    })
    .await
    .unwrap();
    assert!(
        elapsed < Duration::from_secs(2),
        "answered after {elapsed:?}"
    );
}
