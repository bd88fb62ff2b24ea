//! Matching an inventory against advisories, by each ecosystem's own version order.
//!
//! An image's OS packages are looked up in the ecosystem of its release (`Debian:12`,
//! `Alpine:v3.19`, `Rocky Linux:9`): an advisory for another release never matches.
//! Debian and Alpine advisories name source packages, so a binary package is looked up
//! by its source (its own name when it has none), with the source's version.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::inventory::{Inventory, Os, Package, PackageKind};
use crate::osv::{Advisory, lookup_key};
use crate::versions;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The words databases use (GitHub's `MODERATE`, Red Hat's `Important`, ...).
    pub fn from_word(word: &str) -> Option<Severity> {
        Some(match word.trim().to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" | "important" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" | "negligible" => Severity::Low,
            "unknown" => Severity::Unknown,
            _ => return None,
        })
    }

    /// CVSS base score bands.
    pub fn from_score(score: f64) -> Severity {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::Unknown,
        }
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Severity, String> {
        Severity::from_word(s).ok_or_else(|| format!("unknown severity {s:?}"))
    }
}

/// A known vulnerability affecting an installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub package: String,
    pub kind: PackageKind,
    pub installed: String,
    /// The first version without it, when there is one.
    pub fixed: Option<String>,
    pub severity: Severity,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub summary: String,
}

/// The OSV ecosystem an image's OS packages are in, if advisories exist for it.
pub fn os_ecosystem(os: &Os) -> Option<String> {
    let version = os.version_id.as_str();
    let major = version.split('.').next().unwrap_or(version);
    let major_minor = version.split('.').take(2).collect::<Vec<_>>().join(".");
    Some(match os.id.as_str() {
        "debian" => format!("Debian:{major}"),
        "ubuntu" => format!("Ubuntu:{version}"),
        "alpine" => format!("Alpine:v{major_minor}"),
        "rocky" => format!("Rocky Linux:{major}"),
        "almalinux" => format!("AlmaLinux:{major}"),
        "opensuse-leap" => format!("openSUSE:Leap {version}"),
        "mageia" => format!("Mageia:{version}"),
        _ => return None,
    })
}

/// Where (ecosystem, name) and which version of a package to look up.
fn lookups(package: &Package, os_ecosystem: Option<&str>) -> Vec<(String, String, String)> {
    let os = |name: &str, version: &str| {
        os_ecosystem.map(|e| {
            let (ecosystem, name) = lookup_key(e, name);
            (ecosystem, name, version.to_owned())
        })
    };
    match package.kind {
        // Advisories name the source package, and Debian's compare its version.
        PackageKind::Deb | PackageKind::Apk => {
            let name = package.source.as_deref().unwrap_or(&package.name);
            let version = match (&package.source, &package.source_version) {
                (Some(_), Some(v)) => v.as_str(),
                _ => package.version.as_str(),
            };
            os(name, version).into_iter().collect()
        }
        // RPM advisories name binary packages; some name the source instead.
        PackageKind::Rpm => {
            let mut all: Vec<_> = os(&package.name, &package.version).into_iter().collect();
            if let Some(source) = package.source.as_deref().filter(|s| *s != package.name) {
                all.extend(os(source, &package.version));
            }
            all
        }
        PackageKind::Pypi => {
            let (e, n) = lookup_key("PyPI", &package.name);
            vec![(e, n, package.version.clone())]
        }
        PackageKind::Npm => vec![("npm".into(), package.name.clone(), package.version.clone())],
    }
}

/// The keys an inventory's packages are looked up by (to fetch only those advisories).
pub fn lookup_keys(inventory: &Inventory) -> Vec<(String, String)> {
    let os = inventory.os.as_ref().and_then(os_ecosystem);
    let mut keys: Vec<_> = inventory
        .packages
        .iter()
        .flat_map(|p| lookups(p, os.as_deref()))
        .map(|(e, n, _)| (e, n))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Advisories by the (ecosystem, package) they affect: each key lists the advisories'
/// `affected` entries about it (found once, when added, not at each match).
#[derive(Default)]
pub struct AdvisoryIndex {
    by_key: HashMap<(String, String), Vec<Entry>>,
    count: usize,
}

/// One `affected` entry of an advisory, ready to match: its ranges' events sorted in
/// the ecosystem's version order once, when indexed.
struct Entry {
    advisory: Arc<Advisory>,
    affected: usize,
    /// The ecosystem's order, for `versions` (exact versions listed).
    exact: Option<Compare>,
    ranges: Vec<(Compare, Vec<(EventKind, String)>)>,
}

impl Entry {
    fn new(advisory: Arc<Advisory>, affected: usize, ecosystem: &str) -> Entry {
        let ranges = advisory.affected[affected]
            .ranges
            .iter()
            .filter_map(|range| {
                let cmp = compare_for(ecosystem, &range.kind)?;
                Some((cmp, sorted_events(&range.events, cmp)))
            })
            .collect();
        Entry {
            exact: compare_for(ecosystem, "ECOSYSTEM"),
            advisory,
            affected,
            ranges,
        }
    }

    /// Whether `version` is affected; `Some(fixed)` (the first fixed version above it,
    /// if any) when it is.
    fn affects(&self, version: &str) -> Option<Option<String>> {
        for (cmp, events) in &self.ranges {
            if let Some(fixed) = walk(events, version, *cmp) {
                return Some(fixed);
            }
        }
        let listed = self.advisory.affected[self.affected]
            .versions
            .iter()
            .any(|v| match self.exact {
                Some(cmp) => cmp(v, version) == Some(Ordering::Equal),
                None => v == version,
            });
        listed.then_some(None)
    }
}

impl AdvisoryIndex {
    pub fn new() -> AdvisoryIndex {
        AdvisoryIndex::default()
    }

    /// Adds one advisory (a withdrawn one is left out).
    pub fn add(&mut self, advisory: Advisory) {
        if advisory.withdrawn.is_some() {
            return;
        }
        let advisory = Arc::new(advisory);
        for (i, affected) in advisory.affected.iter().enumerate() {
            if let Some(p) = &affected.package {
                let key = lookup_key(&p.ecosystem, &p.name);
                let entry = Entry::new(advisory.clone(), i, &key.0);
                self.by_key.entry(key).or_default().push(entry);
            }
        }
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The findings for an inventory, sorted, one per advisory and package.
    pub fn findings(&self, inventory: &Inventory) -> Vec<Finding> {
        let os = inventory.os.as_ref().and_then(os_ecosystem);
        let mut findings = Vec::new();
        for package in &inventory.packages {
            for (ecosystem, name, version) in lookups(package, os.as_deref()) {
                let key = (ecosystem, name);
                let Some(entries) = self.by_key.get(&key) else {
                    continue;
                };
                for entry in entries {
                    let (advisory, affected) =
                        (&entry.advisory, &entry.advisory.affected[entry.affected]);
                    if let Some(fixed) = entry.affects(&version) {
                        findings.push(Finding {
                            id: advisory.id.clone(),
                            package: package.name.clone(),
                            kind: package.kind,
                            installed: package.version.clone(),
                            fixed,
                            severity: advisory.severity_for(affected),
                            aliases: advisory.aliases.clone(),
                            summary: advisory.summary.clone(),
                        });
                    }
                }
            }
        }
        findings.sort_by(|a, b| {
            (&a.id, &a.package, &a.installed).cmp(&(&b.id, &b.package, &b.installed))
        });
        findings
            .dedup_by(|a, b| a.id == b.id && a.package == b.package && a.installed == b.installed);
        findings
    }
}

/// A version order: `None` when a version cannot be read under the ecosystem's rules.
type Compare = fn(&str, &str) -> Option<Ordering>;

fn compare_for(ecosystem: &str, range_kind: &str) -> Option<Compare> {
    if range_kind == "SEMVER" {
        return Some(semver_compare);
    }
    if range_kind != "ECOSYSTEM" {
        return None;
    }
    let base = ecosystem.split(':').next().unwrap_or(ecosystem);
    Some(match base {
        "Debian" | "Ubuntu" => |a, b| Some(versions::dpkg_compare(a, b)),
        "Alpine" => |a, b| Some(versions::apk_compare(a, b)),
        "Rocky Linux" | "AlmaLinux" | "Red Hat" | "openSUSE" | "SUSE" | "Mageia" => {
            |a, b| Some(versions::rpm_compare(a, b))
        }
        "PyPI" => pep440_compare,
        "npm" | "crates.io" | "Go" => semver_compare,
        _ => return None,
    })
}

fn semver_compare(a: &str, b: &str) -> Option<Ordering> {
    let parse = |v: &str| semver::Version::parse(v.trim().trim_start_matches(['v', '='])).ok();
    Some(parse(a)?.cmp_precedence(&parse(b)?))
}

fn pep440_compare(a: &str, b: &str) -> Option<Ordering> {
    let parse = |v: &str| pep440_rs::Version::from_str(v.trim()).ok();
    Some(parse(a)?.cmp(&parse(b)?))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EventKind {
    Introduced,
    Fixed,
    LastAffected,
    Limit,
}

/// A range's events in version order (`"0"` first; versions the order cannot read sort
/// as equal and are skipped by [`walk`]).
fn sorted_events(events: &[crate::osv::Event], cmp: Compare) -> Vec<(EventKind, String)> {
    let mut flat: Vec<(EventKind, String)> = Vec::new();
    for e in events {
        for (kind, v) in [
            (EventKind::Introduced, &e.introduced),
            (EventKind::Fixed, &e.fixed),
            (EventKind::LastAffected, &e.last_affected),
            (EventKind::Limit, &e.limit),
        ] {
            if let Some(v) = v {
                flat.push((kind, v.clone()));
            }
        }
    }
    let order = |a: &str, b: &str| match (a == "0", b == "0") {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => cmp(a, b).unwrap_or(Ordering::Equal),
    };
    // Insertion sort: an order that is not total (unreadable versions, RPM's missing
    // release) must not panic, as `sort_by` may; ranges have a handful of events.
    for i in 1..flat.len() {
        let mut j = i;
        while j > 0 && order(&flat[j - 1].1, &flat[j].1) == Ordering::Greater {
            flat.swap(j - 1, j);
            j -= 1;
        }
    }
    flat
}

/// Applies sorted events to `version` as the OSV schema says: `introduced` opens,
/// `fixed` and `limit` close at their version, `last_affected` closes after it.
/// `Some(fixed)` (the first fixed version above it, if any) when affected.
fn walk(events: &[(EventKind, String)], version: &str, cmp: Compare) -> Option<Option<String>> {
    let mut affected = false;
    let mut above = events.len();
    // Whether the ecosystem can read `version` at all: asked only where no comparison
    // says so (a `"0"` event needs none), as an unreadable version affects nothing.
    let mut readable = None;
    for (i, (kind, at)) in events.iter().enumerate() {
        let here = if at == "0" {
            if !*readable.get_or_insert_with(|| cmp(version, version).is_some()) {
                return None;
            }
            Some(Ordering::Greater)
        } else {
            cmp(version, at)
        };
        let Some(here) = here else { continue };
        if here == Ordering::Less {
            // Sorted: no later event applies to this version.
            above = i;
            break;
        }
        match kind {
            EventKind::Introduced => affected = true,
            EventKind::Fixed | EventKind::Limit => affected = false,
            EventKind::LastAffected if here == Ordering::Greater => affected = false,
            EventKind::LastAffected => {}
        }
    }
    if !affected {
        return None;
    }
    // The fix of this range: the next `fixed` above the version, before another range
    // opens or one closes otherwise.
    let fixed = events[above..]
        .iter()
        .take_while(|(kind, _)| *kind == EventKind::Fixed)
        .find(|(_, at)| cmp(version, at) == Some(Ordering::Less))
        .map(|(_, at)| at.clone());
    Some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Os;

    fn advisory(json: &str) -> Advisory {
        serde_json::from_str(json).unwrap()
    }

    fn deb(name: &str, version: &str, source: Option<&str>) -> Package {
        Package {
            kind: PackageKind::Deb,
            name: name.into(),
            version: version.into(),
            source: source.map(str::to_owned),
            source_version: None,
            arch: None,
            license: None,
            path: String::new(),
        }
    }

    fn debian(version: &str, packages: Vec<Package>) -> Inventory {
        Inventory {
            os: Some(Os {
                id: "debian".into(),
                version_id: version.into(),
                pretty_name: String::new(),
            }),
            packages,
            notes: vec![],
        }
    }

    #[test]
    fn debian_advisories_match_by_source_release_and_dpkg_order() {
        let mut index = AdvisoryIndex::new();
        index.add(advisory(
            r#"{"id":"DSA-1","affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},
                "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.13-1~deb12u1"}]}]}]}"#,
        ));
        index.add(advisory(
            r#"{"id":"DSA-2","affected":[{"package":{"ecosystem":"Debian:11","name":"openssl"},
                "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"9.9"}]}]}]}"#,
        ));
        index.add(advisory(
            r#"{"id":"DSA-3","withdrawn":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},
                "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]}]}"#,
        ));
        let image = debian(
            "12",
            vec![
                deb("libssl3", "3.0.11-1~deb12u2", Some("openssl")),
                deb("openssl", "3.0.13-1~deb12u1", None),
            ],
        );
        let found = index.findings(&image);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (
                found[0].id.as_str(),
                found[0].package.as_str(),
                found[0].fixed.as_deref()
            ),
            ("DSA-1", "libssl3", Some("3.0.13-1~deb12u1"))
        );
    }

    #[test]
    fn osv_events_open_and_close_ranges() {
        let events = |json: &str| -> Vec<crate::osv::Event> { serde_json::from_str(json).unwrap() };
        let semver: Compare = semver_compare;
        let two_ranges = events(
            r#"[{"introduced":"1.0.0"},{"fixed":"1.2.0"},{"introduced":"2.0.0"},{"last_affected":"2.1.0"}]"#,
        );
        for (version, want) in [
            ("0.9.0", None),
            ("1.0.0", Some(Some("1.2.0".to_owned()))),
            ("1.2.0-beta.1", Some(Some("1.2.0".to_owned()))),
            ("1.2.0", None),
            ("2.1.0", Some(None)),
            ("2.1.1", None),
        ] {
            let sorted = sorted_events(&two_ranges, semver);
            assert_eq!(walk(&sorted, version, semver), want, "{version}");
        }
    }

    #[test]
    fn python_versions_follow_pep_440() {
        assert_eq!(pep440_compare("2.0rc1", "2.0"), Some(Ordering::Less));
        assert_eq!(pep440_compare("1.0.post1", "1.0"), Some(Ordering::Greater));
        assert_eq!(pep440_compare("1.0.dev1", "1.0a1"), Some(Ordering::Less));
    }
}
