//! end-4a/4b (POST), end-5 (PATCH), end-6 (PUT), end-13 (status), upload cancel,
//! digest verification and algorithms, session expiry.

use std::time::Duration;

use crate::*;

async fn start(s: &TestServer, repo: &str) -> String {
    let r = http()
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-0");
    assert!(!header(&r, "docker-upload-uuid").is_empty());
    header(&r, "location").to_owned()
}

async fn patch(
    s: &TestServer,
    location: &str,
    range: Option<&str>,
    body: &[u8],
) -> reqwest::Response {
    let mut req = http()
        .patch(s.url(location))
        .header("content-type", "application/octet-stream")
        .body(body.to_vec());
    if let Some(range) = range {
        req = req.header("content-range", range);
    }
    req.send().await.unwrap()
}

async fn assert_served(s: &TestServer, repo: &str, digest: &str, data: &[u8]) {
    let r = http()
        .get(s.url(&format!("/v2/{repo}/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_eq!(r.bytes().await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn end_4b_monolithic_post_with_digest_is_201() {
    let s = TestServer::start().await;
    let digest = push_blob(&s.base, "mono", b"one request").await;
    assert_served(&s, "mono", &digest, b"one request").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn end_4a_post_then_put_with_body() {
    let s = TestServer::start().await;
    let loc = start(&s, "pp").await;
    let digest = sha256(b"put body");
    let r = http()
        .put(s.url(&format!("{loc}?digest={digest}")))
        .body("put body")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        header(&r, "location"),
        format!("/v2/library/pp/blobs/{digest}"),
        "a bare name is library/…"
    );
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_served(&s, "pp", &digest, b"put body").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn end_5_streamed_patch_then_empty_put() {
    let s = TestServer::start().await;
    let data = vec![7u8; 3 * 1024 * 1024 + 17];
    let loc = start(&s, "stream").await;
    let r = patch(&s, &loc, None, &data).await;
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), format!("0-{}", data.len() - 1));
    assert_eq!(
        header(&r, "location"),
        loc,
        "the Location stays the same for the whole session"
    );
    let digest = sha256(&data);
    let r = http()
        .put(s.url(&format!("{loc}?digest={digest}")))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_served(&s, "stream", &digest, &data).await;
}

/// Megabyte chunks of odd sizes, back to back, then a final chunk with the PUT: the
/// store writes large chunks past the page cache and lets each chunk's last writes land
/// after its response, so every byte must still be where the digest says, on the
/// first read (from disk) and on later ones (through the page cache).
#[tokio::test(flavor = "multi_thread")]
async fn large_chunks_back_to_back_are_stored_exactly() {
    let s = TestServer::start().await;
    let data = pseudo_random(21 * 1024 * 1024 + 12_345, 11);
    let sizes = [
        3 * 1024 * 1024 + 5,
        4 * 1024 * 1024 - 3,
        1,
        6 * 1024 * 1024 + 4_095,
    ];
    let loc = start(&s, "big/chunks").await;
    let mut at = 0;
    for size in sizes {
        let range = format!("{at}-{}", at + size - 1);
        let r = patch(&s, &loc, Some(&range), &data[at..at + size]).await;
        assert_eq!(r.status(), 202, "chunk {range}");
        assert_eq!(header(&r, "range"), format!("0-{}", at + size - 1));
        at += size;
    }
    let digest = sha256(&data);
    let r = http()
        .put(s.url(&format!("{loc}?digest={digest}")))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{at}-{}", data.len() - 1))
        .body(data[at..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for _ in 0..3 {
        assert_served(&s, "big/chunks", &digest, &data).await;
    }
    let r = http()
        .get(s.url(&format!("/v2/big/chunks/blobs/{digest}")))
        .header("range", "bytes=4097-9000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(r.bytes().await.unwrap() == data[4097..=9_000_000]);

    // The same shape with a wrong digest at the end publishes nothing.
    let loc = start(&s, "big/chunks").await;
    let r = patch(&s, &loc, Some("0-8388607"), &data[..8 * 1024 * 1024]).await;
    assert_eq!(r.status(), 202);
    let wrong = sha256(&data[..8 * 1024 * 1024 - 1]);
    let r = http()
        .put(s.url(&format!("{loc}?digest={wrong}")))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = http()
        .head(s.url(&format!("/v2/big/chunks/blobs/{wrong}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn end_5_chunks_out_of_order_are_416_and_leave_the_session_usable() {
    let s = TestServer::start().await;
    let data: Vec<u8> = (0..42u8).collect();
    let (chunk1, chunk2) = data.split_at(22);

    // A first chunk that does not start at 0.
    let loc = start(&s, "chunks").await;
    let r = patch(&s, &loc, Some("22-41"), chunk2).await;
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range"), "0-0");
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_INVALID");

    let loc = start(&s, "chunks").await;
    let r = patch(&s, &loc, Some("0-21"), chunk1).await;
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-21");
    // Re-sending the same chunk to the original Location is out of order now.
    let r = patch(&s, &loc, Some("0-21"), chunk1).await;
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range"), "0-21");
    // end-13: the status of the session is unchanged.
    let r = http().get(s.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-21");
    assert_eq!(header(&r, "location"), loc);
    // An out-of-order final chunk on PUT is refused before the digest is checked.
    let digest = sha256(&data);
    let r = http()
        .put(s.url(&format!("{loc}?digest={digest}")))
        .header("content-range", "30-41")
        .body(data[30..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    // The right final chunk completes it.
    let r = http()
        .put(s.url(&format!("{loc}?digest={digest}")))
        .header("content-range", "22-41")
        .body(chunk2.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_served(&s, "chunks", &digest, &data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn end_5_content_range_must_be_well_formed_and_match_the_length() {
    let s = TestServer::start().await;
    let loc = start(&s, "cr").await;
    for bad in ["abc", "5", "-3", "x-y"] {
        let r = patch(&s, &loc, Some(bad), b"abc").await;
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(error_code(r).await, "BLOB_UPLOAD_INVALID");
    }
    let r = patch(&s, &loc, Some("0-9"), b"abc").await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "SIZE_INVALID");
    let r = http().get(s.url(&loc)).send().await.unwrap();
    assert_eq!(
        header(&r, "range"),
        "0-0",
        "nothing was written by refused chunks"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn end_6_wrong_digest_is_digest_invalid_and_nothing_is_served() {
    let s = TestServer::start().await;
    let loc = start(&s, "wrong").await;
    let claimed = sha256(b"what I claim");
    let r = http()
        .put(s.url(&format!("{loc}?digest={claimed}")))
        .body("what I send")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = http()
        .head(s.url(&format!("/v2/wrong/blobs/{claimed}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let actual = sha256(b"what I send");
    let r = http()
        .head(s.url(&format!("/v2/wrong/blobs/{actual}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Monolithic too.
    let r = http()
        .post(s.url(&format!("/v2/wrong/blobs/uploads/?digest={claimed}")))
        .body("something else")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = http()
        .head(s.url(&format!("/v2/wrong/blobs/{claimed}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn end_6_digest_parameter_is_required_and_validated() {
    let s = TestServer::start().await;
    let loc = start(&s, "dp").await;
    for query in ["", "?digest=sha256:zzz", "?digest=nonsense"] {
        let r = http()
            .put(s.url(&format!("{loc}{query}")))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        assert_eq!(error_code(r).await, "DIGEST_INVALID");
    }
    let r = http()
        .put(s.url(&format!(
            "{loc}?digest=md5:d41d8cd98f00b204e9800998ecf8427e"
        )))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
}

#[tokio::test(flavor = "multi_thread")]
async fn sha512_uploads_with_and_without_the_digest_algorithm_hint() {
    let s = TestServer::start().await;
    let data = b"sha512 content".to_vec();
    let digest = sha512(&data);
    // Announced on POST.
    let r = http()
        .post(s.url("/v2/five12/blobs/uploads/?digest-algorithm=sha512"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = header(&r, "location").to_owned();
    assert_eq!(patch(&s, &loc, None, &data).await.status(), 202);
    let r = http()
        .put(s.url(&format!("{loc}?digest={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_served(&s, "five12", &digest, &data).await;
    // Not announced: known only from the final digest.
    let other = b"sha512 without a hint".to_vec();
    let loc = start(&s, "five12").await;
    assert_eq!(patch(&s, &loc, None, &other).await.status(), 202);
    let d = sha512(&other);
    let r = http()
        .put(s.url(&format!("{loc}?digest={d}")))
        .send()
        .await
        .unwrap();
    if crate::s3_mode() {
        // S3 cannot read an unfinished upload back to hash it again: a clear refusal.
        assert_eq!(r.status(), 400);
        let body = r.text().await.unwrap();
        assert!(body.contains("DIGEST_INVALID"), "{body}");
        assert!(body.contains("digest-algorithm=sha512"), "{body}");
    } else {
        assert_eq!(r.status(), 201);
        assert_served(&s, "five12", &d, &other).await;
    }
    // Monolithic.
    let mono = b"monolithic sha512".to_vec();
    let d = sha512(&mono);
    let r = http()
        .post(s.url(&format!("/v2/five12/blobs/uploads/?digest={d}")))
        .body(mono.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_served(&s, "five12", &d, &mono).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_digest_algorithms_are_refused_clearly() {
    let s = TestServer::start().await;
    let r = http()
        .post(s.url("/v2/algo/blobs/uploads/?digest-algorithm=md5"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
    let r = http()
        .post(s.url("/v2/algo/blobs/uploads/?digest-algorithm=NOT%20AN%20ALGORITHM"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = http()
        .get(s.url("/v2/algo/blobs/blake3:abcdef"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_removes_the_session() {
    let s = TestServer::start().await;
    let loc = start(&s, "cancel").await;
    assert_eq!(patch(&s, &loc, None, b"partial").await.status(), 202);
    let r = http().delete(s.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    for r in [
        http().get(s.url(&loc)).send().await.unwrap(),
        patch(&s, &loc, None, b"more").await,
        http().delete(s.url(&loc)).send().await.unwrap(),
    ] {
        assert_eq!(r.status(), 404);
        assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    }
    assert_eq!(
        s.staged_uploads().await,
        Vec::<String>::new(),
        "staged bytes are gone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_belongs_to_its_repository() {
    let s = TestServer::start().await;
    let loc = start(&s, "mine").await;
    let id = loc.rsplit('/').next().unwrap();
    let r = http()
        .get(s.url(&format!("/v2/theirs/blobs/uploads/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let r = http()
        .get(s.url("/v2/mine/blobs/uploads/not-a-session"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sessions_expire_with_their_bytes() {
    let s = TestServer::start_with(|c| c.upload_idle_timeout = Duration::from_secs(1)).await;
    let loc = start(&s, "idle").await;
    assert_eq!(patch(&s, &loc, None, b"abandoned").await.status(), 202);
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if http().get(s.url(&loc)).send().await.unwrap().status() == 404 {
            gone = true;
            break;
        }
    }
    assert!(gone, "an idle session must expire");
    assert_eq!(s.staged_uploads().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_uploads_of_the_same_blob_are_safe() {
    let s = TestServer::start().await;
    let data = vec![9u8; 512 * 1024];
    let digest = sha256(&data);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (base, data, digest) = (s.base.clone(), data.clone(), digest.clone());
        tasks.push(tokio::spawn(async move {
            let repo = format!("same/r{i}");
            let r = http()
                .post(format!("{base}/v2/{repo}/blobs/uploads/"))
                .send()
                .await
                .unwrap();
            let loc = r.headers()["location"].to_str().unwrap().to_owned();
            let r = http()
                .patch(format!("{base}{loc}"))
                .body(data)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let r = http()
                .put(format!("{base}{loc}?digest={digest}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for i in 0..8 {
        assert_served(&s, &format!("same/r{i}"), &digest, &data).await;
    }
    assert_eq!(s.stored_copies(&digest).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_empty_blob_and_empty_json_can_be_pushed_and_served() {
    let s = TestServer::start().await;
    let empty = sha256(b"");
    assert_eq!(
        empty,
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let loc = start(&s, "empty").await;
    let r = http()
        .put(s.url(&format!("{loc}?digest={empty}")))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http()
        .head(s.url(&format!("/v2/empty/blobs/{empty}")))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-length"), "0");
    let r = http()
        .get(s.url(&format!("/v2/empty/blobs/{empty}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    let json = push_blob(&s.base, "empty", b"{}").await;
    assert_eq!(
        json,
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    assert_served(&s, "empty", &json, b"{}").await;
}
