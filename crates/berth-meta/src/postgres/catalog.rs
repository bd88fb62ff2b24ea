//! The catalog on PostgreSQL: search with `ILIKE`, which pg_trgm's index serves where
//! the extension could be created.

use async_trait::async_trait;
use berth_core::RepoName;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgMetaStore, backend};
use crate::Result;
use crate::accounts::Viewer;
use crate::catalog::{
    CatalogStore, RecentScope, RepositoryCard, SEARCH_CANDIDATES, SearchQuery, SearchResults,
    TagRow, like_anywhere,
};

/// Which repositories a viewer may read, over `r`; `$2` is the user's name.
fn visible(viewer: Viewer<'_>) -> &'static str {
    match viewer {
        Viewer::All => "$2::text IS NULL OR TRUE",
        Viewer::Anonymous => "$2::text IS NULL AND r.public",
        Viewer::User(_) => {
            "r.public OR r.namespace IN (
               SELECT name FROM users WHERE name = $2
               UNION SELECT org FROM org_members WHERE username = $2)"
        }
    }
}

fn viewer_name<'a>(viewer: Viewer<'a>) -> Option<&'a str> {
    match viewer {
        Viewer::User(name) => Some(name),
        Viewer::All | Viewer::Anonymous => None,
    }
}

/// A listing row (`name, public, description, pushed_at`; other columns ignored).
fn card_of(row: &PgRow) -> Result<crate::RepositoryCard> {
    crate::rows::card((
        row.try_get("name").map_err(backend)?,
        row.try_get("public").map_err(backend)?,
        row.try_get("description").map_err(backend)?,
        row.try_get("pushed_at").map_err(backend)?,
    ))
}

#[async_trait]
impl CatalogStore for PgMetaStore {
    async fn search_repositories(&self, query: &SearchQuery<'_>) -> Result<SearchResults> {
        // $1 the pattern, $2 the viewer, $3 namespaces, $4 repositories, $5 the text in
        // lower case, $6 limit, $7 offset, $8 candidates.
        let sql = format!(
            "WITH m AS MATERIALIZED (
               SELECT r.name, r.public, r.description, r.pushed_at, r.namespace
               FROM repositories r
               WHERE (r.name ILIKE $1 OR r.description ILIKE $1) AND ({visible})
                 AND ($3::text[] IS NULL OR r.namespace = ANY($3))
                 AND ($4::text[] IS NULL OR r.name = ANY($4))
               LIMIT $8)
             SELECT m.name, m.public, m.description, m.pushed_at,
                    (SELECT count(*) FROM m) AS total
             FROM m
             ORDER BY strpos(m.name, $5) = 0, m.name
             LIMIT $6 OFFSET $7",
            visible = visible(query.viewer),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(like_anywhere(query.text))
            .bind(viewer_name(query.viewer))
            .bind(query.namespaces)
            .bind(query.repositories)
            .bind(query.text.to_lowercase())
            .bind(i64::from(query.limit))
            .bind(i64::from(query.offset))
            .bind(i64::from(SEARCH_CANDIDATES) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        let total: i64 = match rows.first() {
            Some(row) => row.try_get("total").map_err(backend)?,
            // The page is past the end: count on its own.
            None if query.offset > 0 => {
                return self
                    .search_repositories(&SearchQuery {
                        offset: 0,
                        limit: 1,
                        ..*query
                    })
                    .await
                    .map(|r| SearchResults {
                        repositories: Vec::new(),
                        ..r
                    });
            }
            None => 0,
        };
        let total = total.max(0) as u64;
        Ok(SearchResults {
            total: total.min(u64::from(SEARCH_CANDIDATES)),
            capped: total > u64::from(SEARCH_CANDIDATES),
            repositories: rows.iter().map(card_of).collect::<Result<_>>()?,
        })
    }

    async fn recent_repositories(
        &self,
        viewer: Viewer<'_>,
        scope: RecentScope<'_>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<RepositoryCard>> {
        // $1 the scope's namespace list, $2 viewer, $3 limit, $4 offset.
        let filter = match scope {
            RecentScope::Pushed => "$1::text[] IS NULL AND r.pushed_at IS NOT NULL",
            RecentScope::Namespace(_) => "r.namespace = ANY($1)",
            RecentScope::Within(_) => "r.pushed_at IS NOT NULL AND r.namespace = ANY($1)",
            RecentScope::Outside(_) => "r.pushed_at IS NOT NULL AND r.namespace <> ALL($1)",
        };
        let bound: Option<Vec<String>> = match scope {
            RecentScope::Pushed => None,
            RecentScope::Namespace(ns) => Some(vec![ns.to_owned()]),
            RecentScope::Within(list) | RecentScope::Outside(list) => Some(list.to_vec()),
        };
        let sql = format!(
            "SELECT r.name, r.public, r.description, r.pushed_at
             FROM repositories r
             WHERE {filter} AND ({visible})
             ORDER BY r.pushed_at DESC NULLS LAST, r.name
             LIMIT $3 OFFSET $4",
            visible = visible(viewer),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(bound)
            .bind(viewer_name(viewer))
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(card_of).collect()
    }

    async fn repository_card(&self, repository: &RepoName) -> Result<Option<RepositoryCard>> {
        let row = sqlx::query(
            "SELECT r.name, r.public, r.description, r.pushed_at
             FROM repositories r WHERE r.name = $1",
        )
        .bind(repository.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(card_of).transpose()
    }

    async fn set_repository_description(
        &self,
        repository: &RepoName,
        description: &str,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE repositories SET description = $1 WHERE name = $2")
            .bind(description)
            .bind(repository.as_str())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn tag_rows(&self, repository: &RepoName, limit: u32) -> Result<Vec<TagRow>> {
        let rows = sqlx::query(
            "SELECT t.name, t.digest, m.media_type, t.updated_at,
                    (SELECT h.actor FROM tag_history h
                     WHERE h.repository_id = t.repository_id AND h.tag = t.name
                     ORDER BY h.id DESC LIMIT 1) AS pushed_by
             FROM repositories r
             JOIN tags t ON t.repository_id = r.id
             JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest
             WHERE r.name = $1
             ORDER BY t.updated_at DESC, t.name
             LIMIT $2",
        )
        .bind(repository.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                Ok(TagRow {
                    name: row.try_get("name").map_err(backend)?,
                    digest: row.try_get("digest").map_err(backend)?,
                    media_type: row.try_get("media_type").map_err(backend)?,
                    updated_at: row.try_get("updated_at").map_err(backend)?,
                    pushed_by: row.try_get("pushed_by").map_err(backend)?,
                })
            })
            .collect()
    }
}
