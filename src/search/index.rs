//! The search indexer: from a resource's JSON to rows of
//! `search_index(type, id, param, system, value, lo, hi)`.
//!
//! [`index_resource`] evaluates every parameter of the resource type (from
//! [`SearchParams`]) over the resource's JSON and returns one [`IndexRow`] per
//! indexed value; the store adds `type` and `id` and replaces the resource's
//! previous rows. `_id` and `_lastUpdated` are not indexed: the store answers
//! them from its own columns. Values that cannot be read (a malformed date, a
//! contained `#ref`) are skipped: the resource validator rejects malformed
//! input before it is stored, and a skipped value only means "not found by
//! this parameter".
//!
//! # Row encoding (the contract with the SQL that reads the index)
//!
//! `P` is the parameter code. Columns not mentioned are NULL. Matching rules
//! follow FHIR R4 4.0.1 search.html (#token, #string, #reference, #date, #uri);
//! the query side is [`crate::search::query`], and [`Filter::index_param`]
//! names the `param` value a filter reads.
//!
//! | kind | `param` | `system` | `value` | `lo`/`hi` |
//! |---|---|---|---|---|
//! | token: Coding, each CodeableConcept.coding | `P` | Coding.system | Coding.code | |
//! | token: Identifier | `P` | Identifier.system | Identifier.value | |
//! | token: ContactPoint | `P` | ContactPoint.system (`phone`, `email`…) | ContactPoint.value | |
//! | token: code, string, uri, id | `P` | NULL | the text | |
//! | token: boolean | `P` | NULL | `true` / `false` | |
//! | token text (CodeableConcept.text, Coding.display) | `P:text` | | normalised text | |
//! | string: string, each HumanName part, each Address part | `P` | | normalised text | |
//! | … the same value, as written | `P:exact` | | original text | |
//! | reference: literal `Reference.reference`, canonical | `P` | | `Type/id`, or the literal as written | |
//! | reference: logical `Reference.identifier` | `P:identifier` | Identifier.system | Identifier.value | |
//! | date: date, dateTime, instant | `P` | | original text | covered instants |
//! | date: Period | `P` | | `start/end` as written | start.lo … end.hi |
//! | date: Timing | `P` | | each `event`, and `repeat.boundsPeriod` | as above |
//! | uri: uri, url, canonical | `P` | | the text, exact | |
//! | number | `P` | | the number as text | value × [`NUMBER_SCALE`] (both) |
//! | quantity: Quantity, Money, Range | `P` | | `` (any unit) | value × scale (Range: low…high) |
//! | … and per unit | `P` | Quantity.system (Money: ISO 4217) | Quantity.code / currency | as above |
//! | … | `P` | | Quantity.unit, when it differs from the code | as above |
//! | composite `token$X` | `P` | the token's system | `code$` + X's form (see [`COMPOSITE_SEPARATOR`]) | X's range |
//!
//! * **Token** matching is case-sensitive, exact on `system` and `value`:
//!   `P=code` → `value = code` (any system); `P=sys|code` → `system = sys AND
//!   value = code`; `P=|code` → `system IS NULL AND value = code`; `P=sys|` →
//!   `system = sys`. Primitive `code` elements (gender, status, address use…)
//!   are indexed without a system (their implicit code system is not
//!   recorded), so `gender=http://hl7.org/fhir/administrative-gender|male`
//!   does not match; `gender=male` does. `:text` matches `P:text` rows by starts-with on the
//!   normalised text, like a string. `:not` = no row of the resource matches.
//! * **String**: `value` is normalised by [`normalize_string`]: Unicode lower
//!   case, accents removed and whitespace runs collapsed to one space, as
//!   FHIR R4 string search requires (`akesson` finds `Åkesson`; `:exact`
//!   tells Åberg from Aberg). Default match: `value` starts with the normalised search
//!   text; `:contains`: `value` contains it; `:exact`: a `P:exact` row whose
//!   `value` equals the search text byte for byte. For an index-friendly
//!   starts-with in SQLite use `value >= ?s AND value < ?s || char(1114111)`
//!   (BINARY collation), not `LIKE` (which folds ASCII case and treats `%`/`_`
//!   as wildcards).
//! * **Reference**: [`parse_literal_reference`] normalises both sides: a
//!   relative `Type/id`, an absolute URL ending in `/Type/id` and either with
//!   `/_history/v` all become `Type/id`; a canonical loses its `|version`;
//!   anything else (`urn:uuid:…`, `urn:oid:…`, other URLs) is kept as written.
//!   A reference whose type is known (from the literal or `Reference.type`) is
//!   indexed for `P` only if the parameter's `targets` allow that type (so an
//!   Encounter about a `Group` has no `patient` row); a reference of unknown
//!   type (identifier-only) is indexed for every reference parameter on its
//!   path. `P:identifier` rows serve `P:identifier=system|value`, e.g.
//!   `subject:identifier=http://electronichealth.se/identifier/personnummer|191212121212`.
//!   Contained references (`#id`) are not indexed.
//! * **Date**: `lo`..`hi` is the inclusive range of instants the value covers,
//!   in milliseconds since the Unix epoch: `2026` covers the whole year,
//!   `2026-11-24` the whole day, `…T10:00:00+01:00` one second, `…T10:00:00.123Z`
//!   one millisecond ([`parse_date_range`]). Values without a time zone
//!   (dates, and date-times written without one) are taken as UTC: FHIR R4
//!   calls them local, but the server's local time is not the writer's, and
//!   UTC keeps index and query consistent. A Period with no start has
//!   `lo = i64::MIN`, with no end `hi = i64::MAX` (open). Matching per prefix
//!   is [`date_condition`].
//! * **Uri**: exact, case-sensitive match on `value`; `:below` = `value` starts
//!   with the search uri; `:above` = the search uri starts with `value`.
//! * **Number and quantity**: a stored value is a point (`lo = hi`); the search
//!   value's precision makes a range for `eq`/`ne` (`5.4` is 5.35…5.45), `ap` is
//!   ±10 %, the other prefixes compare with the value as written; the
//!   conditions are [`date_condition`]'s. A quantity search names its unit as
//!   `system|code` (rows with that system and code) or `|code` (rows whose code
//!   or unit is it), or none (the `` row).
//! * **`:missing=true`**: the resource has no row whose `param` is one of
//!   [`Filter::presence_params`] (`P`, plus `P:text` for tokens and
//!   `P:identifier` for references); `:missing=false`: it has one.
//!
//! [`Filter::index_param`]: crate::search::query::Filter::index_param
//! [`Filter::presence_params`]: crate::search::query::Filter::presence_params
//! [`date_condition`]: crate::search::query::date_condition

use std::collections::HashSet;

use jiff::ToSpan;
use jiff::civil::Date;
use jiff::tz::Offset;
use serde_json::{Map, Value};

use super::params::{ParamType, SearchParam, SearchParams};

/// Suffix of the `param` of rows holding a string's original text (`:exact`).
pub const EXACT_SUFFIX: &str = ":exact";
/// Suffix of the `param` of rows holding a token's display text (`:text`).
pub const TEXT_SUFFIX: &str = ":text";
/// Suffix of the `param` of rows holding a reference's logical identifier.
pub const IDENTIFIER_SUFFIX: &str = ":identifier";

/// One row of the search index for one resource version (the store adds the
/// resource type and id). The encoding per parameter type is in the module
/// docs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IndexRow {
    pub param: String,
    pub system: Option<String>,
    pub value: String,
    pub lo: Option<i64>,
    pub hi: Option<i64>,
}

/// The index rows of `resource` (of type `resource_type`), without
/// duplicates, in a stable order. Empty for a type the table does not cover.
pub fn index_resource(
    params: &SearchParams,
    resource_type: &str,
    resource: &Value,
) -> Vec<IndexRow> {
    let mut rows = Rows::default();
    for param in params.params_for(resource_type) {
        if param.is_column_backed() {
            continue;
        }
        for path in &param.paths {
            for value in select(resource, path) {
                match param.kind {
                    ParamType::Token => token_rows(&param.code, value, &mut rows),
                    ParamType::String => string_rows(&param.code, value, &mut rows),
                    ParamType::Reference => reference_rows(param, value, &mut rows),
                    ParamType::Date => date_rows(&param.code, value, &mut rows),
                    ParamType::Uri => {
                        if let Some(text) = value.as_str().filter(|t| !t.is_empty()) {
                            rows.push(&param.code, None, text);
                        }
                    }
                    ParamType::Number => number_rows(&param.code, value, &mut rows),
                    ParamType::Quantity => quantity_rows(&param.code, value, &mut rows),
                    ParamType::Composite => composite_rows(param, value, &mut rows),
                }
            }
        }
    }
    rows.rows
}

/// `rows` with the owner coding of `_tag` (`meta.tag` system [`crate::fhir::OWNER_TAG_SYSTEM`]) set to the
/// stored owner: whatever owner tag a client wrote is not indexed (navet sets the tag, clients cannot), and
/// `_tag=urn:navet:owner|{HSA-id}` finds what that principal owns, as the CapabilityStatement says.
pub fn with_owner_tag(mut rows: Vec<IndexRow>, owner: &str) -> Vec<IndexRow> {
    let system = crate::fhir::OWNER_TAG_SYSTEM;
    rows.retain(|r| !(r.param == "_tag" && r.system.as_deref() == Some(system)));
    rows.push(IndexRow {
        param: "_tag".to_owned(),
        system: Some(system.to_owned()),
        value: owner.to_owned(),
        lo: None,
        hi: None,
    });
    rows
}

/// Numbers and quantities are indexed as integers of this many parts per unit (`lo`/`hi` are INTEGER
/// columns shared with dates): six decimals are kept, values beyond ±9.2e12 saturate. Clinical values
/// (doses, lab results, probabilities) sit far inside both limits.
pub const NUMBER_SCALE: f64 = 1_000_000.0;

/// `value` × [`NUMBER_SCALE`], rounded; saturating (`as` from f64 saturates and maps NaN to 0).
pub fn scale_number(value: f64) -> i64 {
    (value * NUMBER_SCALE).round() as i64
}

fn json_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn number_rows(code: &str, value: &Value, rows: &mut Rows) {
    if let Some(n) = json_number(value) {
        let scaled = scale_number(n);
        rows.push_scaled(code, None, &n.to_string(), scaled, scaled);
    }
}

/// The system navet records for a Money currency (ISO 4217), so `price=100|urn:iso:std:iso:4217|SEK` works.
const CURRENCY_SYSTEM: &str = "urn:iso:std:iso:4217";

fn quantity_rows(code: &str, value: &Value, rows: &mut Rows) {
    let Value::Object(obj) = value else { return };
    // Quantity (and its profiles), Money, or Range (low..high).
    let (lo, hi, unit_source) = if obj.contains_key("low") || obj.contains_key("high") {
        let bound = |key: &str| {
            obj.get(key)
                .and_then(|q| q.get("value"))
                .and_then(json_number)
        };
        let (low, high) = (bound("low"), bound("high"));
        if low.is_none() && high.is_none() {
            return;
        }
        let unit_source = obj
            .get("low")
            .filter(|_| low.is_some())
            .or(obj.get("high"))
            .and_then(Value::as_object);
        (
            low.map_or(i64::MIN, scale_number),
            high.map_or(i64::MAX, scale_number),
            unit_source,
        )
    } else {
        let Some(n) = obj.get("value").and_then(json_number) else {
            return;
        };
        let scaled = scale_number(n);
        (scaled, scaled, Some(obj))
    };
    // One row without a unit (a search by number alone), one per way of naming the unit.
    rows.push_scaled(code, None, "", lo, hi);
    let Some(unit) = unit_source else { return };
    if let Some(currency) = str_field(unit, "currency") {
        rows.push_scaled(code, Some(CURRENCY_SYSTEM), currency, lo, hi);
    }
    let unit_code = str_field(unit, "code");
    if let Some(c) = unit_code {
        rows.push_scaled(code, str_field(unit, "system"), c, lo, hi);
    }
    if let Some(text) = str_field(unit, "unit")
        && Some(text) != unit_code
    {
        rows.push_scaled(code, None, text, lo, hi);
    }
}

/// Separates a composite's parts in an index row's `value` (FHIR's own separator, search.html#composite).
pub const COMPOSITE_SEPARATOR: char = '$';

/// A composite's rows: for each base item, each (system, code) of its token part joined with each value of
/// its second part: `value = code$second`, `system` = the token's system, `lo`/`hi` from the second part.
/// The second part's forms (see the module docs): token `code2` and `system2|code2`; string its normalised
/// text; reference `Type/id`; quantity ``, `code`, `system|code`, `unit`; number and date nothing after `$`.
fn composite_rows(param: &SearchParam, item_root: &Value, rows: &mut Rows) {
    let [first, second] = param.components.as_slice() else {
        return;
    };
    let mut firsts = Rows::default();
    for path in &first.paths {
        for v in select(item_root, path) {
            token_rows("t", v, &mut firsts);
        }
    }
    let mut seconds = Rows::default();
    for path in &second.paths {
        for v in select(item_root, path) {
            match second.kind {
                ParamType::Token => token_rows("v", v, &mut seconds),
                ParamType::String => string_rows("v", v, &mut seconds),
                ParamType::Date => date_rows("v", v, &mut seconds),
                ParamType::Number => number_rows("v", v, &mut seconds),
                ParamType::Quantity => quantity_rows("v", v, &mut seconds),
                ParamType::Uri => {
                    if let Some(text) = v.as_str().filter(|t| !t.is_empty()) {
                        seconds.push("v", None, text);
                    }
                }
                ParamType::Reference => {
                    let literal = match v {
                        Value::Object(obj) => str_field(obj, "reference"),
                        Value::String(text) => Some(text.as_str()),
                        _ => None,
                    };
                    if let Some(r) = literal.and_then(parse_literal_reference) {
                        seconds.push("v", None, &r.value);
                    }
                }
                ParamType::Composite => {}
            }
        }
    }
    for t in firsts.rows.iter().filter(|r| r.param == "t") {
        for v in seconds.rows.iter().filter(|r| r.param == "v") {
            let mut forms = Vec::with_capacity(2);
            match second.kind {
                ParamType::Date | ParamType::Number => forms.push(String::new()),
                _ => {
                    forms.push(v.value.clone());
                    if let Some(system) = &v.system
                        && !v.value.is_empty()
                    {
                        forms.push(format!("{system}|{}", v.value));
                    }
                }
            }
            for form in forms {
                rows.insert(IndexRow {
                    param: param.code.clone(),
                    system: t.system.clone(),
                    value: format!("{}{COMPOSITE_SEPARATOR}{form}", t.value),
                    lo: v.lo,
                    hi: v.hi,
                });
            }
        }
    }
}

/// The `Patient/{id}` references that put `resource` into patients'
/// compartments, through the compartment parameters of its type (FHIR R4
/// 4.0.1 CompartmentDefinition `patient`), without duplicates. Only literal
/// references to a Patient count; identifier-only references do not name a
/// stored patient. Empty for `Patient` itself: a patient's own compartment
/// is its id, which the caller knows (its `link` does not make it a member of
/// the linked patient's compartment for navet's access rules).
pub fn patient_references(
    params: &SearchParams,
    resource_type: &str,
    resource: &Value,
) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    if resource_type == "Patient" {
        return found;
    }
    let served = params
        .patient_compartment_params(resource_type)
        .iter()
        .filter_map(|code| params.param(resource_type, code))
        .flat_map(|param| param.paths.iter());
    let paths = served.chain(params.patient_compartment_paths(resource_type));
    for path in paths {
        for value in select(resource, path) {
            let literal = match value {
                Value::Object(obj) => obj.get("reference").and_then(Value::as_str),
                Value::String(text) => Some(text.as_str()),
                _ => None,
            };
            let Some(reference) = literal.and_then(parse_literal_reference) else {
                continue;
            };
            if reference.resource_type.as_deref() == Some("Patient")
                && !found.contains(&reference.value)
            {
                found.push(reference.value);
            }
        }
    }
    found
}

/// Rows collected for one resource, deduplicated in insertion order.
#[derive(Default)]
struct Rows {
    rows: Vec<IndexRow>,
    seen: HashSet<IndexRow>,
}

impl Rows {
    fn push(&mut self, param: &str, system: Option<&str>, value: &str) {
        self.insert(IndexRow {
            param: param.to_owned(),
            system: system.filter(|s| !s.is_empty()).map(str::to_owned),
            value: value.to_owned(),
            lo: None,
            hi: None,
        });
    }

    fn push_scaled(&mut self, param: &str, system: Option<&str>, value: &str, lo: i64, hi: i64) {
        self.insert(IndexRow {
            param: param.to_owned(),
            system: system.filter(|s| !s.is_empty()).map(str::to_owned),
            value: value.to_owned(),
            lo: Some(lo),
            hi: Some(hi),
        });
    }

    fn push_range(&mut self, param: &str, value: &str, range: DateRange) {
        self.insert(IndexRow {
            param: param.to_owned(),
            system: None,
            value: value.to_owned(),
            lo: Some(range.lo),
            hi: Some(range.hi),
        });
    }

    fn insert(&mut self, row: IndexRow) {
        if self.seen.insert(row.clone()) {
            self.rows.push(row);
        }
    }
}

/// The values at `path` in `resource`; every step traverses arrays, and a
/// step filter keeps only the items whose field equals the given text.
fn select<'a>(resource: &'a Value, path: &super::params::ElementPath) -> Vec<&'a Value> {
    let mut current = vec![resource];
    for step in path.steps() {
        let mut next = Vec::new();
        for node in current {
            let Some(child) = node.get(&step.name) else {
                continue;
            };
            let items: &[Value] = match child {
                Value::Array(items) => items,
                single => std::slice::from_ref(single),
            };
            for item in items {
                let keep = match &step.filter {
                    None => !item.is_null(),
                    Some((field, wanted)) => {
                        item.get(field).and_then(Value::as_str) == Some(wanted.as_str())
                    }
                };
                if keep {
                    next.push(item);
                }
            }
        }
        current = next;
    }
    current
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Items of a field that may hold one value or an array of them.
fn items<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    match obj.get(key) {
        Some(Value::Array(items)) => items,
        Some(single) => std::slice::from_ref(single),
        None => &[],
    }
}

fn token_rows(code: &str, value: &Value, rows: &mut Rows) {
    match value {
        Value::String(text) if !text.is_empty() => rows.push(code, None, text),
        Value::Bool(flag) => rows.push(code, None, if *flag { "true" } else { "false" }),
        Value::Number(number) => rows.push(code, None, &number.to_string()),
        Value::Object(obj)
            if obj.contains_key("coding")
                || (obj.contains_key("text") && !obj.contains_key("value")) =>
        {
            // CodeableConcept: each coding, plus its text for `:text`.
            for coding in items(obj, "coding") {
                if let Value::Object(coding) = coding {
                    coding_rows(code, coding, rows);
                }
            }
            if let Some(text) = str_field(obj, "text") {
                push_text(code, text, rows);
            }
        }
        Value::Object(obj) if obj.contains_key("code") => coding_rows(code, obj, rows),
        Value::Object(obj) => {
            // Identifier and ContactPoint: system|value.
            if let Some(text) = str_field(obj, "value") {
                let system = str_field(obj, "system");
                rows.push(code, system, text);
                // A national number is also indexed in its canonical form (HL7 Sweden's system, 12 digits), so
                // `19121212-1212` under the OID and `191212121212` under the URI find the same patient.
                if let Some(system) = system
                    && let Ok(Some(id)) = crate::domain::from_fhir(system, text)
                {
                    rows.push(code, Some(id.canonical_system()), id.canonical_value());
                }
            }
        }
        _ => {}
    }
}

fn coding_rows(code: &str, coding: &Map<String, Value>, rows: &mut Rows) {
    if let Some(value) = str_field(coding, "code") {
        rows.push(code, str_field(coding, "system"), value);
    }
    if let Some(display) = str_field(coding, "display") {
        push_text(code, display, rows);
    }
}

fn push_text(code: &str, text: &str, rows: &mut Rows) {
    let normalised = normalize_string(text);
    if !normalised.is_empty() {
        rows.push(&format!("{code}{TEXT_SUFFIX}"), None, &normalised);
    }
}

/// The parts of HumanName and Address that `string` parameters search
/// (FHIR R4 4.0.1 search.html#string: a HumanName or Address matches on any
/// of its string parts).
const NAME_AND_ADDRESS_PARTS: [&str; 11] = [
    "text",
    "family",
    "given",
    "prefix",
    "suffix",
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
];

fn string_rows(code: &str, value: &Value, rows: &mut Rows) {
    match value {
        Value::String(text) => push_string(code, text, rows),
        Value::Object(obj) => {
            for part in NAME_AND_ADDRESS_PARTS {
                for item in items(obj, part) {
                    if let Some(text) = item.as_str() {
                        push_string(code, text, rows);
                    }
                }
            }
        }
        _ => {}
    }
}

fn push_string(code: &str, text: &str, rows: &mut Rows) {
    let normalised = normalize_string(text);
    if normalised.is_empty() {
        return;
    }
    rows.push(code, None, &normalised);
    rows.push(&format!("{code}{EXACT_SUFFIX}"), None, text);
}

fn reference_rows(param: &SearchParam, value: &Value, rows: &mut Rows) {
    match value {
        // canonical (and uri) elements searched by a reference parameter.
        Value::String(text) => {
            if let Some(reference) = parse_literal_reference(text)
                && reference
                    .resource_type
                    .as_deref()
                    .is_none_or(|t| param.accepts_target(t))
            {
                rows.push(&param.code, None, &reference.value);
            }
        }
        Value::Object(obj) => {
            let literal = str_field(obj, "reference").and_then(parse_literal_reference);
            let declared_type = str_field(obj, "type").map(|t| t.rsplit('/').next().unwrap_or(t));
            let resource_type = literal
                .as_ref()
                .and_then(|r| r.resource_type.as_deref())
                .or(declared_type);
            if resource_type.is_some_and(|t| !param.accepts_target(t)) {
                return;
            }
            if let Some(reference) = &literal {
                rows.push(&param.code, None, &reference.value);
            }
            if let Some(Value::Object(identifier)) = obj.get("identifier")
                && let Some(text) = str_field(identifier, "value")
            {
                rows.push(
                    &format!("{}{IDENTIFIER_SUFFIX}", param.code),
                    str_field(identifier, "system"),
                    text,
                );
            }
        }
        _ => {}
    }
}

fn date_rows(code: &str, value: &Value, rows: &mut Rows) {
    match value {
        Value::String(text) => {
            if let Some(range) = parse_date_range(text) {
                rows.push_range(code, text, range);
            }
        }
        Value::Object(obj) if obj.contains_key("start") || obj.contains_key("end") => {
            period_row(code, obj, rows)
        }
        Value::Object(obj) => {
            // Timing: each event, and the bounds of a repeat, are ranges of
            // their own (FHIR R4 4.0.1 search.html#date, Timing).
            for event in items(obj, "event") {
                if let Some(text) = event.as_str()
                    && let Some(range) = parse_date_range(text)
                {
                    rows.push_range(code, text, range);
                }
            }
            if let Some(Value::Object(repeat)) = obj.get("repeat")
                && let Some(Value::Object(bounds)) = repeat.get("boundsPeriod")
            {
                period_row(code, bounds, rows);
            }
        }
        _ => {}
    }
}

fn period_row(code: &str, period: &Map<String, Value>, rows: &mut Rows) {
    let start = str_field(period, "start");
    let end = str_field(period, "end");
    let lo = match start {
        Some(text) => match parse_date_range(text) {
            Some(range) => range.lo,
            None => return,
        },
        None => i64::MIN,
    };
    let hi = match end {
        Some(text) => match parse_date_range(text) {
            Some(range) => range.hi,
            None => return,
        },
        None => i64::MAX,
    };
    if start.is_none() && end.is_none() {
        return;
    }
    let text = format!("{}/{}", start.unwrap_or(""), end.unwrap_or(""));
    rows.push_range(code, &text, DateRange { lo, hi });
}

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

#[cfg(test)]
mod tests;
