//! What every page shows (the header: search box, who is signed in) and the small
//! formatting helpers pages share: sizes, times, URL parts.

use std::time::{Duration, UNIX_EPOCH};

use super::Visitor;
use crate::catalog::Listed;
use crate::marks::NamespaceMark;

/// The frame of every page.
pub struct Layout {
    pub title: String,
    pub user: Option<String>,
    pub csrf: String,
    /// The search box's text.
    pub query: String,
    /// Appended to asset URLs, so a new build's are fetched again.
    pub version: &'static str,
}

impl Layout {
    pub fn new(visitor: &mut Visitor, title: &str) -> Layout {
        Layout {
            title: title.to_owned(),
            user: visitor.user().map(str::to_owned),
            csrf: visitor.csrf_token(),
            query: String::new(),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// One repository in a listing, ready to show.
pub struct RepoItem {
    pub name: String,
    /// Its page.
    pub href: String,
    pub summary: String,
    pub mark: &'static str,
    pub golden: bool,
    pub private: bool,
    pub pushed: String,
    pub pushed_iso: String,
}

impl RepoItem {
    pub fn from_listed(listed: &Listed, now: i64) -> RepoItem {
        RepoItem {
            name: listed.short_name().to_owned(),
            href: repository_href(listed.card.name.as_str()),
            summary: super::markdown::summary(&listed.card.description),
            mark: match listed.mark {
                NamespaceMark::None => "",
                mark => mark.as_str(),
            },
            golden: listed.golden,
            private: !listed.card.public,
            pushed: listed.card.pushed_at.map_or_else(
                || "never pushed".to_owned(),
                |t| format!("pushed {}", ago(t, now)),
            ),
            pushed_iso: listed.card.pushed_at.map(iso).unwrap_or_default(),
        }
    }
}

/// A repository's page: official images at `/_/NAME`, others at `/r/NAMESPACE/NAME`.
pub fn repository_href(name: &str) -> String {
    match name
        .strip_prefix(berth_core::name::OFFICIAL_NAMESPACE)
        .and_then(|r| r.strip_prefix('/'))
    {
        Some(bare) => format!("/_/{bare}"),
        None => format!("/r/{name}"),
    }
}

pub fn now() -> i64 {
    crate::accounts::now()
}

/// `3 minutes ago`.
pub fn ago(t: i64, now: i64) -> String {
    let secs = (now - t).max(0);
    let (n, unit) = match secs {
        0..=59 => return "just now".into(),
        60..=3599 => (secs / 60, "minute"),
        3600..=86_399 => (secs / 3600, "hour"),
        86_400..=2_591_999 => (secs / 86_400, "day"),
        2_592_000..=31_535_999 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// `2026-12-03T10:04:20Z`.
pub fn iso(t: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `12.3 MB` (decimal units, as Docker shows sizes).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value < 10.0 {
        format!("{value:.2} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A query-string value.
pub fn url_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `sha256:0123456789ab`.
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", &hex[..hex.len().min(12)]),
        None => digest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1500), "1.50 kB");
        assert_eq!(size(31_400_000), "31.4 MB");
        assert_eq!(ago(100, 100), "just now");
        assert_eq!(ago(0, 120), "2 minutes ago");
        assert_eq!(ago(0, 3600), "1 hour ago");
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            short_digest("sha256:0123456789abcdef"),
            "sha256:0123456789ab"
        );
        assert_eq!(repository_href("library/redis"), "/_/redis");
        assert_eq!(repository_href("gallery/ui"), "/r/gallery/ui");
        assert_eq!(url_encode("/r/a b&c"), "%2Fr%2Fa+b%26c");
    }
}
