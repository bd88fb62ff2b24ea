//! OSV advisories (<https://ossf.github.io/osv-schema/>): the fields matching reads,
//! and reading them from JSON files, folders, and the per-ecosystem zip archives OSV
//! publishes.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ScanError;
use crate::matching::Severity;

/// Largest advisory document read (real ones are a few KiB; some list thousands of
/// versions).
const MAX_ADVISORY: u64 = 16 << 20;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Advisory {
    pub id: String,
    #[serde(default)]
    pub modified: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub severity: Vec<SeverityScore>,
    #[serde(default)]
    pub affected: Vec<Affected>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SeverityScore {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Affected {
    pub package: Option<AffectedPackage>,
    #[serde(default)]
    pub ranges: Vec<Range>,
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default)]
    pub severity: Vec<SeverityScore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecosystem_specific: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AffectedPackage {
    pub ecosystem: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Event {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

impl Advisory {
    /// The (ecosystem, package) pairs it is about, as [`lookup_key`] spells them.
    pub fn keys(&self) -> Vec<(String, String)> {
        let mut keys: Vec<_> = self
            .affected
            .iter()
            .filter_map(|a| a.package.as_ref())
            .map(|p| lookup_key(&p.ecosystem, &p.name))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Its severity: the database's own word where it gives one, else the highest CVSS
    /// base score's band.
    pub fn severity_for(&self, affected: &Affected) -> Severity {
        let word = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .and_then(|v| v.get("severity"))
                .and_then(|s| s.as_str())
                .and_then(Severity::from_word)
        };
        if let Some(s) = word(&affected.ecosystem_specific)
            .or_else(|| word(&affected.database_specific))
            .or_else(|| word(&self.database_specific))
        {
            return s;
        }
        affected
            .severity
            .iter()
            .chain(&self.severity)
            .filter_map(SeverityScore::severity)
            .max()
            .unwrap_or(Severity::Unknown)
    }
}

impl SeverityScore {
    fn severity(&self) -> Option<Severity> {
        match self.kind.as_str() {
            "CVSS_V3" => {
                let base: cvss::v3::Base = self.score.parse().ok()?;
                Some(Severity::from_score(base.score().value()))
            }
            _ => Severity::from_word(&self.score),
        }
    }
}

/// How an (ecosystem, package name) pair is looked up: ecosystem releases without their
/// `:LTS`-style qualifiers, Python names normalised as PEP 503 says.
pub fn lookup_key(ecosystem: &str, name: &str) -> (String, String) {
    let ecosystem = ecosystem.trim();
    let ecosystem = ecosystem.strip_suffix(":LTS").unwrap_or(ecosystem);
    let name = if ecosystem == "PyPI" {
        normalize_python_name(name)
    } else {
        name.trim().to_owned()
    };
    (ecosystem.to_owned(), name)
}

/// PEP 503: lowercase, runs of `-`, `_`, `.` become one `-`.
pub fn normalize_python_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            separator = true;
        } else {
            if separator && !out.is_empty() {
                out.push('-');
            }
            separator = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Reads every advisory under `path` (a JSON file, a folder of them, or a zip of
/// them), handing each with its JSON text to `each`. Withdrawn advisories are handed
/// too: importing one removes it.
pub fn read_path(
    path: &Path,
    each: &mut dyn FnMut(Advisory, String) -> Result<(), ScanError>,
) -> Result<(), ScanError> {
    let io = |e: std::io::Error| ScanError::Advisories(format!("{}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            let is_data =
                entry.is_dir() || entry.extension().is_some_and(|e| e == "json" || e == "zip");
            if is_data {
                read_path(&entry, each)?;
            }
        }
        return Ok(());
    }
    if path.extension().is_some_and(|e| e == "zip") {
        let mut archive = zip::ZipArchive::new(File::open(path).map_err(io)?)
            .map_err(|e| ScanError::Advisories(format!("{}: {e}", path.display())))?;
        for i in 0..archive.len() {
            let mut file = archive
                .by_index(i)
                .map_err(|e| ScanError::Advisories(format!("{}: {e}", path.display())))?;
            if !file.is_file() || !file.name().ends_with(".json") {
                continue;
            }
            let name = format!("{}:{}", path.display(), file.name());
            let text = read_limited(&mut file, &name)?;
            parse_one(&name, text, each)?;
        }
        return Ok(());
    }
    let text = read_limited(
        &mut File::open(path).map_err(io)?,
        &path.display().to_string(),
    )?;
    parse_one(&path.display().to_string(), text, each)
}

fn read_limited(reader: &mut dyn Read, name: &str) -> Result<String, ScanError> {
    let mut text = String::new();
    reader
        .take(MAX_ADVISORY + 1)
        .read_to_string(&mut text)
        .map_err(|e| ScanError::Advisories(format!("{name}: {e}")))?;
    if text.len() as u64 > MAX_ADVISORY {
        return Err(ScanError::Advisories(format!(
            "{name}: more than {MAX_ADVISORY} bytes"
        )));
    }
    Ok(text)
}

/// One advisory, or (as some exports are) a JSON array of them.
fn parse_one(
    name: &str,
    text: String,
    each: &mut dyn FnMut(Advisory, String) -> Result<(), ScanError>,
) -> Result<(), ScanError> {
    let bad =
        |e: serde_json::Error| ScanError::Advisories(format!("{name}: not an OSV advisory: {e}"));
    if text.trim_start().starts_with('[') {
        let all: Vec<serde_json::Value> = serde_json::from_str(&text).map_err(bad)?;
        for value in all {
            let advisory: Advisory = serde_json::from_value(value.clone()).map_err(bad)?;
            each(advisory, value.to_string())?;
        }
        return Ok(());
    }
    let advisory: Advisory = serde_json::from_str(&text).map_err(bad)?;
    each(advisory, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_keys_drop_qualifiers_and_normalise_python_names() {
        assert_eq!(
            lookup_key("Ubuntu:22.04:LTS", "openssl"),
            ("Ubuntu:22.04".into(), "openssl".into())
        );
        assert_eq!(
            lookup_key("PyPI", "Foo_Bar.baz"),
            ("PyPI".into(), "foo-bar-baz".into())
        );
        assert_eq!(
            lookup_key("Debian:12", "openssl"),
            ("Debian:12".into(), "openssl".into())
        );
    }

    #[test]
    fn severity_prefers_the_databases_word_then_cvss() {
        let advisory: Advisory = serde_json::from_str(
            r#"{"id":"X","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                "affected":[{"package":{"ecosystem":"npm","name":"a"}},
                            {"package":{"ecosystem":"npm","name":"b"},"database_specific":{"severity":"MODERATE"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            advisory.severity_for(&advisory.affected[0]),
            Severity::Critical
        );
        assert_eq!(
            advisory.severity_for(&advisory.affected[1]),
            Severity::Medium
        );
    }
}
