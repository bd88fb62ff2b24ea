//! What an image holds: its operating system and packages, read from the files the
//! layers showed ([`crate::layers`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::layers::{Files, Found, Wanted};
use crate::rpm;

/// The packaging system a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageKind {
    Deb,
    Apk,
    Rpm,
    Pypi,
    Npm,
}

impl PackageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageKind::Deb => "deb",
            PackageKind::Apk => "apk",
            PackageKind::Rpm => "rpm",
            PackageKind::Pypi => "pypi",
            PackageKind::Npm => "npm",
        }
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub kind: PackageKind,
    pub name: String,
    /// As the package manager writes it (`1:2.3-1`, `1.2.3-r0`, `2:1.0-3.el9`).
    pub version: String,
    /// The source package it was built from, when it names one (Debian `Source:`,
    /// Alpine origin, RPM source rpm's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The source package's version where it differs from `version` (Debian's
    /// `Source: name (version)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Where it was found (for language packages, which may be installed twice).
    pub path: String,
}

/// The image's operating system, from `os-release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Os {
    /// `debian`, `alpine`, `rocky`, ...
    pub id: String,
    /// `12`, `3.19.1`, `9.3`.
    pub version_id: String,
    #[serde(default)]
    pub pretty_name: String,
}

/// An image's inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub os: Option<Os>,
    pub packages: Vec<Package>,
    /// What could not be read, for the record (a too-large file, a broken database).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Inventory {
    /// Builds the inventory from an image's wanted files.
    pub async fn from_files(files: &Files) -> Inventory {
        let mut inventory = Inventory::default();
        let mut packages = BTreeSet::new();
        let mut os_release: Option<&[u8]> = None;
        for (path, (wanted, found)) in &files.files {
            let text = match found {
                Found::Text(text) => text.as_slice(),
                Found::File(file) if *wanted == Wanted::RpmSqlite => {
                    match read_rpm_sqlite(file.path()).await {
                        Ok(found) => packages.extend(found.into_iter().map(|mut p| {
                            p.path = path.clone();
                            p
                        })),
                        Err(why) => inventory.notes.push(format!("{path}: {why}")),
                    }
                    continue;
                }
                Found::File(_) => continue,
                Found::Skipped(why) => {
                    if *wanted != Wanted::OsRelease {
                        inventory.notes.push(why.clone());
                    }
                    continue;
                }
            };
            match wanted {
                // etc/ sorts first and wins over usr/lib/.
                Wanted::OsRelease => {
                    os_release.get_or_insert(text);
                }
                Wanted::DpkgStatus | Wanted::DpkgStatusFile => {
                    packages.extend(dpkg_packages(text, path))
                }
                Wanted::ApkInstalled => packages.extend(apk_packages(text, path)),
                Wanted::PythonMetadata => packages.extend(python_package(text, path)),
                Wanted::NpmPackage => packages.extend(npm_package(text, path)),
                Wanted::RpmSqlite => {}
            }
        }
        inventory.os = os_release.and_then(parse_os_release);
        inventory.notes.extend(files.truncated.clone());
        inventory.packages = packages.into_iter().collect();
        inventory
    }
}

/// `KEY=value` lines, values optionally quoted.
fn parse_os_release(text: &[u8]) -> Option<Os> {
    let text = String::from_utf8_lossy(text);
    let mut os = Os {
        id: String::new(),
        version_id: String::new(),
        pretty_name: String::new(),
    };
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').trim_matches('\'').to_owned();
        match key {
            "ID" => os.id = value.to_ascii_lowercase(),
            "VERSION_ID" => os.version_id = value,
            "PRETTY_NAME" => os.pretty_name = value,
            _ => {}
        }
    }
    (!os.id.is_empty()).then_some(os)
}

/// Paragraphs of `Field: value` lines (continuations start with a space), as dpkg's
/// status file and apk's installed database (`K:value`, no space) both are.
fn paragraphs(text: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = String::from_utf8_lossy(text);
    let mut all = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                all.push(std::mem::take(&mut current));
            }
        } else if line.starts_with([' ', '\t']) {
            // A continuation line: descriptions and conffiles, never a field we read.
        } else if let Some((key, value)) = line.split_once(':') {
            current.push((key.to_owned(), value.trim().to_owned()));
        }
    }
    if !current.is_empty() {
        all.push(current);
    }
    all
}

fn field<'a>(paragraph: &'a [(String, String)], key: &str) -> Option<&'a str> {
    paragraph
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Installed packages of a dpkg status file (or a distroless `status.d/` file).
fn dpkg_packages(text: &[u8], path: &str) -> Vec<Package> {
    paragraphs(text)
        .iter()
        .filter_map(|p| {
            // distroless files may leave Status out; what dpkg lists as removed
            // (`deinstall ok config-files`) is not installed.
            if let Some(status) = field(p, "Status")
                && status.split_whitespace().last() != Some("installed")
            {
                return None;
            }
            let name = field(p, "Package")?;
            let version = field(p, "Version")?;
            let (source, source_version) = match field(p, "Source") {
                Some(source) => match source.split_once('(') {
                    Some((name, version)) => (
                        Some(name.trim().to_owned()),
                        Some(version.trim_end_matches(')').trim().to_owned()),
                    ),
                    None => (Some(source.to_owned()), None),
                },
                None => (None, None),
            };
            Some(Package {
                kind: PackageKind::Deb,
                name: name.to_owned(),
                version: version.to_owned(),
                source,
                source_version,
                arch: field(p, "Architecture").map(str::to_owned),
                license: None,
                path: path.to_owned(),
            })
        })
        .collect()
}

/// Packages of apk's `installed` database: `P:` name, `V:` version, `o:` origin.
fn apk_packages(text: &[u8], path: &str) -> Vec<Package> {
    paragraphs(text)
        .iter()
        .filter_map(|p| {
            let value = |key: &str| {
                p.iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .filter(|v| !v.is_empty())
            };
            Some(Package {
                kind: PackageKind::Apk,
                name: value("P")?,
                version: value("V")?,
                source: value("o"),
                source_version: None,
                arch: value("A"),
                license: value("L"),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// A Python distribution's `METADATA` headers (`Name:`, `Version:`).
fn python_package(text: &[u8], path: &str) -> Option<Package> {
    let text = String::from_utf8_lossy(text);
    let header = |key: &str| {
        text.lines()
            .take_while(|l| !l.trim().is_empty())
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            })
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    Some(Package {
        kind: PackageKind::Pypi,
        name: header("Name")?,
        version: header("Version")?,
        source: None,
        source_version: None,
        arch: None,
        license: header("License").filter(|l| l.len() < 100),
        path: path.to_owned(),
    })
}

/// An npm package's `package.json` (`name`, `version`).
fn npm_package(text: &[u8], path: &str) -> Option<Package> {
    #[derive(Deserialize)]
    struct PackageJson {
        name: Option<String>,
        version: Option<String>,
        license: Option<serde_json::Value>,
    }
    let parsed: PackageJson = serde_json::from_slice(text).ok()?;
    Some(Package {
        kind: PackageKind::Npm,
        name: parsed.name.filter(|n| !n.is_empty())?,
        version: parsed.version.filter(|v| !v.is_empty())?,
        source: None,
        source_version: None,
        arch: None,
        license: parsed.license.and_then(|l| l.as_str().map(str::to_owned)),
        path: path.to_owned(),
    })
}

/// The packages of an RPM database in SQLite form (rpm 4.16 and later).
async fn read_rpm_sqlite(file: &std::path::Path) -> Result<Vec<Package>, String> {
    // A pushed database is untrusted: no schema-defined functions, and `Packages` must be
    // a table (a view could compute rows without end), read up to a bound.
    let options = SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .immutable(true)
        .pragma("trusted_schema", "OFF");
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| e.to_string())?;
    let is_table: Option<String> = sqlx::query_scalar(
        "SELECT type FROM sqlite_master WHERE name = 'Packages' AND type = 'table'",
    )
    .fetch_optional(&pool)
    .await
    .map_err(|e| e.to_string())?;
    if is_table.is_none() {
        pool.close().await;
        return Err("no Packages table".into());
    }
    let blobs: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT blob FROM Packages WHERE length(blob) <= 16777216 ORDER BY hnum LIMIT 100000",
    )
    .fetch_all(&pool)
    .await
    .map_err(|e| e.to_string())?;
    pool.close().await;
    let mut packages = Vec::with_capacity(blobs.len());
    for blob in blobs {
        let header = rpm::Header::parse(&blob).map_err(|e| e.to_string())?;
        // The database's own pseudo-package for imported keys has no arch.
        if header.name == "gpg-pubkey" {
            continue;
        }
        packages.push(Package {
            kind: PackageKind::Rpm,
            version: header.evr(),
            source: header.source_name(),
            source_version: None,
            name: header.name,
            arch: header.arch,
            license: header.license,
            path: String::new(),
        });
    }
    Ok(packages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_keeps_installed_packages_and_their_sources() {
        let status = b"Package: libssl3\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u2\nSource: openssl\nArchitecture: amd64\nDescription: x\n more text\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1.0-1\n\nPackage: libfoo1\nStatus: install ok installed\nSource: foo (1.2-3)\nVersion: 1:1.2-3+b1\n";
        let packages = dpkg_packages(status, "var/lib/dpkg/status");
        let got: Vec<_> = packages
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_str(),
                    p.source.as_deref(),
                    p.source_version.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("libssl3", "3.0.11-1~deb12u2", Some("openssl"), None),
                ("libfoo1", "1:1.2-3+b1", Some("foo"), Some("1.2-3")),
            ]
        );
    }

    #[test]
    fn apk_installed_reads_name_version_and_origin() {
        let db = b"C:Q1abc=\nP:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\nL:Apache-2.0\nF:lib\nR:libcrypto.so.3\n\nP:musl\nV:1.2.4_git20230717-r4\n";
        let got: Vec<_> = apk_packages(db, "lib/apk/db/installed")
            .into_iter()
            .map(|p| (p.name, p.version, p.source))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "libcrypto3".into(),
                    "3.1.4-r5".into(),
                    Some("openssl".into())
                ),
                ("musl".into(), "1.2.4_git20230717-r4".into(), None),
            ]
        );
    }

    #[test]
    fn os_release_values_may_be_quoted() {
        let os = parse_os_release(
            b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        )
        .unwrap();
        assert_eq!((os.id.as_str(), os.version_id.as_str()), ("debian", "12"));
        assert!(parse_os_release(b"NAME=x\n").is_none());
    }
}
