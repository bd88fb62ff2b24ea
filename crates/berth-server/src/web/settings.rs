//! What namespace and repository settings share: the policy form (the keys of
//! [`crate::policy`], each set here, inherited, or off).

use super::{Form, Visitor, WebError};
use crate::http::AppState;
use crate::policy;

/// One policy key as a settings page shows it.
pub struct PolicyRow {
    pub key: &'static str,
    /// Set on this scope (empty: not set here).
    pub value: String,
    /// What applies when it is not set here.
    pub hint: &'static str,
}

pub async fn policy_rows(app: &AppState, scope: &str) -> Result<Vec<PolicyRow>, WebError> {
    let settings = app.accounts.meta().policies(&[scope]).await?;
    Ok(policy::KEYS
        .iter()
        .map(|key| PolicyRow {
            key,
            value: settings
                .iter()
                .find(|s| s.key == *key)
                .map(|s| s.value.clone())
                .unwrap_or_default(),
            hint: match *key {
                policy::FLOATING_TAGS => "semver or off",
                policy::IMMUTABLE_TAGS => "tag patterns such as *.*.*, or off",
                policy::RETENTION => "keep-last=10 unpulled=90d protect=latest, or off",
                _ => "off, warn or enforce",
            },
        })
        .collect())
}

/// Sets the policy the form names on `scope` (an empty value: inherit).
pub async fn save_policy(
    app: &AppState,
    visitor: &Visitor,
    scope: &str,
    form: &Form,
) -> Result<(), WebError> {
    let key = form.get("key").unwrap_or_default();
    let key = policy::KEYS
        .iter()
        .find(|k| **k == key)
        .ok_or_else(|| WebError::invalid(format!("unknown policy {key:?}")))?;
    let raw = form.get("value").unwrap_or_default().trim();
    let raw = if raw.is_empty() { policy::INHERIT } else { raw };
    let value = policy::normalize(key, raw).map_err(|e| WebError::invalid(e.to_string()))?;
    let actor = visitor.user().unwrap_or_default();
    app.accounts
        .meta()
        .set_policy(scope, key, value.as_deref(), actor)
        .await?;
    Ok(())
}

/// The signed-in visitor, if they may manage `namespace` with their credential.
pub async fn require_manager(
    app: &AppState,
    visitor: &Visitor,
    namespace: &str,
    here: &str,
) -> Result<(), WebError> {
    let caller = visitor.require_user(here)?;
    if !caller.principal.ceiling.contains(berth_core::Actions::ALL)
        || !app
            .accounts
            .may_manage(&caller.principal, namespace)
            .await?
    {
        return Err(WebError::not_found());
    }
    Ok(())
}
