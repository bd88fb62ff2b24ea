//! Reading an image's layers for the few files an inventory needs, as the final
//! filesystem shows them.
//!
//! Layers are read top-most first: a path is decided by the highest layer that has it
//! or hides it, so lower copies are skipped without being kept. A whiteout (`.wh.NAME`)
//! hides NAME in the layers below its own; an opaque marker (`.wh..wh..opq`) hides
//! everything below its directory in the layers below. Each layer is streamed through
//! its decompressor and the tar reader once; only wanted files are kept (text in
//! memory up to [`MAX_TEXT_FILE`], databases in a scratch file).

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::path::Path;

use tempfile::NamedTempFile;

use crate::ScanError;

/// The largest text file kept (a Debian `status` of a large image is a few MiB).
pub const MAX_TEXT_FILE: u64 = 32 << 20;
/// The largest package database copied to a scratch file.
pub const MAX_DATABASE_FILE: u64 = 1 << 30;
/// What one image may make the scanner keep in memory, all text files together, and
/// how many wanted files and whiteout markers it may have: a crafted image gets a note,
/// not the server's memory.
pub const MAX_KEPT_BYTES: u64 = 256 << 20;
pub const MAX_WANTED_FILES: usize = 100_000;
pub const MAX_MARKERS: usize = 1_000_000;

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression of a layer media type, or `None` for a blob that is not a
    /// filesystem layer (foreign layers, artifacts' files).
    pub fn of_layer(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// What a wanted file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wanted {
    OsRelease,
    DpkgStatus,
    DpkgStatusFile,
    ApkInstalled,
    RpmSqlite,
    PythonMetadata,
    NpmPackage,
}

impl Wanted {
    /// Whether the inventory needs `path` (relative, no leading `/`), and what for.
    pub fn of(path: &str) -> Option<Wanted> {
        match path {
            "etc/os-release" | "usr/lib/os-release" => return Some(Wanted::OsRelease),
            "var/lib/dpkg/status" => return Some(Wanted::DpkgStatus),
            "lib/apk/db/installed" => return Some(Wanted::ApkInstalled),
            "var/lib/rpm/rpmdb.sqlite" | "usr/lib/sysimage/rpm/rpmdb.sqlite" => {
                return Some(Wanted::RpmSqlite);
            }
            _ => {}
        }
        if let Some(name) = path.strip_prefix("var/lib/dpkg/status.d/") {
            return (!name.contains('/') && !name.ends_with(".md5sums") && !name.is_empty())
                .then_some(Wanted::DpkgStatusFile);
        }
        let (dir, file) = path.rsplit_once('/')?;
        match file {
            "METADATA" if dir.ends_with(".dist-info") => Some(Wanted::PythonMetadata),
            "package.json" => {
                // node_modules/NAME/package.json or node_modules/@SCOPE/NAME/package.json
                let (parent, name) = dir.rsplit_once('/')?;
                let in_modules = parent.ends_with("node_modules")
                    || parent.rsplit_once('/').is_some_and(|(p, scope)| {
                        p.ends_with("node_modules") && scope.starts_with('@')
                    });
                (in_modules && !name.starts_with('.')).then_some(Wanted::NpmPackage)
            }
            _ => None,
        }
    }

    fn is_database(self) -> bool {
        self == Wanted::RpmSqlite
    }
}

/// A wanted file as the image's final filesystem has it.
#[derive(Debug)]
pub enum Found {
    Text(Vec<u8>),
    /// A database copied out of the layer (removed when dropped).
    File(NamedTempFile),
    /// Present but unusable here (a link, or too large), with why.
    Skipped(String),
}

/// Collects the wanted files of an image, one layer at a time, top-most first.
pub struct Collector<'s> {
    scratch: &'s Path,
    /// Decided paths: what the highest layer having them holds.
    found: BTreeMap<String, (Wanted, Found)>,
    /// Paths hidden from lower layers by whiteouts in the layers read so far.
    whited_out: HashSet<String>,
    /// Directories whose lower contents are hidden by opaque markers.
    opaque: HashSet<String>,
    layers: u32,
    /// Text bytes kept so far.
    kept: u64,
    /// Why something was left unread (a limit reached), once.
    truncated: Option<String>,
}

impl<'s> Collector<'s> {
    /// Database files are copied into `scratch` (a directory the caller removes).
    pub fn new(scratch: &'s Path) -> Collector<'s> {
        Collector {
            scratch,
            found: BTreeMap::new(),
            whited_out: HashSet::new(),
            opaque: HashSet::new(),
            layers: 0,
            kept: 0,
            truncated: None,
        }
    }

    /// Reads one layer, streaming; call with the top-most layer first.
    pub fn read_layer(
        &mut self,
        blob: impl Read,
        compression: Compression,
    ) -> Result<(), ScanError> {
        let reader: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(blob),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(blob)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(blob).map_err(layer)?),
        };
        let mut archive = tar::Archive::new(reader);
        // Markers take effect below this layer only; paths this layer decided may be
        // decided again by a later entry of the same layer (as extraction does).
        let mut whiteouts = Vec::new();
        let mut opaque = Vec::new();
        let mut this_layer: HashSet<String> = HashSet::new();
        for entry in archive.entries().map_err(layer)? {
            let mut entry = entry.map_err(layer)?;
            let path = normalize(&entry.path_bytes());
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            if name.starts_with(".wh.")
                && self.whited_out.len() + self.opaque.len() + whiteouts.len() + opaque.len()
                    >= MAX_MARKERS
            {
                self.truncated
                    .get_or_insert_with(|| format!("more than {MAX_MARKERS} whiteouts"));
                continue;
            }
            if name == ".wh..wh..opq" {
                opaque.push(dir.to_owned());
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                whiteouts.push(if dir.is_empty() {
                    hidden.to_owned()
                } else {
                    format!("{dir}/{hidden}")
                });
                continue;
            }
            let Some(wanted) = Wanted::of(&path) else {
                continue;
            };
            let decided_here = this_layer.contains(&path);
            if (self.found.contains_key(&path) && !decided_here) || self.hidden(&path) {
                continue;
            }
            if !decided_here && self.found.len() >= MAX_WANTED_FILES {
                self.truncated.get_or_insert_with(|| {
                    format!("more than {MAX_WANTED_FILES} package files: the rest not read")
                });
                continue;
            }
            let kind = entry.header().entry_type();
            let found = if kind.is_file() {
                let size = entry.size();
                if wanted.is_database() {
                    if size > MAX_DATABASE_FILE {
                        Found::Skipped(format!("{path}: {size} bytes, more than scanned"))
                    } else {
                        let mut file = NamedTempFile::new_in(self.scratch).map_err(layer)?;
                        io::copy(&mut entry, file.as_file_mut()).map_err(layer)?;
                        Found::File(file)
                    }
                } else if size > MAX_TEXT_FILE {
                    Found::Skipped(format!("{path}: {size} bytes, more than scanned"))
                } else if self.kept + size > MAX_KEPT_BYTES {
                    self.truncated.get_or_insert_with(|| {
                        format!(
                            "package files over {MAX_KEPT_BYTES} bytes in all: the rest not read"
                        )
                    });
                    Found::Skipped(format!("{path}: not read (the image's limit)"))
                } else {
                    let mut text = Vec::with_capacity(size as usize);
                    (&mut entry)
                        .take(size)
                        .read_to_end(&mut text)
                        .map_err(layer)?;
                    self.kept += text.len() as u64;
                    Found::Text(text)
                }
            } else if kind.is_dir() {
                continue;
            } else {
                // A link decides the path as well: a lower layer's copy is not what
                // the image shows (os-release is usually a link to usr/lib).
                Found::Skipped(format!("{path}: not a regular file"))
            };
            this_layer.insert(path.clone());
            if let Some((_, Found::Text(old))) = self.found.insert(path, (wanted, found)) {
                self.kept -= old.len() as u64;
            }
        }
        self.whited_out.extend(whiteouts);
        self.opaque.extend(opaque);
        self.layers += 1;
        Ok(())
    }

    /// Whether a whiteout or opaque marker of a higher layer hides `path`.
    fn hidden(&self, path: &str) -> bool {
        if self.whited_out.contains(path) {
            return true;
        }
        let mut rest = path;
        while let Some((parent, _)) = rest.rsplit_once('/') {
            if self.whited_out.contains(parent) || self.opaque.contains(parent) {
                return true;
            }
            rest = parent;
        }
        self.opaque.contains("")
    }

    /// The wanted files the image shows, by path.
    pub fn finish(self) -> Files {
        Files {
            files: self.found,
            layers: self.layers,
            truncated: self.truncated,
        }
    }
}

/// The wanted files of an image, by path.
#[derive(Debug)]
pub struct Files {
    pub files: BTreeMap<String, (Wanted, Found)>,
    pub layers: u32,
    /// A limit the image reached, if any (for the inventory's notes).
    pub truncated: Option<String>,
}

/// `./etc/x`, `/etc/x` and `etc/x/` all name `etc/x`.
fn normalize(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut path = text.as_ref();
    loop {
        let trimmed = path.trim_start_matches('/').trim_start_matches("./");
        if trimmed == path {
            break;
        }
        path = trimmed;
    }
    path.trim_end_matches('/').to_owned()
}

fn layer(e: io::Error) -> ScanError {
    ScanError::Layer(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar layer of (path, content); a `None` content makes a directory.
    fn layer_of(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut header = tar::Header::new_gnu();
            match content {
                Some(text) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(text.len() as u64);
                    header.set_mode(0o644);
                    header.set_cksum();
                    builder
                        .append_data(&mut header, path, text.as_bytes())
                        .unwrap();
                }
                None => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    header.set_mode(0o755);
                    header.set_cksum();
                    builder.append_data(&mut header, path, io::empty()).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    fn texts(files: &Files) -> Vec<(String, String)> {
        files
            .files
            .iter()
            .filter_map(|(path, (_, found))| match found {
                Found::Text(t) => Some((path.clone(), String::from_utf8_lossy(t).into_owned())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_highest_layer_decides_and_markers_hide_only_lower_layers() {
        let scratch = tempfile::tempdir().unwrap();
        let bottom = layer_of(&[
            ("etc/", None),
            ("etc/os-release", Some("ID=debian\n")),
            ("var/lib/dpkg/status.d/", None),
            ("var/lib/dpkg/status.d/openssl", Some("Package: openssl\n")),
            ("var/lib/dpkg/status.d/zlib", Some("Package: zlib\n")),
            ("var/lib/dpkg/status.d/zlib.md5sums", Some("x")),
            ("app/node_modules/left/package.json", Some("{}")),
            ("app/node_modules/@s/kept/package.json", Some("{}")),
        ]);
        let top = layer_of(&[
            ("./var/lib/dpkg/status.d/.wh.zlib", Some("")),
            // The same layer's files are not hidden by its own markers.
            ("app/node_modules/.wh..wh..opq", Some("")),
            ("app/node_modules/new/package.json", Some("{}")),
            ("etc/os-release", Some("ID=debian\nVERSION_ID=\"12\"\n")),
        ]);
        let mut collector = Collector::new(scratch.path());
        collector.read_layer(&top[..], Compression::None).unwrap();
        collector
            .read_layer(&bottom[..], Compression::None)
            .unwrap();
        let files = collector.finish();
        assert_eq!(
            texts(&files),
            vec![
                ("app/node_modules/new/package.json".into(), "{}".into()),
                (
                    "etc/os-release".into(),
                    "ID=debian\nVERSION_ID=\"12\"\n".into()
                ),
                (
                    "var/lib/dpkg/status.d/openssl".into(),
                    "Package: openssl\n".into()
                ),
            ]
        );
    }

    #[test]
    fn a_later_entry_of_the_same_layer_wins_as_extraction_does() {
        let scratch = tempfile::tempdir().unwrap();
        let layer = layer_of(&[
            ("var/lib/dpkg/status", Some("Package: decoy\n")),
            ("var/lib/dpkg/status", Some("Package: real\n")),
        ]);
        let mut collector = Collector::new(scratch.path());
        collector.read_layer(&layer[..], Compression::None).unwrap();
        assert_eq!(
            texts(&collector.finish()),
            vec![("var/lib/dpkg/status".into(), "Package: real\n".into())]
        );
    }

    #[test]
    fn gzip_and_zstd_layers_read_the_same() {
        let scratch = tempfile::tempdir().unwrap();
        let tar = layer_of(&[("lib/apk/db/installed", Some("P:musl\nV:1.2.4-r2\n"))]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::stream::encode_all(&tar[..], 3).unwrap();
        for (blob, compression) in [(gz, Compression::Gzip), (zst, Compression::Zstd)] {
            let mut collector = Collector::new(scratch.path());
            collector.read_layer(&blob[..], compression).unwrap();
            assert_eq!(
                texts(&collector.finish()),
                vec![("lib/apk/db/installed".into(), "P:musl\nV:1.2.4-r2\n".into())]
            );
        }
    }

    #[test]
    fn wanted_paths() {
        for (path, want) in [
            ("etc/os-release", Some(Wanted::OsRelease)),
            ("var/lib/dpkg/status.d/libc6", Some(Wanted::DpkgStatusFile)),
            ("var/lib/dpkg/status.d/libc6.md5sums", None),
            ("var/lib/dpkg/status-old", None),
            (
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                Some(Wanted::PythonMetadata),
            ),
            (
                "app/node_modules/left-pad/package.json",
                Some(Wanted::NpmPackage),
            ),
            (
                "app/node_modules/@types/node/package.json",
                Some(Wanted::NpmPackage),
            ),
            ("app/node_modules/left-pad/lib/package.json", None),
            ("app/package.json", None),
        ] {
            assert_eq!(Wanted::of(path), want, "{path}");
        }
    }
}
