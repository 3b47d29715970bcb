//! The lexical forms of the string-valued primitives (dates, times, ids, oids, uuids, base64, …), checked
//! byte by byte. Pure functions on untrusted text, separate from the walk that calls them.

use super::Prim;

// ---------------------------------------------------------------------------------------------------------
// Lexical forms of the string-valued primitives: hand-written equivalents of the regexes in the R4 4.0.1
// definitions (the `regex` extension of each primitive's `value` element, kept in r4-structure.json), with
// whitespace as in those regexes (`\s` = space, tab, LF, VT, FF, CR).

pub(super) fn string_is_valid(prim: Prim, s: &[u8]) -> bool {
    match prim {
        // [ \r\n\t\S]+: any character but the other two whitespaces.
        Prim::String | Prim::Markdown => !s.iter().any(|&b| b == 0x0B || b == 0x0C),
        // [^\s]+(\s[^\s]+)*
        Prim::Code => {
            !is_space(s[0])
                && !is_space(s[s.len() - 1])
                && !s.windows(2).any(|w| is_space(w[0]) && is_space(w[1]))
        }
        // \S*
        Prim::Uri | Prim::Url | Prim::Canonical => !s.iter().any(|&b| is_space(b)),
        // [A-Za-z0-9\-\.]{1,64}
        Prim::Id => {
            s.len() <= 64
                && s.iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }
        Prim::Oid => is_oid(s),
        Prim::Uuid => is_uuid(s),
        Prim::Base64Binary => is_base64(s),
        Prim::Date => date_prefix(s).is_some_and(|(rest, _)| rest.is_empty()),
        Prim::DateTime => is_date_time(s),
        Prim::Instant => is_instant(s),
        Prim::Time => time_prefix(s).is_some_and(<[u8]>::is_empty),
        // Narrative XHTML rules (narrative.html) are beyond structure; a non-empty string is required.
        Prim::Xhtml => true,
        Prim::Boolean | Prim::Decimal | Prim::Integer | Prim::PositiveInt | Prim::UnsignedInt => {
            false
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Exactly `n` ASCII digits as a number, and the rest.
fn digits(s: &[u8], n: usize) -> Option<(u32, &[u8])> {
    if s.len() < n || !s[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = s[..n]
        .iter()
        .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'));
    Some((value, &s[n..]))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// YYYY, YYYY-MM or YYYY-MM-DD with year 0001-9999, and whether the day was given. datatypes.html#date: the
/// regex only bounds the day by 31, but "Dates SHALL be valid dates", so 2019-02-30 is refused.
fn date_prefix(s: &[u8]) -> Option<(&[u8], bool)> {
    let (year, rest) = digits(s, 4)?;
    if year == 0 {
        return None;
    }
    let Some(rest) = rest.strip_prefix(b"-") else {
        return Some((rest, false));
    };
    let (month, rest) = digits(rest, 2)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    let Some(rest) = rest.strip_prefix(b"-") else {
        return Some((rest, false));
    };
    let (day, rest) = digits(rest, 2)?;
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some((rest, true))
}

/// hh:mm:ss(.s+) (seconds up to 60 for leap seconds, as the regex allows), and the rest.
fn time_prefix(s: &[u8]) -> Option<&[u8]> {
    let (hour, rest) = digits(s, 2)?;
    let (minute, rest) = digits(rest.strip_prefix(b":")?, 2)?;
    let (second, rest) = digits(rest.strip_prefix(b":")?, 2)?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    match rest.strip_prefix(b".") {
        Some(fraction) => {
            let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
            (count > 0).then(|| &fraction[count..])
        }
        None => Some(rest),
    }
}

/// Z or ±hh:mm with hh:mm up to 13:59, or 14:00; true if nothing follows.
fn is_zone(s: &[u8]) -> bool {
    if s == b"Z" {
        return true;
    }
    let Some(rest) = s.strip_prefix(b"+").or_else(|| s.strip_prefix(b"-")) else {
        return false;
    };
    let Some((hour, rest)) = digits(rest, 2) else {
        return false;
    };
    let Some((minute, rest)) = rest.strip_prefix(b":").and_then(|r| digits(r, 2)) else {
        return false;
    };
    rest.is_empty() && ((hour <= 13 && minute <= 59) || (hour == 14 && minute == 0))
}

/// A partial date, or a full date with a time and a zone ("if hours and minutes are specified, a time zone
/// SHALL be populated", datatypes.html#dateTime).
fn is_date_time(s: &[u8]) -> bool {
    match date_prefix(s) {
        Some(([], _)) => true,
        Some((rest, true)) => rest
            .strip_prefix(b"T")
            .and_then(time_prefix)
            .is_some_and(is_zone),
        _ => false,
    }
}

fn is_instant(s: &[u8]) -> bool {
    match date_prefix(s) {
        Some((rest, true)) => rest
            .strip_prefix(b"T")
            .and_then(time_prefix)
            .is_some_and(is_zone),
        _ => false,
    }
}

/// urn:oid:[0-2](\.(0|[1-9][0-9]*))+
fn is_oid(s: &[u8]) -> bool {
    let Some(rest) = s.strip_prefix(b"urn:oid:") else {
        return false;
    };
    let mut arcs = rest.split(|&b| b == b'.');
    if !matches!(arcs.next(), Some([b'0'..=b'2'])) {
        return false;
    }
    let mut count = 0;
    for arc in arcs {
        let valid = match arc {
            [b'0'] => true,
            [b'1'..=b'9', tail @ ..] => tail.iter().all(u8::is_ascii_digit),
            _ => false,
        };
        if !valid {
            return false;
        }
        count += 1;
    }
    count > 0
}

/// urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}
fn is_uuid(s: &[u8]) -> bool {
    let Some(rest) = s.strip_prefix(b"urn:uuid:") else {
        return false;
    };
    rest.len() == 36
        && rest.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// (\s*([0-9a-zA-Z\+/=]){4}\s*)+: every whitespace-separated run is whole groups of 4 base64 characters.
fn is_base64(s: &[u8]) -> bool {
    let mut runs = 0;
    for run in s.split(|&b| is_space(b)).filter(|run| !run.is_empty()) {
        if !run.len().is_multiple_of(4)
            || !run
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        {
            return false;
        }
        runs += 1;
    }
    runs > 0
}
