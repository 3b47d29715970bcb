//! Filter keys: a plain parameter with its modifier, a chain (`patient.identifier`) or `_has`, resolved
//! against the search-parameter table. The values themselves are parsed in [`super::value`].

use super::value::{parse_date_value, parse_value, split_escaped, unescape};
use super::{
    Filter, FilterValue, Link, MAX_CHAIN_DEPTH, MAX_VALUES_PER_PARAMETER, Modifier, Problem,
    QueryError,
};
use crate::search::index::{is_resource_type_name, is_valid_id};
use crate::search::params::{ParamType, SearchParam, SearchParams};

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
pub(super) fn parse_filter_key(
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
