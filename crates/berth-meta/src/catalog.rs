//! The catalog: what the web site and search show about repositories (their
//! description, when they were last pushed, their namespace's mark) and the search over
//! names and descriptions that `/v1/search`, `/api/v1/search` and the web site share.
//!
//! Every listing takes a [`Viewer`], so a private repository never reaches anyone who
//! may not read it.

use async_trait::async_trait;
use berth_core::RepoName;

use crate::Result;
use crate::accounts::Viewer;

/// Search never ranks more than this many matches: a term that matches more of the
/// registry ranks its first `SEARCH_CANDIDATES` (in creation order) and reports the
/// count as "at least". Keeps a search of a very common word as cheap as a rare one.
pub const SEARCH_CANDIDATES: u32 = 1000;

/// One repository as listings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryCard {
    pub name: RepoName,
    pub public: bool,
    pub description: String,
    /// When a manifest was last pushed to it (unix seconds); `None` before the first.
    pub pushed_at: Option<i64>,
}

/// Which repositories a listing of recent pushes covers.
#[derive(Debug, Clone, Copy)]
pub enum RecentScope<'a> {
    /// Every pushed repository.
    Pushed,
    /// One namespace's repositories, pushed or not (its page).
    Namespace(&'a str),
    /// Pushed repositories in these namespaces (the marked ones, say).
    Within(&'a [String]),
    /// Pushed repositories in none of these namespaces.
    Outside(&'a [String]),
}

/// What to search for.
#[derive(Debug, Clone, Copy)]
pub struct SearchQuery<'a> {
    /// Matched anywhere in a name or description, ignoring case.
    pub text: &'a str,
    pub viewer: Viewer<'a>,
    /// Only repositories in these namespaces (the filters on marks become this).
    pub namespaces: Option<&'a [String]>,
    /// Only these repositories (the golden filter becomes this).
    pub repositories: Option<&'a [String]>,
    pub offset: u32,
    pub limit: u32,
}

/// A page of search results: name matches first, then description matches, each in
/// name order, among the first [`SEARCH_CANDIDATES`] matches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchResults {
    /// Matches the viewer may see (at most [`SEARCH_CANDIDATES`]).
    pub total: u64,
    /// Whether more matched than were counted.
    pub capped: bool,
    pub repositories: Vec<RepositoryCard>,
}

/// One tag of a repository, as its page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow {
    pub name: String,
    pub digest: String,
    pub media_type: String,
    /// When the tag last moved (unix seconds).
    pub updated_at: i64,
    /// Who moved it there, from the tag history (`None` for tags older than the history).
    pub pushed_by: Option<String>,
}

#[async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    /// Repositories matching `query` that its viewer may read.
    async fn search_repositories(&self, query: &SearchQuery<'_>) -> Result<SearchResults>;
    /// The most recently pushed repositories of `scope` that `viewer` may read, newest
    /// first (never pushed ones last, by name).
    async fn recent_repositories(
        &self,
        viewer: Viewer<'_>,
        scope: RecentScope<'_>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<RepositoryCard>>;
    /// One repository, whoever asks (the caller checks access).
    async fn repository_card(&self, repository: &RepoName) -> Result<Option<RepositoryCard>>;
    /// Sets a repository's description; `false` if it does not exist.
    async fn set_repository_description(
        &self,
        repository: &RepoName,
        description: &str,
    ) -> Result<bool>;
    /// A repository's tags, most recently moved first, at most `limit`.
    async fn tag_rows(&self, repository: &RepoName, limit: u32) -> Result<Vec<TagRow>>;
}

/// The text of a search as a trigram full-text phrase: quoted, quotes doubled.
pub(crate) fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// `text` as a `LIKE` pattern matching it anywhere, with `\` escaping the wildcards.
pub(crate) fn like_anywhere(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A search needs three characters for the trigram index; shorter ones scan names.
pub(crate) fn uses_trigrams(text: &str) -> bool {
    text.chars().count() >= 3
}
