//! Repository names, tags, manifest references and request routing.
//!
//! The input is a request line, `METHOD PATH` (no space: `GET` and the whole input as
//! the path). Checks, besides "no panic":
//! - the path and its last segment, parsed as a [`RepoName`], [`Tag`] and [`Reference`],
//!   round-trip through `to_string`, and whatever is accepted keeps the grammar's
//!   promises (length, alphabet, no empty, `.` or `..` component);
//! - [`Endpoint::parse`] never panics, and an endpoint it returns names a repository
//!   that round-trips and is exactly the raw path between `/v2/` and the marker (a bare
//!   name `NAME` being `library/NAME`).
#![no_main]

use std::str::FromStr;

use berth_core::endpoint::Endpoint;
use berth_core::name::{MAX_NAME_LEN, MAX_TAG_LEN};
use berth_core::{Reference, RepoName, Tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (method, path) = text.split_once(' ').unwrap_or(("GET", text));

    for candidate in [path, path.rsplit('/').next().unwrap_or(path)] {
        check_name(candidate);
        check_tag(candidate);
        check_reference(candidate);
    }

    if let Ok(endpoint) = Endpoint::parse(method, path)
        && let Some(name) = endpoint.repository()
    {
        round_trips(name);
        let rest = path
            .strip_prefix("/v2/")
            .expect("an endpoint with a repository comes from a /v2/ path");
        let written = name.as_str();
        let after = rest
            .strip_prefix(written)
            .or_else(|| {
                // A bare name in the path is the official `library/NAME`.
                let bare = written.strip_prefix("library/")?;
                rest.strip_prefix(bare).filter(|_| !bare.contains('/'))
            })
            .expect("the repository name is the start of the path");
        assert!(
            after.starts_with('/'),
            "the name ends at a segment boundary: {path:?} gave {name}"
        );
    }
});

fn round_trips<T>(value: &T)
where
    T: FromStr + std::fmt::Display + PartialEq + std::fmt::Debug,
    T::Err: std::fmt::Debug,
{
    let shown = value.to_string();
    let again: T = shown
        .parse()
        .unwrap_or_else(|e| panic!("{shown:?} does not re-parse: {e:?}"));
    assert_eq!(&again, value, "{shown:?} re-parses to something else");
    assert_eq!(again.to_string(), shown);
}

fn check_name(s: &str) {
    let Ok(name) = s.parse::<RepoName>() else {
        return;
    };
    round_trips(&name);
    if s.contains('/') {
        assert_eq!(name.as_str(), s);
    } else {
        assert_eq!(name.as_str(), format!("library/{s}"), "a bare name is official");
    }
    assert!(!s.is_empty() && s.len() <= MAX_NAME_LEN, "{s:?}");
    assert!(
        s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'/')),
        "{s:?}"
    );
    for component in s.split('/') {
        assert!(!matches!(component, "" | "." | ".."), "{s:?}");
        let first = component.as_bytes()[0];
        let last = component.as_bytes()[component.len() - 1];
        assert!(
            first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric(),
            "{s:?}"
        );
        assert!(
            !component.contains("..") && !component.contains("___"),
            "{s:?}"
        );
    }
    if s.contains('/') {
        assert!(s.starts_with(name.namespace()));
    } else {
        assert_eq!(name.namespace(), "library");
    }
}

fn check_tag(s: &str) {
    let Ok(tag) = s.parse::<Tag>() else {
        return;
    };
    round_trips(&tag);
    assert_eq!(tag.as_str(), s);
    assert!(!s.is_empty() && s.len() <= MAX_TAG_LEN, "{s:?}");
    assert!(!s.starts_with(['.', '-']), "{s:?}");
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')),
        "{s:?}"
    );
}

fn check_reference(s: &str) {
    let Ok(reference) = s.parse::<Reference>() else {
        return;
    };
    assert_eq!(reference.to_string(), s);
    let again: Reference = s.parse().expect("parsed once");
    assert_eq!(again, reference);
    match &reference {
        Reference::Tag(tag) => assert_eq!(tag.as_str(), s),
        Reference::Digest(digest) => assert_eq!(digest.to_string(), s),
    }
}
