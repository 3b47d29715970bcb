//! [`index_resource`]: each kind of value to index rows (token, string, reference, date, number, quantity, composite), per the
//! encoding in [`super`]'s module docs, and the path selection that finds the values. The bulk of the
//! indexer, apart from its entry points and the text forms shared with the query side.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::values::{DateRange, normalize_string, parse_date_range, parse_literal_reference};
use super::{
    COMPOSITE_SEPARATOR, EXACT_SUFFIX, IDENTIFIER_SUFFIX, IndexRow, TEXT_SUFFIX, scale_number,
};
use crate::search::params::{ElementPath, ParamType, SearchParam, SearchParams};
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
pub(super) fn select<'a>(resource: &'a Value, path: &ElementPath) -> Vec<&'a Value> {
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
