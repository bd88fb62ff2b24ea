//! `Range` of a blob `GET` and `Content-Range` of an upload chunk.
//!
//! The input is `SIZE\nVALUE` (a first line that is not a number: size 2048 and the
//! whole input is the value). Checks, besides "no panic":
//! - `parse_range(value, size)` gives a non-empty range inside `0..size`, so the server's
//!   `Content-Range: bytes start-(end-1)/size` and `Content-Length: end-start` cannot
//!   overflow; for `bytes=A-B` with both numbers in `u64` it is exactly
//!   `A..min(B, size-1)+1`, for `bytes=A-` it is `A..size`, for `bytes=-N` the last N;
//! - `parse_chunk_range(value)` gives `start <= end < u64::MAX`, so the chunk length
//!   `end - start + 1` cannot overflow.
#![no_main]

use berth_core::range::{ChunkRangeError, parse_chunk_range, parse_range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (size, value) = match text.split_once('\n') {
        Some((first, rest)) => match first.parse::<u64>() {
            Ok(size) => (size, rest),
            Err(_) => (2048, text),
        },
        None => (2048, text),
    };

    if let Ok(Some(range)) = parse_range(value, size) {
        assert!(
            range.start < range.end && range.end <= size,
            "{value:?} against {size} gave {range:?}"
        );
        // What the server computes from it.
        let _ = format!("bytes {}-{}/{size}", range.start, range.end - 1);
        let _len = range.end - range.start;
        check_simple_forms(value, size, &range);
    }

    match parse_chunk_range(value) {
        Ok((start, end)) => {
            assert!(
                start <= end && end < u64::MAX,
                "{value:?} gave {start}-{end}"
            );
            let _len = end - start + 1;
        }
        Err(ChunkRangeError::Malformed(echo)) => assert_eq!(echo, value),
        Err(ChunkRangeError::Backwards) => {}
    }
});

/// Plain single ranges (digits only, no spaces) against their RFC 9110 meaning.
fn check_simple_forms(value: &str, size: u64, range: &std::ops::Range<u64>) {
    let Some(spec) = value.strip_prefix("bytes=") else {
        return;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return;
    };
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (
        first.is_empty(),
        number(first),
        last.is_empty(),
        number(last),
    ) {
        (_, Some(a), _, Some(b)) => {
            assert_eq!(*range, a..b.min(size - 1) + 1, "{value:?} against {size}")
        }
        (_, Some(a), true, _) => assert_eq!(*range, a..size, "{value:?} against {size}"),
        (true, _, _, Some(n)) => {
            assert_eq!(
                *range,
                size.saturating_sub(n)..size,
                "{value:?} against {size}"
            )
        }
        _ => {}
    }
}
