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
    store.commit_upload(id, &digest).await.unwrap();
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
    assert!(
        store.append_upload("suite-trunc", 7).await.is_err(),
        "cannot append past the end"
    );
    store.abort_upload("suite-trunc").await.unwrap();
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
    assert!(store.append_upload("suite-abort", 0).await.is_err());
}

async fn delete_removes_bytes(store: &dyn BlobStore) {
    let d = put(store, "suite-delete", b"to be deleted").await;
    assert!(store.delete(&d).await.unwrap());
    assert_eq!(store.stat(&d).await.unwrap(), None);
}
