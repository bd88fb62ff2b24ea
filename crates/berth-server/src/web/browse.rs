//! The home page (`/`) and search (`/search?q=…`).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Request, State};
use axum::response::Response;
use berth_core::endpoint::{first_value, query_pairs};

use super::view::{Layout, RepoItem, now, url_encode};
use super::{Visitor, WebError, html, respond};
use crate::catalog::{self, Search};
use crate::http::AppState;

/// Repositories in each list of the home page.
const HOME_LIST: u32 = 12;
/// Results on one page of a search.
const PER_PAGE: u32 = 20;

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    trusted: Vec<RepoItem>,
    recent: Vec<RepoItem>,
    host: String,
}

pub async fn home(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let mut visitor = match Visitor::of(&app, &parts).await {
        Ok(v) => v,
        Err(e) => return e.bare(),
    };
    let outcome = async {
        let (trusted, recent) =
            catalog::recent(app.accounts.meta(), visitor.viewer(), HOME_LIST).await?;
        let t = now();
        let page = HomePage {
            trusted: trusted
                .iter()
                .map(|l| RepoItem::from_listed(l, t))
                .collect(),
            recent: recent.iter().map(|l| RepoItem::from_listed(l, t)).collect(),
            host: visitor.origin.host.clone(),
            layout: Layout::new(&mut visitor, "berth"),
        };
        Ok::<_, WebError>(html(&page))
    }
    .await;
    respond(visitor, outcome)
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    layout: Layout,
    query: String,
    official: bool,
    verified: bool,
    golden: bool,
    results: Vec<RepoItem>,
    /// `12 repositories`, `1,000+ repositories`.
    count: String,
    page: u32,
    pages: u64,
    previous: Option<String>,
    next: Option<String>,
}

pub async fn search(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let mut visitor = match Visitor::of(&app, &parts).await {
        Ok(v) => v,
        Err(e) => return e.bare(),
    };
    let outcome = async {
        let query = query_pairs(parts.uri.query());
        let flag = |key: &str| first_value(&query, key).is_some_and(|v| v == "on" || v == "true");
        let wanted = Search {
            text: first_value(&query, "q")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            official: flag("official"),
            verified: flag("verified"),
            golden: flag("golden"),
            page: first_value(&query, "page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1),
            per_page: PER_PAGE,
        };
        let found = catalog::search(app.accounts.meta(), visitor.viewer(), &wanted).await?;
        let t = now();
        // The same search on another page.
        let link = |page: u32| {
            let mut href = format!("/search?q={}", url_encode(&wanted.text));
            for (on, key) in [
                (wanted.official, "official"),
                (wanted.verified, "verified"),
                (wanted.golden, "golden"),
            ] {
                if on {
                    href.push_str(&format!("&{key}=on"));
                }
            }
            href.push_str(&format!("&page={page}"));
            href
        };
        let pages = found.pages();
        let count = match (found.total, found.capped) {
            (n, true) => format!("{n}+ repositories"),
            (1, false) => "1 repository".to_owned(),
            (n, false) => format!("{n} repositories"),
        };
        let mut layout = Layout::new(&mut visitor, &format!("{} – search", wanted.text));
        layout.query = wanted.text.clone();
        let page = SearchPage {
            layout,
            query: wanted.text.clone(),
            official: wanted.official,
            verified: wanted.verified,
            golden: wanted.golden,
            results: found
                .items
                .iter()
                .map(|l| RepoItem::from_listed(l, t))
                .collect(),
            count,
            page: found.page,
            pages,
            previous: (found.page > 1).then(|| link(found.page - 1)),
            next: (u64::from(found.page) < pages).then(|| link(found.page + 1)),
        };
        Ok::<_, WebError>(html(&page))
    }
    .await;
    respond(visitor, outcome)
}
