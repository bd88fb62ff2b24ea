//! Byte ranges from client headers: the `Range` of a blob `GET` (RFC 9110 §14.1.2) and
//! the `Content-Range` of an upload chunk (`<start>-<end>`, as the distribution spec
//! writes it).
//!
//! Positions are digits only. A position too large for `u64` is simply very large: a
//! last-byte position past the end of the blob is clamped however it is written.

use std::ops::Range;

/// A `Range` that selects no byte of the blob: `416` with `Content-Range: bytes */size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("range not satisfiable")]
pub struct Unsatisfiable;

/// Why a chunk's `Content-Range` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkRangeError {
    #[error("malformed Content-Range {0:?}: expected <start>-<end>")]
    Malformed(String),
    #[error("Content-Range ends before it starts")]
    Backwards,
}

/// `1*DIGIT` as a number, saturating at `u64::MAX`; `None` if it is not digits.
fn position(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<u64>().unwrap_or(u64::MAX))
}

/// Parses a `Range` header against a blob of `size` bytes into the bytes to serve.
/// Other units and multi-range requests give `Ok(None)`: the whole blob is served, as
/// RFC 9110 allows.
pub fn parse_range(value: &str, size: u64) -> Result<Option<Range<u64>>, Unsatisfiable> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (first, last) = spec.trim().split_once('-').ok_or(Unsatisfiable)?;
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-N: the last N bytes
        (true, false) => match position(last) {
            Some(n) if n > 0 && size > 0 => Ok(Some(size.saturating_sub(n)..size)),
            _ => Err(Unsatisfiable),
        },
        // bytes=A-
        (false, true) => match position(first) {
            Some(a) if a < size => Ok(Some(a..size)),
            _ => Err(Unsatisfiable),
        },
        // bytes=A-B (B past the end is clamped)
        (false, false) => match (position(first), position(last)) {
            (Some(a), Some(b)) if a <= b && a < size => Ok(Some(a..b.min(size - 1) + 1)),
            _ => Err(Unsatisfiable),
        },
        (true, true) => Err(Unsatisfiable),
    }
}

/// Parses a chunk's `Content-Range: <start>-<end>` (inclusive; a `bytes ` or `bytes=`
/// prefix and a `/total` suffix are tolerated) into `(start, end)`.
pub fn parse_chunk_range(value: &str) -> Result<(u64, u64), ChunkRangeError> {
    let malformed = || ChunkRangeError::Malformed(value.to_owned());
    let spec = value.trim();
    let spec = spec
        .strip_prefix("bytes")
        .map(|s| s.trim_start_matches([' ', '=']))
        .unwrap_or(spec);
    let spec = spec.split('/').next().unwrap_or(spec);
    let (start, end) = spec.split_once('-').ok_or_else(malformed)?;
    let start = position(start).filter(|&p| p < u64::MAX);
    let end = position(end).filter(|&p| p < u64::MAX);
    let (Some(start), Some(end)) = (start, end) else {
        return Err(malformed());
    };
    if end < start {
        return Err(ChunkRangeError::Backwards);
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let r = |v: &str| parse_range(v, 2048);
        assert_eq!(r("bytes=500-1499"), Ok(Some(500..1500)));
        assert_eq!(r("bytes=500-"), Ok(Some(500..2048)));
        assert_eq!(r("bytes=-500"), Ok(Some(1548..2048)));
        assert_eq!(r("bytes=2000-5000"), Ok(Some(2000..2048)));
        assert_eq!(r("bytes=-5000"), Ok(Some(0..2048)));
        assert_eq!(r("bytes=0-1,5-6"), Ok(None));
        assert_eq!(r("items=0-1"), Ok(None));
        for bad in [
            "bytes=500-0",
            "bytes=5000-10000",
            "bytes=2048-",
            "bytes=-0",
            "bytes=x-y",
            "bytes=-",
            "bytes=5",
            "bytes=+5-10",
            "bytes=5-+10",
        ] {
            assert_eq!(r(bad), Err(Unsatisfiable), "{bad}");
        }
        assert!(
            parse_range("bytes=0-", 0).is_err(),
            "nothing to serve of an empty blob"
        );
    }

    #[test]
    fn a_last_position_past_the_end_is_clamped_however_it_is_written() {
        let r = |v: &str| parse_range(v, 2048);
        for past in [
            "bytes=0-4096",
            "bytes=0-18446744073709551615",
            "bytes=0-18446744073709551616",
            "bytes=0-99999999999999999999999",
        ] {
            assert_eq!(r(past), Ok(Some(0..2048)), "{past}");
        }
        assert_eq!(r("bytes=-99999999999999999999999"), Ok(Some(0..2048)));
        assert_eq!(r("bytes=99999999999999999999999-"), Err(Unsatisfiable));
    }

    #[test]
    fn chunk_ranges() {
        assert_eq!(parse_chunk_range("0-99"), Ok((0, 99)));
        assert_eq!(parse_chunk_range("bytes 100-199/*"), Ok((100, 199)));
        assert_eq!(parse_chunk_range("bytes=5-5"), Ok((5, 5)));
        assert_eq!(parse_chunk_range("9-3"), Err(ChunkRangeError::Backwards));
        for bad in ["", "-", "5", "a-b", "+1-2", "0-99999999999999999999999"] {
            assert!(
                matches!(parse_chunk_range(bad), Err(ChunkRangeError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
