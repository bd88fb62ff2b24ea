//! A repository's pages: `/r/NAMESPACE/REPO` (official ones also at `/_/REPO`), a tag at
//! `…/-/tags/TAG`, settings at `…/-/settings`. (`-` cannot be a name component, so these
//! never collide with a repository's name.)
//!
//! A repository the visitor may not pull answers exactly as a missing one does.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use berth_core::name::OFFICIAL_NAMESPACE;
use berth_core::{Actions, RepoName};
use berth_meta::RepositoryCard;

use super::images::{self, Summary};
use super::settings::{PolicyRow, policy_rows, require_manager, save_policy};
use super::view::{Layout, ago, iso, repository_href, short_digest, size};
use super::{Form, Visitor, WebError, html, markdown, redirect, respond};
use crate::catalog::Annotations;
use crate::catalog::checked_description;
use crate::http::AppState;
use crate::marks::NamespaceMark;

/// Tags (by most recent move) a repository's page reads.
const MAX_TAGS: u32 = 200;
/// Rows (manifests) a repository's page shows.
const MAX_ROWS: usize = 50;

/// What a path under `/r/` names.
enum Target {
    Repository(RepoName),
    Tag(RepoName, String),
    Settings(RepoName),
}

fn parse_target(path: &str, official: bool) -> Result<Target, WebError> {
    let path = path.trim_end_matches('/');
    let (name, rest) = match path.split_once("/-/") {
        Some((name, rest)) => (name, Some(rest)),
        None => (path, None),
    };
    let full = if official {
        format!("{OFFICIAL_NAMESPACE}/{name}")
    } else {
        name.to_owned()
    };
    let repo: RepoName = full.parse().map_err(|_| WebError::not_found())?;
    match rest {
        None => Ok(Target::Repository(repo)),
        Some("settings") => Ok(Target::Settings(repo)),
        Some(rest) => match rest.strip_prefix("tags/") {
            Some(tag) if !tag.is_empty() && !tag.contains('/') => {
                Ok(Target::Tag(repo, tag.to_owned()))
            }
            _ => Err(WebError::not_found()),
        },
    }
}

/// The repository, if the visitor may pull it.
async fn readable(
    app: &AppState,
    visitor: &Visitor,
    repo: &RepoName,
) -> Result<RepositoryCard, WebError> {
    let card = app.accounts.meta().repository_card(repo).await?;
    let may_pull = visitor.open
        || app
            .accounts
            .rights(&visitor.principal(), repo)
            .await?
            .contains(Actions::PULL);
    match card {
        Some(card) if may_pull => Ok(card),
        _ => Err(WebError::not_found()),
    }
}

/// The name people write: bare for official images.
fn display_name(repo: &RepoName) -> &str {
    repo.as_str()
        .strip_prefix(OFFICIAL_NAMESPACE)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(repo.as_str())
}

pub struct TagLink {
    pub name: String,
    pub href: String,
}

/// One manifest of the repository with every tag on it: `2`, `2.1`, `2.1.106` and
/// `latest` on the same release read as one line.
pub struct ReleaseRow {
    pub tags: Vec<TagLink>,
    pub digest: String,
    pub short_digest: String,
    pub kind: &'static str,
    pub platforms: String,
    pub size: String,
    pub pushed: String,
    pub pushed_iso: String,
    pub pushed_by: String,
}

#[derive(Template)]
#[template(path = "repository.html")]
struct RepositoryPage {
    layout: Layout,
    name: String,
    href: String,
    mark: &'static str,
    golden: bool,
    private: bool,
    description_html: String,
    pull: String,
    rows: Vec<ReleaseRow>,
    more_rows: bool,
    may_manage: bool,
}

pub async fn get(
    State(app): State<Arc<AppState>>,
    Path(path): Path<String>,
    request: Request,
) -> Response {
    show(app, &path, false, request).await
}

/// `/_/REPO`: an official image.
pub async fn official(
    State(app): State<Arc<AppState>>,
    Path(path): Path<String>,
    request: Request,
) -> Response {
    show(app, &path, true, request).await
}

async fn show(app: Arc<AppState>, path: &str, official: bool, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let mut visitor = match Visitor::of(&app, &parts).await {
        Ok(v) => v,
        Err(e) => return e.bare(),
    };
    let outcome = async {
        match parse_target(path, official)? {
            Target::Repository(repo) => repository_page(&app, &mut visitor, &repo).await,
            Target::Tag(repo, tag) => tag_page(&app, &mut visitor, &repo, &tag).await,
            Target::Settings(repo) => {
                let saved = parts.uri.query() == Some("saved");
                settings_page(&app, &mut visitor, &repo, saved).await
            }
        }
    }
    .await;
    respond(visitor, outcome)
}

async fn repository_page(
    app: &AppState,
    visitor: &mut Visitor,
    repo: &RepoName,
) -> Result<Response, WebError> {
    let card = readable(app, visitor, repo).await?;
    let meta = app.accounts.meta();
    let annotations = Annotations::load(meta).await?;
    let tags = meta.tag_rows(repo, MAX_TAGS).await?;
    let now = super::view::now();
    let href = repository_href(repo.as_str());
    // Group the tags by manifest, in the order of their most recent move.
    let mut rows: Vec<ReleaseRow> = Vec::new();
    let mut more_rows = false;
    for tag in &tags {
        let link = TagLink {
            name: tag.name.clone(),
            href: format!("{href}/-/tags/{}", tag.name),
        };
        if let Some(row) = rows.iter_mut().find(|r| r.digest == tag.digest) {
            row.tags.push(link);
            continue;
        }
        if rows.len() == MAX_ROWS {
            more_rows = true;
            continue;
        }
        // Only the manifests of the rows shown are read (each at most 4 MiB).
        let body = match tag.digest.parse::<berth_core::Digest>() {
            Ok(d) => match app
                .registry
                .get_manifest(repo, &berth_core::Reference::Digest(d))
                .await
            {
                Ok(m) => m.body,
                Err(crate::error::RegistryError::ManifestUnknown) => continue,
                Err(e) => return Err(e.into()),
            },
            Err(_) => continue,
        };
        let summary = images::summarize(&app.registry, repo, &tag.digest, &body, false).await;
        rows.push(ReleaseRow {
            tags: vec![link],
            short_digest: short_digest(&tag.digest),
            digest: tag.digest.clone(),
            kind: summary.kind,
            platforms: summary.platform_names(),
            size: summary.size_text(),
            pushed: ago(tag.updated_at, now),
            pushed_iso: iso(tag.updated_at),
            pushed_by: tag.pushed_by.clone().unwrap_or_default(),
        });
    }
    // Within a release, the most specific version first: 2.1.106, 2.1, 2, latest.
    for row in &mut rows {
        row.tags.sort_by_key(|t| {
            (
                std::cmp::Reverse(t.name.matches('.').count()),
                t.name.parse::<f64>().is_err(),
                t.name.clone(),
            )
        });
    }
    let may_manage = visitor.user().is_some()
        && app
            .accounts
            .may_manage(&visitor.principal(), repo.namespace())
            .await?;
    let name = display_name(repo).to_owned();
    let page = RepositoryPage {
        layout: Layout::new(visitor, &name),
        pull: format!("docker pull {}/{name}", visitor.origin.host),
        name,
        href,
        mark: match annotations.marks().of(repo.namespace()) {
            NamespaceMark::None => "",
            mark => mark.as_str(),
        },
        golden: annotations.is_golden(repo.as_str()),
        private: !card.public,
        description_html: markdown::render(&card.description),
        rows,
        more_rows,
        may_manage,
    };
    Ok(html(&page))
}

pub struct ReferrerRow {
    pub artifact_type: String,
    pub digest: String,
    pub size: String,
}

pub struct LayerRow {
    pub digest: String,
    pub size: String,
    pub media_type: String,
}

pub struct PlatformRow {
    pub name: String,
    pub digest: String,
    pub size: String,
}

/// An image's stored scan, for the tag page.
pub struct ScanView {
    /// The platform (an index's) or empty.
    pub platform: String,
    pub os: String,
    pub packages: usize,
    /// `2 high, 1 medium`.
    pub counts: String,
    pub findings: Vec<FindingRow>,
}

pub struct FindingRow {
    pub severity: &'static str,
    pub id: String,
    pub aliases: String,
    pub package: String,
    pub installed: String,
    pub fixed: String,
}

/// The stored scans of an image or of its platforms (the page never scans). Only
/// manifests this repository holds: an index may name any digest (a sparse one, even a
/// private image's elsewhere), and scans are kept by digest for the whole registry.
async fn scan_views(
    app: &AppState,
    repo: &RepoName,
    images: &[(String, String)],
) -> Result<Vec<ScanView>, WebError> {
    let mut views = Vec::new();
    for (platform, digest) in images {
        let Ok(digest) = digest.parse::<berth_core::Digest>() else {
            continue;
        };
        let here = app
            .registry
            .get_manifest(repo, &berth_core::Reference::Digest(digest.clone()))
            .await;
        if here.is_err() {
            continue;
        }
        let Some(stored) = app.accounts.meta().image_scan(&digest).await? else {
            continue;
        };
        let Ok(report) = crate::scanning::ScanReport::from_stored(&stored) else {
            continue;
        };
        let mut findings = report.findings.clone();
        findings.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
        let mut counts: Vec<String> = Vec::new();
        for severity in [
            berth_scan::Severity::Critical,
            berth_scan::Severity::High,
            berth_scan::Severity::Medium,
            berth_scan::Severity::Low,
            berth_scan::Severity::Unknown,
        ] {
            let n = findings.iter().filter(|f| f.severity == severity).count();
            if n > 0 {
                counts.push(format!("{n} {}", severity.as_str()));
            }
        }
        views.push(ScanView {
            platform: platform.clone(),
            os: report
                .inventory
                .os
                .as_ref()
                .map(|o| {
                    if o.pretty_name.is_empty() {
                        format!("{} {}", o.id, o.version_id)
                    } else {
                        o.pretty_name.clone()
                    }
                })
                .unwrap_or_else(|| "unknown OS".into()),
            packages: report.inventory.packages.len(),
            counts: if counts.is_empty() {
                "no known vulnerabilities".into()
            } else {
                counts.join(", ")
            },
            findings: findings
                .into_iter()
                .map(|f| FindingRow {
                    severity: f.severity.as_str(),
                    id: f.id,
                    aliases: f.aliases.join(", "),
                    package: f.package,
                    installed: f.installed,
                    fixed: f.fixed.unwrap_or_else(|| "-".into()),
                })
                .collect(),
        });
    }
    Ok(views)
}

#[derive(Template)]
#[template(path = "tag.html")]
struct TagPage {
    scans: Vec<ScanView>,
    layout: Layout,
    name: String,
    href: String,
    tag: String,
    digest: String,
    pull_tag: String,
    pull_digest: String,
    summary: Summary,
    platforms: Vec<PlatformRow>,
    layers: Vec<LayerRow>,
    config: String,
    referrers: Vec<ReferrerRow>,
    pushed: String,
    pushed_by: String,
}

async fn tag_page(
    app: &AppState,
    visitor: &mut Visitor,
    repo: &RepoName,
    tag: &str,
) -> Result<Response, WebError> {
    readable(app, visitor, repo).await?;
    let tag_ref: berth_core::Tag = tag.parse().map_err(|_| WebError::not_found())?;
    let manifest = match app
        .registry
        .get_manifest(repo, &berth_core::Reference::Tag(tag_ref))
        .await
    {
        Ok(m) => m,
        Err(crate::error::RegistryError::ManifestUnknown) => return Err(WebError::not_found()),
        Err(e) => return Err(e.into()),
    };
    let digest = manifest.digest.to_string();
    let summary = images::summarize(&app.registry, repo, &digest, &manifest.body, true).await;
    let referrers = app
        .registry
        .referrers(repo, &manifest.digest, None)
        .await?
        .iter()
        .map(|r| ReferrerRow {
            artifact_type: r
                .artifact_type
                .clone()
                .unwrap_or_else(|| r.media_type.clone()),
            digest: r.digest.to_string(),
            size: size(r.size),
        })
        .collect();
    // Who moved the tag here, and when: its newest history entry.
    let moved = app
        .accounts
        .meta()
        .tag_history(repo, Some(tag), None, 1)
        .await?
        .into_iter()
        .next()
        .map(|m| (m.at, m.actor));
    let now = super::view::now();
    let name = display_name(repo).to_owned();
    let host = visitor.origin.host.clone();
    let scanned: Vec<(String, String)> = if summary.platforms.is_empty() {
        vec![(String::new(), digest.clone())]
    } else {
        summary
            .platforms
            .iter()
            .map(|p| (p.name.clone(), p.digest.clone()))
            .collect()
    };
    let scans = scan_views(app, repo, &scanned).await?;
    let page = TagPage {
        scans,
        layout: Layout::new(visitor, &format!("{name}:{tag}")),
        href: repository_href(repo.as_str()),
        pull_tag: format!("docker pull {host}/{name}:{tag}"),
        pull_digest: format!("docker pull {host}/{name}@{digest}"),
        platforms: summary
            .platforms
            .iter()
            .map(|p| PlatformRow {
                name: p.name.clone(),
                digest: p.digest.clone(),
                size: size(p.size),
            })
            .collect(),
        layers: summary
            .layers
            .iter()
            .map(|l| LayerRow {
                digest: l.digest.clone(),
                size: size(l.size),
                media_type: l.media_type.clone(),
            })
            .collect(),
        config: summary
            .config
            .as_ref()
            .map(|(d, s)| format!("{d} ({})", size(*s)))
            .unwrap_or_default(),
        referrers,
        pushed: moved
            .as_ref()
            .map(|(at, _)| ago(*at, now))
            .unwrap_or_default(),
        pushed_by: moved.map(|(_, actor)| actor).unwrap_or_default(),
        summary,
        name,
        tag: tag.to_owned(),
        digest,
    };
    Ok(html(&page))
}

#[derive(Template)]
#[template(path = "repository_settings.html")]
struct SettingsPage {
    layout: Layout,
    name: String,
    href: String,
    /// Where the forms post (official images too, by their full name).
    form_action: String,
    public: bool,
    description: String,
    policies: Vec<PolicyRow>,
    saved: bool,
    inherits_from_namespace: bool,
}

async fn settings_page(
    app: &AppState,
    visitor: &mut Visitor,
    repo: &RepoName,
    saved: bool,
) -> Result<Response, WebError> {
    let href = repository_href(repo.as_str());
    let settings_href = format!("{href}/-/settings");
    require_manager(app, visitor, repo.namespace(), &settings_href).await?;
    let card = app
        .accounts
        .meta()
        .repository_card(repo)
        .await?
        .ok_or_else(WebError::not_found)?;
    let page = SettingsPage {
        layout: Layout::new(visitor, &format!("{} – settings", display_name(repo))),
        name: display_name(repo).to_owned(),
        href,
        form_action: format!("/r/{repo}/-/settings"),
        public: card.public,
        description: card.description,
        policies: policy_rows(app, repo.as_str()).await?,
        saved,
        inherits_from_namespace: true,
    };
    Ok(html(&page))
}

/// `POST /r/NAME/-/settings` (and `/_/…`): one change per form.
pub async fn post(
    State(app): State<Arc<AppState>>,
    Path(path): Path<String>,
    request: Request,
) -> Response {
    let (parts, form) = match Form::read(&app, request).await {
        Ok(read) => read,
        Err(e) => return e.bare(),
    };
    let visitor = match Visitor::of(&app, &parts).await {
        Ok(v) => v,
        Err(e) => return e.bare(),
    };
    let outcome = async {
        visitor.check_form(&parts.headers, &form)?;
        let Target::Settings(repo) = parse_target(&path, false)? else {
            return Err(WebError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "only settings take forms",
            ));
        };
        let settings_href = format!("{}/-/settings", repository_href(repo.as_str()));
        require_manager(&app, &visitor, repo.namespace(), &settings_href).await?;
        let meta = app.accounts.meta();
        if meta.repository_card(&repo).await?.is_none() {
            return Err(WebError::not_found());
        }
        match form.get("action").unwrap_or_default() {
            "visibility" => {
                let public = match form.get("visibility").unwrap_or_default() {
                    "public" => true,
                    "private" => false,
                    other => return Err(WebError::invalid(format!("visibility {other:?}"))),
                };
                meta.set_repository_visibility(&repo, public).await?;
            }
            "description" => {
                let text = form.get("description").unwrap_or_default();
                let text = checked_description(text).map_err(WebError::invalid)?;
                if !meta.set_repository_description(&repo, text).await? {
                    return Err(WebError::not_found());
                }
            }
            "policy" => save_policy(&app, &visitor, repo.as_str(), &form).await?,
            other => return Err(WebError::invalid(format!("unknown action {other:?}"))),
        }
        let mut response = redirect(&format!("{settings_href}?saved"));
        crate::ops::audit::attach(&mut response, form.settings_event(&visitor, repo.as_str()));
        Ok(response)
    }
    .await;
    respond(visitor, outcome)
}
