//! Several berth nodes on one S3 bucket and one database: an upload continues on any
//! node, chunk by chunk, and a blob pushed through one is served by all; downloads can
//! go straight to the bucket through presigned URLs.

use berth_server::{DatabaseConfig, StorageConfig};

use crate::{
    TestServer, absolute, assert_blob, finish_upload, header, http, pseudo_random, range_end,
    s3_scratch_url, sha256, start_upload,
};

/// Two in-process nodes sharing `storage` and the first one's database (PostgreSQL
/// with `BERTH_TEST_DATABASE=postgres`, else its SQLite file).
async fn two_nodes(storage: StorageConfig) -> (TestServer, TestServer) {
    let first = {
        let storage = storage.clone();
        TestServer::start_with(move |c| c.storage = storage).await
    };
    let database: DatabaseConfig = first.database.clone();
    let second = TestServer::start_with(move |c| {
        c.storage = storage;
        c.database = database;
    })
    .await;
    (first, second)
}

fn s3() -> StorageConfig {
    StorageConfig::S3 {
        url: s3_scratch_url(),
        redirect: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_upload_alternates_nodes_chunk_by_chunk() {
    let (a, b) = two_nodes(s3()).await;
    let repo = "nodes/chunks";
    const MIB: usize = 1024 * 1024;
    // Chunks below and above S3's 5 MiB part minimum, so parts and tails both move
    // between nodes, ending inside a part.
    let sizes = [MIB, 6 * MIB, 3 * MIB + 7, 9 * MIB, 100 * 1024, 5 * MIB];
    let data = pseudo_random(sizes.iter().sum(), 21);
    let digest = sha256(&data);
    let mut location = start_upload(&a.base, repo).await;
    let mut offset = 0;
    for (i, size) in sizes.into_iter().enumerate() {
        // Each chunk goes to the other node than the one that took the last.
        let node = if i % 2 == 0 { &b } else { &a };
        let path = location.split_once("/v2/").unwrap().1;
        let r = http()
            .patch(format!("{}/v2/{path}", node.base))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{offset}-{}", offset + size - 1))
            .body(data[offset..offset + size].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "chunk {i} through node {}", node.port);
        offset += size;
        assert_eq!(range_end(&r), offset as u64 - 1, "chunk {i}");
        location = absolute(&node.base, header(&r, "location"));
        // The other node reports the same progress.
        let other = if i % 2 == 0 { &a } else { &b };
        let path = location.split_once("/v2/").unwrap().1;
        let status = http()
            .get(format!("{}/v2/{path}", other.base))
            .send()
            .await
            .unwrap();
        assert_eq!(status.status(), 204);
        assert_eq!(range_end(&status), offset as u64 - 1);
    }
    let path = location.split_once("/v2/").unwrap().1;
    finish_upload(&format!("{}/v2/{path}", a.base), &digest).await;
    assert_blob(&b.base, repo, &digest, &data).await;
    assert_blob(&a.base, repo, &digest, &data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_downloads_can_redirect_to_presigned_urls() {
    let url = s3_scratch_url();
    let server = TestServer::start_with(move |c| {
        c.storage = StorageConfig::S3 {
            url,
            redirect: Some(std::time::Duration::from_secs(300)),
        }
    })
    .await;
    let repo = "nodes/redirect";
    let data = pseudo_random(3 * 1024 * 1024 + 1, 22);
    let digest = sha256(&data);
    let location = start_upload(&server.base, repo).await;
    let r = http()
        .put(crate::with_digest(&location, &digest))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let blob = format!("{}/v2/{repo}/blobs/{digest}", server.base);
    let r = http().head(&blob).send().await.unwrap();
    assert_eq!(r.status(), 200, "HEAD answers itself");
    assert_eq!(header(&r, "content-length"), data.len().to_string());
    let r = http().get(&blob).send().await.unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(header(&r, "docker-content-digest"), digest);
    let target = header(&r, "location").to_owned();
    assert!(
        target.starts_with(&std::env::var("AWS_ENDPOINT_URL").unwrap()),
        "{target}"
    );
    assert!(target.contains("X-Amz-Signature="), "{target}");
    // The presigned URL serves the bytes, whole and in ranges, with no credentials.
    let direct = crate::anonymous().get(&target).send().await.unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(sha256(&direct.bytes().await.unwrap()), digest);
    let part = crate::anonymous()
        .get(&target)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(&part.bytes().await.unwrap()[..], &data[10..20]);
    // A blob that is not in the repository is not redirected anywhere.
    let missing = http()
        .get(format!(
            "{}/v2/{repo}/blobs/{}",
            server.base,
            sha256(b"absent")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

// ---------------------------------------------------------------- real binaries

/// `berth serve` processes on different ports over one PostgreSQL database and one S3
/// prefix: one registry.
struct Cluster {
    nodes: Vec<crate::process::BerthProcess>,
    storage: String,
    database: crate::ScratchDatabase,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// `n` nodes, each started with `--open` and `extra` besides the shared stores.
    async fn start_with(n: usize, extra: &[&str]) -> Cluster {
        let database = crate::ScratchDatabase::create();
        let storage = s3_scratch_url();
        let mut nodes = Vec::new();
        for _ in 0..n {
            let mut args = vec![
                "--open",
                "--storage",
                storage.as_str(),
                "--database",
                database.url.as_str(),
            ];
            args.extend_from_slice(extra);
            nodes.push(crate::process::BerthProcess::start_with(&args, &[]).await);
        }
        Cluster {
            nodes,
            storage,
            database,
        }
    }

    fn host(&self, node: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[node].port)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_pushes_through_one_node_and_pulls_identical_through_the_other() {
    use crate::clients::*;
    let cluster = Cluster::start(2).await;
    let (first, second) = (cluster.host(0), cluster.host(1));
    blocking(move || {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        // Layers below, at and above S3's part sizes.
        mkimage(
            &src,
            &["--layers", "12M,1M,5M", "--tag", "v1", "--seed", "nodes"],
        );
        let sk = Skopeo::new();
        sk.ok(&[
            "copy",
            &oci_ref(&src, "v1"),
            &format!("docker://{first}/nodes/app:v1"),
            "--dest-tls-verify=false",
        ]);
        let pulled = tmp.path().join("pulled");
        sk.ok(&[
            "copy",
            &format!("docker://{second}/nodes/app:v1"),
            &oci_ref(&pulled, "v1"),
            "--src-tls-verify=false",
        ]);
        assert_layout_blobs_identical(&src, &pulled);
        assert_eq!(
            layout_ref_digest(&src, "v1"),
            layout_ref_digest(&pulled, "v1")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_mid_push_loses_nothing_and_the_push_retried_through_another_succeeds() {
    use crate::clients::*;
    let mut cluster = Cluster::start(2).await;
    let (first, second) = (cluster.host(0), cluster.host(1));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    // A small layer that lands first, and a large one still streaming at the kill.
    let summary = mkimage(
        &src,
        &["--layers", "256K,160M", "--tag", "v1", "--seed", "killed"],
    );
    let small = summary_layers(&summary[0], 0)[0].clone();
    let push = {
        let (src, first) = (src.clone(), first.clone());
        std::thread::spawn(move || {
            Skopeo::new().run(&[
                "copy",
                &oci_ref(&src, "v1"),
                &format!("docker://{first}/nodes/killed:v1"),
                "--dest-tls-verify=false",
            ])
        })
    };
    // Kill the first node as soon as the small layer is stored, with the large one
    // (most likely) mid-upload.
    let client = http();
    let head = format!("http://{first}/v2/nodes/killed/blobs/{small}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let stored = client
            .head(&head)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if stored {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the small layer never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    cluster.nodes[0].kill9();
    let interrupted = blocking(move || push.join().unwrap()).await;
    // (If the push happened to finish before the kill, the retry below still must work.)
    eprintln!("push through the killed node: {}", interrupted.status);
    // What completed before the kill is still there, served by the other node.
    let r = client
        .head(format!("http://{second}/v2/nodes/killed/blobs/{small}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "a completed layer survives the node's death"
    );
    let src2 = src.clone();
    blocking(move || {
        let sk = Skopeo::new();
        sk.ok(&[
            "copy",
            &oci_ref(&src2, "v1"),
            &format!("docker://{second}/nodes/killed:v1"),
            "--dest-tls-verify=false",
        ]);
        let pulled = src2.parent().unwrap().join("pulled");
        sk.ok(&[
            "copy",
            &format!("docker://{second}/nodes/killed:v1"),
            &oci_ref(&pulled, "v1"),
            "--src-tls-verify=false",
        ]);
        assert_layout_blobs_identical(&src2, &pulled);
    })
    .await;
}

/// `berth gc ARGS --json` against a cluster's bucket and database.
fn cluster_gc(storage: &str, database: &str, args: &[&str]) -> serde_json::Value {
    let mut command = std::process::Command::new(crate::process::berth_binary());
    command
        .args(["gc", "--json", "--storage", storage, "--database", database])
        .args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BERTH_") {
            command.env_remove(key);
        }
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "berth gc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The blob digests (`sha256:…`) the bucket holds under a storage URL.
async fn bucket_blobs(storage: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let store = berth_server::open_blobs(&StorageConfig::S3 {
        url: storage.to_owned(),
        redirect: None,
    })
    .await
    .unwrap();
    let listed: Vec<_> = store.list_blobs().try_collect().await.unwrap();
    listed.into_iter().map(|b| b.digest.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn collection_while_skopeo_pushes_and_pulls_through_both_nodes() {
    use crate::clients::*;
    let cluster = Cluster::start(2).await;
    let (storage, database) = (&cluster.storage, &cluster.database);
    let hosts = [cluster.host(0), cluster.host(1)];
    let tmp = tempfile::tempdir().unwrap();
    let layout = |name: &str| tmp.path().join(name);
    for (name, seed) in [("kept", "gc-kept"), ("gone", "gc-gone"), ("new", "gc-new")] {
        mkimage(
            &layout(name),
            &["--layers", "6M,300K", "--tag", "v1", "--seed", seed],
        );
    }
    let copy = |from: String, to: String| {
        Skopeo::new().ok(&[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &from,
            &to,
        ]);
    };
    let (h0, h1) = (hosts[0].clone(), hosts[1].clone());
    {
        let (kept, gone) = (layout("kept"), layout("gone"));
        let (h0, h1) = (h0.clone(), h1.clone());
        blocking(move || {
            copy(oci_ref(&kept, "v1"), format!("docker://{h0}/gc/kept:v1"));
            copy(oci_ref(&gone, "v1"), format!("docker://{h1}/gc/gone:v1"));
        })
        .await;
    }
    let gone_digest = layout_ref_digest(&layout("gone"), "v1");
    let r = http()
        .delete(format!("http://{h0}/v2/gc/gone/manifests/{gone_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let predicted = {
        let (storage, database) = (storage.clone(), database.url.clone());
        blocking(move || cluster_gc(&storage, &database, &["--grace", "0s", "--dry-run"])).await
    };
    assert_eq!(predicted["blobs"], 3, "config and two layers: {predicted}");
    // Collect while skopeo pushes a new image through one node and pulls the kept one
    // through the other.
    let traffic = {
        let (new, pulled) = (layout("new"), layout("pulled-during"));
        let (h0, h1) = (h0.clone(), h1.clone());
        std::thread::spawn(move || {
            copy(oci_ref(&new, "v1"), format!("docker://{h0}/gc/new:v1"));
            copy(format!("docker://{h1}/gc/kept:v1"), oci_ref(&pulled, "v1"));
        })
    };
    let report = {
        let (storage, database) = (storage.clone(), database.url.clone());
        blocking(move || cluster_gc(&storage, &database, &["--grace", "0s"])).await
    };
    blocking(move || traffic.join().unwrap()).await;
    assert_eq!(
        report["bytes"], predicted["bytes"],
        "the dry run predicted the bytes freed: {report} vs {predicted}"
    );
    assert_eq!(report["blobs"], predicted["blobs"], "{report}");

    // The deleted image's blobs are gone from the bucket; the rest pulls identical
    // through either node.
    let stored = bucket_blobs(storage).await;
    for name in layout_blob_names(&layout("gone")) {
        let digest = format!("sha256:{name}");
        let shared_with_kept = layout_blob_names(&layout("kept")).contains(&name);
        assert!(
            shared_with_kept || !stored.contains(&digest),
            "{digest} of the deleted image is still in the bucket"
        );
    }
    let tmp_path = tmp.path().to_path_buf();
    blocking(move || {
        assert_layout_blobs_identical(&tmp_path.join("kept"), &tmp_path.join("pulled-during"));
        for (i, host) in [h0, h1].iter().enumerate() {
            for name in ["kept", "new"] {
                let out = tmp_path.join(format!("{name}-{i}"));
                copy(format!("docker://{host}/gc/{name}:v1"), oci_ref(&out, "v1"));
                assert_layout_blobs_identical(&tmp_path.join(name), &out);
            }
        }
    })
    .await;
}

/// nginx as the README's "Several nodes" sets it up (without TLS), in front of `ports`.
struct LoadBalancer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl LoadBalancer {
    fn start(ports: &[u16]) -> LoadBalancer {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("nginx (scripts/install-test-deps.sh installs it)");
        let dir = tempfile::tempdir().unwrap();
        let port = crate::process::free_port();
        let servers: String = ports
            .iter()
            .map(|p| format!("server 127.0.0.1:{p}; "))
            .collect();
        let d = dir.path().display();
        let conf = format!(
            // One process (no master): killing it leaves no worker behind holding the
            // test runner's output pipes.
            "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;
             events {{ worker_connections 1024; }}
             http {{
               log_format upstream '$upstream_addr $request_method $status';
               access_log {d}/access.log upstream;
               client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
               fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
               upstream berth {{ {servers}}}
               server {{
                 listen 127.0.0.1:{port};
                 client_max_body_size 0;
                 proxy_request_buffering off;
                 proxy_buffering off;
                 proxy_http_version 1.1;
                 location / {{
                   proxy_pass http://berth;
                   proxy_set_header Host $http_host;
                   proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                   proxy_set_header X-Forwarded-Proto $scheme;
                   proxy_set_header X-Forwarded-Host $http_host;
                 }}
               }}
             }}"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = std::process::Command::new(nginx)
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-p")
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        LoadBalancer {
            child,
            port,
            _dir: dir,
        }
    }

    /// Requests each node answered (by port), from nginx's access log.
    fn requests_per_node(&self, ports: &[u16]) -> Vec<usize> {
        let log = std::fs::read_to_string(self._dir.path().join("access.log")).unwrap_or_default();
        ports
            .iter()
            .map(|port| {
                let upstream = format!("127.0.0.1:{port} ");
                log.lines().filter(|l| l.starts_with(&upstream)).count()
            })
            .collect()
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The README's set-up, whole: two nodes with forwarded headers trusted, behind nginx
/// that spreads requests round-robin. skopeo pushes and pulls through it, and a chunked
/// upload whose chunks land on alternating nodes finishes.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_set_up_two_nodes_behind_nginx() {
    use crate::clients::*;
    let cluster =
        Cluster::start_with(2, &["--trust-forwarded-for", "--trust-forwarded-host"]).await;
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    let balancer = LoadBalancer::start(&ports);
    let front = format!("127.0.0.1:{}", balancer.port);

    // Chunks through the balancer: round-robin sends consecutive requests to
    // alternating nodes.
    let base = format!("http://{front}");
    let data = pseudo_random(7 * 1024 * 1024 + 3, 31);
    let digest = sha256(&data);
    let mut location = start_upload(&base, "readme/chunks").await;
    let mut offset = 0;
    for size in [1024 * 1024, 6 * 1024 * 1024, 3] {
        let r = http()
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{offset}-{}", offset + size - 1))
            .body(data[offset..offset + size].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        offset += size;
        location = absolute(&base, header(&r, "location"));
    }
    finish_upload(&location, &digest).await;
    assert_blob(&base, "readme/chunks", &digest, &data).await;

    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    mkimage(
        &src,
        &["--layers", "3M,1M", "--tag", "v1", "--seed", "readme"],
    );
    let pulled = tmp.path().join("pulled");
    let (src2, pulled2, front2) = (src.clone(), pulled.clone(), front.clone());
    blocking(move || {
        let sk = Skopeo::new();
        sk.ok(&[
            "copy",
            "--dest-tls-verify=false",
            &oci_ref(&src2, "v1"),
            &format!("docker://{front2}/readme/app:v1"),
        ]);
        sk.ok(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{front2}/readme/app:v1"),
            &oci_ref(&pulled2, "v1"),
        ]);
        assert_layout_blobs_identical(&src2, &pulled2);
    })
    .await;
    // Both nodes served their share.
    let served = balancer.requests_per_node(&ports);
    assert!(
        served.iter().all(|&n| n >= 5),
        "requests per node: {served:?}"
    );
}
