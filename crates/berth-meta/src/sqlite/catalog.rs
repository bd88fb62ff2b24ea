//! The catalog on SQLite: search through the FTS5 trigram index `repository_search`.

use async_trait::async_trait;
use berth_core::RepoName;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::writes::Write;
use super::{SqliteMetaStore, backend, changed};
use crate::Result;
use crate::accounts::Viewer;
use crate::catalog::{
    CatalogStore, RecentScope, RepositoryCard, SEARCH_CANDIDATES, SearchQuery, SearchResults,
    TagRow, fts_phrase, like_anywhere, uses_trigrams,
};

/// Which repositories a viewer may read, over `r`; `?2` is the user's name.
fn visible(viewer: Viewer<'_>) -> &'static str {
    match viewer {
        Viewer::All => "?2 IS NULL OR 1",
        Viewer::Anonymous => "r.public = 1",
        Viewer::User(_) => {
            "r.public = 1 OR r.namespace IN (
               SELECT name FROM users WHERE name = ?2
               UNION SELECT org FROM org_members WHERE username = ?2)"
        }
    }
}

fn viewer_name<'a>(viewer: Viewer<'a>) -> Option<&'a str> {
    match viewer {
        Viewer::User(name) => Some(name),
        Viewer::All | Viewer::Anonymous => None,
    }
}

fn json_list(list: Option<&[String]>) -> Option<String> {
    list.map(|l| serde_json::Value::from(l.to_vec()).to_string())
}

/// A listing row (`name, public, description, pushed_at`; other columns ignored).
fn card_of(row: &SqliteRow) -> Result<crate::RepositoryCard> {
    crate::rows::card((
        row.try_get("name").map_err(backend)?,
        row.try_get("public").map_err(backend)?,
        row.try_get("description").map_err(backend)?,
        row.try_get("pushed_at").map_err(backend)?,
    ))
}

#[async_trait]
impl CatalogStore for SqliteMetaStore {
    async fn search_repositories(&self, query: &SearchQuery<'_>) -> Result<SearchResults> {
        // ?1 the match, ?2 the viewer, ?3 namespaces, ?4 repositories (JSON arrays),
        // ?5 the text in lower case, ?6 limit, ?7 offset, ?8 candidates. Each case
        // starts from the index that narrows it most: a filter's few repositories,
        // else trigrams (three characters or more), else words (shorter text matches
        // the start of a word).
        let text = query.text;
        let filtered = query.namespaces.is_some() || query.repositories.is_some();
        let anywhere = "(r.name LIKE ?1 ESCAPE '\\' OR r.description LIKE ?1 ESCAPE '\\')";
        let (from, matches, pattern) = if filtered || !text.chars().any(char::is_alphanumeric) {
            ("repositories r", anywhere, like_anywhere(text))
        } else if uses_trigrams(text) {
            (
                "repository_search s JOIN repositories r ON r.id = s.rowid",
                "repository_search MATCH ?1",
                fts_phrase(text),
            )
        } else {
            (
                "repository_words s JOIN repositories r ON r.id = s.rowid",
                "repository_words MATCH ?1",
                format!("{} *", fts_phrase(text)),
            )
        };
        let mut filters = String::new();
        if query.namespaces.is_some() {
            filters.push_str(" AND r.namespace IN (SELECT value FROM json_each(?3))");
        }
        if query.repositories.is_some() {
            filters.push_str(" AND r.name IN (SELECT value FROM json_each(?4))");
        }
        let sql = format!(
            "WITH m AS MATERIALIZED (
               SELECT r.name, r.public, r.description, r.pushed_at
               FROM {from}
               WHERE {matches} AND ({visible}){filters}
               LIMIT ?8)
             SELECT m.name, m.public, m.description, m.pushed_at,
                    (SELECT count(*) FROM m) AS total
             FROM m
             ORDER BY instr(m.name, ?5) = 0, m.name
             LIMIT ?6 OFFSET ?7",
            visible = visible(query.viewer),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(pattern)
            .bind(viewer_name(query.viewer))
            .bind(json_list(query.namespaces))
            .bind(json_list(query.repositories))
            .bind(query.text.to_lowercase())
            .bind(i64::from(query.limit))
            .bind(i64::from(query.offset))
            .bind(i64::from(SEARCH_CANDIDATES) + 1)
            .fetch_all(&self.reader)
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
        // ?1 the scope's namespace or JSON list, ?2 viewer, ?3 limit, ?4 offset.
        // Newest first straight from the index on pushed_at, which stops at the page's
        // end (never-pushed repositories last only on a namespace's page).
        let (filter, bound) = match scope {
            RecentScope::Pushed => ("?1 IS NULL AND r.pushed_at IS NOT NULL", None),
            RecentScope::Namespace(ns) => ("r.namespace = ?1", Some(ns.to_owned())),
            RecentScope::Within(list) => (
                "r.pushed_at IS NOT NULL AND r.namespace IN (SELECT value FROM json_each(?1))",
                json_list(Some(list)),
            ),
            RecentScope::Outside(list) => (
                "r.pushed_at IS NOT NULL AND r.namespace NOT IN (SELECT value FROM json_each(?1))",
                json_list(Some(list)),
            ),
        };
        let sql = format!(
            "SELECT r.name, r.public, r.description, r.pushed_at
             FROM repositories r
             WHERE {filter} AND ({visible})
             ORDER BY {never_last}r.pushed_at DESC, r.name
             LIMIT ?3 OFFSET ?4",
            visible = visible(viewer),
            never_last = if matches!(scope, RecentScope::Namespace(_)) {
                "r.pushed_at IS NULL, "
            } else {
                ""
            },
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(bound)
            .bind(viewer_name(viewer))
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        rows.iter().map(card_of).collect()
    }

    async fn repository_card(&self, repository: &RepoName) -> Result<Option<RepositoryCard>> {
        let row = sqlx::query(
            "SELECT r.name, r.public, r.description, r.pushed_at
             FROM repositories r WHERE r.name = ?",
        )
        .bind(repository.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        row.as_ref().map(card_of).transpose()
    }

    async fn set_repository_description(
        &self,
        repository: &RepoName,
        description: &str,
    ) -> Result<bool> {
        changed(
            self.write(Write::Describe {
                repository: repository.as_str().to_owned(),
                description: description.to_owned(),
            })
            .await,
        )
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
             WHERE r.name = ?
             ORDER BY t.updated_at DESC, t.name
             LIMIT ?",
        )
        .bind(repository.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
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
