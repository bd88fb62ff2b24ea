//! RPM package headers as rpm 4.16+ stores them in `rpmdb.sqlite` (`Packages.blob`):
//! the header without its 8-byte magic — `il` and `dl` (big-endian u32: index entries,
//! data bytes), `il` entries of 16 bytes (tag, type, offset, count), then the data.

/// Tags read from a header.
const NAME: u32 = 1000;
const VERSION: u32 = 1001;
const RELEASE: u32 = 1002;
const EPOCH: u32 = 1003;
const LICENSE: u32 = 1014;
const ARCH: u32 = 1022;
const SOURCERPM: u32 = 1044;

/// Entry types read.
const INT32: u32 = 4;
const STRING: u32 = 6;
const I18NSTRING: u32 = 9;

/// Headers bigger than this are refused (rpm's own limit is 256 MiB; real ones are KBs).
const MAX_HEADER: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
#[error("broken RPM header: {0}")]
pub struct HeaderError(&'static str);

/// The fields of a package header the inventory needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub version: String,
    pub release: String,
    pub epoch: Option<u32>,
    pub arch: Option<String>,
    pub license: Option<String>,
    pub source_rpm: Option<String>,
}

impl Header {
    pub fn parse(blob: &[u8]) -> Result<Header, HeaderError> {
        let word = |at: usize| -> Result<u32, HeaderError> {
            blob.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(HeaderError("truncated"))
        };
        let entries = word(0)? as usize;
        let data_len = word(4)? as usize;
        let data_start = 8usize
            .checked_add(
                entries
                    .checked_mul(16)
                    .ok_or(HeaderError("too many entries"))?,
            )
            .ok_or(HeaderError("too many entries"))?;
        if data_start + data_len > blob.len() || data_start + data_len > MAX_HEADER {
            return Err(HeaderError("sizes exceed the blob"));
        }
        let data = &blob[data_start..data_start + data_len];
        let mut header = Header::default();
        for i in 0..entries {
            let at = 8 + i * 16;
            let (tag, kind, offset) = (word(at)?, word(at + 4)?, word(at + 8)? as usize);
            let string = || -> Result<String, HeaderError> {
                let bytes = data
                    .get(offset..)
                    .ok_or(HeaderError("offset out of range"))?;
                let end = bytes
                    .iter()
                    .position(|b| *b == 0)
                    .ok_or(HeaderError("unterminated string"))?;
                Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
            };
            let is_string = kind == STRING || kind == I18NSTRING;
            match tag {
                NAME if is_string => header.name = string()?,
                VERSION if is_string => header.version = string()?,
                RELEASE if is_string => header.release = string()?,
                ARCH if is_string => header.arch = Some(string()?),
                LICENSE if is_string => header.license = Some(string()?),
                SOURCERPM if is_string => header.source_rpm = Some(string()?),
                EPOCH if kind == INT32 => {
                    let b = data
                        .get(offset..offset + 4)
                        .ok_or(HeaderError("offset out of range"))?;
                    header.epoch = Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                }
                _ => {}
            }
        }
        if header.name.is_empty() || header.version.is_empty() {
            return Err(HeaderError("no name or version"));
        }
        Ok(header)
    }

    /// `[epoch:]version-release`, the epoch only when the package has one.
    pub fn evr(&self) -> String {
        let mut evr = match self.epoch {
            Some(epoch) => format!("{epoch}:{}", self.version),
            None => self.version.clone(),
        };
        if !self.release.is_empty() {
            evr.push('-');
            evr.push_str(&self.release);
        }
        evr
    }

    /// The source package's name: `openssl-3.0.7-24.el9.src.rpm` -> `openssl`.
    pub fn source_name(&self) -> Option<String> {
        let stem = self.source_rpm.as_deref()?.strip_suffix(".rpm")?;
        let stem = stem.rsplit_once('.').map_or(stem, |(s, _arch)| s);
        let (rest, _release) = stem.rsplit_once('-')?;
        let (name, _version) = rest.rsplit_once('-')?;
        Some(name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header blob of (tag, type, data) entries, as rpm lays it out.
    fn blob(entries: &[(u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, kind, bytes) in entries {
            if *kind == INT32 {
                while data.len() % 4 != 0 {
                    data.push(0);
                }
            }
            for word in [*tag, *kind, data.len() as u32, 1] {
                index.extend_from_slice(&word.to_be_bytes());
            }
            data.extend_from_slice(bytes);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend(index);
        out.extend(data);
        out
    }

    fn text(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    #[test]
    fn reads_name_epoch_version_release_and_source() {
        let header = Header::parse(&blob(&[
            (NAME, STRING, text("openssl-libs")),
            (VERSION, STRING, text("3.0.7")),
            (RELEASE, STRING, text("24.el9")),
            (EPOCH, INT32, 1u32.to_be_bytes().to_vec()),
            (ARCH, STRING, text("x86_64")),
            (SOURCERPM, STRING, text("openssl-3.0.7-24.el9.src.rpm")),
        ]))
        .unwrap();
        assert_eq!(header.evr(), "1:3.0.7-24.el9");
        assert_eq!(header.source_name().as_deref(), Some("openssl"));
        assert_eq!(header.arch.as_deref(), Some("x86_64"));
    }

    #[test]
    fn broken_headers_are_errors_not_panics() {
        let good = blob(&[(NAME, STRING, text("a")), (VERSION, STRING, text("1"))]);
        for cut in 0..good.len() {
            assert!(Header::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Header::parse(&[0xff; 16]).is_err());
    }
}
