//! end-3 (GET/HEAD manifest), end-7 (PUT), end-9 (DELETE), end-8 (tags), end-12
//! (referrers) and the catalog.

use crate::*;

const EMPTY_CONFIG: &[u8] = b"{}";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[tokio::test(flavor = "multi_thread")]
async fn end_3_manifests_are_served_byte_for_byte_by_tag_and_digest() {
    let s = TestServer::start().await;
    let (digest, manifest) = push_image(&s.base, "gallery/ui", "2.1.106", "ui").await;
    for reference in ["2.1.106", digest.as_str()] {
        let r = http()
            .get(s.url(&format!("/v2/gallery/ui/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&r, "docker-content-digest"), digest);
        assert_eq!(header(&r, "content-length"), manifest.len().to_string());
        assert_eq!(r.bytes().await.unwrap(), manifest);
        let r = http()
            .head(s.url(&format!("/v2/gallery/ui/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "docker-content-digest"), digest);
        assert_eq!(header(&r, "content-length"), manifest.len().to_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn end_7_put_returns_location_and_digest_and_keeps_unknown_fields() {
    let s = TestServer::start().await;
    let config = b"{\"architecture\":\"amd64\"}";
    push_blob(&s.base, "keep", config).await;
    let body = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{}\",\"size\":{}}},\"layers\":[],\"newUnspecifiedField\":{{\"x\":[1,2]}},   \"annotations\":{{\"org.example\":\"yes\"}}}}",
        sha256(config),
        config.len()
    );
    let r = put_manifest(&s.base, "keep", "v1", body.as_bytes()).await;
    assert_eq!(r.status(), 201);
    let digest = sha256(body.as_bytes());
    assert_eq!(
        header(&r, "location"),
        format!("/v2/library/keep/manifests/{digest}")
    );
    assert_eq!(header(&r, "docker-content-digest"), digest);
    let r = http()
        .get(s.url("/v2/keep/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), body);
}

#[tokio::test(flavor = "multi_thread")]
async fn end_7_docker_schema2_manifest_and_list_keep_their_content_type() {
    let s = TestServer::start().await;
    let config = b"{\"os\":\"linux\"}";
    let layer = b"docker layer";
    push_blob(&s.base, "dk/img", config).await;
    push_blob(&s.base, "dk/img", layer).await;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha256(config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha256(layer), "size": layer.len()}],
    }))
    .unwrap();
    let child = sha256(&manifest);
    let r = http()
        .put(s.url(&format!("/v2/dk/img/manifests/{child}")))
        .header("content-type", DOCKER_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": child, "size": manifest.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    let r = http()
        .put(s.url("/v2/dk/img/manifests/latest"))
        .header("content-type", DOCKER_LIST)
        .body(list.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http()
        .get(s.url("/v2/dk/img/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-type"), DOCKER_LIST);
    assert_eq!(r.bytes().await.unwrap(), list);
    let r = http()
        .get(s.url(&format!("/v2/dk/img/manifests/{child}")))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-type"), DOCKER_MANIFEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn end_7_blobs_must_exist_in_the_repository() {
    let s = TestServer::start().await;
    let config = b"{}cfg";
    let layer = b"layer only elsewhere";
    push_blob(&s.base, "refs/a", config).await;
    push_blob(&s.base, "refs/elsewhere", layer).await;
    let manifest = image_manifest(config, &[layer]);
    let r = put_manifest(&s.base, "refs/a", "v1", &manifest).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    let r = http()
        .get(s.url("/v2/refs/a/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "nothing was stored");
}

/// An index may be pushed with only some of its platforms' manifests here (a sparse
/// index, what `OCI_DATA_SPARSE` checks and `skopeo --multi-arch index-only` makes):
/// stored byte for byte; the absent platform is `MANIFEST_UNKNOWN` until it is pushed.
#[tokio::test(flavor = "multi_thread")]
async fn end_7_sparse_indexes_are_stored_and_their_platforms_come_later() {
    let s = TestServer::start().await;
    let configs: [&[u8]; 2] = [
        br#"{"architecture":"amd64","os":"linux"}"#,
        br#"{"architecture":"arm64","os":"linux"}"#,
    ];
    let layers: [&[u8]; 2] = [b"amd64 layer", b"arm64 layer"];
    let images = [0, 1].map(|i| image_manifest(configs[i], &[layers[i]]));
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": sha256(&images[0]), "size": images[0].len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": sha256(&images[1]), "size": images[1].len(),
             "platform": {"os": "linux", "architecture": "arm64"}},
        ],
    }))
    .unwrap();
    // One platform here, pushed by digest; the other not at all.
    push_blob(&s.base, "sparse", configs[0]).await;
    push_blob(&s.base, "sparse", layers[0]).await;
    let r = put_manifest(&s.base, "sparse", &sha256(&images[0]), &images[0]).await;
    assert_eq!(r.status(), 201);
    let put_index = |reference: String| {
        http()
            .put(s.url(&format!("/v2/sparse/manifests/{reference}")))
            .header("content-type", OCI_INDEX)
            .body(index.clone())
            .send()
    };
    let r = put_index("multi".into()).await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), sha256(&index));
    let get = |reference: String| {
        http()
            .get(s.url(&format!("/v2/sparse/manifests/{reference}")))
            .header("accept", format!("{OCI_INDEX}, {OCI_MANIFEST}"))
            .send()
    };
    let r = get("multi".into()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), index, "the index byte for byte");
    assert_eq!(get(sha256(&images[0])).await.unwrap().status(), 200);
    let r = get(sha256(&images[1])).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");

    // The absent platform arrives later and is then served through the index.
    push_blob(&s.base, "sparse", configs[1]).await;
    push_blob(&s.base, "sparse", layers[1]).await;
    let r = put_manifest(&s.base, "sparse", &sha256(&images[1]), &images[1]).await;
    assert_eq!(r.status(), 201);
    let r = get(sha256(&images[1])).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), images[1]);
    // Pushing the same index again by digest changes nothing.
    let r = put_index(sha256(&index)).await.unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn end_7_non_distributable_layers_with_urls_need_not_be_pushed() {
    let s = TestServer::start().await;
    push_blob(&s.base, "nd", EMPTY_CONFIG).await;
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(EMPTY_CONFIG), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                    "digest": sha256(b"foreign"), "size": 7, "urls": ["https://example.com/layer"]}],
    }))
    .unwrap();
    assert_eq!(put_manifest(&s.base, "nd", "v1", &body).await.status(), 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn end_7_invalid_manifests_are_manifest_invalid() {
    let s = TestServer::start().await;
    for body in [&b"not json"[..], b"{}", b"{\"schemaVersion\":1}", b"[1,2]"] {
        let r = put_manifest(&s.base, "bad", "v1", body).await;
        assert_eq!(r.status(), 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    }
    // Declared as an index, shaped as an image manifest.
    let image = image_manifest(b"c", &[]);
    let r = http()
        .put(s.url("/v2/bad/manifests/v1"))
        .header("content-type", OCI_INDEX)
        .body(image)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
}

#[tokio::test(flavor = "multi_thread")]
async fn end_7_oversized_manifests_are_413() {
    let s = TestServer::start().await;
    let huge = vec![b' '; 4 * 1024 * 1024 + 1];
    let r = put_manifest(&s.base, "big", "v1", &huge).await;
    assert_eq!(r.status(), 413);
    assert_eq!(error_code(r).await, "SIZE_INVALID");
    // Just under the limit is fine (padding is legal JSON whitespace).
    push_blob(&s.base, "big", EMPTY_CONFIG).await;
    let mut body = image_manifest(EMPTY_CONFIG, &[]);
    body.resize(4 * 1024 * 1024, b' ');
    assert_eq!(
        put_manifest(&s.base, "big", "v1", &body).await.status(),
        201
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn end_7_put_by_digest_checks_the_digest() {
    let s = TestServer::start().await;
    push_blob(&s.base, "dg", EMPTY_CONFIG).await;
    let body = image_manifest(EMPTY_CONFIG, &[]);
    let wrong = sha256(b"other");
    let r = put_manifest(&s.base, "dg", &wrong, &body).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = put_manifest(&s.base, "dg", "sha256:baddigeststring", &body).await;
    assert_eq!(r.status(), 400);
    let right = sha256(&body);
    assert_eq!(
        put_manifest(&s.base, "dg", &right, &body).await.status(),
        201
    );
    // sha512 references are computed with sha512.
    let d512 = sha512(&body);
    let r = put_manifest(&s.base, "dg", &d512, &body).await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), d512);
    let r = http()
        .get(s.url(&format!("/v2/dg/manifests/{d512}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), body);
}

#[tokio::test(flavor = "multi_thread")]
async fn end_7_several_tag_parameters_tag_one_manifest() {
    let s = TestServer::start().await;
    push_blob(&s.base, "multi", EMPTY_CONFIG).await;
    let body = image_manifest(EMPTY_CONFIG, &[]);
    let digest = sha256(&body);
    let r = put_manifest(
        &s.base,
        "multi",
        &format!("{digest}?tag=2&tag=2.1&tag=latest"),
        &body,
    )
    .await;
    assert_eq!(r.status(), 201);
    let tags: Vec<&str> = r
        .headers()
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(tags, ["2", "2.1", "latest"]);
    for tag in ["2", "2.1", "latest"] {
        let r = http()
            .head(s.url(&format!("/v2/multi/manifests/{tag}")))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "docker-content-digest"), digest);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn end_3_unknown_and_impossible_references_are_404() {
    let s = TestServer::start().await;
    push_image(&s.base, "known", "v1", "k").await;
    for reference in ["v2", ".INVALID_MANIFEST_NAME", &sha256(b"nothing")] {
        let r = http()
            .get(s.url(&format!("/v2/known/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{reference}");
        assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
        let r = http()
            .head(s.url(&format!("/v2/known/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{reference}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn end_9_delete_by_tag_removes_only_the_tag() {
    let s = TestServer::start().await;
    push_blob(&s.base, "del", EMPTY_CONFIG).await;
    let body = image_manifest(EMPTY_CONFIG, &[]);
    let digest = sha256(&body);
    put_manifest(&s.base, "del", "a", &body).await;
    put_manifest(&s.base, "del", "b", &body).await;
    let r = http()
        .delete(s.url("/v2/del/manifests/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        http()
            .head(s.url("/v2/del/manifests/a"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http()
            .head(s.url("/v2/del/manifests/b"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http()
            .head(s.url(&format!("/v2/del/manifests/{digest}")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = http()
        .delete(s.url("/v2/del/manifests/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread")]
async fn end_9_delete_by_digest_removes_the_manifest_and_its_tags() {
    let s = TestServer::start().await;
    let (digest, _) = push_image(&s.base, "deld", "v1", "d").await;
    let r = http()
        .delete(s.url(&format!("/v2/deld/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        http()
            .head(s.url(&format!("/v2/deld/manifests/{digest}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http()
            .head(s.url("/v2/deld/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = http()
        .get(s.url("/v2/deld/tags/list"))
        .send()
        .await
        .unwrap();
    let tags: serde_json::Value = r.json().await.unwrap();
    assert_eq!(tags["tags"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn end_8_tags_are_sorted_and_paginated_with_link() {
    let s = TestServer::start().await;
    push_blob(&s.base, "ns/paged", EMPTY_CONFIG).await;
    let body = image_manifest(EMPTY_CONFIG, &[]);
    for tag in ["latest", "2", "2.1", "2.1.106", "1", "Zeta"] {
        assert_eq!(
            put_manifest(&s.base, "ns/paged", tag, &body).await.status(),
            201
        );
    }
    let r = http()
        .get(s.url("/v2/ns/paged/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("link").is_none());
    let all: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        all,
        serde_json::json!({"name": "ns/paged", "tags": ["1", "2", "2.1", "2.1.106", "Zeta", "latest"]})
    );

    let r = http()
        .get(s.url("/v2/ns/paged/tags/list?n=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "link"),
        "</v2/ns/paged/tags/list?n=2&last=2>; rel=\"next\""
    );
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["tags"], serde_json::json!(["1", "2"]));
    let r = http()
        .get(s.url("/v2/ns/paged/tags/list?n=2&last=2"))
        .send()
        .await
        .unwrap();
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["tags"], serde_json::json!(["2.1", "2.1.106"]));
    let r = http()
        .get(s.url("/v2/ns/paged/tags/list?last=Zeta"))
        .send()
        .await
        .unwrap();
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["tags"], serde_json::json!(["latest"]));
    let r = http()
        .get(s.url("/v2/ns/paged/tags/list?n=0"))
        .send()
        .await
        .unwrap();
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["tags"], serde_json::json!([]));
    let r = http()
        .get(s.url("/v2/ns/paged/tags/list?n=-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn end_8_tags_of_an_unknown_repository_are_name_unknown() {
    let s = TestServer::start().await;
    let r = http()
        .get(s.url("/v2/no/such/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
}

fn artifact(subject: &[u8], artifact_type: &str, note: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(EMPTY_CONFIG), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(EMPTY_CONFIG), "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": sha256(subject), "size": subject.len()},
        "annotations": {"org.example.note": note},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn end_12_referrers_list_artifacts_and_filter_by_type() {
    let s = TestServer::start().await;
    let (subject_digest, subject) = push_image(&s.base, "app", "v1", "app").await;
    // Before anything refers to it (and for repositories that do not exist): 200, empty.
    for repo in ["app", "not/there"] {
        let r = http()
            .get(s.url(&format!("/v2/{repo}/referrers/{subject_digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), OCI_INDEX);
        let index: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            index,
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
        );
    }
    push_blob(&s.base, "app", EMPTY_CONFIG).await;
    let sig = artifact(&subject, "application/vnd.example.sig", "signed");
    let sbom = artifact(&subject, "application/vnd.example.sbom", "sbom");
    for body in [&sig, &sbom] {
        let r = put_manifest(&s.base, "app", &sha256(body), body).await;
        assert_eq!(r.status(), 201);
        assert_eq!(header(&r, "oci-subject"), subject_digest);
    }
    let r = http()
        .get(s.url(&format!("/v2/app/referrers/{subject_digest}")))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("oci-filters-applied").is_none());
    let index: serde_json::Value = r.json().await.unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let sig_entry = entries
        .iter()
        .find(|e| e["digest"] == sha256(&sig))
        .unwrap();
    assert_eq!(sig_entry["artifactType"], "application/vnd.example.sig");
    assert_eq!(sig_entry["size"], sig.len());
    assert_eq!(sig_entry["mediaType"], OCI_MANIFEST);
    assert_eq!(sig_entry["annotations"]["org.example.note"], "signed");

    let r = http()
        .get(s.url(&format!(
            "/v2/app/referrers/{subject_digest}?artifactType=application/vnd.example.sbom"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let index: serde_json::Value = r.json().await.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(index["manifests"][0]["digest"], sha256(&sbom));

    // A subject that does not exist (yet) is fine.
    let orphan = artifact(b"no such subject", "application/vnd.example.sig", "early");
    assert_eq!(
        put_manifest(&s.base, "app", "orphan", &orphan)
            .await
            .status(),
        201
    );
    let r = http()
        .get(s.url(&format!("/v2/app/referrers/{}", sha256(b"no such subject"))))
        .send()
        .await
        .unwrap();
    let index: serde_json::Value = r.json().await.unwrap();
    assert_eq!(index["manifests"][0]["digest"], sha256(&orphan));

    let r = http()
        .get(s.url("/v2/app/referrers/sha256:nothex"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_lists_repositories_in_pages() {
    let s = TestServer::start().await;
    for repo in ["c/three", "a/one", "b/two"] {
        push_blob(&s.base, repo, b"x").await;
    }
    let r = http().get(s.url("/v2/_catalog")).send().await.unwrap();
    let all: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        all,
        serde_json::json!({"repositories": ["a/one", "b/two", "c/three"]})
    );
    let r = http().get(s.url("/v2/_catalog?n=2")).send().await.unwrap();
    assert_eq!(
        header(&r, "link"),
        "</v2/_catalog?n=2&last=b%2Ftwo>; rel=\"next\""
    );
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["repositories"], serde_json::json!(["a/one", "b/two"]));
    let r = http()
        .get(s.url("/v2/_catalog?n=2&last=b%2Ftwo"))
        .send()
        .await
        .unwrap();
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["repositories"], serde_json::json!(["c/three"]));
}

/// The conformance suite's data sets that the tests above do not already cover: nested
/// indexes, an artifact index, an index as a subject, descriptors with `data`, custom
/// top-level fields, an empty index, and an image addressed only by sha512.
#[tokio::test(flavor = "multi_thread")]
async fn conformance_data_sets_round_trip() {
    let s = TestServer::start().await;
    let repo = "conformance/repo1";
    push_blob(&s.base, repo, EMPTY_CONFIG).await;
    let put = |reference: String, media_type: &'static str, body: Vec<u8>| {
        let url = s.url(&format!("/v2/{repo}/manifests/{reference}"));
        async move {
            let r = http()
                .put(url)
                .header("content-type", media_type)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{reference}");
            r
        }
    };
    let image = |note: &str| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(EMPTY_CONFIG),
                       "size": 2, "data": "e30="},
            "layers": [],
            format!("org.custom{note}"): {"anything": [note]},
        }))
        .unwrap()
    };
    let index = |children: &[&Vec<u8>], media_type: &str, extra: serde_json::Value| {
        let mut doc = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": children.iter().map(|c| serde_json::json!({
                "mediaType": media_type, "digest": sha256(c), "size": c.len()})).collect::<Vec<_>>(),
        });
        if let serde_json::Value::Object(extra) = extra {
            doc.as_object_mut().unwrap().extend(extra);
        }
        serde_json::to_vec(&doc).unwrap()
    };

    let (amd, arm) = (image("amd64"), image("arm64"));
    for m in [&amd, &arm] {
        put(sha256(m), OCI_MANIFEST, m.clone()).await;
    }
    let inner = index(&[&amd, &arm], OCI_MANIFEST, serde_json::json!({}));
    put(sha256(&inner), OCI_INDEX, inner.clone()).await;
    let nested = index(&[&inner], OCI_INDEX, serde_json::json!({}));
    put("index-of-index".into(), OCI_INDEX, nested.clone()).await;
    let empty = index(&[], OCI_MANIFEST, serde_json::json!({}));
    put("empty-index".into(), OCI_INDEX, empty.clone()).await;

    // An artifact index whose subject is the inner index: listed as a referrer, with its
    // artifactType; an index without artifactType would list none.
    let artifact_index = index(
        &[&amd],
        OCI_MANIFEST,
        serde_json::json!({
            "artifactType": "application/vnd.example.oci.conformance.v1",
            "subject": {"mediaType": OCI_INDEX, "digest": sha256(&inner), "size": inner.len()},
        }),
    );
    let r = put("tagged-artifact".into(), OCI_INDEX, artifact_index.clone()).await;
    assert_eq!(header(&r, "oci-subject"), sha256(&inner));
    let r = http()
        .get(s.url(&format!("/v2/{repo}/referrers/{}", sha256(&inner))))
        .send()
        .await
        .unwrap();
    let referrers: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        referrers["manifests"],
        serde_json::json!([{"mediaType": OCI_INDEX, "digest": sha256(&artifact_index), "size": artifact_index.len(),
                            "artifactType": "application/vnd.example.oci.conformance.v1"}])
    );

    for (reference, body, media_type) in [
        ("index-of-index".to_string(), &nested, OCI_INDEX),
        ("empty-index".to_string(), &empty, OCI_INDEX),
        (sha256(&amd), &amd, OCI_MANIFEST),
    ] {
        let r = http()
            .get(s.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("accept", OCI_INDEX)
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "content-type"), media_type);
        assert_eq!(&r.bytes().await.unwrap(), body, "{reference}");
    }

    // sha512 all the way down: pushed, read, deleted by sha512 digest only.
    let layer = b"sha512 layer".to_vec();
    let r = http()
        .post(s.url(&format!(
            "/v2/{repo}/blobs/uploads/?digest={}",
            sha512(&layer)
        )))
        .body(layer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let m512 = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(EMPTY_CONFIG), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha512(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let d512 = sha512(&m512);
    put(d512.clone(), OCI_MANIFEST, m512.clone()).await;
    let r = http()
        .head(s.url(&format!("/v2/{repo}/manifests/{d512}")))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "docker-content-digest"), d512);
    let r = http()
        .delete(s.url(&format!("/v2/{repo}/manifests/{d512}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        http()
            .head(s.url(&format!("/v2/{repo}/manifests/{d512}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Deleting a child that an index still references is allowed (the suite deletes
    // parents first, but registries must not refuse either order).
    let r = http()
        .delete(s.url(&format!("/v2/{repo}/manifests/{}", sha256(&amd))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}
