//! Tests against a real PostgreSQL server, named by `BERTH_TEST_POSTGRES` (a URL whose
//! role may create databases; `scripts/test.sh` starts one and sets it). Each test makes
//! a scratch database of its own and drops it at the end.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use sqlx::{Connection, Executor, PgConnection};

use super::*;
use crate::testsuite::Scratch;

const ENV: &str = "BERTH_TEST_POSTGRES";
/// Scratch databases are named `berth_t_<unix seconds>_<random>`.
const PREFIX: &str = "berth_t_";
/// Scratch databases older than this are left over from runs that did not finish.
const STALE_AFTER_SECS: i64 = 3600;

/// Scratch databases in use at once in this process. A race test may hold two pools of
/// 16 connections; the server's `max_connections` is 100 by default, which as many tests
/// at once as a many-core machine runs would exceed.
static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

pub(crate) struct PgScratch {
    admin_url: String,
    name: String,
    url: String,
    _slot: tokio::sync::SemaphorePermit<'static>,
}

fn admin_url() -> String {
    match std::env::var(ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{ENV} is not set: the PostgreSQL tests need a server. Run scripts/test.sh \
             (it starts one), or run scripts/start-postgres.sh and set {ENV} to the URL it \
             prints (such as postgres://berth:berth@127.0.0.1:5432/berth; the role must \
             have CREATEDB)"
        ),
    }
}

async fn admin_connection(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap_or_else(|e| {
        panic!("connecting to {ENV}: {e} (is the server running? scripts/start-postgres.sh)")
    })
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

fn unix_now() -> i64 {
    now()
}

/// Drops scratch databases that runs which did not finish left behind.
async fn drop_stale(admin: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(PREFIX)
            .fetch_all(&mut *admin)
            .await
            .unwrap();
    for name in names {
        let made: Option<i64> = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse().ok());
        if made.is_some_and(|made| unix_now() - made > STALE_AFTER_SECS) {
            // Another test may be dropping it too: whoever is second has nothing to do.
            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            let _ = admin.execute(sqlx::AssertSqlSafe(sql)).await;
        }
    }
}

pub(crate) async fn scratch() -> PgScratch {
    let admin_url = admin_url();
    let slot = SLOTS.acquire().await.unwrap();
    let mut admin = admin_connection(&admin_url).await;
    drop_stale(&mut admin).await;
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let name = format!("{PREFIX}{}_{:016x}", unix_now(), random);
    // A collation that does not sort byte by byte (ICU English, where PostgreSQL has
    // ICU), so that a listing relying on the database's collation shows in the tests.
    let icu = format!(
        "CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
    );
    if admin.execute(sqlx::AssertSqlSafe(icu)).await.is_err() {
        let plain = format!("CREATE DATABASE \"{name}\"");
        admin
            .execute(sqlx::AssertSqlSafe(plain))
            .await
            .unwrap_or_else(|e| {
                panic!("creating a scratch database (does the role of {ENV} have CREATEDB?): {e}")
            });
    }
    let _ = admin.close().await;
    let url = with_database(&admin_url, &name);
    PgScratch {
        admin_url,
        name,
        url,
        _slot: slot,
    }
}

#[async_trait]
impl Scratch for PgScratch {
    async fn open(&self) -> Arc<dyn MetaStore> {
        Arc::new(PgMetaStore::open(&self.url).await.unwrap())
    }

    async fn remove(self) {
        let mut admin = admin_connection(&self.admin_url).await;
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // FORCE may not end an autovacuum worker that has just started on the database
        // (it is not ours to terminate): try again shortly. A database left over is
        // dropped by a later run (after an hour), so cleanup never fails a test.
        for attempt in 1..=20 {
            match admin.execute(sqlx::AssertSqlSafe(sql.clone())).await {
                Ok(_) => break,
                Err(e) if attempt == 20 => eprintln!("leaving {}: {e}", self.name),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
            }
        }
        let _ = admin.close().await;
    }
}

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/berth", "x"),
        "postgres://u:p@h:5432/x"
    );
    assert_eq!(
        with_database("postgresql://u:p@h/berth?sslmode=disable", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}

async fn applied_versions(url: &str) -> Vec<i64> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT version FROM berth_schema_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// Nodes starting together on an empty database: every migration is applied exactly
/// once, and none again when a node starts later.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_apply_once_when_nodes_start_together() {
    let scratch = scratch().await;
    let url = scratch.url.clone();
    let outcome = tokio::spawn(async move {
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { PgMetaStore::open(&url).await })
            })
            .collect();
        for open in opens {
            open.await.unwrap().unwrap();
        }
        let all: Vec<i64> = (1..=MIGRATIONS.len() as i64).collect();
        assert_eq!(applied_versions(&url).await, all);
        let store = PgMetaStore::open(&url).await.unwrap();
        assert_eq!(applied_versions(&url).await, all);
        store
            .link_blob(
                &"ns/a".parse().unwrap(),
                &berth_core::Algorithm::Sha256.digest_of(b"x"),
                1,
            )
            .await
            .unwrap();
    })
    .await;
    scratch.remove().await;
    outcome.unwrap();
}

/// Where the role may create pg_trgm (a trusted extension: the database's owner may),
/// search has its trigram index, and it serves search's condition (the planner takes
/// it once scans are ruled out, as they are at a size where they would cost more).
#[tokio::test]
async fn search_uses_the_trigram_index() {
    let scratch = scratch().await;
    let url = scratch.url.clone();
    let outcome = tokio::spawn(async move {
        let store = PgMetaStore::open(&url).await.unwrap();
        let mut conn = PgConnection::connect(&url).await.unwrap();
        let index: Option<String> = sqlx::query_scalar(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'repositories_search'",
        )
        .fetch_optional(&mut conn)
        .await
        .unwrap();
        let index = index.expect("the trigram index");
        assert!(index.contains("gin_trgm_ops"), "{index}");
        let blob = berth_core::Algorithm::Sha256.digest_of(b"x");
        for i in 0..20 {
            let repo: RepoName = format!("team{i}/app{i}").parse().unwrap();
            store.link_blob(&repo, &blob, 1).await.unwrap();
        }
        sqlx::query("SET enable_seqscan = off")
            .execute(&mut conn)
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(
            "EXPLAIN SELECT name FROM repositories
             WHERE name ILIKE '%app123%' OR description ILIKE '%app123%'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("repositories_search"), "{plan}");
    })
    .await;
    scratch.remove().await;
    outcome.unwrap();
}

#[tokio::test]
async fn other_urls_are_refused() {
    let refused = PgMetaStore::open("sqlite:///tmp/x.db").await;
    assert!(refused.is_err());
}

/// A database at migration 1 with stored manifests: migration 2 records what their
/// bodies reference, leaving out a body that is not JSON (which sends it one manifest
/// at a time) and reading one with `\u0000` (which jsonb refuses); what existed counts
/// as released and linked at the upgrade.
#[tokio::test]
async fn migration_2_reads_references_from_stored_bodies() {
    let scratch = scratch().await;
    let url = scratch.url.clone();
    let outcome = tokio::spawn(async move {
        let d = |s: &str| {
            berth_core::Algorithm::Sha256
                .digest_of(s.as_bytes())
                .to_string()
        };
        let mut conn = PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(MIGRATIONS[0])
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE berth_schema_migrations (
                 version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             INSERT INTO berth_schema_migrations (version) VALUES (1);
             INSERT INTO repositories (name, created_at) VALUES ('ns/old', 1);",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        for blob in ["config", "layer", "artifact blob", "unused"] {
            sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, 5, 1)")
                .bind(d(blob))
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("INSERT INTO repository_blobs (repository_id, digest) VALUES (1, $1)")
                .bind(d(blob))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":5}},
                "layers":[{{"digest":"{}","size":5}},{{"digest":"{}","size":9,"urls":["x"]}}],
                "annotations":{{"a":"\u0000"}}}}"#,
            d("config"),
            d("layer"),
            d("foreign")
        );
        let artifact = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}"}},"blobs":[{{"digest":"{}"}}]}}"#,
            d("config"),
            d("artifact blob")
        );
        let index =
            r#"{"schemaVersion":2,"manifests":[{"digest":"m-image"},{"digest":"m-artifact"}],
                "layers":"not a list","config":"not an object"}"#
                .to_owned();
        let bodies: [(&str, Vec<u8>); 5] = [
            ("m-image", image.into_bytes()),
            ("m-artifact", artifact.into_bytes()),
            ("m-index", index.into_bytes()),
            ("m-array", br#"[{"config":{"digest":"x"}}]"#.to_vec()),
            ("m-bytes", b"\xff\xfe not text".to_vec()),
        ];
        for (digest, body) in &bodies {
            sqlx::query(
                "INSERT INTO manifests (repository_id, digest, media_type, body, created_at)
                 VALUES (1, $1, 'x', $2, 1)",
            )
            .bind(digest)
            .bind(body)
            .execute(&mut conn)
            .await
            .unwrap();
        }

        let before = unix_now();
        let store = PgMetaStore::open(&url).await.unwrap();
        let mut blobs: Vec<(String, String)> =
            sqlx::query_as("SELECT manifest, digest FROM manifest_blobs")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        blobs.sort();
        let mut expected = vec![
            ("m-artifact".to_owned(), d("artifact blob")),
            ("m-artifact".to_owned(), d("config")),
            ("m-image".to_owned(), d("config")),
            ("m-image".to_owned(), d("foreign")),
            ("m-image".to_owned(), d("layer")),
        ];
        expected.sort();
        assert_eq!(blobs, expected);
        let mut children: Vec<(String, String)> =
            sqlx::query_as("SELECT manifest, child FROM manifest_children")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        children.sort();
        assert_eq!(
            children,
            [
                ("m-index".to_owned(), "m-artifact".to_owned()),
                ("m-index".to_owned(), "m-image".to_owned())
            ]
        );

        // Referenced blobs are never candidates; the unused one is, once the upgrade
        // is longer ago than the cutoffs.
        let after = unix_now() + 10;
        let everything = GcCutoffs {
            released_before: after,
            linked_before: after,
            claimed_before: after,
        };
        let found = store.gc_candidates(&everything, None, 100).await.unwrap();
        let found: Vec<String> = found.iter().map(|b| b.digest.to_string()).collect();
        assert_eq!(found, [d("unused")]);
        for recent in [
            GcCutoffs {
                released_before: before - 1,
                ..everything
            },
            GcCutoffs {
                linked_before: before - 1,
                ..everything
            },
        ] {
            assert!(
                store
                    .gc_candidates(&recent, None, 100)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        let _ = conn.close().await;
    })
    .await;
    scratch.remove().await;
    outcome.unwrap();
}

/// The contract's races of collection against pushes, on tables padded with rows that
/// every claim and every removal of stale links looks at and none may take (blobs
/// referenced, links of them): a collector's first look then lasts long enough for
/// pushes to commit during it, which only its second look, with a fresh snapshot, sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collectors_check_again_what_a_long_first_look_missed() {
    let scratch = scratch().await;
    let url = scratch.url.clone();
    let (a, b) = tokio::join!(scratch.open(), scratch.open());
    let outcome = tokio::spawn(async move {
        let mut conn = PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(
            // No autovacuum of the padding: a worker on the scratch database would keep
            // its DROP (by a role that may not end the worker) from going through.
            "ALTER TABLE blobs SET (autovacuum_enabled = false);
             ALTER TABLE manifest_blobs SET (autovacuum_enabled = false);
             ALTER TABLE repository_blobs SET (autovacuum_enabled = false);
             INSERT INTO repositories (name, created_at) VALUES ('pad/pad', 0);
             INSERT INTO blobs (digest, size, created_at)
             SELECT 'sha256:' || lpad(to_hex(i), 64, '0'), 1, 0
             FROM generate_series(1, 40000) AS i;
             INSERT INTO manifest_blobs (repository_id, manifest, digest)
             SELECT r.id, 'sha256:pad', b.digest FROM blobs b, repositories r
             WHERE r.name = 'pad/pad';
             INSERT INTO repository_blobs (repository_id, digest)
             SELECT repository_id, digest FROM manifest_blobs;
             ANALYZE;",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let _ = conn.close().await;
        crate::testsuite::race_claim_against_put_manifest(a.clone(), b.clone()).await;
        crate::testsuite::race_collection_against_references(a, b).await;
    })
    .await;
    scratch.remove().await;
    outcome.unwrap();
}
