//! Repository names, tags and manifest references, validated on construction.
//!
//! Grammar (distribution-spec): a name is path components separated by `/`, each
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`; a tag is `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// Longest repository name accepted (Distribution's limit, host part excluded).
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag (distribution-spec).
pub const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid repository name {0:?}: {1}")]
    InvalidName(String, &'static str),
    #[error("invalid tag {0:?}: tags are [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    InvalidTag(String),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A validated repository name such as `gallery/ui`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first path component: the account or organization that owns the repository.
    pub fn namespace(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

pub(crate) fn is_component(c: &str) -> bool {
    // Alphanumeric runs joined by one '.', one or two '_', or any number of '-'.
    let bytes = c.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |why| Err(NameError::InvalidName(s.to_owned(), why));
        if s.is_empty() {
            return invalid("the name is empty");
        }
        if s.len() > MAX_NAME_LEN {
            return invalid("the name is longer than 255 characters");
        }
        for component in s.split('/') {
            if component.is_empty() {
                return invalid("a path component is empty");
            }
            if !is_component(component) {
                return invalid(
                    "components are lowercase letters and digits joined by '.', '_', '__' or '-'",
                );
            }
        }
        if s.contains('/') {
            Ok(RepoName(s.to_owned()))
        } else {
            // A bare name is an official image, as on Docker Hub: `alpine` is
            // `library/alpine` (`localhost:5000/alpine` pulls it).
            let full = format!("{OFFICIAL_NAMESPACE}/{s}");
            if full.len() > MAX_NAME_LEN {
                return invalid("the name is longer than 255 characters");
            }
            Ok(RepoName(full))
        }
    }
}

/// Splits `REPO[:TAG]` (or `REPO:TAG-GLOB`) at the `:` after the last `/`; nothing is
/// validated.
pub fn split_tag(reference: &str) -> (&str, Option<&str>) {
    let slash = reference.rfind('/').unwrap_or(0);
    match reference[slash..].find(':') {
        Some(i) => (&reference[..slash + i], Some(&reference[slash + i + 1..])),
        None => (reference, None),
    }
}

/// The namespace of official images, and of bare names.
pub const OFFICIAL_NAMESPACE: &str = "library";

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A validated tag such as `2.1.106` or `latest`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_');
        let rest_ok = b
            .iter()
            .skip(1)
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if first_ok && rest_ok && b.len() <= MAX_TAG_LEN {
            Ok(Tag(s.to_owned()))
        } else {
            Err(NameError::InvalidTag(s.to_owned()))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Tags cannot contain ':', digests always do.
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for ok in [
            "a",
            "gallery/ui",
            "diamol/ch03-lab",
            "a/b/c/d",
            "foo.bar/baz__qux",
            "x--y",
            "ab_cd",
            "0/1",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_bare_name_is_an_official_image() {
        let alpine: RepoName = "alpine".parse().unwrap();
        assert_eq!(alpine.as_str(), "library/alpine");
        assert_eq!(alpine.namespace(), "library");
        assert_eq!(
            "library/alpine".parse::<RepoName>().unwrap(),
            alpine,
            "written out, the same repository"
        );
        assert!(
            "x".repeat(248).parse::<RepoName>().is_err(),
            "too long once qualified"
        );
    }

    #[test]
    fn rejects_invalid_names() {
        let long = "a".repeat(256);
        for bad in [
            "",
            "/",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "a/./b",
            "Upper/case",
            "a_",
            "-a",
            "a___b",
            "a..b",
            "a b",
            "a:b",
            long.as_str(),
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn namespace_is_first_component() {
        let n: RepoName = "gallery/ui".parse().unwrap();
        assert_eq!(n.namespace(), "gallery");
    }

    #[test]
    fn tags() {
        for ok in ["latest", "2.1.106", "_x", "V1-rc.2", &"a".repeat(128)] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(bad.parse::<Tag>().is_err(), "{bad}");
        }
    }

    #[test]
    fn references_split_on_colon() {
        assert!(matches!("v1".parse::<Reference>(), Ok(Reference::Tag(_))));
        assert!(matches!(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse::<Reference>(),
            Ok(Reference::Digest(_))
        ));
        assert!("sha256:zz".parse::<Reference>().is_err());
    }
}
