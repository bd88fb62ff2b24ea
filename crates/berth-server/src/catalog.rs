//! Browse and search: what `/v1/search` (the Docker client's `docker search`),
//! `/api/v1/search` and the web site list. The store finds repositories the viewer may
//! read; this adds what a listing shows beside each one: its namespace's mark and
//! whether it is a golden image.

use berth_meta::{MetaError, MetaStore, RecentScope, RepositoryCard, SearchQuery, Viewer};

use crate::marks::{Marks, NamespaceMark};

/// Longest repository description (Markdown), in bytes.
pub const MAX_DESCRIPTION: usize = 25_000;

/// A description as stored: trimmed, at most [`MAX_DESCRIPTION`] bytes.
pub fn checked_description(text: &str) -> Result<&str, String> {
    let text = text.trim();
    if text.len() > MAX_DESCRIPTION {
        return Err(format!("a description has at most {MAX_DESCRIPTION} bytes"));
    }
    Ok(text)
}

/// Most results on one page of a search.
pub const MAX_PER_PAGE: u32 = 100;

/// A search as callers ask for it.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub text: String,
    /// Only official repositories (and verified ones when `verified` is set too).
    pub official: bool,
    pub verified: bool,
    pub golden: bool,
    /// From 1.
    pub page: u32,
    pub per_page: u32,
}

/// One repository in a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub card: RepositoryCard,
    pub mark: NamespaceMark,
    pub golden: bool,
}

impl Listed {
    /// How people write the name: official images by their bare name.
    pub fn short_name(&self) -> &str {
        let name = self.card.name.as_str();
        name.strip_prefix(berth_core::name::OFFICIAL_NAMESPACE)
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(name)
    }
}

/// A page of search results.
#[derive(Debug, Clone)]
pub struct Found {
    pub total: u64,
    /// More matched than were counted.
    pub capped: bool,
    pub page: u32,
    pub per_page: u32,
    pub items: Vec<Listed>,
}

impl Found {
    pub fn pages(&self) -> u64 {
        self.total.div_ceil(u64::from(self.per_page.max(1)))
    }
}

/// Marks and golden images, loaded once per listing.
pub struct Annotations {
    marks: Marks,
    golden: Vec<String>,
}

impl Annotations {
    pub async fn load(meta: &dyn MetaStore) -> Result<Annotations, MetaError> {
        let mut golden: Vec<String> = meta
            .golden_images()
            .await?
            .into_iter()
            .map(|g| g.repository.as_str().to_owned())
            .collect();
        golden.dedup();
        Ok(Annotations {
            marks: Marks::load(meta).await?,
            golden,
        })
    }

    pub fn marks(&self) -> &Marks {
        &self.marks
    }

    pub fn is_golden(&self, repository: &str) -> bool {
        self.golden.iter().any(|g| g == repository)
    }

    pub fn list(&self, cards: Vec<RepositoryCard>) -> Vec<Listed> {
        cards
            .into_iter()
            .map(|card| Listed {
                mark: self.marks.of(card.name.namespace()),
                golden: self.is_golden(card.name.as_str()),
                card,
            })
            .collect()
    }
}

pub async fn search(
    meta: &dyn MetaStore,
    viewer: Viewer<'_>,
    search: &Search,
) -> Result<Found, MetaError> {
    let annotations = Annotations::load(meta).await?;
    let wanted_marks: Vec<NamespaceMark> = [
        (search.official, NamespaceMark::Official),
        (search.verified, NamespaceMark::Verified),
    ]
    .into_iter()
    .filter_map(|(on, mark)| on.then_some(mark))
    .collect();
    let namespaces =
        (!wanted_marks.is_empty()).then(|| annotations.marks.namespaces_marked(&wanted_marks));
    let golden = search.golden.then(|| annotations.golden.clone());
    let per_page = search.per_page.clamp(1, MAX_PER_PAGE);
    let page = search.page.max(1);
    let results = meta
        .search_repositories(&SearchQuery {
            text: search.text.trim(),
            viewer,
            namespaces: namespaces.as_deref(),
            repositories: golden.as_deref(),
            offset: (page - 1).saturating_mul(per_page),
            limit: per_page,
        })
        .await?;
    Ok(Found {
        total: results.total,
        capped: results.capped,
        page,
        per_page,
        items: annotations.list(results.repositories),
    })
}

/// The home page's lists: recently pushed repositories of official and verified
/// namespaces, and the others.
pub async fn recent(
    meta: &dyn MetaStore,
    viewer: Viewer<'_>,
    limit: u32,
) -> Result<(Vec<Listed>, Vec<Listed>), MetaError> {
    let annotations = Annotations::load(meta).await?;
    let marked = annotations
        .marks
        .namespaces_marked(&[NamespaceMark::Official, NamespaceMark::Verified]);
    let trusted = meta
        .recent_repositories(viewer, RecentScope::Within(&marked), 0, limit)
        .await?;
    let others = meta
        .recent_repositories(viewer, RecentScope::Outside(&marked), 0, limit)
        .await?;
    Ok((annotations.list(trusted), annotations.list(others)))
}
