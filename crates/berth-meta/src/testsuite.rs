//! The contract every [`MetaStore`] backend must keep, run against a real instance of
//! each (SQLite always; PostgreSQL against a real server).
//!
//! `meta_store_contract!` turns every check into its own test, each on a fresh store
//! that a backend's [`Scratch`] makes: the single-store checks, and races between two
//! store instances on the same data (two processes on one SQLite file, two nodes on
//! one PostgreSQL database).

// Test support: panicking on a broken contract is the point.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_core::{AccountName, Algorithm, Digest, Relation, RepoName, Role, Tag, TokenScope};

use crate::{
    AccessToken, AccountRefusal, AttemptOutcome, AuditEvent, AuditQuery, GcBlob, GcCutoffs,
    ManifestRecord, MetaStore, PutManifestError, RepositoryUsage, RequestWindow, SignInWindow,
    TagMoveReason, TagUpdate, UploadSession, Viewer, WebSession,
};

/// Fresh, empty data of one backend for one test, on which any number of store
/// instances can be opened.
#[async_trait]
pub trait Scratch: Send + Sync + Sized + 'static {
    /// Opens a store instance on this data (the first one creates the schema).
    async fn open(&self) -> Arc<dyn MetaStore>;
    /// Removes the data. Runs after the check, whether it passed or not.
    async fn remove(self);
}

/// Runs `check` on one store instance of fresh scratch data, then removes the data.
pub async fn run_one<S, F, Fut>(scratch: impl Future<Output = S>, check: F)
where
    S: Scratch,
    F: FnOnce(Arc<dyn MetaStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let scratch = scratch.await;
    let store = scratch.open().await;
    finish(scratch, tokio::spawn(check(store)).await).await;
}

/// Runs `check` on two store instances of the same fresh scratch data, opened at the
/// same time (as two nodes starting together), then removes the data.
pub async fn run_two<S, F, Fut>(scratch: impl Future<Output = S>, check: F)
where
    S: Scratch,
    F: FnOnce(Arc<dyn MetaStore>, Arc<dyn MetaStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let scratch = scratch.await;
    let (a, b) = tokio::join!(scratch.open(), scratch.open());
    finish(scratch, tokio::spawn(check(a, b)).await).await;
}

/// Removes the scratch data, then passes on the check's panic, if any.
async fn finish<S: Scratch>(scratch: S, outcome: Result<(), tokio::task::JoinError>) {
    scratch.remove().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the check did not finish: {e}"),
        }
    }
}

/// One `#[tokio::test]` per contract check, each on fresh data from `$scratch` (an
/// expression giving a future of a [`Scratch`], evaluated once per test). Invoke it in a
/// module of its own: `mod contract { meta_store_contract!(super::scratch()); }`.
#[cfg(test)]
macro_rules! meta_store_contract {
    ($scratch:expr) => {
        $crate::testsuite::meta_store_contract!(@one $scratch;
            blobs_are_scoped_to_repositories,
            upload_sessions_advance_by_compare_and_set,
            manifests_need_their_blobs_and_indexes_may_be_sparse,
            tags_move_and_delete,
            tag_and_repository_pages,
            pages_follow_byte_order,
            referrers_follow_subjects,
            concurrent_writes_succeed_or_fail_alone,
            users_orgs_and_tokens,
            first_admin_is_created_once,
            web_sessions_end_with_their_row,
            visibility_follows_namespace_defaults,
            gc_collects_only_unreferenced_released_blobs,
            gc_keeps_index_children_and_referrers,
            gc_orphans_and_stale_links,
            storage_usage_per_repository_and_namespace,
            sign_in_attempts_count_in_fixed_windows,
            semver_floats_move_only_forward,
            immutable_tags_refuse_to_move,
            tag_history_records_every_move,
            policies_set_and_removed_per_scope,
            golden_images_marks_and_warnings,
            search_matches_names_and_descriptions_for_the_viewer,
            recent_repositories_and_tag_rows,
            mirrored_manifests_may_reference_what_is_not_here_yet,
            mirror_cache_usage_eviction_order_and_pins,
            request_windows_count_until_they_end,
            audit_log_filters_pages_and_prunes,
            webhook_deliveries_are_claimed_retried_and_kept,
            tag_ages_pulls_and_retention_scopes,
            scans_are_kept_per_image_digest,
            advisories_import_by_modified_and_look_up_by_package,
        );
        $crate::testsuite::meta_store_contract!(@two $scratch;
            race_advance_upload_has_one_winner,
            race_create_upload_keeps_the_client_limit,
            race_put_manifest_same_tags,
            race_link_blob_same_digest,
            race_put_manifest_against_unlink_and_delete,
            race_create_user_same_name,
            race_user_removed_while_tokens_and_sessions_are_made,
            race_first_admin_and_settings_at_start,
            race_claim_against_put_manifest,
            race_two_collectors_claim_disjoint_sets,
            race_collection_against_references,
            race_sign_in_attempts_count_once_each,
            race_requests_count_once_each,
            race_delivery_claims_are_disjoint,
            race_releases_leave_floats_at_the_highest,
            race_new_immutable_tag_has_one_winner,
        );
    };
    (@one $scratch:expr; $($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            $crate::testsuite::run_one($scratch, |store| async move {
                $crate::testsuite::$check(&*store).await
            })
            .await;
        }
    )*};
    (@two $scratch:expr; $($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            $crate::testsuite::run_two($scratch, $crate::testsuite::$check).await;
        }
    )*};
}
#[cfg(test)]
pub(crate) use meta_store_contract;

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

pub async fn web_sessions_end_with_their_row(store: &dyn MetaStore) {
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

pub async fn users_orgs_and_tokens(store: &dyn MetaStore) {
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

pub async fn visibility_follows_namespace_defaults(store: &dyn MetaStore) {
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
pub async fn concurrent_writes_succeed_or_fail_alone(store: &dyn MetaStore) {
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

pub async fn blobs_are_scoped_to_repositories(store: &dyn MetaStore) {
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

pub async fn upload_sessions_advance_by_compare_and_set(store: &dyn MetaStore) {
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

pub async fn manifests_need_their_blobs_and_indexes_may_be_sparse(store: &dyn MetaStore) {
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

    // An index with one of its platforms here and one not (a sparse index) is stored;
    // the absent child, pushed later, is protected by the index like the present one.
    let index = manifest("index", None, None);
    let absent = manifest("absent child", None, None);
    store
        .put_manifest(
            &r,
            &index,
            &[],
            &[m.digest.clone(), absent.digest.clone()],
            &[tag("multi")],
        )
        .await
        .unwrap();
    assert_eq!(
        store.manifest_by_tag(&r, &tag("multi")).await.unwrap(),
        Some(index.clone())
    );
    assert_eq!(
        store.manifest_by_digest(&r, &absent.digest).await.unwrap(),
        None
    );
    store
        .put_manifest(&r, &absent, &[], &[], &[])
        .await
        .unwrap();
    let scope = vec![r.to_string()];
    assert_eq!(
        store
            .gc_untagged_manifests(&scope, &everything_so_far(), false)
            .await
            .unwrap(),
        [],
        "the children of a tagged index, sparse or not, are not collected"
    );
    assert_eq!(
        store.manifest_by_digest(&r, &absent.digest).await.unwrap(),
        Some(absent.clone())
    );

    assert!(store.delete_manifest(&r, &m.digest, "test").await.unwrap());
    assert_eq!(
        store.manifest_by_tag(&r, &tag("v1")).await.unwrap(),
        None,
        "its tags go too"
    );
    assert!(!store.delete_manifest(&r, &m.digest, "test").await.unwrap());
}

pub async fn tags_move_and_delete(store: &dyn MetaStore) {
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
    assert!(store.delete_tag(&r, &tag("1"), "test").await.unwrap());
    assert!(!store.delete_tag(&r, &tag("1"), "test").await.unwrap());
    assert!(
        store
            .manifest_by_digest(&r, &m1.digest)
            .await
            .unwrap()
            .is_some(),
        "manifest stays"
    );
}

pub async fn tag_and_repository_pages(store: &dyn MetaStore) {
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

pub async fn referrers_follow_subjects(store: &dyn MetaStore) {
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

/// Every page of a keyset listing, followed from the start with pages of 2.
async fn all_pages<F, Fut>(mut page: F) -> Vec<String>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = crate::Page>,
{
    let mut items = Vec::new();
    let mut last = None;
    loop {
        let next = page(last.clone()).await;
        assert!(next.items.len() <= 2);
        items.extend(next.items.iter().cloned());
        last = next.items.last().cloned();
        if !next.more {
            return items;
        }
    }
}

/// Keyset pages compare names byte by byte, whatever the database's collation: upper
/// case before lower case, and `-` `.` `/` before digits before `_`.
pub async fn pages_follow_byte_order(store: &dyn MetaStore) {
    let r = repo("ns/order");
    let m = manifest("order", None, None);
    let names = ["a_b", "B", "a-b", "ab", "Z9", "a.b", "_x", "a", "A0"];
    let tags: Vec<Tag> = names.into_iter().map(tag).collect();
    store.put_manifest(&r, &m, &[], &[], &tags).await.unwrap();
    let mut expected: Vec<String> = names.into_iter().map(str::to_owned).collect();
    expected.sort();
    let listed = all_pages(|last| {
        let r = r.clone();
        async move {
            store
                .list_tags(&r, last.as_deref(), 2)
                .await
                .unwrap()
                .unwrap()
        }
    })
    .await;
    assert_eq!(listed, expected);

    let repos = [
        "ns/a_b", "ns/a-b", "ns/ab", "ns/a.b", "ns/a/b", "ns/a0", "ns/a",
    ];
    let blob = digest("order blob");
    for name in repos {
        store.link_blob(&repo(name), &blob, 1).await.unwrap();
    }
    let mut expected: Vec<String> = repos.into_iter().map(str::to_owned).collect();
    expected.push("ns/order".to_owned());
    expected.sort();
    let listed =
        all_pages(|last| async move { store.list_repositories(last.as_deref(), 2).await.unwrap() })
            .await;
    assert_eq!(listed, expected);
    for viewer in [Viewer::Anonymous, Viewer::User("ns")] {
        let listed = all_pages(|last| async move {
            store
                .visible_repositories(viewer, last.as_deref(), 2)
                .await
                .unwrap()
        })
        .await;
        assert_eq!(listed, expected, "{viewer:?}");
    }
}

pub async fn first_admin_is_created_once(store: &dyn MetaStore) {
    const MARKER: &str = "first_admin_created";
    // A user added (by a command) before the server's first start does not stop it.
    store
        .create_user(&account("carol"), "h", false)
        .await
        .unwrap();
    assert!(
        store
            .create_first_admin(&account("admin"), "h1", MARKER)
            .await
            .unwrap()
    );
    let admin = store.user("admin").await.unwrap().unwrap();
    assert_eq!((admin.password_hash.as_str(), admin.admin), ("h1", true));
    assert_eq!(store.setting(MARKER).await.unwrap().as_deref(), Some("1"));
    assert!(
        !store
            .create_first_admin(&account("admin"), "h2", MARKER)
            .await
            .unwrap()
    );
    let admin = store.user("admin").await.unwrap().unwrap();
    assert_eq!(admin.password_hash, "h1", "created once");
    // Removed, it does not come back.
    assert!(store.delete_user("admin").await.unwrap());
    assert!(
        !store
            .create_first_admin(&account("admin"), "h3", MARKER)
            .await
            .unwrap()
    );
    assert!(store.user("admin").await.unwrap().is_none());
    // A name in use (an organization's) or once used (a removed user's) stays theirs;
    // the marker is recorded all the same.
    store.create_org(&account("crew"), "carol").await.unwrap();
    store
        .create_user(&account("gone"), "h", false)
        .await
        .unwrap();
    assert!(store.delete_user("gone").await.unwrap());
    for (name, marker) in [("crew", "marker_crew"), ("gone", "marker_gone")] {
        assert!(
            !store
                .create_first_admin(&account(name), "h4", marker)
                .await
                .unwrap()
        );
        assert!(store.user(name).await.unwrap().is_none());
        assert_eq!(store.setting(marker).await.unwrap().as_deref(), Some("1"));
    }
}

// ---------------------------------------------------------------- failed sign-ins
//
// Times are the caller's clock, so these checks choose them.

fn window(attempts: u32, started_at: i64) -> Option<SignInWindow> {
    Some(SignInWindow {
        attempts,
        started_at,
    })
}

pub async fn sign_in_attempts_count_in_fixed_windows(store: &dyn MetaStore) {
    const WINDOW: i64 = 60;
    let t = 1_700_000_000;
    let (addr, alice) = ("addr:192.0.2.1", "user:alice");
    // Attempts within a window count up from the first one, which started it.
    for n in 1..=3 {
        let now = t + i64::from(n) - 1;
        let counted = store
            .count_sign_in_attempt(addr, now - WINDOW, now)
            .await
            .unwrap();
        assert_eq!(Some(counted), window(n, t), "attempt {n}");
    }
    // Keys count apart; reading counts nothing and shows only windows that have not ended.
    let counted = store
        .count_sign_in_attempt(alice, t + 1 - WINDOW, t + 1)
        .await
        .unwrap();
    assert_eq!(Some(counted), window(1, t + 1));
    for _ in 0..2 {
        let windows = store
            .sign_in_windows(&[alice, "user:nobody", addr], t + 2 - WINDOW)
            .await
            .unwrap();
        assert_eq!(windows, vec![window(1, t + 1), None, window(3, t)]);
    }
    assert_eq!(store.sign_in_windows(&[], t).await.unwrap(), vec![]);
    // An attempt that succeeded is forgiven, in its own window only, never below zero.
    assert!(store.forgive_sign_in(addr, t).await.unwrap());
    assert!(
        !store.forgive_sign_in(addr, t + 1).await.unwrap(),
        "another window"
    );
    assert!(!store.forgive_sign_in("user:nobody", t).await.unwrap());
    let windows = store.sign_in_windows(&[addr], t - WINDOW).await.unwrap();
    assert_eq!(windows, vec![window(2, t)]);
    assert!(store.forgive_sign_in(addr, t).await.unwrap());
    assert!(store.forgive_sign_in(addr, t).await.unwrap());
    assert!(
        !store.forgive_sign_in(addr, t).await.unwrap(),
        "nothing left"
    );
    let windows = store.sign_in_windows(&[addr], t - WINDOW).await.unwrap();
    assert_eq!(windows, vec![window(0, t)]);
    for n in 1..=2 {
        let counted = store
            .count_sign_in_attempt(addr, t + 5 - WINDOW, t + 5)
            .await
            .unwrap();
        assert_eq!(Some(counted), window(n, t), "counting on after forgiving");
    }
    // A window ends `WINDOW` after it started: the next attempt starts a new one.
    let end = t + WINDOW;
    let windows = store
        .sign_in_windows(&[addr, alice], end - 1 - WINDOW)
        .await
        .unwrap();
    assert_eq!(
        windows,
        vec![window(2, t), window(1, t + 1)],
        "not yet ended"
    );
    let windows = store
        .sign_in_windows(&[addr, alice], end - WINDOW)
        .await
        .unwrap();
    assert_eq!(windows, vec![None, window(1, t + 1)]);
    let counted = store
        .count_sign_in_attempt(addr, end - WINDOW, end)
        .await
        .unwrap();
    assert_eq!(Some(counted), window(1, end), "a new window");
    assert!(
        !store.forgive_sign_in(addr, t).await.unwrap(),
        "the old window"
    );
    // Sweeping forgets the windows that have ended, and only those.
    assert_eq!(
        store.sweep_sign_in_windows(end + 1 - WINDOW).await.unwrap(),
        1
    );
    let windows = store.sign_in_windows(&[addr, alice], 0).await.unwrap();
    assert_eq!(windows, vec![window(1, end), None]);
    assert_eq!(store.sweep_sign_in_windows(end - 1).await.unwrap(), 0);
    // Keys are opaque: long ones, quotes, anything in UTF-8.
    let odd = format!("user:{}'\"%_ é→", "x".repeat(300));
    for n in 1..=2 {
        let counted = store
            .count_sign_in_attempt(&odd, t - WINDOW, t)
            .await
            .unwrap();
        assert_eq!(Some(counted), window(n, t));
    }
    let windows = store
        .sign_in_windows(&[&odd, "user:"], t - WINDOW)
        .await
        .unwrap();
    assert_eq!(windows, vec![window(2, t), None]);
}

// ---------------------------------------------------------------- garbage collection
//
// Times are the store's clock: unix seconds, as `now` gives them. Cutoffs in the future
// (`now + 10`) mean "everything so far", in the past (`now - 60`) "nothing so far".

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Waits until the clock shows a new second, and returns it: whatever was done before
/// happened before it.
async fn next_second() -> i64 {
    let start = unix_now();
    while unix_now() <= start {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unix_now()
}

/// Cutoffs under which everything released, linked, created or untagged so far is old
/// enough, and no claim made from now on is stale.
fn everything_so_far() -> GcCutoffs {
    let t = unix_now();
    GcCutoffs {
        released_before: t + 10,
        linked_before: t + 10,
        claimed_before: t - 60,
    }
}

async fn candidates(store: &dyn MetaStore, cutoffs: &GcCutoffs) -> Vec<Digest> {
    let found = store.gc_candidates(cutoffs, None, 1000).await.unwrap();
    found.into_iter().map(|b| b.digest).collect()
}

/// Blobs in digest order (byte order of the digest's text), as collection lists them.
fn in_digest_order(mut blobs: Vec<GcBlob>) -> Vec<GcBlob> {
    blobs.sort_by_key(|b| b.digest.to_string());
    blobs
}

pub async fn gc_collects_only_unreferenced_released_blobs(store: &dyn MetaStore) {
    let r = repo("ns/gc");
    let (config, layer) = (digest("gc config"), digest("gc layer"));
    let old = everything_so_far();
    // Released long enough ago, but a link made since `t - 60` protects.
    let linked_lately = GcCutoffs {
        linked_before: old.claimed_before,
        ..old
    };
    let released_lately = GcCutoffs {
        released_before: old.claimed_before,
        ..old
    };

    // Pinned: pending, not served, protected while its link is fresh.
    assert!(store.pin_blob(&r, &config, 2).await.unwrap());
    assert_eq!(store.blob(&config).await.unwrap(), None, "pending");
    assert_eq!(store.repository_blob(&r, &config).await.unwrap(), None);
    assert!(candidates(store, &linked_lately).await.is_empty());
    assert_eq!(
        candidates(store, &old).await,
        std::slice::from_ref(&config),
        "a push gone"
    );
    store.link_blob(&r, &config, 2).await.unwrap();
    store.link_blob(&r, &layer, 10).await.unwrap();
    assert_eq!(store.blob(&config).await.unwrap(), Some(2), "live");
    assert_eq!(store.repository_blob(&r, &config).await.unwrap(), Some(2));

    // Referenced by a manifest: never a candidate, whatever the cutoffs.
    let m = manifest("gc m", None, None);
    store
        .put_manifest(&r, &m, &[config.clone(), layer.clone()], &[], &[tag("v1")])
        .await
        .unwrap();
    assert!(candidates(store, &old).await.is_empty());
    assert!(store.gc_claim_blobs(&old, 100).await.unwrap().is_empty());

    // Its manifest deleted: released now, and the repository's links of them ended.
    assert!(store.delete_manifest(&r, &m.digest, "test").await.unwrap());
    let both = in_digest_order(vec![
        GcBlob {
            digest: config.clone(),
            size: 2,
        },
        GcBlob {
            digest: layer.clone(),
            size: 10,
        },
    ]);
    assert_eq!(store.gc_candidates(&old, None, 100).await.unwrap(), both);
    assert_eq!(
        store
            .gc_candidates(&linked_lately, None, 100)
            .await
            .unwrap(),
        both,
        "deleting the manifest ended its links"
    );
    assert!(
        candidates(store, &released_lately).await.is_empty(),
        "within the grace after their release"
    );
    let page = store
        .gc_candidates(&old, Some(&both[0].digest), 1)
        .await
        .unwrap();
    assert_eq!(page, both[1..], "keyset pages by digest");

    // A pin, a mount and a link each protect a blob again.
    assert!(
        store
            .pin_blob(&repo("ns/gc-pin"), &config, 2)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .mount_blob(&repo("ns/gc-mount"), &layer, Some(&r))
            .await
            .unwrap(),
        Some(10)
    );
    assert_eq!(
        store.blob(&config).await.unwrap(),
        Some(2),
        "a pin keeps it live"
    );
    let other = digest("gc other");
    store
        .link_blob(&repo("ns/gc-link"), &other, 7)
        .await
        .unwrap();
    assert!(candidates(store, &linked_lately).await.is_empty());
    assert!(
        candidates(store, &old).await.contains(&other),
        "never released"
    );
    // An unlink is a release.
    assert!(
        store
            .unlink_blob(&repo("ns/gc-link"), &other)
            .await
            .unwrap()
    );
    assert!(!candidates(store, &released_lately).await.contains(&other));
    assert!(candidates(store, &old).await.contains(&other));
    // A mount needs a live blob, and with `from` one that repository holds.
    assert_eq!(
        store
            .mount_blob(&repo("ns/gc-mount"), &other, Some(&repo("ns/gc-link")))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .mount_blob(&repo("ns/gc-mount"), &digest("gc nothing"), None)
            .await
            .unwrap(),
        None
    );

    // Still referenced elsewhere: kept.
    let kept = digest("gc kept");
    store.link_blob(&r, &kept, 1).await.unwrap();
    let keeper = manifest("gc keeper", None, None);
    store
        .put_manifest(&r, &keeper, std::slice::from_ref(&kept), &[], &[])
        .await
        .unwrap();

    // Claimed: neither served nor linked, pinned or mounted, nor usable by a manifest.
    let all = in_digest_order(vec![
        both[0].clone(),
        both[1].clone(),
        GcBlob {
            digest: other.clone(),
            size: 7,
        },
    ]);
    let claimed = in_digest_order(store.gc_claim_blobs(&old, 100).await.unwrap());
    assert_eq!(claimed, all);
    for b in &all {
        assert_eq!(store.blob(&b.digest).await.unwrap(), None);
        assert!(store.gc_blob_known(&b.digest).await.unwrap());
    }
    assert_eq!(store.repository_blob(&r, &config).await.unwrap(), None);
    assert_eq!(
        store
            .repository_blob(&repo("ns/gc-mount"), &layer)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .mount_blob(&repo("ns/gc-late"), &layer, None)
            .await
            .unwrap(),
        None
    );
    assert!(!store.pin_blob(&r, &config, 2).await.unwrap());
    store.link_blob(&r, &config, 2).await.unwrap();
    assert_eq!(store.blob(&config).await.unwrap(), None, "not revived");
    let late = manifest("gc late", None, None);
    let err = store
        .put_manifest(&r, &late, std::slice::from_ref(&layer), &[], &[])
        .await
        .unwrap_err();
    assert!(matches!(err, PutManifestError::MissingBlob(d) if d == layer));
    assert_eq!(store.blob(&kept).await.unwrap(), Some(1));

    // Claimed once: neither a candidate nor claimed again, until the claim is stale
    // (its collector died): then it is both.
    assert!(candidates(store, &old).await.is_empty());
    assert!(store.gc_claim_blobs(&old, 100).await.unwrap().is_empty());
    let stale = GcCutoffs {
        claimed_before: unix_now() + 10,
        ..old
    };
    assert_eq!(store.gc_candidates(&stale, None, 100).await.unwrap(), all);
    assert_eq!(
        in_digest_order(store.gc_claim_blobs(&stale, 100).await.unwrap()),
        all
    );

    // Forgotten: no record left; a blob not claimed is not forgotten.
    let mut forget: Vec<Digest> = all.iter().map(|b| b.digest.clone()).collect();
    forget.push(kept.clone());
    store.gc_forget_blobs(&forget).await.unwrap();
    for b in &all {
        assert!(!store.gc_blob_known(&b.digest).await.unwrap());
    }
    assert_eq!(store.repository_blob(&r, &kept).await.unwrap(), Some(1));
    assert!(store.gc_claim_blobs(&stale, 100).await.unwrap().is_empty());
    // A new push of it can begin.
    assert!(store.pin_blob(&r, &config, 2).await.unwrap());
    assert_eq!(store.blob(&config).await.unwrap(), None);
    store.link_blob(&r, &config, 2).await.unwrap();
    assert_eq!(store.repository_blob(&r, &config).await.unwrap(), Some(2));
}

pub async fn gc_keeps_index_children_and_referrers(store: &dyn MetaStore) {
    let r = repo("ns/untag");
    let (child_layer, plain_layer) = (digest("child layer"), digest("plain layer"));
    store.link_blob(&r, &child_layer, 3).await.unwrap();
    store.link_blob(&r, &plain_layer, 4).await.unwrap();
    let put = |r: RepoName,
               m: ManifestRecord,
               blobs: Vec<Digest>,
               children: Vec<Digest>,
               tags: Vec<Tag>| {
        async move {
            store
                .put_manifest(&r, &m, &blobs, &children, &tags)
                .await
                .unwrap();
        }
    };
    let child = manifest("child", None, None);
    put(
        r.clone(),
        child.clone(),
        vec![child_layer.clone()],
        vec![],
        vec![],
    )
    .await;
    let index = manifest("index", None, None);
    put(
        r.clone(),
        index.clone(),
        vec![],
        vec![child.digest.clone()],
        vec![tag("v1")],
    )
    .await;
    let referrer = manifest("sig", Some(child.digest.clone()), Some("application/x.sig"));
    put(r.clone(), referrer.clone(), vec![], vec![], vec![]).await;
    let dangling = manifest("dangling sig", Some(digest("no subject")), Some("x/y"));
    put(r.clone(), dangling.clone(), vec![], vec![], vec![]).await;
    let plain = manifest("plain", None, None);
    put(
        r.clone(),
        plain.clone(),
        vec![plain_layer.clone()],
        vec![],
        vec![],
    )
    .await;
    let tagged = manifest("tagged", None, None);
    put(r.clone(), tagged.clone(), vec![], vec![], vec![tag("keep")]).await;
    let moved = manifest("moved", None, None);
    put(r.clone(), moved.clone(), vec![], vec![], vec![tag("mv")]).await;
    let elsewhere = manifest("elsewhere", None, None);
    put(repo("nsx/r"), elsewhere.clone(), vec![], vec![], vec![]).await;
    put(repo("myxns/r"), elsewhere.clone(), vec![], vec![], vec![]).await;
    put(repo("ns/other"), elsewhere.clone(), vec![], vec![], vec![]).await;

    let t = next_second().await;
    let old = GcCutoffs {
        released_before: t,
        linked_before: t,
        claimed_before: t - 60,
    };
    let recent = GcCutoffs {
        released_before: t - 60,
        linked_before: t - 60,
        ..old
    };
    let ns = vec!["ns".to_owned()];
    assert!(
        store
            .gc_untagged_manifests(&ns, &recent, true)
            .await
            .unwrap()
            .is_empty(),
        "pushed within the grace"
    );
    // Untagged since before `t`: the moved tag's manifest and a deleted tag's are not.
    assert!(store.delete_tag(&r, &tag("keep"), "test").await.unwrap());
    put(
        r.clone(),
        manifest("mover", None, None),
        vec![],
        vec![],
        vec![tag("mv")],
    )
    .await;

    let mut expected = vec![
        (repo("ns/other"), elsewhere.digest.clone()),
        (r.clone(), dangling.digest.clone()),
        (r.clone(), plain.digest.clone()),
    ];
    expected.sort_by_key(|(r, d)| (r.to_string(), d.to_string()));
    let sorted = |mut found: Vec<(RepoName, Digest)>| {
        found.sort_by_key(|(r, d)| (r.to_string(), d.to_string()));
        found
    };
    let found = store.gc_untagged_manifests(&ns, &old, true).await.unwrap();
    assert_eq!(sorted(found), expected);
    assert!(
        store
            .manifest_by_digest(&r, &plain.digest)
            .await
            .unwrap()
            .is_some(),
        "a dry run deletes nothing"
    );
    // Scopes are namespaces or repositories, not prefixes or patterns of names.
    let lookalikes = vec!["n".to_owned(), "my_ns".to_owned(), "ns/un".to_owned()];
    assert!(
        store
            .gc_untagged_manifests(&lookalikes, &old, true)
            .await
            .unwrap()
            .is_empty()
    );
    let one = vec![r.to_string()];
    let found = store.gc_untagged_manifests(&one, &old, true).await.unwrap();
    assert_eq!(sorted(found), expected[1..]);
    let found = store
        .gc_untagged_manifests(&["nsx".to_owned(), "myxns/r".to_owned()], &old, true)
        .await
        .unwrap();
    assert_eq!(
        sorted(found),
        [
            (repo("myxns/r"), elsewhere.digest.clone()),
            (repo("nsx/r"), elsewhere.digest.clone())
        ]
    );

    let taken = store.gc_untagged_manifests(&ns, &old, false).await.unwrap();
    assert_eq!(sorted(taken), expected);
    for (m, kept) in [
        (&plain, false),
        (&dangling, false),
        (&child, true),
        (&referrer, true),
        (&index, true),
        (&tagged, true),
        (&moved, true),
    ] {
        let found = store.manifest_by_digest(&r, &m.digest).await.unwrap();
        assert_eq!(found.is_some(), kept, "{:?}", std::str::from_utf8(&m.body));
    }
    // The plain manifest's blobs were released as by delete_manifest.
    let found = candidates(store, &everything_so_far()).await;
    assert!(found.contains(&plain_layer));
    assert!(!found.contains(&child_layer));

    // Without its index the child goes, and then its referrer, whose subject is gone.
    assert!(
        store
            .delete_manifest(&r, &index.digest, "test")
            .await
            .unwrap()
    );
    let taken = store
        .gc_untagged_manifests(&one, &old, false)
        .await
        .unwrap();
    assert_eq!(taken, [(r.clone(), child.digest.clone())]);
    let taken = store
        .gc_untagged_manifests(&one, &old, false)
        .await
        .unwrap();
    assert_eq!(taken, [(r.clone(), referrer.digest.clone())]);
    assert!(
        store
            .gc_untagged_manifests(&one, &old, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        candidates(store, &everything_so_far())
            .await
            .contains(&child_layer)
    );
}

pub async fn gc_orphans_and_stale_links(store: &dyn MetaStore) {
    // Bytes without a record: claimed by inserting one, unless any record exists.
    let r = repo("ns/orphans");
    let d = digest("orphan");
    assert!(!store.gc_blob_known(&d).await.unwrap());
    assert!(store.gc_claim_orphan(&d, 5).await.unwrap());
    assert!(store.gc_blob_known(&d).await.unwrap());
    assert!(!store.gc_claim_orphan(&d, 5).await.unwrap(), "claimed once");
    assert_eq!(store.blob(&d).await.unwrap(), None);
    assert!(!store.pin_blob(&r, &d, 5).await.unwrap());
    assert_eq!(store.mount_blob(&r, &d, None).await.unwrap(), None);
    store
        .gc_forget_blobs(std::slice::from_ref(&d))
        .await
        .unwrap();
    assert!(!store.gc_blob_known(&d).await.unwrap());
    assert!(store.pin_blob(&r, &d, 5).await.unwrap());
    assert!(
        !store.gc_claim_orphan(&d, 5).await.unwrap(),
        "pinned: its bytes are being published"
    );
    assert_eq!(store.repository_blob(&r, &d).await.unwrap(), None);
    store.link_blob(&r, &d, 5).await.unwrap();
    assert_eq!(store.repository_blob(&r, &d).await.unwrap(), Some(5));

    // Links: a repository's link of a live blob none of its manifests references.
    let (a, b) = (repo("ns/a"), repo("ns/b"));
    let used = digest("used");
    store.link_blob(&a, &used, 1).await.unwrap();
    store.link_blob(&b, &used, 1).await.unwrap();
    let m = manifest("uses", None, None);
    store
        .put_manifest(&a, &m, std::slice::from_ref(&used), &[], &[])
        .await
        .unwrap();
    assert!(
        store
            .pin_blob(&repo("ns/c"), &digest("pending"), 1)
            .await
            .unwrap()
    );
    let released = digest("released lately");
    let (d_repo, e_repo) = (repo("ns/d"), repo("ns/e"));
    store.link_blob(&d_repo, &released, 1).await.unwrap();
    store.link_blob(&e_repo, &released, 1).await.unwrap();
    assert!(store.unlink_blob(&e_repo, &released).await.unwrap());

    let old = everything_so_far();
    let linked_lately = GcCutoffs {
        linked_before: old.claimed_before,
        ..old
    };
    let released_lately = GcCutoffs {
        released_before: old.claimed_before,
        ..old
    };
    assert_eq!(store.gc_stale_links(&linked_lately, true).await.unwrap(), 0);
    // Stale: b's link of `used`, the orphans repository's of `d`, d's of `released`;
    // not a's (referenced) nor c's (pending).
    assert_eq!(store.gc_stale_links(&old, true).await.unwrap(), 3);
    assert_eq!(store.repository_blob(&b, &used).await.unwrap(), Some(1));
    assert_eq!(
        store.gc_stale_links(&released_lately, false).await.unwrap(),
        2
    );
    assert_eq!(store.repository_blob(&b, &used).await.unwrap(), None);
    assert_eq!(store.repository_blob(&r, &d).await.unwrap(), None);
    assert_eq!(store.repository_blob(&a, &used).await.unwrap(), Some(1));
    assert_eq!(
        store.repository_blob(&d_repo, &released).await.unwrap(),
        Some(1)
    );
    assert_eq!(store.gc_stale_links(&old, false).await.unwrap(), 1);
    assert_eq!(
        store.repository_blob(&d_repo, &released).await.unwrap(),
        None
    );
    assert_eq!(store.gc_stale_links(&old, true).await.unwrap(), 0);
    assert_eq!(store.blob(&used).await.unwrap(), Some(1), "the blob stays");
    assert_eq!(store.blob(&released).await.unwrap(), Some(1));
}

pub async fn storage_usage_per_repository_and_namespace(store: &dyn MetaStore) {
    let (a, b, c, top) = (
        repo("acme/a"),
        repo("acme/b"),
        repo("acmex/c"),
        repo("acme/0"),
    );
    let (x, y, z) = (digest("usage x"), digest("usage y"), digest("usage z"));
    store.link_blob(&a, &x, 100).await.unwrap();
    store.link_blob(&b, &x, 100).await.unwrap();
    store.link_blob(&a, &y, 10).await.unwrap();
    store.link_blob(&c, &z, 1000).await.unwrap();
    assert!(store.pin_blob(&top, &digest("usage p"), 7).await.unwrap());
    let m = manifest("usage m", None, None);
    store
        .put_manifest(&a, &m, &[x.clone(), y.clone()], &[], &[tag("1"), tag("2")])
        .await
        .unwrap();
    let s = manifest("usage s", None, None);
    store.put_manifest(&b, &s, &[], &[], &[]).await.unwrap();
    let (mb, sb) = (m.body.len() as u64, s.body.len() as u64);
    let usage = |repository: &RepoName, bytes, blobs, manifests, tags| RepositoryUsage {
        repository: repository.clone(),
        bytes,
        blobs,
        manifests,
        tags,
    };
    let all = vec![
        usage(&top, 0, 0, 0, 0),
        usage(&a, 110 + mb, 2, 1, 2),
        usage(&b, 100 + sb, 1, 1, 0),
        usage(&c, 1000, 1, 0, 0),
    ];
    assert_eq!(store.repository_usage(None, None, 100).await.unwrap(), all);
    assert_eq!(
        store
            .repository_usage(Some("acme"), None, 100)
            .await
            .unwrap(),
        all[..3]
    );
    assert_eq!(
        store
            .repository_usage(Some("acme"), Some("acme/0"), 1)
            .await
            .unwrap(),
        all[1..2]
    );
    assert_eq!(
        store
            .repository_usage(None, Some("acme/b"), 100)
            .await
            .unwrap(),
        all[3..]
    );
    assert_eq!(
        store.namespace_usage("acme").await.unwrap(),
        110 + mb + sb,
        "a blob in several of its repositories counts once"
    );
    assert_eq!(store.namespace_usage("acmex").await.unwrap(), 1000);
    assert_eq!(store.namespace_usage("acm").await.unwrap(), 0);
    assert_eq!(
        store.stored_bytes().await.unwrap(),
        1110 + mb + sb,
        "the registry holds each live blob once (a pinned upload is not live yet)"
    );
    store.check().await.unwrap();
    // What is being collected no longer counts (z and the pending blob are collectable).
    let claimed = store
        .gc_claim_blobs(&everything_so_far(), 100)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(store.namespace_usage("acmex").await.unwrap(), 0);
    assert_eq!(store.stored_bytes().await.unwrap(), 110 + mb + sb);
    assert_eq!(
        store
            .repository_usage(Some("acmex"), None, 100)
            .await
            .unwrap(),
        [usage(&c, 0, 0, 0, 0)]
    );
}

// ---------------------------------------------------------------- races
//
// Two store instances on the same data, as two nodes (or a server and a command) on one
// database. Each race starts its calls together and checks that the outcome is one a
// serial order of the same calls could give.

/// Runs `n` calls of `f` at once (behind a barrier), alternating between the two
/// instances, and returns their answers in order.
async fn together<T, F, Fut>(
    n: usize,
    a: &Arc<dyn MetaStore>,
    b: &Arc<dyn MetaStore>,
    f: F,
) -> Vec<T>
where
    F: Fn(usize, Arc<dyn MetaStore>) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let call = f(i, store);
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                call.await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

fn race_session(id: &str, client: &str) -> UploadSession {
    UploadSession {
        id: id.to_owned(),
        repository: repo("ns/race"),
        algorithm: Algorithm::Sha256,
        offset: 0,
        hash_state: Vec::new(),
        store_state: Vec::new(),
        updated_at: 100,
        client: client.to_owned(),
    }
}

pub async fn race_advance_upload_has_one_winner(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    for round in 0..4 {
        let s = race_session(&format!("race-{round}"), "user:racer");
        assert!(a.create_upload(&s, 100).await.unwrap());
        let mut from = 0;
        for step in 0..2u64 {
            let answers = together(16, &a, &b, |i, store| {
                let progress = UploadSession {
                    offset: from + 10 + i as u64,
                    hash_state: vec![step as u8, i as u8],
                    store_state: format!("step {step} by {i}").into_bytes(),
                    updated_at: 200 + i as i64,
                    ..s.clone()
                };
                async move {
                    (
                        store.advance_upload(&progress, from).await.unwrap(),
                        progress,
                    )
                }
            })
            .await;
            let winners: Vec<UploadSession> = answers
                .into_iter()
                .filter_map(|(won, progress)| won.then_some(progress))
                .collect();
            assert_eq!(winners.len(), 1, "exactly one advance from {from} wins");
            for store in [&a, &b] {
                assert_eq!(
                    store.upload(&s.id).await.unwrap().as_ref(),
                    Some(&winners[0]),
                    "the winner's offset, hash and store state, whole"
                );
            }
            from = winners[0].offset;
        }
    }
}

pub async fn race_create_upload_keeps_the_client_limit(
    a: Arc<dyn MetaStore>,
    b: Arc<dyn MetaStore>,
) {
    const MAX: u32 = 3;
    let answers = together(20, &a, &b, |i, store| async move {
        let s = race_session(&format!("lim-{i}"), "user:greedy");
        store.create_upload(&s, MAX).await.unwrap()
    })
    .await;
    assert_eq!(answers.iter().filter(|won| **won).count(), MAX as usize);
    for (i, won) in answers.iter().enumerate() {
        let stored = b.upload(&format!("lim-{i}")).await.unwrap();
        assert_eq!(stored.is_some(), *won, "lim-{i}");
    }
    // Another client is not held back by this one.
    let other = race_session("other-0", "addr:192.0.2.7");
    assert!(a.create_upload(&other, MAX).await.unwrap());
    // One session ends: exactly one more fits, however many race for it.
    let first_winner = answers.iter().position(|won| *won).unwrap();
    assert!(
        a.delete_upload(&format!("lim-{first_winner}"))
            .await
            .unwrap()
    );
    let answers = together(10, &a, &b, |i, store| async move {
        let s = race_session(&format!("again-{i}"), "user:greedy");
        store.create_upload(&s, MAX).await.unwrap()
    })
    .await;
    assert_eq!(answers.iter().filter(|won| **won).count(), 1);
}

pub async fn race_put_manifest_same_tags(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    let r = repo("ns/racetags");
    let config = digest("race config");
    a.link_blob(&r, &config, 5).await.unwrap();
    // The same manifest and tags from everyone, the tags in different orders.
    let m = manifest("race same", None, None);
    let answers = together(12, &a, &b, |i, store| {
        let (r, m, config) = (r.clone(), m.clone(), config.clone());
        let tags = match i % 3 {
            0 => vec![tag("latest"), tag("v1")],
            1 => vec![tag("v1"), tag("latest")],
            _ => vec![tag("v1"), tag("latest"), tag("v1")],
        };
        async move { store.put_manifest(&r, &m, &[config], &[], &tags).await }
    })
    .await;
    for answer in answers {
        answer.unwrap();
    }
    for t in ["latest", "v1"] {
        assert_eq!(
            b.manifest_by_tag(&r, &tag(t)).await.unwrap(),
            Some(m.clone())
        );
    }
    assert_eq!(
        a.manifest_by_digest(&r, &m.digest).await.unwrap(),
        Some(m.clone())
    );
    let listed = a.list_tags(&r, None, 100).await.unwrap().unwrap();
    assert_eq!(listed.items, ["latest", "v1"]);

    // Different manifests for one tag, each with a tag of its own besides: every push
    // succeeds, the shared tag ends at one of them, each own tag at its manifest.
    let ms: Vec<ManifestRecord> = (0..8)
        .map(|i| manifest(&format!("race {i}"), None, None))
        .collect();
    let answers = together(8, &a, &b, |i, store| {
        let (r, m) = (r.clone(), ms[i].clone());
        let mut tags = vec![tag("moving"), tag(&format!("own-{i}"))];
        if i % 2 == 1 {
            tags.reverse();
        }
        async move { store.put_manifest(&r, &m, &[], &[], &tags).await }
    })
    .await;
    for answer in answers {
        answer.unwrap();
    }
    let moving = a
        .manifest_by_tag(&r, &tag("moving"))
        .await
        .unwrap()
        .unwrap();
    assert!(ms.contains(&moving));
    for (i, m) in ms.iter().enumerate() {
        let own = b.manifest_by_tag(&r, &tag(&format!("own-{i}"))).await;
        assert_eq!(own.unwrap().as_ref(), Some(m));
    }
    let listed = b.list_tags(&r, None, 100).await.unwrap().unwrap();
    assert_eq!(listed.items.len(), 2 + 1 + ms.len());
}

pub async fn race_link_blob_same_digest(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    // Each round a new repository: the first push creates it, from both nodes at once.
    for round in 0..4 {
        let r = repo(&format!("ns/link-{round}"));
        let d = digest(&format!("linked {round}"));
        let answers = together(10, &a, &b, |i, store| {
            let (r, d) = (r.clone(), d.clone());
            async move {
                if i % 4 == 3 {
                    // Finishing an upload links too.
                    let id = format!("link-{round}-{i}");
                    assert!(
                        store
                            .create_upload(&race_session(&id, "user:linker"), 100)
                            .await
                            .unwrap()
                    );
                    store.complete_upload(&id, &r, &d, 77).await
                } else {
                    store.link_blob(&r, &d, 77).await
                }
            }
        })
        .await;
        for answer in answers {
            answer.unwrap();
        }
        assert_eq!(b.repository_blob(&r, &d).await.unwrap(), Some(77));
        assert_eq!(a.blob(&d).await.unwrap(), Some(77));
        assert!(a.unlink_blob(&r, &d).await.unwrap(), "one link row");
        assert!(!b.unlink_blob(&r, &d).await.unwrap());
    }
    let names = a.list_repositories(None, 1000).await.unwrap().items;
    assert_eq!(names, ["ns/link-0", "ns/link-1", "ns/link-2", "ns/link-3"]);

    // Made private before its first push, while that push races it: private either way.
    for round in 0..4 {
        let r = repo(&format!("ns/private-{round}"));
        let d = digest("private blob");
        let (linked, hidden) = tokio::join!(
            a.link_blob(&r, &d, 1),
            b.set_repository_visibility(&r, false)
        );
        linked.unwrap();
        hidden.unwrap();
        assert_eq!(a.repository_visibility(&r).await.unwrap(), Some(false));
    }
}

/// A third view watches while `put` and `remove` race: once it sees `gone()` true, a
/// put that succeeded must be visible already (it committed while its references were
/// there, before the removal). Returns what the view saw then.
async fn watch_until<G, GF, V, VF>(gone: G, visible: V) -> bool
where
    G: Fn() -> GF,
    GF: Future<Output = bool>,
    V: Fn() -> VF,
    VF: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if gone().await {
            return visible().await;
        }
        assert!(Instant::now() < deadline, "the removal never showed");
        tokio::task::yield_now().await;
    }
}

pub async fn race_put_manifest_against_unlink_and_delete(
    a: Arc<dyn MetaStore>,
    b: Arc<dyn MetaStore>,
) {
    let mut outcomes = [0, 0];
    for round in 0..24 {
        let r = repo(&format!("ns/gc-{round}"));
        let blob = digest(&format!("gc blob {round}"));
        a.link_blob(&r, &blob, 3).await.unwrap();
        let m = manifest(&format!("gc {round}"), None, None);
        let put = {
            let (a, r, m, blob) = (a.clone(), r.clone(), m.clone(), blob.clone());
            tokio::spawn(
                async move { a.put_manifest(&r, &m, &[blob], &[], &[tag("latest")]).await },
            )
        };
        let unlink = {
            let (b, r, blob) = (b.clone(), r.clone(), blob.clone());
            tokio::spawn(async move { b.unlink_blob(&r, &blob).await })
        };
        let seen = watch_until(
            || async { a.repository_blob(&r, &blob).await.unwrap().is_none() },
            || async { b.manifest_by_digest(&r, &m.digest).await.unwrap().is_some() },
        )
        .await;
        assert!(unlink.await.unwrap().unwrap(), "the blob was linked");
        match put.await.unwrap() {
            Ok(()) => {
                outcomes[0] += 1;
                assert!(
                    seen,
                    "round {round}: the manifest was stored after its blob left"
                );
            }
            Err(PutManifestError::MissingBlob(d)) => {
                outcomes[1] += 1;
                assert_eq!(d, blob);
                assert_eq!(a.manifest_by_digest(&r, &m.digest).await.unwrap(), None);
                assert_eq!(a.manifest_by_tag(&r, &tag("latest")).await.unwrap(), None);
            }
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    eprintln!("put_manifest against unlink_blob: {outcomes:?} (stored, refused)");

    // An index against the deletion of its child manifest: indexes may be sparse, so
    // both succeed whatever the order, and the child's reference outlives it (a second
    // push of the child is then protected by the index).
    for round in 0..12 {
        let r = repo(&format!("ns/index-{round}"));
        let child = manifest(&format!("child {round}"), None, None);
        a.put_manifest(&r, &child, &[], &[], &[]).await.unwrap();
        let index = manifest(&format!("index {round}"), None, None);
        let (put, delete) = tokio::join!(
            {
                let (b, r, index, child) =
                    (b.clone(), r.clone(), index.clone(), child.digest.clone());
                tokio::spawn(async move {
                    b.put_manifest(&r, &index, &[], &[child], &[tag("multi")])
                        .await
                })
            },
            {
                let (a, r, child) = (a.clone(), r.clone(), child.digest.clone());
                tokio::spawn(async move { a.delete_manifest(&r, &child, "test").await })
            }
        );
        put.unwrap()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(
            delete.unwrap().unwrap(),
            "round {round}: the child was there"
        );
        assert_eq!(a.manifest_by_digest(&r, &child.digest).await.unwrap(), None);
        assert_eq!(
            b.manifest_by_tag(&r, &tag("multi")).await.unwrap(),
            Some(index.clone())
        );
        a.put_manifest(&r, &child, &[], &[], &[]).await.unwrap();
        let scope = vec![r.to_string()];
        assert_eq!(
            b.gc_untagged_manifests(&scope, &everything_so_far(), false)
                .await
                .unwrap(),
            [],
            "round {round}: the child pushed again is the index's"
        );
    }
}

/// How an account change ended, comparable.
fn refusal(outcome: Result<(), AccountRefusal>) -> &'static str {
    match outcome {
        Ok(()) => "ok",
        Err(AccountRefusal::NameTaken(_)) => "taken",
        Err(AccountRefusal::NameRetired(_)) => "retired",
        Err(AccountRefusal::UnknownUser(_)) => "unknown user",
        Err(AccountRefusal::UnknownOrg(_)) => "unknown org",
        Err(AccountRefusal::Store(e)) => panic!("store error: {e}"),
    }
}

pub async fn race_create_user_same_name(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    for round in 0..6 {
        let name = account(&format!("racer{round}"));
        let answers = together(4, &a, &b, |i, store| {
            let name = name.clone();
            async move { refusal(store.create_user(&name, &format!("h{i}"), false).await) }
        })
        .await;
        let winner = answers.iter().position(|x| *x == "ok").unwrap();
        let mut losers: Vec<_> = answers.clone();
        losers.remove(winner);
        assert_eq!(losers, ["taken"; 3], "{answers:?}");
        let user = b.user(name.as_str()).await.unwrap().unwrap();
        assert_eq!(user.password_hash, format!("h{winner}"));
    }
    // A user and an organization of one name: one gets it, the other hears it is taken.
    a.create_user(&account("owner"), "h", false).await.unwrap();
    for round in 0..6 {
        let name = account(&format!("contested{round}"));
        let answers = together(2, &a, &b, |i, store| {
            let name = name.clone();
            async move {
                if i == 0 {
                    refusal(store.create_user(&name, "h", false).await)
                } else {
                    refusal(store.create_org(&name, "owner").await)
                }
            }
        })
        .await;
        let kind = a.namespace(name.as_str()).await.unwrap().unwrap().kind;
        match answers[..] {
            ["ok", "taken"] => assert_eq!(kind, crate::NamespaceKind::User),
            ["taken", "ok"] => assert_eq!(kind, crate::NamespaceKind::Org),
            _ => panic!("{answers:?}"),
        }
    }
}

pub async fn race_user_removed_while_tokens_and_sessions_are_made(
    a: Arc<dyn MetaStore>,
    b: Arc<dyn MetaStore>,
) {
    a.create_user(&account("boss"), "h", false).await.unwrap();
    a.create_org(&account("guild"), "boss").await.unwrap();
    for round in 0..10 {
        let name = format!("leaver{round}");
        a.create_user(&account(&name), "h", false).await.unwrap();
        let token = AccessToken {
            id: format!("tok-{round}"),
            user: account(&name),
            name: "laptop".into(),
            secret_hash: format!("token-hash-{round}"),
            scope: TokenScope::Read,
            created_at: 100,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        };
        let session = WebSession {
            id: format!("web-{round}"),
            user: account(&name),
            secret_hash: format!("session-hash-{round}"),
            epoch: Some(1),
            token_id: None,
            created_at: 100,
            expires_at: 1000,
            last_seen_at: 100,
            client: "192.0.2.1".into(),
            user_agent: "test".into(),
        };
        let (made_token, made_session, joined, deleted) = tokio::join!(
            a.create_token(&token),
            b.create_web_session(&session),
            a.set_member("guild", &name, Role::Read),
            b.delete_user(&name),
        );
        assert!(deleted.unwrap());
        for made in [made_token, made_session, joined] {
            let made = refusal(made);
            assert!(made == "ok" || made == "unknown user", "{made}");
        }
        // Whatever came first, nothing of the removed user is left.
        assert_eq!(b.token(&token.id).await.unwrap(), None);
        let found = a.web_session_by_secret_hash(&session.secret_hash).await;
        assert_eq!(found.unwrap(), None);
        let members = b.members("guild").await.unwrap().unwrap();
        assert!(members.iter().all(|m| m.user.as_str() != name));
        assert!(a.user(&name).await.unwrap().is_none());
    }
}

/// Nodes starting together on an empty store: one signing key for all, one first
/// administrator (created by exactly one of them), settings written without a fight.
pub async fn race_first_admin_and_settings_at_start(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    let answers = together(6, &a, &b, |i, store| async move {
        let key = store
            .init_setting("signing_key", &format!("key {i}"))
            .await
            .unwrap();
        store.set_setting("default_public", "0").await.unwrap();
        store
            .set_setting("mode", if i % 2 == 0 { "even" } else { "odd" })
            .await
            .unwrap();
        let created = store
            .create_first_admin(
                &account("admin"),
                &format!("hash {i}"),
                "first_admin_created",
            )
            .await
            .unwrap();
        (key, created)
    })
    .await;
    let stored_key = a.setting("signing_key").await.unwrap().unwrap();
    assert!(
        answers.iter().all(|(key, _)| *key == stored_key),
        "{answers:?}"
    );
    let creators: Vec<usize> = (0..answers.len()).filter(|i| answers[*i].1).collect();
    assert_eq!(creators.len(), 1, "{answers:?}");
    let admin = b.user("admin").await.unwrap().unwrap();
    assert_eq!(admin.password_hash, format!("hash {}", creators[0]));
    assert!(admin.admin);
    assert_eq!(
        b.setting("default_public").await.unwrap().as_deref(),
        Some("0")
    );
    let mode = a.setting("mode").await.unwrap().unwrap();
    assert!(mode == "even" || mode == "odd");
    assert_eq!(a.list_users().await.unwrap().len(), 1);
}

/// A barrier for `n` spawned tasks, so that they start at once.
fn barrier(n: usize) -> Arc<tokio::sync::Barrier> {
    Arc::new(tokio::sync::Barrier::new(n))
}

/// A collector claims a released blob while a manifest that needs it is pushed, another
/// repository pins it and a third mounts it: either the claim comes first and every
/// other call fails, or one of them protects the blob and the claim leaves it (then
/// every other call succeeds). Never is a manifest stored whose blob is collected.
pub async fn race_claim_against_put_manifest(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    let mut outcomes = [0, 0];
    for round in 0..24 {
        let r = repo(&format!("ns/claim-{round}"));
        let x = digest(&format!("claimed {round}"));
        a.link_blob(&r, &x, 3).await.unwrap();
        let before = manifest(&format!("claim before {round}"), None, None);
        a.put_manifest(&r, &before, std::slice::from_ref(&x), &[], &[])
            .await
            .unwrap();
        assert!(a.delete_manifest(&r, &before.digest, "test").await.unwrap());
        let t = unix_now();
        // Released: collectable; links made from now on protect it.
        let cutoffs = GcCutoffs {
            released_before: t + 10,
            linked_before: t - 30,
            claimed_before: t - 60,
        };
        assert!(candidates(&*a, &cutoffs).await.contains(&x));

        let m = manifest(&format!("claim after {round}"), None, None);
        let start = barrier(4);
        let claim = {
            let (a, start) = (a.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                a.gc_claim_blobs(&cutoffs, 100).await.unwrap()
            })
        };
        let put = {
            let (b, r, m, x, start) = (b.clone(), r.clone(), m.clone(), x.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                b.put_manifest(&r, &m, &[x], &[], &[tag("latest")]).await
            })
        };
        let pin = {
            let (a, x, start) = (a.clone(), x.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let pinned = repo(&format!("ns/pin-{round}"));
                a.pin_blob(&pinned, &x, 3).await.unwrap()
            })
        };
        let mount = {
            let (b, r, x, start) = (b.clone(), r.clone(), x.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let mounted = repo(&format!("ns/mount-{round}"));
                b.mount_blob(&mounted, &x, Some(&r)).await.unwrap()
            })
        };
        let claimed = claim.await.unwrap();
        let (put, pinned, mounted) = (put.await.unwrap(), pin.await.unwrap(), mount.await.unwrap());
        if claimed.iter().any(|c| c.digest == x) {
            outcomes[0] += 1;
            assert!(
                matches!(&put, Err(PutManifestError::MissingBlob(d)) if *d == x),
                "round {round}: the manifest was stored, its blob claimed: {put:?}"
            );
            assert!(!pinned, "round {round}: pinned a claimed blob");
            assert_eq!(mounted, None, "round {round}: mounted a claimed blob");
        } else {
            outcomes[1] += 1;
            put.unwrap();
            assert!(pinned, "round {round}: a pin refused, the blob left alone");
            assert_eq!(mounted, Some(3), "round {round}");
        }
        // Whatever the order: a stored manifest's blob is served.
        let stored = b.manifest_by_digest(&r, &m.digest).await.unwrap().is_some();
        let served = a.blob(&x).await.unwrap().is_some();
        assert_eq!(
            stored, served,
            "round {round}: manifest {stored}, blob {served}"
        );
        assert_eq!(b.repository_blob(&r, &x).await.unwrap().is_some(), stored);
        let gone: Vec<Digest> = claimed.into_iter().map(|c| c.digest).collect();
        b.gc_forget_blobs(&gone).await.unwrap();
        assert_eq!(
            b.manifest_by_digest(&r, &m.digest).await.unwrap().is_some(),
            stored
        );
        assert_eq!(a.blob(&x).await.unwrap().is_some(), stored, "round {round}");
    }
    eprintln!("claim against put_manifest, pin and mount: {outcomes:?} (claimed, kept)");
}

/// Collectors on two nodes claim at once, again and again: each blob is claimed by
/// exactly one of them.
pub async fn race_two_collectors_claim_disjoint_sets(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    const BLOBS: u64 = 60;
    let r = repo("ns/collect");
    for i in 0..BLOBS {
        a.link_blob(&r, &digest(&format!("collect {i}")), i)
            .await
            .unwrap();
    }
    let cutoffs = everything_so_far();
    let mut claimed = std::collections::HashMap::new();
    for round in 0.. {
        assert!(round < BLOBS, "claims make no progress");
        let answers = together(6, &a, &b, |_, store| async move {
            store.gc_claim_blobs(&cutoffs, 4).await.unwrap()
        })
        .await;
        for blob in answers.into_iter().flatten() {
            let again = claimed.insert(blob.digest.clone(), blob.size);
            assert_eq!(again, None, "{} claimed twice", blob.digest);
        }
        if candidates(&*a, &cutoffs).await.is_empty() {
            break;
        }
    }
    assert_eq!(claimed.len() as u64, BLOBS);
    for i in 0..BLOBS {
        let d = digest(&format!("collect {i}"));
        assert_eq!(claimed.get(&d), Some(&i), "its size");
        assert_eq!(b.blob(&d).await.unwrap(), None);
    }
}

/// Removing stale links races a push of a manifest that needs one, and removing
/// untagged manifests a push of an index that lists one: a manifest stored is never left
/// without the link or the child it needed.
pub async fn race_collection_against_references(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    let mut outcomes = [0, 0, 0, 0];
    let keep = repo("ns/keep");
    for round in 0..16 {
        let r = repo(&format!("ns/refs-{round}"));
        let x = digest(&format!("stale link {round}"));
        // Referenced in another repository: the blob stays; only r's link may go.
        a.link_blob(&keep, &x, 3).await.unwrap();
        let keeper = manifest(&format!("keeper {round}"), None, None);
        a.put_manifest(&keep, &keeper, std::slice::from_ref(&x), &[], &[])
            .await
            .unwrap();
        a.link_blob(&r, &x, 3).await.unwrap();
        let cutoffs = everything_so_far();
        let m = manifest(&format!("needs its link {round}"), None, None);
        let (removed, put) = tokio::join!(
            {
                let a = a.clone();
                tokio::spawn(async move { a.gc_stale_links(&cutoffs, false).await.unwrap() })
            },
            {
                let (b, r, m, x) = (b.clone(), r.clone(), m.clone(), x.clone());
                tokio::spawn(
                    async move { b.put_manifest(&r, &m, &[x], &[], &[tag("latest")]).await },
                )
            }
        );
        let (removed, put) = (removed.unwrap(), put.unwrap());
        let linked = a.repository_blob(&r, &x).await.unwrap().is_some();
        match put {
            Ok(()) => {
                outcomes[0] += 1;
                assert!(linked, "round {round}: the manifest's link was removed");
            }
            Err(PutManifestError::MissingBlob(d)) => {
                outcomes[1] += 1;
                assert_eq!(d, x);
                assert!(!linked);
                assert!(removed >= 1, "round {round}: removed, not counted");
                assert_eq!(b.manifest_by_digest(&r, &m.digest).await.unwrap(), None);
            }
            Err(e) => panic!("round {round}: {e}"),
        }

        let child = manifest(&format!("untagged child {round}"), None, None);
        a.put_manifest(&r, &child, &[], &[], &[]).await.unwrap();
        let cutoffs = everything_so_far();
        let index = manifest(&format!("index {round}"), None, None);
        let scope = vec![r.to_string()];
        let (taken, put) = tokio::join!(
            {
                let a = a.clone();
                tokio::spawn(async move {
                    a.gc_untagged_manifests(&scope, &cutoffs, false)
                        .await
                        .unwrap()
                })
            },
            {
                let (b, r, index, child) =
                    (b.clone(), r.clone(), index.clone(), child.digest.clone());
                tokio::spawn(async move {
                    b.put_manifest(&r, &index, &[], &[child], &[tag("multi")])
                        .await
                })
            }
        );
        let (taken, put) = (taken.unwrap(), put.unwrap());
        let child_there = a
            .manifest_by_digest(&r, &child.digest)
            .await
            .unwrap()
            .is_some();
        // Indexes may be sparse: the index is stored either way. Either the collector
        // decided first and took the child, or the index's reference came first and the
        // child stays — never a child taken while a committed index listed it, which a
        // second pass (the index now surely committed) confirms by taking nothing.
        put.unwrap_or_else(|e| panic!("round {round}: {e}"));
        if child_there {
            outcomes[2] += 1;
            assert!(taken.is_empty(), "round {round}: {taken:?}");
        } else {
            outcomes[3] += 1;
            assert_eq!(taken, [(r.clone(), child.digest.clone())]);
        }
        assert!(
            b.manifest_by_digest(&r, &index.digest)
                .await
                .unwrap()
                .is_some()
        );
        let again = a
            .gc_untagged_manifests(&[r.to_string()], &everything_so_far(), false)
            .await
            .unwrap();
        assert!(again.is_empty(), "round {round}: {again:?}");
    }
    eprintln!(
        "stale links against put_manifest {:?} (stored, refused), untagged against an index {:?} (child kept, child taken first)",
        &outcomes[..2],
        &outcomes[2..]
    );
}

/// Attempts counted at once on both instances each get a count of their own: `n` of them
/// give exactly 1..=n, whether they create the key's row, continue its window, or find it
/// ended and start the next; forgiving while others count loses nothing either.
pub async fn race_sign_in_attempts_count_once_each(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    const N: usize = 16;
    const WINDOW: i64 = 60;
    let t = unix_now();
    async fn count(
        key: &'static str,
        now: i64,
        a: &Arc<dyn MetaStore>,
        b: &Arc<dyn MetaStore>,
    ) -> Vec<SignInWindow> {
        together(N, a, b, move |_, store| async move {
            store
                .count_sign_in_attempt(key, now - WINDOW, now)
                .await
                .unwrap()
        })
        .await
    }
    let sorted = |windows: &[SignInWindow], from: u32, started_at: i64| {
        let mut attempts: Vec<u32> = windows.iter().map(|w| w.attempts).collect();
        attempts.sort_unstable();
        assert_eq!(attempts, (from..from + N as u32).collect::<Vec<_>>());
        assert!(
            windows.iter().all(|w| w.started_at == started_at),
            "{windows:?}"
        );
    };
    // A new key: one attempt creates the row, the others count on it.
    let first = count("user:racer", t, &a, &b).await;
    sorted(&first, 1, t);
    // The same window, on both instances.
    let more = count("user:racer", t + 1, &a, &b).await;
    sorted(&more, N as u32 + 1, t);
    // The window has ended: one attempt starts the next, the others count on it.
    let next = count("user:racer", t + WINDOW, &a, &b).await;
    sorted(&next, 1, t + WINDOW);
    // Forgiving races counting: every one of each is applied.
    let now = t + WINDOW + 1;
    let changes = together(2 * N, &a, &b, move |i, store| async move {
        if i % 2 == 0 {
            store
                .count_sign_in_attempt("user:racer", now - WINDOW, now)
                .await
                .unwrap();
            true
        } else {
            store
                .forgive_sign_in("user:racer", t + WINDOW)
                .await
                .unwrap()
        }
    })
    .await;
    assert!(changes.iter().all(|&changed| changed), "{changes:?}");
    let windows = a
        .sign_in_windows(&["user:racer"], now - WINDOW)
        .await
        .unwrap();
    assert_eq!(windows, vec![window(N as u32, t + WINDOW)]);
}

// ---------------------------------------------------------------- tag policies

fn floats_update(tags: &[&str]) -> TagUpdate {
    TagUpdate {
        tags: tags.iter().map(|t| tag(t)).collect(),
        semver_floats: true,
        actor: "alice".into(),
        ..TagUpdate::default()
    }
}

async fn tag_target(store: &dyn MetaStore, r: &RepoName, t: &str) -> Option<Digest> {
    store
        .manifest_by_tag(r, &tag(t))
        .await
        .unwrap()
        .map(|m| m.digest)
}

pub async fn semver_floats_move_only_forward(store: &dyn MetaStore) {
    let r = repo("gallery/ui");
    let m: Vec<ManifestRecord> = ["2.1.106", "2.2.31", "2.1.107", "2.3.0-rc.1", "2.0.5"]
        .iter()
        .map(|v| manifest(&format!("ui {v}"), None, None))
        .collect();
    let push = |i: usize, v: &'static str| {
        let m = m[i].clone();
        let r = r.clone();
        async move {
            store
                .put_manifest_with(&r, &m, &[], &[], &floats_update(&[v]))
                .await
                .unwrap()
        }
    };
    let moved = push(0, "2.1.106").await;
    let names: Vec<&str> = moved.iter().map(|m| m.tag.as_str()).collect();
    assert_eq!(names, ["2", "2.1", "2.1.106", "latest"], "in name order");
    assert!(
        moved
            .iter()
            .all(|mv| mv.from.is_none() && mv.to.as_ref() == Some(&m[0].digest))
    );
    for t in ["latest", "2", "2.1"] {
        assert_eq!(
            tag_target(store, &r, t).await,
            Some(m[0].digest.clone()),
            "{t}"
        );
    }
    push(1, "2.2.31").await;
    for (t, want) in [("latest", 1), ("2", 1), ("2.2", 1), ("2.1", 0)] {
        assert_eq!(
            tag_target(store, &r, t).await,
            Some(m[want].digest.clone()),
            "{t}"
        );
    }
    let moved = push(2, "2.1.107").await;
    let names: Vec<&str> = moved.iter().map(|m| m.tag.as_str()).collect();
    assert_eq!(names, ["2.1", "2.1.107"]);
    assert_eq!(moved[0].from, Some(m[0].digest.clone()));
    assert_eq!(moved[0].reason, TagMoveReason::Float);
    assert_eq!(moved[1].reason, TagMoveReason::Push);
    for (t, want) in [("latest", 1), ("2", 1), ("2.2", 1), ("2.1", 2)] {
        assert_eq!(
            tag_target(store, &r, t).await,
            Some(m[want].digest.clone()),
            "{t}"
        );
    }
    // A pre-release and an older line's release move no float but their own line's.
    let moved = push(3, "2.3.0-rc.1").await;
    assert_eq!(moved.len(), 1, "{moved:?}");
    let moved = push(4, "2.0.5").await;
    let names: Vec<&str> = moved.iter().map(|m| m.tag.as_str()).collect();
    assert_eq!(names, ["2.0", "2.0.5"]);
    assert_eq!(
        tag_target(store, &r, "latest").await,
        Some(m[1].digest.clone())
    );
    // Without the policy, a release is an ordinary tag.
    let plain = manifest("ui plain", None, None);
    store
        .put_manifest(&r, &plain, &[], &[], &[tag("9.9.9")])
        .await
        .unwrap();
    assert_eq!(
        tag_target(store, &r, "latest").await,
        Some(m[1].digest.clone())
    );
}

pub async fn immutable_tags_refuse_to_move(store: &dyn MetaStore) {
    let r = repo("gallery/frozen");
    let (a, b) = (
        manifest("frozen a", None, None),
        manifest("frozen b", None, None),
    );
    let update = |tags: &[&str]| TagUpdate {
        tags: tags.iter().map(|t| tag(t)).collect(),
        immutable: vec![tag("1.0.0")],
        actor: "bob".into(),
        ..TagUpdate::default()
    };
    store
        .put_manifest_with(&r, &a, &[], &[], &update(&["1.0.0", "stable"]))
        .await
        .unwrap();
    // The same manifest again: idempotent, nothing moves.
    let again = store
        .put_manifest_with(&r, &a, &[], &[], &update(&["1.0.0"]))
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    // Another manifest: refused as a whole, its other tag unmoved, nothing recorded.
    let refused = store
        .put_manifest_with(&r, &b, &[], &[], &update(&["stable", "1.0.0"]))
        .await
        .unwrap_err();
    assert!(matches!(refused, PutManifestError::TagImmutable(t) if t.as_str() == "1.0.0"));
    assert_eq!(tag_target(store, &r, "1.0.0").await, Some(a.digest.clone()));
    assert_eq!(
        tag_target(store, &r, "stable").await,
        Some(a.digest.clone())
    );
    assert_eq!(
        store.tag_history(&r, None, None, 100).await.unwrap().len(),
        2
    );
    // Tags not protected still move.
    store
        .put_manifest_with(&r, &b, &[], &[], &update(&["stable"]))
        .await
        .unwrap();
    assert_eq!(
        tag_target(store, &r, "stable").await,
        Some(b.digest.clone())
    );
    assert_eq!(store.manifest_tags(&r, &a.digest).await.unwrap(), ["1.0.0"]);
}

pub async fn tag_history_records_every_move(store: &dyn MetaStore) {
    let r = repo("gallery/hist");
    let (a, b) = (
        manifest("hist a", None, None),
        manifest("hist b", None, None),
    );
    let by = |actor: &str, tags: &[&str]| TagUpdate {
        tags: tags.iter().map(|t| tag(t)).collect(),
        actor: actor.into(),
        ..TagUpdate::default()
    };
    store
        .put_manifest_with(&r, &a, &[], &[], &by("alice", &["latest", "v1"]))
        .await
        .unwrap();
    store
        .put_manifest_with(&r, &b, &[], &[], &by("bob", &["latest"]))
        .await
        .unwrap();
    assert!(store.delete_tag(&r, &tag("v1"), "carol").await.unwrap());
    assert!(store.delete_manifest(&r, &b.digest, "dave").await.unwrap());
    let all = store.tag_history(&r, None, None, 100).await.unwrap();
    type Seen<'a> = (
        &'a str,
        Option<&'a Digest>,
        Option<&'a Digest>,
        TagMoveReason,
        &'a str,
    );
    let seen: Vec<Seen> = all
        .iter()
        .map(|m| {
            (
                m.tag.as_str(),
                m.from.as_ref(),
                m.to.as_ref(),
                m.reason,
                m.actor.as_str(),
            )
        })
        .collect();
    use TagMoveReason::*;
    assert_eq!(
        seen,
        [
            ("latest", Some(&b.digest), None, Delete, "dave"),
            ("v1", Some(&a.digest), None, Delete, "carol"),
            ("latest", Some(&a.digest), Some(&b.digest), Push, "bob"),
            ("v1", None, Some(&a.digest), Push, "alice"),
            ("latest", None, Some(&a.digest), Push, "alice"),
        ],
        "newest first"
    );
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    assert!(all.iter().all(|m| m.repository == r && m.at > 0));
    let latest = store
        .tag_history(&r, Some("latest"), None, 100)
        .await
        .unwrap();
    assert_eq!(latest.len(), 3);
    let page = store
        .tag_history(&r, None, Some(all[1].id), 2)
        .await
        .unwrap();
    assert_eq!(page, all[2..4].to_vec(), "a page before an id");
    assert!(
        store
            .tag_history(&repo("gallery/none"), None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn policies_set_and_removed_per_scope(store: &dyn MetaStore) {
    store
        .set_policy("gallery", "floating-tags", Some("semver"), "root")
        .await
        .unwrap();
    store
        .set_policy("gallery/ui", "immutable-tags", Some("*.*.*"), "alice")
        .await
        .unwrap();
    store
        .set_policy("gallery/ui", "floating-tags", Some("off"), "alice")
        .await
        .unwrap();
    store
        .set_policy("other", "floating-tags", Some("semver"), "root")
        .await
        .unwrap();
    let found = store.policies(&["gallery/ui", "gallery"]).await.unwrap();
    let seen: Vec<(&str, &str, &str, &str)> = found
        .iter()
        .map(|p| {
            (
                p.scope.as_str(),
                p.key.as_str(),
                p.value.as_str(),
                p.updated_by.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("gallery", "floating-tags", "semver", "root"),
            ("gallery/ui", "floating-tags", "off", "alice"),
            ("gallery/ui", "immutable-tags", "*.*.*", "alice"),
        ]
    );
    // Set again: replaced; removed: gone.
    store
        .set_policy("gallery", "floating-tags", Some("off"), "bob")
        .await
        .unwrap();
    store
        .set_policy("gallery/ui", "floating-tags", None, "bob")
        .await
        .unwrap();
    let found = store.policies(&["gallery", "gallery/ui"]).await.unwrap();
    let seen: Vec<(&str, &str, &str)> = found
        .iter()
        .map(|p| (p.scope.as_str(), p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("gallery", "floating-tags", "off"),
            ("gallery/ui", "immutable-tags", "*.*.*"),
        ]
    );
    assert!(store.policies(&["nobody"]).await.unwrap().is_empty());
}

pub async fn race_releases_leave_floats_at_the_highest(
    a: Arc<dyn MetaStore>,
    b: Arc<dyn MetaStore>,
) {
    let r = repo("gallery/racefloat");
    // Releases pushed all at once through two stores, in shuffled order: whatever
    // order they commit in, each float ends at the highest release of its line.
    let versions = [
        "1.0.0",
        "1.2.9",
        "1.10.0",
        "2.0.0",
        "2.0.3",
        "2.1.0",
        "2.1.7",
        "2.1.10",
        "3.0.0-rc.1",
        "0.9.9",
        "2.1.9",
        "1.10.1",
    ];
    let ms: Vec<ManifestRecord> = versions
        .iter()
        .map(|v| manifest(&format!("float race {v}"), None, None))
        .collect();
    let answers = together(versions.len(), &a, &b, |i, store| {
        let (r, m, v) = (r.clone(), ms[i].clone(), versions[i]);
        async move {
            store
                .put_manifest_with(&r, &m, &[], &[], &floats_update(&[v]))
                .await
        }
    })
    .await;
    for answer in answers {
        answer.unwrap();
    }
    let of = |v: &str| {
        ms[versions.iter().position(|x| *x == v).unwrap()]
            .digest
            .clone()
    };
    for (float, want) in [
        ("latest", "2.1.10"),
        ("2", "2.1.10"),
        ("2.1", "2.1.10"),
        ("2.0", "2.0.3"),
        ("1", "1.10.1"),
        ("1.10", "1.10.1"),
        ("1.2", "1.2.9"),
        ("1.0", "1.0.0"),
        ("0", "0.9.9"),
    ] {
        assert_eq!(tag_target(&*a, &r, float).await, Some(of(want)), "{float}");
    }
    assert_eq!(
        tag_target(&*a, &r, "3").await,
        None,
        "a pre-release moves nothing"
    );
}

pub async fn race_new_immutable_tag_has_one_winner(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    let r = repo("gallery/raceimmutable");
    let ms: Vec<ManifestRecord> = (0..8)
        .map(|i| manifest(&format!("immutable race {i}"), None, None))
        .collect();
    let answers = together(8, &a, &b, |i, store| {
        let (r, m) = (r.clone(), ms[i].clone());
        async move {
            let update = TagUpdate {
                tags: vec![tag("1.0.0")],
                immutable: vec![tag("1.0.0")],
                actor: format!("pusher-{i}"),
                ..TagUpdate::default()
            };
            store.put_manifest_with(&r, &m, &[], &[], &update).await
        }
    })
    .await;
    let winners: Vec<usize> = answers
        .iter()
        .enumerate()
        .filter(|(_, a)| a.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    for answer in &answers {
        if let Err(e) = answer {
            assert!(matches!(e, PutManifestError::TagImmutable(_)), "{e:?}");
        }
    }
    assert_eq!(
        tag_target(&*a, &r, "1.0.0").await,
        Some(ms[winners[0]].digest.clone())
    );
    let history = b.tag_history(&r, Some("1.0.0"), None, 100).await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].actor, format!("pusher-{}", winners[0]));
}

pub async fn golden_images_marks_and_warnings(store: &dyn MetaStore) {
    let base = repo("gallery/base");
    assert!(store.add_golden(&base, None, "root").await.unwrap());
    assert!(
        !store.add_golden(&base, None, "root").await.unwrap(),
        "once"
    );
    assert!(store.add_golden(&base, Some("2.*"), "alice").await.unwrap());
    assert!(
        store
            .add_golden(&repo("company/jdk"), Some("17*"), "bob")
            .await
            .unwrap()
    );
    let listed: Vec<(String, Option<String>, String)> = store
        .golden_images()
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.repository.to_string(), g.tags, g.added_by))
        .collect();
    assert_eq!(
        listed,
        [
            ("company/jdk".into(), Some("17*".into()), "bob".into()),
            ("gallery/base".into(), None, "root".into()),
            ("gallery/base".into(), Some("2.*".into()), "alice".into()),
        ]
    );
    assert!(store.remove_golden(&base, None).await.unwrap());
    assert!(!store.remove_golden(&base, None).await.unwrap());
    assert_eq!(store.golden_images().await.unwrap().len(), 2);

    store
        .set_namespace_mark("acme", Some("verified"))
        .await
        .unwrap();
    store
        .set_namespace_mark("tools", Some("verified"))
        .await
        .unwrap();
    store
        .set_namespace_mark("tools", Some("official"))
        .await
        .unwrap();
    store.set_namespace_mark("acme", None).await.unwrap();
    assert_eq!(
        store.namespace_marks().await.unwrap(),
        [("tools".to_owned(), "official".to_owned())]
    );

    let r = repo("gallery/app");
    let (d1, d2) = (digest("warned 1"), digest("warned 2"));
    store
        .record_push_warning(&r, &d1, "first", "alice")
        .await
        .unwrap();
    store
        .record_push_warning(&r, &d2, "second", "bob")
        .await
        .unwrap();
    let warnings = store.push_warnings(&r, 10).await.unwrap();
    let seen: Vec<(&Digest, &str, &str)> = warnings
        .iter()
        .map(|w| (&w.digest, w.message.as_str(), w.actor.as_str()))
        .collect();
    assert_eq!(seen, [(&d2, "second", "bob"), (&d1, "first", "alice")]);
    assert_eq!(store.push_warnings(&r, 1).await.unwrap().len(), 1);
    assert!(
        store
            .push_warnings(&repo("gallery/none"), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Pushes one tagged manifest to `r` as `actor`.
async fn push_tagged(store: &dyn MetaStore, r: &RepoName, seed: &str, tag_name: &str, actor: &str) {
    let m = manifest(seed, None, None);
    let update = TagUpdate::plain(&[tag(tag_name)], actor);
    store
        .put_manifest_with(r, &m, &[], &[], &update)
        .await
        .unwrap();
}

fn card_names(cards: &[crate::RepositoryCard]) -> Vec<String> {
    cards.iter().map(|c| c.name.to_string()).collect()
}

pub async fn search_matches_names_and_descriptions_for_the_viewer(store: &dyn MetaStore) {
    store
        .create_user(&account("erin"), "h", false)
        .await
        .unwrap();
    for name in [
        "gallery/ui",
        "gallery/api",
        "tools/gallery-cli",
        "erin/notes",
    ] {
        push_tagged(store, &repo(name), name, "1", "erin").await;
    }
    store
        .set_repository_visibility(&repo("erin/notes"), false)
        .await
        .unwrap();
    assert!(
        store
            .set_repository_description(&repo("erin/notes"), "Private GALLERY sketches")
            .await
            .unwrap()
    );
    assert!(
        store
            .set_repository_description(&repo("tools/gallery-cli"), "50% off_the\\shelf")
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_repository_description(&repo("nobody/here"), "x")
            .await
            .unwrap(),
        "no repository, nothing described"
    );
    let search = |text: &'static str, viewer: Viewer<'static>| async move {
        store
            .search_repositories(&crate::SearchQuery {
                text,
                viewer,
                namespaces: None,
                repositories: None,
                offset: 0,
                limit: 10,
            })
            .await
            .unwrap()
    };
    // Any part of a name matches, ignoring case; name matches come before description
    // matches, each in name order.
    let found = search("GALLERY", Viewer::All).await;
    assert_eq!(
        card_names(&found.repositories),
        [
            "gallery/api",
            "gallery/ui",
            "tools/gallery-cli",
            "erin/notes"
        ]
    );
    assert_eq!((found.total, found.capped), (4, false));
    // Private ones only for who may read them.
    let anonymous = search("gallery", Viewer::Anonymous).await;
    assert_eq!(anonymous.total, 3);
    assert!(!card_names(&anonymous.repositories).contains(&"erin/notes".to_owned()));
    let erin = search("sketch", Viewer::User("erin")).await;
    assert_eq!(card_names(&erin.repositories), ["erin/notes"]);
    assert!(!erin.repositories[0].public);
    assert_eq!(search("sketch", Viewer::User("frank")).await.total, 0);
    // Short terms match (at least) the start of a word; wildcards are text, not patterns.
    assert_eq!(
        card_names(&search("ui", Viewer::All).await.repositories),
        ["gallery/ui"]
    );
    assert_eq!(
        card_names(&search("5", Viewer::All).await.repositories),
        ["tools/gallery-cli"]
    );
    assert_eq!(search("%", Viewer::All).await.total, 1, "50%");
    assert_eq!(search("f_t", Viewer::All).await.total, 1, "off_the");
    assert_eq!(search("o%f", Viewer::All).await.total, 0);
    assert_eq!(search("\"", Viewer::All).await.total, 0);
    // Filters, and pages.
    let only_tools = vec!["tools".to_owned()];
    let filtered = store
        .search_repositories(&crate::SearchQuery {
            text: "gallery",
            viewer: Viewer::All,
            namespaces: Some(&only_tools),
            repositories: None,
            offset: 0,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(card_names(&filtered.repositories), ["tools/gallery-cli"]);
    let just_ui = vec!["gallery/ui".to_owned()];
    let filtered = store
        .search_repositories(&crate::SearchQuery {
            text: "gallery",
            viewer: Viewer::All,
            namespaces: None,
            repositories: Some(&just_ui),
            offset: 0,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(card_names(&filtered.repositories), ["gallery/ui"]);
    let second = store
        .search_repositories(&crate::SearchQuery {
            text: "gallery",
            viewer: Viewer::All,
            namespaces: None,
            repositories: None,
            offset: 1,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(
        card_names(&second.repositories),
        ["gallery/ui", "tools/gallery-cli"]
    );
    let past = store
        .search_repositories(&crate::SearchQuery {
            text: "gallery",
            viewer: Viewer::All,
            namespaces: None,
            repositories: None,
            offset: 50,
            limit: 2,
        })
        .await
        .unwrap();
    assert!(past.repositories.is_empty());
    assert_eq!(past.total, 4, "the count holds past the last page");
    // A rename of the description is searched at once; the old words no longer match.
    store
        .set_repository_description(&repo("erin/notes"), "plans")
        .await
        .unwrap();
    assert_eq!(search("sketch", Viewer::All).await.total, 0);
    assert_eq!(search("plans", Viewer::All).await.total, 1);
}

pub async fn recent_repositories_and_tag_rows(store: &dyn MetaStore) {
    store
        .create_user(&account("gina"), "h", false)
        .await
        .unwrap();
    push_tagged(store, &repo("gina/old"), "old", "1", "gina").await;
    push_tagged(store, &repo("library/redis"), "redis", "7", "root").await;
    store
        .set_repository_visibility(&repo("gina/secret"), false)
        .await
        .unwrap();
    // Never pushed: only on its namespace's page.
    store
        .set_repository_visibility(&repo("gina/empty"), true)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    push_tagged(store, &repo("gina/secret"), "secret", "1", "gina").await;
    push_tagged(store, &repo("gina/new"), "new", "2.0", "gina").await;

    let recent = |viewer, scope| async move {
        card_names(
            &store
                .recent_repositories(viewer, scope, 0, 10)
                .await
                .unwrap(),
        )
    };
    use crate::RecentScope;
    let anonymous = recent(Viewer::Anonymous, RecentScope::Pushed).await;
    assert_eq!(anonymous[0], "gina/new", "{anonymous:?}");
    assert!(!anonymous.contains(&"gina/secret".to_owned()));
    assert!(!anonymous.contains(&"gina/empty".to_owned()));
    assert_eq!(
        recent(Viewer::User("gina"), RecentScope::Pushed).await[..2],
        ["gina/new".to_owned(), "gina/secret".to_owned()]
    );
    let library = vec!["library".to_owned()];
    assert_eq!(
        recent(Viewer::Anonymous, RecentScope::Within(&library)).await,
        ["library/redis"]
    );
    let others = recent(Viewer::Anonymous, RecentScope::Outside(&library)).await;
    assert!(!others.contains(&"library/redis".to_owned()));
    assert!(others.contains(&"gina/old".to_owned()));
    assert_eq!(
        recent(Viewer::Anonymous, RecentScope::Namespace("gina")).await,
        ["gina/new", "gina/old", "gina/empty"]
    );
    assert_eq!(
        recent(Viewer::User("gina"), RecentScope::Namespace("gina"))
            .await
            .len(),
        4
    );
    let second = store
        .recent_repositories(Viewer::Anonymous, RecentScope::Namespace("gina"), 1, 1)
        .await
        .unwrap();
    assert_eq!(card_names(&second), ["gina/old"]);

    let card = store
        .repository_card(&repo("library/redis"))
        .await
        .unwrap()
        .unwrap();
    assert!(card.public && card.pushed_at.is_some());
    let empty = store
        .repository_card(&repo("gina/empty"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(empty.pushed_at, None);
    assert!(
        store
            .repository_card(&repo("gina/none"))
            .await
            .unwrap()
            .is_none()
    );

    // Tags, newest first, with who moved them there.
    let r = repo("gina/new");
    push_tagged(store, &r, "new", "latest", "hal").await;
    let rows = store.tag_rows(&r, 10).await.unwrap();
    let seen: Vec<(&str, Option<&str>)> = rows
        .iter()
        .map(|t| (t.name.as_str(), t.pushed_by.as_deref()))
        .collect();
    assert_eq!(seen.len(), 2);
    assert!(seen.contains(&("2.0", Some("gina"))) && seen.contains(&("latest", Some("hal"))));
    let m = manifest("new", None, None);
    assert_eq!(rows[0].digest, m.digest.to_string());
    assert_eq!(rows[0].media_type, m.media_type);
    assert_eq!(store.tag_rows(&r, 1).await.unwrap().len(), 1);
    assert!(
        store
            .tag_rows(&repo("gina/none"), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn mirrored_manifests_may_reference_what_is_not_here_yet(store: &dyn MetaStore) {
    let r = repo("hub/library/alpine");
    let m = manifest("mirrored", None, None);
    let (later_blob, later_child) = (digest("arrives later"), digest("child later"));
    let mirrored = TagUpdate {
        mirrored: true,
        ..TagUpdate::plain(&[tag("3")], "mirror")
    };
    store
        .put_manifest_with(
            &r,
            &m,
            std::slice::from_ref(&later_blob),
            &[later_child],
            &mirrored,
        )
        .await
        .unwrap();
    let found = store.manifest_by_tag(&r, &tag("3")).await.unwrap().unwrap();
    assert_eq!(found.digest, m.digest);
    // A push (not a mirror's copy) still needs its references.
    let pushed = store
        .put_manifest_with(
            &r,
            &manifest("pushed", None, None),
            &[later_blob],
            &[],
            &TagUpdate::plain(&[tag("4")], "alice"),
        )
        .await;
    assert!(
        matches!(pushed, Err(PutManifestError::MissingBlob(_))),
        "{pushed:?}"
    );
}

pub async fn mirror_cache_usage_eviction_order_and_pins(store: &dyn MetaStore) {
    let r = repo("up/app");
    let (b1, b2) = (digest("cached one"), digest("cached two"));
    store.link_blob(&r, &b1, 100).await.unwrap();
    store.link_blob(&r, &b2, 200).await.unwrap();
    let (m1, m2, idx) = (
        manifest("cached m1", None, None),
        manifest("cached m2", None, None),
        manifest("cached index", None, None),
    );
    let put = |m: &ManifestRecord, blobs: Vec<Digest>, children: Vec<Digest>, tags: Vec<Tag>| {
        let (r, m) = (r.clone(), m.clone());
        async move {
            let update = TagUpdate {
                mirrored: true,
                ..TagUpdate::plain(&tags, "mirror:up")
            };
            store
                .put_manifest_with(&r, &m, &blobs, &children, &update)
                .await
                .unwrap();
        }
    };
    put(&m1, vec![b1.clone()], vec![], vec![tag("1")]).await;
    put(&m2, vec![b2.clone()], vec![], vec![]).await;
    put(&idx, vec![], vec![m2.digest.clone()], vec![tag("2")]).await;
    // A local image shares b1; a prefix is a whole component ("u" is not "up").
    let local = repo("local/x");
    store.link_blob(&local, &b1, 100).await.unwrap();
    store
        .put_manifest(
            &local,
            &manifest("local", None, None),
            std::slice::from_ref(&b1),
            &[],
            &[tag("1")],
        )
        .await
        .unwrap();
    let bodies = (m1.body.len() + m2.body.len() + idx.body.len()) as u64;
    assert_eq!(store.mirror_usage("up").await.unwrap(), 300 + bodies);
    assert_eq!(store.mirror_usage("u").await.unwrap(), 0);

    for (m, at) in [(&m1, 1000), (&m2, 3000), (&idx, 2000)] {
        store.record_pull(&r, &m.digest, at).await.unwrap();
    }
    let order = |limit| async move {
        store
            .eviction_candidates("up", limit)
            .await
            .unwrap()
            .into_iter()
            .map(|(repository, d)| {
                assert_eq!(repository.as_str(), "up/app");
                d
            })
            .collect::<Vec<Digest>>()
    };
    assert_eq!(
        order(10).await,
        [m1.digest.clone(), idx.digest.clone(), m2.digest.clone()]
    );
    assert_eq!(order(1).await, std::slice::from_ref(&m1.digest));
    // Pulled again within a minute: not rewritten; later: last.
    store.record_pull(&r, &m1.digest, 1030).await.unwrap();
    assert_eq!(order(1).await, std::slice::from_ref(&m1.digest));
    store.record_pull(&r, &m1.digest, 5000).await.unwrap();
    assert_eq!(order(10).await.last(), Some(&m1.digest));

    // Pins: a tag keeps its index and the index's children; a digest keeps itself.
    assert!(store.pin(&r, "2", "root").await.unwrap());
    assert!(!store.pin(&r, "2", "root").await.unwrap(), "once");
    assert_eq!(order(10).await, std::slice::from_ref(&m1.digest));
    assert!(
        store
            .pin(&r, &m1.digest.to_string(), "alice")
            .await
            .unwrap()
    );
    assert!(order(10).await.is_empty());
    let pins: Vec<(String, String)> = store
        .pins()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.reference, p.pinned_by))
        .collect();
    assert_eq!(
        pins,
        [
            ("2".to_owned(), "root".to_owned()),
            (m1.digest.to_string(), "alice".to_owned())
        ]
    );
    assert!(store.unpin(&r, "2").await.unwrap());
    assert!(!store.unpin(&r, "2").await.unwrap());
    assert_eq!(order(10).await, [idx.digest.clone(), m2.digest.clone()]);
    // What an eviction does: the manifest goes, and the prefix holds less.
    assert!(
        store
            .delete_manifest(&r, &m2.digest, "eviction")
            .await
            .unwrap()
    );
    assert_eq!(
        store.mirror_usage("up").await.unwrap(),
        100 + (m1.body.len() + idx.body.len()) as u64
    );
}

pub async fn request_windows_count_until_they_end(store: &dyn MetaStore) {
    let t = 1_000_000;
    assert_eq!(store.request_window("pull:a", t).await.unwrap(), None);
    for n in 1..=3 {
        let w = store.count_request("pull:a", 60, t + n).await.unwrap();
        assert_eq!(
            w,
            RequestWindow {
                count: n as u32,
                ends_at: t + 61
            },
            "the window of the first"
        );
    }
    assert_eq!(
        store.count_request("pull:b", 600, t).await.unwrap(),
        RequestWindow {
            count: 1,
            ends_at: t + 600
        },
        "keys count apart"
    );
    assert_eq!(
        store.request_window("pull:a", t + 60).await.unwrap(),
        Some(RequestWindow {
            count: 3,
            ends_at: t + 61
        })
    );
    assert_eq!(
        store.request_window("pull:a", t + 61).await.unwrap(),
        None,
        "ended"
    );
    // Counting after the end starts the next window.
    assert_eq!(
        store.count_request("pull:a", 60, t + 70).await.unwrap(),
        RequestWindow {
            count: 1,
            ends_at: t + 130
        }
    );
    assert_eq!(store.sweep_request_windows(t + 130).await.unwrap(), 1);
    assert_eq!(
        store
            .request_window("pull:b", t + 1)
            .await
            .unwrap()
            .map(|w| w.count),
        Some(1)
    );
    assert_eq!(store.sweep_request_windows(t + 600).await.unwrap(), 1);
    assert_eq!(store.request_window("pull:b", t + 1).await.unwrap(), None);
}

/// Requests counted at once on both instances each get a count of their own: 1..=n.
pub async fn race_requests_count_once_each(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    const N: usize = 16;
    let now = unix_now();
    let mut counts: Vec<u32> = together(N, &a, &b, move |_, store| async move {
        store
            .count_request("pull:race", 3600, now)
            .await
            .unwrap()
            .count
    })
    .await;
    counts.sort_unstable();
    assert_eq!(counts, (1..=N as u32).collect::<Vec<_>>());
}

pub async fn audit_log_filters_pages_and_prunes(store: &dyn MetaStore) {
    let event = |at: i64, actor: &str, action: &str, target: Option<&str>| AuditEvent {
        at,
        actor: actor.into(),
        client: "192.0.2.7".into(),
        action: action.into(),
        target: target.map(str::to_owned),
        detail: format!("{{\"n\":{at}}}"),
    };
    let events = [
        event(100, "alice", "sign-in", None),
        event(200, "alice", "push", Some("gallery/ui")),
        event(300, "bob", "push", Some("gallery/api")),
        event(400, "bob", "delete", Some("galleryx/ui")),
        event(500, "admin", "settings", Some("gallery")),
    ];
    store.record_audit(&events[..1]).await.unwrap();
    store.record_audit(&events[1..]).await.unwrap();
    store.record_audit(&[]).await.unwrap();
    let list = |query: AuditQuery| async move {
        store
            .audit_events(&query)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event.at)
            .collect::<Vec<_>>()
    };
    let all = AuditQuery {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        list(all.clone()).await,
        [500, 400, 300, 200, 100],
        "newest first"
    );
    let entries = store.audit_events(&all).await.unwrap();
    assert_eq!(entries[4].event, events[0], "stored as given");
    assert_eq!(
        list(AuditQuery {
            actor: Some("bob".into()),
            ..all.clone()
        })
        .await,
        [400, 300]
    );
    assert_eq!(
        list(AuditQuery {
            target: Some("gallery".into()),
            ..all.clone()
        })
        .await,
        [500, 300, 200],
        "a namespace takes its repositories, not a lookalike"
    );
    assert_eq!(
        list(AuditQuery {
            target: Some("gallery/ui".into()),
            ..all.clone()
        })
        .await,
        [200]
    );
    assert_eq!(
        list(AuditQuery {
            since: Some(300),
            ..all.clone()
        })
        .await,
        [500, 400, 300]
    );
    let first = list(AuditQuery {
        limit: 2,
        ..all.clone()
    })
    .await;
    assert_eq!(first, [500, 400]);
    let before = entries[1].id;
    assert_eq!(
        list(AuditQuery {
            before_id: Some(before),
            limit: 2,
            ..all.clone()
        })
        .await,
        [300, 200],
        "the next page"
    );
    assert_eq!(store.prune_audit(300).await.unwrap(), 2);
    assert_eq!(list(all).await, [500, 400, 300]);
}

fn a_webhook(id: &str, scope: &str) -> crate::Webhook {
    crate::Webhook {
        id: id.into(),
        scope: scope.into(),
        url: format!("http://hooks.example/{id}"),
        events: vec!["push".into(), "delete".into()],
        secret: Some("s3cret".into()),
        format: "docker-hub".into(),
        created_by: "alice".into(),
        created_at: 1000,
    }
}

pub async fn webhook_deliveries_are_claimed_retried_and_kept(store: &dyn MetaStore) {
    let (one, two) = (a_webhook("h1", "gallery"), a_webhook("h2", "gallery/ui"));
    store.add_webhook(&two).await.unwrap();
    store.add_webhook(&one).await.unwrap();
    assert_eq!(store.webhooks().await.unwrap(), [one.clone(), two.clone()]);
    let t = 10_000;
    let a = store
        .enqueue_delivery("h1", "push", "{\"a\":1}", t)
        .await
        .unwrap();
    let b = store
        .enqueue_delivery("h2", "delete", "{\"b\":2}", t)
        .await
        .unwrap();
    assert!(b > a);
    let claimed = store.claim_deliveries(t, 60, 10).await.unwrap();
    let ids: Vec<i64> = claimed.iter().map(|d| d.id).collect();
    assert_eq!(ids, [a, b]);
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(claimed[0].payload, "{\"a\":1}");
    assert!(
        store
            .claim_deliveries(t + 59, 60, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    // The lease ran out (a node died mid-attempt): claimed again.
    let again = store.claim_deliveries(t + 60, 60, 1).await.unwrap();
    assert_eq!((again[0].id, again[0].attempts), (a, 2));
    let outcome = |state: &str, status, error: Option<&str>, next| AttemptOutcome {
        state: state.into(),
        status,
        error: error.map(str::to_owned),
        next_attempt_at: next,
        now: t + 61,
    };
    store
        .finish_attempt(a, &outcome("delivered", Some(204), None, t + 61))
        .await
        .unwrap();
    store
        .finish_attempt(
            b,
            &outcome("pending", Some(503), Some("receiver said 503"), t + 200),
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_deliveries(t + 199, 60, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retried = store.claim_deliveries(t + 200, 60, 10).await.unwrap();
    assert_eq!(
        (retried.len(), retried[0].id, retried[0].attempts),
        (1, b, 2)
    );
    let history = store.deliveries("h1", 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (
            history[0].state.as_str(),
            history[0].last_status,
            history[0].finished_at
        ),
        ("delivered", Some(204), Some(t + 61))
    );
    let history = store.deliveries("h2", 10).await.unwrap();
    assert_eq!(history[0].last_error.as_deref(), Some("receiver said 503"));
    assert!(store.remove_webhook("h2").await.unwrap());
    assert!(!store.remove_webhook("h2").await.unwrap());
    assert!(store.deliveries("h2", 10).await.unwrap().is_empty());
    assert_eq!(store.webhooks().await.unwrap(), [one]);
}

/// Nodes claiming at once never claim the same delivery.
pub async fn race_delivery_claims_are_disjoint(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    a.add_webhook(&a_webhook("race", "ns")).await.unwrap();
    let now = unix_now();
    for i in 0..40 {
        a.enqueue_delivery("race", "push", &format!("{{\"i\":{i}}}"), now)
            .await
            .unwrap();
    }
    let claims: Vec<Vec<i64>> = together(8, &a, &b, move |_, store| async move {
        store
            .claim_deliveries(now, 600, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect()
    })
    .await;
    let mut all: Vec<i64> = claims.into_iter().flatten().collect();
    let claimed = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), claimed, "a delivery was claimed twice");
    assert_eq!(claimed, 40, "every due delivery was claimed once");
}

pub async fn tag_ages_pulls_and_retention_scopes(store: &dyn MetaStore) {
    let r = repo("keep/app");
    let (m1, m2) = (manifest("age 1", None, None), manifest("age 2", None, None));
    store
        .put_manifest(&r, &m1, &[], &[], &[tag("a")])
        .await
        .unwrap();
    store
        .put_manifest(&r, &m2, &[], &[], &[tag("b")])
        .await
        .unwrap();
    store.record_tag_pull(&r, "a", 5000).await.unwrap();
    store.record_tag_pull(&r, "a", 5030).await.unwrap();
    let ages = store.tag_ages(&r).await.unwrap();
    assert_eq!(ages.len(), 2);
    assert_eq!(
        (ages[0].name.as_str(), ages[0].pulled_at),
        ("a", Some(5000)),
        "kept to the minute"
    );
    assert_eq!(ages[0].digest, m1.digest.to_string());
    assert_eq!(ages[1].pulled_at, None);
    assert!(ages[1].order > ages[0].order, "b moved after a");
    store.record_tag_pull(&r, "a", 5100).await.unwrap();
    assert_eq!(store.tag_ages(&r).await.unwrap()[0].pulled_at, Some(5100));
    store
        .record_tag_pull(&r, "no-such-tag", 5100)
        .await
        .unwrap();

    store
        .set_policy("keep", "retention", Some("keep-last=3"), "t")
        .await
        .unwrap();
    store
        .set_policy("keep/app", "retention", Some("keep-last=1"), "t")
        .await
        .unwrap();
    store
        .set_policy("keep", "floating-tags", Some("semver"), "t")
        .await
        .unwrap();
    assert_eq!(
        store.policy_scopes("retention").await.unwrap(),
        [
            ("keep".to_owned(), "keep-last=3".to_owned()),
            ("keep/app".to_owned(), "keep-last=1".to_owned())
        ]
    );
    store
        .put_manifest(&repo("keep/b"), &m1, &[], &[], &[])
        .await
        .unwrap();
    store
        .put_manifest(&repo("keepx/c"), &m1, &[], &[], &[])
        .await
        .unwrap();
    assert_eq!(
        store.repositories_in("keep").await.unwrap(),
        [repo("keep/app"), repo("keep/b")]
    );
    assert_eq!(
        store.repositories_in("keep/b").await.unwrap(),
        [repo("keep/b")]
    );
}

pub async fn scans_are_kept_per_image_digest(store: &dyn MetaStore) {
    let r = repo("gallery/ui");
    push_tagged(store, &r, "scanned", "1.0", "alice").await;
    let image = manifest("scanned", None, None).digest;
    assert_eq!(store.image_scan(&image).await.unwrap(), None);
    let mut scan = crate::ImageScan {
        digest: image.clone(),
        scanned_at: 100,
        matched_at: 100,
        inventory: "{\"packages\":[]}".into(),
        findings: "[]".into(),
        worst: None,
    };
    store.save_scan(&scan).await.unwrap();
    assert_eq!(
        store.image_scan(&image).await.unwrap().as_ref(),
        Some(&scan)
    );
    // Matching again replaces the findings.
    scan.findings = "[{\"id\":\"DSA-1\"}]".into();
    scan.worst = Some("high".into());
    scan.matched_at = 200;
    store.save_scan(&scan).await.unwrap();
    assert_eq!(
        store.image_scan(&image).await.unwrap().as_ref(),
        Some(&scan)
    );
    let other = crate::ImageScan {
        digest: digest("other"),
        ..scan.clone()
    };
    store.save_scan(&other).await.unwrap();
    let all = store.image_scans(None, 10).await.unwrap();
    let mut want = vec![scan.digest.clone(), other.digest.clone()];
    want.sort_by_key(|d| d.to_string());
    assert_eq!(
        all.iter().map(|s| s.digest.clone()).collect::<Vec<_>>(),
        want
    );
    let rest = store.image_scans(Some(&want[0]), 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].digest, want[1]);
    // Where the image is: its repository and tags.
    assert_eq!(
        store.image_locations(&image).await.unwrap(),
        vec![(r.clone(), vec!["1.0".to_owned()])]
    );
    assert!(
        store
            .image_locations(&digest("other"))
            .await
            .unwrap()
            .is_empty()
    );
}

fn an_advisory(id: &str, modified: &str, packages: &[(&str, &str)]) -> crate::AdvisoryRecord {
    crate::AdvisoryRecord {
        id: id.into(),
        modified: modified.into(),
        body: format!("{{\"id\":\"{id}\",\"modified\":\"{modified}\"}}"),
        packages: packages
            .iter()
            .map(|(e, n)| ((*e).to_owned(), (*n).to_owned()))
            .collect(),
        withdrawn: false,
    }
}

pub async fn advisories_import_by_modified_and_look_up_by_package(store: &dyn MetaStore) {
    let first = vec![
        an_advisory("DSA-1", "2024-01-01T00:00:00Z", &[("Debian:12", "openssl")]),
        an_advisory("DSA-2", "2024-01-01T00:00:00Z", &[("Debian:11", "openssl")]),
        an_advisory(
            "GHSA-1",
            "2024-02-01T00:00:00Z",
            &[("npm", "left-pad"), ("PyPI", "left-pad")],
        ),
    ];
    let counts = store.import_advisories(&first).await.unwrap();
    assert_eq!((counts.added, counts.updated, counts.unchanged), (3, 0, 0));
    let keys = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(e, n)| ((*e).to_owned(), (*n).to_owned()))
            .collect()
    };
    let bodies = store
        .advisories_for(&keys(&[("Debian:12", "openssl"), ("npm", "left-pad")]))
        .await
        .unwrap();
    assert_eq!(bodies, [first[0].body.clone(), first[2].body.clone()]);
    // The same again changes nothing; a newer one replaces it and its packages.
    let mut again = first.clone();
    again[0] = an_advisory(
        "DSA-1",
        "2024-03-01T00:00:00Z",
        &[("Debian:12", "openssl3")],
    );
    again[1].withdrawn = true;
    let counts = store.import_advisories(&again).await.unwrap();
    assert_eq!(
        (
            counts.added,
            counts.updated,
            counts.removed,
            counts.unchanged
        ),
        (0, 1, 1, 1)
    );
    assert!(
        store
            .advisories_for(&keys(&[("Debian:12", "openssl"), ("Debian:11", "openssl")]))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .advisories_for(&keys(&[("Debian:12", "openssl3")]))
            .await
            .unwrap(),
        [again[0].body.clone()]
    );
    // Many keys at once (more than one query's worth).
    let many: Vec<(String, String)> = (0..1000)
        .map(|i| ("npm".to_owned(), format!("pkg-{i}")))
        .chain([("npm".to_owned(), "left-pad".to_owned())])
        .collect();
    assert_eq!(store.advisories_for(&many).await.unwrap().len(), 1);
    let page = store.advisories(None, 1).await.unwrap();
    assert_eq!(page[0].0, "DSA-1");
    let page = store.advisories(Some("DSA-1"), 10).await.unwrap();
    assert_eq!(
        page.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
        ["GHSA-1"]
    );
    store
        .record_vulndb_import("osv/", counts, 1234)
        .await
        .unwrap();
    let status = store.vulndb_status().await.unwrap();
    assert_eq!(status.advisories, 2);
    assert_eq!(
        status.newest_modified.as_deref(),
        Some("2024-03-01T00:00:00Z")
    );
    assert_eq!(
        status.ecosystems,
        vec![
            ("Debian:12".to_owned(), 1),
            ("PyPI".to_owned(), 1),
            ("npm".to_owned(), 1)
        ]
    );
    assert_eq!(status.last_import, Some(("osv/".to_owned(), 1234, counts)));
}
