//! The entry point [`parse_query`] and the result parameters (`_count`, `_sort`, `_include`, `_total`,
//! `_summary`, `_elements`, …) with the request-wide caps: what shapes the answer, apart from the filters
//! ([`super::filter`]) that choose the matches.

use std::collections::HashSet;

use super::filter::parse_filter_key;
use super::value::split_escaped;
use super::{
    Include, MAX_INCLUDES, MAX_PARAMETERS, MAX_SORT_KEYS, MAX_VALUES, MAX_VALUES_PER_PARAMETER,
    Problem, QueryError, SearchQuery, SortKey, TotalMode,
};
use crate::search::index::is_resource_type_name;
use crate::search::params::{ParamType, SearchParams};
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
