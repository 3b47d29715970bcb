//! The search query parser: from the decoded query pairs of a search request
//! to a typed [`SearchQuery`] (FHIR R4 4.0.1 search.html).
//!
//! Every pair is either a filter (a search parameter of the resource type, or
//! `_id` / `_lastUpdated`) or a result parameter (`_count`, `_sort`,
//! `_include`, `_revinclude`, `_total`, `_summary`, `_elements`, `_format`,
//! `_cursor`/`_page`, `_pretty`). Filters are ANDed; repeating a parameter
//! ANDs again; a comma inside one value ORs (FHIR R4 4.0.1 search.html). `\,`,
//! `\|`, `\$` and `\\` escape those characters (search.html#escaping).
//! Percent-decoding is the caller's job.
//!
//! Errors are collected, not returned at the first: the client gets them all
//! in one OperationOutcome. Only an unknown parameter *name* is ignorable: an
//! error under strict handling, listed in [`SearchQuery::ignored`] under
//! `Prefer: handling=lenient` (search.html#errors). A known parameter that
//! cannot be applied (an unsupported modifier, a chain through an unknown
//! parameter, a malformed value) is an error either way, so no filter is ever
//! silently dropped. Chains (`patient.identifier`), `_has`, `_include[:iterate]`
//! and `_revinclude[:iterate]` are parsed into [`Link`]s and [`Include`]s. A
//! parameter with an empty value (`name=`) restricts nothing; it is dropped
//! and listed in `ignored` too.
//!
//! How each [`FilterValue`] matches the index rows is defined in
//! [`crate::search::index`]'s module docs; [`Filter::matches_rows`] is the
//! reference implementation of that contract, and [`date_condition`] gives
//! the date prefixes as conditions on the `lo`/`hi` columns.
//!
//! The work is split by responsibility: `parse` (the entry point, result parameters and caps), `filter`
//! (filter keys, chains, `_has`), `value` (one value by parameter type) and `matching` (how a filter matches
//! index rows).

mod filter;
mod matching;
mod parse;
mod value;

pub use matching::{
    Comparison, DateBound, DateColumn, DateCondition, date_condition, date_condition_at,
};
pub use parse::parse_query;

use std::fmt;

use super::index::is_resource_type_name;
use super::params::ParamType;

/// Caps on the work one search may ask for (issue 8). Without them ~1,000 values or parameters ran into
/// SQLite's limits (an expression at most 1,000 terms deep: every ANDed filter and ORed value adds one; at
/// most 32,766 bound values) and answered 500, and every `_sort` key is two correlated subqueries per
/// candidate row (990 keys cost 3 s of CPU). The caps sit far above what real clients send (FHIR's examples
/// use one to five of each) and far enough below SQLite's limits that a search at every cap at once still
/// runs (tests/fhir_search.rs checks it).
pub const MAX_PARAMETERS: usize = 50;
/// Comma-separated (ORed) values in one parameter.
pub const MAX_VALUES_PER_PARAMETER: usize = 100;
/// Values in all filters of one search together: a reference value may bind one value per target type (up
/// to 9), so this keeps a search at every cap under SQLite's bound-value limit.
pub const MAX_VALUES: usize = 1_000;
/// Keys of `_sort`.
pub const MAX_SORT_KEYS: usize = 5;
/// `_include` and `_revinclude` parameters together (each is one more query per page).
pub const MAX_INCLUDES: usize = 10;

/// A parsed search request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// ANDed filters, in request order.
    pub filters: Vec<Filter>,
    /// `_count` as requested; the caller applies its own cap (e.g. 500).
    pub count: Option<usize>,
    pub sort: Vec<SortKey>,
    pub include: Vec<Include>,
    pub total: TotalMode,
    /// `_summary`: one of `count`, `true`, `false`, `text`, `data`.
    pub summary: Option<String>,
    /// `_elements`, element names in request order.
    pub elements: Option<Vec<String>>,
    /// `_format`, as given (the HTTP layer interprets it).
    pub format: Option<String>,
    /// `_cursor` or `_page`: an opaque paging token minted by the server.
    pub cursor: Option<String>,
    /// Parameters (as keys, with their modifier) dropped under lenient
    /// handling or for an empty value, for the OperationOutcome and so the
    /// self link can leave them out.
    pub ignored: Vec<String>,
    /// Compartment search (`Patient/{id}/Task`, FHIR R4 4.0.1 §3.1.0.9.2): only resources in the patient's
    /// compartment (`Patient/{id}`), as the patient links record it. Set by the HTTP layer, never parsed.
    pub compartment: Option<String>,
    /// Keyset paging: only resources after this one in the default order (newest first). Set by the
    /// HTTP layer from a checked cursor.
    pub after: Option<PageKey>,
    /// Offset paging under `_sort`: only resources last changed at or before this instant (ms), so that
    /// what is written during a walk cannot shift the pages.
    pub snapshot_ms: Option<i64>,
}

/// A position in the default search order (`lu_ms DESC, id ASC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageKey {
    pub lu_ms: i64,
    pub id: String,
}

impl SearchQuery {
    /// Every resource type the query reads besides its own: chained, `_has`, `_include` and `_revinclude`
    /// types. The caller must be allowed to search each (a chain through a type is a search of it).
    pub fn referenced_types(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |t: &str| {
            if !out.iter().any(|o| o == t) {
                out.push(t.to_owned());
            }
        };
        fn walk(f: &Filter, add: &mut dyn FnMut(&str)) {
            match &f.link {
                Some(Link::Chain(targets)) => {
                    for (t, inner) in targets {
                        add(t);
                        walk(inner, add);
                    }
                }
                Some(Link::Has {
                    source_type, inner, ..
                }) => {
                    add(source_type);
                    walk(inner, add);
                }
                None => {}
            }
        }
        for f in &self.filters {
            walk(f, &mut add);
        }
        for inc in &self.include {
            add(&inc.source_type);
            if let Some(t) = &inc.target_type {
                add(t);
            }
        }
        out
    }
}

/// `_total` (FHIR R4 4.0.1 search.html#total).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TotalMode {
    /// Not requested: the server decides.
    #[default]
    Unspecified,
    None,
    Estimate,
    Accurate,
}

/// One search parameter of the request. Its values are ORed.
///
/// `_id` and `_lastUpdated` have no index rows: the store matches `_id`'s
/// token codes against its id column, and `_lastUpdated`'s dates with
/// [`date_condition`] on a range `lo = hi =` the version's last-updated
/// milliseconds. Every other filter reads the index rows named by
/// [`Filter::index_param`] (or [`Filter::presence_params`] for `:missing`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The parameter code, e.g. `patient`, `_id`, `_lastUpdated`; `_has` for a reverse chain.
    pub param: String,
    pub kind: ParamType,
    pub modifier: Option<Modifier>,
    /// Empty for a chained or `_has` filter, whose condition is its [`Filter::link`].
    pub values: Vec<FilterValue>,
    pub link: Option<Link>,
}

/// How deep chains and `_has` may nest (`a.b.c.d=` is three links). Each level is one more subquery.
pub const MAX_CHAIN_DEPTH: usize = 3;

/// A filter over other resources (FHIR R4 4.0.1 search.html#chaining, #has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// `param[:Type].rest=value`: the resource references, through `param`, a resource of one of these
    /// types that matches its filter (visible to the caller).
    Chain(Vec<(String, Box<Filter>)>),
    /// `_has:Type:param:rest=value`: a resource of `source_type` that the caller may see references this
    /// one through `param` and matches `inner`.
    Has {
        source_type: String,
        param: String,
        inner: Box<Filter>,
    },
}

/// The search modifiers navet supports (FHIR R4 4.0.1 search.html, per
/// parameter type; code system `search-modifier-code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    /// string: whole value, case and accents as written.
    Exact,
    /// string: anywhere in the value.
    Contains,
    /// any type: values are [`FilterValue::Missing`].
    Missing,
    /// token: no value of the resource matches.
    Not,
    /// reference: matches `Reference.identifier`; values are tokens.
    Identifier,
    /// token: matches CodeableConcept.text / Coding.display; values are strings.
    Text,
    /// uri: the value starts with the search uri.
    Below,
    /// uri: the search uri starts with the value.
    Above,
    /// reference `:[type]`: already folded into the values (each names the
    /// type); kept so the request can be echoed.
    Type(String),
}

impl fmt::Display for Modifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Modifier::Exact => "exact",
            Modifier::Contains => "contains",
            Modifier::Missing => "missing",
            Modifier::Not => "not",
            Modifier::Identifier => "identifier",
            Modifier::Text => "text",
            Modifier::Below => "below",
            Modifier::Above => "above",
            Modifier::Type(resource_type) => resource_type,
        })
    }
}

/// One ORed value of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterValue {
    /// `code`, `system|code`, `|code`, `system|`. `system`: `None` = any
    /// system, `Some(None)` = no system, `Some(Some(s))` = system `s`.
    /// `code: None` = any code of that system. Also the values of
    /// `_id` (an id) and of `:identifier` (`system|value`).
    Token {
        system: Option<Option<String>>,
        code: Option<String>,
    },
    /// A string search text: normalised ([`normalize_string`]) unless the
    /// modifier is `:exact`, which keeps it as written. Also `:text` values.
    String(String),
    Reference(ReferenceValue),
    /// A date with its prefix; `lo..=hi` is the range the value covers (ms
    /// since the epoch). Match with [`date_condition`].
    Date {
        prefix: Prefix,
        lo: i64,
        hi: i64,
    },
    /// A uri, exact.
    Uri(String),
    /// `:missing=true` (`true`) or `:missing=false`.
    Missing(bool),
    /// number, quantity and composite values: a condition on one index row's columns.
    Row(RowMatch),
}

/// A condition on one index row: its `system`, its `value`, its `lo`/`hi` range, all that are given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMatch {
    /// As for tokens: `None` any system, `Some(None)` none, `Some(Some(s))` that one.
    pub system: Option<Option<String>>,
    pub value: Option<ValueMatch>,
    /// A prefix and the range (scaled numbers, or ms for dates) for [`date_condition`].
    pub range: Option<(Prefix, i64, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueMatch {
    Equals(String),
    StartsWith(String),
}

/// A reference search value, in the index's canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceValue {
    /// `Type/id`, from `Type/id`, an absolute URL ending in `/Type/id`, a
    /// `:Type` modifier, or a bare id when the parameter has exactly one
    /// target type (`patient=123` → `Patient/123`). Row `value = "Type/id"`.
    Local { resource_type: String, id: String },
    /// A bare id for a parameter that may point to several types: rows whose
    /// `value` is `T/id` for one of `types`, or for any type when `types` is
    /// empty (SQLite: `substr(value, -length(?id) - 1) = '/' || ?id`), or
    /// whose `value` is the bare id itself (a reference written that way).
    AnyType { id: String, types: Vec<String> },
    /// Any other literal (`urn:uuid:…`, a URL not ending in `/Type/id`):
    /// row `value` equals it.
    Literal(String),
}

impl ReferenceValue {
    /// The row `value`s that match, or `None` for an [`ReferenceValue::AnyType`]
    /// open to every type (match by the `/id` suffix instead).
    pub fn candidates(&self) -> Option<Vec<String>> {
        match self {
            ReferenceValue::Local { resource_type, id } => {
                Some(vec![format!("{resource_type}/{id}")])
            }
            ReferenceValue::AnyType { types, .. } if types.is_empty() => None,
            // A bare id also matches a reference written as that bare text (e.g. a relative canonical).
            ReferenceValue::AnyType { id, types } => Some(
                types
                    .iter()
                    .map(|t| format!("{t}/{id}"))
                    .chain(std::iter::once(id.clone()))
                    .collect(),
            ),
            ReferenceValue::Literal(text) => Some(vec![text.clone()]),
        }
    }

    /// Whether an index row `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            ReferenceValue::AnyType { id, types } if types.is_empty() => {
                value == id
                    || value
                        .rsplit_once('/')
                        .is_some_and(|(resource_type, row_id)| {
                            row_id == id && is_resource_type_name(resource_type)
                        })
            }
            other => other
                .candidates()
                .unwrap_or_default()
                .iter()
                .any(|c| c == value),
        }
    }
}

/// Date comparison prefixes (FHIR R4 4.0.1 search.html#prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

impl Prefix {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "eq" => Prefix::Eq,
            "ne" => Prefix::Ne,
            "gt" => Prefix::Gt,
            "lt" => Prefix::Lt,
            "ge" => Prefix::Ge,
            "le" => Prefix::Le,
            "sa" => Prefix::Sa,
            "eb" => Prefix::Eb,
            "ap" => Prefix::Ap,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Prefix::Eq => "eq",
            Prefix::Ne => "ne",
            Prefix::Gt => "gt",
            Prefix::Lt => "lt",
            Prefix::Ge => "ge",
            Prefix::Le => "le",
            Prefix::Sa => "sa",
            Prefix::Eb => "eb",
            Prefix::Ap => "ap",
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `_sort` key. The store orders a resource by its rows of `param`:
/// ascending by the smallest (`MIN(lo)` for dates, `MIN(value)` otherwise),
/// descending by the largest (`MAX(hi)` / `MAX(value)`); resources without
/// a row come last. `_id` and `_lastUpdated` sort by their columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub param: String,
    pub kind: ParamType,
    pub descending: bool,
}

/// One `_include=Type:param[:Target]`: add the resources that the matches'
/// `param` references, i.e. the `Type/id` `value`s of their `param` rows
/// (rows holding other literals, such as `urn:uuid:`, name nothing stored),
/// only those of `target_type` when given; `_revinclude` the other way round.
/// Wildcards are refused by the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub source_type: String,
    pub param: String,
    pub target_type: Option<String>,
    /// `_revinclude`: the resources of `source_type` whose `param` references a result.
    pub reverse: bool,
    /// `:iterate`: applied to included resources too, not only to the matches.
    pub iterate: bool,
}

/// A problem with one query parameter, for the OperationOutcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct QueryError {
    /// The query key as given (with its modifier).
    pub param: String,
    pub message: String,
}

impl QueryError {
    fn new(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: param.to_owned(),
            message: message.into(),
        }
    }
}

/// A problem with one parameter. Lenient handling may ignore only an unknown parameter name: a known
/// filter that cannot be applied is always an error, so that no filter is silently dropped (issue 14).
enum Problem {
    /// The parameter name is not one navet knows for the type.
    Unsupported(QueryError),
    Invalid(QueryError),
}

impl Problem {
    /// Inside a chain or `_has` the head is a known filter: nothing there may be ignored.
    fn strict(self) -> Problem {
        match self {
            Problem::Unsupported(e) | Problem::Invalid(e) => Problem::Invalid(e),
        }
    }
}

#[cfg(test)]
mod tests;
