//! Running berth in production, through the real binary: HTTPS with a CA from `berth
//! tls init` trusted by the Docker engine (certs.d) and skopeo (--cert-dir), with no
//! insecure-registries; certificates replaced on disk; health probes that follow the
//! stores; `/metrics` read by a Prometheus text parser after known traffic;
//! `--metrics-addr`; `--log-format json`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

use crate::accounts::{admin, call};
use crate::clients::{DockerDaemon, Skopeo, blocking, mkimage, oci_ref};
use crate::process::{BerthProcess, berth_binary, free_port};
use crate::{ADMIN_PASSWORD, anonymous, basic, image_manifest, sha256};

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berth-ops-")
        .tempdir()
        .unwrap()
}

/// `berth tls init ARGS…`, asserting success; returns what it printed.
fn tls_init(args: &[&str]) -> String {
    let out = std::process::Command::new(berth_binary())
        .args(["tls", "init"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A client that trusts only the CA in `dir`.
fn trusting(dir: &Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.crt")).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

/// A TLS connection to `[::1]:port` that trusts the CA in `dir`, offering h2 and
/// http/1.1: the stream, the certificate served and the protocol chosen.
async fn connect(
    dir: &Path,
    port: u16,
    alpn: &[&[u8]],
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Vec<u8>,
    Option<Vec<u8>>,
) {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls_pki_types::CertificateDer::from_pem_file(dir.join("ca.crt")).unwrap();
    roots.add(ca).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(("::1", port)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("::1").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (_, session) = stream.get_ref();
    let served = session.peer_certificates().unwrap()[0].to_vec();
    let protocol = session.alpn_protocol().map(<[u8]>::to_vec);
    (stream, served, protocol)
}

/// One HTTP/1.1 `GET /healthz` on an open connection, kept open; the status line.
async fn health_over(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: berth\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer[..n]).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

fn pem_der(path: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_file(path)
        .unwrap()
        .to_vec()
}

/// The registry's name in the HTTPS test. The Docker engine treats 127.0.0.0/8 as
/// insecure (it would skip verification) and its image names cannot hold an IPv6
/// literal, so the test uses a name that resolves to `::1` only.
const TLS_HOST: &str = "berth-tls.test";

/// Makes [`TLS_HOST`] resolve to `::1` (a line in `/etc/hosts`, added once).
fn resolve_tls_host() {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let known = hosts
        .lines()
        .any(|line| line.split_whitespace().skip(1).any(|name| name == TLS_HOST));
    if !known {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open("/etc/hosts")
            .unwrap_or_else(|e| {
                panic!("the HTTPS test names ::1 in /etc/hosts (run as root): {e}")
            });
        std::io::Write::write_all(&mut file, format!("\n::1 {TLS_HOST}\n").as_bytes()).unwrap();
    }
}

/// Makes an image of `layers` (mkimage sizes) from `seed`, named `name`
/// (`localhost:PORT/…:TAG`), in the test's Docker engine, and signs the engine in to that
/// registry as the administrator. Blocking.
fn docker_image_signed_in(
    dir: &Path,
    name: &str,
    layers: &str,
    seed: &str,
) -> &'static DockerDaemon {
    let tar = dir.join(format!("{seed}.tar"));
    let tag = name.rsplit_once(':').map_or("latest", |(_, tag)| tag);
    mkimage(
        &dir.join(seed),
        &[
            "--layers",
            layers,
            "--tag",
            tag,
            "--seed",
            seed,
            "--docker-archive",
            tar.to_str().unwrap(),
            "--docker-name",
            name,
        ],
    );
    let docker = DockerDaemon::shared();
    docker.docker_ok(&["load", "-i", tar.to_str().unwrap()]);
    let registry = name.split('/').next().unwrap();
    let login = docker.docker_input(
        &["login", registry, "-u", "admin", "--password-stdin"],
        ADMIN_PASSWORD,
    );
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    docker
}

/// Removes a certs.d directory this test made, however the test ends.
struct Installed(std::path::PathBuf);

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// HTTPS in one command: `berth tls init` makes the CA and certificate; the Docker
/// engine refuses the registry until the CA is in `/etc/docker/certs.d/HOST:PORT` and
/// then pushes and pulls with no insecure-registries (the host is `::1`, outside the
/// engine's built-in insecure 127.0.0.0/8); skopeo likewise with `--cert-dir`; HTTP/2 is
/// offered; a certificate replaced on disk is served on the next connection while a
/// connection opened before goes on.
#[tokio::test(flavor = "multi_thread")]
async fn https_with_a_local_ca_for_docker_and_skopeo() {
    resolve_tls_host();
    let tmp = scratch();
    let tls = tmp.path().join("tls");
    let port = free_port();
    let said = tls_init(&[
        "--host",
        TLS_HOST,
        "--host",
        "::1",
        "--dir",
        tls.to_str().unwrap(),
        "--port",
        &port.to_string(),
    ]);
    let registry = format!("{TLS_HOST}:{port}");
    assert!(
        said.contains(&format!("/etc/docker/certs.d/{registry}/ca.crt")),
        "{said}"
    );
    assert!(said.contains("--tls-cert"), "{said}");
    let (cert, key) = (tls.join("server.crt"), tls.join("server.key"));
    let mut berth = BerthProcess::start_on(
        "https",
        "[::1]",
        port,
        trusting(&tls),
        &[
            "--open",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    )
    .await;

    // HTTP/2 and HTTP/1.1 by ALPN.
    let (_, served, protocol) = connect(&tls, port, &[b"h2", b"http/1.1"]).await;
    assert_eq!(protocol.as_deref(), Some(&b"h2"[..]));
    assert_eq!(served, pem_der(&cert));
    let (mut before, _, protocol) = connect(&tls, port, &[b"http/1.1"]).await;
    assert_eq!(protocol.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(health_over(&mut before).await, "HTTP/1.1 200 OK");

    let layout = tmp.path().join("layout");
    let docker_dir = Path::new("/etc/docker/certs.d").join(&registry);
    let ca = tls.join("ca.crt");
    let tar = tmp.path().join("image.tar");
    let registry_ = registry.clone();
    blocking(move || {
        let registry = registry_;
        let name = format!("{registry}/tls/app:1");
        mkimage(
            &layout,
            &[
                "--layers",
                "200K",
                "--tag",
                "1",
                "--seed",
                "https",
                "--docker-archive",
                tar.to_str().unwrap(),
                "--docker-name",
                &name,
            ],
        );
        // skopeo: refused without the CA, fine with --cert-dir (before the engine's
        // certs.d has it: containers/image reads that directory too).
        let sk = Skopeo::new();
        let dest = format!("docker://{registry}/tls/skopeo:1");
        let err = sk.fails(&["copy", &oci_ref(&layout, "1"), &dest]);
        assert!(err.contains("x509") || err.contains("certificate"), "{err}");
        // What a client machine gets: ca.crt alone (the .key files beside it would be
        // read as a client certificate pair).
        let client_dir = layout.with_file_name("client-certs");
        std::fs::create_dir_all(&client_dir).unwrap();
        std::fs::copy(&ca, client_dir.join("ca.crt")).unwrap();
        let cert_dir = client_dir.to_str().unwrap().to_owned();
        sk.ok(&[
            "copy",
            "--dest-cert-dir",
            &cert_dir,
            &oci_ref(&layout, "1"),
            &dest,
        ]);
        let raw = sk.ok(&["inspect", "--raw", "--cert-dir", &cert_dir, &dest]);
        assert!(raw.contains("schemaVersion"), "{raw}");
        let docker = DockerDaemon::shared();
        docker.docker_ok(&["load", "-i", tar.to_str().unwrap()]);
        // Not trusted yet: refused, and not by falling back to plain HTTP.
        let refused = docker.docker(&["image", "push", &name]);
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "pushed without trusting the CA");
        assert!(
            said.contains("x509") || said.contains("certificate"),
            "{said}"
        );
        std::fs::create_dir_all(&docker_dir).unwrap();
        let _installed = Installed(docker_dir.clone());
        std::fs::copy(&ca, docker_dir.join("ca.crt")).unwrap();
        let pushed = docker.docker_ok(&["image", "push", &name]);
        assert!(pushed.contains("1: digest: sha256:"), "{pushed}");
        docker.docker_ok(&["image", "rm", &name]);
        let pulled = docker.docker_ok(&["image", "pull", &name]);
        assert!(pulled.contains("Downloaded newer image"), "{pulled}");
    })
    .await;

    // A new certificate on disk (another name added): served from the next
    // connection on, without a restart; the connection opened before goes on.
    tokio::time::sleep(Duration::from_millis(20)).await;
    tls_init(&[
        "--host",
        "::1",
        "--host",
        "renewed.example",
        "--dir",
        tls.to_str().unwrap(),
    ]);
    let renewed = pem_der(&cert);
    let (_, served, _) = connect(&tls, port, &[b"http/1.1"]).await;
    assert!(served == renewed, "the renewed certificate is served");
    assert_eq!(health_over(&mut before).await, "HTTP/1.1 200 OK");
    assert!(berth.child.as_mut().unwrap().try_wait().unwrap().is_none());
}

/// `/healthz` and `/readyz` answer without credentials (auth is on: `/v2/` is 401);
/// `/readyz` turns 503, naming the store, while the storage directory or the database
/// file is unusable, and ready again once it is back.
#[tokio::test(flavor = "multi_thread")]
async fn readiness_follows_the_database_and_the_storage() {
    let tmp = scratch();
    let blobs = tmp.path().join("blobs");
    let storage = format!("file://{}", blobs.display());
    let berth = BerthProcess::start_with(
        &["--storage", &storage],
        &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
    .await;
    let get = |path: &'static str| {
        let url = berth.url(path);
        async move {
            let r = anonymous().get(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(
        anonymous()
            .get(berth.url("/v2/"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        get("/healthz").await,
        (200, serde_json::json!({"status": "ok"}))
    );
    let (status, body) = get("/readyz").await;
    assert_eq!(
        (status, &body["status"]),
        (200, &Value::from("ready")),
        "{body}"
    );

    // The storage directory replaced by a file.
    let aside = tmp.path().join("blobs-aside");
    std::fs::rename(&blobs, &aside).unwrap();
    std::fs::write(&blobs, b"not a directory").unwrap();
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    assert_ne!(body["checks"]["storage"], "ok", "{body}");
    assert_eq!(get("/healthz").await.0, 200, "alive all the same");
    std::fs::remove_file(&blobs).unwrap();
    std::fs::rename(&aside, &blobs).unwrap();
    assert_eq!(get("/readyz").await.0, 200);

    // The database file moved away.
    let db = berth.data_dir.join("berth.db");
    let db_aside = berth.data_dir.join("berth.db.aside");
    std::fs::rename(&db, &db_aside).unwrap();
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["storage"], "ok", "{body}");
    assert!(
        body["checks"]["database"]
            .as_str()
            .is_some_and(|why| why.contains("berth.db")),
        "{body}"
    );
    std::fs::rename(&db_aside, &db).unwrap();
    assert_eq!(get("/readyz").await.0, 200);
}

/// Pushes a small image (a config, a 300 kB layer) to `repo:tag` as the administrator;
/// returns the config, the layer and the manifest.
async fn push_image(berth: &BerthProcess, repo: &str, tag: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let auth = admin();
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = vec![7u8; 300_000];
    for blob in [&config, &layer] {
        let r = anonymous()
            .post(berth.url(&format!(
                "/v2/{repo}/blobs/uploads/?digest={}",
                sha256(blob)
            )))
            .header("authorization", &auth)
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let manifest = image_manifest(&config, &[&layer]);
    let r = anonymous()
        .put(berth.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("authorization", &auth)
        .header("content-type", crate::OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    (config, layer, manifest)
}

/// Pull rate limits in Docker Hub's model: manifest GETs count (HEADs do not), per
/// anonymous address and per account apart; every manifest answer carries
/// `RateLimit-Limit` and `RateLimit-Remaining`; past the limit, `429 TOOMANYREQUESTS`
/// with `Retry-After`, which the Docker engine's client shows as "toomanyrequests".
#[tokio::test(flavor = "multi_thread")]
async fn pull_limits_count_manifest_gets_per_address_and_account() {
    let berth = BerthProcess::start_with(
        &[
            "--pull-limit-anonymous",
            "3/1h",
            "--pull-limit-account",
            "5/1h",
        ],
        &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
    .await;
    push_image(&berth, "limits/app", "1").await;
    let ask = |method: Method, auth: Option<String>| {
        let url = berth.url("/v2/limits/app/manifests/1");
        async move {
            let mut request = anonymous()
                .request(method, url)
                .header("accept", crate::OCI_MANIFEST);
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let r = request.send().await.unwrap();
            let header = |name: &str| {
                r.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            (
                r.status().as_u16(),
                header("ratelimit-limit"),
                header("ratelimit-remaining"),
                header("retry-after"),
            )
        }
    };
    let look = ask(Method::HEAD, None).await;
    assert_eq!(look.0, 200);
    assert_eq!(
        (look.1.as_str(), look.2.as_str()),
        ("3;w=3600", "3;w=3600"),
        "a HEAD is free"
    );
    for remaining in [2, 1, 0] {
        let got = ask(Method::GET, None).await;
        assert_eq!((got.0, got.2), (200, format!("{remaining};w=3600")));
    }
    let refused = ask(Method::GET, None).await;
    assert_eq!((refused.0, refused.2.as_str()), (429, "0;w=3600"));
    let retry: u64 = refused.3.parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    let r = anonymous()
        .get(berth.url("/v2/limits/app/manifests/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(crate::error_code(r).await, "TOOMANYREQUESTS");
    assert_eq!(ask(Method::HEAD, None).await.0, 200, "HEAD still answers");
    // The account counts apart from its address.
    let signed_in = ask(Method::GET, Some(admin())).await;
    assert_eq!(
        (signed_in.0, signed_in.1.as_str(), signed_in.2.as_str()),
        (200, "5;w=3600", "4;w=3600")
    );

    // The Docker engine pulls anonymously from the same address: refused, and says so.
    let name = format!("localhost:{}/limits/app:1", berth.port);
    let said = blocking(move || {
        let out = DockerDaemon::shared().docker(&["image", "pull", &name]);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    })
    .await;
    assert!(said.contains("toomanyrequests"), "{said}");
    assert!(said.contains("pull rate limit reached"), "{said}");
}

/// The value of the one sample `name` whose labels include all of `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = samples(scrape, name, labels);
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0]
}

fn samples(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .collect()
}

async fn scrape(url: String) -> prometheus_parse::Scrape {
    let r = anonymous().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).unwrap()
}

/// `/metrics` after known traffic, parsed as Prometheus parses it: requests by route,
/// method and status, latency histograms, failed sign-ins, refusals, bytes in and out,
/// storage held; then `--metrics-addr` moves it off the main port, and `--log-format
/// json` writes one JSON object per line.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_known_traffic() {
    let berth = BerthProcess::start_with(
        &["--login-failures", "2"],
        &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
    .await;
    let auth = admin();
    let (config, layer, manifest) = push_image(&berth, "ops/app", "1").await;
    for _ in 0..3 {
        let r = call(
            &berth,
            Method::GET,
            "/v2/ops/app/manifests/1",
            Some(&auth),
            None,
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    let r = call(
        &berth,
        Method::GET,
        "/v2/ops/app/manifests/2",
        Some(&auth),
        None,
    )
    .await;
    assert_eq!(r.status(), 404);
    // Two wrong passwords, then the lock-out.
    let wrong = basic("admin", "not-the-password");
    for expected in [401, 401, 429] {
        let r = call(&berth, Method::GET, "/v2/", Some(&wrong), None).await;
        assert_eq!(r.status(), expected);
    }

    let scraped = scrape(berth.url("/metrics")).await;
    let requests = |route, method, status| {
        sample(
            &scraped,
            "berth_http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(requests("blob_uploads", "POST", "201"), 2.0);
    assert_eq!(requests("manifests", "PUT", "201"), 1.0);
    assert_eq!(requests("manifests", "GET", "200"), 3.0);
    assert_eq!(requests("manifests", "GET", "404"), 1.0);
    // Waiting for the start asked `/v2/` without credentials too: at least 2.
    assert!(requests("base", "GET", "401") >= 2.0);
    assert_eq!(requests("base", "GET", "429"), 1.0);
    let latencies = scraped
        .samples
        .iter()
        .find(|s| {
            s.metric == "berth_http_request_duration_seconds"
                && s.labels.get("route") == Some("manifests")
                && s.labels.get("method") == Some("GET")
        })
        .map(|s| s.value.clone());
    match latencies {
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            let all = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
            assert_eq!(all, 4.0, "{buckets:?}");
        }
        other => panic!("no latency histogram for manifest GETs: {other:?}"),
    }
    assert_eq!(sample(&scraped, "berth_sign_in_failures_total", &[]), 2.0);
    assert_eq!(
        sample(&scraped, "berth_rate_limited_total", &[("route", "base")]),
        1.0
    );
    let stored = (config.len() + layer.len() + manifest.len()) as f64;
    assert_eq!(sample(&scraped, "berth_storage_bytes", &[]), stored);
    assert!(sample(&scraped, "berth_received_bytes_total", &[]) > 300_000.0);
    assert!(sample(&scraped, "berth_sent_bytes_total", &[]) > 3.0 * manifest.len() as f64);
    assert_eq!(sample(&scraped, "berth_uploads_in_flight", &[]), 0.0);
    assert!(sample(&scraped, "berth_connections_open", &[]) >= 1.0);
    drop(berth);

    // On its own port, and the main port has none; logs as JSON.
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let berth = BerthProcess::start_with(
        &[
            "--open",
            "--metrics-addr",
            &metrics_addr,
            "--log-format",
            "json",
        ],
        &[],
    )
    .await;
    let r = anonymous().get(berth.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let scraped = scrape(format!("http://{metrics_addr}/metrics")).await;
    assert!(
        sample(
            &scraped,
            "berth_http_requests_total",
            &[("route", "base"), ("status", "200")]
        ) >= 1.0
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let logged = loop {
        let logged = berth.log_since_spawn();
        if logged.contains("berth is serving") || Instant::now() > deadline {
            break logged;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lines: Vec<Value> = logged
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "berth is serving" && l["level"] == "INFO"),
        "{logged}"
    );
}

/// The deployment files in the repository hold: `systemd-analyze verify` finds nothing
/// to say about the unit (pointed at this build's binary), and the sample settings file
/// starts the real binary.
#[tokio::test(flavor = "multi_thread")]
async fn the_systemd_unit_and_sample_settings_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let unit = std::fs::read_to_string(root.join("deploy/berth.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/berth serve"));
    let tmp = scratch();
    let local = tmp.path().join("berth.service");
    let binary = berth_binary();
    std::fs::write(
        &local,
        unit.replace("/usr/local/bin/berth", binary.to_str().unwrap()),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&local)
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze (Debian package systemd): {e}"));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");

    let settings = root.join("deploy/berth.toml");
    let berth =
        BerthProcess::start_with(&["--open", "--config", settings.to_str().unwrap()], &[]).await;
    let r = anonymous().get(berth.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// The audit log shows a scripted session: a failed sign-in, a user created, a token
/// made, a sign-in at `/token`, a push (and its tag), a visibility change, a delete and
/// the token revoked, each with who and from where; never a secret. Through
/// `/api/v1/audit` (administrators only) and `berth audit ls`.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_shows_a_scripted_session() {
    let berth = BerthProcess::start_with(&[], &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)]).await;
    let wrong = basic("alice", "not-her-password");
    assert_eq!(
        call(&berth, Method::GET, "/v2/", Some(&wrong), None)
            .await
            .status(),
        401
    );
    crate::accounts::add_user(&berth, "alice").await;
    let (token_id, secret) = crate::accounts::add_token(&berth, "alice", "read-write-delete").await;
    let alice = basic("alice", &secret);
    let r = anonymous()
        .get(berth.url("/token?service=berth&scope=repository:alice/app:pull,push"))
        .header("authorization", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The push, as alice with her token.
    let config = br#"{"architecture":"arm64","os":"linux"}"#.to_vec();
    for blob in [&config] {
        let r = anonymous()
            .post(berth.url(&format!(
                "/v2/alice/app/blobs/uploads/?digest={}",
                sha256(blob)
            )))
            .header("authorization", &alice)
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let manifest = image_manifest(&config, &[]);
    let r = anonymous()
        .put(berth.url("/v2/alice/app/manifests/1"))
        .header("authorization", &alice)
        .header("content-type", crate::OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = call(
        &berth,
        Method::PUT,
        "/api/v1/repositories/alice/app/visibility",
        Some(&basic("alice", crate::accounts::PASSWORD)),
        Some(serde_json::json!({ "visibility": "private" })),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = call(
        &berth,
        Method::DELETE,
        "/v2/alice/app/manifests/1",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(r.status(), 202);
    let r = call(
        &berth,
        Method::DELETE,
        &format!("/api/v1/tokens/{token_id}"),
        Some(&basic("alice", crate::accounts::PASSWORD)),
        None,
    )
    .await;
    assert!(r.status().is_success(), "{}", r.status());

    // The failed sign-in is written beside its request: give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = call(
        &berth,
        Method::GET,
        "/api/v1/audit?limit=100",
        Some(&admin()),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let text = body.to_string();
    assert!(!text.contains(&secret), "no secret in the log");
    assert!(
        !text.contains(crate::accounts::PASSWORD),
        "no password in the log"
    );
    let events = body["events"].as_array().unwrap();
    let mut seen: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    seen.reverse();
    let expected = [
        ("sign-in-failed", "alice", "-"),
        ("users:create", "admin", "-"),
        ("tokens:create", "alice", "-"),
        ("sign-in", "alice", "-"),
        ("push", "alice", "alice/app"),
        ("tag-move", "alice", "alice/app"),
        ("repositories:set", "alice", "alice/app"),
        ("delete", "alice", "alice/app"),
        ("tokens:remove", "alice", "-"),
    ];
    let seen_ref: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    assert_eq!(seen_ref, expected, "{body:#}");
    for event in events {
        assert_eq!(event["client"], "127.0.0.1", "{event}");
        assert!(event["at"].as_i64().unwrap() > 1_700_000_000);
    }
    let push = events.iter().find(|e| e["action"] == "push").unwrap();
    assert_eq!(push["detail"]["digest"], sha256(&manifest));
    assert_eq!(push["detail"]["reference"], "1");
    let moved = events.iter().find(|e| e["action"] == "tag-move").unwrap();
    assert_eq!(moved["detail"]["tag"], "1");
    assert_eq!(moved["detail"]["to"], sha256(&manifest));
    let visibility = events
        .iter()
        .find(|e| e["action"] == "repositories:set")
        .unwrap();
    assert_eq!(visibility["detail"]["body"]["visibility"], "private");

    // Filters, and administrators only.
    let r = call(
        &berth,
        Method::GET,
        "/api/v1/audit?user=admin",
        Some(&admin()),
        None,
    )
    .await;
    let only: Value = r.json().await.unwrap();
    assert_eq!(only["events"].as_array().unwrap().len(), 1, "{only}");
    let r = call(
        &berth,
        Method::GET,
        "/api/v1/audit",
        Some(&basic("alice", crate::accounts::PASSWORD)),
        None,
    )
    .await;
    assert_eq!(r.status(), 403);

    // The command, on the same database as the running server.
    let data_dir = berth.data_dir.clone();
    let out = blocking(move || {
        std::process::Command::new(berth_binary())
            .args([
                "audit",
                "ls",
                "--repo",
                "alice",
                "--since",
                "1h",
                "--json",
                "--data-dir",
            ])
            .arg(&data_dir)
            .output()
            .unwrap()
    })
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["delete", "repositories:set", "tag-move", "push"],
        "{lines:?}"
    );

    // A change made with a command on the server is recorded too (a listing is not).
    let data_dir = berth.data_dir.clone();
    blocking(move || {
        for args in [
            vec!["namespace", "visibility", "alice", "private"],
            vec!["user", "ls"],
        ] {
            let out = std::process::Command::new(berth_binary())
                .args(&args)
                .arg("--data-dir")
                .arg(&data_dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    })
    .await;
    let r = call(
        &berth,
        Method::GET,
        "/api/v1/audit?user=cli",
        Some(&admin()),
        None,
    )
    .await;
    let by_cli: Value = r.json().await.unwrap();
    let events = by_cli["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{by_cli}");
    assert_eq!(events[0]["action"], "command");
    assert_eq!(events[0]["client"], "local");
    assert_eq!(
        events[0]["detail"]["command"].as_array().unwrap()[..4],
        [
            Value::from("namespace"),
            Value::from("visibility"),
            Value::from("alice"),
            Value::from("private")
        ]
    );
}

/// A storage quota on a namespace: `berth namespace quota` sets it beside the running
/// server; the Docker engine's push that would pass it fails with `denied` and the
/// numbers, and leaves nothing counted; raised over `/api/v1`, the same push goes
/// through, and the usage shows there.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_over_the_namespace_quota_is_refused_with_its_numbers() {
    let berth = BerthProcess::start_with(&[], &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)]).await;
    let data_dir = berth.data_dir.clone();
    let quota = |size: &'static str| {
        let data_dir = data_dir.clone();
        blocking(move || {
            let out = std::process::Command::new(berth_binary())
                .args(["namespace", "quota", "quota", size, "--data-dir"])
                .arg(&data_dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let said = quota("1MiB").await;
    assert!(said.contains("quota: quota 1.0 MiB, using 0 B"), "{said}");

    let tmp = scratch();
    let registry = format!("localhost:{}", berth.port);
    let name = format!("{registry}/quota/app:1");
    let (dir, name_) = (tmp.path().to_owned(), name.clone());
    let refused = blocking(move || {
        let docker = docker_image_signed_in(&dir, &name_, "600K,700K", "quota");
        let out = docker.docker(&["image", "push", &name_]);
        assert!(!out.status.success(), "pushed past the quota");
        String::from_utf8_lossy(&out.stderr).into_owned()
    })
    .await;
    assert!(refused.contains("denied"), "{refused}");
    assert!(
        refused.contains("namespace quota is over its storage quota"),
        "{refused}"
    );
    assert!(refused.contains("of 1.0 MiB"), "{refused}");

    let storage = |_: ()| async {
        let r = call(
            &berth,
            Method::GET,
            "/api/v1/namespaces/quota/storage",
            Some(&admin()),
            None,
        )
        .await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    let held = storage(()).await;
    assert_eq!(held["quota"], 1024 * 1024, "{held}");
    assert!(
        held["bytes"].as_u64().unwrap() <= 1024 * 1024,
        "the refusal left nothing counted: {held}"
    );

    // Raised (administrators only), the same push goes through.
    let alice_may_not = call(
        &berth,
        Method::PUT,
        "/api/v1/namespaces/quota/quota",
        Some(&basic("nobody", "x")),
        Some(serde_json::json!({ "quota": "10MiB" })),
    )
    .await;
    assert_eq!(alice_may_not.status(), 401);
    let r = call(
        &berth,
        Method::PUT,
        "/api/v1/namespaces/quota/quota",
        Some(&admin()),
        Some(serde_json::json!({ "quota": "10MiB" })),
    )
    .await;
    assert_eq!(r.status(), 200);
    let pushed =
        blocking(move || DockerDaemon::shared().docker_ok(&["image", "push", &name])).await;
    assert!(pushed.contains("1: digest: sha256:"), "{pushed}");
    let held = storage(()).await;
    let bytes = held["bytes"].as_u64().unwrap();
    assert!(bytes > 1024 * 1024 && bytes < 10 * 1024 * 1024, "{held}");
    assert_eq!(held["quota"], 10 * 1024 * 1024);
    let said = quota("none").await;
    assert!(said.contains("quota: no quota, using"), "{said}");
}

/// A real HTTP receiver (Python's `http.server`) that writes each request it gets as a
/// JSON line: `{"path", "headers", "body"}`.
const RECEIVER: &str = r#"
import http.server, json, sys
out = sys.argv[2]
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with open(out, "a") as f:
            f.write(json.dumps({"path": self.path,
                                "headers": {k.lower(): v for k, v in self.headers.items()},
                                "body": body.decode()}) + "\n")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
"#;

/// A webhook's delivery history over `/api/v1`.
async fn history(berth: &BerthProcess, id: &str) -> Value {
    let url = format!("/api/v1/webhooks/{id}/deliveries");
    let r = call(berth, Method::GET, &url, Some(&admin()), None).await;
    r.json::<Value>().await.unwrap()["deliveries"].clone()
}

/// What the receiver got so far.
fn received(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Webhooks: one added with `berth webhook add` (Docker Hub's payload, a secret from a
/// file) on a namespace, one over `/api/v1` (a CloudEvent) on a repository. The Docker
/// engine pushes while the receiver is down; berth is killed and started again; the
/// receiver comes up and gets the push, signed (HMAC-SHA256 checked here), then a
/// delete; the delivery history shows the failed attempts and the 200.
#[tokio::test(flavor = "multi_thread")]
async fn webhooks_reach_a_receiver_that_comes_up_later_even_across_a_restart() {
    use hmac::{KeyInit, Mac};
    let mut berth =
        BerthProcess::start_with(&[], &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)]).await;
    let tmp = scratch();
    let receiver_port = free_port();
    let secret_file = tmp.path().join("secret");
    std::fs::write(&secret_file, "hub-signing-secret\n").unwrap();
    let (data_dir, secret_path) = (berth.data_dir.clone(), secret_file.clone());
    let hub_url = format!("http://127.0.0.1:{receiver_port}/hub");
    let added = blocking(move || {
        std::process::Command::new(berth_binary())
            .args([
                "webhook",
                "add",
                "hooks",
                &hub_url,
                "--events",
                "push,delete",
            ])
            .arg("--secret-file")
            .arg(&secret_path)
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .unwrap()
    })
    .await;
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let hub_id = String::from_utf8_lossy(&added.stdout).trim().to_owned();
    let r = call(
        &berth,
        Method::POST,
        "/api/v1/webhooks",
        Some(&admin()),
        Some(serde_json::json!({
            "scope": "hooks/app",
            "url": format!("http://127.0.0.1:{receiver_port}/ce"),
            "events": ["push"],
            "format": "cloudevents",
            "secret": "ce-secret",
        })),
    )
    .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["secret"], true, "never shown: {created}");
    // A URL that is not http(s), and an unknown event, are refused.
    for bad in [
        serde_json::json!({"scope": "hooks", "url": "file:///etc/passwd", "events": ["push"]}),
        serde_json::json!({"scope": "hooks", "url": "http://x.example/", "events": ["explode"]}),
    ] {
        let r = call(
            &berth,
            Method::POST,
            "/api/v1/webhooks",
            Some(&admin()),
            Some(bad),
        )
        .await;
        assert_eq!(r.status(), 400);
    }

    // The Docker engine pushes while the receiver is down.
    let registry = format!("localhost:{}", berth.port);
    let name = format!("{registry}/hooks/app:1");
    let (dir, name_) = (tmp.path().to_owned(), name.clone());
    blocking(move || {
        let docker = docker_image_signed_in(&dir, &name_, "100K", "hooks");
        docker.docker_ok(&["image", "push", &name_]);
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let deliveries = history(&berth, &hub_id).await;
        if deliveries[0]["attempts"].as_u64() >= Some(1) && !deliveries[0]["error"].is_null() {
            assert_eq!(deliveries[0]["state"], "pending", "{deliveries}");
            break;
        }
        assert!(Instant::now() < deadline, "no failed attempt: {deliveries}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Killed and started again, then the receiver comes up.
    berth.kill9();
    berth.restart().await;
    let got = tmp.path().join("received.jsonl");
    let mut receiver = std::process::Command::new("python3")
        .args([
            "-c",
            RECEIVER,
            &receiver_port.to_string(),
            got.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    struct Stop<'a>(&'a mut std::process::Child);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _stop = Stop(&mut receiver);
    let wait_for = |count: usize| {
        let got = got.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                let requests = received(&got);
                if requests.len() >= count {
                    return requests;
                }
                assert!(Instant::now() < deadline, "only {requests:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let requests = wait_for(2).await;
    let hub = requests.iter().find(|r| r["path"] == "/hub").unwrap();
    let ce = requests.iter().find(|r| r["path"] == "/ce").unwrap();
    let verify = |request: &Value, secret: &str| {
        let body = request["body"].as_str().unwrap();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            request["headers"]["x-berth-signature-256"],
            expected.as_str()
        );
        serde_json::from_str::<Value>(body).unwrap()
    };
    let hub_body = verify(hub, "hub-signing-secret");
    assert_eq!(hub["headers"]["x-berth-event"], "push");
    assert_eq!(hub["headers"]["content-type"], "application/json");
    assert_eq!(hub_body["repository"]["repo_name"], "hooks/app");
    assert_eq!(hub_body["repository"]["namespace"], "hooks");
    assert_eq!(hub_body["push_data"]["tag"], "1");
    assert_eq!(hub_body["push_data"]["pusher"], "admin");
    let digest = hub_body["push_data"]["digest"].as_str().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"));
    let ce_body = verify(ce, "ce-secret");
    assert_eq!(
        ce["headers"]["content-type"],
        "application/cloudevents+json"
    );
    assert_eq!(ce_body["specversion"], "1.0");
    assert_eq!(ce_body["type"], "io.berth.image.push");
    assert_eq!(ce_body["subject"], "hooks/app:1");

    // A delete reaches the namespace's webhook only (the other asked for pushes).
    let r = call(
        &berth,
        Method::DELETE,
        &format!("/v2/hooks/app/manifests/{digest}"),
        Some(&admin()),
        None,
    )
    .await;
    assert_eq!(r.status(), 202);
    let requests = wait_for(3).await;
    let deleted = &requests[2];
    assert_eq!(deleted["path"], "/hub");
    assert_eq!(deleted["headers"]["x-berth-event"], "delete");
    let deleted_body = verify(deleted, "hub-signing-secret");
    assert_eq!(deleted_body["event"], "delete");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received(&got).len(), 3, "nothing else was sent");

    let deliveries = history(&berth, &hub_id).await;
    let push = deliveries
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["event"] == "push")
        .unwrap();
    assert_eq!(push["state"], "delivered", "{deliveries}");
    assert_eq!(push["status"], 200);
    assert!(push["attempts"].as_u64().unwrap() >= 2, "{push}");
}

/// Pushes `tags` to `repo`, each its own small image, as the administrator (in order,
/// one after the other); returns each tag's manifest digest.
async fn push_tags(berth: &BerthProcess, repo: &str, tags: &[String]) -> Vec<String> {
    let mut digests = Vec::new();
    for tag in tags {
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"tag\":\"{tag}\"}}");
        let r = anonymous()
            .post(berth.url(&format!(
                "/v2/{repo}/blobs/uploads/?digest={}",
                sha256(config.as_bytes())
            )))
            .header("authorization", admin())
            .body(config.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let manifest = image_manifest(config.as_bytes(), &[]);
        let r = anonymous()
            .put(berth.url(&format!("/v2/{repo}/manifests/{tag}")))
            .header("authorization", admin())
            .header("content-type", crate::OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        digests.push(sha256(&manifest));
    }
    digests
}

async fn tags_of(berth: &BerthProcess, repo: &str) -> Vec<String> {
    let r = call(
        berth,
        Method::GET,
        &format!("/v2/{repo}/tags/list"),
        Some(&admin()),
        None,
    )
    .await;
    let body: Value = r.json().await.unwrap();
    let mut tags: Vec<String> = body["tags"]
        .as_array()
        .map(|t| t.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    tags.sort();
    tags
}

/// `berth …` against a data directory, asserting success; its standard output.
async fn berth_command(args: Vec<String>, data_dir: std::path::PathBuf) -> String {
    blocking(move || {
        let out = std::process::Command::new(berth_binary())
            .args(&args)
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
}

/// Retention on a repository with 50 tags (v1…v50, and latest on v50): keep the 10 most
/// recent `v*`, and whatever was pulled in the last 5 s, never v1 or latest. The dry run
/// lists exactly the 37 that go and changes nothing; the real run removes exactly those,
/// their manifests go too (garbage collection then finds their blobs), and the audit
/// log has them. Then a server with `--retention-interval 1s` applies a rule by itself.
#[tokio::test(flavor = "multi_thread")]
async fn retention_removes_exactly_what_its_rule_says() {
    let berth = BerthProcess::start_with(
        &["--retention-interval", "0"],
        &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
    .await;
    let tags: Vec<String> = (1..=50).map(|i| format!("v{i}")).collect();
    let digests = push_tags(&berth, "keep/app", &tags).await;
    let r = anonymous()
        .put(berth.url("/v2/keep/app/manifests/latest"))
        .header("authorization", admin())
        .header("content-type", crate::OCI_MANIFEST)
        .body(
            call(
                &berth,
                Method::GET,
                "/v2/keep/app/manifests/v50",
                Some(&admin()),
                None,
            )
            .await
            .bytes()
            .await
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Older than 5 s, all of them; then v3 and v7 are pulled (and stay "recently pulled"
    // for the 5 s the commands below take at most: times are kept in whole seconds).
    tokio::time::sleep(Duration::from_millis(6000)).await;
    for tag in ["v3", "v7"] {
        let r = call(
            &berth,
            Method::GET,
            &format!("/v2/keep/app/manifests/{tag}"),
            Some(&admin()),
            None,
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let data_dir = berth.data_dir.clone();
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    berth_command(
        args(&[
            "policy",
            "set",
            "keep/app",
            "retention",
            "keep-last=10 match=v* unpulled=5s protect=v1,latest",
        ]),
        data_dir.clone(),
    )
    .await;
    let mut expected: Vec<String> = (2..=40)
        .filter(|i| *i != 3 && *i != 7)
        .map(|i| format!("v{i}"))
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 37);
    let listed = |text: &str, prefix: &str| {
        let mut names: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|l| {
                l.split_whitespace()
                    .next()
                    .unwrap()
                    .trim_start_matches("keep/app:")
                    .to_owned()
            })
            .collect();
        names.sort();
        names
    };

    let dry = berth_command(args(&["retention", "run", "--dry-run"]), data_dir.clone()).await;
    assert_eq!(listed(&dry, "would remove "), expected, "{dry}");
    assert!(dry.contains("37 tags would be removed"), "{dry}");
    assert_eq!(
        tags_of(&berth, "keep/app").await.len(),
        51,
        "a dry run changes nothing"
    );

    let real = berth_command(args(&["retention", "run"]), data_dir.clone()).await;
    assert_eq!(listed(&real, "remove "), expected, "{real}");
    assert!(real.contains("37 tags removed"), "{real}");
    let mut kept: Vec<String> = ["latest", "v1", "v3", "v7"]
        .into_iter()
        .map(str::to_owned)
        .chain((41..=50).map(|i| format!("v{i}")))
        .collect();
    kept.sort();
    assert_eq!(tags_of(&berth, "keep/app").await, kept);
    // The removed tags' manifests went with them; the kept ones' are there.
    for (i, digest) in digests.iter().enumerate() {
        let r = call(
            &berth,
            Method::HEAD,
            &format!("/v2/keep/app/manifests/{digest}"),
            Some(&admin()),
            None,
        )
        .await;
        let tag = format!("v{}", i + 1);
        let expected_status = if expected.contains(&tag) { 404 } else { 200 };
        assert_eq!(r.status(), expected_status, "{tag}");
    }
    // Garbage collection now finds their config blobs.
    let gc = berth_command(
        args(&["gc", "--dry-run", "--grace", "0s", "--json"]),
        data_dir.clone(),
    )
    .await;
    let report: Value = serde_json::from_str(gc.trim()).unwrap();
    assert!(report["blobs"].as_u64().unwrap() >= 37, "{report}");
    let r = call(
        &berth,
        Method::GET,
        "/api/v1/audit?repo=keep/app",
        Some(&admin()),
        None,
    )
    .await;
    let audit: Value = r.json().await.unwrap();
    let retention_events = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "retention-delete" && e["actor"] == "retention")
        .count();
    assert_eq!(retention_events, 37);
    drop(berth);

    // On a schedule.
    let scheduled = BerthProcess::start_with(
        &["--retention-interval", "1s"],
        &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
    .await;
    let tags: Vec<String> = ["a1", "a2", "a3"].map(str::to_owned).to_vec();
    push_tags(&scheduled, "sched/app", &tags).await;
    berth_command(
        args(&["policy", "set", "sched", "retention", "keep-last=1"]),
        scheduled.data_dir.clone(),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = tags_of(&scheduled, "sched/app").await;
        if left == ["a3"] {
            break;
        }
        assert!(Instant::now() < deadline, "still {left:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
