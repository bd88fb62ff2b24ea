//! Retention: the `retention` policy on a namespace or repository removes old tags, on a
//! schedule (`--retention-interval`) or with `berth retention run [--dry-run]`.
//!
//! A rule is `keep-last=N match=GLOBS unpulled=DURATION protect=GLOBS` (any of them):
//! among the tags `match` names (all, without it) that `protect` does not, a tag stays if
//! it is one of the `keep-last` most recently pushed, or was pulled (or pushed) within
//! `unpulled`; the others go. A tag `protect` names is never removed. A repository's own
//! rule wins over its namespace's (`off` turns the namespace's off).
//!
//! A removed tag's manifest, when no other tag points at it, is deleted too, so its
//! blobs are released and the next garbage collection frees what nothing else uses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::tag_policy::TagPattern;
use berth_core::{Digest, RepoName, Tag};
use berth_meta::{MetaError, MetaStore, TagAge};

use crate::policy::RETENTION;

/// A retention rule, as the `retention` policy stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub keep_last: Option<u32>,
    /// Tags the rule is about (`None`: all).
    pub matching: Option<Vec<TagPattern>>,
    pub unpulled: Option<Duration>,
    /// Tags never removed.
    pub protect: Vec<TagPattern>,
}

impl Rule {
    /// `keep-last=10 match=v* unpulled=90d protect=latest,stable-*`.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let mut rule = Rule::default();
        for part in text.split_whitespace() {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: use key=value"))?;
            let globs = || {
                TagPattern::parse_list(value)
                    .map_err(|e| format!("{key}={value:?}: {e}"))
                    .and_then(|p| {
                        if p.is_empty() {
                            Err(format!("{key}: name at least one tag glob"))
                        } else {
                            Ok(p)
                        }
                    })
            };
            match key {
                "keep-last" => {
                    rule.keep_last = Some(
                        value
                            .parse()
                            .map_err(|_| format!("keep-last={value:?}: a number of tags"))?,
                    )
                }
                "match" => rule.matching = Some(globs()?),
                "unpulled" => {
                    let age = humantime::parse_duration(value)
                        .map_err(|_| format!("unpulled={value:?}: a duration such as 90d"))?;
                    if age.is_zero() {
                        return Err("unpulled: more than 0".into());
                    }
                    rule.unpulled = Some(age);
                }
                "protect" => rule.protect = globs()?,
                other => {
                    return Err(format!(
                        "{other:?}: use keep-last, match, unpulled and protect"
                    ));
                }
            }
        }
        if rule.keep_last.is_none() && rule.unpulled.is_none() {
            return Err("a rule needs keep-last=N or unpulled=DURATION (or both)".into());
        }
        Ok(rule)
    }

    /// The stored form.
    pub fn to_text(&self) -> String {
        let globs = |p: &[TagPattern]| {
            p.iter()
                .map(TagPattern::as_str)
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut parts = Vec::new();
        if let Some(n) = self.keep_last {
            parts.push(format!("keep-last={n}"));
        }
        if let Some(m) = &self.matching {
            parts.push(format!("match={}", globs(m)));
        }
        if let Some(age) = self.unpulled {
            parts.push(format!("unpulled={}", humantime::format_duration(age)).replace(' ', ""));
        }
        if !self.protect.is_empty() {
            parts.push(format!("protect={}", globs(&self.protect)));
        }
        parts.join(" ")
    }

    /// The tags of one repository this rule removes, with why.
    pub fn removals(&self, tags: &[TagAge], now: i64) -> Vec<(TagAge, String)> {
        let mut candidates: Vec<&TagAge> = tags
            .iter()
            .filter(|t| {
                self.matching
                    .as_ref()
                    .is_none_or(|m| m.iter().any(|p| p.matches(&t.name)))
            })
            .filter(|t| !self.protect.iter().any(|p| p.matches(&t.name)))
            .collect();
        // Most recently pushed first.
        candidates.sort_by_key(|t| std::cmp::Reverse((t.pushed_at, t.order)));
        let mut removed = Vec::new();
        for (rank, tag) in candidates.into_iter().enumerate() {
            let recent = self.keep_last.map(|n| rank < n as usize);
            let last_use = tag.pulled_at.unwrap_or(tag.pushed_at).max(tag.pushed_at);
            let used = self
                .unpulled
                .map(|age| last_use >= now - age.as_secs() as i64);
            // Kept by any rule that is set; removed when none keeps it.
            if recent == Some(true) || used == Some(true) {
                continue;
            }
            let why = match (self.keep_last, self.unpulled) {
                (Some(n), Some(age)) => format!(
                    "not among the {n} most recent, and not pulled for {}",
                    humantime::format_duration(age)
                ),
                (Some(n), None) => format!("not among the {n} most recent"),
                (None, Some(age)) => {
                    format!("not pulled for {}", humantime::format_duration(age))
                }
                (None, None) => continue,
            };
            removed.push((tag.clone(), why));
        }
        removed
    }
}

/// A tag retention removes (or, in a dry run, would).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub repository: RepoName,
    pub tag: String,
    pub digest: String,
    pub why: String,
}

/// What every retention rule in force would remove now.
pub async fn plan(meta: &dyn MetaStore, now: i64) -> Result<Vec<Removal>, MetaError> {
    let scopes = meta.policy_scopes(RETENTION).await?;
    let rule_of = |scope: &str| {
        scopes
            .iter()
            .find(|(s, _)| s == scope)
            .map(|(_, value)| value.as_str())
    };
    let mut removals = Vec::new();
    let mut seen: Vec<RepoName> = Vec::new();
    for (scope, _) in &scopes {
        for repository in meta.repositories_in(scope).await? {
            if seen.contains(&repository) {
                continue;
            }
            seen.push(repository.clone());
            // The repository's own setting wins over its namespace's.
            let text = rule_of(repository.as_str()).or_else(|| rule_of(repository.namespace()));
            let Some(rule) = text.and_then(|t| Rule::parse(t).ok()) else {
                continue;
            };
            let tags = meta.tag_ages(&repository).await?;
            for (tag, why) in rule.removals(&tags, now) {
                removals.push(Removal {
                    repository: repository.clone(),
                    tag: tag.name,
                    digest: tag.digest,
                    why,
                });
            }
        }
    }
    Ok(removals)
}

/// Removes what `plan` found: each tag, then each manifest no tag points at any more.
/// Recorded in the audit log as done by `retention`. Returns the tags removed.
pub async fn apply(meta: &dyn MetaStore, removals: &[Removal]) -> Result<usize, MetaError> {
    let mut removed = 0;
    for removal in removals {
        let Ok(tag) = removal.tag.parse::<Tag>() else {
            continue;
        };
        if !meta
            .delete_tag(&removal.repository, &tag, "retention")
            .await?
        {
            continue;
        }
        removed += 1;
        let detail = serde_json::json!({
            "tag": removal.tag, "digest": removal.digest, "why": removal.why,
        });
        let event = crate::ops::audit::event(
            "retention",
            "local",
            "retention-delete",
            Some(removal.repository.as_str()),
            detail,
        );
        crate::ops::audit::record_now(meta, &event).await;
        let still_tagged = meta
            .tag_ages(&removal.repository)
            .await?
            .iter()
            .any(|t| t.digest == removal.digest);
        if !still_tagged && let Ok(digest) = removal.digest.parse::<Digest>() {
            meta.delete_manifest(&removal.repository, &digest, "retention")
                .await?;
        }
    }
    Ok(removed)
}

/// Runs retention every `interval`, forever.
pub async fn run_periodically(meta: Arc<dyn MetaStore>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = crate::accounts::now();
        match plan(&*meta, now).await {
            Ok(removals) if removals.is_empty() => {}
            Ok(removals) => match apply(&*meta, &removals).await {
                Ok(n) => tracing::info!(removed = n, "retention removed tags"),
                Err(e) => tracing::warn!(error = %e, "retention failed"),
            },
            Err(e) => tracing::warn!(error = %e, "planning retention failed"),
        }
    }
}

/// Tag pulls recorded at most once a minute per tag, without holding up the pull.
#[derive(Default)]
pub struct TagPulls {
    noted: Mutex<HashMap<(String, String), i64>>,
}

/// Tags remembered before the map is cleared (a bound on its memory).
const MAX_NOTED: usize = 100_000;

impl TagPulls {
    pub fn note(&self, meta: &Arc<dyn MetaStore>, repository: &RepoName, tag: &str) {
        let now = crate::accounts::now();
        {
            let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
            let key = (repository.as_str().to_owned(), tag.to_owned());
            if noted.get(&key).is_some_and(|at| now - at < 60) {
                return;
            }
            if noted.len() >= MAX_NOTED {
                noted.clear();
            }
            noted.insert(key, now);
        }
        let (meta, repository, tag) = (meta.clone(), repository.clone(), tag.to_owned());
        tokio::spawn(async move {
            if let Err(e) = meta.record_tag_pull(&repository, &tag, now).await {
                tracing::warn!(error = %e, "recording a tag pull failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(name: &str, pushed_at: i64, pulled_at: Option<i64>) -> TagAge {
        TagAge {
            name: name.into(),
            digest: format!("sha256:{name}"),
            pushed_at,
            pulled_at,
            order: pushed_at,
        }
    }

    #[test]
    fn rules_read_and_write_back() {
        let rule =
            Rule::parse("keep-last=10 match=v* unpulled=90d protect=latest,stable-*").unwrap();
        assert_eq!(rule.keep_last, Some(10));
        assert_eq!(rule.unpulled, Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(Rule::parse(&rule.to_text()).unwrap(), rule);
        for bad in [
            "",
            "match=v*",
            "keep-last=x",
            "keep=3",
            "unpulled=0s",
            "protect=",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_tag_stays_when_any_part_of_the_rule_keeps_it() {
        let tags: Vec<TagAge> = (1..=6)
            .map(|i| age(&format!("v{i}"), i * 1000, (i == 2).then_some(9_500)))
            .chain([age("latest", 100, None)])
            .collect();
        let now = 10_000;
        let gone = |text: &str| {
            let rule = Rule::parse(text).unwrap();
            let mut names: Vec<String> = rule
                .removals(&tags, now)
                .into_iter()
                .map(|(t, _)| t.name)
                .collect();
            names.sort();
            names
        };
        assert_eq!(gone("keep-last=3"), ["latest", "v1", "v2", "v3"]);
        assert_eq!(gone("keep-last=3 protect=latest"), ["v1", "v2", "v3"]);
        assert_eq!(gone("keep-last=3 match=v*"), ["v1", "v2", "v3"]);
        // Pulled (or pushed) within 4,600 s: v2 (pulled at 9,500), v6 (pushed at 6,000).
        assert_eq!(
            gone("unpulled=4600s protect=latest"),
            ["v1", "v3", "v4", "v5"]
        );
        assert_eq!(
            gone("keep-last=1 unpulled=4600s protect=latest"),
            ["v1", "v3", "v4", "v5"]
        );
        assert_eq!(gone("keep-last=5 unpulled=4600s protect=latest"), ["v1"]);
    }
}
