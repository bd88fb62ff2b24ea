//! end-2 (GET/HEAD blob, ranges), end-10 (DELETE blob), repository scoping of blobs,
//! cross-repository mount (end-11) and the one-copy-on-disk guarantee.

use crate::*;

#[tokio::test(flavor = "multi_thread")]
async fn end_1_api_version_answers_with_the_version_header() {
    let s = TestServer::start().await;
    let r = http().get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(r.text().await.unwrap(), "{}");
}

#[tokio::test(flavor = "multi_thread")]
async fn end_2_get_and_head_blob_with_digest_length_and_etag() {
    let s = TestServer::start().await;
    let data = b"hello blob".to_vec();
    let digest = push_blob(&s.base, "a/b", &data).await;
    let r = http()
        .head(s.url(&format!("/v2/a/b/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), "10");
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_eq!(header(&r, "etag"), format!("\"{digest}\""));
    let r = http()
        .get(s.url(&format!("/v2/a/b/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn end_2_unknown_blob_is_blob_unknown_on_get_and_404_on_head() {
    let s = TestServer::start().await;
    let missing = sha256(b"never pushed");
    let r = http()
        .get(s.url(&format!("/v2/a/blobs/{missing}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    let r = http()
        .head(s.url(&format!("/v2/a/blobs/{missing}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn end_2_range_requests_follow_the_conformance_table() {
    let s = TestServer::start().await;
    let data: Vec<u8> = (0..2048u32).map(|i| (i * 7 % 256) as u8).collect();
    let digest = push_blob(&s.base, "r/blob", &data).await;
    let url = s.url(&format!("/v2/r/blob/blobs/{digest}"));
    for (range, start, end) in [
        ("bytes=500-1499", 500, 1500),
        ("bytes=500-", 500, 2048),
        ("bytes=-500", 1548, 2048),
        ("bytes=2000-5000", 2000, 2048),
    ] {
        let r = http()
            .get(&url)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes {start}-{}/2048", end - 1),
            "{range}"
        );
        assert_eq!(header(&r, "content-length"), (end - start).to_string());
        assert_eq!(r.bytes().await.unwrap(), &data[start..end], "{range}");
    }
    for range in ["bytes=500-0", "bytes=5000-10000", "bytes=abc"] {
        let r = http()
            .get(&url)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 416, "{range}");
        assert_eq!(header(&r, "content-range"), "bytes */2048");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn end_10_delete_blob_unlinks_it_from_that_repository_only() {
    let s = TestServer::start().await;
    let digest = push_blob(&s.base, "one", b"shared").await;
    push_blob(&s.base, "two", b"shared").await;
    let r = http()
        .delete(s.url(&format!("/v2/one/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http()
        .head(s.url(&format!("/v2/one/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http()
        .get(s.url(&format!("/v2/two/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), &b"shared"[..]);
    let r = http()
        .delete(s.url(&format!("/v2/one/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_never_serves_a_blob_it_never_had() {
    let s = TestServer::start().await;
    let digest = push_blob(&s.base, "owner/private-ish", b"secret layer").await;
    let r = http()
        .get(s.url(&format!("/v2/other/repo/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread")]
async fn end_11_mount_from_a_repository_that_has_the_blob_is_201() {
    let s = TestServer::start().await;
    let digest = push_blob(&s.base, "diamol/ch03-lab", b"base layer").await;
    // Parameters in either order, percent-encoded or not.
    for (repo, query) in [
        (
            "gallery/ui",
            format!(
                "mount={}&from=diamol%2Fch03-lab",
                digest.replace(':', "%3A")
            ),
        ),
        (
            "gallery/api",
            format!("from=diamol/ch03-lab&mount={digest}"),
        ),
    ] {
        let r = http()
            .post(s.url(&format!("/v2/{repo}/blobs/uploads/?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{query}");
        assert_eq!(header(&r, "location"), format!("/v2/{repo}/blobs/{digest}"));
        assert_eq!(header(&r, "docker-content-digest"), digest);
        let r = http()
            .get(s.url(&format!("/v2/{repo}/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap(), &b"base layer"[..]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn end_11_mount_of_an_unknown_blob_falls_back_to_an_upload_session() {
    let s = TestServer::start().await;
    push_blob(&s.base, "src", b"in src").await;
    let missing = sha256(b"not anywhere");
    for query in [
        format!("mount={missing}&from=src"),
        format!("mount={missing}"),
    ] {
        let r = http()
            .post(s.url(&format!("/v2/dst/blobs/uploads/?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{query}");
        assert!(header(&r, "location").starts_with("/v2/library/dst/blobs/uploads/"));
    }
    // A blob that exists, but not in `from`, is not mounted from there.
    let elsewhere = push_blob(&s.base, "elsewhere", b"elsewhere").await;
    let r = http()
        .post(s.url(&format!(
            "/v2/dst/blobs/uploads/?mount={elsewhere}&from=src"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

#[tokio::test(flavor = "multi_thread")]
async fn end_11_mount_without_from_finds_a_blob_anywhere_in_the_registry() {
    let s = TestServer::start().await;
    let digest = push_blob(&s.base, "somewhere/else", b"known layer").await;
    let r = http()
        .post(s.url(&format!("/v2/new/repo/blobs/uploads/?mount={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http()
        .head(s.url(&format!("/v2/new/repo/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_pushed_to_two_repositories_is_stored_once() {
    let s = TestServer::start().await;
    let layer = vec![42u8; 100_000];
    let digest = push_blob(&s.base, "team/one", &layer).await;
    push_blob(&s.base, "team/two", &layer).await;
    let r = http()
        .post(s.url(&format!(
            "/v2/team/three/blobs/uploads/?mount={digest}&from=team/one"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        s.stored_copies(&digest).await,
        1,
        "one copy stored for a layer in three repositories"
    );
    for repo in ["team/one", "team/two", "team/three"] {
        let r = http()
            .get(s.url(&format!("/v2/{repo}/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().len(), 100_000);
    }
}
