//! What tag policies decide from tag names alone: which floating tags a semantic-version
//! push moves (`floating-tags semver`), and which tags are protected
//! (`immutable-tags PATTERN,…`).
//!
//! A *release* tag is `X.Y.Z`, optionally `v`-prefixed (`2.1.106`, `v2.1.106`), parsed
//! and ordered by the `semver` crate. Releases move the floats of their lines: `X.Y`,
//! `X` and `latest` (`v2.1`, `v2` and `latest` for `v`-prefixed ones); a float moves
//! only to the highest release of its line, among releases written the same way, so
//! no float ever goes backwards. Pre-releases (`2.2.0-rc.1`) and tags with build
//! metadata (`2.2.0_build.5`, `_` standing for `+`, which tags cannot hold) are
//! versions too, ordered by semver precedence, but never move a float.

use std::cmp::Ordering;

/// A tag parsed as a semantic version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagVersion {
    /// Written with a leading `v`.
    pub v_prefix: bool,
    pub version: semver::Version,
}

impl TagVersion {
    /// `X.Y.Z`, `vX.Y.Z`, with optional `-PRE` and `_BUILD` (or `+BUILD`).
    pub fn parse(tag: &str) -> Option<TagVersion> {
        let (v_prefix, rest) = match tag.strip_prefix('v') {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        if !rest.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        // Tags cannot hold `+`; `_` stands for it (as Helm does for OCI charts).
        let text = rest.replacen('_', "+", 1);
        let version = semver::Version::parse(&text).ok()?;
        Some(TagVersion { v_prefix, version })
    }

    /// A plain release (`X.Y.Z`): the only versions that move floats.
    pub fn is_release(&self) -> bool {
        self.version.pre.is_empty() && self.version.build.is_empty()
    }

    /// The floats this release belongs to, narrowest line first: `X.Y`, `X`, `latest`.
    pub fn float_lines(&self) -> [Line; 3] {
        let v = self.v_prefix;
        let (major, minor) = (self.version.major, self.version.minor);
        [
            Line::Minor { v, major, minor },
            Line::Major { v, major },
            Line::Latest { v },
        ]
    }

    /// Semver precedence (build metadata does not count).
    pub fn precedence(&self, other: &TagVersion) -> Ordering {
        self.version.cmp_precedence(&other.version)
    }
}

/// A line of releases that one floating tag follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// `X.Y` (or `vX.Y`): releases `X.Y.*`.
    Minor { v: bool, major: u64, minor: u64 },
    /// `X` (or `vX`): releases `X.*.*`.
    Major { v: bool, major: u64 },
    /// `latest`: every release written the same way.
    Latest { v: bool },
}

impl Line {
    /// The floating tag's name.
    pub fn tag(&self) -> String {
        let p = |v: bool| if v { "v" } else { "" };
        match *self {
            Line::Minor { v, major, minor } => format!("{}{major}.{minor}", p(v)),
            Line::Major { v, major } => format!("{}{major}", p(v)),
            Line::Latest { .. } => "latest".to_owned(),
        }
    }

    pub fn contains(&self, release: &TagVersion) -> bool {
        if !release.is_release() {
            return false;
        }
        let r = &release.version;
        match *self {
            Line::Minor { v, major, minor } => {
                release.v_prefix == v && r.major == major && r.minor == minor
            }
            Line::Major { v, major } => release.v_prefix == v && r.major == major,
            Line::Latest { v } => release.v_prefix == v,
        }
    }
}

/// The floating tags that pushing release tag `pushed` moves, given every tag the
/// repository holds (`existing`, which may or may not include `pushed`): each float
/// whose line has no release higher than `pushed`. Empty if `pushed` is not a release.
pub fn floats_moved_by<'a>(
    pushed: &str,
    existing: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let Some(pushed) = TagVersion::parse(pushed).filter(TagVersion::is_release) else {
        return Vec::new();
    };
    let releases: Vec<TagVersion> = existing
        .into_iter()
        .filter_map(TagVersion::parse)
        .filter(TagVersion::is_release)
        .collect();
    pushed
        .float_lines()
        .into_iter()
        .filter(|line| {
            !releases
                .iter()
                .any(|r| line.contains(r) && r.version > pushed.version)
        })
        .map(|line| line.tag())
        .collect()
}

/// A tag glob of the `immutable-tags` policy: `*` matches any run of characters, `?`
/// one; everything else matches itself (`*.*.*`, `release-*`, `v?.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPattern(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("tag pattern {0:?}: use tag characters (letters, digits, _ . -) and the globs * and ?")]
pub struct TagPatternError(pub String);

impl TagPattern {
    pub fn parse(text: &str) -> Result<TagPattern, TagPatternError> {
        let ok = !text.is_empty()
            && text.len() <= 128
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-*?".contains(c));
        if ok {
            Ok(TagPattern(text.to_owned()))
        } else {
            Err(TagPatternError(text.to_owned()))
        }
    }

    /// A comma-separated list (`*.*.*,release-*`); blanks around commas are ignored.
    pub fn parse_list(text: &str) -> Result<Vec<TagPattern>, TagPatternError> {
        text.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(TagPattern::parse)
            .collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, tag: &str) -> bool {
        glob_match(self.0.as_bytes(), tag.as_bytes())
    }
}

impl std::fmt::Display for TagPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `*` and `?` globbing, iteratively with one backtrack point (linear for tag-sized
/// inputs, no recursion).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(pushed: &str, existing: &[&str]) -> Vec<String> {
        floats_moved_by(pushed, existing.iter().copied())
    }

    #[test]
    fn the_issue_sequence_moves_each_float_only_forward() {
        assert_eq!(moved("2.1.106", &[]), ["2.1", "2", "latest"]);
        assert_eq!(moved("2.2.31", &["2.1.106"]), ["2.2", "2", "latest"]);
        assert_eq!(moved("2.1.107", &["2.1.106", "2.2.31"]), ["2.1"]);
        // An older fix of an older line moves nothing.
        assert!(moved("2.1.100", &["2.1.106", "2.2.31"]).is_empty());
        assert!(moved("1.9.0", &["2.1.106"]).contains(&"1.9".to_owned()));
        assert!(!moved("1.9.0", &["2.1.106"]).contains(&"latest".to_owned()));
    }

    #[test]
    fn re_pushing_the_highest_release_moves_its_floats_again() {
        assert_eq!(
            moved("2.2.31", &["2.2.31", "2.1.106"]),
            ["2.2", "2", "latest"]
        );
    }

    #[test]
    fn v_prefixed_releases_float_among_themselves() {
        assert_eq!(moved("v1.2.3", &["9.9.9"]), ["v1.2", "v1", "latest"]);
        assert_eq!(moved("1.0.0", &["v9.9.9"]), ["1.0", "1", "latest"]);
        assert_eq!(moved("v1.2.3", &["v1.3.0"]), ["v1.2"]);
    }

    #[test]
    fn pre_releases_and_build_metadata_never_move_floats() {
        assert!(moved("2.2.0-rc.1", &[]).is_empty());
        assert!(moved("2.2.0_build.5", &[]).is_empty());
        // ... and do not hold a release back either.
        assert_eq!(
            moved("2.1.0", &["2.2.0-rc.1", "3.0.0-beta"]),
            ["2.1", "2", "latest"]
        );
    }

    #[test]
    fn numbers_compare_as_numbers_not_text() {
        assert_eq!(moved("2.10.0", &["2.9.0"]), ["2.10", "2", "latest"]);
        assert_eq!(moved("2.9.9", &["2.10.0"]), ["2.9"]);
    }

    #[test]
    fn what_is_not_a_release() {
        for tag in [
            "latest",
            "2",
            "2.1",
            "01.2.3",
            "2.1.x",
            "v",
            "vv1.2.3",
            "release-1.2.3",
        ] {
            assert!(moved(tag, &[]).is_empty(), "{tag}");
        }
    }

    #[test]
    fn precedence_follows_semver() {
        let p = |s| TagVersion::parse(s).unwrap();
        assert_eq!(p("1.0.0-alpha").precedence(&p("1.0.0")), Ordering::Less);
        assert_eq!(
            p("1.0.0-alpha.1").precedence(&p("1.0.0-alpha.beta")),
            Ordering::Less
        );
        assert_eq!(p("1.0.0_b1").precedence(&p("1.0.0_b2")), Ordering::Equal);
    }

    #[test]
    fn tag_globs() {
        let p = |s| TagPattern::parse(s).unwrap();
        assert!(p("*.*.*").matches("2.1.106"));
        assert!(!p("*.*.*").matches("2.1"));
        assert!(p("release-*").matches("release-2024"));
        assert!(!p("release-*").matches("prerelease-1"));
        assert!(p("v?.*").matches("v2.1"));
        assert!(!p("v?.*").matches("v10.1"));
        assert!(p("*").matches("anything"));
        assert!(p("latest").matches("latest"));
        assert!(!p("latest").matches("latest2"));
        assert!(p("a*b*c").matches("aXXbYYbc"));
        assert!(TagPattern::parse("a/b").is_err());
        assert!(TagPattern::parse("").is_err());
        assert_eq!(
            TagPattern::parse_list("*.*.*, release-*").unwrap(),
            vec![p("*.*.*"), p("release-*")]
        );
    }
}
