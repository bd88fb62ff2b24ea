//! Listing what the filesystem store holds, for garbage collection: a blocking walk of
//! the directories that hands entries over a small channel, so memory does not grow
//! with the number of blobs.

use std::io;
use std::path::{Path, PathBuf};

use berth_core::{Algorithm, Digest};
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use crate::{StagedUpload, StoredBlob};

/// Entries in flight between the walker and the consumer.
const CHANNEL: usize = 256;

/// Streams what `walk` sends, running it on the blocking pool.
fn walked<T: Send + 'static>(
    walk: impl FnOnce(&mpsc::Sender<io::Result<T>>) -> io::Result<()> + Send + 'static,
) -> BoxStream<'static, io::Result<T>> {
    let (tx, rx) = mpsc::channel(CHANNEL);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = walk(&tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// The entries of `dir`, or none if it does not exist.
fn entries(dir: &Path) -> io::Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// `blobs/<alg>/<hex[..2]>/<hex>`; other files (a crash's leftovers) are skipped.
pub(super) fn blobs(root: PathBuf) -> BoxStream<'static, io::Result<StoredBlob>> {
    walked(move |tx| {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            for shard in entries(&root.join(algorithm.as_str()))? {
                for file in entries(&shard.path())? {
                    let name = file.file_name();
                    let Some(digest) = name
                        .to_str()
                        .and_then(|hex| format!("{algorithm}:{hex}").parse::<Digest>().ok())
                    else {
                        continue;
                    };
                    let meta = match file.metadata() {
                        Ok(meta) => meta,
                        // Deleted while we walked.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    };
                    let blob = StoredBlob {
                        digest,
                        size: meta.len(),
                        modified: meta.modified()?,
                    };
                    if tx.blocking_send(Ok(blob)).is_err() {
                        return Ok(()); // The consumer stopped listening.
                    }
                }
            }
        }
        Ok(())
    })
}

/// `uploads/<id>`.
pub(super) fn uploads(dir: PathBuf) -> BoxStream<'static, io::Result<StagedUpload>> {
    walked(move |tx| {
        for file in entries(&dir)? {
            let Some(id) = file.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let modified = match file.metadata() {
                Ok(meta) => meta.modified()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if tx.blocking_send(Ok(StagedUpload { id, modified })).is_err() {
                return Ok(());
            }
        }
        Ok(())
    })
}
