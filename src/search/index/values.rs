//! The text forms both sides of search agree on: normalised strings, literal references, resource ids and
//! type names, and the instant ranges of FHIR dates. Parsers of untrusted text, shared by the indexer and
//! [`crate::search::query`], so kept apart from the row building.

use jiff::ToSpan;
use jiff::civil::Date;
use jiff::tz::Offset;
/// Normalises text for string search: Unicode lower case, accents removed (canonical decomposition, NFD,
/// without its combining marks: `Åkesson` → `akesson`, `Müller` → `muller`), a few letters that do not
/// decompose folded by hand (`ø`, `æ`, `ß`, `đ`, `ł`, `ı`), and single spaces. FHIR R4 4.0.1 search.html#string:
/// string search is case- and accent-insensitive; `:exact` keeps both.
pub fn normalize_string(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    use unicode_normalization::char::is_combining_mark;
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars().flat_map(char::to_lowercase).nfd() {
            match c {
                c if is_combining_mark(c) => {}
                'ø' => out.push('o'),
                'æ' => out.push_str("ae"),
                'œ' => out.push_str("oe"),
                'ß' => out.push_str("ss"),
                'đ' | 'ð' => out.push('d'),
                'ł' => out.push('l'),
                'ı' => out.push('i'),
                'þ' => out.push_str("th"),
                c => out.push(c),
            }
        }
    }
    out
}

/// A literal reference in the index's canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiteralReference {
    /// The resource type, when the reference names one (`Type/id` forms).
    pub resource_type: Option<String>,
    /// The indexed text: `Type/id`, or the reference as written.
    pub value: String,
}

/// Normalises a literal reference (see the module docs); `None` for an empty
/// or contained (`#id`) reference.
pub fn parse_literal_reference(text: &str) -> Option<LiteralReference> {
    let text = text.trim();
    // A canonical may pin a version (`url|1.0`); references never contain `|`.
    let text = text.split_once('|').map_or(text, |(url, _)| url);
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    let unversioned = match text.rsplit_once("/_history/") {
        Some((base, version)) if is_valid_id(version) => base,
        _ => text,
    };
    if let Some((head, id)) = unversioned.rsplit_once('/') {
        let resource_type = head.rsplit_once('/').map_or(head, |(_, t)| t);
        if is_resource_type_name(resource_type) && is_valid_id(id) {
            return Some(LiteralReference {
                resource_type: Some(resource_type.to_owned()),
                value: format!("{resource_type}/{id}"),
            });
        }
    }
    Some(LiteralReference {
        resource_type: None,
        value: text.to_owned(),
    })
}

/// A FHIR logical id: 1–64 of `[A-Za-z0-9\-\.]` (FHIR R4 4.0.1 datatypes `id`).
pub fn is_valid_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Whether `text` has the shape of a resource type name (`Patient`).
pub fn is_resource_type_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

/// An inclusive range of instants, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub lo: i64,
    pub hi: i64,
}

/// The range of instants a FHIR date, dateTime or instant covers, at the
/// precision written (FHIR R4 4.0.1 search.html#date: a value stands for the
/// whole range its precision implies): `YYYY`, `YYYY-MM`, `YYYY-MM-DD`,
/// `YYYY-MM-DDThh:mm[:ss[.fff…]][Z|±hh:mm]`. Minute precision and a missing
/// time zone are accepted (search values use them); no zone means UTC.
/// Returns `None` for anything else, including impossible dates.
pub fn parse_date_range(text: &str) -> Option<DateRange> {
    let mut cursor = Cursor {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let year = i16::try_from(cursor.number(4)?).ok()?;
    if cursor.done() {
        let start = Date::new(year, 1, 1).ok()?;
        return Some(calendar_range(start, start.checked_add(1.year()).ok()));
    }
    cursor.expect(b'-')?;
    let month = i8::try_from(cursor.number(2)?).ok()?;
    if cursor.done() {
        let start = Date::new(year, month, 1).ok()?;
        return Some(calendar_range(start, start.checked_add(1.month()).ok()));
    }
    cursor.expect(b'-')?;
    let day = i8::try_from(cursor.number(2)?).ok()?;
    let date = Date::new(year, month, day).ok()?;
    if cursor.done() {
        return Some(calendar_range(date, date.checked_add(1.day()).ok()));
    }
    cursor.expect(b'T')?;
    let hour = i8::try_from(cursor.number(2)?).ok()?;
    cursor.expect(b':')?;
    let minute = i8::try_from(cursor.number(2)?).ok()?;
    let mut second = 0;
    let mut millis = 0_i64;
    let mut width_ms = 60_000_i64;
    if cursor.peek() == Some(b':') {
        cursor.pos += 1;
        second = i8::try_from(cursor.number(2)?).ok()?;
        width_ms = 1_000;
        if cursor.peek() == Some(b'.') {
            cursor.pos += 1;
            let digits = cursor.digits();
            if digits.is_empty() {
                return None;
            }
            // Millisecond resolution: further digits narrow nothing we store.
            let kept = &digits[..digits.len().min(3)];
            let scale = 10_i64.pow(3 - u32::try_from(kept.len()).ok()?);
            millis = kept.iter().fold(0, |acc, d| acc * 10 + i64::from(d - b'0')) * scale;
            width_ms = scale;
        }
    }
    let offset = match cursor.peek() {
        None => Offset::UTC,
        Some(b'Z') => {
            cursor.pos += 1;
            Offset::UTC
        }
        Some(sign @ (b'+' | b'-')) => {
            cursor.pos += 1;
            let hours = cursor.number(2)?;
            cursor.expect(b':')?;
            let minutes = cursor.number(2)?;
            if hours > 14 || minutes > 59 {
                return None;
            }
            let seconds = i32::try_from(hours * 3600 + minutes * 60).ok()?;
            Offset::from_seconds(if sign == b'-' { -seconds } else { seconds }).ok()?
        }
        Some(_) => return None,
    };
    if !cursor.done() {
        return None;
    }
    let datetime = jiff::civil::DateTime::new(year, month, day, hour, minute, second, 0).ok()?;
    let lo = offset.to_timestamp(datetime).ok()?.as_millisecond() + millis;
    Some(DateRange {
        lo,
        hi: lo + width_ms - 1,
    })
}

/// The range from the start of `start` (UTC) to just before the start of
/// `next`; open-ended when `next` is past the last representable date.
fn calendar_range(start: Date, next: Option<Date>) -> DateRange {
    let millis = |date: Date| {
        Offset::UTC
            .to_timestamp(date.at(0, 0, 0, 0))
            .map(|t| t.as_millisecond())
    };
    let lo = millis(start).unwrap_or(i64::MIN);
    let hi = next
        .and_then(|next| millis(next).ok())
        .map_or(i64::MAX, |next| next - 1);
    DateRange { lo, hi }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.pos == self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.pos += 1)
    }

    /// Exactly `len` ASCII digits.
    fn number(&mut self, len: usize) -> Option<i64> {
        let digits = self.bytes.get(self.pos..self.pos + len)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.pos += len;
        Some(
            digits
                .iter()
                .fold(0, |acc, d| acc * 10 + i64::from(d - b'0')),
        )
    }

    /// All ASCII digits from here on.
    fn digits(&mut self) -> &[u8] {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        &self.bytes[start..self.pos]
    }
}
