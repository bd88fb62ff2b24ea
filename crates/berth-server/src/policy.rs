//! Policies on a namespace (`gallery`) or a repository (`gallery/ui`): what each key
//! means, which values it takes, and the effective policy of a repository (its own
//! setting wins over its namespace's). Stored as text in the metadata store.

use berth_core::tag_policy::{TagPattern, floats_moved_by};
use berth_core::{Digest, RepoName, Tag};
use berth_meta::{MetaError, MetaStore, PolicySetting};

/// `floating-tags semver|off`.
pub const FLOATING_TAGS: &str = "floating-tags";
/// `immutable-tags PATTERN[,PATTERN…]|off`.
pub const IMMUTABLE_TAGS: &str = "immutable-tags";
/// `require-golden-base off|warn|enforce`.
pub const REQUIRE_GOLDEN_BASE: &str = "require-golden-base";

/// A namespace's storage quota in bytes (`berth namespace quota`), kept with the
/// policies but set apart from them: by administrators only.
pub const STORAGE_QUOTA: &str = "storage-quota";

/// `retention keep-last=N match=GLOBS unpulled=DURATION protect=GLOBS|off` (see
/// [`crate::retention`]).
pub const RETENTION: &str = "retention";

/// `block-vulnerable critical|high|medium|off`: pulls of images with findings that
/// bad or worse are refused, except for callers who may push (see [`crate::scanning`]).
pub const BLOCK_VULNERABLE: &str = "block-vulnerable";
/// `allow-vulnerabilities ID[,ID…]|off`: advisories (or their CVE aliases) accepted,
/// which `block-vulnerable` then ignores.
pub const ALLOW_VULNERABILITIES: &str = "allow-vulnerabilities";

/// Every key, for listings and error messages.
pub const KEYS: [&str; 6] = [
    FLOATING_TAGS,
    IMMUTABLE_TAGS,
    REQUIRE_GOLDEN_BASE,
    RETENTION,
    BLOCK_VULNERABLE,
    ALLOW_VULNERABILITIES,
];

/// The value that removes a setting, so the namespace's (or nothing) applies again.
pub const INHERIT: &str = "inherit";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error(
        "unknown policy {0:?}: use one of floating-tags, immutable-tags, require-golden-base, retention, block-vulnerable, allow-vulnerabilities"
    )]
    UnknownKey(String),
    #[error("{key} {value:?}: {expected}")]
    InvalidValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("scope {0:?}: use a namespace (gallery) or a repository (gallery/ui)")]
    InvalidScope(String),
}

/// How `require-golden-base` treats an image not built on a golden image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GoldenMode {
    #[default]
    Off,
    /// Accepted, with a warning recorded.
    Warn,
    /// Refused with `DENIED`.
    Enforce,
}

/// The policy in force for one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectivePolicy {
    pub semver_floats: bool,
    pub immutable: Vec<TagPattern>,
    pub golden: GoldenMode,
}

impl EffectivePolicy {
    /// Whether `tag` may not move once it exists.
    pub fn is_immutable(&self, tag: &str) -> bool {
        self.immutable.iter().any(|p| p.matches(tag))
    }
}

/// A scope checked: a namespace, or a repository (whose namespace it names).
pub fn check_scope(scope: &str) -> Result<(), PolicyError> {
    let ok = if scope.contains('/') {
        scope.parse::<RepoName>().is_ok()
    } else {
        // A namespace is a repository name's first component.
        format!("{scope}/x").parse::<RepoName>().is_ok()
    };
    if ok {
        Ok(())
    } else {
        Err(PolicyError::InvalidScope(scope.to_owned()))
    }
}

/// Checks a value for `key` and returns it in its stored form (`None`: remove the
/// setting). `off` is stored, so that a repository can turn off its namespace's policy.
pub fn normalize(key: &str, value: &str) -> Result<Option<String>, PolicyError> {
    let value = value.trim();
    if value == INHERIT {
        if !KEYS.contains(&key) {
            return Err(PolicyError::UnknownKey(key.to_owned()));
        }
        return Ok(None);
    }
    let invalid = |expected| PolicyError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        expected,
    };
    match key {
        FLOATING_TAGS => match value {
            "semver" | "off" => Ok(Some(value.to_owned())),
            _ => Err(invalid("use semver, off or inherit")),
        },
        IMMUTABLE_TAGS => {
            if value == "off" {
                return Ok(Some("off".to_owned()));
            }
            let patterns = TagPattern::parse_list(value).map_err(|_| {
                invalid("use tag globs separated by commas (*.*.*,release-*), off or inherit")
            })?;
            if patterns.is_empty() {
                return Err(invalid("name at least one tag glob"));
            }
            let list: Vec<&str> = patterns.iter().map(TagPattern::as_str).collect();
            Ok(Some(list.join(",")))
        }
        REQUIRE_GOLDEN_BASE => match value {
            "off" | "warn" | "enforce" => Ok(Some(value.to_owned())),
            _ => Err(invalid("use off, warn, enforce or inherit")),
        },
        RETENTION => {
            if value == "off" {
                return Ok(Some("off".to_owned()));
            }
            crate::retention::Rule::parse(value)
                .map(|rule| Some(rule.to_text()))
                .map_err(|_| {
                    invalid(
                        "use keep-last=N and/or unpulled=DURATION, with match=GLOBS and \
                         protect=GLOBS if wanted, or off or inherit",
                    )
                })
        }
        BLOCK_VULNERABLE => match value {
            "critical" | "high" | "medium" | "off" => Ok(Some(value.to_owned())),
            _ => Err(invalid("use critical, high, medium, off or inherit")),
        },
        ALLOW_VULNERABILITIES => {
            if value == "off" {
                return Ok(Some("off".to_owned()));
            }
            let ids: Vec<&str> = value
                .split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .collect();
            let valid = |id: &&str| {
                id.len() <= 128
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
            };
            if ids.is_empty() || !ids.iter().all(valid) {
                return Err(invalid(
                    "use advisory ids or CVE ids separated by commas (DSA-5678-1,CVE-2024-1234), off or inherit",
                ));
            }
            Ok(Some(ids.join(",")))
        }
        other => Err(PolicyError::UnknownKey(other.to_owned())),
    }
}

/// A namespace's storage quota among `settings` (read for it or its repositories).
pub fn quota_in(settings: &[PolicySetting], namespace: &str) -> Option<u64> {
    settings
        .iter()
        .find(|s| s.key == STORAGE_QUOTA && s.scope == namespace)
        .and_then(|s| s.value.parse().ok())
}

/// The settings of `repository` and its namespace, combined: per key, the repository's
/// wins.
pub fn effective(repository: &RepoName, settings: &[PolicySetting]) -> EffectivePolicy {
    let value = |key: &str| {
        let own = settings
            .iter()
            .find(|s| s.key == key && s.scope == repository.as_str());
        let namespace = settings
            .iter()
            .find(|s| s.key == key && s.scope == repository.namespace());
        own.or(namespace).map(|s| s.value.as_str())
    };
    EffectivePolicy {
        semver_floats: value(FLOATING_TAGS) == Some("semver"),
        immutable: match value(IMMUTABLE_TAGS) {
            None | Some("off") => Vec::new(),
            Some(list) => TagPattern::parse_list(list).unwrap_or_default(),
        },
        golden: match value(REQUIRE_GOLDEN_BASE) {
            Some("warn") => GoldenMode::Warn,
            Some("enforce") => GoldenMode::Enforce,
            _ => GoldenMode::Off,
        },
    }
}

/// Reads the policy in force for `repository`.
pub async fn for_repository(
    meta: &dyn MetaStore,
    repository: &RepoName,
) -> Result<EffectivePolicy, MetaError> {
    let settings = meta
        .policies(&[repository.namespace(), repository.as_str()])
        .await?;
    Ok(effective(repository, &settings))
}

/// What pushing `tag` would move: [`plan_tag_push`].
#[derive(Debug)]
pub struct TagPushPlan {
    pub policy: EffectivePolicy,
    /// The pushed tag first, then the floats that would follow it.
    pub moves: Vec<PlannedMove>,
}

#[derive(Debug)]
pub struct PlannedMove {
    pub tag: String,
    /// The manifest it points at now.
    pub current: Option<Digest>,
    /// Protected by `immutable-tags`: a push of another manifest would be refused.
    pub immutable: bool,
}

/// The dry run of a push of `tag` to `repository` under its policy now: which tags
/// would point at the pushed manifest, and where they point today.
pub async fn plan_tag_push(
    meta: &dyn MetaStore,
    repository: &RepoName,
    tag: &Tag,
) -> Result<TagPushPlan, MetaError> {
    let policy = for_repository(meta, repository).await?;
    let mut names = vec![tag.as_str().to_owned()];
    if policy.semver_floats {
        let mut existing = Vec::new();
        let mut last: Option<String> = None;
        while let Some(page) = meta.list_tags(repository, last.as_deref(), 10_000).await? {
            existing.extend(page.items.iter().cloned());
            if !page.more {
                break;
            }
            last = page.items.last().cloned();
        }
        let floats = floats_moved_by(tag.as_str(), existing.iter().map(String::as_str));
        names.extend(floats.into_iter().filter(|f| f != tag.as_str()));
    }
    let mut moves = Vec::with_capacity(names.len());
    for name in names {
        let current = match name.parse::<Tag>() {
            Ok(t) => meta
                .manifest_by_tag(repository, &t)
                .await?
                .map(|m| m.digest),
            Err(_) => None,
        };
        moves.push(PlannedMove {
            immutable: name == tag.as_str() && policy.is_immutable(&name),
            tag: name,
            current,
        });
    }
    Ok(TagPushPlan { policy, moves })
}

/// `namespace`'s storage quota in bytes, if it has one.
pub async fn quota_of(meta: &dyn MetaStore, namespace: &str) -> Result<Option<u64>, MetaError> {
    let settings = meta.policies(&[namespace]).await?;
    Ok(quota_in(&settings, namespace))
}

/// Sets (`None`: removes) `namespace`'s storage quota.
pub async fn set_quota(
    meta: &dyn MetaStore,
    namespace: &str,
    bytes: Option<u64>,
    actor: &str,
) -> Result<(), MetaError> {
    let value = bytes.map(|b| b.to_string());
    meta.set_policy(namespace, STORAGE_QUOTA, value.as_deref(), actor)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(scope: &str, key: &str, value: &str) -> PolicySetting {
        PolicySetting {
            scope: scope.into(),
            key: key.into(),
            value: value.into(),
            updated_by: "root".into(),
            updated_at: 1,
        }
    }

    #[test]
    fn a_repository_setting_wins_over_its_namespace() {
        let repo: RepoName = "gallery/ui".parse().unwrap();
        let settings = [
            setting("gallery", FLOATING_TAGS, "semver"),
            setting("gallery", IMMUTABLE_TAGS, "*.*.*"),
            setting("gallery/ui", IMMUTABLE_TAGS, "off"),
            setting("gallery/ui", REQUIRE_GOLDEN_BASE, "enforce"),
        ];
        let p = effective(&repo, &settings);
        assert!(p.semver_floats);
        assert!(p.immutable.is_empty());
        assert_eq!(p.golden, GoldenMode::Enforce);
        let other: RepoName = "gallery/api".parse().unwrap();
        let p = effective(&other, &settings);
        assert!(p.is_immutable("2.1.106") && !p.is_immutable("2.1"));
        assert_eq!(p.golden, GoldenMode::Off);
    }

    #[test]
    fn values_are_checked_and_normalized() {
        assert_eq!(
            normalize(FLOATING_TAGS, "semver"),
            Ok(Some("semver".into()))
        );
        assert_eq!(normalize(FLOATING_TAGS, "inherit"), Ok(None));
        assert!(normalize(FLOATING_TAGS, "calver").is_err());
        assert_eq!(
            normalize(IMMUTABLE_TAGS, " *.*.* , release-* "),
            Ok(Some("*.*.*,release-*".into()))
        );
        assert!(normalize(IMMUTABLE_TAGS, "a/b").is_err());
        assert!(normalize(IMMUTABLE_TAGS, ",").is_err());
        assert_eq!(
            normalize(REQUIRE_GOLDEN_BASE, "warn"),
            Ok(Some("warn".into()))
        );
        assert!(normalize(REQUIRE_GOLDEN_BASE, "yes").is_err());
        assert!(matches!(
            normalize("colour", "red"),
            Err(PolicyError::UnknownKey(_))
        ));
        assert!(matches!(
            normalize("colour", "inherit"),
            Err(PolicyError::UnknownKey(_))
        ));
    }

    #[test]
    fn scopes() {
        assert!(check_scope("gallery").is_ok());
        assert!(check_scope("gallery/ui").is_ok());
        assert!(check_scope("gallery/ui/web").is_ok());
        assert!(check_scope("Gallery").is_err());
        assert!(check_scope("").is_err());
        assert!(check_scope("gallery/").is_err());
    }
}
