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

use std::collections::HashSet;
use std::fmt;

use super::index::{
    COMPOSITE_SEPARATOR, EXACT_SUFFIX, IDENTIFIER_SUFFIX, IndexRow, TEXT_SUFFIX,
    is_resource_type_name, is_valid_id, normalize_string, parse_date_range,
    parse_literal_reference,
};
use super::params::{ParamType, SearchParam, SearchParams};

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

/// Parses the decoded query `pairs` of a search on `resource_type`.
///
/// `lenient` is `Prefer: handling=lenient`: unknown and unsupported
/// parameters are then listed in [`SearchQuery::ignored`] instead of failing
/// the request. All errors are returned together.
pub fn parse_query(
    params: &SearchParams,
    resource_type: &str,
    pairs: &[(String, String)],
    lenient: bool,
) -> Result<SearchQuery, Vec<QueryError>> {
    // The caps are checked before anything is parsed, so an oversized query costs no more than counting.
    check_caps(pairs)?;
    let mut query = SearchQuery::default();
    let mut errors = Vec::new();
    let mut seen_once: HashSet<&'static str> = HashSet::new();

    for (key, value) in pairs {
        if value.is_empty() {
            query.ignored.push(key.clone());
            continue;
        }
        let (name, modifier) = match key.split_once(':') {
            Some((name, modifier)) => (name, Some(modifier)),
            None => (key.as_str(), None),
        };
        let outcome = match name {
            "_pretty" => Ok(()),
            "_count" | "_sort" | "_total" | "_totalMethod" | "_summary" | "_format" | "_cursor"
            | "_page" => {
                let slot = if name == "_page" {
                    "_cursor"
                } else {
                    result_slot(name)
                };
                if modifier.is_some() {
                    Err(Problem::Invalid(QueryError::new(
                        key,
                        format!("{name} takes no modifier"),
                    )))
                } else if !seen_once.insert(slot) {
                    Err(Problem::Invalid(QueryError::new(
                        key,
                        format!("{name} may appear only once"),
                    )))
                } else {
                    parse_single_result_param(params, resource_type, &mut query, key, name, value)
                }
            }
            "_elements" => match modifier {
                Some(_) => Err(Problem::Invalid(QueryError::new(
                    key,
                    "_elements takes no modifier",
                ))),
                None => parse_elements(&mut query, key, value),
            },
            "_include" | "_revinclude" => match modifier {
                None | Some("iterate") => parse_include(
                    params,
                    resource_type,
                    key,
                    value,
                    name == "_revinclude",
                    modifier.is_some(),
                )
                .map(|include| query.include.push(include)),
                Some(m) => Err(Problem::Invalid(QueryError::new(
                    key,
                    format!("{name}:{m} is not supported (only :iterate)"),
                ))),
            },
            _ => parse_filter_key(params, resource_type, key, value, 0)
                .map(|f| query.filters.push(f)),
        };
        match outcome {
            Ok(()) => {}
            Err(Problem::Unsupported(_)) if lenient => query.ignored.push(key.clone()),
            Err(Problem::Unsupported(error) | Problem::Invalid(error)) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(query)
    } else {
        Err(errors)
    }
}

/// The request-wide caps ([`MAX_PARAMETERS`], [`MAX_INCLUDES`], [`MAX_VALUES`]); each error names the cap
/// and its limit.
/// (Values per parameter and `_sort` keys are counted where those are split.)
fn check_caps(pairs: &[(String, String)]) -> Result<(), Vec<QueryError>> {
    if pairs.len() > MAX_PARAMETERS {
        return Err(vec![QueryError::new(
            "search",
            format!(
                "too many parameters: a search takes at most {MAX_PARAMETERS}, this one has {}",
                pairs.len()
            ),
        )]);
    }
    let includes = pairs
        .iter()
        .filter(|(k, _)| {
            let name = k.split(':').next().unwrap_or("");
            name == "_include" || name == "_revinclude"
        })
        .count();
    if includes > MAX_INCLUDES {
        return Err(vec![QueryError::new(
            "_include",
            format!(
                "too many _include and _revinclude parameters: a search takes at most {MAX_INCLUDES}, \
                 this one has {includes}"
            ),
        )]);
    }
    // The values of the filters (result parameters start with `_`, except the filters `_id` and
    // `_lastUpdated`). A parameter over its own cap is reported by `parse_filter`, by name.
    let per_filter: Vec<usize> = pairs
        .iter()
        .filter(|(k, _)| {
            let name = k.split(':').next().unwrap_or("");
            !name.starts_with('_') || name == "_id" || name == "_lastUpdated"
        })
        .map(|(_, v)| split_escaped(v, ',').len())
        .collect();
    let total: usize = per_filter.iter().sum();
    if per_filter.iter().all(|n| *n <= MAX_VALUES_PER_PARAMETER) && total > MAX_VALUES {
        return Err(vec![QueryError::new(
            "search",
            format!(
                "too many values: a search takes at most {MAX_VALUES} values in all its parameters, \
                 this one has {total}"
            ),
        )]);
    }
    Ok(())
}

fn result_slot(name: &str) -> &'static str {
    match name {
        "_count" => "_count",
        "_sort" => "_sort",
        "_total" | "_totalMethod" => "_total",
        "_summary" => "_summary",
        "_format" => "_format",
        _ => "_cursor",
    }
}

fn parse_single_result_param(
    params: &SearchParams,
    resource_type: &str,
    query: &mut SearchQuery,
    key: &str,
    name: &str,
    value: &str,
) -> Result<(), Problem> {
    let invalid = |message: String| Problem::Invalid(QueryError::new(key, message));
    match name {
        "_count" => {
            // Digits only: `usize::from_str` would also take a leading `+`.
            if !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(format!(
                    "_count must be a non-negative integer, not {value:?}"
                )));
            }
            let count = value
                .parse::<usize>()
                .map_err(|_| invalid(format!("_count {value:?} is too large")))?;
            query.count = Some(count);
        }
        "_sort" => query.sort = parse_sort(params, resource_type, key, value)?,
        "_total" => {
            query.total = match value {
                "none" => TotalMode::None,
                "estimate" => TotalMode::Estimate,
                "accurate" => TotalMode::Accurate,
                _ => {
                    return Err(invalid(format!(
                        "_total must be none, estimate or accurate, not {value:?}"
                    )));
                }
            }
        }
        // fhirpy's `count()` (2.x) sends Aidbox's `_totalMethod=count` instead of `_total`: the same request,
        // so it is read as `_total` (and, sharing its slot, cannot be given beside it).
        "_totalMethod" => {
            query.total = match value {
                "none" => TotalMode::None,
                "estimate" => TotalMode::Estimate,
                "count" => TotalMode::Accurate,
                _ => {
                    return Err(invalid(format!(
                        "_totalMethod must be none, estimate or count, not {value:?}"
                    )));
                }
            }
        }
        "_summary" => {
            if !["count", "true", "false", "text", "data"].contains(&value) {
                return Err(invalid(format!(
                    "_summary must be count, true, false, text or data, not {value:?}"
                )));
            }
            query.summary = Some(value.to_owned());
        }
        "_format" => query.format = Some(value.to_owned()),
        _ => query.cursor = Some(value.to_owned()),
    }
    Ok(())
}

fn parse_elements(query: &mut SearchQuery, key: &str, value: &str) -> Result<(), Problem> {
    let mut names = Vec::new();
    for name in value.split(',').map(str::trim) {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric());
        if !valid {
            return Err(Problem::Invalid(QueryError::new(
                key,
                format!("_elements entry {name:?} is not an element name"),
            )));
        }
        names.push(name.to_owned());
    }
    query.elements.get_or_insert_with(Vec::new).extend(names);
    Ok(())
}

fn parse_sort(
    params: &SearchParams,
    resource_type: &str,
    key: &str,
    value: &str,
) -> Result<Vec<SortKey>, Problem> {
    let given = value.split(',').count();
    if given > MAX_SORT_KEYS {
        return Err(Problem::Invalid(QueryError::new(
            key,
            format!("too many _sort keys: at most {MAX_SORT_KEYS}, this one has {given}"),
        )));
    }
    let mut keys = Vec::new();
    for item in value.split(',').map(str::trim) {
        let (descending, code) = match item.strip_prefix('-') {
            Some(code) => (true, code),
            None => (false, item),
        };
        let kind = match code {
            "_id" => ParamType::Token,
            "_lastUpdated" => ParamType::Date,
            _ => match params.param(resource_type, code) {
                Some(param)
                    if matches!(
                        param.kind,
                        ParamType::Date
                            | ParamType::String
                            | ParamType::Token
                            | ParamType::Number
                            | ParamType::Quantity
                            | ParamType::Uri
                    ) =>
                {
                    param.kind
                }
                Some(param) => {
                    return Err(Problem::Invalid(QueryError::new(
                        key,
                        format!("cannot sort by {} parameter {code:?}", param.kind),
                    )));
                }
                None => {
                    return Err(Problem::Invalid(QueryError::new(
                        key,
                        format!("unknown _sort key {item:?} for {resource_type}"),
                    )));
                }
            },
        };
        keys.push(SortKey {
            param: code.to_owned(),
            kind,
            descending,
        });
    }
    Ok(keys)
}

fn parse_include(
    params: &SearchParams,
    resource_type: &str,
    key: &str,
    value: &str,
    reverse: bool,
    iterate: bool,
) -> Result<Include, Problem> {
    let invalid = |message: String| Problem::Invalid(QueryError::new(key, message));
    if value == "*" || value.ends_with(":*") {
        return Err(invalid(
            "_include with a wildcard is not supported; name the parameter".into(),
        ));
    }
    let parts: Vec<&str> = value.split(':').collect();
    let (source_type, code, target_type) = match parts.as_slice() {
        [source, code] => (*source, *code, None),
        [source, code, target] => (*source, *code, Some(*target)),
        _ => {
            return Err(invalid(format!(
                "_include must be Type:param or Type:param:Target, not {value:?}"
            )));
        }
    };
    // A plain _include starts from the matches; a plain _revinclude points at them. :iterate may start
    // from (or point at) any included type.
    if !iterate && !reverse && source_type != resource_type {
        return Err(invalid(format!(
            "_include {value:?} starts from {source_type}, but this search is on {resource_type} \
             (use _include:iterate to follow included resources)"
        )));
    }
    if !iterate && reverse && target_type.is_some_and(|t| t != resource_type) {
        return Err(invalid(format!(
            "_revinclude {value:?} points at another type than {resource_type}"
        )));
    }
    let Some(param) = params.param(source_type, code) else {
        return Err(invalid(format!(
            "unknown search parameter {code:?} for {source_type} in _include"
        )));
    };
    if param.kind != ParamType::Reference {
        return Err(invalid(format!(
            "_include needs a reference parameter; {code:?} is a {} parameter",
            param.kind
        )));
    }
    if let Some(target) = target_type
        && !(is_resource_type_name(target) && param.accepts_target(target))
    {
        return Err(invalid(format!(
            "{target:?} is not a target type of {source_type}:{code}"
        )));
    }
    if !iterate && reverse && !param.accepts_target(resource_type) {
        return Err(invalid(format!(
            "{source_type}:{code} cannot point at {resource_type}"
        )));
    }
    Ok(Include {
        source_type: source_type.to_owned(),
        param: code.to_owned(),
        target_type: target_type.map(str::to_owned),
        reverse,
        iterate,
    })
}

/// The kind of a filter parameter and, for table parameters, its definition.
enum Resolved<'a> {
    Id,
    LastUpdated,
    Table(&'a SearchParam),
}

fn parse_filter(
    params: &SearchParams,
    resource_type: &str,
    key: &str,
    name: &str,
    modifier: Option<&str>,
    value: &str,
) -> Result<Filter, Problem> {
    let unsupported = |message: String| Problem::Unsupported(QueryError::new(key, message));
    let invalid = |message: String| Problem::Invalid(QueryError::new(key, message));

    let resolved = match name {
        "_id" => Resolved::Id,
        "_lastUpdated" => Resolved::LastUpdated,
        _ => match params.param(resource_type, name) {
            Some(param) => Resolved::Table(param),
            None => {
                return Err(unsupported(format!(
                    "unknown search parameter '{name}' for {resource_type}"
                )));
            }
        },
    };
    let kind = match resolved {
        Resolved::Id => ParamType::Token,
        Resolved::LastUpdated => ParamType::Date,
        Resolved::Table(param) => param.kind,
    };
    let modifier = match (modifier, &resolved) {
        (None, _) => None,
        // `_id` and `_lastUpdated` are column lookups in the store.
        (Some(m), Resolved::Id | Resolved::LastUpdated) => {
            return Err(invalid(format!("modifier :{m} is not supported on {name}")));
        }
        // A known parameter with a modifier navet cannot apply is refused even under lenient handling.
        (Some(m), Resolved::Table(param)) => {
            Some(parse_modifier(param, m).map_err(|p| match p {
                ModifierProblem::Unsupported(message) | ModifierProblem::Invalid(message) => {
                    invalid(message)
                }
            })?)
        }
    };

    let pieces = split_escaped(value, ',');
    if pieces.len() > MAX_VALUES_PER_PARAMETER {
        return Err(invalid(format!(
            "too many values: one parameter takes at most {MAX_VALUES_PER_PARAMETER} comma-separated \
             values, this one has {}",
            pieces.len()
        )));
    }
    if pieces.iter().any(String::is_empty) {
        return Err(invalid(format!("empty value in the list {value:?}")));
    }
    let values = if modifier == Some(Modifier::Missing) {
        match pieces.as_slice() {
            [one] if one == "true" => vec![FilterValue::Missing(true)],
            [one] if one == "false" => vec![FilterValue::Missing(false)],
            _ => {
                return Err(invalid(format!(
                    ":missing takes true or false, not {value:?}"
                )));
            }
        }
    } else {
        pieces
            .iter()
            .map(|piece| match &resolved {
                Resolved::Id => {
                    let id = unescape(piece);
                    if is_valid_id(&id) {
                        Ok(FilterValue::Token {
                            system: None,
                            code: Some(id),
                        })
                    } else {
                        Err(invalid(format!("{id:?} is not a valid resource id")))
                    }
                }
                Resolved::LastUpdated => parse_date_value(piece).map_err(invalid),
                Resolved::Table(param) => {
                    parse_value(param, modifier.as_ref(), piece).map_err(invalid)
                }
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let values = with_canonical_national_ids(values);
    Ok(Filter {
        param: name.to_owned(),
        kind,
        modifier,
        values,
        link: None,
    })
}

/// A filter key: `_has:…`, a chain `param[:Type].rest`, or a plain parameter with an optional modifier.
fn parse_filter_key(
    params: &SearchParams,
    resource_type: &str,
    key: &str,
    value: &str,
    depth: usize,
) -> Result<Filter, Problem> {
    let invalid = |message: String| Problem::Invalid(QueryError::new(key, message));
    if depth > MAX_CHAIN_DEPTH {
        return Err(invalid(format!(
            "chains and _has nest at most {MAX_CHAIN_DEPTH} levels deep"
        )));
    }
    if let Some(rest) = key.strip_prefix("_has:") {
        return parse_has(params, resource_type, key, rest, value, depth);
    }
    if let Some((head, rest)) = key.split_once('.') {
        return parse_chain(params, resource_type, key, head, rest, value, depth);
    }
    let (name, modifier) = match key.split_once(':') {
        Some((name, modifier)) => (name, Some(modifier)),
        None => (key, None),
    };
    if name == "_has" {
        return Err(invalid(
            "_has takes _has:Type:reference-parameter:parameter=value".into(),
        ));
    }
    parse_filter(params, resource_type, key, name, modifier, value)
}

/// `param[:Type].rest=value` (search.html#chaining). Without `:Type`, every target type of `param` that has
/// the next parameter is searched.
fn parse_chain(
    params: &SearchParams,
    resource_type: &str,
    key: &str,
    head: &str,
    rest: &str,
    value: &str,
    depth: usize,
) -> Result<Filter, Problem> {
    let invalid = |message: String| Problem::Invalid(QueryError::new(key, message));
    let (code, type_modifier) = match head.split_once(':') {
        Some((code, t)) => (code, Some(t)),
        None => (head, None),
    };
    let Some(param) = params.param(resource_type, code) else {
        return Err(Problem::Unsupported(QueryError::new(
            key,
            format!("unknown search parameter '{code}' for {resource_type}"),
        )));
    };
    if param.kind != ParamType::Reference {
        return Err(invalid(format!(
            "a chain starts with a reference parameter; '{code}' is a {} parameter",
            param.kind
        )));
    }
    let candidates: Vec<String> = match type_modifier {
        Some(t) if is_resource_type_name(t) && param.accepts_target(t) => vec![t.to_owned()],
        Some(t) => return Err(invalid(format!("{t} is not a target type of {code}"))),
        None if param.targets.is_empty() => {
            return Err(invalid(format!(
                "'{code}' may point at any type: name it, as in {code}:Patient.{rest}"
            )));
        }
        None => param.targets.clone(),
    };
    let next = rest.split(['.', ':']).next().unwrap_or_default().to_owned();
    let mut targets = Vec::new();
    let mut first_error = None;
    for target in candidates {
        // A target type without the next parameter cannot match; skip it, unless it is the only one.
        let has_next = next == "_id"
            || next == "_lastUpdated"
            || next == "_has"
            || params.param(&target, &next).is_some();
        if !has_next {
            continue;
        }
        match parse_filter_key(params, &target, rest, value, depth + 1) {
            Ok(inner) => targets.push((target, Box::new(inner))),
            Err(problem) => {
                first_error.get_or_insert(problem.strict());
            }
        }
    }
    if let Some(problem) = first_error {
        return Err(problem);
    }
    if targets.is_empty() {
        return Err(invalid(format!(
            "no target type of {resource_type}.{code} has a search parameter '{next}'"
        )));
    }
    Ok(Filter {
        param: code.to_owned(),
        kind: ParamType::Reference,
        modifier: type_modifier.map(|t| Modifier::Type(t.to_owned())),
        values: Vec::new(),
        link: Some(Link::Chain(targets)),
    })
}

/// `_has:Type:param:rest=value` (search.html#has): `rest` is a parameter of `Type`, possibly another `_has`.
fn parse_has(
    params: &SearchParams,
    resource_type: &str,
    key: &str,
    spec: &str,
    value: &str,
    depth: usize,
) -> Result<Filter, Problem> {
    let invalid = |message: String| Problem::Invalid(QueryError::new(key, message));
    let mut parts = spec.splitn(3, ':');
    let (Some(source_type), Some(code), Some(rest)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(
            "_has takes _has:Type:reference-parameter:parameter=value".into(),
        ));
    };
    if params.params_for(source_type).next().is_none() {
        return Err(invalid(format!("{source_type:?} is not a searchable type")));
    }
    let Some(param) = params.param(source_type, code) else {
        return Err(invalid(format!(
            "unknown search parameter '{code}' for {source_type}"
        )));
    };
    if param.kind != ParamType::Reference || !param.accepts_target(resource_type) {
        return Err(invalid(format!(
            "{source_type}.{code} is not a reference that can point at {resource_type}"
        )));
    }
    let inner =
        parse_filter_key(params, source_type, rest, value, depth + 1).map_err(Problem::strict)?;
    Ok(Filter {
        param: "_has".to_owned(),
        kind: ParamType::Reference,
        modifier: None,
        values: Vec::new(),
        link: Some(Link::Has {
            source_type: source_type.to_owned(),
            param: code.to_owned(),
            inner: Box::new(inner),
        }),
    })
}

/// A token without a system that reads as a personnummer or samordningsnummer also matches its canonical
/// 12-digit form (the index holds both), so `identifier=19121212-1212` finds what `|191212121212` finds.
fn with_canonical_national_ids(mut values: Vec<FilterValue>) -> Vec<FilterValue> {
    let extra: Vec<FilterValue> = values
        .iter()
        .filter_map(|v| match v {
            FilterValue::Token {
                system: None,
                code: Some(code),
            } => {
                let id = crate::domain::NationalId::parse(code).ok()?;
                (id.canonical() != code).then(|| FilterValue::Token {
                    system: None,
                    code: Some(id.canonical().to_owned()),
                })
            }
            _ => None,
        })
        .collect();
    values.extend(extra);
    values
}

enum ModifierProblem {
    Unsupported(String),
    Invalid(String),
}

fn parse_modifier(param: &SearchParam, text: &str) -> Result<Modifier, ModifierProblem> {
    use ParamType as T;
    let modifier = match (text, param.kind) {
        ("missing", _) => Modifier::Missing,
        ("exact", T::String) => Modifier::Exact,
        ("contains", T::String) => Modifier::Contains,
        ("not", T::Token) => Modifier::Not,
        ("text", T::Token) => Modifier::Text,
        ("identifier", T::Reference) => Modifier::Identifier,
        ("below", T::Uri) => Modifier::Below,
        ("above", T::Uri) => Modifier::Above,
        (resource_type, T::Reference) if is_resource_type_name(resource_type) => {
            if !param.accepts_target(resource_type) {
                return Err(ModifierProblem::Invalid(format!(
                    "{resource_type} is not a target type of {}",
                    param.code
                )));
            }
            Modifier::Type(resource_type.to_owned())
        }
        _ => {
            return Err(ModifierProblem::Unsupported(format!(
                "modifier :{text} is not supported for {} parameter '{}'",
                param.kind, param.code
            )));
        }
    };
    Ok(modifier)
}

fn parse_value(
    param: &SearchParam,
    modifier: Option<&Modifier>,
    piece: &str,
) -> Result<FilterValue, String> {
    match (param.kind, modifier) {
        (ParamType::Token, Some(Modifier::Text)) => parse_string_value(piece, false),
        (ParamType::Token, _) => parse_token(piece),
        (ParamType::String, Some(Modifier::Exact)) => parse_string_value(piece, true),
        (ParamType::String, _) => parse_string_value(piece, false),
        (ParamType::Reference, Some(Modifier::Identifier)) => match parse_token(piece)? {
            FilterValue::Token { code: None, .. } => Err(format!(
                "{piece:?}: :identifier needs system|value or value"
            )),
            token => Ok(token),
        },
        (ParamType::Reference, Some(Modifier::Type(resource_type))) => {
            parse_reference(param, Some(resource_type), piece)
        }
        (ParamType::Reference, _) => parse_reference(param, None, piece),
        (ParamType::Date, _) => parse_date_value(piece),
        (ParamType::Uri, _) => Ok(FilterValue::Uri(unescape(piece))),
        (ParamType::Number, _) => {
            let (prefix, lo, hi) = parse_number(&unescape(piece))?;
            Ok(FilterValue::Row(RowMatch {
                system: None,
                value: None,
                range: Some((prefix, lo, hi)),
            }))
        }
        (ParamType::Quantity, _) => {
            let (range, unit) = parse_quantity(piece)?;
            let (system, value) = quantity_unit_match(unit, String::new());
            Ok(FilterValue::Row(RowMatch {
                system,
                value: Some(value),
                range: Some(range),
            }))
        }
        (ParamType::Composite, _) => parse_composite(param, piece),
    }
}

/// A number with an optional prefix (search.html#number): the prefix and the `lo..=hi` range (scaled by
/// [`NUMBER_SCALE`]) the value stands for. `eq`/`ne` use the value's precision (`5.4` is 5.35…5.45), `ap`
/// ±10 % (as `eq` over the widened range); the other prefixes compare with the value as written.
fn parse_number(text: &str) -> Result<(Prefix, i64, i64), String> {
    let (prefix, number) = match text.get(..2) {
        Some(head) if head.bytes().all(|b| b.is_ascii_alphabetic()) => match Prefix::parse(head) {
            Some(prefix) => (prefix, &text[2..]),
            None => return Err(format!("unknown prefix {head:?}")),
        },
        _ => (Prefix::Eq, text),
    };
    let (mantissa, exponent) = match number.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok().filter(|e| e.abs() <= 300)),
        None => (number, Some(0)),
    };
    let digits_ok = is_decimal(mantissa);
    let (Some(exponent), true) = (exponent, digits_ok) else {
        return Err(format!("{number:?} is not a number"));
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{number:?} is not a number"))?;
    let decimals = mantissa
        .split_once('.')
        .map_or(0, |(_, d)| i32::try_from(d.len()).unwrap_or(40));
    let half = 0.5 * 10f64.powi(exponent.saturating_sub(decimals));
    let scale = super::index::scale_number;
    Ok(match prefix {
        Prefix::Eq | Prefix::Ne => (prefix, scale(value - half), scale(value + half)),
        Prefix::Ap => {
            let margin = (value * 0.1).abs().max(half);
            (Prefix::Eq, scale(value - margin), scale(value + margin))
        }
        _ => (prefix, scale(value), scale(value)),
    })
}

/// `-?digits(.digits)?`, at most 40 characters (FHIR R4 decimal, without the exponent).
fn is_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match unsigned.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (unsigned, None),
    };
    text.len() <= 40
        && !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// The unit part of a quantity search: `None` any unit, `(None, code)` a code or unit, `(Some(s), code)`.
type QuantityUnit = Option<(Option<String>, String)>;

/// `[prefix]number|system|code`, `[prefix]number||code` or `[prefix]number` (search.html#quantity).
fn parse_quantity(piece: &str) -> Result<((Prefix, i64, i64), QuantityUnit), String> {
    let parts = split_escaped(piece, '|');
    let (number, unit) = match parts.as_slice() {
        [number] => (number.clone(), None),
        [number, system, code] if !code.is_empty() => (
            number.clone(),
            Some(((!system.is_empty()).then(|| system.clone()), code.clone())),
        ),
        _ => {
            return Err(format!(
                "{piece:?} is not a quantity ([prefix]number, [prefix]number|system|code or [prefix]number||code)"
            ));
        }
    };
    Ok((parse_number(&number)?, unit))
}

/// The row condition for a quantity unit, its `value` after `prefix` (a composite's `code$`).
fn quantity_unit_match(unit: QuantityUnit, prefix: String) -> (Option<Option<String>>, ValueMatch) {
    match unit {
        None => (None, ValueMatch::Equals(prefix)),
        Some((None, code)) => (None, ValueMatch::Equals(prefix + &code)),
        Some((Some(system), code)) if prefix.is_empty() => {
            (Some(Some(system)), ValueMatch::Equals(code))
        }
        // In a composite the token part owns the row's system: the unit's system is in the value.
        Some((Some(system), code)) => {
            (None, ValueMatch::Equals(format!("{prefix}{system}|{code}")))
        }
    }
}

/// `token$value` for a composite (search.html#composite), as the index encodes it
/// ([`crate::search::index::COMPOSITE_SEPARATOR`]).
fn parse_composite(param: &SearchParam, piece: &str) -> Result<FilterValue, String> {
    let [_, second] = param.components.as_slice() else {
        return Err(format!("{} is not a two-part composite", param.code));
    };
    let parts = split_escaped(piece, '$');
    let [first_text, second_text] = parts.as_slice() else {
        return Err(format!("{piece:?} is not a composite value (token$value)"));
    };
    let FilterValue::Token {
        system,
        code: Some(code),
    } = parse_token(first_text)?
    else {
        return Err(format!("{first_text:?}: the first part needs a code"));
    };
    let head = format!("{code}{COMPOSITE_SEPARATOR}");
    let row = match second.kind {
        ParamType::Token => match parse_token(second_text)? {
            FilterValue::Token {
                system: Some(Some(s)),
                code: Some(c),
            } => RowMatch::value(system, ValueMatch::Equals(format!("{head}{s}|{c}"))),
            FilterValue::Token {
                system: Some(Some(s)),
                code: None,
            } => RowMatch::value(system, ValueMatch::StartsWith(format!("{head}{s}|"))),
            FilterValue::Token { code: Some(c), .. } => {
                RowMatch::value(system, ValueMatch::Equals(format!("{head}{c}")))
            }
            _ => return Err(format!("{second_text:?} is not a token")),
        },
        ParamType::String => {
            let text = normalize_string(&unescape(second_text));
            if text.is_empty() {
                return Err(format!("{second_text:?} is blank"));
            }
            RowMatch::value(system, ValueMatch::StartsWith(format!("{head}{text}")))
        }
        ParamType::Uri => RowMatch::value(
            system,
            ValueMatch::Equals(format!("{head}{}", unescape(second_text))),
        ),
        ParamType::Reference => match parse_literal_reference(&unescape(second_text)) {
            Some(r) => RowMatch::value(system, ValueMatch::Equals(format!("{head}{}", r.value))),
            None => return Err(format!("{second_text:?} is not a reference")),
        },
        ParamType::Date => {
            let FilterValue::Date { prefix, lo, hi } = parse_date_value(second_text)? else {
                return Err(format!("{second_text:?} is not a date"));
            };
            RowMatch {
                system,
                value: Some(ValueMatch::Equals(head)),
                range: Some((prefix, lo, hi)),
            }
        }
        ParamType::Number => RowMatch {
            system,
            value: Some(ValueMatch::Equals(head)),
            range: Some(parse_number(&unescape(second_text))?),
        },
        ParamType::Quantity => {
            let (range, unit) = parse_quantity(second_text)?;
            let (_, value) = quantity_unit_match(unit, head);
            RowMatch {
                system,
                value: Some(value),
                range: Some(range),
            }
        }
        ParamType::Composite => return Err("a composite inside a composite".into()),
    };
    Ok(FilterValue::Row(row))
}

impl RowMatch {
    fn value(system: Option<Option<String>>, value: ValueMatch) -> Self {
        RowMatch {
            system,
            value: Some(value),
            range: None,
        }
    }

    /// Whether an index row satisfies the condition (the reference semantics the SQL reproduces).
    pub fn matches(&self, row: &IndexRow) -> bool {
        let system_ok = match &self.system {
            None => true,
            Some(wanted) => row.system == *wanted,
        };
        let value_ok = match &self.value {
            None => true,
            Some(ValueMatch::Equals(v)) => row.value == *v,
            Some(ValueMatch::StartsWith(v)) => row.value.starts_with(v.as_str()),
        };
        let range_ok = match (&self.range, row.lo, row.hi) {
            (None, _, _) => true,
            (Some((prefix, lo, hi)), Some(row_lo), Some(row_hi)) => {
                date_condition(*prefix, *lo, *hi).matches(row_lo, row_hi)
            }
            _ => false,
        };
        system_ok && value_ok && range_ok
    }
}

fn parse_string_value(piece: &str, exact: bool) -> Result<FilterValue, String> {
    let text = unescape(piece);
    let text = if exact { text } else { normalize_string(&text) };
    if text.is_empty() {
        return Err(format!("{piece:?} is blank"));
    }
    Ok(FilterValue::String(text))
}

/// `code`, `system|code`, `|code` or `system|` (search.html#token).
fn parse_token(piece: &str) -> Result<FilterValue, String> {
    let parts = split_escaped(piece, '|');
    let non_empty = |text: &String| (!text.is_empty()).then(|| text.clone());
    match parts.as_slice() {
        [code] => Ok(FilterValue::Token {
            system: None,
            code: Some(code.clone()),
        }),
        [system, code] if !(system.is_empty() && code.is_empty()) => {
            // The index also holds national numbers in canonical form; search with that form when it parses.
            if let Ok(Some(id)) = crate::domain::from_fhir(system, code) {
                return Ok(FilterValue::Token {
                    system: Some(Some(id.canonical_system().to_owned())),
                    code: Some(id.canonical_value().to_owned()),
                });
            }
            Ok(FilterValue::Token {
                system: Some(non_empty(system)),
                code: non_empty(code),
            })
        }
        _ => Err(format!(
            "{piece:?} is not a token (code, system|code, |code or system|)"
        )),
    }
}

fn parse_reference(
    param: &SearchParam,
    type_modifier: Option<&str>,
    piece: &str,
) -> Result<FilterValue, String> {
    let text = unescape(piece);
    if is_valid_id(&text) {
        let value = match (type_modifier, param.targets.as_slice()) {
            (Some(resource_type), _) => ReferenceValue::Local {
                resource_type: resource_type.to_owned(),
                id: text,
            },
            (None, [only]) => ReferenceValue::Local {
                resource_type: only.clone(),
                id: text,
            },
            (None, targets) => ReferenceValue::AnyType {
                id: text,
                types: targets.to_vec(),
            },
        };
        return Ok(FilterValue::Reference(value));
    }
    let Some(literal) = parse_literal_reference(&text) else {
        return Err(format!("{text:?} is not a reference"));
    };
    let value = match literal.resource_type {
        Some(resource_type) => {
            if !param.accepts_target(&resource_type) {
                return Err(format!(
                    "{resource_type} is not a target type of {}",
                    param.code
                ));
            }
            if type_modifier.is_some_and(|m| m != resource_type) {
                return Err(format!(
                    "{text:?} does not match the :{} modifier",
                    type_modifier.unwrap_or_default()
                ));
            }
            let id = literal
                .value
                .split_once('/')
                .map(|(_, id)| id.to_owned())
                .unwrap_or_default();
            ReferenceValue::Local { resource_type, id }
        }
        None if type_modifier.is_some() => {
            return Err(format!(
                "{text:?} is not an id or Type/id, as a :Type modifier needs"
            ));
        }
        None => ReferenceValue::Literal(literal.value),
    };
    Ok(FilterValue::Reference(value))
}

fn parse_date_value(piece: &str) -> Result<FilterValue, String> {
    let text = unescape(piece);
    let (prefix, date) = match text.get(..2) {
        Some(head) if head.bytes().all(|b| b.is_ascii_alphabetic()) => match Prefix::parse(head) {
            Some(prefix) => (prefix, &text[2..]),
            None => {
                return Err(format!(
                    "unknown date prefix {head:?} (eq, ne, gt, lt, ge, le, sa, eb, ap)"
                ));
            }
        },
        _ => (Prefix::Eq, text.as_str()),
    };
    let range = parse_date_range(date)
        .ok_or_else(|| format!("{date:?} is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss][Z|±hh:mm])"))?;
    Ok(FilterValue::Date {
        prefix,
        lo: range.lo,
        hi: range.hi,
    })
}

/// Splits on `separator` where it is not escaped by `\`, then unescapes
/// nothing: pieces keep their escapes for the next split.
fn split_escaped(text: &str, separator: char) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            current.push(c);
            if let Some(next) = chars.next() {
                current.push(next);
            }
        } else if c == separator {
            pieces.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    pieces.push(current);
    if separator == '|' {
        // Token pieces are final: unescape them here.
        return pieces.iter().map(|p| unescape(p)).collect();
    }
    pieces
}

/// Removes the search escapes `\,` `\|` `\$` `\\` (search.html#escaping).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(next @ (',' | '|' | '$' | '\\'))) => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

impl Filter {
    /// The `param` of the index rows this filter reads (see
    /// [`crate::search::index`]): `P:text` for token `:text`, `P:exact` for
    /// string `:exact`, `P:identifier` for reference `:identifier`, else `P`.
    pub fn index_param(&self) -> String {
        match (self.kind, &self.modifier) {
            (ParamType::Token, Some(Modifier::Text)) => format!("{}{TEXT_SUFFIX}", self.param),
            (ParamType::String, Some(Modifier::Exact)) => format!("{}{EXACT_SUFFIX}", self.param),
            (ParamType::Reference, Some(Modifier::Identifier)) => {
                format!("{}{IDENTIFIER_SUFFIX}", self.param)
            }
            _ => self.param.clone(),
        }
    }

    /// The row `param`s whose presence means the resource has a value for
    /// this parameter (for `:missing`).
    pub fn presence_params(&self) -> Vec<String> {
        match self.kind {
            ParamType::Token => vec![self.param.clone(), format!("{}{TEXT_SUFFIX}", self.param)],
            ParamType::Reference => vec![
                self.param.clone(),
                format!("{}{IDENTIFIER_SUFFIX}", self.param),
            ],
            _ => vec![self.param.clone()],
        }
    }

    /// Whether a resource with these index rows matches this filter: the
    /// reference semantics of the index encoding, which the store's SQL must
    /// reproduce. Not meaningful for `_id` and `_lastUpdated`, which have no
    /// rows (the store matches them on its columns).
    pub fn matches_rows(&self, rows: &[IndexRow]) -> bool {
        if self.modifier == Some(Modifier::Missing) {
            let present_params = self.presence_params();
            let present = rows.iter().any(|row| present_params.contains(&row.param));
            return self.values.iter().any(
                |value| matches!(value, FilterValue::Missing(missing) if *missing != present),
            );
        }
        let index_param = self.index_param();
        let any = self.values.iter().any(|value| {
            rows.iter()
                .filter(|row| row.param == index_param)
                .any(|row| self.value_matches(value, row))
        });
        if self.modifier == Some(Modifier::Not) {
            !any
        } else {
            any
        }
    }

    fn value_matches(&self, value: &FilterValue, row: &IndexRow) -> bool {
        match value {
            FilterValue::Token { system, code } => {
                let system_ok = match system {
                    None => true,
                    Some(wanted) => row.system == *wanted,
                };
                system_ok && code.as_ref().is_none_or(|code| row.value == *code)
            }
            FilterValue::String(text) => match self.modifier {
                Some(Modifier::Exact) => row.value == *text,
                Some(Modifier::Contains) => row.value.contains(text.as_str()),
                _ => row.value.starts_with(text.as_str()),
            },
            FilterValue::Reference(reference) => reference.matches(&row.value),
            FilterValue::Date { prefix, lo, hi } => match (row.lo, row.hi) {
                (Some(row_lo), Some(row_hi)) => {
                    date_condition(*prefix, *lo, *hi).matches(row_lo, row_hi)
                }
                _ => false,
            },
            FilterValue::Uri(uri) => match self.modifier {
                Some(Modifier::Below) => row.value.starts_with(uri.as_str()),
                Some(Modifier::Above) => uri.starts_with(row.value.as_str()),
                _ => row.value == *uri,
            },
            FilterValue::Missing(_) => false,
            FilterValue::Row(m) => m.matches(row),
        }
    }
}

/// The `lo` or `hi` column of a date index row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateColumn {
    Lo,
    Hi,
}

/// A comparison of a column with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Lt,
    Le,
    Gt,
    Ge,
}

/// `column op value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateBound {
    pub column: DateColumn,
    pub op: Comparison,
    pub value: i64,
}

/// A condition on a date row's `lo`/`hi`, in disjunctive normal form: the
/// row matches when all bounds of at least one group hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateCondition {
    pub any_of: Vec<Vec<DateBound>>,
}

impl DateCondition {
    /// Whether a row covering `lo..=hi` satisfies the condition.
    pub fn matches(&self, lo: i64, hi: i64) -> bool {
        self.any_of.iter().any(|group| {
            group.iter().all(|bound| {
                let column = match bound.column {
                    DateColumn::Lo => lo,
                    DateColumn::Hi => hi,
                };
                match bound.op {
                    Comparison::Lt => column < bound.value,
                    Comparison::Le => column <= bound.value,
                    Comparison::Gt => column > bound.value,
                    Comparison::Ge => column >= bound.value,
                }
            })
        })
    }

    /// SQL for the condition, with `?` placeholders and the values to bind
    /// in order, e.g. `((lo >= ? AND hi <= ?) OR (hi > ?))`. Column names are
    /// the caller's (trusted) identifiers.
    pub fn to_sql(&self, lo_column: &str, hi_column: &str) -> (String, Vec<i64>) {
        let mut binds = Vec::new();
        let groups: Vec<String> = self
            .any_of
            .iter()
            .map(|group| {
                let bounds: Vec<String> = group
                    .iter()
                    .map(|bound| {
                        binds.push(bound.value);
                        let column = match bound.column {
                            DateColumn::Lo => lo_column,
                            DateColumn::Hi => hi_column,
                        };
                        let op = match bound.op {
                            Comparison::Lt => "<",
                            Comparison::Le => "<=",
                            Comparison::Gt => ">",
                            Comparison::Ge => ">=",
                        };
                        format!("{column} {op} ?")
                    })
                    .collect();
                format!("({})", bounds.join(" AND "))
            })
            .collect();
        (format!("({})", groups.join(" OR ")), binds)
    }
}

/// The condition on an index row's range `[lo_r, hi_r]` for a search value
/// `prefix` + range `[lo, hi]` (FHIR R4 4.0.1 search.html#prefix; all
/// bounds inclusive, milliseconds):
///
/// | prefix | row matches when |
/// |---|---|
/// | `eq` | `lo_r >= lo AND hi_r <= hi` (the search range contains the row's) |
/// | `ne` | `lo_r < lo OR hi_r > hi` (not `eq`) |
/// | `gt` | `hi_r > hi` (the row reaches past the search range) |
/// | `lt` | `lo_r < lo` (the row starts before it) |
/// | `ge` | `hi_r > hi OR (lo_r >= lo AND hi_r <= hi)` (`gt` or `eq`) |
/// | `le` | `lo_r < lo OR (lo_r >= lo AND hi_r <= hi)` (`lt` or `eq`) |
/// | `sa` | `lo_r > hi` (starts after) |
/// | `eb` | `hi_r < lo` (ends before) |
/// | `ap` | `lo_r <= hi + d AND hi_r >= lo - d` (overlaps the widened range) |
///
/// For `ap`, `d` is 10 % of the gap between now and the search range, as
/// FHIR recommends; [`date_condition_at`] takes "now" explicitly.
pub fn date_condition(prefix: Prefix, lo: i64, hi: i64) -> DateCondition {
    date_condition_at(prefix, lo, hi, jiff::Timestamp::now().as_millisecond())
}

/// [`date_condition`] with an explicit "now" (ms since the epoch) for `ap`.
pub fn date_condition_at(prefix: Prefix, lo: i64, hi: i64, now_ms: i64) -> DateCondition {
    use Comparison::{Ge, Gt, Le, Lt};
    use DateColumn::{Hi, Lo};
    let bound = |column, op, value| DateBound { column, op, value };
    let within = vec![bound(Lo, Ge, lo), bound(Hi, Le, hi)];
    let any_of = match prefix {
        Prefix::Eq => vec![within],
        Prefix::Ne => vec![vec![bound(Lo, Lt, lo)], vec![bound(Hi, Gt, hi)]],
        Prefix::Gt => vec![vec![bound(Hi, Gt, hi)]],
        Prefix::Lt => vec![vec![bound(Lo, Lt, lo)]],
        Prefix::Ge => vec![vec![bound(Hi, Gt, hi)], within],
        Prefix::Le => vec![vec![bound(Lo, Lt, lo)], within],
        Prefix::Sa => vec![vec![bound(Lo, Gt, hi)]],
        Prefix::Eb => vec![vec![bound(Hi, Lt, lo)]],
        Prefix::Ap => {
            let gap = if now_ms < lo {
                lo.saturating_sub(now_ms)
            } else if now_ms > hi {
                now_ms.saturating_sub(hi)
            } else {
                0
            };
            let margin = gap / 10;
            vec![vec![
                bound(Lo, Le, hi.saturating_add(margin)),
                bound(Hi, Ge, lo.saturating_sub(margin)),
            ]]
        }
    };
    DateCondition { any_of }
}

#[cfg(test)]
mod tests;
