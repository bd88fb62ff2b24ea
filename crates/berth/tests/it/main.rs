//! berth's integration tests: one binary, one module per endpoint family or client.
//! Every test talks HTTP to a real berth — in-process on a free port, or the real
//! binary where a test kills it — and asserts status, headers and bodies.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use sha2::Digest as _;

mod accounts;
mod auth;
mod auth_clients;
mod blobs;
mod clients;
mod crash;
mod errors;
mod gc;
mod hardening;
mod manifests;
mod mirror;
mod nodes;
mod oci_client;
mod ops;
mod process;
mod real_clients;
mod scanning;
mod tag_policies;
mod uploads;
mod web;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The first administrator's password in every test server.
pub const ADMIN_PASSWORD: &str = "admin-test-password";

/// `BERTH_TEST_AUTH=1` runs the protocol suites against a server with auth on, every
/// request carrying the administrator's Basic credentials — the conformance suite's
/// `OCI_USERNAME`/`OCI_PASSWORD` mode. Unset, servers run `--open`.
pub fn auth_mode() -> bool {
    std::env::var_os("BERTH_TEST_AUTH").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `BERTH_TEST_STORAGE=s3` runs the protocol suites with blobs in the S3 bucket named
/// by `BERTH_TEST_S3` (each server under a prefix of its own). Unset: the filesystem.
pub fn s3_mode() -> bool {
    std::env::var("BERTH_TEST_STORAGE").is_ok_and(|v| v == "s3")
}

/// A fresh `s3://BUCKET/PREFIX` in the test bucket (`BERTH_TEST_S3`, set by
/// `scripts/test.sh` after starting Garage).
pub fn s3_scratch_url() -> String {
    let bucket = std::env::var("BERTH_TEST_S3").unwrap_or_else(|_| {
        panic!(
            "BERTH_TEST_S3 is not set: run scripts/test.sh, or start an S3 server \
             (eval \"$(bash scripts/start-garage.sh)\") and export what it prints"
        )
    });
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}/it-{}-{nanos}",
        bucket.trim_end_matches('/'),
        std::process::id()
    )
}

/// `BERTH_TEST_DATABASE=postgres` runs the protocol suites with metadata in a scratch
/// database of their own on the PostgreSQL server named by `BERTH_TEST_POSTGRES`.
pub fn postgres_mode() -> bool {
    std::env::var("BERTH_TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// A PostgreSQL database made for one test (with `psql`), dropped when this goes.
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl ScratchDatabase {
    pub fn create() -> ScratchDatabase {
        let admin_url = std::env::var("BERTH_TEST_POSTGRES").unwrap_or_else(|_| {
            panic!(
                "BERTH_TEST_POSTGRES is not set: run scripts/test.sh, or run \
                 scripts/start-postgres.sh and set it to the URL it prints"
            )
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("berth_it_{}_{nanos}", std::process::id());
        psql(&admin_url, &format!("CREATE DATABASE \"{name}\""));
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        let url = format!("{base}/{name}");
        ScratchDatabase {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // FORCE may not end an autovacuum worker that has just started on the database
        // (it is not ours to terminate): try again shortly. Cleanup never fails a test;
        // a database left over is only disk.
        for attempt in 1..=20 {
            match try_psql(&self.admin_url, &sql) {
                Ok(()) => return,
                Err(e) if attempt == 20 => eprintln!("leaving {}: {e}", self.name),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(250)),
            }
        }
    }
}

fn psql(url: &str, sql: &str) {
    if let Err(e) = try_psql(url, sql) {
        panic!("psql {sql}: {e}");
    }
}

fn try_psql(url: &str, sql: &str) -> Result<(), String> {
    let out = std::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .expect("psql (scripts/test.sh installs PostgreSQL)");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// An in-process berth on `127.0.0.1:<free port>` with its own data directory.
/// Dropping it shuts the server down.
pub struct TestServer {
    pub base: String,
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    /// Where its blobs are (the data dir, or an S3 prefix).
    pub storage: berth_server::StorageConfig,
    /// Where its metadata is.
    pub database: berth_server::DatabaseConfig,
    _scratch_database: Option<ScratchDatabase>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut berth_server::Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = berth_server::Config::embedded(addr, &data_dir);
        config.open = !auth_mode();
        config.auth.admin_password = Some(ADMIN_PASSWORD.to_owned());
        // Scanning would attach SBOM referrers in the background, racing what these tests
        // count (referrers, storage, collection); scanning.rs runs the binary, scanning on.
        config.scan_workers = 0;
        if s3_mode() {
            config.storage = berth_server::StorageConfig::S3 {
                url: s3_scratch_url(),
                redirect: None,
            };
        }
        let scratch_database = postgres_mode().then(ScratchDatabase::create);
        if let Some(scratch) = &scratch_database {
            config.database = berth_server::DatabaseConfig::Postgres(scratch.url.clone());
        }
        configure(&mut config);
        let storage = config.storage.clone();
        let database = config.database.clone();
        // Open the stores before answering, so a test's first request never races start-up.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let registry = berth_server::open_registry(&config).await.unwrap();
            ready_tx.send(()).unwrap();
            berth_server::serve(registry, &config, listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        ready_rx.await.unwrap();
        TestServer {
            base: format!("http://{addr}"),
            host: addr.to_string(),
            port: addr.port(),
            data_dir,
            storage,
            database,
            _scratch_database: scratch_database,
            _dir: dir,
            _stop: stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The server's blob store, opened beside it, to look at what it holds.
    pub async fn blob_store(&self) -> std::sync::Arc<dyn berth_blob::BlobStore> {
        berth_server::open_blobs(&self.storage).await.unwrap()
    }

    /// How many copies of `digest`'s bytes the blob store holds (0 or 1).
    pub async fn stored_copies(&self, digest: &str) -> usize {
        use futures::TryStreamExt;
        let blobs: Vec<_> = self
            .blob_store()
            .await
            .list_blobs()
            .try_collect()
            .await
            .unwrap();
        blobs
            .iter()
            .filter(|b| b.digest.to_string() == digest)
            .count()
    }

    /// Uploads that hold staging space in the blob store.
    pub async fn staged_uploads(&self) -> Vec<String> {
        use futures::TryStreamExt;
        let staged: Vec<_> = self
            .blob_store()
            .await
            .list_uploads()
            .try_collect()
            .await
            .unwrap();
        staged.into_iter().map(|u| u.id).collect()
    }
}

/// The client protocol tests use: anonymous against an open server, the administrator
/// (Basic, straight to `/v2/`) in auth mode.
pub fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if auth_mode() {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            basic("admin", ADMIN_PASSWORD).parse().unwrap(),
        );
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A client with no credentials at all.
pub fn anonymous() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// An `Authorization: Basic` value.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

pub fn sha512(bytes: &[u8]) -> String {
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(bytes)))
}

/// Monolithic upload (`POST ?digest=`); asserts 201 and returns the digest.
pub async fn push_blob(base: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let r = http()
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "pushing a blob to {repo}: {}",
        r.text().await.unwrap()
    );
    digest
}

/// An OCI image manifest for `config` and `layers` (by their sha256).
pub fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha256(l),
                "size": l.len(),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(config),
            "size": config.len(),
        },
        "layers": layers,
    }))
    .unwrap()
}

pub async fn put_manifest(
    base: &str,
    repo: &str,
    reference: &str,
    body: &[u8],
) -> reqwest::Response {
    http()
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", OCI_MANIFEST)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

/// Pushes a config and one layer and a manifest tagged `tag`; returns the manifest digest.
pub async fn push_image(base: &str, repo: &str, tag: &str, seed: &str) -> (String, Vec<u8>) {
    let config = format!("{{\"seed\":\"{seed}\"}}").into_bytes();
    let layer = format!("layer of {seed}").into_bytes();
    push_blob(base, repo, &config).await;
    push_blob(base, repo, &layer).await;
    let manifest = image_manifest(&config, &[&layer]);
    let r = put_manifest(base, repo, tag, &manifest).await;
    assert_eq!(r.status(), 201);
    (sha256(&manifest), manifest)
}

/// The `errors[0].code` of an OCI error body.
pub async fn error_code(r: reqwest::Response) -> String {
    let body: serde_json::Value = r.json().await.expect("an OCI error body in JSON");
    body["errors"][0]["code"]
        .as_str()
        .expect("errors[0].code")
        .to_owned()
}

pub fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header (status {})", r.status()))
}

/// Deterministic, incompressible bytes (xorshift64).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------- uploads step by step

/// The end of an upload `Range: 0-<end>` header.
pub fn range_end(r: &reqwest::Response) -> u64 {
    let range = header(r, "range");
    let end = range
        .strip_prefix("0-")
        .unwrap_or_else(|| panic!("Range {range:?} does not start with 0-"));
    end.parse()
        .unwrap_or_else(|_| panic!("Range {range:?} does not end in a number"))
}

/// A Location header made absolute against `base`.
pub fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

pub fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// Opens an upload session: `POST /v2/<repo>/blobs/uploads/` → 202; returns the
/// absolute Location.
pub async fn start_upload(base: &str, repo: &str) -> String {
    let r = http()
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "POST /v2/{repo}/blobs/uploads/");
    absolute(base, header(&r, "location"))
}

/// Closes a session: `PUT <location>?digest=` with no body → 201.
pub async fn finish_upload(location: &str, digest: &str) {
    let r = http()
        .put(with_digest(location, digest))
        .header("content-length", "0")
        .header("content-type", "application/octet-stream")
        .send()
        .await
        .unwrap();
    if r.status() != 201 {
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        panic!("PUT ?digest={digest}: expected 201, got {status}: {body}");
    }
    assert_eq!(header(&r, "docker-content-digest"), digest);
}

/// GET the blob: 200, the right digest header, and exactly `data`.
pub async fn assert_blob(base: &str, repo: &str, digest: &str, data: &[u8]) {
    let r = http()
        .get(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET blob {digest} in {repo}");
    assert_eq!(header(&r, "docker-content-digest"), digest);
    let body = r.bytes().await.unwrap();
    assert_eq!(
        sha256(&body),
        digest,
        "the bytes served for {digest} hash to something else"
    );
    assert_eq!(body.len(), data.len());
    assert!(
        body[..] == data[..],
        "the bytes served for {digest} differ from those pushed"
    );
}
