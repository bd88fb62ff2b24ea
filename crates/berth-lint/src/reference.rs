//! Image references normalised as Docker does (`ParseNormalizedNamed` of
//! distribution/reference): `golang` is `docker.io/library/golang`, `user/app:1` is
//! `docker.io/user/app:1`, and a first component holding `.` or `:`, or equal to
//! `localhost`, names a registry.

use std::fmt;

/// Docker Hub, where references without a registry go.
pub const DOCKER_HUB: &str = "docker.io";

/// The longest repository name (registry included) Docker accepts.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// The longest tag Docker accepts.
const TAG_LENGTH_MAX: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `ghcr.io`…
    pub registry: String,
    /// The path within the registry: `library/golang`, `gallery/base`.
    pub repository: String,
    /// The tag as written; `None` when the reference had none.
    pub tag: Option<String>,
    /// `sha256:<hex>` when the reference was pinned.
    pub digest: Option<String>,
}

/// Why a string is not an image reference. The message follows Docker's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReferenceError {
    pub message: String,
}

impl ReferenceError {
    fn new(message: impl Into<String>) -> ReferenceError {
        ReferenceError {
            message: message.into(),
        }
    }

    fn invalid_format() -> ReferenceError {
        ReferenceError::new("invalid reference format")
    }
}

impl Reference {
    /// Parses and normalises `text` as `docker pull` would.
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        if text.is_empty() {
            return Err(ReferenceError::new(
                "repository name must have at least one component",
            ));
        }
        if text.len() == 64 && is_lower_hex(text) {
            return Err(ReferenceError::new(format!(
                "invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
            )));
        }
        let (name_and_tag, digest) = match text.split_once('@') {
            Some((before, digest)) => (before, Some(parse_digest(digest)?)),
            None => (text, None),
        };
        let (name, tag) = split_tag(name_and_tag);
        let (registry, repository) = split_registry(name);
        if repository.to_lowercase() != repository {
            return Err(ReferenceError::new(format!(
                "invalid reference format: repository name ({repository}) must be lowercase"
            )));
        }
        if !is_valid_registry(registry) || !is_valid_path(&repository) {
            return Err(ReferenceError::invalid_format());
        }
        if registry.len() + 1 + repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::new(format!(
                "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
            )));
        }
        if let Some(tag) = tag
            && !is_valid_tag(tag)
        {
            return Err(ReferenceError::invalid_format());
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Whether a tag was written (a missing one means Docker pulls `latest`).
    pub fn has_explicit_tag(&self) -> bool {
        self.tag.is_some()
    }

    /// The tag Docker resolves when none is written and there is no digest.
    pub fn effective_tag(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => Some(tag),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }
}

/// The normalised form Docker pulls: `registry/repository[:tag][@digest]`, with `:latest`
/// added only when neither a tag nor a digest was written.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = self.effective_tag() {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Splits `name[:tag]`: a `:` after the last `/` starts a tag (an earlier one is a port).
pub(crate) fn split_tag(name_and_tag: &str) -> (&str, Option<&str>) {
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    match name_and_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_and_tag[..last_slash + i],
            Some(&name_and_tag[last_slash + i + 1..]),
        ),
        None => (name_and_tag, None),
    }
}

/// Docker's `splitDockerDomain`: the registry, and the repository with `library/` added
/// for official Docker Hub images.
pub(crate) fn split_registry(name: &str) -> (&str, String) {
    let (registry, remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    };
    let registry = if registry == "index.docker.io" {
        DOCKER_HUB
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !remainder.contains('/') {
        format!("library/{remainder}")
    } else {
        remainder.to_string()
    };
    (registry, repository)
}

/// `host[:port]`, the host a DNS name, an IPv4 address or a bracketed IPv6 address.
pub(crate) fn is_valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ipv6, after)) => {
                if ipv6.is_empty() || !ipv6.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                    return false;
                }
                match after {
                    "" => return true,
                    _ => match after.strip_prefix(':') {
                        Some(port) => ("ok", Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty() && host.split('.').all(is_valid_domain_component)
}

fn is_valid_domain_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// Path components: `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
pub(crate) fn is_valid_path(path: &str) -> bool {
    path.split('/').all(is_valid_path_component)
}

fn is_valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let mut i = 0;
    let mut expect_alnum = true;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            expect_alnum = false;
            i += 1;
            continue;
        }
        if expect_alnum {
            return false;
        }
        let separator_len = match b {
            b'.' => 1,
            b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
            b'_' => 1,
            b'-' => bytes[i..].iter().take_while(|b| **b == b'-').count(),
            _ => return false,
        };
        i += separator_len;
        expect_alnum = true;
    }
    !bytes.is_empty() && !expect_alnum
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(crate) fn is_valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    tag.len() <= TAG_LENGTH_MAX
        && (first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The algorithms go-digest knows, with their hex lengths.
fn parse_digest(digest: &str) -> Result<String, ReferenceError> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(ReferenceError::invalid_format());
    };
    let expected_len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ if is_digest_algorithm(algorithm) && hex.len() >= 32 => {
            return Err(ReferenceError::new("unsupported digest algorithm"));
        }
        _ => return Err(ReferenceError::invalid_format()),
    };
    if hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ReferenceError::invalid_format());
    }
    if !is_lower_hex(hex) {
        return Err(ReferenceError::new("invalid checksum digest format"));
    }
    if hex.len() != expected_len {
        return Err(ReferenceError::new("invalid checksum digest length"));
    }
    Ok(digest.to_string())
}

/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*`.
fn is_digest_algorithm(algorithm: &str) -> bool {
    algorithm.split(['-', '_', '+', '.']).all(|part| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric())
    })
}

fn is_lower_hex(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn normalised(text: &str) -> String {
        Reference::parse(text).unwrap().to_string()
    }

    #[test]
    fn official_images_go_to_docker_hub_library() {
        assert_eq!(normalised("golang"), "docker.io/library/golang:latest");
        assert_eq!(normalised("golang:1.22"), "docker.io/library/golang:1.22");
        assert_eq!(
            normalised("library/golang:1.22"),
            "docker.io/library/golang:1.22"
        );
        assert_eq!(
            normalised("docker.io/golang:1.22"),
            "docker.io/library/golang:1.22"
        );
        assert_eq!(
            normalised("index.docker.io/library/golang:1"),
            "docker.io/library/golang:1"
        );
    }

    #[test]
    fn user_images_stay_in_their_namespace() {
        assert_eq!(normalised("user/app:1"), "docker.io/user/app:1");
        assert_eq!(
            normalised("user/team/app"),
            "docker.io/user/team/app:latest"
        );
    }

    #[test]
    fn a_first_component_with_dot_colon_or_localhost_is_a_registry() {
        let r = Reference::parse("localhost:5000/gallery/ui:2.1").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "gallery/ui");
        assert_eq!(r.tag.as_deref(), Some("2.1"));
        assert_eq!(normalised("localhost/app"), "localhost/app:latest");
        assert_eq!(normalised("ghcr.io/org/app:v2"), "ghcr.io/org/app:v2");
        assert_eq!(normalised("registry:5000/app:1"), "registry:5000/app:1");
        assert_eq!(normalised("[::1]:5000/app:1"), "[::1]:5000/app:1");
    }

    #[test]
    fn a_port_without_a_slash_is_a_tag() {
        let r = Reference::parse("foo:5000").unwrap();
        assert_eq!(r.registry, DOCKER_HUB);
        assert_eq!(r.repository, "library/foo");
        assert_eq!(r.tag.as_deref(), Some("5000"));
    }

    #[test]
    fn digests_are_kept_and_a_missing_tag_is_remembered() {
        let r = Reference::parse(&format!("alpine@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag, None);
        assert!(!r.has_explicit_tag());
        assert_eq!(r.digest, Some(format!("sha256:{HEX}")));
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/alpine@sha256:{HEX}")
        );

        let r = Reference::parse(&format!("alpine:3.19@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("3.19"));
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/alpine:3.19@sha256:{HEX}")
        );

        let r = Reference::parse("alpine").unwrap();
        assert!(!r.has_explicit_tag());
        assert_eq!(r.effective_tag(), Some("latest"));
    }

    #[test]
    fn invalid_references_are_errors_not_panics() {
        for bad in [
            "",
            ":1",
            "Golang:1",
            "user/App",
            "alpine:",
            "alpine:-x",
            "alpine@sha256:abc",
            "alpine@sha256:zz",
            "alpine@md5:0123456789abcdef0123456789abcdef",
            "a//b",
            "-a/b",
            "host:port/x",
            "a b",
            "ALPINE",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be invalid");
        }
        assert_eq!(
            Reference::parse("Golang:1").unwrap_err().message,
            "invalid reference format: repository name (library/Golang) must be lowercase"
        );
        assert_eq!(
            Reference::parse(&format!("alpine@sha256:{}", HEX.to_uppercase()))
                .unwrap_err()
                .message,
            "invalid checksum digest format"
        );
        assert_eq!(
            Reference::parse(&format!("alpine@sha256:{HEX}00"))
                .unwrap_err()
                .message,
            "invalid checksum digest length"
        );
        assert!(Reference::parse(HEX).is_err());
    }

    #[test]
    fn an_upper_case_first_component_is_taken_as_a_registry() {
        // Docker's quirk: `Foo/bar` names registry `Foo`, which is a valid host name.
        let r = Reference::parse("Foo/bar:1").unwrap();
        assert_eq!(r.registry, "Foo");
        assert_eq!(r.repository, "bar");
    }

    #[test]
    fn path_separators_follow_the_grammar() {
        assert!(Reference::parse("a__b/c--d/e.f_g:1").is_ok());
        assert!(Reference::parse("a___b").is_err());
        assert!(Reference::parse("a..b").is_err());
        assert!(Reference::parse("a-").is_err());
    }
}
