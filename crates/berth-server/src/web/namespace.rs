//! A namespace's page (`/u/NAME`: its repositories, an organization's members) and its
//! settings (`/u/NAME/-/settings`: default visibility, members and roles, policies).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use berth_core::Role;
use berth_core::endpoint::{first_value, query_pairs};
use berth_meta::{NamespaceKind, RecentScope};

use super::settings::{PolicyRow, policy_rows, require_manager, save_policy};
use super::view::{Layout, RepoItem, now};
use super::{Form, Visitor, WebError, html, redirect, respond};
use crate::catalog::Annotations;
use crate::http::AppState;
use crate::marks::NamespaceMark;

/// Repositories on one page of a namespace.
const PER_PAGE: u32 = 50;

pub struct MemberRow {
    pub user: String,
    pub role: &'static str,
}

#[derive(Template)]
#[template(path = "namespace.html")]
struct NamespacePage {
    layout: Layout,
    name: String,
    /// `organization` or `user`.
    kind: &'static str,
    mark: &'static str,
    repositories: Vec<RepoItem>,
    /// Shown to the organization's members and administrators.
    members: Vec<MemberRow>,
    may_manage: bool,
    next: Option<String>,
    previous: Option<String>,
}

pub async fn page(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let mut visitor = match Visitor::of(&app, &parts).await {
        Ok(v) => v,
        Err(e) => return e.bare(),
    };
    let outcome = async {
        let meta = app.accounts.meta();
        let page_number: u32 = first_value(&query_pairs(parts.uri.query()), "page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(1)
            .max(1);
        let namespace = meta.namespace(&name).await?;
        let cards = meta
            .recent_repositories(
                visitor.viewer(),
                RecentScope::Namespace(&name),
                (page_number - 1).saturating_mul(PER_PAGE),
                PER_PAGE + 1,
            )
            .await?;
        if namespace.is_none() && cards.is_empty() && page_number == 1 {
            return Err(WebError::not_found());
        }
        let more = cards.len() > PER_PAGE as usize;
        let annotations = Annotations::load(meta).await?;
        let t = now();
        let repositories = annotations
            .list(cards.into_iter().take(PER_PAGE as usize).collect())
            .iter()
            .map(|l| RepoItem::from_listed(l, t))
            .collect();
        let principal = visitor.principal();
        let may_manage =
            visitor.user().is_some() && app.accounts.may_manage(&principal, &name).await?;
        let is_org = matches!(&namespace, Some(n) if n.kind == NamespaceKind::Org);
        let mut members = Vec::new();
        if is_org {
            let listed = meta.members(&name).await?.unwrap_or_default();
            let is_member = visitor
                .user()
                .is_some_and(|u| listed.iter().any(|m| m.user.as_str() == u));
            if is_member || principal.admin {
                members = listed
                    .iter()
                    .map(|m| MemberRow {
                        user: m.user.to_string(),
                        role: m.role.as_str(),
                    })
                    .collect();
            }
        }
        let mark = match annotations.marks().of(&name) {
            NamespaceMark::None => "",
            mark => mark.as_str(),
        };
        let link = |p: u32| format!("/u/{name}?page={p}");
        let page = NamespacePage {
            layout: Layout::new(&mut visitor, &name),
            kind: if is_org { "organization" } else { "user" },
            mark,
            repositories,
            members,
            may_manage,
            next: more.then(|| link(page_number + 1)),
            previous: (page_number > 1).then(|| link(page_number - 1)),
            name: name.clone(),
        };
        Ok::<_, WebError>(html(&page))
    }
    .await;
    respond(visitor, outcome)
}

#[derive(Template)]
#[template(path = "namespace_settings.html")]
struct SettingsPage {
    layout: Layout,
    name: String,
    /// `public`, `private` or empty (the server's default).
    default_visibility: &'static str,
    is_org: bool,
    members: Vec<MemberRow>,
    policies: Vec<PolicyRow>,
    saved: bool,
    form_action: String,
    inherits_from_namespace: bool,
}

async fn settings_page(
    app: &AppState,
    visitor: &mut Visitor,
    name: &str,
    saved: bool,
) -> Result<Response, WebError> {
    let here = format!("/u/{name}/-/settings");
    require_manager(app, visitor, name, &here).await?;
    let meta = app.accounts.meta();
    let namespace = meta
        .namespace(name)
        .await?
        .ok_or_else(WebError::not_found)?;
    let is_org = namespace.kind == NamespaceKind::Org;
    let members = if is_org {
        meta.members(name)
            .await?
            .unwrap_or_default()
            .iter()
            .map(|m| MemberRow {
                user: m.user.to_string(),
                role: m.role.as_str(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let page = SettingsPage {
        layout: Layout::new(visitor, &format!("{name} – settings")),
        name: name.to_owned(),
        default_visibility: match namespace.default_public {
            Some(true) => "public",
            Some(false) => "private",
            None => "",
        },
        is_org,
        members,
        policies: policy_rows(app, name).await?,
        saved,
        form_action: here.clone(),
        inherits_from_namespace: false,
    };
    Ok(html(&page))
}

pub async fn settings(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let mut visitor = match Visitor::of(&app, &parts).await {
        Ok(v) => v,
        Err(e) => return e.bare(),
    };
    let saved = parts.uri.query() == Some("saved");
    let outcome = settings_page(&app, &mut visitor, &name, saved).await;
    respond(visitor, outcome)
}

pub async fn save_settings(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
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
        let here = format!("/u/{name}/-/settings");
        require_manager(&app, &visitor, &name, &here).await?;
        let accounts = &app.accounts;
        if accounts.meta().namespace(&name).await?.is_none() {
            return Err(WebError::not_found());
        }
        match form.get("action").unwrap_or_default() {
            "visibility" => {
                let public = match form.get("visibility").unwrap_or_default() {
                    "public" => Some(true),
                    "private" => Some(false),
                    _ => None,
                };
                if !accounts.meta().set_namespace_default(&name, public).await? {
                    return Err(WebError::not_found());
                }
            }
            "member" => {
                let user = form.get("user").unwrap_or_default().trim();
                match form.get("role").unwrap_or_default() {
                    "remove" => accounts.remove_member(&name, user).await?,
                    role => {
                        let role: Role = role.parse().map_err(|e: berth_core::AccountError| {
                            WebError::invalid(e.to_string())
                        })?;
                        accounts.set_member(&name, user, role).await?;
                    }
                }
            }
            "policy" => save_policy(&app, &visitor, &name, &form).await?,
            other => return Err(WebError::invalid(format!("unknown action {other:?}"))),
        }
        let mut response = redirect(&format!("{here}?saved"));
        crate::ops::audit::attach(&mut response, form.settings_event(&visitor, &name));
        Ok::<_, WebError>(response)
    }
    .await;
    respond(visitor, outcome)
}
