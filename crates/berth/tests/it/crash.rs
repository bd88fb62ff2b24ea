//! Crash safety: the real `berth` binary, killed with SIGKILL (no graceful shutdown,
//! no destructors, no flush) at awkward moments, then restarted on the same data
//! directory and port. What was acknowledged must still be there, byte for byte;
//! what was interrupted must either be absent or resumable, never half-published.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::process::BerthProcess;
use crate::{
    absolute, assert_blob, error_code, finish_upload, header, http, image_manifest, pseudo_random,
    push_blob, range_end, sha256, start_upload, with_digest,
};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A streamed request body: `data` in 64 KiB chunks, paced, that stalls once `stall_at`
/// bytes are out until `release` is set. `sent` counts the bytes handed to the client.
fn stalling_body(
    data: Arc<Vec<u8>>,
    stall_at: usize,
    sent: Arc<AtomicUsize>,
    release: Arc<AtomicBool>,
) -> reqwest::Body {
    const CHUNK: usize = 64 * 1024;
    let stream = futures::stream::unfold(0usize, move |pos| {
        let (data, sent, release) = (data.clone(), sent.clone(), release.clone());
        async move {
            if pos >= data.len() {
                return None;
            }
            if pos >= stall_at {
                while !release.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            let end = (pos + CHUNK).min(data.len());
            sent.store(end, Ordering::SeqCst);
            Some((Ok::<Vec<u8>, std::io::Error>(data[pos..end].to_vec()), end))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

/// Every file under `dir` (recursively) whose name is `name`.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            found.extend(files_named(&path, name));
        } else if entry.file_name().to_string_lossy() == name {
            found.push(path);
        }
    }
    found
}

/// PUT a manifest, returning the status or the transport error (the server may die
/// under the request).
async fn try_put_manifest(
    client: &reqwest::Client,
    url: String,
    body: Vec<u8>,
) -> Result<u16, String> {
    client
        .put(url)
        .header("content-type", MANIFEST_TYPE)
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// The tags of `GET /v2/<repo>/tags/list`, or `None` when the repository is unknown (404).
async fn listed_tags(base: &str, repo: &str) -> Option<BTreeSet<String>> {
    let r = http()
        .get(format!("{base}/v2/{repo}/tags/list"))
        .send()
        .await
        .unwrap();
    if r.status() == 404 {
        assert_eq!(error_code(r).await, "NAME_UNKNOWN");
        return None;
    }
    assert_eq!(r.status(), 200, "GET /v2/{repo}/tags/list");
    let body: serde_json::Value = r.json().await.unwrap();
    let tags = body["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no tags array in {body}"));
    Some(
        tags.iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect(),
    )
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// a. A push that was acknowledged (blobs 201, manifest 201) survives SIGKILL right
/// after the last response: same manifest bytes and digest, every blob intact.
#[tokio::test(flavor = "multi_thread")]
async fn completed_push_survives_sigkill() {
    let mut berth = BerthProcess::start().await;
    let base = berth.base.clone();
    let repo = "crash/done";

    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let layer1 = pseudo_random(300 * 1024 + 3, 1);
    let layer2 = pseudo_random(2 * 1024 * 1024 + 1, 2);
    let blobs: [(String, &[u8]); 3] = [
        (push_blob(&base, repo, &config).await, &config[..]),
        (push_blob(&base, repo, &layer1).await, &layer1[..]),
        (push_blob(&base, repo, &layer2).await, &layer2[..]),
    ];
    let manifest = image_manifest(&config, &[&layer1, &layer2]);
    let r = http()
        .put(berth.url(&format!("/v2/{repo}/manifests/v1")))
        .header("content-type", MANIFEST_TYPE)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "manifest PUT");
    let pushed_digest = header(&r, "docker-content-digest").to_owned();
    assert_eq!(pushed_digest, sha256(&manifest));

    berth.kill9();
    berth.restart().await;

    for reference in ["v1", pushed_digest.as_str()] {
        let r = http()
            .get(berth.url(&format!("/v2/{repo}/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET manifest {reference} after restart");
        assert_eq!(header(&r, "docker-content-digest"), pushed_digest);
        assert_eq!(header(&r, "content-type"), MANIFEST_TYPE);
        let body = r.bytes().await.unwrap();
        assert_eq!(sha256(&body), pushed_digest);
        assert!(
            body[..] == manifest[..],
            "manifest {reference} came back with other bytes"
        );
    }
    for (digest, data) in &blobs {
        assert_blob(&base, repo, digest, data).await;
    }
    assert_eq!(
        listed_tags(&base, repo).await,
        Some(BTreeSet::from(["v1".to_owned()]))
    );
}

/// b. SIGKILL while a streamed PATCH is half-way through its body. After the restart
/// the blob is not served and no published file carries its digest; the interrupted
/// session is either still there (with no more bytes than were sent) or unknown; and
/// the same content uploads cleanly from scratch.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_streamed_upload_publishes_nothing() {
    const TOTAL: usize = 12 * 1024 * 1024;
    // The body stalls here until the server has been killed, so the kill always lands
    // in the middle of the request, whatever the machine's speed.
    const STALL_AT: usize = 3 * 1024 * 1024;

    let mut berth = BerthProcess::start().await;
    let base = berth.base.clone();
    let repo = "crash/stream";
    let data = Arc::new(pseudo_random(TOTAL, 3));
    let digest = sha256(&data);
    let hex = digest.strip_prefix("sha256:").unwrap().to_owned();

    let location = start_upload(&base, repo).await;

    let sent = Arc::new(AtomicUsize::new(0));
    let released = Arc::new(AtomicBool::new(false));
    let body = stalling_body(data.clone(), STALL_AT, sent.clone(), released.clone());
    let patch = tokio::spawn({
        let location = location.clone();
        async move {
            http()
                .patch(location)
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await
        }
    });

    let deadline = Instant::now() + Duration::from_secs(30);
    while sent.load(Ordering::SeqCst) < STALL_AT {
        assert!(
            !patch.is_finished(),
            "the PATCH ended before its body was sent"
        );
        assert!(
            Instant::now() < deadline,
            "the PATCH body did not get to {STALL_AT} bytes in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the server take in (and write out) what was sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !patch.is_finished(),
        "the PATCH must still be in flight when berth is killed"
    );
    let sent_at_kill = sent.load(Ordering::SeqCst) as u64;

    berth.kill9();
    released.store(true, Ordering::SeqCst);
    let outcome = tokio::time::timeout(Duration::from_secs(30), patch)
        .await
        .unwrap_or_else(|_| panic!("the interrupted PATCH did not end within 30 s of the kill"))
        .unwrap();
    if let Ok(r) = outcome {
        panic!(
            "the PATCH cannot have been answered by a killed server, yet got {}",
            r.status()
        );
    }

    berth.restart().await;

    // Not served, not published.
    let r = http()
        .head(berth.url(&format!("/v2/{repo}/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "an interrupted upload must not be served");
    let published = files_named(&berth.data_dir.join("blobs"), &hex);
    assert!(
        published.is_empty(),
        "an interrupted upload was published: {published:?}"
    );

    // The interrupted session: still known (with at most what was sent), or forgotten.
    let r = http().get(location.as_str()).send().await.unwrap();
    match r.status().as_u16() {
        204 => {
            let end = range_end(&r);
            assert!(
                end < sent_at_kill,
                "the session claims bytes 0-{end}, but only {sent_at_kill} were sent"
            );
            assert!(!header(&r, "location").is_empty());
            let r = http()
                .delete(location.as_str())
                .header("content-length", "0")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204, "cancelling the interrupted session");
        }
        404 => assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN"),
        other => panic!("GET on the interrupted session: expected 204 or 404, got {other}"),
    }

    // A fresh upload of the same content: POST, PATCH, PUT ?digest=.
    let location = start_upload(&base, repo).await;
    let r = http()
        .patch(location.as_str())
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "PATCH of the whole blob");
    assert_eq!(range_end(&r), TOTAL as u64 - 1);
    let location = absolute(&base, header(&r, "location"));
    finish_upload(&location, &digest).await;
    assert_blob(&base, repo, &digest, &data).await;
    assert_eq!(
        files_named(&berth.data_dir.join("blobs"), &hex).len(),
        1,
        "the blob is now published once"
    );
}

/// c. SIGKILL while 50 manifest PUTs are in flight. Afterwards each tag either resolves
/// to exactly what was pushed for it or is unknown — never a torn or mismatched manifest
/// — every PUT answered 201 before the kill resolves, and the tag list names exactly
/// the tags that resolve. Pushing all 50 again then works.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_concurrent_manifest_pushes() {
    const N: usize = 50;
    let mut berth = BerthProcess::start().await;
    let base = berth.base.clone();
    let repo = "crash/tags";

    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = pseudo_random(4096, 4);
    push_blob(&base, repo, &config).await;
    push_blob(&base, repo, &layer).await;
    // One distinct manifest per tag, so a tag pointing at another tag's manifest shows.
    let manifests: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let mut m: serde_json::Value =
                serde_json::from_slice(&image_manifest(&config, &[&layer])).unwrap();
            m["annotations"] = serde_json::json!({ "org.example.tag": format!("t{i}") });
            serde_json::to_vec(&m).unwrap()
        })
        .collect();

    let client = http();
    let answered = Arc::new(tokio::sync::Notify::new());
    let mut puts = Vec::new();
    for (i, body) in manifests.iter().enumerate() {
        let client = client.clone();
        let url = berth.url(&format!("/v2/{repo}/manifests/t{i}"));
        let body = body.clone();
        let answered = answered.clone();
        puts.push(tokio::spawn(async move {
            let outcome = try_put_manifest(&client, url, body).await;
            if outcome.is_ok() {
                answered.notify_one();
            }
            outcome
        }));
    }
    // Kill as soon as the first PUT has been answered: the rest are still under way.
    tokio::time::timeout(Duration::from_secs(30), answered.notified())
        .await
        .unwrap_or_else(|_| panic!("no manifest PUT was answered within 30 s"));
    berth.kill9();

    let mut acknowledged = BTreeSet::new();
    for (i, put) in puts.into_iter().enumerate() {
        let outcome = tokio::time::timeout(Duration::from_secs(30), put)
            .await
            .unwrap_or_else(|_| panic!("PUT t{i} did not end within 30 s of the kill"))
            .unwrap();
        match outcome {
            Ok(201) => {
                acknowledged.insert(i);
            }
            Ok(status) => panic!("PUT t{i} was answered {status} before the kill; expected 201"),
            Err(_) => {} // cut off by the kill
        }
    }
    assert!(!acknowledged.is_empty());

    berth.restart().await;
    // A new client: the old one's pooled connections died with the server.
    let client = http();

    let mut resolving = BTreeSet::new();
    for (i, manifest) in manifests.iter().enumerate() {
        let r = http()
            .get(berth.url(&format!("/v2/{repo}/manifests/t{i}")))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => {
                let digest = header(&r, "docker-content-digest").to_owned();
                let body = r.bytes().await.unwrap();
                assert_eq!(
                    sha256(&body),
                    digest,
                    "t{i}: the body does not hash to its Docker-Content-Digest"
                );
                assert!(
                    body[..] == manifest[..],
                    "t{i} resolves to a manifest other than the one pushed for it"
                );
                resolving.insert(format!("t{i}"));
            }
            404 => {
                assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN", "t{i}");
                assert!(
                    !acknowledged.contains(&i),
                    "t{i} was acknowledged with 201 before the kill but is gone"
                );
            }
            other => panic!("GET t{i} after restart: expected 200 or 404, got {other}"),
        }
    }
    eprintln!(
        "{} of {N} PUTs acknowledged before the kill, {} tags resolve after the restart",
        acknowledged.len(),
        resolving.len()
    );
    match listed_tags(&base, repo).await {
        Some(listed) => assert_eq!(
            listed, resolving,
            "the tag list must name exactly the tags that resolve"
        ),
        None => assert!(
            resolving.is_empty(),
            "tags resolve, yet the repository is unknown to tags/list"
        ),
    }

    // Push them all again.
    let mut puts = Vec::new();
    for (i, body) in manifests.iter().enumerate() {
        let client = client.clone();
        let url = berth.url(&format!("/v2/{repo}/manifests/t{i}"));
        let body = body.clone();
        puts.push(tokio::spawn(async move {
            try_put_manifest(&client, url, body).await
        }));
    }
    for (i, put) in puts.into_iter().enumerate() {
        assert_eq!(put.await.unwrap(), Ok(201), "re-PUT of t{i}");
    }
    for (i, manifest) in manifests.iter().enumerate() {
        for reference in [format!("t{i}"), sha256(manifest)] {
            let r = http()
                .get(berth.url(&format!("/v2/{repo}/manifests/{reference}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "GET {reference} after the re-push");
            assert_eq!(header(&r, "docker-content-digest"), sha256(manifest));
            assert!(
                r.bytes().await.unwrap()[..] == manifest[..],
                "{reference} after the re-push"
            );
        }
    }
    let all: BTreeSet<String> = (0..N).map(|i| format!("t{i}")).collect();
    assert_eq!(listed_tags(&base, repo).await, Some(all));
}

/// d. A chunked upload killed between chunks resumes after the restart: the session
/// reports the bytes it holds, rejects an out-of-order chunk, takes the next one, and
/// the digest (rebuilt from the staged bytes, the in-memory hash being gone) matches.
#[tokio::test(flavor = "multi_thread")]
async fn chunked_upload_resumes_after_sigkill() {
    let mut berth = BerthProcess::start().await;
    let base = berth.base.clone();
    let repo = "crash/resume";
    let data = pseudo_random(3 * 1024 * 1024 + 17, 5);
    let digest = sha256(&data);
    let split = 1024 * 1024 + 5;
    let (chunk1, chunk2) = data.split_at(split);
    let last = data.len() - 1;

    let location = start_upload(&base, repo).await;
    let r = http()
        .patch(location.as_str())
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("0-{}", split - 1))
        .body(chunk1.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "first chunk");
    assert_eq!(range_end(&r), split as u64 - 1);
    let location = absolute(&base, header(&r, "location"));
    // A chunk's last writes land just after its 202; a kill in that moment loses them
    // and the session with them (`staged_bytes_lost_in_a_crash_make_the_upload_unknown`).
    // Resuming is about bytes that are on disk, so wait for them.
    let id = location.rsplit('/').next().unwrap().to_owned();
    let staged = berth.data_dir.join("uploads").join(&id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&staged).map_or(0, |m| m.len()) < split as u64 {
        assert!(
            Instant::now() < deadline,
            "the first chunk never reached the disk"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    berth.kill9();
    berth.restart().await;

    let r = http().get(location.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 204, "upload status after the restart");
    assert_eq!(header(&r, "range"), format!("0-{}", split - 1));
    let location = absolute(&base, header(&r, "location"));

    // A chunk starting at 0 again is out of order, and changes nothing. (Small, so the
    // 416 that answers it before its body is read cannot race a reset connection.)
    let r = http()
        .patch(location.as_str())
        .header("content-type", "application/octet-stream")
        .header("content-range", "0-15")
        .body(chunk1[..16].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        416,
        "a chunk that does not start at the session's offset"
    );

    let r = http()
        .patch(location.as_str())
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{split}-{last}"))
        .body(chunk2.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "second chunk after the restart");
    assert_eq!(range_end(&r), last as u64);
    let location = absolute(&base, header(&r, "location"));

    finish_upload(&location, &digest).await;
    assert_blob(&base, repo, &digest, &data).await;
}

/// Bytes a session had recorded but that a crash took (the machine went down before
/// they reached the disk): the next chunk gets `BLOB_UPLOAD_UNKNOWN`, so the client
/// starts the blob again, and nothing short is ever published.
#[tokio::test(flavor = "multi_thread")]
async fn staged_bytes_lost_in_a_crash_make_the_upload_unknown() {
    let mut berth = BerthProcess::start().await;
    let base = berth.base.clone();
    let repo = "crash/lost";
    let data = pseudo_random(3 * 1024 * 1024, 6);
    let digest = sha256(&data);
    let split = 2 * 1024 * 1024;

    let location = start_upload(&base, repo).await;
    let r = http()
        .patch(location.as_str())
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("0-{}", split - 1))
        .body(data[..split].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "first chunk");
    let location = absolute(&base, header(&r, "location"));

    berth.kill9();
    let staged: Vec<_> = std::fs::read_dir(berth.data_dir.join("uploads"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(staged.len(), 1, "one staged upload: {staged:?}");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&staged[0])
        .unwrap();
    file.set_len(1024 * 1024 + 3).unwrap();
    drop(file);
    berth.restart().await;

    let r = http()
        .patch(location.as_str())
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{split}-{}", data.len() - 1))
        .body(data[split..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "the next chunk of a session that lost bytes"
    );
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let r = http().get(location.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 404, "the session is gone");
    assert!(
        staged[0].metadata().is_err(),
        "its staged bytes are gone too"
    );

    // Starting again works.
    let location = start_upload(&base, repo).await;
    let r = http()
        .put(with_digest(&location, &digest))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "the whole blob again");
    assert_blob(&base, repo, &digest, &data).await;
}

/// SIGTERM lets requests in flight finish, then berth exits cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    const TOTAL: usize = 2 * 1024 * 1024;
    let mut berth = BerthProcess::start().await;
    let base = berth.base.clone();
    let data = Arc::new(pseudo_random(TOTAL, 11));
    let digest = sha256(&data);
    let location = start_upload(&base, "graceful/app").await;

    // A body that stalls halfway until the server has been told to stop.
    let released = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let body = stalling_body(data.clone(), TOTAL / 2, sent.clone(), released.clone());
    let patch = tokio::spawn({
        let location = location.clone();
        async move { http().patch(location).body(body).send().await }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent.load(Ordering::SeqCst) < TOTAL / 2 {
        assert!(Instant::now() < deadline, "the upload never got halfway");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let pid = berth.child.as_ref().unwrap().id();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        berth.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "berth exited with a request in flight"
    );
    released.store(true, Ordering::SeqCst);

    let r = patch.await.unwrap().unwrap();
    assert_eq!(r.status(), 202, "the in-flight PATCH completes");
    assert_eq!(range_end(&r), TOTAL as u64 - 1);
    let mut child = berth.child.take().unwrap();
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exited = exited.expect("berth did not exit within 5 s of SIGTERM");
    assert!(exited.success(), "berth exited with {exited}");

    // Nothing was lost: the session finishes after a restart.
    berth.restart().await;
    finish_upload(&location, &digest).await;
    assert_blob(&base, "graceful/app", &digest, &data).await;
}
