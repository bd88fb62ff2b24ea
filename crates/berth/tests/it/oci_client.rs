//! The Rust `oci-client` crate (0.18, the oras-project client) against an in-process
//! berth over plain HTTP, anonymously: push (chunked PATCHes with Content-Range, then
//! `PUT ?digest=`), pull, manifest by tag, by digest and by HEAD, tag listing,
//! cross-repository mount, and a push whose declared digest does not match its bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use oci_client::RegistryOperation;
use oci_client::client::{ClientConfig, ClientProtocol, Config as OciConfig, ImageLayer};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciDescriptor,
    OciImageManifest,
};
use oci_client::secrets::RegistryAuth;

/// Anonymous against an open server; the administrator's password in auth mode.
fn registry_auth() -> RegistryAuth {
    if crate::auth_mode() {
        RegistryAuth::Basic("admin".into(), crate::ADMIN_PASSWORD.into())
    } else {
        RegistryAuth::Anonymous
    }
}
use oci_client::{Client, Reference};

use crate::{TestServer, header, http, pseudo_random, sha256};

fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

fn reference(server: &TestServer, repo: &str, tag: &str) -> Reference {
    Reference::with_tag(server.host.clone(), repo.to_owned(), tag.to_owned())
}

struct TestImage {
    config: OciConfig,
    layers: Vec<ImageLayer>,
    manifest: OciImageManifest,
}

/// A config and two gzip-typed layers: one larger than oci-client's 4 MiB chunk (so it
/// goes up in two PATCHes), one small. The manifest is built by the crate.
fn test_image(seed: u64) -> TestImage {
    let config = OciConfig::oci_v1(
        format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes(),
        None,
    );
    let layers = vec![
        ImageLayer::oci_v1_gzip(pseudo_random(5 * 1024 * 1024 + 123, seed), None),
        ImageLayer::oci_v1_gzip(pseudo_random(1000, seed + 1), None),
    ];
    let mut manifest = OciImageManifest::build(&layers, &config, None);
    manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_owned());
    TestImage {
        config,
        layers,
        manifest,
    }
}

fn digests(descriptors: &[OciDescriptor]) -> Vec<(String, i64)> {
    descriptors
        .iter()
        .map(|d| (d.digest.clone(), d.size))
        .collect()
}

async fn head_blob(server: &TestServer, repo: &str, digest: &str) -> reqwest::Response {
    http()
        .head(format!("{}/v2/{repo}/blobs/{digest}", server.base))
        .send()
        .await
        .unwrap()
}

/// Push, then everything a client reads back: the same manifest digest by every route,
/// the same config and layer bytes, the tag listed.
#[tokio::test(flavor = "multi_thread")]
async fn oci_client_push_then_pull_roundtrip() {
    let server = TestServer::start().await;
    let client = client();
    let auth = registry_auth();
    let image = test_image(1);
    let app = reference(&server, "oci/app", "v1");

    let pushed = client
        .push(
            &app,
            &image.layers,
            image.config.clone(),
            &auth,
            Some(image.manifest.clone()),
        )
        .await
        .unwrap();
    // Both URLs come from berth's Location headers.
    assert_eq!(
        pushed.config_url,
        format!(
            "{}/v2/oci/app/blobs/{}",
            server.base,
            image.config.sha256_digest()
        )
    );
    let (prefix, manifest_digest) = pushed
        .manifest_url
        .rsplit_once("/manifests/")
        .unwrap_or_else(|| panic!("manifest URL {:?} has no /manifests/", pushed.manifest_url));
    assert_eq!(prefix, format!("{}/v2/oci/app", server.base));
    assert!(
        manifest_digest.starts_with("sha256:"),
        "manifest URL {:?}",
        pushed.manifest_url
    );
    let manifest_digest = manifest_digest.to_owned();

    // What berth stored, seen over plain HTTP: the bytes hash to the digest it announced.
    let r = http()
        .get(format!("{}/v2/oci/app/manifests/v1", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), manifest_digest);
    assert_eq!(header(&r, "content-type"), OCI_IMAGE_MEDIA_TYPE);
    let body = r.bytes().await.unwrap();
    assert_eq!(sha256(&body), manifest_digest);
    let stored: OciImageManifest = serde_json::from_slice(&body).unwrap();
    assert_eq!(digests(&stored.layers), digests(&image.manifest.layers));
    assert_eq!(stored.config.digest, image.config.sha256_digest());

    // pull: config and both layers, byte for byte. Layers may come back in download
    // completion order, so they are matched by digest.
    let pulled = client
        .pull(&app, &auth, vec![IMAGE_LAYER_GZIP_MEDIA_TYPE])
        .await
        .unwrap();
    assert_eq!(pulled.digest.as_deref(), Some(manifest_digest.as_str()));
    assert_eq!(pulled.config.media_type, IMAGE_CONFIG_MEDIA_TYPE);
    assert_eq!(pulled.config.data, image.config.data);
    assert_eq!(pulled.layers.len(), image.layers.len());
    for layer in &image.layers {
        let digest = layer.sha256_digest();
        let got = pulled
            .layers
            .iter()
            .find(|l| l.sha256_digest() == digest)
            .unwrap_or_else(|| panic!("layer {digest} was not pulled"));
        assert_eq!(got.media_type, IMAGE_LAYER_GZIP_MEDIA_TYPE);
        assert_eq!(got.data.len(), layer.data.len());
        assert!(
            got.data == layer.data,
            "layer {digest} came back with other bytes"
        );
    }
    let pulled_manifest = pulled.manifest.expect("pull returns the manifest");
    assert_eq!(
        digests(&pulled_manifest.layers),
        digests(&image.manifest.layers)
    );

    // The manifest alone, by tag and by digest, and its digest by HEAD.
    let (manifest, digest) = client.pull_image_manifest(&app, &auth).await.unwrap();
    assert_eq!(digest, manifest_digest);
    assert_eq!(manifest.config.digest, image.config.sha256_digest());
    assert_eq!(manifest.config.size, image.config.data.len() as i64);
    assert_eq!(digests(&manifest.layers), digests(&image.manifest.layers));
    let by_digest = Reference::with_digest(
        server.host.clone(),
        "oci/app".to_owned(),
        manifest_digest.clone(),
    );
    let (_, digest) = client.pull_image_manifest(&by_digest, &auth).await.unwrap();
    assert_eq!(digest, manifest_digest);
    assert_eq!(
        client.fetch_manifest_digest(&app, &auth).await.unwrap(),
        manifest_digest
    );

    let tags = client.list_tags(&app, &auth, None, None).await.unwrap();
    assert_eq!(tags.name, "oci/app");
    assert_eq!(tags.tags, ["v1"]);
}

/// `mount_blob` links a layer into another repository without sending it again; the
/// blob is then served there, and only there.
#[tokio::test(flavor = "multi_thread")]
async fn oci_client_mount_blob_across_repositories() {
    let server = TestServer::start().await;
    let client = client();
    let auth = registry_auth();
    let image = test_image(2);
    let app = reference(&server, "oci/app", "v1");
    client
        .push(
            &app,
            &image.layers,
            image.config.clone(),
            &auth,
            Some(image.manifest.clone()),
        )
        .await
        .unwrap();
    let layer = &image.layers[0];
    let digest = layer.sha256_digest();

    assert_eq!(
        head_blob(&server, "oci/other", &digest).await.status(),
        404,
        "not in oci/other before the mount"
    );
    let other = reference(&server, "oci/other", "latest");
    client.mount_blob(&other, &app, &digest).await.unwrap();

    let r = head_blob(&server, "oci/other", &digest).await;
    assert_eq!(r.status(), 200, "the mounted blob is served in oci/other");
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_eq!(header(&r, "content-length"), layer.data.len().to_string());
    assert!(client.blob_exists(&other, &digest).await.unwrap());
    let mut out: Vec<u8> = Vec::new();
    client
        .pull_blob(&other, digest.as_str(), &mut out)
        .await
        .unwrap();
    assert!(
        out[..] == layer.data[..],
        "the mounted blob has other bytes"
    );

    // A repository nothing was mounted into does not serve it.
    assert_eq!(head_blob(&server, "oci/never", &digest).await.status(), 404);
    let never = reference(&server, "oci/never", "latest");
    assert!(!client.blob_exists(&never, &digest).await.unwrap());

    // Mounting from a repository that does not hold the blob does not mount it: berth
    // answers 202 (an upload session instead), which oci-client reports as an error.
    let empty = reference(&server, "oci/empty", "latest");
    let third = reference(&server, "oci/third", "latest");
    let err = client
        .mount_blob(&third, &empty, &digest)
        .await
        .unwrap_err();
    assert!(
        matches!(err, OciDistributionError::SpecViolationError(_)),
        "expected oci-client to report the 202 as not mounted, got {err:?}"
    );
    assert_eq!(head_blob(&server, "oci/third", &digest).await.status(), 404);
}

/// A blob whose declared digest does not match its bytes is refused at `PUT ?digest=`
/// with 400 DIGEST_INVALID, which oci-client surfaces; nothing is published, and a
/// push whose layers do not line up with its manifest fails before the manifest.
#[tokio::test(flavor = "multi_thread")]
async fn oci_client_digest_mismatch_is_refused() {
    let server = TestServer::start().await;
    let client = client();
    let auth = registry_auth();
    let target = reference(&server, "oci/bad", "v1");
    client
        .auth(&target, &auth, RegistryOperation::Push)
        .await
        .unwrap();

    let data = pseudo_random(10_000, 3);
    let wrong = sha256(b"not these bytes");
    let err = client
        .push_blob(&target, data.clone(), &wrong)
        .await
        .unwrap_err();
    match &err {
        OciDistributionError::ServerError { code, message, .. } => {
            assert_eq!(*code, 400, "{err}");
            assert!(message.contains("DIGEST_INVALID"), "{err}");
        }
        other => panic!("expected berth's 400 DIGEST_INVALID, got {other:?}"),
    }
    assert_eq!(head_blob(&server, "oci/bad", &wrong).await.status(), 404);
    assert_eq!(
        head_blob(&server, "oci/bad", &sha256(&data)).await.status(),
        404
    );

    // oci-client pairs layers with the manifest's digests by position: the layers in the
    // wrong order means each upload declares the other layer's digest.
    let image = test_image(4);
    let mut swapped = image.layers.clone();
    swapped.reverse();
    let err = match client
        .push(
            &target,
            &swapped,
            image.config.clone(),
            &auth,
            Some(image.manifest.clone()),
        )
        .await
    {
        Ok(_) => panic!("a push whose layers do not match the manifest's digests must fail"),
        Err(e) => e,
    };
    assert!(
        err.to_string().contains("DIGEST_INVALID"),
        "expected DIGEST_INVALID, got {err:?}"
    );
    let r = http()
        .get(format!("{}/v2/oci/bad/manifests/v1", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the manifest must not have been pushed");
    for layer in &image.layers {
        assert_eq!(
            head_blob(&server, "oci/bad", &layer.sha256_digest())
                .await
                .status(),
            404
        );
    }

    // The same image in the right order goes through.
    client
        .push(
            &target,
            &image.layers,
            image.config.clone(),
            &auth,
            Some(image.manifest.clone()),
        )
        .await
        .unwrap();
    let (manifest, _) = client.pull_image_manifest(&target, &auth).await.unwrap();
    assert_eq!(digests(&manifest.layers), digests(&image.manifest.layers));
}
