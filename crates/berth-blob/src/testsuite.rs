//! The contract every [`BlobStore`] backend must keep, as one suite each backend runs
//! against a real instance (the filesystem always; S3 against a real server).

// Test support: panicking on a broken contract is the point.
#![allow(clippy::unwrap_used)]

use berth_core::{Algorithm, Digest};
use bytes::Bytes;
use futures::TryStreamExt;

use crate::{BlobBody, BlobStore, UploadState};

/// Appends `pieces` to upload `id` at `offset`, where `state` was recorded; returns the
/// state to record after them.
pub async fn append(
    store: &dyn BlobStore,
    id: &str,
    offset: u64,
    state: &[u8],
    pieces: &[&[u8]],
) -> UploadState {
    let mut w = store.append_upload(id, offset, state).await.unwrap();
    for piece in pieces {
        w.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    w.finish().await.unwrap()
}

/// Stages `bytes` as upload `id` in two appends and publishes it; returns its digest.
pub async fn put(store: &dyn BlobStore, id: &str, bytes: &[u8]) -> Digest {
    let digest = Algorithm::Sha256.digest_of(bytes);
    let state = store.create_upload(id).await.unwrap();
    let mid = bytes.len() / 2;
    let state = append(store, id, 0, &state, &[&bytes[..mid]]).await;
    let state = append(store, id, mid as u64, &state, &[&bytes[mid..]]).await;
    store
        .commit_upload(id, &state, &digest, bytes.len() as u64)
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

/// Every check of the contract, in order, on one store (for backends set up in a
/// special way; [`blob_store_contract!`](crate::blob_store_contract) makes each a test).
pub async fn run_all(store: &dyn BlobStore) {
    absent_blobs_are_none(store).await;
    put_then_read_whole_and_ranges(store).await;
    append_discards_bytes_past_the_recorded_offset(store).await;
    large_appends_at_odd_offsets_keep_every_byte(store).await;
    same_content_published_twice_is_idempotent(store).await;
    aborted_uploads_leave_nothing(store).await;
    delete_removes_bytes(store).await;
    listings_show_blobs_and_staged_uploads(store).await;
    a_usable_store_passes_its_check_and_leaves_nothing(store).await;
}

/// One named test per check of the contract, each on a fresh store made by `$make`
/// (an expression that evaluates to a future of the store; it may hold its own guards).
#[macro_export]
macro_rules! blob_store_contract {
    ($make:expr) => {
        $crate::blob_store_contract!(@tests $make;
            absent_blobs_are_none,
            put_then_read_whole_and_ranges,
            append_discards_bytes_past_the_recorded_offset,
            large_appends_at_odd_offsets_keep_every_byte,
            same_content_published_twice_is_idempotent,
            aborted_uploads_leave_nothing,
            delete_removes_bytes,
            listings_show_blobs_and_staged_uploads,
            a_usable_store_passes_its_check_and_leaves_nothing,
        );
    };
    (@tests $make:expr; $($check:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $check() {
                use $crate::testsuite::MadeStore as _;
                let made = $make.await;
                $crate::testsuite::$check(made.store()).await;
            }
        )*
    };
}

/// What a `blob_store_contract!` factory yields: the store, and whatever must live as
/// long as the test (a temporary directory).
pub trait MadeStore {
    fn store(&self) -> &dyn BlobStore;
}

impl<S: BlobStore, G> MadeStore for (S, G) {
    fn store(&self) -> &dyn BlobStore {
        &self.0
    }
}

pub async fn absent_blobs_are_none(store: &dyn BlobStore) {
    let d = Algorithm::Sha256.digest_of(b"never stored");
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert!(store.open(&d, None).await.unwrap().is_none());
    assert!(!store.delete(&d).await.unwrap());
}

pub async fn put_then_read_whole_and_ranges(store: &dyn BlobStore) {
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

pub async fn append_discards_bytes_past_the_recorded_offset(store: &dyn BlobStore) {
    let id = "suite-trunc";
    let created = store.create_upload(id).await.unwrap();
    let recorded = append(store, id, 0, &created, &[b"abc"]).await;
    // A request wrote more and died before its progress was recorded: the next append
    // starts again from what was recorded.
    append(store, id, 3, &recorded, &[b"GARBAGE"]).await;
    let state = append(store, id, 3, &recorded, &[b"de", b"f"]).await;
    // Appending past the end fails at once or, at the latest, when finishing.
    let refused = match store.append_upload(id, 7, &state).await {
        Ok(w) => w.finish().await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "cannot append past the end");
    let digest = Algorithm::Sha256.digest_of(b"abcdef");
    store.commit_upload(id, &state, &digest, 6).await.unwrap();
    assert_eq!(
        collect(store.open(&digest, None).await.unwrap().unwrap()).await,
        b"abcdef"
    );
}

/// Megabytes in odd-sized pieces, appended from offsets that fall inside disk blocks,
/// with unrecorded bytes cut off in between: the shapes large chunked uploads take.
pub async fn large_appends_at_odd_offsets_keep_every_byte(store: &dyn BlobStore) {
    let data: Vec<u8> = (0..11_000_003u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let id = "suite-large";
    let mut state = store.create_upload(id).await.unwrap();
    // (start, end, pieces): each append writes data[start..end] in pieces of that size.
    // Appends below and above 5 MiB (S3's smallest multipart part), ending inside one.
    let appends = [
        (0, 300_001, 77_777),
        (300_001, 5_000_000, 1_000_003),
        (5_000_000, 9_437_184, 8 * 1024 * 1024),
        (9_437_184, 11_000_003, 65_536),
    ];
    for (start, end, piece) in appends {
        let pieces: Vec<&[u8]> = data[start..end].chunks(piece).collect();
        state = append(store, id, start as u64, &state, &pieces).await;
    }
    // A request that wrote past the recorded end and died before recording it: those
    // bytes must not be published.
    append(store, id, 11_000_003, &state, &[&vec![0xEE; 6_000_000]]).await;
    let digest = Algorithm::Sha256.digest_of(&data);
    store
        .commit_upload(id, &state, &digest, data.len() as u64)
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

pub async fn same_content_published_twice_is_idempotent(store: &dyn BlobStore) {
    let a = put(store, "suite-twice-a", b"same bytes").await;
    let b = put(store, "suite-twice-b", b"same bytes").await;
    assert_eq!(a, b);
    assert_eq!(
        collect(store.open(&a, None).await.unwrap().unwrap()).await,
        b"same bytes"
    );
}

pub async fn aborted_uploads_leave_nothing(store: &dyn BlobStore) {
    let id = "suite-abort";
    let created = store.create_upload(id).await.unwrap();
    let bytes = vec![1u8; 6 * 1024 * 1024];
    let state = append(store, id, 0, &created, &[&bytes]).await;
    store.abort_upload(id, &state).await.unwrap();
    store.abort_upload(id, &state).await.unwrap();
    let digest = Algorithm::Sha256.digest_of(&bytes);
    let committed = store
        .commit_upload(id, &state, &digest, bytes.len() as u64)
        .await;
    assert!(committed.is_err(), "an aborted upload cannot be published");
    assert_eq!(store.stat(&digest).await.unwrap(), None);
}

pub async fn delete_removes_bytes(store: &dyn BlobStore) {
    let d = put(store, "suite-delete", b"to be deleted").await;
    assert!(store.delete(&d).await.unwrap());
    assert_eq!(store.stat(&d).await.unwrap(), None);
}

/// What garbage collection relies on: every published blob is listed with its size,
/// every upload with staged bytes is listed, and an upload whose recorded state was
/// lost (a session that never got recorded) can still be aborted by id alone.
pub async fn listings_show_blobs_and_staged_uploads(store: &dyn BlobStore) {
    use futures::TryStreamExt;
    let published = put(store, "suite-list-a", b"listed blob").await;
    let blobs: Vec<_> = store.list_blobs().try_collect().await.unwrap();
    let entry = blobs.iter().find(|b| b.digest == published);
    assert_eq!(
        entry.map(|b| b.size),
        Some(11),
        "published blob listed: {blobs:?}"
    );
    // One upload holding exactly one S3 part (8 MiB: no tail object, so only the
    // multipart upload knows it), one holding only a little.
    let big = vec![3u8; 8 * 1024 * 1024];
    let created = store.create_upload("suite-list-b").await.unwrap();
    append(store, "suite-list-b", 0, &created, &[&big]).await;
    let created = store.create_upload("suite-list-c").await.unwrap();
    append(store, "suite-list-c", 0, &created, &[b"x"]).await;
    let staged: Vec<_> = store.list_uploads().try_collect().await.unwrap();
    let ids: Vec<&str> = staged.iter().map(|u| u.id.as_str()).collect();
    for id in ["suite-list-b", "suite-list-c"] {
        assert_eq!(
            ids.iter().filter(|i| **i == id).count(),
            1,
            "{id} listed once: {ids:?}"
        );
    }
    assert!(
        !ids.contains(&"suite-list-a"),
        "a published upload is gone: {ids:?}"
    );
    // Aborted without their state: nothing of them stays.
    for id in ["suite-list-b", "suite-list-c"] {
        store.abort_upload(id, &[]).await.unwrap();
    }
    let staged: Vec<_> = store.list_uploads().try_collect().await.unwrap();
    assert!(
        staged.iter().all(|u| !u.id.starts_with("suite-list")),
        "aborted uploads still listed: {staged:?}"
    );
}

pub async fn a_usable_store_passes_its_check_and_leaves_nothing(store: &dyn BlobStore) {
    use futures::TryStreamExt;
    let listed = || async {
        let blobs: Vec<_> = store.list_blobs().try_collect().await.unwrap();
        let staged: Vec<_> = store.list_uploads().try_collect().await.unwrap();
        (blobs.len(), staged.len())
    };
    let before = listed().await;
    for _ in 0..3 {
        store.check().await.unwrap();
    }
    assert_eq!(
        listed().await,
        before,
        "a check leaves no blob and no upload"
    );
}
