//! Package version ordering as each packaging system defines it, for matching installed
//! packages against vulnerability advisories: Debian's dpkg (`epoch:upstream-revision`,
//! where `~` sorts before everything, even the end), RPM's EVR (`epoch:version-release`,
//! compared segment by segment as `rpmvercmp` does, with `~` before and `^` after the
//! end) and Alpine's apk (`1.2.3a_rc1_p2-r4`). A plain string order gets all of them
//! wrong (`1.10` < `1.9`).

use std::cmp::Ordering;

/// Compares two Debian package versions as `dpkg --compare-versions` does.
pub fn dpkg_compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = dpkg_split(a);
    let (eb, ub, rb) = dpkg_split(b);
    ea.cmp(&eb)
        .then_with(|| dpkg_part(ua, ub))
        .then_with(|| dpkg_part(ra, rb))
}

/// `[epoch:]upstream[-revision]`: the revision follows the last hyphen, the epoch (a
/// number, 0 when absent or unreadable) precedes the first colon.
fn dpkg_split(version: &str) -> (u64, &str, &str) {
    let version = version.trim();
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => {
            (epoch.parse().unwrap_or(0), rest)
        }
        _ => (0, version),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// A letter's weight in dpkg's order: `~` first (before the end of the string), then
/// the end, then letters, then everything else.
fn dpkg_weight(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternating non-digit runs (by weight) and digit runs (by value).
fn dpkg_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digits, letter by letter.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let wa = dpkg_weight(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let wb = dpkg_weight(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        // Digits, as numbers (leading zeros do not count).
        let (na, ia) = digits(a, i);
        let (nb, jb) = digits(b, j);
        match compare_digits(na, nb) {
            Ordering::Equal => {}
            other => return other,
        }
        (i, j) = (ia, jb);
    }
    Ordering::Equal
}

/// The digit run of `s` from `start` (leading zeros dropped) and where it ends.
fn digits(s: &[u8], start: usize) -> (&[u8], usize) {
    let mut end = start;
    while end < s.len() && s[end].is_ascii_digit() {
        end += 1;
    }
    let mut first = start;
    while first < end && s[first] == b'0' {
        first += 1;
    }
    (&s[first..end], end)
}

/// Two runs of digits without leading zeros, as numbers of any length.
fn compare_digits(a: &[u8], b: &[u8]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Compares two RPM `[epoch:]version[-release]` strings as RPM does (epoch, then
/// version, then release, each with `rpmvercmp`). A missing release compares equal to
/// any, as RPM does when one side names none.
pub fn rpm_compare(a: &str, b: &str) -> Ordering {
    let (ea, va, ra) = rpm_split(a);
    let (eb, vb, rb) = rpm_split(b);
    ea.cmp(&eb)
        .then_with(|| rpmvercmp(va, vb))
        .then_with(|| match (ra, rb) {
            (Some(ra), Some(rb)) => rpmvercmp(ra, rb),
            _ => Ordering::Equal,
        })
}

fn rpm_split(evr: &str) -> (u64, &str, Option<&str>) {
    let evr = evr.trim();
    let (epoch, rest) = match evr.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => {
            (epoch.parse().unwrap_or(0), rest)
        }
        _ => (0, evr),
    };
    match rest.rsplit_once('-') {
        Some((version, release)) => (epoch, version, Some(release)),
        None => (epoch, rest, None),
    }
}

/// RPM's `rpmvercmp`: segments of letters or digits, separators ignored; `~` sorts
/// before anything (the end included), `^` after the end but before anything else; a
/// numeric segment is newer than an alphabetic one.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let separator = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while i < a.len() && separator(a[i]) {
            i += 1;
        }
        while j < b.len() && separator(b[j]) {
            j += 1;
        }
        // Tilde: older than anything, the end included.
        match (a.get(i) == Some(&b'~'), b.get(j) == Some(&b'~')) {
            (true, true) => {
                i += 1;
                j += 1;
                continue;
            }
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        // Caret: newer than the end, older than anything else.
        match (a.get(i) == Some(&b'^'), b.get(j) == Some(&b'^')) {
            (true, true) => {
                i += 1;
                j += 1;
                continue;
            }
            (true, false) => {
                return if j >= b.len() {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
            }
            (false, true) => {
                return if i >= a.len() {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
            }
            (false, false) => {}
        }
        if i >= a.len() || j >= b.len() {
            break;
        }
        let numeric = a[i].is_ascii_digit();
        let run = |s: &[u8], start: usize| {
            let mut end = start;
            while end < s.len()
                && (if numeric {
                    s[end].is_ascii_digit()
                } else {
                    s[end].is_ascii_alphabetic()
                })
            {
                end += 1;
            }
            end
        };
        let (ia, jb) = (run(a, i), run(b, j));
        if jb == j {
            // Segments of different kinds: a number is newer.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let order = if numeric {
            compare_digits(digits(a, i).0, digits(b, j).0)
        } else {
            a[i..ia].cmp(&b[j..jb])
        };
        if order != Ordering::Equal {
            return order;
        }
        (i, j) = (ia, jb);
    }
    // The one with segments left is newer.
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, _) => Ordering::Greater,
    }
}

/// Compares two Alpine package versions as `apk version -t` does: dotted numbers, an
/// optional letter, suffixes (`_alpha` < `_beta` < `_pre` < `_rc` < none < `_cvs` <
/// `_svn` < `_git` < `_hg` < `_p`, each with an optional number), then `-rN`.
pub fn apk_compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (ApkVersion::parse(a), ApkVersion::parse(b));
    let numbers = {
        let mut order = Ordering::Equal;
        for (x, y) in a.numbers.iter().zip(&b.numbers) {
            order = compare_digits(
                x.trim_start_matches('0').as_bytes(),
                y.trim_start_matches('0').as_bytes(),
            );
            if order != Ordering::Equal {
                break;
            }
        }
        order.then_with(|| a.numbers.len().cmp(&b.numbers.len()))
    };
    numbers
        .then_with(|| a.letter.cmp(&b.letter))
        .then_with(|| {
            // A missing suffix compares as "none", between pre-releases and patches.
            let n = a.suffixes.len().max(b.suffixes.len());
            (0..n)
                .map(|i| {
                    let x = a.suffixes.get(i).copied().unwrap_or((0, 0));
                    let y = b.suffixes.get(i).copied().unwrap_or((0, 0));
                    x.cmp(&y)
                })
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        })
        .then_with(|| a.revision.cmp(&b.revision))
}

/// The parts of an apk version that order it (`~hash` parts do not).
struct ApkVersion<'a> {
    numbers: Vec<&'a str>,
    letter: Option<u8>,
    /// (rank, number): rank below 0 for pre-releases, above 0 for patches.
    suffixes: Vec<(i8, u64)>,
    revision: u64,
}

impl<'a> ApkVersion<'a> {
    fn parse(version: &'a str) -> ApkVersion<'a> {
        let version = version.trim();
        let (version, revision) = match version.rsplit_once("-r") {
            Some((v, r)) if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) => {
                (v, r.parse().unwrap_or(u64::MAX))
            }
            _ => (version, 0),
        };
        let version = version.split('~').next().unwrap_or(version);
        let mut parts = version.split('_');
        let head = parts.next().unwrap_or("");
        let digits_end = head
            .bytes()
            .position(|b| !(b.is_ascii_digit() || b == b'.'))
            .unwrap_or(head.len());
        let numbers = head[..digits_end]
            .split('.')
            .filter(|n| !n.is_empty())
            .collect();
        let letter = head[digits_end..].bytes().next();
        let suffixes = parts
            .map(|suffix| {
                let split = suffix
                    .bytes()
                    .position(|b| b.is_ascii_digit())
                    .unwrap_or(suffix.len());
                let rank = match &suffix[..split] {
                    "alpha" => -4,
                    "beta" => -3,
                    "pre" => -2,
                    "rc" => -1,
                    "cvs" => 1,
                    "svn" => 2,
                    "git" => 3,
                    "hg" => 4,
                    "p" => 5,
                    _ => 0,
                };
                (rank, suffix[split..].parse().unwrap_or(0))
            })
            .collect();
        ApkVersion {
            numbers,
            letter,
            suffixes,
            revision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn dpkg_orders_as_dpkg_compare_versions_does() {
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "1.0-0", Equal),
            ("1.10", "1.9", Greater),
            ("1:1.0", "2.0", Greater),
            ("0:1.0", "1.0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0", "1.0a", Less),
            ("1.0a", "1.0+", Less),
            ("1.0-1", "1.0-2", Less),
            ("1.0-1ubuntu1", "1.0-1", Greater),
            ("1.0-1+deb12u1", "1.0-1", Greater),
            ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
            ("3.0.11-1~deb12u2", "3.0.11-1", Less),
            ("007", "7", Equal),
            ("1.2.3", "1.2.3.0", Less),
        ] {
            assert_eq!(dpkg_compare(a, b), want, "{a} vs {b}");
            assert_eq!(dpkg_compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn rpm_orders_as_rpmvercmp_does() {
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("1.10", "1.9", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0", "1.0.a", Less),
            ("1.0a", "1.0b", Less),
            ("1.0.1", "1.0a", Greater),
            ("5.5p1", "5.5p10", Less),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("1.0^git1", "1.0^git2", Less),
            ("1_0", "1.0", Equal),
            ("010", "10", Equal),
        ] {
            assert_eq!(rpmvercmp(a, b), want, "{a} vs {b}");
            assert_eq!(rpmvercmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn rpm_evr_compares_epoch_then_version_then_release() {
        assert_eq!(rpm_compare("1:1.0-1", "2.0-1"), Greater);
        assert_eq!(rpm_compare("1.0-1.el9", "1.0-2.el9"), Less);
        assert_eq!(
            rpm_compare("1.0", "1.0-5.el9"),
            Equal,
            "no release on one side"
        );
        assert_eq!(rpm_compare("3.0.7-24.el9", "3.0.7-27.el9"), Less);
    }
    #[test]
    fn apk_orders_as_apk_version_does() {
        for (a, b, want) in [
            ("1.2.3", "1.2.3", Equal),
            ("1.2.3-r0", "1.2.3", Equal),
            ("1.10", "1.9", Greater),
            ("1.2.3_p1", "1.2.3", Greater),
            ("1.2.3_p1-r0", "1.2.3-r1", Greater),
            ("2.0_rc1", "2.0", Less),
            ("2.0_alpha2", "2.0_beta1", Less),
            ("2.0_beta1", "2.0_pre1", Less),
            ("2.0_pre1", "2.0_rc1", Less),
            ("2.0_rc1", "2.0_rc2", Less),
            ("2.0_git20240101", "2.0", Greater),
            ("2.0_git1", "2.0_p1", Less),
            ("1.2.3-r2", "1.2.3-r10", Less),
            ("1.2.3a", "1.2.3", Greater),
            ("1.2.3a", "1.2.3b", Less),
            ("1.2.3a", "1.2.4", Less),
            ("1.2", "1.2.1", Less),
            ("3.1.4-r5", "3.1.4-r5", Equal),
            ("1.0~abc123-r0", "1.0-r0", Equal),
        ] {
            assert_eq!(apk_compare(a, b), want, "{a} vs {b}");
            assert_eq!(apk_compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
