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
//!
//! Split by responsibility: this file holds the row type, the constants of the encoding and the patient
//! compartment; `rows` turns a resource, value by value, into rows ([`index_resource`]); `values` holds
//! the text forms that the query side parses too (normalised strings, literal references, ids, date
//! ranges).

mod rows;
mod values;

pub use rows::index_resource;
pub use values::{
    DateRange, LiteralReference, is_resource_type_name, is_valid_id, normalize_string,
    parse_date_range, parse_literal_reference,
};

use serde_json::Value;

use super::params::SearchParams;
use rows::select;
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

/// Separates a composite's parts in an index row's `value` (FHIR's own separator, search.html#composite).
pub const COMPOSITE_SEPARATOR: char = '$';

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

#[cfg(test)]
mod tests;
