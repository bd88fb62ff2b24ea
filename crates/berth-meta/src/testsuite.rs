//! The contract every [`MetaStore`] backend must keep, run against a real instance of
//! each (SQLite always; PostgreSQL against a real server).

// Test support: panicking on a broken contract is the point.
#![allow(clippy::unwrap_used)]

use berth_core::{AccountName, Algorithm, Digest, Relation, RepoName, Role, Tag, TokenScope};

use crate::{
    AccessToken, AccountRefusal, ManifestRecord, MetaStore, PutManifestError, UploadSession,
    Viewer, WebSession,
};

fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}

fn tag(s: &str) -> Tag {
    s.parse().unwrap()
}

fn digest(seed: &str) -> Digest {
    Algorithm::Sha256.digest_of(seed.as_bytes())
}

fn manifest(seed: &str, subject: Option<Digest>, artifact_type: Option<&str>) -> ManifestRecord {
    let body = format!("{{\"seed\":\"{seed}\"}}").into_bytes();
    ManifestRecord {
        digest: Algorithm::Sha256.digest_of(&body),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        body: body.into(),
        subject,
        artifact_type: artifact_type.map(str::to_owned),
        annotations: None,
    }
}

pub async fn run_all(store: &dyn MetaStore) {
    blobs_are_scoped_to_repositories(store).await;
    upload_sessions_advance_by_compare_and_set(store).await;
    manifests_need_their_references(store).await;
    tags_move_and_delete(store).await;
    tag_and_repository_pages(store).await;
    referrers_follow_subjects(store).await;
    concurrent_writes_succeed_or_fail_alone(store).await;
    users_orgs_and_tokens(store).await;
    web_sessions_end_with_their_row(store).await;
    visibility_follows_namespace_defaults(store).await;
}

async fn web_sessions_end_with_their_row(store: &dyn MetaStore) {
    store
        .create_user(&account("wendy"), "h", false)
        .await
        .unwrap();
    let session = |id: &str, epoch: Option<i64>, expires_at: i64| WebSession {
        id: id.to_owned(),
        user: account("wendy"),
        secret_hash: format!("hash-{id}"),
        epoch,
        token_id: epoch.is_none().then(|| "tok".to_owned()),
        created_at: 100,
        expires_at,
        last_seen_at: 100,
        client: "192.0.2.1".to_owned(),
        user_agent: "test".to_owned(),
    };
    for s in [
        session("s1", Some(1), 1000),
        session("s2", Some(1), 1000),
        session("s3", None, 1000),
        session("old", Some(1), 150),
    ] {
        store.create_web_session(&s).await.unwrap();
    }
    let mut ghost = session("g", Some(1), 1000);
    ghost.user = account("nobody");
    assert!(matches!(
        store.create_web_session(&ghost).await,
        Err(AccountRefusal::UnknownUser(_))
    ));
    assert_eq!(
        store.web_session_by_secret_hash("hash-s1").await.unwrap(),
        Some(session("s1", Some(1), 1000))
    );
    assert_eq!(store.web_sessions("wendy", 200).await.unwrap().len(), 3);
    store.touch_web_session("s1", 300).await.unwrap();
    let s1 = store.web_session_by_secret_hash("hash-s1").await.unwrap();
    assert_eq!(s1.map(|s| s.last_seen_at), Some(300));
    store.expire_web_sessions(200).await.unwrap();
    assert!(
        store
            .web_session_by_secret_hash("hash-old")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.delete_web_session("s1").await.unwrap());
    assert!(!store.delete_web_session("s1").await.unwrap());
    // A password change ends the sessions signed in with a password, not a token's.
    assert!(store.set_password("wendy", "h2").await.unwrap());
    let left: Vec<String> = store
        .web_sessions("wendy", 200)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, ["s3"]);
    store
        .create_web_session(&session("s4", Some(2), 1000))
        .await
        .unwrap();
    assert!(store.delete_web_sessions("wendy").await.unwrap());
    assert!(store.web_sessions("wendy", 200).await.unwrap().is_empty());
    store
        .create_web_session(&session("s5", Some(2), 1000))
        .await
        .unwrap();
    assert!(store.delete_user("wendy").await.unwrap());
    assert!(
        store
            .web_session_by_secret_hash("hash-s5")
            .await
            .unwrap()
            .is_none()
    );
}

fn account(s: &str) -> AccountName {
    s.parse().unwrap()
}

async fn users_orgs_and_tokens(store: &dyn MetaStore) {
    store
        .create_user(&account("alice"), "h1", false)
        .await
        .unwrap();
    store
        .create_user(&account("bob"), "h2", true)
        .await
        .unwrap();
    assert!(matches!(
        store.create_user(&account("alice"), "h3", false).await,
        Err(AccountRefusal::NameTaken(_))
    ));
    let alice = store.user("alice").await.unwrap().unwrap();
    assert_eq!((alice.password_hash.as_str(), alice.admin), ("h1", false));
    assert!(store.set_password("alice", "h4").await.unwrap());
    let alice2 = store.user("alice").await.unwrap().unwrap();
    assert_eq!(alice2.password_hash, "h4");
    assert!(alice2.credentials_epoch > alice.credentials_epoch);

    // Organizations share the namespace space with users.
    assert!(matches!(
        store.create_org(&account("alice"), "bob").await,
        Err(AccountRefusal::NameTaken(_))
    ));
    assert!(matches!(
        store.create_org(&account("team"), "nobody").await,
        Err(AccountRefusal::UnknownUser(_))
    ));
    store.create_org(&account("team"), "bob").await.unwrap();
    store.set_member("team", "alice", Role::Read).await.unwrap();
    store
        .set_member("team", "alice", Role::Write)
        .await
        .unwrap();
    assert!(matches!(
        store.set_member("alice", "bob", Role::Read).await,
        Err(AccountRefusal::UnknownOrg(_))
    ));
    let members = store.members("team").await.unwrap().unwrap();
    assert_eq!(
        members
            .iter()
            .map(|m| (m.user.as_str(), m.role))
            .collect::<Vec<_>>(),
        [("alice", Role::Write), ("bob", Role::Admin)]
    );
    assert!(store.members("alice").await.unwrap().is_none());

    let facts = store
        .repository_facts(&repo("team/app"), Some("alice"))
        .await
        .unwrap();
    assert_eq!(facts.relation, Relation::Member(Role::Write));
    assert!(!facts.exists);
    let facts = store
        .repository_facts(&repo("alice/app"), Some("alice"))
        .await
        .unwrap();
    assert_eq!(facts.relation, Relation::Owner);
    let facts = store
        .repository_facts(&repo("alice/app"), Some("bob"))
        .await
        .unwrap();
    assert_eq!(facts.relation, Relation::None);
    assert_eq!(
        store
            .repository_facts(&repo("alice/app"), None)
            .await
            .unwrap()
            .relation,
        Relation::None
    );

    let token = AccessToken {
        id: "t1".into(),
        user: account("alice"),
        name: "laptop".into(),
        secret_hash: "secret-hash-1".into(),
        scope: TokenScope::ReadWrite,
        created_at: 100,
        expires_at: Some(200),
        last_used_at: None,
        revoked_at: None,
    };
    store.create_token(&token).await.unwrap();
    let found = store
        .token_by_secret_hash("secret-hash-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, token);
    assert!(found.is_active(150) && !found.is_active(200));
    store.touch_token("t1", 150).await.unwrap();
    assert_eq!(
        store.token("t1").await.unwrap().unwrap().last_used_at,
        Some(150)
    );
    assert!(store.revoke_token("t1").await.unwrap());
    assert!(!store.revoke_token("t1").await.unwrap());
    assert!(!store.token("t1").await.unwrap().unwrap().is_active(150));
    assert_eq!(store.list_tokens("alice").await.unwrap().len(), 1);

    // Removing a user ends their tokens and memberships, and the name is never given
    // out again: the repositories in its namespace stay, and must not pass to a newcomer.
    assert!(store.remove_member("team", "alice").await.unwrap());
    assert!(store.delete_user("alice").await.unwrap());
    assert!(store.user("alice").await.unwrap().is_none());
    assert!(store.list_tokens("alice").await.unwrap().is_empty());
    assert!(matches!(
        store.create_org(&account("alice"), "bob").await,
        Err(AccountRefusal::NameTaken(_))
    ));
    assert!(matches!(
        store.create_user(&account("alice"), "h5", false).await,
        Err(AccountRefusal::NameRetired(_))
    ));
    assert!(matches!(
        store.create_user(&account("team"), "h5", false).await,
        Err(AccountRefusal::NameTaken(_))
    ));

    assert_eq!(store.setting("k").await.unwrap(), None);
    assert_eq!(store.init_setting("k", "v1").await.unwrap(), "v1");
    assert_eq!(store.setting("k").await.unwrap().as_deref(), Some("v1"));
    assert_eq!(store.init_setting("k", "v2").await.unwrap(), "v1");
}

async fn visibility_follows_namespace_defaults(store: &dyn MetaStore) {
    // Server default private, one namespace public by default.
    store.set_setting("default_public", "0").await.unwrap();
    store
        .create_user(&account("carol"), "h", false)
        .await
        .unwrap();
    store
        .create_user(&account("dave"), "h", false)
        .await
        .unwrap();
    assert!(
        store
            .set_namespace_default("dave", Some(true))
            .await
            .unwrap()
    );
    let blob = digest("visibility blob");
    store
        .link_blob(&repo("carol/secret"), &blob, 1)
        .await
        .unwrap();
    store.link_blob(&repo("dave/open"), &blob, 1).await.unwrap();
    assert_eq!(
        store
            .repository_visibility(&repo("carol/secret"))
            .await
            .unwrap(),
        Some(false)
    );
    assert_eq!(
        store
            .repository_visibility(&repo("dave/open"))
            .await
            .unwrap(),
        Some(true)
    );
    // A repository can be made private before its first push.
    store
        .set_repository_visibility(&repo("dave/hidden"), false)
        .await
        .unwrap();
    store
        .link_blob(&repo("dave/hidden"), &blob, 1)
        .await
        .unwrap();
    assert_eq!(
        store
            .repository_visibility(&repo("dave/hidden"))
            .await
            .unwrap(),
        Some(false)
    );
    store.set_setting("default_public", "1").await.unwrap();

    let names = |page: crate::Page| page.items;
    let anonymous = names(
        store
            .visible_repositories(Viewer::Anonymous, None, 1000)
            .await
            .unwrap(),
    );
    assert!(anonymous.contains(&"dave/open".to_string()));
    assert!(!anonymous.contains(&"carol/secret".to_string()));
    assert!(!anonymous.contains(&"dave/hidden".to_string()));
    let dave = names(
        store
            .visible_repositories(Viewer::User("dave"), None, 1000)
            .await
            .unwrap(),
    );
    assert!(dave.contains(&"dave/hidden".to_string()));
    assert!(!dave.contains(&"carol/secret".to_string()));
    let all = names(
        store
            .visible_repositories(Viewer::All, None, 1000)
            .await
            .unwrap(),
    );
    assert!(all.contains(&"carol/secret".to_string()));
    // Keyset pages of a filtered view.
    let first = store
        .visible_repositories(Viewer::User("dave"), None, 1)
        .await
        .unwrap();
    assert!(first.more);
    let second = store
        .visible_repositories(Viewer::User("dave"), Some(&first.items[0]), 1000)
        .await
        .unwrap();
    assert!(!second.items.contains(&first.items[0]));
    assert_eq!(second.items.len() + 1, dave.len());
}

/// Writes that arrive together (and may share a transaction) keep their own outcome:
/// a refused manifest does not take its neighbours down with it.
async fn concurrent_writes_succeed_or_fail_alone(store: &dyn MetaStore) {
    let r = repo("ns/together");
    let config = digest("together config");
    store.link_blob(&r, &config, 3).await.unwrap();
    let good: Vec<ManifestRecord> = (0..3)
        .map(|i| manifest(&format!("good {i}"), None, None))
        .collect();
    let bad = manifest("bad", None, None);
    let missing = digest("missing together");
    let cfg = std::slice::from_ref(&config);
    let tags = [tag("a"), tag("b"), tag("c"), tag("bad")];
    let also = digest("also together");
    let (a, b, c, refused, linked) = tokio::join!(
        store.put_manifest(&r, &good[0], cfg, &[], &tags[0..1]),
        store.put_manifest(&r, &good[1], cfg, &[], &tags[1..2]),
        store.put_manifest(&r, &good[2], cfg, &[], &tags[2..3]),
        store.put_manifest(&r, &bad, std::slice::from_ref(&missing), &[], &tags[3..4]),
        store.link_blob(&r, &also, 9),
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    linked.unwrap();
    assert!(matches!(refused, Err(PutManifestError::MissingBlob(d)) if d == missing));
    for (m, t) in good.iter().zip(["a", "b", "c"]) {
        assert_eq!(
            store
                .manifest_by_tag(&r, &tag(t))
                .await
                .unwrap()
                .unwrap()
                .digest,
            m.digest
        );
    }
    assert_eq!(store.manifest_by_tag(&r, &tag("bad")).await.unwrap(), None);
    assert_eq!(
        store.manifest_by_digest(&r, &bad.digest).await.unwrap(),
        None
    );
}

async fn blobs_are_scoped_to_repositories(store: &dyn MetaStore) {
    let (a, b, d) = (repo("ns/a"), repo("ns/b"), digest("layer"));
    assert_eq!(store.blob(&d).await.unwrap(), None);
    store.link_blob(&a, &d, 42).await.unwrap();
    store.link_blob(&a, &d, 42).await.unwrap(); // idempotent
    assert_eq!(store.repository_blob(&a, &d).await.unwrap(), Some(42));
    assert_eq!(store.repository_blob(&b, &d).await.unwrap(), None);
    assert_eq!(store.blob(&d).await.unwrap(), Some(42));
    assert!(store.unlink_blob(&a, &d).await.unwrap());
    assert!(!store.unlink_blob(&a, &d).await.unwrap());
    assert_eq!(store.repository_blob(&a, &d).await.unwrap(), None);
    assert_eq!(
        store.blob(&d).await.unwrap(),
        Some(42),
        "bytes stay known registry-wide"
    );
}

async fn upload_sessions_advance_by_compare_and_set(store: &dyn MetaStore) {
    let s = UploadSession {
        id: "u-1".into(),
        repository: repo("ns/up"),
        algorithm: Algorithm::Sha512,
        offset: 0,
        hash_state: Vec::new(),
        store_state: b"created".to_vec(),
        updated_at: 100,
        client: "user:alice".into(),
    };
    assert!(store.create_upload(&s, 2).await.unwrap());
    assert_eq!(store.upload("u-1").await.unwrap(), Some(s.clone()));
    let progress = UploadSession {
        offset: 10,
        hash_state: vec![0, 1, 2, 255],
        store_state: b"part 1".to_vec(),
        updated_at: 200,
        ..s.clone()
    };
    assert!(store.advance_upload(&progress, 0).await.unwrap());
    let lost = UploadSession {
        offset: 20,
        store_state: b"part 2".to_vec(),
        ..progress.clone()
    };
    assert!(
        !store.advance_upload(&lost, 0).await.unwrap(),
        "stale offset loses"
    );
    assert_eq!(
        store.upload("u-1").await.unwrap(),
        Some(progress),
        "offset, hash and store state are recorded together"
    );
    assert_eq!(
        store.stale_uploads(150).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store.stale_uploads(201).await.unwrap(),
        vec!["u-1".to_string()]
    );
    assert!(store.delete_upload("u-1").await.unwrap());
    assert_eq!(store.upload("u-1").await.unwrap(), None);

    let done = UploadSession {
        id: "u-2".into(),
        ..s
    };
    assert!(store.create_upload(&done, 2).await.unwrap());
    let second = UploadSession {
        id: "u-3".into(),
        ..done.clone()
    };
    assert!(store.create_upload(&second, 2).await.unwrap());
    let third = UploadSession {
        id: "u-4".into(),
        ..done.clone()
    };
    assert!(
        !store.create_upload(&third, 2).await.unwrap(),
        "a client may hold at most max_per_client open sessions"
    );
    assert_eq!(store.upload("u-4").await.unwrap(), None);
    let elsewhere = UploadSession {
        client: "addr:192.0.2.1".into(),
        ..third.clone()
    };
    assert!(store.create_upload(&elsewhere, 2).await.unwrap());
    assert!(store.delete_upload("u-3").await.unwrap());
    assert!(store.delete_upload("u-4").await.unwrap());
    let d = digest("uploaded");
    store
        .complete_upload("u-2", &done.repository, &d, 7)
        .await
        .unwrap();
    assert_eq!(
        store.upload("u-2").await.unwrap(),
        None,
        "the session is gone"
    );
    assert_eq!(
        store.repository_blob(&done.repository, &d).await.unwrap(),
        Some(7)
    );
}

async fn manifests_need_their_references(store: &dyn MetaStore) {
    let r = repo("ns/m");
    let (config, layer) = (digest("config"), digest("layer-m"));
    let m = manifest("m1", None, None);
    let err = store
        .put_manifest(&r, &m, std::slice::from_ref(&config), &[], &[])
        .await
        .unwrap_err();
    assert!(matches!(err, PutManifestError::MissingBlob(d) if d == config));
    store.link_blob(&r, &config, 1).await.unwrap();
    store.link_blob(&r, &layer, 1).await.unwrap();
    store
        .put_manifest(&r, &m, &[config, layer], &[], &[tag("v1")])
        .await
        .unwrap();
    assert_eq!(
        store.manifest_by_digest(&r, &m.digest).await.unwrap(),
        Some(m.clone())
    );
    assert_eq!(
        store.manifest_by_tag(&r, &tag("v1")).await.unwrap(),
        Some(m.clone())
    );
    assert_eq!(
        store
            .manifest_by_digest(&repo("ns/other"), &m.digest)
            .await
            .unwrap(),
        None
    );

    let index = manifest("index", None, None);
    let missing = digest("missing child");
    let err = store
        .put_manifest(&r, &index, &[], std::slice::from_ref(&missing), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, PutManifestError::MissingManifest(d) if d == missing));
    store
        .put_manifest(&r, &index, &[], std::slice::from_ref(&m.digest), &[])
        .await
        .unwrap();

    assert!(store.delete_manifest(&r, &m.digest).await.unwrap());
    assert_eq!(
        store.manifest_by_tag(&r, &tag("v1")).await.unwrap(),
        None,
        "its tags go too"
    );
    assert!(!store.delete_manifest(&r, &m.digest).await.unwrap());
}

async fn tags_move_and_delete(store: &dyn MetaStore) {
    let r = repo("ns/t");
    let (m1, m2) = (manifest("t1", None, None), manifest("t2", None, None));
    store
        .put_manifest(&r, &m1, &[], &[], &[tag("latest"), tag("1")])
        .await
        .unwrap();
    store
        .put_manifest(&r, &m2, &[], &[], &[tag("latest")])
        .await
        .unwrap();
    assert_eq!(
        store
            .manifest_by_tag(&r, &tag("latest"))
            .await
            .unwrap()
            .unwrap()
            .digest,
        m2.digest
    );
    assert_eq!(
        store
            .manifest_by_tag(&r, &tag("1"))
            .await
            .unwrap()
            .unwrap()
            .digest,
        m1.digest
    );
    assert!(store.delete_tag(&r, &tag("1")).await.unwrap());
    assert!(!store.delete_tag(&r, &tag("1")).await.unwrap());
    assert!(
        store
            .manifest_by_digest(&r, &m1.digest)
            .await
            .unwrap()
            .is_some(),
        "manifest stays"
    );
}

async fn tag_and_repository_pages(store: &dyn MetaStore) {
    let r = repo("ns/pages");
    let m = manifest("pages", None, None);
    let tags: Vec<Tag> = ["c", "a", "b", "e", "d"].into_iter().map(tag).collect();
    store.put_manifest(&r, &m, &[], &[], &tags).await.unwrap();
    let first = store.list_tags(&r, None, 2).await.unwrap().unwrap();
    assert_eq!(
        (first.items.clone(), first.more),
        (vec!["a".into(), "b".into()], true)
    );
    let last = store.list_tags(&r, Some("c"), 2).await.unwrap().unwrap();
    assert_eq!(
        (last.items, last.more),
        (vec!["d".into(), "e".into()], false)
    );
    assert_eq!(
        store.list_tags(&repo("ns/nope"), None, 10).await.unwrap(),
        None
    );

    let all = store.list_repositories(None, 1000).await.unwrap();
    assert!(all.items.windows(2).all(|w| w[0] < w[1]), "sorted");
    assert!(all.items.contains(&"ns/pages".to_string()));
    let after = store
        .list_repositories(Some("ns/pages"), 1000)
        .await
        .unwrap();
    assert!(after.items.iter().all(|n| n.as_str() > "ns/pages"));
}

async fn referrers_follow_subjects(store: &dyn MetaStore) {
    let r = repo("ns/refs");
    let subject = digest("subject");
    let sig = manifest("sig", Some(subject.clone()), Some("application/x.sig"));
    let sbom = manifest("sbom", Some(subject.clone()), Some("application/x.sbom"));
    store.put_manifest(&r, &sig, &[], &[], &[]).await.unwrap();
    store.put_manifest(&r, &sbom, &[], &[], &[]).await.unwrap();
    let all = store.referrers(&r, &subject, None).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all.iter().map(|x| x.size).sum::<u64>(),
        (sig.body.len() + sbom.body.len()) as u64
    );
    let only = store
        .referrers(&r, &subject, Some("application/x.sbom"))
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].digest, sbom.digest);
    assert!(
        store
            .referrers(&r, &digest("nothing"), None)
            .await
            .unwrap()
            .is_empty()
    );
}
