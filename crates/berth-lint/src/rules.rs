//! `berth lint`'s rules: each external image a Dockerfile uses must be a golden image,
//! tagged (not `latest`), pinned when asked, and valid; `--from` must name real stages.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::parser::{
    Dockerfile, ParseError, ParseOptions, Source, SourceKind, SourceTarget, parse_with_options,
};
use crate::reference::{Reference, is_valid_path, is_valid_registry, split_registry, split_tag};

/// A rule: a stable id (`BL001`), a stable name (`not-golden`) and one sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub id: &'static str,
    pub name: &'static str,
    pub summary: &'static str,
}

pub const PARSE_ERROR: Rule = Rule {
    id: "BL000",
    name: "parse-error",
    summary: "The Dockerfile cannot be read as BuildKit reads it, so nothing else was checked.",
};
pub const NOT_GOLDEN: Rule = Rule {
    id: "BL001",
    name: "not-golden",
    summary: "An image the build uses (FROM, COPY --from, RUN --mount from=) is not a golden image.",
};
pub const MISSING_TAG: Rule = Rule {
    id: "BL002",
    name: "missing-tag",
    summary: "An image reference has neither a tag nor a digest, so Docker pulls whatever `latest` is.",
};
pub const LATEST_TAG: Rule = Rule {
    id: "BL003",
    name: "latest-tag",
    summary: "An image reference uses the moving tag `latest` without a digest.",
};
pub const UNPINNED: Rule = Rule {
    id: "BL004",
    name: "unpinned",
    summary: "Digests are required and an image reference has no `@sha256:` digest.",
};
pub const INVALID_REFERENCE: Rule = Rule {
    id: "BL005",
    name: "invalid-reference",
    summary: "An image reference (after ARG substitution) is not a valid reference.",
};
pub const UNDEFINED_STAGE: Rule = Rule {
    id: "BL006",
    name: "undefined-stage",
    summary: "A --from or from= names no stage defined before it (and is not an image reference).",
};
pub const STAGE_NAME_CASE: Rule = Rule {
    id: "BL007",
    name: "stage-name-case",
    summary: "FROM names an earlier stage in other letter case, which BuildKit does not match.",
};

/// Every rule, in id order.
pub const RULES: [Rule; 8] = [
    PARSE_ERROR,
    NOT_GOLDEN,
    MISSING_TAG,
    LATEST_TAG,
    UNPINNED,
    INVALID_REFERENCE,
    UNDEFINED_STAGE,
    STAGE_NAME_CASE,
];

/// The rule with this id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|rule| rule.id == id)
}

/// One problem, at one line of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A rule id: `BL001`.
    pub rule: &'static str,
    /// The path as the caller gave it.
    pub file: String,
    /// 1-based: the first line of the instruction.
    pub line: u32,
    /// One line.
    pub message: String,
    /// The normalised image reference, for the caller to resolve a digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// What to write instead; `check` leaves it empty for the caller to fill in
    /// (`pin it: localhost:5000/gallery/base:2.1@sha256:…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
}

impl Finding {
    fn new(rule: &Rule, file: &str, line: u32, message: String) -> Finding {
        Finding {
            rule: rule.id,
            file: file.to_string(),
            line,
            message,
            reference: None,
            suggestion: None,
        }
    }

    /// A Dockerfile that does not parse, as a finding (rule BL000).
    pub fn parse_error(file: &str, error: &ParseError) -> Finding {
        Finding::new(&PARSE_ERROR, file, error.line.max(1), error.message.clone())
    }
}

/// What `check` enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// The golden images. An empty list allows no image at all.
    pub allowed: Vec<AllowPattern>,
    /// Every external reference must carry a digest (rule BL004).
    pub require_digest: bool,
}

/// `REPOSITORY[:TAG-GLOB]`: a repository normalised as Docker does (`golang` is
/// `docker.io/library/golang`), allowing every tag, or the tags matching a glob in which
/// `*` stands for any run of characters and `?` for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowPattern {
    pub registry: String,
    pub repository: String,
    pub tag_glob: Option<String>,
}

/// Why a pattern is not `REPOSITORY[:TAG-GLOB]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid golden image pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

impl AllowPattern {
    pub fn parse(text: &str) -> Result<AllowPattern, PatternError> {
        let error = |reason: &str| PatternError {
            pattern: text.to_string(),
            reason: reason.to_string(),
        };
        if text.contains('@') {
            return Err(error("a pattern names a repository and tags, not a digest"));
        }
        let (name, tag_glob) = split_tag(text);
        if let Some(glob) = tag_glob {
            let glob_chars_ok = glob
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*' | '?'));
            if glob.is_empty() || glob.len() > 128 || !glob_chars_ok {
                return Err(error(
                    "the tag glob may hold letters, digits, '_', '.', '-', '*' and '?'",
                ));
            }
        }
        let (registry, repository) = split_registry(name);
        if name.is_empty()
            || !is_valid_registry(registry)
            || !is_valid_path(&repository)
            || repository.to_lowercase() != repository
        {
            return Err(error("not a repository name"));
        }
        Ok(AllowPattern {
            registry: registry.to_string(),
            repository,
            tag_glob: tag_glob.map(str::to_string),
        })
    }

    /// Same repository, and a tag the glob matches. A reference with a digest and no tag
    /// matches only a pattern without a glob; one with neither is taken as `latest`.
    pub fn matches(&self, reference: &Reference) -> bool {
        if reference.registry != self.registry || reference.repository != self.repository {
            return false;
        }
        match &self.tag_glob {
            None => true,
            Some(glob) => reference
                .effective_tag()
                .is_some_and(|tag| glob_matches(glob, tag)),
        }
    }
}

impl FromStr for AllowPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<AllowPattern, PatternError> {
        AllowPattern::parse(text)
    }
}

impl fmt::Display for AllowPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(glob) = &self.tag_glob {
            write!(f, ":{glob}")?;
        }
        Ok(())
    }
}

/// `*` matches any run of characters, `?` exactly one; everything else itself.
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let glob: Vec<char> = glob.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point: the last `*` seen.
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some('*') => {
                star = Some((g, t));
                g += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                g += 1;
                t += 1;
            }
            _ => match star {
                Some((star_g, star_t)) => {
                    g = star_g + 1;
                    t = star_t + 1;
                    star = Some((star_g, star_t + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|&c| c == '*')
}

/// Parses `text` and checks it; a parse error becomes one BL000 finding.
pub fn check_text(
    file: &str,
    text: &str,
    parse_options: &ParseOptions,
    options: &CheckOptions,
) -> Vec<Finding> {
    match parse_with_options(text, parse_options) {
        Ok(dockerfile) => check(file, &dockerfile, options),
        Err(error) => vec![Finding::parse_error(file, &error)],
    }
}

/// Every finding for one parsed Dockerfile, in line order.
pub fn check(file: &str, dockerfile: &Dockerfile, options: &CheckOptions) -> Vec<Finding> {
    let mut findings = Vec::new();
    for source in &dockerfile.sources {
        match &source.target {
            SourceTarget::Image => check_image(file, source, options, &mut findings),
            SourceTarget::Scratch => {}
            SourceTarget::Stage(index) => {
                let stage_name = dockerfile
                    .stages
                    .get(*index)
                    .and_then(|stage| stage.name.as_deref());
                // BuildKit matches `COPY --from` case-insensitively but `FROM` exactly.
                if source.kind == SourceKind::From
                    && let Some(stage_name) = stage_name
                    && source.value != stage_name
                {
                    findings.push(Finding::new(
                        &STAGE_NAME_CASE,
                        file,
                        source.line,
                        format!(
                            "FROM {} means stage {stage_name} only if stage names ignore case; BuildKit would pull an image named {} instead (write FROM {stage_name})",
                            source.value, source.value
                        ),
                    ));
                }
            }
            SourceTarget::UndefinedStage(reason) => {
                findings.push(Finding::new(
                    &UNDEFINED_STAGE,
                    file,
                    source.line,
                    reason.clone(),
                ));
            }
        }
    }
    findings.sort_by_key(|finding| finding.line);
    findings
}

fn describe(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::From => "base image",
        SourceKind::CopyFrom => "COPY --from image",
        SourceKind::RunMountFrom => "RUN --mount image",
    }
}

fn check_image(file: &str, source: &Source, options: &CheckOptions, findings: &mut Vec<Finding>) {
    let what = describe(source.kind);
    let reference = match Reference::parse(&source.value) {
        Ok(reference) => reference,
        Err(error) => {
            let message = if source.value.is_empty() {
                format!(
                    "{} {} expands to an empty image name",
                    source.kind.instruction(),
                    source.written
                )
            } else if source.value != source.written {
                format!(
                    "{what} {:?} (written {:?}) is not a valid image reference: {error}",
                    source.value, source.written
                )
            } else {
                format!(
                    "{what} {:?} is not a valid image reference: {error}",
                    source.value
                )
            };
            findings.push(Finding::new(&INVALID_REFERENCE, file, source.line, message));
            return;
        }
    };
    let normalised = reference.to_string();
    let mut push = |rule: &Rule, message: String| {
        let mut finding = Finding::new(rule, file, source.line, message);
        finding.reference = Some(normalised.clone());
        findings.push(finding);
    };
    if !options
        .allowed
        .iter()
        .any(|pattern| pattern.matches(&reference))
    {
        push(
            &NOT_GOLDEN,
            format!("{what} {normalised} is not a golden image"),
        );
    }
    if reference.tag.is_none() && reference.digest.is_none() {
        push(
            &MISSING_TAG,
            format!(
                "{what} {} has no tag, so Docker pulls {normalised}",
                source.value
            ),
        );
    }
    if reference.tag.as_deref() == Some("latest") && reference.digest.is_none() {
        push(
            &LATEST_TAG,
            format!("{what} {normalised} uses the moving tag latest"),
        );
    }
    if options.require_digest && reference.digest.is_none() {
        push(
            &UNPINNED,
            format!("{what} {normalised} is not pinned by digest"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> AllowPattern {
        AllowPattern::parse(text).unwrap()
    }

    fn reference(text: &str) -> Reference {
        Reference::parse(text).unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob_matches("2.*", "2.1"));
        assert!(glob_matches("2.*", "2."));
        assert!(!glob_matches("2.*", "12.1"));
        assert!(glob_matches("*-alpine", "1.22-alpine"));
        assert!(glob_matches("1.2?", "1.22"));
        assert!(!glob_matches("1.2?", "1.2"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*b*c", "aXbYbZc"));
        assert!(!glob_matches("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn patterns_normalise_like_references() {
        let p = pattern("golang:1.*");
        assert_eq!(p.to_string(), "docker.io/library/golang:1.*");
        assert!(p.matches(&reference("golang:1.22")));
        assert!(p.matches(&reference("docker.io/library/golang:1.22-alpine")));
        assert!(!p.matches(&reference("golang:2.0")));
        assert!(!p.matches(&reference("other/golang:1.22")));

        let p = pattern("localhost:5000/gallery/base");
        assert!(p.matches(&reference("localhost:5000/gallery/base:anything")));
        assert!(!p.matches(&reference("localhost:5001/gallery/base:1")));
    }

    #[test]
    fn digest_only_references_match_repository_patterns_only() {
        let digest = format!("alpine@sha256:{}", "a".repeat(64));
        assert!(pattern("alpine").matches(&reference(&digest)));
        assert!(!pattern("alpine:*").matches(&reference(&digest)));
        let tagged = format!("alpine:3.19@sha256:{}", "a".repeat(64));
        assert!(pattern("alpine:3.*").matches(&reference(&tagged)));
    }

    #[test]
    fn untagged_references_are_taken_as_latest() {
        assert!(pattern("alpine:latest").matches(&reference("alpine")));
        assert!(!pattern("alpine:3.*").matches(&reference("alpine")));
    }

    #[test]
    fn bad_patterns_are_errors() {
        for bad in [
            "",
            "Golang",
            "golang:",
            "golang:1.[2]",
            "a@sha256:x",
            "host:x/y",
        ] {
            assert!(AllowPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rule_ids_are_unique_and_ordered() {
        let ids: Vec<&str> = RULES.iter().map(|rule| rule.id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted);
        assert_eq!(rule("BL004").map(|r| r.name), Some("unpinned"));
    }
}
