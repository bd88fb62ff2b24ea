//! The contract every [`BlobStore`] backend must keep, as one suite each backend runs
//! against a real instance (the filesystem always; S3 against a real server).

// Test support: panicking on a broken contract is the point.
#![allow(clippy::unwrap_used)]

use berth_core::{Algorithm, Digest};
use bytes::Bytes;
use futures::TryStreamExt;

use crate::{BlobBody, BlobStore};

/// Stages `bytes` as upload `id` in two appends and publishes it; returns its digest.
pub async fn put(store: &dyn BlobStore, id: &str, bytes: &[u8]) -> Digest {
    let digest = Algorithm::Sha256.digest_of(bytes);
    store.create_upload(id).await.unwrap();
    let mid = bytes.len() / 2;
    let mut w = store.append_upload(id, 0).await.unwrap();
    w.write(Bytes::copy_from_slice(&bytes[..mid]))
        .await
        .unwrap();
    w.finish().await.unwrap();
    let mut w = store.append_upload(id, mid as u64).await.unwrap();
    w.write(Bytes::copy_from_slice(&bytes[mid..]))
        .await
        .unwrap();
    w.finish().await.unwrap();
    store
        .commit_upload(id, &digest, bytes.len() as u64)
        .await
        .unwrap();
    digest
}

pub async fn collect(body: BlobBody) -> Vec<u8> {
    let len = body.len;
    let chunks: Vec<Bytes> = body.stream.try_collect().await.unwrap();
    let all = chunks.concat();
    assert_eq!(
        all.len() as u64,
        len,
        "stream length must match the announced length"
    );
    all
}

pub async fn run_all(store: &dyn BlobStore) {
    absent_blobs_are_none(store).await;
    put_then_read_whole_and_ranges(store).await;
    append_discards_bytes_past_the_recorded_offset(store).await;
    large_appends_at_odd_offsets_keep_every_byte(store).await;
    same_content_published_twice_is_idempotent(store).await;
    aborted_uploads_leave_nothing(store).await;
    delete_removes_bytes(store).await;
}

async fn absent_blobs_are_none(store: &dyn BlobStore) {
    let d = Algorithm::Sha256.digest_of(b"never stored");
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert!(store.open(&d, None).await.unwrap().is_none());
    assert!(!store.delete(&d).await.unwrap());
}

async fn put_then_read_whole_and_ranges(store: &dyn BlobStore) {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = put(store, "suite-read", &data).await;
    assert_eq!(store.stat(&d).await.unwrap(), Some(data.len() as u64));
    assert_eq!(
        collect(store.open(&d, None).await.unwrap().unwrap()).await,
        data
    );
    let part = collect(store.open(&d, Some(10..20)).await.unwrap().unwrap()).await;
    assert_eq!(part, &data[10..20]);
    let tail = collect(
        store
            .open(&d, Some(99_990..100_000))
            .await
            .unwrap()
            .unwrap(),
    )
    .await;
    assert_eq!(tail, &data[99_990..]);
}

async fn append_discards_bytes_past_the_recorded_offset(store: &dyn BlobStore) {
    store.create_upload("suite-trunc").await.unwrap();
    let mut w = store.append_upload("suite-trunc", 0).await.unwrap();
    w.write(Bytes::from_static(b"abcGARBAGE")).await.unwrap();
    w.finish().await.unwrap();
    // Only "abc" was recorded before a crash; the next append starts at 3.
    let mut w = store.append_upload("suite-trunc", 3).await.unwrap();
    w.write(Bytes::from_static(b"def")).await.unwrap();
    w.finish().await.unwrap();
    assert_eq!(
        collect(store.read_upload("suite-trunc", 6).await.unwrap()).await,
        b"abcdef"
    );
    // Appending past the end fails at once or, at the latest, when finishing.
    let refused = match store.append_upload("suite-trunc", 7).await {
        Ok(w) => w.finish().await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "cannot append past the end");
    store.abort_upload("suite-trunc").await.unwrap();
}

/// Megabytes in odd-sized pieces, appended from offsets that fall inside disk blocks,
/// with unrecorded bytes cut off in between: the shapes large chunked uploads take.
async fn large_appends_at_odd_offsets_keep_every_byte(store: &dyn BlobStore) {
    let data: Vec<u8> = (0..11_000_003u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let id = "suite-large";
    store.create_upload(id).await.unwrap();
    // (start, end, pieces): each append writes data[start..end] in pieces of that size.
    let appends = [
        (0, 300_001, 77_777),
        (300_001, 5_000_000, 1_000_003),
        (5_000_000, 9_437_184, 8 * 1024 * 1024),
        (9_437_184, 11_000_003, 65_536),
    ];
    for (start, end, piece) in appends {
        let mut w = store.append_upload(id, start as u64).await.unwrap();
        for chunk in data[start..end].chunks(piece) {
            w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        w.finish().await.unwrap();
    }
    // A request that wrote past the recorded end and died before recording it: those
    // bytes must not be published.
    let mut w = store.append_upload(id, 11_000_003).await.unwrap();
    w.write(Bytes::from(vec![0xEE; 5_000_000])).await.unwrap();
    w.finish().await.unwrap();
    let staged = collect(store.read_upload(id, data.len() as u64).await.unwrap()).await;
    assert!(staged == data, "staged bytes differ from what was appended");
    let digest = Algorithm::Sha256.digest_of(&data);
    store
        .commit_upload(id, &digest, data.len() as u64)
        .await
        .unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(data.len() as u64));
    // Read three times: stores may serve first and later reads differently.
    for _ in 0..3 {
        let published = collect(store.open(&digest, None).await.unwrap().unwrap()).await;
        assert!(
            published == data,
            "published bytes differ from what was appended"
        );
    }
    let range = 4_096..10_500_001;
    let part = collect(
        store
            .open(&digest, Some(range.clone()))
            .await
            .unwrap()
            .unwrap(),
    )
    .await;
    assert!(part == data[4_096..10_500_001], "aligned range differs");
    let part = collect(
        store
            .open(&digest, Some(1..9_000_000))
            .await
            .unwrap()
            .unwrap(),
    )
    .await;
    assert!(part == data[1..9_000_000], "unaligned range differs");
}

async fn same_content_published_twice_is_idempotent(store: &dyn BlobStore) {
    let a = put(store, "suite-twice-a", b"same bytes").await;
    let b = put(store, "suite-twice-b", b"same bytes").await;
    assert_eq!(a, b);
    assert_eq!(
        collect(store.open(&a, None).await.unwrap().unwrap()).await,
        b"same bytes"
    );
}

async fn aborted_uploads_leave_nothing(store: &dyn BlobStore) {
    store.create_upload("suite-abort").await.unwrap();
    store.abort_upload("suite-abort").await.unwrap();
    store.abort_upload("suite-abort").await.unwrap();
    let refused = match store.append_upload("suite-abort", 0).await {
        Ok(w) => w.finish().await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "an aborted upload takes no more bytes");
}

async fn delete_removes_bytes(store: &dyn BlobStore) {
    let d = put(store, "suite-delete", b"to be deleted").await;
    assert!(store.delete(&d).await.unwrap());
    assert_eq!(store.stat(&d).await.unwrap(), None);
}
